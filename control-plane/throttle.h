/*
 * throttle: failures counted per key (a user name, a client address) in a
 * fixed-size table, and how long a key must wait before its next try.
 *
 * After `limit` failures a key waits `base` seconds, and twice as long with
 * each further failure, up to `max` seconds; a key with no failure for
 * `max` seconds is forgotten.  The table never grows: a new key takes a
 * free or forgotten slot near its hash, else the one of its neighbours
 * that failed longest ago.  The hash is seeded, so that nobody can choose
 * names that share a slot.  Pure (the caller gives the time), thread-safe.
 */

#ifndef CP_THROTTLE_H
#define CP_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct throttle_s throttle_t;

/* slots: the table's size (a power of two is not required); NULL when out
 * of memory.  The caller owns the table and frees it with throttle_free(). */
throttle_t *throttle_create(size_t slots, int limit, int base, int max, uint64_t seed);
void throttle_free(throttle_t *t);

/* seconds key must still wait at time now (0: it may try) */
int throttle_wait(throttle_t *t, const char *key, time_t now);

/* counts a failure of key at now; returns the seconds it must now wait */
int throttle_fail(throttle_t *t, const char *key, time_t now);

/* forgets key (a success) */
void throttle_reset(throttle_t *t, const char *key);

#endif
