/*
 * arena: blocks of memory handed out in order and freed together, for the
 * parsers of lib/ (vmx_json, vmx_config), which take an allocator and never
 * free one by one.  Owned by one thread.
 */

#ifndef CP_ARENA_H
#define CP_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#define ARENA_BLOCK  (256 * 1024)

typedef struct arena_block_s  arena_block_t;

typedef struct {
    arena_block_t  *blocks;
} arena_t;

/* a vmx_json_alloc_pt: ctx is the arena; NULL when malloc fails */
void *arena_alloc(void *ctx, size_t size);

/* frees every block but one kept for reuse, or all of them */
void arena_reset(arena_t *a, bool all);

/* wipes what was handed out (scratch that held key material) and frees all */
void arena_wipe(arena_t *a);

#endif
