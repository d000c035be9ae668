/*
 * Helpers shared by the files of the module: the gateway's own answers,
 * the request body, ids and header-safe text.
 */

#include "ngx_http_vmx_module.h"

#include <sodium.h>


ngx_int_t
ngx_http_vmx_send_error(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_uint_t status, const char *code, ngx_str_t *message)
{
    return ngx_http_vmx_send_error_param(r, ctx, status, code, message, NULL);
}


ngx_int_t
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


/*
 * Random bytes without a system call: ChaCha20 under a key each worker
 * draws once from the kernel (init_process, after the fork), over a
 * counter as the nonce.  Ids must be unique across workers and nodes and
 * hard to guess; a request never waits on getrandom() for them.
 */

static u_char    ngx_http_vmx_random_key[crypto_stream_chacha20_ietf_KEYBYTES];
static uint64_t  ngx_http_vmx_random_counter;


void
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


/*
 * A new routing or fallback event of the request, zeroed; NULL when it has
 * as many as it keeps.  Most requests have none: the array is made by the
 * first.
 */

ngx_http_vmx_event_t *
ngx_http_vmx_event_add(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_vmx_event_t  *ev;

    if (ctx->plan.nevents == NGX_HTTP_VMX_MAX_EVENTS) {
        return NULL;
    }

    if (ctx->plan.events == NULL) {
        ctx->plan.events = ngx_palloc(r->pool, NGX_HTTP_VMX_MAX_EVENTS
                                               * sizeof(ngx_http_vmx_event_t));
        if (ctx->plan.events == NULL) {
            return NULL;
        }
    }

    ev = &ctx->plan.events[ctx->plan.nevents++];
    ngx_memzero(ev, sizeof(ngx_http_vmx_event_t));

    return ev;
}


/* the first request header of this name, NULL when none */

ngx_table_elt_t *
ngx_http_vmx_header_in(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
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


#if (NGX_THREADS)

/* a task's thread gives the CPUs to the workers first: on Linux a thread's
   nice is its own */

void
ngx_http_vmx_thread_yield(void)
{
#if (NGX_LINUX)
    (void) setpriority(PRIO_PROCESS, 0, NGX_HTTP_VMX_THREAD_NICE);
#endif
}


/* a directive's "thread_pool=name" parameter: the pool, NULL when wrong */

ngx_thread_pool_t *
ngx_http_vmx_conf_thread_pool(ngx_conf_t *cf, ngx_str_t *arg)
{
    ngx_str_t  name;

    if (arg->len <= sizeof("thread_pool=") - 1
        || ngx_strncmp(arg->data, "thread_pool=", sizeof("thread_pool=") - 1)
           != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                           arg);
        return NULL;
    }

    name.data = arg->data + sizeof("thread_pool=") - 1;
    name.len = arg->len - (sizeof("thread_pool=") - 1);

    return ngx_thread_pool_add(cf, &name);
}

#else

char *
ngx_http_vmx_conf_no_threads(ngx_conf_t *cf, ngx_str_t *arg)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs nginx built with "
                       "threads", arg);
    return NGX_CONF_ERROR;
}

#endif
