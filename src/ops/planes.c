/*
 * planes.c - the parallel loop over (image, channel) planes that the point-wise ops
 * share (activation, batchnorm, eltwise, ese): each thread takes a contiguous run of
 * planes, so an op's result never depends on the thread count.
 */
#include "ops/ops.h"

typedef struct planes_job {
    const tensor4 *x;
    plane_fn fn;
    const void *job;
} planes_job;

static void planes_worker(void *arg, int t, int nt)
{
    const planes_job *pj = arg;
    const long plane = (long)pj->x->h * pj->x->w;
    long begin, end;
    plane_split(pj->x, t, nt, &begin, &end);
    for (long p = begin; p < end; p++)
        pj->fn(pj->job, p, plane);
}

void planes_run(threadpool *pool, const tensor4 *x, plane_fn fn, const void *job)
{
    planes_job pj = {x, fn, job};
    threadpool_run(pool, planes_worker, &pj);
}
