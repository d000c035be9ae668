/*
 * db: a small pool of PostgreSQL connections.
 *
 * A thread takes a connection with db_acquire() and gives it back with
 * db_release(); in between it is that thread's alone.  Queries go through
 * db_exec() (PQexecParams: values always travel as parameters, never inside
 * the SQL text).  A connection found broken is reset on its next acquire.
 */

#ifndef CP_DB_H
#define CP_DB_H

#include <stdbool.h>

#include <cjson/cJSON.h>
/* Debian keeps libpq-fe.h in postgresql/; the Makefile adds no -I for it */
#include <libpq-fe.h>

typedef struct db_conn_s db_conn_t;

int db_init(const char *conninfo, int size);
void db_shutdown(void);

/* blocks until a connection is free; NULL when the database is unreachable */
db_conn_t *db_acquire(void);
void db_release(db_conn_t *c);

/* the same without waiting: NULL when every connection is taken */
db_conn_t *db_try_acquire(void);

/*
 * runs one statement; the result (caller PQclear()s it) or NULL on error,
 * with the SQLSTATE then in db_sqlstate(c).  A NULL param is SQL NULL.
 */
PGresult *db_exec(db_conn_t *c, const char *sql, int nparams,
    const char *const *params);

/* runs a statement whose result is not needed; 0 or -1 */
int db_run(db_conn_t *c, const char *sql, int nparams, const char *const *params);

/* the JSON text of a one-cell query, parsed; NULL on error (caller deletes) */
cJSON *db_json(db_conn_t *c, const char *sql, int nparams, const char *const *params);

/* SQLSTATE of the last failed db_exec() ("" when none) */
const char *db_sqlstate(const db_conn_t *c);

/* the last failed db_exec() lost the server (connection exception, shutdown) */
bool db_unavailable(const db_conn_t *c);

/*
 * transactions nest: a db_begin() inside one opens a savepoint, which its
 * db_commit() releases and its db_rollback() undoes alone
 */
int db_begin(db_conn_t *c);
int db_commit(db_conn_t *c);
void db_rollback(db_conn_t *c);

/* a snapshot of the pool, for the metrics */
typedef struct {
    int                 size;
    int                 busy;          /* acquired now */
    unsigned long long  waits;         /* acquires that found every connection busy */
} db_pool_stats_t;

void db_pool_stats(db_pool_stats_t *out);

/* the PGconn for the few calls that need it directly (migrations, COPY) */
PGconn *db_pgconn(db_conn_t *c);

/* applies schema/NNNN_*.sql migrations not yet recorded; 0 or -1 */
int db_migrate(const char *schema_dir);

#endif
