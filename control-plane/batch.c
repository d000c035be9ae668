/*
 * batch: the creation of a batch and the reads of its documents, shared by
 * the completion-batch API, OpenAI's batch shape and the runner.
 *
 * A batch is checked whole before anything is written: the key, the pool,
 * then every item against the environment's resources (read once, not per
 * item) and the key's list; its custom ids are sorted to find a repeat.
 * The batch and its items are then inserted in one transaction, the items
 * by one INSERT that unnests the JSON array.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "crypto.h"
#include "keyring.h"
#include "log.h"
#include "secrets.h"

/* an environment's resource, and whether the batch's key may call it */
typedef struct {
    char   id[UUID_LEN + 1];
    char  *name;                /* into the PGresult */
    bool   allowed;
} batch_resource_t;

typedef struct {
    PGresult          *res;
    batch_resource_t  *list;
    int                n;
} batch_resources_t;

/* a custom id and its item, for the search of a repeat */
typedef struct {
    const char  *custom_id;
    int          idx;
} batch_custom_id_t;


static int batch_invalid(batch_err_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
batch_invalid(batch_err_t *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return BATCH_INVALID;
}


static int
batch_failed(batch_err_t *err, int status, const char *what)
{
    err->status = status;
    err->field[0] = '\0';
    snprintf(err->message, sizeof(err->message), "%s", what);
    return BATCH_ERROR;
}


/* the key: of the environment, enabled and not expired */
static int
batch_check_key(db_conn_t *c, const batch_new_t *b, batch_err_t *err)
{
    const char *params[2] = { b->api_key_id, b->environment_id };
    PGresult   *res;
    int         rc;

    if (b->api_key_id == NULL || !crypto_is_uuid(b->api_key_id)) {
        return batch_invalid(err, "apiKeyId", "apiKeyId must be the id of an API key");
    }
    res = db_exec(c, "SELECT enabled AND (expires_at IS NULL OR expires_at > now())"
                     " FROM api_keys WHERE id = $1 AND environment_id = $2", 2, params);
    if (res == NULL) {
        return batch_failed(err, db_unavailable(c) ? 503 : 500, "the key could not be read");
    }
    if (PQntuples(res) == 0) {
        rc = batch_invalid(err, "apiKeyId", "apiKeyId is no API key of this environment");
    } else if (PQgetvalue(res, 0, 0)[0] != 't') {
        rc = batch_invalid(err, "apiKeyId", "the API key is disabled or expired");
    } else {
        rc = BATCH_OK;
    }
    PQclear(res);
    return rc;
}


/* the pool, when given: one of the environment's pool definition */
static int
batch_check_pool(db_conn_t *c, const batch_new_t *b, batch_err_t *err)
{
    const char *params[2] = { b->environment_id, b->pool };
    PGresult   *res;
    int         rc;

    if (b->pool == NULL) {
        return BATCH_OK;
    }
    if (b->pool[0] == '\0' || strlen(b->pool) > BATCH_POOL_MAX_LEN) {
        return batch_invalid(err, "pool", "pool must be the name of a pool (at most %d bytes)",
                             BATCH_POOL_MAX_LEN);
    }
    res = db_exec(c, "SELECT 1 FROM pool_definitions d, jsonb_array_elements(d.pools) p"
                     " WHERE d.environment_id = $1 AND p->>'name' = $2", 2, params);
    if (res == NULL) {
        return batch_failed(err, db_unavailable(c) ? 503 : 500, "the pools could not be read");
    }
    rc = PQntuples(res) > 0
         ? BATCH_OK
         : batch_invalid(err, "pool", "pool %s is not defined in this environment", b->pool);
    PQclear(res);
    return rc;
}


/* the environment's resources, read once for every item */
static int
batch_resources_read(db_conn_t *c, const batch_new_t *b, batch_resources_t *rs,
    batch_err_t *err)
{
    const char *params[2] = { b->environment_id, b->api_key_id };

    rs->res = db_exec(c, "SELECT r.id, r.name, coalesce(k.resources ? r.id::text, false)"
                         " FROM resources r"
                         " LEFT JOIN api_keys k ON k.id = $2 AND k.environment_id = $1"
                         " WHERE r.environment_id = $1", 2, params);
    if (rs->res == NULL) {
        return batch_failed(err, db_unavailable(c) ? 503 : 500,
                            "the resources could not be read");
    }
    rs->n = PQntuples(rs->res);
    rs->list = calloc((size_t) rs->n + 1, sizeof(batch_resource_t));
    if (rs->list == NULL) {
        return batch_failed(err, 500, "out of memory");
    }
    for (int i = 0; i < rs->n; i++) {
        snprintf(rs->list[i].id, sizeof(rs->list[i].id), "%s", PQgetvalue(rs->res, i, 0));
        rs->list[i].name = PQgetvalue(rs->res, i, 1);
        rs->list[i].allowed = PQgetvalue(rs->res, i, 2)[0] == 't';
    }
    return BATCH_OK;
}


static void
batch_resources_free(batch_resources_t *rs)
{
    free(rs->list);
    PQclear(rs->res);
}


/*
 * The resource item i names (resourceId or resource: its name, exactly one
 * of them), which the key may call; NULL with err filled.
 */
static const batch_resource_t *
batch_item_resource(const batch_resources_t *rs, const cJSON *item, int i, batch_err_t *err)
{
    const cJSON *by_id = cJSON_GetObjectItemCaseSensitive(item, "resourceId");
    const cJSON *by_name = cJSON_GetObjectItemCaseSensitive(item, "resource");
    const cJSON *given = by_id ? by_id : by_name;
    const char  *member = by_id ? "resourceId" : "resource";
    char         field[64];

    snprintf(field, sizeof(field), "items[%d].%s", i, member);
    if ((by_id == NULL) == (by_name == NULL)) {
        snprintf(field, sizeof(field), "items[%d]", i);
        batch_invalid(err, field, "%s needs exactly one of resourceId and resource", field);
        return NULL;
    }
    if (!cJSON_IsString(given)) {
        batch_invalid(err, field, "%s must be a string", field);
        return NULL;
    }
    for (int r = 0; r < rs->n; r++) {
        const batch_resource_t *res = &rs->list[r];

        if (strcmp(by_id ? res->id : res->name, given->valuestring) != 0) {
            continue;
        }
        if (!res->allowed) {
            batch_invalid(err, field, "%s: the API key may not call resource %s", field,
                          res->name);
            return NULL;
        }
        return res;
    }
    batch_invalid(err, field, "%s is no resource of this environment", field);
    return NULL;
}


/* request: a chat completion body, which the runner sends whole (no stream) */
static int
batch_check_request(const cJSON *item, int i, batch_err_t *err)
{
    const cJSON *request = cJSON_GetObjectItemCaseSensitive(item, "request");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(request, "messages");
    char         field[64];

    snprintf(field, sizeof(field), "items[%d].request", i);
    if (!cJSON_IsObject(request)) {
        return batch_invalid(err, field, "%s must be an object", field);
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(request, "stream"))) {
        snprintf(field, sizeof(field), "items[%d].request.stream", i);
        return batch_invalid(err, field, "%s: a batch item cannot stream", field);
    }
    snprintf(field, sizeof(field), "items[%d].request.messages", i);
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        return batch_invalid(err, field, "%s must be a non-empty array", field);
    }
    return BATCH_OK;
}


static int
batch_custom_id_cmp(const void *a, const void *b)
{
    const batch_custom_id_t *x = a, *y = b;
    int                      rc = strcmp(x->custom_id, y->custom_id);

    return rc != 0 ? rc : x->idx - y->idx;
}


/*
 * Checks every item and collects the resource names (references into rs)
 * into names, in the items' order.
 */
static int
batch_check_items(const batch_resources_t *rs, const cJSON *items, cJSON *names,
    batch_err_t *err)
{
    static const char *const members[] = {
        "resourceId", "resource", "request", "customId", NULL
    };
    const cJSON             *item;
    batch_custom_id_t       *ids;
    int                      nids = 0, i = 0, rc = BATCH_OK;
    char                     field[64];

    ids = malloc(sizeof(batch_custom_id_t) * (size_t) cJSON_GetArraySize(items));
    if (ids == NULL) {
        return batch_failed(err, 500, "out of memory");
    }
    cJSON_ArrayForEach(item, items) {
        const batch_resource_t *res;
        const cJSON            *custom_id;
        const char             *unknown;

        snprintf(field, sizeof(field), "items[%d]", i);
        if (!cJSON_IsObject(item)) {
            rc = batch_invalid(err, field, "%s must be an object", field);
            break;
        }
        unknown = batch_unknown_member(item, members);
        if (unknown != NULL) {
            snprintf(field, sizeof(field), "items[%d].%.32s", i, unknown);
            rc = batch_invalid(err, field, "%s is not a member of a batch item", field);
            break;
        }
        res = batch_item_resource(rs, item, i, err);
        if (res == NULL) {
            rc = BATCH_INVALID;
            break;
        }
        rc = batch_check_request(item, i, err);
        if (rc != BATCH_OK) {
            break;
        }
        custom_id = cJSON_GetObjectItemCaseSensitive(item, "customId");
        if (custom_id != NULL) {
            snprintf(field, sizeof(field), "items[%d].customId", i);
            if (!cJSON_IsString(custom_id)
                || strlen(custom_id->valuestring) > BATCH_CUSTOM_ID_MAX_LEN)
            {
                rc = batch_invalid(err, field, "%s must be a string of at most %d bytes",
                                   field, BATCH_CUSTOM_ID_MAX_LEN);
                break;
            }
            ids[nids].custom_id = custom_id->valuestring;
            ids[nids++].idx = i;
        }
        cJSON_AddItemToArray(names, cJSON_CreateStringReference(res->name));
        i++;
    }

    if (rc == BATCH_OK && nids > 1) {
        qsort(ids, (size_t) nids, sizeof(ids[0]), batch_custom_id_cmp);
        for (int k = 1; k < nids; k++) {
            if (strcmp(ids[k - 1].custom_id, ids[k].custom_id) == 0) {
                snprintf(field, sizeof(field), "items[%d].customId", ids[k].idx);
                rc = batch_invalid(err, field, "%s repeats the customId of items[%d]",
                                   field, ids[k - 1].idx);
                break;
            }
        }
    }
    free(ids);
    return rc;
}


/* callback_secret sealed under the active key, with the batch id as associated data */
static char *
batch_seal_secret(db_conn_t *c, const char *secret, const char *id, batch_err_t *err)
{
    char             key_id[SECRETS_KEY_ID_LEN + 1];
    secrets_error_t  serr;
    char            *blob;

    blob = keyring_active(c, key_id, &serr) == 0
           ? secrets_encrypt(secret, id, key_id, &serr) : NULL;
    if (blob == NULL) {
        batch_failed(err, serr.status, "the callback secret could not be sealed");
        log_error("batch: id=%s the callback secret could not be sealed: %s", id,
                  serr.message);
    }
    return blob;
}


/* the rows, in the transaction batch_insert() opened */
static int
batch_write(db_conn_t *c, const batch_new_t *b, const cJSON *items, const cJSON *names,
    const char *id, batch_err_t *err)
{
    char       *items_text = cJSON_PrintUnformatted(items);
    char       *names_text = cJSON_PrintUnformatted(names);
    char       *openai_text = b->openai ? cJSON_PrintUnformatted(b->openai) : NULL;
    char       *sealed = NULL;
    char        total[16];
    int         rc = BATCH_OK;
    const char *params[11] = {
        id, b->workspace_id, b->environment_id, b->api_key_id, b->created_by, b->mode,
        b->pool, b->callback_url, NULL, total, openai_text
    };
    const char *item_params[3] = { id, items_text, names_text };

    snprintf(total, sizeof(total), "%d", cJSON_GetArraySize(items));
    if (items_text == NULL || names_text == NULL || (b->openai && openai_text == NULL)) {
        rc = batch_failed(err, 500, "out of memory");
        goto done;
    }
    if (b->callback_secret != NULL) {
        sealed = batch_seal_secret(c, b->callback_secret, id, err);
        if (sealed == NULL) {
            rc = BATCH_ERROR;
            goto done;
        }
        params[8] = sealed;
    }

    if (db_run(c, "INSERT INTO batches (id, workspace_id, environment_id, api_key_id,"
                  " created_by, mode, pool, callback_url, callback_secret, total, openai)"
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, convert_to($9, 'UTF8'), $10,"
                  " $11::jsonb)", 11, params) != 0
        || db_run(c, "INSERT INTO batch_items (batch_id, idx, custom_id, resource, request)"
                     " SELECT $1, e.n - 1, e.item->>'customId', e.name, e.item->'request'"
                     " FROM ROWS FROM (jsonb_array_elements($2::jsonb),"
                     "                 jsonb_array_elements_text($3::jsonb))"
                     "      WITH ORDINALITY AS e(item, name, n)", 3, item_params) != 0
        || db_run(c, "SELECT pg_notify('vmx_batch', $1)", 1, params) != 0)
    {
        rc = batch_failed(err, db_unavailable(c) ? 503 : 500, "the batch could not be written");
    }

done:
    secrets_free(sealed);
    free(items_text);
    free(names_text);
    free(openai_text);
    return rc;
}


int
batch_insert(db_conn_t *c, const batch_new_t *b, const cJSON *items, char id[37],
    batch_err_t *err)
{
    batch_resources_t  rs = { NULL, NULL, 0 };
    cJSON             *names = NULL;
    int                n, rc;

    err->status = 400;
    err->field[0] = '\0';
    err->message[0] = '\0';

    if (b->mode == NULL
        || (strcmp(b->mode, "ASYNC") != 0 && strcmp(b->mode, "SYNC") != 0
            && strcmp(b->mode, "CALLBACK") != 0))
    {
        return batch_invalid(err, "mode", "mode must be ASYNC, SYNC or CALLBACK");
    }
    if ((strcmp(b->mode, "CALLBACK") == 0) != (b->callback_url != NULL)) {
        return batch_invalid(err, "callback.url", "a callback URL is for mode CALLBACK only,"
                             " and needed there");
    }
    n = cJSON_GetArraySize(items);
    if (!cJSON_IsArray(items) || n == 0 || n > BATCH_MAX_ITEMS) {
        return batch_invalid(err, "items", "items must be an array of 1 to %d items",
                             BATCH_MAX_ITEMS);
    }

    if (db_begin(c) != 0) {
        return batch_failed(err, 503, "the database is unreachable");
    }
    crypto_uuid_v4(id);
    rc = batch_check_key(c, b, err);
    if (rc == BATCH_OK) {
        rc = batch_check_pool(c, b, err);
    }
    if (rc == BATCH_OK) {
        rc = batch_resources_read(c, b, &rs, err);
    }
    if (rc == BATCH_OK) {
        names = cJSON_CreateArray();
        rc = names ? batch_check_items(&rs, items, names, err)
                   : batch_failed(err, 500, "out of memory");
    }
    if (rc == BATCH_OK) {
        rc = batch_write(c, b, items, names, id, err);
    }
    cJSON_Delete(names);
    batch_resources_free(&rs);

    if (rc != BATCH_OK) {
        db_rollback(c);
        return rc;
    }
    if (db_commit(c) != 0) {
        return batch_failed(err, 503, "the batch could not be committed");
    }
    log_info("batch: id=%s environment=%s mode=%s items=%d created", id, b->environment_id,
             b->mode, n);
    return BATCH_OK;
}


const char *
batch_unknown_member(const cJSON *obj, const char *const *members)
{
    const cJSON *member;
    size_t       m;

    cJSON_ArrayForEach(member, obj) {
        for (m = 0; members[m] != NULL && strcmp(members[m], member->string) != 0; m++) {
            /* look further */
        }
        if (members[m] == NULL) {
            return member->string;
        }
    }
    return NULL;
}


cJSON *
batch_doc(db_conn_t *c, const char *environment_id, const char *id)
{
    const char *params[2] = { id, environment_id };

    return db_json(c, "SELECT " BATCH_DOC_SQL "::text FROM batches b"
                      " WHERE b.id = $1 AND b.environment_id = $2", 2, params);
}


cJSON *
batch_item_doc(db_conn_t *c, const char *batch_id, int idx)
{
    char        index[16];
    const char *params[2] = { batch_id, index };

    snprintf(index, sizeof(index), "%d", idx);
    return db_json(c, "SELECT " BATCH_ITEM_DOC_SQL(BATCH_ITEM_RESPONSE) "::text"
                      " FROM batch_items i WHERE i.batch_id = $1 AND i.idx = $2", 2, params);
}
