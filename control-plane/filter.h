/*
 * filter: the WHERE clause of a list from its query arguments (the audit
 * and the activity lists).  Each argument names its condition, with %d
 * for its parameter number, and how its value is checked; values always
 * travel as parameters.
 */

#ifndef CP_FILTER_H
#define CP_FILTER_H

#include "http.h"
#include "vmx_rfc3339.h"

#define FILTER_MAX       12
#define FILTER_TEXT_MAX  512

typedef enum { ARG_TIME_FROM, ARG_TIME_TO, ARG_UUID, ARG_STATUS, ARG_TEXT, ARG_BOOL } arg_kind_e;

typedef struct {
    const char  *name;            /* of the query argument */
    const char  *condition;       /* "user_id = $%d::uuid" */
    arg_kind_e   kind;
} filter_arg_t;

typedef struct {
    char         where[1024];
    const char  *params[FILTER_MAX + 4];      /* and four for the paging */
    int          n;
    char         times[2][VMX_RFC3339_US_SIZE];   /* normalized from / to */
} filter_t;

/* starts f with a constant condition using the n parameters params */
void filter_init(filter_t *f, const char *where, int n, const char *const *params);

/* ANDs the condition of each of args given in the query; false after
 * answering 400 naming the argument */
bool filter_add(http_req_t *req, filter_t *f, const filter_arg_t *args, size_t nargs);

#endif
