/*
 * pusher: keeps every data plane on the current config version
 * (docs/ARCHITECTURE.md, "Config channel").  One thread: it pushes after
 * every change (pusher_notify()) and, every reconcile interval, asks each
 * data plane its version and pushes when it differs.  A data plane that is
 * down only delays this thread, never the API.
 */

#ifndef CP_PUSHER_H
#define CP_PUSHER_H

#include "config.h"

int pusher_start(const config_t *cfg);
void pusher_stop(void);

/* a change was committed: push soon */
void pusher_notify(void);

#endif
