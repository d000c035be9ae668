/*
 * vmx_buf: see vmx_buf.h.
 */

#include <string.h>

#include "vmx_buf.h"


#define VMX_BUF_ESCAPE_ONCE  4096


void
vmx_buf_init(vmx_buf_t *b, vmx_json_alloc_pt alloc, void *alloc_ctx,
    size_t initial)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->alloc = alloc;
    b->alloc_ctx = alloc_ctx;
    b->failed = 0;

    if (initial) {
        b->data = alloc(alloc_ctx, initial);
        b->cap = initial;
        b->failed = (b->data == NULL);
    }
}


char *
vmx_buf_reserve(vmx_buf_t *b, size_t n)
{
    char    *data;
    size_t   cap;

    if (b->failed) {
        return NULL;
    }

    if (b->cap - b->len >= n) {
        return b->data + b->len;
    }

    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return NULL;
    }

    for (cap = b->cap ? b->cap * 2 : 256; cap < b->len + n; cap *= 2) {
        /* void */
    }

    data = b->alloc(b->alloc_ctx, cap);
    if (data == NULL) {
        b->failed = 1;
        return NULL;
    }

    if (b->len) {
        memcpy(data, b->data, b->len);
    }

    b->data = data;
    b->cap = cap;

    return b->data + b->len;
}


void
vmx_buf_append_int(vmx_buf_t *b, int64_t v)
{
    char      digits[24], *p;
    uint64_t  u;

    p = digits + sizeof(digits);
    u = (v < 0) ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u);

    if (v < 0) {
        *--p = '-';
    }

    vmx_buf_append(b, p, digits + sizeof(digits) - p);
}


void
vmx_buf_append_json_str(vmx_buf_t *b, const char *s, size_t n)
{
    char  *p;

    /* a short string is escaped once, into room for its worst case */
    p = vmx_buf_reserve(b, n <= VMX_BUF_ESCAPE_ONCE
                           ? 6 * n + 2 : vmx_json_escape(NULL, s, n) + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    p += vmx_json_escape(p, s, n);
    *p++ = '"';

    b->len = p - b->data;
}


void
vmx_buf_append_raw(vmx_buf_t *b, const vmx_json_t *v)
{
    vmx_buf_append(b, v->raw, v->raw_len);
}


int
vmx_buf_failed(const vmx_buf_t *b)
{
    return b->failed;
}
