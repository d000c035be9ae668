/*
 * VM-X gateway: the prompt token estimate of a request.
 *
 * The o200k_base tokenizer is built once, in the master while it reads the
 * configuration, and shared read-only by the forked workers.  A small body
 * is counted at once with the worker's scratch; a larger one, whose count
 * may take seconds (10 MB of letters in one word), in a task of the thread
 * pool named by "vmx_tokenizer path thread_pool=name", with a scratch of
 * its own, while the worker serves the other requests.
 */

#include "ngx_http_vmx_module.h"


/*
 * The bodies counted inline: at the slowest, one long word, the counter
 * does 4 MB/s, so a count inline holds the other requests back 1 ms at most.
 */
#define NGX_HTTP_VMX_TOKENS_INLINE  4096

#if (NGX_THREADS)

typedef struct {
    ngx_http_request_t              *request;
    const vmx_tokenizer_t           *tokenizer;
    const vmx_json_t                *body;
    const vmx_embeddings_request_t  *embeddings;   /* NULL: a chat's */
    int64_t                          estimate;
} ngx_http_vmx_tokens_task_t;


static ngx_int_t ngx_http_vmx_tokens_post(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, ngx_thread_pool_t *tp);
static void ngx_http_vmx_tokens_thread(void *data, ngx_log_t *log);
static void ngx_http_vmx_tokens_done(ngx_event_t *ev);

#endif

static int64_t ngx_http_vmx_tokens_count(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const vmx_json_t *body,
    const vmx_embeddings_request_t *embeddings);
static int64_t ngx_http_vmx_tokens_bound(int64_t n, const vmx_json_t *body);
static void ngx_http_vmx_tokenizer_cleanup(void *data);


/* the worker's scratch */
static vmx_tokenizer_scratch_t  *ngx_http_vmx_scratch;


char *
ngx_http_vmx_tokenizer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    u_char              *data;
    ssize_t              n;
    ngx_str_t           *value;
    ngx_file_t           file;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;
    char                 err[256];

    if (mcf->tokenizer) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 3) {
#if (NGX_THREADS)
        mcf->tokenizer_pool = ngx_http_vmx_conf_thread_pool(cf, &value[2]);
        if (mcf->tokenizer_pool == NULL) {
            return NGX_CONF_ERROR;
        }
#else
        return ngx_http_vmx_conf_no_threads(cf, &value[2]);
#endif
    }

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = value[1];
    file.log = cf->log;

    file.fd = ngx_open_file(file.name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &file.name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    /* the ranks are read once, at configuration time */
    data = ngx_alloc(ngx_file_size(&fi), cf->log);
    if (data == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, data, ngx_file_size(&fi), 0);
    ngx_close_file(file.fd);

    if (n != ngx_file_size(&fi)) {
        ngx_free(data);
        return NGX_CONF_ERROR;
    }

    mcf->tokenizer = vmx_tokenizer_create((char *) data, n, NULL, NULL, err,
                                          sizeof(err));
    ngx_free(data);

    if (mcf->tokenizer == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s", &file.name,
                           err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        vmx_tokenizer_free(mcf->tokenizer);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_vmx_tokenizer_cleanup;
    cln->data = mcf->tokenizer;

    return NGX_CONF_OK;
}


static void
ngx_http_vmx_tokenizer_cleanup(void *data)
{
    vmx_tokenizer_free(data);
}


ngx_int_t
ngx_http_vmx_tokens_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->tokenizer == NULL) {
        return NGX_OK;
    }

    ngx_http_vmx_scratch = vmx_tokenizer_scratch_create(mcf->tokenizer);

    return (ngx_http_vmx_scratch == NULL) ? NGX_ERROR : NGX_OK;
}


/*
 * The prompt tokens of a request into ctx->request.estimate, never fewer
 * than the truth; 0 without a tokenizer.  Returns NGX_AGAIN while a thread
 * counts: its completion clears r->aio and calls the connection's write
 * handler, that is r->write_event_handler, which the caller sets.
 */

ngx_int_t
ngx_http_vmx_estimate(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    int64_t                    n;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->tokenizer == NULL || ngx_http_vmx_scratch == NULL) {
        ctx->request.estimate = 0;
        return NGX_OK;
    }

#if (NGX_THREADS)

    if (mcf->tokenizer_pool && ctx->request.body->raw_len > NGX_HTTP_VMX_TOKENS_INLINE)
    {
        return ngx_http_vmx_tokens_post(r, ctx, mcf->tokenizer_pool);
    }

#endif

    n = ngx_http_vmx_tokens_count(mcf->tokenizer, ngx_http_vmx_scratch,
                                  ctx->request.body, ctx->request.embeddings);

    ctx->request.estimate = ngx_http_vmx_tokens_bound(n, ctx->request.body);

    return NGX_OK;
}


#if (NGX_THREADS)

/*
 * The request is blocked while the task runs, as for nginx's own thread
 * reads: a client gone meanwhile only makes the request finalize when the
 * task completes, so the task, the request's pool and the body it reads
 * stay alive until then.
 */

static ngx_int_t
ngx_http_vmx_tokens_post(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    ngx_thread_pool_t *tp)
{
    ngx_thread_task_t           *task;
    ngx_http_vmx_main_conf_t    *mcf;
    ngx_http_vmx_tokens_task_t  *t;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_vmx_tokens_task_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    t = task->ctx;
    t->request = r;
    t->tokenizer = mcf->tokenizer;
    t->body = ctx->request.body;
    t->embeddings = ctx->request.embeddings;

    task->handler = ngx_http_vmx_tokens_thread;
    task->event.handler = ngx_http_vmx_tokens_done;
    task->event.data = t;

    if (ngx_thread_task_post(tp, task) != NGX_OK) {
        /* the queue is full (logged): the bound, not a stall */
        ctx->request.estimate = ngx_http_vmx_tokens_bound(-1, ctx->request.body);
        return NGX_OK;
    }

    r->main->blocked++;
    r->aio = 1;

    return NGX_AGAIN;
}


/* in a thread of the pool: nothing of nginx is touched here */

static void
ngx_http_vmx_tokens_thread(void *data, ngx_log_t *log)
{
    ngx_http_vmx_tokens_task_t  *t = data;

    vmx_tokenizer_scratch_t  *s;

    ngx_http_vmx_thread_yield();

    s = vmx_tokenizer_scratch_create(t->tokenizer);

    t->estimate = (s == NULL) ? -1
                  : ngx_http_vmx_tokens_count(t->tokenizer, s, t->body,
                                              t->embeddings);

    vmx_tokenizer_scratch_free(s);
}


static void
ngx_http_vmx_tokens_done(ngx_event_t *ev)
{
    ngx_http_vmx_tokens_task_t  *t = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_vmx_ctx_t  *ctx;

    r = t->request;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_vmx_module);

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "vmx prompt tokens counted in a thread: %L", t->estimate);

    ctx->request.estimate = ngx_http_vmx_tokens_bound(t->estimate, t->body);

    r->main->blocked--;
    r->aio = 0;

    c->write->handler(c->write);
}

#endif


/*
 * A chat request's messages and tools, or the inputs to embed: text
 * tokenized, token ids as they are; -1 when out of memory.
 */

static int64_t
ngx_http_vmx_tokens_count(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const vmx_json_t *body,
    const vmx_embeddings_request_t *embeddings)
{
    size_t             i;
    int64_t            n, total;
    const vmx_json_t  *input;

    if (embeddings == NULL) {
        return vmx_tokenizer_chat_estimate(tok, s, body);
    }

    total = 0;
    input = vmx_embeddings_input(embeddings, 0);

    for (i = 0; i < embeddings->count; i++, input = input->next) {

        if (embeddings->tokens) {
            total += (int64_t) input->count;
            continue;
        }

        n = vmx_tokenizer_count(tok, s, input->str, input->str_len);
        if (n < 0) {
            return -1;
        }

        total += n;
    }

    return total;
}


/* a count that failed (out of memory) is the bound: no limit is passed by it */

static int64_t
ngx_http_vmx_tokens_bound(int64_t n, const vmx_json_t *body)
{
    return (n < 0) ? VMX_TOKENIZER_BOUND(body->raw_len) : n;
}
