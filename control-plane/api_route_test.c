/*
 * api_route_test: the routing test bench,
 * POST .../resources/{id}/route-test (docs/ARCHITECTURE.md, "Routing test
 * bench").
 *
 * The resource's routing (or that of an unsaved document in the body) is
 * compiled and evaluated by lib/vmx_rules, the data plane's own code, with
 * a trace; the prompt tokens are counted by lib/vmx_tokenizer as the data
 * plane counts them.  No provider is called.  What the control plane cannot
 * know comes from the body: errorRate() values (0 when not given) and the
 * traffic draw (drawn here when not given, and answered so that it can be
 * sent again).
 */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "api.h"
#include "config.h"
#include "log.h"
#include "vmx_json.h"
#include "vmx_rules.h"
#include "vmx_tokenizer.h"

#define TRACE_GROUPS     64
#define TRACE_CONDS      256
#define ERROR_RATES_MAX  32
#define RANKS_MAX        (64 * 1024 * 1024)
#define DRAW_ALL         4294967296.0       /* 2^32: draws are over 32 bits */

static const char *const members[] = {
    "request", "errorRates", "random", "resource", "apiKey", "sourceIp", NULL
};


/* errorRate(minutes, status) values from the body; status 0 is "any" */
typedef struct {
    unsigned   minutes[ERROR_RATES_MAX];
    unsigned   status[ERROR_RATES_MAX];
    double     rate[ERROR_RATES_MAX];
    size_t     n;
} rates_t;


/* ---------------------------------------------------------------------- */
/* the tokenizer, loaded at the first use: 11 MB the daemon needs only here */

static pthread_once_t    tokenizer_once = PTHREAD_ONCE_INIT;
static vmx_tokenizer_t  *tokenizer;


static void
tokenizer_load(void)
{
    const char  *path = config_current()->tokenizer_file;
    struct stat  st;
    char        *ranks, err[256];
    FILE        *f;
    size_t       n = 0;

    if (path == NULL) {
        return;
    }
    f = fopen(path, "r");
    if (f == NULL || fstat(fileno(f), &st) != 0 || st.st_size > RANKS_MAX) {
        log_error("route-test: cannot read VMX_TOKENIZER %s: %s", path,
                  f == NULL ? strerror(errno) : "too large");
        if (f != NULL) {
            fclose(f);
        }
        return;
    }
    ranks = malloc((size_t) st.st_size + 1);
    if (ranks != NULL) {
        n = fread(ranks, 1, (size_t) st.st_size, f);
    }
    fclose(f);
    if (ranks == NULL) {
        log_error("route-test: out of memory reading VMX_TOKENIZER");
        return;
    }
    tokenizer = vmx_tokenizer_create(ranks, n, NULL, NULL, err, sizeof(err));
    if (tokenizer == NULL) {
        log_error("route-test: VMX_TOKENIZER %s: %s", path, err);
    }
    free(ranks);
}


/* the prompt tokens as the data plane estimates them; -1: no tokenizer */
static int64_t
prompt_tokens(const vmx_json_t *request)
{
    vmx_tokenizer_scratch_t  *s;
    int64_t                   n;

    pthread_once(&tokenizer_once, tokenizer_load);
    if (tokenizer == NULL || (s = vmx_tokenizer_scratch_create(tokenizer)) == NULL) {
        return -1;
    }
    n = vmx_tokenizer_chat_estimate(tokenizer, s, request);
    vmx_tokenizer_scratch_free(s);
    /* the data plane counts a request it cannot estimate as 0 */
    return n < 0 ? 0 : n;
}


/* ---------------------------------------------------------------------- */
/* the body                                                               */

static double
error_rate(void *ctx, unsigned minutes, unsigned status)
{
    const rates_t  *r = ctx;

    for (size_t i = 0; i < r->n; i++) {
        if (r->minutes[i] == minutes && r->status[i] == status) {
            return r->rate[i];
        }
    }
    return 0;
}


static uint32_t
fixed_draw(void *ctx)
{
    return *(const uint32_t *) ctx;
}


/* errorRates: {"<minutes>" or "<minutes>:<status>": percent} */
static bool
parse_rates(http_req_t *req, const cJSON *rates, rates_t *out)
{
    const cJSON *item;
    char         field[96];

    out->n = 0;
    if (rates == NULL || cJSON_IsNull(rates)) {
        return true;
    }
    if (!cJSON_IsObject(rates)) {
        http_invalid(req, "errorRates", "errorRates must be an object {\"<minutes>\" or"
                     " \"<minutes>:<status>\": percent}");
        return false;
    }
    cJSON_ArrayForEach(item, rates) {
        unsigned long  minutes, status = 0;
        char          *end;

        snprintf(field, sizeof(field), "errorRates.%.64s", item->string);
        errno = 0;
        minutes = strtoul(item->string, &end, 10);
        if (*end == ':') {
            status = strtoul(end + 1, &end, 10);
        }
        if (out->n == ERROR_RATES_MAX) {
            http_invalid(req, field, "errorRates holds at most %d values", ERROR_RATES_MAX);
            return false;
        }
        if (errno != 0 || *end != '\0' || item->string[0] < '0' || item->string[0] > '9'
            || minutes < 1 || minutes > 60 || (status != 0 && (status < 100 || status > 599)))
        {
            http_invalid(req, field, "%s: the key must be minutes 1..60, optionally with"
                         " \":<status>\" 100..599, as in errorRate(minutes, status)", field);
            return false;
        }
        if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0 && item->valuedouble <= 100)) {
            http_invalid(req, field, "%s must be a percent from 0 to 100", field);
            return false;
        }
        out->minutes[out->n] = (unsigned) minutes;
        out->status[out->n] = (unsigned) status;
        out->rate[out->n++] = item->valuedouble;
    }
    return true;
}


static bool
check_body(http_req_t *req)
{
    const cJSON *item, *v;

    cJSON_ArrayForEach(item, req->json) {
        bool known = false;

        for (int i = 0; members[i] != NULL; i++) {
            known = known || strcmp(item->string, members[i]) == 0;
        }
        if (!known) {
            http_invalid(req, item->string, "unknown field \"%s\"", item->string);
            return false;
        }
    }
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(req->json, "request"))) {
        http_invalid(req, "request", "request must be an object (a chat completion body)");
        return false;
    }
    v = cJSON_GetObjectItemCaseSensitive(req->json, "random");
    if (v != NULL && !cJSON_IsNull(v)
        && (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 100)))
    {
        http_invalid(req, "random", "random must be a number from 0 to 100 (not 100): the"
                     " traffic draw, which a group with traffic t takes when below t");
        return false;
    }
    v = cJSON_GetObjectItemCaseSensitive(req->json, "resource");
    if (v != NULL && !cJSON_IsNull(v) && !cJSON_IsObject(v)) {
        http_invalid(req, "resource", "resource must be a resource document");
        return false;
    }
    v = cJSON_GetObjectItemCaseSensitive(req->json, "sourceIp");
    if (v != NULL && !cJSON_IsString(v)) {
        http_invalid(req, "sourceIp", "sourceIp must be a string");
        return false;
    }
    v = cJSON_GetObjectItemCaseSensitive(req->json, "apiKey");
    if (v != NULL && (!cJSON_IsObject(v)
        || (cJSON_HasObjectItem(v, "id")
            && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "id")))
        || (cJSON_HasObjectItem(v, "labels")
            && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "labels")))))
    {
        http_invalid(req, "apiKey", "apiKey must be an object {id: string, labels: object}");
        return false;
    }
    return true;
}


/* the error of an unsaved resource names its place in the body */
static void
prefix_field(http_req_t *req, const char *prefix)
{
    cJSON       *root = req->response ? cJSON_Parse(req->response) : NULL;
    cJSON       *details = cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(root, "error"), "details");
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(details, "field");
    char         text[512];

    if (!cJSON_IsString(field)) {
        cJSON_Delete(root);
        return;
    }
    snprintf(text, sizeof(text), "%s%s", prefix, field->valuestring);
    cJSON_ReplaceItemInObjectCaseSensitive(details, "field", cJSON_CreateString(text));
    http_reply(req, req->status, root);
}


/* item as a tree of arena (which also holds the text the tree points
 * into); NULL when out of memory or past vmx_json's memory bound */
static const vmx_json_t *
to_vmx_json(const cJSON *item, arena_t *arena)
{
    char              *text = cJSON_PrintUnformatted(item), *copy = NULL;
    vmx_json_error_t   jerr;
    size_t             len = 0;

    if (text != NULL) {
        len = strlen(text);
        copy = arena_alloc(arena, len + 1);
        if (copy != NULL) {
            memcpy(copy, text, len + 1);
        }
        free(text);
    }
    return copy != NULL ? vmx_json_parse(copy, len, arena_alloc, arena, 0, &jerr) : NULL;
}


/* ---------------------------------------------------------------------- */
/* the answer                                                             */

static void
str_member(cJSON *obj, const char *name, const vmx_rules_str_t *s)
{
    if (s->data != NULL && s->len > 0) {
        cJSON_AddStringToObject(obj, name, s->data);
    }
}


static cJSON *
target_json(const vmx_rules_target_t *t)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "provider", t->provider.data);
    cJSON_AddStringToObject(o, "model", t->model.data);
    cJSON_AddStringToObject(o, "connectionId", t->connection_id.data);
    return o;
}


/* a model entry of the (validated) document as a target */
static void
doc_target(const cJSON *entry, vmx_rules_target_t *t)
{
    static const char *const names[] = { "provider", "model", "connectionId" };
    vmx_rules_str_t         *s[] = { &t->provider, &t->model, &t->connection_id };

    for (int i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, names[i]);

        s[i]->data = cJSON_IsString(v) ? v->valuestring : "";
        s[i]->len = strlen(s[i]->data);
    }
}


static cJSON *
value_json(const vmx_rules_trace_cond_t *c)
{
    switch (c->kind) {
    case VMX_RULES_VALUE_BOOL:
        return cJSON_CreateBool(c->num != 0);
    case VMX_RULES_VALUE_NUMBER:
        return cJSON_CreateNumber(c->num);
    case VMX_RULES_VALUE_STRING:
        return cJSON_CreateString(c->value);
    case VMX_RULES_VALUE_JSON:
        /* a cut array or object is no JSON: its text then */
        return c->truncated ? cJSON_CreateString(c->value) : cJSON_Parse(c->value);
    default:
        return cJSON_CreateNull();
    }
}


static cJSON *
condition_json(const vmx_rules_trace_cond_t *c)
{
    cJSON *o = cJSON_CreateObject();
    char   field[VMX_RULES_PATH_MAX + 16];

    snprintf(field, sizeof(field), "routing.%s", c->path.data);
    cJSON_AddStringToObject(o, "field", field);
    if (c->is_group) {
        cJSON_AddTrueToObject(o, "group");
    } else {
        cJSON_AddStringToObject(o, "expression", c->text.data);
        if (c->position >= 0) {
            cJSON_AddNumberToObject(o, "position", (double) c->position);
        }
        cJSON_AddItemToObject(o, "value", value_json(c));
        if (c->kind == VMX_RULES_VALUE_MISSING) {
            cJSON_AddTrueToObject(o, "missing");
        }
        if (c->truncated) {
            cJSON_AddTrueToObject(o, "truncated");
        }
    }
    cJSON_AddBoolToObject(o, "result", c->result);
    return o;
}


static cJSON *
groups_json(const vmx_rules_trace_t *t)
{
    cJSON *list = cJSON_CreateArray();

    for (size_t i = 0; i < t->ngroups; i++) {
        const vmx_rules_trace_group_t  *g = &t->groups[i];
        cJSON                          *o = cJSON_CreateObject(), *conds;

        cJSON_AddNumberToObject(o, "index", (double) i);
        str_member(o, "id", &g->id);
        str_member(o, "description", &g->description);
        cJSON_AddBoolToObject(o, "enabled", g->enabled);
        cJSON_AddStringToObject(o, "action",
                                g->action == VMX_RULES_BLOCK ? "BLOCK" : "CALL_MODEL");
        cJSON_AddItemToObject(o, "then", g->then ? target_json(g->then) : cJSON_CreateNull());
        cJSON_AddNumberToObject(o, "traffic", g->traffic);
        cJSON_AddBoolToObject(o, "matched", g->matched);
        cJSON_AddBoolToObject(o, "chosen", g->chosen);
        if (g->drawn) {
            cJSON_AddNumberToObject(o, "draw", g->draw / DRAW_ALL * 100);
            cJSON_AddBoolToObject(o, "taken", g->taken);
        }
        conds = cJSON_AddArrayToObject(o, "conditions");
        for (size_t k = g->first; k < g->first + g->nconds; k++) {
            cJSON_AddItemToArray(conds, condition_json(&t->conds[k]));
        }
        cJSON_AddItemToArray(list, o);
    }
    return list;
}


/* the chain: the first model, then the fallbacks when useFallback */
static void
add_models(cJSON *root, const cJSON *doc, const vmx_rules_target_t *first)
{
    cJSON       *list;
    const cJSON *entry;

    cJSON_AddItemToObject(root, "model", first ? target_json(first) : cJSON_CreateNull());
    list = cJSON_AddArrayToObject(root, "fallbackModels");
    if (first == NULL || !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "useFallback"))) {
        return;
    }
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(doc, "fallbackModels")) {
        vmx_rules_target_t  t;

        doc_target(entry, &t);
        cJSON_AddItemToArray(list, target_json(&t));
    }
}


/* ---------------------------------------------------------------------- */

typedef struct {
    const cJSON              *doc;
    vmx_rules_t              *rules;
    vmx_rules_input_t         in;
    rates_t                   rates;
    uint32_t                  draw;
    double                    random;       /* the draw in percent */
    bool                      drawn;
    const vmx_rules_target_t *secondary;    /* vmx.secondaryModelIndex's */
    vmx_rules_target_t        secondary_t;
    int64_t                   tokens;
} bench_t;


/* vmx.secondaryModelIndex: the client's model, which skips routing */
static bool
secondary_model(http_req_t *req, const cJSON *request, bench_t *b)
{
    const cJSON *vmx = cJSON_GetObjectItemCaseSensitive(request, "vmx");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(vmx, "secondaryModelIndex");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(b->doc, "secondaryModels");
    const cJSON *entry;

    if (index == NULL || cJSON_IsNull(index)) {
        return true;
    }
    entry = cJSON_IsNumber(index) && index->valuedouble >= 0
            && index->valuedouble == (double) index->valueint
            && index->valuedouble < cJSON_GetArraySize(list)
            ? cJSON_GetArrayItem(list, index->valueint) : NULL;
    if (entry == NULL) {
        http_invalid(req, "request.vmx.secondaryModelIndex", "'vmx.secondaryModelIndex' does"
                     " not name a secondary model of this resource");
        return false;
    }
    doc_target(entry, &b->secondary_t);
    b->secondary = &b->secondary_t;
    return true;
}


/* the inputs the data plane would give vmx_rules_eval */
static bool
inputs(http_req_t *req, bench_t *b, arena_t *arena, const vmx_rules_target_t *primary)
{
    const cJSON       *body = req->json;
    const cJSON       *random = cJSON_GetObjectItemCaseSensitive(body, "random");
    const cJSON       *key = cJSON_GetObjectItemCaseSensitive(body, "apiKey");
    const cJSON       *id = cJSON_GetObjectItemCaseSensitive(key, "id");
    const cJSON       *labels = cJSON_GetObjectItemCaseSensitive(key, "labels");
    const cJSON       *ip = cJSON_GetObjectItemCaseSensitive(body, "sourceIp");
    const vmx_json_t  *request;

    request = to_vmx_json(cJSON_GetObjectItemCaseSensitive(body, "request"), arena);
    if (request == NULL) {
        /* as the data plane, which refuses such a body */
        http_invalid(req, "request", "request is nested too deep or too dense for the data"
                     " plane's parser");
        return false;
    }
    if (vmx_rules_input_init(&b->in, request, arena_alloc, arena) != 0
        || (labels != NULL && (b->in.api_key_labels = to_vmx_json(labels, arena)) == NULL)
        || (b->in.scratch = arena_alloc(arena, VMX_RULES_SCRATCH_MIN)) == NULL)
    {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        return false;
    }
    b->tokens = prompt_tokens(request);
    b->in.tokens_input = b->tokens < 0 ? 0 : b->tokens;
    if (cJSON_IsString(id)) {
        b->in.api_key_id.data = id->valuestring;
        b->in.api_key_id.len = strlen(id->valuestring);
    }
    if (cJSON_IsString(ip)) {
        b->in.source_ip.data = ip->valuestring;
        b->in.source_ip.len = strlen(ip->valuestring);
    }
    b->in.error_rate = error_rate;
    b->in.error_rate_ctx = &b->rates;
    b->drawn = !cJSON_IsNumber(random);
    b->draw = b->drawn ? randombytes_random()
              : random->valuedouble / 100 * DRAW_ALL >= DRAW_ALL - 1 ? UINT32_MAX
              : (uint32_t) (random->valuedouble / 100 * DRAW_ALL);
    b->random = b->drawn ? b->draw / DRAW_ALL * 100 : random->valuedouble;
    b->in.random = fixed_draw;
    b->in.random_ctx = &b->draw;
    b->in.scratch_size = VMX_RULES_SCRATCH_MIN;
    b->in.primary = primary;
    return true;
}


static void
answer(http_req_t *req, bench_t *b, const vmx_rules_trace_t *t,
    const vmx_rules_result_t *out, bool unsaved)
{
    cJSON *root = cJSON_CreateObject(), *tokens, *split;
    bool   matched = b->secondary == NULL && out->matched;

    cJSON_AddStringToObject(root, "resourceId", http_param(req, "id"));
    cJSON_AddStringToObject(root, "resourceSource", unsaved ? "request" : "stored");
    cJSON_AddBoolToObject(root, "routingEnabled", vmx_rules_active(b->rules));
    if (b->secondary != NULL) {
        cJSON_AddStringToObject(root, "routingSkipped", "secondaryModelIndex");
    }
    if (matched) {
        cJSON_AddNumberToObject(root, "matchedGroup", (double) out->group_index);
    } else {
        cJSON_AddNullToObject(root, "matchedGroup");
    }
    cJSON_AddStringToObject(root, "action", matched && out->action == VMX_RULES_BLOCK
                                            ? "BLOCK" : "CALL_MODEL");
    cJSON_AddBoolToObject(root, "routed", matched && out->target != NULL);
    add_models(root, b->doc, b->secondary ? b->secondary
                             : !matched ? out->original
                             : out->action == VMX_RULES_BLOCK ? NULL
                             : out->target ? out->target : out->original);

    tokens = cJSON_AddObjectToObject(root, "tokens");
    cJSON_AddNumberToObject(tokens, "prompt", (double) b->in.tokens_input);
    cJSON_AddBoolToObject(tokens, "estimated", b->tokens >= 0);
    cJSON_AddStringToObject(root, "errorRateSource", "request");

    split = cJSON_AddObjectToObject(root, "trafficSplit");
    cJSON_AddNumberToObject(split, "random", b->random);
    cJSON_AddStringToObject(split, "source", b->drawn ? "drawn" : "request");
    cJSON_AddNumberToObject(split, "passed", b->secondary ? 0 : out->traffic_passed);

    cJSON_AddItemToObject(root, "groups", b->secondary ? cJSON_CreateArray() : groups_json(t));
    cJSON_AddBoolToObject(root, "truncated", t->truncated);
    http_reply(req, 200, root);
}


void
api_resources_route_test(http_req_t *req)
{
    const cJSON             *given = cJSON_GetObjectItemCaseSensitive(req->json, "resource");
    cJSON                   *stored = NULL, *unsaved = NULL;
    arena_t                  arena = { NULL };
    bench_t                  b;
    vmx_rules_target_t       primary;
    vmx_rules_result_t       out;
    vmx_rules_trace_t        t;

    memset(&b, 0, sizeof(b));
    memset(&t, 0, sizeof(t));
    if (!check_body(req) || !parse_rates(req, cJSON_GetObjectItemCaseSensitive(req->json,
                                                                              "errorRates"),
                                         &b.rates)
        || (stored = api_resources_fetch(req)) == NULL)
    {
        return;
    }
    if (cJSON_IsObject(given) && (unsaved = api_resources_check(req, given)) == NULL) {
        prefix_field(req, "resource.");
        goto done;
    }
    b.doc = unsaved ? unsaved : stored;
    /* an unsaved document's routing compiled when it was validated */
    b.rules = api_routing_compile(req, cJSON_GetObjectItemCaseSensitive(b.doc, "routing"),
                                  &arena);
    if (b.rules == NULL) {
        goto done;
    }
    doc_target(cJSON_GetObjectItemCaseSensitive(b.doc, "model"), &primary);
    t.groups = calloc(TRACE_GROUPS, sizeof(vmx_rules_trace_group_t));
    t.conds = calloc(TRACE_CONDS, sizeof(vmx_rules_trace_cond_t));
    t.groups_max = TRACE_GROUPS;
    t.conds_max = TRACE_CONDS;
    if (t.groups == NULL || t.conds == NULL) {
        http_error(req, 500, "internal_error", NULL, "out of memory");
        goto done;
    }
    if (!secondary_model(req, cJSON_GetObjectItemCaseSensitive(req->json, "request"), &b)
        || !inputs(req, &b, &arena, &primary))
    {
        goto done;
    }
    /* a client's secondary model skips routing, as in the data plane */
    if (b.secondary == NULL) {
        (void) vmx_rules_eval_trace(b.rules, &b.in, &out, &t);
    } else {
        memset(&out, 0, sizeof(out));
    }
    answer(req, &b, &t, &out, unsaved != NULL);

done:
    vmx_rules_free(b.rules);
    free(t.groups);
    free(t.conds);
    arena_reset(&arena, true);
    cJSON_Delete(unsaved);
    cJSON_Delete(stored);
}
