/*
 * ingest: the record puller, a worker thread (worker.h).  Each plane's
 * state belongs to that thread alone.
 *
 * A round per data plane: list its spool (GET /vmx/spool), read each
 * file's bytes after the committed cursor as ranges (GET /vmx/spool/<name>,
 * Range), walk them with vmx_spool_next() into a batch (records, and the
 * bytes that are none as dead letters), commit the batch with the new
 * cursor (records.c), then delete the files committed whole that no worker
 * writes any more (DELETE /vmx/spool/<name>).
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "activity.h"
#include "discovery.h"
#include "dpclient.h"
#include "ingest.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "otel.h"
#include "prices.h"
#include "records.h"
#include "worker.h"

#define READ_CHUNK             (4 * 1024 * 1024)  /* bytes asked of a file at once */
#define READ_MAX               (2 * VMX_SPOOL_PAYLOAD_MAX + VMX_SPOOL_META_MAX + 4096)
#define LIST_MAX               (1024 * 1024)      /* bytes of a spool listing */
#define FILES_MAX              256                /* spool files read per round */
#define NAME_MAX_LEN           63
#define BATCH_BYTES            (8 * 1024 * 1024)  /* rows of a batch, then commit */
#define BATCH_RECORDS          20000
#define PARTITIONS_AHEAD       3                  /* days after today */
#define MAX_BATCHES_PER_ROUND  64                 /* then the next plane gets its turn */
#define CAUSES_LOGGED          16                 /* dead letter reasons logged once */

typedef struct {
    char    name[NAME_MAX_LEN + 1];
    off_t   offset;                        /* committed, or read in this batch */
    off_t   size;                          /* as listed */
    bool    finished;                      /* no worker writes it any more */
} spot_t;

typedef struct {
    discovery_url_t    url;                /* first: discovery_follow() reads it */
    char              *cursor;             /* owned: committed cursor, NULL until loaded */
    spot_t            *spots;              /* owned: the files listed, oldest first */
    size_t             nspots;
    dpclient_t         conn;               /* conn.base (url) names the plane; its answer: the
                                              bytes read from a file */
    records_batch_t   *batch;              /* owned */
    const char        *logged[CAUSES_LOGGED];   /* dead letter reasons logged */
    char               cause[192];         /* the failure last logged, "" when fine */
    char               labels[METRICS_LABELS_SIZE];   /* dataplane="<base>" */
} plane_t;

static struct {
    worker_t          worker;
    int               interval_ms;
    int               retention_days;
    int               activity_days;    /* activity records kept (activity.c) */
    long              maintained_day;      /* UTC day of the last maintenance, -1 */
    plane_t          *planes[CONFIG_MAX_DATAPLANES];    /* owned */
    size_t            nplanes;
} ing = { .worker = WORKER_INIT, .maintained_day = -1 };


/* counts a failed step and logs it when its cause differs from the last one */
static void
fail(plane_t *p, const char *stage, const char *fmt, ...)
{
    char    cause[sizeof(p->cause)];
    char    labels[METRICS_LABELS_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    metrics_labels(labels, "dataplane", p->conn.base, "stage", stage, NULL);
    metrics_add(METRIC_INGEST_ERRORS, labels, 1);
    if (strcmp(cause, p->cause) != 0) {
        log_warn("ingest dataplane=%s %s: %s", p->conn.base, stage, cause);
        snprintf(p->cause, sizeof(p->cause), "%s", cause);
    }
}


static void
succeeded(plane_t *p)
{
    if (p->cause[0] != '\0') {
        log_info("ingest dataplane=%s: pulling records again", p->conn.base);
        p->cause[0] = '\0';
    }
    metrics_set(METRIC_INGEST_LAST_SUCCESS, p->labels, (double) time(NULL));
}


/* ---- the records channel --------------------------------------------- */

/*
 * method on <base>/vmx/spool[/<name>] (the listing with the committed
 * cursor), the answer into p->conn (at most max bytes); range "first-last"
 * or NULL.  The HTTP status, or 0 after counting the failure.
 */
static long
call(plane_t *p, const char *method, const char *name, const char *range, size_t max,
    const char *stage)
{
    char *cursor = NULL, *path;
    long  status;
    int   n;

    if (name != NULL) {
        n = asprintf(&path, "/vmx/spool/%s", name);
    } else {
        cursor = curl_easy_escape(NULL, p->cursor, 0);
        n = cursor != NULL ? asprintf(&path, "/vmx/spool?cursor=%s", cursor) : -1;
        curl_free(cursor);
    }
    if (n < 0) {
        fail(p, stage, "out of memory");
        return 0;
    }
    status = dpclient_call(&p->conn, method, path, NULL, range, max);
    free(path);
    if (status == 0) {
        fail(p, stage, "%s /vmx/spool%s%s: %s", method, name ? "/" : "", name ? name : "",
             p->conn.error);
    }
    return status;
}


/* a spool file name as the data plane makes them: nothing to escape */
static bool
name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') || s[i] == '-'
              || s[i] == '.'))
        {
            return false;
        }
    }
    return true;
}


/* the committed offset of name in the cursor "<name>:<offset>,...", 0 */
static off_t
cursor_offset(const char *cursor, const char *name)
{
    size_t      n = strlen(name);
    const char *s = cursor;

    while (s != NULL && *s != '\0') {
        if (strncmp(s, name, n) == 0 && s[n] == ':') {
            return (off_t) strtoll(s + n + 1, NULL, 10);
        }
        s = strchr(s, ',');
        s = s ? s + 1 : NULL;
    }
    return 0;
}


/* the spool's files into p->spots, with their committed offsets; false
 * after counting the failure */
static bool
list_spool(plane_t *p)
{
    long         status = call(p, "GET", NULL, NULL, LIST_MAX, "fetch");
    cJSON       *doc, *files, *f;
    size_t       n = 0;
    spot_t      *spots;

    if (status == 0) {
        return false;
    }
    if (status != 200) {
        fail(p, "fetch", "GET /vmx/spool: HTTP %ld", status);
        return false;
    }
    doc = cJSON_ParseWithLength(p->conn.answer.data, p->conn.answer.len);
    files = cJSON_GetObjectItemCaseSensitive(doc, "files");
    spots = calloc(FILES_MAX, sizeof(spot_t));
    if (!cJSON_IsArray(files) || spots == NULL) {
        fail(p, "parse", spots ? "GET /vmx/spool: not {\"files\": [...]}" : "out of memory");
        cJSON_Delete(doc);
        free(spots);
        return false;
    }
    cJSON_ArrayForEach(f, files) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
        spot_t      *s = &spots[n];

        if (n == FILES_MAX) {
            break;          /* the oldest first; the others next round */
        }
        if (!cJSON_IsString(name) || !name_ok(name->valuestring) || !cJSON_IsNumber(size)
            || size->valuedouble < 0)
        {
            fail(p, "parse", "GET /vmx/spool: a file without a valid name or size");
            continue;
        }
        snprintf(s->name, sizeof(s->name), "%s", name->valuestring);
        s->size = (off_t) size->valuedouble;
        s->finished = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "finished"));
        s->offset = cursor_offset(p->cursor, s->name);
        if (s->offset > s->size) {
            s->offset = s->size;       /* never past what exists */
        }
        n++;
    }
    cJSON_Delete(doc);
    free(p->spots);
    p->spots = spots;
    p->nspots = n;
    return true;
}


/* "<name>:<offset>,..." of the files read at all (caller frees) */
static char *
cursor_of(const plane_t *p)
{
    size_t  size = 1 + p->nspots * (NAME_MAX_LEN + 24);
    char   *c = malloc(size), *at = c;

    if (c == NULL) {
        return NULL;
    }
    *at = '\0';
    for (size_t i = 0; i < p->nspots; i++) {
        if (p->spots[i].offset > 0) {
            at += snprintf(at, size - (size_t) (at - c), "%s%s:%lld", at == c ? "" : ",",
                           p->spots[i].name, (long long) p->spots[i].offset);
        }
    }
    return c;
}


/*
 * Reads file s from its offset into the batch until the batch is full or
 * the file has no whole record more; false after counting a failure.
 */
static bool
read_file(plane_t *p, spot_t *s)
{
    const httpc_answer_t *got = &p->conn.answer;     /* the bytes read */
    size_t                need = 0;

    while (s->offset < s->size && records_batch_bytes(p->batch) < BATCH_BYTES
           && records_batch_count(p->batch) < BATCH_RECORDS)
    {
        size_t      left = (size_t) (s->size - s->offset);
        size_t      want = need > READ_CHUNK ? need : READ_CHUNK;
        size_t      pos = 0, used;
        char        range[64];
        long        status;
        bool        final;

        if (need > left || want > READ_MAX) {
            break;              /* the record is not whole yet */
        }
        want = want < left ? want : left;
        snprintf(range, sizeof(range), "%lld-%lld", (long long) s->offset,
                 (long long) s->offset + (long long) want - 1);
        status = call(p, "GET", s->name, range, want, "fetch");
        if (status == 0) {
            return false;
        }
        if (status == 404 || status == 416) {
            s->size = s->offset;          /* gone, or shorter than listed */
            break;
        }
        if (status != 206 && !(status == 200 && s->offset == 0)) {
            fail(p, "fetch", "GET /vmx/spool/%s: HTTP %ld", s->name, status);
            return false;
        }
        final = s->finished && s->offset + (off_t) got->len >= s->size;
        need = 0;
        while (pos < got->len) {
            vmx_spool_record_t  rec;
            const char         *reason;
            vmx_spool_rc_e      rc = vmx_spool_next(got->data + pos, got->len - pos,
                                                    final, &rec, &used, &reason);

            if (rc == VMX_SPOOL_MORE) {
                need = used;
                break;
            }
            if (rc == VMX_SPOOL_RECORD) {
                records_batch_add(p->batch, &rec, got->data + pos, used, s->name,
                                  s->offset + (off_t) pos);
            } else {
                records_batch_dead(p->batch, s->name, s->offset + (off_t) pos, reason,
                                   got->data + pos, used);
            }
            pos += used;
        }
        s->offset += (off_t) pos;
        if (pos == 0 && need <= got->len) {
            break;              /* no progress possible now */
        }
    }
    return true;
}


/* counts and logs (once per reason) the dead letters of a committed batch */
static void
report_dead(plane_t *p)
{
    for (size_t i = 0; i < records_batch_dead_count(p->batch); i++) {
        const char *reason = records_batch_dead_reason(p->batch, i);
        char        labels[METRICS_LABELS_SIZE];
        size_t      k;

        metrics_labels(labels, "dataplane", p->conn.base, "reason", reason, NULL);
        metrics_add(METRIC_INGEST_DEAD_LETTERS, labels, 1);
        for (k = 0; k < CAUSES_LOGGED && p->logged[k] != NULL
                    && strcmp(p->logged[k], reason) != 0; k++)
        {
            /* look for it */
        }
        if (k < CAUSES_LOGGED && p->logged[k] == NULL) {
            p->logged[k] = reason;
            log_warn("ingest dataplane=%s: %s at %s, kept in audit_dead_letters (logged once"
                     " per reason, counted in vmx_cp_ingest_dead_letters_total)", p->conn.base,
                     reason, records_batch_dead_position(p->batch, i));
        }
    }
}


/* deletes the files committed whole that no worker writes any more */
static void
delete_finished(plane_t *p)
{
    for (size_t i = 0; i < p->nspots; i++) {
        spot_t *s = &p->spots[i];
        long    status;

        if (!s->finished || s->offset < s->size) {
            continue;
        }
        status = call(p, "DELETE", s->name, NULL, 65536, "ack");
        if (status != 0 && status != 200 && status != 204 && status != 404) {
            fail(p, "ack", "DELETE /vmx/spool/%s: HTTP %ld", s->name, status);
        }
    }
}


static void
forget_cursor(plane_t *p)
{
    free(p->cursor);
    p->cursor = NULL;
}


/* commits the batch with the cursor the spots say now; false when not */
static bool
commit(plane_t *p)
{
    db_conn_t        *c;
    records_result_t  r;
    records_rc_e      rc;
    char             *next = cursor_of(p);

    if (next == NULL) {
        forget_cursor(p);
        return false;
    }
    c = db_acquire();
    if (c == NULL) {
        fail(p, "database", "PostgreSQL unreachable, the records wait in the spool");
        free(next);
        forget_cursor(p);
        return false;
    }
    rc = records_commit(c, p->batch, p->cursor, next, &r);
    db_release(c);
    if (rc != RECORDS_COMMITTED) {
        if (rc == RECORDS_CURSOR_MOVED) {
            log_warn("ingest dataplane=%s: the stored cursor moved (another control plane?),"
                     " reading it again", p->conn.base);
        } else {
            fail(p, "database", "batch not stored, the records wait in the spool");
        }
        free(next);
        forget_cursor(p);      /* the commit may have happened: read it back */
        return false;
    }
    free(p->cursor);
    p->cursor = next;
    report_dead(p);
    if (records_batch_meta(p->batch) != NULL) {
        otel_batch(records_batch_meta(p->batch));
    }
    metrics_add(METRIC_INGEST_BATCHES, p->labels, 1);
    metrics_add(METRIC_INGEST_RECORDS, p->labels, (double) r.stored);
    metrics_add(METRIC_INGEST_USAGE_ROWS, p->labels, (double) r.usage_rows);
    metrics_set(METRIC_INGEST_LAG, p->labels,
                r.newest > 0 && time(NULL) > r.newest ? (double) (time(NULL) - r.newest) : 0);
    if (r.duplicates > 0) {
        log_info("ingest dataplane=%s: %ld record(s) stored before, skipped", p->conn.base,
                 r.duplicates);
    }
    log_debug("ingest dataplane=%s: batch of %ld record(s), %ld usage row(s), %ld dead"
              " letter(s), cursor=%s", p->conn.base, r.stored, r.usage_rows, r.dead, p->cursor);
    return true;
}


/* one round on a plane: true when more may be waiting */
static bool
pull(plane_t *p)
{
    char *next;
    bool  more = false, moved;

    if (p->cursor == NULL) {
        db_conn_t *c = db_acquire();

        p->cursor = c ? records_load_cursor(c, p->conn.base) : NULL;
        if (c != NULL) {
            db_release(c);
        }
        if (p->cursor == NULL) {
            fail(p, "database", "cannot read the stored cursor");
            return false;
        }
    }
    if (p->batch == NULL && (p->batch = records_batch_new(p->conn.base, otel_running())) == NULL) {
        fail(p, "database", "out of memory");
        return false;
    }
    if (!list_spool(p)) {
        return false;
    }
    records_batch_reset(p->batch);
    for (size_t i = 0; i < p->nspots; i++) {
        if (!read_file(p, &p->spots[i])) {
            forget_cursor(p);
            return false;
        }
        if (records_batch_bytes(p->batch) >= BATCH_BYTES
            || records_batch_count(p->batch) >= BATCH_RECORDS)
        {
            more = true;
            break;
        }
    }
    /* new records, or offsets moved (garbage skipped, deleted files gone) */
    next = cursor_of(p);
    moved = next == NULL || strcmp(next, p->cursor) != 0;
    free(next);
    if (moved && !commit(p)) {
        return false;
    }
    if (!more) {
        metrics_set(METRIC_INGEST_LAG, p->labels, 0);
    }
    succeeded(p);
    delete_finished(p);
    return more;
}


/* partitions ahead and retention (the activity's too), once per UTC day; false when PostgreSQL
 * is unreachable (then the round is skipped) */
static bool
maintain(void)
{
    long        day = (long) (time(NULL) / 86400);
    db_conn_t  *c;

    if (day == ing.maintained_day) {
        return true;
    }
    c = db_acquire();
    if (c == NULL) {
        return false;
    }
    if (records_maintain(c, PARTITIONS_AHEAD, ing.retention_days) == 0
        && activity_prune(c, ing.activity_days) == 0)
    {
        ing.maintained_day = day;
    }
    db_release(c);
    return true;
}


/* the prices this round's records are costed with: reloaded when changed */
static void
refresh_prices(void)
{
    db_conn_t *c = db_acquire();

    if (c != NULL) {
        prices_refresh(c);
        db_release(c);
    }
}


/* a plane new to the ingest: its cursor is read back at its first pull */
static void *
open_plane(const char *url)
{
    plane_t *p = calloc(1, sizeof(plane_t));

    if (p == NULL) {
        log_error("ingest dataplane=%s: out of memory", url);
        return NULL;
    }
    snprintf(p->url, sizeof(p->url), "%s", url);
    /* a range of READ_CHUNK bytes takes longer than a config call */
    dpclient_open(&p->conn, p->url, HTTPC_TOTAL_TIMEOUT_MS * 3);
    metrics_labels(p->labels, "dataplane", p->url, NULL);
    return p;
}


/* a plane gone keeps its spool and its committed cursor for its next life */
static void
close_plane(void *plane)
{
    plane_t *p = plane;

    free(p->cursor);
    free(p->spots);
    dpclient_close(&p->conn);
    records_batch_free(p->batch);
    free(p);
}


/* every plane's spool, MAX_BATCHES_PER_ROUND batches at most each */
static long
ingest_round(void)
{
    if (!maintain()) {
        return ing.interval_ms;
    }
    discovery_follow((void **) ing.planes, &ing.nplanes, open_plane, close_plane);
    if (ing.nplanes > 0 && leader_holds()) {
        refresh_prices();
    }
    for (size_t i = 0; i < ing.nplanes; i++) {
        struct timespec t0, t1;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int n = 0; n < MAX_BATCHES_PER_ROUND && leader_holds() && pull(ing.planes[i]); n++) {
            /* the spool had more */
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        metrics_add(METRIC_INGEST_BUSY, ing.planes[i]->labels,
                    (double) (t1.tv_sec - t0.tv_sec)
                    + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    return ing.interval_ms;
}


int
ingest_start(const config_t *cfg)
{
    ing.interval_ms = cfg->ingest_interval_ms;
    ing.retention_days = cfg->retention_days;
    ing.activity_days = cfg->activity_retention_days;
    leader_follow(&ing.worker);
    /* without data planes the thread still keeps the partitions */
    if (worker_start(&ing.worker, "ingest", ingest_round) != 0) {
        return -1;
    }
    log_info("ingest: every %d ms, retention %d days", ing.interval_ms, ing.retention_days);
    return 0;
}


void
ingest_stop(void)
{
    worker_stop(&ing.worker);
    while (ing.nplanes > 0) {
        close_plane(ing.planes[--ing.nplanes]);
    }
    prices_shutdown();
}
