/*
 * arena: see arena.h.
 */

#include <stdlib.h>

#include <sodium.h>

#include "arena.h"

struct arena_block_s {
    arena_block_t  *next;
    size_t          size, used;
    max_align_t     data[];
};


void *
arena_alloc(void *ctx, size_t size)
{
    arena_t       *a = ctx;
    arena_block_t *b = a->blocks;

    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (b == NULL || b->size - b->used < size) {
        size_t want = size > ARENA_BLOCK ? size : ARENA_BLOCK;

        b = malloc(sizeof(arena_block_t) + want);
        if (b == NULL) {
            return NULL;
        }
        b->size = want;
        b->used = 0;
        b->next = a->blocks;
        a->blocks = b;
    }
    b->used += size;
    return (char *) b->data + b->used - size;
}


void
arena_reset(arena_t *a, bool all)
{
    arena_block_t *b = a->blocks, *next;

    if (b == NULL) {
        return;
    }
    for (next = b->next; next != NULL; next = b) {
        b = next->next;
        free(next);
    }
    a->blocks->next = NULL;
    a->blocks->used = 0;
    if (all || a->blocks->size > ARENA_BLOCK) {
        free(a->blocks);
        a->blocks = NULL;
    }
}


void
arena_wipe(arena_t *a)
{
    for (arena_block_t *b = a->blocks; b != NULL; b = b->next) {
        sodium_memzero(b->data, b->used);
    }
    arena_reset(a, true);
}
