/* stream_read.c - see stream_read.h. */
#include "core/stream_read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

cspresnet_status stream_read_all(FILE *f, const char *name, uint64_t limit, stream_stop_fn stop, uint8_t **buf,
                                 size_t *size, error_buf *err)
{
    *buf = NULL;
    *size = 0;
    size_t cap = 65536, n = 0;
    int asked = stop == NULL;
    uint8_t *b = malloc(cap);
    if (!b)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory reading", name);
    for (;;) {
        if (n == cap) {
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            uint8_t *nb = ncap > cap ? realloc(b, ncap) : NULL;
            if (!nb) {
                free(b);
                return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory after reading %zu bytes", name, n);
            }
            b = nb;
            cap = ncap;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if ((uint64_t)n > limit) {
            free(b);
            return error_set(err, CSPRESNET_ERR_FORMAT, "%s: more than the limit of %llu bytes for a weight file",
                             name, (unsigned long long)limit);
        }
        if (got == 0 && ferror(f)) {
            int e = errno;
            free(b);
            return error_set(err, CSPRESNET_ERR_IO, "%s: read error after %zu bytes: %s", name, n, strerror(e));
        }
        if (!asked && (n >= STREAM_HEAD_BYTES || got == 0)) {
            asked = 1;
            if (stop(b, n))
                break;
        }
        if (got == 0)
            break;
    }
    *buf = b;
    *size = n;
    return CSPRESNET_OK;
}
