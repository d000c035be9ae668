/*
 * VM-X gateway: provider attempts.
 *
 * The module's own ngx_http_upstream_t with a private peer selector: every
 * peer.get takes the next model of the request's plan and builds that
 * provider's request, so a connect failure never sends one provider's body
 * to another.  Failures that allow a retry (connect error, timeout, 429,
 * 5xx) move on through nginx's next_upstream while nothing has reached the
 * client.  Answers are read unbuffered: streamed events are passed on as
 * they arrive, a non-streamed answer is collected to read its usage.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_SSE_EVENT_MAX   (256 * 1024)


static ngx_int_t ngx_http_vmx_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_build_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_http_vmx_target_t *target);
static ngx_int_t ngx_http_vmx_reinit_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_process_status_line(ngx_http_request_t *r);
static ngx_int_t ngx_http_vmx_process_header(ngx_http_request_t *r);
static void ngx_http_vmx_abort_request(ngx_http_request_t *r);
static void ngx_http_vmx_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_vmx_filter_init(void *data);
static ngx_int_t ngx_http_vmx_filter(void *data, ssize_t bytes);
static ngx_int_t ngx_http_vmx_consume(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, u_char *data, size_t len);
static int ngx_http_vmx_openai_event(void *data, const char *event,
    size_t event_len, const char *payload, size_t payload_len);
static ngx_int_t ngx_http_vmx_emit_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t ***last);
static u_char *ngx_http_vmx_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    size_t size);
static void ngx_http_vmx_read_usage(ngx_http_vmx_ctx_t *ctx,
    vmx_json_t *usage);
static ngx_flag_t ngx_http_vmx_has_usage(const u_char *p, size_t len);

static ngx_int_t ngx_http_vmx_peer_init(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_vmx_peer_get(ngx_peer_connection_t *pc, void *data);
static void ngx_http_vmx_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_http_vmx_attempt_failed(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_connection_t *c, ngx_uint_t tries_left);


ngx_int_t
ngx_http_vmx_upstream_start(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_upstream_t      *u;
    ngx_http_vmx_loc_conf_t  *vlcf;

    if (ngx_http_upstream_create(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

    u = r->upstream;

    ngx_str_set(&u->schema, "vmx://");
    u->output.tag = (ngx_buf_tag_t) &ngx_http_vmx_module;
    u->conf = &vlcf->upstream;

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


/* the request of one attempt, built when its peer is chosen */

static ngx_int_t
ngx_http_vmx_create_request(ngx_http_request_t *r)
{
    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_build_request(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_target_t *target)
{
    u_char                     *p;
    size_t                      len;
    ngx_buf_t                  *head, *body;
    ngx_chain_t                *cl;
    vmx_json_t                 *member, *option;
    ngx_http_vmx_connection_t  *conn;

    conn = target->connection;

    /* the body: the client's members as they came, but for ours */

    len = sizeof("{\"model\":\"\"}") - 1
          + vmx_json_escape(NULL, (char *) target->model.data,
                            target->model.len);

    for (member = ctx->body->child; member; member = member->next) {
        len += sizeof(",\"\":") - 1 + member->raw_len
               + vmx_json_escape(NULL, member->key, member->key_len);
    }

    if (ctx->stream) {
        /* usage is always asked for; the client gets it only if it asked */
        len += sizeof(",\"stream_options\":{\"include_usage\":true}") - 1;
    }

    body = ngx_create_temp_buf(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body->last, "{\"model\":\"", sizeof("{\"model\":\"") - 1);
    p += vmx_json_escape((char *) p, (char *) target->model.data,
                         target->model.len);
    *p++ = '"';

    for (member = ctx->body->child; member; member = member->next) {

        if ((member->key_len == 5 && ngx_strncmp(member->key, "model", 5) == 0)
            || (member->key_len == 3 && ngx_strncmp(member->key, "vmx", 3) == 0)
            || (ctx->stream && member->key_len == 14
                && ngx_strncmp(member->key, "stream_options", 14) == 0))
        {
            continue;
        }

        *p++ = ',';
        *p++ = '"';
        p += vmx_json_escape((char *) p, member->key, member->key_len);
        *p++ = '"';
        *p++ = ':';
        p = ngx_cpymem(p, member->raw, member->raw_len);
    }

    if (ctx->stream) {
        p = ngx_cpymem(p, ",\"stream_options\":{",
                       sizeof(",\"stream_options\":{") - 1);

        member = vmx_json_get(ctx->body, "stream_options");
        option = (member && member->type == VMX_JSON_OBJECT) ? member->child
                                                              : NULL;

        for ( /* void */ ; option; option = option->next) {
            if (option->key_len == 13
                && ngx_strncmp(option->key, "include_usage", 13) == 0)
            {
                continue;
            }

            *p++ = '"';
            p += vmx_json_escape((char *) p, option->key, option->key_len);
            *p++ = '"';
            *p++ = ':';
            p = ngx_cpymem(p, option->raw, option->raw_len);
            *p++ = ',';
        }

        p = ngx_cpymem(p, "\"include_usage\":true}",
                       sizeof("\"include_usage\":true}") - 1);
    }

    *p++ = '}';
    body->last = p;

    /* the header */

    len = sizeof("POST /chat/completions HTTP/1.1" CRLF) - 1
          + conn->base_path.len
          + sizeof("Host: " CRLF) - 1 + conn->host_header.len
          + sizeof("Authorization: Bearer " CRLF) - 1 + conn->api_key.len
          + sizeof("Content-Type: application/json" CRLF) - 1
          + sizeof("Accept: text/event-stream" CRLF) - 1
          + sizeof("User-Agent: vmx-gateway" CRLF) - 1
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof("Connection: close" CRLF CRLF) - 1;

    head = ngx_create_temp_buf(r->pool, len);
    if (head == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(head->last, "POST %V/chat/completions HTTP/1.1" CRLF
                    "Host: %V" CRLF, &conn->base_path, &conn->host_header);

    if (conn->api_key.len) {
        p = ngx_sprintf(p, "Authorization: Bearer %V" CRLF, &conn->api_key);
    }

    head->last = ngx_sprintf(p, "Content-Type: application/json" CRLF
                             "Accept: %s" CRLF
                             "User-Agent: vmx-gateway" CRLF
                             "Content-Length: %uz" CRLF
                             "Connection: close" CRLF CRLF,
                             ctx->stream ? "text/event-stream"
                                         : "application/json",
                             (size_t) (body->last - body->pos));

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = head;

    cl->next = ngx_alloc_chain_link(r->pool);
    if (cl->next == NULL) {
        return NGX_ERROR;
    }

    cl->next->buf = body;
    cl->next->next = NULL;

    r->upstream->request_bufs = cl;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_reinit_request(ngx_http_request_t *r)
{
    /* every attempt's state is reset when its peer is chosen */
    return NGX_OK;
}


/* the provider's answer: status line and header */

static ngx_int_t
ngx_http_vmx_process_status_line(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_uint_t            status;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    rc = ngx_http_parse_status_line(r, &u->buffer, &ctx->status);

    if (rc == NGX_AGAIN) {
        return rc;
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent no valid HTTP status line");
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    ctx->provider_status = ctx->status.code;

    /*
     * The status the gateway acts on: nginx retries 429 and 500/502/503/504
     * only, so every other 5xx (Anthropic's 529 "overloaded" among them) and
     * the provider refusing our own credentials count as unavailable.
     */

    status = ctx->status.code;

    if (status == 529) {
        status = NGX_HTTP_SERVICE_UNAVAILABLE;

    } else if ((status > NGX_HTTP_GATEWAY_TIME_OUT
                || status == NGX_HTTP_NOT_IMPLEMENTED)
               || status == NGX_HTTP_UNAUTHORIZED
               || status == NGX_HTTP_FORBIDDEN)
    {
        status = NGX_HTTP_BAD_GATEWAY;
    }

    u->headers_in.status_n = status;
    u->headers_in.content_length_n = -1;

    u->process_header = ngx_http_vmx_process_header;

    return ngx_http_vmx_process_header(r);
}


static ngx_int_t
ngx_http_vmx_process_header(ngx_http_request_t *r)
{
    size_t                len;
    ngx_int_t             rc;
    ngx_str_t             name, value;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    for ( ;; ) {

        rc = ngx_http_parse_header_line(r, &u->buffer, 1);

        if (rc == NGX_OK) {
            name.data = r->lowcase_header;
            name.len = r->header_name_end - r->header_name_start;
            value.data = r->header_start;
            value.len = r->header_end - r->header_start;

            if (name.len == sizeof("content-length") - 1
                && ngx_strncmp(name.data, "content-length", name.len) == 0)
            {
                ctx->remaining = ngx_atoof(value.data, value.len);
                if (ctx->remaining == NGX_ERROR) {
                    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
                }

            } else if (name.len == sizeof("transfer-encoding") - 1
                       && ngx_strncmp(name.data, "transfer-encoding",
                                      name.len) == 0)
            {
                ctx->chunked_answer = (ngx_strlcasestrn(value.data,
                                           value.data + value.len,
                                           (u_char *) "chunked", 7 - 1)
                                       != NULL);

            } else if (name.len == sizeof("retry-after") - 1
                       && ngx_strncmp(name.data, "retry-after", name.len) == 0)
            {
                ctx->retry_after = value;

            } else if (name.len == sizeof("content-type") - 1
                       && ngx_strncmp(name.data, "content-type", name.len)
                          == 0)
            {
                len = sizeof("text/event-stream") - 1;
                ctx->sse_answer = (value.len >= len
                                   && ngx_strncasecmp(value.data,
                                          (u_char *) "text/event-stream", len)
                                      == 0);
            }

            continue;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            break;
        }

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: provider sent an invalid header");

        return NGX_HTTP_UPSTREAM_INVALID_HEADER;
    }

    ctx->answered = 1;
    ctx->own_response = 1;

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

    if (ctx->chunked_answer) {
        ctx->remaining = -1;
    }

    if (ctx->sse_answer) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return NGX_OK;
}


static void
ngx_http_vmx_abort_request(ngx_http_request_t *r)
{
    return;
}


static void
ngx_http_vmx_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    u_char               *p;
    ngx_buf_t            *b;
    ngx_chain_t          *out, **last;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    static const char  broken[] =
        "data: {\"error\":{\"message\":\"The provider's stream ended before "
        "it was complete\",\"type\":\"server_error\",\"param\":null,"
        "\"code\":\"provider_stream_interrupted\"}}\n\n";

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (!u->header_sent || r->header_only
        || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || r->connection->error)
    {
        return;
    }

    out = NULL;
    last = &out;

    if (!ctx->sse_answer) {
        /* an answer read until the provider closed the connection */
        if (!ctx->emitted && ngx_http_vmx_emit_answer(r, ctx, &last)
                             != NGX_OK)
        {
            return;
        }

    } else if (!ctx->complete) {
        /* a last event may lack its blank line; unsent events go first */
        ctx->out_cur = NULL;

        if (vmx_sse_finish(&ctx->sse, ngx_http_vmx_openai_event, r)
            != VMX_SSE_OK)
        {
            return;
        }

        for (out = u->out_bufs; *last; last = &(*last)->next) { /* void */ }
    }

    if (ctx->sse_answer && !ctx->complete) {
        /* after the first byte an error can only travel as an event */
        ctx->error_code.data = (u_char *) "provider_stream_interrupted";
        ctx->error_code.len = sizeof("provider_stream_interrupted") - 1;

        p = ngx_pnalloc(r->pool, sizeof(broken) - 1);
        b = ngx_calloc_buf(r->pool);
        *last = ngx_alloc_chain_link(r->pool);

        if (p == NULL || b == NULL || *last == NULL) {
            return;
        }

        b->pos = p;
        b->last = ngx_cpymem(p, broken, sizeof(broken) - 1);
        b->memory = 1;
        b->flush = 1;

        (*last)->buf = b;
        (*last)->next = NULL;
    }

    if (out) {
        (void) ngx_http_output_filter(r, out);
    }
}


/* the answer's body */

static ngx_int_t
ngx_http_vmx_filter_init(void *data)
{
    ngx_http_request_t  *r = data;

    char                     *buf;
    ngx_http_upstream_t      *u;
    ngx_http_vmx_ctx_t       *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    u->length = -1;

    if (ctx->chunked_answer) {
        ngx_memzero(&ctx->chunked, sizeof(ngx_http_chunked_t));

    } else if (ctx->remaining == 0) {
        u->length = 0;
        ctx->complete = 1;
    }

    if (ctx->sse_answer) {
        buf = ngx_palloc(r->pool, NGX_HTTP_VMX_SSE_EVENT_MAX);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        vmx_sse_init(&ctx->sse, buf, NGX_HTTP_VMX_SSE_EVENT_MAX);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_filter(void *data, ssize_t bytes)
{
    ngx_http_request_t  *r = data;

    size_t                size;
    ngx_int_t             rc;
    ngx_buf_t            *b, in;
    ngx_chain_t         **last;
    ngx_http_upstream_t  *u;
    ngx_http_vmx_ctx_t   *ctx;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);
    b = &u->buffer;

    ngx_memzero(&in, sizeof(ngx_buf_t));
    in.pos = b->last;
    in.last = b->last + bytes;

    /* everything is copied out, so the read buffer starts over each time */
    b->pos = b->start;
    b->last = b->start;

    ctx->out_cur = NULL;

    if (ctx->chunked_answer) {

        for ( ;; ) {
            rc = ngx_http_parse_chunked(r, &in, &ctx->chunked);

            if (rc == NGX_OK) {
                size = ngx_min((off_t) (in.last - in.pos), ctx->chunked.size);

                if (ngx_http_vmx_consume(r, ctx, in.pos, size) != NGX_OK) {
                    return NGX_ERROR;
                }

                in.pos += size;
                ctx->chunked.size -= size;
                continue;
            }

            if (rc == NGX_DONE) {
                u->length = 0;
                ctx->complete = ctx->complete || !ctx->sse_answer;
                break;
            }

            if (rc == NGX_AGAIN) {
                break;
            }

            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: provider sent an invalid chunked answer");
            return NGX_ERROR;
        }

    } else {
        size = in.last - in.pos;

        if (ctx->remaining >= 0) {
            size = ngx_min((off_t) size, ctx->remaining);
            ctx->remaining -= size;
        }

        if (ngx_http_vmx_consume(r, ctx, in.pos, size) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->remaining == 0) {
            u->length = 0;
            ctx->complete = ctx->complete || !ctx->sse_answer;
        }
    }

    if (u->length == 0 && !ctx->sse_answer && !ctx->emitted) {
        for (last = &u->out_bufs; *last; last = &(*last)->next) { /* void */ }

        if (ngx_http_vmx_emit_answer(r, ctx, &last) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_consume(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *data, size_t len)
{
    int                       rc;
    u_char                   *p;
    size_t                    size;
    ngx_http_vmx_loc_conf_t  *vlcf;

    if (len == 0) {
        return NGX_OK;
    }

    if (ctx->sse_answer) {
        rc = vmx_sse_feed(&ctx->sse, (char *) data, len,
                          ngx_http_vmx_openai_event, r);

        if (rc == VMX_SSE_TOO_LARGE) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: provider sent a stream event over %uz bytes",
                          (size_t) NGX_HTTP_VMX_SSE_EVENT_MAX);
        }

        return (rc == VMX_SSE_OK) ? NGX_OK : NGX_ERROR;
    }

    /* a non-streamed answer is collected whole, to read its usage */

    if (ctx->answer == NULL || (size_t) (ctx->answer->end - ctx->answer->last)
                               < len)
    {
        vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);

        size = ctx->answer ? 2 * (ctx->answer->end - ctx->answer->start)
                           : 16384;

        while (size < (ctx->answer ? ngx_buf_size(ctx->answer) : 0) + len) {
            size *= 2;
        }

        if (size > vlcf->max_response) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vmx: provider's answer exceeds "
                          "vmx_max_response_size");
            return NGX_ERROR;
        }

        p = ngx_palloc(r->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ctx->answer) {
            ctx->answer->last = ngx_cpymem(p, ctx->answer->pos,
                                           ngx_buf_size(ctx->answer));
            ctx->answer->pos = p;
            ctx->answer->start = p;
            ctx->answer->end = p + size;

        } else {
            ctx->answer = ngx_create_temp_buf(r->pool, 0);
            if (ctx->answer == NULL) {
                return NGX_ERROR;
            }

            ctx->answer->start = ctx->answer->pos = ctx->answer->last = p;
            ctx->answer->end = p + size;
        }
    }

    ctx->answer->last = ngx_cpymem(ctx->answer->last, data, len);

    return NGX_OK;
}


/* the whole non-streamed answer goes out as it came; its usage is read */

static ngx_int_t
ngx_http_vmx_emit_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_chain_t ***last)
{
    ngx_chain_t       *cl;
    vmx_json_t        *root;
    vmx_json_error_t   err;

    ctx->emitted = 1;

    if (ctx->answer == NULL || ngx_buf_size(ctx->answer) == 0) {
        return NGX_OK;
    }

    root = vmx_json_parse((char *) ctx->answer->pos, ngx_buf_size(ctx->answer),
                          ngx_http_vmx_json_alloc, r->pool, 64, &err);

    if (root != NULL) {
        ngx_http_vmx_read_usage(ctx, vmx_json_get(root, "usage"));
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    ctx->answer->flush = 1;
    ctx->answer->tag = (ngx_buf_tag_t) &ngx_http_vmx_module;

    cl->buf = ctx->answer;
    cl->next = NULL;

    **last = cl;
    *last = &cl->next;

    return NGX_OK;
}


/* a streamed OpenAI event, passed on as "data: ...\n\n" */

static int
ngx_http_vmx_openai_event(void *data, const char *event, size_t event_len,
    const char *payload, size_t payload_len)
{
    ngx_http_request_t  *r = data;

    u_char              *p;
    vmx_json_t          *root, *choices;
    vmx_json_error_t     err;
    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (payload_len == 6 && ngx_strncmp(payload, "[DONE]", 6) == 0) {
        ctx->complete = 1;

    } else if (ngx_http_vmx_has_usage((u_char *) payload, payload_len)) {
        root = vmx_json_parse(payload, payload_len, ngx_http_vmx_json_alloc,
                              r->pool, 64, &err);

        if (root != NULL) {
            ngx_http_vmx_read_usage(ctx, vmx_json_get(root, "usage"));

            /* the usage chunk we asked for on the client's behalf */
            choices = vmx_json_get(root, "choices");

            if (!ctx->include_usage && choices != NULL
                && choices->type == VMX_JSON_ARRAY && choices->count == 0)
            {
                return 0;
            }
        }
    }

    p = ngx_http_vmx_out(r, ctx, sizeof("data: \n\n") - 1 + payload_len);
    if (p == NULL) {
        return -2;
    }

    p = ngx_cpymem(p, "data: ", sizeof("data: ") - 1);
    p = ngx_cpymem(p, payload, payload_len);
    *p++ = '\n';
    *p++ = '\n';

    ctx->out_cur->last = p;

    return 0;
}


/*
 * Room for size bytes at the end of the current output buffer of this read;
 * buffers the client has consumed come back through u->free_bufs.
 */

static u_char *
ngx_http_vmx_out(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, size_t size)
{
    ngx_buf_t            *b;
    ngx_chain_t          *cl, **last;
    ngx_http_upstream_t  *u;

    b = ctx->out_cur;

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

    ctx->out_cur = b;

    return b->last;
}


static void
ngx_http_vmx_read_usage(ngx_http_vmx_ctx_t *ctx, vmx_json_t *usage)
{
    vmx_json_t  *v;

    if (usage == NULL || usage->type != VMX_JSON_OBJECT) {
        return;
    }

    v = vmx_json_get(usage, "prompt_tokens");
    if (v && v->is_int) {
        ctx->prompt_tokens = v->integer;
    }

    v = vmx_json_get(usage, "completion_tokens");
    if (v && v->is_int) {
        ctx->completion_tokens = v->integer;
    }

    v = vmx_json_get(usage, "total_tokens");
    if (v && v->is_int) {
        ctx->total_tokens = v->integer;
    }
}


/* a cheap test before parsing a chunk: does it carry "usage": {...}? */

static ngx_flag_t
ngx_http_vmx_has_usage(const u_char *p, size_t len)
{
    const u_char  *last, *found;

    last = p + len;

    while ((found = ngx_strlcasestrn((u_char *) p, (u_char *) last,
                                     (u_char *) "\"usage\"", 7 - 1))
           != NULL)
    {
        p = found + 7;

        while (p < last && (*p == ' ' || *p == ':' || *p == '\t'
                            || *p == '\r' || *p == '\n'))
        {
            p++;
        }

        if (p < last && *p == '{') {
            return 1;
        }
    }

    return 0;
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
    r->upstream->peer.tries = ctx->nplan;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vmx_peer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_request_t  *r = data;

    ngx_addr_t                 *addr;
    ngx_http_upstream_t        *u;
    ngx_http_vmx_ctx_t         *ctx;
    ngx_http_vmx_target_t      *target;
    ngx_http_vmx_connection_t  *conn;

    u = r->upstream;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (ctx->next >= ctx->nplan) {
        return NGX_BUSY;
    }

    target = ctx->plan[ctx->next++];
    conn = target->connection;

    ctx->target = target;
    ctx->attempts++;

    /* this attempt starts afresh */
    u->process_header = ngx_http_vmx_process_status_line;
    r->state = 0;
    ngx_memzero(&ctx->status, sizeof(ngx_http_status_t));
    ctx->provider_status = 0;
    ctx->remaining = -1;
    ctx->answer = NULL;
    ctx->answered = 0;
    ctx->own_response = 0;
    ngx_str_null(&ctx->retry_after);
    ctx->complete = 0;
    ctx->emitted = 0;
    ctx->chunked_answer = 0;
    ctx->sse_answer = 0;

    addr = &conn->addrs[conn->naddrs > 1 ? ngx_random() % conn->naddrs : 0];

    pc->sockaddr = addr->sockaddr;
    pc->socklen = addr->socklen;
    pc->name = &addr->name;

#if (NGX_HTTP_SSL)
    u->ssl = conn->https;
    u->ssl_name = conn->host;
#endif

    if (ngx_http_vmx_build_request(r, ctx, target) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "vmx: attempt %ui: %V model \"%V\"", ctx->attempts,
                   &target->provider, &target->model);

    return NGX_OK;
}


static void
ngx_http_vmx_peer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_request_t  *r = data;

    ngx_http_vmx_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    if (pc->tries) {
        pc->tries--;
    }

    if (state & NGX_PEER_FAILED) {
        ngx_http_vmx_attempt_failed(r, ctx, pc->connection, pc->tries);
    }
}


/* a failed attempt is a fallback event of the request */

static void
ngx_http_vmx_attempt_failed(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_connection_t *c, ngx_uint_t tries_left)
{
    u_char                *p;
    ngx_http_vmx_event_t  *ev;

    if (ctx->target == NULL || ctx->nevents == NGX_HTTP_VMX_MAX_EVENTS) {
        return;
    }

    ev = &ctx->events[ctx->nevents++];

    ev->provider = ctx->target->provider;
    ev->model = ctx->target->model;
    ev->connection_id = ctx->target->connection->id;
    ev->status = ctx->provider_status;
    ev->time = (ngx_msec_t) (ngx_time() * 1000 + ngx_timeofday()->msec);

    if (ctx->provider_status) {
        p = ngx_pnalloc(r->pool, sizeof("provider answered HTTP ")
                                 + NGX_INT_T_LEN);
        if (p == NULL) {
            ngx_str_set(&ev->reason, "provider answered with an error");

        } else {
            ev->reason.data = p;
            ev->reason.len = ngx_sprintf(p, "provider answered HTTP %ui",
                                         ctx->provider_status) - p;
        }

    } else if (c && (c->read->timedout || c->write->timedout)) {
        ngx_str_set(&ev->reason, "provider timed out");

    } else if (c && c->read->eof) {
        ngx_str_set(&ev->reason, "provider closed the connection");

    } else {
        ngx_str_set(&ev->reason, "provider could not be reached");
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vmx: %V model \"%V\" failed (%V), %s", &ev->provider,
                  &ev->model, &ev->reason,
                  tries_left ? "falling back" : "no fallback left");
}


/* configuration */

ngx_int_t
ngx_http_vmx_upstream_conf(ngx_conf_t *cf, ngx_http_vmx_loc_conf_t *prev,
    ngx_http_vmx_loc_conf_t *conf)
{
    ngx_ssl_t                     *ssl;
    ngx_pool_cleanup_t            *cln;
    ngx_http_upstream_srv_conf_t  *uscf;

    ngx_conf_merge_msec_value(conf->upstream.connect_timeout,
                              prev->upstream.connect_timeout, 10000);
    ngx_conf_merge_msec_value(conf->upstream.send_timeout,
                              prev->upstream.send_timeout, 60000);
    /* models think before their first byte */
    ngx_conf_merge_msec_value(conf->upstream.read_timeout,
                              prev->upstream.read_timeout, 300000);
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
