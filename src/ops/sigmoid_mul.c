/*
 * sigmoid_mul.c - the PP-YOLOE head's ESEAttn gate and the class scores' sigmoid.
 *
 * ESEAttn(feat) = conv(feat * sigmoid(fc(mean_hw(feat)))): unlike the backbone's ESE
 * (ese.c, hardsigmoid, in place) the gate is the logistic sigmoid, and the gated map
 * is a new tensor because feat is also the class branch's residual and the input of
 * the other stem. The three steps are separate ops so the head can pool each level
 * once for both stems:
 *   mean_hw       x (N,C,H,W) -> mean (N*C), the kernel set's plane mean (double
 *                 accumulators);
 *   channel_fc    mean (N*Cin) -> z (N*Cout) = weight (Cout,Cin) . mean + bias, a 1x1
 *                 conv on a 1x1 map, double accumulator in input-channel order;
 *   sigmoid_gate  out = x * sigmoid(z[n, c]) per plane.
 * sigmoid is 1 / (1 + exp(-v)): exp overflows to inf for v < -88.7, giving 0, and
 * underflows to 0 for large v, giving 1; NaN stays NaN. The element-wise sigmoid is the
 * kernel set's epilogue with CSPRESNET_ACT_SIGMOID (vector exp on AVX-512, ~2e-7
 * relative from libm's).
 * Work is split by (image, channel) planes (mean, gate, sigmoid) or by outputs (fc).
 */
#include <math.h>
#include <string.h>

#include "kernels/pointwise.h"
#include "ops/detector_ops.h"

float sigmoid_f32(float v)
{
    return 1.0f / (1.0f + expf(-v));
}

void mean_hw_part(mean_fn mean_of, const tensor4 *x, float *mean, int t, int nt)
{
    const long plane = (long)x->h * x->w;
    long begin, end;
    plane_split(x, t, nt, &begin, &end);
    for (long p = begin; p < end; p++)
        mean[p] = mean_of(tensor4_plane(x, p), plane);
}

void channel_fc_part(const float *mean, int n, int cin, int cout, const float *weight,
                     const float *bias, float *z, int t, int nt)
{
    long begin, end;
    split_range((long)n * cout, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int img = (int)(p / cout), o = (int)(p % cout);
        const float *w = weight + (long)o * cin, *s = mean + (long)img * cin;
        double acc = bias ? bias[o] : 0.0;
        for (int i = 0; i < cin; i++)
            acc += (double)w[i] * s[i];
        z[p] = (float)acc;
    }
}

void sigmoid_gate_part(scale_fn scale, const tensor4 *x, const float *z, const tensor4 *out, int t, int nt)
{
    const long plane = (long)x->h * x->w;
    long begin, end;
    plane_split(x, t, nt, &begin, &end);
    for (long p = begin; p < end; p++)
        scale(tensor4_plane(x, p), sigmoid_f32(z[p]), tensor4_plane(out, p), plane);
}

void sigmoid_part(bias_act_fn act, const tensor4 *x, const tensor4 *out, int t, int nt)
{
    const long plane = (long)x->h * x->w;
    long begin, end;
    plane_split(x, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        float *dst = tensor4_plane(out, p);
        memmove(dst, tensor4_plane(x, p), sizeof(float) * (size_t)plane);
        act(dst, plane, 0.0f, CSPRESNET_ACT_SIGMOID, NULL);
    }
}

/* ---------------------------------------------------------------- on a pool */

typedef struct gate_job {
    mean_fn mean_of;
    scale_fn scale;
    bias_act_fn act;
    const tensor4 *x, *out;
    const float *mean, *weight, *bias, *z;
    float *dst;
    int n, cin, cout;
} gate_job;

static void mean_worker(void *arg, int t, int nt)
{
    const gate_job *job = arg;
    mean_hw_part(job->mean_of, job->x, job->dst, t, nt);
}

static void fc_worker(void *arg, int t, int nt)
{
    const gate_job *job = arg;
    channel_fc_part(job->mean, job->n, job->cin, job->cout, job->weight, job->bias, job->dst, t, nt);
}

static void gate_worker(void *arg, int t, int nt)
{
    const gate_job *job = arg;
    sigmoid_gate_part(job->scale, job->x, job->z, job->out, t, nt);
}

static void sigmoid_worker(void *arg, int t, int nt)
{
    const gate_job *job = arg;
    sigmoid_part(job->act, job->x, job->out, t, nt);
}

static void gate_run(threadpool *pool, parallel_fn fn, gate_job *job)
{
    if (pool)
        threadpool_run(pool, fn, job);
    else
        fn(job, 0, 1);
}

void mean_hw_forward(threadpool *pool, mean_fn mean_of, const tensor4 *x, float *mean)
{
    gate_job job = {.mean_of = mean_of, .x = x, .dst = mean};
    gate_run(pool, mean_worker, &job);
}

void channel_fc_forward(threadpool *pool, const float *mean, int n, int cin, int cout,
                        const float *weight, const float *bias, float *z)
{
    gate_job job = {.mean = mean, .weight = weight, .bias = bias, .dst = z, .n = n, .cin = cin,
                    .cout = cout};
    gate_run(pool, fc_worker, &job);
}

void sigmoid_gate_forward(threadpool *pool, scale_fn scale, const tensor4 *x, const float *z, const tensor4 *out)
{
    gate_job job = {.scale = scale, .x = x, .z = z, .out = out};
    gate_run(pool, gate_worker, &job);
}

void sigmoid_forward(threadpool *pool, bias_act_fn act, const tensor4 *x, const tensor4 *out)
{
    gate_job job = {.act = act, .x = x, .out = out};
    gate_run(pool, sigmoid_worker, &job);
}
