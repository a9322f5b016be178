/*
 * dfl_decode.c - the PP-YOLOE head's eval outputs for one level: Distribution Focal
 * Loss decoding of the box branch into [N, L, 4] boxes and the sigmoid of the class
 * branch into [N, C, L] scores, each at the level's anchor offset in L.
 *
 * Boxes, per anchor i = y*W + x of the level and side s in (l, t, r, b), with bins =
 * reg_max + 1 and reg (N, 4*bins, H, W) read as the port's reg.reshape(N, 4, bins, H*W):
 *   m = max_b v_b;  e_b = exp(v_b - m);  S = e_0 + ... + e_{bins-1} (in bin order);
 *   d_s = sum_b (e_b / S) * proj[b]   (in bin order: softmax, then proj_conv);
 *   box = [(ax - d_l) * stride / sx, (ay - d_t) * stride / sy,
 *          (ax + d_r) * stride / sx, (ay + d_b) * stride / sy],  ax = x + 0.5, ay = y + 0.5,
 * the port's operation order (float32 throughout; the expectation is the kernel set's
 * dfl_expect, 64 anchors a call, whose exp may differ from libm's by ~2e-7 relative), so
 * results agree with it to a few ulps. Work is split by anchors of all images.
 * Scores: scores[n][c][offset + i] = sigmoid(cls[n, c, i]) (the kernel set's epilogue),
 * split by (image, class) rows.
 */
#include <string.h>

#include "ops/detector_ops.h"

#define DFL_CHUNK 64   /* anchors per kernel call: 4 sides of them stay on the stack */

void dfl_decode_part(const f32_reduce_config *rk, const tensor4 *reg, const float *proj, int bins, float stride,
                     const float *scale_factor, const det_level_out *boxes, int t, int nt)
{
    const long plane = (long)reg->h * reg->w, side_step = bins * plane;
    float d[4][DFL_CHUNK];
    long begin, end;
    split_range((long)reg->n * plane, t, nt, &begin, &end);
    for (long p = begin; p < end;) {
        int n = (int)(p / plane);
        long i0 = p % plane, count = plane - i0;
        count = count < end - p ? count : end - p;
        count = count < DFL_CHUNK ? count : DFL_CHUNK;
        const float *v = reg->data + n * reg->batch_stride + i0;
        for (int side = 0; side < 4; side++)
            rk->dfl_expect(v + side * side_step, plane, bins, proj, count, d[side]);
        float sy = scale_factor ? scale_factor[2 * n] : 1.0f;
        float sx = scale_factor ? scale_factor[2 * n + 1] : 1.0f;
        for (long j = 0; j < count; j++) {
            long i = i0 + j;
            float ax = (float)(i % reg->w) + 0.5f, ay = (float)(i / reg->w) + 0.5f;
            float *o = boxes->data + ((long)n * boxes->anchors + boxes->offset + i) * 4;
            o[0] = (ax - d[0][j]) * stride / sx;
            o[1] = (ay - d[1][j]) * stride / sy;
            o[2] = (ax + d[2][j]) * stride / sx;
            o[3] = (ay + d[3][j]) * stride / sy;
        }
        p += count;
    }
}

void scores_sigmoid_part(bias_act_fn act, const tensor4 *cls, const det_level_out *scores, int t, int nt)
{
    const long plane = (long)cls->h * cls->w;
    long begin, end;
    plane_split(cls, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        float *dst = scores->data + p * scores->anchors + scores->offset;
        memcpy(dst, tensor4_plane(cls, p), sizeof(float) * (size_t)plane);
        act(dst, plane, 0.0f, CSPRESNET_ACT_SIGMOID, NULL);
    }
}

typedef struct decode_job {
    const f32_reduce_config *rk;
    bias_act_fn act;
    const tensor4 *t4;
    const float *proj, *scale_factor;
    int bins;
    float stride;
    const det_level_out *dst;
} decode_job;

static void decode_worker(void *arg, int t, int nt)
{
    const decode_job *job = arg;
    dfl_decode_part(job->rk, job->t4, job->proj, job->bins, job->stride, job->scale_factor, job->dst, t, nt);
}

static void scores_worker(void *arg, int t, int nt)
{
    const decode_job *job = arg;
    scores_sigmoid_part(job->act, job->t4, job->dst, t, nt);
}

void dfl_decode_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *reg, const float *proj,
                        int bins, float stride, const float *scale_factor, const det_level_out *boxes)
{
    decode_job job = {.rk = rk, .t4 = reg, .proj = proj, .scale_factor = scale_factor, .bins = bins,
                      .stride = stride, .dst = boxes};
    if (pool)
        threadpool_run(pool, decode_worker, &job);
    else
        decode_worker(&job, 0, 1);
}

void scores_sigmoid_forward(threadpool *pool, bias_act_fn act, const tensor4 *cls, const det_level_out *scores)
{
    decode_job job = {.act = act, .t4 = cls, .dst = scores};
    if (pool)
        threadpool_run(pool, scores_worker, &job);
    else
        scores_worker(&job, 0, 1);
}
