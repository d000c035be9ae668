/*
 * sts: one AssumeRole call per sts_assume_role().
 *
 * Request: POST <endpoint>/ with the form Action=AssumeRole&Version=
 * 2011-06-15&RoleArn&RoleSessionName&ExternalId&DurationSeconds, signed
 * with SigV4 (service sts, the connection's region) by libcurl.  Answer:
 * AssumeRoleResponse/AssumeRoleResult/Credentials, or on failure
 * ErrorResponse/Error/{Code,Message}.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "httpc.h"
#include "vmx_rfc3339.h"
#include "sts.h"
#include "validate.h"
#include "xml.h"

#define STS_MAX_ANSWER  65536
#define CREDENTIALS     "AssumeRoleResponse/AssumeRoleResult/Credentials/"

static struct {
    const char  *access_key_id;     /* from the environment, not owned */
    const char  *secret_access_key;
    const char  *session_token;     /* may be NULL */
    const char  *endpoint;          /* may be NULL */
} sts;


void
sts_init(const config_t *cfg)
{
    sts.access_key_id = cfg->aws_access_key_id;
    sts.secret_access_key = cfg->aws_secret_access_key;
    sts.session_token = cfg->aws_session_token;
    sts.endpoint = cfg->sts_endpoint;
}


bool
sts_configured(void)
{
    return sts.access_key_id != NULL && sts.secret_access_key != NULL;
}


static void
wipe_free(char *s)
{
    if (s != NULL) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}


void
sts_credentials_clear(sts_credentials_t *c)
{
    wipe_free(c->access_key_id);
    wipe_free(c->secret_access_key);
    wipe_free(c->session_token);
    memset(c, 0, sizeof(*c));
}


/* "Action=AssumeRole&..." (malloc'd), NULL when out of memory */
static char *
form_body(CURL *curl, const sts_role_t *role)
{
    char *arn = curl_easy_escape(curl, role->role_arn, 0);
    char *name = curl_easy_escape(curl, role->session_name, 0);
    char *external = curl_easy_escape(curl, role->external_id, 0);
    char *body = NULL;

    if (arn != NULL && name != NULL && external != NULL
        && asprintf(&body, "Action=AssumeRole&Version=2011-06-15&RoleArn=%s"
                           "&RoleSessionName=%s&ExternalId=%s&DurationSeconds=%d",
                    arn, name, external, STS_DURATION_SECONDS) < 0)
    {
        body = NULL;
    }
    curl_free(arn);
    curl_free(name);
    curl_free(external);
    return body;
}


static void set_error(sts_error_t *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_error(sts_error_t *err, const char *code, const char *fmt, ...)
{
    va_list ap;

    snprintf(err->code, sizeof(err->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}


/* fills *out from a 200 answer; -1 when a member is missing */
static int
parse_credentials(const char *answer, sts_credentials_t *out, sts_error_t *err)
{
    char *expiration = xml_text(answer, CREDENTIALS "Expiration");
    int   rc = -1;

    out->access_key_id = xml_text(answer, CREDENTIALS "AccessKeyId");
    out->secret_access_key = xml_text(answer, CREDENTIALS "SecretAccessKey");
    out->session_token = xml_text(answer, CREDENTIALS "SessionToken");
    if (out->access_key_id == NULL || out->access_key_id[0] == '\0'
        || out->secret_access_key == NULL || out->secret_access_key[0] == '\0'
        || out->session_token == NULL || out->session_token[0] == '\0')
    {
        set_error(err, "InvalidAnswer", "%s", "the answer has no complete Credentials");
    } else if (expiration == NULL || !vmx_rfc3339_parse(expiration, &out->expiration)) {
        set_error(err, "InvalidAnswer", "%s", "the answer has no valid Credentials/Expiration");
    } else {
        rc = 0;
    }
    free(expiration);
    if (rc != 0) {
        sts_credentials_clear(out);
    }
    return rc;
}


/* fills *err from a failed answer: STS's code and message when it has them */
static void
parse_error(const char *answer, long status, sts_error_t *err)
{
    char *code = answer ? xml_text(answer, "ErrorResponse/Error/Code") : NULL;
    char *message = answer ? xml_text(answer, "ErrorResponse/Error/Message") : NULL;
    char  http[32];

    snprintf(http, sizeof(http), "HTTP %ld", status);
    set_error(err, code && code[0] ? code : "HTTPError", "%s",
              message && message[0] ? message : http);
    free(code);
    free(message);
}


int
sts_assume_role(const sts_role_t *role, sts_credentials_t *out, sts_error_t *err)
{
    CURL              *curl;
    struct curl_slist *headers = NULL;
    char              *body = NULL, *token_header = NULL, *answer = NULL;
    char               url[256], sigv4[64], error[CURL_ERROR_SIZE];
    long               status;
    int                rc = -1;

    memset(out, 0, sizeof(*out));
    if (!sts_configured()) {
        set_error(err, "NoBaseCredentials", "%s", "AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY are not set in the control plane's environment");
        return -1;
    }
    if (!val_is_aws_region(role->region)) {
        set_error(err, "InvalidRegion", "\"%.64s\" is not an AWS region", role->region);
        return -1;
    }
    if (sts.endpoint != NULL) {
        snprintf(url, sizeof(url), "%s", sts.endpoint);
    } else {
        snprintf(url, sizeof(url), "https://sts.%s.amazonaws.com/", role->region);
    }
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:sts", role->region);

    curl = curl_easy_init();
    body = curl ? form_body(curl, role) : NULL;
    if (body == NULL) {
        set_error(err, "InternalError", "%s", "out of memory");
        goto done;
    }
    headers = curl_slist_append(headers,
                                "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
    headers = curl_slist_append(headers, "Accept: text/xml");
    if (sts.session_token != NULL) {
        if (asprintf(&token_header, "X-Amz-Security-Token: %s", sts.session_token) < 0) {
            token_header = NULL;
            set_error(err, "InternalError", "%s", "out of memory");
            goto done;
        }
        headers = curl_slist_append(headers, token_header);
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
    curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(curl, CURLOPT_USERNAME, sts.access_key_id);
    curl_easy_setopt(curl, CURLOPT_PASSWORD, sts.secret_access_key);

    status = httpc_perform(curl, STS_MAX_ANSWER, &answer, error, sizeof(error));
    if (status == 0) {
        set_error(err, "RequestFailed", "%s", error);
    } else if (status != 200) {
        parse_error(answer, status, err);
    } else if (answer == NULL) {
        set_error(err, "InvalidAnswer", "%s", "empty answer");
    } else {
        rc = parse_credentials(answer, out, err);
    }

done:
    httpc_cleanup(curl, headers);
    wipe_free(token_header);
    wipe_free(answer);
    free(body);
    return rc;
}
