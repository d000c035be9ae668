/*
 * Unit tests of lib/vmx_embeddings.c.  JSON is written with single quotes
 * (unit_q()), so that expectations read as JSON.
 */

#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "vmx_bedrock.h"
#include "vmx_embeddings.h"
#include "vmx_gemini.h"


static vmx_translate_ctx_t
ctx(const char *model, const char *body)
{
    vmx_translate_ctx_t  tc;
    vmx_json_error_t     err;

    memset(&tc, 0, sizeof(tc));
    tc.model = model;
    tc.model_len = strlen(model);
    tc.alloc = unit_alloc;

    if (body != NULL) {
        tc.body = vmx_json_parse(body, strlen(body), unit_alloc, NULL, 0,
                                 &err);
    }

    return tc;
}


static int
same(const vmx_buf_t *out, const char *want)
{
    return !out->failed && unit_same(out->data, out->len, want);
}


/* out holds lit */
static int
has(const vmx_buf_t *out, const char *lit)
{
    return out->len > 0 && memmem(out->data, out->len, lit, strlen(lit))
                           != NULL;
}


/* the times out holds lit */
static size_t
count_of(const vmx_buf_t *out, const char *lit)
{
    size_t       n = 0, len = strlen(lit);
    const char  *p = out->data, *end = out->data + out->len;

    while (p != NULL && (p = memmem(p, (size_t) (end - p), lit, len))) {
        n++;
        p += len;
    }

    return n;
}


/* the request body (quotes as ') parsed: its param on failure, "" when
   it passed */
static const char *
param_of(const char *body, vmx_embeddings_request_t *r)
{
    vmx_translate_ctx_t    tc = ctx("m", unit_q(body));
    vmx_translate_error_t  err = { NULL, NULL };

    if (vmx_embeddings_parse(&tc, r, &err) == 0) {
        return "";
    }

    return err.param ? err.param : "(null)";
}


static int
refused(const char *body, const char *param)
{
    vmx_embeddings_request_t  r;
    const char               *got = param_of(body, &r);

    if (strcmp(got, param) == 0) {
        return 1;
    }

    fprintf(stderr, "%s: param %s, want %s\n", body, got, param);
    return 0;
}


/* a body of n inputs made by item(i) */
static char *
many(size_t n, const char *item, const char *tail)
{
    size_t   i, len = strlen(item);
    char    *b = unit_alloc(NULL, n * (len + 1) + strlen(tail) + 64), *p;

    p = b + sprintf(b, "{\"model\":\"m\",\"input\":[");

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? "," : "", item);
    }

    sprintf(p, "]%s}", tail);

    return b;
}


static void
test_request(void)
{
    vmx_embeddings_request_t  r;
    vmx_translate_ctx_t       tc;
    vmx_translate_error_t     err;
    char                     *item;
    size_t                    i;

    CHECK(*param_of("{'model':'m','input':'hello'}", &r) == '\0');
    CHECK(r.count == 1 && !r.tokens && !r.base64 && r.dimensions == 0);
    CHECK(vmx_embeddings_input(&r, 0) == r.input
          && vmx_embeddings_input(&r, 1) == NULL);

    CHECK(*param_of("{'model':'m','input':['a','b','c'],'dimensions':8,"
                    "'encoding_format':'base64','user':'u','x':1}", &r)
          == '\0');
    CHECK(r.count == 3 && !r.tokens && r.base64 && r.dimensions == 8);
    CHECK(strcmp(vmx_embeddings_input(&r, 2)->str, "c") == 0);
    CHECK(vmx_embeddings_input(&r, 3) == NULL);

    CHECK(*param_of("{'model':'m','input':[1,2,3],'encoding_format':'float',"
                    "'dimensions':null,'user':null}", &r) == '\0');
    CHECK(r.count == 1 && r.tokens && !r.base64);
    CHECK(vmx_embeddings_input(&r, 0) == r.input);

    CHECK(*param_of("{'model':'m','input':[[1,2],[3],[0,2147483647]]}", &r)
          == '\0');
    CHECK(r.count == 3 && r.tokens);
    CHECK(vmx_embeddings_input(&r, 1)->count == 1);

    /* wrong types and missing fields, each naming its field */
    CHECK(refused("[]", "(null)"));
    CHECK(refused("{'input':'a'}", "model"));
    CHECK(refused("{'model':'','input':'a'}", "model"));
    CHECK(refused("{'model':7,'input':'a'}", "model"));
    CHECK(refused("{'model':'m'}", "input"));
    CHECK(refused("{'model':'m','input':null}", "input"));
    CHECK(refused("{'model':'m','input':''}", "input"));
    CHECK(refused("{'model':'m','input':[]}", "input"));
    CHECK(refused("{'model':'m','input':{}}", "input"));
    CHECK(refused("{'model':'m','input':7}", "input"));
    CHECK(refused("{'model':'m','input':[true]}", "input[0]"));
    CHECK(refused("{'model':'m','input':[{'text':'a'}]}", "input[0]"));
    CHECK(refused("{'model':'m','input':['a','']}", "input[1]"));
    CHECK(refused("{'model':'m','input':['a',1]}", "input[1]"));
    CHECK(refused("{'model':'m','input':[[1],'a']}", "input[1]"));
    CHECK(refused("{'model':'m','input':[[1],[]]}", "input[1]"));
    CHECK(refused("{'model':'m','input':[[1],[1.5]]}", "input[1]"));
    CHECK(refused("{'model':'m','input':[1,-1]}", "input"));
    CHECK(refused("{'model':'m','input':[1,'a']}", "input"));
    CHECK(refused("{'model':'m','input':[2147483648]}", "input"));
    CHECK(refused("{'model':'m','input':'a','dimensions':0}", "dimensions"));
    CHECK(refused("{'model':'m','input':'a','dimensions':-8}", "dimensions"));
    CHECK(refused("{'model':'m','input':'a','dimensions':8.5}", "dimensions"));
    CHECK(refused("{'model':'m','input':'a','dimensions':'8'}", "dimensions"));
    CHECK(refused("{'model':'m','input':'a','dimensions':16385}",
                  "dimensions"));
    CHECK(refused("{'model':'m','input':'a','encoding_format':'int8'}",
                  "encoding_format"));
    CHECK(refused("{'model':'m','input':'a','encoding_format':1}",
                  "encoding_format"));
    CHECK(refused("{'model':'m','input':'a','user':1}", "user"));

    /* the bounds: 2048 inputs, 300000 token ids */
    tc = ctx("m", many(2048, "\"abcdefgh\"", ""));
    CHECK(vmx_embeddings_parse(&tc, &r, &err) == 0 && r.count == 2048);

    tc = ctx("m", many(2049, "\"abcdefgh\"", ""));
    CHECK(tc.body != NULL && vmx_embeddings_parse(&tc, &r, &err) == -1
          && strcmp(err.param, "input") == 0);

    tc = ctx("m", many(2049, "[123456,123456]", ""));
    CHECK(tc.body != NULL && vmx_embeddings_parse(&tc, &r, &err) == -1
          && strcmp(err.param, "input") == 0);

    tc = ctx("m", many(300001, "123456", ""));
    CHECK(tc.body != NULL && vmx_embeddings_parse(&tc, &r, &err) == -1
          && strcmp(err.param, "input") == 0);

    tc = ctx("m", many(300000, "123456", ""));
    CHECK(vmx_embeddings_parse(&tc, &r, &err) == 0 && r.count == 1);

    /* 2000 inputs of 151 token ids: 302000 in all */
    item = unit_alloc(NULL, 151 * 7 + 2);
    strcpy(item, "[123456");
    for (i = 1; i < 151; i++) {
        strcat(item, ",123456");
    }
    strcat(item, "]");

    tc = ctx("m", many(2000, item, ""));
    CHECK(tc.body != NULL && vmx_embeddings_parse(&tc, &r, &err) == -1
          && strcmp(err.param, "input") == 0);

    unit_free_all();
}


static void
test_text_bound(void)
{
    vmx_embeddings_request_t  r;
    vmx_translate_ctx_t       tc;
    vmx_translate_error_t     err;
    size_t                    n = VMX_EMBEDDINGS_MAX_TEXT / 2 + 1;
    char                     *item, *body;

    /* two inputs of just over half the bound each */
    item = unit_alloc(NULL, n + 3);
    item[0] = '"';
    memset(item + 1, 'a', n);
    strcpy(item + 1 + n, "\"");

    body = many(1, item, "");
    tc = ctx("m", body);
    CHECK(vmx_embeddings_parse(&tc, &r, &err) == 0);

    body = many(2, item, "");
    tc = ctx("m", body);
    CHECK(vmx_embeddings_parse(&tc, &r, &err) == -1
          && strcmp(err.param, "input") == 0);

    unit_free_all();
}


/* the request of provider p (gemini, titan, cohere) for body, call i */
static vmx_buf_t
request(const char *provider, const char *body, size_t call, const char **param)
{
    vmx_embeddings_request_t  r;
    vmx_translate_ctx_t       tc;
    vmx_translate_error_t     err = { NULL, NULL };
    vmx_buf_t                 out;
    int                       rc;

    tc = ctx(provider[0] == 'g' ? "gemini-embedding-001"
             : provider[0] == 't' ? "amazon.titan-embed-text-v2:0"
             : "cohere.embed-english-v3", unit_q(body));

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    *param = NULL;

    if (vmx_embeddings_parse(&tc, &r, &err) != 0) {
        *param = "parse";
        return out;
    }

    if (provider[0] == 'g') {
        rc = vmx_embeddings_gemini_request(&tc, &r, call, &out, &err);

    } else {
        rc = vmx_embeddings_bedrock_request(&tc,
                 vmx_embeddings_bedrock_family(tc.model, tc.model_len), &r,
                 call, &out, &err);
    }

    if (rc != 0) {
        *param = err.param;
    }

    return out;
}


static void
test_gemini_request(void)
{
    vmx_embeddings_request_t  r;
    const char               *param;
    vmx_buf_t                 out;

    out = request("gemini", "{'model':'x','input':'caf\\u00e9 \\'1\\''}", 0,
                  &param);
    CHECK(param == NULL);
    CHECK(same(&out, "{'content':{'parts':[{'text':'caf\\u00e9 \\'1\\''}]}}"));

    out = request("gemini", "{'model':'x','input':['a','b'],'dimensions':8}",
                  0, &param);
    CHECK(same(&out, "{'requests':[{'model':'models/gemini-embedding-001',"
                     "'content':{'parts':[{'text':'a'}]},"
                     "'outputDimensionality':8},"
                     "{'model':'models/gemini-embedding-001',"
                     "'content':{'parts':[{'text':'b'}]},"
                     "'outputDimensionality':8}]}"));

    out = request("gemini", "{'model':'x','input':[1,2]}", 0, &param);
    CHECK(param != NULL && strcmp(param, "input") == 0);

    out = request("gemini", "{'model':'x','input':[[1],[2]]}", 0, &param);
    CHECK(param != NULL && strcmp(param, "input") == 0);

    CHECK(*param_of("{'model':'m','input':'a'}", &r) == '\0');
    CHECK(strcmp(vmx_embeddings_gemini_method(&r), "embedContent") == 0);
    CHECK(*param_of("{'model':'m','input':['a']}", &r) == '\0');
    CHECK(strcmp(vmx_embeddings_gemini_method(&r), "batchEmbedContents") == 0);

    /* Gemini's batch bound: 250 inputs, calls of 100, 100 and 50 */
    CHECK(*param_of("{'model':'m','input':'a'}", &r) == '\0');
    CHECK(vmx_embeddings_gemini_calls(&r) == 1);
    CHECK(*param_of(many(100, "'a'", ""), &r) == '\0');
    CHECK(vmx_embeddings_gemini_calls(&r) == 1);
    CHECK(*param_of(many(250, "'a'", ""), &r) == '\0');
    CHECK(vmx_embeddings_gemini_calls(&r) == 3);

    out = request("gemini", many(250, "'a'", ""), 1, &param);
    CHECK(param == NULL && !out.failed);
    CHECK(count_of(&out, "{\"model\":") == 100);
    out = request("gemini", many(250, "'a'", ""), 2, &param);
    CHECK(count_of(&out, "{\"model\":") == 50);
    out = request("gemini", many(2, "'a'", ",'user':'u'"), 0, &param);
    CHECK(count_of(&out, "{\"model\":") == 2 && !has(&out, "'u'"));

    unit_free_all();
}


static void
test_bedrock_request(void)
{
    vmx_embeddings_request_t  r;
    vmx_buf_t                 out;
    const char               *param;

    CHECK(vmx_embeddings_bedrock_family("amazon.titan-embed-text-v2:0", 28)
          == VMX_EMBEDDINGS_TITAN);
    CHECK(vmx_embeddings_bedrock_family("us.cohere.embed-multilingual-v3", 31)
          == VMX_EMBEDDINGS_COHERE);
    CHECK(vmx_embeddings_bedrock_family("cohere.embed-english-v3", 23)
          == VMX_EMBEDDINGS_COHERE);
    CHECK(vmx_embeddings_bedrock_family("amazon.titan-embed-text-v1", 26)
          == 0);
    CHECK(vmx_embeddings_bedrock_family("anthropic.claude-3", 18) == 0);
    CHECK(vmx_embeddings_bedrock_family("", 0) == 0);

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_embeddings_bedrock_path(&out, "amazon.titan-embed-text-v2:0", 28);
    CHECK(same(&out, "/model/amazon.titan-embed-text-v2%3A0/invoke"));

    out = request("titan", "{'model':'x','input':'hi','dimensions':256}", 0,
                  &param);
    CHECK(same(&out, "{'inputText':'hi','dimensions':256,'normalize':true}"));

    out = request("titan", "{'model':'x','input':['a','b','c']}", 2, &param);
    CHECK(same(&out, "{'inputText':'c','normalize':true}"));

    out = request("titan", "{'model':'x','input':[5,6]}", 0, &param);
    CHECK(param != NULL && strcmp(param, "input") == 0);

    out = request("cohere", "{'model':'x','input':['a','b']}", 0, &param);
    CHECK(same(&out, "{'texts':['a','b'],'input_type':'search_document',"
                     "'embedding_types':['float']}"));

    out = request("cohere", "{'model':'x','input':'a','user':'u'}", 0, &param);
    CHECK(same(&out, "{'texts':['a'],'input_type':'search_document',"
                     "'embedding_types':['float']}"));

    out = request("cohere", "{'model':'x','input':'a','dimensions':1024}", 0,
                  &param);
    CHECK(param != NULL && strcmp(param, "dimensions") == 0);

    out = request("cohere", "{'model':'x','input':[[1]]}", 0, &param);
    CHECK(param != NULL && strcmp(param, "input") == 0);

    /* 200 inputs: Titan 200 calls, Cohere 96 + 96 + 8 */
    CHECK(*param_of(many(200, "'t'", ""), &r) == '\0');
    CHECK(vmx_embeddings_bedrock_calls(VMX_EMBEDDINGS_TITAN, &r) == 200);
    CHECK(vmx_embeddings_bedrock_calls(VMX_EMBEDDINGS_COHERE, &r) == 3);
    CHECK(*param_of(many(96, "'t'", ""), &r) == '\0');
    CHECK(vmx_embeddings_bedrock_calls(VMX_EMBEDDINGS_COHERE, &r) == 1);

    out = request("cohere", many(200, "'t'", ""), 2, &param);
    CHECK(same(&out, "{'texts':['t','t','t','t','t','t','t','t'],"
                     "'input_type':'search_document',"
                     "'embedding_types':['float']}"));

    out = request("cohere", many(200, "'t'", ""), 1, &param);
    CHECK(count_of(&out, "\"t\"") == 96);

    unit_free_all();
}


/* a's answer to body (quotes as ') after the provider's answers */
typedef struct {
    vmx_translate_ctx_t       tc;
    vmx_embeddings_request_t  r;
    vmx_embeddings_answer_t   a;
    vmx_buf_t                 out;
    vmx_usage_t               usage;
} answer_t;


static void
answer_start(answer_t *t, const char *model, const char *body)
{
    vmx_translate_error_t  err;

    t->tc = ctx(model, unit_q(body));
    CHECK(vmx_embeddings_parse(&t->tc, &t->r, &err) == 0);

    vmx_buf_init(&t->out, unit_alloc, NULL, 0);
    vmx_embeddings_answer_init(&t->a, &t->tc, &t->r, &t->out);
}


static int
gemini(const char *body, const char *answer, size_t len)
{
    answer_t  t;

    answer_start(&t, "gemini-embedding-001", body);

    return vmx_embeddings_gemini_response(&t.a, answer, len, &t.out);
}


static char *
fixture(const char *name, size_t *len)
{
    char  path[128];

    snprintf(path, sizeof(path), "embeddings/%s", name);

    return unit_read_fixture(path, len);
}


/* the member names of two trees in the same order at every level */
static int
same_shape(const vmx_json_t *a, const vmx_json_t *b)
{
    if (a->type != b->type) {
        return 0;
    }

    if (a->type == VMX_JSON_OBJECT) {
        for (a = a->child, b = b->child; a && b; a = a->next, b = b->next) {
            if (a->key_len != b->key_len || memcmp(a->key, b->key, a->key_len)
                || !same_shape(a, b))
            {
                return 0;
            }
        }

        return a == NULL && b == NULL;
    }

    if (a->type == VMX_JSON_ARRAY && a->child && b->child) {
        return same_shape(a->child, b->child);
    }

    return 1;
}


static void
test_gemini_response(void)
{
    answer_t          t;
    vmx_json_error_t  jerr;
    vmx_json_t       *mine, *theirs;
    char             *body, *big, *p;
    const char       *text;
    size_t            len, olen, i;

    body = fixture("gemini_embed.json", &len);
    answer_start(&t, "gemini-embedding-001",
                 "{'model':'gemini-embedding-001','input':'hi','dimensions':8}");
    CHECK(vmx_embeddings_gemini_response(&t.a, body, len, &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 14, &t.out, &t.usage) == 0);
    CHECK(same(&t.out, "{'object':'list','data':[{'object':'embedding',"
                       "'index':0,'embedding':[0.013168523,-0.008711934,"
                       "-0.046782676,0.0006984431,-0.0020911163,0.038462594,"
                       "-0.0073055695,0.021904327]}],"
                       "'model':'gemini-embedding-001',"
                       "'usage':{'prompt_tokens':14,'total_tokens':14}}"));
    CHECK(t.usage.prompt_tokens == 14 && t.usage.completion_tokens == 0
          && t.usage.total_tokens == 14);

    /* the members of OpenAI's own answer, in its order */
    mine = vmx_json_parse(t.out.data, t.out.len, unit_alloc, NULL, 0, &jerr);
    free(body);
    body = fixture("openai.json", &olen);
    theirs = vmx_json_parse(body, olen, unit_alloc, NULL, 0, &jerr);
    CHECK(mine != NULL && theirs != NULL && same_shape(mine, theirs));
    free(body);

    body = fixture("gemini_batch.json", &len);
    answer_start(&t, "gemini-embedding-001",
                 "{'model':'m','input':['a','b'],'encoding_format':'base64'}");
    CHECK(vmx_embeddings_gemini_response(&t.a, body, len, &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, -1, &t.out, &t.usage) == 0);
    CHECK(has(&t.out, "\"index\":1,\"embedding\":\""));
    CHECK(t.usage.prompt_tokens == 0);

    /* answers that do not fit the request */
    CHECK(gemini("{'model':'m','input':'a','dimensions':9}", body, len) == -1);
    CHECK(gemini("{'model':'m','input':['a','b','c']}", body, len) == -1);
    CHECK(gemini("{'model':'m','input':['a']}", body, len) == -1);
    CHECK(gemini("{'model':'m','input':'a'}", body, len) == -1);
    free(body);

    big = unit_alloc(NULL, VMX_EMBEDDINGS_MAX_LENGTH * 4 + 64);

    /* 101 inputs: an answer of 100 vectors, then one of 1 */
    answer_start(&t, "gemini-embedding-001", many(101, "'a'", ""));
    p = big + sprintf(big, "{\"embeddings\":[");
    for (i = 0; i < 100; i++) {
        p += sprintf(p, "%s{\"values\":[0.5,0.25]}", i ? "," : "");
    }
    strcpy(p, "]}");
    CHECK(vmx_embeddings_gemini_response(&t.a, big, strlen(big), &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 9, &t.out, &t.usage) == -1);
    CHECK(vmx_embeddings_gemini_response(&t.a, big, strlen(big), &t.out) == -1);

    answer_start(&t, "gemini-embedding-001", many(101, "'a'", ""));
    CHECK(vmx_embeddings_gemini_response(&t.a, big, strlen(big), &t.out) == 0);
    text = "{'embeddings':[{'values':[0.5,0.25]}]}";
    CHECK(vmx_embeddings_gemini_response(&t.a, unit_q(text), strlen(text),
                                         &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 9, &t.out, &t.usage) == 0);
    CHECK(has(&t.out, "\"index\":100,\"embedding\":[0.5,0.25]}],"));

    /* a vector longer than any model's */
    p = big + sprintf(big, "{\"embedding\":{\"values\":[0.5");
    for (i = 0; i < VMX_EMBEDDINGS_MAX_LENGTH; i++) {
        p += sprintf(p, ",0.5");
    }
    strcpy(p, "]}}");

#define GEMINI(answer)                                                       \
    gemini("{'model':'m','input':'a'}", unit_q(answer), strlen(unit_q(answer)))

    CHECK(GEMINI("{'embedding':{'values':[0.5,-0.25]}}") == 0);
    CHECK(GEMINI("{'embedding':{'values':[1e39]}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':[-1e39]}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':[1e999]}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':[1,'NaN']}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':[1,null]}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':[]}}") == -1);
    CHECK(GEMINI("{'embedding':{'values':{}}}") == -1);
    CHECK(GEMINI("{'embedding':{}}") == -1);
    CHECK(GEMINI("{'embedding':[0.5]}") == -1);
    CHECK(GEMINI("{'embeddings':[{'values':[0.5]}]}") == -1);
    CHECK(GEMINI("[]") == -1);
    CHECK(gemini("{'model':'m','input':'a'}", big, strlen(big))
          == -1);
    CHECK(GEMINI("{") == -1);
    CHECK(gemini("{'model':'m','input':['a','b']}",
                 unit_q("{'embeddings':[{'values':[1,2]},{'values':[1]}]}"),
                 strlen("{'embeddings':[{'values':[1,2]},{'values':[1]}]}"))
          == -1);

    unit_free_all();
}


static void
test_bedrock_response(void)
{
    answer_t  t;
    char     *titan, *cohere, *floats;
    size_t    tlen, clen, flen, i;

    titan = fixture("titan.json", &tlen);
    cohere = fixture("cohere.json", &clen);
    floats = fixture("cohere_floats.json", &flen);

    /* three Titan calls: their token counts add up */
    answer_start(&t, "amazon.titan-embed-text-v2:0",
                 "{'model':'m','input':['a','b','c'],'dimensions':8}");
    for (i = 0; i < 3; i++) {
        CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_TITAN,
                                              titan, tlen, &t.out) == 0);
    }
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_TITAN, titan,
                                          tlen, &t.out) == -1);
    CHECK(vmx_embeddings_answer_end(&t.a, 5, &t.out, &t.usage) == 0);
    CHECK(t.usage.prompt_tokens == 42);
    CHECK(has(&t.out, "\"index\":2,"
                                  "\"embedding\":[0.0033693248,-0.061842795,"
                                  "0.020418536,0.0146281,"));

    /* one call short: no answer */
    answer_start(&t, "amazon.titan-embed-text-v2:0",
                 "{'model':'m','input':['a','b']}");
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_TITAN, titan,
                                          tlen, &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 5, &t.out, &t.usage) == -1);

#define TITAN(answer)                                                        \
    (answer_start(&t, "amazon.titan-embed-text-v2:0",                        \
                  "{'model':'m','input':'a'}"),                              \
     vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_TITAN, unit_q(answer),  \
                                     strlen(answer), &t.out))

    CHECK(TITAN("{'embedding':[0.5],'inputTextTokenCount':1}") == 0);
    CHECK(TITAN("{'embedding':[0.5]}") == -1);
    CHECK(TITAN("{'embedding':[0.5],'inputTextTokenCount':-1}") == -1);
    CHECK(TITAN("{'embedding':[0.5],'inputTextTokenCount':1.5}") == -1);
    CHECK(TITAN("{'embeddingsByType':{'float':[0.5]},"
                "'inputTextTokenCount':1}") == -1);
    CHECK(TITAN("{'embedding':'AAAA','inputTextTokenCount':1}") == -1);

    /* Cohere, both shapes; the count comes from the module */
    answer_start(&t, "cohere.embed-english-v3",
                 "{'model':'m','input':['a','b']}");
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_COHERE, cohere,
                                          clen, &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 11, &t.out, &t.usage) == 0);
    CHECK(t.usage.prompt_tokens == 11);

    answer_start(&t, "cohere.embed-english-v3",
                 "{'model':'m','input':['a','b']}");
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_COHERE, floats,
                                          flen, &t.out) == 0);
    CHECK(vmx_embeddings_answer_end(&t.a, 11, &t.out, &t.usage) == 0);

    answer_start(&t, "cohere.embed-english-v3",
                 "{'model':'m','input':['a','b','c']}");
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_COHERE, floats,
                                          flen, &t.out) == -1);

    answer_start(&t, "cohere.embed-english-v3",
                 "{'model':'m','input':['a','b'],'dimensions':4}");
    CHECK(vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_COHERE, cohere,
                                          clen, &t.out) == -1);

#define COHERE(answer)                                                       \
    (answer_start(&t, "cohere.embed-english-v3",                             \
                  "{'model':'m','input':'a'}"),                              \
     vmx_embeddings_bedrock_response(&t.a, VMX_EMBEDDINGS_COHERE, unit_q(answer), \
                                     strlen(answer), &t.out))

    CHECK(COHERE("{'embeddings':[[0.5]]}") == 0);
    CHECK(COHERE("{'embeddings':{'float':[[0.5]]}}") == 0);
    CHECK(COHERE("{'embeddings':{'int8':[[5]]}}") == -1);
    CHECK(COHERE("{'embeddings':[0.5]}") == -1);
    CHECK(COHERE("{'embeddings':[[]]}") == -1);
    CHECK(COHERE("{'texts':['a']}") == -1);

    free(titan);
    free(cohere);
    free(floats);
    unit_free_all();
}


static size_t
unbase64(const char *s, size_t n, unsigned char *dst)
{
    static const char  digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t           v = 0;
    size_t             i, bits = 0, len = 0;

    for (i = 0; i < n && s[i] != '='; i++) {
        v = (v << 6) | (uint32_t) (strchr(digits, s[i]) - digits);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            dst[len++] = (unsigned char) (v >> bits);
        }
    }

    return len;
}


static void
test_vector(void)
{
    static const float  values[] = { 0.03f, -1.5f, 1e-38f, 3.4028235e38f,
                                     0.1f, -0.0f, 0.013168523f };
    unsigned char       bytes[64];
    vmx_json_error_t    jerr;
    vmx_json_t         *v;
    vmx_buf_t           out;
    const char         *text;
    uint32_t            bits;
    float               f;
    size_t              n, i, len;

    /* floats: the shortest that reads back, and back they read */
    text = "[0.03,-1.5,1e-38,3.4028235e38,0.1,-0,0.013168523]";
    v = vmx_json_parse(text, strlen(text), unit_alloc, NULL, 0, &jerr);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    CHECK(vmx_embeddings_vector(&out, v, 0) == 0);
    CHECK(same(&out, "[0.03,-1.5,1e-38,3.4028235e+38,0.1,-0,0.013168523]"));

    v = vmx_json_parse(out.data, out.len, unit_alloc, NULL, 0, &jerr);
    for (i = 0, v = v ? v->child : NULL; v != NULL; i++, v = v->next) {
        CHECK((float) v->num == values[i]);
    }
    CHECK(i == 7);

    /* base64 of 1 to 7 values: every padding */
    for (n = 1; n <= 7; n++) {
        vmx_buf_init(&out, unit_alloc, NULL, 0);
        v = vmx_json_parse(text, strlen(text), unit_alloc, NULL, 0, &jerr);
        v->count = n;
        vmx_json_at(v, n - 1)->next = NULL;

        CHECK(vmx_embeddings_vector(&out, v, 1) == 0);
        CHECK(out.len == 2 + (4 * n + 2) / 3 * 4);

        len = unbase64(out.data + 1, out.len - 2, bytes);
        CHECK(len == 4 * n);

        for (i = 0; i < n && i * 4 + 3 < len; i++) {
            bits = (uint32_t) bytes[4 * i] | (uint32_t) bytes[4 * i + 1] << 8
                   | (uint32_t) bytes[4 * i + 2] << 16
                   | (uint32_t) bytes[4 * i + 3] << 24;
            memcpy(&f, &bits, sizeof(f));
            CHECK(memcmp(&f, &values[i], sizeof(f)) == 0);
        }
    }

    /* OpenAI's bytes of [1.0]: 0000803f */
    text = "[1]";
    v = vmx_json_parse(text, 3, unit_alloc, NULL, 0, &jerr);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    CHECK(vmx_embeddings_vector(&out, v, 1) == 0);
    CHECK(same(&out, "'AACAPw=='"));

    unit_free_all();
}


/* the providers' error answers on embeddings, as for chat */
static void
test_errors(void)
{
    vmx_translate_ctx_t  tc = ctx("gemini-embedding-001", NULL);
    vmx_buf_t            out;
    char                *body;
    size_t               len;

    body = fixture("gemini_error_400.json", &len);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    CHECK(vmx_gemini_error(&tc, 400, body, len, &out) == -1);
    CHECK(has(&out, "\"type\":\"invalid_"
                                "request_error\""));
    CHECK(has(&out, "at most 100 requests"));
    free(body);

    body = fixture("bedrock_error_400.json", &len);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_bedrock_error(&tc, 400, body, len, "ValidationException", 19, &out);
    CHECK(has(&out, "extraneous key"));
    CHECK(has(&out, "invalid_request_error"));
    free(body);

    unit_free_all();
}


int
main(void)
{
    test_request();
    test_text_bound();
    test_gemini_request();
    test_bedrock_request();
    test_gemini_response();
    test_bedrock_response();
    test_vector();
    test_errors();

    return UNIT_REPORT();
}
