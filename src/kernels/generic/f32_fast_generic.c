/*
 * f32_fast_generic.c - portable kernels of the fast convolution path: a GEMM tile
 * over any row-major B block, the conv epilogue on one output row, the Winograd
 * F(4,3) weight transform and im2col packing into a row-major panel. Used by every
 * ISA (the weight transform and packing are not hot) and, for the GEMM and epilogue,
 * on CPUs without AVX2. Plain C11: the compiler may vectorise it for the baseline ISA.
 */
#include "kernels/kernels.h"
#include "kernels/generic/winograd43_g.h"
#include "kernels/pointwise.h"

/* a (mr x kc, lda), b (kc x nr, ldb) -> c (mr x nr, ldc); mr <= 4, nr <= 16. */
void f32_gemm_4x16__generic(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                            long ldc, int mr, int nr, int accumulate)
{
    float acc[4][16] = {{0}};
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (long)k * ldb;
        for (int i = 0; i < mr; i++) {
            float av = a[i * lda + k];
            for (int j = 0; j < nr; j++)
                acc[i][j] += av * bk[j];
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

/* x (count) = act(x + bias) + res; res may be NULL. */
void f32_bias_act__generic(float *x, long count, float bias, cspresnet_act act, const float *res)
{
    if (bias != 0.0f)
        f32_add_scalar__ref(x, count, bias);
    f32_activation__ref(act, x, count);
    if (res)
        f32_add_scaled__ref(x, res, 1.0f, x, count);
}

/* w (OC,C,3,3) rows oc0..oc0+oc_count -> u[p*u_stride_p + (oc-oc0)*in_c + ic],
 * U = G g G^T with G the 6x3 F(4,3) matrix (Lavin & Gray, points 0, +-1, +-2). */
void f32_winograd43_weight__generic(const float *w, int in_c, int oc0, int oc_count,
                                    long u_stride_p, float *u)
{
    const float (*G)[3] = winograd43_G;
    /* chunks of 64 input channels: 36 contiguous runs written per chunk, not 36 scattered floats per pair */
    float tmp[36][64];
    for (int o = 0; o < oc_count; o++)
        for (int c0 = 0; c0 < in_c; c0 += 64) {
            int cn = in_c - c0 < 64 ? in_c - c0 : 64;
            for (int q = 0; q < cn; q++) {
                const float *g = w + ((long)(oc0 + o) * in_c + c0 + q) * 9;
                float t[6][3];
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 3; j++)
                        t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 6; j++)
                        tmp[i * 6 + j][q] = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
            }
            for (int p = 0; p < 36; p++) {
                float *dst = u + p * u_stride_p + (long)o * in_c + c0;
                for (int q = 0; q < cn; q++)
                    dst[q] = tmp[p][q];
            }
        }
}

/* image (C,H,W) -> panel[r][j] = im2col row k0+r, column n0+j (r < kc, j < nc). */
void f32_im2col_rows__generic(const conv_geom *g, const float *image, int k0, int kc, long n0,
                              int nc, float *panel, long ldp)
{
    const int kk = g->k * g->k;
    const long plane = (long)g->in_h * g->in_w;
    for (int r = 0; r < kc; r++) {
        int row = k0 + r, ic = row / kk, ky = (row % kk) / g->k, kx = row % g->k;
        const float *src = image + ic * plane;
        float *dst = panel + (long)r * ldp;
        long col = n0;
        int j = 0;
        while (j < nc) {
            int oy = (int)(col / g->out_w), ox = (int)(col % g->out_w);
            int run = g->out_w - ox < nc - j ? g->out_w - ox : nc - j;
            int iy = oy * g->stride - g->pad + ky;
            if (iy < 0 || iy >= g->in_h) {
                for (int q = 0; q < run; q++)
                    dst[j + q] = 0.0f;
            } else {
                const float *srow = src + (long)iy * g->in_w;
                for (int q = 0; q < run; q++) {
                    int ix = (ox + q) * g->stride - g->pad + kx;
                    dst[j + q] = ix >= 0 && ix < g->in_w ? srow[ix] : 0.0f;
                }
            }
            j += run;
            col += run;
        }
    }
}
