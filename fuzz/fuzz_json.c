/*
 * libFuzzer target of vmx_json: the input is the text.  Every allocation is
 * its own malloc, so AddressSanitizer sees any overrun.  A tree must agree
 * with the text (spans, counts, lookups), its strings must survive
 * vmx_json_escape and a parse, and the same text must fail cleanly under a
 * depth bound below the tree's depth or an allocator that runs dry.  The
 * duplicate key found must be the one a pairwise search finds first, and
 * the rewrites of a parsed body (an error envelope completed, a chunk's
 * usage left out) must be JSON that does what they say.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_json.h"
#include "vmx_translate.h"

#include "fuzz_common.h"


#define DEPTH  32


/* parses text with a fresh allocator that allows left allocations */
static vmx_json_t *
parse(arena_t *a, const char *text, size_t len, unsigned depth, size_t left,
    vmx_json_error_t *err)
{
    vmx_json_t  *j;

    a->blocks = NULL;
    a->allocs = 0;
    a->left = left;

    j = vmx_json_parse(text, len, arena_alloc, a, depth, err);

    check(j != NULL || (err->message != NULL && err->offset <= len));

    return j;
}


static void
check_string(const vmx_json_t *j)
{
    arena_t            a;
    vmx_json_error_t   err;
    vmx_json_t        *s;
    size_t             n;
    char              *text;

    check(j->str[j->str_len] == '\0');
    check(j->raw[0] == '"' && j->raw[j->raw_len - 1] == '"');

    n = vmx_json_escape(NULL, j->str, j->str_len);
    text = malloc(n + 2);
    check(vmx_json_escape(text + 1, j->str, j->str_len) == n);
    text[0] = '"';
    text[n + 1] = '"';

    s = parse(&a, text, n + 2, 0, SIZE_MAX, &err);
    check(s != NULL && s->type == VMX_JSON_STRING && s->str_len == j->str_len
          && memcmp(s->str, j->str, j->str_len) == 0);

    arena_free(&a);
    free(text);
}


/* a member found by its name is the first with that name */
static void
check_lookup(const vmx_json_t *obj, const vmx_json_t *m)
{
    const vmx_json_t  *found = vmx_json_getn(obj, m->key, m->key_len), *e;

    check(found != NULL && found->key_len == m->key_len);

    for (e = obj->child; e != found; e = e->next) {
        check(e != m);
        check(e->key_len != m->key_len
              || memcmp(e->key, m->key, m->key_len) != 0);
    }
}


/* the nesting depth of j, after checking it against the text */
static unsigned
walk(const vmx_json_t *j, const char *text, size_t len)
{
    const vmx_json_t  *e;
    unsigned           depth = 0, d;
    size_t             n = 0;

    check(j->raw >= text && j->raw_len > 0
          && j->raw_len <= (size_t) (text + len - j->raw));

    switch (j->type) {

    case VMX_JSON_STRING:
        check_string(j);
        return 0;

    case VMX_JSON_NUMBER:
        check(!j->is_int || (double) j->integer == j->num);
        return 0;

    case VMX_JSON_ARRAY:
    case VMX_JSON_OBJECT:
        check(j->raw[0] == (j->type == VMX_JSON_ARRAY ? '[' : '{'));
        check(j->raw[j->raw_len - 1] == (j->type == VMX_JSON_ARRAY ? ']' : '}'));

        for (e = j->child; e; e = e->next, n++) {
            check(e->raw > j->raw && e->raw + e->raw_len < j->raw + j->raw_len);
            check((e->key != NULL) == (j->type == VMX_JSON_OBJECT));

            if (e->key) {
                check(e->key[e->key_len] == '\0');
                check_lookup(j, e);

            } else {
                check(vmx_json_at(j, n) == e);
            }

            d = walk(e, text, len);
            depth = d > depth ? d : depth;
        }

        check(n == j->count && vmx_json_at(j, n) == NULL);
        return depth + 1;

    default:
        check(j->raw_len == (j->type == VMX_JSON_FALSE ? 5 : 4));
        return 0;
    }
}


/*
 * The first duplicate in text order by brute force: the member with a key
 * an earlier member of its object has, with the smallest raw.
 */
static const vmx_json_t *
first_duplicate(const vmx_json_t *j, const vmx_json_t *best)
{
    const vmx_json_t  *m, *e;

    if (j->type != VMX_JSON_OBJECT && j->type != VMX_JSON_ARRAY) {
        return best;
    }

    for (m = j->child; m; m = m->next) {
        if (j->type == VMX_JSON_OBJECT) {
            for (e = j->child; e != m; e = e->next) {
                if (e->key_len == m->key_len
                    && memcmp(e->key, m->key, m->key_len) == 0)
                {
                    break;
                }
            }

            if (e != m && (best == NULL || m->raw < best->raw)) {
                best = m;
            }
        }

        best = first_duplicate(m, best);
    }

    return best;
}


static void
check_duplicate(const vmx_json_t *j)
{
    arena_t                a = ARENA_UNBOUNDED, b = ARENA_UNBOUNDED;
    vmx_json_duplicate_t   d;
    const vmx_json_t      *want;
    size_t                 i;
    int                    rc;

    want = first_duplicate(j, NULL);
    rc = vmx_json_find_duplicate(j, arena_alloc, &a, &d);

    check(rc == (want != NULL) && d.member == want);

    if (want) {
        check(d.path != NULL && d.path_len > 0 && d.path[d.path_len] == '\0'
              && strlen(d.path) == d.path_len);

        /* printable but for UTF-8: keys are escaped in the path */
        for (i = 0; i < d.path_len; i++) {
            check((unsigned char) d.path[i] >= 0x20);
        }

        /* an allocator that runs dry fails, never finds another */
        b.left = a.allocs - 1;
        check(vmx_json_find_duplicate(j, arena_alloc, &b, &d) == -1);

    } else {
        check(d.member == NULL && d.path == NULL);
    }

    arena_free(&b);
    arena_free(&a);
}


static void
check_rewrites(const vmx_json_t *j)
{
    arena_t             a = ARENA_UNBOUNDED;
    vmx_buf_t           out;
    vmx_json_t         *k, *e;
    vmx_json_error_t    err;

    vmx_buf_init(&out, arena_alloc, &a, 0);

    if (vmx_openai_error_complete(&out, j, "server_error", "m")) {
        k = vmx_json_parse(out.data, out.len, arena_alloc, &a, 0, &err);
        e = vmx_json_get(k, "error");
        check(e != NULL && e->type == VMX_JSON_OBJECT
              && vmx_json_get(e, "message") && vmx_json_get(e, "type")
              && vmx_json_get(e, "param") && vmx_json_get(e, "code"));

        /* complete now: a second pass leaves it as it is */
        vmx_buf_init(&out, arena_alloc, &a, 0);
        check(vmx_openai_error_complete(&out, k, "x", "y") == 0
              && out.len == 0);

    } else {
        check(out.len == 0);
    }

    vmx_buf_init(&out, arena_alloc, &a, 0);

    if (vmx_openai_chunk_without_usage(&out, j)) {
        k = vmx_json_parse(out.data, out.len, arena_alloc, &a, 0, &err);
        check(k != NULL && k->type == VMX_JSON_OBJECT
              && vmx_json_get(k, "usage") == NULL
              && vmx_json_get(vmx_json_get(k, "x_groq"), "usage") == NULL);
        check(k->count <= j->count);

    } else {
        check(out.len == 0);
    }

    arena_free(&a);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    arena_t            a, b;
    vmx_json_error_t   err;
    vmx_json_t        *j, *k;
    const char        *text;
    unsigned           depth;
    size_t             allocs;

    /* an exact copy: a read past the end is a heap overflow */
    text = memcpy(malloc(size ? size : 1), data, size);

    j = parse(&a, text, size, DEPTH, SIZE_MAX, &err);

    if (j == NULL) {
        check(parse(&b, text, size, DEPTH, 0, &err) == NULL);
        arena_free(&b);
        arena_free(&a);
        free((void *) text);
        return 0;
    }

    depth = walk(j, text, size);
    allocs = a.allocs;

    check_duplicate(j);
    check_rewrites(j);

    if (depth > 1) {
        k = parse(&b, text, size, depth - 1, SIZE_MAX, &err);
        check(k == NULL && strcmp(err.message, "nesting too deep") == 0);
        arena_free(&b);
    }

    /* one allocation too few somewhere along the parse */
    k = parse(&b, text, size, DEPTH, size % allocs, &err);
    check(k == NULL && strcmp(err.message, "out of memory") == 0);
    arena_free(&b);

    arena_free(&a);
    free((void *) text);

    return 0;
}
