/*
 * api_dataplanes: GET /api/v1/dataplanes, what the pusher knows of each
 * data plane.
 */

#include "api.h"
#include "pusher.h"


void
api_dataplanes_list(http_req_t *req)
{
    http_reply(req, 200, pusher_state_json());
}
