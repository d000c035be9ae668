/*
 * capacity: validation of a data plane's entries in C, the merge in one
 * SQL statement.
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "capacity.h"
#include "crypto.h"
#include "log.h"
#include "vmx_rfc3339.h"

#define MODEL_MAX_LEN  256
#define LIMIT_MAX      1e15          /* anything larger is no real limit */

/*
 * $1: [{connectionId, model, requests, tokens, updatedAt}], validated.
 * Times are cut to milliseconds, as vmx_rfc3339() writes them, so an entry
 * read back compares equal to itself.
 */
#define MERGE_SQL \
    "WITH entry AS (" \
    "  SELECT DISTINCT ON (x.\"connectionId\", x.model) x.\"connectionId\" AS id, x.model," \
    "         x.requests, x.tokens," \
    "         date_trunc('milliseconds', x.\"updatedAt\") AS updated_at" \
    "    FROM jsonb_to_recordset($1::jsonb) AS x(\"connectionId\" uuid, model text," \
    "         requests bigint, tokens bigint, \"updatedAt\" timestamptz)" \
    "   ORDER BY x.\"connectionId\", x.model, x.\"updatedAt\" DESC" \
    "), newer AS (" \
    "  SELECT e.* FROM entry e JOIN connections c ON c.id = e.id" \
    "   WHERE coalesce((c.discovered_capacity #>> ARRAY['models', e.model, 'updatedAt'])" \
    "                  ::timestamptz < e.updated_at, true)" \
    "), merged AS (" \
    "  SELECT n.id, jsonb_object_agg(n.model, jsonb_build_object(" \
    "           'capacity', jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(" \
    "               'period', 'minute', 'requests', n.requests, 'tokens', n.tokens," \
    "               'enabled', true)))," \
    "           'updatedAt', vmx_rfc3339(n.updated_at))) AS models" \
    "    FROM newer n GROUP BY n.id" \
    ")" \
    "UPDATE connections c" \
    "   SET discovered_capacity = jsonb_set(c.discovered_capacity, '{models}'," \
    "           coalesce(c.discovered_capacity->'models', '{}') || m.models)" \
    "  FROM merged m WHERE c.id = m.id"


/* a limit member: absent or null is no limit (true, *out NULL) */
static bool
limit_ok(const cJSON *entry, const char *name, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, name);

    *out = NULL;
    if (v == NULL || cJSON_IsNull(v)) {
        return true;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > LIMIT_MAX
        || v->valuedouble != (double) (long long) v->valuedouble)
    {
        return false;
    }
    *out = v;
    return true;
}


/* the entry reduced to its valid members, NULL when it is not valid */
static cJSON *
clean_entry(const cJSON *entry)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(entry, "connectionId");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(entry, "model");
    const cJSON *updated = cJSON_GetObjectItemCaseSensitive(entry, "updatedAt");
    const cJSON *requests, *tokens;
    time_t       t;
    cJSON       *clean;

    if (!cJSON_IsString(id) || !crypto_is_uuid(id->valuestring)
        || !cJSON_IsString(model) || model->valuestring[0] == '\0'
        || strlen(model->valuestring) > MODEL_MAX_LEN
        || !cJSON_IsString(updated) || !vmx_rfc3339_parse(updated->valuestring, &t)
        || !limit_ok(entry, "requests", &requests) || !limit_ok(entry, "tokens", &tokens)
        || (requests == NULL && tokens == NULL))
    {
        return NULL;
    }
    clean = cJSON_CreateObject();
    cJSON_AddStringToObject(clean, "connectionId", id->valuestring);
    cJSON_AddStringToObject(clean, "model", model->valuestring);
    if (requests != NULL) {
        cJSON_AddNumberToObject(clean, "requests", requests->valuedouble);
    }
    if (tokens != NULL) {
        cJSON_AddNumberToObject(clean, "tokens", tokens->valuedouble);
    }
    cJSON_AddStringToObject(clean, "updatedAt", updated->valuestring);
    return clean;
}


int
capacity_merge(db_conn_t *c, const char *answer, const char *dataplane)
{
    cJSON       *doc = answer ? cJSON_Parse(answer) : NULL;
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(doc, "entries");
    const cJSON *entry;
    cJSON       *clean;
    char        *text;
    int          skipped = 0;

    if (!cJSON_IsArray(entries)) {
        cJSON_Delete(doc);
        return -1;
    }
    clean = cJSON_CreateArray();
    cJSON_ArrayForEach(entry, entries) {
        cJSON *e = clean_entry(entry);

        if (e == NULL) {
            skipped++;
        } else {
            cJSON_AddItemToArray(clean, e);
        }
    }
    cJSON_Delete(doc);
    if (skipped > 0) {
        log_debug("capacity dataplane=%s: %d malformed entries skipped", dataplane, skipped);
    }

    if (cJSON_GetArraySize(clean) > 0) {
        const char *params[1];
        PGresult   *res;

        text = cJSON_PrintUnformatted(clean);
        params[0] = text;
        res = db_exec(c, MERGE_SQL, 1, params);
        if (res != NULL && strcmp(PQcmdTuples(res), "0") != 0) {
            log_debug("capacity dataplane=%s: %s connection(s) updated", dataplane,
                      PQcmdTuples(res));
        }
        PQclear(res);
        free(text);
    }
    cJSON_Delete(clean);
    return 0;
}
