/*
 * api_users: /api/v1/users and /{id} (SPEC §8).
 *
 * A user is {id, username, name, email, enabled, state, createdAt,
 * updatedAt}; password and temporaryPassword are written, never read (the
 * answer never holds a password or its hash).  temporaryPassword puts the
 * user in CHANGE_PASSWORD until they choose their own (api_auth.c).
 * A new password or disabling ends the user's sessions; nobody deletes or
 * disables themself, so the last administrator stays.
 *
 * The argon2id hash of a new password is made before the transaction,
 * without a connection (auth_prepare_passwords()); here it is only stored.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "validate.h"

#define EMAIL_MAX_LEN  254

static const char *const writable[] = {
    "username", "name", "email", "enabled", "password", "temporaryPassword", NULL
};
static const char *const readonly[] = { "state", "roles", NULL };

#define DOC_BY_ID  "SELECT doc::text FROM user_docs WHERE id = $1"


static cJSON *
defaults(void)
{
    cJSON *doc = cJSON_CreateObject();

    cJSON_AddStringToObject(doc, "name", "");
    cJSON_AddStringToObject(doc, "email", "");
    cJSON_AddTrueToObject(doc, "enabled");
    cJSON_AddFalseToObject(doc, "temporaryPassword");
    return doc;
}


static bool
val_username(http_req_t *req, const cJSON *doc)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "username");

    if (!cJSON_IsString(v) || v->valuestring[0] == '\0'
        || strlen(v->valuestring) > NAME_MAX_LEN)
    {
        http_invalid(req, "username", "username is required: a string of 1 to %d characters",
                     NAME_MAX_LEN);
        return false;
    }
    return val_text(req, "username", v->valuestring);
}


static bool
val_email(http_req_t *req, cJSON *doc)
{
    const char *email;

    if (!val_string(req, doc, "email", EMAIL_MAX_LEN)) {
        return false;
    }
    email = doc_str(doc, "email");
    if (email[0] != '\0' && (strchr(email, '@') == NULL || strchr(email, ' ') != NULL)) {
        http_invalid(req, "email", "email must be an address (name@domain)");
        return false;
    }
    return true;
}


/* doc: the defaults; stored: the user as read (update), NULL on create */
static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored)
{
    const cJSON *password;

    if (!val_merge(req, doc, stored, writable, readonly) || !val_username(req, doc)
        || !val_string(req, doc, "name", NAME_MAX_LEN) || !val_email(req, doc)
        || !val_bool(req, doc, "enabled") || !val_bool(req, doc, "temporaryPassword"))
    {
        return false;
    }
    password = cJSON_GetObjectItemCaseSensitive(doc, "password");
    if (password == NULL) {
        if (stored == NULL) {
            http_invalid(req, "password", "password is required");
            return false;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "temporaryPassword"))) {
            http_invalid(req, "temporaryPassword", "temporaryPassword needs a password");
            return false;
        }
        return true;
    }
    return val_password(req, "password", password, doc_str(doc, "username"), NULL);
}


/* a taken username is a 409 naming it */
static void
user_db_error(http_req_t *req)
{
    if (strcmp(db_sqlstate(req->db), "23505") == 0) {
        http_error(req, 409, "conflict", "username", "a user with this username already exists");
    } else {
        http_db_error(req, "user");
    }
}


/* the hash of doc.password made before the transaction into *hash, NULL
 * when doc has none; false after answering 500 */
static bool
hash_password(http_req_t *req, const cJSON *doc, const char **hash)
{
    *hash = NULL;
    if (cJSON_GetObjectItemCaseSensitive(doc, "password") == NULL) {
        return true;
    }
    *hash = req->password_hash;
    if (*hash == NULL) {
        log_error("users: user=%s cannot hash a password", req->username);
        http_error(req, 500, "internal_error", NULL, "cannot hash the password");
        return false;
    }
    return true;
}


static const char *
state_of(const cJSON *doc)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "temporaryPassword"))
           ? "CHANGE_PASSWORD" : "ACTIVE";
}


void
api_users_list(http_req_t *req)
{
    doc_reply_list(req, "SELECT doc, created_at, id FROM user_docs", 0, NULL);
}


void
api_users_get(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    doc_reply(req, 200, DOC_BY_ID, 1, params, "user");
}


void
api_users_create(http_req_t *req)
{
    cJSON      *doc = defaults();
    char        id[UUID_LEN + 1];
    const char *hash = NULL;
    const char *params[7];

    if (!validate(req, doc, NULL) || !hash_password(req, doc, &hash)) {
        cJSON_Delete(doc);
        return;
    }
    crypto_uuid_v4(id);
    params[0] = id;
    params[1] = doc_str(doc, "username");
    params[2] = hash;
    params[3] = doc_str(doc, "name");
    params[4] = doc_str(doc, "email");
    params[5] = doc_bool(doc, "enabled");
    params[6] = state_of(doc);

    if (db_run(req->db, "INSERT INTO users (id, username, password_hash, name, email,"
                        " enabled, state) VALUES ($1, $2, $3, $4, $5, $6, $7)",
               7, params) != 0)
    {
        user_db_error(req);
    } else {
        log_info("users: user=%s created user=%s id=%s", req->username, params[1], id);
        doc_reply(req, 201, DOC_BY_ID, 1, params, "user");
    }
    cJSON_Delete(doc);
}


/* after an update of user params[0]: a new password ends the user's
 * sessions (but the caller's own), disabling ends them all; 0 or -1 */
static int
end_sessions(http_req_t *req, const char *user_id, bool disabled, bool new_password)
{
    const char *params[2] = { user_id, req->token_hash };

    if (disabled) {
        return db_run(req->db, "DELETE FROM sessions WHERE user_id = $1", 1, params);
    }
    if (new_password) {
        return db_run(req->db, "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2",
                      2, params);
    }
    return 0;
}


void
api_users_update(http_req_t *req)
{
    const char *params[8] = { http_param(req, "id") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 1, params, "user");
    cJSON      *doc;
    const char *hash = NULL;
    bool        disabled;

    if (stored == NULL) {
        return;
    }
    doc = defaults();
    if (!validate(req, doc, stored)) {
        goto done;
    }
    disabled = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "enabled"));
    if (disabled && strcmp(params[0], req->user_id) == 0) {
        http_invalid(req, "enabled", "you cannot disable yourself");
        goto done;
    }
    if (!hash_password(req, doc, &hash)) {
        goto done;
    }
    params[1] = doc_str(doc, "username");
    params[2] = doc_str(doc, "name");
    params[3] = doc_str(doc, "email");
    params[4] = doc_bool(doc, "enabled");
    params[5] = hash;                              /* NULL keeps the stored one */
    params[6] = hash ? state_of(doc) : NULL;       /* and the state with it */
    if (db_run(req->db, "UPDATE users SET username = $2, name = $3, email = $4,"
                        " enabled = $5, password_hash = coalesce($6, password_hash),"
                        " state = coalesce($7, state), updated_at = now()"
                        " WHERE id = $1", 7, params) != 0)
    {
        user_db_error(req);
    } else if (end_sessions(req, params[0], disabled, hash != NULL) != 0) {
        http_db_error(req, "session");
    } else {
        log_info("users: user=%s updated user=%s id=%s%s%s", req->username, params[1],
                 params[0], hash ? " password set" : "", disabled ? " disabled" : "");
        doc_reply(req, 200, DOC_BY_ID, 1, params, "user");
    }

done:
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_users_delete(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    if (strcmp(params[0], req->user_id) == 0) {
        http_error(req, 409, "conflict", NULL, "you cannot delete yourself");
        return;
    }
    doc_reply_delete(req, "DELETE FROM users WHERE id = $1", 1, params, "user");
    if (req->status == 204) {
        log_info("users: user=%s deleted user id=%s", req->username, params[0]);
    }
}


/* PATCH /auth/me: the caller's own name and email; the rest is an
 * administrator's to change (PATCH /users/{id}) */
void
api_auth_me_update(http_req_t *req)
{
    static const char *const own[] = { "name", "email", NULL };
    static const char *const others[] = {
        "username", "enabled", "state", "roles", "password", "temporaryPassword", NULL
    };
    const char *params[3] = { req->user_id };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 1, params, "user");
    cJSON      *doc;

    if (stored == NULL) {
        return;
    }
    doc = defaults();
    if (val_merge(req, doc, stored, own, others) && val_string(req, doc, "name", NAME_MAX_LEN)
        && val_email(req, doc))
    {
        params[1] = doc_str(doc, "name");
        params[2] = doc_str(doc, "email");
        if (db_run(req->db, "UPDATE users SET name = $2, email = $3, updated_at = now()"
                            " WHERE id = $1", 3, params) != 0)
        {
            http_db_error(req, "user");
        } else {
            doc_reply(req, 200, DOC_BY_ID, 1, params, "user");
        }
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}
