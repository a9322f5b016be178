/*
 * array_convert.c - state-dict entries to float32 in C order (see pdparams.h).
 *
 * The raw bytes may sit at any alignment (they point into the file), so every item
 * is loaded with memcpy. f8 -> f32 rounds to nearest even, as numpy's astype does
 * (values beyond the float range become +-inf); f2 -> f32 is exact (subnormals, inf
 * and NaN included), and so is bf16 -> f32 (the upper half of a float32's bits). Big-endian items are byte-swapped; Fortran-order data is
 * transposed into C order.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "io/pdparams.h"

static int host_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t bits;
    float f;
    if (exp == 0) {
        f = (float)mant * (1.0f / 16777216.0f);  /* mant * 2^-24, exact */
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Rounds like an IEEE conversion, without C's undefined out-of-range cast. */
static float double_to_float(double d)
{
    const double limit = 340282356779733661637539395458142568448.0;  /* 2^128 - 2^103 */
    if (d > FLT_MAX || d < -FLT_MAX) {
        /* up to FLT_MAX + half an ulp the value still rounds to FLT_MAX */
        if (d < limit && d > -limit)
            return d > 0 ? FLT_MAX : -FLT_MAX;
        return d > 0 ? INFINITY : -INFINITY;
    }
    return (float)d;  /* NaN and in-range values */
}

/* One item at p (itemsize bytes, swapped when swap) as float. */
static float load_item(const uint8_t *p, array_dtype dtype, int swap)
{
    uint8_t b[8];
    size_t n = dtype == DTYPE_F64 ? 8 : dtype == DTYPE_F16 || dtype == DTYPE_BF16 ? 2 : dtype == DTYPE_I8 ? 1 : 4;
    for (size_t i = 0; i < n; i++)
        b[i] = swap ? p[n - 1 - i] : p[i];
    switch (dtype) {
    case DTYPE_I8:
        return (float)(int8_t)b[0];
    case DTYPE_F64: {
        double d;
        memcpy(&d, b, 8);
        return double_to_float(d);
    }
    case DTYPE_F16: {
        uint16_t h;
        memcpy(&h, b, 2);
        return half_to_float(h);
    }
    case DTYPE_BF16: {
        uint16_t h;
        memcpy(&h, b, 2);
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    default: {
        float f;
        memcpy(&f, b, 4);
        return f;
    }
    }
}

cspresnet_status array_to_f32(const array_entry *a, float *dst, error_buf *err)
{
    if (!a || (!dst && a->numel > 0))
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "array_to_f32: NULL argument");
    if (a->dtype != DTYPE_F32 && a->dtype != DTYPE_F64 && a->dtype != DTYPE_F16 &&
        a->dtype != DTYPE_BF16 && a->dtype != DTYPE_I8)
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                         "key '%s': dtype '%s' cannot be converted to float32 (only f4, f8 "
                         "and f2 can)", a->key ? a->key : "?", a->dtype_str);
    size_t itemsize = a->dtype == DTYPE_F64 ? 8 : a->dtype == DTYPE_F16 || a->dtype == DTYPE_BF16 ? 2
                    : a->dtype == DTYPE_I8 ? 1 : 4;
    if (a->numel < 0 || a->ndim < 0 || a->ndim > PDPARAMS_MAX_NDIM ||
        (uint64_t)a->numel > a->raw_size / itemsize)
        return error_set(err, CSPRESNET_ERR_ARGUMENT,
                         "key '%s': entry has %lld items but only %zu bytes",
                         a->key ? a->key : "?", (long long)a->numel, a->raw_size);
    int swap = a->big_endian != host_big_endian();
    size_t numel = (size_t)a->numel;
    const uint8_t *src = a->raw;

    if (!a->fortran_order || a->ndim < 2) {
        if (a->dtype == DTYPE_F32 && !swap) {
            if (numel)
                memcpy(dst, src, numel * 4);
        } else {
            for (size_t i = 0; i < numel; i++)
                dst[i] = load_item(src + i * itemsize, a->dtype, swap);
        }
        return CSPRESNET_OK;
    }

    /* Fortran order: the source walks the index with the first axis fastest; the
     * destination offset follows the C strides. */
    size_t cstride[PDPARAMS_MAX_NDIM], idx[PDPARAMS_MAX_NDIM] = {0};
    size_t s = 1;
    for (int d = a->ndim - 1; d >= 0; d--) {
        cstride[d] = s;
        s *= (size_t)a->shape[d];
    }
    size_t off = 0;
    for (size_t j = 0; j < numel; j++) {
        dst[off] = load_item(src + j * itemsize, a->dtype, swap);
        for (int d = 0; d < a->ndim; d++) {
            off += cstride[d];
            if (++idx[d] < (size_t)a->shape[d])
                break;
            off -= cstride[d] * (size_t)a->shape[d];
            idx[d] = 0;
        }
    }
    return CSPRESNET_OK;
}
