/*
 * credentials: the refresher thread and its cache.
 *
 * The cache is a list of roles, one per aws-bedrock connection.  Only the
 * refresher thread adds, removes or changes entries; it does so under
 * refresher.w.lock, which readers (the pusher building a snapshot) take.
 * The refresher reads its own entries without the lock, and calls STS and
 * PostgreSQL without holding it.
 */

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "crypto.h"
#include "db.h"
#include "leader.h"
#include "log.h"
#include "pusher.h"
#include "vmx_rfc3339.h"
#include "snapshot.h"
#include "sts.h"
#include "worker.h"

#define RETRY_MIN     2            /* seconds before the first retry of a failure */
#define RETRY_MAX     300
#define MIN_SPACING   2            /* never re-assume one role sooner than this */
#define NEVER         ((time_t) LLONG_MAX)

#define LIST_SQL \
    "SELECT id::text, workspace_id::text, environment_id::text, config::text," \
    "  updated_at::text" \
    " FROM connections WHERE provider = 'aws-bedrock'"

typedef struct role_s {
    struct role_s     *next;
    char               id[UUID_LEN + 1];
    char              *updated_at;     /* owned: of the connection; a change re-assumes */
    char              *region;         /* owned */
    char              *role_arn;       /* owned */
    char              *external_id;    /* owned: the config's or the default */
    sts_credentials_t  creds;          /* owned; access_key_id NULL when none */
    time_t             refreshed_at;   /* 0 when never */
    time_t             next_attempt;   /* 0: as soon as possible */
    int                failures;       /* in a row */
    bool               attempted;
    sts_error_t        error;          /* of the last attempt; code "" after a success */
    char              *status;         /* owned: credentials_status last written */
    bool               seen;
} role_t;

static struct {
    worker_t          w;               /* w.lock also guards roles */
    bool              bump_pending;    /* new credentials not yet in a config version */
    int               interval;
    int               margin;
    role_t           *roles;           /* owned list */
} refresher = { .w = WORKER_INIT };


static const char *
config_string(const cJSON *config, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}


/* config.externalId, else "<workspaceId>:<environmentId>" (malloc'd) */
static char *
external_id(const cJSON *config, const char *workspace_id, const char *environment_id)
{
    const char *v = config_string(config, "externalId");
    char       *id;

    if (v[0] != '\0') {
        return strdup(v);
    }
    if (asprintf(&id, "%s:%s", workspace_id, environment_id) < 0) {
        return NULL;
    }
    return id;
}


static role_t *
find_role(const char *id)
{
    for (role_t *r = refresher.roles; r != NULL; r = r->next) {
        if (strcmp(r->id, id) == 0) {
            return r;
        }
    }
    return NULL;
}


static void
free_role(role_t *r)
{
    sts_credentials_clear(&r->creds);
    free(r->updated_at);
    free(r->region);
    free(r->role_arn);
    free(r->external_id);
    free(r->status);
    free(r);
}


/* takes the row's config into r; a new role or ExternalId drops the credentials */
static void
update_role(role_t *r, const char *updated_at, const char *config_text,
    const char *workspace_id, const char *environment_id)
{
    cJSON *config = cJSON_Parse(config_text);
    char  *region = strdup(config_string(config, "region"));
    char  *arn = strdup(config_string(config, "iamRoleArn"));
    char  *external = external_id(config, workspace_id, environment_id);

    cJSON_Delete(config);
    if (region == NULL || arn == NULL || external == NULL) {
        log_error("credentials connection=%s: out of memory", r->id);
        free(region);
        free(arn);
        free(external);
        return;
    }

    pthread_mutex_lock(&refresher.w.lock);
    if (r->role_arn != NULL
        && (strcmp(r->role_arn, arn) != 0 || strcmp(r->external_id, external) != 0))
    {
        sts_credentials_clear(&r->creds);
    }
    free(r->region);
    free(r->role_arn);
    free(r->external_id);
    r->region = region;
    r->role_arn = arn;
    r->external_id = external;
    pthread_mutex_unlock(&refresher.w.lock);

    free(r->updated_at);
    r->updated_at = strdup(updated_at);
    r->failures = 0;
    r->next_attempt = 0;
}


/* brings the list in line with the aws-bedrock connections; -1 on error */
static int
sync_roles(db_conn_t *c)
{
    PGresult *res = db_exec(c, LIST_SQL, 0, NULL);
    role_t  **link;

    if (res == NULL) {
        return -1;
    }
    for (role_t *r = refresher.roles; r != NULL; r = r->next) {
        r->seen = false;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        const char *updated_at = PQgetvalue(res, i, 4);
        role_t     *r = find_role(id);

        if (r == NULL) {
            r = calloc(1, sizeof(*r));
            if (r == NULL) {
                continue;
            }
            snprintf(r->id, sizeof(r->id), "%s", id);
            pthread_mutex_lock(&refresher.w.lock);
            r->next = refresher.roles;
            refresher.roles = r;
            pthread_mutex_unlock(&refresher.w.lock);
        }
        if (r->updated_at == NULL || strcmp(r->updated_at, updated_at) != 0) {
            update_role(r, updated_at, PQgetvalue(res, i, 3), PQgetvalue(res, i, 1),
                        PQgetvalue(res, i, 2));
        }
        r->seen = true;
    }
    PQclear(res);

    link = &refresher.roles;
    while (*link != NULL) {
        role_t *r = *link;

        if (r->seen) {
            link = &r->next;
            continue;
        }
        pthread_mutex_lock(&refresher.w.lock);
        *link = r->next;
        pthread_mutex_unlock(&refresher.w.lock);
        log_debug("credentials connection=%s: gone, credentials dropped", r->id);
        free_role(r);
    }
    return 0;
}


static int
retry_delay(int failures)
{
    int delay = RETRY_MIN;

    for (int i = 1; i < failures && delay < RETRY_MAX; i++) {
        delay *= 2;
    }
    return delay < RETRY_MAX ? delay : RETRY_MAX;
}


/* one AssumeRole for r; true when r has new credentials */
static bool
assume(role_t *r)
{
    char               session[sizeof("vmx-") + UUID_LEN];
    char               expires[VMX_RFC3339_SIZE];
    sts_role_t         role = { r->region, r->role_arn, r->external_id, session };
    sts_credentials_t  creds;
    sts_error_t        err;
    time_t             now = time(NULL);

    snprintf(session, sizeof(session), "vmx-%s", r->id);
    r->attempted = true;
    if (sts_assume_role(&role, &creds, &err) != 0) {
        r->failures++;
        r->error = err;
        if (strcmp(err.code, "NoBaseCredentials") == 0) {
            /* only a change of the connection (or a restart) can help */
            r->next_attempt = NEVER;
            log_warn("credentials connection=%s role=%s: %s: %s", r->id, r->role_arn,
                     err.code, err.message);
        } else {
            r->next_attempt = now + retry_delay(r->failures);
            log_warn("credentials connection=%s role=%s: AssumeRole failed (%d in a row):"
                     " %s: %s; retry in %d s", r->id, r->role_arn, r->failures, err.code,
                     err.message, retry_delay(r->failures));
        }
        return false;
    }

    pthread_mutex_lock(&refresher.w.lock);
    sts_credentials_clear(&r->creds);
    r->creds = creds;
    pthread_mutex_unlock(&refresher.w.lock);

    r->refreshed_at = now;
    r->failures = 0;
    memset(&r->error, 0, sizeof(r->error));
    r->next_attempt = creds.expiration - refresher.margin;
    if (r->next_attempt < now + MIN_SPACING) {
        r->next_attempt = now + MIN_SPACING;
    }
    vmx_rfc3339_format(creds.expiration, expires);
    log_info("credentials connection=%s role=%s: assumed, expire at %s", r->id, r->role_arn,
             expires);
    return true;
}


/* drops credentials that expired without a successful refresh */
static void
drop_expired(role_t *r, time_t now)
{
    if (r->creds.access_key_id == NULL || r->creds.expiration > now) {
        return;
    }
    pthread_mutex_lock(&refresher.w.lock);
    sts_credentials_clear(&r->creds);
    pthread_mutex_unlock(&refresher.w.lock);
    log_warn("credentials connection=%s role=%s: credentials expired", r->id, r->role_arn);
}


static void
add_time(cJSON *obj, const char *name, time_t t)
{
    char buf[VMX_RFC3339_SIZE];

    if (t == 0 || t == NEVER) {
        cJSON_AddNullToObject(obj, name);
        return;
    }
    vmx_rfc3339_format(t, buf);
    cJSON_AddStringToObject(obj, name, buf);
}


/* the credentials_status document of r (malloc'd text) */
static char *
status_text(const role_t *r)
{
    cJSON *obj = cJSON_CreateObject();
    bool   failed = r->error.code[0] != '\0';
    char  *text;

    cJSON_AddStringToObject(obj, "state", !r->attempted ? "pending" : failed ? "failed" : "ok");
    add_time(obj, "expiresAt", r->creds.access_key_id ? r->creds.expiration : 0);
    add_time(obj, "refreshedAt", r->refreshed_at);
    if (failed) {
        cJSON *error = cJSON_AddObjectToObject(obj, "error");

        cJSON_AddStringToObject(error, "code", r->error.code);
        cJSON_AddStringToObject(error, "message", r->error.message);
    } else {
        cJSON_AddNullToObject(obj, "error");
    }
    add_time(obj, "nextAttemptAt", failed ? r->next_attempt : 0);
    text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}


/* writes r's status when it changed (no config version bump: see schema) */
static void
write_status(db_conn_t *c, role_t *r)
{
    char       *text = status_text(r);
    const char *params[2] = { r->id, text };

    if (text == NULL || (r->status != NULL && strcmp(r->status, text) == 0)) {
        free(text);
        return;
    }
    if (db_run(c, "UPDATE connections SET credentials_status = $2::jsonb WHERE id = $1",
               2, params) != 0)
    {
        free(text);
        return;
    }
    free(r->status);
    r->status = text;
}


/* one round: sync with the database, assume the roles due, publish */
static void
run_round(void)
{
    db_conn_t *c = db_acquire();
    int        rc;

    if (c == NULL) {
        return;
    }
    rc = sync_roles(c);
    db_release(c);
    if (rc != 0) {
        return;
    }

    for (role_t *r = refresher.roles; r != NULL && !worker_stopping(&refresher.w); r = r->next) {
        time_t now = time(NULL);

        drop_expired(r, now);
        if (now >= r->next_attempt && assume(r)) {
            refresher.bump_pending = true;
        }
    }

    c = db_acquire();
    if (c == NULL) {
        return;
    }
    for (role_t *r = refresher.roles; r != NULL; r = r->next) {
        write_status(c, r);
    }
    /* the credentials are in the cache before the version that carries them */
    if (refresher.bump_pending && snapshot_bump_version(c) == 0) {
        refresher.bump_pending = false;
        pusher_notify();
    }
    db_release(c);
}


/* when the next round is due: the next attempt, or the interval's end */
static time_t
next_round(void)
{
    time_t next = time(NULL) + refresher.interval;

    for (role_t *r = refresher.roles; r != NULL; r = r->next) {
        if (r->next_attempt < next) {
            next = r->next_attempt;
        }
        if (r->creds.access_key_id != NULL && r->creds.expiration < next) {
            next = r->creds.expiration;
        }
    }
    return next;
}


static long
refresher_round(void)
{
    run_round();
    return (long) (next_round() - time(NULL)) * 1000L;
}


int
credentials_start(const config_t *cfg)
{
    refresher.interval = cfg->reconcile_interval;
    refresher.margin = cfg->sts_refresh_margin;
    sts_init(cfg);
    leader_follow(&refresher.w);
    if (worker_start(&refresher.w, "credentials", refresher_round) != 0) {
        return -1;
    }
    log_info("credentials: STS %s, refresh %d s before expiry",
             sts_configured() ? "base credentials set" : "base credentials not set",
             refresher.margin);
    return 0;
}


void
credentials_stop(void)
{
    worker_stop(&refresher.w);
    while (refresher.roles != NULL) {
        role_t *r = refresher.roles;

        refresher.roles = r->next;
        free_role(r);
    }
}


void
credentials_notify(void)
{
    worker_notify(&refresher.w);
}


cJSON *
credentials_snapshot_json(const char *connection_id, const cJSON *config,
    const char *workspace_id, const char *environment_id)
{
    cJSON       *obj = cJSON_CreateObject();
    char        *external = external_id(config, workspace_id, environment_id);
    const char  *arn = config_string(config, "iamRoleArn");
    char         expiration[VMX_RFC3339_SIZE];
    role_t      *r;

    pthread_mutex_lock(&refresher.w.lock);
    r = find_role(connection_id);
    if (r != NULL && external != NULL && r->creds.access_key_id != NULL
        && r->creds.expiration > time(NULL)
        && strcmp(r->role_arn, arn) == 0 && strcmp(r->external_id, external) == 0)
    {
        vmx_rfc3339_format(r->creds.expiration, expiration);
        cJSON_AddStringToObject(obj, "accessKeyId", r->creds.access_key_id);
        cJSON_AddStringToObject(obj, "secretAccessKey", r->creds.secret_access_key);
        cJSON_AddStringToObject(obj, "sessionToken", r->creds.session_token);
        cJSON_AddStringToObject(obj, "expiration", expiration);
    }
    pthread_mutex_unlock(&refresher.w.lock);
    free(external);
    return obj;
}
