/*
 * sts: AWS STS AssumeRole (query API, SigV4 signed by libcurl) from the
 * base credentials of the control plane's environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN).  The endpoint is
 * VMX_STS_ENDPOINT when set (tests), else https://sts.<region>.amazonaws.com.
 * Neither the base nor the assumed credentials are ever logged.
 */

#ifndef CP_STS_H
#define CP_STS_H

#include <stdbool.h>
#include <time.h>

#include "config.h"

#define STS_DURATION_SECONDS  3600

typedef struct {
    char    *access_key_id;         /* owned, all three wiped by sts_credentials_clear() */
    char    *secret_access_key;
    char    *session_token;
    time_t   expiration;
} sts_credentials_t;

typedef struct {
    char     code[64];              /* STS's error code, or ours (NoBaseCredentials, ...) */
    char     message[256];          /* no secrets */
} sts_error_t;

typedef struct {
    const char  *region;
    const char  *role_arn;
    const char  *external_id;
    const char  *session_name;
} sts_role_t;

/* keeps the base credentials and endpoint of cfg (which outlives sts) */
void sts_init(const config_t *cfg);

/* false when the environment has no base credentials */
bool sts_configured(void);

/* 0 with *out filled (the caller clears it), or -1 with *err filled */
int sts_assume_role(const sts_role_t *role, sts_credentials_t *out, sts_error_t *err);

/* wipes and frees the credentials, leaving them empty */
void sts_credentials_clear(sts_credentials_t *c);

#endif
