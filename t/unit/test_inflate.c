/*
 * Unit tests of lib/vmx_inflate.c: gzip and both kinds of deflate, split at
 * every byte, empty, truncated, corrupt, concatenated members.
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_inflate.h"


static void *
heap_alloc(void *ctx, size_t size)
{
    /* the tests leak their few zlib states */
    return malloc(size);
}


static char    got[1 << 20];
static size_t  ngot;


static int
collect(void *ctx, const char *data, size_t len)
{
    if (ngot + len > sizeof(got)) {
        return 1;
    }

    memcpy(got + ngot, data, len);
    ngot += len;

    return 0;
}


/* text compressed: windowBits 16+15 gzip, 15 zlib, -15 raw deflate */
static size_t
compress_as(const char *text, size_t len, int bits, unsigned char *out,
    size_t cap)
{
    z_stream  zs;

    memset(&zs, 0, sizeof(zs));

    if (deflateInit2(&zs, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        return 0;
    }

    zs.next_in = (Bytef *) text;
    zs.avail_in = (uInt) len;
    zs.next_out = out;
    zs.avail_out = (uInt) cap;

    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&zs);
        return 0;
    }

    deflateEnd(&zs);

    return cap - zs.avail_out;
}


/* feeds data in pieces of step bytes (0: whole); the finish result */
static int
decode(int format, const unsigned char *data, size_t len, size_t step,
    size_t cap, int *feed_rc)
{
    int            rc;
    size_t         i, n;
    char          *buf;
    vmx_inflate_t  z;

    buf = malloc(cap);
    vmx_inflate_init(&z, format, buf, cap, heap_alloc, NULL);
    ngot = 0;
    *feed_rc = VMX_INFLATE_OK;

    for (i = 0; i < len; i += n) {
        n = (step == 0 || step > len - i) ? len - i : step;

        rc = vmx_inflate_feed(&z, (const char *) data + i, n, collect, NULL);

        if (rc != VMX_INFLATE_OK) {
            *feed_rc = rc;
            break;
        }
    }

    rc = vmx_inflate_finish(&z);
    free(buf);

    return rc;
}


static const char  text[] =
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n"
    "data: [DONE]\n\n";


static void
test_formats_split_everywhere(void)
{
    static const struct {
        int  format;
        int  bits;
    } kinds[] = {
        { VMX_INFLATE_GZIP, 16 + MAX_WBITS },
        { VMX_INFLATE_DEFLATE, MAX_WBITS },       /* zlib-wrapped */
        { VMX_INFLATE_DEFLATE, -MAX_WBITS },      /* raw */
    };
    unsigned char  z[4096];
    size_t         k, n, step, len = sizeof(text) - 1;
    int            feed_rc, ok;

    for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        n = compress_as(text, len, kinds[k].bits, z, sizeof(z));
        CHECK(n > 0);

        for (step = 0, ok = 1; step <= n; step++) {
            /* output pieces of 1, 7 and 4096 bytes too */
            ok &= (decode(kinds[k].format, z, n, step, step % 3 == 0 ? 1
                          : (step % 3 == 1 ? 7 : 4096), &feed_rc)
                   == VMX_INFLATE_OK);
            ok &= (feed_rc == VMX_INFLATE_OK && ngot == len
                   && memcmp(got, text, len) == 0);
        }

        CHECK(ok);
    }
}


static void
test_empty_truncated_corrupt(void)
{
    unsigned char  z[4096];
    size_t         n, cut, len = sizeof(text) - 1;
    int            feed_rc, ok;

    /* an empty body is an empty answer, not an error */
    CHECK(decode(VMX_INFLATE_GZIP, (const unsigned char *) "", 0, 0, 64,
                 &feed_rc) == VMX_INFLATE_OK
          && ngot == 0);

    /* an empty text, gzipped */
    n = compress_as("", 0, 16 + MAX_WBITS, z, sizeof(z));
    CHECK(decode(VMX_INFLATE_GZIP, z, n, 1, 64, &feed_rc) == VMX_INFLATE_OK
          && feed_rc == VMX_INFLATE_OK && ngot == 0);

    /* cut anywhere: truncated (the bytes before may have been decoded) */
    n = compress_as(text, len, 16 + MAX_WBITS, z, sizeof(z));

    for (cut = 1, ok = 1; cut < n; cut++) {
        ok &= (decode(VMX_INFLATE_GZIP, z, cut, 3, 64, &feed_rc)
               == VMX_INFLATE_TRUNCATED);
        ok &= (feed_rc == VMX_INFLATE_OK);
    }

    CHECK(ok);

    /* not gzip at all */
    CHECK(decode(VMX_INFLATE_GZIP, (const unsigned char *) "{\"a\":1}", 7, 0,
                 64, &feed_rc) == VMX_INFLATE_CORRUPT
          && feed_rc == VMX_INFLATE_CORRUPT);

    /* a flipped byte in the compressed data or its CRC */
    z[n / 2] ^= 0x55;
    CHECK(decode(VMX_INFLATE_GZIP, z, n, 5, 64, &feed_rc)
          == VMX_INFLATE_CORRUPT && feed_rc == VMX_INFLATE_CORRUPT);
    z[n / 2] ^= 0x55;

    z[n - 6] ^= 0x01;
    CHECK(decode(VMX_INFLATE_GZIP, z, n, 0, 64, &feed_rc)
          == VMX_INFLATE_CORRUPT);
    z[n - 6] ^= 0x01;

    /* garbage after the end */
    memcpy(z + n, "xyz", 3);
    CHECK(decode(VMX_INFLATE_GZIP, z, n + 3, 0, 64, &feed_rc)
          == VMX_INFLATE_CORRUPT);

    /* an error sticks */
    CHECK(decode(VMX_INFLATE_DEFLATE, (const unsigned char *) "\xff\xff\xff",
                 3, 1, 64, &feed_rc) == VMX_INFLATE_CORRUPT);
}


static void
test_members_and_stop(void)
{
    unsigned char  z[8192];
    size_t         n, m, len = sizeof(text) - 1;
    int            feed_rc;
    char           buf[16];
    vmx_inflate_t  st;

    /* two gzip members: both decoded, whatever the split */
    n = compress_as(text, len, 16 + MAX_WBITS, z, sizeof(z));
    m = compress_as("tail", 4, 16 + MAX_WBITS, z + n, sizeof(z) - n);

    CHECK(decode(VMX_INFLATE_GZIP, z, n + m, 1, 5, &feed_rc)
          == VMX_INFLATE_OK && ngot == len + 4
          && memcmp(got + len, "tail", 4) == 0);

    /* the handler's nonzero value stops the feed and is returned */
    vmx_inflate_init(&st, VMX_INFLATE_GZIP, buf, sizeof(buf), heap_alloc,
                     NULL);
    ngot = sizeof(got) - 3;
    CHECK(vmx_inflate_feed(&st, (const char *) z, n, collect, NULL) == 1);
}


int
main(void)
{
    test_formats_split_everywhere();
    test_empty_truncated_corrupt();
    test_members_and_stop();

    return UNIT_REPORT();
}
