/*
 * f32_col2im_generic.c - col2im-add of the training backward (strided convs' input
 * gradient), the reference of the table's col2im_add: each output row of a chunk is a
 * run of contiguous columns, and the valid ox range of each kernel column is
 * computed, not tested per element.
 */
#include "kernels/train_kernels.h"

void f32_col2im_add__generic(const conv_geom *g, const float *col, long ldcol, int c0, int cc, long p0,
                             int pc, float *image)
{
    const int s = g->stride, pad = g->pad, W = g->in_w;
    const long plane = (long)g->in_h * g->in_w;
    for (int r = 0; r < cc * g->k * g->k; r++) {
        int c, ky, kx, lo, hi;   /* row r's channel is c0 + c */
        conv_row_tap(g, r, &c, &ky, &kx, &lo, &hi);
        float *pl = image + (c0 + c) * plane;
        const float *cr = col + r * ldcol;
        for (int j = 0, oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w); j < pc; j += g->out_w - ox, oy++, ox = 0) {
            const int run = g->out_w - ox < pc - j ? g->out_w - ox : pc - j;
            const int iy = oy * s - pad + ky;
            if (iy < 0 || iy >= g->in_h)
                continue;
            const int a = ox > lo ? ox : lo;
            const int b = ox + run - 1 < hi ? ox + run - 1 : hi;
            const long base = (long)iy * W - pad + kx;
            const float *src = cr + j - ox;
            for (int x = a; x <= b; x++)
                pl[base + (long)x * s] += src[x];
        }
    }
}
