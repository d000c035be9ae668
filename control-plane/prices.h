/*
 * prices: the price table (schema 0014) in memory, for the ingestion to
 * give every usage row its cost without a query per record
 * (docs/ARCHITECTURE.md, "Cost").  The table belongs to the ingest thread:
 * prices_refresh() reloads it when prices_version moved, prices_cost()
 * reads it.
 *
 * Amounts are exact: a price is whole micro-dollars per million tokens, so
 * a cost is whole pico-dollars (1e-12 USD), summed in 128 bits.
 */

#ifndef CP_PRICES_H
#define CP_PRICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define PRICES_MAX          10000    /* rows of the table */
#define PRICES_MAX_TEXT     PRICES_TEXT(PRICES_MAX)
#define PRICES_TEXT(n)      PRICES_TEXT_(n)
#define PRICES_TEXT_(n)     #n
#define PRICES_MODEL_MAX    128      /* bytes of a model name */
#define PRICES_AMOUNT_SIZE  48       /* "<up to 26 digits>.<12 digits>" */

typedef __int128 prices_pico_t;      /* USD * 1e12 */

/* reloads the table when it changed since the last load; 0, or -1 (logged;
 * the table loaded before stays) */
int prices_refresh(db_conn_t *c);

/*
 * the cost of a usage row of provider's model at at_us (microseconds since
 * the epoch): prompt tokens at the input price (cached ones of them at the
 * cached input price), completion tokens at the output price; a count of
 * -1 is none.  The model's price is its name's, else its longest priced
 * prefix before a '-', else (a Bedrock inference profile "us.<model>") its
 * model's.  False when the model has no price then.
 */
bool prices_cost(const char *provider, size_t provider_len, const char *model,
    size_t model_len, int64_t at_us, int64_t prompt, int64_t cached, int64_t completion,
    prices_pico_t *cost);

/* cost as decimal USD without trailing zeros ("0.0025") into out; its length */
size_t prices_format(prices_pico_t cost, char out[PRICES_AMOUNT_SIZE]);

double prices_usd(prices_pico_t cost);

void prices_shutdown(void);

#endif
