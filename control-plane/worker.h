/*
 * worker: the one lifecycle of the daemon's background threads (leader,
 * discovery, pusher, ingest, otel, credentials, reencrypt).  The thread runs
 * rounds of its owner's work, and between two rounds sleeps until the next
 * is due, it is woken (worker_notify()), or it must stop.  A gated thread
 * (the singleton jobs, leader.h) runs a round only while its gate is open.  The owner may guard its own
 * shared state with w->lock: the worker takes it only between rounds.
 */

#ifndef CP_WORKER_H
#define CP_WORKER_H

#include <pthread.h>
#include <stdbool.h>

/* one round of work; returns the milliseconds until the next one is due */
typedef long (*worker_round_pt)(void);

/* whether a round may run now (leader.h) */
typedef bool (*worker_gate_pt)(void);

/* while the gate is closed, the thread looks again this often or when woken */
#define WORKER_GATE_MS  1000

typedef struct {
    worker_round_pt   round;
    worker_gate_pt    gate;            /* NULL: always open; set before the start */
    pthread_t         thread;
    bool              running;         /* written under the lock */
    pthread_mutex_t   lock;
    pthread_cond_t    wake;            /* CLOCK_MONOTONIC, while running */
    bool              woken;           /* notified since the last sleep */
    bool              stopping;
} worker_t;

#define WORKER_INIT  { .lock = PTHREAD_MUTEX_INITIALIZER }

/*
 * starts the thread running round(), the first at once; name (at most 15
 * bytes) is the thread's and the log's; -1 with the reason logged
 */
int worker_start(worker_t *w, const char *name, worker_round_pt round);

/* asks the thread to stop, wakes it and joins it (after its current round) */
void worker_stop(worker_t *w);

/* the next round starts now, or right after the current one */
void worker_notify(worker_t *w);

/* for a long round: whether it should end early */
bool worker_stopping(worker_t *w);

/* now in milliseconds on the workers' clock (CLOCK_MONOTONIC) */
long long worker_clock_ms(void);

/* within a round: sleeps ms, woken only by a stop; true when stopping */
bool worker_pause(worker_t *w, long ms);

#endif
