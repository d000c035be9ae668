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
 * the snapshot as JSON text, with decrypted credentials: release it with
 * snapshot_free(), which wipes it.  NULL on error.
 */
char *snapshot_build(db_conn_t *c, long long *version);
void snapshot_free(char *snapshot);

#endif
