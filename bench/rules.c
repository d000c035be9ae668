/*
 * Routing rules benchmark: evaluations per second of a realistic rule set
 * (five groups: token and content conditions, nested OR, an errorRate and
 * regex expression, a BLOCK group, a traffic split) against a chat request
 * of six messages, and, as the baseline measured in the same run, parses of
 * that request with vmx_json_parse.  Memory comes from a bump arena reset
 * per iteration, so allocation costs as little as in an nginx pool.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmx_rules.h"


#define ARENA_SIZE  (1 << 20)

typedef struct {
    char    *base;
    size_t   used;
} arena_t;


static void *
arena_alloc(void *ctx, size_t size)
{
    arena_t  *a = ctx;
    size_t    at = (a->used + 15) & ~(size_t) 15;

    if (at + size > ARENA_SIZE) {
        return NULL;
    }
    a->used = at + size;
    return a->base + at;
}


static const char  routing[] =
    "{\"enabled\":true,\"conditions\":["
    "{\"id\":\"big\",\"operator\":\"AND\",\"conditions\":["
    "  {\"type\":\"condition\",\"expression\":\"tokens.input\",\"comparator\":\"GREATER_THAN\","
    "   \"value\":{\"type\":\"number\",\"expression\":\"8000\"}},"
    "  {\"type\":\"group\",\"operator\":\"OR\",\"conditions\":["
    "    {\"type\":\"condition\",\"expression\":\"apiKey.labels.tier\",\"comparator\":\"IN\","
    "     \"value\":{\"type\":\"comma-delimited-list\",\"expression\":\"gold, vip\"}},"
    "    {\"type\":\"condition\",\"expression\":\"request.toolsCount\",\"comparator\":"
    "     \"GREATER_THAN\",\"value\":{\"type\":\"number\",\"expression\":\"0\"}}]}],"
    " \"then\":{\"provider\":\"openai\",\"model\":\"gpt-4o\",\"connectionId\":\"c1\"}},"
    "{\"id\":\"sql\",\"conditions\":["
    "  {\"type\":\"condition\",\"expression\":\"request.lastMessage.content\",\"comparator\":"
    "   \"PATTERN\",\"value\":{\"type\":\"string\",\"expression\":\"(?i)\\\\b(select|insert)\\\\b"
    "\\\\s+\\\\w+\"}}],"
    " \"then\":{\"provider\":\"anthropic\",\"model\":\"claude\",\"connectionId\":\"c2\"}},"
    "{\"id\":\"unhealthy\",\"mode\":\"ADVANCED\",\"expression\":\"errorRate(5, 500) > 20 && "
    "request.model matches /^chat-/ && !(sourceIp in ['10.0.0.1', '10.0.0.2'])\","
    " \"then\":{\"provider\":\"groq\",\"model\":\"llama\",\"connectionId\":\"c3\"}},"
    "{\"id\":\"block\",\"action\":\"BLOCK\",\"operator\":\"OR\",\"conditions\":["
    "  {\"type\":\"condition\",\"expression\":\"request.allMessagesContent\",\"comparator\":"
    "   \"CONTAINS\",\"value\":{\"type\":\"comma-delimited-list\",\"expression\":"
    "   \"password dump, credit card number\"}}]},"
    "{\"id\":\"canary\",\"conditions\":[],"
    " \"then\":{\"provider\":\"openai\",\"model\":\"gpt-4o-mini\",\"connectionId\":\"c4\","
    "  \"traffic\":10}}]}";

static const char  request[] =
    "{\"model\":\"chat-prod\",\"temperature\":0.2,\"max_tokens\":512,\"messages\":["
    "{\"role\":\"system\",\"content\":\"You are a helpful assistant for an online shop. "
    "Answer briefly and politely, and never invent order numbers.\"},"
    "{\"role\":\"user\",\"content\":\"Hello! I ordered a pair of shoes last week.\"},"
    "{\"role\":\"assistant\",\"content\":\"Hello! I can help with that. What is the order "
    "number?\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"It is 48213. The parcel "
    "has not arrived and the tracking page shows no update since Monday.\"}]},"
    "{\"role\":\"assistant\",\"content\":\"Thank you. The parcel left our warehouse on "
    "Monday; carriers sometimes scan it only at delivery.\"},"
    "{\"role\":\"user\",\"content\":\"Could you check whether the address is right? It "
    "should be 12 Rue des Lilas, Lyon.\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup_order\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}}}}}]}";


/* healthy: the request goes through every group to the 10 % canary */
static double
error_rate(void *ctx, unsigned minutes, unsigned status)
{
    return 4.0;
}


static uint32_t
draw(void *ctx)
{
    static uint32_t  x = 1;

    return x = x * 1664525u + 1013904223u;
}


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


typedef enum { PARSE, EVAL, PARSE_EVAL } mode_e;


/* one iteration of a mode; returns 1 when it parsed or the rules matched */
static int
iteration(mode_e mode, const vmx_rules_t *rules, const vmx_json_t *parsed,
    const vmx_json_t *labels, arena_t *a)
{
    static char          scratch[VMX_RULES_SCRATCH_MIN];
    vmx_json_error_t     jerr;
    vmx_rules_input_t    in;
    vmx_rules_result_t   out;
    const vmx_json_t    *body = parsed;

    a->used = 0;
    if (mode != EVAL) {
        body = vmx_json_parse(request, sizeof(request) - 1, arena_alloc, a, 0, &jerr);
        if (mode == PARSE) {
            return body != NULL;
        }
    }
    if (vmx_rules_input_init(&in, body, arena_alloc, a) != 0) {
        abort();
    }
    in.tokens_input = 2400;
    in.api_key_labels = labels;
    in.source_ip.data = "192.0.2.7";
    in.source_ip.len = 9;
    in.error_rate = error_rate;
    in.random = draw;
    in.scratch = scratch;
    in.scratch_size = sizeof(scratch);
    return vmx_rules_eval(rules, &in, &out);
}


static double
measure(const char *name, mode_e mode, const vmx_rules_t *rules, const vmx_json_t *parsed,
    const vmx_json_t *labels, arena_t *a, double seconds)
{
    double  start = now(), elapsed;
    long    n = 0, matched = 0;

    do {
        for (int i = 0; i < 1000; i++) {
            matched += iteration(mode, rules, parsed, labels, a);
        }
        n += 1000;
        elapsed = now() - start;
    } while (elapsed < seconds);
    printf("%-28s %10.0f /s  %6.0f ns  (%ld of %ld true)\n", name, n / elapsed,
           elapsed / n * 1e9, matched, n);
    return n / elapsed;
}


int
main(int argc, char **argv)
{
    double              seconds = argc > 1 ? atof(argv[1]) : 2.0;
    arena_t             keep = { malloc(ARENA_SIZE), 0 }, a = { malloc(ARENA_SIZE), 0 };
    vmx_rules_error_t   err;
    vmx_json_error_t    jerr;
    vmx_rules_t        *rules;
    const vmx_json_t   *parsed, *labels;
    double              parse, eval, both;

    rules = vmx_rules_compile_text(routing, sizeof(routing) - 1, arena_alloc, &keep, &err);
    if (rules == NULL) {
        fprintf(stderr, "rules: %s at %s %ld\n", err.message, err.path, err.position);
        return 1;
    }
    parsed = vmx_json_parse(request, sizeof(request) - 1, arena_alloc, &keep, 0, &jerr);
    labels = vmx_json_parse("{\"tier\":\"silver\"}", 17, arena_alloc, &keep, 0, &jerr);

    printf("request %zu bytes, 5 groups; %.1f s per measure\n", sizeof(request) - 1, seconds);
    parse = measure("baseline: vmx_json_parse", PARSE, rules, parsed, labels, &a, seconds);
    eval = measure("input_init + eval", EVAL, rules, parsed, labels, &a, seconds);
    both = measure("parse + input_init + eval", PARSE_EVAL, rules, parsed, labels, &a, seconds);
    printf("eval / parse time: %.2f; parse+eval / parse: %.2f\n", parse / eval, parse / both);

    vmx_rules_free(rules);
    free(keep.base);
    free(a.base);
    return 0;
}
