/*
 * api_prices: /api/v1/prices and /{id}, the price table of the cost of
 * usage (docs/ARCHITECTURE.md, "Cost").
 *
 * A price is {id, provider, model, currency, input, output, cachedInput,
 * validFrom, validTo, createdAt, updatedAt}: USD per million tokens, exact
 * to 6 decimals (numeric(12, 6)); cachedInput null bills cached prompt
 * tokens as input.  validTo is the validFrom of the next price of the same
 * provider and model (null: none), so prices never overlap; a change of
 * price is a new price with a later validFrom.  Anybody may read the table;
 * a change reprices every workspace, so the router asks workspace:access-all
 * for it (the admin role).
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "crypto.h"
#include "log.h"
#include "prices.h"
#include "providers.h"
#include "validate.h"

#define AMOUNT_MAX     999999.999999     /* numeric(12, 6) */
#define AMOUNT_SIZE    24                /* "999999.999999" */

#define DOC_BY_ID  "SELECT doc::text FROM price_docs WHERE id = $1"

static const char *const writable[] = { "provider", "model", "currency", "input", "output",
                                        "cachedInput", "validFrom", NULL };
static const char *const readonly[] = { "validTo", NULL };

/* a price's amounts as numeric text, "" for a null cachedInput */
typedef struct {
    char  input[AMOUNT_SIZE], output[AMOUNT_SIZE], cached_input[AMOUNT_SIZE];
} amounts_t;


/* doc.field: a number of USD per 1M tokens, from 0 with at most 6 decimals,
 * as numeric text into out (a null one as "" when nullable) */
static bool
check_amount(http_req_t *req, const cJSON *doc, const char *field, bool nullable,
    char out[AMOUNT_SIZE])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, field);
    double       micro;
    long long    whole;

    out[0] = '\0';
    if (nullable && (v == NULL || cJSON_IsNull(v))) {
        return true;
    }
    /* in micro-dollars; non-negative, so adding 0.5 and truncating rounds it */
    micro = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= AMOUNT_MAX
            ? v->valuedouble * 1e6 : -1;
    whole = (long long) (micro + 0.5);
    if (micro < 0 || fabs(micro - (double) whole) > 1e-3) {
        http_invalid(req, field, "%s must be %sUSD per million tokens: a number from 0 to"
                     " %.6f with at most 6 decimals", field, nullable ? "null or " : "",
                     AMOUNT_MAX);
        return false;
    }
    snprintf(out, AMOUNT_SIZE, "%lld.%06lld", whole / 1000000, whole % 1000000);
    return true;
}


static bool
validate(http_req_t *req, cJSON *doc, const cJSON *stored, amounts_t *amounts)
{
    const cJSON *model, *currency;

    cJSON_AddStringToObject(doc, "currency", "USD");
    if (!val_merge(req, doc, stored, writable, readonly)
        || val_provider(req, doc, "provider") == NULL)
    {
        return false;
    }
    model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0'
        || strlen(model->valuestring) > PRICES_MODEL_MAX)
    {
        http_invalid(req, "model", "model is required: the provider's model name, 1 to %d"
                     " bytes", PRICES_MODEL_MAX);
        return false;
    }
    currency = cJSON_GetObjectItemCaseSensitive(doc, "currency");
    if (!cJSON_IsString(currency) || strcmp(currency->valuestring, "USD") != 0) {
        /* costs of one currency only, so that they add up */
        http_invalid(req, "currency", "currency must be \"USD\"");
        return false;
    }
    return val_text(req, "model", model->valuestring)
           && check_amount(req, doc, "input", false, amounts->input)
           && check_amount(req, doc, "output", false, amounts->output)
           && check_amount(req, doc, "cachedInput", true, amounts->cached_input)
           && val_timestamp(req, doc, "validFrom");
}


/* runs the INSERT or UPDATE sql of doc ($1 id, $2.. its members; $8 NULL
 * when validFrom is absent) and answers the stored price */
static void
store(http_req_t *req, const char *sql, const char *id, const cJSON *doc,
    const amounts_t *amounts, int status)
{
    const cJSON *valid_from = cJSON_GetObjectItemCaseSensitive(doc, "validFrom");
    const char  *params[8] = {
        id, doc_str(doc, "provider"), doc_str(doc, "model"), doc_str(doc, "currency"),
        amounts->input, amounts->output,
        amounts->cached_input[0] != '\0' ? amounts->cached_input : NULL,
        cJSON_IsString(valid_from) ? valid_from->valuestring : NULL
    };
    PGresult    *res = db_exec(req->db, sql, 8, params);

    if (res == NULL && strcmp(db_sqlstate(req->db), "23505") == 0) {
        http_error(req, 409, "conflict", "validFrom", "a price of %s %s is valid from this"
                   " time already", params[1], params[2]);
    } else if (res == NULL) {
        http_db_error(req, "price");
    } else if (strcmp(PQcmdTuples(res), "0") == 0) {
        if (status == 201) {
            http_error(req, 409, "conflict", NULL, "the price table is full (%d prices)",
                       PRICES_MAX);
        } else {
            http_not_found(req, "price");
        }
    } else {
        log_info("prices: user=%s %s price=%s %s/%s input=%s output=%s", req->username,
                 status == 201 ? "created" : "updated", id, params[1], params[2],
                 params[4], params[5]);
        doc_reply(req, status, DOC_BY_ID, 1, params, "price");
    }
    PQclear(res);
}


void
api_prices_list(http_req_t *req)
{
    const char       *params[2] = { http_query(req, "provider"), http_query(req, "model") };
    const provider_t *p = params[0] != NULL ? provider_find(params[0]) : NULL;

    if (params[0] != NULL && p == NULL) {
        http_invalid(req, "provider", "provider must be one of openai, anthropic, gemini"
                     " (or google), groq, aws-bedrock");
        return;
    }
    params[0] = p != NULL ? p->id : NULL;
    doc_reply_list(req, "SELECT doc, created_at, id FROM price_docs"
                        " WHERE ($1::text IS NULL OR provider = $1)"
                        " AND ($2::text IS NULL OR model = $2)", 2, params);
}


void
api_prices_get(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    doc_reply(req, 200, DOC_BY_ID, 1, params, "price");
}


void
api_prices_create(http_req_t *req)
{
    cJSON     *doc = cJSON_CreateObject();
    amounts_t  amounts;
    char       id[UUID_LEN + 1];

    if (validate(req, doc, NULL, &amounts)) {
        crypto_uuid_v4(id);
        store(req, "INSERT INTO prices (id, provider, model, currency, input, output,"
                   " cached_input, valid_from)"
                   " SELECT $1, $2, $3, $4, $5, $6, $7, coalesce($8::timestamptz, now())"
                   " WHERE (SELECT count(*) FROM prices) < " PRICES_MAX_TEXT,
              id, doc, &amounts, 201);
    }
    cJSON_Delete(doc);
}


void
api_prices_update(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };
    cJSON      *stored = doc_fetch(req, DOC_BY_ID, 1, params, "price");
    cJSON      *doc;
    amounts_t   amounts;

    if (stored == NULL) {
        return;
    }
    doc = cJSON_CreateObject();
    if (validate(req, doc, stored, &amounts)) {
        store(req, "UPDATE prices SET provider = $2, model = $3, currency = $4, input = $5,"
                   " output = $6, cached_input = $7,"
                   " valid_from = coalesce($8::timestamptz, valid_from), updated_at = now()"
                   " WHERE id = $1", params[0], doc, &amounts, 200);
    }
    cJSON_Delete(doc);
    cJSON_Delete(stored);
}


void
api_prices_delete(http_req_t *req)
{
    const char *params[1] = { http_param(req, "id") };

    doc_reply_delete(req, "DELETE FROM prices WHERE id = $1", 1, params, "price");
}
