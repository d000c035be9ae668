/*
 * secrets: the blob format and the AEAD; the keys come from keyring.c (local)
 * or kms.c (data keys).  Key copies on the stack are wiped before return.
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keyring.h"
#include "kms.h"
#include "log.h"
#include "secrets.h"

#define BLOB_PREFIX  "v1:"
#define PREFIX_LEN   (sizeof(BLOB_PREFIX) - 1 + SECRETS_KEY_ID_LEN + 1)
#define NONCE_LEN    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN      crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KMS_HEAD     2                 /* the CiphertextBlob's length, big-endian */


void
secrets_set_error(secrets_error_t *err, int status, const char *fmt, ...)
{
    va_list ap;

    err->status = status;
    err->kms = false;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}


int
secrets_init(const config_t *cfg)
{
    if (sodium_init() < 0) {
        log_error("secrets: libsodium initialisation failed");
        return -1;
    }
    return keyring_load(cfg) == 0 && kms_init(cfg) == 0 ? 0 : -1;
}


void
secrets_shutdown(void)
{
    kms_shutdown();
    keyring_unload();
}


bool
secrets_blob_key_id(const char *blob, char *out)
{
    if (strncmp(blob, BLOB_PREFIX, sizeof(BLOB_PREFIX) - 1) != 0
        || strlen(blob) < PREFIX_LEN || blob[PREFIX_LEN - 1] != ':')
    {
        return false;
    }
    memcpy(out, blob + sizeof(BLOB_PREFIX) - 1, SECRETS_KEY_ID_LEN);
    out[SECRETS_KEY_ID_LEN] = '\0';
    return true;
}


/* "v1:<key id>:" + base64 of raw (malloc'd), NULL on ENOMEM */
static char *
make_blob(const char *key_id, const unsigned char *raw, size_t rawlen, secrets_error_t *err)
{
    size_t  b64len = sodium_base64_ENCODED_LEN(rawlen, sodium_base64_VARIANT_ORIGINAL);
    char   *blob = malloc(PREFIX_LEN + b64len);

    if (blob == NULL) {
        secrets_set_error(err, 500, "out of memory");
        return NULL;
    }
    snprintf(blob, PREFIX_LEN + 1, BLOB_PREFIX "%s:", key_id);
    sodium_bin2base64(blob + PREFIX_LEN, b64len, raw, rawlen, sodium_base64_VARIANT_ORIGINAL);
    return blob;
}


char *
secrets_encrypt(const char *plain, const char *ad, const char *key_id, secrets_error_t *err)
{
    size_t              plen = strlen(plain), head = 0, blob_len = 0;
    unsigned char       key[KEYRING_KEY_BYTES], kms_blob[KMS_MAX_BLOB];
    unsigned char      *raw;
    keyring_provider_t  provider;
    unsigned long long  clen;
    char               *blob = NULL;

    if (keyring_lookup(key_id, &provider, key, err) != 0) {
        return NULL;
    }
    if (provider == KEYRING_KMS) {
        if (kms_generate_data_key(ad, key, kms_blob, &blob_len, err) != 0) {
            return NULL;
        }
        head = KMS_HEAD + blob_len;
    }
    raw = malloc(head + NONCE_LEN + plen + TAG_LEN);
    if (raw == NULL) {
        secrets_set_error(err, 500, "out of memory");
        goto done;
    }
    if (head > 0) {
        raw[0] = (unsigned char) (blob_len >> 8);
        raw[1] = (unsigned char) blob_len;
        memcpy(raw + KMS_HEAD, kms_blob, blob_len);
    }
    randombytes_buf(raw + head, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + head + NONCE_LEN, &clen,
        (const unsigned char *) plain, plen,
        (const unsigned char *) ad, strlen(ad), NULL, raw + head, key);
    blob = make_blob(key_id, raw, head + NONCE_LEN + (size_t) clen, err);
    free(raw);

done:
    sodium_memzero(key, sizeof(key));
    return blob;
}


char *
secrets_decrypt(const char *blob, const char *ad, secrets_error_t *err)
{
    char                key_id[SECRETS_KEY_ID_LEN + 1];
    const char         *b64;
    size_t              b64len, rawlen = 0, head = 0;
    unsigned char       key[KEYRING_KEY_BYTES];
    unsigned char      *raw = NULL;
    char               *plain = NULL;
    keyring_provider_t  provider;
    unsigned long long  plen;

    if (!secrets_blob_key_id(blob, key_id)) {
        secrets_set_error(err, 500, "the stored secret is no v1 blob");
        return NULL;
    }
    if (keyring_lookup(key_id, &provider, key, err) != 0) {
        return NULL;
    }
    b64 = blob + PREFIX_LEN;
    b64len = strlen(b64);
    raw = malloc(b64len);
    if (raw == NULL) {
        secrets_set_error(err, 500, "out of memory");
        goto done;
    }
    if (sodium_base642bin(raw, b64len, b64, b64len, NULL, &rawlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
    {
        rawlen = 0;
    }
    if (provider == KEYRING_KMS && rawlen >= KMS_HEAD) {
        head = KMS_HEAD + ((size_t) raw[0] << 8 | raw[1]);
    }
    if (rawlen < head + NONCE_LEN + TAG_LEN) {
        secrets_set_error(err, 500, "the stored secret under key %s is malformed", key_id);
        goto done;
    }
    if (head > 0
        && kms_decrypt_data_key(raw + KMS_HEAD, head - KMS_HEAD, ad, key, err) != 0)
    {
        goto done;
    }
    plain = malloc(rawlen - head - NONCE_LEN - TAG_LEN + 1);
    if (plain == NULL) {
        secrets_set_error(err, 500, "out of memory");
        goto done;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) plain, &plen, NULL,
            raw + head + NONCE_LEN, rawlen - head - NONCE_LEN,
            (const unsigned char *) ad, strlen(ad), raw + head, key) != 0)
    {
        secrets_set_error(err, 500, "the stored secret under key %s fails authentication",
                          key_id);
        free(plain);
        plain = NULL;
        goto done;
    }
    plain[plen] = '\0';

done:
    sodium_memzero(key, sizeof(key));
    free(raw);
    return plain;
}


void
secrets_free(char *plain)
{
    if (plain != NULL) {
        sodium_memzero(plain, strlen(plain));
        free(plain);
    }
}
