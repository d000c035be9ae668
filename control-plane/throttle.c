/*
 * throttle: see throttle.h.  Open addressing over a fixed array: a key
 * lives in one of the PROBE slots from its hash; only its 64-bit hash is
 * kept (a collision merges two keys' failures, which the seed makes
 * nobody's choice).
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "throttle.h"

#define PROBE       8
#define MAX_SHIFT  20      /* base << 20 is past any sensible max */

typedef struct {
    uint64_t  hash;        /* 0: free */
    int       failures;
    time_t    last;        /* of the last failure */
    time_t    until;       /* locked until then */
} entry_t;

struct throttle_s {
    pthread_mutex_t  lock;
    uint64_t         seed;
    int              limit, base, max;
    size_t           nslots;
    entry_t          slots[];
};


throttle_t *
throttle_create(size_t slots, int limit, int base, int max, uint64_t seed)
{
    throttle_t *t;

    if (slots < PROBE) {
        slots = PROBE;
    }
    t = calloc(1, sizeof(throttle_t) + slots * sizeof(entry_t));
    if (t == NULL) {
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->seed = seed;
    t->limit = limit;
    t->base = base;
    t->max = max;
    t->nslots = slots;
    return t;
}


void
throttle_free(throttle_t *t)
{
    if (t != NULL) {
        pthread_mutex_destroy(&t->lock);
        free(t);
    }
}


/* FNV-1a over the seed and the key; never 0 (the free mark) */
static uint64_t
hash_key(const throttle_t *t, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;

    for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
        h = (h ^ *p) * 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return h ? h : 1;
}


static entry_t *
find(throttle_t *t, uint64_t h)
{
    for (size_t i = 0; i < PROBE; i++) {
        entry_t *e = &t->slots[(h + i) % t->nslots];

        if (e->hash == h) {
            return e;
        }
    }
    return NULL;
}


/* the key's slot, or a free, forgotten or else the stalest one, emptied */
static entry_t *
take(throttle_t *t, uint64_t h, time_t now)
{
    entry_t *victim = find(t, h);

    if (victim != NULL) {
        return victim;
    }
    for (size_t i = 0; i < PROBE; i++) {
        entry_t *e = &t->slots[(h + i) % t->nslots];

        if (e->hash == 0 || now - e->last > t->max) {
            victim = e;
            break;
        }
        if (victim == NULL || e->last < victim->last) {
            victim = e;
        }
    }
    memset(victim, 0, sizeof(*victim));
    victim->hash = h;
    return victim;
}


int
throttle_wait(throttle_t *t, const char *key, time_t now)
{
    uint64_t  h = hash_key(t, key);
    entry_t  *e;
    int       wait = 0;

    pthread_mutex_lock(&t->lock);
    e = find(t, h);
    if (e != NULL && e->until > now) {
        wait = (int) (e->until - now);
    }
    pthread_mutex_unlock(&t->lock);
    return wait;
}


int
throttle_fail(throttle_t *t, const char *key, time_t now)
{
    uint64_t  h = hash_key(t, key);
    entry_t  *e;
    long      lock;
    int       wait = 0;

    pthread_mutex_lock(&t->lock);
    e = take(t, h, now);
    if (now - e->last > t->max) {
        e->failures = 0;
    }
    e->failures++;
    e->last = now;
    if (e->failures >= t->limit) {
        int shift = e->failures - t->limit;

        lock = (long) t->base << (shift < MAX_SHIFT ? shift : MAX_SHIFT);
        e->until = now + (lock < t->max ? lock : t->max);
        wait = (int) (e->until - now);
    }
    pthread_mutex_unlock(&t->lock);
    return wait;
}


void
throttle_reset(throttle_t *t, const char *key)
{
    uint64_t  h = hash_key(t, key);
    entry_t  *e;

    pthread_mutex_lock(&t->lock);
    e = find(t, h);
    if (e != NULL) {
        memset(e, 0, sizeof(*e));
    }
    pthread_mutex_unlock(&t->lock);
}
