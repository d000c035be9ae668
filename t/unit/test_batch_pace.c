/*
 * Unit tests of control-plane/batch_pace.c: the budget of a connection and
 * model, the sliding minute, an item's cost, the backoff.
 */

#include <string.h>

#include "batch_pace.h"
#include "unit.h"


static void
test_budget(void)
{
    CHECK(batch_pace_budget(0.5, 0, 0) == 0);           /* unknown */
    CHECK(batch_pace_budget(0.5, 100, 0) == 50);
    CHECK(batch_pace_budget(0.5, 0, 40) == 20);
    CHECK(batch_pace_budget(0.5, 100, 40) == 20);       /* the tightest */
    CHECK(batch_pace_budget(0.5, 30, 400) == 15);
    CHECK(batch_pace_budget(0.1, 3, 0) == 1);           /* never 0 when known */
    CHECK(batch_pace_budget(1.0, 10, 10) == 10);
}


static void
test_cost(void)
{
    CHECK(batch_pace_cost(400, 0) == 100 + BATCH_PACE_MAX_TOKENS);
    CHECK(batch_pace_cost(400, 16) == 116);
    CHECK(batch_pace_cost(3, -1) == BATCH_PACE_MAX_TOKENS);
}


static void
test_requests_in_a_sliding_minute(void)
{
    batch_pace_t p;
    long long    t = 1000000;

    memset(&p, 0, sizeof(p));
    p.requests_limit = 5;
    for (int i = 0; i < 5; i++) {
        CHECK(batch_pace_admit(&p, t + i, 10));
    }
    CHECK(!batch_pace_admit(&p, t + 5, 10));
    CHECK(!batch_pace_admit(&p, t + 59, 10));
    CHECK(!batch_pace_admit(&p, t + 60, 10));           /* the first's second still counts */
    CHECK(batch_pace_admit(&p, t + 61, 10));            /* the first left the window */
    CHECK(!batch_pace_admit(&p, t + 61, 10));
    batch_pace_refund(&p, t + 61, 10);                  /* never sent */
    CHECK(batch_pace_admit(&p, t + 61, 10));
    /* long after, a whole budget again, and the slots of the past do not count */
    for (int i = 0; i < 5; i++) {
        CHECK(batch_pace_admit(&p, t + 1000, 10));
    }
    CHECK(!batch_pace_admit(&p, t + 1000, 10));
}


static void
test_tokens(void)
{
    batch_pace_t p;

    memset(&p, 0, sizeof(p));
    p.tokens_limit = 1000;
    CHECK(batch_pace_admit(&p, 50, 600));
    CHECK(!batch_pace_admit(&p, 51, 600));
    CHECK(batch_pace_admit(&p, 52, 400));
    CHECK(batch_pace_admit(&p, 200, 5000));             /* alone in its minute: it fits */
    CHECK(!batch_pace_admit(&p, 201, 1));
    /* unknown limits: everything fits */
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < 1000; i++) {
        CHECK(batch_pace_admit(&p, 7, 100000));
    }
}


static void
test_backoff(void)
{
    CHECK(batch_pace_backoff_ms(1, 1000, 300000, 1.0) == 1000);
    CHECK(batch_pace_backoff_ms(1, 1000, 300000, 0.0) == 500);
    CHECK(batch_pace_backoff_ms(2, 1000, 300000, 1.0) == 2000);
    CHECK(batch_pace_backoff_ms(3, 1000, 300000, 1.0) == 4000);
    CHECK(batch_pace_backoff_ms(20, 1000, 300000, 1.0) == 300000);
    CHECK(batch_pace_backoff_ms(1000000, 1000, 300000, 0.5) <= 300000);
}


int
main(void)
{
    test_budget();
    test_cost();
    test_requests_in_a_sliding_minute();
    test_tokens();
    test_backoff();

    return UNIT_REPORT();
}
