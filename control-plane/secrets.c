/*
 * secrets: the master key lives in sodium_malloc'd memory (guard pages,
 * locked, read-only after load) for the whole life of the daemon.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "config.h"
#include "log.h"
#include "secrets.h"

#define KEY_ID_LEN   8
#define BLOB_PREFIX  "v1:"
#define NONCE_LEN    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN      crypto_aead_xchacha20poly1305_ietf_ABYTES

static unsigned char *master_key;            /* sodium_malloc'd, 32 bytes */
static char           key_id[KEY_ID_LEN + 1];


int
secrets_init(const char *key_file)
{
    char          *hex;
    size_t         keylen = 0;
    unsigned char  digest[32];
    char           digest_hex[65];
    int            rc;

    if (sodium_init() < 0) {
        log_error("secrets: libsodium initialisation failed");
        return -1;
    }

    hex = config_read_secret_file(key_file, "VMX_MASTER_KEY_FILE");
    if (hex == NULL) {
        return -1;
    }
    master_key = sodium_malloc(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    if (master_key == NULL) {
        sodium_memzero(hex, strlen(hex));
        free(hex);
        return -1;
    }
    rc = sodium_hex2bin(master_key, crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
                        hex, strlen(hex), NULL, &keylen, NULL);
    sodium_memzero(hex, strlen(hex));
    free(hex);
    if (rc != 0 || keylen != crypto_aead_xchacha20poly1305_ietf_KEYBYTES) {
        log_error("config VMX_MASTER_KEY_FILE: the key must be 64 hex characters");
        secrets_shutdown();
        return -1;
    }

    crypto_generichash(digest, sizeof(digest), master_key, keylen, NULL, 0);
    sodium_bin2hex(digest_hex, sizeof(digest_hex), digest, sizeof(digest));
    memcpy(key_id, digest_hex, KEY_ID_LEN);
    key_id[KEY_ID_LEN] = '\0';

    sodium_mprotect_readonly(master_key);
    log_info("secrets: master key loaded key_id=%s", key_id);
    return 0;
}


void
secrets_shutdown(void)
{
    sodium_free(master_key);
    master_key = NULL;
}


char *
secrets_encrypt(const char *plain, const char *ad)
{
    size_t              plen = strlen(plain);
    size_t              rawlen = NONCE_LEN + plen + TAG_LEN;
    size_t              b64len = sodium_base64_ENCODED_LEN(rawlen,
                                     sodium_base64_VARIANT_ORIGINAL);
    unsigned char      *raw = malloc(rawlen);
    char               *blob;
    unsigned long long  clen;

    if (raw == NULL) {
        return NULL;
    }
    blob = malloc(sizeof(BLOB_PREFIX) + KEY_ID_LEN + 1 + b64len);
    if (blob == NULL) {
        free(raw);
        return NULL;
    }

    randombytes_buf(raw, NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(raw + NONCE_LEN, &clen,
        (const unsigned char *) plain, plen,
        (const unsigned char *) ad, strlen(ad), NULL, raw, master_key);

    sprintf(blob, BLOB_PREFIX "%s:", key_id);
    sodium_bin2base64(blob + strlen(blob), b64len, raw, NONCE_LEN + (size_t) clen,
                      sodium_base64_VARIANT_ORIGINAL);
    free(raw);
    return blob;
}


char *
secrets_decrypt(const char *blob, const char *ad)
{
    const char         *b64;
    size_t              b64len, rawlen = 0;
    unsigned char      *raw;
    char               *plain;
    unsigned long long  plen;

    if (strncmp(blob, BLOB_PREFIX, sizeof(BLOB_PREFIX) - 1) != 0) {
        return NULL;
    }
    blob += sizeof(BLOB_PREFIX) - 1;
    if (strncmp(blob, key_id, KEY_ID_LEN) != 0 || blob[KEY_ID_LEN] != ':') {
        log_warn("secrets: blob of an unknown key id");
        return NULL;
    }
    b64 = blob + KEY_ID_LEN + 1;
    b64len = strlen(b64);

    raw = malloc(b64len);
    if (raw == NULL) {
        return NULL;
    }
    if (sodium_base642bin(raw, b64len, b64, b64len, NULL, &rawlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0
        || rawlen < NONCE_LEN + TAG_LEN)
    {
        free(raw);
        return NULL;
    }
    plain = malloc(rawlen - NONCE_LEN - TAG_LEN + 1);
    if (plain == NULL) {
        free(raw);
        return NULL;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) plain, &plen,
            NULL, raw + NONCE_LEN, rawlen - NONCE_LEN,
            (const unsigned char *) ad, strlen(ad), raw, master_key) != 0)
    {
        log_warn("secrets: a blob failed authentication");
        free(raw);
        free(plain);
        return NULL;
    }
    free(raw);
    plain[plen] = '\0';
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
