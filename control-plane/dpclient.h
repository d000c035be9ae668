/*
 * dpclient: the HTTP client of the config and records channels, the one
 * way the control plane speaks to its data planes (pusher.c, ingest.c).
 * Each holder (a thread) keeps one connection per data plane alive between
 * calls; every call carries the bearer token of VMX_DATAPLANE_TOKEN_FILE
 * (read once, at dpclient_init()), has the timeouts and a bound on its
 * answer.
 */

#ifndef CP_DPCLIENT_H
#define CP_DPCLIENT_H

#include <curl/curl.h>

#include "config.h"
#include "httpc.h"

typedef struct {
    const char      *base;          /* the data plane as configured: the config's,
                                       which lives as long as the daemon */
    long             timeout_ms;    /* of a whole call */
    CURL            *curl;          /* owned: kept alive, NULL until the first call */
    httpc_answer_t   answer;        /* owned: the last call's body, reused */
    char             error[CURL_ERROR_SIZE];    /* the last call's transport failure */
} dpclient_t;

/* reads the data planes' token (with data planes configured); -1 with the reason logged */
int dpclient_init(const config_t *cfg);

/* wipes and frees the token */
void dpclient_cleanup(void);

void dpclient_open(dpclient_t *dc, const char *base, long timeout_ms);

/* closes the connection, frees the answer */
void dpclient_close(dpclient_t *dc);

/*
 * method on <base><path> (path with its query, escaped), with body (JSON,
 * NULL: none) and range ("first-last", NULL: none); the answer's body, at
 * most max bytes, in dc->answer.  The HTTP status, or 0 with the cause in
 * dc->error (the caller's log line names the data plane, dc->base, and the
 * call).
 */
long dpclient_call(dpclient_t *dc, const char *method, const char *path, const char *body,
    const char *range, size_t max);

#endif
