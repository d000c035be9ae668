/*
 * secrets: encryption at rest of provider credentials (SPEC §9).
 *
 * Blob format: "v1:<key id>:<base64(nonce || ciphertext)>", XChaCha20-Poly1305
 * (IETF) with the connection id as associated data, so a blob copied onto
 * another connection does not decrypt.  The key id (first 8 hex chars of
 * BLAKE2b(key)) lets a later version pick the right key during a rotation.
 */

#ifndef CP_SECRETS_H
#define CP_SECRETS_H

/* initialises libsodium and loads the master key; -1 with the reason logged */
int secrets_init(const char *key_file);
void secrets_shutdown(void);

/* malloc'd blob (caller frees), NULL on failure */
char *secrets_encrypt(const char *plain, const char *ad);

/* malloc'd plain text the caller releases with secrets_free(); NULL when the
 * blob is malformed, of another key, or fails authentication */
char *secrets_decrypt(const char *blob, const char *ad);

/* wipes and frees a string returned by secrets_decrypt() */
void secrets_free(char *plain);

#endif
