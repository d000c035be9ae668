/*
 * vmx_sigv4: see vmx_sigv4.h.  The four steps of the AWS documentation:
 * canonical request, string to sign, signing key, signature.
 */

#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "vmx_sha256.h"
#include "vmx_sigv4.h"


#define VMX_SIGV4_HEX_LEN     64
#define VMX_SIGV4_SECRET_MAX  256
#define VMX_SIGV4_ALGORITHM   "AWS4-HMAC-SHA256"

/* host, x-amz-date, x-amz-security-token, x-amz-content-sha256 */
#define VMX_SIGV4_OWN_HEADERS  4


typedef struct {
    char                amz_date[17];   /* 20150830T123600Z */
    char                payload_hash[VMX_SIGV4_HEX_LEN + 1];

    vmx_sigv4_header_t  headers[VMX_SIGV4_MAX_HEADERS + VMX_SIGV4_OWN_HEADERS];
    size_t              nheaders;
} vmx_sigv4_state_t;


typedef struct {
    size_t              off;            /* "name=value" in the scratch */
    size_t              name_len;
    size_t              len;
} vmx_sigv4_param_t;


static const char  vmx_sigv4_hex[] = "0123456789ABCDEF";
static const char  vmx_sigv4_lhex[] = "0123456789abcdef";


static int
vmx_sigv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
           || c == '~';
}


void
vmx_sigv4_uri_encode(vmx_buf_t *out, const char *s, size_t len,
    int keep_slash)
{
    char           *p;
    size_t          i;
    unsigned char   c;

    p = vmx_buf_reserve(out, len * 3);
    if (p == NULL) {
        return;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (vmx_sigv4_unreserved(c) || (c == '/' && keep_slash)) {
            *p++ = (char) c;

        } else {
            *p++ = '%';
            *p++ = vmx_sigv4_hex[c >> 4];
            *p++ = vmx_sigv4_hex[c & 0xf];
        }
    }

    out->len = (size_t) (p - out->data);
}


static void
vmx_sigv4_append_hex(char *dst, const unsigned char *md, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        dst[2 * i] = vmx_sigv4_lhex[md[i] >> 4];
        dst[2 * i + 1] = vmx_sigv4_lhex[md[i] & 0xf];
    }

    dst[2 * n] = '\0';
}


static int
vmx_sigv4_sha256_hex(const char *s, size_t len, char *hex)
{
    unsigned char  md[VMX_SHA256_LEN];

    if (vmx_sha256(s, len, md) != 0) {
        return -1;
    }

    vmx_sigv4_append_hex(hex, md, sizeof(md));

    return 0;
}


static int
vmx_sigv4_format_date(int64_t t, char *amz_date)
{
    time_t     tt = (time_t) t;
    struct tm  tm;

    if ((int64_t) tt != t || gmtime_r(&tt, &tm) == NULL
        || tm.tm_year < 0 || tm.tm_year > 8099)
    {
        return -1;
    }

    return strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm) == 16 ? 0 : -1;
}


/* the path normalized, each segment encoded; ".." above the root stays at
   the root */
static void
vmx_sigv4_canonical_uri(vmx_buf_t *out, const char *path, size_t len)
{
    const char  *seg, *end = len ? path + len : path, *slash;
    size_t       start = out->len, n;

    for (seg = path; seg < end; seg = slash + 1) {
        slash = memchr(seg, '/', (size_t) (end - seg));
        if (slash == NULL) {
            slash = end;
        }

        n = (size_t) (slash - seg);

        if (n == 0 || (n == 1 && seg[0] == '.')) {
            continue;
        }

        if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            while (out->len > start && out->data[--out->len] != '/') {
                /* void */
            }

            continue;
        }

        vmx_buf_append(out, "/", 1);
        vmx_sigv4_uri_encode(out, seg, n, 0);
    }

    if (out->len == start || (len && path[len - 1] == '/')) {
        vmx_buf_append(out, "/", 1);
    }
}


static int
vmx_sigv4_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c = (char) (c | 0x20);

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


/* a query name or value as sent, decoded and encoded again */
static void
vmx_sigv4_query_part(vmx_buf_t *out, const char *s, size_t len)
{
    size_t  i;
    int     hi, lo;
    char    c;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c == '%' && i + 2 < len
            && (hi = vmx_sigv4_hex_value(s[i + 1])) >= 0
            && (lo = vmx_sigv4_hex_value(s[i + 2])) >= 0)
        {
            c = (char) (hi << 4 | lo);
            i += 2;
        }

        vmx_sigv4_uri_encode(out, &c, 1, 0);
    }
}


static int
vmx_sigv4_bytes_cmp(const char *x, size_t xlen, const char *y, size_t ylen)
{
    int  rc;

    rc = memcmp(x, y, xlen < ylen ? xlen : ylen);

    return rc ? rc : (xlen > ylen) - (xlen < ylen);
}


/* by name, then by value */
static int
vmx_sigv4_param_cmp(const vmx_buf_t *b, const vmx_sigv4_param_t *x,
    const vmx_sigv4_param_t *y)
{
    const char  *xs = b->data + x->off, *ys = b->data + y->off;
    int          rc;

    rc = vmx_sigv4_bytes_cmp(xs, x->name_len, ys, y->name_len);

    return rc ? rc : vmx_sigv4_bytes_cmp(xs + x->name_len, x->len - x->name_len,
                                         ys + y->name_len, y->len - y->name_len);
}


/* each "name=value" encoded into scratch, then sorted into out */
static int
vmx_sigv4_canonical_query(vmx_buf_t *out, const char *q, size_t len)
{
    vmx_buf_t           scratch;
    vmx_sigv4_param_t  *params, p;
    const char         *s, *end, *amp, *eq;
    size_t              n = 1, i, j;

    if (len == 0) {
        return 0;
    }

    end = q + len;

    for (s = q; s < end; s++) {
        n += (*s == '&');
    }

    params = out->alloc(out->alloc_ctx, n * sizeof(vmx_sigv4_param_t));
    if (params == NULL) {
        return -1;
    }

    vmx_buf_init(&scratch, out->alloc, out->alloc_ctx, len * 3 + n);

    for (s = q, n = 0; s <= end; s = amp + 1) {
        amp = memchr(s, '&', (size_t) (end - s));
        if (amp == NULL) {
            amp = end;
        }

        if (amp == s) {
            continue;
        }

        eq = memchr(s, '=', (size_t) (amp - s));
        if (eq == NULL) {
            eq = amp;
        }

        p.off = scratch.len;
        vmx_sigv4_query_part(&scratch, s, (size_t) (eq - s));
        p.name_len = scratch.len - p.off;
        vmx_buf_append(&scratch, "=", 1);
        vmx_sigv4_query_part(&scratch, eq + (eq < amp),
                             (size_t) (amp - eq - (eq < amp)));
        p.len = scratch.len - p.off;

        for (j = n++; j > 0 && vmx_sigv4_param_cmp(&scratch, &params[j - 1],
                                                   &p) > 0; j--)
        {
            params[j] = params[j - 1];
        }

        params[j] = p;
    }

    if (vmx_buf_failed(&scratch)) {
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (i) {
            vmx_buf_append(out, "&", 1);
        }

        vmx_buf_append(out, scratch.data + params[i].off, params[i].len);
    }

    return 0;
}


static int
vmx_sigv4_name_cmp(const vmx_sigv4_str_t *x, const vmx_sigv4_str_t *y)
{
    size_t  i, n = x->len < y->len ? x->len : y->len;
    int     a, b;

    for (i = 0; i < n; i++) {
        a = (unsigned char) x->data[i];
        b = (unsigned char) y->data[i];
        a += (a >= 'A' && a <= 'Z') ? 'a' - 'A' : 0;
        b += (b >= 'A' && b <= 'Z') ? 'a' - 'A' : 0;

        if (a != b) {
            return a - b;
        }
    }

    return (x->len > y->len) - (x->len < y->len);
}


static void
vmx_sigv4_add_header(vmx_sigv4_state_t *st, const char *name,
    size_t name_len, const char *value, size_t value_len)
{
    vmx_sigv4_header_t  h = { { name, name_len }, { value, value_len } };
    size_t              j;

    /* stable: repeated names keep their order */
    for (j = st->nheaders++;
         j > 0 && vmx_sigv4_name_cmp(&st->headers[j - 1].name, &h.name) > 0;
         j--)
    {
        st->headers[j] = st->headers[j - 1];
    }

    st->headers[j] = h;
}


static void
vmx_sigv4_append_lower(vmx_buf_t *out, const vmx_sigv4_str_t *s)
{
    char    *p;
    size_t   i;

    p = vmx_buf_reserve(out, s->len);
    if (p == NULL) {
        return;
    }

    for (i = 0; i < s->len; i++) {
        p[i] = (s->data[i] >= 'A' && s->data[i] <= 'Z')
               ? (char) (s->data[i] + ('a' - 'A')) : s->data[i];
    }

    out->len += s->len;
}


/* trimmed, runs of spaces and tabs as one space */
static void
vmx_sigv4_append_value(vmx_buf_t *out, const vmx_sigv4_str_t *v)
{
    size_t  i;
    int     space = 0, any = 0;
    char    c;

    for (i = 0; i < v->len; i++) {
        c = v->data[i];

        if (c == ' ' || c == '\t') {
            space = any;
            continue;
        }

        if (space) {
            vmx_buf_append(out, " ", 1);
            space = 0;
        }

        vmx_buf_append(out, &c, 1);
        any = 1;
    }
}


/* "name:value\n" lines, then an empty line and "name;name" */
static void
vmx_sigv4_canonical_headers(vmx_buf_t *out, const vmx_sigv4_state_t *st)
{
    const vmx_sigv4_header_t  *h = st->headers;
    size_t                     i;

    for (i = 0; i < st->nheaders; i++) {
        if (i && vmx_sigv4_name_cmp(&h[i - 1].name, &h[i].name) == 0) {
            vmx_buf_append(out, ",", 1);

        } else {
            vmx_buf_append(out, "\n", i != 0);
            vmx_sigv4_append_lower(out, &h[i].name);
            vmx_buf_append(out, ":", 1);
        }

        vmx_sigv4_append_value(out, &h[i].value);
    }
}


static void
vmx_sigv4_signed_headers(vmx_buf_t *out, const vmx_sigv4_state_t *st)
{
    const vmx_sigv4_header_t  *h = st->headers;
    size_t                     i;

    for (i = 0; i < st->nheaders; i++) {
        if (i && vmx_sigv4_name_cmp(&h[i - 1].name, &h[i].name) == 0) {
            continue;
        }

        vmx_buf_append(out, ";", i != 0);
        vmx_sigv4_append_lower(out, &h[i].name);
    }
}


/* what goes into a header line as it is: no line break, no NUL */
static int
vmx_sigv4_header_safe(const vmx_sigv4_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '\r' || s->data[i] == '\n' || s->data[i] == '\0') {
            return 0;
        }
    }

    return 1;
}


static int
vmx_sigv4_prepare(const vmx_sigv4_request_t *r, vmx_sigv4_state_t *st)
{
    size_t  i;

    if (r->nheaders > VMX_SIGV4_MAX_HEADERS
        || !vmx_sigv4_header_safe(&r->session_token)
        || !vmx_sigv4_header_safe(&r->access_key_id)
        || vmx_sigv4_format_date(r->time, st->amz_date) != 0
        || vmx_sigv4_sha256_hex(r->payload.data, r->payload.len,
                                st->payload_hash) != 0)
    {
        return -1;
    }

    st->nheaders = 0;

    vmx_sigv4_add_header(st, "host", 4, r->host.data, r->host.len);
    vmx_sigv4_add_header(st, "x-amz-date", 10, st->amz_date, 16);

    if (r->session_token.len) {
        vmx_sigv4_add_header(st, "x-amz-security-token", 20,
                             r->session_token.data, r->session_token.len);
    }

    if (r->content_sha256) {
        vmx_sigv4_add_header(st, "x-amz-content-sha256", 20,
                             st->payload_hash, VMX_SIGV4_HEX_LEN);
    }

    for (i = 0; i < r->nheaders; i++) {
        vmx_sigv4_add_header(st, r->headers[i].name.data,
                             r->headers[i].name.len, r->headers[i].value.data,
                             r->headers[i].value.len);
    }

    return 0;
}


static int
vmx_sigv4_canonical(const vmx_sigv4_request_t *r, const vmx_sigv4_state_t *st,
    vmx_buf_t *out)
{
    vmx_buf_append(out, r->method.data, r->method.len);
    vmx_buf_append(out, "\n", 1);
    vmx_sigv4_canonical_uri(out, r->path.data, r->path.len);
    vmx_buf_append(out, "\n", 1);

    if (vmx_sigv4_canonical_query(out, r->query.data, r->query.len) != 0) {
        return -1;
    }

    vmx_buf_append(out, "\n", 1);
    vmx_sigv4_canonical_headers(out, st);
    vmx_buf_append(out, "\n\n", 2);
    vmx_sigv4_signed_headers(out, st);
    vmx_buf_append(out, "\n", 1);
    vmx_buf_append(out, st->payload_hash, VMX_SIGV4_HEX_LEN);

    return vmx_buf_failed(out) ? -1 : 0;
}


int
vmx_sigv4_canonical_request(const vmx_sigv4_request_t *r, vmx_buf_t *out)
{
    vmx_sigv4_state_t  st;

    if (vmx_sigv4_prepare(r, &st) != 0) {
        return -1;
    }

    return vmx_sigv4_canonical(r, &st, out);
}


/* "20150830/us-east-1/service/aws4_request" */
static void
vmx_sigv4_scope(vmx_buf_t *out, const vmx_sigv4_request_t *r,
    const vmx_sigv4_state_t *st)
{
    vmx_buf_append(out, st->amz_date, 8);
    vmx_buf_append(out, "/", 1);
    vmx_buf_append(out, r->region.data, r->region.len);
    vmx_buf_append(out, "/", 1);
    vmx_buf_append(out, r->service.data, r->service.len);
    vmx_buf_append_cstr(out, "/aws4_request");
}


/* the day's signing key: the HMAC chain from "AWS4" + secret over the date,
   the region and the service */
static int
vmx_sigv4_signing_key(const vmx_sigv4_request_t *r, const char *date,
    unsigned char *md)
{
    unsigned char  secret[4 + VMX_SIGV4_SECRET_MAX];
    int            rc;

    if (r->secret_key.len > VMX_SIGV4_SECRET_MAX) {
        return -1;
    }

    memcpy(secret, "AWS4", 4);
    memcpy(secret + 4, r->secret_key.data, r->secret_key.len);

    rc = vmx_hmac_sha256(secret, 4 + r->secret_key.len, date, 8, md)
         || vmx_hmac_sha256(md, VMX_SHA256_LEN, r->region.data,
                           r->region.len, md)
         || vmx_hmac_sha256(md, VMX_SHA256_LEN, r->service.data,
                           r->service.len, md)
         || vmx_hmac_sha256(md, VMX_SHA256_LEN, "aws4_request", 12, md);

    OPENSSL_cleanse(secret, sizeof(secret));

    return rc ? -1 : 0;
}


/* the signing key's HMAC of the string to sign; the key derived once a day
   when the request keeps it */
static int
vmx_sigv4_signature(const vmx_sigv4_request_t *r, const vmx_sigv4_state_t *st,
    const vmx_buf_t *sts, char *hex)
{
    unsigned char     key[VMX_SHA256_LEN], md[VMX_SHA256_LEN];
    vmx_sigv4_key_t  *kept;
    int               rc;

    kept = r->key;

    if (kept && kept->valid && memcmp(kept->date, st->amz_date, 8) == 0) {
        memcpy(key, kept->key, sizeof(key));

    } else if (vmx_sigv4_signing_key(r, st->amz_date, key) != 0) {
        OPENSSL_cleanse(key, sizeof(key));
        return -1;

    } else if (kept) {
        memcpy(kept->date, st->amz_date, 8);
        memcpy(kept->key, key, sizeof(key));
        kept->valid = 1;
    }

    rc = vmx_hmac_sha256(key, sizeof(key), sts->data, sts->len, md);

    if (rc == 0) {
        vmx_sigv4_append_hex(hex, md, sizeof(md));
    }

    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(md, sizeof(md));

    return rc ? -1 : 0;
}


static void
vmx_sigv4_header_line(vmx_buf_t *out, const char *name, const char *value,
    size_t len)
{
    vmx_buf_append_cstr(out, name);
    vmx_buf_append(out, ": ", 2);
    vmx_buf_append(out, value, len);
    vmx_buf_append(out, "\r\n", 2);
}


int
vmx_sigv4_sign(const vmx_sigv4_request_t *r, vmx_buf_t *out)
{
    vmx_sigv4_state_t  st;
    vmx_buf_t          creq, sts;
    char               hash[VMX_SIGV4_HEX_LEN + 1], sig[VMX_SIGV4_HEX_LEN + 1];

    if (vmx_sigv4_prepare(r, &st) != 0) {
        return -1;
    }

    vmx_buf_init(&creq, out->alloc, out->alloc_ctx, 512);
    vmx_buf_init(&sts, out->alloc, out->alloc_ctx, 256);

    if (vmx_sigv4_canonical(r, &st, &creq) != 0
        || vmx_sigv4_sha256_hex(creq.data, creq.len, hash) != 0)
    {
        return -1;
    }

    vmx_buf_append_cstr(&sts, VMX_SIGV4_ALGORITHM "\n");
    vmx_buf_append(&sts, st.amz_date, 16);
    vmx_buf_append(&sts, "\n", 1);
    vmx_sigv4_scope(&sts, r, &st);
    vmx_buf_append(&sts, "\n", 1);
    vmx_buf_append(&sts, hash, VMX_SIGV4_HEX_LEN);

    if (vmx_buf_failed(&sts) || vmx_sigv4_signature(r, &st, &sts, sig) != 0) {
        return -1;
    }

    vmx_sigv4_header_line(out, "X-Amz-Date", st.amz_date, 16);

    if (r->session_token.len) {
        vmx_sigv4_header_line(out, "X-Amz-Security-Token",
                              r->session_token.data, r->session_token.len);
    }

    if (r->content_sha256) {
        vmx_sigv4_header_line(out, "X-Amz-Content-Sha256", st.payload_hash,
                              VMX_SIGV4_HEX_LEN);
    }

    vmx_buf_append_cstr(out, "Authorization: " VMX_SIGV4_ALGORITHM
                        " Credential=");
    vmx_buf_append(out, r->access_key_id.data, r->access_key_id.len);
    vmx_buf_append(out, "/", 1);
    vmx_sigv4_scope(out, r, &st);
    vmx_buf_append_cstr(out, ", SignedHeaders=");
    vmx_sigv4_signed_headers(out, &st);
    vmx_buf_append_cstr(out, ", Signature=");
    vmx_buf_append(out, sig, VMX_SIGV4_HEX_LEN);
    vmx_buf_append(out, "\r\n", 2);

    return vmx_buf_failed(out) ? -1 : 0;
}
