/*
 * vmx_buf: an output buffer for building JSON and other text, growing
 * through the caller's allocator (an nginx pool in the module): the old
 * memory stays with the allocator, so nothing is ever freed one by one.
 * An allocation failure sticks: every later append is a no-op and
 * vmx_buf_failed() says so, so a builder checks once at its end.
 */

#ifndef VMX_BUF_H
#define VMX_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vmx_json.h"


typedef struct {
    char               *data;
    size_t              len;
    size_t              cap;
    vmx_json_alloc_pt   alloc;
    void               *alloc_ctx;
    int                 failed;
} vmx_buf_t;


void vmx_buf_init(vmx_buf_t *b, vmx_json_alloc_pt alloc, void *alloc_ctx,
    size_t initial);

/* room for n more bytes at data + len; NULL after a failure */
char *vmx_buf_reserve(vmx_buf_t *b, size_t n);

/* inline: an append that fits, most of them, is then a copy */
static inline void
vmx_buf_append(vmx_buf_t *b, const char *s, size_t n)
{
    char  *p;

    if (n == 0) {
        return;
    }

    p = (!b->failed && b->cap - b->len >= n) ? b->data + b->len
                                             : vmx_buf_reserve(b, n);

    if (p != NULL) {
        memcpy(p, s, n);
        b->len += n;
    }
}

/* inline: the length of a literal is then known when compiling */
static inline void
vmx_buf_append_cstr(vmx_buf_t *b, const char *s)
{
    vmx_buf_append(b, s, strlen(s));
}

void vmx_buf_append_int(vmx_buf_t *b, int64_t v);

/* s as a JSON string: quotes included, escaped as vmx_json_escape() does */
void vmx_buf_append_json_str(vmx_buf_t *b, const char *s, size_t n);

/* a parsed value as JSON text: its source span, byte for byte */
void vmx_buf_append_raw(vmx_buf_t *b, const vmx_json_t *v);

int vmx_buf_failed(const vmx_buf_t *b);

#endif /* VMX_BUF_H */
