/*
 * libFuzzer target of vmx_bedrock (and of vmx_sigv4 on what the module
 * signs).  Input: one byte choosing what to drive (mod 5), one byte of
 * flags, then the text:
 *
 *   0  an OpenAI request, translated to Converse;
 *   1  a Converse answer, translated to a chat.completion;
 *   2  a ConverseStream: one event a line, "<event type> <JSON payload>",
 *      "!<exception type> <payload>" for an exception message;
 *   3  an error answer: the x-amzn-ErrorType value, a line end, the body;
 *   4  a model id, a line end, a query: the Bedrock path, signed.
 *
 * Nothing may crash, and every output must be what it claims: JSON for a
 * body, "data: <JSON or [DONE]>\n\n" events for a stream, with nothing
 * after the end of the stream.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_bedrock.h"
#include "vmx_sigv4.h"

#include "fuzz_common.h"


static arena_t               arena = ARENA_UNBOUNDED;
static vmx_translate_ctx_t   tc;


/* out is a run of "data: ...\n\n" events, each JSON or [DONE] */
static void
check_events(const vmx_buf_t *out)
{
    const char  *p = out->data, *end, *e;

    if (out->len == 0) {
        return;
    }

    for (end = p + out->len; p < end; p = e + 2) {
        if (end - p < 8 || memcmp(p, "data: ", 6) != 0) {
            abort();
        }

        p += 6;

        for (e = p; e + 1 < end && !(e[0] == '\n' && e[1] == '\n'); e++) {
            /* void */
        }

        if (e + 1 >= end) {
            abort();
        }

        if (!(e - p == 6 && memcmp(p, "[DONE]", 6) == 0)) {
            check_json(p, (size_t) (e - p));
        }
    }
}


static void
drive_request(const char *s, size_t len)
{
    vmx_json_error_t       jerr;
    vmx_translate_error_t  err;
    vmx_buf_t              out;

    tc.body = vmx_json_parse(s, len, arena_alloc, &arena, 0, &jerr);
    if (tc.body == NULL) {
        return;
    }

    vmx_buf_init(&out, arena_alloc, &arena, 0);

    if (vmx_bedrock_request(&tc, &out, &err) == 0) {
        check_json(out.data, out.len);

    } else if (err.message == NULL) {
        abort();
    }
}


static void
drive_response(const char *s, size_t len)
{
    vmx_usage_t  usage;
    vmx_buf_t    out;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, arena_alloc, &arena, 0);

    if (vmx_bedrock_response(&tc, s, len, &out, &usage) == 0) {
        check_json(out.data, out.len);
    }
}


static void
drive_stream(const char *s, size_t len)
{
    vmx_bedrock_stream_t        st;
    vmx_eventstream_message_t   m;
    vmx_usage_t                 usage;
    vmx_buf_t                   out;
    const char                 *end = s + len, *eol, *sp;
    size_t                      done_len = 0;
    int                         at_done = 0;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, arena_alloc, &arena, 0);
    vmx_bedrock_stream_init(&st, &tc);

    for ( /* void */ ; s < end; s = eol + 1) {
        eol = memchr(s, '\n', (size_t) (end - s));
        eol = eol ? eol : end;

        sp = memchr(s, ' ', (size_t) (eol - s));
        sp = sp ? sp : eol;

        if (st.done && !at_done) {
            at_done = 1;
            done_len = out.len;
        }

        if (s < sp && *s == '!') {
            memset(&m, 0, sizeof(m));
            m.exception_type.data = s + 1;
            m.exception_type.len = (size_t) (sp - s - 1);
            m.payload = sp + (sp < eol);
            m.payload_len = (size_t) (eol - m.payload);
            vmx_bedrock_stream_exception(&st, &m, &out);
            continue;
        }

        vmx_bedrock_stream_event(&st, s, (size_t) (sp - s), sp + (sp < eol),
                                 (size_t) (eol - sp - (sp < eol)), &out,
                                 &usage);
    }

    if (at_done && out.len != done_len) {
        abort();
    }

    check_events(&out);
}


static void
drive_error(const char *s, size_t len, int status)
{
    const char  *eol;
    vmx_buf_t    out;

    eol = memchr(s, '\n', len);
    eol = eol ? eol : s + len;

    vmx_buf_init(&out, arena_alloc, &arena, 0);
    vmx_bedrock_error(&tc, status, eol + (eol < s + len),
                      (size_t) (s + len - eol - (eol < s + len)), s,
                      (size_t) (eol - s), &out);
    check_json(out.data, out.len);
}


static void
drive_sign(const char *s, size_t len)
{
    static const vmx_sigv4_header_t  headers[] = {
        { { "Content-Type", 12 }, { " application/json  x ", 21 } },
    };
    vmx_sigv4_request_t              r;
    const char                      *eol;
    vmx_buf_t                        path, out;

    eol = memchr(s, '\n', len);
    eol = eol ? eol : s + len;

    vmx_buf_init(&path, arena_alloc, &arena, 0);
    vmx_bedrock_path(&path, s, (size_t) (eol - s), len & 1);

    memset(&r, 0, sizeof(r));
    r.method = (vmx_sigv4_str_t) vmx_sigv4_string("POST");
    r.host = (vmx_sigv4_str_t) vmx_sigv4_string("bedrock-runtime.x");
    r.path.data = path.data;
    r.path.len = path.len;
    r.query.data = eol + (eol < s + len);
    r.query.len = (size_t) (s + len - r.query.data);
    r.headers = headers;
    r.nheaders = 1;
    r.payload.data = s;
    r.payload.len = len;
    r.region = (vmx_sigv4_str_t) vmx_sigv4_string("us-east-1");
    r.service = (vmx_sigv4_str_t) vmx_sigv4_string("bedrock");
    r.access_key_id = (vmx_sigv4_str_t) vmx_sigv4_string("AKID");
    r.secret_key = (vmx_sigv4_str_t) vmx_sigv4_string("secret");
    r.session_token.data = s;
    r.session_token.len = (size_t) (eol - s);
    r.time = (int64_t) (len % 10000) * 86400 * 97;
    r.content_sha256 = len & 1;

    vmx_buf_init(&out, arena_alloc, &arena, 0);

    /* any path and query can be signed; a token only without line breaks */
    if (vmx_sigv4_sign(&r, &out) != 0) {
        if (memchr(s, '\r', r.session_token.len) == NULL
            && memchr(s, '\0', r.session_token.len) == NULL)
        {
            abort();
        }

        return;
    }

    if (out.len < 2 || memcmp(out.data + out.len - 2, "\r\n", 2) != 0) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    const char  *s = (const char *) in + 2;
    size_t       len = size - 2;

    if (size < 2) {
        return 0;
    }

    memset(&tc, 0, sizeof(tc));
    tc.model = "anthropic.claude\"\\";
    tc.model_len = 18;
    tc.id = "chatcmpl-1";
    tc.id_len = 10;
    tc.created = 1700000000;
    tc.stream = 1;
    tc.include_usage = in[1] & 1;
    tc.alloc = arena_alloc;
    tc.alloc_ctx = &arena;

    switch (in[0] % 5) {
    case 0:
        drive_request(s, len);
        break;
    case 1:
        drive_response(s, len);
        break;
    case 2:
        drive_stream(s, len);
        break;
    case 3:
        drive_error(s, len, 400 + in[1] % 200);
        break;
    default:
        drive_sign(s, len);
    }

    arena_free(&arena);

    return 0;
}
