/*
 * vmx_inflate: a streaming decoder of an HTTP body's Content-Encoding gzip
 * or deflate, fed with whatever a socket read returned.
 *
 * The gateway asks providers for identity, but a provider (or a proxy in
 * front of it) may compress anyway; everything after the body framing
 * (translation, token counts, the audit, the client) must see plain bytes.
 * "deflate" is zlib-wrapped as RFC 9110 says, or raw deflate as some
 * servers send it: the first two bytes tell.  Concatenated gzip members
 * are decoded one after the other.
 *
 * Memory: zlib's state from the caller's allocator (never freed one by
 * one, as with an nginx pool) and the caller's output buffer: the plain
 * bytes go to the handler in pieces of at most cap bytes, so a small
 * compressed body that inflates to a lot never sits in memory whole; the
 * consumer bounds what it keeps.  An error sticks.
 */

#ifndef VMX_INFLATE_H
#define VMX_INFLATE_H

#include <stddef.h>

#include <zlib.h>

#include "vmx_json.h"


#define VMX_INFLATE_GZIP      1
#define VMX_INFLATE_DEFLATE   2

#define VMX_INFLATE_OK        0
#define VMX_INFLATE_CORRUPT  -1       /* not gzip/deflate, bad check value */
#define VMX_INFLATE_TRUNCATED -2      /* the body ended inside the stream */
#define VMX_INFLATE_NOMEM    -3


/* return 0 to go on; any other value stops the feed and is returned by it */
typedef int (*vmx_inflate_pt)(void *ctx, const char *data, size_t len);


typedef struct {
    z_stream            zs;
    int                 format;
    int                 state;        /* 0 before the first byte, 1 inside
                                         a stream, 2 after its end */
    int                 failed;       /* the error that stuck, or 0 */
    unsigned char       head[2];      /* deflate: bytes telling the kind */
    size_t              nhead;
    char               *buf;
    size_t              cap;
    vmx_json_alloc_pt   alloc;
    void               *alloc_ctx;
} vmx_inflate_t;


/* format: VMX_INFLATE_GZIP or VMX_INFLATE_DEFLATE; buf of cap bytes */
void vmx_inflate_init(vmx_inflate_t *z, int format, char *buf, size_t cap,
    vmx_json_alloc_pt alloc, void *alloc_ctx);

/*
 * Decodes len bytes, handing every plain byte to the handler.  Returns
 * VMX_INFLATE_OK, an error, or the handler's nonzero value.
 */
int vmx_inflate_feed(vmx_inflate_t *z, const char *data, size_t len,
    vmx_inflate_pt handler, void *ctx);

/* at the body's end: VMX_INFLATE_OK when it ended after a whole stream or
   was empty, VMX_INFLATE_TRUNCATED, or the error that stuck */
int vmx_inflate_finish(const vmx_inflate_t *z);

/* a message for an error code, for logs and failure reasons */
const char *vmx_inflate_strerror(int rc);

#endif /* VMX_INFLATE_H */
