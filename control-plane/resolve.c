/*
 * resolve: getaddrinfo() behind a small cache keyed by "host:port".  An
 * answer is {"addresses": [...]} with "resolveError" when the name did not
 * resolve: the data plane then marks that connection alone unavailable.
 */

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"
#include "resolve.h"

typedef struct entry_s {
    struct entry_s  *next;
    char            *key;           /* owned: "host:port" */
    cJSON           *answer;        /* owned */
    time_t           resolved_at;
} entry_t;

static struct {
    pthread_mutex_t  lock;
    entry_t         *entries;       /* owned list */
} cache = { PTHREAD_MUTEX_INITIALIZER, NULL };


static void
add_address(cJSON *list, const struct sockaddr *sa, const char *port)
{
    char         ip[INET6_ADDRSTRLEN];
    char         entry[INET6_ADDRSTRLEN + 16];
    const cJSON *item;

    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, ip, sizeof(ip));
        snprintf(entry, sizeof(entry), "%s:%s", ip, port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, ip, sizeof(ip));
        snprintf(entry, sizeof(entry), "[%s]:%s", ip, port);
    }
    cJSON_ArrayForEach(item, list) {
        if (strcmp(item->valuestring, entry) == 0) {
            return;
        }
    }
    cJSON_AddItemToArray(list, cJSON_CreateString(entry));
}


static cJSON *
lookup(const char *host, const char *port, const char *connection_id)
{
    cJSON           *answer = cJSON_CreateObject();
    cJSON           *list = cJSON_AddArrayToObject(answer, "addresses");
    struct addrinfo  hints, *ai = NULL;
    int              rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        log_warn("resolve connection=%s host=%s: cannot resolve: %s", connection_id, host,
                 gai_strerror(rc));
        cJSON_AddStringToObject(answer, "resolveError", gai_strerror(rc));
        return answer;
    }
    for (const struct addrinfo *p = ai; p != NULL; p = p->ai_next) {
        add_address(list, p->ai_addr, port);
    }
    freeaddrinfo(ai);
    return answer;
}


/* the cached answer for key (a copy), NULL when none is fresh */
static cJSON *
cached(const char *key, time_t now)
{
    cJSON *copy = NULL;

    pthread_mutex_lock(&cache.lock);
    for (entry_t *e = cache.entries; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0 && now - e->resolved_at < RESOLVE_TTL) {
            copy = cJSON_Duplicate(e->answer, true);
            break;
        }
    }
    pthread_mutex_unlock(&cache.lock);
    return copy;
}


static void
store(const char *key, const cJSON *answer, time_t now)
{
    entry_t *e;

    pthread_mutex_lock(&cache.lock);
    for (e = cache.entries; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            break;
        }
    }
    if (e == NULL && (e = calloc(1, sizeof(*e))) != NULL) {
        e->key = strdup(key);
        e->next = cache.entries;
        cache.entries = e;
    }
    if (e != NULL) {
        cJSON_Delete(e->answer);
        e->answer = cJSON_Duplicate(answer, true);
        e->resolved_at = now;
    }
    pthread_mutex_unlock(&cache.lock);
}


void
resolve_add_addresses(cJSON *conn, const char *base_url, const char *connection_id)
{
    cJSON         *answer = NULL, *item;
    CURLU         *u = curl_url();
    char          *host = NULL, *port = NULL, *key = NULL;
    unsigned char  buf[sizeof(struct in6_addr)];
    time_t         now = time(NULL);

    if (u == NULL || curl_url_set(u, CURLUPART_URL, base_url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
    {
        log_warn("resolve connection=%s: unparsable baseUrl", connection_id);
        goto done;
    }
    if (inet_pton(AF_INET, host, buf) == 1 || host[0] == '[') {
        goto done;
    }
    if (asprintf(&key, "%s:%s", host, port) < 0) {
        key = NULL;
        goto done;
    }
    answer = cached(key, now);
    if (answer == NULL) {
        answer = lookup(host, port, connection_id);
        store(key, answer, now);
    }

done:
    item = answer != NULL ? cJSON_DetachItemFromObject(answer, "addresses") : NULL;
    cJSON_AddItemToObject(conn, "addresses", item != NULL ? item : cJSON_CreateArray());
    item = answer != NULL ? cJSON_DetachItemFromObject(answer, "resolveError") : NULL;
    if (item != NULL) {
        cJSON_AddItemToObject(conn, "resolveError", item);
    }
    cJSON_Delete(answer);
    free(key);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}


void
resolve_shutdown(void)
{
    pthread_mutex_lock(&cache.lock);
    while (cache.entries != NULL) {
        entry_t *e = cache.entries;

        cache.entries = e->next;
        cJSON_Delete(e->answer);
        free(e->key);
        free(e);
    }
    pthread_mutex_unlock(&cache.lock);
}
