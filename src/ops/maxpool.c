/*
 * maxpool.c - SPP's max-pools (k = 5, 9, 13): stride 1, padding k/2 filled with -inf,
 * so out (N,C,H,W) has the input's size and each output is the max of the k x k window
 * clipped to the plane (the window always holds its centre, so -inf never wins).
 *
 * A NaN anywhere in the window gives NaN, as PyTorch's max_pool2d does (`v > m || v != v`).
 * Three versions, bit-identical on every input because max is exact and the NaN rule
 * is associative:
 *   - _ref: the direct max over the clipped window (k^2 per output), the oracle;
 *   - separable: the row max over [x-r, x+r] into scratch, then the column max
 *     over [y-r, y+r] (2k per output), on the kernel set's window_max and max_into
 *     (kernels.h: exact, so every set's bits are the same);
 *   - spp: SPP's three pools from one plane at a time: pool5(x), then pool5 of that
 *     (= pool9, the clipped 5-window of clipped 5-windows is the clipped 9-window),
 *     then pool5 again (= pool13): 30 compares per output for all three.
 * Work is split by (image, channel) planes; the fast versions use one plane of
 * scratch per thread (maxpool_workspace).
 */
#include <math.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/detector_ops.h"

static inline float max_nan(float m, float v)
{
    return (v > m || v != v) ? v : m;
}

long maxpool_workspace(int h, int w, int threads)
{
    return (long)threads * h * w;
}

void maxpool_same_ref_part(const tensor4 *in, const tensor4 *out, int k, int t, int nt)
{
    const long plane = (long)in->h * in->w;
    const int r = k / 2, H = in->h, W = in->w;
    long begin, end;
    split_range((long)in->n * in->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / in->c), c = (int)(p % in->c);
        const float *src = in->data + n * in->batch_stride + c * plane;
        float *dst = out->data + n * out->batch_stride + c * plane;
        for (int y = 0; y < H; y++) {
            int y0 = y - r < 0 ? 0 : y - r, y1 = y + r >= H ? H - 1 : y + r;
            for (int x = 0; x < W; x++) {
                int x0 = x - r < 0 ? 0 : x - r, x1 = x + r >= W ? W - 1 : x + r;
                float m = -INFINITY;
                for (int yy = y0; yy <= y1; yy++)
                    for (int xx = x0; xx <= x1; xx++)
                        m = max_nan(m, src[(long)yy * W + xx]);
                dst[(long)y * W + x] = m;
            }
        }
    }
}

/* One plane (H, W), contiguous: dst = the clipped k-window max of src, through tmp
 * (H*W floats): the rows' window maxima, then for each output row the running max
 * over whole rows of tmp (contiguous in x). dst may not alias src or tmp. */
static void pool_plane_separable(const f32_reduce_config *rk, const float *src, float *dst, float *tmp, int H,
                                 int W, int r)
{
    for (int y = 0; y < H; y++)
        rk->window_max(src + (long)y * W, tmp + (long)y * W, W, r);
    for (int y = 0; y < H; y++) {
        int y0 = y - r < 0 ? 0 : y - r, y1 = y + r >= H ? H - 1 : y + r;
        float *d = dst + (long)y * W;
        memcpy(d, tmp + (long)y0 * W, sizeof(float) * (size_t)W);
        for (int yy = y0 + 1; yy <= y1; yy++)
            rk->max_into(d, tmp + (long)yy * W, W);
    }
}

/* outs[0] = the clipped (2r+1)-window max of in, then outs[i] = that of outs[i-1], plane
 * by plane (part t of nt). */
static void pool_chain_part(const f32_reduce_config *rk, const tensor4 *in, const tensor4 *const *outs, int n_out,
                            int r, float *scratch, int t, int nt)
{
    const long plane = (long)in->h * in->w;
    float *tmp = scratch + (long)t * plane;
    long begin, end;
    split_range((long)in->n * in->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / in->c), c = (int)(p % in->c);
        const float *src = in->data + n * in->batch_stride + c * plane;
        for (int i = 0; i < n_out; i++) {
            float *dst = outs[i]->data + n * outs[i]->batch_stride + c * plane;
            pool_plane_separable(rk, src, dst, tmp, in->h, in->w, r);
            src = dst;
        }
    }
}

void maxpool_same_part(const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out, int k, float *scratch,
                       int t, int nt)
{
    pool_chain_part(rk, in, &out, 1, k / 2, scratch, t, nt);
}

void spp_maxpool_part(const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out5, const tensor4 *out9,
                      const tensor4 *out13, float *scratch, int t, int nt)
{
    const tensor4 *outs[3] = {out5, out9, out13};
    pool_chain_part(rk, in, outs, 3, 2, scratch, t, nt);
}

typedef struct maxpool_job {
    const f32_reduce_config *rk;
    const tensor4 *in, *out, *out9, *out13;
    int k;
    float *scratch;
} maxpool_job;

static void maxpool_ref_worker(void *arg, int t, int nt)
{
    const maxpool_job *job = arg;
    maxpool_same_ref_part(job->in, job->out, job->k, t, nt);
}

static void maxpool_worker(void *arg, int t, int nt)
{
    const maxpool_job *job = arg;
    maxpool_same_part(job->rk, job->in, job->out, job->k, job->scratch, t, nt);
}

static void spp_worker(void *arg, int t, int nt)
{
    const maxpool_job *job = arg;
    spp_maxpool_part(job->rk, job->in, job->out, job->out9, job->out13, job->scratch, t, nt);
}

static void maxpool_run(threadpool *pool, parallel_fn fn, maxpool_job *job)
{
    if (pool)
        threadpool_run(pool, fn, job);
    else
        fn(job, 0, 1);
}

void maxpool_same_ref_forward(threadpool *pool, const tensor4 *in, const tensor4 *out, int k)
{
    maxpool_job job = {NULL, in, out, NULL, NULL, k, NULL};
    maxpool_run(pool, maxpool_ref_worker, &job);
}

void maxpool_same_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out,
                          int k, float *scratch)
{
    maxpool_job job = {rk, in, out, NULL, NULL, k, scratch};
    maxpool_run(pool, maxpool_worker, &job);
}

void spp_maxpool_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out5,
                         const tensor4 *out9, const tensor4 *out13, float *scratch)
{
    maxpool_job job = {rk, in, out5, out9, out13, 5, scratch};
    maxpool_run(pool, spp_worker, &job);
}

/* ---------------------------------------------------------------- the op
 * maxpool: in[0] (N,C,H,W) -> out (N,C,H,W), window a.k (odd), stride 1, -inf padding
 * k/2; no parameters. SPP is three of these (k 5, 9, 13) on one input and a concat.
 * The separable version takes one plane per thread of shared workspace; the
 * reference set (kernels without a GEMM config) runs the direct _ref. Eval only. */

static cspresnet_status maxpool_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    if (nd->a.k < 1 || nd->a.k % 2 == 0)
        return error_set(err, CSPRESNET_ERR_CONFIG, "%s: max-pool window %d is not odd", nd->name, nd->a.k);
    *out = in[0];
    return CSPRESNET_OK;
}

static void maxpool_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                         node_plan *np)
{
    (void)nd;
    (void)out;
    np->path = env->kernels->gemm != NULL;
    if (np->path)
        np->ws_shared = maxpool_workspace(in[0].h, in[0].w, env->threads);
}

static void maxpool_forward_node(op_run *r)
{
    if (r->np->path)
        maxpool_same_forward(r->ex.pool, r->ex.kernels->reduce, &r->in[0], &r->out, r->nd->a.k, r->ex.op_scratch);
    else
        maxpool_same_ref_forward(r->ex.pool, &r->in[0], &r->out, r->nd->a.k);
}

const op_desc op_maxpool = {"maxpool", OP_OUT_OF_PLACE,
    maxpool_infer, maxpool_plan, maxpool_forward_node, NULL, NULL, NULL, NULL, NULL};
