/*
 * metrics: the control plane's own Prometheus exposition (GET /metrics),
 * every name prefixed vmx_cp_.  Series are created on first use and live
 * until the daemon stops; label sets are bounded by the route table, the
 * status codes and the data planes kept (CONFIG_MAX_DATAPLANES at once; a
 * data plane found at a new address adds its series); the usage families,
 * whose models come from the records, by a count of series past which new
 * label sets share one series labelled overflow="true".
 */

#ifndef CP_METRICS_H
#define CP_METRICS_H

#include <stddef.h>

typedef enum {
    METRIC_HTTP_REQUESTS = 0,     /* counter {method, route, status} */
    METRIC_HTTP_DURATION,         /* summary {method, route}, seconds */
    METRIC_INGEST_BATCHES,        /* counter {dataplane}: committed batches */
    METRIC_INGEST_RECORDS,        /* counter {dataplane}: new audit rows */
    METRIC_INGEST_USAGE_ROWS,     /* counter {dataplane}: new usage rows */
    METRIC_INGEST_DEAD_LETTERS,   /* counter {dataplane, reason}: bytes kept as dead letters */
    METRIC_INGEST_ERRORS,         /* counter {dataplane, stage} */
    METRIC_INGEST_LAG,            /* gauge {dataplane}: age of the newest record, s */
    METRIC_INGEST_LAST_SUCCESS,   /* gauge {dataplane}: unix time of the last pull */
    METRIC_INGEST_BUSY,           /* counter {dataplane}: seconds spent pulling and storing */
    METRIC_PUSHES,                /* counter {dataplane, result} */
    METRIC_OTLP_EXPORTS,          /* counter {signal, result}: OTLP POSTs */
    METRIC_OTLP_DROPPED,          /* counter {reason}: spans never exported */
    METRIC_USAGE_COST,            /* counter {workspace, environment, provider, model}: USD */
    METRIC_USAGE_UNPRICED,        /* counter {...the same}: usage rows of no price */
    METRIC_BATCH_ITEMS,           /* counter {status}: batch items ended */
    METRIC_BATCH_CAPACITY_WAITS,  /* counter: batch items the gateway sent back with a 429 */
    METRIC_BATCH_CALLBACKS,       /* counter {result}: callback deliveries */
    METRIC_NFAMILIES
} metric_e;

#define METRICS_LABELS_SIZE  512

/*
 * formats labels from NULL-terminated name, value pairs into out (of
 * METRICS_LABELS_SIZE bytes; a va_list cannot follow an array parameter)
 * ("route=\"/x\",status=\"200\""), escaping the values
 */
void metrics_labels(char *out, ...);

void metrics_add(metric_e m, const char *labels, double v);     /* counters */
void metrics_set(metric_e m, const char *labels, double v);     /* gauges */
void metrics_observe(metric_e m, const char *labels, double v); /* summaries */

/* the exposition text (with the database pool's gauges), malloc'd; the
 * caller frees it.  NULL when out of memory. */
char *metrics_render(void);

void metrics_shutdown(void);

#endif
