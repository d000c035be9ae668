/*
 * vmx_policy: anchored globs and resource-name escaping (vmx_policy.h).
 */

#include <string.h>

#include "vmx_policy.h"


/*
 * The classic one-star backtrack: on a mismatch, retry from the last '*'
 * with it swallowing one more character.  A later star supersedes an
 * earlier one, so the work is O(len(glob) * len(s)) at worst, never
 * exponential.
 */
bool
vmx_glob_match(const char *glob, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s != '\0') {
        if (*glob == '*') {
            star = glob++;
            resume = s;
        } else if (*glob != '\0' && (*glob == '?' || *glob == *s)) {
            glob++;
            s++;
        } else if (star != NULL) {
            glob = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*glob == '*') {
        glob++;
    }
    return *glob == '\0';
}


bool
vmx_glob_valid(const char *glob, size_t *pos)
{
    size_t i;

    for (i = 0; glob[i] != '\0'; i++) {
        unsigned char c = (unsigned char) glob[i];

        if (i == VMX_GLOB_MAX_LEN || c <= ' ' || c >= 0x7f || strchr("[]{}\\", c) != NULL) {
            *pos = i;
            return false;
        }
    }
    *pos = i;
    return i > 0;
}


size_t
vmx_policy_escape(const char *name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t            n = 0;

    for (const unsigned char *p = (const unsigned char *) name; *p != '\0'; p++) {
        bool escape = *p <= ' ' || *p >= 0x7f || strchr(":*?%", *p) != NULL;

        if (escape) {
            if (n + 3 < cap) {
                out[n] = '%';
                out[n + 1] = hex[*p >> 4];
                out[n + 2] = hex[*p & 0xf];
            }
            n += 3;
        } else {
            if (n + 1 < cap) {
                out[n] = (char) *p;
            }
            n++;
        }
    }
    if (cap > 0) {
        out[n < cap ? n : 0] = '\0';
    }
    return n;
}
