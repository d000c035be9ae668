/*
 * activity: see activity.h.  The action is the route's action
 * ("ai-connection:update"), or kind:verb for a POST on an object
 * (".../api-keys/{id}/rotate" is "api-key:rotate"); the object's kind is
 * the permission's prefix, its id and name come from the documents.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "api.h"
#include "diff.h"
#include "log.h"

#define PATH_MAX_LEN    512
#define ACTION_MAX_LEN  128


/* the GET route showing the object a change acts on, NULL for a create (a
 * POST to a list) or an action on no object; another POST on
 * ".../{id}/verb" acts on ".../{id}" */
static const route_t *
get_route(const route_t *route)
{
    char        pattern[PATH_MAX_LEN];
    const char *slash;
    size_t      len;

    if (strcmp(route->method, "POST") != 0) {
        return router_route("GET", route->pattern);
    }
    slash = strrchr(route->pattern, '/');
    len = slash ? (size_t) (slash - route->pattern) : 0;
    if (len == 0 || slash[-1] != '}' || len >= sizeof(pattern)
        || router_route("GET", route->pattern) != NULL)
    {
        return NULL;
    }
    memcpy(pattern, route->pattern, len);
    pattern[len] = '\0';
    return router_route("GET", pattern);
}


/* what get answers on this request's parameters, NULL when not 200 */
static cJSON *
fetch_doc(const http_req_t *req, const route_t *get)
{
    http_req_t  scratch = *req;     /* shares the parameters and the connection */
    cJSON      *doc = NULL;

    scratch.route = get;
    scratch.json = NULL;
    scratch.status = 0;
    scratch.response = NULL;
    scratch.before = NULL;
    get->handler(&scratch);
    if (scratch.status == 200 && scratch.response != NULL) {
        doc = cJSON_Parse(scratch.response);
    }
    free(scratch.response);
    return doc;
}


/* a read that runs as a POST (a usage query) changes nothing */
static bool
is_read(const route_t *route)
{
    const char *colon = strrchr(route->action, ':');

    return colon != NULL && (strcmp(colon, ":get") == 0 || strcmp(colon, ":list") == 0);
}


void
activity_begin(http_req_t *req)
{
    const route_t *get = is_read(req->route) ? NULL : get_route(req->route);

    cJSON_Delete(req->before);
    req->before = get ? fetch_doc(req, get) : NULL;
}


typedef struct {
    const char  *user_id;          /* "" or NULL: none */
    const char  *username;
    const char  *action;
    const char  *workspace_id;     /* NULL: none */
    const char  *environment_id;
    const char  *kind;
    const char  *object_id;
    const char  *object_name;
    int          status;
    const cJSON *changes;          /* NULL: {} */
} row_t;


static int
insert(http_req_t *req, const row_t *r)
{
    char        from[HTTP_ADDR_LEN];
    char        path[PATH_MAX_LEN];
    char        status[16];
    char       *changes = r->changes ? cJSON_PrintUnformatted(r->changes) : NULL;
    const char *params[14];
    int         rc;

    http_client_address(req, from);
    snprintf(path, sizeof(path), "%s", req->url);
    snprintf(status, sizeof(status), "%d", r->status);
    params[0] = r->user_id && r->user_id[0] ? r->user_id : NULL;
    params[1] = r->username;
    params[2] = from;
    params[3] = r->action;
    params[4] = req->method;
    params[5] = path;
    params[6] = r->workspace_id;
    params[7] = r->environment_id;
    params[8] = r->kind;
    params[9] = r->object_id ? r->object_id : "";
    params[10] = r->object_name ? r->object_name : "";
    params[11] = r->status < 300 ? "success" : "failure";
    params[12] = status;
    params[13] = changes ? changes : "{}";
    rc = db_run(req->db, "INSERT INTO activity (user_id, username, from_address, action,"
                         " method, path, workspace_id, environment_id, object_kind, object_id,"
                         " object_name, outcome, status, changes)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                14, params);
    if (rc != 0) {
        log_error("activity: user=%s action=%s path=%s cannot be recorded: %s", r->username,
                  r->action, path, db_sqlstate(req->db));
    }
    free(changes);
    return rc;
}


/* doc's name: its name, a user's username, a price's model */
static const char *
name_of(const cJSON *doc)
{
    const char *name = doc_str(doc, "name");

    if (name[0] == '\0') {
        name = doc_str(doc, "username");
    }
    return name[0] ? name : doc_str(doc, "model");
}


/* {"name": {"before": name}}: all a delete keeps of the object */
static cJSON *
deleted(const cJSON *before)
{
    cJSON *name = cJSON_CreateObject();
    cJSON *changes;

    cJSON_AddStringToObject(name, "name", name_of(before));
    changes = diff_changes(name, NULL, NULL);
    cJSON_Delete(name);
    return changes;
}


/* a delete keeps the name, a change of an object the difference, a create
 * (a POST to a list) what it set, an action on no object (logout, a
 * password change) only the secrets its body set */
static cJSON *
changes_of(const http_req_t *req, const route_t *get, const cJSON *after)
{
    const route_t *route = req->route;

    if (strcmp(route->method, "DELETE") == 0 && req->before != NULL) {
        return deleted(req->before);
    }
    if (strcmp(route->method, "POST") == 0 && get == NULL
        && router_route("GET", route->pattern) == NULL)
    {
        return diff_changes(NULL, NULL, req->json);
    }
    return diff_changes(req->before, after, req->json);
}


int
activity_record(http_req_t *req)
{
    const route_t *route = req->route;
    const route_t *get = get_route(route);
    char           action[ACTION_MAX_LEN * 2 + 2];   /* kind:verb */
    char           kind[ACTION_MAX_LEN];
    const char    *colon = strchr(route->action, ':');
    const char    *verb = strrchr(route->pattern, '/');
    cJSON         *after;
    const cJSON   *doc;
    const char    *id;
    cJSON         *changes;
    row_t          r;
    int            rc;

    if (is_read(route)) {
        return 0;
    }
    after = req->response ? cJSON_Parse(req->response) : NULL;
    doc = after ? after : req->before;
    id = doc_str(doc, "id");
    snprintf(kind, sizeof(kind), "%.*s",
             (int) (colon ? colon - route->action : (long) strlen(route->action)),
             route->action);
    if (strcmp(route->method, "POST") == 0 && get != NULL) {
        snprintf(action, sizeof(action), "%s:%s", kind, verb + 1);
    } else {
        snprintf(action, sizeof(action), "%s", route->action);
    }
    if (id[0] == '\0' && req->nparams > 0) {
        id = req->param_values[req->nparams - 1];
    }
    changes = changes_of(req, get, after);

    r.user_id = req->user_id;
    r.username = req->username;
    r.action = action;
    r.workspace_id = http_param(req, "ws");
    if (r.workspace_id == NULL && strcmp(kind, "workspace") == 0 && id[0]) {
        r.workspace_id = id;
    }
    r.environment_id = http_param(req, "env");
    if (r.environment_id == NULL && strcmp(kind, "environment") == 0 && id[0]) {
        r.environment_id = id;
    }
    r.kind = kind;
    r.object_id = id;
    r.object_name = name_of(doc);
    r.status = req->status;
    r.changes = changes;
    rc = insert(req, &r);
    cJSON_Delete(changes);
    cJSON_Delete(after);
    return rc;
}


void
activity_login(http_req_t *req, const char *username, const char *user_id, int status)
{
    row_t r = {
        .user_id = user_id, .username = username, .action = "auth:login",
        .kind = "user", .object_id = user_id, .object_name = username, .status = status,
    };

    if (req->db == NULL || insert(req, &r) != 0) {
        log_warn("activity: login of user=%.64s status=%d not recorded", username, status);
    }
}


int
activity_prune(db_conn_t *c, int days)
{
    char        n[16];
    const char *params[1] = { n };

    snprintf(n, sizeof(n), "%d", days);
    if (db_run(c, "DELETE FROM activity WHERE at < now() - make_interval(days => $1::int)",
               1, params) != 0)
    {
        log_error("activity: cannot delete the records older than %d days", days);
        return -1;
    }
    return 0;
}
