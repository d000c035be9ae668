/*
 * vmx_rfc3339: UTC timestamps as the API and the config channel write them,
 * "2026-11-21T10:00:00Z".
 */

#ifndef VMX_RFC3339_H
#define VMX_RFC3339_H

#include <stdbool.h>
#include <time.h>

#define VMX_RFC3339_SIZE  sizeof("2026-11-21T10:00:00Z")

/* writes t (seconds) into out */
void vmx_rfc3339_format(time_t t, char out[VMX_RFC3339_SIZE]);

/*
 * parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)"; the fraction is
 * dropped.  False when s is anything else.
 */
bool vmx_rfc3339_parse(const char *s, time_t *t);

/* room for the microsecond form, a five-digit year included */
#define VMX_RFC3339_US_SIZE  sizeof("12026-11-21T10:00:00.123456Z")

/*
 * parses s as vmx_rfc3339_parse() does, keeping the fraction to the
 * microsecond, and writes it in UTC as "2026-11-21T10:00:00.123456Z" into
 * out (a form PostgreSQL always accepts).  False when s is invalid.
 */
bool vmx_rfc3339_normalize(const char *s, time_t *t, char out[VMX_RFC3339_US_SIZE]);

#endif
