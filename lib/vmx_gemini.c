/*
 * vmx_gemini: see vmx_gemini.h.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmx_gemini.h"


/*
 * Gemini 3 refuses a replayed functionCall part that lacks the thought
 * signature it was answered with, and OpenAI's tool_calls cannot carry one:
 * replayed calls carry the value Gemini documents for history it did not
 * sign itself.
 */
#define VMX_GEMINI_NO_SIGNATURE  "skip_thought_signature_validator"

#define VMX_GEMINI_UNREADABLE    "The model provider returned an error."


typedef enum {
    VMX_GEMINI_NONE = 0,
    VMX_GEMINI_USER,
    VMX_GEMINI_MODEL
} vmx_gemini_role_e;


/* a slot of the tool call id -> function name table */
typedef struct {
    const vmx_json_t           *id;
    const vmx_json_t           *name;
} vmx_gemini_call_t;


typedef struct {
    const vmx_translate_ctx_t  *tc;
    const vmx_json_t           *body;
    vmx_buf_t                  *out;
    vmx_translate_error_t      *err;

    vmx_gemini_call_t          *calls;     /* open addressing, or NULL */
    size_t                      mask;      /* slots - 1 */

    vmx_gemini_role_e           role;      /* of the open turn */
    unsigned                    system:1;  /* systemInstruction is open */
    size_t                      msg;       /* message index, for params */
} vmx_gemini_req_t;


static const char  *vmx_gemini_roles[] = { "", "user", "model" };

/* Gemini finish reasons that mean the answer was filtered */
static const char  *vmx_gemini_filtered[] = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", NULL
};

/* image mime types by file extension, for http(s) image URLs */
static const char  *vmx_gemini_image_types[][2] = {
    { "png", "image/png" }, { "jpg", "image/jpeg" }, { "jpeg", "image/jpeg" },
    { "gif", "image/gif" }, { "webp", "image/webp" }, { "heic", "image/heic" },
    { "heif", "image/heif" }, { NULL, NULL }
};


/* helpers */


static int
vmx_gemini_absent(const vmx_json_t *v)
{
    return v == NULL || v->type == VMX_JSON_NULL;
}


static int
vmx_gemini_prefix(const vmx_json_t *s, const char *lit)
{
    size_t  n = strlen(lit);

    return s->str_len >= n && strncasecmp(s->str, lit, n) == 0;
}


/* s as the inside of a JSON string */
static void
vmx_gemini_append_escaped(vmx_buf_t *out, const char *s, size_t n)
{
    char  *p;

    p = vmx_buf_reserve(out, vmx_json_escape(NULL, s, n));
    if (p != NULL) {
        out->len += vmx_json_escape(p, s, n);
    }
}


/*
 * The JSON text s as a JSON string, white space between tokens dropped
 * (OpenAI's arguments are compact).  Valid JSON has no raw control
 * characters in its strings, so only '"' and '\\' need escaping.
 */
static void
vmx_gemini_append_json_text(vmx_buf_t *out, const char *s, size_t n)
{
    char    *p;
    size_t   i;
    int      in_string = 0, escaped = 0;

    p = vmx_buf_reserve(out, 2 * n + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';

    for (i = 0; i < n; i++) {
        if (in_string) {
            if (escaped) {
                escaped = 0;

            } else if (s[i] == '\\') {
                escaped = 1;

            } else if (s[i] == '"') {
                in_string = 0;
            }

        } else if (s[i] == ' ' || s[i] == '\n' || s[i] == '\r'
                   || s[i] == '\t')
        {
            continue;

        } else if (s[i] == '"') {
            in_string = 1;
        }

        if (s[i] == '"' || s[i] == '\\') {
            *p++ = '\\';
        }

        *p++ = s[i];
    }

    *p++ = '"';
    out->len = p - out->data;
}


/* the request: OpenAI chat completions to generateContent */


/* err says why, fmt (with indexes) where: always -1 */
#define vmx_gemini_fail(r, ...)                                               \
    vmx_translate_fail((r)->tc, (r)->err, __VA_ARGS__)


static int
vmx_gemini_out_of_memory(vmx_gemini_req_t *r)
{
    r->err->message = "out of memory";
    r->err->param = NULL;

    return -1;
}


static uint64_t
vmx_gemini_hash(const vmx_json_t *id)
{
    uint64_t  h = 14695981039346656037ULL;   /* FNV-1a */
    size_t    i;

    for (i = 0; i < id->str_len; i++) {
        h = (h ^ (unsigned char) id->str[i]) * 1099511628211ULL;
    }

    return h;
}


static int
vmx_gemini_same_id(const vmx_json_t *a, const vmx_json_t *b)
{
    return a->str_len == b->str_len && memcmp(a->str, b->str, a->str_len) == 0;
}


/* a table with room for every tool call of the conversation */
static int
vmx_gemini_calls_init(vmx_gemini_req_t *r, const vmx_json_t *messages)
{
    const vmx_json_t  *m, *calls;
    size_t             count = 0, slots = 2;

    for (m = messages->child; m; m = m->next) {
        calls = vmx_json_get(m, "tool_calls");
        if (calls != NULL && calls->type == VMX_JSON_ARRAY) {
            count += calls->count;
        }
    }

    if (count == 0) {
        return 0;
    }

    while (slots < 2 * count) {
        slots *= 2;
    }

    r->calls = r->tc->alloc(r->tc->alloc_ctx, slots * sizeof(*r->calls));
    if (r->calls == NULL) {
        return vmx_gemini_out_of_memory(r);
    }

    memset(r->calls, 0, slots * sizeof(*r->calls));
    r->mask = slots - 1;

    return 0;
}


/* the slot of id: its own, or the empty one where it belongs */
static vmx_gemini_call_t *
vmx_gemini_call_slot(vmx_gemini_req_t *r, const vmx_json_t *id)
{
    size_t  i = vmx_gemini_hash(id) & r->mask;

    while (r->calls[i].id != NULL && !vmx_gemini_same_id(r->calls[i].id, id)) {
        i = (i + 1) & r->mask;
    }

    return &r->calls[i];
}


/* a later call with the same id wins: tool results answer the latest */
static void
vmx_gemini_call_remember(vmx_gemini_req_t *r, const vmx_json_t *id,
    const vmx_json_t *name)
{
    vmx_gemini_call_t  *slot;

    if (r->calls == NULL || id == NULL || id->type != VMX_JSON_STRING) {
        return;
    }

    slot = vmx_gemini_call_slot(r, id);
    slot->id = id;
    slot->name = name;
}


static const vmx_json_t *
vmx_gemini_call_name(vmx_gemini_req_t *r, const vmx_json_t *id)
{
    if (r->calls == NULL || id == NULL || id->type != VMX_JSON_STRING) {
        return NULL;
    }

    return vmx_gemini_call_slot(r, id)->name;
}


/* opens a part of a turn of role, consecutive same roles sharing one turn */
static void
vmx_gemini_part(vmx_gemini_req_t *r, vmx_gemini_role_e role)
{
    if (r->role == role) {
        vmx_buf_append_cstr(r->out, ",");
        return;
    }

    if (r->role != VMX_GEMINI_NONE) {
        vmx_buf_append_cstr(r->out, "]},");
    }

    vmx_buf_append_cstr(r->out, "{\"role\":\"");
    vmx_buf_append_cstr(r->out, vmx_gemini_roles[role]);
    vmx_buf_append_cstr(r->out, "\",\"parts\":[");
    r->role = role;
}


static void
vmx_gemini_text_part(vmx_gemini_req_t *r, vmx_gemini_role_e role,
    const vmx_json_t *text)
{
    /* Gemini refuses empty text parts */
    if (text->str_len == 0) {
        return;
    }

    vmx_gemini_part(r, role);
    vmx_buf_append_cstr(r->out, "{\"text\":");
    vmx_buf_append_raw(r->out, text);
    vmx_buf_append_cstr(r->out, "}");
}


static void
vmx_gemini_inline_part(vmx_gemini_req_t *r, const char *mime, size_t mime_len,
    const char *data, size_t data_len)
{
    vmx_gemini_part(r, VMX_GEMINI_USER);
    vmx_buf_append_cstr(r->out, "{\"inlineData\":{\"mimeType\":");
    vmx_buf_append_json_str(r->out, mime, mime_len);
    vmx_buf_append_cstr(r->out, ",\"data\":");
    vmx_buf_append_json_str(r->out, data, data_len);
    vmx_buf_append_cstr(r->out, "}}");
}


/* "data:<mime>[;param...];base64,<data>" as inlineData; 0 or -1 */
static int
vmx_gemini_data_url(vmx_gemini_req_t *r, const vmx_json_t *url)
{
    const char  *meta, *comma, *semi;
    size_t       meta_len;

    meta = url->str + sizeof("data:") - 1;
    comma = memchr(meta, ',', url->str_len - (meta - url->str));

    if (comma == NULL) {
        return -1;
    }

    meta_len = comma - meta;

    if (meta_len < sizeof(";base64") - 1
        || strncasecmp(comma - (sizeof(";base64") - 1), ";base64",
                       sizeof(";base64") - 1) != 0)
    {
        return -1;
    }

    semi = memchr(meta, ';', meta_len);

    if (semi == meta) {
        return -1;
    }

    vmx_gemini_inline_part(r, meta, semi - meta, comma + 1,
                           url->str_len - (comma + 1 - url->str));
    return 0;
}


/* the mime type of an image URL from its extension, JPEG when unknown */
static const char *
vmx_gemini_image_type(const vmx_json_t *url)
{
    const char  *end, *dot;
    size_t       i, n;

    end = url->str + strcspn(url->str, "?#");

    for (dot = end; dot > url->str && dot[-1] != '.' && dot[-1] != '/'; dot--) {
        /* void */
    }

    n = end - dot;

    for (i = 0; dot > url->str && dot[-1] == '.'
                && vmx_gemini_image_types[i][0]; i++)
    {
        if (strlen(vmx_gemini_image_types[i][0]) == n
            && strncasecmp(dot, vmx_gemini_image_types[i][0], n) == 0)
        {
            return vmx_gemini_image_types[i][1];
        }
    }

    return "image/jpeg";
}


static int
vmx_gemini_image(vmx_gemini_req_t *r, const vmx_json_t *image, size_t j)
{
    const vmx_json_t  *url;

    /* some clients send the URL itself */
    url = (image != NULL && image->type == VMX_JSON_STRING)
          ? image : vmx_json_get(image, "url");

    if (url == NULL || url->type != VMX_JSON_STRING) {
        return vmx_gemini_fail(r, "image_url must have a url",
                               "messages[%zu].content[%zu].image_url",
                               r->msg, j);
    }

    if (vmx_gemini_prefix(url, "data:")) {
        if (vmx_gemini_data_url(r, url) == 0) {
            return 0;
        }

        return vmx_gemini_fail(r, "image data URLs must be base64-encoded",
                               "messages[%zu].content[%zu].image_url.url",
                               r->msg, j);
    }

    if (!vmx_gemini_prefix(url, "http://") && !vmx_gemini_prefix(url, "https://"))
    {
        return vmx_gemini_fail(r, "image URLs must be http(s) or data URLs",
                               "messages[%zu].content[%zu].image_url.url",
                               r->msg, j);
    }

    vmx_gemini_part(r, VMX_GEMINI_USER);
    vmx_buf_append_cstr(r->out, "{\"fileData\":{\"mimeType\":\"");
    vmx_buf_append_cstr(r->out, vmx_gemini_image_type(url));
    vmx_buf_append_cstr(r->out, "\",\"fileUri\":");
    vmx_buf_append_raw(r->out, url);
    vmx_buf_append_cstr(r->out, "}}");

    return 0;
}


static int
vmx_gemini_audio(vmx_gemini_req_t *r, const vmx_json_t *audio, size_t j)
{
    const vmx_json_t  *data, *format;
    char               mime[32];
    int                n;

    data = vmx_json_get(audio, "data");
    format = vmx_json_get(audio, "format");

    if (data == NULL || data->type != VMX_JSON_STRING
        || format == NULL || format->type != VMX_JSON_STRING
        || format->str_len == 0 || format->str_len > 16)
    {
        return vmx_gemini_fail(r, "input_audio must have data and a format",
                               "messages[%zu].content[%zu].input_audio",
                               r->msg, j);
    }

    n = snprintf(mime, sizeof(mime), "audio/%s", format->str);

    vmx_gemini_inline_part(r, mime, n, data->str, data->str_len);

    return 0;
}


static int
vmx_gemini_file(vmx_gemini_req_t *r, const vmx_json_t *file, size_t j)
{
    const vmx_json_t  *data = vmx_json_get(file, "file_data");

    if (data != NULL && data->type == VMX_JSON_STRING
        && vmx_gemini_prefix(data, "data:") && vmx_gemini_data_url(r, data) == 0)
    {
        return 0;
    }

    return vmx_gemini_fail(r, "files must be sent as base64 data URLs "
                           "in file_data",
                           "messages[%zu].content[%zu].file", r->msg, j);
}


static int
vmx_gemini_user_part(vmx_gemini_req_t *r, const vmx_json_t *part, size_t j)
{
    const vmx_json_t  *type, *text;

    type = vmx_json_get(part, "type");

    if (vmx_translate_is(type, "text")) {
        text = vmx_json_get(part, "text");

        if (text == NULL || text->type != VMX_JSON_STRING) {
            return vmx_gemini_fail(r, "text parts must have a text string",
                                   "messages[%zu].content[%zu].text",
                                   r->msg, j);
        }

        vmx_gemini_text_part(r, VMX_GEMINI_USER, text);
        return 0;
    }

    if (vmx_translate_is(type, "image_url")) {
        return vmx_gemini_image(r, vmx_json_get(part, "image_url"), j);
    }

    if (vmx_translate_is(type, "input_audio")) {
        return vmx_gemini_audio(r, vmx_json_get(part, "input_audio"), j);
    }

    if (vmx_translate_is(type, "file")) {
        return vmx_gemini_file(r, vmx_json_get(part, "file"), j);
    }

    return vmx_gemini_fail(r, "unsupported content part type",
                           "messages[%zu].content[%zu].type", r->msg, j);
}


static int
vmx_gemini_user(vmx_gemini_req_t *r, const vmx_json_t *m)
{
    const vmx_json_t  *content, *part;
    size_t             j = 0;

    content = vmx_json_get(m, "content");

    if (content != NULL && content->type == VMX_JSON_STRING) {
        vmx_gemini_text_part(r, VMX_GEMINI_USER, content);
        return 0;
    }

    if (content != NULL && content->type == VMX_JSON_ARRAY) {
        for (part = content->child; part; part = part->next, j++) {
            if (vmx_gemini_user_part(r, part, j) != 0) {
                return -1;
            }
        }

        return 0;
    }

    if (vmx_gemini_absent(content)) {
        return 0;
    }

    return vmx_gemini_fail(r, "content must be a string or an array",
                           "messages[%zu].content", r->msg);
}


/*
 * The text of a system, developer or assistant message: a string or text
 * parts (and refusals, for the assistant).  write is called for each text.
 */
static int
vmx_gemini_texts(vmx_gemini_req_t *r, const vmx_json_t *m,
    void (*write)(vmx_gemini_req_t *r, const vmx_json_t *text))
{
    const vmx_json_t  *content, *part, *text;
    size_t             j = 0;

    content = vmx_json_get(m, "content");

    if (content != NULL && content->type == VMX_JSON_STRING) {
        write(r, content);
        return 0;
    }

    if (vmx_gemini_absent(content)) {
        return 0;
    }

    if (content->type != VMX_JSON_ARRAY) {
        return vmx_gemini_fail(r, "content must be a string or an array",
                               "messages[%zu].content", r->msg);
    }

    for (part = content->child; part; part = part->next, j++) {
        text = vmx_json_get(part, "text");

        if (text == NULL) {
            text = vmx_json_get(part, "refusal");
        }

        if (text == NULL || text->type != VMX_JSON_STRING) {
            return vmx_gemini_fail(r, "only text parts are allowed here",
                                   "messages[%zu].content[%zu]", r->msg, j);
        }

        write(r, text);
    }

    return 0;
}


static void
vmx_gemini_system_text(vmx_gemini_req_t *r, const vmx_json_t *text)
{
    if (text->str_len == 0) {
        return;
    }

    vmx_buf_append_cstr(r->out, r->system
                                ? "," : "\"systemInstruction\":{\"parts\":[");
    vmx_buf_append_cstr(r->out, "{\"text\":");
    vmx_buf_append_raw(r->out, text);
    vmx_buf_append_cstr(r->out, "}");
    r->system = 1;
}


static void
vmx_gemini_model_text(vmx_gemini_req_t *r, const vmx_json_t *text)
{
    vmx_gemini_text_part(r, VMX_GEMINI_MODEL, text);
}


/* every system and developer message, wherever it is, in order */
static int
vmx_gemini_system(vmx_gemini_req_t *r, const vmx_json_t *messages)
{
    const vmx_json_t  *m, *role;

    r->msg = 0;

    for (m = messages->child; m; m = m->next, r->msg++) {
        role = vmx_json_get(m, "role");

        if (vmx_translate_system_role(role)
            && vmx_gemini_texts(r, m, vmx_gemini_system_text) != 0)
        {
            return -1;
        }
    }

    if (r->system) {
        vmx_buf_append_cstr(r->out, "]},");
    }

    return 0;
}


/* arguments (a JSON string) as Gemini's args object */
static const vmx_json_t *
vmx_gemini_args(vmx_gemini_req_t *r, const vmx_json_t *arguments)
{
    static const vmx_json_t   empty = { .type = VMX_JSON_OBJECT,
                                        .raw = "{}", .raw_len = 2 };
    const vmx_json_t         *args;
    size_t                    i;

    if (vmx_gemini_absent(arguments)) {
        return &empty;
    }

    if (arguments->type != VMX_JSON_STRING) {
        return NULL;
    }

    /* some clients send "" for a function without parameters */
    for (i = 0; i < arguments->str_len && strchr(" \t\r\n", arguments->str[i]);
         i++)
    {
        /* void */
    }

    if (i == arguments->str_len) {
        return &empty;
    }

    args = vmx_translate_parse(r->tc, arguments->str, arguments->str_len);

    return (args != NULL && args->type == VMX_JSON_OBJECT) ? args : NULL;
}


static int
vmx_gemini_function_call(vmx_gemini_req_t *r, const vmx_json_t *call,
    size_t j)
{
    const vmx_json_t  *fn, *name, *args;

    fn = vmx_json_get(call, "function");
    name = vmx_json_get(fn, "name");

    if (name == NULL || name->type != VMX_JSON_STRING || name->str_len == 0) {
        return vmx_gemini_fail(r, "tool calls must name their function",
                               "messages[%zu].tool_calls[%zu].function.name",
                               r->msg, j);
    }

    args = vmx_gemini_args(r, vmx_json_get(fn, "arguments"));

    if (args == NULL) {
        return vmx_gemini_fail(r, "function arguments must be a JSON object",
                               "messages[%zu].tool_calls[%zu].function"
                               ".arguments", r->msg, j);
    }

    vmx_gemini_call_remember(r, vmx_json_get(call, "id"), name);

    vmx_gemini_part(r, VMX_GEMINI_MODEL);
    vmx_buf_append_cstr(r->out, "{\"functionCall\":{\"name\":");
    vmx_buf_append_raw(r->out, name);
    vmx_buf_append_cstr(r->out, ",\"args\":");
    vmx_buf_append_raw(r->out, args);

    /* Gemini wants the signature on the first call of a step */
    vmx_buf_append_cstr(r->out, j == 0
                        ? "},\"thoughtSignature\":\"" VMX_GEMINI_NO_SIGNATURE
                          "\"}"
                        : "}}");

    return 0;
}


static int
vmx_gemini_assistant(vmx_gemini_req_t *r, const vmx_json_t *m)
{
    const vmx_json_t  *calls, *call;
    size_t             j = 0;

    if (vmx_gemini_texts(r, m, vmx_gemini_model_text) != 0) {
        return -1;
    }

    calls = vmx_json_get(m, "tool_calls");

    if (vmx_gemini_absent(calls)) {
        return 0;
    }

    if (calls->type != VMX_JSON_ARRAY) {
        return vmx_gemini_fail(r, "tool_calls must be an array",
                               "messages[%zu].tool_calls", r->msg);
    }

    for (call = calls->child; call; call = call->next, j++) {
        if (vmx_gemini_function_call(r, call, j) != 0) {
            return -1;
        }
    }

    return 0;
}


/* a tool message's content as one text: a string or text parts */
static int
vmx_gemini_tool_text(const vmx_json_t *content, vmx_buf_t *text)
{
    const vmx_json_t  *part, *s;

    if (content->type == VMX_JSON_STRING) {
        vmx_buf_append(text, content->str, content->str_len);
        return 0;
    }

    if (content->type != VMX_JSON_ARRAY) {
        return -1;
    }

    for (part = content->child; part; part = part->next) {
        s = vmx_json_get(part, "text");

        if (s == NULL || s->type != VMX_JSON_STRING) {
            return -1;
        }

        vmx_buf_append(text, s->str, s->str_len);
    }

    return 0;
}


/* {"result": <the content, as JSON when it is JSON, else as a string>} */
static int
vmx_gemini_tool_response(vmx_gemini_req_t *r, const vmx_json_t *content)
{
    const vmx_json_t  *json;
    vmx_buf_t          text;

    vmx_buf_init(&text, r->tc->alloc, r->tc->alloc_ctx, 0);

    if (!vmx_gemini_absent(content)
        && vmx_gemini_tool_text(content, &text) != 0)
    {
        return vmx_gemini_fail(r, "tool message content must be a string or "
                               "text parts", "messages[%zu].content", r->msg);
    }

    if (vmx_buf_failed(&text)) {
        return vmx_gemini_out_of_memory(r);
    }

    json = text.len ? vmx_translate_parse(r->tc, text.data, text.len) : NULL;

    vmx_buf_append_cstr(r->out, "{\"result\":");

    if (json != NULL) {
        vmx_buf_append_raw(r->out, json);

    } else {
        vmx_buf_append_json_str(r->out, text.data ? text.data : "", text.len);
    }

    vmx_buf_append_cstr(r->out, "}");

    return 0;
}


static int
vmx_gemini_tool_result(vmx_gemini_req_t *r, const vmx_json_t *m)
{
    const vmx_json_t  *name;

    name = vmx_gemini_call_name(r, vmx_json_get(m, "tool_call_id"));

    if (name == NULL) {
        /* the deprecated "function" role names its function */
        name = vmx_json_get(m, "name");
    }

    if (name == NULL || name->type != VMX_JSON_STRING) {
        return vmx_gemini_fail(r, "tool_call_id does not match any earlier "
                               "tool call", "messages[%zu].tool_call_id",
                               r->msg);
    }

    vmx_gemini_part(r, VMX_GEMINI_USER);
    vmx_buf_append_cstr(r->out, "{\"functionResponse\":{\"name\":");
    vmx_buf_append_raw(r->out, name);
    vmx_buf_append_cstr(r->out, ",\"response\":");

    if (vmx_gemini_tool_response(r, vmx_json_get(m, "content")) != 0) {
        return -1;
    }

    vmx_buf_append_cstr(r->out, "}}");

    return 0;
}


static int
vmx_gemini_message(vmx_gemini_req_t *r, const vmx_json_t *m)
{
    const vmx_json_t  *role = vmx_json_get(m, "role");

    if (vmx_translate_is(role, "user")) {
        return vmx_gemini_user(r, m);
    }

    if (vmx_translate_is(role, "assistant")) {
        return vmx_gemini_assistant(r, m);
    }

    if (vmx_translate_is(role, "tool") || vmx_translate_is(role, "function")) {
        return vmx_gemini_tool_result(r, m);
    }

    if (vmx_translate_system_role(role)) {
        return 0;
    }

    return vmx_gemini_fail(r, "unsupported message role",
                           "messages[%zu].role", r->msg);
}


static int
vmx_gemini_contents(vmx_gemini_req_t *r, const vmx_json_t *messages)
{
    const vmx_json_t  *m;

    vmx_buf_append_cstr(r->out, "\"contents\":[");

    for (m = messages->child, r->msg = 0; m; m = m->next, r->msg++) {
        if (vmx_gemini_message(r, m) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, r->role != VMX_GEMINI_NONE ? "]}]" : "]");

    return 0;
}


static int
vmx_gemini_declaration(vmx_gemini_req_t *r, const vmx_json_t *tool, size_t j)
{
    const vmx_json_t  *type, *fn, *name, *description, *parameters;

    type = vmx_json_get(tool, "type");

    if (type != NULL && !vmx_translate_is(type, "function")) {
        return vmx_gemini_fail(r, "only function tools are supported",
                               "tools[%zu].type", j);
    }

    fn = vmx_json_get(tool, "function");
    name = vmx_json_get(fn, "name");

    if (name == NULL || name->type != VMX_JSON_STRING) {
        return vmx_gemini_fail(r, "tools must name their function",
                               "tools[%zu].function.name", j);
    }

    vmx_buf_append_cstr(r->out, j ? ",{\"name\":" : "{\"name\":");
    vmx_buf_append_raw(r->out, name);

    description = vmx_json_get(fn, "description");

    if (description != NULL && description->type == VMX_JSON_STRING) {
        vmx_buf_append_cstr(r->out, ",\"description\":");
        vmx_buf_append_raw(r->out, description);
    }

    /* JSON Schema as OpenAI has it; "parameters" takes only a subset */
    parameters = vmx_json_get(fn, "parameters");

    if (parameters != NULL && parameters->type == VMX_JSON_OBJECT) {
        vmx_buf_append_cstr(r->out, ",\"parametersJsonSchema\":");
        vmx_buf_append_raw(r->out, parameters);
    }

    vmx_buf_append_cstr(r->out, "}");

    return 0;
}


static int
vmx_gemini_tools(vmx_gemini_req_t *r)
{
    const vmx_json_t  *tools, *tool;
    size_t             j = 0;

    tools = vmx_json_get(r->body, "tools");

    if (vmx_gemini_absent(tools)) {
        return 0;
    }

    if (tools->type != VMX_JSON_ARRAY) {
        return vmx_gemini_fail(r, "tools must be an array", "%s", "tools");
    }

    if (tools->count == 0) {
        return 0;
    }

    vmx_buf_append_cstr(r->out, ",\"tools\":[{\"functionDeclarations\":[");

    for (tool = tools->child; tool; tool = tool->next, j++) {
        if (vmx_gemini_declaration(r, tool, j) != 0) {
            return -1;
        }
    }

    vmx_buf_append_cstr(r->out, "]}]");

    return 0;
}


static int
vmx_gemini_tool_config(vmx_gemini_req_t *r)
{
    const vmx_json_t  *choice, *name;
    const char        *mode = NULL;

    choice = vmx_json_get(r->body, "tool_choice");

    if (vmx_gemini_absent(choice)) {
        return 0;
    }

    if (vmx_translate_is(choice, "auto")) {
        mode = "AUTO";

    } else if (vmx_translate_is(choice, "none")) {
        mode = "NONE";

    } else if (vmx_translate_is(choice, "required")) {
        mode = "ANY";
    }

    name = vmx_json_get(vmx_json_get(choice, "function"), "name");

    if (mode == NULL
        && (!vmx_translate_is(vmx_json_get(choice, "type"), "function")
            || name == NULL || name->type != VMX_JSON_STRING))
    {
        return vmx_gemini_fail(r, "tool_choice must be none, auto, required "
                               "or name a function", "%s", "tool_choice");
    }

    vmx_buf_append_cstr(r->out,
                        ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":");

    if (mode != NULL) {
        vmx_buf_append_json_str(r->out, mode, strlen(mode));

    } else {
        vmx_buf_append_cstr(r->out, "\"ANY\",\"allowedFunctionNames\":[");
        vmx_buf_append_raw(r->out, name);
        vmx_buf_append_cstr(r->out, "]");
    }

    vmx_buf_append_cstr(r->out, "}}");

    return 0;
}


/* starts member name of generationConfig, opening it at the first */
static void
vmx_gemini_config_member(vmx_gemini_req_t *r, size_t *n, const char *name)
{
    vmx_buf_append_cstr(r->out, (*n)++ ? ",\"" : ",\"generationConfig\":{\"");
    vmx_buf_append_cstr(r->out, name);
    vmx_buf_append_cstr(r->out, "\":");
}


static int
vmx_gemini_config_number(vmx_gemini_req_t *r, size_t *n, const char *field,
    const char *name)
{
    const vmx_json_t  *v = vmx_json_get(r->body, field);

    if (vmx_gemini_absent(v)) {
        return 0;
    }

    if (v->type != VMX_JSON_NUMBER) {
        return vmx_gemini_fail(r, "must be a number", "%s", field);
    }

    vmx_gemini_config_member(r, n, name);
    vmx_buf_append_raw(r->out, v);

    return 0;
}


static int
vmx_gemini_config_stop(vmx_gemini_req_t *r, size_t *n)
{
    const vmx_json_t  *stop, *s;

    stop = vmx_json_get(r->body, "stop");

    if (vmx_gemini_absent(stop)) {
        return 0;
    }

    if (stop->type == VMX_JSON_STRING) {
        vmx_gemini_config_member(r, n, "stopSequences");
        vmx_buf_append_cstr(r->out, "[");
        vmx_buf_append_raw(r->out, stop);
        vmx_buf_append_cstr(r->out, "]");
        return 0;
    }

    if (stop->type != VMX_JSON_ARRAY) {
        return vmx_gemini_fail(r, "stop must be a string or an array of "
                               "strings", "%s", "stop");
    }

    for (s = stop->child; s; s = s->next) {
        if (s->type != VMX_JSON_STRING) {
            return vmx_gemini_fail(r, "stop must be a string or an array of "
                                   "strings", "%s", "stop");
        }
    }

    if (stop->count) {
        vmx_gemini_config_member(r, n, "stopSequences");
        vmx_buf_append_raw(r->out, stop);
    }

    return 0;
}


static int
vmx_gemini_config_format(vmx_gemini_req_t *r, size_t *n)
{
    const vmx_json_t  *format, *type, *schema;

    format = vmx_json_get(r->body, "response_format");
    type = vmx_json_get(format, "type");

    if (vmx_gemini_absent(format) || vmx_translate_is(type, "text")) {
        return 0;
    }

    if (!vmx_translate_is(type, "json_object")
        && !vmx_translate_is(type, "json_schema"))
    {
        return vmx_gemini_fail(r, "response_format type must be text, "
                               "json_object or json_schema", "%s",
                               "response_format.type");
    }

    vmx_gemini_config_member(r, n, "responseMimeType");
    vmx_buf_append_cstr(r->out, "\"application/json\"");

    /* full JSON Schema; "responseSchema" takes only a subset */
    schema = vmx_json_get(vmx_json_get(format, "json_schema"), "schema");

    if (vmx_translate_is(type, "json_schema") && schema != NULL
        && schema->type == VMX_JSON_OBJECT)
    {
        vmx_gemini_config_member(r, n, "responseJsonSchema");
        vmx_buf_append_raw(r->out, schema);
    }

    return 0;
}


static int
vmx_gemini_generation_config(vmx_gemini_req_t *r)
{
    size_t  n = 0, before;

    if (vmx_gemini_config_number(r, &n, "temperature", "temperature") != 0
        || vmx_gemini_config_number(r, &n, "top_p", "topP") != 0)
    {
        return -1;
    }

    before = n;

    if (vmx_gemini_config_number(r, &n, "max_completion_tokens",
                                 "maxOutputTokens") != 0
        || (n == before
            && vmx_gemini_config_number(r, &n, "max_tokens",
                                        "maxOutputTokens") != 0))
    {
        return -1;
    }

    if (vmx_gemini_config_number(r, &n, "n", "candidateCount") != 0
        || vmx_gemini_config_stop(r, &n) != 0
        || vmx_gemini_config_number(r, &n, "seed", "seed") != 0
        || vmx_gemini_config_number(r, &n, "presence_penalty",
                                    "presencePenalty") != 0
        || vmx_gemini_config_number(r, &n, "frequency_penalty",
                                    "frequencyPenalty") != 0
        || vmx_gemini_config_format(r, &n) != 0)
    {
        return -1;
    }

    if (n) {
        vmx_buf_append_cstr(r->out, "}");
    }

    return 0;
}


int
vmx_gemini_request(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    vmx_translate_error_t *err)
{
    vmx_gemini_req_t   r;
    const vmx_json_t  *messages;

    memset(&r, 0, sizeof(r));
    r.tc = tc;
    r.body = tc->body;
    r.out = out;
    r.err = err;

    messages = vmx_json_get(tc->body, "messages");

    if (messages == NULL || messages->type != VMX_JSON_ARRAY) {
        return vmx_gemini_fail(&r, "messages must be an array", "%s",
                               "messages");
    }

    vmx_buf_append_cstr(out, "{");

    if (vmx_gemini_calls_init(&r, messages) != 0
        || vmx_gemini_system(&r, messages) != 0
        || vmx_gemini_contents(&r, messages) != 0
        || vmx_gemini_tools(&r) != 0
        || vmx_gemini_tool_config(&r) != 0
        || vmx_gemini_generation_config(&r) != 0)
    {
        return -1;
    }

    vmx_buf_append_cstr(out, "}");

    return vmx_buf_failed(out) ? vmx_gemini_out_of_memory(&r) : 0;
}


/* answers: generateContent responses to OpenAI's */


static int64_t
vmx_gemini_int(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);

    return (v != NULL && v->type == VMX_JSON_NUMBER && v->is_int
            && v->integer >= 0) ? v->integer : -1;
}


/* usageMetadata into usage; counts it lacks stay as they were */
static void
vmx_gemini_usage(const vmx_json_t *meta, vmx_usage_t *usage)
{
    int64_t  prompt, candidates, thoughts, total, cached;

    if (meta == NULL || meta->type != VMX_JSON_OBJECT) {
        return;
    }

    prompt = vmx_gemini_int(meta, "promptTokenCount");
    candidates = vmx_gemini_int(meta, "candidatesTokenCount");
    thoughts = vmx_gemini_int(meta, "thoughtsTokenCount");
    total = vmx_gemini_int(meta, "totalTokenCount");
    cached = vmx_gemini_int(meta, "cachedContentTokenCount");

    if (prompt >= 0) {
        usage->prompt_tokens = prompt;
    }

    /* OpenAI counts reasoning tokens as completion tokens */
    if (candidates >= 0 || thoughts >= 0) {
        usage->completion_tokens = (candidates > 0 ? candidates : 0)
                                   + (thoughts > 0 ? thoughts : 0);
    }

    if (total >= 0) {
        usage->total_tokens = total;
    }

    if (cached >= 0) {
        usage->cached_tokens = cached;
    }

    vmx_usage_reported(usage);
}


/* thought summaries are not part of the answer */
static int
vmx_gemini_thought(const vmx_json_t *part)
{
    const vmx_json_t  *thought = vmx_json_get(part, "thought");

    return thought != NULL && thought->type == VMX_JSON_TRUE;
}


/* a candidate's parts: text bytes (thoughts aside) and function calls */
static void
vmx_gemini_scan(const vmx_json_t *parts, size_t *text, unsigned *calls)
{
    const vmx_json_t  *part, *s, *call;

    *text = 0;
    *calls = 0;

    for (part = parts ? parts->child : NULL; part; part = part->next) {
        s = vmx_json_get(part, "text");
        call = vmx_json_get(part, "functionCall");

        if (s != NULL && s->type == VMX_JSON_STRING
            && !vmx_gemini_thought(part))
        {
            *text += s->str_len;
        }

        *calls += (call != NULL && call->type == VMX_JSON_OBJECT);
    }
}


static const vmx_json_t *
vmx_gemini_parts(const vmx_json_t *candidate)
{
    const vmx_json_t  *parts;

    parts = vmx_json_get(vmx_json_get(candidate, "content"), "parts");

    return (parts != NULL && parts->type == VMX_JSON_ARRAY) ? parts : NULL;
}


/* the text parts joined, as a JSON string */
static void
vmx_gemini_text(vmx_buf_t *out, const vmx_json_t *parts)
{
    const vmx_json_t  *part, *s;

    vmx_buf_append_cstr(out, "\"");

    for (part = parts->child; part; part = part->next) {
        s = vmx_json_get(part, "text");

        if (s != NULL && s->type == VMX_JSON_STRING
            && !vmx_gemini_thought(part))
        {
            vmx_gemini_append_escaped(out, s->str, s->str_len);
        }
    }

    vmx_buf_append_cstr(out, "\"");
}


/* "id":..,"type":"function","function":{..}} of a functionCall; the
   caller opened the object */
static void
vmx_gemini_tool_call(vmx_buf_t *out, const vmx_json_t *call, unsigned n)
{
    const vmx_json_t  *id, *name, *args;

    id = vmx_json_get(call, "id");
    name = vmx_json_get(call, "name");
    args = vmx_json_get(call, "args");

    vmx_buf_append_cstr(out, "\"id\":");

    if (id != NULL && id->type == VMX_JSON_STRING && id->str_len) {
        vmx_buf_append_raw(out, id);

    } else {
        vmx_buf_append_cstr(out, "\"call_");
        vmx_buf_append_int(out, n);
        vmx_buf_append_cstr(out, "\"");
    }

    vmx_buf_append_cstr(out, ",\"type\":\"function\",\"function\":{\"name\":");

    if (name != NULL && name->type == VMX_JSON_STRING) {
        vmx_buf_append_raw(out, name);

    } else {
        vmx_buf_append_cstr(out, "\"\"");
    }

    vmx_buf_append_cstr(out, ",\"arguments\":");

    if (args != NULL) {
        vmx_gemini_append_json_text(out, args->raw, args->raw_len);

    } else {
        vmx_buf_append_cstr(out, "\"{}\"");
    }

    vmx_buf_append_cstr(out, "}}");
}


/* OpenAI's finish_reason for Gemini's, NULL while there is none */
static const char *
vmx_gemini_finish_reason(const vmx_json_t *reason, unsigned tool_calls)
{
    size_t  i;

    if (reason == NULL || reason->type != VMX_JSON_STRING) {
        return NULL;
    }

    if (vmx_translate_is(reason, "MAX_TOKENS")) {
        return "length";
    }

    for (i = 0; vmx_gemini_filtered[i]; i++) {
        if (vmx_translate_is(reason, vmx_gemini_filtered[i])) {
            return "content_filter";
        }
    }

    return tool_calls ? "tool_calls" : "stop";
}


static size_t
vmx_gemini_index(const vmx_json_t *candidate, size_t pos)
{
    int64_t  index = vmx_gemini_int(candidate, "index");

    return index >= 0 ? (size_t) index : pos;
}


/* one choice of a chat.completion */
static void
vmx_gemini_choice(vmx_buf_t *out, const vmx_json_t *candidate, size_t pos,
    unsigned *call_no)
{
    const vmx_json_t  *parts, *part, *call;
    const char        *finish;
    size_t             text;
    unsigned           calls, k = 0;

    parts = vmx_gemini_parts(candidate);
    vmx_gemini_scan(parts, &text, &calls);

    vmx_buf_append_cstr(out, "{\"index\":");
    vmx_buf_append_int(out, vmx_gemini_index(candidate, pos));
    vmx_buf_append_cstr(out, ",\"message\":{\"role\":\"assistant\",\"content\":");

    if (text) {
        vmx_gemini_text(out, parts);

    } else {
        vmx_buf_append_cstr(out, calls ? "null" : "\"\"");
    }

    for (part = calls ? parts->child : NULL; part; part = part->next) {
        call = vmx_json_get(part, "functionCall");

        if (call != NULL && call->type == VMX_JSON_OBJECT) {
            vmx_buf_append_cstr(out, k++ ? ",{" : ",\"tool_calls\":[{");
            vmx_gemini_tool_call(out, call, ++*call_no);
        }
    }

    finish = vmx_gemini_finish_reason(vmx_json_get(candidate, "finishReason"),
                                      calls);

    vmx_buf_append_cstr(out, calls ? "]," : ",");
    vmx_buf_append_cstr(out, "\"refusal\":null,\"annotations\":[]},"
                             "\"logprobs\":null,\"finish_reason\":\"");
    vmx_buf_append_cstr(out, finish ? finish : "stop");
    vmx_buf_append_cstr(out, "\"}");
}


/* the lowercased status, e.g. "resource_exhausted", or NULL */
static const char *
vmx_gemini_error_code(const vmx_translate_ctx_t *tc, const vmx_json_t *status)
{
    char    *code;
    size_t   i;

    if (status == NULL || status->type != VMX_JSON_STRING
        || status->str_len == 0)
    {
        return NULL;
    }

    code = tc->alloc(tc->alloc_ctx, status->str_len + 1);
    if (code == NULL) {
        return NULL;
    }

    for (i = 0; i <= status->str_len; i++) {
        code[i] = (status->str[i] >= 'A' && status->str[i] <= 'Z')
                  ? status->str[i] - 'A' + 'a' : status->str[i];
    }

    return code;
}


/* Gemini's {"code","message","status"} as OpenAI's error, or its event */
static void
vmx_gemini_error_of(const vmx_translate_ctx_t *tc, int status,
    const vmx_json_t *error, vmx_buf_t *out, vmx_stream_error_t *event)
{
    const vmx_json_t  *message;
    const char        *code, *type;

    message = vmx_json_get(error, "message");
    code = vmx_gemini_error_code(tc, vmx_json_get(error, "status"));
    type = vmx_openai_error_type(status);

    if (message == NULL || message->type != VMX_JSON_STRING) {
        message = NULL;
    }

    if (event) {
        vmx_stream_fail(tc->alloc, tc->alloc_ctx, event, out, status,
            message ? message->str : VMX_GEMINI_UNREADABLE,
            message ? message->str_len : sizeof(VMX_GEMINI_UNREADABLE) - 1,
            code);

    } else {
        vmx_openai_error(out,
            message ? message->str : VMX_GEMINI_UNREADABLE,
            message ? message->str_len : sizeof(VMX_GEMINI_UNREADABLE) - 1,
            type, code, NULL);
    }
}


/* the HTTP status an error object inside a 2xx answer stands for */
static int
vmx_gemini_error_status(const vmx_json_t *error)
{
    int64_t  code = vmx_gemini_int(error, "code");

    return (code >= 400 && code <= 599) ? (int) code : 500;
}


/* the prompt was blocked: promptFeedback.blockReason and no candidates */
static const vmx_json_t *
vmx_gemini_blocked(const vmx_json_t *root)
{
    const vmx_json_t  *candidates, *reason;

    candidates = vmx_json_get(root, "candidates");

    if (candidates != NULL && candidates->type == VMX_JSON_ARRAY
        && candidates->count)
    {
        return NULL;
    }

    reason = vmx_json_get(vmx_json_get(root, "promptFeedback"), "blockReason");

    return (reason != NULL && reason->type == VMX_JSON_STRING) ? reason : NULL;
}


static void
vmx_gemini_blocked_error(const vmx_translate_ctx_t *tc,
    const vmx_json_t *reason, vmx_buf_t *out, vmx_stream_error_t *event)
{
    char  message[128];
    int   n;

    /* reasons are short enum names; a long one is not worth echoing, and
       cutting it could split a UTF-8 sequence */
    if (reason->str_len <= 64) {
        n = snprintf(message, sizeof(message),
                     "The prompt was blocked by the content filter (%s).",
                     reason->str);

    } else {
        n = snprintf(message, sizeof(message),
                     "The prompt was blocked by the content filter.");
    }

    if (event) {
        vmx_stream_fail(tc->alloc, tc->alloc_ctx, event, out, 400, message, n,
                        "content_filter");

    } else {
        vmx_openai_error(out, message, n, "invalid_request_error",
                         "content_filter", NULL);
    }
}


int
vmx_gemini_response(const vmx_translate_ctx_t *tc, const char *body,
    size_t len, vmx_buf_t *out, vmx_usage_t *usage)
{
    const vmx_json_t  *root, *error, *reason, *candidates, *c;
    unsigned           call_no = 0;
    size_t             pos = 0;
    int                status;

    root = vmx_translate_parse(tc, body, len);

    if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return -1;
    }

    error = vmx_json_get(root, "error");

    if (error != NULL) {
        status = vmx_gemini_error_status(error);
        vmx_gemini_error_of(tc, status, error, out, NULL);
        return vmx_buf_failed(out) ? -1 : status;
    }

    vmx_gemini_usage(vmx_json_get(root, "usageMetadata"), usage);

    reason = vmx_gemini_blocked(root);

    if (reason != NULL) {
        vmx_gemini_blocked_error(tc, reason, out, NULL);
        return vmx_buf_failed(out) ? -1 : 400;
    }

    candidates = vmx_json_get(root, "candidates");

    vmx_openai_completion_open(tc, out);

    if (candidates != NULL && candidates->type == VMX_JSON_ARRAY) {
        for (c = candidates->child; c; c = c->next, pos++) {
            vmx_buf_append_cstr(out, pos ? "," : "");
            vmx_gemini_choice(out, c, pos, &call_no);
        }
    }

    vmx_buf_append_cstr(out, "],\"usage\":");
    vmx_openai_usage(out, usage);
    vmx_buf_append_cstr(out, "}");

    return vmx_buf_failed(out) ? -1 : 0;
}


/* the stream */


void
vmx_gemini_stream_init(vmx_gemini_stream_t *s, const vmx_translate_ctx_t *tc)
{
    memset(s, 0, sizeof(*s));
    s->tc = tc;
}


/* opens a chunk of one choice up to its delta's value */
static void
vmx_gemini_delta_open(vmx_gemini_stream_t *s, vmx_buf_t *out, size_t index)
{
    vmx_openai_chunk_open(s->tc, out);
    vmx_buf_append_cstr(out, "{\"index\":");
    vmx_buf_append_int(out, index);
    vmx_buf_append_cstr(out, ",\"delta\":");
}


static void
vmx_gemini_delta_close(vmx_buf_t *out, const char *finish)
{
    vmx_buf_append_cstr(out, ",\"logprobs\":null,\"finish_reason\":");

    if (finish != NULL) {
        vmx_buf_append_json_str(out, finish, strlen(finish));

    } else {
        vmx_buf_append_cstr(out, "null");
    }

    vmx_buf_append_cstr(out, "}");
    vmx_openai_chunk_close(out);
}


static void
vmx_gemini_stream_calls(vmx_gemini_stream_t *s, const vmx_json_t *parts,
    size_t index, vmx_buf_t *out)
{
    vmx_gemini_choice_t  *c = &s->choice[index];
    const vmx_json_t     *part, *call;

    for (part = parts->child; part; part = part->next) {
        call = vmx_json_get(part, "functionCall");

        if (call == NULL || call->type != VMX_JSON_OBJECT) {
            continue;
        }

        /* Gemini sends whole calls: name and arguments in one delta */
        vmx_gemini_delta_open(s, out, index);
        vmx_buf_append_cstr(out, "{\"tool_calls\":[{\"index\":");
        vmx_buf_append_int(out, c->tool_calls++);
        vmx_buf_append_cstr(out, ",");
        vmx_gemini_tool_call(out, call, ++s->calls);
        vmx_buf_append_cstr(out, "]}");
        vmx_gemini_delta_close(out, NULL);
    }
}


static int
vmx_gemini_stream_candidate(vmx_gemini_stream_t *s,
    const vmx_json_t *candidate, size_t pos, vmx_buf_t *out)
{
    const vmx_json_t     *parts;
    vmx_gemini_choice_t  *c;
    const char           *finish;
    size_t                index, text;
    unsigned              calls;

    index = vmx_gemini_index(candidate, pos);

    if (index >= VMX_GEMINI_MAX_CHOICES) {
        return -1;
    }

    c = &s->choice[index];

    if (c->finished) {
        return 0;
    }

    if (!c->started) {
        vmx_gemini_delta_open(s, out, index);
        vmx_buf_append_cstr(out, "{\"role\":\"assistant\",\"content\":\"\","
                                 "\"refusal\":null}");
        vmx_gemini_delta_close(out, NULL);
        c->started = 1;
    }

    parts = vmx_gemini_parts(candidate);
    vmx_gemini_scan(parts, &text, &calls);

    if (text) {
        vmx_gemini_delta_open(s, out, index);
        vmx_buf_append_cstr(out, "{\"content\":");
        vmx_gemini_text(out, parts);
        vmx_buf_append_cstr(out, "}");
        vmx_gemini_delta_close(out, NULL);
    }

    if (calls) {
        vmx_gemini_stream_calls(s, parts, index, out);
    }

    finish = vmx_gemini_finish_reason(vmx_json_get(candidate, "finishReason"),
                                      c->tool_calls);

    if (finish != NULL) {
        vmx_gemini_delta_open(s, out, index);
        vmx_buf_append_cstr(out, "{}");
        vmx_gemini_delta_close(out, finish);
        c->finished = 1;
    }

    return 0;
}


int
vmx_gemini_stream_event(vmx_gemini_stream_t *s, const char *data,
    size_t data_len, vmx_buf_t *out, vmx_usage_t *usage)
{
    const vmx_json_t  *root, *error, *reason, *candidates, *c;
    size_t             pos = 0;

    if (s->done) {
        return 0;
    }

    root = vmx_translate_parse(s->tc, data, data_len);

    if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return -1;
    }

    error = vmx_json_get(root, "error");

    if (error != NULL) {
        vmx_gemini_error_of(s->tc, vmx_gemini_error_status(error), error, out,
                            &s->error);
        s->done = 1;
        return vmx_buf_failed(out) ? -1 : 0;
    }

    vmx_gemini_usage(vmx_json_get(root, "usageMetadata"), usage);

    reason = vmx_gemini_blocked(root);

    if (reason != NULL) {
        vmx_gemini_blocked_error(s->tc, reason, out, &s->error);
        s->done = 1;
        return vmx_buf_failed(out) ? -1 : 0;
    }

    candidates = vmx_json_get(root, "candidates");

    if (candidates == NULL || candidates->type != VMX_JSON_ARRAY) {
        return vmx_buf_failed(out) ? -1 : 0;
    }

    for (c = candidates->child; c; c = c->next, pos++) {
        if (vmx_gemini_stream_candidate(s, c, pos, out) != 0) {
            return -1;
        }
    }

    return vmx_buf_failed(out) ? -1 : 0;
}


void
vmx_gemini_stream_end(vmx_gemini_stream_t *s, vmx_buf_t *out,
    const vmx_usage_t *usage)
{
    if (s->done) {
        return;
    }

    if (s->tc->include_usage) {
        vmx_openai_usage_chunk(s->tc, out, usage);
    }

    vmx_openai_done(out);
    s->done = 1;
}


/* errors */

/*
 * google.rpc.RetryInfo among the error's details: its retryDelay is a
 * protobuf Duration in JSON, "20s" or "1.5s".
 */
static int64_t
vmx_gemini_retry_delay(const vmx_json_t *error)
{
    static const char   retry_info[] = "type.googleapis.com/google.rpc.RetryInfo";
    const vmx_json_t   *details, *d, *type, *delay;
    const char         *p, *end;
    int64_t             seconds;
    size_t              digits;
    int                 fraction;

    details = vmx_json_get(error, "details");

    if (details == NULL || details->type != VMX_JSON_ARRAY) {
        return -1;
    }

    for (d = details->child; d != NULL; d = d->next) {
        type = vmx_json_get(d, "@type");

        if (type != NULL && type->type == VMX_JSON_STRING
            && type->str_len == sizeof(retry_info) - 1
            && memcmp(type->str, retry_info, type->str_len) == 0)
        {
            break;
        }
    }

    delay = vmx_json_get(d, "retryDelay");

    if (delay == NULL || delay->type != VMX_JSON_STRING) {
        return -1;
    }

    p = delay->str;
    end = p + delay->str_len;
    seconds = 0;

    /* at most 12 digits: a Duration holds some 10^11 seconds */
    for (digits = 0; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 12) {
            return -1;
        }
        seconds = seconds * 10 + (*p - '0');
    }

    if (digits == 0) {
        return -1;
    }

    fraction = 0;

    if (p < end && *p == '.') {
        for (p++, digits = 0; p < end && *p >= '0' && *p <= '9'; p++) {
            fraction |= (*p != '0');
            if (++digits > 9) {
                return -1;
            }
        }

        if (digits == 0) {
            return -1;
        }
    }

    if (p + 1 != end || *p != 's') {
        return -1;
    }

    return seconds + fraction;
}


int64_t
vmx_gemini_error(const vmx_translate_ctx_t *tc, int status, const char *body,
    size_t len, vmx_buf_t *out)
{
    const vmx_json_t  *root, *error;

    root = vmx_translate_parse(tc, body, len);

    /* streamed answers wrap the error in an array */
    if (root != NULL && root->type == VMX_JSON_ARRAY) {
        root = root->child;
    }

    error = vmx_json_get(root, "error");
    vmx_gemini_error_of(tc, status, error, out, NULL);

    return vmx_gemini_retry_delay(error);
}
