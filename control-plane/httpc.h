/*
 * httpc: the outgoing side of HTTP (libcurl easy handles), shared by the
 * config channel (pusher.c), the records channel (ingest.c), STS (sts.c)
 * and KMS (kms.c).  The caller prepares the
 * handle (URL, method, headers, body, auth); httpc_perform() adds the
 * answer collection, the timeouts and the thread safety options, runs it,
 * and leaves the handle to the caller.
 */

#ifndef CP_HTTPC_H
#define CP_HTTPC_H

#include <stddef.h>

#include <curl/curl.h>

#define HTTPC_CONNECT_TIMEOUT_MS  2000L
#define HTTPC_TOTAL_TIMEOUT_MS    10000L

/*
 * The HTTP status, or 0 with error filled on a transport failure (or an
 * answer longer than max bytes).  *answer is the body, NUL-terminated,
 * malloc'd (caller frees), or NULL when empty.  Buffers outgrown while
 * collecting are wiped, so an answer carrying credentials leaves no copy
 * behind but *answer itself (wipe it with sodium_memzero() before free).
 */
long httpc_perform(CURL *curl, size_t max, char **answer, char *error,
    size_t error_size);

/* wipes the request's header lines (they may hold tokens) and frees them
 * and the handle (either may be NULL) */
void httpc_cleanup(CURL *curl, struct curl_slist *headers);

#endif
