/*
 * ese.c - EffectiveSELayer (CenterMask's effective squeeze-excitation), in place.
 *
 * x (N,C,H,W); fc weight (C,C,1,1), bias (C):
 *   s = mean_hw(x) (N,C); z = fc_w . s + fc_b (N,C); g = clip(0.1666667 z + 0.5, 0, 1);
 *   x *= g per (n, c).
 * Scratch: s and g, 2*N*C floats of ex->op_scratch. Three parallel passes.
 */
#include "kernels/pointwise.h"
#include "ops/ops.h"

long ese_scratch_floats(int n, int c) { return 2L * n * c; }

typedef struct ese_job {
    const tensor4 *x;
    const float *fc_weight, *fc_bias;
    float *mean, *gate;
} ese_job;

static void ese_mean_worker(void *arg, int t, int nt)
{
    const ese_job *job = arg;
    const tensor4 *x = job->x;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        job->mean[p] = f32_mean__ref(x->data + n * x->batch_stride + c * plane, plane);
    }
}

static void ese_gate_worker(void *arg, int t, int nt)
{
    const ese_job *job = arg;
    const int C = job->x->c;
    long begin, end;
    split_range((long)job->x->n * C, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / C), oc = (int)(p % C);
        const float *w = job->fc_weight + (long)oc * C;
        const float *s = job->mean + (long)n * C;
        float z = job->fc_bias[oc];
        for (int ic = 0; ic < C; ic++)
            z += w[ic] * s[ic];
        float g = ESE_HARDSIGMOID_SLOPE * z + ESE_HARDSIGMOID_OFFSET;
        job->gate[p] = g < 0.0f ? 0.0f : (g > 1.0f ? 1.0f : g);
    }
}

static void ese_scale_worker(void *arg, int t, int nt)
{
    const ese_job *job = arg;
    const tensor4 *x = job->x;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        f32_scale__ref(x->data + n * x->batch_stride + c * plane, plane, job->gate[p]);
    }
}

void ese_forward(op_exec *ex, const tensor4 *x, const float *fc_weight, const float *fc_bias)
{
    long nc = (long)x->n * x->c;
    ese_job job = {x, fc_weight, fc_bias, ex->op_scratch, ex->op_scratch + nc};
    threadpool_run(ex->pool, ese_mean_worker, &job);
    threadpool_run(ex->pool, ese_gate_worker, &job);
    threadpool_run(ex->pool, ese_scale_worker, &job);
}
