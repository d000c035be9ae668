/*
 * api_auth: login tokens, the caller's password and the first
 * administrator.
 *
 * A token is 32 random bytes in base64url, given to the client once and
 * stored only as its SHA-256, valid for 12 hours.  A disabled user has no
 * session and cannot open one.  A user in state CHANGE_PASSWORD may only
 * change the password, read /auth/me and log out (router.c).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "log.h"
#include "validate.h"

#define SESSION_TTL        "12 hours"
/* lastSeenAt is written at most this often per session */
#define SESSION_SEEN_STEP  "30 seconds"


bool
auth_authenticate(http_req_t *req)
{
    const char *auth = http_header(req, "Authorization");
    const char *params[1];
    PGresult   *res;
    bool        ok, stale = false;

    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
        return false;
    }
    crypto_sha256_hex(auth + 7, req->token_hash);
    params[0] = req->token_hash;

    res = db_exec(req->db,
                  "SELECT u.id, u.username, u.state,"
                  "  s.last_seen_at < now() - interval '" SESSION_SEEN_STEP "',"
                  "  (SELECT coalesce(jsonb_agg(r.policy), '[]') FROM user_roles ur"
                  "    JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id)::text"
                  " FROM sessions s JOIN users u ON u.id = s.user_id"
                  " WHERE s.token_hash = $1 AND s.expires_at > now() AND u.enabled",
                  1, params);
    if (res == NULL) {
        return false;
    }
    ok = PQntuples(res) == 1;
    if (ok) {
        snprintf(req->user_id, sizeof(req->user_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(req->username, sizeof(req->username), "%s", PQgetvalue(res, 0, 1));
        req->must_change_password = strcmp(PQgetvalue(res, 0, 2), "CHANGE_PASSWORD") == 0;
        stale = PQgetvalue(res, 0, 3)[0] == 't';
        /* the roles' policies were validated when written */
        req->policies = cJSON_Parse(PQgetvalue(res, 0, 4));
        ok = req->policies != NULL;
    }
    PQclear(res);
    if (stale && db_run(req->db, "UPDATE sessions SET last_seen_at = now()"
                                 " WHERE token_hash = $1", 1, params) != 0)
    {
        /* the session stays valid; only its lastSeenAt lags */
        log_warn("auth: user=%s cannot record the session's last use", req->username);
    }
    return ok;
}


/*
 * the user id when username/password match an enabled user, "" otherwise.
 * A hash made with older argon2id parameters is made again now that the
 * password is at hand.
 */
static void
check_password(http_req_t *req, const char *username, const char *password,
    char *user_id)
{
    const char *params[2] = { username };
    PGresult   *res;
    char       *hash = NULL;
    bool        enabled;

    user_id[0] = '\0';
    res = db_exec(req->db, "SELECT id, password_hash, enabled FROM users WHERE username = $1",
                  1, params);
    if (res == NULL) {
        return;
    }
    if (PQntuples(res) != 1 || !crypto_password_verify(PQgetvalue(res, 0, 1), password)) {
        PQclear(res);
        return;
    }
    enabled = PQgetvalue(res, 0, 2)[0] == 't';
    if (enabled) {
        snprintf(user_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
        if (crypto_password_needs_rehash(PQgetvalue(res, 0, 1))) {
            hash = crypto_password_hash(password);
        }
    }
    PQclear(res);
    if (!enabled) {
        log_info("auth: login refused user=%.64s: disabled", username);
        return;
    }
    if (hash != NULL) {
        params[0] = user_id;
        params[1] = hash;
        if (db_run(req->db, "UPDATE users SET password_hash = $2 WHERE id = $1",
                   2, params) == 0)
        {
            log_info("auth: user=%.64s password hash renewed", username);
        } else {
            log_warn("auth: user=%.64s cannot store the renewed password hash", username);
        }
        free(hash);
    }
}


cJSON *
auth_open_session(http_req_t *req, const char *user_id)
{
    char        token[TOKEN_B64_LEN + 1];
    char        hash[SHA256_HEX_LEN + 1];
    char        from[HTTP_ADDR_LEN];
    const char *params[3] = { hash, user_id, from };
    PGresult   *res;
    cJSON      *out, *user;

    crypto_random_token(token);
    crypto_sha256_hex(token, hash);
    http_client_address(req, from);

    db_run(req->db, "DELETE FROM sessions WHERE expires_at < now()", 0, NULL);
    res = db_exec(req->db,
                  "INSERT INTO sessions (token_hash, user_id, expires_at, from_address)"
                  " VALUES ($1, $2, now() + interval '" SESSION_TTL "', $3)"
                  " RETURNING vmx_rfc3339(expires_at),"
                  "  (SELECT doc::text FROM user_docs WHERE id = $2)", 3, params);
    if (res == NULL) {
        return NULL;
    }
    user = cJSON_Parse(PQgetvalue(res, 0, 1));
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "token", token);
    cJSON_AddStringToObject(out, "expiresAt", PQgetvalue(res, 0, 0));
    cJSON_AddItemToObject(out, "user", user ? user : cJSON_CreateNull());
    PQclear(res);
    return out;
}


void
api_auth_login(http_req_t *req)
{
    const cJSON *username = cJSON_GetObjectItemCaseSensitive(req->json, "username");
    const cJSON *password = cJSON_GetObjectItemCaseSensitive(req->json, "password");
    char         user_id[UUID_LEN + 1];
    cJSON       *session;

    if (!cJSON_IsString(username) || username->valuestring[0] == '\0') {
        http_invalid(req, "username", "username is required");
        return;
    }
    if (strlen(username->valuestring) > NAME_MAX_LEN) {
        http_invalid(req, "username", "username has at most %d characters", NAME_MAX_LEN);
        return;
    }
    if (!cJSON_IsString(password) || strlen(password->valuestring) > PASSWORD_MAX_LEN) {
        http_invalid(req, "password", "password is required");
        return;
    }
    if (req->db == NULL) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }

    check_password(req, username->valuestring, password->valuestring, user_id);
    if (user_id[0] == '\0') {
        log_info("auth: login failed user=%.64s", username->valuestring);
        http_error(req, 401, "unauthorized", NULL, "invalid username or password");
        return;
    }
    session = auth_open_session(req, user_id);
    if (session == NULL) {
        http_error(req, 500, "internal_error", NULL, "cannot open a session");
        return;
    }
    snprintf(req->username, sizeof(req->username), "%s", username->valuestring);
    http_reply(req, 200, session);
}


void
api_auth_logout(http_req_t *req)
{
    const char *params[1] = { req->token_hash };

    if (db_run(req->db, "DELETE FROM sessions WHERE token_hash = $1", 1, params) != 0) {
        http_db_error(req, "session");
        return;
    }
    http_reply(req, 204, NULL);
}


void
api_auth_me(http_req_t *req)
{
    const char *params[1] = { req->user_id };

    doc_reply(req, 200, "SELECT doc::text FROM user_docs WHERE id = $1", 1, params, "user");
}


/*
 * POST /auth/password {oldPassword, newPassword}: the caller's own; ends
 * the caller's other sessions and leaves CHANGE_PASSWORD.  Runs in the
 * router's transaction, so the argon2id work holds its connection.
 */
void
api_auth_password(http_req_t *req)
{
    static const char *const fields[] = { "oldPassword", "newPassword", NULL };
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(req->json, "oldPassword");
    const cJSON *new = cJSON_GetObjectItemCaseSensitive(req->json, "newPassword");
    const char  *params[2] = { req->user_id };
    const char  *others[2] = { req->user_id, req->token_hash };
    cJSON       *scratch = cJSON_CreateObject();
    bool         known = val_merge(req, scratch, NULL, fields, NULL);
    PGresult    *res;
    bool         right;
    char        *hash;

    cJSON_Delete(scratch);
    if (!known) {
        return;
    }
    if (!cJSON_IsString(old) || strlen(old->valuestring) > PASSWORD_MAX_LEN) {
        http_invalid(req, "oldPassword", "oldPassword is required");
        return;
    }
    res = db_exec(req->db, "SELECT password_hash FROM users WHERE id = $1", 1, params);
    if (res == NULL || PQntuples(res) != 1) {
        PQclear(res);
        http_db_error(req, "user");
        return;
    }
    right = crypto_password_verify(PQgetvalue(res, 0, 0), old->valuestring);
    PQclear(res);
    if (!right) {
        log_info("auth: password change refused user=%s: wrong old password", req->username);
        http_invalid(req, "oldPassword", "oldPassword is not the current password");
        return;
    }
    if (!val_password(req, "newPassword", new, req->username, old->valuestring)) {
        return;
    }
    hash = crypto_password_hash(new->valuestring);
    if (hash == NULL) {
        http_error(req, 500, "internal_error", NULL, "cannot hash the password");
        return;
    }
    params[1] = hash;
    if (db_run(req->db, "UPDATE users SET password_hash = $2, state = 'ACTIVE',"
                        " updated_at = now() WHERE id = $1", 2, params) != 0
        || db_run(req->db, "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
                  2, others) != 0)
    {
        http_db_error(req, "user");
    } else {
        log_info("auth: user=%s changed the password", req->username);
        doc_reply(req, 200, "SELECT doc::text FROM user_docs WHERE id = $1", 1, params,
                  "user");
    }
    free(hash);
}


int
auth_bootstrap_admin(const char *password)
{
    db_conn_t  *c;
    char        generated[TOKEN_B64_LEN + 1];
    char        id[UUID_LEN + 1];
    char       *hash;
    const char *params[3];
    PGresult   *res;
    bool        created;

    if (password == NULL || password[0] == '\0') {
        crypto_random_token(generated);
        password = generated;
    } else {
        generated[0] = '\0';
    }
    /* hashed before taking a connection: argon2id takes its time */
    hash = crypto_password_hash(password);
    if (hash == NULL) {
        return -1;
    }
    c = db_acquire();
    if (c == NULL) {
        free(hash);
        return -1;
    }
    crypto_uuid_v4(id);
    params[0] = id;
    params[1] = hash;
    /* a password nobody chose is changed at the first login */
    params[2] = generated[0] != '\0' ? "CHANGE_PASSWORD" : "ACTIVE";
    /* the first administrator holds the built-in admin role (schema 0009) */
    res = db_exec(c, "WITH u AS (INSERT INTO users (id, username, password_hash, state)"
                     "  VALUES ($1, 'admin', $2, $3) ON CONFLICT (username) DO NOTHING"
                     "  RETURNING id)"
                     " INSERT INTO user_roles (user_id, role_id)"
                     " SELECT u.id, r.id FROM u, roles r WHERE r.name = 'admin'",
                  3, params);
    free(hash);
    db_release(c);
    if (res == NULL) {
        return -1;
    }
    created = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);

    if (created && generated[0] != '\0') {
        /* the one time this password exists outside its hash */
        fprintf(stderr, "admin password: %s\n", generated);
    }
    if (created) {
        log_info("auth: created user admin");
    }
    return 0;
}
