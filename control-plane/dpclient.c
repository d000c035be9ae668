/*
 * dpclient: see dpclient.h.  The header list is built once and only read
 * afterwards, so the pusher's and the ingest's connections share it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpclient.h"
#include "log.h"

static struct curl_slist  *headers;     /* owned: the bearer token, the content type */


int
dpclient_init(const config_t *cfg)
{
    char              *bearer;
    struct curl_slist *list;

    if (cfg->dataplane_token_file == NULL) {
        return 0;             /* no plane is listed, found, or can announce itself */
    }
    bearer = config_bearer_header(cfg->dataplane_token_file);
    if (bearer == NULL) {
        return -1;
    }
    list = curl_slist_append(NULL, bearer);
    config_free_secret(bearer);
    if (list != NULL) {
        headers = curl_slist_append(list, "Content-Type: application/json");
    }
    if (list == NULL || headers == NULL) {
        httpc_cleanup(NULL, list);
        log_error("dpclient: out of memory");
        return -1;
    }
    return 0;
}


void
dpclient_cleanup(void)
{
    httpc_cleanup(NULL, headers);
    headers = NULL;
}


void
dpclient_open(dpclient_t *dc, const char *base, long timeout_ms)
{
    memset(dc, 0, sizeof(*dc));
    dc->base = base;
    dc->timeout_ms = timeout_ms;
}


void
dpclient_close(dpclient_t *dc)
{
    httpc_cleanup(dc->curl, NULL);
    dc->curl = NULL;
    free(dc->answer.data);
    dc->answer.data = NULL;
    dc->answer.size = dc->answer.len = 0;
}


long
dpclient_call(dpclient_t *dc, const char *method, const char *path, const char *body,
    const char *range, size_t max)
{
    char *url;
    long  status;

    dc->error[0] = '\0';
    if (dc->curl == NULL && (dc->curl = curl_easy_init()) == NULL) {
        snprintf(dc->error, sizeof(dc->error), "curl_easy_init failed");
        return 0;
    }
    /* path is the caller's, bounded (an ingest cursor of FILES_MAX files) */
    if (asprintf(&url, "%s%s", dc->base, path) < 0) {
        snprintf(dc->error, sizeof(dc->error), "out of memory");
        return 0;
    }
    /* the options of the last call go, the connection stays */
    curl_easy_reset(dc->curl);
    curl_easy_setopt(dc->curl, CURLOPT_URL, url);
    curl_easy_setopt(dc->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(dc->curl, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(dc->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(dc->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
    }
    if (range != NULL) {
        curl_easy_setopt(dc->curl, CURLOPT_RANGE, range);
    }
    dc->answer.max = max;
    status = httpc_perform_into(dc->curl, &dc->answer, dc->timeout_ms, dc->error,
                                sizeof(dc->error));
    free(url);
    return status;
}
