/*
 * vmx_rules: the routing rules of an AI resource (SPEC §4), compiled once
 * when the configuration changes and evaluated per request without parsing
 * or allocation.
 *
 * A resource's `routing` is {enabled, conditions: [group...]}.
 *
 *   group      {type: "group", id, description, enabled, operator: AND|OR,
 *               conditions: [condition|group...], mode: UI|ADVANCED,
 *               expression, action: CALL_MODEL|BLOCK,
 *               then: {provider, model, connectionId, traffic?}}
 *   condition  {type: "condition", id, label, expression, comparator,
 *               value: {type, expression}}
 *
 * Groups are tried in order and the first that matches wins.  A group in
 * UI mode combines its conditions with its operator (an empty AND matches,
 * an empty OR does not); a disabled group is skipped, nested or not (a
 * disabled nested group counts as absent from its parent).  A group in
 * ADVANCED mode matches when its `expression` is true; its conditions are
 * not used.  Items of `conditions` without `type` are groups when they have
 * `conditions`, else conditions (as the original product decides).
 * Defaults: enabled true, mode UI, operator AND, action CALL_MODEL.
 * Only top-level groups have an action; a matching BLOCK group blocks the
 * request whatever its `then` says.  A CALL_MODEL group without `then`
 * ends the search and keeps the primary model.  `then.traffic` (0 to 100,
 * absent or null meaning 100) is the share of matching requests the group
 * takes; the rest goes on to the next group.
 *
 * Condition: `expression` is an operand in the expression language below,
 * usually a variable ("tokens.input", "request.allMessagesContent.length")
 * or a call ("errorRate(5)"); EJS-style wrappers of the original product
 * ("<%= x %>", "<% return x %>") are accepted around it.  The value's
 * `expression` is a literal of `value.type`, parsed at compile time:
 *
 *   string                text as is (IN and NOT_IN split it as a list)
 *   number                a JSON number
 *   boolean               true or false (any case)
 *   comma-delimited-list  items split at ",", trimmed, empty ones dropped
 *   json-object           JSON text of an object (or the object itself)
 *   json-array            JSON text of an array (or the array itself)
 *
 * and each comparator means:
 *
 *   EQUAL, NOT_EQUAL        equality as `==` below; lists: equals any item
 *                           (NOT_EQUAL: none); json values: structurally
 *   GREATER_THAN ...        ordering as `<` below (not for lists, json,
 *   LESS_THAN_OR_EQUAL      booleans: a compile error)
 *   CONTAINS, NOT_CONTAINS  containment below; lists: contains any item
 *   STARTS_WITH, ENDS_WITH  text prefix or suffix; lists: any item
 *   PATTERN                 the value's text is a PCRE2 regex searched in
 *                           the text (unanchored, case-sensitive, UTF);
 *                           an invalid regex is a compile error
 *   IN, NOT_IN              equals one (none) of the list's items; a
 *                           json-array's elements compare structurally
 *   EXISTS                  the variable is present; the value is ignored
 *
 * SEMANTICS (conditions and expressions alike)
 *
 *   Missing: a variable that is absent, or JSON null, is missing.  Every
 *   comparison with a missing operand is false, the negative ones
 *   (NOT_EQUAL, NOT_CONTAINS, NOT_IN, `!=`) included, so a rule never
 *   fires on data the request lacks.  Only EXISTS, exists() and comparisons
 *   with the literal null (`x == null`: missing) test for absence.
 *   Equality: numbers by value; a number and a string are equal when the
 *   string is a number of that value ("100" == 100); a boolean and a string
 *   when the string is "true"/"false"; strings byte for byte, so
 *   case-sensitive as the original (lower() is there for the rest); arrays
 *   and objects structurally (member order aside).
 *   Ordering: numeric when one side is a number and the other one is or
 *   reads as one, else strings byte-wise (UTF-8 order), else false.
 *   Containment: text in text (case-sensitive); in an array, an element
 *   equal to the item (an array item: every element of it; an object item:
 *   an element containing it); in an object, a member named by a string
 *   item, or for an object item every member of it, recursively (as
 *   PostgreSQL's jsonb @>).  Numbers and booleans read as their JSON text.
 *   Truth (ADVANCED results, &&, ||, !): missing and null are false,
 *   booleans are themselves, numbers are true when not 0, strings when not
 *   empty, arrays and objects are true.
 *   Length (`.length`, len()): characters (Unicode code points) of a
 *   string, elements of an array, members of an object.
 *
 * VARIABLES
 *
 *   tokens.input                 input tokens counted by the caller
 *   request.messagesCount        messages in the body (0 when none)
 *   request.toolsCount           tools in the body (0 when none)
 *   request.firstMessage.content text of the first message (see
 *   request.lastMessage.content  vmx_rules_input_init for the flattening)
 *   request.allMessagesContent   texts of every message, joined by " "
 *   request.firstMessage.<path>  the first (last) message's members
 *   request.lastMessage.<path>
 *   request.<path>               any member of the body: request.model,
 *                                request.messages[0].role, request.tools[-1]
 *                                (negative indexes count from the end),
 *                                request.metadata["cost-center"]
 *   apiKey.id, apiKey.labels, apiKey.labels.<name>
 *   sourceIp
 *
 * A path may end in `.length`.  Any other first name is a compile error.
 *
 * EXPRESSION LANGUAGE (ADVANCED groups and condition operands), EBNF:
 *
 *   expression = or ;
 *   or         = and { "||" and } ;
 *   and        = compare { "&&" compare } ;
 *   compare    = unary [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) unary
 *                      | "matches" ( regex | string )
 *                      | "in" list ] ;          (comparisons do not chain)
 *   unary      = ( "!" | "-" | "await" ) unary | primary ;
 *   primary    = number | string | "true" | "false" | "null"
 *              | name "(" [ expression { "," expression } ] ")"
 *              | path | "(" expression ")" ;
 *   path       = name { "." name | "[" ( integer | string ) "]" } ;
 *   list       = "[" [ literal { "," literal } ] "]" ;
 *   literal    = [ "-" ] number | string | "true" | "false" | "null" ;
 *   number     = digit { digit } [ "." digit { digit } ]
 *                [ ( "e" | "E" ) [ "+" | "-" ] digit { digit } ] ;
 *   string     = '"' { char | escape } '"' | "'" { char | escape } "'" ;
 *   escape     = "\" ( '"' | "'" | "\" | "/" | "b" | "f" | "n" | "r" | "t"
 *                    | "u" hex hex hex hex ) ;
 *   regex      = "/" { char | "\" char | "[" class "]" } "/" { flag } ;
 *   flag       = "i" | "m" | "s" | "x" | "u" | "g" ;   (u, g: accepted, no-ops)
 *   name       = ( letter | "_" | "$" ) { letter | digit | "_" | "$" } ;
 *
 * "===" and "!==" are read as "==" and "!=".  Functions (arity checked at
 * compile time):
 *
 *   errorRate(minutes[, status])  failed attempts of the primary connection
 *                                 and model, in percent; minutes an integer
 *                                 literal 1..60, status an integer literal
 *                                 100..599 or "any" (the default)
 *   len(x)                        as `.length`
 *   lower(x), upper(x)            ASCII case mapping of a text
 *   contains(a, b), startsWith(a, b), endsWith(a, b), exists(x)
 *
 * Example: tokens.input > 4000 && !(apiKey.labels.tier in ["gold", "vip"])
 *          || request.lastMessage.content matches /\bSQL\b/i
 *
 * MEMORY
 *
 * The program is taken from the caller's allocator (nothing is freed one by
 * one); compiled regexes also hold JIT code, which vmx_rules_free()
 * releases.  The program is immutable: evaluations may run concurrently.
 * An evaluation allocates only from the scratch of its input: lower() and
 * upper() results and PCRE2 match data.  When the scratch runs out, the
 * comparison that needed it is false.
 */

#ifndef VMX_RULES_H
#define VMX_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "vmx_json.h"


/* a scratch of this size serves rules whose lower()/upper() texts are
 * small; add the length of the texts they map */
#define VMX_RULES_SCRATCH_MIN   4096

#define VMX_RULES_PATH_MAX      256


typedef struct vmx_rules_s  vmx_rules_t;


typedef struct {
    const char          *data;      /* NUL-terminated; NULL for absent */
    size_t               len;
} vmx_rules_str_t;


typedef struct {
    vmx_rules_str_t      provider;
    vmx_rules_str_t      model;
    vmx_rules_str_t      connection_id;
    const void          *data;      /* the caller's: vmx_rules_target_next() */
} vmx_rules_target_t;


typedef struct {
    /* JSON path of the offending member, relative to `routing`:
     * "conditions[1].conditions[0].value.expression"; "" for the whole */
    char                 path[VMX_RULES_PATH_MAX];

    /* for an error inside an expression, a regex or a JSON value: offset in
     * characters (Unicode code points) from the start of that string;
     * -1 otherwise */
    long                 position;

    char                 message[256];
} vmx_rules_error_t;


/*
 * Compiles a parsed `routing` object.  The program copies what it needs:
 * routing may be freed afterwards.  Returns NULL and fills err on an
 * invalid routing, or when alloc returns NULL ("out of memory").  Disabled
 * groups and a disabled routing are compiled too, so a configuration that
 * is saved is one that runs once enabled.
 */
vmx_rules_t *vmx_rules_compile(const vmx_json_t *routing,
    vmx_json_alloc_pt alloc, void *alloc_ctx, vmx_rules_error_t *err);

/* the same from JSON text; a syntax error has path "" and its position */
vmx_rules_t *vmx_rules_compile_text(const char *text, size_t len,
    vmx_json_alloc_pt alloc, void *alloc_ctx, vmx_rules_error_t *err);

/* releases the regexes' JIT code; the memory stays with the allocator */
void vmx_rules_free(vmx_rules_t *rules);

/* routing.enabled and at least one group */
int vmx_rules_active(const vmx_rules_t *rules);

/*
 * The CALL_MODEL targets in turn, for the caller to attach its data to
 * (e.g. the model's prices): *cursor starts at 0; NULL after the last.
 */
vmx_rules_target_t *vmx_rules_target_next(vmx_rules_t *rules,
    size_t *cursor);


/* errorRate(minutes, status): percent 0..100 of failed attempts, status 0
 * meaning any; a negative answer means unknown (the variable is missing) */
typedef double (*vmx_rules_error_rate_pt)(void *ctx, unsigned minutes,
    unsigned status);

/* uniformly distributed over 0..UINT32_MAX */
typedef uint32_t (*vmx_rules_random_pt)(void *ctx);

/* a vmx_rules_random_pt drawing from random(3), nginx's ngx_random(), which
   gives 31 bits a call; the caller seeds it */
uint32_t vmx_rules_random(void *ctx);


typedef struct {
    const vmx_json_t          *body;        /* the parsed request body */

    int64_t                    messages_count;
    int64_t                    tools_count;
    vmx_rules_str_t            first_message_content;
    vmx_rules_str_t            last_message_content;
    vmx_rules_str_t            all_messages_content;

    int64_t                    tokens_input;

    vmx_rules_str_t            api_key_id;
    const vmx_json_t          *api_key_labels;    /* an object, or NULL */
    vmx_rules_str_t            source_ip;

    vmx_rules_error_rate_pt    error_rate;        /* NULL: missing */
    void                      *error_rate_ctx;

    /* traffic splits; NULL counts every request inside the share */
    vmx_rules_random_pt        random;
    void                      *random_ctx;

    void                      *scratch;
    size_t                     scratch_size;

    /* the resource's own model, reported as the result's original */
    const vmx_rules_target_t  *primary;
} vmx_rules_input_t;


typedef enum {
    VMX_RULES_CALL_MODEL = 0,
    VMX_RULES_BLOCK
} vmx_rules_action_e;


typedef struct {
    int                        matched;
    vmx_rules_action_e         action;

    size_t                     group_index;    /* in routing.conditions */
    vmx_rules_str_t            group_id;       /* "" when it had none */
    vmx_rules_str_t            description;

    /* CALL_MODEL: the group's then, or NULL to stay on the primary */
    const vmx_rules_target_t  *target;

    /* the routing event: original (input's primary) and routed model */
    const vmx_rules_target_t  *original;

    /* groups that matched but whose traffic share let the request pass */
    unsigned                   traffic_passed;
} vmx_rules_result_t;


/*
 * Fills in from a chat completion body: body, counts, and the message
 * texts, zeroing every other field.  A message's text is its `content`
 * when that is a string; when it is an array, the `text` members of its
 * parts (strings only), joined by one space; when it is absent or null,
 * the message has no text (first/last content are missing).
 * allMessagesContent joins the texts of the messages that have one by one
 * space.  The texts are allocated from alloc; returns -1 when it fails.
 */
int vmx_rules_input_init(vmx_rules_input_t *in, const vmx_json_t *body,
    vmx_json_alloc_pt alloc, void *alloc_ctx);

/*
 * Tries the groups in order; returns 1 and fills out when one matched (to
 * call a model or to block), 0 when none did or the routing is inactive.
 */
int vmx_rules_eval(const vmx_rules_t *rules, const vmx_rules_input_t *in,
    vmx_rules_result_t *out);


/*
 * TRACE (the control plane's routing test bench)
 *
 * vmx_rules_eval_trace() is vmx_rules_eval() recording what it saw: each
 * group, and each of its conditions with the value of its left operand and
 * its result.  Decisions are those of vmx_rules_eval(), which is the same
 * function with no trace.  To show every value, a traced evaluation does
 * not stop early: the conditions after a decided AND or OR, and the groups
 * after the winner, are evaluated too (rules have no side effects; no
 * traffic draw is made for a group after the winner).
 *
 * Recorded conditions: each condition of a UI group and each nested group
 * (is_group, no value), at any depth, in document order; in an ADVANCED
 * expression each comparison, `matches`, `in` and test function
 * (contains(), startsWith(), endsWith(), exists()), with its source text
 * and position.  The caller gives the arrays; what does not fit is left
 * out and flagged in truncated.
 */

#define VMX_RULES_TRACE_TEXT    256     /* bytes of a value's text kept */


typedef enum {
    VMX_RULES_VALUE_MISSING = 0,        /* absent, or JSON null */
    VMX_RULES_VALUE_NULL,               /* the literal null */
    VMX_RULES_VALUE_BOOL,
    VMX_RULES_VALUE_NUMBER,
    VMX_RULES_VALUE_STRING,
    VMX_RULES_VALUE_JSON                /* an array or an object */
} vmx_rules_value_e;


typedef struct {
    size_t                     group;      /* index in routing.conditions */

    /* from routing: "conditions[0].conditions[1]" for a UI condition or
     * nested group, "conditions[2].expression" in an ADVANCED expression */
    vmx_rules_str_t            path;

    /* a UI condition's expression (its left operand), "" for a nested
     * group; in an ADVANCED expression the comparison's text, from
     * position (characters) on */
    vmx_rules_str_t            text;
    long                       position;   /* -1 outside an expression */

    unsigned                   is_group:1;
    unsigned                   result:1;
    unsigned                   truncated:1;    /* value cut at the bound */

    /* the left operand: kind, and text (a string's, a number's or JSON
     * text, UTF-8 cut at a character); num for a number, bool as 0/1 */
    vmx_rules_value_e          kind;
    double                     num;
    size_t                     value_len;
    char                       value[VMX_RULES_TRACE_TEXT];
} vmx_rules_trace_cond_t;


typedef struct {
    vmx_rules_str_t            id;
    vmx_rules_str_t            description;
    vmx_rules_action_e         action;
    const vmx_rules_target_t  *then;       /* NULL: none, or BLOCK */

    unsigned                   enabled:1;
    unsigned                   matched:1;  /* its conditions hold */
    unsigned                   chosen:1;   /* it decided the request */
    unsigned                   drawn:1;    /* a traffic draw was made */
    unsigned                   taken:1;    /* the draw fell in its share */

    double                     traffic;    /* then.traffic, 100 when absent */
    uint32_t                   draw;

    size_t                     first;      /* its conditions in conds */
    size_t                     nconds;
} vmx_rules_trace_group_t;


typedef struct {
    vmx_rules_trace_group_t   *groups;
    size_t                     groups_max;
    size_t                     ngroups;

    vmx_rules_trace_cond_t    *conds;
    size_t                     conds_max;
    size_t                     nconds;

    unsigned                   truncated:1;
} vmx_rules_trace_t;


/* trace NULL: vmx_rules_eval(); else ngroups, nconds and truncated are
 * reset and filled */
int vmx_rules_eval_trace(const vmx_rules_t *rules, const vmx_rules_input_t *in,
    vmx_rules_result_t *out, vmx_rules_trace_t *trace);

#endif /* VMX_RULES_H */
