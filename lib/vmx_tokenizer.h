/*
 * vmx_tokenizer: token counting with OpenAI's o200k_base byte-pair encoding,
 * token for token as tiktoken's encode_ordinary() counts.
 *
 * A vmx_tokenizer_t is built once from the bytes of a ".tiktoken" ranks file
 * (lines of "base64(token) rank") and is never written again: the module
 * builds it at configuration load in the master and forked workers share it.
 * Every query takes it const, with a vmx_tokenizer_scratch_t that belongs to
 * one thread (one per worker, one per thread pool task): the buffers of the
 * merges live there, so a query allocates nothing, except for a piece of
 * more than VMX_TOKENIZER_RESIDENT bytes (one word of 4 KiB, say) or text
 * that is not valid UTF-8, whose buffers are taken for that call only.
 *
 * Text is split by tiktoken's o200k_base pattern, matched by hand in one
 * pass with the Unicode 16 classes of tiktoken's regex engine (generated at
 * build time from the pinned Unicode data, see tools/tokenizer/unicode.mjs),
 * and each piece is merged by rank exactly as tiktoken's _byte_pair_merge:
 * lowest rank first, leftmost among equals.  Special tokens such as
 * <|endoftext|> are plain text here, as in encode_ordinary().  Bytes that
 * are not valid UTF-8 are counted as if each maximal invalid subpart were
 * U+FFFD, which is what tiktoken counts for the same bytes decoded lossily
 * (TextDecoder, Python's errors="replace").
 */

#ifndef VMX_TOKENIZER_H
#define VMX_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "vmx_json.h"


#define VMX_TOKENIZER_RESIDENT  4096


typedef struct vmx_tokenizer_s          vmx_tokenizer_t;
typedef struct vmx_tokenizer_scratch_s  vmx_tokenizer_scratch_t;


/*
 * Builds the tokenizer from a ranks file of len bytes (not kept).  The
 * tables, about 11 MB for o200k_base, come from one alloc call when alloc is
 * given, and then belong to its allocator; with alloc NULL from malloc,
 * which vmx_tokenizer_free() releases.  Returns NULL with a message in err
 * on a malformed file or an allocation failure.
 */
vmx_tokenizer_t *vmx_tokenizer_create(const char *ranks, size_t len,
    vmx_json_alloc_pt alloc, void *alloc_ctx, char *err, size_t errlen);
void vmx_tokenizer_free(vmx_tokenizer_t *tok);

/* a thread's scratch, from malloc; NULL when out of memory */
vmx_tokenizer_scratch_t *vmx_tokenizer_scratch_create(
    const vmx_tokenizer_t *tok);
void vmx_tokenizer_scratch_free(vmx_tokenizer_scratch_t *s);

/* the number of tokens of text, or -1 when out of memory */
int64_t vmx_tokenizer_count(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const char *text, size_t len);

/*
 * Encodes text: writes the first max_ids token ids to ids and returns the
 * number of tokens of the whole text (as snprintf does), or -1 when out of
 * memory.
 */
int64_t vmx_tokenizer_encode(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const char *text, size_t len, uint32_t *ids,
    size_t max_ids);

/*
 * The prompt tokens of an OpenAI chat completion request, by the OpenAI
 * cookbook's recipe for gpt-4o-class models ("How to count tokens with
 * tiktoken"):
 *
 *   - 3 per message, plus the tokens of each string member of it (role,
 *     content, name, ...), plus 1 for a name;
 *   - content given as parts: the text of text parts; an image part counts
 *     85 tokens with "detail": "low" and 765 otherwise, the price of a
 *     1024x1024 image (the gateway does not decode images: 85 plus 170 for
 *     each of 4 tiles of 512 pixels); other parts (audio, files) count 0;
 *   - members that are arrays or objects (tool_calls, function_call,
 *     audio): the tokens of every string inside them;
 *   - 3 for the priming of the reply;
 *   - tools (or the older functions): the cookbook's num_tokens_for_tools:
 *     7 per function plus "name:description", 3 when it has properties, then
 *     for each property 3 plus "name:type:description" and, with an enum,
 *     -3 plus 3 and the text of each value; 12 at the end.  A final '.' of a
 *     description is dropped; a missing member counts as empty; a non-string
 *     type or enum value counts as its JSON text.
 *
 * A string that cannot be counted for want of memory counts 3 tokens a
 * byte.  Returns -1 when the request has no messages array or out of
 * memory; VMX_TOKENIZER_BOUND() of the body's length is then an upper
 * bound of the estimate.
 */

/* at most 3 tokens a byte of text (an invalid byte is U+FFFD) and 17 for
 * the fixed costs (an image part of 45 bytes counts 765) */
#define VMX_TOKENIZER_BOUND(bytes)  ((int64_t) (bytes) * 17)

int64_t vmx_tokenizer_chat_estimate(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const vmx_json_t *request);

#endif /* VMX_TOKENIZER_H */
