/*
 * status.h - errors as values inside the library.
 *
 * Every fallible internal function returns a cspresnet_status and, on failure,
 * writes one line into an error_buf owned by its caller (a context, or a stack
 * buffer that create/load functions copy into the caller's err buffer). There is
 * no global error state.
 */
#ifndef CSPRESNET_CORE_STATUS_H
#define CSPRESNET_CORE_STATUS_H

#include <stdint.h>

#include "cspresnet.h"

typedef struct error_buf {
    char text[1024];
} error_buf;

/* Formats the message into err (if not NULL) and returns code, so that callers can
 * write `return error_set(err, CSPRESNET_ERR_FORMAT, "%s: ...", path);`. */
cspresnet_status error_set(error_buf *err, cspresnet_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: ". */
void error_prefix(error_buf *err, const char *prefix);

/* Copies err's text into a caller buffer of size n (n may be 0). */
void error_copy_out(const error_buf *err, char *out, size_t n);

/* The end of a public call that reports into a caller buffer: on failure copies err's
 * text into out, on success leaves out empty; returns status, so that the call can
 * end with `return error_finish(&e, s, err, err_size);`. */
cspresnet_status error_finish(const error_buf *err, cspresnet_status status, char *out, size_t n);

/* "[d0, d1, ...]" of a shape into out (n bytes, truncated), for messages. */
void error_shape_str(char *out, size_t n, int ndim, const int64_t *shape);

#endif
