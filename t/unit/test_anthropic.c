/*
 * Unit tests of lib/vmx_anthropic.c.  JSON is written with ' for " so that
 * an expectation reads as the wire text (unit_q() turns it back); a quote inside
 * a string is written \u0027.  Inputs are parsed from exact-size copies, so
 * a read past their end shows under a memory checker.  The streams are
 * Anthropic's recorded event sequences.
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_anthropic.h"


static vmx_translate_ctx_t     tc;
static vmx_translate_error_t   err;
static vmx_usage_t             usage;
static int                     rc;


static int
same(const char *got, const char *want)
{
    return unit_same(got, strlen(got), want);
}


static void
setup(int stream, int include_usage)
{
    unit_free_all();
    memset(&tc, 0, sizeof(tc));
    tc.model = "claude-test";
    tc.model_len = strlen(tc.model);
    tc.id = "chatcmpl-1";
    tc.id_len = strlen(tc.id);
    tc.created = 1700000000;
    tc.stream = stream;
    tc.include_usage = include_usage;
    tc.alloc = unit_alloc;
    vmx_usage_init(&usage);
}


static const char *
text_of(vmx_buf_t *b)
{
    vmx_buf_append(b, "", 1);
    return vmx_buf_failed(b) ? "(failed)" : b->data;
}


/* the native request, or "error: <message> @ <param>" */
static const char *
request_stream(const char *body_q, int stream)
{
    vmx_json_error_t   jerr;
    vmx_buf_t          out;
    const char        *body;
    char              *e;

    setup(stream, 0);
    body = unit_q(body_q);
    tc.body = vmx_json_parse(body, strlen(body), unit_alloc, NULL, 0, &jerr);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    err.message = err.param = NULL;

    rc = vmx_anthropic_request(&tc, &out, &err);

    if (rc == 0) {
        return text_of(&out);
    }

    e = unit_alloc(NULL, 512);
    snprintf(e, 512, "error: %s @ %s", err.message,
             err.param ? err.param : "-");
    return e;
}


static const char *
request(const char *body_q)
{
    return request_stream(body_q, 0);
}


static const char *
response(const char *body_q)
{
    vmx_buf_t    out;
    const char  *body;

    setup(0, 0);
    body = unit_q(body_q);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    rc = vmx_anthropic_response(&tc, body, strlen(body), &out, &usage);

    return text_of(&out);
}


static const char *
error_answer(int status, const char *body_q)
{
    vmx_buf_t    out;
    const char  *body;

    setup(0, 0);
    body = unit_q(body_q);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_anthropic_error(&tc, status, body, strlen(body), &out);

    return text_of(&out);
}


typedef struct {
    const char  *event;
    const char  *data;        /* with ' for " */
} event_t;


static vmx_anthropic_stream_t  st;

/* the chunks of events fed one by one; rc is the first nonzero result */
static const char *
stream_n(const event_t *ev, size_t n, int include_usage)
{
    vmx_buf_t    out;
    const char  *data;
    size_t       i;
    int          r;

    setup(1, include_usage);
    vmx_buf_init(&out, unit_alloc, NULL, 0);
    vmx_anthropic_stream_init(&st, &tc);
    rc = 0;

    for (i = 0; i < n; i++) {
        data = unit_q(ev[i].data);
        r = vmx_anthropic_stream_event(&st, ev[i].event, strlen(ev[i].event),
                                       data, strlen(data), &out, &usage);
        rc = rc ? rc : r;
    }

    return out.len ? text_of(&out) : "";
}

#define stream(ev, include_usage)                                            \
    stream_n(ev, sizeof(ev) / sizeof(ev[0]), include_usage)


/* OpenAI's wrappers, as the expectations spell them */
#define HEAD(object)                                                         \
    "{'id':'chatcmpl-1','object':'" object "','created':1700000000,"         \
    "'model':'claude-test','system_fingerprint':null,'choices':["
#define CHUNK(choice)                                                        \
    "data: " HEAD("chat.completion.chunk") choice "]}\n\n"
#define DELTA(delta, finish)                                                 \
    CHUNK("{'index':0,'delta':{" delta "},'logprobs':null,"                  \
          "'finish_reason':" finish "}")
#define ROLE        DELTA("'role':'assistant','content':'','refusal':null", "null")
#define DONE        "data: [DONE]\n\n"
#define COMPLETION(content, tool_calls, finish, usage)                       \
    HEAD("chat.completion") "{'index':0,'message':{'role':'assistant',"      \
    "'content':" content ",'refusal':null,'annotations':[]" tool_calls       \
    "},'logprobs':null,"                                                     \
    "'finish_reason':'" finish "'}],'usage':" usage "}"
#define USAGE(p, c, t, cached)                                               \
    "{'prompt_tokens':" #p ",'completion_tokens':" #c ",'total_tokens':" #t  \
    ",'prompt_tokens_details':{'cached_tokens':" #cached "}}"


static void
test_request_basic(void)
{
    CHECK(same(request("{'model':'m','messages':["
                       "{'role':'system','content':'Be brief.'},"
                       "{'role':'user','content':'Hi'}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'text','text':'Hi'}]}],"
               "'system':[{'type':'text','text':'Be brief.'}]}"));
    CHECK(rc == 0);

    /* system and developer anywhere, in order; same-role turns merged;
       sampling fields; unknown fields dropped; escapes kept */
    CHECK(same(request_stream(
               "{'model':'m','max_tokens':100,'max_completion_tokens':50,"
               "'temperature':0.5,'top_p':1,'stop':'END','user':'u-1',"
               "'seed':7,'presence_penalty':0,'n':1,'logprobs':false,"
               "'stream_options':{'include_usage':true},"
               "'messages':["
               "{'role':'developer','content':[{'type':'text','text':'A'},"
               "{'type':'text','text':''}]},"
               "{'role':'user','content':'one','name':'bob'},"
               "{'role':'user','content':[{'type':'text','text':'two\\n'}]},"
               "{'role':'system','content':'B \\u00e9'},"
               "{'role':'assistant','content':'ok'},"
               "{'role':'assistant','content':[{'type':'text','text':'more'}"
               "]},"
               "{'role':'user','content':'three'}]}", 1),
               "{'model':'claude-test','max_tokens':50,'messages':["
               "{'role':'user','content':[{'type':'text','text':'one'},"
               "{'type':'text','text':'two\\n'}]},"
               "{'role':'assistant','content':[{'type':'text','text':'ok'},"
               "{'type':'text','text':'more'}]},"
               "{'role':'user','content':[{'type':'text','text':'three'}]}],"
               "'system':[{'type':'text','text':'A'},"
               "{'type':'text','text':'B \\u00e9'}],"
               "'temperature':0.5,'top_p':1,'stop_sequences':['END'],"
               "'metadata':{'user_id':'u-1'},'stream':true}"));

    /* max_tokens alone; a message left without blocks vanishes, so the
       turns around it merge; null fields are absent ones */
    CHECK(same(request("{'messages':[{'role':'user','content':'a'},"
                       "{'role':'assistant','content':''},"
                       "{'role':'assistant','content':null},"
                       "{'role':'user','content':'b'}],'max_tokens':10,"
                       "'temperature':null,'stop':['x','y'],'tools':null}"),
               "{'model':'claude-test','max_tokens':10,'messages':["
               "{'role':'user','content':[{'type':'text','text':'a'},"
               "{'type':'text','text':'b'}]}],'stop_sequences':['x','y']}"));

    CHECK(same(request("{'messages':[],'stop':[]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':[]}"));

    /* prompt caching through a text part */
    CHECK(same(request("{'messages':[{'role':'system','content':[{'type':"
                       "'text','text':'S','cache_control':{'type':"
                       "'ephemeral'}}]},{'role':'user','content':'q'}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'text','text':'q'}]}],"
               "'system':[{'type':'text','text':'S','cache_control':"
               "{'type':'ephemeral'}}]}"));
}


static void
test_request_images(void)
{
    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'text','text':'What is this?'},"
                       "{'type':'image_url','image_url':{'url':"
                       "'data:image/png;base64,iVBORw0KGgo=','detail':'low'}},"
                       "{'type':'image_url','image_url':{'url':"
                       "'https://example.com/cat.jpg'}}]}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'text','text':"
               "'What is this?'},{'type':'image','source':{'type':'base64',"
               "'media_type':'image/png','data':'iVBORw0KGgo='}},"
               "{'type':'image','source':{'type':'url','url':"
               "'https://example.com/cat.jpg'}}]}]}"));

    /* a data URL with parameters before ";base64" */
    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'image_url','image_url':{'url':"
                       "'data:image/jpeg;name=a.jpg;base64,/9j/'}}]}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'image','source':"
               "{'type':'base64','media_type':'image/jpeg','data':"
               "'/9j/'}}]}]}"));

    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'image_url','image_url':{'url':"
                       "'data:text/plain,hello'}}]}]}"),
               "error: image data URLs must be base64 @ "
               "messages[0].content[0].image_url.url"));
    CHECK(rc == -1);

    CHECK(same(request("{'messages':[{'role':'user','content':'a'},"
                       "{'role':'user','content':[{'type':'image_url',"
                       "'image_url':{'url':'ftp://host/x.png'}}]}]}"),
               "error: image URLs must be http(s) or base64 data URLs @ "
               "messages[1].content[0].image_url.url"));

    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'image_url','image_url':'https://x/y.png'}"
                       "]}]}"),
               "error: an image_url part needs a string url @ "
               "messages[0].content[0].image_url.url"));

    /* images only where Anthropic takes them */
    CHECK(same(request("{'messages':[{'role':'system','content':["
                       "{'type':'image_url','image_url':{'url':"
                       "'https://x/y.png'}}]}]}"),
               "error: this content part type is not supported here @ "
               "messages[0].content[0].type"));

    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'input_audio','input_audio':{}}]}]}"),
               "error: this content part type is not supported here @ "
               "messages[0].content[0].type"));
}


static void
test_request_tools(void)
{
    CHECK(same(request("{'messages':[{'role':'user','content':'Weather?'}],"
                       "'tools':[{'type':'function','function':{'name':"
                       "'get_weather','description':'Current weather',"
                       "'parameters':{'type':'object','properties':{'city':"
                       "{'type':'string'}},'required':['city']},"
                       "'strict':true}},{'type':'function','function':"
                       "{'name':'now'}}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'text','text':'Weather?'}"
               "]}],"
               "'tools':[{'name':'get_weather','description':"
               "'Current weather','input_schema':{'type':'object',"
               "'properties':{'city':{'type':'string'}},'required':"
               "['city']}},{'name':'now','input_schema':{'type':'object',"
               "'properties':{}}}]}"));

#define TOOLS_REQ(choice)                                                    \
    "{'messages':[],'tools':[{'type':'function','function':{'name':'f'}}]"   \
    choice "}"
#define TOOLS_OUT(choice)                                                    \
    "{'model':'claude-test','max_tokens':4096,'messages':[],'tools':"        \
    "[{'name':'f','input_schema':{'type':'object','properties':{}}}]"        \
    choice "}"

    CHECK(same(request(TOOLS_REQ(",'tool_choice':'auto'")),
               TOOLS_OUT(",'tool_choice':{'type':'auto'}")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':'none'")),
               TOOLS_OUT(",'tool_choice':{'type':'none'}")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':'required'")),
               TOOLS_OUT(",'tool_choice':{'type':'any'}")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':{'type':'function',"
                                 "'function':{'name':'f'}}")),
               TOOLS_OUT(",'tool_choice':{'type':'tool','name':'f'}")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':'required',"
                                 "'parallel_tool_calls':false")),
               TOOLS_OUT(",'tool_choice':{'type':'any',"
                         "'disable_parallel_tool_use':true}")));
    CHECK(same(request(TOOLS_REQ(",'parallel_tool_calls':false")),
               TOOLS_OUT(",'tool_choice':{'type':'auto',"
                         "'disable_parallel_tool_use':true}")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':'none',"
                                 "'parallel_tool_calls':false")),
               TOOLS_OUT(",'tool_choice':{'type':'none'}")));
    CHECK(same(request(TOOLS_REQ(",'parallel_tool_calls':true")),
               TOOLS_OUT("")));
    CHECK(same(request(TOOLS_REQ(",'tool_choice':'any'")),
               "error: tool_choice must be auto, none, required or a named "
               "function @ tool_choice"));

    /* no tools: nothing about them, whatever tool_choice says */
    CHECK(same(request("{'messages':[],'tools':[],'tool_choice':'required'}"),
               "{'model':'claude-test','max_tokens':4096,'messages':[]}"));

    CHECK(same(request("{'messages':[],'tools':[{'type':'web_search'}]}"),
               "error: only function tools with a name are supported @ "
               "tools[0]"));
    CHECK(same(request("{'messages':[],'tools':[{'type':'function',"
                       "'function':{'name':'f','parameters':'x'}}]}"),
               "error: function parameters must be a JSON schema object @ "
               "tools[0].function.parameters"));
}


static void
test_request_tool_turns(void)
{
    /* tool calls, their results merged into one user turn with the next
       user message; content null beside tool calls */
    CHECK(same(request(
               "{'messages':["
               "{'role':'user','content':'Weather in Paris and Rome?'},"
               "{'role':'assistant','content':null,'tool_calls':["
               "{'id':'call_1','type':'function','function':{'name':"
               "'get_weather','arguments':'{\\'city\\': \\'Paris\\'}'}},"
               "{'id':'call_2','type':'function','function':{'name':"
               "'get_weather','arguments':' {\\'city\\':\\'Rome\\'} '}}]},"
               "{'role':'tool','tool_call_id':'call_1','content':'18C'},"
               "{'role':'tool','tool_call_id':'call_2','content':["
               "{'type':'text','text':'21C'},{'type':'text','text':''}]},"
               "{'role':'user','content':'Thanks'},"
               "{'role':'assistant','content':'Sure','tool_calls':["
               "{'id':'call_3','type':'function','function':{'name':'now',"
               "'arguments':''}}]},"
               "{'role':'tool','tool_call_id':'call_3','content':''}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'text','text':"
               "'Weather in Paris and Rome?'}]},"
               "{'role':'assistant','content':["
               "{'type':'tool_use','id':'call_1','name':'get_weather',"
               "'input':{'city': 'Paris'}},"
               "{'type':'tool_use','id':'call_2','name':'get_weather',"
               "'input':{'city':'Rome'}}]},"
               "{'role':'user','content':["
               "{'type':'tool_result','tool_use_id':'call_1','content':'18C'},"
               "{'type':'tool_result','tool_use_id':'call_2','content':"
               "[{'type':'text','text':'21C'}]},"
               "{'type':'text','text':'Thanks'}]},"
               "{'role':'assistant','content':[{'type':'text','text':'Sure'},"
               "{'type':'tool_use','id':'call_3','name':'now','input':{}}]},"
               "{'role':'user','content':[{'type':'tool_result',"
               "'tool_use_id':'call_3'}]}]}"));

    /* a result without content, and one with an image */
    CHECK(same(request("{'messages':[{'role':'tool','tool_call_id':'c',"
                       "'content':null},{'role':'tool','tool_call_id':'d',"
                       "'content':[{'type':'image_url','image_url':{'url':"
                       "'https://x/chart.png'}}]}]}"),
               "{'model':'claude-test','max_tokens':4096,'messages':["
               "{'role':'user','content':[{'type':'tool_result',"
               "'tool_use_id':'c'},{'type':'tool_result','tool_use_id':'d',"
               "'content':[{'type':'image','source':{'type':'url','url':"
               "'https://x/chart.png'}}]}]}]}"));

    CHECK(same(request("{'messages':[{'role':'assistant','tool_calls':["
                       "{'id':'c','type':'function','function':{'name':'f',"
                       "'arguments':'{\\'a\\':'}}]}]}"),
               "error: function arguments must be a JSON object @ "
               "messages[0].tool_calls[0].function.arguments"));
    CHECK(rc == -1);

    CHECK(same(request("{'messages':[{'role':'user','content':'x'},"
                       "{'role':'assistant','tool_calls':["
                       "{'id':'c','type':'function','function':{'name':'f',"
                       "'arguments':'{}'}},"
                       "{'id':'d','type':'function','function':{'name':'f',"
                       "'arguments':'[1]'}}]}]}"),
               "error: function arguments must be a JSON object @ "
               "messages[1].tool_calls[1].function.arguments"));

    CHECK(same(request("{'messages':[{'role':'assistant','tool_calls':["
                       "{'type':'function','function':{'name':'f'}}]}]}"),
               "error: a tool call needs an id, type 'function' and a "
               "function name @ messages[0].tool_calls[0]"));

    CHECK(same(request("{'messages':[{'role':'tool','content':'x'}]}"),
               "error: a tool message needs a string tool_call_id @ "
               "messages[0].tool_call_id"));

    CHECK(same(request("{'messages':[{'role':'assistant','tool_calls':{}}]}"),
               "error: tool_calls must be an array @ messages[0].tool_calls"));
}


static void
test_request_refused(void)
{
    CHECK(same(request("{'model':'m'}"),
               "error: messages must be an array @ messages"));
    CHECK(same(request("[1]"), "error: messages must be an array @ messages"));
    CHECK(same(request("{'messages':[],'n':2}"),
               "error: this model answers with one choice only (n=1) @ n"));
    CHECK(same(request("{'messages':[],'logprobs':true}"),
               "error: this model does not return log probabilities @ "
               "logprobs"));
    CHECK(same(request("{'messages':[],'max_tokens':0}"),
               "error: the token limit must be a positive integer @ "
               "max_tokens"));
    CHECK(same(request("{'messages':[],'max_completion_tokens':1.5}"),
               "error: the token limit must be a positive integer @ "
               "max_completion_tokens"));
    CHECK(same(request("{'messages':[],'temperature':'hot'}"),
               "error: must be a number @ temperature"));
    CHECK(same(request("{'messages':[],'stop':['a',1]}"),
               "error: stop must be a string or an array of strings @ stop"));
    CHECK(same(request("{'messages':[],'stop':3}"),
               "error: stop must be a string or an array of strings @ stop"));
    CHECK(same(request("{'messages':[{'role':'user','content':'a'},"
                       "{'role':'function','content':'x'}]}"),
               "error: the role must be system, developer, user, assistant "
               "or tool @ messages[1].role"));
    CHECK(same(request("{'messages':['hi']}"),
               "error: the role must be system, developer, user, assistant "
               "or tool @ messages[0].role"));
    CHECK(same(request("{'messages':[{'role':'user','content':7}]}"),
               "error: content must be a string or an array of parts @ "
               "messages[0].content"));
    CHECK(same(request("{'messages':[{'role':'user','content':["
                       "{'type':'text'}]}]}"),
               "error: a text part needs a string text @ "
               "messages[0].content[0].text"));
}


static void
test_response_text(void)
{
    CHECK(same(response("{'id':'msg_01XFDUDYJgAACzvnptvVoYEL','type':"
                        "'message','role':'assistant','model':"
                        "'claude-sonnet-4-5','content':[{'type':'text',"
                        "'text':'Hello!'}],'stop_reason':'end_turn',"
                        "'stop_sequence':null,'usage':{'input_tokens':12,"
                        "'cache_creation_input_tokens':100,"
                        "'cache_read_input_tokens':200,'output_tokens':6}}"),
               COMPLETION("'Hello!'", "", "stop",
                          USAGE(312, 6, 318, 200))));
    CHECK(rc == 0);
    CHECK(usage.prompt_tokens == 312 && usage.completion_tokens == 6
          && usage.total_tokens == 318 && usage.cached_tokens == 200
          && usage.cache_write_tokens == 100);

    /* text blocks joined, escapes kept; thinking skipped */
    CHECK(same(response("{'type':'message','content':["
                        "{'type':'thinking','thinking':'hmm','signature':'x'},"
                        "{'type':'text','text':'a \\'b\\'\\n'},"
                        "{'type':'redacted_thinking','data':'x'},"
                        "{'type':'text','text':'\\u00e9'}],"
                        "'stop_reason':'max_tokens',"
                        "'usage':{'input_tokens':3,'output_tokens':4}}"),
               COMPLETION("'a \\'b\\'\\n\\u00e9'", "", "length",
                          USAGE(3, 4, 7, 0))));
    CHECK(usage.cached_tokens == -1 && usage.cache_write_tokens == -1);

    CHECK(same(response("{'type':'message','content':[{'type':'text',"
                        "'text':'x'}],'stop_reason':'stop_sequence',"
                        "'stop_sequence':'END','usage':{}}"),
               COMPLETION("'x'", "", "stop", USAGE(0, 0, 0, 0))));
    /* a usage object leaves out counts of 0: they are 0, not unknown */
    CHECK(usage.prompt_tokens == 0 && usage.completion_tokens == 0
          && usage.total_tokens == 0 && usage.cached_tokens == -1);

    CHECK(same(response("{'type':'message','content':[{'type':'text',"
                        "'text':'I can\\u0027t help'}],"
                        "'stop_reason':'refusal'}"),
               COMPLETION("'I can\\u0027t help'", "", "content_filter",
                          USAGE(0, 0, 0, 0))));

    CHECK(same(response("{'type':'message','content':[],"
                        "'stop_reason':'end_turn'}"),
               COMPLETION("''", "", "stop", USAGE(0, 0, 0, 0))));
}


static void
test_response_tools(void)
{
    CHECK(same(response("{'id':'msg_1','type':'message','role':'assistant',"
                        "'content':[{'type':'text','text':'Checking.'},"
                        "{'type':'tool_use','id':'toolu_01A','name':"
                        "'get_weather','input':{'city':'Paris','days':2}},"
                        "{'type':'tool_use','id':'toolu_01B','name':'now',"
                        "'input':{}}],'stop_reason':'tool_use',"
                        "'usage':{'input_tokens':50,'output_tokens':30}}"),
               COMPLETION("'Checking.'",
                          ",'tool_calls':[{'id':'toolu_01A','type':'function',"
                          "'function':{'name':'get_weather','arguments':"
                          "'{\\'city\\':\\'Paris\\',\\'days\\':2}'}},"
                          "{'id':'toolu_01B','type':'function','function':"
                          "{'name':'now','arguments':'{}'}}]",
                          "tool_calls", USAGE(50, 30, 80, 0))));
    CHECK(rc == 0);

    CHECK(same(response("{'type':'message','content':[{'type':'tool_use',"
                        "'id':'toolu_1','name':'f','input':{'a':[1,2]}}],"
                        "'stop_reason':'tool_use'}"),
               COMPLETION("null",
                          ",'tool_calls':[{'id':'toolu_1','type':'function',"
                          "'function':{'name':'f','arguments':"
                          "'{\\'a\\':[1,2]}'}}]",
                          "tool_calls", USAGE(0, 0, 0, 0))));
}


static void
test_response_errors(void)
{
    /* an error in a 2xx body */
    CHECK(same(response("{'type':'error','error':{'type':'overloaded_error',"
                        "'message':'Overloaded'}}"),
               "{'error':{'message':'Overloaded','type':'server_error',"
               "'param':null,'code':'overloaded_error'}}"));
    CHECK(rc == 503);

    response("not json");
    CHECK(rc == -1);
    response("{'type':'message'}");
    CHECK(rc == -1);
    response("{'type':'message','content':[{'type':'text','text':1}]}");
    CHECK(rc == -1);
    response("{'type':'message','content':[{'type':'tool_use','id':'x'}]}");
    CHECK(rc == -1);
}


static void
test_error(void)
{
    CHECK(same(error_answer(529, "{'type':'error','error':{'type':"
                                 "'overloaded_error','message':"
                                 "'Overloaded'},'request_id':'req_1'}"),
               "{'error':{'message':'Overloaded','type':'server_error',"
               "'param':null,'code':'overloaded_error'}}"));
    CHECK(same(error_answer(400, "{'type':'error','error':{'type':"
                                 "'invalid_request_error','message':"
                                 "'max_tokens: Field required'}}"),
               "{'error':{'message':'max_tokens: Field required','type':"
               "'invalid_request_error','param':null,'code':"
               "'invalid_request_error'}}"));
    CHECK(same(error_answer(401, "{'type':'error','error':{'type':"
                                 "'authentication_error','message':"
                                 "'invalid x-api-key'}}"),
               "{'error':{'message':'invalid x-api-key','type':"
               "'authentication_error','param':null,'code':"
               "'authentication_error'}}"));
    CHECK(same(error_answer(429, "{'type':'error','error':{'type':"
                                 "'rate_limit_error','message':'slow'}}"),
               "{'error':{'message':'slow','type':'rate_limit_error',"
               "'param':null,'code':'rate_limit_error'}}"));
    CHECK(same(error_answer(502, "<html>Bad Gateway</html>"),
               "{'error':{'message':'provider error (HTTP 502)','type':"
               "'server_error','param':null,'code':null}}"));
    CHECK(same(error_answer(500, ""),
               "{'error':{'message':'provider error (HTTP 500)','type':"
               "'server_error','param':null,'code':null}}"));
}


/* recorded: a plain answer, with a ping */
static const event_t  text_stream[] = {
    { "message_start", "{'type':'message_start','message':{'id':"
      "'msg_01QC4g3HwBThD4BaNtBckFDJ','type':'message','role':'assistant',"
      "'model':'claude-sonnet-4-5-20250929','content':[],'stop_reason':null,"
      "'stop_sequence':null,'usage':{'input_tokens':12,"
      "'cache_creation_input_tokens':0,'cache_read_input_tokens':8,"
      "'cache_creation':{'ephemeral_5m_input_tokens':0,"
      "'ephemeral_1h_input_tokens':0},'output_tokens':1,"
      "'service_tier':'standard'}}}" },
    { "content_block_start", "{'type':'content_block_start','index':0,"
      "'content_block':{'type':'text','text':''}}" },
    { "ping", "{'type': 'ping'}" },
    { "content_block_delta", "{'type':'content_block_delta','index':0,"
      "'delta':{'type':'text_delta','text':'Hello'}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':0,"
      "'delta':{'type':'text_delta','text':'! I\\u0027m \\'fine\\''}}" },
    { "content_block_stop", "{'type':'content_block_stop','index':0}" },
    { "message_delta", "{'type':'message_delta','delta':{'stop_reason':"
      "'end_turn','stop_sequence':null},'usage':{'output_tokens':30}}" },
    { "message_stop", "{'type':'message_stop'}" },
};

#define TEXT_CHUNKS                                                          \
    ROLE                                                                     \
    DELTA("'content':'Hello'", "null")                                       \
    DELTA("'content':'! I\\u0027m \\'fine\\''", "null")                      \
    DELTA("", "'stop'")


static void
test_stream_text(void)
{
    CHECK(same(stream(text_stream, 1),
               TEXT_CHUNKS
               "data: " HEAD("chat.completion.chunk") "],'usage':"
               USAGE(20, 30, 50, 8) "}\n\n"
               DONE));
    CHECK(rc == 0 && st.done);
    CHECK(usage.prompt_tokens == 20 && usage.completion_tokens == 30
          && usage.total_tokens == 50 && usage.cached_tokens == 8
          && usage.cache_write_tokens == 0);

    /* without include_usage: no usage chunk, the usage still counted */
    CHECK(same(stream(text_stream, 0), TEXT_CHUNKS DONE));
    CHECK(usage.completion_tokens == 30);
}


/* recorded: text, then a tool call whose input arrives in pieces */
static const event_t  tool_stream[] = {
    { "message_start", "{'type':'message_start','message':{'id':'msg_014p',"
      "'type':'message','role':'assistant','model':'claude-test',"
      "'content':[],'stop_reason':null,'stop_sequence':null,'usage':"
      "{'input_tokens':472,'output_tokens':2}}}" },
    { "content_block_start", "{'type':'content_block_start','index':0,"
      "'content_block':{'type':'text','text':''}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':0,"
      "'delta':{'type':'text_delta','text':'Let me check.'}}" },
    { "content_block_stop", "{'type':'content_block_stop','index':0}" },
    { "content_block_start", "{'type':'content_block_start','index':1,"
      "'content_block':{'type':'tool_use',"
      "'id':'toolu_01T1x1fJ34qAmk2tNTrN7Up6',"
      "'name':'get_weather','input':{}}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':1,"
      "'delta':{'type':'input_json_delta','partial_json':''}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':1,"
      "'delta':{'type':'input_json_delta',"
      "'partial_json':'{\\'location\\':'}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':1,"
      "'delta':{'type':'input_json_delta','partial_json':' \\'San Fra'}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':1,"
      "'delta':{'type':'input_json_delta','partial_json':'ncisco\\'}'}}" },
    { "content_block_stop", "{'type':'content_block_stop','index':1}" },
    { "content_block_start", "{'type':'content_block_start','index':2,"
      "'content_block':{'type':'tool_use','id':'toolu_02','name':'now',"
      "'input':{}}}" },
    { "content_block_stop", "{'type':'content_block_stop','index':2}" },
    { "message_delta", "{'type':'message_delta','delta':{'stop_reason':"
      "'tool_use','stop_sequence':null},'usage':{'output_tokens':89}}" },
    { "message_stop", "{'type':'message_stop'}" },
};


static void
test_stream_tools(void)
{
    CHECK(same(stream(tool_stream, 0),
               ROLE
               DELTA("'content':'Let me check.'", "null")
               DELTA("'tool_calls':[{'index':0,'id':"
                     "'toolu_01T1x1fJ34qAmk2tNTrN7Up6','type':'function',"
                     "'function':{'name':'get_weather','arguments':''}}]",
                     "null")
               DELTA("'tool_calls':[{'index':0,'function':{'arguments':"
                     "'{\\'location\\':'}}]", "null")
               DELTA("'tool_calls':[{'index':0,'function':{'arguments':"
                     "' \\'San Fra'}}]", "null")
               DELTA("'tool_calls':[{'index':0,'function':{'arguments':"
                     "'ncisco\\'}'}}]", "null")
               DELTA("'tool_calls':[{'index':1,'id':'toolu_02','type':"
                     "'function','function':{'name':'now','arguments':''}}]",
                     "null")
               DELTA("", "'tool_calls'")
               DONE));
    CHECK(rc == 0 && st.done);
    CHECK(usage.prompt_tokens == 472 && usage.completion_tokens == 89);
}


/* recorded: an error in the middle of an answer */
static const event_t  error_stream[] = {
    { "message_start", "{'type':'message_start','message':{'id':'msg_1',"
      "'type':'message','role':'assistant','content':[],'usage':"
      "{'input_tokens':5,'output_tokens':1}}}" },
    { "content_block_start", "{'type':'content_block_start','index':0,"
      "'content_block':{'type':'text','text':''}}" },
    { "content_block_delta", "{'type':'content_block_delta','index':0,"
      "'delta':{'type':'text_delta','text':'Hi'}}" },
    { "error", "{'type': 'error', 'error': {'type': 'overloaded_error', "
      "'message': 'Overloaded'}}" },
    { "message_stop", "{'type':'message_stop'}" },
};


static void
test_stream_errors(void)
{
    static const event_t  unreadable_error[] = {
        { "error", "upstream reset" },
    };
    static const event_t  unreadable[] = {
        { "message_start", "{'type':'message_start'" },
    };
    static const event_t  nameless[] = {
        { "", "{'type':'message_start','message':{'usage':"
          "{'input_tokens':1}}}" },
        { "", "{'type':'content_block_delta','index':0,'delta':"
          "{'type':'text_delta','text':'x'}}" },
        { "", "{'type':'error','error':{'type':'api_error','message':"
          "'Internal server error'}}" },
        { "", "{'no':'type'}" },
    };

    CHECK(same(stream(error_stream, 1),
               ROLE
               DELTA("'content':'Hi'", "null")
               "data: {'error':{'message':'Overloaded','type':'server_error',"
               "'param':null,'code':'overloaded_error'}}\n\n"));
    CHECK(rc == 0 && st.done);

    CHECK(same(stream(unreadable_error, 0),
               "data: {'error':{'message':'provider error','type':"
               "'server_error','param':null,'code':null}}\n\n"));
    CHECK(rc == 0 && st.done);

    CHECK(same(stream(unreadable, 0), ""));
    CHECK(rc == -1 && !st.done);

    /* an empty event name: the data's type says; after the error, nothing */
    CHECK(same(stream(nameless, 0),
               ROLE
               DELTA("'content':'x'", "null")
               "data: {'error':{'message':'Internal server error','type':"
               "'server_error','param':null,'code':'api_error'}}\n\n"));
    CHECK(rc == 0 && st.done);
}


static void
test_stream_odd(void)
{
    /* thinking and server tools skipped, unknown events too; content
       before message_start still opens with the role; a stream ending
       without message_delta still says why */
    static const event_t  odd[] = {
        { "content_block_start", "{'type':'content_block_start','index':0,"
          "'content_block':{'type':'thinking','thinking':''}}" },
        { "content_block_delta", "{'type':'content_block_delta','index':0,"
          "'delta':{'type':'thinking_delta','thinking':'Let me think'}}" },
        { "content_block_delta", "{'type':'content_block_delta','index':0,"
          "'delta':{'type':'signature_delta','signature':'EqQB'}}" },
        { "content_block_stop", "{'type':'content_block_stop','index':0}" },
        { "content_block_start", "{'type':'content_block_start','index':1,"
          "'content_block':{'type':'server_tool_use','id':'srvtoolu_1',"
          "'name':'web_search','input':{}}}" },
        { "content_block_delta", "{'type':'content_block_delta','index':1,"
          "'delta':{'type':'input_json_delta','partial_json':'{}'}}" },
        { "content_block_stop", "{'type':'content_block_stop','index':1}" },
        { "future_event", "{'type':'future_event'}" },
        { "content_block_start", "{'type':'content_block_start','index':2,"
          "'content_block':{'type':'text','text':'Done'}}" },
        { "message_delta", "{'type':'message_delta','delta':{},'usage':"
          "{'output_tokens':7}}" },
        { "message_stop", "{'type':'message_stop'}" },
        { "message_stop", "{'type':'message_stop'}" },
    };
    static const event_t  bad_delta[] = {
        { "content_block_delta", "{'type':'content_block_delta','index':0,"
          "'delta':{'type':'text_delta'}}" },
    };
    static const event_t  bad_tool[] = {
        { "content_block_start", "{'type':'content_block_start','index':0,"
          "'content_block':{'type':'tool_use','name':'f'}}" },
    };

    CHECK(same(stream(odd, 1),
               ROLE
               DELTA("'content':'Done'", "null")
               DELTA("", "'stop'")
               "data: " HEAD("chat.completion.chunk") "],'usage':"
               USAGE(0, 7, 7, 0) "}\n\n"
               DONE));
    CHECK(rc == 0 && st.done);

    stream(bad_delta, 0);
    CHECK(rc == -1);
    stream(bad_tool, 0);
    CHECK(rc == -1);
}


int
main(void)
{
    test_request_basic();
    test_request_images();
    test_request_tools();
    test_request_tool_turns();
    test_request_refused();
    test_response_text();
    test_response_tools();
    test_response_errors();
    test_error();
    test_stream_text();
    test_stream_tools();
    test_stream_errors();
    test_stream_odd();

    unit_free_all();

    return UNIT_REPORT();
}
