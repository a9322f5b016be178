/*
 * pickle.c - the generic part of the safe pickle interpreter: reading with frames,
 * the stack and its marks, the memo, and every data opcode. The arena the objects live
 * in and the error messages are in pickle_arena.c. Which globals are allowed and what
 * they do when called (REDUCE) or rebuilt (BUILD) is in pickle_numpy.c; names and
 * refusal messages are in pickle_opcodes.c.
 * See pickle.h for what is accepted and the limits.
 *
 * Opcodes are run in file order; a refused opcode or global stops the run at once,
 * so nothing after it is looked at. Text (protocol 0) opcodes, Python 2 strings,
 * sets and out-of-band buffers are refused as unsupported; opcodes that create
 * arbitrary objects or consult registries (PERSID, BINPERSID, INST, OBJ, NEWOBJ,
 * NEWOBJ_EX, EXT1/2/4) are refused as unsafe. The file must begin with PROTO 2..5.
 */
#include "io/pickle.h"

#include <stdlib.h>
#include <string.h>

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
            return pk_out_of_memory(u, cap * sizeof *s);
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
            return pk_out_of_memory(u, cap * sizeof *m);
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
    pk_obj **items = pk_arena_alloc(u, cap * sizeof *items);
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

/* PROTO: the protocol byte; 2 to 5 are read. */
static cspresnet_status op_proto(pk_unpickler *u)
{
    uint64_t v;
    cspresnet_status st = read_uint(u, 1, "protocol", &v);
    if (st != CSPRESNET_OK)
        return st;
    if (v < 2 || v > 5)
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "pickle protocol %llu at offset %zu is not supported (2 to 5 are)",
                       (unsigned long long)v, u->op_offset);
    return CSPRESNET_OK;
}

/* FRAME: an 8-byte length; the frame must fit in the file and may not start inside
   the previous one. */
static cspresnet_status op_frame(pk_unpickler *u)
{
    uint64_t v;
    cspresnet_status st = read_uint(u, 8, "length", &v);
    if (st != CSPRESNET_OK)
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

/* STOP: the top of the stack is the result; no MARK may be left open. */
static cspresnet_status op_stop(pk_unpickler *u, pk_obj **result, int *done)
{
    if (u->nmarks)
        return pk_fail(u, CSPRESNET_ERR_FORMAT, "STOP at offset %zu with %zu unclosed MARK%s",
                       u->op_offset, u->nmarks, u->nmarks == 1 ? "" : "s");
    cspresnet_status st = need_items(u, 1);
    if (st != CSPRESNET_OK)
        return st;
    *result = u->stack[u->sp - 1];
    *done = 1;
    return CSPRESNET_OK;
}

/* MARK: remembers the stack height; the mark stack is allocated on first use. */
static cspresnet_status op_mark(pk_unpickler *u)
{
    if (u->nmarks >= PK_MAX_MARKS)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "MARK at offset %zu nests deeper than the limit of %u",
                       u->op_offset, PK_MAX_MARKS);
    if (!u->marks) {
        u->marks = malloc(PK_MAX_MARKS * sizeof *u->marks);
        if (!u->marks)
            return pk_out_of_memory(u, PK_MAX_MARKS * sizeof *u->marks);
    }
    u->marks[u->nmarks++] = u->sp;
    return CSPRESNET_OK;
}

/* POP drops the top item, or the innermost MARK when nothing lies above it;
   POP_MARK drops everything down to the innermost MARK and the mark itself. */
static cspresnet_status op_pop(pk_unpickler *u, int to_mark)
{
    size_t mark = 0;
    if (!to_mark && u->sp > stack_base(u)) {
        u->sp--;
        return CSPRESNET_OK;
    }
    cspresnet_status st = pop_mark(u, &mark);
    if (st == CSPRESNET_OK && to_mark)
        u->sp = mark;
    return st;
}

/* DUP: pushes the top item again. */
static cspresnet_status op_dup(pk_unpickler *u)
{
    cspresnet_status st = need_items(u, 1);
    if (st != CSPRESNET_OK)
        return st;
    return push(u, u->stack[u->sp - 1]);
}

/* BINPUT / LONG_BINPUT / BINGET / LONG_BINGET: a memo index of `width` bytes. */
static cspresnet_status op_memo(pk_unpickler *u, int width, int get)
{
    uint64_t v;
    cspresnet_status st = read_uint(u, width, "memo index", &v);
    if (st != CSPRESNET_OK)
        return st;
    return get ? memo_get(u, v) : memo_put(u, v);
}

/* The str and bytes opcodes: a length of `width` bytes, then the data. */
static cspresnet_status op_text(pk_unpickler *u, pk_kind kind, int width)
{
    uint64_t v;
    cspresnet_status st = read_uint(u, width, "length", &v);
    if (st != CSPRESNET_OK)
        return st;
    return push_text(u, kind, v);
}

/* BININT1 / BININT2 (unsigned) and BININT (signed 32 bits). */
static cspresnet_status op_binint(pk_unpickler *u, int width)
{
    uint64_t v;
    cspresnet_status st = read_uint(u, width, "value", &v);
    if (st != CSPRESNET_OK)
        return st;
    if (width == 4)
        return push_int(u, PK_INT, v >= 0x80000000u ? (int64_t)v - 0x100000000ll : (int64_t)v);
    return push_int(u, PK_INT, (int64_t)v);
}

/* LONG1 / LONG4: a length of `width` bytes, then the integer's bytes. */
static cspresnet_status op_long(pk_unpickler *u, int width)
{
    uint64_t v;
    const uint8_t *p;
    cspresnet_status st = read_uint(u, width, "length", &v);
    if (st != CSPRESNET_OK)
        return st;
    if ((st = read_bytes(u, v, "data", &p)) != CSPRESNET_OK)
        return st;
    return push_long(u, p, (size_t)v);
}

/* BINFLOAT: a big-endian IEEE double. */
static cspresnet_status op_binfloat(pk_unpickler *u)
{
    const uint8_t *p;
    cspresnet_status st = read_bytes(u, 8, "value", &p);
    if (st != CSPRESNET_OK)
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

/* TUPLE / LIST / DICT make a new object of the items above the innermost MARK;
   APPENDS / SETITEMS (into_below) put them into the list or dict below the MARK. */
static cspresnet_status op_mark_items(pk_unpickler *u, pk_kind kind, int into_below)
{
    size_t mark = 0;
    cspresnet_status st = pop_mark(u, &mark);
    if (st != CSPRESNET_OK)
        return st;
    return into_below ? extend(u, kind, mark) : collect(u, kind, mark);
}

/* TUPLE1..3: a tuple of the top n items. */
static cspresnet_status op_tuple_top(pk_unpickler *u, size_t n)
{
    cspresnet_status st = need_items(u, n);
    if (st != CSPRESNET_OK)
        return st;
    return collect(u, PK_TUPLE, u->sp - n);
}

/* APPEND / SETITEM: the top n items (a value, or a key and a value) go into the
   list or dict below them. */
static cspresnet_status op_extend_top(pk_unpickler *u, pk_kind kind, size_t n)
{
    cspresnet_status st = need_items(u, n + 1);
    if (st != CSPRESNET_OK)
        return st;
    return extend(u, kind, u->sp - n);
}

/* GLOBAL: "module\nname\n". */
static cspresnet_status op_global(pk_unpickler *u)
{
    const uint8_t *m, *n;
    size_t mlen, nlen;
    cspresnet_status st;
    if ((st = read_line(u, "module", &m, &mlen)) != CSPRESNET_OK ||
        (st = read_line(u, "name", &n, &nlen)) != CSPRESNET_OK)
        return st;
    return push_global(u, m, mlen, n, nlen);
}

/* STACK_GLOBAL: module and name are the two str on top of the stack. */
static cspresnet_status op_stack_global(pk_unpickler *u)
{
    cspresnet_status st = need_items(u, 2);
    if (st != CSPRESNET_OK)
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

/* REDUCE: callable(*args), where the callable is an allowed global. */
static cspresnet_status op_reduce(pk_unpickler *u)
{
    cspresnet_status st = need_items(u, 2);
    if (st != CSPRESNET_OK)
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

/* BUILD: obj.__setstate__(state), for numpy arrays and dtypes only. */
static cspresnet_status op_build(pk_unpickler *u)
{
    cspresnet_status st = need_items(u, 2);
    if (st != CSPRESNET_OK)
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

/* Runs one opcode; *done is set by STOP. */
static cspresnet_status step(pk_unpickler *u, pk_obj **result, int *done)
{
    switch (u->op) {
    case 0x80: return op_proto(u);                  /* PROTO */
    case 0x95: return op_frame(u);                  /* FRAME */
    case '.': return op_stop(u, result, done);      /* STOP */

    case '}': return collect(u, PK_DICT, u->sp);    /* EMPTY_DICT */
    case ']': return collect(u, PK_LIST, u->sp);    /* EMPTY_LIST */
    case ')': return collect(u, PK_TUPLE, u->sp);   /* EMPTY_TUPLE */
    case 'N': return push(u, u->none);              /* NONE */
    case 0x88: return push(u, u->true_obj);         /* NEWTRUE */
    case 0x89: return push(u, u->false_obj);        /* NEWFALSE */

    case '(': return op_mark(u);                    /* MARK */
    case '0': return op_pop(u, 0);                  /* POP */
    case '1': return op_pop(u, 1);                  /* POP_MARK */
    case '2': return op_dup(u);                     /* DUP */

    case 0x94: return memo_put(u, u->memo_count);   /* MEMOIZE */
    case 'q': return op_memo(u, 1, 0);              /* BINPUT */
    case 'r': return op_memo(u, 4, 0);              /* LONG_BINPUT */
    case 'h': return op_memo(u, 1, 1);              /* BINGET */
    case 'j': return op_memo(u, 4, 1);              /* LONG_BINGET */

    case 0x8c: return op_text(u, PK_STR, 1);        /* SHORT_BINUNICODE */
    case 'X': return op_text(u, PK_STR, 4);         /* BINUNICODE */
    case 0x8d: return op_text(u, PK_STR, 8);        /* BINUNICODE8 */
    case 'C': return op_text(u, PK_BYTES, 1);       /* SHORT_BINBYTES */
    case 'B': return op_text(u, PK_BYTES, 4);       /* BINBYTES */
    case 0x8e: return op_text(u, PK_BYTES, 8);      /* BINBYTES8 */
    case 0x96: return op_text(u, PK_BYTES, 8);      /* BYTEARRAY8 */

    case 'K': return op_binint(u, 1);               /* BININT1 */
    case 'M': return op_binint(u, 2);               /* BININT2 */
    case 'J': return op_binint(u, 4);               /* BININT */
    case 0x8a: return op_long(u, 1);                /* LONG1 */
    case 0x8b: return op_long(u, 4);                /* LONG4 */
    case 'G': return op_binfloat(u);                /* BINFLOAT */

    case 0x85: return op_tuple_top(u, 1);           /* TUPLE1 */
    case 0x86: return op_tuple_top(u, 2);           /* TUPLE2 */
    case 0x87: return op_tuple_top(u, 3);           /* TUPLE3 */
    case 't': return op_mark_items(u, PK_TUPLE, 0); /* TUPLE */
    case 'l': return op_mark_items(u, PK_LIST, 0);  /* LIST */
    case 'd': return op_mark_items(u, PK_DICT, 0);  /* DICT */
    case 'a': return op_extend_top(u, PK_LIST, 1);  /* APPEND */
    case 's': return op_extend_top(u, PK_DICT, 2);  /* SETITEM */
    case 'e': return op_mark_items(u, PK_LIST, 1);  /* APPENDS */
    case 'u': return op_mark_items(u, PK_DICT, 1);  /* SETITEMS */

    case 'c': return op_global(u);                  /* GLOBAL */
    case 0x93: return op_stack_global(u);           /* STACK_GLOBAL */
    case 'R': return op_reduce(u);                  /* REDUCE */
    case 'b': return op_build(u);                   /* BUILD */
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
