/*
 * The gate before the upstream: the request's limits (ngx_http_vmx_limits.c),
 * the share of its resource's pool (ngx_http_vmx_pools.c) and the check of
 * its first attempt's request; a request waiting for the cluster's counters
 * resumes here.
 */

#include "ngx_http_vmx_module.h"


static void ngx_http_vmx_chat_resume(ngx_event_t *ev);


/*
 * The gate: the key's and the resource's own capacity, with the
 * connections of the plan checked ahead in a cluster.  Returns what
 * ngx_http_vmx_prepare() does, or NGX_HTTP_VMX_WAIT while the request
 * waits for the cluster counters.
 */

ngx_int_t
ngx_http_vmx_chat_admit(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    uint64_t                    started;
    ngx_uint_t                  i, j, n;
    ngx_http_vmx_build_e        build;
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
        return NGX_HTTP_VMX_WAIT;
    }

    /* a refusal names the model the request would have gone to */
    ctx->attempt.target = ctx->plan.targets[0];

    switch (admit) {

    case NGX_HTTP_VMX_ADMIT_PASS:
        break;

    case NGX_HTTP_VMX_ADMIT_DENY:
        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                       ctx->admission.over_budget
                                       ? "budget_exceeded"
                                       : "resource_exhausted",
                                       &ctx->attempt.failure);

    default: /* NGX_HTTP_VMX_ADMIT_ERROR */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* prioritization: the share of the resource's pool */

    switch (ngx_http_vmx_pools_gate(r, ctx)) {

    case NGX_HTTP_VMX_ADMIT_PASS:
        break;

    case NGX_HTTP_VMX_ADMIT_DENY:
        /* a denied request consumes no tokens of its key and resource */
        if (ctx->admission.nreservations) {
            ngx_http_vmx_limits_release(r, ctx, NGX_HTTP_VMX_ALL_ATTEMPTS);
        }

        return ngx_http_vmx_send_error(r, ctx, NGX_HTTP_TOO_MANY_REQUESTS,
                                       "prioritization_gate_denied",
                                       &ctx->attempt.failure);

    default: /* NGX_HTTP_VMX_ADMIT_ERROR: the pools never wait */
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

    build = ngx_http_vmx_provider_request(r, ctx, &ctx->plan.first_request);

    switch (build) {

    case NGX_HTTP_VMX_BUILD_UNTRANSLATABLE:
        return ngx_http_vmx_send_error_param(r, ctx, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request",
                                             &ctx->attempt.failure,
                                             ctx->attempt.failure_param);

    case NGX_HTTP_VMX_BUILD_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:
        /* built, or an attempt that fails when its turn comes */
        return NGX_HTTP_VMX_GO_ON;
    }
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


void
ngx_http_vmx_chat_continue(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_vmx_ctx_t  *ctx;

    if (rc == NGX_HTTP_VMX_WAIT) {
        /* suspended until a thread counts the prompt tokens or the
           cluster counters answer */
        return;
    }

    if (rc == NGX_HTTP_VMX_GO_ON) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

        rc = ngx_http_vmx_upstream_start(r, ctx);

        if (rc == NGX_OK) {
            return;
        }
    }

    ngx_http_finalize_request(r, rc);
}
