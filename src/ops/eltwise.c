/*
 * eltwise.c - out = a + alpha * b over (N,C,H,W) views of equal shape; out may alias
 * a or b. Used for the RepVGG branch sum (alpha = the block's alpha, or 1) and the
 * BasicBlock shortcut (alpha = 1).
 */
#include "kernels/pointwise.h"
#include "ops/ops.h"

typedef struct add_job {
    const tensor4 *a, *b, *out;
    float alpha;
} add_job;

static void add_worker(void *arg, int t, int nt)
{
    const add_job *job = arg;
    const tensor4 *o = job->out;
    const long plane = (long)o->h * o->w;
    long begin, end;
    split_range((long)o->n * o->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / o->c), c = (int)(p % o->c);
        f32_add_scaled__ref(job->a->data + n * job->a->batch_stride + c * plane,
                            job->b->data + n * job->b->batch_stride + c * plane, job->alpha,
                            o->data + n * o->batch_stride + c * plane, plane);
    }
}

void add_scaled_forward(op_exec *ex, const tensor4 *a, const tensor4 *b, float alpha,
                        const tensor4 *out)
{
    add_job job = {a, b, out, alpha};
    threadpool_run(ex->pool, add_worker, &job);
}
