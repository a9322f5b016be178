/*
 * f32_im2col_ref.c - packs a block of the implicit im2col matrix into NR-wide strips.
 *
 * Row r of the im2col matrix is (channel ci, ky, kx) with r = (ci*k + ky)*k + kx;
 * column j is output pixel (oy, ox) with j = oy*out_w + ox. The element is the input
 * pixel (ci, oy*stride - pad + ky, ox*stride - pad + kx), or 0 outside the image.
 * f32_im2col_panel__ref packs strips (strip s, columns n0 + s*NR ..., is kc rows of NR
 * floats) for the reference path; f32_im2col_rows__ref a row-major panel, the oracle of
 * the conv family's im2col_rows.
 */
#include "kernels/kernels.h"

void f32_im2col_panel__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                           int nc, float *panel)
{
    const int kk = g->k * g->k;
    const long in_plane = (long)g->in_h * g->in_w;
    const int strips = (nc + GEMM_NR - 1) / GEMM_NR;
    for (int s = 0; s < strips; s++) {
        float *strip = panel + (long)s * kc * GEMM_NR;
        long col0 = n0 + (long)s * GEMM_NR;
        int width = nc - s * GEMM_NR < GEMM_NR ? nc - s * GEMM_NR : GEMM_NR;
        /* output coordinates of the strip's columns */
        int oy[GEMM_NR], ox[GEMM_NR];
        for (int j = 0; j < width; j++) {
            long col = col0 + j;
            oy[j] = (int)(col / g->out_w);
            ox[j] = (int)(col % g->out_w);
        }
        for (int r = 0; r < kc; r++) {
            int row = k0 + r;
            int ci = row / kk, rem = row % kk;
            int ky = rem / g->k, kx = rem % g->k;
            const float *plane = image + ci * in_plane;
            float *dst = strip + (long)r * GEMM_NR;
            int j = 0;
            for (; j < width; j++) {
                int iy = oy[j] * g->stride - g->pad + ky;
                int ix = ox[j] * g->stride - g->pad + kx;
                dst[j] = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                             ? plane[(long)iy * g->in_w + ix]
                             : 0.0f;
            }
            for (; j < GEMM_NR; j++)
                dst[j] = 0.0f;
        }
    }
}

/* panel[r*ldp + j] = im2col element (k0 + r, n0 + j), r < kc, j < nc. */
void f32_im2col_rows__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                          int nc, float *panel, long ldp)
{
    const int kk = g->k * g->k;
    for (int r = 0; r < kc; r++) {
        int row = k0 + r, ci = row / kk, ky = (row % kk) / g->k, kx = row % g->k;
        for (int j = 0; j < nc; j++) {
            long col = n0 + j;
            int iy = (int)(col / g->out_w) * g->stride - g->pad + ky;
            int ix = (int)(col % g->out_w) * g->stride - g->pad + kx;
            int inside = iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w;
            panel[(long)r * ldp + j] = inside ? image[((long)ci * g->in_h + iy) * g->in_w + ix] : 0.0f;
        }
    }
}
