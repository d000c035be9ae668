/*
 * VM-X gateway: capacity limits.
 *
 * Every capacity entry of an API key, a resource or a connection counts
 * requests and tokens in fixed windows aligned to UTC (minute, hour, day,
 * ISO week, calendar month, lifetime), optionally per source address.  The
 * counters live in the "vmx_limits_zone" shared by the workers, laid out as
 * in ngx_http_limit_req_module: an rbtree of nodes and an LRU queue, a node
 * per scope, entry and window.
 *
 * Admission checks every entry of the scopes and reserves one request and
 * the token estimate in all of them, or in none.  The reservation is
 * settled to the provider's usage when the answer is complete, and a failed
 * attempt gives its tokens back.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_LIMIT_KEY_MAX  (1 + 36 + 1 + 8 + NGX_SOCKADDR_STRLEN)


/* laid over the rbtree node from its color byte on, as limit_req does */

typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;
    ngx_queue_t                  queue;
    int64_t                      requests;
    int64_t                      tokens;
    time_t                       window_end;
    u_char                       data[1];
} ngx_http_vmx_limit_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
} ngx_http_vmx_limits_shctx_t;


typedef struct {
    ngx_http_vmx_limits_shctx_t *sh;
    ngx_slab_pool_t             *shpool;
} ngx_http_vmx_limits_ctx_t;


static ngx_int_t ngx_http_vmx_limits_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_vmx_limits_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_vmx_limit_node_t *ngx_http_vmx_limits_node(
    ngx_http_vmx_limits_ctx_t *lc, ngx_str_t *key, time_t window_end);
static void ngx_http_vmx_limits_expire(ngx_http_vmx_limits_ctx_t *lc,
    ngx_uint_t force);
static void ngx_http_vmx_limits_window(ngx_uint_t period, time_t now,
    time_t *start, time_t *end);
static void ngx_http_vmx_limits_key(ngx_str_t *key, u_char *buf,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit, time_t start,
    ngx_str_t *addr);
static ngx_int_t ngx_http_vmx_limits_deny(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_scope_t *scope,
    ngx_http_vmx_limit_t *limit, ngx_flag_t tokens, time_t end, time_t now);
static void ngx_http_vmx_limits_headers(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node,
    time_t now);
static void ngx_http_vmx_limits_adjust(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t attempt, int64_t tokens);


static const char  *ngx_http_vmx_period_names[] = {
    "minute", "hour", "day", "week", "month", "lifetime"
};


char *
ngx_http_vmx_limits_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    u_char                     *p;
    ssize_t                     size;
    ngx_str_t                  *value, name, s;
    ngx_http_vmx_limits_ctx_t  *lc;

    if (mcf->limits_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');
    if (p == NULL) {
        return "must be \"name:size\"";
    }

    name.data = value[1].data;
    name.len = p - value[1].data;
    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);
    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        return "is too small";
    }

    lc = ngx_pcalloc(cf->pool, sizeof(ngx_http_vmx_limits_ctx_t));
    if (lc == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->limits_zone = ngx_shared_memory_add(cf, &name, size,
                                             &ngx_http_vmx_module);
    if (mcf->limits_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->limits_zone->init = ngx_http_vmx_limits_init_zone;
    mcf->limits_zone->data = lc;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_vmx_limits_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vmx_limits_ctx_t  *olc = data;

    size_t                      len;
    ngx_http_vmx_limits_ctx_t  *lc;

    lc = shm_zone->data;

    if (olc) {
        /* counters survive a reload */
        lc->sh = olc->sh;
        lc->shpool = olc->shpool;
        return NGX_OK;
    }

    lc->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        lc->sh = lc->shpool->data;
        return NGX_OK;
    }

    lc->sh = ngx_slab_alloc(lc->shpool, sizeof(ngx_http_vmx_limits_shctx_t));
    if (lc->sh == NULL) {
        return NGX_ERROR;
    }

    lc->shpool->data = lc->sh;

    ngx_rbtree_init(&lc->sh->rbtree, &lc->sh->sentinel,
                    ngx_http_vmx_limits_insert_value);
    ngx_queue_init(&lc->sh->queue);

    len = sizeof(" in vmx_limits_zone \"\"") + shm_zone->shm.name.len;

    lc->shpool->log_ctx = ngx_slab_alloc(lc->shpool, len);
    if (lc->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(lc->shpool->log_ctx, " in vmx_limits_zone \"%V\"%Z",
                &shm_zone->shm.name);

    return NGX_OK;
}


static void
ngx_http_vmx_limits_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_vmx_limit_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            ln = (ngx_http_vmx_limit_node_t *) &node->color;
            lnt = (ngx_http_vmx_limit_node_t *) &temp->color;

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->len, lnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * Admits a request against every entry of the scopes, reserving one
 * request and ctx->estimate tokens in each, or answers why not: NGX_OK,
 * NGX_DECLINED (ctx->failure and ctx->retry_after say why), NGX_ERROR.
 * attempt is the index of the provider attempt the reservation belongs to,
 * or -1 for the request's own scopes.
 */

ngx_int_t
ngx_http_vmx_limits_admit(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_scope_t *scopes, ngx_uint_t nscopes, ngx_int_t attempt)
{
    time_t                        now, start, end;
    ngx_str_t                     key;
    ngx_uint_t                    s, i, n, first;
    ngx_http_vmx_limit_t         *limit;
    ngx_http_vmx_reservation_t   *res;
    ngx_http_vmx_limit_node_t    *node, *nodes[NGX_HTTP_VMX_MAX_RESERVATIONS];
    ngx_http_vmx_limits_ctx_t    *lc;
    ngx_http_vmx_main_conf_t     *mcf;
    u_char                        buf[NGX_HTTP_VMX_LIMIT_KEY_MAX];

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->limits_zone == NULL) {
        return NGX_OK;
    }

    lc = mcf->limits_zone->data;
    now = ngx_time();
    first = ctx->nreservations;

    ngx_shmtx_lock(&lc->shpool->mutex);

    /* first every check, then every reservation: all or nothing */

    for (n = 0, s = 0; s < nscopes; s++) {
        limit = scopes[s].limits->elts;

        for (i = 0; i < scopes[s].limits->nelts; i++) {

            if (first + n == NGX_HTTP_VMX_MAX_RESERVATIONS) {
                break;
            }

            ngx_http_vmx_limits_window(limit[i].period, now, &start, &end);
            ngx_http_vmx_limits_key(&key, buf, &scopes[s], &limit[i], start,
                                    &r->connection->addr_text);

            node = ngx_http_vmx_limits_node(lc, &key, end);
            if (node == NULL) {
                ngx_shmtx_unlock(&lc->shpool->mutex);
                return NGX_ERROR;
            }

            if (limit[i].requests >= 0
                && node->requests + 1 > limit[i].requests)
            {
                ngx_shmtx_unlock(&lc->shpool->mutex);
                return ngx_http_vmx_limits_deny(r, ctx, &scopes[s], &limit[i],
                                                0, end, now);
            }

            if (limit[i].tokens >= 0
                && node->tokens + ctx->estimate > limit[i].tokens)
            {
                ngx_shmtx_unlock(&lc->shpool->mutex);
                return ngx_http_vmx_limits_deny(r, ctx, &scopes[s], &limit[i],
                                                1, end, now);
            }

            /* the key is kept to settle the reservation later */
            res = &ctx->reservations[first + n];
            ngx_memcpy(res->key, key.data, key.len);
            res->len = key.len;
            res->end = end;
            res->attempt = attempt;
            res->tokens = ctx->estimate;

            nodes[n++] = node;

            ngx_http_vmx_limits_headers(ctx, &limit[i], node, now);
        }
    }

    for (i = 0; i < n; i++) {
        nodes[i]->requests++;
        nodes[i]->tokens += ctx->estimate;
    }

    ngx_shmtx_unlock(&lc->shpool->mutex);

    ctx->nreservations += n;

    return NGX_OK;
}


/* the answer is complete: reservations meet the provider's usage */

void
ngx_http_vmx_limits_settle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    int64_t  used;

    if (ctx->nreservations == 0) {
        return;
    }

    used = ctx->usage.total_tokens;

    if (used < 0 && ctx->usage.prompt_tokens >= 0
        && ctx->usage.completion_tokens >= 0)
    {
        used = ctx->usage.prompt_tokens + ctx->usage.completion_tokens;
    }

    /* an answer without usage keeps the estimate */
    if (used >= 0) {
        ngx_http_vmx_limits_adjust(r, ctx, NGX_HTTP_VMX_ALL_ATTEMPTS, used);
    }
}


/* a failed attempt gives its tokens back */

void
ngx_http_vmx_limits_release(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t attempt)
{
    ngx_http_vmx_limits_adjust(r, ctx, attempt, 0);
}


/*
 * Sets the tokens of reservations to "tokens": the request's own and the
 * last attempt's (attempt NGX_HTTP_VMX_ALL_ATTEMPTS), or one attempt's.
 */

static void
ngx_http_vmx_limits_adjust(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t attempt, int64_t tokens)
{
    ngx_str_t                     key;
    ngx_uint_t                    i;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_vmx_limit_node_t    *ln;
    ngx_http_vmx_reservation_t   *res;
    ngx_http_vmx_limits_ctx_t    *lc;
    ngx_http_vmx_main_conf_t     *mcf;
    ngx_uint_t                    hash;
    ngx_int_t                     rc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    lc = mcf->limits_zone->data;

    ngx_shmtx_lock(&lc->shpool->mutex);

    for (i = 0; i < ctx->nreservations; i++) {
        res = &ctx->reservations[i];

        if (res->settled
            || (attempt == NGX_HTTP_VMX_ALL_ATTEMPTS
                ? (res->attempt >= 0
                   && (ngx_uint_t) res->attempt + 1 != ctx->nattempts)
                : res->attempt != (ngx_int_t) attempt))
        {
            continue;
        }

        res->settled = 1;

        if (res->end <= ngx_time()) {
            /* its window is over: nothing to correct */
            continue;
        }

        key.data = res->key;
        key.len = res->len;
        hash = ngx_crc32_short(key.data, key.len);

        node = lc->sh->rbtree.root;
        sentinel = lc->sh->rbtree.sentinel;

        while (node != sentinel) {
            if (hash != node->key) {
                node = (hash < node->key) ? node->left : node->right;
                continue;
            }

            ln = (ngx_http_vmx_limit_node_t *) &node->color;
            rc = ngx_memn2cmp(key.data, ln->data, key.len, (size_t) ln->len);

            if (rc == 0) {
                ln->tokens += tokens - res->tokens;
                if (ln->tokens < 0) {
                    ln->tokens = 0;
                }
                break;
            }

            node = (rc < 0) ? node->left : node->right;
        }
    }

    ngx_shmtx_unlock(&lc->shpool->mutex);
}


static ngx_int_t
ngx_http_vmx_limits_deny(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit,
    ngx_flag_t tokens, time_t end, time_t now)
{
    u_char  *p;
    size_t   len;

    len = sizeof("API key \"\" has reached its limit of  tokens per "
                 "lifetime") + scope->name.len + NGX_INT64_LEN;

    p = ngx_pnalloc(r->pool, len + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->failure.data = p;

    if (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME) {
        p = ngx_sprintf(p, "%s \"%V\" has reached its lifetime limit of %L %s",
                        scope->level, &scope->name,
                        tokens ? limit->tokens : limit->requests,
                        tokens ? "tokens" : "requests");

    } else {
        p = ngx_sprintf(p, "%s \"%V\" has reached its limit of %L %s per %s",
                        scope->level, &scope->name,
                        tokens ? limit->tokens : limit->requests,
                        tokens ? "tokens" : "requests",
                        ngx_http_vmx_period_names[limit->period]);
    }

    ctx->failure.len = p - ctx->failure.data;

    if (limit->period != NGX_HTTP_VMX_PERIOD_LIFETIME) {
        ctx->retry_after.data = p;
        ctx->retry_after.len = ngx_sprintf(p, "%T", ngx_max(end - now, 1))
                               - p;

    } else {
        ngx_str_null(&ctx->retry_after);
    }

    return NGX_DECLINED;
}


/* x-ratelimit-*: the entry with the fewest requests and tokens left */

static void
ngx_http_vmx_limits_headers(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node, time_t now)
{
    int64_t                  left;
    ngx_http_vmx_ratelimit_t  *rl;

    if (limit->requests >= 0) {
        left = limit->requests - node->requests - 1;
        rl = &ctx->ratelimit[0];

        if (!rl->set || left < rl->remaining) {
            rl->set = 1;
            rl->limit = limit->requests;
            rl->remaining = ngx_max(left, 0);
            rl->reset = (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME)
                        ? -1 : node->window_end - now;
        }
    }

    if (limit->tokens >= 0) {
        left = limit->tokens - node->tokens - ctx->estimate;
        rl = &ctx->ratelimit[1];

        if (!rl->set || left < rl->remaining) {
            rl->set = 1;
            rl->limit = limit->tokens;
            rl->remaining = ngx_max(left, 0);
            rl->reset = (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME)
                        ? -1 : node->window_end - now;
        }
    }
}


static ngx_http_vmx_limit_node_t *
ngx_http_vmx_limits_node(ngx_http_vmx_limits_ctx_t *lc, ngx_str_t *key,
    time_t window_end)
{
    size_t                      size;
    ngx_int_t                   rc;
    ngx_uint_t                  hash;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_vmx_limit_node_t  *ln;

    hash = ngx_crc32_short(key->data, key->len);

    node = lc->sh->rbtree.root;
    sentinel = lc->sh->rbtree.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        ln = (ngx_http_vmx_limit_node_t *) &node->color;
        rc = ngx_memn2cmp(key->data, ln->data, key->len, (size_t) ln->len);

        if (rc == 0) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&lc->sh->queue, &ln->queue);
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_vmx_limit_node_t, data) + key->len;

    ngx_http_vmx_limits_expire(lc, 0);

    node = ngx_slab_alloc_locked(lc->shpool, size);

    if (node == NULL) {
        ngx_http_vmx_limits_expire(lc, 1);

        node = ngx_slab_alloc_locked(lc->shpool, size);
        if (node == NULL) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "vmx: could not allocate a counter%s",
                          lc->shpool->log_ctx);
            return NULL;
        }
    }

    node->key = hash;

    ln = (ngx_http_vmx_limit_node_t *) &node->color;
    ln->len = (u_short) key->len;
    ln->requests = 0;
    ln->tokens = 0;
    ln->window_end = window_end;
    ngx_memcpy(ln->data, key->data, key->len);

    ngx_rbtree_insert(&lc->sh->rbtree, node);
    ngx_queue_insert_head(&lc->sh->queue, &ln->queue);

    return ln;
}


/* drops counters of windows that are over; force: the oldest one too */

static void
ngx_http_vmx_limits_expire(ngx_http_vmx_limits_ctx_t *lc, ngx_uint_t force)
{
    time_t                      now;
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_rbtree_node_t          *node;
    ngx_http_vmx_limit_node_t  *ln;

    now = ngx_time();

    for (n = 0; n < 3 && !ngx_queue_empty(&lc->sh->queue); n++) {
        q = ngx_queue_last(&lc->sh->queue);
        ln = ngx_queue_data(q, ngx_http_vmx_limit_node_t, queue);

        if (ln->window_end > now && !(force && n == 0)) {
            return;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&lc->sh->rbtree, node);
        ngx_slab_free_locked(lc->shpool, node);
    }
}


/* windows are fixed and aligned to UTC */

static void
ngx_http_vmx_limits_window(ngx_uint_t period, time_t now, time_t *start,
    time_t *end)
{
    time_t    days;
    ngx_tm_t  tm;
    ngx_int_t year, month;

    switch (period) {

    case NGX_HTTP_VMX_PERIOD_MINUTE:
        *start = now - now % 60;
        *end = *start + 60;
        return;

    case NGX_HTTP_VMX_PERIOD_HOUR:
        *start = now - now % 3600;
        *end = *start + 3600;
        return;

    case NGX_HTTP_VMX_PERIOD_DAY:
        *start = now - now % 86400;
        *end = *start + 86400;
        return;

    case NGX_HTTP_VMX_PERIOD_WEEK:
        /* ISO weeks start on Monday; January 1, 1970 was a Thursday */
        days = now / 86400;
        *start = (days - (days + 3) % 7) * 86400;
        *end = *start + 7 * 86400;
        return;

    case NGX_HTTP_VMX_PERIOD_MONTH:
        ngx_gmtime(now, &tm);
        year = tm.ngx_tm_year;
        month = tm.ngx_tm_mon;
        *start = ngx_http_vmx_days_from_civil(year, month, 1) * 86400;
        *end = (month == 12
                ? ngx_http_vmx_days_from_civil(year + 1, 1, 1)
                : ngx_http_vmx_days_from_civil(year, month + 1, 1)) * 86400;
        return;

    default: /* lifetime */
        *start = 0;
        *end = NGX_MAX_TIME_T_VALUE;
        return;
    }
}


/* days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant) */

time_t
ngx_http_vmx_days_from_civil(ngx_int_t y, ngx_int_t m, ngx_int_t d)
{
    ngx_int_t  era, yoe, doy, doe;

    y -= (m <= 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return (time_t) (era * 146097 + doe - 719468);
}


/* scope kind, id, period, window start and, per address, the address */

static void
ngx_http_vmx_limits_key(ngx_str_t *key, u_char *buf,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit, time_t start,
    ngx_str_t *addr)
{
    u_char  *p;
    size_t   len;

    p = buf;
    *p++ = scope->kind;

    len = ngx_min(scope->id.len, 36);
    p = ngx_cpymem(p, scope->id.data, len);

    *p++ = (u_char) ('0' + limit->period);
    p = ngx_cpymem(p, &start, sizeof(time_t));

    if (limit->per_address) {
        len = ngx_min(addr->len, NGX_SOCKADDR_STRLEN);
        p = ngx_cpymem(p, addr->data, len);
    }

    key->data = buf;
    key->len = p - buf;
}
