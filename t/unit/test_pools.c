/*
 * Unit tests of vmx_pools: adaptive token scaling over a connection's
 * per-minute token capacity.
 */

#include "unit.h"

#include "vmx_pools.h"


static const vmx_pool_strategy_t  defaults = { 30000, 5000, 50 };


static vmx_pool_t
pool(int64_t rank, int64_t min_percent, int64_t max_percent)
{
    vmx_pool_t  p;

    memset(&p, 0, sizeof(p));
    p.rank = rank;
    p.min = min_percent * 100;
    p.max = max_percent * 100;
    p.share = -1;

    return p;
}


/* gates a request as the module does: an admitted one is counted */
static int
request(vmx_pool_t *pools, size_t n, size_t p, int64_t tokens, int64_t now)
{
    if (!vmx_pools_gate(pools, n, &defaults, 1000, p, tokens, now)) {
        return 0;
    }

    pools[p].window_tokens += tokens;
    pools[p].minute_tokens += tokens;

    return 1;
}


static void
test_idle_share_is_lent_and_taken_back(void)
{
    int         i, admitted;
    vmx_pool_t  pools[2];

    pools[0] = pool(0, 50, 100);
    pools[1] = pool(1, 50, 100);

    /* B idle: A borrows beyond its 50 %, up to the whole capacity */
    for (admitted = 0, i = 0; i < 12; i++) {
        admitted += request(pools, 2, 0, 100, i * 100);
    }

    CHECK(admitted == 10);
    CHECK(pools[0].share == 10000);
    CHECK(pools[0].minute_tokens == 1000);

    /* B is back: its 50 % is its own again, A is cut back to 50 % */
    CHECK(request(pools, 2, 1, 100, 2000) == 1);
    CHECK(pools[0].share == 5000);
    CHECK(pools[1].share == 5000);
    CHECK(request(pools, 2, 0, 10, 2100) == 0);
    CHECK(pools[0].share == 5000);

    /* B keeps being admitted up to its share */
    for (admitted = 0, i = 0; i < 6; i++) {
        admitted += request(pools, 2, 1, 100, 2200 + i * 100);
    }

    CHECK(admitted == 4);
    CHECK(pools[1].minute_tokens == 500);
}


static void
test_current_request_counts(void)
{
    vmx_pool_t  pools[1];

    /* no guarantee, up to 10 % = 100 tokens: the request itself makes the
     * pool busy and must fit in the share it grows to */
    pools[0] = pool(0, 0, 10);

    CHECK(request(pools, 1, 0, 50, 0) == 1);
    CHECK(pools[0].share == 1000);
    CHECK(request(pools, 1, 0, 50, 10) == 1);
    CHECK(request(pools, 1, 0, 1, 20) == 0);

    /* a request larger than the whole share never fits */
    pools[0] = pool(0, 0, 10);
    CHECK(request(pools, 1, 0, 101, 0) == 0);
}


static void
test_rank_serves_lower_numbers_first(void)
{
    size_t      i;
    vmx_pool_t  pools[3];

    /* in definition order: rank 2, rank 1, an idle pool of rank 0 */
    pools[0] = pool(2, 30, 100);
    pools[1] = pool(1, 30, 100);
    pools[2] = pool(0, 40, 100);

    for (i = 0; i < 2; i++) {
        pools[i].window_tokens = 400;
        pools[i].minute_tokens = 0;
    }

    /* both busy: the idle 40 % goes to rank 1, whoever asks */
    CHECK(request(pools, 3, 0, 10, 0) == 1);
    CHECK(pools[1].share == 7000);
    CHECK(pools[0].share == 3000);
    CHECK(pools[2].share == 4000);

    /* and a rank 1 pool takes borrowed share from a rank 2 one */
    pools[0] = pool(2, 20, 100);
    pools[1] = pool(1, 20, 100);
    pools[2] = pool(0, 0, 100);
    pools[0].window_tokens = 400;

    CHECK(request(pools, 3, 0, 10, 0) == 1);
    CHECK(pools[0].share == 10000);

    pools[1].window_tokens = 400;
    CHECK(request(pools, 3, 1, 10, 100) == 1);
    CHECK(pools[1].share == 8000);
    CHECK(pools[0].share == 2000);

    /* the rank 2 pool cannot take it back beyond its minimum */
    CHECK(request(pools, 3, 0, 10, 200) == 1);
    CHECK(pools[0].share == 2000);
    CHECK(pools[1].share == 8000);
}


static void
test_cooldown_before_shrinking(void)
{
    vmx_pool_t  pools[2];

    pools[0] = pool(0, 50, 100);
    pools[1] = pool(1, 0, 50);
    pools[0].window_tokens = 400;

    CHECK(request(pools, 2, 0, 10, 0) == 1);
    CHECK(pools[0].share == 10000);

    /* usage fell, but within the cooldown the share stays */
    pools[0].window_tokens = 50;
    CHECK(request(pools, 2, 0, 10, 4999) == 1);
    CHECK(pools[0].share == 10000);

    /* after it: back to twice the usage, not below the minimum */
    CHECK(request(pools, 2, 0, 10, 5000) == 1);
    CHECK(pools[0].share == 5000);

    /* a share between minimum and maximum: twice the usage rate */
    pools[0] = pool(0, 10, 100);
    pools[0].window_tokens = 400;
    CHECK(request(pools, 2, 0, 0, 0) == 1);
    CHECK(pools[0].share == 10000);
    pools[0].window_tokens = 150;
    CHECK(request(pools, 2, 0, 0, 6000) == 1);
    CHECK(pools[0].share == 6000);
}


static void
test_scale_up_threshold(void)
{
    vmx_pool_t           pools[1];
    vmx_pool_strategy_t  s = { 60000, 5000, 100 };

    /* scaleUp 100 %, 60 s window: busy only past the share itself */
    pools[0] = pool(0, 20, 100);
    pools[0].window_tokens = 190;
    CHECK(vmx_pools_gate(pools, 1, &s, 1000, 0, 10, 0) == 1);
    CHECK(pools[0].share == 2000);

    pools[0].window_tokens = 200;
    CHECK(vmx_pools_gate(pools, 1, &s, 1000, 0, 10, 0) == 1);
    CHECK(pools[0].share == 2100);
}


static void
test_configuration_change_clamps(void)
{
    vmx_pool_t  pools[1];

    pools[0] = pool(0, 10, 90);
    pools[0].share = 9500;
    pools[0].window_tokens = 1;
    CHECK(request(pools, 1, 0, 1, 0) == 1);
    CHECK(pools[0].share == 9000);

    pools[0].min = 9500;
    CHECK(request(pools, 1, 0, 1, 0) == 1);
    CHECK(pools[0].share == 9500 && pools[0].max == 9500);
}


static void
test_nothing_to_gate(void)
{
    vmx_pool_t           pools[1];
    vmx_pool_strategy_t  s = { 0, 0, 50 };

    pools[0] = pool(0, 0, 0);
    CHECK(vmx_pools_gate(pools, 1, &defaults, 0, 0, 10, 0) == 1);
    CHECK(vmx_pools_gate(pools, 0, &defaults, 1000, 0, 10, 0) == 1);
    CHECK(vmx_pools_gate(pools, 1, &defaults, 1000, 1, 10, 0) == 1);
    CHECK(vmx_pools_gate(pools, 1, &s, 1000, 0, 10, 0) == 1);
    CHECK(vmx_pools_gate(pools, 1, &defaults, 1000, 0, 10, 0) == 0);
    CHECK(vmx_pools_tokens(1000, 3333) == 333);
}


int
main(void)
{
    test_idle_share_is_lent_and_taken_back();
    test_current_request_counts();
    test_rank_serves_lower_numbers_first();
    test_cooldown_before_shrinking();
    test_scale_up_threshold();
    test_configuration_change_clamps();
    test_nothing_to_gate();

    return UNIT_REPORT();
}
