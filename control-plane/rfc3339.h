/*
 * rfc3339: UTC timestamps as the API and the config channel write them,
 * "2026-11-21T10:00:00Z".
 */

#ifndef CP_RFC3339_H
#define CP_RFC3339_H

#include <stdbool.h>
#include <time.h>

#define RFC3339_SIZE  sizeof("2026-11-21T10:00:00Z")

/* writes t (seconds) into out */
void rfc3339_format(time_t t, char out[RFC3339_SIZE]);

/*
 * parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)"; the fraction is
 * dropped.  False when s is anything else.
 */
bool rfc3339_parse(const char *s, time_t *t);

#endif
