/*
 * filter: see filter.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"


static bool
arg_valid(http_req_t *req, const char *name, arg_kind_e kind, const char *v,
    char time[VMX_RFC3339_US_SIZE])
{
    time_t  t;
    char   *end;
    long    n;

    switch (kind) {
    case ARG_TIME_FROM:
    case ARG_TIME_TO:
        if (!vmx_rfc3339_normalize(v, &t, time)) {
            http_invalid(req, name, "%s must be an RFC 3339 time", name);
            return false;
        }
        return true;
    case ARG_UUID:
        if (!crypto_is_uuid(v)) {
            http_invalid(req, name, "%s must be a UUID", name);
            return false;
        }
        return true;
    case ARG_STATUS:
        n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 100 || n > 599) {
            http_invalid(req, name, "%s must be an HTTP status code (100 to 599)", name);
            return false;
        }
        return true;
    case ARG_BOOL:
        if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
            http_invalid(req, name, "%s must be true or false", name);
            return false;
        }
        return true;
    case ARG_TEXT:
        if (v[0] == '\0' || strlen(v) > FILTER_TEXT_MAX) {
            http_invalid(req, name, "%s must have 1 to %d characters", name, FILTER_TEXT_MAX);
            return false;
        }
        return true;
    }
    return false;
}


void
filter_init(filter_t *f, const char *where, int n, const char *const *params)
{
    snprintf(f->where, sizeof(f->where), "%s", where);
    for (f->n = 0; f->n < n; f->n++) {
        f->params[f->n] = params[f->n];
    }
}


bool
filter_add(http_req_t *req, filter_t *f, const filter_arg_t *args, size_t nargs)
{
    size_t len = strlen(f->where);

    for (size_t i = 0; i < nargs && f->n < FILTER_MAX; i++) {
        const char *v = http_query(req, args[i].name);
        char       *time = args[i].kind == ARG_TIME_TO ? f->times[1] : f->times[0];

        if (v == NULL) {
            continue;
        }
        if (!arg_valid(req, args[i].name, args[i].kind, v, time)) {
            return false;
        }
        f->params[f->n++] = args[i].kind == ARG_TIME_FROM || args[i].kind == ARG_TIME_TO
                            ? time : v;
        len += (size_t) snprintf(f->where + len, sizeof(f->where) - len, " AND ");
        len += (size_t) snprintf(f->where + len, sizeof(f->where) - len, args[i].condition,
                                 f->n);
    }
    return true;
}
