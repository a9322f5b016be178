/*
 * atomic_file.h - write a file so that it either appears whole or not at all.
 *
 * atomic_file_open creates "<path>.tmp.<pid>.<n>" (O_EXCL) beside the target;
 * writes go there; atomic_file_commit fsyncs, closes and renames it over the target;
 * any failure (or atomic_file_abort) removes the temporary file. An interrupted or
 * failed run therefore never leaves a truncated file under the final name. A target
 * that exists and is not a regular file (/dev/null, /dev/full, a FIFO, a symlink to
 * one) is written directly instead: a rename would replace the device itself, and its
 * write errors (ENOSPC from /dev/full) must reach the caller. Every
 * writer of outputs (.npy, .safetensors, .pdparams, PNG, checkpoints) uses this.
 */
#ifndef CSPRESNET_CORE_ATOMIC_FILE_H
#define CSPRESNET_CORE_ATOMIC_FILE_H

#include <stddef.h>

#include "core/status.h"

typedef struct atomic_file {
    int fd;          /* -1 when closed */
    int failed;      /* a write failed; commit will refuse */
    int saved_errno;
    char *path;      /* target (owned copy) */
    char *tmp_path;  /* temporary (owned) */
} atomic_file;

cspresnet_status atomic_file_open(atomic_file *f, const char *path, error_buf *err);
/* Writes all n bytes (retrying short writes); on failure the error names the target. */
cspresnet_status atomic_file_write(atomic_file *f, const void *data, size_t n, error_buf *err);
/* fsync + close + rename into place; frees f's strings whatever happens. */
cspresnet_status atomic_file_commit(atomic_file *f, error_buf *err);
/* Closes and removes the temporary file; frees f's strings. Safe after commit. */
void atomic_file_abort(atomic_file *f);

#endif
