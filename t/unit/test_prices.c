/*
 * Unit tests of control-plane/prices.c: a table loaded by prices_refresh()
 * from rows served here in db_exec()'s and libpq's stead, the price of a
 * name and of a dated name, the bounds of validity, cached prompt tokens,
 * no price, and amounts written exactly.
 */

#include <string.h>

#include "prices.h"
#include "unit.h"

#define SECOND  1000000LL       /* microseconds */

/* a query's rows: provider, model, validFrom (us), input, output and cached
 * input (micro-USD per million tokens), sorted as the load's ORDER BY */
struct pg_result {
    int                  nrows;
    const char *const  (*cells)[6];
};

static const char *const version_rows[][6] = { { "7" } };
static const char *const price_rows[][6] = {
    { "anthropic", "claude-sonnet-4", "0", "3000000", "15000000", "300000" },
    { "aws-bedrock", "anthropic.claude-sonnet-4-20250514-v1:0", "0", "3000000", "15000000",
      "300000" },
    { "openai", "gpt-4o", "0", "2500000", "10000000", "1250000" },
    { "openai", "gpt-4o", "1000000000", "5000000", "20000000", "5000000" },
    { "openai", "gpt-4o-mini", "0", "150000", "600000", "75000" },
    { "openai", "max", "0", "999999999999", "0", "999999999999" },
};

static PGresult  version = { 1, version_rows };
static PGresult  prices = { sizeof(price_rows) / sizeof(price_rows[0]), price_rows };
static int       loads;


PGresult *
db_exec(db_conn_t *c, const char *sql, int nparams, const char *const *params)
{
    if (strstr(sql, "prices_version") != NULL) {
        return &version;
    }
    loads++;
    return &prices;
}


int
PQntuples(const PGresult *res)
{
    return res->nrows;
}


char *
PQgetvalue(const PGresult *res, int row, int column)
{
    return (char *) res->cells[row][column];
}


void
PQclear(PGresult *res)
{
}


/* the cost of provider's model at at_us as text, "none" when it has no price */
static const char *
cost_at(const char *provider, const char *model, int64_t at_us, int64_t prompt,
    int64_t cached, int64_t completion)
{
    static char    out[PRICES_AMOUNT_SIZE];
    prices_pico_t  cost;

    if (!prices_cost(provider, strlen(provider), model, strlen(model), at_us, prompt, cached,
                     completion, &cost))
    {
        return "none";
    }
    prices_format(cost, out);
    return out;
}


static const char *
cost_of(const char *model, int64_t at_us, int64_t prompt, int64_t cached,
    int64_t completion)
{
    return cost_at("openai", model, at_us, prompt, cached, completion);
}


static void
test_refresh_once_per_version(void)
{
    CHECK(prices_refresh(NULL) == 0 && loads == 1);
    CHECK(prices_refresh(NULL) == 0 && loads == 1);     /* the same version: kept */
}


static void
test_names_and_validity(void)
{
    /* 1000 prompt tokens at 2.5 USD and 500 completion tokens at 10 USD per million */
    CHECK(strcmp(cost_of("gpt-4o", 500 * SECOND, 1000, -1, 500), "0.0075") == 0);
    CHECK(strcmp(cost_of("gpt-4o", 1000 * SECOND - 1, 1000, -1, 500), "0.0075") == 0);
    CHECK(strcmp(cost_of("gpt-4o", 1000 * SECOND, 1000, -1, 500), "0.015") == 0);
    CHECK(strcmp(cost_of("gpt-4o", -1, 1000, -1, 500), "none") == 0);

    /* a dated name takes its family's price, the longest one priced */
    CHECK(strcmp(cost_of("gpt-4o-2024-08-06", 0, 1000, -1, 500), "0.0075") == 0);
    CHECK(strcmp(cost_of("gpt-4o-mini-2024-07-18", 0, 1000, -1, 500), "0.00045") == 0);
    CHECK(strcmp(cost_of("gpt-4", 0, 1, -1, 1), "none") == 0);
    CHECK(strcmp(cost_of("gpt-4ox", 0, 1, -1, 1), "none") == 0);
    CHECK(strcmp(cost_of("-gpt-4o", 0, 1, -1, 1), "none") == 0);
    CHECK(strcmp(cost_of("-", 0, 1, -1, 1), "none") == 0);
    CHECK(strcmp(cost_of("", 0, 1, -1, 1), "none") == 0);
    CHECK(strcmp(cost_of("claude-sonnet-4", 0, 1, -1, 1), "none") == 0);  /* anthropic's */
}


static void
test_bedrock_inference_profiles(void)
{
    static const char model[] = "anthropic.claude-sonnet-4-20250514-v1:0";

    CHECK(strcmp(cost_at("aws-bedrock", model, 0, 1000, -1, 0), "0.003") == 0);
    CHECK(strcmp(cost_at("aws-bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", 0,
                         1000, -1, 0), "0.003") == 0);
    CHECK(strcmp(cost_at("aws-bedrock", "global.anthropic.claude-sonnet-4-20250514-v1:0", 0,
                         1000, -1, 0), "0.003") == 0);
    CHECK(strcmp(cost_at("aws-bedrock", "claude-sonnet-4-20250514-v1:0", 0, 1000, -1, 0),
                 "none") == 0);
    CHECK(strcmp(cost_at("aws-bedrock", "us.", 0, 1000, -1, 0), "none") == 0);
    CHECK(strcmp(cost_at("openai", "us.anthropic.claude-sonnet-4-20250514-v1:0", 0, 1000, -1,
                         0), "none") == 0);
}


static void
test_tokens(void)
{
    /* 400 of the prompt tokens read from cache at 1.25 USD per million */
    CHECK(strcmp(cost_of("gpt-4o", 0, 1000, 400, 500), "0.007") == 0);
    CHECK(strcmp(cost_of("gpt-4o", 0, 1000, 5000, 500), "0.00625") == 0);   /* at most all */
    CHECK(strcmp(cost_of("gpt-4o", 0, -1, -1, 10), "0.0001") == 0);
    CHECK(strcmp(cost_of("gpt-4o", 0, 0, -1, 0), "0") == 0);
    CHECK(strcmp(cost_of("gpt-4o", 0, 1, -1, 0), "0.0000025") == 0);
}


static void
test_exact_amounts(void)
{
    char out[PRICES_AMOUNT_SIZE];

    /* the largest prompt count at the largest price: 128 bits, no rounding */
    CHECK(strcmp(cost_of("max", 0, 9007199254740991LL, -1, 0),
                 "9007199254731983.800745259009") == 0);
    CHECK(strcmp(cost_of("max", 0, 1, -1, 0), "0.999999999999") == 0);
    CHECK(prices_format((prices_pico_t) 1000000000000LL, out) == 1 && strcmp(out, "1") == 0);
    CHECK(prices_format((prices_pico_t) 1200000000000LL, out) == 3 && strcmp(out, "1.2") == 0);
    CHECK(prices_usd((prices_pico_t) 7500000000LL) == 0.0075);
}


int
main(void)
{
    test_refresh_once_per_version();
    test_names_and_validity();
    test_bedrock_inference_profiles();
    test_tokens();
    test_exact_amounts();
    prices_shutdown();

    return UNIT_REPORT();
}
