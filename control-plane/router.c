/*
 * router: the route table and what every request goes through before its
 * handler: route match (404 / 405), body limit (413), authentication (401:
 * a session, or on a ROUTE_API_KEY route an API key of {env}), permission
 * (403, a session's), JSON parsing (400: val_body()).
 */

#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "api.h"
#include "credentials.h"
#include "log.h"
#include "policy.h"
#include "pusher.h"
#include "snapshot.h"
#include "validate.h"
#include "vmx_policy.h"

#define WS    "/api/v1/workspaces/{ws}"
#define ENV   WS "/environments/{env}"

/* the resources of a workspace's and an environment's objects */
#define R_WS   "workspace:{ws}"
#define R_ENV  R_WS ":environment:{env}"

/*
 * Every route of the API, with what it takes: the action and resource a
 * policy must allow (SPEC §8, docs/ARCHITECTURE.md "Roles and policies").
 * `vmx-control-plane --routes` prints this table; the permission test
 * matrix (t/controlplane/test_permissions.py) is generated from it.
 */
static const route_t routes[] = {
    { "GET",    "/api/v1/health",            api_health,            NULL, NULL, 0 },
    { "GET",    "/metrics",                  api_metrics,           NULL, NULL, 0 },
    { "POST",   "/api/v1/auth/login",        api_auth_login,        NULL, NULL, 0 },

    /* the caller's own */
    { "POST",   "/api/v1/auth/logout",       api_auth_logout,       "auth:logout", NULL, 0 },
    { "GET",    "/api/v1/auth/me",           api_auth_me,           "auth:get", NULL, 0 },
    { "PATCH",  "/api/v1/auth/me",           api_auth_me_update,    "auth:update", NULL, 0 },
    { "POST",   "/api/v1/auth/password",     api_auth_password,     "auth:password", NULL, 0 },
    { "GET",    "/api/v1/auth/sessions",     api_sessions_list,     "session:list", NULL, 0 },
    { "DELETE", "/api/v1/auth/sessions/{id}", api_sessions_delete,  "session:delete", NULL, 0 },

    { "GET",    "/api/v1/providers",         api_providers_list,    "provider:list",
      "provider:*", 0 },

    /* read by anybody; a change reprices every workspace */
    { "GET",    "/api/v1/prices",            api_prices_list,       "price:list",
      "price:*", 0 },
    { "POST",   "/api/v1/prices",            api_prices_create,     "price:create", "price:*",
      ROUTE_ALL_WORKSPACES },
    { "GET",    "/api/v1/prices/{id}",       api_prices_get,        "price:get", "price:{id}", 0 },
    { "PUT",    "/api/v1/prices/{id}",       api_prices_update,     "price:update",
      "price:{id}", ROUTE_ALL_WORKSPACES },
    { "PATCH",  "/api/v1/prices/{id}",       api_prices_update,     "price:update",
      "price:{id}", ROUTE_ALL_WORKSPACES },
    { "DELETE", "/api/v1/prices/{id}",       api_prices_delete,     "price:delete",
      "price:{id}", ROUTE_ALL_WORKSPACES },

    { "GET",    "/api/v1/dataplanes",        api_dataplanes_list,   "dataplane:list",
      "dataplane:*", ROUTE_ALL_WORKSPACES },
    /* a data plane's, with the data planes' token (api_dataplanes.c) */
    { "POST",   "/api/v1/dataplanes/announce", api_dataplanes_announce, NULL, NULL, 0 },

    { "GET",    "/api/v1/users",             api_users_list,        "user:list", "user:*", 0 },
    { "POST",   "/api/v1/users",             api_users_create,      "user:create",
      "user:{username}", 0 },
    { "GET",    "/api/v1/users/{id}",        api_users_get,         "user:get", "user:{id}", 0 },
    { "PUT",    "/api/v1/users/{id}",        api_users_update,      "user:update", "user:{id}", 0 },
    { "PATCH",  "/api/v1/users/{id}",        api_users_update,      "user:update", "user:{id}", 0 },
    { "DELETE", "/api/v1/users/{id}",        api_users_delete,      "user:delete", "user:{id}", 0 },

    { "GET",    "/api/v1/roles",             api_roles_list,        "role:list", "role:*", 0 },
    { "POST",   "/api/v1/roles",             api_roles_create,      "role:create", "role:{name}", 0 },
    { "GET",    "/api/v1/roles/{id}",        api_roles_get,         "role:get", "role:{id}", 0 },
    { "PUT",    "/api/v1/roles/{id}",        api_roles_update,      "role:update", "role:{id}", 0 },
    { "PATCH",  "/api/v1/roles/{id}",        api_roles_update,      "role:update", "role:{id}", 0 },
    { "DELETE", "/api/v1/roles/{id}",        api_roles_delete,      "role:delete", "role:{id}", 0 },
    { "POST",   "/api/v1/roles/{id}/assign", api_roles_assign,      "role:assign", "role:{id}", 0 },
    { "POST",   "/api/v1/roles/{id}/unassign", api_roles_unassign,  "role:unassign",
      "role:{id}", 0 },

    { "GET",    "/api/v1/workspaces",        api_workspaces_list,   "workspace:list",
      "workspace:*", 0 },
    { "POST",   "/api/v1/workspaces",        api_workspaces_create, "workspace:create",
      "workspace:{name}", 0 },
    { "GET",    WS,                          api_workspaces_get,    "workspace:get", R_WS, 0 },
    { "PUT",    WS,                          api_workspaces_update, "workspace:update", R_WS,
      ROUTE_OWNER },
    { "PATCH",  WS,                          api_workspaces_update, "workspace:update", R_WS,
      ROUTE_OWNER },
    { "DELETE", WS,                          api_workspaces_delete, "workspace:delete", R_WS,
      ROUTE_OWNER },

    { "GET",    WS "/members",               api_members_list,      "workspace-member:list",
      R_WS ":member:*", 0 },
    { "POST",   WS "/members",               api_members_add,       "workspace-member:create",
      R_WS ":member:*", ROUTE_OWNER },
    { "PATCH",  WS "/members/{id}",          api_members_update,    "workspace-member:update",
      R_WS ":member:{id}", ROUTE_OWNER },
    { "DELETE", WS "/members/{id}",          api_members_delete,    "workspace-member:delete",
      R_WS ":member:{id}", ROUTE_OWNER_OR_SELF },

    { "GET",    WS "/environments",          api_environments_list,   "environment:list",
      R_WS ":environment:*", 0 },
    { "POST",   WS "/environments",          api_environments_create, "environment:create",
      R_WS ":environment:{name}", 0 },
    { "GET",    ENV,                         api_environments_get,    "environment:get",
      R_ENV, 0 },
    { "PUT",    ENV,                         api_environments_update, "environment:update",
      R_ENV, 0 },
    { "PATCH",  ENV,                         api_environments_update, "environment:update",
      R_ENV, 0 },
    { "DELETE", ENV,                         api_environments_delete, "environment:delete",
      R_ENV, 0 },

    { "GET",    ENV "/connections",          api_connections_list,   "ai-connection:list",
      R_ENV ":ai-connection:*", 0 },
    { "POST",   ENV "/connections",          api_connections_create, "ai-connection:create",
      R_ENV ":ai-connection:{name}", 0 },
    { "GET",    ENV "/connections/{id}",     api_connections_get,    "ai-connection:get",
      R_ENV ":ai-connection:{id}", 0 },
    { "PUT",    ENV "/connections/{id}",     api_connections_update, "ai-connection:update",
      R_ENV ":ai-connection:{id}", 0 },
    { "PATCH",  ENV "/connections/{id}",     api_connections_update, "ai-connection:update",
      R_ENV ":ai-connection:{id}", 0 },
    { "DELETE", ENV "/connections/{id}",     api_connections_delete, "ai-connection:delete",
      R_ENV ":ai-connection:{id}", 0 },

    { "GET",    ENV "/resources",            api_resources_list,     "ai-resource:list",
      R_ENV ":ai-resource:*", 0 },
    { "POST",   ENV "/resources",            api_resources_create,   "ai-resource:create",
      R_ENV ":ai-resource:{name}", 0 },
    { "GET",    ENV "/resources/{id}",       api_resources_get,      "ai-resource:get",
      R_ENV ":ai-resource:{id}", 0 },
    { "PUT",    ENV "/resources/{id}",       api_resources_update,   "ai-resource:update",
      R_ENV ":ai-resource:{id}", 0 },
    { "PATCH",  ENV "/resources/{id}",       api_resources_update,   "ai-resource:update",
      R_ENV ":ai-resource:{id}", 0 },
    { "DELETE", ENV "/resources/{id}",       api_resources_delete,   "ai-resource:delete",
      R_ENV ":ai-resource:{id}", 0 },
    { "POST",   ENV "/resources/{id}/route-test", api_resources_route_test, "ai-resource:get",
      R_ENV ":ai-resource:{id}", 0 },

    { "GET",    ENV "/api-keys",             api_keys_list,          "api-key:list",
      R_ENV ":api-key:*", 0 },
    { "POST",   ENV "/api-keys",             api_keys_create,        "api-key:create",
      R_ENV ":api-key:{name}", 0 },
    { "GET",    ENV "/api-keys/{id}",        api_keys_get,           "api-key:get",
      R_ENV ":api-key:{id}", 0 },
    { "PUT",    ENV "/api-keys/{id}",        api_keys_update,        "api-key:update",
      R_ENV ":api-key:{id}", 0 },
    { "PATCH",  ENV "/api-keys/{id}",        api_keys_update,        "api-key:update",
      R_ENV ":api-key:{id}", 0 },
    { "DELETE", ENV "/api-keys/{id}",        api_keys_delete,        "api-key:delete",
      R_ENV ":api-key:{id}", 0 },
    { "POST",   ENV "/api-keys/{id}/rotate", api_keys_rotate,        "api-key:rotate",
      R_ENV ":api-key:{id}", 0 },

    { "GET",    ENV "/pool-definition",      api_pools_get,          "pool-definition:get",
      R_ENV ":pool-definition", 0 },
    { "PUT",    ENV "/pool-definition",      api_pools_put,          "pool-definition:update",
      R_ENV ":pool-definition", 0 },
    { "DELETE", ENV "/pool-definition",      api_pools_delete,       "pool-definition:delete",
      R_ENV ":pool-definition", 0 },

    { "GET",    ENV "/audit",                api_audit_list,         "audit:list",
      R_ENV ":audit:*", 0 },
    { "GET",    ENV "/audit/{id}",           api_audit_get,          "audit:get",
      R_ENV ":audit:{id}", 0 },
    { "POST",   ENV "/usage",                api_usage_query,        "usage:get",
      R_ENV ":usage", 0 },

    /* a batch of completions: a key of the environment may run them too */
    { "GET",    ENV "/completion-batch",     api_batches_list,       "completion-batch:list",
      R_ENV ":completion-batch:*", ROUTE_API_KEY },
    { "POST",   ENV "/completion-batch",     api_batches_create,     "completion-batch:create",
      R_ENV ":completion-batch:*", ROUTE_API_KEY },
    { "GET",    ENV "/completion-batch/{id}", api_batches_get,       "completion-batch:get",
      R_ENV ":completion-batch:{id}", ROUTE_API_KEY },
    { "GET",    ENV "/completion-batch/{id}/items", api_batches_items, "completion-batch:get",
      R_ENV ":completion-batch:{id}", ROUTE_API_KEY },
    { "GET",    ENV "/completion-batch/{id}/results", api_batches_results,
      "completion-batch:get", R_ENV ":completion-batch:{id}", ROUTE_API_KEY },
    { "POST",   ENV "/completion-batch/{id}/cancel", api_batches_cancel,
      "completion-batch:cancel", R_ENV ":completion-batch:{id}", ROUTE_API_KEY },

    /* across workspaces */
    { "GET",    "/api/v1/audit",             api_audit_list_all,     "audit:list",
      "audit:*", ROUTE_ALL_WORKSPACES },
    { "GET",    "/api/v1/audit/dead-letters", api_audit_dead_letters, "audit:list",
      "audit:dead-letter:*", ROUTE_ALL_WORKSPACES },
    { "GET",    "/api/v1/audit/{id}",        api_audit_get_any,      "audit:get",
      "audit:{id}", ROUTE_ALL_WORKSPACES },

    /* who changed what */
    { "GET",    "/api/v1/activity",          api_activity_list,      "activity:list",
      "activity:*", ROUTE_ALL_WORKSPACES },
    { "GET",    WS "/activity",              api_activity_list_workspace,
      "workspace-activity:list", R_WS ":activity:*", 0 },

    /* the keyring of the secrets' encryption */
    { "GET",    "/api/v1/encryption-keys",   api_encryption_keys_list,   "encryption-key:list",
      "encryption-key:*", 0 },
    { "POST",   "/api/v1/encryption-keys",   api_encryption_keys_create, "encryption-key:create",
      "encryption-key:*", 0 },
    { "POST",   "/api/v1/encryption-keys/{id}/retire", api_encryption_keys_retire,
      "encryption-key:update", "encryption-key:{id}", 0 },

    /* OIDC: the login, then the provider's redirect back */
    { "GET",    "/api/v1/auth/oidc/login",   api_oidc_login,         NULL, NULL, 0 },
    { "GET",    "/api/v1/auth/oidc/callback", api_oidc_callback,     NULL, NULL, 0 },
};

/* actions a policy may name that no route takes as its own */
static const char *const other_actions[] = {
    /* act in a workspace without being a member (policy resource: workspace:<name>) */
    "workspace:access-all",
    /* end another user's session (resource: user:<username>) */
    "user-session:delete",
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


const route_t *
router_route(const char *method, const char *pattern)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].method, method) == 0 && strcmp(routes[i].pattern, pattern) == 0) {
            return &routes[i];
        }
    }
    return NULL;
}


bool
router_allows(const http_req_t *req, const char *action, const char *resource)
{
    return req->user_id[0] != '\0' && policy_allows(req->policies, action, resource);
}


/* policy.c's test of an action glob: whether some action of the API matches it */
static bool
action_known(const char *glob)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (routes[i].action != NULL && vmx_glob_match(glob, routes[i].action)) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(other_actions) / sizeof(other_actions[0]); i++) {
        if (vmx_glob_match(glob, other_actions[i])) {
            return true;
        }
    }
    return false;
}


bool
router_policy_valid(http_req_t *req, const cJSON *policy)
{
    char field[128], message[VMX_GLOB_MAX_LEN + 128];

    if (!policy_validate(policy, action_known, field, sizeof(field), message, sizeof(message))) {
        http_invalid(req, field, "%s: %s", field, message);
        return false;
    }
    return true;
}


/* the names an {id} of a route stands for, by the kind the template puts
 * before it; kinds without an entry (audit records) use the id itself */
static const struct {
    const char  *kind;
    const char  *sql;       /* $1: the id, $2: {env} when scoped */
    int          nparams;
} id_names[] = {
    { "user",          "SELECT username FROM users WHERE id = $1", 1 },
    { "member",        "SELECT username FROM users WHERE id = $1", 1 },
    { "role",          "SELECT name FROM roles WHERE id = $1", 1 },
    { "ai-connection", "SELECT name FROM connections WHERE id = $1 AND environment_id = $2", 2 },
    { "ai-resource",   "SELECT name FROM resources WHERE id = $1 AND environment_id = $2", 2 },
    { "api-key",       "SELECT name FROM api_keys WHERE id = $1 AND environment_id = $2", 2 },
};

/* three escaped names of NAME_MAX_LEN and the template's words */
#define RESOURCE_MAX_LEN  2048

typedef struct {
    char   text[RESOURCE_MAX_LEN];
    size_t len;
    bool   overflow;
} resource_t;


static void
resource_add(resource_t *r, const char *s, size_t n)
{
    if (r->overflow || r->len + n >= sizeof(r->text)) {
        r->overflow = true;
        return;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = '\0';
}


/* a name escaped, so that it can neither span a ':' nor be a wildcard */
static void
resource_add_name(resource_t *r, const char *name)
{
    char escaped[NAME_MAX_LEN * 3 + 1];

    if (vmx_policy_escape(name, escaped, sizeof(escaped)) >= sizeof(escaped)) {
        r->overflow = true;
        return;
    }
    resource_add(r, escaped, strlen(escaped));
}


/*
 * The name of the object {id} stands for (kind: the template's word before
 * it) into r; an object that does not exist keeps its id, and its handler
 * answers the 404.  false after answering 500.
 */
static bool
resource_add_id(http_req_t *req, resource_t *r, const char *kind, size_t kind_len)
{
    const char *params[2] = { http_param(req, "id"), http_param(req, "env") };
    PGresult   *res;

    for (size_t i = 0; i < sizeof(id_names) / sizeof(id_names[0]); i++) {
        if (strlen(id_names[i].kind) != kind_len
            || strncmp(id_names[i].kind, kind, kind_len) != 0)
        {
            continue;
        }
        res = db_exec(req->db, id_names[i].sql, id_names[i].nparams, params);
        if (res == NULL) {
            http_db_error(req, id_names[i].kind);
            return false;
        }
        if (PQntuples(res) == 1) {
            resource_add_name(r, PQgetvalue(res, 0, 0));
            PQclear(res);
            return true;
        }
        PQclear(res);
        break;
    }
    resource_add(r, params[0], strlen(params[0]));
    return true;
}


/*
 * Looks up {ws} and the caller's membership of it: *role is "OWNER",
 * "MEMBER" or "" for none, *access_all whether a policy lets the caller act
 * in it as an OWNER without being a member.  A workspace the caller may not
 * see is one that does not exist.  false after answering 404 or 500.
 */
static bool
resource_add_workspace(http_req_t *req, resource_t *r, char *role, size_t role_size,
                       bool *access_all)
{
    const char *params[2] = { http_param(req, "ws"), req->user_id };
    PGresult   *res;
    resource_t  ws = { .len = 0 };

    res = db_exec(req->db, "SELECT w.name, coalesce(m.role, '') FROM workspaces w"
                           " LEFT JOIN workspace_members m"
                           "   ON m.workspace_id = w.id AND m.user_id = $2"
                           " WHERE w.id = $1", 2, params);
    if (res == NULL) {
        http_db_error(req, "workspace");
        return false;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        http_not_found(req, "workspace");
        return false;
    }
    snprintf(role, role_size, "%s", PQgetvalue(res, 0, 1));
    resource_add(&ws, "workspace:", 10);
    resource_add_name(&ws, PQgetvalue(res, 0, 0));
    PQclear(res);

    *access_all = router_allows(req, "workspace:access-all", ws.text);
    if (role[0] == '\0' && !*access_all) {
        http_not_found(req, "workspace");
        return false;
    }
    /* the template's "workspace:" is already in r */
    resource_add(r, ws.text + 10, ws.len - 10);
    return true;
}


/* the name of {env} of {ws} into r; false after answering 404 or 500 */
static bool
resource_add_environment(http_req_t *req, resource_t *r)
{
    const char *params[2] = { http_param(req, "env"), http_param(req, "ws") };
    PGresult   *res;

    res = db_exec(req->db, "SELECT name FROM environments WHERE id = $1 AND workspace_id = $2",
                  2, params);
    if (res == NULL) {
        http_db_error(req, "environment");
        return false;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        http_not_found(req, "environment");
        return false;
    }
    resource_add_name(r, PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}


/*
 * Whether the caller may run the route: a member of its workspace (or one
 * allowed workspace:access-all on it), an OWNER where the route says so,
 * and a policy allowing the route's action on the resource its template
 * names.  false after answering 403, 404 or 500.  Resolving the template
 * finds {ws} and {env}: a handler of a route that names them need not look.
 */
static bool
access_check(http_req_t *req)
{
    const route_t *route = req->route;
    const char    *t = route->resource, *open;
    resource_t     r = { .len = 0 };
    char           role[8] = "";
    bool           access_all = false, owner_needed;

    req->all_workspaces = router_allows(req, "workspace:access-all", "workspace:*");
    if (t == NULL) {
        return true;                                /* the caller's own */
    }
    if ((route->flags & ROUTE_ALL_WORKSPACES) && !req->all_workspaces) {
        http_error(req, 403, "forbidden", NULL,
                   "%s across workspaces needs workspace:access-all", route->action);
        return false;
    }
    while ((open = strchr(t, '{')) != NULL) {
        const char *close = strchr(open, '}');
        size_t      name_len = (size_t) (close - open - 1);
        bool        ok = true;

        resource_add(&r, t, (size_t) (open - t));
        if (name_len == 2 && strncmp(open + 1, "ws", 2) == 0) {
            ok = resource_add_workspace(req, &r, role, sizeof(role), &access_all);
        } else if (name_len == 3 && strncmp(open + 1, "env", 3) == 0) {
            ok = resource_add_environment(req, &r);
        } else if (name_len == 2 && strncmp(open + 1, "id", 2) == 0) {
            /* the kind is the template's word before ":{id}" */
            const char *kind = open - 1;

            while (kind > route->resource && kind[-1] != ':') {
                kind--;
            }
            ok = resource_add_id(req, &r, kind, (size_t) (open - 1 - kind));
        } else {
            /* a field of the body: the name of the object a POST creates */
            char         field[32];
            const cJSON *v;

            snprintf(field, sizeof(field), "%.*s", (int) name_len, open + 1);
            v = cJSON_GetObjectItemCaseSensitive(req->json, field);
            /* a name too long is the handler's to refuse */
            if (cJSON_IsString(v) && strlen(v->valuestring) <= NAME_MAX_LEN) {
                resource_add_name(&r, v->valuestring);
            } else {
                resource_add(&r, "*", 1);
            }
        }
        if (!ok) {
            return false;
        }
        t = close + 1;
    }
    resource_add(&r, t, strlen(t));
    if (r.overflow) {
        http_invalid(req, NULL, "the names of the objects are too long");
        return false;
    }

    owner_needed = (route->flags & (ROUTE_OWNER | ROUTE_OWNER_OR_SELF))
                   && strcmp(role, "OWNER") != 0 && !access_all
                   && !((route->flags & ROUTE_OWNER_OR_SELF)
                        && strcmp(http_param(req, "id"), req->user_id) == 0);
    if (owner_needed) {
        http_error(req, 403, "forbidden", NULL,
                   "%s needs an OWNER of the workspace", route->action);
        return false;
    }
    if (!router_allows(req, route->action, r.text)) {
        http_error(req, 403, "forbidden", NULL, "%s on %s is not allowed", route->action,
                   r.text);
        return false;
    }
    return true;
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
 * Whether an enabled user still holds the built-in admin role: a change of
 * users or roles that leaves none is refused, so that no sequence of calls
 * locks every administrator out.  false after answering 409 or 500.
 */
static bool
admin_remains(http_req_t *req)
{
    PGresult *res;
    bool      remains;

    if (strncmp(req->route->action, "user:", 5) != 0
        && strncmp(req->route->action, "role:", 5) != 0)
    {
        return true;
    }
    res = db_exec(req->db, "SELECT EXISTS (SELECT 1 FROM user_roles ur"
                           " JOIN users u ON u.id = ur.user_id JOIN roles r ON r.id = ur.role_id"
                           " WHERE r.name = 'admin' AND r.builtin AND u.enabled)", 0, NULL);
    if (res == NULL) {
        http_db_error(req, "user");
        return false;
    }
    remains = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!remains) {
        http_error(req, 409, "conflict", NULL,
                   "the change would leave no enabled user with the admin role");
    }
    return remains;
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
    activity_begin(req);
    req->route->handler(req);

    if (req->status == 0 || req->status >= 300 || !admin_remains(req)) {
        db_rollback(req->db);
        return;
    }
    req->config_changed = snapshot_current_version(req->db) != before;
    rc = req->config_changed ? snapshot_check(req->db, http_param(req, "env"), &problem) : 0;
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
    /* recorded with the change or not at all */
    if (activity_record(req) != 0) {
        db_rollback(req->db);
        http_error(req, 500, "internal_error", NULL, "the change could not be recorded");
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
    bool           key = false;

    if (req->body_too_large) {
        http_error(req, 413, "payload_too_large", NULL,
                   "the body is larger than %d bytes", HTTP_MAX_BODY);
        return;
    }
    if (route->action != NULL) {
        if (req->db == NULL) {
            http_error(req, 503, "unavailable", NULL, "the database is unreachable");
            return;
        }
        /* an API key is the environment's own: no policy applies to it */
        key = (route->flags & ROUTE_API_KEY) && api_batches_authenticate(req);
        if (!key && !auth_authenticate(req)) {
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
    }
    if (!params_are_uuids(req)) {
        http_not_found(req, "the object");
        return;
    }
    if (!parse_body(req)) {
        return;
    }
    /* argon2id runs before the transaction, with the connection given back,
     * and only for a caller allowed the change */
    if (route->action != NULL && !key
        && (!access_check(req) || !auth_prepare_passwords(req)))
    {
        return;
    }
    if (route->action != NULL && strcmp(req->method, "GET") != 0) {
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
     * a changed aws-bedrock connection needs its role assumed again (a
     * login or a user's change is no news to the data planes) */
    if (req->status < 300 && req->config_changed) {
        pusher_notify();
        credentials_notify();
    }
}


void
router_print_routes(FILE *out)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        unsigned    flags = routes[i].flags;

        fprintf(out, "%s %s %s %s %s\n", routes[i].method, routes[i].pattern,
                routes[i].action ? routes[i].action : "-",
                routes[i].resource ? routes[i].resource : "-",
                flags & ROUTE_OWNER ? "owner"
                : flags & ROUTE_OWNER_OR_SELF ? "owner-or-self"
                : flags & ROUTE_ALL_WORKSPACES ? "all-workspaces"
                : flags & ROUTE_API_KEY ? "api-key" : "-");
    }
}
