/*
 * leader: see leader.h.  The lock's connection belongs to the leader
 * thread alone; the lead (holds) is guarded by leader.worker.lock.
 */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "credentials.h"
#include "leader.h"
#include "log.h"
#include "pusher.h"

#define FOLLOWERS_MAX   8
#define NAME_MAX_LEN    63               /* of an application_name */

#define STR(x)   #x
#define XSTR(x)  STR(x)

static struct {
    worker_t     worker;               /* its lock also guards holds */
    const char  *conninfo;             /* the config's */
    char         name[NAME_MAX_LEN + 1];   /* this replica as pg_stat_activity shows it */
    PGconn      *pg;                   /* the lock's session, NULL when none */
    bool         holds;
    char         cause[192];           /* why it does not lead, as last logged */
    worker_t    *followers[FOLLOWERS_MAX];
    size_t       nfollowers;
} leader = { .worker = WORKER_INIT };


/* notes why this replica cannot lead, logged when the cause changes */
static void
cannot_lead(log_level_e level, const char *what, const char *detail)
{
    char cause[sizeof(leader.cause)];

    snprintf(cause, sizeof(cause), "%s: %.*s", what, (int) strcspn(detail, "\n"), detail);
    if (strcmp(cause, leader.cause) != 0) {
        log_write(level, "leader name=%s: %s", leader.name, cause);
        snprintf(leader.cause, sizeof(leader.cause), "%s", cause);
    }
}


/*
 * the lock's session, opened when there is none, listening for committed
 * changes; keepalives end a session whose server went silent, before the
 * server has given the lock away for long
 */
static bool
connected(void)
{
    static const char *const keys[] = {
        "dbname", "application_name", "connect_timeout", "keepalives_idle",
        "keepalives_interval", "keepalives_count", NULL
    };
    const char *values[] = { leader.conninfo, leader.name, "3", "2", "1", "2", NULL };
    PGresult   *res;
    bool        ok;

    if (leader.pg != NULL && PQstatus(leader.pg) == CONNECTION_OK) {
        return true;
    }
    PQfinish(leader.pg);
    leader.pg = PQconnectdbParams(keys, values, 1);
    res = PQstatus(leader.pg) == CONNECTION_OK ? PQexec(leader.pg, "LISTEN vmx_config") : NULL;
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        cannot_lead(LOG_WARN, "cannot connect", PQerrorMessage(leader.pg));
        PQfinish(leader.pg);
        leader.pg = NULL;
    }
    return ok;
}


/* a change committed by any replica (the trigger of config_version): the
 * pusher, and the credentials for a changed role, see it now */
static void
relay_changes(void)
{
    PGnotify *n;
    bool      changed = false;

    PQconsumeInput(leader.pg);
    while ((n = PQnotifies(leader.pg)) != NULL) {
        changed = true;
        PQfreemem(n);
    }
    if (changed) {
        pusher_notify();
        credentials_notify();
    }
}


/* whether the session holds the lock: it takes it when free, or, holding
 * it, proves the session still lives */
static bool
check(bool held)
{
    PGresult *res;
    bool      holds;

    if (leader.pg == NULL || PQstatus(leader.pg) != CONNECTION_OK) {
        held = false;               /* a new session holds nothing yet */
    }
    if (!connected()) {
        return false;
    }
    res = PQexec(leader.pg, held ? "SELECT true"
                                 : "SELECT pg_try_advisory_lock(" XSTR(LEADER_LOCK_KEY) ")");
    holds = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
            && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        cannot_lead(LOG_WARN, "the lock's session failed", PQerrorMessage(leader.pg));
        PQfinish(leader.pg);        /* a lock it might hold goes with the session */
        leader.pg = NULL;
    } else {
        if (!holds) {
            cannot_lead(LOG_INFO, "standing by", "another replica holds the lock");
        }
        relay_changes();            /* a standby's gated jobs ignore it, its queue empties */
    }
    PQclear(res);
    return holds;
}


static long
leader_round(void)
{
    bool held, holds;

    pthread_mutex_lock(&leader.worker.lock);
    held = leader.holds;
    pthread_mutex_unlock(&leader.worker.lock);

    holds = check(held);

    pthread_mutex_lock(&leader.worker.lock);
    leader.holds = holds;
    pthread_mutex_unlock(&leader.worker.lock);

    if (holds && !held) {
        log_info("leader name=%s: took the lock, running the singleton jobs", leader.name);
        leader.cause[0] = '\0';
        for (size_t i = 0; i < leader.nfollowers; i++) {
            worker_notify(leader.followers[i]);
        }
    } else if (held && !holds) {
        log_warn("leader name=%s: lost the lock, the singleton jobs pause", leader.name);
    }
    return WORKER_GATE_MS;
}


int
leader_start(const config_t *cfg)
{
    char host[NAME_MAX_LEN + 1] = "";

    gethostname(host, sizeof(host) - 1);
    snprintf(leader.name, sizeof(leader.name), "vmx-cp %s %s", host, cfg->listen);
    leader.conninfo = cfg->database_url;
    return worker_start(&leader.worker, "leader", leader_round);
}


void
leader_stop(void)
{
    worker_stop(&leader.worker);
    PQfinish(leader.pg);
    leader.pg = NULL;
    leader.holds = false;
    leader.nfollowers = 0;
}


bool
leader_holds(void)
{
    bool holds;

    pthread_mutex_lock(&leader.worker.lock);
    holds = leader.holds;
    pthread_mutex_unlock(&leader.worker.lock);
    return holds;
}


void
leader_follow(worker_t *w)
{
    if (leader.nfollowers == FOLLOWERS_MAX) {
        log_error("leader: more than %d singleton jobs", FOLLOWERS_MAX);   /* a build's bug */
        return;
    }
    w->gate = leader_holds;
    leader.followers[leader.nfollowers++] = w;
}


cJSON *
leader_json(db_conn_t *c)
{
    cJSON    *obj = cJSON_CreateObject();
    PGresult *res = db_exec(c, "SELECT a.application_name FROM pg_locks l"
                               " JOIN pg_stat_activity a ON a.pid = l.pid"
                               " WHERE l.locktype = 'advisory' AND l.granted"
                               " AND l.database = (SELECT oid FROM pg_database"
                               "                   WHERE datname = current_database())"
                               " AND l.classid = 0 AND l.objid = " XSTR(LEADER_LOCK_KEY)
                               " AND l.objsubid = 1", 0, NULL);

    cJSON_AddBoolToObject(obj, "self", leader_holds());
    if (res != NULL && PQntuples(res) == 1) {
        cJSON_AddStringToObject(obj, "name", PQgetvalue(res, 0, 0));
    } else {
        cJSON_AddNullToObject(obj, "name");
    }
    PQclear(res);
    return obj;
}
