/*
 * libFuzzer target of vmx_sse.  Input: one byte choosing the buffer size,
 * one byte with the number of cuts (mod 16), two bytes per cut (a position,
 * mod the stream length + 1), then the stream.  The stream is parsed whole,
 * cut at those positions and byte by byte: all three must deliver the same
 * events and end the same way, which must also match a plain line-by-line
 * reading of the WHATWG rules below.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_sse.h"

#include "fuzz_common.h"


#define MAX_CUTS  15


/* what a run delivered: a hash of the events and how it ended */
typedef struct {
    uint64_t     hash;
    size_t       events;
    int          rc;
    const char  *buf;         /* the parser's buffer, to check the pointers */
    size_t       cap;
} outcome_t;


static void
record(outcome_t *o, const char *event, size_t event_len, const char *data,
    size_t data_len)
{
    o->hash = hash_bytes(o->hash, &event_len, sizeof(event_len));
    o->hash = hash_bytes(o->hash, event, event_len);
    o->hash = hash_bytes(o->hash, &data_len, sizeof(data_len));
    o->hash = hash_bytes(o->hash, data, data_len);
    o->events++;
}


static int
on_event(void *ctx, const char *event, size_t event_len, const char *data,
    size_t data_len)
{
    outcome_t  *o = ctx;

    if (event != o->buf || data != o->buf + event_len
        || event_len + data_len > o->cap)
    {
        abort();
    }

    record(o, event, event_len, data, data_len);

    return 0;
}


/* feeds stream in pieces that end at the sorted cuts */
static outcome_t
run(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t cap)
{
    vmx_sse_parser_t   p;
    outcome_t          o = { 0xcbf29ce484222325ULL, 0, VMX_SSE_OK, NULL, cap };
    char              *buf;
    size_t             i, from = 0, to;

    buf = malloc(cap ? cap : 1);
    o.buf = buf;
    vmx_sse_init(&p, buf, cap);

    for (i = 0; i <= ncuts && o.rc == VMX_SSE_OK; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        o.rc = vmx_sse_feed(&p, s + from, to - from, on_event, &o);
        from = to;
    }

    if (o.rc == VMX_SSE_OK) {
        o.rc = vmx_sse_finish(&p, on_event, &o);
    }

    free(buf);

    return o;
}


/* the reference: the WHATWG steps on one complete line */
typedef struct {
    char    *event, *data;
    size_t   event_len, data_len, cap;
    int      has_data;
} ref_t;


static int
ref_line(ref_t *r, const char *line, size_t n, outcome_t *o)
{
    const char  *colon, *value = line + n;
    size_t       name_len = n, value_len = 0;

    if (n == 0) {
        if (r->has_data) {
            record(o, r->event, r->event_len, r->data, r->data_len);
        }

        r->event_len = r->data_len = 0;
        r->has_data = 0;
        return 0;
    }

    colon = memchr(line, ':', n);

    if (colon == line) {
        return 0;
    }

    if (colon) {
        name_len = (size_t) (colon - line);
        value = colon + 1;
        value += (value < line + n && *value == ' ');
        value_len = (size_t) (line + n - value);
    }

    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (r->event_len + r->data_len + r->has_data + value_len > r->cap) {
            return -1;
        }

        if (r->has_data) {
            r->data[r->data_len++] = '\n';
        }

        memcpy(r->data + r->data_len, value, value_len);
        r->data_len += value_len;
        r->has_data = 1;

    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        if (r->event_len + r->data_len + value_len > r->cap) {
            return -1;
        }

        memcpy(r->event, value, value_len);
        r->event_len = value_len;
    }

    return 0;
}


static outcome_t
reference(const char *s, size_t len, size_t cap)
{
    outcome_t    o = { 0xcbf29ce484222325ULL, 0, VMX_SSE_OK, NULL, cap };
    ref_t        r = { NULL, NULL, 0, 0, cap, 0 };
    const char  *end = s + len, *line, *eol;

    r.event = malloc(cap + 1);
    r.data = malloc(cap + 1);

    if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
        s += 3;
    }

    while (s < end && o.rc == VMX_SSE_OK) {
        for (line = s, eol = s; eol < end && *eol != '\n' && *eol != '\r'; ) {
            eol++;
        }

        s = eol + (eol < end);
        s += (eol < end && *eol == '\r' && s < end && *s == '\n');

        if (ref_line(&r, line, (size_t) (eol - line), &o) != 0) {
            o.rc = VMX_SSE_TOO_LARGE;
        }
    }

    /* at the end: the last line, then its missing blank line */
    if (o.rc == VMX_SSE_OK) {
        ref_line(&r, "", 0, &o);
    }

    free(r.event);
    free(r.data);

    return o;
}


static int
same(const outcome_t *a, const outcome_t *b)
{
    return a->hash == b->hash && a->events == b->events && a->rc == b->rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    outcome_t    whole, cut, bytes, ref;
    size_t       cap, ncuts, cuts[MAX_CUTS], *each, len, i, j, c;
    const char  *s;

    if (size < 2) {
        return 0;
    }

    cap = (size_t) in[0] * 8;
    ncuts = in[1] % (MAX_CUTS + 1);

    if (size < 2 + 2 * ncuts) {
        return 0;
    }

    s = (const char *) in + 2 + 2 * ncuts;
    len = size - 2 - 2 * ncuts;

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
    ref = reference(s, len, cap);

    free(each);

    if (!same(&whole, &cut) || !same(&whole, &bytes) || !same(&whole, &ref)) {
        abort();
    }

    return 0;
}
