/*
 * vmx_sha256: FIPS 180 and RFC 4231 vectors, and the same answers from
 * many threads at once (the algorithm is fetched once, by whichever comes
 * first).
 */

#include <pthread.h>

#include "unit.h"
#include "vmx_sha256.h"


static void
hex(const unsigned char *md, char *out)
{
    size_t  i;

    for (i = 0; i < VMX_SHA256_LEN; i++) {
        sprintf(out + 2 * i, "%02x", md[i]);
    }
}


static int
sha256_is(const char *data, size_t len, const char *expect)
{
    unsigned char  md[VMX_SHA256_LEN];
    char           got[2 * VMX_SHA256_LEN + 1];

    if (vmx_sha256(data, len, md) != 0) {
        return 0;
    }

    hex(md, got);
    return strcmp(got, expect) == 0;
}


static int
hmac_is(const void *key, size_t key_len, const char *data, size_t len,
    const char *expect)
{
    unsigned char  md[VMX_SHA256_LEN];
    char           got[2 * VMX_SHA256_LEN + 1];

    if (vmx_hmac_sha256(key, key_len, data, len, md) != 0) {
        return 0;
    }

    hex(md, got);
    return strcmp(got, expect) == 0;
}


static void
test_vectors(void)
{
    unsigned char  key[131];
    static const char  long_data[] =
        "This is a test using a larger than block-size key and a larger "
        "than block-size data. The key needs to be hashed before being "
        "used by the HMAC algorithm.";

    CHECK(sha256_is("", 0, "e3b0c44298fc1c149afbf4c8996fb924"
                           "27ae41e4649b934ca495991b7852b855"));
    CHECK(sha256_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223"
                              "b00361a396177a9cb410ff61f20015ad"));

    /* RFC 4231, cases 1, 2, 6 and 7 */
    memset(key, 0x0b, 20);
    CHECK(hmac_is(key, 20, "Hi There", 8,
                  "b0344c61d8db38535ca8afceaf0bf12b"
                  "881dc200c9833da726e9376c2e32cff7"));
    CHECK(hmac_is("Jefe", 4, "what do ya want for nothing?", 28,
                  "5bdcc146bf60754e6a042426089575c7"
                  "5a003f089d2739839dec58b964ec3843"));
    memset(key, 0xaa, sizeof(key));
    CHECK(hmac_is(key, sizeof(key),
                  "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                  "60e431591ee0b67f0d8a26aacbf5b77f"
                  "8e0bc6213728c5140546040f0ee37f54"));
    CHECK(hmac_is(key, sizeof(key), long_data, sizeof(long_data) - 1,
                  "9b09ffa71b942fcb27635fbcd5b0e944"
                  "bfdc63644f0713938a7f51535c3a35e2"));
}


/* the output may be the key, as a signing key's chain has it */
static void
test_in_place(void)
{
    unsigned char  md[VMX_SHA256_LEN];
    char           got[2 * VMX_SHA256_LEN + 1];

    memset(md, 0x0b, 20);
    CHECK(vmx_hmac_sha256(md, 20, "Hi There", 8, md) == 0);
    hex(md, got);
    CHECK(strcmp(got, "b0344c61d8db38535ca8afceaf0bf12b"
                      "881dc200c9833da726e9376c2e32cff7") == 0);
}


static void *
hash_many(void *arg)
{
    int  i, *ok = arg;

    for (i = 0; i < 2000; i++) {
        if (!sha256_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223"
                                 "b00361a396177a9cb410ff61f20015ad")
            || !hmac_is("Jefe", 4, "what do ya want for nothing?", 28,
                        "5bdcc146bf60754e6a042426089575c7"
                        "5a003f089d2739839dec58b964ec3843"))
        {
            *ok = 0;
        }
    }

    return NULL;
}


static void
test_threads(void)
{
    pthread_t  t[8];
    int        ok[8];
    size_t     i;

    for (i = 0; i < 8; i++) {
        ok[i] = 1;
        CHECK(pthread_create(&t[i], NULL, hash_many, &ok[i]) == 0);
    }

    for (i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK(ok[i]);
    }
}


int
main(void)
{
    test_threads();
    test_vectors();
    test_in_place();

    return UNIT_REPORT();
}
