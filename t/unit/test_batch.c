/*
 * Unit tests of vmx_batch: the signed headers of a batch item.  The
 * signatures were computed with Python's hmac module.
 */

#include "unit.h"

#include "vmx_batch.h"

#define TOKEN  "0123456789abcdef0123456789abcdef"
#define ID     "7d6f2a4e-1c3b-4a5d-9e8f-0a1b2c3d4e5f"
#define KEY    "a3c1f0d2e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8"
#define NOW    1798000000

static vmx_batch_headers_t
headers(const char *item, const char *pool, const char *time,
    const char *signature)
{
    vmx_batch_headers_t  h;

    h.id.data = ID;
    h.id.len = strlen(ID);
    h.item.data = item;
    h.item.len = strlen(item);
    h.key.data = KEY;
    h.key.len = strlen(KEY);
    h.pool.data = pool;
    h.pool.len = strlen(pool);
    h.time.data = time;
    h.time.len = strlen(time);
    h.signature.data = signature;
    h.signature.len = strlen(signature);

    return h;
}

static vmx_batch_check_e
verify(const vmx_batch_headers_t *h, int64_t now, int64_t *item,
    unsigned char hash[32])
{
    return vmx_batch_verify(h, (const unsigned char *) TOKEN,
                            sizeof(TOKEN) - 1, now, item, hash);
}

/* hmac.new(TOKEN, f"{ID}\n7\n{KEY}\n\n1798000000", sha256) */
#define SIG_NO_POOL \
    "45d932a6a8e2d0421d9d5a770007da4019466a8903a58309fa8f66112ee1223d"

/* hmac.new(TOKEN, f"{ID}\n0\n{KEY}\nbulk\n1798000000", sha256) */
#define SIG_POOL \
    "1c443a15dcbcc74354a51b34ea01003cf4af3f0fa12d9c82035e85dc3e1301aa"

int
main(void)
{
    int64_t              item;
    unsigned char        hash[32];
    vmx_batch_headers_t  h;

    h = headers("7", "", "1798000000", SIG_NO_POOL);
    item = -1;
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_OK);
    CHECK(item == 7);
    CHECK(hash[0] == 0xa3 && hash[1] == 0xc1 && hash[31] == 0xd8);

    /* the window: 300 s either side */
    CHECK(verify(&h, NOW + 300, &item, hash) == VMX_BATCH_OK);
    CHECK(verify(&h, NOW - 300, &item, hash) == VMX_BATCH_OK);
    CHECK(verify(&h, NOW + 301, &item, hash) == VMX_BATCH_STALE);
    CHECK(verify(&h, NOW - 301, &item, hash) == VMX_BATCH_STALE);

    /* every signed header counts */
    h = headers("8", "", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_BAD_SIGNATURE);
    h = headers("7", "bulk", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_BAD_SIGNATURE);
    h = headers("7", "", "1798000001", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_BAD_SIGNATURE);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.key.data = "b3c1f0d2e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8";
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_BAD_SIGNATURE);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.id.data = "8d6f2a4e-1c3b-4a5d-9e8f-0a1b2c3d4e5f";
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_BAD_SIGNATURE);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    CHECK(vmx_batch_verify(&h, (const unsigned char *) TOKEN "x",
                           sizeof(TOKEN), NOW, &item, hash)
          == VMX_BATCH_BAD_SIGNATURE);

    /* a pool is signed */
    h = headers("0", "bulk", "1798000000", SIG_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_OK);
    CHECK(item == 0);

    /* forms */
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    CHECK(vmx_batch_verify(&h, (const unsigned char *) "", 0, NOW, &item,
                           hash)
          == VMX_BATCH_MALFORMED);
    h = headers("07", "", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("-7", "", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("50000", "", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("", "", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "99999999999999999999", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "a\nb", "1798000000", SIG_NO_POOL);
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.pool.len = VMX_BATCH_POOL_MAX + 1;
    h.pool.data = KEY KEY KEY KEY;
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.id.data = "7D6F2A4E-1C3B-4A5D-9E8F-0A1B2C3D4E5F";
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.id.len--;
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000", SIG_NO_POOL);
    h.key.len--;
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000",
                "45D932A6A8E2D0421D9D5A770007DA4019466A8903A58309FA8F66112EE1223D");
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);
    h = headers("7", "", "1798000000", "");
    CHECK(verify(&h, NOW, &item, hash) == VMX_BATCH_MALFORMED);

    return UNIT_REPORT();
}
