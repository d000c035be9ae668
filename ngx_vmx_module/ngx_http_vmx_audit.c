/*
 * VM-X gateway: audit and usage records.
 *
 * Every gateway request leaves one JSON line in the worker's spool file
 * (docs/ARCHITECTURE.md, "Audit and usage records"), written whole with one
 * write() in the log phase: nothing waits on the database, and a record is
 * on disk before the worker takes its next event.  The control plane pulls
 * the spool through GET /vmx/records and acknowledges what it committed.
 *
 * A spool file is finished when the worker that wrote it has gone, or has
 * moved on to a newer file: names are records-<unix msec>-<pid>.jsonl, so
 * their byte order is their creation order.
 */

#include "ngx_http_vmx_module.h"

#include <dirent.h>


#define NGX_HTTP_VMX_SPOOL_FILE_MAX  (16 * 1024 * 1024)
#define NGX_HTTP_VMX_SPOOL_NAME_LEN  64


typedef struct {
    u_char      name[NGX_HTTP_VMX_SPOOL_NAME_LEN];
    size_t      len;
    ngx_pid_t   pid;
    off_t       offset;         /* where the cursor has it */
} ngx_http_vmx_spool_name_t;


static ngx_int_t ngx_http_vmx_spool_open(ngx_cycle_t *cycle,
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_audit_record(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static void ngx_http_vmx_audit_time(vmx_buf_t *out, const char *name,
    time_t sec, ngx_msec_t msec);
static void ngx_http_vmx_audit_str(vmx_buf_t *out, const char *name,
    ngx_str_t *value);
static void ngx_http_vmx_audit_ms(vmx_buf_t *out, const char *name,
    uint64_t usec);
static void ngx_http_vmx_audit_count(vmx_buf_t *out, const char *name,
    int64_t n);
static void ngx_http_vmx_audit_attempts(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static ngx_int_t ngx_http_vmx_spool_list(ngx_http_request_t *r,
    ngx_str_t *dir, ngx_array_t *names);
static ngx_int_t ngx_http_vmx_spool_finished(ngx_http_vmx_spool_name_t *name,
    ngx_array_t *names, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_spool_cursor(ngx_http_request_t *r,
    ngx_array_t *names);
static int ngx_http_vmx_spool_cmp(const void *a, const void *b);


/* the worker's spool file */
static ngx_fd_t  ngx_http_vmx_spool_fd = NGX_INVALID_FILE;
static off_t     ngx_http_vmx_spool_size;


ngx_int_t
ngx_http_vmx_audit_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->spool.len == 0) {
        return NGX_OK;
    }

    return ngx_http_vmx_spool_open(cycle, mcf);
}


void
ngx_http_vmx_audit_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_vmx_spool_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(ngx_http_vmx_spool_fd);
        ngx_http_vmx_spool_fd = NGX_INVALID_FILE;
    }
}


static ngx_int_t
ngx_http_vmx_spool_open(ngx_cycle_t *cycle, ngx_http_vmx_main_conf_t *mcf)
{
    u_char      *name;
    ngx_fd_t     fd;
    ngx_time_t  *tp;

    name = ngx_pnalloc(cycle->pool, mcf->spool.len
                                    + NGX_HTTP_VMX_SPOOL_NAME_LEN + 2);
    if (name == NULL) {
        return NGX_ERROR;
    }

    tp = ngx_timeofday();

    ngx_sprintf(name, "%V/records-%013T%03M-%010P.jsonl%Z", &mcf->spool,
                tp->sec, tp->msec, ngx_pid);

    fd = ngx_open_file(name, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN, 0600);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", name);
        return NGX_ERROR;
    }

    if (ngx_http_vmx_spool_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(ngx_http_vmx_spool_fd);
    }

    ngx_http_vmx_spool_fd = fd;
    ngx_http_vmx_spool_size = 0;

    return NGX_OK;
}


/* the log phase: one line per gateway request */

void
ngx_http_vmx_audit_write(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ssize_t                    n;
    vmx_buf_t                  line;
    ngx_http_vmx_main_conf_t  *mcf;

    if (ngx_http_vmx_spool_fd == NGX_INVALID_FILE) {
        return;
    }

    if (ngx_http_vmx_audit_record(r, ctx, &line) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "vmx: audit record %*s not written: out of memory",
                      (size_t) 36, ctx->request_id);
        return;
    }

    /* one write of a whole line: O_APPEND keeps lines whole */
    n = ngx_write_fd(ngx_http_vmx_spool_fd, line.data, line.len);

    if (n != (ssize_t) line.len) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                      "vmx: audit record %*s not written to the spool",
                      (size_t) 36, ctx->request_id);
        return;
    }

    ngx_http_vmx_spool_size += n;

    if (ngx_http_vmx_spool_size >= NGX_HTTP_VMX_SPOOL_FILE_MAX) {
        mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
        (void) ngx_http_vmx_spool_open((ngx_cycle_t *) ngx_cycle, mcf);
    }
}


static ngx_int_t
ngx_http_vmx_audit_record(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *out)
{
    ngx_str_t                    id, s;
    ngx_uint_t                   i, payload;
    ngx_http_vmx_event_t        *ev;
    ngx_http_vmx_environment_t  *env;
    ngx_http_vmx_main_conf_t    *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    vmx_buf_init(out, ngx_http_vmx_json_alloc, r->pool, 2048);

    id.data = ctx->request_id;
    id.len = sizeof(ctx->request_id);

    env = ctx->api_key ? ctx->api_key->env : NULL;

    vmx_buf_append_cstr(out, "{\"v\":1,\"id\":");
    vmx_buf_append_json_str(out, (char *) id.data, id.len);
    ngx_http_vmx_audit_time(out, "timestamp", r->start_sec, r->start_msec);
    ngx_http_vmx_audit_str(out, "workspaceId", env ? &env->workspace_id : NULL);
    ngx_http_vmx_audit_str(out, "environmentId", env ? &env->id : NULL);
    ngx_http_vmx_audit_str(out, "requestId", &id);

    s.data = ctx->trace_id;
    s.len = sizeof(ctx->trace_id);
    ngx_http_vmx_audit_str(out, "traceId", &s);
    s.data = ctx->span_id;
    s.len = sizeof(ctx->span_id);
    ngx_http_vmx_audit_str(out, "spanId", &s);
    s.data = ctx->parent_id;
    s.len = sizeof(ctx->parent_id);
    ngx_http_vmx_audit_str(out, "parentSpanId", ctx->has_parent ? &s : NULL);

    ngx_http_vmx_audit_str(out, "correlationId",
                           ctx->correlation_id.len ? &ctx->correlation_id
                                                   : NULL);
    ngx_http_vmx_audit_str(out, "resourceId",
                           ctx->resource ? &ctx->resource->id : NULL);
    ngx_http_vmx_audit_str(out, "resource",
                           ctx->resource ? &ctx->resource->name : NULL);
    ngx_http_vmx_audit_str(out, "apiKeyId",
                           ctx->api_key ? &ctx->api_key->id : NULL);
    ngx_http_vmx_audit_str(out, "sourceIp", &r->connection->addr_text);
    ngx_http_vmx_audit_str(out, "method", &r->method_name);
    ngx_http_vmx_audit_str(out, "path", &r->uri);
    ngx_http_vmx_audit_count(out, "statusCode", r->headers_out.status);
    ngx_http_vmx_audit_str(out, "errorCode",
                           ctx->error_code.len ? &ctx->error_code : NULL);
    ngx_http_vmx_audit_str(out, "errorMessage",
                           ctx->error_message.len ? &ctx->error_message
                                                  : NULL);
    ngx_http_vmx_audit_str(out, "provider",
                           ctx->target ? &ctx->target->provider : NULL);
    ngx_http_vmx_audit_str(out, "model",
                           ctx->target ? &ctx->target->model : NULL);
    ngx_http_vmx_audit_str(out, "connectionId",
                           ctx->target ? &ctx->target->connection->id : NULL);
    vmx_buf_append_cstr(out, ctx->stream ? ",\"stream\":true"
                                         : ",\"stream\":false");
    ngx_http_vmx_audit_ms(out, "duration",
                          ngx_http_vmx_usec() - ctx->start_usec);
    ngx_http_vmx_audit_ms(out, "gateDuration", ctx->gate_usec);
    ngx_http_vmx_audit_ms(out, "routingDuration", ctx->routing_usec);

    vmx_buf_append_cstr(out, ",\"events\":[");

    for (i = 0; i < ctx->nevents; i++) {
        ev = &ctx->events[i];

        vmx_buf_append_cstr(out, i ? ",{\"type\":" : "{\"type\":");
        vmx_buf_append_cstr(out, ev->routing ? "\"routing\"" : "\"fallback\"");
        ngx_http_vmx_audit_time(out, "timestamp", ev->time / 1000,
                                ev->time % 1000);
        ngx_http_vmx_audit_str(out, "provider", &ev->provider);
        ngx_http_vmx_audit_str(out, "model", &ev->model);
        ngx_http_vmx_audit_str(out, "connectionId", &ev->connection_id);
        ngx_http_vmx_audit_count(out, "statusCode",
                                 ev->status ? (int64_t) ev->status : -1);
        ngx_http_vmx_audit_str(out, ev->routing ? "groupId" : "reason",
                               &ev->reason);

        if (ev->routing) {
            ngx_http_vmx_audit_str(out, "originalProvider",
                                   &ev->original_provider);
            ngx_http_vmx_audit_str(out, "originalModel", &ev->original_model);
        }

        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "]");

    ngx_http_vmx_audit_attempts(r, ctx, out);

    /* payloads, unless the environment keeps metadata only */

    payload = (env == NULL || env->store_payload);

    s.len = 0;
    if (payload && ctx->body && ctx->body->raw_len <= mcf->payload_max) {
        s.data = (u_char *) ctx->body->raw;
        s.len = ctx->body->raw_len;
    }

    vmx_buf_append_cstr(out, ",\"request\":");
    vmx_buf_append(out, s.len ? (char *) s.data : "null", s.len ? s.len : 4);

    vmx_buf_append_cstr(out, ",\"response\":");

    if (payload && ctx->capture.len && !vmx_buf_failed(&ctx->capture)
        && !ctx->capture_truncated)
    {
        if (ctx->streamed) {
            /* the chunks, each followed by a comma: an array of them */
            vmx_buf_append(out, "[", 1);
            vmx_buf_append(out, ctx->capture.data, ctx->capture.len - 1);
            vmx_buf_append(out, "]", 1);

        } else {
            vmx_buf_append(out, ctx->capture.data, ctx->capture.len);
        }

    } else {
        vmx_buf_append_cstr(out, "null");
    }

    vmx_buf_append_cstr(out, payload && (ctx->capture_truncated
                                         || (ctx->body && ctx->body->raw_len
                                             > mcf->payload_max))
                             ? ",\"payloadTruncated\":true}\n"
                             : ",\"payloadTruncated\":false}\n");

    return vmx_buf_failed(out) ? NGX_ERROR : NGX_OK;
}


static void
ngx_http_vmx_audit_attempts(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    vmx_buf_t *out)
{
    double                   seconds;
    uint64_t                 end;
    ngx_str_t                span;
    ngx_uint_t               i, last;
    ngx_http_vmx_attempt_t  *a;

    vmx_buf_append_cstr(out, ",\"attempts\":[");

    for (i = 0; i < ctx->nattempts; i++) {
        a = &ctx->attempt_log[i];
        last = (i + 1 == ctx->nattempts);

        end = a->ended_usec ? a->ended_usec : ngx_http_vmx_usec();

        vmx_buf_append_cstr(out, i ? ",{\"provider\":" : "{\"provider\":");
        vmx_buf_append_json_str(out, (char *) a->target->provider.data,
                                a->target->provider.len);
        ngx_http_vmx_audit_str(out, "model", &a->target->model);
        ngx_http_vmx_audit_str(out, "connectionId",
                               &a->target->connection->id);
        span.data = a->span_id;
        span.len = sizeof(a->span_id);
        ngx_http_vmx_audit_str(out, "spanId", &span);
        ngx_http_vmx_audit_count(out, "statusCode",
                                 a->status ? (int64_t) a->status
                                 : (last ? (int64_t) r->headers_out.status
                                         : -1));
        ngx_http_vmx_audit_str(out, "failureReason",
                               a->failure.len ? &a->failure : NULL);
        ngx_http_vmx_audit_time(out, "startedAt", a->started_ms / 1000,
                                a->started_ms % 1000);
        ngx_http_vmx_audit_ms(out, "providerDuration",
                              end - a->started_usec);

        if (a->first_byte_usec) {
            ngx_http_vmx_audit_ms(out, "timeToFirstToken",
                                  a->first_byte_usec - a->started_usec);

        } else {
            vmx_buf_append_cstr(out, ",\"timeToFirstToken\":null");
        }

        /* the provider reports usage of the answer that reached the client */
        ngx_http_vmx_audit_count(out, "promptTokens",
                                 last ? ctx->usage.prompt_tokens : -1);
        ngx_http_vmx_audit_count(out, "completionTokens",
                                 last ? ctx->usage.completion_tokens : -1);
        ngx_http_vmx_audit_count(out, "totalTokens",
                                 last ? (ctx->usage.total_tokens >= 0
                                         ? ctx->usage.total_tokens
                                         : (ctx->usage.prompt_tokens >= 0
                                            && ctx->usage.completion_tokens
                                               >= 0
                                            ? ctx->usage.prompt_tokens
                                              + ctx->usage.completion_tokens
                                            : -1))
                                      : -1);

        seconds = (double) (end - a->started_usec) / 1000000;

        if (last && ctx->usage.completion_tokens > 0 && seconds > 0) {
            vmx_buf_append_cstr(out, ",\"tokensPerSecond\":");
            ngx_http_vmx_audit_ms(out, NULL, (uint64_t)
                                  (ctx->usage.completion_tokens / seconds
                                   * 1000));

        } else {
            vmx_buf_append_cstr(out, ",\"tokensPerSecond\":null");
        }

        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "]");
}


/* ,"name":"value" or ,"name":null */

static void
ngx_http_vmx_audit_str(vmx_buf_t *out, const char *name, ngx_str_t *value)
{
    vmx_buf_append_cstr(out, ",\"");
    vmx_buf_append_cstr(out, name);
    vmx_buf_append_cstr(out, "\":");

    if (value == NULL) {
        vmx_buf_append_cstr(out, "null");
        return;
    }

    vmx_buf_append_json_str(out, (char *) value->data, value->len);
}


/* ,"name":N or ,"name":null for a negative N */

static void
ngx_http_vmx_audit_count(vmx_buf_t *out, const char *name, int64_t n)
{
    vmx_buf_append_cstr(out, ",\"");
    vmx_buf_append_cstr(out, name);
    vmx_buf_append_cstr(out, "\":");

    if (n < 0) {
        vmx_buf_append_cstr(out, "null");
        return;
    }

    vmx_buf_append_int(out, n);
}


/* ,"name":12.345 (milliseconds from microseconds); name NULL: the number */

static void
ngx_http_vmx_audit_ms(vmx_buf_t *out, const char *name, uint64_t usec)
{
    char  frac[4];

    if (name) {
        vmx_buf_append_cstr(out, ",\"");
        vmx_buf_append_cstr(out, name);
        vmx_buf_append_cstr(out, "\":");
    }

    vmx_buf_append_int(out, (int64_t) (usec / 1000));

    frac[0] = '.';
    frac[1] = (char) ('0' + usec % 1000 / 100);
    frac[2] = (char) ('0' + usec % 100 / 10);
    frac[3] = (char) ('0' + usec % 10);

    vmx_buf_append(out, frac, sizeof(frac));
}


static void
ngx_http_vmx_audit_time(vmx_buf_t *out, const char *name, time_t sec,
    ngx_msec_t msec)
{
    u_char    buf[sizeof(",\"\":\"1970-01-01T00:00:00.000Z\"") + 32], *p;
    ngx_tm_t  tm;

    ngx_gmtime(sec, &tm);

    p = ngx_snprintf(buf, sizeof(buf),
                     ",\"%s\":\"%4d-%02d-%02dT%02d:%02d:%02d.%03MZ\"", name,
                     tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                     tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec, msec);

    vmx_buf_append(out, (char *) buf, p - buf);
}


/* the payload of the answer, as the client got it */

void
ngx_http_vmx_audit_capture(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *data, size_t len)
{
    u_char                    *p, *last, *end;
    ngx_http_vmx_main_conf_t  *mcf;

    if (ctx->capture_truncated
        || (ctx->api_key && !ctx->api_key->env->store_payload))
    {
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (ctx->capture.alloc == NULL) {
        vmx_buf_init(&ctx->capture, ngx_http_vmx_json_alloc, r->pool, 0);
    }

    if (ctx->capture.len + len > mcf->payload_max) {
        ctx->capture_truncated = 1;
        return;
    }

    if (!ctx->streamed) {
        vmx_buf_append(&ctx->capture, (char *) data, len);
        return;
    }

    /* of a stream, the JSON of each "data: ...\n\n" event but [DONE] */

    last = data + len;

    for (p = data; p < last; p = end + 2) {
        end = ngx_strlcasestrn(p, last, (u_char *) "\n\n", 2 - 1);
        if (end == NULL) {
            break;
        }

        if (end - p > 6 && ngx_strncmp(p, "data: ", 6) == 0
            && !(end - p == 12 && ngx_strncmp(p + 6, "[DONE]", 6) == 0))
        {
            vmx_buf_append(&ctx->capture, (char *) p + 6, end - p - 6);
            vmx_buf_append(&ctx->capture, ",", 1);
        }
    }
}


/*
 * GET /vmx/records: the next complete lines of the spool.  The cursor is
 * opaque to the control plane: "<file>:<offset>" for every file read
 * part-way or whole, comma separated; a file it does not name is unread.
 * Several workers write at once, so every file is read from its own place.
 */

ngx_int_t
ngx_http_vmx_records_handler(ngx_http_request_t *r)
{
    u_char                     *p, *start, *c;
    size_t                      max, room, len;
    ssize_t                     n;
    ngx_str_t                   value;
    ngx_uint_t                  i;
    ngx_file_t                  file;
    ngx_array_t                 names;
    ngx_http_vmx_spool_name_t  *name;
    ngx_http_vmx_main_conf_t   *mcf;
    u_char                      path[NGX_MAX_PATH];

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    max = 1024 * 1024;

    if (ngx_http_arg(r, (u_char *) "max", 3, &value) == NGX_OK) {
        n = ngx_atosz(value.data, value.len);
        if (n > 0) {
            max = ngx_min((size_t) n, (size_t) 16 * 1024 * 1024);
        }
    }

    /* a line must always fit, or a cursor could never move on */
    max = ngx_max(max, 2 * mcf->payload_max + 65536);

    if (ngx_http_vmx_spool_list(r, &mcf->spool, &names) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_vmx_spool_cursor(r, &names) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    name = names.elts;

    len = max + sizeof("{\"records\":[],\"cursor\":\"\"}")
          + names.nelts * (NGX_HTTP_VMX_SPOOL_NAME_LEN + NGX_OFF_T_LEN + 2);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"records\":[", sizeof("{\"records\":[") - 1);
    room = max;

    for (i = 0; i < names.nelts && room; i++) {
        ngx_memzero(&file, sizeof(ngx_file_t));
        ngx_sprintf(path, "%V/%*s%Z", &mcf->spool, name[i].len, name[i].name);
        file.name.data = path;
        file.name.len = ngx_strlen(path);
        file.log = r->connection->log;

        file.fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (file.fd == NGX_INVALID_FILE) {
            continue;
        }

        n = ngx_read_file(&file, p, room, name[i].offset);
        ngx_close_file(file.fd);

        if (n == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* whole lines only, each a JSON object: joined with commas */
        for (len = n; len && p[len - 1] != '\n'; len--) { /* void */ }

        for (c = p; c < p + len; c++) {
            if (*c == '\n') {
                *c = ',';
            }
        }

        name[i].offset += len;
        p += len;
        room -= len;

        if (len < (size_t) n) {
            /* a line that did not fit waits for the next call */
            break;
        }
    }

    if (p[-1] == ',') {
        p--;
    }

    p = ngx_cpymem(p, "],\"cursor\":\"", sizeof("],\"cursor\":\"") - 1);

    for (i = 0, c = p; i < names.nelts; i++) {
        if (name[i].offset) {
            p = ngx_sprintf(p, "%s%*s:%O", p == c ? "" : ",", name[i].len,
                            name[i].name, name[i].offset);
        }
    }

    p = ngx_cpymem(p, "\"}", 2);

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, start, p - start);
}


/* POST /vmx/records/ack: files committed whole and finished go */

ngx_int_t
ngx_http_vmx_records_ack_handler(ngx_http_request_t *r)
{
    ngx_uint_t                  i;
    ngx_array_t                 names;
    ngx_file_info_t             fi;
    ngx_http_vmx_spool_name_t  *name;
    ngx_http_vmx_main_conf_t   *mcf;
    u_char                      path[NGX_MAX_PATH];

    static u_char  ok[] = "{\"ok\":true}";

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (ngx_http_vmx_spool_list(r, &mcf->spool, &names) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_vmx_spool_cursor(r, &names) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        ngx_sprintf(path, "%V/%*s%Z", &mcf->spool, name[i].len, name[i].name);

        if (name[i].offset == 0
            || ngx_file_info(path, &fi) == NGX_FILE_ERROR
            || name[i].offset < ngx_file_size(&fi)
            || !ngx_http_vmx_spool_finished(&name[i], &names, i))
        {
            continue;
        }

        if (ngx_delete_file(path) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed", path);
        }
    }

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, ok, sizeof(ok) - 1);
}


/* the spool's files, oldest first */

static ngx_int_t
ngx_http_vmx_spool_list(ngx_http_request_t *r, ngx_str_t *dir,
    ngx_array_t *names)
{
    DIR                        *d;
    u_char                     *p;
    size_t                      len;
    struct dirent              *de;
    ngx_http_vmx_spool_name_t  *name;
    u_char                      path[NGX_MAX_PATH];

    if (ngx_array_init(names, r->pool, 16, sizeof(ngx_http_vmx_spool_name_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (dir->len == 0 || dir->len >= sizeof(path)) {
        return NGX_OK;
    }

    ngx_sprintf(path, "%V%Z", dir);

    d = opendir((char *) path);
    if (d == NULL) {
        return NGX_OK;
    }

    while ((de = readdir(d)) != NULL) {
        len = ngx_strlen(de->d_name);

        if (len >= NGX_HTTP_VMX_SPOOL_NAME_LEN
            || len < sizeof("records--.jsonl") - 1
            || ngx_strncmp(de->d_name, "records-", 8) != 0
            || ngx_strncmp(de->d_name + len - 6, ".jsonl", 6) != 0)
        {
            continue;
        }

        name = ngx_array_push(names);
        if (name == NULL) {
            closedir(d);
            return NGX_ERROR;
        }

        ngx_memcpy(name->name, de->d_name, len);
        name->len = len;
        name->offset = 0;

        /* records-<msec>-<pid>.jsonl */
        p = ngx_strlchr(name->name + 8, name->name + len, '-');
        name->pid = p ? ngx_atoi(p + 1, name->name + len - 6 - p - 1)
                      : NGX_ERROR;
    }

    closedir(d);

    ngx_qsort(names->elts, names->nelts, sizeof(ngx_http_vmx_spool_name_t),
              ngx_http_vmx_spool_cmp);

    return NGX_OK;
}


static int
ngx_http_vmx_spool_cmp(const void *a, const void *b)
{
    const ngx_http_vmx_spool_name_t  *x = a, *y = b;

    return ngx_memn2cmp((u_char *) x->name, (u_char *) y->name, x->len,
                        y->len);
}


/*
 * Finished: its worker is gone, or wrote a newer file since.  A file of
 * the current workers is never finished, even when read to its end.
 */

static ngx_int_t
ngx_http_vmx_spool_finished(ngx_http_vmx_spool_name_t *name,
    ngx_array_t *names, ngx_uint_t i)
{
    ngx_http_vmx_spool_name_t  *other;

    if (name->pid <= 0 || (kill(name->pid, 0) == -1 && errno == ESRCH)) {
        return 1;
    }

    other = names->elts;

    for (i++; i < names->nelts; i++) {
        if (other[i].pid == name->pid) {
            return 1;
        }
    }

    return 0;
}


/* the cursor argument: each named file's offset into names[].offset */

static ngx_int_t
ngx_http_vmx_spool_cursor(ngx_http_request_t *r, ngx_array_t *names)
{
    u_char                     *p, *last, *end, *colon, *dst;
    off_t                       offset;
    ngx_str_t                   value;
    ngx_uint_t                  i;
    ngx_http_vmx_spool_name_t  *name;

    if (ngx_http_arg(r, (u_char *) "cursor", 6, &value) != NGX_OK
        || value.len == 0)
    {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, value.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst = p;
    ngx_unescape_uri(&dst, &value.data, value.len, 0);
    last = dst;

    name = names->elts;

    for ( /* void */ ; p < last; p = end + 1) {
        end = ngx_strlchr(p, last, ',');
        if (end == NULL) {
            end = last;
        }

        colon = ngx_strlchr(p, end, ':');
        if (colon == NULL) {
            return NGX_ERROR;
        }

        offset = ngx_atoof(colon + 1, end - colon - 1);
        if (offset == NGX_ERROR) {
            return NGX_ERROR;
        }

        for (i = 0; i < names->nelts; i++) {
            if (ngx_memn2cmp(name[i].name, p, name[i].len, colon - p) == 0) {
                name[i].offset = offset;
                break;
            }
        }
    }

    return NGX_OK;
}
