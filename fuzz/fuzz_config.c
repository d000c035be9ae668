/*
 * libFuzzer target of vmx_config.  The input is a snapshot.  Compiling must
 * never crash: it fails as a whole with a message, or gives a result whose
 * problems are listed within their bound, whose references all point into
 * the result, and whose unavailable objects say why.  Then compiled again
 * as a check (names need no address) and with an allocator that runs dry,
 * which must fail cleanly.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_config.h"

#include "fuzz_common.h"


static int
inside(const void *p, const void *base, size_t n, size_t size)
{
    return (const char *) p >= (const char *) base
           && (const char *) p < (const char *) base + n * size;
}


static void
check_timeouts(const vmx_cfg_timeouts_t *t)
{
    check(t->connect_ms <= VMX_TIMEOUT_CONNECT_MAX
          && t->first_byte_ms <= VMX_TIMEOUT_MAX
          && t->idle_ms <= VMX_TIMEOUT_MAX && t->total_ms <= VMX_TIMEOUT_MAX);
}


/* a model's prices are compiled ones, ordered, and cost no less than 0 */
static void
check_prices(const vmx_config_t *cfg, const vmx_cfg_price_t *prices)
{
    const vmx_cfg_price_t  *p, *price;

    for (p = prices; p; p = p->next) {
        check(inside(p, cfg->prices, cfg->nprices, sizeof(vmx_cfg_price_t))
              && (p->next == NULL || p->next->valid_from > p->valid_from));
    }

    price = vmx_config_price_at(prices, INT64_MAX);
    check(price == NULL || vmx_config_cost(price, INT64_MAX, 5, INT64_MAX) >= 0);
}


static void
check_result(const vmx_config_t *cfg)
{
    size_t  i, k;

    check(cfg->nproblems <= VMX_CONFIG_PROBLEMS_MAX
          && cfg->nproblems <= cfg->problems_total);

    for (i = 0; i < cfg->nproblems; i++) {
        check(memchr(cfg->problems[i].message, '\0',
                     sizeof(cfg->problems[i].message)) != NULL);
    }

    for (i = 0; i < cfg->nconnections; i++) {
        check(inside(cfg->connections[i].env, cfg->environments,
                     cfg->nenvironments, sizeof(vmx_cfg_environment_t)));
        check_timeouts(&cfg->connections[i].timeouts);
    }

    for (i = 0; i < cfg->nresources; i++) {
        const vmx_cfg_resource_t  *r = &cfg->resources[i];

        check_timeouts(&r->timeouts);

        check(r->model.connection == NULL
              || inside(r->model.connection, cfg->connections,
                        cfg->nconnections, sizeof(vmx_cfg_connection_t)));
        check_prices(cfg, r->model.prices);
        for (k = 0; k < r->nfallbacks; k++) {
            check(r->fallbacks[k].connection == NULL
                  || r->fallbacks[k].connection->env == r->env);
        }
    }

    for (i = 0; i < cfg->napi_keys; i++) {
        for (k = 0; k < cfg->api_keys[i].nresources; k++) {
            check(inside(cfg->api_keys[i].resources[k], cfg->resources,
                         cfg->nresources, sizeof(vmx_cfg_resource_t)));
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char          err[256];
    vmx_config_t  cfg;
    arena_t       arena = ARENA_UNBOUNDED;

    for (unsigned flags = 0; flags <= VMX_CONFIG_NO_ADDRESSES; flags++) {
        if (vmx_config_compile((const char *) data, size, flags, arena_alloc,
                               &arena, &cfg, err, sizeof(err))
            == 0)
        {
            check_result(&cfg);
            vmx_config_free(&cfg);
        } else {
            check(err[0] != '\0');
        }
    }

    size_t  allocs = arena.allocs;

    arena_free(&arena);

    if (allocs > 1) {
        arena_t  dry = { NULL, 0, (size_t) (data[0] % allocs) };

        if (vmx_config_compile((const char *) data, size, 0, arena_alloc, &dry,
                               &cfg, err, sizeof(err))
            == 0)
        {
            vmx_config_free(&cfg);
        }
        arena_free(&dry);
    }

    return 0;
}
