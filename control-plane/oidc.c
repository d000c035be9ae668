/*
 * oidc: discovery, code exchange and ID token verification (see oidc.h).
 *
 * The signature is checked by cjose (JWK import, JWS verify); this file only
 * picks the key, restricted to RS256 with an RSA key and ES256 with a P-256
 * key so that a token cannot choose "none" or an HMAC keyed with a public
 * key.  Everything read from the provider is bounded: the size of each
 * answer, the number of keys, the length of each field kept.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>
#include <curl/curl.h>
#include <sodium.h>

#include "httpc.h"
#include "log.h"
#include "oidc.h"

#define OIDC_MAX_DOCUMENT      65536      /* bytes of discovery, JWKS, token answers */
#define OIDC_MAX_KEYS          16
#define OIDC_MAX_KID           128
#define OIDC_MAX_URL           2048
#define OIDC_MAX_SUB           255
#define OIDC_CACHE_SECONDS     3600
#define OIDC_REFETCH_SECONDS   60         /* between fetches for an unknown key id */

typedef struct {
    char          kid[OIDC_MAX_KID + 1];
    cjose_jwk_t  *jwk;                    /* owned */
} oidc_key_t;

/* the provider's metadata and keys, shared by the request threads */
static struct {
    pthread_mutex_t  lock;
    char             authorization_endpoint[OIDC_MAX_URL + 1];
    char             token_endpoint[OIDC_MAX_URL + 1];
    char             jwks_uri[OIDC_MAX_URL + 1];
    time_t           discovered_at;       /* 0: not yet */
    oidc_key_t       keys[OIDC_MAX_KEYS];
    size_t           nkeys;
    time_t           keys_fetched_at;     /* 0: not yet */
    time_t           refetched_at;        /* last fetch for an unknown key id */
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const config_t *cfg;


int
oidc_init(const config_t *config)
{
    cfg = config;
    if (cfg->oidc_issuer != NULL) {
        log_info("oidc: sign-on through issuer=%s client_id=%s%s", cfg->oidc_issuer,
                 cfg->oidc_client_id, cfg->oidc_client_secret ? "" : " (public client)");
    }
    return 0;
}


static void
release_keys(void)
{
    for (size_t i = 0; i < cache.nkeys; i++) {
        cjose_jwk_release(cache.keys[i].jwk);
    }
    cache.nkeys = 0;
}


void
oidc_shutdown(void)
{
    pthread_mutex_lock(&cache.lock);
    release_keys();
    pthread_mutex_unlock(&cache.lock);
}


bool
oidc_enabled(void)
{
    return cfg != NULL && cfg->oidc_issuer != NULL;
}


/* GET url as JSON; the document (caller deletes) or NULL with error filled */
static cJSON *
fetch_json(const char *url, const char *what, char *error, size_t error_size)
{
    CURL               *curl = curl_easy_init();
    struct curl_slist  *headers;
    char               *answer = NULL;
    char                reason[CURL_ERROR_SIZE];
    long                status;
    cJSON              *doc;

    if (curl == NULL) {
        snprintf(error, error_size, "cannot fetch the %s", what);
        return NULL;
    }
    headers = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    status = httpc_perform(curl, OIDC_MAX_DOCUMENT, &answer, reason, sizeof(reason));
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);

    doc = status == 200 && answer != NULL ? cJSON_Parse(answer) : NULL;
    free(answer);
    if (status == 0) {
        snprintf(error, error_size, "cannot fetch the %s: %s", what, reason);
    } else if (status != 200) {
        snprintf(error, error_size, "the %s answered status %ld", what, status);
    } else if (!cJSON_IsObject(doc)) {
        snprintf(error, error_size, "the %s is not a JSON object", what);
        cJSON_Delete(doc);
        doc = NULL;
    }
    return doc;
}


/* copies doc.field, an http(s) URL, into out[OIDC_MAX_URL + 1] */
static bool
copy_url(const cJSON *doc, const char *field, char *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    if (!cJSON_IsString(v) || strlen(v->valuestring) > OIDC_MAX_URL
        || (strncmp(v->valuestring, "https://", 8) != 0
            && strncmp(v->valuestring, "http://", 7) != 0))
    {
        return false;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return true;
}


/* the discovery document, fetched when missing or old; under cache.lock */
static int
discover(time_t now, char *error, size_t error_size)
{
    char         url[OIDC_MAX_URL + 64];
    size_t       len = strlen(cfg->oidc_issuer);
    const cJSON *issuer;
    cJSON       *doc;
    bool         ok;

    if (cache.discovered_at != 0 && now - cache.discovered_at < OIDC_CACHE_SECONDS) {
        return 0;
    }
    /* OpenID Connect Discovery 4: the issuer, without a trailing slash, + the path */
    snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration",
             (int) (len > 0 && cfg->oidc_issuer[len - 1] == '/' ? len - 1 : len),
             cfg->oidc_issuer);
    doc = fetch_json(url, "discovery document", error, error_size);
    if (doc == NULL) {
        return OIDC_UNAVAILABLE;
    }
    issuer = cJSON_GetObjectItemCaseSensitive(doc, "issuer");
    ok = cJSON_IsString(issuer) && strcmp(issuer->valuestring, cfg->oidc_issuer) == 0;
    if (!ok) {
        snprintf(error, error_size, "the discovery document names another issuer");
    } else if (!copy_url(doc, "authorization_endpoint", cache.authorization_endpoint)
               || !copy_url(doc, "token_endpoint", cache.token_endpoint)
               || !copy_url(doc, "jwks_uri", cache.jwks_uri))
    {
        snprintf(error, error_size, "the discovery document lacks an http(s)"
                 " authorization_endpoint, token_endpoint or jwks_uri");
        ok = false;
    }
    cJSON_Delete(doc);
    if (!ok) {
        return OIDC_UNAVAILABLE;
    }
    cache.discovered_at = now;
    return 0;
}


/* replaces the cached keys with the provider's JWKS; under cache.lock */
static int
fetch_keys(time_t now, char *error, size_t error_size)
{
    cJSON       *doc, *keys;
    const cJSON *key;
    oidc_key_t   fresh[OIDC_MAX_KEYS];
    size_t       n = 0;
    int          rc = discover(now, error, error_size);

    if (rc != 0) {
        return rc;
    }
    doc = fetch_json(cache.jwks_uri, "JWKS", error, error_size);
    if (doc == NULL) {
        return OIDC_UNAVAILABLE;
    }
    keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
    cJSON_ArrayForEach(key, keys) {
        const cJSON *kid = cJSON_GetObjectItemCaseSensitive(key, "kid");
        const cJSON *use = cJSON_GetObjectItemCaseSensitive(key, "use");
        char        *text;
        cjose_err    err;

        /* encryption keys and keys of no use here are skipped, not refused */
        if (!cJSON_IsObject(key) || (use != NULL && !(cJSON_IsString(use)
                                                      && strcmp(use->valuestring, "sig") == 0)))
        {
            continue;
        }
        if (n == OIDC_MAX_KEYS) {
            log_warn("oidc: issuer=%s JWKS has more than %d signing keys; the rest are"
                     " ignored", cfg->oidc_issuer, OIDC_MAX_KEYS);
            break;
        }
        text = cJSON_PrintUnformatted(key);
        fresh[n].jwk = text ? cjose_jwk_import(text, strlen(text), &err) : NULL;
        free(text);
        if (fresh[n].jwk == NULL) {
            continue;
        }
        snprintf(fresh[n].kid, sizeof(fresh[n].kid), "%s",
                 cJSON_IsString(kid) && strlen(kid->valuestring) <= OIDC_MAX_KID
                 ? kid->valuestring : "");
        n++;
    }
    cJSON_Delete(doc);
    if (n == 0) {
        snprintf(error, error_size, "the JWKS has no signing key");
        return OIDC_UNAVAILABLE;
    }
    release_keys();
    memcpy(cache.keys, fresh, n * sizeof(fresh[0]));
    cache.nkeys = n;
    cache.keys_fetched_at = now;
    log_info("oidc: issuer=%s JWKS fetched: %zu signing keys", cfg->oidc_issuer, n);
    return 0;
}


/* whether key may check a signature of alg (RS256 or ES256) */
static bool
key_fits(const cjose_jwk_t *jwk, const char *alg)
{
    cjose_err       err;
    cjose_jwk_kty_t kty = cjose_jwk_get_kty(jwk, &err);

    if (strcmp(alg, "RS256") == 0) {
        return kty == CJOSE_JWK_KTY_RSA;
    }
    return kty == CJOSE_JWK_KTY_EC && cjose_jwk_EC_get_curve(jwk, &err) == CJOSE_JWK_EC_P_256;
}


/*
 * checks jws with the cached key named kid (any fitting key when the token
 * names none); under cache.lock.  *known: a key of that id was cached.
 */
static bool
verify_with_cache(cjose_jws_t *jws, const char *kid, const char *alg, bool *known)
{
    cjose_err err;

    *known = false;
    for (size_t i = 0; i < cache.nkeys; i++) {
        if (kid != NULL && strcmp(cache.keys[i].kid, kid) != 0) {
            continue;
        }
        *known = true;
        if (key_fits(cache.keys[i].jwk, alg) && cjose_jws_verify(jws, cache.keys[i].jwk, &err)) {
            return true;
        }
    }
    return false;
}


/* the signature of jws, with the JWKS fetched again when kid is unknown */
static int
verify_signature(cjose_jws_t *jws, const char *kid, const char *alg, char *error,
    size_t error_size)
{
    time_t now = time(NULL);
    bool   known, ok;
    int    rc = 0;

    pthread_mutex_lock(&cache.lock);
    if (cache.keys_fetched_at == 0 || now - cache.keys_fetched_at >= OIDC_CACHE_SECONDS) {
        rc = fetch_keys(now, error, error_size);
    }
    ok = rc == 0 && verify_with_cache(jws, kid, alg, &known);
    if (rc == 0 && !ok && !known) {
        if (now - cache.refetched_at >= OIDC_REFETCH_SECONDS) {
            /* a key the provider may have rotated in since the last fetch */
            log_info("oidc: issuer=%s unknown kid=%.64s: fetching the JWKS again",
                     cfg->oidc_issuer, kid ? kid : "-");
            cache.refetched_at = now;
            rc = fetch_keys(now, error, error_size);
            ok = rc == 0 && verify_with_cache(jws, kid, alg, &known);
        } else {
            log_warn("oidc: issuer=%s unknown kid=%.64s: JWKS fetched less than %d s ago",
                     cfg->oidc_issuer, kid ? kid : "-", OIDC_REFETCH_SECONDS);
        }
    }
    pthread_mutex_unlock(&cache.lock);
    if (rc != 0) {
        return rc;
    }
    if (!ok) {
        snprintf(error, error_size, known ? "the ID token's signature is not valid"
                                          : "the ID token is signed with an unknown key");
        return OIDC_INVALID;
    }
    return 0;
}


char *
oidc_authorize_url(const char *state, const char *nonce, const char *verifier, int *status,
    char *error, size_t error_size)
{
    unsigned char  digest[crypto_hash_sha256_BYTES];
    char           challenge[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    char           endpoint[OIDC_MAX_URL + 1];
    CURL          *curl;
    char          *client_id, *redirect, *scope, *url = NULL;
    int            rc;

    pthread_mutex_lock(&cache.lock);
    rc = discover(time(NULL), error, error_size);
    memcpy(endpoint, cache.authorization_endpoint, sizeof(endpoint));
    pthread_mutex_unlock(&cache.lock);
    *status = rc;
    if (rc != 0) {
        return NULL;
    }
    /* PKCE S256 (RFC 7636 4.2) */
    crypto_hash_sha256(digest, (const unsigned char *) verifier, strlen(verifier));
    sodium_bin2base64(challenge, sizeof(challenge), digest, sizeof(digest),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);

    curl = curl_easy_init();
    client_id = curl ? curl_easy_escape(curl, cfg->oidc_client_id, 0) : NULL;
    redirect = curl ? curl_easy_escape(curl, cfg->oidc_redirect_uri, 0) : NULL;
    scope = curl ? curl_easy_escape(curl, cfg->oidc_scopes, 0) : NULL;
    if (client_id != NULL && redirect != NULL && scope != NULL
        && asprintf(&url, "%s%cresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                    "&state=%s&nonce=%s&code_challenge=%s&code_challenge_method=S256",
                    endpoint, strchr(endpoint, '?') ? '&' : '?', client_id, redirect,
                    scope, state, nonce, challenge) < 0)
    {
        url = NULL;
    }
    curl_free(client_id);
    curl_free(redirect);
    curl_free(scope);
    curl_easy_cleanup(curl);
    if (url == NULL) {
        snprintf(error, error_size, "cannot build the authorization URL");
        *status = OIDC_UNAVAILABLE;
    }
    return url;
}


/* the form body of the token request (malloc'd), NULL when out of memory */
static char *
token_request(CURL *curl, const char *code, const char *verifier)
{
    char *c = curl_easy_escape(curl, code, 0);
    char *r = curl_easy_escape(curl, cfg->oidc_redirect_uri, 0);
    char *id = curl_easy_escape(curl, cfg->oidc_client_id, 0);
    char *body = NULL;

    /* a public client names itself in the body; a confidential one authenticates */
    if (c == NULL || r == NULL || id == NULL
        || asprintf(&body, "grant_type=authorization_code&code=%s&redirect_uri=%s"
                    "&code_verifier=%s%s%s", c, r, verifier,
                    cfg->oidc_client_secret ? "" : "&client_id=",
                    cfg->oidc_client_secret ? "" : id) < 0)
    {
        body = NULL;
    }
    curl_free(c);
    curl_free(r);
    curl_free(id);
    return body;
}


/* the id_token of a token endpoint answer (malloc'd) or NULL */
static char *
id_token_of(const char *answer)
{
    cJSON       *doc = cJSON_Parse(answer);
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "id_token");
    cJSON       *field;
    char        *out = NULL;

    if (cJSON_IsString(tok) && strlen(tok->valuestring) <= OIDC_MAX_TOKEN) {
        out = strdup(tok->valuestring);
    }
    /* the answer also holds the access and refresh tokens: no copy is left behind */
    cJSON_ArrayForEach(field, doc) {
        if (cJSON_IsString(field)) {
            sodium_memzero(field->valuestring, strlen(field->valuestring));
        }
    }
    cJSON_Delete(doc);
    return out;
}


char *
oidc_exchange_code(const char *code, const char *verifier, int *status, char *error,
    size_t error_size)
{
    char                endpoint[OIDC_MAX_URL + 1];
    char                reason[CURL_ERROR_SIZE];
    struct curl_slist  *headers;
    CURL               *curl;
    char               *body, *answer = NULL, *id = NULL, *secret = NULL, *token = NULL;
    long                http_status;
    int                 rc;

    pthread_mutex_lock(&cache.lock);
    rc = discover(time(NULL), error, error_size);
    memcpy(endpoint, cache.token_endpoint, sizeof(endpoint));
    pthread_mutex_unlock(&cache.lock);
    *status = rc;
    if (rc != 0) {
        return NULL;
    }
    *status = OIDC_UNAVAILABLE;
    curl = curl_easy_init();
    if (curl == NULL || (body = token_request(curl, code, verifier)) == NULL) {
        curl_easy_cleanup(curl);
        snprintf(error, error_size, "cannot build the token request");
        return NULL;
    }
    headers = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, endpoint);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    if (cfg->oidc_client_secret != NULL) {
        /* client_secret_basic: both form-encoded first (RFC 6749 2.3.1) */
        id = curl_easy_escape(curl, cfg->oidc_client_id, 0);
        secret = curl_easy_escape(curl, cfg->oidc_client_secret, 0);
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERNAME, id);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, secret);
    }
    http_status = httpc_perform(curl, OIDC_MAX_DOCUMENT, &answer, reason, sizeof(reason));
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    curl_free(id);
    if (secret != NULL) {
        sodium_memzero(secret, strlen(secret));
        curl_free(secret);
    }
    free(body);

    if (http_status == 0) {
        snprintf(error, error_size, "cannot reach the token endpoint: %s", reason);
    } else if (http_status >= 400 && http_status < 500) {
        /* a code used twice, expired, or not of this verifier */
        snprintf(error, error_size, "the provider refused the code (status %ld)", http_status);
        *status = OIDC_INVALID;
    } else if (http_status != 200 || answer == NULL
               || (token = id_token_of(answer)) == NULL)
    {
        snprintf(error, error_size, "the token endpoint answered status %ld without an"
                 " ID token", http_status);
    } else {
        *status = 0;
    }
    if (answer != NULL) {
        sodium_memzero(answer, strlen(answer));
        free(answer);
    }
    return token;
}


/* the string header field of jws, NULL when absent */
static const char *
header_str(cjose_jws_t *jws, const char *name)
{
    cjose_err err;

    return cjose_header_get(cjose_jws_get_protected(jws), name, &err);
}


cJSON *
oidc_verify_id_token(const char *id_token, const char *nonce, int *status, char *error,
    size_t error_size)
{
    oidc_expect_t  expect = { cfg->oidc_issuer, cfg->oidc_client_id, nonce };
    cjose_jws_t   *jws;
    cjose_err      err;
    const char    *alg, *kid;
    uint8_t       *payload;
    size_t         payload_len;
    cJSON         *claims = NULL;

    *status = OIDC_INVALID;
    jws = strlen(id_token) <= OIDC_MAX_TOKEN
          ? cjose_jws_import(id_token, strlen(id_token), &err) : NULL;
    if (jws == NULL) {
        snprintf(error, error_size, "the ID token is not a signed JWT");
        return NULL;
    }
    alg = header_str(jws, CJOSE_HDR_ALG);
    kid = header_str(jws, CJOSE_HDR_KID);
    if (alg == NULL || (strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0)) {
        snprintf(error, error_size, "the ID token's algorithm %.16s is not RS256 or ES256",
                 alg ? alg : "(none)");
    } else if (kid != NULL && strlen(kid) > OIDC_MAX_KID) {
        snprintf(error, error_size, "the ID token's key id is longer than %d bytes",
                 OIDC_MAX_KID);
    } else if ((*status = verify_signature(jws, kid, alg, error, error_size)) == 0) {
        *status = OIDC_INVALID;
        if (!cjose_jws_get_plaintext(jws, &payload, &payload_len, &err)
            || (claims = cJSON_ParseWithLength((const char *) payload, payload_len)) == NULL
            || !cJSON_IsObject(claims))
        {
            snprintf(error, error_size, "the ID token's claims are not a JSON object");
        } else if (oidc_check_claims(claims, &expect, time(NULL), error, error_size)) {
            *status = 0;
        }
    }
    cjose_jws_release(jws);
    if (*status != 0) {
        cJSON_Delete(claims);
        return NULL;
    }
    return claims;
}


/* claims.name as a number (a NumericDate), false when absent or not one */
static bool
numeric_date(const cJSON *claims, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);

    if (!cJSON_IsNumber(v)) {
        return false;
    }
    *out = v->valuedouble;
    return true;
}


static bool
check_audience(const cJSON *claims, const oidc_expect_t *expect, char *error,
    size_t error_size)
{
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
    const cJSON *azp = cJSON_GetObjectItemCaseSensitive(claims, "azp");
    const cJSON *a;
    bool         ours = false;
    int          n = 0;

    if (cJSON_IsString(aud)) {
        ours = strcmp(aud->valuestring, expect->client_id) == 0;
        n = 1;
    } else if (cJSON_IsArray(aud)) {
        cJSON_ArrayForEach(a, aud) {
            ours = ours || (cJSON_IsString(a) && strcmp(a->valuestring, expect->client_id) == 0);
            n++;
        }
    }
    if (!ours) {
        snprintf(error, error_size, "the ID token is for another audience");
        return false;
    }
    if ((n > 1 || azp != NULL)
        && !(cJSON_IsString(azp) && strcmp(azp->valuestring, expect->client_id) == 0))
    {
        snprintf(error, error_size, "the ID token was issued to another party (azp)");
        return false;
    }
    return true;
}


bool
oidc_check_claims(const cJSON *claims, const oidc_expect_t *expect, time_t now,
    char *error, size_t error_size)
{
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(claims, "nonce");
    double       exp, iat, nbf;

    if (!cJSON_IsString(iss) || strcmp(iss->valuestring, expect->issuer) != 0) {
        snprintf(error, error_size, "the ID token is from another issuer");
        return false;
    }
    if (!check_audience(claims, expect, error, error_size)) {
        return false;
    }
    if (!numeric_date(claims, "exp", &exp) || exp + OIDC_LEEWAY < (double) now) {
        snprintf(error, error_size, "the ID token has expired");
        return false;
    }
    if (!numeric_date(claims, "iat", &iat) || iat - OIDC_LEEWAY > (double) now) {
        snprintf(error, error_size, "the ID token has no iat or one in the future");
        return false;
    }
    if (numeric_date(claims, "nbf", &nbf) && nbf - OIDC_LEEWAY > (double) now) {
        snprintf(error, error_size, "the ID token is not valid yet");
        return false;
    }
    if (!cJSON_IsString(nonce) || strcmp(nonce->valuestring, expect->nonce) != 0) {
        snprintf(error, error_size, "the ID token's nonce is not the one of this login");
        return false;
    }
    if (!cJSON_IsString(sub) || sub->valuestring[0] == '\0'
        || strlen(sub->valuestring) > OIDC_MAX_SUB)
    {
        snprintf(error, error_size, "the ID token has no subject of 1 to %d bytes",
                 OIDC_MAX_SUB);
        return false;
    }
    return true;
}
