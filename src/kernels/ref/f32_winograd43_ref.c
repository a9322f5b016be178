/*
 * f32_winograd43_ref.c - the reference Winograd F(4,3) transforms (the oracle of the
 * winograd family, kernels.h): the matrices of Lavin & Gray (points 0, +-1, +-2, inf)
 * applied as written, U = G g G^T, V = B^T d B, Y = A^T M A, one tile at a time,
 * summed in double. The fast kernels factor the same products for 16 lanes at once.
 */
#include "kernels/kernels.h"

static const double G[6][3] = {
    {1.0 / 4, 0.0, 0.0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0.0, 0.0, 1.0},
};

static const double BT[6][6] = {
    {4, 0, -5, 0, 1, 0},
    {0, -4, -4, 1, 1, 0},
    {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0},
    {0, 2, -1, -2, 1, 0},
    {0, 4, 0, -5, 0, 1},
};

static const double AT[4][6] = {
    {1, 1, 1, 1, 1, 0},
    {0, 1, -1, 2, -2, 0},
    {0, 1, 1, 4, 4, 0},
    {0, 1, -1, 8, -8, 1},
};

void f32_winograd43_weight__ref(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                                float *u)
{
    for (int o = 0; o < oc_count; o++)
        for (int ic = 0; ic < in_c; ic++) {
            const float *g = w + ((long)(oc0 + o) * in_c + ic) * 9;
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    double sum = 0.0;
                    for (int r = 0; r < 3; r++)
                        for (int c = 0; c < 3; c++)
                            sum += G[i][r] * g[r * 3 + c] * G[j][c];
                    u[(i * 6 + j) * u_stride_p + (long)o * in_c + ic] = (float)sum;
                }
        }
}

void f32_winograd43_input__ref(const wino_tiles *wt, const float *plane, int t0, float *v,
                               long v_stride_p)
{
    for (int l = 0; l < 16; l++) {
        int t = t0 + l, y0 = 4 * (t / wt->tiles_w) - 1, x0 = 4 * (t % wt->tiles_w) - 1;
        double d[6][6];
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 6; c++) {
                int y = y0 + r, x = x0 + c;
                int inside = t < wt->tile_count && y >= 0 && y < wt->h && x >= 0 && x < wt->w;
                d[r][c] = inside ? plane[(long)y * wt->w + x] : 0.0;
            }
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                double sum = 0.0;
                for (int r = 0; r < 6; r++)
                    for (int c = 0; c < 6; c++)
                        sum += BT[i][r] * d[r][c] * BT[j][c];
                v[(i * 6 + j) * v_stride_p + l] = (float)sum;
            }
    }
}

void f32_winograd43_output__ref(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                float bias, cspresnet_act act, const float *res, float *out)
{
    for (int l = 0; l < 16 && t0 + l < wt->tile_count; l++) {
        int t = t0 + l, oy = 4 * (t / wt->tiles_w), ox = 4 * (t % wt->tiles_w);
        for (int k = 0; k < 4 && oy + k < wt->h; k++)
            for (int c = 0; c < 4 && ox + c < wt->w; c++) {
                double sum = 0.0;
                for (int i = 0; i < 6; i++)
                    for (int j = 0; j < 6; j++)
                        sum += AT[k][i] * m[(i * 6 + j) * m_stride_p + l] * AT[c][j];
                long at = (long)(oy + k) * wt->w + ox + c;
                float y = (float)sum;
                f32_bias_act__ref(&y, 1, bias, act, res ? res + at : NULL);
                out[at] = y;
            }
    }
}
