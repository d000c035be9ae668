/*
 * httpc: the outgoing side of HTTP (libcurl easy handles), shared by the
 * data plane client (dpclient.c), the batch runner (batch_runner.c), STS
 * (sts.c), KMS (kms.c), OIDC (oidc.c)
 * and the OTLP export (otel.c).  The caller prepares the handle (URL,
 * method, headers, body, auth); httpc_perform() adds the answer collection,
 * the timeouts and the thread safety options, runs it, and leaves the
 * handle to the caller.
 */

#ifndef CP_HTTPC_H
#define CP_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#define HTTPC_CONNECT_TIMEOUT_MS  2000L
#define HTTPC_TOTAL_TIMEOUT_MS    10000L

/* an answer's body, collected up to max bytes */
typedef struct {
    char    *data;                  /* NUL-terminated, NULL until a byte came */
    size_t   len;
    size_t   size;                  /* allocated */
    size_t   max;
    bool     wipe;                  /* credentials: no copy left behind when growing */
} httpc_answer_t;

/*
 * The HTTP status, or 0 with error filled on a transport failure (or an
 * answer longer than max bytes).  *answer is the body, NUL-terminated,
 * malloc'd (caller frees), or NULL when empty.  Buffers outgrown while
 * collecting are wiped, so an answer carrying credentials leaves no copy
 * behind but *answer itself (wipe it with sodium_memzero() before free).
 */
long httpc_perform(CURL *curl, size_t max, char **answer, char *error,
    size_t error_size);

/*
 * As httpc_perform() with a total timeout of timeout_ms, the body into
 * a (emptied first, its buffer reused: a kept-alive caller's).
 */
long httpc_perform_into(CURL *curl, httpc_answer_t *a, long timeout_ms, char *error,
    size_t error_size);

/*
 * For a handle the caller runs itself (in a curl multi): the answer
 * collection into a (emptied first), the timeouts (a total of timeout_ms)
 * and the thread safety options; a transport failure's text goes into
 * detail (CURL_ERROR_SIZE bytes, which must outlive the transfer).
 */
void httpc_prepare(CURL *curl, httpc_answer_t *a, long timeout_ms, char *detail);

/* wipes the request's header lines (they may hold tokens) and frees them
 * and the handle (either may be NULL) */
void httpc_cleanup(CURL *curl, struct curl_slist *headers);

#endif
