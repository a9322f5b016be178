/*
 * io_public.c - include/cspresnet_io.h: the public face of the .npy reader and writer
 * (io/npy.c), the atomic file writer (core/atomic_file.c) and the whole-stream reader
 * (core/stream_read.c). Only argument forms change here: error_buf becomes the caller's
 * (err, err_size), npy_array a cspresnet_array; the messages are the internals' own.
 */
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/status.h"
#include "core/stream_read.h"
#include "cspresnet_io.h"
#include "io/npy.h"
#include "io/pdparams.h"

_Static_assert(CSPRESNET_ARRAY_MAX_NDIM == NPY_MAX_NDIM, "cspresnet_array holds every npy_array");
_Static_assert(CSPRESNET_STREAM_HEAD_BYTES == STREAM_HEAD_BYTES, "stop functions see the same head");
_Static_assert(CSPRESNET_STREAM_MAX_BYTES == PDPARAMS_MAX_FILE_BYTES, "the weight readers' stream limit");

static void array_out(npy_array *a, cspresnet_array *out)
{
    memset(out, 0, sizeof *out);
    out->ndim = a->ndim;
    memcpy(out->shape, a->shape, sizeof out->shape);
    out->numel = a->numel;
    out->data = a->data;
}

static cspresnet_status done(cspresnet_status st, const error_buf *e, char *err, size_t err_size)
{
    if (st != CSPRESNET_OK)
        error_copy_out(e, err, err_size);
    return st;
}

cspresnet_status cspresnet_npy_read(const char *path, cspresnet_array *out, char *err, size_t err_size)
{
    npy_array a = {0};
    error_buf e;
    if (!out)
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_npy_read: NULL argument"), &e, err, err_size);
    cspresnet_status st = npy_read(path, &a, &e);
    array_out(&a, out);
    return done(st, &e, err, err_size);
}

cspresnet_status cspresnet_npy_read_memory(const void *data, size_t size, const char *name,
                                           cspresnet_array *out, char *err, size_t err_size)
{
    npy_array a = {0};
    error_buf e;
    if (!out)
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_npy_read_memory: NULL argument"), &e, err,
                    err_size);
    cspresnet_status st = npy_read_memory(data, size, name, &a, &e);
    array_out(&a, out);
    return done(st, &e, err, err_size);
}

cspresnet_status cspresnet_npy_write(const char *path, const float *data, int ndim, const int64_t *shape,
                                     char *err, size_t err_size)
{
    error_buf e;
    return done(npy_write(path, data, ndim, shape, &e), &e, err, err_size);
}

cspresnet_status cspresnet_npy_write_int32(const char *path, const int32_t *data, int ndim, const int64_t *shape,
                                           char *err, size_t err_size)
{
    error_buf e;
    return done(npy_write_int32(path, data, ndim, shape, &e), &e, err, err_size);
}

void cspresnet_array_free(cspresnet_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

struct cspresnet_atomic_file {
    atomic_file file;
};

cspresnet_status cspresnet_atomic_file_open(const char *path, cspresnet_atomic_file **out, char *err,
                                            size_t err_size)
{
    error_buf e;
    if (!path || !out)
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_atomic_file_open: NULL argument"), &e, err,
                    err_size);
    *out = NULL;
    cspresnet_atomic_file *f = malloc(sizeof *f);
    if (!f)
        return done(error_set(&e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path), &e, err, err_size);
    cspresnet_status st = atomic_file_open(&f->file, path, &e);
    if (st != CSPRESNET_OK) {
        free(f);
        return done(st, &e, err, err_size);
    }
    *out = f;
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_atomic_file_write(cspresnet_atomic_file *f, const void *data, size_t n, char *err,
                                             size_t err_size)
{
    error_buf e;
    if (!f || (!data && n))
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_atomic_file_write: NULL argument"), &e, err,
                    err_size);
    if (f->file.failed) /* the internal writer keeps the first failure's message only */
        return done(error_set(&e, CSPRESNET_ERR_IO, "%s: an earlier write failed", f->file.path), &e, err,
                    err_size);
    return done(atomic_file_write(&f->file, data, n, &e), &e, err, err_size);
}

cspresnet_status cspresnet_atomic_file_commit(cspresnet_atomic_file *f, char *err, size_t err_size)
{
    error_buf e;
    if (!f)
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_atomic_file_commit: NULL argument"), &e, err,
                    err_size);
    cspresnet_status st = atomic_file_commit(&f->file, &e);
    free(f);
    return done(st, &e, err, err_size);
}

void cspresnet_atomic_file_abort(cspresnet_atomic_file *f)
{
    if (!f)
        return;
    atomic_file_abort(&f->file);
    free(f);
}

cspresnet_status cspresnet_write_file_atomic(const char *path, const void *data, size_t n, char *err,
                                             size_t err_size)
{
    cspresnet_atomic_file *f;
    cspresnet_status st = cspresnet_atomic_file_open(path, &f, err, err_size);
    if (st != CSPRESNET_OK)
        return st;
    st = cspresnet_atomic_file_write(f, data, n, err, err_size);
    if (st != CSPRESNET_OK) {
        cspresnet_atomic_file_abort(f);
        return st;
    }
    return cspresnet_atomic_file_commit(f, err, err_size);
}

cspresnet_status cspresnet_stream_read_all(FILE *f, const char *name, uint64_t limit, cspresnet_stream_stop_fn stop,
                                           uint8_t **buf, size_t *size, char *err, size_t err_size)
{
    error_buf e;
    if (!f || !name || !buf || !size)
        return done(error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_stream_read_all: NULL argument"), &e, err,
                    err_size);
    return done(stream_read_all(f, name, limit, stop, buf, size, &e), &e, err, err_size);
}
