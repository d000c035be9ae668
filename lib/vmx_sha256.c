/*
 * vmx_sha256: see vmx_sha256.h.  HMAC (RFC 2104) is written here on the
 * fetched digest: OpenSSL's own HMAC() fetches both the MAC and the digest
 * on each call.
 */

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "vmx_sha256.h"

#define VMX_SHA256_BLOCK  64


static pthread_once_t   vmx_sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD          *vmx_sha256_md;


static void
vmx_sha256_fetch(void)
{
    vmx_sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}


static const EVP_MD *
vmx_sha256_get(void)
{
    (void) pthread_once(&vmx_sha256_once, vmx_sha256_fetch);

    return vmx_sha256_md;
}


int
vmx_sha256(const void *data, size_t len, unsigned char *md)
{
    const EVP_MD  *alg = vmx_sha256_get();

    return (alg && EVP_Digest(data, len, md, NULL, alg, NULL)) ? 0 : -1;
}


int
vmx_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
    unsigned char *md)
{
    int             rc;
    size_t          i;
    EVP_MD_CTX     *ctx;
    const EVP_MD   *alg;
    unsigned char   k[VMX_SHA256_BLOCK], pad[VMX_SHA256_BLOCK];
    unsigned char   inner[VMX_SHA256_LEN];

    alg = vmx_sha256_get();
    if (alg == NULL) {
        return -1;
    }

    memset(k, 0, sizeof(k));

    if (key_len > VMX_SHA256_BLOCK) {
        if (vmx_sha256(key, key_len, k) != 0) {
            return -1;
        }

    } else {
        memcpy(k, key, key_len);
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        OPENSSL_cleanse(k, sizeof(k));
        return -1;
    }

    for (i = 0; i < sizeof(pad); i++) {
        pad[i] = k[i] ^ 0x36;
    }

    rc = EVP_DigestInit_ex(ctx, alg, NULL)
         && EVP_DigestUpdate(ctx, pad, sizeof(pad))
         && EVP_DigestUpdate(ctx, data, len)
         && EVP_DigestFinal_ex(ctx, inner, NULL);

    for (i = 0; i < sizeof(pad); i++) {
        pad[i] = k[i] ^ 0x5c;
    }

    rc = rc
         && EVP_DigestInit_ex(ctx, alg, NULL)
         && EVP_DigestUpdate(ctx, pad, sizeof(pad))
         && EVP_DigestUpdate(ctx, inner, sizeof(inner))
         && EVP_DigestFinal_ex(ctx, md, NULL);

    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    OPENSSL_cleanse(inner, sizeof(inner));

    return rc ? 0 : -1;
}
