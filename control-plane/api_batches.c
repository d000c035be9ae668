/*
 * api_batches: the completion-batch API (docs/ARCHITECTURE.md, "Batches").
 *
 * A batch is created through batch_insert() (batch.h) and run by the
 * leader's batch runner; this file answers its documents, cancels it, and
 * streams a SYNC batch's items as they end (server-sent events).
 *
 * The caller is a session (allowed completion-batch:* on the environment,
 * naming the key the items run under) or an API key of the environment,
 * which sees the batches it runs and no other.
 *
 * A SYNC stream holds no pooled connection while it waits: every 250 ms it
 * takes one to read the batch's counters, and reads items only when more
 * have ended than it sent.  Items are read in end order (finished_at, idx)
 * after the last one sent, a page at a time; a bitmap of the items sent
 * keeps each one to one event, and when a commit out of time order leaves
 * an ended item behind the cursor, the counters show it and one pass from
 * the start sends it.  Memory is the bitmap and one page, whatever the
 * batch's size.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "batch.h"
#include "log.h"
#include "validate.h"

#define BATCH_STREAM_PAGE          "64"     /* items read at once */
#define BATCH_STREAM_POLL_US       (250 * 1000)
/* well under http.c's 60 s connection timeout */
#define BATCH_STREAM_KEEPALIVE_S   15
#define BATCH_CALLBACK_SECRET_MIN  16
#define BATCH_CALLBACK_SECRET_MAX  256
#define BATCH_CALLBACK_URL_MAX     2048

#define BATCH_ENDED  "('SUCCEEDED', 'FAILED', 'CANCELLED')"
#define BATCH_KEY_PREFIX  "vmx-"      /* every API key's (api_keys.c) */

/* $1 ws, $2 env, $3 the API key that authenticated or NULL */
#define BATCH_VISIBLE \
    " b.workspace_id = $1 AND b.environment_id = $2" \
    " AND ($3::uuid IS NULL OR b.api_key_id = $3)"

typedef struct {
    char            batch_id[UUID_LEN + 1];
    char            environment_id[UUID_LEN + 1];
    char            after_at[64];       /* the cursor: "" before the first item */
    char            after_idx[16];
    unsigned char   sent[BATCH_MAX_ITEMS / 8 + 1];
    int             nsent;
    long            rescanned_at;       /* the ended count of the last pass from the start */
    char           *out;                /* the events not yet read by MHD */
    size_t          out_len, out_read, out_size;
    time_t          last_write;
    bool            ended;              /* the batch event and [DONE] are in out */
} batch_stream_t;


/* the API key that authenticated, as a parameter: NULL for a session */
static const char *
batch_key_param(const http_req_t *req)
{
    return req->api_key_id[0] != '\0' ? req->api_key_id : NULL;
}


bool
api_batches_authenticate(http_req_t *req)
{
    const char *auth = http_header(req, "Authorization");
    const char *params[3] = { req->token_hash, http_param(req, "ws"), http_param(req, "env") };
    PGresult   *res;
    bool        ok;

    /* a session's token is no key: no query for it */
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0
        || strncmp(auth + 7, BATCH_KEY_PREFIX, sizeof(BATCH_KEY_PREFIX) - 1) != 0
        || params[1] == NULL || params[2] == NULL
        || !crypto_is_uuid(params[1]) || !crypto_is_uuid(params[2]))
    {
        return false;
    }
    /* the data plane's hash of a key (api_keys.c), the replaced one in its grace period */
    crypto_sha256_hex(auth + 7, req->token_hash);
    res = db_exec(req->db, "SELECT id, name FROM api_keys"
                           " WHERE (key_hash = $1"
                           "        OR (previous_key_hash = $1 AND previous_expires_at > now()))"
                           "   AND workspace_id = $2 AND environment_id = $3 AND enabled"
                           "   AND (expires_at IS NULL OR expires_at > now())", 3, params);
    ok = res != NULL && PQntuples(res) == 1;
    if (ok) {
        snprintf(req->api_key_id, sizeof(req->api_key_id), "%s", PQgetvalue(res, 0, 0));
        /* who the log lines and the activity name */
        snprintf(req->username, sizeof(req->username), "api-key:%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return ok;
}


/* callback {url, secret?} into b; *generated: the secret made here */
static bool
batch_callback_read(http_req_t *req, batch_new_t *b, char *generated)
{
    static const char *const members[] = { "url", "secret", NULL };
    const cJSON *callback = cJSON_GetObjectItemCaseSensitive(req->json, "callback");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(callback, "url");
    const cJSON *secret = cJSON_GetObjectItemCaseSensitive(callback, "secret");

    if (strcmp(b->mode, "CALLBACK") != 0) {
        if (callback != NULL) {
            http_invalid(req, "callback", "callback is for mode CALLBACK only");
            return false;
        }
        return true;
    }
    if (!cJSON_IsObject(callback)) {
        http_invalid(req, "callback", "mode CALLBACK needs callback {url, secret?}");
        return false;
    }
    if (batch_unknown_member(callback, members) != NULL) {
        http_invalid(req, "callback", "callback has url and secret only");
        return false;
    }
    if (!cJSON_IsString(url) || strlen(url->valuestring) > BATCH_CALLBACK_URL_MAX
        || !val_is_http_url(url->valuestring) || val_is_link_local_url(url->valuestring))
    {
        http_invalid(req, "callback.url", "callback.url must be an http(s) URL of at most %d"
                     " bytes, not link-local", BATCH_CALLBACK_URL_MAX);
        return false;
    }
    b->callback_url = url->valuestring;
    if (secret == NULL) {
        crypto_random_token(generated);
        b->callback_secret = generated;
        return true;
    }
    if (!cJSON_IsString(secret) || strlen(secret->valuestring) < BATCH_CALLBACK_SECRET_MIN
        || strlen(secret->valuestring) > BATCH_CALLBACK_SECRET_MAX)
    {
        http_invalid(req, "callback.secret", "callback.secret must be a string of %d to %d"
                     " bytes", BATCH_CALLBACK_SECRET_MIN, BATCH_CALLBACK_SECRET_MAX);
        return false;
    }
    b->callback_secret = secret->valuestring;
    return true;
}


/* the body's members other than items into b; false after answering 400 */
static bool
batch_body_read(http_req_t *req, batch_new_t *b, char *generated_secret)
{
    static const char *const members[] = {
        "mode", "items", "pool", "callback", "apiKeyId", NULL
    };
    const cJSON *mode, *pool, *key;
    const char  *unknown = batch_unknown_member(req->json, members);

    if (unknown != NULL) {
        http_invalid(req, unknown, "%s is not a member of a batch", unknown);
        return false;
    }

    mode = cJSON_GetObjectItemCaseSensitive(req->json, "mode");
    if (!cJSON_IsString(mode)) {
        http_invalid(req, "mode", "mode must be ASYNC, SYNC or CALLBACK");
        return false;
    }
    b->mode = mode->valuestring;

    pool = cJSON_GetObjectItemCaseSensitive(req->json, "pool");
    if (pool != NULL && !cJSON_IsNull(pool)) {
        if (!cJSON_IsString(pool)) {
            http_invalid(req, "pool", "pool must be the name of a pool");
            return false;
        }
        b->pool = pool->valuestring;
    }

    /* a session names the key; a key runs its own batches */
    key = cJSON_GetObjectItemCaseSensitive(req->json, "apiKeyId");
    if (req->api_key_id[0] != '\0') {
        if (key != NULL && !(cJSON_IsString(key)
                             && strcmp(key->valuestring, req->api_key_id) == 0))
        {
            http_invalid(req, "apiKeyId", "apiKeyId must be the key that authenticates");
            return false;
        }
        b->api_key_id = req->api_key_id;
    } else {
        if (!cJSON_IsString(key)) {
            http_invalid(req, "apiKeyId",
                         "apiKeyId must name the API key the items run under");
            return false;
        }
        b->api_key_id = key->valuestring;
    }
    return batch_callback_read(req, b, generated_secret);
}


/* appends n bytes to the stream's pending events; -1 when out of memory */
static int
batch_stream_add(batch_stream_t *s, const char *data, size_t n)
{
    if (s->out_len + n > s->out_size) {
        size_t  size = (s->out_len + n) * 2;
        char   *grown = realloc(s->out, size);

        if (grown == NULL) {
            return -1;
        }
        s->out = grown;
        s->out_size = size;
    }
    memcpy(s->out + s->out_len, data, n);
    s->out_len += n;
    return 0;
}


/* "event: <event>\ndata: <data>\n\n" (data: one line of JSON) */
static int
batch_stream_event(batch_stream_t *s, const char *event, const char *data)
{
    return batch_stream_add(s, "event: ", 7) != 0
           || batch_stream_add(s, event, strlen(event)) != 0
           || batch_stream_add(s, "\ndata: ", 7) != 0
           || batch_stream_add(s, data, strlen(data)) != 0
           || batch_stream_add(s, "\n\n", 2) != 0 ? -1 : 0;
}


/* the next page of ended items after the cursor, the ones not yet sent as
 * events; the number of rows read, -1 on error */
static int
batch_stream_page(batch_stream_t *s, db_conn_t *c)
{
    bool        cursor = s->after_at[0] != '\0';
    const char *params[4] = { s->batch_id, cursor ? s->after_at : NULL,
                              cursor ? s->after_idx : NULL, BATCH_STREAM_PAGE };
    PGresult   *res;
    int         n;

    res = db_exec(c, "SELECT i.idx, coalesce(i.finished_at, 'infinity')::text, "
                     BATCH_ITEM_DOC_SQL(BATCH_ITEM_RESPONSE) "::text"
                     " FROM batch_items i"
                     " WHERE i.batch_id = $1 AND i.status IN " BATCH_ENDED
                     "   AND ($2::timestamptz IS NULL"
                     "        OR (coalesce(i.finished_at, 'infinity'), i.idx)"
                     "           > ($2::timestamptz, $3::int))"
                     " ORDER BY coalesce(i.finished_at, 'infinity'), i.idx"
                     " LIMIT $4", 4, params);
    if (res == NULL) {
        return -1;
    }
    n = PQntuples(res);
    for (int r = 0; r < n; r++) {
        int idx = atoi(PQgetvalue(res, r, 0));

        if (idx < 0 || idx >= BATCH_MAX_ITEMS) {
            continue;
        }
        if (!(s->sent[idx / 8] & (1u << (idx % 8)))) {
            if (batch_stream_event(s, "item", PQgetvalue(res, r, 2)) != 0) {
                PQclear(res);
                return -1;
            }
            s->sent[idx / 8] |= (unsigned char) (1u << (idx % 8));
            s->nsent++;
        }
        snprintf(s->after_at, sizeof(s->after_at), "%s", PQgetvalue(res, r, 1));
        snprintf(s->after_idx, sizeof(s->after_idx), "%d", idx);
    }
    PQclear(res);
    return n;
}


/* the batch's document, [DONE], and the stream's end */
static int
batch_stream_end(batch_stream_t *s, db_conn_t *c)
{
    cJSON *doc = batch_doc(c, s->environment_id, s->batch_id);
    char  *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    int    rc;

    cJSON_Delete(doc);
    rc = text == NULL || batch_stream_event(s, "batch", text) != 0
         || batch_stream_add(s, "data: [DONE]\n\n", 14) != 0 ? -1 : 0;
    free(text);
    s->ended = true;
    return rc;
}


/* the events that are due now into out; -1 when the stream must end */
static int
batch_stream_fill(batch_stream_t *s, db_conn_t *c)
{
    const char *params[2] = { s->batch_id, s->environment_id };
    PGresult   *res;
    bool        over;
    long        ended;
    int         rows;

    res = db_exec(c, "SELECT status IN ('COMPLETED', 'CANCELLED', 'FAILED'),"
                     " succeeded + failed + cancelled"
                     " FROM batches WHERE id = $1 AND environment_id = $2", 2, params);
    if (res == NULL || PQntuples(res) != 1) {
        /* deleted with its environment, or the database is away */
        rows = res == NULL && db_unavailable(c) ? 0 : -1;
        PQclear(res);
        return rows;
    }
    over = PQgetvalue(res, 0, 0)[0] == 't';
    ended = atol(PQgetvalue(res, 0, 1));
    PQclear(res);

    /* pages of items sent already (a pass from the start) are read on at once */
    while (s->nsent < ended) {
        size_t before = s->out_len;

        rows = batch_stream_page(s, c);
        if (rows < 0) {
            return -1;
        }
        if (s->out_len > before) {
            return 0;
        }
        if (rows == 0) {
            if (s->rescanned_at == ended) {
                break;
            }
            /* an item committed behind the cursor: one pass from the start */
            s->rescanned_at = ended;
            s->after_at[0] = '\0';
        }
    }
    return over ? batch_stream_end(s, c) : 0;
}


static ssize_t
batch_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    batch_stream_t *s = cls;
    db_conn_t      *c;
    int             rc;

    (void) pos;
    for ( ;; ) {
        if (s->out_read < s->out_len) {
            size_t n = s->out_len - s->out_read < max ? s->out_len - s->out_read : max;

            memcpy(buf, s->out + s->out_read, n);
            s->out_read += n;
            s->last_write = time(NULL);
            return (ssize_t) n;
        }
        if (s->ended || http_stopping()) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        s->out_len = 0;
        s->out_read = 0;

        /* the database away: the stream waits for it, with keep-alives */
        c = db_acquire();
        rc = 0;
        if (c != NULL) {
            rc = batch_stream_fill(s, c);
            db_release(c);
        }
        if (rc != 0) {
            log_warn("batch: id=%s the stream ends early (sent=%d)", s->batch_id, s->nsent);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (s->out_len > 0) {
            continue;
        }
        if (time(NULL) - s->last_write >= BATCH_STREAM_KEEPALIVE_S) {
            if (batch_stream_add(s, ": keep-alive\n\n", 14) != 0) {
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        usleep(BATCH_STREAM_POLL_US);
    }
}


static void
batch_stream_free(void *cls)
{
    batch_stream_t *s = cls;

    free(s->out);
    free(s);
}


/* answers the SYNC batch id as a stream of events */
static void
batch_stream_start(http_req_t *req, const char *id)
{
    batch_stream_t *s = calloc(1, sizeof(batch_stream_t));

    if (s == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return;
    }
    snprintf(s->batch_id, sizeof(s->batch_id), "%s", id);
    snprintf(s->environment_id, sizeof(s->environment_id), "%s", http_param(req, "env"));
    s->rescanned_at = -1;
    s->last_write = time(NULL);
    /* sent at once, so that the client has the answer's head and the id */
    if (batch_stream_add(s, ": batch ", 8) != 0 || batch_stream_add(s, id, UUID_LEN) != 0
        || batch_stream_add(s, "\n\n", 2) != 0)
    {
        batch_stream_free(s);
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return;
    }
    http_reply_stream(req, 200, "text/event-stream", batch_stream_read, batch_stream_free, s);
}


void
api_batches_create(http_req_t *req)
{
    batch_new_t  b = { .workspace_id = http_param(req, "ws"),
                       .environment_id = http_param(req, "env"),
                       .created_by = req->user_id[0] ? req->user_id : NULL };
    batch_err_t  err;
    char         id[UUID_LEN + 1];
    char         generated[TOKEN_B64_LEN + 1] = "";
    cJSON       *doc;
    int          rc;

    if (!batch_body_read(req, &b, generated)) {
        return;
    }
    rc = batch_insert(req->db, &b, cJSON_GetObjectItemCaseSensitive(req->json, "items"), id,
                      &err);
    if (rc == BATCH_INVALID) {
        http_invalid(req, err.field[0] ? err.field : NULL, "%s", err.message);
        return;
    }
    if (rc != BATCH_OK) {
        http_error(req, err.status, err.status == 503 ? "unavailable" : "internal_error",
                   NULL, "%s", err.message);
        return;
    }
    if (strcmp(b.mode, "SYNC") == 0) {
        batch_stream_start(req, id);
        return;
    }
    doc = batch_doc(req->db, b.environment_id, id);
    if (doc == NULL) {
        http_error(req, 500, "internal_error", NULL, "the batch could not be read");
        return;
    }
    /* the only time it is shown */
    if (generated[0] != '\0') {
        cJSON_AddStringToObject(doc, "callbackSecret", generated);
    }
    http_reply(req, 202, doc);
}


void
api_batches_list(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              batch_key_param(req) };

    doc_reply_list_newest(req, "SELECT " BATCH_DOC_SQL " AS doc, b.created_at, b.id"
                               " FROM batches b WHERE" BATCH_VISIBLE, 3, params);
}


void
api_batches_get(http_req_t *req)
{
    const char *params[4] = { http_param(req, "ws"), http_param(req, "env"),
                              batch_key_param(req), http_param(req, "id") };

    doc_reply(req, 200, "SELECT " BATCH_DOC_SQL "::text FROM batches b"
                        " WHERE" BATCH_VISIBLE " AND b.id = $4", 4, params, "batch");
}


/* whether {id} is a batch the caller sees; false after answering 404 / 500 */
static bool
batch_visible(http_req_t *req)
{
    const char *params[4] = { http_param(req, "ws"), http_param(req, "env"),
                              batch_key_param(req), http_param(req, "id") };
    PGresult   *res = db_exec(req->db, "SELECT 1 FROM batches b"
                                       " WHERE" BATCH_VISIBLE " AND b.id = $4", 4, params);
    bool        found = res != NULL && PQntuples(res) == 1;

    if (res == NULL) {
        http_db_error(req, "batch");
    } else if (!found) {
        http_not_found(req, "batch");
    }
    PQclear(res);
    return found;
}


/* the items of {id}, paginated by index, ?status= filtered */
static void
batch_items_reply(http_req_t *req, const char *sql)
{
    static const char *const states[] = {
        "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
    };
    const char *status = http_query(req, "status");
    const char *params[2] = { http_param(req, "id"), status };
    size_t      s = 0;

    if (status != NULL) {
        while (s < sizeof(states) / sizeof(states[0]) && strcmp(states[s], status) != 0) {
            s++;
        }
        if (s == sizeof(states) / sizeof(states[0])) {
            http_invalid(req, "status", "status must be PENDING, RUNNING, SUCCEEDED, FAILED"
                         " or CANCELLED");
            return;
        }
    }
    if (batch_visible(req)) {
        doc_reply_list(req, sql, 2, params);
    }
}


#define BATCH_ITEMS_OF(response) \
    "SELECT " BATCH_ITEM_DOC_SQL(response) " AS doc, i.idx AS created_at, i.idx AS id" \
    " FROM batch_items i WHERE i.batch_id = $1 AND ($2::text IS NULL OR i.status = $2)"


void
api_batches_items(http_req_t *req)
{
    batch_items_reply(req, BATCH_ITEMS_OF(BATCH_ITEM_NO_RESPONSE));
}


void
api_batches_results(http_req_t *req)
{
    batch_items_reply(req, BATCH_ITEMS_OF(BATCH_ITEM_RESPONSE));
}


/*
 * POST .../completion-batch/{id}/cancel: the batch is CANCELLING and its
 * PENDING items CANCELLED, in one transaction; with nothing RUNNING it is
 * CANCELLED at once, else the runner ends it when its running items end.
 * The items' update waits for a runner's claim in flight, so the second
 * statement sees any item it made RUNNING.
 */
void
api_batches_cancel(http_req_t *req)
{
    const char *params[4] = { http_param(req, "ws"), http_param(req, "env"),
                              batch_key_param(req), http_param(req, "id") };
    PGresult   *res;
    cJSON      *doc;
    bool        open;

    if (db_begin(req->db) != 0) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }
    res = db_exec(req->db, "SELECT b.status IN ('QUEUED', 'RUNNING', 'CANCELLING')"
                           " FROM batches b WHERE" BATCH_VISIBLE " AND b.id = $4 FOR UPDATE",
                  4, params);
    if (res == NULL || PQntuples(res) != 1) {
        db_rollback(req->db);
        if (res == NULL) {
            http_db_error(req, "batch");
        } else {
            http_not_found(req, "batch");
        }
        PQclear(res);
        return;
    }
    open = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!open) {
        db_rollback(req->db);
        http_error(req, 409, "batch_not_cancellable", NULL, "the batch has already ended");
        return;
    }

    /* an ended item of a CALLBACK batch is the runner's to deliver */
    if (db_run(req->db, "WITH c AS (UPDATE batch_items i SET status = 'CANCELLED',"
                        "   finished_at = now(),"
                        "   callback_status = CASE WHEN b.mode = 'CALLBACK' THEN 'PENDING' END,"
                        "   callback_next_at = CASE WHEN b.mode = 'CALLBACK' THEN now() END"
                        "   FROM batches b"
                        "   WHERE b.id = $1 AND i.batch_id = b.id AND i.status = 'PENDING'"
                        "   RETURNING 1)"
                        " UPDATE batches SET status = 'CANCELLING',"
                        "   cancelled_at = coalesce(cancelled_at, now()),"
                        "   cancelled = cancelled + (SELECT count(*) FROM c)"
                        " WHERE id = $1", 1, params + 3) != 0
        || db_run(req->db, "UPDATE batches b SET status = 'CANCELLED', completed_at = now(),"
                           "   callback_status = CASE WHEN b.mode = 'CALLBACK'"
                           "                     THEN 'PENDING' END,"
                           "   callback_next_at = CASE WHEN b.mode = 'CALLBACK'"
                           "                      THEN now() END"
                           " WHERE b.id = $1 AND NOT EXISTS (SELECT 1 FROM batch_items i"
                           "   WHERE i.batch_id = b.id AND i.status = 'RUNNING')",
                  1, params + 3) != 0
        || db_run(req->db, "SELECT pg_notify('vmx_batch', $1)", 1, params + 3) != 0
        || db_commit(req->db) != 0)
    {
        db_rollback(req->db);
        http_db_error(req, "batch");
        return;
    }
    log_info("batch: id=%s cancelled by %s", params[3], req->username);

    doc = batch_doc(req->db, params[1], params[3]);
    if (doc == NULL) {
        http_error(req, 500, "internal_error", NULL, "the batch could not be read");
        return;
    }
    http_reply(req, 200, doc);
}
