/*
 * The content handler of a vmx_gateway location: the request's route, its
 * API key, the body read and checked, the resource and its routing, up to
 * the plan of the provider attempts that the gate lets go.
 */

#include "ngx_http_vmx_module.h"

#include "vmx_batch.h"
#include "vmx_sha256.h"


/* each also under /v1/completion/{workspaceId}/{environmentId}/ */
typedef enum {
    NGX_HTTP_VMX_ROUTE_NONE = 0,
    NGX_HTTP_VMX_ROUTE_CHAT,            /* /v1/chat/completions */
    NGX_HTTP_VMX_ROUTE_EMBEDDINGS,      /* /v1/embeddings */
    NGX_HTTP_VMX_ROUTE_MODELS           /* /v1/models, not scoped */
} ngx_http_vmx_route_e;


static void ngx_http_vmx_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_prepare(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_chat_check(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_embeddings_check(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_counted(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_route_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_plan(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_json_t *secondary_index,
    ngx_http_vmx_target_t *routed);
static ngx_int_t ngx_http_vmx_routing(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_target_t **routed);
static double ngx_http_vmx_rules_error_rate(void *data, unsigned minutes,
    unsigned status);
static ngx_http_vmx_route_e ngx_http_vmx_route(ngx_http_request_t *r,
    ngx_str_t *workspace_id, ngx_str_t *environment_id);
static ngx_http_vmx_api_key_t *ngx_http_vmx_authenticate(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_uint_t *expired);
static ngx_int_t ngx_http_vmx_batch_key(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *digest);
static ngx_int_t ngx_http_vmx_models(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_trace_context(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *random);
static ngx_flag_t ngx_http_vmx_is_hex(u_char *p, size_t n);
static ngx_int_t ngx_http_vmx_duplicate_key(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_json_duplicate_t *dup);
static size_t ngx_http_vmx_utf8_cut(u_char *s, size_t len, size_t max);
static ngx_int_t ngx_http_vmx_reject(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message);
static ngx_int_t ngx_http_vmx_unavailable(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *what, ngx_str_t *name, ngx_str_t *reason);


/* the gateway */

ngx_int_t
ngx_http_vmx_gateway_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t              workspace_id, environment_id;
    ngx_uint_t             expired;
    ngx_http_vmx_ctx_t    *ctx;
    ngx_http_vmx_route_e   route;

    ctx = ngx_http_vmx_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request.snapshot = ngx_http_vmx_snapshot_acquire(r);

    ngx_str_null(&workspace_id);
    ngx_str_null(&environment_id);

    route = ngx_http_vmx_route(r, &workspace_id, &environment_id);
    ctx->request.path_workspace_id = workspace_id;
    ctx->request.path_environment_id = environment_id;

    if (route == NGX_HTTP_VMX_ROUTE_NONE) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_NOT_FOUND, "not_found",
                                   "Unknown API path: the gateway serves "
                                   "/v1/chat/completions, /v1/embeddings "
                                   "and /v1/models");
    }

    if (route == NGX_HTTP_VMX_ROUTE_EMBEDDINGS) {
        ctx->request.operation = NGX_HTTP_VMX_EMBEDDINGS;
    }

    if (route == NGX_HTTP_VMX_ROUTE_MODELS
        ? !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))
        : r->method != NGX_HTTP_POST)
    {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   route == NGX_HTTP_VMX_ROUTE_MODELS
                                   ? "Use GET for this path"
                                   : "Use POST for this path");
    }

    ctx->request.api_key = ngx_http_vmx_authenticate(r, ctx, &expired);

    if (expired) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                   "invalid_api_key",
                                   "Invalid API key: the key has expired");
    }

    if (ctx->request.api_key == NULL
        || (workspace_id.len
            && (ctx->request.api_key->env->id.len != environment_id.len
                || ngx_strncmp(ctx->request.api_key->env->id.data,
                               environment_id.data, environment_id.len) != 0
                || ctx->request.api_key->env->workspace_id.len
               != workspace_id.len
                || ngx_strncmp(ctx->request.api_key->env->workspace_id.data,
                               workspace_id.data, workspace_id.len) != 0)))
    {
        ctx->request.api_key = NULL;
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_UNAUTHORIZED,
                                   "invalid_api_key",
                                   "Invalid API key: pass a key of this "
                                   "environment as \"Authorization: Bearer "
                                   "<key>\" or \"x-api-key: <key>\"");
    }

    if (ngx_http_vmx_audit_refused(r, ctx)) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "audit_unavailable",
                                   "The gateway cannot record this request "
                                   "(its audit spool is full) and this "
                                   "environment requires an audit record of "
                                   "every request; try again later");
    }

    if (route == NGX_HTTP_VMX_ROUTE_MODELS) {
        rc = ngx_http_discard_request_body(r);
        return (rc != NGX_OK) ? rc : ngx_http_vmx_models(r, ctx);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_vmx_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_http_vmx_route_e
ngx_http_vmx_route(ngx_http_request_t *r, ngx_str_t *workspace_id,
    ngx_str_t *environment_id)
{
    u_char      *p, *last, *slash;
    ngx_str_t    tail;
    ngx_uint_t   i;

    static ngx_str_t  models = ngx_string("/v1/models");
    static ngx_str_t  scoped = ngx_string("/v1/completion/");

    static struct {
        ngx_str_t               path;   /* the tail of a scoped one */
        ngx_http_vmx_route_e    route;
    } operations[] = {
        { ngx_string("/chat/completions"), NGX_HTTP_VMX_ROUTE_CHAT },
        { ngx_string("/embeddings"), NGX_HTTP_VMX_ROUTE_EMBEDDINGS }
    };

    if (r->uri.len == models.len
        && ngx_strncmp(r->uri.data, models.data, models.len) == 0)
    {
        return NGX_HTTP_VMX_ROUTE_MODELS;
    }

    /* /v1<operation> */

    for (i = 0; i < sizeof(operations) / sizeof(operations[0]); i++) {
        tail = operations[i].path;

        if (r->uri.len == 3 + tail.len
            && ngx_strncmp(r->uri.data, "/v1", 3) == 0
            && ngx_strncmp(r->uri.data + 3, tail.data, tail.len) == 0)
        {
            return operations[i].route;
        }
    }

    /* /v1/completion/{workspaceId}/{environmentId}<operation> */

    if (r->uri.len <= scoped.len
        || ngx_strncmp(r->uri.data, scoped.data, scoped.len) != 0)
    {
        return NGX_HTTP_VMX_ROUTE_NONE;
    }

    for (i = 0; i < sizeof(operations) / sizeof(operations[0]); i++) {
        tail = operations[i].path;

        if (r->uri.len > scoped.len + tail.len
            && ngx_strncmp(r->uri.data + r->uri.len - tail.len, tail.data,
                           tail.len)
               == 0)
        {
            break;
        }
    }

    if (i == sizeof(operations) / sizeof(operations[0])) {
        return NGX_HTTP_VMX_ROUTE_NONE;
    }

    p = r->uri.data + scoped.len;
    last = r->uri.data + r->uri.len - tail.len;

    slash = ngx_strlchr(p, last, '/');

    if (slash == NULL || slash == p || slash + 1 >= last
        || ngx_strlchr(slash + 1, last, '/') != NULL)
    {
        return NGX_HTTP_VMX_ROUTE_NONE;
    }

    workspace_id->data = p;
    workspace_id->len = slash - p;
    environment_id->data = slash + 1;
    environment_id->len = last - slash - 1;

    return operations[i].route;
}


/*
 * The key of the request, or NULL; *expired tells a key that expired.  A
 * batch runner's signed headers name the key by its hash instead.
 */

static ngx_http_vmx_api_key_t *
ngx_http_vmx_authenticate(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t *expired)
{
    u_char                   digest[VMX_SHA256_LEN];
    ngx_str_t                key;
    ngx_table_elt_t         *h;
    ngx_http_vmx_api_key_t  *api_key;

    *expired = 0;

    if (ctx->request.snapshot == NULL) {
        return NULL;
    }

    if (ngx_http_vmx_header_in(r, "x-vmx-batch-signature") != NULL) {
        if (ngx_http_vmx_batch_key(r, ctx, digest) != NGX_OK) {
            return NULL;
        }

    } else {
        ngx_str_null(&key);

        if (r->headers_in.authorization) {
            key = r->headers_in.authorization->value;

            if (key.len > 7
                && ngx_strncasecmp(key.data, (u_char *) "Bearer ", 7) == 0)
            {
                key.data += 7;
                key.len -= 7;

            } else {
                key.len = 0;
            }
        }

        if (key.len == 0) {
            h = ngx_http_vmx_header_in(r, "x-api-key");
            if (h != NULL) {
                key = h->value;
            }
        }

        while (key.len && key.data[key.len - 1] == ' ') {
            key.len--;
        }

        if (key.len == 0) {
            return NULL;
        }

        if (vmx_sha256(key.data, key.len, digest) != 0) {
            return NULL;
        }
    }

    api_key = ngx_http_vmx_index_find(&ctx->request.snapshot->api_keys, digest,
                                      sizeof(digest));

    if (api_key == NULL || !api_key->enabled) {
        return NULL;
    }

    /* the clock decides, not the next snapshot; a key a rotation replaced
     * works until the end of its grace period */
    if ((api_key->expires_at && ngx_time() >= api_key->expires_at)
        || (ngx_memcmp(digest, api_key->hash, sizeof(digest)) != 0
            && ngx_time() >= api_key->previous_expires_at))
    {
        *expired = 1;
        return NULL;
    }

    return api_key;
}


/*
 * The x-vmx-batch-* headers of a batch runner, signed with the data-plane
 * token: the hash of the key the item runs under into digest, the batch,
 * item and pool into the context.  NGX_DECLINED when they do not hold.
 */

static ngx_int_t
ngx_http_vmx_batch_key(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *digest)
{
    int64_t                    item;
    ngx_uint_t                 i;
    ngx_table_elt_t           *h;
    vmx_batch_str_t           *value;
    vmx_batch_headers_t        in;
    vmx_batch_check_e          rc;
    ngx_http_vmx_main_conf_t  *mcf;

    static struct {
        const char  *name;
        size_t       offset;
    } headers[] = {
        { "x-vmx-batch-id", offsetof(vmx_batch_headers_t, id) },
        { "x-vmx-batch-item", offsetof(vmx_batch_headers_t, item) },
        { "x-vmx-batch-key", offsetof(vmx_batch_headers_t, key) },
        { "x-vmx-batch-pool", offsetof(vmx_batch_headers_t, pool) },
        { "x-vmx-batch-time", offsetof(vmx_batch_headers_t, time) },
        { "x-vmx-batch-signature", offsetof(vmx_batch_headers_t, signature) }
    };

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    for (i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        h = ngx_http_vmx_header_in(r, headers[i].name);
        value = (vmx_batch_str_t *) ((u_char *) &in + headers[i].offset);

        value->data = h ? (const char *) h->value.data : "";
        value->len = h ? h->value.len : 0;
    }

    rc = vmx_batch_verify(&in, mcf->token.data, mcf->token.len, ngx_time(),
                          &item, digest);

    if (rc != VMX_BATCH_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vmx: batch headers refused: %s",
                      mcf->token.len == 0 ? "no vmx_config_token_file"
                      : rc == VMX_BATCH_STALE ? "stale time"
                      : rc == VMX_BATCH_BAD_SIGNATURE ? "bad signature"
                      : "a header missing or malformed");
        return NGX_DECLINED;
    }

    ctx->request.batch_id.data = (u_char *) in.id.data;
    ctx->request.batch_id.len = in.id.len;
    ctx->request.batch_item = item;
    ctx->request.batch_pool.data = (u_char *) in.pool.data;
    ctx->request.batch_pool.len = in.pool.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_models(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char                    *p, *start;
    size_t                     len;
    ngx_uint_t                 i;
    ngx_http_vmx_resource_t  **resources;

    static const char  head[] = "{\"object\":\"list\",\"data\":[";
    static const char  item[] = "{\"id\":\"\",\"object\":\"model\","
                                "\"created\":,\"owned_by\":\"vm-x\"},";

    resources = ctx->request.api_key->resources.elts;

    len = sizeof(head) + 2;
    for (i = 0; i < ctx->request.api_key->resources.nelts; i++) {
        len += sizeof(item) + NGX_TIME_T_LEN
               + vmx_json_escape(NULL, (char *) resources[i]->name.data,
                                 resources[i]->name.len);
    }

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, head, sizeof(head) - 1);

    for (i = 0; i < ctx->request.api_key->resources.nelts; i++) {
        p = ngx_cpymem(p, "{\"id\":\"", sizeof("{\"id\":\"") - 1);
        p += vmx_json_escape((char *) p, (char *) resources[i]->name.data,
                             resources[i]->name.len);
        p = ngx_sprintf(p, "\",\"object\":\"model\",\"created\":%T,"
                        "\"owned_by\":\"vm-x\"},",
                        ctx->request.snapshot->loaded_at);
    }

    if (i) {
        p--;
    }

    p = ngx_cpymem(p, "]}", 2);

    ctx->attempt.own_response = 1;

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, start, p - start);
}


static void
ngx_http_vmx_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    rc = ngx_http_vmx_prepare(r, ctx);

    ngx_http_vmx_chat_continue(r, rc);
}


/*
 * Parses and checks the request, finds the resource, counts the prompt
 * tokens and plans the attempts.  Returns NGX_HTTP_VMX_GO_ON when the request
 * goes on to the providers, NGX_HTTP_VMX_WAIT while it waits (for a thread's
 * count or the cluster counters), or what to finalize the request with once
 * it has been answered.
 */

static ngx_int_t
ngx_http_vmx_prepare(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_str_t                  msg, body;
    ngx_uint_t                 i;
    vmx_json_t                *model, *vmx;
    vmx_json_error_t           jerr;
    vmx_json_duplicate_t       dup;
    ngx_http_vmx_resource_t  **allowed;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The request has no body: send a JSON "
                                   "request of OpenAI's API");
    }

    if (ngx_http_vmx_read_body(r, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request.request_body = body;

    ctx->request.body = vmx_json_parse((char *) body.data, body.len,
                               ngx_http_vmx_json_alloc, r->pool, 64, &jerr);

    if (ctx->request.body == NULL && jerr.too_dense) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "request_too_large",
                                   "The body holds more JSON values than the "
                                   "gateway parses for its size");
    }

    if (ctx->request.body == NULL) {
        msg.data = ngx_pnalloc(r->pool, 128);
        if (msg.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        msg.len = ngx_snprintf(msg.data, 128, "The body is not valid JSON: "
                               "%s at offset %uz", jerr.message, jerr.offset)
                  - msg.data;

        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request", &msg);
    }

    if (ctx->request.body->type != VMX_JSON_OBJECT) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The body must be a JSON object");
    }

    /*
     * The gateway reads the first of two equal keys, a provider may act on
     * the last: a rule or a limit would judge another request than the one
     * served.
     */

    rc = vmx_json_find_duplicate(ctx->request.body, ngx_http_vmx_json_alloc,
                                 r->pool, &dup);

    if (rc == -1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == 1) {
        return ngx_http_vmx_duplicate_key(r, ctx, &dup);
    }

    rc = (ctx->request.operation == NGX_HTTP_VMX_EMBEDDINGS)
         ? ngx_http_vmx_embeddings_check(r, ctx)
         : ngx_http_vmx_chat_check(r, ctx);

    if (rc != NGX_HTTP_VMX_GO_ON) {
        return rc;
    }

    /* the embeddings check has told a missing model already */
    model = vmx_json_get(ctx->request.body, "model");
    if (model == NULL || model->type != VMX_JSON_STRING || model->str_len == 0)
    {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "'model' is required: the name of an AI "
                                   "resource");
    }

    vmx = vmx_json_get(ctx->request.body, "vmx");
    if (vmx != NULL && vmx->type != VMX_JSON_NULL) {
        if (vmx->type != VMX_JSON_OBJECT) {
            return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "'vmx' must be an object");
        }

        ctx->request.correlation_id.data =
            (u_char *) vmx_json_get_str(vmx, "correlationId",
                                        &ctx->request.correlation_id.len);

        /* it is echoed in a header: printable ASCII only */
        for (i = 0; i < ctx->request.correlation_id.len; i++) {
            if (ctx->request.correlation_id.data[i] < 0x20
                || ctx->request.correlation_id.data[i] > 0x7e)
            {
                break;
            }
        }

        if (i < ctx->request.correlation_id.len
            || ctx->request.correlation_id.len > 128)
        {
            ngx_str_null(&ctx->request.correlation_id);
            return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "'vmx.correlationId' must be at most "
                                       "128 printable ASCII characters");
        }
    }

    /* resources are indexed by environment id "/" name */
    len = ctx->request.api_key->env->id.len + 1 + model->str_len;
    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ngx_cpymem(p, ctx->request.api_key->env->id.data,
                          ctx->request.api_key->env->id.len) + 1,
               model->str, model->str_len);
    p[ctx->request.api_key->env->id.len] = '/';

    ctx->request.resource
        = ngx_http_vmx_index_find(&ctx->request.snapshot->resources, p, len);

    if (ctx->request.resource == NULL) {
        msg.len = sizeof("The model `` does not exist or you do not have "
                         "access to it.") - 1 + model->str_len;
        msg.data = ngx_pnalloc(r->pool, msg.len);
        if (msg.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(msg.data, "The model `%*s` does not exist or you do not "
                    "have access to it.", model->str_len, model->str);

        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                       "model_not_found", &msg);
    }

    allowed = ctx->request.api_key->resources.elts;

    for (i = 0; i < ctx->request.api_key->resources.nelts; i++) {
        if (allowed[i] == ctx->request.resource) {
            break;
        }
    }

    if (i == ctx->request.api_key->resources.nelts) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_FORBIDDEN,
                                   "api_key_resource_not_authorized",
                                   "This API key may not call this resource");
    }

    if (ctx->request.resource->unavailable.len) {
        return ngx_http_vmx_unavailable(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "resource_unavailable", "resource",
                                        &ctx->request.resource->name,
                                        &ctx->request.resource->unavailable);
    }

    /* a batch's pool replaces the resource's own for admission */
    ctx->request.pool = ctx->request.resource->pool;

    if (ctx->request.batch_pool.len) {
        ctx->request.pool = ngx_http_vmx_pools_find(ctx->request.snapshot,
                                                    ctx->request.api_key->env,
                                                    &ctx->request.batch_pool);

        if (ctx->request.pool == NULL) {
            msg.len = sizeof("The pool \"\" is not defined in this "
                             "environment") - 1 + ctx->request.batch_pool.len;
            msg.data = ngx_pnalloc(r->pool, msg.len);
            if (msg.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_sprintf(msg.data, "The pool \"%V\" is not defined in this "
                        "environment", &ctx->request.batch_pool);

            return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request", &msg);
        }
    }

    rc = ngx_http_vmx_estimate(r, ctx);

    if (rc == NGX_AGAIN) {
        r->write_event_handler = ngx_http_vmx_counted;
        return NGX_HTTP_VMX_WAIT;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_vmx_route_request(r, ctx);
}


/* a chat request's messages, and whether it is streamed */

static ngx_int_t
ngx_http_vmx_chat_check(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    size_t       len;
    vmx_json_t  *messages, *stream, *options, *item;

    messages = vmx_json_get(ctx->request.body, "messages");
    if (messages == NULL || messages->type != VMX_JSON_ARRAY
        || messages->count == 0)
    {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "'messages' is required: a non-empty "
                                   "array of messages");
    }

    for (item = messages->child; item; item = item->next) {
        if (item->type != VMX_JSON_OBJECT
            || vmx_json_get_str(item, "role", &len) == NULL)
        {
            return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "Every message must be an object "
                                       "with a 'role'");
        }
    }

    stream = vmx_json_get(ctx->request.body, "stream");
    ctx->request.stream = (stream != NULL && stream->type == VMX_JSON_TRUE);

    /* a stream is cut with its client: a batch item's answer must not be */
    if (ctx->request.stream && ctx->request.batch_id.len) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "A batch item cannot stream");
    }

    options = vmx_json_get(ctx->request.body, "stream_options");
    if (options != NULL) {
        item = vmx_json_get(options, "include_usage");
        ctx->request.include_usage = (item != NULL
                                      && item->type == VMX_JSON_TRUE);
    }

    return NGX_HTTP_VMX_GO_ON;
}


/* an embeddings request's inputs and options, as lib/vmx_embeddings.c
   checks them: a 400 names the member at fault */

static ngx_int_t
ngx_http_vmx_embeddings_check(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_str_t              msg;
    vmx_translate_ctx_t    tc;
    vmx_translate_error_t  err;

    ctx->request.embeddings = ngx_palloc(r->pool,
                                         sizeof(vmx_embeddings_request_t));
    if (ctx->request.embeddings == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&tc, sizeof(vmx_translate_ctx_t));
    tc.body = ctx->request.body;
    tc.alloc = ngx_http_vmx_json_alloc;
    tc.alloc_ctx = r->pool;

    if (vmx_embeddings_parse(&tc, ctx->request.embeddings, &err) == 0) {
        return NGX_HTTP_VMX_GO_ON;
    }

    msg.data = (u_char *) err.message;
    msg.len = ngx_strlen(err.message);

    return ngx_http_vmx_send_error_param(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", &msg, err.param);
}


/* a thread counted the prompt tokens of a large body: the request goes on */

static void
ngx_http_vmx_counted(ngx_http_request_t *r)
{
    ngx_http_vmx_ctx_t  *ctx;

    if (r->aio) {
        /* a write event of the connection while the thread still counts */
        return;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    ngx_http_vmx_chat_continue(r, ngx_http_vmx_route_request(r, ctx));
}


/*
 * Routes the request and plans its attempts, then admits it; returns what
 * ngx_http_vmx_prepare() does.
 */

static ngx_int_t
ngx_http_vmx_route_request(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    uint64_t                started;
    ngx_int_t               rc;
    vmx_json_t             *vmx, *secondary_index;
    ngx_http_vmx_target_t  *routed;

    /* routing: a client's choice of a secondary model overrides it */

    secondary_index = NULL;

    vmx = vmx_json_get(ctx->request.body, "vmx");
    if (vmx != NULL && vmx->type == VMX_JSON_OBJECT) {
        secondary_index = vmx_json_get(vmx, "secondaryModelIndex");
        if (secondary_index && secondary_index->type == VMX_JSON_NULL) {
            secondary_index = NULL;
        }
    }

    started = ngx_http_vmx_usec();
    routed = NULL;

    if (ctx->request.resource->rules && secondary_index == NULL) {
        rc = ngx_http_vmx_routing(r, ctx, &routed);
        if (rc != NGX_HTTP_VMX_GO_ON) {
            return rc;
        }
    }

    rc = ngx_http_vmx_plan(r, ctx, secondary_index, routed);

    ctx->plan.routing_usec = ngx_http_vmx_usec() - started;

    if (rc != NGX_HTTP_VMX_GO_ON) {
        return rc;
    }

    return ngx_http_vmx_chat_admit(r, ctx);
}


/*
 * The resource's routing rules decide where the request goes:
 * NGX_HTTP_VMX_GO_ON (with *routed set when a group chose a model), or what
 * to finalize the request with when a group blocks it.
 */

static ngx_int_t
ngx_http_vmx_routing(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_target_t **routed)
{
    ngx_str_t                   id, msg;
    ngx_time_t                 *tp;
    vmx_rules_input_t           in;
    vmx_rules_result_t          out;
    vmx_rules_target_t          primary;
    ngx_http_vmx_event_t       *ev;
    ngx_http_vmx_target_t      *target;
    ngx_http_vmx_resource_t    *res;
    ngx_http_vmx_connection_t  *conn;

    res = ctx->request.resource;

    if (vmx_rules_input_init(&in, ctx->request.body, ngx_http_vmx_json_alloc,
                             r->pool)
        != 0)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    primary.provider.data = (char *) res->model.provider.data;
    primary.provider.len = res->model.provider.len;
    primary.model.data = (char *) res->model.model.data;
    primary.model.len = res->model.model.len;
    primary.connection_id.data = (char *) res->model.connection->id.data;
    primary.connection_id.len = res->model.connection->id.len;

    in.tokens_input = ctx->request.estimate;
    in.api_key_id.data = (char *) ctx->request.api_key->id.data;
    in.api_key_id.len = ctx->request.api_key->id.len;
    in.api_key_labels = ctx->request.api_key->labels;
    in.source_ip.data = (char *) r->connection->addr_text.data;
    in.source_ip.len = r->connection->addr_text.len;
    in.error_rate = ngx_http_vmx_rules_error_rate;
    in.error_rate_ctx = r;
    in.random = vmx_rules_random;
    in.random_ctx = NULL;
    in.scratch_size = VMX_RULES_SCRATCH_MIN;
    in.scratch = ngx_palloc(r->pool, in.scratch_size);
    in.primary = &primary;

    if (in.scratch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!vmx_rules_eval(res->rules, &in, &out)) {
        return NGX_HTTP_VMX_GO_ON;
    }

    if (out.action == VMX_RULES_BLOCK) {
        /* the audit names the resource's primary model */
        ctx->attempt.target = &res->model;

        msg.data = ngx_pnalloc(r->pool, 64 + out.group_id.len);
        if (msg.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        msg.len = ngx_sprintf(msg.data, "The request was blocked by the "
                              "routing rule \"%*s\" of the resource",
                              out.group_id.len, out.group_id.data)
                  - msg.data;

        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "blocked_by_routing_condition", &msg);
    }

    if (out.target == NULL) {
        return NGX_HTTP_VMX_GO_ON;
    }

    /* the routed model, on a connection of the environment */
    id.data = (u_char *) out.target->connection_id.data;
    id.len = out.target->connection_id.len;

    conn = ngx_http_vmx_index_find(&ctx->request.snapshot->connections, id.data,
                                   id.len);

    if (conn == NULL || conn->env != res->env) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: routing of resource \"%V\" names connection "
                      "\"%V\" that is not in its environment", &res->name,
                      &id);
        return NGX_HTTP_VMX_GO_ON;
    }

    target = ngx_palloc(r->pool, sizeof(ngx_http_vmx_target_t));
    if (target == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    target->provider.data = (u_char *) out.target->provider.data;
    target->provider.len = out.target->provider.len;
    target->model.data = (u_char *) out.target->model.data;
    target->model.len = out.target->model.len;
    target->connection = conn;
    target->prices = out.target->data;

    *routed = target;

    /* the routing event of the request */

    ev = ngx_http_vmx_event_add(r, ctx);

    if (ev != NULL) {
        tp = ngx_timeofday();
        ev->routing = 1;
        ev->provider = target->provider;
        ev->model = target->model;
        ev->connection_id = conn->id;
        ev->reason.data = (u_char *) out.group_id.data;
        ev->reason.len = out.group_id.len;
        ev->original_provider = res->model.provider;
        ev->original_model = res->model.model;
        ev->time = (ngx_msec_t) (tp->sec * 1000 + tp->msec);
    }

    return NGX_HTTP_VMX_GO_ON;
}


static double
ngx_http_vmx_rules_error_rate(void *data, unsigned minutes, unsigned status)
{
    ngx_http_request_t  *r = data;

    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    return ngx_http_vmx_error_rate(r, &ctx->request.resource->model, minutes,
                                   (ngx_int_t) status);
}


/*
 * The attempts: the primary model (or the secondary model the client chose),
 * then, with useFallback, the fallback models.  A model that its connection
 * does not allow is skipped.  Returns NGX_HTTP_VMX_GO_ON when there is a
 * plan.
 */

static ngx_int_t
ngx_http_vmx_plan(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_json_t *secondary_index, ngx_http_vmx_target_t *routed)
{
    ngx_str_t                  *models;
    ngx_uint_t                  i, j, n;
    ngx_http_vmx_target_t      *first, *fallbacks, *target;
    ngx_http_vmx_resource_t    *res;
    ngx_http_vmx_connection_t  *unavailable;

    res = ctx->request.resource;
    unavailable = NULL;
    first = routed ? routed : &res->model;

    if (secondary_index) {
        if (!secondary_index->is_int || secondary_index->integer < 0
            || (uint64_t) secondary_index->integer >= res->secondaries.nelts)
        {
            return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "'vmx.secondaryModelIndex' does not "
                                       "name a secondary model of this "
                                       "resource");
        }

        first = (ngx_http_vmx_target_t *) res->secondaries.elts
                + secondary_index->integer;
    }

    n = 1 + (res->use_fallback ? res->fallbacks.nelts : 0);

    ctx->plan.targets = ngx_palloc(r->pool,
                                   n * sizeof(ngx_http_vmx_target_t *));
    if (ctx->plan.targets == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fallbacks = res->fallbacks.elts;

    for (i = 0; i < n; i++) {
        target = (i == 0) ? first : &fallbacks[i - 1];

        /* the configuration could not give it a way to its provider */
        if (target->connection->unavailable.len) {
            if (unavailable == NULL) {
                unavailable = target->connection;
            }
            continue;
        }

        if (target->connection->allowed_models.nelts) {
            models = target->connection->allowed_models.elts;

            for (j = 0; j < target->connection->allowed_models.nelts; j++) {
                if (models[j].len == target->model.len
                    && ngx_strncmp(models[j].data, target->model.data,
                                   target->model.len) == 0)
                {
                    break;
                }
            }

            if (j == target->connection->allowed_models.nelts) {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "vmx: model \"%V\" is not allowed on connection "
                              "\"%V\", skipped", &target->model,
                              &target->connection->id);
                continue;
            }
        }

        ctx->plan.targets[ctx->plan.ntargets++] = target;
    }

    if (ctx->plan.ntargets == 0 && unavailable) {
        ctx->attempt.target = first;
        return ngx_http_vmx_unavailable(r, ctx, NGX_HTTP_BAD_GATEWAY,
                                        "provider_unavailable", "connection",
                                        &unavailable->id,
                                        &unavailable->unavailable);
    }

    if (ctx->plan.ntargets == 0) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_not_allowed",
                                   "No model of this resource is allowed on "
                                   "its connection");
    }

    return NGX_HTTP_VMX_GO_ON;
}


ngx_http_vmx_ctx_t *
ngx_http_vmx_create_ctx(ngx_http_request_t *r)
{
    u_char               bytes[32];
    uint64_t             ms;
    ngx_uint_t           i;
    ngx_time_t          *tp;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_vmx_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request.start_usec = ngx_http_vmx_usec();
    vmx_usage_init(&ctx->attempt.usage);

    /*
     * the request id and a trace id, from the worker's generator; the id
     * is a UUID v7 (RFC 9562: unix milliseconds first), so the audit's
     * primary key grows at its end rather than at random pages
     */
    ngx_http_vmx_random_bytes(bytes, sizeof(bytes));

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    for (i = 0; i < 6; i++) {
        bytes[i] = (u_char) (ms >> (40 - 8 * i));
    }

    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;

    ngx_sprintf(ctx->request.request_id, "%*xs-%*xs-%*xs-%*xs-%*xs", 4, bytes,
                2, bytes + 4, 2, bytes + 6, 2, bytes + 8, 6, bytes + 10);

    ngx_http_vmx_trace_context(r, ctx, bytes + 16);

    ngx_http_set_ctx(r, ctx, ngx_http_vmx_module);

    return ctx;
}


/*
 * W3C trace context: a valid "traceparent: 00-<trace>-<parent>-<flags>"
 * of the client makes this request a span of its trace; otherwise the
 * request starts a trace.  Every provider attempt is a child span.
 */

static void
ngx_http_vmx_trace_context(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *random)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_http_vmx_header_in(r, "traceparent");
    p = h ? h->value.data : NULL;

    if (h && h->value.len == 55 && p[0] == '0' && p[1] == '0' && p[2] == '-'
        && p[35] == '-' && p[52] == '-'
        && ngx_http_vmx_is_hex(p + 3, 32) && ngx_http_vmx_is_hex(p + 36, 16)
        && ngx_http_vmx_is_hex(p + 53, 2))
    {
        ngx_memcpy(ctx->request.trace_id, p + 3, 32);
        ngx_memcpy(ctx->request.parent_id, p + 36, 16);
        ctx->request.has_parent = 1;
    }

    if (!ctx->request.has_parent) {
        ngx_hex_dump(ctx->request.trace_id, random, 16);
    }

    ngx_http_vmx_span_id(ctx->request.span_id);
    ngx_http_vmx_span_id(ctx->request.first_span);
}


static ngx_flag_t
ngx_http_vmx_is_hex(u_char *p, size_t n)
{
    ngx_flag_t  zero;

    /* lowercase hex, and an all-zero id is invalid */
    for (zero = 1; n--; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return 0;
        }

        zero &= (*p == '0');
    }

    return !zero;
}


/* errors in OpenAI's envelope */

static ngx_int_t
ngx_http_vmx_reject(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *message)
{
    ngx_int_t  rc;
    ngx_str_t  msg;

    /* a body not read yet is discarded first, keeping the connection sane */
    if (r->request_body == NULL) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    msg.data = (u_char *) message;
    msg.len = ngx_strlen(message);

    return ngx_http_vmx_send_error(r, ctx, status, code, &msg);
}


/* an object the configuration left unavailable: the reason, for the client
 * and the audit record */

static ngx_int_t
ngx_http_vmx_unavailable(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *what, ngx_str_t *name,
    ngx_str_t *reason)
{
    ngx_str_t  msg;

    msg.len = sizeof("The  \"\" cannot serve: ") - 1 + ngx_strlen(what)
              + name->len + reason->len;
    msg.data = ngx_pnalloc(r->pool, msg.len);
    if (msg.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    msg.len = ngx_sprintf(msg.data, "The %s \"%V\" cannot serve: %V", what,
                          name, reason)
              - msg.data;

    return ngx_http_vmx_send_error(r, ctx, status, code, &msg);
}


/*
 * 400 for a key the body has twice: the message names the key and its
 * path, "param" is the path.  Both are cut for the message (a key may be
 * as long as the body), never inside a UTF-8 character.
 */

static ngx_int_t
ngx_http_vmx_duplicate_key(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_json_duplicate_t *dup)
{
    u_char             *p;
    size_t              n;
    ngx_str_t           msg, key, path;
    const vmx_json_t   *m;

    m = dup->member;

    n = vmx_json_escape(NULL, m->key, m->key_len);

    key.data = ngx_pnalloc(r->pool, n);
    if (key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    key.len = vmx_json_escape((char *) key.data, m->key, m->key_len);
    key.len = ngx_http_vmx_utf8_cut(key.data, key.len, 64);

    path.data = (u_char *) dup->path;
    path.len = ngx_http_vmx_utf8_cut(path.data, dup->path_len, 256);

    msg.data = ngx_pnalloc(r->pool, 128 + key.len + path.len);
    if (msg.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(msg.data, "duplicate key \"%V%s\"", &key,
                    key.len < n ? "..." : "");

    /* a top-level key is its own path */
    if (dup->path_len != m->key_len
        || ngx_strncmp(dup->path, m->key, m->key_len) != 0)
    {
        p = ngx_sprintf(p, " at %V%s", &path,
                        path.len < dup->path_len ? "..." : "");
    }

    p = ngx_sprintf(p, " in the request body");
    msg.len = p - msg.data;

    return ngx_http_vmx_send_error_param(r, ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request", &msg, dup->path);
}


/* at most max bytes of s, not ending inside a UTF-8 character */

static size_t
ngx_http_vmx_utf8_cut(u_char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }

    len = max;

    while (len && (s[len] & 0xc0) == 0x80) {
        len--;
    }

    return len;
}
