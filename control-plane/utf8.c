/*
 * utf8: validation of UTF-8 text.
 */

#include "utf8.h"


size_t
utf8_at(const unsigned char *s, size_t i, size_t n)
{
    unsigned char c = s[i];
    size_t        len = c == 0 ? 0 : c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2
                        : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;

    if (len == 0 || i + len > n) {
        return 0;
    }
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) {
            return 0;
        }
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if (len > 2) {
        unsigned char d = s[i + 1];

        if ((c == 0xe0 && d < 0xa0) || (c == 0xed && d > 0x9f)
            || (c == 0xf0 && d < 0x90) || (c == 0xf4 && d > 0x8f))
        {
            return 0;
        }
    }
    return len;
}


bool
utf8_valid_text(const unsigned char *s, size_t n)
{
    for (size_t i = 0, len; i < n; i += len) {
        if ((len = utf8_at(s, i, n)) == 0) {
            return false;
        }
    }
    return true;
}
