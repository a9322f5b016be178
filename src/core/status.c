/* status.c - error message formatting; see status.h. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

cspresnet_status error_set(error_buf *err, cspresnet_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return code;
}

void error_prefix(error_buf *err, const char *prefix)
{
    if (!err || !prefix)
        return;
    char tmp[sizeof err->text];
    size_t plen = strlen(prefix);
    if (plen > sizeof tmp - 3)
        plen = sizeof tmp - 3;
    memcpy(tmp, prefix, plen);
    memcpy(tmp + plen, ": ", 2);
    size_t rest = sizeof tmp - plen - 3;
    size_t tlen = strnlen(err->text, sizeof err->text);
    if (tlen > rest)
        tlen = rest;
    memcpy(tmp + plen + 2, err->text, tlen);
    tmp[plen + 2 + tlen] = '\0';
    memcpy(err->text, tmp, sizeof tmp);
}

void error_copy_out(const error_buf *err, char *out, size_t n)
{
    if (!out || n == 0)
        return;
    snprintf(out, n, "%s", err ? err->text : "");
}

cspresnet_status error_finish(const error_buf *err, cspresnet_status status, char *out, size_t n)
{
    if (status != CSPRESNET_OK)
        error_copy_out(err, out, n);
    else if (out && n)
        out[0] = '\0';
    return status;
}

const char *cspresnet_status_name(cspresnet_status status)
{
    switch (status) {
    case CSPRESNET_OK: return "ok";
    case CSPRESNET_ERR_ARGUMENT: return "invalid argument";
    case CSPRESNET_ERR_CONFIG: return "invalid configuration";
    case CSPRESNET_ERR_IO: return "I/O error";
    case CSPRESNET_ERR_FORMAT: return "format error";
    case CSPRESNET_ERR_UNSAFE: return "unsafe content refused";
    case CSPRESNET_ERR_WEIGHTS: return "weights do not fit the model";
    case CSPRESNET_ERR_UNSUPPORTED: return "unsupported";
    case CSPRESNET_ERR_MEMORY: return "out of memory";
    case CSPRESNET_ERR_NOT_FINITE: return "not finite";
    case CSPRESNET_ERR_SHAPE: return "wrong input shape";
    }
    return "unknown status";
}

void error_shape_str(char *out, size_t n, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(out + used, n - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (used < n)
        snprintf(out + used, n - used, "]");
}
