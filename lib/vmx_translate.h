/*
 * vmx_translate: what every provider translation shares.
 *
 * A provider file (vmx_anthropic.c, vmx_gemini.c, vmx_bedrock.c) turns the
 * client's OpenAI chat-completions request into the provider's native
 * request, and the provider's answers (whole, streamed event by event, or
 * errors) back into OpenAI's shapes, byte for byte what OpenAI would send.
 * Pure functions: memory only from the caller's allocator, no I/O, no
 * globals, so unit tests and fuzzers call them directly.
 *
 * Every provider file follows the same pattern (P = anthropic, gemini,
 * bedrock):
 *
 *   int  vmx_P_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
 *            vmx_translate_error_t *err);
 *        The native request body.  0, or -1 when the client's request
 *        cannot be expressed (err says why: the gateway answers 400).
 *
 *   int  vmx_P_response(const vmx_translate_ctx_t *tc, const char *body,
 *            size_t len, vmx_buf_t *out, vmx_usage_t *usage);
 *        A whole 2xx answer as an OpenAI "chat.completion".  Returns 0, or
 *        the HTTP status to answer with when the answer is an error in
 *        disguise (e.g. a safety block: out then holds OpenAI's error
 *        envelope), or -1 when the body cannot be read.
 *
 *   void vmx_P_stream_init(vmx_P_stream_t *s, const vmx_translate_ctx_t *tc);
 *   int  vmx_P_stream_event(vmx_P_stream_t *s, <one provider event>,
 *            vmx_buf_t *out, vmx_usage_t *usage);
 *        Appends zero or more complete "data: <chat.completion.chunk>\n\n"
 *        lines for one provider event; at the provider's end of stream it
 *        appends the usage chunk (only when tc->include_usage) and
 *        "data: [DONE]\n\n" and sets s->done.  A provider error event
 *        becomes "data: {\"error\":{...}}\n\n" and sets s->done too.
 *        Returns 0, or -1 when the event cannot be read.
 *
 *   void vmx_P_error(const vmx_translate_ctx_t *tc, int status,
 *            const char *body, size_t len, vmx_buf_t *out);
 *        The provider's error answer of that status as OpenAI's envelope
 *        {"error":{"message","type","param","code"}}, keeping the
 *        provider's message.
 */

#ifndef VMX_TRANSLATE_H
#define VMX_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>

#include "vmx_buf.h"
#include "vmx_json.h"


/* documented default when the client gives no max_tokens (Anthropic needs one) */
#define VMX_DEFAULT_MAX_TOKENS  4096


typedef struct {
    const vmx_json_t   *body;         /* the client's request, parsed */

    const char         *model;        /* the provider's model id */
    size_t              model_len;

    const char         *id;           /* "chatcmpl-..." for the answers */
    size_t              id_len;
    int64_t             created;      /* unix time for the answers */

    unsigned            stream:1;
    unsigned            include_usage:1;

    vmx_json_alloc_pt   alloc;
    void               *alloc_ctx;
} vmx_translate_ctx_t;


typedef struct {
    int64_t             prompt_tokens;       /* -1 when not reported */
    int64_t             completion_tokens;
    int64_t             total_tokens;
    int64_t             cached_tokens;       /* prompt tokens read from cache */
    int64_t             cache_write_tokens;  /* prompt tokens written to it */
} vmx_usage_t;


typedef struct {
    const char         *message;      /* static or allocator memory */
    const char         *param;        /* e.g. "messages[2].content", or NULL */
} vmx_translate_error_t;


/*
 * An error a provider sent inside a 2xx stream: status is the HTTP status
 * the client gets for it while nothing has reached the client (see
 * vmx_stream_error_status()), 0 when there was none; code is the
 * provider's code or type, NULL when it had none.  The strings are copies
 * in the translation's memory: the provider's bytes do not outlive the
 * event.
 */
typedef struct {
    int                 status;
    const char         *code;
    size_t              code_len;
    const char         *message;
    size_t              message_len;
} vmx_stream_error_t;


void vmx_usage_init(vmx_usage_t *usage);

/*
 * A usage object was reported: a count it left out is 0, not unknown (a
 * provider omits zeros, e.g. Gemini's candidatesTokenCount on a safety
 * block); total_tokens is then prompt + completion when absent.
 */
void vmx_usage_reported(vmx_usage_t *usage);

/*
 * The provider side, shared by every provider file.
 */

/* v is a JSON string equal to lit */
int vmx_translate_is(const vmx_json_t *v, const char *lit);

/* role is "system" or "developer": OpenAI's instructions to the model */
int vmx_translate_system_role(const vmx_json_t *role);

/* name[0..len) is lit (an event's name) */
int vmx_translate_named(const char *name, size_t len, const char *lit);

/* obj's member name when it is neither absent nor null, else NULL */
const vmx_json_t *vmx_translate_member(const vmx_json_t *obj,
    const char *name);

/* obj's member name when it is a string, else NULL */
const vmx_json_t *vmx_translate_string(const vmx_json_t *obj,
    const char *name);

/* text parsed in tc's memory, or NULL when it is no JSON */
vmx_json_t *vmx_translate_parse(const vmx_translate_ctx_t *tc,
    const char *text, size_t len);

/*
 * A request that cannot be expressed: err->message is message, err->param
 * param_fmt formatted (with indexes) in tc's memory, or NULL when out of
 * memory.  Always -1.
 */
int vmx_translate_fail(const vmx_translate_ctx_t *tc,
    vmx_translate_error_t *err, const char *message, const char *param_fmt,
    ...) __attribute__((format(printf, 4, 5)));

/* what an answer of one choice cannot honour: n other than 1, logprobs;
   0, or -1 with err set */
int vmx_translate_refused(const vmx_translate_ctx_t *tc,
    vmx_translate_error_t *err, const vmx_json_t *body);

/*
 * The tool call j of message i, {"id","type":"function","function":{"name",
 * "arguments"}}: its id and function name (strings) and its arguments
 * parsed (*input NULL when there are none, or ""); 0, or -1 with err set.
 */
int vmx_translate_tool_call(const vmx_translate_ctx_t *tc,
    vmx_translate_error_t *err, const vmx_json_t *call, size_t i, size_t j,
    const vmx_json_t **id, const vmx_json_t **name, const vmx_json_t **input);

/*
 * A "data:<media type>[;params];base64,<data>" URL of len bytes (the
 * caller saw its "data:"): its media type and its data; 0, or -1 when it
 * is not base64.
 */
int vmx_translate_data_url(const char *url, size_t len, const char **media,
    size_t *media_len, const char **data, size_t *data_len);

/*
 * The OpenAI side, shared by every provider file.
 *
 * vmx_openai_chunk_open() writes
 *   data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,
 *          "system_fingerprint":null,"choices":[
 * and vmx_openai_chunk_close() writes "]}\n\n": the caller writes the choice
 * objects between them.  vmx_openai_completion_open() likewise opens a whole
 * {"id":..,"object":"chat.completion",...,"choices":[ ; the caller writes the
 * choices, then "]," vmx_openai_usage() "}".
 */
void vmx_openai_chunk_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out);
void vmx_openai_chunk_close(vmx_buf_t *out);
void vmx_openai_completion_open(const vmx_translate_ctx_t *tc,
    vmx_buf_t *out);

/* {"prompt_tokens":..,"completion_tokens":..,"total_tokens":..,
    "prompt_tokens_details":{"cached_tokens":..}} (unknown counts as 0) */
void vmx_openai_usage(vmx_buf_t *out, const vmx_usage_t *usage);

/* the final stream chunk with "choices":[] and the usage */
void vmx_openai_usage_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    const vmx_usage_t *usage);

/*
 * A chunk with one choice, index 0: vmx_openai_delta_open() writes the
 * chunk up to the inside of the choice's "delta" object, the caller writes
 * its members, vmx_openai_delta_close() ends the chunk with finish_reason
 * (NULL: null).  vmx_openai_role_chunk() is a stream's first chunk.
 */
void vmx_openai_delta_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out);
void vmx_openai_delta_close(vmx_buf_t *out, const char *finish_reason);
void vmx_openai_role_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out);

/*
 * A whole answer of one choice: vmx_openai_message_open() opens the
 * chat.completion up to the value of the message's "content", the caller
 * writes the content and the message's other members,
 * vmx_openai_message_close() ends the choice with finish_reason and writes
 * "],\"usage\":" (the caller writes vmx_openai_usage() and "}").
 */
void vmx_openai_message_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out);
void vmx_openai_message_close(vmx_buf_t *out, const char *finish_reason);

/* one of a message's "tool_calls" (preceded by a comma unless first):
   {"id":..,"type":"function","function":{"name":..,"arguments":..}} with
   input (a JSON value, NULL: {}) as the arguments string */
void vmx_openai_tool_call(vmx_buf_t *out, int first, const vmx_json_t *id,
    const vmx_json_t *name, const vmx_json_t *input);

/*
 * Chunks of one choice, index 0, none with a finish_reason:
 * vmx_openai_content_chunk() a delta of text (a JSON string),
 * vmx_openai_tool_call_chunk() opens tool call index with its id and name
 * and empty arguments, vmx_openai_arguments_chunk() adds to the arguments
 * of tool call index (a JSON string).
 */
void vmx_openai_content_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    const vmx_json_t *text);
void vmx_openai_tool_call_chunk(const vmx_translate_ctx_t *tc,
    vmx_buf_t *out, int64_t index, const vmx_json_t *id,
    const vmx_json_t *name);
void vmx_openai_arguments_chunk(const vmx_translate_ctx_t *tc,
    vmx_buf_t *out, int64_t index, const vmx_json_t *arguments);

/* "data: [DONE]\n\n" */
void vmx_openai_done(vmx_buf_t *out);

/* an error type and the HTTP status it stands for */
typedef struct {
    const char  *type;
    int          status;
} vmx_type_status_t;

/* the status of type in table (n entries); 500 when absent or type NULL */
int vmx_type_status(const vmx_type_status_t *table, size_t n,
    const char *type);

/* {"error":{"message":..,"type":..,"param":null|..,"code":..|null}};
   code and param may be NULL */
void vmx_openai_error(vmx_buf_t *out, const char *message, size_t len,
    const char *type, const char *code, const char *param);

/* the same as a stream event: "data: {"error":{...}}\n\n" */
void vmx_openai_error_event(vmx_buf_t *out, const char *message, size_t len,
    const char *type, const char *code);

/*
 * A provider's error inside its stream: the error event (of OpenAI's type
 * for status, with code) into out, and e set with status mapped by
 * vmx_stream_error_status(); message and code are copied.
 */
void vmx_stream_fail(vmx_json_alloc_pt alloc, void *alloc_ctx,
    vmx_stream_error_t *e, vmx_buf_t *out, int status, const char *message,
    size_t len, const char *code);

/*
 * The client's status for a provider's in-stream error of that status and
 * code, while nothing has reached the client (then a failed attempt, and
 * the next model is tried when the status allows it):
 *   429   throttling, rate limits and overload: status 429 or a code
 *         overloaded_error, rate_limit_error, rate_limit_exceeded,
 *         resource_exhausted
 *   503   the provider says it is unavailable (503)
 *   4xx   the request's own fault (400, 404, 413, 422...) as it is
 *   502   anything else: 5xx, 401/403 (the gateway's credentials), unknown
 */
int vmx_stream_error_status(int status, const char *code);

/*
 * An OpenAI-format stream event's data ({"error":{"message","type",
 * "code"}}, as OpenAI and Groq send mid-stream): 1 with e set (the status
 * from a numeric code or status member, else from the type), or 0 when
 * data is no error object.
 */
int vmx_openai_stream_error(const char *data, size_t len,
    vmx_json_alloc_pt alloc, void *alloc_ctx, vmx_stream_error_t *e);

/*
 * Whether translated stream output ("data: ...\n\n" events) carries
 * something of the answer: a delta with content, tool calls or a refusal, a
 * finish_reason, usage, an error or [DONE]; 0 when it holds only role
 * chunks (or nothing), which a client can wait for.
 */
int vmx_openai_stream_substantive(const char *out, size_t len,
    vmx_json_alloc_pt alloc, void *alloc_ctx);

/*
 * An OpenAI-compatible provider's error body completed to OpenAI's envelope
 * {"error":{"message","type","param","code"}}: the members it lacks are
 * added after its own, kept byte for byte ("param" null, "code" the type
 * or null, "type" and "message" the given defaults), as is every other
 * member of the body; an "error" that is a string becomes the message.
 * Returns 1 with the body in out, 0 when root is complete or is no
 * {"error": ...} object (out untouched).
 */
int vmx_openai_error_complete(vmx_buf_t *out, const vmx_json_t *root,
    const char *type, const char *message);

/*
 * A stream chunk (the parsed data of its event) without its usage, as Groq
 * sends it in its finish chunk: the top-level "usage" and "x_groq"'s
 * "usage" are left out, every other member kept byte for byte.  Returns 1
 * with the chunk in out, 0 when it has neither (out untouched).
 */
int vmx_openai_chunk_without_usage(vmx_buf_t *out, const vmx_json_t *root);

/* OpenAI's error type for an HTTP status: invalid_request_error,
   authentication_error, permission_error, not_found_error,
   rate_limit_error, server_error */
const char *vmx_openai_error_type(int status);

#endif /* VMX_TRANSLATE_H */
