/*
 * records: a batch of a data plane's audit records into PostgreSQL
 * (docs/ARCHITECTURE.md, "Audit and usage records"): the audit rows, one
 * usage row per attempt, the per-minute aggregates of the new usage rows
 * and the data plane's spool cursor, all in one transaction.  Rows go
 * through COPY into temporary tables, then INSERT ... ON CONFLICT DO
 * NOTHING into the partitioned tables, so a record delivered twice is
 * stored once and aggregated once.
 */

#ifndef CP_RECORDS_H
#define CP_RECORDS_H

#include <time.h>

#include <cjson/cJSON.h>

#include "db.h"

typedef struct {
    long    stored;         /* audit rows inserted (re-delivered ones not counted) */
    long    usage_rows;     /* usage rows inserted */
    long    rejected;       /* records skipped: not an object, no valid id or timestamp */
    time_t  newest;         /* timestamp of the newest record, 0 when none */
} records_batch_t;

typedef enum {
    RECORDS_FAILED = -1,    /* nothing committed (database down, error logged) */
    RECORDS_COMMITTED = 0,  /* rows and the cursor "to" committed */
    RECORDS_CURSOR_MOVED    /* the stored cursor is no longer "from" (another
                               control plane ingested it): nothing committed */
} records_rc_e;

/*
 * Stores records (the "records" array of a GET /vmx/records answer: each
 * element a record object, or its line as a string) and moves the cursor
 * of dataplane from "from" to "to", in one transaction on c.
 */
records_rc_e records_ingest(db_conn_t *c, const char *dataplane, const cJSON *records,
    const char *from, const char *to, records_batch_t *out);

/* the stored cursor of dataplane ("" when none) into a malloc'd string the
 * caller frees; NULL on a database error */
char *records_load_cursor(db_conn_t *c, const char *dataplane);

/*
 * Partitions: creates the day partitions of today and the next ahead days,
 * and drops those older than retention_days.  0 or -1 (logged).
 */
int records_maintain(db_conn_t *c, int ahead, int retention_days);

#endif
