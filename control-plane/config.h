/*
 * config: the daemon's settings, read once from the environment at start
 * (see docs/ARCHITECTURE.md, "Control plane environment").
 */

#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_MAX_DATAPLANES  32

typedef struct {
    char    listen_host[64];
    int     listen_port;
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
    bool    allow_link_local;         /* connections may point at 169.254/16, fe80::/10 */

    /* owned by the config, freed by config_free() */
    char   *dataplanes[CONFIG_MAX_DATAPLANES];
    size_t  ndataplanes;
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

#endif
