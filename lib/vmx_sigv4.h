/*
 * vmx_sigv4: AWS Signature Version 4 for one HTTP request, signed in
 * headers (the "Authorization" header form), HMAC-SHA256 with OpenSSL.
 *
 * The canonical request follows the rules of services other than S3:
 * the path is normalized ("." and ".." segments resolved, empty segments
 * dropped) and every segment is URI-encoded (RFC 3986 unreserved
 * characters kept), on top of whatever encoding it already has on the
 * request line.  So a Bedrock path sent as "/model/a%3Ab/converse" is
 * signed as "/model/a%253Ab/converse", as AWS SDKs do.
 *
 * The query is taken as sent: each name and value is percent-decoded,
 * encoded again, and the pairs are sorted.  Signed headers are "host",
 * "x-amz-date", "x-amz-security-token" when there is a session token,
 * "x-amz-content-sha256" when asked, and the caller's extra headers
 * (e.g. "content-type"): names lowercased, values trimmed with inner runs
 * of spaces collapsed, repeated names joined with ",".
 *
 * Scratch memory comes from the output buffer's allocator, like the
 * buffer itself: nothing is freed one by one.
 */

#ifndef VMX_SIGV4_H
#define VMX_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "vmx_buf.h"
#include "vmx_sha256.h"


#define VMX_SIGV4_MAX_HEADERS  16     /* extra headers signed at most */


typedef struct {
    const char         *data;
    size_t              len;
} vmx_sigv4_str_t;

#define vmx_sigv4_string(s)  { (s), sizeof(s) - 1 }


typedef struct {
    vmx_sigv4_str_t     name;
    vmx_sigv4_str_t     value;
} vmx_sigv4_header_t;


/*
 * The day's signing key (the HMAC chain of the secret over the date, the
 * region and the service), kept between requests as AWS's SDKs keep it:
 * one per secret, region and service, which its keeper guarantees (a
 * connection's, dropped with its credentials).  Zeroed: empty.
 */
typedef struct {
    char                       date[8];        /* "20150830" */
    unsigned char              key[VMX_SHA256_LEN];
    unsigned                   valid:1;
} vmx_sigv4_key_t;


typedef struct {
    vmx_sigv4_str_t            method;         /* "POST" */
    vmx_sigv4_str_t            host;           /* the Host header sent */
    vmx_sigv4_str_t            path;           /* as on the request line */
    vmx_sigv4_str_t            query;          /* after '?', may be empty */

    const vmx_sigv4_header_t  *headers;        /* extra headers to sign */
    size_t                     nheaders;

    vmx_sigv4_str_t            payload;

    vmx_sigv4_str_t            region;         /* "us-east-1" */
    vmx_sigv4_str_t            service;        /* "bedrock" */
    vmx_sigv4_str_t            access_key_id;
    vmx_sigv4_str_t            secret_key;
    vmx_sigv4_str_t            session_token;  /* empty without one */

    int64_t                    time;           /* unix seconds */
    vmx_sigv4_key_t           *key;            /* the kept signing key, or
                                                  NULL: derived each time */
    unsigned                   content_sha256:1;  /* send and sign
                                                     x-amz-content-sha256 */
} vmx_sigv4_request_t;


/*
 * Appends the header lines to add to the request, each "Name: value\r\n":
 * X-Amz-Date, X-Amz-Security-Token (with a session token),
 * X-Amz-Content-Sha256 (when asked), then Authorization.  The request
 * must also carry the Host header and the extra headers exactly as given.
 * Returns 0, or -1 on an allocation failure, too many extra headers, a
 * time that is no date, a secret key over 256 bytes, or a session token or
 * access key id with a line break or NUL (they are written as they are).
 */
int vmx_sigv4_sign(const vmx_sigv4_request_t *r, vmx_buf_t *out);

/* the canonical request alone (for tests and debugging), 0 or -1 */
int vmx_sigv4_canonical_request(const vmx_sigv4_request_t *r,
    vmx_buf_t *out);

/* s URI-encoded as RFC 3986 (uppercase hex); '/' kept when keep_slash */
void vmx_sigv4_uri_encode(vmx_buf_t *out, const char *s, size_t len,
    int keep_slash);

#endif /* VMX_SIGV4_H */
