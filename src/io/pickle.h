/*
 * pickle.h - a small pickle interpreter that never runs code (used by pdparams.c).
 *
 * It understands the data opcodes of pickle protocols 2 to 5 (ints, floats, str,
 * bytes, tuples, lists, dicts, the memo, marks and frames) and exactly the globals
 * needed to rebuild a numpy array. Every object lives in one arena owned by the
 * pk_unpickler and dies with it (pk_free), so memoized objects may be shared freely:
 * nothing is reference counted, nothing is freed twice. Byte strings point into the
 * caller's buffer (zero copy), except those decoded from protocol-2 latin-1 text,
 * which live in "blobs" that the caller may take over (pk_take_blobs) to keep them
 * alive after the interpreter is gone.
 *
 * Allowed globals (anything else is refused with CSPRESNET_ERR_UNSAFE when the
 * GLOBAL or STACK_GLOBAL opcode is read, before any REDUCE):
 *   numpy.core.multiarray._reconstruct, numpy._core.multiarray._reconstruct,
 *   numpy.ndarray, numpy.dtype, _codecs.encode (text, 'latin1'),
 *   numpy.core.numeric._frombuffer, numpy._core.numeric._frombuffer (protocol 5:
 *   numpy writes arrays as _frombuffer(buffer, dtype, shape, order) there),
 *   builtins.bytes / __builtin__.bytes called with no arguments (protocol 2 writes an
 *   empty bytes object that way, e.g. the data of an array with a zero dimension).
 * REDUCE and BUILD run only our own C code for these.
 *
 * Limits (each refused with a message naming the offset):
 *   memo indices < PK_MAX_MEMO, at most PK_MAX_MARKS nested MARKs, at most PK_MAX_STACK
 *   items on the stack, at most PK_MAX_ARENA bytes of interpreter objects, and decoded
 *   byte strings (protocol-2 latin-1 blobs) totalling at most the size of the pickle
 *   itself (a memoized text decoded again and again cannot inflate memory). Every
 *   length field is checked against the bytes that remain (and against the current
 *   frame) before anything is allocated. Nothing recurses over objects, so deeply
 *   nested containers cost no C stack.
 */
#ifndef CSPRESNET_IO_PICKLE_H
#define CSPRESNET_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define PK_MAX_MEMO 1000000u            /* memo indices 0 .. 999,999 */
#define PK_MAX_MARKS 1000u              /* nested MARKs */
#define PK_MAX_STACK 1000000u           /* items on the stack, all marks together */
#define PK_MAX_ARENA ((size_t)1 << 30)  /* bytes of interpreter objects (not data) */

typedef enum pk_kind {
    PK_NONE = 0,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,      /* UTF-8 text, validated */
    PK_BYTES,    /* bytes or bytearray */
    PK_TUPLE,
    PK_LIST,
    PK_DICT,     /* pairs in insertion order; duplicates kept, resolved by the reader */
    PK_GLOBAL,   /* one of the allowed callables / classes */
    PK_DTYPE,    /* numpy.dtype */
    PK_NDARRAY   /* numpy.ndarray */
} pk_kind;

typedef enum pk_global {
    PKG_RECONSTRUCT = 0,  /* numpy.(_)core.multiarray._reconstruct */
    PKG_NDARRAY,          /* numpy.ndarray */
    PKG_DTYPE,            /* numpy.dtype */
    PKG_CODECS_ENCODE,    /* _codecs.encode */
    PKG_FROMBUFFER,       /* numpy.(_)core.numeric._frombuffer */
    PKG_BYTES             /* builtins.bytes, no arguments only */
} pk_global;

typedef struct pk_obj pk_obj;

typedef struct pk_seq {
    pk_obj **items;  /* tuple/list: len items; dict: 2 * len (key, value, key, value...) */
    size_t len;
    size_t cap;
} pk_seq;

typedef struct pk_bytes {
    const uint8_t *ptr;   /* into the input buffer, or into a blob */
    size_t len;
    size_t data_offset;   /* offset in the input of the data (or of the text it came from) */
} pk_bytes;

typedef struct pk_dtype {
    char str[16];         /* numpy's type string without byte order, e.g. "f4", "i8" */
    char kind;            /* 'f', 'i', 'u', 'b', 'c', 'U', 'S', 'V', 'O', 'M', 'm'... */
    size_t itemsize;      /* 0 when the string is not understood */
    char byteorder;       /* '<', '>', '|' or '=' */
    int structured;       /* names, fields or a sub-array in the BUILD state */
} pk_dtype;

typedef struct pk_ndarray {
    int built;            /* 0 after _reconstruct until BUILD gives the state */
    pk_obj *dtype;        /* PK_DTYPE */
    pk_obj *shape;        /* PK_TUPLE (elements checked by the reader) */
    int fortran;          /* data stored in Fortran (column-major) order */
    pk_obj *data;         /* PK_BYTES */
} pk_ndarray;

struct pk_obj {
    pk_kind kind;
    size_t offset;        /* offset of the opcode that made (or last rebuilt) it */
    union {
        int64_t i;        /* PK_BOOL, PK_INT */
        double f;         /* PK_FLOAT */
        pk_bytes b;       /* PK_STR, PK_BYTES */
        pk_seq seq;       /* PK_TUPLE, PK_LIST, PK_DICT */
        pk_global global; /* PK_GLOBAL */
        pk_dtype dtype;   /* PK_DTYPE */
        pk_ndarray arr;   /* PK_NDARRAY */
    } u;
};

/* A decoded byte string that outlives the interpreter when taken over. */
typedef struct pk_blob {
    struct pk_blob *next;
    size_t size;
    /* size bytes follow */
} pk_blob;

typedef struct pk_chunk pk_chunk;

typedef struct pk_unpickler {
    const uint8_t *data;  /* the whole pickle, not owned */
    size_t size;
    const char *name;     /* for messages */
    error_buf *err;

    size_t pos;           /* next byte to read */
    size_t frame_end;     /* end of the current frame, 0 when outside frames */
    size_t op_offset;     /* offset of the opcode being run */
    uint8_t op;

    pk_obj **stack;
    size_t sp, stack_cap;
    size_t *marks;        /* stack heights at each MARK */
    size_t nmarks;
    pk_obj **memo;
    size_t memo_cap, memo_count;

    pk_chunk *chunks;     /* arena */
    size_t arena_bytes;
    pk_blob *blobs;
    size_t blob_bytes;    /* total size of the blobs made, at most size */
    cspresnet_status alloc_status;  /* why the last allocation failed */

    pk_obj *none, *true_obj, *false_obj;
} pk_unpickler;

void pk_init(pk_unpickler *u, const uint8_t *data, size_t size, const char *name);

/* Runs the pickle up to STOP. On success *result is the top object, valid until
 * pk_free. On failure err holds "<name>: <what> at offset N". */
cspresnet_status pk_load(pk_unpickler *u, pk_obj **result, error_buf *err);

/* Hands over the decoded byte strings (free them with pk_blobs_free). */
pk_blob *pk_take_blobs(pk_unpickler *u);
void pk_blobs_free(pk_blob *b);

void pk_free(pk_unpickler *u);

/* "int", "str", "ndarray"... for messages. */
const char *pk_kind_name(pk_kind kind);

/* ---- shared between pickle.c, pickle_arena.c, pickle_numpy.c and pickle_opcodes.c ---- */

/* Formats "<name>: <message>" into the error buffer and returns code. */
cspresnet_status pk_fail(pk_unpickler *u, cspresnet_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the out-of-memory message for size bytes, keeps it in u->alloc_status and
 * returns it. */
cspresnet_status pk_out_of_memory(pk_unpickler *u, size_t size);

/* size bytes (rounded up to 16) from the arena; NULL (u->alloc_status set, error
 * written) when out of memory or over PK_MAX_ARENA. */
void *pk_arena_alloc(pk_unpickler *u, size_t size);

/* A new object of kind made by the current opcode; NULL (u->alloc_status set, error
 * written) when out of memory or over PK_MAX_ARENA. */
pk_obj *pk_new(pk_unpickler *u, pk_kind kind);

/* size bytes that live as long as the interpreter, or are handed over (blob). */
uint8_t *pk_new_blob(pk_unpickler *u, size_t size);

/* 1 and *out set when module.name is one of the allowed globals, else 0. */
int pk_allowed_global(const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen,
                      pk_global *out);

/* Calls an allowed global: callable(*args). */
cspresnet_status pk_numpy_reduce(pk_unpickler *u, const pk_obj *callable, const pk_obj *args,
                                 pk_obj **result);

/* BUILD obj with state (obj is a PK_DTYPE or PK_NDARRAY). */
cspresnet_status pk_numpy_build(pk_unpickler *u, pk_obj *obj, const pk_obj *state);

/* Opcode name ("BINUNICODE"), or NULL for a byte that is no opcode. */
const char *pk_op_name(uint8_t op);

/* The message and status for the opcode u->op, which the interpreter does not run. */
cspresnet_status pk_refuse(pk_unpickler *u);

/* " (looks like a PNG image)" and the like, for a file that is no pickle. */
const char *pk_not_a_pickle_hint(const uint8_t *data, size_t size);

/* Writes s (n bytes) into out as printable ASCII (escapes others), truncated to fit. */
void pk_printable(const uint8_t *s, size_t n, char *out, size_t out_size);

#endif
