/*
 * VM-X gateway: request statistics, and their Prometheus exposition.
 *
 * One series per workspace, environment, resource, connection, provider and
 * model, in a table of its own zone (vmx_stats_zone) shared by the workers.
 * A series is created under the zone's lock; its counters are then updated
 * with atomic additions, so the log phase of a request takes no lock in the
 * common case.  A series is a live counter, never taken over: when the
 * table is full, the requests of new label sets are counted in one more
 * series, all of whose labels are "_overflow", so that no total is lost.
 * The providers' health (errorRate() and the latency windows) has a table
 * in a zone of its own too (vmx_health_zone).  "vmx_status" serves them in
 * Prometheus' text format.
 */

#include "ngx_http_vmx_module.h"


#define NGX_HTTP_VMX_STATS_ZONE     (4 * 1024 * 1024)     /* 2048 series */
#define NGX_HTTP_VMX_LABEL_MAX      128
#define NGX_HTTP_VMX_BUCKETS        14
#define NGX_HTTP_VMX_HEALTH_ZONE    (8 * 1024 * 1024)     /* 1024 models */
#define NGX_HTTP_VMX_HEALTH_MINUTES 60
#define NGX_HTTP_VMX_HEALTH_CODES   4


/* request duration buckets, in microseconds */
static uint64_t  ngx_http_vmx_buckets[NGX_HTTP_VMX_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    5000000, 10000000, 30000000, 60000000, 120000000
};

static const char  *ngx_http_vmx_bucket_le[NGX_HTTP_VMX_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10", "30", "60", "120"
};


typedef struct {
    u_char                       data[NGX_HTTP_VMX_LABEL_MAX];
    size_t                       len;
} ngx_http_vmx_label_t;


typedef enum {
    NGX_HTTP_VMX_LABEL_WORKSPACE = 0,
    NGX_HTTP_VMX_LABEL_ENVIRONMENT,
    NGX_HTTP_VMX_LABEL_RESOURCE,
    NGX_HTTP_VMX_LABEL_CONNECTION,
    NGX_HTTP_VMX_LABEL_PROVIDER,
    NGX_HTTP_VMX_LABEL_MODEL,
    NGX_HTTP_VMX_LABELS
} ngx_http_vmx_label_e;


static const char  *ngx_http_vmx_label_names[NGX_HTTP_VMX_LABELS] = {
    "workspace", "environment", "resource", "connection", "provider", "model"
};


typedef struct {
    ngx_atomic_t                 ready;     /* labels written */
    ngx_uint_t                   hash;
    ngx_http_vmx_label_t         label[NGX_HTTP_VMX_LABELS];

    ngx_atomic_t                 requests[6];   /* by status class, 0: other */
    ngx_atomic_t                 prompt_tokens;
    ngx_atomic_t                 completion_tokens;
    ngx_atomic_t                 attempts;
    ngx_atomic_t                 fallbacks;
    ngx_atomic_t                 denials;
    ngx_atomic_t                 stream_errors; /* after the first byte */
    ngx_atomic_t                 unpriced;      /* outside the budgets */
    ngx_atomic_t                 buckets[NGX_HTTP_VMX_BUCKETS];
    ngx_atomic_t                 duration_usec;
    ngx_atomic_t                 count;
} ngx_http_vmx_series_t;


/* attempts of a connection and model in one minute: errorRate(), latency */

typedef struct {
    ngx_atomic_t                 minute;        /* unix time / 60 */
    ngx_atomic_t                 attempts;
    ngx_atomic_t                 duration_usec; /* of the attempts */
    ngx_atomic_t                 failures;
    ngx_atomic_t                 code[NGX_HTTP_VMX_HEALTH_CODES];
    ngx_atomic_t                 count[NGX_HTTP_VMX_HEALTH_CODES];
} ngx_http_vmx_minute_t;


typedef struct {
    ngx_atomic_t                 ready;
    u_char                       connection_id[36];
    ngx_http_vmx_label_t         model;
    ngx_http_vmx_minute_t        minutes[NGX_HTTP_VMX_HEALTH_MINUTES];
} ngx_http_vmx_health_t;


static void ngx_http_vmx_health_sum(ngx_http_vmx_health_t *h,
    ngx_uint_t minutes, ngx_int_t status, uint64_t *attempts,
    uint64_t *failed, uint64_t *usec);
static ngx_http_vmx_health_t *ngx_http_vmx_health(
    ngx_http_vmx_table_zone_t *tz, ngx_http_vmx_target_t *target,
    ngx_log_t *log);
static ngx_http_vmx_series_t *ngx_http_vmx_series(ngx_http_request_t *r,
    ngx_http_vmx_main_conf_t *mcf, ngx_str_t *labels);
static void ngx_http_vmx_series_take(ngx_http_vmx_table_zone_t *tz,
    ngx_http_vmx_series_t *s, ngx_uint_t hash, ngx_str_t *labels);
static u_char *ngx_http_vmx_series_labels(u_char *p, u_char *last,
    ngx_http_vmx_series_t *s);
static u_char *ngx_http_vmx_escape_label(u_char *p, u_char *last,
    ngx_http_vmx_label_t *label);


/* the series, one more for the overflow; the health of the models */

ngx_int_t
ngx_http_vmx_stats_add_zones(ngx_conf_t *cf, ngx_http_vmx_main_conf_t *mcf)
{
    if (ngx_http_vmx_table_add(cf, &mcf->stats_zone, "vmx_stats",
                               "vmx_stats_zone", NGX_HTTP_VMX_STATS_ZONE,
                               sizeof(ngx_http_vmx_series_t), 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_vmx_table_add(cf, &mcf->health_zone, "vmx_health",
                                  "vmx_health_zone", NGX_HTTP_VMX_HEALTH_ZONE,
                                  sizeof(ngx_http_vmx_health_t), 0);
}


/* an attempt's outcome: status 0 for success, else its HTTP status or -1 */

void
ngx_http_vmx_health_record(ngx_http_request_t *r,
    ngx_http_vmx_target_t *target, ngx_int_t status, uint64_t usec)
{
    ngx_uint_t                 c, now;
    ngx_http_vmx_health_t     *h;
    ngx_http_vmx_minute_t     *m;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->health_zone.table == NULL) {
        return;
    }

    h = ngx_http_vmx_health(&mcf->health_zone, target, r->connection->log);
    if (h == NULL) {
        return;
    }

    now = ngx_time() / 60;
    m = &h->minutes[now % NGX_HTTP_VMX_HEALTH_MINUTES];

    if (m->minute != now) {
        /* a new minute takes the bucket of an hour ago */
        ngx_shmtx_lock(&mcf->health_zone.shpool->mutex);

        if (m->minute != now) {
            ngx_memzero((void *) &m->attempts,
                        sizeof(ngx_http_vmx_minute_t)
                        - offsetof(ngx_http_vmx_minute_t, attempts));
            ngx_memory_barrier();
            m->minute = now;
        }

        ngx_shmtx_unlock(&mcf->health_zone.shpool->mutex);
    }

    (void) ngx_atomic_fetch_add(&m->attempts, 1);
    (void) ngx_atomic_fetch_add(&m->duration_usec, usec);

    if (status == 0) {
        return;
    }

    (void) ngx_atomic_fetch_add(&m->failures, 1);

    /* a minute counts its first few distinct statuses */
    for (c = 0; c < NGX_HTTP_VMX_HEALTH_CODES; c++) {
        if (m->code[c] == 0) {
            (void) ngx_atomic_cmp_set(&m->code[c], 0, status);
        }

        if (m->code[c] == (ngx_atomic_uint_t) status) {
            (void) ngx_atomic_fetch_add(&m->count[c], 1);
            return;
        }
    }
}


/*
 * errorRate(minutes, status): the percentage of the attempts of a
 * connection and model in the last minutes (1 to 60) that failed, or that
 * failed with that status when status > 0.
 */

double
ngx_http_vmx_error_rate(ngx_http_request_t *r, ngx_http_vmx_target_t *target,
    ngx_uint_t minutes, ngx_int_t status)
{
    uint64_t                   attempts, failed, usec;
    ngx_http_vmx_health_t     *h;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->health_zone.table == NULL) {
        return 0;
    }

    h = ngx_http_vmx_health(&mcf->health_zone, target, NULL);
    if (h == NULL) {
        return 0;
    }

    ngx_http_vmx_health_sum(h, minutes, status, &attempts, &failed, &usec);

    return attempts ? 100.0 * failed / attempts : 0;
}


/* the attempts, the failed ones (of a status when > 0) and their time */

static void
ngx_http_vmx_health_sum(ngx_http_vmx_health_t *h, ngx_uint_t minutes,
    ngx_int_t status, uint64_t *attempts, uint64_t *failed, uint64_t *usec)
{
    ngx_uint_t              i, c, now;
    ngx_http_vmx_minute_t  *m;

    minutes = ngx_min(ngx_max(minutes, 1), NGX_HTTP_VMX_HEALTH_MINUTES);
    now = ngx_time() / 60;

    *attempts = 0;
    *failed = 0;
    *usec = 0;

    for (i = 0; i < minutes; i++) {
        m = &h->minutes[(now - i) % NGX_HTTP_VMX_HEALTH_MINUTES];

        if (m->minute != now - i) {
            continue;
        }

        *attempts += m->attempts;
        *usec += m->duration_usec;

        if (status <= 0) {
            *failed += m->failures;
            continue;
        }

        for (c = 0; c < NGX_HTTP_VMX_HEALTH_CODES; c++) {
            if (m->code[c] == (ngx_atomic_uint_t) status) {
                *failed += m->count[c];
            }
        }
    }
}


/*
 * The health of a connection and model; created when log is given (an
 * attempt to record), else only found.  A full table counts nothing more
 * for new models: their errorRate() reads 0 and they have no latency.
 */

static ngx_http_vmx_health_t *
ngx_http_vmx_health(ngx_http_vmx_table_zone_t *tz,
    ngx_http_vmx_target_t *target, ngx_log_t *log)
{
    ngx_uint_t              i, n, mask;
    ngx_str_t              *model, *id;
    ngx_http_vmx_health_t  *table, *h;

    id = &target->connection->id;
    model = &target->model;

    if (id->len != 36 || model->len > NGX_HTTP_VMX_LABEL_MAX) {
        return NULL;
    }

    table = tz->table->slots;
    mask = tz->table->nslots - 1;

    i = ngx_murmur_hash2(id->data, 36) ^ ngx_murmur_hash2(model->data,
                                                          model->len);

    for (n = 0; n <= mask; n++, i++) {
        h = &table[i & mask];

        if (!h->ready) {
            if (log == NULL) {
                return NULL;
            }

            ngx_shmtx_lock(&tz->shpool->mutex);

            if (!h->ready) {
                ngx_memcpy(h->connection_id, id->data, 36);
                ngx_memcpy(h->model.data, model->data, model->len);
                h->model.len = model->len;
                tz->table->used++;
                ngx_memory_barrier();
                h->ready = 1;
            }

            ngx_shmtx_unlock(&tz->shpool->mutex);
        }

        if (h->model.len == model->len
            && ngx_memcmp(h->connection_id, id->data, 36) == 0
            && ngx_memcmp(h->model.data, model->data, model->len) == 0)
        {
            return h;
        }
    }

    if (log) {
        ngx_http_vmx_table_full(tz, log, "the attempts of other models are "
                                         "not counted (their errorRate() "
                                         "reads 0)");
    }

    return NULL;
}


/* the log phase: the request's numbers join its series */

void
ngx_http_vmx_stats_record(ngx_http_request_t *r, ngx_http_vmx_ctx_t *ctx)
{
    uint64_t                   usec;
    ngx_str_t                  labels[NGX_HTTP_VMX_LABELS];
    ngx_uint_t                 i, status;
    ngx_http_vmx_series_t     *s;
    ngx_http_vmx_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->stats_zone.table == NULL) {
        return;
    }

    ngx_memzero(labels, sizeof(labels));

    if (ctx->request.api_key) {
        labels[NGX_HTTP_VMX_LABEL_WORKSPACE]
            = ctx->request.api_key->env->workspace_id;
        labels[NGX_HTTP_VMX_LABEL_ENVIRONMENT] = ctx->request.api_key->env->id;
    }

    if (ctx->request.resource) {
        labels[NGX_HTTP_VMX_LABEL_RESOURCE] = ctx->request.resource->name;
    }

    if (ctx->attempt.target) {
        labels[NGX_HTTP_VMX_LABEL_CONNECTION]
            = ctx->attempt.target->connection->id;
        labels[NGX_HTTP_VMX_LABEL_PROVIDER] = ctx->attempt.target->provider;
        labels[NGX_HTTP_VMX_LABEL_MODEL] = ctx->attempt.target->model;
    }

    s = ngx_http_vmx_series(r, mcf, labels);
    if (s == NULL) {
        return;
    }

    status = r->headers_out.status / 100;
    (void) ngx_atomic_fetch_add(&s->requests[status <= 5 ? status : 0], 1);

    if (ctx->attempt.usage.prompt_tokens > 0) {
        (void) ngx_atomic_fetch_add(&s->prompt_tokens,
                                    ctx->attempt.usage.prompt_tokens);
    }

    if (ctx->attempt.usage.completion_tokens > 0) {
        (void) ngx_atomic_fetch_add(&s->completion_tokens,
                                    ctx->attempt.usage.completion_tokens);
    }

    (void) ngx_atomic_fetch_add(&s->attempts, ctx->plan.nattempts);
    (void) ngx_atomic_fetch_add(&s->fallbacks,
                                ctx->plan.nattempts
                                ? ctx->plan.nattempts - 1 : 0);

    if (r->headers_out.status == NGX_HTTP_TOO_MANY_REQUESTS
        && ctx->attempt.own_response && ctx->plan.nattempts == 0)
    {
        (void) ngx_atomic_fetch_add(&s->denials, 1);
    }

    if (ctx->response.stream_failed && r->headers_out.status < 400) {
        (void) ngx_atomic_fetch_add(&s->stream_errors, 1);
    }

    if (ctx->admission.unpriced) {
        (void) ngx_atomic_fetch_add(&s->unpriced, 1);
    }

    usec = ngx_http_vmx_usec() - ctx->request.start_usec;

    for (i = 0; i < NGX_HTTP_VMX_BUCKETS; i++) {
        if (usec <= ngx_http_vmx_buckets[i]) {
            (void) ngx_atomic_fetch_add(&s->buckets[i], 1);
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&s->duration_usec, usec);
    (void) ngx_atomic_fetch_add(&s->count, 1);
}


/* the series of these labels: found without a lock, created under it */

static ngx_http_vmx_series_t *
ngx_http_vmx_series(ngx_http_request_t *r, ngx_http_vmx_main_conf_t *mcf,
    ngx_str_t *labels)
{
    ngx_uint_t              hash, i, n, l, mask;
    ngx_http_vmx_series_t  *table, *s;

    static ngx_str_t  overflow[NGX_HTTP_VMX_LABELS] = {
        ngx_string("_overflow"), ngx_string("_overflow"),
        ngx_string("_overflow"), ngx_string("_overflow"),
        ngx_string("_overflow"), ngx_string("_overflow")
    };

    hash = 0;

    for (l = 0; l < NGX_HTTP_VMX_LABELS; l++) {
        if (labels[l].len > NGX_HTTP_VMX_LABEL_MAX) {
            labels[l].len = NGX_HTTP_VMX_LABEL_MAX;
        }

        hash = hash * 31 + ngx_murmur_hash2(labels[l].data, labels[l].len);
    }

    table = mcf->stats_zone.table->slots;
    mask = mcf->stats_zone.table->nslots - 1;

    for (n = 0, i = hash; n <= mask; n++, i++) {
        s = &table[i & mask];

        if (!s->ready) {
            ngx_http_vmx_series_take(&mcf->stats_zone, s, hash, labels);
        }

        if (s->hash != hash) {
            continue;
        }

        for (l = 0; l < NGX_HTTP_VMX_LABELS; l++) {
            if (s->label[l].len != labels[l].len
                || ngx_memcmp(s->label[l].data, labels[l].data, labels[l].len)
                   != 0)
            {
                break;
            }
        }

        if (l == NGX_HTTP_VMX_LABELS) {
            return s;
        }
    }

    ngx_http_vmx_table_full(&mcf->stats_zone, r->connection->log,
                            "the requests of new series are counted in the "
                            "series labelled \"_overflow\"");

    /* the slot after the table */
    s = &table[mask + 1];

    if (!s->ready) {
        ngx_http_vmx_series_take(&mcf->stats_zone, s, 0, overflow);
    }

    return s;
}


/* a free slot becomes the series of these labels, unless a worker was first */

static void
ngx_http_vmx_series_take(ngx_http_vmx_table_zone_t *tz,
    ngx_http_vmx_series_t *s, ngx_uint_t hash, ngx_str_t *labels)
{
    ngx_uint_t  l;

    ngx_shmtx_lock(&tz->shpool->mutex);

    if (!s->ready) {
        s->hash = hash;

        for (l = 0; l < NGX_HTTP_VMX_LABELS; l++) {
            ngx_memcpy(s->label[l].data, labels[l].data, labels[l].len);
            s->label[l].len = labels[l].len;
        }

        tz->table->used++;
        ngx_memory_barrier();
        s->ready = 1;
    }

    ngx_shmtx_unlock(&tz->shpool->mutex);
}


/* the exposition: a chain of buffers, one function a metric family */

#define NGX_HTTP_VMX_OUT_CHUNK   65536

/* the most one sample writes: the labels of a series, each escaped at most
   2 to 1, the metric's name and its value (the spool's families, about 900
   bytes, fit too) */
#define NGX_HTTP_VMX_OUT_PIECE                                                \
    (2 * NGX_HTTP_VMX_LABELS * NGX_HTTP_VMX_LABEL_MAX + 1024)


typedef struct {
    ngx_http_request_t          *request;
    ngx_chain_t                 *first;
    ngx_chain_t                **last;
    ngx_buf_t                   *buf;
    ngx_flag_t                   failed;
} ngx_http_vmx_out_t;


/* the counters of a series that are one sample each */

typedef struct {
    const char                  *name;
    const char                  *help;
    size_t                       offset;    /* of the ngx_atomic_t */
} ngx_http_vmx_counter_t;


static ngx_http_vmx_counter_t  ngx_http_vmx_counters[] = {

    { "vmx_stream_errors_total",
      "Streams that failed after the client's first byte (an error event, a "
      "broken frame, a cut connection).",
      offsetof(ngx_http_vmx_series_t, stream_errors) },

    { "vmx_upstream_attempts_total", "Provider attempts.",
      offsetof(ngx_http_vmx_series_t, attempts) },

    { "vmx_fallbacks_total", "Attempts that fell back to the next model.",
      offsetof(ngx_http_vmx_series_t, fallbacks) },

    { "vmx_limit_denials_total", "Requests refused by a capacity limit.",
      offsetof(ngx_http_vmx_series_t, denials) },

    { "vmx_budget_unpriced_requests_total",
      "Requests a budget applied to whose model had no price: the budgets "
      "did not count them.",
      offsetof(ngx_http_vmx_series_t, unpriced) },
};


/* room for one piece at the end of the chain; NULL when out of memory */

static ngx_buf_t *
ngx_http_vmx_out_room(ngx_http_vmx_out_t *out)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = out->buf;

    if (out->failed) {
        return NULL;
    }

    if (b != NULL && (size_t) (b->end - b->last) >= NGX_HTTP_VMX_OUT_PIECE) {
        return b;
    }

    b = ngx_create_temp_buf(out->request->pool, NGX_HTTP_VMX_OUT_CHUNK);
    cl = ngx_alloc_chain_link(out->request->pool);

    if (b == NULL || cl == NULL) {
        out->failed = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;
    *out->last = cl;
    out->last = &cl->next;
    out->buf = b;

    return b;
}


static void
ngx_http_vmx_out_printf(ngx_http_vmx_out_t *out, const char *fmt, ...)
{
    va_list     args;
    ngx_buf_t  *b;

    b = ngx_http_vmx_out_room(out);
    if (b == NULL) {
        return;
    }

    va_start(args, fmt);
    b->last = ngx_vslprintf(b->last, b->end, fmt, args);
    va_end(args);
}


static void
ngx_http_vmx_out_family(ngx_http_vmx_out_t *out, const char *name,
    const char *type, const char *help)
{
    ngx_http_vmx_out_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
                            name, help, name, type);
}


/* name{the series' labels, then fmt's text: the extra labels, "}" and the
   value */

static void
ngx_http_vmx_out_sample(ngx_http_vmx_out_t *out, const char *name,
    ngx_http_vmx_series_t *s, const char *fmt, ...)
{
    va_list     args;
    ngx_buf_t  *b;

    b = ngx_http_vmx_out_room(out);
    if (b == NULL) {
        return;
    }

    b->last = ngx_slprintf(b->last, b->end, "%s", name);
    b->last = ngx_http_vmx_series_labels(b->last, b->end, s);

    va_start(args, fmt);
    b->last = ngx_vslprintf(b->last, b->end, fmt, args);
    va_end(args);
}


static void
ngx_http_vmx_metric_requests(ngx_http_vmx_out_t *out,
    ngx_http_vmx_table_t *table)
{
    ngx_uint_t              i, c;
    ngx_http_vmx_series_t  *s;

    static const char  *classes[6] = { "other", "1xx", "2xx", "3xx", "4xx",
                                       "5xx" };

    ngx_http_vmx_out_family(out, "vmx_requests_total", "counter",
                            "Gateway requests, by status class.");

    for (i = 0; i <= table->nslots; i++) {
        s = (ngx_http_vmx_series_t *) table->slots + i;

        for (c = 0; s->ready && c < 6; c++) {
            if (s->requests[c]) {
                ngx_http_vmx_out_sample(out, "vmx_requests_total", s,
                                        ",code=\"%s\"} %uA\n", classes[c],
                                        s->requests[c]);
            }
        }
    }

    ngx_http_vmx_out_family(out, "vmx_request_errors_total", "counter",
                            "Gateway requests answered with a 4xx or 5xx, "
                            "or whose stream failed after its first byte.");

    for (i = 0; i <= table->nslots; i++) {
        s = (ngx_http_vmx_series_t *) table->slots + i;

        if (s->ready) {
            ngx_http_vmx_out_sample(out, "vmx_request_errors_total", s,
                                    "} %uA\n", s->requests[4] + s->requests[5]
                                               + s->stream_errors);
        }
    }
}


static void
ngx_http_vmx_metric_tokens(ngx_http_vmx_out_t *out,
    ngx_http_vmx_table_t *table)
{
    ngx_uint_t              i;
    ngx_http_vmx_series_t  *s;

    ngx_http_vmx_out_family(out, "vmx_tokens_total", "counter",
                            "Tokens the providers reported, by type.");

    for (i = 0; i <= table->nslots; i++) {
        s = (ngx_http_vmx_series_t *) table->slots + i;

        if (s->ready) {
            ngx_http_vmx_out_sample(out, "vmx_tokens_total", s,
                                    ",type=\"prompt\"} %uA\n",
                                    s->prompt_tokens);
            ngx_http_vmx_out_sample(out, "vmx_tokens_total", s,
                                    ",type=\"completion\"} %uA\n",
                                    s->completion_tokens);
        }
    }
}


static void
ngx_http_vmx_metric_counter(ngx_http_vmx_out_t *out,
    ngx_http_vmx_table_t *table, ngx_http_vmx_counter_t *counter)
{
    ngx_uint_t              i;
    ngx_atomic_t           *value;
    ngx_http_vmx_series_t  *s;

    ngx_http_vmx_out_family(out, counter->name, "counter", counter->help);

    for (i = 0; i <= table->nslots; i++) {
        s = (ngx_http_vmx_series_t *) table->slots + i;

        if (s->ready) {
            value = (ngx_atomic_t *) ((u_char *) s + counter->offset);
            ngx_http_vmx_out_sample(out, counter->name, s, "} %uA\n", *value);
        }
    }
}


static void
ngx_http_vmx_metric_duration(ngx_http_vmx_out_t *out,
    ngx_http_vmx_table_t *table)
{
    uint64_t                cumulative;
    ngx_uint_t              i, b;
    ngx_http_vmx_series_t  *s;

    ngx_http_vmx_out_family(out, "vmx_request_duration_seconds", "histogram",
                            "Gateway request duration.");

    for (i = 0; i <= table->nslots; i++) {
        s = (ngx_http_vmx_series_t *) table->slots + i;

        if (!s->ready) {
            continue;
        }

        cumulative = 0;

        for (b = 0; b < NGX_HTTP_VMX_BUCKETS; b++) {
            cumulative += s->buckets[b];
            ngx_http_vmx_out_sample(out, "vmx_request_duration_seconds_bucket",
                                    s, ",le=\"%s\"} %uL\n",
                                    ngx_http_vmx_bucket_le[b], cumulative);
        }

        ngx_http_vmx_out_sample(out, "vmx_request_duration_seconds_bucket", s,
                                ",le=\"+Inf\"} %uA\n", s->count);
        ngx_http_vmx_out_sample(out, "vmx_request_duration_seconds_sum", s,
                                "} %uA.%06uA\n", s->duration_usec / 1000000,
                                s->duration_usec % 1000000);
        ngx_http_vmx_out_sample(out, "vmx_request_duration_seconds_count", s,
                                "} %uA\n", s->count);
    }
}


/* the sliding windows that routing's errorRate() reads */

static void
ngx_http_vmx_metric_windows(ngx_http_vmx_out_t *out,
    ngx_http_vmx_table_t *table, ngx_flag_t latency)
{
    uint64_t                 attempts, failed, usec;
    ngx_buf_t               *b;
    ngx_uint_t               i, w;
    const char              *name;
    ngx_http_vmx_health_t   *h;

    static ngx_uint_t  windows[2] = { 5, 60 };

    name = latency ? "vmx_provider_latency_seconds"
                   : "vmx_provider_error_rate_percent";

    ngx_http_vmx_out_family(out, name, "gauge",
                            latency ? "Mean attempt duration of a connection "
                                      "and model over the last minutes."
                                    : "Failed attempts of a connection and "
                                      "model over the last minutes.");

    for (i = 0; i < table->nslots; i++) {
        h = (ngx_http_vmx_health_t *) table->slots + i;

        for (w = 0; h->ready && w < 2; w++) {
            ngx_http_vmx_health_sum(h, windows[w], 0, &attempts, &failed,
                                    &usec);
            if (attempts == 0) {
                continue;
            }

            b = ngx_http_vmx_out_room(out);
            if (b == NULL) {
                return;
            }

            b->last = ngx_slprintf(b->last, b->end,
                                   "%s{connection=\"%*s\",model=\"",
                                   name, (size_t) 36, h->connection_id);
            b->last = ngx_http_vmx_escape_label(b->last, b->end, &h->model);
            b->last = ngx_slprintf(b->last, b->end,
                                   "\",window=\"%uim\"} %.6f\n", windows[w],
                                   latency
                                   ? (double) usec / attempts / 1000000
                                   : 100.0 * failed / attempts);
        }
    }
}


static void
ngx_http_vmx_metric_node(ngx_http_vmx_out_t *out,
    ngx_http_vmx_main_conf_t *mcf)
{
    ngx_buf_t  *b;
    ngx_str_t  *master;

    ngx_http_vmx_out_family(out, "vmx_config_version", "gauge",
                            "Version of the configuration this data plane "
                            "runs.");
    ngx_http_vmx_out_printf(out, "vmx_config_version %uL\n",
                            ngx_http_vmx_config_running(mcf));

    ngx_http_vmx_out_family(out, "vmx_config_refused_total", "counter",
                            "Snapshots refused whole (not one, or of a format "
                            "not read); the running one stays.");
    ngx_http_vmx_out_printf(out, "vmx_config_refused_total %ui\n",
                            mcf->sh->refused);

    ngx_http_vmx_out_family(out, "vmx_redis_up", "gauge",
                            "1 when the cluster counters' Redis answers; 0 "
                            "also when none is configured.");
    ngx_http_vmx_out_printf(out, "vmx_redis_up %ui\n",
                            ngx_http_vmx_redis_up());

    master = ngx_http_vmx_redis_master();

    if (master) {
        ngx_http_vmx_out_family(out, "vmx_redis_master", "gauge",
                                "The Redis master the sentinels named "
                                "(vmx_redis sentinel=); 1 while linked.");
        ngx_http_vmx_out_printf(out, "vmx_redis_master{address=\"%V\"} %ui\n",
                                master, ngx_http_vmx_redis_up());
    }

    b = ngx_http_vmx_out_room(out);
    if (b != NULL) {
        b->last = ngx_http_vmx_spool_metrics(out->request, b->last, b->end);
    }
}


/* the tables' zones: their slots, the ones taken, lookups that found none */

static void
ngx_http_vmx_metric_zones(ngx_http_vmx_out_t *out,
    ngx_http_vmx_main_conf_t *mcf)
{
    ngx_uint_t                  i, f;
    ngx_http_vmx_table_zone_t  *tz[4];

    static const char  *families[3][2] = {
        { "vmx_zone_slots", "Slots of a zone's table." },
        { "vmx_zone_slots_used", "Slots of a zone's table ever taken." },
        { "vmx_zone_full_total",
          "Lookups that found the zone's table full (see the zone's "
          "directive for what happens then)." },
    };

    tz[0] = &mcf->stats_zone;
    tz[1] = &mcf->health_zone;
    tz[2] = &mcf->capacity_zone;
    tz[3] = &mcf->pools_zone;

    for (f = 0; f < 3; f++) {
        ngx_http_vmx_out_family(out, families[f][0],
                                f == 2 ? "counter" : "gauge",
                                families[f][1]);

        for (i = 0; i < 4; i++) {
            if (tz[i]->table == NULL) {
                continue;
            }

            ngx_http_vmx_out_printf(out, "%s{zone=\"%s\"} %uA\n",
                                    families[f][0], tz[i]->name,
                                    f == 0 ? tz[i]->table->nslots
                                    : f == 1 ? tz[i]->table->used
                                    : tz[i]->table->full);
        }
    }
}


ngx_int_t
ngx_http_vmx_status_handler(ngx_http_request_t *r)
{
    off_t                      size;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_chain_t               *cl;
    ngx_http_vmx_out_t         out;
    ngx_http_vmx_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_vmx_module);

    if (mcf->sh == NULL || mcf->stats_zone.table == NULL
        || mcf->health_zone.table == NULL)
    {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_memzero(&out, sizeof(ngx_http_vmx_out_t));
    out.request = r;
    out.last = &out.first;

    ngx_http_vmx_metric_requests(&out, mcf->stats_zone.table);
    ngx_http_vmx_metric_tokens(&out, mcf->stats_zone.table);

    for (i = 0; i < sizeof(ngx_http_vmx_counters)
                    / sizeof(ngx_http_vmx_counter_t); i++)
    {
        ngx_http_vmx_metric_counter(&out, mcf->stats_zone.table,
                                    &ngx_http_vmx_counters[i]);
    }

    ngx_http_vmx_metric_duration(&out, mcf->stats_zone.table);
    ngx_http_vmx_metric_windows(&out, mcf->health_zone.table, 0);
    ngx_http_vmx_metric_windows(&out, mcf->health_zone.table, 1);
    ngx_http_vmx_metric_node(&out, mcf);
    ngx_http_vmx_metric_zones(&out, mcf);

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = 0;

    for (cl = out.first; cl; cl = cl->next) {
        size += cl->buf->last - cl->buf->pos;
    }

    out.buf->last_buf = (r == r->main) ? 1 : 0;
    out.buf->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = size;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out.first);
}


/* {workspace="..",...,model=".." without the closing brace */

static u_char *
ngx_http_vmx_series_labels(u_char *p, u_char *last, ngx_http_vmx_series_t *s)
{
    ngx_uint_t  l;

    for (l = 0; l < NGX_HTTP_VMX_LABELS; l++) {
        p = ngx_slprintf(p, last, "%s%s=\"", l ? "," : "{",
                         ngx_http_vmx_label_names[l]);
        p = ngx_http_vmx_escape_label(p, last, &s->label[l]);
        p = ngx_slprintf(p, last, "\"");
    }

    return p;
}


/* a label's value: the exposition format escapes backslashes, quotes and
   line feeds */

static u_char *
ngx_http_vmx_escape_label(u_char *p, u_char *last, ngx_http_vmx_label_t *label)
{
    u_char  *v, *end;

    end = label->data + label->len;

    for (v = label->data; v < end && last - p >= 2; v++) {
        if (*v == '\\' || *v == '"') {
            *p++ = '\\';
            *p++ = *v;

        } else if (*v == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = *v;
        }
    }

    return p;
}
