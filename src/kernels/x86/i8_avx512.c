/*
 * i8_avx512.c - AVX-512 int8 tiles (see kernels/lowp_kernels.h): the 8x32 u8 x s8 GEMM
 * on vpdpbusd with int32 accumulators in registers and the dequantizing epilogue, and
 * the f32 -> u8 quad packing. Compiled for that target by the pragmas below;
 * select.c chooses them only when __builtin_cpu_supports reports avx512vnni (the
 * packing needs only AVX-512F/BW).
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vnni")
#endif

#include "kernels/lowp_kernels.h"
#include "kernels/x86/avx512_math.h"

/* One 8-row block of the tile over ntaps runs of kqt quads (the GEMM: one run at
 * offset 0). Rows past `rows` repeat row rows-1 (their sums are computed and never
 * stored), so the sixteen int32 accumulators stay in registers; the row loops are
 * unrolled by hand, as in the bf16 tile (the compiler keeps an array of accumulators
 * in memory, which ran the VNNI tile at a quarter of its rate). Integer sums: any
 * order gives the reference's bits. */
#define I8_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define I8_ROW_INIT(i)                                                                          \
    const int8_t *a##i = a + (long)(i < rows ? i : rows - 1) * lda * 4;                         \
    __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0;
#define I8_ROW_DOT(i)                                                                           \
    {                                                                                           \
        __m512i av = _mm512_set1_epi32(load_i32(a##i + at + 4 * q));                            \
        c##i##0 = _mm512_dpbusd_epi32(c##i##0, b0, av);                                         \
        c##i##1 = _mm512_dpbusd_epi32(c##i##1, b1, av);                                         \
    }
#define I8_ROW_STORE(i)                                                                         \
    if (i < rows) {                                                                             \
        __m512i z = _mm512_set1_epi32(comp[i]);                                                 \
        __m512 s = _mm512_set1_ps(scale[i]);                                                    \
        float *ci = c + (long)i * ldc;                                                          \
        _mm512_mask_storeu_ps(ci, m0, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c##i##0, z)), s));  \
        _mm512_mask_storeu_ps(ci + 16, m1, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c##i##1, z)), s)); \
    }

static inline void block8(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                          long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int rows, int nr)
{
    __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    I8_ROWS(I8_ROW_INIT)
    for (int t = 0; t < ntaps; t++) {
        const uint8_t *bt = b + tap_off[t];
        const long at = 4L * t * kqt;
        for (int q = 0; q < kqt; q++) {
            const uint8_t *bq = bt + (long)q * ldb * 4;
            __m512i b0 = _mm512_maskz_loadu_epi32(m0, bq);
            __m512i b1 = _mm512_maskz_loadu_epi32(m1, bq + 64);
            I8_ROWS(I8_ROW_DOT)
        }
    }
    I8_ROWS(I8_ROW_STORE)
}

void u8s8_gemm_8x32__avx512vnni(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                                const float *scale, float *c, long ldc, int mr, int nr)
{
    static const long zero = 0;
    block8(1, &zero, kq, a, lda, b, ldb, comp, scale, c, ldc, mr, nr);
}

/* The tap form's 32 x 32 tile (kernels/lowp_kernels.h) as 8-row blocks: each block
 * sums every run of its rows, reading B (a run's quads for 32 columns, from L1) once
 * per block. */
void u8s8_taps_32x32__avx512vnni(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                                 long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr,
                                 int nr)
{
    for (int i0 = 0; i0 < mr; i0 += 8)
        block8(ntaps, tap_off, kqt, a + (long)i0 * lda * 4, lda, b, ldb, comp + i0, scale + i0, c + (long)i0 * ldc,
               ldc, mr - i0 < 8 ? mr - i0 : 8, nr);
}

/* 16 columns of one row: clamp(rne(x * inv), -zero, 255 - zero) as int32 lanes (NaN ->
 * 0). The clamp bounds are integers, so clamping before the rounding conversion gives
 * the same values. */
static __m512i quant16(const float *r, __mmask16 m, __m512 inv, __m512 lo, __m512 hi)
{
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, r), inv);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    return _mm512_cvtps_epi32(v);
}

/* Four rows of 16 columns into 16 quads: packed to int16 with the zero point added (all
 * in -255..255 before, 0..255 after), then to bytes, which leaves each 128-bit lane as
 * rows 0-3 of its 4 columns; one byte shuffle per lane makes them 4 quads. */
void u8_pack_quads__avx512(const float *x, long ldx, int kc, int nc, float inv_scale, int zero, uint8_t *out,
                           long ldo)
{
    __m512 inv = _mm512_set1_ps(inv_scale);
    __m512 lo = _mm512_set1_ps((float)-zero), hi = _mm512_set1_ps((float)(255 - zero));
    __m512i z16 = _mm512_set1_epi16((short)zero);
    const __m512i quads = _mm512_set4_epi32(0x0f0b0703, 0x0e0a0602, 0x0d090501, 0x0c080400);
    for (int q = 0; q < (kc + 3) / 4; q++) {
        uint8_t *o = out + (long)q * ldo * 4;
        const float *r = x + (long)(4 * q) * ldx;
        for (int j = 0; j < nc; j += 16) {
            __mmask16 m = first_lanes(nc - j);
            __m512i v[4];
            for (int t = 0; t < 4; t++)
                v[t] = 4 * q + t < kc ? quant16(r + t * ldx + j, m, inv, lo, hi) : _mm512_setzero_si512();
            __m512i w01 = _mm512_adds_epi16(_mm512_packs_epi32(v[0], v[1]), z16);
            __m512i w23 = _mm512_adds_epi16(_mm512_packs_epi32(v[2], v[3]), z16);
            __m512i b = _mm512_shuffle_epi8(_mm512_packus_epi16(w01, w23), quads);
            _mm512_mask_storeu_epi32(o + 4 * j, m, b);
        }
    }
}

/* Stride 2: 16 quads a step, the even dwords of two loads (masked to the quads the
 * step needs, so nothing past (n-1)*2 is read); other strides one quad at a time. */
void u8_gather_quads__avx512(const uint8_t *src, int stride, long n, uint8_t *dst)
{
    if (stride != 2) {
        for (long x = 0; x < n; x++)
            memcpy(dst + 4 * x, src + 4 * x * stride, 4);
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (long x = 0; x < n; x += 16) {
        long k = n - x < 16 ? n - x : 16, need = 2 * k - 1;   /* source quads of this step */
        const uint8_t *s = src + 8 * x;
        __m512i a = _mm512_maskz_loadu_epi32(first_lanes(need), s);
        __m512i b = _mm512_maskz_loadu_epi32(first_lanes(need - 16), s + 64);
        _mm512_mask_storeu_epi32(dst + 4 * x, first_lanes(k), _mm512_permutex2var_epi32(a, even, b));
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
