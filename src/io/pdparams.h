/*
 * pdparams.h - reading the state dicts that paddle.save writes (.pdparams).
 *
 * A .pdparams file is a plain Python pickle (protocol 2 from Paddle 1.8/2.0,
 * protocol 4 since 2.1) of a dict key -> numpy.ndarray, plus the entry
 * "StructuredToParameterName@@" (a dict of str -> str) that we skip. See SPEC §3.
 *
 * The reader is a small pickle interpreter that knows only data opcodes and the
 * numpy globals needed to rebuild an ndarray (numpy.core.multiarray._reconstruct or
 * numpy._core.multiarray._reconstruct, numpy.ndarray, numpy.dtype, and
 * _codecs.encode for protocol-2 bytes; also numpy.(_)core.numeric._frombuffer, which
 * numpy writes for protocol 5, and bytes() without arguments, which protocol 2 writes
 * for empty bytes). Any other global or opcode is refused with
 * CSPRESNET_ERR_UNSAFE / CSPRESNET_ERR_FORMAT *before* anything else happens; nothing
 * in a file is ever executed. Sizes are checked against the file before allocating.
 * Details, limits and decisions (duplicate keys, trailing bytes): pickle.h, pdparams.c.
 */
#ifndef CSPRESNET_IO_PDPARAMS_H
#define CSPRESNET_IO_PDPARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define PDPARAMS_MAX_NDIM 8
/* Sane limits, checked before anything is allocated for them (README "Reliability"). */
#define PDPARAMS_MAX_FILE_BYTES ((uint64_t)16 << 30)  /* 16 GiB; PP-YOLOE+ x is ~400 MB */
#define PDPARAMS_MAX_KEY_LEN 1024u                    /* bytes of one key (real: < 100) */
#define PDPARAMS_MAX_ENTRIES 100000u                  /* top-level keys (real: < 2,000) */
/* The arrays of a state dict may add up to at most the file's size plus this much:
 * numpy never shares data between keys, but a pickle can (memo), and without a bound
 * a small file could describe a model of many gigabytes built from one array. */
#define PDPARAMS_SHARED_SLACK ((uint64_t)64 << 20)

typedef enum array_dtype {
    DTYPE_F32 = 0,
    DTYPE_F64,
    DTYPE_F16,
    DTYPE_BF16,  /* bfloat16: safetensors only (numpy has no such dtype) */
    DTYPE_I8,    /* safetensors int8 files' conv weights (exact as float) */
    DTYPE_I32,   /* safetensors int8 files' zero points; refused by array_to_f32 */
    DTYPE_OTHER  /* anything else numpy can describe; refused by array_to_f32 */
} array_dtype;

/* One ndarray of the state dict, as stored. */
typedef struct array_entry {
    char *key;                         /* NUL-terminated UTF-8 key, owned by the dict */
    array_dtype dtype;
    char dtype_str[16];                /* numpy's name, e.g. "f4", "f8", "i8" (for messages) */
    int big_endian;                    /* byte order '>' */
    int fortran_order;                 /* is_fortran flag of the ndarray state */
    int ndim;
    int64_t shape[PDPARAMS_MAX_NDIM];
    int64_t numel;                     /* product of shape (1 for ndim 0) */
    const uint8_t *raw;                /* numel * itemsize bytes, owned by the dict */
    size_t raw_size;
    size_t file_offset;                /* byte offset of the data in the file, for messages */
} array_entry;

/* A top-level entry whose value is not an ndarray, kept so that a loader can say what
 * it found under a key it needed. */
typedef struct other_entry {
    const char *key;                   /* NUL-terminated UTF-8 key, owned by the dict */
    const char *type;                  /* Python type name: "list", "None", "str", "int", ... */
} other_entry;

typedef struct state_dict {
    array_entry *entries;              /* in file (insertion) order */
    size_t count;
    size_t skipped_non_array;          /* entries such as StructuredToParameterName@@ */
    other_entry *others;               /* those entries (skipped_non_array of them), in file order */
    void *storage;                     /* private: file bytes and decoded copies */
} state_dict;

/* Reads path into *out. On failure *out is left empty (nothing to free) and err names
 * the file and the byte offset or key at fault. */
cspresnet_status pdparams_read_file(const char *path, state_dict *out, error_buf *err);

/* Same, from memory (the bytes are copied). name is used in messages. */
cspresnet_status pdparams_read_memory(const uint8_t *data, size_t size, const char *name,
                                      state_dict *out, error_buf *err);

/* Same, over the caller's bytes without a copy: they must stay valid and unchanged until
 * state_dict_free. */
cspresnet_status pdparams_read_borrowed(const uint8_t *data, size_t size, const char *name,
                                        state_dict *out, error_buf *err);

void state_dict_free(state_dict *sd);

/* Tells the dict that e's data has been copied out: when the file is mapped, the
 * pages wholly inside it are dropped from memory (read again from the file if e is
 * used later, so this is only about memory, never about correctness). */
void state_dict_release(const state_dict *sd, const array_entry *e);

/* Finds a key; NULL when absent (a view without storage is searched in order). */
const array_entry *state_dict_find(const state_dict *sd, const char *key);

/* Converts an entry to float32 C order into dst (numel floats): f32 copied, f64,
 * f16 and bf16 converted, big-endian swapped, Fortran order transposed. Other dtypes are
 * refused with CSPRESNET_ERR_UNSUPPORTED naming the key and dtype. */
cspresnet_status array_to_f32(const array_entry *a, float *dst, error_buf *err);

#endif
