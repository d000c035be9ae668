/*
 * vmx_inflate: see vmx_inflate.h.
 */

#include <string.h>

#include "vmx_inflate.h"


static voidpf
vmx_inflate_zalloc(voidpf opaque, uInt items, uInt size)
{
    vmx_inflate_t  *z = opaque;

    return z->alloc(z->alloc_ctx, (size_t) items * size);
}


static void
vmx_inflate_zfree(voidpf opaque, voidpf address)
{
    /* the allocator's memory goes with it */
}


void
vmx_inflate_init(vmx_inflate_t *z, int format, char *buf, size_t cap,
    vmx_json_alloc_pt alloc, void *alloc_ctx)
{
    memset(z, 0, sizeof(vmx_inflate_t));

    z->format = format;
    z->buf = buf;
    z->cap = cap;
    z->alloc = alloc;
    z->alloc_ctx = alloc_ctx;
}


/* a new stream of the format: its window bits once its kind is known */
static int
vmx_inflate_start(vmx_inflate_t *z, int bits)
{
    int  rc;

    if (z->zs.state != NULL) {
        rc = inflateReset2(&z->zs, bits);

    } else {
        z->zs.zalloc = vmx_inflate_zalloc;
        z->zs.zfree = vmx_inflate_zfree;
        z->zs.opaque = z;
        rc = inflateInit2(&z->zs, bits);
    }

    if (rc != Z_OK) {
        return (rc == Z_MEM_ERROR) ? VMX_INFLATE_NOMEM : VMX_INFLATE_CORRUPT;
    }

    z->state = 1;

    return VMX_INFLATE_OK;
}


/* deflate: zlib's two-byte header (CM 8, check bits), else raw deflate */
static int
vmx_inflate_bits(vmx_inflate_t *z)
{
    if (z->format == VMX_INFLATE_GZIP) {
        return 16 + MAX_WBITS;
    }

    if ((z->head[0] & 0x0f) == 8 && (z->head[0] >> 4) <= 7
        && ((z->head[0] << 8) | z->head[1]) % 31 == 0)
    {
        return MAX_WBITS;
    }

    return -MAX_WBITS;
}


static int
vmx_inflate_run(vmx_inflate_t *z, const unsigned char *in, size_t len,
    vmx_inflate_pt handler, void *ctx)
{
    int     rc, zrc;
    size_t  n;

    while (len) {

        if (z->state == 2) {
            /* after a gzip member another may follow; anything else is
               garbage after the end */
            if (z->format != VMX_INFLATE_GZIP || in[0] != 0x1f) {
                return VMX_INFLATE_CORRUPT;
            }

            rc = vmx_inflate_start(z, 16 + MAX_WBITS);
            if (rc != VMX_INFLATE_OK) {
                return rc;
            }
        }

        n = len > 0x40000000 ? 0x40000000 : len;

        z->zs.next_in = (Bytef *) in;
        z->zs.avail_in = (uInt) n;

        do {
            z->zs.next_out = (Bytef *) z->buf;
            z->zs.avail_out = (uInt) z->cap;

            zrc = inflate(&z->zs, Z_NO_FLUSH);

            if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
                return (zrc == Z_MEM_ERROR) ? VMX_INFLATE_NOMEM
                                            : VMX_INFLATE_CORRUPT;
            }

            if (z->cap - z->zs.avail_out) {
                rc = handler(ctx, z->buf, z->cap - z->zs.avail_out);
                if (rc != 0) {
                    return rc;
                }
            }

            if (zrc == Z_STREAM_END) {
                z->state = 2;
                break;
            }

        } while (zrc == Z_OK && (z->zs.avail_out == 0 || z->zs.avail_in));

        n -= z->zs.avail_in;
        in += n;
        len -= n;

        if (zrc != Z_STREAM_END && n == 0) {
            /* cannot happen: zlib took nothing and asked for nothing */
            return VMX_INFLATE_CORRUPT;
        }
    }

    return VMX_INFLATE_OK;
}


int
vmx_inflate_feed(vmx_inflate_t *z, const char *data, size_t len,
    vmx_inflate_pt handler, void *ctx)
{
    int                   rc;
    const unsigned char  *in = (const unsigned char *) data;

    if (z->failed) {
        return z->failed;
    }

    if (z->state == 0) {
        /* deflate's kind needs its first two bytes, which may come apart */
        while (z->nhead < 2 && len) {
            z->head[z->nhead++] = *in++;
            len--;
        }

        if (z->nhead < 2) {
            return VMX_INFLATE_OK;
        }

        rc = vmx_inflate_start(z, vmx_inflate_bits(z));

        if (rc == VMX_INFLATE_OK) {
            rc = vmx_inflate_run(z, z->head, 2, handler, ctx);
        }

        if (rc != VMX_INFLATE_OK) {
            if (rc < 0) {
                z->failed = rc;
            }

            return rc;
        }
    }

    rc = vmx_inflate_run(z, in, len, handler, ctx);

    if (rc < 0) {
        z->failed = rc;
    }

    return rc;
}


int
vmx_inflate_finish(const vmx_inflate_t *z)
{
    if (z->failed) {
        return z->failed;
    }

    if (z->state == 2 || (z->state == 0 && z->nhead == 0)) {
        return VMX_INFLATE_OK;
    }

    return VMX_INFLATE_TRUNCATED;
}


const char *
vmx_inflate_strerror(int rc)
{
    switch (rc) {
    case VMX_INFLATE_OK:
        return "ok";
    case VMX_INFLATE_CORRUPT:
        return "corrupt";
    case VMX_INFLATE_TRUNCATED:
        return "truncated";
    case VMX_INFLATE_NOMEM:
        return "out of memory";
    default:
        return "stopped";
    }
}
