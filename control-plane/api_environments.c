/*
 * api_environments: /api/v1/workspaces/{ws}/environments and /{env}.
 */

#include <string.h>

#include "api.h"
#include "validate.h"

static const char *const writable[] = { "name", "description", "storePayload",
                                        "auditRequired", NULL };

#define DOC_BY_ID \
    "SELECT doc::text FROM environment_docs WHERE workspace_id = $1 AND id = $2"


/* doc: the defaults; stored: the environment as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    return val_merge(req, doc, stored, writable, NULL) && val_name(req, doc)
           && val_string(req, doc, "description", DESCRIPTION_MAX_LEN)
           && val_bool(req, doc, "storePayload") && val_bool(req, doc, "auditRequired");
}


static cJSON *
defaults(void)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddTrueToObject(doc, "storePayload");
    cJSON_AddFalseToObject(doc, "auditRequired");
    return doc;
}


void
api_environments_list(http_req_t *req)
{
    const char *params[1] = { http_param(req, "ws") };

    doc_reply_list(req, "SELECT doc, created_at, id FROM environment_docs"
                        " WHERE workspace_id = $1", 1, params);
}


void
api_environments_get(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    doc_reply(req, 200, DOC_BY_ID, 2, params, "environment");
}


void
api_environments_create(http_req_t *req)
{
    cJSON      *doc = defaults();
    char        id[UUID_LEN + 1];
    const char *params[6] = { http_param(req, "ws"), id };
    PGresult   *res;

    if (!validate(req, doc, NULL)) {
        cJSON_Delete(doc);
        return;
    }
    crypto_uuid_v4(id);
    params[2] = doc_str(doc, "name");
    params[3] = doc_str(doc, "description");
    params[4] = doc_bool(doc, "storePayload");
    params[5] = doc_bool(doc, "auditRequired");

    res = db_exec(req->db, "INSERT INTO environments"
                           " (id, workspace_id, name, description, store_payload, audit_required)"
                           " SELECT $2, id, $3, $4, $5, $6 FROM workspaces WHERE id = $1",
                  6, params);
    if (res == NULL) {
        http_db_error(req, "environment");
    } else if (strcmp(PQcmdTuples(res), "1") != 0) {
        http_not_found(req, "workspace");
    } else {
        doc_reply(req, 201, DOC_BY_ID, 2, params, "environment");
    }
    PQclear(res);
    cJSON_Delete(doc);
}


void
api_environments_update(http_req_t *req)
{
    const char *params[6] = { http_param(req, "ws"), http_param(req, "env") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 2, params, "environment");
    cJSON      *doc;

    if (stored == NULL) {
        return;
    }
    doc = defaults();
    if (validate(req, doc, stored)) {
        params[2] = doc_str(doc, "name");
        params[3] = doc_str(doc, "description");
        params[4] = doc_bool(doc, "storePayload");
        params[5] = doc_bool(doc, "auditRequired");
        if (db_run(req->db, "UPDATE environments SET name = $3, description = $4,"
                            " store_payload = $5, audit_required = $6, updated_at = now()"
                            " WHERE workspace_id = $1 AND id = $2", 6, params) != 0)
        {
            http_db_error(req, "environment");
        } else {
            doc_reply(req, 200, DOC_BY_ID, 2, params, "environment");
        }
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_environments_delete(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    doc_reply_delete(req, "DELETE FROM environments WHERE workspace_id = $1 AND id = $2",
                     2, params, "environment");
}
