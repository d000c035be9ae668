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

#include <curl/curl.h>

#include "log.h"
#include "pusher.h"
#include "snapshot.h"

#define CONNECT_TIMEOUT_MS  2000L
#define TOTAL_TIMEOUT_MS    10000L
#define MAX_ANSWER          65536

typedef struct {
    char       *url;              /* owned: "<base>/vmx/config" */
    char       *base;             /* owned: as configured */
    long long   version;          /* what it runs, -1 when unknown */
    bool        reachable;
    bool        contacted;        /* answered at least once */
    time_t      last_seen;        /* 0 when never */
    char        last_error[256];
    char        last_cause[192];  /* of last_error, to log each cause once */
} dataplane_t;

static struct {
    pthread_t         thread;
    bool              running;
    pthread_mutex_t   lock;
    pthread_cond_t    wake;
    bool              changed;
    bool              stopping;
    int               interval;
    long long         desired;        /* the version last read from PostgreSQL */
    char             *auth_header;    /* owned, "Authorization: Bearer ..." */
    dataplane_t      *planes;         /* owned array */
    size_t            nplanes;
} pusher = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
             .desired = -1 };

typedef struct {
    char   *data;                     /* owned by the caller of http_call() */
    size_t  len;
} answer_t;


static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    answer_t *a = userdata;
    size_t    n = size * nmemb;
    char     *grown;

    if (a->len + n > MAX_ANSWER) {
        return 0;
    }
    grown = realloc(a->data, a->len + n + 1);
    if (grown == NULL) {
        return 0;
    }
    memcpy(grown + a->len, ptr, n);
    a->data = grown;
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}


/*
 * GET (body NULL) or PUT body to the plane's config endpoint; the HTTP
 * status, or 0 with error filled on a transport failure.  *answer is
 * malloc'd (caller frees) or NULL.
 */
static long
http_call(const dataplane_t *dp, const char *body, char **answer, char *error,
    size_t error_size)
{
    CURL              *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    answer_t           a = { NULL, 0 };
    long               status = 0;
    CURLcode           rc;

    *answer = NULL;
    if (curl == NULL) {
        snprintf(error, error_size, "curl_easy_init failed");
        return 0;
    }
    headers = curl_slist_append(headers, pusher.auth_header);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, dp->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a);
    if (body != NULL) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
    }

    rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    } else {
        snprintf(error, error_size, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    *answer = a.data;
    return status;
}


/* the "version" member of a data plane's answer, -1 when absent */
static long long
answer_version(const char *answer)
{
    cJSON       *json = answer ? cJSON_Parse(answer) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, "version");
    long long    version = cJSON_IsNumber(v) ? (long long) v->valuedouble : -1;

    cJSON_Delete(json);
    return version;
}


/* records the outcome of one call; logs only when the state changes */
static void
record(dataplane_t *dp, long status, const char *answer, const char *error,
    const char *what)
{
    char cause[192] = "";
    bool ok = status == 200;

    if (status == 0) {
        snprintf(cause, sizeof(cause), "%s", error);
    } else if (!ok) {
        snprintf(cause, sizeof(cause), "HTTP %ld %.160s", status, answer ? answer : "");
    }

    pthread_mutex_lock(&pusher.lock);
    if (status != 0) {
        dp->last_seen = time(NULL);
    }
    if (ok) {
        dp->version = answer_version(answer);
        dp->last_error[0] = '\0';
        dp->last_cause[0] = '\0';
    } else {
        if (strcmp(dp->last_cause, cause) != 0) {
            log_warn("pusher dataplane=%s %s: %s", dp->base, what, cause);
        }
        snprintf(dp->last_cause, sizeof(dp->last_cause), "%s", cause);
        snprintf(dp->last_error, sizeof(dp->last_error), "%s: %s", what, cause);
    }
    if (ok && (!dp->reachable || !dp->contacted)) {
        log_info("pusher dataplane=%s reachable version=%lld", dp->base, dp->version);
    }
    dp->reachable = status != 0;
    dp->contacted = dp->contacted || ok;
    pthread_mutex_unlock(&pusher.lock);
}


static void
ask_version(dataplane_t *dp)
{
    char  error[CURL_ERROR_SIZE];
    char *answer;
    long  status = http_call(dp, NULL, &answer, error, sizeof(error));

    record(dp, status, answer, error, "GET /vmx/config");
    free(answer);
}


static void
push(dataplane_t *dp, const char *snapshot, long long version)
{
    char  error[CURL_ERROR_SIZE];
    char *answer;
    long  status = http_call(dp, snapshot, &answer, error, sizeof(error));

    record(dp, status, answer, error, "PUT /vmx/config");
    if (status == 200) {
        log_info("pusher dataplane=%s pushed version=%lld", dp->base, version);
    }
    free(answer);
}


static bool
is_stale(const dataplane_t *dp, long long version)
{
    bool stale;

    pthread_mutex_lock(&pusher.lock);
    stale = dp->version != version;
    pthread_mutex_unlock(&pusher.lock);
    return stale;
}


/* one round: optionally ask every plane its version, then push to stale ones */
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
        pthread_mutex_lock(&pusher.lock);
        pusher.desired = version;
        pthread_mutex_unlock(&pusher.lock);
    }
    for (size_t i = 0; version >= 0 && i < pusher.nplanes; i++) {
        dataplane_t *dp = &pusher.planes[i];

        if (reconcile) {
            ask_version(dp);
        }
        if (!is_stale(dp, version)) {
            continue;
        }
        /* built once per round, for the first plane that needs it */
        if (snapshot == NULL) {
            snapshot = snapshot_build(c, &version);
            if (snapshot == NULL) {
                log_error("pusher: cannot build the snapshot");
                break;
            }
            pthread_mutex_lock(&pusher.lock);
            pusher.desired = version;
            pthread_mutex_unlock(&pusher.lock);
        }
        push(dp, snapshot, version);
    }
    db_release(c);
    snapshot_free(snapshot);
}


static void *
pusher_main(void *arg)
{
    struct timespec next;
    bool            reconcile = true;

    clock_gettime(CLOCK_REALTIME, &next);
    pthread_mutex_lock(&pusher.lock);
    while (!pusher.stopping) {
        pthread_mutex_unlock(&pusher.lock);
        run_cycle(reconcile);
        pthread_mutex_lock(&pusher.lock);

        if (reconcile) {
            clock_gettime(CLOCK_REALTIME, &next);
            next.tv_sec += pusher.interval;
        }
        while (!pusher.changed && !pusher.stopping
               && pthread_cond_timedwait(&pusher.wake, &pusher.lock, &next) == 0)
        {
            /* woken without a change: wait on */
        }
        reconcile = !pusher.changed;
        pusher.changed = false;
    }
    pthread_mutex_unlock(&pusher.lock);
    return NULL;
}


int
pusher_start(const config_t *cfg)
{
    char *token = NULL;

    pusher.interval = cfg->reconcile_interval;
    pusher.planes = calloc(cfg->ndataplanes ? cfg->ndataplanes : 1, sizeof(dataplane_t));
    if (pusher.planes == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cfg->ndataplanes; i++) {
        dataplane_t *dp = &pusher.planes[i];

        dp->base = strdup(cfg->dataplanes[i]);
        dp->url = malloc(strlen(cfg->dataplanes[i]) + sizeof("/vmx/config"));
        sprintf(dp->url, "%s/vmx/config", cfg->dataplanes[i]);
        dp->version = -1;
        pusher.nplanes++;
    }
    if (pusher.nplanes == 0) {
        log_info("pusher: no data planes configured");
        return 0;
    }

    token = config_read_secret_file(cfg->dataplane_token_file, "VMX_DATAPLANE_TOKEN_FILE");
    if (token == NULL) {
        return -1;
    }
    pusher.auth_header = malloc(strlen(token) + sizeof("Authorization: Bearer "));
    sprintf(pusher.auth_header, "Authorization: Bearer %s", token);
    free(token);

    if (pthread_create(&pusher.thread, NULL, pusher_main, NULL) != 0) {
        log_error("pusher: cannot start the thread");
        return -1;
    }
    pusher.running = true;
    log_info("pusher: %zu data plane(s), reconcile every %d s", pusher.nplanes,
             pusher.interval);
    return 0;
}


void
pusher_stop(void)
{
    if (pusher.running) {
        pthread_mutex_lock(&pusher.lock);
        pusher.stopping = true;
        pthread_cond_signal(&pusher.wake);
        pthread_mutex_unlock(&pusher.lock);
        pthread_join(pusher.thread, NULL);
        pusher.running = false;
    }
    for (size_t i = 0; i < pusher.nplanes; i++) {
        free(pusher.planes[i].url);
        free(pusher.planes[i].base);
    }
    free(pusher.planes);
    free(pusher.auth_header);
    pusher.planes = NULL;
    pusher.auth_header = NULL;
    pusher.nplanes = 0;
}


void
pusher_notify(void)
{
    pthread_mutex_lock(&pusher.lock);
    pusher.changed = true;
    pthread_cond_signal(&pusher.wake);
    pthread_mutex_unlock(&pusher.lock);
}


static void
add_time(cJSON *obj, const char *name, time_t t)
{
    char      buf[32];
    struct tm tm;

    if (t == 0) {
        cJSON_AddNullToObject(obj, name);
        return;
    }
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
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
    cJSON_AddStringToObject(obj, "url", dp->base);
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
    return obj;
}


cJSON *
pusher_state_json(void)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *data = cJSON_AddArrayToObject(root, "data");

    pthread_mutex_lock(&pusher.lock);
    for (size_t i = 0; i < pusher.nplanes; i++) {
        cJSON_AddItemToArray(data, plane_json(&pusher.planes[i], pusher.desired));
    }
    cJSON_AddNumberToObject(root, "total", (double) pusher.nplanes);
    pthread_mutex_unlock(&pusher.lock);
    cJSON_AddNumberToObject(root, "pageIndex", 0);
    cJSON_AddNumberToObject(root, "pageSize", (double) cJSON_GetArraySize(data));
    return root;
}
