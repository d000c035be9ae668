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

/* hmac.new(TOKEN, f"{ID}\n7\n{KEY}\n\n1798000000", sha256) */
#define SIG    "45d932a6a8e2d0421d9d5a770007da4019466a8903a58309fa8f66112ee1223d"

/* hmac.new(TOKEN, f"{ID}\n0\n{KEY}\nbulk\n1798000000", sha256) */
#define SIG_POOL \
    "1c443a15dcbcc74354a51b34ea01003cf4af3f0fa12d9c82035e85dc3e1301aa"


typedef struct {
    int                 line;
    const char         *id, *item, *key, *pool, *time, *signature;
    const char         *token;
    int64_t             now;
    vmx_batch_check_e   expect;
} batch_case_t;


static const batch_case_t  cases[] = {
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN, NOW, VMX_BATCH_OK },
    { __LINE__, ID, "0", KEY, "bulk", "1798000000", SIG_POOL, TOKEN, NOW,
      VMX_BATCH_OK },

    /* the window: 300 s either side */
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN, NOW + 300,
      VMX_BATCH_OK },
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN, NOW - 300,
      VMX_BATCH_OK },
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN, NOW + 301,
      VMX_BATCH_STALE },
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN, NOW - 301,
      VMX_BATCH_STALE },

    /* every signed header and the token count */
    { __LINE__, ID, "8", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_BAD_SIGNATURE },
    { __LINE__, ID, "7", KEY, "bulk", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_BAD_SIGNATURE },
    { __LINE__, ID, "7", KEY, "", "1798000001", SIG, TOKEN, NOW,
      VMX_BATCH_BAD_SIGNATURE },
    { __LINE__, ID, "7",
      "b3c1f0d2e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8", "",
      "1798000000", SIG, TOKEN, NOW, VMX_BATCH_BAD_SIGNATURE },
    { __LINE__, "8d6f2a4e-1c3b-4a5d-9e8f-0a1b2c3d4e5f", "7", KEY, "",
      "1798000000", SIG, TOKEN, NOW, VMX_BATCH_BAD_SIGNATURE },
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, TOKEN "x", NOW,
      VMX_BATCH_BAD_SIGNATURE },

    /* forms: checked before the signature */
    { __LINE__, ID, "7", KEY, "", "1798000000", SIG, "", NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "07", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "-7", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "50000", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY, "", "99999999999999999999", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY, "a\nb", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY, KEY KEY KEY KEY, "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, "7D6F2A4E-1C3B-4A5D-9E8F-0A1B2C3D4E5F", "7", KEY, "",
      "1798000000", SIG, TOKEN, NOW, VMX_BATCH_MALFORMED },
    { __LINE__, "7d6f2a4e-1c3b-4a5d-9e8f-0a1b2c3d4e5", "7", KEY, "",
      "1798000000", SIG, TOKEN, NOW, VMX_BATCH_MALFORMED },
    { __LINE__, "", "7", KEY, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY + 1, "", "1798000000", SIG, TOKEN, NOW,
      VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY, "", "1798000000",
      "45D932A6A8E2D0421D9D5A770007DA4019466A8903A58309FA8F66112EE1223D",
      TOKEN, NOW, VMX_BATCH_MALFORMED },
    { __LINE__, ID, "7", KEY, "", "1798000000", "", TOKEN, NOW,
      VMX_BATCH_MALFORMED },
};


static vmx_batch_str_t
str(const char *s)
{
    vmx_batch_str_t  v;

    v.data = s;
    v.len = strlen(s);

    return v;
}


int
main(void)
{
    size_t               i;
    int64_t              item;
    unsigned char        hash[32];
    vmx_batch_check_e    rc;
    vmx_batch_headers_t  h;
    const batch_case_t  *c;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = &cases[i];

        h.id = str(c->id);
        h.item = str(c->item);
        h.key = str(c->key);
        h.pool = str(c->pool);
        h.time = str(c->time);
        h.signature = str(c->signature);

        rc = vmx_batch_verify(&h, (const unsigned char *) c->token,
                              strlen(c->token), c->now, &item, hash);

        if (rc != c->expect) {
            fprintf(stderr, "case of line %d: %d, expected %d\n", c->line,
                    (int) rc, (int) c->expect);
        }

        CHECK(rc == c->expect);
    }

    /* what an accepted one gives */
    h.id = str(ID);
    h.item = str("7");
    h.key = str(KEY);
    h.pool = str("");
    h.time = str("1798000000");
    h.signature = str(SIG);
    item = -1;

    CHECK(vmx_batch_verify(&h, (const unsigned char *) TOKEN,
                           sizeof(TOKEN) - 1, NOW, &item, hash)
          == VMX_BATCH_OK);
    CHECK(item == 7);
    CHECK(hash[0] == 0xa3 && hash[1] == 0xc1 && hash[31] == 0xd8);

    return UNIT_REPORT();
}
