/*
 * utf8: validation of UTF-8 text (RFC 3629: no overlong forms, surrogates
 * or code points beyond U+10FFFF).  NUL counts as invalid: no text the
 * daemon keeps (a JSON body, a payload stored as text) may hold one.
 */

#ifndef CP_UTF8_H
#define CP_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* the length of the valid UTF-8 sequence at s[i] (not NUL), 0 when none */
size_t utf8_at(const unsigned char *s, size_t i, size_t n);

/* true when the n bytes at s are valid UTF-8 without NUL */
bool utf8_valid_text(const unsigned char *s, size_t n);

#endif
