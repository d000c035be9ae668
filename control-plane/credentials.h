/*
 * credentials: the short-lived AWS credentials of aws-bedrock connections
 * (SPEC §3, docs/ARCHITECTURE.md "AWS credentials").
 *
 * One thread keeps, per connection, the credentials of an STS AssumeRole of
 * config.iamRoleArn with ExternalId config.externalId or
 * "<workspaceId>:<environmentId>".  It assumes the role when the connection
 * appears or changes and again when less than VMX_STS_REFRESH_MARGIN
 * seconds remain; each new set bumps the config version so the pusher
 * sends it.  A failure is retried with backoff, and every outcome is
 * written to connections.credentials_status (never a credential).  The
 * credentials live only in this process's memory.
 */

#ifndef CP_CREDENTIALS_H
#define CP_CREDENTIALS_H

#include <cjson/cJSON.h>

#include "config.h"

int credentials_start(const config_t *cfg);
void credentials_stop(void);

/* a connection may have changed: look at them again now */
void credentials_notify(void);

/*
 * {"accessKeyId", "secretAccessKey", "sessionToken", "expiration"} for the
 * snapshot entry of the connection, whose config and ids are given: the
 * credentials assumed for that very role and ExternalId, while unexpired;
 * else an empty object.  The caller deletes it.
 */
cJSON *credentials_snapshot_json(const char *connection_id, const cJSON *config,
    const char *workspace_id, const char *environment_id);

#endif
