/*
 * otel: the OTLP/HTTP JSON exporter.  The queue and the metric points are
 * shared with the ingest thread under the lock (ot.worker.lock); the batch
 * being sent, its retries and the connection address cache belong to the
 * export thread, and to otel_stop() once that thread is joined.
 */

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "crypto.h"
#include "db.h"
#include "httpc.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "otel.h"
#include "providers.h"
#include "vmx_rfc3339.h"
#include "worker.h"

#define RECORDS_PER_EXPORT     256       /* records (1 + attempts spans each) per POST */
#define MAX_TRIES              6         /* then the batch is dropped: 1+2+4+8+16 s */
#define BACKOFF_FIRST_MS       1000
#define MAX_SERIES             256       /* attribute sets per instrument, then overflow */
#define MAX_ATTRS              8         /* attributes of a metric point */
#define ADDRESS_CACHE          512
#define ADDRESS_TTL            60        /* seconds a connection's address is kept */
#define ANSWER_MAX             65536
#define URL_MAX                2048
#define SERVICE_NAME           "vmx-gateway"
#define SCOPE_NAME             "vmx-control-plane"

#define SPAN_KIND_SERVER       2
#define SPAN_KIND_CLIENT       3
#define STATUS_UNSET           0
#define STATUS_ERROR           2
#define TEMPORALITY_CUMULATIVE 2

typedef struct item_s {
    struct item_s  *next;
    cJSON          *record;       /* owned: the members the spans need */
    long            nspans;
} item_t;

/* one attribute of a metric point: a string, or an integer when s is NULL */
typedef struct {
    const char  *key;
    const char  *s;
    long long    i;
} kv_t;

typedef struct {
    char                *key;         /* owned: the attributes as text, for lookup */
    cJSON               *attrs;       /* owned: OTLP attributes */
    double               sum, min, max;
    unsigned long long   count;
    unsigned long long  *buckets;     /* owned, nbounds + 1; NULL for a sum */
} point_t;

typedef struct {
    const char    *name;
    const char    *description;
    const char    *unit;
    const double  *bounds;            /* NULL: a monotonic sum */
    size_t         nbounds;
    point_t       *points;            /* owned array */
    size_t         n, cap;
    bool           as_double;         /* a sum of amounts, not of counts */
} instrument_t;

typedef struct {
    char     id[40];
    char    *host;                    /* owned; NULL: unknown connection or address */
    long     port;
    time_t   expires;
} address_t;

/* the semantic conventions' advised bucket boundaries */
static const double token_bounds[] = { 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144,
    1048576, 4194304, 16777216, 67108864 };
static const double duration_bounds[] = { 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28,
    2.56, 5.12, 10.24, 20.48, 40.96, 81.92 };

enum { INST_TOKENS = 0, INST_DURATION, INST_REQUESTS, INST_DROPPED, INST_COST, NINSTRUMENTS };

static struct {
    worker_t            worker;        /* its lock guards the queue and the metrics */

    /* settings */
    char               *traces_url;    /* owned */
    char               *metrics_url;   /* owned */
    struct curl_slist  *headers;       /* owned: content type and VMX_OTLP_HEADERS */
    long                interval_ms;
    size_t              queue_max;

    /* under the lock */
    item_t             *head, *tail;
    size_t              queued;
    bool                dropping;      /* the last record found the queue full */
    instrument_t        inst[NINSTRUMENTS];
    uint64_t            start_ns;      /* start of the cumulative metrics */

    /* the export thread's */
    CURL               *curl;          /* owned: the collector connection, kept alive */
    char               *pending;       /* owned: the traces body being sent */
    long                pending_spans;
    int                 tries;
    long long           retry_at;      /* worker_clock_ms() */
    long long           metrics_at;    /* worker_clock_ms() of the next metrics export */
    char                cause[2][192]; /* per signal: the failure last logged, "" */
    address_t           addresses[ADDRESS_CACHE];
    size_t              naddresses;
} ot = {
    .worker = WORKER_INIT,
    .inst = {
        [INST_TOKENS] = { "gen_ai.client.token.usage", "Tokens used per provider attempt",
                          "{token}", token_bounds,
                          sizeof(token_bounds) / sizeof(token_bounds[0]), NULL, 0, 0 },
        [INST_DURATION] = { "gen_ai.client.operation.duration",
                            "Duration of provider attempts", "s", duration_bounds,
                            sizeof(duration_bounds) / sizeof(duration_bounds[0]), NULL, 0, 0 },
        [INST_REQUESTS] = { "vmx.requests", "Gateway requests, by status code", "{request}",
                            NULL, 0, NULL, 0, 0 },
        [INST_DROPPED] = { "vmx.otlp.dropped_spans",
                           "Spans not exported (queue full, or the collector kept failing)",
                           "{span}", NULL, 0, NULL, 0, 0 },
        [INST_COST] = { "vmx.usage.cost", "Cost of provider attempts (the price table's)",
                        "USD", NULL, 0, NULL, 0, 0, true },
    },
};

enum { SIGNAL_TRACES = 0, SIGNAL_METRICS };
static const char *const signal_names[] = { "traces", "metrics" };


static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}


/* ------------------------------------------------------------ settings */

/* a character of an HTTP header name (RFC 9110 token) */
static bool
token_char(char c)
{
    return isalnum((unsigned char) c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/* one "name=value" entry (len bytes, the value URL-encoded) into ot.headers */
static int
add_header(CURL *curl, const char *entry, size_t len)
{
    const char        *eq = memchr(entry, '=', len);
    const char        *name = entry;
    size_t             nlen, i;
    char              *decoded, *line = NULL;
    int                dlen, rc = -1;
    struct curl_slist *h;

    if (eq == NULL) {
        log_error("config VMX_OTLP_HEADERS: an entry is not name=value");
        return -1;
    }
    while (name < eq && isspace((unsigned char) *name)) {
        name++;
    }
    nlen = (size_t) (eq - name);
    while (nlen > 0 && isspace((unsigned char) name[nlen - 1])) {
        nlen--;
    }
    for (i = 0; i < nlen && token_char(name[i]); i++) {
        /* the name's characters */
    }
    if (nlen == 0 || i < nlen) {
        log_error("config VMX_OTLP_HEADERS: \"%.*s\" is not a header name", (int) nlen, name);
        return -1;
    }
    decoded = curl_easy_unescape(curl, eq + 1, (int) (len - (size_t) (eq + 1 - entry)), &dlen);
    if (decoded == NULL || strlen(decoded) != (size_t) dlen || strpbrk(decoded, "\r\n") != NULL) {
        log_error("config VMX_OTLP_HEADERS: the value of %.*s is invalid", (int) nlen, name);
    } else if (asprintf(&line, "%.*s: %s", (int) nlen, name, decoded) < 0) {
        line = NULL;
    } else if ((h = curl_slist_append(ot.headers, line)) != NULL) {
        ot.headers = h;
        rc = 0;
    }
    if (decoded != NULL) {
        sodium_memzero(decoded, (size_t) dlen);
        curl_free(decoded);
    }
    if (line != NULL) {
        sodium_memzero(line, strlen(line));
        free(line);
    }
    return rc;
}


/*
 * VMX_OTLP_HEADERS: "name=value,name=value" (values URL-encoded, as
 * OTEL_EXPORTER_OTLP_HEADERS) appended to ot.headers; empty entries are
 * skipped.  Values are secrets: never logged.
 */
static int
parse_headers(const char *spec)
{
    CURL       *curl = curl_easy_init();
    const char *p = spec;
    int         rc = curl != NULL ? 0 : -1;

    while (rc == 0 && *p != '\0') {
        size_t len = strcspn(p, ",");

        if (strspn(p, " \t") < len) {
            rc = add_header(curl, p, len);
        }
        p += len + (p[len] == ',');
    }
    curl_easy_cleanup(curl);
    return rc;
}


/* the exporter's settings (config.c read and checked VMX_OTLP_*) */
static int
read_settings(const config_t *cfg)
{
    const char *endpoint = cfg->otlp_endpoint;
    size_t      len = strlen(endpoint);

    while (len > 0 && endpoint[len - 1] == '/') {
        len--;
    }
    if (len > URL_MAX) {
        log_error("config VMX_OTLP_ENDPOINT: longer than %d bytes", URL_MAX);
        return -1;
    }
    ot.interval_ms = cfg->otlp_metrics_interval * 1000L;
    ot.queue_max = (size_t) cfg->otlp_queue_size;
    if (asprintf(&ot.traces_url, "%.*s/v1/traces", (int) len, endpoint) < 0) {
        ot.traces_url = NULL;
        return -1;
    }
    if (asprintf(&ot.metrics_url, "%.*s/v1/metrics", (int) len, endpoint) < 0) {
        ot.metrics_url = NULL;
        return -1;
    }
    ot.headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (ot.headers == NULL) {
        return -1;
    }
    return cfg->otlp_headers != NULL ? parse_headers(cfg->otlp_headers) : 0;
}


/* ------------------------------------------------------------ attributes */

/* {"key": key, "value": {type: item}} appended to attrs; item is taken */
static void
attr(cJSON *attrs, const char *key, const char *type, cJSON *item)
{
    cJSON *a = cJSON_CreateObject();
    cJSON *value = cJSON_CreateObject();

    if (a == NULL || value == NULL || item == NULL) {
        cJSON_Delete(a);
        cJSON_Delete(value);
        cJSON_Delete(item);
        return;
    }
    cJSON_AddItemToObject(value, type, item);
    cJSON_AddStringToObject(a, "key", key);
    cJSON_AddItemToObject(a, "value", value);
    if (!cJSON_AddItemToArray(attrs, a)) {
        cJSON_Delete(a);
    }
}


static void
attr_str(cJSON *attrs, const char *key, const char *v)
{
    if (v != NULL) {
        attr(attrs, key, "stringValue", cJSON_CreateString(v));
    }
}


/* OTLP JSON writes 64-bit integers as strings */
static void
attr_int(cJSON *attrs, const char *key, long long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%lld", v);
    attr(attrs, key, "intValue", cJSON_CreateString(num));
}


static void
attr_double(cJSON *attrs, const char *key, double v)
{
    attr(attrs, key, "doubleValue", cJSON_CreateNumber(v));
}


static void
attr_bool(cJSON *attrs, const char *key, bool v)
{
    attr(attrs, key, "boolValue", cJSON_CreateBool(v));
}


static const char *
str_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}


/* an integer member, or -1 when absent, null or not a non-negative integer */
static long long
int_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9.2e18
               && v->valuedouble == floor(v->valuedouble)
           ? (long long) v->valuedouble : -1;
}


/* a non-negative number member (a duration in milliseconds, a cost in USD), or NAN */
static double
amount_of(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0
           ? v->valuedouble : NAN;
}


/* the semantic conventions' gen_ai.system of a provider id */
static const char *
gen_ai_system(const char *provider)
{
    if (provider == NULL) {
        return NULL;
    }
    if (strcmp(provider, "gemini") == 0) {
        return "gcp.gemini";
    }
    if (strcmp(provider, "aws-bedrock") == 0) {
        return "aws.bedrock";
    }
    return provider;
}


/* an attempt failed: no status, a status of 400 and up, or a failure reason */
static bool
attempt_failed(const cJSON *a)
{
    long long status = int_of(a, "statusCode");

    return status < 0 || status >= 400 || str_of(a, "failureReason") != NULL;
}


/* error.type of a failed attempt: its failure reason, else its status, else _OTHER */
static const char *
error_type(const cJSON *a, char *buf, size_t size)
{
    const char *reason = str_of(a, "failureReason");
    long long   status = int_of(a, "statusCode");

    if (reason != NULL) {
        return reason;
    }
    if (status >= 0) {
        snprintf(buf, size, "%lld", status);
        return buf;
    }
    return "_OTHER";
}


/* ------------------------------------------------------------ metrics */

static point_t *
point(instrument_t *in, const kv_t *kv, size_t n)
{
    static const kv_t overflow = { "otel.metric.overflow", NULL, 1 };
    char              key[1024];
    size_t            len = 0;
    point_t          *p;

    key[0] = '\0';
    for (size_t i = 0; i < n && len < sizeof(key); i++) {
        int w = kv[i].s != NULL
                ? snprintf(key + len, sizeof(key) - len, "%s=%s\x1f", kv[i].key, kv[i].s)
                : snprintf(key + len, sizeof(key) - len, "%s=%lld\x1f", kv[i].key, kv[i].i);

        len += w > 0 ? (size_t) w : 0;
    }
    for (size_t i = 0; i < in->n; i++) {
        if (strcmp(in->points[i].key, key) == 0) {
            return &in->points[i];
        }
    }
    if (in->n >= MAX_SERIES && kv != &overflow) {
        /* the SDKs' overflow point: one more, for every new attribute set */
        return point(in, &overflow, 1);
    }
    if (in->n == in->cap) {
        size_t   cap = in->cap ? in->cap * 2 : 16;
        point_t *grown = realloc(in->points, cap * sizeof(point_t));

        if (grown == NULL) {
            return NULL;
        }
        in->points = grown;
        in->cap = cap;
    }
    p = &in->points[in->n];
    memset(p, 0, sizeof(*p));
    p->key = strdup(key);
    p->attrs = cJSON_CreateArray();
    p->buckets = in->bounds ? calloc(in->nbounds + 1, sizeof(unsigned long long)) : NULL;
    if (p->key == NULL || p->attrs == NULL || (in->bounds != NULL && p->buckets == NULL)) {
        free(p->key);
        cJSON_Delete(p->attrs);
        free(p->buckets);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (kv == &overflow) {
            attr_bool(p->attrs, kv[i].key, true);
        } else if (kv[i].s != NULL) {
            attr_str(p->attrs, kv[i].key, kv[i].s);
        } else {
            attr_int(p->attrs, kv[i].key, kv[i].i);
        }
    }
    in->n++;
    return p;
}


/* records v (a histogram) or adds it (a sum) at the point of attributes kv;
 * under the lock */
static void
observe(int which, const kv_t *kv, size_t n, double v)
{
    instrument_t *in = &ot.inst[which];
    point_t      *p = point(in, kv, n);
    size_t        b = 0;

    if (p == NULL) {
        return;
    }
    if (in->bounds != NULL) {
        while (b < in->nbounds && v > in->bounds[b]) {
            b++;
        }
        p->buckets[b]++;
        p->min = p->count == 0 || v < p->min ? v : p->min;
        p->max = p->count == 0 || v > p->max ? v : p->max;
    }
    p->sum += v;
    p->count++;
}


/* the common attributes of an attempt's metric points; returns their number */
static size_t
attempt_kv(const cJSON *a, kv_t *kv, char *buf, size_t size)
{
    size_t n = 0;

    kv[n++] = (kv_t) { "gen_ai.operation.name", "chat", 0 };
    if (str_of(a, "provider") != NULL) {
        kv[n++] = (kv_t) { "gen_ai.system", gen_ai_system(str_of(a, "provider")), 0 };
    }
    if (str_of(a, "model") != NULL) {
        kv[n++] = (kv_t) { "gen_ai.request.model", str_of(a, "model"), 0 };
    }
    if (attempt_failed(a)) {
        kv[n++] = (kv_t) { "error.type", error_type(a, buf, size), 0 };
    }
    return n;
}


/* counts a record into the metrics; under the lock */
static void
count_record(const cJSON *r)
{
    const cJSON *a;
    kv_t         kv[MAX_ATTRS];
    char         buf[24];
    long long    status = int_of(r, "statusCode");
    size_t       n;

    kv[0] = (kv_t) { "http.response.status_code", NULL, status };
    observe(INST_REQUESTS, kv, status >= 0 ? 1 : 0, 1);
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(r, "attempts")) {
        double    ms = amount_of(a, "providerDuration"), cost = amount_of(a, "cost");
        long long in = int_of(a, "promptTokens"), out = int_of(a, "completionTokens");

        n = attempt_kv(a, kv, buf, sizeof(buf));
        if (!isnan(ms)) {
            observe(INST_DURATION, kv, n, ms / 1000);
        }
        /* token counts and cost: the attempt's own attributes without error.type */
        n -= attempt_failed(a) ? 1 : 0;
        if (in >= 0) {
            kv[n] = (kv_t) { "gen_ai.token.type", "input", 0 };
            observe(INST_TOKENS, kv, n + 1, (double) in);
        }
        if (out >= 0) {
            kv[n] = (kv_t) { "gen_ai.token.type", "output", 0 };
            observe(INST_TOKENS, kv, n + 1, (double) out);
        }
        if (!isnan(cost)) {
            observe(INST_COST, kv, n, cost);
        }
    }
}


/* counts spans that will never be exported; under the lock */
static void
dropped(const char *reason, long nspans)
{
    char labels[METRICS_LABELS_SIZE];

    metrics_labels(labels, "reason", reason, NULL);
    metrics_add(METRIC_OTLP_DROPPED, labels, (double) nspans);
    observe(INST_DROPPED, NULL, 0, (double) nspans);
}


static cJSON *
num_string(unsigned long long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%llu", v);
    return cJSON_CreateString(num);
}


static cJSON *
resource_json(void)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *attrs = cJSON_AddArrayToObject(res, "attributes");

    attr_str(attrs, "service.name", SERVICE_NAME);
    return res;
}


static cJSON *
scope_json(void)
{
    cJSON *scope = cJSON_CreateObject();

    cJSON_AddStringToObject(scope, "name", SCOPE_NAME);
    return scope;
}


/* the ExportMetricsServiceRequest of every point, NULL when there is none;
 * under the lock */
static cJSON *
metrics_json(void)
{
    cJSON    *doc = cJSON_CreateObject();
    cJSON    *rm = cJSON_CreateObject();
    cJSON    *sm = cJSON_CreateObject();
    cJSON    *list = cJSON_CreateArray();
    cJSON    *start = num_string(ot.start_ns), *now = num_string(now_ns());
    bool      any = false;

    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "resourceMetrics"), rm);
    cJSON_AddItemToObject(rm, "resource", resource_json());
    cJSON_AddItemToArray(cJSON_AddArrayToObject(rm, "scopeMetrics"), sm);
    cJSON_AddItemToObject(sm, "scope", scope_json());
    cJSON_AddItemToObject(sm, "metrics", list);
    for (int i = 0; i < NINSTRUMENTS; i++) {
        const instrument_t *in = &ot.inst[i];
        cJSON              *m, *data, *points, *counts;

        if (in->n == 0) {
            continue;
        }
        any = true;
        m = cJSON_CreateObject();
        cJSON_AddItemToArray(list, m);
        cJSON_AddStringToObject(m, "name", in->name);
        cJSON_AddStringToObject(m, "description", in->description);
        cJSON_AddStringToObject(m, "unit", in->unit);
        data = cJSON_AddObjectToObject(m, in->bounds ? "histogram" : "sum");
        cJSON_AddNumberToObject(data, "aggregationTemporality", TEMPORALITY_CUMULATIVE);
        if (in->bounds == NULL) {
            cJSON_AddBoolToObject(data, "isMonotonic", true);
        }
        points = cJSON_AddArrayToObject(data, "dataPoints");
        for (size_t k = 0; k < in->n; k++) {
            const point_t *p = &in->points[k];
            cJSON         *dp = cJSON_CreateObject();

            cJSON_AddItemToArray(points, dp);
            cJSON_AddItemToObject(dp, "attributes", cJSON_Duplicate(p->attrs, true));
            cJSON_AddItemToObject(dp, "startTimeUnixNano", cJSON_Duplicate(start, true));
            cJSON_AddItemToObject(dp, "timeUnixNano", cJSON_Duplicate(now, true));
            if (in->bounds == NULL && in->as_double) {
                cJSON_AddNumberToObject(dp, "asDouble", p->sum);
                continue;
            }
            if (in->bounds == NULL) {
                cJSON_AddItemToObject(dp, "asInt", num_string((unsigned long long) p->sum));
                continue;
            }
            cJSON_AddItemToObject(dp, "count", num_string(p->count));
            cJSON_AddNumberToObject(dp, "sum", p->sum);
            cJSON_AddNumberToObject(dp, "min", p->min);
            cJSON_AddNumberToObject(dp, "max", p->max);
            counts = cJSON_AddArrayToObject(dp, "bucketCounts");
            for (size_t b = 0; b <= in->nbounds; b++) {
                cJSON_AddItemToArray(counts, num_string(p->buckets[b]));
            }
            cJSON_AddItemToObject(dp, "explicitBounds",
                                  cJSON_CreateDoubleArray(in->bounds, (int) in->nbounds));
        }
    }
    cJSON_Delete(start);
    cJSON_Delete(now);
    if (!any) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}


/* ------------------------------------------------------------ records */

static bool
hex_id(const char *s, size_t len)
{
    bool nonzero = false;

    if (s == NULL || strlen(s) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char) s[i]) || isupper((unsigned char) s[i])) {
            return false;
        }
        nonzero |= s[i] != '0';
    }
    return nonzero;
}


/* the model the provider answered with: responseModel, response.model, or
 * a stream's first chunk's */
static const char *
response_model(const cJSON *r)
{
    const cJSON *resp = cJSON_GetObjectItemCaseSensitive(r, "response");
    const cJSON *chunk;

    if (str_of(r, "responseModel") != NULL) {
        return str_of(r, "responseModel");      /* found by the ingestion */
    }
    if (cJSON_IsObject(resp)) {
        return str_of(resp, "model");
    }
    if (!cJSON_IsArray(resp)) {
        return NULL;
    }
    cJSON_ArrayForEach(chunk, resp) {
        if (str_of(chunk, "model") != NULL) {
            return str_of(chunk, "model");
        }
    }
    return NULL;
}


/*
 * The members of a record the spans need (never the payloads), with
 * "responseModel"; *nspans = 1 + its attempts with a span id.  NULL when
 * the record has no valid trace and span ids.
 */
static cJSON *
reduce(const cJSON *r, long *nspans)
{
    static const char *const keep[] = { "traceId", "spanId", "parentSpanId", "timestamp",
        "duration", "statusCode", "errorCode", "errorMessage", "provider", "model",
        "connectionId", "resource", "resourceId", "workspaceId", "environmentId", "apiKeyId",
        "requestId", "correlationId", "method", "path", "sourceIp", "stream", "attempts" };
    const cJSON *a;
    cJSON       *out;

    if (!hex_id(str_of(r, "traceId"), 32) || !hex_id(str_of(r, "spanId"), 16)) {
        return NULL;
    }
    out = cJSON_CreateObject();
    for (size_t i = 0; out != NULL && i < sizeof(keep) / sizeof(keep[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, keep[i]);

        if (v != NULL && !cJSON_IsNull(v)
            && !cJSON_AddItemToObject(out, keep[i], cJSON_Duplicate(v, true)))
        {
            cJSON_Delete(out);
            return NULL;
        }
    }
    if (out != NULL && response_model(r) != NULL) {
        cJSON_AddStringToObject(out, "responseModel", response_model(r));
    }
    *nspans = 1;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(out, "attempts")) {
        *nspans += hex_id(str_of(a, "spanId"), 16);
    }
    return out;
}


bool
otel_running(void)
{
    return ot.worker.running;
}


void
otel_batch(const cJSON *records)
{
    const cJSON  *item;
    item_t       *first = NULL, **last = &first;

    if (!ot.worker.running) {
        return;
    }
    /* parsed and copied before taking the lock */
    cJSON_ArrayForEach(item, records) {
        cJSON  *parsed = cJSON_IsString(item) ? cJSON_Parse(item->valuestring) : NULL;
        item_t *it = calloc(1, sizeof(item_t));

        if (it == NULL) {
            cJSON_Delete(parsed);
            break;
        }
        it->record = parsed != NULL ? parsed : cJSON_Duplicate(item, true);
        if (it->record == NULL || !cJSON_IsObject(it->record)) {
            cJSON_Delete(it->record);
            free(it);
            continue;
        }
        *last = it;
        last = &it->next;
    }

    pthread_mutex_lock(&ot.worker.lock);
    for (item_t *it = first, *next; it != NULL; it = next) {
        cJSON *reduced;

        next = it->next;
        count_record(it->record);
        reduced = reduce(it->record, &it->nspans);
        cJSON_Delete(it->record);
        it->record = reduced;
        it->next = NULL;
        if (reduced == NULL) {
            free(it);
        } else if (ot.queued >= ot.queue_max) {
            if (!ot.dropping) {
                log_warn("otel endpoint=%s: queue of %zu records full, spans dropped",
                         ot.traces_url, ot.queue_max);
                ot.dropping = true;
            }
            dropped("queue_full", it->nspans);
            cJSON_Delete(reduced);
            free(it);
        } else {
            ot.dropping = false;
            if (ot.tail != NULL) {
                ot.tail->next = it;
            } else {
                ot.head = it;
            }
            ot.tail = it;
            ot.queued++;
        }
    }
    pthread_mutex_unlock(&ot.worker.lock);
    worker_notify(&ot.worker);
}


/* ------------------------------------------------------------ addresses */

/* the base URL a connection's attempts go to, as the snapshot's baseUrl */
static void
base_url(const char *provider, const cJSON *config, char *out, size_t size)
{
    const provider_t *p = provider_find(provider);
    const char       *url = str_of(config, "baseUrl");

    if (url == NULL || url[0] == '\0') {
        url = str_of(config, "endpoint");
    }
    if ((url == NULL || url[0] == '\0') && p != NULL) {
        url = p->default_base_url;
    }
    if (url != NULL && url[0] != '\0') {
        snprintf(out, size, "%s", url);
    } else {
        snprintf(out, size, "https://bedrock-runtime.%s.amazonaws.com",
                 str_of(config, "region") ? str_of(config, "region") : "us-east-1");
    }
}


static address_t *
address_find(const char *id)
{
    for (size_t i = 0; i < ot.naddresses; i++) {
        if (strcmp(ot.addresses[i].id, id) == 0) {
            return &ot.addresses[i];
        }
    }
    return NULL;
}


/* a cache slot for id, whose address is then to be filled */
static address_t *
address_slot(const char *id)
{
    address_t *a = address_find(id);

    if (a == NULL) {
        if (ot.naddresses == ADDRESS_CACHE) {
            for (size_t i = 0; i < ot.naddresses; i++) {
                free(ot.addresses[i].host);
            }
            ot.naddresses = 0;
        }
        a = &ot.addresses[ot.naddresses++];
        snprintf(a->id, sizeof(a->id), "%s", id);
        a->host = NULL;
    }
    free(a->host);
    a->host = NULL;
    a->port = 0;
    a->expires = time(NULL) + ADDRESS_TTL;
    return a;
}


static void
address_set(address_t *a, const char *url)
{
    CURLU *u = curl_url();
    char  *host = NULL, *port = NULL;

    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
    {
        size_t len = strlen(host);

        /* an IPv6 literal without its brackets */
        a->host = host[0] == '[' && len > 2 ? strndup(host + 1, len - 2) : strdup(host);
        a->port = strtol(port, NULL, 10);
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}


static void
want_address(const char *id, char *list, size_t size, size_t *len)
{
    const address_t *a;

    if (id == NULL || !crypto_is_uuid(id) || strstr(list, id) != NULL) {
        return;
    }
    a = address_find(id);
    if (a != NULL && a->expires > time(NULL)) {
        return;
    }
    if (*len + 40 < size) {
        *len += (size_t) snprintf(list + *len, size - *len, "%s%s", *len > 1 ? "," : "", id);
    }
}


/*
 * Fills the cache with the address of every connection of the batch not
 * known or expired, with one query.  A database failure leaves them
 * unknown (the spans go without server.address).
 */
static void
lookup_addresses(const item_t *batch)
{
    char        list[RECORDS_PER_EXPORT * 3 * 40 + 4] = "{";
    size_t      len = 1;
    const char *params[1] = { list };
    db_conn_t  *c;
    PGresult   *res;

    for (const item_t *it = batch; it != NULL; it = it->next) {
        const cJSON *a;

        want_address(str_of(it->record, "connectionId"), list, sizeof(list), &len);
        cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(it->record, "attempts")) {
            want_address(str_of(a, "connectionId"), list, sizeof(list), &len);
        }
    }
    if (len == 1) {
        return;
    }
    snprintf(list + len, sizeof(list) - len, "}");
    c = db_acquire();
    if (c == NULL) {
        return;
    }
    res = db_exec(c, "SELECT id::text, provider, config FROM connections"
                     " WHERE id = ANY($1::uuid[])", 1, params);
    db_release(c);
    if (res == NULL) {
        return;
    }
    /* every asked id gets a slot: the unknown ones stay without address */
    for (char *id = list + 1, *end; *id != '\0' && *id != '}'; id = end + 1) {
        end = id + strcspn(id, ",}");
        *end = '\0';
        address_slot(id);
        if (end == list + len) {
            break;
        }
    }
    for (int i = 0; i < PQntuples(res); i++) {
        cJSON *config = cJSON_Parse(PQgetvalue(res, i, 2));
        char   url[URL_MAX];

        base_url(PQgetvalue(res, i, 1), config, url, sizeof(url));
        address_set(address_slot(PQgetvalue(res, i, 0)), url);
        cJSON_Delete(config);
    }
    PQclear(res);
}


/* ------------------------------------------------------------ spans */

/* a record time (RFC 3339) in nanoseconds since the epoch, 0 when invalid */
static uint64_t
time_ns(const char *s)
{
    char      out[VMX_RFC3339_US_SIZE];
    time_t    t;
    uint64_t  usec = 0;
    size_t    len;

    if (s == NULL || !vmx_rfc3339_normalize(s, &t, out) || t < 0) {
        return 0;
    }
    len = strlen(out);
    for (size_t i = len - 7; i < len - 1; i++) {     /* ".uuuuuuZ" */
        usec = usec * 10 + (uint64_t) (out[i] - '0');
    }
    return (uint64_t) t * 1000000000u + usec * 1000;
}


static void
add_times(cJSON *span, uint64_t start, double ms)
{
    uint64_t end = start + (isnan(ms) ? 0 : (uint64_t) (ms * 1e6 + 0.5));

    cJSON_AddItemToObject(span, "startTimeUnixNano", num_string(start));
    cJSON_AddItemToObject(span, "endTimeUnixNano", num_string(end));
}


static void
add_status(cJSON *span, bool error, const char *message)
{
    cJSON *status = cJSON_AddObjectToObject(span, "status");

    cJSON_AddNumberToObject(status, "code", error ? STATUS_ERROR : STATUS_UNSET);
    if (error && message != NULL) {
        cJSON_AddStringToObject(status, "message", message);
    }
}


/* the vmx.* attributes of both kinds of spans */
static void
vmx_attrs(cJSON *attrs, const cJSON *r)
{
    attr_str(attrs, "vmx.workspace.id", str_of(r, "workspaceId"));
    attr_str(attrs, "vmx.environment.id", str_of(r, "environmentId"));
    attr_str(attrs, "vmx.resource.id", str_of(r, "resourceId"));
    attr_str(attrs, "vmx.resource.name", str_of(r, "resource"));
    attr_str(attrs, "vmx.api_key.id", str_of(r, "apiKeyId"));
    attr_str(attrs, "vmx.request.id", str_of(r, "requestId"));
    attr_str(attrs, "vmx.correlation.id", str_of(r, "correlationId"));
}


static cJSON *
new_span(cJSON *spans, const char *trace, const char *id, const char *parent,
    const char *model, int kind)
{
    cJSON *span = cJSON_CreateObject();
    char   name[256];

    snprintf(name, sizeof(name), model ? "chat %s" : "chat", model);
    cJSON_AddItemToArray(spans, span);
    cJSON_AddStringToObject(span, "traceId", trace);
    cJSON_AddStringToObject(span, "spanId", id);
    if (parent != NULL) {
        cJSON_AddStringToObject(span, "parentSpanId", parent);
    }
    cJSON_AddStringToObject(span, "name", name);
    cJSON_AddNumberToObject(span, "kind", kind);
    return span;
}


static void
usage_attrs(cJSON *attrs, const cJSON *a)
{
    if (int_of(a, "promptTokens") >= 0) {
        attr_int(attrs, "gen_ai.usage.input_tokens", int_of(a, "promptTokens"));
    }
    if (int_of(a, "completionTokens") >= 0) {
        attr_int(attrs, "gen_ai.usage.output_tokens", int_of(a, "completionTokens"));
    }
    if (!isnan(amount_of(a, "cost"))) {
        attr_double(attrs, "vmx.usage.cost", amount_of(a, "cost"));
    }
}


static void
attempt_span(cJSON *spans, const cJSON *r, const cJSON *a, int index, bool last)
{
    const char      *connection = str_of(a, "connectionId");
    const address_t *addr = connection ? address_find(connection) : NULL;
    bool             failed = attempt_failed(a);
    char             buf[24];
    cJSON           *span, *attrs;

    if (!hex_id(str_of(a, "spanId"), 16)) {
        return;
    }
    span = new_span(spans, str_of(r, "traceId"), str_of(a, "spanId"), str_of(r, "spanId"),
                    str_of(a, "model"), SPAN_KIND_CLIENT);
    add_times(span, time_ns(str_of(a, "startedAt")) ? time_ns(str_of(a, "startedAt"))
                                                    : time_ns(str_of(r, "timestamp")),
              amount_of(a, "providerDuration"));
    attrs = cJSON_AddArrayToObject(span, "attributes");
    attr_str(attrs, "gen_ai.operation.name", "chat");
    attr_str(attrs, "gen_ai.system", gen_ai_system(str_of(a, "provider")));
    attr_str(attrs, "gen_ai.request.model", str_of(a, "model"));
    if (last) {
        attr_str(attrs, "gen_ai.response.model", str_of(r, "responseModel"));
    }
    usage_attrs(attrs, a);
    if (addr != NULL && addr->host != NULL) {
        attr_str(attrs, "server.address", addr->host);
        attr_int(attrs, "server.port", addr->port);
    }
    if (int_of(a, "statusCode") >= 0) {
        attr_int(attrs, "http.response.status_code", int_of(a, "statusCode"));
    }
    if (failed) {
        attr_str(attrs, "error.type", error_type(a, buf, sizeof(buf)));
    }
    if (!isnan(amount_of(a, "timeToFirstToken"))) {
        attr_double(attrs, "vmx.time_to_first_token", amount_of(a, "timeToFirstToken") / 1000);
    }
    attr_str(attrs, "vmx.connection.id", connection);
    attr_int(attrs, "vmx.attempt.index", index);
    vmx_attrs(attrs, r);
    add_status(span, failed, str_of(a, "failureReason"));
}


/* the request's server span and its attempts' client spans */
static void
record_spans(cJSON *spans, const cJSON *r)
{
    const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(r, "attempts");
    const cJSON *a, *last = cJSON_GetArrayItem(attempts, cJSON_GetArraySize(attempts) - 1);
    long long    status = int_of(r, "statusCode");
    const char  *model = str_of(r, "model") ? str_of(r, "model") : str_of(r, "resource");
    char         buf[24];
    cJSON       *span, *attrs;
    int          i = 0;

    span = new_span(spans, str_of(r, "traceId"), str_of(r, "spanId"),
                    hex_id(str_of(r, "parentSpanId"), 16) ? str_of(r, "parentSpanId") : NULL,
                    model, SPAN_KIND_SERVER);
    add_times(span, time_ns(str_of(r, "timestamp")), amount_of(r, "duration"));
    attrs = cJSON_AddArrayToObject(span, "attributes");
    attr_str(attrs, "gen_ai.operation.name", "chat");
    attr_str(attrs, "gen_ai.system", gen_ai_system(str_of(r, "provider")));
    attr_str(attrs, "gen_ai.request.model", str_of(r, "model"));
    attr_str(attrs, "gen_ai.response.model", str_of(r, "responseModel"));
    if (last != NULL) {
        usage_attrs(attrs, last);
    }
    attr_str(attrs, "http.request.method", str_of(r, "method"));
    attr_str(attrs, "url.path", str_of(r, "path"));
    attr_str(attrs, "client.address", str_of(r, "sourceIp"));
    if (status >= 0) {
        attr_int(attrs, "http.response.status_code", status);
    }
    if (status < 0 || status >= 400) {
        if (str_of(r, "errorCode") == NULL && status >= 0) {
            snprintf(buf, sizeof(buf), "%lld", status);
        }
        attr_str(attrs, "error.type", str_of(r, "errorCode") ? str_of(r, "errorCode")
                                      : status >= 0 ? buf : "_OTHER");
    }
    attr_str(attrs, "vmx.connection.id", str_of(r, "connectionId"));
    attr_bool(attrs, "vmx.stream", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "stream")));
    attr_int(attrs, "vmx.attempts", cJSON_GetArraySize(attempts));
    vmx_attrs(attrs, r);
    /* a server span is an error for 5xx (and no answer), not for a client's 4xx */
    add_status(span, status < 0 || status >= 500, str_of(r, "errorMessage"));

    cJSON_ArrayForEach(a, attempts) {
        attempt_span(spans, r, a, i, a == last);
        i++;
    }
}


/* the ExportTraceServiceRequest of a batch, as text; NULL when out of memory */
static char *
traces_body(const item_t *batch)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *rs = cJSON_CreateObject();
    cJSON *ss = cJSON_CreateObject();
    cJSON *spans = cJSON_CreateArray();
    char  *text;

    cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "resourceSpans"), rs);
    cJSON_AddItemToObject(rs, "resource", resource_json());
    cJSON_AddItemToArray(cJSON_AddArrayToObject(rs, "scopeSpans"), ss);
    cJSON_AddItemToObject(ss, "scope", scope_json());
    cJSON_AddItemToObject(ss, "spans", spans);
    for (const item_t *it = batch; it != NULL; it = it->next) {
        record_spans(spans, it->record);
    }
    text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}


/* ------------------------------------------------------------ export */

/* POSTs body over the kept-alive connection; the HTTP status, or 0 with error filled */
static long
post(const char *url, const char *body, char *error, size_t error_size)
{
    char *answer = NULL;
    long  status;

    if (ot.curl == NULL && (ot.curl = curl_easy_init()) == NULL) {
        snprintf(error, error_size, "curl_easy_init failed");
        return 0;
    }
    curl_easy_reset(ot.curl);
    curl_easy_setopt(ot.curl, CURLOPT_URL, url);
    curl_easy_setopt(ot.curl, CURLOPT_HTTPHEADER, ot.headers);
    curl_easy_setopt(ot.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(ot.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
    status = httpc_perform(ot.curl, ANSWER_MAX, &answer, error, error_size);
    free(answer);
    return status;
}


/* counts an export and logs a failure when its cause differs from the last */
static void
outcome(int sig, bool ok, const char *fmt, ...)
{
    char    labels[METRICS_LABELS_SIZE];
    char    cause[sizeof(ot.cause[0])];
    va_list ap;

    metrics_labels(labels, "signal", signal_names[sig], "result", ok ? "ok" : "error", NULL);
    metrics_add(METRIC_OTLP_EXPORTS, labels, 1);
    if (ok) {
        if (ot.cause[sig][0] != '\0') {
            log_info("otel signal=%s endpoint=%s: exporting again", signal_names[sig],
                     sig == SIGNAL_TRACES ? ot.traces_url : ot.metrics_url);
            ot.cause[sig][0] = '\0';
        }
        return;
    }
    va_start(ap, fmt);
    vsnprintf(cause, sizeof(cause), fmt, ap);
    va_end(ap);
    if (strcmp(cause, ot.cause[sig]) != 0) {
        log_warn("otel signal=%s endpoint=%s: %s", signal_names[sig],
                 sig == SIGNAL_TRACES ? ot.traces_url : ot.metrics_url, cause);
        snprintf(ot.cause[sig], sizeof(ot.cause[sig]), "%s", cause);
    }
}


/* a status worth retrying (OTLP/HTTP: 429, 502, 503, 504, or no answer) */
static bool
retryable(long status)
{
    return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
}


static void
drop_pending(const char *reason)
{
    pthread_mutex_lock(&ot.worker.lock);
    dropped(reason, ot.pending_spans);
    pthread_mutex_unlock(&ot.worker.lock);
    free(ot.pending);
    ot.pending = NULL;
}


/* one POST of the pending traces; once: no retry (at stop) */
static void
send_traces(bool once)
{
    char error[CURL_ERROR_SIZE];
    long status = post(ot.traces_url, ot.pending, error, sizeof(error));

    if (status >= 200 && status < 300) {
        outcome(SIGNAL_TRACES, true, NULL);
        free(ot.pending);
        ot.pending = NULL;
        return;
    }
    ot.tries++;
    if (status == 0) {
        outcome(SIGNAL_TRACES, false, "%s", error);
    } else {
        outcome(SIGNAL_TRACES, false, "HTTP %ld", status);
    }
    if (!retryable(status) || once || ot.tries >= MAX_TRIES) {
        log_warn("otel signal=traces endpoint=%s: %ld span(s) dropped after %d attempt(s)",
                 ot.traces_url, ot.pending_spans, ot.tries);
        drop_pending("export_failed");
        return;
    }
    ot.retry_at = worker_clock_ms() + ((long long) BACKOFF_FIRST_MS << (ot.tries - 1));
}


/* takes up to RECORDS_PER_EXPORT queued records as the pending body; under
 * the lock, which it drops while building */
static void
take_batch(void)
{
    item_t *batch = ot.head, *it = ot.head;
    long    spans = 0;
    size_t  n = 1;

    for (; n < RECORDS_PER_EXPORT && it->next != NULL; n++) {
        it = it->next;
    }
    ot.head = it->next;
    if (ot.head == NULL) {
        ot.tail = NULL;
    }
    it->next = NULL;
    ot.queued -= n;
    pthread_mutex_unlock(&ot.worker.lock);

    lookup_addresses(batch);
    ot.pending = traces_body(batch);
    for (it = batch; it != NULL; ) {
        item_t *next = it->next;

        spans += it->nspans;
        cJSON_Delete(it->record);
        free(it);
        it = next;
    }
    ot.pending_spans = spans;
    ot.tries = 0;
    ot.retry_at = 0;
    pthread_mutex_lock(&ot.worker.lock);
    if (ot.pending == NULL) {
        log_error("otel signal=traces: out of memory building a batch");
        dropped("export_failed", spans);
    }
}


/* the cumulative metrics, once (a failure is made good by the next) */
static void
send_metrics(void)
{
    char   error[CURL_ERROR_SIZE];
    char  *body;
    cJSON *doc;
    long   status;

    pthread_mutex_lock(&ot.worker.lock);
    doc = metrics_json();
    pthread_mutex_unlock(&ot.worker.lock);
    if (doc == NULL) {
        return;
    }
    body = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (body == NULL) {
        return;
    }
    status = post(ot.metrics_url, body, error, sizeof(error));
    free(body);
    if (status >= 200 && status < 300) {
        outcome(SIGNAL_METRICS, true, NULL);
    } else if (status == 0) {
        outcome(SIGNAL_METRICS, false, "%s", error);
    } else {
        outcome(SIGNAL_METRICS, false, "HTTP %ld", status);
    }
}


/* at stop: one attempt for what waits, until the first failure */
static void
flush(void)
{
    pthread_mutex_lock(&ot.worker.lock);
    while (ot.pending != NULL || ot.head != NULL) {
        if (ot.pending == NULL) {
            take_batch();
            continue;
        }
        pthread_mutex_unlock(&ot.worker.lock);
        send_traces(true);
        pthread_mutex_lock(&ot.worker.lock);
        if (ot.cause[SIGNAL_TRACES][0] != '\0') {
            break;
        }
    }
    pthread_mutex_unlock(&ot.worker.lock);
    send_metrics();
}


/*
 * one step of the export: a batch taken from the queue, the pending traces
 * sent (when their retry is due), or the metrics (when due); 0 when more
 * is due now, else the milliseconds until it is (new records wake it
 * earlier)
 */
static long
otel_round(void)
{
    long long now = worker_clock_ms(), until;

    pthread_mutex_lock(&ot.worker.lock);
    if (ot.pending == NULL && ot.head != NULL) {
        take_batch();
        pthread_mutex_unlock(&ot.worker.lock);
        return 0;
    }
    pthread_mutex_unlock(&ot.worker.lock);
    if (ot.pending != NULL && now >= ot.retry_at) {
        send_traces(false);
        return 0;
    }
    if (now >= ot.metrics_at) {
        send_metrics();
        ot.metrics_at = now + ot.interval_ms;
        return 0;
    }
    until = ot.pending != NULL && ot.retry_at < ot.metrics_at ? ot.retry_at : ot.metrics_at;
    return (long) (until - now);
}


int
otel_start(const config_t *cfg)
{
    if (cfg->otlp_endpoint == NULL) {
        return 0;
    }
    if (read_settings(cfg) != 0) {
        return -1;
    }
    ot.start_ns = now_ns();
    ot.metrics_at = worker_clock_ms() + ot.interval_ms;
    leader_follow(&ot.worker);
    if (worker_start(&ot.worker, "otel", otel_round) != 0) {
        return -1;
    }
    log_info("otel: exporting to %s and %s, metrics every %ld s, queue of %zu records",
             ot.traces_url, ot.metrics_url, ot.interval_ms / 1000, ot.queue_max);
    return 0;
}


void
otel_stop(void)
{
    if (ot.worker.running) {
        worker_stop(&ot.worker);
        flush();              /* the thread's state is this thread's now */
    }
    while (ot.head != NULL) {
        item_t *next = ot.head->next;

        cJSON_Delete(ot.head->record);
        free(ot.head);
        ot.head = next;
    }
    ot.tail = NULL;
    ot.queued = 0;
    free(ot.pending);
    ot.pending = NULL;
    for (int i = 0; i < NINSTRUMENTS; i++) {
        for (size_t k = 0; k < ot.inst[i].n; k++) {
            free(ot.inst[i].points[k].key);
            cJSON_Delete(ot.inst[i].points[k].attrs);
            free(ot.inst[i].points[k].buckets);
        }
        free(ot.inst[i].points);
        ot.inst[i].points = NULL;
        ot.inst[i].n = ot.inst[i].cap = 0;
    }
    for (size_t i = 0; i < ot.naddresses; i++) {
        free(ot.addresses[i].host);
    }
    ot.naddresses = 0;
    httpc_cleanup(ot.curl, ot.headers);
    ot.curl = NULL;
    ot.headers = NULL;
    free(ot.traces_url);
    free(ot.metrics_url);
    ot.traces_url = ot.metrics_url = NULL;
}
