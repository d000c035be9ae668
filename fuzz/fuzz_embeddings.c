/*
 * libFuzzer target of vmx_embeddings.  Input: one byte of flags (bit 0:
 * base64 answers, bit 1: allocations may fail, bits 2-7: how many succeed
 * then, times 8; bits 2-3 also: the inputs of the request the answers are
 * for, 1 to 4), then a text used two ways: as the client's request body,
 * turned into every provider's request, and as the 2xx answer of Gemini,
 * Titan and Cohere to a request of that many inputs.  Whatever comes out
 * must be valid JSON, a refused request must say why, and an answer taken
 * must have a vector for every input.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_embeddings.h"

#include "fuzz_common.h"


/* the provider calls of a request tried: the first ones and the last */
#define FUZZ_CALLS  4


static void
fuzz_provider_request(vmx_translate_ctx_t *tc,
    const vmx_embeddings_request_t *r, vmx_embeddings_family_e family,
    size_t call)
{
    vmx_translate_error_t  err = { NULL, NULL };
    vmx_buf_t              out;
    int                    rc;

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);

    rc = family ? vmx_embeddings_bedrock_request(tc, family, r, call, &out,
                                                 &err)
                : vmx_embeddings_gemini_request(tc, r, call, &out, &err);

    if (rc == 0) {
        if (!out.failed) {
            check_json(out.data, out.len);
        }

    } else {
        check(err.message != NULL);
    }
}


static void
fuzz_request(vmx_translate_ctx_t *tc, const char *text, size_t len)
{
    vmx_embeddings_request_t  r;
    vmx_translate_error_t     err = { NULL, NULL };
    vmx_json_error_t          perr;
    vmx_embeddings_family_e   family;
    size_t                    calls, call, i;

    tc->body = vmx_json_parse(text, len, tc->alloc, tc->alloc_ctx, 0, &perr);
    if (tc->body == NULL) {
        return;
    }

    if (vmx_embeddings_parse(tc, &r, &err) != 0) {
        check(err.message != NULL);
        return;
    }

    check(r.count >= 1 && r.count <= VMX_EMBEDDINGS_MAX_INPUTS);

    for (i = 0; i < r.count; i++) {
        check(vmx_embeddings_input(&r, i) != NULL);
    }

    check(vmx_embeddings_input(&r, r.count) == NULL);

    for (family = 0; family <= VMX_EMBEDDINGS_COHERE; family++) {
        calls = family ? vmx_embeddings_bedrock_calls(family, &r)
                       : vmx_embeddings_gemini_calls(&r);
        check(calls >= 1 && calls <= r.count);

        for (call = 0; call < calls && call < FUZZ_CALLS; call++) {
            fuzz_provider_request(tc, &r, family, call);
        }

        fuzz_provider_request(tc, &r, family, calls - 1);
    }
}


/* text as the answer of family (0: Gemini) to a request of n inputs */
static void
fuzz_answer(vmx_translate_ctx_t *tc, vmx_embeddings_family_e family,
    size_t n, int base64, const char *text, size_t len)
{
    vmx_embeddings_request_t  r;
    vmx_embeddings_answer_t   a;
    vmx_translate_error_t     err;
    vmx_json_error_t          perr;
    vmx_usage_t               usage;
    vmx_buf_t                 out;
    char                      body[128];
    int                       rc;

    snprintf(body, sizeof(body), "{\"model\":\"m\",\"input\":%s,"
             "\"encoding_format\":\"%s\"}",
             n == 1 ? "\"a\"" : n == 2 ? "[\"a\",\"b\"]"
             : n == 3 ? "[\"a\",\"b\",\"c\"]" : "[\"a\",\"b\",\"c\",\"d\"]",
             base64 ? "base64" : "float");

    tc->body = vmx_json_parse(body, strlen(body), tc->alloc, tc->alloc_ctx,
                              0, &perr);
    if (tc->body == NULL || vmx_embeddings_parse(tc, &r, &err) != 0) {
        return;
    }

    vmx_buf_init(&out, tc->alloc, tc->alloc_ctx, 0);
    vmx_embeddings_answer_init(&a, tc, &r, &out);

    /* Titan answers once a call: the same text for every input */
    do {
        rc = family ? vmx_embeddings_bedrock_response(&a, family, text, len,
                                                      &out)
                    : vmx_embeddings_gemini_response(&a, text, len, &out);
    } while (rc == 0 && family == VMX_EMBEDDINGS_TITAN && a.written < n);

    check(a.written <= n);

    if (rc != 0) {
        return;
    }

    check(a.written == n);
    check(vmx_embeddings_answer_end(&a, 7, &out, &usage) == 0);
    check(usage.prompt_tokens >= 0
          && usage.total_tokens == usage.prompt_tokens);

    if (!out.failed) {
        check_json(out.data, out.len);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmx_translate_ctx_t      tc;
    vmx_embeddings_family_e  family;
    arena_t                  a;
    const char              *text;
    size_t                   len, n;

    if (size == 0) {
        return 0;
    }

    a.blocks = NULL;
    a.allocs = 0;
    a.left = (data[0] & 2) ? (size_t) (data[0] >> 2) * 8 : SIZE_MAX;

    memset(&tc, 0, sizeof(tc));
    tc.model = "gemini-embedding-001";
    tc.model_len = strlen(tc.model);
    tc.alloc = arena_alloc;
    tc.alloc_ctx = &a;

    /* an exact copy: a read past the end is a heap overflow */
    len = size - 1;
    text = memcpy(malloc(len ? len : 1), data + 1, len);
    n = 1 + ((data[0] >> 2) & 3);

    fuzz_request(&tc, text, len);

    for (family = 0; family <= VMX_EMBEDDINGS_COHERE; family++) {
        fuzz_answer(&tc, family, n, data[0] & 1, text, len);
    }

    arena_free(&a);
    free((void *) text);

    return 0;
}
