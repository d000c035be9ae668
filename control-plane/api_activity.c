/*
 * api_activity: GET /api/v1/activity and /api/v1/workspaces/{ws}/activity,
 * who changed what (activity.c writes the records), newest first, filtered
 * by userId, action, objectId, from, to and outcome.  The records of a
 * deleted workspace stay listed across workspaces.
 */

#include <string.h>

#include "api.h"
#include "filter.h"

static const filter_arg_t args[] = {
    { "userId",   "user_id = $%d::uuid",    ARG_UUID },
    { "action",   "action = $%d",           ARG_TEXT },
    { "objectId", "object_id = $%d",        ARG_TEXT },
    { "from",     "at >= $%d::timestamptz", ARG_TIME_FROM },
    { "to",       "at <= $%d::timestamptz", ARG_TIME_TO },
    { "outcome",  "outcome = $%d",          ARG_TEXT },
};

#define SQL_MAX  2048


static void
activity_list(http_req_t *req, const char *scope, int nparams, const char *const *params)
{
    filter_t    f;
    char        sql[SQL_MAX];
    const char *outcome = http_query(req, "outcome");

    if (outcome != NULL && strcmp(outcome, "success") != 0 && strcmp(outcome, "failure") != 0) {
        http_invalid(req, "outcome", "outcome must be success or failure");
        return;
    }
    filter_init(&f, scope, nparams, params);
    if (!filter_add(req, &f, args, sizeof(args) / sizeof(args[0]))) {
        return;
    }
    snprintf(sql, sizeof(sql), "SELECT doc, at AS created_at, id FROM activity_docs WHERE %s",
             f.where);
    doc_reply_list_newest(req, sql, f.n, f.params);
}


void
api_activity_list(http_req_t *req)
{
    activity_list(req, "true", 0, NULL);
}


void
api_activity_list_workspace(http_req_t *req)
{
    const char *params[1] = { http_param(req, "ws") };

    activity_list(req, "workspace_id = $1", 1, params);
}
