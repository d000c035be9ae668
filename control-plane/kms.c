/*
 * kms: GenerateDataKey and Decrypt.
 *
 * Request: POST <endpoint path> with Content-Type application/x-amz-json-1.1
 * and X-Amz-Target TrentService.<operation>, both signed with host and
 * x-amz-date (and x-amz-security-token with a session token).  Answer: the
 * operation's JSON, or {"__type": "<code>", "message": "..."} on failure.
 * The signing scratch, the request headers and the answers hold key
 * material or tokens: all are wiped.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>

#include "arena.h"
#include "httpc.h"
#include "kms.h"
#include "log.h"
#include "vmx_sigv4.h"

#define KMS_MAX_ANSWER  65536
#define CACHE_SIZE      256          /* data keys held decrypted */
#define CONTENT_TYPE    "application/x-amz-json-1.1"

typedef struct {
    unsigned char       digest[32];  /* BLAKE2b(blob || 0 || context id) */
    unsigned char       key[KMS_DATA_KEY_BYTES];
    unsigned long long  used;        /* 0: free */
} cache_entry_t;

static struct {
    const char     *key_id;          /* VMX_KMS_KEY_ID, NULL: KMS unused */
    const char     *access_key_id;   /* from the config, not owned */
    const char     *secret_access_key;
    const char     *session_token;   /* may be NULL */
    char            region[64];
    char            url[512];
    char            host[300];       /* the Host header signed and sent */
    char            path[256];

    pthread_mutex_t     lock;        /* the cache and the failure state */
    cache_entry_t      *cache;       /* sodium_malloc'd, CACHE_SIZE */
    unsigned long long  tick;
    char                failure[256];   /* "" while KMS answers */
} kms = { .lock = PTHREAD_MUTEX_INITIALIZER };


/* region from an ARN arn:aws:kms:<region>:<account>:key/<id>; "" when none */
static void
arn_region(const char *arn, char *out, size_t size)
{
    const char *p = arn;

    out[0] = '\0';
    for (int field = 0; field < 3 && p != NULL; field++) {
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    if (p != NULL && strncmp(arn, "arn:", 4) == 0) {
        snprintf(out, size, "%.*s", (int) strcspn(p, ":"), p);
    }
}


/* host[:port] and path of the endpoint URL; -1 when it is none */
static int
split_endpoint(void)
{
    CURLU *u = curl_url();
    char  *host = NULL, *port = NULL, *path = NULL;
    int    rc = -1;

    if (u != NULL && curl_url_set(u, CURLUPART_URL, kms.url, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK
        && curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK)
    {
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
            snprintf(kms.host, sizeof(kms.host), "%s:%s", host, port);
        } else {
            snprintf(kms.host, sizeof(kms.host), "%s", host);
        }
        snprintf(kms.path, sizeof(kms.path), "%s", path[0] ? path : "/");
        rc = 0;
    }
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}


int
kms_init(const config_t *cfg)
{
    kms.key_id = cfg->kms_key_id;
    if (kms.key_id == NULL) {
        return 0;
    }
    kms.access_key_id = cfg->aws_access_key_id;
    kms.secret_access_key = cfg->aws_secret_access_key;
    kms.session_token = cfg->aws_session_token;
    if (kms.access_key_id == NULL || kms.secret_access_key == NULL) {
        log_error("config VMX_KMS_KEY_ID: needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        return -1;
    }
    if (cfg->kms_region != NULL) {
        snprintf(kms.region, sizeof(kms.region), "%s", cfg->kms_region);
    } else {
        arn_region(kms.key_id, kms.region, sizeof(kms.region));
    }
    if (kms.region[0] == '\0') {
        log_error("config VMX_KMS_REGION: not set, and VMX_KMS_KEY_ID is no key ARN");
        return -1;
    }
    if (cfg->kms_endpoint != NULL) {
        snprintf(kms.url, sizeof(kms.url), "%s", cfg->kms_endpoint);
    } else {
        snprintf(kms.url, sizeof(kms.url), "https://kms.%s.amazonaws.com/", kms.region);
    }
    if (split_endpoint() != 0) {
        log_error("config VMX_KMS_ENDPOINT: \"%s\" is not a URL", kms.url);
        return -1;
    }
    kms.cache = sodium_allocarray(CACHE_SIZE, sizeof(cache_entry_t));
    if (kms.cache == NULL) {
        return -1;
    }
    sodium_memzero(kms.cache, CACHE_SIZE * sizeof(cache_entry_t));
    log_info("kms: key %s, region %s, endpoint %s", kms.key_id, kms.region, kms.url);
    return 0;
}


void
kms_shutdown(void)
{
    sodium_free(kms.cache);    /* wipes */
    kms.cache = NULL;
}


/* logs a failure once per cause, and the recovery once */
static void
note_outcome(const secrets_error_t *err)
{
    pthread_mutex_lock(&kms.lock);
    if (err != NULL && strcmp(kms.failure, err->message) != 0) {
        snprintf(kms.failure, sizeof(kms.failure), "%s", err->message);
        log_error("kms key=%s endpoint=%s: %s", kms.key_id, kms.url, err->message);
    } else if (err == NULL && kms.failure[0] != '\0') {
        kms.failure[0] = '\0';
        log_info("kms key=%s endpoint=%s: answering again", kms.key_id, kms.url);
    }
    pthread_mutex_unlock(&kms.lock);
}


/* the SigV4 header lines for body (malloc'd; the caller wipes them), NULL on failure */
static char *
sign(const char *target, const char *body)
{
    arena_t              arena = { NULL };
    vmx_buf_t            out;
    vmx_sigv4_request_t  r;
    char                *lines = NULL;
    vmx_sigv4_header_t   headers[2] = {
        { vmx_sigv4_string("content-type"), vmx_sigv4_string(CONTENT_TYPE) },
        { vmx_sigv4_string("x-amz-target"), { target, strlen(target) } },
    };

    memset(&r, 0, sizeof(r));
    r.method = (vmx_sigv4_str_t) vmx_sigv4_string("POST");
    r.host = (vmx_sigv4_str_t) { kms.host, strlen(kms.host) };
    r.path = (vmx_sigv4_str_t) { kms.path, strlen(kms.path) };
    r.query = (vmx_sigv4_str_t) { "", 0 };
    r.headers = headers;
    r.nheaders = 2;
    r.payload = (vmx_sigv4_str_t) { body, strlen(body) };
    r.region = (vmx_sigv4_str_t) { kms.region, strlen(kms.region) };
    r.service = (vmx_sigv4_str_t) vmx_sigv4_string("kms");
    r.access_key_id = (vmx_sigv4_str_t) { kms.access_key_id, strlen(kms.access_key_id) };
    r.secret_key = (vmx_sigv4_str_t) { kms.secret_access_key,
                                       strlen(kms.secret_access_key) };
    if (kms.session_token != NULL) {
        r.session_token = (vmx_sigv4_str_t) { kms.session_token, strlen(kms.session_token) };
    }
    r.time = (int64_t) time(NULL);

    vmx_buf_init(&out, arena_alloc, &arena, 2048);
    if (vmx_sigv4_sign(&r, &out) == 0 && !vmx_buf_failed(&out)) {
        lines = strndup(out.data, out.len);
    }
    arena_wipe(&arena);
    return lines;
}


/* the answer's error as "<code>: <message>" (__type may be "<namespace>#<code>") */
static void
answer_error(const char *op, long status, const char *answer, secrets_error_t *err)
{
    cJSON       *json = answer ? cJSON_Parse(answer) : NULL;
    const char  *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "__type"));
    const char  *message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json,
                                                                                "message"));
    const char  *hash = type ? strrchr(type, '#') : NULL;

    if (message == NULL) {
        message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, "Message"));
    }
    secrets_set_error(err, 503, "AWS KMS %s failed: %.64s: %.160s (HTTP %ld)", op,
                      type ? (hash ? hash + 1 : type) : "HTTPError", message ? message : "",
                      status);
    cJSON_Delete(json);
}


/* one call of TrentService.<op>; the parsed answer (caller deletes), or NULL with *err */
static cJSON *
call(const char *op, const char *body, secrets_error_t *err)
{
    CURL              *curl = curl_easy_init();
    struct curl_slist *headers = NULL;
    char               target[64], header[320], error[CURL_ERROR_SIZE];
    char              *lines, *answer = NULL, *save = NULL;
    size_t             lines_len = 0;
    cJSON             *json = NULL;
    long               status;

    snprintf(target, sizeof(target), "TrentService.%s", op);
    lines = sign(target, body);
    if (curl == NULL || lines == NULL) {
        secrets_set_error(err, 503, "AWS KMS %s: the request could not be signed", op);
        goto done;
    }
    lines_len = strlen(lines);
    snprintf(header, sizeof(header), "Host: %s", kms.host);
    headers = curl_slist_append(headers, header);
    headers = curl_slist_append(headers, "Content-Type: " CONTENT_TYPE);
    snprintf(header, sizeof(header), "X-Amz-Target: %s", target);
    headers = curl_slist_append(headers, header);
    for (char *line = strtok_r(lines, "\r\n", &save); line != NULL;
         line = strtok_r(NULL, "\r\n", &save))
    {
        headers = curl_slist_append(headers, line);
    }
    curl_easy_setopt(curl, CURLOPT_URL, kms.url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));

    status = httpc_perform(curl, KMS_MAX_ANSWER, &answer, error, sizeof(error));
    if (status == 0) {
        secrets_set_error(err, 503, "AWS KMS %s failed: %s", op, error);
    } else if (status != 200) {
        answer_error(op, status, answer, err);
    } else if ((json = answer ? cJSON_Parse(answer) : NULL) == NULL) {
        secrets_set_error(err, 503, "AWS KMS %s answered no JSON", op);
    }

done:
    httpc_cleanup(curl, headers);
    if (lines != NULL) {
        sodium_memzero(lines, lines_len);      /* strtok_r cut it into lines */
        free(lines);
    }
    secrets_free(answer);
    note_outcome(json != NULL ? NULL : err);
    return json;
}


/* the request body (malloc'd): GenerateDataKey's without a blob, else
 * Decrypt's, whose blob names its KMS key itself (a key configured before
 * the current one still decrypts) */
static char *
request_body(const char *context_id, const char *blob_b64)
{
    cJSON *req = cJSON_CreateObject();
    cJSON *ctx = cJSON_AddObjectToObject(req, "EncryptionContext");
    char  *text;

    cJSON_AddStringToObject(ctx, "connectionId", context_id);
    if (blob_b64 != NULL) {
        cJSON_AddStringToObject(req, "CiphertextBlob", blob_b64);
    } else {
        cJSON_AddStringToObject(req, "KeyId", kms.key_id);
        cJSON_AddStringToObject(req, "KeySpec", "AES_256");
    }
    text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    return text;
}


/* the base64 member name of answer into out (exactly len bytes when len is
 * not 0, else at most max, *out_len set); -1 with *err */
static int
answer_bytes(const cJSON *answer, const char *op, const char *name, unsigned char *out,
    size_t max, size_t *out_len, secrets_error_t *err)
{
    const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, name));
    size_t      len = 0;

    if (b64 == NULL
        || sodium_base642bin(out, max, b64, strlen(b64), NULL, &len, NULL,
                             sodium_base64_VARIANT_ORIGINAL) != 0
        || (out_len == NULL && len != max))
    {
        secrets_set_error(err, 503, "AWS KMS %s answered no valid %s", op, name);
        err->kms = true;
        return -1;
    }
    if (out_len != NULL) {
        *out_len = len;
    }
    return 0;
}


/* deletes an answer, its Plaintext wiped */
static void
free_answer(cJSON *answer)
{
    cJSON *plain = cJSON_GetObjectItemCaseSensitive(answer, "Plaintext");

    if (cJSON_IsString(plain)) {
        sodium_memzero(plain->valuestring, strlen(plain->valuestring));
    }
    cJSON_Delete(answer);
}


static void
cache_digest(const unsigned char *blob, size_t blob_len, const char *context_id,
    unsigned char *digest)
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, blob, blob_len);
    crypto_generichash_update(&st, (const unsigned char *) "", 1);
    crypto_generichash_update(&st, (const unsigned char *) context_id, strlen(context_id));
    crypto_generichash_final(&st, digest, 32);
}


static bool
cache_get(const unsigned char *digest, unsigned char *key)
{
    bool found = false;

    pthread_mutex_lock(&kms.lock);
    for (int i = 0; i < CACHE_SIZE && !found; i++) {
        if (kms.cache[i].used != 0 && sodium_memcmp(kms.cache[i].digest, digest, 32) == 0) {
            memcpy(key, kms.cache[i].key, KMS_DATA_KEY_BYTES);
            kms.cache[i].used = ++kms.tick;
            found = true;
        }
    }
    pthread_mutex_unlock(&kms.lock);
    return found;
}


/* takes the place of the least recently used entry */
static void
cache_put(const unsigned char *digest, const unsigned char *key)
{
    int victim = 0;

    pthread_mutex_lock(&kms.lock);
    for (int i = 1; i < CACHE_SIZE; i++) {
        if (kms.cache[i].used < kms.cache[victim].used) {
            victim = i;
        }
    }
    memcpy(kms.cache[victim].digest, digest, 32);
    memcpy(kms.cache[victim].key, key, KMS_DATA_KEY_BYTES);
    kms.cache[victim].used = ++kms.tick;
    pthread_mutex_unlock(&kms.lock);
}


/* false with *err when VMX_KMS_KEY_ID is not set */
static bool
configured(secrets_error_t *err)
{
    if (kms.key_id == NULL) {
        secrets_set_error(err, 503, "AWS KMS is not configured (VMX_KMS_KEY_ID)");
    }
    return kms.key_id != NULL;
}


/*
 * TrentService.<op> for context_id (Decrypt: of blob_b64, else
 * GenerateDataKey): the answer (free it with free_answer()), or NULL with
 * *err
 */
static cJSON *
call_for(const char *op, const char *context_id, const char *blob_b64, secrets_error_t *err)
{
    char  *body;
    cJSON *answer = NULL;

    if (!configured(err)) {
        return NULL;
    }
    body = request_body(context_id, blob_b64);
    if (body == NULL) {
        secrets_set_error(err, 500, "out of memory");
    } else {
        answer = call(op, body, err);
    }
    free(body);
    err->kms = answer == NULL;
    return answer;
}


int
kms_generate_data_key(const char *context_id, unsigned char *key, unsigned char *blob,
    size_t *blob_len, secrets_error_t *err)
{
    cJSON         *answer = call_for("GenerateDataKey", context_id, NULL, err);
    unsigned char  digest[32];
    int            rc = -1;

    if (answer != NULL
        && answer_bytes(answer, "GenerateDataKey", "Plaintext", key, KMS_DATA_KEY_BYTES,
                        NULL, err) == 0
        && answer_bytes(answer, "GenerateDataKey", "CiphertextBlob", blob, KMS_MAX_BLOB,
                        blob_len, err) == 0)
    {
        cache_digest(blob, *blob_len, context_id, digest);
        cache_put(digest, key);
        rc = 0;
    }
    free_answer(answer);
    return rc;
}


int
kms_decrypt_data_key(const unsigned char *blob, size_t blob_len, const char *context_id,
    unsigned char *key, secrets_error_t *err)
{
    char           b64[sodium_base64_ENCODED_LEN(KMS_MAX_BLOB, sodium_base64_VARIANT_ORIGINAL)];
    cJSON         *answer;
    unsigned char  digest[32];
    int            rc = -1;

    if (blob_len > KMS_MAX_BLOB) {
        secrets_set_error(err, 500, "the stored CiphertextBlob is longer than %d bytes",
                          KMS_MAX_BLOB);
        return -1;
    }
    cache_digest(blob, blob_len, context_id, digest);
    if (cache_get(digest, key)) {
        return 0;
    }
    sodium_bin2base64(b64, sizeof(b64), blob, blob_len, sodium_base64_VARIANT_ORIGINAL);
    answer = call_for("Decrypt", context_id, b64, err);
    if (answer != NULL
        && answer_bytes(answer, "Decrypt", "Plaintext", key, KMS_DATA_KEY_BYTES, NULL,
                        err) == 0)
    {
        cache_put(digest, key);
        rc = 0;
    }
    free_answer(answer);
    return rc;
}
