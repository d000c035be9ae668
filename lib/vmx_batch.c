/*
 * vmx_batch: the signed headers of a batch item; see vmx_batch.h.
 */

#include <string.h>

#include <openssl/crypto.h>

#include "vmx_batch.h"
#include "vmx_sha256.h"


#define VMX_BATCH_UUID_LEN   36
#define VMX_BATCH_INT_MAX    19         /* digits of an int64_t */

/* "<id>\n<item>\n<key hash>\n<pool>\n<time>" at its longest */
#define VMX_BATCH_MESSAGE_MAX                                                \
    (VMX_BATCH_UUID_LEN + 1 + VMX_BATCH_INT_MAX + 1 + 64 + 1                  \
     + VMX_BATCH_POOL_MAX + 1 + VMX_BATCH_INT_MAX)


static int
vmx_batch_hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* 2 * n lowercase hex digits into n bytes; -1 when s is not that */
static int
vmx_batch_hex(const vmx_batch_str_t *s, unsigned char *out, size_t n)
{
    int     hi, lo;
    size_t  i;

    if (s->len != 2 * n) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        hi = vmx_batch_hex_digit(s->data[2 * i]);
        lo = vmx_batch_hex_digit(s->data[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        out[i] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}


/* decimal digits, no sign nor leading zero, at most max; -1 otherwise */
static int
vmx_batch_int(const vmx_batch_str_t *s, int64_t max, int64_t *out)
{
    size_t   i;
    int64_t  v;

    if (s->len == 0 || s->len > VMX_BATCH_INT_MAX
        || (s->len > 1 && s->data[0] == '0'))
    {
        return -1;
    }

    for (v = 0, i = 0; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9'
            || v > (max - (s->data[i] - '0')) / 10)
        {
            return -1;
        }

        v = v * 10 + (s->data[i] - '0');
    }

    *out = v;

    return 0;
}


static int
vmx_batch_is_uuid(const vmx_batch_str_t *s)
{
    size_t  i;

    if (s->len != VMX_BATCH_UUID_LEN) {
        return 0;
    }

    for (i = 0; i < VMX_BATCH_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23
            ? s->data[i] != '-'
            : vmx_batch_hex_digit(s->data[i]) < 0)
        {
            return 0;
        }
    }

    return 1;
}


static int
vmx_batch_is_pool(const vmx_batch_str_t *s)
{
    size_t  i;

    if (s->len > VMX_BATCH_POOL_MAX) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        if ((unsigned char) s->data[i] < 0x20 || s->data[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


static char *
vmx_batch_append(char *p, const vmx_batch_str_t *s, char sep)
{
    memcpy(p, s->data, s->len);
    p += s->len;

    if (sep) {
        *p++ = sep;
    }

    return p;
}


vmx_batch_check_e
vmx_batch_verify(const vmx_batch_headers_t *h, const unsigned char *token,
    size_t token_len, int64_t now, int64_t *item, unsigned char key_hash[32])
{
    char           message[VMX_BATCH_MESSAGE_MAX], *p;
    int64_t        time;
    unsigned char  signature[32], expected[VMX_SHA256_LEN];

    if (token_len == 0
        || !vmx_batch_is_uuid(&h->id)
        || vmx_batch_int(&h->item, VMX_BATCH_ITEM_MAX, item) != 0
        || vmx_batch_hex(&h->key, key_hash, 32) != 0
        || !vmx_batch_is_pool(&h->pool)
        || vmx_batch_int(&h->time, INT64_MAX, &time) != 0
        || vmx_batch_hex(&h->signature, signature, sizeof(signature)) != 0)
    {
        return VMX_BATCH_MALFORMED;
    }

    p = vmx_batch_append(message, &h->id, '\n');
    p = vmx_batch_append(p, &h->item, '\n');
    p = vmx_batch_append(p, &h->key, '\n');
    p = vmx_batch_append(p, &h->pool, '\n');
    p = vmx_batch_append(p, &h->time, '\0');

    if (vmx_hmac_sha256(token, token_len, message, p - message, expected)
        != 0
        || CRYPTO_memcmp(expected, signature, sizeof(signature)) != 0)
    {
        return VMX_BATCH_BAD_SIGNATURE;
    }

    if (time > now + VMX_BATCH_WINDOW || time < now - VMX_BATCH_WINDOW) {
        return VMX_BATCH_STALE;
    }

    return VMX_BATCH_OK;
}
