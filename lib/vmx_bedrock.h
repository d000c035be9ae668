/*
 * vmx_bedrock: OpenAI chat completions to and from Amazon Bedrock's
 * Converse API (POST /model/{modelId}/converse) and ConverseStream
 * (POST /model/{modelId}/converse-stream, answered in the binary event
 * stream that vmx_eventstream decodes), following vmx_translate.h.
 *
 * Request, beyond the one-to-one fields:
 *  - "system" and "developer" messages, wherever they stand, become the
 *    top-level "system" text blocks in their order;
 *  - "tool" messages become "toolResult" blocks (content as text) of a
 *    user turn, assistant "tool_calls" become "toolUse" blocks (arguments
 *    parsed: they must be JSON), and consecutive turns of one role are
 *    merged, as Converse requires;
 *  - image parts must be data: URLs of PNG, JPEG, GIF or WebP: Converse
 *    takes the image bytes (base64, passed as they are), not a URL;
 *  - empty text parts are dropped (Converse rejects blank text blocks);
 *  - "max_completion_tokens" (else "max_tokens"), "temperature", "top_p"
 *    and "stop" go to "inferenceConfig", for Bedrock to judge;
 *  - tool_choice "auto", "required" and a named function become
 *    toolChoice auto, any and tool; "none" drops the tools, since
 *    Converse has no such choice (a history with tool calls then needs
 *    them, and Bedrock says so with a 400);
 *  - "n" above 1, "logprobs": true, content parts other than text and
 *    image_url, non-function tools and unknown roles are refused (400).
 *    Other fields Converse does not know are dropped.
 *
 * Answers: text blocks are joined into "content" ("" when the answer has
 * neither text nor tool calls, null when it has tool calls only); the
 * reasoning blocks are skipped.  stopReason end_turn and stop_sequence
 * give "stop", max_tokens and model_context_window_exceeded "length",
 * tool_use "tool_calls", guardrail_intervened and content_filtered
 * "content_filter".  prompt_tokens is inputTokens plus the cache reads and
 * writes Bedrock counts apart; cached_tokens the cache reads.
 *
 * The module writes the HTTP side: the path (vmx_bedrock_path), the
 * headers content-type: application/json, accept (application/json or
 * application/vnd.amazon.eventstream) and the SigV4 ones (vmx_sigv4,
 * service "bedrock").
 */

#ifndef VMX_BEDROCK_H
#define VMX_BEDROCK_H

#include "vmx_eventstream.h"
#include "vmx_translate.h"


typedef struct {
    const vmx_translate_ctx_t  *tc;
    vmx_usage_t                 usage;        /* counts reported so far */

    int64_t                     tool_block;   /* Bedrock index of the open
                                                 toolUse block, or -1 */
    int64_t                     tool_calls;   /* toolUse blocks so far: the
                                                 OpenAI index of the next */

    vmx_stream_error_t          error;        /* an exception, if any; its
                                                 code is the exception type */

    unsigned                    started:1;    /* the role chunk was sent */
    unsigned                    finished:1;   /* the finish_reason chunk too */
    unsigned                    done:1;
} vmx_bedrock_stream_t;


/* "/model/<model id URI-encoded>/converse" or ".../converse-stream" */
void vmx_bedrock_path(vmx_buf_t *out, const char *model, size_t model_len,
    int stream);

int vmx_bedrock_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err);

int vmx_bedrock_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage);

void vmx_bedrock_stream_init(vmx_bedrock_stream_t *s,
    const vmx_translate_ctx_t *tc);

/*
 * One event message of the stream (":message-type" "event"): its
 * ":event-type" and JSON payload.  messageStop gives the finish_reason
 * chunk; metadata, which follows it, the usage chunk (when asked),
 * "[DONE]" and s->done.  Unknown event types are skipped.  usage holds
 * the counts reported so far after every event.
 */
int vmx_bedrock_stream_event(vmx_bedrock_stream_t *s, const char *event_type,
    size_t event_type_len, const char *payload, size_t payload_len,
    vmx_buf_t *out, vmx_usage_t *usage);

/*
 * An "exception" message (its ":exception-type" and payload
 * {"message":..}) or an "error" message (":error-code",
 * ":error-message") of the stream: an error event (none after the end of
 * the stream), and s->done.  Returns
 * the HTTP status the error stands for (throttlingException 429,
 * validationException 400, modelStreamErrorException 502,
 * modelTimeoutException 504, serviceUnavailableException 503, others
 * 500), for a caller that has sent nothing yet and would rather answer
 * or fall back with a status.
 */
int vmx_bedrock_stream_exception(vmx_bedrock_stream_t *s,
    const vmx_eventstream_message_t *m, vmx_buf_t *out);

/*
 * Bedrock's error answer ({"message":..}) of that status as OpenAI's
 * envelope; error_type is the x-amzn-ErrorType header value (e.g.
 * "ThrottlingException:http://...", may be empty).  The status stays the
 * one Bedrock sent: 429 throttling, 400 validation, 403 access denied...
 */
void vmx_bedrock_error(const vmx_translate_ctx_t *tc, int status,
    const char *body, size_t len, const char *error_type,
    size_t error_type_len, vmx_buf_t *out);

#endif /* VMX_BEDROCK_H */
