/*
 * conv2d_bf16.c - the bf16 forward convolution: an implicit GEMM whose products are
 * bfloat16 x bfloat16 accumulated in fp32 (the kernel set's bf16 tile, kernels/
 * lowp_kernels.h), with the fp32 epilogue of the other paths.
 *
 * in (N,C,H,W) f32, weights prepared once (model/prepare.c) as OC rows of Kp = ceil(K/2)
 * bf16 pairs (K = C*k*k in OIHW order, the pad element past an odd K zero; rows and
 * pairs padded with zeros to what the tile reads, bf16_gemm_config), -> out
 * (N,OC,OH,OW) f32. A task (conv2d_fast.c's driver) takes each CONV_KC-row block of the
 * im2col matrix for its pixels: the f32 im2col rows (a 1x1 conv's are the input rows
 * themselves), rounded to bf16 pairs into the thread's panel, then the tile over the
 * task's output channels, accumulating in the fp32 output. CONV_KC is a multiple of 32,
 * so blocks start on a pair and on a tile step. The reduction order is fixed whatever
 * the thread count, so 1 and N threads give the same bits; the reference and AVX-512
 * BF16 tiles round alike (exact configs), the AMX tile within fp32 accumulation.
 */
#include <string.h>

#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

_Static_assert(CONV_KC % 32 == 0, "bf16 K blocks start on a pair and on a 16-pair tile step");

/* Winograd F(4,3) does 4x fewer multiplies than a direct 3x3 conv, more than the 2x
 * that bf16's doubled rate gives, so the convs a kernel set runs by Winograd stay fp32
 * Winograd unless the tap form takes them (conv2d_bf16_taps.c). The stem's first conv
 * (3 channels, K = 27) stays fp32: it reads the image itself, the most sensitive input
 * to rounding, and its K fills too little of a bf16 tile to gain. */
int conv2d_bf16_applies(const kernel_set *kt, const conv_geom *g)
{
    return (long)g->in_c * g->k * g->k >= 32 && !(kt->winograd && g->k == 3 && g->stride == 1 && g->pad == 1);
}

static long round_up(long x, long m)
{
    return (x + m - 1) / m * m;
}

/* OC rounded up to the tile's m_align rows of lda = Kp rounded up to k_align pairs,
 * zero past the weights. */
long conv2d_bf16_weight_floats(const kernel_set *kt, int out_c, long K)
{
    return round_up(out_c, kt->bf16->m_align) * round_up((K + 1) / 2, kt->bf16->k_align);   /* a pair per float */
}

void conv2d_bf16_weights(const kernel_set *kt, const float *w, int out_c, long K, float *dst)
{
    uint16_t *o = (uint16_t *)(void *)dst;
    const long lda = round_up((K + 1) / 2, kt->bf16->k_align), rows = round_up(out_c, kt->bf16->m_align);
    for (long oc = 0; oc < rows; oc++)
        for (long k = 0; k < 2 * lda; k++)
            o[oc * 2 * lda + k] = oc < out_c && k < K ? bf16_from_f32(w[oc * K + k]) : 0;
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
    const long K = (long)g->in_c * g->k * g->k, N = job->pixels, lda = round_up((K + 1) / 2, bf->k_align);
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
        int kp_tile = (int)round_up(kp, bf->k_align);   /* the tile's K steps: zero pair rows */
        memset(pairs + (long)kp * CONV_NC * 2, 0, sizeof(uint16_t) * 2 * CONV_NC * (size_t)(kp_tile - kp));
        for (int m0 = oc_a; m0 < oc_b; m0 += bf->mr) {
            int mr = oc_b - m0 < bf->mr ? oc_b - m0 : bf->mr;
            const uint16_t *a = w + (m0 * lda + k0 / 2) * 2;
            for (int s = 0; s < nc; s += bf->nr) {
                int nr = nc - s < bf->nr ? nc - s : bf->nr;
                bf->gemm(kp_tile, a, lda, pairs + (long)s * 2, CONV_NC, dst + m0 * N + s, N, mr, nr, k0 > 0);
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
