/*
 * api_dataplanes: GET /api/v1/dataplanes, the data planes kept and what
 * the leader's pusher knows of each, with the leader (the same answer from
 * every replica); POST /api/v1/dataplanes/announce, a data plane's
 * {"url": "<its base URL>"} with the data planes' token
 * (VMX_DATAPLANE_TOKEN_FILE), to be kept while it announces itself again
 * within VMX_DATAPLANE_FORGET_SECONDS.
 */

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "discovery.h"
#include "leader.h"

static char *dataplane_token;        /* owned, NULL: no announcements */


int
api_dataplanes_init(const char *token_file)
{
    if (token_file == NULL) {
        return 0;
    }
    dataplane_token = config_read_secret_file(token_file, "VMX_DATAPLANE_TOKEN_FILE");
    return dataplane_token != NULL ? 0 : -1;
}


void
api_dataplanes_shutdown(void)
{
    config_free_secret(dataplane_token);
    dataplane_token = NULL;
}


void
api_dataplanes_list(http_req_t *req)
{
    cJSON *body = discovery_list_json(req->db);

    if (body == NULL) {
        http_error(req, 503, "unavailable", NULL, "the data planes could not be read");
        return;
    }
    cJSON_AddItemToObject(body, "leader", leader_json(req->db));
    http_reply(req, 200, body);
}


/* an http(s) base URL of printable ASCII without a path's end slash, as the
 * data planes' URLs are kept */
static bool
base_url_ok(const char *url)
{
    size_t len = strlen(url);

    if (len >= DISCOVERY_URL_MAX || len < 8 || url[len - 1] == '/'
        || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
    {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (url[i] <= ' ' || url[i] > '~') {
            return false;
        }
    }
    return true;
}


void
api_dataplanes_announce(http_req_t *req)
{
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req->json, "url"));
    int         rc;

    if (dataplane_token == NULL || !http_bearer_is(req, dataplane_token)) {
        http_error(req, 401, "unauthorized", NULL, "the data planes' token is required");
        return;
    }
    if (url == NULL || !base_url_ok(url)) {
        http_invalid(req, "url", "url must be the data plane's http(s) base URL, without a"
                     " trailing slash, of at most %d bytes", DISCOVERY_URL_MAX - 1);
        return;
    }
    if (req->db == NULL) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
        return;
    }
    rc = discovery_announce(req->db, url);
    if (rc < 0) {
        http_error(req, 503, "unavailable", NULL, "the announcement could not be stored");
    } else if (rc > 0) {
        http_error(req, 409, "conflict", NULL, "%d data planes are kept already",
                   CONFIG_MAX_DATAPLANES);
    } else {
        http_reply(req, 204, NULL);
    }
}
