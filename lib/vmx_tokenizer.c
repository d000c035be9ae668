/*
 * vmx_tokenizer: o200k_base token counting, see vmx_tokenizer.h.
 */

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "vmx_tokenizer.h"
#include "vmx_unicode.h"       /* generated at build time */


#define RANK_NONE    UINT32_MAX

/* pieces up to this many bytes merge in plain arrays on the stack */
#define SMALL_PIECE  64


/*
 * A token in the open-addressing table: one 16-byte slot holds a lookup of
 * a token of up to 8 bytes, which most pieces of text are.
 */
typedef struct {
    uint64_t   head;           /* the first 8 bytes, zero padded */
    uint32_t   rank;
    uint32_t   off_len;        /* offset in blob << 8 | length; 0: empty */
} slot_t;

/* the token's length fits the low byte of off_len, the blob the rest */
#define TOKEN_MAX  255
#define BLOB_MAX   (UINT32_MAX >> 8)


struct vmx_tokenizer_s {
    void           *malloced;  /* the tables when they came from malloc */
    const uint8_t  *blob;      /* the decoded tokens, end to end */
    slot_t         *slots;
    uint32_t        mask;
    uint32_t        max_len;
    uint32_t       *pair_rank; /* rank of each 2-byte token, by b0 << 8 | b1 */
    uint32_t        byte_rank[256];
};

/* the buffers of the merge of one long piece of up to cap bytes */
typedef struct {
    uint32_t  *next;
    uint32_t  *prev;
    uint32_t  *rank;           /* of the pair that starts at a part */
    uint32_t  *token;          /* of the part itself */
    uint64_t  *heap;           /* rank << 32 | start of pair candidates */
    size_t     cap;
} merge_t;

struct vmx_tokenizer_scratch_s {
    merge_t   resident;
    char     *line;            /* the lines of the tools recipe */
    size_t    line_cap;
};

typedef struct {
    uint32_t  *ids;
    size_t     max;
    int64_t    count;
} out_t;


static void
emit(out_t *out, uint32_t rank)
{
    if ((size_t) out->count < out->max) {
        out->ids[out->count] = rank;
    }

    out->count++;
}


/* --- the ranks table ------------------------------------------------------ */

/* the first bytes of p, up to 8, as one word zero padded */
static uint64_t
head_of(const uint8_t *p, size_t n)
{
    uint64_t  w = 0;

    memcpy(&w, p, n < 8 ? n : 8);

    return w;
}


static uint32_t
hash_bytes(uint64_t head, const uint8_t *p, size_t n)
{
    uint64_t  h = (head ^ n) * 0x9e3779b97f4a7c15ULL;
    size_t    i;

    for (i = 8; i < n; i += 8) {
        h = (h ^ head_of(p + i, n - i)) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }

    return (uint32_t) (h >> 32);
}


/* the slot of p: the one holding it, or the empty one where it would go */
static slot_t *
find_slot(const vmx_tokenizer_t *tok, const uint8_t *p, size_t n)
{
    slot_t    *slot;
    uint64_t   head = head_of(p, n);
    uint32_t   i = hash_bytes(head, p, n) & tok->mask;

    for ( ;; ) {
        slot = &tok->slots[i];

        if (slot->off_len == 0) {
            return slot;
        }

        if (slot->head == head && (slot->off_len & 0xff) == n
            && (n <= 8
                || memcmp(tok->blob + (slot->off_len >> 8) + 8, p + 8, n - 8)
                   == 0))
        {
            return slot;
        }

        i = (i + 1) & tok->mask;
    }
}


static uint32_t
rank_of(const vmx_tokenizer_t *tok, const uint8_t *p, size_t n)
{
    const slot_t  *slot;

    if (n == 2) {
        return tok->pair_rank[p[0] << 8 | p[1]];
    }

    if (n > tok->max_len) {
        return RANK_NONE;
    }

    slot = find_slot(tok, p, n);

    return slot->off_len ? slot->rank : RANK_NONE;
}


static int
b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}


/* standard base64 with padding; the length decoded, or -1 */
static long
b64_decode(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t  i, pad, len = 0;
    int     v[4], k;

    if (n == 0 || n % 4) {
        return -1;
    }

    pad = (src[n - 1] == '=') + (src[n - 2] == '=');

    for (i = 0; i < n; i += 4) {
        for (k = 0; k < 4; k++) {
            v[k] = (i + k >= n - pad) ? 0 : b64_value(src[i + k]);
            if (v[k] < 0) {
                return -1;
            }
        }

        dst[len++] = (uint8_t) (v[0] << 2 | v[1] >> 4);
        dst[len++] = (uint8_t) (v[1] << 4 | v[2] >> 2);
        dst[len++] = (uint8_t) (v[2] << 6 | v[3]);
    }

    return (long) (len - pad);
}


typedef struct {
    const uint8_t  *p;
    const uint8_t  *end;
    size_t          number;
} lines_t;


/* the next non-empty line without its end, or 0 at the end of the file */
static size_t
next_line(lines_t *l, const uint8_t **line)
{
    const uint8_t  *nl;
    size_t          n;

    while (l->p < l->end) {
        nl = memchr(l->p, '\n', l->end - l->p);
        n = (nl ? nl : l->end) - l->p;
        *line = l->p;
        l->p += n + (nl != NULL);
        l->number++;

        if (n && (*line)[n - 1] == '\r') {
            n--;
        }

        if (n) {
            return n;
        }
    }

    return 0;
}


static int
fail(char *err, size_t errlen, size_t line, const char *what)
{
    if (line) {
        snprintf(err, errlen, "ranks line %zu: %s", line, what);
    } else {
        snprintf(err, errlen, "ranks: %s", what);
    }

    return -1;
}


/* "base64 rank": decodes the token at the end of the blob and files it */
static int
add_line(vmx_tokenizer_t *tok, size_t *blob_len, const uint8_t *line,
    size_t n, size_t number, char *err, size_t errlen)
{
    const uint8_t  *sp = memchr(line, ' ', n), *d;
    uint8_t        *token = (uint8_t *) tok->blob + *blob_len;
    uint64_t        rank = 0;
    slot_t         *slot;
    long            len;

    if (sp == NULL || sp + 1 == line + n) {
        return fail(err, errlen, number, "expected \"base64 rank\"");
    }

    for (d = sp + 1; d < line + n; d++) {
        if (*d < '0' || *d > '9' || (rank = rank * 10 + (*d - '0')) >= RANK_NONE) {
            return fail(err, errlen, number, "bad rank");
        }
    }

    len = b64_decode(token, line, sp - line);
    if (len <= 0) {
        return fail(err, errlen, number, "bad base64");
    }

    if (len > TOKEN_MAX) {
        return fail(err, errlen, number, "token too long");
    }

    slot = find_slot(tok, token, len);
    if (slot->off_len) {
        return fail(err, errlen, number, "duplicate token");
    }

    slot->head = head_of(token, len);
    slot->rank = (uint32_t) rank;
    slot->off_len = (uint32_t) *blob_len << 8 | (uint32_t) len;
    *blob_len += len;

    if ((uint32_t) len > tok->max_len) {
        tok->max_len = (uint32_t) len;
    }

    if (len == 1) {
        tok->byte_rank[token[0]] = slot->rank;

    } else if (len == 2) {
        tok->pair_rank[token[0] << 8 | token[1]] = slot->rank;
    }

    return 0;
}


static size_t
align8(size_t n)
{
    return (n + 7) & ~(size_t) 7;
}


/* lays the tables out in one block of the size counted by the first pass */
static vmx_tokenizer_t *
layout(void *mem, size_t slots)
{
    vmx_tokenizer_t  *tok = mem;
    char             *p = (char *) mem + align8(sizeof(vmx_tokenizer_t));

    memset(tok, 0, sizeof(vmx_tokenizer_t));
    memset(tok->byte_rank, 0xff, sizeof(tok->byte_rank));

    tok->slots = (slot_t *) p;
    memset(p, 0, slots * sizeof(slot_t));
    p += align8(slots * sizeof(slot_t));

    tok->pair_rank = (uint32_t *) p;
    memset(p, 0xff, 65536 * sizeof(uint32_t));
    p += 65536 * sizeof(uint32_t);

    tok->blob = (const uint8_t *) p;
    tok->mask = (uint32_t) (slots - 1);

    return tok;
}


static int
fill(vmx_tokenizer_t *tok, const char *ranks, size_t len, char *err,
    size_t errlen)
{
    lines_t         l = { (const uint8_t *) ranks, (const uint8_t *) ranks + len, 0 };
    const uint8_t  *line;
    size_t          n, blob_len = 0;
    int             b;

    while ((n = next_line(&l, &line))) {
        if (add_line(tok, &blob_len, line, n, l.number, err, errlen) != 0) {
            return -1;
        }
    }

    /* every piece can be spelled in single bytes: the merge always ends */
    for (b = 0; b < 256; b++) {
        if (tok->byte_rank[b] == RANK_NONE) {
            return fail(err, errlen, 0, "a single byte has no rank");
        }
    }

    return 0;
}


vmx_tokenizer_t *
vmx_tokenizer_create(const char *ranks, size_t len, vmx_json_alloc_pt alloc,
    void *alloc_ctx, char *err, size_t errlen)
{
    lines_t           l = { (const uint8_t *) ranks, (const uint8_t *) ranks + len, 0 };
    const uint8_t    *line;
    size_t            n, lines = 0, text = 0, slots = 1024, size;
    void             *mem;
    vmx_tokenizer_t  *tok;

    while ((n = next_line(&l, &line))) {
        lines++;
        text += n;
    }

    if (lines == 0 || lines > UINT32_MAX / 4 || text > BLOB_MAX) {
        fail(err, errlen, 0, lines ? "too large" : "no ranks");
        return NULL;
    }

    while (slots < 2 * lines) {
        slots <<= 1;
    }

    /* the base64 text bounds the decoded tokens */
    size = align8(sizeof(vmx_tokenizer_t)) + align8(slots * sizeof(slot_t))
           + 65536 * sizeof(uint32_t) + text;

    mem = alloc ? alloc(alloc_ctx, size) : malloc(size);
    if (mem == NULL) {
        fail(err, errlen, 0, "out of memory");
        return NULL;
    }

    tok = layout(mem, slots);
    tok->malloced = alloc ? NULL : mem;

    if (fill(tok, ranks, len, err, errlen) != 0) {
        vmx_tokenizer_free(tok);
        return NULL;
    }

    return tok;
}


void
vmx_tokenizer_free(vmx_tokenizer_t *tok)
{
    if (tok != NULL) {
        free(tok->malloced);
    }
}


/* --- scratch ---------------------------------------------------------------- */

static int
merge_alloc(merge_t *m, size_t cap)
{
    /* at most n - 1 candidates at first and two more for each merge */
    size_t  heap = 3 * cap * sizeof(uint64_t), arr = (cap + 1) * sizeof(uint32_t);
    char   *p;

    if (cap > UINT32_MAX - 1 || (p = malloc(heap + 4 * arr)) == NULL) {
        return -1;
    }

    m->heap = (uint64_t *) p;
    m->next = (uint32_t *) (p + heap);
    m->prev = m->next + cap + 1;
    m->rank = m->prev + cap + 1;
    m->token = m->rank + cap + 1;
    m->cap = cap;

    return 0;
}


vmx_tokenizer_scratch_t *
vmx_tokenizer_scratch_create(const vmx_tokenizer_t *tok)
{
    vmx_tokenizer_scratch_t  *s = calloc(1, sizeof(vmx_tokenizer_scratch_t));

    if (s == NULL || merge_alloc(&s->resident, VMX_TOKENIZER_RESIDENT) != 0) {
        free(s);
        return NULL;
    }

    return s;
}


void
vmx_tokenizer_scratch_free(vmx_tokenizer_scratch_t *s)
{
    if (s == NULL) {
        return;
    }

    free(s->resident.heap);
    free(s->line);
    free(s);
}


/* --- byte-pair merges ------------------------------------------------------- */

/*
 * tiktoken's _byte_pair_merge as it is: the parts in an array, a linear scan
 * for the lowest rank (the leftmost among equals), the merged part's slot
 * removed.  Quadratic, but the fastest for the short pieces of most text.
 */
static void
merge_small(const vmx_tokenizer_t *tok, const uint8_t *p, size_t n, out_t *out)
{
    uint32_t  start[SMALL_PIECE + 1], rank[SMALL_PIECE + 1];
    uint32_t  token[SMALL_PIECE + 1];
    size_t    parts = n + 1, i, min;

    for (i = 0; i < n; i++) {
        start[i] = (uint32_t) i;
        token[i] = tok->byte_rank[p[i]];
        rank[i] = i + 1 < n ? tok->pair_rank[p[i] << 8 | p[i + 1]] : RANK_NONE;
    }

    start[n] = (uint32_t) n;
    rank[n] = RANK_NONE;
    token[n] = RANK_NONE;

    for ( ;; ) {
        for (min = 0, i = 1; i + 1 < parts; i++) {
            if (rank[i] < rank[min]) {
                min = i;
            }
        }

        if (rank[min] == RANK_NONE) {
            break;
        }

        token[min] = rank[min];
        parts--;
        memmove(&start[min + 1], &start[min + 2], (parts - min - 1) * sizeof(uint32_t));
        memmove(&rank[min + 1], &rank[min + 2], (parts - min - 1) * sizeof(uint32_t));
        memmove(&token[min + 1], &token[min + 2], (parts - min - 1) * sizeof(uint32_t));

        rank[min] = min + 2 < parts
                    ? rank_of(tok, p + start[min], start[min + 2] - start[min])
                    : RANK_NONE;

        if (min > 0) {
            rank[min - 1] = rank_of(tok, p + start[min - 1],
                                    start[min + 1] - start[min - 1]);
        }
    }

    for (i = 0; i + 1 < parts; i++) {
        emit(out, token[i]);
    }
}


static void
heap_push(uint64_t *heap, size_t *n, uint64_t v)
{
    size_t  i = (*n)++, parent;

    while (i) {
        parent = (i - 1) / 2;
        if (heap[parent] <= v) {
            break;
        }

        heap[i] = heap[parent];
        i = parent;
    }

    heap[i] = v;
}


static uint64_t
heap_pop(uint64_t *heap, size_t *n)
{
    uint64_t  top = heap[0], last = heap[--*n];
    size_t    i = 0, c;

    for ( ;; ) {
        c = 2 * i + 1;
        if (c >= *n) {
            break;
        }

        if (c + 1 < *n && heap[c + 1] < heap[c]) {
            c++;
        }

        if (heap[c] >= last) {
            break;
        }

        heap[i] = heap[c];
        i = c;
    }

    heap[i] = last;

    return top;
}


/* the rank of the pair of parts that starts at byte i */
static uint32_t
pair_at(const vmx_tokenizer_t *tok, const merge_t *m, const uint8_t *p,
    size_t n, uint32_t i)
{
    uint32_t  j = m->next[i];

    return j < n ? rank_of(tok, p + i, m->next[j] - i) : RANK_NONE;
}


static void
candidate(const vmx_tokenizer_t *tok, merge_t *m, const uint8_t *p, size_t n,
    uint32_t i, size_t *heap_n)
{
    m->rank[i] = pair_at(tok, m, p, n, i);

    if (m->rank[i] != RANK_NONE) {
        heap_push(m->heap, heap_n, (uint64_t) m->rank[i] << 32 | i);
    }
}


/*
 * The same merges in O(n log n) for long pieces: parts in a linked list by
 * their first byte, pair candidates in a heap ordered by rank then position,
 * so the lowest, leftmost pair merges first as in the array version.  A
 * candidate is stale once its part is gone or ranks differently.
 */
static void
merge_large(const vmx_tokenizer_t *tok, merge_t *m, const uint8_t *p, size_t n,
    out_t *out)
{
    size_t    heap_n = 0;
    uint64_t  key;
    uint32_t  i, j, r;

    for (i = 0; i < n; i++) {
        m->next[i] = i + 1;
        m->prev[i] = i ? i - 1 : RANK_NONE;
        m->token[i] = tok->byte_rank[p[i]];
    }

    for (i = 0; i < n; i++) {
        candidate(tok, m, p, n, i, &heap_n);
    }

    while (heap_n) {
        key = heap_pop(m->heap, &heap_n);
        r = (uint32_t) (key >> 32);
        i = (uint32_t) key;

        if (m->rank[i] != r) {
            continue;
        }

        j = m->next[i];
        m->token[i] = r;
        m->next[i] = m->next[j];
        m->rank[j] = RANK_NONE;

        if (m->next[i] < n) {
            m->prev[m->next[i]] = i;
        }

        candidate(tok, m, p, n, i, &heap_n);

        if (m->prev[i] != RANK_NONE) {
            candidate(tok, m, p, n, m->prev[i], &heap_n);
        }
    }

    for (i = 0; i < n; i = m->next[i]) {
        emit(out, m->token[i]);
    }
}


static int
encode_piece(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s,
    const uint8_t *p, size_t n, out_t *out)
{
    uint32_t  r = n == 1 ? tok->byte_rank[p[0]] : rank_of(tok, p, n);
    merge_t   once;

    /* a piece that is a token is that token, merges or not (as tiktoken) */
    if (r != RANK_NONE) {
        emit(out, r);
        return 0;
    }

    if (n <= SMALL_PIECE) {
        merge_small(tok, p, n, out);
        return 0;
    }

    if (n <= s->resident.cap) {
        merge_large(tok, &s->resident, p, n, out);
        return 0;
    }

    if (merge_alloc(&once, n) != 0) {
        return -1;
    }

    merge_large(tok, &once, p, n, out);
    free(once.heap);

    return 0;
}


/* --- pre-tokenization ------------------------------------------------------- */

/*
 * The length of the valid UTF-8 sequence at p, or 0 with *bad set to the
 * length of its maximal invalid subpart (the bytes that one U+FFFD replaces
 * in the WHATWG decoder).
 */
static size_t
utf8_sequence(const uint8_t *p, size_t n, size_t *bad)
{
    uint8_t  c = p[0], lo = 0x80, hi = 0xbf;
    size_t   need, i;

    if (c < 0x80) {
        return 1;
    }

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;

    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        lo = c == 0xe0 ? 0xa0 : lo;
        hi = c == 0xed ? 0x9f : hi;

    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        lo = c == 0xf0 ? 0x90 : lo;
        hi = c == 0xf4 ? 0x8f : hi;

    } else {
        *bad = 1;
        return 0;
    }

    for (i = 1; i <= need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            *bad = i;
            return 0;
        }

        lo = 0x80;
        hi = 0xbf;
    }

    return need + 1;
}


static int
utf8_valid(const uint8_t *p, size_t n)
{
    size_t    i = 0, k, bad;
    uint64_t  w;

    while (i < n) {
        if (i + 8 <= n) {
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }

        k = utf8_sequence(p + i, n - i, &bad);
        if (k == 0) {
            return 0;
        }

        i += k;
    }

    return 1;
}


/* p with each maximal invalid subpart replaced by U+FFFD; dst has 3n bytes */
static size_t
utf8_lossy(uint8_t *dst, const uint8_t *p, size_t n)
{
    size_t  i = 0, k, bad, len = 0;

    while (i < n) {
        k = utf8_sequence(p + i, n - i, &bad);

        if (k) {
            memcpy(dst + len, p + i, k);
            len += k;
            i += k;

        } else {
            memcpy(dst + len, "\xef\xbf\xbd", 3);
            len += 3;
            i += bad;
        }
    }

    return len;
}


/*
 * The pieces of tiktoken's o200k_base pattern, by hand:
 *
 *   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+CONTRACTION?
 *   |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*CONTRACTION?
 *   |\p{N}{1,3}
 *   | ?[^\s\p{L}\p{N}]+[\r\n/]*
 *   |\s*[\r\n]+
 *   |\s+(?!\S)
 *   |\s+
 *
 * with CONTRACTION (?i:'s|'t|'re|'ve|'m|'ll|'d), each alternative taken as
 * the backtracking matcher of tiktoken's regex takes it: the first that
 * matches, its quantifiers greedy and giving back what the rest needs.  The
 * classes are Unicode's of tiktoken's engine, generated from the pinned
 * Unicode data.  Every character starts a match: the text splits in one
 * pass, whatever its runs.  The text is valid UTF-8.
 */

/* the classes of the character at p, its length in *len */
static unsigned
char_class(const uint8_t *p, size_t *len)
{
    uint32_t  cp;

    if (p[0] < 0x80) {
        /* U+0000 to U+00FF are the first block generated */
        *len = 1;
        return vmx_unicode_class[0][p[0]];
    }

    if (p[0] < 0xe0) {
        *len = 2;
        cp = (p[0] & 0x1f) << 6 | (p[1] & 0x3f);

    } else if (p[0] < 0xf0) {
        *len = 3;
        cp = (p[0] & 0x0f) << 12 | (p[1] & 0x3f) << 6 | (p[2] & 0x3f);

    } else {
        *len = 4;
        cp = (uint32_t) (p[0] & 0x07) << 18 | (p[1] & 0x3f) << 12
             | (p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    }

    return vmx_unicode_class[vmx_unicode_block[cp >> 8]][cp & 0xff];
}


/* past the characters from p whose classes masked by mask are want */
static const uint8_t *
run(const uint8_t *p, const uint8_t *end, unsigned mask, unsigned want)
{
    size_t  len;

    while (p < end && (char_class(p, &len) & mask) == want) {
        p += len;
    }

    return p;
}


/*
 * Capitals then small letters from p, the capitals giving back characters
 * (marks, Lm, Lo are both) until a small letter follows; NULL: none.
 */
static const uint8_t *
word_lower(const uint8_t *p, const uint8_t *end)
{
    const uint8_t  *last = NULL;
    unsigned        c;
    size_t          len;

    while (p < end) {
        c = char_class(p, &len);
        if (!(c & VMX_UNICODE_UPPER)) {
            break;
        }

        p += len;

        if (c & VMX_UNICODE_LOWER) {
            last = p;
        }
    }

    if (p < end && (char_class(p, &len) & VMX_UNICODE_LOWER)) {
        return run(p, end, VMX_UNICODE_LOWER, VMX_UNICODE_LOWER);
    }

    return last;
}


/* at least one capital, then any small letters; NULL: none */
static const uint8_t *
word_upper(const uint8_t *p, const uint8_t *end)
{
    const uint8_t  *q = run(p, end, VMX_UNICODE_UPPER, VMX_UNICODE_UPPER);

    return (q == p) ? NULL : run(q, end, VMX_UNICODE_LOWER, VMX_UNICODE_LOWER);
}


/* the ASCII letter at p in small case (U+017F, long s, folds to s), or 0 */
static int
folded(const uint8_t *p, const uint8_t *end, size_t *len)
{
    *len = 1;

    if (p >= end) {
        return 0;
    }

    if (*p >= 'A' && *p <= 'Z') {
        return *p + ('a' - 'A');
    }

    if (p + 1 < end && p[0] == 0xc5 && p[1] == 0xbf) {
        *len = 2;
        return 's';
    }

    return *p;
}


/* past an optional 's, 't, 're, 've, 'm, 'll or 'd at p, in any case */
static const uint8_t *
contraction(const uint8_t *p, const uint8_t *end)
{
    int     c1, c2;
    size_t  n1, n2;

    if (p >= end || *p != '\'') {
        return p;
    }

    c1 = folded(p + 1, end, &n1);

    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        return p + 1 + n1;
    }

    c2 = folded(p + 1 + n1, end, &n2);

    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e')
        || (c1 == 'l' && c2 == 'l'))
    {
        return p + 1 + n1 + n2;
    }

    return p;
}


/* the end of the piece that starts at p < end */
static const uint8_t *
piece_end(const uint8_t *p, const uint8_t *end)
{
    const uint8_t  *q, *e, *prev, *newline;
    unsigned        c, lead;
    size_t          len, n;

    c = char_class(p, &len);
    lead = !(c & (VMX_UNICODE_LETTER | VMX_UNICODE_NUMBER
                  | VMX_UNICODE_NEWLINE));

    if ((lead && (e = word_lower(p + len, end)))
        || (e = word_lower(p, end))
        || (lead && (e = word_upper(p + len, end)))
        || (e = word_upper(p, end)))
    {
        return contraction(e, end);
    }

    if (c & VMX_UNICODE_NUMBER) {
        for (q = p + len, n = 1; n < 3 && q < end; n++) {
            if (!(char_class(q, &len) & VMX_UNICODE_NUMBER)) {
                break;
            }

            q += len;
        }

        return q;
    }

    if (!(c & VMX_UNICODE_SPACE)
        || (*p == ' ' && p + 1 < end
            && !(char_class(p + 1, &n) & (VMX_UNICODE_SPACE | VMX_UNICODE_LETTER
                                          | VMX_UNICODE_NUMBER))))
    {
        /* punctuation, symbols, marks: " ?[^\s\p{L}\p{N}]+[\r\n/]*" (the
           letters, numbers and a space before either went above) */
        q = run(p + (*p == ' '), end,
                VMX_UNICODE_SPACE | VMX_UNICODE_LETTER | VMX_UNICODE_NUMBER, 0);

        while (q < end && (*q == '\r' || *q == '\n' || *q == '/')) {
            q++;
        }

        return q;
    }

    /* spaces: to their last newline; else all at the end of the text; else
       all but the last, which leads what follows; else the one */

    newline = NULL;
    prev = p;

    for (q = p; q < end; q += len) {
        c = char_class(q, &len);
        if (!(c & VMX_UNICODE_SPACE)) {
            break;
        }

        prev = q;

        if (c & VMX_UNICODE_NEWLINE) {
            newline = q + len;
        }
    }

    if (newline) {
        return newline;
    }

    return (q == end || prev == p) ? q : prev;
}


static int64_t
split(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s,
    const uint8_t *p, size_t len, out_t *out)
{
    const uint8_t  *end = p + len, *e;

    for ( /* void */ ; p < end; p = e) {
        e = piece_end(p, end);

        if (encode_piece(tok, s, p, e - p, out) != 0) {
            return -1;
        }
    }

    return out->count;
}


static int64_t
tokenize(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s,
    const char *text, size_t len, out_t *out)
{
    const uint8_t  *p = (const uint8_t *) text;
    uint8_t        *copy;
    int64_t         rc;

    if (utf8_valid(p, len)) {
        return split(tok, s, p, len, out);
    }

    if (len > SIZE_MAX / 3 || (copy = malloc(3 * len)) == NULL) {
        return -1;
    }

    rc = split(tok, s, copy, utf8_lossy(copy, p, len), out);
    free(copy);

    return rc;
}


int64_t
vmx_tokenizer_count(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s,
    const char *text, size_t len)
{
    out_t  out = { NULL, 0, 0 };

    return tokenize(tok, s, text, len, &out);
}


int64_t
vmx_tokenizer_encode(const vmx_tokenizer_t *tok, vmx_tokenizer_scratch_t *s,
    const char *text, size_t len, uint32_t *ids, size_t max_ids)
{
    out_t  out = { ids, max_ids, 0 };

    return tokenize(tok, s, text, len, &out);
}


/* --- the chat estimate ------------------------------------------------------ */

#define TOKENS_PER_MESSAGE  3
#define TOKENS_PER_NAME     1
#define TOKENS_REPLY        3
#define TOKENS_IMAGE_LOW    85
#define TOKENS_IMAGE        765

/* the cookbook's constants of num_tokens_for_tools for gpt-4o */
#define TOKENS_FUNC_INIT    7
#define TOKENS_PROP_INIT    3
#define TOKENS_PROP_KEY     3
#define TOKENS_ENUM_INIT    (-3)
#define TOKENS_ENUM_ITEM    3
#define TOKENS_FUNC_END     12


typedef struct {
    const vmx_tokenizer_t    *tok;
    vmx_tokenizer_scratch_t  *s;
    int64_t                   total;
    size_t                    line_len;
    size_t                    line_fields;
    int                       failed;
} estimate_t;


static void
add_text(estimate_t *e, const char *p, size_t n)
{
    int64_t  c = vmx_tokenizer_count(e->tok, e->s, p, n);

    /* out of memory: at most 3 tokens a byte (an invalid byte is U+FFFD) */
    e->total += (c < 0) ? 3 * (int64_t) n : c;
}


static int
is_str(const char *p, size_t n, const char *lit)
{
    return p != NULL && n == strlen(lit) && memcmp(p, lit, n) == 0;
}


/* every string inside v, however deep (the parser bounds the depth) */
static void
add_strings(estimate_t *e, const vmx_json_t *v)
{
    const vmx_json_t  *c;

    if (v->type == VMX_JSON_STRING) {
        add_text(e, v->str, v->str_len);
        return;
    }

    for (c = v->child; c; c = c->next) {
        add_strings(e, c);
    }
}


static void
add_part(estimate_t *e, const vmx_json_t *part)
{
    const char        *type, *detail;
    const vmx_json_t  *text;
    size_t             n, dn;

    type = vmx_json_get_str(part, "type", &n);

    if (is_str(type, n, "text")) {
        text = vmx_json_get(part, "text");
        if (text && text->type == VMX_JSON_STRING) {
            add_text(e, text->str, text->str_len);
        }

    } else if (is_str(type, n, "image_url")) {
        detail = vmx_json_get_str(vmx_json_get(part, "image_url"), "detail", &dn);
        e->total += is_str(detail, dn, "low") ? TOKENS_IMAGE_LOW : TOKENS_IMAGE;
    }
}


static void
add_message(estimate_t *e, const vmx_json_t *msg)
{
    const vmx_json_t  *m, *part;

    e->total += TOKENS_PER_MESSAGE;

    for (m = msg->child; m; m = m->next) {
        if (m->type == VMX_JSON_ARRAY && is_str(m->key, m->key_len, "content")) {
            for (part = m->child; part; part = part->next) {
                add_part(e, part);
            }

            continue;
        }

        add_strings(e, m);

        if (m->type == VMX_JSON_STRING && is_str(m->key, m->key_len, "name")) {
            e->total += TOKENS_PER_NAME;
        }
    }
}


/* the tools recipe counts lines joined with ':' as one text */
static void
line_add(estimate_t *e, const char *p, size_t n)
{
    vmx_tokenizer_scratch_t  *s = e->s;
    size_t                    cap;
    char                     *line;

    if (e->line_len + n + 1 > s->line_cap) {
        cap = (e->line_len + n + 1) * 2;
        line = realloc(s->line, cap);
        if (line == NULL) {
            e->failed = 1;
            return;
        }

        s->line = line;
        s->line_cap = cap;
    }

    if (e->line_fields++) {
        s->line[e->line_len++] = ':';
    }

    memcpy(s->line + e->line_len, p, n);
    e->line_len += n;
}


/*
 * The text of a member as the recipe formats it: a string as it is (a
 * description without its final '.'), nothing for a missing member, other
 * values as their JSON text.
 */
static void
line_member(estimate_t *e, const vmx_json_t *obj, const char *name, int desc)
{
    const vmx_json_t  *v = vmx_json_get(obj, name);
    size_t             n;

    if (v == NULL) {
        line_add(e, "", 0);

    } else if (v->type == VMX_JSON_STRING) {
        n = v->str_len;
        n -= desc && n && v->str[n - 1] == '.';
        line_add(e, v->str, n);

    } else {
        line_add(e, v->raw, v->raw_len);
    }
}


static void
line_count(estimate_t *e)
{
    if (!e->failed) {
        add_text(e, e->s->line, e->line_len);
    }

    e->line_len = 0;
    e->line_fields = 0;
}


static void
add_property(estimate_t *e, const vmx_json_t *prop)
{
    const vmx_json_t  *item, *values = vmx_json_get(prop, "enum");

    e->total += TOKENS_PROP_KEY;

    if (values && values->type == VMX_JSON_ARRAY) {
        e->total += TOKENS_ENUM_INIT;

        for (item = values->child; item; item = item->next) {
            e->total += TOKENS_ENUM_ITEM;
            if (item->type == VMX_JSON_STRING) {
                add_text(e, item->str, item->str_len);
            } else {
                add_text(e, item->raw, item->raw_len);
            }
        }
    }

    line_add(e, prop->key, prop->key_len);
    line_member(e, prop, "type", 0);
    line_member(e, prop, "description", 1);
    line_count(e);
}


static void
add_function(estimate_t *e, const vmx_json_t *fn)
{
    const vmx_json_t  *props, *prop;

    e->total += TOKENS_FUNC_INIT;
    line_member(e, fn, "name", 0);
    line_member(e, fn, "description", 1);
    line_count(e);

    props = vmx_json_get(vmx_json_get(fn, "parameters"), "properties");
    if (props == NULL || props->type != VMX_JSON_OBJECT || props->count == 0) {
        return;
    }

    e->total += TOKENS_PROP_INIT;

    for (prop = props->child; prop; prop = prop->next) {
        add_property(e, prop);
    }
}


/* tools[].function, or the older functions[]; 12 more after any */
static void
add_tools(estimate_t *e, const vmx_json_t *request)
{
    const vmx_json_t  *tools, *functions, *t, *fn;
    size_t             counted = 0;

    tools = vmx_json_get(request, "tools");
    functions = vmx_json_get(request, "functions");

    for (t = tools && tools->type == VMX_JSON_ARRAY ? tools->child : NULL;
         t; t = t->next)
    {
        fn = vmx_json_get(t, "function");
        if (fn && fn->type == VMX_JSON_OBJECT) {
            add_function(e, fn);
            counted++;
        }
    }

    for (t = functions && functions->type == VMX_JSON_ARRAY ? functions->child : NULL;
         t; t = t->next)
    {
        if (t->type == VMX_JSON_OBJECT) {
            add_function(e, t);
            counted++;
        }
    }

    if (counted) {
        e->total += TOKENS_FUNC_END;
    }
}


int64_t
vmx_tokenizer_chat_estimate(const vmx_tokenizer_t *tok,
    vmx_tokenizer_scratch_t *s, const vmx_json_t *request)
{
    estimate_t         e = { tok, s, 0, 0, 0, 0 };
    const vmx_json_t  *messages, *msg;

    messages = vmx_json_get(request, "messages");
    if (messages == NULL || messages->type != VMX_JSON_ARRAY) {
        return -1;
    }

    for (msg = messages->child; msg; msg = msg->next) {
        if (msg->type == VMX_JSON_OBJECT) {
            add_message(&e, msg);
        }
    }

    e.total += TOKENS_REPLY;
    add_tools(&e, request);

    return e.failed ? -1 : e.total;
}
