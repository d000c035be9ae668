/*
 * pusher: the config channel client.  The planes follow the discovery's
 * list at the start of each round, and belong to the pusher thread alone;
 * after a round their states go to the dataplanes table, where every
 * replica's API reads them (discovery.h).
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capacity.h"
#include "discovery.h"
#include "dpclient.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "pusher.h"
#include "resolve.h"
#include "vmx_rfc3339.h"
#include "snapshot.h"
#include "vmx_config.h"
#include "worker.h"

#define MAX_ANSWER          65536
#define MAX_CAPACITY        (4 * 1024 * 1024)

typedef struct {
    discovery_url_t  url;              /* first: discovery_follow() reads it */
    dpclient_t       conn;             /* conn.base (url) names the plane */
    long long        version;          /* what it runs, -1 when unknown */
    long long        received;         /* what it holds, run or being compiled; -1 */
    int              format;           /* newest snapshot format it reads; 0: unknown */
    bool             reachable;
    bool             contacted;        /* answered at least once */
    time_t           last_seen;        /* 0 when never */
    char             last_error[256];
    char             last_cause[192];  /* of last_error, to log each cause once */
    char             capacity_cause[192];  /* of the last GET /vmx/capacity failure */
    cJSON           *problems;         /* owned: its snapshot's, as it states them */
    long long        problems_total;
    bool             unresolved;       /* a host did not resolve: push again */
    time_t           pushed_at;
} dataplane_t;

/* a push of a round, made by a thread of its own (push_all) */
typedef struct {
    dataplane_t      *dp;
    const char       *snapshot;
    long long         version;
    pthread_t         thread;
    bool              threaded;
} push_t;

static struct {
    worker_t          worker;
    int               interval;       /* seconds between reconcile rounds */
    long long         reconcile_at;   /* worker_clock_ms(); 0: at once */
    long long         desired;        /* the version last read from PostgreSQL */
    dataplane_t      *planes[CONFIG_MAX_DATAPLANES];   /* owned */
    size_t            nplanes;
} pusher = { .worker = WORKER_INIT, .desired = -1 };


/*
 * the newest snapshot format both read: of the "formats" a data plane
 * states, or the oldest for one that states none (a release before them)
 */
static int
take_format(const cJSON *formats)
{
    const cJSON *f;
    int          newest = VMX_CONFIG_FORMAT_OLDEST;

    cJSON_ArrayForEach(f, formats) {
        if (cJSON_IsNumber(f) && f->valuedouble > newest && f->valuedouble <= VMX_CONFIG_FORMAT) {
            newest = (int) f->valuedouble;
        }
    }
    return newest;
}


/*
 * takes the state of a data plane's answer: the version it runs (-1 when
 * absent), the snapshot formats it reads, and the problems of that
 * snapshot (vmx_config.h): an object the data plane left out or runs
 * unavailable, with the reason
 */
static void
take_state(dataplane_t *dp, const char *answer)
{
    cJSON       *json = answer ? cJSON_Parse(answer) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, "version");
    const cJSON *received = cJSON_GetObjectItemCaseSensitive(json, "received");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(json, "problemsTotal");
    cJSON       *problems = cJSON_DetachItemFromObjectCaseSensitive(json, "problems");
    int          format = take_format(cJSON_GetObjectItemCaseSensitive(json, "formats"));
    const cJSON *p;

    dp->version = cJSON_IsNumber(v) ? (long long) v->valuedouble : -1;
    /* a release before "received" holds what it runs */
    dp->received = cJSON_IsNumber(received) ? (long long) received->valuedouble : dp->version;
    if (format != dp->format) {
        log_info("pusher dataplane=%s reads snapshot format %d", dp->conn.base, format);
        dp->format = format;
    }
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
    char       labels[METRICS_LABELS_SIZE];
    long long  started = worker_clock_ms();
    long       status = dpclient_call(&dp->conn, "PUT", "/vmx/config", snapshot, NULL,
                                      MAX_ANSWER);

    record(dp, status, "PUT /vmx/config");
    dp->pushed_at = time(NULL);
    metrics_labels(labels, "dataplane", dp->conn.base, "result", status == 200 ? "ok" : "error",
                   NULL);
    metrics_add(METRIC_PUSHES, labels, 1);
    if (status == 200) {
        log_info("pusher dataplane=%s pushed version=%lld bytes=%zu in %lld ms",
                 dp->conn.base, version, strlen(snapshot), worker_clock_ms() - started);
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
    if (dp->format != 0) {
        cJSON_AddNumberToObject(obj, "snapshotFormat", dp->format);
    } else {
        cJSON_AddNullToObject(obj, "snapshotFormat");
    }
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


/* what the pusher knows of each plane, for every replica's GET /api/v1/dataplanes */
static void
store_states(db_conn_t *c)
{
    for (size_t i = 0; i < pusher.nplanes; i++) {
        cJSON *state = plane_json(pusher.planes[i], pusher.desired);
        char  *text = cJSON_PrintUnformatted(state);

        if (text != NULL) {
            discovery_store_state(c, pusher.planes[i]->url, text);
        }
        free(text);
        cJSON_Delete(state);
    }
}


static void *
open_plane(const char *url)
{
    dataplane_t *dp = calloc(1, sizeof(dataplane_t));

    if (dp == NULL) {
        log_error("pusher dataplane=%s: out of memory", url);
        return NULL;
    }
    snprintf(dp->url, sizeof(dp->url), "%s", url);
    dp->version = -1;
    dp->received = -1;
    /* a PUT is answered once every worker compiled it: seconds at scale */
    dpclient_open(&dp->conn, dp->url, HTTPC_TOTAL_TIMEOUT_MS * 3);
    return dp;
}


static void
close_plane(void *plane)
{
    dataplane_t *dp = plane;

    log_info("pusher dataplane=%s: forgotten", dp->url);
    dpclient_close(&dp->conn);
    cJSON_Delete(dp->problems);
    free(dp);
}


/* behind version, and not holding it already (its workers still compiling
 * what it was sent: a push of the same would only start that over); or, on
 * reconcile, running a connection whose host did not resolve, which a new
 * build of the same version heals once the name resolves (tried again when
 * the resolver's cached answer has expired) */
static bool
is_stale(const dataplane_t *dp, long long version, bool reconcile)
{
    return (dp->version != version && dp->received != version)
           || (reconcile && dp->unresolved && time(NULL) - dp->pushed_at >= RESOLVE_TTL);
}


static void *
push_thread(void *arg)
{
    push_t *p = arg;

    push(p->dp, p->snapshot, p->version);
    return NULL;
}


/*
 * the round's pushes at once, a thread each: at scale a PUT takes seconds
 * (the transfer, every worker's compile), which one plane after the other
 * would add up; each thread touches its own plane only
 */
static void
push_all(push_t *pushes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pushes[i].threaded = n > 1
                             && pthread_create(&pushes[i].thread, NULL, push_thread,
                                               &pushes[i]) == 0;
        if (!pushes[i].threaded) {
            push(pushes[i].dp, pushes[i].snapshot, pushes[i].version);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (pushes[i].threaded) {
            pthread_join(pushes[i].thread, NULL);
        }
    }
}


/*
 * one round: optionally (reconcile) ask every plane its version, then push
 * to stale ones, all at once; on reconcile, collect the planes' discovered
 * capacity last
 */
static void
run_cycle(bool reconcile)
{
    db_conn_t *c = db_acquire();
    char      *snapshot[VMX_CONFIG_FORMAT + 1] = { NULL };   /* by format */
    long long  built[VMX_CONFIG_FORMAT + 1];                 /* their versions */
    push_t     pushes[CONFIG_MAX_DATAPLANES];
    size_t     npushes = 0;
    long long  version;
    int        format;

    if (c == NULL) {
        return;
    }
    version = snapshot_current_version(c);
    if (version >= 0) {
        pusher.desired = version;
    }
    for (size_t i = 0; version >= 0 && i < pusher.nplanes; i++) {
        dataplane_t *dp = pusher.planes[i];

        /* a plane new to this thread tells first which formats it reads */
        if (reconcile || dp->format == 0) {
            ask_version(dp);
        }
        if (!is_stale(dp, version, reconcile)) {
            continue;
        }
        format = dp->format != 0 ? dp->format : VMX_CONFIG_FORMAT_OLDEST;
        /* built once per round and format, for the first plane that needs it */
        if (snapshot[format] == NULL) {
            long long started = worker_clock_ms();

            snapshot[format] = snapshot_build(c, &built[format], format);
            if (snapshot[format] == NULL) {
                log_error("pusher: cannot build the snapshot (format %d)", format);
                break;
            }
            pusher.desired = built[format];
            log_info("pusher built version=%lld format=%d in %lld ms", built[format], format,
                     worker_clock_ms() - started);
        }
        pushes[npushes++] = (push_t) { .dp = dp, .snapshot = snapshot[format],
                                       .version = built[format] };
    }
    push_all(pushes, npushes);
    for (size_t i = 0; reconcile && i < pusher.nplanes; i++) {
        if (pusher.planes[i]->reachable) {
            collect_capacity(pusher.planes[i], c);
        }
    }
    store_states(c);
    db_release(c);
    for (format = 0; format <= VMX_CONFIG_FORMAT; format++) {
        snapshot_free(snapshot[format]);
    }
}


/* a reconcile round when the interval is over or a plane is new, a push
 * alone when woken by a change before; the milliseconds until the next
 * reconcile */
static long
pusher_round(void)
{
    if (discovery_follow((void **) pusher.planes, &pusher.nplanes, open_plane, close_plane) == 0
        && worker_clock_ms() < pusher.reconcile_at)
    {
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
    leader_follow(&pusher.worker);
    if (worker_start(&pusher.worker, "pusher", pusher_round) != 0) {
        return -1;
    }
    log_info("pusher: reconcile every %d s", pusher.interval);
    return 0;
}


void
pusher_stop(void)
{
    worker_stop(&pusher.worker);
    while (pusher.nplanes > 0) {
        close_plane(pusher.planes[--pusher.nplanes]);
    }
}


void
pusher_notify(void)
{
    worker_notify(&pusher.worker);
}
