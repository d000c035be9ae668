/*
 * api_oidc: sign-on through an OpenID provider (docs/ARCHITECTURE.md,
 * "Single sign-on (OIDC)").
 *
 * GET /auth/oidc/login keeps a state, a nonce and a PKCE verifier in
 * oidc_states under the state's hash, bound to a random cookie of the
 * browser, and redirects to the provider.  GET /auth/oidc/callback takes
 * the state once (whatever follows), exchanges the code, verifies the ID
 * token (oidc.c), finds or provisions the user bound to the token's issuer
 * and subject, grants the roles mapped from the roles claim and opens the
 * same session a password login opens.  Tokens, codes and secrets are
 * never logged.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "config.h"
#include "log.h"
#include "oidc.h"
#include "utf8.h"
#include "validate.h"

#define OIDC_COOKIE         "vmx_oidc"
#define OIDC_COOKIE_PATH    "/api/v1/auth/oidc"
#define OIDC_STATE_TTL      "10 minutes"
#define OIDC_STATE_SECONDS  "600"
#define OIDC_MAX_CODE       2048
#define OIDC_MAX_GROUPS     256       /* values of the roles claim looked at */
#define OIDC_EMAIL_MAX      254
#define ERROR_CODE_CHARS    "abcdefghijklmnopqrstuvwxyz_"


static void
answer_off(http_req_t *req)
{
    http_error(req, 404, "not_found", NULL, "OIDC sign-on is off: VMX_OIDC_ISSUER is not set");
}


/* an oidc.c failure: 401 for what the provider or its token got wrong, 502 else */
static void
answer_oidc_error(http_req_t *req, int status, const char *step, const char *error)
{
    char from[HTTP_ADDR_LEN];

    http_client_address(req, from);
    log_warn("oidc: %s failed from=%s: %s", step, from, error);
    if (status == OIDC_INVALID) {
        http_error(req, 401, "unauthorized", NULL, "%s", error);
    } else {
        http_error(req, 502, "bad_gateway", NULL, "the OpenID provider is unavailable: %s",
                   error);
    }
}


void
api_oidc_login(http_req_t *req)
{
    const config_t *cfg = config_current();
    char            state[TOKEN_B64_LEN + 1], nonce[TOKEN_B64_LEN + 1];
    char            verifier[TOKEN_B64_LEN + 1], browser[TOKEN_B64_LEN + 1];
    char            state_hash[SHA256_HEX_LEN + 1], browser_hash[SHA256_HEX_LEN + 1];
    char            error[OIDC_ERROR_LEN], cookie[256];
    const char     *params[4] = { state_hash, browser_hash, nonce, verifier };
    char           *url;
    int             status;

    if (!oidc_enabled()) {
        answer_off(req);
        return;
    }
    if (req->db == NULL) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }
    crypto_random_token(state);
    crypto_random_token(nonce);
    /* 43 characters of base64url: a PKCE verifier of the shortest allowed length */
    crypto_random_token(verifier);
    crypto_random_token(browser);
    crypto_sha256_hex(state, state_hash);
    crypto_sha256_hex(browser, browser_hash);

    url = oidc_authorize_url(state, nonce, verifier, &status, error, sizeof(error));
    if (url == NULL) {
        answer_oidc_error(req, status, "login", error);
        return;
    }
    db_run(req->db, "DELETE FROM oidc_states WHERE expires_at < now()", 0, NULL);
    if (db_run(req->db, "INSERT INTO oidc_states (state_hash, browser_hash, nonce,"
                        " code_verifier, expires_at)"
                        " VALUES ($1, $2, $3, $4, now() + interval '" OIDC_STATE_TTL "')",
               4, params) != 0)
    {
        free(url);
        http_db_error(req, "login");
        return;
    }
    /* Lax: the provider's redirect back is a top-level GET, which carries it */
    snprintf(cookie, sizeof(cookie), OIDC_COOKIE "=%s; Path=" OIDC_COOKIE_PATH
             "; Max-Age=" OIDC_STATE_SECONDS "; HttpOnly; SameSite=Lax%s", browser,
             strncmp(cfg->oidc_redirect_uri, "https://", 8) == 0 ? "; Secure" : "");
    http_set_cookie(req, cookie);
    http_redirect(req, 302, url);
    free(url);
}


/*
 * takes the login of state out of oidc_states (single use, whatever comes
 * next) and checks it is this browser's and recent; its nonce and verifier
 * into the buffers; false after answering 400
 */
static bool
take_state(http_req_t *req, const char *state, char *nonce, char *verifier)
{
    const char *cookie = http_cookie(req, OIDC_COOKIE);
    char        state_hash[SHA256_HEX_LEN + 1], browser_hash[SHA256_HEX_LEN + 1];
    const char *params[1] = { state_hash };
    const char *problem = NULL;
    char        from[HTTP_ADDR_LEN];
    PGresult   *res;

    if (state == NULL || strlen(state) != TOKEN_B64_LEN) {
        http_invalid(req, "state", "the state is missing or unknown");
        return false;
    }
    crypto_sha256_hex(state, state_hash);
    res = db_exec(req->db, "DELETE FROM oidc_states WHERE state_hash = $1"
                           " RETURNING browser_hash, nonce, code_verifier, expires_at > now()",
                  1, params);
    if (res == NULL) {
        http_db_error(req, "login");
        return false;
    }
    if (PQntuples(res) != 1) {
        problem = "the state is unknown or was already used";
    } else if (PQgetvalue(res, 0, 3)[0] != 't') {
        problem = "the login took more than " OIDC_STATE_TTL ": start it again";
    } else {
        if (cookie != NULL && strlen(cookie) == TOKEN_B64_LEN) {
            crypto_sha256_hex(cookie, browser_hash);
        }
        if (cookie == NULL || strlen(cookie) != TOKEN_B64_LEN
            || sodium_memcmp(browser_hash, PQgetvalue(res, 0, 0), SHA256_HEX_LEN) != 0)
        {
            problem = "the state belongs to another browser";
        }
    }
    if (problem == NULL) {
        snprintf(nonce, TOKEN_B64_LEN + 1, "%s", PQgetvalue(res, 0, 1));
        snprintf(verifier, TOKEN_B64_LEN + 1, "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    if (problem != NULL) {
        http_client_address(req, from);
        log_warn("oidc: callback refused from=%s: %s", from, problem);
        http_invalid(req, "state", "%s", problem);
        return false;
    }
    return true;
}


/* claims.name when a string of 1..max bytes of printable UTF-8, else NULL */
static const char *
claim_text(const cJSON *claims, const char *name, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    size_t       len;

    if (!cJSON_IsString(v)) {
        return NULL;
    }
    len = strlen(v->valuestring);
    if (len == 0 || len > max
        || !utf8_valid_text((const unsigned char *) v->valuestring, len))
    {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) v->valuestring[i];

        if (c < 0x20 || c == 0x7f) {
            return NULL;
        }
    }
    return v->valuestring;
}


/* grants role (by name) to user_id, already held or not; logs a role that does not exist */
static int
grant_role(http_req_t *req, const char *user_id, const char *role)
{
    const char *params[2] = { user_id, role };
    PGresult   *res;
    bool        exists;

    res = db_exec(req->db, "WITH r AS (SELECT id FROM roles WHERE name = $2),"
                           " g AS (INSERT INTO user_roles (user_id, role_id)"
                           "  SELECT $1, id FROM r ON CONFLICT DO NOTHING RETURNING 1)"
                           " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM g)",
                  2, params);
    if (res == NULL) {
        return -1;
    }
    exists = PQgetvalue(res, 0, 0)[0] != '0';
    if (!exists) {
        log_warn("oidc: user id=%s: no role %.64s to grant (VMX_OIDC_DEFAULT_ROLE or"
                 " VMX_OIDC_ROLE_MAP)", user_id, role);
    } else if (PQgetvalue(res, 0, 1)[0] != '0') {
        log_info("oidc: user id=%s granted role %.64s", user_id, role);
    }
    PQclear(res);
    return 0;
}


/* whether the roles claim (a string or an array of strings) holds value */
static bool
claim_has(const cJSON *claim, const char *value)
{
    const cJSON *v;
    int          seen = 0;

    if (cJSON_IsString(claim)) {
        return strcmp(claim->valuestring, value) == 0;
    }
    cJSON_ArrayForEach(v, claim) {
        if (++seen > OIDC_MAX_GROUPS) {
            return false;
        }
        if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0) {
            return true;
        }
    }
    return false;
}


/* the roles VMX_OIDC_ROLE_MAP gives for the token's roles claim */
static int
grant_mapped_roles(http_req_t *req, const char *user_id, const cJSON *claims)
{
    const config_t *cfg = config_current();
    const cJSON    *claim = cJSON_GetObjectItemCaseSensitive(claims, cfg->oidc_roles_claim);

    if (cJSON_GetArraySize(claim) > OIDC_MAX_GROUPS) {
        log_warn("oidc: user id=%s: claim %s has more than %d values; the first %d count",
                 user_id, cfg->oidc_roles_claim, OIDC_MAX_GROUPS, OIDC_MAX_GROUPS);
    }
    for (size_t i = 0; i < cfg->noidc_role_map; i++) {
        if (claim_has(claim, cfg->oidc_role_map[i].claim)
            && grant_role(req, user_id, cfg->oidc_role_map[i].role) != 0)
        {
            return -1;
        }
    }
    return 0;
}


/*
 * creates the user of (issuer, sub) with a username from the claims and
 * the default role; false after answering (409 when the username is a
 * local user's)
 */
static bool
provision(http_req_t *req, const cJSON *claims, const char *issuer, const char *sub,
    char *user_id)
{
    const config_t *cfg = config_current();
    const char     *username = claim_text(claims, "preferred_username", NAME_MAX_LEN);
    const char     *name = claim_text(claims, "name", NAME_MAX_LEN);
    const char     *email = claim_text(claims, "email", OIDC_EMAIL_MAX);
    const char     *params[6];
    PGresult       *res;
    bool            created;

    if (username == NULL) {
        username = email != NULL && strlen(email) <= NAME_MAX_LEN ? email : NULL;
    }
    if (username == NULL) {
        username = claim_text(claims, "sub", NAME_MAX_LEN);
    }
    if (username == NULL) {
        http_error(req, 401, "unauthorized", NULL, "the ID token names no usable username");
        return false;
    }
    crypto_uuid_v4(user_id);
    params[0] = user_id;
    params[1] = username;
    params[2] = name ? name : "";
    params[3] = email ? email : "";
    params[4] = issuer;
    params[5] = sub;
    /* an empty password hash never verifies: this user logs in through OIDC only */
    res = db_exec(req->db, "INSERT INTO users (id, username, password_hash, name, email,"
                           " oidc_issuer, oidc_subject) VALUES ($1, $2, '', $3, $4, $5, $6)"
                           " ON CONFLICT (username) DO NOTHING", 6, params);
    if (res == NULL) {
        http_db_error(req, "user");
        return false;
    }
    created = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!created) {
        log_warn("oidc: login refused issuer=%s sub=%.64s: username %s is a user not bound"
                 " to this identity", issuer, sub, username);
        http_error(req, 409, "conflict", "username", "a user named %s exists and is not bound"
                   " to this OpenID identity: an administrator must rename or remove it",
                   username);
        return false;
    }
    snprintf(req->username, sizeof(req->username), "%s", username);
    log_info("oidc: provisioned user=%s id=%s issuer=%s sub=%.64s", username, user_id, issuer,
             sub);
    if (cfg->oidc_default_role != NULL
        && grant_role(req, user_id, cfg->oidc_default_role) != 0)
    {
        http_db_error(req, "user");
        return false;
    }
    return true;
}


/*
 * the enabled user bound to the token's issuer and subject, provisioned on
 * the first login, with the mapped roles granted, into user_id; false after
 * answering
 */
static bool
sign_on(http_req_t *req, const cJSON *claims, char *user_id)
{
    const char *issuer = cJSON_GetObjectItemCaseSensitive(claims, "iss")->valuestring;
    const char *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub")->valuestring;
    const char *params[2] = { issuer, sub };
    PGresult   *res;
    bool        found, enabled = false;

    if (db_begin(req->db) != 0) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return false;
    }
    res = db_exec(req->db, "SELECT id, enabled, username FROM users"
                           " WHERE oidc_issuer = $1 AND oidc_subject = $2 FOR UPDATE",
                  2, params);
    if (res == NULL) {
        db_rollback(req->db);
        http_db_error(req, "user");
        return false;
    }
    found = PQntuples(res) == 1;
    if (found) {
        snprintf(user_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
        snprintf(req->username, sizeof(req->username), "%s", PQgetvalue(res, 0, 2));
        enabled = PQgetvalue(res, 0, 1)[0] == 't';
    }
    PQclear(res);
    if (found && !enabled) {
        db_rollback(req->db);
        log_info("oidc: login refused user=%s: disabled", req->username);
        http_error(req, 401, "unauthorized", NULL, "the user is disabled");
        return false;
    }
    if (!found && !provision(req, claims, issuer, sub, user_id)) {
        db_rollback(req->db);
        return false;
    }
    if (grant_mapped_roles(req, user_id, claims) != 0) {
        db_rollback(req->db);
        http_db_error(req, "user");
        return false;
    }
    if (db_commit(req->db) != 0) {
        http_error(req, 503, "unavailable", NULL, "the login could not be committed");
        return false;
    }
    return true;
}


/* the browser goes to the UI with the session in the fragment, which no server sees */
static void
answer_session(http_req_t *req, cJSON *session)
{
    const char *ui = config_current()->oidc_ui_url;
    const char *token = cJSON_GetObjectItemCaseSensitive(session, "token")->valuestring;
    const char *expires = cJSON_GetObjectItemCaseSensitive(session, "expiresAt")->valuestring;
    char       *location;

    if (ui == NULL) {
        http_reply(req, 200, session);
        return;
    }
    if (asprintf(&location, "%s#token=%s&expiresAt=%s", ui, token, expires) < 0) {
        cJSON_Delete(session);
        http_error(req, 500, "internal_error", NULL, "cannot answer the session");
        return;
    }
    http_redirect(req, 303, location);
    sodium_memzero(location, strlen(location));
    free(location);
    cJSON_Delete(session);
}


void
api_oidc_callback(http_req_t *req)
{
    const char *code = http_query(req, "code");
    const char *refused = http_query(req, "error");
    const char *iss = http_query(req, "iss");
    char        nonce[TOKEN_B64_LEN + 1], verifier[TOKEN_B64_LEN + 1];
    char        error[OIDC_ERROR_LEN], user_id[UUID_LEN + 1];
    char       *id_token;
    cJSON      *claims, *session;
    int         status;

    if (!oidc_enabled()) {
        answer_off(req);
        return;
    }
    if (req->db == NULL) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }
    /* the cookie has done its work, whatever the outcome */
    http_set_cookie(req, OIDC_COOKIE "=; Path=" OIDC_COOKIE_PATH "; Max-Age=0; HttpOnly;"
                         " SameSite=Lax");
    if (!take_state(req, http_query(req, "state"), nonce, verifier)) {
        return;
    }
    if (refused != NULL) {
        /* an OAuth error code is a short word; anything else is not repeated */
        if (strlen(refused) > 64 || strspn(refused, ERROR_CODE_CHARS) != strlen(refused)) {
            refused = "(not an error code)";
        }
        log_info("oidc: the provider refused the login: %s", refused);
        http_error(req, 401, "unauthorized", NULL, "the OpenID provider refused the login: %s",
                   refused);
        return;
    }
    /* RFC 9207: a provider that names itself must be ours (no mix-up of providers) */
    if (iss != NULL && strcmp(iss, config_current()->oidc_issuer) != 0) {
        http_invalid(req, "iss", "the answer is from another issuer");
        return;
    }
    if (code == NULL || code[0] == '\0' || strlen(code) > OIDC_MAX_CODE) {
        http_invalid(req, "code", "the code is missing or longer than %d bytes", OIDC_MAX_CODE);
        return;
    }
    id_token = oidc_exchange_code(code, verifier, &status, error, sizeof(error));
    if (id_token == NULL) {
        answer_oidc_error(req, status, "code exchange", error);
        return;
    }
    claims = oidc_verify_id_token(id_token, nonce, &status, error, sizeof(error));
    sodium_memzero(id_token, strlen(id_token));
    free(id_token);
    if (claims == NULL) {
        answer_oidc_error(req, status, "ID token", error);
        return;
    }
    if (!sign_on(req, claims, user_id)) {
        cJSON_Delete(claims);
        return;
    }
    cJSON_Delete(claims);
    session = auth_open_session(req, user_id);
    if (session == NULL) {
        http_error(req, 500, "internal_error", NULL, "cannot open a session");
        return;
    }
    log_info("oidc: user=%s id=%s logged in", req->username, user_id);
    answer_session(req, session);
}
