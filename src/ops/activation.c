/*
 * activation.c - the model activation (swish, relu, ...), in place on x (N,C,H,W).
 * Planes are split across threads; see kernels/ref/f32_pointwise_ref.c for the math.
 */
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
