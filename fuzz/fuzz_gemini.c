/*
 * libFuzzer target of vmx_gemini.  Input: one byte of flags (bit 0:
 * include_usage, bit 1: allocations may fail, bits 2-7: how many succeed
 * then, times 8; the error status is 400 plus the byte), then a text used
 * four ways: as the client's request body, as a whole answer, as an error
 * answer, and as a stream whose events are separated by blank lines.
 * Whatever comes out must be valid JSON (each "data: " line of a stream
 * too, [DONE] aside), a failed request must say why, and nothing may follow
 * the end of a stream.  Every allocation is its own malloc, freed at the
 * end, so AddressSanitizer sees overruns and LeakSanitizer leaks.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_gemini.h"

#include "fuzz_common.h"


/* out from byte from on is whole "data: <JSON or [DONE]>\n\n" events */
static void
check_events(const vmx_buf_t *out, size_t from)
{
    if (out->failed || out->data == NULL) {
        return;
    }

    check_data_events(out->data + from, out->len - from, DONE_ANYWHERE);
}


/* where the event starting at p ends: its "\n\n", or end */
static const char *
blank_line(const char *p, const char *end)
{
    while (p + 1 < end && (p[0] != '\n' || p[1] != '\n')) {
        p++;
    }

    return (p + 1 < end) ? p : end;
}


static void
fuzz_request(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_translate_error_t  err = { NULL, NULL };
    vmx_json_error_t       perr;
    vmx_buf_t              out;

    tc->body = vmx_json_parse(text, len, tc->alloc, tc->alloc_ctx, 0, &perr);
    if (tc->body == NULL) {
        return;
    }

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);

    if (vmx_gemini_request(tc, &out, &err) == 0) {
        check(!out.failed);
        check_json(out.data, out.len);

    } else {
        check(err.message != NULL);
    }
}


static void
fuzz_response(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_usage_t  usage;
    vmx_buf_t    out;
    int          rc;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);

    rc = vmx_gemini_response(tc, text, len, &out, &usage);

    check(rc == -1 || rc == 0 || (rc >= 400 && rc <= 599));

    if (rc != -1) {
        check(!out.failed);
        check_json(out.data, out.len);
    }
}


static void
fuzz_error(vmx_translate_ctx_t *tc, int status, const char *text, size_t len)
{
    vmx_buf_t  out;

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);
    vmx_gemini_error(tc, status, text, len, &out);

    if (!out.failed) {
        check_json(out.data, out.len);
    }
}


static void
fuzz_stream(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_gemini_stream_t  s;
    vmx_usage_t          usage;
    vmx_buf_t            out;
    const char          *event, *end, *next;
    size_t               before;
    unsigned             done;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);
    vmx_gemini_stream_init(&s, tc);

    end = text + len;

    for (event = text; event < end; event = (next < end) ? next + 2 : end) {
        next = blank_line(event, end);

        before = out.len;
        done = s.done;

        if (vmx_gemini_stream_event(&s, event, next - event, &out, &usage)
            == 0)
        {
            check_events(&out, before);
        }

        check(!done || out.len == before);
    }

    before = out.len;
    done = s.done;

    vmx_gemini_stream_end(&s, &out, &usage);

    check(s.done && (!done || out.len == before));
    check_events(&out, 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmx_translate_ctx_t  tc;
    arena_t              a;
    const char          *text;
    size_t               len;

    if (size == 0) {
        return 0;
    }

    a.blocks = NULL;
    a.allocs = 0;
    a.left = (data[0] & 2) ? (size_t) (data[0] >> 2) * 8 : SIZE_MAX;

    memset(&tc, 0, sizeof(tc));
    tc.model = "gemini-2.0-flash";
    tc.model_len = strlen(tc.model);
    tc.id = "chatcmpl-fuzz";
    tc.id_len = strlen(tc.id);
    tc.created = 1700000000;
    tc.include_usage = data[0] & 1;
    tc.alloc = arena_alloc;
    tc.alloc_ctx = &a;

    /* an exact copy: a read past the end is a heap overflow */
    len = size - 1;
    text = memcpy(malloc(len ? len : 1), data + 1, len);

    fuzz_request(&tc, text, len);
    fuzz_response(&tc, text, len);
    fuzz_error(&tc, 400 + data[0], text, len);
    fuzz_stream(&tc, text, len);

    arena_free(&a);
    free((void *) text);

    return 0;
}
