/*
 * libFuzzer target of vmx_batch.  Input: the six headers (id, item, key,
 * pool, time, signature) separated by '\n'; missing ones are empty.  The
 * headers are checked as given, then with the signature computed here over
 * them: the check must agree with the signing (a correctly signed request
 * is malformed, stale or accepted, never a bad signature), accept nothing
 * it could not have signed, and give the key's bytes of its hex.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vmx_batch.h"

#include "fuzz_common.h"


#define TOKEN  "fuzz-token-0123456789abcdef"
#define NOW    1798000000


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    char                 message[4096], hex[65];
    size_t               i, n, len;
    int64_t              item;
    unsigned int         mac_len;
    unsigned char        hash[32], mac[EVP_MAX_MD_SIZE];
    vmx_batch_str_t     *field[6];
    vmx_batch_check_e    given, signed_rc;
    vmx_batch_headers_t  h;
    const char          *p, *end, *nl;

    if (size > 2048) {
        return 0;
    }

    memset(&h, 0, sizeof(h));
    field[0] = &h.id;
    field[1] = &h.item;
    field[2] = &h.key;
    field[3] = &h.pool;
    field[4] = &h.time;
    field[5] = &h.signature;

    p = (const char *) in;
    end = p + size;

    for (i = 0; i < 6 && p <= end; i++) {
        nl = (i < 5) ? memchr(p, '\n', end - p) : NULL;
        field[i]->data = p;
        field[i]->len = (nl ? nl : end) - p;
        p = (nl ? nl : end) + 1;
    }

    for (; i < 6; i++) {
        field[i]->data = "";
    }

    given = vmx_batch_verify(&h, (const unsigned char *) TOKEN,
                             sizeof(TOKEN) - 1, NOW, &item, hash);

    /* the signature over these headers, as the runner computes it */
    len = 0;
    for (i = 0; i < 5; i++) {
        memcpy(message + len, field[i]->data, field[i]->len);
        len += field[i]->len;
        message[len++] = '\n';
    }
    len--;

    HMAC(EVP_sha256(), TOKEN, sizeof(TOKEN) - 1, (unsigned char *) message,
         len, mac, &mac_len);

    for (n = 0; n < 32; n++) {
        snprintf(hex + 2 * n, 3, "%02x", mac[n]);
    }

    /* accepted as given: the given signature is that one */
    check(given != VMX_BATCH_OK
          || (h.signature.len == 64 && memcmp(h.signature.data, hex, 64) == 0));

    h.signature.data = hex;
    h.signature.len = 64;

    signed_rc = vmx_batch_verify(&h, (const unsigned char *) TOKEN,
                                 sizeof(TOKEN) - 1, NOW, &item, hash);

    check(signed_rc != VMX_BATCH_BAD_SIGNATURE);

    if (signed_rc == VMX_BATCH_OK) {
        check(item >= 0 && item <= VMX_BATCH_ITEM_MAX);
        check(h.key.len == 64);

        for (n = 0; n < 32; n++) {
            snprintf(hex + 2 * n, 3, "%02x", hash[n]);
        }

        check(memcmp(hex, h.key.data, 64) == 0);
    }

    return 0;
}
