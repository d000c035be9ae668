/*
 * vmx_config: the compiler of a configuration snapshot (see vmx_config.h).
 */

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmx_config.h"
#include "vmx_rfc3339.h"


#define VMX_CONFIG_DEPTH_MAX  64

/* a quoted text of a message: its first 200 bytes */
#define TEXT_LEN(len)         ((int) ((len) < 200 ? (len) : 200))


/* an id -> object table for the references between sections */
typedef struct {
    vmx_cfg_str_t    key;
    void            *value;
} vmx_cfg_slot_t;

typedef struct {
    vmx_cfg_slot_t  *slots;
    size_t           mask;
} vmx_cfg_index_t;


typedef struct {
    vmx_config_t        *cfg;
    vmx_json_alloc_pt    alloc;
    void                *alloc_ctx;
    unsigned             flags;

    vmx_cfg_index_t      environments;
    vmx_cfg_index_t      connections;
    vmx_cfg_index_t      resources;         /* by id */
    vmx_cfg_index_t      resource_names;    /* by environment id "/" name */
    vmx_cfg_index_t      key_hashes;
    vmx_cfg_index_t      pool_defs;         /* by environment id */
    vmx_cfg_index_t      prices;            /* by provider "/" model */

    /* the object being compiled, for its problems */
    vmx_cfg_kind_e       kind;
    size_t               index;
    vmx_cfg_str_t        id;
    const char          *first;            /* its first problem's message */
    const char          *hard;             /* the first that is not soft */
    unsigned             soft:1;           /* a model entry's connection */
    unsigned             nomem:1;
} vmx_cfg_compile_t;


static const char  *kinds[] = {
    "environment", "connection", "resource", "apiKey", "poolDefinition",
    "price"
};


/* index */

static uint64_t
hash_str(const char *p, size_t len)
{
    uint64_t  h = 14695981039346656037ULL;     /* FNV-1a */

    while (len--) {
        h = (h ^ (unsigned char) *p++) * 1099511628211ULL;
    }

    return h;
}


static int
index_init(vmx_cfg_compile_t *cc, vmx_cfg_index_t *ix, size_t n)
{
    size_t  size = 8;

    while (size < 2 * n) {
        size <<= 1;
    }

    ix->slots = cc->alloc(cc->alloc_ctx, size * sizeof(vmx_cfg_slot_t));
    if (ix->slots == NULL) {
        cc->nomem = 1;
        return -1;
    }

    memset(ix->slots, 0, size * sizeof(vmx_cfg_slot_t));
    ix->mask = size - 1;

    return 0;
}


static vmx_cfg_slot_t *
index_slot(const vmx_cfg_index_t *ix, const char *key, size_t len)
{
    size_t           i;
    vmx_cfg_slot_t  *s;

    for (i = hash_str(key, len) & ix->mask; ; i = (i + 1) & ix->mask) {
        s = &ix->slots[i];

        if (s->value == NULL
            || (s->key.len == len && memcmp(s->key.data, key, len) == 0))
        {
            return s;
        }
    }
}


static void *
index_find(const vmx_cfg_index_t *ix, const char *key, size_t len)
{
    return index_slot(ix, key, len)->value;
}


/* 0, or -1 when the key is taken (the table never fills: 2n slots) */
static int
index_add(vmx_cfg_index_t *ix, vmx_cfg_str_t key, void *value)
{
    vmx_cfg_slot_t  *s = index_slot(ix, key.data, key.len);

    if (s->value != NULL) {
        return -1;
    }

    s->key = key;
    s->value = value;

    return 0;
}


/* problems */

static void
problem(vmx_cfg_compile_t *cc, int invalid, const char *field,
    const char *fmt, ...)
{
    va_list             args;
    vmx_config_t       *cfg = cc->cfg;
    vmx_cfg_problem_t  *p;

    cfg->problems_total++;

    if (cfg->nproblems == VMX_CONFIG_PROBLEMS_MAX) {
        if (cc->first == NULL) {
            cc->first = "a problem (not listed: too many in the snapshot)";
        }
        if (cc->hard == NULL && !cc->soft) {
            cc->hard = cc->first;
        }
        return;
    }

    p = &cfg->problems[cfg->nproblems++];
    memset(p, 0, sizeof(*p));
    p->kind = cc->kind;
    p->index = cc->index;
    p->id = cc->id;
    p->invalid = invalid ? 1 : 0;
    snprintf(p->field, sizeof(p->field), "%s", field ? field : "");

    va_start(args, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, args);
    va_end(args);

    if (cc->first == NULL) {
        cc->first = p->message;
    }

    if (cc->hard == NULL && !cc->soft) {
        cc->hard = p->message;
    }
}


/* the object's problems from `from` on left it out of the result */
static void
left_out(vmx_cfg_compile_t *cc, size_t from)
{
    for (; from < cc->cfg->nproblems; from++) {
        cc->cfg->problems[from].left_out = 1;
    }
}


static void
begin_object(vmx_cfg_compile_t *cc, vmx_cfg_kind_e kind, size_t index,
    const vmx_json_t *obj)
{
    size_t       len;
    const char  *id;

    id = (kind == VMX_CFG_POOL_DEFINITION)
         ? vmx_json_get_str(obj, "environmentId", &len)
         : vmx_json_get_str(obj, "id", &len);

    cc->kind = kind;
    cc->index = index;
    cc->id.data = id ? id : "";
    cc->id.len = id ? len : 0;
    cc->first = NULL;
    cc->hard = NULL;
}


/* members */

static int
get_str(vmx_cfg_compile_t *cc, const vmx_json_t *obj, const char *name,
    vmx_cfg_str_t *value)
{
    size_t       len;
    const char  *str = vmx_json_get_str(obj, name, &len);

    if (str == NULL || len == 0) {
        problem(cc, 1, name, "must be a non-empty string");
        return -1;
    }

    value->data = str;
    value->len = len;

    return 0;
}


/* an optional string member; absent or of another type: empty */
static void
opt_str(const vmx_json_t *obj, const char *name, vmx_cfg_str_t *value)
{
    value->data = vmx_json_get_str(obj, name, &value->len);

    if (value->data == NULL) {
        value->data = "";
        value->len = 0;
    }
}


static const vmx_cfg_environment_t *
get_env(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    vmx_cfg_str_t                id;
    const vmx_cfg_environment_t *env;

    if (get_str(cc, obj, "environmentId", &id) != 0) {
        return NULL;
    }

    env = index_find(&cc->environments, id.data, id.len);
    if (env == NULL) {
        problem(cc, 1, "environmentId", "unknown environment \"%.*s\"",
                (int) id.len, id.data);
    }

    return env;
}


static int
is_true(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);

    return v != NULL && v->type == VMX_JSON_TRUE;
}


static int
is_false(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);

    return v != NULL && v->type == VMX_JSON_FALSE;
}


/* an optional RFC 3339 member: absent or null is 0 (never), a time is its
 * second since the epoch, at least 1; -1 with a problem otherwise */
static int
opt_time(vmx_cfg_compile_t *cc, const vmx_json_t *obj, const char *name,
    int64_t *value)
{
    time_t             t;
    const vmx_json_t  *v = vmx_json_get(obj, name);

    *value = 0;

    if (v == NULL || v->type == VMX_JSON_NULL) {
        return 0;
    }

    if (v->type != VMX_JSON_STRING || !vmx_rfc3339_parse(v->str, &t)) {
        problem(cc, 1, name, "must be an RFC 3339 timestamp or null");
        return -1;
    }

    *value = t > 0 ? t : 1;

    return 0;
}


static void *
alloc_array(vmx_cfg_compile_t *cc, size_t n, size_t size)
{
    void  *p;

    p = cc->alloc(cc->alloc_ctx, (n ? n : 1) * size);
    if (p == NULL) {
        cc->nomem = 1;
        return NULL;
    }

    memset(p, 0, (n ? n : 1) * size);

    return p;
}


/*
 * The enabled capacity entries of obj; of a resource or an API key only
 * when its enforceCapacity is true.
 */
static int
compile_limits(vmx_cfg_compile_t *cc, const vmx_json_t *obj, int always,
    vmx_cfg_limit_t **limits, size_t *nlimits)
{
    size_t             i, p, len;
    const char        *str;
    char               field[32];
    const vmx_json_t  *list, *item, *v;
    vmx_cfg_limit_t   *limit;

    static const char  *periods[] = {
        "minute", "hour", "day", "week", "month", "lifetime"
    };

    *limits = NULL;
    *nlimits = 0;

    list = vmx_json_get(obj, "capacity");

    if (list == NULL || list->type == VMX_JSON_NULL
        || (!always && !is_true(obj, "enforceCapacity")))
    {
        return 0;
    }

    if (list->type != VMX_JSON_ARRAY) {
        problem(cc, 1, "capacity", "must be an array");
        return -1;
    }

    *limits = alloc_array(cc, list->count, sizeof(vmx_cfg_limit_t));
    if (*limits == NULL) {
        return -1;
    }

    for (i = 0, item = list->child; item; i++, item = item->next) {
        snprintf(field, sizeof(field), "capacity[%zu]", i);

        if (item->type != VMX_JSON_OBJECT) {
            problem(cc, 1, field, "must be an object");
            return -1;
        }

        if (is_false(item, "enabled")) {
            continue;
        }

        limit = &(*limits)[(*nlimits)++];

        str = vmx_json_get_str(item, "period", &len);

        for (p = 0; str && p < sizeof(periods) / sizeof(periods[0]); p++) {
            if (len == strlen(periods[p]) && memcmp(str, periods[p], len) == 0)
            {
                break;
            }
        }

        if (str == NULL || p == sizeof(periods) / sizeof(periods[0])) {
            snprintf(field, sizeof(field), "capacity[%zu].period", i);
            problem(cc, 1, field, "must be one of minute, hour, day, week, "
                    "month, lifetime");
            return -1;
        }

        limit->period = (vmx_period_e) p;

        v = vmx_json_get(item, "requests");
        limit->requests = (v && v->is_int && v->integer >= 0) ? v->integer
                                                                : -1;
        v = vmx_json_get(item, "tokens");
        limit->tokens = (v && v->is_int && v->integer >= 0) ? v->integer : -1;

        v = vmx_json_get(item, "cost");
        limit->cost = -1;

        if (v && v->type != VMX_JSON_NULL) {
            if (v->type != VMX_JSON_NUMBER || !(v->num >= 0)
                || v->num * 1e6 > (double) VMX_CONFIG_COST_MAX)
            {
                snprintf(field, sizeof(field), "capacity[%zu].cost", i);
                problem(cc, 1, field, "must be a non-negative number of USD");
                return -1;
            }

            /* micro-dollars: the counters stay integers */
            limit->cost = (int64_t) (v->num * 1e6 + 0.5);
        }

        str = vmx_json_get_str(item, "dimension", &len);
        limit->per_address = (str && len == sizeof("source-ip") - 1
                              && memcmp(str, "source-ip", len) == 0);
    }

    return 0;
}


/* timeouts: an object of positive integers, null or absent inherits */
static void
compile_timeouts(vmx_cfg_compile_t *cc, const vmx_json_t *obj,
    vmx_cfg_timeouts_t *timeouts)
{
    size_t             n;
    char               field[32];
    const vmx_json_t  *t, *v;

    static const struct {
        const char  *name;
        size_t       offset;
        int64_t      max;
    } members[] = {
        { "connectMs", offsetof(vmx_cfg_timeouts_t, connect_ms),
          VMX_TIMEOUT_CONNECT_MAX },
        { "firstByteMs", offsetof(vmx_cfg_timeouts_t, first_byte_ms),
          VMX_TIMEOUT_MAX },
        { "idleMs", offsetof(vmx_cfg_timeouts_t, idle_ms), VMX_TIMEOUT_MAX },
        { "totalMs", offsetof(vmx_cfg_timeouts_t, total_ms), VMX_TIMEOUT_MAX },
    };

    memset(timeouts, 0, sizeof(vmx_cfg_timeouts_t));

    t = vmx_json_get(obj, "timeouts");

    if (t == NULL || t->type == VMX_JSON_NULL) {
        return;
    }

    if (t->type != VMX_JSON_OBJECT) {
        problem(cc, 1, "timeouts", "must be an object");
        return;
    }

    for (n = 0; n < sizeof(members) / sizeof(members[0]); n++) {
        v = vmx_json_get(t, members[n].name);

        if (v == NULL || v->type == VMX_JSON_NULL) {
            continue;
        }

        if (!v->is_int || v->integer < 1 || v->integer > members[n].max) {
            snprintf(field, sizeof(field), "timeouts.%s", members[n].name);
            problem(cc, 1, field, "must be an integer from 1 to %lld "
                    "(milliseconds)", (long long) members[n].max);
            continue;
        }

        *(uint32_t *) ((char *) timeouts + members[n].offset) =
            (uint32_t) v->integer;
    }
}


/* environments */

static void
compile_environment(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    size_t                  mark = cc->cfg->nproblems;
    vmx_cfg_environment_t  *env;

    /* the slot of an object left out before is used again */
    env = &cc->cfg->environments[cc->cfg->nenvironments];
    memset(env, 0, sizeof(*env));

    if (get_str(cc, obj, "id", &env->id) != 0
        || get_str(cc, obj, "workspaceId", &env->workspace_id) != 0
        || get_str(cc, obj, "name", &env->name) != 0)
    {
        left_out(cc, mark);
        return;
    }

    env->store_payload = !is_false(obj, "storePayload");
    env->audit_required = is_true(obj, "auditRequired");

    if (index_add(&cc->environments, env->id, env) != 0) {
        problem(cc, 1, "id", "appears twice");
        left_out(cc, mark);
        return;
    }

    cc->cfg->nenvironments++;
}


/* connections */

static int
parse_base_url(vmx_cfg_compile_t *cc, vmx_cfg_connection_t *conn)
{
    long         port;
    const char  *p, *last, *host, *path, *colon, *close;

    p = conn->base_url.data;
    last = p + conn->base_url.len;

    if (conn->base_url.len > 8 && strncasecmp(p, "https://", 8) == 0) {
        conn->https = 1;
        conn->port = 443;
        p += 8;

    } else if (conn->base_url.len > 7 && strncasecmp(p, "http://", 7) == 0) {
        conn->port = 80;
        p += 7;

    } else {
        goto invalid;
    }

    host = p;
    path = memchr(p, '/', last - p);
    if (path == NULL) {
        path = last;
    }

    conn->host_header.data = host;
    conn->host_header.len = path - host;

    if (conn->host_header.len == 0) {
        goto invalid;
    }

    /* no user information, query, fragment or byte that a header forbids */
    for (p = host; p < last; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f || *p == '@' || *p == '?'
            || *p == '#' || *p == '\\')
        {
            goto invalid;
        }
    }

    /* the port, after an IPv6 literal's "]" when there is one */
    close = (*host == '[') ? memchr(host, ']', path - host) : host;
    if (close == NULL) {
        goto invalid;
    }

    colon = memchr(close, ':', path - close);

    conn->host.data = (*host == '[') ? host + 1 : host;
    conn->host.len = (colon ? colon : path) - conn->host.data
                     - ((*host == '[') ? 1 : 0);

    if (conn->host.len == 0) {
        goto invalid;
    }

    if (colon) {
        port = 0;

        for (p = colon + 1; p < path; p++) {
            if (*p < '0' || *p > '9' || port > 65535) {
                goto invalid;
            }
            port = port * 10 + (*p - '0');
        }

        if (port < 1 || port > 65535) {
            goto invalid;
        }

        conn->port = (uint16_t) port;
    }

    /* strip trailing slashes: the path "/chat/completions" is appended */
    while (last > path && last[-1] == '/') {
        last--;
    }

    conn->base_path.data = path;
    conn->base_path.len = last - path;

    return 0;

invalid:

    problem(cc, 1, "baseUrl", "\"%.*s\" is no http:// or https:// URL with a "
            "host", (int) TEXT_LEN(conn->base_url.len), conn->base_url.data);
    return -1;
}


/* an IP literal ("1.2.3.4", "::1"), of at most 63 bytes */
static int
is_ip(const char *p, size_t len)
{
    char           buf[64];
    unsigned char  addr[16];

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }

    memcpy(buf, p, len);
    buf[len] = '\0';

    return inet_pton(AF_INET, buf, addr) == 1
           || inet_pton(AF_INET6, buf, addr) == 1;
}


/* "ip", "ip:port", "[ip6]" or "[ip6]:port" */
static int
is_address(const char *p, size_t len)
{
    size_t       n;
    const char  *end = p + len, *close, *colon;

    if (len && *p == '[') {
        close = memchr(p, ']', len);
        if (close == NULL || !is_ip(p + 1, close - p - 1)) {
            return 0;
        }
        colon = close + 1;
        if (colon == end) {
            return 1;
        }
        if (*colon != ':') {
            return 0;
        }

    } else {
        colon = memchr(p, ':', len);
        if (colon == NULL) {
            return is_ip(p, len);
        }
        if (!is_ip(p, colon - p)) {
            return 0;
        }
    }

    for (n = 0, p = colon + 1; p < end; p++, n++) {
        if (*p < '0' || *p > '9' || n == 5) {
            return 0;
        }
    }

    return n > 0;
}


static void
compile_connection(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    size_t                 mark = cc->cfg->nproblems, n;
    char                   field[48];
    const vmx_json_t      *credentials, *list, *item;
    vmx_cfg_str_t          resolve_error;
    vmx_cfg_connection_t  *conn;

    static const struct {
        const char      *name;
        vmx_provider_e   id;
    } providers[] = {
        { "openai", VMX_PROVIDER_OPENAI },
        { "groq", VMX_PROVIDER_GROQ },
        { "anthropic", VMX_PROVIDER_ANTHROPIC },
        { "gemini", VMX_PROVIDER_GEMINI },
        { "aws-bedrock", VMX_PROVIDER_BEDROCK },
    };

    /* the slot of an object left out before is used again */
    conn = &cc->cfg->connections[cc->cfg->nconnections];
    memset(conn, 0, sizeof(*conn));

    /* without an id and an environment nothing can refer to it */
    if (get_str(cc, obj, "id", &conn->id) != 0
        || (conn->env = get_env(cc, obj)) == NULL)
    {
        left_out(cc, mark);
        return;
    }

    if (index_add(&cc->connections, conn->id, conn) != 0) {
        problem(cc, 1, "id", "appears twice");
        left_out(cc, mark);
        return;
    }

    cc->cfg->nconnections++;

    opt_str(obj, "name", &conn->name);
    opt_str(obj, "provider", &conn->provider);
    opt_str(obj, "region", &conn->region);

    for (n = 0; n < sizeof(providers) / sizeof(providers[0]); n++) {
        if (conn->provider.len == strlen(providers[n].name)
            && memcmp(conn->provider.data, providers[n].name,
                      conn->provider.len) == 0)
        {
            conn->provider_id = providers[n].id;
        }
    }

    if (conn->name.len == 0) {
        problem(cc, 1, "name", "must be a non-empty string");
    }

    if (conn->provider_id == 0) {
        problem(cc, 1, "provider", "unknown provider \"%.*s\"",
                (int) TEXT_LEN(conn->provider.len), conn->provider.data);
    }

    if (get_str(cc, obj, "baseUrl", &conn->base_url) == 0
        && parse_base_url(cc, conn) == 0)
    {
        list = vmx_json_get(obj, "addresses");

        if (list != NULL && list->type == VMX_JSON_ARRAY && list->count) {
            conn->addresses = alloc_array(cc, list->count,
                                          sizeof(vmx_cfg_str_t));
            if (conn->addresses == NULL) {
                return;
            }

            for (n = 0, item = list->child; item; n++, item = item->next) {
                if (item->type != VMX_JSON_STRING
                    || !is_address(item->str, item->str_len))
                {
                    snprintf(field, sizeof(field), "addresses[%zu]", n);
                    problem(cc, 1, field, "must be an IP address with an "
                            "optional port");
                    break;
                }

                conn->addresses[conn->naddresses].data = item->str;
                conn->addresses[conn->naddresses++].len = item->str_len;
            }

        } else if (is_ip(conn->host.data, conn->host.len)) {
            conn->addresses = &conn->host;
            conn->naddresses = 1;

        } else if (!(cc->flags & VMX_CONFIG_NO_ADDRESSES)) {
            /* this machine's fault, not the object's: healed by the next
             * snapshot once the name resolves */
            opt_str(obj, "resolveError", &resolve_error);
            problem(cc, 0, "baseUrl", "the host \"%.*s\" did not resolve%s%.*s",
                    (int) TEXT_LEN(conn->host.len), conn->host.data,
                    resolve_error.len ? ": " : "",
                    (int) TEXT_LEN(resolve_error.len), resolve_error.data);
        }
    }

    credentials = vmx_json_get(obj, "credentials");
    if (credentials != NULL && credentials->type == VMX_JSON_OBJECT) {
        opt_str(credentials, "apiKey", &conn->api_key);
        opt_str(credentials, "accessKeyId", &conn->access_key_id);
        opt_str(credentials, "secretAccessKey", &conn->secret_key);
        opt_str(credentials, "sessionToken", &conn->session_token);
    } else {
        conn->api_key.data = "";
        conn->access_key_id = conn->secret_key = conn->session_token =
            conn->api_key;
    }

    list = vmx_json_get(obj, "allowedModels");
    if (list != NULL && list->type == VMX_JSON_ARRAY) {
        conn->allowed_models = alloc_array(cc, list->count,
                                           sizeof(vmx_cfg_str_t));
        if (conn->allowed_models == NULL) {
            return;
        }

        for (n = 0, item = list->child; item; n++, item = item->next) {
            if (item->type != VMX_JSON_STRING) {
                snprintf(field, sizeof(field), "allowedModels[%zu]", n);
                problem(cc, 1, field, "must be a string");
                break;
            }

            conn->allowed_models[conn->nallowed_models].data = item->str;
            conn->allowed_models[conn->nallowed_models++].len = item->str_len;
        }

    } else if (list != NULL && list->type != VMX_JSON_NULL) {
        problem(cc, 1, "allowedModels", "must be an array of strings");
    }

    (void) compile_limits(cc, obj, 1, &conn->limits, &conn->nlimits);

    compile_timeouts(cc, obj, &conn->timeouts);

    conn->unavailable = cc->first;
}


/* prices */

/* "provider/model" into buf; 0 when it does not fit */
static size_t
price_key(char *buf, size_t size, const vmx_cfg_str_t *provider,
    const char *model, size_t len)
{
    if (provider->len + 1 + len > size) {
        return 0;
    }

    memcpy(buf, provider->data, provider->len);
    buf[provider->len] = '/';
    memcpy(buf + provider->len + 1, model, len);

    return provider->len + 1 + len;
}


static void
compile_price(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    size_t             i, len, mark;
    char              *key;
    int64_t           *values[3];
    vmx_cfg_slot_t    *slot;
    vmx_cfg_price_t   *price, **prev;
    const vmx_json_t  *v;

    static const char  *amounts[] = {
        "inputMicros", "outputMicros", "cachedInputMicros"
    };

    mark = cc->cfg->nproblems;
    price = &cc->cfg->prices[cc->cfg->nprices];
    memset(price, 0, sizeof(*price));

    values[0] = &price->input;
    values[1] = &price->output;
    values[2] = &price->cached_input;

    if (get_str(cc, obj, "provider", &price->provider) != 0
        || get_str(cc, obj, "model", &price->model) != 0)
    {
        left_out(cc, mark);
        return;
    }

    for (i = 0; i < 3; i++) {
        v = vmx_json_get(obj, amounts[i]);

        if (i == 2 && (v == NULL || v->type == VMX_JSON_NULL)) {
            *values[i] = -1;
            continue;
        }

        if (v == NULL || !v->is_int || v->integer < 0
            || v->integer > VMX_CONFIG_PRICE_MAX)
        {
            problem(cc, 1, amounts[i], "must be an integer of micro-dollars "
                    "per million tokens, 0 to %lld", VMX_CONFIG_PRICE_MAX);
            left_out(cc, mark);
            return;
        }

        *values[i] = v->integer;
    }

    v = vmx_json_get(obj, "validFrom");

    if (v == NULL || !v->is_int || v->integer < 0) {
        problem(cc, 1, "validFrom", "must be a time in seconds since the "
                "epoch");
        left_out(cc, mark);
        return;
    }

    price->valid_from = v->integer;

    len = price->provider.len + 1 + price->model.len;
    key = cc->alloc(cc->alloc_ctx, len);
    if (key == NULL) {
        cc->nomem = 1;
        return;
    }

    price_key(key, len, &price->provider, price->model.data,
              price->model.len);

    slot = index_slot(&cc->prices, key, len);

    if (slot->value == NULL) {
        slot->key.data = key;
        slot->key.len = len;
        slot->value = price;

    } else {
        /* the chain of the name stays ordered by valid_from */
        for (prev = (vmx_cfg_price_t **) &slot->value;
             *prev && (*prev)->valid_from < price->valid_from;
             prev = (vmx_cfg_price_t **) &(*prev)->next)
        { /* void */ }

        if (*prev && (*prev)->valid_from == price->valid_from) {
            problem(cc, 1, "validFrom", "another price of the model is valid "
                    "from the same time");
            left_out(cc, mark);
            return;
        }

        price->next = *prev;
        *prev = price;
    }

    cc->cfg->nprices++;
}


/*
 * A model's prices: its own name's, else its longest priced name followed
 * by '-' ("gpt-4o-2024-08-06" takes "gpt-4o"'s), else, for a Bedrock
 * inference profile ("us.anthropic..."), its model's; as the control
 * plane's prices_cost() finds them.
 */
static const vmx_cfg_price_t *
find_prices(vmx_cfg_compile_t *cc, const vmx_cfg_str_t *provider,
    const vmx_cfg_str_t *model)
{
    size_t       len, klen;
    const char  *name, *dot;
    void        *found;
    char         key[256];

    name = model->data;
    len = model->len;

    for ( ;; ) {
        while (len) {
            klen = price_key(key, sizeof(key), provider, name, len);

            if (klen) {
                found = index_find(&cc->prices, key, klen);
                if (found) {
                    return found;
                }
            }

            while (--len && name[len] != '-') { /* void */ }
        }

        dot = memchr(model->data, '.', model->len);

        if (name != model->data || dot == NULL
            || provider->len != sizeof("aws-bedrock") - 1
            || memcmp(provider->data, "aws-bedrock", provider->len) != 0
            || memchr(dot + 1, '.', model->data + model->len - dot - 1)
               == NULL)
        {
            return NULL;
        }

        name = dot + 1;
        len = model->data + model->len - name;
    }
}


const vmx_cfg_price_t *
vmx_config_price_at(const vmx_cfg_price_t *prices, int64_t now)
{
    const vmx_cfg_price_t  *in_effect = NULL;

    for ( /* void */ ; prices && prices->valid_from <= now;
         prices = prices->next)
    {
        in_effect = prices;
    }

    return in_effect;
}


int64_t
vmx_config_cost(const vmx_cfg_price_t *price, int64_t prompt, int64_t cached,
    int64_t completion)
{
    __int128  pico;

    prompt = prompt > 0 ? prompt : 0;
    cached = cached > 0 ? (cached < prompt ? cached : prompt) : 0;
    completion = completion > 0 ? completion : 0;

    pico = (__int128) (prompt - cached) * price->input
           + (__int128) cached * (price->cached_input >= 0
                                  ? price->cached_input : price->input)
           + (__int128) completion * price->output;

    pico = (pico + 999999) / 1000000;

    return pico < INT64_MAX / 4 ? (int64_t) pico : INT64_MAX / 4;
}



/* resources */

static int
compile_target(vmx_cfg_compile_t *cc, const vmx_cfg_environment_t *env,
    const vmx_json_t *obj, vmx_cfg_target_t *target, const char *where)
{
    char                         field[64];
    size_t                       len;
    const char                  *str;
    const vmx_cfg_connection_t  *conn;

    static const char  *members[] = { "provider", "model", "connectionId" };
    vmx_cfg_str_t      *values[] = {
        &target->provider, &target->model, &target->connection_id
    };

    if (obj == NULL || obj->type != VMX_JSON_OBJECT) {
        problem(cc, 1, where, "must be an object");
        return -1;
    }

    for (size_t i = 0; i < 3; i++) {
        str = vmx_json_get_str(obj, members[i], &len);

        if (str == NULL || len == 0) {
            snprintf(field, sizeof(field), "%s.%s", where, members[i]);
            problem(cc, 1, field, "must be a non-empty string");
            return -1;
        }

        values[i]->data = str;
        values[i]->len = len;
    }

    target->prices = find_prices(cc, &target->provider, &target->model);

    conn = index_find(&cc->connections, target->connection_id.data,
                      target->connection_id.len);

    if (conn == NULL || conn->env != env) {
        /* the entry fails over at run time; the resource stays */
        snprintf(field, sizeof(field), "%s.connectionId", where);
        cc->soft = 1;
        problem(cc, 1, field, "connection \"%.*s\" is not in the environment",
                (int) TEXT_LEN(target->connection_id.len),
                target->connection_id.data);
        cc->soft = 0;
        return 0;
    }

    target->connection = conn;

    return 0;
}


static int
compile_targets(vmx_cfg_compile_t *cc, const vmx_cfg_environment_t *env,
    const vmx_json_t *arr, vmx_cfg_target_t **targets, size_t *ntargets,
    const char *name)
{
    char               where[48];
    const vmx_json_t  *item;

    *targets = NULL;
    *ntargets = 0;

    if (arr == NULL || arr->type == VMX_JSON_NULL) {
        return 0;
    }

    if (arr->type != VMX_JSON_ARRAY) {
        problem(cc, 1, name, "must be an array");
        return -1;
    }

    *targets = alloc_array(cc, arr->count, sizeof(vmx_cfg_target_t));
    if (*targets == NULL) {
        return -1;
    }

    for (item = arr->child; item; item = item->next) {
        snprintf(where, sizeof(where), "%s[%zu]", name, *ntargets);

        if (compile_target(cc, env, item, &(*targets)[*ntargets], where) != 0)
        {
            return -1;
        }

        (*ntargets)++;
    }

    return 0;
}


static void
compile_routing(vmx_cfg_compile_t *cc, const vmx_json_t *obj,
    vmx_cfg_resource_t *res)
{
    char                 field[VMX_CONFIG_FIELD_MAX];
    size_t               cursor;
    vmx_rules_t         *rules;
    vmx_cfg_str_t        provider, model;
    const vmx_json_t    *routing;
    vmx_rules_error_t    err;
    vmx_rules_target_t  *target;

    routing = vmx_json_get(obj, "routing");

    if (routing == NULL || routing->type == VMX_JSON_NULL) {
        return;
    }

    if (routing->type != VMX_JSON_OBJECT) {
        problem(cc, 1, "routing", "must be an object");
        return;
    }

    rules = vmx_rules_compile(routing, cc->alloc, cc->alloc_ctx, &err);
    if (rules == NULL) {
        snprintf(field, sizeof(field), "routing%s%s", err.path[0] ? "." : "",
                 err.path);
        if (err.position >= 0) {
            problem(cc, 1, field, "%s (at character %ld)", err.message,
                    err.position);
        } else {
            problem(cc, 1, field, "%s", err.message);
        }
        return;
    }

    if (!vmx_rules_active(rules)) {
        vmx_rules_free(rules);
        return;
    }

    /* a routed request is priced by the model it is routed to */
    for (cursor = 0; (target = vmx_rules_target_next(rules, &cursor)); ) {
        provider.data = target->provider.data;
        provider.len = target->provider.len;
        model.data = target->model.data;
        model.len = target->model.len;
        target->data = find_prices(cc, &provider, &model);
    }

    res->rules = rules;
}


static void
compile_resource(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    char                *p;
    size_t               mark = cc->cfg->nproblems;
    vmx_cfg_str_t        name_key;
    vmx_cfg_resource_t  *res;

    /* the slot of an object left out before is used again */
    res = &cc->cfg->resources[cc->cfg->nresources];
    memset(res, 0, sizeof(*res));

    if (get_str(cc, obj, "id", &res->id) != 0
        || get_str(cc, obj, "name", &res->name) != 0
        || (res->env = get_env(cc, obj)) == NULL)
    {
        left_out(cc, mark);
        return;
    }

    if (index_find(&cc->resources, res->id.data, res->id.len) != NULL) {
        problem(cc, 1, "id", "appears twice");
        left_out(cc, mark);
        return;
    }

    /* resources are found by their name within an environment */
    name_key.len = res->env->id.len + 1 + res->name.len;
    p = cc->alloc(cc->alloc_ctx, name_key.len);
    if (p == NULL) {
        cc->nomem = 1;
        return;
    }

    name_key.data = p;
    memcpy(p, res->env->id.data, res->env->id.len);
    p[res->env->id.len] = '/';
    memcpy(p + res->env->id.len + 1, res->name.data, res->name.len);

    if (index_add(&cc->resource_names, name_key, res) != 0) {
        problem(cc, 1, "name", "\"%.*s\" appears twice in the environment",
                (int) TEXT_LEN(res->name.len), res->name.data);
        left_out(cc, mark);
        return;
    }

    (void) index_add(&cc->resources, res->id, res);
    cc->cfg->nresources++;

    (void) (compile_target(cc, res->env, vmx_json_get(obj, "model"),
                           &res->model, "model") == 0
            && compile_targets(cc, res->env, vmx_json_get(obj,
                               "fallbackModels"), &res->fallbacks,
                               &res->nfallbacks, "fallbackModels") == 0
            && compile_targets(cc, res->env, vmx_json_get(obj,
                               "secondaryModels"), &res->secondaries,
                               &res->nsecondaries, "secondaryModels") == 0);

    res->use_fallback = !is_false(obj, "useFallback");

    (void) compile_limits(cc, obj, 0, &res->limits, &res->nlimits);

    compile_routing(cc, obj, res);

    compile_timeouts(cc, obj, &res->timeouts);

    /* a model entry without its connection fails over at run time; any
     * other fault makes the resource unavailable */
    res->unavailable = cc->hard;
}


/* API keys */

static int
hex_digit(char c)
{
    return (c >= '0' && c <= '9') ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}


/* a member of 64 hex digits into hash; -1 with a problem otherwise */
static int
get_hash(vmx_cfg_compile_t *cc, const vmx_json_t *obj, const char *name,
    unsigned char hash[32])
{
    int            hi, lo;
    size_t         n;
    vmx_cfg_str_t  hex;

    if (get_str(cc, obj, name, &hex) != 0) {
        return -1;
    }

    for (n = 0; hex.len == 64 && n < 32; n++) {
        hi = hex_digit(hex.data[2 * n]);
        lo = hex_digit(hex.data[2 * n + 1]);

        if (hi < 0 || lo < 0) {
            break;
        }

        hash[n] = (unsigned char) (hi << 4 | lo);
    }

    if (n != 32) {
        problem(cc, 1, name, "must be 64 hex digits");
        return -1;
    }

    return 0;
}


/*
 * A key a rotation replaced ("previousKeyHash") is indexed to the same key
 * until "previousKeyExpiresAt", which the data plane checks per request.
 */
static void
compile_api_key(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    char                 field[32];
    size_t               mark = cc->cfg->nproblems, n;
    vmx_cfg_str_t        hash, previous;
    const vmx_json_t    *list, *item;
    vmx_cfg_api_key_t   *key;
    vmx_cfg_resource_t  *res;

    /* the slot of a key left out before is used again */
    key = &cc->cfg->api_keys[cc->cfg->napi_keys];
    memset(key, 0, sizeof(*key));

    if (get_str(cc, obj, "id", &key->id) != 0
        || get_hash(cc, obj, "keyHash", key->hash) != 0
        || (key->env = get_env(cc, obj)) == NULL
        || opt_time(cc, obj, "expiresAt", &key->expires_at) != 0
        || opt_time(cc, obj, "previousKeyExpiresAt", &key->previous_expires_at)
           != 0)
    {
        left_out(cc, mark);
        return;
    }

    opt_str(obj, "name", &key->name);

    item = vmx_json_get(obj, "previousKeyHash");

    if ((item != NULL && item->type != VMX_JSON_NULL)
        != (key->previous_expires_at != 0))
    {
        problem(cc, 1, "previousKeyHash",
                "comes with previousKeyExpiresAt, and only with it");
        left_out(cc, mark);
        return;
    }

    if (key->previous_expires_at
        && get_hash(cc, obj, "previousKeyHash", key->previous_hash) != 0)
    {
        left_out(cc, mark);
        return;
    }

    key->enabled = !is_false(obj, "enabled");

    item = vmx_json_get(obj, "labels");
    key->labels = (item && item->type == VMX_JSON_OBJECT) ? item : NULL;

    if (compile_limits(cc, obj, 0, &key->limits, &key->nlimits) != 0) {
        left_out(cc, mark);
        return;
    }

    list = vmx_json_get(obj, "resources");
    if (list != NULL && list->type == VMX_JSON_ARRAY) {
        key->resources = alloc_array(cc, list->count,
                                     sizeof(vmx_cfg_resource_t *));
        if (key->resources == NULL) {
            return;
        }

        /* a resource that is not there is left out of the key: the key
         * serves fewer resources, never more */
        for (n = 0, item = list->child; item; n++, item = item->next) {
            res = (item->type == VMX_JSON_STRING)
                  ? index_find(&cc->resources, item->str, item->str_len)
                  : NULL;

            if (res == NULL || res->env != key->env) {
                snprintf(field, sizeof(field), "resources[%zu]", n);
                problem(cc, 1, field, "is no resource of the environment");
                continue;
            }

            key->resources[key->nresources++] = res;
        }

        if (key->nresources == 0 && list->count) {
            /* none left: the key must not widen to every resource */
            problem(cc, 1, "resources", "none of its resources is there");
            left_out(cc, mark);
            return;
        }

    } else if (list != NULL && list->type != VMX_JSON_NULL) {
        problem(cc, 1, "resources", "must be an array of resource ids");
        left_out(cc, mark);
        return;
    }

    hash.data = (const char *) key->hash;
    hash.len = sizeof(key->hash);
    previous.data = (const char *) key->previous_hash;
    previous.len = key->previous_expires_at ? sizeof(key->previous_hash) : 0;

    /* both are looked up before either is added: a key left out leaves
     * nothing in the index */
    if (index_find(&cc->key_hashes, hash.data, hash.len) != NULL) {
        problem(cc, 1, "keyHash", "appears twice");
        left_out(cc, mark);
        return;
    }

    if (previous.len
        && (index_find(&cc->key_hashes, previous.data, previous.len) != NULL
            || memcmp(previous.data, hash.data, hash.len) == 0))
    {
        problem(cc, 1, "previousKeyHash", "appears twice");
        left_out(cc, mark);
        return;
    }

    (void) index_add(&cc->key_hashes, hash, key);

    if (previous.len) {
        (void) index_add(&cc->key_hashes, previous, key);
    }

    cc->cfg->napi_keys++;
}


/* pool definitions: an environment's pools; a listed resource points to
 * its pool once the whole definition compiled */

static int
compile_pool(vmx_cfg_compile_t *cc, vmx_cfg_pool_def_t *def,
    const vmx_json_t *obj, size_t i, const vmx_cfg_resource_t **members,
    size_t *nmembers)
{
    char                 field[48];
    size_t               n;
    const vmx_json_t    *rank, *min, *max, *list, *item;
    vmx_cfg_pool_t      *pool;
    vmx_cfg_resource_t  *res;

    pool = &def->pools[i];
    pool->def = def;

    snprintf(field, sizeof(field), "pools[%zu]", i);

    if (obj->type != VMX_JSON_OBJECT) {
        problem(cc, 1, field, "must be an object");
        return -1;
    }

    opt_str(obj, "name", &pool->name);
    if (pool->name.len == 0) {
        snprintf(field, sizeof(field), "pools[%zu].name", i);
        problem(cc, 1, field, "must be a non-empty string");
        return -1;
    }

    rank = vmx_json_get(obj, "rank");
    min = vmx_json_get(obj, "minReservation");
    max = vmx_json_get(obj, "maxReservation");

    if (rank == NULL || !rank->is_int
        || min == NULL || min->type != VMX_JSON_NUMBER
        || max == NULL || max->type != VMX_JSON_NUMBER
        || min->num < 0 || min->num > max->num || max->num > 100)
    {
        problem(cc, 1, field, "rank must be an integer and 0 <= "
                "minReservation <= maxReservation <= 100");
        return -1;
    }

    pool->rank = rank->integer;
    pool->min = (int64_t) (min->num * 100 + 0.5);
    pool->max = (int64_t) (max->num * 100 + 0.5);

    list = vmx_json_get(obj, "resources");
    if (list == NULL || list->type != VMX_JSON_ARRAY) {
        snprintf(field, sizeof(field), "pools[%zu].resources", i);
        problem(cc, 1, field, "must be an array");
        return -1;
    }

    for (n = 0, item = list->child; item; n++, item = item->next) {
        snprintf(field, sizeof(field), "pools[%zu].resources[%zu]", i, n);

        res = (item->type == VMX_JSON_STRING)
              ? index_find(&cc->resources, item->str, item->str_len) : NULL;

        if (res == NULL || res->env != def->env) {
            problem(cc, 1, field, "is no resource of the environment");
            return -1;
        }

        if (res->pool != NULL) {
            problem(cc, 1, field, "resource \"%.*s\" is in two pools",
                    (int) TEXT_LEN(res->name.len), res->name.data);
            return -1;
        }

        for (size_t k = 0; k < *nmembers; k++) {
            if (members[k] == res) {
                problem(cc, 1, field, "resource \"%.*s\" is in two pools",
                        (int) TEXT_LEN(res->name.len), res->name.data);
                return -1;
            }
        }

        members[(*nmembers)++] = res;
    }

    return 0;
}


static void
compile_pool_def(vmx_cfg_compile_t *cc, const vmx_json_t *obj)
{
    size_t                       mark = cc->cfg->nproblems, n, nmembers;
    char                         field[48];
    const vmx_json_t            *list, *item, *strategy;
    vmx_cfg_pool_def_t          *def;
    const vmx_cfg_resource_t   **members;

    static const struct {
        const char  *name;
        size_t       offset;
        int64_t      scale, min, max, value;
    } params[] = {
        { "windowSeconds", offsetof(vmx_pool_strategy_t, window_ms),
          1000, 1, 60, 30 },
        { "cooldownSeconds", offsetof(vmx_pool_strategy_t, cooldown_ms),
          1000, 0, 3600, 5 },
        { "scaleUpPercent", offsetof(vmx_pool_strategy_t, scale_up),
          1, 1, 100, 50 },
    };

    /* the slot of an object left out before is used again */
    def = &cc->cfg->pool_defs[cc->cfg->npool_defs];
    memset(def, 0, sizeof(*def));

    if ((def->env = get_env(cc, obj)) == NULL) {
        left_out(cc, mark);
        return;
    }

    strategy = vmx_json_get(obj, "strategy");

    for (n = 0; n < sizeof(params) / sizeof(params[0]); n++) {
        item = strategy ? vmx_json_get(strategy, params[n].name) : NULL;

        if (item != NULL
            && (!item->is_int || item->integer < params[n].min
                || item->integer > params[n].max))
        {
            snprintf(field, sizeof(field), "strategy.%s", params[n].name);
            problem(cc, 1, field, "must be an integer from %lld to %lld",
                    (long long) params[n].min, (long long) params[n].max);
            left_out(cc, mark);
            return;
        }

        *(int64_t *) ((char *) &def->strategy + params[n].offset) =
            (item ? item->integer : params[n].value) * params[n].scale;
    }

    list = vmx_json_get(obj, "pools");
    if (list == NULL || list->type != VMX_JSON_ARRAY
        || list->count > VMX_POOLS_MAX)
    {
        problem(cc, 1, "pools", "must be an array of at most %d pools",
                VMX_POOLS_MAX);
        left_out(cc, mark);
        return;
    }

    def->pools = alloc_array(cc, list->count, sizeof(vmx_cfg_pool_t));
    members = alloc_array(cc, cc->cfg->nresources,
                          sizeof(vmx_cfg_resource_t *));
    if (def->pools == NULL || members == NULL) {
        return;
    }

    nmembers = 0;

    for (n = 0, item = list->child; item; n++, item = item->next) {
        if (compile_pool(cc, def, item, n, members, &nmembers) != 0) {
            left_out(cc, mark);
            return;
        }
    }

    if (index_add(&cc->pool_defs, def->env->id, def) != 0) {
        problem(cc, 1, "environmentId", "the environment has two pool "
                "definitions");
        left_out(cc, mark);
        return;
    }

    def->npools = list->count;

    /* the whole definition compiled: its resources join their pools */
    nmembers = 0;
    for (n = 0, item = list->child; item; n++, item = item->next) {
        const vmx_json_t  *res_list = vmx_json_get(item, "resources");

        for (size_t k = 0; k < res_list->count; k++) {
            ((vmx_cfg_resource_t *) members[nmembers++])->pool = &def->pools[n];
        }
    }

    cc->cfg->npool_defs++;
}


/* the snapshot */

int
vmx_config_compile(const char *text, size_t len, unsigned flags,
    vmx_json_alloc_pt alloc, void *alloc_ctx, vmx_config_t *cfg,
    char *err, size_t err_size)
{
    size_t             n, i, nprices;
    vmx_json_t        *root, *version, *format, *item, *prices;
    vmx_json_error_t   jerr;
    vmx_cfg_compile_t  cc;
    const vmx_json_t  *lists[5];

    static const char  *sections[] = {
        /* environments first: the others refer to them */
        "environments", "connections", "resources", "apiKeys",
        "poolDefinitions"
    };

    static void  (*compile[])(vmx_cfg_compile_t *cc, const vmx_json_t *obj) = {
        compile_environment, compile_connection, compile_resource,
        compile_api_key, compile_pool_def
    };

    memset(cfg, 0, sizeof(*cfg));
    memset(&cc, 0, sizeof(cc));
    cc.cfg = cfg;
    cc.alloc = alloc;
    cc.alloc_ctx = alloc_ctx;
    cc.flags = flags;

    root = vmx_json_parse(text, len, alloc, alloc_ctx, VMX_CONFIG_DEPTH_MAX,
                          &jerr);
    if (root == NULL) {
        snprintf(err, err_size, "invalid JSON at offset %zu: %s", jerr.offset,
                 jerr.message);
        return -1;
    }

    if (root->type != VMX_JSON_OBJECT) {
        snprintf(err, err_size, "the snapshot is not an object");
        return -1;
    }

    version = vmx_json_get(root, "version");
    if (version == NULL || !version->is_int || version->integer <= 0) {
        snprintf(err, err_size, "\"version\" must be a positive integer");
        return -1;
    }

    cfg->version = (uint64_t) version->integer;

    format = vmx_json_get(root, "format");
    if (format != NULL && (!format->is_int || format->integer <= 0)) {
        snprintf(err, err_size, "\"format\" must be a positive integer");
        return -1;
    }

    cfg->format = format ? format->integer : 1;

    if (cfg->format < VMX_CONFIG_FORMAT_OLDEST
        || cfg->format > VMX_CONFIG_FORMAT)
    {
        snprintf(err, err_size, "snapshot format %lld is not read here "
                 "(formats %d to %d)", (long long) cfg->format,
                 VMX_CONFIG_FORMAT_OLDEST, VMX_CONFIG_FORMAT);
        return VMX_CONFIG_EFORMAT;
    }

    for (n = 0; n < 5; n++) {
        lists[n] = vmx_json_get(root, sections[n]);

        if (lists[n] == NULL || lists[n]->type != VMX_JSON_ARRAY) {
            snprintf(err, err_size, "\"%s\" must be an array", sections[n]);
            return -1;
        }
    }

    cfg->environments = alloc_array(&cc, lists[0]->count,
                                    sizeof(vmx_cfg_environment_t));
    cfg->connections = alloc_array(&cc, lists[1]->count,
                                   sizeof(vmx_cfg_connection_t));
    cfg->resources = alloc_array(&cc, lists[2]->count,
                                 sizeof(vmx_cfg_resource_t));
    cfg->api_keys = alloc_array(&cc, lists[3]->count,
                                sizeof(vmx_cfg_api_key_t));
    cfg->pool_defs = alloc_array(&cc, lists[4]->count,
                                 sizeof(vmx_cfg_pool_def_t));
    cfg->problems = alloc_array(&cc, VMX_CONFIG_PROBLEMS_MAX,
                                sizeof(vmx_cfg_problem_t));

    /* optional: a snapshot without it prices nothing */
    prices = vmx_json_get(root, "prices");

    if (prices != NULL && prices->type != VMX_JSON_ARRAY) {
        snprintf(err, err_size, "\"prices\" must be an array");
        return -1;
    }

    nprices = prices ? prices->count : 0;
    nprices = nprices < VMX_CONFIG_PRICES_MAX ? nprices
                                              : VMX_CONFIG_PRICES_MAX;
    cfg->prices = alloc_array(&cc, nprices, sizeof(vmx_cfg_price_t));

    if (cc.nomem
        || index_init(&cc, &cc.environments, lists[0]->count) != 0
        || index_init(&cc, &cc.connections, lists[1]->count) != 0
        || index_init(&cc, &cc.resources, lists[2]->count) != 0
        || index_init(&cc, &cc.resource_names, lists[2]->count) != 0
        || index_init(&cc, &cc.key_hashes, 2 * lists[3]->count) != 0
        || index_init(&cc, &cc.pool_defs, lists[4]->count) != 0
        || index_init(&cc, &cc.prices, nprices) != 0)
    {
        goto nomem;
    }

    /* before the resources: their models take their prices */

    for (i = 0, item = prices ? prices->child : NULL; item;
         i++, item = item->next)
    {
        begin_object(&cc, VMX_CFG_PRICE, i, item);
        n = cfg->nproblems;

        if (i == VMX_CONFIG_PRICES_MAX) {
            problem(&cc, 1, "", "is beyond the first %d prices",
                    VMX_CONFIG_PRICES_MAX);
            left_out(&cc, n);
            break;
        }

        if (item->type != VMX_JSON_OBJECT) {
            problem(&cc, 1, "", "is not an object");
            left_out(&cc, n);
            continue;
        }

        compile_price(&cc, item);

        if (cc.nomem) {
            goto nomem;
        }
    }

    for (n = 0; n < 5; n++) {
        for (i = 0, item = lists[n]->child; item; i++, item = item->next) {
            begin_object(&cc, (vmx_cfg_kind_e) n, i, item);

            if (item->type != VMX_JSON_OBJECT) {
                size_t  mark = cfg->nproblems;

                problem(&cc, 1, "", "is not an object");
                left_out(&cc, mark);
                continue;
            }

            compile[n](&cc, item);

            if (cc.nomem) {
                goto nomem;
            }
        }
    }

    return 0;

nomem:

    vmx_config_free(cfg);
    snprintf(err, err_size, "out of memory");
    return -1;
}


void
vmx_config_free(vmx_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nresources; i++) {
        if (cfg->resources[i].rules) {
            vmx_rules_free(cfg->resources[i].rules);
            cfg->resources[i].rules = NULL;
        }
    }
}


const char *
vmx_config_kind_name(vmx_cfg_kind_e kind)
{
    return (size_t) kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[kind]
                                                            : "object";
}
