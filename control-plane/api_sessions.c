/*
 * api_sessions: /api/v1/auth/sessions, the caller's login sessions, and
 * /{id} to end one.  A session is shown by its id, never by its token;
 * current marks the one the request came with.  Ending another user's
 * session takes a policy allowing user-session:delete on user:* (admin).
 */

#include <string.h>

#include "api.h"
#include "log.h"


void
api_sessions_list(http_req_t *req)
{
    const char *params[2] = { req->user_id, req->token_hash };

    doc_reply_list(req, "SELECT doc || jsonb_build_object('current', token_hash = $2) AS doc,"
                        " created_at, id FROM session_docs"
                        " WHERE user_id = $1 AND expires_at > now()", 2, params);
}


void
api_sessions_delete(http_req_t *req)
{
    bool        any = router_allows(req, "user-session:delete", "user:*");
    const char *params[3] = { http_param(req, "id"), req->user_id, any ? "true" : "false" };

    doc_reply_delete(req, "DELETE FROM sessions WHERE id = $1 AND (user_id = $2 OR $3)",
                     3, params, "session");
    if (req->status == 204) {
        log_info("auth: user=%s ended session id=%s", req->username, params[0]);
    }
}
