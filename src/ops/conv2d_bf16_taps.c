/*
 * conv2d_bf16_taps.c - bf16 3x3 stride-1 pad-1 convs read straight from a bf16 copy of
 * the input, on kernel sets whose bf16 config has the tap form (AMX). The code takes
 * 1x1 convs too (pad 0); conv2d_bf16.c's packing runs them faster (it packs each task's
 * pixels into L1 instead of writing the whole pair image first), so they go there.
 *
 * Per image: (1) the input (C,H,W) f32 becomes a pair image, Cp = C rounded up to 32
 * over 2 pair planes of (H+2p) x (W+2p) pairs (p the padding), pair (q, y, x) holding
 * channels 2q and 2q+1 at input pixel (y-p, x-p) rounded to bf16, zero in the border,
 * past C and in 32 slack pairs after each plane; (2) tasks of 32 output pixels of one
 * row: for each tap (ky, kx) the B operand is the pair image itself, shifted by ky rows
 * and kx pixels (a row of output pixels reads a row of input pixels), so nothing is
 * packed per task and no im2col exists. Weights are prepared as rows of k*k runs of Cp
 * pairs, run t = ky*k + kx holding w[oc][c][ky][kx] for c < C (zero past it), rows
 * rounded up to the tile's m_align. The epilogue is the shared fp32 one.
 *
 * Direct bf16 3x3 convs replace fp32 Winograd only here: Winograd F(4,3) in bf16 loses
 * 27x the accuracy of a direct bf16 conv (6% against 0.24% of max|y| measured on one
 * 4x4 tile of 128 channels), and a bf16 tile without this speed (AVX-512 BF16 on the
 * Xeon) is slower than fp32 Winograd. Each output is reduced in a fixed order by one
 * call, so thread counts give identical bits.
 */
#include <string.h>

#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

#define TAPS_SLACK 32   /* pairs after each plane: a tile reads 32 columns from any start */

int conv2d_bf16_taps_applies(const kernel_set *kt, const conv_geom *g)
{
    return kt->bf16->taps && g->stride == 1 && g->k == 3 && g->pad == 1;
}

static long pairs_of(int c)
{
    return (c + 31) / 32 * 16L;
}

static long plane_pairs(const conv_geom *g)
{
    return (long)(g->in_h + 2 * g->pad) * (g->in_w + 2 * g->pad) + TAPS_SLACK;
}

long conv2d_bf16_taps_weight_floats(const kernel_set *kt, int out_c, int in_c, int k)
{
    long rows = (out_c + kt->bf16->m_align - 1) / kt->bf16->m_align * kt->bf16->m_align;
    return rows * k * k * pairs_of(in_c);   /* a pair per float */
}

void conv2d_bf16_taps_weights(const kernel_set *kt, const float *w, int out_c, int in_c, int k, float *dst)
{
    uint16_t *o = (uint16_t *)(void *)dst;
    const long cp = pairs_of(in_c), lda = k * k * cp;
    const long rows = (out_c + kt->bf16->m_align - 1) / kt->bf16->m_align * kt->bf16->m_align;
    for (long oc = 0; oc < rows; oc++)
        for (int t = 0; t < k * k; t++)
            for (long c = 0; c < 2 * cp; c++)
                o[oc * 2 * lda + t * 2 * cp + c] =
                    oc < out_c && c < in_c ? bf16_from_f32(w[(oc * in_c + c) * k * k + t]) : 0;
}

long conv2d_bf16_taps_shared(const conv_geom *g)
{
    return pairs_of(g->in_c) * plane_pairs(g);
}

typedef struct taps_job {
    conv_gemm_job base;       /* ex, g, in, out, ep, pixels: for the shared epilogue */
    const uint16_t *w;
    uint16_t *img;            /* the current image's pair image */
    int image;
} taps_job;

/* Pair rows (q, y) of the pair image, q-major: borders and slack zero, the rest the
 * rounded input. */
static void convert_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const bf16_gemm_config *bf = job->base.ex->kernels->bf16;
    const int p = g->pad, wp = g->in_w + 2 * p, hp = g->in_h + 2 * p;
    const long pp = plane_pairs(g), plane = (long)g->in_h * g->in_w;
    const float *src = job->base.in->data + job->image * job->base.in->batch_stride;
    long begin, end;
    split_range(pairs_of(g->in_c) * hp, t, nt, &begin, &end);
    for (long r = begin; r < end; r++) {
        int q = (int)(r / hp), y = (int)(r % hp);
        uint16_t *row = job->img + 2 * (q * pp + (long)y * wp);
        int c0 = 2 * q, rows = g->in_c - c0 < 2 ? g->in_c - c0 : 2;
        if (y < p || y >= hp - p || rows <= 0) {
            memset(row, 0, sizeof(uint16_t) * 2 * (size_t)wp);
        } else {
            memset(row, 0, sizeof(uint16_t) * 2 * (size_t)p);
            memset(row + 2 * (p + g->in_w), 0, sizeof(uint16_t) * 2 * (size_t)p);
            bf->pack(src + c0 * plane + (long)(y - p) * g->in_w, plane, rows, g->in_w, row + 2 * p, 1);
        }
        if (y == hp - 1)
            memset(job->img + 2 * (q * pp + (long)hp * wp), 0, sizeof(uint16_t) * 2 * TAPS_SLACK);
    }
}

static void compute_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const bf16_gemm_config *bf = job->base.ex->kernels->bf16;
    const int k = g->k, wp = g->in_w + 2 * g->pad, segs = (g->out_w + 31) / 32;
    const long cp = pairs_of(g->in_c), lda = k * k * cp, pixels = job->base.pixels;
    long tap_off[9];
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
            tap_off[ky * k + kx] = 2L * (ky * wp + kx);
    float *dst = job->base.out->data + job->image * job->base.out->batch_stride;
    long begin, end;
    split_range((long)g->out_h * segs, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int oy = (int)(task / segs), x0 = (int)(task % segs) * 32;
        int nr = g->out_w - x0 < 32 ? g->out_w - x0 : 32;
        const uint16_t *b = job->img + 2L * ((long)oy * wp + x0);
        long n0 = (long)oy * g->out_w + x0;
        for (int m0 = 0; m0 < g->out_c; m0 += 32) {
            int mr = g->out_c - m0 < 32 ? g->out_c - m0 : 32;
            bf->taps(k * k, tap_off, (int)cp, job->w + 2L * m0 * lda, lda, b, plane_pairs(g), dst + m0 * pixels + n0,
                     pixels, mr, nr, 0);
        }
        conv2d_epilogue(&job->base, job->image, n0, nr, 0, g->out_c);
    }
}

void conv2d_bf16_taps_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                              const tensor4 *out, const conv_epilogue *ep)
{
    taps_job job = {{ex, g, NULL, in, out, ep, (long)g->out_h * g->out_w, 1, g->out_c, 0, NULL},
                    (const uint16_t *)(const void *)prepared, (uint16_t *)(void *)ex->op_scratch, 0};
    for (job.image = 0; job.image < in->n; job.image++) {
        threadpool_run(ex->pool, convert_worker, &job);
        threadpool_run(ex->pool, compute_worker, &job);
    }
}
