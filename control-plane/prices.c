/*
 * prices: the price table of the ingest thread, sorted by provider, model
 * (byte order, as COLLATE "C") and validity start, searched by halving.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "prices.h"

#define PROVIDER_MAX  15             /* "aws-bedrock", with room */
#define MICRO         1000000

#define LOAD_SQL \
    "SELECT provider, model, (extract(epoch FROM valid_from) * 1000000)::bigint," \
    " (input * 1000000)::bigint, (output * 1000000)::bigint," \
    " (coalesce(cached_input, input) * 1000000)::bigint" \
    " FROM prices ORDER BY provider COLLATE \"C\", model COLLATE \"C\", valid_from" \
    " LIMIT " PRICES_MAX_TEXT

typedef struct {
    char     provider[PROVIDER_MAX + 1];
    char     model[PRICES_MODEL_MAX + 1];
    int64_t  valid_from;             /* microseconds since the epoch */
    int64_t  input, output, cached_input;    /* micro-USD per 1M tokens */
} price_t;

static struct {
    price_t  *rows;                  /* owned */
    size_t    n;
    char      version[24];           /* of prices_version when loaded, "" */
    bool      failing;               /* the last refresh failed (logged once) */
} table;


/* -1, logged when the previous refresh did not fail already */
static int
failed(const char *what)
{
    if (!table.failing) {
        log_error("prices: cannot %s, the prices loaded before stay in use", what);
        table.failing = true;
    }
    return -1;
}


int
prices_refresh(db_conn_t *c)
{
    PGresult *res;
    price_t  *rows;
    int       n;

    /* the version first: a change between the two reads loads again next time */
    res = db_exec(c, "SELECT version FROM prices_version", 0, NULL);
    if (res == NULL || PQntuples(res) != 1) {
        PQclear(res);
        return failed("read prices_version");
    }
    if (strcmp(PQgetvalue(res, 0, 0), table.version) == 0) {
        PQclear(res);
        table.failing = false;
        return 0;
    }
    snprintf(table.version, sizeof(table.version), "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    res = db_exec(c, LOAD_SQL, 0, NULL);
    n = res != NULL ? PQntuples(res) : 0;
    rows = res != NULL ? calloc(n > 0 ? (size_t) n : 1, sizeof(price_t)) : NULL;
    if (rows == NULL) {
        table.version[0] = '\0';
        PQclear(res);
        return failed("load the price table");
    }
    for (int i = 0; i < n; i++) {
        price_t *p = &rows[i];

        snprintf(p->provider, sizeof(p->provider), "%s", PQgetvalue(res, i, 0));
        snprintf(p->model, sizeof(p->model), "%s", PQgetvalue(res, i, 1));
        p->valid_from = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        p->input = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        p->output = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        p->cached_input = strtoll(PQgetvalue(res, i, 5), NULL, 10);
    }
    PQclear(res);
    free(table.rows);
    table.rows = rows;
    table.n = (size_t) n;
    table.failing = false;
    log_info("prices: %d price(s) loaded, version %s", n, table.version);
    return 0;
}


/* s (NUL-terminated) against k of klen bytes, as memcmp orders them */
static int
key_cmp(const char *s, const char *k, size_t klen)
{
    size_t slen = strlen(s);
    int    r = memcmp(s, k, slen < klen ? slen : klen);

    return r != 0 ? r : (slen > klen) - (slen < klen);
}


static int
row_cmp(const price_t *p, const char *provider, size_t plen, const char *model, size_t mlen)
{
    int r = key_cmp(p->provider, provider, plen);

    return r != 0 ? r : key_cmp(p->model, model, mlen);
}


/* the price of exactly this provider and model valid at at_us, NULL when none */
static const price_t *
find(const char *provider, size_t plen, const char *model, size_t mlen, int64_t at_us)
{
    const price_t *valid = NULL;
    size_t         lo = 0, hi = table.n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (row_cmp(&table.rows[mid], provider, plen, model, mlen) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    /* its rows in validity order: the last one started by then */
    for ( ; lo < table.n && row_cmp(&table.rows[lo], provider, plen, model, mlen) == 0
            && table.rows[lo].valid_from <= at_us; lo++)
    {
        valid = &table.rows[lo];
    }
    return valid;
}


/* the price of the name, else of its longest prefix ending before a '-' (a
 * dated name); NULL when none */
static const price_t *
lookup(const char *provider, size_t plen, const char *model, size_t mlen, int64_t at_us)
{
    const price_t *p;

    while ((p = find(provider, plen, model, mlen, at_us)) == NULL) {
        while (mlen > 0 && model[mlen - 1] != '-') {
            mlen--;
        }
        if (mlen <= 1) {
            return NULL;
        }
        mlen--;
    }
    return p;
}


bool
prices_cost(const char *provider, size_t provider_len, const char *model, size_t model_len,
    int64_t at_us, int64_t prompt, int64_t cached, int64_t completion, prices_pico_t *cost)
{
    const price_t *p = lookup(provider, provider_len, model, model_len, at_us);
    const char    *dot = memchr(model, '.', model_len);
    size_t         skip = dot != NULL ? (size_t) (dot - model) + 1 : 0;

    /* a Bedrock cross-region inference profile ("us.anthropic.claude-...")
     * costs as the model it names */
    if (p == NULL && dot != NULL && memchr(dot + 1, '.', model_len - skip) != NULL
        && key_cmp("aws-bedrock", provider, provider_len) == 0)
    {
        p = lookup(provider, provider_len, model + skip, model_len - skip, at_us);
    }
    if (p == NULL) {
        return false;
    }
    prompt = prompt > 0 ? prompt : 0;
    cached = cached > 0 ? (cached < prompt ? cached : prompt) : 0;
    completion = completion > 0 ? completion : 0;
    *cost = (prices_pico_t) (prompt - cached) * p->input
            + (prices_pico_t) cached * p->cached_input
            + (prices_pico_t) completion * p->output;
    return true;
}


size_t
prices_format(prices_pico_t cost, char out[PRICES_AMOUNT_SIZE])
{
    const prices_pico_t  unit = (prices_pico_t) MICRO * MICRO;
    unsigned long long   frac = (unsigned long long) (cost % unit);
    size_t               len;

    len = (size_t) snprintf(out, PRICES_AMOUNT_SIZE, "%llu.%012llu",
                            (unsigned long long) (cost / unit), frac);
    while (out[len - 1] == '0') {
        len--;
    }
    if (out[len - 1] == '.') {
        len--;
    }
    out[len] = '\0';
    return len;
}


double
prices_usd(prices_pico_t cost)
{
    return (double) cost / 1e12;
}


void
prices_shutdown(void)
{
    free(table.rows);
    memset(&table, 0, sizeof(table));
}
