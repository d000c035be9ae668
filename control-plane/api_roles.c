/*
 * api_roles: /api/v1/roles, /{id}, /{id}/assign and /{id}/unassign
 * (SPEC §8).
 *
 * A role is {id, name, description, policy, builtin, userCount, createdAt,
 * updatedAt}; its policy is validated against the actions of the route
 * table (router_policy_valid()).  The built-in roles (schema 0009) cannot
 * be changed or deleted, and the admin role keeps at least one enabled
 * holder, so that nobody can lock every administrator out.  A user's
 * roles take effect at their next request: the router reads them with the
 * session.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "validate.h"

#define ROLE_MAX_USERS  1000

static const char *const writable[] = { "name", "description", "policy", NULL };
static const char *const readonly[] = { "builtin", "userCount", NULL };

#define DOC_BY_ID  "SELECT doc::text FROM role_docs WHERE id = $1"


static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    if (!val_merge(req, doc, stored, writable, readonly) || !val_name(req, doc)
        || !val_string(req, doc, "description", DESCRIPTION_MAX_LEN))
    {
        return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(doc, "policy") == NULL) {
        http_invalid(req, "policy", "policy is required: {\"statements\": [...]}");
        return false;
    }
    return router_policy_valid(req, cJSON_GetObjectItemCaseSensitive(doc, "policy"));
}


void
api_roles_list(http_req_t *req)
{
    doc_reply_list(req, "SELECT doc, created_at, id FROM role_docs", 0, NULL);
}


void
api_roles_get(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    doc_reply(req, 200, DOC_BY_ID, 1, params, "role");
}


/* the stored role, NULL after answering 404 (or 403 for a built-in one) */
static cJSON *
fetch_changeable(http_req_t *req, const char *const *params)
{
    cJSON *stored = doc_fetch(req, DOC_BY_ID, 1, params, "role");

    if (stored != NULL && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(stored, "builtin"))) {
        http_error(req, 403, "forbidden", NULL, "the built-in role %s cannot be changed",
                   doc_str(stored, "name"));
        cJSON_Delete(stored);
        return NULL;
    }
    return stored;
}


static void
store(http_req_t *req, const char *sql, const char *id, cJSON *doc, int status)
{
    char       *policy = doc_json(doc, "policy");
    const char *params[4] = { id, doc_str(doc, "name"), doc_str(doc, "description"), policy };

    if (db_run(req->db, sql, 4, params) != 0) {
        http_db_error(req, "role");
    } else {
        log_info("roles: user=%s %s role=%s id=%s", req->username,
                 status == 201 ? "created" : "updated", params[1], id);
        doc_reply(req, status, DOC_BY_ID, 1, params, "role");
    }
    free(policy);
}


void
api_roles_create(http_req_t *req)
{
    cJSON *doc = cJSON_CreateObject();
    char   id[UUID_LEN + 1];

    if (validate(req, doc, NULL)) {
        crypto_uuid_v4(id);
        store(req, "INSERT INTO roles (id, name, description, policy)"
                   " VALUES ($1, $2, $3, $4)", id, doc, 201);
    }
    cJSON_Delete(doc);
}


void
api_roles_update(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };
    cJSON      *stored = fetch_changeable(req, params);
    cJSON      *doc;

    if (stored == NULL) {
        return;
    }
    doc = cJSON_CreateObject();
    if (validate(req, doc, stored)) {
        store(req, "UPDATE roles SET name = $2, description = $3, policy = $4,"
                   " updated_at = now() WHERE id = $1", params[0], doc, 200);
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_roles_delete(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };
    cJSON      *stored = fetch_changeable(req, params);

    if (stored == NULL) {
        return;
    }
    doc_reply_delete(req, "DELETE FROM roles WHERE id = $1", 1, params, "role");
    if (req->status == 204) {
        log_info("roles: user=%s deleted role=%s id=%s", req->username,
                 doc_str(stored, "name"), params[0]);
    }
    cJSON_Delete(stored);
}


/*
 * The body's userIds as a PostgreSQL uuid[] literal into out; false after
 * answering 400 naming the faulty element.
 */
static bool
user_ids(http_req_t *req, char *out, size_t out_size)
{
    static const char *const fields[] = { "userIds", NULL };
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(req->json, "userIds");
    const cJSON *id;
    cJSON       *scratch = cJSON_CreateObject();
    bool         known = val_merge(req, scratch, NULL, fields, NULL);
    size_t       len = 1;
    int          i = 0;
    char         field[32];

    cJSON_Delete(scratch);
    if (!known) {
        return false;
    }
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) < 1
        || cJSON_GetArraySize(ids) > ROLE_MAX_USERS)
    {
        http_invalid(req, "userIds", "userIds must be an array of 1 to %d user ids",
                     ROLE_MAX_USERS);
        return false;
    }
    out[0] = '{';
    cJSON_ArrayForEach(id, ids) {
        snprintf(field, sizeof(field), "userIds[%d]", i++);
        if (!cJSON_IsString(id) || !crypto_is_uuid(id->valuestring)) {
            http_invalid(req, field, "%s must be the id of a user", field);
            return false;
        }
        /* ROLE_MAX_USERS uuids and commas fit by the caller's size */
        len += (size_t) snprintf(out + len, out_size - len, "%s%s", i > 1 ? "," : "",
                                 id->valuestring);
    }
    snprintf(out + len, out_size - len, "}");
    return true;
}

#define USER_IDS_SIZE  (ROLE_MAX_USERS * (UUID_LEN + 1) + 2)


/* answers 400 naming the first of userIds (a uuid[] literal) that is no
 * user; true when all are */
static bool
users_exist(http_req_t *req, const char *ids)
{
    const char *params[1] = { ids };
    PGresult   *res = db_exec(req->db, "SELECT i - 1 FROM unnest($1::uuid[]) WITH ORDINALITY"
                                       " AS a(id, i) WHERE NOT EXISTS"
                                       " (SELECT 1 FROM users u WHERE u.id = a.id)"
                                       " ORDER BY i LIMIT 1", 1, params);
    bool        all;

    if (res == NULL) {
        http_db_error(req, "user");
        return false;
    }
    all = PQntuples(res) == 0;
    if (!all) {
        char field[32];

        snprintf(field, sizeof(field), "userIds[%s]", PQgetvalue(res, 0, 0));
        http_invalid(req, field, "%s: no user with this id", field);
    }
    PQclear(res);
    return all;
}


/*
 * Runs sql ($1: the role, $2: the body's userIds as uuid[]) and answers the
 * role; assign: whether every id must be a user (an unknown one is a 400).
 */
static void
change_holders(http_req_t *req, const char *sql, bool assign)
{
    const char *params[2] = { http_param(req, "id"), NULL };
    char       *ids = malloc(USER_IDS_SIZE);

    if (ids == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return;
    }
    params[1] = ids;
    if (user_ids(req, ids, USER_IDS_SIZE) && (!assign || users_exist(req, ids))) {
        if (db_run(req->db, sql, 2, params) != 0) {
            http_db_error(req, "role");
        } else {
            log_info("roles: user=%s %s role id=%s for %d users", req->username,
                     assign ? "assigned" : "unassigned", params[0],
                     cJSON_GetArraySize(cJSON_GetObjectItem(req->json, "userIds")));
            doc_reply(req, 200, DOC_BY_ID, 1, params, "role");
        }
    }
    free(ids);
}


/* POST /{id}/assign {userIds}: gives the role to each (again is no error) */
void
api_roles_assign(http_req_t *req)
{
    change_holders(req, "INSERT INTO user_roles (user_id, role_id)"
                        " SELECT unnest($2::uuid[]), id FROM roles WHERE id = $1"
                        " ON CONFLICT DO NOTHING", true);
}


/* POST /{id}/unassign {userIds}: takes the role from each (the router
 * refuses a change that leaves no enabled administrator) */
void
api_roles_unassign(http_req_t *req)
{
    change_holders(req, "DELETE FROM user_roles WHERE role_id = $1"
                        " AND user_id = ANY($2::uuid[])", false);
}
