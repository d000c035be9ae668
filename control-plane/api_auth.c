/*
 * api_auth: login tokens and the first administrator.
 *
 * A token is 32 random bytes in base64url, given to the client once and
 * stored only as its SHA-256, valid for 12 hours.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "log.h"

#define SESSION_TTL  "12 hours"


bool
auth_authenticate(http_req_t *req)
{
    const char *auth = http_header(req, "Authorization");
    const char *params[1];
    PGresult   *res;
    bool        ok;

    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
        return false;
    }
    crypto_sha256_hex(auth + 7, req->token_hash);
    params[0] = req->token_hash;

    res = db_exec(req->db,
                  "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id"
                  " WHERE s.token_hash = $1 AND s.expires_at > now()", 1, params);
    if (res == NULL) {
        return false;
    }
    ok = PQntuples(res) == 1;
    if (ok) {
        snprintf(req->user_id, sizeof(req->user_id), "%s", PQgetvalue(res, 0, 0));
        snprintf(req->username, sizeof(req->username), "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return ok;
}


/* the user id when username/password match, "" otherwise */
static void
check_password(http_req_t *req, const char *username, const char *password,
    char *user_id)
{
    const char *params[1] = { username };
    PGresult   *res;

    user_id[0] = '\0';
    res = db_exec(req->db, "SELECT id, password_hash FROM users WHERE username = $1",
                  1, params);
    if (res == NULL) {
        return;
    }
    if (PQntuples(res) == 1 && crypto_password_verify(PQgetvalue(res, 0, 1), password)) {
        snprintf(user_id, UUID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
    }
    PQclear(res);
}


/* {token, expiresAt, user} for a new session of user_id; NULL on failure */
static cJSON *
open_session(http_req_t *req, const char *user_id)
{
    char        token[TOKEN_B64_LEN + 1];
    char        hash[SHA256_HEX_LEN + 1];
    const char *params[2] = { hash, user_id };
    PGresult   *res;
    cJSON      *out, *user;

    crypto_random_token(token);
    crypto_sha256_hex(token, hash);

    db_run(req->db, "DELETE FROM sessions WHERE expires_at < now()", 0, NULL);
    res = db_exec(req->db,
                  "INSERT INTO sessions (token_hash, user_id, expires_at)"
                  " VALUES ($1, $2, now() + interval '" SESSION_TTL "')"
                  " RETURNING vmx_rfc3339(expires_at),"
                  "  (SELECT doc::text FROM user_docs WHERE id = $2)", 2, params);
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
    if (!cJSON_IsString(password)) {
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
    session = open_session(req, user_id);
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


int
auth_bootstrap_admin(const char *password)
{
    db_conn_t  *c = db_acquire();
    char        generated[TOKEN_B64_LEN + 1];
    char        id[UUID_LEN + 1];
    char       *hash;
    const char *params[2];
    PGresult   *res;
    bool        created;

    if (c == NULL) {
        return -1;
    }
    if (password == NULL || password[0] == '\0') {
        crypto_random_token(generated);
        password = generated;
    } else {
        generated[0] = '\0';
    }
    hash = crypto_password_hash(password);
    if (hash == NULL) {
        db_release(c);
        return -1;
    }
    crypto_uuid_v4(id);
    params[0] = id;
    params[1] = hash;
    res = db_exec(c, "INSERT INTO users (id, username, password_hash)"
                     " VALUES ($1, 'admin', $2) ON CONFLICT (username) DO NOTHING",
                  2, params);
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
