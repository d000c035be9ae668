/*
 * batch_runner: the singleton job (leader.h) that runs the items of batches
 * (schema/0016_batches.sql, docs/ARCHITECTURE.md "Batches") through the
 * data planes.  Each round it
 *   - fails the open batches whose API key is disabled or expired, cancels
 *     the PENDING items of cancelling ones, and ends the batches with no
 *     item left to run;
 *   - resumes the items another claim left RUNNING for longer than
 *     VMX_BATCH_RESUME_GRACE_SECONDS: from their audit record when the data
 *     plane answered them, PENDING again when it did not;
 *   - claims PENDING items, the batches served in turn, as far as
 *     VMX_BATCH_CONCURRENCY and the per-minute budgets of their connections
 *     allow (batch_pace.h), and sends each to a data plane under the
 *     batch's key with the signed x-vmx-batch-* headers;
 *   - delivers the callbacks due (CALLBACK mode), signed with the batch's
 *     secret, retried with backoff from the state in PostgreSQL.
 * Every request runs in one curl multi handle on the job's thread; only
 * that thread touches the runner's state.
 */

#ifndef CP_BATCH_RUNNER_H
#define CP_BATCH_RUNNER_H

#include "config.h"

/* reads the data planes' token (the signing key), starts the thread; -1 with the reason logged */
int batch_runner_start(const config_t *cfg);

/* stops the thread; the items it was running stay RUNNING, for a later claim to resume */
void batch_runner_stop(void);

#endif
