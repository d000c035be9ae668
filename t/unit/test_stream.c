/*
 * Unit tests of the stream error handling shared by the translations
 * (lib/vmx_translate.c) and of each translation's report of an error
 * event: what a client gets when the error comes before its first byte.
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_anthropic.h"
#include "vmx_gemini.h"


static vmx_translate_ctx_t  tc;


static void
ctx_init(void)
{
    memset(&tc, 0, sizeof(tc));
    tc.model = "m";
    tc.model_len = 1;
    tc.id = "chatcmpl-1";
    tc.id_len = 10;
    tc.created = 1700000000;
    tc.stream = 1;
    tc.alloc = unit_alloc;
}


static int
error_of(const char *data, vmx_stream_error_t *e)
{
    memset(e, 0, sizeof(*e));
    return vmx_openai_stream_error(data, strlen(data), unit_alloc, NULL, e);
}


static int
is(const char *s, size_t len, const char *lit)
{
    return s != NULL && len == strlen(lit) && memcmp(s, lit, len) == 0;
}


static void
test_status_mapping(void)
{
    CHECK(vmx_stream_error_status(429, NULL) == 429);
    CHECK(vmx_stream_error_status(503, "overloaded_error") == 429);
    CHECK(vmx_stream_error_status(500, "RESOURCE_EXHAUSTED") == 429);
    CHECK(vmx_stream_error_status(503, NULL) == 503);
    CHECK(vmx_stream_error_status(400, "invalid_request_error") == 400);
    CHECK(vmx_stream_error_status(404, NULL) == 404);
    CHECK(vmx_stream_error_status(401, NULL) == 502);
    CHECK(vmx_stream_error_status(403, NULL) == 502);
    CHECK(vmx_stream_error_status(500, "api_error") == 502);
    CHECK(vmx_stream_error_status(504, NULL) == 502);
    CHECK(vmx_stream_error_status(0, NULL) == 502);
}


static void
test_openai_error(void)
{
    vmx_stream_error_t  e;

    CHECK(error_of("{\"error\":{\"message\":\"The server had an error\","
                   "\"type\":\"server_error\",\"param\":null,\"code\":null}}",
                   &e) == 1);
    CHECK(e.status == 502 && is(e.code, e.code_len, "server_error")
          && is(e.message, e.message_len, "The server had an error"));

    CHECK(error_of(" { \"error\" : {\"message\":\"slow down\",\"type\":"
                   "\"requests\",\"code\":\"rate_limit_exceeded\"}}", &e)
          == 1);
    CHECK(e.status == 429 && is(e.code, e.code_len, "rate_limit_exceeded"));

    /* Groq and others: a numeric code or status */
    CHECK(error_of("{\"error\":{\"message\":\"busy\",\"status\":503}}", &e)
          == 1);
    CHECK(e.status == 503 && e.code == NULL);

    CHECK(error_of("{\"error\":{\"message\":\"bad\",\"type\":"
                   "\"invalid_request_error\"}}", &e) == 1);
    CHECK(e.status == 400);

    CHECK(error_of("{\"error\":\"plain text\"}", &e) == 1);
    CHECK(e.status == 502 && is(e.message, e.message_len, "plain text"));

    /* chunks are no errors, even when they mention one */
    CHECK(error_of("{\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":"
                   "\"{\\\"error\\\":1}\"}}]}", &e) == 0);
    CHECK(error_of("[DONE]", &e) == 0);
    CHECK(error_of("{\"error\"", &e) == 0);
    CHECK(error_of("", &e) == 0);
}


static int
substantive(const char *out)
{
    return vmx_openai_stream_substantive(out, strlen(out), unit_alloc, NULL);
}


static void
test_substantive(void)
{
    CHECK(!substantive(""));
    CHECK(!substantive("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                       "\"assistant\",\"content\":\"\",\"refusal\":null},"
                       "\"finish_reason\":null}]}\n\n"));
    CHECK(!substantive("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                       "\"assistant\",\"content\":null}}]}\n\n"
                       "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}"
                       "\n\n"));
    CHECK(substantive("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                      "\"assistant\"}}]}\n\ndata: {\"choices\":[{\"index\":0,"
                      "\"delta\":{\"content\":\"Hi\"}}]}\n\n"));
    CHECK(substantive("data: {\"choices\":[{\"index\":0,\"delta\":"
                      "{\"tool_calls\":[{\"index\":0}]}}]}\n\n"));
    CHECK(substantive("data: {\"choices\":[{\"index\":0,\"delta\":{},"
                      "\"finish_reason\":\"stop\"}]}\n\n"));
    CHECK(substantive("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}"
                      "\n\n"));
    CHECK(substantive("data: [DONE]\n\n"));
    CHECK(substantive("data: not json\n\n"));
}


static void
test_anthropic_error_first(void)
{
    vmx_anthropic_stream_t  s;
    vmx_usage_t             usage;
    vmx_buf_t               out;
    static const char       data[] = "{\"type\": \"error\", \"error\": "
                                     "{\"type\": \"overloaded_error\", "
                                     "\"message\": \"Overloaded\"}}";

    ctx_init();
    vmx_usage_init(&usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_anthropic_stream_init(&s, &tc);

    CHECK(vmx_anthropic_stream_event(&s, "error", 5, data, sizeof(data) - 1,
                                     &out, &usage) == 0);
    CHECK(s.done && s.error.status == 429);
    CHECK(is(s.error.code, s.error.code_len, "overloaded_error"));
    CHECK(is(s.error.message, s.error.message_len, "Overloaded"));
    CHECK(is(out.data, out.len, "data: {\"error\":{\"message\":\"Overloaded\","
             "\"type\":\"server_error\",\"param\":null,\"code\":"
             "\"overloaded_error\"}}\n\n"));

    /* a normal stream reports no error */
    vmx_anthropic_stream_init(&s, &tc);
    CHECK(vmx_anthropic_stream_event(&s, "ping", 4, "{}", 2, &out, &usage)
          == 0);
    CHECK(s.error.status == 0);
}


static void
test_gemini(void)
{
    vmx_gemini_stream_t  s;
    vmx_usage_t          usage;
    vmx_buf_t            out;
    static const char    err[] = "{\"error\": {\"code\": 503, \"message\": "
                                 "\"The model is overloaded.\", \"status\": "
                                 "\"UNAVAILABLE\"}}";
    static const char    blocked[] = "{\"candidates\": [{\"finishReason\": "
                                     "\"SAFETY\",\"index\": 0}],"
                                     "\"usageMetadata\": {\"promptTokenCount\""
                                     ": 7,\"totalTokenCount\": 7}}";

    ctx_init();
    vmx_usage_init(&usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_gemini_stream_init(&s, &tc);

    CHECK(vmx_gemini_stream_event(&s, err, sizeof(err) - 1, &out, &usage)
          == 0);
    CHECK(s.done && s.error.status == 503);
    CHECK(is(s.error.code, s.error.code_len, "unavailable"));

    /* a safety stop leaves candidatesTokenCount out: 0, not unknown */
    vmx_usage_init(&usage);
    vmx_gemini_stream_init(&s, &tc);
    CHECK(vmx_gemini_stream_event(&s, blocked, sizeof(blocked) - 1, &out,
                                  &usage) == 0);
    CHECK(s.error.status == 0);
    CHECK(usage.prompt_tokens == 7 && usage.completion_tokens == 0
          && usage.total_tokens == 7);
}


static vmx_json_t *
json(const char *text)
{
    return vmx_json_parse(text, strlen(text), unit_alloc, NULL, 0, NULL);
}


/* rc of vmx_openai_error_complete() on text, and out equal to want */
static int
completes(const char *text, const char *want)
{
    vmx_buf_t  out;
    int        rc;

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    rc = vmx_openai_error_complete(&out, json(text), "invalid_request_error",
                                   "The provider answered HTTP 400");

    if (want == NULL) {
        return rc == 0 && out.len == 0;
    }

    return rc == 1 && !vmx_buf_failed(&out) && is(out.data, out.len, want)
           && json(out.data) != NULL;
}


static void
test_error_complete(void)
{
    /* Groq's compact error */
    CHECK(completes("{\"error\":{\"message\":\"bad\",\"type\":"
                    "\"invalid_request_error\"}}",
                    "{\"error\":{\"message\":\"bad\",\"type\":"
                    "\"invalid_request_error\",\"param\":null,"
                    "\"code\":\"invalid_request_error\"}}"));

    /* complete, or no error: as it is */
    CHECK(completes("{\"error\":{\"message\":\"m\",\"type\":\"t\","
                    "\"param\":null,\"code\":null}}", NULL));
    CHECK(completes("{\n  \"error\": {\n    \"message\": \"m\",\n    "
                    "\"type\": \"t\",\n    \"param\": \"x\",\n    "
                    "\"code\": \"c\"\n  }\n}", NULL));
    CHECK(completes("{\"id\":\"x\",\"choices\":[]}", NULL));
    CHECK(completes("{\"error\":null}", NULL));
    CHECK(completes("{\"error\":[1]}", NULL));
    CHECK(completes("[1]", NULL));

    /* what it has is kept byte for byte, the rest added after it */
    CHECK(completes("{\"error\":{\"code\":\"c\" , \"message\":\"m\\u00e9\","
                    "\"failed_generation\":{\"a\":[1, 2]}},\"x_groq\":{}}",
                    "{\"error\":{\"code\":\"c\",\"message\":\"m\\u00e9\","
                    "\"failed_generation\":{\"a\":[1, 2]},"
                    "\"type\":\"invalid_request_error\",\"param\":null},"
                    "\"x_groq\":{}}"));
    CHECK(completes("{\"error\":{\"type\":7}}",
                    "{\"error\":{\"type\":7,"
                    "\"message\":\"The provider answered HTTP 400\","
                    "\"param\":null,\"code\":null}}"));
    CHECK(completes("{\"error\":{}}",
                    "{\"error\":{\"message\":\"The provider answered HTTP "
                    "400\",\"type\":\"invalid_request_error\","
                    "\"param\":null,\"code\":null}}"));

    /* a string: the message */
    CHECK(completes("{\"error\":\"model \\\"x\\\" not found\",\"n\":1}",
                    "{\"error\":{\"message\":\"model \\\"x\\\" not found\","
                    "\"type\":\"invalid_request_error\",\"param\":null,"
                    "\"code\":null},\"n\":1}"));
}


static int
strips(const char *text, const char *want)
{
    vmx_buf_t  out;
    int        rc;

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    rc = vmx_openai_chunk_without_usage(&out, json(text));

    if (want == NULL) {
        return rc == 0 && out.len == 0;
    }

    return rc == 1 && !vmx_buf_failed(&out) && is(out.data, out.len, want)
           && json(out.data) != NULL;
}


static void
test_chunk_without_usage(void)
{
    /* Groq's finish chunk */
    CHECK(strips("{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},"
                 "\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_1\","
                 "\"usage\":{\"prompt_tokens\":1}},\"usage\":"
                 "{\"prompt_tokens\":1,\"total_tokens\":3}}",
                 "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},"
                 "\"finish_reason\":\"stop\"}],"
                 "\"x_groq\":{\"id\":\"req_1\"}}"));

    /* either one alone; x_groq with nothing else left stays an object */
    CHECK(strips("{\"usage\":{\"a\":1},\"id\":\"c\"}", "{\"id\":\"c\"}"));
    CHECK(strips("{\"x_groq\":{\"usage\":{\"a\":1}},\"id\":\"c\"}",
                 "{\"x_groq\":{},\"id\":\"c\"}"));
    CHECK(strips("{\"usage\":null}", "{}"));

    /* nothing to strip; nested "usage" members are the chunk's own */
    CHECK(strips("{\"id\":\"c\",\"x_groq\":{\"id\":\"r\"}}", NULL));
    CHECK(strips("{\"choices\":[{\"delta\":{\"usage\":{}}}]}", NULL));
    CHECK(strips("[\"usage\"]", NULL));
    CHECK(strips("{\"x_groq\":7}", NULL));
}


int
main(void)
{
    test_status_mapping();
    test_openai_error();
    test_substantive();
    test_error_complete();
    test_chunk_without_usage();
    test_anthropic_error_first();
    test_gemini();

    return UNIT_REPORT();
}
