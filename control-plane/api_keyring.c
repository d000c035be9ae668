/*
 * api_keyring: the keys of the secrets (docs/ARCHITECTURE.md, "Secrets and
 * the keyring"): list them with the secrets each still encrypts, make one
 * active (the previous active key decrypts only, and the background
 * re-encryption moves its secrets), retire one that no secret uses.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "crypto.h"
#include "keyring.h"
#include "reencrypt.h"
#include "secrets.h"

#define DOC_BY_ID  "SELECT doc::text FROM encryption_key_docs WHERE id = $1"

#define SECRETS_UNDER \
    "SELECT count(*) FROM connections c, vmx_secret_key_ids(c.secrets) k WHERE k = $1"

/* the associated data of the probe that checks a KMS key before it is used */
#define KMS_PROBE  "vmx-keyring-probe"


void
api_encryption_keys_list(http_req_t *req)
{
    doc_reply_list(req, "SELECT doc, created_at, id FROM encryption_key_docs", 0, NULL);
}


static bool
is_key_id(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");

    return n == SECRETS_KEY_ID_LEN && s[n] == '\0';
}


/* the key id the body names, into id; false after answering 400 (or 503) */
static bool
requested_key(http_req_t *req, char *id, const char **provider)
{
    const cJSON     *item;
    const char      *key_id = NULL;

    *provider = NULL;
    cJSON_ArrayForEach(item, req->json) {
        bool is_provider = strcmp(item->string, "provider") == 0;

        if (!is_provider && strcmp(item->string, "keyId") != 0) {
            http_invalid(req, item->string, "%s is not a member of an encryption key",
                         item->string);
            return false;
        }
        if (!cJSON_IsString(item)) {
            http_invalid(req, item->string, "%s must be a string", item->string);
            return false;
        }
        *(is_provider ? provider : &key_id) = item->valuestring;
    }
    if (*provider == NULL
        || (strcmp(*provider, "local") != 0 && strcmp(*provider, "aws-kms") != 0))
    {
        http_invalid(req, "provider", "provider must be \"local\" or \"aws-kms\"");
        return false;
    }
    if (strcmp(*provider, "aws-kms") == 0) {
        if (!keyring_kms_id(id)) {
            http_invalid(req, "provider", "AWS KMS is not configured: set VMX_KMS_KEY_ID");
            return false;
        }
        if (key_id != NULL && strcmp(key_id, id) != 0) {
            http_invalid(req, "keyId", "keyId must be the id of VMX_KMS_KEY_ID, %s", id);
            return false;
        }
        return true;
    }
    if (key_id == NULL || !is_key_id(key_id)) {
        http_invalid(req, "keyId", "keyId must be the 8 hex characters of a local key's id");
        return false;
    }
    keyring_scan();
    if (!keyring_holds_local(key_id)) {
        http_invalid(req, "keyId", "no key file with key id %s is loaded by this control"
                     " plane: put it in VMX_SECRET_KEYS_DIR of every control plane first",
                     key_id);
        return false;
    }
    snprintf(id, SECRETS_KEY_ID_LEN + 1, "%s", key_id);
    return true;
}


/* a KMS key makes a data key before it encrypts anything: 503 when it cannot */
static bool
kms_answers(http_req_t *req, const char *key_id)
{
    secrets_error_t  err;
    char            *blob = secrets_encrypt(KMS_PROBE, KMS_PROBE, key_id, &err);

    if (blob == NULL) {
        http_error(req, err.status, "unavailable", NULL, "%s", err.message);
        return false;
    }
    free(blob);
    return true;
}


/* POST {"provider": "local", "keyId": "..."} or {"provider": "aws-kms"} */
void
api_encryption_keys_create(http_req_t *req)
{
    char        key_id[SECRETS_KEY_ID_LEN + 1], uuid[UUID_LEN + 1];
    const char *provider;
    const char *params[3] = { uuid, key_id, NULL };
    PGresult   *res;
    bool        existed;

    if (!requested_key(req, key_id, &provider)
        || (strcmp(provider, "aws-kms") == 0 && !kms_answers(req, key_id)))
    {
        return;
    }
    params[2] = provider;
    res = db_exec(req->db, "SELECT id::text, state FROM encryption_keys WHERE key_id = $1"
                           " FOR UPDATE", 1, params + 1);
    if (res == NULL) {
        http_db_error(req, "encryption key");
        return;
    }
    existed = PQntuples(res) == 1;
    if (existed && strcmp(PQgetvalue(res, 0, 1), "decrypt-only") != 0) {
        http_error(req, 409, "conflict", "keyId", "the key %s is already %s", key_id,
                   PQgetvalue(res, 0, 1));
        PQclear(res);
        return;
    }
    snprintf(uuid, sizeof(uuid), "%s", existed ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    if (!existed) {
        crypto_uuid_v4(uuid);
    }
    if (db_run(req->db, "UPDATE encryption_keys SET state = 'decrypt-only', updated_at = now()"
                        " WHERE state = 'active'", 0, NULL) != 0
        || db_run(req->db, "INSERT INTO encryption_keys (id, key_id, provider, state)"
                           " VALUES ($1, $2, $3, 'active')"
                           " ON CONFLICT (key_id)"
                           " DO UPDATE SET state = 'active', updated_at = now()",
                  3, params) != 0)
    {
        http_db_error(req, "encryption key");
        return;
    }
    doc_reply(req, existed ? 200 : 201, DOC_BY_ID, 1, params, "encryption key");
    reencrypt_notify();
}


/* 409 naming how many secrets the key still encrypts */
static void
reply_in_use(http_req_t *req, const char *key_id, long long count)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    cJSON *details;
    char   message[256];

    snprintf(message, sizeof(message), "%lld connection secret(s) are still encrypted under"
             " key %s; the background re-encryption moves them to the active key, retire"
             " it when its secretCount is 0", count, key_id);
    cJSON_AddStringToObject(error, "code", "conflict");
    cJSON_AddStringToObject(error, "message", message);
    details = cJSON_AddObjectToObject(error, "details");
    cJSON_AddNumberToObject(details, "secretCount", (double) count);
    http_reply(req, 409, root);
}


void
api_encryption_keys_retire(http_req_t *req)
{
    const char *id = http_param(req, "id");
    PGresult   *res = db_exec(req->db, "SELECT key_id, state FROM encryption_keys"
                                       " WHERE id = $1 FOR UPDATE", 1, &id);
    char        key_id[SECRETS_KEY_ID_LEN + 1];
    const char *params[1] = { key_id };
    long long   count;

    if (res == NULL || PQntuples(res) != 1) {
        if (res == NULL) {
            http_db_error(req, "encryption key");
        } else {
            http_not_found(req, "encryption key");
        }
        PQclear(res);
        return;
    }
    snprintf(key_id, sizeof(key_id), "%s", PQgetvalue(res, 0, 0));
    if (strcmp(PQgetvalue(res, 0, 1), "active") == 0) {
        http_error(req, 409, "conflict", NULL, "the key %s is active: make another key"
                   " active first", key_id);
        PQclear(res);
        return;
    }
    PQclear(res);

    /* no new blob can appear under a key that is not active */
    res = db_exec(req->db, SECRETS_UNDER, 1, params);
    if (res == NULL) {
        http_db_error(req, "encryption key");
        return;
    }
    count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (count > 0) {
        reply_in_use(req, key_id, count);
        return;
    }
    if (db_run(req->db, "UPDATE encryption_keys SET state = 'retired', updated_at = now()"
                        " WHERE id = $1 AND state <> 'retired'", 1, &id) != 0)
    {
        http_db_error(req, "encryption key");
        return;
    }
    doc_reply(req, 200, DOC_BY_ID, 1, &id, "encryption key");
    reencrypt_notify();
}
