/*
 * vmx_bytes: searching short texts.
 *
 * glibc's memmem() prepares a shift table for every needle longer than
 * two bytes, which costs more than the search in the short texts of a
 * stream's events; the first byte is found by memchr() instead.
 */

#ifndef VMX_BYTES_H
#define VMX_BYTES_H

#include <stddef.h>
#include <string.h>


/* the first needle (n > 0 bytes) in p[0..len), or NULL */
static inline const char *
vmx_bytes_find(const char *p, size_t len, const char *needle, size_t n)
{
    const char  *last, *found;

    if (n == 0 || len < n) {
        return NULL;
    }

    last = p + len - n + 1;

    while (p < last) {
        found = memchr(p, needle[0], last - p);
        if (found == NULL) {
            return NULL;
        }

        if (memcmp(found + 1, needle + 1, n - 1) == 0) {
            return found;
        }

        p = found + 1;
    }

    return NULL;
}

#endif /* VMX_BYTES_H */
