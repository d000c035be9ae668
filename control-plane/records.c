/*
 * records: framed records to COPY text rows (every value checked here, so
 * a COPY fails on no value but a duplicate), their per-minute aggregates,
 * and the ingestion transaction.
 */

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "arena.h"
#include "log.h"
#include "metrics.h"
#include "prices.h"
#include "records.h"
#include "vmx_rfc3339.h"
#include "utf8.h"
#include "vmx_json.h"

#define COPY_CHUNK       (1024 * 1024)
#define MAX_SAFE_INT     9007199254740991.0      /* 2^53 - 1 */
#define NFIELDS          10                      /* usage fields aggregated */
#define FIELD_COST       9                       /* the last: the others are the record's */
#define UUID_LEN         36
#define BATCH_ITEM_MAX   49999                   /* a batch has at most 50000 items */

#define AUDIT_COLUMNS \
    "id, timestamp, workspace_id, environment_id, request_id, correlation_id," \
    " resource_id, resource, api_key_id, connection_id, provider, model, source_ip," \
    " method, path, stream, status_code, duration, gate_duration, routing_duration," \
    " error_code, error_message, failure_reason, events, attempts, request, response," \
    " payload_truncated, request_format, response_format, connection_ids, authenticated, cost," \
    " batch_id, batch_item"

#define USAGE_COLUMNS \
    "request_id, attempt_index, timestamp, workspace_id, environment_id, resource_id," \
    " api_key_id, connection_id, correlation_id, provider, model, status_code," \
    " failure_reason, prompt_tokens, completion_tokens, total_tokens, tokens_per_second," \
    " time_to_first_token, request_duration, provider_duration, gate_duration," \
    " routing_duration, attempt, final, cost"

#define DIMENSIONS \
    "workspace_id, environment_id, resource_id, api_key_id, connection_id, provider," \
    " model, status_code, failure_reason"

#define F(f) ", " f "_sum, " f "_n, " f "_min, " f "_max"
#define FIELDS(X) \
    X("prompt_tokens") X("completion_tokens") X("total_tokens") X("tokens_per_second") \
    X("time_to_first_token") X("request_duration") X("provider_duration") \
    X("gate_duration") X("routing_duration") X("cost")
#define MINUTE_COLUMNS \
    "minute, " DIMENSIONS ", request_count, attempt_count, error_count" FIELDS(F)
#define MERGE(f) \
    ", " f "_sum = m." f "_sum + excluded." f "_sum" \
    ", " f "_n = m." f "_n + excluded." f "_n" \
    ", " f "_min = least(m." f "_min, excluded." f "_min)" \
    ", " f "_max = greatest(m." f "_max, excluded." f "_max)"

/* session-local, emptied by every commit or rollback */
#define CREATE_STAGING \
    "CREATE TEMP TABLE IF NOT EXISTS ingest_minutely (LIKE usage_minutely)" \
    " ON COMMIT DELETE ROWS"

#define MERGE_MINUTES \
    "INSERT INTO usage_minutely AS m (" MINUTE_COLUMNS ")" \
    " SELECT " MINUTE_COLUMNS " FROM ingest_minutely" \
    " ON CONFLICT (minute, " DIMENSIONS ") DO UPDATE SET" \
    "   request_count = m.request_count + excluded.request_count," \
    "   attempt_count = m.attempt_count + excluded.attempt_count," \
    "   error_count = m.error_count + excluded.error_count" \
    FIELDS(MERGE)

typedef struct {
    char    *data;          /* owned */
    size_t   len;
    size_t   cap;
    bool     failed;        /* out of memory: the batch is not stored */
} buf_t;

/* one usage row's part of the per-minute aggregates and of the cost metrics */
typedef struct {
    time_t    minute;
    size_t    key, key_len;             /* its dimensions as COPY text in keys */
    size_t    labels, labels_len;       /* its metric labels in labels (priced or not) */
    unsigned  request:1, attempt:1, error:1, unpriced:1;
    unsigned  present;                  /* bit i: vals[i] is a value */
    double    vals[NFIELDS];
} contrib_t;

/* a record's cost: the sum of its attempts' */
typedef struct {
    prices_pico_t  sum;
    bool           priced;              /* an attempt has a cost */
} record_cost_t;

/*
 * lastUsedAt of the API keys of a batch's records: one UPDATE per batch,
 * each key's newest record, and only when newer than the stored one
 */
#define TOUCH_KEYS \
    "UPDATE api_keys k SET last_used_at = u.at" \
    " FROM (SELECT id, max(at) AS at" \
    "        FROM unnest($1::uuid[], $2::timestamptz[]) AS r (id, at) GROUP BY id) u" \
    " WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)"

/* a record of the batch: where its rows are */
typedef struct {
    char      id[UUID_LEN + 1];
    char      api_key[UUID_LEN + 1];    /* "" when none */
    char      when[VMX_RFC3339_US_SIZE];
    size_t    audit, audit_len;
    size_t    usage, usage_len;
    size_t    nusage;
    size_t    contrib, ncontrib;
    bool      skip;                     /* stored already, or refused */
    const char *file;                   /* where it was: the caller's */
    off_t     offset;
} rec_t;

typedef struct {
    char      position[80];             /* <file>:<offset> */
    const char *reason;
} dead_t;

/* the cost metrics of a label set */
typedef struct {
    const contrib_t *first;             /* NULL: free slot */
    double           usd;
    bool             priced;            /* a row has a cost */
    long long        unpriced;
} cost_series_t;

/* a minute and dimensions, with its sums */
typedef struct {
    const contrib_t *first;             /* NULL: free slot */
    long long  requests, attempts, errors;
    long long  n[NFIELDS];
    double     sum[NFIELDS], min[NFIELDS], max[NFIELDS];
} minute_t;

struct records_batch_s {
    char       *dataplane;              /* owned */
    arena_t     arena;
    buf_t       audit, usage, keys, dead;   /* COPY text, dimension keys */
    buf_t       labels;                 /* metric labels of the usage rows with tokens */
    rec_t      *recs;
    size_t      nrecs, recs_cap;
    contrib_t  *contribs;
    size_t      ncontribs, contribs_cap;
    dead_t     *deads;
    size_t      ndeads, deads_cap;
    long       *days;                   /* UTC days (days since the epoch) */
    size_t      ndays, days_cap;
    time_t      newest;
    bool        failed;                 /* out of memory */
    cJSON      *meta;                   /* owned: strings, or NULL */
};


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


/* ---- COPY text ------------------------------------------------------- */

/* a field and its tab; the row's last tab becomes its newline (end_row) */
static void
put_raw(buf_t *b, const char *s, size_t n)
{
    buf_put(b, s, n);
    buf_put(b, "\t", 1);
}

#define put_lit(b, s)  put_raw(b, s, sizeof(s) - 1)
#define put_null(b)    put_lit(b, "\\N")


/* COPY text escaping of valid UTF-8: backslash, tab, newline, carriage
 * return; a NUL (from a \u0000 escape) becomes U+FFFD, text cannot hold it */
static void
put_text(buf_t *b, const char *s, size_t n)
{
    const char *run = s, *end = s + n;

    for (const char *p = s; p < end; p++) {
        const char *esc;

        switch (*p) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\0': esc = "\xef\xbf\xbd"; break;
        default:   continue;
        }
        buf_put(b, run, (size_t) (p - run));
        buf_put(b, esc, strlen(esc));
        run = p + 1;
    }
    put_raw(b, run, (size_t) (end - run));
}


/* without printf: numbers are most of a row's fields */
static void
put_long(buf_t *b, long long v)
{
    char                num[24];
    char               *p = num + sizeof(num);
    unsigned long long  u = v < 0 ? 0 - (unsigned long long) v : (unsigned long long) v;

    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    put_raw(b, p, (size_t) (num + sizeof(num) - p));
}


static void
put_double(buf_t *b, double v)
{
    char num[32];

    put_raw(b, num, (size_t) snprintf(num, sizeof(num), "%.17g", v));
}


static void
end_row(buf_t *b)
{
    if (!b->failed) {
        b->data[b->len - 1] = '\n';
    }
}


/* ---- values of a record ---------------------------------------------- */

static const vmx_json_t *
member(const vmx_json_t *obj, const char *name)
{
    return obj != NULL ? vmx_json_get(obj, name) : NULL;
}


static const vmx_json_t *
string_of(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t *v = member(obj, name);

    return v != NULL && v->type == VMX_JSON_STRING ? v : NULL;
}


static void
col_text(buf_t *b, const vmx_json_t *v)
{
    if (v != NULL && v->type == VMX_JSON_STRING) {
        put_text(b, v->str, v->str_len);
    } else {
        put_null(b);
    }
}


static bool
is_uuid(const vmx_json_t *v)
{
    static const unsigned char dash[UUID_LEN] = {
        [8] = 1, [13] = 1, [18] = 1, [23] = 1
    };

    if (v == NULL || v->type != VMX_JSON_STRING || v->str_len != UUID_LEN) {
        return false;
    }
    for (size_t i = 0; i < UUID_LEN; i++) {
        unsigned char c = (unsigned char) v->str[i];

        if (dash[i] ? c != '-' : !((c >= '0' && c <= '9') || ((c | 0x20) >= 'a'
                                                               && (c | 0x20) <= 'f')))
        {
            return false;
        }
    }
    return true;
}


/* a UUID member, NULL when absent or not a UUID */
static void
col_uuid(buf_t *b, const vmx_json_t *obj, const char *name)
{
    const vmx_json_t *v = member(obj, name);

    if (is_uuid(v)) {
        put_raw(b, v->str, UUID_LEN);
    } else {
        put_null(b);
    }
}


/* a number member: an integer within [min, max] (integer) or any finite
 * number; NULL when absent or out of range */
static const vmx_json_t *
number_node(const vmx_json_t *obj, const char *name, bool integer, double min, double max)
{
    const vmx_json_t *v = member(obj, name);

    if (v == NULL || v->type != VMX_JSON_NUMBER || !isfinite(v->num)) {
        return NULL;
    }
    if (integer && (v->num < min || v->num > max || v->num != floor(v->num))) {
        return NULL;
    }
    return v;
}


static bool
number_of(const vmx_json_t *obj, const char *name, bool integer, double min, double max,
    double *out)
{
    const vmx_json_t *v = number_node(obj, name, integer, min, max);

    if (v != NULL) {
        *out = v->num;
    }
    return v != NULL;
}


/* a finite JSON number as float8 text: its own text, which PostgreSQL
 * reads as strtod() does, unless it may underflow there */
static void
put_number(buf_t *b, const vmx_json_t *v)
{
    if (v->num != 0 && fabs(v->num) >= 1e-300 && v->raw_len < 32) {
        put_raw(b, v->raw, v->raw_len);
    } else {
        put_double(b, v->num);
    }
}


static void
col_int(buf_t *b, const vmx_json_t *obj, const char *name, double min, double max)
{
    double v;

    if (number_of(obj, name, true, min, max, &v)) {
        put_long(b, (long long) v);
    } else {
        put_null(b);
    }
}


static void
col_double(buf_t *b, const vmx_json_t *obj, const char *name)
{
    const vmx_json_t *v = number_node(obj, name, false, 0, 0);

    if (v != NULL) {
        put_number(b, v);
    } else {
        put_null(b);
    }
}


/* a boolean member; dflt "t", "f" or NULL (SQL NULL) when not a boolean */
static void
col_bool(buf_t *b, const vmx_json_t *obj, const char *name, const char *dflt)
{
    const vmx_json_t *v = member(obj, name);

    if (v != NULL && (v->type == VMX_JSON_TRUE || v->type == VMX_JSON_FALSE)) {
        put_raw(b, v->type == VMX_JSON_TRUE ? "t" : "f", 1);
    } else if (dflt != NULL) {
        put_raw(b, dflt, 1);
    } else {
        put_null(b);
    }
}


/* an array member as json text, "[]" when absent or not an array */
static void
col_array(buf_t *b, const vmx_json_t *obj, const char *name)
{
    const vmx_json_t *v = member(obj, name);

    if (v != NULL && v->type == VMX_JSON_ARRAY) {
        put_text(b, v->raw, v->raw_len);
    } else {
        put_lit(b, "[]");
    }
}


/* the record's failureReason, else its last attempt's */
static const vmx_json_t *
failure_reason(const vmx_json_t *r, const vmx_json_t *attempts)
{
    const vmx_json_t *v = string_of(r, "failureReason");

    if (v != NULL || attempts == NULL || attempts->count == 0) {
        return v;
    }
    return string_of(vmx_json_at(attempts, attempts->count - 1), "failureReason");
}


/* ---- payloads -------------------------------------------------------- */

/* a copy of metadata whose bytes that are not UTF-8 are '?' (never JSON
 * syntax, so the structure stays); malloc'd */
static char *
sanitized_copy(const char *p, size_t n)
{
    unsigned char *s = malloc(n ? n : 1);

    if (s == NULL) {
        return NULL;
    }
    memcpy(s, p, n);
    for (size_t i = 0, len; i < n; i += len) {
        if ((len = utf8_at(s, i, n)) == 0) {
            s[i] = s[i] == 0 ? 0 : '?';
            len = 1;
        }
    }
    return (char *) s;
}


/*
 * A payload and its format: JSON as it was sent, other UTF-8 text as it
 * was, anything else (invalid UTF-8, NUL) as base64.  Lossless, and what
 * PostgreSQL's text holds.
 */
static const vmx_json_t *
col_payload(buf_t *b, arena_t *arena, const char *p, size_t n, const char **format)
{
    const vmx_json_t *v;
    vmx_json_error_t  err;

    *format = NULL;
    if (n == 0) {
        put_null(b);
        return NULL;
    }
    v = vmx_json_parse(p, n, arena_alloc, arena, 0, &err);
    if (v != NULL) {
        *format = "json";
        put_text(b, p, n);
    } else if (utf8_valid_text((const unsigned char *) p, n)) {
        *format = "text";
        put_text(b, p, n);
    } else {
        size_t  size = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
        char   *enc = malloc(size);

        if (enc == NULL) {
            b->failed = true;
            return NULL;
        }
        sodium_bin2base64(enc, size, (const unsigned char *) p, n,
                          sodium_base64_VARIANT_ORIGINAL);
        *format = "base64";
        put_raw(b, enc, size - 1);
        free(enc);
    }
    return v;
}


/* ---- the batch ------------------------------------------------------- */

/* grows an array of n elements of size to room for one more; false when out of memory */
static bool
grow(void **arr, size_t *cap, size_t n, size_t size)
{
    void *grown;

    if (n < *cap) {
        return true;
    }
    grown = realloc(*arr, (*cap ? *cap * 2 : 64) * size);
    if (grown == NULL) {
        return false;
    }
    *arr = grown;
    *cap = *cap ? *cap * 2 : 64;
    return true;
}


static void
add_day(records_batch_t *b, time_t t)
{
    long day = (long) (t / 86400) - (t % 86400 < 0);

    for (size_t i = 0; i < b->ndays; i++) {
        if (b->days[i] == day) {
            return;
        }
    }
    if (!grow((void **) &b->days, &b->days_cap, b->ndays, sizeof(long))) {
        b->failed = true;
        return;
    }
    b->days[b->ndays++] = day;
}


/* the dimensions of a usage row (COPY text) into keys */
static void
usage_key(records_batch_t *b, contrib_t *c, const vmx_json_t *r, const vmx_json_t *src,
    const vmx_json_t *reason)
{
    size_t start = b->keys.len;

    col_uuid(&b->keys, r, "workspaceId");
    col_uuid(&b->keys, r, "environmentId");
    col_uuid(&b->keys, r, "resourceId");
    col_uuid(&b->keys, r, "apiKeyId");
    col_uuid(&b->keys, src, "connectionId");
    col_text(&b->keys, string_of(src, "provider"));
    col_text(&b->keys, string_of(src, "model"));
    col_int(&b->keys, src, "statusCode", 0, 999);
    col_text(&b->keys, reason);
    c->key = start;
    c->key_len = b->keys.len - start;
}


/* the microseconds since the epoch of t, when its text ("...:SS.uuuuuuZ") */
static int64_t
micros_of(time_t t, const char *when)
{
    return (int64_t) t * 1000000 + strtol(when + strlen(when) - 7, NULL, 10);
}


/*
 * The cost of attempt a at at_us as the usage row's last column, counted in
 * c and total.  NULL when the attempt reported no tokens, or when its model
 * has no price then (c->unpriced): unknown, never 0.
 */
static void
col_cost(records_batch_t *b, contrib_t *c, const vmx_json_t *r, const vmx_json_t *a,
    int64_t at_us, record_cost_t *total)
{
    const vmx_json_t *ws = member(r, "workspaceId"), *env = member(r, "environmentId");
    const vmx_json_t *provider = string_of(a, "provider"), *model = string_of(a, "model");
    double            prompt = -1, cached = -1, completion = -1;
    prices_pico_t     cost;
    char              amount[PRICES_AMOUNT_SIZE];
    char              labels[METRICS_LABELS_SIZE];

    number_of(a, "promptTokens", true, 0, MAX_SAFE_INT, &prompt);
    number_of(a, "cachedTokens", true, 0, MAX_SAFE_INT, &cached);
    number_of(a, "completionTokens", true, 0, MAX_SAFE_INT, &completion);
    if (prompt < 0 && completion < 0) {
        put_null(&b->usage);
        return;
    }
    metrics_labels(labels, "workspace", is_uuid(ws) ? ws->str : "",
                   "environment", is_uuid(env) ? env->str : "",
                   "provider", provider ? provider->str : "", "model", model ? model->str : "",
                   NULL);
    c->labels = b->labels.len;
    buf_put(&b->labels, labels, strlen(labels));
    c->labels_len = b->labels.len - c->labels;

    if (provider == NULL || model == NULL
        || !prices_cost(provider->str, provider->str_len, model->str, model->str_len, at_us,
                        (int64_t) prompt, (int64_t) cached, (int64_t) completion, &cost))
    {
        c->unpriced = 1;
        put_null(&b->usage);
        return;
    }
    put_raw(&b->usage, amount, prices_format(cost, amount));
    c->vals[FIELD_COST] = prices_usd(cost);
    c->present |= 1u << FIELD_COST;
    total->sum += cost;
    total->priced = true;
}


/*
 * One usage row: attempt a (index i), or with a NULL the request itself
 * when it reached no provider (its own provider, model and status, no
 * tokens nor provider duration); and its part of the aggregates.
 */
static void
usage_row(records_batch_t *b, const vmx_json_t *r, const vmx_json_t *a, size_t i,
    bool final, const char *id, const char *ts, const vmx_json_t *attempts, int64_t at_us,
    record_cost_t *total)
{
    static const struct {
        const char  *name;
        bool         of_attempt, integer;
    } fields[FIELD_COST] = {
        { "promptTokens", true, true }, { "completionTokens", true, true },
        { "totalTokens", true, true }, { "tokensPerSecond", true, false },
        { "timeToFirstToken", true, false }, { "duration", false, false },
        { "providerDuration", true, false }, { "gateDuration", false, false },
        { "routingDuration", false, false },
    };
    const vmx_json_t *src = a != NULL ? a : r;
    const vmx_json_t *reason = a != NULL ? string_of(a, "failureReason")
                                         : failure_reason(r, attempts);
    buf_t            *u = &b->usage;
    contrib_t        *c;
    double            status;

    if (!grow((void **) &b->contribs, &b->contribs_cap, b->ncontribs, sizeof(contrib_t))) {
        b->failed = true;
        return;
    }
    c = &b->contribs[b->ncontribs++];
    memset(c, 0, sizeof(*c));

    put_raw(u, id, UUID_LEN);
    put_long(u, (long long) i);
    put_raw(u, ts, strlen(ts));
    col_uuid(u, r, "workspaceId");
    col_uuid(u, r, "environmentId");
    col_uuid(u, r, "resourceId");
    col_uuid(u, r, "apiKeyId");
    col_uuid(u, src, "connectionId");
    col_text(u, string_of(r, "correlationId"));
    col_text(u, string_of(src, "provider"));
    col_text(u, string_of(src, "model"));
    col_int(u, src, "statusCode", 0, 999);
    col_text(u, reason);
    for (int f = 0; f < FIELD_COST; f++) {
        const vmx_json_t *obj = fields[f].of_attempt ? a : r;
        const vmx_json_t *v = number_node(obj, fields[f].name, fields[f].integer, 0,
                                          MAX_SAFE_INT);

        if (v != NULL) {
            if (fields[f].integer) {
                put_long(u, (long long) v->num);
            } else {
                put_number(u, v);
            }
            c->vals[f] = v->num;
            c->present |= 1u << f;
        } else {
            put_null(u);
        }
    }
    put_raw(u, a != NULL ? "t" : "f", 1);
    put_raw(u, final ? "t" : "f", 1);
    col_cost(b, c, r, a, at_us, total);
    end_row(u);

    usage_key(b, c, r, src, reason);
    c->request = final;
    c->attempt = a != NULL;
    c->error = !number_of(src, "statusCode", true, 0, 999, &status) || status >= 400;
}


/* "{uuid,uuid}" of the record's connection and its attempts' */
static void
col_connections(buf_t *b, const vmx_json_t *r, const vmx_json_t *attempts)
{
    size_t n = 0;

    buf_put(b, "{", 1);
    for (size_t i = 0; i <= (attempts != NULL ? attempts->count : 0); i++) {
        const vmx_json_t *v = member(i == 0 ? r : vmx_json_at(attempts, i - 1),
                                     "connectionId");

        if (is_uuid(v)) {
            buf_put(b, ",", n++ > 0);
            buf_put(b, v->str, UUID_LEN);
        }
    }
    put_lit(b, "}");
}


/* the model a provider answered with: the answer's, or a stream's first chunk's */
static const vmx_json_t *
response_model(const vmx_json_t *response)
{
    if (response != NULL && response->type == VMX_JSON_ARRAY) {
        for (const vmx_json_t *c = response->child; c != NULL; c = c->next) {
            if (string_of(c, "model") != NULL) {
                return string_of(c, "model");
            }
        }
    }
    return string_of(response, "model");
}


/* the audit row; the model of the answer (NULL when none) */
static const vmx_json_t *
audit_row(records_batch_t *b, const vmx_json_t *r, const vmx_spool_record_t *rec,
    const char *id, const char *ts, const vmx_json_t *attempts, const record_cost_t *cost)
{
    buf_t            *a = &b->audit;
    const char       *request_format, *response_format;
    const vmx_json_t *response;
    char              amount[PRICES_AMOUNT_SIZE];

    put_raw(a, id, UUID_LEN);
    put_raw(a, ts, strlen(ts));
    col_uuid(a, r, "workspaceId");
    col_uuid(a, r, "environmentId");
    col_uuid(a, r, "requestId");
    col_text(a, string_of(r, "correlationId"));
    col_uuid(a, r, "resourceId");
    col_text(a, string_of(r, "resource"));
    col_uuid(a, r, "apiKeyId");
    col_uuid(a, r, "connectionId");
    col_text(a, string_of(r, "provider"));
    col_text(a, string_of(r, "model"));
    col_text(a, string_of(r, "sourceIp"));
    col_text(a, string_of(r, "method"));
    col_text(a, string_of(r, "path"));
    col_bool(a, r, "stream", NULL);
    col_int(a, r, "statusCode", 0, 999);
    col_double(a, r, "duration");
    col_double(a, r, "gateDuration");
    col_double(a, r, "routingDuration");
    col_text(a, string_of(r, "errorCode"));
    col_text(a, string_of(r, "errorMessage"));
    col_text(a, failure_reason(r, attempts));
    col_array(a, r, "events");
    col_array(a, r, "attempts");
    col_payload(a, &b->arena, rec->request, rec->request_len, &request_format);
    response = col_payload(a, &b->arena, rec->response, rec->response_len, &response_format);
    col_bool(a, r, "payloadTruncated", "f");
    if (request_format != NULL) {
        put_raw(a, request_format, strlen(request_format));
    } else {
        put_null(a);
    }
    if (response_format != NULL) {
        put_raw(a, response_format, strlen(response_format));
    } else {
        put_null(a);
    }
    col_connections(a, r, attempts);
    col_bool(a, r, "authenticated", "t");
    if (cost->priced) {
        put_raw(a, amount, prices_format(cost->sum, amount));
    } else {
        put_null(a);
    }
    col_uuid(a, r, "batchId");
    col_int(a, r, "batchItem", 0, BATCH_ITEM_MAX);
    end_row(a);
    return response_model(response);
}


/* "cost" (USD) of each attempt of the record's metadata o that has one */
static void
meta_costs(const records_batch_t *b, const rec_t *e, cJSON *o)
{
    cJSON  *a;
    size_t  i = 0;

    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(o, "attempts")) {
        const contrib_t *c = i < e->ncontrib && cJSON_IsObject(a)
                             ? &b->contribs[e->contrib + i] : NULL;

        if (c != NULL && (c->present & (1u << FIELD_COST))) {
            cJSON_AddNumberToObject(a, "cost", c->vals[FIELD_COST]);
        }
        i++;
    }
}


records_batch_t *
records_batch_new(const char *dataplane, bool keep_meta)
{
    records_batch_t *b = calloc(1, sizeof(*b));

    if (b == NULL || (b->dataplane = strdup(dataplane)) == NULL) {
        free(b);
        return NULL;
    }
    if (keep_meta && (b->meta = cJSON_CreateArray()) == NULL) {
        records_batch_free(b);
        return NULL;
    }
    return b;
}


void
records_batch_reset(records_batch_t *b)
{
    b->audit.len = b->usage.len = b->keys.len = b->dead.len = b->labels.len = 0;
    b->audit.failed = b->usage.failed = b->keys.failed = b->dead.failed = false;
    b->labels.failed = false;
    b->nrecs = b->ncontribs = b->ndeads = b->ndays = 0;
    b->newest = 0;
    b->failed = false;
    arena_reset(&b->arena, false);
    if (b->meta != NULL) {
        cJSON_Delete(b->meta);
        b->meta = cJSON_CreateArray();
        b->failed = b->meta == NULL;
    }
}


void
records_batch_free(records_batch_t *b)
{
    if (b == NULL) {
        return;
    }
    buf_free(&b->audit);
    buf_free(&b->usage);
    buf_free(&b->keys);
    buf_free(&b->dead);
    buf_free(&b->labels);
    arena_reset(&b->arena, true);
    free(b->recs);
    free(b->contribs);
    free(b->deads);
    free(b->days);
    cJSON_Delete(b->meta);
    free(b->dataplane);
    free(b);
}


void
records_batch_dead(records_batch_t *b, const char *file, off_t offset, const char *reason,
    const char *bytes, size_t len)
{
    buf_t  *d = &b->dead;
    dead_t *dl;
    size_t  keep = len < RECORDS_DEAD_RAW_MAX ? len : RECORDS_DEAD_RAW_MAX;
    char    hex[513];

    if (!grow((void **) &b->deads, &b->deads_cap, b->ndeads, sizeof(dead_t))) {
        b->failed = true;
        return;
    }
    dl = &b->deads[b->ndeads++];
    snprintf(dl->position, sizeof(dl->position), "%s:%lld", file, (long long) offset);
    dl->reason = reason;

    put_text(d, b->dataplane, strlen(b->dataplane));
    put_raw(d, dl->position, strlen(dl->position));
    put_text(d, reason, strlen(reason));
    put_long(d, (long long) len);
    buf_put(d, "\\\\x", 3);
    for (size_t off = 0; off < keep; off += 256) {
        size_t n = keep - off < 256 ? keep - off : 256;

        sodium_bin2hex(hex, sizeof(hex), (const unsigned char *) bytes + off, n);
        buf_put(d, hex, 2 * n);
    }
    put_lit(d, "");
    end_row(d);
}


void
records_batch_add(records_batch_t *b, const vmx_spool_record_t *rec, const char *frame,
    size_t frame_len, const char *file, off_t offset)
{
    const vmx_json_t *r, *id, *ts, *attempts, *model;
    vmx_json_error_t  err;
    rec_t            *e;
    record_cost_t     cost = { 0, false };
    char             *fixed = NULL;
    char              when[VMX_RFC3339_US_SIZE];
    int64_t           at_us;
    time_t            t;
    size_t            n;

    r = vmx_json_parse(rec->meta, rec->meta_len, arena_alloc, &b->arena, 0, &err);
    if (r == NULL && !utf8_valid_text((const unsigned char *) rec->meta, rec->meta_len)) {
        /* a path or header of the client's that was not UTF-8 */
        fixed = sanitized_copy(rec->meta, rec->meta_len);
        r = fixed ? vmx_json_parse(fixed, rec->meta_len, arena_alloc, &b->arena, 0, &err)
                  : NULL;
    }
    id = string_of(r, "id");
    ts = string_of(r, "timestamp");
    if (r == NULL || r->type != VMX_JSON_OBJECT) {
        records_batch_dead(b, file, offset, "the record's metadata is not a JSON object",
                           frame, frame_len);
        goto done;
    }
    if (!is_uuid(id) || ts == NULL || !vmx_rfc3339_normalize(ts->str, &t, when)) {
        records_batch_dead(b, file, offset, "the record has no valid id or timestamp",
                           frame, frame_len);
        goto done;
    }
    if (!grow((void **) &b->recs, &b->recs_cap, b->nrecs, sizeof(rec_t))) {
        b->failed = true;
        goto done;
    }
    e = &b->recs[b->nrecs++];
    memset(e, 0, sizeof(*e));
    memcpy(e->id, id->str, UUID_LEN);
    if (is_uuid(string_of(r, "apiKeyId"))) {
        memcpy(e->api_key, string_of(r, "apiKeyId")->str, UUID_LEN);
    }
    memcpy(e->when, when, sizeof(when));
    e->file = file;
    e->offset = offset;

    attempts = member(r, "attempts");
    if (attempts != NULL && attempts->type != VMX_JSON_ARRAY) {
        attempts = NULL;
    }
    n = attempts != NULL ? attempts->count : 0;
    at_us = micros_of(t, when);

    /* the usage rows first: the audit row holds the sum of their costs */
    e->usage = b->usage.len;
    e->contrib = b->ncontribs;
    for (size_t i = 0; i < n; i++) {
        usage_row(b, r, vmx_json_at(attempts, i), i, i + 1 == n, e->id, when, attempts,
                  at_us, &cost);
    }
    if (n == 0) {
        usage_row(b, r, NULL, 0, true, e->id, when, attempts, at_us, &cost);
    }
    e->usage_len = b->usage.len - e->usage;
    e->nusage = n ? n : 1;
    e->ncontrib = b->ncontribs - e->contrib;

    e->audit = b->audit.len;
    model = audit_row(b, r, rec, e->id, when, attempts, &cost);
    e->audit_len = b->audit.len - e->audit;
    for (size_t i = 0; i < e->ncontrib; i++) {
        b->contribs[e->contrib + i].minute = t - ((t % 60) + 60) % 60;
    }

    add_day(b, t);
    if (t > b->newest) {
        b->newest = t;
    }
    if (b->meta != NULL) {
        cJSON *o = cJSON_ParseWithLength(fixed ? fixed : rec->meta, rec->meta_len);

        if (o != NULL && model != NULL) {
            cJSON_AddStringToObject(o, "responseModel", model->str);
        }
        if (o != NULL) {
            meta_costs(b, e, o);
        }
        if (o == NULL || !cJSON_AddItemToArray(b->meta, o)) {
            cJSON_Delete(o);
            b->failed = true;
        }
    }

done:
    free(fixed);
    arena_reset(&b->arena, false);
}


size_t
records_batch_count(const records_batch_t *b)
{
    return b->nrecs + b->ndeads;
}


size_t
records_batch_bytes(const records_batch_t *b)
{
    return b->audit.len + b->usage.len + b->dead.len;
}


size_t
records_batch_dead_count(const records_batch_t *b)
{
    return b->ndeads;
}


const char *
records_batch_dead_reason(const records_batch_t *b, size_t i)
{
    return b->deads[i].reason;
}


const char *
records_batch_dead_position(const records_batch_t *b, size_t i)
{
    return b->deads[i].position;
}


const cJSON *
records_batch_meta(const records_batch_t *b)
{
    return b->meta;
}


/* ---- per-minute aggregates ------------------------------------------- */

/* FNV-1a of n bytes at p, from seed */
static uint64_t
fnv(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = 1469598103934665603ULL ^ seed;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char) p[i]) * 1099511628211ULL;
    }
    return h;
}


static uint64_t
contrib_hash(const records_batch_t *b, const contrib_t *c)
{
    return fnv(b->keys.data + c->key, c->key_len, (uint64_t) c->minute);
}


static bool
contrib_same(const records_batch_t *b, const contrib_t *x, const contrib_t *y)
{
    return x->minute == y->minute && x->key_len == y->key_len
           && memcmp(b->keys.data + x->key, b->keys.data + y->key, x->key_len) == 0;
}


/* the COPY text of ingest_minutely: the aggregates of the records kept */
static bool
minute_rows(const records_batch_t *b, buf_t *out)
{
    size_t    size = 64, mask;
    minute_t *table;

    while (size < 2 * b->ncontribs) {
        size *= 2;
    }
    mask = size - 1;
    table = calloc(size, sizeof(minute_t));
    if (table == NULL) {
        return false;
    }
    for (size_t r = 0; r < b->nrecs; r++) {
        if (b->recs[r].skip) {
            continue;
        }
        for (size_t k = 0; k < b->recs[r].ncontrib; k++) {
            const contrib_t *c = &b->contribs[b->recs[r].contrib + k];
            size_t           i = contrib_hash(b, c) & mask;
            minute_t        *m;

            while (table[i].first != NULL && !contrib_same(b, table[i].first, c)) {
                i = (i + 1) & mask;
            }
            m = &table[i];
            if (m->first == NULL) {
                m->first = c;
            }
            m->requests += c->request;
            m->attempts += c->attempt;
            m->errors += c->error;
            for (int f = 0; f < NFIELDS; f++) {
                if (c->present & (1u << f)) {
                    m->min[f] = m->n[f] == 0 || c->vals[f] < m->min[f] ? c->vals[f] : m->min[f];
                    m->max[f] = m->n[f] == 0 || c->vals[f] > m->max[f] ? c->vals[f] : m->max[f];
                    m->sum[f] += c->vals[f];
                    m->n[f]++;
                }
            }
        }
    }
    for (size_t i = 0; i < size; i++) {
        const minute_t *m = &table[i];
        char            when[VMX_RFC3339_US_SIZE];
        struct tm       tm;

        if (m->first == NULL) {
            continue;
        }
        gmtime_r(&m->first->minute, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:00Z", &tm);
        put_raw(out, when, strlen(when));
        buf_put(out, b->keys.data + m->first->key, m->first->key_len);
        put_long(out, m->requests);
        put_long(out, m->attempts);
        put_long(out, m->errors);
        for (int f = 0; f < NFIELDS; f++) {
            put_double(out, m->sum[f]);
            put_long(out, m->n[f]);
            if (m->n[f] > 0) {
                put_double(out, m->min[f]);
                put_double(out, m->max[f]);
            } else {
                put_null(out);
                put_null(out);
            }
        }
        end_row(out);
    }
    free(table);
    return !out->failed;
}


/* ---- cost metrics ---------------------------------------------------- */

/* the cost and the unpriced rows of the records kept, summed per label set
 * first (one metrics_add() each, not one per row) */
static void
count_costs(const records_batch_t *b)
{
    size_t         size = 64, mask;
    cost_series_t *table;
    char           labels[METRICS_LABELS_SIZE];

    while (size < 2 * b->ncontribs) {
        size *= 2;
    }
    mask = size - 1;
    table = calloc(size, sizeof(cost_series_t));
    if (table == NULL) {
        log_error("records dataplane=%s: out of memory counting costs", b->dataplane);
        return;
    }
    for (size_t r = 0; r < b->nrecs; r++) {
        for (size_t k = 0; !b->recs[r].skip && k < b->recs[r].ncontrib; k++) {
            const contrib_t *c = &b->contribs[b->recs[r].contrib + k];
            const char      *text;
            size_t           i;

            if (c->labels_len == 0) {
                continue;                   /* no tokens: nothing to price */
            }
            text = b->labels.data + c->labels;
            i = fnv(text, c->labels_len, 0) & mask;
            while (table[i].first != NULL
                   && (table[i].first->labels_len != c->labels_len
                       || memcmp(b->labels.data + table[i].first->labels, text,
                                 c->labels_len) != 0))
            {
                i = (i + 1) & mask;
            }
            table[i].first = table[i].first ? table[i].first : c;
            table[i].usd += (c->present & (1u << FIELD_COST)) ? c->vals[FIELD_COST] : 0;
            table[i].priced = table[i].priced || !c->unpriced;
            table[i].unpriced += c->unpriced;
        }
    }
    for (size_t i = 0; i < size; i++) {
        const cost_series_t *s = &table[i];

        if (s->first == NULL) {
            continue;
        }
        memcpy(labels, b->labels.data + s->first->labels, s->first->labels_len);
        labels[s->first->labels_len] = '\0';
        if (s->priced) {
            metrics_add(METRIC_USAGE_COST, labels, s->usd);
        }
        if (s->unpriced > 0) {
            metrics_add(METRIC_USAGE_UNPRICED, labels, (double) s->unpriced);
        }
    }
    free(table);
}


/* ---- the transaction ------------------------------------------------- */

/* streams n bytes into "COPY <table> (...) FROM STDIN"; 0, or -1 with the
 * SQLSTATE in state (logged without the server's message, which may quote
 * a value, unless quiet) */
static int
copy_in(db_conn_t *c, const char *sql, const char *table, const char *data, size_t len,
    const char *dataplane, bool quiet, char state[6])
{
    PGconn     *pg = db_pgconn(c);
    PGresult   *res = PQexecParams(pg, sql, 0, NULL, NULL, NULL, NULL, 0);
    const char *s;
    bool        ok = PQresultStatus(res) == PGRES_COPY_IN;

    snprintf(state, 6, "08000");
    if (!ok) {
        s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(state, 6, "%s", s ? s : "08000");
        log_error("records dataplane=%s: COPY %s refused sqlstate=%s", dataplane, table,
                  state);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    for (size_t off = 0; ok && off < len; off += COPY_CHUNK) {
        size_t n = len - off < COPY_CHUNK ? len - off : COPY_CHUNK;

        ok = PQputCopyData(pg, data + off, (int) n) == 1;
    }
    ok = PQputCopyEnd(pg, ok ? NULL : "client failure") == 1 && ok;
    while ((res = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(state, 6, "%s", s ? s : "08000");
            ok = false;
        }
        PQclear(res);
    }
    if (ok) {
        state[0] = '\0';
        return 0;
    }
    if (!quiet) {
        log_error("records dataplane=%s: COPY %s failed sqlstate=%s", dataplane, table, state);
    }
    return -1;
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


/* the day partitions of the batch's records (a look-up when they exist) */
static int
ensure_partitions(db_conn_t *c, const records_batch_t *b)
{
    buf_t        days = { 0 };
    const char  *params[1];
    int          rc;

    buf_put(&days, "{", 1);
    for (size_t i = 0; i < b->ndays; i++) {
        time_t    t = (time_t) b->days[i] * 86400;
        struct tm tm;
        char      day[24];

        gmtime_r(&t, &tm);
        buf_put(&days, ",", i > 0);
        buf_put(&days, day, strftime(day, sizeof(day), "%Y-%m-%d", &tm));
    }
    buf_put(&days, "}", 1);
    if (days.failed) {
        buf_free(&days);
        return -1;
    }
    params[0] = days.data;
    rc = b->ndays == 0 ? 0 : db_run(c, "SELECT vmx_ensure_partitions($1::date[])", 1, params);
    buf_free(&days);
    return rc;
}


/* copies the rows of the records not skipped into audit and usage */
static bool
kept_rows(const records_batch_t *b, buf_t *audit, buf_t *usage)
{
    for (size_t i = 0; i < b->nrecs; i++) {
        const rec_t *e = &b->recs[i];

        if (!e->skip) {
            buf_put(audit, b->audit.data + e->audit, e->audit_len);
            buf_put(usage, b->usage.data + e->usage, e->usage_len);
        }
    }
    return !audit->failed && !usage->failed;
}


/* audit rows, then their usage rows; 0, or -1 with the SQLSTATE in state.
 * The audit COPY is never logged: a record stored already (23505) is
 * expected there, and the caller says what else went wrong */
static int
copy_rows(db_conn_t *c, const records_batch_t *b, const buf_t *audit, const buf_t *usage,
    bool quiet, char state[6])
{
    if (copy_in(c, "COPY audit_records (" AUDIT_COLUMNS ") FROM STDIN", "audit_records",
                audit->data, audit->len, b->dataplane, true, state) != 0
        || copy_in(c, "COPY usage_records (" USAGE_COLUMNS ") FROM STDIN", "usage_records",
                   usage->data, usage->len, b->dataplane, quiet, state) != 0)
    {
        return -1;
    }
    return 0;
}


/* the lastUsedAt of the kept records' keys (TOUCH_KEYS); 0 or -1 */
static int
touch_keys(db_conn_t *c, const records_batch_t *b)
{
    buf_t       ids = { 0 }, times = { 0 };
    const char *params[2];
    size_t      n = 0;
    int         rc;

    buf_put(&ids, "{", 1);
    buf_put(&times, "{", 1);
    for (size_t i = 0; i < b->nrecs; i++) {
        const rec_t *e = &b->recs[i];

        if (e->skip || e->api_key[0] == '\0') {
            continue;
        }
        buf_put(&ids, ",", n > 0);
        buf_put(&times, ",", n > 0);
        buf_put(&ids, e->api_key, UUID_LEN);
        buf_put(&times, e->when, strlen(e->when));
        n++;
    }
    buf_put(&ids, "}", 1);
    buf_put(&times, "}", 1);
    params[0] = ids.data;
    params[1] = times.data;
    rc = ids.failed || times.failed ? -1 : n > 0 ? db_run(c, TOUCH_KEYS, 2, params) : 0;
    buf_free(&ids);
    buf_free(&times);
    return rc;
}


/*
 * The rows, dead letters, aggregates and keys' lastUsedAt of the batch in
 * the open transaction: 0; 1 when a record is there already (23505: the caller
 * skips those and tries again); -1 otherwise, with state.
 */
static int
store_rows(db_conn_t *c, records_batch_t *b, records_result_t *out, bool isolate,
    char state[6])
{
    buf_t  kept_audit = { 0 }, kept_usage = { 0 }, minutes = { 0 };
    bool   all = true;
    int    rc = -1;

    for (size_t i = 0; i < b->nrecs; i++) {
        all = all && !b->recs[i].skip;
    }
    snprintf(state, 6, "08000");

    if (isolate) {
        /* one record at a time, each refused one a dead letter */
        for (size_t i = 0; i < b->nrecs; i++) {
            rec_t *e = &b->recs[i];
            buf_t  audit = { b->audit.data + e->audit, e->audit_len, 0, false };
            buf_t  usage = { b->usage.data + e->usage, e->usage_len, 0, false };
            char   st[6];

            if (e->skip || db_run(c, "SAVEPOINT rec", 0, NULL) != 0) {
                continue;
            }
            if (copy_rows(c, b, &audit, &usage, true, st) == 0) {
                db_run(c, "RELEASE SAVEPOINT rec", 0, NULL);
                continue;
            }
            if (db_run(c, "ROLLBACK TO SAVEPOINT rec", 0, NULL) != 0) {
                return -1;
            }
            e->skip = true;
            if (strcmp(st, "23505") == 0) {
                out->duplicates++;
            } else {
                log_warn("records dataplane=%s: record %s refused by PostgreSQL"
                         " (sqlstate %s): kept as a dead letter", b->dataplane, e->id, st);
                records_batch_dead(b, e->file, e->offset, "refused by PostgreSQL",
                                   b->audit.data + e->audit, e->audit_len);
            }
        }
    } else if (all ? copy_rows(c, b, &b->audit, &b->usage, false, state) != 0
                   : !kept_rows(b, &kept_audit, &kept_usage)
                     || copy_rows(c, b, &kept_audit, &kept_usage, false, state) != 0)
    {
        rc = strcmp(state, "23505") == 0 ? 1 : -1;
        goto done;
    }

    for (size_t i = 0; i < b->nrecs; i++) {
        if (!b->recs[i].skip) {
            out->stored++;
            out->usage_rows += (long) b->recs[i].nusage;
        }
    }

    if (!minute_rows(b, &minutes)
        || (minutes.len > 0
            && (db_run(c, CREATE_STAGING, 0, NULL) != 0
                || copy_in(c, "COPY ingest_minutely (" MINUTE_COLUMNS ") FROM STDIN",
                           "ingest_minutely", minutes.data, minutes.len, b->dataplane,
                           false, state) != 0
                || db_run(c, MERGE_MINUTES, 0, NULL) != 0))
        || (b->dead.len > 0
            && copy_in(c, "COPY audit_dead_letters (dataplane, position, reason, length, raw)"
                          " FROM STDIN", "audit_dead_letters", b->dead.data, b->dead.len,
                       b->dataplane, false, state) != 0)
        || touch_keys(c, b) != 0)
    {
        goto done;
    }
    out->dead = (long) b->ndeads;
    rc = 0;

done:
    buf_free(&kept_audit);
    buf_free(&kept_usage);
    buf_free(&minutes);
    return rc;
}


/* marks the batch's records that are stored already; -1 on error */
static int
skip_stored(db_conn_t *c, records_batch_t *b, records_result_t *out)
{
    buf_t       ids = { 0 };
    const char *params[1];
    PGresult   *res;

    buf_put(&ids, "{", 1);
    for (size_t i = 0; i < b->nrecs; i++) {
        buf_put(&ids, ",", i > 0);
        buf_put(&ids, b->recs[i].id, UUID_LEN);
    }
    buf_put(&ids, "}", 1);
    if (ids.failed) {
        buf_free(&ids);
        return -1;
    }
    params[0] = ids.data;
    res = db_exec(c, "SELECT id::text FROM audit_records WHERE id = ANY($1::uuid[])", 1,
                  params);
    buf_free(&ids);
    if (res == NULL) {
        return -1;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        for (size_t i = 0; i < b->nrecs; i++) {
            if (!b->recs[i].skip && strcmp(b->recs[i].id, PQgetvalue(res, row, 0)) == 0) {
                b->recs[i].skip = true;
                out->duplicates++;
            }
        }
    }
    PQclear(res);
    return 0;
}


records_rc_e
records_commit(db_conn_t *c, records_batch_t *b, const char *from, const char *to,
    records_result_t *out)
{
    records_rc_e rc;
    char         state[6] = "";
    bool         skipped = false, isolate = false;
    int          stored;

    memset(out, 0, sizeof(*out));
    out->newest = b->newest;
    if (b->failed || b->audit.failed || b->usage.failed || b->keys.failed || b->dead.failed) {
        log_error("records dataplane=%s: out of memory building a batch", b->dataplane);
        return RECORDS_FAILED;
    }

    /* at once; then without the records stored already; then one at a time */
    for ( ;; ) {
        records_result_t counts = *out;

        if (db_begin(c) != 0) {
            return RECORDS_FAILED;
        }
        rc = claim_cursor(c, b->dataplane, from, to);
        if (rc != RECORDS_COMMITTED) {
            db_rollback(c);
            return rc;
        }
        stored = ensure_partitions(c, b) != 0 ? -1 : store_rows(c, b, &counts, isolate, state);
        if (stored == 0 && db_commit(c) == 0) {
            *out = counts;
            count_costs(b);
            return RECORDS_COMMITTED;
        }
        db_rollback(c);
        if (stored == 1 && !skipped) {
            if (skip_stored(c, b, out) != 0) {
                return RECORDS_FAILED;
            }
            skipped = true;
        } else if (!isolate && (stored == 1 || strncmp(state, "22", 2) == 0
                                || strncmp(state, "23", 2) == 0))
        {
            /* a value PostgreSQL refuses: the records one at a time */
            isolate = true;
        } else {
            return RECORDS_FAILED;
        }
    }
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
    return db_run(c, "DELETE FROM audit_dead_letters"
                     " WHERE created_at < now() - make_interval(days => $1::int)", 1, params);
}
