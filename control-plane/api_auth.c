/*
 * api_auth: login tokens, the caller's password and the first
 * administrator.
 *
 * A token is 32 random bytes in base64url, given to the client once and
 * stored only as its SHA-256, valid for 12 hours.  A disabled user has no
 * session and cannot open one.  A user in state CHANGE_PASSWORD may only
 * change the password, read /auth/me and log out (router.c).
 *
 * Failed logins are throttled per user name and per client address
 * (throttle.c, in this process's memory), and argon2id never runs while
 * the request holds a database connection (docs/ARCHITECTURE.md, "Users
 * and sessions").
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "activity.h"
#include "api.h"
#include "config.h"
#include "log.h"
#include "throttle.h"
#include "validate.h"

#define SESSION_TTL        "12 hours"
/* lastSeenAt is written at most this often per session */
#define SESSION_SEEN_STEP  "30 seconds"
/* slots of each throttle table: names and addresses beyond share slots */
#define THROTTLE_SLOTS     65536

static struct {
    throttle_t  *users;         /* failed logins per user name */
    throttle_t  *addresses;     /* and per client address */
    char        *dummy_hash;    /* verified for unknown names */
} auth;


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


/* the request's connection goes back to the pool while argon2id runs */
static void
let_go_of_db(http_req_t *req)
{
    db_release(req->db);
    req->db = NULL;
}


/* false after answering 503 */
static bool
take_db_again(http_req_t *req)
{
    req->db = db_acquire();
    if (req->db == NULL) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return false;
    }
    return true;
}


static void
answer_busy(http_req_t *req)
{
    req->retry_after = 1;
    http_error(req, 503, "unavailable", NULL, "too many password checks at once; try again");
}


static time_t
now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}


/* true after answering 429 when username or address must wait */
static bool
login_throttled(http_req_t *req, const char *username, const char *from)
{
    time_t  now = now_seconds();
    int     wait = throttle_wait(auth.users, username, now);
    int     by_address = throttle_wait(auth.addresses, from, now);

    if (by_address > wait) {
        wait = by_address;
    }
    if (wait == 0) {
        return false;
    }
    log_info("auth: login throttled user=%.64s from=%s wait=%ds", username, from, wait);
    req->retry_after = wait;
    http_error(req, 429, "too_many_requests", NULL,
               "too many failed logins; try again in %d seconds", wait);
    return true;
}


/* the stored account of username, "" id and the dummy hash when unknown */
typedef struct {
    char   id[UUID_LEN + 1];
    char  *hash;                /* owned */
    bool   enabled;
} account_t;


static bool
read_account(http_req_t *req, const char *username, account_t *a)
{
    const char *params[1] = { username };
    PGresult   *res = db_exec(req->db, "SELECT id, password_hash, enabled FROM users"
                                       " WHERE username = $1", 1, params);
    bool        known;

    if (res == NULL) {
        http_db_error(req, "user");
        return false;
    }
    known = PQntuples(res) == 1;
    snprintf(a->id, sizeof(a->id), "%s", known ? PQgetvalue(res, 0, 0) : "");
    /* an unknown name costs the same argon2id work as a known one */
    a->hash = strdup(known ? PQgetvalue(res, 0, 1) : auth.dummy_hash);
    a->enabled = known && PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    if (a->hash == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return false;
    }
    return true;
}


/* a hash made with older argon2id parameters, made again now that the
 * password is at hand */
static void
store_rehash(http_req_t *req, const char *user_id, const char *username, const char *hash)
{
    const char *params[2] = { user_id, hash };

    if (db_run(req->db, "UPDATE users SET password_hash = $2 WHERE id = $1", 2, params) == 0) {
        log_info("auth: user=%.64s password hash renewed", username);
    } else {
        log_warn("auth: user=%.64s cannot store the renewed password hash", username);
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


/*
 * POST /auth/login: the throttle first (a locked name or address is refused
 * even with the right password), then the stored hash is read and the
 * connection given back while argon2id verifies it.
 */
void
api_auth_login(http_req_t *req)
{
    const cJSON *username = cJSON_GetObjectItemCaseSensitive(req->json, "username");
    const cJSON *password = cJSON_GetObjectItemCaseSensitive(req->json, "password");
    char         from[HTTP_ADDR_LEN];
    account_t    account;
    char        *rehash = NULL;
    int          match;
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
    http_client_address(req, from);
    if (login_throttled(req, username->valuestring, from)
        || !read_account(req, username->valuestring, &account))
    {
        return;
    }

    let_go_of_db(req);
    match = crypto_password_verify(account.hash, password->valuestring);
    if (match == 1 && account.enabled && crypto_password_needs_rehash(account.hash)) {
        rehash = crypto_password_hash(password->valuestring);
    }
    free(account.hash);
    if (!take_db_again(req)) {
        free(rehash);
        return;
    }
    if (match < 0) {
        answer_busy(req);
        return;
    }

    if (match == 0 || !account.enabled) {
        time_t now = now_seconds();

        throttle_fail(auth.users, username->valuestring, now);
        throttle_fail(auth.addresses, from, now);
        log_info("auth: login failed user=%.64s from=%s%s", username->valuestring, from,
                 match == 1 ? ": disabled" : "");
        http_error(req, 401, "unauthorized", NULL, "invalid username or password");
        activity_login(req, username->valuestring, account.id, req->status);
        return;
    }
    throttle_reset(auth.users, username->valuestring);
    if (rehash != NULL) {
        store_rehash(req, account.id, username->valuestring, rehash);
        free(rehash);
    }
    session = auth_open_session(req, account.id);
    if (session == NULL) {
        http_error(req, 500, "internal_error", NULL, "cannot open a session");
        return;
    }
    snprintf(req->username, sizeof(req->username), "%s", username->valuestring);
    snprintf(req->user_id, sizeof(req->user_id), "%s", account.id);
    http_reply(req, 200, session);
    activity_login(req, req->username, account.id, req->status);
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
 * the caller's other sessions and leaves CHANGE_PASSWORD.  The argon2id
 * work was done before the transaction (auth_prepare_passwords()).
 */
void
api_auth_password(http_req_t *req)
{
    static const char *const fields[] = { "oldPassword", "newPassword", NULL };
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(req->json, "oldPassword");
    const cJSON *new = cJSON_GetObjectItemCaseSensitive(req->json, "newPassword");
    const char  *params[2] = { req->user_id, req->password_hash };
    const char  *others[2] = { req->user_id, req->token_hash };
    cJSON       *scratch = cJSON_CreateObject();
    bool         known = val_merge(req, scratch, NULL, fields, NULL);

    cJSON_Delete(scratch);
    if (!known) {
        return;
    }
    if (!cJSON_IsString(old) || strlen(old->valuestring) > PASSWORD_MAX_LEN) {
        http_invalid(req, "oldPassword", "oldPassword is required");
        return;
    }
    if (!req->old_password_ok) {
        log_info("auth: password change refused user=%s: wrong old password", req->username);
        http_invalid(req, "oldPassword", "oldPassword is not the current password");
        return;
    }
    if (!val_password(req, "newPassword", new, req->username, old->valuestring)) {
        return;
    }
    if (req->password_hash == NULL) {
        http_error(req, 500, "internal_error", NULL, "cannot hash the password");
        return;
    }
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
}


/* doc.field when it is a password to hash: a string of at most
 * PASSWORD_MAX_LEN bytes (the handler refuses anything else) */
static const char *
password_in(const cJSON *doc, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    return cJSON_IsString(v) && strlen(v->valuestring) <= PASSWORD_MAX_LEN
           ? v->valuestring : NULL;
}


bool
auth_prepare_passwords(http_req_t *req)
{
    const char *new_password = NULL;
    const char *old_password = NULL;
    char       *stored = NULL;
    int         match = 1;

    if (req->route->handler == api_users_create || req->route->handler == api_users_update) {
        new_password = password_in(req->json, "password");
    } else if (req->route->handler == api_auth_password) {
        old_password = password_in(req->json, "oldPassword");
        new_password = password_in(req->json, "newPassword");
    }
    if (old_password != NULL) {
        const char *params[1] = { req->user_id };
        PGresult   *res = db_exec(req->db, "SELECT password_hash FROM users WHERE id = $1",
                                  1, params);

        if (res == NULL || PQntuples(res) != 1) {
            PQclear(res);
            http_db_error(req, "user");
            return false;
        }
        stored = strdup(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (stored == NULL) {
            http_error(req, 500, "internal_error", NULL, "out of memory");
            return false;
        }
    }
    if (old_password == NULL && new_password == NULL) {
        return true;
    }

    let_go_of_db(req);
    if (stored != NULL) {
        match = crypto_password_verify(stored, old_password);
        req->old_password_ok = match == 1;
        free(stored);
    }
    if (new_password != NULL && match == 1) {
        req->password_hash = crypto_password_hash(new_password);
        match = req->password_hash ? 1 : -1;
    }
    if (!take_db_again(req)) {
        return false;
    }
    if (match < 0) {
        answer_busy(req);
        return false;
    }
    return true;
}


int
auth_init(const config_t *cfg)
{
    char     password[TOKEN_B64_LEN + 1];
    uint64_t seed;

    randombytes_buf(&seed, sizeof(seed));
    auth.users = throttle_create(THROTTLE_SLOTS, cfg->login_user_failures,
                                 cfg->login_throttle_seconds, cfg->login_throttle_max, seed);
    auth.addresses = throttle_create(THROTTLE_SLOTS, cfg->login_address_failures,
                                     cfg->login_throttle_seconds, cfg->login_throttle_max,
                                     seed ^ 0x9e3779b97f4a7c15ULL);
    crypto_random_token(password);
    auth.dummy_hash = crypto_password_hash(password);
    sodium_memzero(password, sizeof(password));
    if (auth.users == NULL || auth.addresses == NULL || auth.dummy_hash == NULL) {
        log_error("auth: cannot prepare the login throttle");
        return -1;
    }
    log_info("auth: login throttle after %d failures per user name, %d per address,"
             " %d s doubling up to %d s", cfg->login_user_failures,
             cfg->login_address_failures, cfg->login_throttle_seconds,
             cfg->login_throttle_max);
    return 0;
}


void
auth_shutdown(void)
{
    throttle_free(auth.users);
    throttle_free(auth.addresses);
    free(auth.dummy_hash);
    memset(&auth, 0, sizeof(auth));
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
