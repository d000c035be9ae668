/*
 * policy: the policy documents of roles (SPEC §8), validated and evaluated.
 *
 *   {"statements": [{"effect": "allow" | "deny",
 *                    "actions": ["ai-connection:create", "*:get", ...],
 *                    "resources": ["workspace:acme:environment:prod:*", ...]}]}
 *
 * Globs are anchored (lib/vmx_policy.h); a request is allowed when some
 * statement of some policy allows its action on its resource and none
 * denies it: an explicit deny wins, no match is a deny.  Pure: no database,
 * no request, so the unit tests call it directly.
 */

#ifndef CP_POLICY_H
#define CP_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define POLICY_MAX_STATEMENTS  64
#define POLICY_MAX_GLOBS       64

/* whether some action the API knows matches the glob */
typedef bool (*policy_action_known_pt)(const char *glob);

/*
 * Whether policy is a valid document.  On failure field holds where the
 * fault is ("policy.statements[1].actions[0]") and message what it is,
 * the character position included for a malformed glob.
 */
bool policy_validate(const cJSON *policy, policy_action_known_pt known, char *field,
    size_t field_size, char *message, size_t message_size);

/* policies: a JSON array of valid policy documents (a user's roles) */
bool policy_allows(const cJSON *policies, const char *action, const char *resource);

#endif
