/*
 * vmx_pools: the prioritization strategy "adaptive token scaling" (SPEC §6)
 * as pure arithmetic, without shared memory or clocks, so that it can be
 * unit-tested.
 *
 * Pools of resources share a connection's per-minute token capacity.
 * Shares are in basis points of that capacity (VMX_POOLS_FULL = 100 %).
 * Lower rank numbers are served first, as in the original product (rank 0
 * is the most important pool); equal ranks keep their definition order.
 *
 * A pool is active when it used tokens within the window (the request
 * being gated counts).  An idle pool holds nothing: its guaranteed share
 * is lent to active pools.  An active pool holds its share, never below
 * its minReservation: when an owner comes back, borrowers shrink at once,
 * the lowest priority first.  A pool is busy when its window usage, as a
 * per-minute rate, exceeds scaleUp % of its share; it then grows so that
 * this usage is scaleUp % of the new share (50 %: twice the usage), up to
 * its maxReservation, from free share first, then from the share that
 * lower priority pools hold above their minimum.  A pool above its minimum
 * that is not busy shrinks back, but only once cooldown has passed since
 * it last grew, so a short pause does not give its share away.
 *
 * A request of n tokens is admitted when the pool's usage over the last
 * 60 seconds plus n fits its share of the capacity.
 */

#ifndef VMX_POOLS_H
#define VMX_POOLS_H

#include <stddef.h>
#include <stdint.h>


#define VMX_POOLS_FULL  10000      /* basis points */
#define VMX_POOLS_MAX   64         /* pools in one definition */


typedef struct {
    /* configuration */
    int64_t     rank;
    int64_t     min;               /* basis points */
    int64_t     max;

    /* usage, measured by the caller */
    int64_t     window_tokens;     /* over the strategy's window */
    int64_t     minute_tokens;     /* over the last 60 seconds */

    /* state the caller keeps between calls; share < 0: never set */
    int64_t     share;             /* basis points */
    int64_t     grown_at;          /* ms of the last growth */
} vmx_pool_t;


typedef struct {
    int64_t     window_ms;
    int64_t     cooldown_ms;
    int64_t     scale_up;          /* percent, 1..100 */
} vmx_pool_strategy_t;


/*
 * Runs the strategy at now_ms for a request of tokens of pool p (an index
 * into pools) on a connection of capacity tokens per minute: updates every
 * pool's share and grown_at, and returns 1 when the request fits p's share,
 * 0 when not.
 */
int vmx_pools_gate(vmx_pool_t *pools, size_t n,
    const vmx_pool_strategy_t *strategy, int64_t capacity, size_t p,
    int64_t tokens, int64_t now_ms);

/* the tokens per minute of a share of the capacity */
int64_t vmx_pools_tokens(int64_t capacity, int64_t share);


#endif /* VMX_POOLS_H */
