/*
 * vmx_embeddings: OpenAI's POST /v1/embeddings checked, and translated to
 * and from Gemini's embedContent / batchEmbedContents and Bedrock's
 * InvokeModel of Titan Text Embeddings and Cohere Embed.  Pure functions
 * in the manner of vmx_translate.h: memory only from tc's allocator.
 *
 * The request (vmx_embeddings_parse): "model" a string, "input" a string,
 * an array of strings, an array of token ids or an array of arrays of
 * token ids (at most VMX_EMBEDDINGS_MAX_INPUTS inputs, none empty, all of
 * one kind, VMX_EMBEDDINGS_MAX_TEXT bytes of text or
 * VMX_EMBEDDINGS_MAX_TOKENS token ids in all), "dimensions" a positive
 * integer, "encoding_format" "float" (the default) or "base64", "user" a
 * string.  Other members are left to the provider: OpenAI and Groq get the
 * client's body as it is; Gemini and Bedrock drop them.
 *
 * Which provider takes what:
 *   OpenAI, Groq   everything (pass-through: the answer is theirs too);
 *   Gemini         text only; a single string by embedContent, an array
 *                  by batchEmbedContents, VMX_EMBEDDINGS_GEMINI_BATCH
 *                  inputs a call (Gemini's bound); "dimensions" as
 *                  outputDimensionality;
 *   Bedrock Titan  text only, one input per InvokeModel call (an array of
 *                  n inputs takes n calls); "dimensions" as is (v2: 256,
 *                  512 or 1024, for Bedrock to judge);
 *   Bedrock Cohere text only, VMX_EMBEDDINGS_COHERE_BATCH inputs per call;
 *                  no "dimensions" (v3 vectors have a fixed size).
 * A token-id input to Gemini or Bedrock is a 400 naming "input".
 *
 * The answer, whatever the provider:
 *   {"object":"list","data":[{"object":"embedding","index":i,
 *    "embedding":[...] | "<base64>"},...],"model":..,
 *    "usage":{"prompt_tokens":N,"total_tokens":N}}
 * with "base64" the little-endian float32 bytes of the vector, as OpenAI
 * sends it, and each float of a list printed in the fewest digits that
 * read back as the same float32.  Every vector must have the length asked
 * by "dimensions" (when given), the same length as the others, and finite
 * float32 values: else the answer is unreadable (-1, the module answers
 * 502).
 *
 * The module, for a provider other than OpenAI and Groq:
 *   vmx_embeddings_parse() and vmx_embeddings_answer_init() once; then
 *   for each call of the provider, one after the other, its request (and
 *   for Bedrock its path) and its 2xx answer through the provider's
 *   response; at last vmx_embeddings_answer_end() with the count of the
 *   module's own tokenizer, which serves when the provider reports none
 *   (Gemini, Cohere).  A provider's error answer goes through
 *   vmx_gemini_error() or vmx_bedrock_error(), as for chat, and the
 *   partial answer is dropped.
 */

#ifndef VMX_EMBEDDINGS_H
#define VMX_EMBEDDINGS_H

#include "vmx_translate.h"


#define VMX_EMBEDDINGS_MAX_INPUTS   2048         /* as OpenAI */
#define VMX_EMBEDDINGS_MAX_TEXT     (4 << 20)    /* bytes of text in all */
#define VMX_EMBEDDINGS_MAX_TOKENS   300000       /* token ids in all */
#define VMX_EMBEDDINGS_MAX_LENGTH   16384        /* values of a vector */
#define VMX_EMBEDDINGS_COHERE_BATCH 96           /* Cohere's texts a call */
#define VMX_EMBEDDINGS_GEMINI_BATCH 100          /* Gemini's requests a
                                                    batch */


typedef enum {
    VMX_EMBEDDINGS_TITAN = 1,
    VMX_EMBEDDINGS_COHERE
} vmx_embeddings_family_e;


typedef struct {
    const vmx_json_t   *input;       /* the string, or the array */
    size_t              count;       /* inputs */
    int64_t             dimensions;  /* 0 when not given */
    unsigned            tokens:1;    /* the inputs are token ids */
    unsigned            base64:1;    /* encoding_format "base64" */
} vmx_embeddings_request_t;


typedef struct {
    const vmx_translate_ctx_t       *tc;
    const vmx_embeddings_request_t  *req;
    size_t                           written;  /* vectors so far: the
                                                  index of the next */
    size_t                           length;   /* values of each, 0 until
                                                  the first */
    int64_t                          prompt_tokens;  /* reported, or -1 */
} vmx_embeddings_answer_t;


/* tc->body checked into r; 0, or -1 with err set (the gateway answers 400) */
int vmx_embeddings_parse(const vmx_translate_ctx_t *tc,
    vmx_embeddings_request_t *r, vmx_translate_error_t *err);

/* input i (< r->count): a string, or an array of token ids */
const vmx_json_t *vmx_embeddings_input(const vmx_embeddings_request_t *r,
    size_t i);


/* "embedContent" for a single string, else "batchEmbedContents": the
   module's path is models/{model}:<method> */
const char *vmx_embeddings_gemini_method(const vmx_embeddings_request_t *r);

/* the calls of that method r takes */
size_t vmx_embeddings_gemini_calls(const vmx_embeddings_request_t *r);

/* the body of call i (< vmx_embeddings_gemini_calls()); 0, or -1 with err
   set */
int vmx_embeddings_gemini_request(const vmx_translate_ctx_t *tc,
    const vmx_embeddings_request_t *r, size_t call, vmx_buf_t *out,
    vmx_translate_error_t *err);

/* the 2xx answer of the next call: its vectors into a's answer; 0, or -1 */
int vmx_embeddings_gemini_response(vmx_embeddings_answer_t *a,
    const char *body, size_t len, vmx_buf_t *out);


/* the family of a Bedrock model id (a bare id, an inference profile such
   as "us.cohere.embed-english-v3" or an ARN), 0 when it is neither */
vmx_embeddings_family_e vmx_embeddings_bedrock_family(const char *model,
    size_t model_len);

/* "/model/<model id URI-encoded>/invoke" */
void vmx_embeddings_bedrock_path(vmx_buf_t *out, const char *model,
    size_t model_len);

/* the InvokeModel calls r takes */
size_t vmx_embeddings_bedrock_calls(vmx_embeddings_family_e family,
    const vmx_embeddings_request_t *r);

/* the body of call i (< vmx_embeddings_bedrock_calls()); 0, or -1 with
   err set */
int vmx_embeddings_bedrock_request(const vmx_translate_ctx_t *tc,
    vmx_embeddings_family_e family, const vmx_embeddings_request_t *r,
    size_t call, vmx_buf_t *out, vmx_translate_error_t *err);

/* the 2xx answer of the next call: its vectors into a's answer; 0, or -1 */
int vmx_embeddings_bedrock_response(vmx_embeddings_answer_t *a,
    vmx_embeddings_family_e family, const char *body, size_t len,
    vmx_buf_t *out);


/* opens the answer in out: {"object":"list","data":[ */
void vmx_embeddings_answer_init(vmx_embeddings_answer_t *a,
    const vmx_translate_ctx_t *tc, const vmx_embeddings_request_t *r,
    vmx_buf_t *out);

/*
 * Closes the answer, once every input has its vector (else -1): the model
 * and the usage, the provider's count when it reported one, else counted
 * (the module's o200k count of the inputs).  usage is set for the audit.
 */
int vmx_embeddings_answer_end(vmx_embeddings_answer_t *a, int64_t counted,
    vmx_buf_t *out, vmx_usage_t *usage);

/* one vector, a JSON array of numbers, as OpenAI's "embedding" value: a
   list of floats or their base64 bytes; 0, or -1 when a value is not a
   finite float32 (out then holds part of it) */
int vmx_embeddings_vector(vmx_buf_t *out, const vmx_json_t *values,
    int base64);

#endif /* VMX_EMBEDDINGS_H */
