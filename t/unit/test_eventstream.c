/*
 * Unit tests of lib/vmx_eventstream.c.  Messages are built here with
 * vmx_eventstream_crc32, itself checked against the CRC-32 check value
 * and a frame encoded independently (Python's zlib, read back by
 * botocore's event stream parser).  Delivered messages are written as
 * "message-type|event-type|exception-type|error-code|error-message|
 * content-type|payload;" so an expectation reads as one string.
 */

#include <stdint.h>

#include "unit.h"
#include "vmx_eventstream.h"


#define CAP  1024

typedef struct {
    char    out[8192];
    size_t  len;
    int     count;
    int     stop_at;      /* the handler returns 42 at this message */
} sink_t;


static sink_t  sink;
static int     rc;


static void
sink_add(const vmx_eventstream_str_t *s, char sep)
{
    if (s->data && sink.len + s->len < sizeof(sink.out) - 2) {
        memcpy(sink.out + sink.len, s->data, s->len);
        sink.len += s->len;
    }

    sink.out[sink.len++] = sep;
}


static int
collect(void *ctx, const vmx_eventstream_message_t *m)
{
    vmx_eventstream_str_t  payload = { m->payload, m->payload_len };

    (void) ctx;

    sink_add(&m->message_type, '|');
    sink_add(&m->event_type, '|');
    sink_add(&m->exception_type, '|');
    sink_add(&m->error_code, '|');
    sink_add(&m->error_message, '|');
    sink_add(&m->content_type, '|');
    sink_add(&payload, ';');
    sink.out[sink.len] = '\0';

    return ++sink.count == sink.stop_at ? 42 : 0;
}


/* the messages of stream fed in pieces ending at cuts, then finished */
static const char *
decode_cut(const char *stream, size_t len, const size_t *cuts, size_t ncuts,
    size_t cap)
{
    static char                 buf[CAP];
    vmx_eventstream_decoder_t   d;
    size_t                      i, from = 0, to;

    memset(&sink, 0, sizeof(sink));
    vmx_eventstream_init(&d, buf, cap);
    rc = VMX_EVENTSTREAM_OK;

    for (i = 0; i <= ncuts && rc == VMX_EVENTSTREAM_OK; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        rc = vmx_eventstream_feed(&d, stream + from, to - from, collect, NULL);
        from = to;
    }

    if (rc == VMX_EVENTSTREAM_OK) {
        rc = vmx_eventstream_finish(&d);
    }

    return sink.out;
}


static const char *
decode(const char *stream, size_t len)
{
    return decode_cut(stream, len, NULL, 0, CAP);
}


static void
put32(char *p, uint32_t v)
{
    p[0] = (char) (v >> 24);
    p[1] = (char) (v >> 16);
    p[2] = (char) (v >> 8);
    p[3] = (char) v;
}


/* a whole message at out with these header bytes and payload */
static size_t
frame(char *out, const char *headers, size_t hlen, const char *payload)
{
    size_t  plen = strlen(payload), total = 16 + hlen + plen;

    put32(out, (uint32_t) total);
    put32(out + 4, (uint32_t) hlen);
    put32(out + 8, vmx_eventstream_crc32(0, out, 8));
    memcpy(out + 12, headers, hlen);
    memcpy(out + 12 + hlen, payload, plen);
    put32(out + total - 4, vmx_eventstream_crc32(0, out, total - 4));

    return total;
}


/* a header with a raw value of n bytes */
static size_t
header(char *out, const char *name, int type, const char *value, size_t n)
{
    size_t  name_len = strlen(name);

    out[0] = (char) name_len;
    memcpy(out + 1, name, name_len);
    out[1 + name_len] = (char) type;
    memcpy(out + 2 + name_len, value, n);

    return 2 + name_len + n;
}


static size_t
string_header(char *out, const char *name, const char *value)
{
    char    v[300];
    size_t  n = strlen(value);

    v[0] = (char) (n >> 8);
    v[1] = (char) n;
    memcpy(v + 2, value, n);

    return header(out, name, 7, v, n + 2);
}


static size_t
event(char *out, const char *event_type, const char *payload)
{
    char    h[256];
    size_t  n;

    n = string_header(h, ":event-type", event_type);
    n += string_header(h + n, ":content-type", "application/json");
    n += string_header(h + n, ":message-type", "event");

    return frame(out, h, n, payload);
}


static void
test_crc(void)
{
    CHECK(vmx_eventstream_crc32(0, "123456789", 9) == 0xcbf43926);
    CHECK(vmx_eventstream_crc32(0, "", 0) == 0);
    CHECK(vmx_eventstream_crc32(vmx_eventstream_crc32(0, "1234", 4),
                                "56789", 5) == 0xcbf43926);
}


/* encoded independently: zlib's CRC-32, checked with botocore */
static const char  independent[] =
    "\x00\x00\x00\x9f\x00\x00\x00W\xc3{\xab\xff\x0b:event-type\x07\x00\x11"
    "contentBlockDelta\x0d:content-type\x07\x00\x10" "application/json\x0d"
    ":message-type\x07\x00\x05" "event{\x22" "contentBlockIndex\x22:0,\x22"
    "delta\x22:{\x22text\x22:\x22Hi\x22},\x22p\x22:\x22" "abcd\x22}"
    "\xf2\xac\xe5\xff";


static void
test_independent(void)
{
    CHECK(strcmp(decode(independent, sizeof(independent) - 1),
                 "event|contentBlockDelta||||application/json|"
                 "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"},"
                 "\"p\":\"abcd\"};") == 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);
}


/* every header type, skipped or read, in one message */
static size_t
all_types(char *out)
{
    static const char  bytes16[16] = "0123456789abcdef";
    char               h[512];
    size_t             n = 0;

    n += header(h + n, "t", 0, "", 0);
    n += header(h + n, "f", 1, "", 0);
    n += header(h + n, "b", 2, "\x7f", 1);
    n += header(h + n, "s", 3, "\x01\x02", 2);
    n += header(h + n, "i", 4, "\x01\x02\x03\x04", 4);
    n += header(h + n, "l", 5, bytes16, 8);
    n += header(h + n, "bytes", 6, "\x00\x03xyz", 5);
    n += header(h + n, "ts", 8, bytes16, 8);
    n += header(h + n, "uuid", 9, bytes16, 16);
    /* names a consumer reads, but not as strings: ignored */
    n += header(h + n, ":event-type", 6, "\x00\x01x", 3);
    n += string_header(h + n, ":message-type", "exception");
    n += string_header(h + n, ":exception-type", "throttlingException");
    n += string_header(h + n, ":error-code", "E1");
    n += string_header(h + n, ":error-message", "slow down");
    n += string_header(h + n, ":content-type", "application/json");
    n += string_header(h + n, ":unknown", "x");

    return frame(out, h, n, "{\"message\":\"Too many requests\"}");
}


#define EXPECT_THREE                                                         \
    "event|messageStart||||application/json|{\"role\":\"assistant\"};"       \
    "exception||throttlingException|E1|slow down|application/json|"          \
    "{\"message\":\"Too many requests\"};"                                   \
    "|||||| ;"


static size_t
three(char *s)
{
    size_t  n;

    n = event(s, "messageStart", "{\"role\":\"assistant\"}");
    n += all_types(s + n);
    n += frame(s + n, "", 0, " ");        /* no headers at all */

    return n;
}


static void
test_splits(void)
{
    char    s[2048];
    size_t  n, i, j, cuts[2], each[2048];
    int     ok = 1;

    n = three(s);

    CHECK(strcmp(decode(s, n), EXPECT_THREE) == 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);

    /* one cut at every position, then two */
    for (i = 0; i <= n; i++) {
        cuts[0] = i;
        ok &= strcmp(decode_cut(s, n, cuts, 1, CAP), EXPECT_THREE) == 0
              && rc == VMX_EVENTSTREAM_OK;

        for (j = i; j <= n; j += 7) {
            cuts[1] = j;
            ok &= strcmp(decode_cut(s, n, cuts, 2, CAP), EXPECT_THREE) == 0
                  && rc == VMX_EVENTSTREAM_OK;
        }
    }

    CHECK(ok);

    for (i = 0; i < n; i++) {
        each[i] = i + 1;
    }

    CHECK(strcmp(decode_cut(s, n, each, n, CAP), EXPECT_THREE) == 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);

    /* the buffer only needs the largest message */
    CHECK(strcmp(decode_cut(s, n, each, n, all_types(s + n)),
                 EXPECT_THREE) == 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);
}


/* any bit flipped anywhere is caught, before any message of it */
static void
test_corruption(void)
{
    char    s[512];
    size_t  n, i, bit;
    int     ok = 1;

    n = event(s, "contentBlockStop", "{\"contentBlockIndex\":0}");

    for (i = 0; i < n; i++) {
        for (bit = 0; bit < 8; bit++) {
            s[i] ^= (char) (1 << bit);
            decode(s, n);
            ok &= sink.count == 0 && rc == VMX_EVENTSTREAM_BAD_CRC;
            s[i] ^= (char) (1 << bit);
        }
    }

    CHECK(ok);

    /* a bad message CRC sticks: later good messages are not delivered */
    s[n - 1] ^= 1;
    n += event(s + n, "messageStop", "{}");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_BAD_CRC && sink.count == 0);
}


static void
test_malformed(void)
{
    char    s[512], h[64];
    size_t  n;

    /* a prelude with a good CRC but lengths that cannot be */
    put32(s, 15);
    put32(s + 4, 0);
    put32(s + 8, vmx_eventstream_crc32(0, s, 8));
    decode(s, 12);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    put32(s, 20);
    put32(s + 4, 5);
    put32(s + 8, vmx_eventstream_crc32(0, s, 8));
    decode(s, 12);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    /* header type 10 */
    n = header(h, "x", 10, "", 0);
    n = frame(s, h, n, "");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED && sink.count == 0);

    /* a string longer than the headers */
    n = header(h, "x", 7, "\x00\x09" "abc", 5);
    n = frame(s, h, n, "payload");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    /* a fixed-size value cut by the end of the headers */
    n = header(h, "x", 9, "0123", 4);
    n = frame(s, h, n, "");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    /* a string type without its length */
    n = header(h, "x", 7, "", 0);
    n = frame(s, h, n, "");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    /* an empty name; a name longer than the headers */
    n = frame(s, "\x00\x00", 2, "");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    n = frame(s, "\x05xy", 3, "");
    decode(s, n);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);

    /* cut short: only finish can tell */
    n = event(s, "messageStop", "{}");
    decode(s, n - 1);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED && sink.count == 0);
    decode(s, 5);
    CHECK(rc == VMX_EVENTSTREAM_MALFORMED);
    decode(s, 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);
}


static void
test_limits(void)
{
    char    s[512];
    size_t  n;

    n = event(s, "messageStop", "{\"stopReason\":\"end_turn\"}");

    decode_cut(s, n, NULL, 0, n);
    CHECK(rc == VMX_EVENTSTREAM_OK && sink.count == 1);

    decode_cut(s, n, NULL, 0, n - 1);
    CHECK(rc == VMX_EVENTSTREAM_TOO_LARGE && sink.count == 0);

    decode_cut(s, n, NULL, 0, 11);
    CHECK(rc == VMX_EVENTSTREAM_TOO_LARGE);

    /* a message of the minimum size: no headers, no payload */
    n = frame(s, "", 0, "");
    CHECK(n == 16);
    CHECK(strcmp(decode_cut(s, n, NULL, 0, 16), "||||||;") == 0);
    CHECK(rc == VMX_EVENTSTREAM_OK);
}


static void
test_handler_stop(void)
{
    static char                 buf[CAP];
    vmx_eventstream_decoder_t   d;
    char                        s[1024];
    size_t                      n, first;

    first = event(s, "messageStart", "{}");
    n = first + event(s + first, "messageStop", "{}");

    memset(&sink, 0, sizeof(sink));
    sink.stop_at = 1;
    vmx_eventstream_init(&d, buf, sizeof(buf));

    CHECK(vmx_eventstream_feed(&d, s, n, collect, NULL) == 42);
    CHECK(sink.count == 1);

    /* not an error: the caller may go on with the rest */
    CHECK(vmx_eventstream_finish(&d) == VMX_EVENTSTREAM_OK);
    CHECK(vmx_eventstream_feed(&d, s + first, n - first, collect, NULL)
          == VMX_EVENTSTREAM_OK);
    CHECK(sink.count == 2);
}


int
main(void)
{
    test_crc();
    test_independent();
    test_splits();
    test_corruption();
    test_malformed();
    test_limits();
    test_handler_stop();

    return UNIT_REPORT();
}
