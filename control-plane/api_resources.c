/*
 * api_resources: AI resources of an environment.
 *
 * Every model entry (model, fallbackModels[i], secondaryModels[i], and the
 * `then` of each routing group that calls a model) must name a connection
 * of the same environment with the entry's provider, and a model that
 * connection allows.  The connections used are recorded in
 * resource_connections, whose foreign key keeps a used connection from
 * being deleted.  The routing is compiled by the data plane's own compiler,
 * so the rules a resource stores are rules the data plane runs.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "arena.h"
#include "providers.h"
#include "validate.h"
#include "vmx_rules.h"

static const char *const writable[] = {
    "name", "description", "model", "routing", "fallbackModels", "useFallback",
    "secondaryModels", "enforceCapacity", "capacity", "timeouts", NULL
};

#define DOC_BY_ID \
    "SELECT doc::text FROM resource_docs" \
    " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3"


static bool
model_allowed(const char *allowed_text, const char *model)
{
    cJSON       *allowed = cJSON_Parse(allowed_text);
    const cJSON *item;
    bool         ok = cJSON_GetArraySize(allowed) == 0;

    cJSON_ArrayForEach(item, allowed) {
        if (cJSON_IsString(item) && strcmp(item->valuestring, model) == 0) {
            ok = true;
        }
    }
    cJSON_Delete(allowed);
    return ok;
}


/* checks the connection an entry names; at is the entry's field path */
static bool
check_connection(http_req_t *req, const char *at, const char *connection_id,
    const char *provider, const char *model)
{
    const char *params[2] = { connection_id, http_param(req, "env") };
    char        field[160];
    PGresult   *res;
    bool        ok = false;

    snprintf(field, sizeof(field), "%s.connectionId", at);
    res = db_exec(req->db, "SELECT provider, allowed_models::text FROM connections"
                           " WHERE id = $1 AND environment_id = $2", 2, params);
    if (res == NULL) {
        http_db_error(req, "connection");
        return false;
    }
    if (PQntuples(res) != 1) {
        http_invalid(req, field, "%s is no connection of this environment", field);
    } else if (strcmp(PQgetvalue(res, 0, 0), provider) != 0) {
        http_invalid(req, field, "connection %s is of provider %s, not %s", connection_id,
                     PQgetvalue(res, 0, 0), provider);
    } else if (!model_allowed(PQgetvalue(res, 0, 1), model)) {
        snprintf(field, sizeof(field), "%s.model", at);
        http_invalid(req, field, "model %s is not in the allowedModels of connection %s",
                     model, connection_id);
    } else {
        ok = true;
    }
    PQclear(res);
    return ok;
}


/* provider, model and connectionId of an entry; at is its field path */
static bool
validate_target(http_req_t *req, cJSON *entry, const char *at)
{
    const cJSON      *model, *connection;
    const provider_t *provider;
    char              field[160];

    snprintf(field, sizeof(field), "%s.provider", at);
    provider = val_provider(req, entry, field);
    if (provider == NULL) {
        return false;
    }
    model = cJSON_GetObjectItemCaseSensitive(entry, "model");
    connection = cJSON_GetObjectItemCaseSensitive(entry, "connectionId");

    snprintf(field, sizeof(field), "%s.model", at);
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        http_invalid(req, field, "%s must be a model name", field);
        return false;
    }
    if (!val_text(req, field, model->valuestring)) {
        return false;
    }
    if (!cJSON_IsString(connection) || !crypto_is_uuid(connection->valuestring)) {
        snprintf(field, sizeof(field), "%s.connectionId", at);
        http_invalid(req, field, "%s must be a connection id", field);
        return false;
    }
    return check_connection(req, at, connection->valuestring, provider->id,
                            model->valuestring);
}


static bool
validate_model_entry(http_req_t *req, cJSON *entry, const char *at)
{
    static const char *const members[] = { "provider", "model", "connectionId", NULL };
    const cJSON *item;
    char         field[160];

    if (!cJSON_IsObject(entry)) {
        http_invalid(req, at, "%s must be an object {provider, model, connectionId}", at);
        return false;
    }
    cJSON_ArrayForEach(item, entry) {
        bool known = false;

        for (int i = 0; members[i] != NULL; i++) {
            known = known || strcmp(item->string, members[i]) == 0;
        }
        if (!known) {
            snprintf(field, sizeof(field), "%s.%s", at, item->string);
            http_invalid(req, field, "unknown field \"%s\"", field);
            return false;
        }
    }
    return validate_target(req, entry, at);
}


static bool
validate_model_list(http_req_t *req, const cJSON *doc, const char *field)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, field);
    cJSON       *entry;
    char         at[160];
    int          i = 0;

    if (!cJSON_IsArray(list)) {
        http_invalid(req, field, "%s must be an array of models", field);
        return false;
    }
    cJSON_ArrayForEach(entry, list) {
        snprintf(at, sizeof(at), "%s[%d]", field, i++);
        if (!validate_model_entry(req, entry, at)) {
            return false;
        }
    }
    return true;
}


/* 400 naming the field and, inside an expression or regex, the position */
static void
routing_invalid(http_req_t *req, const vmx_rules_error_t *err)
{
    char   field[VMX_RULES_PATH_MAX + 16];
    char   message[VMX_RULES_PATH_MAX + 320];
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    cJSON *details;

    snprintf(field, sizeof(field), "routing%s%s", err->path[0] ? "." : "", err->path);
    snprintf(message, sizeof(message), "%s: %s", field, err->message);
    cJSON_AddStringToObject(error, "code", "validation_error");
    cJSON_AddStringToObject(error, "message", message);
    details = cJSON_AddObjectToObject(error, "details");
    cJSON_AddStringToObject(details, "field", field);
    if (err->position >= 0) {
        cJSON_AddNumberToObject(details, "position", (double) err->position);
    }
    http_reply(req, 400, root);
}


vmx_rules_t *
api_routing_compile(http_req_t *req, const cJSON *routing, arena_t *arena)
{
    char              *text = cJSON_PrintUnformatted(routing);
    vmx_rules_error_t  err;
    vmx_rules_t       *rules;

    if (text == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return NULL;
    }
    rules = vmx_rules_compile_text(text, strlen(text), arena_alloc, arena, &err);
    free(text);
    if (rules == NULL && strcmp(err.message, "out of memory") == 0) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
    } else if (rules == NULL) {
        routing_invalid(req, &err);
    }
    return rules;
}


static bool
compile_routing(http_req_t *req, const cJSON *routing)
{
    arena_t       arena = { NULL };
    vmx_rules_t  *rules = api_routing_compile(req, routing, &arena);

    vmx_rules_free(rules);
    arena_reset(&arena, true);
    return rules != NULL;
}


/* the then of every group that calls a model (the compiler checked shapes) */
static bool
validate_routing_targets(http_req_t *req, const cJSON *routing)
{
    cJSON       *group;
    char         at[64];
    int          i = 0;

    cJSON_ArrayForEach(group, cJSON_GetObjectItemCaseSensitive(routing, "conditions")) {
        const cJSON *action = cJSON_GetObjectItemCaseSensitive(group, "action");
        cJSON       *then = cJSON_GetObjectItemCaseSensitive(group, "then");

        snprintf(at, sizeof(at), "routing.conditions[%d].then", i++);
        if ((cJSON_IsString(action) && strcmp(action->valuestring, "BLOCK") == 0)
            || !cJSON_IsObject(then))
        {
            continue;
        }
        if (!validate_target(req, then, at)) {
            return false;
        }
    }
    return true;
}


/*
 * the ids, labels and descriptions of the groups and conditions under at
 * (the compiler checked shapes and depth): a group's id is the
 * x-vmx-event-*-routing-group-id header
 */
static bool
validate_routing_texts(http_req_t *req, const cJSON *conditions, const char *at)
{
    static const char *const texts[] = { "id", "label", "description", NULL };
    const cJSON *item;
    char         path[160], field[192];
    int          i = 0;

    cJSON_ArrayForEach(item, conditions) {
        snprintf(path, sizeof(path), "%s[%d]", at, i++);
        for (int t = 0; texts[t] != NULL; t++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, texts[t]);

            snprintf(field, sizeof(field), "%s.%s", path, texts[t]);
            if (cJSON_IsString(v) && !val_text(req, field, v->valuestring)) {
                return false;
            }
        }
        snprintf(field, sizeof(field), "%s.conditions", path);
        if (!validate_routing_texts(req, cJSON_GetObjectItemCaseSensitive(item, "conditions"),
                                    field))
        {
            return false;
        }
    }
    return true;
}


/* {enabled, conditions}, compiled as the data plane will */
static bool
validate_routing(http_req_t *req, const cJSON *doc)
{
    const cJSON *routing = cJSON_GetObjectItemCaseSensitive(doc, "routing");

    if (!cJSON_IsObject(routing)) {
        http_invalid(req, "routing", "routing must be an object {enabled, conditions}");
        return false;
    }
    if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(routing, "enabled"))) {
        http_invalid(req, "routing.enabled", "routing.enabled must be true or false");
        return false;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(routing, "conditions"))) {
        http_invalid(req, "routing.conditions", "routing.conditions must be an array");
        return false;
    }
    return compile_routing(req, routing)
           && validate_routing_texts(req, cJSON_GetObjectItemCaseSensitive(routing,
                                                                            "conditions"),
                                     "routing.conditions")
           && validate_routing_targets(req, routing);
}


/* doc: the defaults; stored: the resource as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    return val_merge(req, doc, stored, writable, NULL) && val_name(req, doc)
           && val_string(req, doc, "description", DESCRIPTION_MAX_LEN)
           && validate_model_entry(req, cJSON_GetObjectItemCaseSensitive(doc, "model"),
                                   "model")
           && validate_routing(req, doc)
           && validate_model_list(req, doc, "fallbackModels")
           && val_bool(req, doc, "useFallback")
           && validate_model_list(req, doc, "secondaryModels")
           && val_bool(req, doc, "enforceCapacity")
           && val_capacity(req, doc, "capacity")
           && val_timeouts(req, doc, "timeouts");
}


/* the row, then the connections it uses; one transaction */
static int
write_rows(http_req_t *req, const char *const *params, bool create)
{
    if (db_begin(req->db) != 0) {
        return -1;
    }
    if (db_run(req->db, create
        ? "INSERT INTO resources (workspace_id, environment_id, id, name, description,"
          " model, routing, fallback_models, use_fallback, secondary_models,"
          " enforce_capacity, capacity, timeouts)"
          " SELECT workspace_id, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13"
          " FROM environments WHERE workspace_id = $1 AND id = $2"
        : "UPDATE resources SET name = $4, description = $5, model = $6, routing = $7,"
          " fallback_models = $8, use_fallback = $9, secondary_models = $10,"
          " enforce_capacity = $11, capacity = $12, timeouts = $13, updated_at = now()"
          " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
        13, params) != 0
        || db_run(req->db, "DELETE FROM resource_connections WHERE resource_id = $1",
                  1, params + 2) != 0
        || db_run(req->db,
                  "INSERT INTO resource_connections (resource_id, connection_id)"
                  " SELECT DISTINCT r.id, (m->>'connectionId')::uuid FROM resources r,"
                  "  jsonb_array_elements(" SQL_RESOURCE_ENTRIES ") m"
                  " WHERE r.id = $1", 1, params + 2) != 0)
    {
        db_rollback(req->db);
        return -1;
    }
    return db_commit(req->db);
}


static void
save(http_req_t *req, const cJSON *doc, const char *id, bool create)
{
    char       *model = doc_json(doc, "model");
    char       *routing = doc_json(doc, "routing");
    char       *fallback = doc_json(doc, "fallbackModels");
    char       *secondary = doc_json(doc, "secondaryModels");
    char       *capacity = doc_json(doc, "capacity");
    char       *timeouts = doc_json(doc, "timeouts");
    const char *params[13] = {
        http_param(req, "ws"), http_param(req, "env"), id,
        doc_str(doc, "name"), doc_str(doc, "description"), model, routing, fallback,
        doc_bool(doc, "useFallback"), secondary, doc_bool(doc, "enforceCapacity"), capacity,
        timeouts
    };

    if (write_rows(req, params, create) != 0) {
        http_db_error(req, "resource");
    } else {
        /* a missing environment or resource shows as no doc: 404 */
        doc_reply(req, create ? 201 : 200, DOC_BY_ID, 3, params,
                  create ? "environment" : "resource");
    }
    free(model);
    free(routing);
    free(fallback);
    free(secondary);
    free(capacity);
    free(timeouts);
}


void
api_resources_list(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    doc_reply_list(req, "SELECT doc, created_at, id FROM resource_docs"
                        " WHERE workspace_id = $1 AND environment_id = $2", 2, params);
}


cJSON *
api_resources_fetch(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    return doc_fetch(req, DOC_BY_ID, 3, params, "resource");
}


void
api_resources_get(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    doc_reply(req, 200, DOC_BY_ID, 3, params, "resource");
}


static cJSON *
defaults(void)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *routing = cJSON_AddObjectToObject(doc, "routing");

    cJSON_AddFalseToObject(routing, "enabled");
    cJSON_AddArrayToObject(routing, "conditions");
    cJSON_AddArrayToObject(doc, "fallbackModels");
    cJSON_AddTrueToObject(doc, "useFallback");
    cJSON_AddArrayToObject(doc, "secondaryModels");
    cJSON_AddFalseToObject(doc, "enforceCapacity");
    cJSON_AddArrayToObject(doc, "capacity");
    cJSON_AddNullToObject(doc, "timeouts");
    return doc;
}


void
api_resources_create(http_req_t *req)
{
    cJSON *doc;
    char   id[UUID_LEN + 1];

    doc = defaults();
    if (validate(req, doc, NULL)) {
        crypto_uuid_v4(id);
        save(req, doc, id, true);
    }
    cJSON_Delete(doc);
}


cJSON *
api_resources_check(http_req_t *req, const cJSON *resource)
{
    cJSON *body = req->json, *doc = defaults();
    cJSON *given = cJSON_Duplicate(resource, true);
    bool   ok;

    /* a document as GET answers it: its read-only members say nothing */
    for (int i = 0; val_common_readonly[i] != NULL; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(given, val_common_readonly[i]);
    }
    req->json = given;
    ok = validate(req, doc, NULL);
    req->json = body;
    cJSON_Delete(given);
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}


void
api_resources_update(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 3, params, "resource");
    cJSON      *doc = defaults();

    if (stored != NULL && validate(req, doc, stored)) {
        save(req, doc, params[2], false);
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_resources_delete(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    doc_reply_delete(req, "DELETE FROM resources"
                          " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
                     3, params, "resource");
}
