/*
 * vmx_spool: records framed by their lengths survive any payload bytes, and
 * a reader walking a spool finds every valid record around garbage, with
 * the garbage reported and nothing lost.
 */

#include <stdlib.h>

#include <zlib.h>

#include "vmx_spool.h"
#include "unit.h"


/* appends one framed record to buf at *n */
static void
frame(char *buf, size_t *n, const char *meta, size_t meta_len,
    const char *req, size_t req_len, const char *resp, size_t resp_len)
{
    uint32_t  crc;

    crc = vmx_spool_crc32(0, meta, meta_len);
    crc = vmx_spool_crc32(crc, req, req_len);
    crc = vmx_spool_crc32(crc, resp, resp_len);
    *n += vmx_spool_header(buf + *n, meta_len, req_len, resp_len, crc);
    memcpy(buf + *n, meta, meta_len);
    memcpy(buf + *n + meta_len, req, req_len);
    memcpy(buf + *n + meta_len + req_len, resp, resp_len);
    *n += meta_len + req_len + resp_len;
    buf[(*n)++] = '\n';
}


typedef struct {
    size_t   records;
    size_t   garbage;       /* bytes reported as garbage */
    size_t   pieces;        /* garbage items */
    char     metas[256];    /* the first byte of each record's meta */
} walk_t;


/* walks data as a reader does with a file grown in steps of `step` bytes
 * (0: all at once), finished at the end */
static walk_t
walk(const char *data, size_t len, size_t step)
{
    walk_t               w;
    size_t               pos, avail, used;
    const char          *reason;
    vmx_spool_record_t   rec;
    vmx_spool_rc_e       rc;

    memset(&w, 0, sizeof(w));
    pos = 0;
    avail = step ? 0 : len;

    for ( ;; ) {
        if (pos == avail) {
            if (avail == len) {
                break;
            }
            avail = avail + step > len ? len : avail + step;
            continue;
        }

        rc = vmx_spool_next(data + pos, avail - pos, avail == len, &rec,
                            &used, &reason);

        if (rc == VMX_SPOOL_MORE) {
            CHECK(avail < len);
            if (avail == len) {
                break;
            }
            avail = avail + step > len ? len : avail + step;
            continue;
        }

        CHECK(used > 0 && used <= avail - pos);

        if (rc == VMX_SPOOL_RECORD) {
            w.metas[w.records++ % sizeof(w.metas)] = rec.meta[0];
        } else {
            w.garbage += used;
            w.pieces++;
        }

        pos += used;
    }

    return w;
}


static void
test_header(void)
{
    char    buf[VMX_SPOOL_HEADER_MAX];
    size_t  n;

    n = vmx_spool_header(buf, 12, 0, 3456789, 0x0a1b2c3d);
    CHECK_MEM(buf, n, "VMX2 12 0 3456789 0a1b2c3d\n");

    n = vmx_spool_header(buf, VMX_SPOOL_META_MAX, VMX_SPOOL_PAYLOAD_MAX,
                         VMX_SPOOL_PAYLOAD_MAX, 0xffffffff);
    CHECK(n < VMX_SPOOL_HEADER_MAX);

    /* zlib's CRC-32 of "123456789" */
    CHECK(vmx_spool_crc32(0, "123456789", 9) == 0xcbf43926);

    /* zlib's sum at every length, alignment and chaining (spool files
       written before ISA-L computed it are read with it) */
    {
        static unsigned char  data[4096 + 64];
        size_t                i, len, at, cut;
        unsigned              same = 1;
        uint32_t              crc;

        for (i = 0; i < sizeof(data); i++) {
            data[i] = (unsigned char) (i * 2654435761u >> 13);
        }

        for (len = 0; len <= 4096; len += len < 300 ? 1 : 61) {
            for (at = 0; at < 16; at += 5) {
                cut = len / 3;
                crc = vmx_spool_crc32(vmx_spool_crc32(0, data + at, cut),
                                      data + at + cut, len - cut);
                same &= crc == (uint32_t) crc32(0, data + at, (uInt) len);
            }
        }

        CHECK(same);
    }
}


static void
test_hostile_payloads(void)
{
    static const char  meta[] = "{\"id\":\"a\"}";
    static const char  req[] = "{\n  \"x\": 1\n}\n\"},{\"id\":\"forged\"}\n"
                               "VMX2 1 0 0 00000000\n{\n";
    static const char  resp[] = "\0\xff\xfe\n\n\r\nVMX2 ";
    char               buf[1024];
    size_t             n = 0, used;
    const char        *reason;
    vmx_spool_record_t rec;

    frame(buf, &n, meta, sizeof(meta) - 1, req, sizeof(req) - 1, resp,
          sizeof(resp) - 1);

    CHECK(vmx_spool_next(buf, n, 1, &rec, &used, &reason) == VMX_SPOOL_RECORD);
    CHECK(used == n);
    CHECK_MEM(rec.meta, rec.meta_len, "{\"id\":\"a\"}");
    CHECK(rec.request_len == sizeof(req) - 1
          && memcmp(rec.request, req, rec.request_len) == 0);
    CHECK(rec.response_len == sizeof(resp) - 1
          && memcmp(rec.response, resp, rec.response_len) == 0);

    /* split anywhere, a live file asks for more and never misreads */
    for (size_t cut = 0; cut < n; cut++) {
        vmx_spool_rc_e rc = cut ? vmx_spool_next(buf, cut, 0, &rec, &used,
                                                 &reason)
                                : VMX_SPOOL_MORE;
        CHECK(rc == VMX_SPOOL_MORE);
    }

    /* one byte at a time and all at once: the same single record */
    CHECK(walk(buf, n, 1).records == 1 && walk(buf, n, 1).garbage == 0);
    CHECK(walk(buf, n, 0).records == 1);
}


static void
test_garbage_between_records(void)
{
    static const char  junk[] = "garbage\n{\"id\":\"x\"}\nVMX2 9 9 9 zzzzzzzz\n"
                                "VMX2 3 0 0 00000000\nabc\nVMX2";
    char               buf[4096];
    size_t             n = 0, total, steps[] = { 0, 1, 7, 64 };
    walk_t             w;

    frame(buf, &n, "A", 1, "", 0, "", 0);
    memcpy(buf + n, junk, sizeof(junk) - 1);
    n += sizeof(junk) - 1;
    frame(buf, &n, "B", 1, "{}", 2, "[1,2]", 5);
    frame(buf, &n, "C", 1, "\n\n", 2, "", 0);
    total = n;

    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        w = walk(buf, total, steps[i]);
        CHECK(w.records == 3);
        CHECK(w.metas[0] == 'A' && w.metas[1] == 'B' && w.metas[2] == 'C');
        CHECK(w.garbage == sizeof(junk) - 1);
    }

    /* a record whose payload byte flipped is garbage, its neighbours not */
    n = 0;
    frame(buf, &n, "A", 1, "xyz", 3, "", 0);
    buf[n - 2] ^= 1;
    frame(buf, &n, "B", 1, "", 0, "", 0);
    w = walk(buf, n, 0);
    CHECK(w.records == 1 && w.metas[0] == 'B' && w.pieces == 1);

    /* a finished file ending in half a record: garbage, the rest kept */
    n = 0;
    frame(buf, &n, "A", 1, "", 0, "", 0);
    frame(buf, &n, "B", 1, "0123456789", 10, "", 0);
    w = walk(buf, n - 4, 0);
    CHECK(w.records == 1 && w.metas[0] == 'A' && w.pieces == 1);

    /* lengths beyond the bounds are no record */
    n = (size_t) snprintf(buf, sizeof(buf), "VMX2 1 999999999999 0 00000000\n");
    frame(buf, &n, "Z", 1, "", 0, "", 0);
    w = walk(buf, n, 0);
    CHECK(w.records == 1 && w.metas[0] == 'Z');
}


static void
test_large_payload(void)
{
    size_t   size = 10 * 1024 * 1024, n = 0;
    char    *big = malloc(size), *buf = malloc(size + 256);
    walk_t   w;

    for (size_t i = 0; i < size; i++) {
        big[i] = (char) (i * 131 + 7);
    }

    frame(buf, &n, "{}", 2, big, size, "", 0);
    w = walk(buf, n, 65536);
    CHECK(w.records == 1 && w.garbage == 0);

    free(big);
    free(buf);
}


int
main(void)
{
    test_header();
    test_hostile_payloads();
    test_garbage_between_records();
    test_large_payload();

    return UNIT_REPORT();
}
