/*
 * vmx_bedrock: see vmx_bedrock.h.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmx_bedrock.h"
#include "vmx_sigv4.h"


/* the roles of Converse turns: compared by address */
static const char  vmx_br_user[] = "user";
static const char  vmx_br_assistant[] = "assistant";

/* the message of an error without one */
static const char  vmx_br_provider_error[] = "provider error";


typedef struct {
    const vmx_translate_ctx_t  *tc;
    vmx_translate_error_t      *err;
    vmx_buf_t                  *out;
    const char                 *turn;       /* role of the open turn, or
                                               NULL */
    size_t                      blocks;     /* "system" blocks written */
} vmx_br_request_t;


void
vmx_bedrock_path(vmx_buf_t *out, const char *model, size_t model_len,
    int stream)
{
    vmx_buf_append_cstr(out, "/model/");
    vmx_sigv4_uri_encode(out, model, model_len, 0);
    vmx_buf_append_cstr(out, stream ? "/converse-stream" : "/converse");
}


/*
 * The request.
 */

/* err says why, param_fmt (with indexes) where: always -1 */
#define vmx_br_fail(r, ...)                                                   \
    vmx_translate_fail((r)->tc, (r)->err, __VA_ARGS__)


/* the separator of the next block: in a turn of role, opened when the
   open one has another role; role NULL: the "system" list, opened with
   its first block */
static void
vmx_br_next_block(vmx_br_request_t *r, const char *role)
{
    if (role == NULL) {
        vmx_buf_append_cstr(r->out, r->blocks++ ? "," : ",\"system\":[");
        return;
    }

    if (r->turn == role) {
        vmx_buf_append_cstr(r->out, ",");
        return;
    }

    if (r->turn != NULL) {
        vmx_buf_append_cstr(r->out, "]},");
    }

    vmx_buf_append_cstr(r->out, "{\"role\":\"");
    vmx_buf_append_cstr(r->out, role);
    vmx_buf_append_cstr(r->out, "\",\"content\":[");
    r->turn = role;
}


/* none for empty text: Converse rejects blank text blocks */
static void
vmx_br_text_block(vmx_br_request_t *r, const char *role,
    const vmx_json_t *text)
{
    if (text->str_len == 0) {
        return;
    }

    vmx_br_next_block(r, role);
    vmx_buf_append_cstr(r->out, "{\"text\":");
    vmx_buf_append_raw(r->out, text);
    vmx_buf_append_cstr(r->out, "}");
}


/* Converse's image format of a media type, or NULL */
static const char *
vmx_br_image_format(const char *type, size_t len)
{
    static const char  *formats[][2] = {
        { "image/png", "png" }, { "image/jpeg", "jpeg" },
        { "image/jpg", "jpeg" }, { "image/gif", "gif" },
        { "image/webp", "webp" },
    };
    size_t  i;

    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        if (strlen(formats[i][0]) == len
            && strncasecmp(formats[i][0], type, len) == 0)
        {
            return formats[i][1];
        }
    }

    return NULL;
}


/* "data:<media type>[;params];base64,<data>" as an image block */
static int
vmx_br_image_block(vmx_br_request_t *r, const vmx_json_t *part, size_t i,
    size_t j)
{
    const vmx_json_t  *url;
    const char        *media, *data, *format;
    size_t             media_len, data_len;

    url = vmx_translate_string(vmx_json_get(part, "image_url"), "url");
    if (url == NULL) {
        return vmx_br_fail(r, "an image_url part needs a string url",
                           "messages[%zu].content[%zu].image_url.url", i, j);
    }

    if (url->str_len < 5 || strncasecmp(url->str, "data:", 5) != 0) {
        return vmx_br_fail(r, "this model takes images as base64 data URLs "
                           "only", "messages[%zu].content[%zu].image_url.url",
                           i, j);
    }

    if (vmx_translate_data_url(url->str, url->str_len, &media, &media_len,
                               &data, &data_len) != 0)
    {
        return vmx_br_fail(r, "image data URLs must be base64",
                           "messages[%zu].content[%zu].image_url.url", i, j);
    }

    format = vmx_br_image_format(media, media_len);
    if (format == NULL) {
        return vmx_br_fail(r, "images must be PNG, JPEG, GIF or WebP",
                           "messages[%zu].content[%zu].image_url.url", i, j);
    }

    vmx_br_next_block(r, vmx_br_user);
    vmx_buf_append_cstr(r->out, "{\"image\":{\"format\":\"");
    vmx_buf_append_cstr(r->out, format);
    vmx_buf_append_cstr(r->out, "\",\"source\":{\"bytes\":");
    vmx_buf_append_json_str(r->out, data, data_len);
    vmx_buf_append_cstr(r->out, "}}}");

    return 0;
}


/* a message's content: null, a string, or text (and image_url) parts */
static int
vmx_br_content(vmx_br_request_t *r, const char *role,
    const vmx_json_t *content, size_t i)
{
    const vmx_json_t  *part, *type, *text;
    size_t             j;

    if (content == NULL || content->type == VMX_JSON_NULL) {
        return 0;
    }

    if (content->type == VMX_JSON_STRING) {
        vmx_br_text_block(r, role, content);
        return 0;
    }

    if (content->type != VMX_JSON_ARRAY) {
        return vmx_br_fail(r, "content must be a string or an array of parts",
                           "messages[%zu].content", i);
    }

    for (part = content->child, j = 0; part; part = part->next, j++) {
        type = vmx_json_get(part, "type");

        if (vmx_translate_is(type, "text")) {
            text = vmx_translate_string(part, "text");
            if (text == NULL) {
                return vmx_br_fail(r, "a text part needs a string text",
                                   "messages[%zu].content[%zu].text", i, j);
            }

            vmx_br_text_block(r, role, text);

        } else if (role == vmx_br_user && vmx_translate_is(type, "image_url")) {
            if (vmx_br_image_block(r, part, i, j) != 0) {
                return -1;
            }

        } else {
            return vmx_br_fail(r, "this content part type is not supported "
                               "here", "messages[%zu].content[%zu].type",
                               i, j);
        }
    }

    return 0;
}


/* {"id","type":"function","function":{"name","arguments"}} as toolUse */
static int
vmx_br_tool_use(vmx_br_request_t *r, const vmx_json_t *call, size_t i,
    size_t j)
{
    const vmx_json_t  *id, *name, *input;

    if (vmx_translate_tool_call(r->tc, r->err, call, i, j, &id, &name, &input)
        != 0)
    {
        return -1;
    }

    vmx_br_next_block(r, vmx_br_assistant);
    vmx_buf_append_cstr(r->out, "{\"toolUse\":{\"toolUseId\":");
    vmx_buf_append_raw(r->out, id);
    vmx_buf_append_cstr(r->out, ",\"name\":");
    vmx_buf_append_raw(r->out, name);
    vmx_buf_append_cstr(r->out, ",\"input\":");

    if (input != NULL) {
        vmx_buf_append_raw(r->out, input);

    } else {
        vmx_buf_append_cstr(r->out, "{}");
    }

    vmx_buf_append_cstr(r->out, "}}");

    return 0;
}


static int
vmx_br_assistant_message(vmx_br_request_t *r, const vmx_json_t *m, size_t i)
{
    const vmx_json_t  *calls, *call;
    size_t             j;

    if (vmx_br_content(r, vmx_br_assistant, vmx_json_get(m, "content"), i)
        != 0)
    {
        return -1;
    }

    calls = vmx_translate_member(m, "tool_calls");
    if (calls == NULL) {
        return 0;
    }

    if (calls->type != VMX_JSON_ARRAY) {
        return vmx_br_fail(r, "tool_calls must be an array",
                           "messages[%zu].tool_calls", i);
    }

    for (call = calls->child, j = 0; call; call = call->next, j++) {
        if (vmx_br_tool_use(r, call, i, j) != 0) {
            return -1;
        }
    }

    return 0;
}


/* the text of a tool message's content: a string or text parts */
static int
vmx_br_tool_content(vmx_br_request_t *r, const vmx_json_t *content, size_t i)
{
    const vmx_json_t  *part, *text;
    size_t             j, n = 0;

    if (content != NULL && content->type == VMX_JSON_STRING) {
        vmx_buf_append_cstr(r->out, "{\"text\":");
        vmx_buf_append_raw(r->out, content);
        vmx_buf_append_cstr(r->out, "}");
        return 0;
    }

    if (content != NULL && content->type != VMX_JSON_ARRAY) {
        return vmx_br_fail(r, "content must be a string or an array of parts",
                           "messages[%zu].content", i);
    }

    for (part = content ? content->child : NULL, j = 0; part;
         part = part->next, j++)
    {
        text = vmx_translate_string(part, "text");

        if (!vmx_translate_is(vmx_json_get(part, "type"), "text")
            || text == NULL)
        {
            return vmx_br_fail(r, "tool message parts must be text",
                               "messages[%zu].content[%zu]", i, j);
        }

        vmx_buf_append(r->out, ",", n++ != 0);
        vmx_buf_append_cstr(r->out, "{\"text\":");
        vmx_buf_append_raw(r->out, text);
        vmx_buf_append_cstr(r->out, "}");
    }

    /* a result needs content: an empty one says so */
    if (n == 0) {
        vmx_buf_append_cstr(r->out, "{\"text\":\"\"}");
    }

    return 0;
}


/* a "tool" message as a toolResult block of a user turn */
static int
vmx_br_tool_result(vmx_br_request_t *r, const vmx_json_t *m, size_t i)
{
    const vmx_json_t  *id;

    id = vmx_translate_string(m, "tool_call_id");
    if (id == NULL) {
        return vmx_br_fail(r, "a tool message needs a string tool_call_id",
                           "messages[%zu].tool_call_id", i);
    }

    vmx_br_next_block(r, vmx_br_user);
    vmx_buf_append_cstr(r->out, "{\"toolResult\":{\"toolUseId\":");
    vmx_buf_append_raw(r->out, id);
    vmx_buf_append_cstr(r->out, ",\"content\":[");

    if (vmx_br_tool_content(r, vmx_translate_member(m, "content"), i) != 0) {
        return -1;
    }

    vmx_buf_append_cstr(r->out, "]}}");

    return 0;
}


static int
vmx_br_is_system(const vmx_json_t *m)
{
    return vmx_translate_system_role(vmx_json_get(m, "role"));
}


static int
vmx_br_message(vmx_br_request_t *r, const vmx_json_t *m, size_t i)
{
    const vmx_json_t  *role = vmx_json_get(m, "role");

    if (vmx_translate_is(role, "user")) {
        return vmx_br_content(r, vmx_br_user, vmx_json_get(m, "content"), i);
    }

    if (vmx_translate_is(role, "assistant")) {
        return vmx_br_assistant_message(r, m, i);
    }

    if (vmx_translate_is(role, "tool")) {
        return vmx_br_tool_result(r, m, i);
    }

    if (vmx_br_is_system(m)) {
        return 0;
    }

    return vmx_br_fail(r, "the role must be system, developer, user, "
                       "assistant or tool", "messages[%zu].role", i);
}


/* "messages", then the system and developer messages as "system" */
static int
vmx_br_messages(vmx_br_request_t *r, const vmx_json_t *messages)
{
    const vmx_json_t  *m;
    size_t             i;

    vmx_buf_append_cstr(r->out, "{\"messages\":[");

    for (m = messages->child, i = 0; m; m = m->next, i++) {
        if (vmx_br_message(r, m, i) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, r->turn ? "]}]" : "]");

    for (m = messages->child, i = 0; m; m = m->next, i++) {
        if (vmx_br_is_system(m)
            && vmx_br_content(r, NULL, vmx_json_get(m, "content"), i) != 0)
        {
            return -1;
        }
    }

    vmx_buf_append(r->out, "]", r->blocks != 0);

    return 0;
}


/* "name":value in "inferenceConfig", opened with its first field; a
   string as a list of one when list (Converse's "stopSequences") */
static void
vmx_br_config_field(vmx_buf_t *out, size_t *fields, const char *name,
    const vmx_json_t *value, int list)
{
    if (value == NULL) {
        return;
    }

    vmx_buf_append_cstr(out, (*fields)++ ? ",\"" : ",\"inferenceConfig\":{\"");
    vmx_buf_append_cstr(out, name);
    vmx_buf_append_cstr(out, "\":");

    list = list && value->type == VMX_JSON_STRING;

    vmx_buf_append(out, "[", list);
    vmx_buf_append_raw(out, value);
    vmx_buf_append(out, "]", list);
}


static void
vmx_br_inference_config(vmx_br_request_t *r, const vmx_json_t *body)
{
    const vmx_json_t  *max_tokens;
    size_t             fields = 0;

    max_tokens = vmx_translate_member(body, "max_completion_tokens");
    if (max_tokens == NULL) {
        max_tokens = vmx_translate_member(body, "max_tokens");
    }

    vmx_br_config_field(r->out, &fields, "maxTokens", max_tokens, 0);
    vmx_br_config_field(r->out, &fields, "temperature",
                        vmx_translate_member(body, "temperature"), 0);
    vmx_br_config_field(r->out, &fields, "topP",
                        vmx_translate_member(body, "top_p"), 0);
    vmx_br_config_field(r->out, &fields, "stopSequences",
                        vmx_translate_member(body, "stop"), 1);

    vmx_buf_append(r->out, "}", fields != 0);
}


static int
vmx_br_tool_spec(vmx_br_request_t *r, const vmx_json_t *tool, size_t i)
{
    const vmx_json_t  *fn, *name, *description, *parameters;

    fn = vmx_json_get(tool, "function");
    name = vmx_translate_string(fn, "name");
    description = vmx_translate_string(fn, "description");
    parameters = vmx_translate_member(fn, "parameters");

    if (!vmx_translate_is(vmx_json_get(tool, "type"), "function")
        || name == NULL
        || (parameters != NULL && parameters->type != VMX_JSON_OBJECT))
    {
        return vmx_br_fail(r, "tools must be functions with a name and "
                           "object parameters", "tools[%zu]", i);
    }

    vmx_buf_append_cstr(r->out, i ? ",{\"toolSpec\":{\"name\":"
                                  : "{\"toolSpec\":{\"name\":");
    vmx_buf_append_raw(r->out, name);

    if (description != NULL) {
        vmx_buf_append_cstr(r->out, ",\"description\":");
        vmx_buf_append_raw(r->out, description);
    }

    vmx_buf_append_cstr(r->out, ",\"inputSchema\":{\"json\":");

    if (parameters != NULL) {
        vmx_buf_append_raw(r->out, parameters);

    } else {
        vmx_buf_append_cstr(r->out, "{\"type\":\"object\",\"properties\":{}}");
    }

    vmx_buf_append_cstr(r->out, "}}}");

    return 0;
}


/* toolChoice, or "none" as 1: no tools at all */
static int
vmx_br_tool_choice(vmx_br_request_t *r, const vmx_json_t *choice,
    vmx_buf_t *to)
{
    const vmx_json_t  *name;

    if (choice == NULL) {
        return 0;
    }

    if (vmx_translate_is(choice, "auto")) {
        vmx_buf_append_cstr(to, ",\"toolChoice\":{\"auto\":{}}");
        return 0;
    }

    if (vmx_translate_is(choice, "none")) {
        return 1;
    }

    if (vmx_translate_is(choice, "required")) {
        vmx_buf_append_cstr(to, ",\"toolChoice\":{\"any\":{}}");
        return 0;
    }

    name = vmx_translate_string(vmx_json_get(choice, "function"), "name");

    if (!vmx_translate_is(vmx_json_get(choice, "type"), "function")
        || name == NULL)
    {
        return vmx_br_fail(r, "tool_choice must be none, auto, required or a "
                           "named function", "tool_choice");
    }

    vmx_buf_append_cstr(to, ",\"toolChoice\":{\"tool\":{\"name\":");
    vmx_buf_append_raw(to, name);
    vmx_buf_append_cstr(to, "}}");

    return 0;
}


static int
vmx_br_tool_config(vmx_br_request_t *r, const vmx_json_t *body)
{
    const vmx_json_t  *tools, *tool;
    vmx_buf_t          choice;
    size_t             i;
    int                rc;

    tools = vmx_translate_member(body, "tools");

    if (tools != NULL && tools->type != VMX_JSON_ARRAY) {
        return vmx_br_fail(r, "tools must be an array", "tools");
    }

    vmx_buf_init(&choice, r->tc->alloc, r->tc->alloc_ctx, 0);

    rc = vmx_br_tool_choice(r, vmx_translate_member(body, "tool_choice"),
                            &choice);
    if (rc != 0 || tools == NULL || tools->count == 0) {
        return rc < 0 ? -1 : 0;
    }

    vmx_buf_append_cstr(r->out, ",\"toolConfig\":{\"tools\":[");

    for (tool = tools->child, i = 0; tool; tool = tool->next, i++) {
        if (vmx_br_tool_spec(r, tool, i) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, "]");
    vmx_buf_append(r->out, choice.data, choice.len);
    vmx_buf_append_cstr(r->out, "}");

    return vmx_buf_failed(&choice) ? -1 : 0;
}


int
vmx_bedrock_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err)
{
    vmx_br_request_t   r = { tc, err, out, NULL, 0 };
    const vmx_json_t  *body = tc->body, *messages;

    err->message = NULL;
    err->param = NULL;

    if (body == NULL || body->type != VMX_JSON_OBJECT) {
        err->message = "the request body must be a JSON object";
        return -1;
    }

    messages = vmx_json_get(body, "messages");
    if (messages == NULL || messages->type != VMX_JSON_ARRAY) {
        return vmx_br_fail(&r, "messages must be an array", "messages");
    }

    if (vmx_translate_refused(tc, err, body) != 0
        || vmx_br_messages(&r, messages) != 0)
    {
        return -1;
    }

    vmx_br_inference_config(&r, body);

    if (vmx_br_tool_config(&r, body) != 0) {
        return -1;
    }

    vmx_buf_append_cstr(out, "}");

    return vmx_buf_failed(out) ? -1 : 0;
}


/*
 * Answers.
 */

static const char *
vmx_br_finish_reason(const vmx_json_t *stop_reason)
{
    if (vmx_translate_is(stop_reason, "max_tokens")
        || vmx_translate_is(stop_reason, "model_context_window_exceeded"))
    {
        return "length";
    }

    if (vmx_translate_is(stop_reason, "tool_use")) {
        return "tool_calls";
    }

    if (vmx_translate_is(stop_reason, "guardrail_intervened")
        || vmx_translate_is(stop_reason, "content_filtered"))
    {
        return "content_filter";
    }

    return "stop";
}


static int64_t
vmx_br_count(const vmx_json_t *usage, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(usage, name);

    return (v != NULL && v->type == VMX_JSON_NUMBER && v->is_int
            && v->integer >= 0) ? v->integer : -1;
}


/* Bedrock's TokenUsage into OpenAI's counts: inputTokens leaves out the
   tokens read from and written to the cache */
static void
vmx_br_usage(const vmx_json_t *u, vmx_usage_t *usage)
{
    int64_t  input, read, write, output, total;

    if (u == NULL || u->type != VMX_JSON_OBJECT) {
        return;
    }

    input = vmx_br_count(u, "inputTokens");
    read = vmx_br_count(u, "cacheReadInputTokens");
    write = vmx_br_count(u, "cacheWriteInputTokens");
    output = vmx_br_count(u, "outputTokens");
    total = vmx_br_count(u, "totalTokens");

    if (input >= 0) {
        usage->prompt_tokens = input + (read > 0 ? read : 0)
                               + (write > 0 ? write : 0);
    }

    usage->completion_tokens = output;
    usage->cached_tokens = read;
    usage->cache_write_tokens = write;
    usage->total_tokens = (input >= 0 && output >= 0)
                          ? usage->prompt_tokens + output : total;

    vmx_usage_reported(usage);
}


/* the text blocks joined as one JSON string; returns the toolUse blocks */
static int64_t
vmx_br_answer_text(vmx_buf_t *out, const vmx_json_t *content)
{
    const vmx_json_t  *block, *text;
    int64_t            texts = 0, tools = 0;

    for (block = content->child; block; block = block->next) {
        if (vmx_json_get(block, "toolUse") != NULL) {
            tools++;
            continue;
        }

        text = vmx_translate_string(block, "text");
        if (text == NULL) {
            continue;
        }

        vmx_buf_append(out, "\"", texts++ == 0);

        /* the inside of each escaped string: no escape spans two */
        vmx_buf_append(out, text->raw + 1, text->raw_len - 2);
    }

    vmx_buf_append_cstr(out, texts ? "\"" : (tools ? "null" : "\"\""));

    return tools;
}


static int
vmx_br_answer_tool_calls(vmx_buf_t *out, const vmx_json_t *content)
{
    const vmx_json_t  *block, *use, *id, *name, *input;
    int                first = 1;

    vmx_buf_append_cstr(out, ",\"tool_calls\":[");

    for (block = content->child; block; block = block->next) {
        use = vmx_json_get(block, "toolUse");
        if (use == NULL) {
            continue;
        }

        id = vmx_translate_string(use, "toolUseId");
        name = vmx_translate_string(use, "name");
        input = vmx_translate_member(use, "input");

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
vmx_bedrock_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage)
{
    const vmx_json_t  *root, *content;
    int64_t            tools;

    root = vmx_translate_parse(tc, body, len);
    content = vmx_json_get(vmx_json_get(vmx_json_get(root, "output"),
                                        "message"), "content");

    if (content == NULL || content->type != VMX_JSON_ARRAY) {
        return -1;
    }

    vmx_openai_message_open(tc, out);

    tools = vmx_br_answer_text(out, content);

    vmx_buf_append_cstr(out, ",\"refusal\":null,\"annotations\":[]");

    if (tools > 0 && vmx_br_answer_tool_calls(out, content) != 0) {
        return -1;
    }

    vmx_openai_message_close(out,
        vmx_br_finish_reason(vmx_json_get(root, "stopReason")));

    vmx_br_usage(vmx_json_get(root, "usage"), usage);
    vmx_openai_usage(out, usage);

    vmx_buf_append_cstr(out, "}");

    return vmx_buf_failed(out) ? -1 : 0;
}


/*
 * The stream.
 */

void
vmx_bedrock_stream_init(vmx_bedrock_stream_t *s,
    const vmx_translate_ctx_t *tc)
{
    memset(s, 0, sizeof(vmx_bedrock_stream_t));
    s->tc = tc;
    vmx_usage_init(&s->usage);
    s->tool_block = -1;
}


/* the first chunk, before anything else even when messageStart is late */
static void
vmx_br_stream_start(vmx_bedrock_stream_t *s, vmx_buf_t *out)
{
    if (s->started) {
        return;
    }

    s->started = 1;
    vmx_openai_role_chunk(s->tc, out);
}


static void
vmx_br_stream_finish(vmx_bedrock_stream_t *s, vmx_buf_t *out,
    const char *finish_reason)
{
    vmx_br_stream_start(s, out);
    vmx_openai_delta_open(s->tc, out);
    vmx_openai_delta_close(out, finish_reason);
    s->finished = 1;
}


static int64_t
vmx_br_block_index(const vmx_json_t *event)
{
    const vmx_json_t  *v = vmx_json_get(event, "contentBlockIndex");

    return (v != NULL && v->type == VMX_JSON_NUMBER && v->is_int)
           ? v->integer : -1;
}


/* a toolUse block opens a tool call: its id and name, empty arguments */
static int
vmx_br_on_block_start(vmx_bedrock_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *use, *id, *name;

    use = vmx_json_get(vmx_json_get(event, "start"), "toolUse");
    if (use == NULL) {
        return 0;
    }

    id = vmx_translate_string(use, "toolUseId");
    name = vmx_translate_string(use, "name");

    if (id == NULL || name == NULL) {
        return -1;
    }

    vmx_br_stream_start(s, out);
    vmx_openai_tool_call_chunk(s->tc, out, s->tool_calls++, id, name);

    s->tool_block = vmx_br_block_index(event);

    return 0;
}


static void
vmx_br_on_block_delta(vmx_bedrock_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    const vmx_json_t  *delta, *text, *input;

    delta = vmx_json_get(event, "delta");
    text = vmx_translate_string(delta, "text");
    input = vmx_translate_string(vmx_json_get(delta, "toolUse"), "input");

    if (text != NULL && text->str_len) {
        vmx_br_stream_start(s, out);
        vmx_openai_content_chunk(s->tc, out, text);

    } else if (input != NULL && input->str_len && s->tool_calls
               && vmx_br_block_index(event) == s->tool_block)
    {
        vmx_openai_arguments_chunk(s->tc, out, s->tool_calls - 1, input);
    }
}


static void
vmx_br_on_metadata(vmx_bedrock_stream_t *s, const vmx_json_t *event,
    vmx_buf_t *out)
{
    vmx_br_usage(vmx_json_get(event, "usage"), &s->usage);

    if (!s->finished) {
        vmx_br_stream_finish(s, out, "stop");
    }

    if (s->tc->include_usage) {
        vmx_openai_usage_chunk(s->tc, out, &s->usage);
    }

    vmx_openai_done(out);
    s->done = 1;
}


int
vmx_bedrock_stream_event(vmx_bedrock_stream_t *s, const char *event_type,
    size_t event_type_len, const char *payload, size_t payload_len,
    vmx_buf_t *out, vmx_usage_t *usage)
{
    const vmx_json_t  *event;
    int                rc = 0;

    if (s->done) {
        return 0;
    }

    event = vmx_translate_parse(s->tc, payload, payload_len);
    if (event == NULL || event->type != VMX_JSON_OBJECT) {
        return -1;
    }

    if (vmx_translate_named(event_type, event_type_len, "messageStart")) {
        vmx_br_stream_start(s, out);

    } else if (vmx_translate_named(event_type, event_type_len,
                                   "contentBlockStart"))
    {
        rc = vmx_br_on_block_start(s, event, out);

    } else if (vmx_translate_named(event_type, event_type_len,
                                   "contentBlockDelta"))
    {
        vmx_br_on_block_delta(s, event, out);

    } else if (vmx_translate_named(event_type, event_type_len,
                                   "contentBlockStop"))
    {
        if (vmx_br_block_index(event) == s->tool_block) {
            s->tool_block = -1;
        }

    } else if (vmx_translate_named(event_type, event_type_len, "messageStop")) {
        if (!s->finished) {
            vmx_br_stream_finish(s, out, vmx_br_finish_reason(
                                     vmx_json_get(event, "stopReason")));
        }

    } else if (vmx_translate_named(event_type, event_type_len, "metadata")) {
        vmx_br_on_metadata(s, event, out);
    }

    *usage = s->usage;

    return rc;
}


/*
 * Errors.
 */

/* Bedrock's exception names (camelCase in streams, PascalCase in the
   x-amzn-ErrorType header) and the statuses they stand for */
static int
vmx_br_exception_status(const char *type, size_t len)
{
    static const struct {
        const char  *name;
        int          status;
    } statuses[] = {
        { "throttlingException", 429 },
        { "validationException", 400 },
        { "accessDeniedException", 403 },
        { "resourceNotFoundException", 404 },
        { "modelStreamErrorException", 502 },
        { "modelTimeoutException", 504 },
        { "serviceUnavailableException", 503 },
    };
    size_t  i;

    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        if (strlen(statuses[i].name) == len
            && strncasecmp(statuses[i].name, type, len) == 0)
        {
            return statuses[i].status;
        }
    }

    return 500;
}


/* OpenAI's code where OpenAI has one for the case */
static const char *
vmx_br_error_code(int status)
{
    return status == 429 ? "rate_limit_exceeded" : NULL;
}


/* bytes of a header as a string node, or NULL when they are no UTF-8:
   the strict parser is the validator */
static const vmx_json_t *
vmx_br_header_string(const vmx_translate_ctx_t *tc, const char *s,
    size_t len)
{
    vmx_buf_t  quoted;

    if (len == 0) {
        return NULL;
    }

    vmx_buf_init(&quoted, tc->alloc, tc->alloc_ctx, 0);
    vmx_buf_append_json_str(&quoted, s, len);

    return vmx_buf_failed(&quoted)
           ? NULL : vmx_translate_parse(tc, quoted.data, quoted.len);
}


/* the "message" (or "Message") of an error payload */
static const vmx_json_t *
vmx_br_error_message(const vmx_translate_ctx_t *tc, const char *body,
    size_t len)
{
    const vmx_json_t  *root, *message;

    root = vmx_translate_parse(tc, body, len);
    message = vmx_translate_string(root, "message");

    return message ? message : vmx_translate_string(root, "Message");
}


int
vmx_bedrock_stream_exception(vmx_bedrock_stream_t *s,
    const vmx_eventstream_message_t *m, vmx_buf_t *out)
{
    const vmx_json_t              *message;
    const vmx_eventstream_str_t  *type;
    const char                    *text = vmx_br_provider_error;
    char                          *code;
    size_t                         len = sizeof(vmx_br_provider_error) - 1;
    int                            status;

    if (m->exception_type.data != NULL) {
        status = vmx_br_exception_status(m->exception_type.data,
                                         m->exception_type.len);
        message = vmx_br_error_message(s->tc, m->payload, m->payload_len);

    } else {
        status = vmx_br_exception_status(m->error_code.data,
                                         m->error_code.len);
        message = vmx_br_header_string(s->tc, m->error_message.data,
                                       m->error_message.len);
    }

    if (message != NULL) {
        text = message->str;
        len = message->str_len;
    }

    /* after "[DONE]" the client hears nothing more */
    if (s->done) {
        return status;
    }

    vmx_stream_fail(s->tc->alloc, s->tc->alloc_ctx, &s->error, out, status,
                    text, len, vmx_br_error_code(status));
    s->done = 1;

    /* the audit's code is Bedrock's own name of the exception */
    type = m->exception_type.data ? &m->exception_type : &m->error_code;

    if (type->data != NULL && type->len) {
        code = s->tc->alloc(s->tc->alloc_ctx, type->len + 1);

        if (code != NULL) {
            memcpy(code, type->data, type->len);
            code[type->len] = '\0';
            s->error.code = code;
            s->error.code_len = type->len;
        }
    }

    return status;
}


void
vmx_bedrock_error(const vmx_translate_ctx_t *tc, int status,
    const char *body, size_t len, const char *error_type,
    size_t error_type_len, vmx_buf_t *out)
{
    const vmx_json_t  *message;
    const char        *colon, *text = vmx_br_provider_error;
    size_t             text_len = sizeof(vmx_br_provider_error) - 1;

    /* "ThrottlingException:http://internal.amazon.com/coral/..." */
    colon = error_type_len ? memchr(error_type, ':', error_type_len) : NULL;
    if (colon != NULL) {
        error_type_len = (size_t) (colon - error_type);
    }

    message = vmx_br_error_message(tc, body, len);
    if (message == NULL) {
        message = vmx_br_header_string(tc, error_type, error_type_len);
    }

    if (message != NULL) {
        text = message->str;
        text_len = message->str_len;
    }

    vmx_openai_error(out, text, text_len, vmx_openai_error_type(status),
                     vmx_br_error_code(status), NULL);
}
