/*
 * config: environment parsing.  Every setting is validated here so the rest
 * of the daemon never sees a malformed value.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "config.h"
#include "log.h"

#define DEFAULT_LISTEN      "127.0.0.1:8090"
#define DEFAULT_SCHEMA_DIR  "schema"
#define DEFAULT_RECONCILE   5
#define DEFAULT_FORGET      300      /* seconds */
#define DEFAULT_STS_MARGIN  300
#define MAX_STS_MARGIN      3000     /* below the 3600 s the credentials last */
#define DEFAULT_INGEST_MS   1000
#define DEFAULT_RETENTION   30
#define DEFAULT_LOGIN_USER_FAILURES     5
#define DEFAULT_LOGIN_ADDRESS_FAILURES  50
#define DEFAULT_LOGIN_THROTTLE          60      /* seconds */
#define DEFAULT_LOGIN_THROTTLE_MAX      900
#define DEFAULT_ACTIVITY_RETENTION      365     /* days */
#define SECRET_FILE_MAX     4096
#define DEFAULT_OIDC_SCOPES "openid profile email"
#define DEFAULT_OIDC_CLAIM  "groups"
#define OIDC_VALUE_MAX      2048     /* an issuer, a URL, a scope list */
#define DEFAULT_REENCRYPT_BATCH  50
#define DEFAULT_REENCRYPT_PAUSE  100
#define DEFAULT_OTLP_INTERVAL    10      /* seconds */
#define DEFAULT_OTLP_QUEUE       8192    /* records */
#define DEFAULT_BATCH_CONCURRENCY     8
#define DEFAULT_BATCH_SHARE           "0.5"
#define DEFAULT_BATCH_GRACE           660     /* seconds: past vmx_total_timeout's 600 */
#define DEFAULT_BATCH_ITEM_TIMEOUT    300     /* seconds */
#define DEFAULT_BATCH_CALLBACK_TRIES  8
#define DEFAULT_BATCH_CALLBACK_BACKOFF  1000  /* milliseconds */

static const config_t  *current;


typedef enum {
    SETTING_STRING,       /* char *: the value, NULL when unset or empty */
    SETTING_INT,          /* int 1..max, dflt when unset */
    SETTING_FLAG,         /* bool: "1" or "0", false when unset */
    SETTING_URL,          /* char *: an http(s) URL, NULL when unset */
    SETTING_SHARE         /* double: a fraction in (0, 1], dflt_string when unset */
} setting_type_e;

/*
 * Every setting: its variable, its type and its field, with a default and
 * a bound where it has them.  The text of a setting with a syntax of its
 * own (VMX_LISTEN, VMX_DATAPLANES, VMX_DATAPLANES_DNS, VMX_LOG_LEVEL,
 * VMX_OIDC_ROLE_MAP) is
 * parsed, and the settings are checked against each other (OIDC's, a
 * token file with data planes), in config_load().
 */
typedef struct {
    const char      *name;
    setting_type_e   type;
    size_t           offset;
    const char      *dflt_string;
    int              dflt;
    long             max;
} setting_t;

#define SETTING(name, type, field, dflt_string, dflt, max)                    \
    { name, type, offsetof(config_t, field), dflt_string, dflt, max }
#define STRING(name, field)           SETTING(name, SETTING_STRING, field, NULL, 0, 0)
#define STRING_OR(name, field, dflt)  SETTING(name, SETTING_STRING, field, dflt, 0, 0)
#define URL(name, field)              SETTING(name, SETTING_URL, field, NULL, 0, 0)
#define INT(name, field, dflt, max)   SETTING(name, SETTING_INT, field, NULL, dflt, max)
#define FLAG(name, field)             SETTING(name, SETTING_FLAG, field, NULL, 0, 0)
#define SHARE(name, field, dflt)      SETTING(name, SETTING_SHARE, field, dflt, 0, 0)

static const setting_t settings[] = {
    STRING_OR("VMX_LISTEN", listen, DEFAULT_LISTEN),
    STRING("VMX_DATAPLANES", dataplanes_list),
    STRING("VMX_DATAPLANES_DNS", dataplanes_dns),
    INT("VMX_DATAPLANE_FORGET_SECONDS", dataplane_forget_seconds, DEFAULT_FORGET, 30 * 86400),
    STRING("VMX_LOG_LEVEL", log_level),
    STRING("VMX_DATABASE_URL", database_url),
    STRING("VMX_MASTER_KEY_FILE", master_key_file),
    STRING("VMX_SECRET_KEYS_DIR", secret_keys_dir),
    STRING("VMX_KMS_KEY_ID", kms_key_id),
    STRING("VMX_KMS_REGION", kms_region),
    URL("VMX_KMS_ENDPOINT", kms_endpoint),
    INT("VMX_REENCRYPT_BATCH", reencrypt_batch, DEFAULT_REENCRYPT_BATCH, 1000),
    INT("VMX_REENCRYPT_PAUSE_MS", reencrypt_pause_ms, DEFAULT_REENCRYPT_PAUSE, 60000),
    STRING("VMX_DATAPLANE_TOKEN_FILE", dataplane_token_file),
    STRING("VMX_ADMIN_PASSWORD", admin_password),
    STRING_OR("VMX_SCHEMA_DIR", schema_dir, DEFAULT_SCHEMA_DIR),
    INT("VMX_RECONCILE_INTERVAL", reconcile_interval, DEFAULT_RECONCILE, 86400),
    STRING("AWS_ACCESS_KEY_ID", aws_access_key_id),
    STRING("AWS_SECRET_ACCESS_KEY", aws_secret_access_key),
    STRING("AWS_SESSION_TOKEN", aws_session_token),
    URL("VMX_STS_ENDPOINT", sts_endpoint),
    INT("VMX_STS_REFRESH_MARGIN", sts_refresh_margin, DEFAULT_STS_MARGIN, MAX_STS_MARGIN),
    INT("VMX_INGEST_INTERVAL_MS", ingest_interval_ms, DEFAULT_INGEST_MS, 60000),
    INT("VMX_RETENTION_DAYS", retention_days, DEFAULT_RETENTION, 36500),
    STRING("VMX_METRICS_TOKEN_FILE", metrics_token_file),
    STRING("VMX_TOKENIZER", tokenizer_file),
    FLAG("VMX_ALLOW_LINK_LOCAL", allow_link_local),
    INT("VMX_LOGIN_THROTTLE_USER_FAILURES", login_user_failures,
        DEFAULT_LOGIN_USER_FAILURES, 1000000),
    INT("VMX_LOGIN_THROTTLE_ADDRESS_FAILURES", login_address_failures,
        DEFAULT_LOGIN_ADDRESS_FAILURES, 1000000),
    INT("VMX_LOGIN_THROTTLE_SECONDS", login_throttle_seconds, DEFAULT_LOGIN_THROTTLE, 86400),
    INT("VMX_LOGIN_THROTTLE_MAX_SECONDS", login_throttle_max, DEFAULT_LOGIN_THROTTLE_MAX,
        86400),
    INT("VMX_ACTIVITY_RETENTION_DAYS", activity_retention_days, DEFAULT_ACTIVITY_RETENTION,
        36500),
    URL("VMX_OTLP_ENDPOINT", otlp_endpoint),
    STRING("VMX_OTLP_HEADERS", otlp_headers),
    INT("VMX_OTLP_METRICS_INTERVAL", otlp_metrics_interval, DEFAULT_OTLP_INTERVAL, 86400),
    INT("VMX_OTLP_QUEUE_SIZE", otlp_queue_size, DEFAULT_OTLP_QUEUE, 1000000),
    STRING("VMX_OIDC_ISSUER", oidc_issuer),
    STRING("VMX_OIDC_CLIENT_ID", oidc_client_id),
    STRING("VMX_OIDC_REDIRECT_URI", oidc_redirect_uri),
    STRING("VMX_OIDC_UI_URL", oidc_ui_url),
    STRING("VMX_OIDC_DEFAULT_ROLE", oidc_default_role),
    STRING_OR("VMX_OIDC_SCOPES", oidc_scopes, DEFAULT_OIDC_SCOPES),
    STRING_OR("VMX_OIDC_ROLES_CLAIM", oidc_roles_claim, DEFAULT_OIDC_CLAIM),
    STRING("VMX_OIDC_CLIENT_SECRET_FILE", oidc_client_secret_file),
    STRING("VMX_OIDC_ROLE_MAP", oidc_role_map_list),
    FLAG("VMX_BATCH_PAUSED", batch_paused),
    INT("VMX_BATCH_CONCURRENCY", batch_concurrency, DEFAULT_BATCH_CONCURRENCY, 256),
    SHARE("VMX_BATCH_CAPACITY_SHARE", batch_capacity_share, DEFAULT_BATCH_SHARE),
    INT("VMX_BATCH_RESUME_GRACE_SECONDS", batch_resume_grace, DEFAULT_BATCH_GRACE, 86400),
    INT("VMX_BATCH_ITEM_TIMEOUT_SECONDS", batch_item_timeout, DEFAULT_BATCH_ITEM_TIMEOUT, 3600),
    INT("VMX_BATCH_CALLBACK_TRIES", batch_callback_tries, DEFAULT_BATCH_CALLBACK_TRIES, 100),
    INT("VMX_BATCH_CALLBACK_BACKOFF_MS", batch_callback_backoff_ms,
        DEFAULT_BATCH_CALLBACK_BACKOFF, 300000),
};

#undef SETTING
#undef STRING
#undef STRING_OR
#undef URL
#undef INT
#undef FLAG
#undef SHARE


/* "host:port" into host (of size bytes) and *port; -1 when it is not */
static int
parse_host_port(const char *value, char *host, size_t size, int *port)
{
    const char *colon = strrchr(value, ':');
    char       *end;
    long        n;
    size_t      hostlen;

    if (colon == NULL || colon == value) {
        return -1;
    }
    hostlen = (size_t) (colon - value);
    if (hostlen >= size) {
        return -1;
    }
    n = strtol(colon + 1, &end, 10);
    if (*end != '\0' || n < 1 || n > 65535) {
        return -1;
    }
    memcpy(host, value, hostlen);
    host[hostlen] = '\0';
    *port = (int) n;
    return 0;
}


/* the next entry of a comma-separated list at *rest: its start (*len
 * bytes), *rest moved past it; NULL after the last */
static const char *
next_entry(const char **rest, size_t *len)
{
    const char *entry = *rest;

    if (*entry == '\0') {
        return NULL;
    }
    *len = strcspn(entry, ",");
    *rest = entry + *len + (entry[*len] == ',');
    return entry;
}


static int
parse_dataplanes(config_t *cfg, const char *value)
{
    const char *p;
    size_t      len;

    while ((p = next_entry(&value, &len)) != NULL) {
        while (len > 0 && isspace((unsigned char) *p)) {
            p++;
            len--;
        }
        while (len > 0 && (isspace((unsigned char) p[len - 1]) || p[len - 1] == '/')) {
            len--;
        }
        if (len == 0) {
            continue;
        }
        if (cfg->ndataplanes == CONFIG_MAX_DATAPLANES) {
            log_error("config VMX_DATAPLANES: more than %d data planes", CONFIG_MAX_DATAPLANES);
            return -1;
        }
        if (len > CONFIG_DATAPLANE_URL_MAX) {
            log_error("config VMX_DATAPLANES: a URL longer than %d bytes",
                      CONFIG_DATAPLANE_URL_MAX);
            return -1;
        }
        cfg->dataplanes[cfg->ndataplanes++] = strndup(p, len);
    }
    return 0;
}


/* the table's settings into cfg; -1 with the reason logged */
static int
read_settings(config_t *cfg)
{
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        const setting_t *st = &settings[i];
        char            *v = getenv(st->name);
        void            *field = (char *) cfg + st->offset;
        char            *end;
        long             n;

        if (v != NULL && v[0] == '\0') {
            v = NULL;           /* empty: unset */
        }

        switch (st->type) {
        case SETTING_URL:
            if (v != NULL && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
                log_error("config %s: \"%s\" is not an http(s) URL", st->name, v);
                return -1;
            }
            /* fall through */
        case SETTING_STRING:
            *(char **) field = v != NULL ? v : (char *) st->dflt_string;
            break;
        case SETTING_FLAG:
            if (v != NULL && strcmp(v, "1") != 0 && strcmp(v, "0") != 0) {
                log_error("config %s: \"%s\" is not 1 or 0", st->name, v);
                return -1;
            }
            *(bool *) field = v != NULL && strcmp(v, "1") == 0;
            break;
        case SETTING_INT:
            *(int *) field = st->dflt;
            if (v == NULL) {
                break;
            }
            errno = 0;
            n = strtol(v, &end, 10);
            if (errno || *end != '\0' || n < 1 || n > st->max) {
                log_error("config %s: \"%s\" is not 1..%ld", st->name, v, st->max);
                return -1;
            }
            *(int *) field = (int) n;
            break;
        case SETTING_SHARE:
            v = v != NULL ? v : (char *) st->dflt_string;
            errno = 0;
            *(double *) field = strtod(v, &end);
            if (errno || *end != '\0' || !(*(double *) field > 0 && *(double *) field <= 1)) {
                log_error("config %s: \"%s\" is not a fraction in (0, 1]", st->name, v);
                return -1;
            }
            break;
        }
    }
    return 0;
}


/*
 * an http(s) URL of at most OIDC_VALUE_MAX bytes; plain http only to a
 * loopback host, where no one can read the codes and tokens on the way
 */
static bool
oidc_url_ok(const char *url)
{
    static const char *const loopback[] = {
        "http://127.0.0.1", "http://localhost", "http://[::1]", NULL
    };

    if (strlen(url) > OIDC_VALUE_MAX || strpbrk(url, " \t\r\n#") != NULL) {
        return false;
    }
    if (strncmp(url, "https://", 8) == 0 && url[8] != '\0') {
        return true;
    }
    for (int i = 0; loopback[i] != NULL; i++) {
        size_t n = strlen(loopback[i]);

        if (strncmp(url, loopback[i], n) == 0 && strchr(":/", url[n]) != NULL) {
            return true;
        }
    }
    return false;
}


/* "claim=role,claim=role": VMX_OIDC_ROLE_MAP */
static int
parse_role_map(config_t *cfg, const char *value)
{
    const char *p, *eq;
    size_t      len;

    while ((p = next_entry(&value, &len)) != NULL) {
        if (len == 0) {
            continue;
        }
        eq = memchr(p, '=', len);
        if (eq == NULL || eq == p || eq == p + len - 1 || len > 512) {
            log_error("config VMX_OIDC_ROLE_MAP: \"%.*s\" is not claim=role",
                      (int) (len > 512 ? 512 : len), p);
            return -1;
        }
        if (cfg->noidc_role_map == CONFIG_MAX_OIDC_ROLES) {
            log_error("config VMX_OIDC_ROLE_MAP: more than %d entries", CONFIG_MAX_OIDC_ROLES);
            return -1;
        }
        cfg->oidc_role_map[cfg->noidc_role_map].claim = strndup(p, (size_t) (eq - p));
        cfg->oidc_role_map[cfg->noidc_role_map++].role =
            strndup(eq + 1, (size_t) (p + len - eq - 1));
    }
    return 0;
}


/* the VMX_OIDC_* settings; all off when VMX_OIDC_ISSUER is unset */
static int
parse_oidc(config_t *cfg)
{
    if (cfg->oidc_issuer == NULL) {
        return 0;
    }
    if (!oidc_url_ok(cfg->oidc_issuer)) {
        log_error("config VMX_OIDC_ISSUER: \"%.128s\" is not an https URL (http only to"
                  " a loopback host)", cfg->oidc_issuer);
        return -1;
    }
    if (cfg->oidc_client_id == NULL || strlen(cfg->oidc_client_id) > 256) {
        log_error("config VMX_OIDC_CLIENT_ID: required with VMX_OIDC_ISSUER, at most 256 bytes");
        return -1;
    }
    /* the code, and the session token after it, travel to these */
    if (cfg->oidc_redirect_uri == NULL || !oidc_url_ok(cfg->oidc_redirect_uri)) {
        log_error("config VMX_OIDC_REDIRECT_URI: required with VMX_OIDC_ISSUER, an https URL"
                  " (http only to a loopback host)");
        return -1;
    }
    if (cfg->oidc_ui_url != NULL && !oidc_url_ok(cfg->oidc_ui_url)
        && !(cfg->oidc_ui_url[0] == '/' && cfg->oidc_ui_url[1] != '/'
             && strlen(cfg->oidc_ui_url) <= OIDC_VALUE_MAX
             && strpbrk(cfg->oidc_ui_url, " \t\r\n#") == NULL))
    {
        log_error("config VMX_OIDC_UI_URL: \"%.128s\" is not a path or an https URL (http only"
                  " to a loopback host) without a fragment", cfg->oidc_ui_url);
        return -1;
    }
    if (strlen(cfg->oidc_scopes) > OIDC_VALUE_MAX || strstr(cfg->oidc_scopes, "openid") == NULL) {
        log_error("config VMX_OIDC_SCOPES: \"%.128s\" must include openid", cfg->oidc_scopes);
        return -1;
    }
    if (strlen(cfg->oidc_roles_claim) > 256
        || (cfg->oidc_default_role != NULL && strlen(cfg->oidc_default_role) > 256))
    {
        log_error("config VMX_OIDC_ROLES_CLAIM / VMX_OIDC_DEFAULT_ROLE: longer than 256 bytes");
        return -1;
    }
    if (cfg->oidc_role_map_list != NULL && parse_role_map(cfg, cfg->oidc_role_map_list) != 0) {
        return -1;
    }
    if (cfg->oidc_client_secret_file != NULL) {
        cfg->oidc_client_secret = config_read_secret_file(cfg->oidc_client_secret_file,
                                                          "VMX_OIDC_CLIENT_SECRET_FILE");
        if (cfg->oidc_client_secret == NULL) {
            return -1;
        }
    }
    return 0;
}


int
config_load(config_t *cfg)
{
    int port;

    memset(cfg, 0, sizeof(*cfg));
    if (read_settings(cfg) != 0) {
        return -1;
    }

    /* the settings of a syntax of their own, and the checks between settings */
    if (parse_host_port(cfg->listen, cfg->listen_host, sizeof(cfg->listen_host),
                        &cfg->listen_port) != 0)
    {
        log_error("config VMX_LISTEN: \"%s\" is not host:port", cfg->listen);
        return -1;
    }
    if (cfg->database_url == NULL) {
        log_error("config VMX_DATABASE_URL: not set");
        return -1;
    }
    if (cfg->master_key_file == NULL && cfg->secret_keys_dir == NULL) {
        log_error("config VMX_MASTER_KEY_FILE: not set (nor VMX_SECRET_KEYS_DIR)");
        return -1;
    }

    if (cfg->dataplanes_list != NULL && parse_dataplanes(cfg, cfg->dataplanes_list) != 0) {
        return -1;
    }
    if (cfg->dataplanes_dns != NULL) {
        if (parse_host_port(cfg->dataplanes_dns, cfg->dns_host, sizeof(cfg->dns_host), &port)
            != 0)
        {
            log_error("config VMX_DATAPLANES_DNS: \"%s\" is not name:port", cfg->dataplanes_dns);
            return -1;
        }
        snprintf(cfg->dns_port, sizeof(cfg->dns_port), "%d", port);
    }
    if ((cfg->ndataplanes > 0 || cfg->dataplanes_dns != NULL)
        && cfg->dataplane_token_file == NULL)
    {
        log_error("config VMX_DATAPLANE_TOKEN_FILE: required with VMX_DATAPLANES or"
                  " VMX_DATAPLANES_DNS");
        return -1;
    }

    if (parse_oidc(cfg) != 0) {
        return -1;
    }

    if (cfg->log_level != NULL && log_set_level(cfg->log_level) != 0) {
        log_error("config VMX_LOG_LEVEL: \"%s\" is not debug|info|warn|error", cfg->log_level);
        return -1;
    }
    current = cfg;
    return 0;
}


const config_t *
config_current(void)
{
    return current;
}


void
config_free(config_t *cfg)
{
    for (size_t i = 0; i < cfg->ndataplanes; i++) {
        free(cfg->dataplanes[i]);
    }
    cfg->ndataplanes = 0;
    for (size_t i = 0; i < cfg->noidc_role_map; i++) {
        free(cfg->oidc_role_map[i].claim);
        free(cfg->oidc_role_map[i].role);
    }
    cfg->noidc_role_map = 0;
    if (cfg->oidc_client_secret != NULL) {
        sodium_memzero(cfg->oidc_client_secret, strlen(cfg->oidc_client_secret));
        free(cfg->oidc_client_secret);
        cfg->oidc_client_secret = NULL;
    }
}


char *
config_read_secret_file(const char *path, const char *what)
{
    FILE   *f = fopen(path, "r");
    char   *buf;
    size_t  n, start = 0;

    if (f == NULL) {
        log_error("config %s: cannot open the file: %s", what, strerror(errno));
        return NULL;
    }
    buf = malloc(SECRET_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, SECRET_FILE_MAX + 1, f);
    fclose(f);
    if (n > SECRET_FILE_MAX) {
        log_error("config %s: file larger than %d bytes", what, SECRET_FILE_MAX);
        free(buf);
        return NULL;
    }
    while (n > 0 && isspace((unsigned char) buf[n - 1])) {
        n--;
    }
    while (start < n && isspace((unsigned char) buf[start])) {
        start++;
    }
    if (start > 0) {
        memmove(buf, buf + start, n - start);
    }
    buf[n - start] = '\0';
    if (buf[0] == '\0') {
        log_error("config %s: file is empty", what);
        free(buf);
        return NULL;
    }
    return buf;
}


char *
config_bearer_header(const char *token_file)
{
    char *token = config_read_secret_file(token_file, "VMX_DATAPLANE_TOKEN_FILE");
    char *header;

    if (token == NULL) {
        return NULL;
    }
    if (asprintf(&header, "Authorization: Bearer %s", token) < 0) {
        header = NULL;
        log_error("config VMX_DATAPLANE_TOKEN_FILE: out of memory");
    }
    sodium_memzero(token, strlen(token));
    free(token);
    return header;
}


void
config_free_secret(char *secret)
{
    if (secret != NULL) {
        sodium_memzero(secret, strlen(secret));
        free(secret);
    }
}
