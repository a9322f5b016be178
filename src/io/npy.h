/*
 * npy.h - NumPy .npy files for inputs and outputs (format versions 1.0, 2.0, 3.0).
 *
 * Reading accepts float16, float32 and float64 in either byte order and in C or Fortran
 * order, and returns float32 in C order (numpy's astype(float32) of the C-order array);
 * anything else is refused with a message naming the file and the offending header field. Writing produces a
 * version 1.0 file ('<f4', or '<i4' for counts; C order), written to a temporary file in the same folder
 * and renamed into place so that a failed write never leaves a valid-looking file.
 */
#ifndef CSPRESNET_IO_NPY_H
#define CSPRESNET_IO_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define NPY_MAX_NDIM 8

typedef struct npy_array {
    int ndim;
    int64_t shape[NPY_MAX_NDIM];
    int64_t numel;
    float *data;  /* malloc'd, owned by the caller: npy_array_free */
} npy_array;

cspresnet_status npy_read(const char *path, npy_array *out, error_buf *err);
/* The same from memory (not copied; name is used in messages). The data is read as a
 * stream of unknown size, so its buffer grows only with the bytes present. */
cspresnet_status npy_read_memory(const uint8_t *data, size_t size, const char *name,
                                 npy_array *out, error_buf *err);
cspresnet_status npy_write(const char *path, const float *data, int ndim,
                           const int64_t *shape, error_buf *err);
/* The same for int32 values ('<i4'): counts such as the detector's bbox_num. */
cspresnet_status npy_write_int32(const char *path, const int32_t *data, int ndim,
                                 const int64_t *shape, error_buf *err);
void npy_array_free(npy_array *a);

#endif
