/*
 * otel: OpenTelemetry export of the ingested records (docs/ARCHITECTURE.md,
 * "OpenTelemetry export") over OTLP/HTTP with JSON bodies, in a thread of
 * its own.  The ingest thread hands over each committed batch with
 * otel_batch(), which never blocks on the network: the records wait in a
 * bounded queue (dropped and counted when it is full) and become one server
 * span per request and one client span per provider attempt, POSTed to
 * <endpoint>/v1/traces with retries and backoff.  The same records feed
 * cumulative GenAI metrics, POSTed to <endpoint>/v1/metrics periodically.
 * Without VMX_OTLP_ENDPOINT nothing of this runs.
 */

#ifndef CP_OTEL_H
#define CP_OTEL_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "config.h"

/* starts the exporter when VMX_OTLP_ENDPOINT is set; 0, or -1 with the
 * reason logged */
int otel_start(const config_t *cfg);

/* one last attempt for what waits, then stops the thread */
void otel_stop(void);

/* whether the exporter runs (the ingest thread then keeps the records) */
bool otel_running(void);

/*
 * a committed batch (an array of records: objects, or their metadata as
 * JSON strings): counted into the metrics and queued for the spans.  Does
 * nothing when the exporter is off.
 */
void otel_batch(const cJSON *records);

#endif
