/*
 * cspresnet_io.h - the file helpers of libcspresnet, for programs that feed the network
 * and keep what it computes: NumPy .npy arrays in and out, files that appear whole or
 * not at all, and reading a pipe or FIFO once, whole, into memory.
 *
 *     cspresnet_array x;
 *     char err[1024];
 *     if (cspresnet_npy_read("batch.npy", &x, err, sizeof err) != CSPRESNET_OK)
 *         { fprintf(stderr, "%s\n", err); return 1; }
 *     // x.data holds x.numel floats, shape x.shape[0 .. x.ndim-1], C order
 *     cspresnet_forward(ctx, x.data, (int)x.shape[0], (int)x.shape[1], ...);
 *     cspresnet_npy_write("stage3.npy", outs[0].data, 4, shape, err, sizeof err);
 *     cspresnet_array_free(&x);
 *
 * Part of the core library (libc only, nothing to link besides libcspresnet). Errors
 * as in cspresnet.h: every fallible call returns a cspresnet_status and writes a
 * one-line message naming the file (and the header field or byte offset at fault)
 * into the caller's err buffer (err, err_size; both may be 0/NULL). Every function is
 * thread-safe on distinct arguments.
 */
#ifndef CSPRESNET_IO_H
#define CSPRESNET_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cspresnet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- .npy arrays (format versions 1.0, 2.0, 3.0) */

#define CSPRESNET_ARRAY_MAX_NDIM 8

/* A float32 array in C order. */
typedef struct cspresnet_array {
    int ndim;                                  /* 0 (a scalar) .. CSPRESNET_ARRAY_MAX_NDIM */
    int64_t shape[CSPRESNET_ARRAY_MAX_NDIM];   /* shape[0 .. ndim-1] */
    int64_t numel;                             /* product of the shape (1 for ndim 0) */
    float *data;                               /* numel floats, malloc'd: cspresnet_array_free */
} cspresnet_array;

/* Reads an .npy file of float16, float32 or float64 in either byte order and in C or
 * Fortran order, and gives float32 in C order (numpy's astype(float32) of the C-order
 * array). Any other dtype, a malformed header or a short file is refused, the message
 * naming the file and the offending header field. On failure *out is empty. */
cspresnet_status cspresnet_npy_read(const char *path, cspresnet_array *out, char *err, size_t err_size);

/* The same from an .npy file's bytes in memory (not kept; name stands for the file in
 * messages). */
cspresnet_status cspresnet_npy_read_memory(const void *data, size_t size, const char *name,
                                           cspresnet_array *out, char *err, size_t err_size);

/* Writes data (the product of shape[0 .. ndim-1] floats, C order) as a version 1.0
 * '<f4' file, atomically as cspresnet_atomic_file_open describes. */
cspresnet_status cspresnet_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                                     char *err, size_t err_size);

/* The same for int32 values: a '<i4' file (counts, labels). */
cspresnet_status cspresnet_npy_write_int32(const char *path, const int32_t *data, int ndim, const int64_t *shape,
                                           char *err, size_t err_size);

/* Frees a->data and empties *a. NULL and an empty array are fine. */
void cspresnet_array_free(cspresnet_array *a);

/* ---- Atomic files: whole or not at all */

typedef struct cspresnet_atomic_file cspresnet_atomic_file;

/* Creates "<path>.tmp.<pid>.<n>" beside path; writes go there, and commit fsyncs it and
 * renames it over path, so that a failed or interrupted writer never leaves a
 * truncated file under the final name. A path that exists and is not a regular file
 * (/dev/null, /dev/full, a FIFO, a link to one) is written directly instead: a rename
 * would replace the device, and its write errors (ENOSPC of /dev/full) must reach the
 * caller. *out is owned by the caller until commit or abort. */
cspresnet_status cspresnet_atomic_file_open(const char *path, cspresnet_atomic_file **out, char *err,
                                            size_t err_size);
/* Writes all n bytes (short writes retried). After a failed write every later write
 * and the commit fail too (CSPRESNET_ERR_IO; the first failure's message names path). */
cspresnet_status cspresnet_atomic_file_write(cspresnet_atomic_file *f, const void *data, size_t n, char *err,
                                             size_t err_size);
/* fsync, close and rename into place; frees f whatever happens (on failure the
 * temporary file is removed). */
cspresnet_status cspresnet_atomic_file_commit(cspresnet_atomic_file *f, char *err, size_t err_size);
/* Closes f, removes its temporary file and frees it. NULL is fine. */
void cspresnet_atomic_file_abort(cspresnet_atomic_file *f);

/* open + write + commit of one buffer (abort on any failure). */
cspresnet_status cspresnet_write_file_atomic(const char *path, const void *data, size_t n, char *err,
                                             size_t err_size);

/* ---- Streams: a pipe, FIFO or device (/dev/stdin) read once, whole */

/* What a stop function sees: the first CSPRESNET_STREAM_HEAD_BYTES bytes (fewer only
 * when the stream is shorter). */
#define CSPRESNET_STREAM_HEAD_BYTES 9
/* The most a stream may hold: what the weight readers accept from a pipe (16 GiB;
 * PP-YOLOE+ x is about 400 MB). */
#define CSPRESNET_STREAM_MAX_BYTES ((uint64_t)16 << 30)

/* Called once with the first bytes; returning 1 stops the read there, so that a
 * stream that is no file the caller knows (/dev/zero, a text) is not read to its end;
 * the caller's parser then reports those bytes. */
typedef int (*cspresnet_stream_stop_fn)(const uint8_t *head, size_t n);

/* Reads f from its position to its end into a malloc'd *buf (*size bytes; the caller
 * frees it). More than limit bytes is an error naming name and the limit, reported as
 * soon as the limit is passed; the buffer grows only with the bytes that arrive. A
 * stream can be read only once and a FIFO reopened after its writer has finished
 * blocks forever, which is why formats are told apart from these bytes, never by
 * reopening. stop may be NULL. */
cspresnet_status cspresnet_stream_read_all(FILE *f, const char *name, uint64_t limit, cspresnet_stream_stop_fn stop,
                                           uint8_t **buf, size_t *size, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* CSPRESNET_IO_H */
