/*
 * pickle.c - the generic part of the safe pickle interpreter: reading with frames,
 * the stack and its marks, the memo, the arena, and every data opcode. Which globals
 * are allowed and what they do when called (REDUCE) or rebuilt (BUILD) is in pickle_numpy.c;
 * names and refusal messages are in pickle_opcodes.c.
 * See pickle.h for what is accepted and the limits.
 *
 * Opcodes are run in file order; a refused opcode or global stops the run at once,
 * so nothing after it is looked at. Text (protocol 0) opcodes, Python 2 strings,
 * sets and out-of-band buffers are refused as unsupported; opcodes that create
 * arbitrary objects or consult registries (PERSID, BINPERSID, INST, OBJ, NEWOBJ,
 * NEWOBJ_EX, EXT1/2/4) are refused as unsafe. The file must begin with PROTO 2..5.
 */
#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_CHUNK_SIZE ((size_t)64 * 1024)
#define PK_ALIGN ((size_t)16)

struct pk_chunk {
    pk_chunk *next;
    size_t used;
    size_t cap;
};

/* Chunk payload starts after the header rounded up to PK_ALIGN. */
#define PK_CHUNK_HEADER ((sizeof(pk_chunk) + PK_ALIGN - 1) / PK_ALIGN * PK_ALIGN)

/* ---------------------------------------------------------------- messages */

cspresnet_status pk_fail(pk_unpickler *u, cspresnet_status code, const char *fmt, ...)
{
    char msg[sizeof u->err->text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(u->err, code, "%s: %s", u->name, msg);
}

/* ---------------------------------------------------------------- arena */

static cspresnet_status out_of_memory(pk_unpickler *u, size_t size)
{
    u->alloc_status = pk_fail(u, CSPRESNET_ERR_MEMORY,
                              "out of memory allocating %zu bytes at offset %zu", size,
                              u->op_offset);
    return u->alloc_status;
}

static void *arena_alloc(pk_unpickler *u, size_t size)
{
    size = (size + PK_ALIGN - 1) / PK_ALIGN * PK_ALIGN;
    if (size == 0)
        size = PK_ALIGN;
    pk_chunk *c = u->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > PK_CHUNK_SIZE / 4 ? size : PK_CHUNK_SIZE;
        if (cap > PK_MAX_ARENA || u->arena_bytes > PK_MAX_ARENA - cap) {
            u->alloc_status = pk_fail(u, CSPRESNET_ERR_FORMAT,
                                      "pickle needs more than the interpreter limit of %zu "
                                      "bytes of objects (at offset %zu)",
                                      (size_t)PK_MAX_ARENA, u->op_offset);
            return NULL;
        }
        pk_chunk *n = malloc(PK_CHUNK_HEADER + cap);
        if (!n) {
            out_of_memory(u, cap);
            return NULL;
        }
        n->used = 0;
        n->cap = cap;
        u->arena_bytes += cap;
        if (c && size > PK_CHUNK_SIZE / 4) {
            /* a big one-off block: keep the current chunk on top for small objects */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            u->chunks = n;
        }
        c = n;
    }
    void *p = (unsigned char *)c + PK_CHUNK_HEADER + c->used;
    c->used += size;
    return p;
}

pk_obj *pk_new(pk_unpickler *u, pk_kind kind)
{
    pk_obj *o = arena_alloc(u, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->offset = u->op_offset;
    return o;
}

uint8_t *pk_new_blob(pk_unpickler *u, size_t size)
{
    if (size > u->size - u->blob_bytes) {
        /* Decoding shrinks text, so honest files never get here: only a memoized text
         * decoded again and again (REDUCE after BINGET) can, to inflate memory. */
        u->alloc_status = pk_fail(u, CSPRESNET_ERR_FORMAT,
                                  "decoded byte strings at offset %zu would total more than "
                                  "the %zu bytes of the pickle itself (the same text decoded "
                                  "repeatedly?)", u->op_offset, u->size);
        return NULL;
    }
    pk_blob *b = malloc(sizeof *b + size + 1);
    if (!b) {
        out_of_memory(u, size);
        return NULL;
    }
    u->blob_bytes += size;
    b->size = size;
    b->next = u->blobs;
    u->blobs = b;
    return (uint8_t *)(b + 1);
}

pk_blob *pk_take_blobs(pk_unpickler *u)
{
    pk_blob *b = u->blobs;
    u->blobs = NULL;
    return b;
}

void pk_blobs_free(pk_blob *b)
{
    while (b) {
        pk_blob *next = b->next;
        free(b);
        b = next;
    }
}

void pk_init(pk_unpickler *u, const uint8_t *data, size_t size, const char *name)
{
    memset(u, 0, sizeof *u);
    u->data = data;
    u->size = size;
    u->name = name ? name : "(pickle)";
}

void pk_free(pk_unpickler *u)
{
    pk_chunk *c = u->chunks;
    while (c) {
        pk_chunk *next = c->next;
        free(c);
        c = next;
    }
    pk_blobs_free(u->blobs);
    free(u->stack);
    free(u->marks);
    free(u->memo);
    memset(u, 0, sizeof *u);
}

/* ---------------------------------------------------------------- reading */

/* Checks that n bytes can be read at pos: inside the file, and inside the current
 * frame when one is open. what names the field for the message. */
static cspresnet_status need_bytes(pk_unpickler *u, uint64_t n, const char *what)
{
    size_t remain = u->size - u->pos;
    if (u->frame_end && u->pos >= u->frame_end)
        u->frame_end = 0;  /* the frame is used up: reads continue outside frames */
    if (n > remain) {
        const char *op = pk_op_name(u->op);
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "unexpected end of file at offset %zu (%s of %s at offset %zu "
                       "needs %llu bytes, %zu remain)",
                       u->size, what, op ? op : "opcode", u->op_offset,
                       (unsigned long long)n, remain);
    }
    if (u->frame_end && n > u->frame_end - u->pos) {
        const char *op = pk_op_name(u->op);
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "%s of %s at offset %zu (%llu bytes) runs past the end of the "
                       "frame that ends at offset %zu",
                       what, op ? op : "opcode", u->op_offset, (unsigned long long)n,
                       u->frame_end);
    }
    return CSPRESNET_OK;
}

static cspresnet_status read_bytes(pk_unpickler *u, uint64_t n, const char *what,
                                   const uint8_t **out)
{
    cspresnet_status st = need_bytes(u, n, what);
    if (st != CSPRESNET_OK)
        return st;
    *out = u->data + u->pos;
    u->pos += (size_t)n;
    return CSPRESNET_OK;
}

/* Little-endian unsigned field of n bytes (1, 2, 4 or 8). */
static cspresnet_status read_uint(pk_unpickler *u, int n, const char *what, uint64_t *v)
{
    const uint8_t *p;
    cspresnet_status st = read_bytes(u, (uint64_t)n, what, &p);
    if (st != CSPRESNET_OK)
        return st;
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    *v = x;
    return CSPRESNET_OK;
}

/* A protocol-0 style line ending in '\n' (for GLOBAL). */
static cspresnet_status read_line(pk_unpickler *u, const char *what, const uint8_t **line,
                                  size_t *len)
{
    cspresnet_status st = need_bytes(u, 1, what);
    if (st != CSPRESNET_OK)
        return st;
    size_t end = u->frame_end ? u->frame_end : u->size;
    const uint8_t *start = u->data + u->pos;
    const uint8_t *nl = memchr(start, '\n', end - u->pos);
    if (!nl) {
        if (u->frame_end)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "%s of GLOBAL at offset %zu has no newline before the end of the "
                           "frame at offset %zu", what, u->op_offset, u->frame_end);
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "unexpected end of file at offset %zu (%s of GLOBAL at offset %zu "
                       "has no newline)", u->size, what, u->op_offset);
    }
    *line = start;
    *len = (size_t)(nl - start);
    u->pos += *len + 1;
    return CSPRESNET_OK;
}

/* Python's str(data, 'utf-8', 'surrogatepass'): well-formed UTF-8 where encoded
 * surrogates are allowed. Returns the offset of the first bad byte, or n. */
/* 1 for ASCII, 2 for the lead byte of a two-byte character, 0 otherwise. */
static const uint8_t utf8_short_len[256] = {
#define X4(v) v, v, v, v
#define X16(v) X4(v), X4(v), X4(v), X4(v)
    X16(1), X16(1), X16(1), X16(1), X16(1), X16(1), X16(1), X16(1),  /* 0x00..0x7f */
    X16(0), X16(0), X16(0), X16(0),                                  /* 0x80..0xbf */
    0, 0, 2, 2, X4(2), X4(2), X4(2), X16(2),                         /* 0xc0..0xdf */
    X16(0), X16(0)                                                   /* 0xe0..0xff */
#undef X16
#undef X4
};

static size_t utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        /* One- and two-byte characters (all of latin-1 text, whose ASCII and non-ASCII
         * bytes alternate at random for float data) without data-dependent branches. */
        size_t len = utf8_short_len[c];
        if (len && i + 1 < n) {
            if ((unsigned)((s[i + 1] & 0xc0) != 0x80) & (unsigned)(len >> 1))
                return i;
            i += len;
            continue;
        }
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            return i;  /* a two-byte lead as the last byte */
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return i;
        }
        if (n - i <= k)
            return i;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += k + 1;
    }
    return n;
}

/* ---------------------------------------------------------------- stack, marks, memo */

static size_t stack_base(const pk_unpickler *u)
{
    return u->nmarks ? u->marks[u->nmarks - 1] : 0;
}

static cspresnet_status push(pk_unpickler *u, pk_obj *o)
{
    if (!o)
        return u->alloc_status;
    if (u->sp == u->stack_cap) {
        if (u->stack_cap >= PK_MAX_STACK)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "more than %u items on the pickle stack at offset %zu",
                           PK_MAX_STACK, u->op_offset);
        size_t cap = u->stack_cap ? u->stack_cap * 2 : 256;
        if (cap > PK_MAX_STACK)
            cap = PK_MAX_STACK;
        pk_obj **s = realloc(u->stack, cap * sizeof *s);
        if (!s)
            return out_of_memory(u, cap * sizeof *s);
        u->stack = s;
        u->stack_cap = cap;
    }
    u->stack[u->sp++] = o;
    return CSPRESNET_OK;
}

/* At least n items above the innermost mark. */
static cspresnet_status need_items(pk_unpickler *u, size_t n)
{
    size_t have = u->sp - stack_base(u);
    if (have < n)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "%s at offset %zu needs %zu stack item%s but %zu %s there",
                       pk_op_name(u->op), u->op_offset, n, n == 1 ? "" : "s", have,
                       have == 1 ? "is" : "are");
    return CSPRESNET_OK;
}

static cspresnet_status pop_mark(pk_unpickler *u, size_t *mark)
{
    if (u->nmarks == 0)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "%s at offset %zu without a MARK",
                       pk_op_name(u->op), u->op_offset);
    *mark = u->marks[--u->nmarks];
    return CSPRESNET_OK;
}

static cspresnet_status memo_put(pk_unpickler *u, uint64_t idx)
{
    cspresnet_status st = need_items(u, 1);
    if (st != CSPRESNET_OK)
        return st;
    if (idx >= PK_MAX_MEMO)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "%s at offset %zu: memo index %llu exceeds the limit of %u entries",
                       pk_op_name(u->op), u->op_offset, (unsigned long long)idx, PK_MAX_MEMO);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap * 2 : 1024;
        if (cap < idx + 1)
            cap = (size_t)idx + 1;
        if (cap > PK_MAX_MEMO)
            cap = PK_MAX_MEMO;
        pk_obj **m = realloc(u->memo, cap * sizeof *m);
        if (!m)
            return out_of_memory(u, cap * sizeof *m);
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof *m);
        u->memo = m;
        u->memo_cap = cap;
    }
    if (!u->memo[idx])
        u->memo_count++;
    u->memo[idx] = u->stack[u->sp - 1];
    return CSPRESNET_OK;
}

static cspresnet_status memo_get(pk_unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "%s at offset %zu: memo index %llu was never stored", pk_op_name(u->op),
                       u->op_offset, (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* ---------------------------------------------------------------- containers */

/* Room for need item pointers in s, of which used are filled. */
static cspresnet_status seq_reserve(pk_unpickler *u, pk_seq *s, size_t used, size_t need)
{
    if (need <= s->cap)
        return CSPRESNET_OK;
    size_t cap = s->cap ? s->cap * 2 : 4;
    if (cap < need)
        cap = need;
    pk_obj **items = arena_alloc(u, cap * sizeof *items);
    if (!items)
        return u->alloc_status;
    if (used)
        memcpy(items, s->items, used * sizeof *items);
    s->items = items;
    s->cap = cap;
    return CSPRESNET_OK;
}

/* A tuple, list or dict holding the stack items from..sp; they are popped. */
static cspresnet_status collect(pk_unpickler *u, pk_kind kind, size_t from)
{
    size_t n = u->sp - from;
    if (kind == PK_DICT && n % 2)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "%s at offset %zu: odd number of items (%zu)",
                       pk_op_name(u->op), u->op_offset, n);
    pk_obj *o = pk_new(u, kind);
    if (!o)
        return u->alloc_status;
    if (n) {
        cspresnet_status st = seq_reserve(u, &o->u.seq, 0, n);
        if (st != CSPRESNET_OK)
            return st;
        memcpy(o->u.seq.items, u->stack + from, n * sizeof *o->u.seq.items);
    }
    o->u.seq.len = kind == PK_DICT ? n / 2 : n;
    u->sp = from;
    return push(u, o);
}

/* APPEND(S) / SETITEM(S): adds the items from..sp to the list or dict just below. */
static cspresnet_status extend(pk_unpickler *u, pk_kind kind, size_t from)
{
    size_t n = u->sp - from;
    if (from == 0 || from - 1 < stack_base(u))
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "%s at offset %zu has no %s to add to",
                       pk_op_name(u->op), u->op_offset, pk_kind_name(kind));
    pk_obj *target = u->stack[from - 1];
    if (target->kind != kind)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "%s at offset %zu applied to a %s, not a %s",
                       pk_op_name(u->op), u->op_offset, pk_kind_name(target->kind),
                       pk_kind_name(kind));
    if (kind == PK_DICT && n % 2)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "%s at offset %zu: odd number of items (%zu)",
                       pk_op_name(u->op), u->op_offset, n);
    pk_seq *s = &target->u.seq;
    size_t used = kind == PK_DICT ? 2 * s->len : s->len;
    cspresnet_status st = seq_reserve(u, s, used, used + n);
    if (st != CSPRESNET_OK)
        return st;
    if (n)  /* an empty APPENDS/SETITEMS on an empty container: items is still NULL */
        memcpy(s->items + used, u->stack + from, n * sizeof *s->items);
    s->len += kind == PK_DICT ? n / 2 : n;
    u->sp = from;
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- globals */

static cspresnet_status push_global(pk_unpickler *u, const uint8_t *module, size_t mlen,
                                    const uint8_t *name, size_t nlen)
{
    pk_global g;
    if (pk_allowed_global(module, mlen, name, nlen, &g)) {
        pk_obj *o = pk_new(u, PK_GLOBAL);
        if (!o)
            return u->alloc_status;
        o->u.global = g;
        return push(u, o);
    }
    char m[160], n[160];
    pk_printable(module, mlen, m, sizeof m);
    pk_printable(name, nlen, n, sizeof n);
    return pk_fail(u, CSPRESNET_ERR_UNSAFE,
                   "global '%s.%s' (%s at offset %zu) is not allowed; refusing to load: "
                   "a pickle may only name the numpy array globals",
                   m, n, pk_op_name(u->op), u->op_offset);
}

/* ---------------------------------------------------------------- the run */

static cspresnet_status push_int(pk_unpickler *u, pk_kind kind, int64_t v)
{
    pk_obj *o = pk_new(u, kind);
    if (!o)
        return u->alloc_status;
    o->u.i = v;
    return push(u, o);
}

/* LONG1 / LONG4: n bytes of little-endian two's complement. */
static cspresnet_status push_long(pk_unpickler *u, const uint8_t *p, size_t n)
{
    if (n == 0)
        return push_int(u, PK_INT, 0);
    uint8_t fill = (p[n - 1] & 0x80) ? 0xff : 0x00;
    for (size_t i = 8; i < n; i++)
        if (p[i] != fill)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "integer of %zu bytes at offset %zu does not fit in 64 bits",
                           n, u->op_offset);
    if (n > 8 && (p[7] & 0x80) != (fill & 0x80))
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "integer of %zu bytes at offset %zu does not fit in 64 bits", n,
                       u->op_offset);
    uint64_t x = 0;
    for (size_t i = 0; i < 8; i++)
        x |= (uint64_t)(i < n ? p[i] : fill) << (8 * i);
    int64_t v = (x >> 63) ? -(int64_t)(~x) - 1 : (int64_t)x;
    return push_int(u, PK_INT, v);
}

static cspresnet_status push_text(pk_unpickler *u, pk_kind kind, uint64_t len)
{
    const uint8_t *p;
    size_t data_offset = u->pos;
    cspresnet_status st = read_bytes(u, len, "data", &p);
    if (st != CSPRESNET_OK)
        return st;
    if (kind == PK_STR) {
        size_t bad = utf8_check(p, (size_t)len);
        if (bad != len)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "invalid UTF-8 in the string of %s at offset %zu (byte at offset "
                           "%zu)", pk_op_name(u->op), u->op_offset, data_offset + bad);
    }
    pk_obj *o = pk_new(u, kind);
    if (!o)
        return u->alloc_status;
    o->u.b.ptr = p;
    o->u.b.len = (size_t)len;
    o->u.b.data_offset = data_offset;
    return push(u, o);
}

/* Runs one opcode; *done is set by STOP. */
static cspresnet_status step(pk_unpickler *u, pk_obj **result, int *done)
{
    cspresnet_status st;
    uint64_t v;
    const uint8_t *p;
    size_t mark;

    switch (u->op) {
    case 0x80: /* PROTO */
        if ((st = read_uint(u, 1, "protocol", &v)) != CSPRESNET_OK)
            return st;
        if (v < 2 || v > 5)
            return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                           "pickle protocol %llu at offset %zu is not supported (2 to 5 are)",
                           (unsigned long long)v, u->op_offset);
        return CSPRESNET_OK;
    case 0x95: { /* FRAME */
        if ((st = read_uint(u, 8, "length", &v)) != CSPRESNET_OK)
            return st;
        if (u->frame_end && u->pos < u->frame_end)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "FRAME at offset %zu starts before the frame that ends at offset "
                           "%zu is used up", u->op_offset, u->frame_end);
        u->frame_end = 0;
        size_t remain = u->size - u->pos;
        if (v > remain)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "unexpected end of file at offset %zu (FRAME at offset %zu "
                           "announces %llu bytes, %zu remain)", u->size, u->op_offset,
                           (unsigned long long)v, remain);
        u->frame_end = u->pos + (size_t)v;
        return CSPRESNET_OK;
    }
    case '.': /* STOP */
        if (u->nmarks)
            return pk_fail(u, CSPRESNET_ERR_FORMAT, "STOP at offset %zu with %zu unclosed MARK%s",
                           u->op_offset, u->nmarks, u->nmarks == 1 ? "" : "s");
        if ((st = need_items(u, 1)) != CSPRESNET_OK)
            return st;
        *result = u->stack[u->sp - 1];
        *done = 1;
        return CSPRESNET_OK;

    case '}': return collect(u, PK_DICT, u->sp);
    case ']': return collect(u, PK_LIST, u->sp);
    case ')': return collect(u, PK_TUPLE, u->sp);
    case 'N': return push(u, u->none);
    case 0x88: return push(u, u->true_obj);
    case 0x89: return push(u, u->false_obj);

    case '(': /* MARK */
        if (u->nmarks >= PK_MAX_MARKS)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "MARK at offset %zu nests deeper than the limit of %u",
                           u->op_offset, PK_MAX_MARKS);
        if (!u->marks) {
            u->marks = malloc(PK_MAX_MARKS * sizeof *u->marks);
            if (!u->marks)
                return out_of_memory(u, PK_MAX_MARKS * sizeof *u->marks);
        }
        u->marks[u->nmarks++] = u->sp;
        return CSPRESNET_OK;
    case '0': /* POP */
        if (u->sp > stack_base(u)) {
            u->sp--;
            return CSPRESNET_OK;
        }
        return pop_mark(u, &mark);
    case '1': /* POP_MARK */
        if ((st = pop_mark(u, &mark)) != CSPRESNET_OK)
            return st;
        u->sp = mark;
        return CSPRESNET_OK;
    case '2': /* DUP */
        if ((st = need_items(u, 1)) != CSPRESNET_OK)
            return st;
        return push(u, u->stack[u->sp - 1]);

    case 0x94: /* MEMOIZE */
        return memo_put(u, u->memo_count);
    case 'q':
    case 'r': /* BINPUT, LONG_BINPUT */
        if ((st = read_uint(u, u->op == 'q' ? 1 : 4, "memo index", &v)) != CSPRESNET_OK)
            return st;
        return memo_put(u, v);
    case 'h':
    case 'j': /* BINGET, LONG_BINGET */
        if ((st = read_uint(u, u->op == 'h' ? 1 : 4, "memo index", &v)) != CSPRESNET_OK)
            return st;
        return memo_get(u, v);

    case 0x8c: /* SHORT_BINUNICODE */
    case 'X':  /* BINUNICODE */
    case 0x8d: /* BINUNICODE8 */
        if ((st = read_uint(u, u->op == 0x8c ? 1 : u->op == 'X' ? 4 : 8, "length", &v)) !=
            CSPRESNET_OK)
            return st;
        return push_text(u, PK_STR, v);
    case 'C':  /* SHORT_BINBYTES */
    case 'B':  /* BINBYTES */
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
        if ((st = read_uint(u, u->op == 'C' ? 1 : u->op == 'B' ? 4 : 8, "length", &v)) !=
            CSPRESNET_OK)
            return st;
        return push_text(u, PK_BYTES, v);

    case 'K': /* BININT1 */
    case 'M': /* BININT2 */
        if ((st = read_uint(u, u->op == 'K' ? 1 : 2, "value", &v)) != CSPRESNET_OK)
            return st;
        return push_int(u, PK_INT, (int64_t)v);
    case 'J': /* BININT: signed 32 bits */
        if ((st = read_uint(u, 4, "value", &v)) != CSPRESNET_OK)
            return st;
        return push_int(u, PK_INT, v >= 0x80000000u ? (int64_t)v - 0x100000000ll : (int64_t)v);
    case 0x8a: /* LONG1 */
    case 0x8b: /* LONG4 */
        if ((st = read_uint(u, u->op == 0x8a ? 1 : 4, "length", &v)) != CSPRESNET_OK)
            return st;
        if ((st = read_bytes(u, v, "data", &p)) != CSPRESNET_OK)
            return st;
        return push_long(u, p, (size_t)v);
    case 'G': { /* BINFLOAT: big-endian IEEE double */
        if ((st = read_bytes(u, 8, "value", &p)) != CSPRESNET_OK)
            return st;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = (bits << 8) | p[i];
        pk_obj *o = pk_new(u, PK_FLOAT);
        if (!o)
            return u->alloc_status;
        memcpy(&o->u.f, &bits, sizeof o->u.f);
        return push(u, o);
    }

    case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
        size_t n = (size_t)(u->op - 0x84);
        if ((st = need_items(u, n)) != CSPRESNET_OK)
            return st;
        return collect(u, PK_TUPLE, u->sp - n);
    }
    case 't': /* TUPLE */
    case 'l': /* LIST */
    case 'd': /* DICT */
        if ((st = pop_mark(u, &mark)) != CSPRESNET_OK)
            return st;
        return collect(u, u->op == 't' ? PK_TUPLE : u->op == 'l' ? PK_LIST : PK_DICT, mark);
    case 'a': /* APPEND */
        if ((st = need_items(u, 2)) != CSPRESNET_OK)
            return st;
        return extend(u, PK_LIST, u->sp - 1);
    case 's': /* SETITEM */
        if ((st = need_items(u, 3)) != CSPRESNET_OK)
            return st;
        return extend(u, PK_DICT, u->sp - 2);
    case 'e': /* APPENDS */
    case 'u': /* SETITEMS */
        if ((st = pop_mark(u, &mark)) != CSPRESNET_OK)
            return st;
        return extend(u, u->op == 'e' ? PK_LIST : PK_DICT, mark);

    case 'c': { /* GLOBAL: "module\nname\n" */
        const uint8_t *m, *n;
        size_t mlen, nlen;
        if ((st = read_line(u, "module", &m, &mlen)) != CSPRESNET_OK ||
            (st = read_line(u, "name", &n, &nlen)) != CSPRESNET_OK)
            return st;
        return push_global(u, m, mlen, n, nlen);
    }
    case 0x93: { /* STACK_GLOBAL: module, name on the stack */
        if ((st = need_items(u, 2)) != CSPRESNET_OK)
            return st;
        pk_obj *module = u->stack[u->sp - 2], *name = u->stack[u->sp - 1];
        if (module->kind != PK_STR || name->kind != PK_STR)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "STACK_GLOBAL at offset %zu: module and name must be str, not %s "
                           "and %s", u->op_offset, pk_kind_name(module->kind),
                           pk_kind_name(name->kind));
        u->sp -= 2;
        return push_global(u, module->u.b.ptr, module->u.b.len, name->u.b.ptr, name->u.b.len);
    }
    case 'R': { /* REDUCE: callable(*args) */
        if ((st = need_items(u, 2)) != CSPRESNET_OK)
            return st;
        pk_obj *callable = u->stack[u->sp - 2], *args = u->stack[u->sp - 1], *res = NULL;
        if (callable->kind != PK_GLOBAL)
            return pk_fail(u, CSPRESNET_ERR_FORMAT, "REDUCE at offset %zu calls a %s",
                           u->op_offset, pk_kind_name(callable->kind));
        if (args->kind != PK_TUPLE)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "REDUCE at offset %zu: arguments are a %s, not a tuple",
                           u->op_offset, pk_kind_name(args->kind));
        if ((st = pk_numpy_reduce(u, callable, args, &res)) != CSPRESNET_OK)
            return st;
        u->sp -= 2;
        return push(u, res);
    }
    case 'b': { /* BUILD: obj.__setstate__(state) */
        if ((st = need_items(u, 2)) != CSPRESNET_OK)
            return st;
        pk_obj *obj = u->stack[u->sp - 2], *state = u->stack[u->sp - 1];
        if (obj->kind != PK_DTYPE && obj->kind != PK_NDARRAY)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "BUILD at offset %zu on a %s (only numpy arrays and dtypes are "
                           "rebuilt)", u->op_offset, pk_kind_name(obj->kind));
        if ((st = pk_numpy_build(u, obj, state)) != CSPRESNET_OK)
            return st;
        u->sp -= 1;
        return CSPRESNET_OK;
    }
    }
    return pk_refuse(u);
}

cspresnet_status pk_load(pk_unpickler *u, pk_obj **result, error_buf *err)
{
    u->err = err;
    *result = NULL;
    if (u->size == 0)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "empty file, not a pickle");
    if (u->data[0] != 0x80) {
        char head[64];
        pk_printable(u->data, u->size < 8 ? u->size : 8, head, sizeof head);
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "not a pickle of protocol 2 to 5: it starts with '%s', not the PROTO "
                       "opcode 0x80%s", head, pk_not_a_pickle_hint(u->data, u->size));
    }
    u->op_offset = 0;
    if (!(u->none = pk_new(u, PK_NONE)) || !(u->true_obj = pk_new(u, PK_BOOL)) ||
        !(u->false_obj = pk_new(u, PK_BOOL)))
        return u->alloc_status;
    u->true_obj->u.i = 1;

    int done = 0;
    while (!done) {
        u->op_offset = u->pos;
        if (u->pos >= u->size)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "unexpected end of file at offset %zu (no STOP opcode)", u->size);
        u->op = 0;
        const uint8_t *p;
        cspresnet_status st = read_bytes(u, 1, "opcode", &p);
        if (st != CSPRESNET_OK)
            return st;
        u->op = *p;
        if ((st = step(u, result, &done)) != CSPRESNET_OK) {
            *result = NULL;
            return st;
        }
    }
    return CSPRESNET_OK;
}
