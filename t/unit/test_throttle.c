/*
 * Unit tests of control-plane/throttle.c: the wait after the limit, its
 * doubling up to the maximum, forgetting after the maximum, a reset, and a
 * table full of other keys.
 */

#include <stdio.h>

#include "throttle.h"
#include "unit.h"


static void
test_limit_doubling_and_max(void)
{
    throttle_t *t = throttle_create(64, 3, 10, 35, 1);
    time_t      now = 1000;

    CHECK(throttle_wait(t, "alice", now) == 0);
    CHECK(throttle_fail(t, "alice", now) == 0);
    CHECK(throttle_fail(t, "alice", now) == 0);
    CHECK(throttle_wait(t, "alice", now) == 0);
    CHECK(throttle_fail(t, "alice", now) == 10);
    CHECK(throttle_wait(t, "alice", now) == 10);
    CHECK(throttle_wait(t, "alice", now + 4) == 6);
    CHECK(throttle_wait(t, "bob", now) == 0);
    CHECK(throttle_wait(t, "alice", now + 10) == 0);
    CHECK(throttle_fail(t, "alice", now + 10) == 20);
    CHECK(throttle_fail(t, "alice", now + 30) == 35);      /* 40 capped */
    CHECK(throttle_fail(t, "alice", now + 65) == 35);
    throttle_free(t);
}


static void
test_forget_and_reset(void)
{
    throttle_t *t = throttle_create(64, 2, 5, 30, 2);

    throttle_fail(t, "carol", 100);
    /* a failure after the maximum counts from one again */
    CHECK(throttle_fail(t, "carol", 131) == 0);
    CHECK(throttle_fail(t, "carol", 132) == 5);
    throttle_reset(t, "carol");
    CHECK(throttle_wait(t, "carol", 133) == 0);
    CHECK(throttle_fail(t, "carol", 133) == 0);
    throttle_free(t);
}


static void
test_full_table(void)
{
    throttle_t *t = throttle_create(16, 1, 60, 600, 3);
    char        key[32];

    CHECK(throttle_fail(t, "mallory", 100) == 60);
    /* many other keys later: the oldest slots go first, never a crash */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        CHECK(throttle_fail(t, key, 200 + i) == 60);
    }
    snprintf(key, sizeof(key), "key-%d", 999);
    CHECK(throttle_wait(t, key, 1199) == 60);
    CHECK(throttle_wait(t, "mallory", 1199) == 0);
    throttle_free(t);
}


int
main(void)
{
    test_limit_doubling_and_max();
    test_forget_and_reset();
    test_full_table();

    return UNIT_REPORT();
}
