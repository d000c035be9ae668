/*
 * crypto: identifiers, random tokens, hashes and password hashing, all on
 * libsodium (initialised by secrets_init()).
 */

#ifndef CP_CRYPTO_H
#define CP_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#define UUID_LEN         36
#define SHA256_HEX_LEN   64
#define TOKEN_B64_LEN    43      /* base64url of 32 bytes, no padding */

/* a random (version 4) UUID in lowercase into out[UUID_LEN + 1] */
void crypto_uuid_v4(char *out);

/* true when s is a UUID in canonical 8-4-4-4-12 hex form */
bool crypto_is_uuid(const char *s);

/* base64url (no padding) of 32 random bytes into out[TOKEN_B64_LEN + 1] */
void crypto_random_token(char *out);

/* lowercase hex SHA-256 of s into out[SHA256_HEX_LEN + 1] */
void crypto_sha256_hex(const char *s, char *out);

/*
 * argon2id hash of password, malloc'd (caller frees), NULL on failure.  At
 * most one runs per core at once; one that waited too long for its turn
 * fails (so does a verification, with -1).  Never call them holding a
 * database connection: they take their time.
 */
char *crypto_password_hash(const char *password);
/* 1: password matches hash, 0: it does not, -1: no turn (busy) */
int crypto_password_verify(const char *hash, const char *password);
/* hash was made with other parameters than crypto_password_hash() uses now */
bool crypto_password_needs_rehash(const char *hash);

#endif
