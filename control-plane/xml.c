/*
 * xml: the text of one element, read with expat (see xml.h).
 *
 * The parser keeps the path of local names down to the current element;
 * the first element whose path is the one asked collects its character
 * data, and a child element inside it, a DTD or a parse error before it is
 * found make the answer NULL.
 */

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "xml.h"

#define XML_MAX_DEPTH  32
#define XML_MAX_TEXT   (64 * 1024)

typedef struct {
    XML_Parser   parser;
    const char  *path;           /* "A/B/C" */
    size_t       path_len;
    char         current[1024];  /* the local names down to here, '/'-joined */
    size_t       lens[XML_MAX_DEPTH];   /* current's length at each depth */
    int          depth;
    int          found_depth;    /* depth of the element collected, 0: none yet */
    bool         done;           /* collected whole: ignore the rest */
    bool         failed;
    char        *text;
    size_t       text_len;
} xml_search_t;


static void
xml_fail(xml_search_t *s)
{
    s->failed = true;
    XML_StopParser(s->parser, XML_FALSE);
}


/* "ns:Name" -> "Name": namespace prefixes are ignored */
static const char *
local_name(const char *name)
{
    const char *colon = strrchr(name, ':');

    return colon ? colon + 1 : name;
}


static void XMLCALL
on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
    xml_search_t *s = data;
    const char   *local = local_name(name);
    size_t        len = strlen(local), at = s->depth ? s->lens[s->depth - 1] : 0;

    (void) attrs;
    if (s->done) {
        return;
    }
    if (s->found_depth) {
        /* the element asked holds child elements: no text */
        xml_fail(s);
        return;
    }
    if (s->depth == XML_MAX_DEPTH || at + len + 2 > sizeof(s->current)) {
        xml_fail(s);
        return;
    }
    if (s->depth) {
        s->current[at++] = '/';
    }
    memcpy(s->current + at, local, len);
    s->lens[s->depth++] = at + len;
    s->current[at + len] = '\0';

    if (at + len == s->path_len && memcmp(s->current, s->path, s->path_len) == 0) {
        s->found_depth = s->depth;
        s->text = calloc(1, 1);
        if (s->text == NULL) {
            xml_fail(s);
        }
    }
}


static void XMLCALL
on_end(void *data, const XML_Char *name)
{
    xml_search_t *s = data;

    (void) name;
    if (s->done) {
        return;
    }
    if (s->found_depth == s->depth) {
        s->done = true;
        XML_StopParser(s->parser, XML_FALSE);
        return;
    }
    s->depth--;
}


static void XMLCALL
on_text(void *data, const XML_Char *text, int len)
{
    xml_search_t *s = data;
    char         *grown;

    if (s->done || s->found_depth != s->depth || s->found_depth == 0) {
        return;
    }
    if (s->text_len + (size_t) len > XML_MAX_TEXT) {
        xml_fail(s);
        return;
    }
    grown = realloc(s->text, s->text_len + (size_t) len + 1);
    if (grown == NULL) {
        xml_fail(s);
        return;
    }
    s->text = grown;
    memcpy(s->text + s->text_len, text, (size_t) len);
    s->text_len += (size_t) len;
    s->text[s->text_len] = '\0';
}


/* a DTD can declare entities (and their expansion): such a document is not read */
static void XMLCALL
on_doctype(void *data, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
           int has_internal_subset)
{
    (void) name;
    (void) sysid;
    (void) pubid;
    (void) has_internal_subset;
    xml_fail(data);
}


char *
xml_text(const char *doc, const char *path)
{
    xml_search_t s;

    memset(&s, 0, sizeof(s));
    s.path = path;
    s.path_len = strlen(path);
    s.parser = XML_ParserCreate("UTF-8");
    if (s.parser == NULL) {
        return NULL;
    }
    XML_SetUserData(s.parser, &s);
    XML_SetElementHandler(s.parser, on_start, on_end);
    XML_SetCharacterDataHandler(s.parser, on_text);
    XML_SetStartDoctypeDeclHandler(s.parser, on_doctype);

    if (XML_Parse(s.parser, doc, (int) strnlen(doc, INT_MAX), XML_TRUE) == XML_STATUS_ERROR
        && !s.done)
    {
        s.failed = true;
    }
    XML_ParserFree(s.parser);
    if (s.failed || !s.done) {
        free(s.text);
        return NULL;
    }
    return s.text;
}
