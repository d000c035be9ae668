/*
 * libFuzzer target of vmx_inflate.  Input: one byte of flags (bit 0: gzip,
 * else deflate; bit 1: compress the rest first, as gzip, zlib or raw
 * deflate by bits 2-3, so that mutations reach valid streams; bits 4-7: the
 * output buffer's size, 1 to 16 bytes times 64), one byte of the piece size
 * of the cut feed, then the body.  The body is decoded whole, in pieces and
 * byte by byte: all three must give the same bytes and end the same way,
 * and a body compressed here must come back as it was.  The plain bytes
 * also go through the stream error helpers of vmx_translate, which must
 * not crash on them.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "vmx_inflate.h"
#include "vmx_translate.h"

#include "fuzz_common.h"


#define MAX_PLAIN  (1 << 20)


typedef struct {
    uint64_t     hash;
    size_t       len;
    char        *copy;        /* the bytes, for the first decode only */
} outcome_t;


static int
on_plain(void *ctx, const char *p, size_t n)
{
    outcome_t  *o = ctx;

    o->hash = hash_bytes(o->hash, p, n);

    if (o->copy != NULL && o->len + n <= MAX_PLAIN) {
        memcpy(o->copy + o->len, p, n);
    }

    o->len += n;

    /* a bomb is cut off: the consumer bounds what it keeps */
    return o->len > 16 * MAX_PLAIN;
}


static int
decode(int format, const uint8_t *data, size_t len, size_t step, size_t cap,
    outcome_t *o)
{
    int            rc = VMX_INFLATE_OK;
    size_t         i, n;
    char          *buf;
    arena_t        a = ARENA_UNBOUNDED;
    vmx_inflate_t  z;

    buf = malloc(cap);
    check(buf != NULL);

    vmx_inflate_init(&z, format, buf, cap, arena_alloc, &a);
    o->hash = 0xcbf29ce484222325ULL;
    o->len = 0;

    for (i = 0; i < len && rc == VMX_INFLATE_OK; i += n) {
        n = (step == 0 || step > len - i) ? len - i : step;
        rc = vmx_inflate_feed(&z, (const char *) data + i, n, on_plain, o);
    }

    if (rc == VMX_INFLATE_OK) {
        rc = vmx_inflate_finish(&z);
    }

    free(buf);
    arena_free(&a);

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 format, rc1, rc2, rc3, bits;
    size_t              cap, step, len;
    uint8_t            *z = NULL;
    uLongf              zlen;
    z_stream            zs;
    outcome_t           o1, o2, o3;
    arena_t             a = ARENA_UNBOUNDED;
    vmx_stream_error_t  e;
    const uint8_t      *body;

    if (size < 2) {
        return 0;
    }

    format = (data[0] & 1) ? VMX_INFLATE_GZIP : VMX_INFLATE_DEFLATE;
    cap = 64 * (1 + (data[0] >> 4));
    step = data[1];
    body = data + 2;
    len = size - 2;

    if (data[0] & 2) {
        bits = (data[0] & 1) ? 16 + MAX_WBITS
               : ((data[0] & 4) ? MAX_WBITS : -MAX_WBITS);

        zlen = compressBound(len) + 64;
        z = malloc(zlen);
        check(z != NULL);

        memset(&zs, 0, sizeof(zs));
        check(deflateInit2(&zs, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY)
              == Z_OK);
        zs.next_in = (Bytef *) body;
        zs.avail_in = (uInt) len;
        zs.next_out = z;
        zs.avail_out = (uInt) zlen;
        check(deflate(&zs, Z_FINISH) == Z_STREAM_END);
        zlen -= zs.avail_out;
        deflateEnd(&zs);
    }

    o1.copy = malloc(MAX_PLAIN);
    o2.copy = NULL;
    o3.copy = NULL;
    check(o1.copy != NULL);

    if (z != NULL) {
        rc1 = decode(format, z, zlen, 0, cap, &o1);
        rc2 = decode(format, z, zlen, step, cap, &o2);
        rc3 = decode(format, z, zlen, 1, cap, &o3);

        /* what was compressed comes back */
        check(rc1 == VMX_INFLATE_OK && o1.len == len
              && memcmp(o1.copy, body, len) == 0);

    } else {
        rc1 = decode(format, body, len, 0, cap, &o1);
        rc2 = decode(format, body, len, step, cap, &o2);
        rc3 = decode(format, body, len, 1, cap, &o3);
    }

    /* however the body is cut, it ends the same way (a stop by the
       handler aside, which comes after as many bytes, not at one end) */
    if (rc1 <= 0 && rc2 <= 0 && rc3 <= 0) {
        check(rc1 == rc2 && rc2 == rc3);
        check(rc1 != VMX_INFLATE_OK
              || (o1.hash == o2.hash && o2.hash == o3.hash
                  && o1.len == o2.len && o2.len == o3.len));
    }

    len = o1.len < MAX_PLAIN ? o1.len : MAX_PLAIN;

    if (vmx_openai_stream_error(o1.copy, len, arena_alloc, &a, &e)) {
        check(e.status >= 400 && e.status <= 599 && e.message != NULL);
    }

    (void) vmx_openai_stream_substantive(o1.copy, len, arena_alloc, &a);

    arena_free(&a);
    free(o1.copy);
    free(z);

    return 0;
}
