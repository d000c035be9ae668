/*
 * Unit tests of lib/vmx_tokenizer.c on the real o200k_base ranks, which
 * ./build.sh build writes to build/o200k_base.tiktoken.  The expected ids
 * are tiktoken's; t/test_tokenizer_equality.py compares a whole corpus.
 */

#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "vmx_json.h"
#include "vmx_tokenizer.h"


#define RANKS  "build/o200k_base.tiktoken"


static const vmx_tokenizer_t  *tok;
static vmx_tokenizer_scratch_t  *scratch;


static char *
read_file(const char *path, size_t *len)
{
    FILE  *f = fopen(path, "rb");
    char  *data;
    long   n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        return NULL;
    }

    rewind(f);
    data = malloc(n + 1);
    *len = data ? fread(data, 1, n, f) : 0;
    fclose(f);

    return data;
}


static void *
test_alloc(void *ctx, size_t size)
{
    size_t  *allocs = ctx;

    (*allocs)++;
    return malloc(size);
}


/* the nodes of a parsed request, freed together */
typedef struct block_s  block_t;

struct block_s {
    block_t      *next;
    max_align_t   data[];
};


static void *
arena_alloc(void *ctx, size_t size)
{
    block_t  **blocks = ctx, *b = malloc(sizeof(block_t) + size);

    if (b == NULL) {
        return NULL;
    }

    b->next = *blocks;
    *blocks = b;

    return b->data;
}


/* text encodes to exactly the n ids of want, and counts n */
static int
encodes(const char *text, size_t len, const uint32_t *want, size_t n)
{
    uint32_t  ids[64];
    int64_t   got = vmx_tokenizer_encode(tok, scratch, text, len, ids, 64);

    return got == (int64_t) n && n <= 64
           && memcmp(ids, want, n * sizeof(uint32_t)) == 0
           && vmx_tokenizer_count(tok, scratch, text, len) == got;
}

#define ENCODES(lit, ...)                                                    \
    do {                                                                     \
        static const uint32_t  want_[] = { __VA_ARGS__ };                    \
        CHECK(encodes(lit, sizeof(lit) - 1, want_,                           \
                      sizeof(want_) / sizeof(want_[0])));                    \
    } while (0)


static void
test_encode(void)
{
    char      a[100];
    uint32_t  ids[2];

    ENCODES("Hello world", 13225, 2375);
    ENCODES("tiktoken is great!", 83, 8251, 2488, 382, 2212, 0);
    ENCODES("I'M here, you'Re not", 40, 95346, 2105, 11, 481, 146756, 625);
    ENCODES(" 1234567", 220, 7633, 19354, 22);
    ENCODES("\n\n  x", 279, 220, 1215);
    ENCODES("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f"
            "\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6",
            28823, 101, 2524, 28823, 102, 2524, 28823, 100, 2524, 28823, 99);

    /* special tokens are plain text, as in tiktoken's encode_ordinary */
    ENCODES("<|endoftext|>", 27, 91, 419, 1440, 919, 91, 29);

    /* a piece longer than SMALL_PIECE merges through the heap */
    memset(a, 'a', sizeof(a));
    CHECK(vmx_tokenizer_encode(tok, scratch, a, sizeof(a), ids, 2) == 13);
    CHECK(ids[0] == 117525 && ids[1] == 117525);

    CHECK(vmx_tokenizer_count(tok, scratch, "", 0) == 0);
    CHECK(vmx_tokenizer_count(tok, scratch, NULL, 0) == 0);
}


/* each maximal invalid subpart counts as U+FFFD */
static void
test_invalid_utf8(void)
{
    ENCODES("\xff", 3251);
    ENCODES("\xef\xbf\xbd", 3251);

    CHECK(vmx_tokenizer_count(tok, scratch, "a\xe2\x82 b", 5)
          == vmx_tokenizer_count(tok, scratch, "a\xef\xbf\xbd b", 6));
    CHECK(vmx_tokenizer_count(tok, scratch, "\xed\xa0\x80", 3)
          == vmx_tokenizer_count(tok, scratch,
                 "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9));
}


static void
test_create_errors(void)
{
    static const struct {
        const char  *text;
        const char  *error;
    } bad[] = {
        { "", "ranks: no ranks" },
        { "\n\n", "ranks: no ranks" },
        { "QQ==\n", "ranks line 1: expected \"base64 rank\"" },
        { "QQ== 1x\n", "ranks line 1: bad rank" },
        { "QQ== 4294967295\n", "ranks line 1: bad rank" },
        { "Q!== 1\n", "ranks line 1: bad base64" },
        { "QQ= 1\n", "ranks line 1: bad base64" },
        { "QQ== 1\r\n\nQQ== 2\n", "ranks line 3: duplicate token" },
        { "QQ== 0\nQg== 1\n", "ranks: a single byte has no rank" },
    };
    char    err[128];
    size_t  i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(vmx_tokenizer_create(bad[i].text, strlen(bad[i].text), NULL,
                                   NULL, err, sizeof(err)) == NULL);
        CHECK(strcmp(err, bad[i].error) == 0);
    }
}


/* the tables from a caller's allocator, in one allocation */
static void
test_caller_allocator(const char *ranks, size_t len)
{
    vmx_tokenizer_t  *t;
    size_t            allocs = 0;
    char              err[128];
    void             *block;

    t = vmx_tokenizer_create(ranks, len, test_alloc, &allocs, err, sizeof(err));
    CHECK(t != NULL && allocs == 1);
    CHECK(t != NULL
          && vmx_tokenizer_count(t, scratch, "Hello world", 11) == 2);

    /* freeing leaves the block to its allocator */
    block = t;
    vmx_tokenizer_free(t);
    free(block);
}


static int64_t
estimate(const char *json)
{
    vmx_json_error_t   err;
    vmx_json_t        *req;
    block_t           *blocks = NULL, *b;
    int64_t            n;

    req = vmx_json_parse(json, strlen(json), arena_alloc, &blocks, 0, &err);
    n = req ? vmx_tokenizer_chat_estimate(tok, scratch, req) : -2;

    while ((b = blocks)) {
        blocks = b->next;
        free(b);
    }

    return n;
}


/* the worked examples of the cookbook: the API counts the same for gpt-4o */
static void
test_cookbook(void)
{
    CHECK(estimate(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are a helpful, pattern-following"
        " assistant that translates corporate jargon into plain English.\"},"
        "{\"role\":\"system\",\"name\":\"example_user\",\"content\":\"New synergies"
        " will help drive top-line growth.\"},"
        "{\"role\":\"system\",\"name\":\"example_assistant\",\"content\":\"Things"
        " working well together will increase revenue.\"},"
        "{\"role\":\"system\",\"name\":\"example_user\",\"content\":\"Let's circle"
        " back when we have more bandwidth to touch base on opportunities for"
        " increased leverage.\"},"
        "{\"role\":\"system\",\"name\":\"example_assistant\",\"content\":\"Let's"
        " talk later when we're less busy about how to do better.\"},"
        "{\"role\":\"user\",\"content\":\"This late pivot means we don't have"
        " time to boil the ocean for the client deliverable.\"}]}") == 124);

    CHECK(estimate(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are a helpful assistant that can"
        " answer to questions about the weather.\"},"
        "{\"role\":\"user\",\"content\":\"What's the weather like in San"
        " Francisco?\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{"
        "\"name\":\"get_current_weather\","
        "\"description\":\"Get the current weather in a given location\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{"
        "\"location\":{\"type\":\"string\",\"description\":\"The city and state,"
        " e.g. San Francisco, CA\"},"
        "\"unit\":{\"type\":\"string\",\"description\":\"The unit of temperature"
        " to return\",\"enum\":[\"celsius\",\"fahrenheit\"]}},"
        "\"required\":[\"location\"]}}}]}") == 101);
}


static void
test_estimate_parts(void)
{
    /* 3 + "user" 1 + "Hello world" 2, and 3 for the reply */
    CHECK(estimate("{\"messages\":[{\"role\":\"user\",\"content\":\"Hello world\"}]}")
          == 9);
    CHECK(estimate("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                   "\"text\":\"Hello world\"}]}]}") == 9);
    CHECK(estimate("{\"messages\":[{\"role\":\"user\",\"content\":\"Hello world\","
                   "\"name\":\"x\"}]}") == 11);

    /* images: 85 at low detail, else a 1024x1024 image's 765 */
    CHECK(estimate("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                   "\"image_url\",\"image_url\":{\"url\":\"u\",\"detail\":\"low\"}}]}]}")
          == 7 + 85);
    CHECK(estimate("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                   "\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]}") == 7 + 765);

    /* the strings of tool calls count; null content does not */
    CHECK(estimate("{\"messages\":[{\"role\":\"assistant\",\"content\":null,"
                   "\"tool_calls\":[{\"function\":{\"name\":\"Hello world\"}}]}]}")
          == 9);

    CHECK(estimate("{\"messages\":[]}") == 3);
    CHECK(estimate("{\"model\":\"gpt-4o\"}") == -1);
    CHECK(estimate("[]") == -1);
}


/* the longest run of c that is one token */
static size_t
longest_token_of(char c)
{
    char    run[256];
    size_t  k, longest = 1;

    memset(run, c, sizeof(run));

    for (k = 2; k <= sizeof(run); k++) {
        if (vmx_tokenizer_count(tok, scratch, run, k) == 1) {
            longest = k;
        }
    }

    return longest;
}


/*
 * Runs of millions of one character, which once stopped PCRE2 at its match
 * limit and counted 0, are each one piece merged exactly.  A run of n
 * characters has tokens that are runs of the same character, so at least n
 * over the longest such token of them: the count is never below that, nor
 * above the bytes.  10 MB of random letters: lowercase only, one piece of
 * 10 MB merged exactly (seconds, off the event loop in the module); mixed
 * case, many pieces; they average under 2 bytes a token.
 */
static void
test_pathological(void)
{
    static const char   fill[] = { 'A', ' ', '7' };
    static const char  *alphabets[] = {
        "abcdefghijklmnopqrstuvwxyz",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    };
    size_t              len = 10 * 1024 * 1024, i, k, m, longest;
    char               *text = malloc(len);
    int64_t             n;

    CHECK(text != NULL);
    if (text == NULL) {
        return;
    }

    for (k = 0; k < sizeof(fill); k++) {
        memset(text, fill[k], len);
        longest = longest_token_of(fill[k]);
        n = vmx_tokenizer_count(tok, scratch, text, len);
        CHECK(n >= (int64_t) ((len + longest - 1) / longest)
              && n <= (int64_t) len);
    }

    srand(7);

    for (k = 0; k < sizeof(alphabets) / sizeof(alphabets[0]); k++) {
        m = strlen(alphabets[k]);
        for (i = 0; i < len; i++) {
            text[i] = alphabets[k][rand() % m];
        }

        n = vmx_tokenizer_count(tok, scratch, text, len);
        CHECK(n >= (int64_t) len / 4 && n <= (int64_t) len);
    }

    free(text);
}


int
main(void)
{
    vmx_tokenizer_t  *t;
    char             *ranks, err[128];
    size_t            len;

    ranks = read_file(RANKS, &len);
    if (ranks == NULL) {
        fprintf(stderr, "%s is missing: run ./build.sh build\n", RANKS);
        return 1;
    }

    t = vmx_tokenizer_create(ranks, len, NULL, NULL, err, sizeof(err));
    CHECK(t != NULL);
    if (t == NULL) {
        fprintf(stderr, "%s\n", err);
        return UNIT_REPORT();
    }

    tok = t;
    scratch = vmx_tokenizer_scratch_create(tok);
    CHECK(scratch != NULL);

    test_encode();
    test_invalid_utf8();
    test_pathological();
    test_create_errors();
    test_caller_allocator(ranks, len);
    test_cookbook();
    test_estimate_parts();

    vmx_tokenizer_scratch_free(scratch);
    vmx_tokenizer_free(t);
    free(ranks);

    return UNIT_REPORT();
}
