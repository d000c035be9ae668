/*
 * vmx_policy: the pure parts of the management API's policies (SPEC §8):
 * anchored globs over action and resource strings, and the escaping of a
 * user-chosen name into a resource string.
 *
 * A glob matches the whole string: '*' matches any run of characters
 * (':' included), '?' any one character, every other character itself.
 * Names in resource strings are escaped (':' '*' '?' '%' and bytes outside
 * printable ASCII as %XX) so that no name can span a separator or be read
 * as a wildcard: a workspace named "a:b" is "workspace:a%3Ab".
 */

#ifndef VMX_POLICY_H
#define VMX_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#define VMX_GLOB_MAX_LEN  512

/* whether glob matches the whole of s */
bool vmx_glob_match(const char *glob, const char *s);

/*
 * Whether glob is one a policy may hold: 1 to VMX_GLOB_MAX_LEN printable
 * ASCII characters, no space and none of the characters a glob of another
 * dialect would read as syntax ('[', ']', '{', '}', '\\'), which would
 * silently match nothing here.  On failure *pos is the 0-based offset of
 * the first bad character (the length, for an empty or too long glob).
 */
bool vmx_glob_valid(const char *glob, size_t *pos);

/* writes name escaped into out (at most cap bytes with the NUL) and
 * returns its length; when that is cap or more, out is "" */
size_t vmx_policy_escape(const char *name, char *out, size_t cap);

#endif
