/*
 * vmx_sha256: SHA-256 and HMAC-SHA-256 of OpenSSL, the algorithm fetched
 * once per process.
 *
 * OpenSSL 3's one-shot calls (SHA256(), HMAC(), EVP_Digest() with
 * EVP_sha256()) look the algorithm up again on every call, behind a
 * read-write lock: for the short texts of a request (an API key, an AWS
 * canonical request, a signing key's chain) that lookup costs more than
 * the hash.  Safe from any thread.
 */

#ifndef VMX_SHA256_H
#define VMX_SHA256_H

#include <stddef.h>

#define VMX_SHA256_LEN  32

/* md = SHA-256(data); 0, or -1 when OpenSSL fails */
int vmx_sha256(const void *data, size_t len, unsigned char *md);

/* md = HMAC-SHA-256(key, data); md may be key or data; 0 or -1 */
int vmx_hmac_sha256(const void *key, size_t key_len, const void *data,
    size_t len, unsigned char *md);

#endif /* VMX_SHA256_H */
