/*
 * metrics: a small registry of series (family, label text, value) under
 * one lock, rendered in the Prometheus text format 0.0.4.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "leader.h"
#include "metrics.h"

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_SUMMARY } kind_e;

#define USAGE_SERIES_MAX  1000    /* label sets of a usage family, then "overflow" */
#define OVERFLOW_LABELS   "overflow=\"true\""

typedef struct {
    const char  *name;
    kind_e       kind;
    const char  *help;
    size_t       max_series;       /* 0: bounded by its labels' own sets */
} family_t;

static const family_t families[METRIC_NFAMILIES] = {
    [METRIC_HTTP_REQUESTS] = { "vmx_cp_http_requests_total", KIND_COUNTER,
        "HTTP requests answered, by method, route pattern and status" },
    [METRIC_HTTP_DURATION] = { "vmx_cp_http_request_duration_seconds", KIND_SUMMARY,
        "Time to answer HTTP requests, by method and route pattern" },
    [METRIC_INGEST_BATCHES] = { "vmx_cp_ingest_batches_total", KIND_COUNTER,
        "Record batches committed, per data plane" },
    [METRIC_INGEST_RECORDS] = { "vmx_cp_ingest_records_total", KIND_COUNTER,
        "Audit records stored (re-delivered ones not counted), per data plane" },
    [METRIC_INGEST_USAGE_ROWS] = { "vmx_cp_ingest_usage_rows_total", KIND_COUNTER,
        "Usage rows stored, per data plane" },
    [METRIC_INGEST_DEAD_LETTERS] = { "vmx_cp_ingest_dead_letters_total", KIND_COUNTER,
        "Spool bytes that are no storable record, kept in audit_dead_letters, per data plane"
        " and reason" },
    [METRIC_INGEST_ERRORS] = { "vmx_cp_ingest_errors_total", KIND_COUNTER,
        "Failed ingestion steps, per data plane and stage (fetch, parse, database, ack)" },
    [METRIC_INGEST_LAG] = { "vmx_cp_ingest_lag_seconds", KIND_GAUGE,
        "Age of the newest record of the last committed batch, 0 when caught up" },
    [METRIC_INGEST_LAST_SUCCESS] = { "vmx_cp_ingest_last_success_timestamp_seconds",
        KIND_GAUGE, "Unix time of the last successful pull, per data plane" },
    [METRIC_INGEST_BUSY] = { "vmx_cp_ingest_busy_seconds_total", KIND_COUNTER,
        "Seconds the ingest thread spent reading, parsing and storing a data plane's records"
        " (records over busy seconds: what ingestion can take)" },
    [METRIC_PUSHES] = { "vmx_cp_config_pushes_total", KIND_COUNTER,
        "Config snapshots pushed, per data plane and result (ok, error)" },
    [METRIC_OTLP_EXPORTS] = { "vmx_cp_otlp_exports_total", KIND_COUNTER,
        "OTLP exports, by signal (traces, metrics) and result (ok, error)" },
    [METRIC_OTLP_DROPPED] = { "vmx_cp_otlp_dropped_spans_total", KIND_COUNTER,
        "Spans not exported, by reason (queue_full, export_failed)" },
    [METRIC_USAGE_COST] = { "vmx_cp_usage_cost_usd_total", KIND_COUNTER,
        "Cost in USD of the usage rows stored, by workspace, environment, provider and model",
        USAGE_SERIES_MAX },
    [METRIC_USAGE_UNPRICED] = { "vmx_cp_usage_unpriced_rows_total", KIND_COUNTER,
        "Usage rows with tokens whose model had no price (cost null), by workspace,"
        " environment, provider and model", USAGE_SERIES_MAX },
    [METRIC_BATCH_ITEMS] = { "vmx_cp_batch_items_total", KIND_COUNTER,
        "Batch items ended by the runner, by status (succeeded, failed, cancelled)" },
    [METRIC_BATCH_CAPACITY_WAITS] = { "vmx_cp_batch_capacity_waits_total", KIND_COUNTER,
        "Batch items the gateway answered 429, put back to wait for capacity" },
    [METRIC_BATCH_CALLBACKS] = { "vmx_cp_batch_callbacks_total", KIND_COUNTER,
        "Batch callback deliveries, by result (delivered, retried, failed)" },
};

typedef struct {
    metric_e             family;
    char                *labels;       /* owned */
    double               value;        /* the value, or a summary's sum */
    unsigned long long   count;        /* a summary's count */
} series_t;

static struct {
    pthread_mutex_t  lock;
    series_t        *series;           /* owned array */
    size_t           n;
    size_t           cap;
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;
} text_t;


void
metrics_labels(char *out, ...)
{
    va_list      ap;
    const char  *name;
    size_t       n = 0;
    int          w;

    /* each step keeps room for a closing quote and the NUL: a label set
     * too long for out is cut between labels, never inside an escape */
    va_start(ap, out);
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);

        w = snprintf(out + n, METRICS_LABELS_SIZE - n, "%s%s=\"", n ? "," : "", name);
        if (w < 0 || (size_t) w >= METRICS_LABELS_SIZE - n - 1) {
            break;
        }
        n += (size_t) w;
        for (const char *p = value; *p != '\0' && n + 3 < METRICS_LABELS_SIZE; p++) {
            if (*p == '\\' || *p == '"' || *p == '\n') {
                out[n++] = '\\';
                out[n++] = *p == '\n' ? 'n' : *p;
            } else {
                out[n++] = *p;
            }
        }
        out[n++] = '"';
    }
    va_end(ap);
    out[n] = '\0';
}


/* the series of family m with labels, created when new; NULL when out of
 * memory.  Called with the lock held. */
static series_t *
find_series(metric_e m, const char *labels)
{
    series_t *s;
    size_t    n = 0;

    for (size_t i = 0; i < reg.n; i++) {
        if (reg.series[i].family == m && strcmp(reg.series[i].labels, labels) == 0) {
            return &reg.series[i];
        }
        n += reg.series[i].family == m;
    }
    if (families[m].max_series > 0 && n >= families[m].max_series
        && strcmp(labels, OVERFLOW_LABELS) != 0)
    {
        /* one more series takes every new label set of a full family */
        return find_series(m, OVERFLOW_LABELS);
    }
    if (reg.n == reg.cap) {
        size_t    cap = reg.cap ? reg.cap * 2 : 64;
        series_t *grown = realloc(reg.series, cap * sizeof(series_t));

        if (grown == NULL) {
            return NULL;
        }
        reg.series = grown;
        reg.cap = cap;
    }
    s = &reg.series[reg.n];
    s->labels = strdup(labels);
    if (s->labels == NULL) {
        return NULL;
    }
    s->family = m;
    s->value = 0;
    s->count = 0;
    reg.n++;
    return s;
}


static void
update(metric_e m, const char *labels, double v, int how)
{
    series_t *s;

    pthread_mutex_lock(&reg.lock);
    s = find_series(m, labels);
    if (s != NULL) {
        if (how == KIND_GAUGE) {
            s->value = v;
        } else {
            s->value += v;
            s->count++;
        }
    }
    pthread_mutex_unlock(&reg.lock);
}


void
metrics_add(metric_e m, const char *labels, double v)
{
    update(m, labels, v, KIND_COUNTER);
}


void
metrics_set(metric_e m, const char *labels, double v)
{
    update(m, labels, v, KIND_GAUGE);
}


void
metrics_observe(metric_e m, const char *labels, double v)
{
    update(m, labels, v, KIND_SUMMARY);
}


static void
text_printf(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_printf(text_t *t, const char *fmt, ...)
{
    va_list ap;
    int     n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t) n < t->cap - t->len) {
            t->len += (size_t) n;
            return;
        }
        char *grown = realloc(t->data, t->cap * 2 + (size_t) n);

        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->data = grown;
        t->cap = t->cap * 2 + (size_t) n;
    }
}


static void
render_header(text_t *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static void
render_pool(text_t *t)
{
    db_pool_stats_t st;

    db_pool_stats(&st);
    render_header(t, "vmx_cp_db_pool_size", "gauge", "Connections the database pool may hold");
    text_printf(t, "vmx_cp_db_pool_size %d\n", st.size);
    render_header(t, "vmx_cp_db_pool_connections", "gauge",
                  "Connections of the database pool, by state (busy, free)");
    text_printf(t, "vmx_cp_db_pool_connections{state=\"busy\"} %d\n", st.busy);
    text_printf(t, "vmx_cp_db_pool_connections{state=\"free\"} %d\n", st.size - st.busy);
    render_header(t, "vmx_cp_db_pool_waits_total", "counter",
                  "Acquires of a pooled connection that had to wait for one");
    text_printf(t, "vmx_cp_db_pool_waits_total %llu\n", st.waits);
}


char *
metrics_render(void)
{
    static const char *const types[] = { "counter", "gauge", "summary" };
    text_t t = { malloc(4096), 0, 4096, 0 };

    if (t.data == NULL) {
        return NULL;
    }
    t.data[0] = '\0';
    pthread_mutex_lock(&reg.lock);
    for (int m = 0; m < METRIC_NFAMILIES; m++) {
        const family_t *f = &families[m];

        render_header(&t, f->name, types[f->kind], f->help);
        for (size_t i = 0; i < reg.n; i++) {
            const series_t *s = &reg.series[i];

            if (s->family != (metric_e) m) {
                continue;
            }
            if (f->kind == KIND_SUMMARY) {
                text_printf(&t, "%s_sum{%s} %.17g\n%s_count{%s} %llu\n", f->name, s->labels,
                            s->value, f->name, s->labels, s->count);
            } else {
                text_printf(&t, "%s{%s} %.17g\n", f->name, s->labels, s->value);
            }
        }
    }
    pthread_mutex_unlock(&reg.lock);
    render_pool(&t);
    render_header(&t, "vmx_cp_leader", "gauge",
                  "1 while this replica leads (runs the singleton jobs), else 0");
    text_printf(&t, "vmx_cp_leader %d\n", leader_holds() ? 1 : 0);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    return t.data;
}


void
metrics_shutdown(void)
{
    pthread_mutex_lock(&reg.lock);
    for (size_t i = 0; i < reg.n; i++) {
        free(reg.series[i].labels);
    }
    free(reg.series);
    reg.series = NULL;
    reg.n = reg.cap = 0;
    pthread_mutex_unlock(&reg.lock);
}
