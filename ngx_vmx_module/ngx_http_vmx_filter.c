/*
 * The header and body filters of gateway requests: every answer, nginx's
 * own error pages included, leaves in OpenAI's error envelope with the
 * x-vmx-* headers; the log phase records its statistics and audit.
 */

#include "ngx_http_vmx_module.h"


static ngx_flag_t ngx_http_vmx_gateway_request(ngx_http_request_t *r);
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
    ngx_http_vmx_ratelimit_t *rl, const char *what, ngx_uint_t usd);
static ngx_int_t ngx_http_vmx_log_handler(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


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
            code = ctx->admission.over_budget ? "budget_exceeded"
                                              : "resource_exhausted";
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
                                       "requests", 0)
        != NGX_OK
        || ngx_http_vmx_ratelimit_headers(r, &ctx->admission.ratelimit[1],
                                          "tokens", 0)
           != NGX_OK
        || ngx_http_vmx_ratelimit_headers(r, &ctx->admission.ratelimit[2],
                                          "cost", 1)
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


/*
 * the gateway's own limits: x-ratelimit-{limit,remaining,reset}-<what>; a
 * budget's (usd) in dollars of its micro-dollars
 */

static ngx_int_t
ngx_http_vmx_ratelimit_headers(ngx_http_request_t *r,
    ngx_http_vmx_ratelimit_t *rl, const char *what, ngx_uint_t usd)
{
    u_char     *p;
    ngx_str_t   value;
    u_char      name[sizeof("x-ratelimit-remaining-requests")];

    if (!rl->set) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, 3 * (NGX_INT64_LEN + 2));
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = (usd ? ngx_http_vmx_usd(p, rl->limit)
                     : ngx_sprintf(p, "%L", rl->limit)) - p;
    ngx_sprintf(name, "x-ratelimit-limit-%s%Z", what);

    if (ngx_http_vmx_add_header(r, (char *) name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    value.data += value.len;
    value.len = (usd ? ngx_http_vmx_usd(value.data, rl->remaining)
                     : ngx_sprintf(value.data, "%L", rl->remaining))
                - value.data;
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


/* the filters and the log phase handler of gateway requests */

ngx_int_t
ngx_http_vmx_filter_install(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

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
