/*
 * winograd43_lanes.h - the Winograd F(4,3) input and output transforms of 16 tiles in
 * lane-major arrays (x[...][16], lane l = tile t0 + l), written so the compiler
 * vectorises the lane loops for whatever target the including file is built for.
 * Included by generic/f32_winograd43_generic.c (baseline ISA) and x86/f32_avx2.c
 * (avx2+fma); same contract as the kernels in kernels.h. Only the gathers of the
 * patches and the scatters of the outputs stay per tile.
 */
#ifndef CSPRESNET_WINOGRAD43_LANES_H
#define CSPRESNET_WINOGRAD43_LANES_H

#include "kernels/kernels.h"

/* o = B^T d over 16 lanes for six rows (points 0, +-1, +-2, inf). */
static inline void wl_bt6(float d[6][16], float o[6][16])
{
    for (int l = 0; l < 16; l++) {
        float p = d[4][l] - d[2][l], q = d[3][l] - d[1][l];
        o[0][l] = 4.0f * d[0][l] - 5.0f * d[2][l] + d[4][l];
        o[1][l] = (d[3][l] + d[4][l]) - 4.0f * (d[1][l] + d[2][l]);
        o[2][l] = 4.0f * (d[1][l] - d[2][l]) + (d[4][l] - d[3][l]);
        o[3][l] = 2.0f * q + p;
        o[4][l] = p - 2.0f * q;
        o[5][l] = 4.0f * d[1][l] - 5.0f * d[3][l] + d[5][l];
    }
}

/* o = A^T m over 16 lanes, six rows into four. */
static inline void wl_at6(float m[6][16], float o[4][16])
{
    for (int l = 0; l < 16; l++) {
        float s12 = m[1][l] + m[2][l], d12 = m[1][l] - m[2][l];
        float s34 = m[3][l] + m[4][l], d34 = m[3][l] - m[4][l];
        o[0][l] = m[0][l] + s12 + s34;
        o[1][l] = d12 + 2.0f * d34;
        o[2][l] = s12 + 4.0f * s34;
        o[3][l] = d12 + 8.0f * d34 + m[5][l];
    }
}

static inline void wl_input(const wino_tiles *wt, const float *plane, int t0, float *v, long v_stride_p)
{
    float d[6][6][16], e[6][6][16], col[6][16], o[6][16];
    for (int l = 0; l < 16; l++) {
        int t = t0 + l, y0 = 4 * (t / wt->tiles_w) - 1, x0 = 4 * (t % wt->tiles_w) - 1;
        for (int r = 0; r < 6; r++) {
            int y = y0 + r;
            int row_ok = t < wt->tile_count && y >= 0 && y < wt->h;
            for (int c = 0; c < 6; c++) {
                int x = x0 + c;
                d[r][c][l] = row_ok && x >= 0 && x < wt->w ? plane[(long)y * wt->w + x] : 0.0f;
            }
        }
    }
    for (int r = 0; r < 6; r++)
        wl_bt6(d[r], e[r]);
    for (int j = 0; j < 6; j++) {
        for (int r = 0; r < 6; r++)
            for (int l = 0; l < 16; l++)
                col[r][l] = e[r][j][l];
        wl_bt6(col, o);
        for (int i = 0; i < 6; i++)
            for (int l = 0; l < 16; l++)
                v[(i * 6 + j) * v_stride_p + l] = o[i][l];
    }
}

/* act: the including file's epilogue kernel (x = act(x + bias) + res over a row). */
static inline void wl_output(const wino_tiles *wt, const float *m, long m_stride_p, int t0, float bias,
                             cspresnet_act act, const float *res, float *out, bias_act_fn act_fn)
{
    float s[4][6][16], col[6][16], y[4][16], ys[4][4][16];
    for (int j = 0; j < 6; j++) {
        float o[4][16];
        for (int i = 0; i < 6; i++)
            for (int l = 0; l < 16; l++)
                col[i][l] = m[(i * 6 + j) * m_stride_p + l];
        wl_at6(col, o);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 16; l++)
                s[k][j][l] = o[k][l];
    }
    for (int k = 0; k < 4; k++) {
        wl_at6(s[k], y);
        act_fn(&y[0][0], 64, bias, act, NULL); /* rows 4 x 16 lanes at once, no residual yet */
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 16; l++)
                ys[k][c][l] = y[c][l];
    }
    for (int l = 0; l < 16 && t0 + l < wt->tile_count; l++) {
        int t = t0 + l, oy = 4 * (t / wt->tiles_w), ox = 4 * (t % wt->tiles_w);
        int cols = wt->w - ox < 4 ? wt->w - ox : 4;
        for (int k = 0; k < 4 && oy + k < wt->h; k++) {
            long at = (long)(oy + k) * wt->w + ox;
            for (int c = 0; c < cols; c++)
                out[at + c] = ys[k][c][l] + (res ? res[at + c] : 0.0f);
        }
    }
}

#endif
