/*
 * f32_im2col_avx512.c - AVX-512F im2col packing for the fast GEMM convolution: rows
 * [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of one NCHW image
 * into panel[kc][ldp], the same contract as f32_im2col_rows__generic (its reference,
 * compared in tests/c/test_kernels_conv.c through whole convolutions).
 *
 * Each run of columns inside one output row reads its input row with masked loads
 * (zero padding comes from the masks) and, for stride 2, keeps the even elements of
 * 32 loaded floats with one permute: 16 panel floats per step instead of a bounds
 * check per element. Strides other than 1 and 2 go to the generic kernel.
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
#include "kernels/x86/avx512_math.h"

/* dst[q] = srow[ix0 + stride * q] (0 outside [0, w)) for q < run; stride 1 or 2.
 * ahead > 0: also prefetch the input `ahead` floats on (what the next block of
 * columns reads: its rows come straight from memory, too many streams for the
 * hardware prefetcher). */
static inline void strided_run(const float *srow, int w, long ix0, int stride, int run, float *dst,
                               long ahead)
{
    if (ahead)
        for (long q = 0; q < (long)stride * run; q += 16)
            _mm_prefetch((const char *)(srow + ix0 + ahead + q), _MM_HINT_T0);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int q = 0; q < run; q += 16) {
        __mmask16 out = lanes_in(q, 0, run);
        long ix = ix0 + (long)stride * q;
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

void f32_im2col_rows__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp)
{
    if (g->stride != 1 && g->stride != 2) {
        f32_im2col_rows__generic(g, image, k0, kc, n0, nc, panel, ldp);
        return;
    }
    const int kk = g->k * g->k;
    const long plane = (long)g->in_h * g->in_w;
    for (int r = 0; r < kc; r++) {
        int row = k0 + r, ic = row / kk, ky = (row % kk) / g->k, kx = row % g->k;
        const float *src = image + ic * plane;
        float *dst = panel + (long)r * ldp;
        int oy = (int)(n0 / g->out_w), ox = (int)(n0 % g->out_w);
        for (int j = 0; j < nc;) {
            int run = g->out_w - ox < nc - j ? g->out_w - ox : nc - j;
            int iy = oy * g->stride - g->pad + ky;
            if (iy < 0 || iy >= g->in_h) {
                for (int q = 0; q < run; q += 16)
                    _mm512_mask_storeu_ps(dst + j + q, lanes_in(q, 0, run), _mm512_setzero_ps());
            } else {
                strided_run(src + (long)iy * g->in_w, g->in_w, (long)ox * g->stride - g->pad + kx, g->stride, run,
                            dst + j, kx == 0 ? (long)g->stride * nc : 0);
            }
            j += run;
            ox = 0;
            oy++;
        }
    }
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_im2col_avx512_unavailable; /* non-x86 builds: select.c never names this */
#endif
