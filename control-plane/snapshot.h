/*
 * snapshot: the configuration the data planes run (docs/ARCHITECTURE.md,
 * "Snapshot"), read in one repeatable-read transaction so its version and
 * its content agree.
 */

#ifndef CP_SNAPSHOT_H
#define CP_SNAPSHOT_H

#include "db.h"

/* the current config version, -1 on error */
long long snapshot_current_version(db_conn_t *c);

/*
 * a new config version for a change PostgreSQL's triggers cannot see (new
 * assumed-role credentials); the caller then calls pusher_notify().  0 or -1
 */
int snapshot_bump_version(db_conn_t *c);

/*
 * the snapshot as JSON text in format format (VMX_CONFIG_FORMAT_OLDEST to
 * VMX_CONFIG_FORMAT, vmx_config.h), with decrypted credentials: release it
 * with snapshot_free(), which wipes it.  NULL on error.
 */
char *snapshot_build(db_conn_t *c, long long *version, int format);
void snapshot_free(char *snapshot);

/* a problem of one object, as the data planes' compiler states it */
typedef struct {
    char  object[128];          /* "resource \"<id>\"" */
    char  field[288];           /* relative to the object */
    char  message[320];
} snapshot_problem_t;

/*
 * Compiles the configuration as c sees it, inside the caller's transaction,
 * with the compiler the data planes run (lib/vmx_config.c).  1 when it has
 * a problem that makes an object invalid and that the committed
 * configuration has not (described in out): the change must not be
 * committed; 0 when it has none; -1 when it cannot be built.  env: the
 * environment the change was made in (an object refers only to objects of
 * its own environment, so no other can change), NULL for the whole.
 */
int snapshot_check(db_conn_t *c, const char *env, snapshot_problem_t *out);

#endif
