/*
 * api_audit: GET .../audit (filtered, newest first, without payloads) and
 * GET .../audit/{id} (the whole record) of an environment; the same across
 * workspaces under /api/v1/audit, and the ingestion's dead letters.  The
 * JSON of a record is built by vmx_audit_json() / vmx_audit_full_json() in
 * the schema.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "filter.h"

#define SQL_MAX          4096      /* the text below and twice the filter */

static const filter_arg_t args[] = {
    { "startDate",     "timestamp >= $%d::timestamptz",  ARG_TIME_FROM },
    { "endDate",       "timestamp <= $%d::timestamptz",  ARG_TIME_TO },
    { "resourceId",    "resource_id = $%d::uuid",         ARG_UUID },
    { "connectionId",  "$%d::uuid = ANY(connection_ids)", ARG_UUID },
    { "apiKeyId",      "api_key_id = $%d::uuid",          ARG_UUID },
    { "statusCode",    "status_code = $%d::int",          ARG_STATUS },
    { "model",         "model = $%d",                     ARG_TEXT },
    { "correlationId", "correlation_id = $%d",            ARG_TEXT },
    { "authenticated", "authenticated = $%d::boolean",    ARG_BOOL },
    { "batchId",       "batch_id = $%d::uuid",            ARG_UUID },
    /* across workspaces only (the path names them otherwise) */
    { "workspaceId",   "workspace_id = $%d::uuid",        ARG_UUID },
    { "environmentId", "environment_id = $%d::uuid",      ARG_UUID },
};

#define SCOPED_ARGS  (sizeof(args) / sizeof(args[0]) - 2)


/* the path's environment ($1 workspace, $2 environment) or, across
 * workspaces, none, and the query's filters; false after answering 400 */
static bool
build_filter(http_req_t *req, filter_t *f, bool scoped)
{
    const char *path[2] = { http_param(req, "ws"), http_param(req, "env") };

    if (scoped) {
        filter_init(f, "workspace_id = $1 AND environment_id = $2", 2, path);
    } else {
        filter_init(f, "true", 0, NULL);
    }
    return filter_add(req, f, args, scoped ? SCOPED_ARGS : sizeof(args) / sizeof(args[0]));
}


static void
audit_list(http_req_t *req, bool scoped)
{
    filter_t    f;
    char        sql[SQL_MAX];
    char        limit[24], offset[24], index[24], size[24];
    long        page_index, page_size;
    PGresult   *res;

    if (!http_page(req, &page_index, &page_size)
        || !build_filter(req, &f, scoped))
    {
        return;
    }
    snprintf(limit, sizeof(limit), "%ld", page_size);
    snprintf(offset, sizeof(offset), "%ld", page_index * page_size);
    snprintf(index, sizeof(index), "%ld", page_index);
    snprintf(size, sizeof(size), "%ld", page_size);
    f.params[f.n] = limit;
    f.params[f.n + 1] = offset;
    f.params[f.n + 2] = index;
    f.params[f.n + 3] = size;

    /* the SQL is ours (constant fragments); values stay parameters; json,
     * not jsonb: a record's text is given back as it was stored */
    snprintf(sql, sizeof(sql),
        "SELECT json_build_object("
        " 'data', coalesce((SELECT json_agg(p.doc ORDER BY p.timestamp DESC, p.id DESC) FROM"
        "   (SELECT vmx_audit_json(a) AS doc, a.timestamp, a.id FROM audit_records a"
        "     WHERE %s ORDER BY a.timestamp DESC, a.id DESC LIMIT $%d OFFSET $%d) p),"
        "   '[]'::json),"
        " 'total', (SELECT count(*) FROM audit_records WHERE %s),"
        " 'pageIndex', $%d::bigint, 'pageSize', $%d::bigint)::text",
        f.where, f.n + 1, f.n + 2, f.where, f.n + 3, f.n + 4);

    res = db_exec(req->db, sql, f.n + 4, f.params);
    if (res == NULL) {
        http_db_error(req, "audit record");
        return;
    }
    http_reply_text(req, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}


void
api_audit_list(http_req_t *req)
{
    audit_list(req, true);
}


void
api_audit_list_all(http_req_t *req)
{
    audit_list(req, false);
}


void
api_audit_get(http_req_t *req)
{
    const char *params[3] = { http_param(req, "ws"), http_param(req, "env"),
                              http_param(req, "id") };

    doc_reply(req, 200, "SELECT vmx_audit_full_json(a)::text FROM audit_records a"
                        " WHERE workspace_id = $1 AND environment_id = $2 AND id = $3",
              3, params, "audit record");
}


void
api_audit_get_any(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    doc_reply(req, 200, "SELECT vmx_audit_full_json(a)::text FROM audit_records a"
                        " WHERE id = $1", 1, params, "audit record");
}


/* GET /api/v1/audit/dead-letters: newest first, the raw bytes as base64 */
void
api_audit_dead_letters(http_req_t *req)
{
    doc_reply_list(req, "SELECT json_build_object('id', d.id::text,"
                        " 'createdAt', vmx_rfc3339(d.created_at), 'dataplane', d.dataplane,"
                        " 'position', d.position, 'reason', d.reason, 'length', d.length,"
                        " 'raw', encode(d.raw, 'base64'))::jsonb AS doc, d.created_at,"
                        " d.id::text AS id FROM audit_dead_letters d", 0, NULL);
}
