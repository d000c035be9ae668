/*
 * api_openai_batches: OpenAI's batch shape (docs/ARCHITECTURE.md, "OpenAI's
 * batch shape"): /v1/files and /v1/batches as OpenAI's API reference has
 * them, so that OpenAI's SDKs run a batch against the gateway.
 *
 * The caller is a gateway API key (Authorization: Bearer), not a session,
 * and sees its environment's files and batches only.  An uploaded file is
 * JSONL, one {custom_id, method, url, body} request a line; POST
 * /v1/batches turns its lines into the items of an ASYNC batch under the
 * key (batch_insert()), body.model naming the resource as it does on
 * /v1/chat/completions.  The OpenAI fields live in batches.openai.  Once a
 * batch has ended, the first read of it renders its output and error files
 * from its items, in OpenAI's line format, and records their ids there.
 *
 * Ids are the rows' uuids without dashes: "file-<32 hex>", "batch_<32 hex>"
 * (PostgreSQL reads a uuid without dashes as well).  Errors have OpenAI's
 * shape: {"error": {"message", "type", "param", "code"}}.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "batch.h"
#include "crypto.h"
#include "log.h"
#include "utf8.h"
#include "validate.h"

#define OPENAI_FILE_PREFIX        "file-"
#define OPENAI_BATCH_PREFIX       "batch_"
#define OPENAI_HEX_ID_LEN         32      /* a uuid without its dashes */
#define OPENAI_ENDPOINT           "/v1/chat/completions"
#define OPENAI_WINDOW             "24h"
#define OPENAI_FILENAME_MAX_LEN   255
#define OPENAI_PURPOSE_MAX_LEN    32
/* OpenAI's bounds of a batch's metadata */
#define OPENAI_METADATA_MAX       16
#define OPENAI_METADATA_KEY_MAX   64
#define OPENAI_METADATA_VALUE_MAX 512
/* the lists' limits: OpenAI's defaults and maxima */
#define OPENAI_FILES_LIMIT        10000
#define OPENAI_BATCHES_LIMIT      20
#define OPENAI_BATCHES_LIMIT_MAX  100
/* MHD's post processor buffers a part's headers in this */
#define OPENAI_POST_BUFFER        4096

/* openai_cancel()'s answers */
#define OPENAI_CANCEL_ERROR      -1
#define OPENAI_CANCEL_NONE        0      /* no batch of this environment */
#define OPENAI_CANCEL_ENDED       1      /* completed or failed: not cancellable */
#define OPENAI_CANCEL_DONE        2      /* cancelled now, or before */

/* a timestamptz as OpenAI's unix seconds (null stays null) */
#define OPENAI_UNIX(t)  "extract(epoch FROM " t ")::bigint"

/* the file object of the files row "f" */
#define OPENAI_FILE_DOC_SQL \
    "json_build_object('id', 'file-' || replace(f.id::text, '-', ''), 'object', 'file'," \
    " 'bytes', f.bytes, 'created_at', " OPENAI_UNIX("f.created_at") "," \
    " 'expires_at', NULL, 'filename', f.filename, 'purpose', f.purpose," \
    " 'status', 'processed', 'status_details', NULL)"

/* the batch object of the batches row "b" */
#define OPENAI_BATCH_DOC_SQL \
    "json_build_object('id', 'batch_' || replace(b.id::text, '-', ''), 'object', 'batch'," \
    " 'endpoint', b.openai->'endpoint'," \
    " 'errors', CASE WHEN b.error IS NOT NULL THEN json_build_object('object', 'list'," \
    "   'data', json_build_array(json_build_object('code', b.error->'code'," \
    "     'message', b.error->'message', 'param', NULL, 'line', NULL))) END," \
    " 'input_file_id', b.openai->'input_file_id'," \
    " 'completion_window', b.openai->'completion_window'," \
    " 'status', CASE b.status WHEN 'QUEUED' THEN 'validating'" \
    "   WHEN 'RUNNING' THEN 'in_progress' WHEN 'COMPLETED' THEN 'completed'" \
    "   WHEN 'CANCELLING' THEN 'cancelling' WHEN 'CANCELLED' THEN 'cancelled'" \
    "   ELSE 'failed' END," \
    " 'output_file_id', b.openai->'output_file_id'," \
    " 'error_file_id', b.openai->'error_file_id'," \
    " 'created_at', " OPENAI_UNIX("b.created_at") "," \
    " 'in_progress_at', " OPENAI_UNIX("b.started_at") "," \
    " 'expires_at', " OPENAI_UNIX("b.created_at + interval '24 hours'") "," \
    " 'finalizing_at', CASE WHEN b.status = 'COMPLETED' THEN " \
      OPENAI_UNIX("b.completed_at") " END," \
    " 'completed_at', CASE WHEN b.status = 'COMPLETED' THEN " \
      OPENAI_UNIX("b.completed_at") " END," \
    " 'failed_at', CASE WHEN b.status = 'FAILED' THEN " OPENAI_UNIX("b.completed_at") " END," \
    " 'expired_at', NULL, 'cancelling_at', b.openai->'cancelling_at'," \
    " 'cancelled_at', CASE WHEN b.status = 'CANCELLED' THEN " \
      OPENAI_UNIX("coalesce(b.completed_at, b.cancelled_at)") " END," \
    " 'request_counts', json_build_object('total', b.total, 'completed', b.succeeded," \
    "   'failed', b.failed)," \
    " 'metadata', b.openai->'metadata')"

#define OPENAI_ENDED  "b.status IN ('COMPLETED', 'CANCELLED', 'FAILED')"

/* the JSON text of a value, "null" for null */
#define OPENAI_JSON(v)  "coalesce(to_jsonb(" v ")::text, 'null')"

/*
 * One line of an output or error file, of the batch_items row "i", in
 * OpenAI's member order and spacing: an answer of the gateway (2xx or not)
 * is a response, an item that never got one (cancelled, or failed before)
 * an error.
 */
#define OPENAI_LINE_SQL \
    "format('{\"id\": %s, \"custom_id\": %s, \"response\": %s, \"error\": %s}'," \
    " " OPENAI_JSON("'batch_req_' || md5(i.batch_id::text || ':' || i.idx)") "," \
    " " OPENAI_JSON("i.custom_id") "," \
    " CASE WHEN i.status_code IS NULL THEN 'null'" \
    "   ELSE format('{\"status_code\": %s, \"request_id\": %s, \"body\": %s}'," \
    "     i.status_code, " OPENAI_JSON("i.request_id") "," \
    "     CASE WHEN i.status = 'SUCCEEDED' THEN " OPENAI_JSON("i.response") \
    "     ELSE jsonb_build_object('error', i.error)::text END) END," \
    " CASE WHEN i.status_code IS NOT NULL THEN 'null'" \
    "   WHEN i.status = 'CANCELLED' THEN jsonb_build_object('code', 'batch_cancelled'," \
    "     'message', 'the batch was cancelled before this request ran')::text" \
    "   ELSE jsonb_build_object('code', i.error->'code', 'message', i.error->'message')::text" \
    " END)"

/*
 * The CTE name writing the file of the lines of batch $1's items whose
 * status matches, as file $param, when there is any such item; it returns
 * the file's id.
 */
#define OPENAI_RENDER_SQL(name, param, status) \
    name " AS (INSERT INTO files (id, workspace_id, environment_id, purpose, filename," \
    "   bytes, content)" \
    " SELECT $" param "::uuid, b.workspace_id, b.environment_id, 'batch_output'," \
    "   'batch_' || replace(b.id::text, '-', '') || '_" name ".jsonl'," \
    "   octet_length(t.content), t.content" \
    " FROM batches b, (SELECT convert_to(string_agg(" OPENAI_LINE_SQL ", E'\\n'" \
    "                  ORDER BY i.idx) || E'\\n', 'UTF8') AS content" \
    "                  FROM batch_items i WHERE i.batch_id = $1 AND i.status " status ") t" \
    " WHERE b.id = $1 AND t.content IS NOT NULL RETURNING id)"

/*
 * A page of the environment's files ($1) of purpose $2 ("": any) after the
 * file $3 ("": from the first), $4 rows, in the order op and dir give
 */
#define OPENAI_FILES_PAGE_SQL(op, dir) \
    "SELECT 'file-' || replace(f.id::text, '-', ''), " OPENAI_FILE_DOC_SQL "::text" \
    " FROM files f WHERE f.environment_id = $1 AND ($2::text = '' OR f.purpose = $2)" \
    "   AND ($3::text = '' OR (f.created_at, f.id) " op \
    "        (SELECT created_at, id FROM files WHERE id = nullif($3, '')::uuid))" \
    " ORDER BY f.created_at " dir ", f.id " dir " LIMIT $4::int"

/*
 * The rest of a query of a page of the environment's ($1) batches of
 * OpenAI's shape, newest first, after the batch $2 ("": from the newest),
 * $3 rows, those of cond only
 */
#define OPENAI_BATCHES_PAGE_SQL(cond) \
    "FROM batches b WHERE b.environment_id = $1 AND b.openai IS NOT NULL " cond \
    "   AND ($2::text = '' OR (b.created_at, b.id) <" \
    "        (SELECT created_at, id FROM batches WHERE id = nullif($2, '')::uuid))" \
    " ORDER BY b.created_at DESC, b.id DESC LIMIT $3::int"

/* the API key a request came with */
typedef struct {
    char  id[UUID_LEN + 1];
    char  workspace_id[UUID_LEN + 1];
    char  environment_id[UUID_LEN + 1];
} openai_key_t;

/* the parts of a multipart upload the handler takes */
typedef struct {
    char    purpose[OPENAI_PURPOSE_MAX_LEN + 1];
    char    filename[OPENAI_FILENAME_MAX_LEN + 1];
    bool    has_file;
    bool    too_long;           /* purpose or filename beyond its bound */
    char   *content;            /* owned, NUL-terminated */
    size_t  len, size;
} openai_upload_t;


/* answers OpenAI's error object; param names the field, or NULL */
static void __attribute__((format(printf, 6, 7)))
openai_error(http_req_t *req, int status, const char *code, const char *param,
    const char *type, const char *fmt, ...)
{
    char     message[512];
    va_list  ap;
    cJSON   *root = cJSON_CreateObject();
    cJSON   *error = cJSON_AddObjectToObject(root, "error");

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddStringToObject(error, "type", type);
    if (param != NULL) {
        cJSON_AddStringToObject(error, "param", param);
    } else {
        cJSON_AddNullToObject(error, "param");
    }
    cJSON_AddStringToObject(error, "code", code);
    http_reply(req, status, root);
}


#define openai_invalid(req, param, ...) \
    openai_error(req, 400, "invalid_request", param, "invalid_request_error", __VA_ARGS__)


static void
openai_db_error(http_req_t *req, const char *what)
{
    if (db_unavailable(req->db)) {
        openai_error(req, 503, "unavailable", NULL, "server_error",
                     "the database is unreachable");
    } else {
        openai_error(req, 500, "internal_error", NULL, "server_error", "%s failed", what);
    }
}


static void
openai_not_found(http_req_t *req, const char *what, const char *id)
{
    openai_error(req, 404, "not_found", NULL, "invalid_request_error", "No such %s: '%.64s'",
                 what, id);
}


/*
 * The API key of "Authorization: Bearer <key>" (api_batches_authenticate():
 * enabled, not expired, or the key a rotation replaced within its grace, as
 * the data plane takes it) and its environment; false after answering 401
 * (or 5xx).
 */
static bool
openai_authenticate(http_req_t *req, openai_key_t *key)
{
    const char *params[1] = { req->api_key_id };
    PGresult   *res;

    if (req->db == NULL) {
        openai_error(req, 503, "unavailable", NULL, "server_error",
                     "the database is unreachable");
        return false;
    }
    if (!api_batches_authenticate(req)) {
        if (db_unavailable(req->db)) {
            openai_db_error(req, "the key check");
        } else {
            openai_error(req, 401, "invalid_api_key", NULL, "invalid_request_error",
                         "Invalid API key: pass an enabled gateway API key as"
                         " \"Authorization: Bearer <key>\"");
        }
        return false;
    }
    res = db_exec(req->db, "SELECT workspace_id, environment_id FROM api_keys WHERE id = $1",
                  1, params);
    if (res == NULL || PQntuples(res) != 1) {
        PQclear(res);
        openai_db_error(req, "the key check");
        return false;
    }
    snprintf(key->id, sizeof(key->id), "%s", req->api_key_id);
    snprintf(key->workspace_id, sizeof(key->workspace_id), "%s", PQgetvalue(res, 0, 0));
    snprintf(key->environment_id, sizeof(key->environment_id), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    return true;
}


/* the uuid of id "<prefix><32 hex>" into uuid; false when id is none */
static bool
openai_id_uuid(const char *id, const char *prefix, char uuid[UUID_LEN + 1])
{
    size_t      plen = strlen(prefix);
    const char *hex;

    if (id == NULL || strncmp(id, prefix, plen) != 0) {
        return false;
    }
    hex = id + plen;
    if (strlen(hex) != OPENAI_HEX_ID_LEN
        || strspn(hex, "0123456789abcdef") != OPENAI_HEX_ID_LEN)
    {
        return false;
    }
    snprintf(uuid, UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
    return true;
}


/*
 * The caller's key and the uuid of the {id} of a route of one object (a
 * file or a batch, by prefix); false after answering 401 or 404.
 */
static bool
openai_object_request(http_req_t *req, openai_key_t *key, const char *prefix,
    char uuid[UUID_LEN + 1])
{
    if (!openai_authenticate(req, key)) {
        return false;
    }
    if (!openai_id_uuid(http_param(req, "id"), prefix, uuid)) {
        openai_not_found(req, strcmp(prefix, OPENAI_FILE_PREFIX) == 0 ? "file" : "batch",
                         http_param(req, "id"));
        return false;
    }
    return true;
}


/*
 * Answers the document of the single row sql selects (JSON text, printed
 * again compact in its members' order), or 404 naming id.
 */
static void
openai_reply_doc(http_req_t *req, const char *sql, int nparams, const char *const *params,
    const char *what, const char *id)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);

    if (res == NULL) {
        openai_db_error(req, what);
        return;
    }
    if (PQntuples(res) == 0) {
        openai_not_found(req, what, id);
    } else {
        http_reply(req, 200, cJSON_Parse(PQgetvalue(res, 0, 0)));
    }
    PQclear(res);
}


/*
 * The query argument "limit" into *limit: from 1 to max, def when absent,
 * and as text one more, the rows to select (the one more tells whether
 * there are more); false after answering 400.
 */
static bool
openai_limit(http_req_t *req, long def, long max, long *limit, char rows[24])
{
    const char *arg = http_query(req, "limit");
    char       *end;

    *limit = def;
    if (arg != NULL) {
        *limit = strtol(arg, &end, 10);
        if (end == arg || *end != '\0' || *limit < 1 || *limit > max) {
            openai_invalid(req, "limit", "limit must be an integer from 1 to %ld", max);
            return false;
        }
    }
    snprintf(rows, 24, "%ld", *limit + 1);
    return true;
}


/*
 * Answers OpenAI's cursor page {object: "list", data, first_id, last_id,
 * has_more} of the rows (id, doc) sql selects, one more than the page.
 */
static void
openai_reply_list(http_req_t *req, const char *sql, int nparams, const char *const *params,
    long limit)
{
    PGresult *res = db_exec(req->db, sql, nparams, params);
    cJSON    *list, *data;
    int       n;

    if (res == NULL) {
        openai_db_error(req, "the list");
        return;
    }
    n = PQntuples(res) > limit ? (int) limit : PQntuples(res);
    list = cJSON_CreateObject();
    cJSON_AddStringToObject(list, "object", "list");
    data = cJSON_AddArrayToObject(list, "data");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(data, cJSON_Parse(PQgetvalue(res, i, 1)));
    }
    if (n > 0) {
        cJSON_AddStringToObject(list, "first_id", PQgetvalue(res, 0, 0));
        cJSON_AddStringToObject(list, "last_id", PQgetvalue(res, n - 1, 0));
    } else {
        cJSON_AddNullToObject(list, "first_id");
        cJSON_AddNullToObject(list, "last_id");
    }
    cJSON_AddBoolToObject(list, "has_more", PQntuples(res) > limit);
    PQclear(res);
    http_reply(req, 200, list);
}


/* the query argument "after": "" when absent, the uuid of an id of prefix;
 * false after answering 400 */
static bool
openai_after(http_req_t *req, const char *prefix, char uuid[UUID_LEN + 1])
{
    const char *after = http_query(req, "after");

    uuid[0] = '\0';
    if (after != NULL && !openai_id_uuid(after, prefix, uuid)) {
        openai_invalid(req, "after", "after must be an id %s<32 hex digits>", prefix);
        return false;
    }
    return true;
}


/* ---------------------------------------------------------------- files */


/* MHD's post processor hands the parts over in pieces */
static enum MHD_Result
openai_upload_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
    const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
    size_t size)
{
    openai_upload_t *u = cls;

    (void) kind;
    (void) content_type;
    (void) transfer_encoding;

    /* a part with no name in its Content-Disposition is none of ours */
    if (key == NULL) {
        return MHD_YES;
    }
    if (strcmp(key, "purpose") == 0) {
        if (off + size > OPENAI_PURPOSE_MAX_LEN) {
            u->too_long = true;
            return MHD_NO;
        }
        memcpy(u->purpose + off, data, size);
        u->purpose[off + size] = '\0';
    } else if (strcmp(key, "file") == 0) {
        if (!u->has_file) {
            u->has_file = true;
            if (filename != NULL && strlen(filename) > OPENAI_FILENAME_MAX_LEN) {
                u->too_long = true;
                return MHD_NO;
            }
            snprintf(u->filename, sizeof(u->filename), "%s",
                     filename != NULL ? filename : "file.jsonl");
        }
        /* the parts are within the body, and the buffer is its size */
        if (u->len + size >= u->size) {
            return MHD_NO;
        }
        memcpy(u->content + u->len, data, size);
        u->len += size;
        u->content[u->len] = '\0';
    }
    return MHD_YES;
}


/* the parts of the multipart body into u; false after answering 400 */
static bool
openai_upload_read(http_req_t *req, openai_upload_t *u)
{
    struct MHD_PostProcessor *pp;
    enum MHD_Result           rc;
    const char               *type = http_header(req, "Content-Type");

    if (type == NULL || strncasecmp(type, "multipart/form-data", 19) != 0) {
        openai_invalid(req, NULL, "the body must be multipart/form-data with purpose and file");
        return false;
    }
    u->size = req->body_len + 1;
    u->content = malloc(u->size);
    if (u->content == NULL) {
        openai_error(req, 500, "internal_error", NULL, "server_error", "out of memory");
        return false;
    }
    pp = MHD_create_post_processor(req->conn, OPENAI_POST_BUFFER, openai_upload_part, u);
    if (pp == NULL) {
        openai_invalid(req, NULL, "the multipart body has no boundary");
        return false;
    }
    rc = MHD_post_process(pp, req->body, req->body_len);
    rc = MHD_destroy_post_processor(pp) == MHD_YES ? rc : MHD_NO;
    if (u->too_long) {
        openai_invalid(req, NULL, "purpose or the file's name is too long (name: at most %d"
                       " bytes)", OPENAI_FILENAME_MAX_LEN);
        return false;
    }
    if (rc != MHD_YES) {
        openai_invalid(req, NULL, "the multipart body is malformed");
        return false;
    }
    if (strcmp(u->purpose, "batch") != 0) {
        openai_invalid(req, "purpose", "purpose must be \"batch\": the gateway keeps batch"
                       " input files only");
        return false;
    }
    if (!u->has_file || u->len == 0) {
        openai_invalid(req, "file", "file must be a non-empty JSONL file");
        return false;
    }
    if (!utf8_valid_text((const unsigned char *) u->content, u->len)
        || !utf8_valid_text((const unsigned char *) u->filename, strlen(u->filename)))
    {
        openai_invalid(req, "file", "file must be JSONL, and its name, UTF-8 text without NUL");
        return false;
    }
    return true;
}


void
api_openai_files_create(http_req_t *req)
{
    openai_key_t     key;
    openai_upload_t  u = { .len = 0 };
    char             id[UUID_LEN + 1], bytes[24];
    const char      *params[6] = { id, key.workspace_id, key.environment_id, u.filename,
                                   bytes, NULL };
    PGresult        *res;

    if (!openai_authenticate(req, &key) || !openai_upload_read(req, &u)) {
        free(u.content);
        return;
    }
    crypto_uuid_v4(id);
    snprintf(bytes, sizeof(bytes), "%zu", u.len);
    params[5] = u.content;
    res = db_exec(req->db, "INSERT INTO files AS f (id, workspace_id, environment_id, purpose,"
                           " filename, bytes, content)"
                           " VALUES ($1, $2, $3, 'batch', $4, $5, convert_to($6, 'UTF8'))"
                           " RETURNING " OPENAI_FILE_DOC_SQL "::text", 6, params);
    free(u.content);
    if (res == NULL) {
        openai_db_error(req, "the upload");
        return;
    }
    log_info("openai: environment=%s key=%s file=%s bytes=%s uploaded", key.environment_id,
             key.id, id, bytes);
    http_reply(req, 200, cJSON_Parse(PQgetvalue(res, 0, 0)));
    PQclear(res);
}


void
api_openai_files_list(http_req_t *req)
{
    openai_key_t  key;
    char          after[UUID_LEN + 1], rows[24];
    const char   *order = http_query(req, "order");
    const char   *purpose = http_query(req, "purpose");
    const char   *params[4] = { NULL, purpose ? purpose : "", after, rows };
    long          limit;

    if (!openai_authenticate(req, &key)
        || !openai_after(req, OPENAI_FILE_PREFIX, after)
        || !openai_limit(req, OPENAI_FILES_LIMIT, OPENAI_FILES_LIMIT, &limit, rows))
    {
        return;
    }
    if (order != NULL && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        openai_invalid(req, "order", "order must be asc or desc");
        return;
    }
    if (purpose != NULL && strcmp(purpose, "batch") != 0
        && strcmp(purpose, "batch_output") != 0)
    {
        openai_invalid(req, "purpose", "purpose must be batch or batch_output");
        return;
    }
    params[0] = key.environment_id;
    openai_reply_list(req, order != NULL && strcmp(order, "asc") == 0
                           ? OPENAI_FILES_PAGE_SQL(">", "ASC")
                           : OPENAI_FILES_PAGE_SQL("<", "DESC"),
                      4, params, limit);
}


void
api_openai_files_get(http_req_t *req)
{
    openai_key_t  key;
    char          id[UUID_LEN + 1];
    const char   *params[2] = { id, key.environment_id };

    if (!openai_object_request(req, &key, OPENAI_FILE_PREFIX, id)) {
        return;
    }
    openai_reply_doc(req, "SELECT " OPENAI_FILE_DOC_SQL "::text FROM files f"
                          " WHERE f.id = $1::uuid AND f.environment_id = $2", 2, params,
                     "file", http_param(req, "id"));
}


void
api_openai_files_content(http_req_t *req)
{
    openai_key_t  key;
    char          id[UUID_LEN + 1];
    const char   *params[2] = { id, key.environment_id };
    PGresult     *res;

    if (!openai_object_request(req, &key, OPENAI_FILE_PREFIX, id)) {
        return;
    }
    res = db_exec(req->db, "SELECT convert_from(content, 'UTF8') FROM files"
                           " WHERE id = $1::uuid AND environment_id = $2", 2, params);
    if (res == NULL) {
        openai_db_error(req, "the file's read");
        return;
    }
    if (PQntuples(res) == 0) {
        openai_not_found(req, "file", http_param(req, "id"));
    } else {
        /* uploads and renders are UTF-8 text without NUL */
        http_reply_text(req, 200, PQgetvalue(res, 0, 0));
        req->content_type = "application/octet-stream";
    }
    PQclear(res);
}


void
api_openai_files_delete(http_req_t *req)
{
    openai_key_t  key;
    char          id[UUID_LEN + 1];
    const char   *params[2] = { id, key.environment_id };
    cJSON        *deleted;
    PGresult     *res;

    if (!openai_object_request(req, &key, OPENAI_FILE_PREFIX, id)) {
        return;
    }
    res = db_exec(req->db, "DELETE FROM files WHERE id = $1::uuid AND environment_id = $2",
                  2, params);
    if (res == NULL) {
        openai_db_error(req, "the delete");
        return;
    }
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        PQclear(res);
        openai_not_found(req, "file", http_param(req, "id"));
        return;
    }
    PQclear(res);
    log_info("openai: environment=%s key=%s file=%s deleted", key.environment_id, key.id,
             http_param(req, "id"));
    deleted = cJSON_CreateObject();
    cJSON_AddStringToObject(deleted, "id", http_param(req, "id"));
    cJSON_AddStringToObject(deleted, "object", "file");
    cJSON_AddBoolToObject(deleted, "deleted", true);
    http_reply(req, 200, deleted);
}


/* -------------------------------------------------------------- batches */


/* the JSON object of the body; NULL after answering 400 */
static cJSON *
openai_json_body(http_req_t *req)
{
    cJSON *body;

    if (req->body_len == 0) {
        openai_invalid(req, NULL, "the body must be a JSON object");
        return NULL;
    }
    /* bounded, UTF-8, no repeated member (validate.c) */
    if (!val_body(req)) {
        return NULL;
    }
    body = cJSON_ParseWithLength(req->body, req->body_len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        openai_invalid(req, NULL, "the body must be a JSON object");
        return NULL;
    }
    return body;
}


/* metadata: absent, null, or at most 16 string pairs; false after answering 400 */
static bool
openai_metadata_valid(http_req_t *req, const cJSON *metadata)
{
    const cJSON *pair;

    if (metadata == NULL || cJSON_IsNull(metadata)) {
        return true;
    }
    if (!cJSON_IsObject(metadata) || cJSON_GetArraySize(metadata) > OPENAI_METADATA_MAX) {
        openai_invalid(req, "metadata", "metadata must be an object of at most %d pairs",
                       OPENAI_METADATA_MAX);
        return false;
    }
    cJSON_ArrayForEach(pair, metadata) {
        if (strlen(pair->string) > OPENAI_METADATA_KEY_MAX || !cJSON_IsString(pair)
            || strlen(pair->valuestring) > OPENAI_METADATA_VALUE_MAX)
        {
            openai_invalid(req, "metadata", "metadata's keys must have at most %d bytes and"
                           " its values be strings of at most %d",
                           OPENAI_METADATA_KEY_MAX, OPENAI_METADATA_VALUE_MAX);
            return false;
        }
    }
    return true;
}


/* the checks of create's members; false after answering 400 */
static bool
openai_create_valid(http_req_t *req, const cJSON *body)
{
    static const char *const members[] = { "input_file_id", "endpoint", "completion_window",
                                           "metadata", NULL };
    const char *unknown = batch_unknown_member(body, members);
    const char *endpoint = doc_str(body, "endpoint");

    if (unknown != NULL) {
        openai_invalid(req, unknown, "%.64s is not supported by the gateway", unknown);
        return false;
    }
    if (strcmp(endpoint, OPENAI_ENDPOINT) != 0) {
        openai_invalid(req, "endpoint", "endpoint %.64s is not supported: the gateway runs"
                       " batches of " OPENAI_ENDPOINT " only", endpoint);
        return false;
    }
    if (strcmp(doc_str(body, "completion_window"), OPENAI_WINDOW) != 0) {
        openai_invalid(req, "completion_window", "completion_window must be " OPENAI_WINDOW);
        return false;
    }
    return openai_metadata_valid(req, cJSON_GetObjectItemCaseSensitive(body, "metadata"));
}


/* a string member of a request line, NULL when it is none */
static const char *
openai_line_str(const cJSON *line, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(line, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}


/*
 * The item of batch_insert() of one request line {custom_id, method, url,
 * body}; NULL after answering 400 naming the line.
 */
static cJSON *
openai_line_item(http_req_t *req, const char *text, size_t len, int line_no)
{
    cJSON       *line = cJSON_ParseWithLength(text, len);
    cJSON       *item, *body;
    const char  *custom_id = openai_line_str(line, "custom_id");
    const char  *method = openai_line_str(line, "method");
    const char  *url = openai_line_str(line, "url");
    const char  *problem = NULL;

    body = cJSON_GetObjectItemCaseSensitive(line, "body");
    if (!cJSON_IsObject(line)) {
        problem = "is not a JSON object";
    } else if (custom_id == NULL) {
        problem = "has no custom_id string";
    } else if (method == NULL || strcmp(method, "POST") != 0) {
        problem = "must have method POST";
    } else if (url == NULL || strcmp(url, OPENAI_ENDPOINT) != 0) {
        problem = "must have url " OPENAI_ENDPOINT ", the batch's endpoint";
    } else if (!cJSON_IsObject(body) || openai_line_str(body, "model") == NULL) {
        problem = "must have a body object whose model names a resource";
    }
    if (problem != NULL) {
        cJSON_Delete(line);
        openai_invalid(req, "input_file_id", "line %d of the input file %s", line_no, problem);
        return NULL;
    }
    item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "resource", openai_line_str(body, "model"));
    cJSON_AddStringToObject(item, "customId", custom_id);
    cJSON_AddItemToObject(item, "request", cJSON_DetachItemViaPointer(line, body));
    cJSON_Delete(line);
    return item;
}


/*
 * The items of the JSONL content, and each one's line (from 1) into
 * lines[] (room for one a line, up to BATCH_MAX_ITEMS); NULL after
 * answering 400.  Blank lines are skipped, as OpenAI does.
 */
static cJSON *
openai_items(http_req_t *req, const char *content, int *lines)
{
    cJSON       *items = cJSON_CreateArray();
    const char  *p = content;
    int          n = 0, line_no = 0;

    while (*p != '\0') {
        const char *end = strchr(p, '\n');
        size_t      len = end ? (size_t) (end - p) : strlen(p);
        cJSON      *item;

        line_no++;
        if (strspn(p, " \t\r") < len) {
            if (n == BATCH_MAX_ITEMS) {
                cJSON_Delete(items);
                openai_invalid(req, "input_file_id", "the input file has more than %d"
                               " requests", BATCH_MAX_ITEMS);
                return NULL;
            }
            item = openai_line_item(req, p, len, line_no);
            if (item == NULL) {
                cJSON_Delete(items);
                return NULL;
            }
            cJSON_AddItemToArray(items, item);
            lines[n++] = line_no;
        }
        p += end ? len + 1 : len;
    }
    if (n == 0) {
        cJSON_Delete(items);
        openai_invalid(req, "input_file_id", "the input file holds no request");
        return NULL;
    }
    return items;
}


/*
 * batch_insert()'s refusal of an item, told in the input file's terms:
 * "items[3].resource is no resource ..." becomes "line 4: body.model is no
 * resource ...".
 */
static void
openai_insert_refused(http_req_t *req, const batch_err_t *err, const int *lines, int nitems)
{
    static const struct {
        const char *item, *line;
    } names[] = {
        { ".resource", "body.model" }, { ".customId", "custom_id" }, { ".request", "body" },
        { "", "the request" },
    };
    const char *rest = err->message;
    int         idx, used = 0;

    if (sscanf(err->field, "items[%d]%n", &idx, &used) != 1 || used == 0 || idx < 0
        || idx >= nitems)
    {
        openai_invalid(req, NULL, "%s", err->message);
        return;
    }
    if (strncmp(rest, err->field, strlen(err->field)) == 0) {
        rest += strlen(err->field);
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len = strlen(names[i].item);

        if (strncmp(err->field + used, names[i].item, len) == 0) {
            openai_invalid(req, "input_file_id", "line %d of the input file: %s%s%s",
                           lines[idx], names[i].line, err->field + used + len, rest);
            return;
        }
    }
}


/* the JSONL of the input file, a batch file of the environment; NULL
 * after answering */
static char *
openai_input_file(http_req_t *req, const openai_key_t *key, const char *file_id)
{
    char        id[UUID_LEN + 1];
    const char *params[2] = { id, key->environment_id };
    PGresult   *res;
    char       *content;

    if (!openai_id_uuid(file_id, OPENAI_FILE_PREFIX, id)) {
        openai_invalid(req, "input_file_id", "input_file_id must be the id of a file");
        return NULL;
    }
    res = db_exec(req->db, "SELECT convert_from(content, 'UTF8') FROM files"
                           " WHERE id = $1::uuid AND environment_id = $2 AND purpose = 'batch'",
                  2, params);
    if (res == NULL) {
        openai_db_error(req, "the input file's read");
        return NULL;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        openai_invalid(req, "input_file_id", "no file %s of purpose batch", file_id);
        return NULL;
    }
    content = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (content == NULL) {
        openai_error(req, 500, "internal_error", NULL, "server_error", "out of memory");
    }
    return content;
}


/* the batch's fields of OpenAI's shape, kept in batches.openai */
static cJSON *
openai_fields(const cJSON *body)
{
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    cJSON       *openai = cJSON_CreateObject();

    cJSON_AddStringToObject(openai, "endpoint", OPENAI_ENDPOINT);
    cJSON_AddStringToObject(openai, "input_file_id", doc_str(body, "input_file_id"));
    cJSON_AddStringToObject(openai, "completion_window", OPENAI_WINDOW);
    cJSON_AddItemToObject(openai, "metadata",
                          metadata ? cJSON_Duplicate(metadata, true) : cJSON_CreateNull());
    return openai;
}


void
api_openai_batches_create(http_req_t *req)
{
    openai_key_t  key;
    batch_err_t   err;
    batch_new_t   b = { .mode = "ASYNC" };
    cJSON        *body = NULL, *items = NULL, *openai = NULL;
    char         *content = NULL;
    int          *lines = NULL;
    size_t        nlines;
    char          id[UUID_LEN + 1];
    const char   *params[1] = { id };

    if (!openai_authenticate(req, &key) || (body = openai_json_body(req)) == NULL
        || !openai_create_valid(req, body)
        || (content = openai_input_file(req, &key, doc_str(body, "input_file_id"))) == NULL)
    {
        goto done;
    }
    /* a line a request, and no more requests than a batch takes */
    nlines = strlen(content) + 1;
    lines = malloc(sizeof(int) * (nlines < BATCH_MAX_ITEMS ? nlines : BATCH_MAX_ITEMS));
    if (lines == NULL) {
        openai_error(req, 500, "internal_error", NULL, "server_error", "out of memory");
        goto done;
    }
    items = openai_items(req, content, lines);
    if (items == NULL) {
        goto done;
    }

    openai = openai_fields(body);
    b.workspace_id = key.workspace_id;
    b.environment_id = key.environment_id;
    b.api_key_id = key.id;
    b.openai = openai;
    switch (batch_insert(req->db, &b, items, id, &err)) {
    case BATCH_OK:
        log_info("openai: environment=%s key=%s batch=%s input=%s items=%d created",
                 key.environment_id, key.id, id, doc_str(body, "input_file_id"),
                 cJSON_GetArraySize(items));
        openai_reply_doc(req, "SELECT " OPENAI_BATCH_DOC_SQL "::text FROM batches b"
                              " WHERE b.id = $1", 1, params, "batch", id);
        break;
    case BATCH_INVALID:
        openai_insert_refused(req, &err, lines, cJSON_GetArraySize(items));
        break;
    default:
        openai_error(req, err.status, "internal_error", NULL, "server_error", "%s",
                     err.message);
    }

done:
    cJSON_Delete(openai);
    cJSON_Delete(items);
    cJSON_Delete(body);
    free(lines);
    free(content);
}


/*
 * The output and error files of an ended batch of the environment,
 * rendered once: the batch's row is locked, so that two first reads write
 * one pair.  A batch that ended with no item of a kind has that file's id
 * null.  0 or -1.
 */
static int
openai_render_files(db_conn_t *c, const char *batch_id, const char *environment_id)
{
    char        output_id[UUID_LEN + 1], error_id[UUID_LEN + 1];
    const char *params[3] = { batch_id, output_id, error_id };
    const char *lock_params[2] = { batch_id, environment_id };
    PGresult   *res;
    int         rendered;

    if (db_begin(c) != 0) {
        return -1;
    }
    res = db_exec(c, "SELECT 1 FROM batches b WHERE b.id = $1 AND b.environment_id = $2"
                     "   AND " OPENAI_ENDED " AND NOT b.openai ? 'output_file_id' FOR UPDATE",
                  2, lock_params);
    if (res == NULL) {
        db_rollback(c);
        return -1;
    }
    rendered = PQntuples(res) == 0;
    PQclear(res);
    if (rendered) {
        db_rollback(c);
        return 0;
    }
    crypto_uuid_v4(output_id);
    crypto_uuid_v4(error_id);
    if (db_run(c, "WITH " OPENAI_RENDER_SQL("output", "2", "= 'SUCCEEDED'") ","
                  " " OPENAI_RENDER_SQL("error", "3", "<> 'SUCCEEDED'")
                  " UPDATE batches SET openai = openai || jsonb_build_object("
                  "   'output_file_id', (SELECT 'file-' || replace(id::text, '-', '')"
                  "                      FROM output),"
                  "   'error_file_id', (SELECT 'file-' || replace(id::text, '-', '')"
                  "                     FROM error))"
                  " WHERE id = $1", 3, params) != 0
        || db_run(c, "SELECT pg_notify('vmx_batch', $1)", 1, params) != 0
        || db_commit(c) != 0)
    {
        db_rollback(c);
        return -1;
    }
    log_info("openai: batch=%s output and error files rendered", batch_id);
    return 0;
}


void
api_openai_batches_get(http_req_t *req)
{
    openai_key_t  key;
    char          id[UUID_LEN + 1];
    const char   *params[2] = { id, key.environment_id };

    if (!openai_object_request(req, &key, OPENAI_BATCH_PREFIX, id)) {
        return;
    }
    if (openai_render_files(req->db, id, key.environment_id) != 0) {
        log_error("openai: batch=%s the output files could not be rendered", id);
        openai_db_error(req, "the output files' render");
        return;
    }
    openai_reply_doc(req, "SELECT " OPENAI_BATCH_DOC_SQL "::text FROM batches b"
                          " WHERE b.id = $1::uuid AND b.environment_id = $2"
                          "   AND b.openai IS NOT NULL", 2, params,
                     "batch", http_param(req, "id"));
}


void
api_openai_batches_list(http_req_t *req)
{
    openai_key_t  key;
    char          after[UUID_LEN + 1], rows[24];
    const char   *params[3] = { NULL, after, rows };
    long          limit;
    PGresult     *res;
    int           rc;

    if (!openai_authenticate(req, &key)
        || !openai_after(req, OPENAI_BATCH_PREFIX, after)
        || !openai_limit(req, OPENAI_BATCHES_LIMIT, OPENAI_BATCHES_LIMIT_MAX, &limit, rows))
    {
        return;
    }
    params[0] = key.environment_id;

    /* the page's ended batches get their files first, as a GET of each would */
    res = db_exec(req->db, "SELECT b.id " OPENAI_BATCHES_PAGE_SQL("AND " OPENAI_ENDED
                           " AND NOT b.openai ? 'output_file_id'"), 3, params);
    rc = res != NULL ? 0 : -1;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        rc = openai_render_files(req->db, PQgetvalue(res, i, 0), key.environment_id);
    }
    PQclear(res);
    if (rc != 0) {
        openai_db_error(req, "the output files' render");
        return;
    }
    openai_reply_list(req, "SELECT 'batch_' || replace(b.id::text, '-', ''), "
                           OPENAI_BATCH_DOC_SQL "::text " OPENAI_BATCHES_PAGE_SQL(""),
                      3, params, limit);
}


/*
 * Cancels the batch of the environment when it is open (batch_cancel()),
 * and notes when OpenAI's cancel came.
 */
static int
openai_cancel(db_conn_t *c, const char *batch_id, const char *environment_id)
{
    const char *params[2] = { batch_id, environment_id };
    PGresult   *res;
    char        status[16];

    if (db_begin(c) != 0) {
        return OPENAI_CANCEL_ERROR;
    }
    res = db_exec(c, "SELECT status FROM batches WHERE id = $1 AND environment_id = $2"
                     "   AND openai IS NOT NULL FOR UPDATE", 2, params);
    if (res == NULL) {
        db_rollback(c);
        return OPENAI_CANCEL_ERROR;
    }
    snprintf(status, sizeof(status), "%s", PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    if (strcmp(status, "QUEUED") != 0 && strcmp(status, "RUNNING") != 0) {
        db_rollback(c);
        return status[0] == '\0' ? OPENAI_CANCEL_NONE
               : strncmp(status, "CANCEL", 6) == 0 ? OPENAI_CANCEL_DONE : OPENAI_CANCEL_ENDED;
    }
    if (db_run(c, "UPDATE batches SET openai = openai"
                  "   || jsonb_build_object('cancelling_at', " OPENAI_UNIX("now()") ")"
                  " WHERE id = $1", 1, params) != 0
        || batch_cancel(c, batch_id) != 0 || db_commit(c) != 0)
    {
        db_rollback(c);
        return OPENAI_CANCEL_ERROR;
    }
    return OPENAI_CANCEL_DONE;
}


void
api_openai_batches_cancel(http_req_t *req)
{
    openai_key_t  key;
    char          id[UUID_LEN + 1];
    const char   *params[1] = { id };

    if (!openai_object_request(req, &key, OPENAI_BATCH_PREFIX, id)) {
        return;
    }
    switch (openai_cancel(req->db, id, key.environment_id)) {
    case OPENAI_CANCEL_DONE:
        log_info("openai: environment=%s key=%s batch=%s cancelled", key.environment_id,
                 key.id, id);
        openai_reply_doc(req, "SELECT " OPENAI_BATCH_DOC_SQL "::text FROM batches b"
                              " WHERE b.id = $1::uuid", 1, params,
                         "batch", http_param(req, "id"));
        break;
    case OPENAI_CANCEL_ENDED:
        openai_error(req, 409, "batch_not_cancellable", NULL, "invalid_request_error",
                     "the batch has ended: it cannot be cancelled");
        break;
    case OPENAI_CANCEL_NONE:
        openai_not_found(req, "batch", http_param(req, "id"));
        break;
    default:
        openai_db_error(req, "the cancel");
    }
}
