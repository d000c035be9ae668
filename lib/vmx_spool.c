/*
 * vmx_spool: framing of audit records in the spool (see vmx_spool.h).
 */

#include <string.h>

#include <isa-l/crc.h>

#include "vmx_spool.h"


static vmx_spool_rc_e vmx_spool_garbage(const char *data, size_t len,
    int final, size_t *used, const char **reason, const char *why);
static const char *vmx_spool_number(const char *p, const char *end,
    char sep, size_t max, size_t *n);


/* zlib's crc32(), computed by ISA-L with the instructions the CPU has */

uint32_t
vmx_spool_crc32(uint32_t crc, const void *p, size_t len)
{
    return crc32_gzip_refl(crc, (const unsigned char *) p, (uint64_t) len);
}


size_t
vmx_spool_header(char *buf, size_t meta_len, size_t request_len,
    size_t response_len, uint32_t crc)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             lens[3], i, n, k;
    char               digits[20];

    lens[0] = meta_len;
    lens[1] = request_len;
    lens[2] = response_len;

    memcpy(buf, VMX_SPOOL_MAGIC, VMX_SPOOL_MAGIC_LEN);
    n = VMX_SPOOL_MAGIC_LEN;

    for (i = 0; i < 3; i++) {
        k = 0;

        do {
            digits[k++] = (char) ('0' + lens[i] % 10);
            lens[i] /= 10;
        } while (lens[i]);

        while (k) {
            buf[n++] = digits[--k];
        }

        buf[n++] = ' ';
    }

    for (i = 0; i < 8; i++) {
        buf[n++] = hex[(crc >> (28 - 4 * i)) & 0xf];
    }

    buf[n++] = '\n';

    return n;
}


vmx_spool_rc_e
vmx_spool_next(const char *data, size_t len, int final,
    vmx_spool_record_t *rec, size_t *used, const char **reason)
{
    size_t       n[3], header, total, i;
    uint32_t     crc, want;
    const char  *p, *nl;

    if (len < VMX_SPOOL_MAGIC_LEN) {
        if (!final && memcmp(data, VMX_SPOOL_MAGIC, len) == 0) {
            *used = VMX_SPOOL_MAGIC_LEN;
            return VMX_SPOOL_MORE;
        }

        return vmx_spool_garbage(data, len, final, used, reason,
                                 "not a record");
    }

    if (memcmp(data, VMX_SPOOL_MAGIC, VMX_SPOOL_MAGIC_LEN) != 0) {
        return vmx_spool_garbage(data, len, final, used, reason,
                                 "not a record");
    }

    nl = memchr(data, '\n', len < VMX_SPOOL_HEADER_MAX
                            ? len : VMX_SPOOL_HEADER_MAX);
    if (nl == NULL) {
        if (!final && len < VMX_SPOOL_HEADER_MAX) {
            *used = len + 1;
            return VMX_SPOOL_MORE;
        }

        return vmx_spool_garbage(data, len, final, used, reason,
                                 "a record header without its end");
    }

    p = data + VMX_SPOOL_MAGIC_LEN;
    p = vmx_spool_number(p, nl, ' ', VMX_SPOOL_META_MAX, &n[0]);
    p = vmx_spool_number(p, nl, ' ', VMX_SPOOL_PAYLOAD_MAX, &n[1]);
    p = vmx_spool_number(p, nl, ' ', VMX_SPOOL_PAYLOAD_MAX, &n[2]);

    want = 0;

    for (i = 0; p != NULL && i < 8; i++, p++) {
        if (*p >= '0' && *p <= '9') {
            want = (want << 4) | (uint32_t) (*p - '0');

        } else if (*p >= 'a' && *p <= 'f') {
            want = (want << 4) | (uint32_t) (*p - 'a' + 10);

        } else {
            p = NULL;
            break;
        }
    }

    if (p != nl || n[0] == 0) {
        return vmx_spool_garbage(data, len, final, used, reason,
                                 "a malformed record header");
    }

    header = (size_t) (nl - data) + 1;
    total = header + n[0] + n[1] + n[2] + 1;

    if (len < total) {
        if (!final) {
            *used = total;
            return VMX_SPOOL_MORE;
        }

        return vmx_spool_garbage(data, len, final, used, reason,
                                 "a truncated record");
    }

    if (data[total - 1] != '\n') {
        return vmx_spool_garbage(data, len, final, used, reason,
                                 "a record without its end");
    }

    crc = vmx_spool_crc32(0, data + header, n[0] + n[1] + n[2]);

    if (crc != want) {
        return vmx_spool_garbage(data, len, final, used, reason,
                                 "a record whose checksum fails");
    }

    rec->meta = data + header;
    rec->meta_len = n[0];
    rec->request = rec->meta + n[0];
    rec->request_len = n[1];
    rec->response = rec->request + n[1];
    rec->response_len = n[2];

    *used = total;

    return VMX_SPOOL_RECORD;
}


/*
 * Bytes that are no record: up to the next "VMX2 " (a false start there
 * is found out by its checksum).  In a file still written, the last bytes
 * may begin a record: they wait.
 */

static vmx_spool_rc_e
vmx_spool_garbage(const char *data, size_t len, int final, size_t *used,
    const char **reason, const char *why)
{
    const char  *q;

    *reason = why;

    for (q = data + 1; q != NULL; q++) {
        q = memchr(q, 'V', (size_t) (data + len - q));

        if (q == NULL || (size_t) (data + len - q) < VMX_SPOOL_MAGIC_LEN
            || memcmp(q, VMX_SPOOL_MAGIC, VMX_SPOOL_MAGIC_LEN) == 0)
        {
            break;
        }
    }

    if (q != NULL && (size_t) (data + len - q) < VMX_SPOOL_MAGIC_LEN) {
        q = NULL;
    }

    if (q != NULL) {
        *used = (size_t) (q - data);
        return VMX_SPOOL_GARBAGE;
    }

    if (final) {
        *used = len;
        return VMX_SPOOL_GARBAGE;
    }

    if (len < VMX_SPOOL_MAGIC_LEN) {
        *used = VMX_SPOOL_MAGIC_LEN;
        return VMX_SPOOL_MORE;
    }

    *used = len - (VMX_SPOOL_MAGIC_LEN - 1);
    return VMX_SPOOL_GARBAGE;
}


/* a decimal of at most max followed by sep; NULL when it is not */

static const char *
vmx_spool_number(const char *p, const char *end, char sep, size_t max,
    size_t *n)
{
    size_t  v, digits;

    if (p == NULL) {
        return NULL;
    }

    for (v = 0, digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits > 10) {
            return NULL;
        }

        v = v * 10 + (size_t) (*p - '0');
    }

    if (digits == 0 || v > max || p == end || *p != sep) {
        return NULL;
    }

    *n = v;

    return p + 1;
}
