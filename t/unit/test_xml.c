/*
 * xml_text(): the text of one element of an AWS query API answer (STS).
 */

#include <stdbool.h>

#include "unit.h"
#include "xml.h"


static bool
text_is(const char *doc, const char *path, const char *want)
{
    char *got = xml_text(doc, path);
    bool  ok = want == NULL ? got == NULL : (got != NULL && strcmp(got, want) == 0);

    if (!ok) {
        fprintf(stderr, "xml_text(%s): got %s, want %s\n", path, got ? got : "NULL",
                want ? want : "NULL");
    }
    free(got);
    return ok;
}


int
main(void)
{
    const char *sts =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
        "  <AssumeRoleResult>\n"
        "    <!-- a comment -->\n"
        "    <Credentials>\n"
        "      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n"
        "      <SecretAccessKey>a&amp;b&lt;c&#x41;&#66;</SecretAccessKey>\n"
        "      <SessionToken><![CDATA[tok<en]]></SessionToken>\n"
        "      <Expiration>2026-12-02T13:00:00Z</Expiration>\n"
        "    </Credentials>\n"
        "  </AssumeRoleResult>\n"
        "</AssumeRoleResponse>\n";

    CHECK(text_is(sts, "AssumeRoleResponse/AssumeRoleResult/Credentials/AccessKeyId",
                  "ASIAEXAMPLE"));
    CHECK(text_is(sts, "AssumeRoleResponse/AssumeRoleResult/Credentials/SecretAccessKey",
                  "a&b<cAB"));
    CHECK(text_is(sts, "AssumeRoleResponse/AssumeRoleResult/Credentials/SessionToken",
                  "tok<en"));
    /* an element holding elements has no text; a missing one none either */
    CHECK(text_is(sts, "AssumeRoleResponse/AssumeRoleResult/Credentials", NULL));
    CHECK(text_is(sts, "AssumeRoleResponse/AssumeRoleResult/Nope", NULL));
    CHECK(text_is(sts, "AccessKeyId", NULL));
    /* prefixes are ignored; an empty element is "" */
    CHECK(text_is("<a:E xmlns:a=\"x\"><a:Error><a:Code/></a:Error></a:E>", "E/Error/Code",
                  ""));
    CHECK(text_is("<ErrorResponse><Error><Code>Throttling</Code><Message>Rate"
                  " exceeded</Message></Error></ErrorResponse>",
                  "ErrorResponse/Error/Message", "Rate exceeded"));
    /* malformed before the element, or a DTD (entity expansion): not read */
    CHECK(text_is("<a><b>x</c></a>", "a/b", NULL));
    CHECK(text_is("<a><b>", "a/b", NULL));
    CHECK(text_is("<!DOCTYPE a [<!ENTITY e \"x\">]><a><b>&e;</b></a>", "a/b", NULL));
    CHECK(text_is("", "a", NULL));
    /* the first of two; malformed after it is no matter */
    CHECK(text_is("<a><b>1</b><b>2</b><oops></a>", "a/b", "1"));
    return UNIT_REPORT();
}
