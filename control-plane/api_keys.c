/*
 * api_keys: API keys of an environment.
 *
 * A key is "vmx-" + base64url(32 random bytes).  Only its SHA-256 (lowercase
 * hex, what the data plane looks up) and a masked form are stored; the key
 * itself is in the create and rotate responses and nowhere else.  A
 * rotation gives the key object a new key and keeps the hash of the one it
 * replaces, with the end of its grace period, for the data plane.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "validate.h"

#define KEY_PREFIX  "vmx-"
#define KEY_LEN     (sizeof(KEY_PREFIX) - 1 + TOKEN_B64_LEN)
#define MASKED_SIZE (8 + 3 + 4 + 1)
#define GRACE_MAX   (30 * 24 * 3600)

static const char *const writable[] = {
    "name", "description", "enabled", "resources", "labels", "enforceCapacity",
    "capacity", "expiresAt", NULL
};
static const char *const readonly[] = {
    "maskedKey", "key", "previousKeyExpiresAt", "lastUsedAt", NULL
};

#define DOC_BY_ID \
    "SELECT doc::text FROM api_key_docs" \
    " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3"


static bool
validate_resources(http_req_t *req, const cJSON *doc)
{
    const cJSON *item;
    char         field[64];
    int          i = 0;

    if (!val_string_array(req, doc, "resources")) {
        return false;
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(doc, "resources")) {
        const char *params[2] = { item->valuestring, http_param(req, "env") };
        PGresult   *res = NULL;
        bool        found = false;

        snprintf(field, sizeof(field), "resources[%d]", i++);
        if (crypto_is_uuid(item->valuestring)) {
            res = db_exec(req->db, "SELECT 1 FROM resources"
                                   " WHERE id = $1 AND environment_id = $2", 2, params);
            if (res == NULL) {
                http_db_error(req, "resource");
                return false;
            }
            found = PQntuples(res) == 1;
            PQclear(res);
        }
        if (!found) {
            http_invalid(req, field, "%s is no resource of this environment", field);
            return false;
        }
    }
    return true;
}


/* doc: the defaults; stored: the key as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    return val_merge(req, doc, stored, writable, readonly) && val_name(req, doc)
           && val_string(req, doc, "description", DESCRIPTION_MAX_LEN)
           && val_bool(req, doc, "enabled")
           && validate_resources(req, doc)
           && val_labels(req, doc, "labels")
           && val_bool(req, doc, "enforceCapacity")
           && val_capacity(req, doc, "capacity")
           && val_timestamp(req, doc, "expiresAt");
}


static cJSON *
defaults(void)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddTrueToObject(doc, "enabled");
    cJSON_AddArrayToObject(doc, "resources");
    cJSON_AddObjectToObject(doc, "labels");
    cJSON_AddFalseToObject(doc, "enforceCapacity");
    cJSON_AddArrayToObject(doc, "capacity");
    return doc;
}


/* writes the row; key_hash and masked are NULL on update (they never change) */
static PGresult *
write_row(http_req_t *req, const cJSON *doc, const char *id, const char *key_hash,
    const char *masked)
{
    char       *resources = doc_json(doc, "resources");
    char       *labels = doc_json(doc, "labels");
    char       *capacity = doc_json(doc, "capacity");
    char       *expires_at = doc_json(doc, "expiresAt");
    const char *params[13] = {
        http_param(req, "ws"), http_param(req, "env"), id,
        doc_str(doc, "name"), doc_str(doc, "description"), doc_bool(doc, "enabled"),
        resources, labels, doc_bool(doc, "enforceCapacity"), capacity, expires_at,
        key_hash, masked
    };
    PGresult   *res;

    /* expiresAt: a JSON string or null, read as text or NULL */
    res = key_hash != NULL
        ? db_exec(req->db,
                  "INSERT INTO api_keys (workspace_id, environment_id, id, name, description,"
                  " enabled, resources, labels, enforce_capacity, capacity, expires_at,"
                  " key_hash, masked_key)"
                  " SELECT workspace_id, id, $3, $4, $5, $6, $7, $8, $9, $10,"
                  " ($11::jsonb #>> '{}')::timestamptz, $12, $13"
                  " FROM environments WHERE workspace_id = $1 AND id = $2", 13, params)
        : db_exec(req->db,
                  "UPDATE api_keys SET name = $4, description = $5, enabled = $6,"
                  " resources = $7, labels = $8, enforce_capacity = $9, capacity = $10,"
                  " expires_at = ($11::jsonb #>> '{}')::timestamptz, updated_at = now()"
                  " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
                  11, params);
    free(resources);
    free(labels);
    free(capacity);
    free(expires_at);
    return res;
}


void
api_keys_list(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    doc_reply_list(req, "SELECT doc, created_at, id FROM api_key_docs"
                        " WHERE workspace_id = $1 AND environment_id = $2", 2, params);
}


void
api_keys_get(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    doc_reply(req, 200, DOC_BY_ID, 3, params, "API key");
}


/* a new key, its hash and its masked form */
static void
new_key(char key[KEY_LEN + 1], char hash[SHA256_HEX_LEN + 1], char masked[MASKED_SIZE])
{
    memcpy(key, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    crypto_random_token(key + sizeof(KEY_PREFIX) - 1);
    crypto_sha256_hex(key, hash);
    snprintf(masked, MASKED_SIZE, "%.8s...%s", key, key + KEY_LEN - 4);
}


/* answers status with the stored doc plus the key itself */
static void
reply_with_key(http_req_t *req, int status, const char *id, const char *key)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"), id };
    cJSON      *doc = doc_fetch(req, DOC_BY_ID, 3, params, "API key");

    if (doc != NULL) {
        cJSON_AddStringToObject(doc, "key", key);
        http_reply(req, status, doc);
    }
}


void
api_keys_create(http_req_t *req)
{
    cJSON    *doc;
    char      id[UUID_LEN + 1];
    char      key[KEY_LEN + 1];
    char      hash[SHA256_HEX_LEN + 1];
    char      masked[MASKED_SIZE];
    PGresult *res;

    doc = defaults();
    if (!validate(req, doc, NULL)) {
        cJSON_Delete(doc);
        return;
    }

    crypto_uuid_v4(id);
    new_key(key, hash, masked);

    res = write_row(req, doc, id, hash, masked);
    if (res == NULL) {
        http_db_error(req, "API key");
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        http_not_found(req, "environment");
    } else {
        reply_with_key(req, 201, id, key);
    }
    PQclear(res);
    cJSON_Delete(doc);
}


void
api_keys_update(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 3, params, "API key");
    cJSON      *doc = defaults();
    PGresult   *res;

    if (stored != NULL && validate(req, doc, stored)) {
        res = write_row(req, doc, params[2], NULL, NULL);
        if (res == NULL) {
            http_db_error(req, "API key");
        } else {
            doc_reply(req, 200, DOC_BY_ID, 3, params, "API key");
        }
        PQclear(res);
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


/*
 * POST .../api-keys/{id}/rotate {"gracePeriodSeconds": N}: a new key for
 * the same key object; the one it replaces keeps working N seconds (0: it
 * stops at once), up to the next whole second, since the data plane reads
 * seconds; it replaces any earlier one still in its grace period.
 */
void
api_keys_rotate(http_req_t *req)
{
    static const char *const members[] = { "gracePeriodSeconds", NULL };
    static const char *const none[] = { NULL };
    char        key[KEY_LEN + 1];
    char        hash[SHA256_HEX_LEN + 1];
    char        masked[MASKED_SIZE];
    char        grace[24];
    cJSON      *doc = cJSON_CreateObject();
    PGresult   *res;
    const char *params[6] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id"), grace, hash, masked };

    cJSON_AddNumberToObject(doc, "gracePeriodSeconds", 0);
    if (!val_merge(req, doc, NULL, members, none)
        || !val_int(req, doc, "gracePeriodSeconds", 0, GRACE_MAX))
    {
        cJSON_Delete(doc);
        return;
    }
    snprintf(grace, sizeof(grace), "%d",
             (int) cJSON_GetObjectItemCaseSensitive(doc, "gracePeriodSeconds")->valuedouble);
    cJSON_Delete(doc);

    new_key(key, hash, masked);
    res = db_exec(req->db,
                  "UPDATE api_keys SET"
                  " previous_key_hash = CASE WHEN $4::int > 0 THEN key_hash END,"
                  " previous_expires_at = CASE WHEN $4::int > 0"
                  " THEN to_timestamp(ceil(extract(epoch FROM now())) + $4::int) END,"
                  " key_hash = $5, masked_key = $6, updated_at = now()"
                  " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
                  6, params);
    if (res == NULL) {
        http_db_error(req, "API key");
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        http_not_found(req, "API key");
    } else {
        reply_with_key(req, 200, params[2], key);
    }
    PQclear(res);
}


void
api_keys_delete(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    doc_reply_delete(req, "DELETE FROM api_keys"
                          " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
                     3, params, "API key");
}
