/*
 * db: the connection pool.  Connections are opened lazily, so the daemon
 * starts and answers /health even while PostgreSQL is briefly down.  An
 * outage is logged once per cause: its first failure with the reason, again
 * only when the reason changes, and its end.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

struct db_conn_s {
    PGconn   *pg;
    bool      busy;
    int       depth;        /* db_begin()s open: the outer one a transaction,
                             * the inner ones savepoints */
    char      sqlstate[6];
};

static struct {
    pthread_mutex_t  lock;
    pthread_cond_t   freed;
    char            *conninfo;       /* owned, freed by db_shutdown() */
    db_conn_t       *conns;          /* owned array of size entries */
    int              size;
    unsigned long long waits;
    char             outage[256];    /* the connect failure last logged, "" when none */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0, "" };


int
db_init(const char *conninfo, int size)
{
    pool.conninfo = strdup(conninfo);
    pool.conns = calloc((size_t) size, sizeof(db_conn_t));
    if (pool.conninfo == NULL || pool.conns == NULL) {
        return -1;
    }
    pool.size = size;
    return 0;
}


void
db_shutdown(void)
{
    for (int i = 0; i < pool.size; i++) {
        if (pool.conns[i].pg != NULL) {
            PQfinish(pool.conns[i].pg);
        }
    }
    free(pool.conns);
    free(pool.conninfo);
    pool.conns = NULL;
    pool.conninfo = NULL;
    pool.size = 0;
}


/* silences libpq's NOTICEs (e.g. "relation already exists, skipping") */
static void
ignore_notice(void *arg, const char *message)
{
}


/* logs a failed connect when its reason differs from the last one logged */
static void
outage_failed(const char *message)
{
    char   reason[sizeof(pool.outage)];
    size_t n;

    /* libpq's message: lines, a trailing newline */
    snprintf(reason, sizeof(reason), "%s", message);
    for (n = strlen(reason); n > 0 && (reason[n - 1] == '\n' || reason[n - 1] == ' '); n--) {
        reason[n - 1] = '\0';
    }
    for (char *p = reason; *p != '\0'; p++) {
        *p = *p == '\n' || *p == '\t' ? ' ' : *p;
    }
    pthread_mutex_lock(&pool.lock);
    if (strcmp(reason, pool.outage) != 0) {
        snprintf(pool.outage, sizeof(pool.outage), "%s", reason);
        log_error("db: connect failed: %s (logged again when the reason changes)", reason);
    }
    pthread_mutex_unlock(&pool.lock);
}


static void
outage_ended(void)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.outage[0] != '\0') {
        pool.outage[0] = '\0';
        log_info("db: connected again");
    }
    pthread_mutex_unlock(&pool.lock);
}


static int
ensure_connected(db_conn_t *c)
{
    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK) {
        return 0;
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
    }
    c->pg = PQconnectdb(pool.conninfo);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        outage_failed(PQerrorMessage(c->pg));
        PQfinish(c->pg);
        c->pg = NULL;
        return -1;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    log_debug("db: connected");
    outage_ended();
    return 0;
}


static db_conn_t *
acquire(bool wait)
{
    db_conn_t *c = NULL;

    pthread_mutex_lock(&pool.lock);
    for (;;) {
        for (int i = 0; i < pool.size; i++) {
            if (!pool.conns[i].busy) {
                c = &pool.conns[i];
                break;
            }
        }
        if (c != NULL || !wait) {
            break;
        }
        pool.waits++;
        pthread_cond_wait(&pool.freed, &pool.lock);
    }
    if (c == NULL) {
        pthread_mutex_unlock(&pool.lock);
        return NULL;
    }
    c->busy = true;
    pthread_mutex_unlock(&pool.lock);

    /* connecting happens outside the lock: it may take a while */
    if (ensure_connected(c) != 0) {
        db_release(c);
        return NULL;
    }
    c->sqlstate[0] = '\0';
    c->depth = 0;
    return c;
}


db_conn_t *
db_acquire(void)
{
    return acquire(true);
}


db_conn_t *
db_try_acquire(void)
{
    return acquire(false);
}


void
db_release(db_conn_t *c)
{
    /* a connection left inside a transaction would poison the next user */
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        log_warn("db: connection released inside a transaction, resetting");
        PQfinish(c->pg);
        c->pg = NULL;
    }
    pthread_mutex_lock(&pool.lock);
    c->busy = false;
    pthread_cond_signal(&pool.freed);
    pthread_mutex_unlock(&pool.lock);
}


PGresult *
db_exec(db_conn_t *c, const char *sql, int nparams, const char *const *params)
{
    bool            idle = PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    PGresult       *res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType  st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    const char     *state;

    /*
     * A connection the server dropped (restart, failover) is only noticed
     * here.  Outside a transaction nothing is lost by reconnecting and
     * running the statement again, once.
     */
    if (st == PGRES_FATAL_ERROR && idle && PQstatus(c->pg) == CONNECTION_BAD) {
        log_warn("db: connection lost, reconnecting");
        PQclear(res);
        PQreset(c->pg);
        res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
        st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    }

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        return res;
    }

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "08000");

    /* constraint violations are expected answers (409), not faults */
    if (c->sqlstate[0] == '2' && c->sqlstate[1] == '3') {
        log_debug("db: constraint sqlstate=%s: %s", c->sqlstate,
                  res ? PQresultErrorMessage(res) : "");
    } else {
        log_error("db: query failed sqlstate=%s: %s", c->sqlstate,
                  res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg));
    }
    PQclear(res);
    return NULL;
}


int
db_run(db_conn_t *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *res = db_exec(c, sql, nparams, params);

    if (res == NULL) {
        return -1;
    }
    PQclear(res);
    return 0;
}


cJSON *
db_json(db_conn_t *c, const char *sql, int nparams, const char *const *params)
{
    PGresult *res = db_exec(c, sql, nparams, params);
    cJSON    *json = res != NULL && PQntuples(res) == 1 ? cJSON_Parse(PQgetvalue(res, 0, 0))
                                                        : NULL;

    PQclear(res);
    return json;
}


const char *
db_sqlstate(const db_conn_t *c)
{
    return c->sqlstate;
}


bool
db_unavailable(const db_conn_t *c)
{
    return strncmp(c->sqlstate, "08", 2) == 0 || strncmp(c->sqlstate, "57P0", 4) == 0;
}


int
db_begin(db_conn_t *c)
{
    char sql[32];

    if (c->depth == 0) {
        snprintf(sql, sizeof(sql), "BEGIN");
    } else {
        snprintf(sql, sizeof(sql), "SAVEPOINT nested_%d", c->depth);
    }
    if (db_run(c, sql, 0, NULL) != 0) {
        return -1;
    }
    c->depth++;
    return 0;
}


int
db_commit(db_conn_t *c)
{
    char sql[40];

    if (c->depth <= 1) {
        c->depth = 0;
        return db_run(c, "COMMIT", 0, NULL);
    }
    c->depth--;
    snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT nested_%d", c->depth);
    return db_run(c, sql, 0, NULL);
}


void
db_rollback(db_conn_t *c)
{
    char sql[48];

    if (c->depth > 1) {
        c->depth--;
        snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT nested_%d", c->depth);
        db_run(c, sql, 0, NULL);
        return;
    }
    c->depth = 0;
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        db_run(c, "ROLLBACK", 0, NULL);
    }
}


void
db_pool_stats(db_pool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&pool.lock);
    out->size = pool.size;
    out->waits = pool.waits;
    for (int i = 0; i < pool.size; i++) {
        out->busy += pool.conns[i].busy;
    }
    pthread_mutex_unlock(&pool.lock);
}


PGconn *
db_pgconn(db_conn_t *c)
{
    return c->pg;
}
