/*
 * libFuzzer target of vmx_spool.  The input is read as a finished spool
 * file and also as one still written and grown a byte at a time: every byte
 * must be a record or garbage exactly once, both walks must find the same
 * records, and every record must lie inside the input.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_spool.h"

#include "fuzz_common.h"


typedef struct {
    size_t   records;
    size_t   record_bytes;
    uint64_t hash;
} outcome_t;


static outcome_t
walk(const char *data, size_t len, int grow)
{
    outcome_t            o = { 0, 0, 1469598103934665603ULL };
    size_t               pos = 0, avail = grow ? 0 : len, used;
    const char          *reason;
    vmx_spool_record_t   rec;
    vmx_spool_rc_e       rc;

    while (pos < len) {
        if (pos == avail) {
            avail++;
            continue;
        }
        rc = vmx_spool_next(data + pos, avail - pos, avail == len, &rec, &used,
                            &reason);
        if (rc == VMX_SPOOL_MORE) {
            check(avail < len && used > avail - pos);
            avail++;
            continue;
        }
        check(used > 0 && used <= avail - pos);
        if (rc == VMX_SPOOL_RECORD) {
            check(rec.meta == data + pos + (used - 1 - rec.meta_len
                                            - rec.request_len
                                            - rec.response_len));
            check(rec.response + rec.response_len == data + pos + used - 1);
            o.records++;
            o.record_bytes += used;
            o.hash = (o.hash ^ pos) * 1099511628211ULL;
        }
        pos += used;
    }
    return o;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome_t  whole, grown;

    if (size > 65536) {
        return 0;
    }
    whole = walk((const char *) data, size, 0);
    grown = walk((const char *) data, size, 1);
    check(whole.records == grown.records && whole.hash == grown.hash
          && whole.record_bytes == grown.record_bytes);
    return 0;
}
