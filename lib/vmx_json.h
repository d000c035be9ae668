/*
 * vmx_json: a small JSON parser for the data plane.
 *
 * Every node and every decoded string is taken from a caller-supplied
 * allocator (an nginx pool in the module, malloc or an arena in tests), so
 * the whole tree is freed with that pool.  Each node keeps the span of its
 * source text, which lets the module forward untouched members byte for byte.
 * No global state, no nginx or libc allocation: safe to call from a fuzzer.
 *
 * Memory: a parse takes at most VMX_JSON_TREE_FACTOR bytes per byte of text
 * plus VMX_JSON_TREE_MIN, counted as allocations rounded up to 8 bytes.  A
 * node is 96 bytes, so a text denser in values than one per 6 bytes (an
 * array of 0s: one per 2) is refused past that (err->too_dense) rather
 * than taking up to 48 times its size; ordinary JSON (chat bodies, tools,
 * answers) takes 2 to 10 times its size.
 */

#ifndef VMX_JSON_H
#define VMX_JSON_H

#include <stddef.h>
#include <stdint.h>


typedef enum {
    VMX_JSON_NULL = 0,
    VMX_JSON_FALSE,
    VMX_JSON_TRUE,
    VMX_JSON_NUMBER,
    VMX_JSON_STRING,
    VMX_JSON_ARRAY,
    VMX_JSON_OBJECT
} vmx_json_type_e;


#define VMX_JSON_TREE_FACTOR  16
#define VMX_JSON_TREE_MIN     65536


typedef struct vmx_json_s  vmx_json_t;

struct vmx_json_s {
    vmx_json_type_e   type;
    unsigned          is_int:1;     /* see num */

    /* the value's source text, e.g. "\"a\\n\"" or "{...}" */
    const char       *raw;
    size_t            raw_len;

    /* decoded member name when the node is a member of an object */
    const char       *key;
    size_t            key_len;

    /* decoded string (NUL-terminated) for VMX_JSON_STRING */
    const char       *str;
    size_t            str_len;

    /* VMX_JSON_NUMBER; is_int when the text is an integer within int64 */
    double            num;
    int64_t           integer;

    /* VMX_JSON_ARRAY and VMX_JSON_OBJECT: children in source order */
    vmx_json_t       *child;
    size_t            count;

    vmx_json_t       *next;
};


typedef void *(*vmx_json_alloc_pt)(void *ctx, size_t size);


typedef struct {
    size_t            offset;     /* byte offset of the error in the text */
    const char       *message;    /* static string */
    unsigned          too_dense:1;  /* more values than the memory bound */
} vmx_json_error_t;


/*
 * Parses exactly one JSON value (surrounding white space allowed) of len
 * bytes.  Strict RFC 8259: no comments, no trailing commas, strings must be
 * valid UTF-8, \u escapes with surrogate pairs decoded, duplicate keys kept
 * (lookups return the first).  max_depth bounds nesting (0 means 128).
 * Returns NULL and fills err on a syntax error, when alloc returns NULL, or
 * when the tree would pass the memory bound above.
 */
vmx_json_t *vmx_json_parse(const char *text, size_t len, vmx_json_alloc_pt alloc,
    void *alloc_ctx, unsigned max_depth, vmx_json_error_t *err);

/* member of an object by name, NULL when absent or when obj is no object */
vmx_json_t *vmx_json_get(const vmx_json_t *obj, const char *name);
vmx_json_t *vmx_json_getn(const vmx_json_t *obj, const char *name,
    size_t name_len);

/* the string of a member when it is a string, else NULL */
const char *vmx_json_get_str(const vmx_json_t *obj, const char *name,
    size_t *len);

/* element i of an array, NULL when out of range */
vmx_json_t *vmx_json_at(const vmx_json_t *arr, size_t i);

/*
 * A key that an object of the tree has twice (duplicates are kept by the
 * parser, but a provider may act on the last while the gateway reads the
 * first).  member is the later of the two; path locates it from the root,
 * e.g. "messages[0].role", with a key that is no identifier as ["a.b"]
 * (JSON-escaped, so the path is printable and holds no NUL).
 */
typedef struct {
    const vmx_json_t  *member;
    char              *path;      /* NUL-terminated, from the allocator */
    size_t             path_len;
} vmx_json_duplicate_t;

/*
 * Finds the duplicated key that comes first in the text.  Returns 1 and
 * fills dup when there is one, 0 when there is none, -1 when alloc fails.
 * O(k log k) key comparisons per object of k members: large objects are
 * sorted with scratch space from alloc, small ones scanned.
 */
int vmx_json_find_duplicate(const vmx_json_t *root, vmx_json_alloc_pt alloc,
    void *alloc_ctx, vmx_json_duplicate_t *dup);

/*
 * Writes src as the inside of a JSON string (quotes not included) into dst
 * and returns the number of bytes written; with dst NULL returns the number
 * of bytes needed.  Escapes '"', '\\' and control characters.
 */
size_t vmx_json_escape(char *dst, const char *src, size_t len);

#endif /* VMX_JSON_H */
