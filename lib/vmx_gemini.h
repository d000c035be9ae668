/*
 * vmx_gemini: OpenAI chat completions to and from Gemini's native
 * generateContent and streamGenerateContent?alt=sse, following the pattern
 * of vmx_translate.h.
 *
 * The module writes the request line and headers (x-goog-api-key, the path
 * models/{model}:generateContent or :streamGenerateContent?alt=sse);
 * vmx_gemini_request() writes only the JSON body, which has no model.
 *
 * Gemini's stream has no end event: each SSE event is a whole
 * GenerateContentResponse, the one carrying finishReason produces the
 * finish_reason chunk, and vmx_gemini_stream_end() writes the usage chunk
 * (when asked) and [DONE] once the provider closes the stream normally.
 */

#ifndef VMX_GEMINI_H
#define VMX_GEMINI_H

#include "vmx_translate.h"


/* Gemini's most candidates (candidateCount) per request */
#define VMX_GEMINI_MAX_CHOICES  8


typedef struct {
    unsigned            started:1;     /* the role chunk was sent */
    unsigned            finished:1;    /* the finish_reason chunk was sent */
    unsigned            tool_calls;    /* tool calls sent so far */
} vmx_gemini_choice_t;


typedef struct {
    const vmx_translate_ctx_t  *tc;
    vmx_stream_error_t          error;     /* an error event, if any */
    unsigned                    done:1;
    unsigned                    calls;     /* for "call_<n>" ids */
    vmx_gemini_choice_t         choice[VMX_GEMINI_MAX_CHOICES];
} vmx_gemini_stream_t;


int vmx_gemini_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err);

int vmx_gemini_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage);

void vmx_gemini_stream_init(vmx_gemini_stream_t *s,
    const vmx_translate_ctx_t *tc);

/* data: the data of one SSE event, a whole GenerateContentResponse */
int vmx_gemini_stream_event(vmx_gemini_stream_t *s, const char *data,
    size_t data_len, vmx_buf_t *out, vmx_usage_t *usage);

/* the provider closed the stream normally: usage chunk if asked, [DONE];
   nothing when an error event already ended the stream */
void vmx_gemini_stream_end(vmx_gemini_stream_t *s, vmx_buf_t *out,
    const vmx_usage_t *usage);

/* the delay a RetryInfo among the error's details asks for, in seconds
   rounded up, or -1 */
int64_t vmx_gemini_error(const vmx_translate_ctx_t *tc, int status,
    const char *body, size_t len, vmx_buf_t *out);

#endif /* VMX_GEMINI_H */
