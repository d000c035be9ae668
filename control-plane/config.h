/*
 * config: the daemon's settings, read once from the environment at start
 * (see docs/ARCHITECTURE.md, "Control plane environment").
 */

#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_DATAPLANES  64     /* listed, and kept at once (discovery.h) */
#define CONFIG_HOST_MAX        254    /* bytes of a DNS name */
#define CONFIG_DATAPLANE_URL_MAX  255 /* bytes of a data plane's base URL */
#define CONFIG_MAX_OIDC_ROLES  32

/* one VMX_OIDC_ROLE_MAP entry: a value of the roles claim and the role it grants */
typedef struct {
    char   *claim;                    /* owned */
    char   *role;                     /* owned */
} config_role_map_t;

typedef struct config_s {
    char   *listen;                   /* from getenv or the default, host:port */
    char    listen_host[64];          /* of listen */
    int     listen_port;
    char   *dataplanes_list;          /* from getenv, NULL: none (parsed: dataplanes) */
    char   *dataplanes_dns;           /* from getenv, NULL: none (parsed: dns_host, dns_port) */
    char    dns_host[CONFIG_HOST_MAX + 1];   /* of dataplanes_dns, "" when none */
    char    dns_port[6];
    int     dataplane_forget_seconds; /* a data plane not found so long is forgotten */
    char   *log_level;                /* from getenv, NULL: the default */
    char   *database_url;             /* from getenv, not owned */
    char   *master_key_file;          /* from getenv, may be NULL with secret_keys_dir */
    char   *secret_keys_dir;          /* from getenv, may be NULL: <name>.key files */
    char   *kms_key_id;               /* from getenv, NULL: no aws-kms key */
    char   *kms_region;               /* from getenv, NULL: the key ARN's */
    char   *kms_endpoint;             /* from getenv, NULL: the regional endpoint */
    int     reencrypt_batch;          /* connections re-encrypted per transaction */
    int     reencrypt_pause_ms;       /* between two batches */
    char   *dataplane_token_file;     /* from getenv, may be NULL */
    char   *admin_password;           /* from getenv, may be NULL */
    char   *schema_dir;               /* from getenv or the default */
    int     reconcile_interval;       /* seconds */
    char   *aws_access_key_id;        /* from getenv, may be NULL (STS base credentials) */
    char   *aws_secret_access_key;    /* from getenv, may be NULL */
    char   *aws_session_token;        /* from getenv, may be NULL */
    char   *sts_endpoint;             /* from getenv, NULL: the regional endpoint */
    int     sts_refresh_margin;       /* seconds before expiry to re-assume a role */
    int     ingest_interval_ms;       /* between pulls of the data planes' records */
    int     retention_days;           /* audit and usage partitions kept */
    char   *metrics_token_file;       /* from getenv, NULL: GET /metrics is open */
    char   *tokenizer_file;           /* from getenv, NULL: the test bench counts no tokens */
    bool    allow_link_local;         /* connections may point at 169.254/16, fe80::/10 */
    int     login_user_failures;      /* failed logins of a user name before it waits */
    int     login_address_failures;   /* failed logins from an address before it waits */
    int     login_throttle_seconds;   /* the first wait, doubled by each further failure */
    int     login_throttle_max;       /* the longest wait, and when failures are forgotten */
    int     activity_retention_days;  /* activity records kept */
    char   *otlp_endpoint;            /* from getenv, NULL: no OpenTelemetry export */
    char   *otlp_headers;             /* from getenv, NULL: none; secrets, never logged */
    int     otlp_metrics_interval;    /* seconds between metrics exports */
    int     otlp_queue_size;          /* records waiting for their spans' export */
    int     batch_concurrency;        /* batch items sent at once (batch_runner.h) */
    double  batch_capacity_share;     /* of a connection's per-minute capacity batches take */
    int     batch_resume_grace;       /* seconds before another claim's item is resumed */
    int     batch_item_timeout;       /* seconds an item's request may take */
    int     batch_callback_tries;     /* deliveries of a callback before it fails */
    int     batch_callback_backoff_ms;    /* the wait after a callback's first failure */
    bool    batch_paused;             /* runs no batch item, even as the leader */

    /* OIDC sign-on (oidc.h), off when oidc_issuer is NULL */
    char   *oidc_issuer;              /* from getenv */
    char   *oidc_client_id;           /* from getenv */
    char   *oidc_redirect_uri;        /* from getenv */
    char   *oidc_scopes;              /* from getenv or the default */
    char   *oidc_default_role;        /* from getenv, NULL: none */
    char   *oidc_roles_claim;         /* from getenv or the default */
    char   *oidc_ui_url;              /* from getenv, NULL: the callback answers JSON */
    char   *oidc_client_secret_file;  /* from getenv, NULL: a public client */
    char   *oidc_role_map_list;       /* from getenv, NULL: none (parsed: oidc_role_map) */

    /* owned by the config, freed by config_free() */
    char   *dataplanes[CONFIG_MAX_DATAPLANES];
    size_t  ndataplanes;
    char   *oidc_client_secret;       /* NULL: a public client (PKCE alone) */
    config_role_map_t  oidc_role_map[CONFIG_MAX_OIDC_ROLES];
    size_t             noidc_role_map;
} config_t;

/* fills cfg from the environment; logs the reason and returns -1 when invalid */
int config_load(config_t *cfg);

/* the settings of the last config_load(), for the request handlers: valid
 * while its cfg lives (the whole run of the daemon) */
const config_t *config_current(void);
void config_free(config_t *cfg);

/*
 * reads a small file (a token, a key) with surrounding white space trimmed;
 * returns malloc'd text the caller frees, or NULL with the reason logged
 */
char *config_read_secret_file(const char *path, const char *what);

/*
 * "Authorization: Bearer <token>" with the token of token_file, the one
 * credential of the config and records channels; malloc'd, released with
 * config_free_secret(); NULL with the reason logged
 */
char *config_bearer_header(const char *token_file);

/* wipes and frees a secret text: a token, a header line of config_bearer_header()
 * (NULL: none) */
void config_free_secret(char *secret);

#endif
