/*
 * crypto: small wrappers over libsodium so callers never handle raw bytes.
 */

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto.h"

/* the argon2id cost of new password hashes; older hashes are redone at login */
#define PWHASH_OPSLIMIT  crypto_pwhash_OPSLIMIT_INTERACTIVE
#define PWHASH_MEMLIMIT  crypto_pwhash_MEMLIMIT_INTERACTIVE

/*
 * At most one argon2id computation per core at a time: each takes 64 MiB
 * and tens of milliseconds of a CPU, and a flood of logins must leave the
 * CPUs to the rest of the API.  One waits at most PWHASH_WAIT seconds for
 * its turn, then fails (the caller answers 503).
 */
#define PWHASH_WAIT  2

static sem_t           pwhash_slots;
static pthread_once_t  pwhash_once = PTHREAD_ONCE_INIT;


static void
pwhash_init(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    sem_init(&pwhash_slots, 0, cores > 0 ? (unsigned) cores : 1);
}


static bool
pwhash_enter(void)
{
    struct timespec deadline;

    pthread_once(&pwhash_once, pwhash_init);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += PWHASH_WAIT;
    while (sem_timedwait(&pwhash_slots, &deadline) != 0) {
        if (errno != EINTR) {
            return false;
        }
    }
    return true;
}


void
crypto_uuid_v4(char *out)
{
    unsigned char b[16];
    char          hex[33];

    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);      /* version 4 */
    b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);      /* RFC 4122 variant */
    sodium_bin2hex(hex, sizeof(hex), b, sizeof(b));

    memcpy(out, hex, 8);
    out[8] = '-';
    memcpy(out + 9, hex + 8, 4);
    out[13] = '-';
    memcpy(out + 14, hex + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hex + 16, 4);
    out[23] = '-';
    memcpy(out + 24, hex + 20, 12);
    out[UUID_LEN] = '\0';
}


bool
crypto_is_uuid(const char *s)
{
    for (size_t i = 0; i < UUID_LEN; i++) {
        char c = s[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return false;
            }
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                     || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return s[UUID_LEN] == '\0';
}


void
crypto_random_token(char *out)
{
    unsigned char b[32];

    randombytes_buf(b, sizeof(b));
    sodium_bin2base64(out, TOKEN_B64_LEN + 1, b, sizeof(b),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(b, sizeof(b));
}


void
crypto_sha256_hex(const char *s, char *out)
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, (const unsigned char *) s, strlen(s));
    sodium_bin2hex(out, SHA256_HEX_LEN + 1, digest, sizeof(digest));
}


char *
crypto_password_hash(const char *password)
{
    char *hash = malloc(crypto_pwhash_STRBYTES);
    int   rc;

    if (hash == NULL || !pwhash_enter()) {
        free(hash);
        return NULL;
    }
    rc = crypto_pwhash_str_alg(hash, password, strlen(password), PWHASH_OPSLIMIT,
                               PWHASH_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13);
    sem_post(&pwhash_slots);
    if (rc != 0) {
        free(hash);
        return NULL;
    }
    return hash;
}


int
crypto_password_verify(const char *hash, const char *password)
{
    int rc;

    if (!pwhash_enter()) {
        return -1;
    }
    rc = crypto_pwhash_str_verify(hash, password, strlen(password));
    sem_post(&pwhash_slots);
    return rc == 0;
}


bool
crypto_password_needs_rehash(const char *hash)
{
    /* -1 (not an argon2 hash) needs one too, and so does an argon2i one */
    return strncmp(hash, crypto_pwhash_argon2id_STRPREFIX,
                   strlen(crypto_pwhash_argon2id_STRPREFIX)) != 0
           || crypto_pwhash_str_needs_rehash(hash, PWHASH_OPSLIMIT, PWHASH_MEMLIMIT) != 0;
}
