/*
 * f32_avx2.c - AVX2+FMA kernels of the fast path: the 6x16 GEMM tile, the conv
 * epilogue with a vectorised swish and the Winograd F(4,3) transforms (the lane-major
 * code of generic/winograd43_lanes.h compiled for this target). Compiled for avx2,fma
 * by the pragma below; select.c calls these only when __builtin_cpu_supports reports both.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* gcc: a target pragma; clang ignores it and takes a function attribute instead. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#include "kernels/generic/winograd43_lanes.h"
#include "kernels/kernels.h"
#include "kernels/x86/exp_poly.h"

/* exp by the range reduction and polynomial of exp_poly.h. */
static inline __m256 exp256(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(EXP_X_MAX)), _mm256_set1_ps(EXP_X_MIN));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(exp_poly[0]);
#pragma GCC unroll 8
    for (int i = 1; i <= EXP_POLY_DEGREE; i++)
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(exp_poly[i]));
    /* 2^n by building the exponent bits; n is within [-126, 127] after the clamp */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256i tail_mask(int n)
{
    static const int bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - (n < 0 ? 0 : n > 8 ? 8 : n)));
}

/* a (mr x kc, lda) . b (kc x nr, ldb) -> c (mr x nr, ldc), mr <= 6, nr <= 16. The twelve
 * accumulators are named variables (an array of them was kept on the stack by gcc -O2,
 * a load and a store around every FMA), and full tiles use plain loads and stores
 * (vmaskmov stores are slow on AMD cores). FOR_ROWS(X) is X(i) for each accumulator
 * row i: the row loops unrolled by hand. */
#define FOR_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define ROW_FMA(i)                                           \
    {                                                        \
        __m256 av = _mm256_broadcast_ss(a##i + k);           \
        c##i##0 = _mm256_fmadd_ps(av, b0, c##i##0);          \
        c##i##1 = _mm256_fmadd_ps(av, b1, c##i##1);          \
    }
#define ROW_STORE(i)                                                                          \
    if (i < mr) {                                                                             \
        float *ci = c + i * ldc;                                                              \
        if (full) {                                                                           \
            if (accumulate) {                                                                 \
                c##i##0 = _mm256_add_ps(c##i##0, _mm256_loadu_ps(ci));                        \
                c##i##1 = _mm256_add_ps(c##i##1, _mm256_loadu_ps(ci + 8));                    \
            }                                                                                 \
            _mm256_storeu_ps(ci, c##i##0);                                                    \
            _mm256_storeu_ps(ci + 8, c##i##1);                                                \
        } else {                                                                              \
            if (accumulate) {                                                                 \
                c##i##0 = _mm256_add_ps(c##i##0, _mm256_maskload_ps(ci, m0));                 \
                c##i##1 = _mm256_add_ps(c##i##1, _mm256_maskload_ps(ci + 8, m1));             \
            }                                                                                 \
            _mm256_maskstore_ps(ci, m0, c##i##0);                                             \
            _mm256_maskstore_ps(ci + 8, m1, c##i##1);                                         \
        }                                                                                     \
    }

static inline __attribute__((always_inline)) void
gemm6x16(int kc, const float *a, long lda, const float *b, long ldb, float *c, long ldc, int mr, int nr,
         int accumulate, int full)
{
    const float *a0 = a, *a1 = a + (mr > 1 ? 1 : 0) * lda, *a2 = a + (mr > 2 ? 2 : mr - 1) * lda,
                *a3 = a + (mr > 3 ? 3 : mr - 1) * lda, *a4 = a + (mr > 4 ? 4 : mr - 1) * lda,
                *a5 = a + (mr > 5 ? 5 : mr - 1) * lda;
    const __m256i m0 = tail_mask(nr), m1 = tail_mask(nr - 8);
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        __m256 b1 = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
        FOR_ROWS(ROW_FMA)
    }
    FOR_ROWS(ROW_STORE)
}

void f32_gemm_6x16__avx2(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                         long ldc, int mr, int nr, int accumulate)
{
    if (nr == 16)
        gemm6x16(kc, a, lda, b, ldb, c, ldc, mr, nr, accumulate, 1);
    else
        gemm6x16(kc, a, lda, b, ldb, c, ldc, mr, nr, accumulate, 0);
}

/* x (count) = act(x + bias) + res; swish, relu and none vectorised. */
void f32_bias_act__avx2(float *x, long count, float bias, cspresnet_act act, const float *res)
{
    if (act != CSPRESNET_ACT_SWISH && act != CSPRESNET_ACT_RELU && act != CSPRESNET_ACT_NONE) {
        f32_bias_act__generic(x, count, bias, act, res);
        return;
    }
    const __m256 vb = _mm256_set1_ps(bias), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (long i = 0; i < count; i += 8) {
        __m256i m = tail_mask(count - i >= 8 ? 8 : (int)(count - i));
        __m256 v = _mm256_add_ps(_mm256_maskload_ps(x + i, m), vb);
        if (act == CSPRESNET_ACT_SWISH)
            v = _mm256_div_ps(v, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, v))));
        else if (act == CSPRESNET_ACT_RELU)
            v = _mm256_max_ps(v, zero);
        if (res)
            v = _mm256_add_ps(v, _mm256_maskload_ps(res + i, m));
        _mm256_maskstore_ps(x + i, m, v);
    }
}
/* Winograd F(4,3) transforms: the lane-major code of winograd43_lanes.h built for
 * avx2+fma, the epilogue's activation by the AVX2 kernel above. */
void f32_winograd43_input__avx2(const wino_tiles *wt, const float *plane, int t0, float *v, long v_stride_p)
{
    wl_input(wt, plane, t0, v, v_stride_p);
}

void f32_winograd43_output__avx2(const wino_tiles *wt, const float *m, long m_stride_p, int t0, float bias,
                                 cspresnet_act act, const float *res, float *out)
{
    wl_output(wt, m, m_stride_p, t0, bias, act, res, out, f32_bias_act__avx2);
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_avx2_unavailable; /* non-x86 builds: select.c never names these kernels */
#endif
