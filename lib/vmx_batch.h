/*
 * vmx_batch: the signed headers a batch runner sends with each item instead
 * of an API key (docs/ARCHITECTURE.md, "Batches"), checked as a pure
 * function of the headers, the data-plane token and the clock, so that it
 * can be unit-tested.
 *
 * The runner signs "<batch id>\n<item>\n<key hash>\n<pool or empty>\n<time>"
 * with HMAC-SHA256 under the data-plane token and sends the signature as
 * 64 lowercase hex digits; the time is unix seconds and must be within
 * VMX_BATCH_WINDOW seconds of the data plane's clock.
 */

#ifndef VMX_BATCH_H
#define VMX_BATCH_H

#include <stddef.h>
#include <stdint.h>


#define VMX_BATCH_WINDOW     300        /* seconds either side of now */
#define VMX_BATCH_POOL_MAX   200        /* bytes of a pool name */
#define VMX_BATCH_ITEM_MAX   49999      /* a batch has at most 50000 items */


typedef struct {
    const char         *data;
    size_t              len;
} vmx_batch_str_t;


/* the headers as received; a missing one is empty */
typedef struct {
    vmx_batch_str_t     id;             /* x-vmx-batch-id */
    vmx_batch_str_t     item;           /* x-vmx-batch-item */
    vmx_batch_str_t     key;            /* x-vmx-batch-key */
    vmx_batch_str_t     pool;           /* x-vmx-batch-pool, may be empty */
    vmx_batch_str_t     time;           /* x-vmx-batch-time */
    vmx_batch_str_t     signature;      /* x-vmx-batch-signature */
} vmx_batch_headers_t;


typedef enum {
    VMX_BATCH_OK = 0,
    VMX_BATCH_MALFORMED,        /* a header missing or not of its form */
    VMX_BATCH_BAD_SIGNATURE,
    VMX_BATCH_STALE             /* signed too far from now */
} vmx_batch_check_e;


/*
 * Checks the form of every header, the signature (compared in constant
 * time) and the time.  On VMX_BATCH_OK fills item and key_hash (the 32
 * bytes of the key's SHA-256, as the snapshot indexes keys); the batch id
 * is a lowercase UUID and the pool, when given, at most VMX_BATCH_POOL_MAX
 * bytes without control characters.
 */
vmx_batch_check_e vmx_batch_verify(const vmx_batch_headers_t *h,
    const unsigned char *token, size_t token_len, int64_t now,
    int64_t *item, unsigned char key_hash[32]);


#endif /* VMX_BATCH_H */
