/*
 * http: libmicrohttpd glue.  One thread per connection (handlers block on
 * PostgreSQL and on argon2id, a streamed answer on what it waits for); the body is collected up to HTTP_MAX_BODY and
 * the rest is drained, so an oversized request still gets its 413.
 */

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "http.h"
#include "log.h"
#include "metrics.h"

#define HTTP_MAX_CONNECTIONS  256
#define HTTP_TIMEOUT_SECONDS  60

static struct MHD_Daemon *daemon_handle;
static volatile bool       stopping;


const char *
http_query(const http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}


/* the last entry of X-Forwarded-For (the one the proxy added) into out, when
 * it is an IP address; out is left alone otherwise */
static void
forwarded_address(const http_req_t *req, char *out)
{
    char            addr[HTTP_ADDR_LEN];
    const char     *xff = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                      "X-Forwarded-For");
    const char     *last, *end;
    unsigned char   bin[sizeof(struct in6_addr)];
    size_t          len;

    if (xff == NULL) {
        return;
    }
    last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    last += strspn(last, " \t");
    for (end = last + strlen(last); end > last && (end[-1] == ' ' || end[-1] == '\t'); end--) {
        /* trailing blanks */
    }
    len = (size_t) (end - last);
    if (len == 0 || len >= sizeof(addr)) {
        return;
    }
    memcpy(addr, last, len);
    addr[len] = '\0';
    if (inet_pton(AF_INET, addr, bin) == 1 || inet_pton(AF_INET6, addr, bin) == 1) {
        memcpy(out, addr, len + 1);
    }
}


void
http_client_address(const http_req_t *req, char *out)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr          *sa = info ? info->client_addr : NULL;

    out[0] = '\0';
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, out, HTTP_ADDR_LEN);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, out,
                  HTTP_ADDR_LEN);
    }
    /* the gateway's nginx proxies /api from loopback and names the client */
    if (strncmp(out, "127.", 4) == 0 || strcmp(out, "::1") == 0) {
        forwarded_address(req, out);
    }
}


const char *
http_header(const http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}


bool
http_bearer_is(const http_req_t *req, const char *token)
{
    const char *auth = http_header(req, "Authorization");
    size_t      len = strlen(token);

    return auth != NULL && strncmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == len
           && sodium_memcmp(auth + 7, token, len) == 0;
}


const char *
http_cookie(const http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}


/* a stream set up before another answer replaced it, and its content type */
static void
drop_stream(http_req_t *req)
{
    if (req->stream_read == NULL) {
        return;
    }
    if (req->stream_free != NULL) {
        req->stream_free(req->stream_cls);
    }
    req->content_type = NULL;
    req->stream_read = NULL;
    req->stream_free = NULL;
    req->stream_cls = NULL;
}


void
http_redirect(http_req_t *req, int status, const char *location)
{
    drop_stream(req);
    free(req->response);
    req->response = NULL;
    free(req->location);
    req->location = strdup(location);
    req->status = status;
}


void
http_set_cookie(http_req_t *req, const char *cookie)
{
    free(req->set_cookie);
    req->set_cookie = strdup(cookie);
}


void
http_reply(http_req_t *req, int status, cJSON *body)
{
    drop_stream(req);
    free(req->response);
    req->response = body ? cJSON_PrintUnformatted(body) : NULL;
    req->status = status;
    cJSON_Delete(body);
}


void
http_reply_text(http_req_t *req, int status, const char *json)
{
    drop_stream(req);
    free(req->response);
    req->response = strdup(json);
    req->status = status;
}


void
http_reply_stream(http_req_t *req, int status, const char *content_type,
    MHD_ContentReaderCallback read, MHD_ContentReaderFreeCallback done, void *cls)
{
    drop_stream(req);
    free(req->response);
    req->response = NULL;
    req->content_type = content_type;
    req->stream_read = read;
    req->stream_free = done;
    req->stream_cls = cls;
    req->status = status;
}


bool
http_stopping(void)
{
    return stopping;
}


void
http_error(http_req_t *req, int status, const char *code, const char *field,
    const char *fmt, ...)
{
    char     message[512];
    va_list  ap;
    cJSON   *root = cJSON_CreateObject();
    cJSON   *error = cJSON_AddObjectToObject(root, "error");
    cJSON   *details;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);

    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    details = cJSON_AddObjectToObject(error, "details");
    if (field != NULL) {
        cJSON_AddStringToObject(details, "field", field);
    }
    http_reply(req, status, root);
}


void
http_not_found(http_req_t *req, const char *what)
{
    http_error(req, 404, "not_found", NULL, "%s not found", what);
}


void
http_db_error(http_req_t *req, const char *what)
{
    const char *state = db_sqlstate(req->db);

    if (strcmp(state, "23505") == 0) {
        http_error(req, 409, "conflict", "name", "a %s with this name already exists", what);
    } else if (strcmp(state, "23503") == 0) {
        http_error(req, 409, "conflict", NULL, "the %s is in use", what);
    } else if (db_unavailable(req->db)) {
        http_error(req, 503, "unavailable", NULL, "the database is unreachable");
    } else {
        http_error(req, 500, "internal_error", NULL, "database error");
    }
}


static bool
parse_page_arg(http_req_t *req, const char *name, long def, long max, long *out)
{
    const char *v = http_query(req, name);
    char       *end;
    long        n;

    if (v == NULL || v[0] == '\0') {
        *out = def;
        return true;
    }
    n = strtol(v, &end, 10);
    if (*end != '\0' || n < 0 || n > max) {
        http_invalid(req, name, "%s must be an integer from %s to %ld", name,
                     strcmp(name, "pageSize") == 0 ? "1" : "0", max);
        return false;
    }
    *out = n;
    return true;
}


bool
http_page(http_req_t *req, long *page_index, long *page_size)
{
    if (!parse_page_arg(req, "pageIndex", 0, 1000000000L, page_index)
        || !parse_page_arg(req, "pageSize", 100, 1000, page_size))
    {
        return false;
    }
    if (*page_size == 0) {
        http_invalid(req, "pageSize", "pageSize must be an integer from 1 to 1000");
        return false;
    }
    return true;
}


/* logs and counts the answer */
static void
log_request(const http_req_t *req)
{
    struct timespec now;
    long            us;
    char            labels[METRICS_LABELS_SIZE];
    char            status[16];
    const char     *route = req->route ? req->route->pattern : "-";
    const char     *method = req->route ? req->route->method : "-";

    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (now.tv_sec - req->started.tv_sec) * 1000000
         + (now.tv_nsec - req->started.tv_nsec) / 1000;

    /* the route pattern, not the URL: ids and query strings stay out */
    log_write(req->status >= 500 ? LOG_ERROR : LOG_INFO,
              "http route=%s %s status=%d ms=%ld user=%s", req->method, route,
              req->status, us / 1000, req->username[0] ? req->username : "-");

    /* an unknown route's method is the client's text: not a label */
    snprintf(status, sizeof(status), "%d", req->status);
    metrics_labels(labels, "method", method, "route", route, "status", status, NULL);
    metrics_add(METRIC_HTTP_REQUESTS, labels, 1);
    metrics_labels(labels, "method", method, "route", route, NULL);
    metrics_observe(METRIC_HTTP_DURATION, labels, (double) us / 1e6);
}


static enum MHD_Result
send_answer(http_req_t *req)
{
    struct MHD_Response *resp;
    enum MHD_Result      rc;
    const char          *text = req->response ? req->response : "";

    if (req->stream_read != NULL) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, req->stream_read,
                                                 req->stream_cls, req->stream_free);
        if (resp != NULL) {
            /* the gateway's nginx passes each event on as it comes */
            MHD_add_response_header(resp, "X-Accel-Buffering", "no");
            /* MHD owns the stream now, and frees it with the response */
            req->stream_read = NULL;
            req->stream_free = NULL;
            req->stream_cls = NULL;
        }
    } else {
        resp = MHD_create_response_from_buffer(strlen(text), (void *) text,
                                               MHD_RESPMEM_MUST_COPY);
    }
    if (resp == NULL) {
        return MHD_NO;
    }
    if (req->response != NULL || req->content_type != NULL) {
        MHD_add_response_header(resp, "Content-Type",
                                req->content_type ? req->content_type : "application/json");
    }
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    /* a redirect's Location may carry a session token in its fragment: never logged */
    if (req->location != NULL) {
        MHD_add_response_header(resp, "Location", req->location);
    }
    if (req->set_cookie != NULL) {
        MHD_add_response_header(resp, "Set-Cookie", req->set_cookie);
    }
    if (req->retry_after > 0) {
        char seconds[16];

        snprintf(seconds, sizeof(seconds), "%d", req->retry_after);
        MHD_add_response_header(resp, "Retry-After", seconds);
    }
    rc = MHD_queue_response(req->conn, (unsigned) req->status, resp);
    MHD_destroy_response(resp);
    log_request(req);
    return rc;
}


static int
append_body(http_req_t *req, const char *data, size_t size)
{
    char *grown;

    if (req->body_too_large || req->body_len + size > HTTP_MAX_BODY) {
        req->body_too_large = true;
        return 0;
    }
    grown = realloc(req->body, req->body_len + size + 1);
    if (grown == NULL) {
        return -1;
    }
    memcpy(grown + req->body_len, data, size);
    req->body = grown;
    req->body_len += size;
    req->body[req->body_len] = '\0';
    return 0;
}


static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
    http_req_t *req = *con_cls;

    if (req == NULL) {
        req = calloc(1, sizeof(http_req_t));
        if (req == NULL) {
            return MHD_NO;
        }
        req->conn = conn;
        req->method = method;
        req->url = url;
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        *con_cls = req;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (append_body(req, upload_data, *upload_data_size) != 0) {
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    router_dispatch(req);
    return send_answer(req);
}


/* frees the request when MHD is done with it, whatever happened */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
    http_req_t *req = *con_cls;

    if (req == NULL) {
        return;
    }
    for (int i = 0; i < req->nparams; i++) {
        free(req->param_values[i]);
    }
    drop_stream(req);
    cJSON_Delete(req->json);
    cJSON_Delete(req->policies);
    cJSON_Delete(req->before);
    free(req->password_hash);
    /* a body may carry a provider secret in clear */
    if (req->body != NULL) {
        sodium_memzero(req->body, req->body_len);
    }
    free(req->body);
    free(req->response);
    free(req->location);
    free(req->set_cookie);
    free(req);
    *con_cls = NULL;
}


static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_warn("http: %s", msg);
}


int
http_start(const char *host, int port)
{
    struct sockaddr_in addr;

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t) port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        log_error("http: listen address \"%s\" is not an IPv4 address", host);
        return -1;
    }

    daemon_handle = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD
        | MHD_USE_ERROR_LOG,
        (uint16_t) port, NULL, NULL, on_request, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned) HTTP_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) HTTP_TIMEOUT_SECONDS,
        MHD_OPTION_END);
    if (daemon_handle == NULL) {
        log_error("http: cannot listen on %s:%d", host, port);
        return -1;
    }
    log_info("http: listening on %s:%d", host, port);
    return 0;
}


void
http_stop(void)
{
    stopping = true;
    if (daemon_handle != NULL) {
        MHD_stop_daemon(daemon_handle);
        daemon_handle = NULL;
    }
}
