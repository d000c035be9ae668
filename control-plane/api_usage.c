/*
 * api_usage: POST .../usage, usage aggregated by time bucket and
 * dimensions (SPEC §7).  Sums, averages, minima, maxima and counts come
 * from usage_minutely; a query asking a percentile is answered wholly from
 * usage_records (percentile_cont), so every metric of an answer comes from
 * the same rows.  Date bounds are rounded down to the minute, where both
 * sources agree.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "vmx_rfc3339.h"

#define MAX_POINTS       10000       /* rows of an answer */
#define MAX_FIELD_VALUES 100
#define TEXT_VALUE_MAX   512
#define SQL_MAX          8192

typedef enum { DIM_TEXT, DIM_UUID, DIM_STATUS } dim_kind_e;

static const struct {
    const char  *name;
    const char  *column;
    dim_kind_e   kind;
} dimensions[] = {
    { "provider",      "provider",       DIM_TEXT },
    { "model",         "model",          DIM_TEXT },
    { "resourceId",    "resource_id",    DIM_UUID },
    { "connectionId",  "connection_id",  DIM_UUID },
    { "apiKeyId",      "api_key_id",     DIM_UUID },
    { "statusCode",    "status_code",    DIM_STATUS },
    { "failureReason", "failure_reason", DIM_TEXT },
};
#define NDIMENSIONS  (sizeof(dimensions) / sizeof(dimensions[0]))

/*
 * column NULL: a count, "sum" only, by its expressions over usage_records
 * and usage_minutely.  A request counts once (its last row: a request that
 * fell back is one request and several attempts); an error is a row (an
 * attempt, or a request that reached no provider) without a status or
 * with one of 400 and up.  unknown_sum: the sum of no values is null, not
 * 0 (a cost is unknown, never free, when no row had a price).
 */
static const struct {
    const char  *name;
    const char  *column;
    const char  *raw_count;
    const char  *minutely_count;
    bool         unknown_sum;
} metrics[] = {
    { "requestCount",     NULL, "count(*) FILTER (WHERE final)", "sum(request_count)",
      false },
    { "attemptCount",     NULL, "count(*) FILTER (WHERE attempt)", "sum(attempt_count)",
      false },
    { "errorCount",       NULL,
      "count(*) FILTER (WHERE status_code IS NULL OR status_code >= 400)",
      "sum(error_count)", false },
    { "promptTokens",     "prompt_tokens", NULL, NULL, false },
    { "completionTokens", "completion_tokens", NULL, NULL, false },
    { "totalTokens",      "total_tokens", NULL, NULL, false },
    { "tokensPerSecond",  "tokens_per_second", NULL, NULL, false },
    { "timeToFirstToken", "time_to_first_token", NULL, NULL, false },
    { "requestDuration",  "request_duration", NULL, NULL, false },
    { "providerDuration", "provider_duration", NULL, NULL, false },
    { "gateDuration",     "gate_duration", NULL, NULL, false },
    { "routingDuration",  "routing_duration", NULL, NULL, false },
    { "cost",             "cost", NULL, NULL, true },
};
#define NMETRICS  (sizeof(metrics) / sizeof(metrics[0]))

/* per aggregation: its expression over usage_minutely, over usage_records
 * (NULL: not from the minutely table), with the column name as %1$s */
static const struct {
    const char  *name;
    const char  *minutely;
    const char  *raw;
} aggregations[] = {
    { "sum", "sum(%1$s_sum)", "coalesce(sum(%1$s), 0)" },
    { "avg", "sum(%1$s_sum) / nullif(sum(%1$s_n), 0)", "avg(%1$s)" },
    { "min", "min(%1$s_min)", "min(%1$s)" },
    { "max", "max(%1$s_max)", "max(%1$s)" },
    { "p50", NULL, "percentile_cont(0.5) WITHIN GROUP (ORDER BY %1$s)" },
    { "p90", NULL, "percentile_cont(0.9) WITHIN GROUP (ORDER BY %1$s)" },
    { "p95", NULL, "percentile_cont(0.95) WITHIN GROUP (ORDER BY %1$s)" },
    { "p99", NULL, "percentile_cont(0.99) WITHIN GROUP (ORDER BY %1$s)" },
};
#define NAGGREGATIONS  (sizeof(aggregations) / sizeof(aggregations[0]))

/* sum (aggregations[0]) of a metric with unknown_sum */
#define UNKNOWN_SUM_MINUTELY  "CASE WHEN sum(%1$s_n) > 0 THEN sum(%1$s_sum) END"
#define UNKNOWN_SUM_RAW       "sum(%1$s)"

static const char *const granularities[] = { "minute", "hour", "day", "week", "month" };

typedef struct {
    const char  *granularity;            /* from the table above */
    int          metric[NMETRICS];       /* index into metrics, in the body's order */
    int          aggregation[NMETRICS];  /* index into aggregations */
    int          nmetrics;
    int          dimension[NDIMENSIONS];
    int          ndimensions;
    bool         raw;                    /* a percentile: usage_records */
    char         start[VMX_RFC3339_SIZE];    /* "" when unbounded */
    char         end[VMX_RFC3339_SIZE];
    char        *field_values[NDIMENSIONS];  /* owned JSON arrays, by dimension */
} query_t;


static int
dimension_index(const char *name)
{
    for (size_t i = 0; i < NDIMENSIONS; i++) {
        if (strcmp(dimensions[i].name, name) == 0) {
            return (int) i;
        }
    }
    return -1;
}


static bool
only_members(http_req_t *req, const cJSON *obj, const char *const *allowed, const char *at)
{
    const cJSON *item;
    char         field[128];

    cJSON_ArrayForEach(item, obj) {
        bool known = false;

        for (const char *const *a = allowed; *a != NULL && !known; a++) {
            known = strcmp(*a, item->string) == 0;
        }
        if (!known) {
            snprintf(field, sizeof(field), "%s%s", at, item->string);
            http_invalid(req, field, "%s is not a known member", field);
            return false;
        }
    }
    return true;
}


static bool
parse_granularity(http_req_t *req, query_t *q)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->json, "granularity");

    for (size_t i = 0; cJSON_IsString(v) && i < sizeof(granularities) / sizeof(char *); i++) {
        if (strcmp(v->valuestring, granularities[i]) == 0) {
            q->granularity = granularities[i];
            return true;
        }
    }
    http_invalid(req, "granularity", "granularity must be minute, hour, day, week or month");
    return false;
}


static bool
parse_metric(http_req_t *req, query_t *q, const cJSON *item)
{
    char   field[128];
    int    m = -1, a = -1;

    snprintf(field, sizeof(field), "metrics.%.100s", item->string);
    for (size_t i = 0; i < NMETRICS; i++) {
        if (strcmp(metrics[i].name, item->string) == 0) {
            m = (int) i;
        }
    }
    if (m < 0) {
        http_invalid(req, field, "%s is no usage metric", field);
        return false;
    }
    /* each metric once: that bounds nmetrics by NMETRICS */
    for (int k = 0; k < q->nmetrics; k++) {
        if (q->metric[k] == m) {
            http_invalid(req, field, "%s repeats a metric", field);
            return false;
        }
    }
    for (size_t i = 0; cJSON_IsString(item) && i < NAGGREGATIONS; i++) {
        if (strcmp(aggregations[i].name, item->valuestring) == 0) {
            a = (int) i;
        }
    }
    if (a < 0) {
        http_invalid(req, field, "%s must be sum, avg, min, max, p50, p90, p95 or p99", field);
        return false;
    }
    if (metrics[m].column == NULL && a != 0) {
        http_invalid(req, field, "%s is a count: only sum applies", field);
        return false;
    }
    q->metric[q->nmetrics] = m;
    q->aggregation[q->nmetrics++] = a;
    q->raw = q->raw || aggregations[a].minutely == NULL;
    return true;
}


static bool
parse_metrics(http_req_t *req, query_t *q)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(req->json, "metrics");
    const cJSON *item;

    if (!cJSON_IsObject(obj) || obj->child == NULL) {
        http_invalid(req, "metrics", "metrics must be an object naming at least one metric");
        return false;
    }
    cJSON_ArrayForEach(item, obj) {
        if (!parse_metric(req, q, item)) {
            return false;
        }
    }
    return true;
}


static bool
parse_dimensions(http_req_t *req, query_t *q)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(req->json, "dimensions");
    const cJSON *item;
    char         field[32];
    int          i = 0;

    if (arr == NULL || cJSON_IsNull(arr)) {
        return true;
    }
    if (!cJSON_IsArray(arr)) {
        http_invalid(req, "dimensions", "dimensions must be an array of dimension names");
        return false;
    }
    cJSON_ArrayForEach(item, arr) {
        int d = cJSON_IsString(item) ? dimension_index(item->valuestring) : -1;

        snprintf(field, sizeof(field), "dimensions[%d]", i++);
        for (int k = 0; d >= 0 && k < q->ndimensions; k++) {
            if (q->dimension[k] == d) {
                http_invalid(req, field, "%s repeats a dimension", field);
                return false;
            }
        }
        if (d < 0) {
            http_invalid(req, field, "%s must be provider, model, resourceId, connectionId,"
                         " apiKeyId, statusCode or failureReason", field);
            return false;
        }
        q->dimension[q->ndimensions++] = d;
    }
    return true;
}


/* an RFC 3339 bound rounded down to the minute into out; absent is "" */
static bool
parse_bound(http_req_t *req, const cJSON *range, const char *name, char out[VMX_RFC3339_SIZE],
    time_t *t)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(range, name);
    char         field[40];

    out[0] = '\0';
    if (v == NULL || cJSON_IsNull(v)) {
        return true;
    }
    snprintf(field, sizeof(field), "filter.dateRange.%s", name);
    if (!cJSON_IsString(v) || !vmx_rfc3339_parse(v->valuestring, t)) {
        http_invalid(req, field, "%s must be an RFC 3339 time", field);
        return false;
    }
    *t -= ((*t % 60) + 60) % 60;
    vmx_rfc3339_format(*t, out);
    return true;
}


static bool
parse_date_range(http_req_t *req, query_t *q, const cJSON *range)
{
    static const char *const members[] = { "start", "end", NULL };
    time_t start = 0, end = 0;

    if (range == NULL || cJSON_IsNull(range)) {
        return true;
    }
    if (!cJSON_IsObject(range)) {
        http_invalid(req, "filter.dateRange", "filter.dateRange must be {start, end}");
        return false;
    }
    if (!only_members(req, range, members, "filter.dateRange.")
        || !parse_bound(req, range, "start", q->start, &start)
        || !parse_bound(req, range, "end", q->end, &end))
    {
        return false;
    }
    if (q->start[0] != '\0' && q->end[0] != '\0' && end < start) {
        http_invalid(req, "filter.dateRange.end", "filter.dateRange.end is before its start");
        return false;
    }
    return true;
}


/* one filter value of dimension d, added to arr as a string */
static bool
add_field_value(http_req_t *req, int d, const cJSON *v, const char *field, cJSON *arr)
{
    char num[16];

    switch (dimensions[d].kind) {
    case DIM_STATUS:
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 999
            || v->valuedouble != (double) (int) v->valuedouble)
        {
            http_invalid(req, field, "%s must be an HTTP status code", field);
            return false;
        }
        snprintf(num, sizeof(num), "%d", (int) v->valuedouble);
        cJSON_AddItemToArray(arr, cJSON_CreateString(num));
        return true;
    case DIM_UUID:
        if (!cJSON_IsString(v) || !crypto_is_uuid(v->valuestring)) {
            http_invalid(req, field, "%s must be a UUID", field);
            return false;
        }
        break;
    case DIM_TEXT:
        if (!cJSON_IsString(v) || strlen(v->valuestring) > TEXT_VALUE_MAX) {
            http_invalid(req, field, "%s must be a string of at most %d bytes", field,
                         TEXT_VALUE_MAX);
            return false;
        }
        break;
    }
    cJSON_AddItemToArray(arr, cJSON_CreateString(v->valuestring));
    return true;
}


static bool
parse_field(http_req_t *req, query_t *q, const cJSON *item)
{
    int          d = dimension_index(item->string);
    char         field[160];
    const cJSON *v;
    cJSON       *arr;
    bool         ok = true;

    snprintf(field, sizeof(field), "filter.fields.%.100s", item->string);
    if (d < 0) {
        http_invalid(req, field, "%s is no dimension", field);
        return false;
    }
    if (q->field_values[d] != NULL) {
        http_invalid(req, field, "%s repeats a dimension", field);
        return false;
    }
    if (cJSON_IsArray(item)
        && (item->child == NULL || cJSON_GetArraySize(item) > MAX_FIELD_VALUES))
    {
        http_invalid(req, field, "%s must hold 1 to %d values", field, MAX_FIELD_VALUES);
        return false;
    }
    arr = cJSON_CreateArray();
    if (cJSON_IsArray(item)) {
        cJSON_ArrayForEach(v, item) {
            ok = ok && add_field_value(req, d, v, field, arr);
        }
    } else {
        ok = add_field_value(req, d, item, field, arr);
    }
    if (ok) {
        q->field_values[d] = cJSON_PrintUnformatted(arr);
    }
    cJSON_Delete(arr);
    return ok;
}


static bool
parse_filter(http_req_t *req, query_t *q)
{
    static const char *const members[] = { "dateRange", "fields", NULL };
    const cJSON *filter = cJSON_GetObjectItemCaseSensitive(req->json, "filter");
    const cJSON *fields, *item;

    if (filter == NULL || cJSON_IsNull(filter)) {
        return true;
    }
    if (!cJSON_IsObject(filter)) {
        http_invalid(req, "filter", "filter must be {dateRange, fields}");
        return false;
    }
    if (!only_members(req, filter, members, "filter.")
        || !parse_date_range(req, q, cJSON_GetObjectItemCaseSensitive(filter, "dateRange")))
    {
        return false;
    }
    fields = cJSON_GetObjectItemCaseSensitive(filter, "fields");
    if (fields == NULL || cJSON_IsNull(fields)) {
        return true;
    }
    if (!cJSON_IsObject(fields)) {
        http_invalid(req, "filter.fields", "filter.fields must be an object of dimensions");
        return false;
    }
    cJSON_ArrayForEach(item, fields) {
        if (!parse_field(req, q, item)) {
            return false;
        }
    }
    return true;
}


static void
append(char *sql, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
append(char *sql, size_t *len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    *len += (size_t) vsnprintf(sql + *len, *len < SQL_MAX ? SQL_MAX - *len : 0, fmt, ap);
    va_end(ap);
}


/*
 * the query text (constant fragments of the tables above only) and its
 * parameters; every value is a parameter.  Columns of the grouping: t (the
 * bucket), d<i> (dimensions), m<i> (metrics).
 */
static int
build_sql(const query_t *q, char *sql, const char **params, char *cap)
{
    const char *table = q->raw ? "usage_records" : "usage_minutely";
    const char *tcol = q->raw ? "timestamp" : "minute";
    size_t      len = 0;
    int         n = 2;

    append(sql, &len, "SELECT coalesce(jsonb_agg(r.doc ORDER BY r.n), '[]')::text, count(*)"
                      " FROM (SELECT jsonb_build_object('time', vmx_rfc3339(g.t)");
    for (int i = 0; i < q->ndimensions; i++) {
        append(sql, &len, ", '%s', g.d%d", dimensions[q->dimension[i]].name, i);
    }
    for (int i = 0; i < q->nmetrics; i++) {
        append(sql, &len, ", '%s', g.m%d", metrics[q->metric[i]].name, i);
    }
    append(sql, &len, ") AS doc, row_number() OVER (ORDER BY g.t");
    for (int i = 0; i < q->ndimensions; i++) {
        append(sql, &len, ", g.d%d", i);
    }
    append(sql, &len, ") AS n FROM (SELECT date_trunc('%s', %s, 'UTC') AS t",
           q->granularity, tcol);
    for (int i = 0; i < q->ndimensions; i++) {
        append(sql, &len, ", %s AS d%d", dimensions[q->dimension[i]].column, i);
    }
    for (int i = 0; i < q->nmetrics; i++) {
        int m = q->metric[i], a = q->aggregation[i];

        append(sql, &len, ", (");
        if (metrics[m].column != NULL && a == 0 && metrics[m].unknown_sum) {
            append(sql, &len, q->raw ? UNKNOWN_SUM_RAW : UNKNOWN_SUM_MINUTELY,
                   metrics[m].column);
        } else if (metrics[m].column != NULL) {
            append(sql, &len, q->raw ? aggregations[a].raw : aggregations[a].minutely,
                   metrics[m].column);
        } else {
            append(sql, &len, "%s", q->raw ? metrics[m].raw_count : metrics[m].minutely_count);
        }
        append(sql, &len, ")::float8 AS m%d", i);
    }
    append(sql, &len, " FROM %s WHERE workspace_id = $1 AND environment_id = $2", table);
    if (q->start[0] != '\0') {
        params[n++] = q->start;
        append(sql, &len, " AND %s >= $%d::timestamptz", tcol, n);
    }
    if (q->end[0] != '\0') {
        params[n++] = q->end;
        append(sql, &len, " AND %s < $%d::timestamptz", tcol, n);
    }
    for (size_t d = 0; d < NDIMENSIONS; d++) {
        static const char *const casts[] = { "text", "uuid", "int" };

        if (q->field_values[d] != NULL) {
            params[n++] = q->field_values[d];
            append(sql, &len, " AND %s = ANY (ARRAY(SELECT v::%s FROM"
                              " jsonb_array_elements_text($%d::jsonb) v))",
                   dimensions[d].column, casts[dimensions[d].kind], n);
        }
    }
    append(sql, &len, " GROUP BY 1");
    for (int i = 0; i < q->ndimensions; i++) {
        append(sql, &len, ", %d", i + 2);
    }
    params[n++] = cap;
    append(sql, &len, ") g ORDER BY n LIMIT $%d) r", n);
    return len < SQL_MAX ? n : -1;
}


void
api_usage_query(http_req_t *req)
{
    static const char *const members[] = { "granularity", "metrics", "dimensions", "filter",
                                           NULL };
    query_t      q;
    char         sql[SQL_MAX];
    char         cap[16];
    const char  *params[4 + NDIMENSIONS];
    int          n;
    PGresult    *res;
    cJSON       *body;

    memset(&q, 0, sizeof(q));
    params[0] = http_param(req, "ws");
    params[1] = http_param(req, "env");
    snprintf(cap, sizeof(cap), "%d", MAX_POINTS + 1);
    if (only_members(req, req->json, members, "")
        && parse_granularity(req, &q) && parse_metrics(req, &q) && parse_dimensions(req, &q)
        && parse_filter(req, &q))
    {
        n = build_sql(&q, sql, params, cap);
        res = n < 0 ? NULL : db_exec(req->db, sql, n, params);
        if (res == NULL) {
            http_error(req, 500, "internal_error", NULL, "usage query failed");
        } else if (atol(PQgetvalue(res, 0, 1)) > MAX_POINTS) {
            http_invalid(req, "granularity", "more than %d points: narrow the date range or"
                         " take a coarser granularity", MAX_POINTS);
        } else {
            body = cJSON_CreateObject();
            cJSON_AddItemToObject(body, "data", cJSON_Parse(PQgetvalue(res, 0, 0)));
            cJSON_AddStringToObject(body, "granularity", q.granularity);
            http_reply(req, 200, body);
        }
        PQclear(res);
    }
    for (size_t d = 0; d < NDIMENSIONS; d++) {
        free(q.field_values[d]);
    }
}
