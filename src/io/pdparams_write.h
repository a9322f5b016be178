/*
 * pdparams_write.h - writing state dicts the way paddle.save does (.pdparams).
 *
 * The output is a pickle, protocol 4 (what paddle.save writes since Paddle 2.1), of a
 * dict key -> numpy.ndarray (float32, C order) in the order given, followed by the
 * entry "StructuredToParameterName@@" (dict str -> str of Paddle-style internal
 * names). Arrays are pickled exactly as numpy pickles them (SPEC §3):
 * numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') then BUILD with
 * (1, shape, dtype('f4', False, True) + its BUILD state, False, raw bytes). Framing
 * follows CPython's pickler: 64 KiB frames, byte strings of 64 KiB or more written
 * outside frames. Python's pickle.load (with numpy) reads the file back into the same
 * dict; no global other than those numpy itself writes is referenced.
 *
 * Files are written atomically (core/atomic_file.h).
 */
#ifndef CSPRESNET_IO_PDPARAMS_WRITE_H
#define CSPRESNET_IO_PDPARAMS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* One float32 array of the state dict to write. */
typedef struct pdparams_array {
    const char *key;          /* UTF-8, no NUL */
    int ndim;                 /* 0..4 */
    int64_t shape[4];
    const float *data;        /* prod(shape) floats, C order, host byte order */
} pdparams_array;

/* Writes arrays[0..count-1] (in that order) and a name table built from the keys
 * (pdparams_param_name) to path. */
cspresnet_status pdparams_write_file(const char *path, const pdparams_array *arrays, size_t count,
                                     error_buf *err);

#endif
