/*
 * conv2d_bf16.c - the bf16 forward convolution: an implicit GEMM whose products are
 * bfloat16 x bfloat16 accumulated in fp32 (the kernel set's bf16 tile, kernels/
 * lowp_kernels.h), with the fp32 epilogue of the other paths.
 *
 * in (N,C,H,W) f32, weights prepared once (model/prepare.c) as OC rows of Kp = ceil(K/2)
 * bf16 pairs (K = C*k*k in OIHW order, the pad element past an odd K zero), -> out
 * (N,OC,OH,OW) f32. A task (conv2d_fast.c's driver) takes each CONV_KC-row block of the
 * im2col matrix for its pixels: the f32 im2col rows (a 1x1 conv's are the input rows
 * themselves), rounded to bf16 pairs into the thread's panel, then the tile over the
 * task's output channels, accumulating in the fp32 output. CONV_KC is even, so blocks
 * start on a pair. The reduction order is fixed whatever the thread count or the ISA
 * (the reference tile rounds exactly as vdpbf16ps does), so the result is one set of
 * bits for every thread count and kernel set.
 */
#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

_Static_assert(CONV_KC % 2 == 0, "bf16 K blocks start on a pair");

/* Winograd F(4,3) does 4x fewer multiplies than a direct 3x3 conv, more than the 2x
 * that bf16's doubled rate gives, so the convs a kernel set runs by Winograd stay
 * fp32 Winograd (measured in bench/lowp.md). */
int conv2d_bf16_applies(const kernel_set *kt, int k, int stride, int pad)
{
    return !(kt->winograd && k == 3 && stride == 1 && pad == 1);
}

long conv2d_bf16_weight_floats(int out_c, long K)
{
    return (long)out_c * ((K + 1) / 2);   /* a pair of bf16 per float */
}

void conv2d_bf16_weights(const float *w, int out_c, long K, float *dst)
{
    uint16_t *o = (uint16_t *)(void *)dst;
    const long kp = (K + 1) / 2;
    for (long oc = 0; oc < out_c; oc++)
        for (long k = 0; k < 2 * kp; k++)
            o[oc * 2 * kp + k] = k < K ? bf16_from_f32(w[oc * K + k]) : 0;
}

/* The f32 im2col panel (CONV_KC x CONV_NC), then its bf16 pairs (CONV_KC/2 x CONV_NC). */
long conv2d_bf16_scratch_per_thread(void)
{
    return (long)CONV_KC * CONV_NC + (long)CONV_KC * CONV_NC / 2;
}

static void bf16_task(const conv_gemm_job *job, float *panel, int image, long n0, int nc, int oc_a, int oc_b)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const bf16_gemm_config *bf = kt->bf16;
    im2col_rows_fn im2col = kt->conv ? kt->conv->im2col_rows : f32_im2col_rows__ref;
    const long K = (long)g->in_c * g->k * g->k, N = job->pixels, lda = (K + 1) / 2;
    const uint16_t *w = job->weight;
    uint16_t *pairs = (uint16_t *)(void *)(panel + (long)CONV_KC * CONV_NC);
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const int direct = g->k == 1 && g->stride == 1 && g->pad == 0;
    for (long k0 = 0; k0 < K; k0 += CONV_KC) {
        int kc = (int)(K - k0 < CONV_KC ? K - k0 : CONV_KC), kp = (kc + 1) / 2;
        if (direct) {
            bf->pack(src + k0 * N + n0, N, kc, nc, pairs, CONV_NC);
        } else {
            im2col(g, src, (int)k0, kc, n0, nc, panel, CONV_NC);
            bf->pack(panel, CONV_NC, kc, nc, pairs, CONV_NC);
        }
        for (int m0 = oc_a; m0 < oc_b; m0 += bf->mr) {
            int mr = oc_b - m0 < bf->mr ? oc_b - m0 : bf->mr;
            const uint16_t *a = w + (m0 * lda + k0 / 2) * 2;
            for (int s = 0; s < nc; s += bf->nr) {
                int nr = nc - s < bf->nr ? nc - s : bf->nr;
                bf->gemm(kp, a, lda, pairs + (long)s * 2, CONV_NC, dst + m0 * N + s, N, mr, nr, k0 > 0);
            }
        }
    }
    conv2d_epilogue(job, image, n0, nc, oc_a, oc_b);
}

void conv2d_bf16_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                         const tensor4 *out, const conv_epilogue *ep)
{
    conv_gemm_job job = {ex, g, prepared, in, out, ep, 0, 0, 0, 0, bf16_task};
    conv2d_gemm_split(g, in->n, threadpool_size(ex->pool), ex->kernels->bf16->mr, &job);
    conv2d_gemm_run(&job);
}
