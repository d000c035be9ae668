/*
 * Unit tests of lib/vmx_json.c.  Every text is parsed from an exact-size
 * copy, so a read past its end shows under a memory checker.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "vmx_json.h"


/* an allocator that can be told to fail after a number of allocations */
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


static arena_t           arena;
static vmx_json_error_t  err;


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
        return NULL;
    }

    b->next = a->blocks;
    a->blocks = b;

    return b->data;
}


static void
arena_reset(void)
{
    block_t  *b;

    while (arena.blocks) {
        b = arena.blocks;
        arena.blocks = b->next;
        free(b);
    }

    arena.limited = 0;
}


static vmx_json_t *
parse_depth(const char *text, size_t len, unsigned max_depth)
{
    char      *copy;
    unsigned   limited = arena.limited;

    arena.limited = 0;
    copy = arena_alloc(&arena, len);
    memcpy(copy, text, len);
    arena.limited = limited;

    err.offset = (size_t) -1;
    err.message = NULL;

    return vmx_json_parse(copy, len, arena_alloc, &arena, max_depth, &err);
}


static vmx_json_t *
parse(const char *text)
{
    return parse_depth(text, strlen(text), 0);
}


/* the text is rejected with the error at offset */
static int
fails_at(const char *text, size_t offset)
{
    return parse(text) == NULL && err.offset == offset && err.message != NULL;
}


static int
is_string(const vmx_json_t *j, const char *s, size_t len)
{
    return j != NULL && j->type == VMX_JSON_STRING && j->str_len == len
           && memcmp(j->str, s, len) == 0 && j->str[len] == '\0';
}


static int
parses_to_string(const char *text, const char *s, size_t len)
{
    return is_string(parse(text), s, len);
}


static int
is_int(const char *text, int64_t v)
{
    vmx_json_t  *j = parse(text);

    return j != NULL && j->type == VMX_JSON_NUMBER && j->is_int
           && j->integer == v && j->num == (double) v;
}


static int
is_double(const char *text, double v)
{
    vmx_json_t  *j = parse(text);

    return j != NULL && j->type == VMX_JSON_NUMBER && !j->is_int
           && j->num == v;
}


static void
test_literals(void)
{
    vmx_json_t  *j;

    j = parse(" \t\r\n null \n");
    CHECK(j != NULL && j->type == VMX_JSON_NULL);
    CHECK_MEM(j->raw, j->raw_len, "null");

    j = parse("true");
    CHECK(j != NULL && j->type == VMX_JSON_TRUE);

    j = parse("false");
    CHECK(j != NULL && j->type == VMX_JSON_FALSE && j->raw_len == 5);

    CHECK(fails_at("tru", 3));
    CHECK(fails_at("trUe", 2));
    CHECK(fails_at("nul", 3));
    CHECK(fails_at("falsey", 5));
    CHECK(fails_at("True", 0));
    CHECK(fails_at("", 0));
    CHECK(fails_at("   ", 3));
    CHECK(fails_at("null null", 5));
}


static void
test_numbers(void)
{
    vmx_json_t  *j;
    char         big[400];

    CHECK(is_int("0", 0));
    CHECK(is_int("-0", 0));
    CHECK(is_int("7", 7));
    CHECK(is_int("-42", -42));
    CHECK(is_int("9223372036854775807", INT64_MAX));
    CHECK(is_int("-9223372036854775808", INT64_MIN));

    j = parse("-0");
    CHECK(j != NULL && j->num == 0 && signbit(j->num));

    CHECK(is_double("9223372036854775808", 9223372036854775808.0));
    CHECK(is_double("-9223372036854775809", -9223372036854775809.0));
    CHECK(is_double("18446744073709551616", 18446744073709551616.0));
    CHECK(is_double("1.5", 1.5));
    CHECK(is_double("-0.25", -0.25));
    CHECK(is_double("1e2", 100));
    CHECK(is_double("1E+2", 100));
    CHECK(is_double("25e-2", 0.25));
    CHECK(is_double("1.0", 1));
    CHECK(is_double("0.1", 0.1));
    CHECK(is_double("2.2250738585072014e-308", 2.2250738585072014e-308));

    j = parse("1e400");
    CHECK(j != NULL && !j->is_int && isinf(j->num));

    /* longer than the copy on the stack: copied into allocator memory */
    memset(big, '0', sizeof(big));
    memcpy(big, "1.", 2);
    big[sizeof(big) - 1] = '1';
    j = parse_depth(big, sizeof(big), 0);
    CHECK(j != NULL && j->raw_len == sizeof(big) && j->num == 1);

    memcpy(big, "0.", 2);
    j = parse_depth(big, sizeof(big), 0);
    CHECK(j != NULL && j->num == 0);

    memset(big, '9', sizeof(big));
    j = parse_depth(big, 300, 0);
    CHECK(j != NULL && !j->is_int && j->num == 1e300);

    j = parse("[1.5,2]");
    CHECK(j != NULL && j->count == 2);
    CHECK_MEM(j->child->raw, j->child->raw_len, "1.5");

    CHECK(fails_at("-", 1));
    CHECK(fails_at("-a", 1));
    CHECK(fails_at("- 1", 1));
    CHECK(fails_at("01", 1));
    CHECK(fails_at("-01", 2));
    CHECK(fails_at("00", 1));
    CHECK(fails_at("1.", 2));
    CHECK(fails_at("1.e5", 2));
    CHECK(fails_at(".5", 0));
    CHECK(fails_at("1e", 2));
    CHECK(fails_at("1e+", 3));
    CHECK(fails_at("1E-x", 3));
    CHECK(fails_at("+1", 0));
    CHECK(fails_at("NaN", 0));
    CHECK(fails_at("Infinity", 0));
    CHECK(fails_at("-Infinity", 1));
    CHECK(fails_at("0x10", 1));
    CHECK(fails_at("1 2", 2));
    CHECK(fails_at("[1.5.2]", 4));
}


static void
test_strings(void)
{
    vmx_json_t  *j;

    CHECK(parses_to_string("\"\"", "", 0));
    CHECK(parses_to_string("\"abc\"", "abc", 3));
    CHECK(parses_to_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
                           "\"\\/\b\f\n\r\t", 8));
    CHECK(parses_to_string("\"\\u0041\\u00e9\\u20AC\"",
                           "A\xc3\xa9\xe2\x82\xac", 6));
    CHECK(parses_to_string("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4));
    CHECK(parses_to_string("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4));
    CHECK(parses_to_string("\"a\\u0000b\"", "a\0b", 3));
    CHECK(parses_to_string("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
                           "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    CHECK(parses_to_string("\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\"",
                           "\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf", 10));
    CHECK(parses_to_string("\"\x7f\"", "\x7f", 1));

    j = parse("\"a\\nb\"");
    CHECK(j != NULL);
    CHECK_MEM(j->raw, j->raw_len, "\"a\\nb\"");

    /* escapes */
    CHECK(fails_at("\"\\x\"", 2));
    CHECK(fails_at("\"\\'\"", 2));
    CHECK(fails_at("\"\\U0041\"", 2));
    CHECK(fails_at("\"\\u12G4\"", 5));
    CHECK(fails_at("\"\\u12", 5));
    CHECK(fails_at("\"\\", 2));
    CHECK(fails_at("\"abc", 4));
    CHECK(fails_at("\"abcdefghijklmnop", 17));

    /* surrogates: the error is at the unpaired escape */
    CHECK(fails_at("\"\\uD800\"", 1));
    CHECK(fails_at("\"\\uD800", 1));
    CHECK(fails_at("\"\\uD800x\"", 1));
    CHECK(fails_at("\"ab\\uD800\\u0041\"", 3));
    CHECK(fails_at("\"\\uD800\\uD800\"", 1));
    CHECK(fails_at("\"\\uDC00\"", 1));
    CHECK(fails_at("\"\\uDFFF\\uDC00\"", 1));
    CHECK(fails_at("\"\\uD800\\u12\"", 11));
    CHECK(fails_at("\"\\uD800\\n\"", 1));

    /* raw control characters */
    CHECK(fails_at("\"a\x01\"", 2));
    CHECK(fails_at("\"\t\"", 1));
    CHECK(fails_at("\"a\nb\"", 2));
    CHECK(parse_depth("\"a\0\"", 4, 0) == NULL && err.offset == 2);

    /* UTF-8: the error is at the first byte that cannot continue */
    CHECK(fails_at("\"\x80\"", 1));
    CHECK(fails_at("\"\xbf\"", 1));
    CHECK(fails_at("\"\xc0\x80\"", 1));
    CHECK(fails_at("\"\xc1\xbf\"", 1));
    CHECK(fails_at("\"\xe0\x80\x80\"", 2));
    CHECK(fails_at("\"\xe0\x9f\xbf\"", 2));
    CHECK(fails_at("\"\xf0\x80\x80\x80\"", 2));
    CHECK(fails_at("\"\xf0\x8f\xbf\xbf\"", 2));
    CHECK(fails_at("\"\xed\xa0\x80\"", 2));
    CHECK(fails_at("\"\xed\xbf\xbf\"", 2));
    CHECK(fails_at("\"\xf4\x90\x80\x80\"", 2));
    CHECK(fails_at("\"\xf5\x80\x80\x80\"", 1));
    CHECK(fails_at("\"\xff\"", 1));
    CHECK(fails_at("\"\xc3\"", 2));
    CHECK(fails_at("\"\xe2\x82\"", 3));
    CHECK(fails_at("\"\xe2\x82", 3));
    CHECK(fails_at("\"\xf0\x9f\x98\x41\"", 4));
}


/* every special byte at every position around the 8-byte scan */
static void
test_string_positions(void)
{
    char    text[40], want[40];
    size_t  i, ok = 0;

    for (i = 0; i < 24; i++) {
        memset(text, 'a', sizeof(text));
        text[0] = '"';
        text[sizeof(text) - 1] = '"';

        text[1 + i] = '\x1f';
        ok += parse_depth(text, sizeof(text), 0) == NULL && err.offset == 1 + i;

        text[1 + i] = '\xfe';
        ok += parse_depth(text, sizeof(text), 0) == NULL && err.offset == 1 + i;

        text[1 + i] = '"';
        ok += parse_depth(text, sizeof(text), 0) == NULL && err.offset == 2 + i;

        memcpy(text + 1 + i, "\\n", 2);
        memset(want, 'a', sizeof(want));
        want[i] = '\n';
        ok += is_string(parse_depth(text, sizeof(text), 0), want,
                        sizeof(text) - 3);

        memcpy(text + 1 + i, "\xc3\xa9", 2);
        ok += is_string(parse_depth(text, sizeof(text), 0), text + 1,
                        sizeof(text) - 2);
    }

    CHECK(ok == 5 * 24);
}


static void
test_containers(void)
{
    vmx_json_t  *j, *e;
    size_t       n;

    j = parse("[]");
    CHECK(j != NULL && j->type == VMX_JSON_ARRAY && j->count == 0
          && j->child == NULL);

    j = parse("{ }");
    CHECK(j != NULL && j->type == VMX_JSON_OBJECT && j->count == 0);
    CHECK_MEM(j->raw, j->raw_len, "{ }");

    j = parse(" [1, \"two\", [3], {\"four\": 4}, null] ");
    CHECK(j != NULL && j->count == 5);
    CHECK_MEM(j->raw, j->raw_len, "[1, \"two\", [3], {\"four\": 4}, null]");
    CHECK(vmx_json_at(j, 0)->integer == 1);
    CHECK(is_string(vmx_json_at(j, 1), "two", 3));
    CHECK(vmx_json_at(j, 2)->type == VMX_JSON_ARRAY);
    CHECK(vmx_json_at(vmx_json_at(j, 2), 0)->integer == 3);
    CHECK(vmx_json_get(vmx_json_at(j, 3), "four")->integer == 4);
    CHECK(vmx_json_at(j, 4)->type == VMX_JSON_NULL);
    CHECK(vmx_json_at(j, 5) == NULL);
    CHECK(vmx_json_at(j, (size_t) -1) == NULL);
    CHECK(vmx_json_at(vmx_json_at(j, 3), 0) == NULL);
    CHECK(vmx_json_at(NULL, 0) == NULL);

    for (n = 0, e = j->child; e; e = e->next) {
        n += (e->key == NULL);
    }

    CHECK(n == 5);

    CHECK(fails_at("[", 1));
    CHECK(fails_at("[1", 2));
    CHECK(fails_at("[1,", 3));
    CHECK(fails_at("[1,]", 3));
    CHECK(fails_at("[,1]", 1));
    CHECK(fails_at("[1 2]", 3));
    CHECK(fails_at("[1]]", 3));
    CHECK(fails_at("]", 0));
    CHECK(fails_at("{", 1));
    CHECK(fails_at("{,}", 1));
    CHECK(fails_at("{\"a\"", 4));
    CHECK(fails_at("{\"a\" 1}", 5));
    CHECK(fails_at("{\"a\":}", 5));
    CHECK(fails_at("{\"a\":1,}", 7));
    CHECK(fails_at("{\"a\":1 \"b\":2}", 7));
    CHECK(fails_at("{1:2}", 1));
    CHECK(fails_at("{'a':2}", 1));
    CHECK(fails_at("{\"a\\q\":2}", 4));
    CHECK(fails_at("[1] x", 4));
    CHECK(fails_at("[1] // comment", 4));
    CHECK(fails_at("/* c */ 1", 0));
    CHECK(fails_at("[1\f]", 2));
}


static void
test_objects(void)
{
    vmx_json_t  *j, *m;
    const char  *s;
    size_t       len;

    j = parse("{\"model\": \"gpt\", \"n\": 2, \"a\\u0062\": true, "
              "\"n\": 3, \"k\\u0000ey\": \"nul\", \"\": 0}");
    CHECK(j != NULL && j->count == 6);

    s = vmx_json_get_str(j, "model", &len);
    CHECK_MEM(s, len, "gpt");
    CHECK(s != NULL && s[len] == '\0');
    CHECK(vmx_json_get_str(j, "model", NULL) == s);

    m = vmx_json_get(j, "n");
    CHECK(m != NULL && m->integer == 2);
    CHECK(m->key[m->key_len] == '\0');

    m = vmx_json_get(j, "ab");
    CHECK(m != NULL && m->type == VMX_JSON_TRUE && m->key_len == 2);

    CHECK(vmx_json_get(j, "k") == NULL);
    CHECK(vmx_json_getn(j, "k\0ey", 4) != NULL);
    CHECK(vmx_json_getn(j, "model", 4) == NULL);
    CHECK(vmx_json_get(j, "") != NULL && vmx_json_get(j, "")->integer == 0);
    CHECK(vmx_json_get(j, "missing") == NULL);
    CHECK(vmx_json_get_str(j, "n", &len) == NULL);
    CHECK(vmx_json_get_str(j, "missing", &len) == NULL);

    CHECK(vmx_json_get(parse("[1]"), "a") == NULL);
    CHECK(vmx_json_get(NULL, "a") == NULL);
    CHECK(vmx_json_get_str(NULL, "a", &len) == NULL);
}


static void
test_raw_spans(void)
{
    vmx_json_t  *j, *m;

    j = parse("{\"a\": [1, 2]}");
    m = vmx_json_get(j, "a");
    CHECK_MEM(m->raw, m->raw_len, "[1, 2]");
    CHECK_MEM(vmx_json_at(m, 1)->raw, vmx_json_at(m, 1)->raw_len, "2");

    j = parse("\n{ \"s\" : \"x\\u0041\" ,\"o\":{\"p\":{}} , \"t\":true,"
              "\"z\":-1.5e3 }\n");
    CHECK_MEM(j->raw, j->raw_len, "{ \"s\" : \"x\\u0041\" ,\"o\":{\"p\":{}} , "
              "\"t\":true,\"z\":-1.5e3 }");

    m = vmx_json_get(j, "s");
    CHECK_MEM(m->raw, m->raw_len, "\"x\\u0041\"");
    CHECK_MEM(m->str, m->str_len, "xA");

    m = vmx_json_get(j, "o");
    CHECK_MEM(m->raw, m->raw_len, "{\"p\":{}}");
    CHECK_MEM(m->child->raw, m->child->raw_len, "{}");

    m = vmx_json_get(j, "t");
    CHECK_MEM(m->raw, m->raw_len, "true");

    m = vmx_json_get(j, "z");
    CHECK_MEM(m->raw, m->raw_len, "-1.5e3");
    CHECK(m->num == -1500);
}


static size_t
nested(char *buf, size_t depth, char open, char close)
{
    memset(buf, open, depth);
    memset(buf + depth, close, depth);

    return 2 * depth;
}


static void
test_depth(void)
{
    static char  buf[1024];
    size_t       n;

    n = nested(buf, 3, '[', ']');
    CHECK(parse_depth(buf, n, 3) != NULL);

    n = nested(buf, 4, '[', ']');
    CHECK(parse_depth(buf, n, 3) == NULL && err.offset == 3);

    n = nested(buf, 128, '[', ']');
    CHECK(parse_depth(buf, n, 0) != NULL);

    n = nested(buf, 129, '[', ']');
    CHECK(parse_depth(buf, n, 0) == NULL && err.offset == 128);

    n = nested(buf, 500, '[', ']');
    CHECK(parse_depth(buf, n, 0) == NULL && err.offset == 128);
    CHECK(parse_depth(buf, n, 500) != NULL);

    CHECK(parse_depth("{\"a\":{\"b\":[1]}}", 15, 3) != NULL);
    CHECK(parse_depth("{\"a\":{\"b\":[[1]]}}", 17, 3) == NULL
          && err.offset == 11);
    CHECK(parse_depth("[\"[[[[\"]", 8, 1) != NULL);
    CHECK(parse_depth("1", 1, 1) != NULL);
}


static void
test_out_of_memory(void)
{
    static const char  *texts[] = {
        "{\"a\": [1, \"x\\ny\", {\"b\": null}], \"c\": 1.5}",
        "0.0000000000000000000000000000000000000000000000000000000000000001",
        "\"\"",
    };
    vmx_json_t          *j;
    size_t               i, budget, ok;

    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        ok = 1;

        for (budget = 0; ; budget++) {
            arena_reset();
            arena.limited = 1;
            arena.left = budget;
            j = parse(texts[i]);

            if (j != NULL) {
                break;
            }

            ok &= strcmp(err.message, "out of memory") == 0;
        }

        CHECK(ok && budget > 0);
    }

    arena_reset();
}


static int
round_trips(const char *s, size_t len)
{
    char         buf[1024];
    size_t       n;
    vmx_json_t  *j;

    n = vmx_json_escape(NULL, s, len);
    if (n + 2 > sizeof(buf) || vmx_json_escape(buf + 1, s, len) != n) {
        return 0;
    }

    buf[0] = '"';
    buf[n + 1] = '"';
    j = parse_depth(buf, n + 2, 0);

    return is_string(j, s, len);
}


static void
test_escape(void)
{
    char    all[128 + 16];
    char    out[64];
    size_t  i, n;

    n = vmx_json_escape(out, "a\"b\\c\n\x01\x1f\t\x7f/", 11);
    CHECK_MEM(out, n, "a\\\"b\\\\c\\n\\u0001\\u001f\\t\x7f/");
    CHECK(vmx_json_escape(NULL, "a\"b\\c\n\x01\x1f\t\x7f/", 11) == n);
    CHECK(vmx_json_escape(NULL, "", 0) == 0);

    n = vmx_json_escape(out, "\b\f\r plain text \xc3\xa9", 17);
    CHECK_MEM(out, n, "\\b\\f\\r plain text \xc3\xa9");

    for (i = 0; i < 128; i++) {
        all[i] = (char) i;
    }

    memcpy(all + 128, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"
           "\"\\\n", 16);

    CHECK(round_trips(all, sizeof(all)));
    CHECK(round_trips("", 0));
    CHECK(round_trips("just some text longer than a word", 33));

    /* every suffix that starts on a character */
    for (i = 0; i <= 128; i++) {
        if (!round_trips(all + i, sizeof(all) - i)) {
            break;
        }
    }

    CHECK(i == 129);
}


static void
test_big_document(void)
{
    static char  text[64 * 1024];
    vmx_json_t  *j, *e;
    size_t       n = 0, i, ok = 0;

    text[n++] = '[';

    for (i = 0; i < 1000; i++) {
        n += (size_t) snprintf(text + n, sizeof(text) - n,
                               "%s{\"id\":%zu,\"name\":\"item \\\"%zu\\\"\"}",
                               i ? "," : "", i, i);
    }

    text[n++] = ']';

    j = parse_depth(text, n, 0);
    CHECK(j != NULL && j->count == 1000);

    for (i = 0, e = j ? j->child : NULL; e; e = e->next, i++) {
        ok += vmx_json_get(e, "id")->integer == (int64_t) i
              && vmx_json_get(e, "name")->str[5] == '"';
    }

    CHECK(ok == 1000);
}


/*
 * The tree's memory is bounded by its text: VMX_JSON_TREE_FACTOR bytes per
 * byte plus VMX_JSON_TREE_MIN, counted as an nginx pool takes them (8-byte
 * aligned), for the densest shapes of 1 MB: a text that would need more is
 * refused (too_dense) before it takes more.  Ordinary JSON parses.  The
 * allocator is a 32 MB bump region: 104-byte nodes, one per 2 bytes of
 * [0,0,...], took 52 MB before the bound.
 */
typedef struct {
    char    *base;
    size_t   used;
    size_t   size;
} bump_t;


static void *
bump_alloc(void *ctx, size_t size)
{
    bump_t  *b = ctx;
    char    *p;

    size = (size + 7) & ~(size_t) 7;
    if (size > b->size - b->used) {
        return NULL;
    }
    p = b->base + b->used;
    b->used += size;
    return p;
}


/* the tree's bytes per byte of text, or -1 when refused as too dense */
static double
tree_factor(bump_t *b, const char *text, size_t len)
{
    vmx_json_t        *j;
    vmx_json_error_t   e;
    size_t             bound = len * VMX_JSON_TREE_FACTOR + VMX_JSON_TREE_MIN;

    b->used = 0;
    j = vmx_json_parse(text, len, bump_alloc, b, 0, &e);
    CHECK(b->used <= bound);
    if (b->used > bound) {
        fprintf(stderr, "  %.20s...: %zu bytes of tree for %zu of text\n", text, b->used, len);
    }
    if (j == NULL) {
        CHECK(e.too_dense);
        return -1;
    }
    return (double) b->used / (double) len;
}


/* text of about len bytes: prefix, item repeated (each with its number if
   it has a %zu) joined by ",", suffix */
static size_t
repeat(char *text, size_t len, const char *prefix, const char *item,
    const char *suffix)
{
    size_t  n = 0, i;

    n += (size_t) snprintf(text, len, "%s", prefix);
    for (i = 0; n + 256 < len; i++) {
        n += (size_t) snprintf(text + n, len - n, i ? "," : "");
        n += (size_t) snprintf(text + n, len - n, item, i);
    }
    n += (size_t) snprintf(text + n, len - n, "%s", suffix);
    return n;
}


static void
test_memory_bound(void)
{
    static const char  chat[] =
        "{\"role\":\"user\",\"content\":\"What is the weather in city %zu?\"},"
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_%zu\",\"type\":"
        "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
        "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}";
    static const char  tool[] =
        "{\"type\":\"function\",\"function\":{\"name\":\"f%zu\",\"description\":"
        "\"Get the weather\",\"parameters\":{\"type\":\"object\",\"properties\":"
        "{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}";
    const size_t       len = 1024 * 1024;
    char              *text = malloc(len);
    bump_t             b = { malloc(32 * 1024 * 1024), 0, 32 * 1024 * 1024 };
    size_t             n;
    double             f;

    if (text == NULL || b.base == NULL) {
        abort();
    }

    /* refused: denser than a value per 6.5 bytes */
    n = repeat(text, len, "[", "0", "]");
    CHECK(tree_factor(&b, text, n) < 0);
    n = repeat(text, len, "[", "[]", "]");
    CHECK(tree_factor(&b, text, n) < 0);
    n = repeat(text, len, "[", "\"\"", "]");
    CHECK(tree_factor(&b, text, n) < 0);
    n = repeat(text, len, "[", "[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]", "]");
    CHECK(tree_factor(&b, text, n) < 0);
    n = repeat(text, len, "{", "\"\":0", "}");
    CHECK(tree_factor(&b, text, n) < 0);

    /* within the bound: many keys, a logit_bias, chats, tools */
    n = repeat(text, len, "{", "\"k%zu\":0", "}");
    f = tree_factor(&b, text, n);
    CHECK(f > 0 && f <= VMX_JSON_TREE_FACTOR);
    n = repeat(text, len, "{\"logit_bias\":{", "\"%zu\":-100", "}}");
    f = tree_factor(&b, text, n);
    CHECK(f > 0 && f <= VMX_JSON_TREE_FACTOR);
    n = repeat(text, len, "{\"model\":\"chat\",\"messages\":[", chat, "]}");
    f = tree_factor(&b, text, n);
    CHECK(f > 0 && f <= 10);
    n = repeat(text, len, "{\"model\":\"chat\",\"messages\":[],\"tools\":[", tool, "]}");
    f = tree_factor(&b, text, n);
    CHECK(f > 0 && f <= 10);

    free(b.base);
    free(text);
}


/* the duplicate of text, or NULL; its path is checked against path */
static int
dup_at(const char *text, const char *key, const char *path)
{
    vmx_json_t            *j;
    vmx_json_duplicate_t   d;

    j = parse(text);
    if (j == NULL || vmx_json_find_duplicate(j, arena_alloc, &arena, &d) != 1)
    {
        return 0;
    }

    return d.member != NULL
           && d.member->key_len == strlen(key)
           && memcmp(d.member->key, key, d.member->key_len) == 0
           && d.path_len == strlen(path) && strcmp(d.path, path) == 0;
}


static int
no_dup(const char *text)
{
    vmx_json_t            *j;
    vmx_json_duplicate_t   d;

    j = parse(text);

    return j != NULL && vmx_json_find_duplicate(j, arena_alloc, &arena, &d) == 0
           && d.member == NULL && d.path == NULL;
}


/* an object of n members "k0".."k<n-1>", with "k<dup>" again at the end */
static size_t
wide_object(char *text, size_t size, size_t n, size_t dup)
{
    size_t  len = 0, i;

    text[len++] = '{';

    for (i = 0; i < n; i++) {
        len += (size_t) snprintf(text + len, size - len, "%s\"k%zu\":%zu",
                                 i ? "," : "", i, i);
    }

    if (dup != (size_t) -1) {
        len += (size_t) snprintf(text + len, size - len, ",\"k%zu\":0", dup);
    }

    text[len++] = '}';

    return len;
}


static void
test_duplicates(void)
{
    static char            text[64 * 1024];
    size_t                 n, i, calls;
    vmx_json_t            *j;
    vmx_json_duplicate_t   d;

    CHECK(no_dup("{}"));
    CHECK(no_dup("[]"));
    CHECK(no_dup("\"a\""));
    CHECK(no_dup("{\"a\":1,\"b\":2,\"A\":3,\"ab\":4}"));
    /* the same key in two objects is no duplicate */
    CHECK(no_dup("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},"
                 "{\"role\":\"assistant\"}],\"x\":{\"model\":1}}"));
    /* escapes are compared decoded: "a" and "\u0061" differ only in text */
    CHECK(no_dup("{\"a\":1,\"a\\u0000\":2,\"\":3}"));

    CHECK(dup_at("{\"model\":\"a\",\"model\":\"b\"}", "model", "model"));
    CHECK(dup_at("{\"a\":1,\"\\u0061\":2}", "a", "a"));
    CHECK(dup_at("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"x\",\"role\":\"system\"}]}",
                 "role", "messages[0].role"));
    CHECK(dup_at("{\"messages\":[{\"role\":\"user\"},{\"role\":\"user\","
                 "\"tool_calls\":[{\"function\":{\"arguments\":"
                 "{\"city\":1,\"city\":2}}}]}]}",
                 "city", "messages[1].tool_calls[0].function.arguments.city"));
    CHECK(dup_at("[1,{\"a\":[{\"b\":1,\"b\":2}]}]", "b", "[1].a[0].b"));

    /* keys that are no identifiers are quoted and escaped */
    CHECK(dup_at("{\"x\":{\"a.b\":1,\"a.b\":2}}", "a.b", "x[\"a.b\"]"));
    CHECK(dup_at("{\"\":1,\"\":2}", "", "[\"\"]"));
    CHECK(dup_at("{\"9\":{\"q\\\"\\n\":1,\"q\\\"\\n\":2}}",
                 "q\"\n", "[\"9\"][\"q\\\"\\n\"]"));

    /* a NUL in a key is escaped: the path is a C string */
    j = parse("{\"a\\u0000b\":1,\"a\\u0000b\":2}");
    CHECK(j != NULL && vmx_json_find_duplicate(j, arena_alloc, &arena, &d) == 1
          && d.member->key_len == 3 && d.path_len == 12
          && strcmp(d.path, "[\"a\\u0000b\"]") == 0);
    CHECK(dup_at("{\"_a$\":{\"k\":1,\"k\":2}}", "k", "_a$.k"));

    /* the first in the text: one in an earlier member before a later one */
    CHECK(dup_at("{\"a\":{\"x\":1,\"x\":2},\"b\":1,\"b\":2}", "x", "a.x"));
    CHECK(dup_at("{\"b\":1,\"a\":{\"x\":1,\"x\":2},\"b\":2}", "x", "a.x"));
    CHECK(dup_at("{\"b\":1,\"b\":{\"x\":1,\"x\":2}}", "b", "b"));
    CHECK(dup_at("{\"c\":1,\"b\":1,\"c\":2,\"b\":2}", "c", "c"));

    /* large objects are sorted: the duplicate is still the first one */
    n = wide_object(text, sizeof(text), 2000, (size_t) -1);
    j = parse_depth(text, n, 0);
    CHECK(j != NULL && j->count == 2000
          && vmx_json_find_duplicate(j, arena_alloc, &arena, &d) == 0
          && d.member == NULL);

    n = wide_object(text, sizeof(text), 2000, 1234);
    j = parse_depth(text, n, 0);
    CHECK(j != NULL && vmx_json_find_duplicate(j, arena_alloc, &arena, &d) == 1
          && d.member != NULL && d.member->next == NULL
          && d.path_len == 5 && strcmp(d.path, "k1234") == 0);

    /* with two duplicated keys, the earlier second occurrence wins */
    n = wide_object(text, sizeof(text), 40, 39);
    memcpy(text + n - 1, ",\"k3\":1}", 9);
    j = parse_depth(text, n + 7, 0);
    CHECK(j != NULL && vmx_json_find_duplicate(j, arena_alloc, &arena, &d) == 1
          && d.path != NULL && strcmp(d.path, "k39") == 0);

    /* an allocator that runs dry: -1, never a wrong answer */
    n = wide_object(text, sizeof(text), 100, 50);
    j = parse_depth(text, n, 0);
    CHECK(j != NULL);

    for (calls = 0, i = 0; i < 3; i++) {
        arena.limited = 1;
        arena.left = i;
        calls += vmx_json_find_duplicate(j, arena_alloc, &arena, &d)
                 == (i < 2 ? -1 : 1);
        arena.limited = 0;
    }

    CHECK(calls == 3);
}


int
main(void)
{
    test_literals();
    test_numbers();
    test_strings();
    test_string_positions();
    test_containers();
    test_objects();
    test_raw_spans();
    test_depth();
    test_out_of_memory();
    test_escape();
    test_big_document();
    test_memory_bound();
    test_duplicates();

    arena_reset();

    return UNIT_REPORT();
}
