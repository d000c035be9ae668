/*
 * validate: shared field rules.  Field paths are built with snprintf into
 * small stack buffers; messages say what was expected.
 */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <curl/curl.h>

#include "arena.h"
#include "validate.h"
#include "vmx_config.h"
#include "vmx_rfc3339.h"

#define FIELD_MAX  160
#define COST_MAX   1e9       /* USD of a budget: micro-dollars fit in int64 */

const char *const val_common_readonly[] = {
    "id", "workspaceId", "environmentId", "createdAt", "updatedAt", NULL
};


/* "<at>.<member>" into out[FIELD_MAX]; an over-long path is only cut short */
static const char *
member_path(char *out, const char *at, const char *member)
{
    if (snprintf(out, FIELD_MAX, "%s.%s", at, member) >= FIELD_MAX) {
        out[FIELD_MAX - 1] = '\0';
    }
    return out;
}


static bool
in_list(const char *name, const char *const *list)
{
    for (; list != NULL && *list != NULL; list++) {
        if (strcmp(name, *list) == 0) {
            return true;
        }
    }
    return false;
}


/* appends ".key" (or "key" at the root) or "[i]" to the path of len bytes */
static void
path_push(char *path, size_t len, const vmx_json_t *parent, const vmx_json_t *v, size_t i)
{
    if (parent->type == VMX_JSON_ARRAY) {
        snprintf(path + len, FIELD_MAX - len, "[%zu]", i);
    } else {
        snprintf(path + len, FIELD_MAX - len, "%s%s", len > 0 ? "." : "", v->key);
    }
}


/* true when a key or string under v holds a NUL; path then locates it */
static bool
find_nul(const vmx_json_t *v, char *path)
{
    size_t             len = strlen(path);
    size_t             i = 0;
    const vmx_json_t  *c;

    if (v->type == VMX_JSON_STRING) {
        return memchr(v->str, '\0', v->str_len) != NULL;
    }
    for (c = v->child; c != NULL; c = c->next, i++) {
        path_push(path, len, v, c, i);
        if ((v->type == VMX_JSON_OBJECT && memchr(c->key, '\0', c->key_len) != NULL)
            || find_nul(c, path))
        {
            return true;
        }
    }
    path[len] = '\0';
    return false;
}


bool
val_body(http_req_t *req)
{
    arena_t                arena = { NULL };
    vmx_json_error_t       err;
    vmx_json_duplicate_t   dup;
    vmx_json_t            *root;
    char                   path[FIELD_MAX] = "";
    int                    rc = 0;

    root = vmx_json_parse(req->body, req->body_len, arena_alloc, &arena, 0, &err);
    if (root != NULL) {
        rc = vmx_json_find_duplicate(root, arena_alloc, &arena, &dup);
    }
    if ((root == NULL && strcmp(err.message, "out of memory") == 0) || rc < 0) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
    } else if (root == NULL && err.too_dense) {
        /* the parse's memory is bounded by the text's size (vmx_json.h) */
        http_invalid(req, NULL, "the body holds too many values for its size (at byte %zu)",
                     err.offset);
    } else if (root == NULL) {
        http_invalid(req, NULL, "the body is not valid JSON: %s at byte %zu", err.message,
                     err.offset);
    } else if (rc == 1) {
        http_invalid(req, dup.path, "duplicate key \"%s\" at %s", dup.member->key, dup.path);
    } else if (find_nul(root, path)) {
        http_invalid(req, path, "%s holds a NUL character", path[0] ? path : "the body");
    } else {
        arena_reset(&arena, true);
        return true;
    }
    arena_reset(&arena, true);
    return false;
}


/* RFC 7396: patch applied to target (taken); returns the result */
static cJSON *
merge_patch(cJSON *target, const cJSON *patch)
{
    const cJSON *item;

    if (!cJSON_IsObject(patch)) {
        cJSON_Delete(target);
        return cJSON_Duplicate(patch, true);
    }
    if (!cJSON_IsObject(target)) {
        cJSON_Delete(target);
        target = cJSON_CreateObject();
    }
    cJSON_ArrayForEach(item, patch) {
        cJSON *old = cJSON_DetachItemFromObjectCaseSensitive(target, item->string);

        if (cJSON_IsNull(item)) {
            cJSON_Delete(old);
        } else {
            cJSON_AddItemToObject(target, item->string, merge_patch(old, item));
        }
    }
    return target;
}


/* false after answering when the body has a member the client cannot set */
static bool
members_writable(http_req_t *req, const char *const *writable, const char *const *readonly)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, req->json) {
        if (in_list(item->string, readonly) || in_list(item->string, val_common_readonly)) {
            http_invalid(req, item->string, "%s is read-only", item->string);
            return false;
        }
        if (!in_list(item->string, writable)) {
            http_invalid(req, item->string, "unknown field \"%s\"", item->string);
            return false;
        }
    }
    return true;
}


bool
val_merge(http_req_t *req, cJSON *doc, const cJSON *stored, const char *const *writable,
    const char *const *readonly)
{
    cJSON       *patched = NULL;
    const cJSON *item, *body = req->json;

    if (!members_writable(req, writable, readonly)) {
        return false;
    }
    if (stored != NULL && strcmp(req->method, "PATCH") == 0) {
        patched = cJSON_CreateObject();
        cJSON_ArrayForEach(item, stored) {
            if (in_list(item->string, writable)) {
                cJSON_AddItemToObject(patched, item->string, cJSON_Duplicate(item, true));
            }
        }
        body = patched = merge_patch(patched, req->json);
    }
    cJSON_ArrayForEach(item, body) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, item->string);
        cJSON_AddItemToObject(doc, item->string, cJSON_Duplicate(item, true));
    }
    cJSON_Delete(patched);
    return true;
}


bool
val_text(http_req_t *req, const char *field, const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            http_invalid(req, field, "%s must not hold control characters (U+%04X)", field,
                         (unsigned) (unsigned char) *s);
            return false;
        }
    }
    return true;
}


bool
val_name(http_req_t *req, const cJSON *doc)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");

    if (!cJSON_IsString(name) || name->valuestring[0] == '\0'
        || strlen(name->valuestring) > NAME_MAX_LEN)
    {
        http_invalid(req, "name", "name is required: a string of 1 to %d characters",
                     NAME_MAX_LEN);
        return false;
    }
    return val_text(req, "name", name->valuestring);
}


bool
val_string(http_req_t *req, cJSON *doc, const char *field, size_t max)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    if (v == NULL || cJSON_IsNull(v)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, field);
        cJSON_AddStringToObject(doc, field, "");
        return true;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max) {
        http_invalid(req, field, "%s must be a string of at most %zu characters", field, max);
        return false;
    }
    return val_text(req, field, v->valuestring);
}


bool
val_bool(http_req_t *req, const cJSON *doc, const char *field)
{
    if (!cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(doc, field))) {
        http_invalid(req, field, "%s must be true or false", field);
        return false;
    }
    return true;
}


bool
val_password(http_req_t *req, const char *field, const cJSON *password,
    const char *username, const char *old)
{
    size_t      chars = 0;
    const char *p;

    if (!cJSON_IsString(password) || strlen(password->valuestring) > PASSWORD_MAX_LEN) {
        http_invalid(req, field, "%s must be a string of %d to %d characters", field,
                     PASSWORD_MIN_CHARS, PASSWORD_MAX_LEN);
        return false;
    }
    /* the body is valid UTF-8 (val_body): count the bytes that start a character */
    for (p = password->valuestring; *p != '\0'; p++) {
        chars += ((unsigned char) *p & 0xc0) != 0x80;
    }
    if (chars < PASSWORD_MIN_CHARS) {
        http_invalid(req, field, "%s must have at least %d characters", field,
                     PASSWORD_MIN_CHARS);
        return false;
    }
    if (strcmp(password->valuestring, username) == 0) {
        http_invalid(req, field, "%s must not be the username", field);
        return false;
    }
    if (old != NULL && strcmp(password->valuestring, old) == 0) {
        http_invalid(req, field, "%s must not be the old password", field);
        return false;
    }
    return true;
}


bool
val_string_array(http_req_t *req, const cJSON *doc, const char *field)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, field);
    const cJSON *item;
    char         path[FIELD_MAX];
    int          i = 0;

    if (!cJSON_IsArray(arr)) {
        http_invalid(req, field, "%s must be an array of strings", field);
        return false;
    }
    cJSON_ArrayForEach(item, arr) {
        snprintf(path, sizeof(path), "%s[%d]", field, i++);
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
            http_invalid(req, path, "%s must be a non-empty string", path);
            return false;
        }
        if (!val_text(req, path, item->valuestring)) {
            return false;
        }
    }
    return true;
}


bool
val_labels(http_req_t *req, const cJSON *doc, const char *field)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(doc, field);
    const cJSON *item;
    char         path[FIELD_MAX];

    if (!cJSON_IsObject(obj)) {
        http_invalid(req, field, "%s must be an object of strings", field);
        return false;
    }
    cJSON_ArrayForEach(item, obj) {
        member_path(path, field, item->string);
        if (!cJSON_IsString(item)) {
            http_invalid(req, path, "%s must be a string", path);
            return false;
        }
        if (!val_text(req, path, item->string) || !val_text(req, path, item->valuestring)) {
            return false;
        }
    }
    return true;
}


/* a JSON number that is a whole number from 1 to 2^53 */
static bool
is_positive_int(const cJSON *v)
{
    return cJSON_IsNumber(v) && v->valuedouble >= 1
           && v->valuedouble <= 9007199254740992.0
           && (double) (long long) v->valuedouble == v->valuedouble;
}


static bool
val_capacity_entry(http_req_t *req, cJSON *entry, const char *at)
{
    static const char *const periods[] = {
        "minute", "hour", "day", "week", "month", "lifetime", NULL
    };
    static const char *const members[] = {
        "period", "requests", "tokens", "cost", "enabled", "dimension", NULL
    };
    const cJSON *item;
    cJSON       *v;
    char         path[FIELD_MAX];

    if (!cJSON_IsObject(entry)) {
        http_invalid(req, at, "%s must be an object", at);
        return false;
    }
    cJSON_ArrayForEach(item, entry) {
        if (!in_list(item->string, members)) {
            member_path(path, at, item->string);
            http_invalid(req, path, "unknown field \"%s\"", path);
            return false;
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(entry, "period");
    if (!cJSON_IsString(v) || !in_list(v->valuestring, periods)) {
        member_path(path, at, "period");
        http_invalid(req, path, "%s must be one of minute, hour, day, week, month, lifetime",
                     path);
        return false;
    }
    for (int i = 0; i < 2; i++) {
        const char *limit = i == 0 ? "requests" : "tokens";

        v = cJSON_GetObjectItemCaseSensitive(entry, limit);
        if (v != NULL && !cJSON_IsNull(v) && !is_positive_int(v)) {
            member_path(path, at, limit);
            http_invalid(req, path, "%s must be a positive integer", path);
            return false;
        }
    }

    /* USD, counted in whole micro-dollars by the data plane */
    v = cJSON_GetObjectItemCaseSensitive(entry, "cost");
    if (v != NULL && !cJSON_IsNull(v)
        && !(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= COST_MAX))
    {
        member_path(path, at, "cost");
        http_invalid(req, path, "%s must be a non-negative number of USD (at most %.0f)",
                     path, COST_MAX);
        return false;
    }

    v = cJSON_GetObjectItemCaseSensitive(entry, "enabled");
    if (v == NULL) {
        cJSON_AddTrueToObject(entry, "enabled");
    } else if (!cJSON_IsBool(v)) {
        member_path(path, at, "enabled");
        http_invalid(req, path, "%s must be true or false", path);
        return false;
    }

    v = cJSON_GetObjectItemCaseSensitive(entry, "dimension");
    if (v != NULL && !cJSON_IsNull(v)
        && !(cJSON_IsString(v) && strcmp(v->valuestring, "source-ip") == 0))
    {
        member_path(path, at, "dimension");
        http_invalid(req, path, "%s must be \"source-ip\" when given", path);
        return false;
    }
    return true;
}


bool
val_capacity(http_req_t *req, cJSON *doc, const char *field)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, field);
    cJSON *entry;
    char   path[FIELD_MAX];
    int    i = 0;

    if (!cJSON_IsArray(arr)) {
        http_invalid(req, field, "%s must be an array of capacity entries", field);
        return false;
    }
    cJSON_ArrayForEach(entry, arr) {
        snprintf(path, sizeof(path), "%s[%d]", field, i++);
        if (!val_capacity_entry(req, entry, path)) {
            return false;
        }
    }
    return true;
}


bool
val_int(http_req_t *req, const cJSON *doc, const char *field, long long min, long long max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);

    if (!cJSON_IsNumber(v) || v->valuedouble < (double) min || v->valuedouble > (double) max
        || (double) (long long) v->valuedouble != v->valuedouble)
    {
        http_invalid(req, field, "%s must be a whole number from %lld to %lld", field, min,
                     max);
        return false;
    }
    return true;
}

bool
val_timestamp(http_req_t *req, cJSON *doc, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    time_t       t;
    char         utc[VMX_RFC3339_US_SIZE];

    if (v == NULL || cJSON_IsNull(v)) {
        return true;
    }
    if (!cJSON_IsString(v) || !vmx_rfc3339_normalize(v->valuestring, &t, utc)) {
        http_invalid(req, field, "%s must be an RFC 3339 timestamp"
                     " (\"2026-11-21T10:00:00Z\") or null", field);
        return false;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(doc, field, cJSON_CreateString(utc));
    return true;
}

bool
val_timeouts(http_req_t *req, cJSON *doc, const char *field)
{
    static const struct {
        const char  *name;
        long long    max;
    } members[] = {
        { "connectMs", VMX_TIMEOUT_CONNECT_MAX }, { "firstByteMs", VMX_TIMEOUT_MAX },
        { "idleMs", VMX_TIMEOUT_MAX }, { "totalMs", VMX_TIMEOUT_MAX },
    };
    cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, field);
    cJSON *item, *next;
    char   path[FIELD_MAX];
    size_t i;

    if (t == NULL || cJSON_IsNull(t)) {
        return true;
    }
    if (!cJSON_IsObject(t)) {
        http_invalid(req, field, "%s must be an object", field);
        return false;
    }
    for (item = t->child; item != NULL; item = next) {
        next = item->next;
        for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
            if (strcmp(item->string, members[i].name) == 0) {
                break;
            }
        }
        member_path(path, field, item->string);
        if (i == sizeof(members) / sizeof(members[0])) {
            http_invalid(req, path, "unknown field \"%s\"", path);
            return false;
        }
        if (cJSON_IsNull(item)) {
            /* inherited: the connection's, else the data plane's default */
            cJSON_DeleteItemFromObjectCaseSensitive(t, item->string);
            continue;
        }
        if (!is_positive_int(item) || item->valuedouble > (double) members[i].max) {
            http_invalid(req, path, "%s must be an integer from 1 to %lld (milliseconds)",
                         path, members[i].max);
            return false;
        }
    }
    return true;
}


const provider_t *
val_provider(http_req_t *req, cJSON *obj, const char *field)
{
    cJSON            *v = cJSON_GetObjectItemCaseSensitive(obj, "provider");
    const provider_t *p = cJSON_IsString(v) ? provider_find(v->valuestring) : NULL;

    if (p == NULL) {
        http_invalid(req, field, "%s must be one of openai, anthropic, gemini (or google),"
                     " groq, aws-bedrock", field);
    } else if (strcmp(v->valuestring, p->id) != 0 && cJSON_SetValuestring(v, p->id) == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return NULL;
    }
    return p;
}


bool
val_is_http_url(const char *s)
{
    CURLU *u = curl_url();
    char  *scheme = NULL, *host = NULL;
    bool   ok = false;

    if (u == NULL) {
        return false;
    }
    if (curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    {
        ok = (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0)
             && host[0] != '\0';
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}


static bool
is_link_local_host(const char *host)
{
    static const unsigned char  mapped[12] = { [10] = 0xff, [11] = 0xff };
    static const unsigned char  metadata[16] = {         /* fd00:ec2::254 */
        0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54
    };
    char                        text[INET6_ADDRSTRLEN + 2];
    size_t                      len = strlen(host);
    unsigned char               a[16];

    /* "[fe80::1]" without its brackets, "169.254.169.254." without its dot */
    if (len < 3 || len >= sizeof(text)) {
        return false;
    }
    if (host[0] == '[') {
        memcpy(text, host + 1, len - 2);
        text[len - 2] = '\0';
    } else {
        memcpy(text, host, len);
        text[host[len - 1] == '.' ? len - 1 : len] = '\0';
    }
    if (inet_pton(AF_INET, text, a) == 1) {
        return a[0] == 169 && a[1] == 254;
    }
    if (inet_pton(AF_INET6, text, a) != 1) {
        return false;
    }
    return (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
           || memcmp(a, metadata, 16) == 0
           || (memcmp(a, mapped, 12) == 0 && a[12] == 169 && a[13] == 254);
}


bool
val_is_link_local_url(const char *s)
{
    CURLU *u = curl_url();
    char  *host = NULL;
    bool   found = false;

    if (u == NULL) {
        return false;
    }
    if (curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
    {
        found = is_link_local_host(host);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return found;
}


bool
val_is_aws_region(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 32 || s[0] < 'a' || s[0] > 'z' || s[len - 1] == '-') {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}
