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

/* ---------------------------------------------------------------- training
 * Backward of out = a + alpha * b: da += dy, db += alpha * dy (either may be NULL),
 * and *dalpha = sum(dy * b) when dalpha is given. The alpha reduction keeps one
 * double partial per (image, channel) plane in `partials` (N*C doubles) and sums them
 * in plane order afterwards, so the result does not depend on the thread count. */
typedef struct add_bwd_job {
    const tensor4 *b, *dy, *da, *db;
    float alpha;
    double *partials;
} add_bwd_job;

static void add_bwd_worker(void *arg, int t, int nt)
{
    const add_bwd_job *job = arg;
    const tensor4 *dy = job->dy;
    const long plane = (long)dy->h * dy->w;
    long begin, end;
    split_range((long)dy->n * dy->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / dy->c), c = (int)(p % dy->c);
        const float *g = dy->data + n * dy->batch_stride + c * plane;
        if (job->da) {
            float *d = job->da->data + n * job->da->batch_stride + c * plane;
            for (long i = 0; i < plane; i++)
                d[i] += g[i];
        }
        if (job->db) {
            float *d = job->db->data + n * job->db->batch_stride + c * plane;
            for (long i = 0; i < plane; i++)
                d[i] += job->alpha * g[i];
        }
        if (job->partials) {
            const float *bv = job->b->data + n * job->b->batch_stride + c * plane;
            double s = 0.0;
            for (long i = 0; i < plane; i++)
                s += (double)g[i] * bv[i];
            job->partials[p] = s;
        }
    }
}

void add_scaled_backward(op_exec *ex, const tensor4 *b, float alpha, const tensor4 *dy,
                         const tensor4 *da, const tensor4 *db, float *dalpha, double *partials)
{
    add_bwd_job job = {b, dy, da, db, alpha, dalpha ? partials : NULL};
    threadpool_run(ex->pool, add_bwd_worker, &job);
    if (dalpha) {
        double s = 0.0;
        for (long p = 0; p < (long)dy->n * dy->c; p++)
            s += partials[p];
        *dalpha = (float)s;
    }
}
