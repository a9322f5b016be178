/*
 * pdparams_write.c - a .pdparams writer: the pickle paddle.save would write.
 *
 * Protocol 4 (PROTO 4, FRAMEs), written as CPython's C pickler writes it:
 *   EMPTY_DICT MEMOIZE MARK { key MEMOIZE <ndarray> }* "StructuredToParameterName@@"
 *   MEMOIZE EMPTY_DICT MEMOIZE MARK { name MEMOIZE value MEMOIZE }* SETITEMS SETITEMS STOP
 * (SETITEMS in batches of 1000, as pickle's _BATCHSIZE). An ndarray is numpy's
 * __reduce__: STACK_GLOBAL numpy.core.multiarray._reconstruct, args (numpy.ndarray,
 * (0,), b'b') TUPLE3, REDUCE, then the state (1, shape, dtype, False, bytes) and
 * BUILD. The dtype is REDUCE numpy.dtype('f4', False, True) + BUILD (3, '<', None,
 * None, None, -1, -1, 0) the first time and a BINGET afterwards; globals, the
 * repeated strings and b'b' are BINGETs after their first use, as pickle's memo makes
 * them. Every object the pickler would memoize is memoized, so memo indices match.
 *
 * Frames: opcodes collect in a frame buffer that is flushed (FRAME + 8-byte length +
 * bytes) once it holds 64 KiB at an object boundary; byte strings of 64 KiB or more
 * commit the frame and go out directly (header then payload), so large weights are
 * streamed from the model without a copy (little-endian hosts; big-endian ones swap
 * through a small buffer).
 *
 * The names table: Paddle names parameters "<layer type>_<n>.<w_0|b_0|w_1|w_2>" in
 * creation order (conv2d_3.w_0, batch_norm2d_3.w_1, ...); the exact numbers depend
 * on everything created before in the Python process, so they are plausible, not
 * reproducible, and PaddleDetection ignores them when loading a state dict.
 */
#include "io/pdparams_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "cspresnet.h"
#include "model/model.h"

#define FRAME_TARGET 65536
#define SETITEMS_BATCH 1000
#define NAME_TABLE_KEY "StructuredToParameterName@@"

enum {
    OP_MARK = '(', OP_STOP = '.', OP_BININT = 'J', OP_BININT1 = 'K', OP_BININT2 = 'M',
    OP_NONE = 'N', OP_REDUCE = 'R', OP_BINUNICODE = 'X', OP_BUILD = 'b', OP_BINGET = 'h',
    OP_LONG_BINGET = 'j', OP_SETITEM = 's', OP_TUPLE = 't', OP_SETITEMS = 'u',
    OP_EMPTY_DICT = '}', OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C', OP_PROTO = 0x80,
    OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89, OP_SHORT_BINUNICODE = 0x8c, OP_BINBYTES8 = 0x8e,
    OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95
};

/* Strings and objects that pickle's memo shares between arrays. */
enum { M_NUMPY_CORE, M_RECONSTRUCT_NAME, M_NUMPY, M_NDARRAY_NAME, M_DTYPE_NAME, M_F4, M_LT,
       M_RECONSTRUCT, M_NDARRAY, M_DTYPE_CLASS, M_DTYPE_F4, M_B, M_COUNT };

typedef struct pickler {
    atomic_file file;
    uint8_t *frame;
    size_t len, cap;
    uint32_t memo_next;
    long memo[M_COUNT];      /* memo index, -1 before first use */
    cspresnet_status failed; /* first failure (err is set), CSPRESNET_OK while fine */
    long *key_memo;          /* memo index of each array's key, reused by the name table */
    error_buf *err;
} pickler;

static void put(pickler *p, const void *data, size_t n)
{
    if (p->failed)
        return;
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : FRAME_TARGET * 2;
        while (cap < p->len + n)
            cap *= 2;
        uint8_t *q = realloc(p->frame, cap);
        if (!q) {
            p->failed = error_set(p->err, CSPRESNET_ERR_MEMORY, "%s: out of memory writing the pickle",
                                  p->file.path);
            return;
        }
        p->frame = q;
        p->cap = cap;
    }
    memcpy(p->frame + p->len, data, n);
    p->len += n;
}

static void op(pickler *p, uint8_t code) { put(p, &code, 1); }

static void le(uint8_t *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static void op_le(pickler *p, uint8_t code, uint64_t v, int bytes)
{
    uint8_t b[9];
    b[0] = code;
    le(b + 1, v, bytes);
    put(p, b, (size_t)bytes + 1);
}

static void raw_write(pickler *p, const void *data, size_t n)
{
    if (!p->failed)
        p->failed = atomic_file_write(&p->file, data, n, p->err);
}

/* Flushes the frame buffer: FRAME header unless it holds fewer than 4 bytes (CPython's
 * FRAME_SIZE_MIN), then the bytes. */
static void commit_frame(pickler *p)
{
    if (p->failed || p->len == 0)
        return;
    if (p->len >= 4) {
        uint8_t h[9];
        h[0] = OP_FRAME;
        le(h + 1, p->len, 8);
        raw_write(p, h, 9);
    }
    raw_write(p, p->frame, p->len);
    p->len = 0;
}

/* An object boundary: commit once the frame reached its target size. */
static void boundary(pickler *p)
{
    if (p->len >= FRAME_TARGET)
        commit_frame(p);
}

static void memoize(pickler *p)
{
    op(p, OP_MEMOIZE);
    p->memo_next++;
}

static void binget(pickler *p, long index)
{
    if (index < 256)
        op_le(p, OP_BINGET, (uint64_t)index, 1);
    else
        op_le(p, OP_LONG_BINGET, (uint64_t)index, 4);
}

static void save_str(pickler *p, const char *s)
{
    size_t n = strlen(s);
    if (n < 256)
        op_le(p, OP_SHORT_BINUNICODE, n, 1);
    else
        op_le(p, OP_BINUNICODE, n, 4);
    put(p, s, n);
    memoize(p);
}

/* A string or object the memo shares: BINGET after its first save. */
static int shared(pickler *p, int slot)
{
    if (p->memo[slot] >= 0) {
        binget(p, p->memo[slot]);
        return 1;
    }
    return 0;
}

static void remember(pickler *p, int slot) { p->memo[slot] = (long)p->memo_next - 1; }

static void save_shared_str(pickler *p, int slot, const char *s)
{
    if (!shared(p, slot)) {
        save_str(p, s);
        remember(p, slot);
    }
}

static void save_global(pickler *p, int slot, int module_slot, const char *module, int name_slot,
                        const char *name)
{
    if (shared(p, slot))
        return;
    save_shared_str(p, module_slot, module);
    save_shared_str(p, name_slot, name);
    op(p, OP_STACK_GLOBAL);
    memoize(p);
    remember(p, slot);
}

static void save_int(pickler *p, long v)
{
    if (v >= 0 && v < 256)
        op_le(p, OP_BININT1, (uint64_t)v, 1);
    else if (v >= 0 && v < 65536)
        op_le(p, OP_BININT2, (uint64_t)v, 2);
    else
        op_le(p, OP_BININT, (uint64_t)(uint32_t)(int32_t)v, 4);
}

/* numpy.dtype('f4', False, True) with its state (3, '<', None, None, None, -1, -1, 0). */
static void save_dtype_f4(pickler *p)
{
    if (shared(p, M_DTYPE_F4))
        return;
    save_global(p, M_DTYPE_CLASS, M_NUMPY, "numpy", M_DTYPE_NAME, "dtype");
    save_shared_str(p, M_F4, "f4");
    op(p, OP_NEWFALSE);
    op(p, OP_NEWTRUE);
    op(p, OP_TUPLE3);
    memoize(p);
    op(p, OP_REDUCE);
    memoize(p);
    remember(p, M_DTYPE_F4);
    op(p, OP_MARK);
    save_int(p, 3);
    save_shared_str(p, M_LT, "<");
    op(p, OP_NONE);
    op(p, OP_NONE);
    op(p, OP_NONE);
    save_int(p, -1);
    save_int(p, -1);
    save_int(p, 0);
    op(p, OP_TUPLE);
    memoize(p);
    op(p, OP_BUILD);
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* The raw bytes of n floats, little-endian, as a bytes object (memoized). */
static void save_float_bytes(pickler *p, const float *data, size_t n)
{
    size_t bytes = n * sizeof(float);
    uint8_t h[9];
    size_t hlen;
    if (bytes < 256) {
        h[0] = OP_SHORT_BINBYTES;
        le(h + 1, bytes, 1);
        hlen = 2;
    } else if (bytes <= 0xffffffffu) {
        h[0] = OP_BINBYTES;
        le(h + 1, bytes, 4);
        hlen = 5;
    } else {
        h[0] = OP_BINBYTES8;
        le(h + 1, bytes, 8);
        hlen = 9;
    }
    int direct = bytes >= FRAME_TARGET;
    if (direct) {
        commit_frame(p);
        raw_write(p, h, hlen);
    } else {
        put(p, h, hlen);
    }
    if (host_is_little_endian()) {
        if (direct)
            raw_write(p, data, bytes);
        else
            put(p, data, bytes);
    } else {
        uint8_t buf[4096];
        for (size_t i = 0; i < n;) {
            size_t k = 0;
            for (; i < n && k + 4 <= sizeof buf; i++, k += 4) {
                uint32_t u;
                memcpy(&u, &data[i], 4);
                le(buf + k, u, 4);
            }
            if (direct)
                raw_write(p, buf, k);
            else
                put(p, buf, k);
        }
    }
    memoize(p);
}

static void save_array(pickler *p, const pdparams_array *a)
{
    save_global(p, M_RECONSTRUCT, M_NUMPY_CORE, "numpy.core.multiarray", M_RECONSTRUCT_NAME,
                "_reconstruct");
    save_global(p, M_NDARRAY, M_NUMPY, "numpy", M_NDARRAY_NAME, "ndarray");
    save_int(p, 0);
    op(p, OP_TUPLE1);
    memoize(p);
    if (!shared(p, M_B)) {
        op_le(p, OP_SHORT_BINBYTES, 1, 1);
        put(p, "b", 1);
        memoize(p);
        remember(p, M_B);
    }
    op(p, OP_TUPLE3);
    memoize(p);
    op(p, OP_REDUCE);
    memoize(p);

    /* state: (1, shape, dtype, is_fortran, raw) */
    op(p, OP_MARK);
    save_int(p, 1);
    size_t numel = 1;
    if (a->ndim == 0) {
        op(p, ')'); /* EMPTY_TUPLE; CPython does not memoize the empty tuple */
    } else {
        if (a->ndim > 3)
            op(p, OP_MARK);
        for (int d = 0; d < a->ndim; d++) {
            save_int(p, (long)a->shape[d]);
            numel *= (size_t)a->shape[d];
        }
        op(p, a->ndim == 1 ? OP_TUPLE1 : a->ndim == 2 ? OP_TUPLE2 : a->ndim == 3 ? OP_TUPLE3 : OP_TUPLE);
        memoize(p);
    }
    save_dtype_f4(p);
    op(p, OP_NEWFALSE);
    save_float_bytes(p, a->data, numel);
    op(p, OP_TUPLE);
    memoize(p);
    op(p, OP_BUILD);
}

/* Paddle-style internal name of a parameter: "<kind>_<n>.<suffix>", n counting the
 * layers of that kind in order of first appearance (a layer's kind is set by its first
 * parameter: a detector's pred_cls weight makes "yolo_head.pred_cls.0" a conv2d). layers/kinds are scratch tables
 * of `count` entries. */
typedef struct name_table {
    char (*layer)[MODEL_KEY_MAX];
    int *layer_kind, *layer_id;
    size_t n_layers;
    int counters[4];
} name_table;

static void param_name(name_table *t, const char *key, int ndim, char *out, size_t out_size)
{
    static const char *const kinds[4] = {"conv2d", "batch_norm2d", "create_parameter", "param"};
    char layer[MODEL_KEY_MAX];
    const char *dot = strrchr(key, '.');
    const char *leaf = dot ? dot + 1 : key;
    size_t llen = dot ? (size_t)(dot - key) : 0;
    if (llen >= sizeof layer)
        llen = sizeof layer - 1;
    memcpy(layer, key, llen);
    layer[llen] = '\0';
    int kind;
    size_t ll = strlen(layer);
    if ((ll >= 3 && strcmp(layer + ll - 3, ".bn") == 0) || strcmp(layer, "bn") == 0)
        kind = 1;
    else if ((ll >= 5 && strcmp(layer + ll - 5, ".conv") == 0) || (ll >= 3 && strcmp(layer + ll - 3, ".fc") == 0))
        kind = 0;
    else if (strcmp(leaf, "alpha") == 0) {
        kind = 2;
        snprintf(layer, sizeof layer, "%s", key);
    } else
        kind = ndim == 4 ? 0 : 3; /* a conv by its weight (the head's pred_cls, proj_conv) */
    size_t i = 0;
    for (; i < t->n_layers; i++)
        if (strcmp(t->layer[i], layer) == 0)
            break;
    if (i == t->n_layers) {
        memcpy(t->layer[i], layer, sizeof layer);
        t->layer_kind[i] = kind;
        t->layer_id[i] = t->counters[kind]++;
        t->n_layers++;
    }
    const char *suffix = strcmp(leaf, "bias") == 0        ? "b_0"
                         : strcmp(leaf, "_mean") == 0     ? "w_1"
                         : strcmp(leaf, "_variance") == 0 ? "w_2"
                                                          : "w_0";
    snprintf(out, out_size, "%s_%d.%s", kinds[t->layer_kind[i]], t->layer_id[i], suffix);
}

static void save_name_table(pickler *p, const pdparams_array *arrays, size_t count)
{
    name_table t = {0};
    t.layer = malloc((count + 1) * sizeof *t.layer);
    t.layer_kind = malloc((count + 1) * sizeof *t.layer_kind);
    t.layer_id = malloc((count + 1) * sizeof *t.layer_id);
    if (!t.layer || !t.layer_kind || !t.layer_id) {
        if (!p->failed)
            p->failed = error_set(p->err, CSPRESNET_ERR_MEMORY, "%s: out of memory writing the name table",
                                  p->file.path);
        goto done;
    }
    op(p, OP_EMPTY_DICT);
    memoize(p);
    for (size_t i = 0; i < count; i += SETITEMS_BATCH) {
        size_t end = i + SETITEMS_BATCH < count ? i + SETITEMS_BATCH : count;
        if (end - i > 1)
            op(p, OP_MARK);
        for (size_t j = i; j < end; j++) {
            char name[MODEL_KEY_MAX + 32];
            param_name(&t, arrays[j].key, arrays[j].ndim, name, sizeof name);
            /* paddle.save fills the table with the state dict's own key objects, which
             * pickle's memo turns into BINGETs */
            binget(p, p->key_memo[j]);
            save_str(p, name);
        }
        op(p, end - i > 1 ? OP_SETITEMS : OP_SETITEM);
        boundary(p);
    }
done:
    free(t.layer);
    free(t.layer_kind);
    free(t.layer_id);
}

cspresnet_status pdparams_write_file(const char *path, const pdparams_array *arrays, size_t count,
                                     error_buf *err)
{
    for (size_t i = 0; i < count; i++) {
        if (!arrays[i].key || !arrays[i].key[0] || arrays[i].ndim < 0 || arrays[i].ndim > 4 ||
            (!arrays[i].data && arrays[i].ndim > 0))
            return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: array %zu has no key, data or a valid rank",
                             path, i);
        if (strcmp(arrays[i].key, NAME_TABLE_KEY) == 0)
            return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: '%s' is reserved for Paddle's name table",
                             path, NAME_TABLE_KEY);
        for (int d = 0; d < arrays[i].ndim; d++)
            if (arrays[i].shape[d] < 0 || arrays[i].shape[d] > 0x7fffffff)
                return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: '%s' has a bad dimension %lld", path,
                                 arrays[i].key, (long long)arrays[i].shape[d]);
    }
    pickler p = {.err = err};
    for (int i = 0; i < M_COUNT; i++)
        p.memo[i] = -1;
    p.key_memo = malloc((count + 1) * sizeof *p.key_memo);
    if (!p.key_memo)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    cspresnet_status s = atomic_file_open(&p.file, path, err);
    if (s != CSPRESNET_OK) {
        free(p.key_memo);
        return s;
    }

    op_le(&p, OP_PROTO, 4, 1);
    /* CPython writes PROTO before the first frame: flush it unframed. */
    raw_write(&p, p.frame, p.len);
    p.len = 0;
    op(&p, OP_EMPTY_DICT);
    memoize(&p);
    size_t total = count + 1; /* + the name table */
    for (size_t i = 0; i < total; i += SETITEMS_BATCH) {
        size_t end = i + SETITEMS_BATCH < total ? i + SETITEMS_BATCH : total;
        if (end - i > 1)
            op(&p, OP_MARK);
        for (size_t j = i; j < end; j++) {
            if (j < count) {
                save_str(&p, arrays[j].key);
                p.key_memo[j] = (long)p.memo_next - 1;
                save_array(&p, &arrays[j]);
            } else {
                save_str(&p, NAME_TABLE_KEY);
                save_name_table(&p, arrays, count);
            }
            boundary(&p);
        }
        op(&p, end - i > 1 ? OP_SETITEMS : OP_SETITEM);
    }
    op(&p, OP_STOP);
    commit_frame(&p);
    free(p.frame);
    free(p.key_memo);
    if (p.failed) {
        atomic_file_abort(&p.file);
        return p.failed;
    }
    return atomic_file_commit(&p.file, err);
}

cspresnet_status cspresnet_model_save_pdparams(const cspresnet_model *m, const char *path, char *err,
                                               size_t err_size)
{
    error_buf e;
    cspresnet_status s;
    pdparams_array *arrays = NULL;
    if (!m || !path) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_save_pdparams: model and path must not be NULL");
        goto done;
    }
    if (m->deployed) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT,
                      "%s: a deployed (fused) model cannot be written as .pdparams: upstream's CSPResNet has "
                      "no layout for fused convs with bias (it would not load in PaddleDetection); convert the "
                      "un-deployed weights instead, or write safetensors",
                      path);
        goto done;
    }
    arrays = calloc(m->n_params + 1, sizeof *arrays);
    if (!arrays) {
        s = error_set(&e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *pi = &m->params[i];
        arrays[i].key = pi->key;
        arrays[i].ndim = pi->ndim;
        for (int d = 0; d < pi->ndim; d++)
            arrays[i].shape[d] = pi->shape[d];
        arrays[i].data = param_at(m->weights, pi);
    }
    s = pdparams_write_file(path, arrays, m->n_params, &e);
done:
    free(arrays);
    return error_finish(&e, s, err, err_size);
}
