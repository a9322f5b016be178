/*
 * npy.c - NumPy .npy files (format 1.0, 2.0 and 3.0) for inputs and outputs.
 *
 * Layout: "\x93NUMPY", major, minor, header length (2 bytes little-endian in 1.0,
 * 4 bytes in 2.0 and 3.0), then the header: a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and
 * ending in '\n', then the raw data.
 *
 * Reading accepts float16, float32 and float64 ('<f2', '<f4', '<f8' and their '>'
 * big-endian forms) in C or Fortran order, version X.0 with X in 1..3, a header of at
 * most NPY_MAX_HEADER bytes holding exactly the three keys, and shapes of at most
 * NPY_MAX_NDIM non-negative dimensions whose byte size fits. Every array is returned
 * as float32 in C order, converted by array_to_f32 (the .pdparams weights' rule): the
 * values are numpy's astype(float32) of the C-order array, so numpy's default float64,
 * a big-endian file or np.asfortranarray data give the same input as a '<f4' file. The data must be exactly
 * as long as the header says: a shorter file is refused naming the expected and the
 * actual byte counts, and so is a longer one (trailing bytes after the data mean the
 * file is not what its header claims, so it is refused rather than silently
 * truncated). The size is checked against the file before the data is allocated;
 * for a stream of unknown size (a pipe, npy_read_memory) the buffer grows only with
 * the bytes that arrive, so a header claiming 10^12 values costs nothing.
 *
 * Writing produces version 1.0 ('<f4', or '<i4' for counts; C order, header padded to 64 bytes as numpy
 * does) into "<path>.tmp.<pid>.<n>" in the same folder, flushed with fsync, then
 * renamed over path; on any error the temporary file is removed and path untouched.
 */
#include "io/npy.h"
#include "io/pdparams.h"
#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_HEADER ((size_t)1 << 20)
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_STREAM_CHUNK ((size_t)1 << 20)  /* first buffer for data of unknown size */

static int host_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 0;
}

static void swap4(uint8_t *p, size_t count)
{
    for (size_t i = 0; i < count; i++, p += 4) {
        uint8_t t = p[0];
        p[0] = p[3];
        p[3] = t;
        t = p[1];
        p[1] = p[2];
        p[2] = t;
    }
}

void npy_array_free(npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- header parsing */

typedef struct hdr {
    const char *s;
    size_t n, i;
    const char *path;
    error_buf *err;
    array_dtype dtype;   /* from 'descr' */
    size_t itemsize;
    int big_endian;
    int fortran_order;
} hdr;

/* '<f4' and its kin: byte order '<' or '>', then f2, f4 or f8. */
static int parse_descr(hdr *h, const char *d, size_t dlen)
{
    if (dlen != 3 || (d[0] != '<' && d[0] != '>') || d[1] != 'f')
        return 0;
    h->big_endian = d[0] == '>';
    switch (d[2]) {
    case '2': h->dtype = DTYPE_F16; h->itemsize = 2; return 1;
    case '4': h->dtype = DTYPE_F32; h->itemsize = 4; return 1;
    case '8': h->dtype = DTYPE_F64; h->itemsize = 8; return 1;
    default: return 0;
    }
}

static void skip_ws(hdr *h)
{
    while (h->i < h->n && (h->s[h->i] == ' ' || h->s[h->i] == '\t' || h->s[h->i] == '\n' ||
                           h->s[h->i] == '\r'))
        h->i++;
}

static cspresnet_status hdr_fail(hdr *h, const char *what)
{
    return error_set(h->err, CSPRESNET_ERR_FORMAT,
                     "%s: npy header is not a valid dict: %s at header byte %zu", h->path,
                     what, h->i);
}

static int accept(hdr *h, char c)
{
    skip_ws(h);
    if (h->i < h->n && h->s[h->i] == c) {
        h->i++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes; str and len point into the header. */
static cspresnet_status parse_string(hdr *h, const char **str, size_t *len)
{
    skip_ws(h);
    if (h->i >= h->n || (h->s[h->i] != '\'' && h->s[h->i] != '"'))
        return hdr_fail(h, "expected a quoted string");
    char q = h->s[h->i++];
    size_t start = h->i;
    while (h->i < h->n && h->s[h->i] != q) {
        if (h->s[h->i] == '\\')
            return hdr_fail(h, "escapes in strings are not supported");
        h->i++;
    }
    if (h->i >= h->n)
        return hdr_fail(h, "unterminated string");
    *str = h->s + start;
    *len = h->i - start;
    h->i++;
    return CSPRESNET_OK;
}

static int word(hdr *h, const char *w)
{
    size_t n = strlen(w);
    skip_ws(h);
    if (h->n - h->i >= n && memcmp(h->s + h->i, w, n) == 0) {
        h->i += n;
        return 1;
    }
    return 0;
}

static cspresnet_status parse_shape(hdr *h, npy_array *out)
{
    if (!accept(h, '('))
        return hdr_fail(h, "'shape' is not a tuple");
    out->ndim = 0;
    while (!accept(h, ')')) {
        skip_ws(h);
        int neg = h->i < h->n && h->s[h->i] == '-';
        if (neg)
            h->i++;
        if (h->i >= h->n || h->s[h->i] < '0' || h->s[h->i] > '9')
            return hdr_fail(h, "'shape' holds something other than integers");
        uint64_t v = 0;
        int big = 0;
        while (h->i < h->n && h->s[h->i] >= '0' && h->s[h->i] <= '9') {
            if (v > (uint64_t)(INT64_MAX - 9) / 10)
                big = 1;
            else
                v = v * 10 + (uint64_t)(h->s[h->i] - '0');
            h->i++;
        }
        if (h->i < h->n && h->s[h->i] == 'L')  /* Python 2 longs */
            h->i++;
        if (neg && v != 0)
            return error_set(h->err, CSPRESNET_ERR_FORMAT,
                             "%s: npy shape dimension %d is negative", h->path, out->ndim);
        if (big)
            return error_set(h->err, CSPRESNET_ERR_FORMAT,
                             "%s: npy shape dimension %d is too large", h->path, out->ndim);
        if (out->ndim >= NPY_MAX_NDIM)
            return error_set(h->err, CSPRESNET_ERR_UNSUPPORTED,
                             "%s: npy shape has more than %d dimensions", h->path,
                             NPY_MAX_NDIM);
        out->shape[out->ndim++] = (int64_t)v;
        if (accept(h, ','))
            continue;
        if (!accept(h, ')'))
            return hdr_fail(h, "expected ',' or ')' in 'shape'");
        break;
    }
    return CSPRESNET_OK;
}

static cspresnet_status parse_header(hdr *h, npy_array *out)
{
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    cspresnet_status st;
    if (!accept(h, '{'))
        return hdr_fail(h, "it does not start with '{'");
    while (!accept(h, '}')) {
        const char *key;
        size_t klen;
        if ((st = parse_string(h, &key, &klen)) != CSPRESNET_OK)
            return st;
        if (!accept(h, ':'))
            return hdr_fail(h, "expected ':'");
        if (klen == 5 && memcmp(key, "descr", 5) == 0 && !have_descr) {
            const char *d;
            size_t dlen;
            skip_ws(h);
            if (h->i < h->n && h->s[h->i] == '[')
                return error_set(h->err, CSPRESNET_ERR_UNSUPPORTED,
                                 "%s: npy dtype is a structured dtype; only float16, float32 and "
                                 "float64 ('<f2', '<f4', '<f8' or big-endian '>') are supported", h->path);
            if ((st = parse_string(h, &d, &dlen)) != CSPRESNET_OK)
                return st;
            if (!parse_descr(h, d, dlen))
                return error_set(h->err, CSPRESNET_ERR_UNSUPPORTED,
                                 "%s: npy dtype '%.*s' is not supported; only float16, float32 and "
                                 "float64 ('<f2', '<f4', '<f8' or big-endian '>') are", h->path,
                                 (int)(dlen > 40 ? 40 : dlen), d);
            have_descr = 1;
        } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0 && !have_fortran) {
            if (word(h, "True"))
                h->fortran_order = 1;
            else if (!word(h, "False"))
                return hdr_fail(h, "'fortran_order' is not True or False");
            have_fortran = 1;
        } else if (klen == 5 && memcmp(key, "shape", 5) == 0 && !have_shape) {
            if ((st = parse_shape(h, out)) != CSPRESNET_OK)
                return st;
            have_shape = 1;
        } else {
            return error_set(h->err, CSPRESNET_ERR_FORMAT,
                             "%s: npy header has an unexpected or repeated key '%.*s'", h->path,
                             (int)(klen > 40 ? 40 : klen), key);
        }
        if (accept(h, ','))
            continue;
        if (!accept(h, '}'))
            return hdr_fail(h, "expected ',' or '}'");
        break;
    }
    if (!have_descr || !have_fortran || !have_shape)
        return error_set(h->err, CSPRESNET_ERR_FORMAT,
                         "%s: npy header lacks the key '%s'", h->path,
                         !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    skip_ws(h);
    if (h->i != h->n)
        return hdr_fail(h, "unexpected text after the dict");
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- reading */

static cspresnet_status read_exact(FILE *f, void *buf, size_t n, size_t *got)
{
    *got = fread(buf, 1, n, f);
    return *got == n ? CSPRESNET_OK : (ferror(f) ? CSPRESNET_ERR_IO : CSPRESNET_ERR_FORMAT);
}

/* The data of a stream whose size is unknown (a pipe, a device, memory): the buffer
 * grows with the bytes that actually arrive, so a header that claims more than the
 * stream holds costs no more memory than the stream itself. */
static cspresnet_status read_stream_data(FILE *f, npy_array *out, size_t nbytes, size_t *got)
{
    size_t cap = nbytes < NPY_STREAM_CHUNK ? nbytes : NPY_STREAM_CHUNK, n = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    *got = 0;
    if (!buf)
        return CSPRESNET_ERR_MEMORY;
    out->data = (float *)buf;
    while (n < nbytes) {
        if (n == cap) {
            size_t ncap = cap > nbytes / 2 ? nbytes : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb)
                return CSPRESNET_ERR_MEMORY;
            buf = nb;
            out->data = (float *)buf;
            cap = ncap;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        *got = n;
        if (k == 0)
            return ferror(f) ? CSPRESNET_ERR_IO : CSPRESNET_ERR_FORMAT;
    }
    return CSPRESNET_OK;
}

/* The preamble and the header dict: fills out->ndim and out->shape, *h with the dtype,
 * byte order and layout, and *data_start with the offset of the data. */
static cspresnet_status read_header(FILE *f, const char *path, npy_array *out, hdr *h,
                                    size_t *data_start, error_buf *err)
{
    uint8_t pre[12];
    size_t got;
    cspresnet_status st = read_exact(f, pre, 10, &got);
    if (st == CSPRESNET_ERR_IO)
        return error_set(err, st, "%s: read error: %s", path, strerror(errno));
    if (got < NPY_MAGIC_LEN || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: not a .npy file (bad magic; expected \\x93NUMPY)", path);
    if (got < 10)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: npy file ends inside the preamble (%zu bytes)", path, got);
    int major = pre[6], minor = pre[7];
    if ((major < 1 || major > 3) || minor != 0)
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                         "%s: npy format version %d.%d is not supported (1.0, 2.0 and 3.0 are)",
                         path, major, minor);
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        hstart = 10;
    } else {
        st = read_exact(f, pre + 10, 2, &got);
        if (st != CSPRESNET_OK)
            return error_set(err, st, "%s: npy file ends inside the preamble", path);
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
               (size_t)pre[11] << 24;
        hstart = 12;
    }
    if (hlen > NPY_MAX_HEADER)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: npy header length %zu exceeds the limit of %zu bytes", path, hlen,
                         NPY_MAX_HEADER);
    char *text = malloc(hlen ? hlen : 1);
    if (!text)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory for the header", path);
    st = read_exact(f, text, hlen, &got);
    if (st != CSPRESNET_OK) {
        free(text);
        return error_set(err, st, "%s: npy header is truncated: %zu of %zu bytes", path, got,
                         hlen);
    }
    *h = (hdr){.s = text, .n = hlen, .path = path, .err = err};
    st = parse_header(h, out);
    free(text);
    h->s = NULL;
    *data_start = hstart + hlen;
    return st;
}

/* The nbytes of data into out->data. A regular file's size is checked first, so a
 * header that claims more than the file holds allocates nothing; after the data the
 * stream must end. */
static cspresnet_status read_data(FILE *f, const char *path, const hdr *h, npy_array *out,
                                  size_t nbytes, size_t data_start, error_buf *err)
{
    const char *type_name = h->dtype == DTYPE_F64 ? "float64"
                            : h->dtype == DTYPE_F16 ? "float16" : "float32";
    struct stat sb;
    size_t got;
    cspresnet_status st;
    int fd = fileno(f), is_regular = fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    if (is_regular) {
        uint64_t fsize = (uint64_t)sb.st_size;
        uint64_t have = fsize > data_start ? fsize - data_start : 0;
        if (have < nbytes)
            return error_set(err, CSPRESNET_ERR_FORMAT,
                             "%s: npy data is truncated: the header says %lld %s values "
                             "(%zu bytes) but only %llu bytes follow it", path,
                             (long long)out->numel, type_name, nbytes, (unsigned long long)have);
        if (have > nbytes)
            return error_set(err, CSPRESNET_ERR_FORMAT,
                             "%s: npy file has %llu bytes after the data (expected %zu data "
                             "bytes, found %llu)", path, (unsigned long long)(have - nbytes),
                             nbytes, (unsigned long long)have);
        out->data = malloc(nbytes ? nbytes : 1);
        if (!out->data)
            return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory for %zu bytes", path,
                             nbytes);
        st = read_exact(f, out->data, nbytes, &got);
    } else {
        st = read_stream_data(f, out, nbytes, &got);
        if (st == CSPRESNET_ERR_MEMORY)
            return error_set(err, st, "%s: out of memory after %zu of %zu data bytes", path, got,
                             nbytes);
    }
    if (st == CSPRESNET_ERR_IO)
        return error_set(err, st, "%s: read error: %s", path, strerror(errno));
    if (st != CSPRESNET_OK)
        return error_set(err, st,
                         "%s: npy data is truncated: the header says %zu bytes but only %zu "
                         "follow it", path, nbytes, got);
    uint8_t extra;
    if (fread(&extra, 1, 1, f) == 1)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: npy file has bytes after the data",
                         path);
    return CSPRESNET_OK;
}

/* Replaces out->data (nbytes as the header describes them) with float32 in C order,
 * converted as .pdparams weights are (array_to_f32). */
static cspresnet_status convert_to_f32(const char *path, const hdr *h, npy_array *out,
                                       size_t nbytes, error_buf *err)
{
    int64_t numel = out->numel;
    float *conv = malloc(numel ? (size_t)numel * sizeof(float) : 1);
    if (!conv)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory for %zu bytes", path,
                         (size_t)numel * sizeof(float));
    array_entry a = {0};
    a.key = (char *)path;
    a.dtype = h->dtype;
    snprintf(a.dtype_str, sizeof a.dtype_str, "f%zu", h->itemsize);
    a.big_endian = h->big_endian;
    a.fortran_order = h->fortran_order;
    a.ndim = out->ndim;
    _Static_assert(NPY_MAX_NDIM <= PDPARAMS_MAX_NDIM, "npy shapes fit an array_entry");
    memcpy(a.shape, out->shape, sizeof out->shape);
    a.numel = numel;
    a.raw = (const uint8_t *)out->data;
    a.raw_size = nbytes;
    cspresnet_status st = array_to_f32(&a, conv, err);
    if (st != CSPRESNET_OK) {
        free(conv);
        return st;
    }
    free(out->data);
    out->data = conv;
    return CSPRESNET_OK;
}

static cspresnet_status read_body(FILE *f, const char *path, npy_array *out, error_buf *err)
{
    hdr h;
    size_t data_start = 0;
    cspresnet_status st = read_header(f, path, out, &h, &data_start, err);
    if (st != CSPRESNET_OK)
        return st;
    int64_t numel = 1;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] && numel > INT64_MAX / 8 / out->shape[i])
            return error_set(err, CSPRESNET_ERR_FORMAT,
                             "%s: npy shape is too large (dimension %d is %lld)", path, i,
                             (long long)out->shape[i]);
        numel *= out->shape[i];
    }
    if ((uint64_t)numel > SIZE_MAX / 8)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: npy shape is too large", path);
    out->numel = numel;
    size_t nbytes = (size_t)numel * h.itemsize;
    if ((st = read_data(f, path, &h, out, nbytes, data_start, err)) != CSPRESNET_OK)
        return st;
    if (h.dtype == DTYPE_F32 && h.big_endian == host_big_endian() &&
        (!h.fortran_order || out->ndim < 2))
        return CSPRESNET_OK;  /* already float32 in C order, in the host's byte order */
    return convert_to_f32(path, &h, out, nbytes, err);
}

/* Reads the stream f, which it closes; out is freed on failure. */
static cspresnet_status read_and_close(FILE *f, const char *name, npy_array *out,
                                       error_buf *err)
{
    cspresnet_status st = read_body(f, name, out, err);
    fclose(f);
    if (st != CSPRESNET_OK)
        npy_array_free(out);
    return st;
}

cspresnet_status npy_read(const char *path, npy_array *out, error_buf *err)
{
    if (!out || !path)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "npy_read: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(err, CSPRESNET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return error_set(err, CSPRESNET_ERR_IO, "%s: is a directory", path);
    }
    return read_and_close(f, path, out, err);
}

cspresnet_status npy_read_memory(const uint8_t *data, size_t size, const char *name,
                                 npy_array *out, error_buf *err)
{
    if (!out || (!data && size))
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "npy_read_memory: NULL argument");
    memset(out, 0, sizeof *out);
    if (!name)
        name = "(memory)";
    if (size == 0)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: not a .npy file (bad magic; expected \\x93NUMPY)", name);
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: cannot open a memory stream", name);
    return read_and_close(f, name, out, err);
}

/* ---------------------------------------------------------------- writing */

/* Header (preamble included) for a version 1.0 C-order file of descr ('<f4', '<i4');
 * returns its length, padded so that the data starts on a 64-byte boundary. */
static size_t make_header(char *buf, size_t cap, const char *descr, int ndim, const int64_t *shape)
{
    char dict[512];
    size_t o = (size_t)snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(dict + o, sizeof dict - o, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    o += (size_t)snprintf(dict + o, sizeof dict - o, "%s), }", ndim == 1 ? "," : "");
    size_t total = 10 + o + 1;                 /* preamble, dict, '\n' */
    total = (total + 63) / 64 * 64;
    if (total > cap)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, o);
    memset(buf + 10 + o, ' ', hlen - o - 1);
    buf[total - 1] = '\n';
    return total;
}

/* numel 4-byte values (float32 or int32), little-endian on any host. */
static cspresnet_status write_data(atomic_file *f, const void *data, size_t numel, error_buf *err)
{
    if (!host_big_endian())
        return atomic_file_write(f, data, numel * 4, err);
    uint8_t chunk[4096];
    for (size_t i = 0; i < numel;) {
        size_t k = numel - i < sizeof chunk / 4 ? numel - i : sizeof chunk / 4;
        memcpy(chunk, (const uint8_t *)data + i * 4, k * 4);
        swap4(chunk, k);
        cspresnet_status st = atomic_file_write(f, chunk, k * 4, err);
        if (st != CSPRESNET_OK)
            return st;
        i += k;
    }
    return CSPRESNET_OK;
}

/* An .npy file of 4-byte values of descr. */
static cspresnet_status write_4byte(const char *path, const char *descr, const void *data, int ndim,
                                    const int64_t *shape, error_buf *err)
{
    if (!path || (ndim > 0 && !shape))
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "npy_write: NULL argument");
    if (ndim < 0 || ndim > NPY_MAX_NDIM)
        return error_set(err, CSPRESNET_ERR_ARGUMENT,
                         "%s: cannot write %d dimensions (0 to %d are allowed)", path, ndim,
                         NPY_MAX_NDIM);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && numel > INT64_MAX / 4 / shape[i]))
            return error_set(err, CSPRESNET_ERR_ARGUMENT,
                             "%s: bad shape: dimension %d is %lld", path, i,
                             (long long)shape[i]);
        numel *= shape[i];
    }
    if ((uint64_t)numel > SIZE_MAX / 4 || (numel > 0 && !data))
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: no data for %lld values", path,
                         (long long)numel);
    char header[1024];
    size_t hsize = make_header(header, sizeof header, descr, ndim, shape);
    if (hsize == 0)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: header too long", path);

    atomic_file f;
    cspresnet_status st = atomic_file_open(&f, path, err);
    if (st != CSPRESNET_OK)
        return st;
    st = atomic_file_write(&f, header, hsize, err);
    if (st == CSPRESNET_OK)
        st = write_data(&f, data, (size_t)numel, err);
    if (st != CSPRESNET_OK) {
        atomic_file_abort(&f);
        return st;
    }
    return atomic_file_commit(&f, err);
}

cspresnet_status npy_write(const char *path, const float *data, int ndim,
                           const int64_t *shape, error_buf *err)
{
    return write_4byte(path, "<f4", data, ndim, shape, err);
}

cspresnet_status npy_write_int32(const char *path, const int32_t *data, int ndim,
                                 const int64_t *shape, error_buf *err)
{
    return write_4byte(path, "<i4", data, ndim, shape, err);
}
