/*
 * pickle_numpy.c - which globals a pickle may name, and what they do, in our own C code.
 *
 * numpy pickles an array in one of two ways:
 *   protocols 2-4: _reconstruct(ndarray, (0,), b'b') then BUILD with the state
 *                  (1, shape, dtype, is_fortran, raw_bytes);
 *   protocol 5:    _frombuffer(buffer, dtype, shape, order) with order 'C' or 'F'.
 * A dtype is dtype('f4', False, True) then BUILD with (3, '<', None, None, None, -1,
 * -1, 0) (version 4 adds metadata). Protocol 2 stores bytes as
 * _codecs.encode(text, 'latin1') and empty bytes as bytes().
 *
 * Only the structure is checked here (which kinds of objects, with the offset);
 * values (shape entries, data length against shape and dtype) are checked by
 * pdparams.c, which knows the key of the array.
 */
#include "io/pickle.h"

#include <ctype.h>
#include <string.h>

/* The only globals a pickle may name (see pickle.h). */
static const struct {
    const char *module;
    const char *name;
    pk_global global;
} allowed_globals[] = {
    {"numpy.core.multiarray", "_reconstruct", PKG_RECONSTRUCT},
    {"numpy._core.multiarray", "_reconstruct", PKG_RECONSTRUCT},
    {"numpy", "ndarray", PKG_NDARRAY},
    {"numpy", "dtype", PKG_DTYPE},
    {"_codecs", "encode", PKG_CODECS_ENCODE},
    {"numpy.core.numeric", "_frombuffer", PKG_FROMBUFFER},
    {"numpy._core.numeric", "_frombuffer", PKG_FROMBUFFER},
    {"builtins", "bytes", PKG_BYTES},
    {"__builtin__", "bytes", PKG_BYTES},
};

static int same(const uint8_t *s, size_t n, const char *z)
{
    return strlen(z) == n && memcmp(s, z, n) == 0;
}

int pk_allowed_global(const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen,
                      pk_global *out)
{
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        if (same(module, mlen, allowed_globals[i].module) &&
            same(name, nlen, allowed_globals[i].name)) {
            *out = allowed_globals[i].global;
            return 1;
        }
    }
    return 0;
}

static const pk_obj *arg(const pk_obj *args, size_t i)
{
    return args->u.seq.items[i];
}

/* "f4", "<f8", "|b1", "U5", "M8[ns]", "O8" -> kind, itemsize (0 when unknown). */
static void parse_dtype_str(const pk_obj *s, pk_dtype *d)
{
    const uint8_t *p = s->u.b.ptr;
    size_t n = s->u.b.len, i = 0;
    d->byteorder = '=';
    if (n && (p[0] == '<' || p[0] == '>' || p[0] == '|' || p[0] == '=')) {
        d->byteorder = (char)p[0];
        i = 1;
    }
    pk_printable(p + i, n - i, d->str, sizeof d->str);
    d->kind = i < n ? (char)p[i] : '\0';
    d->itemsize = 0;
    if (i >= n || (!isalpha(p[i]) && p[i] != '?'))
        return;
    size_t j = i + 1, size = 0;
    while (j < n && isdigit(p[j]) && size < 1000000) {
        size = size * 10 + (size_t)(p[j] - '0');
        j++;
    }
    int has_digits = j > i + 1;
    if (j < n && p[j] != '[')  /* trailing junk other than a datetime unit */
        return;
    if (d->kind == '?') {
        d->kind = 'b';
        size = has_digits ? size : 1;
    } else if (!has_digits) {
        size = d->kind == 'O' ? 8 : 0;
    }
    if (d->kind == 'U')
        size *= 4;
    d->itemsize = size;
    if (d->itemsize == 1 && d->byteorder == '=')
        d->byteorder = '|';
}

static int is_latin1_name(const pk_obj *s)
{
    static const char *const names[] = {"latin1", "latin-1", "latin_1", "iso-8859-1",
                                        "iso8859-1", "iso_8859_1", "l1"};
    char buf[16];
    if (s->u.b.len >= sizeof buf)
        return 0;
    for (size_t i = 0; i < s->u.b.len; i++)
        buf[i] = (char)tolower(s->u.b.ptr[i]);
    buf[s->u.b.len] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(buf, names[i]) == 0)
            return 1;
    return 0;
}

/* _codecs.encode(text, 'latin1'): each code point (< 256) of the UTF-8 text becomes
 * one byte. The text was validated as UTF-8 when it was read. */
static cspresnet_status codecs_encode(pk_unpickler *u, const pk_obj *args, pk_obj **result)
{
    if (args->u.seq.len != 2 || arg(args, 0)->kind != PK_STR || arg(args, 1)->kind != PK_STR)
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "REDUCE at offset %zu: _codecs.encode is only supported as "
                       "encode(str, 'latin1')", u->op_offset);
    const pk_obj *text = arg(args, 0), *enc = arg(args, 1);
    if (!is_latin1_name(enc)) {
        char e[64];
        pk_printable(enc->u.b.ptr, enc->u.b.len, e, sizeof e);
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "REDUCE at offset %zu: _codecs.encode with encoding '%s' is not "
                       "supported (only latin1)", u->op_offset, e);
    }
    const uint8_t *s = text->u.b.ptr;
    size_t n = text->u.b.len, count = 0;
    for (size_t i = 0; i < n; i++)
        count += (s[i] & 0xc0) != 0x80;
    uint8_t *out = pk_new_blob(u, count);
    if (!out)
        return u->alloc_status;
    /* Valid UTF-8 has only 0xxxxxxx (one byte) and 110000xx 10xxxxxx (U+0080..U+00FF)
     * below U+0100; written without data-dependent branches, as the text of float data
     * mixes both at random. A lead byte above 0xc3 is found afterwards. */
    size_t o = 0, i = 0;
    unsigned bad = 0;
    while (i + 1 < n) {
        uint8_t c = s[i];
        size_t two = c >> 7;
        unsigned mask = (unsigned)-(int)two;  /* all ones for a two-byte character */
        unsigned pair = ((c & 0x03u) << 6) | (s[i + 1] & 0x3fu);
        bad |= (unsigned)(c > 0xc3);
        out[o++] = (uint8_t)((c & ~mask) | (pair & mask));
        i += 1 + two;
    }
    if (i < n) {  /* a last single byte: ASCII (the text is valid UTF-8) */
        bad |= (unsigned)(s[i] > 0x7f);
        out[o++] = s[i];
    }
    if (bad) {
        for (i = 0; i < n && s[i] <= 0xc3; i += 1 + (s[i] >> 7))
            ;
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "REDUCE at offset %zu: _codecs.encode text has a character above "
                       "U+00FF at offset %zu, which latin-1 cannot encode", u->op_offset,
                       text->u.b.data_offset + i);
    }
    pk_obj *b = pk_new(u, PK_BYTES);
    if (!b)
        return u->alloc_status;
    b->u.b.ptr = out;
    b->u.b.len = o;
    b->u.b.data_offset = text->u.b.data_offset;
    *result = b;
    return CSPRESNET_OK;
}

cspresnet_status pk_numpy_reduce(pk_unpickler *u, const pk_obj *callable, const pk_obj *args,
                                 pk_obj **result)
{
    size_t n = args->u.seq.len;
    pk_obj *o;
    switch (callable->u.global) {
    case PKG_RECONSTRUCT:
        /* numpy always writes (ndarray, (0,), b'b'); shape and typecode are dummies that
         * BUILD replaces, but numpy still parses them, so a malformed one is refused
         * here too (the typecode must be one character, as numpy's one-letter codes). */
        if (n != 3 || arg(args, 0)->kind != PK_GLOBAL || arg(args, 0)->u.global != PKG_NDARRAY ||
            arg(args, 1)->kind != PK_TUPLE ||
            (arg(args, 2)->kind != PK_BYTES && arg(args, 2)->kind != PK_STR) ||
            arg(args, 2)->u.b.len != 1 ||
            (!isalpha(arg(args, 2)->u.b.ptr[0]) && arg(args, 2)->u.b.ptr[0] != '?'))
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "REDUCE at offset %zu: _reconstruct expects (numpy.ndarray, shape "
                           "tuple, one-letter typecode)", u->op_offset);
        if (!(o = pk_new(u, PK_NDARRAY)))
            return u->alloc_status;
        *result = o;  /* empty until BUILD */
        return CSPRESNET_OK;
    case PKG_NDARRAY:
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "REDUCE at offset %zu calls numpy.ndarray directly, which is not "
                       "supported", u->op_offset);
    case PKG_DTYPE:
        if (n < 1 || n > 3 || arg(args, 0)->kind != PK_STR)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "REDUCE at offset %zu: numpy.dtype expects (str, align, copy)",
                           u->op_offset);
        if (!(o = pk_new(u, PK_DTYPE)))
            return u->alloc_status;
        parse_dtype_str(arg(args, 0), &o->u.dtype);
        *result = o;
        return CSPRESNET_OK;
    case PKG_CODECS_ENCODE:
        return codecs_encode(u, args, result);
    case PKG_FROMBUFFER: {
        if (n != 4 || arg(args, 0)->kind != PK_BYTES || arg(args, 1)->kind != PK_DTYPE ||
            arg(args, 2)->kind != PK_TUPLE || arg(args, 3)->kind != PK_STR)
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "REDUCE at offset %zu: _frombuffer expects (bytes, dtype, shape "
                           "tuple, order)", u->op_offset);
        const pk_obj *order = arg(args, 3);
        if (order->u.b.len != 1 || (order->u.b.ptr[0] != 'C' && order->u.b.ptr[0] != 'F'))
            return pk_fail(u, CSPRESNET_ERR_FORMAT,
                           "REDUCE at offset %zu: _frombuffer order must be 'C' or 'F'",
                           u->op_offset);
        if (!(o = pk_new(u, PK_NDARRAY)))
            return u->alloc_status;
        o->u.arr.built = 1;
        o->u.arr.data = args->u.seq.items[0];
        o->u.arr.dtype = args->u.seq.items[1];
        o->u.arr.shape = args->u.seq.items[2];
        o->u.arr.fortran = order->u.b.ptr[0] == 'F';
        *result = o;
        return CSPRESNET_OK;
    }
    case PKG_BYTES:
        if (n != 0)
            return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                           "REDUCE at offset %zu: bytes() is only supported without "
                           "arguments", u->op_offset);
        if (!(o = pk_new(u, PK_BYTES)))
            return u->alloc_status;
        o->u.b.ptr = u->data;  /* any valid pointer; length 0 */
        o->u.b.len = 0;
        o->u.b.data_offset = u->op_offset;
        *result = o;
        return CSPRESNET_OK;
    }
    return pk_fail(u, CSPRESNET_ERR_FORMAT, "REDUCE at offset %zu: unknown callable",
                   u->op_offset);
}

static int is_none(const pk_obj *o)
{
    return o->kind == PK_NONE;
}

static cspresnet_status build_dtype(pk_unpickler *u, pk_obj *obj, const pk_obj *state)
{
    /* (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]) */
    if (state->kind != PK_TUPLE || state->u.seq.len < 2 || arg(state, 0)->kind != PK_INT ||
        arg(state, 1)->kind != PK_STR)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: dtype state must be a tuple (version, byteorder, "
                       "...)", u->op_offset);
    const pk_obj *bo = arg(state, 1);
    if (bo->u.b.len != 1 || bo->u.b.ptr[0] == '\0' || !strchr("<>|=", bo->u.b.ptr[0]))
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: dtype byte order must be one of '<', '>', '|', "
                       "'='", u->op_offset);
    pk_dtype *d = &obj->u.dtype;
    d->byteorder = (char)bo->u.b.ptr[0];
    size_t n = state->u.seq.len;
    if (n >= 5 && (!is_none(arg(state, 2)) || !is_none(arg(state, 3)) ||
                   !is_none(arg(state, 4))))
        d->structured = 1;
    if (n >= 6 && arg(state, 5)->kind == PK_INT && arg(state, 5)->u.i > 0 &&
        d->kind != '\0' && strchr("VSU", d->kind))
        d->itemsize = (size_t)arg(state, 5)->u.i;
    obj->offset = u->op_offset;
    return CSPRESNET_OK;
}

static cspresnet_status build_ndarray(pk_unpickler *u, pk_obj *obj, const pk_obj *state)
{
    /* (1, shape, dtype, is_fortran, data) or, older, (shape, dtype, is_fortran, data) */
    if (state->kind != PK_TUPLE || (state->u.seq.len != 5 && state->u.seq.len != 4))
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: ndarray state must be a tuple (version, shape, "
                       "dtype, is_fortran, data)", u->op_offset);
    size_t k = state->u.seq.len - 4;
    if (k == 1 && arg(state, 0)->kind != PK_INT)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: ndarray state version is a %s, not an int",
                       u->op_offset, pk_kind_name(arg(state, 0)->kind));
    pk_obj *shape = state->u.seq.items[k], *dtype = state->u.seq.items[k + 1];
    const pk_obj *fortran = arg(state, k + 2);
    pk_obj *data = state->u.seq.items[k + 3];
    if (shape->kind != PK_TUPLE || dtype->kind != PK_DTYPE ||
        (fortran->kind != PK_BOOL && fortran->kind != PK_INT))
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: ndarray state needs (shape tuple, dtype, bool), "
                       "got (%s, %s, %s)", u->op_offset, pk_kind_name(shape->kind),
                       pk_kind_name(dtype->kind), pk_kind_name(fortran->kind));
    if (data->kind == PK_LIST)
        return pk_fail(u, CSPRESNET_ERR_UNSUPPORTED,
                       "BUILD at offset %zu: an ndarray of Python objects (dtype '%s') is not "
                       "supported", u->op_offset, dtype->u.dtype.str);
    if (data->kind != PK_BYTES)
        return pk_fail(u, CSPRESNET_ERR_FORMAT,
                       "BUILD at offset %zu: ndarray data is a %s, not bytes", u->op_offset,
                       pk_kind_name(data->kind));
    obj->u.arr.built = 1;
    obj->u.arr.shape = shape;
    obj->u.arr.dtype = dtype;
    obj->u.arr.fortran = fortran->u.i != 0;
    obj->u.arr.data = data;
    obj->offset = u->op_offset;
    return CSPRESNET_OK;
}

cspresnet_status pk_numpy_build(pk_unpickler *u, pk_obj *obj, const pk_obj *state)
{
    if (obj->kind == PK_DTYPE)
        return build_dtype(u, obj, state);
    return build_ndarray(u, obj, state);
}
