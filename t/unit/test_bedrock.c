/*
 * Unit tests of lib/vmx_bedrock.c: exact expected JSON for each mapping,
 * whole and streamed.
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_bedrock.h"


static vmx_translate_ctx_t    tc;
static vmx_translate_error_t  err;
static vmx_usage_t            usage;
static vmx_buf_t              out;
static int                    rc;


static void
ctx_init(const char *body)
{
    vmx_json_error_t  jerr;

    unit_free_all();
    memset(&tc, 0, sizeof(tc));
    tc.model = "m";
    tc.model_len = 1;
    tc.id = "chatcmpl-1";
    tc.id_len = 10;
    tc.created = 1700000000;
    tc.alloc = unit_alloc;
    tc.body = body ? vmx_json_parse(body, strlen(body), unit_alloc, NULL, 0,
                                    &jerr)
                   : NULL;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
}


/* out as a C string */
static const char *
text(void)
{
    vmx_buf_append(&out, "", 1);
    out.len--;

    return out.data;
}


/* the request's Converse body, or "" when refused */
static const char *
request(const char *body)
{
    ctx_init(body);
    rc = vmx_bedrock_request(&tc, &out, &err);

    return rc == 0 ? text() : "";
}


static int
refused(const char *body, const char *param)
{
    request(body);

    return rc == -1 && err.message != NULL
           && (param ? err.param != NULL && strcmp(err.param, param) == 0
                     : err.param == NULL);
}


static const char *
response(const char *body)
{
    ctx_init(NULL);
    rc = vmx_bedrock_response(&tc, body, strlen(body), &out, &usage);

    return text();
}


#define USER(t)  "{\"role\":\"user\",\"content\":" t "}"
#define REQ(m)   "{\"model\":\"x\",\"messages\":[" m "]"

static void
test_request_basic(void)
{
    CHECK(strcmp(request(REQ("{\"role\":\"system\",\"content\":\"Be brief.\"},"
                             USER("\"Hi\"")) ",\"max_tokens\":100,"
                         "\"temperature\":0.5,\"top_p\":0.9,\"stop\":\"END\","
                         "\"stream\":true,\"seed\":7}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"Hi\"}]}],\"system\":[{\"text\":\"Be brief.\"}],"
                 "\"inferenceConfig\":{\"maxTokens\":100,\"temperature\":0.5,"
                 "\"topP\":0.9,\"stopSequences\":[\"END\"]}}") == 0);

    /* max_completion_tokens first; system anywhere, in order; developer
       too; consecutive users merged; empty text dropped; escapes kept */
    CHECK(strcmp(request(REQ(USER("\"a\\n\"") ","
                             "{\"role\":\"developer\",\"content\":[{\"type\":"
                             "\"text\",\"text\":\"d1\"},{\"type\":\"text\","
                             "\"text\":\"\"}]},"
                             USER("[{\"type\":\"text\",\"text\":\"b\"}]") ","
                             "{\"role\":\"assistant\",\"content\":\"c\"},"
                             "{\"role\":\"system\",\"content\":\"s2\"},"
                             USER("\"\"") ","
                             "{\"role\":\"assistant\",\"content\":null},"
                             USER("\"e\""))
                         ",\"max_tokens\":1,\"max_completion_tokens\":2,"
                         "\"stop\":[\"x\",\"y\"],\"temperature\":null}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"a\\n\"},{\"text\":\"b\"}]},{\"role\":\"assistant\","
                 "\"content\":[{\"text\":\"c\"}]},{\"role\":\"user\","
                 "\"content\":[{\"text\":\"e\"}]}],\"system\":[{\"text\":"
                 "\"d1\"},{\"text\":\"s2\"}],\"inferenceConfig\":{"
                 "\"maxTokens\":2,\"stopSequences\":[\"x\",\"y\"]}}") == 0);

    CHECK(strcmp(request(REQ("") "}"), "{\"messages\":[]}") == 0);
}


#define WEATHER_TOOL                                                         \
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"              \
    "\"get_weather\",\"description\":\"Weather of a city\",\"parameters\":"  \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]"

#define WEATHER_SPEC                                                         \
    "\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"get_weather\","    \
    "\"description\":\"Weather of a city\",\"inputSchema\":{\"json\":"       \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}" \
    "}}]"

#define TOOL_TURNS                                                           \
    USER("\"Weather?\"") ","                                                 \
    "{\"role\":\"assistant\",\"content\":\"Let me see.\",\"tool_calls\":["   \
    "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"      \
    "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"      \
    "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":"      \
    "\"get_weather\",\"arguments\":\"\"}}]},"                                \
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C\"},"   \
    "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":["           \
    "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"\
    USER("\"Thanks\"")

#define TOOL_MESSAGES                                                        \
    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Weather?\"}]"\
    "},{\"role\":\"assistant\",\"content\":[{\"text\":\"Let me see.\"},"     \
    "{\"toolUse\":{\"toolUseId\":\"call_1\",\"name\":\"get_weather\","       \
    "\"input\":{\"city\":\"Paris\"}}},{\"toolUse\":{\"toolUseId\":"          \
    "\"call_2\",\"name\":\"get_weather\",\"input\":{}}}]},{\"role\":"        \
    "\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"call_1\","       \
    "\"content\":[{\"text\":\"18C\"}]}},{\"toolResult\":{\"toolUseId\":"     \
    "\"call_2\",\"content\":[{\"text\":\"a\"},{\"text\":\"b\"}]}},"          \
    "{\"text\":\"Thanks\"}]}]"

static void
test_request_tools(void)
{
    CHECK(strcmp(request(REQ(TOOL_TURNS) "," WEATHER_TOOL
                         ",\"tool_choice\":\"required\"}"),
                 TOOL_MESSAGES "," WEATHER_SPEC
                 ",\"toolChoice\":{\"any\":{}}}}") == 0);

    CHECK(strcmp(request(REQ(TOOL_TURNS) "," WEATHER_TOOL "}"),
                 TOOL_MESSAGES "," WEATHER_SPEC "}}") == 0);

    CHECK(strcmp(request(REQ(USER("\"x\"")) "," WEATHER_TOOL
                         ",\"tool_choice\":\"auto\"}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}]," WEATHER_SPEC ",\"toolChoice\":{\"auto\":{}}}}")
          == 0);

    CHECK(strcmp(request(REQ(USER("\"x\"")) "," WEATHER_TOOL
                         ",\"tool_choice\":{\"type\":\"function\",\"function\""
                         ":{\"name\":\"get_weather\"}}}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}]," WEATHER_SPEC ",\"toolChoice\":{\"tool\":{"
                 "\"name\":\"get_weather\"}}}}") == 0);

    /* "none": no tools at all */
    CHECK(strcmp(request(REQ(USER("\"x\"")) "," WEATHER_TOOL
                         ",\"tool_choice\":\"none\"}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}]}") == 0);

    /* a tool without parameters or description; an empty tool list */
    CHECK(strcmp(request(REQ(USER("\"x\"")) ",\"tools\":[{\"type\":"
                         "\"function\",\"function\":{\"name\":\"now\"}}]}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}],\"toolConfig\":{\"tools\":[{\"toolSpec\":{"
                 "\"name\":\"now\",\"inputSchema\":{\"json\":{\"type\":"
                 "\"object\",\"properties\":{}}}}}]}}") == 0);

    CHECK(strcmp(request(REQ(USER("\"x\"")) ",\"tools\":[]}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}]}") == 0);

    /* a tool message without content still has a result */
    CHECK(strcmp(request(REQ("{\"role\":\"tool\",\"tool_call_id\":\"c\"}")
                         "}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{"
                 "\"toolResult\":{\"toolUseId\":\"c\",\"content\":[{\"text\":"
                 "\"\"}]}}]}]}") == 0);
}


static void
test_request_images(void)
{
    CHECK(strcmp(request(REQ(USER("[{\"type\":\"text\",\"text\":\"What?\"},"
                                  "{\"type\":\"image_url\",\"image_url\":{"
                                  "\"url\":\"data:image/png;base64,iVBO\\/"
                                  "w0K=\"}},{\"type\":\"image_url\","
                                  "\"image_url\":{\"url\":\"data:IMAGE/JPG;"
                                  "name=a;base64,/9j/\",\"detail\":\"low\"}},"
                                  "{\"type\":\"image_url\",\"image_url\":{"
                                  "\"url\":\"data:image/webp;base64,UklG\"}},"
                                  "{\"type\":\"image_url\",\"image_url\":{"
                                  "\"url\":\"data:image/gif;base64,R0lG\"}}]"))
                         "}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"What?\"},{\"image\":{\"format\":\"png\",\"source\":{"
                 "\"bytes\":\"iVBO/w0K=\"}}},{\"image\":{\"format\":\"jpeg\","
                 "\"source\":{\"bytes\":\"/9j/\"}}},{\"image\":{\"format\":"
                 "\"webp\",\"source\":{\"bytes\":\"UklG\"}}},{\"image\":{"
                 "\"format\":\"gif\",\"source\":{\"bytes\":\"R0lG\"}}}]}]}")
          == 0);

    /* Converse needs the bytes: no URLs */
    CHECK(refused(REQ(USER("[{\"type\":\"text\",\"text\":\"x\"},{\"type\":"
                           "\"image_url\",\"image_url\":{\"url\":"
                           "\"https://example.com/a.png\"}}]")) "}",
                  "messages[0].content[1].image_url.url"));
    CHECK(refused(REQ(USER("[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                           "\"data:image/bmp;base64,Qk0=\"}}]")) "}",
                  "messages[0].content[0].image_url.url"));
    CHECK(refused(REQ(USER("[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                           "\"data:image/png,abc\"}}]")) "}",
                  "messages[0].content[0].image_url.url"));
    CHECK(refused(REQ(USER("[{\"type\":\"image_url\",\"image_url\":{}}]"))
                  "}", "messages[0].content[0].image_url.url"));

    /* images only in user turns */
    CHECK(refused(REQ("{\"role\":\"assistant\",\"content\":[{\"type\":"
                      "\"image_url\",\"image_url\":{\"url\":\"data:image/png;"
                      "base64,AA==\"}}]}") "}", "messages[0].content[0].type"));
}


static void
test_request_refused(void)
{
    CHECK(refused(REQ(USER("\"x\"")) ",\"n\":2}", "n"));
    CHECK(refused(REQ(USER("\"x\"")) ",\"logprobs\":true}", "logprobs"));
    CHECK(strcmp(request(REQ(USER("\"x\"")) ",\"n\":1,\"logprobs\":false}"),
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
                 "\"x\"}]}]}") == 0);

    CHECK(refused("{\"model\":\"x\"}", "messages"));
    CHECK(refused("[1]", NULL));
    CHECK(refused(REQ("{\"role\":\"function\",\"content\":\"x\"}") "}",
                  "messages[0].role"));
    CHECK(refused(REQ(USER("7")) "}", "messages[0].content"));
    CHECK(refused(REQ(USER("[{\"type\":\"input_audio\"}]")) "}",
                  "messages[0].content[0].type"));
    CHECK(refused(REQ(USER("[{\"type\":\"text\",\"text\":1}]")) "}",
                  "messages[0].content[0].text"));
    CHECK(refused(REQ("{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
                      "\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"{bad\"}}]}") "}",
                  "messages[0].tool_calls[0].function.arguments"));
    CHECK(refused(REQ("{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
                      "\"type\":\"function\",\"function\":{\"name\":\"f\","
                      "\"arguments\":\"[1]\"}}]}") "}",
                  "messages[0].tool_calls[0].function.arguments"));
    CHECK(refused(REQ("{\"role\":\"assistant\",\"tool_calls\":[{\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\"}}]}") "}",
                  "messages[0].tool_calls[0]"));
    CHECK(refused(REQ("{\"role\":\"assistant\",\"tool_calls\":{}}") "}",
                  "messages[0].tool_calls"));
    CHECK(refused(REQ("{\"role\":\"tool\",\"content\":\"x\"}") "}",
                  "messages[0].tool_call_id"));
    CHECK(refused(REQ("{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":"
                      "[{\"type\":\"image_url\"}]}") "}",
                  "messages[0].content[0]"));
    CHECK(refused(REQ(USER("\"x\"")) ",\"tools\":{}}", "tools"));
    CHECK(refused(REQ(USER("\"x\"")) ",\"tools\":[{\"type\":\"code\"}]}",
                  "tools[0]"));
    CHECK(refused(REQ(USER("\"x\"")) ",\"tools\":[{\"type\":\"function\","
                  "\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
                  "tools[0]"));
    CHECK(refused(REQ(USER("\"x\"")) "," WEATHER_TOOL
                  ",\"tool_choice\":\"sometimes\"}", "tool_choice"));
}


static void
test_path(void)
{
    ctx_init(NULL);
    vmx_bedrock_path(&out, "arn:aws:bedrock:us-east-1:1:inference-profile/"
                     "us.a-b_c.d~1:0", 60, 1);
    CHECK(strcmp(text(), "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3A"
                 "inference-profile%2Fus.a-b_c.d~1%3A0/converse-stream")
          == 0);

    out.len = 0;
    vmx_bedrock_path(&out, "amazon.nova-lite-v1:0", 21, 0);
    CHECK(strcmp(text(), "/model/amazon.nova-lite-v1%3A0/converse") == 0);
}


#define HEAD(object)                                                         \
    "{\"id\":\"chatcmpl-1\",\"object\":\"" object "\",\"created\":"         \
    "1700000000,\"model\":\"m\",\"system_fingerprint\":null,\"choices\":["

#define ANSWER(reason)                                                       \
    "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{"        \
    "\"text\":\"Hello\"},{\"text\":\" \\\"world\\\"\"}]}},\"stopReason\":"   \
    "\"" reason "\",\"usage\":{\"inputTokens\":10,\"outputTokens\":5,"       \
    "\"totalTokens\":15},\"metrics\":{\"latencyMs\":100}}"

#define COMPLETION(reason)                                                   \
    HEAD("chat.completion") "{\"index\":0,\"message\":{\"role\":"            \
    "\"assistant\",\"content\":\"Hello \\\"world\\\"\",\"refusal\":null,"    \
    "\"annotations\":[]},"                                                  \
    "\"logprobs\":null,\"finish_reason\":\"" reason "\"}],\"usage\":{"      \
    "\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"      \
    "\"prompt_tokens_details\":{\"cached_tokens\":0}}}"

static void
test_response(void)
{
    static const char  *reasons[][2] = {
        { "end_turn", "stop" }, { "stop_sequence", "stop" },
        { "max_tokens", "length" },
        { "model_context_window_exceeded", "length" },
        { "tool_use", "tool_calls" },
        { "guardrail_intervened", "content_filter" },
        { "content_filtered", "content_filter" },
        { "something_new", "stop" },
    };
    char    body[512], expect[1024];
    size_t  i;

    for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        snprintf(body, sizeof(body), ANSWER("%s"), reasons[i][0]);
        snprintf(expect, sizeof(expect), COMPLETION("%s"), reasons[i][1]);
        CHECK(strcmp(response(body), expect) == 0 && rc == 0);
    }

    CHECK(usage.prompt_tokens == 10 && usage.completion_tokens == 5
          && usage.total_tokens == 15 && usage.cached_tokens == -1);
}


static void
test_response_tools(void)
{
    CHECK(strcmp(response(
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":["
        "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"hm\"}}},"
        "{\"toolUse\":{\"toolUseId\":\"tooluse_1\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Paris\"}}},{\"toolUse\":{\"toolUseId\":"
        "\"tooluse_2\",\"name\":\"now\",\"input\":{}}}]}},\"stopReason\":"
        "\"tool_use\",\"usage\":{\"inputTokens\":3,\"outputTokens\":4,"
        "\"totalTokens\":107,\"cacheReadInputTokens\":80,"
        "\"cacheWriteInputTokens\":20}}"),
        HEAD("chat.completion") "{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":null,\"refusal\":null,\"annotations\":[],"
        "\"tool_calls\":["
        "{\"id\":\"tooluse_1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
        "{\"id\":\"tooluse_2\",\"type\":\"function\",\"function\":{\"name\":"
        "\"now\",\"arguments\":\"{}\"}}]},\"logprobs\":null,"
        "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":103,"
        "\"completion_tokens\":4,\"total_tokens\":107,"
        "\"prompt_tokens_details\":{\"cached_tokens\":80}}}") == 0);
    CHECK(usage.cached_tokens == 80 && usage.cache_write_tokens == 20);

    /* text and a tool call; no usage at all; an empty answer */
    CHECK(strcmp(response(
        "{\"output\":{\"message\":{\"content\":[{\"text\":\"On it.\"},"
        "{\"toolUse\":{\"toolUseId\":\"t\",\"name\":\"f\"}}]}}}"),
        HEAD("chat.completion") "{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"On it.\",\"refusal\":null,"
        "\"annotations\":[],"
        "\"tool_calls\":[{\"id\":\"t\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{}\"}}]},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":0,"
        "\"completion_tokens\":0,\"total_tokens\":0,"
        "\"prompt_tokens_details\":{\"cached_tokens\":0}}}") == 0);

    CHECK(strcmp(response("{\"output\":{\"message\":{\"content\":[]}},"
                          "\"stopReason\":\"end_turn\"}"),
                 HEAD("chat.completion") "{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":\"\",\"refusal\":null,"
                 "\"annotations\":[]},"
                 "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                 "\"prompt_tokens\":0,\"completion_tokens\":0,"
                 "\"total_tokens\":0,\"prompt_tokens_details\":{"
                 "\"cached_tokens\":0}}}") == 0);

    response("{\"output\":{}}");
    CHECK(rc == -1);
    response("not json");
    CHECK(rc == -1);
    response("{\"output\":{\"message\":{\"content\":[{\"toolUse\":{}}]}}}");
    CHECK(rc == -1);
}


/*
 * The stream.
 */

static vmx_bedrock_stream_t  stream;


static void
stream_init(int include_usage)
{
    ctx_init(NULL);
    tc.stream = 1;
    tc.include_usage = include_usage;
    vmx_bedrock_stream_init(&stream, &tc);
}


static int
ev(const char *type, const char *payload)
{
    return vmx_bedrock_stream_event(&stream, type, strlen(type), payload,
                                    strlen(payload), &out, &usage);
}


#define DELTA(d, finish)                                                     \
    "data: " HEAD("chat.completion.chunk") "{\"index\":0,\"delta\":{" d      \
    "},\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

#define ROLE_CHUNK                                                           \
    DELTA("\"role\":\"assistant\",\"content\":\"\",\"refusal\":null", "null")

#define METADATA                                                             \
    "{\"usage\":{\"inputTokens\":12,\"outputTokens\":3,\"totalTokens\":15}," \
    "\"metrics\":{\"latencyMs\":321},\"p\":\"abcdefghijklm\"}"

static void
test_stream_text(void)
{
    stream_init(1);

    CHECK(ev("messageStart", "{\"role\":\"assistant\",\"p\":\"abc\"}") == 0);
    CHECK(ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{"
             "\"text\":\"Hel\"},\"p\":\"ab\"}") == 0);
    CHECK(ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{"
             "\"text\":\"\"}}") == 0);
    CHECK(ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{"
             "\"reasoningContent\":{\"text\":\"hm\"}}}") == 0);
    CHECK(ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{"
             "\"text\":\"lo \\\"x\\\"\"}}") == 0);
    CHECK(ev("contentBlockStop", "{\"contentBlockIndex\":0}") == 0);
    CHECK(ev("messageStop", "{\"stopReason\":\"max_tokens\"}") == 0);
    CHECK(!stream.done && usage.prompt_tokens == -1);
    CHECK(ev("metadata", METADATA) == 0);
    CHECK(stream.done);

    CHECK(strcmp(text(),
                 ROLE_CHUNK
                 DELTA("\"content\":\"Hel\"", "null")
                 DELTA("\"content\":\"lo \\\"x\\\"\"", "null")
                 DELTA("", "\"length\"")
                 "data: " HEAD("chat.completion.chunk") "],\"usage\":{"
                 "\"prompt_tokens\":12,\"completion_tokens\":3,"
                 "\"total_tokens\":15,\"prompt_tokens_details\":{"
                 "\"cached_tokens\":0}}}\n\n"
                 "data: [DONE]\n\n") == 0);
    CHECK(usage.prompt_tokens == 12 && usage.completion_tokens == 3);

    /* after the end: nothing */
    out.len = 0;
    CHECK(ev("contentBlockDelta", "{\"delta\":{\"text\":\"x\"}}") == 0);
    CHECK(out.len == 0);
}


static void
test_stream_tools(void)
{
    stream_init(0);

    ev("messageStart", "{\"role\":\"assistant\"}");
    ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":"
       "\"Checking.\"}}");
    ev("contentBlockStop", "{\"contentBlockIndex\":0}");
    CHECK(ev("contentBlockStart", "{\"contentBlockIndex\":1,\"start\":{"
             "\"toolUse\":{\"toolUseId\":\"tooluse_a\",\"name\":"
             "\"get_weather\"}}}") == 0);
    ev("contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":"
       "{\"input\":\"{\\\"city\\\":\"}}}");
    ev("contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":"
       "{\"input\":\"\\\"Paris\\\"}\"}}}");
    ev("contentBlockStop", "{\"contentBlockIndex\":1}");
    ev("contentBlockStart", "{\"contentBlockIndex\":2,\"start\":{\"toolUse\":"
       "{\"toolUseId\":\"tooluse_b\",\"name\":\"now\"}}}");
    ev("contentBlockDelta", "{\"contentBlockIndex\":2,\"delta\":{\"toolUse\":"
       "{\"input\":\"{}\"}}}");
    ev("contentBlockStop", "{\"contentBlockIndex\":2}");
    /* a delta of no open tool call is dropped */
    ev("contentBlockDelta", "{\"contentBlockIndex\":2,\"delta\":{\"toolUse\":"
       "{\"input\":\"x\"}}}");
    ev("messageStop", "{\"stopReason\":\"tool_use\"}");
    ev("metadata", METADATA);

    CHECK(strcmp(text(),
                 ROLE_CHUNK
                 DELTA("\"content\":\"Checking.\"", "null")
                 DELTA("\"tool_calls\":[{\"index\":0,\"id\":\"tooluse_a\","
                       "\"type\":\"function\",\"function\":{\"name\":"
                       "\"get_weather\",\"arguments\":\"\"}}]", "null")
                 DELTA("\"tool_calls\":[{\"index\":0,\"function\":{"
                       "\"arguments\":\"{\\\"city\\\":\"}}]", "null")
                 DELTA("\"tool_calls\":[{\"index\":0,\"function\":{"
                       "\"arguments\":\"\\\"Paris\\\"}\"}}]", "null")
                 DELTA("\"tool_calls\":[{\"index\":1,\"id\":\"tooluse_b\","
                       "\"type\":\"function\",\"function\":{\"name\":"
                       "\"now\",\"arguments\":\"\"}}]", "null")
                 DELTA("\"tool_calls\":[{\"index\":1,\"function\":{"
                       "\"arguments\":\"{}\"}}]", "null")
                 DELTA("", "\"tool_calls\"")
                 "data: [DONE]\n\n") == 0);
}


static void
test_stream_odd(void)
{
    /* no messageStart, no messageStop: still a role and a finish chunk */
    stream_init(0);
    ev("contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":"
       "\"x\"}}");
    ev("somethingNew", "{}");
    ev("metadata", "{}");
    CHECK(strcmp(text(), ROLE_CHUNK DELTA("\"content\":\"x\"", "null")
                 DELTA("", "\"stop\"") "data: [DONE]\n\n") == 0);

    stream_init(0);
    CHECK(ev("messageStart", "not json") == -1);
    CHECK(ev("messageStart", "[]") == -1);
    CHECK(ev("contentBlockStart", "{\"start\":{\"toolUse\":{\"name\":\"f\"}}}")
          == -1);
    CHECK(ev("contentBlockStart", "{\"start\":{\"text\":\"\"}}") == 0);
    CHECK(out.len == 0);
}


static int
exception(const char *kind, const char *type, const char *payload,
    const char *message)
{
    vmx_eventstream_message_t  m;

    memset(&m, 0, sizeof(m));
    m.message_type.data = kind;
    m.message_type.len = strlen(kind);

    if (strcmp(kind, "error") == 0) {
        m.error_code.data = type;
        m.error_code.len = strlen(type);
        m.error_message.data = message;
        m.error_message.len = message ? strlen(message) : 0;

    } else {
        m.exception_type.data = type;
        m.exception_type.len = strlen(type);
    }

    m.payload = payload;
    m.payload_len = strlen(payload);

    return vmx_bedrock_stream_exception(&stream, &m, &out);
}


static void
test_stream_exceptions(void)
{
    static const struct {
        const char  *type;
        int          status;
        const char  *expect;
        int          client;
    } cases[] = {
        { "throttlingException", 429, "\"rate_limit_error\","
                                      "\"param\":null,\"code\":"
                                      "\"rate_limit_exceeded\"", 429 },
        { "validationException", 400, "\"invalid_request_error\","
                                      "\"param\":null,\"code\":null", 400 },
        { "modelStreamErrorException", 502, "\"server_error\","
          "\"param\":null,\"code\":null", 502 },
        { "internalServerException", 500, "\"server_error\","
          "\"param\":null,\"code\":null", 502 },
        { "serviceUnavailableException", 503, "\"server_error\","
          "\"param\":null,\"code\":null", 503 },
        { "modelTimeoutException", 504, "\"server_error\","
                                        "\"param\":null,\"code\":null", 502 },
    };
    char    expect[512];
    size_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stream_init(1);
        ev("messageStart", "{\"role\":\"assistant\"}");
        out.len = 0;

        CHECK(exception("exception", cases[i].type,
                        "{\"message\":\"Too \\\"many\\\"\"}", NULL)
              == cases[i].status);
        CHECK(stream.done);

        snprintf(expect, sizeof(expect), "data: {\"error\":{\"message\":"
                 "\"Too \\\"many\\\"\",\"type\":%s}}\n\n", cases[i].expect);
        CHECK(strcmp(text(), expect) == 0);

        /* what the client gets before its first byte, and the audit's
           code: the exception's own name */
        CHECK(stream.error.status == cases[i].client);
        CHECK(stream.error.code != NULL
              && strcmp(stream.error.code, cases[i].type) == 0);
        CHECK(stream.error.message_len == sizeof("Too \"many\"") - 1
              && memcmp(stream.error.message, "Too \"many\"",
                        stream.error.message_len) == 0);
    }

    /* an unreadable payload; an "error" message with its headers */
    stream_init(0);
    CHECK(exception("exception", "throttlingException", "<html>", NULL)
          == 429);
    CHECK(strcmp(text(), "data: {\"error\":{\"message\":\"provider error\","
                 "\"type\":\"rate_limit_error\",\"param\":null,\"code\":"
                 "\"rate_limit_exceeded\"}}\n\n") == 0);

    /* after the end, nothing more */
    stream_init(0);
    ev("metadata", "{}");
    out.len = 0;
    CHECK(exception("exception", "validationException", "{}", NULL) == 400);
    CHECK(out.len == 0);

    stream_init(0);
    CHECK(exception("error", "InternalFailure", "", "it broke") == 500);
    CHECK(strcmp(text(), "data: {\"error\":{\"message\":\"it broke\","
                 "\"type\":\"server_error\",\"param\":null,\"code\":null}}"
                 "\n\n") == 0);

    stream_init(0);
    CHECK(exception("error", "InternalFailure", "", "\xc3(") == 500);
    CHECK(strcmp(text(), "data: {\"error\":{\"message\":\"provider error\","
                 "\"type\":\"server_error\",\"param\":null,\"code\":null}}"
                 "\n\n") == 0);
}


static const char *
error(int status, const char *body, const char *type)
{
    ctx_init(NULL);
    vmx_bedrock_error(&tc, status, body, strlen(body), type, strlen(type),
                      &out);

    return text();
}


static void
test_errors(void)
{
    CHECK(strcmp(error(429, "{\"message\":\"Too many requests, please wait "
                       "before trying again.\"}", "ThrottlingException:http:"
                       "//internal.amazon.com/coral/com.amazon.bedrock/"),
                 "{\"error\":{\"message\":\"Too many requests, please wait "
                 "before trying again.\",\"type\":\"rate_limit_error\","
                 "\"param\":null,\"code\":\"rate_limit_exceeded\"}}") == 0);

    CHECK(strcmp(error(400, "{\"message\":\"Malformed input request\"}",
                       "ValidationException"),
                 "{\"error\":{\"message\":\"Malformed input request\","
                 "\"type\":\"invalid_request_error\",\"param\":null,"
                 "\"code\":null}}") == 0);

    CHECK(strcmp(error(403, "{\"Message\":\"User is not authorized\"}",
                       "AccessDeniedException"),
                 "{\"error\":{\"message\":\"User is not authorized\","
                 "\"type\":\"permission_error\",\"param\":null,"
                 "\"code\":null}}") == 0);

    /* no readable message: the error type, else a generic one */
    CHECK(strcmp(error(503, "<html>", "ServiceUnavailableException:x"),
                 "{\"error\":{\"message\":\"ServiceUnavailableException\","
                 "\"type\":\"server_error\",\"param\":null,\"code\":null}}")
          == 0);
    CHECK(strcmp(error(500, "", "Bad\xff"),
                 "{\"error\":{\"message\":\"provider error\",\"type\":"
                 "\"server_error\",\"param\":null,\"code\":null}}") == 0);
    CHECK(strcmp(error(404, "", ""),
                 "{\"error\":{\"message\":\"provider error\",\"type\":"
                 "\"not_found_error\",\"param\":null,\"code\":null}}") == 0);
}


int
main(void)
{
    test_request_basic();
    test_request_tools();
    test_request_images();
    test_request_refused();
    test_path();
    test_response();
    test_response_tools();
    test_stream_text();
    test_stream_tools();
    test_stream_odd();
    test_stream_exceptions();
    test_errors();

    unit_free_all();

    return UNIT_REPORT();
}
