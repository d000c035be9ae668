/*
 * VM-X gateway: the configuration snapshot.
 *
 * The control plane PUTs a whole snapshot to the admin endpoint.  The
 * receiving worker compiles it completely (that is the validation), copies
 * the raw bytes into the shared zone and writes an encrypted disk copy; every
 * worker looks at the zone's generation on a timer and compiles the same
 * bytes into its own lookup tables.  Compiling is never a request's work: it
 * runs in a task of the thread pool named by "vmx_config_zone ...
 * thread_pool=", or (without one) in the worker's timer; requests go on with
 * the snapshot they had until the new one is ready.  The PUT is answered once
 * every worker runs the new snapshot (or after NGX_HTTP_VMX_CONFIG_PUT_WAIT),
 * and the version a data plane reports is the one all its workers run.  A
 * compiled snapshot lives in its own pool and is destroyed when no request
 * uses it any more.
 */

#include "ngx_http_vmx_module.h"

#include <sodium.h>


#define NGX_HTTP_VMX_DISK_MAGIC      "VMXCFG1\n"
#define NGX_HTTP_VMX_DISK_MAGIC_LEN  (sizeof(NGX_HTTP_VMX_DISK_MAGIC) - 1)
#define NGX_HTTP_VMX_DISK_KEY_SALT   "vmx-config-at-rest-v1"

#define NGX_HTTP_VMX_CONFIG_WATCH     20      /* ms between looks at the zone */
#define NGX_HTTP_VMX_CONFIG_PUT_WAIT  5000    /* ms a PUT waits for workers */
#define NGX_HTTP_VMX_CONFIG_ERROR     512

#if (NGX_HTTP_VMX_DISK_NONCE_LEN \
     != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#error "NGX_HTTP_VMX_DISK_NONCE_LEN is not XChaCha20-Poly1305's nonce size"
#endif


typedef struct {
    ngx_pool_t                  *pool;
    ngx_http_vmx_snapshot_t     *snapshot;
    vmx_config_t                *cfg;

    /* in the order of cfg's arrays */
    ngx_http_vmx_environment_t  *envs;
    ngx_http_vmx_connection_t   *conns;
    ngx_http_vmx_resource_t     *resources;
} ngx_http_vmx_compile_t;


/*
 * One compile, in a thread or in the worker: of the zone's bytes (request is
 * NULL), or of a PUT's body, which it then stores and writes to disk.
 */

typedef struct {
    ngx_http_vmx_main_conf_t    *mcf;
    ngx_pool_t                  *pool;          /* the task's */
#if (NGX_THREADS)
    ngx_thread_task_t           *task;
#endif
    ngx_http_request_t          *request;
    ngx_str_t                    body;
    ngx_atomic_uint_t            generation;    /* of the compiled bytes */
    ngx_http_vmx_snapshot_t     *snapshot;      /* NULL: failed */
    ngx_uint_t                   status;        /* a PUT's answer */
    ngx_flag_t                   unread_format;
    unsigned                     retry:1;       /* the copy failed */
    unsigned                     from_disk:1;   /* another master wrote it */
    ngx_msec_t                   took;
    ngx_str_t                    error;
    u_char                       errbuf[NGX_HTTP_VMX_CONFIG_ERROR];
} ngx_http_vmx_config_job_t;


static ngx_http_vmx_snapshot_t *ngx_http_vmx_snapshot_compile(u_char *data,
    size_t len, ngx_log_t *log, ngx_str_t *error, u_char *errbuf,
    ngx_flag_t *unread_format);
static void ngx_http_vmx_config_cleanup(void *data);
static ngx_int_t ngx_http_vmx_compile_environment(ngx_http_vmx_compile_t *cc,
    ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_connection(ngx_http_vmx_compile_t *cc,
    ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_resource(ngx_http_vmx_compile_t *cc,
    ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_target(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_resource_t *res, vmx_cfg_target_t *from,
    ngx_http_vmx_target_t *target);
static ngx_int_t ngx_http_vmx_compile_targets(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_resource_t *res, vmx_cfg_target_t *from, size_t n,
    ngx_array_t *targets);
static ngx_int_t ngx_http_vmx_compile_limits(ngx_http_vmx_compile_t *cc,
    vmx_cfg_limit_t *from, size_t n, ngx_array_t *limits);
static ngx_int_t ngx_http_vmx_compile_api_key(ngx_http_vmx_compile_t *cc,
    ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_pool_def(ngx_http_vmx_compile_t *cc,
    ngx_uint_t i);
static void ngx_http_vmx_cfg_str(ngx_str_t *to, vmx_cfg_str_t *from);

static void ngx_http_vmx_snapshot_release(void *data);
static void ngx_http_vmx_snapshot_retire(ngx_http_vmx_snapshot_t *snapshot);
static void ngx_http_vmx_snapshot_destroy(ngx_http_vmx_snapshot_t *snapshot);
#if (NGX_THREADS)
static void ngx_http_vmx_snapshot_free(void *data, ngx_log_t *log);
static void ngx_http_vmx_snapshot_freed(ngx_event_t *ev);
#endif
static ngx_int_t ngx_http_vmx_config_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_vmx_config_load_disk(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log);
static ngx_flag_t ngx_http_vmx_config_disk_changed(
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_config_store(ngx_http_vmx_main_conf_t *mcf,
    u_char *data, size_t len, uint64_t version, ngx_log_t *log,
    ngx_atomic_uint_t *generation);
static ngx_int_t ngx_http_vmx_config_write_disk(ngx_http_vmx_main_conf_t *mcf,
    u_char *data, size_t len, ngx_log_t *log);
static ngx_int_t ngx_http_vmx_config_read_disk(ngx_http_vmx_main_conf_t *mcf,
    ngx_pool_t *pool, ngx_str_t *out, u_char *nonce, ngx_log_t *log);
static void ngx_http_vmx_config_watch(ngx_event_t *ev);
static void ngx_http_vmx_config_job_start(ngx_http_vmx_config_job_t *job);
static void ngx_http_vmx_config_job_run(void *data, ngx_log_t *log);
static ngx_msec_t ngx_http_vmx_config_job_clock(void);
#if (NGX_THREADS)
static void ngx_http_vmx_config_job_thread(void *data, ngx_log_t *log);
static void ngx_http_vmx_config_job_done(ngx_event_t *ev);
#endif
static void ngx_http_vmx_config_job_finish(ngx_http_vmx_config_job_t *job);
static void ngx_http_vmx_config_install(ngx_http_vmx_main_conf_t *mcf,
    ngx_http_vmx_config_job_t *job, ngx_log_t *log);
static ngx_flag_t ngx_http_vmx_config_everywhere(
    ngx_http_vmx_main_conf_t *mcf);
static void ngx_http_vmx_config_put(ngx_http_request_t *r);
static void ngx_http_vmx_config_put_wait(ngx_http_request_t *r);
static void ngx_http_vmx_config_refused(ngx_http_vmx_main_conf_t *mcf,
    ngx_str_t *error);
static ngx_int_t ngx_http_vmx_config_state(ngx_http_request_t *r,
    ngx_uint_t status);
static void ngx_http_vmx_config_log_problems(ngx_log_t *log,
    vmx_config_t *cfg);
static ngx_flag_t ngx_http_vmx_config_authorized(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_uri_ends(ngx_http_request_t *r,
    const char *tail);


/* the worker's current snapshot and the zone generation it was built from */
static ngx_http_vmx_snapshot_t    *ngx_http_vmx_current;
static ngx_atomic_uint_t           ngx_http_vmx_generation;

/* the worker's look at the zone, its one compile of the zone's bytes */
static ngx_event_t                 ngx_http_vmx_config_watch_ev;
static ngx_http_vmx_config_job_t  *ngx_http_vmx_config_zone_job;
static ngx_flag_t                  ngx_http_vmx_config_busy;
static ngx_uint_t                  ngx_http_vmx_config_workers;


/* index */

ngx_int_t
ngx_http_vmx_index_init(ngx_http_vmx_index_t *ix, ngx_pool_t *pool,
    ngx_uint_t n)
{
    ngx_uint_t  size;

    /* at most half full, so probes stay short */
    for (size = 8; size < n * 2; size <<= 1) { /* void */ }

    ix->slots = ngx_pcalloc(pool, size * sizeof(ngx_http_vmx_slot_t));
    if (ix->slots == NULL) {
        return NGX_ERROR;
    }

    ix->mask = size - 1;

    return NGX_OK;
}


ngx_int_t
ngx_http_vmx_index_add(ngx_http_vmx_index_t *ix, ngx_str_t *key, void *value)
{
    ngx_uint_t            hash, i;
    ngx_http_vmx_slot_t  *slot;

    hash = ngx_murmur_hash2(key->data, key->len);

    for (i = hash & ix->mask; /* void */; i = (i + 1) & ix->mask) {
        slot = &ix->slots[i];

        if (slot->value == NULL) {
            break;
        }

        if (slot->hash == hash && slot->key.len == key->len
            && ngx_memcmp(slot->key.data, key->data, key->len) == 0)
        {
            return NGX_DECLINED;
        }
    }

    slot->hash = hash;
    slot->key = *key;
    slot->value = value;

    return NGX_OK;
}


void *
ngx_http_vmx_index_find(ngx_http_vmx_index_t *ix, u_char *key, size_t len)
{
    ngx_uint_t            hash, i;
    ngx_http_vmx_slot_t  *slot;

    if (ix->slots == NULL) {
        return NULL;
    }

    hash = ngx_murmur_hash2(key, len);

    for (i = hash & ix->mask; /* void */; i = (i + 1) & ix->mask) {
        slot = &ix->slots[i];

        if (slot->value == NULL) {
            return NULL;
        }

        if (slot->hash == hash && slot->key.len == len
            && ngx_memcmp(slot->key.data, key, len) == 0)
        {
            return slot->value;
        }
    }
}


/* compile: lib/vmx_config.c validates; this turns its result into nginx's
 * types, addresses and lookup tables.  Thread-safe: what it makes is in its
 * own pool, an error in errbuf; unread_format: the text is a snapshot of a
 * format this module does not read */

static ngx_http_vmx_snapshot_t *
ngx_http_vmx_snapshot_compile(u_char *data, size_t len, ngx_log_t *log,
    ngx_str_t *error, u_char *errbuf, ngx_flag_t *unread_format)
{
    int                         rc;
    ngx_uint_t                  i;
    ngx_pool_t                 *pool;
    vmx_config_t               *cfg;
    ngx_pool_cleanup_t         *cln;
    ngx_http_vmx_compile_t      cc;
    ngx_http_vmx_snapshot_t    *snapshot;

    /* a pool's size must keep its end aligned, or ngx_palloc() overruns */
    pool = ngx_create_pool(ngx_align(ngx_max(len * 2, 16384), ngx_pagesize),
                           log);
    if (pool == NULL) {
        return NULL;
    }

    snapshot = ngx_pcalloc(pool, sizeof(ngx_http_vmx_snapshot_t));
    cfg = ngx_pcalloc(pool, sizeof(vmx_config_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    *unread_format = 0;

    if (snapshot == NULL || cfg == NULL || cln == NULL) {
        ngx_str_set(error, "out of memory");
        ngx_destroy_pool(pool);
        return NULL;
    }

    rc = vmx_config_compile((char *) data, len, 0, ngx_http_vmx_json_alloc,
                            pool, cfg, (char *) errbuf,
                            NGX_HTTP_VMX_CONFIG_ERROR);
    if (rc != 0) {
        *unread_format = (rc == VMX_CONFIG_EFORMAT);
        error->data = errbuf;
        error->len = ngx_strlen(errbuf);
        ngx_destroy_pool(pool);
        return NULL;
    }

    /* the routing rules' regexes live outside the pool */
    cln->handler = ngx_http_vmx_config_cleanup;
    cln->data = cfg;

    snapshot->pool = pool;
    snapshot->config = cfg;
    snapshot->version = cfg->version;
    snapshot->loaded_at = ngx_time();

    cc.pool = pool;
    cc.snapshot = snapshot;
    cc.cfg = cfg;

    if (ngx_http_vmx_index_init(&snapshot->environments, pool,
                                cfg->nenvironments) != NGX_OK
        || ngx_http_vmx_index_init(&snapshot->connections, pool,
                                   cfg->nconnections) != NGX_OK
        || ngx_http_vmx_index_init(&snapshot->resources, pool,
                                   cfg->nresources) != NGX_OK
        || ngx_http_vmx_index_init(&snapshot->resource_ids, pool,
                                   cfg->nresources) != NGX_OK
        || ngx_http_vmx_index_init(&snapshot->api_keys, pool,
                                   2 * cfg->napi_keys) != NGX_OK
        || ngx_http_vmx_index_init(&snapshot->pool_defs, pool,
                                   cfg->npool_defs) != NGX_OK)
    {
        goto nomem;
    }

    cc.envs = ngx_pcalloc(pool, (cfg->nenvironments + 1)
                                * sizeof(ngx_http_vmx_environment_t));
    cc.conns = ngx_pcalloc(pool, (cfg->nconnections + 1)
                                 * sizeof(ngx_http_vmx_connection_t));
    cc.resources = ngx_pcalloc(pool, (cfg->nresources + 1)
                                     * sizeof(ngx_http_vmx_resource_t));

    if (cc.envs == NULL || cc.conns == NULL || cc.resources == NULL) {
        goto nomem;
    }

    for (i = 0; i < cfg->nenvironments; i++) {
        if (ngx_http_vmx_compile_environment(&cc, i) != NGX_OK) {
            goto nomem;
        }
    }

    for (i = 0; i < cfg->nconnections; i++) {
        if (ngx_http_vmx_compile_connection(&cc, i) != NGX_OK) {
            goto nomem;
        }
    }

    for (i = 0; i < cfg->nresources; i++) {
        if (ngx_http_vmx_compile_resource(&cc, i) != NGX_OK) {
            goto nomem;
        }
    }

    for (i = 0; i < cfg->napi_keys; i++) {
        if (ngx_http_vmx_compile_api_key(&cc, i) != NGX_OK) {
            goto nomem;
        }
    }

    for (i = 0; i < cfg->npool_defs; i++) {
        if (ngx_http_vmx_compile_pool_def(&cc, i) != NGX_OK) {
            goto nomem;
        }
    }

    return snapshot;

nomem:

    ngx_str_set(error, "out of memory");
    ngx_destroy_pool(pool);

    return NULL;
}


static void
ngx_http_vmx_config_cleanup(void *data)
{
    vmx_config_free(data);
}


static ngx_int_t
ngx_http_vmx_compile_environment(ngx_http_vmx_compile_t *cc, ngx_uint_t i)
{
    vmx_cfg_environment_t       *from = &cc->cfg->environments[i];
    ngx_http_vmx_environment_t  *env = &cc->envs[i];

    ngx_http_vmx_cfg_str(&env->id, &from->id);
    ngx_http_vmx_cfg_str(&env->workspace_id, &from->workspace_id);
    ngx_http_vmx_cfg_str(&env->name, &from->name);
    env->store_payload = from->store_payload;
    env->audit_required = from->audit_required;

    return ngx_http_vmx_index_add(&cc->snapshot->environments, &env->id, env);
}


static ngx_int_t
ngx_http_vmx_compile_connection(ngx_http_vmx_compile_t *cc, ngx_uint_t i)
{
    ngx_uint_t                  n;
    ngx_str_t                  *model;
    vmx_cfg_connection_t       *from = &cc->cfg->connections[i];
    ngx_http_vmx_connection_t  *conn = &cc->conns[i];

    ngx_http_vmx_cfg_str(&conn->id, &from->id);
    ngx_http_vmx_cfg_str(&conn->name, &from->name);
    ngx_http_vmx_cfg_str(&conn->provider, &from->provider);
    ngx_http_vmx_cfg_str(&conn->base_url, &from->base_url);
    ngx_http_vmx_cfg_str(&conn->host, &from->host);
    ngx_http_vmx_cfg_str(&conn->host_header, &from->host_header);
    ngx_http_vmx_cfg_str(&conn->base_path, &from->base_path);
    ngx_http_vmx_cfg_str(&conn->api_key, &from->api_key);
    ngx_http_vmx_cfg_str(&conn->region, &from->region);
    ngx_http_vmx_cfg_str(&conn->access_key_id, &from->access_key_id);
    ngx_http_vmx_cfg_str(&conn->secret_key, &from->secret_key);
    ngx_http_vmx_cfg_str(&conn->session_token, &from->session_token);

    conn->env = &cc->envs[from->env - cc->cfg->environments];
    conn->provider_id = from->provider_id;
    conn->port = from->port;
    conn->https = from->https;
    conn->timeouts = from->timeouts;

    if (from->unavailable) {
        conn->unavailable.data = (u_char *) from->unavailable;
        conn->unavailable.len = ngx_strlen(from->unavailable);
    }

    conn->addrs = ngx_pcalloc(cc->pool, (from->naddresses + 1)
                                        * sizeof(ngx_addr_t));
    if (conn->addrs == NULL) {
        return NGX_ERROR;
    }

    for (n = 0; n < from->naddresses; n++) {
        /* checked by the compiler: IP literals, with a port or not */
        if (ngx_parse_addr_port(cc->pool, &conn->addrs[conn->naddrs],
                                (u_char *) from->addresses[n].data,
                                from->addresses[n].len)
            != NGX_OK)
        {
            continue;
        }

        if (ngx_inet_get_port(conn->addrs[conn->naddrs].sockaddr) == 0) {
            ngx_inet_set_port(conn->addrs[conn->naddrs].sockaddr, conn->port);
        }

        conn->naddrs++;
    }

    if (conn->naddrs == 0 && conn->unavailable.len == 0) {
        ngx_str_set(&conn->unavailable, "the host has no address");
    }

    if (ngx_array_init(&conn->allowed_models, cc->pool,
                       ngx_max(from->nallowed_models, 1), sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (n = 0; n < from->nallowed_models; n++) {
        model = ngx_array_push(&conn->allowed_models);
        ngx_http_vmx_cfg_str(model, &from->allowed_models[n]);
    }

    if (ngx_http_vmx_compile_limits(cc, from->limits, from->nlimits,
                                    &conn->limits)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_vmx_index_add(&cc->snapshot->connections, &conn->id, conn);
}


static ngx_int_t
ngx_http_vmx_compile_resource(ngx_http_vmx_compile_t *cc, ngx_uint_t i)
{
    u_char                   *p;
    ngx_str_t                 key;
    vmx_cfg_resource_t       *from = &cc->cfg->resources[i];
    ngx_http_vmx_resource_t  *res = &cc->resources[i];

    ngx_http_vmx_cfg_str(&res->id, &from->id);
    ngx_http_vmx_cfg_str(&res->name, &from->name);
    res->env = &cc->envs[from->env - cc->cfg->environments];
    res->use_fallback = from->use_fallback;
    res->rules = from->rules;
    res->timeouts = from->timeouts;

    if (from->unavailable) {
        res->unavailable.data = (u_char *) from->unavailable;
        res->unavailable.len = ngx_strlen(from->unavailable);
    }

    if (ngx_http_vmx_compile_target(cc, res, &from->model, &res->model)
        != NGX_OK
        || ngx_http_vmx_compile_targets(cc, res, from->fallbacks,
                                        from->nfallbacks, &res->fallbacks)
           != NGX_OK
        || ngx_http_vmx_compile_targets(cc, res, from->secondaries,
                                        from->nsecondaries, &res->secondaries)
           != NGX_OK
        || ngx_http_vmx_compile_limits(cc, from->limits, from->nlimits,
                                       &res->limits)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* resources are found by their name within an environment */
    key.len = res->env->id.len + 1 + res->name.len;
    key.data = ngx_pnalloc(cc->pool, key.len);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key.data, res->env->id.data, res->env->id.len);
    *p++ = '/';
    ngx_memcpy(p, res->name.data, res->name.len);

    if (ngx_http_vmx_index_add(&cc->snapshot->resources, &key, res) != NGX_OK
        || ngx_http_vmx_index_add(&cc->snapshot->resource_ids, &res->id, res)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A model entry; one whose connection is not there gets a connection of its
 * own, unavailable, so that its attempt fails over with the reason
 */

static ngx_int_t
ngx_http_vmx_compile_target(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_resource_t *res, vmx_cfg_target_t *from,
    ngx_http_vmx_target_t *target)
{
    ngx_http_vmx_connection_t  *conn;

    ngx_http_vmx_cfg_str(&target->provider, &from->provider);
    ngx_http_vmx_cfg_str(&target->model, &from->model);
    target->prices = from->prices;

    if (from->connection) {
        target->connection = &cc->conns[from->connection
                                        - cc->cfg->connections];
        return NGX_OK;
    }

    conn = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_connection_t));
    if (conn == NULL
        || ngx_array_init(&conn->allowed_models, cc->pool, 1,
                          sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&conn->limits, cc->pool, 1,
                          sizeof(ngx_http_vmx_limit_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_vmx_cfg_str(&conn->id, &from->connection_id);
    conn->name = conn->id;
    conn->env = res->env;
    conn->provider = target->provider;
    /* a provider for the code that names one; no request is built for it:
     * the plan skips an unavailable connection */
    conn->provider_id = NGX_HTTP_VMX_PROVIDER_OPENAI;
    ngx_str_set(&conn->unavailable, "the connection is not in the "
                "environment");

    target->connection = conn;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_targets(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_resource_t *res, vmx_cfg_target_t *from, size_t n,
    ngx_array_t *targets)
{
    size_t                  i;
    ngx_http_vmx_target_t  *target;

    if (ngx_array_init(targets, cc->pool, ngx_max(n, 1),
                       sizeof(ngx_http_vmx_target_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        target = ngx_array_push(targets);

        if (target == NULL
            || ngx_http_vmx_compile_target(cc, res, &from[i], target)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_limits(ngx_http_vmx_compile_t *cc, vmx_cfg_limit_t *from,
    size_t n, ngx_array_t *limits)
{
    size_t                 i;
    ngx_http_vmx_limit_t  *limit;

    if (ngx_array_init(limits, cc->pool, ngx_max(n, 1),
                       sizeof(ngx_http_vmx_limit_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (from[i].requests >= 0 || from[i].tokens >= 0
            || from[i].cost < 0)
        {
            limit = ngx_array_push(limits);
            if (limit == NULL) {
                return NGX_ERROR;
            }

            limit->period = from[i].period;
            limit->requests = from[i].requests;
            limit->tokens = from[i].tokens;
            limit->per_address = from[i].per_address;
            limit->cost = 0;
        }

        /* a budget counts micro-dollars as its tokens, in a counter of
           its own */

        if (from[i].cost >= 0) {
            limit = ngx_array_push(limits);
            if (limit == NULL) {
                return NGX_ERROR;
            }

            limit->period = from[i].period;
            limit->requests = -1;
            limit->tokens = from[i].cost;
            limit->per_address = from[i].per_address;
            limit->cost = 1;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_api_key(ngx_http_vmx_compile_t *cc, ngx_uint_t i)
{
    size_t                     n;
    ngx_str_t                  hash;
    vmx_cfg_api_key_t         *from = &cc->cfg->api_keys[i];
    ngx_http_vmx_api_key_t    *key;
    ngx_http_vmx_resource_t  **res;

    key = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_api_key_t));
    if (key == NULL) {
        return NGX_ERROR;
    }

    ngx_http_vmx_cfg_str(&key->id, &from->id);
    ngx_http_vmx_cfg_str(&key->name, &from->name);
    key->env = &cc->envs[from->env - cc->cfg->environments];
    ngx_memcpy(key->hash, from->hash, sizeof(key->hash));
    key->labels = (vmx_json_t *) from->labels;
    key->expires_at = (time_t) from->expires_at;
    ngx_memcpy(key->previous_hash, from->previous_hash,
               sizeof(key->previous_hash));
    key->previous_expires_at = (time_t) from->previous_expires_at;
    key->enabled = from->enabled;

    if (ngx_http_vmx_compile_limits(cc, from->limits, from->nlimits,
                                    &key->limits)
        != NGX_OK
        || ngx_array_init(&key->resources, cc->pool,
                          ngx_max(from->nresources, 1),
                          sizeof(ngx_http_vmx_resource_t *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (n = 0; n < from->nresources; n++) {
        res = ngx_array_push(&key->resources);
        *res = &cc->resources[from->resources[n] - cc->cfg->resources];
    }

    /* the compiler made both hashes unique */
    if (key->previous_expires_at) {
        hash.data = key->previous_hash;
        hash.len = sizeof(key->previous_hash);

        if (ngx_http_vmx_index_add(&cc->snapshot->api_keys, &hash, key)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    hash.data = key->hash;
    hash.len = sizeof(key->hash);

    return ngx_http_vmx_index_add(&cc->snapshot->api_keys, &hash, key);
}


/* an environment's pools; each listed resource points to its pool */

static ngx_int_t
ngx_http_vmx_compile_pool_def(ngx_http_vmx_compile_t *cc, ngx_uint_t i)
{
    size_t                    n, r;
    vmx_cfg_pool_def_t       *from = &cc->cfg->pool_defs[i];
    ngx_http_vmx_pool_t      *pool;
    ngx_http_vmx_pool_def_t  *def;

    def = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_pool_def_t));
    if (def == NULL
        || ngx_array_init(&def->pools, cc->pool, ngx_max(from->npools, 1),
                          sizeof(ngx_http_vmx_pool_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    def->env = &cc->envs[from->env - cc->cfg->environments];
    def->strategy = from->strategy;

    /* resources point into the array: it never grows past its size */
    for (n = 0; n < from->npools; n++) {
        pool = ngx_array_push(&def->pools);
        ngx_http_vmx_cfg_str(&pool->name, &from->pools[n].name);
        pool->rank = from->pools[n].rank;
        pool->min = from->pools[n].min;
        pool->max = from->pools[n].max;
        pool->def = def;
    }

    for (r = 0; r < cc->cfg->nresources; r++) {
        if (cc->cfg->resources[r].pool
            && cc->cfg->resources[r].pool->def == from)
        {
            cc->resources[r].pool = (ngx_http_vmx_pool_t *) def->pools.elts
                                    + (cc->cfg->resources[r].pool
                                       - from->pools);
        }
    }

    return ngx_http_vmx_index_add(&cc->snapshot->pool_defs, &def->env->id,
                                  def);
}


static void
ngx_http_vmx_cfg_str(ngx_str_t *to, vmx_cfg_str_t *from)
{
    to->data = (u_char *) from->data;
    to->len = from->len;
}


/*
 * A worker compiles the zone's snapshot before it serves, then looks at the
 * zone every NGX_HTTP_VMX_CONFIG_WATCH ms.
 */

ngx_int_t
ngx_http_vmx_config_init_process(ngx_cycle_t *cycle)
{
    ngx_core_conf_t           *ccf;
    ngx_http_vmx_config_job_t *job;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    ngx_http_vmx_config_workers = (ngx_process == NGX_PROCESS_WORKER)
                                  ? (ngx_uint_t) ccf->worker_processes : 1;

    if (ngx_worker >= NGX_HTTP_VMX_WORKERS_MAX) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0, "vmx: worker %ui is not "
                      "waited for by config pushes (%d at most)", ngx_worker,
                      NGX_HTTP_VMX_WORKERS_MAX);
    }

    job = ngx_pcalloc(cycle->pool, sizeof(ngx_http_vmx_config_job_t));
    if (job == NULL) {
        return NGX_ERROR;
    }

    job->mcf = mcf;
    job->pool = cycle->pool;
    ngx_http_vmx_config_zone_job = job;

    /* before the first request: in the worker, whatever it takes */
    ngx_http_vmx_config_busy = 1;
    ngx_http_vmx_config_job_run(job, cycle->log);
    ngx_http_vmx_config_job_finish(job);

    ngx_http_vmx_config_watch_ev.handler = ngx_http_vmx_config_watch;
    ngx_http_vmx_config_watch_ev.data = mcf;
    ngx_http_vmx_config_watch_ev.log = cycle->log;
    ngx_http_vmx_config_watch_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_vmx_config_watch_ev, NGX_HTTP_VMX_CONFIG_WATCH);

    return NGX_OK;
}


static void
ngx_http_vmx_config_watch(ngx_event_t *ev)
{
    ngx_http_vmx_main_conf_t  *mcf = ev->data;

    ngx_http_vmx_config_job_t  *job;

    job = ngx_http_vmx_config_zone_job;

    if (!ngx_http_vmx_config_busy) {
        job->from_disk = ngx_http_vmx_config_disk_changed(mcf);

        if (job->from_disk || mcf->sh->generation != ngx_http_vmx_generation) {
            ngx_http_vmx_config_busy = 1;
            ngx_http_vmx_config_job_start(job);
        }
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_HTTP_VMX_CONFIG_WATCH);
    }
}


/* the job goes to a thread, or (none, a full queue) runs in the worker */

static void
ngx_http_vmx_config_job_start(ngx_http_vmx_config_job_t *job)
{
#if (NGX_THREADS)

    if (job->mcf->config_pool) {
        if (job->task == NULL) {
            job->task = ngx_thread_task_alloc(job->pool, 0);
        }

        if (job->task) {
            job->task->ctx = job;
            job->task->handler = ngx_http_vmx_config_job_thread;
            job->task->event.handler = ngx_http_vmx_config_job_done;
            job->task->event.data = job;

            if (ngx_thread_task_post(job->mcf->config_pool, job->task)
                == NGX_OK)
            {
                if (job->request) {
                    job->request->main->blocked++;
                    job->request->aio = 1;
                }

                return;
            }
        }
    }

#endif

    ngx_http_vmx_config_job_run(job, ngx_cycle->log);
    ngx_http_vmx_config_job_finish(job);
}


/*
 * In a thread of the pool, or in the worker: touches only the job, the
 * shared zone (under its lock) and the disk copy.
 */

static void
ngx_http_vmx_config_job_run(void *data, ngx_log_t *log)
{
    ngx_http_vmx_config_job_t  *job = data;

    u_char                    *copy;
    size_t                     len;
    ngx_msec_t                 started;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = job->mcf;
    job->snapshot = NULL;
    job->retry = 0;
    ngx_str_null(&job->error);

    started = ngx_http_vmx_config_job_clock();

    if (job->request == NULL) {
        if (job->from_disk) {
            (void) ngx_http_vmx_config_load_disk(mcf, log);
        }

        /* the zone's bytes, copied under the lock, compiled without it */
        ngx_shmtx_lock(&mcf->shpool->mutex);

        job->generation = mcf->sh->generation;
        len = mcf->sh->len;
        copy = len ? ngx_alloc(len, log) : NULL;

        if (copy) {
            ngx_memcpy(copy, mcf->sh->data, len);
        }

        ngx_shmtx_unlock(&mcf->shpool->mutex);

        if (copy) {
            job->snapshot = ngx_http_vmx_snapshot_compile(copy, len, log,
                                                          &job->error,
                                                          job->errbuf,
                                                          &job->unread_format);
            ngx_free(copy);

        } else if (len) {
            job->retry = 1;
        }

        job->took = ngx_http_vmx_config_job_clock() - started;

    } else {
        job->snapshot = ngx_http_vmx_snapshot_compile(job->body.data,
                                                      job->body.len, log,
                                                      &job->error,
                                                      job->errbuf,
                                                      &job->unread_format);
        job->took = ngx_http_vmx_config_job_clock() - started;

        if (job->snapshot == NULL) {
            job->status = NGX_HTTP_BAD_REQUEST;

        } else if (ngx_http_vmx_config_store(mcf, job->body.data,
                                             job->body.len,
                                             job->snapshot->version, log,
                                             &job->generation)
                   != NGX_OK)
        {
            ngx_destroy_pool(job->snapshot->pool);
            job->snapshot = NULL;
            job->status = NGX_HTTP_INSUFFICIENT_STORAGE;
            ngx_str_set(&job->error, "the snapshot does not fit "
                        "vmx_config_zone");

        } else {
            job->status = NGX_HTTP_OK;

            if (mcf->file.len) {
                (void) ngx_http_vmx_config_write_disk(mcf, job->body.data,
                                                      job->body.len, log);
            }
        }
    }
}


/* a thread's clock: ngx_current_msec is the worker's, updated by its loop */

static ngx_msec_t
ngx_http_vmx_config_job_clock(void)
{
    struct timeval  tv;

    ngx_gettimeofday(&tv);

    return (ngx_msec_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


#if (NGX_THREADS)

static void
ngx_http_vmx_config_job_thread(void *data, ngx_log_t *log)
{
    ngx_http_vmx_thread_yield();
    ngx_http_vmx_config_job_run(data, log);
}


static void
ngx_http_vmx_config_job_done(ngx_event_t *ev)
{
    ngx_http_vmx_config_job_t  *job = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = job->request;

    if (r == NULL) {
        ngx_http_vmx_config_job_finish(job);
        return;
    }

    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    ngx_http_vmx_config_job_finish(job);
    ngx_http_run_posted_requests(c);
}

#endif


/* back in the worker: the result is installed, a PUT answered or waits */

static void
ngx_http_vmx_config_job_finish(ngx_http_vmx_config_job_t *job)
{
    ngx_int_t                  rc;
    ngx_http_request_t        *r;
    ngx_http_vmx_main_conf_t  *mcf;

    r = job->request;
    mcf = job->mcf;

    if (r == NULL) {
        ngx_http_vmx_config_busy = 0;

        if (job->snapshot == NULL && job->error.len) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "vmx: the shared snapshot does not compile: %V",
                          &job->error);
        }

        ngx_http_vmx_config_install(job->mcf, job, ngx_cycle->log);
        return;
    }

    if (job->snapshot == NULL) {
        if (job->status == NGX_HTTP_BAD_REQUEST) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: rejected config snapshot (version %uL runs "
                          "on): %V", mcf->sh->version, &job->error);

            ngx_http_vmx_config_refused(mcf, &job->error);
        }

        rc = ngx_http_vmx_send_error(r, NULL, job->status,
                                     job->status != NGX_HTTP_BAD_REQUEST
                                     ? "config_too_large"
                                     : job->unread_format
                                     ? "snapshot_format_unsupported"
                                     : "invalid_snapshot", &job->error);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "vmx: config version %uL received (%uz bytes, %uz problems,"
                  " compiled in %M ms)", job->snapshot->version, job->body.len,
                  job->snapshot->config->problems_total, job->took);

    ngx_http_vmx_config_log_problems(r->connection->log,
                                     job->snapshot->config);

    ngx_http_vmx_config_install(job->mcf, job, r->connection->log);

    r->write_event_handler = ngx_http_vmx_config_put_wait;
    ngx_http_vmx_config_put_wait(r);
}


/*
 * The worker runs what the job compiled, unless it has run something newer
 * already; either way its generation counts as compiled, so that a push is
 * not held up by a worker that cannot compile (it keeps what it had).
 */

static void
ngx_http_vmx_config_install(ngx_http_vmx_main_conf_t *mcf,
    ngx_http_vmx_config_job_t *job, ngx_log_t *log)
{
    struct timespec           started, ended;
    ngx_http_vmx_snapshot_t  *old;

    if (job->snapshot && job->generation > ngx_http_vmx_generation) {
        /* what the worker's requests wait for: the compile did not hold
           them, the swap and the old snapshot's retirement do (the CPU
           they take: on a busy machine the clock also counts other work) */
        (void) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &started);

        old = ngx_http_vmx_current;
        ngx_http_vmx_current = job->snapshot;

        if (old) {
            ngx_http_vmx_snapshot_retire(old);
        }

        (void) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ended);

        ngx_log_error(NGX_LOG_INFO, log, 0, "vmx: worker runs config version "
                      "%uL (compiled in %M ms, installed in %uL us of CPU)",
                      ngx_http_vmx_current->version, job->took,
                      (uint64_t) ((ended.tv_sec - started.tv_sec) * 1000000
                                  + (ended.tv_nsec - started.tv_nsec) / 1000));

    } else if (job->snapshot) {
        ngx_http_vmx_snapshot_destroy(job->snapshot);
    }

    job->snapshot = NULL;

    /* a copy that failed (out of memory) is tried again on the next look */
    if (job->generation > ngx_http_vmx_generation && !job->retry) {
        ngx_http_vmx_generation = job->generation;
    }

    if (ngx_worker < NGX_HTTP_VMX_WORKERS_MAX) {
        mcf->sh->compiled[ngx_worker] = ngx_http_vmx_generation;
    }

    (void) ngx_http_vmx_config_everywhere(mcf);
}


/* every worker runs the zone's snapshot: it becomes the version reported */

static ngx_flag_t
ngx_http_vmx_config_everywhere(ngx_http_vmx_main_conf_t *mcf)
{
    ngx_uint_t         i, n;
    ngx_atomic_uint_t  generation;

    generation = mcf->sh->generation;
    n = ngx_min(ngx_http_vmx_config_workers, NGX_HTTP_VMX_WORKERS_MAX);

    for (i = 0; i < n; i++) {
        if (mcf->sh->compiled[i] != generation) {
            return 0;
        }
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (mcf->sh->generation == generation) {
        mcf->sh->running = mcf->sh->version;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return 1;
}


/* the version all workers run, 0 before the first */

uint64_t
ngx_http_vmx_config_running(ngx_http_vmx_main_conf_t *mcf)
{
    uint64_t  version;

    ngx_shmtx_lock(&mcf->shpool->mutex);
    version = mcf->sh->running;
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return version;
}


/* the worker's snapshot, for the request's lifetime */

ngx_http_vmx_snapshot_t *
ngx_http_vmx_snapshot_acquire(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_vmx_snapshot_t  *snapshot;

    snapshot = ngx_http_vmx_current;

    if (snapshot == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_vmx_snapshot_release;
    cln->data = snapshot;
    snapshot->refs++;

    return snapshot;
}


static void
ngx_http_vmx_snapshot_release(void *data)
{
    ngx_http_vmx_snapshot_t  *snapshot = data;

    if (--snapshot->refs == 0 && snapshot->retired) {
        ngx_http_vmx_snapshot_destroy(snapshot);
    }
}


static void
ngx_http_vmx_snapshot_retire(ngx_http_vmx_snapshot_t *snapshot)
{
    if (snapshot->refs == 0) {
        ngx_http_vmx_snapshot_destroy(snapshot);
        return;
    }

    snapshot->retired = 1;
}


/*
 * A snapshot no request uses is freed by a task of the config thread pool
 * when there is one: a large one's pool (blocks of hundreds of megabytes,
 * compiled expressions) takes milliseconds to give back, which the worker's
 * requests would wait for.
 */

static void
ngx_http_vmx_snapshot_destroy(ngx_http_vmx_snapshot_t *snapshot)
{
#if (NGX_THREADS)
    ngx_thread_task_t         *task;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_vmx_module);

    if (mcf->config_pool && !ngx_exiting && !ngx_terminate && !ngx_quit) {
        task = ngx_calloc(sizeof(ngx_thread_task_t), ngx_cycle->log);

        if (task) {
            task->ctx = snapshot->pool;
            task->handler = ngx_http_vmx_snapshot_free;
            task->event.handler = ngx_http_vmx_snapshot_freed;
            task->event.data = task;
            task->event.log = ngx_cycle->log;

            if (ngx_thread_task_post(mcf->config_pool, task) == NGX_OK) {
                return;
            }

            ngx_free(task);
        }
    }

#endif

    ngx_destroy_pool(snapshot->pool);
}


#if (NGX_THREADS)

static void
ngx_http_vmx_snapshot_free(void *data, ngx_log_t *log)
{
    ngx_destroy_pool(data);
}


static void
ngx_http_vmx_snapshot_freed(ngx_event_t *ev)
{
    ngx_free(ev->data);
}

#endif


/* the shared zone */

/* a shared zone of the module from its "name:size" argument */

ngx_shm_zone_t *
ngx_http_vmx_zone_add(ngx_conf_t *cf, ngx_str_t *arg)
{
    u_char     *p;
    ssize_t     size;
    ngx_str_t   name, s;

    p = (u_char *) ngx_strchr(arg->data, ':');
    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be \"name:size\"", arg);
        return NULL;
    }

    name.data = arg->data;
    name.len = p - arg->data;

    s.data = p + 1;
    s.len = arg->data + arg->len - s.data;

    size = ngx_parse_size(&s);
    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is too small",
                           arg);
        return NULL;
    }

    return ngx_shared_memory_add(cf, &name, size, &ngx_http_vmx_module);
}


char *
ngx_http_vmx_config_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    ngx_str_t  *value;

    if (mcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mcf->shm_zone = ngx_http_vmx_zone_add(cf, &value[1]);
    if (mcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->shm_zone->init = ngx_http_vmx_config_init_zone;
    mcf->shm_zone->data = mcf;

    if (cf->args->nelts == 3) {
#if (NGX_THREADS)
        mcf->config_pool = ngx_http_vmx_conf_thread_pool(cf, &value[2]);
        if (mcf->config_pool == NULL) {
            return NGX_CONF_ERROR;
        }
#else
        return ngx_http_vmx_conf_no_threads(cf, &value[2]);
#endif
    }

    return NGX_CONF_OK;
}


/*
 * A secret from a file at configuration time: its content without
 * surrounding white space, min to 500 bytes, copied into the
 * configuration's pool; the read buffer is wiped.
 */

char *
ngx_http_vmx_conf_read_secret(ngx_conf_t *cf, ngx_str_t *name, size_t min,
    const char *what, ngx_str_t *secret)
{
    u_char      *p, *last;
    ssize_t      n;
    ngx_file_t   file;
    u_char       buf[512];

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &file.name);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);
    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    p = buf;
    last = buf + n;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r' || last[-1] == '\n'))
    {
        last--;
    }

    if ((size_t) (last - p) < min || n == (ssize_t) sizeof(buf)) {
        sodium_memzero(buf, sizeof(buf));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the %s in \"%V\" must have %uz to 500 characters",
                           what, &file.name, min);
        return NGX_CONF_ERROR;
    }

    secret->len = last - p;
    secret->data = ngx_pnalloc(cf->pool, secret->len);
    if (secret->data != NULL) {
        ngx_memcpy(secret->data, p, secret->len);
    }

    sodium_memzero(buf, sizeof(buf));

    return secret->data ? NGX_CONF_OK : NGX_CONF_ERROR;
}


char *
ngx_http_vmx_config_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_http_vmx_conf_read_secret(cf, &value[1], 16, "token", &mcf->token)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (crypto_generichash(mcf->disk_key, sizeof(mcf->disk_key),
                           mcf->token.data, mcf->token.len,
                           (u_char *) NGX_HTTP_VMX_DISK_KEY_SALT,
                           sizeof(NGX_HTTP_VMX_DISK_KEY_SALT) - 1)
        != 0)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_vmx_config_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vmx_main_conf_t  *omcf = data;

    ngx_slab_pool_t           *shpool;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = shm_zone->data;

    if (omcf) {
        /* a reload keeps the running snapshot */
        mcf->sh = omcf->sh;
        mcf->shpool = omcf->shpool;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    mcf->shpool = shpool;

    if (shm_zone->shm.exists) {
        mcf->sh = shpool->data;
        return NGX_OK;
    }

    mcf->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_vmx_config_shctx_t));
    if (mcf->sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = mcf->sh;

    if (mcf->file.len == 0) {
        return NGX_OK;
    }

    /* a fresh start, a new binary's master included, serves the last
     * snapshot it was given before its workers accept */

    return ngx_http_vmx_config_load_disk(mcf, shm_zone->shm.log);
}


/* the disk copy into the zone: at a fresh start, and when another master
 * wrote it */

static ngx_int_t
ngx_http_vmx_config_load_disk(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log)
{
    u_char                    nonce[NGX_HTTP_VMX_DISK_NONCE_LEN];
    u_char                    errbuf[NGX_HTTP_VMX_CONFIG_ERROR];
    ngx_str_t                 snapshot, error;
    ngx_flag_t                unread_format;
    ngx_pool_t               *pool;
    ngx_atomic_uint_t         generation;
    ngx_http_vmx_snapshot_t  *compiled;

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_config_read_disk(mcf, pool, &snapshot, nonce, log)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_OK;
    }

    compiled = ngx_http_vmx_snapshot_compile(snapshot.data, snapshot.len, log,
                                             &error, errbuf, &unread_format);
    if (compiled == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "vmx: ignoring the disk copy \"%V\": %V",
                      &mcf->file, &error);

    } else {
        if (compiled->version != mcf->sh->version
            && ngx_http_vmx_config_store(mcf, snapshot.data, snapshot.len,
                                         compiled->version, log, &generation)
               == NGX_OK)
        {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "vmx: loaded config version %uL from \"%V\"",
                          compiled->version, &mcf->file);
        }

        ngx_destroy_pool(compiled->pool);
    }

    /* each write is tried once, taken or not */
    ngx_shmtx_lock(&mcf->shpool->mutex);
    ngx_memcpy(mcf->sh->disk_nonce, nonce, NGX_HTTP_VMX_DISK_NONCE_LEN);
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ngx_destroy_pool(pool);

    return NGX_OK;
}


/*
 * In a binary upgrade two masters serve at once, each with a zone of its
 * own, and a push reaches the worker of one: the other's follow the disk
 * copy it wrote.  Once a second a worker reads the copy's nonce, new with
 * every write, and a nonce the zone has not seen has the copy loaded (by the
 * zone's compile job).
 */

static ngx_flag_t
ngx_http_vmx_config_disk_changed(ngx_http_vmx_main_conf_t *mcf)
{
    u_char         head[NGX_HTTP_VMX_DISK_MAGIC_LEN
                        + NGX_HTTP_VMX_DISK_NONCE_LEN];
    ssize_t        n;
    ngx_fd_t       fd;
    ngx_flag_t     seen;
    static time_t  checked;

    if (mcf->file.len == 0 || checked == ngx_time()) {
        return 0;
    }

    checked = ngx_time();

    fd = ngx_open_file(mcf->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    n = ngx_read_fd(fd, head, sizeof(head));
    ngx_close_file(fd);

    if (n != (ssize_t) sizeof(head)) {
        return 0;
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);
    seen = ngx_memcmp(mcf->sh->disk_nonce, head + NGX_HTTP_VMX_DISK_MAGIC_LEN,
                      NGX_HTTP_VMX_DISK_NONCE_LEN) == 0;
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return !seen;
}


static ngx_int_t
ngx_http_vmx_config_store(ngx_http_vmx_main_conf_t *mcf, u_char *data,
    size_t len, uint64_t version, ngx_log_t *log,
    ngx_atomic_uint_t *generation)
{
    u_char  *copy;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    copy = ngx_slab_alloc_locked(mcf->shpool, len);
    if (copy == NULL) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        ngx_log_error(NGX_LOG_ERR, log, 0, "vmx: vmx_config_zone is too small "
                      "for a snapshot of %uz bytes", len);
        return NGX_ERROR;
    }

    ngx_memcpy(copy, data, len);

    if (mcf->sh->data) {
        ngx_slab_free_locked(mcf->shpool, mcf->sh->data);
    }

    mcf->sh->data = copy;
    mcf->sh->len = len;
    mcf->sh->version = version;
    mcf->sh->loaded_at = ngx_time();
    *generation = ngx_atomic_fetch_add(&mcf->sh->generation, 1) + 1;

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


/* the encrypted disk copy: magic, nonce, XChaCha20-Poly1305 ciphertext */

static ngx_int_t
ngx_http_vmx_config_write_disk(ngx_http_vmx_main_conf_t *mcf, u_char *data,
    size_t len, ngx_log_t *log)
{
    u_char             *blob, *nonce;
    size_t              size;
    ngx_fd_t            fd;
    ngx_str_t           tmp;
    unsigned long long  clen;

    size = NGX_HTTP_VMX_DISK_MAGIC_LEN
           + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
           + len + crypto_aead_xchacha20poly1305_ietf_ABYTES;

    blob = ngx_alloc(size + mcf->file.len + sizeof(".tmp"), log);
    if (blob == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(blob, NGX_HTTP_VMX_DISK_MAGIC, NGX_HTTP_VMX_DISK_MAGIC_LEN);
    nonce = blob + NGX_HTTP_VMX_DISK_MAGIC_LEN;
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);

    crypto_aead_xchacha20poly1305_ietf_encrypt(
        nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, data, len,
        blob, NGX_HTTP_VMX_DISK_MAGIC_LEN, NULL, nonce, mcf->disk_key);

    tmp.data = blob + size;
    tmp.len = ngx_sprintf(tmp.data, "%V.tmp%Z", &mcf->file) - tmp.data - 1;

    fd = ngx_open_file(tmp.data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE, 0600);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      ngx_open_file_n " \"%V\" failed", &tmp);
        ngx_free(blob);
        return NGX_ERROR;
    }

    /* rename only what reached the disk, so a crash leaves the old copy */
    if (ngx_write_fd(fd, blob, size) != (ssize_t) size || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno, "vmx: writing \"%V\" failed",
                      &tmp);
        ngx_close_file(fd);
        ngx_free(blob);
        return NGX_ERROR;
    }

    ngx_close_file(fd);

    if (ngx_rename_file(tmp.data, mcf->file.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      ngx_rename_file_n " \"%V\" to \"%V\" failed", &tmp,
                      &mcf->file);
        ngx_free(blob);
        return NGX_ERROR;
    }

    /* this zone holds what it wrote: its workers do not load it again */
    ngx_shmtx_lock(&mcf->shpool->mutex);
    ngx_memcpy(mcf->sh->disk_nonce, nonce, NGX_HTTP_VMX_DISK_NONCE_LEN);
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ngx_free(blob);

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_config_read_disk(ngx_http_vmx_main_conf_t *mcf, ngx_pool_t *pool,
    ngx_str_t *out, u_char *nonce, ngx_log_t *log)
{
    u_char             *blob;
    ssize_t             n;
    ngx_file_t          file;
    ngx_file_info_t     fi;
    unsigned long long  len;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = mcf->file;
    file.log = log;

    file.fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        return NGX_DECLINED;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    n = ngx_file_size(&fi);

    if (n < (ssize_t) (NGX_HTTP_VMX_DISK_MAGIC_LEN
                       + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
                       + crypto_aead_xchacha20poly1305_ietf_ABYTES))
    {
        ngx_close_file(file.fd);
        goto invalid;
    }

    blob = ngx_pnalloc(pool, 2 * n);
    if (blob == NULL) {
        ngx_close_file(file.fd);
        return NGX_ERROR;
    }

    if (ngx_read_file(&file, blob, n, 0) != n) {
        ngx_close_file(file.fd);
        goto invalid;
    }

    ngx_close_file(file.fd);

    if (ngx_memcmp(blob, NGX_HTTP_VMX_DISK_MAGIC, NGX_HTTP_VMX_DISK_MAGIC_LEN)
        != 0)
    {
        goto invalid;
    }

    ngx_memcpy(nonce, blob + NGX_HTTP_VMX_DISK_MAGIC_LEN,
               NGX_HTTP_VMX_DISK_NONCE_LEN);
    out->data = blob + n;

    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out->data, &len, NULL,
            blob + NGX_HTTP_VMX_DISK_MAGIC_LEN + NGX_HTTP_VMX_DISK_NONCE_LEN,
            n - NGX_HTTP_VMX_DISK_MAGIC_LEN - NGX_HTTP_VMX_DISK_NONCE_LEN,
            blob, NGX_HTTP_VMX_DISK_MAGIC_LEN, nonce, mcf->disk_key)
        != 0)
    {
        goto invalid;
    }

    out->len = len;

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_WARN, log, 0, "vmx: the disk copy \"%V\" is not "
                  "readable with this token, ignored", &mcf->file);

    return NGX_DECLINED;
}


/* the admin endpoint */

ngx_int_t
ngx_http_vmx_config_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  msg;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->sh == NULL || mcf->token.len == 0) {
        ngx_str_set(&msg, "vmx_config_zone and vmx_config_token_file are "
                    "not configured");
        rc = ngx_http_discard_request_body(r);
        return (rc != NGX_OK) ? rc
               : ngx_http_vmx_send_error(r, NULL, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "config_api_unavailable", &msg);
    }

    if (!ngx_http_vmx_config_authorized(r, mcf)) {
        ngx_str_set(&msg, "a valid config token is required");
        rc = ngx_http_discard_request_body(r);
        return (rc != NGX_OK) ? rc
               : ngx_http_vmx_send_error(r, NULL, NGX_HTTP_UNAUTHORIZED,
                                         "unauthorized", &msg);
    }

    if (ngx_strnstr(r->uri.data, "/vmx/spool", r->uri.len)) {
        return ngx_http_vmx_spool_handler(r);
    }

    switch (r->method) {

    case NGX_HTTP_GET:
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_http_vmx_uri_ends(r, "/capacity")) {
            return ngx_http_vmx_capacity_report(r);
        }

        return ngx_http_vmx_config_state(r, NGX_HTTP_OK);

    case NGX_HTTP_PUT:
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r, ngx_http_vmx_config_put);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;

    default:
        ngx_str_set(&msg, "use GET or PUT");
        rc = ngx_http_discard_request_body(r);
        return (rc != NGX_OK) ? rc
               : ngx_http_vmx_send_error(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                         "method_not_allowed", &msg);
    }
}


static ngx_int_t
ngx_http_vmx_uri_ends(ngx_http_request_t *r, const char *tail)
{
    size_t  len;

    len = ngx_strlen(tail);

    return r->uri.len >= len
           && ngx_strncmp(r->uri.data + r->uri.len - len, tail, len) == 0;
}


static ngx_flag_t
ngx_http_vmx_config_authorized(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf)
{
    ngx_str_t  auth;

    if (r->headers_in.authorization == NULL) {
        return 0;
    }

    auth = r->headers_in.authorization->value;

    if (auth.len != sizeof("Bearer ") - 1 + mcf->token.len
        || ngx_strncasecmp(auth.data, (u_char *) "Bearer ", 7) != 0
        || sodium_memcmp(auth.data + 7, mcf->token.data, mcf->token.len) != 0)
    {
        return 0;
    }

    return 1;
}


static void
ngx_http_vmx_config_put(ngx_http_request_t *r)
{
    ngx_http_vmx_config_job_t  *job;

    /* the request is blocked while a thread has the job: they live as long */
    job = ngx_pcalloc(r->pool, sizeof(ngx_http_vmx_config_job_t));
    if (job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    job->mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    job->pool = r->pool;
    job->request = r;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        /* refused as any snapshot that does not compile */
        job->status = NGX_HTTP_BAD_REQUEST;
        ngx_str_set(&job->error, "the snapshot is empty");
        ngx_http_vmx_config_job_finish(job);
        return;
    }

    if (ngx_http_vmx_read_body(r, &job->body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_vmx_config_job_start(job);
}


/* the PUT is answered once every worker runs the snapshot, or at the latest
   after NGX_HTTP_VMX_CONFIG_PUT_WAIT */

static void
ngx_http_vmx_config_put_wait(ngx_http_request_t *r)
{
    ngx_msec_int_t             waited;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    waited = (ngx_msec_int_t) ((ngx_time() - r->start_sec) * 1000
                               + (ngx_timeofday()->msec - r->start_msec));

    if (!ngx_http_vmx_config_everywhere(mcf)
        && waited < NGX_HTTP_VMX_CONFIG_PUT_WAIT)
    {
        r->connection->write->delayed = 1;
        ngx_add_timer(r->connection->write, NGX_HTTP_VMX_CONFIG_WATCH);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_vmx_config_state(r, NGX_HTTP_OK));
}


/* the last snapshot refused whole, for the state and the metrics */

static void
ngx_http_vmx_config_refused(ngx_http_vmx_main_conf_t *mcf, ngx_str_t *error)
{
    ngx_http_vmx_config_shctx_t  *sh;

    sh = mcf->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    sh->refused++;
    sh->refused_at = ngx_time();
    sh->refused_len = ngx_min(error->len, sizeof(sh->refused_error));
    ngx_memcpy(sh->refused_error, error->data, sh->refused_len);

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/* each problem of a new snapshot, once: by the worker that received it */

static void
ngx_http_vmx_config_log_problems(ngx_log_t *log, vmx_config_t *cfg)
{
    ngx_uint_t          i, level;
    vmx_cfg_problem_t  *pr;

    for (i = 0; i < cfg->nproblems; i++) {
        pr = &cfg->problems[i];
        level = pr->invalid ? NGX_LOG_ERR : NGX_LOG_WARN;

        ngx_log_error(level, log, 0,
                      "vmx: config version %uL: %s \"%*s\"%s%s: %s%s",
                      cfg->version, vmx_config_kind_name(pr->kind),
                      pr->id.len, pr->id.data, pr->field[0] ? " " : "",
                      pr->field, pr->message,
                      pr->left_out ? " (left out)" : " (unavailable)");
    }
}


static ngx_int_t
ngx_http_vmx_config_state(ngx_http_request_t *r, ngx_uint_t status)
{
    u_char                    *p, *start;
    size_t                     len, refused_len;
    uint64_t                   version, received;
    ngx_tm_t                   tm;
    time_t                     loaded_at, refused_at;
    ngx_uint_t                 i, refused;
    u_char                     refused_error[NGX_HTTP_VMX_REFUSED_LEN];
    vmx_config_t              *cfg;
    vmx_cfg_problem_t         *pr;
    ngx_http_vmx_snapshot_t   *snapshot;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    /* the version every worker runs, and the problems of this worker's */
    ngx_shmtx_lock(&mcf->shpool->mutex);
    version = mcf->sh->running;
    received = mcf->sh->version;
    loaded_at = mcf->sh->loaded_at;
    refused = mcf->sh->refused;
    refused_at = mcf->sh->refused_at;
    ngx_memcpy(refused_error, mcf->sh->refused_error, mcf->sh->refused_len);
    refused_len = mcf->sh->refused_len;
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    snapshot = ngx_http_vmx_snapshot_acquire(r);
    cfg = (snapshot && snapshot->version == version) ? snapshot->config : NULL;

    len = 128 + sizeof(",\"received\":") + NGX_INT64_LEN
          + sizeof(",\"problemsTotal\":,\"problems\":[]") + NGX_SIZE_T_LEN
          + sizeof(",\"formats\":[,]") + 2 * NGX_INT_T_LEN
          + sizeof(",\"refused\":{\"total\":,\"at\":\"\",\"error\":\"\"}")
          + NGX_INT_T_LEN + sizeof("1970-01-01T00:00:00Z")
          + vmx_json_escape(NULL, (char *) refused_error, refused_len);

    for (i = 0; cfg && i < cfg->nproblems; i++) {
        pr = &cfg->problems[i];
        len += sizeof("{\"kind\":\"\",\"id\":\"\",\"field\":\"\",\"message\":"
                      "\"\",\"invalid\":false,\"leftOut\":false},")
               + 16 + vmx_json_escape(NULL, pr->id.data, pr->id.len)
               + vmx_json_escape(NULL, pr->field, ngx_strlen(pr->field))
               + vmx_json_escape(NULL, pr->message, ngx_strlen(pr->message));
    }

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the version stored, which the workers run or are compiling */
    p = ngx_sprintf(start, "{\"version\":%uL,\"received\":%uL", version,
                    received);

    if (loaded_at) {
        ngx_gmtime(loaded_at, &tm);
        p = ngx_sprintf(p, ",\"loadedAt\":\"%4d-%02d-%02dT%02d:%02d:%02dZ\"",
                        tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                        tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
    }

    /* the formats this module reads: the control plane builds the newest */
    p = ngx_sprintf(p, ",\"formats\":[%d,%d]", VMX_CONFIG_FORMAT_OLDEST,
                    VMX_CONFIG_FORMAT);

    if (refused) {
        ngx_gmtime(refused_at, &tm);
        p = ngx_sprintf(p, ",\"refused\":{\"total\":%ui,"
                        "\"at\":\"%4d-%02d-%02dT%02d:%02d:%02dZ\",\"error\":\"",
                        refused, tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                        tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
        p += vmx_json_escape((char *) p, (char *) refused_error, refused_len);
        p = ngx_cpymem(p, "\"}", 2);
    }

    if (cfg) {
        p = ngx_sprintf(p, ",\"problemsTotal\":%uz,\"problems\":[",
                        cfg->problems_total);

        for (i = 0; i < cfg->nproblems; i++) {
            pr = &cfg->problems[i];
            p = ngx_sprintf(p, "%s{\"kind\":\"%s\",\"id\":\"", i ? "," : "",
                            vmx_config_kind_name(pr->kind));
            p += vmx_json_escape((char *) p, pr->id.data, pr->id.len);
            p = ngx_cpymem(p, "\",\"field\":\"", sizeof("\",\"field\":\"") - 1);
            p += vmx_json_escape((char *) p, pr->field, ngx_strlen(pr->field));
            p = ngx_cpymem(p, "\",\"message\":\"",
                           sizeof("\",\"message\":\"") - 1);
            p += vmx_json_escape((char *) p, pr->message,
                                 ngx_strlen(pr->message));
            p = ngx_sprintf(p, "\",\"invalid\":%s,\"leftOut\":%s}",
                            pr->invalid ? "true" : "false",
                            pr->left_out ? "true" : "false");
        }

        *p++ = ']';
    }

    *p++ = '}';

    return ngx_http_vmx_send_json(r, status, start, p - start);
}
