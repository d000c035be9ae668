/*
 * reencrypt: the thread.  A connection whose secret cannot be decrypted is
 * skipped (it stays under its key, and counts in that key's secretCount)
 * and the others go on; an active key that cannot encrypt, or a KMS that
 * fails, ends the round.  Logs never hold a secret: only ids, counts and
 * reasons.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "crypto.h"
#include "db.h"
#include "keyring.h"
#include "leader.h"
#include "log.h"
#include "reencrypt.h"
#include "secrets.h"
#include "worker.h"

#define FIRST_ID  "00000000-0000-0000-0000-000000000000"

/* the connections of the batch after $1 with a secret under a key other than $2 */
#define BATCH_SQL \
    "SELECT id::text, secrets::text FROM connections c" \
    " WHERE id > $1::uuid" \
    "   AND EXISTS (SELECT 1 FROM vmx_secret_key_ids(c.secrets) k WHERE k <> $2)" \
    " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED"

#define LEFT_SQL \
    "SELECT count(*) FROM connections c, vmx_secret_key_ids(c.secrets) k WHERE k <> $1"

typedef struct {
    int              moved, failed;
    char             failure[UUID_LEN + 320];   /* the first: "connection=<id>: <why>" */
    bool             unavailable;                /* the active key or KMS: end the round */
} batch_t;

static struct {
    worker_t         w;
    int              interval;       /* seconds between rounds */
    int              batch;
    int              pause_ms;
    char             reported[UUID_LEN + 320];  /* the failure last logged */
} re = { .w = WORKER_INIT };


/*
 * the connection's secrets text with every blob under active (malloc'd),
 * or NULL with *err and *global: the active key or KMS failed (the other
 * connections would fail alike), not the connection's blob
 */
static char *
reencrypt_row(const char *id, const char *secrets_text, const char *active,
    secrets_error_t *err, bool *global)
{
    cJSON *secrets = cJSON_Parse(secrets_text);
    cJSON *item;
    char   key_id[SECRETS_KEY_ID_LEN + 1];
    char  *text = NULL;
    bool   ok = secrets != NULL;

    cJSON_ArrayForEach(item, secrets) {
        char *plain, *blob;

        if (!cJSON_IsString(item) || !secrets_blob_key_id(item->valuestring, key_id)
            || strcmp(key_id, active) == 0)
        {
            continue;
        }
        plain = secrets_decrypt(item->valuestring, id, err);
        blob = plain ? secrets_encrypt(plain, id, active, err) : NULL;
        if (blob == NULL) {
            *global = plain != NULL || err->kms;
            secrets_free(plain);
            ok = false;
            break;
        }
        secrets_free(plain);
        cJSON_SetValuestring(item, blob);
        free(blob);
    }
    if (ok) {
        text = cJSON_PrintUnformatted(secrets);
    } else if (secrets == NULL) {
        secrets_set_error(err, 500, "the secrets column is no JSON object");
    }
    cJSON_Delete(secrets);
    return text;
}


static void
note_failure(batch_t *b, const char *id, const secrets_error_t *err)
{
    if (b->failed++ == 0) {
        snprintf(b->failure, sizeof(b->failure), "connection=%s: %s", id, err->message);
    }
}


/* one transaction; the rows it looked at (cursor advanced), or -1 */
static int
run_batch(db_conn_t *c, char *cursor, char *active, batch_t *b)
{
    char             limit[16];
    const char      *params[3] = { cursor, active, limit };
    secrets_error_t  err;
    PGresult        *res;
    int              n;

    snprintf(limit, sizeof(limit), "%d", re.batch);
    if (db_begin(c) != 0) {
        return -1;
    }
    if (db_run(c, "SET LOCAL vmx.reencrypt = 'on'", 0, NULL) != 0
        || keyring_active(c, active, &err) != 0
        || (res = db_exec(c, BATCH_SQL, 3, params)) == NULL)
    {
        db_rollback(c);
        return -1;
    }
    n = PQntuples(res);
    for (int i = 0; i < n && !b->unavailable; i++) {
        const char *id = PQgetvalue(res, i, 0);
        char       *text = reencrypt_row(id, PQgetvalue(res, i, 1), active, &err,
                                         &b->unavailable);
        const char *update[2] = { id, text };

        snprintf(cursor, UUID_LEN + 1, "%s", id);
        if (text == NULL) {
            note_failure(b, id, &err);
        } else if (db_run(c, "UPDATE connections SET secrets = $2::jsonb WHERE id = $1",
                          2, update) == 0)
        {
            b->moved++;
        } else {
            secrets_set_error(&err, 500, "the update failed");
            note_failure(b, id, &err);
        }
        free(text);
    }
    PQclear(res);
    if (db_commit(c) != 0) {
        return -1;
    }
    return n;
}


/* secrets still under another key than active, -1 on error */
static long long
secrets_left(db_conn_t *c, const char *active)
{
    PGresult  *res = db_exec(c, LEFT_SQL, 1, &active);
    long long  n = -1;

    if (res != NULL) {
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    return n;
}


/* one line per batch that moved something or failed otherwise than the last */
static void
log_batch(const batch_t *b, const char *active, long long left)
{
    if (b->moved == 0 && strcmp(b->failure, re.reported) == 0) {
        return;
    }
    snprintf(re.reported, sizeof(re.reported), "%s", b->failure);
    if (b->failed > 0) {
        log_warn("reencrypt key_id=%s: %d connection(s) moved, %d failed (first %s);"
                 " %lld secret(s) left under other keys", active, b->moved, b->failed,
                 b->failure, left);
    } else {
        log_info("reencrypt key_id=%s: %d connection(s) moved; %lld secret(s) left under"
                 " other keys", active, b->moved, left);
    }
}


/* takes the ring in (every replica encrypts and decrypts with it), then, on
 * the leader, re-encrypts batch after batch until done or stopping */
static void
run_round(void)
{
    char             cursor[UUID_LEN + 1] = FIRST_ID;
    char             active[SECRETS_KEY_ID_LEN + 1] = "";
    db_conn_t       *c = db_acquire();
    int              n;

    if (c == NULL) {
        return;
    }
    keyring_scan();
    n = keyring_sync(c);
    db_release(c);
    while (n >= 0 && leader_holds()) {
        batch_t b = { 0, 0, "", false };

        c = db_acquire();
        if (c == NULL) {
            return;
        }
        n = run_batch(c, cursor, active, &b);
        if (n > 0) {
            log_batch(&b, active, secrets_left(c, active));
        }
        db_release(c);
        if (n < re.batch || b.unavailable || worker_pause(&re.w, re.pause_ms)) {
            return;
        }
    }
}


static long
reencrypt_round(void)
{
    run_round();
    return re.interval * 1000L;
}


int
reencrypt_start(const config_t *cfg)
{
    re.interval = cfg->reconcile_interval;
    re.batch = cfg->reencrypt_batch;
    re.pause_ms = cfg->reencrypt_pause_ms;
    return worker_start(&re.w, "reencrypt", reencrypt_round);
}


void
reencrypt_stop(void)
{
    worker_stop(&re.w);
}


void
reencrypt_notify(void)
{
    worker_notify(&re.w);
}
