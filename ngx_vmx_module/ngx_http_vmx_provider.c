/*
 * VM-X gateway: the providers' wire formats.
 *
 * Each provider is a set of ngx_http_vmx_provider_t calls per operation
 * (chat, embeddings): its request, its streamed events and its whole
 * answers, turned into OpenAI's shapes by the pure translations of lib/.
 * OpenAI and Groq speak OpenAI's format: their request is the client's with
 * the model replaced, their answers pass as they are.  Anthropic has no
 * embeddings.
 *
 * An embeddings attempt makes the calls its inputs take, one after the
 * other (Bedrock's Titan embeds one input a call, Cohere 96, Gemini 100):
 * each call's request is built for ctx->plan.call, each 2xx answer adds its
 * vectors to ctx->plan.embeddings, and the last one's answer is the list.
 */

#include "ngx_http_vmx_module.h"

#include "vmx_anthropic.h"
#include "vmx_bedrock.h"
#include "vmx_bytes.h"
#include "vmx_gemini.h"
#include "vmx_sigv4.h"


static ngx_http_vmx_build_e ngx_http_vmx_openai_create_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_int_t ngx_http_vmx_openai_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_openai_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static void ngx_http_vmx_stream_end_nothing(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static ngx_flag_t ngx_http_vmx_openai_error(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *data);

static ngx_http_vmx_build_e ngx_http_vmx_anthropic_create_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_int_t ngx_http_vmx_anthropic_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_anthropic_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);

static ngx_http_vmx_build_e ngx_http_vmx_gemini_create_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_int_t ngx_http_vmx_gemini_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out);
static void ngx_http_vmx_gemini_stream_end(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_gemini_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static ngx_http_vmx_build_e ngx_http_vmx_gemini_keyed(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, const char *tail,
    vmx_buf_t *body, ngx_chain_t **out);
static void ngx_http_vmx_gemini_error(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static ngx_http_vmx_build_e ngx_http_vmx_gemini_embed_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_uint_t ngx_http_vmx_gemini_embed_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);

static ngx_http_vmx_build_e ngx_http_vmx_bedrock_create_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_int_t ngx_http_vmx_bedrock_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_bedrock_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static ngx_http_vmx_build_e ngx_http_vmx_bedrock_embed_request(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out);
static ngx_uint_t ngx_http_vmx_bedrock_embed_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out);
static ngx_http_vmx_build_e ngx_http_vmx_bedrock_signed(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, vmx_buf_t *tail,
    vmx_buf_t *body, ngx_chain_t **out);

static vmx_embeddings_answer_t *ngx_http_vmx_embeddings_call(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx);
static ngx_uint_t ngx_http_vmx_embeddings_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, int rc, size_t calls, ngx_uint_t status,
    vmx_buf_t *out);

typedef int (*ngx_http_vmx_translate_pt)(const vmx_translate_ctx_t *tc,
    vmx_buf_t *out, vmx_translate_error_t *err);

static ngx_http_vmx_build_e ngx_http_vmx_translate_body(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_translate_pt translate, vmx_buf_t *body);
static ngx_int_t ngx_http_vmx_key_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *key, const char *more, ngx_str_t *headers);
static vmx_translate_ctx_t *ngx_http_vmx_translation(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx);
static ngx_http_vmx_build_e ngx_http_vmx_untranslatable(
    ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx, vmx_buf_t *body,
    vmx_translate_error_t *err);
static ngx_uint_t ngx_http_vmx_translated(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, int rc, ngx_uint_t status, vmx_buf_t *out);
static void *ngx_http_vmx_stream_state(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, size_t size);
static ngx_int_t ngx_http_vmx_path(ngx_http_request_t *r, ngx_str_t *path,
    ngx_str_t *base, const char *middle, ngx_str_t *model,
    const char *tail);

static u_char *ngx_http_vmx_attempt_span(ngx_http_vmx_ctx_t *ctx);
static ngx_http_vmx_build_e ngx_http_vmx_request(ngx_http_request_t *r,
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
    ngx_string("x-ratelimit-limit-tokens"),
    "text/event-stream"
};


static ngx_http_vmx_provider_t  ngx_http_vmx_anthropic = {
    ngx_http_vmx_anthropic_create_request,
    ngx_http_vmx_anthropic_stream_event,
    ngx_http_vmx_stream_end_nothing,
    ngx_http_vmx_anthropic_answer,
    ngx_string("anthropic-ratelimit-requests-limit"),
    ngx_string("anthropic-ratelimit-tokens-limit"),
    "text/event-stream"
};


static ngx_http_vmx_provider_t  ngx_http_vmx_gemini = {
    ngx_http_vmx_gemini_create_request,
    ngx_http_vmx_gemini_stream_event,
    ngx_http_vmx_gemini_stream_end,
    ngx_http_vmx_gemini_answer,
    ngx_null_string,
    ngx_null_string,
    "text/event-stream"
};


static ngx_http_vmx_provider_t  ngx_http_vmx_bedrock = {
    ngx_http_vmx_bedrock_create_request,
    ngx_http_vmx_bedrock_stream_event,
    ngx_http_vmx_stream_end_nothing,
    ngx_http_vmx_bedrock_answer,
    ngx_null_string,
    ngx_null_string,
    "application/vnd.amazon.eventstream"
};


static ngx_http_vmx_provider_t  ngx_http_vmx_openai_embeddings = {
    ngx_http_vmx_openai_create_request,
    NULL,
    NULL,
    ngx_http_vmx_openai_answer,
    ngx_string("x-ratelimit-limit-requests"),
    ngx_string("x-ratelimit-limit-tokens"),
    NULL
};


static ngx_http_vmx_provider_t  ngx_http_vmx_gemini_embeddings = {
    ngx_http_vmx_gemini_embed_request,
    NULL,
    NULL,
    ngx_http_vmx_gemini_embed_answer,
    ngx_null_string,
    ngx_null_string,
    NULL
};


static ngx_http_vmx_provider_t  ngx_http_vmx_bedrock_embeddings = {
    ngx_http_vmx_bedrock_embed_request,
    NULL,
    NULL,
    ngx_http_vmx_bedrock_embed_answer,
    ngx_null_string,
    ngx_null_string,
    NULL
};


/* the wire format of a provider for an operation; NULL: it has none */

ngx_http_vmx_provider_t *
ngx_http_vmx_provider(ngx_uint_t provider_id,
    ngx_http_vmx_operation_e operation)
{
    ngx_uint_t  embeddings;

    embeddings = (operation == NGX_HTTP_VMX_EMBEDDINGS);

    switch (provider_id) {

    case NGX_HTTP_VMX_PROVIDER_OPENAI:
    case NGX_HTTP_VMX_PROVIDER_GROQ:
        return embeddings ? &ngx_http_vmx_openai_embeddings
                          : &ngx_http_vmx_openai;

    case NGX_HTTP_VMX_PROVIDER_ANTHROPIC:
        return embeddings ? NULL : &ngx_http_vmx_anthropic;

    case NGX_HTTP_VMX_PROVIDER_GEMINI:
        return embeddings ? &ngx_http_vmx_gemini_embeddings
                          : &ngx_http_vmx_gemini;

    case NGX_HTTP_VMX_PROVIDER_BEDROCK:
        return embeddings ? &ngx_http_vmx_bedrock_embeddings
                          : &ngx_http_vmx_bedrock;

    default:
        return NULL;
    }
}


/* the request of the current attempt, at ctx->attempt.target */

ngx_http_vmx_build_e
ngx_http_vmx_provider_request(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_chain_t **out)
{
    u_char                   *p;
    ngx_str_t                *name;
    ngx_http_vmx_provider_t  *provider;

    provider = ngx_http_vmx_provider(
                   ctx->attempt.target->connection->provider_id,
                   ctx->request.operation);

    if (provider == NULL
        && ctx->request.operation == NGX_HTTP_VMX_EMBEDDINGS)
    {
        /* the client's choice of resource: a 400 when it is the first */
        name = &ctx->attempt.target->provider;

        p = ngx_pnalloc(r->pool, sizeof("the provider  has no embeddings: "
                                        "choose a resource of another "
                                        "provider") + name->len);
        if (p == NULL) {
            return NGX_HTTP_VMX_BUILD_ERROR;
        }

        ctx->attempt.failure.data = p;
        ctx->attempt.failure.len = ngx_sprintf(p, "the provider %V has no "
                                               "embeddings: choose a resource "
                                               "of another provider", name)
                                   - p;
        ctx->attempt.failure_param = "model";

        return NGX_HTTP_VMX_BUILD_UNTRANSLATABLE;
    }

    if (provider == NULL) {
        ngx_str_set(&ctx->attempt.failure, "the gateway does not serve this "
                    "provider");
        return NGX_HTTP_VMX_BUILD_UNAVAILABLE;
    }

    ctx->attempt.provider = provider;

    return provider->create_request(r, ctx, out);
}


/* OpenAI and Groq: chat completions and embeddings */

static ngx_http_vmx_build_e
ngx_http_vmx_openai_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    ngx_str_t                   path, headers, bearer;
    vmx_buf_t                   body;
    vmx_json_t                 *member, *option;
    ngx_http_vmx_target_t      *target;
    ngx_http_vmx_connection_t  *conn;

    target = ctx->attempt.target;
    conn = target->connection;

    /* the client's members as they came, but for the model and ours */

    vmx_buf_init(&body, ngx_http_vmx_json_alloc, r->pool,
                 ctx->request.body->raw_len + target->model.len + 64);

    vmx_buf_append_cstr(&body, "{\"model\":");
    vmx_buf_append_json_str(&body, (char *) target->model.data,
                            target->model.len);

    for (member = ctx->request.body->child; member; member = member->next) {

        if ((member->key_len == 5 && ngx_strncmp(member->key, "model", 5) == 0)
            || (member->key_len == 3 && ngx_strncmp(member->key, "vmx", 3) == 0)
            || (ctx->request.stream && member->key_len == 14
                && ngx_strncmp(member->key, "stream_options", 14) == 0))
        {
            continue;
        }

        vmx_buf_append(&body, ",", 1);
        vmx_buf_append_json_str(&body, member->key, member->key_len);
        vmx_buf_append(&body, ":", 1);
        vmx_buf_append_raw(&body, member);
    }

    if (ctx->request.stream) {
        /* usage is always asked for; the client gets it only if it asked */
        vmx_buf_append_cstr(&body, ",\"stream_options\":{");

        member = vmx_json_get(ctx->request.body, "stream_options");
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

    if (ngx_http_vmx_path(r, &path, &conn->base_path,
                          ctx->request.operation == NGX_HTTP_VMX_EMBEDDINGS
                          ? "/embeddings" : "/chat/completions",
                          NULL, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    ngx_str_null(&headers);

    if (conn->api_key.len) {
        bearer.len = sizeof("Bearer ") - 1 + conn->api_key.len;
        bearer.data = ngx_pnalloc(r->pool, bearer.len);
        if (bearer.data == NULL) {
            return NGX_HTTP_VMX_BUILD_ERROR;
        }

        ngx_sprintf(bearer.data, "Bearer %V", &conn->api_key);

        if (ngx_http_vmx_key_header(r, "Authorization", &bearer, "", &headers)
            != NGX_OK)
        {
            return NGX_HTTP_VMX_BUILD_ERROR;
        }
    }

    return ngx_http_vmx_request(r, ctx, &path, &headers, &body, out);
}


/* a streamed OpenAI event, passed on as "data: ...\n\n" */

static ngx_int_t
ngx_http_vmx_openai_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out)
{
    vmx_buf_t            chunk;
    vmx_json_t          *root, *choices, *usage;
    vmx_json_error_t     err;

    if (data->len == 6 && ngx_strncmp(data->data, "[DONE]", 6) == 0) {
        ctx->attempt.complete = 1;

    } else if (ngx_http_vmx_openai_error(r, ctx, data)) {
        /* the provider's error ends its stream, as the translations do */
        ctx->attempt.complete = 1;

    } else if (ngx_http_vmx_has_usage(data->data, data->len)) {
        root = vmx_json_parse((char *) data->data, data->len,
                              ngx_http_vmx_json_alloc, r->pool, 64, &err);

        if (root != NULL) {
            usage = vmx_json_get(root, "usage");

            if (usage == NULL || usage->type != VMX_JSON_OBJECT) {
                /* Groq's older streams: only in x_groq */
                usage = vmx_json_get(vmx_json_get(root, "x_groq"), "usage");
            }

            ngx_http_vmx_read_usage(&ctx->attempt.usage, usage);

            if (!ctx->request.include_usage) {
                /* the usage chunk we asked for on the client's behalf */
                choices = vmx_json_get(root, "choices");

                if (choices != NULL && choices->type == VMX_JSON_ARRAY
                    && choices->count == 0)
                {
                    return NGX_OK;
                }

                /* Groq's finish chunk carries it too: the rest goes on */
                vmx_buf_init(&chunk, ngx_http_vmx_json_alloc, r->pool,
                             data->len);

                if (vmx_openai_chunk_without_usage(&chunk, root)) {
                    if (vmx_buf_failed(&chunk)) {
                        return NGX_ERROR;
                    }

                    vmx_buf_append_cstr(out, "data: ");
                    vmx_buf_append(out, chunk.data, chunk.len);
                    vmx_buf_append_cstr(out, "\n\n");

                    return NGX_OK;
                }
            }
        }
    }

    vmx_buf_append_cstr(out, "data: ");
    vmx_buf_append(out, (char *) data->data, data->len);
    vmx_buf_append_cstr(out, "\n\n");

    return NGX_OK;
}


/* an OpenAI-format {"error": ...} event: ctx->stream.stream_error says what */

static ngx_flag_t
ngx_http_vmx_openai_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_str_t *data)
{
    vmx_stream_error_t  e;

    ngx_memzero(&e, sizeof(vmx_stream_error_t));

    if (!vmx_openai_stream_error((char *) data->data, data->len,
                                 ngx_http_vmx_json_alloc, r->pool, &e))
    {
        return 0;
    }

    ctx->stream.stream_error = ngx_pcalloc(r->pool, sizeof(vmx_stream_error_t));
    if (ctx->stream.stream_error != NULL) {
        *ctx->stream.stream_error = e;
    }

    return 1;
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
            ngx_http_vmx_read_usage(&ctx->attempt.usage,
                                    vmx_json_get(root, "usage"));
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

/* Anthropic: the Messages API */

static ngx_http_vmx_build_e
ngx_http_vmx_anthropic_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    ngx_http_vmx_build_e        rc;
    ngx_str_t                   path, headers;
    vmx_buf_t                   body;
    ngx_http_vmx_connection_t  *conn;

    rc = ngx_http_vmx_translate_body(r, ctx, vmx_anthropic_request, &body);
    if (rc != NGX_HTTP_VMX_BUILD_OK) {
        return rc;
    }

    conn = ctx->attempt.target->connection;

    if (ngx_http_vmx_path(r, &path, &conn->base_path, "/v1/messages", NULL,
                          NULL)
        != NGX_OK
        || ngx_http_vmx_key_header(r, "x-api-key", &conn->api_key,
                                   "anthropic-version: 2023-06-01" CRLF,
                                   &headers)
           != NGX_OK)
    {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    return ngx_http_vmx_request(r, ctx, &path, &headers, &body, out);
}


static ngx_int_t
ngx_http_vmx_anthropic_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out)
{
    int                      rc;
    vmx_anthropic_stream_t  *s;

    s = ngx_http_vmx_stream_state(r, ctx, sizeof(vmx_anthropic_stream_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    if (s->tc == NULL) {
        vmx_anthropic_stream_init(s, ctx->attempt.tc);
    }

    rc = vmx_anthropic_stream_event(s, (char *) event->data, event->len,
                                    (char *) data->data, data->len, out,
                                    &ctx->attempt.usage);

    ctx->attempt.complete = s->done;
    ctx->stream.stream_error = s->error.status ? &s->error : NULL;

    return (rc == 0) ? NGX_OK : NGX_ERROR;
}


static ngx_uint_t
ngx_http_vmx_anthropic_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out)
{
    if (status / 100 != 2) {
        vmx_anthropic_error(ctx->attempt.tc, (int) status, (char *) body->data,
                            body->len, out);
        return status;
    }

    return ngx_http_vmx_translated(r, ctx,
                                   vmx_anthropic_response(ctx->attempt.tc,
                                       (char *) body->data, body->len, out,
                                       &ctx->attempt.usage),
                                   status, out);
}


/* Gemini: generateContent and streamGenerateContent */

static ngx_http_vmx_build_e
ngx_http_vmx_gemini_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    ngx_http_vmx_build_e  rc;
    vmx_buf_t             body;

    rc = ngx_http_vmx_translate_body(r, ctx, vmx_gemini_request, &body);
    if (rc != NGX_HTTP_VMX_BUILD_OK) {
        return rc;
    }

    return ngx_http_vmx_gemini_keyed(r, ctx,
                                     ctx->request.stream
                                     ? ":streamGenerateContent?alt=sse"
                                     : ":generateContent",
                                     &body, out);
}


/* the request of body to models/{model}<tail>, with the connection's key */

static ngx_http_vmx_build_e
ngx_http_vmx_gemini_keyed(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    const char *tail, vmx_buf_t *body, ngx_chain_t **out)
{
    ngx_str_t                   path, headers;
    ngx_http_vmx_connection_t  *conn;

    conn = ctx->attempt.target->connection;

    if (ngx_http_vmx_path(r, &path, &conn->base_path, "/models/",
                          &ctx->attempt.target->model, tail)
        != NGX_OK
        || ngx_http_vmx_key_header(r, "x-goog-api-key", &conn->api_key, "",
                                   &headers)
           != NGX_OK)
    {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    return ngx_http_vmx_request(r, ctx, &path, &headers, body, out);
}


static ngx_int_t
ngx_http_vmx_gemini_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out)
{
    int                   rc;
    vmx_gemini_stream_t  *s;

    s = ngx_http_vmx_stream_state(r, ctx, sizeof(vmx_gemini_stream_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    if (s->tc == NULL) {
        vmx_gemini_stream_init(s, ctx->attempt.tc);
    }

    rc = vmx_gemini_stream_event(s, (char *) data->data, data->len, out,
                                 &ctx->attempt.usage);

    ctx->attempt.complete = s->done;
    ctx->stream.stream_error = s->error.status ? &s->error : NULL;

    return (rc == 0) ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_vmx_gemini_stream_end(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *out)
{
    vmx_gemini_stream_t  *s;

    s = ngx_http_vmx_stream_state(r, ctx, sizeof(vmx_gemini_stream_t));
    if (s == NULL) {
        return;
    }

    if (s->tc == NULL) {
        vmx_gemini_stream_init(s, ctx->attempt.tc);
    }

    /* Gemini's stream ends with the connection, not with an event */
    vmx_gemini_stream_end(s, out, &ctx->attempt.usage);

    ctx->attempt.complete = s->done;
}


static ngx_uint_t
ngx_http_vmx_gemini_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out)
{
    if (status / 100 != 2) {
        ngx_http_vmx_gemini_error(r, ctx, status, body, out);
        return status;
    }

    return ngx_http_vmx_translated(r, ctx,
                                   vmx_gemini_response(ctx->attempt.tc,
                                       (char *) body->data, body->len, out,
                                       &ctx->attempt.usage),
                                   status, out);
}


/* Gemini's error answer in OpenAI's envelope */

static void
ngx_http_vmx_gemini_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out)
{
    u_char   *p;
    int64_t   delay;

    delay = vmx_gemini_error(ctx->attempt.tc, (int) status,
                             (char *) body->data, body->len, out);

    /* Gemini gives its delay in the body only: the Retry-After a 429
       passed on carries */
    if (delay >= 0 && ctx->attempt.retry_after.len == 0) {
        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p != NULL) {
            ctx->attempt.retry_after.data = p;
            ctx->attempt.retry_after.len = ngx_sprintf(p, "%L", delay) - p;
        }
    }
}


/* Gemini's embeddings: embedContent, or batchEmbedContents for an array */

static ngx_http_vmx_build_e
ngx_http_vmx_gemini_embed_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    u_char                    *tail;
    const char                *method;
    vmx_buf_t                  body;
    vmx_translate_ctx_t       *tc;
    vmx_translate_error_t      err;
    vmx_embeddings_request_t  *req;

    req = ctx->request.embeddings;

    tc = ngx_http_vmx_translation(r, ctx);
    if (tc == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    /* a batch names the model in each of its requests */
    vmx_buf_init(&body, ngx_http_vmx_json_alloc, r->pool,
                 ctx->request.body->raw_len
                 + ngx_min(req->count, VMX_EMBEDDINGS_GEMINI_BATCH)
                   * (ctx->attempt.target->model.len + 64));

    if (vmx_embeddings_gemini_request(tc, req, ctx->plan.call, &body, &err)
        != 0)
    {
        return ngx_http_vmx_untranslatable(r, ctx, &body, &err);
    }

    method = vmx_embeddings_gemini_method(req);

    tail = ngx_pnalloc(r->pool, sizeof(":") + ngx_strlen(method));
    if (tail == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    (void) ngx_sprintf(tail, ":%s%Z", method);

    return ngx_http_vmx_gemini_keyed(r, ctx, (char *) tail, &body, out);
}


static ngx_uint_t
ngx_http_vmx_gemini_embed_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out)
{
    int                       rc;
    vmx_embeddings_answer_t  *a;

    if (status / 100 != 2) {
        ngx_http_vmx_gemini_error(r, ctx, status, body, out);
        return status;
    }

    a = ngx_http_vmx_embeddings_call(r, ctx);

    rc = vmx_embeddings_gemini_response(a, (char *) body->data, body->len,
                                        &ctx->plan.embeddings_out);

    return ngx_http_vmx_embeddings_answer(r, ctx, rc,
                                          vmx_embeddings_gemini_calls(a->req),
                                          status, out);
}


/* AWS Bedrock: Converse and ConverseStream, signed with SigV4 */

static ngx_http_vmx_build_e
ngx_http_vmx_bedrock_create_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    ngx_http_vmx_build_e  rc;
    vmx_buf_t             body, tail;

    rc = ngx_http_vmx_translate_body(r, ctx, vmx_bedrock_request, &body);
    if (rc != NGX_HTTP_VMX_BUILD_OK) {
        return rc;
    }

    vmx_buf_init(&tail, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_bedrock_path(&tail, (char *) ctx->attempt.target->model.data,
                     ctx->attempt.target->model.len, ctx->request.stream);

    return ngx_http_vmx_bedrock_signed(r, ctx, &tail, &body, out);
}


/* the request of body at the connection's base path and tail, signed */

static ngx_http_vmx_build_e
ngx_http_vmx_bedrock_signed(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *tail, vmx_buf_t *body, ngx_chain_t **out)
{
    ngx_str_t                   path, headers;
    vmx_buf_t                   signature;
    vmx_sigv4_request_t         sr;
    ngx_http_vmx_connection_t  *conn;

    static vmx_sigv4_header_t   content_type[] = {
        { vmx_sigv4_string("content-type"),
          vmx_sigv4_string("application/json") }
    };

    conn = ctx->attempt.target->connection;

    if (conn->access_key_id.len == 0 || conn->secret_key.len == 0
        || conn->region.len == 0)
    {
        ngx_str_set(&ctx->attempt.failure,
                    "the connection has no AWS credentials "
                    "yet: see its credentialsStatus");
        return NGX_HTTP_VMX_BUILD_UNAVAILABLE;
    }

    if (vmx_buf_failed(tail) || vmx_buf_failed(body)) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    path.len = conn->base_path.len + tail->len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    ngx_memcpy(ngx_cpymem(path.data, conn->base_path.data,
                          conn->base_path.len),
               tail->data, tail->len);

    ngx_memzero(&sr, sizeof(vmx_sigv4_request_t));

    sr.method.data = "POST";
    sr.method.len = 4;
    sr.host.data = (char *) conn->host_header.data;
    sr.host.len = conn->host_header.len;
    sr.path.data = (char *) path.data;
    sr.path.len = path.len;
    sr.headers = content_type;
    sr.nheaders = 1;
    sr.payload.data = body->data;
    sr.payload.len = body->len;
    sr.region.data = (char *) conn->region.data;
    sr.region.len = conn->region.len;
    sr.service.data = "bedrock";
    sr.service.len = 7;
    sr.access_key_id.data = (char *) conn->access_key_id.data;
    sr.access_key_id.len = conn->access_key_id.len;
    sr.secret_key.data = (char *) conn->secret_key.data;
    sr.secret_key.len = conn->secret_key.len;
    sr.session_token.data = (char *) conn->session_token.data;
    sr.session_token.len = conn->session_token.len;
    sr.time = ngx_time();
    sr.key = &conn->sigv4_key;

    vmx_buf_init(&signature, ngx_http_vmx_json_alloc, r->pool, 1024);

    if (vmx_sigv4_sign(&sr, &signature) != 0) {
        ngx_str_set(&ctx->attempt.failure, "the request could not be signed");
        return NGX_HTTP_VMX_BUILD_UNAVAILABLE;
    }

    headers.data = (u_char *) signature.data;
    headers.len = signature.len;

    return ngx_http_vmx_request(r, ctx, &path, &headers, body, out);
}


static ngx_int_t
ngx_http_vmx_bedrock_stream_event(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_str_t *event, ngx_str_t *data,
    vmx_buf_t *out)
{
    int                              rc;
    vmx_bedrock_stream_t            *s;
    const vmx_eventstream_message_t  *m;

    s = ngx_http_vmx_stream_state(r, ctx, sizeof(vmx_bedrock_stream_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    if (s->tc == NULL) {
        vmx_bedrock_stream_init(s, ctx->attempt.tc);
    }

    m = ctx->stream.es_message;

    if (m->message_type.data != NULL
        && !(m->message_type.len == 5
             && ngx_strncmp(m->message_type.data, "event", 5) == 0))
    {
        /* an exception or error frame ends the stream with an error */
        (void) vmx_bedrock_stream_exception(s, m, out);
        rc = 0;

    } else {
        rc = vmx_bedrock_stream_event(s, (char *) event->data, event->len,
                                      (char *) data->data, data->len, out,
                                      &ctx->attempt.usage);
    }

    ctx->attempt.complete = s->done;
    ctx->stream.stream_error = s->error.status ? &s->error : NULL;

    return (rc == 0) ? NGX_OK : NGX_ERROR;
}


static ngx_uint_t
ngx_http_vmx_bedrock_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *body, vmx_buf_t *out)
{
    if (status / 100 != 2) {
        vmx_bedrock_error(ctx->attempt.tc, (int) status, (char *) body->data,
                          body->len, (char *) ctx->attempt.error_type.data,
                          ctx->attempt.error_type.len, out);
        return status;
    }

    return ngx_http_vmx_translated(r, ctx,
                                   vmx_bedrock_response(ctx->attempt.tc,
                                       (char *) body->data, body->len, out,
                                       &ctx->attempt.usage),
                                   status, out);
}


/* Bedrock's embeddings: InvokeModel of Titan Text Embeddings or Cohere
   Embed */

static ngx_http_vmx_build_e
ngx_http_vmx_bedrock_embed_request(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_chain_t **out)
{
    vmx_buf_t                  body, tail;
    ngx_str_t                 *model;
    vmx_translate_ctx_t       *tc;
    vmx_translate_error_t      err;
    vmx_embeddings_family_e    family;
    vmx_embeddings_request_t  *req;

    req = ctx->request.embeddings;
    model = &ctx->attempt.target->model;

    family = vmx_embeddings_bedrock_family((char *) model->data, model->len);

    if (family == 0) {
        ngx_str_set(&ctx->attempt.failure, "the resource's Bedrock model is "
                    "no embeddings model the gateway knows (Titan Text "
                    "Embeddings v2, Cohere Embed v3)");
        ctx->attempt.failure_param = "model";
        return NGX_HTTP_VMX_BUILD_UNTRANSLATABLE;
    }

    tc = ngx_http_vmx_translation(r, ctx);
    if (tc == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    vmx_buf_init(&body, ngx_http_vmx_json_alloc, r->pool,
                 ctx->request.body->raw_len + 128);

    if (vmx_embeddings_bedrock_request(tc, family, req, ctx->plan.call, &body,
                                       &err)
        != 0)
    {
        return ngx_http_vmx_untranslatable(r, ctx, &body, &err);
    }

    vmx_buf_init(&tail, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_embeddings_bedrock_path(&tail, (char *) model->data, model->len);

    return ngx_http_vmx_bedrock_signed(r, ctx, &tail, &body, out);
}


static ngx_uint_t
ngx_http_vmx_bedrock_embed_answer(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body,
    vmx_buf_t *out)
{
    int                       rc;
    ngx_str_t                *model;
    vmx_embeddings_answer_t  *a;
    vmx_embeddings_family_e   family;

    if (status / 100 != 2) {
        vmx_bedrock_error(ctx->attempt.tc, (int) status, (char *) body->data,
                          body->len, (char *) ctx->attempt.error_type.data,
                          ctx->attempt.error_type.len, out);
        return status;
    }

    model = &ctx->attempt.target->model;
    family = vmx_embeddings_bedrock_family((char *) model->data, model->len);

    a = ngx_http_vmx_embeddings_call(r, ctx);

    rc = vmx_embeddings_bedrock_response(a, family, (char *) body->data,
                                         body->len, &ctx->plan.embeddings_out);

    return ngx_http_vmx_embeddings_answer(r, ctx, rc,
                                  vmx_embeddings_bedrock_calls(family, a->req),
                                  status, out);
}


/* what the translated embeddings share */

/* the answer the attempt's calls build, opened by its first */

static vmx_embeddings_answer_t *
ngx_http_vmx_embeddings_call(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    if (ctx->plan.call == 0) {
        vmx_buf_init(&ctx->plan.embeddings_out, ngx_http_vmx_json_alloc,
                     r->pool, 0);
        vmx_embeddings_answer_init(&ctx->plan.embeddings, ctx->attempt.tc,
                                   ctx->request.embeddings,
                                   &ctx->plan.embeddings_out);
    }

    return &ctx->plan.embeddings;
}


/*
 * A call's vectors are in (rc 0): the attempt asks for its next call, or,
 * after the last, closes the answer with the usage the provider reported,
 * else the module's count of the inputs.  The answer, built from several
 * provider answers, is bound as one is.  Returns the client's status, as
 * ngx_http_vmx_translated().
 */

static ngx_uint_t
ngx_http_vmx_embeddings_answer(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    int rc, size_t calls, ngx_uint_t status, vmx_buf_t *out)
{
    vmx_buf_t                *answer;
    ngx_http_vmx_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vmx_module);
    answer = &ctx->plan.embeddings_out;

    if (rc == 0 && answer->len > vlcf->max_response) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: the embeddings of %V model \"%V\" exceed "
                      "vmx_max_response_size", &ctx->attempt.target->provider,
                      &ctx->attempt.target->model);
        rc = -1;
    }

    if (rc == 0 && ++ctx->plan.call < calls) {
        ctx->plan.next_call = 1;
        return status;
    }

    if (rc == 0) {
        rc = vmx_embeddings_answer_end(&ctx->plan.embeddings,
                                       ctx->request.estimate, answer,
                                       &ctx->attempt.usage);
    }

    if (rc == 0) {
        *out = *answer;
    }

    return ngx_http_vmx_translated(r, ctx, rc, status, out);
}


/* what the translated providers share */

/* the native body of the attempt: OK, UNTRANSLATABLE or ERROR */

static ngx_http_vmx_build_e
ngx_http_vmx_translate_body(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_http_vmx_translate_pt translate, vmx_buf_t *body)
{
    vmx_translate_ctx_t    *tc;
    vmx_translate_error_t   err;

    tc = ngx_http_vmx_translation(r, ctx);
    if (tc == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    vmx_buf_init(body, ngx_http_vmx_json_alloc, r->pool,
                 ctx->request.body->raw_len + 256);

    if (translate(tc, body, &err) != 0) {
        return ngx_http_vmx_untranslatable(r, ctx, body, &err);
    }

    return NGX_HTTP_VMX_BUILD_OK;
}


/* "<name>: <key>\r\n" and more header lines */

static ngx_int_t
ngx_http_vmx_key_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *key, const char *more, ngx_str_t *headers)
{
    u_char  *p;

    headers->len = ngx_strlen(name) + sizeof(": " CRLF) - 1 + key->len
                   + ngx_strlen(more);

    headers->data = ngx_pnalloc(r->pool, headers->len);
    if (headers->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(headers->data, "%s: %V" CRLF "%s", name, key, more);
    headers->len = p - headers->data;

    return NGX_OK;
}

static vmx_translate_ctx_t *
ngx_http_vmx_translation(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    vmx_translate_ctx_t  *tc;

    tc = ngx_pcalloc(r->pool, sizeof(vmx_translate_ctx_t));
    if (tc == NULL) {
        return NULL;
    }

    tc->body = ctx->request.body;
    tc->model = (char *) ctx->attempt.target->model.data;
    tc->model_len = ctx->attempt.target->model.len;
    tc->id = (char *) ctx->request.completion_id;
    tc->id_len = sizeof(ctx->request.completion_id);
    tc->created = ngx_time();
    tc->stream = ctx->request.stream;
    tc->include_usage = ctx->request.include_usage;
    tc->alloc = ngx_http_vmx_json_alloc;
    tc->alloc_ctx = r->pool;

    ctx->attempt.tc = tc;

    return tc;
}


static ngx_http_vmx_build_e
ngx_http_vmx_untranslatable(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *body, vmx_translate_error_t *err)
{
    if (vmx_buf_failed(body) || err->message == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    ctx->attempt.failure.data = (u_char *) err->message;
    ctx->attempt.failure.len = ngx_strlen(err->message);
    ctx->attempt.failure_param = err->param;

    return NGX_HTTP_VMX_BUILD_UNTRANSLATABLE;
}


/* a whole 2xx answer's translation: 0, an error status, or -1 unreadable */

static ngx_uint_t
ngx_http_vmx_translated(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    int rc, ngx_uint_t status, vmx_buf_t *out)
{
    static const char  unreadable[] = "The provider's answer could not be "
                                      "read";

    if (rc == 0) {
        return status;
    }

    if (rc > 0) {
        return (ngx_uint_t) rc;
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "vmx: %V model \"%V\" sent an unreadable answer",
                  &ctx->attempt.target->provider, &ctx->attempt.target->model);

    vmx_buf_init(out, ngx_http_vmx_json_alloc, r->pool, 0);
    vmx_openai_error(out, unreadable, sizeof(unreadable) - 1, "server_error",
                     "provider_unavailable", NULL);

    return NGX_HTTP_BAD_GATEWAY;
}


/* the translation state of this attempt's stream, zeroed at first use */

static void *
ngx_http_vmx_stream_state(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    size_t size)
{
    if (ctx->stream.stream_state == NULL) {
        ctx->stream.stream_state = ngx_pcalloc(r->pool, size);
    }

    return ctx->stream.stream_state;
}


/* base middle [model, escaped] tail */

static ngx_int_t
ngx_http_vmx_path(ngx_http_request_t *r, ngx_str_t *path, ngx_str_t *base,
    const char *middle, ngx_str_t *model, const char *tail)
{
    u_char  *p;
    size_t   len;

    len = base->len + ngx_strlen(middle) + (tail ? ngx_strlen(tail) : 0);

    if (model) {
        len += model->len + 2 * ngx_escape_uri(NULL, model->data, model->len,
                                               NGX_ESCAPE_URI_COMPONENT);
    }

    path->data = ngx_pnalloc(r->pool, len);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(path->data, base->data, base->len);
    p = ngx_cpymem(p, middle, ngx_strlen(middle));

    if (model) {
        p = (u_char *) ngx_escape_uri(p, model->data, model->len,
                                      NGX_ESCAPE_URI_COMPONENT);
    }

    if (tail) {
        p = ngx_cpymem(p, tail, ngx_strlen(tail));
    }

    path->len = p - path->data;

    return NGX_OK;
}


/* helpers */

/*
 * Every provider is asked for identity: answers are small JSON or streams
 * whose events must reach the client as they come (a compressor upstream
 * holds them back to fill its blocks), and inflating costs the worker CPU
 * that the bytes saved on a provider link do not repay.  A provider (or a
 * proxy in front of it) that compresses anyway is inflated all the same:
 * see ngx_http_vmx_body() in ngx_http_vmx_upstream.c.  OK, UNAVAILABLE (a
 * value of the connection no header may carry) or ERROR.
 */

static ngx_http_vmx_build_e
ngx_http_vmx_request(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_str_t *path, ngx_str_t *headers, vmx_buf_t *body, ngx_chain_t **out)
{
    size_t                      len;
    ngx_buf_t                  *head, *b;
    ngx_chain_t                *cl;
    ngx_http_vmx_connection_t  *conn;

    if (vmx_buf_failed(body)) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    conn = ctx->attempt.target->connection;

    if (!ngx_http_vmx_header_safe(path)
        || !ngx_http_vmx_header_safe(&conn->host_header)
        || !ngx_http_vmx_header_safe(&conn->api_key)
        || !ngx_http_vmx_header_safe(&conn->region)
        || !ngx_http_vmx_header_safe(&conn->access_key_id)
        || !ngx_http_vmx_header_safe(&conn->session_token))
    {
        /* each goes into a line of the request's head */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vmx: connection %V has a control character in its "
                      "base URL or credentials", &conn->id);
        ngx_str_set(&ctx->attempt.failure,
                    "the connection's base URL or credentials "
                    "hold a control character");
        return NGX_HTTP_VMX_BUILD_UNAVAILABLE;
    }

    len = sizeof("POST  HTTP/1.1" CRLF) - 1 + path->len
          + sizeof("Host: " CRLF) - 1 + conn->host_header.len
          + sizeof("traceparent: 00-" "-" "-01" CRLF) - 1 + 32 + 16
          + headers->len
          + sizeof("Content-Type: application/json" CRLF) - 1
          + sizeof("Accept: application/vnd.amazon.eventstream" CRLF) - 1
          + sizeof("User-Agent: vmx-gateway" CRLF) - 1
          + sizeof("Accept-Encoding: identity" CRLF) - 1
          + sizeof("Content-Length: " CRLF CRLF) - 1 + NGX_SIZE_T_LEN;

    head = ngx_create_temp_buf(r->pool, len);
    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (head == NULL || b == NULL || cl == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    head->last = ngx_sprintf(head->last,
                             "POST %V HTTP/1.1" CRLF
                             "Host: %V" CRLF
                             "%V"
                             "Content-Type: application/json" CRLF
                             "Accept: %s" CRLF
                             "User-Agent: vmx-gateway" CRLF
                             "Accept-Encoding: identity" CRLF
                             "Content-Length: %uz" CRLF
                             "traceparent: 00-%*s-%*s-01" CRLF CRLF,
                             path, &conn->host_header, headers,
                             ctx->request.stream
                             ? ctx->attempt.provider->stream_accept
                             : "application/json",
                             body->len, (size_t) 32, ctx->request.trace_id,
                             (size_t) 16, ngx_http_vmx_attempt_span(ctx));

    b->pos = (u_char *) body->data;
    b->last = b->pos + body->len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->flush = 1;       /* TLS buffers output until a flush */

    cl->buf = head;

    cl->next = ngx_alloc_chain_link(r->pool);
    if (cl->next == NULL) {
        return NGX_HTTP_VMX_BUILD_ERROR;
    }

    cl->next->buf = b;
    cl->next->next = NULL;

    *out = cl;

    return NGX_HTTP_VMX_BUILD_OK;
}


/* the span of the attempt being built; at check time, the first's */

static u_char *
ngx_http_vmx_attempt_span(ngx_http_vmx_ctx_t *ctx)
{
    return ctx->plan.nattempts
           ? ctx->plan.attempt_log[ctx->plan.nattempts - 1].span_id
           : ctx->request.first_span;
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

    while ((found = (u_char *) vmx_bytes_find((char *) p, last - p,
                                               "\"usage\"", 7))
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
