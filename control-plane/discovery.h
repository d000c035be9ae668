/*
 * discovery: the data planes the control plane keeps (docs/ARCHITECTURE.md,
 * "Data plane discovery"), in the dataplanes table its replicas share.  A
 * singleton job (leader.h): every DISCOVERY_INTERVAL_MS it finds again the
 * planes of VMX_DATAPLANES and every address of VMX_DATAPLANES_DNS
 * (getaddrinfo, A and AAAA), forgets the planes not found (nor announced)
 * for VMX_DATAPLANE_FORGET_SECONDS, and takes the table's list in: what the
 * pusher and the ingest work on (discovery_planes()).  A new plane wakes the
 * pusher.  Any replica records a data plane's announcement
 * (discovery_announce()), and serves what the leader's pusher stored of
 * each plane (discovery_list_json()).
 */

#ifndef CP_DISCOVERY_H
#define CP_DISCOVERY_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "db.h"

#define DISCOVERY_INTERVAL_MS  2000
#define DISCOVERY_URL_MAX      (CONFIG_DATAPLANE_URL_MAX + 1)     /* with its NUL */

typedef char discovery_url_t[DISCOVERY_URL_MAX];

int discovery_start(const config_t *cfg);
void discovery_stop(void);

/* a holder's state of one plane (the pusher's, the ingest's), whose first
 * member is its discovery_url_t; NULL when out of memory */
typedef void *(*discovery_open_pt)(const char *url);
typedef void (*discovery_close_pt)(void *plane);

/*
 * brings a holder's planes (an array of CONFIG_MAX_DATAPLANES) to the list
 * kept now: open()s each plane new to it, close()s each one forgotten; the
 * number opened
 */
size_t discovery_follow(void **planes, size_t *nplanes, discovery_open_pt open,
    discovery_close_pt close);

/* a data plane announced its base URL: 0, 1 when CONFIG_MAX_DATAPLANES are kept
 * already, -1 on a database error */
int discovery_announce(db_conn_t *c, const char *url);

/* stores what the pusher knows of a plane (its JSON text) for every replica's API */
void discovery_store_state(db_conn_t *c, const char *url, const char *state);

/* {"data": [...], "total", "pageIndex", "pageSize"} of GET /api/v1/dataplanes, NULL on a
 * database error (caller deletes) */
cJSON *discovery_list_json(db_conn_t *c);

/*
 * the problems the data planes state for one object of their snapshot
 * (kind as vmx_config_kind_name() names it): [{"dataplane", "field",
 * "message", "invalid", "leftOut"}], empty when every data plane runs it
 */
cJSON *discovery_object_problems(db_conn_t *c, const char *kind, const char *id);

#endif
