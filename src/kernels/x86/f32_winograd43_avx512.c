/*
 * f32_winograd43_avx512.c - AVX-512F Winograd F(4,3) transforms for 3x3 stride-1
 * pad-1 convs in NCHW, 16 tiles at once (lane l = tile t0 + l); the reference is
 * the direct convolution of kernels/ref (tests/c/test_kernels_conv.c compares).
 *
 * The 16 tiles of a call fall into "segments", runs of tiles in one tile row. For
 * each segment a patch row is read with five contiguous (masked) loads of 16 floats
 * and split into the six stride-4 columns d[c] (lane l <- x = 4 (tx + l) - 1 + c)
 * with permutes; outputs are interleaved back the same way and written with masked
 * contiguous stores. Masks keep every access inside the plane's rows and columns, so
 * padding costs nothing and nothing outside the tensor is touched. (The first
 * version gathered and scattered every element: 3x slower on Zen 5.)
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/x86/avx512_target.h" /* the rest of this file is built for avx512f+fma */

#include "kernels/kernels.h"
#include "kernels/generic/winograd43_g.h"
#include "kernels/x86/avx512_math.h"

/* Lanes [la, lb) of a call hold tiles tx .. tx + (lb - la) - 1 of tile row ty. */
typedef struct tile_segment {
    int la, lb, ty, tx;
} tile_segment;

static int tile_segments(const wino_tiles *wt, int t0, tile_segment seg[16])
{
    int count = 0;
    for (int l = 0; l < 16 && t0 + l < wt->tile_count;) {
        int t = t0 + l, tx = t % wt->tiles_w;
        int len = wt->tiles_w - tx < 16 - l ? wt->tiles_w - tx : 16 - l;
        seg[count++] = (tile_segment){l, l + len, t / wt->tiles_w, tx};
        l += len;
    }
    return count;
}

static inline __mmask16 lane_range(int la, int lb)
{
    return (__mmask16)(((1u << lb) - 1u) & ~((1u << la) - 1u));
}

/* d[c] lane l = row[xb + 4 l + c] (0 outside [0, w)), c = 0..5. */
static inline void patch_row(const float *row, int w, long xb, __m512 d[6])
{
    const __m512i ph01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i ph23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    __m512 l0 = _mm512_maskz_loadu_ps(lanes_in(xb, 0, w), row + xb);
    __m512 l1 = _mm512_maskz_loadu_ps(lanes_in(xb + 16, 0, w), row + xb + 16);
    __m512 l2 = _mm512_maskz_loadu_ps(lanes_in(xb + 32, 0, w), row + xb + 32);
    __m512 l3 = _mm512_maskz_loadu_ps(lanes_in(xb + 48, 0, w), row + xb + 48);
    __m512 l4 = _mm512_maskz_loadu_ps(lanes_in(xb + 64, 0, w) & 0x3, row + xb + 64);
    /* the same row 128 columns on: this plane's part of the next task of 32 tiles */
    for (int i = 0; i < 5; i++)
        _mm_prefetch((const char *)(row + xb + 128 + 16 * i), _MM_HINT_T0);
    __m512 x01 = _mm512_permutex2var_ps(l0, ph01, l1), y01 = _mm512_permutex2var_ps(l2, ph01, l3);
    __m512 x23 = _mm512_permutex2var_ps(l0, ph23, l1), y23 = _mm512_permutex2var_ps(l2, ph23, l3);
    d[0] = _mm512_shuffle_f32x4(x01, y01, 0x44);
    d[1] = _mm512_shuffle_f32x4(x01, y01, 0xEE);
    d[2] = _mm512_shuffle_f32x4(x23, y23, 0x44);
    d[3] = _mm512_shuffle_f32x4(x23, y23, 0xEE);
    __m512i tail = _mm512_castps_si512(l4);
    d[4] = _mm512_castsi512_ps(_mm512_alignr_epi32(tail, _mm512_castps_si512(d[0]), 1));
    d[5] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_alignr_epi32(tail, tail, 1), _mm512_castps_si512(d[1]), 1));
}

/* 1-D input transform B^T d of six vectors. */
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
    tile_segment seg[16];
    const int segments = tile_segments(wt, t0, seg);
    __m512 e[6][6];
    for (int r = 0; r < 6; r++) {
        __m512 d[6];
        for (int c = 0; c < 6; c++)
            d[c] = _mm512_setzero_ps();
        for (int s = 0; s < segments; s++) {
            int y = 4 * seg[s].ty - 1 + r;
            if (y < 0 || y >= wt->h)
                continue;
            __m512 part[6];
            patch_row(plane + (long)y * wt->w, wt->w, 4L * (seg[s].tx - seg[s].la) - 1, part);
            __mmask16 lanes = lane_range(seg[s].la, seg[s].lb);
            for (int c = 0; c < 6; c++)
                d[c] = _mm512_mask_mov_ps(d[c], lanes, part[c]);
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

/* Four per-lane vectors y[c] (lane l, column c of tile l) -> f[i], 64 consecutive
 * columns: f[i] element j = y[j % 4][4 i + j / 4]. */
static inline void interleave4(const __m512 y[4], __m512 f[4])
{
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i q0 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), q1 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    __m512d a_lo = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], lo, y[1]));
    __m512d a_hi = _mm512_castps_pd(_mm512_permutex2var_ps(y[0], hi, y[1]));
    __m512d b_lo = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], lo, y[3]));
    __m512d b_hi = _mm512_castps_pd(_mm512_permutex2var_ps(y[2], hi, y[3]));
    f[0] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_lo, q0, b_lo));
    f[1] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_lo, q1, b_lo));
    f[2] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_hi, q0, b_hi));
    f[3] = _mm512_castpd_ps(_mm512_permutex2var_pd(a_hi, q1, b_hi));
}

/* m[p * m_stride_p + l] -> 4x4 outputs of tile t0+l: act(y + bias) + res into out. */
void f32_winograd43_output__avx512(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                   float bias, cspresnet_act act, const float *res, float *out)
{
    tile_segment seg[16];
    const int segments = tile_segments(wt, t0, seg);
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
        __m512 y[4], f[4];
        AT6(s[k][0], s[k][1], s[k][2], s[k][3], s[k][4], s[k][5], y[0], y[1], y[2], y[3]);
        for (int c = 0; c < 4; c++) {
            y[c] = _mm512_add_ps(y[c], vb);
            if (fast) {
                y[c] = act512(y[c], act);
            } else {
                float tmp[16];
                _mm512_storeu_ps(tmp, y[c]);
                f32_bias_act__generic(tmp, 16, 0.0f, act, NULL);
                y[c] = _mm512_loadu_ps(tmp);
            }
        }
        interleave4(y, f);
        for (int sg = 0; sg < segments; sg++) {
            long yy = 4L * seg[sg].ty + k;
            if (yy >= wt->h)
                continue;
            long xb = 4L * (seg[sg].tx - seg[sg].la); /* column of f[0] element 0 */
            float *orow = out + yy * wt->w + xb;
            const float *rrow = res ? res + yy * wt->w + xb : NULL;
            for (int i = 0; i < 4; i++) /* the lines the next task of 32 tiles writes */
                _mm_prefetch((const char *)(orow + 128 + 16 * i), _MM_HINT_ET0);
            for (int i = 0; i < 4; i++) {
                __mmask16 msk = lanes_in(16L * i, 4L * seg[sg].la, 4L * seg[sg].lb) &
                                lanes_in(xb + 16L * i, 0, wt->w);
                if (!msk)
                    continue;
                __m512 val = f[i];
                if (rrow)
                    val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(msk, rrow + 16 * i));
                _mm512_mask_storeu_ps(orow + 16 * i, msk, val);
            }
        }
    }
}

/* w (OC,C,3,3) rows oc0..oc0+oc_count -> u[p*u_stride_p + (oc-oc0)*in_c + ic], U = G g G^T,
 * 16 input channels per step (each lane gathers its channel's nine taps). */
void f32_winograd43_weight__avx512(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                                   float *u)
{
    const float (*G)[3] = winograd43_G;
    const __m512i nine = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(9));
    for (int o = 0; o < oc_count; o++)
        for (int c0 = 0; c0 < in_c; c0 += 16) {
            __mmask16 msk = lanes_in(c0, 0, in_c);
            const float *g = w + ((long)(oc0 + o) * in_c + c0) * 9;
            __m512 gk[9], t[6][3];
            for (int k = 0; k < 9; k++)
                gk[k] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), msk, nine, g + k, 4);
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(G[i][2]), gk[6 + j],
                                              _mm512_fmadd_ps(_mm512_set1_ps(G[i][1]), gk[3 + j],
                                                              _mm512_mul_ps(_mm512_set1_ps(G[i][0]), gk[j])));
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) {
                    __m512 val = _mm512_fmadd_ps(t[i][2], _mm512_set1_ps(G[j][2]),
                                                 _mm512_fmadd_ps(t[i][1], _mm512_set1_ps(G[j][1]),
                                                                 _mm512_mul_ps(t[i][0], _mm512_set1_ps(G[j][0]))));
                    _mm512_mask_storeu_ps(u + (i * 6 + j) * u_stride_p + (long)o * in_c + c0, msk, val);
                }
        }
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_winograd43_avx512_unavailable; /* non-x86 builds: select.c never names these */
#endif
