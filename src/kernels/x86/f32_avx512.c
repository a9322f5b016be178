/*
 * f32_avx512.c - AVX-512F kernels of the fast path: the 8x32 GEMM tile, the conv
 * epilogue with a vectorised swish, and the Winograd F(4,3) input and output
 * transforms over 16 tiles at once (one tile per lane).
 *
 * Compiled for avx512f+fma by the pragma below (never -march=native); select.c calls
 * these only when __builtin_cpu_supports says the CPU has AVX-512F. The swish uses
 * exp from a degree-6 polynomial after range reduction (relative error ~2e-7),
 * well inside the fast path's 1e-3 budget.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* gcc: a target pragma; clang ignores it and takes a function attribute instead. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,fma")
#endif

#include "kernels/kernels.h"

static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 act512(__m512 v, cspresnet_act act)
{
    if (act == CSPRESNET_ACT_SWISH)
        return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    if (act == CSPRESNET_ACT_RELU)
        return _mm512_max_ps(v, _mm512_setzero_ps());
    return v; /* NONE; callers route other activations to the generic kernel */
}

static inline int act_is_fast(cspresnet_act act)
{
    return act == CSPRESNET_ACT_SWISH || act == CSPRESNET_ACT_RELU || act == CSPRESNET_ACT_NONE;
}

/* ---- GEMM: a (mr x kc, lda) . b (kc x nr, ldb) -> c (mr x nr, ldc), mr <= 8, nr <= 32 ---- */

#define ROW_FMA(i)                                                    \
    do {                                                              \
        __m512 av = _mm512_set1_ps(a##i[k]);                          \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                   \
        if (!half)                                                    \
            c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);               \
    } while (0)
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
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00,
           c61 = c00, c70 = c00, c71 = c00;
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        __m512 b0 = full ? _mm512_loadu_ps(bk) : _mm512_maskz_loadu_ps(m0, bk);
        __m512 b1 = half ? b0 : full ? _mm512_loadu_ps(bk + 16) : _mm512_maskz_loadu_ps(m1, bk + 16);
        ROW_FMA(0);
        ROW_FMA(1);
        ROW_FMA(2);
        ROW_FMA(3);
        ROW_FMA(4);
        ROW_FMA(5);
        ROW_FMA(6);
        ROW_FMA(7);
    }
    ROW_STORE(0)
    ROW_STORE(1)
    ROW_STORE(2)
    ROW_STORE(3)
    ROW_STORE(4)
    ROW_STORE(5)
    ROW_STORE(6)
    ROW_STORE(7)
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
    if (!act_is_fast(act)) {
        f32_bias_act__generic(x, count, bias, act, res);
        return;
    }
    const __m512 vb = _mm512_set1_ps(bias);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = count - i >= 16 ? 0xffff : (__mmask16)((1u << (count - i)) - 1);
        __m512 v = act512(_mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), vb), act);
        if (res)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, res + i));
        _mm512_mask_storeu_ps(x + i, m, v);
    }
}

/* ---- Winograd F(4,3) transforms, 16 tiles per call (lane l = tile t0 + l) ---- */

/* Per lane: top-left input corner (y0, x0) of the 6x6 patch and whether the tile exists. */
static inline __mmask16 tile_corners(const wino_tiles *wt, int t0, __m512i *y0, __m512i *x0)
{
    int ys[16], xs[16];
    __mmask16 valid = 0;
    for (int l = 0; l < 16; l++) {
        int t = t0 + l;
        int ty = t / wt->tiles_w, tx = t % wt->tiles_w;
        ys[l] = 4 * ty - 1;
        xs[l] = 4 * tx - 1;
        if (t < wt->tile_count)
            valid |= (__mmask16)(1u << l);
    }
    *y0 = _mm512_loadu_si512(ys);
    *x0 = _mm512_loadu_si512(xs);
    return valid;
}

/* 1-D input transform B^T d of six vectors, in place. */
#define BT6(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                                      \
    do {                                                                                         \
        __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f); \
        __m512 p = _mm512_sub_ps(d4, d2), q = _mm512_sub_ps(d3, d1);                             \
        o0 = _mm512_fnmadd_ps(five, d2, _mm512_fmadd_ps(four, d0, d4));                          \
        o1 = _mm512_fnmadd_ps(four, _mm512_add_ps(d1, d2), _mm512_add_ps(d3, d4));               \
        o2 = _mm512_fmadd_ps(four, _mm512_sub_ps(d1, d2), _mm512_sub_ps(d4, d3));                \
        o3 = _mm512_fmadd_ps(two, q, p);                                                         \
        o4 = _mm512_fnmadd_ps(two, q, p);                                                        \
        o5 = _mm512_fnmadd_ps(five, d3, _mm512_fmadd_ps(four, d1, d5));                          \
    } while (0)

/* plane (h x w) -> v[p * v_stride_p + l], p = 6 i + j, the transformed patch of tile t0+l. */
void f32_winograd43_input__avx512(const wino_tiles *wt, const float *plane, int t0, float *v,
                                  long v_stride_p)
{
    __m512i y0, x0;
    __mmask16 valid = tile_corners(wt, t0, &y0, &x0);
    const __m512i vh = _mm512_set1_epi32(wt->h), vw = _mm512_set1_epi32(wt->w), zero = _mm512_setzero_si512();
    __m512 e[6][6];
    for (int r = 0; r < 6; r++) {
        __m512i y = _mm512_add_epi32(y0, _mm512_set1_epi32(r));
        __mmask16 rm = valid & _mm512_cmpge_epi32_mask(y, zero) & _mm512_cmplt_epi32_mask(y, vh);
        __m512i rowoff = _mm512_mullo_epi32(y, vw);
        __m512 d[6];
        for (int c = 0; c < 6; c++) {
            __m512i x = _mm512_add_epi32(x0, _mm512_set1_epi32(c));
            __mmask16 m = rm & _mm512_cmpge_epi32_mask(x, zero) & _mm512_cmplt_epi32_mask(x, vw);
            d[c] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(rowoff, x), plane, 4);
        }
        BT6(d[0], d[1], d[2], d[3], d[4], d[5], e[r][0], e[r][1], e[r][2], e[r][3], e[r][4], e[r][5]);
    }
    for (int j = 0; j < 6; j++) {
        __m512 o[6];
        BT6(e[0][j], e[1][j], e[2][j], e[3][j], e[4][j], e[5][j], o[0], o[1], o[2], o[3], o[4], o[5]);
        for (int i = 0; i < 6; i++)
            _mm512_storeu_ps(v + (i * 6 + j) * v_stride_p, o[i]);
    }
}

/* 1-D output transform A^T m of six vectors into four. */
#define AT6(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3)                                   \
    do {                                                                              \
        __m512 s12 = _mm512_add_ps(m1, m2), d12 = _mm512_sub_ps(m1, m2);              \
        __m512 s34 = _mm512_add_ps(m3, m4), d34 = _mm512_sub_ps(m3, m4);              \
        o0 = _mm512_add_ps(_mm512_add_ps(m0, s12), s34);                              \
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d34, d12);                         \
        o2 = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);                         \
        o3 = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d34, d12), m5);      \
    } while (0)

/* m[p * m_stride_p + l] -> 4x4 outputs of tile t0+l: act(y + bias) + res into out. */
void f32_winograd43_output__avx512(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                   float bias, cspresnet_act act, const float *res, float *out)
{
    __m512i y0, x0;
    __mmask16 valid = tile_corners(wt, t0, &y0, &x0);
    y0 = _mm512_add_epi32(y0, _mm512_set1_epi32(1)); /* output corner = input corner + 1 */
    x0 = _mm512_add_epi32(x0, _mm512_set1_epi32(1));
    const __m512i vh = _mm512_set1_epi32(wt->h), vw = _mm512_set1_epi32(wt->w);
    __m512 s[4][6];
    for (int j = 0; j < 6; j++) {
        __m512 c[6];
        for (int i = 0; i < 6; i++)
            c[i] = _mm512_loadu_ps(m + (i * 6 + j) * m_stride_p);
        AT6(c[0], c[1], c[2], c[3], c[4], c[5], s[0][j], s[1][j], s[2][j], s[3][j]);
    }
    const __m512 vb = _mm512_set1_ps(bias);
    const int fast = act_is_fast(act);
    for (int k = 0; k < 4; k++) {
        __m512 y[4];
        AT6(s[k][0], s[k][1], s[k][2], s[k][3], s[k][4], s[k][5], y[0], y[1], y[2], y[3]);
        __m512i yy = _mm512_add_epi32(y0, _mm512_set1_epi32(k));
        __mmask16 rm = valid & _mm512_cmplt_epi32_mask(yy, vh);
        __m512i rowoff = _mm512_mullo_epi32(yy, vw);
        for (int l = 0; l < 4; l++) {
            __m512i xx = _mm512_add_epi32(x0, _mm512_set1_epi32(l));
            __mmask16 msk = rm & _mm512_cmplt_epi32_mask(xx, vw);
            __m512i idx = _mm512_add_epi32(rowoff, xx);
            __m512 val = _mm512_add_ps(y[l], vb);
            if (fast) {
                val = act512(val, act);
            } else {
                float tmp[16];
                _mm512_storeu_ps(tmp, val);
                f32_bias_act__generic(tmp, 16, 0.0f, act, NULL);
                val = _mm512_loadu_ps(tmp);
            }
            if (res)
                val = _mm512_add_ps(val, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), msk, idx, res, 4));
            _mm512_mask_i32scatter_ps(out, msk, idx, val, 4);
        }
    }
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_avx512_unavailable; /* non-x86 builds: select.c never names these kernels */
#endif
