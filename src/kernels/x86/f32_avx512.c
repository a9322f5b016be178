/*
 * f32_avx512.c - AVX-512F kernels of the fast path: the 8x32 GEMM tile, the conv
 * epilogue with a vectorised swish and sigmoid and the plane mean of the ESE (the Winograd transforms are in
 * f32_winograd43_avx512.c, im2col packing in f32_im2col_avx512.c).
 *
 * Compiled for avx512f+fma (avx512_target.h, never -march=native); select.c calls
 * these only when __builtin_cpu_supports says the CPU has AVX-512F. The swish uses
 * exp from a degree-6 polynomial after range reduction (relative error ~2e-7),
 * well inside the fast path's 1e-3 budget.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/x86/avx512_target.h" /* the rest of this file is built for avx512f+fma */

#include "kernels/kernels.h"
#include "kernels/x86/avx512_math.h"

/* ---- GEMM: a (mr x kc, lda) . b (kc x nr, ldb) -> c (mr x nr, ldc), mr <= 8, nr <= 32 ---- */

/* X(i) for each accumulator row i: the row loops unrolled by hand. */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define ROW_FMA(i)                                                    \
    {                                                                 \
        __m512 av = _mm512_set1_ps(a##i[k]);                          \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                   \
        if (!half)                                                    \
            c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);               \
    }
#define ROW_STORE(i)                                                                     \
    if (i < mr) {                                                                        \
        float *ci = c + i * ldc;                                                         \
        if (accumulate) {                                                                \
            c##i##0 = _mm512_add_ps(c##i##0, _mm512_maskz_loadu_ps(m0, ci));             \
            c##i##1 = _mm512_add_ps(c##i##1, _mm512_maskz_loadu_ps(m1, ci + 16));        \
        }                                                                                \
        _mm512_mask_storeu_ps(ci, m0, c##i##0);                                          \
        _mm512_mask_storeu_ps(ci + 16, m1, c##i##1);                                     \
    }

static inline __attribute__((always_inline)) void
gemm8x32(int kc, const float *a, long lda, const float *b, long ldb, float *c, long ldc, int mr,
         int nr, int accumulate, int full, int half)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda, *a2 = a + (mr > 2 ? 2 : mr - 1) * lda,
                *a3 = a + (mr > 3 ? 3 : mr - 1) * lda, *a4 = a + (mr > 4 ? 4 : mr - 1) * lda,
                *a5 = a + (mr > 5 ? 5 : mr - 1) * lda, *a6 = a + (mr > 6 ? 6 : mr - 1) * lda,
                *a7 = a + (mr > 7 ? 7 : mr - 1) * lda;
    __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        __m512 b0 = full ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(m0, bk);
        __m512 b1 = half ? b0 : full ? _mm512_loadu_ps(bk + 16) : _mm512_maskz_loadu_ps(m1, bk + 16);
        FOR_ROWS(ROW_FMA)
    }
    FOR_ROWS(ROW_STORE)
}

void f32_gemm_8x32__avx512(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                           long ldc, int mr, int nr, int accumulate)
{
    if (nr == 32)
        gemm8x32(kc, a, lda, b, ldb, c, ldc, mr, nr, accumulate, 1, 0);
    else if (nr <= 16)
        gemm8x32(kc, a, lda, b, ldb, c, ldc, mr, nr, accumulate, 0, 1);
    else
        gemm8x32(kc, a, lda, b, ldb, c, ldc, mr, nr, accumulate, 0, 0);
}

/* ---- epilogue: x (count) = act(x + bias) + res ---- */

void f32_bias_act__avx512(float *x, long count, float bias, cspresnet_act act, const float *res)
{
    if (!act_is_fast(act) && act != CSPRESNET_ACT_SIGMOID) {
        f32_bias_act__generic(x, count, bias, act, res);
        return;
    }
    const __m512 vb = _mm512_set1_ps(bias);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = first_lanes(count - i);
        __m512 v = act512(_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), vb), act);
        if (res)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + i));
        _mm512_mask_storeu_ps(x + i, m, v);
    }
}

/* ---- plane mean: double accumulators (as the reference), 32 floats per step ---- */

float f32_mean__avx512(const float *x, long count)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    long i = 0;
    for (; i + 32 <= count; i += 32) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
        s2 = _mm512_add_pd(s2, _mm512_cvtps_pd(_mm512_castps512_ps256(b)));
        s3 = _mm512_add_pd(s3, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1))));
    }
    for (; i < count; i += 16) {
        __m512 a = _mm512_maskz_loadu_ps(first_lanes(count - i), x + i);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1), _mm512_add_pd(s2, s3)));
    return (float)(sum / (double)count);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_avx512_unavailable; /* non-x86 builds: select.c never names these kernels */
#endif
