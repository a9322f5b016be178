/*
 * upsample.c - nearest 2x upsample of the neck's FPN routes (Paddle
 * F.interpolate(scale_factor=2, mode="nearest"), align_corners false: source index
 * floor(dst / 2)).
 *
 * in (N,C,H,W) -> out (N,C,2H,2W); out is usually the route's channel slice of the next
 * FPN level's concat. Work is split by (image, channel) planes. A pure copy, so the
 * reference (one index per output element) and the row-duplicating version are
 * bit-identical.
 */
#include <string.h>

#include "graph/graph.h"
#include "ops/detector_ops.h"

void upsample_nearest2x_ref_part(const tensor4 *in, const tensor4 *out, int t, int nt)
{
    const long iplane = (long)in->h * in->w, oplane = (long)out->h * out->w;
    long begin, end;
    split_range((long)out->n * out->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / out->c), c = (int)(p % out->c);
        const float *src = in->data + n * in->batch_stride + c * iplane;
        float *dst = out->data + n * out->batch_stride + c * oplane;
        for (int y = 0; y < out->h; y++)
            for (int x = 0; x < out->w; x++)
                dst[(long)y * out->w + x] = src[(long)(y / 2) * in->w + x / 2];
    }
}

void upsample_nearest2x_part(const tensor4 *in, const tensor4 *out, int t, int nt)
{
    const long iplane = (long)in->h * in->w, oplane = (long)out->h * out->w;
    const int w = in->w, ow = out->w;
    long begin, end;
    split_range((long)out->n * out->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / out->c), c = (int)(p % out->c);
        const float *src = in->data + n * in->batch_stride + c * iplane;
        float *dst = out->data + n * out->batch_stride + c * oplane;
        for (int y = 0; y < in->h; y++) {
            const float *s = src + (long)y * w;
            float *d = dst + (long)2 * y * ow;
            for (int x = 0; x < w; x++) {
                d[2 * x] = s[x];
                d[2 * x + 1] = s[x];
            }
            memcpy(d + ow, d, (size_t)ow * sizeof(float));
        }
    }
}

typedef struct upsample_job {
    const tensor4 *in, *out;
    int ref;
} upsample_job;

static void upsample_worker(void *arg, int t, int nt)
{
    const upsample_job *job = arg;
    if (job->ref)
        upsample_nearest2x_ref_part(job->in, job->out, t, nt);
    else
        upsample_nearest2x_part(job->in, job->out, t, nt);
}

static void upsample_run(threadpool *pool, const tensor4 *in, const tensor4 *out, int ref)
{
    upsample_job job = {in, out, ref};
    if (pool)
        threadpool_run(pool, upsample_worker, &job);
    else
        upsample_worker(&job, 0, 1);
}

void upsample_nearest2x_ref_forward(threadpool *pool, const tensor4 *in, const tensor4 *out)
{
    upsample_run(pool, in, out, 1);
}

void upsample_nearest2x_forward(threadpool *pool, const tensor4 *in, const tensor4 *out)
{
    upsample_run(pool, in, out, 0);
}

/* ---------------------------------------------------------------- the op
 * upsample2x: in[0] (N,C,H,W) -> out (N,C,2H,2W), nearest; no parameters. Eval only
 * (no backward yet). The reference set (kernels without a GEMM config) runs _ref. */

static cspresnet_status upsample_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    if (in[0].h > 32768 || in[0].w > 32768)
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: a %dx%d map is too large to upsample", nd->name, in[0].h,
                         in[0].w);
    *out = (tshape){in[0].n, in[0].c, 2 * in[0].h, 2 * in[0].w};
    return CSPRESNET_OK;
}

static void upsample_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                          node_plan *np)
{
    (void)nd;
    (void)in;
    (void)out;
    np->path = env->kernels->gemm != NULL;
}

static void upsample_forward_node(op_run *r)
{
    upsample_run(r->ex.pool, &r->in[0], &r->out, r->np->path == 0);
}

const op_desc op_upsample2x = {"upsample2x", OP_OUT_OF_PLACE,
    upsample_infer, upsample_plan, upsample_forward_node, NULL, NULL, NULL, NULL, NULL};
