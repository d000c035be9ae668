/*
 * pusher: the config channel client.  The data plane list and each plane's
 * state are guarded by pusher.lock; HTTP calls run without it.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capacity.h"
#include "dpclient.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "pusher.h"
#include "resolve.h"
#include "vmx_rfc3339.h"
#include "snapshot.h"
#include "worker.h"

#define MAX_ANSWER          65536
#define MAX_CAPACITY        (4 * 1024 * 1024)

typedef struct {
    dpclient_t  conn;             /* the pusher thread's; conn.base names the plane */
    long long   version;          /* what it runs, -1 when unknown */
    bool        reachable;
    bool        contacted;        /* answered at least once */
    time_t      last_seen;        /* 0 when never */
    char        last_error[256];
    char        last_cause[192];  /* of last_error, to log each cause once */
    char        capacity_cause[192];  /* of the last GET /vmx/capacity failure */
    cJSON      *problems;         /* owned: its snapshot's, as it states them */
    long long   problems_total;
    bool        unresolved;       /* a host did not resolve: push again */
    time_t      pushed_at;
} dataplane_t;

static struct {
    worker_t          worker;         /* its lock also guards the planes' state */
    int               interval;       /* seconds between reconcile rounds */
    long long         reconcile_at;   /* worker_clock_ms(); 0: at once */
    long long         desired;        /* the version last read from PostgreSQL */
    dataplane_t      *planes;         /* owned array */
    size_t            nplanes;
} pusher = { .worker = WORKER_INIT, .desired = -1 };


/*
 * takes the state of a data plane's answer: the version it runs (-1 when
 * absent) and the problems of that snapshot (vmx_config.h): an object the
 * data plane left out or runs unavailable, with the reason
 */
static void
take_state(dataplane_t *dp, const char *answer)
{
    cJSON       *json = answer ? cJSON_Parse(answer) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, "version");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(json, "problemsTotal");
    cJSON       *problems = cJSON_DetachItemFromObjectCaseSensitive(json, "problems");
    const cJSON *p;

    dp->version = cJSON_IsNumber(v) ? (long long) v->valuedouble : -1;
    if (!cJSON_IsArray(problems)) {
        cJSON_Delete(problems);
        problems = cJSON_CreateArray();
    }
    cJSON_Delete(dp->problems);
    dp->problems = problems;
    dp->problems_total = cJSON_IsNumber(total) ? (long long) total->valuedouble : 0;
    dp->unresolved = false;
    cJSON_ArrayForEach(p, dp->problems) {
        dp->unresolved = dp->unresolved
                         || cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(p, "invalid"));
    }
    cJSON_Delete(json);
}


/* records the outcome of the call what; logs only when the state changes */
static void
record(dataplane_t *dp, long status, const char *what)
{
    const char *answer = dp->conn.answer.data;
    char        cause[192] = "";
    bool        ok = status == 200;

    if (status == 0) {
        snprintf(cause, sizeof(cause), "%.160s", dp->conn.error);
    } else if (!ok) {
        snprintf(cause, sizeof(cause), "HTTP %ld %.160s", status, answer ? answer : "");
    }

    pthread_mutex_lock(&pusher.worker.lock);
    if (status != 0) {
        dp->last_seen = time(NULL);
    }
    if (ok) {
        take_state(dp, answer);
        dp->last_error[0] = '\0';
        dp->last_cause[0] = '\0';
    } else {
        if (strcmp(dp->last_cause, cause) != 0) {
            log_warn("pusher dataplane=%s %s: %s", dp->conn.base, what, cause);
        }
        snprintf(dp->last_cause, sizeof(dp->last_cause), "%s", cause);
        snprintf(dp->last_error, sizeof(dp->last_error), "%s: %s", what, cause);
    }
    if (ok && (!dp->reachable || !dp->contacted)) {
        log_info("pusher dataplane=%s reachable version=%lld", dp->conn.base, dp->version);
    }
    dp->reachable = status != 0;
    dp->contacted = dp->contacted || ok;
    pthread_mutex_unlock(&pusher.worker.lock);
}


static void
ask_version(dataplane_t *dp)
{
    long status = dpclient_call(&dp->conn, "GET", "/vmx/config", NULL, NULL, MAX_ANSWER);

    record(dp, status, "GET /vmx/config");
}


static void
push(dataplane_t *dp, const char *snapshot, long long version)
{
    char labels[METRICS_LABELS_SIZE];
    long status = dpclient_call(&dp->conn, "PUT", "/vmx/config", snapshot, NULL, MAX_ANSWER);

    record(dp, status, "PUT /vmx/config");
    pthread_mutex_lock(&pusher.worker.lock);
    dp->pushed_at = time(NULL);
    pthread_mutex_unlock(&pusher.worker.lock);
    metrics_labels(labels, "dataplane", dp->conn.base, "result", status == 200 ? "ok" : "error",
                   NULL);
    metrics_add(METRIC_PUSHES, labels, 1);
    if (status == 200) {
        log_info("pusher dataplane=%s pushed version=%lld", dp->conn.base, version);
    }
}


/*
 * merges the plane's discovered capacity into the connections: observed
 * state, no config version.  A plane without /vmx/capacity (an older
 * module) or in trouble changes nothing; each cause is logged once.
 */
static void
collect_capacity(dataplane_t *dp, db_conn_t *c)
{
    char cause[sizeof(dp->capacity_cause)] = "";
    long status = dpclient_call(&dp->conn, "GET", "/vmx/capacity", NULL, NULL, MAX_CAPACITY);

    if (status == 0) {
        snprintf(cause, sizeof(cause), "%.160s", dp->conn.error);
    } else if (status != 200) {
        snprintf(cause, sizeof(cause), "HTTP %ld", status);
    } else if (capacity_merge(c, dp->conn.answer.data, dp->conn.base) != 0) {
        snprintf(cause, sizeof(cause), "not a capacity document");
    }
    if (strcmp(cause, dp->capacity_cause) != 0) {
        if (cause[0] != '\0') {
            log_info("pusher dataplane=%s GET /vmx/capacity: %s; no discovered capacity"
                     " from this data plane", dp->conn.base, cause);
        } else {
            log_info("pusher dataplane=%s GET /vmx/capacity: collecting discovered capacity",
                     dp->conn.base);
        }
        snprintf(dp->capacity_cause, sizeof(dp->capacity_cause), "%s", cause);
    }
}


static bool
is_reachable(const dataplane_t *dp)
{
    bool reachable;

    pthread_mutex_lock(&pusher.worker.lock);
    reachable = dp->reachable;
    pthread_mutex_unlock(&pusher.worker.lock);
    return reachable;
}


/* behind version; or, on reconcile, running a connection whose host did
 * not resolve, which a new build of the same version heals once the name
 * resolves (tried again when the resolver's cached answer has expired) */
static bool
is_stale(const dataplane_t *dp, long long version, bool reconcile)
{
    bool stale;

    pthread_mutex_lock(&pusher.worker.lock);
    stale = dp->version != version
            || (reconcile && dp->unresolved && time(NULL) - dp->pushed_at >= RESOLVE_TTL);
    pthread_mutex_unlock(&pusher.worker.lock);
    return stale;
}


/*
 * one round: optionally (reconcile) ask every plane its version, then push
 * to stale ones; on reconcile, collect the planes' discovered capacity last
 */
static void
run_cycle(bool reconcile)
{
    db_conn_t *c = db_acquire();
    char      *snapshot = NULL;
    long long  version;

    if (c == NULL) {
        return;
    }
    version = snapshot_current_version(c);
    if (version >= 0) {
        pthread_mutex_lock(&pusher.worker.lock);
        pusher.desired = version;
        pthread_mutex_unlock(&pusher.worker.lock);
    }
    for (size_t i = 0; version >= 0 && i < pusher.nplanes; i++) {
        dataplane_t *dp = &pusher.planes[i];

        if (reconcile) {
            ask_version(dp);
        }
        if (!is_stale(dp, version, reconcile)) {
            continue;
        }
        /* built once per round, for the first plane that needs it */
        if (snapshot == NULL) {
            snapshot = snapshot_build(c, &version);
            if (snapshot == NULL) {
                log_error("pusher: cannot build the snapshot");
                break;
            }
            pthread_mutex_lock(&pusher.worker.lock);
            pusher.desired = version;
            pthread_mutex_unlock(&pusher.worker.lock);
        }
        push(dp, snapshot, version);
    }
    for (size_t i = 0; reconcile && i < pusher.nplanes; i++) {
        if (is_reachable(&pusher.planes[i])) {
            collect_capacity(&pusher.planes[i], c);
        }
    }
    db_release(c);
    snapshot_free(snapshot);
}


/* a reconcile round when the interval is over, a push alone when woken by
 * a change before; the milliseconds until the next reconcile */
static long
pusher_round(void)
{
    if (worker_clock_ms() < pusher.reconcile_at) {
        run_cycle(false);
    } else {
        run_cycle(true);
        pusher.reconcile_at = worker_clock_ms() + pusher.interval * 1000LL;
    }
    return (long) (pusher.reconcile_at - worker_clock_ms());
}


int
pusher_start(const config_t *cfg)
{
    pusher.interval = cfg->reconcile_interval;
    pusher.planes = calloc(cfg->ndataplanes ? cfg->ndataplanes : 1, sizeof(dataplane_t));
    if (pusher.planes == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cfg->ndataplanes; i++) {
        pusher.planes[i].version = -1;
        dpclient_open(&pusher.planes[i].conn, cfg->dataplanes[i], HTTPC_TOTAL_TIMEOUT_MS);
    }
    pusher.nplanes = cfg->ndataplanes;
    if (pusher.nplanes == 0) {
        log_info("pusher: no data planes configured");
        return 0;
    }

    leader_follow(&pusher.worker);
    if (worker_start(&pusher.worker, "pusher", pusher_round) != 0) {
        return -1;
    }
    log_info("pusher: %zu data plane(s), reconcile every %d s", pusher.nplanes,
             pusher.interval);
    return 0;
}


void
pusher_stop(void)
{
    worker_stop(&pusher.worker);
    for (size_t i = 0; i < pusher.nplanes; i++) {
        dpclient_close(&pusher.planes[i].conn);
        cJSON_Delete(pusher.planes[i].problems);
    }
    free(pusher.planes);
    pusher.planes = NULL;
    pusher.nplanes = 0;
}


void
pusher_notify(void)
{
    worker_notify(&pusher.worker);
}


static void
add_time(cJSON *obj, const char *name, time_t t)
{
    char buf[VMX_RFC3339_SIZE];

    if (t == 0) {
        cJSON_AddNullToObject(obj, name);
        return;
    }
    vmx_rfc3339_format(t, buf);
    cJSON_AddStringToObject(obj, name, buf);
}


static cJSON *
plane_json(const dataplane_t *dp, long long desired)
{
    cJSON      *obj = cJSON_CreateObject();
    const char *status;

    if (!dp->reachable) {
        status = "unreachable";
    } else {
        status = dp->version == desired ? "in-sync" : "stale";
    }
    cJSON_AddStringToObject(obj, "url", dp->conn.base);
    if (dp->version >= 0) {
        cJSON_AddNumberToObject(obj, "version", (double) dp->version);
    } else {
        cJSON_AddNullToObject(obj, "version");
    }
    if (desired >= 0) {
        cJSON_AddNumberToObject(obj, "desiredVersion", (double) desired);
    } else {
        cJSON_AddNullToObject(obj, "desiredVersion");
    }
    cJSON_AddStringToObject(obj, "status", status);
    add_time(obj, "lastSeenAt", dp->last_seen);
    if (dp->last_error[0] != '\0') {
        cJSON_AddStringToObject(obj, "lastError", dp->last_error);
    } else {
        cJSON_AddNullToObject(obj, "lastError");
    }
    cJSON_AddItemToObject(obj, "problems", dp->problems ? cJSON_Duplicate(dp->problems, true)
                                                        : cJSON_CreateArray());
    cJSON_AddNumberToObject(obj, "problemsTotal", (double) dp->problems_total);
    return obj;
}


cJSON *
pusher_state_json(void)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(root, "data");

    pthread_mutex_lock(&pusher.worker.lock);
    for (size_t i = 0; i < pusher.nplanes; i++) {
        cJSON_AddItemToArray(data, plane_json(&pusher.planes[i], pusher.desired));
    }
    cJSON_AddNumberToObject(root, "total", (double) pusher.nplanes);
    pthread_mutex_unlock(&pusher.worker.lock);
    cJSON_AddNumberToObject(root, "pageIndex", 0);
    cJSON_AddNumberToObject(root, "pageSize", (double) cJSON_GetArraySize(data));
    return root;
}


cJSON *
pusher_object_problems(const char *kind, const char *id)
{
    cJSON       *list = cJSON_CreateArray();
    const cJSON *p;

    pthread_mutex_lock(&pusher.worker.lock);
    for (size_t i = 0; i < pusher.nplanes; i++) {
        cJSON_ArrayForEach(p, pusher.planes[i].problems) {
            const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "kind"));
            const char *o = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "id"));
            cJSON      *item;

            if (k == NULL || o == NULL || strcmp(k, kind) != 0 || strcmp(o, id) != 0) {
                continue;
            }
            item = cJSON_Duplicate(p, true);
            cJSON_DeleteItemFromObjectCaseSensitive(item, "kind");
            cJSON_DeleteItemFromObjectCaseSensitive(item, "id");
            cJSON_AddStringToObject(item, "dataplane", pusher.planes[i].conn.base);
            cJSON_AddItemToArray(list, item);
        }
    }
    pthread_mutex_unlock(&pusher.worker.lock);
    return list;
}
