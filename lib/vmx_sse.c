/*
 * The parser is a small state machine over bytes.  Values of "data" and
 * "event" lines are copied straight into the caller's buffer as they
 * arrive, after the data gathered so far, so a "data" value lands in place
 * and every byte is copied once, whatever the split of the stream.
 */

#include <string.h>

#include "vmx_sse.h"


enum {
    VMX_SSE_BOM = 0,          /* start of the stream */
    VMX_SSE_LINE_START,
    VMX_SSE_NAME,
    VMX_SSE_VALUE_START,      /* after the colon: one space may follow */
    VMX_SSE_VALUE,
    VMX_SSE_SKIP              /* a comment or a field we ignore */
};

enum {
    VMX_SSE_FIELD_OTHER = 0,
    VMX_SSE_FIELD_DATA,
    VMX_SSE_FIELD_EVENT
};

#define VMX_SSE_NAME_MAX  5   /* sizeof(p->name); name_len 6 is "longer" */


static const unsigned char  vmx_sse_bom[] = { 0xef, 0xbb, 0xbf };


void
vmx_sse_init(vmx_sse_parser_t *p, char *buf, size_t cap)
{
    memset(p, 0, sizeof(vmx_sse_parser_t));
    p->buf = buf;
    p->cap = cap;
    p->state = VMX_SSE_BOM;
}


static int
vmx_sse_append(vmx_sse_parser_t *p, const char *s, size_t n)
{
    size_t  used = p->event_len + p->data_len + p->value_len;

    if (p->cap - used < n) {
        p->failed = 1;
        return VMX_SSE_TOO_LARGE;
    }

    memcpy(p->buf + used, s, n);
    p->value_len += n;

    return VMX_SSE_OK;
}


static int
vmx_sse_field(const vmx_sse_parser_t *p)
{
    if (p->name_len == 4 && memcmp(p->name, "data", 4) == 0) {
        return VMX_SSE_FIELD_DATA;
    }

    if (p->name_len == 5 && memcmp(p->name, "event", 5) == 0) {
        return VMX_SSE_FIELD_EVENT;
    }

    return VMX_SSE_FIELD_OTHER;
}


/* the field name is complete: at its colon or at the end of its line */
static int
vmx_sse_begin_value(vmx_sse_parser_t *p)
{
    p->field = vmx_sse_field(p);

    if (p->field == VMX_SSE_FIELD_OTHER) {
        p->state = VMX_SSE_SKIP;
        return VMX_SSE_OK;
    }

    p->state = VMX_SSE_VALUE_START;

    return (p->field == VMX_SSE_FIELD_DATA && p->has_data)
           ? vmx_sse_append(p, "\n", 1) : VMX_SSE_OK;
}


static void
vmx_sse_reverse(char *s, size_t n)
{
    char    c;
    size_t  i;

    for (i = 0; i < n / 2; i++) {
        c = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = c;
    }
}


/* [old name][data][new name] becomes [new name][data] */
static void
vmx_sse_set_event(vmx_sse_parser_t *p)
{
    size_t  d = p->data_len, n = p->value_len;

    memmove(p->buf, p->buf + p->event_len, d + n);

    if (d) {
        vmx_sse_reverse(p->buf, d);
        vmx_sse_reverse(p->buf + d, n);
        vmx_sse_reverse(p->buf, d + n);
    }

    p->event_len = n;
}


static void
vmx_sse_commit(vmx_sse_parser_t *p)
{
    if (p->field == VMX_SSE_FIELD_DATA) {
        p->data_len += p->value_len;
        p->has_data = 1;

    } else {
        vmx_sse_set_event(p);
    }

    p->value_len = 0;
}


static int
vmx_sse_dispatch(vmx_sse_parser_t *p, vmx_sse_event_pt handler, void *ctx)
{
    int  rc = VMX_SSE_OK;

    if (p->has_data) {
        rc = handler(ctx, p->buf, p->event_len, p->buf + p->event_len,
                     p->data_len);
    }

    p->event_len = 0;
    p->data_len = 0;
    p->has_data = 0;

    return rc;
}


static int
vmx_sse_end_line(vmx_sse_parser_t *p, vmx_sse_event_pt handler, void *ctx)
{
    if (p->state == VMX_SSE_BOM || p->state == VMX_SSE_LINE_START) {
        p->state = VMX_SSE_LINE_START;
        return vmx_sse_dispatch(p, handler, ctx);
    }

    if (p->state == VMX_SSE_NAME && vmx_sse_begin_value(p) != VMX_SSE_OK) {
        return VMX_SSE_TOO_LARGE;
    }

    if (p->state != VMX_SSE_SKIP) {
        vmx_sse_commit(p);
    }

    p->state = VMX_SSE_LINE_START;

    return VMX_SSE_OK;
}


/* one byte of a line that is neither a line end nor inside a value */
static int
vmx_sse_byte(vmx_sse_parser_t *p, char c)
{
    switch (p->state) {

    case VMX_SSE_BOM:
        if ((unsigned char) c == vmx_sse_bom[p->bom_len]) {
            p->state = (++p->bom_len == 3) ? VMX_SSE_LINE_START : VMX_SSE_BOM;
            return VMX_SSE_OK;
        }

        if (p->bom_len == 0) {
            p->state = VMX_SSE_LINE_START;
            return vmx_sse_byte(p, c);
        }

        /* the line starts with a broken mark: a field we do not know */
        p->state = VMX_SSE_NAME;
        p->name_len = VMX_SSE_NAME_MAX + 1;
        return vmx_sse_byte(p, c);

    case VMX_SSE_LINE_START:
        if (c == ':') {
            p->state = VMX_SSE_SKIP;
            return VMX_SSE_OK;
        }

        p->state = VMX_SSE_NAME;
        p->name_len = 0;
        /* fall through */

    case VMX_SSE_NAME:
        if (c == ':') {
            return vmx_sse_begin_value(p);
        }

        if (p->name_len < VMX_SSE_NAME_MAX) {
            p->name[p->name_len] = c;
        }

        p->name_len += (p->name_len <= VMX_SSE_NAME_MAX);
        return VMX_SSE_OK;

    default: /* VMX_SSE_VALUE_START */
        p->state = VMX_SSE_VALUE;
        return (c == ' ') ? VMX_SSE_OK : vmx_sse_append(p, &c, 1);
    }
}


static const char *
vmx_sse_line_end(const char *s, const char *end)
{
    while (s < end && *s != '\n' && *s != '\r') {
        s++;
    }

    return s;
}


int
vmx_sse_feed(vmx_sse_parser_t *p, const char *data, size_t len,
    vmx_sse_event_pt handler, void *ctx)
{
    const char  *s = data, *end = data + len, *eol;
    int          rc;

    if (p->failed) {
        return VMX_SSE_TOO_LARGE;
    }

    while (s < end) {
        if (p->skip_lf) {
            p->skip_lf = 0;

            if (*s == '\n') {
                s++;
                continue;
            }
        }

        if (p->state == VMX_SSE_VALUE || p->state == VMX_SSE_SKIP) {
            eol = vmx_sse_line_end(s, end);

            if (p->state == VMX_SSE_VALUE
                && vmx_sse_append(p, s, (size_t) (eol - s)) != VMX_SSE_OK)
            {
                return VMX_SSE_TOO_LARGE;
            }

            s = eol;

            if (s == end) {
                break;
            }

        } else if (*s != '\n' && *s != '\r') {
            if (vmx_sse_byte(p, *s++) != VMX_SSE_OK) {
                return VMX_SSE_TOO_LARGE;
            }

            continue;
        }

        p->skip_lf = (*s++ == '\r');

        rc = vmx_sse_end_line(p, handler, ctx);
        if (rc != VMX_SSE_OK) {
            return rc;
        }
    }

    return VMX_SSE_OK;
}


int
vmx_sse_finish(vmx_sse_parser_t *p, vmx_sse_event_pt handler, void *ctx)
{
    int  rc = VMX_SSE_TOO_LARGE;

    if (!p->failed) {
        rc = VMX_SSE_OK;

        if (p->state != VMX_SSE_BOM && p->state != VMX_SSE_LINE_START) {
            rc = vmx_sse_end_line(p, handler, ctx);
        }

        if (rc == VMX_SSE_OK) {
            rc = vmx_sse_dispatch(p, handler, ctx);
        }
    }

    vmx_sse_init(p, p->buf, p->cap);

    return rc;
}
