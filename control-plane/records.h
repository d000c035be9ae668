/*
 * records: a batch of a data plane's audit records into PostgreSQL
 * (docs/ARCHITECTURE.md, "Audit and usage records").
 *
 * The ingest thread adds the framed records it reads from a spool (and the
 * bytes that are none, as dead letters) to a batch; records_commit() then
 * stores in one transaction the audit rows, one usage row per attempt (each
 * with its cost from the price table in memory, prices.h; a record with the
 * sum of its attempts'), the per-minute aggregates of those usage rows
 * (summed here, not by SQL), the API keys' lastUsedAt (one UPDATE per
 * batch), the dead letters, and the data plane's new spool cursor.  Rows go
 * straight into the partitioned tables with COPY; a record delivered twice makes the
 * audit key refuse the COPY, and the batch is stored again without the
 * records already there.  A record PostgreSQL refuses for its values
 * becomes a dead letter, and the rest of its batch is stored.
 */

#ifndef CP_RECORDS_H
#define CP_RECORDS_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "db.h"
#include "vmx_spool.h"

#define RECORDS_DEAD_RAW_MAX  65536     /* bytes of a dead letter kept */

typedef struct records_batch_s  records_batch_t;

typedef struct {
    long    stored;         /* audit rows inserted */
    long    usage_rows;     /* usage rows inserted */
    long    duplicates;     /* records already stored, skipped */
    long    dead;           /* dead letters stored */
    time_t  newest;         /* timestamp of the newest record, 0 when none */
} records_result_t;

typedef enum {
    RECORDS_FAILED = -1,    /* nothing committed (database down, error logged) */
    RECORDS_COMMITTED = 0,  /* rows and the cursor "to" committed */
    RECORDS_CURSOR_MOVED    /* the stored cursor is no longer "from" (another
                               control plane ingested it): nothing committed */
} records_rc_e;

/* an empty batch of dataplane's records; keep_meta: also collect each
 * record's metadata for the OpenTelemetry export */
records_batch_t *records_batch_new(const char *dataplane, bool keep_meta);
void records_batch_free(records_batch_t *b);
void records_batch_reset(records_batch_t *b);

/* a framed record (its frame's bytes: frame) found at file:offset (file
 * stays valid until the batch is reset); a record whose metadata is not a
 * record becomes a dead letter, its frame kept */
void records_batch_add(records_batch_t *b, const vmx_spool_record_t *rec,
    const char *frame, size_t frame_len, const char *file, off_t offset);

/* bytes at file:offset that are no record, and why (a static string) */
void records_batch_dead(records_batch_t *b, const char *file, off_t offset,
    const char *reason, const char *bytes, size_t len);

size_t records_batch_count(const records_batch_t *b);   /* records and dead letters */
size_t records_batch_bytes(const records_batch_t *b);   /* their rows' size */

/* the dead letters of the batch, i < records_batch_dead_count() */
size_t records_batch_dead_count(const records_batch_t *b);
const char *records_batch_dead_reason(const records_batch_t *b, size_t i);
const char *records_batch_dead_position(const records_batch_t *b, size_t i);

/* the metadata of the batch's records as a cJSON array of objects, with
 * "responseModel" when the answer named one (the batch keeps it; NULL
 * without keep_meta) */
const cJSON *records_batch_meta(const records_batch_t *b);

/*
 * Stores the batch and moves the cursor of its data plane from "from" to
 * "to", in one transaction on c; once committed, counts the cost of the
 * rows stored into the metrics.
 */
records_rc_e records_commit(db_conn_t *c, records_batch_t *b, const char *from,
    const char *to, records_result_t *out);

/* the stored cursor of dataplane ("" when none) into a malloc'd string the
 * caller frees; NULL on a database error */
char *records_load_cursor(db_conn_t *c, const char *dataplane);

/*
 * Partitions: creates the day partitions of today and the next ahead days,
 * and drops those (and dead letters) older than retention_days.  0 or -1
 * (logged).
 */
int records_maintain(db_conn_t *c, int ahead, int retention_days);

#endif
