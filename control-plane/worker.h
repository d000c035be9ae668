/*
 * worker: a background thread of the daemon that runs rounds, sleeping in
 * between until the next round is due, it is woken (worker_notify()), or it
 * must stop.  The owner may guard its own shared state with w->lock.
 */

#ifndef CP_WORKER_H
#define CP_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

typedef struct {
    pthread_t        thread;
    bool             running;
    pthread_mutex_t  lock;
    pthread_cond_t   wake;
    bool             changed;          /* notified since the last wait */
    bool             stopping;
} worker_t;

#define WORKER_INIT  { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER }

/* starts fn(NULL) on its thread; -1 with the reason logged (name: the log's prefix) */
int worker_start(worker_t *w, void *(*fn)(void *), const char *name);

/* asks the thread to stop and joins it */
void worker_stop(worker_t *w);

/* wakes the thread's wait now */
void worker_notify(worker_t *w);

bool worker_stopping(worker_t *w);

/*
 * sleeps until deadline (CLOCK_REALTIME), a stop, or, when woken_by_notify,
 * a notification (one that came since the last such wait counts);
 * true when the thread must stop
 */
bool worker_wait(worker_t *w, const struct timespec *deadline, bool woken_by_notify);

/* now + ms as a CLOCK_REALTIME deadline */
struct timespec worker_deadline_ms(long ms);

#endif
