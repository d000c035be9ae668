/*
 * VM-X gateway: provider attempts.
 *
 * The module's own ngx_http_upstream_t with a private peer selector: every
 * peer.get takes the next model of the request's plan and builds that
 * provider's request, so a connect failure never sends one provider's body
 * to another.  Failures that allow a retry (connect error, timeout, 429,
 * 5xx) move on through nginx's next_upstream while nothing has reached the
 * client.
 *
 * A streamed answer (server-sent events, AWS eventstream) is held until
 * its first content: an error event before it (a 200 stream that opens
 * with "overloaded") fails the attempt like an error status would, and the
 * next model is tried while the client has seen nothing.  From its first
 * content on it is passed on event by event as it arrives; an error then
 * (an error event, a broken frame, a cut connection) ends the client's
 * stream with an error event and a proper end, and fails the attempt in
 * the audit and the statistics.  Any other answer, errors included, is
 * read whole before the client sees its header: it is translated with its
 * status, gets a Content-Length, and a provider failing in the middle of
 * it still falls back to the next model.
 *
 * A body the provider compressed (Content-Encoding gzip or deflate,
 * although the gateway asks for identity) is inflated below its framing,
 * before anything else reads it.
 *
 * An attempt may take several provider calls, one after the other (Titan
 * embeds one input a call): once a call's whole 2xx answer is read, its
 * wire format asks for the next (ctx->plan.next_call), and the attempt goes
 * on through nginx's next peer as a fallback would, on the same kept
 * connection, without a new attempt or admission.  Any call's failure fails
 * the attempt.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_SSE_EVENT_MAX   (256 * 1024)

/* a stream's output held before its first content, at most: a provider
   sending only role chunks and comments is passed on beyond it */
#define NGX_HTTP_VMX_HELD_MAX        (64 * 1024)

/* how long the end of a complete answer's framing is awaited (ms) */
#define NGX_HTTP_VMX_FRAMING_TAIL    100

/* inflated bytes are handed on in pieces of this size */
#define NGX_HTTP_VMX_INFLATE_BUF     16384


typedef ngx_int_t (*ngx_http_vmx_body_pt)(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *data, size_t len);


static ngx_int_t ngx_http_vmx_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_process_status_line(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_content_encoding(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *value);
static ngx_int_t ngx_http_vmx_process_answer(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_process_stream_head(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_answer_ready(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_answer_out(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, vmx_buf_t *out);
static void ngx_http_vmx_answer_error(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static ngx_int_t ngx_http_vmx_stream_refused(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_uint_t ngx_http_vmx_retry_status(ngx_uint_t status);
static ngx_int_t ngx_http_vmx_own_error(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, vmx_buf_t *out);
static void ngx_http_vmx_abort_request(ngx_http_request_t *r);
static void ngx_http_vmx_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_vmx_filter_init(void *data);
static ngx_int_t ngx_http_vmx_filter(void *data, ssize_t bytes);
static void ngx_http_vmx_answer_over(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);

static ngx_int_t ngx_http_vmx_unframe(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_buf_t *in, ngx_http_vmx_body_pt handler);
static ngx_int_t ngx_http_vmx_body(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_body_pt handler, u_char *data,
    size_t len);
static int ngx_http_vmx_inflated(void *data, const char *p, size_t len);
static ngx_int_t ngx_http_vmx_collect(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *data, size_t len);
static ngx_int_t ngx_http_vmx_stream_data(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *data, size_t len);
static int ngx_http_vmx_sse_event(void *data, const char *event,
    size_t event_len, const char *payload, size_t payload_len);
static int ngx_http_vmx_es_message(void *data,
    const vmx_eventstream_message_t *m);
static int ngx_http_vmx_stream_event(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value);
static ngx_int_t ngx_http_vmx_stream_out(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_stream_release(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_int_t ngx_http_vmx_stream_finish(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t normal);
static ngx_int_t ngx_http_vmx_stream_close(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t normal);
static ngx_int_t ngx_http_vmx_stream_end(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *code, ngx_str_t *message,
    ngx_str_t *reason);
static ngx_int_t ngx_http_vmx_stream_broken(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_stream_failed(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *code,
    ngx_str_t *message, ngx_str_t *reason);

static ngx_int_t ngx_http_vmx_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_vmx_peer_get(ngx_peer_connection_t *pc, void *data);
static void ngx_http_vmx_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_http_vmx_attempt_failed(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_connection_t *c, ngx_uint_t tries_left);
static void ngx_http_vmx_first_byte(ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_attempt_timeouts(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_idle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_total_timeout(ngx_event_t *ev);
static void ngx_http_vmx_format_end(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static void ngx_http_vmx_total_cleanup(void *data);
static ngx_str_t ngx_http_vmx_timeout_reason(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_connection_t *c);


ngx_int_t
ngx_http_vmx_upstream_start(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_upstream_t       *u;
    ngx_http_vmx_loc_conf_t   *vlcf;
    ngx_http_upstream_conf_t  *ucf;

    if (ngx_http_upstream_create(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

    /* the request's own: each attempt sets its timeouts in it */
    ucf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (ucf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ucf = vlcf->upstream;

    /*
     * A batch item's attempt outlives its runner: the runner resumes the
     * item from its audit record, so the record must hold the provider's
     * real answer, not a 499 that would send the item again.
     */
    ucf->ignore_client_abort = (ctx->request.batch_id.len != 0);

    /* an attempt's total timer must not outlive the request's pool */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_vmx_total_cleanup;
    cln->data = ctx;

    ctx->plan.total_event.handler = ngx_http_vmx_total_timeout;
    ctx->plan.total_event.data = r;
    ctx->plan.total_event.log = r->connection->log;

    vmx_buf_init(&ctx->response.scratch, ngx_http_vmx_json_alloc, r->pool,
                 4096);
    if (vmx_buf_failed(&ctx->response.scratch)) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    u = r->upstream;

    ngx_str_set(&u->schema, "vmx://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_vmx_module;
    u->conf = ucf;

    u->create_request = ngx_http_vmx_create_request;
    u->reinit_request = ngx_http_vmx_reinit_request;
    u->process_header = ngx_http_vmx_process_status_line;
    u->abort_request = ngx_http_vmx_abort_request;
    u->finalize_request = ngx_http_vmx_finalize_request;

    u->buffering = 0;
    u->input_filter_init = ngx_http_vmx_filter_init;
    u->input_filter = ngx_http_vmx_filter;
    u->input_filter_ctx = r;

    /* the body's reference count is taken over by the upstream */
    ngx_http_upstream_init(r);

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_create_request(ngx_http_request_t *r)
{
    /* each attempt's request is built when its peer is chosen */
    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_reinit_request(ngx_http_request_t *r)
{
    /* each attempt's state is reset when its peer is chosen */
    return NGX_OK;
}


/* the provider's answer: status line and header */

static ngx_int_t
ngx_http_vmx_process_status_line(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    rc = ngx_http_parse_status_line(r, &u->buffer, &ctx->attempt.status);

    if (rc == NGX_AGAIN) {
        return rc;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent no valid HTTP status line");
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    ctx->attempt.provider_status = ctx->attempt.status.code;
    u->headers_in.status_n
        = ngx_http_vmx_retry_status(ctx->attempt.status.code);
    u->headers_in.content_length_n = -1;

    u->process_header = ngx_http_vmx_process_header;

    return ngx_http_vmx_process_header(r);
}


/*
 * The status the gateway acts on: nginx retries 429 and 500/502/503/504
 * only, so every other 5xx (Anthropic's 529 "overloaded" is 503) and the
 * provider refusing the gateway's own credentials count as unavailable.
 */

static ngx_uint_t
ngx_http_vmx_retry_status(ngx_uint_t status)
{
    if (status == 529) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (status > NGX_HTTP_GATEWAY_TIME_OUT
        || status == NGX_HTTP_NOT_IMPLEMENTED
        || status == NGX_HTTP_UNAUTHORIZED
        || status == NGX_HTTP_FORBIDDEN)
    {
        return NGX_HTTP_BAD_GATEWAY;
    }

    return status;
}


static ngx_int_t
ngx_http_vmx_process_header(ngx_http_request_t *r)
{
    char                     *buf;
    ngx_int_t                 rc;
    ngx_str_t                 name, value;
    ngx_http_upstream_t      *u;
    ngx_http_vmx_ctx_t       *ctx;
    ngx_http_vmx_provider_t  *provider;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    provider = ctx->attempt.provider;

    for ( ;; ) {

        rc = ngx_http_parse_header_line(r, &u->buffer, 1);

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            break;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: provider sent an invalid header");
            return NGX_HTTP_UPSTREAM_INVALID_HEADER;
        }

        /* the name as received, compared without case: r->lowcase_header
           holds only its first NGX_HTTP_LC_HEADER_LEN (32) bytes, and
           anthropic-ratelimit-requests-limit is longer */
        name.data = r->header_name_start;
        name.len = r->header_name_end - r->header_name_start;
        value.data = r->header_start;
        value.len = r->header_end - r->header_start;

#define ngx_http_vmx_is(s)                                                    \
        (name.len == sizeof(s) - 1                                            \
         && ngx_strncasecmp(name.data, (u_char *) s, name.len) == 0)

        if (ngx_http_vmx_is("content-length")) {
            ctx->attempt.remaining = ngx_atoof(value.data, value.len);
            if (ctx->attempt.remaining == NGX_ERROR) {
                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

        } else if (ngx_http_vmx_is("transfer-encoding")) {
            ctx->attempt.chunked_answer = (ngx_strlcasestrn(value.data,
                                       value.data + value.len,
                                       (u_char *) "chunked", 7 - 1)
                                   != NULL);

        } else if (ngx_http_vmx_is("content-type")) {
            ctx->stream.streamed = (value.len >= sizeof("text/event-stream") - 1
                             && ngx_strncasecmp(value.data,
                                    (u_char *) "text/event-stream",
                                    sizeof("text/event-stream") - 1) == 0);

            ctx->stream.eventstream = (value.len
                                >= sizeof("application/vnd.amazon."
                                          "eventstream") - 1
                                && ngx_strncasecmp(value.data,
                                       (u_char *) "application/vnd.amazon."
                                                  "eventstream",
                                       sizeof("application/vnd.amazon."
                                              "eventstream") - 1) == 0);

        } else if (ngx_http_vmx_is("content-encoding")) {
            if (ngx_http_vmx_content_encoding(r, ctx, &value) != NGX_OK) {
                return NGX_HTTP_UPSTREAM_INVALID_HEADER;
            }

        } else if (ngx_http_vmx_is("connection")) {
            ctx->attempt.provider_close = (ngx_strlcasestrn(value.data,
                                       value.data + value.len,
                                       (u_char *) "close", 5 - 1)
                                   != NULL);

        } else if (ngx_http_vmx_is("retry-after")) {
            /* copied: the read buffer is reused for the body */
            ctx->attempt.retry_after.data = ngx_pstrdup(r->pool, &value);
            ctx->attempt.retry_after.len = ctx->attempt.retry_after.data
                                           ? value.len : 0;

        } else if (ngx_http_vmx_is("x-amzn-errortype")) {
            ctx->attempt.error_type.data = ngx_pstrdup(r->pool, &value);
            ctx->attempt.error_type.len = ctx->attempt.error_type.data
                                          ? value.len : 0;

        } else if (name.len == provider->requests_limit_header.len
                   && ngx_strncasecmp(name.data,
                                      provider->requests_limit_header.data,
                                      name.len) == 0)
        {
            ctx->attempt.requests_limit = ngx_atoi(value.data, value.len);

        } else if (name.len == provider->tokens_limit_header.len
                   && ngx_strncasecmp(name.data,
                                      provider->tokens_limit_header.data,
                                      name.len) == 0)
        {
            ctx->attempt.tokens_limit = ngx_atoi(value.data, value.len);
        }

#undef ngx_http_vmx_is
    }

    ctx->attempt.answered = 1;
    ctx->attempt.own_response = 1;

    if (ctx->attempt.chunked_answer) {
        ctx->attempt.remaining = -1;
    }

    /* a stream of an operation that has none is read whole, and fails */
    if (ctx->attempt.provider_status / 100 == 2
        && (ctx->stream.streamed || ctx->stream.eventstream)
        && provider->stream_event != NULL)
    {
        ctx->stream.streamed = 1;

        ngx_http_vmx_capacity_record(r, ctx);

        ngx_str_set(&r->headers_out.content_type, "text/event-stream");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;

        buf = ngx_palloc(r->pool, NGX_HTTP_VMX_SSE_EVENT_MAX);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        /* one of the two framings is used, the same memory serves either */
        vmx_sse_init(&ctx->stream.sse, buf, NGX_HTTP_VMX_SSE_EVENT_MAX);
        vmx_eventstream_init(&ctx->stream.es, buf, NGX_HTTP_VMX_SSE_EVENT_MAX);

        /* the client sees nothing before the stream's first content */
        ctx->stream.holding = 1;
        u->process_header = ngx_http_vmx_process_stream_head;

        return ngx_http_vmx_process_stream_head(r);
    }

    /* anything else is read whole before the client sees a byte */
    ctx->stream.streamed = 0;
    u->process_header = ngx_http_vmx_process_answer;

    return ngx_http_vmx_process_answer(r);
}


static ngx_int_t
ngx_http_vmx_process_answer(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    b = &u->buffer;

    ngx_http_vmx_idle(r, ctx);

    rc = ngx_http_vmx_unframe(r, ctx, b, ngx_http_vmx_collect);

    /* what was read is copied out, so the read buffer starts over */
    b->pos = b->start;
    b->last = b->start;

    if (rc == NGX_ERROR) {
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (rc == NGX_OK) {
        /* more to come; a close before the end fails the attempt */
        return NGX_AGAIN;
    }

    return ngx_http_vmx_answer_ready(r, ctx);
}


/*
 * Content-Encoding: gzip and deflate are inflated (see ngx_http_vmx_body());
 * any other coding fails the attempt, since nothing could read its body.
 */

static ngx_int_t
ngx_http_vmx_content_encoding(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_str_t *value)
{
    int    format;
    char  *buf;

#define ngx_http_vmx_coding(s)                                                \
    (value->len == sizeof(s) - 1                                              \
     && ngx_strncasecmp(value->data, (u_char *) s, value->len) == 0)

    if (value->len == 0 || ngx_http_vmx_coding("identity")) {
        return NGX_OK;
    }

    if (ngx_http_vmx_coding("gzip") || ngx_http_vmx_coding("x-gzip")) {
        format = VMX_INFLATE_GZIP;

    } else if (ngx_http_vmx_coding("deflate")) {
        format = VMX_INFLATE_DEFLATE;

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider answered in Content-Encoding \"%V\"",
                      value);
        ngx_str_set(&ctx->attempt.failure, "the provider answered in a "
                    "Content-Encoding other than gzip or deflate");
        return NGX_ERROR;
    }

#undef ngx_http_vmx_coding

    ctx->attempt.inflate = ngx_palloc(r->pool, sizeof(vmx_inflate_t));
    buf = ngx_palloc(r->pool, NGX_HTTP_VMX_INFLATE_BUF);

    if (ctx->attempt.inflate == NULL || buf == NULL) {
        return NGX_ERROR;
    }

    vmx_inflate_init(ctx->attempt.inflate, format, buf,
                     NGX_HTTP_VMX_INFLATE_BUF,
                     ngx_http_vmx_json_alloc, r->pool);

    return NGX_OK;
}


/*
 * A 2xx stream before its first content: its events are translated into
 * output held in u->out_bufs.  Returns NGX_AGAIN while holding, NGX_OK once
 * content came (or the stream ended whole), or fails the attempt.
 */

static ngx_int_t
ngx_http_vmx_process_stream_head(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_buf_t            *b, in;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    b = &u->buffer;

    ngx_http_vmx_idle(r, ctx);

    ngx_memzero(&in, sizeof(ngx_buf_t));
    in.pos = b->pos;
    in.last = b->last;

    ctx->attempt.out_cur = NULL;

    rc = ngx_http_vmx_unframe(r, ctx, &in, ngx_http_vmx_stream_data);

    /* what was read is copied out, so the read buffer starts over */
    b->pos = b->start;
    b->last = b->start;

    if (rc == NGX_DONE) {
        ctx->attempt.body_done = 1;

        /* its format's end now (Gemini's is its framing's), so that its
           connection is known whole and kept for the next call */
        if (ngx_http_vmx_stream_finish(r, ctx, 1) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx->stream.holding && ctx->stream.stream_error) {
        return ngx_http_vmx_stream_refused(r, ctx);
    }

    if (rc == NGX_ERROR) {
        if (ctx->stream.holding) {
            /* broken before its first content: the next model is tried */
            ctx->attempt.provider_status = NGX_HTTP_BAD_GATEWAY;

            if (ctx->attempt.failure.len == 0) {
                ngx_str_set(&ctx->attempt.failure, "the provider sent a broken "
                            "stream");
            }

            return NGX_HTTP_UPSTREAM_INVALID_HEADER;
        }

        /* broken right after its first content, in the same read */
        if (ngx_http_vmx_stream_broken(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->attempt.body_done = 1;
        return NGX_OK;
    }

    if (!ctx->stream.holding) {
        return NGX_OK;
    }

    if (rc != NGX_DONE) {
        return NGX_AGAIN;
    }

    if (!ctx->attempt.complete) {
        ctx->attempt.provider_status = NGX_HTTP_BAD_GATEWAY;
        ngx_str_set(&ctx->attempt.failure,
                    "the provider's stream ended before its "
                    "first content");
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    /* a whole stream without content, e.g. role chunk, usage, [DONE] */
    return ngx_http_vmx_stream_release(r, ctx);
}


/*
 * A stream that opened with an error event: the attempt failed before the
 * client saw a byte, so it is answered like an error status, in OpenAI's
 * envelope (vmx_stream_error_status() maps the status), and falls back when
 * that status allows.
 */

static ngx_int_t
ngx_http_vmx_stream_refused(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char               *p;
    size_t                len;
    vmx_buf_t             out;
    ngx_uint_t            status;
    vmx_stream_error_t   *e;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    e = ctx->stream.stream_error;
    status = e->status;

    len = sizeof("the provider's stream opened with an error: ") - 1
          + e->code_len + sizeof(": ") - 1 + ngx_min(e->message_len, 200);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->attempt.failure.data = p;
    p = ngx_cpymem(p, "the provider's stream opened with an error: ",
                   sizeof("the provider's stream opened with an error: ") - 1);

    if (e->code_len) {
        p = ngx_http_vmx_printable(p, e->code, e->code_len);
        *p++ = ':';
        *p++ = ' ';
    }

    p = ngx_http_vmx_printable(p, e->message, ngx_min(e->message_len, 200));
    ctx->attempt.failure.len = p - ctx->attempt.failure.data;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vmx: %V model \"%V\": %V", &ctx->attempt.target->provider,
                  &ctx->attempt.target->model, &ctx->attempt.failure);

    vmx_buf_init(&out, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_openai_error(&out, e->message, e->message_len,
                     vmx_openai_error_type((int) status), e->code, NULL);

    if (vmx_buf_failed(&out)) {
        return NGX_ERROR;
    }

    /* the held output is dropped: an answer of its own replaces it */
    u->out_bufs = NULL;
    ctx->attempt.out_cur = NULL;
    ctx->stream.holding = 0;
    ctx->stream.streamed = 0;
    ctx->attempt.provider_status = status;
    u->headers_in.status_n = status;

    if (ngx_http_vmx_answer_out(r, ctx, status, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the rest of the stream is not read */
    u->keepalive = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_answer_ready(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_str_t             body;
    vmx_buf_t             out;
    ngx_uint_t            status;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (ctx->attempt.answer) {
        body.data = ctx->attempt.answer->pos;
        body.len = ctx->attempt.answer->last - ctx->attempt.answer->pos;

    } else {
        ngx_str_set(&body, "");
    }

    vmx_buf_init(&out, ngx_http_vmx_json_alloc, r->pool, 0);

    status = ctx->attempt.provider->answer(r, ctx, ctx->attempt.provider_status,
                                           &body, &out);

    if (vmx_buf_failed(&out)) {
        return NGX_ERROR;
    }

    if (ctx->plan.next_call) {
        /* nginx's next peer makes the call (see peer.get and peer.free);
           this answer was read to its end, its connection can serve it */
        u->keepalive = !ctx->attempt.provider_close;
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    if (status >= NGX_HTTP_SPECIAL_RESPONSE
        && ngx_http_vmx_own_error(r, ctx, status, &out) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (status != ctx->attempt.provider_status) {
        /* an error in disguise, e.g. a safety block: the client's status */
        u->headers_in.status_n = status;
    }

    return ngx_http_vmx_answer_out(r, ctx, status, &out);
}


/* a whole answer in out: what the client gets once the header is out */

static ngx_int_t
ngx_http_vmx_answer_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, vmx_buf_t *out)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    ngx_http_vmx_answer_error(r, ctx, out);

    /* the answer the client gets, sent once the header is out */
    ctx->attempt.answer = ngx_calloc_buf(r->pool);
    if (ctx->attempt.answer == NULL) {
        return NGX_ERROR;
    }

    ctx->attempt.answer->pos = (u_char *) out->data;
    ctx->attempt.answer->last = (u_char *) out->data + out->len;
    ctx->attempt.answer->memory = 1;
    ctx->attempt.answer->flush = 1;
    ctx->attempt.answer->tag = u->output.tag;

    u->headers_in.content_length_n = out->len;
    ctx->attempt.complete = 1;

    ngx_http_vmx_first_byte(ctx);

    /* read to the end of its framing: the connection can serve again */
    u->keepalive = !ctx->attempt.provider_close;

    ngx_http_vmx_capacity_record(r, ctx);

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* the last attempt's failure reaches the client, and is an event too */
    switch (u->headers_in.status_n) {
    case NGX_HTTP_TOO_MANY_REQUESTS:
    case NGX_HTTP_INTERNAL_SERVER_ERROR:
    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        if (u->peer.tries <= 1) {
            ngx_http_vmx_attempt_failed(r, ctx, u->peer.connection, 0);
        }
    }

    return NGX_OK;
}


/*
 * A provider's error answer reaches the client as it came, unless it would
 * mislead or is no OpenAI error: the provider refusing the gateway's own
 * credentials (its body may even show part of them), or a body that is no
 * {"error": ...} object, like a proxy's HTML page.
 */

static ngx_int_t
ngx_http_vmx_own_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, vmx_buf_t *out)
{
    u_char            *p;
    vmx_buf_t          full;
    vmx_json_t        *root;
    ngx_uint_t         refused;
    vmx_json_error_t   err;
    u_char             message[256];

    refused = (ctx->attempt.provider_status == NGX_HTTP_UNAUTHORIZED
               || ctx->attempt.provider_status == NGX_HTTP_FORBIDDEN);

    if (!refused) {
        root = vmx_json_parse(out->data, out->len, ngx_http_vmx_json_alloc,
                              r->pool, 64, &err);

        if (root != NULL && root->type == VMX_JSON_OBJECT
            && vmx_json_get(root, "error") != NULL)
        {
            /* OpenAI's envelope whole: Groq's lacks "param" and "code" */
            p = ngx_snprintf(message, sizeof(message) - 1, "The provider %V "
                             "answered HTTP %ui",
                             &ctx->attempt.target->provider,
                             ctx->attempt.provider_status);
            *p = '\0';

            vmx_buf_init(&full, ngx_http_vmx_json_alloc, r->pool,
                         out->len + 64);

            if (vmx_openai_error_complete(&full, root,
                                          vmx_openai_error_type(status),
                                          (char *) message))
            {
                if (vmx_buf_failed(&full)) {
                    return NGX_ERROR;
                }

                *out = full;
            }

            return NGX_OK;
        }
    }

    if (refused) {
        p = ngx_snprintf(message, sizeof(message), "The provider %V refused "
                         "the credentials of connection %V (HTTP %ui)",
                         &ctx->attempt.target->provider,
                         &ctx->attempt.target->connection->id,
                         ctx->attempt.provider_status);

    } else {
        p = ngx_snprintf(message, sizeof(message), "The provider %V answered "
                         "HTTP %ui", &ctx->attempt.target->provider,
                         ctx->attempt.provider_status);
    }

    vmx_buf_init(out, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_openai_error(out, (char *) message, p - message,
                     vmx_openai_error_type(ngx_http_vmx_retry_status(status)),
                     status >= NGX_HTTP_INTERNAL_SERVER_ERROR || refused
                     ? "provider_unavailable" : "provider_error", NULL);

    return vmx_buf_failed(out) ? NGX_ERROR : NGX_OK;
}


/*
 * The error the client gets is the request's errorCode and errorMessage in
 * the audit: the envelope's code (else its type) and message.  A success
 * after failed attempts has none.
 */

static void
ngx_http_vmx_answer_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *out)
{
    const char        *v;
    size_t             len;
    vmx_json_t        *root, *error;
    vmx_json_error_t   err;

    ngx_str_null(&ctx->response.error_code);
    ngx_str_null(&ctx->response.error_message);

    if (r->upstream->headers_in.status_n < NGX_HTTP_BAD_REQUEST) {
        return;
    }

    root = vmx_json_parse(out->data, out->len, ngx_http_vmx_json_alloc,
                          r->pool, 64, &err);
    error = vmx_json_get(root, "error");

    v = vmx_json_get_str(error, "code", &len);
    if (v == NULL) {
        v = vmx_json_get_str(error, "type", &len);
    }

    if (v != NULL && len) {
        ctx->response.error_code.data = (u_char *) v;
        ctx->response.error_code.len = len;

    } else {
        ngx_str_set(&ctx->response.error_code, "provider_error");
    }

    v = vmx_json_get_str(error, "message", &len);

    if (v != NULL && len) {
        ctx->response.error_message.data = (u_char *) v;
        ctx->response.error_message.len = len;
    }
}


static void
ngx_http_vmx_abort_request(ngx_http_request_t *r)
{
    return;
}


static void
ngx_http_vmx_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;
    ngx_chain_t          *cl, **last;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    /* only a stream the provider ended or cut (not the client) goes on */
    if (!ctx->stream.streamed || !u->header_sent || r->header_only
        || r->connection->error
        || (rc != 0 && rc != NGX_HTTP_BAD_GATEWAY
            && rc != NGX_HTTP_GATEWAY_TIME_OUT))
    {
        return;
    }

    /*
     * Without a body framing, the provider's close is its stream's normal
     * end; otherwise the stream was cut.  Either way the client's stream
     * gets a proper end: nginx sends the last chunk itself only after a
     * normal end, so after a cut this sends it.
     */

    if (ngx_http_vmx_stream_close(r, ctx, rc == 0) != NGX_OK) {
        return;
    }

    ngx_http_vmx_answer_over(r, ctx);

    if (rc != 0) {
        for (last = &u->out_bufs; *last; last = &(*last)->next) { /* void */ }

        cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
        if (cl == NULL) {
            return;
        }

        ngx_memzero(cl->buf, sizeof(ngx_buf_t));
        cl->buf->last_buf = 1;
        *last = cl;
    }

    if (u->out_bufs) {
        (void) ngx_http_output_filter(r, u->out_bufs);
        u->out_bufs = NULL;
    }
}


/* the answer's body, once its header is out */

static ngx_int_t
ngx_http_vmx_filter_init(void *data)
{
    ngx_http_request_t  *r = data;

    ngx_int_t             rc;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    u->length = -1;

    if (!ctx->stream.streamed) {
        /* the answer was read whole: it goes out now */
        ngx_http_vmx_audit_capture(r, ctx, ctx->attempt.answer->pos,
                                   ctx->attempt.answer->last
                                   - ctx->attempt.answer->pos);

        if (ctx->attempt.answer->last > ctx->attempt.answer->pos) {
            u->out_bufs = ngx_alloc_chain_link(r->pool);
            if (u->out_bufs == NULL) {
                return NGX_ERROR;
            }

            u->out_bufs->buf = ctx->attempt.answer;
            u->out_bufs->next = NULL;
        }

        u->length = 0;

    } else if (ctx->attempt.body_done) {
        /* the whole stream came with its head */
        u->length = 0;
        u->keepalive = !ctx->attempt.provider_close && ctx->attempt.complete
                       && !ctx->response.stream_failed;

    } else {
        /* with a framing, a close before its end is an error, not the end */
        u->length = ctx->attempt.chunked_answer ? 1 : ctx->attempt.remaining;

        if (ctx->attempt.complete) {
            ngx_http_vmx_format_end(r, ctx);
        }
    }

    if (u->length == 0) {
        ngx_http_vmx_answer_over(r, ctx);
    }

    /*
     * what was held goes out now, behind the header nginx still holds, in
     * one write: left to nginx, the header would be flushed on its own
     */
    ctx->attempt.out_cur = NULL;

    if (u->out_bufs) {
        rc = ngx_http_output_filter(r, u->out_bufs);

        ngx_chain_update_chains(r->pool, &u->free_bufs, &u->busy_bufs,
                                &u->out_bufs, u->output.tag);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_filter(void *data, ssize_t bytes)
{
    ngx_http_request_t  *r = data;

    ngx_int_t             rc;
    ngx_buf_t            *b, in;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    b = &u->buffer;

    ngx_memzero(&in, sizeof(ngx_buf_t));
    in.pos = b->last;
    in.last = b->last + bytes;

    /*
     * The bytes are copied out, but stay in the read buffer until the
     * client has taken what came before: nginx stops reading from the
     * provider while the buffer is full, which bounds a slow client's cost.
     */
    b->last += bytes;

    if (u->length == 0) {
        /* anything after the answer's end is ignored */
        return NGX_OK;
    }

    ctx->attempt.out_cur = NULL;

    rc = ngx_http_vmx_unframe(r, ctx, &in, ngx_http_vmx_stream_data);

    if (rc == NGX_ERROR) {
        /* the client's stream ends with an error event, not a cut */
        u->length = 0;
        u->keepalive = 0;
        rc = ngx_http_vmx_stream_broken(r, ctx);

    } else if (rc == NGX_DONE) {
        u->length = 0;
        u->keepalive = !ctx->attempt.provider_close;
        rc = ngx_http_vmx_stream_close(r, ctx, 1);

    } else if (ctx->attempt.complete) {
        ngx_http_vmx_format_end(r, ctx);
    }

    if (u->length == 0) {
        ngx_http_vmx_answer_over(r, ctx);
    }

    return rc;
}


/*
 * The provider's format said the end before its body's framing did.  A
 * framing with an end of its own (the last chunk, a length) is read to it,
 * for a moment, so that the connection serves again: the end most often
 * follows in the next packet.  The answer is settled meanwhile; when the
 * end does not come, the total timer ends the answer without it.  Without
 * such a framing (the provider closes), there is nothing to wait for.
 */

static void
ngx_http_vmx_format_end(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (ctx->attempt.framing_tail) {
        return;
    }

    if (ctx->attempt.provider_close
        || !(ctx->attempt.chunked_answer || ctx->attempt.remaining > 0))
    {
        u->length = 0;
        return;
    }

    ctx->attempt.framing_tail = 1;
    ngx_http_vmx_answer_over(r, ctx);
    ngx_add_timer(&ctx->plan.total_event, NGX_HTTP_VMX_FRAMING_TAIL);
}


/*
 * The answer is whole and not yet sent: its tokens are settled now, so the
 * client's next request finds them counted as the provider reported them.
 * The log phase settles what ended otherwise (the client went away).
 */

static void
ngx_http_vmx_answer_over(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_vmx_limits_settle(r, ctx);
    ngx_http_vmx_pools_settle(r, ctx);
}


/*
 * Walks the body framing of the bytes in "in" (chunked, Content-Length or
 * until close), handing every piece of body to the handler.  Returns
 * NGX_DONE at the body's end, NGX_OK when more is to come, NGX_ERROR.
 */

static ngx_int_t
ngx_http_vmx_unframe(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_buf_t *in, ngx_http_vmx_body_pt handler)
{
    size_t     size;
    ngx_int_t  rc;

    if (!ctx->attempt.chunked_answer) {
        size = in->last - in->pos;

        if (ctx->attempt.remaining >= 0) {
            size = ngx_min((off_t) size, ctx->attempt.remaining);
            ctx->attempt.remaining -= size;
        }

        if (size && ngx_http_vmx_body(r, ctx, handler, in->pos, size)
                    != NGX_OK)
        {
            return NGX_ERROR;
        }

        in->pos += size;

        if (ctx->attempt.remaining != 0) {
            return NGX_OK;
        }

        goto done;
    }

    for ( ;; ) {
        rc = ngx_http_parse_chunked(r, in, &ctx->attempt.chunked);

        if (rc == NGX_OK) {
            size = ngx_min((off_t) (in->last - in->pos),
                           ctx->attempt.chunked.size);

            if (size && ngx_http_vmx_body(r, ctx, handler, in->pos, size)
                        != NGX_OK)
            {
                return NGX_ERROR;
            }

            in->pos += size;
            ctx->attempt.chunked.size -= size;
            continue;
        }

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_DONE) {
            goto done;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent an invalid chunked body");
        ngx_str_set(&ctx->attempt.failure,
                    "the provider sent an invalid chunked "
                    "body");
        return NGX_ERROR;
    }

done:

    if (ctx->attempt.inflate
        && vmx_inflate_finish(ctx->attempt.inflate) != VMX_INFLATE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider's compressed body ended inside its "
                      "data");
        ngx_str_set(&ctx->attempt.failure, "the provider's compressed body is "
                    "truncated");
        return NGX_ERROR;
    }

    return NGX_DONE;
}


/*
 * A piece of body to its handler, inflated first when the provider
 * compressed it: zlib's output goes on in NGX_HTTP_VMX_INFLATE_BUF pieces,
 * so a small body that inflates to a lot is never whole in memory (whole
 * answers stay bound by vmx_max_response_size, stream events by
 * NGX_HTTP_VMX_SSE_EVENT_MAX).
 */

typedef struct {
    ngx_http_request_t          *request;
    ngx_http_vmx_ctx_t          *ctx;
    ngx_http_vmx_body_pt         handler;
} ngx_http_vmx_inflating_t;


static ngx_int_t
ngx_http_vmx_body(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_body_pt handler, u_char *data, size_t len)
{
    int                       rc;
    ngx_http_vmx_inflating_t  in;

    if (ctx->attempt.inflate == NULL) {
        return handler(r, ctx, data, len);
    }

    in.request = r;
    in.ctx = ctx;
    in.handler = handler;

    rc = vmx_inflate_feed(ctx->attempt.inflate, (char *) data, len,
                          ngx_http_vmx_inflated, &in);

    if (rc == VMX_INFLATE_OK) {
        return NGX_OK;
    }

    if (rc < 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider's compressed body is %s",
                      vmx_inflate_strerror(rc));
        ngx_str_set(&ctx->attempt.failure, "the provider's compressed body is "
                    "corrupt");
    }

    return NGX_ERROR;
}


static int
ngx_http_vmx_inflated(void *data, const char *p, size_t len)
{
    ngx_http_vmx_inflating_t  *in = data;

    return in->handler(in->request, in->ctx, (u_char *) p, len) == NGX_OK
           ? 0 : 1;
}


/* a whole answer is collected, up to vmx_max_response_size */

static ngx_int_t
ngx_http_vmx_collect(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *data, size_t len)
{
    u_char                   *p;
    size_t                    size, used;
    ngx_http_vmx_loc_conf_t  *vlcf;

    if (ctx->attempt.answer
        && (size_t) (ctx->attempt.answer->end - ctx->attempt.answer->last)
           >= len)
    {
        ctx->attempt.answer->last = ngx_cpymem(ctx->attempt.answer->last, data,
                                               len);
        return NGX_OK;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

    used = ctx->attempt.answer ? (size_t) (ctx->attempt.answer->last
                                           - ctx->attempt.answer->pos) : 0;

    for (size = 16384; size < used + len; size *= 2) { /* void */ }

    if (size > vlcf->max_response && used + len > vlcf->max_response) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: the provider's answer exceeds "
                      "vmx_max_response_size");
        ngx_str_set(&ctx->attempt.failure, "the provider's answer exceeds "
                    "vmx_max_response_size");
        return NGX_ERROR;
    }

    p = ngx_palloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ctx->attempt.answer == NULL) {
        ctx->attempt.answer = ngx_calloc_buf(r->pool);
        if (ctx->attempt.answer == NULL) {
            return NGX_ERROR;
        }

    } else {
        ngx_memcpy(p, ctx->attempt.answer->pos, used);
    }

    ctx->attempt.answer->start = p;
    ctx->attempt.answer->pos = p;
    ctx->attempt.answer->last = ngx_cpymem(p + used, data, len);
    ctx->attempt.answer->end = p + size;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_stream_data(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *data, size_t len)
{
    int  rc;

    /* a handler's stop (> 0) has its reason in ctx already */

    if (ctx->stream.eventstream) {
        rc = vmx_eventstream_feed(&ctx->stream.es, (char *) data, len,
                                  ngx_http_vmx_es_message, r);

        if (rc < 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: provider sent a broken eventstream (%d)", rc);

            if (rc == VMX_EVENTSTREAM_BAD_CRC) {
                ngx_str_set(&ctx->attempt.failure, "the provider's eventstream "
                            "failed its CRC check");

            } else if (rc == VMX_EVENTSTREAM_TOO_LARGE) {
                ngx_str_set(&ctx->attempt.failure,
                            "the provider sent an eventstream "
                            "message over 256 KB");

            } else {
                ngx_str_set(&ctx->attempt.failure,
                            "the provider sent a malformed "
                            "eventstream");
            }
        }

        return (rc == VMX_EVENTSTREAM_OK) ? NGX_OK : NGX_ERROR;
    }

    rc = vmx_sse_feed(&ctx->stream.sse, (char *) data, len,
                      ngx_http_vmx_sse_event, r);

    if (rc == VMX_SSE_TOO_LARGE) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent a stream event over %uz bytes",
                      (size_t) NGX_HTTP_VMX_SSE_EVENT_MAX);
        ngx_str_set(&ctx->attempt.failure,
                    "the provider sent a stream event over "
                    "256 KB");
    }

    return (rc == VMX_SSE_OK) ? NGX_OK : NGX_ERROR;
}


static int
ngx_http_vmx_sse_event(void *data, const char *event, size_t event_len,
    const char *payload, size_t payload_len)
{
    ngx_http_request_t  *r = data;

    ngx_str_t  name, value;

    name.data = (u_char *) event;
    name.len = event_len;
    value.data = (u_char *) payload;
    value.len = payload_len;

    return ngx_http_vmx_stream_event(r, &name, &value);
}


/* a message of AWS's binary eventstream framing */

static int
ngx_http_vmx_es_message(void *data, const vmx_eventstream_message_t *m)
{
    ngx_http_request_t  *r = data;

    int                  rc;
    ngx_str_t            name, value;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    name.data = (u_char *) m->event_type.data;
    name.len = m->event_type.data ? m->event_type.len : 0;
    value.data = (u_char *) m->payload;
    value.len = m->payload_len;

    ctx->stream.es_message = m;
    rc = ngx_http_vmx_stream_event(r, &name, &value);
    ctx->stream.es_message = NULL;

    return rc;
}


static int
ngx_http_vmx_stream_event(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_str_t            code, message, reason;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (ctx->attempt.complete) {
        /* nothing counts after the provider's own end */
        return 0;
    }

    ctx->response.scratch.len = 0;
    ctx->stream.stream_error = NULL;

    if (ctx->attempt.provider->stream_event(r, ctx, name, value,
                                            &ctx->response.scratch)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent an unreadable stream event");
        ngx_str_set(&ctx->attempt.failure,
                    "the provider sent an unreadable stream "
                    "event");
        return 1;
    }

    if (ctx->stream.stream_error) {
        if (ctx->stream.holding) {
            /* the client has seen nothing: the attempt fails instead */
            return 1;
        }

        code.data = (u_char *) ctx->stream.stream_error->code;
        code.len = ctx->stream.stream_error->code_len;
        message.data = (u_char *) ctx->stream.stream_error->message;
        message.len = ctx->stream.stream_error->message_len;

        if (code.len == 0) {
            ngx_str_set(&code, "provider_stream_error");
        }

        ngx_str_set(&reason, "the provider's stream failed with an error "
                    "event");

        ngx_http_vmx_stream_failed(r, ctx, ctx->stream.stream_error->status,
                                   &code, &message, &reason);
    }

    if (ctx->stream.holding && ctx->response.scratch.len) {
        ctx->stream.held += ctx->response.scratch.len;

        if ((ctx->stream.held > NGX_HTTP_VMX_HELD_MAX
             || vmx_openai_stream_substantive(ctx->response.scratch.data,
                                              ctx->response.scratch.len,
                                              ngx_http_vmx_json_alloc,
                                              r->pool))
            && ngx_http_vmx_stream_release(r, ctx) != NGX_OK)
        {
            return 1;
        }
    }

    return (ngx_http_vmx_stream_out(r, ctx) == NGX_OK) ? 0 : 1;
}


/* the stream's first content came: what was held is the client's */

static ngx_int_t
ngx_http_vmx_stream_release(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_chain_t  *cl;

    ctx->stream.holding = 0;
    ngx_str_null(&ctx->attempt.failure);

    /* a failed attempt's error is not the request's any more */
    ngx_str_null(&ctx->response.error_code);
    ngx_str_null(&ctx->response.error_message);

    ngx_http_vmx_first_byte(ctx);

    for (cl = r->upstream->out_bufs; cl; cl = cl->next) {
        ngx_http_vmx_audit_capture(r, ctx, cl->buf->pos,
                                   cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


/* the translated events of this read go to the client */

static ngx_int_t
ngx_http_vmx_stream_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    u_char  *p;

    if (vmx_buf_failed(&ctx->response.scratch)) {
        return NGX_ERROR;
    }

    if (ctx->response.scratch.len == 0) {
        return NGX_OK;
    }

    p = ngx_http_vmx_out(r, ctx, ctx->response.scratch.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->attempt.out_cur->last = ngx_cpymem(p, ctx->response.scratch.data,
                                            ctx->response.scratch.len);

    if (!ctx->stream.holding) {
        ngx_http_vmx_first_byte(ctx);
        ngx_http_vmx_audit_capture(r, ctx,
                                   (u_char *) ctx->response.scratch.data,
                                   ctx->response.scratch.len);
    }

    return NGX_OK;
}


/*
 * The provider's stream is over: a last event may lack its blank line, the
 * provider's format may have its own end.
 */

static ngx_int_t
ngx_http_vmx_stream_finish(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t normal)
{
    if (!ctx->stream.eventstream && !ctx->attempt.complete) {
        /* a stop or an error here leaves the stream incomplete */
        (void) vmx_sse_finish(&ctx->stream.sse, ngx_http_vmx_sse_event, r);
    }

    if (!ctx->attempt.complete && normal
        && !(ctx->attempt.inflate
             && vmx_inflate_finish(ctx->attempt.inflate) != VMX_INFLATE_OK))
    {
        ctx->response.scratch.len = 0;
        ctx->attempt.provider->stream_end(r, ctx, &ctx->response.scratch);

        if (ngx_http_vmx_stream_out(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The client's stream ends: a stream that did not end as its format says
 * gets an error event, since after the first byte that is the only way to
 * tell the client, and fails the attempt.
 */

static ngx_int_t
ngx_http_vmx_stream_close(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t normal)
{
    u_char            *p;
    ngx_str_t          code, message, reason;
    static const char  cut[] = "The provider's stream ended before it was "
                               "complete";
    static const char  late[] = "The provider's stream timed out: ";

    ctx->attempt.out_cur = NULL;

    if (ngx_http_vmx_stream_finish(r, ctx, normal) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->attempt.complete) {
        return NGX_OK;
    }

    ngx_str_null(&reason);

    if (!normal) {
        reason = ngx_http_vmx_timeout_reason(r, ctx,
                                             r->upstream->peer.connection);
    }

    if (reason.len) {
        p = ngx_pnalloc(r->pool, sizeof(late) - 1 + reason.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* the client's message names the timeout, as the reason does */
        ngx_str_set(&code, "provider_timeout");
        message.data = p;
        p = ngx_cpymem(p, late, sizeof(late) - 1);
        p = ngx_cpymem(p, reason.data, reason.len);
        message.len = p - message.data;

        return ngx_http_vmx_stream_end(r, ctx, &code, &message, &reason);
    }

    ngx_str_set(&code, "provider_stream_interrupted");
    message.data = (u_char *) cut;
    message.len = sizeof(cut) - 1;

    if (ctx->attempt.inflate
        && vmx_inflate_finish(ctx->attempt.inflate) != VMX_INFLATE_OK)
    {
        ngx_str_set(&reason, "the provider's compressed stream ended inside "
                    "its data");

    } else if (normal) {
        ngx_str_set(&reason, "the provider's stream ended before it was "
                    "complete");

    } else {
        ngx_str_set(&reason, "the provider's connection broke in the middle "
                    "of its stream");
    }

    return ngx_http_vmx_stream_end(r, ctx, &code, &message, &reason);
}


/* the provider's stream broke after its first content: a CRC, a frame, an
   event or compressed data that cannot be read (ctx->attempt.failure says
   which) */

static ngx_int_t
ngx_http_vmx_stream_broken(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_str_t          code, message, reason;
    static const char  broken[] = "The provider's stream broke off: it sent "
                                  "data that could not be read";

    if (ctx->attempt.complete) {
        return NGX_OK;
    }

    ngx_str_set(&code, "provider_stream_broken");
    message.data = (u_char *) broken;
    message.len = sizeof(broken) - 1;
    reason = ctx->attempt.failure;

    if (reason.len == 0) {
        ngx_str_set(&reason, "the provider sent a broken stream");
    }

    return ngx_http_vmx_stream_end(r, ctx, &code, &message, &reason);
}


/* a stream the provider broke after its first content (a 502 for
   errorRate()): the client's closing error event, and the stream's end;
   code is a literal (NUL-terminated) */

static ngx_int_t
ngx_http_vmx_stream_end(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_str_t *code, ngx_str_t *message, ngx_str_t *reason)
{
    ngx_http_vmx_stream_failed(r, ctx, NGX_HTTP_BAD_GATEWAY, code, message,
                               reason);

    ctx->response.scratch.len = 0;
    vmx_openai_error_event(&ctx->response.scratch, (char *) message->data,
                           message->len, "server_error", (char *) code->data);

    if (ngx_http_vmx_stream_out(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->attempt.complete = 1;

    return NGX_OK;
}


/*
 * An error after the client's first byte: no fallback is possible, but the
 * attempt failed, for the audit (failureReason, errorCode, errorMessage),
 * errorRate() (the status the error stands for) and the metrics.
 */

static void
ngx_http_vmx_stream_failed(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *code, ngx_str_t *message, ngx_str_t *reason)
{
    ngx_http_vmx_attempt_t  *a;

    ctx->response.stream_failed = 1;
    ctx->response.error_code = *code;
    ctx->response.error_message = *message;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vmx: %V model \"%V\" failed in its stream (%V): %V",
                  &ctx->attempt.target->provider, &ctx->attempt.target->model,
                  reason, message);

    if (ctx->plan.nattempts == 0) {
        return;
    }

    a = &ctx->plan.attempt_log[ctx->plan.nattempts - 1];

    if (a->failed) {
        return;
    }

    a->failed = 1;
    a->failure = *reason;
    a->ended_usec = ngx_http_vmx_usec();

    ngx_http_vmx_health_record(r, ctx->attempt.target, (ngx_int_t) status,
                               a->ended_usec - a->started_usec);
}


/*
 * Room for size bytes at the end of the current output buffer of this read;
 * buffers the client has consumed come back through u->free_bufs.
 */

u_char *
ngx_http_vmx_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, size_t size)
{
    ngx_buf_t            *b;
    ngx_chain_t          *cl, **last;
    ngx_http_upstream_t  *u;

    b = ctx->attempt.out_cur;

    if (b && (size_t) (b->end - b->last) >= size) {
        return b->last;
    }

    u = r->upstream;

    cl = ngx_chain_get_free_buf(r->pool, &u->free_bufs);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < size) {
        b->start = ngx_palloc(r->pool, ngx_max(size, 4096));
        if (b->start == NULL) {
            return NULL;
        }

        b->end = b->start + ngx_max(size, 4096);
    }

    b->pos = b->start;
    b->last = b->start;
    b->temporary = 1;
    b->flush = 1;
    b->tag = u->output.tag;

    for (last = &u->out_bufs; *last; last = &(*last)->next) { /* void */ }
    *last = cl;

    ctx->attempt.out_cur = b;

    return b->last;
}


/* the peer selector: one peer per model of the plan */

static ngx_int_t
ngx_http_vmx_peer_init(ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    r->upstream->peer.get = ngx_http_vmx_peer_get;
    r->upstream->peer.free = ngx_http_vmx_peer_free;
    r->upstream->peer.data = r;
    r->upstream->peer.tries = ctx->plan.ntargets;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_peer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_request_t  *r = data;

    ngx_addr_t                 *addr;
    ngx_uint_t                  next_call;
    ngx_time_t                 *tp;
    ngx_http_upstream_t        *u;
    ngx_chain_t                *first_request;
    ngx_http_vmx_scope_t        scope;
    ngx_http_vmx_build_e        build;
    ngx_http_vmx_attempt_t     *attempt;
    ngx_http_vmx_ctx_t         *ctx;
    ngx_http_vmx_target_t      *target;
    ngx_http_vmx_connection_t  *conn;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    /* the next call of an attempt: its target, admitted once */
    next_call = ctx->plan.next_call;
    ctx->plan.next_call = 0;

    if (next_call) {
        target = ctx->attempt.target;

    } else if (ctx->plan.next < ctx->plan.ntargets) {
        target = ctx->plan.targets[ctx->plan.next++];
        ctx->plan.attempts++;
        ctx->plan.call = 0;

    } else {
        return NGX_BUSY;
    }

    conn = target->connection;

    if (!next_call && ctx->plan.nattempts < NGX_HTTP_VMX_MAX_EVENTS) {
        attempt = &ctx->plan.attempt_log[ctx->plan.nattempts++];
        ngx_memzero(attempt, sizeof(ngx_http_vmx_attempt_t));

        tp = ngx_timeofday();
        attempt->target = target;
        ngx_http_vmx_span_id(attempt->span_id);
        attempt->started_ms = (ngx_msec_t) (tp->sec * 1000 + tp->msec);
        attempt->started_usec = ngx_http_vmx_usec();
    }

    /* this attempt starts afresh; the request built when it was checked
       serves the first attempt only, with the stage built for it */
    u->process_header = ngx_http_vmx_process_status_line;
    r->state = 0;

    first_request = ctx->plan.first_request;
    ctx->plan.first_request = NULL;

    if (first_request == NULL) {
        ngx_http_vmx_attempt_reset(ctx, target);
    }

    /* output a failed attempt held is not the client's */
    u->out_bufs = NULL;

    addr = &conn->addrs[conn->naddrs > 1 ? ngx_random() % conn->naddrs : 0];

    /* a new connection unless the keepalive cache has one */
    pc->cached = 0;
    pc->connection = NULL;

    pc->sockaddr = addr->sockaddr;
    pc->socklen = addr->socklen;
    pc->name = &addr->name;

#if (NGX_HTTP_SSL)
    u->ssl = conn->https;
    u->ssl_name = conn->host;
#endif

    /* the connection's own capacity; none left: the next model */

    scope.kind = 'c';
    scope.level = "Connection";
    scope.id = conn->id;
    scope.name = conn->name;
    scope.limits = &conn->limits;
    scope.ahead = 0;

    switch (next_call ? NGX_HTTP_VMX_ADMIT_PASS
                      : ngx_http_vmx_limits_admit(r, ctx, &scope, 1,
                                           (ngx_int_t) ctx->plan.nattempts - 1))
    {
    case NGX_HTTP_VMX_ADMIT_PASS:
        break;

    case NGX_HTTP_VMX_ADMIT_DENY:
        ctx->admission.capacity_failures++;
        return NGX_DECLINED;

    default: /* NGX_HTTP_VMX_ADMIT_ERROR: only the gate waits */
        return NGX_ERROR;
    }

    if (first_request) {
        u->request_bufs = first_request;
        build = NGX_HTTP_VMX_BUILD_OK;

        if (ctx->plan.nattempts) {
            ngx_memcpy(ctx->plan.attempt_log[ctx->plan.nattempts - 1].span_id,
                       ctx->request.first_span, 16);
        }

    } else {
        build = ngx_http_vmx_provider_request(r, ctx, &u->request_bufs);
    }

    switch (build) {

    case NGX_HTTP_VMX_BUILD_OK:
        break;

    case NGX_HTTP_VMX_BUILD_UNTRANSLATABLE:
    case NGX_HTTP_VMX_BUILD_UNAVAILABLE:
        /* this attempt fails before it starts: the next model is tried */
        return NGX_DECLINED;

    default: /* NGX_HTTP_VMX_BUILD_ERROR */
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "vmx: attempt %ui: %V model \"%V\"", ctx->plan.attempts,
                   &ctx->attempt.target->provider, &ctx->attempt.target->model);

    ngx_http_vmx_attempt_timeouts(r, ctx);

    if (ctx->plan.reconnect) {
        ctx->plan.reconnect = 0;
        return NGX_OK;
    }

    return ngx_http_vmx_keepalive_get(pc, conn);
}


/*
 * A new attempt at target: its stages start afresh, all zero but for what
 * is unknown until the provider says it.
 */

void
ngx_http_vmx_attempt_reset(ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_target_t *target)
{
    ngx_memzero(&ctx->attempt, sizeof(ngx_http_vmx_ctx_attempt_t));
    ngx_memzero(&ctx->stream, sizeof(ngx_http_vmx_ctx_stream_t));

    ctx->attempt.target = target;
    ctx->attempt.requests_limit = NGX_ERROR;
    ctx->attempt.tokens_limit = NGX_ERROR;
    ctx->attempt.remaining = -1;
    vmx_usage_init(&ctx->attempt.usage);
}


/*
 * The attempt's timeouts: the resource's, else its connection's, else the
 * location's.  nginx arms connect_timeout for the TCP and TLS set-up and
 * read_timeout once the request is sent: that is the first byte's, until
 * the provider's header came (ngx_http_vmx_idle()).  The total timer runs
 * until peer.free.
 */

static void
ngx_http_vmx_attempt_timeouts(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    vmx_cfg_timeouts_t       *rt, *ct;
    ngx_http_upstream_t      *u;
    ngx_http_vmx_loc_conf_t  *vlcf;

    u = r->upstream;
    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);
    rt = &ctx->request.resource->timeouts;
    ct = &ctx->attempt.target->connection->timeouts;

#define ngx_http_vmx_timeout(member, dflt)                                    \
    (rt->member ? (ngx_msec_t) rt->member                                     \
                : ct->member ? (ngx_msec_t) ct->member : (dflt))

    u->conf->connect_timeout = ngx_http_vmx_timeout(connect_ms,
                                                    vlcf->upstream
                                                    .connect_timeout);
    ctx->attempt.first_byte_timeout = ngx_http_vmx_timeout(first_byte_ms,
                                                   vlcf->first_byte_timeout);
    ctx->attempt.idle_timeout = ngx_http_vmx_timeout(idle_ms,
                                                     vlcf->idle_timeout);
    ctx->attempt.total_timeout = ngx_http_vmx_timeout(total_ms,
                                                      vlcf->total_timeout);

#undef ngx_http_vmx_timeout

    u->conf->read_timeout = ctx->attempt.first_byte_timeout;

    /* running: the attempt's next call */
    if (!ctx->plan.total_event.timer_set) {
        ngx_add_timer(&ctx->plan.total_event, ctx->attempt.total_timeout);
    }
}


/* the provider's header came, and now more of its answer: the wait for
   the next read is the idle timeout's */

static void
ngx_http_vmx_idle(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;
    u->conf->read_timeout = ctx->attempt.idle_timeout;

    if (u->peer.connection) {
        ngx_add_timer(u->peer.connection->read, ctx->attempt.idle_timeout);
    }
}


/*
 * The attempt took longer than its total timeout: its connection's read
 * times out, so that nginx's own timeout path ends it (the next model while
 * the client has seen nothing, else the stream's closing error event).
 */

static void
ngx_http_vmx_total_timeout(ngx_event_t *ev)
{
    ngx_http_request_t  *r = ev->data;

    ngx_connection_t    *c;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    c = r->upstream->peer.connection;

    if (c != NULL && ctx->attempt.framing_tail) {
        /* the end of a whole answer's framing did not come: the answer
           ends without it, and its connection is not kept */
        r->upstream->length = 0;
        r->upstream->keepalive = 0;
        r->write_event_handler(r);
        ngx_http_run_posted_requests(r->connection);
        return;
    }

    /* a whole answer read: only the client is slow */
    if (c == NULL || ctx->attempt.complete) {
        return;
    }

    ctx->attempt.total_timedout = 1;

    c->read->timedout = 1;
    c->read->handler(c->read);
}


static void
ngx_http_vmx_total_cleanup(void *data)
{
    ngx_http_vmx_ctx_t  *ctx = data;

    if (ctx->plan.total_event.timer_set) {
        ngx_del_timer(&ctx->plan.total_event);
    }
}


/*
 * Which timeout ended the attempt on connection c, as its failure reason
 * (the name first: the audit and the client's message tell them apart); an
 * empty string when none did.
 */

static ngx_str_t
ngx_http_vmx_timeout_reason(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_connection_t *c)
{
    u_char               *p;
    ngx_str_t             reason;
    ngx_msec_t            ms;
    const char           *fmt;
    ngx_http_upstream_t  *u;

    ngx_str_null(&reason);

    if (c == NULL || !(c->read->timedout || c->write->timedout)) {
        return reason;
    }

    u = r->upstream;

    if (ctx->attempt.total_timedout) {
        fmt = "total_timeout: the provider's answer took longer than %M ms";
        ms = ctx->attempt.total_timeout;

    } else if (c->read->timedout && ctx->attempt.answered) {
        fmt = "idle_timeout: the provider sent nothing for %M ms";
        ms = ctx->attempt.idle_timeout;

    } else if (c->read->timedout) {
        fmt = "first_byte_timeout: the provider's answer did not start "
              "within %M ms";
        ms = ctx->attempt.first_byte_timeout;

    } else if (!u->request_sent) {
        fmt = "connect_timeout: no connection to the provider within %M ms";
        ms = u->conf->connect_timeout;

    } else {
        fmt = "send_timeout: the request could not be sent to the provider "
              "within %M ms";
        ms = u->conf->send_timeout;
    }

    p = ngx_pnalloc(r->pool, ngx_strlen(fmt) + NGX_INT_T_LEN);
    if (p == NULL) {
        ngx_str_set(&reason, "provider timed out");
        return reason;
    }

    reason.data = p;
    reason.len = ngx_sprintf(p, fmt, ms) - p;

    return reason;
}


static void
ngx_http_vmx_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_request_t  *r = data;

    ngx_connection_t    *c;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    c = pc->connection;

    if (ctx->plan.next_call) {
        /* the attempt goes on with its next call, on this connection if
           it can serve again (nginx saw a failure: see answer_ready) */
        ngx_http_vmx_keepalive_save(pc, r->upstream,
                                    ctx->attempt.target->connection, 0);
        return;
    }

    if (ctx->plan.total_event.timer_set) {
        ngx_del_timer(&ctx->plan.total_event);
    }

    if (pc->tries) {
        pc->tries--;
    }

    if (state & NGX_PEER_FAILED) {

        if (pc->cached && !ctx->attempt.answered && c
            && !c->read->timedout && !c->write->timedout)
        {
            /*
             * a kept connection the provider had closed: nginx tries the
             * same peer again, so does the plan, on a new connection (not
             * on each kept one in turn, which a provider resetting them
             * all would cost an attempt each); past an attempt's first
             * call, its current call again
             */
            if (ctx->plan.call) {
                ctx->plan.next_call = 1;

            } else {
                ctx->plan.next--;
                ctx->plan.attempts--;
                ctx->plan.nattempts--;
            }

            ctx->plan.reconnect = 1;
            return;
        }

        ngx_http_vmx_attempt_failed(r, ctx, c, pc->tries);
        return;
    }

    ngx_http_vmx_keepalive_save(pc, r->upstream,
                                ctx->attempt.target->connection, state);
}


/* the time to the first token of the current attempt, once */

static void
ngx_http_vmx_first_byte(ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_vmx_attempt_t  *a;

    if (ctx->plan.nattempts == 0) {
        return;
    }

    a = &ctx->plan.attempt_log[ctx->plan.nattempts - 1];

    if (a->first_byte_usec == 0) {
        a->first_byte_usec = ngx_http_vmx_usec();
    }
}


/*
 * A failed attempt is a fallback event of the request, when the resource
 * falls back (with useFallback false it stays a failed attempt).
 */

static void
ngx_http_vmx_attempt_failed(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_connection_t *c, ngx_uint_t tries_left)
{
    u_char                  *p;
    ngx_str_t                reason;
    ngx_time_t              *tp;
    ngx_http_vmx_event_t    *ev;
    ngx_http_vmx_attempt_t  *a;

    if (ctx->attempt.target == NULL) {
        return;
    }

    if (ctx->attempt.failure.len) {
        reason = ctx->attempt.failure;

    } else if (c && (c->read->timedout || c->write->timedout)) {
        reason = ngx_http_vmx_timeout_reason(r, ctx, c);

    } else if (ctx->attempt.provider_status / 100 > 2) {
        p = ngx_pnalloc(r->pool, sizeof("provider answered HTTP ")
                                 + NGX_INT_T_LEN);
        if (p == NULL) {
            ngx_str_set(&reason, "provider answered with an error");

        } else {
            reason.data = p;
            reason.len = ngx_sprintf(p, "provider answered HTTP %ui",
                                     ctx->attempt.provider_status) - p;
        }

    } else if (ctx->attempt.answered) {
        ngx_str_set(&reason, "provider's answer was cut short");

    } else if (c && c->read->eof) {
        ngx_str_set(&reason, "provider closed the connection");

    } else {
        ngx_str_set(&reason, "provider could not be reached");
    }

    ev = ctx->request.resource->use_fallback ? ngx_http_vmx_event_add(r, ctx)
                                             : NULL;

    if (ev != NULL) {
        ev->provider = ctx->attempt.target->provider;
        ev->model = ctx->attempt.target->model;
        ev->connection_id = ctx->attempt.target->connection->id;
        ev->status = ctx->attempt.provider_status;
        ev->reason = reason;
        tp = ngx_timeofday();
        ev->time = (ngx_msec_t) (tp->sec * 1000 + tp->msec);
    }

    if (ctx->plan.nattempts) {
        ngx_http_vmx_limits_release(r, ctx, ctx->plan.nattempts - 1);

        a = &ctx->plan.attempt_log[ctx->plan.nattempts - 1];
        a->failed = 1;
        a->status = ctx->attempt.provider_status;
        a->failure = reason;
        a->ended_usec = ngx_http_vmx_usec();

        ngx_http_vmx_health_record(r, ctx->attempt.target,
                                   a->status ? (ngx_int_t) a->status : -1,
                                   a->ended_usec - a->started_usec);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vmx: %V model \"%V\" failed (%V), %s",
                  &ctx->attempt.target->provider, &ctx->attempt.target->model,
                  &reason, tries_left ? "falling back" : "no fallback left");
}


/* configuration */

ngx_int_t
ngx_http_vmx_upstream_conf(ngx_conf_t *cf, ngx_http_vmx_loc_conf_t *prev,
    ngx_http_vmx_loc_conf_t *conf)
{
    ngx_ssl_t                     *ssl;
    ngx_pool_cleanup_t            *cln;
    ngx_http_upstream_srv_conf_t  *uscf;

    /*
     * Suited to LLM calls: a provider's host answers a connect at once; a
     * whole answer's header comes when the model has written all of it;
     * a stream's events come seconds apart at most (Anthropic pings); a
     * long answer of a slow model takes minutes.
     */
    ngx_conf_merge_msec_value(conf->upstream.connect_timeout,
                              prev->upstream.connect_timeout, 5000);
    ngx_conf_merge_msec_value(conf->upstream.send_timeout,
                              prev->upstream.send_timeout, 60000);
    ngx_conf_merge_msec_value(conf->first_byte_timeout,
                              prev->first_byte_timeout, 120000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 30000);
    ngx_conf_merge_msec_value(conf->total_timeout, prev->total_timeout,
                              600000);
    conf->upstream.read_timeout = conf->first_byte_timeout;
    ngx_conf_merge_size_value(conf->upstream.buffer_size,
                              prev->upstream.buffer_size, 16384);
    ngx_conf_merge_value(conf->upstream.ssl_verify,
                         prev->upstream.ssl_verify, 1);

    if (!conf->gateway) {
        return NGX_OK;
    }

    conf->upstream.buffering = 0;
    conf->upstream.ignore_client_abort = 0;
    conf->upstream.intercept_errors = 0;
    conf->upstream.pass_request_headers = 0;
    conf->upstream.pass_request_body = 0;
    conf->upstream.next_upstream_tries = 0;
    conf->upstream.next_upstream_timeout = 0;
    conf->upstream.next_upstream = NGX_HTTP_UPSTREAM_FT_ERROR
                                   |NGX_HTTP_UPSTREAM_FT_TIMEOUT
                                   |NGX_HTTP_UPSTREAM_FT_INVALID_HEADER
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_500
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_502
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_503
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_504
                                   |NGX_HTTP_UPSTREAM_FT_HTTP_429
                                   |NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT;

    uscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_upstream_srv_conf_t));
    if (uscf == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&uscf->host, "vmx_provider");
    uscf->peer.init = ngx_http_vmx_peer_init;
    conf->upstream.upstream = uscf;

    /* one TLS context for the location's providers */

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    if (conf->ssl_trusted_certificate.len) {
        if (ngx_ssl_trusted_certificate(cf, ssl,
                                        &conf->ssl_trusted_certificate, 4)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                      "SSL_CTX_set_default_verify_paths() failed");
        return NGX_ERROR;
    }

    conf->upstream.ssl = ssl;
    conf->upstream.ssl_server_name = 1;
    conf->upstream.ssl_session_reuse = 0;

    return NGX_OK;
}
