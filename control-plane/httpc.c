/*
 * httpc: libcurl answer collection and common options.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "httpc.h"

typedef struct {
    char    *data;                  /* owned until handed to the caller */
    size_t   len;
    size_t   max;
} answer_t;


static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    answer_t *a = userdata;
    size_t    n = size * nmemb;
    char     *grown;

    if (a->len + n > a->max) {
        return 0;
    }
    /* malloc + copy + wipe rather than realloc: no unwiped copy is freed */
    grown = malloc(a->len + n + 1);
    if (grown == NULL) {
        return 0;
    }
    if (a->data != NULL) {
        memcpy(grown, a->data, a->len);
        sodium_memzero(a->data, a->len);
        free(a->data);
    }
    memcpy(grown + a->len, ptr, n);
    a->data = grown;
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}


long
httpc_perform(CURL *curl, size_t max, char **answer, char *error, size_t error_size)
{
    answer_t  a = { NULL, 0, max };
    long      status = 0;
    CURLcode  rc;

    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, HTTPC_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, HTTPC_TOTAL_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a);

    rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    } else if (rc == CURLE_WRITE_ERROR) {
        snprintf(error, error_size, "answer larger than %zu bytes", max);
    } else {
        snprintf(error, error_size, "%s", curl_easy_strerror(rc));
    }
    *answer = a.data;
    return status;
}


void
httpc_cleanup(CURL *curl, struct curl_slist *headers)
{
    for (struct curl_slist *h = headers; h != NULL; h = h->next) {
        sodium_memzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(headers);
    if (curl != NULL) {
        curl_easy_cleanup(curl);
    }
}
