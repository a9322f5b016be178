/*
 * bf16_avx512.c - AVX-512 BF16 tiles (see kernels/lowp_kernels.h): the 8x32 bf16 GEMM on
 * vdpbf16ps with fp32 accumulators in registers, and the f32 -> bf16 pair packing on
 * vcvtneps2bf16. Compiled for that target by the pragma below; select.c chooses
 * them only when __builtin_cpu_supports reports avx512bf16.
 */
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512bf16"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512bf16")
#endif

#include "kernels/lowp_kernels.h"
#include "kernels/x86/avx512_math.h"

/* Rows past mr repeat row mr-1 (their sums are computed and never stored), so the
 * eight accumulator pairs stay in registers for any mr. */
void bf16_gemm_8x32__avx512bf16(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c,
                                long ldc, int mr, int nr, int accumulate)
{
    __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    const uint16_t *ar[8];
    for (int i = 0; i < 8; i++)
        ar[i] = a + (long)(i < mr ? i : mr - 1) * lda * 2;
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++) {
        float *ci = c + (long)(i < mr ? i : 0) * ldc;
        acc[i][0] = accumulate && i < mr ? _mm512_maskz_loadu_ps(m0, ci) : _mm512_setzero_ps();
        acc[i][1] = accumulate && i < mr ? _mm512_maskz_loadu_ps(m1, ci + 16) : _mm512_setzero_ps();
    }
    for (int p = 0; p < kp; p++) {
        const uint16_t *bp = b + (long)p * ldb * 2;
        __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(m0, bp);
        __m512bh b1 = (__m512bh)_mm512_maskz_loadu_epi32(m1, bp + 32);
        for (int i = 0; i < 8; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32(load_i32(ar[i] + 2 * p));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(c + (long)i * ldc, m0, acc[i][0]);
        _mm512_mask_storeu_ps(c + (long)i * ldc + 16, m1, acc[i][1]);
    }
}

/* 16 columns of rows r0 and r1 (r1 NULL past an odd kc) -> 16 pairs (r0 low, r1 high). */
static __m512i pairs16(const float *r0, const float *r1, __mmask16 m)
{
    __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r0)));
    if (!r1)
        return lo;
    __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, r1)));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

void bf16_pack_pairs__avx512bf16(const float *x, long ldx, int kc, int nc, uint16_t *out, long ldo)
{
    for (int p = 0; p < (kc + 1) / 2; p++) {
        const float *r0 = x + (long)(2 * p) * ldx, *r1 = 2 * p + 1 < kc ? r0 + ldx : NULL;
        uint16_t *o = out + (long)p * ldo * 2;
        for (int j = 0; j < nc; j += 16) {
            __mmask16 m = first_lanes(nc - j);
            _mm512_mask_storeu_epi32(o + 2 * j, m, pairs16(r0 + j, r1 ? r1 + j : NULL, m));
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
