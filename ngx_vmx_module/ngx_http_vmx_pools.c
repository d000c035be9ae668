/*
 * VM-X gateway: prioritization (SPEC §6).
 *
 * The pools of an environment share the per-minute token capacity of a
 * connection.  The gate runs for the request's pool (its resource's, or the
 * one a batch item names) on the first connection of the plan, when that
 * connection has a minute "tokens" capacity entry.  The arithmetic is
 * lib/vmx_pools.c; this file keeps its state in a table of its own zone
 * (vmx_pools_zone), shared by the workers: per connection and pool the
 * current share and a ring of 60 per-second token counts, from which both
 * the strategy's window and the last minute are summed.  A full table
 * takes over the slot unused the longest: a pool unused for a minute has
 * nothing left to count.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_POOLS_ZONE    (512 * 1024)    /* 256 slots */
#define NGX_HTTP_VMX_POOL_SECONDS  60      /* the ring; windows up to 60 s */
#define NGX_HTTP_VMX_POOL_NAME     128


struct ngx_http_vmx_pool_slot_s {
    u_char                       connection_id[36];
    u_char                       name[NGX_HTTP_VMX_POOL_NAME];
    size_t                       name_len;
    time_t                       used_at;       /* 0: a free slot */
    int64_t                      share;         /* -1: never set */
    int64_t                      grown_at;      /* ms */
    int64_t                      tokens[NGX_HTTP_VMX_POOL_SECONDS];
    time_t                       second[NGX_HTTP_VMX_POOL_SECONDS];
};


static int64_t ngx_http_vmx_pools_capacity(ngx_http_vmx_connection_t *conn);
static ngx_http_vmx_pool_slot_t *ngx_http_vmx_pools_slot(
    ngx_http_vmx_table_zone_t *tz, ngx_str_t *connection_id,
    ngx_str_t *name, time_t now, ngx_log_t *log);
static int64_t ngx_http_vmx_pools_sum(ngx_http_vmx_pool_slot_t *slot,
    time_t now, time_t seconds);
static ngx_http_vmx_admit_e ngx_http_vmx_pools_deny(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_pool_t *pool,
    ngx_http_vmx_pool_slot_t *slot, int64_t share, int64_t capacity,
    time_t now);


ngx_int_t
ngx_http_vmx_pools_add_zone(ngx_conf_t *cf, ngx_http_vmx_main_conf_t *mcf)
{
    return ngx_http_vmx_table_add(cf, &mcf->pools_zone, "vmx_pools",
                                  "vmx_pools_zone", NGX_HTTP_VMX_POOLS_ZONE,
                                  sizeof(ngx_http_vmx_pool_slot_t), 0);
}


/*
 * Admits the request for its pool (its resource's, or the one its batch
 * names) or answers why not: PASS (admitted, or nothing to gate), DENY
 * (ctx->attempt.failure and ctx->attempt.retry_after say why), ERROR; it
 * never waits.
 */

ngx_http_vmx_admit_e
ngx_http_vmx_pools_gate(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    int                        admitted;
    time_t                     now;
    int64_t                    capacity, now_ms;
    ngx_uint_t                 i, p, n;
    ngx_time_t                *tp;
    ngx_http_vmx_pool_t       *pools, *pool;
    ngx_http_vmx_pool_def_t   *def;
    ngx_http_vmx_connection_t *conn;
    ngx_http_vmx_pool_slot_t  *slots[VMX_POOLS_MAX], *slot;
    ngx_http_vmx_main_conf_t  *mcf;
    vmx_pool_t                 state[VMX_POOLS_MAX];

    pool = ctx->request.pool;

    if (pool == NULL || ctx->plan.ntargets == 0) {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    conn = ctx->plan.targets[0]->connection;
    capacity = ngx_http_vmx_pools_capacity(conn);

    if (capacity <= 0) {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->pools_zone.table == NULL || conn->id.len != 36) {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    def = pool->def;
    pools = def->pools.elts;
    n = def->pools.nelts;
    p = pool - pools;

    tp = ngx_timeofday();
    now = tp->sec;
    now_ms = (int64_t) tp->sec * 1000 + tp->msec;

    ngx_shmtx_lock(&mcf->pools_zone.shpool->mutex);

    for (i = 0; i < n; i++) {
        slot = ngx_http_vmx_pools_slot(&mcf->pools_zone, &conn->id,
                                       &pools[i].name, now,
                                       r->connection->log);
        slots[i] = slot;

        state[i].rank = pools[i].rank;
        state[i].min = pools[i].min;
        state[i].max = pools[i].max;
        state[i].window_tokens = ngx_http_vmx_pools_sum(slot, now,
                                     def->strategy.window_ms / 1000);
        state[i].minute_tokens = ngx_http_vmx_pools_sum(slot, now,
                                     NGX_HTTP_VMX_POOL_SECONDS);
        state[i].share = slot->share;
        state[i].grown_at = slot->grown_at;
    }

    admitted = vmx_pools_gate(state, n, &def->strategy, capacity, p,
                              ctx->request.estimate, now_ms);

    for (i = 0; i < n; i++) {
        slots[i]->share = state[i].share;
        slots[i]->grown_at = state[i].grown_at;
    }

    slot = slots[p];

    if (!admitted) {
        ngx_shmtx_unlock(&mcf->pools_zone.shpool->mutex);
        return ngx_http_vmx_pools_deny(r, ctx, pool, slot, state[p].share,
                                       capacity, now);
    }

    i = now % NGX_HTTP_VMX_POOL_SECONDS;

    if (slot->second[i] != now) {
        slot->second[i] = now;
        slot->tokens[i] = 0;
    }

    slot->tokens[i] += ctx->request.estimate;

    ngx_shmtx_unlock(&mcf->pools_zone.shpool->mutex);

    ctx->admission.pool_slot = slot;
    ctx->admission.pool_second = now;
    ctx->admission.pool_tokens = ctx->request.estimate;

    return NGX_HTTP_VMX_ADMIT_PASS;
}


/*
 * The answer is complete: the estimate counted for the pool becomes the
 * provider's usage; a request that got no answer used nothing.
 */

void
ngx_http_vmx_pools_settle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    int64_t                    used;
    ngx_uint_t                 i;
    ngx_http_vmx_pool_slot_t  *slot;
    ngx_http_vmx_main_conf_t  *mcf;

    slot = ctx->admission.pool_slot;

    if (slot == NULL) {
        return;
    }

    ctx->admission.pool_slot = NULL;

    used = ctx->attempt.usage.total_tokens;

    if (used < 0 && ctx->attempt.usage.prompt_tokens >= 0
        && ctx->attempt.usage.completion_tokens >= 0)
    {
        used = ctx->attempt.usage.prompt_tokens
               + ctx->attempt.usage.completion_tokens;
    }

    if (used < 0) {
        if (r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
            return;     /* an answer without usage keeps the estimate */
        }

        used = 0;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    i = ctx->admission.pool_second % NGX_HTTP_VMX_POOL_SECONDS;

    ngx_shmtx_lock(&mcf->pools_zone.shpool->mutex);

    /* a second that left the ring has nothing to correct */
    if (slot->second[i] == ctx->admission.pool_second) {
        slot->tokens[i] += used - ctx->admission.pool_tokens;

        if (slot->tokens[i] < 0) {
            slot->tokens[i] = 0;
        }
    }

    ngx_shmtx_unlock(&mcf->pools_zone.shpool->mutex);
}


/* the pool of that name in the environment's definition, or NULL */

ngx_http_vmx_pool_t *
ngx_http_vmx_pools_find(ngx_http_vmx_snapshot_t *snapshot,
    ngx_http_vmx_environment_t *env, ngx_str_t *name)
{
    ngx_uint_t                i;
    ngx_http_vmx_pool_t      *pools;
    ngx_http_vmx_pool_def_t  *def;

    def = ngx_http_vmx_index_find(&snapshot->pool_defs, env->id.data,
                                  env->id.len);
    if (def == NULL) {
        return NULL;
    }

    pools = def->pools.elts;

    for (i = 0; i < def->pools.nelts; i++) {
        if (pools[i].name.len == name->len
            && ngx_strncmp(pools[i].name.data, name->data, name->len) == 0)
        {
            return &pools[i];
        }
    }

    return NULL;
}


/* the connection's tokens per minute, 0 when not limited */

static int64_t
ngx_http_vmx_pools_capacity(ngx_http_vmx_connection_t *conn)
{
    ngx_uint_t             i;
    ngx_http_vmx_limit_t  *limit;

    limit = conn->limits.elts;

    for (i = 0; i < conn->limits.nelts; i++) {
        /* a per-address entry is no capacity that pools share */
        if (limit[i].period == NGX_HTTP_VMX_PERIOD_MINUTE
            && limit[i].tokens >= 0 && !limit[i].per_address)
        {
            return limit[i].tokens;
        }
    }

    return 0;
}


/*
 * The slot of a connection and pool; when the table is full, the one
 * unused the longest is taken over (counted when it was used in the last
 * minute: its pool's count starts again).  Under the zone's lock.
 */

static ngx_http_vmx_pool_slot_t *
ngx_http_vmx_pools_slot(ngx_http_vmx_table_zone_t *tz,
    ngx_str_t *connection_id, ngx_str_t *name, time_t now, ngx_log_t *log)
{
    size_t                     len;
    ngx_uint_t                 i, n, mask;
    ngx_http_vmx_pool_slot_t  *table, *slot, *oldest;

    table = tz->table->slots;
    mask = tz->table->nslots - 1;
    len = ngx_min(name->len, NGX_HTTP_VMX_POOL_NAME);

    i = ngx_murmur_hash2(connection_id->data, connection_id->len)
        ^ ngx_murmur_hash2(name->data, len);

    oldest = NULL;

    for (n = 0; n <= mask; n++, i++) {
        slot = &table[i & mask];

        if (slot->used_at == 0) {
            tz->table->used++;
            break;
        }

        if (slot->name_len == len
            && ngx_memcmp(slot->connection_id, connection_id->data, 36) == 0
            && ngx_memcmp(slot->name, name->data, len) == 0)
        {
            slot->used_at = now;
            return slot;
        }

        if (oldest == NULL || slot->used_at < oldest->used_at) {
            oldest = slot;
        }
    }

    if (n > mask) {
        slot = oldest;

        if (now - slot->used_at < NGX_HTTP_VMX_POOL_SECONDS) {
            ngx_http_vmx_table_full(tz, log, "a pool used in the last minute "
                                             "was taken over");
        }
    }

    ngx_memzero(slot, sizeof(ngx_http_vmx_pool_slot_t));
    ngx_memcpy(slot->connection_id, connection_id->data, 36);
    ngx_memcpy(slot->name, name->data, len);
    slot->name_len = len;
    slot->used_at = now;
    slot->share = -1;

    return slot;
}


/* the tokens of the last "seconds" seconds, this one included */

static int64_t
ngx_http_vmx_pools_sum(ngx_http_vmx_pool_slot_t *slot, time_t now,
    time_t seconds)
{
    int64_t     sum;
    ngx_uint_t  i;

    sum = 0;

    for (i = 0; i < NGX_HTTP_VMX_POOL_SECONDS; i++) {
        if (now - slot->second[i] < seconds && slot->second[i] <= now) {
            sum += slot->tokens[i];
        }
    }

    return sum;
}


static ngx_http_vmx_admit_e
ngx_http_vmx_pools_deny(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_pool_t *pool, ngx_http_vmx_pool_slot_t *slot,
    int64_t share, int64_t capacity, time_t now)
{
    u_char   *p;
    size_t    len;
    time_t    wait, s;
    int64_t   over, freed;

    /* the request fits once enough of the pool's last minute has aged */
    over = ngx_http_vmx_pools_sum(slot, now, NGX_HTTP_VMX_POOL_SECONDS)
           + ctx->request.estimate - vmx_pools_tokens(capacity, share);
    freed = 0;

    for (wait = 1; wait < NGX_HTTP_VMX_POOL_SECONDS; wait++) {
        s = now - NGX_HTTP_VMX_POOL_SECONDS + wait;

        if (slot->second[s % NGX_HTTP_VMX_POOL_SECONDS] == s) {
            freed += slot->tokens[s % NGX_HTTP_VMX_POOL_SECONDS];
        }

        if (freed >= over) {
            break;
        }
    }

    len = sizeof("Pool \"\" is over its current share of .00% ( of  tokens "
                 "per minute)") + pool->name.len + 3 * NGX_INT64_LEN;

    p = ngx_pnalloc(r->pool, len + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_VMX_ADMIT_ERROR;
    }

    ctx->attempt.failure.data = p;
    p = ngx_sprintf(p, "Pool \"%V\" is over its current share of %L",
                    &pool->name, share / 100);

    if (share % 100) {
        p = ngx_sprintf(p, ".%02L", share % 100);
    }

    p = ngx_sprintf(p, "%% (%L of %L tokens per minute)",
                    vmx_pools_tokens(capacity, share), capacity);
    ctx->attempt.failure.len = p - ctx->attempt.failure.data;

    ctx->attempt.retry_after.data = p;
    ctx->attempt.retry_after.len = ngx_sprintf(p, "%T", wait) - p;

    return NGX_HTTP_VMX_ADMIT_DENY;
}
