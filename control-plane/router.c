/*
 * router: the route table and what every request goes through before its
 * handler: route match (404 / 405), body limit (413), authentication (401),
 * permission (403), JSON parsing (400: val_body()).
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "credentials.h"
#include "log.h"
#include "pusher.h"
#include "snapshot.h"
#include "validate.h"

#define WS    "/api/v1/workspaces/{ws}"
#define ENV   WS "/environments/{env}"

static const route_t routes[] = {
    { "GET",    "/api/v1/health",            api_health,            NULL },
    { "POST",   "/api/v1/auth/login",        api_auth_login,        NULL },
    { "POST",   "/api/v1/auth/logout",       api_auth_logout,       "auth:logout" },
    { "GET",    "/api/v1/auth/me",           api_auth_me,           "auth:me" },
    { "POST",   "/api/v1/auth/password",     api_auth_password,     "auth:password" },
    { "GET",    "/api/v1/auth/sessions",     api_sessions_list,     "session:list" },
    { "DELETE", "/api/v1/auth/sessions/{id}", api_sessions_delete,  "session:delete" },
    { "GET",    "/api/v1/providers",         api_providers_list,    "provider:list" },
    { "GET",    "/api/v1/dataplanes",        api_dataplanes_list,   "dataplane:list" },
    { "GET",    "/metrics",                  api_metrics,           NULL },

    { "GET",    "/api/v1/users",             api_users_list,        "user:list" },
    { "POST",   "/api/v1/users",             api_users_create,      "user:create" },
    { "GET",    "/api/v1/users/{id}",        api_users_get,         "user:get" },
    { "PUT",    "/api/v1/users/{id}",        api_users_update,      "user:update" },
    { "PATCH",  "/api/v1/users/{id}",        api_users_update,      "user:update" },
    { "DELETE", "/api/v1/users/{id}",        api_users_delete,      "user:delete" },

    { "GET",    "/api/v1/workspaces",        api_workspaces_list,   "workspace:list" },
    { "POST",   "/api/v1/workspaces",        api_workspaces_create, "workspace:create" },
    { "GET",    WS,                          api_workspaces_get,    "workspace:get" },
    { "PUT",    WS,                          api_workspaces_update, "workspace:update" },
    { "PATCH",  WS,                          api_workspaces_update, "workspace:update" },
    { "DELETE", WS,                          api_workspaces_delete, "workspace:delete" },
    { "GET",    WS "/members",               api_members_list,      "workspace-member:list" },
    { "POST",   WS "/members",               api_members_add,       "workspace-member:create" },

    { "GET",    WS "/environments",          api_environments_list,   "environment:list" },
    { "POST",   WS "/environments",          api_environments_create, "environment:create" },
    { "GET",    ENV,                         api_environments_get,    "environment:get" },
    { "PUT",    ENV,                         api_environments_update, "environment:update" },
    { "PATCH",  ENV,                         api_environments_update, "environment:update" },
    { "DELETE", ENV,                         api_environments_delete, "environment:delete" },

    { "GET",    ENV "/connections",          api_connections_list,   "ai-connection:list" },
    { "POST",   ENV "/connections",          api_connections_create, "ai-connection:create" },
    { "GET",    ENV "/connections/{id}",     api_connections_get,    "ai-connection:get" },
    { "PUT",    ENV "/connections/{id}",     api_connections_update, "ai-connection:update" },
    { "PATCH",  ENV "/connections/{id}",     api_connections_update, "ai-connection:update" },
    { "DELETE", ENV "/connections/{id}",     api_connections_delete, "ai-connection:delete" },

    { "GET",    ENV "/resources",            api_resources_list,     "ai-resource:list" },
    { "POST",   ENV "/resources",            api_resources_create,   "ai-resource:create" },
    { "GET",    ENV "/resources/{id}",       api_resources_get,      "ai-resource:get" },
    { "PUT",    ENV "/resources/{id}",       api_resources_update,   "ai-resource:update" },
    { "PATCH",  ENV "/resources/{id}",       api_resources_update,   "ai-resource:update" },
    { "DELETE", ENV "/resources/{id}",       api_resources_delete,   "ai-resource:delete" },

    { "GET",    ENV "/api-keys",             api_keys_list,          "api-key:list" },
    { "POST",   ENV "/api-keys",             api_keys_create,        "api-key:create" },
    { "GET",    ENV "/api-keys/{id}",        api_keys_get,           "api-key:get" },
    { "PUT",    ENV "/api-keys/{id}",        api_keys_update,        "api-key:update" },
    { "PATCH",  ENV "/api-keys/{id}",        api_keys_update,        "api-key:update" },
    { "DELETE", ENV "/api-keys/{id}",        api_keys_delete,        "api-key:delete" },
    { "POST",   ENV "/api-keys/{id}/rotate", api_keys_rotate,        "api-key:update" },

    { "GET",    ENV "/pool-definition",      api_pools_get,          "pool-definition:get" },
    { "PUT",    ENV "/pool-definition",      api_pools_put,          "pool-definition:update" },
    { "DELETE", ENV "/pool-definition",      api_pools_delete,       "pool-definition:delete" },

    { "GET",    ENV "/audit",                api_audit_list,         "audit:list" },
    { "GET",    ENV "/audit/{id}",           api_audit_get,          "audit:get" },
    { "POST",   ENV "/usage",                api_usage_query,        "usage:get" },

    /* across workspaces */
    { "GET",    "/api/v1/audit",             api_audit_list_all,     "audit:list" },
    { "GET",    "/api/v1/audit/dead-letters", api_audit_dead_letters, "audit:list" },
    { "GET",    "/api/v1/audit/{id}",        api_audit_get_any,      "audit:get" },

    /* encryption keys */
    { "GET",    "/api/v1/encryption-keys",   api_encryption_keys_list,   "encryption-key:list" },
    { "POST",   "/api/v1/encryption-keys",   api_encryption_keys_create, "encryption-key:create" },
    { "POST",   "/api/v1/encryption-keys/{id}/retire", api_encryption_keys_retire,
      "encryption-key:update" },
};


/* what a user in state CHANGE_PASSWORD may call */
static bool
open_while_changing_password(const route_t *route)
{
    return route->handler == api_auth_password || route->handler == api_auth_me
           || route->handler == api_auth_logout;
}


static void
clear_params(http_req_t *req)
{
    for (int i = 0; i < req->nparams; i++) {
        free(req->param_values[i]);
        req->param_values[i] = NULL;
    }
    req->nparams = 0;
}


/* length of the path segment starting at s */
static size_t
segment_len(const char *s)
{
    const char *slash = strchr(s, '/');

    return slash ? (size_t) (slash - s) : strlen(s);
}


/* matches path against pattern segment by segment, capturing {params} */
static bool
match_path(const route_t *route, const char *path, http_req_t *req)
{
    const char *p = route->pattern;
    const char *u = path;

    clear_params(req);
    while (*p == '/' && *u == '/') {
        size_t plen = segment_len(++p);
        size_t ulen = segment_len(++u);

        if (ulen == 0 && u[0] == '\0' && plen > 0) {
            return false;
        }
        if (p[0] == '{') {
            if (ulen == 0 || req->nparams == HTTP_MAX_PARAMS) {
                return false;
            }
            /* the name points into the pattern, up to the closing brace */
            req->param_names[req->nparams] = p + 1;
            req->param_values[req->nparams++] = strndup(u, ulen);
        } else if (plen != ulen || strncmp(p, u, plen) != 0) {
            return false;
        }
        p += plen;
        u += ulen;
    }
    /* a single trailing slash is the same path */
    return *p == '\0' && (*u == '\0' || (u[0] == '/' && u[1] == '\0'));
}


/* "{ws}" names in the pattern end with '}', so compare up to it */
const char *
http_param(const http_req_t *req, const char *name)
{
    size_t len = strlen(name);

    for (int i = 0; i < req->nparams; i++) {
        if (strncmp(req->param_names[i], name, len) == 0
            && req->param_names[i][len] == '}')
        {
            return req->param_values[i];
        }
    }
    return NULL;
}


static const route_t *
find_route(http_req_t *req, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (match_path(&routes[i], req->url, req)) {
            *path_known = true;
            if (strcmp(routes[i].method, req->method) == 0) {
                return &routes[i];
            }
        }
    }
    clear_params(req);
    return NULL;
}


/*
 * Every authenticated user is an administrator for now; the permission
 * string of each route (and of the checks inside handlers, such as
 * user-session:delete) is where RBAC policies (SPEC §8) will be checked.
 */
bool
router_allows(const http_req_t *req, const char *permission)
{
    return req->user_id[0] != '\0' && permission != NULL;
}


/* every {param} of these routes is a UUID; anything else cannot exist */
static bool
params_are_uuids(const http_req_t *req)
{
    for (int i = 0; i < req->nparams; i++) {
        if (!crypto_is_uuid(req->param_values[i])) {
            return false;
        }
    }
    return true;
}


static bool
parse_body(http_req_t *req)
{
    bool writes = strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0
                  || strcmp(req->method, "PATCH") == 0;

    if (req->body_len > 0) {
        if (!val_body(req)) {
            return false;
        }
        req->json = cJSON_ParseWithLength(req->body, req->body_len);
        if (req->json == NULL) {
            http_error(req, 400, "validation_error", NULL, "the body is not valid JSON");
            return false;
        }
    }
    if (!writes) {
        return true;
    }
    if (req->json == NULL) {
        req->json = cJSON_CreateObject();
    } else if (!cJSON_IsObject(req->json)) {
        http_error(req, 400, "validation_error", NULL, "the body must be a JSON object");
        return false;
    }
    return true;
}


/*
 * A change runs in one transaction with the check the data planes would
 * make: when it changed the configuration (its triggers bumped the
 * version), the data planes' compiler runs on it before the commit, and a
 * change that would make an object invalid is refused with that object's
 * field, so that no data plane ever receives it (see snapshot_check()).
 */
static void
run_change(http_req_t *req)
{
    long long           before;
    snapshot_problem_t  problem;
    int                 rc;

    if (db_begin(req->db) != 0) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }
    before = snapshot_current_version(req->db);
    req->route->handler(req);

    if (req->status == 0 || req->status >= 300) {
        db_rollback(req->db);
        return;
    }
    rc = snapshot_current_version(req->db) != before ? snapshot_check(req->db, &problem) : 0;
    if (rc != 0) {
        db_rollback(req->db);
        if (rc < 0) {
            http_error(req, 500, "internal_error", NULL,
                       "the configuration could not be checked");
        } else {
            http_error(req, 400, "validation_error", problem.field[0] ? problem.field : NULL,
                       "the change would leave %s invalid: %s%s%s", problem.object,
                       problem.field, problem.field[0] ? ": " : "", problem.message);
        }
        return;
    }
    if (db_commit(req->db) != 0) {
        http_error(req, 503, "unavailable", NULL, "the change could not be committed");
    }
}


static void
run_route(http_req_t *req)
{
    const route_t *route = req->route;

    if (req->body_too_large) {
        http_error(req, 413, "payload_too_large", NULL,
                   "the body is larger than %d bytes", HTTP_MAX_BODY);
        return;
    }
    if (route->permission != NULL) {
        if (req->db == NULL) {
            http_error(req, 503, "unavailable", NULL, "the database is unreachable");
            return;
        }
        if (!auth_authenticate(req)) {
            if (db_unavailable(req->db)) {
                http_error(req, 503, "unavailable", NULL, "the database is unreachable");
            } else {
                http_error(req, 401, "unauthorized", NULL, "a valid bearer token is required");
            }
            return;
        }
        if (req->must_change_password && !open_while_changing_password(route)) {
            http_error(req, 403, "password_change_required", NULL,
                       "the password must be changed first: POST /api/v1/auth/password");
            return;
        }
        if (!router_allows(req, route->permission)) {
            http_error(req, 403, "forbidden", NULL, "%s is not allowed", route->permission);
            return;
        }
    }
    if (!params_are_uuids(req)) {
        http_not_found(req, "the object");
        return;
    }
    if (!parse_body(req)) {
        return;
    }
    if (route->permission != NULL && strcmp(req->method, "GET") != 0) {
        run_change(req);
    } else {
        route->handler(req);
    }
}


void
router_dispatch(http_req_t *req)
{
    bool path_known;

    req->route = find_route(req, &path_known);
    if (req->route == NULL) {
        if (path_known) {
            http_error(req, 405, "method_not_allowed", NULL, "method %s not allowed here",
                       req->method);
        } else {
            http_error(req, 404, "not_found", NULL, "no such route");
        }
        return;
    }

    req->db = db_acquire();
    run_route(req);
    if (req->db != NULL) {
        db_release(req->db);
        req->db = NULL;
    }
    if (req->status == 0) {
        log_error("http route=%s %s: handler gave no answer", req->method,
                  req->route->pattern);
        http_error(req, 500, "internal_error", NULL, "no answer");
    }
    /* the changed tables bumped the config version in their transaction;
     * a changed aws-bedrock connection needs its role assumed again */
    if (req->status < 300 && strcmp(req->method, "GET") != 0) {
        pusher_notify();
        credentials_notify();
    }
}


void
router_print_routes(FILE *out)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        fprintf(out, "%s %s %s\n", routes[i].method, routes[i].pattern,
                routes[i].permission ? routes[i].permission : "-");
    }
}
