/*
 * discovery: see discovery.h.  The list of planes kept (disc.planes) is
 * written by the discovery thread and read by the pusher and the ingest,
 * under disc.worker.lock.
 */

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "discovery.h"
#include "leader.h"
#include "log.h"
#include "pusher.h"
#include "worker.h"

static struct {
    worker_t          worker;           /* its lock also guards planes */
    const config_t   *cfg;
    char              forget[16];       /* VMX_DATAPLANE_FORGET_SECONDS, as a parameter */
    char              max[16];          /* CONFIG_MAX_DATAPLANES, as a parameter */
    char              dns_cause[192];   /* the resolution failure last logged */
    discovery_url_t   planes[CONFIG_MAX_DATAPLANES];
    size_t            nplanes;
} disc = { .worker = WORKER_INIT };


/* the base URL of an address and a port; false when it does not fit */
static bool
address_url(const struct sockaddr *sa, const char *port, discovery_url_t url)
{
    char        host[INET6_ADDRSTRLEN];
    const void *addr = sa->sa_family == AF_INET6
                       ? (const void *) &((const struct sockaddr_in6 *) sa)->sin6_addr
                       : (const void *) &((const struct sockaddr_in *) sa)->sin_addr;
    int         n;

    if (inet_ntop(sa->sa_family, addr, host, sizeof(host)) == NULL) {
        return false;
    }
    n = snprintf(url, DISCOVERY_URL_MAX, sa->sa_family == AF_INET6 ? "http://[%s]:%s"
                                                                   : "http://%s:%s", host, port);
    return n > 0 && n < DISCOVERY_URL_MAX;
}


/* every address of VMX_DATAPLANES_DNS into urls (at most max, each once); their count */
static size_t
resolve_dns(discovery_url_t *urls, size_t max)
{
    struct addrinfo  hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *list, *ai;
    char             cause[sizeof(disc.dns_cause)] = "";
    size_t           n = 0;
    int              rc = getaddrinfo(disc.cfg->dns_host, disc.cfg->dns_port, &hints, &list);

    if (rc != 0) {
        snprintf(cause, sizeof(cause), "%s", gai_strerror(rc));
        list = NULL;
    }
    for (ai = list; ai != NULL && n < max; ai = ai->ai_next) {
        bool seen = false;

        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            || !address_url(ai->ai_addr, disc.cfg->dns_port, urls[n]))
        {
            continue;
        }
        for (size_t i = 0; i < n && !seen; i++) {
            seen = strcmp(urls[i], urls[n]) == 0;
        }
        n += !seen;
    }
    if (list != NULL) {
        freeaddrinfo(list);
    }
    if (strcmp(cause, disc.dns_cause) != 0) {
        if (cause[0] != '\0') {
            log_warn("discovery dns=%s: %s", disc.cfg->dataplanes_dns, cause);
        } else {
            log_info("discovery dns=%s: resolves again", disc.cfg->dataplanes_dns);
        }
        snprintf(disc.dns_cause, sizeof(disc.dns_cause), "%s", cause);
    }
    return n;
}


/* url was found (source: static, dns, announced): 0, 1 when the table is
 * full, -1 on a database error */
static int
see(db_conn_t *c, const char *url, const char *source)
{
    const char *params[3] = { url, source, disc.max };
    PGresult   *res;
    bool        known, added;

    res = db_exec(c, "UPDATE dataplanes SET seen_at = now(), source = $2 WHERE url = $1",
                  2, params);
    if (res == NULL) {
        return -1;
    }
    known = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    if (known) {
        return 0;
    }
    res = db_exec(c, "INSERT INTO dataplanes (url, source) SELECT $1, $2"
                     " WHERE (SELECT count(*) FROM dataplanes) < $3::int"
                     " ON CONFLICT (url) DO UPDATE SET seen_at = now()", 3, params);
    if (res == NULL) {
        return -1;
    }
    added = strcmp(PQcmdTuples(res), "0") != 0;
    PQclear(res);
    if (!added) {
        log_warn("discovery dataplane=%s source=%s: %d data planes kept already, left out",
                 url, source, CONFIG_MAX_DATAPLANES);
        return 1;
    }
    log_info("discovery dataplane=%s source=%s: found", url, source);
    return 0;
}


static void
forget(db_conn_t *c)
{
    const char *params[1] = { disc.forget };
    PGresult   *res = db_exec(c, "DELETE FROM dataplanes"
                                 " WHERE seen_at < now() - make_interval(secs => $1::int)"
                                 " RETURNING url, source", 1, params);

    for (int i = 0; res != NULL && i < PQntuples(res); i++) {
        log_info("discovery dataplane=%s source=%s: not found for %s s, forgotten",
                 PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), disc.forget);
    }
    PQclear(res);
}


/* the table's list becomes the one kept; a change wakes the pusher */
static void
take_list(db_conn_t *c)
{
    const char *params[1] = { disc.max };
    PGresult   *res = db_exec(c, "SELECT url FROM dataplanes ORDER BY url LIMIT $1::int", 1,
                              params);
    bool        changed;
    size_t      n;

    if (res == NULL) {
        return;
    }
    n = (size_t) PQntuples(res);
    pthread_mutex_lock(&disc.worker.lock);
    changed = n != disc.nplanes;
    for (size_t i = 0; i < n; i++) {
        const char *url = PQgetvalue(res, (int) i, 0);

        changed = changed || strcmp(url, disc.planes[i]) != 0;
        snprintf(disc.planes[i], DISCOVERY_URL_MAX, "%s", url);
    }
    disc.nplanes = n;
    pthread_mutex_unlock(&disc.worker.lock);
    PQclear(res);
    if (changed) {
        log_info("discovery: %zu data plane(s) kept", n);
        pusher_notify();
    }
}


static long
discovery_round(void)
{
    discovery_url_t  found[CONFIG_MAX_DATAPLANES];
    size_t           nfound = 0;
    db_conn_t       *c;

    if (disc.cfg->dns_host[0] != '\0') {
        nfound = resolve_dns(found, CONFIG_MAX_DATAPLANES);
    }
    c = db_acquire();
    if (c == NULL) {
        return DISCOVERY_INTERVAL_MS;
    }
    for (size_t i = 0; i < disc.cfg->ndataplanes; i++) {
        see(c, disc.cfg->dataplanes[i], "static");
    }
    for (size_t i = 0; i < nfound; i++) {
        see(c, found[i], "dns");
    }
    forget(c);
    take_list(c);
    db_release(c);
    return DISCOVERY_INTERVAL_MS;
}


int
discovery_start(const config_t *cfg)
{
    disc.cfg = cfg;
    snprintf(disc.forget, sizeof(disc.forget), "%d", cfg->dataplane_forget_seconds);
    snprintf(disc.max, sizeof(disc.max), "%d", CONFIG_MAX_DATAPLANES);
    leader_follow(&disc.worker);
    if (worker_start(&disc.worker, "discovery", discovery_round) != 0) {
        return -1;
    }
    log_info("discovery: %zu listed data plane(s), dns=%s, forgotten after %d s",
             cfg->ndataplanes, cfg->dataplanes_dns ? cfg->dataplanes_dns : "none",
             cfg->dataplane_forget_seconds);
    return 0;
}


void
discovery_stop(void)
{
    worker_stop(&disc.worker);
}


static bool
listed(const char *url, discovery_url_t *urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(urls[i], url) == 0) {
            return true;
        }
    }
    return false;
}


size_t
discovery_follow(void **planes, size_t *nplanes, discovery_open_pt open,
    discovery_close_pt close)
{
    discovery_url_t  urls[CONFIG_MAX_DATAPLANES];
    discovery_url_t  held[CONFIG_MAX_DATAPLANES];
    size_t           n, nheld = 0, opened = 0;
    void            *plane;

    pthread_mutex_lock(&disc.worker.lock);
    n = disc.nplanes;
    memcpy(urls, disc.planes, n * sizeof(discovery_url_t));
    pthread_mutex_unlock(&disc.worker.lock);

    for (size_t i = 0; i < *nplanes; ) {
        if (listed(planes[i], urls, n)) {
            snprintf(held[nheld++], DISCOVERY_URL_MAX, "%s", (const char *) planes[i]);
            i++;
            continue;
        }
        close(planes[i]);
        planes[i] = planes[--*nplanes];
    }
    for (size_t i = 0; i < n && *nplanes < CONFIG_MAX_DATAPLANES; i++) {
        if (!listed(urls[i], held, nheld) && (plane = open(urls[i])) != NULL) {
            planes[(*nplanes)++] = plane;
            opened++;
        }
    }
    return opened;
}


int
discovery_announce(db_conn_t *c, const char *url)
{
    return see(c, url, "announced");
}


void
discovery_store_state(db_conn_t *c, const char *url, const char *state)
{
    const char *params[2] = { url, state };

    db_run(c, "UPDATE dataplanes SET state = $2 WHERE url = $1", 2, params);
}


cJSON *
discovery_list_json(db_conn_t *c)
{
    cJSON *data = db_json(c,
        "SELECT coalesce(jsonb_agg(coalesce(state, jsonb_build_object("
        "  'url', url, 'version', null, 'desiredVersion', null, 'status', 'unknown',"
        "  'snapshotFormat', null, 'lastSeenAt', null, 'lastError', null, 'problems', '[]'::jsonb,"
        "  'problemsTotal', 0))"
        " || jsonb_build_object('source', source, 'foundAt', vmx_rfc3339(seen_at))"
        " ORDER BY url), '[]')::text FROM dataplanes", 0, NULL);
    cJSON *root;

    if (data == NULL) {
        return NULL;
    }
    root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "data", data);
    cJSON_AddNumberToObject(root, "total", cJSON_GetArraySize(data));
    cJSON_AddNumberToObject(root, "pageIndex", 0);
    cJSON_AddNumberToObject(root, "pageSize", cJSON_GetArraySize(data));
    return root;
}


cJSON *
discovery_object_problems(db_conn_t *c, const char *kind, const char *id)
{
    const char *params[2] = { kind, id };
    cJSON      *list = db_json(c,
        "SELECT coalesce(jsonb_agg((p - 'kind' - 'id') || jsonb_build_object('dataplane', d.url)"
        " ORDER BY d.url), '[]')::text"
        " FROM dataplanes d, jsonb_array_elements(d.state->'problems') p"
        " WHERE p->>'kind' = $1 AND p->>'id' = $2", 2, params);

    return list != NULL ? list : cJSON_CreateArray();
}
