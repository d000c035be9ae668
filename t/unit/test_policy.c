/*
 * Policies (SPEC §8): anchored globs, name escaping, validation with the
 * field and position, and deny-first evaluation.
 */

#include <cjson/cJSON.h>

#include "unit.h"
#include "policy.h"
#include "vmx_policy.h"


static void
test_glob(void)
{
    CHECK(vmx_glob_match("*", ""));
    CHECK(vmx_glob_match("*", "workspace:a:environment:b"));
    CHECK(vmx_glob_match("workspace:a", "workspace:a"));
    /* anchored at both ends */
    CHECK(!vmx_glob_match("workspace:a", "workspace:ab"));
    CHECK(!vmx_glob_match("workspace:a", "xworkspace:a"));
    CHECK(!vmx_glob_match("a:*", "b:a:c"));
    CHECK(vmx_glob_match("*:get", "ai-connection:get"));
    CHECK(!vmx_glob_match("*:get", "ai-connection:getx"));
    CHECK(vmx_glob_match("workspace:a:*", "workspace:a:environment:p:api-key:k"));
    CHECK(!vmx_glob_match("workspace:a:*", "workspace:a"));
    CHECK(vmx_glob_match("w?rk", "work"));
    CHECK(!vmx_glob_match("w?rk", "wrk"));
    CHECK(vmx_glob_match("a*b*c", "aXXbYYbZZc"));
    CHECK(!vmx_glob_match("a*b*c", "aXXbYYbZZ"));
    CHECK(vmx_glob_match("**a", "a"));
    CHECK(!vmx_glob_match("", "a"));
    CHECK(vmx_glob_match("", ""));

    /* a long subject against many stars stays quick (no backtracking blow-up) */
    {
        char glob[VMX_GLOB_MAX_LEN + 1], s[4097];

        for (int i = 0; i < VMX_GLOB_MAX_LEN; i++) {
            glob[i] = i % 2 ? 'a' : '*';
        }
        glob[VMX_GLOB_MAX_LEN - 1] = 'b';
        glob[VMX_GLOB_MAX_LEN] = '\0';
        memset(s, 'a', sizeof(s) - 1);
        s[sizeof(s) - 1] = '\0';
        CHECK(!vmx_glob_match(glob, s));
    }
}


static void
test_glob_valid(void)
{
    size_t pos;
    char   long_glob[VMX_GLOB_MAX_LEN + 2];

    CHECK(vmx_glob_valid("workspace:*", &pos));
    CHECK(!vmx_glob_valid("", &pos) && pos == 0);
    CHECK(!vmx_glob_valid("workspace:[ab]", &pos) && pos == 10);
    CHECK(!vmx_glob_valid("a b", &pos) && pos == 1);
    CHECK(!vmx_glob_valid("a{b,c}", &pos) && pos == 1);
    CHECK(!vmx_glob_valid("a\\*", &pos) && pos == 1);
    CHECK(!vmx_glob_valid("caf\xc3\xa9", &pos) && pos == 3);
    memset(long_glob, 'a', sizeof(long_glob) - 1);
    long_glob[sizeof(long_glob) - 1] = '\0';
    CHECK(!vmx_glob_valid(long_glob, &pos) && pos == VMX_GLOB_MAX_LEN);
    long_glob[VMX_GLOB_MAX_LEN] = '\0';
    CHECK(vmx_glob_valid(long_glob, &pos));
}


static void
test_escape(void)
{
    char out[32];

    CHECK(vmx_policy_escape("acme", out, sizeof(out)) == 4 && strcmp(out, "acme") == 0);
    CHECK(vmx_policy_escape("a:b*c?%", out, sizeof(out)) == 15
          && strcmp(out, "a%3Ab%2Ac%3F%25") == 0);
    CHECK(vmx_policy_escape("a b\xc3\xa9", out, sizeof(out)) == 11
          && strcmp(out, "a%20b%C3%A9") == 0);
    /* too long: "" and the length it needs */
    CHECK(vmx_policy_escape("a:b", out, 5) == 5 && out[0] == '\0');
    CHECK(vmx_policy_escape("abcd", out, 5) == 4 && strcmp(out, "abcd") == 0);
    CHECK(vmx_policy_escape("abcde", out, 5) == 5 && out[0] == '\0');
    /* an escaped name can never be read as a wildcard or span a separator */
    vmx_policy_escape("*", out, sizeof(out));
    CHECK(!vmx_glob_match("workspace:a", out));
}


static bool
known_action(const char *glob)
{
    static const char *const actions[] = {
        "ai-connection:create", "ai-connection:get", "workspace:list", NULL
    };

    for (int i = 0; actions[i] != NULL; i++) {
        if (vmx_glob_match(glob, actions[i])) {
            return true;
        }
    }
    return false;
}


static bool
validates(const char *json, const char *want_field, const char *want_in_message)
{
    cJSON *doc = cJSON_Parse(json);
    char   field[128] = "", message[256] = "";
    bool   ok = policy_validate(doc, known_action, field, sizeof(field), message,
                                sizeof(message));

    cJSON_Delete(doc);
    if (want_field == NULL) {
        return ok;
    }
    if (!ok && strcmp(field, want_field) == 0 && strstr(message, want_in_message) != NULL) {
        return true;
    }
    fprintf(stderr, "validate %s: field=%s message=%s\n", json, field, message);
    return false;
}


static void
test_validate(void)
{
    CHECK(validates("{\"statements\":[]}", NULL, NULL));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*:get\"],"
                    "\"resources\":[\"workspace:a:*\"]}]}", NULL, NULL));
    CHECK(validates("[]", "policy", "object"));
    CHECK(validates("{\"statement\":[]}", "policy.statement", "unknown field"));
    CHECK(validates("{\"statements\":{}}", "policy.statements", "array"));
    CHECK(validates("{\"statements\":[{\"effect\":\"Allow\",\"actions\":[\"*\"],"
                    "\"resources\":[\"*\"]}]}", "policy.statements[0].effect", "allow"));
    CHECK(validates("{\"statements\":[{\"effect\":\"deny\",\"actions\":[\"*\"],"
                    "\"resources\":[\"*\"],\"condition\":1}]}",
                    "policy.statements[0].condition", "unknown field"));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*:get\"],"
                    "\"resources\":[\"*\"]},{\"effect\":\"allow\","
                    "\"actions\":[\"*:get\",\"ai-conection:create\"],\"resources\":[\"*\"]}]}",
                    "policy.statements[1].actions[1]", "unknown action \"ai-conection:create\""));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                    "\"resources\":[\"*\",\"workspace:[ab]\"]}]}",
                    "policy.statements[0].resources[1]", "character 11"));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[],"
                    "\"resources\":[\"*\"]}]}", "policy.statements[0].actions", "1 to"));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                    "\"resources\":[7]}]}", "policy.statements[0].resources[0]", "string"));
    CHECK(validates("{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                    "\"resources\":[\"\"]}]}", "policy.statements[0].resources[0]", "1 to"));
}


static bool
allows(const char *policies, const char *action, const char *resource)
{
    cJSON *doc = cJSON_Parse(policies);
    bool   ok = policy_allows(doc, action, resource);

    cJSON_Delete(doc);
    return ok;
}


static void
test_allows(void)
{
    const char *read_only = "[{\"statements\":[{\"effect\":\"allow\","
                            "\"actions\":[\"*:get\",\"*:list\"],\"resources\":[\"*\"]}]}]";
    const char *deny_user = "[{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                            "\"resources\":[\"*\"]}]},"
                            "{\"statements\":[{\"effect\":\"deny\",\"actions\":[\"user:*\"],"
                            "\"resources\":[\"*\"]}]}]";

    CHECK(!allows("[]", "workspace:get", "workspace:a"));
    CHECK(allows(read_only, "ai-connection:get", "workspace:a:environment:b:ai-connection:c"));
    CHECK(!allows(read_only, "ai-connection:update", "workspace:a:environment:b:ai-connection:c"));
    /* a deny in another role wins over an allow */
    CHECK(allows(deny_user, "role:create", "role:x"));
    CHECK(!allows(deny_user, "user:create", "user:bob"));
    /* resources anchored: an environment's glob does not reach its sibling */
    CHECK(allows("[{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                 "\"resources\":[\"workspace:a:environment:prod:*\"]}]}]",
                 "api-key:create", "workspace:a:environment:prod:api-key:k"));
    CHECK(!allows("[{\"statements\":[{\"effect\":\"allow\",\"actions\":[\"*\"],"
                  "\"resources\":[\"workspace:a:environment:prod:*\"]}]}]",
                  "api-key:create", "workspace:a:environment:prod2:api-key:k"));
}


int
main(void)
{
    test_glob();
    test_glob_valid();
    test_escape();
    test_validate();
    test_allows();
    return UNIT_REPORT();
}
