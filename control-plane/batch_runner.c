/*
 * batch_runner: see batch_runner.h.  A transfer is one request in flight:
 * an item sent to a data plane, or a callback delivered.  The database
 * holds every state that must outlive the process (claims, tries, the next
 * callback time); the runner keeps only its transfers and the sliding
 * minutes of the budgets.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>

#include "batch.h"
#include "batch_pace.h"
#include "batch_runner.h"
#include "crypto.h"
#include "db.h"
#include "discovery.h"
#include "httpc.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "secrets.h"
#include "worker.h"

#define ANSWER_MAX              (8 * 1024 * 1024)  /* a gateway's answer kept */
#define CALLBACK_ANSWER_MAX     4096               /* a receiver's answer read */
#define CALLBACK_TIMEOUT_MS     10000L
#define CALLBACK_BACKOFF_CAP_MS 300000L            /* 5 min */
#define CALLBACK_LEASE_MS       "15000"            /* a delivery in flight is not due: longer
                                                      than CALLBACK_TIMEOUT_MS */
#define CALLBACKS_MAX           8                  /* deliveries at once */
#define OPEN_BATCHES_MAX        "64"               /* batches a claim takes turns between */
#define SEND_TRIES              3                  /* of a transport error or a 5xx */
#define CAPACITY_TRIES          30                 /* sends of an item, 429s included */
#define RETRY_AFTER_MAX         300                /* seconds a 429 may make an item wait */
#define RETRY_BACKOFF_MS        1000L
#define RETRY_BACKOFF_CAP_MS    30000L
#define BUDGETS_MAX             256                /* (connection, model) pairs kept */
#define MODEL_MAX               256
#define POLL_MS                 200                /* a round's wait for answers */
#define IDLE_MS                 1000               /* between rounds with nothing to run */
#define SWEEP_MS                1000               /* between two sweeps of the batches */
#define SIGNATURE_HEX_LEN       (crypto_auth_hmacsha256_BYTES * 2)

#define STATUS_OK(s)  ((s) >= 200 && (s) < 300)

typedef enum {
    TRANSFER_ITEM = 0,          /* the first runner.concurrency transfers */
    TRANSFER_CALLBACK           /* the CALLBACKS_MAX others: of an item, or of a batch (idx -1) */
} transfer_kind_e;

typedef struct {
    char          connection[UUID_LEN + 1];
    char          model[MODEL_MAX + 1];
    long long     used_at;                  /* unix seconds of its last item */
    batch_pace_t  pace;
} budget_t;

typedef struct {
    bool                busy;
    transfer_kind_e     kind;
    char                batch_id[UUID_LEN + 1];
    int                 idx;                /* the item's; -1 for a batch callback */
    int                 tries;              /* made before this one */
    CURL               *curl;               /* owned, reused */
    struct curl_slist  *headers;            /* owned */
    char               *body;               /* owned */
    httpc_answer_t      answer;             /* owned, reused */
    char                error[CURL_ERROR_SIZE];
    discovery_url_t     url;                /* an item's data plane, for the log */
} transfer_t;

/* one claimed item, as the claim reads it */
typedef struct {
    const char  *batch_id, *workspace_id, *environment_id, *pool, *key_hash, *body;
    int          idx, tries;
    long long    tokens;
    budget_t    *budget;                    /* NULL: its capacity is unknown */
} item_t;

static struct {
    worker_t     worker;
    int          concurrency;
    double       share;
    int          grace;                     /* seconds */
    long         item_timeout_ms;
    int          callback_tries;
    long         callback_backoff_ms;
    char         instance[UUID_LEN + 1];    /* batch_items.claimed_by of this run */
    char        *token;                     /* owned: the data planes' token, the signing key */
    CURLM       *multi;                     /* owned */
    transfer_t  *transfers;                 /* owned: concurrency + CALLBACKS_MAX */
    size_t       ntransfers;
    int          items_running, callbacks_running;
    long long    sweep_at;                  /* worker_clock_ms() of the next sweep */
    size_t       next_plane;                /* round robin over the data planes */
    budget_t     budgets[BUDGETS_MAX];
    size_t       nbudgets;
} runner = { .worker = WORKER_INIT };


/* the callback columns of an ended item or batch, of a CALLBACK batch (alias b) */
#define CALLBACK_DUE(b) \
    " callback_status = CASE WHEN " b ".mode = 'CALLBACK' THEN 'PENDING' END," \
    " callback_next_at = CASE WHEN " b ".mode = 'CALLBACK' THEN now() END"

/* fails the open batches of a disabled or expired key, cancelling their PENDING items */
#define FAIL_KEYS_SQL \
    "WITH failing AS (" \
    "  SELECT b.id FROM batches b JOIN api_keys k ON k.id = b.api_key_id" \
    "   WHERE b.status IN ('QUEUED', 'RUNNING')" \
    "     AND (NOT k.enabled OR k.expires_at <= now())" \
    "   FOR UPDATE OF b" \
    "), item AS (" \
    "  UPDATE batch_items i SET status = 'CANCELLED', finished_at = now()," \
    CALLBACK_DUE("b") \
    "    FROM batches b" \
    "   WHERE b.id = i.batch_id AND i.batch_id IN (SELECT id FROM failing)" \
    "     AND i.status = 'PENDING'" \
    "  RETURNING i.batch_id" \
    "), failed AS (" \
    "  UPDATE batches b SET status = 'FAILED', completed_at = now()," \
    "         error = jsonb_build_object('code', 'api_key_unavailable', 'message'," \
    "             'the API key of the batch is disabled or expired')," \
    "         cancelled = b.cancelled + (SELECT count(*) FROM item WHERE item.batch_id = b.id)," \
    CALLBACK_DUE("b") \
    "   WHERE b.id IN (SELECT id FROM failing)" \
    "  RETURNING b.id" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text), id," \
    "       (SELECT count(*) FROM item WHERE item.batch_id = failed.id)" \
    "  FROM failed"

/* the PENDING items of cancelling batches (one an item went back to after the cancel) */
#define CANCEL_ITEMS_SQL \
    "WITH item AS (" \
    "  UPDATE batch_items i SET status = 'CANCELLED', finished_at = now()," \
    CALLBACK_DUE("b") \
    "    FROM batches b" \
    "   WHERE b.id = i.batch_id AND b.status = 'CANCELLING' AND i.status = 'PENDING'" \
    "  RETURNING i.batch_id" \
    "), counted AS (" \
    "  UPDATE batches b SET cancelled = b.cancelled + n.n" \
    "    FROM (SELECT batch_id, count(*) AS n FROM item GROUP BY batch_id) n" \
    "   WHERE b.id = n.batch_id" \
    "  RETURNING b.id, n.n" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text), n FROM counted"

/* the batches with no item left to run end */
#define END_BATCHES_SQL \
    "WITH ended AS (" \
    "  UPDATE batches b" \
    "     SET status = CASE b.status WHEN 'CANCELLING' THEN 'CANCELLED' ELSE 'COMPLETED' END," \
    "         completed_at = now()," \
    "         cancelled_at = CASE b.status WHEN 'CANCELLING' THEN coalesce(b.cancelled_at, now())" \
    "                        ELSE b.cancelled_at END," \
    CALLBACK_DUE("b") \
    "   WHERE b.status IN ('RUNNING', 'CANCELLING')" \
    "     AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id" \
    "                        AND i.status IN ('PENDING', 'RUNNING'))" \
    "  RETURNING b.id, b.status, b.succeeded, b.failed, b.cancelled" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text), id, status, succeeded, failed, cancelled" \
    "  FROM ended"

/*
 * $1 grace seconds, $2 this run's instance: the items another claim left
 * RUNNING too long end as their audit record tells (2xx: SUCCEEDED with
 * the answer; another final status: FAILED), or go back to PENDING when
 * the data plane never answered them, answered 429 or 5xx, or ended them
 * 499 (their runner went away before an attempt started).  A record holds
 * the answer only whole; payload_truncated may name the request alone.
 */
#define RESUME_SQL \
    "WITH stale AS (" \
    "  SELECT batch_id, idx FROM batch_items" \
    "   WHERE status = 'RUNNING' AND claimed_at < now() - $1::integer * interval '1 second'" \
    "     AND claimed_by IS DISTINCT FROM $2" \
    "   LIMIT 1000 FOR UPDATE SKIP LOCKED" \
    "), found AS (" \
    "  SELECT s.batch_id, s.idx, a.status_code, a.request_id, a.error_code, a.error_message," \
    "         CASE WHEN a.response_format = 'json' THEN a.response::jsonb END AS response," \
    "         CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 'SUCCEEDED'" \
    "              WHEN a.status_code IS NULL OR a.status_code IN (429, 499)" \
    "                   OR a.status_code >= 500" \
    "              THEN 'PENDING' ELSE 'FAILED' END AS outcome" \
    "    FROM stale s LEFT JOIN LATERAL (" \
    "      SELECT * FROM audit_records r WHERE r.batch_id = s.batch_id AND r.batch_item = s.idx" \
    "       ORDER BY r.timestamp DESC LIMIT 1) a ON true" \
    "), item AS (" \
    "  UPDATE batch_items i SET status = f.outcome, claimed_by = NULL, claimed_at = NULL," \
    "         tries = i.tries + (f.status_code IS NOT NULL)::integer," \
    "         status_code = f.status_code, request_id = f.request_id," \
    "         response = CASE WHEN f.outcome = 'SUCCEEDED' THEN f.response END," \
    "         error = CASE WHEN f.outcome = 'FAILED' THEN jsonb_build_object('code', f.error_code," \
    "                     'message', f.error_message, 'type', NULL) END," \
    "         finished_at = CASE WHEN f.outcome <> 'PENDING' THEN now() END," \
    "         callback_status = CASE WHEN f.outcome <> 'PENDING' AND b.mode = 'CALLBACK'" \
    "                           THEN 'PENDING' END," \
    "         callback_next_at = CASE WHEN f.outcome <> 'PENDING' AND b.mode = 'CALLBACK'" \
    "                            THEN now() END" \
    "    FROM found f JOIN batches b ON b.id = f.batch_id" \
    "   WHERE i.batch_id = f.batch_id AND i.idx = f.idx" \
    "  RETURNING i.batch_id, i.status" \
    "), counted AS (" \
    "  UPDATE batches b SET succeeded = b.succeeded + n.succeeded, failed = b.failed + n.failed" \
    "    FROM (SELECT batch_id, count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded," \
    "                 count(*) FILTER (WHERE status = 'FAILED') AS failed, count(*) AS n" \
    "            FROM item GROUP BY batch_id) n" \
    "   WHERE b.id = n.batch_id" \
    "  RETURNING b.id, n.n, n.succeeded, n.failed" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text), id, n, succeeded, failed FROM counted"

/* a connection's per-minute limit of what (requests, tokens) in the capacity array cap */
#define MINUTE_LIMIT(cap, what) \
    "coalesce((SELECT min((e->>'" what "')::numeric)::bigint" \
    "            FROM jsonb_array_elements(CASE jsonb_typeof(" cap ") WHEN 'array'" \
    "                                      THEN " cap " ELSE '[]' END) e" \
    "           WHERE e->>'period' = 'minute' AND (e->>'enabled') IS DISTINCT FROM 'false'" \
    "             AND jsonb_typeof(e->'" what "') = 'number'), 0)"

#define DISCOVERED(c, r) \
    c ".discovered_capacity #> ARRAY['models', " r ".model->>'model', 'capacity']"

/*
 * $1 items per batch, $2 items in all: the PENDING items due, locked, the
 * open batches (of a usable key) taking turns, oldest batch first; each
 * with its body for the gateway ("model": the resource), its connection,
 * model and their configured and discovered per-minute limits
 */
#define CLAIM_SQL \
    "WITH open AS (" \
    "  SELECT b.id, b.created_at FROM batches b JOIN api_keys k ON k.id = b.api_key_id" \
    "   WHERE b.status IN ('QUEUED', 'RUNNING') AND k.enabled" \
    "     AND (k.expires_at IS NULL OR k.expires_at > now())" \
    "   ORDER BY b.created_at LIMIT " OPEN_BATCHES_MAX \
    "), turn AS (" \
    "  SELECT p.batch_id, p.idx, o.created_at," \
    "         row_number() OVER (PARTITION BY p.batch_id ORDER BY p.idx) AS turn" \
    "    FROM open o CROSS JOIN LATERAL (" \
    "      SELECT batch_id, idx FROM batch_items" \
    "       WHERE batch_id = o.id AND status = 'PENDING'" \
    "         AND (not_before IS NULL OR not_before <= now())" \
    "       ORDER BY idx LIMIT $1 FOR UPDATE SKIP LOCKED) p" \
    ")" \
    "SELECT t.batch_id, t.idx, b.workspace_id, b.environment_id, coalesce(b.pool, '')," \
    "       k.key_hash, jsonb_set(i.request, '{model}', to_jsonb(i.resource))::text," \
    "       coalesce(i.request->>'max_tokens', i.request->>'max_completion_tokens', '0')," \
    "       i.tries, c.id, r.model->>'model'," \
    "       " MINUTE_LIMIT("c.capacity", "requests") "," \
    "       " MINUTE_LIMIT("c.capacity", "tokens") "," \
    "       " MINUTE_LIMIT(DISCOVERED("c", "r"), "requests") "," \
    "       " MINUTE_LIMIT(DISCOVERED("c", "r"), "tokens") \
    "  FROM turn t JOIN batch_items i ON i.batch_id = t.batch_id AND i.idx = t.idx" \
    "  JOIN batches b ON b.id = t.batch_id JOIN api_keys k ON k.id = b.api_key_id" \
    "  LEFT JOIN resources r ON r.environment_id = b.environment_id AND r.name = i.resource" \
    "  LEFT JOIN connections c ON c.id::text = r.model->>'connectionId'" \
    " ORDER BY t.turn, t.created_at LIMIT $2"

/* $1 batch, $2 item, $3 this run's instance */
#define START_SQL \
    "WITH item AS (" \
    "  UPDATE batch_items SET status = 'RUNNING', claimed_by = $3, claimed_at = now()," \
    "         started_at = coalesce(started_at, now()), not_before = NULL" \
    "   WHERE batch_id = $1 AND idx = $2 RETURNING batch_id" \
    "), running AS (" \
    "  UPDATE batches SET status = 'RUNNING', started_at = coalesce(started_at, now())" \
    "   WHERE id = (SELECT batch_id FROM item) AND status = 'QUEUED'" \
    ")" \
    "SELECT pg_notify('vmx_batch', batch_id::text) FROM item"

/*
 * $1 batch, $2 item, $3 this run's instance, $4 SUCCEEDED | FAILED, $5
 * status code, $6 the answer, $7 the error: the item ends, if this run
 * still holds its claim
 */
#define FINISH_SQL \
    "WITH item AS (" \
    "  UPDATE batch_items i SET status = $4, status_code = $5::integer, response = $6::jsonb," \
    "         error = $7::jsonb, request_id = $8::uuid, tries = i.tries + 1," \
    "         finished_at = now()," \
    CALLBACK_DUE("b") \
    "    FROM batches b" \
    "   WHERE b.id = i.batch_id AND i.batch_id = $1 AND i.idx = $2" \
    "     AND i.status = 'RUNNING' AND i.claimed_by = $3" \
    "  RETURNING i.batch_id" \
    "), counted AS (" \
    "  UPDATE batches SET succeeded = succeeded + ($4 = 'SUCCEEDED')::integer," \
    "         failed = failed + ($4 = 'FAILED')::integer" \
    "   WHERE id = (SELECT batch_id FROM item)" \
    "  RETURNING id" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text) FROM counted"

/* $1 batch, $2 item, $3 instance, $4 milliseconds to wait, $5 status code (or NULL) */
#define REQUEUE_SQL \
    "WITH item AS (" \
    "  UPDATE batch_items SET status = 'PENDING', claimed_by = NULL, claimed_at = NULL," \
    "         tries = tries + 1, status_code = $5::integer," \
    "         not_before = now() + $4::integer * interval '1 millisecond'" \
    "   WHERE batch_id = $1 AND idx = $2 AND status = 'RUNNING' AND claimed_by = $3" \
    "  RETURNING batch_id" \
    ")" \
    "SELECT pg_notify('vmx_batch', batch_id::text) FROM item"

/*
 * $1 batch, $2 item, $3 instance: an item sent whose answer never came (a
 * timeout, a connection cut after the request left) is left RUNNING with no
 * claim, for the resume to end it from its audit record once the grace has
 * passed: the data plane may have run it, and sending it again could run it
 * twice
 */
#define UNANSWERED_SQL \
    "UPDATE batch_items SET claimed_by = NULL, tries = tries + 1" \
    " WHERE batch_id = $1 AND idx = $2 AND status = 'RUNNING' AND claimed_by = $3"

/*
 * $1 deliveries: the item callbacks due, leased (not due again while in
 * flight), with the batch's URL, sealed secret and the body to deliver
 */
#define ITEM_CALLBACKS_SQL \
    "WITH due AS (" \
    "  SELECT batch_id, idx FROM batch_items" \
    "   WHERE callback_status = 'PENDING' AND callback_next_at <= now()" \
    "   ORDER BY callback_next_at LIMIT $1 FOR UPDATE SKIP LOCKED" \
    "), leased AS (" \
    "  UPDATE batch_items i SET callback_next_at = now() + " CALLBACK_LEASE_MS \
    "                                                * interval '1 millisecond'" \
    "    FROM due WHERE i.batch_id = due.batch_id AND i.idx = due.idx" \
    "  RETURNING i.*" \
    ")" \
    "SELECT i.batch_id, i.idx, i.callback_tries, b.callback_url," \
    "       convert_from(b.callback_secret, 'UTF8')," \
    "       jsonb_build_object('type', 'batch.item', 'batchId', i.batch_id," \
    "                          'item', " BATCH_ITEM_DOC_SQL(BATCH_ITEM_RESPONSE) ")::text" \
    "  FROM leased i JOIN batches b ON b.id = i.batch_id"

/* $1 deliveries: the batch.completed callbacks due, once every item's is done */
#define BATCH_CALLBACKS_SQL \
    "WITH due AS (" \
    "  SELECT id FROM batches b" \
    "   WHERE callback_status = 'PENDING' AND callback_next_at <= now()" \
    "     AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id" \
    "                        AND i.callback_status = 'PENDING')" \
    "   ORDER BY callback_next_at LIMIT $1 FOR UPDATE SKIP LOCKED" \
    "), leased AS (" \
    "  UPDATE batches b SET callback_next_at = now() + " CALLBACK_LEASE_MS \
    "                                           * interval '1 millisecond'" \
    "    FROM due WHERE b.id = due.id" \
    "  RETURNING b.*" \
    ")" \
    "SELECT b.id, -1, b.callback_tries, b.callback_url, convert_from(b.callback_secret, 'UTF8')," \
    "       jsonb_build_object('type', 'batch.completed', 'batch', " BATCH_DOC_SQL ")::text" \
    "  FROM leased b"

/* $1 batch, $2 item, $3 PENDING | DELIVERED | FAILED, $4 ms to the next try, $5 the error */
#define ITEM_CALLBACK_DONE_SQL \
    "WITH item AS (" \
    "  UPDATE batch_items SET callback_tries = callback_tries + 1, callback_status = $3," \
    "         callback_next_at = CASE WHEN $3 = 'PENDING'" \
    "                            THEN now() + $4::integer * interval '1 millisecond' END," \
    "         callback_error = $5" \
    "   WHERE batch_id = $1 AND idx = $2 AND callback_status = 'PENDING'" \
    "  RETURNING batch_id" \
    ")" \
    "SELECT pg_notify('vmx_batch', batch_id::text) FROM item"

/* the same for a batch ($2 unused, -1) */
#define BATCH_CALLBACK_DONE_SQL \
    "WITH batch AS (" \
    "  UPDATE batches SET callback_tries = callback_tries + 1, callback_status = $3," \
    "         callback_next_at = CASE WHEN $3 = 'PENDING'" \
    "                            THEN now() + $4::integer * interval '1 millisecond' END," \
    "         callback_error = $5" \
    "   WHERE id = $1 AND $2::integer = -1 AND callback_status = 'PENDING'" \
    "  RETURNING id" \
    ")" \
    "SELECT pg_notify('vmx_batch', id::text) FROM batch"


static void
count_items(const char *status, long n)
{
    char labels[METRICS_LABELS_SIZE];

    if (n > 0) {
        metrics_labels(labels, "status", status, NULL);
        metrics_add(METRIC_BATCH_ITEMS, labels, (double) n);
    }
}


/* lowercase hex HMAC-SHA256 of the parts (NULL-terminated) under key into out */
static void
sign(const char *key, char out[SIGNATURE_HEX_LEN + 1], const char *const *parts)
{
    crypto_auth_hmacsha256_state  st;
    unsigned char                 mac[crypto_auth_hmacsha256_BYTES];

    crypto_auth_hmacsha256_init(&st, (const unsigned char *) key, strlen(key));
    for (size_t i = 0; parts[i] != NULL; i++) {
        crypto_auth_hmacsha256_update(&st, (const unsigned char *) parts[i], strlen(parts[i]));
    }
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(out, SIGNATURE_HEX_LEN + 1, mac, sizeof(mac));
}


/* appends "name: value" to *headers; false when out of memory */
static bool
add_header(struct curl_slist **headers, const char *name, const char *value)
{
    char                line[1024];
    struct curl_slist  *grown;

    snprintf(line, sizeof(line), "%s: %s", name, value);
    grown = curl_slist_append(*headers, line);
    if (grown == NULL) {
        return false;
    }
    *headers = grown;
    return true;
}


/* a header of the answer, NULL when absent */
static const char *
answer_header(CURL *curl, const char *name)
{
    struct curl_header *h;

    if (curl_easy_header(curl, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK) {
        return NULL;
    }
    return h->value;
}


/* ----------------------------------------------------------------------
 * budgets
 */

/* the budget of a connection and model, made or refreshed with its limits */
static budget_t *
find_budget(const char *connection, const char *model, long long requests, long long tokens,
    long long now)
{
    budget_t *b = NULL, *oldest = &runner.budgets[0];

    for (size_t i = 0; i < runner.nbudgets; i++) {
        budget_t *it = &runner.budgets[i];

        if (strcmp(it->connection, connection) == 0 && strcmp(it->model, model) == 0) {
            b = it;
            break;
        }
        if (it->used_at < oldest->used_at) {
            oldest = it;
        }
    }
    if (b == NULL) {
        /* full: the one idle longest goes; its minute is past when it idled a minute */
        b = runner.nbudgets < BUDGETS_MAX ? &runner.budgets[runner.nbudgets++] : oldest;
        memset(b, 0, sizeof(*b));
        snprintf(b->connection, sizeof(b->connection), "%s", connection);
        snprintf(b->model, sizeof(b->model), "%s", model);
    }
    b->pace.requests_limit = requests;
    b->pace.tokens_limit = tokens;
    b->used_at = now;
    return b;
}


/* ----------------------------------------------------------------------
 * transfers
 */

static transfer_t *
free_transfer(transfer_kind_e kind)
{
    size_t first = kind == TRANSFER_ITEM ? 0 : (size_t) runner.concurrency;
    size_t last = kind == TRANSFER_ITEM ? (size_t) runner.concurrency : runner.ntransfers;

    for (size_t i = first; i < last; i++) {
        if (!runner.transfers[i].busy) {
            return &runner.transfers[i];
        }
    }
    return NULL;
}


/* the transfer's request is over (or never started): its request's parts go */
static void
release_transfer(transfer_t *t)
{
    if (t->busy) {
        curl_multi_remove_handle(runner.multi, t->curl);
        if (t->kind == TRANSFER_ITEM) {
            runner.items_running--;
        } else {
            runner.callbacks_running--;
        }
    }
    httpc_cleanup(NULL, t->headers);
    t->headers = NULL;
    free(t->body);
    t->body = NULL;
    t->busy = false;
}


/* starts t's POST of its body to url, with its headers; -1 when it cannot */
static int
start_transfer(transfer_t *t, const char *url, long timeout_ms)
{
    if (t->curl == NULL && (t->curl = curl_easy_init()) == NULL) {
        return -1;
    }
    curl_easy_reset(t->curl);
    curl_easy_setopt(t->curl, CURLOPT_URL, url);
    curl_easy_setopt(t->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->curl, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(t->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(t->body));
    curl_easy_setopt(t->curl, CURLOPT_PRIVATE, t);
    httpc_prepare(t->curl, &t->answer, timeout_ms, t->error);
    if (curl_multi_add_handle(runner.multi, t->curl) != CURLM_OK) {
        return -1;
    }
    t->busy = true;
    if (t->kind == TRANSFER_ITEM) {
        runner.items_running++;
    } else {
        runner.callbacks_running++;
    }
    return 0;
}


/* ----------------------------------------------------------------------
 * items
 */

/* the data planes to send to, into planes: those that answer, or all when none does; how
 * many (0: none is known) */
static size_t
list_dataplanes(db_conn_t *c, discovery_url_t *planes)
{
    char         limit[16];
    const char  *params[1] = { limit };
    PGresult    *res;
    size_t       n;

    snprintf(limit, sizeof(limit), "%d", CONFIG_MAX_DATAPLANES);
    res = db_exec(c, "SELECT url, count(*) FILTER (WHERE (state->>'status')"
                     "       IS DISTINCT FROM 'unreachable') OVER ()"
                     "  FROM dataplanes"
                     " ORDER BY (state->>'status') = 'unreachable' IS TRUE, url LIMIT $1",
                  1, params);
    n = res != NULL ? (size_t) PQntuples(res) : 0;

    if (n > 0 && atoi(PQgetvalue(res, 0, 1)) > 0) {
        n = (size_t) atoi(PQgetvalue(res, 0, 1));
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(planes[i], sizeof(discovery_url_t), "%s", PQgetvalue(res, (int) i, 0));
    }
    PQclear(res);
    return n;
}


/* sends a claimed item to the data plane at base: 0, or -1 (the caller puts it back) */
static int
send_item(const item_t *it, const char *base)
{
    transfer_t  *t = free_transfer(TRANSFER_ITEM);
    char         idx[16], now[24], signature[SIGNATURE_HEX_LEN + 1];
    char         url[CONFIG_DATAPLANE_URL_MAX + 128];
    const char  *parts[] = { it->batch_id, "\n", idx, "\n", it->key_hash, "\n", it->pool, "\n",
                             now, NULL };

    if (t == NULL) {
        return -1;
    }
    snprintf(idx, sizeof(idx), "%d", it->idx);
    snprintf(now, sizeof(now), "%lld", (long long) time(NULL));
    sign(runner.token, signature, parts);
    snprintf(url, sizeof(url), "%s/v1/completion/%s/%s/chat/completions", base,
             it->workspace_id, it->environment_id);

    t->kind = TRANSFER_ITEM;
    t->idx = it->idx;
    t->tries = it->tries;
    snprintf(t->batch_id, sizeof(t->batch_id), "%s", it->batch_id);
    snprintf(t->url, sizeof(t->url), "%s", base);
    t->body = strdup(it->body);
    t->answer.max = ANSWER_MAX;
    /* no Expect: a data plane answers at once, the body is small */
    if (t->body == NULL || !add_header(&t->headers, "Content-Type", "application/json")
        || !add_header(&t->headers, "Expect", "")
        || !add_header(&t->headers, "x-vmx-batch-id", it->batch_id)
        || !add_header(&t->headers, "x-vmx-batch-item", idx)
        || !add_header(&t->headers, "x-vmx-batch-key", it->key_hash)
        || (it->pool[0] != '\0' && !add_header(&t->headers, "x-vmx-batch-pool", it->pool))
        || !add_header(&t->headers, "x-vmx-batch-time", now)
        || !add_header(&t->headers, "x-vmx-batch-signature", signature)
        || start_transfer(t, url, runner.item_timeout_ms) != 0)
    {
        log_error("batch_runner batch=%s item=%d: cannot start its request", it->batch_id,
                  it->idx);
        release_transfer(t);
        return -1;
    }
    sodium_memzero(signature, sizeof(signature));
    return 0;
}


/* the first parameters of a statement on t's item: $1 batch, $2 item (in idx), $3 this run */
static void
item_params(const transfer_t *t, char idx[16], const char **params)
{
    snprintf(idx, 16, "%d", t->idx);
    params[0] = t->batch_id;
    params[1] = idx;
    params[2] = runner.instance;
}


/* the item goes back to PENDING for wait_ms (a 429's Retry-After, a retry's backoff) */
static void
requeue_item(db_conn_t *c, const transfer_t *t, long wait_ms, long code)
{
    char         idx[16], wait[24], code_text[24];
    const char  *params[5];

    item_params(t, idx, params);
    snprintf(wait, sizeof(wait), "%ld", wait_ms);
    snprintf(code_text, sizeof(code_text), "%ld", code);
    params[3] = wait;
    params[4] = code != 0 ? code_text : NULL;
    db_run(c, REQUEUE_SQL, 5, params);
}


/* a transport error that may have come after the data plane got the request */
static bool
maybe_delivered(CURLcode result)
{
    return result != CURLE_COULDNT_CONNECT && result != CURLE_COULDNT_RESOLVE_HOST
           && result != CURLE_COULDNT_RESOLVE_PROXY;
}


/* an item whose answer is unknown, left to the resume (UNANSWERED_SQL) */
static void
item_unanswered(db_conn_t *c, const transfer_t *t)
{
    char         idx[16];
    const char  *params[3];

    item_params(t, idx, params);
    log_info("batch_runner batch=%s item=%d dataplane=%s: no answer (%s); its audit record"
             " will tell after the resume grace", t->batch_id, t->idx, t->url, t->error);
    db_run(c, UNANSWERED_SQL, 3, params);
}


/* the claimed row i as an item, its budget found; false when the budget has no room */
static bool
take_item(PGresult *res, int i, item_t *it, long long now)
{
    long long requests, tokens;

    memset(it, 0, sizeof(*it));
    it->batch_id = PQgetvalue(res, i, 0);
    it->idx = atoi(PQgetvalue(res, i, 1));
    it->workspace_id = PQgetvalue(res, i, 2);
    it->environment_id = PQgetvalue(res, i, 3);
    it->pool = PQgetvalue(res, i, 4);
    it->key_hash = PQgetvalue(res, i, 5);
    it->body = PQgetvalue(res, i, 6);
    it->tokens = batch_pace_cost(strlen(it->body), atoll(PQgetvalue(res, i, 7)));
    it->tries = atoi(PQgetvalue(res, i, 8));
    if (PQgetisnull(res, i, 9) || PQgetisnull(res, i, 10)
        || strlen(PQgetvalue(res, i, 10)) > MODEL_MAX)
    {
        return true;                    /* no connection: the gateway answers it */
    }
    requests = batch_pace_budget(runner.share, atoll(PQgetvalue(res, i, 11)),
                                 atoll(PQgetvalue(res, i, 13)));
    tokens = batch_pace_budget(runner.share, atoll(PQgetvalue(res, i, 12)),
                               atoll(PQgetvalue(res, i, 14)));
    if (requests == 0 && tokens == 0) {
        return true;                    /* unknown capacity: the concurrency bounds it */
    }
    it->budget = find_budget(PQgetvalue(res, i, 9), PQgetvalue(res, i, 10), requests, tokens,
                             now);
    return batch_pace_admit(&it->budget->pace, now, it->tokens);
}


/*
 * claims as many items as the free slots and the budgets take, and sends
 * them once the claim is committed (an item is never sent unclaimed)
 */
static void
claim_items(db_conn_t *c)
{
    int              slots = runner.concurrency - runner.items_running;
    char             candidates[16], idx[16];
    discovery_url_t  planes[CONFIG_MAX_DATAPLANES];
    const char      *params[3];
    PGresult        *res;
    item_t          *claimed;
    long long        now = (long long) time(NULL);
    size_t           nplanes;
    int              n, nclaimed = 0;

    if (slots <= 0 || (nplanes = list_dataplanes(c, planes)) == 0) {
        return;
    }
    claimed = calloc((size_t) slots, sizeof(item_t));
    if (claimed == NULL || db_begin(c) != 0) {
        free(claimed);
        return;
    }
    /* room to pass items waiting for their connection's budget, in a batch and across */
    snprintf(candidates, sizeof(candidates), "%d", slots * 4);
    params[0] = candidates;
    params[1] = candidates;
    res = db_exec(c, CLAIM_SQL, 2, params);
    n = res != NULL ? PQntuples(res) : 0;
    for (int i = 0; i < n && nclaimed < slots; i++) {
        item_t *it = &claimed[nclaimed];

        if (!take_item(res, i, it, now)) {
            continue;                   /* its connection's minute is spent: it waits */
        }
        snprintf(idx, sizeof(idx), "%d", it->idx);
        params[0] = it->batch_id;
        params[1] = idx;
        params[2] = runner.instance;
        if (db_run(c, START_SQL, 3, params) != 0) {
            break;
        }
        nclaimed++;
    }
    if (res == NULL || db_commit(c) != 0) {
        db_rollback(c);
        for (int i = 0; i < nclaimed; i++) {
            if (claimed[i].budget != NULL) {
                batch_pace_refund(&claimed[i].budget->pace, now, claimed[i].tokens);
            }
        }
        nclaimed = 0;
    }
    for (int i = 0; i < nclaimed; i++) {
        if (send_item(&claimed[i], planes[runner.next_plane++ % nplanes]) != 0) {
            transfer_t unsent = { .idx = claimed[i].idx };

            snprintf(unsent.batch_id, sizeof(unsent.batch_id), "%s", claimed[i].batch_id);
            requeue_item(c, &unsent, RETRY_BACKOFF_MS, 0);
        }
    }
    if (nclaimed > 0) {
        log_debug("batch_runner: %d items sent to %zu data plane(s)", nclaimed,
                  nplanes < (size_t) nclaimed ? nplanes : (size_t) nclaimed);
    }
    PQclear(res);
    free(claimed);
}


/* the gateway's error object of a final answer ({code, message, type}), JSON text */
static char *
error_json(long status, const char *answer, const char *transport)
{
    cJSON       *doc = answer != NULL ? cJSON_Parse(answer) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    cJSON       *out = cJSON_CreateObject();
    char         code[32];
    char        *text;
    const char  *fields[] = { "code", "message", "type" };

    if (cJSON_IsObject(e)) {
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, fields[i]);

            cJSON_AddItemToObject(out, fields[i], cJSON_IsString(v) ? cJSON_Duplicate(v, false)
                                                                    : cJSON_CreateNull());
        }
    } else {
        snprintf(code, sizeof(code), status == 0 ? "dataplane_unreachable" : "http_%ld",
                 status);
        cJSON_AddStringToObject(out, "code", code);
        cJSON_AddStringToObject(out, "message", status == 0 ? transport
                                                            : "the gateway answered no error object");
        cJSON_AddNullToObject(out, "type");
    }
    text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    cJSON_Delete(doc);
    return text;
}


/* writes an item's end; 1 when this run ended it, 0 when its claim was gone, -1 on error */
static long
finish_item(db_conn_t *c, const transfer_t *t, const char *status, long code,
    const char *response, const char *error, const char *request_id)
{
    char         idx[16], code_text[24];
    const char  *params[8];
    PGresult    *res;
    long         n;

    item_params(t, idx, params);
    snprintf(code_text, sizeof(code_text), "%ld", code);
    params[3] = status;
    params[4] = code != 0 ? code_text : NULL;
    params[5] = response;
    params[6] = error;
    params[7] = request_id;
    res = db_exec(c, FINISH_SQL, 8, params);
    n = res != NULL ? PQntuples(res) : -1;
    PQclear(res);
    return n;
}


/*
 * the gateway's answer of an item: 2xx succeeded; 429 back to PENDING
 * until Retry-After (CAPACITY_TRIES sends at most); a data plane not
 * reached or a 5xx tried SEND_TRIES times with backoff; any other status
 * final (an answer that never came is item_unanswered()'s)
 */
static void
item_done(db_conn_t *c, transfer_t *t, long status)
{
    const char  *answer = t->answer.data;
    const char  *request_id = answer_header(t->curl, "x-vmx-request-id");
    const char  *retry_after = answer_header(t->curl, "retry-after");
    int          tries = t->tries + 1;
    char        *error = NULL, *response = NULL;
    long         wait;

    if (request_id != NULL && !crypto_is_uuid(request_id)) {
        request_id = NULL;
    }
    if (status == 429 && tries < CAPACITY_TRIES) {
        wait = retry_after != NULL ? atol(retry_after) : 1;
        wait = wait < 1 ? 1 : wait > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : wait;
        metrics_add(METRIC_BATCH_CAPACITY_WAITS, "", 1);
        log_debug("batch_runner batch=%s item=%d: 429, waits %ld s", t->batch_id, t->idx, wait);
        requeue_item(c, t, wait * 1000, status);
        return;
    }
    if ((status == 0 || status >= 500) && tries < SEND_TRIES) {
        wait = batch_pace_backoff_ms(tries, RETRY_BACKOFF_MS, RETRY_BACKOFF_CAP_MS,
                                     randombytes_uniform(1001) / 1000.0);
        log_debug("batch_runner batch=%s item=%d dataplane=%s: HTTP %ld %s, try %d of %d"
                  " again in %ld ms", t->batch_id, t->idx, t->url, status, t->error, tries,
                  SEND_TRIES, wait);
        requeue_item(c, t, wait, status);
        return;
    }

    if (STATUS_OK(status)) {
        cJSON *doc = answer != NULL ? cJSON_Parse(answer) : NULL;

        /* a body that is no JSON is kept as a JSON string */
        if (doc == NULL) {
            doc = cJSON_CreateString(answer != NULL ? answer : "");
        }
        response = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
        cJSON_Delete(doc);
    } else if (status == 429) {
        error = strdup("{\"code\":\"capacity_wait_exhausted\",\"message\":\"the gateway"
                       " answered 429 to every try\",\"type\":null}");
    } else {
        error = error_json(status, answer, t->error);
    }
    if (finish_item(c, t, STATUS_OK(status) ? "SUCCEEDED" : "FAILED", status, response, error,
                    request_id) == 1)
    {
        count_items(STATUS_OK(status) ? "succeeded" : "failed", 1);
    }
    if (!STATUS_OK(status)) {
        /* one line per item at debug: a batch's end logs its counts */
        log_debug("batch_runner batch=%s item=%d dataplane=%s: failed, HTTP %ld %s",
                  t->batch_id, t->idx, t->url, status, t->error);
    }
    free(response);
    free(error);
}


/* ----------------------------------------------------------------------
 * callbacks
 */

/* the x-vmx-delivery-id of a delivery: a UUID drawn from its seed, the same on every try */
static void
delivery_id(const char *batch_id, int idx, char out[UUID_LEN + 1])
{
    char seed[UUID_LEN + 32];
    char hex[SHA256_HEX_LEN + 1];

    snprintf(seed, sizeof(seed), "%s/%d", batch_id, idx);
    crypto_sha256_hex(seed, hex);
    snprintf(out, UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
}


/* starts the delivery of row i of a callbacks claim: 0, or -1 with *why filled */
static int
send_callback(PGresult *res, int i, const char **why)
{
    transfer_t      *t = free_transfer(TRANSFER_CALLBACK);
    const char      *url = PQgetvalue(res, i, 3);
    char            *secret;
    char             id[UUID_LEN + 1], now[24], header[SIGNATURE_HEX_LEN + 64];
    char             signature[SIGNATURE_HEX_LEN + 1];
    secrets_error_t  err;

    *why = NULL;
    if (t == NULL) {
        return -1;
    }
    t->kind = TRANSFER_CALLBACK;
    snprintf(t->batch_id, sizeof(t->batch_id), "%s", PQgetvalue(res, i, 0));
    t->idx = atoi(PQgetvalue(res, i, 1));
    t->tries = atoi(PQgetvalue(res, i, 2));
    if (PQgetisnull(res, i, 3) || PQgetisnull(res, i, 4)) {
        *why = "the batch has no callback URL or secret";
        return -1;
    }
    /* sealed by batch_insert(), the batch id its associated data (batch.h) */
    secret = secrets_decrypt(PQgetvalue(res, i, 4), t->batch_id, &err);
    if (secret == NULL) {
        log_warn("batch_runner batch=%s: cannot open the callback secret: %s", t->batch_id,
                 err.message);
        *why = "the callback secret cannot be read";
        return -1;
    }
    t->body = strdup(PQgetvalue(res, i, 5));
    snprintf(now, sizeof(now), "%lld", (long long) time(NULL));
    if (t->body != NULL) {
        const char *parts[] = { now, ".", t->body, NULL };

        sign(secret, signature, parts);
    }
    secrets_free(secret);
    delivery_id(t->batch_id, t->idx, id);
    snprintf(header, sizeof(header), "t=%s,v1=%s", now, t->body != NULL ? signature : "");
    t->answer.max = CALLBACK_ANSWER_MAX;
    if (t->body == NULL || !add_header(&t->headers, "Content-Type", "application/json")
        || !add_header(&t->headers, "Expect", "")
        || !add_header(&t->headers, "x-vmx-batch-id", t->batch_id)
        || !add_header(&t->headers, "x-vmx-delivery-id", id)
        || !add_header(&t->headers, "x-vmx-signature", header)
        || start_transfer(t, url, CALLBACK_TIMEOUT_MS) != 0)
    {
        release_transfer(t);
        *why = "out of memory";
        return -1;
    }
    return 0;
}


/* writes a delivery's outcome: delivered, or retried with backoff, or failed after the tries */
static void
callback_done(db_conn_t *c, const char *batch_id, int idx, int tries, const char *error)
{
    char         idx_text[16], wait[24], labels[METRICS_LABELS_SIZE];
    const char  *params[5];
    const char  *state;
    long         wait_ms = 0;

    tries++;
    if (error == NULL) {
        state = "DELIVERED";
    } else if (tries < runner.callback_tries) {
        state = "PENDING";
        wait_ms = batch_pace_backoff_ms(tries, runner.callback_backoff_ms,
                                        CALLBACK_BACKOFF_CAP_MS,
                                        randombytes_uniform(1001) / 1000.0);
    } else {
        state = "FAILED";
        log_warn("batch_runner batch=%s item=%d: callback failed after %d tries: %s", batch_id,
                 idx, tries, error);
    }
    snprintf(idx_text, sizeof(idx_text), "%d", idx);
    snprintf(wait, sizeof(wait), "%ld", wait_ms);
    params[0] = batch_id;
    params[1] = idx_text;
    params[2] = state;
    params[3] = wait;
    params[4] = error;
    db_run(c, idx < 0 ? BATCH_CALLBACK_DONE_SQL : ITEM_CALLBACK_DONE_SQL, 5, params);
    metrics_labels(labels, "result", error == NULL ? "delivered"
                                     : state[0] == 'P' ? "retried" : "failed", NULL);
    metrics_add(METRIC_BATCH_CALLBACKS, labels, 1);
}


/* starts the deliveries sql finds due (items', or batches'), as far as the free slots go */
static void
claim_callbacks(db_conn_t *c, const char *sql)
{
    int          slots = CALLBACKS_MAX - runner.callbacks_running;
    char         limit[16];
    const char  *params[1] = { limit };
    const char  *why;
    PGresult    *res;

    if (slots <= 0) {
        return;
    }
    snprintf(limit, sizeof(limit), "%d", slots);
    res = db_exec(c, sql, 1, params);
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        if (send_callback(res, i, &why) != 0 && why != NULL) {
            callback_done(c, PQgetvalue(res, i, 0), atoi(PQgetvalue(res, i, 1)),
                          atoi(PQgetvalue(res, i, 2)), why);
        }
    }
    PQclear(res);
}


/* ----------------------------------------------------------------------
 * the round
 */

/* the batches' state changes that need no request: failed keys, cancels, resumes, ends */
static void
sweep(db_conn_t *c)
{
    char         grace[16];
    const char  *params[2] = { grace, runner.instance };
    PGresult    *res;

    res = db_exec(c, FAIL_KEYS_SQL, 0, NULL);
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        log_info("batch_runner batch=%s: FAILED, its API key is disabled or expired, %s items"
                 " cancelled", PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
        count_items("cancelled", atol(PQgetvalue(res, i, 2)));
    }
    PQclear(res);

    res = db_exec(c, CANCEL_ITEMS_SQL, 0, NULL);
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        count_items("cancelled", atol(PQgetvalue(res, i, 1)));
    }
    PQclear(res);

    snprintf(grace, sizeof(grace), "%d", runner.grace);
    res = db_exec(c, RESUME_SQL, 2, params);
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        log_info("batch_runner batch=%s: %s items of an older claim resumed (%s succeeded and"
                 " %s failed in their audit, the others pending again)", PQgetvalue(res, i, 1),
                 PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
        count_items("succeeded", atol(PQgetvalue(res, i, 3)));
        count_items("failed", atol(PQgetvalue(res, i, 4)));
    }
    PQclear(res);

    res = db_exec(c, END_BATCHES_SQL, 0, NULL);
    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        log_info("batch_runner batch=%s: %s, %s succeeded, %s failed, %s cancelled",
                 PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                 PQgetvalue(res, i, 4), PQgetvalue(res, i, 5));
    }
    PQclear(res);
}


/* the answers that came in: each written */
static void
collect(db_conn_t *c)
{
    CURLMsg    *msg;
    int         left;
    transfer_t *t;
    long        status;
    char        why[64];

    while ((msg = curl_multi_info_read(runner.multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
        status = 0;
        /* a receiver's answer longer than we read still tells its status */
        if (msg->data.result == CURLE_OK
            || (t->kind == TRANSFER_CALLBACK && msg->data.result == CURLE_WRITE_ERROR))
        {
            curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
        } else if (t->error[0] == '\0') {
            snprintf(t->error, sizeof(t->error), "%s", curl_easy_strerror(msg->data.result));
        }
        if (t->kind == TRANSFER_ITEM && status == 0 && maybe_delivered(msg->data.result)) {
            item_unanswered(c, t);
        } else if (t->kind == TRANSFER_ITEM) {
            item_done(c, t, status);
        } else if (STATUS_OK(status)) {
            callback_done(c, t->batch_id, t->idx, t->tries, NULL);
        } else {
            if (status != 0) {
                snprintf(why, sizeof(why), "HTTP %ld", status);
            } else {
                snprintf(why, sizeof(why), "%.60s", t->error);
            }
            callback_done(c, t->batch_id, t->idx, t->tries, why);
        }
        release_transfer(t);
    }
}


static long
batch_runner_round(void)
{
    db_conn_t *c;
    int        active = 0;

    if (runner.items_running + runner.callbacks_running > 0) {
        curl_multi_perform(runner.multi, &active);
        curl_multi_poll(runner.multi, NULL, 0, POLL_MS, NULL);
        curl_multi_perform(runner.multi, &active);
    }
    c = db_acquire();
    if (c == NULL) {
        return IDLE_MS;
    }
    collect(c);
    claim_items(c);
    claim_callbacks(c, ITEM_CALLBACKS_SQL);
    /* once a second: the sweep, and the batch callbacks (no index of batches serves them) */
    if (worker_clock_ms() >= runner.sweep_at) {
        sweep(c);
        claim_callbacks(c, BATCH_CALLBACKS_SQL);
        runner.sweep_at = worker_clock_ms() + SWEEP_MS;
    }
    db_release(c);
    if (runner.items_running + runner.callbacks_running > 0) {
        curl_multi_perform(runner.multi, &active);
        return 0;
    }
    return IDLE_MS;
}


int
batch_runner_start(const config_t *cfg)
{
    runner.concurrency = cfg->batch_concurrency;
    runner.share = cfg->batch_capacity_share;
    runner.grace = cfg->batch_resume_grace;
    runner.item_timeout_ms = cfg->batch_item_timeout * 1000L;
    runner.callback_tries = cfg->batch_callback_tries;
    runner.callback_backoff_ms = cfg->batch_callback_backoff_ms;
    crypto_uuid_v4(runner.instance);

    if (cfg->dataplane_token_file == NULL) {
        log_info("batch_runner: no VMX_DATAPLANE_TOKEN_FILE, no batch runs on this replica");
        return 0;
    }
    if (cfg->batch_paused) {
        log_info("batch_runner: VMX_BATCH_PAUSED, no batch runs on this replica");
        return 0;
    }
    runner.token = config_read_secret_file(cfg->dataplane_token_file, "the data plane token");
    runner.transfers = calloc((size_t) runner.concurrency + CALLBACKS_MAX, sizeof(transfer_t));
    runner.multi = curl_multi_init();
    if (runner.token == NULL || runner.transfers == NULL || runner.multi == NULL) {
        log_error("batch_runner: cannot start (the token, or out of memory)");
        return -1;
    }
    runner.ntransfers = (size_t) runner.concurrency + CALLBACKS_MAX;
    leader_follow(&runner.worker);
    if (worker_start(&runner.worker, "batch_runner", batch_runner_round) != 0) {
        return -1;
    }
    log_info("batch_runner instance=%s: %d items at once, %.2f of each connection's capacity",
             runner.instance, runner.concurrency, runner.share);
    return 0;
}


void
batch_runner_stop(void)
{
    worker_stop(&runner.worker);
    for (size_t i = 0; i < runner.ntransfers; i++) {
        transfer_t *t = &runner.transfers[i];

        release_transfer(t);
        httpc_cleanup(t->curl, NULL);
        free(t->answer.data);
    }
    free(runner.transfers);
    runner.transfers = NULL;
    runner.ntransfers = 0;
    if (runner.multi != NULL) {
        curl_multi_cleanup(runner.multi);
        runner.multi = NULL;
    }
    config_free_secret(runner.token);
    runner.token = NULL;
}
