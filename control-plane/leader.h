/*
 * leader: which replica of the control plane runs the singleton jobs
 * (pusher, discovery, ingest with the partitions, credentials, OTLP export,
 * re-encryption).  Every replica serves the API; the one holding the
 * PostgreSQL session-level advisory lock LEADER_LOCK_KEY on a connection of
 * its own leads.  Its thread checks the lock every second: a replica that
 * loses the connection loses the lead at once (its jobs pause), and the
 * server, having ended that session, lets another replica take the lock.
 */

#ifndef CP_LEADER_H
#define CP_LEADER_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "db.h"
#include "worker.h"

#define LEADER_LOCK_KEY  7761272         /* "vmx" */

/* opens nothing yet: the thread connects and tries the lock at once */
int leader_start(const config_t *cfg);

/* ends the lock's session (a standby takes the lead within a second) */
void leader_stop(void);

/* whether this replica leads now */
bool leader_holds(void);

/*
 * w's rounds run only while this replica leads (worker.h, gate); it is
 * woken when the lead is won.  Before worker_start(w).
 */
void leader_follow(worker_t *w);

/* {"self": bool, "name": the leading replica or null}, for the API */
cJSON *leader_json(db_conn_t *c);

#endif
