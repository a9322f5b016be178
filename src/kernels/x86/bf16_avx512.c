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
 * sixteen accumulators stay in registers for any mr; the row loops are unrolled by
 * hand (the compiler keeps an array of accumulators in memory). A product pair is
 * added to the accumulator that starts as c (accumulate) or zero, the reference's
 * order, so both give the same bits. */
#define BF_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define BF_ROW_INIT(i)                                                                          \
    const uint16_t *a##i = a + (long)(i < mr ? i : mr - 1) * lda * 2;                           \
    __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0;                                    \
    if (accumulate && i < mr) {                                                                 \
        c##i##0 = _mm512_maskz_loadu_ps(m0, c + (long)i * ldc);                                 \
        c##i##1 = _mm512_maskz_loadu_ps(m1, c + (long)i * ldc + 16);                            \
    }
#define BF_ROW_DOT(i)                                                                           \
    {                                                                                           \
        __m512bh av = (__m512bh)_mm512_set1_epi32(load_i32(a##i + 2 * p));                      \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, av, b0);                                            \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, av, b1);                                            \
    }
#define BF_ROW_STORE(i)                                                                         \
    if (i < mr) {                                                                               \
        _mm512_mask_storeu_ps(c + (long)i * ldc, m0, c##i##0);                                  \
        _mm512_mask_storeu_ps(c + (long)i * ldc + 16, m1, c##i##1);                             \
    }

void bf16_gemm_8x32__avx512bf16(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c,
                                long ldc, int mr, int nr, int accumulate)
{
    __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    BF_ROWS(BF_ROW_INIT)
    for (int p = 0; p < kp; p++) {
        const uint16_t *bp = b + (long)p * ldb * 2;
        __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(m0, bp);
        __m512bh b1 = (__m512bh)_mm512_maskz_loadu_epi32(m1, bp + 32);
        BF_ROWS(BF_ROW_DOT)
    }
    BF_ROWS(BF_ROW_STORE)
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
