/*
 * policy: validation and evaluation of policy documents (policy.h).
 */

#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "vmx_policy.h"


static bool
fail(char *field, size_t field_size, char *message, size_t message_size,
     const char *at, const char *what)
{
    snprintf(field, field_size, "%s", at);
    snprintf(message, message_size, "%s", what);
    return false;
}


static bool
validate_globs(const cJSON *list, const char *at, bool actions, policy_action_known_pt known,
               char *field, size_t field_size, char *message, size_t message_size)
{
    char         where[96], what[VMX_GLOB_MAX_LEN + 96];
    const cJSON *glob;
    int          i = 0;
    size_t       pos;

    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1
        || cJSON_GetArraySize(list) > POLICY_MAX_GLOBS)
    {
        snprintf(what, sizeof(what), "must be an array of 1 to %d globs", POLICY_MAX_GLOBS);
        return fail(field, field_size, message, message_size, at, what);
    }
    cJSON_ArrayForEach(glob, list) {
        snprintf(where, sizeof(where), "%s[%d]", at, i++);
        if (!cJSON_IsString(glob)) {
            return fail(field, field_size, message, message_size, where, "must be a string");
        }
        if (!vmx_glob_valid(glob->valuestring, &pos)) {
            if (pos == 0 || pos >= VMX_GLOB_MAX_LEN) {
                snprintf(what, sizeof(what), "malformed glob: must be 1 to %d printable"
                         " characters", VMX_GLOB_MAX_LEN);
            } else {
                snprintf(what, sizeof(what), "malformed glob: character %zu is not allowed"
                         " (no space, [, ], {, } or \\)", pos + 1);
            }
            return fail(field, field_size, message, message_size, where, what);
        }
        if (actions && !known(glob->valuestring)) {
            snprintf(what, sizeof(what), "unknown action \"%s\": it matches no action",
                     glob->valuestring);
            return fail(field, field_size, message, message_size, where, what);
        }
    }
    return true;
}


bool
policy_validate(const cJSON *policy, policy_action_known_pt known, char *field,
                size_t field_size, char *message, size_t message_size)
{
    const cJSON *statements, *st, *member;
    char         at[64], where[96];
    int          i = 0;

    if (!cJSON_IsObject(policy)) {
        return fail(field, field_size, message, message_size, "policy",
                    "must be an object {\"statements\": [...]}");
    }
    cJSON_ArrayForEach(member, policy) {
        if (strcmp(member->string, "statements") != 0) {
            snprintf(where, sizeof(where), "policy.%.64s", member->string);
            return fail(field, field_size, message, message_size, where, "unknown field");
        }
    }
    statements = cJSON_GetObjectItemCaseSensitive(policy, "statements");
    if (!cJSON_IsArray(statements) || cJSON_GetArraySize(statements) > POLICY_MAX_STATEMENTS) {
        snprintf(where, sizeof(where), "must be an array of at most %d statements",
                 POLICY_MAX_STATEMENTS);
        return fail(field, field_size, message, message_size, "policy.statements", where);
    }
    cJSON_ArrayForEach(st, statements) {
        const cJSON *effect = cJSON_GetObjectItemCaseSensitive(st, "effect");

        snprintf(at, sizeof(at), "policy.statements[%d]", i++);
        if (!cJSON_IsObject(st)) {
            return fail(field, field_size, message, message_size, at, "must be an object");
        }
        cJSON_ArrayForEach(member, st) {
            if (strcmp(member->string, "effect") != 0 && strcmp(member->string, "actions") != 0
                && strcmp(member->string, "resources") != 0)
            {
                snprintf(where, sizeof(where), "%s.%.24s", at, member->string);
                return fail(field, field_size, message, message_size, where, "unknown field");
            }
        }
        snprintf(where, sizeof(where), "%s.effect", at);
        if (!cJSON_IsString(effect) || (strcmp(effect->valuestring, "allow") != 0
                                        && strcmp(effect->valuestring, "deny") != 0))
        {
            return fail(field, field_size, message, message_size, where,
                        "must be \"allow\" or \"deny\"");
        }
        snprintf(where, sizeof(where), "%s.actions", at);
        if (!validate_globs(cJSON_GetObjectItemCaseSensitive(st, "actions"), where, true,
                            known, field, field_size, message, message_size))
        {
            return false;
        }
        snprintf(where, sizeof(where), "%s.resources", at);
        if (!validate_globs(cJSON_GetObjectItemCaseSensitive(st, "resources"), where, false,
                            known, field, field_size, message, message_size))
        {
            return false;
        }
    }
    return true;
}


static bool
any_matches(const cJSON *globs, const char *s)
{
    const cJSON *glob;

    cJSON_ArrayForEach(glob, globs) {
        if (cJSON_IsString(glob) && vmx_glob_match(glob->valuestring, s)) {
            return true;
        }
    }
    return false;
}


bool
policy_allows(const cJSON *policies, const char *action, const char *resource)
{
    const cJSON *policy, *st;
    bool         allowed = false;

    cJSON_ArrayForEach(policy, policies) {
        cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(policy, "statements")) {
            const cJSON *effect = cJSON_GetObjectItemCaseSensitive(st, "effect");

            if (!cJSON_IsString(effect)
                || !any_matches(cJSON_GetObjectItemCaseSensitive(st, "actions"), action)
                || !any_matches(cJSON_GetObjectItemCaseSensitive(st, "resources"), resource))
            {
                continue;
            }
            if (strcmp(effect->valuestring, "deny") == 0) {
                return false;
            }
            allowed = allowed || strcmp(effect->valuestring, "allow") == 0;
        }
    }
    return allowed;
}
