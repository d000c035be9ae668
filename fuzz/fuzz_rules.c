/*
 * libFuzzer target of vmx_rules.  The input is a routing document, or with
 * a first byte '!' an ADVANCED expression, or with '?' a condition's
 * operand (both wrapped into a routing here).  Compiling must never crash
 * and must fail with a well-formed error; whatever compiles is evaluated
 * against a few requests, with and without scratch, error rates and random
 * draws, and with a small trace that must decide the same and stay within
 * its bounds; and compiled again with an allocator that runs dry, which must fail
 * cleanly with "out of memory".  Every allocation is its own malloc, so
 * AddressSanitizer sees any overrun.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_rules.h"

#include "fuzz_common.h"


static const char *const  bodies[] = {
    "{\"model\":\"chat\",\"user\":\"Bob\",\"stream\":true,\"metadata\":{\"tier\":\"gold\"},"
    "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Hello SQL\"}]}],\"tools\":[{\"type\":\"x\"}]}",
    "{\"messages\":[]}",
    "[1,{\"a\":null}]",
};

static unsigned  draws;


static double
error_rate(void *ctx, unsigned minutes, unsigned status)
{
    if (minutes < 1 || minutes > 60 || (status != 0 && (status < 100 || status > 599))) {
        abort();                /* the compiler let a bad argument through */
    }
    return minutes == 7 ? -1 : minutes * 1.5;
}


static uint32_t
random_draw(void *ctx)
{
    return ++draws * 2654435761u;
}


static void
check_error(const vmx_rules_error_t *err)
{
    if (memchr(err->path, '\0', sizeof(err->path)) == NULL
        || memchr(err->message, '\0', sizeof(err->message)) == NULL
        || err->message[0] == '\0' || err->position < -1)
    {
        abort();
    }
}


/* the traced evaluation decides as out and keeps to its arrays */
static void
check_trace(const vmx_rules_t *rules, const vmx_rules_input_t *in,
    const vmx_rules_result_t *out, int rc, unsigned draws_before)
{
    static vmx_rules_trace_group_t  groups[4];
    static vmx_rules_trace_cond_t   conds[8];
    vmx_rules_trace_t               t = { groups, 4, 0, conds, 8, 0, 0 };
    vmx_rules_result_t              traced;
    unsigned                        draws_after = draws;

    draws = draws_before;
    if (vmx_rules_eval_trace(rules, in, &traced, &t) != rc
        || traced.matched != out->matched || traced.action != out->action
        || traced.group_index != out->group_index || traced.target != out->target
        || traced.traffic_passed != out->traffic_passed
        || t.ngroups > 4 || t.nconds > 8)
    {
        abort();
    }
    for (size_t i = 0; i < t.ngroups; i++) {
        if (groups[i].first + groups[i].nconds > t.nconds
            || (groups[i].chosen && (!groups[i].matched || i != out->group_index)))
        {
            abort();
        }
    }
    for (size_t i = 0; i < t.nconds; i++) {
        if (conds[i].value_len >= VMX_RULES_TRACE_TEXT
            || conds[i].value[conds[i].value_len] != '\0'
            || conds[i].path.data == NULL || conds[i].text.data == NULL)
        {
            abort();
        }
    }
    draws = draws_after;
}


static void
evaluate(const vmx_rules_t *rules, arena_t *a)
{
    static char          scratch[4096];
    vmx_rules_input_t    in;
    vmx_rules_result_t   out;
    vmx_json_error_t     jerr;
    unsigned             draws_before;
    int                  rc;

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        const vmx_json_t  *body = vmx_json_parse(bodies[i], strlen(bodies[i]), arena_alloc,
                                                 a, 0, &jerr);

        if (body == NULL || vmx_rules_input_init(&in, body, arena_alloc, a) != 0) {
            abort();
        }
        in.tokens_input = 1234;
        in.api_key_labels = body;
        in.source_ip.data = "10.0.0.7";
        in.source_ip.len = 8;
        in.error_rate = i == 0 ? error_rate : NULL;
        in.random = i == 1 ? NULL : random_draw;
        in.scratch = i == 2 ? NULL : scratch;
        in.scratch_size = i == 1 ? 64 : sizeof(scratch);

        draws_before = draws;
        rc = vmx_rules_eval(rules, &in, &out);
        if (rc != out.matched
            || (out.matched && out.action == VMX_RULES_BLOCK && out.target != NULL)
            || (out.matched && out.group_id.data == NULL))
        {
            abort();
        }
        check_trace(rules, &in, &out, rc, draws_before);
    }
}


/* the input as a routing document */
static size_t
routing_text(const uint8_t *data, size_t size, char **text)
{
    static const char  advanced[] = "{\"enabled\":true,\"conditions\":[{\"mode\":\"ADVANCED\","
                                    "\"expression\":\"%s\"}]}";
    static const char  operand[] = "{\"enabled\":true,\"conditions\":[{\"conditions\":"
                                   "[{\"expression\":\"%s\",\"comparator\":\"EQUAL\","
                                   "\"value\":{\"type\":\"string\",\"expression\":\"x\"}}]}]}";
    const char        *wrap;
    char              *escaped;
    size_t             n;

    if (size == 0 || (data[0] != '!' && data[0] != '?')) {
        *text = malloc(size + 1);
        memcpy(*text, data, size);
        return size;
    }
    wrap = data[0] == '!' ? advanced : operand;
    escaped = malloc(vmx_json_escape(NULL, (const char *) data + 1, size - 1) + 1);
    n = vmx_json_escape(escaped, (const char *) data + 1, size - 1);
    escaped[n] = '\0';
    *text = malloc(n + sizeof(operand));
    n = (size_t) sprintf(*text, wrap, escaped);
    free(escaped);
    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t             a = { NULL, 0, SIZE_MAX }, dry = { NULL, 0, 0 };
    vmx_rules_error_t   err;
    vmx_rules_t        *rules;
    char               *text;
    size_t              len = routing_text(data, size, &text);
    size_t              needed;

    rules = vmx_rules_compile_text(text, len, arena_alloc, &a, &err);
    if (rules == NULL) {
        check_error(&err);
    } else {
        needed = a.allocs;
        evaluate(rules, &a);
        vmx_rules_free(rules);

        /* the same compile, one allocation short */
        dry.left = needed - 1;
        if (vmx_rules_compile_text(text, len, arena_alloc, &dry, &err) != NULL
            || strcmp(err.message, "out of memory") != 0)
        {
            abort();
        }
    }
    arena_free(&a);
    arena_free(&dry);
    free(text);
    return 0;
}
