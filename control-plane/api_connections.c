/*
 * api_connections: AI connections of an environment.
 *
 * The secret fields of a provider's config (SPEC §9) never reach the
 * database in clear: they are split from config into the secrets column,
 * each encrypted with the connection id as associated data.  Reads show
 * "********"; an update sending "********" keeps the stored blob.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "discovery.h"
#include "keyring.h"
#include "providers.h"
#include "secrets.h"
#include "validate.h"

#define MASK  "********"

static const char *const writable[] = {
    "name", "description", "provider", "config", "allowedModels", "capacity", "timeouts",
    NULL
};
static const char *const readonly[] = { "discoveredCapacity", "credentialsStatus",
                                         "dataplaneProblems", NULL };

#define DOC_BY_ID \
    "SELECT doc::text FROM connection_docs" \
    " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3"

/* the resources a 409 names, at most (one more row says there are more) */
#define USERS_MAX  10

/* id and name of the resources that use the connection $1 (LIMIT: USERS_MAX + 1) */
#define SQL_USERS \
    "SELECT r.id, r.name FROM resource_connections u JOIN resources r ON r.id = u.resource_id" \
    " WHERE u.connection_id = $1 ORDER BY r.name, r.id LIMIT 11"

/* ... whose entries on the connection $1 name a model outside the
 * allowedModels $2 (a jsonb array; empty allows every model) */
#define SQL_USERS_OF_MODELS_LEFT_OUT \
    "SELECT DISTINCT r.id, r.name FROM resource_connections u" \
    " JOIN resources r ON r.id = u.resource_id," \
    "  jsonb_array_elements(" SQL_RESOURCE_ENTRIES ") m" \
    " WHERE u.connection_id = $1 AND m->>'connectionId' = $1::text" \
    "   AND jsonb_array_length($2::jsonb) > 0 AND NOT $2::jsonb ? (m->>'model')" \
    " ORDER BY r.name, r.id LIMIT 11"


/* a field that says where the connection's traffic (and secret) goes */
static bool
is_destination(const provider_field_t *f)
{
    return strcmp(f->type, "url") == 0 || strcmp(f->type, "aws-region") == 0;
}


/* 169.254.169.254 and its kin answer with the host's own credentials */
static bool
destination_allowed(http_req_t *req, const char *field, const char *url)
{
    const config_t *cfg = config_current();

    if ((cfg == NULL || !cfg->allow_link_local) && val_is_link_local_url(url)) {
        http_invalid(req, field, "%s must not be a link-local or cloud metadata address"
                     " (the operator may allow it with VMX_ALLOW_LINK_LOCAL=1)", field);
        return false;
    }
    return true;
}


static bool
validate_config(http_req_t *req, const provider_t *p, const cJSON *config)
{
    const cJSON *item;
    char         field[160];

    if (!cJSON_IsObject(config)) {
        http_invalid(req, "config", "config must be an object");
        return false;
    }
    cJSON_ArrayForEach(item, config) {
        const provider_field_t *f = provider_field(p, item->string);

        snprintf(field, sizeof(field), "config.%s", item->string);
        if (f == NULL) {
            http_invalid(req, field, "%s is not a config field of provider %s", field, p->id);
            return false;
        }
        if (!cJSON_IsString(item)) {
            http_invalid(req, field, "%s must be a string", field);
            return false;
        }
        if (!val_text(req, field, item->valuestring)) {
            return false;
        }
        if (strcmp(f->type, "url") == 0 && !val_is_http_url(item->valuestring)) {
            http_invalid(req, field, "%s must be an http or https URL", field);
            return false;
        }
        if (strcmp(f->type, "url") == 0
            && !destination_allowed(req, field, item->valuestring))
        {
            return false;
        }
        if (strcmp(f->type, "aws-region") == 0 && !val_is_aws_region(item->valuestring)) {
            http_invalid(req, field, "%s must be an AWS region such as us-east-1", field);
            return false;
        }
    }
    for (int i = 0; i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, p->fields[i].name);

        if (p->fields[i].required && (v == NULL || v->valuestring[0] == '\0')) {
            snprintf(field, sizeof(field), "config.%s", p->fields[i].name);
            http_invalid(req, field, "%s is required for provider %s", field, p->id);
            return false;
        }
    }
    return true;
}


/* doc: the defaults; stored: the connection as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    const provider_t *p;

    if (!val_merge(req, doc, stored, writable, readonly) || !val_name(req, doc)
        || !val_string(req, doc, "description", DESCRIPTION_MAX_LEN))
    {
        return false;
    }
    p = val_provider(req, doc, "provider");
    if (p == NULL) {
        return false;
    }
    return validate_config(req, p, cJSON_GetObjectItemCaseSensitive(doc, "config"))
           && val_string_array(req, doc, "allowedModels")
           && val_capacity(req, doc, "capacity")
           && val_timeouts(req, doc, "timeouts");
}


/*
 * Splits doc.config into the JSON texts of the plain config and of the
 * secrets ({field: blob}), both malloc'd (caller frees).  stored holds the
 * current blobs (may be NULL); a kept one stays under its key until the
 * re-encryption moves it, a new one is encrypted under the active key.
 * False after answering when a "********" has no stored secret to keep, or
 * a secret cannot be encrypted (503 when its key or KMS is unavailable).
 */
static bool
split_secrets(http_req_t *req, const cJSON *doc, const char *id, const cJSON *stored,
    char **config_text, char **secrets_text)
{
    char              key_id[SECRETS_KEY_ID_LEN + 1] = "";
    secrets_error_t   err;
    const provider_t *p = provider_find(doc_str(doc, "provider"));
    cJSON            *config = cJSON_Duplicate(
                           cJSON_GetObjectItemCaseSensitive(doc, "config"), true);
    cJSON            *secrets = cJSON_CreateObject();
    bool              ok = true;

    for (int i = 0; ok && i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        const char *name = p->fields[i].name;
        cJSON      *v = cJSON_DetachItemFromObjectCaseSensitive(config, name);
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(stored, name);
        char       *blob = NULL;

        if (!p->fields[i].secret || v == NULL) {
            if (v != NULL) {
                cJSON_AddItemToObject(config, name, v);
            }
            continue;
        }
        if (strcmp(v->valuestring, MASK) == 0) {
            if (cJSON_IsString(kept)) {
                blob = strdup(kept->valuestring);
            } else {
                char field[160];

                snprintf(field, sizeof(field), "config.%s", name);
                http_invalid(req, field, "%s has no stored secret to keep", field);
                ok = false;
            }
        } else {
            blob = key_id[0] != '\0' || keyring_active(req->db, key_id, &err) == 0
                   ? secrets_encrypt(v->valuestring, id, key_id, &err) : NULL;
            if (blob == NULL) {
                http_error(req, err.status, err.status == 503 ? "unavailable"
                           : "internal_error", NULL, "the secret could not be encrypted: %s",
                           err.message);
                ok = false;
            }
        }
        if (blob != NULL) {
            cJSON_AddStringToObject(secrets, name, blob);
            free(blob);
        }
        cJSON_Delete(v);
    }
    if (ok) {
        *config_text = cJSON_PrintUnformatted(config);
        *secrets_text = cJSON_PrintUnformatted(secrets);
    }
    cJSON_Delete(config);
    cJSON_Delete(secrets);
    return ok;
}


/* inserts (id new) or updates the connection described by doc */
static void
save(http_req_t *req, const cJSON *doc, const char *id, const cJSON *stored, bool create)
{
    char       *config = NULL, *secrets = NULL, *allowed, *capacity, *timeouts;
    const char *params[11] = { http_param(req, "ws"), http_param(req, "env"), id };
    PGresult   *res;

    if (!split_secrets(req, doc, id, stored, &config, &secrets)) {
        return;
    }
    allowed = doc_json(doc, "allowedModels");
    capacity = doc_json(doc, "capacity");
    timeouts = doc_json(doc, "timeouts");
    params[3] = doc_str(doc, "name");
    params[4] = doc_str(doc, "description");
    params[5] = doc_str(doc, "provider");
    params[6] = config;
    params[7] = secrets;
    params[8] = allowed;
    params[9] = capacity;
    params[10] = timeouts;

    res = db_exec(req->db, create
        ? "INSERT INTO connections (workspace_id, environment_id, id, name, description,"
          " provider, config, secrets, allowed_models, capacity, timeouts)"
          " SELECT workspace_id, id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM environments"
          " WHERE workspace_id = $1 AND id = $2"
        : "UPDATE connections SET name = $4, description = $5, provider = $6, config = $7,"
          " secrets = $8, allowed_models = $9, capacity = $10, timeouts = $11,"
          " updated_at = now()"
          " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
        11, params);
    if (res == NULL) {
        http_db_error(req, "connection");
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        http_not_found(req, create ? "environment" : "connection");
    } else {
        doc_reply(req, create ? 201 : 200, DOC_BY_ID, 3, params, "connection");
    }
    PQclear(res);
    free(config);
    free(secrets);
    free(allowed);
    free(capacity);
    free(timeouts);
}


void
api_connections_list(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    doc_reply_list(req, "SELECT doc, created_at, id FROM connection_docs"
                        " WHERE workspace_id = $1 AND environment_id = $2", 2, params);
}


/* with what the data planes say of it: why one cannot run it, if it can't */
void
api_connections_get(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };
    cJSON      *doc = doc_fetch(req, DOC_BY_ID, 3, params, "connection");

    if (doc != NULL) {
        cJSON_AddItemToObject(doc, "dataplaneProblems",
                              discovery_object_problems(req->db, "connection", params[2]));
        http_reply(req, 200, doc);
    }
}


static cJSON *
defaults(void)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddObjectToObject(doc, "config");
    cJSON_AddArrayToObject(doc, "allowedModels");
    cJSON_AddArrayToObject(doc, "capacity");
    cJSON_AddNullToObject(doc, "timeouts");
    return doc;
}


void
api_connections_create(http_req_t *req)
{
    cJSON *doc = defaults();
    char   id[UUID_LEN + 1];

    if (validate(req, doc, NULL)) {
        crypto_uuid_v4(id);
        save(req, doc, id, NULL, true);
    }
    cJSON_Delete(doc);
}


/* the stored secret blobs of the connection, NULL after answering */
static cJSON *
stored_secrets(http_req_t *req, const char *id)
{
    const char *params[1] = { id };
    PGresult   *res = db_exec(req->db, "SELECT secrets::text FROM connections"
                                       " WHERE id = $1", 1, params);
    cJSON      *secrets;

    if (res == NULL || PQntuples(res) != 1) {
        http_db_error(req, "connection");
        PQclear(res);
        return NULL;
    }
    secrets = cJSON_Parse(PQgetvalue(res, 0, 0));
    PQclear(res);
    return secrets;
}


/*
 * A kept secret ("********", or left out of a PATCH) would go wherever the
 * connection now points: when the provider or a destination field (baseUrl,
 * endpoint, region) changes, every secret must be sent again.
 */
static bool
secrets_resent(http_req_t *req, const cJSON *stored, const cJSON *doc)
{
    const provider_t *p = provider_find(doc_str(doc, "provider"));
    const cJSON      *old = cJSON_GetObjectItemCaseSensitive(stored, "config");
    const cJSON      *now = cJSON_GetObjectItemCaseSensitive(doc, "config");
    bool              moved = strcmp(doc_str(stored, "provider"), p->id) != 0;
    char              field[160];

    for (int i = 0; !moved && i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        const char *name = p->fields[i].name;

        moved = is_destination(&p->fields[i])
                && strcmp(doc_str(old, name), doc_str(now, name)) != 0;
    }
    for (int i = 0; moved && i < PROVIDER_MAX_FIELDS && p->fields[i].name != NULL; i++) {
        if (p->fields[i].secret && strcmp(doc_str(now, p->fields[i].name), MASK) == 0) {
            snprintf(field, sizeof(field), "config.%s", p->fields[i].name);
            http_invalid(req, field, "%s must be sent again: the connection's destination"
                         " changed, and the stored secret is not sent to a new one", field);
            return false;
        }
    }
    return true;
}


/* 409: "<why>: chat (<id>), ..." with details {field, resources: [{id, name}]} */
static void
reply_used_by(http_req_t *req, const char *field, const char *why, const PGresult *res)
{
    char    message[2048];
    size_t  len;
    int     n = PQntuples(res) < USERS_MAX ? PQntuples(res) : USERS_MAX;
    cJSON  *root = cJSON_CreateObject();
    cJSON  *error = cJSON_AddObjectToObject(root, "error");
    cJSON  *details, *resources;

    len = (size_t) snprintf(message, sizeof(message), "%s:", why);
    cJSON_AddStringToObject(error, "code", "conflict");
    details = cJSON_AddObjectToObject(error, "details");
    if (field != NULL) {
        cJSON_AddStringToObject(details, "field", field);
    }
    resources = cJSON_AddArrayToObject(details, "resources");
    for (int i = 0; i < n; i++) {
        cJSON *r = cJSON_CreateObject();

        cJSON_AddStringToObject(r, "id", PQgetvalue(res, i, 0));
        cJSON_AddStringToObject(r, "name", PQgetvalue(res, i, 1));
        cJSON_AddItemToArray(resources, r);
        if (len < sizeof(message)) {
            len += (size_t) snprintf(message + len, sizeof(message) - len, "%s %s (%s)",
                                     i > 0 ? "," : "", PQgetvalue(res, i, 1),
                                     PQgetvalue(res, i, 0));
        }
    }
    if (PQntuples(res) > USERS_MAX && len < sizeof(message)) {
        snprintf(message + len, sizeof(message) - len, " and more");
    }
    cJSON_AddStringToObject(error, "message", message);
    http_reply(req, 409, root);
}


/*
 * false after answering when sql (id and name of resources, from params)
 * finds any: 409 naming them, why first; or 500
 */
static bool
unused(http_req_t *req, const char *sql, int nparams, const char *const *params,
    const char *field, const char *why)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);
    bool      none;

    if (res == NULL) {
        http_db_error(req, "connection");
        return false;
    }
    none = PQntuples(res) == 0;
    if (!none) {
        reply_used_by(req, field, why, res);
    }
    PQclear(res);
    return none;
}


/* the resources that use the connection keep what they were validated with:
 * its provider, and the models they name among its allowedModels */
static bool
users_unaffected(http_req_t *req, const char *id, const cJSON *stored, const cJSON *doc)
{
    char       *allowed = doc_json(doc, "allowedModels");
    const char *params[2] = { id, allowed };
    bool        ok;

    ok = (strcmp(doc_str(stored, "provider"), doc_str(doc, "provider")) == 0
          || unused(req, SQL_USERS, 1, params, "provider",
                    "the connection's provider cannot change under the resources that"
                    " use it"))
         && unused(req, SQL_USERS_OF_MODELS_LEFT_OUT, 2, params, "allowedModels",
                   "allowedModels would leave out models that these resources use");
    free(allowed);
    return ok;
}


void
api_connections_update(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 3, params, "connection");
    cJSON      *doc, *secrets;

    if (stored == NULL) {
        return;
    }
    doc = defaults();
    secrets = stored_secrets(req, params[2]);
    if (secrets != NULL && validate(req, doc, stored) && secrets_resent(req, stored, doc)
        && users_unaffected(req, params[2], stored, doc))
    {
        save(req, doc, params[2], secrets, false);
    }
    cJSON_Delete(secrets);
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_connections_delete(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    /* the foreign key of resource_connections still guards a race */
    if (unused(req, SQL_USERS, 1, params + 2, NULL,
               "the connection is used by resources; delete or change them first"))
    {
        doc_reply_delete(req, "DELETE FROM connections"
                              " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
                         3, params, "connection");
    }
}
