/*
 * api_workspaces: /api/v1/workspaces, /{ws} and /{ws}/members.
 * The creator of a workspace becomes its OWNER.  Who may reach a workspace
 * (its members, and whoever a policy allows workspace:access-all) and which
 * routes need an OWNER is the router's (access_check()); a workspace keeps
 * at least one OWNER.
 */

#include <string.h>

#include "api.h"
#include "validate.h"

static const char *const writable[] = { "name", "description", NULL };
static const char *const readonly[] = { "createdBy", NULL };

#define DOC_BY_ID  "SELECT doc::text FROM workspace_docs WHERE id = $1"


/* stored: the workspace as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    return val_merge(req, doc, stored, writable, readonly) && val_name(req, doc)
           && val_string(req, doc, "description", DESCRIPTION_MAX_LEN);
}


/* a user sees the workspaces they are a member of, all of them with
 * workspace:access-all */
void
api_workspaces_list(http_req_t *req)
{
    const char *params[2] = { req->user_id, req->all_workspaces ? "true" : "false" };

    doc_reply_list(req, "SELECT doc, created_at, id FROM workspace_docs w WHERE $2"
                        " OR EXISTS (SELECT 1 FROM workspace_members m"
                        "            WHERE m.workspace_id = w.id AND m.user_id = $1)",
                   2, params);
}


void
api_workspaces_get(http_req_t *req)
{
    const char *params[1] = { http_param(req, "ws") };

    doc_reply(req, 200, DOC_BY_ID, 1, params, "workspace");
}


void
api_workspaces_create(http_req_t *req)
{
    cJSON      *doc = cJSON_CreateObject();
    char        id[UUID_LEN + 1];
    const char *params[4];

    if (!validate(req, doc, NULL)) {
        cJSON_Delete(doc);
        return;
    }
    crypto_uuid_v4(id);
    params[0] = id;
    params[1] = doc_str(doc, "name");
    params[2] = doc_str(doc, "description");
    params[3] = req->user_id;

    /* one statement, so the workspace never exists without its owner */
    if (db_run(req->db,
               "WITH w AS (INSERT INTO workspaces (id, name, description, created_by)"
               "           VALUES ($1, $2, $3, $4) RETURNING id)"
               " INSERT INTO workspace_members (workspace_id, user_id, role)"
               " SELECT w.id, $4, 'OWNER' FROM w", 4, params) != 0)
    {
        http_db_error(req, "workspace");
    } else {
        doc_reply(req, 201, DOC_BY_ID, 1, params, "workspace");
    }
    cJSON_Delete(doc);
}


void
api_workspaces_update(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 1, params, "workspace");
    cJSON      *doc;

    if (stored == NULL) {
        return;
    }
    doc = cJSON_CreateObject();
    if (validate(req, doc, stored)) {
        params[1] = doc_str(doc, "name");
        params[2] = doc_str(doc, "description");
        if (db_run(req->db, "UPDATE workspaces SET name = $2, description = $3,"
                            " updated_at = now() WHERE id = $1", 3, params) != 0)
        {
            http_db_error(req, "workspace");
        } else {
            doc_reply(req, 200, DOC_BY_ID, 1, params, "workspace");
        }
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_workspaces_delete(http_req_t *req)
{
    const char *params[1] = { http_param(req, "ws") };

    doc_reply_delete(req, "DELETE FROM workspaces WHERE id = $1", 1, params, "workspace");
}


void
api_members_list(http_req_t *req)
{
    const char *params[1] = { http_param(req, "ws") };

    doc_reply_list(req, "SELECT doc, created_at, id FROM member_docs"
                        " WHERE workspace_id = $1", 1, params);
}


static bool
validate_member(http_req_t *req)
{
    static const char *const fields[] = { "userId", "role", NULL };
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(req->json, "userId");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(req->json, "role");
    cJSON       *scratch = cJSON_CreateObject();
    bool         known = val_merge(req, scratch, NULL, fields, NULL);

    cJSON_Delete(scratch);
    if (!known) {
        return false;
    }
    if (!cJSON_IsString(user) || !crypto_is_uuid(user->valuestring)) {
        http_invalid(req, "userId", "userId must be the id of a user");
        return false;
    }
    if (!cJSON_IsString(role) || (strcmp(role->valuestring, "OWNER") != 0
                                  && strcmp(role->valuestring, "MEMBER") != 0))
    {
        http_invalid(req, "role", "role must be OWNER or MEMBER");
        return false;
    }
    return true;
}


void
api_members_add(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws") };
    PGresult   *res;

    if (!validate_member(req)) {
        return;
    }
    params[1] = cJSON_GetObjectItemCaseSensitive(req->json, "userId")->valuestring;
    params[2] = cJSON_GetObjectItemCaseSensitive(req->json, "role")->valuestring;

    res = db_exec(req->db, "INSERT INTO workspace_members (workspace_id, user_id, role)"
                           " SELECT $1, id, $3 FROM users WHERE id = $2", 3, params);
    if (res == NULL) {
        if (strcmp(db_sqlstate(req->db), "23505") == 0) {
            http_error(req, 409, "conflict", "userId", "the user is already a member");
        } else {
            http_db_error(req, "member");
        }
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        http_invalid(req, "userId", "no user with this id");
    } else {
        doc_reply(req, 201, "SELECT doc::text FROM member_docs"
                            " WHERE workspace_id = $1 AND id = $2", 2, params, "member");
    }
    PQclear(res);
}


/*
 * Whether user params[1] is the one OWNER of workspace params[0], into
 * *last; the workspace's row stays locked to the end of the change, so two
 * OWNERs leaving together cannot both pass.  false after answering 500.
 */
static bool
check_last_owner(http_req_t *req, const char *const *params, bool *last)
{
    PGresult *res = db_exec(req->db,
        "SELECT EXISTS (SELECT 1 FROM workspace_members WHERE workspace_id = $1"
        "               AND user_id = $2 AND role = 'OWNER')"
        "   AND NOT EXISTS (SELECT 1 FROM workspace_members WHERE workspace_id = $1"
        "                   AND user_id <> $2 AND role = 'OWNER')"
        " FROM workspaces WHERE id = $1 FOR UPDATE", 2, params);

    if (res == NULL) {
        http_db_error(req, "member");
        return false;
    }
    *last = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return true;
}


/* PATCH /{ws}/members/{id} {role} */
void
api_members_update(http_req_t *req)
{
    static const char *const fields[] = { "role", NULL };
    static const char *const readonly[] = { "workspaceId", "userId", "username", NULL };
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(req->json, "role");
    const char  *params[3] = { http_param(req, "ws"), http_param(req, "id") };
    cJSON       *scratch = cJSON_CreateObject();
    bool         known = val_merge(req, scratch, NULL, fields, readonly), last;

    cJSON_Delete(scratch);
    if (!known) {
        return;
    }
    if (!cJSON_IsString(role) || (strcmp(role->valuestring, "OWNER") != 0
                                  && strcmp(role->valuestring, "MEMBER") != 0))
    {
        http_invalid(req, "role", "role must be OWNER or MEMBER");
        return;
    }
    params[2] = role->valuestring;
    if (!check_last_owner(req, params, &last)) {
        return;
    }
    if (last && strcmp(params[2], "MEMBER") == 0) {
        http_error(req, 409, "conflict", "role", "the workspace's last OWNER cannot step down");
        return;
    }
    if (db_run(req->db, "UPDATE workspace_members SET role = $3"
                        " WHERE workspace_id = $1 AND user_id = $2", 3, params) != 0)
    {
        http_db_error(req, "member");
        return;
    }
    doc_reply(req, 200, "SELECT doc::text FROM member_docs"
                        " WHERE workspace_id = $1 AND id = $2", 2, params, "member");
}


/* DELETE /{ws}/members/{id}: an OWNER removes a member, a member leaves */
void
api_members_delete(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "id") };
    bool        last;

    if (!check_last_owner(req, params, &last)) {
        return;
    }
    if (last) {
        http_error(req, 409, "conflict", NULL, "the workspace's last OWNER cannot leave");
        return;
    }
    doc_reply_delete(req, "DELETE FROM workspace_members WHERE workspace_id = $1"
                          " AND user_id = $2", 2, params, "member");
}
