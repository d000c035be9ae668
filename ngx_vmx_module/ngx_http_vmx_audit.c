/*
 * VM-X gateway: audit and usage records.
 *
 * Every gateway request leaves one record (docs/ARCHITECTURE.md, "Audit and
 * usage records"): nothing waits on the database.  The log phase copies the
 * record into a ring in its own shared zone ("vmx_audit"), and a worker
 * writes the ring's records to its spool file with one write, once they
 * make a batch or "flush=" after a record came, as access_log's "buffer="
 * does.  The ring belongs to the zone, not to a worker: a worker that dies
 * leaves its records there for the others (or the worker that replaces it),
 * a reload keeps the zone, and a worker that exits writes the ring first.
 * With "thread_pool=" the write is a task of that pool, as nginx's
 * "aio threads" writes files: a file system that stalls (a journal commit,
 * writeback) stalls a thread, not the worker's event loop.
 * A record is framed by its lengths (lib/vmx_spool.h): its metadata as JSON,
 * then the request and the response as they were, so no payload byte can
 * end, split or forge a record.
 *
 * The control plane lists the spool (GET /vmx/spool), reads each file's new
 * bytes as ranges of a static file (GET /vmx/spool/<name>, sent by nginx's
 * output chain, never read into memory here), and deletes the files it has
 * committed whole once no worker writes them (DELETE /vmx/spool/<name>).
 *
 * A file is finished when the worker that wrote it has gone, or has moved
 * on to a newer file: names are records-<unix msec>-<pid>.vmx, so their
 * byte order is their creation order.
 *
 * The bytes not yet ingested are bounded by vmx_audit_spool_max: past it a
 * record is not written (counted), and an environment that requires its
 * audit answers 503 instead of serving unaudited requests.  The listing
 * carries the control plane's cursor, which tells how much is ingested.
 */

#include "ngx_http_vmx_module.h"
#include "vmx_bytes.h"
#include "vmx_spool.h"

#include <dirent.h>
#include <sys/uio.h>


#define NGX_HTTP_VMX_SPOOL_FILE_MAX  (16 * 1024 * 1024)
#define NGX_HTTP_VMX_SPOOL_NAME_LEN  64
#define NGX_HTTP_VMX_SPOOL_PREFIX    "/vmx/spool"

#define NGX_HTTP_VMX_AUDIT_BUFFER    (1024 * 1024)
#define NGX_HTTP_VMX_AUDIT_FLUSH     100
/* written while its bytes are still in the CPU's caches */
#define NGX_HTTP_VMX_AUDIT_BATCH     (64 * 1024)
/* an exiting worker waits this long for another's write of the ring */
#define NGX_HTTP_VMX_AUDIT_EXIT_WAIT 1000

/* a member of the record: its key ,"name": is a literal of known length */
#define ngx_http_vmx_audit_key(name)                                          \
    ",\"" name "\":", sizeof(",\"" name "\":") - 1
#define ngx_http_vmx_audit_str(out, name, value)                              \
    ngx_http_vmx_audit_str_at(out, ngx_http_vmx_audit_key(name), value)
#define ngx_http_vmx_audit_count(out, name, n)                                \
    ngx_http_vmx_audit_count_at(out, ngx_http_vmx_audit_key(name), n)
#define ngx_http_vmx_audit_ms(out, name, usec)                                \
    ngx_http_vmx_audit_ms_at(out, ngx_http_vmx_audit_key(name), usec)
#define ngx_http_vmx_audit_time(out, name, sec, msec)                         \
    ngx_http_vmx_audit_time_at(out, ngx_http_vmx_audit_key(name), sec, msec)


/*
 * The zone: the spool's counters, and the ring of records not yet in a
 * file.  Ring offsets only grow; a byte's place is its offset modulo the
 * size.  [tail, head) waits; a flusher writes [tail, head as it found it)
 * without the lock, and only then moves the tail, so a flusher that dies
 * leaves the bytes for the next one (some may then be in two files: the
 * control plane skips a record it has stored, and a cut one is garbage).
 */

struct ngx_http_vmx_audit_sh_s {
    ngx_atomic_t                 spool_bytes;   /* not ingested */
    ngx_atomic_t                 spool_disk;    /* on disk, last listing */
    ngx_atomic_t                 spool_dropped; /* records not spooled */
    ngx_atomic_t                 spool_refused; /* 503 answered */
    ngx_atomic_t                 spool_warned;  /* past the warning */

    uint64_t                     head;
    uint64_t                     tail;
    ngx_pid_t                    flusher;       /* writing; 0: nobody */
    size_t                       size;
    u_char                      *data;
};


typedef struct {
    u_char      name[NGX_HTTP_VMX_SPOOL_NAME_LEN];
    size_t      len;
    ngx_pid_t   pid;
    off_t       size;
} ngx_http_vmx_spool_name_t;


static ngx_int_t ngx_http_vmx_audit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_vmx_spool_open(ngx_cycle_t *cycle,
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_audit_record(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static void ngx_http_vmx_audit_time_at(vmx_buf_t *out, const char *key,
    size_t key_len, time_t sec, ngx_msec_t msec);
static void ngx_http_vmx_audit_str_at(vmx_buf_t *out, const char *key,
    size_t key_len, ngx_str_t *value);
static void ngx_http_vmx_audit_ms_at(vmx_buf_t *out, const char *key,
    size_t key_len, uint64_t usec);
static void ngx_http_vmx_audit_count_at(vmx_buf_t *out, const char *key,
    size_t key_len, int64_t n);
static void ngx_http_vmx_audit_thousandths(char *p, uint64_t n);
static void ngx_http_vmx_audit_attempts(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, vmx_buf_t *out);
static ngx_uint_t ngx_http_vmx_audit_payloads(ngx_http_request_t *r,
    ngx_http_vmx_ctx_t *ctx, struct iovec *iov, size_t *request_len,
    size_t *response_len);
static ngx_flag_t ngx_http_vmx_audit_append(ngx_http_vmx_main_conf_t *mcf,
    struct iovec *iov, ngx_uint_t niov, size_t total);
static void ngx_http_vmx_audit_schedule(ngx_http_vmx_main_conf_t *mcf,
    size_t used);
static void ngx_http_vmx_audit_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_vmx_audit_flush(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log);
static ngx_int_t ngx_http_vmx_audit_take(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log, uint64_t *end, struct iovec *iov, ngx_uint_t *niov,
    size_t *len);
static ngx_int_t ngx_http_vmx_audit_taken(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log, uint64_t end, size_t len, ngx_int_t rc);
#if (NGX_THREADS)
static ngx_int_t ngx_http_vmx_audit_post(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log);
static void ngx_http_vmx_audit_thread(void *data, ngx_log_t *log);
static void ngx_http_vmx_audit_written(ngx_event_t *ev);
#endif
static void ngx_http_vmx_spool_account(ngx_http_vmx_main_conf_t *mcf,
    ngx_log_t *log, off_t delta);
static void ngx_http_vmx_spool_drop(ngx_uint_t level, ngx_log_t *log,
    ngx_http_vmx_main_conf_t *mcf, ngx_uint_t records, const char *why);
static ngx_int_t ngx_http_vmx_spool_writev(ngx_log_t *log,
    ngx_http_vmx_main_conf_t *mcf, struct iovec *iov, ngx_uint_t niov,
    size_t total);
static ngx_int_t ngx_http_vmx_spool_wrote(ngx_log_t *log,
    ngx_http_vmx_main_conf_t *mcf, ssize_t n, size_t total);
static ngx_int_t ngx_http_vmx_spool_list(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *dir, ngx_array_t *names);
static ngx_int_t ngx_http_vmx_spool_finished(ngx_http_vmx_spool_name_t *name,
    ngx_array_t *names, ngx_uint_t i);
static ngx_int_t ngx_http_vmx_spool_index(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf);
static ngx_int_t ngx_http_vmx_spool_file(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf, ngx_str_t *name);
static ngx_int_t ngx_http_vmx_spool_delete(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf, ngx_str_t *name);
static ngx_int_t ngx_http_vmx_spool_valid_name(ngx_str_t *name);
static off_t ngx_http_vmx_spool_offset(ngx_str_t *cursor,
    ngx_http_vmx_spool_name_t *name);
static int ngx_http_vmx_spool_cmp(const void *a, const void *b);


/* the worker's spool file, and its flush of the ring */
static ngx_fd_t     ngx_http_vmx_spool_fd = NGX_INVALID_FILE;
static off_t        ngx_http_vmx_spool_size;
static ngx_uint_t   ngx_http_vmx_spool_failing;   /* logged, until a write */
static ngx_event_t  ngx_http_vmx_audit_event;

#if (NGX_THREADS)

/* the ring's write by a thread: one at a time, the task reused */

typedef struct {
    ngx_http_vmx_main_conf_t    *mcf;
    ngx_fd_t                     fd;
    struct iovec                 iov[2];
    ngx_uint_t                   niov;
    size_t                       len;
    uint64_t                     end;       /* the ring's offset it ends */
    ssize_t                      written;
    ngx_err_t                    err;
    ngx_atomic_t                 done;      /* the thread has written */
} ngx_http_vmx_audit_write_t;

static ngx_thread_task_t  *ngx_http_vmx_audit_task;  /* NULL: no pool */
static ngx_flag_t          ngx_http_vmx_audit_writing;

#endif


/* vmx_audit_spool dir [buffer=size] [flush=time] [thread_pool=name] */

char *
ngx_http_vmx_audit_spool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vmx_main_conf_t *mcf = conf;

    ssize_t          buffer;
    ngx_int_t        flush;
    ngx_str_t       *value, s, name;
    ngx_uint_t       i;
    ngx_shm_zone_t  *shm_zone;

    if (mcf->spool.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mcf->spool = value[1];
    buffer = NGX_HTTP_VMX_AUDIT_BUFFER;
    flush = NGX_HTTP_VMX_AUDIT_FLUSH;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "buffer=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            buffer = ngx_parse_size(&s);
            if (buffer == NGX_ERROR || buffer < 64 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": the ring takes at least 64k",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "flush=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            flush = ngx_parse_time(&s, 0);
            if (flush == NGX_ERROR || flush == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid flush time \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "thread_pool=", 12) == 0) {
#if (NGX_THREADS)
            mcf->audit_pool = ngx_http_vmx_conf_thread_pool(cf, &value[i]);
            if (mcf->audit_pool == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
#else
            return ngx_http_vmx_conf_no_threads(cf, &value[i]);
#endif
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    mcf->audit_buffer = buffer;
    mcf->audit_flush = (ngx_msec_t) flush;

    /* the ring, its header and the slab allocator's own pages */
    ngx_str_set(&name, "vmx_audit");

    shm_zone = ngx_shared_memory_add(cf, &name,
                                     buffer + buffer / 64 + 16 * ngx_pagesize,
                                     &ngx_http_vmx_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_vmx_audit_init_zone;
    shm_zone->data = mcf;

    return NGX_CONF_OK;
}


/*
 * The zone: kept by a reload with the same buffer; at a fresh start the
 * spool's size (records left by an earlier run count against the cap);
 * the listing keeps it true after.
 */

static ngx_int_t
ngx_http_vmx_audit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vmx_main_conf_t  *omcf = data;

    off_t                       bytes;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_pool_t                 *pool;
    ngx_array_t                 names;
    ngx_slab_pool_t            *shpool;
    ngx_http_vmx_audit_sh_t    *sh;
    ngx_http_vmx_main_conf_t   *mcf;
    ngx_http_vmx_spool_name_t  *name;

    mcf = shm_zone->data;

    if (omcf) {
        mcf->audit = omcf->audit;
        mcf->audit_shpool = omcf->audit_shpool;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    mcf->audit_shpool = shpool;

    if (shm_zone->shm.exists) {
        mcf->audit = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_vmx_audit_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->data = ngx_slab_alloc(shpool, mcf->audit_buffer);
    if (sh->data == NULL) {
        return NGX_ERROR;
    }

    sh->size = mcf->audit_buffer;
    shpool->data = sh;
    mcf->audit = sh;

    len = sizeof(" in vmx audit zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in vmx audit zone \"%V\"%Z",
                &shm_zone->shm.name);

    pool = ngx_create_pool(4096, shm_zone->shm.log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_vmx_spool_list(pool, shm_zone->shm.log, &mcf->spool, &names)
        != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    name = names.elts;

    for (bytes = 0, i = 0; i < names.nelts; i++) {
        bytes += name[i].size;
    }

    sh->spool_bytes = (ngx_atomic_uint_t) bytes;

    ngx_destroy_pool(pool);

    return NGX_OK;
}


ngx_int_t
ngx_http_vmx_audit_init_process(ngx_cycle_t *cycle)
{
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->audit == NULL) {
        return NGX_OK;
    }

    ngx_http_vmx_audit_event.handler = ngx_http_vmx_audit_flush_handler;
    ngx_http_vmx_audit_event.log = cycle->log;
    ngx_http_vmx_audit_event.data = mcf;
    ngx_http_vmx_audit_event.cancelable = 1;

    if (ngx_http_vmx_spool_open(cycle, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

#if (NGX_THREADS)
    if (mcf->audit_pool) {
        ngx_http_vmx_audit_task = ngx_thread_task_alloc(cycle->pool,
                                            sizeof(ngx_http_vmx_audit_write_t));
        if (ngx_http_vmx_audit_task == NULL) {
            return NGX_ERROR;
        }

        ngx_http_vmx_audit_task->handler = ngx_http_vmx_audit_thread;
        ngx_http_vmx_audit_task->event.handler = ngx_http_vmx_audit_written;
        ngx_http_vmx_audit_task->event.data = ngx_http_vmx_audit_task->ctx;
        ngx_http_vmx_audit_task->event.log = cycle->log;
    }
#endif

    /* records a dead worker or the last cycle left in the ring */
    if (mcf->audit->head != mcf->audit->tail) {
        ngx_add_timer(&ngx_http_vmx_audit_event, 1);
    }

    return NGX_OK;
}


/* an exiting worker writes the ring, waiting a little for another writer */

void
ngx_http_vmx_audit_exit_process(ngx_cycle_t *cycle)
{
    ngx_int_t                  rc;
    ngx_uint_t                 waited;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_vmx_module);

    if (mcf == NULL || mcf->audit == NULL
        || ngx_http_vmx_spool_fd == NGX_INVALID_FILE)
    {
        return;
    }

#if (NGX_THREADS)
    /* a thread's write, ended here: its completion event will not run */
    if (ngx_http_vmx_audit_writing) {
        ngx_thread_task_t           *task = ngx_http_vmx_audit_task;
        ngx_http_vmx_audit_write_t  *w = task->ctx;

        for (waited = 0; !w->done && waited < NGX_HTTP_VMX_AUDIT_EXIT_WAIT;
             waited += 10)
        {
            ngx_msleep(10);
        }

        if (!w->done) {
            /* the ring's bytes stay; the next worker writes them */
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "vmx: a thread still writes audit records at "
                          "exit; they are written again by another worker");
            return;
        }

        /* without the task, its end leaves what came since to this loop */
        ngx_http_vmx_audit_task = NULL;
        ngx_http_vmx_audit_written(&task->event);
    }

    /* the rest without the pool, whose threads may be gone */
    ngx_http_vmx_audit_task = NULL;
#endif

    for (waited = 0; waited < NGX_HTTP_VMX_AUDIT_EXIT_WAIT; waited += 10) {
        rc = ngx_http_vmx_audit_flush(mcf, cycle->log);
        if (rc != NGX_AGAIN) {
            break;
        }

        ngx_msleep(10);
    }

    (void) ngx_close_file(ngx_http_vmx_spool_fd);
    ngx_http_vmx_spool_fd = NGX_INVALID_FILE;
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

    ngx_sprintf(name, "%V/records-%013T%03M-%010P.vmx%Z", &mcf->spool,
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


/*
 * One record per gateway request: when the answer's last buffer passes the
 * body filter, before it is sent, so that a worker that dies after it has
 * answered leaves the record in the ring; else (the client went away, a
 * header-only answer) in the log phase.
 */

void
ngx_http_vmx_audit_write(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    size_t                     total, request_len, response_len;
    uint32_t                   crc;
    vmx_buf_t                  meta;
    ngx_uint_t                 i, niov;
    struct iovec               iov[8];
    ngx_http_vmx_audit_sh_t   *sh;
    ngx_http_vmx_main_conf_t  *mcf;
    u_char                     header[VMX_SPOOL_HEADER_MAX];

    if (ngx_http_vmx_spool_fd == NGX_INVALID_FILE || ctx->response.audited) {
        return;
    }

    ctx->response.audited = 1;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    sh = mcf->audit;

    if (ngx_http_vmx_audit_record(r, ctx, &meta) != NGX_OK) {
        ngx_http_vmx_spool_drop(NGX_LOG_ALERT, r->connection->log, mcf, 1,
                                "out of memory");
        return;
    }

    /* header, meta, request, response (up to 3 parts), "\n" */

    niov = 2 + ngx_http_vmx_audit_payloads(r, ctx, &iov[2], &request_len,
                                            &response_len);

    iov[1].iov_base = meta.data;
    iov[1].iov_len = meta.len;

    for (crc = 0, i = 1; i < niov; i++) {
        crc = vmx_spool_crc32(crc, iov[i].iov_base, iov[i].iov_len);
    }

    iov[0].iov_base = header;
    iov[0].iov_len = vmx_spool_header((char *) header, meta.len, request_len,
                                      response_len, crc);
    iov[niov].iov_base = "\n";
    iov[niov].iov_len = 1;
    niov++;

    total = iov[0].iov_len + meta.len + request_len + response_len + 1;

    /*
     * past the cap a record is dropped, unless its environment requires
     * its audit and the request was served: then it was admitted below the
     * cap (see ngx_http_vmx_audit_refused()) and its record goes in over
     * it; the record of a request refused for a full spool is not owed
     */
    if (mcf->spool_max
        && (off_t) (sh->spool_bytes + (sh->head - sh->tail) + total)
           > mcf->spool_max
        && !(ctx->request.api_key && ctx->request.api_key->env->audit_required
             && !ctx->request.audit_refused))
    {
        /* a configured bound, not a fault: a warning */
        ngx_http_vmx_spool_drop(NGX_LOG_WARN, r->connection->log, mcf, 1,
                                "the spool is full (vmx_audit_spool_max)");
        return;
    }

    if (ngx_http_vmx_audit_append(mcf, iov, niov, total)) {
        return;
    }

    /* too large for the ring, or the ring is full: this record at once */

    if (ngx_http_vmx_spool_writev(r->connection->log, mcf, iov, niov, total)
        != NGX_OK)
    {
        ngx_http_vmx_spool_drop(NGX_LOG_ALERT, r->connection->log, mcf, 1,
                                strerror(ngx_errno));
    }
}


/*
 * A record into the ring, whole, under the zone's lock (nginx frees it
 * when its holder dies); a quarter of the ring at most, so that large
 * records do not crowd out the others.  The first record arms the flush
 * timer; a batch is written at the end of this turn of the loop.  Returns
 * whether the record went in.
 */

static ngx_flag_t
ngx_http_vmx_audit_append(ngx_http_vmx_main_conf_t *mcf, struct iovec *iov,
    ngx_uint_t niov, size_t total)
{
    size_t                    at, n, used;
    u_char                   *p;
    ngx_uint_t                i;
    ngx_slab_pool_t          *shpool;
    ngx_http_vmx_audit_sh_t  *sh;

    sh = mcf->audit;
    shpool = mcf->audit_shpool;

    if (total > sh->size / 4) {
        return 0;
    }

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->head - sh->tail + total > sh->size) {
        ngx_shmtx_unlock(&shpool->mutex);
        return 0;
    }

    at = (size_t) (sh->head % sh->size);

    for (i = 0; i < niov; i++) {
        p = iov[i].iov_base;
        n = ngx_min(iov[i].iov_len, sh->size - at);

        ngx_memcpy(sh->data + at, p, n);
        ngx_memcpy(sh->data, p + n, iov[i].iov_len - n);

        at = (at + iov[i].iov_len) % sh->size;
    }

    sh->head += total;
    used = (size_t) (sh->head - sh->tail);

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_vmx_audit_schedule(mcf, used);

    return 1;
}


/* a batch is written at the end of this turn of the loop, less at flush= */

static void
ngx_http_vmx_audit_schedule(ngx_http_vmx_main_conf_t *mcf, size_t used)
{
    if (used >= ngx_min(mcf->audit->size / 2, NGX_HTTP_VMX_AUDIT_BATCH)) {
        if (!ngx_http_vmx_audit_event.posted) {
            ngx_post_event(&ngx_http_vmx_audit_event, &ngx_posted_events);
        }

    } else if (!ngx_http_vmx_audit_event.timer_set) {
        ngx_add_timer(&ngx_http_vmx_audit_event, mcf->audit_flush);
    }
}


static void
ngx_http_vmx_audit_flush_handler(ngx_event_t *ev)
{
    ngx_http_vmx_main_conf_t  *mcf = ev->data;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    /* left: another worker writes, more came, or the write failed; a
       thread's write goes on when it ends */
    switch (ngx_http_vmx_audit_flush(mcf, ev->log)) {
    case NGX_OK:
    case NGX_BUSY:
        break;
    default:
        ngx_add_timer(ev, mcf->audit_flush);
    }
}


/*
 * The ring's records to this worker's spool file with one write: NGX_OK
 * when the ring is empty after it, NGX_AGAIN when records are left
 * (another worker is writing, or more came meanwhile), NGX_ERROR when the
 * write failed (the records stay in the ring for the next try), NGX_BUSY
 * when a thread writes them (its end flushes again).
 */

static ngx_int_t
ngx_http_vmx_audit_flush(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log)
{
    size_t        len;
    uint64_t      end;
    ngx_int_t     rc;
    ngx_uint_t    niov;
    struct iovec  iov[2];

#if (NGX_THREADS)
    if (ngx_http_vmx_audit_task) {
        return ngx_http_vmx_audit_post(mcf, log);
    }
#endif

    rc = ngx_http_vmx_audit_take(mcf, log, &end, iov, &niov, &len);
    if (rc != NGX_DONE) {
        return rc;
    }

    rc = ngx_http_vmx_spool_writev(log, mcf, iov, niov, len);

    return ngx_http_vmx_audit_taken(mcf, log, end, len, rc);
}


/*
 * The ring's waiting bytes claimed for this worker, under the lock: NGX_DONE
 * and the iovecs of [tail, *end), NGX_OK when there are none, NGX_AGAIN
 * when another worker writes them
 */

static ngx_int_t
ngx_http_vmx_audit_take(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log,
    uint64_t *end, struct iovec *iov, ngx_uint_t *niov, size_t *len)
{
    size_t                    at;
    ngx_slab_pool_t          *shpool;
    ngx_http_vmx_audit_sh_t  *sh;

    sh = mcf->audit;
    shpool = mcf->audit_shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->flusher) {
        if (kill(sh->flusher, 0) == 0 || ngx_errno != NGX_ESRCH) {
            ngx_shmtx_unlock(&shpool->mutex);
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "vmx: worker %P died writing audit records from the "
                      "ring; they are written again", sh->flusher);
    }

    if (sh->head == sh->tail) {
        sh->flusher = 0;
        ngx_shmtx_unlock(&shpool->mutex);
        return NGX_OK;
    }

    *end = sh->head;
    *len = (size_t) (*end - sh->tail);
    at = (size_t) (sh->tail % sh->size);
    sh->flusher = ngx_pid;

    ngx_shmtx_unlock(&shpool->mutex);

    iov[0].iov_base = sh->data + at;
    iov[0].iov_len = ngx_min(*len, sh->size - at);
    iov[1].iov_base = sh->data;
    iov[1].iov_len = *len - iov[0].iov_len;
    *niov = iov[1].iov_len ? 2 : 1;

    return NGX_DONE;
}


/* the claimed bytes were written (rc NGX_OK) or not: the tail, the claim */

static ngx_int_t
ngx_http_vmx_audit_taken(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log,
    uint64_t end, size_t len, ngx_int_t rc)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_vmx_audit_sh_t  *sh;

    sh = mcf->audit;
    shpool = mcf->audit_shpool;

    if (rc != NGX_OK && !ngx_http_vmx_spool_failing) {
        ngx_http_vmx_spool_failing = 1;
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "vmx: audit records could not be written to the "
                      "spool; they wait in the ring (%uz bytes) and are "
                      "written again", len);
    }

    ngx_shmtx_lock(&shpool->mutex);

    if (rc == NGX_OK) {
        sh->tail = end;
        rc = (sh->head == sh->tail) ? NGX_OK : NGX_AGAIN;
    }

    sh->flusher = 0;

    ngx_shmtx_unlock(&shpool->mutex);

    return rc;
}


#if (NGX_THREADS)

/* the claimed bytes to a thread of the pool; inline if it takes no task */

static ngx_int_t
ngx_http_vmx_audit_post(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log)
{
    ngx_int_t                    rc;
    ngx_http_vmx_audit_write_t  *w;

    if (ngx_http_vmx_audit_writing) {
        return NGX_BUSY;
    }

    w = ngx_http_vmx_audit_task->ctx;

    rc = ngx_http_vmx_audit_take(mcf, log, &w->end, w->iov, &w->niov,
                                 &w->len);
    if (rc != NGX_DONE) {
        return rc;
    }

    w->mcf = mcf;
    w->fd = ngx_http_vmx_spool_fd;
    w->done = 0;

    if (ngx_thread_task_post(mcf->audit_pool, ngx_http_vmx_audit_task)
        != NGX_OK)
    {
        /* the pool's queue is full (logged): this write inline */
        rc = ngx_http_vmx_spool_writev(log, mcf, w->iov, w->niov, w->len);
        return ngx_http_vmx_audit_taken(mcf, log, w->end, w->len, rc);
    }

    ngx_http_vmx_audit_writing = 1;

    return NGX_BUSY;
}


/* in a thread of the pool: the write alone, nothing of nginx touched */

static void
ngx_http_vmx_audit_thread(void *data, ngx_log_t *log)
{
    ngx_http_vmx_audit_write_t  *w = data;

    w->written = writev(w->fd, w->iov, (int) w->niov);
    w->err = (w->written == -1) ? ngx_errno : 0;

    ngx_memory_barrier();
    w->done = 1;
}


/* back in the worker: the write's accounting, and what came meanwhile */

static void
ngx_http_vmx_audit_written(ngx_event_t *ev)
{
    ngx_http_vmx_audit_write_t  *w = ev->data;

    ngx_int_t  rc;

    ngx_http_vmx_audit_writing = 0;

    ngx_set_errno(w->err);

    rc = ngx_http_vmx_spool_wrote(ev->log, w->mcf, w->written, w->len);
    rc = ngx_http_vmx_audit_taken(w->mcf, ev->log, w->end, w->len, rc);

    if (ngx_http_vmx_audit_task == NULL) {
        return;                 /* the worker exits, and flushes inline */
    }

    /* what came meanwhile waits for its batch or flush=, as any record:
       writing it at once would make a write of each request at low load */
    if (rc == NGX_AGAIN) {
        ngx_http_vmx_audit_schedule(w->mcf, (size_t) (w->mcf->audit->head
                                                      - w->mcf->audit->tail));

    } else if (rc == NGX_ERROR && !ngx_http_vmx_audit_event.timer_set) {
        ngx_add_timer(&ngx_http_vmx_audit_event, w->mcf->audit_flush);
    }
}

#endif


/* whole records to the spool file: O_APPEND keeps them whole */

static ngx_int_t
ngx_http_vmx_spool_writev(ngx_log_t *log, ngx_http_vmx_main_conf_t *mcf,
    struct iovec *iov, ngx_uint_t niov, size_t total)
{
    return ngx_http_vmx_spool_wrote(log, mcf,
                                    writev(ngx_http_vmx_spool_fd, iov,
                                           (int) niov),
                                    total);
}


/*
 * n bytes of total were appended (-1: none, errno set): the file's size,
 * the spool's, and a new file past NGX_HTTP_VMX_SPOOL_FILE_MAX.  While a
 * thread appends too, the file is neither cut nor changed (the thread's end
 * does it): a part of a record is left in place, which the control plane
 * skips.
 */

static ngx_int_t
ngx_http_vmx_spool_wrote(ngx_log_t *log, ngx_http_vmx_main_conf_t *mcf,
    ssize_t n, size_t total)
{
    ngx_flag_t  writing;

#if (NGX_THREADS)
    writing = ngx_http_vmx_audit_writing;
#else
    writing = 0;
#endif

    if (n != (ssize_t) total) {
        if (n >= 0) {
            /* a part of a record: take it back, the file stays readable */
            if (writing
                || ftruncate(ngx_http_vmx_spool_fd, ngx_http_vmx_spool_size)
                   == -1)
            {
                ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                              "vmx: a part of an audit record stays in the "
                              "spool (the control plane skips it)");
            }

            ngx_set_errno(NGX_ENOSPC);
        }

        return NGX_ERROR;
    }

    if (ngx_http_vmx_spool_failing) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "vmx: audit records are written to the spool again");
        ngx_http_vmx_spool_failing = 0;
    }

    ngx_http_vmx_spool_size += n;
    ngx_http_vmx_spool_account(mcf, log, n);

    if (ngx_http_vmx_spool_size >= NGX_HTTP_VMX_SPOOL_FILE_MAX && !writing) {
        (void) ngx_http_vmx_spool_open((ngx_cycle_t *) ngx_cycle, mcf);
    }

    return NGX_OK;
}


/* a record that cannot be spooled: counted, logged once until a write */

static void
ngx_http_vmx_spool_drop(ngx_uint_t level, ngx_log_t *log,
    ngx_http_vmx_main_conf_t *mcf, ngx_uint_t records, const char *why)
{
    (void) ngx_atomic_fetch_add(&mcf->audit->spool_dropped, records);

    if (ngx_http_vmx_spool_failing) {
        return;
    }

    ngx_http_vmx_spool_failing = 1;

    ngx_log_error(level, log, 0,
                  "vmx: %ui audit record(s) not written: %s; records are "
                  "counted in vmx_audit_records_dropped_total until one is "
                  "written again", records, why);
}


/* the spool's size in the zone, and its warning threshold */

static void
ngx_http_vmx_spool_account(ngx_http_vmx_main_conf_t *mcf, ngx_log_t *log,
    off_t delta)
{
    off_t                     bytes, warn;
    ngx_http_vmx_audit_sh_t  *sh;

    sh = mcf->audit;

    bytes = (off_t) ngx_atomic_fetch_add(&sh->spool_bytes, delta) + delta;

    if (mcf->spool_max == 0) {
        return;
    }

    warn = mcf->spool_max / 100 * (off_t) mcf->spool_warn;

    if (bytes >= warn && ngx_atomic_cmp_set(&sh->spool_warned, 0, 1)) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "vmx: the audit spool holds %O bytes, %ui%% of "
                      "vmx_audit_spool_max %O: is the control plane "
                      "ingesting?", bytes, mcf->spool_warn, mcf->spool_max);

    } else if (bytes < warn && ngx_atomic_cmp_set(&sh->spool_warned, 1, 0)) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "vmx: the audit spool is back under %ui%% of "
                      "vmx_audit_spool_max (%O bytes)", mcf->spool_warn,
                      bytes);
    }
}


/*
 * An environment that requires its audit refuses requests while the spool
 * is full: 1 when this request must be answered 503.
 */

ngx_int_t
ngx_http_vmx_audit_refused(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    ngx_http_vmx_audit_sh_t   *sh;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    sh = mcf->audit;

    if (ctx->request.api_key == NULL
        || !ctx->request.api_key->env->audit_required
        || sh == NULL || mcf->spool_max == 0
        || (off_t) (sh->spool_bytes + (sh->head - sh->tail))
           + ngx_min(65536, mcf->spool_max / 16) < mcf->spool_max)
    {
        return 0;
    }

    (void) ngx_atomic_fetch_add(&sh->spool_refused, 1);

    ctx->request.audit_refused = 1;

    return 1;
}


/* the payloads into iov: request, then response; how many parts */

static ngx_uint_t
ngx_http_vmx_audit_payloads(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    struct iovec *iov, size_t *request_len, size_t *response_len)
{
    ngx_uint_t                   n;
    ngx_http_vmx_environment_t  *env;
    ngx_http_vmx_main_conf_t    *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    env = ctx->request.api_key ? ctx->request.api_key->env : NULL;

    *request_len = 0;
    *response_len = 0;

    if (env != NULL && !env->store_payload) {
        return 0;
    }

    n = 0;

    if (ctx->request.request_body.len
        && ctx->request.request_body.len <= mcf->payload_max)
    {
        iov[n].iov_base = ctx->request.request_body.data;
        iov[n].iov_len = ctx->request.request_body.len;
        *request_len = ctx->request.request_body.len;
        n++;
    }

    if (ctx->response.capture.len == 0 || vmx_buf_failed(&ctx->response.capture)
        || ctx->response.capture_truncated)
    {
        return n;
    }

    if (!ctx->stream.streamed) {
        iov[n].iov_base = ctx->response.capture.data;
        iov[n].iov_len = ctx->response.capture.len;
        *response_len = ctx->response.capture.len;
        return n + 1;
    }

    /* the chunks, each followed by a comma: an array of them */

    iov[n].iov_base = "[";
    iov[n].iov_len = 1;
    iov[n + 1].iov_base = ctx->response.capture.data;
    iov[n + 1].iov_len = ctx->response.capture.len - 1;
    iov[n + 2].iov_base = "]";
    iov[n + 2].iov_len = 1;
    *response_len = ctx->response.capture.len + 1;

    return n + 3;
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

    vmx_buf_init(out, ngx_http_vmx_json_alloc, r->pool, 1536);

    id.data = ctx->request.request_id;
    id.len = sizeof(ctx->request.request_id);

    env = ctx->request.api_key ? ctx->request.api_key->env : NULL;

    vmx_buf_append_cstr(out, "{\"v\":2,\"id\":");
    vmx_buf_append_json_str(out, (char *) id.data, id.len);
    ngx_http_vmx_audit_time(out, "timestamp", r->start_sec, r->start_msec);

    /* without a key, the ids of a scoped path (the control plane keeps
     * them when they are UUIDs): a refused request is still seen there */
    ngx_http_vmx_audit_str(out, "workspaceId",
                           env ? &env->workspace_id
                           : ctx->request.path_workspace_id.len
                             ? &ctx->request.path_workspace_id : NULL);
    ngx_http_vmx_audit_str(out, "environmentId",
                           env ? &env->id
                           : ctx->request.path_environment_id.len
                             ? &ctx->request.path_environment_id : NULL);
    vmx_buf_append_cstr(out, ctx->request.api_key ? ",\"authenticated\":true"
                                          : ",\"authenticated\":false");
    ngx_http_vmx_audit_str(out, "requestId", &id);

    s.data = ctx->request.trace_id;
    s.len = sizeof(ctx->request.trace_id);
    ngx_http_vmx_audit_str(out, "traceId", &s);
    s.data = ctx->request.span_id;
    s.len = sizeof(ctx->request.span_id);
    ngx_http_vmx_audit_str(out, "spanId", &s);
    s.data = ctx->request.parent_id;
    s.len = sizeof(ctx->request.parent_id);
    ngx_http_vmx_audit_str(out, "parentSpanId",
                           ctx->request.has_parent ? &s : NULL);

    ngx_http_vmx_audit_str(out, "correlationId",
                           ctx->request.correlation_id.len
                           ? &ctx->request.correlation_id : NULL);
    ngx_http_vmx_audit_str(out, "batchId",
                           ctx->request.batch_id.len
                           ? &ctx->request.batch_id : NULL);
    ngx_http_vmx_audit_count(out, "batchItem",
                             ctx->request.batch_id.len
                             ? ctx->request.batch_item : -1);
    ngx_http_vmx_audit_str(out, "resourceId",
                           ctx->request.resource ? &ctx->request.resource->id
                               : NULL);
    ngx_http_vmx_audit_str(out, "resource",
                           ctx->request.resource ? &ctx->request.resource->name
                               : NULL);
    ngx_http_vmx_audit_str(out, "apiKeyId",
                           ctx->request.api_key ? &ctx->request.api_key->id
                               : NULL);
    ngx_http_vmx_audit_str(out, "sourceIp", &r->connection->addr_text);
    ngx_http_vmx_audit_str(out, "method", &r->method_name);
    ngx_http_vmx_audit_str(out, "path", &r->uri);
    ngx_http_vmx_audit_count(out, "statusCode", r->headers_out.status);
    ngx_http_vmx_audit_str(out, "errorCode",
                           ctx->response.error_code.len
                           ? &ctx->response.error_code : NULL);
    ngx_http_vmx_audit_str(out, "errorMessage",
                           ctx->response.error_message.len
                           ? &ctx->response.error_message : NULL);
    ngx_http_vmx_audit_str(out, "provider",
                           ctx->attempt.target ? &ctx->attempt.target->provider
                               : NULL);
    ngx_http_vmx_audit_str(out, "model",
                           ctx->attempt.target ? &ctx->attempt.target->model
                               : NULL);
    ngx_http_vmx_audit_str(out, "connectionId",
                           ctx->attempt.target
                           ? &ctx->attempt.target->connection->id : NULL);
    vmx_buf_append_cstr(out, ctx->request.stream ? ",\"stream\":true"
                                         : ",\"stream\":false");
    ngx_http_vmx_audit_ms(out, "duration",
                          ngx_http_vmx_usec() - ctx->request.start_usec);
    ngx_http_vmx_audit_ms(out, "gateDuration", ctx->admission.gate_usec);
    ngx_http_vmx_audit_ms(out, "routingDuration", ctx->plan.routing_usec);

    vmx_buf_append_cstr(out, ",\"events\":[");

    for (i = 0; i < ctx->plan.nevents; i++) {
        ev = &ctx->plan.events[i];

        vmx_buf_append_cstr(out, i ? ",{\"type\":" : "{\"type\":");
        vmx_buf_append_cstr(out, ev->routing ? "\"routing\"" : "\"fallback\"");
        ngx_http_vmx_audit_time(out, "timestamp", ev->time / 1000,
                                ev->time % 1000);
        ngx_http_vmx_audit_str(out, "provider", &ev->provider);
        ngx_http_vmx_audit_str(out, "model", &ev->model);
        ngx_http_vmx_audit_str(out, "connectionId", &ev->connection_id);
        ngx_http_vmx_audit_count(out, "statusCode",
                                 ev->status ? (int64_t) ev->status : -1);
        if (ev->routing) {
            ngx_http_vmx_audit_str(out, "groupId", &ev->reason);
            ngx_http_vmx_audit_str(out, "originalProvider",
                                   &ev->original_provider);
            ngx_http_vmx_audit_str(out, "originalModel", &ev->original_model);

        } else {
            ngx_http_vmx_audit_str(out, "reason", &ev->reason);
        }

        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "]");

    ngx_http_vmx_audit_attempts(r, ctx, out);

    /* the payloads follow the metadata: only whether they were cut */

    payload = (env == NULL || env->store_payload);

    vmx_buf_append_cstr(out, payload && (ctx->response.capture_truncated
                                         || ctx->request.request_body.len
                                            > mcf->payload_max)
                             ? ",\"payloadTruncated\":true}"
                             : ",\"payloadTruncated\":false}");

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
    vmx_usage_t             *usage;
    ngx_http_vmx_attempt_t  *a;

    /* the usage is the last attempt's */
    usage = &ctx->attempt.usage;

    vmx_buf_append_cstr(out, ",\"attempts\":[");

    for (i = 0; i < ctx->plan.nattempts; i++) {
        a = &ctx->plan.attempt_log[i];
        last = (i + 1 == ctx->plan.nattempts);

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
                                 last ? usage->prompt_tokens : -1);
        ngx_http_vmx_audit_count(out, "completionTokens",
                                 last ? usage->completion_tokens : -1);
        ngx_http_vmx_audit_count(out, "totalTokens",
                                 last ? (usage->total_tokens >= 0
                                         ? usage->total_tokens
                                         : (usage->prompt_tokens >= 0
                                            && usage->completion_tokens >= 0
                                            ? usage->prompt_tokens
                                              + usage->completion_tokens
                                            : -1))
                                      : -1);

        seconds = (double) (end - a->started_usec) / 1000000;

        if (last && usage->completion_tokens > 0 && seconds > 0) {
            ngx_http_vmx_audit_ms(out, "tokensPerSecond", (uint64_t)
                                  (usage->completion_tokens / seconds
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
ngx_http_vmx_audit_str_at(vmx_buf_t *out, const char *key, size_t key_len,
    ngx_str_t *value)
{
    vmx_buf_append(out, key, key_len);

    if (value == NULL) {
        vmx_buf_append(out, "null", 4);
        return;
    }

    vmx_buf_append_json_str(out, (char *) value->data, value->len);
}


/* ,"name":N or ,"name":null for a negative N */

static void
ngx_http_vmx_audit_count_at(vmx_buf_t *out, const char *key, size_t key_len,
    int64_t n)
{
    vmx_buf_append(out, key, key_len);

    if (n < 0) {
        vmx_buf_append(out, "null", 4);
        return;
    }

    vmx_buf_append_int(out, n);
}


/* ,"name":12.345 (milliseconds from microseconds) */

static void
ngx_http_vmx_audit_ms_at(vmx_buf_t *out, const char *key, size_t key_len,
    uint64_t usec)
{
    char  frac[sizeof(".000") - 1];

    vmx_buf_append(out, key, key_len);
    vmx_buf_append_int(out, (int64_t) (usec / 1000));

    ngx_http_vmx_audit_thousandths(frac, usec);
    vmx_buf_append(out, frac, sizeof(frac));
}


/*
 * ,"name":"2026-01-02T03:04:05.678Z"; the second's text is kept, as
 * nginx keeps its cached times: records of one second share it
 */

static void
ngx_http_vmx_audit_time_at(vmx_buf_t *out, const char *key, size_t key_len,
    time_t sec, ngx_msec_t msec)
{
    static time_t  cached_sec = -1;
    static u_char  cached[sizeof("\"1970-01-01T00:00:00") - 1];

    char       frac[sizeof(".000Z\"") - 1];
    ngx_tm_t   tm;

    if (sec != cached_sec) {
        ngx_gmtime(sec, &tm);

        (void) ngx_snprintf(cached, sizeof(cached),
                            "\"%4d-%02d-%02dT%02d:%02d:%02d",
                            tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                            tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
        cached_sec = sec;
    }

    ngx_http_vmx_audit_thousandths(frac, msec);
    frac[4] = 'Z';
    frac[5] = '"';

    vmx_buf_append(out, key, key_len);
    vmx_buf_append(out, (char *) cached, sizeof(cached));
    vmx_buf_append(out, frac, sizeof(frac));
}


/* ".123": n's last three digits as a fraction, at p */

static void
ngx_http_vmx_audit_thousandths(char *p, uint64_t n)
{
    p[0] = '.';
    p[1] = (char) ('0' + n % 1000 / 100);
    p[2] = (char) ('0' + n % 100 / 10);
    p[3] = (char) ('0' + n % 10);
}


/* the payload of the answer, as the client got it */

void
ngx_http_vmx_audit_capture(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx,
    u_char *data, size_t len)
{
    u_char                    *p, *last, *end;
    ngx_http_vmx_main_conf_t  *mcf;

    if (ctx->response.capture_truncated
        || (ctx->request.api_key && !ctx->request.api_key->env->store_payload))
    {
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (ctx->response.capture.alloc == NULL) {
        vmx_buf_init(&ctx->response.capture, ngx_http_vmx_json_alloc, r->pool,
                     0);
    }

    if (ctx->response.capture.len + len > mcf->payload_max) {
        ctx->response.capture_truncated = 1;
        return;
    }

    if (!ctx->stream.streamed) {
        vmx_buf_append(&ctx->response.capture, (char *) data, len);
        return;
    }

    /* of a stream, the JSON of each "data: ...\n\n" event but [DONE] */

    last = data + len;

    for (p = data; p < last; p = end + 2) {
        end = (u_char *) vmx_bytes_find((char *) p, last - p, "\n\n", 2);
        if (end == NULL) {
            break;
        }

        if (end - p > 6 && ngx_strncmp(p, "data: ", 6) == 0
            && !(end - p == 12 && ngx_strncmp(p + 6, "[DONE]", 6) == 0))
        {
            vmx_buf_append(&ctx->response.capture, (char *) p + 6, end - p - 6);
            vmx_buf_append(&ctx->response.capture, ",", 1);
        }
    }
}


u_char *
ngx_http_vmx_spool_metrics(ngx_http_request_t *r, u_char *p, u_char *last)
{
    ngx_http_vmx_audit_sh_t   *sh;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);
    sh = mcf->audit;

    if (sh == NULL) {
        return p;
    }

    return ngx_slprintf(p, last,
        "# HELP vmx_audit_spool_bytes Bytes of audit records of this node "
        "not yet ingested (as of the control plane's last listing, plus what "
        "was written since and the ring).\n"
        "# TYPE vmx_audit_spool_bytes gauge\n"
        "vmx_audit_spool_bytes %uL\n"
        "# HELP vmx_audit_spool_disk_bytes Bytes of the spool's files on disk "
        "at the last listing (ingested files go when no worker writes them).\n"
        "# TYPE vmx_audit_spool_disk_bytes gauge\n"
        "vmx_audit_spool_disk_bytes %uA\n"
        "# HELP vmx_audit_spool_max_bytes vmx_audit_spool_max (0: no cap).\n"
        "# TYPE vmx_audit_spool_max_bytes gauge\n"
        "vmx_audit_spool_max_bytes %O\n"
        "# HELP vmx_audit_records_dropped_total Audit records that could not "
        "be spooled (spool full, write error).\n"
        "# TYPE vmx_audit_records_dropped_total counter\n"
        "vmx_audit_records_dropped_total %uA\n"
        "# HELP vmx_audit_refused_total Requests answered 503 because the "
        "spool was full and their environment requires an audit record.\n"
        "# TYPE vmx_audit_refused_total counter\n"
        "vmx_audit_refused_total %uA\n"
        "# HELP vmx_audit_ring_bytes Bytes of audit records in the shared "
        "ring, not yet written to a spool file.\n"
        "# TYPE vmx_audit_ring_bytes gauge\n"
        "vmx_audit_ring_bytes %uL\n"
        "# HELP vmx_audit_ring_size_bytes The ring's size (vmx_audit_spool "
        "buffer=).\n"
        "# TYPE vmx_audit_ring_size_bytes gauge\n"
        "vmx_audit_ring_size_bytes %uz\n",
        sh->spool_bytes + (sh->head - sh->tail), sh->spool_disk,
        mcf->spool_max, sh->spool_dropped,
        sh->spool_refused, sh->head - sh->tail, sh->size);
}


/* /vmx/spool, /vmx/spool/<name>: the records channel */

ngx_int_t
ngx_http_vmx_spool_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  name, msg;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    p = ngx_strnstr(r->uri.data, NGX_HTTP_VMX_SPOOL_PREFIX, r->uri.len);
    p += sizeof(NGX_HTTP_VMX_SPOOL_PREFIX) - 1;

    name.data = p;
    name.len = r->uri.data + r->uri.len - p;

    if (name.len && name.data[0] == '/') {
        name.data++;
        name.len--;
    }

    if (name.len == 0) {
        if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
            return ngx_http_vmx_spool_index(r, mcf);
        }

    } else if (!ngx_http_vmx_spool_valid_name(&name)) {
        ngx_str_set(&msg, "no such spool file");
        return ngx_http_vmx_send_error(r, NULL, NGX_HTTP_NOT_FOUND,
                                       "not_found", &msg);

    } else if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return ngx_http_vmx_spool_file(r, mcf, &name);

    } else if (r->method == NGX_HTTP_DELETE) {
        return ngx_http_vmx_spool_delete(r, mcf, &name);
    }

    ngx_str_set(&msg, "use GET, or DELETE on a file");
    return ngx_http_vmx_send_error(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed", &msg);
}


/*
 * GET /vmx/spool?cursor=<name>:<offset>,...: {"files":[{"name":..,
 * "size":N,"finished":bool}...],"bytes":N,"pending":N,"max":N}, oldest
 * first.  The cursor is what the control plane has committed: the bytes
 * after it are the pending ones the cap bounds.
 */

static ngx_int_t
ngx_http_vmx_spool_index(ngx_http_request_t *r, ngx_http_vmx_main_conf_t *mcf)
{
    u_char                     *p, *start;
    off_t                       bytes, pending;
    ngx_str_t                   cursor;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_array_t                 names;
    ngx_http_vmx_spool_name_t  *name;

    if (ngx_http_vmx_spool_list(r->pool, r->connection->log, &mcf->spool,
                                &names)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    name = names.elts;

    len = sizeof("{\"files\":[],\"bytes\":,\"pending\":,\"max\":}")
          + 3 * NGX_OFF_T_LEN
          + names.nelts * (sizeof("{\"name\":\"\",\"size\":,"
                                  "\"finished\":false},")
                           + NGX_HTTP_VMX_SPOOL_NAME_LEN + NGX_OFF_T_LEN);

    start = ngx_pnalloc(r->pool, len);
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(start, "{\"files\":[", sizeof("{\"files\":[") - 1);

    if (ngx_http_arg(r, (u_char *) "cursor", 6, &cursor) != NGX_OK) {
        ngx_str_null(&cursor);
    }

    for (bytes = 0, pending = 0, i = 0; i < names.nelts; i++) {
        bytes += name[i].size;
        pending += name[i].size - ngx_min(name[i].size,
                                          ngx_http_vmx_spool_offset(&cursor,
                                                                    &name[i]));
        p = ngx_sprintf(p, "%s{\"name\":\"%*s\",\"size\":%O,\"finished\":%s}",
                        i ? "," : "", name[i].len, name[i].name, name[i].size,
                        ngx_http_vmx_spool_finished(&name[i], &names, i)
                        ? "true" : "false");
    }

    p = ngx_sprintf(p, "],\"bytes\":%O,\"pending\":%O,\"max\":%O}", bytes,
                    pending, mcf->spool_max);

    if (mcf->audit) {
        mcf->audit->spool_disk = (ngx_atomic_uint_t) bytes;
        mcf->audit->spool_bytes = (ngx_atomic_uint_t) pending;
        ngx_http_vmx_spool_account(mcf, r->connection->log, 0);
    }

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, start, p - start);
}


/*
 * GET /vmx/spool/<name>: the file as a static file is served, so a Range
 * asks for the new bytes and nginx's range and output filters send them
 * without this worker reading them.
 */

static ngx_int_t
ngx_http_vmx_spool_file(ngx_http_request_t *r, ngx_http_vmx_main_conf_t *mcf,
    ngx_str_t *name)
{
    u_char                    *path;
    ngx_fd_t                   fd;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_str_t                  msg;
    ngx_chain_t                out;
    ngx_file_info_t            fi;
    ngx_pool_cleanup_t        *cln;
    ngx_pool_cleanup_file_t   *clnf;

    path = ngx_pnalloc(r->pool, mcf->spool.len + name->len + 2);
    if (path == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(path, "%V/%V%Z", &mcf->spool, name);

    fd = ngx_open_file(path, NGX_FILE_RDONLY|NGX_FILE_NONBLOCK, NGX_FILE_OPEN,
                       0);
    if (fd == NGX_INVALID_FILE) {
        ngx_str_set(&msg, "no such spool file");
        return ngx_http_vmx_send_error(r, NULL, NGX_HTTP_NOT_FOUND,
                                       "not_found", &msg);
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pool_cleanup_file_t));
    if (cln == NULL) {
        (void) ngx_close_file(fd);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_pool_cleanup_file;
    clnf = cln->data;
    clnf->fd = fd;
    clnf->name = path;
    clnf->log = r->connection->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ngx_file_size(&fi);
    r->headers_out.last_modified_time = -1;
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->allow_ranges = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file_pos = 0;
    b->file_last = ngx_file_size(&fi);
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;
    b->sync = b->in_file ? 0 : 1;

    b->file->fd = fd;
    b->file->name.data = path;
    b->file->name.len = ngx_strlen(path);
    b->file->log = r->connection->log;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* DELETE /vmx/spool/<name>: a finished file the control plane committed */

static ngx_int_t
ngx_http_vmx_spool_delete(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf, ngx_str_t *name)
{
    ngx_int_t                   found;
    ngx_uint_t                  i;
    ngx_str_t                   msg;
    ngx_array_t                 names;
    ngx_http_vmx_spool_name_t  *list;
    u_char                      path[NGX_MAX_PATH];

    static u_char  ok[] = "{\"deleted\":true}";

    if (ngx_http_vmx_spool_list(r->pool, r->connection->log, &mcf->spool,
                                &names)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    list = names.elts;
    found = 0;

    for (i = 0; i < names.nelts; i++) {
        if (list[i].len == name->len
            && ngx_strncmp(list[i].name, name->data, name->len) == 0)
        {
            found = 1;
            break;
        }
    }

    if (!found) {
        ngx_str_set(&msg, "no such spool file");
        return ngx_http_vmx_send_error(r, NULL, NGX_HTTP_NOT_FOUND,
                                       "not_found", &msg);
    }

    if (!ngx_http_vmx_spool_finished(&list[i], &names, i)) {
        ngx_str_set(&msg, "a worker still writes this spool file");
        return ngx_http_vmx_send_error(r, NULL, NGX_HTTP_CONFLICT,
                                       "spool_file_active", &msg);
    }

    ngx_sprintf(path, "%V/%V%Z", &mcf->spool, name);

    if (ngx_delete_file(path) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_delete_file_n " \"%s\" failed", path);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_vmx_send_json(r, NGX_HTTP_OK, ok, sizeof(ok) - 1);
}


/* the offset of a file in a cursor "<name>:<offset>,..." (URL-encoded
 * ":" and "," allowed), 0 when it is not there */

static off_t
ngx_http_vmx_spool_offset(ngx_str_t *cursor, ngx_http_vmx_spool_name_t *name)
{
    u_char  *p, *last, *end;
    off_t    offset;

    last = cursor->data + cursor->len;

    for (p = cursor->data; p + name->len < last; p++) {
        if (ngx_strncmp(p, name->name, name->len) != 0) {
            continue;
        }

        p += name->len;

        if (*p == ':') {
            p++;

        } else if (last - p > 3 && ngx_strncasecmp(p, (u_char *) "%3A", 3) == 0) {
            p += 3;

        } else {
            continue;
        }

        for (end = p; end < last && *end >= '0' && *end <= '9'; end++) {
            /* void */
        }

        offset = ngx_atoof(p, end - p);

        return offset == NGX_ERROR ? 0 : offset;
    }

    return 0;
}


/* records-<16 digits: msec>-<10 digits: pid>.vmx, nothing else */

static ngx_int_t
ngx_http_vmx_spool_valid_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    if (name->len != sizeof("records-0000000000000000-0000000000.vmx") - 1
        || ngx_strncmp(name->data, "records-", 8) != 0
        || name->data[24] != '-'
        || ngx_strncmp(name->data + 35, ".vmx", 4) != 0)
    {
        return 0;
    }

    for (i = 8; i < 35; i++) {
        if (i != 24 && (name->data[i] < '0' || name->data[i] > '9')) {
            return 0;
        }
    }

    return 1;
}


/* the spool's files, oldest first, with their sizes */

static ngx_int_t
ngx_http_vmx_spool_list(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *dir,
    ngx_array_t *names)
{
    DIR                        *d;
    u_char                     *p;
    size_t                      len;
    ngx_str_t                   s;
    struct dirent              *de;
    ngx_file_info_t             fi;
    ngx_http_vmx_spool_name_t  *name;
    u_char                      path[NGX_MAX_PATH];

    if (ngx_array_init(names, pool, 16, sizeof(ngx_http_vmx_spool_name_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (dir->len == 0 || dir->len + NGX_HTTP_VMX_SPOOL_NAME_LEN + 2
                         >= sizeof(path))
    {
        return NGX_OK;
    }

    ngx_sprintf(path, "%V%Z", dir);

    d = opendir((char *) path);
    if (d == NULL) {
        return NGX_OK;
    }

    while ((de = readdir(d)) != NULL) {
        len = ngx_strlen(de->d_name);

        s.data = (u_char *) de->d_name;
        s.len = len;

        if (!ngx_http_vmx_spool_valid_name(&s)) {
            continue;
        }

        ngx_sprintf(path, "%V/%s%Z", dir, de->d_name);

        if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
            continue;       /* deleted meanwhile */
        }

        name = ngx_array_push(names);
        if (name == NULL) {
            closedir(d);
            return NGX_ERROR;
        }

        ngx_memcpy(name->name, de->d_name, len);
        name->len = len;
        name->size = ngx_file_size(&fi);

        /* records-<msec>-<pid>.vmx */
        p = name->name + 25;
        name->pid = ngx_atoi(p, 10);
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
