/*
 * pusher: keeps every data plane on the current config version
 * (docs/ARCHITECTURE.md, "Config channel").  One thread: it pushes after
 * every change (pusher_notify()) and, every reconcile interval, asks each
 * data plane its version and pushes when it differs.  A data plane that is
 * down only delays this thread, never the API.
 */

#ifndef CP_PUSHER_H
#define CP_PUSHER_H

#include <cjson/cJSON.h>

#include "config.h"

int pusher_start(const config_t *cfg);
void pusher_stop(void);

/* a change was committed: push soon */
void pusher_notify(void);

/* {"data": [{url, version, desiredVersion, status, lastSeenAt, lastError}],
 *  ...} for GET /api/v1/dataplanes (caller deletes) */
cJSON *pusher_state_json(void);

/*
 * the problems the data planes state for one object of their snapshot
 * (kind as vmx_config_kind_name() names it): [{"dataplane", "field",
 * "message", "invalid", "leftOut"}], empty when every data plane runs it
 */
cJSON *pusher_object_problems(const char *kind, const char *id);

#endif
