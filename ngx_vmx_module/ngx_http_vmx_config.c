/*
 * VM-X gateway: the configuration snapshot.
 *
 * The control plane PUTs a whole snapshot to the admin endpoint.  The
 * receiving worker compiles it completely (that is the validation), copies
 * the raw bytes into the shared zone and writes an encrypted disk copy; every
 * other worker sees the zone's generation change on its next request and
 * compiles the same bytes into its own lookup tables.  A compiled snapshot
 * lives in its own pool and is destroyed when no request uses it any more.
 */

#include "ngx_http_vmx_module.h"

#include <sodium.h>


#define NGX_HTTP_VMX_DISK_MAGIC      "VMXCFG1\n"
#define NGX_HTTP_VMX_DISK_MAGIC_LEN  (sizeof(NGX_HTTP_VMX_DISK_MAGIC) - 1)
#define NGX_HTTP_VMX_DISK_KEY_SALT   "vmx-config-at-rest-v1"


typedef struct {
    ngx_pool_t                  *pool;
    ngx_http_vmx_snapshot_t     *snapshot;
    u_char                      *err;      /* message buffer */
    u_char                      *err_end;
} ngx_http_vmx_compile_t;


static ngx_http_vmx_snapshot_t *ngx_http_vmx_snapshot_compile(u_char *data,
    size_t len, ngx_log_t *log, ngx_str_t *error);
static ngx_int_t ngx_http_vmx_compile_environment(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_connection(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_resource(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_pool_def(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_pool(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_pool_def_t *def, vmx_json_t *obj);
static ngx_int_t ngx_http_vmx_compile_api_key(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_compile_target(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_environment_t *env, vmx_json_t *obj,
    ngx_http_vmx_target_t *target, const char *what);
static ngx_int_t ngx_http_vmx_compile_targets(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_environment_t *env, vmx_json_t *arr, ngx_array_t *targets,
    const char *what);
static ngx_int_t ngx_http_vmx_parse_base_url(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_connection_t *conn);
static ngx_int_t ngx_http_vmx_compile_routing(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_http_vmx_resource_t *res);
static void ngx_http_vmx_rules_cleanup(void *data);
static ngx_int_t ngx_http_vmx_compile_limits(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, ngx_flag_t always, ngx_array_t *limits,
    const char *what);
static ngx_int_t ngx_http_vmx_get_str(ngx_http_vmx_compile_t *cc,
    vmx_json_t *obj, const char *name, ngx_str_t *value, const char *what);
static void ngx_http_vmx_opt_str(vmx_json_t *obj, const char *name,
    ngx_str_t *value);
static ngx_http_vmx_environment_t *ngx_http_vmx_get_env(
    ngx_http_vmx_compile_t *cc, vmx_json_t *obj, const char *what);
static ngx_int_t ngx_http_vmx_compile_error(ngx_http_vmx_compile_t *cc,
    const char *fmt, ...);

static void ngx_http_vmx_snapshot_release(void *data);
static void ngx_http_vmx_snapshot_retire(ngx_http_vmx_snapshot_t *snapshot);
static ngx_int_t ngx_http_vmx_config_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_vmx_config_store(ngx_http_vmx_main_conf_t *mcf,
    u_char *data, size_t len, uint64_t version, ngx_log_t *log,
    ngx_atomic_uint_t *generation);
static ngx_int_t ngx_http_vmx_config_write_disk(ngx_http_vmx_main_conf_t *mcf,
    u_char *data, size_t len, ngx_log_t *log);
static ngx_int_t ngx_http_vmx_config_read_disk(ngx_http_vmx_main_conf_t *mcf,
    ngx_pool_t *pool, ngx_str_t *out, ngx_log_t *log);
static void ngx_http_vmx_config_put(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_config_state(ngx_http_request_t *r,
    ngx_uint_t status);
static ngx_int_t ngx_http_vmx_config_authorized(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_uri_ends(ngx_http_request_t *r,
    const char *tail);


/* the worker's current snapshot and the zone generation it was built from */
static ngx_http_vmx_snapshot_t  *ngx_http_vmx_current;
static ngx_atomic_uint_t         ngx_http_vmx_generation;


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


/* compile */

static ngx_http_vmx_snapshot_t *
ngx_http_vmx_snapshot_compile(u_char *data, size_t len, ngx_log_t *log,
    ngx_str_t *error)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, n;
    vmx_json_t               *root, *version, *list, *item;
    vmx_json_error_t          jerr;
    ngx_http_vmx_compile_t    cc;
    ngx_http_vmx_snapshot_t  *snapshot;
    static u_char             errbuf[512];

    static const struct {
        const char  *name;
        ngx_int_t  (*compile)(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
                              ngx_uint_t i);
        size_t       index;
    } sections[] = {
        /* environments first: the others refer to them */
        { "environments", ngx_http_vmx_compile_environment,
          offsetof(ngx_http_vmx_snapshot_t, environments) },
        { "connections", ngx_http_vmx_compile_connection,
          offsetof(ngx_http_vmx_snapshot_t, connections) },
        { "resources", ngx_http_vmx_compile_resource,
          offsetof(ngx_http_vmx_snapshot_t, resources) },
        { "apiKeys", ngx_http_vmx_compile_api_key,
          offsetof(ngx_http_vmx_snapshot_t, api_keys) },
        { "poolDefinitions", ngx_http_vmx_compile_pool_def,
          offsetof(ngx_http_vmx_snapshot_t, pool_defs) },
    };

    cc.err = errbuf;
    cc.err_end = errbuf + sizeof(errbuf);

    /* a pool's size must keep its end aligned, or ngx_palloc() overruns */
    cc.pool = ngx_create_pool(ngx_align(ngx_max(len * 2, 16384), ngx_pagesize),
                              log);
    if (cc.pool == NULL) {
        return NULL;
    }

    snapshot = ngx_pcalloc(cc.pool, sizeof(ngx_http_vmx_snapshot_t));
    if (snapshot == NULL) {
        goto failed;
    }

    snapshot->pool = cc.pool;
    snapshot->loaded_at = ngx_time();
    cc.snapshot = snapshot;

    root = vmx_json_parse((char *) data, len, ngx_http_vmx_json_alloc, cc.pool,
                          64, &jerr);
    if (root == NULL) {
        ngx_http_vmx_compile_error(&cc, "invalid JSON at offset %uz: %s",
                                   jerr.offset, jerr.message);
        goto failed;
    }

    if (root->type != VMX_JSON_OBJECT) {
        ngx_http_vmx_compile_error(&cc, "the snapshot is not an object");
        goto failed;
    }

    version = vmx_json_get(root, "version");
    if (version == NULL || !version->is_int || version->integer <= 0) {
        ngx_http_vmx_compile_error(&cc, "\"version\" must be a positive "
                                   "integer");
        goto failed;
    }

    snapshot->version = (uint64_t) version->integer;

    for (n = 0; n < sizeof(sections) / sizeof(sections[0]); n++) {
        list = vmx_json_get(root, sections[n].name);

        if (list == NULL || list->type != VMX_JSON_ARRAY) {
            ngx_http_vmx_compile_error(&cc, "\"%s\" must be an array",
                                       sections[n].name);
            goto failed;
        }

        if (ngx_http_vmx_index_init((ngx_http_vmx_index_t *)
                                    ((u_char *) snapshot + sections[n].index),
                                    cc.pool, list->count)
            != NGX_OK
            || (sections[n].index == offsetof(ngx_http_vmx_snapshot_t,
                                              resources)
                && ngx_http_vmx_index_init(&snapshot->resource_ids, cc.pool,
                                           list->count)
                   != NGX_OK))
        {
            goto failed;
        }

        for (i = 0, item = list->child; item; i++, item = item->next) {
            if (item->type != VMX_JSON_OBJECT) {
                ngx_http_vmx_compile_error(&cc, "%s[%ui] is not an object",
                                           sections[n].name, i);
                goto failed;
            }

            rc = sections[n].compile(&cc, item, i);
            if (rc != NGX_OK) {
                goto failed;
            }
        }
    }

    return snapshot;

failed:

    if (cc.err == errbuf) {
        ngx_http_vmx_compile_error(&cc, "out of memory");
    }

    error->data = errbuf;
    error->len = cc.err - errbuf;

    ngx_destroy_pool(cc.pool);

    return NULL;
}


static ngx_int_t
ngx_http_vmx_compile_environment(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_uint_t i)
{
    vmx_json_t                  *store;
    ngx_http_vmx_environment_t  *env;

    env = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_environment_t));
    if (env == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_get_str(cc, obj, "id", &env->id, "environments") != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "workspaceId", &env->workspace_id,
                                "environments")
           != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "name", &env->name, "environments")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    store = vmx_json_get(obj, "storePayload");
    env->store_payload = (store == NULL || store->type != VMX_JSON_FALSE);
    store = vmx_json_get(obj, "auditRequired");
    env->audit_required = (store != NULL && store->type == VMX_JSON_TRUE);

    if (ngx_http_vmx_index_add(&cc->snapshot->environments, &env->id, env)
        != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "environment \"%V\" appears "
                                          "twice", &env->id);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_connection(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_uint_t i)
{
    ngx_str_t                  *model;
    ngx_uint_t                  n;
    vmx_json_t                 *credentials, *list, *item;
    ngx_http_vmx_connection_t  *conn;

    static const struct {
        ngx_str_t   name;
        ngx_uint_t  id;
    } providers[] = {
        { ngx_string("openai"), NGX_HTTP_VMX_PROVIDER_OPENAI },
        { ngx_string("groq"), NGX_HTTP_VMX_PROVIDER_GROQ },
        { ngx_string("anthropic"), NGX_HTTP_VMX_PROVIDER_ANTHROPIC },
        { ngx_string("gemini"), NGX_HTTP_VMX_PROVIDER_GEMINI },
        { ngx_string("aws-bedrock"), NGX_HTTP_VMX_PROVIDER_BEDROCK },
    };

    conn = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_connection_t));
    if (conn == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_get_str(cc, obj, "id", &conn->id, "connections")
        != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "name", &conn->name, "connections")
           != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "provider", &conn->provider,
                                "connections")
           != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "baseUrl", &conn->base_url,
                                "connections")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    conn->env = ngx_http_vmx_get_env(cc, obj, "connection");
    if (conn->env == NULL) {
        return NGX_ERROR;
    }

    for (n = 0; n < sizeof(providers) / sizeof(providers[0]); n++) {
        if (conn->provider.len == providers[n].name.len
            && ngx_strncmp(conn->provider.data, providers[n].name.data,
                           conn->provider.len) == 0)
        {
            conn->provider_id = providers[n].id;
        }
    }

    if (conn->provider_id == 0) {
        return ngx_http_vmx_compile_error(cc, "connection \"%V\": unknown "
                                          "provider \"%V\"", &conn->id,
                                          &conn->provider);
    }

    if (ngx_http_vmx_parse_base_url(cc, conn) != NGX_OK) {
        return NGX_ERROR;
    }

    list = vmx_json_get(obj, "addresses");
    if (list != NULL && list->type == VMX_JSON_ARRAY && list->count) {
        conn->addrs = ngx_pcalloc(cc->pool, list->count * sizeof(ngx_addr_t));
        if (conn->addrs == NULL) {
            return NGX_ERROR;
        }

        for (item = list->child; item; item = item->next) {
            if (item->type != VMX_JSON_STRING
                || ngx_parse_addr_port(cc->pool, &conn->addrs[conn->naddrs],
                                       (u_char *) item->str, item->str_len)
                   != NGX_OK)
            {
                return ngx_http_vmx_compile_error(cc, "connection \"%V\": "
                                                  "bad address", &conn->id);
            }

            conn->naddrs++;
        }
    }

    if (conn->naddrs == 0) {
        /* no address pushed: the host must be an IP literal */
        conn->addrs = ngx_pcalloc(cc->pool, sizeof(ngx_addr_t));
        if (conn->addrs == NULL) {
            return NGX_ERROR;
        }

        if (ngx_parse_addr_port(cc->pool, conn->addrs,
                                conn->host.data
                                - (conn->host.data != conn->host_header.data),
                                conn->host.len
                                + 2 * (conn->host.data
                                       != conn->host_header.data))
            != NGX_OK)
        {
            return ngx_http_vmx_compile_error(cc, "connection \"%V\": the "
                                              "host of \"%V\" has no address",
                                              &conn->id, &conn->base_url);
        }

        conn->naddrs = 1;
    }

    for (n = 0; n < conn->naddrs; n++) {
        if (ngx_inet_get_port(conn->addrs[n].sockaddr) == 0) {
            ngx_inet_set_port(conn->addrs[n].sockaddr, conn->port);
        }
    }

    credentials = vmx_json_get(obj, "credentials");
    if (credentials != NULL && credentials->type == VMX_JSON_OBJECT) {
        ngx_http_vmx_opt_str(credentials, "apiKey", &conn->api_key);
        ngx_http_vmx_opt_str(credentials, "accessKeyId", &conn->access_key_id);
        ngx_http_vmx_opt_str(credentials, "secretAccessKey", &conn->secret_key);
        ngx_http_vmx_opt_str(credentials, "sessionToken",
                             &conn->session_token);
    }

    ngx_http_vmx_opt_str(obj, "region", &conn->region);

    if (ngx_array_init(&conn->allowed_models, cc->pool, 1, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    list = vmx_json_get(obj, "allowedModels");
    if (list != NULL && list->type == VMX_JSON_ARRAY) {
        for (item = list->child; item; item = item->next) {
            if (item->type != VMX_JSON_STRING) {
                return ngx_http_vmx_compile_error(cc, "connection \"%V\": "
                                                  "allowedModels must be "
                                                  "strings", &conn->id);
            }

            model = ngx_array_push(&conn->allowed_models);
            if (model == NULL) {
                return NGX_ERROR;
            }

            model->data = (u_char *) item->str;
            model->len = item->str_len;
        }
    }

    if (ngx_http_vmx_compile_limits(cc, obj, 1, &conn->limits, "connection")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_index_add(&cc->snapshot->connections, &conn->id, conn)
        != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "connection \"%V\" appears "
                                          "twice", &conn->id);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_parse_base_url(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_connection_t *conn)
{
    u_char     *p, *last, *host, *path, *colon;
    ngx_int_t   port;

    p = conn->base_url.data;
    last = p + conn->base_url.len;

    if (conn->base_url.len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8)
                                  == 0)
    {
        conn->https = 1;
        conn->port = 443;
        p += 8;

    } else if (conn->base_url.len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        conn->port = 80;
        p += 7;

    } else {
        goto invalid;
    }

    host = p;
    path = ngx_strlchr(p, last, '/');
    if (path == NULL) {
        path = last;
    }

    conn->host_header.data = host;
    conn->host_header.len = path - host;

    if (conn->host_header.len == 0) {
        goto invalid;
    }

    /* the port, after an IPv6 literal's "]" when there is one */
    p = (*host == '[') ? ngx_strlchr(host, path, ']') : host;
    if (p == NULL) {
        goto invalid;
    }

    colon = ngx_strlchr(p, path, ':');

    conn->host.data = (*host == '[') ? host + 1 : host;
    conn->host.len = (colon ? colon : path) - conn->host.data
                     - ((*host == '[') ? 1 : 0);

    if (colon) {
        port = ngx_atoi(colon + 1, path - colon - 1);
        if (port < 1 || port > 65535) {
            goto invalid;
        }

        conn->port = (in_port_t) port;
    }

    /* strip trailing slashes: the path "/chat/completions" is appended */
    while (last > path && last[-1] == '/') {
        last--;
    }

    conn->base_path.data = path;
    conn->base_path.len = last - path;

    return NGX_OK;

invalid:

    return ngx_http_vmx_compile_error(cc, "connection \"%V\": invalid "
                                      "baseUrl \"%V\"", &conn->id,
                                      &conn->base_url);
}


static ngx_int_t
ngx_http_vmx_compile_resource(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_uint_t i)
{
    u_char                   *p;
    ngx_str_t                 key;
    vmx_json_t               *item;
    ngx_http_vmx_resource_t  *res;

    res = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_resource_t));
    if (res == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_get_str(cc, obj, "id", &res->id, "resources") != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "name", &res->name, "resources")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    res->env = ngx_http_vmx_get_env(cc, obj, "resource");
    if (res->env == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_compile_target(cc, res->env, vmx_json_get(obj, "model"),
                                    &res->model, "model")
        != NGX_OK
        || ngx_http_vmx_compile_targets(cc, res->env,
                                        vmx_json_get(obj, "fallbackModels"),
                                        &res->fallbacks, "fallbackModels")
           != NGX_OK
        || ngx_http_vmx_compile_targets(cc, res->env,
                                        vmx_json_get(obj, "secondaryModels"),
                                        &res->secondaries, "secondaryModels")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    item = vmx_json_get(obj, "useFallback");
    res->use_fallback = (item == NULL || item->type != VMX_JSON_FALSE);

    if (ngx_http_vmx_compile_limits(cc, obj, 0, &res->limits, "resource")
        != NGX_OK
        || ngx_http_vmx_compile_routing(cc, obj, res) != NGX_OK)
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

    if (ngx_http_vmx_index_add(&cc->snapshot->resources, &key, res) != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "resource name \"%V\" appears "
                                          "twice in an environment",
                                          &res->name);
    }

    if (ngx_http_vmx_index_add(&cc->snapshot->resource_ids, &res->id, res)
        != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "resource \"%V\" appears twice",
                                          &res->id);
    }

    return NGX_OK;
}


/* the resource's routing rules, compiled once per snapshot */

static ngx_int_t
ngx_http_vmx_compile_routing(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_http_vmx_resource_t *res)
{
    vmx_json_t          *routing;
    vmx_rules_t         *rules;
    vmx_rules_error_t    err;
    ngx_pool_cleanup_t  *cln;

    routing = vmx_json_get(obj, "routing");

    if (routing == NULL || routing->type != VMX_JSON_OBJECT) {
        return NGX_OK;
    }

    rules = vmx_rules_compile(routing, ngx_http_vmx_json_alloc, cc->pool,
                              &err);
    if (rules == NULL) {
        return ngx_http_vmx_compile_error(cc, "resource \"%V\": routing.%s: "
                                          "%s", &res->id, err.path,
                                          err.message);
    }

    /* the compiled regexes live outside the pool */
    cln = ngx_pool_cleanup_add(cc->pool, 0);
    if (cln == NULL) {
        vmx_rules_free(rules);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_vmx_rules_cleanup;
    cln->data = rules;

    res->rules = vmx_rules_active(rules) ? rules : NULL;

    return NGX_OK;
}


static void
ngx_http_vmx_rules_cleanup(void *data)
{
    vmx_rules_free(data);
}


/*
 * The enabled capacity entries of obj; of a resource or an API key only
 * when its enforceCapacity is true.
 */

static ngx_int_t
ngx_http_vmx_compile_limits(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_flag_t always, ngx_array_t *limits, const char *what)
{
    size_t                 len;
    ngx_uint_t             p;
    const char            *str;
    vmx_json_t            *list, *item, *v;
    ngx_http_vmx_limit_t  *limit;

    static const char  *periods[] = {
        "minute", "hour", "day", "week", "month", "lifetime"
    };

    list = vmx_json_get(obj, "capacity");
    item = vmx_json_get(obj, "enforceCapacity");

    if (ngx_array_init(limits, cc->pool, 1, sizeof(ngx_http_vmx_limit_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (list == NULL || list->type != VMX_JSON_ARRAY
        || (!always && (item == NULL || item->type != VMX_JSON_TRUE)))
    {
        return NGX_OK;
    }

    for (item = list->child; item; item = item->next) {

        v = vmx_json_get(item, "enabled");
        if (item->type != VMX_JSON_OBJECT
            || (v != NULL && v->type == VMX_JSON_FALSE))
        {
            continue;
        }

        limit = ngx_array_push(limits);
        if (limit == NULL) {
            return NGX_ERROR;
        }

        str = vmx_json_get_str(item, "period", &len);

        for (p = 0; str && p < sizeof(periods) / sizeof(periods[0]); p++) {
            if (len == ngx_strlen(periods[p])
                && ngx_strncmp(str, periods[p], len) == 0)
            {
                break;
            }
        }

        if (str == NULL || p == sizeof(periods) / sizeof(periods[0])) {
            return ngx_http_vmx_compile_error(cc, "%s: a capacity entry has "
                                              "no known period", what);
        }

        limit->period = p;

        v = vmx_json_get(item, "requests");
        limit->requests = (v && v->is_int && v->integer >= 0) ? v->integer
                                                                : -1;

        v = vmx_json_get(item, "tokens");
        limit->tokens = (v && v->is_int && v->integer >= 0) ? v->integer : -1;

        str = vmx_json_get_str(item, "dimension", &len);
        limit->per_address = (str && len == sizeof("source-ip") - 1
                              && ngx_strncmp(str, "source-ip", len) == 0);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_target(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_environment_t *env, vmx_json_t *obj,
    ngx_http_vmx_target_t *target, const char *what)
{
    ngx_str_t  connection_id;

    ngx_str_null(&connection_id);

    if (obj == NULL || obj->type != VMX_JSON_OBJECT) {
        return ngx_http_vmx_compile_error(cc, "%s must be an object", what);
    }

    if (ngx_http_vmx_get_str(cc, obj, "provider", &target->provider, what)
        != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "model", &target->model, what)
           != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "connectionId", &connection_id, what)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    target->connection = ngx_http_vmx_index_find(&cc->snapshot->connections,
                                                 connection_id.data,
                                                 connection_id.len);

    if (target->connection == NULL || target->connection->env != env) {
        return ngx_http_vmx_compile_error(cc, "%s: connection \"%V\" is not "
                                          "in the environment", what,
                                          &connection_id);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_targets(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_environment_t *env, vmx_json_t *arr, ngx_array_t *targets,
    const char *what)
{
    vmx_json_t             *item;
    ngx_http_vmx_target_t  *target;

    if (ngx_array_init(targets, cc->pool, arr ? ngx_max(arr->count, 1) : 1,
                       sizeof(ngx_http_vmx_target_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (arr == NULL || arr->type == VMX_JSON_NULL) {
        return NGX_OK;
    }

    if (arr->type != VMX_JSON_ARRAY) {
        return ngx_http_vmx_compile_error(cc, "%s must be an array", what);
    }

    for (item = arr->child; item; item = item->next) {
        target = ngx_array_push(targets);
        if (target == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_vmx_compile_target(cc, env, item, target, what)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_api_key(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_uint_t i)
{
    ngx_str_t                 hex, hash;
    vmx_json_t               *list, *item;
    ngx_http_vmx_api_key_t   *key;
    ngx_http_vmx_resource_t  *res, **resp;
    ngx_uint_t                n;

    ngx_str_null(&hex);

    key = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_api_key_t));
    if (key == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_get_str(cc, obj, "id", &key->id, "apiKeys") != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "name", &key->name, "apiKeys")
           != NGX_OK
        || ngx_http_vmx_get_str(cc, obj, "keyHash", &hex, "apiKeys") != NGX_OK)
    {
        return NGX_ERROR;
    }

    key->env = ngx_http_vmx_get_env(cc, obj, "api key");
    if (key->env == NULL) {
        return NGX_ERROR;
    }

    if (hex.len != 64) {
        goto bad_hash;
    }

    for (n = 0; n < 32; n++) {
        ngx_int_t  byte = ngx_hextoi(hex.data + 2 * n, 2);

        if (byte == NGX_ERROR) {
            goto bad_hash;
        }

        key->hash[n] = (u_char) byte;
    }

    item = vmx_json_get(obj, "enabled");
    key->enabled = (item == NULL || item->type != VMX_JSON_FALSE);

    item = vmx_json_get(obj, "labels");
    key->labels = (item && item->type == VMX_JSON_OBJECT) ? item : NULL;

    if (ngx_http_vmx_compile_limits(cc, obj, 0, &key->limits, "api key")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    list = vmx_json_get(obj, "resources");
    if (ngx_array_init(&key->resources, cc->pool,
                       list ? ngx_max(list->count, 1) : 1,
                       sizeof(ngx_http_vmx_resource_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (list != NULL && list->type == VMX_JSON_ARRAY) {
        for (item = list->child; item; item = item->next) {
            if (item->type != VMX_JSON_STRING) {
                return ngx_http_vmx_compile_error(cc, "api key \"%V\": "
                                                  "resources must be ids",
                                                  &key->id);
            }

            res = ngx_http_vmx_index_find(&cc->snapshot->resource_ids,
                                          (u_char *) item->str,
                                          item->str_len);
            if (res == NULL || res->env != key->env) {
                return ngx_http_vmx_compile_error(cc, "api key \"%V\": "
                                                  "resource \"%s\" is not in "
                                                  "the environment", &key->id,
                                                  item->str);
            }

            resp = ngx_array_push(&key->resources);
            if (resp == NULL) {
                return NGX_ERROR;
            }

            *resp = res;
        }
    }

    hash.data = key->hash;
    hash.len = sizeof(key->hash);

    if (ngx_http_vmx_index_add(&cc->snapshot->api_keys, &hash, key) != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "api key \"%V\": the key hash "
                                          "appears twice", &key->id);
    }

    return NGX_OK;

bad_hash:

    return ngx_http_vmx_compile_error(cc, "api key \"%V\": keyHash must be 64 "
                                      "hex digits", &key->id);
}


/* an environment's pools; each listed resource points to its pool */

static ngx_int_t
ngx_http_vmx_compile_pool_def(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    ngx_uint_t i)
{
    ngx_uint_t                n;
    vmx_json_t               *list, *item, *strategy;
    ngx_http_vmx_pool_def_t  *def;

    static const struct {
        const char  *name;
        size_t       offset;
        int64_t      scale, min, max, value;
    } params[] = {
        { "windowSeconds", offsetof(vmx_pool_strategy_t, window_ms),
          1000, 1, 60, 30 },
        { "cooldownSeconds", offsetof(vmx_pool_strategy_t, cooldown_ms),
          1000, 0, 3600, 5 },
        { "scaleUpPercent", offsetof(vmx_pool_strategy_t, scale_up),
          1, 1, 100, 50 },
    };

    def = ngx_pcalloc(cc->pool, sizeof(ngx_http_vmx_pool_def_t));
    if (def == NULL) {
        return NGX_ERROR;
    }

    def->env = ngx_http_vmx_get_env(cc, obj, "pool definition");
    if (def->env == NULL) {
        return NGX_ERROR;
    }

    strategy = vmx_json_get(obj, "strategy");

    for (n = 0; n < sizeof(params) / sizeof(params[0]); n++) {
        item = strategy ? vmx_json_get(strategy, params[n].name) : NULL;

        if (item != NULL
            && (!item->is_int || item->integer < params[n].min
                || item->integer > params[n].max))
        {
            return ngx_http_vmx_compile_error(cc, "pool definition of \"%V\": "
                                              "strategy.%s must be an "
                                              "integer from %L to %L",
                                              &def->env->id, params[n].name,
                                              params[n].min, params[n].max);
        }

        *(int64_t *) ((u_char *) &def->strategy + params[n].offset) =
            (item ? item->integer : params[n].value) * params[n].scale;
    }

    list = vmx_json_get(obj, "pools");
    if (list == NULL || list->type != VMX_JSON_ARRAY
        || list->count > VMX_POOLS_MAX)
    {
        return ngx_http_vmx_compile_error(cc, "pool definition of \"%V\": "
                                          "\"pools\" must be an array of at "
                                          "most %d pools", &def->env->id,
                                          VMX_POOLS_MAX);
    }

    if (ngx_array_init(&def->pools, cc->pool, ngx_max(list->count, 1),
                       sizeof(ngx_http_vmx_pool_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (item = list->child; item; item = item->next) {
        if (ngx_http_vmx_compile_pool(cc, def, item) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_vmx_index_add(&cc->snapshot->pool_defs, &def->env->id, def)
        != NGX_OK)
    {
        return ngx_http_vmx_compile_error(cc, "environment \"%V\" has two "
                                          "pool definitions", &def->env->id);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_compile_pool(ngx_http_vmx_compile_t *cc,
    ngx_http_vmx_pool_def_t *def, vmx_json_t *obj)
{
    vmx_json_t               *rank, *min, *max, *list, *item;
    ngx_http_vmx_pool_t      *pool;
    ngx_http_vmx_resource_t  *res;

    /* resources point into the array: it must never move */
    pool = ngx_array_push(&def->pools);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->def = def;

    if (ngx_http_vmx_get_str(cc, obj, "name", &pool->name, "pool")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rank = vmx_json_get(obj, "rank");
    min = vmx_json_get(obj, "minReservation");
    max = vmx_json_get(obj, "maxReservation");

    if (rank == NULL || !rank->is_int
        || min == NULL || min->type != VMX_JSON_NUMBER
        || max == NULL || max->type != VMX_JSON_NUMBER
        || min->num < 0 || min->num > max->num || max->num > 100)
    {
        return ngx_http_vmx_compile_error(cc, "pool \"%V\": rank must be an "
                                          "integer and 0 <= minReservation <= "
                                          "maxReservation <= 100",
                                          &pool->name);
    }

    pool->rank = rank->integer;
    pool->min = (int64_t) (min->num * 100 + 0.5);
    pool->max = (int64_t) (max->num * 100 + 0.5);

    list = vmx_json_get(obj, "resources");
    if (list == NULL || list->type != VMX_JSON_ARRAY) {
        return ngx_http_vmx_compile_error(cc, "pool \"%V\": \"resources\" "
                                          "must be an array", &pool->name);
    }

    for (item = list->child; item; item = item->next) {
        res = (item->type == VMX_JSON_STRING)
              ? ngx_http_vmx_index_find(&cc->snapshot->resource_ids,
                                        (u_char *) item->str, item->str_len)
              : NULL;

        if (res == NULL || res->env != def->env) {
            return ngx_http_vmx_compile_error(cc, "pool \"%V\": a resource is "
                                              "not in the environment",
                                              &pool->name);
        }

        if (res->pool != NULL) {
            return ngx_http_vmx_compile_error(cc, "resource \"%V\" is in two "
                                              "pools", &res->id);
        }

        res->pool = pool;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_get_str(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    const char *name, ngx_str_t *value, const char *what)
{
    size_t       len;
    const char  *str;

    str = vmx_json_get_str(obj, name, &len);

    if (str == NULL || len == 0) {
        return ngx_http_vmx_compile_error(cc, "%s: \"%s\" must be a non-empty "
                                          "string", what, name);
    }

    value->data = (u_char *) str;
    value->len = len;

    return NGX_OK;
}


/* an optional string member; absent or of another type: empty */

static void
ngx_http_vmx_opt_str(vmx_json_t *obj, const char *name, ngx_str_t *value)
{
    value->data = (u_char *) vmx_json_get_str(obj, name, &value->len);

    if (value->data == NULL) {
        value->len = 0;
    }
}


static ngx_http_vmx_environment_t *
ngx_http_vmx_get_env(ngx_http_vmx_compile_t *cc, vmx_json_t *obj,
    const char *what)
{
    ngx_str_t                    id;
    ngx_http_vmx_environment_t  *env;

    if (ngx_http_vmx_get_str(cc, obj, "environmentId", &id, what) != NGX_OK) {
        return NULL;
    }

    env = ngx_http_vmx_index_find(&cc->snapshot->environments, id.data,
                                  id.len);
    if (env == NULL) {
        ngx_http_vmx_compile_error(cc, "%s: unknown environment \"%V\"", what,
                                   &id);
    }

    return env;
}


static ngx_int_t
ngx_http_vmx_compile_error(ngx_http_vmx_compile_t *cc, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    cc->err = ngx_vslprintf(cc->err, cc->err_end, fmt, args);
    va_end(args);

    return NGX_ERROR;
}


/* the worker's snapshot */

ngx_http_vmx_snapshot_t *
ngx_http_vmx_snapshot_acquire(ngx_http_request_t *r)
{
    u_char                    *copy;
    size_t                     len;
    ngx_str_t                  error;
    ngx_atomic_uint_t          generation;
    ngx_pool_cleanup_t        *cln;
    ngx_http_vmx_snapshot_t   *snapshot;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->sh == NULL) {
        return NULL;
    }

    generation = mcf->sh->generation;

    if (generation != ngx_http_vmx_generation) {

        /* copy under the lock, compile without it */
        ngx_shmtx_lock(&mcf->shpool->mutex);

        generation = mcf->sh->generation;
        len = mcf->sh->len;
        copy = len ? ngx_alloc(len, r->connection->log) : NULL;

        if (copy) {
            ngx_memcpy(copy, mcf->sh->data, len);
        }

        ngx_shmtx_unlock(&mcf->shpool->mutex);

        if (copy) {
            snapshot = ngx_http_vmx_snapshot_compile(copy, len,
                                                     ngx_cycle->log, &error);
            ngx_free(copy);

            if (snapshot == NULL) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "vmx: the shared snapshot does not compile: %V",
                              &error);

            } else {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "vmx: worker runs config version %uL",
                              snapshot->version);

                if (ngx_http_vmx_current) {
                    ngx_http_vmx_snapshot_retire(ngx_http_vmx_current);
                }

                ngx_http_vmx_current = snapshot;
            }
        }

        /* a failed copy is tried again on the next request */
        if (copy || len == 0) {
            ngx_http_vmx_generation = generation;
        }
    }

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
        ngx_destroy_pool(snapshot->pool);
    }
}


static void
ngx_http_vmx_snapshot_retire(ngx_http_vmx_snapshot_t *snapshot)
{
    if (snapshot->refs == 0) {
        ngx_destroy_pool(snapshot->pool);
        return;
    }

    snapshot->retired = 1;
}


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

    return NGX_CONF_OK;
}


char *
ngx_http_vmx_config_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    u_char     *p, *last;
    ssize_t     n;
    ngx_str_t  *value;
    ngx_file_t  file;
    u_char      buf[512];

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = value[1];
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

    /* the token is the file's content without surrounding white space */
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

    if (last - p < 16 || n == (ssize_t) sizeof(buf)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the token in \"%V\" must have 16 to 500 "
                           "characters", &file.name);
        return NGX_CONF_ERROR;
    }

    mcf->token.len = last - p;
    mcf->token.data = ngx_pnalloc(cf->pool, mcf->token.len);
    if (mcf->token.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(mcf->token.data, p, mcf->token.len);
    sodium_memzero(buf, sizeof(buf));

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

    ngx_str_t                  snapshot, error;
    ngx_pool_t                *pool;
    ngx_slab_pool_t           *shpool;
    ngx_atomic_uint_t          generation;
    ngx_http_vmx_snapshot_t   *compiled;
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

    if (ngx_http_vmx_capacity_init_zone(mcf) != NGX_OK
        || ngx_http_vmx_stats_init_zone(mcf) != NGX_OK
        || ngx_http_vmx_audit_init_zone(mcf, shm_zone->shm.log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (mcf->file.len == 0) {
        return NGX_OK;
    }

    /* a fresh start serves the last snapshot it was given */

    pool = ngx_create_pool(4096, shm_zone->shm.log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_config_read_disk(mcf, pool, &snapshot, shm_zone->shm.log)
        == NGX_OK)
    {
        compiled = ngx_http_vmx_snapshot_compile(snapshot.data, snapshot.len,
                                                 shm_zone->shm.log, &error);
        if (compiled == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "vmx: ignoring the disk copy \"%V\": %V",
                          &mcf->file, &error);

        } else {
            (void) ngx_http_vmx_config_store(mcf, snapshot.data, snapshot.len,
                                             compiled->version,
                                             shm_zone->shm.log, &generation);
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "vmx: loaded config version %uL from \"%V\"",
                          compiled->version, &mcf->file);
            ngx_destroy_pool(compiled->pool);
        }
    }

    ngx_destroy_pool(pool);

    return NGX_OK;
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

    ngx_free(blob);

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_config_read_disk(ngx_http_vmx_main_conf_t *mcf, ngx_pool_t *pool,
    ngx_str_t *out, ngx_log_t *log)
{
    u_char             *blob, *nonce;
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

    nonce = blob + NGX_HTTP_VMX_DISK_MAGIC_LEN;
    out->data = blob + n;

    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out->data, &len, NULL,
            nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            n - NGX_HTTP_VMX_DISK_MAGIC_LEN
              - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
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

    if (ngx_http_vmx_config_authorized(r, mcf) != NGX_OK) {
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


static ngx_int_t
ngx_http_vmx_config_authorized(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf)
{
    ngx_str_t  auth;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    auth = r->headers_in.authorization->value;

    if (auth.len != sizeof("Bearer ") - 1 + mcf->token.len
        || ngx_strncasecmp(auth.data, (u_char *) "Bearer ", 7) != 0
        || sodium_memcmp(auth.data + 7, mcf->token.data, mcf->token.len) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_vmx_config_put(ngx_http_request_t *r)
{
    ngx_str_t                  body, error;
    ngx_int_t                  rc;
    ngx_atomic_uint_t          generation;
    ngx_http_vmx_snapshot_t   *snapshot;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ngx_str_set(&error, "the snapshot is empty");
        goto invalid;
    }

    if (ngx_http_vmx_read_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the snapshot outlives this connection: it must not keep its log */
    snapshot = ngx_http_vmx_snapshot_compile(body.data, body.len,
                                             ngx_cycle->log, &error);
    if (snapshot == NULL) {
        goto invalid;
    }

    if (ngx_http_vmx_config_store(mcf, body.data, body.len, snapshot->version,
                                  r->connection->log, &generation)
        != NGX_OK)
    {
        ngx_destroy_pool(snapshot->pool);
        ngx_str_set(&error, "the snapshot does not fit vmx_config_zone");
        rc = ngx_http_vmx_send_error(r, NULL, NGX_HTTP_INSUFFICIENT_STORAGE,
                                     "config_too_large", &error);
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* this worker runs the snapshot it has just compiled */
    if (ngx_http_vmx_current) {
        ngx_http_vmx_snapshot_retire(ngx_http_vmx_current);
    }

    ngx_http_vmx_current = snapshot;
    ngx_http_vmx_generation = generation;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "vmx: config version %uL received (%uz bytes)",
                  snapshot->version, body.len);

    if (mcf->file.len) {
        (void) ngx_http_vmx_config_write_disk(mcf, body.data, body.len,
                                              r->connection->log);
    }

    ngx_http_finalize_request(r, ngx_http_vmx_config_state(r, NGX_HTTP_OK));
    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "vmx: rejected config snapshot: %V", &error);

    rc = ngx_http_vmx_send_error(r, NULL, NGX_HTTP_BAD_REQUEST,
                                 "invalid_snapshot", &error);
    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_vmx_config_state(ngx_http_request_t *r, ngx_uint_t status)
{
    u_char                    *p, *start;
    uint64_t                   version;
    ngx_tm_t                   tm;
    time_t                     loaded_at;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    ngx_shmtx_lock(&mcf->shpool->mutex);
    version = mcf->sh->version;
    loaded_at = mcf->sh->loaded_at;
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    start = ngx_pnalloc(r->pool, 128);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(start, "{\"version\":%uL", version);

    if (loaded_at) {
        ngx_gmtime(loaded_at, &tm);
        p = ngx_sprintf(p, ",\"loadedAt\":\"%4d-%02d-%02dT%02d:%02d:%02dZ\"",
                        tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                        tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
    }

    *p++ = '}';

    return ngx_http_vmx_send_json(r, status, start, p - start);
}
