/*
 * ingest: pulls the audit and usage records of every data plane
 * (docs/ARCHITECTURE.md, "Audit and usage records") in a thread of its
 * own (worker.h), never in an API request.  Every VMX_INGEST_INTERVAL_MS it
 * reads each plane's spool after the committed cursor (GET /vmx/spool and
 * its files' ranges, dpclient.h), stores the batch and the new cursor in
 * one transaction (records.c), and only then deletes the files committed
 * whole; it goes on while the spool has more.  Each committed batch is
 * also handed to the OpenTelemetry exporter (otel.h), which never makes it
 * wait.  A data plane that is down is skipped; while PostgreSQL is down
 * nothing is pulled (the records wait in the spools).  The same thread
 * keeps the day partitions: ahead of time and the retention, at start and
 * when the UTC day changes.
 */

#ifndef CP_INGEST_H
#define CP_INGEST_H

#include "config.h"

int ingest_start(const config_t *cfg);
void ingest_stop(void);

#endif
