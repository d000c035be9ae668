/*
 * http: the request object shared by the server glue (http.c), the router
 * (router.c) and the handlers (api_*.c), and the reply helpers.
 *
 * A handler reads req->json (the parsed body, NULL when there is none),
 * path parameters with http_param(), uses req->db (a pooled connection the
 * router acquired for the request and releases after it; the password
 * code gives it back while argon2id runs and takes another), and answers with
 * exactly one of the http_reply* / http_error* calls.
 */

#ifndef CP_HTTP_H
#define CP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "crypto.h"
#include "db.h"

#define HTTP_MAX_BODY    (1024 * 1024)
#define HTTP_MAX_PARAMS  4

typedef struct route_s   route_t;
typedef struct http_req_s http_req_t;

typedef void (*http_handler_pt)(http_req_t *req);

/* a route's further conditions (router.c) */
#define ROUTE_OWNER           0x1   /* an OWNER of {ws} */
#define ROUTE_OWNER_OR_SELF   0x2   /* an OWNER of {ws}, or {id} is the caller */
#define ROUTE_ALL_WORKSPACES  0x4   /* answers across workspaces */
#define ROUTE_API_KEY         0x8   /* an API key of {env} authenticates too */

/*
 * One entry of the route table (router.c).  The caller needs action on the
 * resource the template names once its {ws}, {env} and {id} are the names
 * of those objects and any other {field} the body's field of that name:
 * "workspace:{ws}:environment:{env}:ai-connection:{id}".  A route with an
 * action and no resource is any logged-in user's own (their profile, their
 * sessions); one with no action needs no login.
 */
struct route_s {
    const char       *method;
    const char       *pattern;      /* "/api/v1/workspaces/{ws}" */
    http_handler_pt   handler;
    const char       *action;       /* "workspace:get"; NULL: no authentication */
    const char       *resource;     /* "workspace:{ws}"; NULL: the caller's own */
    unsigned          flags;        /* ROUTE_* */
};

struct http_req_s {
    struct MHD_Connection  *conn;
    const char             *method;         /* MHD's, valid for the request */
    const char             *url;            /* MHD's, valid for the request */
    struct timespec         started;

    char                   *body;           /* owned, NUL-terminated */
    size_t                  body_len;
    bool                    body_too_large;

    const route_t          *route;          /* matched route, NULL when none */
    const char             *param_names[HTTP_MAX_PARAMS];   /* into the route */
    char                   *param_values[HTTP_MAX_PARAMS];  /* owned */
    int                     nparams;

    cJSON                  *json;           /* owned parsed body */
    db_conn_t              *db;             /* pooled, owned by the router */

    char                    user_id[UUID_LEN + 1];   /* "" when anonymous */
    char                    username[129];
    char                    token_hash[SHA256_HEX_LEN + 1];
    char                    api_key_id[UUID_LEN + 1];  /* the key that authenticated, "" */
    bool                    must_change_password;    /* state CHANGE_PASSWORD */
    bool                    config_changed; /* the change bumped the config version */
    cJSON                  *policies;       /* owned: the policies of the caller's roles */
    bool                    all_workspaces; /* may act in workspaces without membership */

    cJSON                  *before;         /* owned: the changed object before (activity.c) */
    char                   *password_hash;  /* owned: of the body's new password (passwords.c) */
    bool                    old_password_ok; /* the body's oldPassword is the caller's */

    int                     status;         /* the answer, 0 until set */
    int                     retry_after;    /* seconds for a Retry-After header, 0: none */
    char                   *response;       /* owned JSON text, NULL for none */
    const char             *content_type;   /* of response, NULL: application/json */
    char                   *location;       /* owned Location header, NULL for none */
    char                   *set_cookie;     /* owned Set-Cookie header, NULL for none */

    /* a streamed answer (http_reply_stream()), NULL for none */
    MHD_ContentReaderCallback      stream_read;
    MHD_ContentReaderFreeCallback  stream_free;
    void                          *stream_cls;     /* owned until MHD takes it */
};

/* value of the {name} segment of the matched route */
const char *http_param(const http_req_t *req, const char *name);

/* a query argument or header, NULL when absent */
const char *http_query(const http_req_t *req, const char *name);
const char *http_header(const http_req_t *req, const char *name);

/* whether the request carries "Authorization: Bearer <token>" (in constant time) */
bool http_bearer_is(const http_req_t *req, const char *token);
const char *http_cookie(const http_req_t *req, const char *name);

/* the client's address ("192.0.2.7", "::1") into out[HTTP_ADDR_LEN], "" when
 * unknown: the peer's or, when the peer is loopback (the gateway's nginx),
 * the last X-Forwarded-For entry when that is an IP address */
#define HTTP_ADDR_LEN  46
void http_client_address(const http_req_t *req, char *out);

/* answers status with body (taken: deleted here), or no body when NULL */
void http_reply(http_req_t *req, int status, cJSON *body);

/* answers status (302, 303) with no body and a Location (copied) */
void http_redirect(http_req_t *req, int status, const char *location);

/* adds a Set-Cookie header (copied) to whatever answer the request gets */
void http_set_cookie(http_req_t *req, const char *cookie);

/*
 * answers status with a body of content_type that MHD reads from read, on
 * the connection's thread (it may block), after the handler and its
 * transaction are done; done(cls) runs once the stream ends, or at once
 * when another answer replaces this one
 */
void http_reply_stream(http_req_t *req, int status, const char *content_type,
    MHD_ContentReaderCallback read, MHD_ContentReaderFreeCallback done, void *cls);

/* the server is stopping: a long stream ends */
bool http_stopping(void);

/* answers status with JSON text (copied) */
void http_reply_text(http_req_t *req, int status, const char *json);

/* answers {"error":{"code","message","details"}}; field, when given, goes
 * into details as {"field": field} */
void http_error(http_req_t *req, int status, const char *code, const char *field,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* 400 validation_error naming the field */
#define http_invalid(req, field, ...) \
    http_error(req, 400, "validation_error", field, __VA_ARGS__)

void http_not_found(http_req_t *req, const char *what);

/* maps the SQLSTATE of the last failed query on req->db to an answer:
 * unique violation -> 409 "<what> name is taken", foreign key -> 409
 * in use, else 500 */
void http_db_error(http_req_t *req, const char *what);

/*
 * pageIndex and pageSize query arguments (defaults 0 and 100, pageSize at
 * most 1000); false after answering 400 when invalid
 */
bool http_page(http_req_t *req, long *page_index, long *page_size);

/* starts and stops the HTTP server */
int http_start(const char *host, int port);
void http_stop(void);

/* the router (router.c): finds the route, authenticates, parses the body,
 * runs the handler; always leaves an answer in req */
void router_dispatch(http_req_t *req);

/* writes the route table to out, one "METHOD pattern permission" line per
 * route ("-" for no authentication): vmx-control-plane --routes */
void router_print_routes(FILE *out);

#endif
