/*
 * conv2d_int8.c - the int8 forward convolution: an implicit GEMM of s8 weights
 * (per-output-channel symmetric scales) by u8-shifted s8 activations (one per-tensor
 * scale, calibrated: model/calibrate.c), summed exactly in int32 by the kernel set's
 * u8s8 tile (kernels/lowp_kernels.h), which dequantizes in its epilogue; the fp32
 * epilogue of the other paths (bias, activation, residual) follows.
 *
 * in (N,C,H,W) f32, weights prepared once (model/prepare.c) -> out (N,OC,OH,OW) f32.
 * The prepared block of a conv (floats):
 *   [0] 1 / act_scale, [1] act_scale, [2] the zero point z, then from INT8_HEAD:
 *   comp[OC] (int32, z * sum_k q[oc][k], plus the bias correction where calibration gave
 *   channel means: conv2d_int8_weights_at), scale[OC] (w_scale[oc] * act_scale),
 *   w_scale[OC], then the
 *   s8 rows: OC rows (zero rows after them up to the tile's m_align) of lda = ceil(K/4)
 *   quads rounded up to the tile's k_align (K in OIHW order, zero past K).
 * w_scale[oc] = max_k |w[oc][k]| / 127 and q = rne(w / w_scale) (0 for an all-zero
 * row); activations u8 = clamp(rne(x * (1 / act_scale)) + z, 0, 255), standing for
 * u8 - z (zero padding quantizes to z, exactly 0). z = 128 is the symmetric range;
 * calibration puts [0, 255] over the input's own range (an activation output's range
 * is mostly positive, so that is a bit more resolution than a symmetric one).
 *
 * 3x3 convs on sets with an int8 tap form (VNNI, AMX) go to conv2d_int8_taps.c instead.
 * A task (conv2d_fast.c's driver) packs all K rows of its pixels: each CONV_KC block of
 * f32 im2col rows (a 1x1 conv's are the input rows themselves) quantized into u8 quads,
 * stored strip by strip (nr columns each, so a strip's B is contiguous), then the tile
 * over the task's output channels reduces the whole K at once (it writes, it does not
 * accumulate). Integer sums are exact, so every kernel set and thread count gives the
 * same GEMM bits.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

_Static_assert(CONV_KC % 4 == 0, "int8 K blocks start on a quad");

#define INT8_HEAD 16   /* floats before comp: keeps comp and the rows 64-byte aligned */

static long round16(long x)
{
    return (x + 15) & ~15L;
}

/* int32 sums stay exact while 255 * 127 * K < 2^31. */
int conv2d_int8_applies(long K, float act_scale)
{
    return act_scale > 0.0f && isfinite(act_scale) && K <= 65536;
}

static long rows_offset(int out_c)
{
    return INT8_HEAD + round16(3L * out_c);
}

static long round_up(long x, long m)
{
    return (x + m - 1) / m * m;
}

long conv2d_int8_lda(const kernel_set *kt, long K)
{
    return round_up((K + 3) / 4, kt->int8->k_align);
}

long conv2d_int8_weight_floats(const kernel_set *kt, int out_c, long K)
{
    return rows_offset(out_c) + round_up(out_c, kt->int8->m_align) * conv2d_int8_lda(kt, K);
}

float conv2d_int8_weight_scale(const float *w_row, long K)
{
    float m = 0.0f;
    for (long k = 0; k < K; k++)
        m = fabsf(w_row[k]) > m ? fabsf(w_row[k]) : m;
    return m / 127.0f;
}

/* q = rne(w / w_scale) clamped to -127..127 (0 for an all-zero row's w_scale 0) */
static int8_t quant1(float w, float ws)
{
    float q = ws > 0.0f ? nearbyintf(w / ws) : 0.0f;
    return (int8_t)(q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q);
}

/* The bias correction of one row wr (K = C * kk, OIHW): the weight rounding's expected
 * output shift, sum_k (q[k] - w[k] / w_scale) * act_mean[c], in accumulator units (/
 * act_scale) rounded to an integer; 0 without channel means. */
static int32_t row_correction(const float *wr, float ws, long K, int kk, float act_scale, const float *act_mean)
{
    double shift = 0.0;
    if (!act_mean || !(ws > 0.0f))
        return 0;
    for (long k = 0; k < K; k++)
        shift += ((double)quant1(wr[k], ws) - (double)wr[k] / ws) * act_mean[k / kk];
    return (int32_t)lrint(shift / act_scale);
}

void conv2d_int8_quantize(const float *w, int out_c, long K, int kk, float act_scale, const float *act_mean,
                          int8_t *q, float *w_scale, int32_t *corr)
{
    for (int oc = 0; oc < out_c; oc++) {
        const float *wr = w + oc * K;
        float ws = conv2d_int8_weight_scale(wr, K);
        for (long k = 0; k < K; k++)
            q[oc * K + k] = quant1(wr[k], ws);
        w_scale[oc] = ws;
        corr[oc] = row_correction(wr, ws, K, kk, act_scale, act_mean);
    }
}

/* Weight k = c*kk + t (OIHW, t the tap) of row oc goes to byte tap_base[t] + c of the
 * row (tap_base NULL: byte k); the rest of the row, and rows oc >= out_c up to m_rows,
 * are zero. comp = z * sum_k q[k] plus the row's bias correction, which the tile thus
 * subtracts for free. From fp32 weights the values are conv2d_int8_quantize's, so a
 * file written from them packs to the same block. */
void conv2d_int8_weights_at(const int8_weights *src, int out_c, long K, float act_scale, int act_zero, long lda,
                            long m_rows, int kk, const long *tap_base, float *dst)
{
    int32_t *comp = (int32_t *)(void *)(dst + INT8_HEAD);
    float *scale = dst + INT8_HEAD + out_c, *w_scale = scale + out_c;
    int8_t *rows = (int8_t *)(void *)(dst + rows_offset(out_c));
    memset(dst, 0, sizeof(float) * (size_t)rows_offset(out_c));
    memset(rows, 0, (size_t)(4 * lda * m_rows));
    dst[0] = 1.0f / act_scale;
    dst[1] = act_scale;
    dst[2] = (float)act_zero;
    for (int oc = 0; oc < out_c; oc++) {
        const float *wr = src->w ? src->w + oc * K : NULL;
        float ws = wr ? conv2d_int8_weight_scale(wr, K) : src->w_scale[oc];
        int32_t sum = 0;
        for (long k = 0; k < K; k++) {
            int8_t q = wr ? quant1(wr[k], ws) : src->q[oc * K + k];
            rows[oc * 4 * lda + (tap_base ? tap_base[k % kk] + k / kk : k)] = q;
            sum += q;
        }
        int32_t corr = wr ? row_correction(wr, ws, K, kk, act_scale, src->act_mean) : src->corr ? src->corr[oc] : 0;
        comp[oc] = act_zero * sum + corr;
        w_scale[oc] = ws;
        scale[oc] = ws * act_scale;
    }
}

void conv2d_int8_weights(const kernel_set *kt, const int8_weights *src, int out_c, long K, int kk, float act_scale,
                         int act_zero, float *dst)
{
    conv2d_int8_weights_at(src, out_c, K, act_scale, act_zero, conv2d_int8_lda(kt, K),
                           round_up(out_c, kt->int8->m_align), kk, NULL, dst);
}

long conv2d_int8_head_floats(int out_c)
{
    return rows_offset(out_c);
}

const int32_t *conv2d_int8_comp(const float *prepared)
{
    return (const int32_t *)(const void *)(prepared + INT8_HEAD);
}

const float *conv2d_int8_dequant(const float *prepared, int out_c)
{
    return prepared + INT8_HEAD + out_c;
}

const int8_t *conv2d_int8_rows(const float *prepared, int out_c)
{
    return (const int8_t *)(const void *)(prepared + rows_offset(out_c));
}

const float *conv2d_int8_scales(const float *prepared, int out_c)
{
    return prepared + INT8_HEAD + 2L * out_c;
}

/* The f32 im2col panel (CONV_KC x CONV_NC), then the u8 quads of every K row (lda,
 * rounded up to the tile's K step) for CONV_NC pixels (a quad per float). */
long conv2d_int8_scratch_per_thread(const kernel_set *kt, long K)
{
    return (long)CONV_KC * CONV_NC + (long)round_up(CONV_NC, kt->int8->nr) * conv2d_int8_lda(kt, K);
}

static void int8_task(const conv_gemm_job *job, float *panel, int image, long n0, int nc, int oc_a, int oc_b)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const u8s8_gemm_config *q8 = kt->int8;
    im2col_rows_fn im2col = kt->conv ? kt->conv->im2col_rows : f32_im2col_rows__ref;
    const long K = (long)g->in_c * g->k * g->k, N = job->pixels, lda = conv2d_int8_lda(kt, K), kq = (K + 3) / 4;
    const float *prep = job->weight;
    const int32_t *comp = conv2d_int8_comp(prep);
    const float *scale = conv2d_int8_dequant(prep, g->out_c);
    const int8_t *w = conv2d_int8_rows(prep, g->out_c);
    uint8_t *quads = (uint8_t *)(void *)(panel + (long)CONV_KC * CONV_NC);
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const int direct = g->k == 1 && g->stride == 1 && g->pad == 0;
    for (long k0 = 0; k0 < K; k0 += CONV_KC) {
        int kc = (int)(K - k0 < CONV_KC ? K - k0 : CONV_KC);
        const float *x = panel;
        long ldx = CONV_NC;
        if (direct) {
            x = src + k0 * N + n0;
            ldx = N;
        } else {
            im2col(g, src, (int)k0, kc, n0, nc, panel, CONV_NC);
        }
        for (int s = 0; s < nc; s += q8->nr)   /* strip s/nr: lda rows of nr quads from s * lda */
            q8->pack(x + s, ldx, kc, nc - s < q8->nr ? nc - s : q8->nr, prep[0], (int)prep[2],
                     quads + (s * lda + k0 / 4 * q8->nr) * 4, q8->nr);
    }
    if (lda > kq)   /* the rest of the tile's last K step (they meet zero weights): defined bytes */
        for (int s = 0; s < nc; s += q8->nr)
            memset(quads + (s * lda + kq * q8->nr) * 4, 0, (size_t)(4 * q8->nr * (lda - kq)));
    for (int m0 = oc_a; m0 < oc_b; m0 += q8->mr) {
        int mr = oc_b - m0 < q8->mr ? oc_b - m0 : q8->mr;
        for (int s = 0; s < nc; s += q8->nr) {
            int nr = nc - s < q8->nr ? nc - s : q8->nr;
            q8->gemm((int)lda, w + m0 * lda * 4, lda, quads + s * lda * 4, q8->nr, comp + m0, scale + m0,
                     dst + m0 * N + s, N, mr, nr);
        }
    }
    conv2d_epilogue(job, image, n0, nc, oc_a, oc_b);
}

void conv2d_int8_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                         const tensor4 *out, const conv_epilogue *ep)
{
    /* the driver's split for the int8 tile's rows, then its tasks */
    conv_gemm_job job = {.ex = ex, .g = g, .weight = prepared, .in = in, .out = out, .ep = ep, .task = int8_task};
    const int mr = ex->kernels->int8->mr;
    conv2d_gemm_split(g, in->n, threadpool_size(ex->pool), mr, &job);
    conv2d_gemm_run(&job);
}
