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
 *
 * A budget (an entry's "cost") is an entry of its own whose tokens are
 * micro-dollars, so that its counters, in Redis too, stay integers: it
 * reserves the estimated cost at the price of the attempt's model (of the
 * plan's first model for the key's and resource's budgets), the prompt's
 * tokens at the input price and max_tokens, else
 * vmx_budget_default_completion_tokens, at the output price, and settles to
 * the cost of the provider's usage.  A model without a price is outside the
 * budgets: they neither count nor refuse its attempts, which is logged and
 * counted.
 *
 * Across nodes (vmx_redis), a counter is a lease of a cluster-wide counter
 * in Redis.  The connection's entries are checked inside nginx's peer.get,
 * synchronously, so an atomic reserve per request in Redis would not fit
 * them; leases do, and keep the common case free of round trips:
 *
 *   - a Lua script grants a node an allowance of the remaining quota
 *     atomically: min(max(wanted, remaining / (2 * nodes)), remaining), so
 *     the grants never add up to more than the limit and shrink as the
 *     window's remainder shrinks;
 *   - admission consumes the node's allowance (in this zone, shared by the
 *     workers) synchronously; when it falls under half the last grant, a
 *     worker asks for more in the background;
 *   - a request of the gate (its key and resource, and the connections of
 *     its plan, checked ahead) that finds an allowance too small waits,
 *     suspended, for a grant before it decides: no 429 while the cluster
 *     still has quota;
 *   - usage the cluster has not granted (tokens beyond the estimate,
 *     everything counted while Redis was unreachable) is pending and added
 *     to the cluster counter by the next flush.
 *
 * With Redis unreachable, the node enforces its own usage against the
 * limits, as without Redis.  Redis' epoch tells when it lost the counters
 * (restarted without persistence): the node then pushes its whole usage of
 * the current windows again.
 */

#include "ngx_http_vmx_module.h"

#include <hiredis/hiredis.h>


#define NGX_HTTP_VMX_LIMITS_FLUSH_MAX  64


/* laid over the rbtree node from its color byte on, as limit_req does */

typedef struct {
    u_char                       color;
    u_char                       dummy;
    u_short                      len;
    ngx_queue_t                  queue;
    int64_t                      requests;          /* used by this node */
    int64_t                      tokens;

    /* vmx_redis: this node's lease of the cluster counter */
    int64_t                      allow_requests;    /* granted, unused */
    int64_t                      allow_tokens;
    int64_t                      pending_requests;  /* used, not granted */
    int64_t                      pending_tokens;
    int64_t                      grant_requests;    /* the last grants */
    int64_t                      grant_tokens;
    int64_t                      cluster_requests;  /* granted in total */
    int64_t                      cluster_tokens;
    ngx_msec_t                   refill;            /* asked since, or 0 */

    time_t                       window_end;
    u_char                       data[1];
} ngx_http_vmx_limit_node_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  queue;
    ngx_uint_t                   dirty;         /* something is pending */
    size_t                       epoch_len;     /* Redis' counters' */
    u_char                       epoch[NGX_HTTP_VMX_EPOCH_LEN];
} ngx_http_vmx_limits_shctx_t;


/*
 * The request a round of grants wakes, shared by its calls and its pool
 * cleanup: a request that goes away while its grants are in flight (a
 * client closing) leaves request NULL, and the last of them frees it.
 */

typedef struct {
    ngx_http_request_t          *request;
    ngx_uint_t                   refs;
} ngx_http_vmx_limits_waiter_t;


/* a command of the cluster counter: a grant, a flush */

typedef struct {
    ngx_http_vmx_limits_waiter_t *waiter;       /* NULL: nobody waits */
    time_t                       window_end;
    int64_t                      limit_requests;
    int64_t                      limit_tokens;
    int64_t                      want_requests;
    int64_t                      want_tokens;
    int64_t                      add_requests;  /* pending, flushed */
    int64_t                      add_tokens;
    int64_t                      seen_requests; /* the counter's last totals */
    int64_t                      seen_tokens;
    unsigned                     refill:1;      /* the node's background one */
    size_t                       len;
    u_char                       key[NGX_HTTP_VMX_LIMIT_KEY_MAX];
} ngx_http_vmx_limits_call_t;


typedef struct {
    ngx_http_vmx_limits_shctx_t *sh;
    ngx_slab_pool_t             *shpool;
} ngx_http_vmx_limits_ctx_t;


/* one admission, from its lookups to its accounting */

typedef struct {
    ngx_http_vmx_limits_ctx_t   *lc;
    ngx_http_vmx_scope_t        *scopes;
    ngx_uint_t                   nscopes;
    ngx_int_t                    attempt;       /* -1: the request's own */
    int64_t                      cost;          /* estimated; -1: no price */
    time_t                       now;
    ngx_msec_t                   timeout;       /* of a refill in flight */
    unsigned                     redis:1;       /* vmx_redis is set */
    unsigned                     cluster:1;     /* Redis is reached */
    unsigned                     wait:1;        /* for grants, if short */

    /* the entries to reserve in, from ctx->admission.reservations[first] on */
    ngx_uint_t                   first;
    ngx_uint_t                   n;
    ngx_http_vmx_limit_t        *limits[NGX_HTTP_VMX_MAX_RESERVATIONS];
    ngx_http_vmx_limit_node_t   *nodes[NGX_HTTP_VMX_MAX_RESERVATIONS];

    /* the entry that refuses */
    ngx_http_vmx_limit_t        *deny;
    ngx_http_vmx_scope_t        *deny_scope;
    ngx_http_vmx_limit_node_t   *deny_node;
    time_t                       deny_end;
    unsigned                     deny_tokens:1;  /* not requests */

    /* the grants to ask for: waited for, in the background */
    ngx_uint_t                   nwait;
    ngx_http_vmx_limits_call_t  *waits[NGX_HTTP_VMX_MAX_RESERVATIONS];
    ngx_uint_t                   nrefill;
    ngx_http_vmx_limits_call_t  *refills[NGX_HTTP_VMX_MAX_RESERVATIONS];
} ngx_http_vmx_admission_t;


static ngx_int_t ngx_http_vmx_limits_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_vmx_limits_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_vmx_admit_e ngx_http_vmx_limits_round(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_admission_t *adm);
static ngx_http_vmx_admit_e ngx_http_vmx_limits_lookup_entry(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_scope_t *scope,
    ngx_http_vmx_limit_t *limit);
static ngx_http_vmx_admit_e ngx_http_vmx_limits_decide(
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_admission_t *adm,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit,
    ngx_http_vmx_limit_node_t *node);
static ngx_uint_t ngx_http_vmx_limits_budgeted(ngx_http_vmx_scope_t *scopes,
    ngx_uint_t nscopes);
static int64_t ngx_http_vmx_limits_estimate(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_target_t *target);
static int64_t ngx_http_vmx_limits_amount(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit);
static void ngx_http_vmx_limits_need(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit,
    int64_t *requests, int64_t *tokens);
static ngx_http_vmx_admit_e ngx_http_vmx_limits_ask(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_str_t *key,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node);
static ngx_int_t ngx_http_vmx_limits_refill(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_str_t *key,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node);
static void ngx_http_vmx_limits_headers(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm);
static void ngx_http_vmx_limits_remaining(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit,
    ngx_http_vmx_limit_node_t *node, ngx_uint_t admitted);
static void ngx_http_vmx_limits_account(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm);
static void ngx_http_vmx_limits_send_refills(ngx_http_vmx_admission_t *adm,
    ngx_uint_t failed);
static ngx_int_t ngx_http_vmx_limits_wait(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_admission_t *adm);
static void ngx_http_vmx_limits_drop_waits(ngx_http_vmx_admission_t *adm);
static ngx_http_vmx_admit_e ngx_http_vmx_limits_deny(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_admission_t *adm);
static void ngx_http_vmx_limits_adjust(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t attempt, int64_t tokens,
    int64_t cost);
static void ngx_http_vmx_limits_window(ngx_uint_t period, time_t now,
    time_t *start, time_t *end);
static void ngx_http_vmx_limits_key(ngx_str_t *key, u_char *buf,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit, time_t start,
    ngx_str_t *addr);
static ngx_http_vmx_limit_node_t *ngx_http_vmx_limits_node(
    ngx_http_vmx_limits_ctx_t *lc, ngx_str_t *key, time_t window_end);
static ngx_http_vmx_limit_node_t *ngx_http_vmx_limits_lookup(
    ngx_http_vmx_limits_ctx_t *lc, u_char *key, size_t len);
static void ngx_http_vmx_limits_expire(ngx_http_vmx_limits_ctx_t *lc,
    ngx_uint_t force);
static ngx_http_vmx_limits_call_t *ngx_http_vmx_limits_call(ngx_str_t *key,
    ngx_http_vmx_limit_node_t *node, ngx_http_vmx_limit_t *limit);
static ngx_int_t ngx_http_vmx_limits_send(ngx_http_vmx_limits_call_t *call);
static void ngx_http_vmx_limits_granted(redisReply *reply, void *data);
static ngx_http_vmx_limits_waiter_t *ngx_http_vmx_limits_waiter(
    ngx_http_request_t *r);
static void ngx_http_vmx_limits_waiter_gone(void *data);
static void ngx_http_vmx_limits_waiter_release(
    ngx_http_vmx_limits_waiter_t *w);


static const char  *ngx_http_vmx_period_names[] = {
    "minute", "hour", "day", "week", "month", "lifetime"
};


/*
 * KEYS[1]: the counter; ARGV: its requests and tokens limits (-1: none),
 * the requests and tokens wanted, the pending ones to add, the nodes, the
 * expiry (0: none), the totals this node last saw.  A grant gives both
 * measures wanted or neither: a request needs both.  Returns the grants and
 * the counter's totals.
 *
 * A counter under what the node saw is a master promoted after a failover
 * that missed the last writes: it is raised to that first.
 */

static const char  ngx_http_vmx_limits_script[] =
    "local c = KEYS[1]\n"
    "local function add(f, seen, v)\n"
    "  local now = tonumber(redis.call('HGET', c, f) or 0)\n"
    "  return redis.call('HINCRBY', c, f, math.max(seen - now, 0) + v)\n"
    "end\n"
    "local r = add('r', tonumber(ARGV[9]), ARGV[5])\n"
    "local t = add('t', tonumber(ARGV[10]), ARGV[6])\n"
    "local n = 2 * tonumber(ARGV[7])\n"
    "local function grant(used, limit, want)\n"
    "  if want <= 0 or limit < 0 then return 0 end\n"
    "  local left = limit - used\n"
    "  if left < want then return -1 end\n"
    "  return math.min(left, math.max(want, math.floor(left / n)))\n"
    "end\n"
    "local gr = grant(r, tonumber(ARGV[1]), tonumber(ARGV[3]))\n"
    "local gt = grant(t, tonumber(ARGV[2]), tonumber(ARGV[4]))\n"
    "if gr < 0 or gt < 0 then gr, gt = 0, 0 end\n"
    "if gr > 0 then r = redis.call('HINCRBY', c, 'r', gr) end\n"
    "if gt > 0 then t = redis.call('HINCRBY', c, 't', gt) end\n"
    "if ARGV[8] ~= '0' then redis.call('EXPIREAT', c, ARGV[8]) end\n"
    "return {gr, gt, r, t}\n";


char *
ngx_http_vmx_limits_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    ngx_str_t                  *value;
    ngx_http_vmx_limits_ctx_t  *lc;

    if (mcf->limits_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lc = ngx_pcalloc(cf->pool, sizeof(ngx_http_vmx_limits_ctx_t));
    if (lc == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->limits_zone = ngx_http_vmx_zone_add(cf, &value[1]);
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
 * request and ctx->request.estimate tokens in each, or answers why not:
 * PASS, DENY (ctx->attempt.failure and ctx->attempt.retry_after say why),
 * WAIT (the request waits for the cluster's grants:
 * ctx->admission.limits_event is posted when they are in, and the
 * admission is then tried again), ERROR.  attempt is the index of the
 * provider attempt the reservation belongs to, or -1 for the request's own
 * scopes, the only ones that may wait.  Entries of scopes marked "ahead"
 * are only checked and their allowance refilled.
 */

ngx_http_vmx_admit_e
ngx_http_vmx_limits_admit(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_scope_t *scopes, ngx_uint_t nscopes, ngx_int_t attempt)
{
    ngx_http_vmx_admit_e       rc;
    ngx_http_vmx_admission_t   adm;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->limits_zone == NULL) {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    adm.lc = mcf->limits_zone->data;
    adm.scopes = scopes;
    adm.nscopes = nscopes;
    adm.attempt = attempt;
    adm.redis = (mcf->redis != NULL);

    /* priced only when a budget applies: no lookup, no log otherwise */
    adm.cost = ngx_http_vmx_limits_budgeted(scopes, nscopes)
               ? ngx_http_vmx_limits_estimate(r, ctx, (attempt >= 0)
                                                      ? ctx->attempt.target
                                                      : ctx->plan.targets[0])
               : -1;

    /*
     * A round that waits and whose every grant fails to go out is decided
     * again at once: it counted in ctx->admission.limits_waits and granted
     * nothing, so the second round does not wait.
     */

    for ( ;; ) {
        rc = ngx_http_vmx_limits_round(r, ctx, &adm);

        ngx_http_vmx_limits_send_refills(&adm,
                                         rc == NGX_HTTP_VMX_ADMIT_ERROR);

        if (rc != NGX_HTTP_VMX_ADMIT_WAIT) {
            ngx_http_vmx_limits_drop_waits(&adm);

            return (rc == NGX_HTTP_VMX_ADMIT_DENY)
                   ? ngx_http_vmx_limits_deny(r, ctx, &adm) : rc;
        }

        if (ngx_http_vmx_limits_wait(r, ctx, &adm) != NGX_OK) {
            return NGX_HTTP_VMX_ADMIT_ERROR;
        }

        if (ctx->admission.limits_waiting) {
            return NGX_HTTP_VMX_ADMIT_WAIT;
        }
    }
}


/*
 * One round under the zone's lock: every entry decided first, then the
 * reservation in all of them, or in none.
 */

static ngx_http_vmx_admit_e
ngx_http_vmx_limits_round(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm)
{
    ngx_uint_t             s, i;
    ngx_http_vmx_admit_e   rc;
    ngx_http_vmx_limit_t  *limit;
    ngx_http_vmx_scope_t  *scope;

    adm->now = ngx_time();
    adm->first = ctx->admission.nreservations;
    adm->n = 0;
    adm->nwait = 0;
    adm->nrefill = 0;
    adm->deny = NULL;

    /* leases while this worker reaches Redis, the node's own usage else */
    adm->cluster = ngx_http_vmx_redis_up();
    adm->timeout = adm->cluster ? ngx_http_vmx_redis_conf()->timeout : 0;

    /* made by the first admission with limits, not with every request */
    if (ctx->admission.reservations == NULL) {
        ctx->admission.reservations = ngx_palloc(r->pool,
                                        NGX_HTTP_VMX_MAX_RESERVATIONS
                                        * sizeof(ngx_http_vmx_reservation_t));
        if (ctx->admission.reservations == NULL) {
            return NGX_HTTP_VMX_ADMIT_ERROR;
        }
    }

    /* a grant taken by concurrent requests meanwhile: ask once more */
    adm->wait = adm->cluster && adm->attempt == -1
                && (ctx->admission.limits_waits == 0
                    || (ctx->admission.limits_granted
                        && ctx->admission.limits_waits < 3));

    ngx_shmtx_lock(&adm->lc->shpool->mutex);

    for (s = 0; s < adm->nscopes; s++) {
        scope = &adm->scopes[s];
        limit = scope->limits->elts;

        for (i = 0; i < scope->limits->nelts; i++) {

            /* ctx->admission.reservations is full: no more entries of the
               scope */
            if (!scope->ahead
                && adm->first + adm->n == NGX_HTTP_VMX_MAX_RESERVATIONS)
            {
                break;
            }

            if (limit[i].cost && adm->cost < 0) {
                continue;
            }

            rc = ngx_http_vmx_limits_lookup_entry(r, ctx, adm, scope,
                                                  &limit[i]);

            if (rc == NGX_HTTP_VMX_ADMIT_DENY
                || rc == NGX_HTTP_VMX_ADMIT_ERROR)
            {
                goto decided;
            }
        }
    }

    rc = adm->nwait ? NGX_HTTP_VMX_ADMIT_WAIT : NGX_HTTP_VMX_ADMIT_PASS;

decided:

    /* a request that waits shows its headers once decided */
    if (rc != NGX_HTTP_VMX_ADMIT_ERROR && adm->nwait == 0) {
        ngx_http_vmx_limits_headers(ctx, adm);
    }

    if (rc == NGX_HTTP_VMX_ADMIT_PASS) {
        ngx_http_vmx_limits_account(ctx, adm);
    }

    ngx_shmtx_unlock(&adm->lc->shpool->mutex);

    return rc;
}


/*
 * One entry: its counter found or made, its verdict, a refill of its
 * allowance; PASS notes it for the reservation, WAIT for a grant.
 */

static ngx_http_vmx_admit_e
ngx_http_vmx_limits_lookup_entry(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_admission_t *adm,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit)
{
    time_t                       start, end;
    ngx_str_t                    key;
    ngx_http_vmx_admit_e         rc;
    ngx_http_vmx_limit_node_t   *node;
    ngx_http_vmx_reservation_t  *res;
    u_char                       buf[NGX_HTTP_VMX_LIMIT_KEY_MAX];

    ngx_http_vmx_limits_window(limit->period, adm->now, &start, &end);
    ngx_http_vmx_limits_key(&key, buf, scope, limit, start,
                            &r->connection->addr_text);

    node = ngx_http_vmx_limits_node(adm->lc, &key, end);
    if (node == NULL) {
        return NGX_HTTP_VMX_ADMIT_ERROR;
    }

    rc = ngx_http_vmx_limits_decide(ctx, adm, scope, limit, node);

    if (rc == NGX_HTTP_VMX_ADMIT_WAIT) {
        return ngx_http_vmx_limits_ask(ctx, adm, &key, limit, node);
    }

    if (adm->cluster
        && ngx_http_vmx_limits_refill(ctx, adm, &key, limit, node) != NGX_OK)
    {
        return NGX_HTTP_VMX_ADMIT_ERROR;
    }

    if (rc == NGX_HTTP_VMX_ADMIT_DENY || scope->ahead) {
        return rc;
    }

    /* the key is kept to settle the reservation later */
    res = &ctx->admission.reservations[adm->first + adm->n];
    ngx_memcpy(res->key, key.data, key.len);
    res->len = key.len;
    res->end = end;
    res->attempt = adm->attempt;
    res->tokens = ngx_http_vmx_limits_amount(ctx, adm, limit);
    res->settled = 0;
    res->cost = limit->cost;

    adm->limits[adm->n] = limit;
    adm->nodes[adm->n++] = node;

    return NGX_HTTP_VMX_ADMIT_PASS;
}


/*
 * One entry's verdict: in a cluster the node's allowance decides, else its
 * own usage.  An entry checked ahead refuses nothing: its scope's own turn
 * comes in peer.get.
 */

static ngx_http_vmx_admit_e
ngx_http_vmx_limits_decide(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_scope_t *scope,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node)
{
    int64_t     need_r, need_t;
    ngx_uint_t  tokens;

    ngx_http_vmx_limits_need(ctx, adm, limit, &need_r, &need_t);

    if (adm->cluster) {
        if (need_r <= node->allow_requests && need_t <= node->allow_tokens) {
            return NGX_HTTP_VMX_ADMIT_PASS;
        }

        if (adm->wait) {
            return NGX_HTTP_VMX_ADMIT_WAIT;
        }

        tokens = (need_r <= node->allow_requests);

    } else if (limit->requests >= 0
               && node->requests + 1 > limit->requests)
    {
        tokens = 0;

    } else if (limit->tokens >= 0 && node->tokens + need_t > limit->tokens) {
        tokens = 1;

    } else {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    if (scope->ahead) {
        return NGX_HTTP_VMX_ADMIT_PASS;
    }

    adm->deny = limit;
    adm->deny_scope = scope;
    adm->deny_node = node;
    adm->deny_end = node->window_end;
    adm->deny_tokens = tokens;

    return NGX_HTTP_VMX_ADMIT_DENY;
}


/* whether an entry of the scopes is a budget */

static ngx_uint_t
ngx_http_vmx_limits_budgeted(ngx_http_vmx_scope_t *scopes, ngx_uint_t nscopes)
{
    ngx_uint_t             s, i;
    ngx_http_vmx_limit_t  *limit;

    for (s = 0; s < nscopes; s++) {
        limit = scopes[s].limits->elts;

        for (i = 0; i < scopes[s].limits->nelts; i++) {
            if (limit[i].cost) {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * The estimated cost in micro-dollars of the request on target's model, -1
 * when the model has no price (logged once a minute by a worker, counted in
 * the request's statistics)
 */

static int64_t
ngx_http_vmx_limits_estimate(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_target_t *target)
{
    int64_t                   completion;
    const vmx_json_t         *max;
    const vmx_cfg_price_t    *price;
    ngx_http_vmx_loc_conf_t  *vlcf;

    static time_t             logged;

    price = vmx_config_price_at(target->prices, ngx_time());

    if (price == NULL) {
        ctx->admission.unpriced = 1;

        if (ngx_time() - logged >= 60) {
            logged = ngx_time();
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "vmx: %V model \"%V\" has no price: budgets do "
                          "not count its requests", &target->provider,
                          &target->model);
        }

        return -1;
    }

    completion = 0;

    if (ctx->request.operation == NGX_HTTP_VMX_CHAT) {
        vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

        max = vmx_json_get(ctx->request.body, "max_completion_tokens");

        if (max == NULL || !max->is_int) {
            max = vmx_json_get(ctx->request.body, "max_tokens");
        }

        completion = (max && max->is_int && max->integer >= 0)
                     ? max->integer : vlcf->budget_completion_tokens;
    }

    return vmx_config_cost(price, ctx->request.estimate, 0, completion);
}


/* what a request counts in an entry: its token estimate, or its cost */

static int64_t
ngx_http_vmx_limits_amount(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit)
{
    return limit->cost ? adm->cost : ctx->request.estimate;
}


/* what a request takes of an entry: one request, the estimate, if limited */

static void
ngx_http_vmx_limits_need(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit,
    int64_t *requests, int64_t *tokens)
{
    *requests = (limit->requests >= 0) ? 1 : 0;
    *tokens = (limit->tokens >= 0)
              ? ngx_http_vmx_limits_amount(ctx, adm, limit) : 0;
}


/*
 * A grant the request waits for: the measures the allowance is short of.
 * Beyond the room for them, an entry waits in the next round.
 */

static ngx_http_vmx_admit_e
ngx_http_vmx_limits_ask(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_str_t *key,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node)
{
    int64_t                      need_r, need_t;
    ngx_http_vmx_limits_call_t  *call;

    if (adm->nwait == NGX_HTTP_VMX_MAX_RESERVATIONS) {
        return NGX_HTTP_VMX_ADMIT_WAIT;
    }

    call = ngx_http_vmx_limits_call(key, node, limit);
    if (call == NULL) {
        return NGX_HTTP_VMX_ADMIT_ERROR;
    }

    ngx_http_vmx_limits_need(ctx, adm, limit, &need_r, &need_t);

    call->want_requests = (need_r > node->allow_requests) ? need_r : 0;
    call->want_tokens = (need_t > node->allow_tokens) ? need_t : 0;

    adm->waits[adm->nwait++] = call;

    return NGX_HTTP_VMX_ADMIT_WAIT;
}


/*
 * An allowance under half its last grant asks for more in the background,
 * once per Redis timeout, so that the next requests find it ready.
 */

static ngx_int_t
ngx_http_vmx_limits_refill(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_str_t *key,
    ngx_http_vmx_limit_t *limit, ngx_http_vmx_limit_node_t *node)
{
    int64_t                      need_r, need_t;
    ngx_http_vmx_limits_call_t  *call;

    if (adm->nrefill == NGX_HTTP_VMX_MAX_RESERVATIONS
        || (node->refill && ngx_current_msec - node->refill <= adm->timeout))
    {
        return NGX_OK;
    }

    ngx_http_vmx_limits_need(ctx, adm, limit, &need_r, &need_t);

    if (!(need_r && node->allow_requests - need_r
                    < ngx_max(node->grant_requests / 2, 1))
        && !(need_t && node->allow_tokens - need_t
                       < ngx_max(node->grant_tokens / 2, need_t)))
    {
        return NGX_OK;
    }

    call = ngx_http_vmx_limits_call(key, node, limit);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->refill = 1;
    call->want_requests = need_r;
    call->want_tokens = need_t ? ngx_max(need_t, 1) : 0;
    node->refill = ngx_current_msec;

    adm->refills[adm->nrefill++] = call;

    return NGX_OK;
}


/*
 * x-ratelimit-*: the request's own entries, and the attempt's; a refused
 * request is not counted, an attempt refused before the one that serves is
 * not shown
 */

static void
ngx_http_vmx_limits_headers(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm)
{
    ngx_uint_t                 i;
    ngx_http_vmx_ratelimit_t  *base;

    base = (adm->attempt >= 0) ? ctx->admission.ratelimit_own
                               : ctx->admission.ratelimit;
    ngx_memmove(ctx->admission.ratelimit, base,
                sizeof(ctx->admission.ratelimit));

    if (adm->deny) {
        ngx_http_vmx_limits_remaining(ctx, adm, adm->deny, adm->deny_node, 0);
    }

    for (i = 0; i < adm->n; i++) {
        ngx_http_vmx_limits_remaining(ctx, adm, adm->limits[i], adm->nodes[i],
                                      adm->deny == NULL);
    }

    if (adm->attempt < 0) {
        ngx_memcpy(ctx->admission.ratelimit_own, ctx->admission.ratelimit,
                   sizeof(ctx->admission.ratelimit));
    }
}


/*
 * The entry with the fewest requests and tokens left, after this request
 * when it is admitted
 */

static void
ngx_http_vmx_limits_remaining(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm, ngx_http_vmx_limit_t *limit,
    ngx_http_vmx_limit_node_t *node, ngx_uint_t admitted)
{
    int64_t                    left, used_r, used_t;
    ngx_http_vmx_ratelimit_t  *rl;

    /* in a cluster: what was granted, less this node's unused allowance */
    used_r = adm->cluster ? node->cluster_requests - node->allow_requests
                          : node->requests;
    used_t = adm->cluster ? node->cluster_tokens - node->allow_tokens
                          : node->tokens;

    if (limit->requests >= 0) {
        left = limit->requests - used_r - (admitted ? 1 : 0);
        rl = &ctx->admission.ratelimit[0];

        if (!rl->set || left < rl->remaining) {
            rl->set = 1;
            rl->limit = limit->requests;
            rl->remaining = ngx_max(left, 0);
            rl->reset = (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME)
                        ? -1 : node->window_end - adm->now;
        }
    }

    /* tokens, or a budget's micro-dollars */
    if (limit->tokens >= 0) {
        left = limit->tokens - used_t
               - (admitted ? ngx_http_vmx_limits_amount(ctx, adm, limit) : 0);
        rl = &ctx->admission.ratelimit[limit->cost ? 2 : 1];

        if (!rl->set || left < rl->remaining) {
            rl->set = 1;
            rl->limit = limit->tokens;
            rl->remaining = ngx_max(left, 0);
            rl->reset = (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME)
                        ? -1 : node->window_end - adm->now;
        }
    }
}


/* every entry passed: one request and the estimate are reserved in each */

static void
ngx_http_vmx_limits_account(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm)
{
    int64_t                     need_r, need_t;
    ngx_uint_t                  i;
    ngx_http_vmx_limit_node_t  *node;

    for (i = 0; i < adm->n; i++) {
        node = adm->nodes[i];

        ngx_http_vmx_limits_need(ctx, adm, adm->limits[i], &need_r, &need_t);

        node->requests++;
        node->tokens += ngx_http_vmx_limits_amount(ctx, adm, adm->limits[i]);

        if (adm->cluster) {
            node->allow_requests -= need_r;
            node->allow_tokens -= need_t;

        } else if (adm->redis) {
            /* for the cluster counters, once Redis is back */
            node->pending_requests += need_r;
            node->pending_tokens += need_t;
            adm->lc->sh->dirty = 1;
        }
    }

    ctx->admission.nreservations += adm->n;
}


/* out of the lock: the refills go, or, after a failure, are given up */

static void
ngx_http_vmx_limits_send_refills(ngx_http_vmx_admission_t *adm,
    ngx_uint_t failed)
{
    ngx_uint_t  i;

    for (i = 0; i < adm->nrefill; i++) {
        if (failed || ngx_http_vmx_limits_send(adm->refills[i]) != NGX_OK) {
            /* clears the node's refill: the next request asks again */
            ngx_http_vmx_limits_granted(NULL, adm->refills[i]);
        }
    }

    adm->nrefill = 0;
}


/*
 * The grants the request waits for go out; ctx->admission.limits_waiting counts
 * those that went, and the last of their answers resumes the request.
 */

static ngx_int_t
ngx_http_vmx_limits_wait(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm)
{
    ngx_uint_t                     i;
    ngx_http_vmx_limits_waiter_t  *waiter;

    waiter = ngx_http_vmx_limits_waiter(r);
    if (waiter == NULL) {
        ngx_http_vmx_limits_drop_waits(adm);
        return NGX_ERROR;
    }

    ctx->admission.limits_waits++;
    ctx->admission.limits_granted = 0;
    ctx->admission.limits_waiting = 0;

    for (i = 0; i < adm->nwait; i++) {
        adm->waits[i]->waiter = waiter;
        waiter->refs++;

        if (ngx_http_vmx_limits_send(adm->waits[i]) == NGX_OK) {
            ctx->admission.limits_waiting++;

        } else {
            waiter->refs--;
            ngx_free(adm->waits[i]);
        }
    }

    adm->nwait = 0;

    if (ctx->admission.limits_waiting) {
        /* a client that closes meanwhile ends the request (499) */
        r->read_event_handler = ngx_http_test_reading;
    }

    return NGX_OK;
}


static void
ngx_http_vmx_limits_drop_waits(ngx_http_vmx_admission_t *adm)
{
    ngx_uint_t  i;

    for (i = 0; i < adm->nwait; i++) {
        ngx_free(adm->waits[i]);
    }

    adm->nwait = 0;
}


/* the refusal in words and its Retry-After, for the 429 */

static ngx_http_vmx_admit_e
ngx_http_vmx_limits_deny(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_admission_t *adm)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             tokens;
    ngx_http_vmx_limit_t  *limit;
    ngx_http_vmx_scope_t  *scope;

    limit = adm->deny;
    scope = adm->deny_scope;
    tokens = adm->deny_tokens;

    len = sizeof("API key \"\" has reached its limit of  tokens per "
                 "lifetime") + scope->name.len + NGX_INT64_LEN + 2;

    p = ngx_pnalloc(r->pool, len + NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_VMX_ADMIT_ERROR;
    }

    ctx->attempt.failure.data = p;
    ctx->admission.over_budget = limit->cost;

    if (limit->cost) {
        p = ngx_sprintf(p, "%s \"%V\" has reached its %sbudget of $",
                        scope->level, &scope->name,
                        (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME)
                        ? "lifetime " : "");
        p = ngx_http_vmx_usd(p, limit->tokens);

        if (limit->period != NGX_HTTP_VMX_PERIOD_LIFETIME) {
            p = ngx_sprintf(p, " per %s",
                            ngx_http_vmx_period_names[limit->period]);
        }

    } else if (limit->period == NGX_HTTP_VMX_PERIOD_LIFETIME) {
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

    ctx->attempt.failure.len = p - ctx->attempt.failure.data;

    if (limit->period != NGX_HTTP_VMX_PERIOD_LIFETIME) {
        ctx->attempt.retry_after.data = p;
        p = ngx_sprintf(p, "%T", ngx_max(adm->deny_end - adm->now, 1));
        ctx->attempt.retry_after.len = p - ctx->attempt.retry_after.data;

    } else {
        ngx_str_null(&ctx->attempt.retry_after);
    }

    return NGX_HTTP_VMX_ADMIT_DENY;
}


/* dollars of micro-dollars: cents always, smaller digits when there are */

u_char *
ngx_http_vmx_usd(u_char *p, int64_t micros)
{
    u_char  *cents;

    p = ngx_sprintf(p, "%L.", micros / 1000000);
    cents = p + 2;
    p = ngx_sprintf(p, "%06L", micros % 1000000);

    while (p > cents && p[-1] == '0') {
        p--;
    }

    return p;
}


/* the answer is complete: reservations meet the provider's usage */

void
ngx_http_vmx_limits_settle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    int64_t                 used, cost;
    vmx_usage_t            *usage;
    const vmx_cfg_price_t  *price;

    if (ctx->admission.nreservations == 0) {
        return;
    }

    usage = &ctx->attempt.usage;
    used = usage->total_tokens;

    if (used < 0 && usage->prompt_tokens >= 0
        && usage->completion_tokens >= 0)
    {
        used = usage->prompt_tokens + usage->completion_tokens;
    }

    price = vmx_config_price_at(ctx->attempt.target->prices, ngx_time());

    cost = (price && usage->prompt_tokens >= 0
            && usage->completion_tokens >= 0)
           ? vmx_config_cost(price, usage->prompt_tokens,
                             usage->cached_tokens, usage->completion_tokens)
           : -1;

    /* an answer without usage, or of a model without a price, keeps the
       estimate */
    if (used >= 0 || cost >= 0) {
        ngx_http_vmx_limits_adjust(r, ctx, NGX_HTTP_VMX_ALL_ATTEMPTS, used,
                                   cost);
    }
}


/* a failed attempt gives its tokens back */

void
ngx_http_vmx_limits_release(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t attempt)
{
    ngx_http_vmx_limits_adjust(r, ctx, attempt, 0, 0);
}


/*
 * Sets the tokens of reservations to "tokens", of budgets to "cost" (-1:
 * kept as reserved): the request's own and the last attempt's (attempt
 * NGX_HTTP_VMX_ALL_ATTEMPTS), or one attempt's.
 */

static void
ngx_http_vmx_limits_adjust(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t attempt, int64_t tokens, int64_t cost)
{
    int64_t                       delta, value;
    ngx_uint_t                    i;
    ngx_http_vmx_limit_node_t    *ln;
    ngx_http_vmx_reservation_t   *res;
    ngx_http_vmx_limits_ctx_t    *lc;
    ngx_http_vmx_main_conf_t     *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    lc = mcf->limits_zone->data;

    ngx_shmtx_lock(&lc->shpool->mutex);

    for (i = 0; i < ctx->admission.nreservations; i++) {
        res = &ctx->admission.reservations[i];

        if (res->settled
            || (attempt == NGX_HTTP_VMX_ALL_ATTEMPTS
                ? (res->attempt >= 0
                   && (ngx_uint_t) res->attempt + 1 != ctx->plan.nattempts)
                : res->attempt != (ngx_int_t) attempt))
        {
            continue;
        }

        res->settled = 1;
        value = res->cost ? cost : tokens;

        if (value < 0 || res->end <= ngx_time()) {
            /* kept, or its window is over: nothing to correct */
            continue;
        }

        ln = ngx_http_vmx_limits_lookup(lc, res->key, res->len);
        if (ln == NULL) {
            continue;
        }

        delta = value - res->tokens;

        ln->tokens += delta;
        if (ln->tokens < 0) {
            ln->tokens = 0;
        }

        if (mcf->redis) {
            /* the lease absorbs the difference; beyond it, a debt */
            ln->allow_tokens -= delta;

            if (ln->allow_tokens < 0) {
                ln->pending_tokens -= ln->allow_tokens;
                ln->allow_tokens = 0;
                lc->sh->dirty = 1;
            }
        }
    }

    ngx_shmtx_unlock(&lc->shpool->mutex);
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


/*
 * scope kind, id, period, window start and, per address, the address: the
 * counter's name in Redis too
 */

static void
ngx_http_vmx_limits_key(ngx_str_t *key, u_char *buf,
    ngx_http_vmx_scope_t *scope, ngx_http_vmx_limit_t *limit, time_t start,
    ngx_str_t *addr)
{
    u_char  *p;

    p = ngx_sprintf(buf, "%c%s:%*s:%ui:%T", scope->kind,
                    limit->cost ? "$" : "", ngx_min(scope->id.len, 36),
                    scope->id.data, limit->period, start);

    if (limit->per_address) {
        p = ngx_sprintf(p, ":%*s", ngx_min(addr->len, NGX_SOCKADDR_STRLEN),
                        addr->data);
    }

    key->data = buf;
    key->len = p - buf;
}


static ngx_http_vmx_limit_node_t *
ngx_http_vmx_limits_node(ngx_http_vmx_limits_ctx_t *lc, ngx_str_t *key,
    time_t window_end)
{
    size_t                      size;
    ngx_rbtree_node_t          *node;
    ngx_http_vmx_limit_node_t  *ln;

    ln = ngx_http_vmx_limits_lookup(lc, key->data, key->len);

    if (ln) {
        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&lc->sh->queue, &ln->queue);
        return ln;
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

    node->key = ngx_crc32_short(key->data, key->len);

    ln = (ngx_http_vmx_limit_node_t *) &node->color;
    ngx_memzero(&ln->requests,
                offsetof(ngx_http_vmx_limit_node_t, data)
                - offsetof(ngx_http_vmx_limit_node_t, requests));
    ln->len = (u_short) key->len;
    ln->window_end = window_end;
    ngx_memcpy(ln->data, key->data, key->len);

    ngx_rbtree_insert(&lc->sh->rbtree, node);
    ngx_queue_insert_head(&lc->sh->queue, &ln->queue);

    return ln;
}


static ngx_http_vmx_limit_node_t *
ngx_http_vmx_limits_lookup(ngx_http_vmx_limits_ctx_t *lc, u_char *key,
    size_t len)
{
    ngx_int_t                   rc;
    ngx_uint_t                  hash;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_vmx_limit_node_t  *ln;

    hash = ngx_crc32_short(key, len);

    node = lc->sh->rbtree.root;
    sentinel = lc->sh->rbtree.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        ln = (ngx_http_vmx_limit_node_t *) &node->color;
        rc = ngx_memn2cmp(key, ln->data, len, (size_t) ln->len);

        if (rc == 0) {
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
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


static ngx_http_vmx_limits_call_t *
ngx_http_vmx_limits_call(ngx_str_t *key, ngx_http_vmx_limit_node_t *node,
    ngx_http_vmx_limit_t *limit)
{
    ngx_http_vmx_limits_call_t  *call;

    call = ngx_calloc(sizeof(ngx_http_vmx_limits_call_t), ngx_cycle->log);
    if (call == NULL) {
        return NULL;
    }

    call->window_end = node->window_end;
    call->seen_requests = node->cluster_requests;
    call->seen_tokens = node->cluster_tokens;
    call->limit_requests = limit ? limit->requests : -1;
    call->limit_tokens = limit ? limit->tokens : -1;
    call->len = key->len;
    ngx_memcpy(call->key, key->data, key->len);

    return call;
}


static ngx_int_t
ngx_http_vmx_limits_send(ngx_http_vmx_limits_call_t *call)
{
    u_char                     *p, *last;
    time_t                      expire;
    ngx_uint_t                  i;
    const char                 *argv[14];
    size_t                      argvlen[14];
    ngx_http_vmx_redis_conf_t  *rc;
    u_char                      buf[NGX_HTTP_VMX_LIMIT_KEY_MAX + 16
                                    + 10 * NGX_INT64_LEN];

    rc = ngx_http_vmx_redis_conf();

    /* a counter outlives its window a little: late settlements */
    expire = (call->window_end == NGX_MAX_TIME_T_VALUE)
             ? 0 : call->window_end + 60;

    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = ngx_http_vmx_limits_script;
    argvlen[1] = sizeof(ngx_http_vmx_limits_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;

    p = buf;
    last = buf + sizeof(buf);

    argv[3] = (char *) p;
    p = ngx_slprintf(p, last, "vmx:%*s", call->len, call->key);
    argv[4] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->limit_requests);
    argv[5] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->limit_tokens);
    argv[6] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->want_requests);
    argv[7] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->want_tokens);
    argv[8] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->add_requests);
    argv[9] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->add_tokens);
    argv[10] = (char *) p;
    p = ngx_slprintf(p, last, "%ui", rc->nodes);
    argv[11] = (char *) p;
    p = ngx_slprintf(p, last, "%T", expire);
    argv[12] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->seen_requests);
    argv[13] = (char *) p;
    p = ngx_slprintf(p, last, "%L", call->seen_tokens);

    for (i = 3; i < 13; i++) {
        argvlen[i] = argv[i + 1] - argv[i];
    }

    argvlen[13] = (char *) p - argv[13];

    return ngx_http_vmx_redis_command(ngx_http_vmx_limits_granted, call, 14,
                                      argv, argvlen);
}


/* a command's reply, or NULL: the link failed and nothing is known */

static void
ngx_http_vmx_limits_granted(redisReply *reply, void *data)
{
    ngx_http_vmx_limits_call_t *call = data;

    int64_t                     v[4];
    ngx_uint_t                  i;
    ngx_http_vmx_ctx_t         *ctx;
    ngx_http_vmx_limit_node_t  *ln;
    ngx_http_vmx_limits_ctx_t  *lc;
    ngx_http_vmx_main_conf_t   *mcf;

    if (reply
        && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4))
    {
        reply = NULL;
    }

    for (i = 0; reply && i < 4; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
            reply = NULL;
            break;
        }

        v[i] = reply->element[i]->integer;
    }

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_vmx_module);
    lc = mcf->limits_zone->data;

    ngx_shmtx_lock(&lc->shpool->mutex);

    ln = ngx_http_vmx_limits_lookup(lc, call->key, call->len);

    if (ln && ln->window_end == call->window_end) {

        if (reply) {
            ln->allow_requests += v[0];
            ln->allow_tokens += v[1];
            ln->grant_requests = v[0] ? v[0] : ln->grant_requests;
            ln->grant_tokens = v[1] ? v[1] : ln->grant_tokens;
            ln->cluster_requests = v[2];
            ln->cluster_tokens = v[3];

        } else if (call->add_requests || call->add_tokens) {
            /* not flushed after all: with the next flush */
            ln->pending_requests += call->add_requests;
            ln->pending_tokens += call->add_tokens;
            lc->sh->dirty = 1;
        }

        if (call->refill) {
            ln->refill = 0;
        }
    }

    ngx_shmtx_unlock(&lc->shpool->mutex);

    if (call->waiter && call->waiter->request) {
        ctx = ngx_http_get_module_ctx(call->waiter->request,
                                      ngx_http_vmx_module);

        if (reply && (v[0] || v[1])) {
            ctx->admission.limits_granted = 1;
        }

        if (--ctx->admission.limits_waiting == 0) {
            ngx_post_event(&ctx->admission.limits_event, &ngx_posted_events);
        }
    }

    if (call->waiter) {
        ngx_http_vmx_limits_waiter_release(call->waiter);
    }

    ngx_free(call);
}


/* the waiter of a round of r's grants, held by r's pool until it goes */

static ngx_http_vmx_limits_waiter_t *
ngx_http_vmx_limits_waiter(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_vmx_limits_waiter_t  *w;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    w = ngx_calloc(sizeof(ngx_http_vmx_limits_waiter_t), r->connection->log);
    if (w == NULL) {
        return NULL;
    }

    w->request = r;
    w->refs = 1;

    cln->handler = ngx_http_vmx_limits_waiter_gone;
    cln->data = w;

    return w;
}


/* the request's pool goes: its grants still in flight wake nobody */

static void
ngx_http_vmx_limits_waiter_gone(void *data)
{
    ngx_http_vmx_limits_waiter_t *w = data;

    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(w->request, ngx_http_vmx_module);

    if (ctx && ctx->admission.limits_event.posted) {
        ngx_delete_posted_event(&ctx->admission.limits_event);
    }

    w->request = NULL;
    ngx_http_vmx_limits_waiter_release(w);
}


static void
ngx_http_vmx_limits_waiter_release(ngx_http_vmx_limits_waiter_t *w)
{
    if (--w->refs == 0) {
        ngx_free(w);
    }
}


/*
 * Redis answered with its epoch: another one than the node knew means a
 * server that lost the counters, and the node's usage of the current
 * windows is pushed again, its allowances forgotten with them.
 */

void
ngx_http_vmx_limits_resync(ngx_http_vmx_main_conf_t *mcf, u_char *epoch,
    size_t len)
{
    time_t                      now;
    ngx_queue_t                *q;
    ngx_http_vmx_limit_node_t  *ln;
    ngx_http_vmx_limits_ctx_t  *lc;

    lc = mcf->limits_zone->data;
    len = ngx_min(len, NGX_HTTP_VMX_EPOCH_LEN);
    now = ngx_time();

    ngx_shmtx_lock(&lc->shpool->mutex);

    if (lc->sh->epoch_len == len
        && ngx_memcmp(lc->sh->epoch, epoch, len) == 0)
    {
        ngx_shmtx_unlock(&lc->shpool->mutex);
        return;
    }

    if (lc->sh->epoch_len) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "vmx: redis %V lost the cluster counters: this "
                      "node's usage is added again", &mcf->redis->addr);

        for (q = ngx_queue_head(&lc->sh->queue);
             q != ngx_queue_sentinel(&lc->sh->queue);
             q = ngx_queue_next(q))
        {
            ln = ngx_queue_data(q, ngx_http_vmx_limit_node_t, queue);

            if (ln->window_end <= now) {
                continue;
            }

            ln->pending_requests = ln->requests;
            ln->pending_tokens = ln->tokens;
            ln->allow_requests = 0;
            ln->allow_tokens = 0;
            ln->grant_requests = 0;
            ln->grant_tokens = 0;
            ln->cluster_requests = 0;
            ln->cluster_tokens = 0;
            ln->refill = 0;
        }

        lc->sh->dirty = 1;
    }

    ngx_memcpy(lc->sh->epoch, epoch, len);
    lc->sh->epoch_len = len;

    ngx_shmtx_unlock(&lc->shpool->mutex);
}


/* pending usage goes to the cluster counters, some at a time */

void
ngx_http_vmx_limits_flush(ngx_http_vmx_main_conf_t *mcf)
{
    time_t                       now;
    ngx_str_t                    key;
    ngx_uint_t                   i, n;
    ngx_queue_t                 *q;
    ngx_http_vmx_limit_node_t   *ln;
    ngx_http_vmx_limits_ctx_t   *lc;
    ngx_http_vmx_limits_call_t  *calls[NGX_HTTP_VMX_LIMITS_FLUSH_MAX];

    lc = mcf->limits_zone->data;

    if (!lc->sh->dirty) {
        return;
    }

    now = ngx_time();
    n = 0;

    ngx_shmtx_lock(&lc->shpool->mutex);

    lc->sh->dirty = 0;

    for (q = ngx_queue_head(&lc->sh->queue);
         q != ngx_queue_sentinel(&lc->sh->queue);
         q = ngx_queue_next(q))
    {
        ln = ngx_queue_data(q, ngx_http_vmx_limit_node_t, queue);

        if (ln->pending_requests == 0 && ln->pending_tokens == 0) {
            continue;
        }

        if (ln->window_end <= now) {
            ln->pending_requests = 0;
            ln->pending_tokens = 0;
            continue;
        }

        if (n == NGX_HTTP_VMX_LIMITS_FLUSH_MAX) {
            lc->sh->dirty = 1;
            break;
        }

        key.data = ln->data;
        key.len = ln->len;

        calls[n] = ngx_http_vmx_limits_call(&key, ln, NULL);
        if (calls[n] == NULL) {
            lc->sh->dirty = 1;
            break;
        }

        calls[n]->add_requests = ln->pending_requests;
        calls[n]->add_tokens = ln->pending_tokens;
        ln->pending_requests = 0;
        ln->pending_tokens = 0;
        n++;
    }

    ngx_shmtx_unlock(&lc->shpool->mutex);

    for (i = 0; i < n; i++) {
        if (ngx_http_vmx_limits_send(calls[i]) != NGX_OK) {
            ngx_http_vmx_limits_granted(NULL, calls[i]);
        }
    }
}
