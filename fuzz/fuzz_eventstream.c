/*
 * libFuzzer target of vmx_eventstream.  Input: one byte choosing the buffer
 * size, one byte with the number of cuts (low 4 bits) and a flag (0x80:
 * write correct CRCs into the frames first, so that mutations reach the
 * headers), two bytes per cut (a position, mod the stream length + 1),
 * then the stream.  The stream is decoded whole, cut at those positions
 * and byte by byte: all three must deliver the same messages and end the
 * same way, and every delivered span must lie inside the decoder's buffer.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_eventstream.h"

#include "fuzz_common.h"


#define MAX_CUTS  15


typedef struct {
    uint64_t     hash;
    size_t       messages;
    int          rc;
    const char  *buf;         /* the decoder's buffer, to check pointers */
    size_t       cap;
} outcome_t;


static void
check_span(const outcome_t *o, const char *p, size_t n)
{
    if (p != NULL && (p < o->buf || n > o->cap
                      || (size_t) (p - o->buf) > o->cap - n))
    {
        abort();
    }
}


static uint64_t
hash_str(uint64_t h, const vmx_eventstream_str_t *s)
{
    h = hash_bytes(h, &s->len, sizeof(s->len));
    h = hash_bytes(h, (const char *) "\1", s->data != NULL);

    return s->data ? hash_bytes(h, s->data, s->len) : h;
}


static int
on_message(void *ctx, const vmx_eventstream_message_t *m)
{
    outcome_t                    *o = ctx;
    const vmx_eventstream_str_t  *fields[] = {
        &m->message_type, &m->event_type, &m->exception_type,
        &m->error_code, &m->error_message, &m->content_type,
    };
    vmx_eventstream_str_t         payload = { m->payload, m->payload_len };
    size_t                        i;

    check_span(o, m->payload, m->payload_len);

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        check_span(o, fields[i]->data, fields[i]->len);
        o->hash = hash_str(o->hash, fields[i]);
    }

    o->hash = hash_str(o->hash, &payload);
    o->messages++;

    return 0;
}


static outcome_t
run(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t cap)
{
    vmx_eventstream_decoder_t   d;
    outcome_t                   o = { 0xcbf29ce484222325ULL, 0, 0, NULL, cap };
    char                       *buf;
    size_t                      i, from = 0, to;

    buf = malloc(cap ? cap : 1);
    o.buf = buf;
    vmx_eventstream_init(&d, buf, cap);

    for (i = 0; i <= ncuts && o.rc == VMX_EVENTSTREAM_OK; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        o.rc = vmx_eventstream_feed(&d, s + from, to - from, on_message, &o);
        from = to;
    }

    if (o.rc == VMX_EVENTSTREAM_OK) {
        o.rc = vmx_eventstream_finish(&d);
    }

    free(buf);

    return o;
}


static uint32_t
get32(const char *p)
{
    const unsigned char  *u = (const unsigned char *) p;

    return (uint32_t) u[0] << 24 | (uint32_t) u[1] << 16
           | (uint32_t) u[2] << 8 | u[3];
}


static void
put32(char *p, uint32_t v)
{
    p[0] = (char) (v >> 24);
    p[1] = (char) (v >> 16);
    p[2] = (char) (v >> 8);
    p[3] = (char) v;
}


/* the CRCs of every frame the lengths describe, made right */
static void
fix_crcs(char *s, size_t len)
{
    size_t  p = 0, total;

    while (len - p >= VMX_EVENTSTREAM_PRELUDE_LEN) {
        put32(s + p + 8, vmx_eventstream_crc32(0, s + p, 8));
        total = get32(s + p);

        if (total < VMX_EVENTSTREAM_MIN_LEN || total > len - p) {
            return;
        }

        put32(s + p + total - 4, vmx_eventstream_crc32(0, s + p, total - 4));
        p += total;
    }
}


static int
same(const outcome_t *a, const outcome_t *b)
{
    return a->hash == b->hash && a->messages == b->messages && a->rc == b->rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    outcome_t    whole, cut, bytes;
    size_t       cap, ncuts, cuts[MAX_CUTS], *each, len, i, j, c;
    char        *s;

    if (size < 2) {
        return 0;
    }

    cap = (size_t) in[0] * 16;
    ncuts = in[1] & MAX_CUTS;

    if (size < 2 + 2 * ncuts) {
        return 0;
    }

    len = size - 2 - 2 * ncuts;
    s = malloc(len ? len : 1);
    memcpy(s, in + 2 + 2 * ncuts, len);

    if (in[1] & 0x80) {
        fix_crcs(s, len);
    }

    for (i = 0; i < ncuts; i++) {
        c = (size_t) (in[2 + 2 * i] << 8 | in[3 + 2 * i]) % (len + 1);

        for (j = i; j > 0 && cuts[j - 1] > c; j--) {
            cuts[j] = cuts[j - 1];
        }

        cuts[j] = c;
    }

    each = malloc((len ? len : 1) * sizeof(size_t));
    for (i = 0; i < len; i++) {
        each[i] = i + 1;
    }

    whole = run(s, len, NULL, 0, cap);
    cut = run(s, len, cuts, ncuts, cap);
    bytes = run(s, len, each, len, cap);

    free(each);
    free(s);

    if (!same(&whole, &cut) || !same(&whole, &bytes)) {
        abort();
    }

    return 0;
}
