/*
 * fashion_mnist.c - Fashion-MNIST IDX reader (gzip via zlib) and the image transform
 * of `cspresnet train` (see fashion_mnist.h). Header fields are checked before any
 * allocation; a short file is reported with the byte offset where data ran out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fashion_mnist.h"

static int read_exact(gzFile f, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads one IDX file: magic, count and (for images) 28 x 28; returns the data. */
static uint8_t *read_idx(const char *path, uint32_t want_magic, int limit, int *count, char *err,
                         size_t err_size)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "cannot open %s (install the Debian package dataset-fashion-mnist "
                 "or pass --data-dir)", path);
        return NULL;
    }
    int dims = want_magic == 0x803 ? 3 : 1;
    unsigned char h[16];
    uint8_t *data = NULL;
    if (read_exact(f, h, 4 + 4 * (size_t)dims) != 0) {
        snprintf(err, err_size, "%s: truncated IDX header (fewer than %d bytes)", path, 4 + 4 * dims);
        goto fail;
    }
    if (be32(h) != want_magic) {
        snprintf(err, err_size, "%s: IDX magic 0x%08x at offset 0, expected 0x%08x", path,
                 (unsigned)be32(h), (unsigned)want_magic);
        goto fail;
    }
    uint32_t n = be32(h + 4);
    if (dims == 3 && (be32(h + 8) != FMNIST_SIDE || be32(h + 12) != FMNIST_SIDE)) {
        snprintf(err, err_size, "%s: images are %ux%u (offset 8), expected 28x28", path,
                 (unsigned)be32(h + 8), (unsigned)be32(h + 12));
        goto fail;
    }
    if (n == 0 || n > 10000000u) {
        snprintf(err, err_size, "%s: item count %u at offset 4 is out of range", path, (unsigned)n);
        goto fail;
    }
    if (limit > 0 && (uint32_t)limit < n)
        n = (uint32_t)limit;
    size_t item = dims == 3 ? FMNIST_SIDE * FMNIST_SIDE : 1;
    data = malloc((size_t)n * item);
    if (!data) {
        snprintf(err, err_size, "%s: out of memory for %u items", path, (unsigned)n);
        goto fail;
    }
    if (read_exact(f, data, (size_t)n * item) != 0) {
        snprintf(err, err_size, "%s: data ends before offset %zu (%u items expected)", path,
                 4 + 4 * (size_t)dims + (size_t)n * item, (unsigned)n);
        goto fail;
    }
    gzclose(f);
    *count = (int)n;
    return data;
fail:
    free(data);
    gzclose(f);
    return NULL;
}

int fmnist_load(const char *dir, const char *split, int limit, fmnist_split *out, char *err,
                size_t err_size)
{
    char ip[4096], lp[4096];
    memset(out, 0, sizeof *out);
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    int ni = 0, nl = 0;
    out->images = read_idx(ip, 0x803, limit, &ni, err, err_size);
    if (!out->images)
        return -1;
    out->labels = read_idx(lp, 0x801, limit, &nl, err, err_size);
    if (!out->labels) {
        fmnist_free(out);
        return -1;
    }
    if (ni != nl) {
        snprintf(err, err_size, "%s holds %d images but %s holds %d labels", ip, ni, lp, nl);
        fmnist_free(out);
        return -1;
    }
    for (int i = 0; i < nl; i++)
        if (out->labels[i] >= FMNIST_CLASSES) {
            snprintf(err, err_size, "%s: label %d at offset %d is not in 0..9", lp, out->labels[i], 8 + i);
            fmnist_free(out);
            return -1;
        }
    out->count = ni;
    return 0;
}

void fmnist_free(fmnist_split *s)
{
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

void fmnist_image(const fmnist_split *s, int i, int size, float *out)
{
    const uint8_t *src = s->images + (size_t)i * FMNIST_SIDE * FMNIST_SIDE;
    const int pad = (size - FMNIST_SIDE) / 2;
    const float zero = (0.0f - FMNIST_MEAN) / FMNIST_STD;
    const long plane = (long)size * size;
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            int sy = y - pad, sx = x - pad;
            float v = zero;
            if (sy >= 0 && sy < FMNIST_SIDE && sx >= 0 && sx < FMNIST_SIDE)
                v = (src[sy * FMNIST_SIDE + sx] / 255.0f - FMNIST_MEAN) / FMNIST_STD;
            out[(long)y * size + x] = v;
        }
    memcpy(out + plane, out, (size_t)plane * sizeof(float));
    memcpy(out + 2 * plane, out, (size_t)plane * sizeof(float));
}
