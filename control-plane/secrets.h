/*
 * secrets: encryption at rest of provider credentials (SPEC §9).
 *
 * Blob format: "v1:<key id>:<base64>", XChaCha20-Poly1305 (IETF) with the
 * connection id as associated data, so a blob copied onto another
 * connection does not decrypt.  The key id (keyring.h) names the key of the
 * ring that made it, so a rotation reads old blobs while writing new ones.
 *
 *   local key:    base64(nonce || ciphertext)
 *   aws-kms key:  base64(u16 big-endian n || KMS CiphertextBlob (n bytes)
 *                 || nonce || ciphertext): envelope encryption, the data
 *                 key of GenerateDataKey with the connection id as
 *                 EncryptionContext (kms.h)
 */

#ifndef CP_SECRETS_H
#define CP_SECRETS_H

#include <stdbool.h>

#include "config.h"

#define SECRETS_KEY_ID_LEN  8

/* why a secret could not be encrypted or decrypted; never holds a secret */
typedef struct {
    int   status;               /* the API's answer: 503 when a key or KMS is unavailable */
    bool  kms;                  /* KMS failed (or is not configured): not this blob's fault */
    char  message[256];
} secrets_error_t;

/* initialises libsodium, loads the keyring and the KMS settings; -1 with
 * the reason logged */
int secrets_init(const config_t *cfg);
void secrets_shutdown(void);

/* malloc'd blob under the key key_id (caller frees), NULL with *err filled */
char *secrets_encrypt(const char *plain, const char *ad, const char *key_id,
    secrets_error_t *err);

/* malloc'd plain text the caller releases with secrets_free(); NULL with
 * *err filled when the blob is malformed, of a key not held, or fails
 * authentication */
char *secrets_decrypt(const char *blob, const char *ad, secrets_error_t *err);

/* the key id of a blob into out[SECRETS_KEY_ID_LEN + 1]; false when it has none */
bool secrets_blob_key_id(const char *blob, char *out);

/* wipes and frees a string returned by secrets_decrypt(), or any other
 * malloc'd one that held a secret (NULL: nothing) */
void secrets_free(char *plain);

/* fills *err (status and message, printf style; kms false) */
void secrets_set_error(secrets_error_t *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
