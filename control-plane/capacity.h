/*
 * capacity: discovered capacity (SPEC §3), the providers' limit headers
 * that each data plane records and serves at GET /vmx/capacity
 * (docs/ARCHITECTURE.md, "Config channel").  It is observed state, not
 * config: merging it never bumps the config version.
 */

#ifndef CP_CAPACITY_H
#define CP_CAPACITY_H

#include "db.h"

/*
 * Merges a /vmx/capacity answer into connections.discovered_capacity: per
 * connection and model the entry with the newest updatedAt wins, and a row
 * is written only when something newer arrived.  Malformed entries and
 * unknown connections are skipped.  -1 when the answer is no capacity
 * document at all (nothing merged); database errors are logged by db.
 */
int capacity_merge(db_conn_t *c, const char *answer, const char *dataplane);

#endif
