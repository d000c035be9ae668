/*
 * diff: see diff.h.
 */

#include <stdbool.h>
#include <string.h>

#include "diff.h"

typedef struct {
    cJSON  *changes;
    bool    create;          /* no before: entries have only "after" */
    int     count;
    char    path[DIFF_MAX_PATH];
} diff_t;

static const char *const secret_names[] = {
    "password", "newPassword", "oldPassword", "key", "token", NULL
};
static const char *const noise_names[] = { "createdAt", "updatedAt", "lastUsedAt", NULL };


static bool
named(const char *name, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}


/* appends ".name" (or "name" at the top) to d->path; its old length, or
 * -1 when the path would not fit (the member is then left out) */
static int
push(diff_t *d, const char *name)
{
    size_t len = strlen(d->path);
    size_t add = strlen(name) + (len ? 1 : 0);

    if (len + add >= sizeof(d->path)) {
        return -1;
    }
    if (len) {
        d->path[len] = '.';
    }
    memcpy(d->path + len + (len ? 1 : 0), name, strlen(name) + 1);
    return (int) len;
}


static void
add(diff_t *d, const cJSON *before, const cJSON *after)
{
    cJSON *entry;

    if (d->count >= DIFF_MAX_CHANGES || cJSON_GetObjectItemCaseSensitive(d->changes, d->path)) {
        return;
    }
    entry = cJSON_CreateObject();
    if (before != NULL) {
        cJSON_AddItemToObject(entry, "before", cJSON_Duplicate(before, true));
    }
    if (after != NULL) {
        cJSON_AddItemToObject(entry, "after", cJSON_Duplicate(after, true));
    }
    cJSON_AddItemToObject(d->changes, d->path, entry);
    d->count++;
}


static void
add_masked(diff_t *d)
{
    cJSON *mask = cJSON_CreateString(DIFF_MASK);

    add(d, d->create ? NULL : mask, mask);
    cJSON_Delete(mask);
}


static void walk(diff_t *d, const cJSON *before, const cJSON *after, int depth);


/* one member present on one side at least */
static void
member(diff_t *d, const char *name, const cJSON *b, const cJSON *a, int depth)
{
    int len;

    if (named(name, secret_names) || named(name, noise_names)) {
        return;
    }
    len = push(d, name);
    if (len < 0) {
        return;
    }
    if (depth < DIFF_MAX_DEPTH && (b == NULL || cJSON_IsObject(b))
        && (a == NULL || cJSON_IsObject(a)))
    {
        walk(d, b, a, depth + 1);
    } else if (b == NULL || a == NULL || !cJSON_Compare(b, a, true)) {
        add(d, b, a);
    }
    d->path[len] = '\0';
}


static void
walk(diff_t *d, const cJSON *before, const cJSON *after, int depth)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, after) {
        member(d, m->string, cJSON_GetObjectItemCaseSensitive(before, m->string), m, depth);
    }
    cJSON_ArrayForEach(m, before) {
        if (cJSON_GetObjectItemCaseSensitive(after, m->string) == NULL) {
            member(d, m->string, m, NULL, depth);
        }
    }
}


/* the secrets body set: a password, or a string where after shows the mask */
static void
secrets(diff_t *d, const cJSON *body, const cJSON *after, int depth)
{
    const cJSON *m;

    cJSON_ArrayForEach(m, body) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(after, m->string);
        bool         set = cJSON_IsString(m) && strcmp(m->valuestring, DIFF_MASK) != 0;
        int          len;

        if (strcmp(m->string, "oldPassword") == 0) {
            continue;
        }
        len = push(d, m->string);
        if (len < 0) {
            continue;
        }
        if (set && (named(m->string, secret_names)
                    || (cJSON_IsString(a) && strcmp(a->valuestring, DIFF_MASK) == 0)))
        {
            add_masked(d);
        } else if (cJSON_IsObject(m) && depth < DIFF_MAX_DEPTH) {
            secrets(d, m, a, depth + 1);
        }
        d->path[len] = '\0';
    }
}


cJSON *
diff_changes(const cJSON *before, const cJSON *after, const cJSON *body)
{
    diff_t d = { .changes = cJSON_CreateObject(), .create = !cJSON_IsObject(before) };

    if (d.changes == NULL) {
        return NULL;
    }
    walk(&d, cJSON_IsObject(before) ? before : NULL, cJSON_IsObject(after) ? after : NULL, 0);
    if (cJSON_IsObject(body)) {
        secrets(&d, body, cJSON_IsObject(after) ? after : NULL, 0);
    }
    return d.changes;
}
