/*
 * ops.h - the op layer: one op per file (conv2d.c, batchnorm.c, activation.c,
 * eltwise.c, ese.c), each with its forward (and, with the training work, its
 * backward) side by side.
 *
 * An op validates nothing the graph builder already guaranteed; it splits its own
 * work across the pool's threads by (thread index, count), takes scratch from the
 * op_exec it is given, and calls kernels. No op allocates.
 *
 * Tensors are NCHW float32 views: element (n, c, y, x) is at
 * data[n*batch_stride + c*h*w + y*w + x]. batch_stride > c*h*w when the view is a
 * channel slice of a larger tensor (concat written in place).
 */
#ifndef CSPRESNET_OPS_H
#define CSPRESNET_OPS_H

#include "core/threadpool.h"
#include "kernels/kernels.h"

typedef struct tensor4 {
    float *data;
    int n, c, h, w;
    long batch_stride;
} tensor4;

/* Work over (image, channel) planes: part t of nt gets planes [*begin, *end) of x's
 * N*C (in image-major order; the same split for every tensor of x's shape), and
 * plane p starts at tensor4_plane(x, p). */
static inline void plane_split(const tensor4 *x, int t, int nt, long *begin, long *end)
{
    split_range((long)x->n * x->c, t, nt, begin, end);
}

static inline float *tensor4_plane(const tensor4 *x, long p)
{
    return x->data + (p / x->c) * x->batch_stride + (p % x->c) * (long)x->h * x->w;
}

/* planes.c: fn(job, p, h*w) for every (image, channel) plane p of x, each thread of
 * the pool a contiguous run of planes (plane_split), so results never depend on the
 * thread count. */
typedef void (*plane_fn)(const void *job, long p, long plane);
void planes_run(threadpool *pool, const tensor4 *x, plane_fn fn, const void *job);

/* What an op needs to run: threads, kernels and scratch planned by the caller. */
typedef struct op_exec {
    threadpool *pool;
    const kernel_set *kernels;
    float *scratch;              /* per-thread conv panels, then op scratch */
    long scratch_per_thread;     /* floats of conv panel per thread */
    float *op_scratch;           /* shared scratch for small ops (ESE statistics) */
    /* fast conv path (conv2d_fast.c): per-thread blocks of fast_per_thread floats, then
     * the shared part (Winograd weights); NULL keeps conv2d on the reference path */
    float *fast_scratch;
    long fast_per_thread;
    /* this node's weights packed at load time for these kernels (model/prepare.c:
     * a conv's Winograd U), or NULL: the op transforms them itself */
    const float *prepared;
} op_exec;

/* conv2d.c: in (N,C,H,W), weight (OC,C,k,k) -> out (N,OC,OH,OW), then the epilogue
 * out = act(out + bias[oc]) + residual (each part optional; ep may be NULL). The
 * epilogue runs on each tile while it is still in cache: it is how deploy mode fuses
 * BN (folded into weight and bias), the activation and the BasicBlock shortcut. */
#define CONV_KC 256   /* rows of the im2col matrix packed at a time */
#define CONV_NC 128   /* columns packed at a time (a multiple of GEMM_NR) */
typedef struct conv_epilogue {
    const float *bias;        /* OC floats or NULL */
    cspresnet_act act;        /* CSPRESNET_ACT_NONE for none */
    const tensor4 *residual;  /* same shape as out, or NULL; added after act */
} conv_epilogue;
long conv2d_scratch_per_thread(void);
/* A conv's algorithm, chosen once by conv2d_plan: the reference im2col GEMM (tables
 * without a GEMM tile), the fast GEMM (conv2d_fast.c), Winograd F(4,3) for 3x3
 * stride-1 convs (conv2d_winograd.c; the few-tiles form conv2d_winograd_few.c), or in
 * training the column-chunk engine (conv2d_cols.c). */
enum conv_path { CONV_PATH_REF, CONV_PATH_GEMM, CONV_PATH_WINOGRAD, CONV_PATH_WINOGRAD_FEW, CONV_PATH_COLS,
                 CONV_PATH_BF16, CONV_PATH_BF16_TAPS, CONV_PATH_INT8,
                 CONV_PATH_INT8_TAPS };
/* The path for this conv on n images with `threads` threads (winograd 0: never
 * Winograd) and its workspace: per thread and shared floats, laid out as
 * ex->scratch (= ex->fast_scratch) + t * per_thread, shared at threads * per_thread
 * (= ex->op_scratch). conv2d_run runs the conv on that path. */
int conv2d_plan(const kernel_set *kt, const conv_geom *g, int n, int threads, int winograd,
                long *per_thread, long *shared);
void conv2d_run(op_exec *ex, int path, const conv_geom *g, const float *weight, const tensor4 *in,
                const tensor4 *out, const conv_epilogue *ep);
/* conv2d_fast.c: conv2d_plan and conv2d_run for tables with a GEMM tile. */
int conv2d_fast_plan(const kernel_set *kt, const conv_geom *g, int n, int threads, int winograd,
                     long *per_thread, long *shared);
void conv2d_fast_forward(op_exec *ex, int path, const conv_geom *g, const float *weight,
                         const tensor4 *in, const tensor4 *out, const conv_epilogue *ep);
/* conv2d_fast.c's GEMM driver, shared with conv2d_bf16.c. Tasks are (output-channel
 * part, image, up to CONV_NC output pixels), each thread taking an equal run of pixels;
 * task() computes rows [oc_a, oc_b) x pixels [n0, n0+nc) of one output image, each
 * element reduced over K in a fixed order, then runs conv2d_epilogue on them. */
typedef struct conv_gemm_job conv_gemm_job;
typedef void (*conv_gemm_task)(const conv_gemm_job *job, float *panel, int image, long n0, int nc, int oc_a,
                               int oc_b);
struct conv_gemm_job {
    op_exec *ex;
    const conv_geom *g;
    const void *weight;      /* the OIHW f32 weights, or the task's own packing */
    const tensor4 *in, *out;
    const conv_epilogue *ep;
    long pixels;             /* output pixels per image */
    int parts, part_oc;      /* output-channel parts, channels per part (a multiple of mr) */
    int is_1x1;              /* f32: B is the input itself (1x1, stride 1, pad 0) */
    conv_gemm_task task;
};
/* Fills pixels, parts, part_oc and is_1x1 for n images, `threads` threads and tiles of
 * mr rows. */
void conv2d_gemm_split(const conv_geom *g, int n, int threads, int mr, conv_gemm_job *job);
void conv2d_gemm_run(conv_gemm_job *job);
/* The f32 im2col GEMM's K block for K rows with table kt, from the L1 data cache size
 * (a multiple of unit where one fits). */
long conv2d_f32_kc(const kernel_set *kt, long K, int unit);
/* The epilogue (bias, activation, residual) on rows [oc_a, oc_b), pixels [n0, n0+nc). */
void conv2d_epilogue(const conv_gemm_job *job, int image, long n0, int nc, int oc_a, int oc_b);

/* conv2d_bf16.c: the conv as a bf16 GEMM (fp32 accumulation), weights prepared once as
 * bfloat16 rows of K rounded up to even (conv2d_bf16_weights), activations rounded while
 * packed. conv2d_bf16_applies: the convs a bf16 context runs this way when the tap form
 * does not take them (all but the 3x3 stride-1 ones that kt runs by Winograd and the
 * 3-channel stem conv, which stay fp32). */
int conv2d_bf16_applies(const kernel_set *kt, const conv_geom *g);
long conv2d_bf16_weight_floats(const kernel_set *kt, int out_c, long K);
void conv2d_bf16_weights(const kernel_set *kt, const float *w, int out_c, long K, float *dst);
long conv2d_bf16_scratch_per_thread(void);
void conv2d_bf16_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                         const tensor4 *out, const conv_epilogue *ep);

/* conv2d_bf16_taps.c: bf16 3x3 stride-1 convs straight from a bf16 pair image of the
 * input, for kernel sets with the tap form (AMX), instead of fp32 Winograd. Workspace:
 * conv2d_bf16_taps_shared floats. */
int conv2d_bf16_taps_applies(const kernel_set *kt, const conv_geom *g);
long conv2d_bf16_taps_weight_floats(const kernel_set *kt, int out_c, int in_c, int k);
void conv2d_bf16_taps_weights(const kernel_set *kt, const float *w, int out_c, int in_c, int k, float *dst);
long conv2d_bf16_taps_shared(const conv_geom *g);
void conv2d_bf16_taps_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                              const tensor4 *out, const conv_epilogue *ep);

/* conv2d_int8.c: the conv as an int8 GEMM (exact int32 sums, dequantized in the tile,
 * then the fp32 epilogue), weights prepared once by conv2d_int8_weights (per output
 * channel symmetric s8, with the input's calibrated scale and zero point), activations
 * quantized while packed. conv2d_int8_applies: a conv with a calibrated scale whose
 * int32 sums cannot overflow. conv2d_int8_rows / conv2d_int8_scales: the prepared s8
 * rows (OC x conv2d_int8_lda quads, after conv2d_int8_head_floats) and per-channel
 * weight scales, conv2d_int8_comp / conv2d_int8_dequant the tile's comp and scale;
 * conv2d_int8_weights_at writes that block with rows of any layout (the tap form's). */
int conv2d_int8_applies(long K, float act_scale);
long conv2d_int8_lda(const kernel_set *kt, long K);
long conv2d_int8_weight_floats(const kernel_set *kt, int out_c, long K);
float conv2d_int8_weight_scale(const float *w_row, long K);
/* What an int8 conv's block is packed from: fp32 OIHW weights w (quantized at prepare;
 * with act_mean, the calibrated mean of each input channel, the bias correction too),
 * or a quantized file's logical values (w NULL): q (s8, OC x K, OIHW), w_scale (OC)
 * and corr (OC bias corrections in accumulator units, NULL: 0). */
typedef struct int8_weights {
    const float *w, *act_mean;
    const int8_t *q;
    const float *w_scale;
    const int32_t *corr;
} int8_weights;
/* The logical quantized weights of an (OC, K = C * kk) matrix w, what an int8
 * safetensors file stores: q[oc * K + k] = rne(w / w_scale[oc]) in -127..127, w_scale[oc]
 * = max_k |w[oc][k]| / 127, corr[oc] the bias correction for act_mean (0 for NULL) at
 * the input scale act_scale. Packing them gives the block packing w gives. */
void conv2d_int8_quantize(const float *w, int out_c, long K, int kk, float act_scale, const float *act_mean,
                          int8_t *q, float *w_scale, int32_t *corr);
void conv2d_int8_weights(const kernel_set *kt, const int8_weights *src, int out_c, long K, int kk, float act_scale,
                         int act_zero, float *dst);
void conv2d_int8_weights_at(const int8_weights *src, int out_c, long K, float act_scale, int act_zero, long lda,
                            long m_rows, int kk, const long *tap_base, float *dst);
long conv2d_int8_head_floats(int out_c);
const int8_t *conv2d_int8_rows(const float *prepared, int out_c);
const int32_t *conv2d_int8_comp(const float *prepared);
const float *conv2d_int8_dequant(const float *prepared, int out_c);
const float *conv2d_int8_scales(const float *prepared, int out_c);
long conv2d_int8_scratch_per_thread(const kernel_set *kt, long K);
void conv2d_int8_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                         const tensor4 *out, const conv_epilogue *ep);

/* conv2d_int8_taps.c: int8 3x3 stride-1 and stride-2 convs straight from a u8 quad
 * image of the input on kernel sets with the int8 tap form (AMX), instead of fp32
 * Winograd or im2col; the image takes conv2d_int8_taps_shared floats. */
int conv2d_int8_taps_applies(const kernel_set *kt, const conv_geom *g);
long conv2d_int8_taps_weight_floats(const kernel_set *kt, const conv_geom *g);
void conv2d_int8_taps_weights(const kernel_set *kt, const conv_geom *g, const int8_weights *src, float act_scale,
                              int act_zero, float *dst);
long conv2d_int8_taps_shared(const kernel_set *kt, const conv_geom *g);
void conv2d_int8_taps_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                              const tensor4 *out, const conv_epilogue *ep);

/* conv2d_winograd.c: F(4,3) for 3x3 stride-1 pad-1 convs (called by conv2d_fast.c). */
int conv2d_winograd_applies(const kernel_set *ks, int allow_winograd, const conv_geom *g);
/* conv2d_winograd_few.c: the same convs when the batch has few tiles. */
int conv2d_winograd_few_applies(const conv_geom *g, int n);
void conv2d_winograd_few_scratch(const conv_geom *g, int n, long *per_thread, long *shared);
void conv2d_winograd_few_forward(op_exec *ex, const conv_geom *g, const float *weight,
                                 const tensor4 *in, const tensor4 *out, const conv_epilogue *ep);
void conv2d_winograd_scratch(const kernel_set *kt, const conv_geom *g, int n, int threads,
                             long *per_thread, long *shared);
void conv2d_winograd_forward(op_exec *ex, const conv_geom *g, const float *weight,
                             const tensor4 *in, const tensor4 *out, const conv_epilogue *ep);
/* The Winograd U (36 x OC x C floats, conv2d_winograd.c's layout) of a 3x3 conv's
 * weights, as conv2d_winograd_forward computes it per call; ex->prepared takes it. */
long conv2d_winograd_u_floats(const conv_geom *g);
void conv2d_winograd_u(const kernel_set *kt, const conv_geom *g, const float *weight, float *u);

/* batchnorm.c: eval mode, in place: x = (x - mean) / sqrt(var + eps) * w + b per channel. */
#define BN_EPSILON 1e-5f
void batchnorm_forward_eval(op_exec *ex, const tensor4 *x, const float *weight,
                            const float *bias, const float *mean, const float *variance);

/* activation.c: x = act(x), in place. */
void activation_forward(op_exec *ex, cspresnet_act act, const tensor4 *x);

/* eltwise.c: out = a + alpha * b (out may alias a or b). */
void add_scaled_forward(op_exec *ex, const tensor4 *a, const tensor4 *b, float alpha,
                        const tensor4 *out);

/* ese.c: effective squeeze-excitation, in place:
 * x *= hardsigmoid(fc_w (C,C) . mean_hw(x) + fc_b), hardsigmoid = clip(0.1666667 v + 0.5, 0, 1).
 * Needs 2*N*C floats of ex->op_scratch. */
#define ESE_HARDSIGMOID_SLOPE 0.1666667f
#define ESE_HARDSIGMOID_OFFSET 0.5f
long ese_scratch_floats(int n, int c);
void ese_forward(op_exec *ex, const tensor4 *x, const float *fc_weight, const float *fc_bias);

/* ---- training (forward out of place, keeping what backward needs; backward ops
 * ACCUMULATE into input gradients (dx +=) and OVERWRITE parameter gradients) ---- */

/* conv2d_backward.c: dweight (OC,C,k,k) = sum_n dout_n . col(in_n)^T (NULL: skipped);
 * din += col2im(W^T . dout) (NULL: skipped; assign_dx: din =, with a GEMM tile only).
 * Scratch: with a table that has a GEMM
 * tile, conv2d_backward_scratch (ops/train_ops.h) per conv; otherwise (the reference
 * path, conv2d_backward_ref.c) per thread conv2d_backward_scratch_per_thread(max OC,
 * max k) floats in ex->scratch (and ex->scratch_per_thread at least that), W^T
 * (conv2d_backward_shared_floats) in ex->op_scratch. Deterministic: results do not
 * depend on the thread count. */
long conv2d_backward_scratch_per_thread(int max_oc, int max_k);
long conv2d_backward_shared_floats(int max_oc, int max_cin, int max_k);
void conv2d_backward(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                     const tensor4 *dout, const tensor4 *din, int assign_dx, float *dweight);

/* activation.c: y = act(x) out of place; dx += dy * act'(x) (assign: dx =). */
void activation_forward_out(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *y);
void activation_backward(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *dy,
                         const tensor4 *dx, int assign);

/* eltwise.c: backward of out = a + alpha*b: da += dy, db += alpha*dy (NULL ok; assign_a,
 * assign_b: = instead of +=);
 * *dalpha = sum(dy*b) (NULL: skipped) using N*C doubles of partials. */
void add_scaled_backward(op_exec *ex, const tensor4 *b, float alpha, const tensor4 *dy,
                         const tensor4 *da, const tensor4 *db, int assign_a, int assign_b, float *dalpha,
                         double *partials);

/* ese.c: y = x * hardsigmoid(fc(mean_hw(x))) out of place, saving s and z (N*C each);
 * backward needs 2*N*C floats of ex->op_scratch; dx NULL skips the input gradient. */
void ese_forward_train(op_exec *ex, const tensor4 *x, const tensor4 *y, const float *fc_weight,
                       const float *fc_bias, float *save_s, float *save_z);
void ese_backward(op_exec *ex, const tensor4 *x, const tensor4 *dy, const tensor4 *dx,
                  const float *fc_weight, const float *save_s, const float *save_z,
                  float *dfc_weight, float *dfc_bias);

#endif
