/*
 * VM-X gateway: the data plane.
 *
 * One endpoint in front of many AI providers: the "vmx_gateway" location
 * answers OpenAI's chat-completions API.  This file holds the module's
 * definition, its directives and configuration, and its variables; a
 * request goes through ngx_http_vmx_handler.c, ngx_http_vmx_gate.c, the
 * provider attempts of ngx_http_vmx_upstream.c and the filters of
 * ngx_http_vmx_filter.c.
 */

#include "ngx_http_vmx_module.h"
#include "vmx_spool.h"

#include <sodium.h>


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


static ngx_int_t ngx_http_vmx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
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

/* more than any model writes in one answer */
static ngx_conf_num_bounds_t  ngx_http_vmx_budget_completion_bounds = {
    ngx_conf_check_num_bounds, 0, 1000000
};


static ngx_command_t  ngx_http_vmx_commands[] = {

    { ngx_string("vmx_config_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
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
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
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

    { ngx_string("vmx_budget_default_completion_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vmx_loc_conf_t, budget_completion_tokens),
      &ngx_http_vmx_budget_completion_bounds },

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
    if (sodium_init() < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sodium_init() failed");
        return NGX_ERROR;
    }

    return ngx_http_vmx_filter_install(cf);
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
    conf->budget_completion_tokens = NGX_CONF_UNSET;

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
    ngx_conf_merge_value(conf->budget_completion_tokens,
                         prev->budget_completion_tokens, 1024);

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

    if (ngx_http_vmx_config_init_process(cycle) != NGX_OK
        || ngx_http_vmx_keepalive_init_process(cycle) != NGX_OK
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
