/*
 * oidc: the relying party side of OpenID Connect (authorization code flow
 * with PKCE): the provider's discovery document, the authorization URL,
 * the code exchange and the verification of the ID token (RS256, ES256)
 * against the provider's JWKS.  The handlers are in api_oidc.c.
 *
 * The discovery document and the JWKS are fetched on first use and kept
 * for an hour; a token signed with a key id the cached JWKS lacks fetches
 * it again (the provider rotated its keys), at most once a minute so that
 * tokens with made-up key ids cannot make the daemon hammer the provider.
 */

#ifndef CP_OIDC_H
#define CP_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "config.h"

#define OIDC_ERROR_LEN     256
#define OIDC_LEEWAY        60         /* seconds of clock skew allowed on exp, iat, nbf */
#define OIDC_MAX_TOKEN     16384      /* bytes of an ID token */

/* what the callers get back besides 0: the answer to give */
#define OIDC_INVALID       401        /* the provider's answer or token is refused */
#define OIDC_UNAVAILABLE   502        /* the provider cannot be reached or makes no sense */

typedef struct {
    const char *issuer;
    const char *client_id;
    const char *nonce;
} oidc_expect_t;

/* takes the settings (cfg lives as long as the daemon); 0 or -1 */
int oidc_init(const config_t *cfg);
void oidc_shutdown(void);

/* whether VMX_OIDC_ISSUER configured OIDC sign-on */
bool oidc_enabled(void);

/*
 * the provider's authorization URL for state, nonce and the PKCE verifier
 * (malloc'd, caller frees); NULL with error filled and 0 or OIDC_* in
 * *status
 */
char *oidc_authorize_url(const char *state, const char *nonce, const char *verifier,
    int *status, char *error, size_t error_size);

/*
 * exchanges code at the token endpoint; the ID token (malloc'd, caller
 * wipes and frees) or NULL with error filled and *status OIDC_*
 */
char *oidc_exchange_code(const char *code, const char *verifier, int *status,
    char *error, size_t error_size);

/*
 * verifies id_token's signature with the cached JWKS (fetched again for an
 * unknown key id) and its claims (oidc_check_claims); the claims (caller
 * deletes) or NULL with error filled and *status OIDC_*
 */
cJSON *oidc_verify_id_token(const char *id_token, const char *nonce, int *status,
    char *error, size_t error_size);

/*
 * the checks of OpenID Connect Core 3.1.3.7 on verified claims: iss, aud
 * (and azp when there are several audiences, or one is given), exp, iat,
 * nbf within OIDC_LEEWAY of now, nonce, a sub of 1..255 bytes; false with
 * error filled
 */
bool oidc_check_claims(const cJSON *claims, const oidc_expect_t *expect, time_t now,
    char *error, size_t error_size);

#endif
