/*
 * vmx-tokenize: lib/vmx_tokenizer from the command line, for the equality
 * tests against tiktoken and for the benchmark.
 *
 *   vmx-tokenize RANKS             each stdin line is a sample in hex; prints
 *                                  "count id id ..." for each
 *   vmx-tokenize RANKS --chat      stdin is a chat request; prints its
 *                                  estimate
 *   vmx-tokenize RANKS --bench SECONDS FILE...
 *                                  counts each file for SECONDS and prints
 *                                  "FILE bytes tokens MB/s"
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmx_json.h"
#include "vmx_tokenizer.h"


typedef struct {
    char    *data;
    size_t   len;
} text_t;


static void
die(const char *what)
{
    fprintf(stderr, "vmx-tokenize: %s\n", what);
    exit(1);
}


static text_t
read_all(FILE *f)
{
    text_t  t = { NULL, 0 };
    size_t  cap = 0, n;

    for ( ;; ) {
        if (cap - t.len < 65536) {
            cap = cap * 2 + 65536;
            t.data = realloc(t.data, cap);
            if (t.data == NULL) {
                die("out of memory");
            }
        }

        n = fread(t.data + t.len, 1, cap - t.len, f);
        if (n == 0) {
            return t;
        }

        t.len += n;
    }
}


static text_t
read_file(const char *path)
{
    FILE    *f = fopen(path, "rb");
    text_t   t;

    if (f == NULL) {
        die(path);
    }

    t = read_all(f);
    fclose(f);

    return t;
}


static int
hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    die("bad hex");
    return 0;
}


static void
encode_lines(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s)
{
    text_t     in = read_all(stdin);
    char      *line = in.data, *end = in.data + in.len, *nl, *sample;
    uint32_t  *ids;
    int64_t    n, i;
    size_t     len, k;

    for ( /* void */ ; line < end; line = nl + 1) {
        nl = memchr(line, '\n', end - line);
        nl = nl ? nl : end;
        len = (nl - line) / 2;

        sample = malloc(len + 1);
        ids = malloc((len + 1) * sizeof(uint32_t));
        if (sample == NULL || ids == NULL) {
            die("out of memory");
        }

        for (k = 0; k < len; k++) {
            sample[k] = (char) (hex(line[2 * k]) << 4 | hex(line[2 * k + 1]));
        }

        /* a token has a byte at least, so len + 1 ids are room enough */
        n = vmx_tokenizer_encode(tok, s, sample, len, ids, len + 1);
        if (n < 0 || vmx_tokenizer_count(tok, s, sample, len) != n) {
            die("encode failed");
        }

        printf("%lld", (long long) n);
        for (i = 0; i < n; i++) {
            printf(" %u", ids[i]);
        }
        putchar('\n');

        free(sample);
        free(ids);
    }

    free(in.data);
}


static void *
alloc(void *ctx, size_t size)
{
    return malloc(size);
}


static void
chat(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s)
{
    text_t             in = read_all(stdin);
    vmx_json_error_t   err;
    vmx_json_t        *req;

    /* the tree is left to the process's end */
    req = vmx_json_parse(in.data, in.len, alloc, NULL, 0, &err);
    if (req == NULL) {
        die(err.message);
    }

    printf("%lld\n", (long long) vmx_tokenizer_chat_estimate(tok, s, req));
}


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
bench(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s, double seconds,
    char **files, int n)
{
    text_t   t;
    double   start, elapsed;
    int64_t  tokens = 0;
    size_t   rounds;
    int      i;

    for (i = 0; i < n; i++) {
        t = read_file(files[i]);
        start = now();

        for (rounds = 0; (elapsed = now() - start) < seconds || rounds == 0;
             rounds++)
        {
            tokens = vmx_tokenizer_count(tok, s, t.data, t.len);
        }

        printf("%s %zu %lld %.2f\n", files[i], t.len, (long long) tokens,
               t.len * rounds / elapsed / 1e6);
        free(t.data);
    }
}


int
main(int argc, char **argv)
{
    vmx_tokenizer_t          *tok;
    vmx_tokenizer_scratch_t  *s;
    text_t                    ranks;
    char                      err[256];

    if (argc < 2) {
        die("usage: vmx-tokenize RANKS [--chat | --bench SECONDS FILE...]");
    }

    ranks = read_file(argv[1]);
    tok = vmx_tokenizer_create(ranks.data, ranks.len, NULL, NULL, err,
                               sizeof(err));
    free(ranks.data);
    if (tok == NULL) {
        die(err);
    }

    s = vmx_tokenizer_scratch_create(tok);
    if (s == NULL) {
        die("out of memory");
    }

    if (argc == 2) {
        encode_lines(tok, s);

    } else if (strcmp(argv[2], "--chat") == 0) {
        chat(tok, s);

    } else if (strcmp(argv[2], "--bench") == 0 && argc > 4) {
        bench(tok, s, atof(argv[3]), argv + 4, argc - 4);

    } else {
        die("usage: vmx-tokenize RANKS [--chat | --bench SECONDS FILE...]");
    }

    vmx_tokenizer_scratch_free(s);
    vmx_tokenizer_free(tok);

    return 0;
}
