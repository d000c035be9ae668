/*
 * Unit tests of lib/vmx_rules.c: every comparator with every value type,
 * groups (nesting, AND/OR, empty, disabled, BLOCK, traffic), the expression
 * language (precedence, functions, variables, every error and its
 * position), errorRate, the input's message texts and the scratch; traces
 * (every case run by run() is evaluated with and without one, and must
 * decide the same).
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "vmx_rules.h"


typedef struct block_s  block_t;

struct block_s {
    block_t      *next;
    max_align_t   data[];
};

typedef struct {
    block_t      *blocks;
    size_t        left;       /* allocations that may succeed when limited */
    unsigned      limited;
} arena_t;


static arena_t            arena;
static vmx_rules_error_t  err;


static void *
arena_alloc(void *ctx, size_t size)
{
    arena_t  *a = ctx;
    block_t  *b;

    if (a->limited) {
        if (a->left == 0) {
            return NULL;
        }
        a->left--;
    }
    b = malloc(sizeof(block_t) + size);
    if (b == NULL) {
        abort();
    }
    b->next = a->blocks;
    a->blocks = b;
    return b->data;
}


static void
arena_reset(void)
{
    while (arena.blocks != NULL) {
        block_t  *b = arena.blocks;

        arena.blocks = b->next;
        free(b);
    }
    arena.limited = 0;
}


/* ---------------------------------------------------------------------- */
/* the request every test evaluates                                       */

static const char  body_text[] =
    "{\"model\":\"chat\",\"temperature\":0.5,\"stream\":true,\"user\":\"Bob\","
    "\"gone\":null,"
    "\"metadata\":{\"tier\":\"gold\",\"cost-center\":\"cc-1\",\"n\":3},"
    "\"tags\":[\"a\",\"b\",3],"
    "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},"
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},"
    "{\"type\":\"text\",\"text\":\"SQL please\"}]}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}";

static const vmx_rules_target_t  primary = {
    { "openai", 6 }, { "gpt-4o", 6 }, { "c-primary", 9 }, NULL
};

static char        scratch[8192];
static unsigned    rate_calls, rate_minutes, rate_status;
static int         use_error_rate = 1;
static uint32_t    random_values[4];
static unsigned    random_next, random_calls;


static double
error_rate(void *ctx, unsigned minutes, unsigned status)
{
    rate_calls++;
    rate_minutes = minutes;
    rate_status = status;
    return minutes * 3.0;
}


static uint32_t
next_random(void *ctx)
{
    random_calls++;
    return random_values[random_next++ % 4];
}


static const vmx_json_t *
parse(const char *text)
{
    vmx_json_error_t  jerr;

    return vmx_json_parse(text, strlen(text), arena_alloc, &arena, 0, &jerr);
}


static void
input(vmx_rules_input_t *in)
{
    static const char  labels[] = "{\"team\":\"ml\",\"tier\":\"gold\"}";

    if (vmx_rules_input_init(in, parse(body_text), arena_alloc, &arena) != 0) {
        abort();
    }
    in->tokens_input = 1234;
    in->api_key_id.data = "key-1";
    in->api_key_id.len = 5;
    in->api_key_labels = parse(labels);
    in->source_ip.data = "10.0.0.7";
    in->source_ip.len = 8;
    in->error_rate = use_error_rate ? error_rate : NULL;
    in->random = next_random;
    in->scratch = scratch;
    in->scratch_size = sizeof(scratch);
    in->primary = &primary;
}


static vmx_rules_t *
compile(const char *routing)
{
    vmx_rules_t  *rules = vmx_rules_compile_text(routing, strlen(routing),
                                                       arena_alloc, &arena, &err);

    if (rules == NULL) {
        fprintf(stderr, "compile: %s (at %s, %ld) of %s\n", err.message, err.path,
                err.position, routing);
    }
    return rules;
}


static vmx_rules_trace_group_t  trace_groups[8];
static vmx_rules_trace_cond_t   trace_conds[16];
static vmx_rules_trace_t        trace = {
    trace_groups, 8, 0, trace_conds, 16, 0, 0
};


static int
same_result(const vmx_rules_result_t *a, const vmx_rules_result_t *b)
{
    return a->matched == b->matched && a->action == b->action
           && a->group_index == b->group_index && a->target == b->target
           && a->original == b->original && a->traffic_passed == b->traffic_passed;
}


/*
 * 1 matched, 0 not, -1 compile error (err says).  Evaluated with a trace
 * first, which must decide the same; the counters of the error rate and
 * draw callbacks are those of the evaluation without.
 */
static int
run(const char *routing, vmx_rules_result_t *out)
{
    vmx_rules_t        *rules;
    vmx_rules_input_t   in;
    vmx_rules_result_t  res, traced;
    unsigned            next = random_next, calls = random_calls, rates = rate_calls;
    int                 rc, rc_traced;

    rules = vmx_rules_compile_text(routing, strlen(routing), arena_alloc, &arena, &err);
    if (rules == NULL) {
        return -1;
    }
    input(&in);
    rc_traced = vmx_rules_eval_trace(rules, &in, &traced, &trace);
    random_next = next;
    random_calls = calls;
    rate_calls = rates;
    rc = vmx_rules_eval(rules, &in, out != NULL ? out : &res);
    if (rc != rc_traced || !same_result(out != NULL ? out : &res, &traced)) {
        fprintf(stderr, "  traced and plain evaluations differ on %s\n", routing);
        CHECK(0);
    }
    vmx_rules_free(rules);
    return rc;
}


/* a routing of one ADVANCED group around expr */
static int
expr(const char *e)
{
    char    text[2048];
    size_t  n;

    n = (size_t) snprintf(text, sizeof(text), "{\"enabled\":true,\"conditions\":"
                          "[{\"mode\":\"ADVANCED\",\"expression\":\"");
    n += vmx_json_escape(text + n, e, strlen(e));
    snprintf(text + n, sizeof(text) - n, "\"}]}");
    return run(text, NULL);
}


/* a routing of one UI group with one condition; value is JSON text */
static int
cond(const char *variable, const char *comparator, const char *type, const char *value)
{
    char  text[2048];

    snprintf(text, sizeof(text), "{\"enabled\":true,\"conditions\":[{\"type\":\"group\","
             "\"operator\":\"AND\",\"conditions\":[{\"type\":\"condition\",\"id\":\"c\","
             "\"label\":\"l\",\"expression\":\"%s\",\"comparator\":\"%s\","
             "\"value\":{\"type\":\"%s\",\"expression\":%s}}]}]}",
             variable, comparator, type, value);
    return run(text, NULL);
}


static int
error_is(const char *path, long position, const char *message)
{
    if (strcmp(err.path, path) == 0 && err.position == position
        && strstr(err.message, message) != NULL)
    {
        return 1;
    }
    fprintf(stderr, "  got error \"%s\" at %s, %ld; want \"%s\" at %s, %ld\n",
            err.message, err.path, err.position, message, path, position);
    return 0;
}


/* ---------------------------------------------------------------------- */

typedef struct {
    const char  *variable, *comparator, *type, *value;
    int          want;
} cond_case_t;

static const cond_case_t  cond_cases[] = {
    /* EQUAL / NOT_EQUAL */
    { "request.model", "EQUAL", "string", "\"chat\"", 1 },
    { "request.model", "EQUAL", "string", "\"Chat\"", 0 },
    { "tokens.input", "EQUAL", "string", "\"1234\"", 1 },
    { "tokens.input", "EQUAL", "number", "\"1234\"", 1 },
    { "tokens.input", "EQUAL", "number", "1234", 1 },
    { "request.temperature", "EQUAL", "number", "\"0.5\"", 1 },
    { "request.model", "EQUAL", "number", "\"1\"", 0 },
    { "request.stream", "EQUAL", "boolean", "\"true\"", 1 },
    { "request.stream", "EQUAL", "boolean", "\"TRUE\"", 1 },
    { "request.stream", "EQUAL", "boolean", "false", 0 },
    { "request.model", "EQUAL", "comma-delimited-list", "\"a, chat ,b\"", 1 },
    { "request.model", "EQUAL", "comma-delimited-list", "\"a,b\"", 0 },
    { "request.metadata", "EQUAL", "json-object",
      "\"{\\\"n\\\":3,\\\"tier\\\":\\\"gold\\\",\\\"cost-center\\\":\\\"cc-1\\\"}\"", 1 },
    { "request.metadata", "EQUAL", "json-object", "{\"tier\":\"gold\"}", 0 },
    { "request.tags", "EQUAL", "json-array", "\"[\\\"a\\\",\\\"b\\\",3]\"", 1 },
    { "request.tags", "EQUAL", "json-array", "[\"b\",\"a\",3]", 0 },
    { "request.model", "NOT_EQUAL", "string", "\"x\"", 1 },
    { "request.model", "NOT_EQUAL", "string", "\"chat\"", 0 },
    { "request.nope", "NOT_EQUAL", "string", "\"x\"", 0 },
    { "tokens.input", "NOT_EQUAL", "number", "\"1\"", 1 },
    { "request.stream", "NOT_EQUAL", "boolean", "\"false\"", 1 },
    { "request.model", "NOT_EQUAL", "comma-delimited-list", "\"x,y\"", 1 },
    { "request.model", "NOT_EQUAL", "comma-delimited-list", "\"x,chat\"", 0 },
    { "request.tags", "NOT_EQUAL", "json-array", "[1]", 1 },
    { "request.metadata", "NOT_EQUAL", "json-object", "{}", 1 },

    /* ordering */
    { "tokens.input", "GREATER_THAN", "number", "\"1000\"", 1 },
    { "tokens.input", "GREATER_THAN", "number", "\"1234\"", 0 },
    { "tokens.input", "GREATER_THAN", "string", "\"999\"", 1 },
    { "request.model", "GREATER_THAN", "string", "\"apple\"", 1 },
    { "request.model", "GREATER_THAN", "number", "\"5\"", 0 },
    { "tokens.input", "GREATER_THAN_OR_EQUAL", "number", "\"1234\"", 1 },
    { "tokens.input", "LESS_THAN", "number", "\"1234\"", 0 },
    { "request.messagesCount", "LESS_THAN", "number", "\"3\"", 1 },
    { "tokens.input", "LESS_THAN_OR_EQUAL", "number", "\"1234\"", 1 },
    { "request.model", "LESS_THAN_OR_EQUAL", "string", "\"chat\"", 1 },
    { "request.nope", "LESS_THAN", "number", "\"1\"", 0 },
    { "request.toolsCount", "GREATER_THAN", "number", "\"0\"", 1 },

    /* CONTAINS / NOT_CONTAINS */
    { "request.lastMessage.content", "CONTAINS", "string", "\"SQL\"", 1 },
    { "request.lastMessage.content", "CONTAINS", "string", "\"sql\"", 0 },
    { "request.allMessagesContent", "CONTAINS", "string", "\"brief. Hello\"", 1 },
    { "request.lastMessage.content", "CONTAINS", "comma-delimited-list", "\"foo, SQL\"", 1 },
    { "request.lastMessage.content", "NOT_CONTAINS", "comma-delimited-list", "\"foo,bar\"", 1 },
    { "request.lastMessage.content", "NOT_CONTAINS", "comma-delimited-list", "\"foo,SQL\"", 0 },
    { "request.nope", "NOT_CONTAINS", "string", "\"x\"", 0 },
    { "request.tags", "CONTAINS", "number", "\"3\"", 1 },
    { "request.tags", "CONTAINS", "string", "\"a\"", 1 },
    { "request.tags", "CONTAINS", "string", "\"c\"", 0 },
    { "request.tags", "CONTAINS", "boolean", "\"true\"", 0 },
    { "request.stream", "CONTAINS", "boolean", "\"true\"", 1 },
    { "request.metadata", "CONTAINS", "json-object", "{\"tier\":\"gold\"}", 1 },
    { "request.metadata", "CONTAINS", "json-object", "{\"tier\":\"x\"}", 0 },
    { "request.metadata", "CONTAINS", "string", "\"cost-center\"", 1 },
    { "request.tags", "CONTAINS", "json-array", "[\"b\",\"a\"]", 1 },
    { "request.tags", "CONTAINS", "json-array", "[\"z\"]", 0 },
    { "request.tags", "NOT_CONTAINS", "json-array", "[\"z\"]", 1 },
    { "request.messages", "CONTAINS", "json-object", "{\"role\":\"system\"}", 1 },
    { "tokens.input", "CONTAINS", "number", "\"23\"", 1 },

    /* STARTS_WITH / ENDS_WITH */
    { "sourceIp", "STARTS_WITH", "string", "\"10.\"", 1 },
    { "sourceIp", "STARTS_WITH", "string", "\"192.\"", 0 },
    { "sourceIp", "ENDS_WITH", "string", "\".7\"", 1 },
    { "sourceIp", "STARTS_WITH", "comma-delimited-list", "\"192.168., 10.\"", 1 },
    { "sourceIp", "ENDS_WITH", "comma-delimited-list", "\".8,.9\"", 0 },
    { "tokens.input", "STARTS_WITH", "number", "\"12\"", 1 },
    { "request.stream", "ENDS_WITH", "boolean", "\"true\"", 1 },
    { "request.nope", "STARTS_WITH", "string", "\"\"", 0 },

    /* PATTERN: the value's text, whatever its type */
    { "request.lastMessage.content", "PATTERN", "string", "\"^Hello\\\\s+SQL\"", 1 },
    { "request.lastMessage.content", "PATTERN", "string", "\"sql\"", 0 },
    { "request.lastMessage.content", "PATTERN", "string", "\"(?i)sql\"", 1 },
    { "tokens.input", "PATTERN", "number", "\"^1\\\\d{3}$\"", 1 },
    { "request.model", "PATTERN", "comma-delimited-list", "\"c,d\"", 0 },

    /* IN / NOT_IN */
    { "apiKey.labels.team", "IN", "comma-delimited-list", "\"ml, data\"", 1 },
    { "apiKey.labels.team", "IN", "comma-delimited-list", "\"x,y\"", 0 },
    { "apiKey.labels.team", "NOT_IN", "comma-delimited-list", "\"x,y\"", 1 },
    { "apiKey.labels.team", "NOT_IN", "comma-delimited-list", "\"ml\"", 0 },
    { "apiKey.labels.team", "IN", "string", "\"data,ml\"", 1 },
    { "tokens.input", "IN", "number", "\"1234\"", 1 },
    { "tokens.input", "IN", "comma-delimited-list", "\"1,1234\"", 1 },
    { "request.stream", "IN", "boolean", "\"true\"", 1 },
    { "request.metadata.n", "IN", "json-array", "\"[1,2,3]\"", 1 },
    { "request.metadata.n", "NOT_IN", "json-array", "[1,2]", 1 },
    { "request.messages[0]", "IN", "json-array",
      "[{\"content\":\"Be brief.\",\"role\":\"system\"}]", 1 },
    { "request.nope", "NOT_IN", "comma-delimited-list", "\"a\"", 0 },
    { "request.model", "IN", "comma-delimited-list", "\" , \"", 0 },

    /* EXISTS: the value is ignored */
    { "request.user", "EXISTS", "string", "\"\"", 1 },
    { "request.nope", "EXISTS", "string", "\"\"", 0 },
    { "request.gone", "EXISTS", "string", "\"\"", 0 },
    { "request.messages[5]", "EXISTS", "number", "\"x\"", 0 },
    { "apiKey.labels.team", "EXISTS", "boolean", "\"x\"", 1 },

    /* variables */
    { "request.messagesCount", "EQUAL", "number", "\"2\"", 1 },
    { "request.allMessagesContent.length", "EQUAL", "number", "\"26\"", 1 },
    { "request.allMessagesContent", "EQUAL", "string", "\"Be brief. Hello SQL please\"", 1 },
    { "request.firstMessage.content", "EQUAL", "string", "\"Be brief.\"", 1 },
    { "request.firstMessage.role", "EQUAL", "string", "\"system\"", 1 },
    { "request.lastMessage.role", "EQUAL", "string", "\"user\"", 1 },
    { "request.lastMessage.content[0]", "EXISTS", "string", "\"\"", 0 },
    { "request.messages[1].content[2].text", "EQUAL", "string", "\"SQL please\"", 1 },
    { "request.messages[-1].role", "EQUAL", "string", "\"user\"", 1 },
    { "request.messages.length", "EQUAL", "number", "2", 1 },
    { "request.metadata['cost-center']", "EQUAL", "string", "\"cc-1\"", 1 },
    { "apiKey.id", "EQUAL", "string", "\"key-1\"", 1 },
    { "apiKey.labels", "CONTAINS", "json-object", "{\"tier\":\"gold\"}", 1 },
    { "<% return errorRate(5) %>", "GREATER_THAN", "number", "\"10\"", 1 },
    { "<%= errorRate(10, 500) %>", "LESS_THAN", "number", "\"10\"", 0 },
};


static void
test_comparators(void)
{
    for (size_t i = 0; i < sizeof(cond_cases) / sizeof(cond_cases[0]); i++) {
        const cond_case_t  *c = &cond_cases[i];
        int                 got = cond(c->variable, c->comparator, c->type, c->value);

        if (got != c->want) {
            fprintf(stderr, "  case %zu: %s %s %s %s gave %d (%s)\n", i, c->variable,
                    c->comparator, c->type, c->value, got, got < 0 ? err.message : "");
        }
        CHECK(got == c->want);
    }
    rate_calls = 0;
    CHECK(cond("<%= errorRate(10, 500) %>", "LESS_THAN", "number", "40") == 1);
    CHECK(rate_calls == 1 && rate_minutes == 10 && rate_status == 500);
}


static void
test_condition_errors(void)
{
    static const char *const ordering[] = {
        "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL"
    };
    const char  *at = "conditions[0].conditions[0].value.type";

    for (size_t i = 0; i < 4; i++) {
        CHECK(cond("tokens.input", ordering[i], "boolean", "\"true\"") == -1);
        CHECK(error_is(at, -1, "does not take a boolean"));
        CHECK(cond("tokens.input", ordering[i], "comma-delimited-list", "\"1\"") == -1);
        CHECK(cond("tokens.input", ordering[i], "json-object", "{}") == -1);
        CHECK(cond("tokens.input", ordering[i], "json-array", "[]") == -1);
    }
    CHECK(cond("sourceIp", "STARTS_WITH", "json-array", "[]") == -1);
    CHECK(error_is(at, -1, "STARTS_WITH does not take a json-array"));
    CHECK(cond("sourceIp", "ENDS_WITH", "json-object", "{}") == -1);
    CHECK(cond("sourceIp", "IN", "json-object", "{}") == -1);
    CHECK(error_is(at, -1, "IN does not take"));
    CHECK(cond("sourceIp", "EQUAL", "text", "\"x\"") == -1);
    CHECK(error_is(at, -1, "type must be one of"));

    at = "conditions[0].conditions[0].value.expression";
    CHECK(cond("tokens.input", "EQUAL", "number", "\"12x\"") == -1);
    CHECK(error_is(at, -1, "must be a number"));
    CHECK(cond("request.stream", "EQUAL", "boolean", "\"yes\"") == -1);
    CHECK(error_is(at, -1, "true or false"));
    CHECK(cond("request.metadata", "EQUAL", "json-object", "\"{\\\"a\\\":}\"") == -1);
    CHECK(error_is(at, 5, "invalid JSON"));
    CHECK(cond("request.metadata", "EQUAL", "json-object", "\"[1]\"") == -1);
    CHECK(error_is(at, -1, "must be a JSON object"));
    CHECK(cond("request.tags", "EQUAL", "json-array", "{}") == -1);
    CHECK(error_is(at, -1, "must be a JSON array"));
    CHECK(cond("request.model", "EQUAL", "string", "[1]") == -1);
    CHECK(error_is(at, -1, "must be a string"));
    CHECK(cond("request.model", "PATTERN", "string", "\"ab(c\"") == -1);
    CHECK(error_is(at, 4, "invalid regex: missing closing parenthesis"));
    CHECK(cond("request.model", "PATTERN", "string", "\"é(\"") == -1);
    CHECK(error_is(at, 2, "invalid regex"));
    CHECK(cond("request.model", "EQUAL", "string", "null") == -1);
    CHECK(error_is(at, -1, "value.expression is required"));

    CHECK(cond("request.model", "LIKE", "string", "\"x\"") == -1);
    CHECK(error_is("conditions[0].conditions[0].comparator", -1, "must be one of EQUAL"));
    CHECK(cond("nope", "EQUAL", "string", "\"x\"") == -1);
    CHECK(error_is("conditions[0].conditions[0].expression", 0, "unknown variable 'nope'"));
    CHECK(cond("tokens.input >", "EQUAL", "string", "\"x\"") == -1);
    CHECK(error_is("conditions[0].conditions[0].expression", 14, "unexpected end"));

    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"expression\":\"sourceIp\","
              "\"comparator\":\"EQUAL\"}]}]}", NULL) == -1);
    CHECK(error_is("conditions[0].conditions[0].value", -1, "value must be an object"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"expression\":\"sourceIp\","
              "\"comparator\":\"EQUAL\",\"value\":{\"expression\":\"x\"}}]}]}", NULL) == -1);
    CHECK(error_is("conditions[0].conditions[0].value.type", -1, "is required"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"comparator\":\"EQUAL\"}]}]}",
              NULL) == -1);
    CHECK(error_is("conditions[0].conditions[0].expression", -1, "must be a string"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"expression\":\"sourceIp\"}]}]}",
              NULL) == -1);
    CHECK(error_is("conditions[0].conditions[0].comparator", -1, "is required"));
    /* EXISTS needs no value */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"expression\":\"sourceIp\","
              "\"comparator\":\"EXISTS\"}]}]}", NULL) == 1);
}


/* ---------------------------------------------------------------------- */

#define THEN(m)  "\"then\":{\"provider\":\"openai\",\"model\":\"" m "\",\"connectionId\":\"c-" m "\"}"
#define YES      "{\"expression\":\"tokens.input\",\"comparator\":\"GREATER_THAN\"," \
                 "\"value\":{\"type\":\"number\",\"expression\":\"1\"}}"
#define NO       "{\"expression\":\"tokens.input\",\"comparator\":\"LESS_THAN\"," \
                 "\"value\":{\"type\":\"number\",\"expression\":\"1\"}}"


static void
test_groups(void)
{
    vmx_rules_result_t  r;

    /* an empty AND matches, an empty OR does not */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"AND\",\"conditions\":[],"
              THEN("a") "}]}", &r) == 1);
    CHECK(r.matched && r.group_index == 0 && r.action == VMX_RULES_CALL_MODEL);
    CHECK(r.target != NULL && strcmp(r.target->model.data, "a") == 0
          && strcmp(r.target->connection_id.data, "c-a") == 0);
    CHECK(r.original == &primary);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"OR\",\"conditions\":[]}]}",
              &r) == 0);
    CHECK(!r.matched && r.original == &primary);

    /* AND and OR */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"AND\",\"conditions\":[" YES
              "," NO "]}]}", NULL) == 0);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"OR\",\"conditions\":[" NO
              "," YES "]}]}", NULL) == 1);

    /* nested groups, disabled ones left out of their parent */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"AND\",\"conditions\":[" YES
              ",{\"type\":\"group\",\"operator\":\"OR\",\"conditions\":[" NO "," YES "]}]}]}",
              NULL) == 1);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"AND\",\"conditions\":[" YES
              ",{\"operator\":\"OR\",\"conditions\":[" NO ",{\"operator\":\"AND\","
              "\"conditions\":[" NO "]}]}]}]}", NULL) == 0);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"AND\",\"conditions\":[" YES
              ",{\"enabled\":false,\"operator\":\"AND\",\"conditions\":[" NO "]}]}]}",
              NULL) == 1);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"OR\",\"conditions\":["
              "{\"enabled\":false,\"conditions\":[" YES "]}]}]}", NULL) == 0);

    /* disabled groups are skipped; the first match wins */
    CHECK(run("{\"enabled\":true,\"conditions\":["
              "{\"id\":\"g0\",\"enabled\":false,\"conditions\":[]," THEN("a") "},"
              "{\"id\":\"g1\",\"conditions\":[" NO "]," THEN("b") "},"
              "{\"id\":\"g2\",\"description\":\"d2\",\"conditions\":[" YES "]," THEN("c") "},"
              "{\"id\":\"g3\",\"conditions\":[]," THEN("d") "}]}", &r) == 1);
    CHECK(r.group_index == 2 && strcmp(r.group_id.data, "g2") == 0
          && strcmp(r.description.data, "d2") == 0 && strcmp(r.target->model.data, "c") == 0);

    /* BLOCK: no target, traffic ignored */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"id\":\"b\",\"description\":\"no SQL\","
              "\"action\":\"BLOCK\",\"conditions\":[],\"then\":{\"traffic\":0}}]}", &r) == 1);
    CHECK(r.action == VMX_RULES_BLOCK && r.target == NULL
          && strcmp(r.description.data, "no SQL") == 0);

    /* a group without then keeps the primary model */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"type\":\"group\",\"id\":\"g1\","
              "\"operator\":\"AND\",\"conditions\":[]}]}", &r) == 1);
    CHECK(r.action == VMX_RULES_CALL_MODEL && r.target == NULL && r.group_id.len == 2);

    /* the targets of CALL_MODEL groups, for the caller's data (a BLOCK and a group
       without then have none), and that data comes back with the result */
    {
        static const char   text[] = "{\"enabled\":true,\"conditions\":["
            "{\"action\":\"BLOCK\",\"conditions\":[" NO "]},"
            "{\"conditions\":[" NO "]," THEN("a") "},"
            "{\"conditions\":[]," THEN("b") "},{\"conditions\":[]}]}";
        static const int    price_a = 1, price_b = 2;
        size_t              cursor = 0;
        vmx_rules_t        *rules;
        vmx_rules_input_t   in;
        vmx_rules_target_t *t1, *t2;

        rules = vmx_rules_compile_text(text, sizeof(text) - 1, arena_alloc, &arena, &err);
        CHECK(rules != NULL);
        t1 = vmx_rules_target_next(rules, &cursor);
        t2 = vmx_rules_target_next(rules, &cursor);
        CHECK(t1 != NULL && strcmp(t1->model.data, "a") == 0 && t1->data == NULL);
        CHECK(t2 != NULL && strcmp(t2->model.data, "b") == 0 && t2->data == NULL);
        CHECK(vmx_rules_target_next(rules, &cursor) == NULL
              && vmx_rules_target_next(rules, &cursor) == NULL);
        t1->data = &price_a;
        t2->data = &price_b;
        input(&in);
        CHECK(vmx_rules_eval(rules, &in, &r) == 1 && r.target == t2
              && r.target->data == &price_b);
        vmx_rules_free(rules);
    }

    /* a disabled or empty routing never matches */
    CHECK(run("{\"enabled\":false,\"conditions\":[{\"conditions\":[]," THEN("a") "}]}", &r) == 0);
    CHECK(run("{\"enabled\":true,\"conditions\":[]}", &r) == 0);
    CHECK(run("{\"enabled\":true}", &r) == 0);
    CHECK(run("{}", &r) == 0);
}


static void
test_traffic(void)
{
    const char  *split = "{\"enabled\":true,\"conditions\":["
                         "{\"conditions\":[],\"then\":{\"provider\":\"groq\",\"model\":\"small\","
                         "\"connectionId\":\"g\",\"traffic\":30}},"
                         "{\"conditions\":[]," THEN("rest") "}]}";
    vmx_rules_t         *rules = compile(split);
    vmx_rules_input_t    in;
    vmx_rules_result_t   r;
    uint32_t             x = 12345;
    unsigned             small = 0;

    CHECK(rules != NULL);
    if (rules == NULL) {
        return;
    }
    input(&in);

    /* the share is exact at its edges */
    random_values[0] = 0;
    random_values[1] = (uint32_t) (0.3 * 4294967296.0) - 1;
    random_values[2] = (uint32_t) (0.3 * 4294967296.0);
    random_values[3] = UINT32_MAX;
    random_next = 0;
    vmx_rules_eval(rules, &in, &r);
    CHECK(r.group_index == 0 && strcmp(r.target->model.data, "small") == 0
          && r.traffic_passed == 0);
    vmx_rules_eval(rules, &in, &r);
    CHECK(r.group_index == 0);
    vmx_rules_eval(rules, &in, &r);
    CHECK(r.group_index == 1 && strcmp(r.target->model.data, "rest") == 0
          && r.traffic_passed == 1);
    vmx_rules_eval(rules, &in, &r);
    CHECK(r.group_index == 1);

    /* a deterministic sequence splits 30/70 */
    in.random = NULL;
    for (int i = 0; i < 10000; i++) {
        x = x * 1664525u + 1013904223u;
        random_values[0] = random_values[1] = random_values[2] = random_values[3] = x;
        in.random = next_random;
        vmx_rules_eval(rules, &in, &r);
        small += r.group_index == 0;
    }
    CHECK(small > 2850 && small < 3150);

    /* without a random source every request is inside the share */
    in.random = NULL;
    vmx_rules_eval(rules, &in, &r);
    CHECK(r.group_index == 0);

    /* 0 takes none and 100 all, without drawing */
    random_calls = 0;
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[],\"then\":{\"provider\":"
              "\"p\",\"model\":\"m\",\"connectionId\":\"c\",\"traffic\":0}}]}", &r) == 0);
    CHECK(r.traffic_passed == 1);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[],\"then\":{\"provider\":"
              "\"p\",\"model\":\"m\",\"connectionId\":\"c\",\"traffic\":100}}]}", &r) == 1);
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[],\"then\":{\"provider\":"
              "\"p\",\"model\":\"m\",\"connectionId\":\"c\",\"traffic\":null}}]}", &r) == 1);
    CHECK(random_calls == 0);
    vmx_rules_free(rules);
}


/*
 * vmx_rules_random(), what the module draws with, gives each share its
 * requests: 100000 draws per share, within 5 standard deviations of the
 * binomial.  A draw of 31 bits (random() alone) took every request under
 * shares above 50 and twice the share under the others.
 */
static void
test_traffic_draw(void)
{
    static const int     shares[] = { 1, 10, 30, 50, 70, 99, 100 };
    const int            n = 100000;
    vmx_rules_input_t    in;
    vmx_rules_result_t   r;
    char                 routing[512];

    srandom(7);
    input(&in);
    in.random = vmx_rules_random;

    for (size_t i = 0; i < sizeof(shares) / sizeof(shares[0]); i++) {
        vmx_rules_t  *rules;
        double        p = shares[i] / 100.0, off;
        int           taken = 0;

        snprintf(routing, sizeof(routing), "{\"enabled\":true,\"conditions\":["
                 "{\"conditions\":[],\"then\":{\"provider\":\"p\",\"model\":\"split\","
                 "\"connectionId\":\"c\",\"traffic\":%d}}]}", shares[i]);
        rules = compile(routing);
        CHECK(rules != NULL);
        if (rules == NULL) {
            return;
        }
        for (int k = 0; k < n; k++) {
            taken += vmx_rules_eval(rules, &in, &r);
        }
        /* |taken - np| <= 5 sd + 1, squared */
        off = fabs(taken - n * p) - 1;
        if (off > 0 && off * off > 25 * n * p * (1 - p)) {
            fprintf(stderr, "  traffic %d: %d of %d taken\n", shares[i], taken, n);
            CHECK(0);
        }
        vmx_rules_free(rules);
    }
}


static void
test_structure_errors(void)
{
    vmx_rules_result_t  r;

    CHECK(run("[]", &r) == -1);
    CHECK(error_is("", -1, "routing must be an object"));
    CHECK(run("{\"enabled\":", &r) == -1);
    CHECK(error_is("", 11, "invalid JSON"));
    CHECK(run("{\"enabled\":\"yes\"}", &r) == -1);
    CHECK(error_is("enabled", -1, "true or false"));
    CHECK(run("{\"enabled\":true,\"conditions\":{}}", &r) == -1);
    CHECK(error_is("conditions", -1, "must be an array"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[]},1]}", &r) == -1);
    CHECK(error_is("conditions[1]", -1, "a group must be an object"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"type\":\"condition\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].type", -1, "type must be one of group"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"operator\":\"XOR\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].operator", -1, "AND, OR"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"mode\":\"EXPERT\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].mode", -1, "UI, ADVANCED"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"action\":\"DROP\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].action", -1, "CALL_MODEL, BLOCK"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"enabled\":1}]}", &r) == -1);
    CHECK(error_is("conditions[0].enabled", -1, "true or false"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"id\":7}]}", &r) == -1);
    CHECK(error_is("conditions[0].id", -1, "must be a string"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":3}]}", &r) == -1);
    CHECK(error_is("conditions[0].conditions", -1, "must be an array"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[" YES ",{\"conditions\":"
              "[" YES ",{\"type\":\"rule\"}]}]}]}", &r) == -1);
    CHECK(error_is("conditions[0].conditions[1].conditions[1].type", -1,
                   "group, condition"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"conditions\":[" YES ",[]]}]}", &r) == -1);
    CHECK(error_is("conditions[0].conditions[1]", -1, "must be an object"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"mode\":\"ADVANCED\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].expression", -1, "needs an expression"));
    CHECK(run("{\"enabled\":false,\"conditions\":[{\"mode\":\"ADVANCED\","
              "\"expression\":\"1 +\"}]}", &r) == -1);
    CHECK(error_is("conditions[0].expression", 2, "unexpected character '+'"));

    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":[]}]}", &r) == -1);
    CHECK(error_is("conditions[0].then", -1, "then must be an object"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":{\"model\":\"m\"}}]}", &r) == -1);
    CHECK(error_is("conditions[0].then.provider", -1, "non-empty string"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":{\"provider\":\"p\",\"model\":\"\","
              "\"connectionId\":\"c\"}}]}", &r) == -1);
    CHECK(error_is("conditions[0].then.model", -1, "non-empty string"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":{\"provider\":\"p\",\"model\":\"m\"}}]}",
              &r) == -1);
    CHECK(error_is("conditions[0].then.connectionId", -1, "non-empty string"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":{\"provider\":\"p\",\"model\":\"m\","
              "\"connectionId\":\"c\",\"traffic\":101}}]}", &r) == -1);
    CHECK(error_is("conditions[0].then.traffic", -1, "from 0 to 100"));
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"then\":{\"provider\":\"p\",\"model\":\"m\","
              "\"connectionId\":\"c\",\"traffic\":\"50\"}}]}", &r) == -1);
    CHECK(error_is("conditions[0].then.traffic", -1, "from 0 to 100"));
    /* a BLOCK group's then is not used, so not checked */
    CHECK(run("{\"enabled\":true,\"conditions\":[{\"action\":\"BLOCK\",\"then\":5}]}", &r) == 1);
}


/* ---------------------------------------------------------------------- */

typedef struct {
    const char  *expression;
    int          want;
} expr_case_t;

static const expr_case_t  expr_cases[] = {
    /* precedence: ! over comparisons over && over || */
    { "true || false && false", 1 },
    { "(true || false) && false", 0 },
    { "false && false || true", 1 },
    { "!false && true", 1 },
    { "!(1 == 1)", 0 },
    { "!tokens.input > 5", 0 },
    { "!!tokens.input", 1 },
    { "-tokens.input < 0", 1 },
    { "-(3) == -3", 1 },
    { "- -3 == 3", 1 },
    { "-'4' == -4", 1 },
    { "tokens.input > 1000 && request.messagesCount == 2", 1 },
    { "tokens.input > 1000 && (request.messagesCount == 3 || request.toolsCount >= 1)", 1 },

    /* equality and ordering */
    { "request.model == \"chat\"", 1 },
    { "request.model === 'chat'", 1 },
    { "request.model !== 'x'", 1 },
    { "request.model != 'chat'", 0 },
    { "'100' == 100", 1 },
    { "100 == '1e2'", 1 },
    { "100 == 'x'", 0 },
    { "true == 'true'", 1 },
    { "true == 1", 0 },
    { "'abc' < 'abd'", 1 },
    { "'10' < '9'", 1 },
    { "10 < '9'", 0 },
    { "'b' > 1", 0 },
    { "request.metadata.n >= 3", 1 },
    { "request.metadata == request.metadata", 1 },
    { "request.tags == request.metadata", 0 },
    { "sourceIp == '10.0.0.7' && apiKey.id == 'key-1'", 1 },
    { "apiKey.labels.tier == request.metadata.tier", 1 },

    /* missing and null */
    { "request.nope != 'x'", 0 },
    { "request.nope == 'x'", 0 },
    { "request.nope < 1", 0 },
    { "request.nope == null", 1 },
    { "null == request.gone", 1 },
    { "request.user != null", 1 },
    { "request.user == null", 0 },
    { "null == null", 1 },
    { "request.model == request.nope", 0 },
    { "apiKey.labels.nope == null", 1 },

    /* matches, in */
    { "request.user matches /^b/i", 1 },
    { "request.user matches '^B'", 1 },
    { "request.user matches /^b/", 0 },
    { "request.lastMessage.content matches /\\bSQL\\b/", 1 },
    { "request.allMessagesContent matches /brief\\.\\s+hello/ix", 1 },
    { "request.allMessagesContent matches /^Hello/m", 0 },
    { "'a/b' matches /a[/]b/", 1 },
    { "'a/b' matches /a\\/b/g", 1 },
    { "tokens.input matches /^12/", 1 },
    { "request.tags matches /a/", 0 },
    { "request.nope matches /x*/", 0 },
    { "apiKey.labels.team in ['ml', 'ops']", 1 },
    { "apiKey.labels.team in [\"ops\"]", 0 },
    { "tokens.input in [1, 1234]", 1 },
    { "tokens.input in ['1234']", 1 },
    { "-1 in [-1]", 1 },
    { "request.stream in [true]", 1 },
    { "request.model in []", 0 },
    { "request.nope in [null]", 0 },
    { "!(request.nope in ['a'])", 1 },

    /* functions and lengths */
    { "len(request.messages) == 2", 1 },
    { "request.allMessagesContent.length == 26", 1 },
    { "len('h\\u00e9llo') == 5", 1 },
    { "len('héllo') == 5", 1 },
    { "len(request.metadata) == 3", 1 },
    { "len(tokens.input) == null", 1 },
    { "lower(request.user) == 'bob'", 1 },
    { "upper(request.user) == 'BOB'", 1 },
    { "lower(tokens.input) == 1234", 1 },
    { "contains(lower(request.lastMessage.content), 'sql')", 1 },
    { "contains(request.tags, 'b') && contains(apiKey.labels, 'team')", 1 },
    { "startsWith(sourceIp, '10.') && endsWith(request.model, 'at')", 1 },
    { "startsWith(sourceIp, request.model)", 0 },
    { "exists(apiKey.id) && !exists(request.nope)", 1 },
    { "errorRate(5) > 10", 1 },
    { "errorRate(1, 500) < 10", 1 },
    { "errorRate(10, 'any') < 5", 0 },
    { "await errorRate(5) > 10", 1 },

    /* variables and paths */
    { "request.messages[0].role == 'system'", 1 },
    { "request.messages[-1].role == 'user'", 1 },
    { "request.messages[-3] == null", 1 },
    { "request.messages[2] == null", 1 },
    { "request.metadata['cost-center'] == 'cc-1'", 1 },
    { "request['model'] == 'chat'", 1 },
    { "request.firstMessage.content == 'Be brief.'", 1 },
    { "request.lastMessage.role == 'user'", 1 },
    { "request.lastMessage.content == 'Hello SQL please'", 1 },
    { "request.model.length == 4", 1 },
    { "request.tags.length == 3", 1 },
    { "request.messages[0].content.length == 9", 1 },
    { "request.toolsCount == 1 && request.tools[0].function.name == 'f'", 1 },
    { "request.in == null", 1 },

    /* truth of a whole expression */
    { "request.temperature", 1 },
    { "request.nope", 0 },
    { "''", 0 },
    { "'x'", 1 },
    { "0", 0 },
    { "request.tags", 1 },
    { "null", 0 },

    /* the original's EJS wrappers */
    { "<% return tokens.input > 1000; %>", 1 },
    { "<%= tokens.input < 1000 %>", 0 },
    { "  <%- request.model == 'chat' -%>  ", 1 },
};


static void
test_expressions(void)
{
    for (size_t i = 0; i < sizeof(expr_cases) / sizeof(expr_cases[0]); i++) {
        int  got = expr(expr_cases[i].expression);

        if (got != expr_cases[i].want) {
            fprintf(stderr, "  expression %s gave %d (%s at %ld)\n", expr_cases[i].expression,
                    got, got < 0 ? err.message : "", err.position);
        }
        CHECK(got == expr_cases[i].want);
    }

    /* errorRate gets its literal arguments; without a source it is missing */
    rate_calls = 0;
    CHECK(expr("errorRate(60, 429) == 180") == 1);
    CHECK(rate_calls == 1 && rate_minutes == 60 && rate_status == 429);
    CHECK(expr("errorRate(7, 'any') == 21") == 1);
    CHECK(rate_status == 0);
    use_error_rate = 0;
    CHECK(expr("errorRate(5) > 10") == 0);
    CHECK(expr("errorRate(5) <= 10") == 0);
    CHECK(expr("errorRate(5) == null") == 1);
    use_error_rate = 1;
}


typedef struct {
    const char  *expression;
    long         position;
    const char  *message;
} error_case_t;

static const error_case_t  error_cases[] = {
    { "", 0, "empty expression" },
    { "   ", 3, "empty expression" },
    { "tokens.input >", 14, "unexpected end of the expression" },
    { "tokens.input > > 3", 15, "expected an operand, not '>'" },
    { "(tokens.input > 3", 17, "expected ')' to close the '(' at 0" },
    { "tokens.input = 3", 13, "compare with '=='" },
    { "tokens.input & 3", 13, "use '&&'" },
    { "tokens.input | 3", 13, "use '||'" },
    { "tokens.input # 3", 13, "unexpected character '#'" },
    { "foo.bar == 1", 0, "unknown variable 'foo'" },
    { "tokens == 1", 0, "unknown variable 'tokens'" },
    { "apiKey.name == 1", 0, "unknown variable 'apiKey'" },
    { "1 == request . ", 15, "expected a name after '.'" },
    { "tokens.input == 'abc", 16, "unterminated string" },
    { "'a\\qb'", 2, "invalid escape" },
    { "'\\u12' == 1", 1, "invalid \\u escape" },
    { "'\\ud800'", 1, "no surrogates" },
    { "request.model matches /ab(/", 26, "invalid regex: missing closing parenthesis" },
    { "request.model matches 'ab('", 26, "invalid regex" },
    { "request.model matches /abc", 22, "unterminated regex" },
    { "request.model matches /a/q", 25, "unknown regex flag 'q'" },
    { "request.model matches 3", 22, "expected a regex" },
    { "/a/ == 1", 0, "a regex is allowed only after 'matches'" },
    { "1 < 2 < 3", 6, "comparisons do not chain (the first is at 2)" },
    { "1 == 2 matches /x/", 7, "comparisons do not chain" },
    { "nosuch(1)", 0, "unknown function 'nosuch'" },
    { "len(1, 2)", 0, "len takes 1 argument" },
    { "contains('a')", 0, "contains takes 2 arguments" },
    { "errorRate()", 0, "errorRate takes 1 or 2 arguments" },
    { "len(1, 2, 3, 4, 5)", 16, "too many arguments" },
    { "len(1 2)", 6, "expected ',' or ')' to close the '(' at 3" },
    { "errorRate(0) > 1", 10, "minutes must be an integer literal from 1 to 60" },
    { "errorRate(61) > 1", 10, "minutes" },
    { "errorRate(1.5) > 1", 10, "minutes" },
    { "errorRate(tokens.input) > 1", 10, "minutes" },
    { "errorRate(5, 99) > 1", 13, "status must be an integer literal from 100 to 599" },
    { "errorRate(5, 'all') > 1", 13, "or \"any\"" },
    { "request.model in 'a'", 17, "expected a list [...] after 'in'" },
    { "request.model in ['a', x]", 23, "expected a literal in the list opened at 17" },
    { "request.model in ['a'", 21, "unterminated list: '[' at 17 has no ']'" },
    { "request.model in ['a' 'b']", 22, "expected ',' or ']'" },
    { "request.model in [-'a']", 18, "'-' needs a number" },
    { "[1] == 1", 0, "a list [...] is allowed only after 'in'" },
    { "in == 1", 0, "expected an operand before 'in'" },
    { "1 2", 2, "unexpected '2' after the expression" },
    { "1.e5", 0, "invalid number" },
    { "12abc", 0, "invalid number" },
    { "1e999 > 0", 0, "number out of range" },
    { "request.[0]", 8, "expected a name after '.'" },
    { "request.messages[1.5]", 17, "an index is an integer or a string" },
    { "request.messages[0", 18, "expected ']' to close the '[' at 16" },
    { "é == 1", 0, "unexpected character (byte 0xC3)" },
    { "'é' == foo", 7, "unknown variable 'foo'" },
    { "'日本' == 1 &&", 12, "unexpected end" },
    { "<%= tokens.input > %>", 18, "unexpected end" },
    { "<% return %>", 9, "empty expression" },
};


static void
test_expression_errors(void)
{
    char  deep[200];

    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const error_case_t  *c = &error_cases[i];

        CHECK(expr(c->expression) == -1);
        if (!error_is("conditions[0].expression", c->position, c->message)) {
            fprintf(stderr, "  of %s\n", c->expression);
            unit_failed++;
        }
    }

    memset(deep, '!', sizeof(deep) - 2);
    deep[sizeof(deep) - 2] = '1';
    deep[sizeof(deep) - 1] = '\0';
    CHECK(expr(deep) == -1);
    CHECK(error_is("conditions[0].expression", 64, "nested too deeply"));
    memset(deep, '(', 100);
    strcpy(deep + 100, "1");
    CHECK(expr(deep) == 1 - 2);     /* unclosed, but nothing overflows */
    memset(deep, '!', 64);
    strcpy(deep + 64, "0");
    CHECK(expr(deep) == 0);
}


/* ---------------------------------------------------------------------- */

static void
test_input(void)
{
    vmx_rules_input_t  in;

    CHECK(vmx_rules_input_init(&in, parse(body_text), arena_alloc, &arena) == 0);
    CHECK(in.messages_count == 2 && in.tools_count == 1);
    CHECK_MEM(in.first_message_content.data, in.first_message_content.len, "Be brief.");
    CHECK_MEM(in.last_message_content.data, in.last_message_content.len, "Hello SQL please");
    CHECK_MEM(in.all_messages_content.data, in.all_messages_content.len,
              "Be brief. Hello SQL please");
    CHECK(in.tokens_input == 0 && in.api_key_id.data == NULL && in.scratch == NULL);

    /* no text: null content; empty texts are left out of the join */
    CHECK(vmx_rules_input_init(&in, parse("{\"messages\":[{\"role\":\"user\",\"content\":\"\"},"
                                          "{\"role\":\"assistant\",\"content\":null},"
                                          "{\"role\":\"tool\",\"content\":[\"a\",{\"text\":\"b\"},"
                                          "{\"text\":1}]},{\"role\":\"assistant\"}]}"),
                               arena_alloc, &arena) == 0);
    CHECK(in.messages_count == 4 && in.tools_count == 0);
    CHECK(in.first_message_content.data != NULL && in.first_message_content.len == 0);
    CHECK(in.last_message_content.data == NULL);
    CHECK_MEM(in.all_messages_content.data, in.all_messages_content.len, "a b");

    CHECK(vmx_rules_input_init(&in, parse("{\"messages\":{},\"tools\":3}"), arena_alloc,
                               &arena) == 0);
    CHECK(in.messages_count == 0 && in.tools_count == 0);
    CHECK(in.first_message_content.data == NULL && in.all_messages_content.len == 0
          && in.all_messages_content.data != NULL);

    arena.limited = 1;
    arena.left = 0;
    CHECK(vmx_rules_input_init(&in, parse(body_text), arena_alloc, &arena) == -1);
    arena.limited = 0;
}


/* lower() and regexes need the scratch; without one they are false */
static void
test_scratch(void)
{
    vmx_rules_t         *rules;
    vmx_rules_input_t    in;
    vmx_rules_result_t   r;

    rules = compile("{\"enabled\":true,\"conditions\":[{\"mode\":\"ADVANCED\","
                    "\"expression\":\"lower(request.user) == 'bob'\"},{\"mode\":\"ADVANCED\","
                    "\"expression\":\"request.user matches /o/\"}]}");
    CHECK(rules != NULL);
    if (rules == NULL) {
        return;
    }
    input(&in);
    CHECK(vmx_rules_eval(rules, &in, &r) == 1 && r.group_index == 0);
    in.scratch_size = 2;
    CHECK(vmx_rules_eval(rules, &in, &r) == 0);
    in.scratch = NULL;
    in.scratch_size = sizeof(scratch);
    CHECK(vmx_rules_eval(rules, &in, &r) == 0);
    vmx_rules_free(rules);

    /* many lower() calls reuse the scratch: the marks release it */
    in.scratch = scratch;
    in.scratch_size = 1024;
    rules = compile("{\"enabled\":true,\"conditions\":[{\"mode\":\"ADVANCED\",\"expression\":"
                    "\"lower(request.allMessagesContent) == 'x' || "
                    "lower(request.allMessagesContent) == 'y' || "
                    "lower(request.allMessagesContent) == 'z' || "
                    "request.allMessagesContent matches /please$/ && "
                    "lower(request.allMessagesContent) matches /^be/\"}]}");
    CHECK(rules != NULL && vmx_rules_eval(rules, &in, &r) == 1);
    vmx_rules_free(rules);
}


/* every allocation failure is reported, with nothing leaked or crashed */
static void
test_out_of_memory(void)
{
    const char  *routing = "{\"enabled\":true,\"conditions\":[{\"conditions\":[{\"expression\":"
                           "\"request.model\",\"comparator\":\"PATTERN\",\"value\":{\"type\":"
                           "\"string\",\"expression\":\"^c\"}},{\"expression\":\"sourceIp\","
                           "\"comparator\":\"IN\",\"value\":{\"type\":\"json-array\","
                           "\"expression\":\"[1,2]\"}}]," THEN("a") "},{\"mode\":\"ADVANCED\","
                           "\"expression\":\"request.model matches /x/ && lower(sourceIp) in "
                           "['a','b','c','d','e','f','g','h','i']\"}]}";
    vmx_rules_t *rules = NULL;
    size_t       n;

    for (n = 0; n < 10000 && rules == NULL; n++) {
        arena_reset();
        arena.limited = 1;
        arena.left = n;
        rules = vmx_rules_compile_text(routing, strlen(routing), arena_alloc, &arena, &err);
        if (rules == NULL && strcmp(err.message, "out of memory") != 0) {
            fprintf(stderr, "  %zu allocations: %s\n", n, err.message);
            break;
        }
    }
    CHECK(rules != NULL && n > 10);
    vmx_rules_free(rules);
    arena_reset();
}


static int
cond_is(const vmx_rules_trace_cond_t *c, const char *path, const char *text, long position,
    vmx_rules_value_e kind, const char *value, int result)
{
    if (strcmp(c->path.data, path) == 0 && strcmp(c->text.data, text) == 0
        && c->position == position && c->kind == kind && strcmp(c->value, value) == 0
        && c->value_len == strlen(value) && c->result == (unsigned) result)
    {
        return 1;
    }
    fprintf(stderr, "  got %s \"%s\" at %ld: kind %d \"%s\" %u; want %s \"%s\"\n",
            c->path.data, c->text.data, c->position, (int) c->kind, c->value, c->result,
            path, text);
    return 0;
}


static void
test_trace(void)
{
    const char *routing =
        "{\"enabled\":true,\"conditions\":["
        /* 0: UI AND, false: its second condition is still shown */
        "{\"id\":\"big\",\"conditions\":["
        "{\"expression\":\"tokens.input\",\"comparator\":\"GREATER_THAN\","
        "\"value\":{\"type\":\"number\",\"expression\":\"5000\"}},"
        "{\"expression\":\"request.model\",\"comparator\":\"EQUAL\","
        "\"value\":{\"type\":\"string\",\"expression\":\"chat\"}}]," THEN("big") "},"
        /* 1: disabled */
        "{\"id\":\"off\",\"enabled\":false,\"conditions\":[]," THEN("off") "},"
        /* 2: ADVANCED BLOCK, the winner */
        "{\"id\":\"sql\",\"description\":\"no SQL\",\"action\":\"BLOCK\","
        "\"mode\":\"ADVANCED\",\"expression\":\"request.lastMessage.content matches /SQL/"
        " && len(request.user) >= 3 || exists(request.gone)\"},"
        /* 3: after the winner, evaluated for the trace only */
        "{\"id\":\"late\",\"operator\":\"OR\",\"conditions\":[{\"conditions\":["
        "{\"expression\":\"request.metadata\",\"comparator\":\"EXISTS\"}]}]}]}";
    vmx_rules_t              *rules = compile(routing);
    vmx_rules_input_t         in;
    vmx_rules_result_t        r;
    vmx_rules_trace_group_t  *g = trace_groups;
    vmx_rules_trace_cond_t   *c = trace_conds;

    CHECK(rules != NULL);
    if (rules == NULL) {
        return;
    }
    input(&in);
    CHECK(vmx_rules_eval_trace(rules, &in, &r, &trace) == 1);
    CHECK(r.action == VMX_RULES_BLOCK && r.group_index == 2);
    CHECK(trace.ngroups == 4 && trace.nconds == 7 && !trace.truncated);

    CHECK(g[0].enabled && !g[0].matched && !g[0].chosen && g[0].first == 0
          && g[0].nconds == 2 && strcmp(g[0].id.data, "big") == 0
          && g[0].then != NULL && strcmp(g[0].then->model.data, "big") == 0
          && g[0].traffic == 100 && !g[0].drawn);
    CHECK(cond_is(&c[0], "conditions[0].conditions[0]", "tokens.input", -1,
                  VMX_RULES_VALUE_NUMBER, "1234", 0) && c[0].num == 1234);
    CHECK(cond_is(&c[1], "conditions[0].conditions[1]", "request.model", -1,
                  VMX_RULES_VALUE_STRING, "chat", 1));

    CHECK(!g[1].enabled && !g[1].matched && g[1].nconds == 0);

    CHECK(g[2].enabled && g[2].matched && g[2].chosen && g[2].first == 2 && g[2].nconds == 3
          && g[2].action == VMX_RULES_BLOCK && g[2].then == NULL
          && strcmp(g[2].description.data, "no SQL") == 0);
    CHECK(cond_is(&c[2], "conditions[2].expression",
                  "request.lastMessage.content matches /SQL/", 0,
                  VMX_RULES_VALUE_STRING, "Hello SQL please", 1));
    CHECK(cond_is(&c[3], "conditions[2].expression", "len(request.user) >= 3", 45,
                  VMX_RULES_VALUE_NUMBER, "3", 1));
    CHECK(cond_is(&c[4], "conditions[2].expression", "exists(request.gone)", 71,
                  VMX_RULES_VALUE_MISSING, "", 0));

    /* a nested group before its members */
    CHECK(g[3].matched && !g[3].chosen && g[3].nconds == 2);
    CHECK(c[5].is_group && c[5].result && strcmp(c[5].path.data, "conditions[3].conditions[0]")
          == 0);
    CHECK(cond_is(&c[6], "conditions[3].conditions[0].conditions[0]", "request.metadata", -1,
                  VMX_RULES_VALUE_JSON,
                  "{\"tier\":\"gold\",\"cost-center\":\"cc-1\",\"n\":3}", 1));
    vmx_rules_free(rules);

    /* a traffic split with a fixed draw: 30% does not take 50 */
    rules = compile("{\"enabled\":true,\"conditions\":["
                    "{\"conditions\":[],\"then\":{\"provider\":\"p\",\"model\":\"split\","
                    "\"connectionId\":\"c\",\"traffic\":30}},"
                    "{\"conditions\":[]," THEN("rest") "}]}");
    CHECK(rules != NULL);
    if (rules == NULL) {
        return;
    }
    random_values[0] = random_values[1] = random_values[2] = random_values[3] = 1u << 31;
    CHECK(vmx_rules_eval_trace(rules, &in, &r, &trace) == 1 && r.group_index == 1
          && r.traffic_passed == 1);
    CHECK(g[0].matched && !g[0].chosen && g[0].drawn && !g[0].taken
          && g[0].draw == 1u << 31 && g[0].traffic == 30);
    CHECK(g[1].chosen && !g[1].drawn);
    random_values[0] = random_values[1] = random_values[2] = random_values[3] = 1u << 30;
    CHECK(vmx_rules_eval_trace(rules, &in, &r, &trace) == 1 && r.group_index == 0);
    CHECK(g[0].chosen && g[0].drawn && g[0].taken);
    vmx_rules_free(rules);

    /* bounds: conditions past the arrays and long values are cut */
    rules = compile("{\"enabled\":true,\"conditions\":[{\"mode\":\"ADVANCED\","
                    "\"expression\":\"exists(request) && exists(request) && 1 == 1\"}]}");
    CHECK(rules != NULL);
    if (rules == NULL) {
        return;
    }
    trace.conds_max = 2;
    CHECK(vmx_rules_eval_trace(rules, &in, &r, &trace) == 1);
    CHECK(trace.nconds == 2 && trace.truncated && g[0].nconds == 2);
    CHECK(c[0].kind == VMX_RULES_VALUE_JSON && c[0].truncated
          && c[0].value_len == VMX_RULES_TRACE_TEXT - 1
          && strncmp(c[0].value, body_text, c[0].value_len) == 0);
    trace.conds_max = 16;
    vmx_rules_free(rules);
}


int
main(void)
{
    test_comparators();
    test_condition_errors();
    test_groups();
    test_traffic();
    test_traffic_draw();
    test_trace();
    test_structure_errors();
    test_expressions();
    test_expression_errors();
    test_input();
    test_scratch();
    test_out_of_memory();
    arena_reset();
    return UNIT_REPORT();
}
