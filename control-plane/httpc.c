/*
 * httpc: libcurl answer collection and common options.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "httpc.h"


static size_t
collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    httpc_answer_t *a = userdata;
    size_t          n = size * nmemb;
    size_t          want;
    char           *grown;

    if (a->len + n > a->max) {
        return 0;
    }
    if (a->len + n + 1 > a->size) {
        /* doubled, up to the bound; malloc + copy + wipe rather than
         * realloc: a wiped answer leaves no copy behind */
        want = a->size * 2 > a->len + n + 1 ? a->size * 2 : a->len + n + 1;
        want = want < a->max + 1 ? want : a->max + 1;
        grown = malloc(want);
        if (grown == NULL) {
            return 0;
        }
        if (a->data != NULL) {
            memcpy(grown, a->data, a->len);
            if (a->wipe) {
                sodium_memzero(a->data, a->len);
            }
            free(a->data);
        }
        a->data = grown;
        a->size = want;
    }
    memcpy(a->data + a->len, ptr, n);
    a->len += n;
    a->data[a->len] = '\0';
    return n;
}


void
httpc_prepare(CURL *curl, httpc_answer_t *a, long timeout_ms, char *detail)
{
    a->len = 0;
    if (a->data != NULL) {
        a->data[0] = '\0';
    }
    detail[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, HTTPC_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
}


long
httpc_perform_into(CURL *curl, httpc_answer_t *a, long timeout_ms, char *error,
    size_t error_size)
{
    char      detail[CURL_ERROR_SIZE];
    long      status = 0;
    CURLcode  rc;

    httpc_prepare(curl, a, timeout_ms, detail);
    rc = curl_easy_perform(curl);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    } else if (rc == CURLE_WRITE_ERROR) {
        snprintf(error, error_size, "answer larger than %zu bytes", a->max);
    } else {
        snprintf(error, error_size, "%s", detail[0] ? detail : curl_easy_strerror(rc));
    }
    return status;
}


long
httpc_perform(CURL *curl, size_t max, char **answer, char *error, size_t error_size)
{
    httpc_answer_t  a = { NULL, 0, 0, max, true };
    long            status;

    status = httpc_perform_into(curl, &a, HTTPC_TOTAL_TIMEOUT_MS, error, error_size);
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
