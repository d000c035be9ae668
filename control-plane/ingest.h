/*
 * ingest: pulls the audit and usage records of every data plane
 * (docs/ARCHITECTURE.md, "Audit and usage records") in a thread of its
 * own, never in an API request.  Every VMX_INGEST_INTERVAL_MS it GETs each
 * plane's /vmx/records from the committed cursor, stores the batch and the
 * new cursor in one transaction (records.c), and only then acknowledges the
 * cursor with POST /vmx/records/ack; it goes on while batches come back
 * non-empty.  Each committed batch is also handed to the OpenTelemetry
 * exporter (otel.h), which never makes it wait.  A data plane that is down is skipped; while PostgreSQL is
 * down nothing is pulled (the records wait in the spools).  The same thread
 * keeps the day partitions: ahead of time and the retention, at start and
 * when the UTC day changes.
 */

#ifndef CP_INGEST_H
#define CP_INGEST_H

#include "config.h"

int ingest_start(const config_t *cfg);
void ingest_stop(void);

#endif
