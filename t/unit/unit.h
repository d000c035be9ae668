/*
 * A minimal unit test harness: CHECK() counts, reports failures with their
 * line, and UNIT_REPORT() prints "N passed, N failed" and gives the exit code.
 */

#ifndef UNIT_H
#define UNIT_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int  unit_passed, unit_failed;


#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            unit_passed++;                                                   \
        } else {                                                             \
            unit_failed++;                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

/* a byte string equals a C string literal */
#define CHECK_MEM(p, n, lit)                                                 \
    CHECK((p) != NULL && (n) == sizeof(lit) - 1                              \
          && memcmp((p), (lit), sizeof(lit) - 1) == 0)

/*
 * The allocator the library's parsers and translations take: each block
 * its own malloc (so a sanitizer sees overruns), all freed together by
 * unit_free_all() between cases.
 */
typedef struct unit_block_s  unit_block_t;

struct unit_block_s {
    unit_block_t  *next;
    max_align_t    data[];
};

static unit_block_t  *unit_blocks;


static inline void *
unit_alloc(void *ctx, size_t size)
{
    unit_block_t  *b = malloc(sizeof(unit_block_t) + size);

    (void) ctx;

    if (b == NULL) {
        return NULL;
    }

    b->next = unit_blocks;
    unit_blocks = b;

    return b->data;
}


static inline void
unit_free_all(void)
{
    unit_block_t  *b;

    while (unit_blocks) {
        b = unit_blocks;
        unit_blocks = b->next;
        free(b);
    }
}


/*
 * JSON written with single quotes in C, so that it reads as JSON: unit_q()
 * turns every ' into " (a double quote inside a JSON string is written
 * \\\"), in memory of unit_alloc().
 */
static inline const char *
unit_q(const char *s)
{
    size_t   n = strlen(s), i;
    char    *t = unit_alloc(NULL, n + 1);

    if (t == NULL) {
        abort();
    }

    for (i = 0; i <= n; i++) {
        t[i] = (s[i] == '\'') ? '"' : s[i];
    }

    return t;
}


/* got[0..len) is unit_q(want); both printed when not */
static inline int
unit_same(const char *got, size_t len, const char *want)
{
    want = unit_q(want);

    if (got != NULL && len == strlen(want) && memcmp(got, want, len) == 0) {
        return 1;
    }

    fprintf(stderr, "got:  %.*s\nwant: %s\n", (int) len, got ? got : "",
            want);
    return 0;
}


#ifndef VMX_FIXTURES
#define VMX_FIXTURES  "t/fixtures"
#endif


/* a file of t/fixtures (VMX_FIXTURES, given by the Makefile), malloc'ed */
static inline char *
unit_read_fixture(const char *name, size_t *len)
{
    char    path[512];
    char   *data;
    long    n;
    FILE   *f;

    snprintf(path, sizeof(path), "%s/%s", VMX_FIXTURES, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    data = malloc(n > 0 ? (size_t) n : 1);
    if (data == NULL || fread(data, 1, (size_t) n, f) != (size_t) n) {
        fclose(f);
        free(data);
        return NULL;
    }

    fclose(f);
    *len = (size_t) n;

    return data;
}


#define UNIT_REPORT()                                                        \
    (printf("%d passed, %d failed\n", unit_passed, unit_failed),             \
     unit_failed != 0)

#endif /* UNIT_H */
