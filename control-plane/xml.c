/*
 * xml: a forward scan keeping the stack of open element names.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

#define XML_MAX_DEPTH  32

typedef struct {
    const char  *name;              /* into the document, local part */
    size_t       len;
} xml_name_t;


/* the local part of the tag name at s: its length, *name set */
static size_t
tag_name(const char *s, const char **name)
{
    size_t      len = strcspn(s, " \t\r\n/>");
    const char *colon = memchr(s, ':', len);

    if (colon != NULL) {
        len -= (size_t) (colon + 1 - s);
        s = colon + 1;
    }
    *name = s;
    return len;
}


static bool
path_matches(const xml_name_t *stack, int depth, const char *path)
{
    const char *p = path;

    for (int i = 0; i < depth; i++) {
        size_t len = strcspn(p, "/");

        if (len != stack[i].len || memcmp(p, stack[i].name, len) != 0) {
            return false;
        }
        p += len;
        if (*p == '/') {
            p++;
        } else if (i + 1 < depth) {
            return false;
        }
    }
    return *p == '\0';
}


/* appends code point cp as UTF-8 */
static bool
put_utf8(char **out, unsigned long cp)
{
    char *o = *out;

    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return false;
    }
    if (cp < 0x80) {
        *o++ = (char) cp;
    } else if (cp < 0x800) {
        *o++ = (char) (0xC0 | (cp >> 6));
        *o++ = (char) (0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char) (0xE0 | (cp >> 12));
        *o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char) (0x80 | (cp & 0x3F));
    } else {
        *o++ = (char) (0xF0 | (cp >> 18));
        *o++ = (char) (0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char) (0x80 | (cp & 0x3F));
    }
    *out = o;
    return true;
}


/* the text s[0..len) with its references decoded (malloc'd), NULL if bad */
static char *
decode(const char *s, size_t len)
{
    static const struct { const char *ref; char c; } named[] = {
        { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' }
    };
    char       *text = malloc(len + 1);
    char       *o = text;
    const char *end = s + len;

    if (text == NULL) {
        return NULL;
    }
    while (s < end) {
        const char *semi;
        bool        ok = false;

        if (*s != '&') {
            *o++ = *s++;
            continue;
        }
        semi = memchr(s, ';', (size_t) (end - s));
        if (semi != NULL && s[1] == '#') {
            char          *stop;
            unsigned long  cp = s[2] == 'x' ? strtoul(s + 3, &stop, 16)
                                            : strtoul(s + 2, &stop, 10);

            ok = stop == semi && stop > s + 2 && put_utf8(&o, cp);
        } else if (semi != NULL) {
            for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
                size_t n = strlen(named[i].ref);

                if ((size_t) (semi + 1 - (s + 1)) == n && memcmp(s + 1, named[i].ref, n) == 0) {
                    *o++ = named[i].c;
                    ok = true;
                    break;
                }
            }
        }
        if (!ok) {
            free(text);
            return NULL;
        }
        s = semi + 1;
    }
    *o = '\0';
    return text;
}


char *
xml_text(const char *doc, const char *path)
{
    xml_name_t  stack[XML_MAX_DEPTH];
    int         depth = 0;
    const char *p = doc;

    while ((p = strchr(p, '<')) != NULL) {
        const char *name, *end, *content, *close;
        size_t      len;

        if (p[1] == '?') {
            p = strstr(p + 2, "?>");
            if (p == NULL) {
                return NULL;
            }
            p += 2;
            continue;
        }
        if (strncmp(p, "<!--", 4) == 0) {
            p = strstr(p + 4, "-->");
            if (p == NULL) {
                return NULL;
            }
            p += 3;
            continue;
        }
        if (p[1] == '!') {
            return NULL;
        }
        end = strchr(p, '>');
        if (end == NULL) {
            return NULL;
        }

        if (p[1] == '/') {
            len = tag_name(p + 2, &name);
            if (depth == 0 || len != stack[depth - 1].len
                || memcmp(name, stack[depth - 1].name, len) != 0)
            {
                return NULL;
            }
            depth--;
            p = end + 1;
            continue;
        }

        len = tag_name(p + 1, &name);
        if (len == 0 || depth == XML_MAX_DEPTH) {
            return NULL;
        }
        stack[depth].name = name;
        stack[depth].len = len;
        if (path_matches(stack, depth + 1, path)) {
            if (end[-1] == '/') {
                return strdup("");
            }
            content = end + 1;
            close = strchr(content, '<');
            if (close == NULL || close[1] != '/'
                || tag_name(close + 2, &name) != len || memcmp(name, stack[depth].name, len) != 0)
            {
                return NULL;
            }
            return decode(content, (size_t) (close - content));
        }
        if (end[-1] != '/') {
            depth++;
        }
        p = end + 1;
    }
    return NULL;
}
