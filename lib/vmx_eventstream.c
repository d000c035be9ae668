/*
 * vmx_eventstream: see vmx_eventstream.h.
 */

#include <string.h>

#include <isa-l/crc.h>

#include "vmx_eventstream.h"


/* the value type of a string header; the others are skipped */
#define VMX_ES_STRING  7


/* the frames' CRC-32 is zlib's: ISA-L computes it with the CPU's carry-less
   multiply, which a stream of model output checks at every frame */

uint32_t
vmx_eventstream_crc32(uint32_t crc, const void *p, size_t len)
{
    return crc32_gzip_refl(crc, (const unsigned char *) p, (uint64_t) len);
}


static uint32_t
vmx_es_be32(const char *p)
{
    const unsigned char  *s = (const unsigned char *) p;

    return (uint32_t) s[0] << 24 | (uint32_t) s[1] << 16
           | (uint32_t) s[2] << 8 | s[3];
}


void
vmx_eventstream_init(vmx_eventstream_decoder_t *d, char *buf, size_t cap)
{
    d->buf = buf;
    d->cap = cap;
    d->have = 0;
    d->total = 0;
    d->failed = VMX_EVENTSTREAM_OK;
}


/* the value size of a header of this type at p, or -1 */
static long
vmx_es_value_len(int type, const char *p, const char *end)
{
    /* value sizes of types 0-9; -1: a 2-byte length first */
    static const signed char  fixed[] = { 0, 0, 1, 2, 4, 8, -1, -1, 8, 16 };

    if (type >= (int) sizeof(fixed)) {
        return -1;
    }

    if (fixed[type] >= 0) {
        return fixed[type];
    }

    if (end - p < 2) {
        return -1;
    }

    return 2 + ((long) (unsigned char) p[0] << 8 | (unsigned char) p[1]);
}


static void
vmx_es_string_header(vmx_eventstream_message_t *m, const char *name,
    size_t name_len, const char *value, size_t len)
{
    static const struct {
        const char  *name;
        size_t       offset;
    } known[] = {
        { ":message-type",
          offsetof(vmx_eventstream_message_t, message_type) },
        { ":event-type", offsetof(vmx_eventstream_message_t, event_type) },
        { ":exception-type",
          offsetof(vmx_eventstream_message_t, exception_type) },
        { ":error-code", offsetof(vmx_eventstream_message_t, error_code) },
        { ":error-message",
          offsetof(vmx_eventstream_message_t, error_message) },
        { ":content-type",
          offsetof(vmx_eventstream_message_t, content_type) },
    };
    vmx_eventstream_str_t  *field;
    size_t                  i;

    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].name) == name_len
            && memcmp(known[i].name, name, name_len) == 0)
        {
            field = (vmx_eventstream_str_t *) ((char *) m + known[i].offset);
            field->data = value;
            field->len = len;
            return;
        }
    }
}


static int
vmx_es_headers(vmx_eventstream_message_t *m, const char *p, const char *end)
{
    const char  *name;
    size_t       name_len;
    long         value_len;
    int          type;

    while (p < end) {
        name_len = (unsigned char) *p++;

        if (name_len == 0 || (size_t) (end - p) < name_len + 1) {
            return VMX_EVENTSTREAM_MALFORMED;
        }

        name = p;
        p += name_len;
        type = (unsigned char) *p++;

        value_len = vmx_es_value_len(type, p, end);
        if (value_len < 0 || end - p < value_len) {
            return VMX_EVENTSTREAM_MALFORMED;
        }

        if (type == VMX_ES_STRING) {
            vmx_es_string_header(m, name, name_len, p + 2,
                                 (size_t) value_len - 2);
        }

        p += value_len;
    }

    return VMX_EVENTSTREAM_OK;
}


static int
vmx_es_prelude(vmx_eventstream_decoder_t *d)
{
    uint32_t  total, headers_len;

    if (vmx_eventstream_crc32(0, d->buf, 8) != vmx_es_be32(d->buf + 8)) {
        return VMX_EVENTSTREAM_BAD_CRC;
    }

    total = vmx_es_be32(d->buf);
    headers_len = vmx_es_be32(d->buf + 4);

    if (total < VMX_EVENTSTREAM_MIN_LEN
        || headers_len > total - VMX_EVENTSTREAM_MIN_LEN)
    {
        return VMX_EVENTSTREAM_MALFORMED;
    }

    if (total > d->cap) {
        return VMX_EVENTSTREAM_TOO_LARGE;
    }

    d->total = total;

    return VMX_EVENTSTREAM_OK;
}


/* the gathered message checked and read into m */
static int
vmx_es_message(const vmx_eventstream_decoder_t *d,
    vmx_eventstream_message_t *m)
{
    const char  *headers, *payload;
    size_t       crc_at = d->total - 4;
    int          rc;

    if (vmx_eventstream_crc32(0, d->buf, crc_at) != vmx_es_be32(d->buf + crc_at))
    {
        return VMX_EVENTSTREAM_BAD_CRC;
    }

    memset(m, 0, sizeof(vmx_eventstream_message_t));
    headers = d->buf + VMX_EVENTSTREAM_PRELUDE_LEN;
    payload = headers + vmx_es_be32(d->buf + 4);

    rc = vmx_es_headers(m, headers, payload);
    if (rc != VMX_EVENTSTREAM_OK) {
        return rc;
    }

    m->payload = payload;
    m->payload_len = (size_t) (d->buf + crc_at - payload);

    return VMX_EVENTSTREAM_OK;
}


/* copies up to want - d->have bytes; 1 when d->have reached want */
static int
vmx_es_gather(vmx_eventstream_decoder_t *d, size_t want, const char **data,
    size_t *len)
{
    size_t  n = want - d->have;

    if (n > *len) {
        n = *len;
    }

    memcpy(d->buf + d->have, *data, n);
    d->have += n;
    *data += n;
    *len -= n;

    return d->have == want;
}


int
vmx_eventstream_feed(vmx_eventstream_decoder_t *d, const char *data,
    size_t len, vmx_eventstream_message_pt handler, void *ctx)
{
    vmx_eventstream_message_t  m;
    int                        rc;

    if (d->failed) {
        return d->failed;
    }

    while (len) {
        if (d->total == 0) {
            if (d->cap < VMX_EVENTSTREAM_PRELUDE_LEN) {
                d->failed = VMX_EVENTSTREAM_TOO_LARGE;
                return d->failed;
            }

            if (!vmx_es_gather(d, VMX_EVENTSTREAM_PRELUDE_LEN, &data, &len)) {
                break;
            }

            rc = vmx_es_prelude(d);
            if (rc != VMX_EVENTSTREAM_OK) {
                d->failed = rc;
                return rc;
            }
        }

        if (!vmx_es_gather(d, d->total, &data, &len)) {
            break;
        }

        rc = vmx_es_message(d, &m);
        if (rc != VMX_EVENTSTREAM_OK) {
            d->failed = rc;
            return rc;
        }

        /* the buffer stays intact until the next feed */
        d->have = 0;
        d->total = 0;

        rc = handler(ctx, &m);
        if (rc != 0) {
            return rc;
        }
    }

    return VMX_EVENTSTREAM_OK;
}


int
vmx_eventstream_finish(const vmx_eventstream_decoder_t *d)
{
    if (d->failed) {
        return d->failed;
    }

    return d->have ? VMX_EVENTSTREAM_MALFORMED : VMX_EVENTSTREAM_OK;
}
