/*
 * vmx_pools: adaptive token scaling; see vmx_pools.h for the rules.
 */

#include "vmx_pools.h"


static int64_t
vmx_pools_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}


/* from the lowest priority pool up to (not including) order[stop]: the
 * share active pools hold above their minimum, at most amount in all */
static int64_t
vmx_pools_take(vmx_pool_t *pools, const size_t *order, const int *active,
    size_t n, size_t stop, int64_t amount)
{
    size_t       k;
    int64_t      give, taken;
    vmx_pool_t  *pool;

    taken = 0;

    for (k = n; k > stop && taken < amount; k--) {
        pool = &pools[order[k - 1]];

        if (!active[order[k - 1]] || pool->share <= pool->min) {
            continue;
        }

        give = vmx_pools_min(pool->share - pool->min, amount - taken);
        pool->share -= give;
        taken += give;
    }

    return taken;
}


int64_t
vmx_pools_tokens(int64_t capacity, int64_t share)
{
    return capacity * share / VMX_POOLS_FULL;
}


int
vmx_pools_gate(vmx_pool_t *pools, size_t n,
    const vmx_pool_strategy_t *strategy, int64_t capacity, size_t p,
    int64_t tokens, int64_t now_ms)
{
    int          active[VMX_POOLS_MAX];
    size_t       order[VMX_POOLS_MAX], i, k;
    int64_t      demand[VMX_POOLS_MAX], held, window, target, need, free;
    vmx_pool_t  *pool;

    if (n == 0 || n > VMX_POOLS_MAX || p >= n || capacity <= 0
        || strategy->window_ms <= 0 || strategy->scale_up <= 0)
    {
        return 1;
    }

    /* by rank, lower first; a stable insertion sort keeps ties in order */
    for (i = 0; i < n; i++) {
        for (k = i; k > 0 && pools[order[k - 1]].rank > pools[i].rank; k--) {
            order[k] = order[k - 1];
        }
        order[k] = i;
    }

    held = 0;

    for (i = 0; i < n; i++) {
        pool = &pools[i];

        if (pool->max < pool->min) {
            pool->max = pool->min;
        }

        window = pool->window_tokens + (i == p ? tokens : 0);
        active[i] = (window > 0);

        /* an idle pool lends everything and comes back at its minimum */
        if (!active[i] || pool->share < pool->min) {
            pool->share = pool->min;

        } else if (pool->share > pool->max) {
            pool->share = pool->max;
        }

        /* the window's usage as a per-minute rate, in basis points */
        demand[i] = window * 60000 / strategy->window_ms * VMX_POOLS_FULL
                    / capacity;

        if (active[i]) {
            held += pool->share;
        }
    }

    /* owners back from idle take their share back from the borrowers */
    if (held > VMX_POOLS_FULL) {
        held -= vmx_pools_take(pools, order, active, n, 0,
                               held - VMX_POOLS_FULL);
    }

    /* a pool no longer busy shrinks back, once the cooldown has passed */
    for (i = 0; i < n; i++) {
        pool = &pools[i];

        if (!active[i] || pool->share <= pool->min
            || demand[i] * 100 > strategy->scale_up * pool->share
            || now_ms - pool->grown_at < strategy->cooldown_ms)
        {
            continue;
        }

        target = demand[i] * 100 / strategy->scale_up;
        if (target < pool->min) {
            target = pool->min;
        }

        if (target < pool->share) {
            held -= pool->share - target;
            pool->share = target;
        }
    }

    /* busy pools grow, the most important first */
    for (k = 0; k < n; k++) {
        i = order[k];
        pool = &pools[i];

        if (!active[i] || demand[i] * 100 <= strategy->scale_up * pool->share)
        {
            continue;
        }

        target = vmx_pools_min(pool->max, demand[i] * 100 / strategy->scale_up);
        need = target - pool->share;

        if (need <= 0) {
            continue;
        }

        free = VMX_POOLS_FULL - held;

        if (need > free) {
            held -= vmx_pools_take(pools, order, active, n, k + 1,
                                   need - free);
            free = VMX_POOLS_FULL - held;
        }

        need = vmx_pools_min(need, free);

        if (need > 0) {
            pool->share += need;
            pool->grown_at = now_ms;
            held += need;
        }
    }

    return pools[p].minute_tokens + tokens
           <= vmx_pools_tokens(capacity, pools[p].share);
}
