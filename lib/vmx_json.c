/*
 * A strict RFC 8259 parser: one recursive-descent pass that builds the tree
 * with the caller's allocator.  A string is scanned (validated, its decoded
 * length counted) before its node is allocated, so every node is a single
 * allocation that also holds its decoded member name and string value.
 */

#include <stdlib.h>
#include <string.h>

#include "vmx_json.h"


#define VMX_JSON_DEFAULT_DEPTH  128

#define VMX_JSON_ONES  0x0101010101010101ULL
#define VMX_JSON_HIGH  0x8080808080808080ULL


typedef struct {
    const unsigned char  *start;
    const unsigned char  *p;
    const unsigned char  *end;
    vmx_json_alloc_pt     alloc;
    void                 *alloc_ctx;
    size_t                budget;     /* bytes the tree may still take */
    unsigned              max_depth;
    unsigned              too_dense:1;
    const unsigned char  *err_pos;
    const char           *err_msg;
} vmx_json_parser_t;


/* a validated string of the text, before it is decoded */
typedef struct {
    const unsigned char  *start;      /* after the opening quote */
    const unsigned char  *end;        /* at the closing quote */
    size_t                len;        /* decoded length */
    unsigned              escaped;
} vmx_json_span_t;


static vmx_json_t *vmx_json_value(vmx_json_parser_t *ps, unsigned depth,
    const vmx_json_span_t *key);


static void *
vmx_json_fail(vmx_json_parser_t *ps, const unsigned char *pos, const char *msg)
{
    ps->err_pos = pos;
    ps->err_msg = msg;
    return NULL;
}


static inline const unsigned char *
vmx_json_skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
    }

    return p;
}


static inline int
vmx_json_is_digit(unsigned c)
{
    return c - '0' < 10;
}


static inline int
vmx_json_hex_digit(unsigned c)
{
    if (c - '0' < 10) {
        return (int) (c - '0');
    }

    c |= 0x20;

    return (c - 'a' < 6) ? (int) (c - 'a' + 10) : -1;
}


/* nonzero when one of the 8 bytes of v is a control, '"' or '\\' */
static inline uint64_t
vmx_json_word_escapable(uint64_t v)
{
    uint64_t  q = v ^ (VMX_JSON_ONES * '"');
    uint64_t  b = v ^ (VMX_JSON_ONES * '\\');

    return (((v - VMX_JSON_ONES * 0x20) & ~v)
            | ((q - VMX_JSON_ONES) & ~q)
            | ((b - VMX_JSON_ONES) & ~b)) & VMX_JSON_HIGH;
}


/*
 * Skips bytes that need no escaping and, when ascii is set, no UTF-8
 * validation either: eight at a time, then one by one.
 */
static inline const unsigned char *
vmx_json_skip_plain(const unsigned char *p, const unsigned char *end,
    int ascii)
{
    uint64_t  v, high = ascii ? VMX_JSON_HIGH : 0;
    unsigned  limit = ascii ? 0x80 : 0x100;

    while (end - p >= 8) {
        memcpy(&v, p, 8);

        if ((vmx_json_word_escapable(v) | (v & high)) != 0) {
            break;
        }

        p += 8;
    }

    while (p < end && *p >= 0x20 && *p < limit && *p != '"' && *p != '\\') {
        p++;
    }

    return p;
}


/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF */
static const unsigned char *
vmx_json_scan_utf8(vmx_json_parser_t *ps, const unsigned char *p)
{
    unsigned  c = *p, lo = 0x80, hi = 0xbf;
    size_t    i, n;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;

    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        lo = (c == 0xe0) ? 0xa0 : lo;
        hi = (c == 0xed) ? 0x9f : hi;

    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        lo = (c == 0xf0) ? 0x90 : lo;
        hi = (c == 0xf4) ? 0x8f : hi;

    } else {
        return vmx_json_fail(ps, p, "invalid UTF-8");
    }

    for (i = 1; i <= n; i++) {
        if (p + i == ps->end || p[i] < lo || p[i] > hi) {
            return vmx_json_fail(ps, p + i, "invalid UTF-8");
        }

        lo = 0x80;
        hi = 0xbf;
    }

    return p + n + 1;
}


/* the 4 hex digits at p, or -1 with the error at the first bad one */
static long
vmx_json_scan_hex4(vmx_json_parser_t *ps, const unsigned char *p)
{
    long  v = 0;
    int   d, i;

    for (i = 0; i < 4; i++) {
        d = (p + i < ps->end) ? vmx_json_hex_digit(p[i]) : -1;

        if (d < 0) {
            vmx_json_fail(ps, p + i, "invalid \\u escape");
            return -1;
        }

        v = v << 4 | d;
    }

    return v;
}


static size_t
vmx_json_utf8_len(unsigned long cp)
{
    return (cp < 0x80) ? 1 : (cp < 0x800) ? 2 : (cp < 0x10000) ? 3 : 4;
}


/* validates the escape at p (a backslash); adds what decoding saves */
static const unsigned char *
vmx_json_scan_escape(vmx_json_parser_t *ps, const unsigned char *p,
    size_t *saved)
{
    long  hi, lo;

    if (p + 1 == ps->end) {
        return vmx_json_fail(ps, p + 1, "unterminated string");
    }

    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
    case 't':
        *saved += 1;
        return p + 2;

    case 'u':
        break;

    default:
        return vmx_json_fail(ps, p + 1, "invalid escape");
    }

    hi = vmx_json_scan_hex4(ps, p + 2);
    if (hi < 0) {
        return NULL;
    }

    if (hi < 0xd800 || hi > 0xdfff) {
        *saved += 6 - vmx_json_utf8_len((unsigned long) hi);
        return p + 6;
    }

    if (hi > 0xdbff || ps->end - p < 8 || p[6] != '\\' || p[7] != 'u') {
        return vmx_json_fail(ps, p, "lone surrogate in \\u escape");
    }

    lo = vmx_json_scan_hex4(ps, p + 8);
    if (lo < 0) {
        return NULL;
    }

    if (lo < 0xdc00 || lo > 0xdfff) {
        return vmx_json_fail(ps, p, "lone surrogate in \\u escape");
    }

    *saved += 12 - 4;

    return p + 12;
}


/* validates the string whose opening quote is at ps->p */
static int
vmx_json_scan_string(vmx_json_parser_t *ps, vmx_json_span_t *s)
{
    const unsigned char  *p = ps->p + 1;
    size_t                saved = 0;

    s->start = p;
    s->escaped = 0;

    for ( ;; ) {
        p = vmx_json_skip_plain(p, ps->end, 1);

        if (p == ps->end) {
            vmx_json_fail(ps, p, "unterminated string");
            return -1;
        }

        if (*p == '"') {
            break;
        }

        if (*p == '\\') {
            s->escaped = 1;
            p = vmx_json_scan_escape(ps, p, &saved);

        } else if (*p < 0x20) {
            vmx_json_fail(ps, p, "control character in string");
            return -1;

        } else {
            p = vmx_json_scan_utf8(ps, p);
        }

        if (p == NULL) {
            return -1;
        }
    }

    s->end = p;
    s->len = (size_t) (p - s->start) - saved;

    return 0;
}


static char *
vmx_json_put_utf8(char *d, unsigned long cp)
{
    if (cp < 0x80) {
        *d++ = (char) cp;

    } else if (cp < 0x800) {
        *d++ = (char) (0xc0 | cp >> 6);
        *d++ = (char) (0x80 | (cp & 0x3f));

    } else if (cp < 0x10000) {
        *d++ = (char) (0xe0 | cp >> 12);
        *d++ = (char) (0x80 | (cp >> 6 & 0x3f));
        *d++ = (char) (0x80 | (cp & 0x3f));

    } else {
        *d++ = (char) (0xf0 | cp >> 18);
        *d++ = (char) (0x80 | (cp >> 12 & 0x3f));
        *d++ = (char) (0x80 | (cp >> 6 & 0x3f));
        *d++ = (char) (0x80 | (cp & 0x3f));
    }

    return d;
}


/* the escape was validated by the scan */
static unsigned long
vmx_json_hex4(const unsigned char *p)
{
    return (unsigned long) (vmx_json_hex_digit(p[0]) << 12
                            | vmx_json_hex_digit(p[1]) << 8
                            | vmx_json_hex_digit(p[2]) << 4
                            | vmx_json_hex_digit(p[3]));
}


static const unsigned char *
vmx_json_decode_escape(const unsigned char *p, char **dst)
{
    unsigned long  cp;

    switch (p[1]) {
    case 'b': *(*dst)++ = '\b'; return p + 2;
    case 'f': *(*dst)++ = '\f'; return p + 2;
    case 'n': *(*dst)++ = '\n'; return p + 2;
    case 'r': *(*dst)++ = '\r'; return p + 2;
    case 't': *(*dst)++ = '\t'; return p + 2;
    case 'u': break;
    default:  *(*dst)++ = (char) p[1]; return p + 2;
    }

    cp = vmx_json_hex4(p + 2);
    p += 6;

    if (cp >= 0xd800 && cp <= 0xdbff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (vmx_json_hex4(p + 2) - 0xdc00);
        p += 6;
    }

    *dst = vmx_json_put_utf8(*dst, cp);

    return p;
}


/* writes the decoded, NUL-terminated string s to dst */
static void
vmx_json_decode(char *dst, const vmx_json_span_t *s)
{
    const unsigned char  *p = s->start, *bs;
    size_t                n;

    if (!s->escaped) {
        memcpy(dst, p, s->len);
        dst[s->len] = '\0';
        return;
    }

    while (p < s->end) {
        bs = memchr(p, '\\', (size_t) (s->end - p));
        n = (size_t) ((bs ? bs : s->end) - p);

        memcpy(dst, p, n);
        dst += n;
        p += n;

        if (bs) {
            p = vmx_json_decode_escape(p, &dst);
        }
    }

    *dst = '\0';
}


/* size bytes of the tree's budget, counted as a pool takes them */
static void *
vmx_json_alloc(vmx_json_parser_t *ps, const unsigned char *pos, size_t size)
{
    void    *p;
    size_t   taken = (size + 7) & ~(size_t) 7;

    if (taken > ps->budget) {
        ps->too_dense = 1;
        return vmx_json_fail(ps, pos, "too many values for the size of the "
                             "text");
    }

    p = ps->alloc(ps->alloc_ctx, size);
    if (p == NULL) {
        return vmx_json_fail(ps, pos, "out of memory");
    }

    ps->budget -= taken;

    return p;
}


/*
 * A node at ps->p; its block also holds the decoded key and extra bytes
 * (the string value) after the key.
 */
static vmx_json_t *
vmx_json_node(vmx_json_parser_t *ps, vmx_json_type_e type,
    const vmx_json_span_t *key, size_t extra)
{
    vmx_json_t  *n;
    char        *k;
    size_t       size;

    size = sizeof(vmx_json_t) + extra + (key ? key->len + 1 : 0);

    n = vmx_json_alloc(ps, ps->p, size);
    if (n == NULL) {
        return NULL;
    }

    memset(n, 0, sizeof(vmx_json_t));
    n->type = type;
    n->raw = (const char *) ps->p;

    if (key) {
        k = (char *) (n + 1);
        vmx_json_decode(k, key);
        n->key = k;
        n->key_len = key->len;
    }

    return n;
}


static vmx_json_t *
vmx_json_string(vmx_json_parser_t *ps, const vmx_json_span_t *key)
{
    const unsigned char  *start = ps->p;
    vmx_json_span_t       s;
    vmx_json_t           *n;
    char                 *str;

    if (vmx_json_scan_string(ps, &s) != 0) {
        return NULL;
    }

    n = vmx_json_node(ps, VMX_JSON_STRING, key, s.len + 1);
    if (n == NULL) {
        return NULL;
    }

    str = (char *) (n + 1) + (key ? key->len + 1 : 0);
    vmx_json_decode(str, &s);

    n->str = str;
    n->str_len = s.len;
    n->raw_len = (size_t) (s.end + 1 - start);
    ps->p = s.end + 1;

    return n;
}


static int64_t
vmx_json_negate(uint64_t mag)
{
    /* -(int64_t) mag overflows for INT64_MIN */
    return mag ? -(int64_t) (mag - 1) - 1 : 0;
}


/*
 * strtod on a NUL-terminated copy: the text is not terminated.  nginx and
 * the daemon never call setlocale(), so the decimal point is '.'.
 */
static int
vmx_json_strtod(vmx_json_parser_t *ps, const unsigned char *p, size_t n,
    double *num)
{
    char   buf[64], *s = buf;

    if (n >= sizeof(buf)) {
        s = vmx_json_alloc(ps, p, n + 1);
        if (s == NULL) {
            return -1;
        }
    }

    memcpy(s, p, n);
    s[n] = '\0';
    *num = strtod(s, NULL);

    return 0;
}


static const unsigned char *
vmx_json_digits(vmx_json_parser_t *ps, const unsigned char *p)
{
    if (p == ps->end || !vmx_json_is_digit(*p)) {
        return vmx_json_fail(ps, p, "expected a digit");
    }

    do {
        p++;
    } while (p < ps->end && vmx_json_is_digit(*p));

    return p;
}


static vmx_json_t *
vmx_json_number(vmx_json_parser_t *ps, const vmx_json_span_t *key)
{
    const unsigned char  *start = ps->p, *p = start, *end = ps->end;
    vmx_json_t           *n;
    uint64_t              mag = 0;
    unsigned              neg = 0, fits = 1, integral = 1, d;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    if (p < end && *p == '0') {
        p++;

        if (p < end && vmx_json_is_digit(*p)) {
            return vmx_json_fail(ps, p, "leading zero in number");
        }

    } else {
        if (p == end || !vmx_json_is_digit(*p)) {
            return vmx_json_fail(ps, p, "invalid number");
        }

        for ( /* void */ ; p < end && vmx_json_is_digit(*p); p++) {
            d = *p - '0';

            if (mag > INT64_MAX / 10 || (mag == INT64_MAX / 10 && d > 7 + neg)) {
                fits = 0;
            }

            mag = fits ? mag * 10 + d : mag;
        }
    }

    if (p < end && *p == '.') {
        integral = 0;
        p = vmx_json_digits(ps, p + 1);
        if (p == NULL) {
            return NULL;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        p += (p < end && (*p == '+' || *p == '-'));
        p = vmx_json_digits(ps, p);
        if (p == NULL) {
            return NULL;
        }
    }

    n = vmx_json_node(ps, VMX_JSON_NUMBER, key, 0);
    if (n == NULL) {
        return NULL;
    }

    n->raw_len = (size_t) (p - start);
    ps->p = p;

    if (integral && fits) {
        n->is_int = 1;
        n->integer = neg ? vmx_json_negate(mag) : (int64_t) mag;
        n->num = neg ? -(double) mag : (double) mag;
        return n;
    }

    return vmx_json_strtod(ps, start, n->raw_len, &n->num) == 0 ? n : NULL;
}


static vmx_json_t *
vmx_json_literal(vmx_json_parser_t *ps, const vmx_json_span_t *key,
    const char *word, size_t len, vmx_json_type_e type)
{
    const unsigned char  *p = ps->p;
    vmx_json_t           *n;
    size_t                i;

    for (i = 1; i < len; i++) {
        if (p + i == ps->end || p[i] != (unsigned char) word[i]) {
            return vmx_json_fail(ps, p + i, "invalid literal");
        }
    }

    n = vmx_json_node(ps, type, key, 0);
    if (n == NULL) {
        return NULL;
    }

    n->raw_len = len;
    ps->p = p + len;

    return n;
}


/* after a member or element: 1 at ',', 0 at the closing byte, else -1 */
static int
vmx_json_separator(vmx_json_parser_t *ps, unsigned close, const char *msg)
{
    const unsigned char  *p = vmx_json_skip_ws(ps->p, ps->end);

    if (p < ps->end && *p == ',') {
        ps->p = vmx_json_skip_ws(p + 1, ps->end);
        return 1;
    }

    ps->p = p;

    if (p < ps->end && *p == close) {
        return 0;
    }

    vmx_json_fail(ps, p, msg);

    return -1;
}


static vmx_json_t *
vmx_json_array(vmx_json_parser_t *ps, unsigned depth,
    const vmx_json_span_t *key)
{
    vmx_json_t  *arr, *item, **tail;
    int          more;

    arr = vmx_json_node(ps, VMX_JSON_ARRAY, key, 0);
    if (arr == NULL) {
        return NULL;
    }

    tail = &arr->child;
    ps->p = vmx_json_skip_ws(ps->p + 1, ps->end);
    more = (ps->p == ps->end || *ps->p != ']');

    while (more) {
        item = vmx_json_value(ps, depth + 1, NULL);
        if (item == NULL) {
            return NULL;
        }

        *tail = item;
        tail = &item->next;
        arr->count++;

        more = vmx_json_separator(ps, ']', "expected ',' or ']'");
        if (more < 0) {
            return NULL;
        }
    }

    ps->p++;
    arr->raw_len = (size_t) ((const char *) ps->p - arr->raw);

    return arr;
}


static vmx_json_t *
vmx_json_object(vmx_json_parser_t *ps, unsigned depth,
    const vmx_json_span_t *key)
{
    vmx_json_t       *obj, *member, **tail;
    vmx_json_span_t   name;
    int               more;

    obj = vmx_json_node(ps, VMX_JSON_OBJECT, key, 0);
    if (obj == NULL) {
        return NULL;
    }

    tail = &obj->child;
    ps->p = vmx_json_skip_ws(ps->p + 1, ps->end);
    more = (ps->p == ps->end || *ps->p != '}');

    while (more) {
        if (ps->p == ps->end || *ps->p != '"') {
            return vmx_json_fail(ps, ps->p, "expected a member name");
        }

        if (vmx_json_scan_string(ps, &name) != 0) {
            return NULL;
        }

        ps->p = vmx_json_skip_ws(name.end + 1, ps->end);

        if (ps->p == ps->end || *ps->p != ':') {
            return vmx_json_fail(ps, ps->p, "expected ':'");
        }

        ps->p = vmx_json_skip_ws(ps->p + 1, ps->end);

        member = vmx_json_value(ps, depth + 1, &name);
        if (member == NULL) {
            return NULL;
        }

        *tail = member;
        tail = &member->next;
        obj->count++;

        more = vmx_json_separator(ps, '}', "expected ',' or '}'");
        if (more < 0) {
            return NULL;
        }
    }

    ps->p++;
    obj->raw_len = (size_t) ((const char *) ps->p - obj->raw);

    return obj;
}


static vmx_json_t *
vmx_json_value(vmx_json_parser_t *ps, unsigned depth,
    const vmx_json_span_t *key)
{
    if (ps->p == ps->end) {
        return vmx_json_fail(ps, ps->p, "unexpected end of input");
    }

    switch (*ps->p) {
    case '"':
        return vmx_json_string(ps, key);

    case '[':
    case '{':
        if (depth > ps->max_depth) {
            return vmx_json_fail(ps, ps->p, "nesting too deep");
        }

        return (*ps->p == '[') ? vmx_json_array(ps, depth, key)
                               : vmx_json_object(ps, depth, key);

    case 't':
        return vmx_json_literal(ps, key, "true", 4, VMX_JSON_TRUE);

    case 'f':
        return vmx_json_literal(ps, key, "false", 5, VMX_JSON_FALSE);

    case 'n':
        return vmx_json_literal(ps, key, "null", 4, VMX_JSON_NULL);

    default:
        if (*ps->p == '-' || vmx_json_is_digit(*ps->p)) {
            return vmx_json_number(ps, key);
        }

        return vmx_json_fail(ps, ps->p, "expected a value");
    }
}


vmx_json_t *
vmx_json_parse(const char *text, size_t len, vmx_json_alloc_pt alloc,
    void *alloc_ctx, unsigned max_depth, vmx_json_error_t *err)
{
    vmx_json_parser_t   ps;
    vmx_json_t         *root;

    ps.start = (const unsigned char *) (text ? text : "");
    ps.end = ps.start + len;
    ps.p = vmx_json_skip_ws(ps.start, ps.end);
    ps.alloc = alloc;
    ps.alloc_ctx = alloc_ctx;
    ps.budget = (len < (SIZE_MAX - VMX_JSON_TREE_MIN) / VMX_JSON_TREE_FACTOR)
                ? len * VMX_JSON_TREE_FACTOR + VMX_JSON_TREE_MIN : SIZE_MAX;
    ps.max_depth = max_depth ? max_depth : VMX_JSON_DEFAULT_DEPTH;
    ps.too_dense = 0;
    ps.err_pos = NULL;
    ps.err_msg = NULL;

    root = vmx_json_value(&ps, 1, NULL);

    if (root) {
        ps.p = vmx_json_skip_ws(ps.p, ps.end);

        if (ps.p != ps.end) {
            root = vmx_json_fail(&ps, ps.p, "unexpected data after the value");
        }
    }

    if (root == NULL && err) {
        err->offset = (size_t) (ps.err_pos - ps.start);
        err->message = ps.err_msg;
        err->too_dense = ps.too_dense;
    }

    return root;
}


vmx_json_t *
vmx_json_getn(const vmx_json_t *obj, const char *name, size_t name_len)
{
    vmx_json_t  *m;

    if (obj == NULL || obj->type != VMX_JSON_OBJECT) {
        return NULL;
    }

    for (m = obj->child; m; m = m->next) {
        if (m->key_len == name_len && memcmp(m->key, name, name_len) == 0) {
            return m;
        }
    }

    return NULL;
}


vmx_json_t *
vmx_json_get(const vmx_json_t *obj, const char *name)
{
    return vmx_json_getn(obj, name, strlen(name));
}


const char *
vmx_json_get_str(const vmx_json_t *obj, const char *name, size_t *len)
{
    vmx_json_t  *m = vmx_json_get(obj, name);

    if (m == NULL || m->type != VMX_JSON_STRING) {
        return NULL;
    }

    if (len) {
        *len = m->str_len;
    }

    return m->str;
}


vmx_json_t *
vmx_json_at(const vmx_json_t *arr, size_t i)
{
    vmx_json_t  *e;

    if (arr == NULL || arr->type != VMX_JSON_ARRAY || i >= arr->count) {
        return NULL;
    }

    for (e = arr->child; i; i--) {
        e = e->next;
    }

    return e;
}


/* the letter of a two-byte escape of c, or 0 when c needs "\u00XX" */
static char
vmx_json_short_escape(unsigned c)
{
    switch (c) {
    case '"':  return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default:   return 0;
    }
}


size_t
vmx_json_escape(char *dst, const char *src, size_t len)
{
    static const char     hex[] = "0123456789abcdef";
    const unsigned char  *p = (const unsigned char *) src, *end = p + len, *q;
    size_t                n = 0;
    char                  e;

    for ( ;; ) {
        q = vmx_json_skip_plain(p, end, 0);

        if (dst) {
            memcpy(dst + n, p, (size_t) (q - p));
        }

        n += (size_t) (q - p);

        if (q == end) {
            return n;
        }

        e = vmx_json_short_escape(*q);

        if (dst && e) {
            dst[n] = '\\';
            dst[n + 1] = e;

        } else if (dst) {
            memcpy(dst + n, "\\u00", 4);
            dst[n + 4] = hex[*q >> 4];
            dst[n + 5] = hex[*q & 0xf];
        }

        n += e ? 2 : 6;
        p = q + 1;
    }
}


/*
 * Duplicate keys.  The walk keeps, on the C stack, one frame per container
 * it went into: the path is only built once a duplicate is found.
 */

#define VMX_JSON_SCAN_MAX  16   /* up to this, pairs cost less than a sort */


typedef struct vmx_json_frame_s  vmx_json_frame_t;

struct vmx_json_frame_s {
    const vmx_json_frame_t  *up;
    const vmx_json_t        *node;    /* a member (its key) or an element */
    size_t                   index;   /* the element's, in its array */
};


typedef struct {
    vmx_json_alloc_pt        alloc;
    void                    *alloc_ctx;
    const vmx_json_t       **sorted;  /* scratch, reused by every object */
    size_t                   nsorted;
    vmx_json_duplicate_t    *dup;
} vmx_json_dup_walk_t;


static int
vmx_json_same_key(const vmx_json_t *a, const vmx_json_t *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}


/* by key, then by place in the text (a parsed tree's raw spans are ordered) */

static int
vmx_json_member_cmp(const vmx_json_t *a, const vmx_json_t *b)
{
    int  c;

    if (a->key_len != b->key_len) {
        return a->key_len < b->key_len ? -1 : 1;
    }

    c = memcmp(a->key, b->key, a->key_len);

    if (c != 0) {
        return c;
    }

    return (a->raw > b->raw) - (a->raw < b->raw);
}


static void
vmx_json_sift(const vmx_json_t **v, size_t i, size_t n)
{
    size_t             c;
    const vmx_json_t  *t;

    for ( ;; ) {
        c = 2 * i + 1;

        if (c >= n) {
            return;
        }

        if (c + 1 < n && vmx_json_member_cmp(v[c], v[c + 1]) < 0) {
            c++;
        }

        if (vmx_json_member_cmp(v[i], v[c]) >= 0) {
            return;
        }

        t = v[i];
        v[i] = v[c];
        v[c] = t;
        i = c;
    }
}


/*
 * The first member of obj, in text order, whose key an earlier member has;
 * NULL when none.  Heap sort: in place, no recursion, O(k log k) worst case.
 */

static int
vmx_json_first_duplicate(vmx_json_dup_walk_t *w, const vmx_json_t *obj,
    const vmx_json_t **first)
{
    size_t              i, n;
    const vmx_json_t   *m, *e, **v;

    *first = NULL;
    n = obj->count;

    if (n < 2) {
        return 0;
    }

    if (n <= VMX_JSON_SCAN_MAX) {
        for (m = obj->child->next; m; m = m->next) {
            for (e = obj->child; e != m; e = e->next) {
                if (vmx_json_same_key(e, m)) {
                    *first = m;
                    return 0;
                }
            }
        }

        return 0;
    }

    if (n > w->nsorted) {
        i = (n > 2 * w->nsorted) ? n : 2 * w->nsorted;

        w->sorted = w->alloc(w->alloc_ctx, i * sizeof(vmx_json_t *));
        if (w->sorted == NULL) {
            w->nsorted = 0;
            return -1;
        }

        w->nsorted = i;
    }

    v = w->sorted;

    for (i = 0, m = obj->child; m; m = m->next) {
        v[i++] = m;
    }

    for (i = n / 2; i-- > 0; /* void */) {
        vmx_json_sift(v, i, n);
    }

    for (i = n - 1; i > 0; i--) {
        m = v[0];
        v[0] = v[i];
        v[i] = m;
        vmx_json_sift(v, 0, i);
    }

    /* every later occurrence of a key follows its first: the earliest wins */
    for (i = 1; i < n; i++) {
        if (vmx_json_same_key(v[i - 1], v[i])
            && (*first == NULL || v[i]->raw < (*first)->raw))
        {
            *first = v[i];
        }
    }

    return 0;
}


static int
vmx_json_is_identifier(const char *key, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || (key[0] >= '0' && key[0] <= '9')) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = key[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '$'))
        {
            return 0;
        }
    }

    return 1;
}


static size_t
vmx_json_decimal_len(size_t v)
{
    size_t  n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }

    return n;
}


/* the length of a frame's step in the path: .key, ["key"] or [index] */

static size_t
vmx_json_step_len(const vmx_json_frame_t *f)
{
    const vmx_json_t  *n = f->node;

    if (n->key == NULL) {
        return 2 + vmx_json_decimal_len(f->index);
    }

    if (vmx_json_is_identifier(n->key, n->key_len)) {
        return (f->up ? 1 : 0) + n->key_len;
    }

    return 4 + vmx_json_escape(NULL, n->key, n->key_len);
}


/* writes a frame's step ending at end, returns where it starts */

static char *
vmx_json_step(char *end, const vmx_json_frame_t *f)
{
    char              *p;
    size_t             v;
    const vmx_json_t  *n = f->node;

    p = end - vmx_json_step_len(f);

    if (n->key == NULL) {
        end--;
        *end = ']';

        for (v = f->index; ; v /= 10) {
            *--end = (char) ('0' + v % 10);

            if (v < 10) {
                break;
            }
        }

        *--end = '[';

    } else if (vmx_json_is_identifier(n->key, n->key_len)) {
        if (f->up) {
            *p = '.';
        }

        memcpy(end - n->key_len, n->key, n->key_len);

    } else {
        memcpy(p, "[\"", 2);
        vmx_json_escape(p + 2, n->key, n->key_len);
        memcpy(end - 2, "\"]", 2);
    }

    return p;
}


static int
vmx_json_dup_found(vmx_json_dup_walk_t *w, const vmx_json_frame_t *top)
{
    char                    *p;
    size_t                   len;
    const vmx_json_frame_t  *f;

    for (len = 0, f = top; f; f = f->up) {
        len += vmx_json_step_len(f);
    }

    p = w->alloc(w->alloc_ctx, len + 1);
    if (p == NULL) {
        return -1;
    }

    w->dup->member = top->node;
    w->dup->path = p;
    w->dup->path_len = len;

    p += len;
    *p = '\0';

    for (f = top; f; f = f->up) {
        p = vmx_json_step(p, f);
    }

    return 1;
}


static int
vmx_json_dup_walk(vmx_json_dup_walk_t *w, const vmx_json_t *node,
    const vmx_json_frame_t *up)
{
    int                rc;
    const vmx_json_t  *first, *e;
    vmx_json_frame_t   f;

    first = NULL;

    if (node->type == VMX_JSON_OBJECT
        && vmx_json_first_duplicate(w, node, &first) != 0)
    {
        return -1;
    }

    f.up = up;
    f.index = 0;

    /* in text order: a duplicate inside an earlier member comes first */
    for (e = node->child; e; e = e->next, f.index++) {
        f.node = e;

        if (e == first) {
            return vmx_json_dup_found(w, &f);
        }

        if (e->type == VMX_JSON_OBJECT || e->type == VMX_JSON_ARRAY) {
            rc = vmx_json_dup_walk(w, e, &f);
            if (rc != 0) {
                return rc;
            }
        }
    }

    return 0;
}


int
vmx_json_find_duplicate(const vmx_json_t *root, vmx_json_alloc_pt alloc,
    void *alloc_ctx, vmx_json_duplicate_t *dup)
{
    vmx_json_dup_walk_t  w;

    dup->member = NULL;
    dup->path = NULL;
    dup->path_len = 0;

    if (root == NULL
        || (root->type != VMX_JSON_OBJECT && root->type != VMX_JSON_ARRAY))
    {
        return 0;
    }

    w.alloc = alloc;
    w.alloc_ctx = alloc_ctx;
    w.sorted = NULL;
    w.nsorted = 0;
    w.dup = dup;

    return vmx_json_dup_walk(&w, root, NULL);
}
