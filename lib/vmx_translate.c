/*
 * vmx_translate: see vmx_translate.h.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "vmx_bytes.h"
#include "vmx_translate.h"


void
vmx_usage_init(vmx_usage_t *usage)
{
    usage->prompt_tokens = -1;
    usage->completion_tokens = -1;
    usage->total_tokens = -1;
    usage->cached_tokens = -1;
    usage->cache_write_tokens = -1;
}


void
vmx_usage_reported(vmx_usage_t *usage)
{
    if (usage->prompt_tokens < 0) {
        usage->prompt_tokens = 0;
    }

    if (usage->completion_tokens < 0) {
        usage->completion_tokens = 0;
    }

    if (usage->total_tokens < 0) {
        usage->total_tokens = usage->prompt_tokens > INT64_MAX
                                                     - usage->completion_tokens
                              ? INT64_MAX
                              : usage->prompt_tokens
                                + usage->completion_tokens;
    }
}


/*
 * The provider side.
 */

int
vmx_translate_is(const vmx_json_t *v, const char *lit)
{
    size_t  n = strlen(lit);

    return v != NULL && v->type == VMX_JSON_STRING && v->str_len == n
           && memcmp(v->str, lit, n) == 0;
}


int
vmx_translate_system_role(const vmx_json_t *role)
{
    return vmx_translate_is(role, "system")
           || vmx_translate_is(role, "developer");
}


int
vmx_translate_named(const char *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}


const vmx_json_t *
vmx_translate_member(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);

    return (v != NULL && v->type != VMX_JSON_NULL) ? v : NULL;
}


const vmx_json_t *
vmx_translate_string(const vmx_json_t *obj, const char *name)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);

    return (v != NULL && v->type == VMX_JSON_STRING) ? v : NULL;
}


vmx_json_t *
vmx_translate_parse(const vmx_translate_ctx_t *tc, const char *text,
    size_t len)
{
    vmx_json_error_t  jerr;

    return vmx_json_parse(text, len, tc->alloc, tc->alloc_ctx, 0, &jerr);
}


int
vmx_translate_fail(const vmx_translate_ctx_t *tc, vmx_translate_error_t *err,
    const char *message, const char *param_fmt, ...)
{
    va_list   ap;
    char     *param;
    int       n;

    err->message = message;
    err->param = NULL;

    va_start(ap, param_fmt);
    n = vsnprintf(NULL, 0, param_fmt, ap);
    va_end(ap);

    if (n < 0) {
        return -1;
    }

    param = tc->alloc(tc->alloc_ctx, (size_t) n + 1);
    if (param == NULL) {
        return -1;
    }

    va_start(ap, param_fmt);
    vsnprintf(param, (size_t) n + 1, param_fmt, ap);
    va_end(ap);

    err->param = param;

    return -1;
}


int
vmx_translate_refused(const vmx_translate_ctx_t *tc,
    vmx_translate_error_t *err, const vmx_json_t *body)
{
    const vmx_json_t  *n, *logprobs;

    n = vmx_translate_member(body, "n");
    if (n != NULL && !(n->type == VMX_JSON_NUMBER && n->is_int
                       && n->integer == 1))
    {
        return vmx_translate_fail(tc, err, "this model answers with one "
                                  "choice only (n=1)", "n");
    }

    logprobs = vmx_translate_member(body, "logprobs");
    if (logprobs != NULL && logprobs->type != VMX_JSON_FALSE) {
        return vmx_translate_fail(tc, err, "this model does not return log "
                                  "probabilities", "logprobs");
    }

    return 0;
}


int
vmx_translate_tool_call(const vmx_translate_ctx_t *tc,
    vmx_translate_error_t *err, const vmx_json_t *call, size_t i, size_t j,
    const vmx_json_t **id, const vmx_json_t **name, const vmx_json_t **input)
{
    const vmx_json_t  *type, *fn, *args;

    type = vmx_translate_member(call, "type");
    fn = vmx_json_get(call, "function");
    *id = vmx_translate_string(call, "id");
    *name = vmx_translate_string(fn, "name");
    args = vmx_translate_member(fn, "arguments");
    *input = NULL;

    if (*id == NULL || *name == NULL
        || (type != NULL && !vmx_translate_is(type, "function")))
    {
        return vmx_translate_fail(tc, err, "a tool call needs an id, type "
                                  "\"function\" and a function name",
                                  "messages[%zu].tool_calls[%zu]", i, j);
    }

    /* "" is what some clients send for a call without arguments */
    if (args != NULL && !(args->type == VMX_JSON_STRING && args->str_len == 0))
    {
        *input = (args->type == VMX_JSON_STRING)
                 ? vmx_translate_parse(tc, args->str, args->str_len) : NULL;

        if (*input == NULL || (*input)->type != VMX_JSON_OBJECT) {
            return vmx_translate_fail(tc, err,
                       "function arguments must be a JSON object",
                       "messages[%zu].tool_calls[%zu].function.arguments",
                       i, j);
        }
    }

    return 0;
}


int
vmx_translate_data_url(const char *url, size_t len, const char **media,
    size_t *media_len, const char **data, size_t *data_len)
{
    const char  *comma, *end;

    *media = url + 5;
    comma = memchr(*media, ',', len - 5);

    if (comma == NULL || comma - *media < 7
        || strncasecmp(comma - 7, ";base64", 7) != 0)
    {
        return -1;
    }

    for (end = *media; *end != ';'; end++) { /* void */ }

    *media_len = (size_t) (end - *media);
    *data = comma + 1;
    *data_len = (size_t) (url + len - comma - 1);

    return 0;
}


/*
 * The OpenAI side.
 */


static void
vmx_openai_head(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    const char *object)
{
    vmx_buf_append_cstr(out, "{\"id\":");
    vmx_buf_append_json_str(out, tc->id, tc->id_len);
    vmx_buf_append_cstr(out, ",\"object\":\"");
    vmx_buf_append_cstr(out, object);
    vmx_buf_append_cstr(out, "\",\"created\":");
    vmx_buf_append_int(out, tc->created);
    vmx_buf_append_cstr(out, ",\"model\":");
    vmx_buf_append_json_str(out, tc->model, tc->model_len);
    vmx_buf_append_cstr(out, ",\"system_fingerprint\":null,\"choices\":[");
}


void
vmx_openai_chunk_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out)
{
    vmx_buf_append_cstr(out, "data: ");
    vmx_openai_head(tc, out, "chat.completion.chunk");
}


void
vmx_openai_chunk_close(vmx_buf_t *out)
{
    vmx_buf_append_cstr(out, "]}\n\n");
}


void
vmx_openai_delta_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out)
{
    vmx_openai_chunk_open(tc, out);
    vmx_buf_append_cstr(out, "{\"index\":0,\"delta\":{");
}


void
vmx_openai_delta_close(vmx_buf_t *out, const char *finish_reason)
{
    vmx_buf_append_cstr(out, "},\"logprobs\":null,\"finish_reason\":");

    if (finish_reason != NULL) {
        vmx_buf_append_cstr(out, "\"");
        vmx_buf_append_cstr(out, finish_reason);
        vmx_buf_append_cstr(out, "\"");

    } else {
        vmx_buf_append_cstr(out, "null");
    }

    vmx_buf_append_cstr(out, "}");
    vmx_openai_chunk_close(out);
}


void
vmx_openai_role_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out)
{
    vmx_openai_delta_open(tc, out);
    vmx_buf_append_cstr(out, "\"role\":\"assistant\",\"content\":\"\","
                             "\"refusal\":null");
    vmx_openai_delta_close(out, NULL);
}


void
vmx_openai_completion_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out)
{
    vmx_openai_head(tc, out, "chat.completion");
}


static int64_t
vmx_count(int64_t n)
{
    return n < 0 ? 0 : n;
}


void
vmx_openai_usage(vmx_buf_t *out, const vmx_usage_t *usage)
{
    int64_t  total;

    total = usage->total_tokens >= 0
            ? usage->total_tokens
            : vmx_count(usage->prompt_tokens)
              + vmx_count(usage->completion_tokens);

    vmx_buf_append_cstr(out, "{\"prompt_tokens\":");
    vmx_buf_append_int(out, vmx_count(usage->prompt_tokens));
    vmx_buf_append_cstr(out, ",\"completion_tokens\":");
    vmx_buf_append_int(out, vmx_count(usage->completion_tokens));
    vmx_buf_append_cstr(out, ",\"total_tokens\":");
    vmx_buf_append_int(out, total);
    vmx_buf_append_cstr(out, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    vmx_buf_append_int(out, vmx_count(usage->cached_tokens));
    vmx_buf_append_cstr(out, "}}");
}


void
vmx_openai_usage_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    const vmx_usage_t *usage)
{
    vmx_openai_chunk_open(tc, out);
    vmx_buf_append_cstr(out, "],\"usage\":");
    vmx_openai_usage(out, usage);
    vmx_buf_append_cstr(out, "}\n\n");
}


void
vmx_openai_message_open(const vmx_translate_ctx_t *tc, vmx_buf_t *out)
{
    vmx_openai_completion_open(tc, out);
    vmx_buf_append_cstr(out, "{\"index\":0,\"message\":"
                             "{\"role\":\"assistant\",\"content\":");
}


void
vmx_openai_message_close(vmx_buf_t *out, const char *finish_reason)
{
    vmx_buf_append_cstr(out, "},\"logprobs\":null,\"finish_reason\":\"");
    vmx_buf_append_cstr(out, finish_reason);
    vmx_buf_append_cstr(out, "\"}],\"usage\":");
}


void
vmx_openai_tool_call(vmx_buf_t *out, int first, const vmx_json_t *id,
    const vmx_json_t *name, const vmx_json_t *input)
{
    vmx_buf_append_cstr(out, first ? "{\"id\":" : ",{\"id\":");
    vmx_buf_append_raw(out, id);
    vmx_buf_append_cstr(out, ",\"type\":\"function\",\"function\":"
                             "{\"name\":");
    vmx_buf_append_raw(out, name);
    vmx_buf_append_cstr(out, ",\"arguments\":");

    if (input != NULL) {
        vmx_buf_append_json_str(out, input->raw, input->raw_len);

    } else {
        vmx_buf_append_cstr(out, "\"{}\"");
    }

    vmx_buf_append_cstr(out, "}}");
}


void
vmx_openai_content_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    const vmx_json_t *text)
{
    vmx_openai_delta_open(tc, out);
    vmx_buf_append_cstr(out, "\"content\":");
    vmx_buf_append_raw(out, text);
    vmx_openai_delta_close(out, NULL);
}


void
vmx_openai_tool_call_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    int64_t index, const vmx_json_t *id, const vmx_json_t *name)
{
    vmx_openai_delta_open(tc, out);
    vmx_buf_append_cstr(out, "\"tool_calls\":[{\"index\":");
    vmx_buf_append_int(out, index);
    vmx_buf_append_cstr(out, ",\"id\":");
    vmx_buf_append_raw(out, id);
    vmx_buf_append_cstr(out, ",\"type\":\"function\",\"function\":{\"name\":");
    vmx_buf_append_raw(out, name);
    vmx_buf_append_cstr(out, ",\"arguments\":\"\"}}]");
    vmx_openai_delta_close(out, NULL);
}


void
vmx_openai_arguments_chunk(const vmx_translate_ctx_t *tc, vmx_buf_t *out,
    int64_t index, const vmx_json_t *arguments)
{
    vmx_openai_delta_open(tc, out);
    vmx_buf_append_cstr(out, "\"tool_calls\":[{\"index\":");
    vmx_buf_append_int(out, index);
    vmx_buf_append_cstr(out, ",\"function\":{\"arguments\":");
    vmx_buf_append_raw(out, arguments);
    vmx_buf_append_cstr(out, "}}]");
    vmx_openai_delta_close(out, NULL);
}


void
vmx_openai_done(vmx_buf_t *out)
{
    vmx_buf_append_cstr(out, "data: [DONE]\n\n");
}


void
vmx_openai_error(vmx_buf_t *out, const char *message, size_t len,
    const char *type, const char *code, const char *param)
{
    vmx_buf_append_cstr(out, "{\"error\":{\"message\":");
    vmx_buf_append_json_str(out, message, len);
    vmx_buf_append_cstr(out, ",\"type\":");
    vmx_buf_append_json_str(out, type, strlen(type));
    vmx_buf_append_cstr(out, ",\"param\":");

    if (param) {
        vmx_buf_append_json_str(out, param, strlen(param));

    } else {
        vmx_buf_append_cstr(out, "null");
    }

    vmx_buf_append_cstr(out, ",\"code\":");

    if (code) {
        vmx_buf_append_json_str(out, code, strlen(code));

    } else {
        vmx_buf_append_cstr(out, "null");
    }

    vmx_buf_append_cstr(out, "}}");
}


void
vmx_openai_error_event(vmx_buf_t *out, const char *message, size_t len,
    const char *type, const char *code)
{
    vmx_buf_append_cstr(out, "data: ");
    vmx_openai_error(out, message, len, type, code, NULL);
    vmx_buf_append_cstr(out, "\n\n");
}


/* "key": after a comma unless it is the object's first member */

static void
vmx_translate_key(vmx_buf_t *out, int *first, const char *key, size_t len)
{
    if (!*first) {
        vmx_buf_append_cstr(out, ",");
    }

    *first = 0;

    vmx_buf_append_json_str(out, key, len);
    vmx_buf_append_cstr(out, ":");
}


int
vmx_openai_error_complete(vmx_buf_t *out, const vmx_json_t *root,
    const char *type, const char *message)
{
    int                first, inner;
    const vmx_json_t  *error, *m, *e, *t;

    error = vmx_json_get(root, "error");

    if (error == NULL
        || (error->type != VMX_JSON_OBJECT && error->type != VMX_JSON_STRING))
    {
        return 0;
    }

    t = vmx_json_get(error, "type");

    if (error->type == VMX_JSON_OBJECT && vmx_json_get(error, "message")
        && t && vmx_json_get(error, "param") && vmx_json_get(error, "code"))
    {
        return 0;
    }

    vmx_buf_append_cstr(out, "{");

    for (first = 1, m = root->child; m; m = m->next) {
        vmx_translate_key(out, &first, m->key, m->key_len);

        if (m != error) {
            vmx_buf_append_raw(out, m);
            continue;
        }

        vmx_buf_append_cstr(out, "{");
        inner = 1;

        if (error->type == VMX_JSON_STRING) {
            vmx_translate_key(out, &inner, "message", 7);
            vmx_buf_append_raw(out, error);

        } else {
            for (e = error->child; e; e = e->next) {
                vmx_translate_key(out, &inner, e->key, e->key_len);
                vmx_buf_append_raw(out, e);
            }

            if (vmx_json_get(error, "message") == NULL) {
                vmx_translate_key(out, &inner, "message", 7);
                vmx_buf_append_json_str(out, message, strlen(message));
            }
        }

        if (t == NULL) {
            vmx_translate_key(out, &inner, "type", 4);
            vmx_buf_append_json_str(out, type, strlen(type));
        }

        if (vmx_json_get(error, "param") == NULL) {
            vmx_translate_key(out, &inner, "param", 5);
            vmx_buf_append_cstr(out, "null");
        }

        if (vmx_json_get(error, "code") == NULL) {
            /* the SDKs show the code: without one, the type says the most */
            vmx_translate_key(out, &inner, "code", 4);

            if (t && t->type == VMX_JSON_STRING) {
                vmx_buf_append_raw(out, t);

            } else {
                vmx_buf_append_cstr(out, "null");
            }
        }

        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "}");

    return 1;
}


int
vmx_openai_chunk_without_usage(vmx_buf_t *out, const vmx_json_t *root)
{
    int                first, inner;
    const vmx_json_t  *m, *g, *x_groq;

    if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return 0;
    }

    x_groq = vmx_json_get(root, "x_groq");

    if (vmx_json_get(x_groq, "usage") == NULL) {
        x_groq = NULL;
    }

    if (vmx_json_get(root, "usage") == NULL && x_groq == NULL) {
        return 0;
    }

    vmx_buf_append_cstr(out, "{");

    for (first = 1, m = root->child; m; m = m->next) {
        if (vmx_translate_named(m->key, m->key_len, "usage")) {
            continue;
        }

        vmx_translate_key(out, &first, m->key, m->key_len);

        if (m != x_groq) {
            vmx_buf_append_raw(out, m);
            continue;
        }

        vmx_buf_append_cstr(out, "{");

        for (inner = 1, g = m->child; g; g = g->next) {
            if (!vmx_translate_named(g->key, g->key_len, "usage")) {
                vmx_translate_key(out, &inner, g->key, g->key_len);
                vmx_buf_append_raw(out, g);
            }
        }

        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "}");

    return 1;
}


const char *
vmx_openai_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}


/*
 * Errors inside a stream.
 */

static const char *
vmx_stream_copy(vmx_json_alloc_pt alloc, void *alloc_ctx, const char *s,
    size_t len)
{
    char  *p;

    p = alloc(alloc_ctx, len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


void
vmx_stream_fail(vmx_json_alloc_pt alloc, void *alloc_ctx,
    vmx_stream_error_t *e, vmx_buf_t *out, int status, const char *message,
    size_t len, const char *code)
{
    vmx_openai_error_event(out, message, len, vmx_openai_error_type(status),
                           code);

    e->status = vmx_stream_error_status(status, code);
    e->message = vmx_stream_copy(alloc, alloc_ctx, message, len);
    e->message_len = e->message ? len : 0;
    e->code = code ? vmx_stream_copy(alloc, alloc_ctx, code, strlen(code))
                   : NULL;
    e->code_len = e->code ? strlen(code) : 0;
}


int
vmx_stream_error_status(int status, const char *code)
{
    static const char  *throttled[] = {
        "overloaded_error", "rate_limit_error", "rate_limit_exceeded",
        "resource_exhausted"
    };
    size_t  i;

    for (i = 0; code != NULL && i < sizeof(throttled) / sizeof(throttled[0]);
         i++)
    {
        if (strcasecmp(code, throttled[i]) == 0) {
            return 429;
        }
    }

    if (status == 429 || status == 503) {
        return status;
    }

    if (status >= 400 && status < 500 && status != 401 && status != 403) {
        return status;
    }

    return 502;
}


int
vmx_type_status(const vmx_type_status_t *table, size_t n, const char *type)
{
    size_t  i;

    for (i = 0; type != NULL && i < n; i++) {
        if (strcmp(type, table[i].type) == 0) {
            return table[i].status;
        }
    }

    return 500;
}


/* the HTTP status an OpenAI error type stands for */
static int
vmx_openai_type_status(const char *type)
{
    static const vmx_type_status_t  statuses[] = {
        { "invalid_request_error", 400 },
        { "authentication_error", 401 },
        { "permission_error", 403 },
        { "not_found_error", 404 },
        { "rate_limit_error", 429 },
        { "service_unavailable", 503 },
        { "service_unavailable_error", 503 },
    };
    return vmx_type_status(statuses, sizeof(statuses) / sizeof(statuses[0]),
                           type);
}


int
vmx_openai_stream_error(const char *data, size_t len, vmx_json_alloc_pt alloc,
    void *alloc_ctx, vmx_stream_error_t *e)
{
    const char        *p, *last, *type, *code, *message;
    size_t             message_len;
    vmx_json_t        *root, *error, *v;
    vmx_json_error_t   jerr;
    int                status;

    /* a cheap look before parsing every chunk: {"error" first */

    p = data;
    last = data + len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }

    if (p == last || *p++ != '{') {
        return 0;
    }

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }

    if ((size_t) (last - p) < sizeof("\"error\"") - 1
        || memcmp(p, "\"error\"", sizeof("\"error\"") - 1) != 0)
    {
        return 0;
    }

    root = vmx_json_parse(data, len, alloc, alloc_ctx, 64, &jerr);
    error = vmx_json_get(root, "error");

    if (error == NULL) {
        return 0;
    }

    type = vmx_json_get_str(error, "type", NULL);
    code = vmx_json_get_str(error, "code", NULL);
    message = vmx_json_get_str(error, "message", &message_len);

    if (error->type == VMX_JSON_STRING) {
        /* {"error": "text"}, as some OpenAI-compatible servers send */
        message = error->str;
        message_len = error->str_len;
    }

    if (message == NULL) {
        message = "provider error";
        message_len = sizeof("provider error") - 1;
    }

    status = vmx_openai_type_status(type);

    v = vmx_json_get(error, "code");
    if (v == NULL || !v->is_int) {
        v = vmx_json_get(error, "status");
    }

    if (v != NULL && v->is_int && v->integer >= 400 && v->integer <= 599) {
        status = (int) v->integer;
    }

    code = code ? code : type;

    e->status = vmx_stream_error_status(status, code);
    e->message = vmx_stream_copy(alloc, alloc_ctx, message, message_len);
    e->message_len = e->message ? message_len : 0;
    e->code = code ? vmx_stream_copy(alloc, alloc_ctx, code, strlen(code))
                   : NULL;
    e->code_len = e->code ? strlen(code) : 0;

    return 1;
}


/* a chunk that is more than a role announcement */
static int
vmx_openai_chunk_substantive(const vmx_json_t *chunk)
{
    const vmx_json_t  *choices, *c, *delta, *m;

    if (chunk == NULL || chunk->type != VMX_JSON_OBJECT
        || vmx_translate_member(chunk, "usage") != NULL
        || vmx_json_get(chunk, "error") != NULL)
    {
        /* unreadable output is passed on, not held */
        return 1;
    }

    choices = vmx_json_get(chunk, "choices");

    if (choices == NULL || choices->type != VMX_JSON_ARRAY) {
        return 1;
    }

    for (c = choices->child; c; c = c->next) {

        if (vmx_translate_member(c, "finish_reason") != NULL) {
            return 1;
        }

        delta = vmx_json_get(c, "delta");

        for (m = delta ? delta->child : NULL; m; m = m->next) {
            if (m->type == VMX_JSON_NULL
                || (m->key_len == 4 && memcmp(m->key, "role", 4) == 0)
                || (m->type == VMX_JSON_STRING && m->str_len == 0))
            {
                continue;
            }

            return 1;
        }
    }

    return 0;
}


int
vmx_openai_stream_substantive(const char *out, size_t len,
    vmx_json_alloc_pt alloc, void *alloc_ctx)
{
    const char        *p, *last, *end;
    vmx_json_error_t   jerr;

    last = out + len;

    for (p = out; p < last; p = end + 2) {
        end = vmx_bytes_find(p, last - p, "\n\n", 2);
        if (end == NULL) {
            end = last;
        }

        if (end - p < 6 || memcmp(p, "data: ", 6) != 0) {
            if (end == last) {
                break;
            }

            continue;
        }

        if (vmx_openai_chunk_substantive(vmx_json_parse(p + 6, end - p - 6,
                                                        alloc, alloc_ctx, 64,
                                                        &jerr)))
        {
            /* [DONE] is no JSON: it counts too */
            return 1;
        }

        if (end == last) {
            break;
        }
    }

    return 0;
}
