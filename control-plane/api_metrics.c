/*
 * api_metrics: GET /metrics, the Prometheus exposition of metrics.c.  Open
 * by default; with VMX_METRICS_TOKEN_FILE it wants that file's token as a
 * bearer token.
 */

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "config.h"
#include "metrics.h"

static char *metrics_token;        /* owned, NULL: open */


int
api_metrics_init(const char *token_file)
{
    if (token_file == NULL) {
        return 0;
    }
    metrics_token = config_read_secret_file(token_file, "VMX_METRICS_TOKEN_FILE");
    return metrics_token != NULL ? 0 : -1;
}


void
api_metrics_shutdown(void)
{
    if (metrics_token != NULL) {
        sodium_memzero(metrics_token, strlen(metrics_token));
        free(metrics_token);
        metrics_token = NULL;
    }
}


static bool
authorized(const http_req_t *req)
{
    const char *auth = http_header(req, "Authorization");
    size_t      len;

    if (metrics_token == NULL) {
        return true;
    }
    len = strlen(metrics_token);
    return auth != NULL && strncmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == len
           && sodium_memcmp(auth + 7, metrics_token, len) == 0;
}


void
api_metrics(http_req_t *req)
{
    char *text;

    if (!authorized(req)) {
        http_error(req, 401, "unauthorized", NULL, "a valid bearer token is required");
        return;
    }
    text = metrics_render();
    if (text == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return;
    }
    free(req->response);
    req->response = text;
    req->content_type = "text/plain; version=0.0.4; charset=utf-8";
    req->status = 200;
}
