/*
 * api_pools: the pool definition of an environment (SPEC §6), one document
 * replaced as a whole: {"pools": [{name, rank, minReservation,
 * maxReservation, resources}], "strategy": {name, windowSeconds,
 * cooldownSeconds, scaleUpPercent}}.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "validate.h"

#define POOLS_MAX  64       /* the data plane's VMX_POOLS_MAX */

#define DOC_SQL \
    "SELECT doc::text FROM pool_definition_docs" \
    " WHERE workspace_id = $1 AND environment_id = $2"

static const char *const pool_fields[] = {
    "name", "rank", "minReservation", "maxReservation", "resources", NULL
};

/* a strategy member, its bounds and its default */
static const struct {
    const char *name;
    int         min, max, value;
} strategy_fields[] = {
    { "windowSeconds",   1, 60,   30 },     /* the data plane keeps 60 s */
    { "cooldownSeconds", 0, 3600, 5 },
    { "scaleUpPercent",  1, 100,  50 },
};


static cJSON *
default_strategy(void)
{
    cJSON *s = cJSON_CreateObject();

    cJSON_AddStringToObject(s, "name", "adaptive");
    for (size_t i = 0; i < sizeof(strategy_fields) / sizeof(strategy_fields[0]); i++) {
        cJSON_AddNumberToObject(s, strategy_fields[i].name, strategy_fields[i].value);
    }
    return s;
}


static bool
is_integer(const cJSON *v, double min, double max)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble)
           && v->valuedouble >= min && v->valuedouble <= max;
}


/* the strategy of the body with defaults filled in; NULL after a 400 */
static cJSON *
validate_strategy(http_req_t *req, const cJSON *given)
{
    cJSON       *s = default_strategy();
    const cJSON *item;
    char         field[64];
    size_t       i;

    if (given == NULL || cJSON_IsNull(given)) {
        return s;
    }
    if (!cJSON_IsObject(given)) {
        http_invalid(req, "strategy", "strategy must be an object");
        goto failed;
    }
    cJSON_ArrayForEach(item, given) {
        snprintf(field, sizeof(field), "strategy.%s", item->string);
        if (strcmp(item->string, "name") == 0) {
            if (!cJSON_IsString(item) || strcmp(item->valuestring, "adaptive") != 0) {
                http_invalid(req, field, "%s must be \"adaptive\"", field);
                goto failed;
            }
            continue;
        }
        for (i = 0; i < sizeof(strategy_fields) / sizeof(strategy_fields[0]); i++) {
            if (strcmp(item->string, strategy_fields[i].name) == 0) {
                break;
            }
        }
        if (i == sizeof(strategy_fields) / sizeof(strategy_fields[0])) {
            http_invalid(req, field, "unknown field \"%s\"", field);
            goto failed;
        }
        if (!is_integer(item, strategy_fields[i].min, strategy_fields[i].max)) {
            http_invalid(req, field, "%s must be an integer from %d to %d", field,
                         strategy_fields[i].min, strategy_fields[i].max);
            goto failed;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(s, item->string,
                                               cJSON_CreateNumber(item->valuedouble));
    }
    return s;

failed:
    cJSON_Delete(s);
    return NULL;
}


/* a resource id of this environment, named by no earlier pool entry */
static bool
validate_resource(http_req_t *req, const cJSON *pools, int pi, int ri, const char *id)
{
    const char  *params[2] = { id, http_param(req, "env") };
    const cJSON *pool, *other;
    char         field[64];
    PGresult    *res = NULL;
    bool         found = false;
    int          i = 0, j;

    snprintf(field, sizeof(field), "pools[%d].resources[%d]", pi, ri);
    if (crypto_is_uuid(id)) {
        res = db_exec(req->db, "SELECT 1 FROM resources"
                               " WHERE id = $1 AND environment_id = $2", 2, params);
        if (res == NULL) {
            http_db_error(req, "resource");
            return false;
        }
        found = PQntuples(res) == 1;
        PQclear(res);
    }
    if (!found) {
        http_invalid(req, field, "%s is no resource of this environment", field);
        return false;
    }
    cJSON_ArrayForEach(pool, pools) {
        j = 0;
        cJSON_ArrayForEach(other, cJSON_GetObjectItemCaseSensitive(pool, "resources")) {
            if (i == pi && j == ri) {
                return true;
            }
            if (strcmp(other->valuestring, id) == 0) {
                http_invalid(req, field, "%s is already in pool \"%s\"", field,
                             cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(pool,
                                                                                   "name")));
                return false;
            }
            j++;
        }
        i++;
    }
    return true;
}


static bool
validate_pool(http_req_t *req, const cJSON *pools, const cJSON *pool, int pi, double *sum)
{
    const cJSON *item, *min, *max, *other;
    char         field[96];
    int          i, ri;

    if (!cJSON_IsObject(pool)) {
        snprintf(field, sizeof(field), "pools[%d]", pi);
        http_invalid(req, field, "%s must be an object", field);
        return false;
    }
    cJSON_ArrayForEach(item, pool) {
        for (i = 0; pool_fields[i] != NULL && strcmp(pool_fields[i], item->string) != 0; i++) {
            /* void */
        }
        if (pool_fields[i] == NULL) {
            snprintf(field, sizeof(field), "pools[%d].%s", pi, item->string);
            http_invalid(req, field, "unknown field \"%s\"", field);
            return false;
        }
    }

    item = cJSON_GetObjectItemCaseSensitive(pool, "name");
    snprintf(field, sizeof(field), "pools[%d].name", pi);
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0'
        || strlen(item->valuestring) > NAME_MAX_LEN)
    {
        http_invalid(req, field, "%s is required: a string of 1 to %d characters", field,
                     NAME_MAX_LEN);
        return false;
    }
    if (!val_text(req, field, item->valuestring)) {
        return false;
    }
    i = 0;
    cJSON_ArrayForEach(other, pools) {
        if (i++ == pi) {
            break;
        }
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(other, "name")),
                   item->valuestring) == 0)
        {
            http_invalid(req, field, "pool name \"%s\" appears twice", item->valuestring);
            return false;
        }
    }

    snprintf(field, sizeof(field), "pools[%d].rank", pi);
    if (!is_integer(cJSON_GetObjectItemCaseSensitive(pool, "rank"), -1e9, 1e9)) {
        http_invalid(req, field, "%s is required: an integer (lower is served first)",
                     field);
        return false;
    }

    min = cJSON_GetObjectItemCaseSensitive(pool, "minReservation");
    max = cJSON_GetObjectItemCaseSensitive(pool, "maxReservation");
    snprintf(field, sizeof(field), "pools[%d].minReservation", pi);
    if (!cJSON_IsNumber(min) || min->valuedouble < 0 || min->valuedouble > 100) {
        http_invalid(req, field, "%s is required: a percentage from 0 to 100", field);
        return false;
    }
    *sum += min->valuedouble;
    if (*sum > 100) {
        http_invalid(req, field, "the minReservation values add up to more than 100");
        return false;
    }
    snprintf(field, sizeof(field), "pools[%d].maxReservation", pi);
    if (!cJSON_IsNumber(max) || max->valuedouble < min->valuedouble
        || max->valuedouble > 100)
    {
        http_invalid(req, field, "%s is required: a percentage from minReservation to 100",
                     field);
        return false;
    }

    snprintf(field, sizeof(field), "pools[%d].resources", pi);
    item = cJSON_GetObjectItemCaseSensitive(pool, "resources");
    if (!cJSON_IsArray(item)) {
        http_invalid(req, field, "%s is required: an array of resource ids", field);
        return false;
    }
    ri = 0;
    cJSON_ArrayForEach(other, item) {
        if (!cJSON_IsString(other)) {
            snprintf(field, sizeof(field), "pools[%d].resources[%d]", pi, ri);
            http_invalid(req, field, "%s must be a resource id", field);
            return false;
        }
        if (!validate_resource(req, pools, pi, ri, other->valuestring)) {
            return false;
        }
        ri++;
    }
    return true;
}


/* the pools of the body; false after a 400 */
static bool
validate_pools(http_req_t *req, const cJSON *pools)
{
    const cJSON *pool;
    double       sum = 0;
    int          i = 0;

    if (!cJSON_IsArray(pools)) {
        http_invalid(req, "pools", "pools is required: an array of pools");
        return false;
    }
    if (cJSON_GetArraySize(pools) > POOLS_MAX) {
        http_invalid(req, "pools", "at most %d pools", POOLS_MAX);
        return false;
    }
    cJSON_ArrayForEach(pool, pools) {
        if (!validate_pool(req, pools, pool, i++, &sum)) {
            return false;
        }
    }
    return true;
}


void
api_pools_get(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };
    PGresult   *res;
    cJSON      *doc;

    res = db_exec(req->db, DOC_SQL, 2, params);
    if (res == NULL) {
        http_db_error(req, "pool definition");
        return;
    }
    if (PQntuples(res) == 1) {
        http_reply_text(req, 200, PQgetvalue(res, 0, 0));
    } else {
        /* none yet: an empty definition with the default strategy */
        doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "workspaceId", params[0]);
        cJSON_AddStringToObject(doc, "environmentId", params[1]);
        cJSON_AddArrayToObject(doc, "pools");
        cJSON_AddItemToObject(doc, "strategy", default_strategy());
        http_reply(req, 200, doc);
    }
    PQclear(res);
}


void
api_pools_put(http_req_t *req)
{
    const char  *params[4] = { http_param(req, "ws"), http_param(req, "env") };
    const cJSON *item;
    cJSON       *strategy;
    char        *pools_text, *strategy_text;
    PGresult    *res;

    cJSON_ArrayForEach(item, req->json) {
        if (strcmp(item->string, "pools") != 0 && strcmp(item->string, "strategy") != 0
            && strcmp(item->string, "workspaceId") != 0
            && strcmp(item->string, "environmentId") != 0
            && strcmp(item->string, "createdAt") != 0
            && strcmp(item->string, "updatedAt") != 0)
        {
            http_invalid(req, item->string, "unknown field \"%s\"", item->string);
            return;
        }
    }
    item = cJSON_GetObjectItemCaseSensitive(req->json, "pools");
    if (!validate_pools(req, item)) {
        return;
    }
    strategy = validate_strategy(req, cJSON_GetObjectItemCaseSensitive(req->json,
                                                                       "strategy"));
    if (strategy == NULL) {
        return;
    }

    pools_text = cJSON_PrintUnformatted(item);
    strategy_text = cJSON_PrintUnformatted(strategy);
    params[2] = pools_text;
    params[3] = strategy_text;
    res = db_exec(req->db,
                  "INSERT INTO pool_definitions (workspace_id, environment_id, pools, strategy)"
                  " VALUES ($1, $2, $3, $4)"
                  " ON CONFLICT (environment_id) DO UPDATE"
                  " SET pools = $3, strategy = $4, updated_at = now()", 4, params);
    if (res == NULL) {
        http_db_error(req, "pool definition");
    } else {
        doc_reply(req, 200, DOC_SQL, 2, params, "pool definition");
    }
    PQclear(res);
    cJSON_free(pools_text);
    cJSON_free(strategy_text);
    cJSON_Delete(strategy);
}


void
api_pools_delete(http_req_t *req)
{
    const char *params[2] = { http_param(req, "ws"), http_param(req, "env") };

    /* deleting no definition is done too: the environment has none after */
    if (db_run(req->db, "DELETE FROM pool_definitions"
                        " WHERE workspace_id = $1 AND environment_id = $2", 2, params) != 0)
    {
        http_db_error(req, "pool definition");
    } else {
        http_reply(req, 204, NULL);
    }
}
