/*
 * conv2d.c - 2-D convolution (groups 1, no bias) as an implicit GEMM.
 *
 * in (N,C,H,W), weight (OC,C,k,k) -> out (N,OC,OH,OW).
 * Work is cut into tasks of (image, CONV_NC output pixels); each thread takes a
 * contiguous run of tasks, packs CONV_KC rows of the im2col matrix for its columns
 * into its own panel (no full im2col buffer), and runs the micro-kernel over all
 * output channels. The reduction order over K is fixed, so results do not depend on
 * the thread count. The epilogue (bias, activation, residual) is applied to a tile's
 * OC x nc block right after its last K block, while it is still in cache.
 */
#include "kernels/pointwise.h"
#include "ops/ops.h"

long conv2d_scratch_per_thread(void) { return (long)CONV_KC * CONV_NC; }

typedef struct conv_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in;
    const tensor4 *out;
    const conv_epilogue *ep;
} conv_job;

static void conv_tile(const conv_job *job, float *panel, int image, long n0, int nc)
{
    const conv_geom *g = job->g;
    const long K = (long)g->in_c * g->k * g->k;
    const long N = (long)g->out_h * g->out_w;
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const int strips = (nc + GEMM_NR - 1) / GEMM_NR;

    for (long k0 = 0; k0 < K; k0 += CONV_KC) {
        int kc = (int)(K - k0 < CONV_KC ? K - k0 : CONV_KC);
        f32_im2col_panel__ref(g, src, (int)k0, kc, n0, nc, panel);
        for (int m0 = 0; m0 < g->out_c; m0 += GEMM_MR) {
            int mr = g->out_c - m0 < GEMM_MR ? g->out_c - m0 : GEMM_MR;
            const float *a = job->weight + m0 * K + k0;
            for (int s = 0; s < strips; s++) {
                int nr = nc - s * GEMM_NR < GEMM_NR ? nc - s * GEMM_NR : GEMM_NR;
                f32_gemm_4x16__ref(kc, a, K, panel + (long)s * kc * GEMM_NR,
                               dst + m0 * N + s * GEMM_NR, N, mr, nr, k0 > 0);
            }
        }
    }
    const conv_epilogue *ep = job->ep;
    if (!ep)
        return;
    const float *res = ep->residual ? ep->residual->data + image * ep->residual->batch_stride + n0 : NULL;
    for (int oc = 0; oc < g->out_c; oc++) {
        float *row = dst + oc * N;
        if (ep->bias)
            f32_add_scalar__ref(row, nc, ep->bias[oc]);
        f32_activation__ref(ep->act, row, nc);
        if (res)
            f32_add_scaled__ref(row, res + oc * N, 1.0f, row, nc);
    }
}

static void conv_worker(void *arg, int t, int nt)
{
    const conv_job *job = arg;
    const conv_geom *g = job->g;
    const long N = (long)g->out_h * g->out_w;
    const long blocks = (N + CONV_NC - 1) / CONV_NC;
    float *panel = job->ex->scratch + t * job->ex->scratch_per_thread;
    long begin, end;
    split_range(blocks * job->in->n, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int image = (int)(task / blocks);
        long n0 = (task % blocks) * CONV_NC;
        int nc = (int)(N - n0 < CONV_NC ? N - n0 : CONV_NC);
        conv_tile(job, panel, image, n0, nc);
    }
}

void conv2d_forward(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                    const tensor4 *out, const conv_epilogue *ep)
{
    if (ex->fast_scratch && ex->kernels->gemm) {
        conv2d_fast_forward(ex, g, weight, in, out, ep);
        return;
    }
    conv_job job = {ex, g, weight, in, out, ep};
    threadpool_run(ex->pool, conv_worker, &job);
}
