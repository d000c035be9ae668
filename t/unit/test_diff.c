/*
 * Unit tests of control-plane/diff.c: an update's changed members with
 * their values, a create's, nested paths, arrays compared whole, secrets
 * never copied, noise left out, the bounds.
 */

#include <stdio.h>

#include <cjson/cJSON.h>

#include "diff.h"
#include "unit.h"


/* diff of the JSON texts (b, a, body may be NULL), as compact JSON text */
static char *
diff(const char *b, const char *a, const char *body)
{
    cJSON *before = b ? cJSON_Parse(b) : NULL;
    cJSON *after = a ? cJSON_Parse(a) : NULL;
    cJSON *req = body ? cJSON_Parse(body) : NULL;
    cJSON *changes = diff_changes(before, after, req);
    char  *text = cJSON_PrintUnformatted(changes);

    cJSON_Delete(before);
    cJSON_Delete(after);
    cJSON_Delete(req);
    cJSON_Delete(changes);
    return text;
}


#define CHECK_DIFF(b, a, body, want)                                         \
    do {                                                                     \
        char *got = diff(b, a, body);                                        \
        CHECK(got != NULL && strcmp(got, want) == 0);                        \
        if (got != NULL && strcmp(got, want) != 0) {                         \
            fprintf(stderr, "  got  %s\n  want %s\n", got, want);            \
        }                                                                    \
        free(got);                                                           \
    } while (0)


static void
test_update(void)
{
    CHECK_DIFF("{\"id\":\"1\",\"name\":\"a\",\"n\":1,\"updatedAt\":\"x\"}",
               "{\"id\":\"1\",\"name\":\"b\",\"n\":1,\"updatedAt\":\"y\"}", NULL,
               "{\"name\":{\"before\":\"a\",\"after\":\"b\"}}");
    /* nested members by path, arrays whole, a member gone or new */
    CHECK_DIFF("{\"config\":{\"baseUrl\":\"u\",\"org\":\"o\"},\"models\":[1,2],\"old\":true}",
               "{\"config\":{\"baseUrl\":\"v\",\"org\":\"o\"},\"models\":[1,3],\"new\":0}", NULL,
               "{\"config.baseUrl\":{\"before\":\"u\",\"after\":\"v\"},"
               "\"models\":{\"before\":[1,2],\"after\":[1,3]},\"new\":{\"after\":0},"
               "\"old\":{\"before\":true}}");
    CHECK_DIFF("{\"a\":1}", "{\"a\":1}", NULL, "{}");
}


static void
test_create_and_delete(void)
{
    CHECK_DIFF(NULL, "{\"id\":\"1\",\"name\":\"a\",\"createdAt\":\"t\",\"c\":{\"x\":1}}", NULL,
               "{\"id\":{\"after\":\"1\"},\"name\":{\"after\":\"a\"},\"c.x\":{\"after\":1}}");
    CHECK_DIFF("{\"name\":\"a\"}", NULL, NULL, "{\"name\":{\"before\":\"a\"}}");
}


static void
test_secrets(void)
{
    /* a secret the body changed shows only as the mask */
    CHECK_DIFF("{\"config\":{\"apiKey\":\"********\"}}", "{\"config\":{\"apiKey\":\"********\"}}",
               "{\"config\":{\"apiKey\":\"sk-new\"}}",
               "{\"config.apiKey\":{\"before\":\"********\",\"after\":\"********\"}}");
    /* kept: no change */
    CHECK_DIFF("{\"config\":{\"apiKey\":\"********\"}}", "{\"config\":{\"apiKey\":\"********\"}}",
               "{\"config\":{\"apiKey\":\"********\"}}", "{}");
    CHECK_DIFF(NULL, "{\"username\":\"u\"}", "{\"username\":\"u\",\"password\":\"p4ss\"}",
               "{\"username\":{\"after\":\"u\"},\"password\":{\"after\":\"********\"}}");
    /* an answer's key or token is never copied; an old password never recorded */
    CHECK_DIFF(NULL, "{\"key\":\"vmx-secret\",\"token\":\"t0k\",\"maskedKey\":\"vmx-...t\"}",
               "{\"oldPassword\":\"old\"}", "{\"maskedKey\":{\"after\":\"vmx-...t\"}}");
}


static void
test_bounds(void)
{
    char    deep[512] = "", close[64] = "", big[16384];
    size_t  len = 0;
    char   *got;
    cJSON  *changes;

    for (int i = 0; i < DIFF_MAX_DEPTH + 2; i++) {
        strcat(deep, "{\"d\":");
        strcat(close, "}");
    }
    snprintf(big, sizeof(big), "%s1%s", deep, close);
    got = diff(NULL, big, NULL);
    /* deeper than the bound: compared whole at the last level walked */
    CHECK(got != NULL && strstr(got, "\"d.d.d.d.d.d.d.d.d\":{\"after\":{\"d\":1}}") != NULL);
    free(got);

    len = (size_t) snprintf(big, sizeof(big), "{");
    for (int i = 0; i < DIFF_MAX_CHANGES + 50; i++) {
        len += (size_t) snprintf(big + len, sizeof(big) - len, "%s\"m%d\":%d", i ? "," : "",
                                 i, i);
    }
    snprintf(big + len, sizeof(big) - len, "}");
    got = diff(NULL, big, NULL);
    changes = cJSON_Parse(got);
    CHECK(cJSON_GetArraySize(changes) == DIFF_MAX_CHANGES);
    cJSON_Delete(changes);
    free(got);
}


int
main(void)
{
    test_update();
    test_create_and_delete();
    test_secrets();
    test_bounds();

    return UNIT_REPORT();
}
