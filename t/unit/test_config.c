/*
 * vmx_config: a snapshot compiles whole, and one bad object is confined to
 * itself: the others compile, its problem names it and its field.
 */

#include <stdarg.h>

#include "vmx_config.h"
#include "unit.h"


#define ENV   "{\"id\":\"e1\",\"workspaceId\":\"w1\",\"name\":\"prod\"}"
#define ENV2  "{\"id\":\"e2\",\"workspaceId\":\"w2\",\"name\":\"b\"}"
#define CONN  "{\"id\":\"c1\",\"environmentId\":\"e1\",\"name\":\"oa\"," \
              "\"provider\":\"openai\",\"baseUrl\":\"https://api.openai.com/v1/\"," \
              "\"addresses\":[\"162.159.140.245:443\"],\"credentials\":{\"apiKey\":\"sk\"}}"
#define RES   "{\"id\":\"r1\",\"environmentId\":\"e1\",\"name\":\"chat\"," \
              "\"model\":{\"provider\":\"openai\",\"model\":\"gpt-4o\",\"connectionId\":\"c1\"}}"
#define KEY   "{\"id\":\"k1\",\"environmentId\":\"e1\",\"name\":\"k\",\"keyHash\":" \
              "\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"," \
              "\"resources\":[\"r1\"]}"


static vmx_config_t  cfg;
static char          err[256];


static int
compile(unsigned flags, const char *fmt, ...)
{
    static char  text[16384];
    va_list      args;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);

    unit_free_all();
    err[0] = '\0';

    return vmx_config_compile(text, strlen(text), flags, unit_alloc, NULL,
                              &cfg, err, sizeof(err));
}


static const vmx_cfg_problem_t *
find_problem(vmx_cfg_kind_e kind, const char *id)
{
    for (size_t i = 0; i < cfg.nproblems; i++) {
        if (cfg.problems[i].kind == kind
            && cfg.problems[i].id.len == strlen(id)
            && memcmp(cfg.problems[i].id.data, id, strlen(id)) == 0)
        {
            return &cfg.problems[i];
        }
    }

    return NULL;
}


static void
test_whole(void)
{
    CHECK(compile(0, "{\"version\":7,\"environments\":[" ENV "],\"connections\":["
                  CONN "],\"resources\":[" RES "],\"apiKeys\":[" KEY "],"
                  "\"poolDefinitions\":[{\"environmentId\":\"e1\",\"pools\":[{\"name\":"
                  "\"p\",\"rank\":1,\"minReservation\":10,\"maxReservation\":50.5,"
                  "\"resources\":[\"r1\"]}]}]}") == 0);
    CHECK(cfg.version == 7);
    CHECK(cfg.nproblems == 0 && cfg.problems_total == 0);
    CHECK(cfg.nenvironments == 1 && cfg.nconnections == 1 && cfg.nresources == 1
          && cfg.napi_keys == 1 && cfg.npool_defs == 1);

    vmx_cfg_connection_t *c = &cfg.connections[0];
    CHECK(c->provider_id == VMX_PROVIDER_OPENAI && c->https && c->port == 443);
    CHECK_MEM(c->host.data, c->host.len, "api.openai.com");
    CHECK_MEM(c->base_path.data, c->base_path.len, "/v1");
    CHECK(c->naddresses == 1 && c->unavailable == NULL);
    CHECK_MEM(c->api_key.data, c->api_key.len, "sk");

    vmx_cfg_resource_t *r = &cfg.resources[0];
    CHECK(r->model.connection == c && r->use_fallback && r->unavailable == NULL);
    CHECK(r->pool == &cfg.pool_defs[0].pools[0]);
    CHECK(cfg.pool_defs[0].pools[0].min == 1000 && cfg.pool_defs[0].pools[0].max == 5050);

    vmx_cfg_api_key_t *k = &cfg.api_keys[0];
    CHECK(k->nresources == 1 && k->resources[0] == r && k->enabled);
    CHECK(k->hash[0] == 0x00 && k->hash[1] == 0x11 && k->hash[31] == 0xff);
    vmx_config_free(&cfg);
}


static void
test_not_a_snapshot(void)
{
    CHECK(compile(0, "{\"version\":1,") == -1 && strstr(err, "invalid JSON"));
    CHECK(compile(0, "[]") == -1);
    CHECK(compile(0, "{\"version\":0,\"environments\":[],\"connections\":[],"
                  "\"resources\":[],\"apiKeys\":[],\"poolDefinitions\":[]}") == -1);
    CHECK(compile(0, "{\"version\":1,\"environments\":{},\"connections\":[],"
                  "\"resources\":[],\"apiKeys\":[],\"poolDefinitions\":[]}") == -1
          && strstr(err, "environments"));
}


/* a snapshot states its format; the previous format (none stated) is read,
 * a newer one is refused whole */
static void
test_format(void)
{
#define EMPTY "\"environments\":[],\"connections\":[],\"resources\":[]," \
              "\"apiKeys\":[],\"poolDefinitions\":[]}"

    CHECK(compile(0, "{\"version\":3," EMPTY) == 0 && cfg.format == 1);
    CHECK(compile(0, "{\"version\":3,\"format\":%d," EMPTY, VMX_CONFIG_FORMAT) == 0
          && cfg.format == VMX_CONFIG_FORMAT);
    CHECK(compile(0, "{\"version\":4,\"format\":%d," EMPTY, VMX_CONFIG_FORMAT + 1)
          == VMX_CONFIG_EFORMAT
          && cfg.version == 4 && cfg.format == VMX_CONFIG_FORMAT + 1
          && strstr(err, "snapshot format 3 is not read here (formats 1 to 2)"));
    CHECK(compile(0, "{\"version\":4,\"format\":\"2\"," EMPTY) == -1
          && strstr(err, "\"format\""));
    CHECK(compile(0, "{\"version\":4,\"format\":0," EMPTY) == -1);
#undef EMPTY
}


/* a host that did not resolve makes its connection unavailable, the rest
 * (a key of another environment) compiles */
static void
test_unresolved_host(void)
{
    CHECK(compile(0, "{\"version\":2,\"environments\":[" ENV "," ENV2 "],"
                  "\"connections\":[" CONN ",{\"id\":\"c2\",\"environmentId\":\"e2\","
                  "\"name\":\"vllm\",\"provider\":\"openai\",\"baseUrl\":"
                  "\"http://vllm-typo.internal:8000/v1\",\"addresses\":[],"
                  "\"resolveError\":\"Name or service not known\"}],"
                  "\"resources\":[" RES ",{\"id\":\"r2\",\"environmentId\":\"e2\","
                  "\"name\":\"chat\",\"model\":{\"provider\":\"openai\",\"model\":\"m\","
                  "\"connectionId\":\"c2\"}}],\"apiKeys\":[" KEY "],"
                  "\"poolDefinitions\":[]}") == 0);
    CHECK(cfg.nconnections == 2 && cfg.nresources == 2 && cfg.napi_keys == 1);
    CHECK(cfg.connections[0].unavailable == NULL);
    CHECK(cfg.connections[1].unavailable != NULL
          && strstr(cfg.connections[1].unavailable, "vllm-typo.internal")
          && strstr(cfg.connections[1].unavailable, "Name or service not known"));

    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_CONNECTION, "c2");
    CHECK(p != NULL && !p->invalid && !p->left_out && strcmp(p->field, "baseUrl") == 0);

    /* the resource stays available: its attempt fails over at run time */
    CHECK(cfg.resources[1].unavailable == NULL
          && cfg.resources[1].model.connection == &cfg.connections[1]);
    vmx_config_free(&cfg);

    /* a check by the control plane: names need no address */
    CHECK(compile(VMX_CONFIG_NO_ADDRESSES, "{\"version\":2,\"environments\":["
                  ENV "],\"connections\":[{\"id\":\"c2\",\"environmentId\":\"e1\","
                  "\"name\":\"v\",\"provider\":\"groq\",\"baseUrl\":"
                  "\"https://api.groq.com/openai/v1\"}],\"resources\":[],"
                  "\"apiKeys\":[],\"poolDefinitions\":[]}") == 0);
    CHECK(cfg.nproblems == 0 && cfg.connections[0].unavailable == NULL);
}


static void
test_bad_connection(void)
{
    CHECK(compile(0, "{\"version\":3,\"environments\":[" ENV "],\"connections\":["
                  "{\"id\":\"c1\",\"environmentId\":\"e1\",\"name\":\"x\","
                  "\"provider\":\"nope\",\"baseUrl\":\"ftp://x\"},"
                  "{\"id\":\"c3\",\"environmentId\":\"e9\",\"name\":\"y\","
                  "\"provider\":\"openai\",\"baseUrl\":\"http://10.0.0.1\"},"
                  "{\"id\":\"c4\",\"environmentId\":\"e1\",\"name\":\"z\","
                  "\"provider\":\"openai\",\"baseUrl\":\"http://h\\r\\nX: y\"},"
                  "{\"id\":\"c5\",\"environmentId\":\"e1\",\"name\":\"w\","
                  "\"provider\":\"openai\",\"baseUrl\":\"http://[::1]:8080/v1\"}],"
                  "\"resources\":[" RES "],\"apiKeys\":[],\"poolDefinitions\":[]}") == 0);

    /* c1: kept, unavailable, both faults listed; c3: left out */
    CHECK(cfg.nconnections == 3);
    CHECK(cfg.connections[0].unavailable != NULL);
    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_CONNECTION, "c1");
    CHECK(p != NULL && p->invalid && strcmp(p->field, "provider") == 0);
    p = find_problem(VMX_CFG_CONNECTION, "c3");
    CHECK(p != NULL && p->left_out && strcmp(p->field, "environmentId") == 0);
    p = find_problem(VMX_CFG_CONNECTION, "c4");
    CHECK(p != NULL && strcmp(p->field, "baseUrl") == 0);
    CHECK(cfg.connections[2].unavailable == NULL && cfg.connections[2].port == 8080
          && cfg.connections[2].naddresses == 1);
    CHECK_MEM(cfg.connections[2].host.data, cfg.connections[2].host.len, "::1");

    /* r1's connection is unavailable: the resource runs, its attempt fails */
    CHECK(cfg.nresources == 1 && cfg.resources[0].unavailable == NULL);
    vmx_config_free(&cfg);
}


static void
test_bad_resource(void)
{
    CHECK(compile(0, "{\"version\":4,\"environments\":[" ENV "],\"connections\":["
                  CONN "],\"resources\":["
                  "{\"id\":\"r1\",\"environmentId\":\"e1\",\"name\":\"chat\",\"model\":"
                  "{\"provider\":\"openai\",\"model\":\"m\",\"connectionId\":\"c1\"},"
                  "\"routing\":{\"enabled\":true,\"conditions\":\"x\"}},"
                  "{\"id\":\"r2\",\"environmentId\":\"e1\",\"name\":\"other\",\"model\":"
                  "{\"provider\":\"openai\",\"model\":\"m\",\"connectionId\":\"gone\"},"
                  "\"fallbackModels\":[{\"provider\":\"openai\",\"model\":\"m\","
                  "\"connectionId\":\"c1\"}]},"
                  "{\"id\":\"r3\",\"environmentId\":\"e1\",\"name\":\"chat\",\"model\":"
                  "{\"provider\":\"openai\",\"model\":\"m\",\"connectionId\":\"c1\"}}],"
                  "\"apiKeys\":[" KEY ",{\"id\":\"k2\",\"environmentId\":\"e1\",\"name\":"
                  "\"k\",\"keyHash\":\"zz\"},{\"id\":\"k3\",\"environmentId\":\"e1\","
                  "\"name\":\"k\",\"keyHash\":\"0000000000000000000000000000000000000000"
                  "000000000000000000000000\",\"resources\":[\"r9\"]}],"
                  "\"poolDefinitions\":[]}") == 0);

    /* r1: bad routing, unavailable with the rule's path in the field */
    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_RESOURCE, "r1");
    CHECK(p != NULL && p->invalid && strncmp(p->field, "routing", 7) == 0);
    CHECK(cfg.resources[0].unavailable != NULL);

    /* r2: its model's connection is not there; it stays, its fallback runs */
    p = find_problem(VMX_CFG_RESOURCE, "r2");
    CHECK(p != NULL && strcmp(p->field, "model.connectionId") == 0);
    CHECK(cfg.resources[1].unavailable == NULL && cfg.resources[1].model.connection == NULL
          && cfg.resources[1].nfallbacks == 1);

    /* r3: the same name twice in an environment: left out */
    p = find_problem(VMX_CFG_RESOURCE, "r3");
    CHECK(p != NULL && p->left_out && strcmp(p->field, "name") == 0);
    CHECK(cfg.nresources == 2);

    /* k2 left out; k3's only resource is not there: left out, never widened */
    CHECK(cfg.napi_keys == 1);
    CHECK(find_problem(VMX_CFG_API_KEY, "k2") != NULL);
    p = find_problem(VMX_CFG_API_KEY, "k3");
    CHECK(p != NULL && p->left_out);
    vmx_config_free(&cfg);
}


static void
test_bad_pool(void)
{
    CHECK(compile(0, "{\"version\":5,\"environments\":[" ENV "],\"connections\":["
                  CONN "],\"resources\":[" RES "],\"apiKeys\":[],\"poolDefinitions\":["
                  "{\"environmentId\":\"e1\",\"pools\":[{\"name\":\"a\",\"rank\":1,"
                  "\"minReservation\":0,\"maxReservation\":50,\"resources\":[\"r1\"]},"
                  "{\"name\":\"b\",\"rank\":2,\"minReservation\":60,\"maxReservation\":50,"
                  "\"resources\":[]}]}]}") == 0);
    CHECK(cfg.npool_defs == 0);
    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_POOL_DEFINITION, "e1");
    CHECK(p != NULL && p->left_out && strcmp(p->field, "pools[1]") == 0);

    /* the definition was left out: its resource is in no pool */
    CHECK(cfg.resources[0].pool == NULL);
    vmx_config_free(&cfg);
}


/* more problems than are listed: all counted, objects still confined */
static void
test_many_problems(void)
{
    static char  text[65536];
    size_t       n;

    n = (size_t) snprintf(text, sizeof(text), "{\"version\":6,\"environments\":["
                          ENV "],\"connections\":[");
    for (int i = 0; i < 100; i++) {
        n += (size_t) snprintf(text + n, sizeof(text) - n,
                               "%s{\"id\":\"c%d\",\"environmentId\":\"e1\","
                               "\"name\":\"x\",\"provider\":\"bad\",\"baseUrl\":"
                               "\"http://10.0.0.1\"}", i ? "," : "", i);
    }
    snprintf(text + n, sizeof(text) - n, "],\"resources\":[],\"apiKeys\":[],"
             "\"poolDefinitions\":[]}");

    unit_free_all();
    CHECK(vmx_config_compile(text, strlen(text), 0, unit_alloc, NULL, &cfg, err,
                             sizeof(err)) == 0);
    CHECK(cfg.nproblems == VMX_CONFIG_PROBLEMS_MAX && cfg.problems_total == 100);
    CHECK(cfg.nconnections == 100 && cfg.connections[99].unavailable != NULL);
    vmx_config_free(&cfg);
}


/* timeouts: a resource's and a connection's, 0 where inherited; a bad
 * value is a problem of its object, named down to the member */
static void
test_timeouts(void)
{
    const vmx_cfg_problem_t  *p;

    CHECK(compile(0, "{\"version\":8,\"environments\":[" ENV "],\"connections\":["
                  "{\"id\":\"c1\",\"environmentId\":\"e1\",\"name\":\"oa\","
                  "\"provider\":\"openai\",\"baseUrl\":\"http://10.0.0.1/v1\","
                  "\"timeouts\":{\"connectMs\":250,\"firstByteMs\":300,"
                  "\"idleMs\":null}}],\"resources\":[{\"id\":\"r1\","
                  "\"environmentId\":\"e1\",\"name\":\"chat\",\"model\":{"
                  "\"provider\":\"openai\",\"model\":\"m\",\"connectionId\":\"c1\"},"
                  "\"timeouts\":{\"totalMs\":3600000}},{\"id\":\"r2\","
                  "\"environmentId\":\"e1\",\"name\":\"b\",\"model\":{"
                  "\"provider\":\"openai\",\"model\":\"m\",\"connectionId\":\"c1\"},"
                  "\"timeouts\":null}],\"apiKeys\":[],\"poolDefinitions\":[]}") == 0);
    CHECK(cfg.nproblems == 0);
    CHECK(cfg.connections[0].timeouts.connect_ms == 250
          && cfg.connections[0].timeouts.first_byte_ms == 300
          && cfg.connections[0].timeouts.idle_ms == 0
          && cfg.connections[0].timeouts.total_ms == 0);
    CHECK(cfg.resources[0].timeouts.total_ms == 3600000
          && cfg.resources[0].timeouts.connect_ms == 0);
    CHECK(cfg.resources[1].timeouts.total_ms == 0 && cfg.resources[1].unavailable == NULL);
    vmx_config_free(&cfg);

    CHECK(compile(0, "{\"version\":9,\"environments\":[" ENV "],\"connections\":["
                  "{\"id\":\"c1\",\"environmentId\":\"e1\",\"name\":\"oa\","
                  "\"provider\":\"openai\",\"baseUrl\":\"http://10.0.0.1/v1\","
                  "\"timeouts\":{\"connectMs\":60001}},{\"id\":\"c2\","
                  "\"environmentId\":\"e1\",\"name\":\"b\",\"provider\":\"openai\","
                  "\"baseUrl\":\"http://10.0.0.1/v1\",\"timeouts\":[]}],"
                  "\"resources\":[{\"id\":\"r1\",\"environmentId\":\"e1\","
                  "\"name\":\"chat\",\"model\":{\"provider\":\"openai\","
                  "\"model\":\"m\",\"connectionId\":\"c1\"},"
                  "\"timeouts\":{\"idleMs\":-1}},{\"id\":\"r2\",\"environmentId\":"
                  "\"e1\",\"name\":\"b\",\"model\":{\"provider\":\"openai\","
                  "\"model\":\"m\",\"connectionId\":\"c1\"},"
                  "\"timeouts\":{\"totalMs\":1.5}}],"
                  "\"apiKeys\":[],\"poolDefinitions\":[]}") == 0);
    CHECK(cfg.nconnections == 2 && cfg.nresources == 2);

    p = find_problem(VMX_CFG_CONNECTION, "c1");
    CHECK(p && p->invalid && !p->left_out && strcmp(p->field, "timeouts.connectMs") == 0
          && strstr(p->message, "1 to 60000"));
    CHECK(cfg.connections[0].unavailable && cfg.connections[0].timeouts.connect_ms == 0);

    p = find_problem(VMX_CFG_CONNECTION, "c2");
    CHECK(p && strcmp(p->field, "timeouts") == 0 && cfg.connections[1].unavailable);

    p = find_problem(VMX_CFG_RESOURCE, "r1");
    CHECK(p && p->invalid && strcmp(p->field, "timeouts.idleMs") == 0);
    CHECK(cfg.resources[0].unavailable != NULL);

    p = find_problem(VMX_CFG_RESOURCE, "r2");
    CHECK(p && strcmp(p->field, "timeouts.totalMs") == 0 && cfg.resources[1].unavailable);
    vmx_config_free(&cfg);
}


/* expiresAt: a time (its fraction dropped) or null for never; any other
 * value leaves the key out.  A key left out after its resources were read
 * leaves nothing behind in the next key. */
static void
test_key_expiry(void)
{
#define HASH(c)  "\"" c "0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\""

    CHECK(compile(0, "{\"version\":6,\"environments\":[" ENV "],\"connections\":["
                  CONN "],\"resources\":[" RES "],\"apiKeys\":["
                  "{\"id\":\"k1\",\"environmentId\":\"e1\",\"keyHash\":" HASH("1") ","
                  "\"expiresAt\":\"2026-11-21T10:00:00.500Z\"},"
                  "{\"id\":\"k2\",\"environmentId\":\"e1\",\"keyHash\":" HASH("2") ","
                  "\"expiresAt\":null,\"resources\":[\"r1\"]},"
                  "{\"id\":\"k3\",\"environmentId\":\"e1\",\"keyHash\":" HASH("3") ","
                  "\"expiresAt\":\"tomorrow\"},"
                  "{\"id\":\"k4\",\"environmentId\":\"e1\",\"keyHash\":" HASH("2") ","
                  "\"resources\":[\"r1\"]},"
                  "{\"id\":\"k5\",\"environmentId\":\"e1\",\"keyHash\":" HASH("5") ","
                  "\"expiresAt\":\"2026-11-21T11:00:00+01:00\",\"resources\":[\"r1\"]}],"
                  "\"poolDefinitions\":[]}") == 0);

    CHECK(cfg.napi_keys == 3);
    CHECK(cfg.api_keys[0].expires_at == 1795255200);
    CHECK(cfg.api_keys[1].expires_at == 0);

    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_API_KEY, "k3");
    CHECK(p && p->invalid && p->left_out && strcmp(p->field, "expiresAt") == 0);
    p = find_problem(VMX_CFG_API_KEY, "k4");
    CHECK(p && p->left_out && strcmp(p->field, "keyHash") == 0);

    CHECK(cfg.api_keys[2].id.len == 2 && memcmp(cfg.api_keys[2].id.data, "k5", 2) == 0);
    CHECK(cfg.api_keys[2].expires_at == 1795255200 && cfg.api_keys[2].nresources == 1);
    vmx_config_free(&cfg);
#undef HASH
}


/* a rotation's previous key: indexed with its expiry, or a problem of the
 * key that leaves it out and nothing of it behind */
static void
test_key_previous(void)
{
#define HASH(c)  "\"" c "0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\""

    CHECK(compile(0, "{\"version\":7,\"environments\":[" ENV "],\"connections\":[],"
                  "\"resources\":[],\"apiKeys\":["
                  "{\"id\":\"k1\",\"environmentId\":\"e1\",\"keyHash\":" HASH("1") ","
                  "\"previousKeyHash\":" HASH("a") ","
                  "\"previousKeyExpiresAt\":\"2026-11-21T10:00:00Z\"},"
                  "{\"id\":\"k2\",\"environmentId\":\"e1\",\"keyHash\":" HASH("2") ","
                  "\"previousKeyHash\":" HASH("b") ",\"previousKeyExpiresAt\":null},"
                  "{\"id\":\"k3\",\"environmentId\":\"e1\",\"keyHash\":" HASH("3") ","
                  "\"previousKeyHash\":" HASH("1") ","
                  "\"previousKeyExpiresAt\":\"2026-11-21T10:00:00Z\"},"
                  "{\"id\":\"k4\",\"environmentId\":\"e1\",\"keyHash\":" HASH("a") "},"
                  "{\"id\":\"k5\",\"environmentId\":\"e1\",\"keyHash\":" HASH("3") ","
                  "\"previousKeyHash\":null,\"previousKeyExpiresAt\":null}],"
                  "\"poolDefinitions\":[]}") == 0);

    CHECK(cfg.napi_keys == 2);
    CHECK(cfg.api_keys[0].previous_expires_at == 1795255200
          && cfg.api_keys[0].previous_hash[0] == 0xa0
          && cfg.api_keys[0].previous_hash[31] == 0xff);

    /* k2: a hash without its expiry; k3: a previous hash that is k1's
     * key; k4: a key that is k1's previous one */
    const vmx_cfg_problem_t *p = find_problem(VMX_CFG_API_KEY, "k2");
    CHECK(p && p->left_out && strcmp(p->field, "previousKeyHash") == 0);
    p = find_problem(VMX_CFG_API_KEY, "k3");
    CHECK(p && p->left_out && strcmp(p->field, "previousKeyHash") == 0);
    p = find_problem(VMX_CFG_API_KEY, "k4");
    CHECK(p && p->left_out && strcmp(p->field, "keyHash") == 0);

    /* k5 takes k3's hash, which k3 left out left free */
    CHECK(cfg.api_keys[1].id.len == 2 && memcmp(cfg.api_keys[1].id.data, "k5", 2) == 0);
    CHECK(cfg.api_keys[1].previous_expires_at == 0);
    vmx_config_free(&cfg);
#undef HASH
}


/* budgets: a capacity entry's cost in micro-dollars, prices by name and
 * time, a bad price a problem of its own */
static void
test_budgets(void)
{
#define PRICE(id, model, from, in, out, cached)                              \
    "{\"id\":\"" id "\",\"provider\":\"openai\",\"model\":\"" model "\","    \
    "\"validFrom\":" from ",\"inputMicros\":" in ",\"outputMicros\":" out   \
    cached "}"

    CHECK(compile(0, "{\"version\":3,\"environments\":[" ENV "],\"connections\":["
                  CONN "],\"resources\":["
                  "{\"id\":\"r1\",\"environmentId\":\"e1\",\"name\":\"a\",\"model\":"
                  "{\"provider\":\"openai\",\"model\":\"gpt-4o-2024-08-06\","
                  "\"connectionId\":\"c1\"},\"fallbackModels\":[{\"provider\":"
                  "\"openai\",\"model\":\"o9\",\"connectionId\":\"c1\"}],"
                  "\"enforceCapacity\":true,\"capacity\":[{\"period\":\"day\","
                  "\"cost\":0.0007},{\"period\":\"hour\",\"cost\":5,\"tokens\":9}]},"
                  "{\"id\":\"r2\",\"environmentId\":\"e1\",\"name\":\"b\","
                  "\"enforceCapacity\":true,\"capacity\":[{\"period\":\"day\","
                  "\"cost\":-1}],\"model\":{\"provider\":\"openai\",\"model\":"
                  "\"gpt-4o\",\"connectionId\":\"c1\"}}],"
                  "\"apiKeys\":[],\"poolDefinitions\":[],\"prices\":["
                  PRICE("p1", "gpt-4o", "2000", "2500000", "10000000",
                        ",\"cachedInputMicros\":1250000") ","
                  PRICE("p2", "gpt-4o", "1000", "5000000", "20000000", "") ","
                  PRICE("p3", "gpt-4o", "1000", "1", "1", "") ","
                  PRICE("p4", "o9", "1000", "-1", "1", "") ","
                  PRICE("p5", "gpt", "1000", "1", "1", "") "]}") == 0);

    CHECK(cfg.nprices == 3);
    CHECK(find_problem(VMX_CFG_PRICE, "p3") && find_problem(VMX_CFG_PRICE, "p3")->left_out);
    CHECK(find_problem(VMX_CFG_PRICE, "p4")
          && strcmp(find_problem(VMX_CFG_PRICE, "p4")->field, "inputMicros") == 0);

    vmx_cfg_resource_t *r = &cfg.resources[0];
    CHECK(r->nlimits == 2 && r->limits[0].cost == 700 && r->limits[0].tokens == -1);
    CHECK(r->limits[1].cost == 5000000 && r->limits[1].tokens == 9);

    /* the dated model takes gpt-4o's chain, the later price from 2000 on */
    const vmx_cfg_price_t *p = vmx_config_price_at(r->model.prices, 1500);
    CHECK(p && p->input == 5000000 && p->cached_input == -1);
    p = vmx_config_price_at(r->model.prices, 2000);
    CHECK(p && p->input == 2500000 && p->cached_input == 1250000);
    CHECK(vmx_config_price_at(r->model.prices, 999) == NULL);
    CHECK(r->nfallbacks == 1 && r->fallbacks[0].prices == NULL);

    /* 8 prompt tokens (2 cached) and 6 completion ones: 6 * 2.5 + 2 * 1.25
     * + 6 * 10 = 77.5 micro-dollars, rounded up */
    CHECK(vmx_config_cost(p, 8, 2, 6) == 78);
    CHECK(vmx_config_cost(p, 8, -1, -1) == 20);

    const vmx_cfg_problem_t *bad = find_problem(VMX_CFG_RESOURCE, "r2");
    CHECK(bad && strcmp(bad->field, "capacity[0].cost") == 0);
    vmx_config_free(&cfg);
#undef PRICE
}


int
main(void)
{
    test_whole();
    test_not_a_snapshot();
    test_format();
    test_unresolved_host();
    test_bad_connection();
    test_bad_resource();
    test_bad_pool();
    test_many_problems();
    test_timeouts();
    test_key_expiry();
    test_key_previous();
    test_budgets();
    unit_free_all();

    return UNIT_REPORT();
}
