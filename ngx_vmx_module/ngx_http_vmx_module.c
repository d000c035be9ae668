/*
 * VM-X gateway: the data plane.
 *
 * One endpoint in front of many AI providers: the "vmx_gateway" location
 * answers OpenAI's chat-completions API, authenticates the API key against
 * the snapshot pushed by the control plane, finds the AI resource, and hands
 * the request to the provider attempts of ngx_http_vmx_upstream.c.  Every
 * answer of the location, nginx's own error pages included, leaves in
 * OpenAI's error envelope with the x-vmx-* headers.
 */

#include "ngx_http_vmx_module.h"
#include "vmx_spool.h"

#include <openssl/sha.h>
#include <sodium.h>


typedef enum {
    NGX_HTTP_VMX_ROUTE_NONE = 0,
    NGX_HTTP_VMX_ROUTE_CHAT,            /* /v1/chat/completions */
    NGX_HTTP_VMX_ROUTE_SCOPED_CHAT,     /* /v1/completion/{ws}/{env}/... */
    NGX_HTTP_VMX_ROUTE_MODELS           /* /v1/models */
} ngx_http_vmx_route_e;


typedef enum {
    NGX_HTTP_VMX_VAR_REQUEST_ID = 0,
    NGX_HTTP_VMX_VAR_RESOURCE,
    NGX_HTTP_VMX_VAR_PROVIDER,
    NGX_HTTP_VMX_VAR_MODEL,
    NGX_HTTP_VMX_VAR_CONNECTION_ID,
    NGX_HTTP_VMX_VAR_API_KEY_ID,
    NGX_HTTP_VMX_VAR_WORKSPACE_ID,
    NGX_HTTP_VMX_VAR_ENVIRONMENT_ID,
    NGX_HTTP_VMX_VAR_CORRELATION_ID,
    NGX_HTTP_VMX_VAR_ERROR_CODE,
    NGX_HTTP_VMX_VAR_PROMPT_TOKENS,
    NGX_HTTP_VMX_VAR_COMPLETION_TOKENS,
    NGX_HTTP_VMX_VAR_TOTAL_TOKENS,
    NGX_HTTP_VMX_VAR_ATTEMPTS
} ngx_http_vmx_var_e;


static ngx_int_t ngx_http_vmx_gateway_handler(ngx_http_request_t *r);
static ngx_flag_t ngx_http_vmx_gateway_request(ngx_http_request_t *r);
static void ngx_http_vmx_chat_body_handler(ngx_http_request_t *r);
static void ngx_http_vmx_chat_resume(ngx_event_t *ev);
static void ngx_http_vmx_chat_continue(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_http_vmx_chat_admit(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_chat_prepare(ngx_http_request_t *r,
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
static ngx_int_t ngx_http_vmx_models(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_http_vmx_ctx_t *ngx_http_vmx_create_ctx(ngx_http_request_t *r);
static void ngx_http_vmx_trace_context(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *random);
static ngx_flag_t ngx_http_vmx_is_hex(u_char *p, size_t n);
static ngx_int_t ngx_http_vmx_duplicate_key(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_json_duplicate_t *dup);
static ngx_int_t ngx_http_vmx_send_error_param(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    ngx_str_t *message, const char *param);
static size_t ngx_http_vmx_utf8_cut(u_char *s, size_t len, size_t max);
static ngx_int_t ngx_http_vmx_reject(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message);
static ngx_int_t ngx_http_vmx_unavailable(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *what, ngx_str_t *name, ngx_str_t *reason);

static ngx_int_t ngx_http_vmx_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_vmx_error_page(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_add_headers(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_vmx_ratelimit_headers(ngx_http_request_t *r,
    ngx_http_vmx_ratelimit_t *rl, const char *what);
static ngx_int_t ngx_http_vmx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_vmx_log_handler(ngx_http_request_t *r);
static char *ngx_http_vmx_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_vmx_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_vmx_init(ngx_conf_t *cf);
static void *ngx_http_vmx_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_vmx_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_vmx_init_process(ngx_cycle_t *cycle);
static void *ngx_http_vmx_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_vmx_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_vmx_gateway(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vmx_config_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_num_bounds_t  ngx_http_vmx_spool_warn_bounds = {
    ngx_conf_check_num_bounds, 1, 100
};


static ngx_command_t  ngx_http_vmx_commands[] = {

    { ngx_string("vmx_config_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vmx_config_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_stats_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, stats_zone.size),
      NULL },

    { ngx_string("vmx_health_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, health_zone.size),
      NULL },

    { ngx_string("vmx_capacity_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, capacity_zone.size),
      NULL },

    { ngx_string("vmx_pools_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, pools_zone.size),
      NULL },

    { ngx_string("vmx_limits_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vmx_limits_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_vmx_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_config_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, file),
      NULL },

    { ngx_string("vmx_config_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vmx_config_token_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_audit_spool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_vmx_audit_spool,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_audit_payload_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, payload_max),
      NULL },

    { ngx_string("vmx_audit_spool_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, spool_max),
      NULL },

    { ngx_string("vmx_audit_spool_warn"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, spool_warn),
      &ngx_http_vmx_spool_warn_bounds },

    { ngx_string("vmx_tokenizer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vmx_tokenizer,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_keepalive"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, keepalive),
      NULL },

    { ngx_string("vmx_keepalive_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, keepalive_timeout),
      NULL },

    { ngx_string("vmx_keepalive_requests"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vmx_main_conf_t, keepalive_requests),
      NULL },

    { ngx_string("vmx_gateway"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_vmx_gateway,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_config_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_vmx_config_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_vmx_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vmx_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("vmx_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, upstream.ssl_verify),
      NULL },

    { ngx_string("vmx_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, upstream.connect_timeout),
      NULL },

    { ngx_string("vmx_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, upstream.send_timeout),
      NULL },

    { ngx_string("vmx_first_byte_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, first_byte_timeout),
      NULL },

    { ngx_string("vmx_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("vmx_total_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, total_timeout),
      NULL },

    { ngx_string("vmx_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, upstream.buffer_size),
      NULL },

    { ngx_string("vmx_max_response_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, max_response),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_vmx_module_ctx = {
    ngx_http_vmx_add_variables,            /* preconfiguration */
    ngx_http_vmx_init,                     /* postconfiguration */

    ngx_http_vmx_create_main_conf,         /* create main configuration */
    ngx_http_vmx_init_main_conf,           /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_vmx_create_loc_conf,          /* create location configuration */
    ngx_http_vmx_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_vmx_module = {
    NGX_MODULE_V1,
    &ngx_http_vmx_module_ctx,              /* module context */
    ngx_http_vmx_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_vmx_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_vmx_audit_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_vmx_vars[] = {

    { ngx_string("vmx_request_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_resource"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_RESOURCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_provider"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_PROVIDER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_model"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_connection_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_CONNECTION_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_api_key_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_API_KEY_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_workspace_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_WORKSPACE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_environment_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_ENVIRONMENT_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_correlation_id"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_CORRELATION_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_error_code"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_ERROR_CODE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_prompt_tokens"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_PROMPT_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_completion_tokens"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_COMPLETION_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_total_tokens"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_TOTAL_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vmx_attempts"), NULL, ngx_http_vmx_variable,
      NGX_HTTP_VMX_VAR_ATTEMPTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* the gateway */

static ngx_int_t
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
                                   "/v1/chat/completions and /v1/models");
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
        || (route == NGX_HTTP_VMX_ROUTE_SCOPED_CHAT
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

    rc = ngx_http_read_client_request_body(r, ngx_http_vmx_chat_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_http_vmx_route_e
ngx_http_vmx_route(ngx_http_request_t *r, ngx_str_t *workspace_id,
    ngx_str_t *environment_id)
{
    u_char  *p, *last, *slash;

    static ngx_str_t  chat = ngx_string("/v1/chat/completions");
    static ngx_str_t  models = ngx_string("/v1/models");
    static ngx_str_t  scoped = ngx_string("/v1/completion/");
    static ngx_str_t  scoped_tail = ngx_string("/chat/completions");

    if (r->uri.len == chat.len
        && ngx_strncmp(r->uri.data, chat.data, chat.len) == 0)
    {
        return NGX_HTTP_VMX_ROUTE_CHAT;
    }

    if (r->uri.len == models.len
        && ngx_strncmp(r->uri.data, models.data, models.len) == 0)
    {
        return NGX_HTTP_VMX_ROUTE_MODELS;
    }

    /* /v1/completion/{workspaceId}/{environmentId}/chat/completions */

    if (r->uri.len <= scoped.len + scoped_tail.len
        || ngx_strncmp(r->uri.data, scoped.data, scoped.len) != 0)
    {
        return NGX_HTTP_VMX_ROUTE_NONE;
    }

    p = r->uri.data + scoped.len;
    last = r->uri.data + r->uri.len - scoped_tail.len;

    if (ngx_strncmp(last, scoped_tail.data, scoped_tail.len) != 0) {
        return NGX_HTTP_VMX_ROUTE_NONE;
    }

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

    return NGX_HTTP_VMX_ROUTE_SCOPED_CHAT;
}


/* the key of the request, or NULL; *expired tells a key that expired */

static ngx_http_vmx_api_key_t *
ngx_http_vmx_authenticate(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t *expired)
{
    u_char                   digest[SHA256_DIGEST_LENGTH];
    ngx_str_t                key;
    ngx_uint_t               i;
    ngx_list_part_t         *part;
    ngx_table_elt_t         *h;
    ngx_http_vmx_api_key_t  *api_key;

    *expired = 0;

    ngx_str_null(&key);

    if (r->headers_in.authorization) {
        key = r->headers_in.authorization->value;

        if (key.len > 7 && ngx_strncasecmp(key.data, (u_char *) "Bearer ", 7)
                           == 0)
        {
            key.data += 7;
            key.len -= 7;

        } else {
            key.len = 0;
        }
    }

    if (key.len == 0) {
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {
            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len == sizeof("x-api-key") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "x-api-key",
                                   sizeof("x-api-key") - 1) == 0)
            {
                key = h[i].value;
                break;
            }
        }
    }

    while (key.len && key.data[key.len - 1] == ' ') {
        key.len--;
    }

    if (key.len == 0 || ctx->request.snapshot == NULL) {
        return NULL;
    }

    SHA256(key.data, key.len, digest);

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
ngx_http_vmx_chat_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    rc = ngx_http_vmx_chat_prepare(r, ctx);

    ngx_http_vmx_chat_continue(r, rc);
}


/* the cluster counters answered: the admission is decided now */

static void
ngx_http_vmx_chat_resume(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_vmx_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    ngx_http_set_log_request(c->log, r);

    /* the grants came: the client's reads are not watched any more */
    r->read_event_handler = ngx_http_block_reading;

    ngx_http_vmx_chat_continue(r, ngx_http_vmx_chat_admit(r, ctx));

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_vmx_chat_continue(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_vmx_ctx_t  *ctx;

    if (rc == NGX_AGAIN) {
        /* suspended until the cluster counters answer */
        return;
    }

    if (rc == NGX_DECLINED) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

        rc = ngx_http_vmx_upstream_start(r, ctx);

        if (rc == NGX_OK) {
            return;
        }
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * Parses and checks the request, finds the resource and plans the attempts.
 * Returns NGX_DECLINED when the request goes on to the providers, or what to
 * finalize the request with once it has been answered.
 */

static ngx_int_t
ngx_http_vmx_chat_prepare(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char                    *p;
    size_t                     len;
    uint64_t                   started;
    ngx_int_t                  rc;
    ngx_str_t                  msg, body;
    ngx_uint_t                 i;
    vmx_json_t                *messages, *model, *stream, *options, *vmx;
    vmx_json_t                *item, *secondary_index;
    vmx_json_error_t           jerr;
    vmx_json_duplicate_t       dup;
    ngx_http_vmx_target_t     *routed;
    ngx_http_vmx_resource_t  **allowed;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "The request has no body: send a JSON "
                                   "chat-completions request");
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

    model = vmx_json_get(ctx->request.body, "model");
    if (model == NULL || model->type != VMX_JSON_STRING || model->str_len == 0)
    {
        return ngx_http_vmx_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request",
                                   "'model' is required: the name of an AI "
                                   "resource");
    }

    stream = vmx_json_get(ctx->request.body, "stream");
    ctx->request.stream = (stream != NULL && stream->type == VMX_JSON_TRUE);

    options = vmx_json_get(ctx->request.body, "stream_options");
    if (options != NULL) {
        item = vmx_json_get(options, "include_usage");
        ctx->request.include_usage = (item != NULL
                                      && item->type == VMX_JSON_TRUE);
    }

    secondary_index = NULL;

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

        secondary_index = vmx_json_get(vmx, "secondaryModelIndex");
        if (secondary_index && secondary_index->type == VMX_JSON_NULL) {
            secondary_index = NULL;
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

    ctx->request.estimate = ngx_http_vmx_estimate(r, ctx->request.body);

    /* routing: a client's choice of a secondary model overrides it */

    started = ngx_http_vmx_usec();
    routed = NULL;

    if (ctx->request.resource->rules && secondary_index == NULL) {
        rc = ngx_http_vmx_routing(r, ctx, &routed);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    rc = ngx_http_vmx_plan(r, ctx, secondary_index, routed);

    ctx->plan.routing_usec = ngx_http_vmx_usec() - started;

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_http_vmx_chat_admit(r, ctx);
}


/*
 * The gate: the key's and the resource's own capacity, with the
 * connections of the plan checked ahead in a cluster.  Returns what
 * ngx_http_vmx_chat_prepare() does, or NGX_AGAIN while the request waits
 * for the cluster counters.
 */

static ngx_int_t
ngx_http_vmx_chat_admit(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    uint64_t                    started;
    ngx_int_t                   rc;
    ngx_uint_t                  i, j, n;
    ngx_http_vmx_admit_e        admit;
    ngx_http_vmx_scope_t       *scopes;
    ngx_http_vmx_connection_t  *conn;
    ngx_http_vmx_main_conf_t   *mcf;

    started = ngx_http_vmx_usec();

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    scopes = ngx_pcalloc(r->pool, (2 + (mcf->redis ? ctx->plan.ntargets : 0))
                                  * sizeof(ngx_http_vmx_scope_t));
    if (scopes == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    scopes[0].kind = 'k';
    scopes[0].level = "API key";
    scopes[0].id = ctx->request.api_key->id;
    scopes[0].name = ctx->request.api_key->name;
    scopes[0].limits = &ctx->request.api_key->limits;

    scopes[1].kind = 'r';
    scopes[1].level = "Resource";
    scopes[1].id = ctx->request.resource->id;
    scopes[1].name = ctx->request.resource->name;
    scopes[1].limits = &ctx->request.resource->limits;

    /* the attempts take connections' capacity synchronously in peer.get */

    for (n = 2, i = 0; mcf->redis && i < ctx->plan.ntargets; i++) {
        conn = ctx->plan.targets[i]->connection;

        for (j = 2; j < n; j++) {
            if (scopes[j].limits == &conn->limits) {
                break;
            }
        }

        if (j == n) {
            scopes[n].kind = 'c';
            scopes[n].level = "Connection";
            scopes[n].id = conn->id;
            scopes[n].name = conn->name;
            scopes[n].limits = &conn->limits;
            scopes[n].ahead = 1;
            n++;
        }
    }

    ctx->admission.limits_event.handler = ngx_http_vmx_chat_resume;
    ctx->admission.limits_event.data = r;
    ctx->admission.limits_event.log = r->connection->log;

    admit = ngx_http_vmx_limits_admit(r, ctx, scopes, n, -1);

    ctx->admission.gate_usec += ngx_http_vmx_usec() - started;

    if (admit == NGX_HTTP_VMX_ADMIT_WAIT) {
        return NGX_AGAIN;
    }

    /* a refusal names the model the request would have gone to */
    ctx->attempt.target = ctx->plan.targets[0];

    switch (admit) {

    case NGX_HTTP_VMX_ADMIT_PASS:
        break;

    case NGX_HTTP_VMX_ADMIT_DENY:
        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                       "resource_exhausted",
                                       &ctx->attempt.failure);

    default: /* NGX_HTTP_VMX_ADMIT_ERROR */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* prioritization: the share of the resource's pool */

    rc = ngx_http_vmx_pools_gate(r, ctx);

    if (rc == NGX_DECLINED) {
        /* a denied request consumes no tokens of its key and resource */
        if (ctx->admission.nreservations) {
            ngx_http_vmx_limits_release(r, ctx, NGX_HTTP_VMX_ALL_ATTEMPTS);
        }

        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                       "prioritization_gate_denied",
                                       &ctx->attempt.failure);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A request the first model's provider cannot express is the client's
     * error: it gets 400 now rather than a failed attempt later.
     */

    ngx_memcpy(ngx_cpymem(ctx->request.completion_id, "chatcmpl-",
                          sizeof("chatcmpl-") - 1),
               ctx->request.request_id, sizeof(ctx->request.request_id));

    /* the first attempt's stage starts here, with its request */
    ngx_http_vmx_attempt_reset(ctx, ctx->plan.targets[0]);

    rc = ngx_http_vmx_provider_request(r, ctx, &ctx->plan.first_request);

    if (rc == NGX_DECLINED) {
        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       &ctx->attempt.failure);
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NGX_OK, or an attempt that fails when its turn comes */
    return NGX_DECLINED;
}


/*
 * The resource's routing rules decide where the request goes: NGX_DECLINED
 * to go on (with *routed set when a group chose a model), or what to
 * finalize the request with when a group blocks it.
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
        return NGX_DECLINED;
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
        return NGX_DECLINED;
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
        return NGX_DECLINED;
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

    *routed = target;

    /* the routing event of the request */

    if (ctx->plan.nevents < NGX_HTTP_VMX_MAX_EVENTS) {
        ev = &ctx->plan.events[ctx->plan.nevents++];
        ngx_memzero(ev, sizeof(ngx_http_vmx_event_t));

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

    return NGX_DECLINED;
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
 * does not allow is skipped.  Returns NGX_DECLINED when there is a plan.
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

    return NGX_DECLINED;
}


static ngx_http_vmx_ctx_t *
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
    u_char            *p;
    ngx_uint_t         i;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("traceparent") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "traceparent",
                               sizeof("traceparent") - 1) != 0)
        {
            continue;
        }

        p = h[i].value.data;

        if (h[i].value.len == 55 && p[0] == '0' && p[1] == '0' && p[2] == '-'
            && p[35] == '-' && p[52] == '-'
            && ngx_http_vmx_is_hex(p + 3, 32) && ngx_http_vmx_is_hex(p + 36, 16)
            && ngx_http_vmx_is_hex(p + 53, 2))
        {
            ngx_memcpy(ctx->request.trace_id, p + 3, 32);
            ngx_memcpy(ctx->request.parent_id, p + 36, 16);
            ctx->request.has_parent = 1;
        }

        break;
    }

    if (!ctx->request.has_parent) {
        ngx_hex_dump(ctx->request.trace_id, random, 16);
    }

    ngx_http_vmx_span_id(ctx->request.span_id);
    ngx_http_vmx_span_id(ctx->request.first_span);
}


/*
 * Random bytes without a system call: ChaCha20 under a key each worker
 * draws once from the kernel (init_process, after the fork), over a
 * counter as the nonce.  Ids must be unique across workers and nodes and
 * hard to guess; a request never waits on getrandom() for them.
 */

static u_char    ngx_http_vmx_random_key[crypto_stream_chacha20_ietf_KEYBYTES];
static uint64_t  ngx_http_vmx_random_counter;


static void
ngx_http_vmx_random_init(void)
{
    randombytes_buf(ngx_http_vmx_random_key, sizeof(ngx_http_vmx_random_key));
    ngx_http_vmx_random_counter = 0;
}


void
ngx_http_vmx_random_bytes(u_char *buf, size_t len)
{
    u_char  nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

    ngx_memzero(nonce, sizeof(nonce));
    ngx_http_vmx_random_counter++;
    ngx_memcpy(nonce, &ngx_http_vmx_random_counter,
               sizeof(ngx_http_vmx_random_counter));

    crypto_stream_chacha20_ietf(buf, len, nonce, ngx_http_vmx_random_key);
}


void
ngx_http_vmx_span_id(u_char *id)
{
    uint64_t  v;

    /* span ids must be unique, not secret: the worker's generator serves */
    do {
        v = ((uint64_t) ngx_random() << 33) ^ ((uint64_t) ngx_random() << 11)
            ^ (uint64_t) ngx_random();
    } while (v == 0);

    ngx_sprintf(id, "%016xL", v);
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


ngx_int_t
ngx_http_vmx_send_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, const char *code, ngx_str_t *message)
{
    return ngx_http_vmx_send_error_param(r, ctx, status, code, message, NULL);
}


static ngx_int_t
ngx_http_vmx_send_error_param(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, const char *code, ngx_str_t *message,
    const char *param)
{
    u_char      *p, *start;
    vmx_buf_t    out;
    const char  *type;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        type = "rate_limit_error";

    } else if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        type = "server_error";

    } else {
        type = "invalid_request_error";
    }

    vmx_buf_init(&out, ngx_http_vmx_json_alloc, r->pool,
                 128 + message->len + (param ? ngx_strlen(param) : 0));
    vmx_openai_error(&out, (char *) message->data, message->len, type, code,
                     param);

    if (vmx_buf_failed(&out)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    start = (u_char *) out.data;
    p = start + out.len;

    if (ctx) {
        ctx->attempt.own_response = 1;
        ctx->response.error_code.data = (u_char *) code;
        ctx->response.error_code.len = ngx_strlen(code);
        ctx->response.error_message = *message;
        ngx_http_vmx_audit_capture(r, ctx, start, p - start);
    }

    return ngx_http_vmx_send_json(r, status, start, p - start);
}


ngx_int_t
ngx_http_vmx_send_json(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len)
{
    ngx_int_t  rc;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_vmx_send_body(r, data, len);
}


ngx_int_t
ngx_http_vmx_send_body(ngx_http_request_t *r, u_char *data, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* nginx's own error pages, turned into OpenAI's envelope */

static ngx_int_t
ngx_http_vmx_header_filter(ngx_http_request_t *r)
{
    ngx_time_t               *tp;
    ngx_msec_int_t            elapsed;
    ngx_http_vmx_ctx_t       *ctx;

    if (!ngx_http_vmx_gateway_request(r)) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (ctx == NULL) {
        /*
         * refused before the handler ran, e.g. 413 on Content-Length: a
         * request of its own all the same (ids, audit record), timed from
         * its arrival as the handler never saw it
         */
        ctx = ngx_http_vmx_create_ctx(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        tp = ngx_timeofday();
        elapsed = (tp->sec - r->start_sec) * 1000
                  + (ngx_msec_int_t) tp->msec
                  - (ngx_msec_int_t) r->start_msec;

        if (elapsed > 0
            && (uint64_t) elapsed * 1000 < ctx->request.start_usec)
        {
            ctx->request.start_usec -= (uint64_t) elapsed * 1000;
        }
    }

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST
        && !ctx->attempt.own_response)
    {
        if (ngx_http_vmx_error_page(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_vmx_add_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_vmx_error_page(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char                *p;
    vmx_buf_t              out;
    ngx_uint_t             status;
    const char            *code, *type, *message;
    ngx_http_vmx_attempt_t  *last;
    ngx_http_vmx_loc_conf_t  *vlcf;
    u_char                 buf[512];

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);
    status = r->headers_out.status;
    type = "invalid_request_error";

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "request_too_large";
        message = "The request body is larger than the gateway accepts";
        break;

    case NGX_HTTP_BAD_REQUEST:
        code = "invalid_request";
        message = vlcf->gateway
                  ? "The request is malformed"
                  : "The request line or headers are malformed or too large";
        break;

    case NGX_HTTP_NOT_ALLOWED:
        code = "method_not_allowed";
        message = "The method is not allowed";
        break;

    case NGX_HTTP_NOT_IMPLEMENTED:
        code = "invalid_request";
        message = "The request's Transfer-Encoding is not supported";
        break;

    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        message = "The request body did not arrive in time";
        break;

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        if (ctx->plan.nattempts
            && ctx->admission.capacity_failures == ctx->plan.nattempts)
        {
            /* every connection of the chain had no capacity left */
            status = NGX_HTTP_TOO_MANY_REQUESTS;
            code = "resource_exhausted";
            type = "rate_limit_error";
            p = ngx_snprintf(buf, sizeof(buf) - 1, "%V", &ctx->attempt.failure);
            *p = '\0';
            message = (const char *) buf;
            break;
        }

        /* no provider answered: the last attempt names why */
        status = NGX_HTTP_BAD_GATEWAY;
        code = "provider_unavailable";
        type = "server_error";
        message = "No provider of the resource could be reached";

        /* the attempts, whether or not they were fallback events */
        last = ctx->plan.nattempts
               ? &ctx->plan.attempt_log[ctx->plan.nattempts - 1] : NULL;

        if (last && last->failed && last->failure.len) {
            p = ngx_snprintf(buf, sizeof(buf) - 1, "Every provider of the "
                             "resource failed; the last, %V model \"%V\", "
                             "with: %V%Z", &last->target->provider,
                             &last->target->model, &last->failure);
            buf[sizeof(buf) - 1] = '\0';
            message = (const char *) buf;
        }

        break;

    default:
        code = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "internal_error"
                                                          : "invalid_request";
        type = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "server_error"
                                                          : type;
        message = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
                  ? "The gateway failed to handle the request"
                  : "The request was refused";
    }

    vmx_buf_init(&out, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_openai_error(&out, message, ngx_strlen(message), type, code, NULL);

    if (vmx_buf_failed(&out)) {
        return NGX_ERROR;
    }

    ctx->response.error_body.data = (u_char *) out.data;
    ctx->response.error_body.len = out.len;
    ctx->response.error_page = 1;
    ctx->response.error_code.data = (u_char *) code;
    ctx->response.error_code.len = ngx_strlen(code);
    ctx->response.error_message.data = (u_char *) message;
    ctx->response.error_message.len = ngx_strlen(message);

    if (message == (const char *) buf) {
        ctx->response.error_message.data =
                               ngx_pstrdup(r->pool,
                                           &ctx->response.error_message);
        if (ctx->response.error_message.data == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->stream.streamed = 0;
    ngx_http_vmx_audit_capture(r, ctx, ctx->response.error_body.data,
                               ctx->response.error_body.len);

    r->headers_out.status = status;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = ctx->response.error_body.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t           *b;
    ngx_chain_t         *cl, out;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    /* the record is in the audit ring before the answer's end is sent */
    for (cl = in; cl && !ctx->response.audited; cl = cl->next) {
        if (cl->buf->last_buf && ngx_http_vmx_gateway_request(r)) {
            ngx_http_vmx_audit_write(r, ctx);
        }
    }

    if (!ctx->response.error_page) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is dropped; ours goes out once */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->response.error_page_sent) {
        /* nginx's own retries of a slow write must reach the writer */
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->response.error_page_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->response.error_body.data;
    b->last = b->pos + ctx->response.error_body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* the x-vmx-* headers */

static ngx_int_t
ngx_http_vmx_add_headers(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char                *p;
    ngx_tm_t               tm;
    ngx_str_t              value;
    ngx_uint_t             i;
    ngx_http_vmx_event_t  *ev;
    u_char                 name[64];

    value.data = ctx->request.request_id;
    value.len = sizeof(ctx->request.request_id);

    if (ngx_http_vmx_add_header(r, "x-vmx-request-id", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->attempt.target) {
        if (ngx_http_vmx_add_header(r, "x-vmx-provider",
                                    &ctx->attempt.target->provider)
            != NGX_OK
            || ngx_http_vmx_add_header(r, "x-vmx-model",
                                       &ctx->attempt.target->model)
               != NGX_OK
            || ngx_http_vmx_add_header(r, "x-vmx-connection-id",
                                       &ctx->attempt.target->connection->id)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (r->headers_out.status == NGX_HTTP_TOO_MANY_REQUESTS
        && ctx->attempt.retry_after.len
        && ngx_http_vmx_add_header(r, "Retry-After", &ctx->attempt.retry_after)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_ratelimit_headers(r, &ctx->admission.ratelimit[0],
                                       "requests")
        != NGX_OK
        || ngx_http_vmx_ratelimit_headers(r, &ctx->admission.ratelimit[1],
                                          "tokens")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->request.correlation_id.len
        && ngx_http_vmx_add_header(r, "x-vmx-correlation-id",
                                   &ctx->request.correlation_id)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->request.resource) {
        p = ngx_pnalloc(r->pool, 2 * (NGX_INT64_LEN + 4));
        if (p == NULL) {
            return NGX_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%uL.%03uL", ctx->admission.gate_usec / 1000,
                                ctx->admission.gate_usec % 1000) - p;

        if (ngx_http_vmx_add_header(r, "x-vmx-gate-duration-ms", &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        value.data = p + value.len;
        value.len = ngx_sprintf(value.data, "%uL.%03uL",
                                ctx->plan.routing_usec / 1000,
                                ctx->plan.routing_usec % 1000) - value.data;

        if (ngx_http_vmx_add_header(r, "x-vmx-routing-duration-ms", &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%ui", ctx->plan.nevents) - p;

    if (ngx_http_vmx_add_header(r, "x-vmx-event-count", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->plan.nevents; i++) {
        ev = &ctx->plan.events[i];

#define ngx_http_vmx_event_header(suffix, val)                               \
        ngx_sprintf(name, "x-vmx-event-%ui-" suffix "%Z", i);                 \
        if (ngx_http_vmx_add_header(r, (char *) name, val) != NGX_OK) {       \
            return NGX_ERROR;                                                 \
        }

        ngx_str_set(&value, "fallback");
        if (ev->routing) {
            ngx_str_set(&value, "routing");
        }

        ngx_http_vmx_event_header("type", &value);

        p = ngx_pnalloc(r->pool, sizeof("1970-01-01T00:00:00.000Z") + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_gmtime(ev->time / 1000, &tm);
        value.data = p;
        value.len = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                                tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                                tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                                ev->time % 1000) - p;
        ngx_http_vmx_event_header("timestamp", &value);

        if (ev->routing) {
            ngx_http_vmx_event_header("routing-original-provider",
                                      &ev->original_provider);
            ngx_http_vmx_event_header("routing-original-model",
                                      &ev->original_model);
            ngx_http_vmx_event_header("routing-routed-provider",
                                      &ev->provider);
            ngx_http_vmx_event_header("routing-routed-model", &ev->model);
            ngx_http_vmx_event_header("routing-group-id", &ev->reason);
            continue;
        }

        ngx_http_vmx_event_header("fallback-failed-provider", &ev->provider);
        ngx_http_vmx_event_header("fallback-failed-model", &ev->model);
        ngx_http_vmx_event_header("fallback-failed-connection-id",
                                  &ev->connection_id);

        if (ev->status) {
            p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
            if (p == NULL) {
                return NGX_ERROR;
            }

            value.data = p;
            value.len = ngx_sprintf(p, "%ui", ev->status) - p;
            ngx_http_vmx_event_header("fallback-status-code", &value);
        }

        ngx_http_vmx_event_header("fallback-failure-reason", &ev->reason);

#undef ngx_http_vmx_event_header
    }

    return NGX_OK;
}


/* the gateway's own limits: x-ratelimit-{limit,remaining,reset}-<what> */

static ngx_int_t
ngx_http_vmx_ratelimit_headers(ngx_http_request_t *r,
    ngx_http_vmx_ratelimit_t *rl, const char *what)
{
    u_char     *p;
    ngx_str_t   value;
    u_char      name[sizeof("x-ratelimit-remaining-requests")];

    if (!rl->set) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%L", rl->limit) - p;
    ngx_sprintf(name, "x-ratelimit-limit-%s%Z", what);

    if (ngx_http_vmx_add_header(r, (char *) name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    value.data += value.len;
    value.len = ngx_sprintf(value.data, "%L", rl->remaining) - value.data;
    ngx_sprintf(name, "x-ratelimit-remaining-%s%Z", what);

    if (ngx_http_vmx_add_header(r, (char *) name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rl->reset < 0) {
        return NGX_OK;
    }

    /* as OpenAI writes it: "1s", "59s" */
    value.data += value.len;
    value.len = ngx_sprintf(value.data, "%Ts", rl->reset) - value.data;
    ngx_sprintf(name, "x-ratelimit-reset-%s%Z", what);

    return ngx_http_vmx_add_header(r, (char *) name, &value);
}


static ngx_int_t
ngx_http_vmx_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    size_t            len;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(name);

    h->key.data = ngx_pnalloc(r->pool, len);
    if (h->key.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h->key.data, name, len);
    h->key.len = len;
    h->value = *value;
    h->hash = 1;

    if (!ngx_http_vmx_header_safe(value)) {
        /* a model name, an id, a provider's text: never a line of its own */
        h->value.data = ngx_pnalloc(r->pool, value->len);
        if (h->value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_http_vmx_printable(h->value.data, (char *) value->data,
                               value->len);
    }

    return NGX_OK;
}


/*
 * Whether a value of the configuration, the client or a provider may go
 * into a header line as it is: a CR or LF would end the line and start a
 * header of its own, a NUL or another control byte cut it.
 */

ngx_flag_t
ngx_http_vmx_header_safe(ngx_str_t *value)
{
    u_char  *p, *last;

    for (p = value->data, last = p + value->len; p < last; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/*
 * Printable ASCII, each control byte a space and each byte of UTF-8 a '?':
 * what a header gets of a text that is not header-safe, and a provider's
 * text in a failure reason, also a header (cut at a length, it could end
 * in a UTF-8 sequence cut short); the audit keeps the text whole.
 */

u_char *
ngx_http_vmx_printable(u_char *dst, const char *src, size_t len)
{
    u_char  c;

    while (len--) {
        c = (u_char) *src++;
        *dst++ = (c >= 0x20 && c < 0x7f) ? c : (c < 0x80 ? ' ' : '?');
    }

    return dst;
}


/* variables */

static ngx_int_t
ngx_http_vmx_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char              *p;
    ngx_int_t            number;
    ngx_str_t           *s, str;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = NULL;
    number = -1;

    switch ((ngx_http_vmx_var_e) data) {

    case NGX_HTTP_VMX_VAR_REQUEST_ID:
        str.data = ctx->request.request_id;
        str.len = sizeof(ctx->request.request_id);
        s = &str;
        break;

    case NGX_HTTP_VMX_VAR_RESOURCE:
        s = ctx->request.resource ? &ctx->request.resource->name : NULL;
        break;

    case NGX_HTTP_VMX_VAR_PROVIDER:
        s = ctx->attempt.target ? &ctx->attempt.target->provider : NULL;
        break;

    case NGX_HTTP_VMX_VAR_MODEL:
        s = ctx->attempt.target ? &ctx->attempt.target->model : NULL;
        break;

    case NGX_HTTP_VMX_VAR_CONNECTION_ID:
        s = ctx->attempt.target ? &ctx->attempt.target->connection->id : NULL;
        break;

    case NGX_HTTP_VMX_VAR_API_KEY_ID:
        s = ctx->request.api_key ? &ctx->request.api_key->id : NULL;
        break;

    case NGX_HTTP_VMX_VAR_WORKSPACE_ID:
        s = ctx->request.api_key ? &ctx->request.api_key->env->workspace_id
                                 : NULL;
        break;

    case NGX_HTTP_VMX_VAR_ENVIRONMENT_ID:
        s = ctx->request.api_key ? &ctx->request.api_key->env->id : NULL;
        break;

    case NGX_HTTP_VMX_VAR_CORRELATION_ID:
        s = ctx->request.correlation_id.len ? &ctx->request.correlation_id
                                            : NULL;
        break;

    case NGX_HTTP_VMX_VAR_ERROR_CODE:
        s = ctx->response.error_code.len ? &ctx->response.error_code : NULL;
        break;

    case NGX_HTTP_VMX_VAR_PROMPT_TOKENS:
        number = ctx->attempt.usage.prompt_tokens;
        break;

    case NGX_HTTP_VMX_VAR_COMPLETION_TOKENS:
        number = ctx->attempt.usage.completion_tokens;
        break;

    case NGX_HTTP_VMX_VAR_TOTAL_TOKENS:
        number = ctx->attempt.usage.total_tokens;
        break;

    case NGX_HTTP_VMX_VAR_ATTEMPTS:
        number = ctx->plan.attempts;
        break;
    }

    if (s == NULL && number < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (s == NULL) {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        str.data = p;
        str.len = ngx_sprintf(p, "%i", number) - p;
        s = &str;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * A main request of a vmx_gateway location, or one nginx refused before
 * choosing its location (a bad request line, headers too large: the
 * server's configuration is the request's) whose URI starts with the
 * prefix of a vmx_gateway location of that server.
 */

static ngx_flag_t
ngx_http_vmx_gateway_request(ngx_http_request_t *r)
{
    ngx_str_t                *prefix;
    ngx_uint_t                i;
    ngx_http_vmx_loc_conf_t  *vlcf;

    if (r != r->main) {
        return 0;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

    if (vlcf->gateway) {
        return 1;
    }

    if (vlcf->gateway_prefixes == NULL) {
        return 0;
    }

    prefix = vlcf->gateway_prefixes->elts;

    for (i = 0; i < vlcf->gateway_prefixes->nelts; i++) {
        if (r->uri.len >= prefix[i].len
            && ngx_strncmp(r->uri.data, prefix[i].data, prefix[i].len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the log phase: statistics and the audit record of a gateway request */

static ngx_int_t
ngx_http_vmx_log_handler(ngx_http_request_t *r)
{
    ngx_http_vmx_ctx_t       *ctx;
    ngx_http_vmx_attempt_t   *last;

    if (!ngx_http_vmx_gateway_request(r)) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_vmx_limits_settle(r, ctx);
    ngx_http_vmx_pools_settle(r, ctx);
    ngx_http_vmx_stats_record(r, ctx);

    /* the last attempt's outcome, when it did not fail already */
    last = ctx->plan.nattempts
           ? &ctx->plan.attempt_log[ctx->plan.nattempts - 1] : NULL;

    if (last && !last->failed) {
        ngx_http_vmx_health_record(r, last->target,
                                   r->headers_out.status >= 500
                                   ? (ngx_int_t) r->headers_out.status : 0,
                                   ngx_http_vmx_usec() - last->started_usec);
    }
    ngx_http_vmx_audit_write(r, ctx);

    return NGX_OK;
}


/* helpers shared by the files of the module */

/* the request body in one piece, wherever nginx kept its parts */

ngx_int_t
ngx_http_vmx_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ssize_t       n;
    ngx_chain_t  *cl;

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            n = ngx_read_file(cl->buf->file, p,
                              cl->buf->file_last - cl->buf->file_pos,
                              cl->buf->file_pos);
            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


void *
ngx_http_vmx_json_alloc(void *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


uint64_t
ngx_http_vmx_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* configuration */

static ngx_int_t
ngx_http_vmx_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_vmx_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (sodium_init() < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sodium_init() failed");
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_vmx_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_vmx_body_filter;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_vmx_log_handler;

    return NGX_OK;
}


static void *
ngx_http_vmx_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vmx_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->shm_zone = NULL;
     *     mcf->file = { 0, NULL };
     *     mcf->token = { 0, NULL };
     */

    mcf->stats_zone.size = NGX_CONF_UNSET_SIZE;
    mcf->health_zone.size = NGX_CONF_UNSET_SIZE;
    mcf->capacity_zone.size = NGX_CONF_UNSET_SIZE;
    mcf->pools_zone.size = NGX_CONF_UNSET_SIZE;
    mcf->payload_max = NGX_CONF_UNSET_SIZE;
    mcf->spool_max = NGX_CONF_UNSET;
    mcf->spool_warn = NGX_CONF_UNSET_UINT;
    mcf->keepalive = NGX_CONF_UNSET_UINT;
    mcf->keepalive_timeout = NGX_CONF_UNSET_MSEC;
    mcf->keepalive_requests = NGX_CONF_UNSET_UINT;

    return mcf;
}


static char *
ngx_http_vmx_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    ngx_conf_init_size_value(mcf->payload_max, 256 * 1024);
    ngx_conf_init_value(mcf->spool_max, (off_t) 1024 * 1024 * 1024);

    /* a larger payload would make a record its reader takes for garbage */
    if (mcf->payload_max > VMX_SPOOL_PAYLOAD_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vmx_audit_payload_max must be at most %uz",
                           (size_t) VMX_SPOOL_PAYLOAD_MAX);
        return NGX_CONF_ERROR;
    }
    ngx_conf_init_uint_value(mcf->spool_warn, 80);
    ngx_conf_init_uint_value(mcf->keepalive, 64);
    ngx_conf_init_msec_value(mcf->keepalive_timeout, 60000);
    ngx_conf_init_uint_value(mcf->keepalive_requests, 1000);

    /* the tables requests update, beside the snapshot: a zone each */
    if (mcf->shm_zone
        && (ngx_http_vmx_stats_add_zones(cf, mcf) != NGX_OK
            || ngx_http_vmx_capacity_add_zone(cf, mcf) != NGX_OK
            || ngx_http_vmx_pools_add_zone(cf, mcf) != NGX_OK))
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_vmx_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_vmx_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vmx_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->ssl_trusted_certificate = { 0, NULL };
     *     conf->upstream.* = 0 / NULL, the rest below
     */

    conf->gateway = NGX_CONF_UNSET;
    conf->config_api = NGX_CONF_UNSET;
    conf->max_response = NGX_CONF_UNSET_SIZE;

    conf->upstream.connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream.send_timeout = NGX_CONF_UNSET_MSEC;
    conf->first_byte_timeout = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->total_timeout = NGX_CONF_UNSET_MSEC;
    conf->upstream.buffer_size = NGX_CONF_UNSET_SIZE;
    conf->upstream.ssl_verify = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_vmx_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_vmx_loc_conf_t *prev = parent;
    ngx_http_vmx_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->gateway, prev->gateway, 0);
    ngx_conf_merge_value(conf->config_api, prev->config_api, 0);
    ngx_conf_merge_size_value(conf->max_response, prev->max_response,
                              8 * 1024 * 1024);

    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");

    if (ngx_http_vmx_upstream_conf(cf, prev, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_vmx_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_random_init();

    if (ngx_http_vmx_keepalive_init_process(cycle) != NGX_OK
        || ngx_http_vmx_tokens_init_process(cycle) != NGX_OK
        || ngx_http_vmx_redis_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_vmx_audit_init_process(cycle);
}


static char *
ngx_http_vmx_gateway(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_loc_conf_t *vlcf = conf;

    ngx_str_t                 *prefix;
    ngx_http_vmx_loc_conf_t   *svlcf;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_core_srv_conf_t  *cscf;

    if (vlcf->gateway != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    vlcf->gateway = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_vmx_gateway_handler;

    if (clcf->named
#if (NGX_PCRE)
        || clcf->regex
#endif
       )
    {
        return NGX_CONF_OK;
    }

    /* errors of its requests before nginx chose the location: see
       ngx_http_vmx_gateway_request() */
    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);
    svlcf = cscf->ctx->loc_conf[ngx_http_vmx_module.ctx_index];

    if (svlcf->gateway_prefixes == NULL) {
        svlcf->gateway_prefixes = ngx_array_create(cf->pool, 1,
                                                   sizeof(ngx_str_t));
        if (svlcf->gateway_prefixes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    prefix = ngx_array_push(svlcf->gateway_prefixes);
    if (prefix == NULL) {
        return NGX_CONF_ERROR;
    }

    *prefix = clcf->name;

    return NGX_CONF_OK;
}


static char *
ngx_http_vmx_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_vmx_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_vmx_config_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_loc_conf_t *vlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (vlcf->config_api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    vlcf->config_api = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_vmx_config_api_handler;

    return NGX_CONF_OK;
}
