/*
 * Unit tests of lib/vmx_sigv4.c.
 *
 * The first vectors are cases of AWS's "Signature Version 4 Test Suite"
 * (aws-sig-v4-test-suite): credentials AKIDEXAMPLE, region us-east-1,
 * service "service", time 20150830T123600Z, host example.amazonaws.com;
 * only the request and the published signature are kept as data.  The
 * Bedrock vectors were computed once, independently, with botocore's
 * SigV4Auth on the same requests.
 */

#include <stdlib.h>

#include "unit.h"
#include "vmx_sigv4.h"


#define SUITE_TIME  1440938160      /* 20150830T123600Z */
#define S(lit)      vmx_sigv4_string(lit)


static void *
heap_alloc(void *ctx, size_t size)
{
    (void) ctx;
    return malloc(size);    /* the few test allocations are left to exit */
}


typedef struct {
    const char                *name;
    const char                *method;
    const char                *path;
    const char                *query;
    vmx_sigv4_header_t         headers[3];
    size_t                     nheaders;
    const char                *payload;
    const char                *token;
    const char                *signed_headers;
    const char                *signature;
} suite_case_t;


#define TOKEN                                                                \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWs" \
    "KWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGde" \
    "ehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8" \
    "Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8" \
    "FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

#define H(n, v)     { S(n), S(v) }
#define NO_HEADERS  { H("", "") }

static const suite_case_t  suite[] = {
    { "get-vanilla", "GET", "/", "", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },

    { "post-vanilla", "POST", "/", "", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b" },

    { "get-vanilla-query-order-key-case", "GET", "/",
      "Param2=value2&Param1=value1", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500" },

    { "get-vanilla-empty-query-key", "GET", "/", "Param1=value1",
      NO_HEADERS, 0, "", NULL, "host;x-amz-date",
      "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },

    { "get-vanilla-query-unreserved", "GET", "/",
      "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
      "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
      NO_HEADERS, 0, "", NULL, "host;x-amz-date",
      "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197" },

    /* the query as sent: "ሴ" percent-encoded on the wire */
    { "get-vanilla-utf8-query", "GET", "/", "%E1%88%B4=bar",
      NO_HEADERS, 0, "", NULL, "host;x-amz-date",
      "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04" },

    { "post-vanilla-query", "POST", "/", "Param1=value1", NO_HEADERS, 0,
      "", NULL, "host;x-amz-date",
      "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11" },

    { "get-utf8", "GET", "/\xe1\x88\xb4", "", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85" },

    { "get-unreserved", "GET",
      "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
      "", NO_HEADERS, 0, "", NULL, "host;x-amz-date",
      "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },

    /* normalize-path cases sign the same canonical request as get-vanilla */
    { "get-relative-relative", "GET", "/example1/example2/../..", "",
      NO_HEADERS, 0, "", NULL, "host;x-amz-date",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },

    { "get-slash-dot-slash", "GET", "/./", "", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },

    { "get-slash", "GET", "//", "", NO_HEADERS, 0, "", NULL,
      "host;x-amz-date",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31" },

    { "post-header-key-sort", "POST", "/", "",
      { H("My-Header1", "value1") }, 1, "", NULL,
      "host;my-header1;x-amz-date",
      "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c" },

    { "post-header-value-case", "POST", "/", "",
      { H("My-Header1", "VALUE1") }, 1, "", NULL,
      "host;my-header1;x-amz-date",
      "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d" },

    { "get-header-key-duplicate", "GET", "/", "",
      { H("My-Header1", "value2"), H("My-Header1", "value2"),
        H("My-Header1", "value1") }, 3, "", NULL,
      "host;my-header1;x-amz-date",
      "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea" },

    { "get-header-value-order", "GET", "/", "",
      { H("My-Header1", "value4"), H("My-Header1", "value1"),
        H("My-Header1", "value3,value2") }, 3, "", NULL,
      "host;my-header1;x-amz-date",
      "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01" },

    { "get-header-value-trim", "GET", "/", "",
      { H("My-Header1", " value1"), H("My-Header2", "\"a   b   c\"") }, 2,
      "", NULL, "host;my-header1;my-header2;x-amz-date",
      "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },

    { "post-x-www-form-urlencoded", "POST", "/", "",
      { H("Content-Type", "application/x-www-form-urlencoded") }, 1,
      "Param1=value1", NULL, "content-type;host;x-amz-date",
      "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },

    { "post-x-www-form-urlencoded-parameters", "POST", "/", "",
      { H("Content-Type", "application/x-www-form-urlencoded; charset=utf8") },
      1, "Param1=value1", NULL, "content-type;host;x-amz-date",
      "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe" },

    { "post-sts-header-before", "POST", "/", "", NO_HEADERS, 0, "", TOKEN,
      "host;x-amz-date;x-amz-security-token",
      "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" },
};


static vmx_sigv4_str_t
str(const char *s)
{
    vmx_sigv4_str_t  v = { s, s ? strlen(s) : 0 };

    return v;
}


static vmx_sigv4_request_t
suite_request(const suite_case_t *c)
{
    vmx_sigv4_request_t  r;

    memset(&r, 0, sizeof(r));
    r.method = str(c->method);
    r.host = str("example.amazonaws.com");
    r.path = str(c->path);
    r.query = str(c->query);
    r.headers = c->headers;
    r.nheaders = c->nheaders;
    r.payload = str(c->payload);
    r.region = str("us-east-1");
    r.service = str("service");
    r.access_key_id = str("AKIDEXAMPLE");
    r.secret_key = str("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    r.session_token = str(c->token);
    r.time = SUITE_TIME;

    return r;
}


static char *
sign(const vmx_sigv4_request_t *r)
{
    vmx_buf_t  out;

    vmx_buf_init(&out, heap_alloc, NULL, 0);

    if (vmx_sigv4_sign(r, &out) != 0) {
        return NULL;
    }

    vmx_buf_append(&out, "", 1);

    return out.data;
}


static char *
canonical(const vmx_sigv4_request_t *r)
{
    vmx_buf_t  out;

    vmx_buf_init(&out, heap_alloc, NULL, 0);

    if (vmx_sigv4_canonical_request(r, &out) != 0) {
        return NULL;
    }

    vmx_buf_append(&out, "", 1);

    return out.data;
}


static void
test_suite(void)
{
    const suite_case_t   *c;
    vmx_sigv4_request_t   r;
    char                  expect[2048], *got;
    size_t                i;

    for (i = 0; i < sizeof(suite) / sizeof(suite[0]); i++) {
        c = &suite[i];
        r = suite_request(c);

        snprintf(expect, sizeof(expect),
                 "X-Amz-Date: 20150830T123600Z\r\n%s%s%s"
                 "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"
                 "20150830/us-east-1/service/aws4_request, SignedHeaders=%s, "
                 "Signature=%s\r\n",
                 c->token ? "X-Amz-Security-Token: " : "",
                 c->token ? c->token : "", c->token ? "\r\n" : "",
                 c->signed_headers, c->signature);

        got = sign(&r);
        CHECK(got != NULL && strcmp(got, expect) == 0);

        if (got == NULL || strcmp(got, expect) != 0) {
            fprintf(stderr, "%s:\n%s\nexpected:\n%s\n", c->name,
                    got ? got : "(null)", expect);
        }
    }
}


/* the suite's canonical requests, step 1 */
static void
test_canonical_request(void)
{
    vmx_sigv4_request_t  r;
    char                *got;

    r = suite_request(&suite[2]);
    got = canonical(&r);
    CHECK(got != NULL && strcmp(got,
        "GET\n/\nParam1=value1&Param2=value2\n"
        "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
        "host;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
          == 0);

    r = suite_request(&suite[16]);
    got = canonical(&r);
    CHECK(got != NULL && strcmp(got,
        "GET\n/\n\n"
        "host:example.amazonaws.com\nmy-header1:value1\n"
        "my-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
        "host;my-header1;my-header2;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
          == 0);
}


static int
starts(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}


static void
test_paths_and_queries(void)
{
    vmx_sigv4_request_t  r;
    char                *got;

    r = suite_request(&suite[0]);
    r.path = str("/a/./b//c/../d/");
    r.query = str("b=2&a=x%2fy&a=1&c&=e&&");
    got = canonical(&r);
    CHECK(starts(got, "GET\n/a/b/d/\n=e&a=1&a=x%2Fy&b=2&c=\n"));

    /* ".." above the root stays at the root */
    r.path = str("/../x");
    r.query = str("k=%zz%4");
    got = canonical(&r);
    CHECK(starts(got, "GET\n/x\nk=%25zz%254\n"));

    r.path = str("");
    r.query = str("");
    got = canonical(&r);
    CHECK(starts(got, "GET\n/\n\nhost:"));
}


static void
test_uri_encode(void)
{
    vmx_buf_t  b;

    vmx_buf_init(&b, heap_alloc, NULL, 0);
    vmx_sigv4_uri_encode(&b, "a:b/c d~\xff", 9, 0);
    CHECK_MEM(b.data, b.len, "a%3Ab%2Fc%20d~%FF");

    b.len = 0;
    vmx_sigv4_uri_encode(&b, "a:b/c", 5, 1);
    CHECK_MEM(b.data, b.len, "a%3Ab/c");
}


#define BEDROCK_BODY                                                         \
    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"Hello\"}]}],"\
    "\"inferenceConfig\":{\"maxTokens\":64}}"

#define BEDROCK_PROFILE_PATH                                                 \
    "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-"     \
    "profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"


static vmx_sigv4_request_t
bedrock_request(const vmx_sigv4_header_t *headers, size_t n)
{
    vmx_sigv4_request_t  r;

    memset(&r, 0, sizeof(r));
    r.method = str("POST");
    r.host = str("bedrock-runtime.us-east-1.amazonaws.com");
    r.path = str(BEDROCK_PROFILE_PATH);
    r.headers = headers;
    r.nheaders = n;
    r.payload = str(BEDROCK_BODY);
    r.region = str("us-east-1");
    r.service = str("bedrock");
    r.access_key_id = str("AKIDEXAMPLE");
    r.secret_key = str("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    r.time = 1714564800;    /* 20240501T120000Z */

    return r;
}


/* expected values from botocore's SigV4Auth, run once on these requests */
static void
test_bedrock(void)
{
    static const vmx_sigv4_header_t  stream_headers[] = {
        H("Content-Type", "application/json"),
        H("Accept", "application/vnd.amazon.eventstream"),
    };
    vmx_sigv4_request_t  r;
    char                *got;

    r = bedrock_request(stream_headers, 2);
    got = canonical(&r);
    CHECK(got != NULL && strstr(got, "\n/model/arn%253Aaws%253Abedrock%253A"
                                "us-east-1%253A123456789012%253Ainference-"
                                "profile%252Fus.anthropic.claude-3-5-sonnet-"
                                "20240620-v1%253A0/converse-stream\n") != NULL);

    got = sign(&r);
    CHECK(got != NULL && strcmp(got,
        "X-Amz-Date: 20240501T120000Z\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/"
        "us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;"
        "host;x-amz-date, Signature=2a85e0834612217417b00677fd8b5b2022bbfe47"
        "e6197bb15de43c988fa7d06f\r\n") == 0);

    r.session_token = str("FwoGZXIvYXdzEXAMPLETOKEN//+==");
    got = sign(&r);
    CHECK(got != NULL && strcmp(got,
        "X-Amz-Date: 20240501T120000Z\r\n"
        "X-Amz-Security-Token: FwoGZXIvYXdzEXAMPLETOKEN//+==\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/"
        "us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;"
        "host;x-amz-date;x-amz-security-token, Signature=ab51be9708017bf51764"
        "b88a05d752d0d520fbf8d3d1ace6a03ad70aa5280c42\r\n") == 0);

    r = bedrock_request(stream_headers, 1);
    r.host = str("bedrock-runtime.eu-west-3.amazonaws.com");
    r.path = str("/model/mistral.mistral-large-2402-v1%3A0/converse");
    r.region = str("eu-west-3");
    r.content_sha256 = 1;
    got = sign(&r);
    CHECK(got != NULL && strcmp(got,
        "X-Amz-Date: 20240501T120000Z\r\n"
        "X-Amz-Content-Sha256: f5b802cc64a01910fd197a46e9e959f3a5795f7728fa5"
        "710fb28f1ec3019f545\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/"
        "eu-west-3/bedrock/aws4_request, SignedHeaders=content-type;host;"
        "x-amz-content-sha256;x-amz-date, Signature=51132db3b667a2db7b76d6f2"
        "39281307f7b3568beaa51039b0c6cb9c079b4783\r\n") == 0);
}


static void
test_limits(void)
{
    static vmx_sigv4_header_t  many[VMX_SIGV4_MAX_HEADERS + 1];
    static char                secret[300];
    vmx_sigv4_request_t        r;
    vmx_buf_t                  out;

    vmx_buf_init(&out, heap_alloc, NULL, 0);

    r = suite_request(&suite[0]);
    r.headers = many;
    r.nheaders = VMX_SIGV4_MAX_HEADERS + 1;
    CHECK(vmx_sigv4_sign(&r, &out) == -1);

    r = suite_request(&suite[0]);
    memset(secret, 'k', sizeof(secret));
    r.secret_key.data = secret;
    r.secret_key.len = sizeof(secret);
    CHECK(vmx_sigv4_sign(&r, &out) == -1);

    r = suite_request(&suite[0]);
    r.time = INT64_MAX;
    CHECK(vmx_sigv4_sign(&r, &out) == -1);

    /* no header injection through the credentials */
    r = suite_request(&suite[0]);
    r.session_token = str("abc\r\nX-Evil: 1");
    CHECK(vmx_sigv4_sign(&r, &out) == -1);

    r = suite_request(&suite[0]);
    r.access_key_id = str("AKID\n");
    CHECK(vmx_sigv4_sign(&r, &out) == -1);
    CHECK(out.len == 0);
}


/* a kept signing key signs as a fresh one, and is derived again the next day */
static void
test_kept_key(void)
{
    const suite_case_t   *c;
    vmx_sigv4_key_t       kept;
    vmx_sigv4_request_t   r;
    char                 *fresh, *first, *again, *next_day, *next_fresh;
    size_t                i;

    for (i = 0; i < sizeof(suite) / sizeof(suite[0]); i++) {
        c = &suite[i];
        memset(&kept, 0, sizeof(kept));
        r = suite_request(c);
        fresh = sign(&r);

        r.key = &kept;
        first = sign(&r);
        CHECK(kept.valid && memcmp(kept.date, "20150830", 8) == 0);
        again = sign(&r);

        CHECK(fresh && first && again && strcmp(fresh, first) == 0
              && strcmp(fresh, again) == 0);

        r.time += 86400;
        next_day = sign(&r);
        CHECK(memcmp(kept.date, "20150831", 8) == 0);
        r.key = NULL;
        next_fresh = sign(&r);
        CHECK(next_day && next_fresh && strcmp(next_day, next_fresh) == 0
              && strcmp(next_day, fresh) != 0);

        free(fresh); free(first); free(again); free(next_day); free(next_fresh);
    }
}


int
main(void)
{
    test_suite();
    test_canonical_request();
    test_paths_and_queries();
    test_uri_encode();
    test_bedrock();
    test_limits();
    test_kept_key();

    return UNIT_REPORT();
}
