/*
 * api_metrics: GET /metrics, the Prometheus exposition of metrics.c.  Open
 * by default; with VMX_METRICS_TOKEN_FILE it wants that file's token as a
 * bearer token.
 */

#include <stdlib.h>

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
    config_free_secret(metrics_token);
    metrics_token = NULL;
}


void
api_metrics(http_req_t *req)
{
    char *text;

    if (metrics_token != NULL && !http_bearer_is(req, metrics_token)) {
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
