/*
 * activity: who changed what (docs/ARCHITECTURE.md, "Activity").  Every
 * management change is recorded in its own transaction, by the router: the
 * object as its GET route shows it before the handler runs
 * (activity_begin), and after, from the handler's answer, diffed by
 * diff_changes() (activity_record, just before the commit; a failed insert
 * fails the change).  Logins, failed ones included, are recorded by the
 * login handler on their own.
 */

#ifndef CP_ACTIVITY_H
#define CP_ACTIVITY_H

#include "http.h"

/* before the handler of a change, in its transaction: keeps the object as
 * the route's GET answers it in req->before (none for a create) */
void activity_begin(http_req_t *req);

/* after a successful handler, before the commit: inserts the record; 0 or
 * -1 (logged) */
int activity_record(http_req_t *req);

/* a login attempt for username: user_id "" when unknown, status the answer
 * (200 success, else a failure); logged when it cannot be stored */
void activity_login(http_req_t *req, const char *username, const char *user_id, int status);

/* deletes the records older than days; 0 or -1 */
int activity_prune(db_conn_t *c, int days);

#endif
