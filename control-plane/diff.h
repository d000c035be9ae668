/*
 * diff: the fields a management change changed, for the activity record
 * (activity.c), from the object as the API showed it before and after.
 *
 * The answer is {"<path>": {"before": v, "after": v}} with dotted paths
 * ("config.baseUrl"); a member absent on one side has no "before" (a
 * create) or no "after".  Objects are walked member by member, anything
 * else (arrays included) is compared whole.  Never a secret: a member
 * named password, newPassword, oldPassword, key or token is never copied,
 * and a secret the body changed (a string where the answer shows
 * "********", or a password) is recorded with "********" as its values.
 * createdAt, updatedAt and lastUsedAt are left out: they change with
 * everything.  Bounded: DIFF_MAX_DEPTH levels (deeper is compared whole),
 * DIFF_MAX_PATH bytes of path, DIFF_MAX_CHANGES entries.  Pure.
 */

#ifndef CP_DIFF_H
#define CP_DIFF_H

#include <cjson/cJSON.h>

#define DIFF_MAX_DEPTH    8
#define DIFF_MAX_PATH     256
#define DIFF_MAX_CHANGES  200
#define DIFF_MASK         "********"

/* before, after, body may each be NULL; a new object the caller deletes,
 * NULL when out of memory */
cJSON *diff_changes(const cJSON *before, const cJSON *after, const cJSON *body);

#endif
