/*
 * The provider streams of t/fixtures (byte shapes of public recordings of
 * the real services, see t/fixtures/README.md) fed to the pure parsers and
 * stream translators split at EVERY byte position: in two pieces at each
 * position, and one byte at a time.  Whatever the split, the output must
 * equal the output of the unsplit stream: vmx_sse's events (OpenAI, Groq,
 * Anthropic, Gemini with its CRLF line ends), vmx_eventstream's messages
 * (Bedrock), and the OpenAI chunks the Anthropic, Gemini and Bedrock
 * translators make of them.
 *
 * The Makefile passes the fixture directory as VMX_FIXTURES (relative to
 * the repository root, where `make unit` runs the tests).
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_anthropic.h"
#include "vmx_bedrock.h"
#include "vmx_eventstream.h"
#include "vmx_gemini.h"
#include "vmx_sse.h"

/* ------------------------------------------------------------------ runs */

enum { RAW, ANTHROPIC, GEMINI, BEDROCK };

typedef struct {
    int                      mode;
    vmx_buf_t                out;
    vmx_usage_t              usage;
    vmx_translate_ctx_t      tc;
    vmx_anthropic_stream_t   ant;
    vmx_gemini_stream_t      gem;
    vmx_bedrock_stream_t     bed;
    int                      failed;
} run_t;


static int
on_sse(void *ctx, const char *event, size_t event_len, const char *data,
    size_t data_len)
{
    run_t  *r = ctx;

    switch (r->mode) {

    case ANTHROPIC:
        r->failed |= vmx_anthropic_stream_event(&r->ant, event, event_len,
                                                data, data_len, &r->out,
                                                &r->usage) != 0;
        break;

    case GEMINI:
        r->failed |= vmx_gemini_stream_event(&r->gem, data, data_len,
                                             &r->out, &r->usage) != 0;
        break;

    default:
        vmx_buf_append(&r->out, "event=", 6);
        vmx_buf_append(&r->out, event, event_len);
        vmx_buf_append(&r->out, "\ndata=", 6);
        vmx_buf_append(&r->out, data, data_len);
        vmx_buf_append(&r->out, "\n\n", 2);
    }

    return 0;
}


static int
on_message(void *ctx, const vmx_eventstream_message_t *m)
{
    run_t  *r = ctx;

    if (r->mode == BEDROCK) {
        if (m->message_type.len == 5
            && memcmp(m->message_type.data, "event", 5) == 0)
        {
            r->failed |= vmx_bedrock_stream_event(&r->bed, m->event_type.data,
                                                  m->event_type.len,
                                                  m->payload, m->payload_len,
                                                  &r->out, &r->usage) != 0;
        } else {
            vmx_bedrock_stream_exception(&r->bed, m, &r->out);
        }

        return 0;
    }

    vmx_buf_append(&r->out, m->message_type.data, m->message_type.len);
    vmx_buf_append(&r->out, " ", 1);
    vmx_buf_append(&r->out, m->event_type.data, m->event_type.len);
    vmx_buf_append(&r->out, " ", 1);
    vmx_buf_append(&r->out, m->content_type.data, m->content_type.len);
    vmx_buf_append(&r->out, " ", 1);
    vmx_buf_append(&r->out, m->payload, m->payload_len);
    vmx_buf_append(&r->out, "\n", 1);

    return 0;
}


static void
run_init(run_t *r, int mode)
{
    static const char   body[] = "{\"model\":\"m\",\"stream\":true,\"messages\":"
                                 "[{\"role\":\"user\",\"content\":\"hi\"}],"
                                 "\"stream_options\":{\"include_usage\":true}}";
    vmx_json_error_t    jerr;

    memset(r, 0, sizeof(*r));
    r->mode = mode;
    r->tc.model = "fixture-model";
    r->tc.model_len = strlen(r->tc.model);
    r->tc.id = "chatcmpl-split";
    r->tc.id_len = strlen(r->tc.id);
    r->tc.created = 1767000000;
    r->tc.stream = 1;
    r->tc.include_usage = 1;
    r->tc.alloc = unit_alloc;
    r->tc.body = vmx_json_parse(body, sizeof(body) - 1, unit_alloc, NULL, 0,
                                &jerr);
    vmx_usage_init(&r->usage);
    vmx_buf_init(&r->out, unit_alloc, NULL, 0);
    vmx_anthropic_stream_init(&r->ant, &r->tc);
    vmx_gemini_stream_init(&r->gem, &r->tc);
    vmx_bedrock_stream_init(&r->bed, &r->tc);
}


/*
 * The stream in pieces: cut at `at` when 0 < at < len, one byte at a time
 * when at is (size_t) -1, whole otherwise.  Returns the output (malloc'ed,
 * NUL-terminated) with a line of the parser's results appended, or NULL.
 */
static char *
run(int mode, const char *data, size_t len, size_t at)
{
    static char                 ebuf[1 << 17];
    run_t                       r;
    vmx_sse_parser_t            sse;
    vmx_eventstream_decoder_t   es;
    size_t                      cuts[2], i, prev, n, step;
    int                         rc = 0;
    char                       *copy, *res, tail[64];

    unit_free_all();
    run_init(&r, mode);

    if (at == (size_t) -1) {
        step = 1;
        n = 0;
    } else {
        step = 0;
        n = 0;
        if (at > 0 && at < len) {
            cuts[n++] = at;
        }
        cuts[n++] = len;
    }

    vmx_sse_init(&sse, ebuf, sizeof(ebuf));
    vmx_eventstream_init(&es, ebuf, sizeof(ebuf));

    for (prev = 0, i = 0; prev < len; i++) {
        size_t  end = step ? prev + 1 : cuts[i];

        /* an exact-size copy, so that a read past a piece shows under ASan */
        copy = malloc(end - prev);
        memcpy(copy, data + prev, end - prev);

        if (mode == BEDROCK || (mode == RAW && data[0] == 0)) {
            rc |= vmx_eventstream_feed(&es, copy, end - prev, on_message, &r);
        } else {
            rc |= vmx_sse_feed(&sse, copy, end - prev, on_sse, &r);
        }

        free(copy);
        prev = end;
    }

    if (mode == BEDROCK || (mode == RAW && data[0] == 0)) {
        rc |= vmx_eventstream_finish(&es);
    } else {
        rc |= vmx_sse_finish(&sse, on_sse, &r);
    }

    if (mode == GEMINI) {
        vmx_gemini_stream_end(&r.gem, &r.out, &r.usage);
    }

    snprintf(tail, sizeof(tail), "\n--rc=%d failed=%d prompt=%lld completion=%lld",
             rc, r.failed, (long long) r.usage.prompt_tokens,
             (long long) r.usage.completion_tokens);
    vmx_buf_append(&r.out, tail, strlen(tail));

    if (vmx_buf_failed(&r.out)) {
        return NULL;
    }

    res = malloc(r.out.len + 1);
    memcpy(res, r.out.data, r.out.len);
    res[r.out.len] = '\0';

    return res;
}


/*
 * Every split of one fixture through one mode: the output equals the
 * unsplit one; `want` must appear in it (the translation did happen).
 */
static void
every_split(const char *name, int mode, const char *want)
{
    char    *data, *whole, *got;
    size_t   len, at;
    int      bad = 0;

    data = unit_read_fixture(name, &len);
    CHECK(data != NULL && len > 16);
    if (data == NULL) {
        return;
    }

    whole = run(mode, data, len, 0);
    CHECK(whole != NULL);
    if (whole == NULL) {
        free(data);
        return;
    }

    CHECK(strstr(whole, "--rc=0 failed=0") != NULL);
    CHECK(strstr(whole, want) != NULL);
    if (strstr(whole, want) == NULL || strstr(whole, "--rc=0 failed=0") == NULL) {
        fprintf(stderr, "%s (mode %d):\n%s\n", name, mode, whole);
    }

    for (at = 1; at < len; at++) {
        got = run(mode, data, len, at);
        if (got == NULL || strcmp(got, whole) != 0) {
            if (bad++ == 0) {
                fprintf(stderr, "%s (mode %d) split at %zu differs:\n%s\n", name,
                        mode, at, got ? got : "(null)");
            }
        }
        free(got);
    }
    CHECK(bad == 0);

    got = run(mode, data, len, (size_t) -1);
    CHECK(got != NULL && strcmp(got, whole) == 0);
    free(got);

    free(whole);
    free(data);
}


int
main(void)
{
    /* the parsers alone */
    every_split("openai/stream.sse", RAW, "\"content\":\" caf\xc3\xa9\"");
    every_split("openai/tools.sse", RAW, "data=[DONE]");
    every_split("groq/stream.sse", RAW, "\"x_groq\":{\"id\":\"req_01vmxfixture0groqstream01\",\"usage\"");
    every_split("groq/tools.sse", RAW, "data=[DONE]");
    every_split("anthropic/stream.sse", RAW, "event=ping\ndata={\"type\": \"ping\"}");
    every_split("anthropic/tools.sse", RAW, "input_json_delta");
    every_split("gemini/stream.sse", RAW, "\"responseId\": \"VmxFixtureGeminiStream1\"}\n\n");
    every_split("gemini/tools.sse", RAW, "functionCall");
    every_split("bedrock/stream.bin", RAW, "event metadata application/json");
    every_split("bedrock/tools.bin", RAW, "event contentBlockStart");

    /* and translated into OpenAI chunks */
    every_split("anthropic/stream.sse", ANTHROPIC, "data: [DONE]\n\n");
    every_split("anthropic/stream.sse", ANTHROPIC, " \xf0\x9f\x8c\xa4");
    every_split("anthropic/tools.sse", ANTHROPIC, "\"finish_reason\":\"tool_calls\"");
    every_split("gemini/stream.sse", GEMINI, "data: [DONE]\n\n");
    every_split("gemini/stream.sse", GEMINI, "T\xc5\x8dky\xc5\x8d");
    every_split("gemini/tools.sse", GEMINI, "\"finish_reason\":\"tool_calls\"");
    every_split("bedrock/stream.bin", BEDROCK, "data: [DONE]\n\n");
    every_split("bedrock/stream.bin", BEDROCK, "prompt=14 completion=18");
    every_split("bedrock/tools.bin", BEDROCK, "\"finish_reason\":\"tool_calls\"");

    unit_free_all();

    return UNIT_REPORT();
}
