/*
 * validate: checks of request documents.  Every function returns false
 * after answering 400 validation_error with details.field naming the exact
 * field ("capacity[0].period").  They work on the merged document (stored
 * object + request fields), so create and update share every rule.
 */

#ifndef CP_VALIDATE_H
#define CP_VALIDATE_H

#include <stdbool.h>

#include "http.h"
#include "providers.h"
#include "vmx_json.h"

#define NAME_MAX_LEN         128
#define DESCRIPTION_MAX_LEN  4096

/*
 * the request body, before any handler reads it: strict JSON (UTF-8), no
 * key twice in one object at any depth (cJSON would keep the first where
 * PostgreSQL keeps the last), no NUL in any key or string (cJSON would cut
 * the string there); 400 naming the path otherwise
 */
bool val_body(http_req_t *req);

/*
 * fills doc, the object's defaults, from the request body (SPEC §8).  POST
 * and PUT take the body as the whole object: each member replaces doc's,
 * an absent one keeps its default.  PATCH applies the body to stored, the
 * object as it was read, as an RFC 7396 merge patch (objects merged member
 * by member, null deletes: a deleted member takes its default), and takes
 * the members of the result.
 * A member named in readonly or val_common_readonly (ids, timestamps,
 * observed state) is a 400 naming it, and so is any member not in writable.
 */
bool val_merge(http_req_t *req, cJSON *doc, const cJSON *stored,
    const char *const *writable, const char *const *readonly);

/* the read-only members every stored object has */
extern const char *const val_common_readonly[];

/*
 * s holds no control character (U+0000..U+001F, U+007F): the names,
 * descriptions, models, labels and ids an admin sets reach response
 * headers and log lines, where CR/LF would start a new one
 */
bool val_text(http_req_t *req, const char *field, const char *s);

/* doc.name: a string of 1..NAME_MAX_LEN characters (val_text) */
bool val_name(http_req_t *req, const cJSON *doc);

/* doc.field: a string of at most max bytes (val_text); null becomes "" */
bool val_string(http_req_t *req, cJSON *doc, const char *field, size_t max);

bool val_bool(http_req_t *req, const cJSON *doc, const char *field);

#define PASSWORD_MIN_CHARS  12
#define PASSWORD_MAX_LEN    1024     /* bytes */

/*
 * a password a user may choose (SPEC §9): a string of PASSWORD_MIN_CHARS
 * characters or more (at most PASSWORD_MAX_LEN bytes), not the username,
 * and not old when old is not NULL; the 400 names field and the rule
 */
bool val_password(http_req_t *req, const char *field, const cJSON *password,
    const char *username, const char *old);

/* doc.field: an array of non-empty strings (val_text) */
bool val_string_array(http_req_t *req, const cJSON *doc, const char *field);

/* doc.field: an object whose values are strings (keys and values val_text) */
bool val_labels(http_req_t *req, const cJSON *doc, const char *field);

/* doc.field: capacity entries (SPEC §5); fills enabled=true when absent */
bool val_capacity(http_req_t *req, cJSON *doc, const char *field);

/* doc.field: null or absent (inherit), or timeouts {connectMs, firstByteMs,
 * idleMs, totalMs}, each null (removed: inherit) or whole milliseconds
 * within vmx_config.h's bounds */
bool val_timeouts(http_req_t *req, cJSON *doc, const char *field);

/* doc.field: a whole number from min to max */
bool val_int(http_req_t *req, const cJSON *doc, const char *field, long long min,
    long long max);

/* doc.field: null or absent (none), or an RFC 3339 timestamp, which is
 * rewritten in UTC to the microsecond (a form PostgreSQL always reads) */
bool val_timestamp(http_req_t *req, cJSON *doc, const char *field);

/* obj.provider names a provider or an alias of one, which is rewritten
 * to the provider's id (stored and shown as such); field names it */
const provider_t *val_provider(http_req_t *req, cJSON *obj, const char *field);

/* "http://..." or "https://..." with a host */
bool val_is_http_url(const char *s);

/*
 * the host of URL s is a link-local or cloud metadata address, literally:
 * 169.254.0.0/16 (any IPv4 spelling curl reads as one), fe80::/10,
 * fd00:ec2::254, or an IPv4-mapped 169.254 address
 */
bool val_is_link_local_url(const char *s);

/* an AWS region name ("us-east-1"): lowercase letters, digits and dashes,
 * safe inside a host name and a SigV4 scope */
bool val_is_aws_region(const char *s);

#endif
