/*
 * docs: the read side shared by every resource.  The *_docs views of the
 * schema build each object's JSON, so a handler only names the view and
 * its filter.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"

#define SQL_MAX     8192   /* a list of batches' documents is near 3 KB */
#define MAX_PARAMS  16     /* the caller's and four for the paging */


cJSON *
doc_fetch(http_req_t *req, const char *sql, int nparams, const char *const *params,
    const char *what)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);
    cJSON    *doc;

    if (res == NULL) {
        http_db_error(req, what);
        return NULL;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        http_not_found(req, what);
        return NULL;
    }
    doc = cJSON_Parse(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (doc == NULL) {
        http_error(req, 500, "internal_error", NULL, "unreadable %s", what);
    }
    return doc;
}


void
doc_reply(http_req_t *req, int status, const char *sql, int nparams,
    const char *const *params, const char *what)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);

    if (res == NULL) {
        http_db_error(req, what);
        return;
    }
    if (PQntuples(res) == 0) {
        http_not_found(req, what);
    } else {
        http_reply_text(req, status, PQgetvalue(res, 0, 0));
    }
    PQclear(res);
}


/* order: "" (oldest first) or " DESC" */
static void
reply_list(http_req_t *req, const char *sql, int nparams, const char *const *params,
    const char *order)
{
    char        query[SQL_MAX];
    char        limit[24], offset[24], index[24], size[24];
    const char *all[MAX_PARAMS];
    long        page_index, page_size;
    int         len;
    PGresult   *res;

    if (nparams + 4 > MAX_PARAMS) {
        http_error(req, 500, "internal_error", NULL, "too many list parameters");
        return;
    }
    if (!http_page(req, &page_index, &page_size)) {
        return;
    }
    snprintf(limit, sizeof(limit), "%ld", page_size);
    snprintf(offset, sizeof(offset), "%ld", page_index * page_size);
    snprintf(index, sizeof(index), "%ld", page_index);
    snprintf(size, sizeof(size), "%ld", page_size);

    if (nparams > 0) {
        memcpy(all, params, (size_t) nparams * sizeof(char *));     /* params may be NULL */
    }
    all[nparams] = limit;
    all[nparams + 1] = offset;
    all[nparams + 2] = index;
    all[nparams + 3] = size;

    /* the SQL is ours (constant fragments); values stay parameters */
    len = snprintf(query, sizeof(query),
        "SELECT jsonb_build_object("
        " 'data', coalesce((SELECT jsonb_agg(p.doc ORDER BY p.created_at%s, p.id%s) FROM"
        "   (SELECT q.doc, q.created_at, q.id FROM (%s) q"
        "     ORDER BY q.created_at%s, q.id%s LIMIT $%d OFFSET $%d) p), '[]'::jsonb),"
        " 'total', (SELECT count(*) FROM (%s) c),"
        " 'pageIndex', $%d::bigint, 'pageSize', $%d::bigint)::text",
        order, order, sql, order, order, nparams + 1, nparams + 2, sql, nparams + 3,
        nparams + 4);
    if (len < 0 || (size_t) len >= sizeof(query)) {
        http_error(req, 500, "internal_error", NULL, "the list query is too long");
        return;
    }

    res = db_exec(req->db, query, nparams + 4, all);
    if (res == NULL) {
        http_db_error(req, "list");
        return;
    }
    http_reply_text(req, 200, PQgetvalue(res, 0, 0));
    PQclear(res);
}


void
doc_reply_list(http_req_t *req, const char *sql, int nparams, const char *const *params)
{
    reply_list(req, sql, nparams, params, "");
}


void
doc_reply_list_newest(http_req_t *req, const char *sql, int nparams,
    const char *const *params)
{
    reply_list(req, sql, nparams, params, " DESC");
}


void
doc_reply_delete(http_req_t *req, const char *sql, int nparams,
    const char *const *params, const char *what)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);

    if (res == NULL) {
        http_db_error(req, what);
        return;
    }
    if (strcmp(PQcmdTuples(res), "0") == 0) {
        http_not_found(req, what);
    } else {
        http_reply(req, 204, NULL);
    }
    PQclear(res);
}


const char *
doc_str(const cJSON *doc, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    return cJSON_IsString(v) ? v->valuestring : "";
}


const char *
doc_bool(const cJSON *doc, const char *field)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, field)) ? "true" : "false";
}


char *
doc_json(const cJSON *doc, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    return v ? cJSON_PrintUnformatted(v) : strdup("null");
}
