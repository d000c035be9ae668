/*
 * worker: see worker.h.  Deadlines are on CLOCK_MONOTONIC: a step of the
 * wall clock neither hurries nor holds up a round.
 */

#include <time.h>

#include "log.h"
#include "worker.h"


/* now + ms on CLOCK_MONOTONIC, the clock of w->wake */
static struct timespec
deadline_in(long ms)
{
    struct timespec t;
    long            ns;

    if (ms < 0) {
        ms = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
    ns = t.tv_nsec + ms % 1000 * 1000000L;
    t.tv_sec += ms / 1000 + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}


/*
 * sleeps until deadline, a stop, or, when wakeable, a notification (one
 * that came during the last round counts); true when the thread must stop
 */
static bool
sleep_until(worker_t *w, const struct timespec *deadline, bool wakeable)
{
    bool stop;

    pthread_mutex_lock(&w->lock);
    while (!w->stopping && !(wakeable && w->woken)
           && pthread_cond_timedwait(&w->wake, &w->lock, deadline) == 0)
    {
        /* woken for nothing: sleep on */
    }
    if (wakeable) {
        w->woken = false;
    }
    stop = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stop;
}


static void *
worker_main(void *arg)
{
    worker_t        *w = arg;
    struct timespec  next;

    do {
        next = deadline_in(w->gate == NULL || w->gate() ? w->round() : WORKER_GATE_MS);
    } while (!sleep_until(w, &next, true));
    return NULL;
}


int
worker_start(worker_t *w, const char *name, worker_round_pt round)
{
    pthread_condattr_t attr;
    int                rc;

    w->round = round;
    w->stopping = false;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&w->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0 && pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_cond_destroy(&w->wake);
        rc = -1;
    }
    if (rc != 0) {
        log_error("%s: cannot start the thread", name);
        return -1;
    }
    pthread_setname_np(w->thread, name);      /* as ps and gdb show it */
    pthread_mutex_lock(&w->lock);
    w->running = true;
    pthread_mutex_unlock(&w->lock);
    return 0;
}


/* running goes false under the lock: a later worker_notify() leaves the
 * condition variable being destroyed alone */
void
worker_stop(worker_t *w)
{
    if (!w->running) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    w->running = false;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
}


void
worker_notify(worker_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->woken = true;
    if (w->running) {
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->lock);
}


bool
worker_stopping(worker_t *w)
{
    bool stopping;

    pthread_mutex_lock(&w->lock);
    stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stopping;
}


long long
worker_clock_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}


bool
worker_pause(worker_t *w, long ms)
{
    struct timespec until = deadline_in(ms);

    return sleep_until(w, &until, false);
}
