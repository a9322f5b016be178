/*
 * f32_avx2.c - AVX2+FMA kernels of the fast path: the 6x16 GEMM tile and the conv
 * epilogue with a vectorised swish. Compiled for avx2,fma by the pragma below;
 * select.c calls these only when __builtin_cpu_supports reports both. (Winograd is
 * AVX-512 only so far; on AVX2 the 3x3 stride-1 convs use the im2col GEMM.)
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* gcc: a target pragma; clang ignores it and takes a function attribute instead. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx2,fma")
#endif

#include "kernels/kernels.h"

static inline __m256 exp256(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n by building the exponent bits; n is within [-126, 127] after the clamp */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256i tail_mask(int n)
{
    static const int bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - (n < 0 ? 0 : n > 8 ? 8 : n)));
}

/* a (mr x kc, lda) . b (kc x nr, ldb) -> c (mr x nr, ldc), mr <= 6, nr <= 16 */
void f32_gemm_6x16__avx2(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                         long ldc, int mr, int nr, int accumulate)
{
    const float *ar[6];
    for (int i = 0; i < 6; i++)
        ar[i] = a + (i < mr ? i : mr - 1) * lda;
    const __m256i m0 = tail_mask(nr), m1 = tail_mask(nr - 8);
    const int full = nr == 16;
    __m256 acc[6][2];
    for (int i = 0; i < 6; i++)
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        __m256 b1 = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
        for (int i = 0; i < 6; i++) {
            __m256 av = _mm256_broadcast_ss(ar[i] + k);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (accumulate) {
            acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_maskload_ps(ci, m0));
            acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_maskload_ps(ci + 8, m1));
        }
        _mm256_maskstore_ps(ci, m0, acc[i][0]);
        _mm256_maskstore_ps(ci + 8, m1, acc[i][1]);
    }
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
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_avx2_unavailable; /* non-x86 builds: select.c never names these kernels */
#endif
