/*
 * batchnorm.c - BatchNorm2D with Paddle's semantics (eps 1e-5).
 *
 * Eval mode, in place on x (N,C,H,W): x = (x - _mean) / sqrt(_variance + eps) * weight
 * + bias, per channel. The (image, channel) planes are split across threads.
 */
#include "kernels/pointwise.h"
#include "ops/ops.h"

typedef struct bn_job {
    const tensor4 *x;
    const float *weight, *bias, *mean, *variance;
} bn_job;

static void bn_worker(void *arg, int t, int nt)
{
    const bn_job *job = arg;
    const tensor4 *x = job->x;
    const long plane = (long)x->h * x->w;
    long begin, end;
    split_range((long)x->n * x->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / x->c), c = (int)(p % x->c);
        f32_batchnorm_channel__ref(x->data + n * x->batch_stride + c * plane, plane,
                                   job->mean[c], job->variance[c], job->weight[c],
                                   job->bias[c], BN_EPSILON);
    }
}

void batchnorm_forward_eval(op_exec *ex, const tensor4 *x, const float *weight,
                            const float *bias, const float *mean, const float *variance)
{
    bn_job job = {x, weight, bias, mean, variance};
    threadpool_run(ex->pool, bn_worker, &job);
}
