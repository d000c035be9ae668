/*
 * libFuzzer target of vmx_anthropic.  Input: one byte of flags (bit 0:
 * stream, bit 1: include_usage, bit 2: allocations may fail, bits 3-7: how
 * many succeed then, times 4; the error status is 400 plus the byte), then
 * a text that is used four ways: as the client's request body, as a whole
 * answer, as an error answer, and as a stream of events separated by blank
 * lines, each "name\ndata".  Whatever comes out must be valid JSON (each
 * "data: " line of a stream too), an error must say why, and nothing may
 * follow the end of a stream.  Every allocation is its own malloc, freed at
 * the end, so AddressSanitizer sees overruns and LeakSanitizer leaks.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_anthropic.h"

#include "fuzz_common.h"


static void
fuzz_request(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_json_error_t        jerr;
    vmx_translate_error_t   err = { NULL, NULL };
    vmx_buf_t               out;

    tc->body = vmx_json_parse(text, len, tc->alloc, tc->alloc_ctx, 0, &jerr);
    if (tc->body == NULL) {
        return;
    }

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);

    if (vmx_anthropic_request(tc, &out, &err) == 0) {
        check(!vmx_buf_failed(&out));
        check_json(out.data, out.len);

    } else {
        check(err.message != NULL
              && (err.param == NULL || strlen(err.param) < 4096));
    }
}


static void
fuzz_response(vmx_translate_ctx_t *tc, const char *text, size_t len,
    int status)
{
    vmx_usage_t  usage;
    vmx_buf_t    out;
    int          rc;

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);
    vmx_usage_init(&usage);
    rc = vmx_anthropic_response(tc, text, len, &out, &usage);

    if (rc == 0) {
        check(usage.total_tokens < 0
              || usage.total_tokens >= usage.completion_tokens);
    }

    if (rc >= 0 && !vmx_buf_failed(&out)) {
        check_json(out.data, out.len);
    }

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);
    vmx_anthropic_error(tc, status, text, len, &out);

    if (!vmx_buf_failed(&out)) {
        check_json(out.data, out.len);
    }
}


/* the end of the event at p: a blank line or the end of the text */
static const char *
event_end(const char *p, const char *end)
{
    while (p < end && (p = memchr(p, '\n', (size_t) (end - p))) != NULL) {
        if (p + 1 < end && p[1] == '\n') {
            return p;
        }

        p++;
    }

    return end;
}


static void
fuzz_stream(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_anthropic_stream_t   s;
    vmx_usage_t              usage;
    vmx_buf_t                out;
    const char              *end = text + len, *ev, *evend, *nl, *data;
    size_t                   before;
    int                      was_done;

    vmx_anthropic_stream_init(&s, tc);
    vmx_usage_init(&usage);
    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);

    for (ev = text; ev < end; ev = (evend < end) ? evend + 2 : end) {
        evend = event_end(ev, end);
        nl = memchr(ev, '\n', (size_t) (evend - ev));
        data = nl ? nl + 1 : evend;

        before = out.len;
        was_done = s.done;

        vmx_anthropic_stream_event(&s, ev, (size_t) ((nl ? nl : evend) - ev),
                                   data, (size_t) (evend - data), &out,
                                   &usage);

        if (vmx_buf_failed(&out)) {
            return;
        }

        if (out.len > before) {
            check(!was_done);
            check_data_events(out.data + before, out.len - before,
                              s.done ? DONE_LAST : DONE_NEVER);
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    vmx_translate_ctx_t   tc;
    arena_t               a = ARENA_UNBOUNDED;
    const char           *text;
    size_t                len;

    if (size < 1) {
        return 0;
    }

    if (in[0] & 4) {
        a.left = (size_t) (in[0] >> 3) * 4;
    }

    /* an exact copy: a read past the end is a heap overflow */
    len = size - 1;
    text = memcpy(malloc(len ? len : 1), in + 1, len);

    memset(&tc, 0, sizeof(tc));
    tc.model = "claude-fuzz";
    tc.model_len = strlen(tc.model);
    tc.id = "chatcmpl-fuzz";
    tc.id_len = strlen(tc.id);
    tc.created = 1700000000;
    tc.stream = in[0] & 1;
    tc.include_usage = (in[0] >> 1) & 1;
    tc.alloc = arena_alloc;
    tc.alloc_ctx = &a;

    fuzz_request(&tc, text, len);
    fuzz_response(&tc, text, len, 400 + in[0]);
    fuzz_stream(&tc, text, len);

    arena_free(&a);
    free((void *) text);

    return 0;
}
