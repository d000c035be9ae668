/*
 * Unit tests of control-plane/worker.c: rounds at the interval their
 * function returns, a notification that starts the next round at once, a
 * stop that ends a long sleep or pause and joins, a notification that
 * comes before the start.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "unit.h"
#include "worker.h"

static worker_t     w = WORKER_INIT;
static atomic_int   rounds;
static long         next_ms;            /* what a round returns */
static atomic_bool  pause_stopped;


static long
count_round(void)
{
    atomic_fetch_add(&rounds, 1);
    return next_ms;
}


static long
pausing_round(void)
{
    atomic_fetch_add(&rounds, 1);
    atomic_store(&pause_stopped, worker_pause(&w, 60000));
    return 60000;
}


/* waits up to ms for at least n rounds; the rounds seen */
static int
wait_rounds(int n, long ms)
{
    long long until = worker_clock_ms() + ms;

    while (atomic_load(&rounds) < n && worker_clock_ms() < until) {
        struct timespec tick = { 0, 1000000 };

        nanosleep(&tick, NULL);
    }
    return atomic_load(&rounds);
}


static void
test_interval(void)
{
    atomic_store(&rounds, 0);
    next_ms = 20;
    CHECK(worker_start(&w, "test-interval", count_round) == 0);
    CHECK(wait_rounds(5, 2000) >= 5);
    worker_stop(&w);
    CHECK(!w.running);
}


static void
test_notify_and_stop(void)
{
    long long started;

    atomic_store(&rounds, 0);
    next_ms = 60000;
    CHECK(worker_start(&w, "test-notify", count_round) == 0);
    CHECK(wait_rounds(1, 2000) == 1);
    worker_notify(&w);
    CHECK(wait_rounds(2, 2000) == 2);
    CHECK(wait_rounds(3, 100) == 2);           /* no third without a reason */
    started = worker_clock_ms();
    worker_stop(&w);
    CHECK(worker_clock_ms() - started < 2000);  /* not the 60 s sleep */
}


static void
test_stop_ends_a_pause(void)
{
    long long started;

    atomic_store(&rounds, 0);
    atomic_store(&pause_stopped, false);
    CHECK(worker_start(&w, "test-pause", pausing_round) == 0);
    CHECK(wait_rounds(1, 2000) == 1);
    worker_notify(&w);                          /* a pause wakes for a stop alone */
    CHECK(wait_rounds(2, 100) == 1);
    started = worker_clock_ms();
    worker_stop(&w);
    CHECK(worker_clock_ms() - started < 2000);
    CHECK(atomic_load(&pause_stopped));
    CHECK(atomic_load(&rounds) == 1);
}


static void
test_notify_before_start(void)
{
    worker_t early = WORKER_INIT;

    worker_notify(&early);                      /* no thread, no condition variable yet */
    worker_stop(&early);
    CHECK(!early.running);
}


int
main(void)
{
    test_interval();
    test_notify_and_stop();
    test_stop_ends_a_pause();
    test_notify_before_start();

    return UNIT_REPORT();
}
