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
#include "vmx_rfc3339.h"

#define FILTER_TEXT_MAX  512
#define MAX_FILTERS      12
#define SQL_MAX          4096      /* the text below and twice the filter */

typedef struct {
    char         where[1024];
    const char  *params[MAX_FILTERS + 4];
    int          n;
} filter_t;

/* a query argument: its column and how it is checked */
typedef enum { ARG_TIME_FROM, ARG_TIME_TO, ARG_UUID, ARG_STATUS, ARG_TEXT, ARG_BOOL } arg_kind_e;

static const struct {
    const char  *name;
    const char  *condition;       /* with %d for the parameter number */
    arg_kind_e   kind;
} args[] = {
    { "startDate",     "timestamp >= $%d::timestamptz",  ARG_TIME_FROM },
    { "endDate",       "timestamp <= $%d::timestamptz",  ARG_TIME_TO },
    { "resourceId",    "resource_id = $%d::uuid",         ARG_UUID },
    { "connectionId",  "$%d::uuid = ANY(connection_ids)", ARG_UUID },
    { "apiKeyId",      "api_key_id = $%d::uuid",          ARG_UUID },
    { "statusCode",    "status_code = $%d::int",          ARG_STATUS },
    { "model",         "model = $%d",                     ARG_TEXT },
    { "correlationId", "correlation_id = $%d",            ARG_TEXT },
    { "authenticated", "authenticated = $%d::boolean",    ARG_BOOL },
    /* across workspaces only (the path names them otherwise) */
    { "workspaceId",   "workspace_id = $%d::uuid",        ARG_UUID },
    { "environmentId", "environment_id = $%d::uuid",      ARG_UUID },
};

#define SCOPED_ARGS  (sizeof(args) / sizeof(args[0]) - 2)


static bool
arg_valid(http_req_t *req, const char *name, arg_kind_e kind, const char *v,
    char time[VMX_RFC3339_US_SIZE])
{
    time_t  t;
    char   *end;
    long    n;

    switch (kind) {
    case ARG_TIME_FROM:
    case ARG_TIME_TO:
        if (!vmx_rfc3339_normalize(v, &t, time)) {
            http_invalid(req, name, "%s must be an RFC 3339 time", name);
            return false;
        }
        return true;
    case ARG_UUID:
        if (!crypto_is_uuid(v)) {
            http_invalid(req, name, "%s must be a UUID", name);
            return false;
        }
        return true;
    case ARG_STATUS:
        n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 100 || n > 599) {
            http_invalid(req, name, "%s must be an HTTP status code (100 to 599)", name);
            return false;
        }
        return true;
    case ARG_BOOL:
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            http_invalid(req, name, "%s must be true or false", name);
            return false;
        }
        return true;
    case ARG_TEXT:
        if (v[0] == '\0' || strlen(v) > FILTER_TEXT_MAX) {
            http_invalid(req, name, "%s must have 1 to %d characters", name, FILTER_TEXT_MAX);
            return false;
        }
        return true;
    }
    return false;
}


/*
 * the WHERE clause of the path's environment ($1 workspace, $2
 * environment) or, across workspaces, of none, and the query's filters
 * with their parameters; false after answering 400
 */
static bool
build_filter(http_req_t *req, filter_t *f, char times[2][VMX_RFC3339_US_SIZE], bool scoped)
{
    size_t len;
    size_t nargs = scoped ? SCOPED_ARGS : sizeof(args) / sizeof(args[0]);

    f->n = 0;
    if (scoped) {
        f->params[0] = http_param(req, "ws");
        f->params[1] = http_param(req, "env");
        f->n = 2;
    }
    len = (size_t) snprintf(f->where, sizeof(f->where), "%s",
                            scoped ? "workspace_id = $1 AND environment_id = $2" : "true");
    for (size_t i = 0; i < nargs; i++) {
        const char *v = http_query(req, args[i].name);
        char       *time = args[i].kind == ARG_TIME_TO ? times[1] : times[0];

        if (v == NULL) {
            continue;
        }
        if (!arg_valid(req, args[i].name, args[i].kind, v, time)) {
            return false;
        }
        f->params[f->n++] = args[i].kind == ARG_TIME_FROM || args[i].kind == ARG_TIME_TO
                            ? time : v;
        len += (size_t) snprintf(f->where + len, sizeof(f->where) - len, " AND ");
        len += (size_t) snprintf(f->where + len, sizeof(f->where) - len, args[i].condition,
                                 f->n);
    }
    return true;
}


static void
audit_list(http_req_t *req, bool scoped)
{
    filter_t    f;
    char        times[2][VMX_RFC3339_US_SIZE];
    char        sql[SQL_MAX];
    char        limit[24], offset[24], index[24], size[24];
    long        page_index, page_size;
    PGresult   *res;

    if ((scoped && !api_environment_exists(req)) || !http_page(req, &page_index, &page_size)
        || !build_filter(req, &f, times, scoped))
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
