/* atomic_file.c - temporary file + fsync + rename; see atomic_file.h. */
#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static void release(atomic_file *f)
{
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
}

cspresnet_status atomic_file_open(atomic_file *f, const char *path, error_buf *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t tlen = strlen(path) + 64;
    f->path = strdup(path);
    f->tmp_path = malloc(tlen);
    if (!f->path || !f->tmp_path) {
        release(f);
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    }
    /* An existing target that is not a regular file (/dev/null, /dev/full, a FIFO, or a
     * symlink to one) cannot be replaced by a rename without destroying it (as root,
     * /dev/null itself): write into it directly, so that its write errors are reported. */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        f->fd = open(path, O_WRONLY | O_CLOEXEC);
        if (f->fd < 0) {
            cspresnet_status st = error_set(err, CSPRESNET_ERR_IO, "%s: cannot open for writing: %s",
                                            path, strerror(errno));
            release(f);
            return st;
        }
        free(f->tmp_path);
        f->tmp_path = NULL;  /* direct: nothing to rename or remove */
        return CSPRESNET_OK;
    }
    for (int attempt = 0; attempt < 100 && f->fd < 0; attempt++) {
        snprintf(f->tmp_path, tlen, "%s.tmp.%ld.%d", path, (long)getpid(), attempt);
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd < 0 && errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        cspresnet_status st = error_set(err, CSPRESNET_ERR_IO, "%s: cannot create the temporary file %s: %s",
                                        path, f->tmp_path, strerror(errno));
        release(f);
        return st;
    }
    return CSPRESNET_OK;
}

cspresnet_status atomic_file_write(atomic_file *f, const void *data, size_t n, error_buf *err)
{
    const uint8_t *p = data;
    if (f->failed)
        return CSPRESNET_ERR_IO;
    while (n) {
        ssize_t w = write(f->fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            f->failed = 1;
            f->saved_errno = errno;
            return error_set(err, CSPRESNET_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return CSPRESNET_OK;
}

cspresnet_status atomic_file_commit(atomic_file *f, error_buf *err)
{
    const char *step = "write";
    int ok = !f->failed, saved = f->saved_errno;
    if (ok && fsync(f->fd) != 0 && !(f->tmp_path == NULL && (errno == EINVAL || errno == EROFS))) {
        step = "fsync";
        saved = errno;
        ok = 0;
    }
    if (close(f->fd) != 0 && ok) {
        step = "close";
        saved = errno;
        ok = 0;
    }
    f->fd = -1;
    if (ok && f->tmp_path && rename(f->tmp_path, f->path) != 0) {
        step = "rename into place";
        saved = errno;
        ok = 0;
    }
    cspresnet_status st = CSPRESNET_OK;
    if (!ok && f->tmp_path) {
        unlink(f->tmp_path);
        st = error_set(err, CSPRESNET_ERR_IO, "%s: %s failed: %s (temporary file removed)", f->path, step,
                       strerror(saved));
    } else if (!ok) {
        st = error_set(err, CSPRESNET_ERR_IO, "%s: %s failed: %s", f->path, step, strerror(saved));
    }
    release(f);
    return st;
}

void atomic_file_abort(atomic_file *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
    if (f->tmp_path)
        unlink(f->tmp_path);
    release(f);
}
