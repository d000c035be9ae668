/*
 * vmx_anthropic: see vmx_anthropic.h.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmx_anthropic.h"


/* the turns of Anthropic's "messages": compared by address */
static const char  vmx_user[] = "user";
static const char  vmx_assistant[] = "assistant";

/* the message of an error without one */
static const char  vmx_provider_error[] = "provider error";


typedef struct {
    vmx_buf_t                  *buf;
    const char                 *turn;     /* the blocks of a turn of this
                                             role, or NULL: a plain list */
    size_t                      count;
} vmx_blocks_t;


typedef struct {
    const vmx_translate_ctx_t  *tc;
    vmx_translate_error_t      *err;
    vmx_buf_t                  *out;
    const char                 *turn;     /* role of the open turn, or NULL */
    vmx_buf_t                   system_buf;
    vmx_blocks_t                system;   /* joined after "messages" */
} vmx_request_t;


static int
vmx_is_count(const vmx_json_t *v)
{
    return v != NULL && v->type == VMX_JSON_NUMBER && v->is_int
           && v->integer >= 0;
}


/*
 * The request.
 */

/* err says why, param_fmt (with indexes) where: always -1 */
#define vmx_fail(r, ...)  vmx_translate_fail((r)->tc, (r)->err, __VA_ARGS__)


/* the buffer to write the next block of a list into, after its separator;
   a turn of another role than the open one closes it and opens its own */
static vmx_buf_t *
vmx_next_block(vmx_request_t *r, vmx_blocks_t *to)
{
    if (to->turn == NULL) {
        if (to->count++) {
            vmx_buf_append_cstr(to->buf, ",");
        }

        return to->buf;
    }

    if (r->turn == to->turn) {
        vmx_buf_append_cstr(r->out, ",");
        return r->out;
    }

    if (r->turn != NULL) {
        vmx_buf_append_cstr(r->out, "]},");
    }

    vmx_buf_append_cstr(r->out, "{\"role\":\"");
    vmx_buf_append_cstr(r->out, to->turn);
    vmx_buf_append_cstr(r->out, "\",\"content\":[");
    r->turn = to->turn;

    return r->out;
}


/* none for empty text: the API rejects empty text blocks */
static void
vmx_text_block(vmx_request_t *r, vmx_blocks_t *to, const vmx_json_t *text,
    const vmx_json_t *cache_control)
{
    vmx_buf_t  *b;

    if (text->str_len == 0) {
        return;
    }

    b = vmx_next_block(r, to);
    vmx_buf_append_cstr(b, "{\"type\":\"text\",\"text\":");
    vmx_buf_append_raw(b, text);

    if (cache_control != NULL && cache_control->type == VMX_JSON_OBJECT) {
        vmx_buf_append_cstr(b, ",\"cache_control\":");
        vmx_buf_append_raw(b, cache_control);
    }

    vmx_buf_append_cstr(b, "}");
}


/* "data:<media type>[;params];base64,<data>" as a base64 source */
static int
vmx_data_url_source(vmx_buf_t *b, const char *url, size_t len)
{
    const char  *media, *data;
    size_t       media_len, data_len;

    if (vmx_translate_data_url(url, len, &media, &media_len, &data, &data_len)
        != 0)
    {
        return -1;
    }

    vmx_buf_append_cstr(b, "{\"type\":\"base64\",\"media_type\":");
    vmx_buf_append_json_str(b, media, media_len);
    vmx_buf_append_cstr(b, ",\"data\":");
    vmx_buf_append_json_str(b, data, data_len);
    vmx_buf_append_cstr(b, "}");

    return 0;
}


static int
vmx_image_block(vmx_request_t *r, vmx_blocks_t *to, const vmx_json_t *part,
    size_t i, size_t j)
{
    const vmx_json_t  *url;
    vmx_buf_t         *b;

    url = vmx_translate_string(vmx_json_get(part, "image_url"), "url");
    if (url == NULL) {
        return vmx_fail(r, "an image_url part needs a string url",
                        "messages[%zu].content[%zu].image_url.url", i, j);
    }

    if (url->str_len >= 5 && strncasecmp(url->str, "data:", 5) == 0) {
        b = vmx_next_block(r, to);
        vmx_buf_append_cstr(b, "{\"type\":\"image\",\"source\":");

        if (vmx_data_url_source(b, url->str, url->str_len) != 0) {
            return vmx_fail(r, "image data URLs must be base64",
                            "messages[%zu].content[%zu].image_url.url", i, j);
        }

        vmx_buf_append_cstr(b, "}");
        return 0;
    }

    if (strncasecmp(url->str, "http://", 7) != 0
        && strncasecmp(url->str, "https://", 8) != 0)
    {
        return vmx_fail(r, "image URLs must be http(s) or base64 data URLs",
                        "messages[%zu].content[%zu].image_url.url", i, j);
    }

    b = vmx_next_block(r, to);
    vmx_buf_append_cstr(b, "{\"type\":\"image\",\"source\":{\"type\":\"url\","
                           "\"url\":");
    vmx_buf_append_raw(b, url);
    vmx_buf_append_cstr(b, "}}");

    return 0;
}


/* a message's content: null, a string, or text (and image_url) parts */
static int
vmx_content_blocks(vmx_request_t *r, vmx_blocks_t *to,
    const vmx_json_t *content, size_t i, int images)
{
    const vmx_json_t  *part, *type, *text;
    size_t             j;

    if (content == NULL || content->type == VMX_JSON_NULL) {
        return 0;
    }

    if (content->type == VMX_JSON_STRING) {
        vmx_text_block(r, to, content, NULL);
        return 0;
    }

    if (content->type != VMX_JSON_ARRAY) {
        return vmx_fail(r, "content must be a string or an array of parts",
                        "messages[%zu].content", i);
    }

    for (part = content->child, j = 0; part; part = part->next, j++) {
        type = vmx_json_get(part, "type");

        if (vmx_translate_is(type, "text")) {
            text = vmx_translate_string(part, "text");
            if (text == NULL) {
                return vmx_fail(r, "a text part needs a string text",
                                "messages[%zu].content[%zu].text", i, j);
            }

            vmx_text_block(r, to, text, vmx_json_get(part, "cache_control"));

        } else if (images && vmx_translate_is(type, "image_url")) {
            if (vmx_image_block(r, to, part, i, j) != 0) {
                return -1;
            }

        } else {
            return vmx_fail(r, "this content part type is not supported here",
                            "messages[%zu].content[%zu].type", i, j);
        }
    }

    return 0;
}


/* {"id","type":"function","function":{"name","arguments"}} as tool_use */
static int
vmx_tool_use_block(vmx_request_t *r, vmx_blocks_t *to, const vmx_json_t *call,
    size_t i, size_t j)
{
    const vmx_json_t  *id, *name, *input;
    vmx_buf_t         *b;

    if (vmx_translate_tool_call(r->tc, r->err, call, i, j, &id, &name, &input)
        != 0)
    {
        return -1;
    }

    b = vmx_next_block(r, to);
    vmx_buf_append_cstr(b, "{\"type\":\"tool_use\",\"id\":");
    vmx_buf_append_raw(b, id);
    vmx_buf_append_cstr(b, ",\"name\":");
    vmx_buf_append_raw(b, name);
    vmx_buf_append_cstr(b, ",\"input\":");

    if (input != NULL) {
        vmx_buf_append_raw(b, input);

    } else {
        vmx_buf_append_cstr(b, "{}");
    }

    vmx_buf_append_cstr(b, "}");

    return 0;
}


static int
vmx_assistant_message(vmx_request_t *r, const vmx_json_t *m,
    const vmx_json_t *content, size_t i)
{
    vmx_blocks_t       blocks = { r->out, vmx_assistant, 0 };
    const vmx_json_t  *calls, *call;
    size_t             j;

    if (vmx_content_blocks(r, &blocks, content, i, 0) != 0) {
        return -1;
    }

    calls = vmx_translate_member(m, "tool_calls");
    if (calls == NULL) {
        return 0;
    }

    if (calls->type != VMX_JSON_ARRAY) {
        return vmx_fail(r, "tool_calls must be an array",
                        "messages[%zu].tool_calls", i);
    }

    for (call = calls->child, j = 0; call; call = call->next, j++) {
        if (vmx_tool_use_block(r, &blocks, call, i, j) != 0) {
            return -1;
        }
    }

    return 0;
}


/* a "tool" message as a tool_result block of a user turn */
static int
vmx_tool_message(vmx_request_t *r, const vmx_json_t *m,
    const vmx_json_t *content, size_t i)
{
    vmx_blocks_t       blocks = { r->out, vmx_user, 0 }, inner;
    const vmx_json_t  *id;
    vmx_buf_t         *b;

    id = vmx_translate_string(m, "tool_call_id");
    if (id == NULL) {
        return vmx_fail(r, "a tool message needs a string tool_call_id",
                        "messages[%zu].tool_call_id", i);
    }

    b = vmx_next_block(r, &blocks);
    vmx_buf_append_cstr(b, "{\"type\":\"tool_result\",\"tool_use_id\":");
    vmx_buf_append_raw(b, id);

    if (content != NULL && content->type == VMX_JSON_STRING) {
        if (content->str_len) {
            vmx_buf_append_cstr(b, ",\"content\":");
            vmx_buf_append_raw(b, content);
        }

    } else if (content != NULL && content->type != VMX_JSON_NULL) {
        vmx_buf_append_cstr(b, ",\"content\":[");
        inner = (vmx_blocks_t) { b, NULL, 0 };

        if (vmx_content_blocks(r, &inner, content, i, 1) != 0) {
            return -1;
        }

        vmx_buf_append_cstr(b, "]");
    }

    vmx_buf_append_cstr(b, "}");

    return 0;
}


static int
vmx_message(vmx_request_t *r, const vmx_json_t *m, size_t i)
{
    vmx_blocks_t       blocks = { r->out, vmx_user, 0 };
    const vmx_json_t  *role, *content;

    role = vmx_json_get(m, "role");
    content = vmx_json_get(m, "content");

    if (vmx_translate_is(role, "user")) {
        return vmx_content_blocks(r, &blocks, content, i, 1);
    }

    if (vmx_translate_is(role, "assistant")) {
        return vmx_assistant_message(r, m, content, i);
    }

    if (vmx_translate_is(role, "tool")) {
        return vmx_tool_message(r, m, content, i);
    }

    if (vmx_translate_system_role(role)) {
        return vmx_content_blocks(r, &r->system, content, i, 0);
    }

    return vmx_fail(r, "the role must be system, developer, user, assistant "
                    "or tool", "messages[%zu].role", i);
}


static int
vmx_messages(vmx_request_t *r, const vmx_json_t *messages)
{
    const vmx_json_t  *m;
    size_t             i;

    vmx_buf_append_cstr(r->out, ",\"messages\":[");

    for (m = messages->child, i = 0; m; m = m->next, i++) {
        if (vmx_message(r, m, i) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, r->turn ? "]}]" : "]");

    if (r->system_buf.len) {
        vmx_buf_append_cstr(r->out, ",\"system\":[");
        vmx_buf_append(r->out, r->system_buf.data, r->system_buf.len);
        vmx_buf_append_cstr(r->out, "]");
    }

    return 0;
}


static int
vmx_max_tokens(vmx_request_t *r, const vmx_json_t *body)
{
    const vmx_json_t  *v;
    const char        *name = "max_completion_tokens";

    v = vmx_translate_member(body, name);
    if (v == NULL) {
        name = "max_tokens";
        v = vmx_translate_member(body, name);
    }

    vmx_buf_append_cstr(r->out, ",\"max_tokens\":");

    if (v == NULL) {
        vmx_buf_append_int(r->out, VMX_DEFAULT_MAX_TOKENS);
        return 0;
    }

    if (!vmx_is_count(v) || v->integer == 0) {
        return vmx_fail(r, "the token limit must be a positive integer",
                        "%s", name);
    }

    vmx_buf_append_int(r->out, v->integer);

    return 0;
}


static int
vmx_sampling(vmx_request_t *r, const vmx_json_t *body)
{
    static const char  *numbers[] = { "temperature", "top_p" };
    const vmx_json_t   *v, *s;
    size_t              k;

    for (k = 0; k < sizeof(numbers) / sizeof(numbers[0]); k++) {
        v = vmx_translate_member(body, numbers[k]);
        if (v == NULL) {
            continue;
        }

        if (v->type != VMX_JSON_NUMBER) {
            return vmx_fail(r, "must be a number", "%s", numbers[k]);
        }

        vmx_buf_append_cstr(r->out, ",\"");
        vmx_buf_append_cstr(r->out, numbers[k]);
        vmx_buf_append_cstr(r->out, "\":");
        vmx_buf_append_raw(r->out, v);
    }

    v = vmx_translate_member(body, "stop");

    if (v != NULL && v->type == VMX_JSON_ARRAY) {
        for (s = v->child; s; s = s->next) {
            if (s->type != VMX_JSON_STRING) {
                return vmx_fail(r, "stop must be a string or an array of "
                                "strings", "stop");
            }
        }

        if (v->count) {
            vmx_buf_append_cstr(r->out, ",\"stop_sequences\":");
            vmx_buf_append_raw(r->out, v);
        }

    } else if (v != NULL && v->type == VMX_JSON_STRING) {
        vmx_buf_append_cstr(r->out, ",\"stop_sequences\":[");
        vmx_buf_append_raw(r->out, v);
        vmx_buf_append_cstr(r->out, "]");

    } else if (v != NULL) {
        return vmx_fail(r, "stop must be a string or an array of strings",
                        "stop");
    }

    return 0;
}


/* {"type":"function","function":{name,description,parameters}} */
static int
vmx_tool(vmx_request_t *r, const vmx_json_t *tool, size_t j)
{
    const vmx_json_t  *fn, *name, *description, *parameters;

    fn = vmx_json_get(tool, "function");
    name = vmx_translate_string(fn, "name");
    description = vmx_translate_string(fn, "description");
    parameters = vmx_translate_member(fn, "parameters");

    if (!vmx_translate_is(vmx_json_get(tool, "type"), "function")
        || name == NULL)
    {
        return vmx_fail(r, "only function tools with a name are supported",
                        "tools[%zu]", j);
    }

    if (parameters != NULL && parameters->type != VMX_JSON_OBJECT) {
        return vmx_fail(r, "function parameters must be a JSON schema object",
                        "tools[%zu].function.parameters", j);
    }

    vmx_buf_append_cstr(r->out, j ? ",{\"name\":" : "{\"name\":");
    vmx_buf_append_raw(r->out, name);

    if (description != NULL) {
        vmx_buf_append_cstr(r->out, ",\"description\":");
        vmx_buf_append_raw(r->out, description);
    }

    /* required by Anthropic, optional in OpenAI: a function without any */
    vmx_buf_append_cstr(r->out, ",\"input_schema\":");

    if (parameters != NULL) {
        vmx_buf_append_raw(r->out, parameters);

    } else {
        vmx_buf_append_cstr(r->out, "{\"type\":\"object\",\"properties\":{}}");
    }

    vmx_buf_append_cstr(r->out, "}");

    return 0;
}


static int
vmx_tool_choice(vmx_request_t *r, const vmx_json_t *body)
{
    const vmx_json_t  *choice, *parallel, *name = NULL;
    const char        *type;
    int                serial;

    choice = vmx_translate_member(body, "tool_choice");
    parallel = vmx_translate_member(body, "parallel_tool_calls");
    serial = (parallel != NULL && parallel->type == VMX_JSON_FALSE);

    if (choice == NULL || vmx_translate_is(choice, "auto")) {
        type = "auto";

    } else if (vmx_translate_is(choice, "none")) {
        type = "none";

    } else if (vmx_translate_is(choice, "required")) {
        type = "any";

    } else if (vmx_translate_is(vmx_json_get(choice, "type"), "function")
               && (name = vmx_translate_string(vmx_json_get(choice, "function"),
                                            "name")) != NULL)
    {
        type = "tool";

    } else {
        return vmx_fail(r, "tool_choice must be auto, none, required or a "
                        "named function", "tool_choice");
    }

    if (choice == NULL && !serial) {
        return 0;
    }

    vmx_buf_append_cstr(r->out, ",\"tool_choice\":{\"type\":\"");
    vmx_buf_append_cstr(r->out, type);
    vmx_buf_append_cstr(r->out, "\"");

    if (name != NULL) {
        vmx_buf_append_cstr(r->out, ",\"name\":");
        vmx_buf_append_raw(r->out, name);
    }

    /* the API refuses the flag with "none" */
    if (serial && strcmp(type, "none") != 0) {
        vmx_buf_append_cstr(r->out, ",\"disable_parallel_tool_use\":true");
    }

    vmx_buf_append_cstr(r->out, "}");

    return 0;
}


static int
vmx_tools(vmx_request_t *r, const vmx_json_t *body)
{
    const vmx_json_t  *tools, *tool;
    size_t             j;

    tools = vmx_translate_member(body, "tools");
    if (tools == NULL) {
        return 0;
    }

    if (tools->type != VMX_JSON_ARRAY) {
        return vmx_fail(r, "tools must be an array", "tools");
    }

    if (tools->count == 0) {
        return 0;
    }

    vmx_buf_append_cstr(r->out, ",\"tools\":[");

    for (tool = tools->child, j = 0; tool; tool = tool->next, j++) {
        if (vmx_tool(r, tool, j) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, "]");

    return vmx_tool_choice(r, body);
}


int
vmx_anthropic_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err)
{
    vmx_request_t      r;
    const vmx_json_t  *body = tc->body, *messages, *user;

    r.tc = tc;
    r.err = err;
    r.out = out;
    r.turn = NULL;
    vmx_buf_init(&r.system_buf, tc->alloc, tc->alloc_ctx, 0);
    r.system = (vmx_blocks_t) { &r.system_buf, NULL, 0 };

    messages = vmx_json_get(body, "messages");
    if (messages == NULL || messages->type != VMX_JSON_ARRAY) {
        return vmx_fail(&r, "messages must be an array", "messages");
    }

    if (vmx_translate_refused(tc, err, body) != 0) {
        return -1;
    }

    vmx_buf_append_cstr(out, "{\"model\":");
    vmx_buf_append_json_str(out, tc->model, tc->model_len);

    if (vmx_max_tokens(&r, body) != 0
        || vmx_messages(&r, messages) != 0
        || vmx_sampling(&r, body) != 0
        || vmx_tools(&r, body) != 0)
    {
        return -1;
    }

    user = vmx_translate_string(body, "user");
    if (user != NULL) {
        vmx_buf_append_cstr(out, ",\"metadata\":{\"user_id\":");
        vmx_buf_append_raw(out, user);
        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, tc->stream ? ",\"stream\":true}" : "}");

    if (vmx_buf_failed(out) || vmx_buf_failed(&r.system_buf)) {
        err->message = "out of memory";
        err->param = NULL;
        return -1;
    }

    return 0;
}


/*
 * Usage, stop reasons and errors: shared by whole and streamed answers.
 */

static void
vmx_count_read(int64_t *count, const vmx_json_t *v)
{
    if (vmx_is_count(v)) {
        *count = v->integer;
    }
}


/* the counts an Anthropic "usage" object reports; the others stay */
static void
vmx_counts_read(vmx_anthropic_usage_t *c, const vmx_json_t *usage)
{
    vmx_count_read(&c->input_tokens, vmx_json_get(usage, "input_tokens"));
    vmx_count_read(&c->cache_read_input_tokens,
                   vmx_json_get(usage, "cache_read_input_tokens"));
    vmx_count_read(&c->cache_creation_input_tokens,
                   vmx_json_get(usage, "cache_creation_input_tokens"));
    vmx_count_read(&c->output_tokens, vmx_json_get(usage, "output_tokens"));

    /* a count left out of a usage object is 0 (the cache counts stay
       unknown: they are parts of the prompt's) */
    if (usage != NULL && usage->type == VMX_JSON_OBJECT) {
        c->input_tokens = c->input_tokens < 0 ? 0 : c->input_tokens;
        c->output_tokens = c->output_tokens < 0 ? 0 : c->output_tokens;
    }
}


/* a + b of counts that may be unknown (-1), saturating on hostile input */
static int64_t
vmx_sum(int64_t a, int64_t b)
{
    if (a < 0 || b < 0) {
        return a < 0 ? b : a;
    }

    return a > INT64_MAX - b ? INT64_MAX : a + b;
}


static void
vmx_counts_usage(const vmx_anthropic_usage_t *c, vmx_usage_t *usage)
{
    usage->prompt_tokens = vmx_sum(vmx_sum(c->input_tokens,
                                           c->cache_read_input_tokens),
                                   c->cache_creation_input_tokens);
    usage->completion_tokens = c->output_tokens;
    usage->total_tokens = vmx_sum(usage->prompt_tokens,
                                  usage->completion_tokens);
    usage->cached_tokens = c->cache_read_input_tokens;
    usage->cache_write_tokens = c->cache_creation_input_tokens;
}


static void
vmx_counts_init(vmx_anthropic_usage_t *c)
{
    c->input_tokens = -1;
    c->cache_read_input_tokens = -1;
    c->cache_creation_input_tokens = -1;
    c->output_tokens = -1;
}


static const char *
vmx_finish_reason(const vmx_json_t *stop_reason)
{
    if (vmx_translate_is(stop_reason, "max_tokens")
        || vmx_translate_is(stop_reason, "model_context_window_exceeded"))
    {
        return "length";
    }

    if (vmx_translate_is(stop_reason, "tool_use")) {
        return "tool_calls";
    }

    if (vmx_translate_is(stop_reason, "refusal")) {
        return "content_filter";
    }

    /* end_turn, stop_sequence, pause_turn */
    return "stop";
}


/* the HTTP status Anthropic documents for an error type */
static int
vmx_error_status(const char *type)
{
    static const vmx_type_status_t  statuses[] = {
        { "invalid_request_error", 400 },
        { "authentication_error", 401 },
        { "billing_error", 402 },
        { "permission_error", 403 },
        { "not_found_error", 404 },
        { "request_too_large", 413 },
        { "rate_limit_error", 429 },
        { "api_error", 500 },
        { "overloaded_error", 503 },        /* 529, counted as 503 */
        { "timeout_error", 504 },
    };
    return vmx_type_status(statuses, sizeof(statuses) / sizeof(statuses[0]),
                           type);
}


/* {"type":"error","error":{"type":..,"message":..}}: either may be NULL */
static void
vmx_error_fields(const vmx_json_t *root, const vmx_json_t **message,
    const char **type)
{
    const vmx_json_t  *error = vmx_json_get(root, "error");

    *message = vmx_translate_string(error, "message");
    *type = vmx_json_get_str(error, "type", NULL);
}


void
vmx_anthropic_error(const vmx_translate_ctx_t *tc, int status,
    const char *body, size_t len, vmx_buf_t *out)
{
    const vmx_json_t  *message;
    const char        *type;
    char               text[64];
    int                n;

    vmx_error_fields(vmx_translate_parse(tc, body, len), &message, &type);

    if (message != NULL) {
        vmx_openai_error(out, message->str, message->str_len,
                         vmx_openai_error_type(status), type, NULL);
        return;
    }

    n = snprintf(text, sizeof(text), "provider error (HTTP %d)", status);
    vmx_openai_error(out, text, (size_t) n, vmx_openai_error_type(status),
                     type, NULL);
}


/*
 * The whole answer.
 */

/* the text blocks joined as one JSON string (or null when there are tool
   calls only); returns the number of tool_use blocks, or -1 */
static int64_t
vmx_answer_text(vmx_buf_t *out, const vmx_json_t *content)
{
    const vmx_json_t  *block, *type, *text;
    int64_t            texts = 0, tools = 0;

    for (block = content->child; block; block = block->next) {
        type = vmx_json_get(block, "type");

        if (vmx_translate_is(type, "tool_use")) {
            tools++;
            continue;
        }

        if (!vmx_translate_is(type, "text")) {
            continue;
        }

        text = vmx_translate_string(block, "text");
        if (text == NULL) {
            return -1;
        }

        if (texts++ == 0) {
            vmx_buf_append_cstr(out, "\"");
        }

        /* the inside of each escaped string: no escape spans two */
        vmx_buf_append(out, text->raw + 1, text->raw_len - 2);
    }

    vmx_buf_append_cstr(out, texts ? "\"" : (tools ? "null" : "\"\""));

    return tools;
}


static int
vmx_answer_tool_calls(vmx_buf_t *out, const vmx_json_t *content)
{
    const vmx_json_t  *block, *id, *name, *input;
    int                first = 1;

    vmx_buf_append_cstr(out, ",\"tool_calls\":[");

    for (block = content->child; block; block = block->next) {
        if (!vmx_translate_is(vmx_json_get(block, "type"), "tool_use")) {
            continue;
        }

        id = vmx_translate_string(block, "id");
        name = vmx_translate_string(block, "name");
        input = vmx_translate_member(block, "input");

        if (id == NULL || name == NULL) {
            return -1;
        }

        vmx_openai_tool_call(out, first, id, name, input);
        first = 0;
    }

    vmx_buf_append_cstr(out, "]");

    return 0;
}


int
vmx_anthropic_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage)
{
    const vmx_json_t       *msg, *content, *message;
    const char             *type;
    vmx_anthropic_usage_t   counts;
    int64_t                 tools;
    int                     status;

    msg = vmx_translate_parse(tc, body, len);
    if (msg == NULL || msg->type != VMX_JSON_OBJECT) {
        return -1;
    }

    if (vmx_translate_is(vmx_json_get(msg, "type"), "error")) {
        vmx_error_fields(msg, &message, &type);
        status = vmx_error_status(type);
        vmx_openai_error(out, message ? message->str : vmx_provider_error,
                         message ? message->str_len
                                 : sizeof(vmx_provider_error) - 1,
                         vmx_openai_error_type(status), type, NULL);
        return status;
    }

    content = vmx_json_get(msg, "content");
    if (content == NULL || content->type != VMX_JSON_ARRAY) {
        return -1;
    }

    vmx_openai_message_open(tc, out);

    tools = vmx_answer_text(out, content);
    if (tools < 0) {
        return -1;
    }

    vmx_buf_append_cstr(out, ",\"refusal\":null,\"annotations\":[]");

    if (tools > 0 && vmx_answer_tool_calls(out, content) != 0) {
        return -1;
    }

    vmx_openai_message_close(out,
        vmx_finish_reason(vmx_json_get(msg, "stop_reason")));

    vmx_counts_init(&counts);
    vmx_counts_read(&counts, vmx_json_get(msg, "usage"));
    vmx_counts_usage(&counts, usage);
    vmx_openai_usage(out, usage);

    vmx_buf_append_cstr(out, "}");

    return vmx_buf_failed(out) ? -1 : 0;
}


/*
 * The stream.
 */

void
vmx_anthropic_stream_init(vmx_anthropic_stream_t *s,
    const vmx_translate_ctx_t *tc)
{
    memset(s, 0, sizeof(*s));
    s->tc = tc;
    vmx_counts_init(&s->counts);
    s->tool_block = -1;
}


/* the first chunk, before anything else even when message_start is late */
static void
vmx_stream_start(vmx_anthropic_stream_t *s, vmx_buf_t *out)
{
    if (s->started) {
        return;
    }

    s->started = 1;
    vmx_openai_role_chunk(s->tc, out);
}


static void
vmx_stream_text(vmx_anthropic_stream_t *s, vmx_buf_t *out,
    const vmx_json_t *text)
{
    if (text->str_len == 0) {
        return;
    }

    vmx_stream_start(s, out);
    vmx_openai_content_chunk(s->tc, out, text);
}


static void
vmx_stream_finish(vmx_anthropic_stream_t *s, vmx_buf_t *out,
    const char *finish_reason)
{
    vmx_stream_start(s, out);
    vmx_openai_delta_open(s->tc, out);
    vmx_openai_delta_close(out, finish_reason);
    s->finished = 1;
}


/* a tool_use block opens a tool call: its id and name, empty arguments */
static int
vmx_on_block_start(vmx_anthropic_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *block, *index, *id, *name, *text;

    block = vmx_json_get(event, "content_block");

    if (vmx_translate_is(vmx_json_get(block, "type"), "text")) {
        text = vmx_translate_string(block, "text");
        if (text != NULL) {
            vmx_stream_text(s, out, text);
        }

        return 0;
    }

    if (!vmx_translate_is(vmx_json_get(block, "type"), "tool_use")) {
        return 0;
    }

    index = vmx_json_get(event, "index");
    id = vmx_translate_string(block, "id");
    name = vmx_translate_string(block, "name");

    if (!vmx_is_count(index) || id == NULL || name == NULL) {
        return -1;
    }

    vmx_stream_start(s, out);
    s->tool_block = index->integer;

    vmx_openai_tool_call_chunk(s->tc, out, s->tool_calls++, id, name);

    return 0;
}


/* text, and the arguments of the open tool call; thinking is skipped */
static int
vmx_on_block_delta(vmx_anthropic_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *delta, *type, *text, *json, *index;

    delta = vmx_json_get(event, "delta");
    type = vmx_json_get(delta, "type");

    if (vmx_translate_is(type, "text_delta")) {
        text = vmx_translate_string(delta, "text");
        if (text == NULL) {
            return -1;
        }

        vmx_stream_text(s, out, text);
        return 0;
    }

    if (!vmx_translate_is(type, "input_json_delta")) {
        return 0;
    }

    json = vmx_translate_string(delta, "partial_json");
    index = vmx_json_get(event, "index");

    if (json == NULL) {
        return -1;
    }

    /* a server tool's input, or the empty first piece: nothing to say */
    if (!vmx_is_count(index) || index->integer != s->tool_block
        || json->str_len == 0)
    {
        return 0;
    }

    vmx_openai_arguments_chunk(s->tc, out, s->tool_calls - 1, json);

    return 0;
}


static void
vmx_on_block_stop(vmx_anthropic_stream_t *s, const vmx_json_t *event)
{
    const vmx_json_t  *index = vmx_json_get(event, "index");

    if (vmx_is_count(index) && index->integer == s->tool_block) {
        s->tool_block = -1;
    }
}


static void
vmx_on_message_delta(vmx_anthropic_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *reason;

    vmx_counts_read(&s->counts, vmx_json_get(event, "usage"));

    reason = vmx_translate_string(vmx_json_get(event, "delta"), "stop_reason");

    if (reason != NULL && !s->finished) {
        vmx_stream_finish(s, out, vmx_finish_reason(reason));
    }
}


static void
vmx_on_message_stop(vmx_anthropic_stream_t *s, vmx_buf_t *out)
{
    vmx_usage_t  usage;

    if (!s->finished) {
        vmx_stream_finish(s, out, "stop");
    }

    if (s->tc->include_usage) {
        vmx_counts_usage(&s->counts, &usage);
        vmx_openai_usage_chunk(s->tc, out, &usage);
    }

    vmx_openai_done(out);
    s->done = 1;
}


/* an error event ends the stream; its data may even be unreadable */
static void
vmx_on_error(vmx_anthropic_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *message;
    const char        *type;

    vmx_error_fields(event, &message, &type);
    vmx_stream_fail(s->tc->alloc, s->tc->alloc_ctx, &s->error, out,
                    vmx_error_status(type),
                    message ? message->str : vmx_provider_error,
                    message ? message->str_len
                            : sizeof(vmx_provider_error) - 1,
                    type);
    s->done = 1;
}


int
vmx_anthropic_stream_event(vmx_anthropic_stream_t *s, const char *event,
    size_t event_len, const char *data, size_t data_len, vmx_buf_t *out,
    vmx_usage_t *usage)
{
    const vmx_json_t  *root, *type;
    int                rc = 0;

    if (s->done || vmx_translate_named(event, event_len, "ping")) {
        return 0;
    }

    root = vmx_translate_parse(s->tc, data, data_len);

    if (event_len == 0) {
        type = vmx_translate_string(root, "type");
        if (type == NULL) {
            return -1;
        }

        event = type->str;
        event_len = type->str_len;
    }

    if (vmx_translate_named(event, event_len, "error")) {
        vmx_on_error(s, root, out);

    } else if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return -1;

    } else if (vmx_translate_named(event, event_len, "message_start")) {
        vmx_counts_read(&s->counts,
                        vmx_json_get(vmx_json_get(root, "message"), "usage"));
        vmx_stream_start(s, out);

    } else if (vmx_translate_named(event, event_len, "content_block_start")) {
        rc = vmx_on_block_start(s, root, out);

    } else if (vmx_translate_named(event, event_len, "content_block_delta")) {
        rc = vmx_on_block_delta(s, root, out);

    } else if (vmx_translate_named(event, event_len, "content_block_stop")) {
        vmx_on_block_stop(s, root);

    } else if (vmx_translate_named(event, event_len, "message_delta")) {
        vmx_on_message_delta(s, root, out);

    } else if (vmx_translate_named(event, event_len, "message_stop")) {
        vmx_on_message_stop(s, out);
    }

    vmx_counts_usage(&s->counts, usage);

    return rc;
}
