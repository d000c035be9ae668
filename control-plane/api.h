/*
 * api: the handlers of the management API (SPEC §8), one file per resource,
 * and the helpers they share.
 */

#ifndef CP_API_H
#define CP_API_H

#include "arena.h"
#include "http.h"

struct vmx_rules_s;

/* api_health.c */
void api_health(http_req_t *req);

/* api_auth.c */
void api_auth_login(http_req_t *req);
void api_auth_logout(http_req_t *req);
void api_auth_me(http_req_t *req);
void api_auth_password(http_req_t *req);
/* fills req->user_id/username from the bearer token; false when invalid */
bool auth_authenticate(http_req_t *req);
/* {token, expiresAt, user} for a new session of user_id (password or OIDC
 * login); NULL on failure */
cJSON *auth_open_session(http_req_t *req, const char *user_id);
/* creates user admin at first start; 0 or -1 */
int auth_bootstrap_admin(const char *password);
/* the login throttle (settings of cfg); 0 or -1 */
struct config_s;
int auth_init(const struct config_s *cfg);
void auth_shutdown(void);
/* before a change's transaction, with no connection held while argon2id
 * runs: hashes the body's new password into req->password_hash and checks
 * its oldPassword into req->old_password_ok (the users and password
 * routes); false after answering */
bool auth_prepare_passwords(http_req_t *req);

/* api_oidc.c: OIDC sign-on (oidc.h); 404 when it is not configured */
void api_oidc_login(http_req_t *req);
void api_oidc_callback(http_req_t *req);

/* api_users.c */
void api_users_list(http_req_t *req);
void api_users_create(http_req_t *req);
void api_users_get(http_req_t *req);
void api_users_update(http_req_t *req);
void api_users_delete(http_req_t *req);
void api_auth_me_update(http_req_t *req);

/* api_sessions.c */
void api_sessions_list(http_req_t *req);
void api_sessions_delete(http_req_t *req);

/* router.c: whether the caller's policies allow action on resource */
bool router_allows(const http_req_t *req, const char *action, const char *resource);
/* router.c: false after answering 400 naming the field when policy is not
 * a valid policy document of actions the API knows */
bool router_policy_valid(http_req_t *req, const cJSON *policy);

/* api_roles.c */
void api_roles_list(http_req_t *req);
void api_roles_create(http_req_t *req);
void api_roles_get(http_req_t *req);
void api_roles_update(http_req_t *req);
void api_roles_delete(http_req_t *req);
void api_roles_assign(http_req_t *req);
void api_roles_unassign(http_req_t *req);
/* router.c: the route of method with exactly pattern, NULL when none */
const route_t *router_route(const char *method, const char *pattern);

/* api_workspaces.c */
void api_workspaces_list(http_req_t *req);
void api_workspaces_create(http_req_t *req);
void api_workspaces_get(http_req_t *req);
void api_workspaces_update(http_req_t *req);
void api_workspaces_delete(http_req_t *req);
void api_members_list(http_req_t *req);
void api_members_add(http_req_t *req);
void api_members_update(http_req_t *req);
void api_members_delete(http_req_t *req);

/* api_environments.c */
void api_environments_list(http_req_t *req);
void api_environments_create(http_req_t *req);
void api_environments_get(http_req_t *req);
void api_environments_update(http_req_t *req);
void api_environments_delete(http_req_t *req);

/* api_connections.c */
void api_connections_list(http_req_t *req);
void api_connections_create(http_req_t *req);
void api_connections_get(http_req_t *req);
void api_connections_update(http_req_t *req);
void api_connections_delete(http_req_t *req);

/* api_resources.c */

/* the model entries of the resource row r, as a jsonb array: model,
 * fallbackModels, secondaryModels and the then of each routing group that
 * calls a model */
#define SQL_RESOURCE_ENTRIES \
    "(jsonb_build_array(r.model) || r.fallback_models || r.secondary_models" \
    " || coalesce((SELECT jsonb_agg(g->'then')" \
    "              FROM jsonb_array_elements(r.routing->'conditions') g" \
    "              WHERE jsonb_typeof(g->'then') = 'object'" \
    "                AND coalesce(g->>'action', 'CALL_MODEL') <> 'BLOCK'), '[]'::jsonb))"

void api_resources_list(http_req_t *req);
void api_resources_create(http_req_t *req);
void api_resources_get(http_req_t *req);
void api_resources_update(http_req_t *req);
void api_resources_delete(http_req_t *req);
/* the stored resource {ws}/{env}/{id}; NULL after answering 404 (or 500) */
cJSON *api_resources_fetch(http_req_t *req);
/* resource (a document as PUT takes it; the read-only members of GET's
 * are ignored) with the defaults, validated as PUT does; NULL after
 * answering 400 (field relative to the resource) */
cJSON *api_resources_check(http_req_t *req, const cJSON *resource);
/* routing compiled in arena by the data plane's compiler; NULL after
 * answering 400 naming the field "routing...." and the position */
struct vmx_rules_s *api_routing_compile(http_req_t *req, const cJSON *routing,
    arena_t *arena);

/* api_route_test.c: the routing test bench */
void api_resources_route_test(http_req_t *req);

/* api_keys.c */
void api_keys_list(http_req_t *req);
void api_keys_create(http_req_t *req);
void api_keys_get(http_req_t *req);
void api_keys_update(http_req_t *req);
void api_keys_rotate(http_req_t *req);
void api_keys_delete(http_req_t *req);

/* api_pools.c */
void api_pools_get(http_req_t *req);
void api_pools_put(http_req_t *req);
void api_pools_delete(http_req_t *req);

/* api_providers.c */
void api_providers_list(http_req_t *req);

/* api_prices.c */
void api_prices_list(http_req_t *req);
void api_prices_create(http_req_t *req);
void api_prices_get(http_req_t *req);
void api_prices_update(http_req_t *req);
void api_prices_delete(http_req_t *req);

/* api_dataplanes.c */
int api_dataplanes_init(const char *token_file);
void api_dataplanes_shutdown(void);
void api_dataplanes_list(http_req_t *req);
void api_dataplanes_announce(http_req_t *req);

/* api_audit.c */
void api_audit_list(http_req_t *req);
void api_audit_get(http_req_t *req);
void api_audit_list_all(http_req_t *req);
void api_audit_get_any(http_req_t *req);
void api_audit_dead_letters(http_req_t *req);

/* api_activity.c */
void api_activity_list(http_req_t *req);
void api_activity_list_workspace(http_req_t *req);

/* api_keyring.c */
void api_encryption_keys_list(http_req_t *req);
void api_encryption_keys_create(http_req_t *req);
void api_encryption_keys_retire(http_req_t *req);

/* api_usage.c */
void api_usage_query(http_req_t *req);

/* api_batches.c: the completion-batch API (batch.h) */
void api_batches_list(http_req_t *req);
void api_batches_create(http_req_t *req);
void api_batches_get(http_req_t *req);
void api_batches_items(http_req_t *req);
void api_batches_results(http_req_t *req);
void api_batches_cancel(http_req_t *req);
/* whether the bearer token is an API key of {env} of {ws}, enabled and not
 * expired: fills req->api_key_id */
bool api_batches_authenticate(http_req_t *req);

/* api_metrics.c: GET /metrics, open or behind the token of token_file
 * (VMX_METRICS_TOKEN_FILE, NULL: open); init returns 0 or -1 */
int api_metrics_init(const char *token_file);
void api_metrics_shutdown(void);
void api_metrics(http_req_t *req);

/*
 * docs.c: reads of the *_docs views.  Each answers itself on failure and
 * returns false then.
 */

/* the doc (first column, JSON text) of the single row sql selects; NULL
 * after answering 404 / 500; the caller deletes the result */
cJSON *doc_fetch(http_req_t *req, const char *sql, int nparams,
    const char *const *params, const char *what);

/* answers status with the doc of the single row sql selects, or 404 */
void doc_reply(http_req_t *req, int status, const char *sql, int nparams,
    const char *const *params, const char *what);

/* answers a paginated list; sql selects rows with columns doc, created_at
 * and id using parameters $1..$nparams; order and paging are added here */
void doc_reply_list(http_req_t *req, const char *sql, int nparams,
    const char *const *params);
/* the same, newest first; nparams at most 12 */
void doc_reply_list_newest(http_req_t *req, const char *sql, int nparams,
    const char *const *params);

/* answers 204 when sql deleted a row, 404 when none, 409/500 on error */
void doc_reply_delete(http_req_t *req, const char *sql, int nparams,
    const char *const *params, const char *what);

/* accessors of a validated doc: a string member ("" when absent), a bool
 * member as "true"/"false", any member as JSON text (malloc'd, caller frees) */
const char *doc_str(const cJSON *doc, const char *field);
const char *doc_bool(const cJSON *doc, const char *field);
char *doc_json(const cJSON *doc, const char *field);

#endif
