/*
 * The ID token claim checks of the control plane's OIDC sign-on
 * (oidc_check_claims() in control-plane/oidc.c): each rule of OpenID
 * Connect Core 3.1.3.7 it applies, on claims already verified.
 */

#include <time.h>

#include "oidc.h"
#include "unit.h"

#define ISSUER  "https://idp.example.org"
#define CLIENT  "vmx"
#define NONCE   "n-0S6_WzA2Mj"
#define NOW     1700000000

static const oidc_expect_t expect = { ISSUER, CLIENT, NONCE };


/* whether claims (JSON text) pass; when not, the error holds reason */
static bool
passes(const char *json, const char *reason)
{
    cJSON *claims = cJSON_Parse(json);
    char   error[OIDC_ERROR_LEN] = "";
    bool   ok;

    if (claims == NULL) {
        fprintf(stderr, "bad test JSON: %s\n", json);
        return false;
    }
    ok = oidc_check_claims(claims, &expect, NOW, error, sizeof(error));
    cJSON_Delete(claims);
    if (!ok && reason != NULL && strstr(error, reason) == NULL) {
        fprintf(stderr, "refused for \"%s\", not \"%s\": %s\n", error, reason, json);
        return true;    /* refused for another reason: fails the CHECK(!passes()) */
    }
    return ok;
}


#define GOOD_TIMES  "\"exp\": 1700000600, \"iat\": 1700000000"
#define GOOD(more) \
    "{\"iss\": \"" ISSUER "\", \"sub\": \"248289761001\", \"nonce\": \"" NONCE "\", " \
    GOOD_TIMES ", " more "}"


static void
test_valid(void)
{
    CHECK(passes(GOOD("\"aud\": \"vmx\""), NULL));
    CHECK(passes(GOOD("\"aud\": [\"vmx\"]"), NULL));
    CHECK(passes(GOOD("\"aud\": [\"vmx\", \"api\"], \"azp\": \"vmx\""), NULL));
    CHECK(passes(GOOD("\"aud\": \"vmx\", \"azp\": \"vmx\""), NULL));
    /* within the leeway on either side */
    CHECK(passes("{\"iss\": \"" ISSUER "\", \"sub\": \"s\", \"nonce\": \"" NONCE "\","
                 " \"aud\": \"vmx\", \"exp\": 1699999950, \"iat\": 1700000050,"
                 " \"nbf\": 1700000050}", NULL));
}


static void
test_issuer_and_audience(void)
{
    CHECK(!passes("{\"iss\": \"https://idp.example.org/\", \"sub\": \"s\", \"nonce\": \"" NONCE
                  "\", \"aud\": \"vmx\", " GOOD_TIMES "}", "another issuer"));
    CHECK(!passes("{\"sub\": \"s\", \"nonce\": \"" NONCE "\", \"aud\": \"vmx\", " GOOD_TIMES
                  "}", "another issuer"));
    CHECK(!passes(GOOD("\"aud\": \"other\""), "another audience"));
    CHECK(!passes(GOOD("\"aud\": [\"other\", \"api\"]"), "another audience"));
    CHECK(!passes(GOOD("\"aud\": 7"), "another audience"));
    CHECK(!passes(GOOD("\"foo\": 1"), "another audience"));
    /* several audiences need azp, and azp must be this client */
    CHECK(!passes(GOOD("\"aud\": [\"vmx\", \"api\"]"), "another party"));
    CHECK(!passes(GOOD("\"aud\": [\"vmx\", \"api\"], \"azp\": \"api\""), "another party"));
    CHECK(!passes(GOOD("\"aud\": \"vmx\", \"azp\": \"api\""), "another party"));
}


static void
test_times(void)
{
    const char *head = "{\"iss\": \"" ISSUER "\", \"sub\": \"s\", \"nonce\": \"" NONCE "\","
                       " \"aud\": \"vmx\", ";
    char        json[512];

    snprintf(json, sizeof(json), "%s\"exp\": 1699999939, \"iat\": 1699999000}", head);
    CHECK(!passes(json, "expired"));
    snprintf(json, sizeof(json), "%s\"iat\": 1699999000}", head);
    CHECK(!passes(json, "expired"));
    snprintf(json, sizeof(json), "%s\"exp\": \"1700000600\", \"iat\": 1699999000}", head);
    CHECK(!passes(json, "expired"));
    snprintf(json, sizeof(json), "%s\"exp\": 1700000600}", head);
    CHECK(!passes(json, "iat"));
    snprintf(json, sizeof(json), "%s\"exp\": 1700000600, \"iat\": 1700000061}", head);
    CHECK(!passes(json, "iat"));
    snprintf(json, sizeof(json), "%s\"exp\": 1700000600, \"iat\": 1700000000,"
             " \"nbf\": 1700000061}", head);
    CHECK(!passes(json, "not valid yet"));
}


static void
test_nonce_and_subject(void)
{
    const char *tail = "\"aud\": \"vmx\", " GOOD_TIMES "}";
    char        json[1024], sub[300];

    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"sub\": \"s\", %s", tail);
    CHECK(!passes(json, "nonce"));
    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"sub\": \"s\","
             " \"nonce\": \"" NONCE "x\", %s", tail);
    CHECK(!passes(json, "nonce"));
    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"nonce\": \"" NONCE "\", %s", tail);
    CHECK(!passes(json, "subject"));
    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"sub\": \"\","
             " \"nonce\": \"" NONCE "\", %s", tail);
    CHECK(!passes(json, "subject"));
    memset(sub, 'a', 256);
    sub[256] = '\0';
    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"sub\": \"%s\","
             " \"nonce\": \"" NONCE "\", %s", sub, tail);
    CHECK(!passes(json, "subject"));
    sub[255] = '\0';
    snprintf(json, sizeof(json), "{\"iss\": \"" ISSUER "\", \"sub\": \"%s\","
             " \"nonce\": \"" NONCE "\", %s", sub, tail);
    CHECK(passes(json, NULL));
}


int
main(void)
{
    test_valid();
    test_issuer_and_audience();
    test_times();
    test_nonce_and_subject();
    return UNIT_REPORT();
}
