/*
 * worker: see worker.h.
 */

#include "log.h"
#include "worker.h"


int
worker_start(worker_t *w, void *(*fn)(void *), const char *name)
{
    if (pthread_create(&w->thread, NULL, fn, NULL) != 0) {
        log_error("%s: cannot start the thread", name);
        return -1;
    }
    w->running = true;
    return 0;
}


void
worker_stop(worker_t *w)
{
    if (w->running) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        w->running = false;
    }
}


void
worker_notify(worker_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->changed = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}


bool
worker_stopping(worker_t *w)
{
    bool s;

    pthread_mutex_lock(&w->lock);
    s = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return s;
}


bool
worker_wait(worker_t *w, const struct timespec *deadline, bool woken_by_notify)
{
    bool stop;

    pthread_mutex_lock(&w->lock);
    while (!w->stopping && !(woken_by_notify && w->changed)
           && pthread_cond_timedwait(&w->wake, &w->lock, deadline) == 0)
    {
        /* woken for nothing: wait on */
    }
    if (woken_by_notify) {
        w->changed = false;
    }
    stop = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return stop;
}


struct timespec
worker_deadline_ms(long ms)
{
    struct timespec t;
    long            ns;

    clock_gettime(CLOCK_REALTIME, &t);
    ns = t.tv_nsec + ms % 1000 * 1000000L;
    t.tv_sec += ms / 1000 + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
    return t;
}
