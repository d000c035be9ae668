/*
 * VM-X gateway: the prompt token estimate of a request.
 *
 * The o200k_base tokenizer is built once, in the master while it reads the
 * configuration, and shared read-only by the forked workers; each worker
 * has its own scratch for the matcher and the merges.
 */

#include "ngx_http_vmx_module.h"


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


/* the prompt tokens of a chat request, never fewer than the truth; 0
 * without a tokenizer */

int64_t
ngx_http_vmx_estimate(ngx_http_request_t *r, vmx_json_t *request)
{
    int64_t                    n;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->tokenizer == NULL || ngx_http_vmx_scratch == NULL) {
        return 0;
    }

    n = vmx_tokenizer_chat_estimate(mcf->tokenizer, ngx_http_vmx_scratch,
                                    request);

    /* out of memory: an upper bound, so that no limit is passed by it */
    return (n < 0) ? VMX_TOKENIZER_BOUND(request->raw_len) : n;
}
