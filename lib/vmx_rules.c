/*
 * vmx_rules: compiler and evaluator of routing rules; see vmx_rules.h for
 * the language and its semantics.
 *
 * A group compiles to one predicate tree: UI conditions and ADVANCED
 * expressions share the node types, so both evaluate the same way.  A test
 * node (comparison, containment, regex, membership) has a left operand and
 * a right one that is an expression, a literal list (the test holds for any
 * item) or a compiled regex.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem(), also when nginx's build compiles us */
#endif
#define PCRE2_CODE_UNIT_WIDTH  8

#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_rules.h"


#define GROUP_DEPTH_MAX     32      /* nested groups */
#define EXPR_DEPTH_MAX      64      /* parentheses and unary operators */
#define PATH_STEPS_MAX      32
#define CALL_ARGS_MAX       4
#define NUMBER_TEXT_MAX     64
#define REGEX_LENGTH_MAX    32768
#define REGEX_MATCH_LIMIT   1000000 /* bounds backtracking per match */
#define REGEX_DEPTH_LIMIT   10000
#define SHARE_ALL           ((uint64_t) 1 << 32)


/* runtime values */

typedef enum {
    RV_MISSING = 0,     /* kinds are ordered: rv_equal() relies on it */
    RV_NULL,            /* the literal null only: JSON null is missing */
    RV_BOOL,
    RV_NUM,
    RV_STR,
    RV_JSON             /* an array or an object */
} rv_kind_e;

typedef struct {
    rv_kind_e           kind;
    int                 b;
    double              num;
    const char         *s;      /* RV_STR; RV_NUM: its JSON text, or NULL */
    size_t              len;
    const vmx_json_t   *json;
} rv_t;


/* the program */

typedef enum {
    N_LIT, N_LIST, N_REGEX, N_VAR, N_NOT, N_NEG, N_AND, N_OR, N_TEST,
    N_LEN, N_LOWER, N_UPPER, N_ERROR_RATE
} node_kind_e;

typedef enum {
    T_EQ, T_LT, T_LE, T_GT, T_GE, T_CONTAINS, T_STARTS, T_ENDS, T_MATCH,
    T_EXISTS
} test_e;

typedef enum {
    V_REQUEST, V_FIRST_MESSAGE, V_LAST_MESSAGE, V_MESSAGES_COUNT,
    V_TOOLS_COUNT, V_FIRST_CONTENT, V_LAST_CONTENT, V_ALL_CONTENT,
    V_TOKENS_INPUT, V_API_KEY_ID, V_API_KEY_LABELS, V_SOURCE_IP
} var_e;

typedef struct {
    const char         *name;   /* NULL for an index */
    size_t              len;
    long                index;
} step_t;

typedef struct rx_s  rx_t;

struct rx_s {
    pcre2_code         *code;
    rx_t               *next;
};

/* what a trace shows of a condition (vmx_rules_trace_cond_t) */
typedef struct {
    vmx_rules_str_t     path;
    vmx_rules_str_t     text;
    long                position;
    unsigned            is_group;
} tag_t;

typedef struct node_s  node_t;

struct node_s {
    node_kind_e         kind;
    const tag_t        *tag;        /* a traced condition; NULL: none */
    unsigned            op;         /* test_e of N_TEST, var_e of N_VAR */
    unsigned            negate;     /* N_TEST: false on missing, else not */
    size_t              n;          /* kids, items or steps */
    union {
        rv_t            lit;
        rv_t           *items;
        rx_t           *rx;
        step_t         *steps;
        node_t        **kids;
        unsigned        rate[2];    /* minutes, status */
    } u;
};

typedef struct {
    vmx_rules_str_t      id;
    vmx_rules_str_t      description;
    const node_t        *when;
    vmx_rules_action_e   action;
    vmx_rules_target_t  *then;
    uint64_t             share;     /* traffic as a threshold over 2^32 */
    double               traffic;   /* as given, for traces */
    unsigned             enabled;
} group_t;

typedef struct {
    vmx_json_alloc_pt    alloc;
    void                *ctx;
} mem_t;

struct vmx_rules_s {
    unsigned               enabled;
    size_t                 ngroups;
    group_t               *groups;
    rx_t                  *regexes;
    pcre2_match_context   *match_ctx;
    mem_t                  mem;
};


/* ---------------------------------------------------------------------- */
/* compile context and errors                                             */

typedef struct {
    vmx_rules_t             *rules;
    vmx_rules_error_t       *err;
    size_t                   path_len;
    unsigned                 tag_tests;     /* in an ADVANCED expression */
    pcre2_general_context   *pcre_gctx;
    pcre2_compile_context   *pcre_cctx;
} cc_t;


/* characters (code points) in the first off bytes of s */
static long
char_offset(const char *s, size_t off)
{
    long  n = 0;

    for (size_t i = 0; i < off; i++) {
        n += ((unsigned char) s[i] & 0xC0) != 0x80;
    }
    return n;
}


static void
cc_fail(cc_t *cc, const char *member, long position, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
cc_fail(cc_t *cc, const char *member, long position, const char *fmt, ...)
{
    vmx_rules_error_t  *err = cc->err;
    va_list             ap;

    if (member != NULL) {
        snprintf(err->path + cc->path_len, sizeof(err->path) - cc->path_len,
                 "%s%s", cc->path_len ? "." : "", member);
    }
    err->position = position;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}


/* appends "[i]" or ".name" to the path; returns the length to restore */
static size_t
path_push(cc_t *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t
path_push(cc_t *cc, const char *fmt, ...)
{
    size_t   old = cc->path_len;
    char    *path = cc->err->path;
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(path + old, VMX_RULES_PATH_MAX - old, fmt, ap);
    va_end(ap);
    cc->path_len = n < 0 ? old
                   : old + (size_t) n >= VMX_RULES_PATH_MAX ? VMX_RULES_PATH_MAX - 1
                   : old + (size_t) n;
    return old;
}


static void
path_pop(cc_t *cc, size_t old)
{
    cc->path_len = old;
    cc->err->path[old] = '\0';
}


static void *
cc_alloc(cc_t *cc, size_t size)
{
    mem_t  *mem = &cc->rules->mem;
    void   *p = mem->alloc(mem->ctx, size ? size : 1);

    if (p == NULL) {
        cc_fail(cc, NULL, -1, "out of memory");
    }
    return p;
}


static int
cc_strdup(cc_t *cc, const char *s, size_t len, vmx_rules_str_t *out)
{
    char  *p = cc_alloc(cc, len + 1);

    if (p == NULL) {
        return -1;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    out->data = p;
    out->len = len;
    return 0;
}


static node_t *
node_new(cc_t *cc, node_kind_e kind, size_t nkids)
{
    node_t  *n = cc_alloc(cc, sizeof(node_t));

    if (n == NULL) {
        return NULL;
    }
    memset(n, 0, sizeof(node_t));
    n->kind = kind;
    n->n = nkids;
    if (nkids > 0) {
        n->u.kids = cc_alloc(cc, nkids * sizeof(node_t *));
        if (n->u.kids == NULL) {
            return NULL;
        }
        memset(n->u.kids, 0, nkids * sizeof(node_t *));
    }
    return n;
}


static node_t *
node_test(cc_t *cc, test_e op, unsigned negate, node_t *left, node_t *right)
{
    node_t  *n = node_new(cc, N_TEST, 2);

    if (n == NULL) {
        return NULL;
    }
    n->op = op;
    n->negate = negate;
    n->u.kids[0] = left;
    n->u.kids[1] = right;
    return n;
}


/*
 * Tags n for traces at the current path (and member, when given), with
 * text len bytes of text, at position (characters) or -1.  A node keeps
 * its first tag: an ADVANCED group whose whole expression is one
 * comparison shows as that comparison.
 */
static int
node_tag(cc_t *cc, node_t *n, const char *member, const char *text, size_t len,
    long position, unsigned is_group)
{
    tag_t  *tag;
    char    path[VMX_RULES_PATH_MAX];
    int     plen;

    if (n->tag != NULL) {
        return 0;
    }
    plen = snprintf(path, sizeof(path), "%s%s%s", cc->err->path,
                    member && cc->path_len ? "." : "", member ? member : "");
    if ((tag = cc_alloc(cc, sizeof(tag_t))) == NULL
        || cc_strdup(cc, path, plen < 0 ? 0 : (size_t) plen >= sizeof(path)
                                      ? sizeof(path) - 1 : (size_t) plen, &tag->path) != 0
        || cc_strdup(cc, text, len, &tag->text) != 0)
    {
        return -1;
    }
    tag->position = position;
    tag->is_group = is_group;
    n->tag = tag;
    return 0;
}


/* ---------------------------------------------------------------------- */
/* values: constructors, numbers, text                                    */

static rv_t
rv_missing(void)
{
    rv_t  v;

    memset(&v, 0, sizeof(v));
    return v;
}


static rv_t
rv_bool(int b)
{
    rv_t  v = rv_missing();

    v.kind = RV_BOOL;
    v.b = b != 0;
    return v;
}


static rv_t
rv_num(double d)
{
    rv_t  v = rv_missing();

    v.kind = RV_NUM;
    v.num = d;
    return v;
}


static rv_t
rv_str(const char *s, size_t len)
{
    rv_t  v = rv_missing();

    v.kind = RV_STR;
    v.s = s != NULL ? s : "";
    v.len = len;
    return v;
}


static rv_t
rv_from_json(const vmx_json_t *j)
{
    rv_t  v = rv_missing();

    if (j == NULL) {
        return v;
    }
    switch (j->type) {
    case VMX_JSON_NULL:
        return v;
    case VMX_JSON_FALSE:
    case VMX_JSON_TRUE:
        return rv_bool(j->type == VMX_JSON_TRUE);
    case VMX_JSON_NUMBER:
        v = rv_num(j->num);
        v.s = j->raw;
        v.len = j->raw_len;
        return v;
    case VMX_JSON_STRING:
        return rv_str(j->str, j->str_len);
    default:
        v.kind = RV_JSON;
        v.json = j;
        return v;
    }
}


/*
 * A number in text: optional sign, digits, optional fraction and exponent,
 * surrounding ASCII white space allowed; no hex, inf or nan.
 */
static int
parse_number(const char *s, size_t len, double *out)
{
    char    buf[NUMBER_TEXT_MAX];
    size_t  b = 0, e = len, i, digits = 0;

    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r')) {
        b++;
    }
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n'
                     || s[e - 1] == '\r'))
    {
        e--;
    }
    if (e - b == 0 || e - b >= sizeof(buf)) {
        return 0;
    }
    i = b + (s[b] == '-' || s[b] == '+');
    for (; i < e && s[i] >= '0' && s[i] <= '9'; i++) {
        digits++;
    }
    if (i < e && s[i] == '.') {
        for (i++; i < e && s[i] >= '0' && s[i] <= '9'; i++) {
            digits++;
        }
    }
    if (digits == 0) {
        return 0;
    }
    if (i < e && (s[i] == 'e' || s[i] == 'E')) {
        i += 1 + (i + 1 < e && (s[i + 1] == '-' || s[i + 1] == '+'));
        if (i >= e || s[i] < '0' || s[i] > '9') {
            return 0;
        }
        while (i < e && s[i] >= '0' && s[i] <= '9') {
            i++;
        }
    }
    if (i != e) {
        return 0;
    }
    memcpy(buf, s + b, e - b);
    buf[e - b] = '\0';
    *out = strtod(buf, NULL);
    return isfinite(*out);
}


static int
rv_number(const rv_t *v, double *out)
{
    if (v->kind == RV_NUM) {
        *out = v->num;
        return 1;
    }
    return v->kind == RV_STR && parse_number(v->s, v->len, out);
}


/* the text of a scalar: strings as they are, numbers and booleans as JSON */
static int
rv_text(const rv_t *v, char buf[32], const char **s, size_t *len)
{
    switch (v->kind) {
    case RV_STR:
        *s = v->s;
        *len = v->len;
        return 1;
    case RV_BOOL:
        *s = v->b ? "true" : "false";
        *len = v->b ? 4 : 5;
        return 1;
    case RV_NUM:
        if (v->s != NULL) {
            *s = v->s;
            *len = v->len;
            return 1;
        }
        /* the shortest of %.15g and %.17g that reads back the same */
        *len = (size_t) snprintf(buf, 32, "%.15g", v->num);
        if (strtod(buf, NULL) != v->num) {
            *len = (size_t) snprintf(buf, 32, "%.17g", v->num);
        }
        *s = buf;
        return 1;
    default:
        return 0;
    }
}


static size_t
utf8_chars(const char *s, size_t len)
{
    return (size_t) char_offset(s, len);
}


/* ---------------------------------------------------------------------- */
/* regexes                                                                */

static void *
pcre_alloc(PCRE2_SIZE size, void *data)
{
    mem_t  *mem = data;

    return mem->alloc(mem->ctx, size);
}


/* the caller's allocator frees everything at once */
static void
pcre_free(void *p, void *data)
{
}


static int
cc_pcre_init(cc_t *cc)
{
    vmx_rules_t  *rules = cc->rules;

    cc->pcre_gctx = pcre2_general_context_create(pcre_alloc, pcre_free, &rules->mem);
    cc->pcre_cctx = cc->pcre_gctx ? pcre2_compile_context_create(cc->pcre_gctx) : NULL;
    rules->match_ctx = cc->pcre_gctx ? pcre2_match_context_create(cc->pcre_gctx) : NULL;
    if (rules->match_ctx == NULL || cc->pcre_cctx == NULL) {
        cc_fail(cc, NULL, -1, "out of memory");
        return -1;
    }
    pcre2_set_max_pattern_length(cc->pcre_cctx, REGEX_LENGTH_MAX);
    pcre2_set_match_limit(rules->match_ctx, REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(rules->match_ctx, REGEX_DEPTH_LIMIT);
    return 0;
}


/*
 * Compiles a pattern (UTF-8, invalid UTF-8 in subjects never matches) with
 * JIT when the platform has it.  src is the string the pattern was taken
 * from, at byte offset base, for the error position.
 */
static node_t *
regex_node(cc_t *cc, const char *member, const char *src, size_t base,
    const char *pattern, size_t len, uint32_t flags)
{
    uint32_t     options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF
                           | PCRE2_NEVER_BACKSLASH_C | flags;
    PCRE2_UCHAR  message[160];
    PCRE2_SIZE   offset;
    int          code;
    node_t      *n;
    rx_t        *rx;

    n = node_new(cc, N_REGEX, 0);
    rx = n ? cc_alloc(cc, sizeof(rx_t)) : NULL;
    if (rx == NULL) {
        return NULL;
    }
    rx->code = pcre2_compile((PCRE2_SPTR) pattern, len, options, &code, &offset,
                             cc->pcre_cctx);
    if (rx->code == NULL && code == PCRE2_ERROR_HEAP_FAILED) {
        cc_fail(cc, NULL, -1, "out of memory");
        return NULL;
    }
    if (rx->code == NULL) {
        pcre2_get_error_message(code, message, sizeof(message));
        if (offset > len) {
            offset = len;
        }
        cc_fail(cc, member, char_offset(src, base) + char_offset(pattern, offset),
                "invalid regex: %s", (char *) message);
        return NULL;
    }
    /* without JIT (an unsupported platform) the interpreter runs it */
    (void) pcre2_jit_compile(rx->code, PCRE2_JIT_COMPLETE);
    rx->next = cc->rules->regexes;
    cc->rules->regexes = rx;
    n->u.rx = rx;
    return n;
}


/* ---------------------------------------------------------------------- */
/* expression parser                                                      */

typedef enum {
    TK_EOF, TK_NUM, TK_STR, TK_NAME, TK_REGEX, TK_LPAREN, TK_RPAREN,
    TK_LBRACKET, TK_RBRACKET, TK_COMMA, TK_DOT, TK_NOT, TK_MINUS, TK_AND,
    TK_OR, TK_EQ, TK_NE, TK_LT, TK_LE, TK_GT, TK_GE
} tk_e;

typedef struct {
    cc_t         *cc;
    const char   *member;       /* the string's member, for error paths */
    const char   *src;
    size_t        end;          /* of the parsed part: a wrapper stripped */
    size_t        pos;          /* next byte to read */
    tk_e          tk;
    size_t        tk_start;
    size_t        tk_end;
    size_t        prev_end;     /* of the token before: ends a span */
    unsigned      depth;
} px_t;

typedef struct link_s  link_t;

struct link_s {
    node_t       *node;
    link_t       *next;
};


static void
px_fail(px_t *px, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
px_fail(px_t *px, size_t at, const char *fmt, ...)
{
    char     message[200];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    cc_fail(px->cc, px->member, char_offset(px->src, at), "%s", message);
}


static int
is_name_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}


static int
is_name_char(int c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}


static int
tk_is(const px_t *px, const char *word)
{
    size_t  n = strlen(word);

    return px->tk == TK_NAME && px->tk_end - px->tk_start == n
           && memcmp(px->src + px->tk_start, word, n) == 0;
}


/* a quoted string, escapes skipped; decoded by px_string() */
static int
lex_string(px_t *px)
{
    char    quote = px->src[px->pos];
    size_t  i = px->pos + 1;

    while (i < px->end && px->src[i] != quote) {
        i += px->src[i] == '\\' ? 2 : 1;
    }
    if (i >= px->end) {
        px_fail(px, px->pos, "unterminated string");
        return -1;
    }
    px->tk = TK_STR;
    px->tk_end = i + 1;
    return 0;
}


/* /pattern/flags: a "/" inside [...] does not end the pattern */
static int
lex_regex(px_t *px)
{
    size_t  i = px->pos + 1;
    int     in_class = 0;

    while (i < px->end && (px->src[i] != '/' || in_class)) {
        if (px->src[i] == '\\') {
            i++;
        } else if (px->src[i] == '[') {
            in_class = 1;
        } else if (px->src[i] == ']') {
            in_class = 0;
        }
        i++;
    }
    if (i >= px->end) {
        px_fail(px, px->pos, "unterminated regex");
        return -1;
    }
    for (i++; i < px->end && is_name_char((unsigned char) px->src[i]); i++) {
        /* flags, checked when compiled */
    }
    px->tk = TK_REGEX;
    px->tk_end = i;
    return 0;
}


static int
lex_number(px_t *px)
{
    const char  *s = px->src;
    size_t       i = px->pos;

    while (i < px->end && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (i + 1 < px->end && s[i] == '.' && s[i + 1] >= '0' && s[i + 1] <= '9') {
        for (i++; i < px->end && s[i] >= '0' && s[i] <= '9'; i++) { }
    }
    if (i < px->end && (s[i] == 'e' || s[i] == 'E')) {
        size_t  d = i + 1 + (i + 1 < px->end && (s[i + 1] == '+' || s[i + 1] == '-'));

        if (d < px->end && s[d] >= '0' && s[d] <= '9') {
            for (i = d; i < px->end && s[i] >= '0' && s[i] <= '9'; i++) { }
        }
    }
    if (i < px->end && (is_name_char((unsigned char) s[i]) || s[i] == '.')) {
        px_fail(px, px->pos, "invalid number");
        return -1;
    }
    px->tk = TK_NUM;
    px->tk_end = i;
    return 0;
}


/* one or two character operators; "===" and "!==" read as "==", "!=" */
static int
lex_operator(px_t *px)
{
    static const struct { const char *text; tk_e tk; } ops[] = {
        { "===", TK_EQ }, { "!==", TK_NE }, { "==", TK_EQ }, { "!=", TK_NE },
        { "<=", TK_LE }, { ">=", TK_GE }, { "&&", TK_AND }, { "||", TK_OR },
        { "<", TK_LT }, { ">", TK_GT }, { "!", TK_NOT }, { "-", TK_MINUS },
        { "(", TK_LPAREN }, { ")", TK_RPAREN }, { "[", TK_LBRACKET },
        { "]", TK_RBRACKET }, { ",", TK_COMMA }, { ".", TK_DOT }
    };
    const char  *s = px->src + px->pos;
    size_t       left = px->end - px->pos;

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t  n = strlen(ops[i].text);

        if (n <= left && memcmp(s, ops[i].text, n) == 0) {
            px->tk = ops[i].tk;
            px->tk_end = px->pos + n;
            return 0;
        }
    }
    if (s[0] == '=') {
        px_fail(px, px->pos, "'=' is no operator; compare with '=='");
    } else if (s[0] == '&' || s[0] == '|') {
        px_fail(px, px->pos, "'%c' is no operator; use '%c%c'", s[0], s[0], s[0]);
    } else if ((unsigned char) s[0] < 0x20 || (unsigned char) s[0] >= 0x7F) {
        px_fail(px, px->pos, "unexpected character (byte 0x%02X)", (unsigned char) s[0]);
    } else {
        px_fail(px, px->pos, "unexpected character '%c'", s[0]);
    }
    return -1;
}


static int
px_next(px_t *px)
{
    const char  *s = px->src;
    int          c;

    px->prev_end = px->tk_end;
    while (px->pos < px->end && (s[px->pos] == ' ' || s[px->pos] == '\t'
                                 || s[px->pos] == '\n' || s[px->pos] == '\r'))
    {
        px->pos++;
    }
    px->tk_start = px->pos;
    if (px->pos >= px->end) {
        px->tk = TK_EOF;
        px->tk_end = px->end;
        return 0;
    }
    c = (unsigned char) s[px->pos];
    if (c == '"' || c == '\'') {
        if (lex_string(px) != 0) {
            return -1;
        }
    } else if (c == '/') {
        if (lex_regex(px) != 0) {
            return -1;
        }
    } else if (c >= '0' && c <= '9') {
        if (lex_number(px) != 0) {
            return -1;
        }
    } else if (is_name_start(c)) {
        px->tk = TK_NAME;
        for (px->tk_end = px->pos + 1;
             px->tk_end < px->end && is_name_char((unsigned char) s[px->tk_end]);
             px->tk_end++)
        { }
    } else if (lex_operator(px) != 0) {
        return -1;
    }
    px->pos = px->tk_end;
    return 0;
}


static int
hex4(const char *s, unsigned *out)
{
    unsigned  v = 0;

    for (int i = 0; i < 4; i++) {
        int  c = (unsigned char) s[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned) (c - '0');
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (unsigned) ((c | 0x20) - 'a' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}


static size_t
utf8_put(char *p, unsigned cp)
{
    if (cp < 0x80) {
        p[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char) (0xC0 | (cp >> 6));
        p[1] = (char) (0x80 | (cp & 0x3F));
        return 2;
    }
    p[0] = (char) (0xE0 | (cp >> 12));
    p[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
    p[2] = (char) (0x80 | (cp & 0x3F));
    return 3;
}


static int
unescape(px_t *px, size_t at, char *p, size_t *used)
{
    const char  *s = px->src + at + 1;
    unsigned     cp;

    switch (*s) {
    case '"': case '\'': case '\\': case '/':
        *p = *s;
        break;
    case 'b': *p = '\b'; break;
    case 'f': *p = '\f'; break;
    case 'n': *p = '\n'; break;
    case 'r': *p = '\r'; break;
    case 't': *p = '\t'; break;
    case 'u':
        if (at + 6 > px->tk_end - 1 || hex4(s + 1, &cp) != 0
            || (cp >= 0xD800 && cp <= 0xDFFF))
        {
            px_fail(px, at, "invalid \\u escape (four hex digits, no surrogates)");
            return -1;
        }
        *used = 6;
        return (int) utf8_put(p, cp);
    default:
        px_fail(px, at, "invalid escape");
        return -1;
    }
    *used = 2;
    return 1;
}


/* the current TK_STR token, decoded into program memory */
static int
px_string(px_t *px, vmx_rules_str_t *out)
{
    size_t  i = px->tk_start + 1, last = px->tk_end - 1, len = 0;
    char   *p = cc_alloc(px->cc, last - i + 1);

    if (p == NULL) {
        return -1;
    }
    while (i < last) {
        if (px->src[i] == '\\') {
            size_t  used;
            int     n = unescape(px, i, p + len, &used);

            if (n < 0) {
                return -1;
            }
            len += (size_t) n;
            i += used;
        } else {
            p[len++] = px->src[i++];
        }
    }
    p[len] = '\0';
    out->data = p;
    out->len = len;
    return 0;
}


static node_t *
lit_node(cc_t *cc, rv_t v)
{
    node_t  *n = node_new(cc, N_LIT, 0);

    if (n != NULL) {
        n->u.lit = v;
    }
    return n;
}


/* a literal: [-] number, string, true, false, null; consumes it */
static int
px_literal(px_t *px, rv_t *out)
{
    size_t           start = px->tk_start;
    int              negative = px->tk == TK_MINUS;
    vmx_rules_str_t  s;
    double           d;

    if (negative && px_next(px) != 0) {
        return -1;
    }
    if (px->tk == TK_NUM) {
        if (!parse_number(px->src + px->tk_start, px->tk_end - px->tk_start, &d)) {
            px_fail(px, px->tk_start, "number out of range");
            return -1;
        }
        *out = rv_num(negative ? -d : d);
    } else if (negative) {
        px_fail(px, start, "'-' needs a number");
        return -1;
    } else if (px->tk == TK_STR) {
        if (px_string(px, &s) != 0) {
            return -1;
        }
        *out = rv_str(s.data, s.len);
    } else if (tk_is(px, "true") || tk_is(px, "false")) {
        *out = rv_bool(tk_is(px, "true"));
    } else if (tk_is(px, "null")) {
        *out = rv_missing();
        out->kind = RV_NULL;
    } else {
        return 1;
    }
    return px_next(px);
}


/* tags a test of an ADVANCED expression with its text, start..prev_end */
static node_t *
px_tag(px_t *px, node_t *n, size_t start)
{
    cc_t  *cc = px->cc;

    if (n == NULL || !cc->tag_tests) {
        return n;
    }
    return node_tag(cc, n, px->member, px->src + start, px->prev_end - start,
                    char_offset(px->src, start), 0) == 0 ? n : NULL;
}


static node_t *parse_or(px_t *px);
static node_t *parse_unary(px_t *px);


/* "[" [ literal { "," literal } ] "]" after "in" */
static node_t *
parse_list(px_t *px)
{
    size_t   open = px->tk_start, n = 0, cap = 8;
    rv_t    *items;
    node_t  *list;

    if (px->tk != TK_LBRACKET) {
        px_fail(px, px->tk_start, "expected a list [...] after 'in'");
        return NULL;
    }
    list = node_new(px->cc, N_LIST, 0);
    items = list ? cc_alloc(px->cc, cap * sizeof(rv_t)) : NULL;
    if (items == NULL || px_next(px) != 0) {
        return NULL;
    }
    while (px->tk != TK_RBRACKET) {
        int  rc;

        if (n == cap) {
            rv_t  *more = cc_alloc(px->cc, 2 * cap * sizeof(rv_t));

            if (more == NULL) {
                return NULL;
            }
            memcpy(more, items, n * sizeof(rv_t));
            items = more;
            cap *= 2;
        }
        rc = px_literal(px, &items[n]);
        if (rc != 0) {
            if (rc > 0) {
                px_fail(px, px->tk_start, px->tk == TK_EOF
                        ? "unterminated list: '[' at %ld has no ']'"
                        : "expected a literal in the list opened at %ld",
                        char_offset(px->src, open));
            }
            return NULL;
        }
        n++;
        if (px->tk == TK_COMMA) {
            if (px_next(px) != 0) {
                return NULL;
            }
        } else if (px->tk != TK_RBRACKET) {
            px_fail(px, px->tk_start, px->tk == TK_EOF
                    ? "unterminated list: '[' at %ld has no ']'"
                    : "expected ',' or ']' in the list opened at %ld",
                    char_offset(px->src, open));
            return NULL;
        }
    }
    list->u.items = items;
    list->n = n;
    return px_next(px) == 0 ? list : NULL;
}


/* the current TK_REGEX or TK_STR token after "matches" */
static node_t *
parse_regex(px_t *px)
{
    const char       *s = px->src;
    size_t            body, close;
    uint32_t          flags = 0;
    vmx_rules_str_t   str;

    if (px->tk == TK_STR) {
        if (px_string(px, &str) != 0) {
            return NULL;
        }
        return regex_node(px->cc, px->member, s, px->tk_start + 1, str.data, str.len, 0);
    }
    if (px->tk != TK_REGEX) {
        px_fail(px, px->tk_start, "expected a regex (/.../ or a string) after 'matches'");
        return NULL;
    }
    body = px->tk_start + 1;
    for (close = px->tk_end; s[close - 1] != '/'; close--) { }
    for (size_t i = close; i < px->tk_end; i++) {
        switch (s[i]) {
        case 'i': flags |= PCRE2_CASELESS; break;
        case 'm': flags |= PCRE2_MULTILINE; break;
        case 's': flags |= PCRE2_DOTALL; break;
        case 'x': flags |= PCRE2_EXTENDED; break;
        case 'u': case 'g': break;      /* JavaScript's: always UTF; one test */
        default:
            px_fail(px, i, "unknown regex flag '%c' (i, m, s, x)", s[i]);
            return NULL;
        }
    }
    return regex_node(px->cc, px->member, s, body, s + body, close - 1 - body, flags);
}


static int
is_compare(tk_e tk)
{
    return tk >= TK_EQ && tk <= TK_GE;
}


static node_t *
parse_compare(px_t *px)
{
    static const test_e  ops[] = { T_EQ, T_EQ, T_LT, T_LE, T_GT, T_GE };
    size_t               start = px->tk_start;
    node_t              *left = parse_unary(px), *right;
    tk_e                 tk = px->tk;
    size_t               at = px->tk_start;

    if (left == NULL) {
        return NULL;
    }
    if (is_compare(tk)) {
        if (px_next(px) != 0 || (right = parse_unary(px)) == NULL) {
            return NULL;
        }
        left = node_test(px->cc, ops[tk - TK_EQ], tk == TK_NE, left, right);
    } else if (tk_is(px, "matches")) {
        if (px_next(px) != 0 || (right = parse_regex(px)) == NULL || px_next(px) != 0) {
            return NULL;
        }
        left = node_test(px->cc, T_MATCH, 0, left, right);
    } else if (tk_is(px, "in")) {
        if (px_next(px) != 0 || (right = parse_list(px)) == NULL) {
            return NULL;
        }
        left = node_test(px->cc, T_EQ, 0, left, right);
    } else {
        return left;
    }
    left = px_tag(px, left, start);
    if (left != NULL && (is_compare(px->tk) || tk_is(px, "matches") || tk_is(px, "in"))) {
        px_fail(px, px->tk_start, "comparisons do not chain (the first is at %ld); "
                "join them with && or ||", char_offset(px->src, at));
        return NULL;
    }
    return left;
}


/* operand { op operand }, as one n-ary node */
static node_t *
parse_chain(px_t *px, tk_e op, node_kind_e kind, node_t *(*operand)(px_t *))
{
    link_t   head, *tail = &head;
    node_t  *first = operand(px), *n;
    size_t   count = 1;

    if (first == NULL || px->tk != op) {
        return first;
    }
    head.node = first;
    while (px->tk == op) {
        link_t  *l = cc_alloc(px->cc, sizeof(link_t));

        if (l == NULL || px_next(px) != 0 || (l->node = operand(px)) == NULL) {
            return NULL;
        }
        tail->next = l;
        tail = l;
        count++;
    }
    tail->next = NULL;
    if ((n = node_new(px->cc, kind, count)) == NULL) {
        return NULL;
    }
    count = 0;
    for (link_t *l = &head; l != NULL; l = l->next) {
        n->u.kids[count++] = l->node;
    }
    return n;
}


static node_t *
parse_and(px_t *px)
{
    return parse_chain(px, TK_AND, N_AND, parse_compare);
}


static node_t *
parse_or(px_t *px)
{
    return parse_chain(px, TK_OR, N_OR, parse_and);
}


static int
step_is(const step_t *s, const char *name)
{
    return s->name != NULL && s->len == strlen(name) && memcmp(s->name, name, s->len) == 0;
}


/*
 * Maps a path to its variable: the root, and how many of the steps the
 * root stands for; the rest are looked up in the root's value.
 */
static int
resolve_var(px_t *px, size_t start, const step_t *steps, size_t n, var_e *var,
    size_t *used)
{
    static const struct { const char *name; var_e var; } request[] = {
        { "messagesCount", V_MESSAGES_COUNT }, { "toolsCount", V_TOOLS_COUNT },
        { "allMessagesContent", V_ALL_CONTENT },
        { "firstMessage", V_FIRST_MESSAGE }, { "lastMessage", V_LAST_MESSAGE }
    };

    *used = 1;
    if (step_is(&steps[0], "sourceIp")) {
        *var = V_SOURCE_IP;
        return 0;
    }
    if (step_is(&steps[0], "tokens") && n > 1 && step_is(&steps[1], "input")) {
        *var = V_TOKENS_INPUT;
        *used = 2;
        return 0;
    }
    if (step_is(&steps[0], "apiKey") && n > 1
        && (step_is(&steps[1], "id") || step_is(&steps[1], "labels")))
    {
        *var = step_is(&steps[1], "id") ? V_API_KEY_ID : V_API_KEY_LABELS;
        *used = 2;
        return 0;
    }
    if (!step_is(&steps[0], "request")) {
        px_fail(px, start, "unknown variable '%.*s' (variables: request.*, tokens.input,"
                " apiKey.id, apiKey.labels, sourceIp)", (int) steps[0].len, steps[0].name);
        return -1;
    }
    *var = V_REQUEST;
    for (size_t i = 0; n > 1 && i < sizeof(request) / sizeof(request[0]); i++) {
        if (step_is(&steps[1], request[i].name)) {
            *var = request[i].var;
            *used = 2;
        }
    }
    if ((*var == V_FIRST_MESSAGE || *var == V_LAST_MESSAGE) && n > 2
        && step_is(&steps[2], "content"))
    {
        *var = *var == V_FIRST_MESSAGE ? V_FIRST_CONTENT : V_LAST_CONTENT;
        *used = 3;
    }
    return 0;
}


/* "[" ( integer | string ) "]" of a path, the "[" current */
static int
parse_index(px_t *px, step_t *step)
{
    size_t  open = px->tk_start;
    rv_t    v;
    int     rc;

    if (px_next(px) != 0) {
        return -1;
    }
    rc = px_literal(px, &v);
    if (rc < 0) {
        return -1;
    }
    if (rc == 0 && v.kind == RV_STR) {
        step->name = v.s;
        step->len = v.len;
    } else if (rc == 0 && v.kind == RV_NUM && v.num > -1e9 && v.num < 1e9
               && v.num == (double) (long) v.num)
    {
        step->name = NULL;
        step->index = (long) v.num;
    } else {
        px_fail(px, open + 1, "an index is an integer or a string");
        return -1;
    }
    if (px->tk != TK_RBRACKET) {
        px_fail(px, px->tk_start, "expected ']' to close the '[' at %ld",
                char_offset(px->src, open));
        return -1;
    }
    return px_next(px);
}


/* name { "." name | "[" index "]" }, the first name (start..end) consumed */
static node_t *
parse_path(px_t *px, size_t start, size_t end)
{
    step_t   steps[PATH_STEPS_MAX];
    size_t   n = 1, used;
    var_e    var;
    node_t  *node;

    steps[0].name = px->src + start;
    steps[0].len = end - start;
    while (px->tk == TK_DOT || px->tk == TK_LBRACKET) {
        if (n == PATH_STEPS_MAX) {
            px_fail(px, px->tk_start, "path longer than %d steps", PATH_STEPS_MAX);
            return NULL;
        }
        if (px->tk == TK_LBRACKET) {
            if (parse_index(px, &steps[n++]) != 0) {
                return NULL;
            }
            continue;
        }
        if (px_next(px) != 0) {
            return NULL;
        }
        if (px->tk != TK_NAME) {
            px_fail(px, px->tk_start, "expected a name after '.'");
            return NULL;
        }
        steps[n].name = px->src + px->tk_start;
        steps[n++].len = px->tk_end - px->tk_start;
        if (px_next(px) != 0) {
            return NULL;
        }
    }
    if (resolve_var(px, start, steps, n, &var, &used) != 0
        || (node = node_new(px->cc, N_VAR, 0)) == NULL)
    {
        return NULL;
    }
    node->op = var;
    node->n = n - used;
    node->u.steps = cc_alloc(px->cc, (n - used) * sizeof(step_t));
    if (node->u.steps == NULL) {
        return NULL;
    }
    memcpy(node->u.steps, steps + used, (n - used) * sizeof(step_t));
    return node;
}


typedef struct {
    const char   *name;
    unsigned      min, max;
    node_kind_e   kind;         /* N_TEST for the tests */
    test_e        test;
} function_t;

static const function_t  functions[] = {
    { "errorRate", 1, 2, N_ERROR_RATE, T_EQ },
    { "len", 1, 1, N_LEN, T_EQ },
    { "lower", 1, 1, N_LOWER, T_EQ },
    { "upper", 1, 1, N_UPPER, T_EQ },
    { "contains", 2, 2, N_TEST, T_CONTAINS },
    { "startsWith", 2, 2, N_TEST, T_STARTS },
    { "endsWith", 2, 2, N_TEST, T_ENDS },
    { "exists", 1, 1, N_TEST, T_EXISTS }
};


/* an integer literal argument within lo..hi */
static int
int_arg(const node_t *arg, long lo, long hi, unsigned *out)
{
    /* the range first: a cast of a double out of long's range is undefined */
    if (arg->kind != N_LIT || arg->u.lit.kind != RV_NUM
        || !(arg->u.lit.num >= (double) lo && arg->u.lit.num <= (double) hi)
        || arg->u.lit.num != (double) (long) arg->u.lit.num)
    {
        return -1;
    }
    *out = (unsigned) arg->u.lit.num;
    return 0;
}


/* errorRate's arguments are literals, checked here once */
static int
error_rate_args(px_t *px, node_t *n, node_t **args, const size_t *at, size_t nargs)
{
    if (int_arg(args[0], 1, 60, &n->u.rate[0]) != 0) {
        px_fail(px, at[0], "errorRate minutes must be an integer literal from 1 to 60");
        return -1;
    }
    n->u.rate[1] = 0;
    if (nargs == 2 && int_arg(args[1], 100, 599, &n->u.rate[1]) != 0
        && !(args[1]->kind == N_LIT && args[1]->u.lit.kind == RV_STR
             && strcmp(args[1]->u.lit.s, "any") == 0))
    {
        px_fail(px, at[1], "errorRate status must be an integer literal from 100 to 599"
                " or \"any\"");
        return -1;
    }
    return 0;
}


static const function_t *
find_function(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        if (strlen(functions[i].name) == len && memcmp(functions[i].name, name, len) == 0) {
            return &functions[i];
        }
    }
    return NULL;
}


static int
parse_args(px_t *px, size_t open, node_t **args, size_t *at, size_t *nargs)
{
    *nargs = 0;
    if (px_next(px) != 0) {
        return -1;
    }
    while (px->tk != TK_RPAREN) {
        if (*nargs == CALL_ARGS_MAX) {
            px_fail(px, px->tk_start, "too many arguments");
            return -1;
        }
        at[*nargs] = px->tk_start;
        if ((args[(*nargs)++] = parse_or(px)) == NULL) {
            return -1;
        }
        if (px->tk == TK_COMMA) {
            if (px_next(px) != 0) {
                return -1;
            }
        } else if (px->tk != TK_RPAREN) {
            px_fail(px, px->tk_start, "expected ',' or ')' to close the '(' at %ld",
                    char_offset(px->src, open));
            return -1;
        }
    }
    return px_next(px);
}


/* name "(" args ")", the name (start..end) consumed and "(" current */
static node_t *
parse_call(px_t *px, size_t start, size_t end)
{
    const function_t  *f = find_function(px->src + start, end - start);
    node_t            *args[CALL_ARGS_MAX], *n;
    size_t             at[CALL_ARGS_MAX], nargs, len = end - start;

    if (f == NULL) {
        px_fail(px, start, "unknown function '%.*s' (errorRate, len, lower, upper,"
                " contains, startsWith, endsWith, exists)", (int) len, px->src + start);
        return NULL;
    }
    if (parse_args(px, px->tk_start, args, at, &nargs) != 0) {
        return NULL;
    }
    if (nargs < f->min || nargs > f->max) {
        if (f->min == f->max) {
            px_fail(px, start, "%s takes %u argument%s", f->name, f->min,
                    f->min == 1 ? "" : "s");
        } else {
            px_fail(px, start, "%s takes %u or %u arguments", f->name, f->min, f->max);
        }
        return NULL;
    }
    if (f->kind == N_TEST) {
        return px_tag(px, node_test(px->cc, f->test, 0, args[0], nargs > 1 ? args[1] : NULL),
                      start);
    }
    if ((n = node_new(px->cc, f->kind, f->kind == N_ERROR_RATE ? 0 : 1)) == NULL) {
        return NULL;
    }
    if (f->kind == N_ERROR_RATE) {
        return error_rate_args(px, n, args, at, nargs) == 0 ? n : NULL;
    }
    n->u.kids[0] = args[0];
    return n;
}


static node_t *
parse_primary(px_t *px)
{
    size_t   start = px->tk_start;
    size_t   name_end = px->tk_end;
    node_t  *n;
    rv_t     v = rv_missing();
    int      rc;

    if (px->tk == TK_NAME && !tk_is(px, "true") && !tk_is(px, "false")
        && !tk_is(px, "null"))
    {
        if (tk_is(px, "in") || tk_is(px, "matches")) {
            px_fail(px, start, "expected an operand before '%.*s'",
                    (int) (px->tk_end - start), px->src + start);
            return NULL;
        }
        if (px_next(px) != 0) {
            return NULL;
        }
        return px->tk == TK_LPAREN ? parse_call(px, start, name_end)
                                   : parse_path(px, start, name_end);
    }
    if (px->tk == TK_LPAREN) {
        if (px_next(px) != 0 || (n = parse_or(px)) == NULL) {
            return NULL;
        }
        if (px->tk != TK_RPAREN) {
            px_fail(px, px->tk_start, "expected ')' to close the '(' at %ld",
                    char_offset(px->src, start));
            return NULL;
        }
        return px_next(px) == 0 ? n : NULL;
    }
    rc = px_literal(px, &v);
    if (rc == 0) {
        return lit_node(px->cc, v);
    }
    if (rc > 0) {
        px_fail(px, start, px->tk == TK_EOF ? "unexpected end of the expression"
                : px->tk == TK_LBRACKET ? "a list [...] is allowed only after 'in'"
                : px->tk == TK_REGEX ? "a regex is allowed only after 'matches'"
                : "expected an operand, not '%.*s'",
                (int) (px->tk_end - start > 20 ? 20 : px->tk_end - start), px->src + start);
    }
    return NULL;
}


static node_t *
parse_unary(px_t *px)
{
    node_kind_e  kind;
    node_t      *kid, *n;

    if (px->tk != TK_NOT && px->tk != TK_MINUS && !tk_is(px, "await")) {
        return parse_primary(px);
    }
    if (++px->depth > EXPR_DEPTH_MAX) {
        px_fail(px, px->tk_start, "expression nested too deeply");
        return NULL;
    }
    kind = px->tk == TK_NOT ? N_NOT : px->tk == TK_MINUS ? N_NEG : N_LIT;
    if (px_next(px) != 0 || (kid = parse_unary(px)) == NULL) {
        return NULL;
    }
    px->depth--;
    if (kind == N_LIT) {
        return kid;         /* "await", of the original's EJS templates */
    }
    if (kind == N_NEG && kid->kind == N_LIT && kid->u.lit.kind == RV_NUM) {
        kid->u.lit.num = -kid->u.lit.num;
        return kid;
    }
    if ((n = node_new(px->cc, kind, 1)) != NULL) {
        n->u.kids[0] = kid;
    }
    return n;
}


/*
 * The original product's conditions are EJS templates: "<%= x %>",
 * "<%- x %>", "<% return x; %>".  The part inside is parsed; positions stay
 * those of the whole string.
 */
static void
strip_template(px_t *px)
{
    const char  *s = px->src;
    size_t       b = 0, e = px->end;

    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r')) {
        b++;
    }
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n'
                     || s[e - 1] == '\r'))
    {
        e--;
    }
    if (e - b < 4 || memcmp(s + b, "<%", 2) != 0 || memcmp(s + e - 2, "%>", 2) != 0) {
        return;
    }
    b += 2;
    e -= 2;
    if (b < e && (s[b] == '=' || s[b] == '-' || s[b] == '_')) {
        b++;
    }
    if (e > b && (s[e - 1] == '-' || s[e - 1] == '_')) {
        e--;
    }
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r')) {
        b++;
    }
    if (e - b > 6 && memcmp(s + b, "return", 6) == 0 && !is_name_char((unsigned char) s[b + 6])) {
        b += 6;
    }
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n'
                     || s[e - 1] == '\r' || s[e - 1] == ';'))
    {
        e--;
    }
    px->pos = b;
    px->end = e;
}


static node_t *
compile_expression(cc_t *cc, const char *member, const char *src, size_t len)
{
    px_t     px;
    node_t  *n;

    memset(&px, 0, sizeof(px));
    px.cc = cc;
    px.member = member;
    px.src = src;
    px.end = len;
    strip_template(&px);
    if (px_next(&px) != 0) {
        return NULL;
    }
    if (px.tk == TK_EOF) {
        px_fail(&px, px.tk_start, "empty expression");
        return NULL;
    }
    if ((n = parse_or(&px)) == NULL) {
        return NULL;
    }
    if (px.tk != TK_EOF) {
        px_fail(&px, px.tk_start, "unexpected '%.*s' after the expression",
                (int) (px.tk_end - px.tk_start > 20 ? 20 : px.tk_end - px.tk_start),
                src + px.tk_start);
        return NULL;
    }
    return n;
}


/* ---------------------------------------------------------------------- */
/* UI conditions                                                          */

typedef enum {
    VT_STRING, VT_NUMBER, VT_BOOLEAN, VT_LIST, VT_OBJECT, VT_ARRAY
} value_type_e;

static const char *const value_types[] = {
    "string", "number", "boolean", "comma-delimited-list", "json-object",
    "json-array", NULL
};

typedef struct {
    const char   *name;
    test_e        test;
    unsigned      negate;
    unsigned      list;         /* IN, NOT_IN: the value is a list */
} comparator_t;

static const comparator_t  comparators[] = {
    { "EQUAL", T_EQ, 0, 0 }, { "NOT_EQUAL", T_EQ, 1, 0 },
    { "GREATER_THAN", T_GT, 0, 0 }, { "GREATER_THAN_OR_EQUAL", T_GE, 0, 0 },
    { "LESS_THAN", T_LT, 0, 0 }, { "LESS_THAN_OR_EQUAL", T_LE, 0, 0 },
    { "CONTAINS", T_CONTAINS, 0, 0 }, { "NOT_CONTAINS", T_CONTAINS, 1, 0 },
    { "STARTS_WITH", T_STARTS, 0, 0 }, { "ENDS_WITH", T_ENDS, 0, 0 },
    { "PATTERN", T_MATCH, 0, 0 }, { "IN", T_EQ, 0, 1 }, { "NOT_IN", T_EQ, 1, 1 },
    { "EXISTS", T_EXISTS, 0, 0 }
};


/* a member; JSON null counts as absent */
static const vmx_json_t *
member(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *m = vmx_json_get(obj, name);

    return m != NULL && m->type != VMX_JSON_NULL ? m : NULL;
}


/* index of the member's string in names, def when absent, -1 after an error */
static int
member_enum(cc_t *cc, const vmx_json_t *obj, const char *name,
    const char *const *names, int def)
{
    const vmx_json_t  *m = member(obj, name);
    char               list[256];
    size_t             n = 0;

    if (m == NULL) {
        return def;
    }
    for (int i = 0; names[i] != NULL; i++) {
        if (m->type == VMX_JSON_STRING && strcmp(m->str, names[i]) == 0) {
            return i;
        }
        n += (size_t) snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", names[i]);
        n = n < sizeof(list) ? n : sizeof(list) - 1;
    }
    cc_fail(cc, name, -1, "%s must be one of %s", name, list);
    return -1;
}


static int
member_bool(cc_t *cc, const vmx_json_t *obj, const char *name, unsigned *out)
{
    const vmx_json_t  *m = member(obj, name);

    if (m == NULL) {
        return 0;
    }
    if (m->type != VMX_JSON_TRUE && m->type != VMX_JSON_FALSE) {
        cc_fail(cc, name, -1, "%s must be true or false", name);
        return -1;
    }
    *out = m->type == VMX_JSON_TRUE;
    return 0;
}


/* a string member copied to out ("" when absent and optional) */
static int
member_str(cc_t *cc, const vmx_json_t *obj, const char *name, int required,
    vmx_rules_str_t *out)
{
    const vmx_json_t  *m = member(obj, name);

    if (m == NULL && !required) {
        return cc_strdup(cc, "", 0, out);
    }
    if (m == NULL || m->type != VMX_JSON_STRING || (required && m->str_len == 0)) {
        cc_fail(cc, name, -1, required ? "%s must be a non-empty string"
                                       : "%s must be a string", name);
        return -1;
    }
    return cc_strdup(cc, m->str, m->str_len, out);
}


/* a comma-delimited list: items trimmed, empty ones dropped */
static node_t *
split_list(cc_t *cc, const char *s, size_t len)
{
    node_t  *n = node_new(cc, N_LIST, 0);
    size_t   items = 1, b = 0;

    for (size_t i = 0; i < len; i++) {
        items += s[i] == ',';
    }
    if (n == NULL || (n->u.items = cc_alloc(cc, items * sizeof(rv_t))) == NULL) {
        return NULL;
    }
    while (b <= len) {
        size_t           e = b, next;
        vmx_rules_str_t  item;

        while (e < len && s[e] != ',') {
            e++;
        }
        next = e + 1;
        while (b < e && (s[b] == ' ' || s[b] == '\t')) {
            b++;
        }
        while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) {
            e--;
        }
        if (e > b) {
            if (cc_strdup(cc, s + b, e - b, &item) != 0) {
                return NULL;
            }
            n->u.items[n->n++] = rv_str(item.data, item.len);
        }
        b = next;
    }
    return n;
}


/* JSON text parsed into program memory; want is the type it must have */
static const vmx_json_t *
parse_json_value(cc_t *cc, const char *text, size_t len, vmx_json_type_e want)
{
    mem_t             *mem = &cc->rules->mem;
    vmx_rules_str_t    copy;
    vmx_json_error_t   jerr;
    const vmx_json_t  *j;

    /* the copy keeps the tree's spans (numbers' text) valid */
    if (cc_strdup(cc, text, len, &copy) != 0) {
        return NULL;
    }
    j = vmx_json_parse(copy.data, len, mem->alloc, mem->ctx, 0, &jerr);
    if (j == NULL && strcmp(jerr.message, "out of memory") == 0) {
        cc_fail(cc, NULL, -1, "out of memory");
        return NULL;
    }
    if (j == NULL) {
        cc_fail(cc, "value.expression", char_offset(text, jerr.offset), "invalid JSON: %s",
                jerr.message);
        return NULL;
    }
    if (j->type != want) {
        cc_fail(cc, "value.expression", -1, "value.expression must be a JSON %s",
                want == VMX_JSON_OBJECT ? "object" : "array");
        return NULL;
    }
    return j;
}


static node_t *
json_list(cc_t *cc, const vmx_json_t *arr)
{
    node_t  *n = node_new(cc, N_LIST, 0);
    size_t   i = 0;

    if (n == NULL || (n->u.items = cc_alloc(cc, arr->count * sizeof(rv_t))) == NULL) {
        return NULL;
    }
    for (const vmx_json_t *e = arr->child; e != NULL; e = e->next) {
        n->u.items[i++] = rv_from_json(e);
    }
    n->n = i;
    return n;
}


/* a scalar value: number or boolean literal as a node, or a list of one */
static node_t *
scalar_value(cc_t *cc, value_type_e type, const char *text, size_t len, int as_list)
{
    rv_t     v;
    node_t  *n;

    if (type == VT_NUMBER) {
        if (!parse_number(text, len, &v.num)) {
            cc_fail(cc, "value.expression", -1, "value.expression must be a number");
            return NULL;
        }
        v = rv_num(v.num);
    } else if (len == 4 && strncasecmp(text, "true", 4) == 0) {
        v = rv_bool(1);
    } else if (len == 5 && strncasecmp(text, "false", 5) == 0) {
        v = rv_bool(0);
    } else {
        cc_fail(cc, "value.expression", -1, "value.expression must be true or false");
        return NULL;
    }
    if (!as_list) {
        return lit_node(cc, v);
    }
    n = node_new(cc, N_LIST, 0);
    if (n == NULL || (n->u.items = cc_alloc(cc, sizeof(rv_t))) == NULL) {
        return NULL;
    }
    n->u.items[0] = v;
    n->n = 1;
    return n;
}


/* what a comparator accepts of each value type */
static int
check_value_type(cc_t *cc, const comparator_t *c, value_type_e type)
{
    int  ordering = c->test >= T_LT && c->test <= T_GE;
    int  json = type == VT_OBJECT || type == VT_ARRAY;

    if ((ordering && type != VT_STRING && type != VT_NUMBER)
        || ((c->test == T_STARTS || c->test == T_ENDS) && json)
        || (c->list && type == VT_OBJECT))
    {
        cc_fail(cc, "value.type", -1, "%s does not take a %s value", c->name,
                value_types[type]);
        return -1;
    }
    return 0;
}


static node_t *
compile_value(cc_t *cc, const comparator_t *c, value_type_e type, const vmx_json_t *v)
{
    const char         *text = v->type == VMX_JSON_STRING ? v->str : v->raw;
    size_t              len = v->type == VMX_JSON_STRING ? v->str_len : v->raw_len;
    const vmx_json_t   *j;
    vmx_rules_str_t     s;

    if ((v->type == VMX_JSON_OBJECT || v->type == VMX_JSON_ARRAY)
        && type != VT_OBJECT && type != VT_ARRAY)
    {
        cc_fail(cc, "value.expression", -1, "value.expression must be a string");
        return NULL;
    }
    if (c->test == T_MATCH) {
        return regex_node(cc, "value.expression", text, 0, text, len, 0);
    }
    if (check_value_type(cc, c, type) != 0) {
        return NULL;
    }
    switch (type) {
    case VT_NUMBER:
    case VT_BOOLEAN:
        return scalar_value(cc, type, text, len, c->list);
    case VT_OBJECT:
    case VT_ARRAY:
        j = parse_json_value(cc, text, len, type == VT_OBJECT ? VMX_JSON_OBJECT
                                                            : VMX_JSON_ARRAY);
        if (j == NULL) {
            return NULL;
        }
        return c->list ? json_list(cc, j) : lit_node(cc, rv_from_json(j));
    case VT_LIST:
        return split_list(cc, text, len);
    default:
        if (c->list) {
            return split_list(cc, text, len);
        }
        return cc_strdup(cc, text, len, &s) == 0 ? lit_node(cc, rv_str(s.data, s.len)) : NULL;
    }
}


/* the names of comparators[], in its order, for member_enum() */
static const char *const  comparator_names[] = {
    "EQUAL", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN",
    "LESS_THAN_OR_EQUAL", "CONTAINS", "NOT_CONTAINS", "STARTS_WITH", "ENDS_WITH",
    "PATTERN", "IN", "NOT_IN", "EXISTS", NULL
};


static const comparator_t *
member_comparator(cc_t *cc, const vmx_json_t *cond)
{
    int  i;

    if (member(cond, "comparator") == NULL) {
        cc_fail(cc, "comparator", -1, "comparator is required");
        return NULL;
    }
    i = member_enum(cc, cond, "comparator", comparator_names, -1);
    return i < 0 ? NULL : &comparators[i];
}


static node_t *
compile_condition(cc_t *cc, const vmx_json_t *cond)
{
    const vmx_json_t    *expr = member(cond, "expression"), *value, *ve;
    const comparator_t  *c;
    node_t              *left, *right = NULL;
    size_t               old;
    int                  type;

    if (expr == NULL || expr->type != VMX_JSON_STRING) {
        cc_fail(cc, "expression", -1, "expression must be a string (the variable)");
        return NULL;
    }
    if ((left = compile_expression(cc, "expression", expr->str, expr->str_len)) == NULL
        || (c = member_comparator(cc, cond)) == NULL)
    {
        return NULL;
    }
    if (c->test != T_EXISTS) {
        value = member(cond, "value");
        if (value == NULL || value->type != VMX_JSON_OBJECT) {
            cc_fail(cc, "value", -1, "value must be an object {type, expression}");
            return NULL;
        }
        if (member(value, "type") == NULL) {
            cc_fail(cc, "value.type", -1, "value.type is required");
            return NULL;
        }
        old = path_push(cc, ".value");
        if ((type = member_enum(cc, value, "type", value_types, -1)) < 0) {
            return NULL;
        }
        path_pop(cc, old);
        if ((ve = member(value, "expression")) == NULL) {
            cc_fail(cc, "value.expression", -1, "value.expression is required");
            return NULL;
        }
        if ((right = compile_value(cc, c, (value_type_e) type, ve)) == NULL) {
            return NULL;
        }
    }
    left = node_test(cc, c->test, c->negate, left, right);
    return left != NULL && node_tag(cc, left, NULL, expr->str, expr->str_len, -1, 0) == 0
           ? left : NULL;
}


/* ---------------------------------------------------------------------- */
/* groups                                                                 */

static node_t *compile_group(cc_t *cc, const vmx_json_t *g, unsigned depth,
    unsigned *enabled);


/* a group's member: a condition or a nested group; *enabled 0 to drop it */
static node_t *
compile_item(cc_t *cc, const vmx_json_t *item, unsigned depth, unsigned *enabled)
{
    static const char *const types[] = { "group", "condition", NULL };
    node_t                  *n;
    int                      type;

    if (item->type != VMX_JSON_OBJECT) {
        cc_fail(cc, NULL, -1, "a condition must be an object");
        return NULL;
    }
    type = member_enum(cc, item, "type", types, member(item, "conditions") ? 0 : 1);
    if (type < 0) {
        return NULL;
    }
    *enabled = 1;
    if (type == 1) {
        return compile_condition(cc, item);
    }
    if (depth > GROUP_DEPTH_MAX) {
        cc_fail(cc, NULL, -1, "groups nested deeper than %d", GROUP_DEPTH_MAX);
        return NULL;
    }
    n = compile_group(cc, item, depth, enabled);
    return n != NULL && node_tag(cc, n, NULL, "", 0, -1, 1) == 0 ? n : NULL;
}


/* the conditions of a UI group under AND or OR, disabled groups left out */
static node_t *
compile_conditions(cc_t *cc, const vmx_json_t *g, unsigned depth, node_kind_e kind)
{
    const vmx_json_t  *list = member(g, "conditions");
    node_t            *n;
    size_t             i = 0;

    if (list != NULL && list->type != VMX_JSON_ARRAY) {
        cc_fail(cc, "conditions", -1, "conditions must be an array");
        return NULL;
    }
    n = node_new(cc, kind, list ? list->count : 0);
    if (n == NULL) {
        return NULL;
    }
    n->n = 0;
    for (const vmx_json_t *item = list ? list->child : NULL; item; item = item->next) {
        size_t    old = path_push(cc, ".conditions[%zu]", i++);
        unsigned  enabled;
        node_t   *kid = compile_item(cc, item, depth + 1, &enabled);

        if (kid == NULL) {
            return NULL;
        }
        path_pop(cc, old);
        if (enabled) {
            n->u.kids[n->n++] = kid;
        }
    }
    return n;
}


static node_t *
compile_group(cc_t *cc, const vmx_json_t *g, unsigned depth, unsigned *enabled)
{
    static const char *const modes[] = { "UI", "ADVANCED", NULL };
    static const char *const operators[] = { "AND", "OR", NULL };
    const vmx_json_t        *expr;
    vmx_rules_str_t          unused;
    node_t                  *n;
    int                      mode, op;

    *enabled = 1;
    if (member_bool(cc, g, "enabled", enabled) != 0
        || member_str(cc, g, "id", 0, &unused) != 0
        || member_str(cc, g, "description", 0, &unused) != 0
        || (mode = member_enum(cc, g, "mode", modes, 0)) < 0)
    {
        return NULL;
    }
    if (mode == 1) {
        expr = member(g, "expression");
        if (expr == NULL || expr->type != VMX_JSON_STRING) {
            cc_fail(cc, "expression", -1, "an ADVANCED group needs an expression");
            return NULL;
        }
        cc->tag_tests = 1;
        n = compile_expression(cc, "expression", expr->str, expr->str_len);
        cc->tag_tests = 0;
        return n;
    }
    if ((op = member_enum(cc, g, "operator", operators, 0)) < 0) {
        return NULL;
    }
    return compile_conditions(cc, g, depth, op == 0 ? N_AND : N_OR);
}


static int
compile_then(cc_t *cc, const vmx_json_t *then, group_t *g)
{
    const vmx_json_t  *traffic = member(then, "traffic");
    size_t             old;
    int                rc;

    if (then->type != VMX_JSON_OBJECT) {
        cc_fail(cc, "then", -1, "then must be an object {provider, model, connectionId,"
                " traffic}");
        return -1;
    }
    g->then = cc_alloc(cc, sizeof(vmx_rules_target_t));
    if (g->then == NULL) {
        return -1;
    }
    g->then->data = NULL;
    old = path_push(cc, ".then");
    rc = member_str(cc, then, "provider", 1, &g->then->provider) == 0
         && member_str(cc, then, "model", 1, &g->then->model) == 0
         && member_str(cc, then, "connectionId", 1, &g->then->connection_id) == 0
         ? 0 : -1;
    if (rc == 0 && traffic != NULL
        && (traffic->type != VMX_JSON_NUMBER || traffic->num < 0 || traffic->num > 100))
    {
        cc_fail(cc, "traffic", -1, "traffic must be a number from 0 to 100");
        rc = -1;
    }
    if (rc != 0) {
        return -1;
    }
    path_pop(cc, old);
    if (traffic != NULL) {
        g->share = (uint64_t) (traffic->num / 100.0 * (double) SHARE_ALL);
        g->traffic = traffic->num;
    }
    return 0;
}


static int
compile_top_group(cc_t *cc, const vmx_json_t *j, group_t *g)
{
    static const char *const actions[] = { "CALL_MODEL", "BLOCK", NULL };
    static const char *const types[] = { "group", NULL };
    const vmx_json_t        *then;
    int                      action;

    if (j->type != VMX_JSON_OBJECT) {
        cc_fail(cc, NULL, -1, "a group must be an object");
        return -1;
    }
    if (member_enum(cc, j, "type", types, 0) < 0
        || (g->when = compile_group(cc, j, 0, &g->enabled)) == NULL
        || member_str(cc, j, "id", 0, &g->id) != 0
        || member_str(cc, j, "description", 0, &g->description) != 0
        || (action = member_enum(cc, j, "action", actions, 0)) < 0)
    {
        return -1;
    }
    g->action = action == 0 ? VMX_RULES_CALL_MODEL : VMX_RULES_BLOCK;
    g->share = SHARE_ALL;
    g->traffic = 100;
    then = member(j, "then");
    /* a BLOCK group's then is never used, so not checked */
    if (g->action == VMX_RULES_BLOCK || then == NULL) {
        return 0;
    }
    return compile_then(cc, then, g);
}


static int
compile_groups(cc_t *cc, const vmx_json_t *routing)
{
    const vmx_json_t  *list = member(routing, "conditions");
    vmx_rules_t       *rules = cc->rules;

    if (member_bool(cc, routing, "enabled", &rules->enabled) != 0) {
        return -1;
    }
    if (list == NULL) {
        return 0;
    }
    if (list->type != VMX_JSON_ARRAY) {
        cc_fail(cc, "conditions", -1, "conditions must be an array of groups");
        return -1;
    }
    rules->groups = cc_alloc(cc, list->count * sizeof(group_t));
    if (rules->groups == NULL) {
        return -1;
    }
    memset(rules->groups, 0, list->count * sizeof(group_t));
    for (const vmx_json_t *j = list->child; j != NULL; j = j->next) {
        size_t  old = path_push(cc, "conditions[%zu]", rules->ngroups);

        if (compile_top_group(cc, j, &rules->groups[rules->ngroups]) != 0) {
            return -1;
        }
        path_pop(cc, old);
        rules->ngroups++;
    }
    return 0;
}


vmx_rules_t *
vmx_rules_compile(const vmx_json_t *routing, vmx_json_alloc_pt alloc,
    void *alloc_ctx, vmx_rules_error_t *err)
{
    vmx_rules_t  *rules;
    cc_t          cc;

    memset(err, 0, sizeof(vmx_rules_error_t));
    err->position = -1;
    rules = alloc(alloc_ctx, sizeof(vmx_rules_t));
    if (rules == NULL) {
        snprintf(err->message, sizeof(err->message), "out of memory");
        return NULL;
    }
    memset(rules, 0, sizeof(vmx_rules_t));
    rules->mem.alloc = alloc;
    rules->mem.ctx = alloc_ctx;

    memset(&cc, 0, sizeof(cc));
    cc.rules = rules;
    cc.err = err;
    if (routing == NULL || routing->type != VMX_JSON_OBJECT) {
        cc_fail(&cc, NULL, -1, "routing must be an object {enabled, conditions}");
        return NULL;
    }
    if (cc_pcre_init(&cc) != 0 || compile_groups(&cc, routing) != 0) {
        vmx_rules_free(rules);
        return NULL;
    }
    return rules;
}


vmx_rules_t *
vmx_rules_compile_text(const char *text, size_t len, vmx_json_alloc_pt alloc,
    void *alloc_ctx, vmx_rules_error_t *err)
{
    vmx_json_error_t   jerr;
    const vmx_json_t  *routing = vmx_json_parse(text, len, alloc, alloc_ctx, 0, &jerr);

    if (routing == NULL) {
        int  oom = strcmp(jerr.message, "out of memory") == 0;

        memset(err, 0, sizeof(vmx_rules_error_t));
        err->position = oom ? -1 : char_offset(text, jerr.offset > len ? len : jerr.offset);
        snprintf(err->message, sizeof(err->message), "%s%s", oom ? "" : "invalid JSON: ",
                 jerr.message);
        return NULL;
    }
    return vmx_rules_compile(routing, alloc, alloc_ctx, err);
}


void
vmx_rules_free(vmx_rules_t *rules)
{
    if (rules == NULL) {
        return;
    }
    for (rx_t *rx = rules->regexes; rx != NULL; rx = rx->next) {
        pcre2_code_free(rx->code);
    }
    rules->regexes = NULL;
}


int
vmx_rules_active(const vmx_rules_t *rules)
{
    return rules->enabled && rules->ngroups > 0;
}


vmx_rules_target_t *
vmx_rules_target_next(vmx_rules_t *rules, size_t *cursor)
{
    while (*cursor < rules->ngroups) {
        group_t  *g = &rules->groups[(*cursor)++];

        if (g->then != NULL) {
            return g->then;
        }
    }

    return NULL;
}


/* ---------------------------------------------------------------------- */
/* evaluation                                                             */

typedef struct {
    char                    *base;
    size_t                   size;
    size_t                   used;
} arena_t;

typedef struct {
    const vmx_rules_t       *rules;
    const vmx_rules_input_t *in;
    arena_t                  arena;
    pcre2_general_context   *pcre_gctx;     /* in the scratch; NULL: none */
    vmx_rules_trace_t       *trace;         /* NULL: none */
    size_t                   group;         /* being evaluated, for traces */
} ev_t;


static void *
arena_alloc(arena_t *a, size_t size)
{
    size_t  pad;

    if (a->base == NULL) {
        return NULL;
    }
    pad = (size_t) (-(uintptr_t) (a->base + a->used)) & 15;
    if (size > a->size - a->used || pad > a->size - a->used - size) {
        return NULL;
    }
    a->used += pad + size;
    return a->base + a->used - size;
}


static void *
scratch_alloc(PCRE2_SIZE size, void *data)
{
    return arena_alloc(data, size);
}


/* released with the arena's mark */
static void
scratch_free(void *p, void *data)
{
}


static int json_equal(const vmx_json_t *a, const vmx_json_t *b);


static int
members_equal(const vmx_json_t *a, const vmx_json_t *b)
{
    for (const vmx_json_t *m = a->child; m != NULL; m = m->next) {
        const vmx_json_t  *o = vmx_json_getn(b, m->key, m->key_len);

        if (o == NULL || !json_equal(m, o)) {
            return 0;
        }
    }
    return 1;
}


static int
json_equal(const vmx_json_t *a, const vmx_json_t *b)
{
    const vmx_json_t  *x, *y;

    if (a->type != b->type) {
        return 0;
    }
    switch (a->type) {
    case VMX_JSON_NUMBER:
        return a->num == b->num;
    case VMX_JSON_STRING:
        return a->str_len == b->str_len && memcmp(a->str, b->str, a->str_len) == 0;
    case VMX_JSON_ARRAY:
        if (a->count != b->count) {
            return 0;
        }
        for (x = a->child, y = b->child; x != NULL && y != NULL; x = x->next, y = y->next) {
            if (!json_equal(x, y)) {
                return 0;
            }
        }
        return 1;
    case VMX_JSON_OBJECT:
        return a->count == b->count && members_equal(a, b);
    default:
        return 1;
    }
}


static int
text_is(const rv_t *v, const char *s)
{
    return v->len == strlen(s) && memcmp(v->s, s, v->len) == 0;
}


/* == of the header: kinds are ordered so that a <= b after a swap */
static int
rv_equal(const rv_t *a, const rv_t *b)
{
    double  d;

    if (a->kind > b->kind) {
        const rv_t  *t = a;

        a = b;
        b = t;
    }
    switch (a->kind) {
    case RV_NULL:
        return b->kind == RV_NULL;
    case RV_BOOL:
        return b->kind == RV_BOOL ? a->b == b->b
               : b->kind == RV_STR && text_is(b, a->b ? "true" : "false");
    case RV_NUM:
        return b->kind == RV_NUM ? a->num == b->num
               : b->kind == RV_STR && parse_number(b->s, b->len, &d) && d == a->num;
    case RV_STR:
        return b->kind == RV_STR && a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
    case RV_JSON:
        return json_equal(a->json, b->json);
    default:
        return 0;
    }
}


/* ordering: -2 when the values do not compare */
static int
rv_compare(const rv_t *a, const rv_t *b)
{
    double  x, y;
    int     c;

    if (a->kind == RV_NUM || b->kind == RV_NUM) {
        if (!rv_number(a, &x) || !rv_number(b, &y)) {
            return -2;
        }
        return (x > y) - (x < y);
    }
    if (a->kind != RV_STR || b->kind != RV_STR) {
        return -2;
    }
    c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    return c != 0 ? (c > 0) - (c < 0) : (a->len > b->len) - (a->len < b->len);
}


static int json_contains(const vmx_json_t *c, const vmx_json_t *i);


static int
array_has(const vmx_json_t *arr, const vmx_json_t *item)
{
    for (const vmx_json_t *e = arr->child; e != NULL; e = e->next) {
        if (json_contains(e, item)) {
            return 1;
        }
    }
    return 0;
}


/* PostgreSQL's jsonb @>, plus an array containing a non-array element */
static int
json_contains(const vmx_json_t *c, const vmx_json_t *i)
{
    if (c->type == VMX_JSON_OBJECT && i->type == VMX_JSON_OBJECT) {
        for (const vmx_json_t *m = i->child; m != NULL; m = m->next) {
            const vmx_json_t  *o = vmx_json_getn(c, m->key, m->key_len);

            if (o == NULL || !json_contains(o, m)) {
                return 0;
            }
        }
        return 1;
    }
    if (c->type == VMX_JSON_ARRAY && i->type == VMX_JSON_ARRAY) {
        for (const vmx_json_t *e = i->child; e != NULL; e = e->next) {
            if (!array_has(c, e)) {
                return 0;
            }
        }
        return 1;
    }
    if (c->type == VMX_JSON_ARRAY) {
        return array_has(c, i);
    }
    return json_equal(c, i);
}


static int
rv_contains(const rv_t *c, const rv_t *i)
{
    char         cbuf[32], ibuf[32];
    const char  *cs, *is;
    size_t       clen, ilen;

    if (c->kind == RV_JSON && i->kind == RV_JSON) {
        return json_contains(c->json, i->json);
    }
    if (c->kind == RV_JSON && c->json->type == VMX_JSON_ARRAY) {
        for (const vmx_json_t *e = c->json->child; e != NULL; e = e->next) {
            rv_t  ev = rv_from_json(e);

            if (ev.kind != RV_JSON && ev.kind != RV_MISSING && rv_equal(&ev, i)) {
                return 1;
            }
        }
        return 0;
    }
    if (c->kind == RV_JSON) {
        return i->kind == RV_STR && vmx_json_getn(c->json, i->s, i->len) != NULL;
    }
    if (!rv_text(c, cbuf, &cs, &clen) || !rv_text(i, ibuf, &is, &ilen)) {
        return 0;
    }
    return ilen == 0 || memmem(cs, clen, is, ilen) != NULL;
}


static int
rv_affix(const rv_t *v, const rv_t *a, int suffix)
{
    char         vbuf[32], abuf[32];
    const char  *vs, *as;
    size_t       vlen, alen;

    if (!rv_text(v, vbuf, &vs, &vlen) || !rv_text(a, abuf, &as, &alen) || alen > vlen) {
        return 0;
    }
    return memcmp(suffix ? vs + vlen - alen : vs, as, alen) == 0;
}


static int
rx_match(ev_t *ev, const rx_t *rx, const rv_t *v)
{
    char               buf[32];
    const char        *s;
    size_t             len;
    pcre2_match_data  *md;

    if (ev->pcre_gctx == NULL || !rv_text(v, buf, &s, &len)) {
        return 0;
    }
    md = pcre2_match_data_create(1, ev->pcre_gctx);
    if (md == NULL) {
        return 0;
    }
    /* a failure (match limit, no memory) is no match */
    return pcre2_match(rx->code, (PCRE2_SPTR) s, len, 0, 0, md, ev->rules->match_ctx) >= 0;
}


/* one comparison, both operands present */
static int
test_one(test_e op, const rv_t *l, const rv_t *r)
{
    int  c;

    switch (op) {
    case T_EQ:
        return rv_equal(l, r);
    case T_CONTAINS:
        return rv_contains(l, r);
    case T_STARTS:
    case T_ENDS:
        return rv_affix(l, r, op == T_ENDS);
    default:
        c = rv_compare(l, r);
        return c != -2 && (op == T_LT ? c < 0 : op == T_LE ? c <= 0
                           : op == T_GT ? c > 0 : c >= 0);
    }
}


static rv_t eval_node(ev_t *ev, const node_t *n);


static int
is_null(const node_t *n)
{
    return n->kind == N_LIT && n->u.lit.kind == RV_NULL;
}


static int
present(const rv_t *v)
{
    return v->kind != RV_MISSING && v->kind != RV_NULL;
}


/* the right operand: any item of a list, a regex, or a value */
static int
test_right(ev_t *ev, const node_t *n, const rv_t *l)
{
    const node_t  *right = n->u.kids[1];
    rv_t           r;

    if (right->kind == N_LIST) {
        for (size_t i = 0; i < right->n; i++) {
            if (right->u.items[i].kind != RV_MISSING
                && test_one(n->op, l, &right->u.items[i]))
            {
                return 1;
            }
        }
        return 0;
    }
    if (right->kind == N_REGEX) {
        return rx_match(ev, right->u.rx, l);
    }
    r = eval_node(ev, right);
    return present(&r) ? test_one(n->op, l, &r) : -1;
}


/* *l: the left operand (of `x == null`, x), for traces */
static int
eval_test(ev_t *ev, const node_t *n, rv_t *l)
{
    const node_t  *left = n->u.kids[0], *right = n->u.kids[1];
    int            hit;

    if (n->op == T_EXISTS) {
        *l = eval_node(ev, left);
        return present(l);
    }
    if (n->op == T_EQ && (is_null(left) || is_null(right))) {
        *l = eval_node(ev, is_null(left) ? right : left);
        return present(l) == (int) n->negate;
    }
    *l = eval_node(ev, left);
    if (!present(l)) {
        return 0;
    }
    hit = test_right(ev, n, l);
    return hit < 0 ? 0 : n->negate ? !hit : hit;
}


static rv_t
message(const vmx_json_t *body, int last)
{
    const vmx_json_t  *msgs = vmx_json_get(body, "messages");

    if (msgs == NULL || msgs->type != VMX_JSON_ARRAY || msgs->count == 0) {
        return rv_missing();
    }
    return rv_from_json(vmx_json_at(msgs, last ? msgs->count - 1 : 0));
}


static rv_t
opt_str(const vmx_rules_str_t *s)
{
    return s->data != NULL ? rv_str(s->data, s->len) : rv_missing();
}


static rv_t
var_root(const vmx_rules_input_t *in, var_e var)
{
    switch (var) {
    case V_REQUEST:         return rv_from_json(in->body);
    case V_FIRST_MESSAGE:   return message(in->body, 0);
    case V_LAST_MESSAGE:    return message(in->body, 1);
    case V_MESSAGES_COUNT:  return rv_num((double) in->messages_count);
    case V_TOOLS_COUNT:     return rv_num((double) in->tools_count);
    case V_FIRST_CONTENT:   return opt_str(&in->first_message_content);
    case V_LAST_CONTENT:    return opt_str(&in->last_message_content);
    case V_ALL_CONTENT:     return opt_str(&in->all_messages_content);
    case V_TOKENS_INPUT:    return rv_num((double) in->tokens_input);
    case V_API_KEY_ID:      return opt_str(&in->api_key_id);
    case V_API_KEY_LABELS:  return rv_from_json(in->api_key_labels);
    default:                return opt_str(&in->source_ip);
    }
}


static rv_t
rv_length(const rv_t *v)
{
    if (v->kind == RV_STR) {
        return rv_num((double) utf8_chars(v->s, v->len));
    }
    if (v->kind == RV_JSON) {
        return rv_num((double) v->json->count);
    }
    return rv_missing();
}


static rv_t
var_step(const rv_t *v, const step_t *s)
{
    const vmx_json_t  *j = v->kind == RV_JSON ? v->json : NULL;
    long               i = s->index;

    if (s->name == NULL) {
        if (j == NULL || j->type != VMX_JSON_ARRAY) {
            return rv_missing();
        }
        i = i < 0 ? (long) j->count + i : i;
        return i < 0 || (size_t) i >= j->count ? rv_missing()
               : rv_from_json(vmx_json_at(j, (size_t) i));
    }
    if (j != NULL && j->type == VMX_JSON_OBJECT) {
        return rv_from_json(vmx_json_getn(j, s->name, s->len));
    }
    if (step_is(s, "length") && (v->kind == RV_STR || j != NULL)) {
        return rv_length(v);
    }
    return rv_missing();
}


static rv_t
eval_var(ev_t *ev, const node_t *n)
{
    rv_t  v = var_root(ev->in, (var_e) n->op);

    for (size_t i = 0; i < n->n && v.kind != RV_MISSING; i++) {
        v = var_step(&v, &n->u.steps[i]);
    }
    return v;
}


static rv_t
eval_case(ev_t *ev, const node_t *n)
{
    rv_t   v = eval_node(ev, n->u.kids[0]);
    char  *p;

    if (v.kind != RV_STR) {
        return v;
    }
    p = arena_alloc(&ev->arena, v.len + 1);
    if (p == NULL) {
        return rv_missing();
    }
    for (size_t i = 0; i < v.len; i++) {
        unsigned char  c = (unsigned char) v.s[i];

        p[i] = (char) (n->kind == N_LOWER ? (c >= 'A' && c <= 'Z' ? c + 32 : c)
                                          : (c >= 'a' && c <= 'z' ? c - 32 : c));
    }
    p[v.len] = '\0';
    return rv_str(p, v.len);
}


static rv_t
eval_error_rate(ev_t *ev, const node_t *n)
{
    const vmx_rules_input_t  *in = ev->in;
    double                    rate;

    if (in->error_rate == NULL) {
        return rv_missing();
    }
    rate = in->error_rate(in->error_rate_ctx, n->u.rate[0], n->u.rate[1]);
    return rate >= 0 && isfinite(rate) ? rv_num(rate) : rv_missing();
}


static int
rv_truthy(const rv_t *v)
{
    switch (v->kind) {
    case RV_BOOL:
        return v->b;
    case RV_NUM:
        return v->num != 0 && v->num == v->num;
    case RV_STR:
        return v->len > 0;
    case RV_JSON:
        return 1;
    default:
        return 0;
    }
}


/* a trace goes on past the decision, to show every condition's value */
static rv_t
eval_logic(ev_t *ev, const node_t *n)
{
    int  want = n->kind == N_OR, decided = 0;

    for (size_t i = 0; i < n->n; i++) {
        rv_t  v = eval_node(ev, n->u.kids[i]);

        if (rv_truthy(&v) == want) {
            if (ev->trace == NULL) {
                return rv_bool(want);
            }
            decided = 1;
        }
    }
    return rv_bool(decided ? want : !want);
}


/* n's value; *l gets a test's left operand */
static rv_t
eval_kind(ev_t *ev, const node_t *n, rv_t *l)
{
    size_t  mark = ev->arena.used;
    rv_t    v;
    double  d;

    switch (n->kind) {
    case N_LIT:
        return n->u.lit;
    case N_VAR:
        return eval_var(ev, n);
    case N_AND:
    case N_OR:
        return eval_logic(ev, n);
    case N_NOT:
        v = eval_node(ev, n->u.kids[0]);
        ev->arena.used = mark;
        return rv_bool(!rv_truthy(&v));
    case N_NEG:
        v = eval_node(ev, n->u.kids[0]);
        return rv_number(&v, &d) ? rv_num(-d) : rv_missing();
    case N_TEST:
        /* what the operands took of the scratch is dead once tested (a
         * trace copies *l before anything is allocated again) */
        v = rv_bool(eval_test(ev, n, l));
        ev->arena.used = mark;
        return v;
    case N_LEN:
        v = eval_node(ev, n->u.kids[0]);
        return rv_length(&v);
    case N_LOWER:
    case N_UPPER:
        return eval_case(ev, n);
    case N_ERROR_RATE:
        return eval_error_rate(ev, n);
    default:
        return rv_missing();        /* lists and regexes are no values */
    }
}


/* v's text into c->value, cut at a character within the bound */
static void
trace_value(vmx_rules_trace_cond_t *c, const rv_t *v)
{
    static const vmx_rules_value_e  kinds[] = {
        VMX_RULES_VALUE_MISSING, VMX_RULES_VALUE_NULL, VMX_RULES_VALUE_BOOL,
        VMX_RULES_VALUE_NUMBER, VMX_RULES_VALUE_STRING, VMX_RULES_VALUE_JSON
    };
    char                            buf[32];
    const char                     *s = NULL;
    size_t                          len = 0;

    c->kind = kinds[v->kind];
    if (v->kind == RV_JSON) {
        s = v->json->raw;
        len = v->json->raw_len;
    } else if (v->kind == RV_BOOL || v->kind == RV_NUM || v->kind == RV_STR) {
        c->num = v->kind == RV_BOOL ? v->b : v->num;
        (void) rv_text(v, buf, &s, &len);
    }
    if (len >= sizeof(c->value)) {
        len = sizeof(c->value) - 1;
        while (len > 0 && ((unsigned char) s[len] & 0xC0) == 0x80) {
            len--;
        }
        c->truncated = 1;
    }
    if (len > 0) {
        memcpy(c->value, s, len);
    }
    c->value[len] = '\0';
    c->value_len = len;
}


/* n's value, recording n in the trace */
static rv_t
eval_traced(ev_t *ev, const node_t *n)
{
    vmx_rules_trace_t       *t = ev->trace;
    vmx_rules_trace_cond_t  *c;
    rv_t                     v, l = rv_missing();

    if (t->nconds == t->conds_max) {
        t->truncated = 1;
        return eval_kind(ev, n, &l);
    }
    /* the slot first: document order, a nested group before its members */
    c = &t->conds[t->nconds++];
    memset(c, 0, offsetof(vmx_rules_trace_cond_t, value) + 1);
    c->group = ev->group;
    c->path = n->tag->path;
    c->text = n->tag->text;
    c->position = n->tag->position;
    c->is_group = n->tag->is_group;
    v = eval_kind(ev, n, &l);
    c->result = rv_truthy(&v);
    if (!c->is_group) {
        trace_value(c, n->kind == N_TEST ? &l : &v);
    }
    return v;
}


static rv_t
eval_node(ev_t *ev, const node_t *n)
{
    rv_t  l;

    if (ev->trace != NULL && n->tag != NULL) {
        return eval_traced(ev, n);
    }
    return eval_kind(ev, n, &l);
}


static void
fill_result(const group_t *g, size_t index, vmx_rules_result_t *out)
{
    out->matched = 1;
    out->action = g->action;
    out->group_index = index;
    out->group_id = g->id;
    out->description = g->description;
    out->target = g->action == VMX_RULES_CALL_MODEL ? g->then : NULL;
}


/*
 * A traffic share compares a draw of 32 bits with a threshold over 2^32:
 * one random() alone, 31 bits, sent every draw under a share above 50 to
 * the group.
 */
uint32_t
vmx_rules_random(void *ctx)
{
    return ((uint32_t) random() << 16) ^ (uint32_t) random();
}


/* whether a matching group with a partial share takes the request */
static int
inside_share(const vmx_rules_input_t *in, const group_t *g, vmx_rules_trace_group_t *tg)
{
    uint32_t  draw;

    if (g->share == 0) {
        return 0;
    }
    if (in->random == NULL) {
        return 1;
    }
    draw = in->random(in->random_ctx);
    if (tg != NULL) {
        tg->drawn = 1;
        tg->draw = draw;
        tg->taken = draw < g->share;
    }
    return draw < g->share;
}


/* the trace's record of group i, NULL when there is no room */
static vmx_rules_trace_group_t *
trace_group(vmx_rules_trace_t *t, const group_t *g)
{
    vmx_rules_trace_group_t  *tg;

    if (t->ngroups == t->groups_max) {
        t->truncated = 1;
        return NULL;
    }
    tg = &t->groups[t->ngroups++];
    memset(tg, 0, sizeof(vmx_rules_trace_group_t));
    tg->id = g->id;
    tg->description = g->description;
    tg->action = g->action;
    tg->then = g->action == VMX_RULES_CALL_MODEL ? g->then : NULL;
    tg->enabled = g->enabled;
    tg->traffic = g->traffic;
    tg->first = t->nconds;
    return tg;
}


int
vmx_rules_eval(const vmx_rules_t *rules, const vmx_rules_input_t *in,
    vmx_rules_result_t *out)
{
    return vmx_rules_eval_trace(rules, in, out, NULL);
}


int
vmx_rules_eval_trace(const vmx_rules_t *rules, const vmx_rules_input_t *in,
    vmx_rules_result_t *out, vmx_rules_trace_t *trace)
{
    ev_t  ev;
    int   decided = 0;

    memset(out, 0, sizeof(vmx_rules_result_t));
    out->original = in->primary;
    if (trace != NULL) {
        trace->ngroups = 0;
        trace->nconds = 0;
        trace->truncated = 0;
    }
    if (!vmx_rules_active(rules)) {
        return 0;
    }
    ev.rules = rules;
    ev.in = in;
    ev.arena.base = in->scratch;
    ev.arena.size = in->scratch != NULL ? in->scratch_size : 0;
    ev.arena.used = 0;
    ev.trace = trace;
    /* first, so that no mark releases it */
    ev.pcre_gctx = rules->regexes == NULL ? NULL
                   : pcre2_general_context_create(scratch_alloc, scratch_free, &ev.arena);

    for (size_t i = 0; i < rules->ngroups; i++) {
        const group_t            *g = &rules->groups[i];
        vmx_rules_trace_group_t  *tg = trace != NULL ? trace_group(trace, g) : NULL;
        size_t                    mark = ev.arena.used;
        rv_t                      v;

        if (!g->enabled) {
            continue;
        }
        ev.group = i;
        v = eval_node(&ev, g->when);
        ev.arena.used = mark;
        if (tg != NULL) {
            tg->matched = rv_truthy(&v);
            tg->nconds = trace->nconds - tg->first;
        }
        /* only a trace goes on after the decision */
        if (decided || !rv_truthy(&v)) {
            continue;
        }
        if (g->action == VMX_RULES_CALL_MODEL && g->share < SHARE_ALL
            && !inside_share(in, g, tg))
        {
            out->traffic_passed++;
            continue;
        }
        fill_result(g, i, out);
        if (trace == NULL) {
            return 1;
        }
        if (tg != NULL) {
            tg->chosen = 1;
        }
        decided = 1;
    }
    return decided;
}


/* ---------------------------------------------------------------------- */
/* input                                                                  */

static int
has_text(const vmx_json_t *content)
{
    return content != NULL
           && (content->type == VMX_JSON_STRING || content->type == VMX_JSON_ARRAY);
}


/* a content's text into dst (NULL: only measured); returns its length */
static size_t
content_text(const vmx_json_t *content, char *dst)
{
    size_t  len = 0, parts = 0;

    if (content->type == VMX_JSON_STRING) {
        if (dst != NULL) {
            memcpy(dst, content->str, content->str_len);
        }
        return content->str_len;
    }
    for (const vmx_json_t *p = content->child; p != NULL; p = p->next) {
        const vmx_json_t  *t = p->type == VMX_JSON_STRING ? p : vmx_json_get(p, "text");

        if (t == NULL || t->type != VMX_JSON_STRING) {
            continue;
        }
        if (parts++ > 0) {
            if (dst != NULL) {
                dst[len] = ' ';
            }
            len++;
        }
        if (dst != NULL) {
            memcpy(dst + len, t->str, t->str_len);
        }
        len += t->str_len;
    }
    return len;
}


static int
message_text(const vmx_json_t *msg, vmx_rules_str_t *out, vmx_json_alloc_pt alloc,
    void *ctx)
{
    const vmx_json_t  *content = vmx_json_get(msg, "content");
    char              *p;

    if (!has_text(content)) {
        return 0;
    }
    if (content->type == VMX_JSON_STRING) {
        out->data = content->str;
        out->len = content->str_len;
        return 0;
    }
    out->len = content_text(content, NULL);
    if ((p = alloc(ctx, out->len + 1)) == NULL) {
        return -1;
    }
    content_text(content, p);
    p[out->len] = '\0';
    out->data = p;
    return 0;
}


/* the non-empty texts of every message, joined by one space */
static int
all_text(const vmx_json_t *msgs, vmx_rules_str_t *out, vmx_json_alloc_pt alloc, void *ctx)
{
    size_t  len = 0, n = 0;
    char   *p = NULL;

    for (int pass = 0; pass < 2; pass++) {
        for (const vmx_json_t *m = msgs ? msgs->child : NULL; m != NULL; m = m->next) {
            const vmx_json_t  *c = vmx_json_get(m, "content");
            size_t             clen = has_text(c) ? content_text(c, NULL) : 0;

            if (clen == 0) {
                continue;
            }
            if (pass == 0) {
                len += clen + (n++ > 0);
                continue;
            }
            if (n++ > 0) {
                p[len++] = ' ';
            }
            len += content_text(c, p + len);
        }
        if (pass == 0) {
            if ((p = alloc(ctx, len + 1)) == NULL) {
                return -1;
            }
            len = n = 0;
        }
    }
    p[len] = '\0';
    out->data = p;
    out->len = len;
    return 0;
}


int
vmx_rules_input_init(vmx_rules_input_t *in, const vmx_json_t *body,
    vmx_json_alloc_pt alloc, void *alloc_ctx)
{
    const vmx_json_t  *msgs = vmx_json_get(body, "messages");
    const vmx_json_t  *tools = vmx_json_get(body, "tools");

    memset(in, 0, sizeof(vmx_rules_input_t));
    in->body = body;
    if (msgs != NULL && msgs->type != VMX_JSON_ARRAY) {
        msgs = NULL;
    }
    in->messages_count = msgs ? (int64_t) msgs->count : 0;
    in->tools_count = tools && tools->type == VMX_JSON_ARRAY ? (int64_t) tools->count : 0;
    if (in->messages_count > 0
        && (message_text(msgs->child, &in->first_message_content, alloc, alloc_ctx) != 0
            || message_text(vmx_json_at(msgs, msgs->count - 1), &in->last_message_content,
                            alloc, alloc_ctx) != 0))
    {
        return -1;
    }
    return all_text(msgs, &in->all_messages_content, alloc, alloc_ctx);
}
