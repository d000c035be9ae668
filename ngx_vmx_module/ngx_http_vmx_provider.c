/*
 * VM-X gateway: the providers' wire formats.
 *
 * Each provider is a set of ngx_http_vmx_provider_t calls: its request, its
 * streamed events and its whole answers, turned into OpenAI's shapes by the
 * pure translations of lib/.  OpenAI and Groq speak OpenAI's format: their
 * request is the client's with the model replaced, their answers pass as
 * they are.
 */

#include "ngx_http_vmx_module.h"


static ngx_int_t ngx_http_vmx_openai_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_int_t ngx_http_vmx_openai_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_openai_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static void ngx_http_vmx_stream_end_nothing(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);

static ngx_int_t ngx_http_vmx_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *path, ngx_str_t *headers,
    vmx_buf_t *body, ngx_chain_t **out);
static void ngx_http_vmx_read_usage(vmx_usage_t *usage, vmx_json_t *json);
static ngx_flag_t ngx_http_vmx_has_usage(u_char *p, size_t len);


static ngx_http_vmx_provider_t  ngx_http_vmx_openai = {
    ngx_http_vmx_openai_create_request,
    ngx_http_vmx_openai_stream_event,
    ngx_http_vmx_stream_end_nothing,
    ngx_http_vmx_openai_answer,
    ngx_string("x-ratelimit-limit-requests"),
    ngx_string("x-ratelimit-limit-tokens")
};


ngx_http_vmx_provider_t *
ngx_http_vmx_provider(ngx_uint_t provider_id)
{
    switch (provider_id) {

    case NGX_HTTP_VMX_PROVIDER_OPENAI:
    case NGX_HTTP_VMX_PROVIDER_GROQ:
        return &ngx_http_vmx_openai;

    default:
        return NULL;
    }
}


/* OpenAI and Groq */

static ngx_int_t
ngx_http_vmx_openai_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    u_char                     *p;
    ngx_str_t                   path, headers;
    vmx_buf_t                   body;
    vmx_json_t                 *member, *option;
    ngx_http_vmx_target_t      *target;
    ngx_http_vmx_connection_t  *conn;

    target = ctx->target;
    conn = target->connection;

    /* the client's members as they came, but for the model and ours */

    vmx_buf_init(&body, ngx_http_vmx_json_alloc, r->pool,
                 ctx->body->raw_len + target->model.len + 64);

    vmx_buf_append_cstr(&body, "{\"model\":");
    vmx_buf_append_json_str(&body, (char *) target->model.data,
                            target->model.len);

    for (member = ctx->body->child; member; member = member->next) {

        if ((member->key_len == 5 && ngx_strncmp(member->key, "model", 5) == 0)
            || (member->key_len == 3 && ngx_strncmp(member->key, "vmx", 3) == 0)
            || (ctx->stream && member->key_len == 14
                && ngx_strncmp(member->key, "stream_options", 14) == 0))
        {
            continue;
        }

        vmx_buf_append(&body, ",", 1);
        vmx_buf_append_json_str(&body, member->key, member->key_len);
        vmx_buf_append(&body, ":", 1);
        vmx_buf_append_raw(&body, member);
    }

    if (ctx->stream) {
        /* usage is always asked for; the client gets it only if it asked */
        vmx_buf_append_cstr(&body, ",\"stream_options\":{");

        member = vmx_json_get(ctx->body, "stream_options");
        option = (member && member->type == VMX_JSON_OBJECT) ? member->child
                                                              : NULL;

        for ( /* void */ ; option; option = option->next) {
            if (option->key_len == 13
                && ngx_strncmp(option->key, "include_usage", 13) == 0)
            {
                continue;
            }

            vmx_buf_append_json_str(&body, option->key, option->key_len);
            vmx_buf_append(&body, ":", 1);
            vmx_buf_append_raw(&body, option);
            vmx_buf_append(&body, ",", 1);
        }

        vmx_buf_append_cstr(&body, "\"include_usage\":true}");
    }

    vmx_buf_append(&body, "}", 1);

    path.len = conn->base_path.len + sizeof("/chat/completions") - 1;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, conn->base_path.data, conn->base_path.len),
               "/chat/completions", sizeof("/chat/completions") - 1);

    ngx_str_null(&headers);

    if (conn->api_key.len) {
        headers.len = sizeof("Authorization: Bearer " CRLF) - 1
                      + conn->api_key.len;
        headers.data = ngx_pnalloc(r->pool, headers.len);
        if (headers.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(headers.data, "Authorization: Bearer %V" CRLF,
                        &conn->api_key);
        headers.len = p - headers.data;
    }

    return ngx_http_vmx_request(r, ctx, &path, &headers, &body, out);
}


/* a streamed OpenAI event, passed on as "data: ...\n\n" */

static ngx_int_t
ngx_http_vmx_openai_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out)
{
    vmx_json_t        *root, *choices;
    vmx_json_error_t   err;

    if (data->len == 6 && ngx_strncmp(data->data, "[DONE]", 6) == 0) {
        ctx->complete = 1;

    } else if (ngx_http_vmx_has_usage(data->data, data->len)) {
        root = vmx_json_parse((char *) data->data, data->len,
                              ngx_http_vmx_json_alloc, r->pool, 64, &err);

        if (root != NULL) {
            ngx_http_vmx_read_usage(&ctx->usage, vmx_json_get(root, "usage"));

            /* the usage chunk we asked for on the client's behalf */
            choices = vmx_json_get(root, "choices");

            if (!ctx->include_usage && choices != NULL
                && choices->type == VMX_JSON_ARRAY && choices->count == 0)
            {
                return NGX_OK;
            }
        }
    }

    vmx_buf_append_cstr(out, "data: ");
    vmx_buf_append(out, (char *) data->data, data->len);
    vmx_buf_append_cstr(out, "\n\n");

    return NGX_OK;
}


/* a whole OpenAI answer goes out as it came; its usage is read */

static ngx_uint_t
ngx_http_vmx_openai_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out)
{
    vmx_json_t        *root;
    vmx_json_error_t   err;

    if (status < NGX_HTTP_SPECIAL_RESPONSE) {
        root = vmx_json_parse((char *) body->data, body->len,
                              ngx_http_vmx_json_alloc, r->pool, 64, &err);
        if (root != NULL) {
            ngx_http_vmx_read_usage(&ctx->usage, vmx_json_get(root, "usage"));
        }
    }

    out->data = (char *) body->data;
    out->len = body->len;
    out->cap = body->len;

    return status;
}


static void
ngx_http_vmx_stream_end_nothing(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out)
{
    return;
}


/* helpers */

static ngx_int_t
ngx_http_vmx_request(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_str_t *path, ngx_str_t *headers, vmx_buf_t *body, ngx_chain_t **out)
{
    size_t                      len;
    ngx_buf_t                  *head, *b;
    ngx_chain_t                *cl;
    ngx_http_vmx_connection_t  *conn;

    if (vmx_buf_failed(body)) {
        return NGX_ERROR;
    }

    conn = ctx->target->connection;

    len = sizeof("POST  HTTP/1.1" CRLF) - 1 + path->len
          + sizeof("Host: " CRLF) - 1 + conn->host_header.len
          + headers->len
          + sizeof("Content-Type: application/json" CRLF) - 1
          + sizeof("Accept: application/vnd.amazon.eventstream" CRLF) - 1
          + sizeof("User-Agent: vmx-gateway" CRLF) - 1
          + sizeof("Content-Length: " CRLF CRLF) - 1 + NGX_SIZE_T_LEN;

    head = ngx_create_temp_buf(r->pool, len);
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (head == NULL || b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    head->last = ngx_sprintf(head->last,
                             "POST %V HTTP/1.1" CRLF
                             "Host: %V" CRLF
                             "%V"
                             "Content-Type: application/json" CRLF
                             "Accept: %s" CRLF
                             "User-Agent: vmx-gateway" CRLF
                             "Content-Length: %uz" CRLF CRLF,
                             path, &conn->host_header, headers,
                             ctx->stream ? "text/event-stream"
                                         : "application/json",
                             body->len);

    b->pos = (u_char *) body->data;
    b->last = b->pos + body->len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->flush = 1;       /* TLS buffers output until a flush */

    cl->buf = head;

    cl->next = ngx_alloc_chain_link(r->pool);
    if (cl->next == NULL) {
        return NGX_ERROR;
    }

    cl->next->buf = b;
    cl->next->next = NULL;

    *out = cl;

    return NGX_OK;
}


static void
ngx_http_vmx_read_usage(vmx_usage_t *usage, vmx_json_t *json)
{
    vmx_json_t  *v;

    if (json == NULL || json->type != VMX_JSON_OBJECT) {
        return;
    }

    v = vmx_json_get(json, "prompt_tokens");
    if (v && v->is_int) {
        usage->prompt_tokens = v->integer;
    }

    v = vmx_json_get(json, "completion_tokens");
    if (v && v->is_int) {
        usage->completion_tokens = v->integer;
    }

    v = vmx_json_get(json, "total_tokens");
    if (v && v->is_int) {
        usage->total_tokens = v->integer;
    }

    v = vmx_json_get(json, "prompt_tokens_details");
    v = v ? vmx_json_get(v, "cached_tokens") : NULL;
    if (v && v->is_int) {
        usage->cached_tokens = v->integer;
    }
}


/* a cheap test before parsing a chunk: does it carry "usage": {...}? */

static ngx_flag_t
ngx_http_vmx_has_usage(u_char *p, size_t len)
{
    u_char  *last, *found;

    last = p + len;

    while ((found = ngx_strlcasestrn(p, last, (u_char *) "\"usage\"", 7 - 1))
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
