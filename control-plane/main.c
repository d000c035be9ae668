/*
 * vmx-control-plane: the management API of the VM-X gateway, the only
 * writer of PostgreSQL, and the source of the data planes' configuration.
 *
 * Settings come from the environment (docs/ARCHITECTURE.md, "Control plane
 * environment").  One more, VMX_SCHEMA_DIR, names the directory of the SQL
 * migrations; it defaults to "schema" relative to the working directory, so
 * the daemon run from the repository root finds the repository's schema/.
 *
 * Start: config, keyring, database pool, migrations, first key, first
 * admin, the leader election, then the singleton jobs' threads (discovery,
 * pusher, credentials, OpenTelemetry, ingest, re-encryption and the batch
 * runner: they run while this replica leads), then the HTTP server.
 * SIGINT/SIGTERM stop it in reverse.
 *
 * `vmx-control-plane --routes` prints the route table and exits (the API
 * fuzzer of the tests walks it).
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "api.h"
#include "batch_runner.h"
#include "config.h"
#include "credentials.h"
#include "db.h"
#include "discovery.h"
#include "dpclient.h"
#include "http.h"
#include "ingest.h"
#include "keyring.h"
#include "leader.h"
#include "log.h"
#include "metrics.h"
#include "oidc.h"
#include "otel.h"
#include "pusher.h"
#include "reencrypt.h"
#include "resolve.h"
#include "secrets.h"

#define DB_POOL_SIZE  8


static int
wait_for_stop_signal(void)
{
    sigset_t set;
    int      sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigwait(&set, &sig);
    return sig;
}


/* blocks the stop signals in every thread; main takes them with sigwait */
static void
block_signals(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}


/* a deployment's first key (its master key) enters the ring, and the
 * ring's states are taken in before any secret is read: 0 or -1 */
static int
register_first_key(void)
{
    db_conn_t *c = db_acquire();
    int        rc = c != NULL && keyring_register_first(c) == 0 && keyring_sync(c) == 0
                    ? 0 : -1;

    if (c != NULL) {
        db_release(c);
    }
    return rc;
}


int
main(int argc, char **argv)
{
    config_t cfg;
    int      rc = EXIT_FAILURE;

    if (argc == 2 && strcmp(argv[1], "--routes") == 0) {
        router_print_routes(stdout);
        return EXIT_SUCCESS;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: %s [--routes]\n", argv[0]);
        return EXIT_FAILURE;
    }
    block_signals();
    if (config_load(&cfg) != 0) {
        config_free(&cfg);
        return EXIT_FAILURE;
    }
    if (secrets_init(&cfg) != 0) {
        config_free(&cfg);
        return EXIT_FAILURE;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (db_init(cfg.database_url, DB_POOL_SIZE) != 0 || db_migrate(cfg.schema_dir) != 0
        || register_first_key() != 0 || auth_bootstrap_admin(cfg.admin_password) != 0
        || auth_init(&cfg) != 0)
    {
        log_error("main: cannot prepare the database");
        goto done;
    }
    if (api_metrics_init(cfg.metrics_token_file) != 0
        || api_dataplanes_init(cfg.dataplane_token_file) != 0 || oidc_init(&cfg) != 0
        || dpclient_init(&cfg) != 0 || leader_start(&cfg) != 0 || discovery_start(&cfg) != 0
        || pusher_start(&cfg) != 0 || credentials_start(&cfg) != 0
        || otel_start(&cfg) != 0 || ingest_start(&cfg) != 0 || reencrypt_start(&cfg) != 0
        || batch_runner_start(&cfg) != 0)
    {
        goto done;
    }
    if (http_start(cfg.listen_host, cfg.listen_port) == 0) {
        log_info("main: started");
        log_info("main: signal %d, stopping", wait_for_stop_signal());
        http_stop();
        rc = EXIT_SUCCESS;
    }

done:
    batch_runner_stop();
    reencrypt_stop();
    ingest_stop();
    otel_stop();
    credentials_stop();
    pusher_stop();
    discovery_stop();
    leader_stop();
    dpclient_cleanup();
    resolve_shutdown();
    oidc_shutdown();
    db_shutdown();
    auth_shutdown();
    curl_global_cleanup();
    secrets_shutdown();
    api_metrics_shutdown();
    api_dataplanes_shutdown();
    metrics_shutdown();
    config_free(&cfg);
    log_info("main: stopped");
    return rc;
}
