/*
 * api_providers: GET /api/v1/providers, the provider catalog.
 */

#include "api.h"
#include "providers.h"


void
api_providers_list(http_req_t *req)
{
    http_reply(req, 200, providers_catalog_json());
}
