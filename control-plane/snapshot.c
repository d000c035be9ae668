/*
 * snapshot: builds the data planes' configuration.  PostgreSQL builds the
 * plain parts as JSON; this file adds what only the control plane can:
 * decrypted or assumed credentials, the effective baseUrl and the resolved
 * addresses (resolve.c: the data plane never resolves names).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "arena.h"
#include "credentials.h"
#include "log.h"
#include "providers.h"
#include "resolve.h"
#include "secrets.h"
#include "snapshot.h"
#include "vmx_config.h"

#define ENVIRONMENTS_SQL \
    "SELECT coalesce(jsonb_agg(jsonb_build_object(" \
    "  'id', id, 'workspaceId', workspace_id, 'name', name," \
    "  'storePayload', store_payload, 'auditRequired', audit_required)" \
    "  ORDER BY created_at, id), '[]')::text" \
    " FROM environments WHERE $1::uuid IS NULL OR id = $1"

#define CONNECTIONS_SQL \
    "SELECT jsonb_build_object(" \
    "  'id', id, 'workspaceId', workspace_id, 'environmentId', environment_id," \
    "  'name', name, 'provider', provider, 'allowedModels', allowed_models," \
    "  'capacity', capacity, 'timeouts', timeouts)::text, config::text, secrets::text," \
    "  id::text" \
    " FROM connections WHERE $1::uuid IS NULL OR environment_id = $1" \
    " ORDER BY created_at, id"

#define RESOURCES_SQL \
    "SELECT coalesce(jsonb_agg(jsonb_build_object(" \
    "  'id', id, 'workspaceId', workspace_id, 'environmentId', environment_id," \
    "  'name', name, 'model', model, 'fallbackModels', fallback_models," \
    "  'useFallback', use_fallback, 'secondaryModels', secondary_models," \
    "  'routing', routing, 'enforceCapacity', enforce_capacity," \
    "  'capacity', capacity, 'timeouts', timeouts) ORDER BY created_at, id), '[]')::text" \
    " FROM resources WHERE $1::uuid IS NULL OR environment_id = $1"

#define API_KEYS_SQL \
    "SELECT coalesce(jsonb_agg(jsonb_build_object(" \
    "  'id', id, 'workspaceId', workspace_id, 'environmentId', environment_id," \
    "  'name', name, 'keyHash', key_hash, 'enabled', enabled," \
    "  'resources', resources, 'labels', labels," \
    "  'enforceCapacity', enforce_capacity, 'capacity', capacity," \
    "  'expiresAt', vmx_rfc3339(expires_at), 'previousKeyHash', previous_key_hash," \
    "  'previousKeyExpiresAt', vmx_rfc3339(previous_expires_at))" \
    "  ORDER BY created_at, id), '[]')::text" \
    " FROM api_keys WHERE $1::uuid IS NULL OR environment_id = $1"

#define POOL_DEFINITIONS_SQL \
    "SELECT coalesce(jsonb_agg(jsonb_build_object(" \
    "  'environmentId', environment_id, 'pools', pools, 'strategy', strategy)" \
    "  ORDER BY created_at, environment_id), '[]')::text" \
    " FROM pool_definitions WHERE $1::uuid IS NULL OR environment_id = $1"

/*
 * Of every provider and model, the price in effect and those valid later:
 * the data plane takes each when its validFrom passes, with no push at that
 * moment.  Amounts in micro-dollars per million tokens, exact integers.
 */
#define PRICES_SQL \
    "SELECT coalesce(jsonb_agg(jsonb_build_object(" \
    "  'id', id, 'provider', provider, 'model', model," \
    "  'inputMicros', (input * 1000000)::bigint," \
    "  'outputMicros', (output * 1000000)::bigint," \
    "  'cachedInputMicros', (cached_input * 1000000)::bigint," \
    "  'validFrom', floor(extract(epoch FROM valid_from))::bigint)" \
    "  ORDER BY provider, model, valid_from), '[]')::text" \
    " FROM prices p" \
    " WHERE valid_from >= coalesce((SELECT max(q.valid_from) FROM prices q" \
    "                               WHERE q.provider = p.provider AND q.model = p.model" \
    "                                 AND q.valid_from <= now()), '-infinity')"


long long
snapshot_current_version(db_conn_t *c)
{
    PGresult  *res = db_exec(c, "SELECT version FROM config_version", 0, NULL);
    long long  v;

    if (res == NULL) {
        return -1;
    }
    v = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return v;
}


int
snapshot_bump_version(db_conn_t *c)
{
    return db_run(c, "UPDATE config_version SET version = version + 1", 0, NULL);
}


/* the connection's config.baseUrl, else its provider's default (malloc'd) */
static char *
effective_base_url(const provider_t *p, const cJSON *config)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, "baseUrl");
    const cJSON *region;
    char         url[256];

    if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
        return strdup(v->valuestring);
    }
    v = cJSON_GetObjectItemCaseSensitive(config, "endpoint");
    if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
        return strdup(v->valuestring);
    }
    if (p != NULL && p->default_base_url != NULL) {
        return strdup(p->default_base_url);
    }
    /* aws-bedrock: the runtime endpoint of the region */
    region = cJSON_GetObjectItemCaseSensitive(config, "region");
    snprintf(url, sizeof(url), "https://bedrock-runtime.%s.amazonaws.com",
             cJSON_IsString(region) ? region->valuestring : "us-east-1");
    return strdup(url);
}


/* {field: plain text} of the connection's encrypted fields */
static cJSON *
decrypt_credentials(const char *secrets_text, const char *connection_id)
{
    cJSON       *secrets = cJSON_Parse(secrets_text);
    cJSON       *credentials = cJSON_CreateObject();
    const cJSON *item;

    cJSON_ArrayForEach(item, secrets) {
        secrets_error_t  err = { 500, false, "the secret is no string" };
        char            *plain = cJSON_IsString(item)
                                 ? secrets_decrypt(item->valuestring, connection_id, &err)
                                 : NULL;

        if (plain == NULL) {
            log_error("snapshot connection=%s field=%s: cannot decrypt the secret: %s",
                      connection_id, item->string, err.message);
            continue;
        }
        cJSON_AddStringToObject(credentials, item->string, plain);
        secrets_free(plain);
    }
    cJSON_Delete(secrets);
    return credentials;
}


/* aws-bedrock: the region and the credentials of the assumed role, if any */
static void
add_aws_credentials(cJSON *conn, const cJSON *config, const char *connection_id)
{
    const cJSON *region = cJSON_GetObjectItemCaseSensitive(config, "region");
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(conn, "workspaceId");
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(conn, "environmentId");

    cJSON_AddStringToObject(conn, "region", cJSON_IsString(region) ? region->valuestring : "");
    cJSON_AddItemToObject(conn, "credentials",
                          credentials_snapshot_json(connection_id, config,
                                                    cJSON_GetStringValue(ws),
                                                    cJSON_GetStringValue(env)));
}


/* for a check, neither addresses nor credentials: what the compiler reads
 * of them cannot be wrong; scope: an environment's id, NULL for all */
static cJSON *
build_connections(db_conn_t *c, bool check, const char *const *scope)
{
    PGresult *res = db_exec(c, CONNECTIONS_SQL, 1, scope);
    cJSON    *list;

    if (res == NULL) {
        return NULL;
    }
    list = cJSON_CreateArray();
    for (int i = 0; i < PQntuples(res); i++) {
        cJSON            *conn = cJSON_Parse(PQgetvalue(res, i, 0));
        cJSON            *config = cJSON_Parse(PQgetvalue(res, i, 1));
        const char       *id = PQgetvalue(res, i, 3);
        const cJSON      *provider = cJSON_GetObjectItemCaseSensitive(conn, "provider");
        const provider_t *p = provider_find(cJSON_IsString(provider)
                                            ? provider->valuestring : "");
        char             *base_url = effective_base_url(p, config);

        cJSON_AddStringToObject(conn, "baseUrl", base_url);
        if (!check) {
            resolve_add_addresses(conn, base_url, id);
            if (p != NULL && strcmp(p->id, "aws-bedrock") == 0) {
                add_aws_credentials(conn, config, id);
            } else {
                cJSON_AddItemToObject(conn, "credentials",
                                      decrypt_credentials(PQgetvalue(res, i, 2), id));
            }
        }
        cJSON_AddItemToArray(list, conn);
        free(base_url);
        cJSON_Delete(config);
    }
    PQclear(res);
    return list;
}


/* the snapshot object in format format, of one environment or (env NULL)
 * all; NULL on error (caller deletes) */
static cJSON *
build_tree(db_conn_t *c, long long *version, int format, bool check, const char *env)
{
    const char *const  scope[1] = { env };
    cJSON             *root = cJSON_CreateObject();
    cJSON             *part;

    *version = snapshot_current_version(c);
    if (*version < 0) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddNumberToObject(root, "version", (double) *version);
    /* format 1 states none; 2 is 1 with it (vmx_config.h, "Formats") */
    if (format > 1) {
        cJSON_AddNumberToObject(root, "format", format);
    }

    if ((part = db_json(c, ENVIRONMENTS_SQL, 1, scope)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "environments", part);
    if ((part = build_connections(c, check, scope)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "connections", part);
    if ((part = db_json(c, RESOURCES_SQL, 1, scope)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "resources", part);
    if ((part = db_json(c, API_KEYS_SQL, 1, scope)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "apiKeys", part);
    if ((part = db_json(c, POOL_DEFINITIONS_SQL, 1, scope)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "poolDefinitions", part);
    if ((part = db_json(c, PRICES_SQL, 0, NULL)) == NULL) {
        goto failed;
    }
    cJSON_AddItemToObject(root, "prices", part);
    return root;

failed:
    cJSON_Delete(root);
    return NULL;
}


/* one view of the whole configuration: its version and content agree */
static int
begin_read(db_conn_t *c)
{
    return db_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
}


char *
snapshot_build(db_conn_t *c, long long *version, int format)
{
    cJSON *root;
    char  *text = NULL;

    if (begin_read(c) != 0) {
        return NULL;
    }
    root = build_tree(c, version, format, false, NULL);
    db_rollback(c);
    if (root != NULL) {
        text = cJSON_PrintUnformatted(root);
        /* cJSON frees its own copies of the credentials unwiped; the text,
         * which lives longer, is wiped by snapshot_free() */
        cJSON_Delete(root);
    }
    return text;
}


void
snapshot_free(char *snapshot)
{
    if (snapshot != NULL) {
        sodium_memzero(snapshot, strlen(snapshot));
        free(snapshot);
    }
}


/*
 * The configuration c sees compiled by the data plane's compiler, as a
 * check: no addresses, no credentials.  0, or -1 when it cannot be built.
 */
static int
compile_check(db_conn_t *c, const char *env, arena_t *arena, vmx_config_t *cfg)
{
    long long  version;
    cJSON     *root = build_tree(c, &version, VMX_CONFIG_FORMAT, true, env);
    char      *text, err[256];
    int        rc;

    if (root == NULL) {
        return -1;
    }
    /* a fresh database is at version 0; the compiler wants a positive one */
    cJSON_ReplaceItemInObject(root, "version", cJSON_CreateNumber((double) version + 1));
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (text == NULL) {
        return -1;
    }
    rc = vmx_config_compile(text, strlen(text), VMX_CONFIG_NO_ADDRESSES, arena_alloc, arena,
                            cfg, err, sizeof(err));
    free(text);
    if (rc != 0) {
        log_error("snapshot check: the configuration does not compile: %s", err);
    }
    return rc;
}


static bool
same_problem(const vmx_cfg_problem_t *a, const vmx_cfg_problem_t *b)
{
    return a->kind == b->kind && a->id.len == b->id.len
           && memcmp(a->id.data, b->id.data, a->id.len) == 0
           && strcmp(a->field, b->field) == 0 && strcmp(a->message, b->message) == 0;
}


int
snapshot_check(db_conn_t *c, const char *env, snapshot_problem_t *out)
{
    arena_t       after_arena = { NULL }, before_arena = { NULL };
    vmx_config_t  after, before;
    db_conn_t    *committed = NULL;
    bool          have_before = false;
    int           rc = 0;

    if (compile_check(c, env, &after_arena, &after) != 0) {
        arena_reset(&after_arena, true);
        return -1;
    }

    for (size_t i = 0; i < after.nproblems && rc == 0; i++) {
        const vmx_cfg_problem_t *p = &after.problems[i];

        if (!p->invalid) {
            continue;
        }
        /* problems the committed configuration already has are not this
         * change's; without a connection free to read it, all count */
        if (!have_before && committed == NULL) {
            committed = db_try_acquire();
            if (committed != NULL
                && begin_read(committed) == 0
                && compile_check(committed, env, &before_arena, &before) == 0)
            {
                have_before = true;
            }
        }
        bool known = false;

        for (size_t j = 0; have_before && j < before.nproblems && !known; j++) {
            known = same_problem(p, &before.problems[j]);
        }
        if (known) {
            continue;
        }
        snprintf(out->object, sizeof(out->object), "%s \"%.*s\"",
                 vmx_config_kind_name(p->kind), (int) (p->id.len < 80 ? p->id.len : 80),
                 p->id.data);
        snprintf(out->field, sizeof(out->field), "%s", p->field);
        snprintf(out->message, sizeof(out->message), "%s", p->message);
        rc = 1;
    }

    if (committed != NULL) {
        db_rollback(committed);
        db_release(committed);
    }
    if (have_before) {
        vmx_config_free(&before);
    }
    vmx_config_free(&after);
    arena_reset(&after_arena, true);
    arena_reset(&before_arena, true);
    return rc;
}
