/*
 * vmx_anthropic: OpenAI chat completions to and from Anthropic's Messages
 * API (POST /v1/messages), following the pattern of vmx_translate.h.
 *
 * Request, beyond the obvious one-to-one fields:
 *  - "system" and "developer" messages, wherever they stand, become the
 *    top-level "system" blocks in their order;
 *  - "tool" messages become "tool_result" blocks of a user turn, and
 *    consecutive turns of one role are merged, as the API requires;
 *  - empty text parts are dropped (the API rejects empty text blocks), and a
 *    message left without blocks disappears;
 *  - a text part's "cache_control" is passed on, so that clients can use
 *    prompt caching through the OpenAI shape;
 *  - "max_completion_tokens", else "max_tokens", else VMX_DEFAULT_MAX_TOKENS;
 *    "temperature" (OpenAI allows up to 2, Anthropic 1) and "top_p" are
 *    passed as they are, for Anthropic to judge;
 *  - "n" above 1, "logprobs": true, content parts other than text and
 *    image_url, non-function tools and unknown roles are refused (400): the
 *    answer could not be what the client asked for.  Every other field
 *    Anthropic does not know (seed, penalties, logit_bias,
 *    response_format...) is dropped.
 *
 * Answers: text blocks are joined into "content" ("" when the answer has
 * neither text nor tool calls, null when it has tool calls only);
 * "thinking", "redacted_thinking" and server-tool blocks are skipped, whole
 * and streamed, since OpenAI's chat completions have no place for them.
 *
 * The module writes the HTTP side: the headers x-api-key,
 * anthropic-version: 2023-06-01 and content-type, and HTTP 529
 * (overloaded) counted and retried as 503.
 */

#ifndef VMX_ANTHROPIC_H
#define VMX_ANTHROPIC_H

#include "vmx_translate.h"


/* Anthropic's token counts, -1 until reported; OpenAI's prompt_tokens is
   the sum of the first three */
typedef struct {
    int64_t                     input_tokens;
    int64_t                     cache_read_input_tokens;
    int64_t                     cache_creation_input_tokens;
    int64_t                     output_tokens;
} vmx_anthropic_usage_t;


typedef struct {
    const vmx_translate_ctx_t  *tc;
    vmx_anthropic_usage_t       counts;

    int64_t                     tool_block;   /* Anthropic index of the open
                                                 tool_use block, or -1 */
    int64_t                     tool_calls;   /* tool_use blocks so far: the
                                                 OpenAI index of the next */

    vmx_stream_error_t          error;        /* an error event, if any */

    unsigned                    started:1;    /* the role chunk was sent */
    unsigned                    finished:1;   /* the finish_reason chunk too */
    unsigned                    done:1;
} vmx_anthropic_stream_t;


int vmx_anthropic_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err);

int vmx_anthropic_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage);

void vmx_anthropic_stream_init(vmx_anthropic_stream_t *s,
    const vmx_translate_ctx_t *tc);

/*
 * One SSE event as vmx_sse delivers it.  The event name says what the event
 * is; an empty name (a proxy that dropped it) falls back to the "type" of
 * the data.  Unknown event types are skipped, as Anthropic asks of clients.
 * usage holds the counts reported so far after every event.
 */
int vmx_anthropic_stream_event(vmx_anthropic_stream_t *s, const char *event,
    size_t event_len, const char *data, size_t data_len, vmx_buf_t *out,
    vmx_usage_t *usage);

void vmx_anthropic_error(const vmx_translate_ctx_t *tc, int status,
    const char *body, size_t len, vmx_buf_t *out);

#endif /* VMX_ANTHROPIC_H */
