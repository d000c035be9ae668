/*
 * vmx_bytes_find() against a naive search: every needle of 1 to 4 bytes
 * over the alphabet "ab\n" in every haystack of up to 7 bytes.
 */

#include "unit.h"
#include "vmx_bytes.h"


static const char *
naive(const char *p, size_t len, const char *needle, size_t n)
{
    size_t  i;

    for (i = 0; n && i + n <= len; i++) {
        if (memcmp(p + i, needle, n) == 0) {
            return p + i;
        }
    }

    return NULL;
}


/* the i-th text of length len over the alphabet */
static void
text(char *out, size_t len, unsigned i)
{
    static const char  alphabet[] = "ab\n";
    size_t             k;

    for (k = 0; k < len; k++, i /= 3) {
        out[k] = alphabet[i % 3];
    }
}


int
main(void)
{
    char      hay[8], needle[5];
    size_t    hlen, nlen;
    unsigned  h, n, hmax, nmax, wrong = 0;

    for (hlen = 0; hlen <= 7; hlen++) {
        for (hmax = 1, h = 0; h < hlen; h++) {
            hmax *= 3;
        }

        for (nlen = 1; nlen <= 4; nlen++) {
            for (nmax = 1, n = 0; n < nlen; n++) {
                nmax *= 3;
            }

            for (h = 0; h < hmax; h++) {
                text(hay, hlen, h);

                for (n = 0; n < nmax; n++) {
                    text(needle, nlen, n);
                    wrong += vmx_bytes_find(hay, hlen, needle, nlen)
                             != naive(hay, hlen, needle, nlen);
                }
            }
        }
    }

    CHECK(wrong == 0);
    CHECK(vmx_bytes_find("data: {}\n\n", 10, "\n\n", 2) != NULL);
    CHECK(vmx_bytes_find("x", 1, "", 0) == NULL);
    {
        static const char  chunk[] = "{\"id\":\"x\",\"usage\":{}}";

        CHECK(vmx_bytes_find(chunk, sizeof(chunk) - 1, "\"usage\"", 7)
              == chunk + 10);
    }

    return UNIT_REPORT();
}
