/*
 * migrate: applies schema/NNNN_name.sql files in name order, each once.
 *
 * All pending files run in one transaction under a transaction-scoped
 * advisory lock, so two daemons starting together never apply a file twice
 * and a failing file leaves the database as it was.  The files are ours,
 * not user input, and hold several statements: they are the one place that
 * uses PQexec instead of PQexecParams.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

#define MIGRATION_LOCK_KEY  "7428190001"     /* any constant shared by all daemons */
#define MAX_MIGRATIONS      1000
#define MAX_FILE_SIZE       (4 * 1024 * 1024)


static int
is_migration_name(const char *name)
{
    size_t len = strlen(name);

    return len > 9 && name[0] >= '0' && name[0] <= '9' && name[1] >= '0'
           && name[1] <= '9' && name[2] >= '0' && name[2] <= '9'
           && name[3] >= '0' && name[3] <= '9' && name[4] == '_'
           && strcmp(name + len - 4, ".sql") == 0;
}


static int
compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}


/* the sorted migration file names of dir, malloc'd (free each and the array) */
static char **
list_migrations(const char *dir, size_t *count)
{
    DIR            *d = opendir(dir);
    struct dirent  *e;
    char          **names;
    size_t          n = 0;

    if (d == NULL) {
        log_error("migrate: cannot open schema dir \"%s\": %s", dir, strerror(errno));
        return NULL;
    }
    names = calloc(MAX_MIGRATIONS, sizeof(char *));
    if (names == NULL) {
        closedir(d);
        return NULL;
    }
    while ((e = readdir(d)) != NULL && n < MAX_MIGRATIONS) {
        if (is_migration_name(e->d_name)) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(char *), compare_names);
    *count = n;
    return names;
}


/* malloc'd NUL-terminated content of dir/name, NULL on failure */
static char *
read_file(const char *dir, const char *name)
{
    char    path[4096];
    FILE   *f;
    char   *buf;
    size_t  n;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (f == NULL) {
        log_error("migrate: cannot open %s: %s", name, strerror(errno));
        return NULL;
    }
    buf = malloc(MAX_FILE_SIZE + 1);
    if (buf != NULL) {
        n = fread(buf, 1, MAX_FILE_SIZE, f);
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}


static int
is_applied(db_conn_t *c, const char *name, int *applied)
{
    const char *params[1] = { name };
    PGresult   *res = db_exec(c, "SELECT 1 FROM schema_migrations WHERE name = $1",
                              1, params);

    if (res == NULL) {
        return -1;
    }
    *applied = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}


static int
apply_file(db_conn_t *c, const char *dir, const char *name)
{
    const char *params[1] = { name };
    char       *sql = read_file(dir, name);
    PGresult   *res;
    int         ok;

    if (sql == NULL) {
        return -1;
    }
    res = PQexec(db_pgconn(c), sql);
    free(sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) {
        log_error("migrate: %s failed: %s", name, PQresultErrorMessage(res));
    }
    PQclear(res);
    if (!ok) {
        return -1;
    }
    log_info("migrate: applied %s", name);
    return db_run(c, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, params);
}


static int
apply_pending(db_conn_t *c, const char *dir, char **names, size_t n)
{
    const char *lock[1] = { MIGRATION_LOCK_KEY };

    if (db_run(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock) != 0
        || db_run(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " name text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL) != 0)
    {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        int applied;

        if (is_applied(c, names[i], &applied) != 0) {
            return -1;
        }
        if (!applied && apply_file(c, dir, names[i]) != 0) {
            return -1;
        }
    }
    return 0;
}


int
db_migrate(const char *dir)
{
    size_t      n = 0;
    char      **names = list_migrations(dir, &n);
    db_conn_t  *c;
    int         rc = -1;

    if (names == NULL) {
        return -1;
    }
    c = db_acquire();
    if (c != NULL) {
        if (db_begin(c) == 0 && apply_pending(c, dir, names, n) == 0
            && db_commit(c) == 0)
        {
            rc = 0;
        } else {
            db_rollback(c);
        }
        db_release(c);
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    return rc;
}
