/*
 * Unit tests of lib/vmx_gemini.c.  JSON is written with single quotes,
 * turned into double quotes before use (unit_q()), so that expectations read as
 * JSON; a double quote inside a JSON string is written \\\".
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_gemini.h"


static vmx_translate_ctx_t
ctx(const char *body, int include_usage)
{
    vmx_translate_ctx_t  tc;
    vmx_json_error_t     err;

    memset(&tc, 0, sizeof(tc));
    tc.model = "gemini-2.0-flash";
    tc.model_len = strlen(tc.model);
    tc.id = "chatcmpl-1";
    tc.id_len = strlen(tc.id);
    tc.created = 1700000000;
    tc.include_usage = include_usage;
    tc.alloc = unit_alloc;

    if (body != NULL) {
        body = unit_q(body);
        tc.body = vmx_json_parse(body, strlen(body), unit_alloc, NULL, 0, &err);
    }

    return tc;
}


static int
same(const vmx_buf_t *out, const char *want)
{
    return unit_same(out->failed ? NULL : out->data, out->len, want);
}


static int
valid_json(const vmx_buf_t *out)
{
    vmx_json_error_t  err;

    return vmx_json_parse(out->data, out->len, unit_alloc, NULL, 0, &err)
           != NULL;
}


/* the request translation of body is want */
static int
request(const char *body, const char *want)
{
    vmx_translate_ctx_t    tc = ctx(body, 0);
    vmx_translate_error_t  err = { NULL, NULL };
    vmx_buf_t              out;
    int                    rc;

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    rc = vmx_gemini_request(&tc, &out, &err);

    if (rc != 0) {
        fprintf(stderr, "request failed: %s (%s)\n", err.message,
                err.param ? err.param : "-");
        return 0;
    }

    return valid_json(&out) && same(&out, want);
}


/* the request translation of body fails on param */
static int
request_fails(const char *body, const char *param)
{
    vmx_translate_ctx_t    tc = ctx(body, 0);
    vmx_translate_error_t  err = { NULL, NULL };
    vmx_buf_t              out;

    vmx_buf_init(&out, unit_alloc, NULL, 0);

    if (vmx_gemini_request(&tc, &out, &err) == -1 && err.message != NULL
        && err.param != NULL && strcmp(err.param, param) == 0)
    {
        return 1;
    }

    fprintf(stderr, "want a failure on %s, got %s\n", param,
            err.param ? err.param : "none");

    return 0;
}


static vmx_usage_t  usage;


/* the answer body translates to want with status rc */
static int
response(const char *body, int want_rc, const char *want)
{
    vmx_translate_ctx_t  tc = ctx(NULL, 0);
    vmx_buf_t            out;
    int                  rc;

    body = unit_q(body);
    vmx_usage_init(&usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    rc = vmx_gemini_response(&tc, body, strlen(body), &out, &usage);

    if (rc != want_rc) {
        fprintf(stderr, "response: rc %d, want %d\n", rc, want_rc);
        return 0;
    }

    return want == NULL || (valid_json(&out) && same(&out, want));
}


/* a stream of events (NULL-terminated) and its normal end give want */
static int
stream(const char **events, int include_usage, const char *want)
{
    vmx_translate_ctx_t  tc = ctx(NULL, include_usage);
    vmx_gemini_stream_t  s;
    vmx_buf_t            out;
    const char          *data;

    vmx_usage_init(&usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_gemini_stream_init(&s, &tc);

    for ( /* void */ ; *events; events++) {
        data = unit_q(*events);

        if (vmx_gemini_stream_event(&s, data, strlen(data), &out, &usage) != 0) {
            fprintf(stderr, "event failed: %s\n", data);
            return 0;
        }
    }

    vmx_gemini_stream_end(&s, &out, &usage);

    return s.done && same(&out, want);
}


static int
error(int status, const char *body, const char *want)
{
    vmx_translate_ctx_t  tc = ctx(NULL, 0);
    vmx_buf_t            out;

    body = unit_q(body);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_gemini_error(&tc, status, body, strlen(body), &out);

    return valid_json(&out) && same(&out, want);
}


#define USER_HI  "{'role':'user','content':'Hi'}"
#define HI       "{'role':'user','parts':[{'text':'Hi'}]}"


static void
test_messages(void)
{
    CHECK(request("{'model':'m','messages':["
                  "{'role':'system','content':'Be brief.'},"
                  "{'role':'user','content':'Hi'},"
                  "{'role':'user','content':[{'type':'text','text':'there'}]},"
                  "{'role':'assistant','content':'Hello!'},"
                  "{'role':'developer','content':"
                  "[{'type':'text','text':'Use French.'}]},"
                  "{'role':'user','content':'Caf\\u00e9 \\\"ok\\\"'}]}",
                  "{'systemInstruction':{'parts':[{'text':'Be brief.'},"
                  "{'text':'Use French.'}]},'contents':["
                  "{'role':'user','parts':[{'text':'Hi'},{'text':'there'}]},"
                  "{'role':'model','parts':[{'text':'Hello!'}]},"
                  "{'role':'user','parts':[{'text':'Caf\\u00e9 \\\"ok\\\"'}]}]}"));

    /* empty texts and contents make no parts, so no empty turns */
    CHECK(request("{'messages':[{'role':'system','content':''},"
                  "{'role':'user','content':''},{'role':'user','content':null},"
                  "{'role':'assistant','content':[{'type':'text','text':'A'},"
                  "{'type':'refusal','refusal':'No.'}]}," USER_HI "]}",
                  "{'contents':[{'role':'model','parts':[{'text':'A'},"
                  "{'text':'No.'}]}," HI "]}"));

    CHECK(request("{'messages':[]}", "{'contents':[]}"));

    CHECK(request_fails("{'model':'m'}", "messages"));
    CHECK(request_fails("{'messages':{}}", "messages"));
    CHECK(request_fails("{'messages':[{'role':'robot','content':'x'}]}",
                        "messages[0].role"));
    CHECK(request_fails("{'messages':[" USER_HI ",{'content':'x'}]}",
                        "messages[1].role"));
    CHECK(request_fails("{'messages':[{'role':'user','content':5}]}",
                        "messages[0].content"));
    CHECK(request_fails("{'messages':[{'role':'system','content':"
                        "[{'type':'image_url','image_url':{'url':'x'}}]}]}",
                        "messages[0].content[0]"));
    CHECK(request_fails("{'messages':[{'role':'user','content':"
                        "[{'type':'video','video':{}}]}]}",
                        "messages[0].content[0].type"));
}


static void
test_media(void)
{
    CHECK(request("{'messages':[{'role':'user','content':["
                  "{'type':'text','text':'What is this?'},"
                  "{'type':'image_url','image_url':"
                  "{'url':'data:image/png;base64,iVBORw0KGgo='}},"
                  "{'type':'image_url','image_url':{'url':"
                  "'https://example.com/cat.WEBP?size=large','detail':'high'}},"
                  "{'type':'image_url','image_url':"
                  "{'url':'https://example.com/photo'}},"
                  "{'type':'image_url','image_url':'http://example.com/a.gif'}"
                  "]}]}",
                  "{'contents':[{'role':'user','parts':["
                  "{'text':'What is this?'},"
                  "{'inlineData':{'mimeType':'image/png','data':'iVBORw0KGgo='}},"
                  "{'fileData':{'mimeType':'image/webp','fileUri':"
                  "'https://example.com/cat.WEBP?size=large'}},"
                  "{'fileData':{'mimeType':'image/jpeg','fileUri':"
                  "'https://example.com/photo'}},"
                  "{'fileData':{'mimeType':'image/gif','fileUri':"
                  "'http://example.com/a.gif'}}]}]}"));

    CHECK(request("{'messages':[{'role':'user','content':["
                  "{'type':'input_audio','input_audio':"
                  "{'data':'UklGRg==','format':'wav'}},"
                  "{'type':'file','file':{'filename':'a.pdf','file_data':"
                  "'data:application/pdf;name=a.pdf;base64,JVBERi0='}}]}]}",
                  "{'contents':[{'role':'user','parts':["
                  "{'inlineData':{'mimeType':'audio/wav','data':'UklGRg=='}},"
                  "{'inlineData':{'mimeType':'application/pdf',"
                  "'data':'JVBERi0='}}]}]}"));

    CHECK(request_fails("{'messages':[{'role':'user','content':["
                        "{'type':'image_url','image_url':"
                        "{'url':'ftp://example.com/a.png'}}]}]}",
                        "messages[0].content[0].image_url.url"));
    CHECK(request_fails("{'messages':[" USER_HI ",{'role':'user','content':["
                        "{'type':'text','text':'x'},{'type':'image_url',"
                        "'image_url':{'url':'data:image/png,abc'}}]}]}",
                        "messages[1].content[1].image_url.url"));
    CHECK(request_fails("{'messages':[{'role':'user','content':["
                        "{'type':'image_url','image_url':"
                        "{'url':'data:;base64,abc'}}]}]}",
                        "messages[0].content[0].image_url.url"));
    CHECK(request_fails("{'messages':[{'role':'user','content':["
                        "{'type':'image_url','image_url':{}}]}]}",
                        "messages[0].content[0].image_url"));
    CHECK(request_fails("{'messages':[{'role':'user','content':["
                        "{'type':'file','file':{'file_id':'file-1'}}]}]}",
                        "messages[0].content[0].file"));
    CHECK(request_fails("{'messages':[{'role':'user','content':["
                        "{'type':'input_audio','input_audio':{'data':'x'}}]}]}",
                        "messages[0].content[0].input_audio"));
}


static void
test_tool_conversation(void)
{
    CHECK(request("{'messages':["
                  "{'role':'user','content':'Weather in Paris, and the time?'},"
                  "{'role':'assistant','content':null,'tool_calls':["
                  "{'id':'call_a','type':'function','function':"
                  "{'name':'get_weather','arguments':"
                  "'{\\\"city\\\": \\\"Paris\\\"}'}},"
                  "{'id':'call_b','type':'function','function':"
                  "{'name':'get_time','arguments':''}}]},"
                  "{'role':'tool','tool_call_id':'call_b','content':'12:00'},"
                  "{'role':'tool','tool_call_id':'call_a','content':"
                  "'{\\\"temp\\\": 21}'},"
                  "{'role':'user','content':'Thanks'}],"
                  "'tools':[{'type':'function','function':{'name':'get_weather',"
                  "'description':'Current weather','parameters':"
                  "{'type':'object','properties':{'city':{'type':'string'}},"
                  "'required':['city'],'additionalProperties':false},"
                  "'strict':true}},"
                  "{'type':'function','function':{'name':'get_time'}}],"
                  "'tool_choice':'required','parallel_tool_calls':true}",
                  "{'contents':["
                  "{'role':'user','parts':"
                  "[{'text':'Weather in Paris, and the time?'}]},"
                  "{'role':'model','parts':["
                  "{'functionCall':{'name':'get_weather','args':"
                  "{\"city\": \"Paris\"}},"
                  "'thoughtSignature':'skip_thought_signature_validator'},"
                  "{'functionCall':{'name':'get_time','args':{}}}]},"
                  "{'role':'user','parts':["
                  "{'functionResponse':{'name':'get_time','response':"
                  "{'result':'12:00'}}},"
                  "{'functionResponse':{'name':'get_weather','response':"
                  "{'result':{\"temp\": 21}}}},"
                  "{'text':'Thanks'}]}],"
                  "'tools':[{'functionDeclarations':["
                  "{'name':'get_weather','description':'Current weather',"
                  "'parametersJsonSchema':{'type':'object','properties':"
                  "{'city':{'type':'string'}},'required':['city'],"
                  "'additionalProperties':false}},"
                  "{'name':'get_time'}]}],"
                  "'toolConfig':{'functionCallingConfig':{'mode':'ANY'}}}"));

    /* ids reused across turns name the latest call; text parts of a tool
       result are joined, then read as JSON */
    CHECK(request("{'messages':[" USER_HI ","
                  "{'role':'assistant','content':'Checking.','tool_calls':["
                  "{'id':'call_1','type':'function','function':"
                  "{'name':'a','arguments':'{}'}}]},"
                  "{'role':'tool','tool_call_id':'call_1','content':"
                  "[{'type':'text','text':'[1,'},{'type':'text','text':'2]'}]},"
                  "{'role':'assistant','tool_calls':["
                  "{'id':'call_1','type':'function','function':"
                  "{'name':'b','arguments':'{}'}}]},"
                  "{'role':'tool','tool_call_id':'call_1','content':null},"
                  "{'role':'function','name':'c','content':'true'}]}",
                  "{'contents':[" HI ","
                  "{'role':'model','parts':[{'text':'Checking.'},"
                  "{'functionCall':{'name':'a','args':{}},"
                  "'thoughtSignature':'skip_thought_signature_validator'}]},"
                  "{'role':'user','parts':[{'functionResponse':{'name':'a',"
                  "'response':{'result':[1,2]}}}]},"
                  "{'role':'model','parts':[{'functionCall':{'name':'b',"
                  "'args':{}},"
                  "'thoughtSignature':'skip_thought_signature_validator'}]},"
                  "{'role':'user','parts':["
                  "{'functionResponse':{'name':'b','response':{'result':''}}},"
                  "{'functionResponse':{'name':'c','response':"
                  "{'result':true}}}]}]}"));

    CHECK(request_fails("{'messages':[" USER_HI ",{'role':'assistant',"
                        "'tool_calls':[{'id':'x','type':'function','function':"
                        "{'name':'a','arguments':'{}'}},{'id':'y','type':"
                        "'function','function':{'name':'b','arguments':"
                        "'not json'}}]}]}",
                        "messages[1].tool_calls[1].function.arguments"));
    CHECK(request_fails("{'messages':[{'role':'assistant','tool_calls':"
                        "[{'id':'x','function':{'name':'a','arguments':'[1]'}}]"
                        "}]}", "messages[0].tool_calls[0].function.arguments"));
    CHECK(request_fails("{'messages':[{'role':'assistant','tool_calls':"
                        "[{'id':'x','function':{'arguments':'{}'}}]}]}",
                        "messages[0].tool_calls[0].function.name"));
    CHECK(request_fails("{'messages':[{'role':'assistant','tool_calls':{}}]}",
                        "messages[0].tool_calls"));
    CHECK(request_fails("{'messages':[" USER_HI ",{'role':'tool',"
                        "'tool_call_id':'nope','content':'x'}]}",
                        "messages[1].tool_call_id"));
    CHECK(request_fails("{'messages':[{'role':'assistant','tool_calls':"
                        "[{'id':'x','function':{'name':'a','arguments':'{}'}}]},"
                        "{'role':'tool','tool_call_id':'x','content':5}]}",
                        "messages[1].content"));
}


#define TOOLS  "'tools':[{'type':'function','function':{'name':'f'}}]"
#define DECLS  "'tools':[{'functionDeclarations':[{'name':'f'}]}]"


static void
test_tool_choice(void)
{
    CHECK(request("{'messages':[" USER_HI "]," TOOLS ",'tool_choice':'auto'}",
                  "{'contents':[" HI "]," DECLS ",'toolConfig':"
                  "{'functionCallingConfig':{'mode':'AUTO'}}}"));
    CHECK(request("{'messages':[" USER_HI "]," TOOLS ",'tool_choice':'none'}",
                  "{'contents':[" HI "]," DECLS ",'toolConfig':"
                  "{'functionCallingConfig':{'mode':'NONE'}}}"));
    CHECK(request("{'messages':[" USER_HI "]," TOOLS ",'tool_choice':"
                  "{'type':'function','function':{'name':'f'}}}",
                  "{'contents':[" HI "]," DECLS ",'toolConfig':"
                  "{'functionCallingConfig':{'mode':'ANY',"
                  "'allowedFunctionNames':['f']}}}"));
    CHECK(request("{'messages':[" USER_HI "],'tools':[],'tool_choice':null}",
                  "{'contents':[" HI "]}"));

    CHECK(request_fails("{'messages':[" USER_HI "]," TOOLS ",'tool_choice':"
                        "'sometimes'}", "tool_choice"));
    CHECK(request_fails("{'messages':[" USER_HI "]," TOOLS ",'tool_choice':"
                        "{'type':'function'}}", "tool_choice"));
    CHECK(request_fails("{'messages':[" USER_HI "],'tools':[{'type':'function',"
                        "'function':{'name':'f'}},{'type':'custom','custom':"
                        "{'name':'g'}}]}", "tools[1].type"));
    CHECK(request_fails("{'messages':[" USER_HI "],'tools':[{'type':'function',"
                        "'function':{}}]}", "tools[0].function.name"));
    CHECK(request_fails("{'messages':[" USER_HI "],'tools':{}}", "tools"));
}


static void
test_generation_config(void)
{
    CHECK(request("{'messages':[" USER_HI "],'temperature':0.2,'top_p':0.9,"
                  "'max_tokens':50,'max_completion_tokens':100,'n':2,"
                  "'stop':['END','STOP'],'seed':7,'presence_penalty':0.5,"
                  "'frequency_penalty':-0.5,'stream':true,'user':'u1',"
                  "'response_format':{'type':'json_object'}}",
                  "{'contents':[" HI "],'generationConfig':{'temperature':0.2,"
                  "'topP':0.9,'maxOutputTokens':100,'candidateCount':2,"
                  "'stopSequences':['END','STOP'],'seed':7,"
                  "'presencePenalty':0.5,'frequencyPenalty':-0.5,"
                  "'responseMimeType':'application/json'}}"));

    CHECK(request("{'messages':[" USER_HI "],'max_tokens':50,'stop':'END',"
                  "'temperature':null,'max_completion_tokens':null}",
                  "{'contents':[" HI "],'generationConfig':{"
                  "'maxOutputTokens':50,'stopSequences':['END']}}"));

    CHECK(request("{'messages':[" USER_HI "],'stop':[],"
                  "'response_format':{'type':'text'}}",
                  "{'contents':[" HI "]}"));

    CHECK(request("{'messages':[" USER_HI "],'response_format':"
                  "{'type':'json_schema','json_schema':{'name':'answer',"
                  "'strict':true,'schema':{'type':'object','properties':"
                  "{'a':{'type':'integer'}},'additionalProperties':false}}}}",
                  "{'contents':[" HI "],'generationConfig':{"
                  "'responseMimeType':'application/json',"
                  "'responseJsonSchema':{'type':'object','properties':"
                  "{'a':{'type':'integer'}},'additionalProperties':false}}}"));

    CHECK(request_fails("{'messages':[" USER_HI "],'temperature':'hot'}",
                        "temperature"));
    CHECK(request_fails("{'messages':[" USER_HI "],'max_tokens':true}",
                        "max_tokens"));
    CHECK(request_fails("{'messages':[" USER_HI "],'stop':['a',1]}", "stop"));
    CHECK(request_fails("{'messages':[" USER_HI "],'stop':7}", "stop"));
    CHECK(request_fails("{'messages':[" USER_HI "],'response_format':"
                        "{'type':'xml'}}", "response_format.type"));
}


#define HEAD  "'id':'chatcmpl-1','object':'chat.completion','created':1700000000,"\
              "'model':'gemini-2.0-flash','system_fingerprint':null"

#define MESSAGE_END  "'refusal':null,'annotations':[]},'logprobs':null,"


static void
test_response(void)
{
    /* pretty-printed, as Gemini sends it */
    CHECK(response("{\n  'candidates': [\n    {\n      'content': {\n"
                   "        'parts': [\n"
                   "          {'text': 'Let me think...', 'thought': true},\n"
                   "          {'text': 'Hello', 'thought': false},\n"
                   "          {'text': ', \\u4e16\\u754c\\n'}\n"
                   "        ],\n        'role': 'model'\n      },\n"
                   "      'finishReason': 'STOP',\n      'index': 0\n    }\n"
                   "  ],\n  'usageMetadata': {\n    'promptTokenCount': 5,\n"
                   "    'candidatesTokenCount': 3,\n    'totalTokenCount': 20,\n"
                   "    'cachedContentTokenCount': 2,\n"
                   "    'thoughtsTokenCount': 12\n  },\n"
                   "  'modelVersion': 'gemini-2.5-flash',\n"
                   "  'responseId': 'mIR2aK-2OdO'\n}\n", 0,
                   "{" HEAD ",'choices':[{'index':0,'message':{'role':"
                   "'assistant','content':'Hello, \xe4\xb8\x96\xe7\x95\x8c\\n',"
                   MESSAGE_END "'finish_reason':'stop'}],'usage':{"
                   "'prompt_tokens':5,'completion_tokens':15,'total_tokens':20,"
                   "'prompt_tokens_details':{'cached_tokens':2}}}"));
    CHECK(usage.prompt_tokens == 5 && usage.completion_tokens == 15
          && usage.total_tokens == 20 && usage.cached_tokens == 2);

    /* function calls: generated ids unless the part has one, compact args */
    CHECK(response("{'candidates':[{'content':{'parts':["
                   "{'text':'Let me check.'},"
                   "{'functionCall':{'name':'get_weather','args':"
                   "{'city': 'Paris', 'units': ['c', 'f'], 'q': 'a \\\"b\\\"'}},"
                   "'thoughtSignature':'CiIBVKhc7A=='},"
                   "{'functionCall':{'id':'fc-7','name':'get_time'}}],"
                   "'role':'model'},'finishReason':'STOP','index':0}],"
                   "'usageMetadata':{'promptTokenCount':50,"
                   "'candidatesTokenCount':20,'totalTokenCount':70}}", 0,
                   "{" HEAD ",'choices':[{'index':0,'message':{'role':"
                   "'assistant','content':'Let me check.','tool_calls':["
                   "{'id':'call_1','type':'function','function':{'name':"
                   "'get_weather','arguments':'{\\\"city\\\":\\\"Paris\\\","
                   "\\\"units\\\":[\\\"c\\\",\\\"f\\\"],"
                   "\\\"q\\\":\\\"a \\\\\\\"b\\\\\\\"\\\"}'}},"
                   "{'id':'fc-7','type':'function','function':{'name':"
                   "'get_time','arguments':'{}'}}]," MESSAGE_END
                   "'finish_reason':'tool_calls'}],'usage':{"
                   "'prompt_tokens':50,'completion_tokens':20,"
                   "'total_tokens':70,'prompt_tokens_details':"
                   "{'cached_tokens':0}}}"));

    /* only calls: content null; two candidates, ids unique in the answer */
    CHECK(response("{'candidates':[{'content':{'parts':[{'functionCall':"
                   "{'name':'f','args':{}}}],'role':'model'},"
                   "'finishReason':'STOP','index':0},"
                   "{'content':{'parts':[{'functionCall':{'name':'g','args':"
                   "{'x':1}}}],'role':'model'},'finishReason':'STOP',"
                   "'index':1}]}", 0,
                   "{" HEAD ",'choices':["
                   "{'index':0,'message':{'role':'assistant','content':null,"
                   "'tool_calls':[{'id':'call_1','type':'function','function':"
                   "{'name':'f','arguments':'{}'}}]," MESSAGE_END
                   "'finish_reason':'tool_calls'},"
                   "{'index':1,'message':{'role':'assistant','content':null,"
                   "'tool_calls':[{'id':'call_2','type':'function','function':"
                   "{'name':'g','arguments':'{\\\"x\\\":1}'}}]," MESSAGE_END
                   "'finish_reason':'tool_calls'}],'usage':{"
                   "'prompt_tokens':0,'completion_tokens':0,'total_tokens':0,"
                   "'prompt_tokens_details':{'cached_tokens':0}}}"));

    CHECK(response("{'candidates':[{'content':{'parts':[{'text':'Once upon'}],"
                   "'role':'model'},'finishReason':'MAX_TOKENS','index':0}],"
                   "'usageMetadata':{'promptTokenCount':4,"
                   "'candidatesTokenCount':2,'totalTokenCount':6}}", 0,
                   "{" HEAD ",'choices':[{'index':0,'message':{'role':"
                   "'assistant','content':'Once upon'," MESSAGE_END
                   "'finish_reason':'length'}],'usage':{'prompt_tokens':4,"
                   "'completion_tokens':2,'total_tokens':6,"
                   "'prompt_tokens_details':{'cached_tokens':0}}}"));

    /* a filtered answer: no content, content_filter */
    CHECK(response("{'candidates':[{'finishReason':'SAFETY','index':0,"
                   "'safetyRatings':[{'category':'HARM_CATEGORY_HARASSMENT',"
                   "'probability':'HIGH','blocked':true}]}],"
                   "'usageMetadata':{'promptTokenCount':9,"
                   "'totalTokenCount':9}}", 0,
                   "{" HEAD ",'choices':[{'index':0,'message':{'role':"
                   "'assistant','content':''," MESSAGE_END
                   "'finish_reason':'content_filter'}],'usage':{"
                   "'prompt_tokens':9,'completion_tokens':0,'total_tokens':9,"
                   "'prompt_tokens_details':{'cached_tokens':0}}}"));

    CHECK(response("{'candidates':[{'content':{'parts':[{'text':'x'}]},"
                   "'finishReason':'RECITATION'}]}", 0, NULL));
    CHECK(response("{'candidates':[{'content':{'parts':[]},"
                   "'finishReason':'PROHIBITED_CONTENT'},{'finishReason':"
                   "'OTHER'}]}", 0,
                   "{" HEAD ",'choices':[{'index':0,'message':{'role':"
                   "'assistant','content':''," MESSAGE_END
                   "'finish_reason':'content_filter'},{'index':1,'message':"
                   "{'role':'assistant','content':''," MESSAGE_END
                   "'finish_reason':'stop'}],'usage':{'prompt_tokens':0,"
                   "'completion_tokens':0,'total_tokens':0,"
                   "'prompt_tokens_details':{'cached_tokens':0}}}"));
}


static void
test_response_errors(void)
{
    /* a blocked prompt is the client's error */
    CHECK(response("{'promptFeedback':{'blockReason':'SAFETY','safetyRatings':"
                   "[{'category':'HARM_CATEGORY_DANGEROUS_CONTENT',"
                   "'probability':'HIGH'}]},'usageMetadata':"
                   "{'promptTokenCount':7,'totalTokenCount':7}}", 400,
                   "{'error':{'message':'The prompt was blocked by the content "
                   "filter (SAFETY).','type':'invalid_request_error',"
                   "'param':null,'code':'content_filter'}}"));
    CHECK(usage.prompt_tokens == 7);

    CHECK(response("{'candidates':[],'promptFeedback':"
                   "{'blockReason':'PROHIBITED_CONTENT'}}", 400,
                   "{'error':{'message':'The prompt was blocked by the content "
                   "filter (PROHIBITED_CONTENT).','type':"
                   "'invalid_request_error','param':null,"
                   "'code':'content_filter'}}"));

    CHECK(response("{'promptFeedback':{'blockReason':'"
                   "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                   "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                   "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                   "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                   "\u00e9'}}", 400,
                   "{'error':{'message':'The prompt was blocked by the content "
                   "filter.','type':'invalid_request_error','param':null,"
                   "'code':'content_filter'}}"));

    CHECK(response("{'error':{'code':503,'message':'The model is overloaded.',"
                   "'status':'UNAVAILABLE'}}", 503,
                   "{'error':{'message':'The model is overloaded.','type':"
                   "'server_error','param':null,'code':'unavailable'}}"));

    CHECK(response("{'candidates':[{'content':{'parts':[{'text':'x'}]}}]", -1,
                   NULL));
    CHECK(response("[{'candidates':[]}]", -1, NULL));
    CHECK(response("", -1, NULL));
}


#define CHUNK_HEAD  "data: {'id':'chatcmpl-1','object':'chat.completion.chunk',"\
                    "'created':1700000000,'model':'gemini-2.0-flash',"        \
                    "'system_fingerprint':null,'choices':["
#define CHUNK(i, delta, finish)                                               \
    CHUNK_HEAD "{'index':" #i ",'delta':" delta ",'logprobs':null,"           \
    "'finish_reason':" finish "}]}\n\n"
#define ROLE(i)  CHUNK(i, "{'role':'assistant','content':'','refusal':null}", "null")
#define DONE     "data: [DONE]\n\n"


/* recorded from gemini-2.0-flash and gemini-2.5-flash */
static const char  *text_events[] = {
    "{'candidates': [{'content': {'parts': [{'text': 'The sky'}],"
    "'role': 'model'},'index': 0}],'usageMetadata': {'promptTokenCount': 8,"
    "'totalTokenCount': 8,'promptTokensDetails': [{'modality': 'TEXT',"
    "'tokenCount': 8}]},'modelVersion': 'gemini-2.0-flash',"
    "'responseId': 'Xo4faJ'}",
    "{'candidates': [{'content': {'parts': [{'text': ' is blue \\u2014 '},"
    "{'text': 'Rayleigh scattering.\\n'}],'role': 'model'},'index': 0}],"
    "'usageMetadata': {'promptTokenCount': 8,'totalTokenCount': 8},"
    "'modelVersion': 'gemini-2.0-flash','responseId': 'Xo4faJ'}",
    "{'candidates': [{'content': {'parts': [{'text': ''}],'role': 'model'},"
    "'finishReason': 'STOP','index': 0}],'usageMetadata': "
    "{'promptTokenCount': 8,'candidatesTokenCount': 11,"
    "'totalTokenCount': 19,'promptTokensDetails': [{'modality': 'TEXT',"
    "'tokenCount': 8}],'candidatesTokensDetails': [{'modality': 'TEXT',"
    "'tokenCount': 11}]},'modelVersion': 'gemini-2.0-flash',"
    "'responseId': 'Xo4faJ'}",
    NULL
};

static const char  *call_events[] = {
    "{'candidates': [{'content': {'parts': [{'text': 'Thinking about it',"
    "'thought': true}],'role': 'model'},'index': 0}],'usageMetadata': "
    "{'promptTokenCount': 41,'totalTokenCount': 86,'thoughtsTokenCount': 45},"
    "'modelVersion': 'gemini-2.5-flash','responseId': 'eI4faP'}",
    "{'candidates': [{'content': {'parts': [{'functionCall': "
    "{'name': 'get_weather','args': {'city': 'Paris'}},"
    "'thoughtSignature': 'CiQBVKhc7A=='},{'functionCall': "
    "{'name': 'get_time','args': {'tz': 'CET'}}}],'role': 'model'},"
    "'finishReason': 'STOP','index': 0}],'usageMetadata': "
    "{'promptTokenCount': 41,'candidatesTokenCount': 15,"
    "'totalTokenCount': 101,'thoughtsTokenCount': 45},"
    "'modelVersion': 'gemini-2.5-flash','responseId': 'eI4faP'}",
    NULL
};


static void
test_stream(void)
{
    CHECK(stream(text_events, 1,
                 ROLE(0)
                 CHUNK(0, "{'content':'The sky'}", "null")
                 CHUNK(0, "{'content':' is blue \xe2\x80\x94 Rayleigh "
                          "scattering.\\n'}", "null")
                 CHUNK(0, "{}", "'stop'")
                 CHUNK_HEAD "],'usage':{'prompt_tokens':8,"
                 "'completion_tokens':11,'total_tokens':19,"
                 "'prompt_tokens_details':{'cached_tokens':0}}}\n\n"
                 DONE));
    CHECK(usage.prompt_tokens == 8 && usage.completion_tokens == 11
          && usage.total_tokens == 19);

    CHECK(stream(call_events, 0,
                 ROLE(0)
                 CHUNK(0, "{'tool_calls':[{'index':0,'id':'call_1','type':"
                          "'function','function':{'name':'get_weather',"
                          "'arguments':'{\\\"city\\\":\\\"Paris\\\"}'}}]}",
                       "null")
                 CHUNK(0, "{'tool_calls':[{'index':1,'id':'call_2','type':"
                          "'function','function':{'name':'get_time',"
                          "'arguments':'{\\\"tz\\\":\\\"CET\\\"}'}}]}",
                       "null")
                 CHUNK(0, "{}", "'tool_calls'")
                 DONE));
    CHECK(usage.completion_tokens == 60 && usage.total_tokens == 101);
}


static void
test_stream_blocks(void)
{
    static const char  *prompt_blocked[] = {
        "{'promptFeedback': {'blockReason': 'PROHIBITED_CONTENT'},"
        "'usageMetadata': {'promptTokenCount': 10,'totalTokenCount': 10},"
        "'modelVersion': 'gemini-2.0-flash','responseId': 'b1'}",
        "{'candidates': [{'content': {'parts': [{'text': 'late'}]}}]}",
        NULL
    };
    static const char  *answer_blocked[] = {
        "{'candidates': [{'content': {'parts': [{'text': 'Sure, here'}],"
        "'role': 'model'},'index': 0}],'usageMetadata': "
        "{'promptTokenCount': 6,'totalTokenCount': 6}}",
        "{'candidates': [{'finishReason': 'SAFETY','index': 0,"
        "'safetyRatings': [{'category': 'HARM_CATEGORY_DANGEROUS_CONTENT',"
        "'probability': 'HIGH','blocked': true}]}],'usageMetadata': "
        "{'promptTokenCount': 6,'candidatesTokenCount': 2,"
        "'totalTokenCount': 8}}",
        "{'candidates': [{'content': {'parts': [{'text': 'ignored'}]},"
        "'finishReason': 'STOP','index': 0}]}",
        NULL
    };
    static const char  *error_mid_stream[] = {
        "{'candidates': [{'content': {'parts': [{'text': 'Hel'}],"
        "'role': 'model'}}]}",
        "{'error': {'code': 500,'message': 'An internal error has occurred.',"
        "'status': 'INTERNAL'}}",
        "{'candidates': [{'content': {'parts': [{'text': 'lo'}]}}]}",
        NULL
    };
    static const char  *two_choices[] = {
        "{'candidates': [{'content': {'parts': [{'text': 'A'}]},'index': 0},"
        "{'content': {'parts': [{'text': 'B'}]},'index': 1}]}",
        "{'candidates': [{'content': {'parts': [{'text': 'b'}]},"
        "'finishReason': 'MAX_TOKENS','index': 1}]}",
        "{'candidates': [{'finishReason': 'STOP','index': 0}]}",
        NULL
    };

    CHECK(stream(prompt_blocked, 1,
                 "data: {'error':{'message':'The prompt was blocked by the "
                 "content filter (PROHIBITED_CONTENT).','type':"
                 "'invalid_request_error','param':null,"
                 "'code':'content_filter'}}\n\n"));
    CHECK(usage.prompt_tokens == 10);

    CHECK(stream(answer_blocked, 0,
                 ROLE(0)
                 CHUNK(0, "{'content':'Sure, here'}", "null")
                 CHUNK(0, "{}", "'content_filter'")
                 DONE));

    CHECK(stream(error_mid_stream, 1,
                 ROLE(0)
                 CHUNK(0, "{'content':'Hel'}", "null")
                 "data: {'error':{'message':'An internal error has occurred.',"
                 "'type':'server_error','param':null,'code':'internal'}}\n\n"));

    CHECK(stream(two_choices, 0,
                 ROLE(0) CHUNK(0, "{'content':'A'}", "null")
                 ROLE(1) CHUNK(1, "{'content':'B'}", "null")
                 CHUNK(1, "{'content':'b'}", "null")
                 CHUNK(1, "{}", "'length'")
                 CHUNK(0, "{}", "'stop'")
                 DONE));
}


static void
test_stream_unreadable(void)
{
    vmx_translate_ctx_t  tc = ctx(NULL, 0);
    vmx_gemini_stream_t  s;
    vmx_buf_t            out;
    const char          *far = unit_q("{'candidates':[{'index':8}]}");

    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_gemini_stream_init(&s, &tc);

    CHECK(vmx_gemini_stream_event(&s, "{\"cand", 6, &out, &usage) == -1);
    CHECK(vmx_gemini_stream_event(&s, "[DONE]", 6, &out, &usage) == -1);
    CHECK(vmx_gemini_stream_event(&s, far, strlen(far), &out, &usage) == -1);
    CHECK(vmx_gemini_stream_event(&s, "{}", 2, &out, &usage) == 0);
    CHECK(out.len == 0 && !s.done);

    vmx_gemini_stream_end(&s, &out, &usage);
    CHECK(same(&out, DONE));
}


static void
test_errors(void)
{
    CHECK(error(429, "{\n  'error': {\n    'code': 429,\n    'message': "
                "'Resource has been exhausted (e.g. check quota).',\n"
                "    'status': 'RESOURCE_EXHAUSTED'\n  }\n}\n",
                "{'error':{'message':'Resource has been exhausted (e.g. check "
                "quota).','type':'rate_limit_error','param':null,"
                "'code':'resource_exhausted'}}"));

    CHECK(error(400, "[{'error': {'code': 400,'message': 'API key not valid. "
                "Please pass a valid API key.','status': 'INVALID_ARGUMENT',"
                "'details': [{'@type': 'type.googleapis.com/google.rpc."
                "ErrorInfo','reason': 'API_KEY_INVALID'}]}}]",
                "{'error':{'message':'API key not valid. Please pass a valid "
                "API key.','type':'invalid_request_error','param':null,"
                "'code':'invalid_argument'}}"));

    CHECK(error(404, "{'error':{'code':404,'message':'models/nope is not "
                "found for API version v1beta','status':'NOT_FOUND'}}",
                "{'error':{'message':'models/nope is not found for API "
                "version v1beta','type':'not_found_error','param':null,"
                "'code':'not_found'}}"));

    CHECK(error(502, "<html>Bad Gateway</html>",
                "{'error':{'message':'The model provider returned an error.',"
                "'type':'server_error','param':null,'code':null}}"));

    CHECK(error(500, "{'error':{'code':500}}",
                "{'error':{'message':'The model provider returned an error.',"
                "'type':'server_error','param':null,'code':null}}"));
}


/* a 429's RetryInfo.retryDelay in whole seconds, rounded up */
static int64_t
retry_delay(const char *body)
{
    vmx_translate_ctx_t  tc = ctx(NULL, 0);
    vmx_buf_t            out;

    body = unit_q(body);
    vmx_buf_init(&out, unit_alloc, NULL, 0);

    return vmx_gemini_error(&tc, 429, body, strlen(body), &out);
}


#define RETRY_INFO(delay)                                                    \
    "{'error':{'code':429,'message':'m','status':'RESOURCE_EXHAUSTED',"      \
    "'details':[{'@type':'type.googleapis.com/google.rpc.Help'},"            \
    "{'@type':'type.googleapis.com/google.rpc.RetryInfo','retryDelay':"      \
    delay "}]}}"

static void
test_retry_delay(void)
{
    char                 *body;
    size_t                len;
    vmx_buf_t             out;
    vmx_translate_ctx_t   tc = ctx(NULL, 0);

    /* as Gemini sends it: QuotaFailure, then RetryInfo "21s" */
    body = unit_read_fixture("gemini/error_429.json", &len);
    CHECK(body != NULL);
    if (body != NULL) {
        vmx_buf_init(&out, unit_alloc, NULL, 0);
        CHECK(vmx_gemini_error(&tc, 429, body, len, &out) == 21);
        CHECK(valid_json(&out));
        free(body);
    }

    CHECK(retry_delay(RETRY_INFO("'20s'")) == 20);
    CHECK(retry_delay(RETRY_INFO("'1.5s'")) == 2);
    CHECK(retry_delay(RETRY_INFO("'0.000000001s'")) == 1);
    CHECK(retry_delay(RETRY_INFO("'3.000s'")) == 3);
    CHECK(retry_delay(RETRY_INFO("'0s'")) == 0);
    CHECK(retry_delay(RETRY_INFO("'315576000000s'")) == 315576000000);
    /* a stream's error comes in an array */
    CHECK(retry_delay("[" RETRY_INFO("'7s'") "]") == 7);

    /* none, or no Duration */
    CHECK(retry_delay("{'error':{'code':429,'message':'m'}}") == -1);
    CHECK(retry_delay("{'error':{'code':429,'details':{}}}") == -1);
    CHECK(retry_delay("<html>Too Many Requests</html>") == -1);
    CHECK(retry_delay(RETRY_INFO("20")) == -1);
    CHECK(retry_delay(RETRY_INFO("'20'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'s'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'-1s'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'1.s'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'1.5sx'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'1.0000000001s'")) == -1);
    CHECK(retry_delay(RETRY_INFO("'9999999999999s'")) == -1);
    CHECK(retry_delay("{'error':{'details':[{'@type':'type.googleapis.com/"
                      "google.rpc.QuotaFailure','retryDelay':'5s'}]}}") == -1);
}


int
main(void)
{
    test_messages();
    test_media();
    test_tool_conversation();
    test_tool_choice();
    test_generation_config();
    test_response();
    test_response_errors();
    test_stream();
    test_stream_blocks();
    test_stream_unreadable();
    test_errors();
    test_retry_delay();

    unit_free_all();

    return UNIT_REPORT();
}
