/*
 * vmx_translate: the OpenAI side of every provider translation.
 */

#include <string.h>

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
