/*
 * Unit tests of lib/vmx_sse.c.  Events are written as "name|data;" so that
 * an expectation reads as one string.
 */

#include "unit.h"
#include "vmx_sse.h"


typedef struct {
    char    out[8192];
    size_t  len;
    int     count;
    int     stop_at;      /* the handler returns 42 at this event */
} sink_t;


static int
collect(void *ctx, const char *event, size_t event_len, const char *data,
    size_t data_len)
{
    sink_t  *s = ctx;

    /* the tests stay far below the size */
    if (s->len + event_len + data_len + 3 <= sizeof(s->out)) {
        memcpy(s->out + s->len, event, event_len);
        s->len += event_len;
        s->out[s->len++] = '|';
        memcpy(s->out + s->len, data, data_len);
        s->len += data_len;
        s->out[s->len++] = ';';
    }

    s->out[s->len] = '\0';

    return ++s->count == s->stop_at ? 42 : 0;
}


static sink_t  sink;
static int     rc;


/* the events of stream fed in pieces ending at cuts, then finished */
static const char *
parse_cut(const char *stream, size_t len, const size_t *cuts, size_t ncuts,
    size_t cap, int finish)
{
    static char        buf[1024];
    vmx_sse_parser_t   p;
    size_t             i, from = 0, to;

    memset(&sink, 0, sizeof(sink));
    vmx_sse_init(&p, buf, cap);
    rc = VMX_SSE_OK;

    for (i = 0; i <= ncuts && rc == VMX_SSE_OK; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        rc = vmx_sse_feed(&p, stream + from, to - from, collect, &sink);
        from = to;
    }

    if (finish && rc == VMX_SSE_OK) {
        rc = vmx_sse_finish(&p, collect, &sink);
    }

    return sink.out;
}


/* events delivered by blank lines only */
static const char *
events(const char *stream)
{
    return parse_cut(stream, strlen(stream), NULL, 0, 1024, 0);
}


/* events including the one vmx_sse_finish delivers */
static const char *
events_at_eof(const char *stream)
{
    return parse_cut(stream, strlen(stream), NULL, 0, 1024, 1);
}


static int
is(const char *got, const char *want)
{
    if (strcmp(got, want) == 0 && rc == VMX_SSE_OK) {
        return 1;
    }

    fprintf(stderr, "got \"%s\" (rc %d), want \"%s\"\n", got, rc, want);

    return 0;
}


static void
test_fields(void)
{
    CHECK(is(events("data: hello\n\n"), "|hello;"));
    CHECK(is(events("data:hello\n\n"), "|hello;"));
    CHECK(is(events("data:  two spaces\n\n"), "| two spaces;"));
    CHECK(is(events("data: a\ndata: b\ndata\ndata: c\n\n"), "|a\nb\n\nc;"));
    CHECK(is(events("event: ping\ndata: {}\n\n"), "ping|{};"));
    CHECK(is(events("event:ping\nevent\ndata: x\n\n"), "|x;"));
    CHECK(is(events("data: x\nevent: late\n\n"), "late|x;"));
    CHECK(is(events("event: a\ndata: x\nevent: longer name\n\n"),
             "longer name|x;"));
    CHECK(is(events("data: x\nevent: l\ndata: y\nevent: mid\n\n"),
             "mid|x\ny;"));
    CHECK(is(events("data: x\nevent\n\n"), "|x;"));
    CHECK(is(events("data: a\n\ndata: b\n\n\n\ndata: c\n\n"), "|a;|b;|c;"));
    CHECK(is(events("data: colon: inside\n\n"), "|colon: inside;"));
    CHECK(is(events("data: \xc3\xa9\n\n"), "|\xc3\xa9;"));
}


static void
test_dispatch_rules(void)
{
    /* WHATWG: an event is dispatched when its data buffer is not empty */
    CHECK(is(events("data:\n\n"), "|;"));
    CHECK(is(events("data\n\n"), "|;"));
    CHECK(is(events("data: \n\n"), "|;"));
    CHECK(is(events("data\ndata\n\n"), "|\n;"));
    CHECK(is(events("event: x\n\n"), ""));
    CHECK(is(events("event: x\n\ndata: y\n\n"), "|y;"));
    CHECK(is(events("\n\n\n"), ""));
    CHECK(is(events("data: pending"), ""));
    CHECK(is(events("data: pending\n"), ""));
}


static void
test_ignored_lines(void)
{
    CHECK(is(events(": comment\ndata: x\n:\n\n"), "|x;"));
    CHECK(is(events(":\n\n"), ""));
    CHECK(is(events("id: 7\nretry: 100\ndata: x\n\n"), "|x;"));
    CHECK(is(events("foo: bar\nDATA: no\nData: no\ndata: yes\n\n"), "|yes;"));
    CHECK(is(events("dat: no\ndatax: no\nevents: no\n\n"), ""));
    CHECK(is(events("a-very-long-field-name: value\ndata: x\n\n"), "|x;"));
    CHECK(is(events(" data: leading space\n\n"), ""));
    CHECK(is(events("id\nretry\nfoo\ndata: x\n\n"), "|x;"));
}


static void
test_line_ends(void)
{
    CHECK(is(events("data: a\r\ndata: b\r\n\r\n"), "|a\nb;"));
    CHECK(is(events("data: a\rdata: b\r\r"), "|a\nb;"));
    CHECK(is(events("data: a\r\n\rdata: b\n\r\n"), "|a;|b;"));
    CHECK(is(events("data: a\n\r\ndata: b\r\rdata: c\n\n"), "|a;|b;|c;"));
    CHECK(is(events("data: a\r\r\n"), "|a;"));
    CHECK(is(events("event: e\r\ndata\r\n\r\n"), "e|;"));
    CHECK(is(events("data: a\r\n\n"), "|a;"));
}


static void
test_crlf_split(void)
{
    static const char  s[] = "data: a\r\n\r\ndata: b\r\n\r\n";
    size_t             cuts[][2] = { {8, 9}, {8, 10}, {7, 8}, {9, 11} };
    size_t             i;

    for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        CHECK(is(parse_cut(s, sizeof(s) - 1, cuts[i], 2, 64, 0), "|a;|b;"));
    }

    /* "\r" at the end of a feed and "\n" at the start of the next are one */
    CHECK(is(parse_cut("data: a\r\n", 9, (size_t[]) {8}, 1, 64, 0), ""));
    CHECK(is(parse_cut("data: a\r\r", 9, (size_t[]) {8}, 1, 64, 0), "|a;"));
}


static void
test_bom(void)
{
    CHECK(is(events("\xef\xbb\xbf" "data: x\n\n"), "|x;"));
    CHECK(is(events("\xef\xbb\xbf\n" "data: x\n\n"), "|x;"));
    CHECK(is(parse_cut("\xef\xbb\xbf" "data: x\n\n", 12, (size_t[]) {1, 2}, 2,
                       64, 0), "|x;"));

    /* once only, and only a whole mark */
    CHECK(is(events("\xef\xbb\xbf\xef\xbb\xbf" "data: x\n\ndata: y\n\n"),
             "|y;"));
    CHECK(is(events("\xef\xbb" "data: x\n\ndata: y\n\n"), "|y;"));
    CHECK(is(events("\xef\n" "data: y\n\n"), "|y;"));
    CHECK(is(events("\xef:\n" "data: y\n\n"), "|y;"));
    CHECK(is(events("data: x\n\n\xef\xbb\xbf" "data: y\n\n"), "|x;"));
    CHECK(is(events("data: \xef\xbb\xbfx\n\n"), "|\xef\xbb\xbfx;"));
}


static void
test_finish(void)
{
    vmx_sse_parser_t  p;
    char              buf[64];

    CHECK(is(events_at_eof("data: x"), "|x;"));
    CHECK(is(events_at_eof("data: x\r"), "|x;"));
    CHECK(is(events_at_eof("data: x\n"), "|x;"));
    CHECK(is(events_at_eof("event: e\ndata: x\ndata"), "e|x\n;"));
    CHECK(is(events_at_eof("data: x\n\n"), "|x;"));
    CHECK(is(events_at_eof("data: x\n\nevent: e"), "|x;"));
    CHECK(is(events_at_eof(": comment"), ""));
    CHECK(is(events_at_eof("data:"), "|;"));
    CHECK(is(events_at_eof(""), ""));

    /* the parser is then ready for a new stream */
    memset(&sink, 0, sizeof(sink));
    vmx_sse_init(&p, buf, sizeof(buf));
    vmx_sse_feed(&p, "data: one", 9, collect, &sink);
    CHECK(vmx_sse_finish(&p, collect, &sink) == VMX_SSE_OK);
    vmx_sse_feed(&p, "\xef\xbb\xbf" "data: two\n\n", 14, collect, &sink);
    CHECK(vmx_sse_finish(&p, collect, &sink) == VMX_SSE_OK);
    CHECK(strcmp(sink.out, "|one;|two;") == 0);
}


static void
test_too_large(void)
{
    vmx_sse_parser_t  p;
    char              buf[8];

    CHECK(is(parse_cut("data: 12345678\n\n", 16, NULL, 0, 8, 0), "|12345678;"));
    CHECK(is(parse_cut("event: e\ndata: 1234567\n\n", 24, NULL, 0, 8, 0),
             "e|1234567;"));
    CHECK(is(parse_cut("data: 1234\ndata: 567\n\n", 22, NULL, 0, 8, 0),
             "|1234\n567;"));
    CHECK(is(parse_cut("data:\ndata:\n\n", 13, NULL, 0, 1, 0), "|\n;"));
    CHECK(is(parse_cut("data:\n\n", 7, NULL, 0, 0, 0), "|;"));

    parse_cut("data: 123456789\n\n", 17, NULL, 0, 8, 0);
    CHECK(rc == VMX_SSE_TOO_LARGE && sink.count == 0);

    parse_cut("data: 1234\ndata: 5678\n\n", 23, NULL, 0, 8, 0);
    CHECK(rc == VMX_SSE_TOO_LARGE);

    parse_cut("data: 12345678\ndata\n\n", 21, NULL, 0, 8, 0);
    CHECK(rc == VMX_SSE_TOO_LARGE);

    parse_cut("data: 12345678\ndata", 19, NULL, 0, 8, 1);
    CHECK(rc == VMX_SSE_TOO_LARGE);

    /* the name and the data share the buffer */
    parse_cut("event: abcd\ndata: 12345\n\n", 25, NULL, 0, 8, 0);
    CHECK(rc == VMX_SSE_TOO_LARGE);

    /* the failure sticks until init; after it the parser works again */
    memset(&sink, 0, sizeof(sink));
    vmx_sse_init(&p, buf, sizeof(buf));
    CHECK(vmx_sse_feed(&p, "data: a\n\ndata: 123456789", 24, collect, &sink)
          == VMX_SSE_TOO_LARGE);
    CHECK(vmx_sse_feed(&p, "\n\ndata: b\n\n", 11, collect, &sink)
          == VMX_SSE_TOO_LARGE);
    CHECK(vmx_sse_finish(&p, collect, &sink) == VMX_SSE_TOO_LARGE);
    CHECK(strcmp(sink.out, "|a;") == 0);

    vmx_sse_init(&p, buf, sizeof(buf));
    CHECK(vmx_sse_feed(&p, "data: c\n\n", 9, collect, &sink) == VMX_SSE_OK);
    CHECK(strcmp(sink.out, "|a;|c;") == 0);
}


static void
test_handler_stop(void)
{
    vmx_sse_parser_t  p;
    char              buf[64];

    memset(&sink, 0, sizeof(sink));
    sink.stop_at = 2;
    vmx_sse_init(&p, buf, sizeof(buf));

    CHECK(vmx_sse_feed(&p, "data: a\n\ndata: b\n\ndata: c\n\n", 27, collect,
                       &sink) == 42);
    CHECK(strcmp(sink.out, "|a;|b;") == 0);

    memset(&sink, 0, sizeof(sink));
    sink.stop_at = 1;
    vmx_sse_init(&p, buf, sizeof(buf));
    vmx_sse_feed(&p, "data: a", 7, collect, &sink);
    CHECK(vmx_sse_finish(&p, collect, &sink) == 42);
}


static const char  *streams[] = {
    "data: hello\n\n",
    "event: ping\r\ndata: a\r\ndata: b\r\n\r\n: keep-alive\r\n\r\n",
    "\xef\xbb\xbf" "data: x\rdata: y\r\revent: e\ndata:z\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
    "data: [DONE]\n\n",
    "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
    "event: content_block_delta\ndata: {\"delta\":{\"text\":\"a\"}}\n\n"
    "event: message_stop\ndata: {}\n\n",
    "data: x\nevent: late\r\n\nid: 1\nretry\ndata\n\nevent: z\n\ndata: end",
    "\xef\xbb" "data: a\n\n:c\r\ndata:  b\r\r\n\ndata",
};


/* cutting a stream anywhere changes nothing */
static void
test_splits(void)
{
    char          whole[8192];
    const char   *s;
    size_t        i, a, b, len, cuts[2], bad = 0, runs = 0;
    size_t        bytes[512];

    for (i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
        s = streams[i];
        len = strlen(s);

        strcpy(whole, parse_cut(s, len, NULL, 0, 1024, 1));
        CHECK(sink.count > 0);

        for (a = 0; a <= len; a++) {
            for (b = a; b <= len; b++) {
                cuts[0] = a;
                cuts[1] = b;
                bad += strcmp(parse_cut(s, len, cuts, 2, 1024, 1), whole) != 0
                       || rc != VMX_SSE_OK;
                runs++;
            }
        }

        for (a = 0; a < len; a++) {
            bytes[a] = a + 1;
        }

        bad += strcmp(parse_cut(s, len, bytes, len, 1024, 1), whole) != 0;
    }

    CHECK(bad == 0 && runs > 10000);
}


int
main(void)
{
    test_fields();
    test_dispatch_rules();
    test_ignored_lines();
    test_line_ends();
    test_crlf_split();
    test_bom();
    test_finish();
    test_too_large();
    test_handler_stop();
    test_splits();

    return UNIT_REPORT();
}
