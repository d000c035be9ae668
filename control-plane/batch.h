/*
 * batch: a completion batch written and read (docs/ARCHITECTURE.md,
 * "Batches").  The completion-batch API (api_batches.c) and OpenAI's batch
 * shape (api_openai_batches.c) create through batch_insert(); the runner
 * (batch_runner.c) and the callbacks read the same documents.
 *
 * The callback secret is sealed as a provider secret is (secrets.h), with
 * the batch id as associated data, and stored as the bytes of the blob's
 * text: convert_from(callback_secret, 'UTF8') gives it back to
 * secrets_decrypt(blob, batch_id, ...).
 */

#ifndef CP_BATCH_H
#define CP_BATCH_H

#include <cjson/cJSON.h>

#include "db.h"

#define BATCH_MAX_ITEMS          50000
#define BATCH_CUSTOM_ID_MAX_LEN  512
#define BATCH_POOL_MAX_LEN       200

/* batch_insert()'s answers */
#define BATCH_OK        0
#define BATCH_INVALID   1       /* err names the field: a 400 */
#define BATCH_ERROR    -1       /* err->status: 500, or 503 when the database
                                 * or the secrets' keys are unavailable */

typedef struct {
    int    status;              /* BATCH_ERROR's answer */
    char   field[64];           /* "items[3].request.messages", "" for none */
    char   message[256];
} batch_err_t;

typedef struct {
    const char   *workspace_id, *environment_id;
    const char   *api_key_id;      /* the key the items run under */
    const char   *created_by;      /* user id or NULL */
    const char   *mode;            /* "ASYNC" | "SYNC" | "CALLBACK" */
    const char   *pool;            /* or NULL */
    const char   *callback_url;    /* CALLBACK only */
    const char   *callback_secret; /* CALLBACK only: the HMAC key, in clear; sealed before storing */
    const cJSON  *openai;          /* or NULL: stored in batches.openai */
} batch_new_t;

/*
 * Checks items (an array of {resourceId|resource, request, customId}; at
 * most BATCH_MAX_ITEMS) against the environment and the key (the resource
 * exists in the environment and the key may call it, request is an object
 * with "messages", customId a string of at most BATCH_CUSTOM_ID_MAX_LEN
 * bytes, unique within the batch), the mode, the key (enabled, not expired,
 * of the environment: field "apiKeyId"), the pool (defined in the
 * environment: field "pool") and the callback URL (given exactly in mode
 * CALLBACK: field "callback.url"), then inserts the batch and its items in one
 * transaction (one INSERT of every item) and notifies vmx_batch.  On a bad
 * item: answers nothing, fills err with the field path
 * ("items[3].resourceId") and a message, returns BATCH_INVALID.  On
 * success writes the id (36 chars + NUL) and returns BATCH_OK.
 */
int batch_insert(db_conn_t *c, const batch_new_t *b, const cJSON *items, char id[37],
    batch_err_t *err);

/* the first member of obj not named in members (NULL-terminated), or NULL */
const char *batch_unknown_member(const cJSON *obj, const char *const *members);

/* the batch's document, as GET .../completion-batch/{id} answers it, or
 * NULL (none in that environment, or a database error) */
cJSON *batch_doc(db_conn_t *c, const char *environment_id, const char *id);

/* the item result document of item idx (with its response), or NULL */
cJSON *batch_item_doc(db_conn_t *c, const char *batch_id, int idx);

/*
 * SQL of the documents, for the lists: BATCH_DOC_SQL is the batch document
 * of the batches row "b", BATCH_ITEM_DOC_SQL(response) the item result
 * document of the batch_items row "i", with its response or without.
 */
#define BATCH_DOC_SQL \
    "jsonb_build_object('id', b.id, 'workspaceId', b.workspace_id," \
    " 'environmentId', b.environment_id, 'apiKeyId', b.api_key_id, 'mode', b.mode," \
    " 'status', b.status, 'pool', b.pool, 'callbackUrl', b.callback_url," \
    " 'counts', (SELECT jsonb_build_object('total', b.total," \
    "     'pending', b.total - b.succeeded - b.failed - b.cancelled - r.running," \
    "     'running', r.running, 'succeeded', b.succeeded, 'failed', b.failed," \
    "     'cancelled', b.cancelled)" \
    "   FROM (SELECT count(*) AS running FROM batch_items" \
    "         WHERE batch_id = b.id AND status = 'RUNNING') r)," \
    " 'error', b.error, 'createdAt', vmx_rfc3339(b.created_at)," \
    " 'startedAt', vmx_rfc3339(b.started_at), 'completedAt', vmx_rfc3339(b.completed_at)," \
    " 'cancelledAt', vmx_rfc3339(b.cancelled_at))"

#define BATCH_ITEM_DOC_SQL(response) \
    "jsonb_build_object('index', i.idx, 'customId', i.custom_id, 'resource', i.resource," \
    " 'status', i.status, 'statusCode', i.status_code, " response \
    " 'error', i.error, 'requestId', i.request_id, 'tries', i.tries," \
    " 'startedAt', vmx_rfc3339(i.started_at), 'finishedAt', vmx_rfc3339(i.finished_at)," \
    " 'callback', CASE WHEN i.callback_status IS NOT NULL THEN jsonb_build_object(" \
    "   'status', i.callback_status, 'tries', i.callback_tries," \
    "   'error', i.callback_error) END)"

#define BATCH_ITEM_RESPONSE     "'response', i.response,"
#define BATCH_ITEM_NO_RESPONSE  ""

#endif
