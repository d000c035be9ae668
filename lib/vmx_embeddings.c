/*
 * vmx_embeddings: see vmx_embeddings.h.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE      /* memmem(), also when nginx's build compiles us */
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmx_embeddings.h"
#include "vmx_sigv4.h"


/* the Bedrock models translated, found anywhere in the model id so that
   inference profiles ("us.") and ARNs match too */
static const struct {
    const char               *id;
    vmx_embeddings_family_e   family;
} vmx_emb_bedrock_models[] = {
    { "amazon.titan-embed-text-v2", VMX_EMBEDDINGS_TITAN },
    { "cohere.embed-english-v3", VMX_EMBEDDINGS_COHERE },
    { "cohere.embed-multilingual-v3", VMX_EMBEDDINGS_COHERE },
};

static const char  vmx_emb_base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


/*
 * The request.
 */

static int
vmx_emb_token_ids(const vmx_translate_ctx_t *tc, vmx_translate_error_t *err,
    const vmx_json_t *ids, size_t *total, const char *param_fmt, size_t i)
{
    const vmx_json_t  *id;

    if (ids->count == 0) {
        return vmx_translate_fail(tc, err, "an input must not be empty",
                                  param_fmt, i);
    }

    if (ids->count > VMX_EMBEDDINGS_MAX_TOKENS - *total) {
        return vmx_translate_fail(tc, err, "input has more token ids than "
                                  "the gateway accepts (300000)", "input");
    }

    *total += ids->count;

    for (id = ids->child; id != NULL; id = id->next) {
        if (id->type != VMX_JSON_NUMBER || !id->is_int || id->integer < 0
            || id->integer > INT32_MAX)
        {
            return vmx_translate_fail(tc, err, "a token id must be a "
                                      "non-negative integer", param_fmt, i);
        }
    }

    return 0;
}


/* the array's items: all non-empty strings, or all arrays of token ids */
static int
vmx_emb_inputs(const vmx_translate_ctx_t *tc, vmx_embeddings_request_t *r,
    vmx_translate_error_t *err)
{
    size_t             i, text = 0, tokens = 0;
    vmx_json_type_e    kind;
    const vmx_json_t  *item;

    if (r->input->count > VMX_EMBEDDINGS_MAX_INPUTS) {
        return vmx_translate_fail(tc, err, "input must have at most 2048 "
                                  "items", "input");
    }

    kind = r->input->child->type;

    if (kind != VMX_JSON_STRING && kind != VMX_JSON_ARRAY) {
        return vmx_translate_fail(tc, err, "input must be a string, an array "
                                  "of strings, an array of token ids or an "
                                  "array of arrays of token ids", "input[0]");
    }

    r->tokens = (kind == VMX_JSON_ARRAY);

    for (i = 0, item = r->input->child; item != NULL; i++, item = item->next) {

        if (item->type != kind) {
            return vmx_translate_fail(tc, err, kind == VMX_JSON_STRING
                                      ? "every input must be a string"
                                      : "every input must be an array of "
                                        "token ids", "input[%zu]", i);
        }

        if (kind == VMX_JSON_ARRAY) {
            if (vmx_emb_token_ids(tc, err, item, &tokens, "input[%zu]", i)
                != 0)
            {
                return -1;
            }

            continue;
        }

        if (item->str_len == 0) {
            return vmx_translate_fail(tc, err, "an input must not be empty",
                                      "input[%zu]", i);
        }

        text += item->str_len;

        if (text > VMX_EMBEDDINGS_MAX_TEXT) {
            return vmx_translate_fail(tc, err, "input has more text than the "
                                      "gateway accepts (4 MiB)", "input");
        }
    }

    r->count = r->input->count;

    return 0;
}


static int
vmx_emb_input(const vmx_translate_ctx_t *tc, vmx_embeddings_request_t *r,
    vmx_translate_error_t *err)
{
    size_t             tokens = 0;
    const vmx_json_t  *input = r->input;

    if (input == NULL) {
        return vmx_translate_fail(tc, err, "input is required", "input");
    }

    if (input->type == VMX_JSON_STRING) {
        if (input->str_len == 0) {
            return vmx_translate_fail(tc, err, "an input must not be empty",
                                      "input");
        }

        if (input->str_len > VMX_EMBEDDINGS_MAX_TEXT) {
            return vmx_translate_fail(tc, err, "input has more text than the "
                                      "gateway accepts (4 MiB)", "input");
        }

        r->count = 1;

        return 0;
    }

    if (input->type != VMX_JSON_ARRAY || input->count == 0) {
        return vmx_translate_fail(tc, err, "input must be a string, an array "
                                  "of strings, an array of token ids or an "
                                  "array of arrays of token ids", "input");
    }

    if (input->child->type != VMX_JSON_NUMBER) {
        return vmx_emb_inputs(tc, r, err);
    }

    /* one input of token ids */

    r->tokens = 1;
    r->count = 1;

    return vmx_emb_token_ids(tc, err, input, &tokens, "input", 0);
}


int
vmx_embeddings_parse(const vmx_translate_ctx_t *tc,
    vmx_embeddings_request_t *r, vmx_translate_error_t *err)
{
    const vmx_json_t  *body = tc->body, *model, *dimensions, *format, *user;

    memset(r, 0, sizeof(vmx_embeddings_request_t));

    if (body == NULL || body->type != VMX_JSON_OBJECT) {
        err->message = "the request body must be a JSON object";
        err->param = NULL;
        return -1;
    }

    model = vmx_translate_string(body, "model");
    if (model == NULL || model->str_len == 0) {
        return vmx_translate_fail(tc, err, "model must be a non-empty string",
                                  "model");
    }

    r->input = vmx_translate_member(body, "input");

    if (vmx_emb_input(tc, r, err) != 0) {
        return -1;
    }

    dimensions = vmx_translate_member(body, "dimensions");
    if (dimensions != NULL) {
        if (dimensions->type != VMX_JSON_NUMBER || !dimensions->is_int
            || dimensions->integer < 1
            || dimensions->integer > VMX_EMBEDDINGS_MAX_LENGTH)
        {
            return vmx_translate_fail(tc, err, "dimensions must be an integer "
                                      "from 1 to 16384", "dimensions");
        }

        r->dimensions = dimensions->integer;
    }

    format = vmx_translate_member(body, "encoding_format");
    if (format != NULL) {
        if (vmx_translate_is(format, "base64")) {
            r->base64 = 1;

        } else if (!vmx_translate_is(format, "float")) {
            return vmx_translate_fail(tc, err, "encoding_format must be "
                                      "\"float\" or \"base64\"",
                                      "encoding_format");
        }
    }

    user = vmx_translate_member(body, "user");
    if (user != NULL && user->type != VMX_JSON_STRING) {
        return vmx_translate_fail(tc, err, "user must be a string", "user");
    }

    return 0;
}


const vmx_json_t *
vmx_embeddings_input(const vmx_embeddings_request_t *r, size_t i)
{
    if (r->input->type == VMX_JSON_STRING
        || r->input->child->type == VMX_JSON_NUMBER)
    {
        return (i == 0) ? r->input : NULL;
    }

    return vmx_json_at(r->input, i);
}


/* Gemini and Bedrock embed text only */
static int
vmx_emb_text_only(const vmx_translate_ctx_t *tc,
    const vmx_embeddings_request_t *r, vmx_translate_error_t *err)
{
    if (r->tokens) {
        return vmx_translate_fail(tc, err, "this model takes text, not token "
                                  "ids", "input");
    }

    return 0;
}


/* the inputs of call of r in batches of size: the first (*first) and
   how many */
static size_t
vmx_emb_batch(const vmx_embeddings_request_t *r, size_t call, size_t size,
    size_t *first)
{
    size_t  n;

    *first = call * size;
    n = r->count - *first;

    return (n < size) ? n : size;
}


/* the calls of r in batches of size */
static size_t
vmx_emb_calls(const vmx_embeddings_request_t *r, size_t size)
{
    return (r->count + size - 1) / size;
}


/*
 * Gemini.
 */

const char *
vmx_embeddings_gemini_method(const vmx_embeddings_request_t *r)
{
    return (r->input->type == VMX_JSON_STRING) ? "embedContent"
                                               : "batchEmbedContents";
}


/* "content":{"parts":[{"text":..}]} and the dimensionality */
static void
vmx_emb_gemini_content(const vmx_embeddings_request_t *r,
    const vmx_json_t *text, vmx_buf_t *out)
{
    vmx_buf_append_cstr(out, "\"content\":{\"parts\":[{\"text\":");
    vmx_buf_append_raw(out, text);
    vmx_buf_append_cstr(out, "}]}");

    if (r->dimensions) {
        vmx_buf_append_cstr(out, ",\"outputDimensionality\":");
        vmx_buf_append_int(out, r->dimensions);
    }
}


size_t
vmx_embeddings_gemini_calls(const vmx_embeddings_request_t *r)
{
    return vmx_emb_calls(r, VMX_EMBEDDINGS_GEMINI_BATCH);
}


int
vmx_embeddings_gemini_request(const vmx_translate_ctx_t *tc,
    const vmx_embeddings_request_t *r, size_t call, vmx_buf_t *out,
    vmx_translate_error_t *err)
{
    vmx_buf_t          model;
    size_t             i, first, n;
    const vmx_json_t  *text;

    if (vmx_emb_text_only(tc, r, err) != 0) {
        return -1;
    }

    if (r->input->type == VMX_JSON_STRING) {
        vmx_buf_append_cstr(out, "{");
        vmx_emb_gemini_content(r, r->input, out);
        vmx_buf_append_cstr(out, "}");
        return 0;
    }

    /* "models/<model>" as a JSON string, written in every request */
    vmx_buf_init(&model, tc->alloc, tc->alloc_ctx, 0);
    vmx_buf_append_cstr(&model, "models/");
    vmx_buf_append(&model, tc->model, tc->model_len);

    if (vmx_buf_failed(&model)) {
        out->failed = 1;
        return 0;
    }

    n = vmx_emb_batch(r, call, VMX_EMBEDDINGS_GEMINI_BATCH, &first);
    text = vmx_embeddings_input(r, first);

    vmx_buf_append_cstr(out, "{\"requests\":[");

    for (i = 0; i < n; i++, text = text->next) {
        vmx_buf_append_cstr(out, i ? ",{\"model\":" : "{\"model\":");
        vmx_buf_append_json_str(out, model.data, model.len);
        vmx_buf_append_cstr(out, ",");
        vmx_emb_gemini_content(r, text, out);
        vmx_buf_append_cstr(out, "}");
    }

    vmx_buf_append_cstr(out, "]}");

    return 0;
}


/*
 * The answer.
 */

void
vmx_embeddings_answer_init(vmx_embeddings_answer_t *a,
    const vmx_translate_ctx_t *tc, const vmx_embeddings_request_t *r,
    vmx_buf_t *out)
{
    a->tc = tc;
    a->req = r;
    a->written = 0;
    a->length = 0;
    a->prompt_tokens = -1;

    vmx_buf_append_cstr(out, "{\"object\":\"list\",\"data\":[");
}


/* n bytes (at most 12, so that only the last call pads) in base64 */
static void
vmx_emb_base64(vmx_buf_t *out, const unsigned char *s, size_t n)
{
    char      *p;
    uint32_t   v;
    size_t     i;

    p = vmx_buf_reserve(out, 16);
    if (p == NULL) {
        return;
    }

    for (i = 0; i < n; i += 3) {
        v = (uint32_t) s[i] << 16;
        v |= (i + 1 < n) ? (uint32_t) s[i + 1] << 8 : 0;
        v |= (i + 2 < n) ? s[i + 2] : 0;

        *p++ = vmx_emb_base64_digits[v >> 18];
        *p++ = vmx_emb_base64_digits[(v >> 12) & 0x3f];
        *p++ = (i + 1 < n) ? vmx_emb_base64_digits[(v >> 6) & 0x3f] : '=';
        *p++ = (i + 2 < n) ? vmx_emb_base64_digits[v & 0x3f] : '=';
        out->len += 4;
    }
}


/* f in the fewest digits (6 to 9: a float32 needs at most 9) that read
   back as f */
static void
vmx_emb_float(vmx_buf_t *out, float f)
{
    char  text[32];
    int   digits, n = 0;

    for (digits = 6; digits <= 9; digits++) {
        n = snprintf(text, sizeof(text), "%.*g", digits, (double) f);

        if (strtof(text, NULL) == f) {
            break;
        }
    }

    vmx_buf_append(out, text, (size_t) n);
}


int
vmx_embeddings_vector(vmx_buf_t *out, const vmx_json_t *values, int base64)
{
    unsigned char      bytes[12];
    uint32_t           bits;
    size_t             n = 0;
    float              f;
    const vmx_json_t  *v;

    vmx_buf_append_cstr(out, base64 ? "\"" : "[");

    for (v = values->child; v != NULL; v = v->next) {
        if (v->type != VMX_JSON_NUMBER) {
            return -1;
        }

        f = (float) v->num;
        if (!isfinite(f)) {
            return -1;
        }

        if (!base64) {
            if (v != values->child) {
                vmx_buf_append_cstr(out, ",");
            }

            vmx_emb_float(out, f);
            continue;
        }

        /* little-endian float32, three at a time: 12 bytes, 16 digits */
        memcpy(&bits, &f, sizeof(bits));
        bytes[n++] = (unsigned char) bits;
        bytes[n++] = (unsigned char) (bits >> 8);
        bytes[n++] = (unsigned char) (bits >> 16);
        bytes[n++] = (unsigned char) (bits >> 24);

        if (n == sizeof(bytes)) {
            vmx_emb_base64(out, bytes, n);
            n = 0;
        }
    }

    if (n) {
        vmx_emb_base64(out, bytes, n);
    }

    vmx_buf_append_cstr(out, base64 ? "\"" : "]");

    return 0;
}


/* the next input's vector: as long as asked and as the others */
static int
vmx_emb_item(vmx_embeddings_answer_t *a, const vmx_json_t *values,
    vmx_buf_t *out)
{
    const vmx_embeddings_request_t  *r = a->req;

    if (values == NULL || values->type != VMX_JSON_ARRAY
        || values->count == 0 || values->count > VMX_EMBEDDINGS_MAX_LENGTH
        || a->written >= r->count
        || (r->dimensions && values->count != (size_t) r->dimensions)
        || (a->length && values->count != a->length))
    {
        return -1;
    }

    a->length = values->count;

    vmx_buf_append_cstr(out, a->written ? ",{\"object\":\"embedding\","
                                          "\"index\":"
                                        : "{\"object\":\"embedding\","
                                          "\"index\":");
    vmx_buf_append_int(out, (int64_t) a->written);
    vmx_buf_append_cstr(out, ",\"embedding\":");

    if (vmx_embeddings_vector(out, values, r->base64) != 0) {
        return -1;
    }

    vmx_buf_append_cstr(out, "}");
    a->written++;

    return 0;
}


/* n vectors, the members "values" of the items of list when key is
   given, else the items themselves */
static int
vmx_emb_items(vmx_embeddings_answer_t *a, const vmx_json_t *list, size_t n,
    const char *key, vmx_buf_t *out)
{
    const vmx_json_t  *item;

    if (list == NULL || list->type != VMX_JSON_ARRAY || list->count != n) {
        return -1;
    }

    for (item = list->child; item != NULL; item = item->next) {
        if (vmx_emb_item(a, key ? vmx_json_get(item, key) : item, out) != 0) {
            return -1;
        }
    }

    return 0;
}


int
vmx_embeddings_answer_end(vmx_embeddings_answer_t *a, int64_t counted,
    vmx_buf_t *out, vmx_usage_t *usage)
{
    int64_t  tokens;

    if (a->written != a->req->count) {
        return -1;
    }

    tokens = (a->prompt_tokens >= 0) ? a->prompt_tokens
                                     : (counted > 0 ? counted : 0);

    vmx_buf_append_cstr(out, "],\"model\":");
    vmx_buf_append_json_str(out, a->tc->model, a->tc->model_len);
    vmx_buf_append_cstr(out, ",\"usage\":{\"prompt_tokens\":");
    vmx_buf_append_int(out, tokens);
    vmx_buf_append_cstr(out, ",\"total_tokens\":");
    vmx_buf_append_int(out, tokens);
    vmx_buf_append_cstr(out, "}}");

    vmx_usage_init(usage);
    usage->prompt_tokens = tokens;
    usage->completion_tokens = 0;
    usage->total_tokens = tokens;

    return 0;
}


int
vmx_embeddings_gemini_response(vmx_embeddings_answer_t *a, const char *body,
    size_t len, vmx_buf_t *out)
{
    size_t             n, first;
    const vmx_json_t  *root;

    root = vmx_translate_parse(a->tc, body, len);
    if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return -1;
    }

    if (a->req->input->type == VMX_JSON_STRING) {
        return vmx_emb_item(a, vmx_json_get(vmx_json_get(root, "embedding"),
                                            "values"), out);
    }

    n = vmx_emb_batch(a->req, a->written / VMX_EMBEDDINGS_GEMINI_BATCH,
                      VMX_EMBEDDINGS_GEMINI_BATCH, &first);

    return vmx_emb_items(a, vmx_json_get(root, "embeddings"), n, "values",
                         out);
}


/*
 * Bedrock.
 */

vmx_embeddings_family_e
vmx_embeddings_bedrock_family(const char *model, size_t model_len)
{
    size_t       i;
    const char  *id;

    for (i = 0; i < sizeof(vmx_emb_bedrock_models)
                    / sizeof(vmx_emb_bedrock_models[0]); i++)
    {
        id = vmx_emb_bedrock_models[i].id;

        if (memmem(model, model_len, id, strlen(id)) != NULL) {
            return vmx_emb_bedrock_models[i].family;
        }
    }

    return 0;
}


void
vmx_embeddings_bedrock_path(vmx_buf_t *out, const char *model,
    size_t model_len)
{
    vmx_buf_append_cstr(out, "/model/");
    vmx_sigv4_uri_encode(out, model, model_len, 0);
    vmx_buf_append_cstr(out, "/invoke");
}


size_t
vmx_embeddings_bedrock_calls(vmx_embeddings_family_e family,
    const vmx_embeddings_request_t *r)
{
    return vmx_emb_calls(r, family == VMX_EMBEDDINGS_TITAN
                            ? 1 : VMX_EMBEDDINGS_COHERE_BATCH);
}


int
vmx_embeddings_bedrock_request(const vmx_translate_ctx_t *tc,
    vmx_embeddings_family_e family, const vmx_embeddings_request_t *r,
    size_t call, vmx_buf_t *out, vmx_translate_error_t *err)
{
    size_t             i, first, n;
    const vmx_json_t  *text;

    if (vmx_emb_text_only(tc, r, err) != 0) {
        return -1;
    }

    if (family == VMX_EMBEDDINGS_TITAN) {
        vmx_buf_append_cstr(out, "{\"inputText\":");
        vmx_buf_append_raw(out, vmx_embeddings_input(r, call));

        if (r->dimensions) {
            vmx_buf_append_cstr(out, ",\"dimensions\":");
            vmx_buf_append_int(out, r->dimensions);
        }

        /* OpenAI's vectors have length 1 */
        vmx_buf_append_cstr(out, ",\"normalize\":true}");

        return 0;
    }

    if (r->dimensions) {
        return vmx_translate_fail(tc, err, "this model's vectors have a "
                                  "fixed size: leave dimensions out",
                                  "dimensions");
    }

    n = vmx_emb_batch(r, call, VMX_EMBEDDINGS_COHERE_BATCH, &first);

    vmx_buf_append_cstr(out, "{\"texts\":[");

    /* a single string's next is a member of the body, not an input */
    text = vmx_embeddings_input(r, first);

    for (i = 0; i < n; i++, text = text->next) {
        if (i) {
            vmx_buf_append_cstr(out, ",");
        }

        vmx_buf_append_raw(out, text);
    }

    vmx_buf_append_cstr(out, "],\"input_type\":\"search_document\","
                             "\"embedding_types\":[\"float\"]}");

    return 0;
}


int
vmx_embeddings_bedrock_response(vmx_embeddings_answer_t *a,
    vmx_embeddings_family_e family, const char *body, size_t len,
    vmx_buf_t *out)
{
    size_t             n, first;
    const vmx_json_t  *root, *count, *embeddings;

    root = vmx_translate_parse(a->tc, body, len);
    if (root == NULL || root->type != VMX_JSON_OBJECT) {
        return -1;
    }

    if (family == VMX_EMBEDDINGS_TITAN) {
        count = vmx_json_get(root, "inputTextTokenCount");

        if (count == NULL || count->type != VMX_JSON_NUMBER || !count->is_int
            || count->integer < 0 || count->integer > INT32_MAX
            || vmx_emb_item(a, vmx_json_get(root, "embedding"), out) != 0)
        {
            return -1;
        }

        a->prompt_tokens = (a->prompt_tokens < 0 ? 0 : a->prompt_tokens)
                           + count->integer;
        return 0;
    }

    /* "embeddings_floats": [[...]], "embeddings_by_type": {"float":[[...]]} */
    embeddings = vmx_json_get(root, "embeddings");
    if (embeddings != NULL && embeddings->type == VMX_JSON_OBJECT) {
        embeddings = vmx_json_get(embeddings, "float");
    }

    n = vmx_emb_batch(a->req, a->written / VMX_EMBEDDINGS_COHERE_BATCH,
                      VMX_EMBEDDINGS_COHERE_BATCH, &first);

    return vmx_emb_items(a, embeddings, n, NULL, out);
}
