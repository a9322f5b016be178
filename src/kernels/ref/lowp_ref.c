/*
 * lowp_ref.c - reference bf16 and int8 kernels (see kernels/lowp_kernels.h): plain C
 * that emulates vdpbf16ps / vcvtne2ps2bf16 rounding exactly and sums int8 products in
 * integers, the oracle of the AVX-512 tiles and the kernels of CPUs without them.
 */
#include <math.h>
#include <string.h>

#include "kernels/lowp_kernels.h"

uint16_t bf16_from_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0)              /* zero or denormal: signed zero */
        return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u)     /* NaN: keep it, quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);         /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float f32_from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* A bf16 as the dot-product instruction reads it: denormals as signed zero. */
static float bf16_daz(uint16_t h)
{
    return (h & 0x7f80u) == 0 ? f32_from_bf16((uint16_t)(h & 0x8000u)) : f32_from_bf16(h);
}

/* The accumulator after one product: one rounding (the product of two bf16 is exact
 * in fp32 over the ranges inference meets), a denormal result flushed to zero. */
static float add_ftz(float acc, float p)
{
    float s = acc + p;
    return fpclassify(s) == FP_SUBNORMAL ? copysignf(0.0f, s) : s;
}

void bf16_gemm_8x32__ref(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc,
                         int mr, int nr, int accumulate)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float acc = accumulate ? c[i * ldc + j] : 0.0f;
            for (int p = 0; p < kp; p++) {
                const uint16_t *ap = a + (long)i * lda * 2 + 2 * p, *bp = b + ((long)p * ldb + j) * 2;
                acc = add_ftz(acc, bf16_daz(ap[1]) * bf16_daz(bp[1]));
                acc = add_ftz(acc, bf16_daz(ap[0]) * bf16_daz(bp[0]));
            }
            c[i * ldc + j] = acc;
        }
}

void bf16_taps_32x32__ref(int ntaps, const long *tap_off, int kpt, const uint16_t *a, long lda, const uint16_t *b,
                          long ldb, float *c, long ldc, int mr, int nr, int accumulate)
{
    for (int t = 0; t < ntaps; t++)
        bf16_gemm_8x32__ref(kpt, a + 2L * t * kpt, lda, b + tap_off[t], ldb, c, ldc, mr, nr, accumulate || t > 0);
}

void bf16_pack_pairs__ref(const float *x, long ldx, int kc, int nc, uint16_t *out, long ldo)
{
    for (int p = 0; p < (kc + 1) / 2; p++)
        for (int j = 0; j < nc; j++) {
            uint16_t *o = out + ((long)p * ldo + j) * 2;
            o[0] = bf16_from_f32(x[(long)(2 * p) * ldx + j]);
            o[1] = 2 * p + 1 < kc ? bf16_from_f32(x[(long)(2 * p + 1) * ldx + j]) : 0;
        }
}

void u8s8_gemm_8x32__ref(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                         const float *scale, float *c, long ldc, int mr, int nr)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            int32_t acc = 0;
            for (int q = 0; q < kq; q++)
                for (int t = 0; t < 4; t++)
                    acc += (int32_t)b[((long)q * ldb + j) * 4 + t] * (int32_t)a[(long)i * lda * 4 + 4 * q + t];
            c[i * ldc + j] = (float)(acc - comp[i]) * scale[i];
        }
}

void u8_gather_quads__ref(const uint8_t *src, int stride, long n, uint8_t *dst)
{
    for (long x = 0; x < n; x++)
        memcpy(dst + 4 * x, src + 4 * x * stride, 4);
}

void u8s8_taps_32x32__ref(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                          long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr, int nr)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            int32_t acc = 0;
            for (int t = 0; t < ntaps; t++)
                for (int q = 0; q < kqt; q++)
                    for (int u = 0; u < 4; u++)
                        acc += (int32_t)b[tap_off[t] + ((long)q * ldb + j) * 4 + u] *
                               (int32_t)a[(long)i * lda * 4 + ((long)t * kqt + q) * 4 + u];
            c[i * ldc + j] = (float)(acc - comp[i]) * scale[i];
        }
}

/* rne(v) + zero clamped to the u8 range; NaN gives the zero point. */
static uint8_t quantize_u8(float v, int zero)
{
    if (!(v == v))
        return (uint8_t)zero;
    float r = nearbyintf(v) + (float)zero;   /* the default rounding mode: to nearest even */
    if (r < 0.0f)
        r = 0.0f;
    if (r > 255.0f)
        r = 255.0f;
    return (uint8_t)(int)r;
}

void u8_pack_quads__ref(const float *x, long ldx, int kc, int nc, float inv_scale, int zero, uint8_t *out,
                        long ldo)
{
    for (int q = 0; q < (kc + 3) / 4; q++)
        for (int j = 0; j < nc; j++)
            for (int t = 0; t < 4; t++) {
                int k = 4 * q + t;
                out[((long)q * ldo + j) * 4 + t] = k < kc ? quantize_u8(x[(long)k * ldx + j] * inv_scale, zero)
                                                          : (uint8_t)zero;
            }
}
