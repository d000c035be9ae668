/*
 * api_health: liveness, database reachability and whether this replica
 * leads (leader.h), without authentication.
 */

#include "api.h"
#include "leader.h"


void
api_health(http_req_t *req)
{
    cJSON *body = cJSON_CreateObject();
    bool   db_ok = req->db != NULL && db_run(req->db, "SELECT 1", 0, NULL) == 0;

    cJSON_AddStringToObject(body, "status", db_ok ? "ok" : "degraded");
    cJSON_AddStringToObject(body, "database", db_ok ? "ok" : "unreachable");
    cJSON_AddBoolToObject(body, "leader", leader_holds());
    http_reply(req, db_ok ? 200 : 503, body);
}
