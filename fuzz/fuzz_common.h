/*
 * What the fuzz targets share: an allocator that gives every allocation its
 * own malloc (so AddressSanitizer sees overruns and LeakSanitizer leaks) and
 * may be told to fail after a number of allocations, check(), and checks
 * that an output is JSON or a run of "data: <JSON or [DONE]>\n\n" events.
 * Static functions only, so that each target is still built from its one
 * .c file.
 */

#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_json.h"


typedef struct block_s  block_t;

struct block_s {
    block_t      *next;
    max_align_t   data[];
};

typedef struct {
    block_t      *blocks;
    size_t        allocs;
    size_t        left;         /* allocations that may still succeed */
} arena_t;

#define ARENA_UNBOUNDED  { NULL, 0, SIZE_MAX }


static inline void *
arena_alloc(void *ctx, size_t size)
{
    arena_t  *a = ctx;
    block_t  *b;

    if (a->left == 0) {
        return NULL;
    }

    b = malloc(sizeof(block_t) + size);
    if (b == NULL) {
        abort();
    }

    b->next = a->blocks;
    a->blocks = b;
    a->allocs++;
    a->left--;

    return b->data;
}


static inline void
arena_free(arena_t *a)
{
    block_t  *b;

    while (a->blocks) {
        b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
}


static inline void
check(int ok)
{
    if (!ok) {
        abort();
    }
}


static inline void
check_json(const char *text, size_t len)
{
    arena_t            a = ARENA_UNBOUNDED;
    vmx_json_error_t   err;

    check(vmx_json_parse(text, len, arena_alloc, &a, 0, &err) != NULL);
    arena_free(&a);
}


enum {
    DONE_NEVER,                 /* no [DONE] event */
    DONE_LAST,                  /* [DONE] only as the last event */
    DONE_ANYWHERE
};

/* p is whole "data: <JSON or [DONE]>\n\n" events, [DONE] where done allows */
static inline void
check_data_events(const char *p, size_t len, int done)
{
    const char  *end = p + len, *eol;

    while (p < end) {
        check(end - p >= 8 && memcmp(p, "data: ", 6) == 0);
        p += 6;

        eol = memchr(p, '\n', (size_t) (end - p));
        check(eol != NULL && eol + 1 < end && eol[1] == '\n');

        if (eol - p == 6 && memcmp(p, "[DONE]", 6) == 0) {
            check(done == DONE_ANYWHERE || (done == DONE_LAST && eol + 2 == end));

        } else {
            check_json(p, (size_t) (eol - p));
        }

        p = eol + 2;
    }
}


/* one FNV-1a step per byte */
static inline uint64_t
hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char  *s = p;

    while (n--) {
        h = (h ^ *s++) * 0x100000001b3ULL;
    }

    return h;
}

#endif /* FUZZ_COMMON_H */
