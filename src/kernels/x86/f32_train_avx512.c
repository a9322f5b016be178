/*
 * f32_train_avx512.c - AVX-512F point-wise kernels of training: train-mode BN fused
 * with the following activation (swish, relu or none; other activations go to the
 * reference kernels), over one contiguous run of a channel plane. Formulas in
 * train_kernels.h; the reference twins are in kernels/ref/f32_train_ref.c.
 *
 * Sums are kept per lane in double (8 lanes per half-vector) and reduced at the end
 * of the run in a fixed order, so a run's result never depends on threads. exp and
 * the list of vectorised activations come from avx512_math.h, shared with the
 * inference kernels. Compiled for avx512f+fma (avx512_target.h); chosen at
 * run time only when the CPU has AVX-512F (select.c).
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/x86/avx512_target.h" /* the rest of this file is built for avx512f+fma */

#include "kernels/train_kernels.h"
#include "kernels/x86/avx512_math.h"

/* swish as v * sigmoid(v): the sigmoid is shared with the derivative below */
static inline __m512 train_act512(__m512 v, cspresnet_act act)
{
    if (act == CSPRESNET_ACT_SWISH)
        return _mm512_mul_ps(v, sigmoid512(v));
    if (act == CSPRESNET_ACT_RELU)
        return _mm512_max_ps(v, _mm512_setzero_ps());
    return v;
}

/* act'(v) */
static inline __m512 dact512(__m512 v, cspresnet_act act)
{
    if (act == CSPRESNET_ACT_SWISH) {
        __m512 s = sigmoid512(v), one = _mm512_set1_ps(1.0f);
        return _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
    }
    if (act == CSPRESNET_ACT_RELU)
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(1.0f));
    return _mm512_set1_ps(1.0f);
}

/* acc += the 16 floats of v as doubles (two 8-lane halves) */
static inline void add_pd(__m512 v, __m512d *lo, __m512d *hi)
{
    *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

void f32_bn_stats__avx512(const float *x, long xs, int runs, long len, double *s1, double *s2)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    for (int r = 0; r < runs; r++, x += xs)
        for (long i = 0; i < len; i += 16) {
            __m512 v = _mm512_maskz_loadu_ps(first_lanes(len - i), x + i);
            __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            a0 = _mm512_add_pd(a0, lo);
            a1 = _mm512_add_pd(a1, hi);
            b0 = _mm512_fmadd_pd(lo, lo, b0);
            b1 = _mm512_fmadd_pd(hi, hi, b1);
        }
    *s1 += _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    *s2 += _mm512_reduce_add_pd(_mm512_add_pd(b0, b1));
}

void f32_bn_act_apply__avx512(const float *x, long xs, float *y, long ys, int runs, long len,
                              const bn_act_params *p)
{
    if (!act_is_fast(p->act)) {
        f32_bn_act_apply__ref(x, xs, y, ys, runs, len, p);
        return;
    }
    const __m512 sc = _mm512_set1_ps(p->scale), sh = _mm512_set1_ps(p->shift);
    for (int r = 0; r < runs; r++, x += xs, y += ys)
        for (long i = 0; i < len; i += 16) {
            __mmask16 m = first_lanes(len - i);
            __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), sc, sh);
            _mm512_mask_storeu_ps(y + i, m, train_act512(v, p->act));
        }
}

void f32_bn_act_bwd_reduce__avx512(const float *x, long xs, const float *da, long das, int runs,
                                   long len, const bn_act_params *p, double *sdy, double *sdyx)
{
    if (!act_is_fast(p->act)) {
        f32_bn_act_bwd_reduce__ref(x, xs, da, das, runs, len, p, sdy, sdyx);
        return;
    }
    const __m512 mean = _mm512_set1_ps(p->mean), rstd = _mm512_set1_ps(p->rstd);
    const __m512 w = _mm512_set1_ps(p->weight), b = _mm512_set1_ps(p->bias);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    for (int r = 0; r < runs; r++, x += xs, da += das)
        for (long i = 0; i < len; i += 16) {
            __mmask16 m = first_lanes(len - i);
            __m512 xh = _mm512_maskz_mul_ps(m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mean), rstd);
            __m512 g = _mm512_maskz_loadu_ps(m, da + i);
            if (p->act != CSPRESNET_ACT_NONE)
                g = _mm512_mul_ps(g, dact512(_mm512_fmadd_ps(xh, w, b), p->act));
            add_pd(g, &a0, &a1);
            add_pd(_mm512_mul_ps(g, xh), &b0, &b1);
        }
    *sdy += _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    *sdyx += _mm512_reduce_add_pd(_mm512_add_pd(b0, b1));
}

void f32_bn_act_bwd_apply__avx512(const float *x, long xs, const float *da, long das, float *dx,
                                  long dxs, int runs, long len, const bn_act_params *p)
{
    if (!act_is_fast(p->act)) {
        f32_bn_act_bwd_apply__ref(x, xs, da, das, dx, dxs, runs, len, p);
        return;
    }
    const __m512 mean = _mm512_set1_ps(p->mean), rstd = _mm512_set1_ps(p->rstd);
    const __m512 w = _mm512_set1_ps(p->weight), b = _mm512_set1_ps(p->bias);
    const __m512 sc = _mm512_set1_ps(p->scale), mdy = _mm512_set1_ps(p->mdy), mdyx = _mm512_set1_ps(p->mdyx);
    for (int r = 0; r < runs; r++, x += xs, da += das, dx += dxs)
        for (long i = 0; i < len; i += 16) {
            __mmask16 m = first_lanes(len - i);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mean), rstd);
            __m512 g = _mm512_maskz_loadu_ps(m, da + i);
            if (p->act != CSPRESNET_ACT_NONE)
                g = _mm512_mul_ps(g, dact512(_mm512_fmadd_ps(xh, w, b), p->act));
            __m512 t = _mm512_fnmadd_ps(xh, mdyx, _mm512_sub_ps(g, mdy));
            __m512 v = p->assign ? _mm512_mul_ps(sc, t) : _mm512_fmadd_ps(sc, t, _mm512_maskz_loadu_ps(m, dx + i));
            _mm512_mask_storeu_ps(dx + i, m, v);
        }
}

/* im2col rows of a stride-1 conv whose output rows are as wide as its input rows
 * (pad = (k-1)/2): then column p of tap (ky, kx) reads the input plane at
 * p + (ky - pad) * w + (kx - pad), so a row of the panel is the plane shifted, under
 * a mask of the valid pixels (computed once per tap). Masked loads never touch the
 * masked-off lanes. Handles k <= 5 and pc <= 256; returns 0 (nothing done) otherwise. */
int f32_im2col_shift__avx512(const conv_geom *g, const float *images, long image_stride, int nimg,
                             int k0, int kc, long p0, int pc, float *panel, long ldp)
{
    const int kk = g->k * g->k;
    if (g->stride != 1 || g->out_w != g->in_w || g->k > 5 || pc > 256)
        return 0;
    const int blocks = (pc + 15) / 16;
    /* output row and column of every pixel, then each tap's mask by vector compares:
     * 0 <= oy + dy < in_h and 0 <= ox + dx < in_w as unsigned compares */
    int oys[256], oxs[256];
    for (int q = 0, oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w); q < blocks * 16; q++) {
        oys[q] = oy;
        oxs[q] = ox;
        if (++ox == g->out_w) {
            ox = 0;
            oy++;
        }
    }
    __mmask16 masks[25][16];
    long shift[25];
    const __m512i hv = _mm512_set1_epi32(g->in_h), wv = _mm512_set1_epi32(g->in_w);
    for (int j = 0; j < kk; j++) {
        const int dy = j / g->k - g->pad, dx = j % g->k - g->pad;
        shift[j] = (long)dy * g->in_w + dx;
        const __m512i dyv = _mm512_set1_epi32(dy), dxv = _mm512_set1_epi32(dx);
        for (int b = 0; b < blocks; b++) {
            __m512i y = _mm512_add_epi32(_mm512_loadu_si512(oys + b * 16), dyv);
            __m512i x = _mm512_add_epi32(_mm512_loadu_si512(oxs + b * 16), dxv);
            masks[j][b] = _mm512_cmplt_epu32_mask(y, hv) & _mm512_cmplt_epu32_mask(x, wv);
        }
    }
    const long plane = (long)g->in_h * g->in_w;
    const __mmask16 last = (__mmask16)(pc % 16 ? (1u << (pc % 16)) - 1 : 0xffff);
    for (int j = 0; j < kk; j++)
        masks[j][blocks - 1] &= last;   /* never load past the chunk's last pixel */
    for (int r = 0; r < kc; r++) {
        const int row = k0 + r, ic = row / kk, j = row % kk;
        for (int i = 0; i < nimg; i++) {
            const float *src = images + i * image_stride + ic * plane + p0 + shift[j];
            float *dst = panel + (long)r * ldp + (long)i * pc;
            for (int b = 0; b < blocks - 1; b++)
                _mm512_storeu_ps(dst + b * 16, _mm512_maskz_loadu_ps(masks[j][b], src + b * 16));
            _mm512_mask_storeu_ps(dst + (blocks - 1) * 16, last,
                                  _mm512_maskz_loadu_ps(masks[j][blocks - 1], src + (blocks - 1) * 16));
        }
    }
    return 1;
}
/* out[x] = src[2x] for x < n: pairs of loads folded by one two-source permute; the
 * loads are masked to the floats the outputs need (never past src[2n-2]). */
static inline void copy_stride2(const float *src, int n, float *out)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int x = 0; x < n; x += 16) {
        const int m = n - x < 16 ? n - x : 16, need = 2 * m - 1;   /* floats from src + 2x */
        __m512 lo = _mm512_maskz_loadu_ps(first_lanes(need), src + 2 * x);
        __m512 hi = _mm512_maskz_loadu_ps(first_lanes(need - 16), src + 2 * x + 16);
        _mm512_mask_storeu_ps(out + x, first_lanes(m), _mm512_permutex2var_ps(lo, even, hi));
    }
}

/* f32_im2col_rows_runs__generic with the stride-2 copies vectorised (the stride-2
 * convs' forward and weight-gradient packing); other strides go to it. Bit-identical:
 * both only copy and zero-fill. */
void f32_im2col_runs__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp)
{
    if (g->stride != 2) {
        f32_im2col_rows_runs__generic(g, image, k0, kc, n0, nc, panel, ldp);
        return;
    }
    const long plane = (long)g->in_h * g->in_w;
    const int oy0 = (int)(n0 / g->out_w), ox0 = (int)(n0 % g->out_w);
    for (int r = 0; r < kc; r++) {
        int ic, ky, kx, lo, hi;
        conv_row_tap(g, k0 + r, &ic, &ky, &kx, &lo, &hi);
        const float *src = image + ic * plane;
        float *dst = panel + (long)r * ldp;
        for (int j = 0, oy = oy0, ox = ox0; j < nc; j += g->out_w - ox, oy++, ox = 0) {
            const int run = g->out_w - ox < nc - j ? g->out_w - ox : nc - j;
            const int iy = 2 * oy - g->pad + ky;
            float *d = dst + j - ox;   /* d[x] for ox <= x < ox + run */
            const int a = ox > lo ? ox : lo, b = ox + run - 1 < hi ? ox + run - 1 : hi;
            if (iy < 0 || iy >= g->in_h || a > b) {
                memset(d + ox, 0, (size_t)run * sizeof(float));
                continue;
            }
            for (int x = ox; x < a; x++)
                d[x] = 0.0f;
            copy_stride2(src + (long)iy * g->in_w - g->pad + kx + 2L * a, b - a + 1, d + a);
            for (int x = b + 1; x < ox + run; x++)
                d[x] = 0.0f;
        }
    }
}
/* out[2x] += src[x] for x < n, odd lanes untouched: each 16 sources are spread over
 * the even lanes of two vectors and added under a mask (so an odd lane's -0.0 stays) */
static inline void add_stride2(const float *src, int n, float *out)
{
    const __m512i lo_idx = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i hi_idx = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    for (int x = 0; x < n; x += 16) {
        const int m = n - x < 16 ? n - x : 16, span = 2 * m - 1;   /* floats of out from out + 2x */
        const __m512 v = _mm512_maskz_loadu_ps(first_lanes(m), src + x);
        const __mmask16 ml = first_lanes(span) & 0x5555, mh = first_lanes(span - 16) & 0x5555;
        float *o = out + 2 * x;
        __m512 d0 = _mm512_maskz_loadu_ps(ml, o), d1 = _mm512_maskz_loadu_ps(mh, o + 16);
        d0 = _mm512_add_ps(d0, _mm512_permutexvar_ps(lo_idx, v));
        d1 = _mm512_add_ps(d1, _mm512_permutexvar_ps(hi_idx, v));
        _mm512_mask_storeu_ps(o, ml, d0);
        _mm512_mask_storeu_ps(o + 16, mh, d1);
    }
}

void f32_col2im_add__avx512(const conv_geom *g, const float *col, long ldcol, int c0, int cc, long p0,
                            int pc, float *image)
{
    if (g->stride != 2) {
        f32_col2im_add__generic(g, col, ldcol, c0, cc, p0, pc, image);
        return;
    }
    const int pad = g->pad, W = g->in_w;
    const long plane = (long)g->in_h * g->in_w;
    for (int r = 0; r < cc * g->k * g->k; r++) {
        int c, ky, kx, lo, hi;
        conv_row_tap(g, r, &c, &ky, &kx, &lo, &hi);
        float *pl = image + (c0 + c) * plane;
        const float *cr = col + r * ldcol;
        for (int j = 0, oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w); j < pc; j += g->out_w - ox, oy++, ox = 0) {
            const int run = g->out_w - ox < pc - j ? g->out_w - ox : pc - j;
            const int iy = 2 * oy - pad + ky;
            const int a = ox > lo ? ox : lo, b = ox + run - 1 < hi ? ox + run - 1 : hi;
            if (iy < 0 || iy >= g->in_h || a > b)
                continue;
            add_stride2(cr + j - ox + a, b - a + 1, pl + (long)iy * W - pad + kx + 2L * a);
        }
    }
}
/* dst[j*ldd + i] = src[i*lds + j], i < rows, j < cols: 16 x 16 blocks transposed in
 * registers (unpack, then 128-bit lane shuffles), edges by masked loads and stores.
 * (A gather-based im2col for strided convs on small maps was tried here and was half
 * the speed of the scalar table: Zen 5 gathers are slow; the table stays.) */
void f32_transpose__avx512(const float *src, long lds, int rows, int cols, float *dst, long ldd)
{
    if (cols < 16) {   /* maps of 1-4 pixels: a block would be mostly padding */
        f32_transpose__ref(src, lds, rows, cols, dst, ldd);
        return;
    }
    for (int i0 = 0; i0 < rows; i0 += 16) {
        const int rn = rows - i0 < 16 ? rows - i0 : 16;
        const __mmask16 rmask = (__mmask16)(rn == 16 ? 0xffff : (1u << rn) - 1);
        for (int j0 = 0; j0 < cols; j0 += 16) {
            const int cn = cols - j0 < 16 ? cols - j0 : 16;
            const __mmask16 cmask = (__mmask16)(cn == 16 ? 0xffff : (1u << cn) - 1);
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < rn ? _mm512_maskz_loadu_ps(cmask, src + (long)(i0 + i) * lds + j0) : _mm512_setzero_ps();
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 16; i += 4) {
                r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
                r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
                r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
                r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
            }
            /* r[4q + c] holds, in each 128-bit lane L, column 4L + c of rows 4q..4q+3 */
            for (int c = 0; c < 4; c++) {
                __m512 a = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);      /* lanes 0,2 | 0,2 */
                __m512 b = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);      /* lanes 1,3 | 1,3 */
                __m512 e = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
                __m512 f = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
                t[c] = _mm512_shuffle_f32x4(a, e, 0x88);        /* column c      */
                t[8 + c] = _mm512_shuffle_f32x4(a, e, 0xdd);    /* column 8 + c  */
                t[4 + c] = _mm512_shuffle_f32x4(b, f, 0x88);    /* column 4 + c  */
                t[12 + c] = _mm512_shuffle_f32x4(b, f, 0xdd);   /* column 12 + c */
            }
            for (int j = 0; j < cn; j++)
                _mm512_mask_storeu_ps(dst + (long)(j0 + j) * ldd + i0, rmask, t[j]);
        }
    }
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_train_avx512_unavailable; /* non-x86 builds: select.c never names these */
#endif
