/*
 * ingest: the record puller.  Each plane's state belongs to the ingest
 * thread alone; the lock only guards stopping and the wake-up.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "httpc.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "otel.h"
#include "records.h"

#define RECORDS_MAX_BYTES      1048576          /* the max asked of a data plane */
#define ANSWER_MAX             (8 * RECORDS_MAX_BYTES)   /* room for JSON escaping */
#define CURSOR_MAX_LEN         1024
#define PARTITIONS_AHEAD       3                /* days after today */
#define MAX_BATCHES_PER_ROUND  64               /* then the next plane gets its turn */

typedef struct {
    char   *base;                          /* owned, as configured */
    char   *cursor;                        /* owned: committed cursor, NULL until loaded */
    char   *acked;                         /* owned: last acknowledged cursor, or NULL */
    char    cause[192];                    /* the failure last logged, "" when fine */
    char    labels[METRICS_LABELS_SIZE];   /* dataplane="<base>" */
} plane_t;

static struct {
    pthread_t         thread;
    bool              running;
    pthread_mutex_t   lock;
    pthread_cond_t    wake;
    bool              stopping;
    int               interval_ms;
    int               retention_days;
    long              maintained_day;      /* UTC day of the last maintenance, -1 */
    char             *auth_header;         /* owned, "Authorization: Bearer ..." */
    plane_t          *planes;              /* owned array */
    size_t            nplanes;
} ing = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .maintained_day = -1 };


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
    metrics_labels(labels, "dataplane", p->base, "stage", stage, NULL);
    metrics_add(METRIC_INGEST_ERRORS, labels, 1);
    if (strcmp(cause, p->cause) != 0) {
        log_warn("ingest dataplane=%s %s: %s", p->base, stage, cause);
        snprintf(p->cause, sizeof(p->cause), "%s", cause);
    }
}


static void
succeeded(plane_t *p)
{
    if (p->cause[0] != '\0') {
        log_info("ingest dataplane=%s: pulling records again", p->base);
        p->cause[0] = '\0';
    }
    metrics_set(METRIC_INGEST_LAST_SUCCESS, p->labels, (double) time(NULL));
}


/*
 * GET (post false) or POST <base><path>?cursor=<cursor>[&max=...] on the
 * plane; the HTTP status, or 0 with error filled.  *answer as httpc.
 */
static long
call(const plane_t *p, bool post, const char *path, const char *cursor, char **answer,
    char *error, size_t error_size)
{
    CURL              *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    char              *escaped, *url = NULL;
    long               status = 0;

    *answer = NULL;
    if (curl == NULL) {
        snprintf(error, error_size, "curl_easy_init failed");
        return 0;
    }
    escaped = curl_easy_escape(curl, cursor, 0);
    if (escaped == NULL
        || (post ? asprintf(&url, "%s%s?cursor=%s", p->base, path, escaped)
                 : asprintf(&url, "%s%s?cursor=%s&max=%d", p->base, path, escaped,
                            RECORDS_MAX_BYTES)) < 0)
    {
        url = NULL;
        snprintf(error, error_size, "out of memory");
    } else {
        headers = curl_slist_append(headers, ing.auth_header);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        if (post) {
            curl_easy_setopt(curl, CURLOPT_POST, 1L);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, 0L);
        }
        status = httpc_perform(curl, post ? 65536 : ANSWER_MAX, answer, error, error_size);
    }
    curl_free(escaped);
    free(url);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return status;
}


/* acknowledges the committed cursor unless it already was */
static void
acknowledge(plane_t *p)
{
    char  error[CURL_ERROR_SIZE];
    char *answer;
    long  status;

    if (p->cursor == NULL || p->cursor[0] == '\0'
        || (p->acked != NULL && strcmp(p->acked, p->cursor) == 0))
    {
        return;
    }
    status = call(p, true, "/vmx/records/ack", p->cursor, &answer, error, sizeof(error));
    free(answer);
    if (status == 0) {
        fail(p, "ack", "%s", error);
    } else if (status != 200 && status != 204) {
        fail(p, "ack", "HTTP %ld", status);
    } else {
        free(p->acked);
        p->acked = strdup(p->cursor);
    }
}


/* a valid cursor: 1..CURSOR_MAX_LEN printable ASCII characters */
static bool
cursor_ok(const cJSON *v)
{
    size_t len = cJSON_IsString(v) ? strlen(v->valuestring) : 0;

    for (size_t i = 0; i < len; i++) {
        if (v->valuestring[i] < 0x21 || v->valuestring[i] > 0x7e) {
            return false;
        }
    }
    return len > 0 && len <= CURSOR_MAX_LEN;
}


/* the plane's next batch {"records": [...], "cursor": "..."}, NULL after
 * counting the failure */
static cJSON *
fetch(plane_t *p)
{
    char   error[CURL_ERROR_SIZE];
    char  *answer;
    long   status = call(p, false, "/vmx/records", p->cursor, &answer, error, sizeof(error));
    cJSON *doc = NULL;

    if (status == 0) {
        fail(p, "fetch", "%s", error);
    } else if (status != 200) {
        fail(p, "fetch", "HTTP %ld", status);
    } else {
        doc = answer ? cJSON_Parse(answer) : NULL;
        if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "records"))
            || !cursor_ok(cJSON_GetObjectItemCaseSensitive(doc, "cursor")))
        {
            fail(p, "parse", "the answer is not {\"records\": [...], \"cursor\": \"...\"}");
            cJSON_Delete(doc);
            doc = NULL;
        }
    }
    free(answer);
    return doc;
}


static void
forget_cursor(plane_t *p)
{
    free(p->cursor);
    p->cursor = NULL;
}


/* stores one fetched batch; true when it held records (more may wait) */
static bool
store(plane_t *p, const cJSON *records, const char *next)
{
    db_conn_t       *c = db_acquire();
    records_batch_t  b;
    records_rc_e     rc;
    char            *committed;

    if (c == NULL) {
        fail(p, "database", "PostgreSQL unreachable, the records wait in the spool");
        return false;
    }
    rc = records_ingest(c, p->base, records, p->cursor, next, &b);
    db_release(c);
    if (rc == RECORDS_FAILED) {
        fail(p, "database", "batch not stored, the records wait in the spool");
        forget_cursor(p);        /* the commit may have happened: read it back */
        return false;
    }
    if (rc == RECORDS_CURSOR_MOVED) {
        log_warn("ingest dataplane=%s: the stored cursor moved (another control plane?),"
                 " reading it again", p->base);
        forget_cursor(p);
        return false;
    }
    committed = strdup(next);
    if (committed == NULL) {
        forget_cursor(p);
        return false;
    }
    free(p->cursor);
    p->cursor = committed;
    otel_batch(records);
    metrics_add(METRIC_INGEST_BATCHES, p->labels, 1);
    metrics_add(METRIC_INGEST_RECORDS, p->labels, (double) b.stored);
    metrics_add(METRIC_INGEST_USAGE_ROWS, p->labels, (double) b.usage_rows);
    metrics_add(METRIC_INGEST_REJECTED, p->labels, (double) b.rejected);
    metrics_set(METRIC_INGEST_LAG, p->labels,
                b.newest > 0 && time(NULL) > b.newest ? (double) (time(NULL) - b.newest) : 0);
    if (b.rejected > 0) {
        log_warn("ingest dataplane=%s: %ld record(s) without a valid id or timestamp skipped",
                 p->base, b.rejected);
    }
    log_debug("ingest dataplane=%s: batch of %d record(s): %ld new, %ld usage row(s),"
              " cursor=%s", p->base, cJSON_GetArraySize(records), b.stored, b.usage_rows,
              p->cursor);
    succeeded(p);
    acknowledge(p);
    return cJSON_GetArraySize(records) > 0;
}


/* one GET and its batch; true when another batch may be waiting */
static bool
pull(plane_t *p)
{
    cJSON       *doc;
    const cJSON *records;
    const char  *next;
    bool         more = false;

    if (p->cursor == NULL) {
        db_conn_t *c = db_acquire();

        p->cursor = c ? records_load_cursor(c, p->base) : NULL;
        if (c != NULL) {
            db_release(c);
        }
        if (p->cursor == NULL) {
            fail(p, "database", "cannot read the stored cursor");
            return false;
        }
    }
    doc = fetch(p);
    if (doc == NULL) {
        return false;
    }
    records = cJSON_GetObjectItemCaseSensitive(doc, "records");
    next = cJSON_GetObjectItemCaseSensitive(doc, "cursor")->valuestring;
    if (cJSON_GetArraySize(records) == 0 && strcmp(next, p->cursor) == 0) {
        metrics_set(METRIC_INGEST_LAG, p->labels, 0);
        succeeded(p);
        acknowledge(p);          /* one that failed before */
    } else {
        more = store(p, records, next);
    }
    cJSON_Delete(doc);
    return more;
}


/* partitions ahead and retention, once per UTC day; false when PostgreSQL
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
    if (records_maintain(c, PARTITIONS_AHEAD, ing.retention_days) == 0) {
        ing.maintained_day = day;
    }
    db_release(c);
    return true;
}


static void *
ingest_main(void *arg)
{
    struct timespec next;

    pthread_mutex_lock(&ing.lock);
    while (!ing.stopping) {
        pthread_mutex_unlock(&ing.lock);
        if (maintain()) {
            for (size_t i = 0; i < ing.nplanes; i++) {
                for (int n = 0; n < MAX_BATCHES_PER_ROUND && pull(&ing.planes[i]); n++) {
                    /* the spool had more */
                }
            }
        }
        clock_gettime(CLOCK_REALTIME, &next);
        next.tv_nsec += (long) (ing.interval_ms % 1000) * 1000000;
        next.tv_sec += ing.interval_ms / 1000 + next.tv_nsec / 1000000000;
        next.tv_nsec %= 1000000000;
        pthread_mutex_lock(&ing.lock);
        while (!ing.stopping
               && pthread_cond_timedwait(&ing.wake, &ing.lock, &next) == 0)
        {
            /* woken without a stop: wait on */
        }
    }
    pthread_mutex_unlock(&ing.lock);
    return NULL;
}


int
ingest_start(const config_t *cfg)
{
    char *token;

    ing.interval_ms = cfg->ingest_interval_ms;
    ing.retention_days = cfg->retention_days;
    ing.planes = calloc(cfg->ndataplanes ? cfg->ndataplanes : 1, sizeof(plane_t));
    if (ing.planes == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cfg->ndataplanes; i++) {
        plane_t *p = &ing.planes[i];

        /* counted first: ingest_stop() frees what was allocated on failure */
        ing.nplanes++;
        p->base = strdup(cfg->dataplanes[i]);
        if (p->base == NULL) {
            return -1;
        }
        metrics_labels(p->labels, "dataplane", p->base, NULL);
    }
    if (ing.nplanes > 0) {
        token = config_read_secret_file(cfg->dataplane_token_file, "VMX_DATAPLANE_TOKEN_FILE");
        if (token == NULL) {
            return -1;
        }
        if (asprintf(&ing.auth_header, "Authorization: Bearer %s", token) < 0) {
            ing.auth_header = NULL;
        }
        sodium_memzero(token, strlen(token));
        free(token);
        if (ing.auth_header == NULL) {
            return -1;
        }
    }
    /* without data planes the thread still keeps the partitions */
    if (pthread_create(&ing.thread, NULL, ingest_main, NULL) != 0) {
        log_error("ingest: cannot start the thread");
        return -1;
    }
    ing.running = true;
    log_info("ingest: %zu data plane(s), every %d ms, retention %d days", ing.nplanes,
             ing.interval_ms, ing.retention_days);
    return 0;
}


void
ingest_stop(void)
{
    if (ing.running) {
        pthread_mutex_lock(&ing.lock);
        ing.stopping = true;
        pthread_cond_signal(&ing.wake);
        pthread_mutex_unlock(&ing.lock);
        pthread_join(ing.thread, NULL);
        ing.running = false;
    }
    for (size_t i = 0; i < ing.nplanes; i++) {
        free(ing.planes[i].base);
        free(ing.planes[i].cursor);
        free(ing.planes[i].acked);
    }
    free(ing.planes);
    if (ing.auth_header != NULL) {
        sodium_memzero(ing.auth_header, strlen(ing.auth_header));
        free(ing.auth_header);
    }
    ing.planes = NULL;
    ing.auth_header = NULL;
    ing.nplanes = 0;
}
