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
 * the port's operation order (float32 throughout), so results agree with it to a few
 * ulps. Scratch: bins floats per thread (the exps). Work is split by anchors of all images.
 * Scores: scores[n][c][offset + i] = sigmoid(cls[n, c, i]), split by (image, class) rows.
 */
#include <math.h>

#include "ops/detector_ops.h"

long dfl_decode_workspace(int bins, int threads)
{
    return (long)bins * threads;
}

/* The expected distance of one side: softmax over v[b * step], b < bins, dotted with
 * proj. e: bins floats of scratch. */
static float dfl_side(const float *v, long step, const float *proj, int bins, float *e)
{
    float m = v[0];
    for (int b = 1; b < bins; b++)
        if (v[b * step] > m)
            m = v[b * step];
    float sum = 0.0f;
    for (int b = 0; b < bins; b++) {
        e[b] = expf(v[b * step] - m);
        sum += e[b];
    }
    float d = 0.0f;
    for (int b = 0; b < bins; b++)
        d += (e[b] / sum) * proj[b];
    return d;
}

void dfl_decode_part(const tensor4 *reg, const float *proj, int bins, float stride,
                     const float *scale_factor, const det_level_out *boxes, float *scratch,
                     int t, int nt)
{
    const long plane = (long)reg->h * reg->w, side_step = bins * plane;
    float *e = scratch + (long)t * bins;
    long begin, end;
    split_range((long)reg->n * plane, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / plane);
        long i = p % plane;
        float ax = (float)(i % reg->w) + 0.5f, ay = (float)(i / reg->w) + 0.5f;
        float sy = scale_factor ? scale_factor[2 * n] : 1.0f;
        float sx = scale_factor ? scale_factor[2 * n + 1] : 1.0f;
        const float *v = reg->data + n * reg->batch_stride + i;
        float dl = dfl_side(v, plane, proj, bins, e);
        float dt = dfl_side(v + side_step, plane, proj, bins, e);
        float dr = dfl_side(v + 2 * side_step, plane, proj, bins, e);
        float db = dfl_side(v + 3 * side_step, plane, proj, bins, e);
        float *o = boxes->data + ((long)n * boxes->anchors + boxes->offset + i) * 4;
        o[0] = (ax - dl) * stride / sx;
        o[1] = (ay - dt) * stride / sy;
        o[2] = (ax + dr) * stride / sx;
        o[3] = (ay + db) * stride / sy;
    }
}

void scores_sigmoid_part(const tensor4 *cls, const det_level_out *scores, int t, int nt)
{
    const long plane = (long)cls->h * cls->w;
    long begin, end;
    plane_split(cls, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        const float *src = tensor4_plane(cls, p);
        float *dst = scores->data + p * scores->anchors + scores->offset;
        for (long i = 0; i < plane; i++)
            dst[i] = sigmoid_f32(src[i]);
    }
}

typedef struct decode_job {
    const tensor4 *t4;
    const float *proj, *scale_factor;
    int bins;
    float stride;
    const det_level_out *dst;
    float *scratch;
} decode_job;

static void decode_worker(void *arg, int t, int nt)
{
    const decode_job *job = arg;
    dfl_decode_part(job->t4, job->proj, job->bins, job->stride, job->scale_factor, job->dst,
                    job->scratch, t, nt);
}

static void scores_worker(void *arg, int t, int nt)
{
    const decode_job *job = arg;
    scores_sigmoid_part(job->t4, job->dst, t, nt);
}

void dfl_decode_forward(threadpool *pool, const tensor4 *reg, const float *proj, int bins,
                        float stride, const float *scale_factor, const det_level_out *boxes,
                        float *scratch)
{
    decode_job job = {reg, proj, scale_factor, bins, stride, boxes, scratch};
    if (pool)
        threadpool_run(pool, decode_worker, &job);
    else
        decode_worker(&job, 0, 1);
}

void scores_sigmoid_forward(threadpool *pool, const tensor4 *cls, const det_level_out *scores)
{
    decode_job job = {.t4 = cls, .dst = scores};
    if (pool)
        threadpool_run(pool, scores_worker, &job);
    else
        scores_worker(&job, 0, 1);
}
