/*
 * libFuzzer target of vmx_tokenizer: the input is the text, any bytes.  The
 * ranks are build/o200k_base.tiktoken (./build.sh build writes them; the
 * fuzzers run from the repository's root).  The count must be the number of
 * ids, the same from a fresh scratch and when the ids are cut short; the
 * tokens' bytes, end to end, must be the text itself when it is UTF-8.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_tokenizer.h"

#include "fuzz_common.h"


#define RANKS      "build/o200k_base.tiktoken"
#define MAX_RANK   (1 << 20)


static vmx_tokenizer_t          *tok;
static vmx_tokenizer_scratch_t  *scratch;

/* the bytes of each token by rank, from the same file: the decoder */
static const uint8_t  *token_bytes[MAX_RANK];
static uint32_t        token_len[MAX_RANK];


static int
b64(int c)
{
    const char  *alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char  *p = c ? strchr(alphabet, c) : NULL;

    return p ? (int) (p - alphabet) : 0;
}


static void
load_decoder(char *ranks, size_t len)
{
    char      *line = ranks, *end = ranks + len, *sp, *nl;
    uint8_t   *out;
    size_t     n, i, k;
    unsigned   rank, v;

    for ( /* void */ ; line < end; line = nl + 1) {
        nl = memchr(line, '\n', end - line);
        nl = nl ? nl : end;
        sp = memchr(line, ' ', nl - line);
        check(sp != NULL);

        rank = (unsigned) strtoul(sp + 1, NULL, 10);
        check(rank < MAX_RANK);

        n = sp - line;
        out = malloc(n);
        check(out != NULL);

        for (i = 0, k = 0; i < n; i += 4) {
            v = b64(line[i]) << 18 | b64(line[i + 1]) << 12
                | b64(line[i + 2]) << 6 | b64(line[i + 3]);
            out[k++] = (uint8_t) (v >> 16);
            if (line[i + 2] != '=') out[k++] = (uint8_t) (v >> 8);
            if (line[i + 3] != '=') out[k++] = (uint8_t) v;
        }

        token_bytes[rank] = out;
        token_len[rank] = (uint32_t) k;
    }
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FILE    *f = fopen(RANKS, "rb");
    char    *ranks, err[128];
    size_t   len;

    if (f == NULL) {
        fprintf(stderr, "%s is missing: run ./build.sh build\n", RANKS);
        abort();
    }

    fseek(f, 0, SEEK_END);
    len = (size_t) ftell(f);
    rewind(f);
    ranks = malloc(len);
    check(ranks != NULL && fread(ranks, 1, len, f) == len);
    fclose(f);

    tok = vmx_tokenizer_create(ranks, len, NULL, NULL, err, sizeof(err));
    check(tok != NULL);
    scratch = vmx_tokenizer_scratch_create(tok);
    check(scratch != NULL);

    load_decoder(ranks, len);
    free(ranks);

    return 0;
}


/* the tokens' bytes end to end equal the text */
static int
decodes_to(const uint32_t *ids, int64_t n, const uint8_t *text, size_t len)
{
    size_t   at = 0;
    int64_t  i;

    for (i = 0; i < n; i++) {
        check(ids[i] < MAX_RANK && token_bytes[ids[i]] != NULL);

        if (token_len[ids[i]] > len - at
            || memcmp(text + at, token_bytes[ids[i]], token_len[ids[i]]) != 0)
        {
            return 0;
        }

        at += token_len[ids[i]];
    }

    return at == len;
}


static int
is_utf8(const uint8_t *p, size_t n)
{
    /* the lossy decoder changes nothing exactly when the text is UTF-8 */
    size_t   i;
    int      need = 0;
    uint8_t  lo = 0x80, hi = 0xbf, c;

    for (i = 0; i < n; i++) {
        c = p[i];

        if (need) {
            if (c < lo || c > hi) return 0;
            lo = 0x80;
            hi = 0xbf;
            need--;
            continue;
        }

        if (c < 0x80) continue;
        if (c >= 0xc2 && c <= 0xdf) { need = 1; continue; }
        if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
            continue;
        }
        if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
            continue;
        }

        return 0;
    }

    return need == 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmx_tokenizer_scratch_t  *fresh;
    const char               *text;
    uint32_t                 *ids, *again;
    int64_t                   n;

    /* an exact copy: a read past the end is a heap overflow */
    text = memcpy(malloc(size ? size : 1), data, size);

    n = vmx_tokenizer_count(tok, scratch, text, size);
    check(n >= 0 && (size_t) n <= 3 * size);

    /* an invalid byte becomes U+FFFD: at most 3 bytes, so 3 tokens */
    ids = malloc((3 * size + 1) * sizeof(uint32_t));
    again = malloc((3 * size + 1) * sizeof(uint32_t));
    check(ids != NULL && again != NULL);

    check(vmx_tokenizer_encode(tok, scratch, text, size, ids, 3 * size + 1) == n);

    fresh = vmx_tokenizer_scratch_create(tok);
    check(fresh != NULL);
    check(vmx_tokenizer_encode(tok, fresh, text, size, again, (size_t) n / 2)
          == n);
    check(memcmp(ids, again, (size_t) n / 2 * sizeof(uint32_t)) == 0);
    vmx_tokenizer_scratch_free(fresh);

    if (is_utf8(data, size)) {
        check(decodes_to(ids, n, data, size));
    }

    free(again);
    free(ids);
    free((void *) text);

    return 0;
}
