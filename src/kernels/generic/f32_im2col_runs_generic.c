/*
 * f32_im2col_runs_generic.c - im2col rows for the training convs, by runs: the
 * columns of one output row read one input row at a fixed stride, so each (im2col row,
 * output row) is a zero-filled left edge, one copy (memcpy at stride 1) and a
 * zero-filled right edge. Bit-identical to f32_im2col_rows__generic, which tests
 * compare it against; that one tests every element's bounds and ran at about 30% of
 * a training step. Second kernel: the same rows for maps narrower than 16 pixels,
 * where runs are 1-8 floats, by a per-tap table of source offsets.
 */
#include <string.h>

#include "kernels/train_kernels.h"

void f32_im2col_rows_runs__generic(const conv_geom *g, const float *image, int k0, int kc,
                                   long n0, int nc, float *panel, long ldp)
{
    const int s = g->stride;
    const long plane = (long)g->in_h * g->in_w;
    const int oy0 = (int)(n0 / g->out_w), ox0 = (int)(n0 % g->out_w);
    for (int r = 0; r < kc; r++) {
        int ic, ky, kx, lo, hi;   /* hi, lo: output columns reading inside the row */
        conv_row_tap(g, k0 + r, &ic, &ky, &kx, &lo, &hi);
        const float *src = image + ic * plane;
        float *dst = panel + (long)r * ldp;
        int j = 0, oy = oy0, ox = ox0;
        while (j < nc) {
            const int run = g->out_w - ox < nc - j ? g->out_w - ox : nc - j;
            const int iy = oy * s - g->pad + ky;
            float *d = dst + j;   /* d[x - ox] for ox <= x < ox + run */
            if (iy < 0 || iy >= g->in_h) {
                memset(d, 0, (size_t)run * sizeof(float));
            } else {
                const int a = ox > lo ? ox : lo;
                const int b = ox + run - 1 < hi ? ox + run - 1 : hi;
                if (a > b) {
                    memset(d, 0, (size_t)run * sizeof(float));
                } else {
                    const long base = (long)iy * g->in_w - g->pad + kx;  /* input of x: base + x*s */
                    for (int x = ox; x < a; x++)
                        d[x - ox] = 0.0f;
                    if (s == 1)
                        memcpy(d + (a - ox), src + base + a, (size_t)(b - a + 1) * sizeof(float));
                    else
                        for (int x = a; x <= b; x++)
                            d[x - ox] = src[base + (long)x * s];
                    for (int x = b + 1; x < ox + run; x++)
                        d[x - ox] = 0.0f;
                }
            }
            j += run;
            oy++;
            ox = 0;
        }
    }
}

/* Small maps: for each kernel tap (ky, kx) the source offset of every output pixel of
 * [p0, p0+pc) is computed once into idx (-1 in the padding), then every channel of
 * every image gathers through it: panel[r][i*pc + p]. */
void f32_im2col_rows_table__generic(const conv_geom *g, const float *images, long image_stride,
                                    int nimg, int k0, int kc, long p0, int pc, float *panel,
                                    long ldp, int *idx)
{
    const int kk = g->k * g->k;
    const long plane = (long)g->in_h * g->in_w;
    int tap = -1;
    for (int r = 0; r < kc; r++) {
        const int row = k0 + r, ic = row / kk, j = row % kk;
        if (j != tap) {
            tap = j;
            const int ky = j / g->k, kx = j % g->k;
            int oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w);
            for (int p = 0; p < pc; p++) {
                int iy = oy * g->stride - g->pad + ky, ix = ox * g->stride - g->pad + kx;
                idx[p] = iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w ? iy * g->in_w + ix : -1;
                if (++ox == g->out_w) {
                    ox = 0;
                    oy++;
                }
            }
        }
        for (int i = 0; i < nimg; i++) {
            const float *src = images + i * image_stride + ic * plane;
            float *dst = panel + (long)r * ldp + (long)i * pc;
            for (int p = 0; p < pc; p++)
                dst[p] = idx[p] >= 0 ? src[idx[p]] : 0.0f;
        }
    }
}
