/*
 * activation.c - the model activation (swish, relu, ...), in place on x (N,C,H,W).
 * Planes are split across threads; see kernels/ref/f32_pointwise_ref.c for the math.
 */
#include <math.h>
#include <string.h>

#include "kernels/pointwise.h"
#include "ops/ops.h"

typedef struct act_job {
    cspresnet_act act;
    const tensor4 *x;
} act_job;

static void act_worker(void *arg, int t, int nt)
{
    const act_job *job = arg;
    const tensor4 *x = job->x;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        f32_activation__ref(job->act, x->data + n * x->batch_stride + c * plane, plane);
    }
}

void activation_forward(op_exec *ex, cspresnet_act act, const tensor4 *x)
{
    if (act == CSPRESNET_ACT_NONE)
        return;
    act_job job = {act, x};
    threadpool_run(ex->pool, act_worker, &job);
}

/* ---------------------------------------------------------------- training
 * Out of place: y = act(x) with x kept for the backward pass, and dx += dy * act'(x).
 * Derivatives follow PyTorch's autograd formulas (relu'(0) = 0, leaky'(0) = 0.01,
 * hardswish' = x/3 + 0.5 on [-3, 3], mish with Paddle's softplus threshold 20). */
static float act_derivative(cspresnet_act act, float x)
{
    switch (act) {
    case CSPRESNET_ACT_SWISH: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case CSPRESNET_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case CSPRESNET_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : 0.01f;
    case CSPRESNET_ACT_MISH: {
        float sp = x > 20.0f ? x : log1pf(expf(x));
        float th = tanhf(sp);
        float dsp = x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x));
        return th + x * (1.0f - th * th) * dsp;
    }
    case CSPRESNET_ACT_HARDSWISH:
        return x < -3.0f ? 0.0f : (x <= 3.0f ? x / 3.0f + 0.5f : 1.0f);
    case CSPRESNET_ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
               x * 0.3989422804014327f * expf(-0.5f * x * x);
    case CSPRESNET_ACT_RELU6:
        return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
    case CSPRESNET_ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f - s);
    }
    case CSPRESNET_ACT_NONE:
    case CSPRESNET_ACT_COUNT:
        break;
    }
    return 1.0f;
}

typedef struct act_train_job {
    cspresnet_act act;
    const tensor4 *x, *y, *dy, *dx;
} act_train_job;

static void act_fwd_out_worker(void *arg, int t, int nt)
{
    const act_train_job *job = arg;
    const tensor4 *x = job->x, *y = job->y;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        float *dst = y->data + n * y->batch_stride + c * plane;
        memcpy(dst, x->data + n * x->batch_stride + c * plane, (size_t)plane * sizeof(float));
        f32_activation__ref(job->act, dst, plane);
    }
}

void activation_forward_out(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *y)
{
    act_train_job job = {act, x, y, NULL, NULL};
    threadpool_run(ex->pool, act_fwd_out_worker, &job);
}

static void act_bwd_worker(void *arg, int t, int nt)
{
    const act_train_job *job = arg;
    const tensor4 *x = job->x;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        const float *xs = x->data + n * x->batch_stride + c * plane;
        const float *g = job->dy->data + n * job->dy->batch_stride + c * plane;
        float *d = job->dx->data + n * job->dx->batch_stride + c * plane;
        for (long i = 0; i < plane; i++)
            d[i] += g[i] * act_derivative(job->act, xs[i]);
    }
}

void activation_backward(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *dy,
                         const tensor4 *dx)
{
    act_train_job job = {act, x, NULL, dy, dx};
    threadpool_run(ex->pool, act_bwd_worker, &job);
}
