/*
 * vmx_config: the compiler of a configuration snapshot.
 *
 * The control plane builds a snapshot (JSON: version, environments,
 * connections, resources, apiKeys, poolDefinitions, prices;
 * docs/ARCHITECTURE.md,
 * "Snapshot") and pushes it to every data plane.  The same code compiles it
 * in both: the data plane to run it, the control plane before it commits a
 * change, so that the API refuses what a data plane would not run.
 *
 * ONE BAD OBJECT NEVER STOPS THE OTHERS
 *
 * Only a text that is no snapshot at all (not JSON, no version, a section
 * that is no array) fails as a whole.  Every other fault is a problem of
 * one object, listed with the object's kind, id, field and a message, and
 * confined to that object:
 *   - an environment, API key, pool definition or price with a problem is
 *     left out (a key left out is refused: the safe side; a model without
 *     its price is outside the budgets);
 *   - a connection or a resource with a problem stays, marked unavailable
 *     with the reason, when its id and environment are known: an attempt on
 *     an unavailable connection fails over with that reason, a request for
 *     an unavailable resource is answered 503 with it;
 *   - a reference to an object that is not there (a model's connection, an
 *     API key's or a pool's resource) is a problem of the referring object:
 *     a target without a connection is unavailable, a missing resource is
 *     dropped from the key or pool.
 * A problem is "invalid" when the object itself is wrong (the API refuses
 * it), or not when it depends on this machine: a host that did not resolve
 * (the control plane sends "resolveError"), which the next snapshot heals.
 *
 * FORMATS
 *
 * A snapshot states its format ("format", absent in format 1, which had
 * none).  The compiler reads its own format and the one before, so that
 * during a rollout a control plane of the previous release still configures
 * a new data plane; a newer format is refused whole (VMX_CONFIG_EFORMAT,
 * the running snapshot stays).  The data plane states the formats it reads
 * and the control plane builds the newest of them it knows.  Format 2 is
 * format 1 with "format"; a format that changes a section's meaning bumps
 * VMX_CONFIG_FORMAT and keeps reading the one before.  An optional section
 * or member an older reader may ignore does not ("prices", a capacity
 * entry's "cost": an older data plane enforces no budget, and refuses
 * nothing else).
 *
 * MEMORY
 *
 * Everything comes from the caller's allocator, as vmx_json's does, and
 * points into the parsed text, which must outlive the result.  Compiled
 * routing rules also hold regex JIT code: vmx_config_free() releases it.
 */

#ifndef VMX_CONFIG_H
#define VMX_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "vmx_json.h"
#include "vmx_pools.h"
#include "vmx_rules.h"


#define VMX_CONFIG_PROBLEMS_MAX   64        /* listed; all are counted */
#define VMX_CONFIG_FIELD_MAX      (VMX_RULES_PATH_MAX + 32)
#define VMX_CONFIG_MESSAGE_MAX    320
#define VMX_CONFIG_PRICES_MAX     10000     /* rows of "prices" compiled */
#define VMX_CONFIG_PRICE_MAX      1000000000000LL  /* µUSD per 1M tokens */
#define VMX_CONFIG_COST_MAX       1000000000000000LL  /* µUSD of a budget */

#define VMX_CONFIG_FORMAT         2         /* the newest format read */
#define VMX_CONFIG_FORMAT_OLDEST  1         /* the oldest */

#define VMX_CONFIG_EFORMAT        -2        /* a format not read */

/* flags */
#define VMX_CONFIG_NO_ADDRESSES   0x01      /* a check: names need no address */


typedef enum {
    VMX_PROVIDER_OPENAI = 1,
    VMX_PROVIDER_GROQ,
    VMX_PROVIDER_ANTHROPIC,
    VMX_PROVIDER_GEMINI,
    VMX_PROVIDER_BEDROCK
} vmx_provider_e;


typedef enum {
    VMX_PERIOD_MINUTE = 0,
    VMX_PERIOD_HOUR,
    VMX_PERIOD_DAY,
    VMX_PERIOD_WEEK,
    VMX_PERIOD_MONTH,
    VMX_PERIOD_LIFETIME
} vmx_period_e;


typedef struct {
    const char                  *data;      /* not NUL-terminated */
    size_t                       len;
} vmx_cfg_str_t;


/*
 * a capacity entry: requests, tokens and cost (micro-dollars) per period,
 * -1 when not limited
 */
typedef struct {
    vmx_period_e                 period;
    int64_t                      requests;
    int64_t                      tokens;
    int64_t                      cost;
    unsigned                     per_address:1;     /* "source-ip" */
} vmx_cfg_limit_t;


/*
 * A provider call's time limits, in milliseconds, 0 where not set: a
 * resource's override its connection's, which override the data plane's
 * defaults.  connectMs bounds the TCP and TLS set-up, firstByteMs the wait
 * for the provider's response header, idleMs a gap between two reads after
 * it, totalMs the whole attempt.
 */
#define VMX_TIMEOUT_CONNECT_MAX   60000
#define VMX_TIMEOUT_MAX           3600000

typedef struct {
    uint32_t                     connect_ms;
    uint32_t                     first_byte_ms;
    uint32_t                     idle_ms;
    uint32_t                     total_ms;
} vmx_cfg_timeouts_t;


typedef struct {
    vmx_cfg_str_t                id;
    vmx_cfg_str_t                workspace_id;
    vmx_cfg_str_t                name;
    unsigned                     store_payload:1;
    unsigned                     audit_required:1;
} vmx_cfg_environment_t;


typedef struct {
    vmx_cfg_str_t                id;
    vmx_cfg_str_t                name;
    const vmx_cfg_environment_t *env;
    vmx_cfg_str_t                provider;
    vmx_provider_e               provider_id;       /* 0 when unknown */

    vmx_cfg_str_t                base_url;
    vmx_cfg_str_t                host;              /* without IPv6 brackets */
    vmx_cfg_str_t                host_header;       /* host[:port] */
    vmx_cfg_str_t                base_path;         /* without trailing "/" */
    uint16_t                     port;
    unsigned                     https:1;

    /* "ip:port" or "[ip6]:port" (IP literals), or the host itself when it
     * is one */
    vmx_cfg_str_t               *addresses;
    size_t                       naddresses;

    vmx_cfg_str_t                api_key;
    vmx_cfg_str_t                access_key_id;
    vmx_cfg_str_t                secret_key;
    vmx_cfg_str_t                session_token;
    vmx_cfg_str_t                region;

    vmx_cfg_str_t               *allowed_models;
    size_t                       nallowed_models;
    vmx_cfg_limit_t             *limits;
    size_t                       nlimits;
    vmx_cfg_timeouts_t           timeouts;

    const char                  *unavailable;       /* why, or NULL */
} vmx_cfg_connection_t;


/*
 * A model's price from valid_from (epoch s) on, in micro-dollars per
 * million tokens (so pico-dollars per token): the rows of one provider and
 * priced name, chained by valid_from, the earliest first.
 */
typedef struct vmx_cfg_price_s  vmx_cfg_price_t;

struct vmx_cfg_price_s {
    vmx_cfg_str_t                provider;
    vmx_cfg_str_t                model;
    int64_t                      valid_from;
    int64_t                      input;
    int64_t                      output;
    int64_t                      cached_input;      /* -1: as input */
    const vmx_cfg_price_t       *next;              /* valid from later */
};


typedef struct {
    vmx_cfg_str_t                provider;
    vmx_cfg_str_t                model;
    vmx_cfg_str_t                connection_id;
    const vmx_cfg_connection_t  *connection;        /* NULL: not there */
    const vmx_cfg_price_t       *prices;            /* NULL: none */
} vmx_cfg_target_t;


typedef struct vmx_cfg_pool_s  vmx_cfg_pool_t;

typedef struct {
    vmx_cfg_str_t                id;
    vmx_cfg_str_t                name;
    const vmx_cfg_environment_t *env;
    vmx_cfg_target_t             model;
    vmx_cfg_target_t            *fallbacks;
    size_t                       nfallbacks;
    vmx_cfg_target_t            *secondaries;
    size_t                       nsecondaries;
    vmx_cfg_limit_t             *limits;            /* when enforceCapacity */
    size_t                       nlimits;
    vmx_rules_t                 *rules;             /* when active */
    const vmx_cfg_pool_t        *pool;              /* prioritization */
    vmx_cfg_timeouts_t           timeouts;          /* over its models' */
    unsigned                     use_fallback:1;

    const char                  *unavailable;       /* why, or NULL */
} vmx_cfg_resource_t;


typedef struct {
    vmx_cfg_str_t                id;
    vmx_cfg_str_t                name;
    const vmx_cfg_environment_t *env;
    unsigned char                hash[32];          /* SHA-256 of the key */
    const vmx_cfg_resource_t   **resources;         /* the ones it may call */
    size_t                       nresources;
    vmx_cfg_limit_t             *limits;            /* when enforceCapacity */
    size_t                       nlimits;
    const vmx_json_t            *labels;            /* an object, or NULL */
    int64_t                      expires_at;        /* epoch s, 0: never */
    /* the key a rotation replaced, until then; 0: none */
    unsigned char                previous_hash[32];
    int64_t                      previous_expires_at;
    unsigned                     enabled:1;
} vmx_cfg_api_key_t;


typedef struct vmx_cfg_pool_def_s  vmx_cfg_pool_def_t;

struct vmx_cfg_pool_s {
    vmx_cfg_str_t                name;
    int64_t                      rank;
    int64_t                      min;               /* basis points */
    int64_t                      max;
    const vmx_cfg_pool_def_t    *def;
};

struct vmx_cfg_pool_def_s {
    const vmx_cfg_environment_t *env;
    vmx_cfg_pool_t              *pools;
    size_t                       npools;
    vmx_pool_strategy_t          strategy;
};


typedef enum {
    VMX_CFG_ENVIRONMENT = 0,
    VMX_CFG_CONNECTION,
    VMX_CFG_RESOURCE,
    VMX_CFG_API_KEY,
    VMX_CFG_POOL_DEFINITION,
    VMX_CFG_PRICE
} vmx_cfg_kind_e;


typedef struct {
    vmx_cfg_kind_e               kind;
    size_t                       index;             /* in its section */
    vmx_cfg_str_t                id;                /* "" when it has none */
    char                         field[VMX_CONFIG_FIELD_MAX];   /* "" all */
    char                         message[VMX_CONFIG_MESSAGE_MAX];
    unsigned                     invalid:1;
    unsigned                     left_out:1;        /* not in the result */
} vmx_cfg_problem_t;


typedef struct {
    uint64_t                     version;
    int64_t                      format;    /* also when VMX_CONFIG_EFORMAT */

    vmx_cfg_environment_t       *environments;
    size_t                       nenvironments;
    vmx_cfg_connection_t        *connections;
    size_t                       nconnections;
    vmx_cfg_resource_t          *resources;
    size_t                       nresources;
    vmx_cfg_api_key_t           *api_keys;
    size_t                       napi_keys;
    vmx_cfg_pool_def_t          *pool_defs;
    size_t                       npool_defs;
    vmx_cfg_price_t             *prices;
    size_t                       nprices;

    vmx_cfg_problem_t           *problems;          /* the first ones */
    size_t                       nproblems;
    size_t                       problems_total;
} vmx_config_t;


/*
 * Compiles the snapshot text.  Returns 0 (problems of single objects are in
 * cfg->problems), VMX_CONFIG_EFORMAT with a message in err when its format
 * is not one this compiler reads (cfg->version and cfg->format are set), or
 * -1 with a message in err when the text is no snapshot or alloc fails.
 */
int vmx_config_compile(const char *text, size_t len, unsigned flags,
    vmx_json_alloc_pt alloc, void *alloc_ctx, vmx_config_t *cfg,
    char *err, size_t err_size);

/* releases what the allocator does not hold (routing regexes) */
void vmx_config_free(vmx_config_t *cfg);

/*
 * The price of a model's chain in effect at now (epoch s), NULL when none
 * is yet.
 */
const vmx_cfg_price_t *vmx_config_price_at(const vmx_cfg_price_t *prices,
    int64_t now);

/*
 * The cost in micro-dollars, rounded up, of prompt tokens (cached ones of
 * them at the cached price) and completion tokens at price.
 */
int64_t vmx_config_cost(const vmx_cfg_price_t *price, int64_t prompt,
    int64_t cached, int64_t completion);

/* "environment", "connection", "resource", "apiKey", "poolDefinition",
 * "price" */
const char *vmx_config_kind_name(vmx_cfg_kind_e kind);

#endif /* VMX_CONFIG_H */
