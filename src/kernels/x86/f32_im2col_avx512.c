/*
 * f32_im2col_avx512.c - AVX-512F im2col packing for the fast GEMM convolution: rows
 * [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of one NCHW image
 * into panel[kc][ldp], the same contract as f32_im2col_rows__generic (its reference,
 * compared in tests/c/test_kernels_conv.c through whole convolutions).
 *
 * Each run of columns inside one output row reads its input row with masked loads
 * (zero padding comes from the masks) and, for stride 2, keeps the even elements of
 * 32 loaded floats with one permute: 16 panel floats per step instead of a bounds
 * check per element; a 3x3 stride-2 conv's three kx rows share their loads. Strides
 * other than 1 and 2 go to the generic kernel.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/x86/avx512_target.h" /* the rest of this file is built for avx512f+fma */

#include "kernels/kernels.h"
#include "kernels/x86/avx512_math.h"

/* dst[q] = srow[ix0 + stride * q] (0 outside [0, w)) for q < run; stride 1 or 2. */
static inline void strided_run(const float *srow, int w, long ix0, int stride, int run, float *dst)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int q = 0; q < run; q += 16) {
        long ix = ix0 + (long)stride * q;
        if (q + 16 <= run && ix >= 0 && ix + 16L * stride <= w) {   /* inside the row: no masks */
            __m512 v = _mm512_loadu_ps(srow + ix);
            if (stride == 2)
                v = _mm512_permutex2var_ps(v, even, _mm512_loadu_ps(srow + ix + 16));
            _mm512_storeu_ps(dst + q, v);
            continue;
        }
        __mmask16 out = lanes_in(q, 0, run);
        __m512 v;
        if (stride == 1) {
            v = _mm512_maskz_loadu_ps(lanes_in(ix, 0, w) & out, srow + ix);
        } else {
            __m512 lo = _mm512_maskz_loadu_ps(lanes_in(ix, 0, w), srow + ix);
            __m512 hi = _mm512_maskz_loadu_ps(lanes_in(ix + 16, 0, w), srow + ix + 16);
            v = _mm512_permutex2var_ps(lo, even, hi);
        }
        _mm512_mask_storeu_ps(dst + q, out, v);
    }
}

/* The three rows kx = 0, 1, 2 of a 3x3 stride-2 conv from one pair of loads:
 * dk[q] = srow[ix0 + 2 q + k] (0 outside [0, w)) for q < run. kx 0 and 2 are the even
 * lanes (2 shifted by one), kx 1 the odd ones: a third of the loads of three rows. */
static inline void stride2_three_taps(const float *srow, int w, long ix0, int run, float *d0, float *d1,
                                      float *d2)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i next = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    for (int q = 0; q < run; q += 16) {
        long ix = ix0 + 2L * q;
        if (q + 16 <= run && ix >= 0 && ix + 33 <= w) {   /* inside the row: no masks */
            __m512 lo = _mm512_loadu_ps(srow + ix), hi = _mm512_loadu_ps(srow + ix + 16);
            __m512 v0 = _mm512_permutex2var_ps(lo, even, hi);
            _mm512_storeu_ps(d0 + q, v0);
            _mm512_storeu_ps(d1 + q, _mm512_permutex2var_ps(lo, odd, hi));
            _mm512_storeu_ps(d2 + q, _mm512_permutex2var_ps(v0, next, _mm512_maskz_loadu_ps(1, srow + ix + 32)));
            continue;
        }
        __mmask16 out = lanes_in(q, 0, run);
        __m512 lo = _mm512_maskz_loadu_ps(lanes_in(ix, 0, w), srow + ix);
        __m512 hi = _mm512_maskz_loadu_ps(lanes_in(ix + 16, 0, w), srow + ix + 16);
        __m512 nx = _mm512_maskz_loadu_ps(lanes_in(ix + 32, 0, w) & 0x1, srow + ix + 32);
        __m512 v0 = _mm512_permutex2var_ps(lo, even, hi);
        _mm512_mask_storeu_ps(d0 + q, out, v0);
        _mm512_mask_storeu_ps(d1 + q, out, _mm512_permutex2var_ps(lo, odd, hi));
        _mm512_mask_storeu_ps(d2 + q, out, _mm512_permutex2var_ps(v0, next, nx));
    }
}

/* Prefetches the input row ky of channel plane src that output pixels [n, n + count)
 * read: the next block of columns, whose rows come straight from memory while this one
 * is packed (a block reads 3 rows of every channel, too many streams for the hardware
 * prefetcher). */
static void prefetch_next(const conv_geom *g, const float *src, int ky, long n, int count)
{
    long oy = n / g->out_w, ox = n % g->out_w;
    for (int j = 0; j < count && oy < g->out_h;) {
        int run = g->out_w - ox < count - j ? (int)(g->out_w - ox) : count - j;
        long iy = oy * g->stride - g->pad + ky;
        if (iy >= 0 && iy < g->in_h) {
            const float *row = src + iy * g->in_w;
            long a = ox * g->stride - g->pad, b = a + (long)g->stride * run + g->k;
            a = a < 0 ? 0 : a;
            b = b > g->in_w ? g->in_w : b;
            for (long x = a; x < b; x += 16)
                _mm_prefetch((const char *)(row + x), _MM_HINT_T0);
        }
        j += run;
        ox = 0;
        oy++;
    }
}

void f32_im2col_rows__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp)
{
    if (g->stride != 1 && g->stride != 2) {
        f32_im2col_rows__generic(g, image, k0, kc, n0, nc, panel, ldp);
        return;
    }
    /* (channel, ky, kx) of row k0 and (oy, ox) of column n0 once; then stepped */
    const int kk = g->k * g->k;
    const long plane = (long)g->in_h * g->in_w;
    const int oy0 = (int)(n0 / g->out_w), ox0 = (int)(n0 % g->out_w);
    int ic = k0 / kk, ky = (k0 % kk) / g->k, kx = k0 % g->k;
    for (int r = 0; r < kc;) {
        int taps = g->stride == 2 && g->k == 3 && kx == 0 && r + 2 < kc ? 3 : 1;
        const float *src = image + ic * plane;
        float *dst = panel + (long)r * ldp;
        if (kx == 0)
            prefetch_next(g, src, ky, n0 + nc, nc);
        int oy = oy0, ox = ox0;
        for (int j = 0; j < nc;) {
            int run = g->out_w - ox < nc - j ? g->out_w - ox : nc - j;
            int iy = oy * g->stride - g->pad + ky;
            long ix0 = (long)ox * g->stride - g->pad + kx;
            if (iy < 0 || iy >= g->in_h) {
                for (int t = 0; t < taps; t++)
                    for (int q = 0; q < run; q += 16)
                        _mm512_mask_storeu_ps(dst + t * ldp + j + q, lanes_in(q, 0, run), _mm512_setzero_ps());
            } else if (taps == 3) {
                stride2_three_taps(src + (long)iy * g->in_w, g->in_w, ix0, run, dst + j, dst + ldp + j, dst + 2 * ldp + j);
            } else {
                strided_run(src + (long)iy * g->in_w, g->in_w, ix0, g->stride, run, dst + j);
            }
            j += run;
            ox = 0;
            oy++;
        }
        r += taps;
        kx += taps;
        if (kx >= g->k) {
            kx = 0;
            if (++ky == g->k) {
                ky = 0;
                ic++;
            }
        }
    }
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_im2col_avx512_unavailable; /* non-x86 builds: select.c never names this */
#endif
