/*
 * conv2d_int8_taps.c - int8 3x3 stride-1 pad-1 convs read straight from a u8 copy of
 * the input, on kernel sets whose int8 config has the tap form (AMX), in place of the
 * fp32 Winograd that such convs run elsewhere; conv2d_bf16_taps.c is the bf16 twin.
 *
 * Per image: (1) the input (C,H,W) f32 becomes a quad image, Cq = C rounded up to 64
 * (the tile's 16-quad K step) over 4 quad planes of (H+2) x (W+2) quads, quad (q, y,
 * x) holding channels 4q..4q+3 at input pixel (y-1, x-1) quantized as conv2d_int8.c
 * does (u8 = clamp(rne(x / act_scale) + z, 0, 255)), the zero point z (an exact 0) in
 * the border, past C and in 32 slack quads after each plane; (2) tasks of 32 output
 * pixels of one row: for each tap (ky, kx) the B operand is the quad image itself,
 * shifted by ky rows and kx pixels, so nothing is packed per task. Weights are
 * conv2d_int8.c's prepared block (scales, comp = z * sum of the row's s8 weights) with
 * rows of 9 runs of Cq/4 quads, run t = ky*3 + kx holding q[oc][c][ky][kx] for c < C
 * (zero past it), rows rounded up to the tile's m_align. The tile sums the 9 runs in
 * int32 and dequantizes; the fp32 epilogue follows. Integer sums are exact, so the
 * result is the im2col int8 path's bits, for any thread count.
 */
#include <string.h>

#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

#define TAPS_SLACK 32   /* quads after each plane: a tile reads 32 columns from any start */

int conv2d_int8_taps_applies(const kernel_set *kt, const conv_geom *g)
{
    return kt->int8->taps && g->stride == 1 && g->k == 3 && g->pad == 1;
}

static long quads_of(const kernel_set *kt, int c)
{
    const long step = 4L * kt->int8->k_align;
    return (c + step - 1) / step * step / 4;
}

static long plane_quads(const conv_geom *g)
{
    return (long)(g->in_h + 2 * g->pad) * (g->in_w + 2 * g->pad) + TAPS_SLACK;
}

static long m_rows(const kernel_set *kt, int out_c)
{
    return (out_c + kt->int8->m_align - 1) / kt->int8->m_align * kt->int8->m_align;
}

long conv2d_int8_taps_weight_floats(const kernel_set *kt, int out_c, int in_c, int k)
{
    return conv2d_int8_head_floats(out_c) + m_rows(kt, out_c) * k * k * quads_of(kt, in_c);   /* a quad per float */
}

void conv2d_int8_taps_weights(const kernel_set *kt, const float *w, int out_c, int in_c, int k, float act_scale,
                              int act_zero, float *dst)
{
    const long cq = quads_of(kt, in_c);
    conv2d_int8_weights_at(w, out_c, (long)in_c * k * k, act_scale, act_zero, k * k * cq, m_rows(kt, out_c), k * k,
                           4 * cq, dst);
}

long conv2d_int8_taps_shared(const kernel_set *kt, const conv_geom *g)
{
    return quads_of(kt, g->in_c) * plane_quads(g);   /* a quad per float */
}

typedef struct taps_job {
    conv_gemm_job base;       /* ex, g, in, out, ep, pixels: for the shared epilogue */
    const float *prep;
    uint8_t *img;             /* the current image's quad image */
    int image;
} taps_job;

/* Quad rows (q, y) of the quad image, q-major: borders, slack and channels past C the
 * zero point, the rest the quantized input. */
static void convert_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const u8s8_gemm_config *q8 = job->base.ex->kernels->int8;
    const int p = g->pad, wp = g->in_w + 2 * p, hp = g->in_h + 2 * p, z = (int)job->prep[2];
    const long pq = plane_quads(g), plane = (long)g->in_h * g->in_w;
    const float *src = job->base.in->data + job->image * job->base.in->batch_stride;
    long begin, end;
    split_range(quads_of(job->base.ex->kernels, g->in_c) * hp, t, nt, &begin, &end);
    for (long r = begin; r < end; r++) {
        int q = (int)(r / hp), y = (int)(r % hp);
        uint8_t *row = job->img + 4 * (q * pq + (long)y * wp);
        int c0 = 4 * q, rows = g->in_c - c0 < 4 ? g->in_c - c0 : 4;
        if (y < p || y >= hp - p || rows <= 0) {
            memset(row, z, 4 * (size_t)wp);
        } else {
            memset(row, z, 4 * (size_t)p);
            memset(row + 4 * (p + g->in_w), z, 4 * (size_t)p);
            q8->pack(src + c0 * plane + (long)(y - p) * g->in_w, plane, rows, g->in_w, job->prep[0], z, row + 4 * p,
                     1);
        }
        if (y == hp - 1)
            memset(job->img + 4 * (q * pq + (long)hp * wp), z, 4 * TAPS_SLACK);
    }
}

static void compute_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const kernel_set *kt = job->base.ex->kernels;
    const int k = g->k, wp = g->in_w + 2 * g->pad, segs = (g->out_w + 31) / 32;
    const long cq = quads_of(kt, g->in_c), lda = k * k * cq, pixels = job->base.pixels;
    const int8_t *w = conv2d_int8_rows(job->prep, g->out_c);
    const int32_t *comp = conv2d_int8_comp(job->prep);
    const float *scale = conv2d_int8_dequant(job->prep, g->out_c);
    long tap_off[9];
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
            tap_off[ky * k + kx] = 4L * (ky * wp + kx);
    float *dst = job->base.out->data + job->image * job->base.out->batch_stride;
    long begin, end;
    split_range((long)g->out_h * segs, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int oy = (int)(task / segs), x0 = (int)(task % segs) * 32;
        int nr = g->out_w - x0 < 32 ? g->out_w - x0 : 32;
        const uint8_t *b = job->img + 4L * ((long)oy * wp + x0);
        long n0 = (long)oy * g->out_w + x0;
        for (int m0 = 0; m0 < g->out_c; m0 += 32) {
            int mr = g->out_c - m0 < 32 ? g->out_c - m0 : 32;
            kt->int8->taps(k * k, tap_off, (int)cq, w + 4L * m0 * lda, lda, b, plane_quads(g), comp + m0, scale + m0,
                           dst + m0 * pixels + n0, pixels, mr, nr);
        }
        conv2d_epilogue(&job->base, job->image, n0, nr, 0, g->out_c);
    }
}

void conv2d_int8_taps_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                              const tensor4 *out, const conv_epilogue *ep)
{
    taps_job job = {{ex, g, NULL, in, out, ep, (long)g->out_h * g->out_w, 1, g->out_c, 0, NULL}, prepared,
                    (uint8_t *)(void *)ex->op_scratch, 0};
    for (job.image = 0; job.image < in->n; job.image++) {
        threadpool_run(ex->pool, convert_worker, &job);
        threadpool_run(ex->pool, compute_worker, &job);
    }
}
