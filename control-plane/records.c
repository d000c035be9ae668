/*
 * records: record objects to COPY text rows (every value checked here, so
 * a COPY never fails on a value), and the ingestion transaction.
 */

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "records.h"
#include "rfc3339.h"

#define COPY_CHUNK       (1024 * 1024)
#define MAX_SAFE_INT     9007199254740991.0      /* 2^53 - 1 */

#define AUDIT_COLUMNS \
    "id, timestamp, workspace_id, environment_id, request_id, correlation_id," \
    " resource_id, resource, api_key_id, connection_id, provider, model, source_ip," \
    " method, path, stream, status_code, duration, gate_duration, routing_duration," \
    " error_code, error_message, failure_reason, events, attempts, request, response," \
    " payload_truncated"

#define USAGE_COLUMNS \
    "request_id, attempt_index, timestamp, workspace_id, environment_id, resource_id," \
    " api_key_id, connection_id, correlation_id, provider, model, status_code," \
    " failure_reason, prompt_tokens, completion_tokens, total_tokens, tokens_per_second," \
    " time_to_first_token, request_duration, provider_duration, gate_duration," \
    " routing_duration"

#define DIMENSIONS \
    "workspace_id, environment_id, resource_id, api_key_id, connection_id, provider," \
    " model, status_code, failure_reason"

/* the per-minute columns of one usage field, and their merge on conflict */
#define AGG(f) ", coalesce(sum(" f "), 0), count(" f "), min(" f "), max(" f ")"
#define MERGE(f) \
    ", " f "_sum = m." f "_sum + excluded." f "_sum" \
    ", " f "_n = m." f "_n + excluded." f "_n" \
    ", " f "_min = least(m." f "_min, excluded." f "_min)" \
    ", " f "_max = greatest(m." f "_max, excluded." f "_max)"
#define FIELDS(X) \
    X("prompt_tokens") X("completion_tokens") X("total_tokens") X("tokens_per_second") \
    X("time_to_first_token") X("request_duration") X("provider_duration") \
    X("gate_duration") X("routing_duration")

/* session-local staging tables, emptied by every commit or rollback */
#define CREATE_STAGING \
    "CREATE TEMP TABLE IF NOT EXISTS ingest_audit (LIKE audit_records)" \
    " ON COMMIT DELETE ROWS"
#define CREATE_STAGING_USAGE \
    "CREATE TEMP TABLE IF NOT EXISTS ingest_usage (LIKE usage_records)" \
    " ON COMMIT DELETE ROWS"

#define INSERT_AUDIT \
    "INSERT INTO audit_records SELECT * FROM ingest_audit ON CONFLICT DO NOTHING"

/* only the usage rows really inserted reach the aggregates */
#define INSERT_USAGE \
    "WITH new AS (" \
    "  INSERT INTO usage_records SELECT * FROM ingest_usage" \
    "  ON CONFLICT DO NOTHING RETURNING *" \
    "), agg AS (" \
    "  INSERT INTO usage_minutely AS m" \
    "  SELECT date_trunc('minute', timestamp), " DIMENSIONS ", count(*)," \
    "         count(*) FILTER (WHERE status_code IS NULL OR status_code >= 400)" \
    "         " FIELDS(AGG) \
    "    FROM new GROUP BY date_trunc('minute', timestamp), " DIMENSIONS \
    "  ON CONFLICT (minute, " DIMENSIONS ") DO UPDATE SET" \
    "     request_count = m.request_count + excluded.request_count," \
    "     error_count = m.error_count + excluded.error_count" \
    "     " FIELDS(MERGE) \
    ")" \
    "SELECT count(*) FROM new"

typedef struct {
    char    *data;          /* owned */
    size_t   len;
    size_t   cap;
    bool     failed;        /* out of memory: the batch is not stored */
} buf_t;

typedef struct {
    buf_t    audit;         /* COPY text of ingest_audit */
    buf_t    usage;         /* COPY text of ingest_usage */
    long     naudit;
    long    *days;          /* owned: distinct UTC days (days since the epoch) */
    size_t   ndays;
    size_t   days_cap;
} batch_t;


static void
buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t  cap = (b->len + n + 1) * 2;
        char   *grown = realloc(b->data, cap);

        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}


static void
buf_free(buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}


/* a field and its tab; the row's last tab becomes its newline (end_row) */
static void
put_raw(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
    buf_put(b, "\t", 1);
}


static void
put_null(buf_t *b)
{
    put_raw(b, "\\N");
}


/* COPY text escaping: backslash, tab, newline and carriage return */
static void
put_text(buf_t *b, const char *s)
{
    const char *run = s;

    for (const char *p = s; *p != '\0'; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '\t' ? "\\t" : *p == '\n' ? "\\n"
                          : *p == '\r' ? "\\r" : NULL;

        if (esc != NULL) {
            buf_put(b, run, (size_t) (p - run));
            buf_put(b, esc, 2);
            run = p + 1;
        }
    }
    put_raw(b, run);
}


static void
put_long(buf_t *b, long long v)
{
    char num[24];

    snprintf(num, sizeof(num), "%lld", v);
    put_raw(b, num);
}


/*
 * Replaces each byte that does not start a valid UTF-8 sequence with '?'
 * (PostgreSQL refuses the whole COPY otherwise).  Such bytes are never
 * ASCII, so the escapes and separators stay as they are.
 */
static void
sanitize_utf8(unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t        len = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2
                            : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        bool          ok = len > 0 && i + len <= n;

        for (size_t k = 1; ok && k < len; k++) {
            ok = (s[i + k] & 0xc0) == 0x80;
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if (ok && len > 2) {
            unsigned char d = s[i + 1];

            ok = !((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f)
                   || (c == 0xf0 && d < 0x90) || (c == 0xf4 && d > 0x8f));
        }
        if (ok) {
            i += len;
        } else {
            s[i++] = '?';
        }
    }
}


static void
end_row(buf_t *b, size_t row_start)
{
    if (!b->failed) {
        b->data[b->len - 1] = '\n';
        sanitize_utf8((unsigned char *) b->data + row_start, b->len - row_start);
    }
}


static const cJSON *
member(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}


static void
col_text(buf_t *b, const cJSON *obj, const char *name)
{
    const cJSON *v = member(obj, name);

    if (cJSON_IsString(v)) {
        put_text(b, v->valuestring);
    } else {
        put_null(b);
    }
}


/* a UUID member, NULL when absent or not a UUID */
static void
col_uuid(buf_t *b, const cJSON *obj, const char *name)
{
    const cJSON *v = member(obj, name);

    if (cJSON_IsString(v) && crypto_is_uuid(v->valuestring)) {
        put_raw(b, v->valuestring);
    } else {
        put_null(b);
    }
}


/* an integer member within [min, max], NULL otherwise */
static void
col_int(buf_t *b, const cJSON *obj, const char *name, double min, double max)
{
    const cJSON *v = member(obj, name);

    if (cJSON_IsNumber(v) && v->valuedouble >= min && v->valuedouble <= max
        && v->valuedouble == floor(v->valuedouble))
    {
        put_long(b, (long long) v->valuedouble);
    } else {
        put_null(b);
    }
}


static void
col_double(buf_t *b, const cJSON *obj, const char *name)
{
    const cJSON *v = member(obj, name);
    char         num[32];

    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        snprintf(num, sizeof(num), "%.17g", v->valuedouble);
        put_raw(b, num);
    } else {
        put_null(b);
    }
}


/* a boolean member; dflt: "t", "f" or NULL (SQL NULL) when not a boolean */
static void
col_bool(buf_t *b, const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *v = member(obj, name);

    if (cJSON_IsBool(v)) {
        put_raw(b, cJSON_IsTrue(v) ? "t" : "f");
    } else if (dflt != NULL) {
        put_raw(b, dflt);
    } else {
        put_null(b);
    }
}


/* any JSON member as jsonb text; JSON null or absent is SQL NULL */
static void
col_json(buf_t *b, const cJSON *v)
{
    char *text;

    if (v == NULL || cJSON_IsNull(v)) {
        put_null(b);
        return;
    }
    text = cJSON_PrintUnformatted(v);
    if (text == NULL) {
        b->failed = true;
        return;
    }
    put_text(b, text);
    free(text);
}


/* an array member as jsonb text, "[]" when absent or not an array */
static void
col_array(buf_t *b, const cJSON *obj, const char *name)
{
    const cJSON *v = member(obj, name);

    if (cJSON_IsArray(v)) {
        col_json(b, v);
    } else {
        put_raw(b, "[]");
    }
}


/* the record's failureReason, else its last attempt's */
static const cJSON *
failure_reason(const cJSON *record)
{
    const cJSON *v = member(record, "failureReason");
    const cJSON *attempts = member(record, "attempts");
    const cJSON *last;

    if (cJSON_IsString(v) || !cJSON_IsArray(attempts)) {
        return v;
    }
    last = cJSON_GetArrayItem(attempts, cJSON_GetArraySize(attempts) - 1);
    return member(last, "failureReason");
}


static void
put_string_or_null(buf_t *b, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        put_text(b, v->valuestring);
    } else {
        put_null(b);
    }
}


static void
audit_row(buf_t *b, const cJSON *r, const char *id, const char *ts)
{
    size_t start = b->len;

    put_raw(b, id);
    put_raw(b, ts);
    col_uuid(b, r, "workspaceId");
    col_uuid(b, r, "environmentId");
    col_uuid(b, r, "requestId");
    col_text(b, r, "correlationId");
    col_uuid(b, r, "resourceId");
    col_text(b, r, "resource");
    col_uuid(b, r, "apiKeyId");
    col_uuid(b, r, "connectionId");
    col_text(b, r, "provider");
    col_text(b, r, "model");
    col_text(b, r, "sourceIp");
    col_text(b, r, "method");
    col_text(b, r, "path");
    col_bool(b, r, "stream", NULL);
    col_int(b, r, "statusCode", 0, 999);
    col_double(b, r, "duration");
    col_double(b, r, "gateDuration");
    col_double(b, r, "routingDuration");
    col_text(b, r, "errorCode");
    col_text(b, r, "errorMessage");
    put_string_or_null(b, failure_reason(r));
    col_array(b, r, "events");
    col_array(b, r, "attempts");
    col_json(b, member(r, "request"));
    col_json(b, member(r, "response"));
    col_bool(b, r, "payloadTruncated", "f");
    end_row(b, start);
}


/*
 * One usage row: attempt a (index i), or with a NULL the request itself
 * when it reached no provider (its own provider, model and status, no
 * tokens nor provider duration).
 */
static void
usage_row(buf_t *b, const cJSON *r, const cJSON *a, int i, const char *id, const char *ts)
{
    const cJSON *src = a != NULL ? a : r;
    size_t       start = b->len;

    put_raw(b, id);
    put_long(b, i);
    put_raw(b, ts);
    col_uuid(b, r, "workspaceId");
    col_uuid(b, r, "environmentId");
    col_uuid(b, r, "resourceId");
    col_uuid(b, r, "apiKeyId");
    col_uuid(b, src, "connectionId");
    col_text(b, r, "correlationId");
    col_text(b, src, "provider");
    col_text(b, src, "model");
    col_int(b, src, "statusCode", 0, 999);
    put_string_or_null(b, a != NULL ? member(a, "failureReason") : failure_reason(r));
    col_int(b, a, "promptTokens", 0, MAX_SAFE_INT);
    col_int(b, a, "completionTokens", 0, MAX_SAFE_INT);
    col_int(b, a, "totalTokens", 0, MAX_SAFE_INT);
    col_double(b, a, "tokensPerSecond");
    col_double(b, a, "timeToFirstToken");
    col_double(b, r, "duration");
    col_double(b, a, "providerDuration");
    col_double(b, r, "gateDuration");
    col_double(b, r, "routingDuration");
    end_row(b, start);
}


static void
add_day(batch_t *batch, time_t t)
{
    long day = (long) (t / 86400) - (t % 86400 < 0);

    for (size_t i = 0; i < batch->ndays; i++) {
        if (batch->days[i] == day) {
            return;
        }
    }
    if (batch->ndays == batch->days_cap) {
        size_t  cap = batch->days_cap ? batch->days_cap * 2 : 8;
        long   *grown = realloc(batch->days, cap * sizeof(long));

        if (grown == NULL) {
            batch->audit.failed = true;
            return;
        }
        batch->days = grown;
        batch->days_cap = cap;
    }
    batch->days[batch->ndays++] = day;
}


/* adds the rows of one record; false when it has no valid id or timestamp */
static bool
add_record(batch_t *batch, const cJSON *r, records_batch_t *out)
{
    const cJSON *id = member(r, "id");
    const cJSON *ts = member(r, "timestamp");
    const cJSON *attempts = member(r, "attempts");
    char         when[RFC3339_US_SIZE];
    time_t       t;
    int          n = cJSON_IsArray(attempts) ? cJSON_GetArraySize(attempts) : 0;

    if (!cJSON_IsObject(r) || !cJSON_IsString(id) || !crypto_is_uuid(id->valuestring)
        || !cJSON_IsString(ts) || !rfc3339_normalize(ts->valuestring, &t, when))
    {
        return false;
    }
    audit_row(&batch->audit, r, id->valuestring, when);
    for (int i = 0; i < n; i++) {
        usage_row(&batch->usage, r, cJSON_GetArrayItem(attempts, i), i, id->valuestring, when);
    }
    if (n == 0) {
        usage_row(&batch->usage, r, NULL, 0, id->valuestring, when);
    }
    add_day(batch, t);
    batch->naudit++;
    if (t > out->newest) {
        out->newest = t;
    }
    return true;
}


static void
build_batch(batch_t *batch, const cJSON *records, records_batch_t *out)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, records) {
        cJSON *parsed = cJSON_IsString(item) ? cJSON_Parse(item->valuestring) : NULL;

        if (!add_record(batch, parsed != NULL ? parsed : item, out)) {
            out->rejected++;
        }
        cJSON_Delete(parsed);
    }
}


/* streams b into "COPY <table> (...) FROM STDIN"; 0 or -1 (logged without
 * the server's message, which may quote a value) */
static int
copy_in(db_conn_t *c, const char *sql, const char *table, const buf_t *b,
    const char *dataplane)
{
    PGconn      *pg = db_pgconn(c);
    PGresult    *res = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    const char  *state;
    char         failed[6] = "";
    bool         ok = PQresultStatus(res) == PGRES_COPY_IN;

    if (!ok) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        log_error("records dataplane=%s: COPY %s refused sqlstate=%s", dataplane, table,
                  state ? state : "08000");
        PQclear(res);
        return -1;
    }
    PQclear(res);
    for (size_t off = 0; ok && off < b->len; off += COPY_CHUNK) {
        size_t n = b->len - off < COPY_CHUNK ? b->len - off : COPY_CHUNK;

        ok = PQputCopyData(pg, b->data + off, (int) n) == 1;
    }
    ok = PQputCopyEnd(pg, ok ? NULL : "client failure") == 1 && ok;
    while ((res = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(failed, sizeof(failed), "%s", state ? state : "08000");
            ok = false;
        }
        PQclear(res);
    }
    if (!ok) {
        log_error("records dataplane=%s: COPY %s failed sqlstate=%s", dataplane, table,
                  failed[0] ? failed : "08000");
        return -1;
    }
    return 0;
}


/* "{2026-11-22,2026-11-23}" for the batch's days (caller frees) */
static char *
days_literal(const batch_t *batch)
{
    buf_t b = { 0 };

    buf_put(&b, "{", 1);
    for (size_t i = 0; i < batch->ndays; i++) {
        time_t    t = (time_t) batch->days[i] * 86400;
        struct tm tm;
        char      day[24];

        gmtime_r(&t, &tm);
        strftime(day, sizeof(day), "%Y-%m-%d", &tm);
        if (i > 0) {
            buf_put(&b, ",", 1);
        }
        buf_put(&b, day, strlen(day));
    }
    buf_put(&b, "}", 1);
    if (b.failed) {
        buf_free(&b);
    }
    return b.data;
}


/* moves the stored cursor from "from" to "to", creating it when from is "" */
static records_rc_e
claim_cursor(db_conn_t *c, const char *dataplane, const char *from, const char *to)
{
    const char *params[3] = { dataplane, to, from };
    PGresult   *res;
    bool        claimed;

    res = db_exec(c, "UPDATE record_cursors SET cursor = $2, updated_at = now()"
                     " WHERE dataplane = $1 AND cursor = $3", 3, params);
    if (res == NULL) {
        return RECORDS_FAILED;
    }
    claimed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (claimed || from[0] != '\0') {
        return claimed ? RECORDS_COMMITTED : RECORDS_CURSOR_MOVED;
    }
    res = db_exec(c, "INSERT INTO record_cursors (dataplane, cursor) VALUES ($1, $2)"
                     " ON CONFLICT DO NOTHING", 2, params);
    if (res == NULL) {
        return RECORDS_FAILED;
    }
    claimed = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return claimed ? RECORDS_COMMITTED : RECORDS_CURSOR_MOVED;
}


/* stages and inserts the batch's rows; -1 on failure */
static int
store_rows(db_conn_t *c, const batch_t *batch, const char *dataplane, records_batch_t *out)
{
    char       *days = days_literal(batch);
    const char *params[1] = { days };
    PGresult   *res;
    int         rc = -1;

    if (days == NULL
        || db_run(c, CREATE_STAGING, 0, NULL) != 0
        || db_run(c, CREATE_STAGING_USAGE, 0, NULL) != 0
        || copy_in(c, "COPY ingest_audit (" AUDIT_COLUMNS ") FROM STDIN", "ingest_audit",
                   &batch->audit, dataplane) != 0
        || copy_in(c, "COPY ingest_usage (" USAGE_COLUMNS ") FROM STDIN", "ingest_usage",
                   &batch->usage, dataplane) != 0
        || db_run(c, "SELECT vmx_ensure_partitions($1::date[])", 1, params) != 0)
    {
        free(days);
        return -1;
    }
    free(days);

    res = db_exec(c, INSERT_AUDIT, 0, NULL);
    if (res != NULL) {
        out->stored = atol(PQcmdTuples(res));
        PQclear(res);
        res = db_exec(c, INSERT_USAGE, 0, NULL);
    }
    if (res != NULL) {
        out->usage_rows = atol(PQgetvalue(res, 0, 0));
        rc = 0;
    }
    PQclear(res);
    return rc;
}


records_rc_e
records_ingest(db_conn_t *c, const char *dataplane, const cJSON *records, const char *from,
    const char *to, records_batch_t *out)
{
    batch_t       batch = { 0 };
    records_rc_e  rc = RECORDS_FAILED;

    memset(out, 0, sizeof(*out));
    build_batch(&batch, records, out);
    if (batch.audit.failed || batch.usage.failed) {
        log_error("records dataplane=%s: out of memory building a batch", dataplane);
    } else if (db_begin(c) == 0) {
        rc = claim_cursor(c, dataplane, from, to);
        if (rc == RECORDS_COMMITTED && batch.naudit > 0
            && store_rows(c, &batch, dataplane, out) != 0)
        {
            rc = RECORDS_FAILED;
        }
        if (rc == RECORDS_COMMITTED && db_commit(c) != 0) {
            rc = RECORDS_FAILED;
        }
        if (rc != RECORDS_COMMITTED) {
            db_rollback(c);
        }
    }
    buf_free(&batch.audit);
    buf_free(&batch.usage);
    free(batch.days);
    return rc;
}


char *
records_load_cursor(db_conn_t *c, const char *dataplane)
{
    const char *params[1] = { dataplane };
    PGresult   *res = db_exec(c, "SELECT cursor FROM record_cursors WHERE dataplane = $1",
                              1, params);
    char       *cursor;

    if (res == NULL) {
        return NULL;
    }
    cursor = strdup(PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return cursor;
}


int
records_maintain(db_conn_t *c, int ahead, int retention_days)
{
    char        ahead_s[16], keep_s[16];
    const char *params[1];
    PGresult   *res;

    snprintf(ahead_s, sizeof(ahead_s), "%d", ahead);
    snprintf(keep_s, sizeof(keep_s), "%d", retention_days);
    params[0] = ahead_s;
    res = db_exec(c, "SELECT vmx_ensure_partitions(ARRAY(SELECT (t AT TIME ZONE 'UTC')::date"
                     " FROM generate_series(now(), now() + make_interval(days => $1::int),"
                     "                      '1 day') t))",
                  1, params);
    if (res == NULL) {
        return -1;
    }
    log_info("records: partitions through %d days ahead, %s created", ahead,
             PQgetvalue(res, 0, 0));
    PQclear(res);
    params[0] = keep_s;
    res = db_exec(c, "SELECT vmx_drop_partitions((now() AT TIME ZONE 'UTC')::date - $1::int)",
                  1, params);
    if (res == NULL) {
        return -1;
    }
    log_info("records: retention %d days, %s partition(s) dropped", retention_days,
             PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}
