/*
 * detector_ops.h - the ops the PP-YOLOE neck and head add to the backbone's (SPEC §5):
 * nearest 2x upsample, SPP's stride-1 max-pools, the head's sigmoid gate (ESEAttn),
 * element-wise sigmoid, and the DFL decoding of boxes and scores.
 *
 * Every op comes in two layers:
 *   - `<op>_part(..., t, nt)`: part t of nt of the work, a pure function of its
 *     arguments (no threads, no allocation, no globals). Parts split the output by
 *     (image, channel) planes or by anchors with split_range, so the result does not
 *     depend on nt: every output element is computed by the same code whatever the split.
 *   - `<op>_forward(pool, ...)`: runs the parts on a thread pool (pool NULL: one part on
 *     the calling thread).
 * Scratch, where an op needs it, is passed in by the caller and sized by the op's
 * `*_workspace()` function for a thread count; part t uses only its own slice.
 *
 * Tensors are ops.h's tensor4 views (NCHW float32, batch_stride), so an output can be a
 * channel slice of a concat written in place. Inputs and outputs must not overlap
 * unless a function says otherwise.
 */
#ifndef CSPRESNET_OPS_DETECTOR_OPS_H
#define CSPRESNET_OPS_DETECTOR_OPS_H

#include "core/threadpool.h"
#include "ops/ops.h"

/* ---- upsample.c: nearest 2x (Paddle F.interpolate(scale_factor=2, mode="nearest")):
 * in (N,C,H,W) -> out (N,C,2H,2W), out[n,c,y,x] = in[n,c,y/2,x/2]. A copy, so exact.
 * _ref indexes every output element; the default duplicates each row. */
void upsample_nearest2x_ref_part(const tensor4 *in, const tensor4 *out, int t, int nt);
void upsample_nearest2x_part(const tensor4 *in, const tensor4 *out, int t, int nt);
void upsample_nearest2x_ref_forward(threadpool *pool, const tensor4 *in, const tensor4 *out);
void upsample_nearest2x_forward(threadpool *pool, const tensor4 *in, const tensor4 *out);

/* ---- maxpool.c: SPP's max-pool, k odd, stride 1, padding k/2 with -inf (the window is
 * clipped to the plane; it always holds its centre): in (N,C,H,W) -> out (N,C,H,W).
 * A NaN in the window gives NaN (PyTorch's max_pool2d rule). _ref takes the direct max
 * of the k x k window; the separable version (row max, then column max, bit-identical:
 * max is exact) needs maxpool_workspace floats; spp_maxpool_forward writes SPP's three
 * pools 5, 9, 13 at once as pool5, pool5(pool5) and pool5(pool5(pool5)), which are the
 * same windows (a clipped 5-window of clipped 5-windows is the clipped 9-window). */
/* floats of scratch for the separable and SPP versions; threads = the pool's size (1 for NULL) */
long maxpool_workspace(int h, int w, int threads);
void maxpool_same_ref_part(const tensor4 *in, const tensor4 *out, int k, int t, int nt);
/* rk: the kernel set's reductions (window_max, max_into), any set's (all exact) */
void maxpool_same_part(const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out, int k, float *scratch,
                       int t, int nt);
void maxpool_same_ref_forward(threadpool *pool, const tensor4 *in, const tensor4 *out, int k);
void maxpool_same_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out,
                          int k, float *scratch);
/* out5, out9, out13: (N,C,H,W) each (typically channel slices 1..3 of SPP's concat). */
void spp_maxpool_part(const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out5, const tensor4 *out9,
                      const tensor4 *out13, float *scratch, int t, int nt);
void spp_maxpool_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *in, const tensor4 *out5,
                         const tensor4 *out9, const tensor4 *out13, float *scratch);

/* ---- sigmoid_mul.c: ESEAttn's gate and the class scores' sigmoid.
 *   mean_hw: x (N,C,H,W) -> mean (N*C), mean[n*C+c] = mean over H*W (double accumulator).
 *   channel_fc: mean (N*Cin), weight (Cout,Cin) (a 1x1 conv's), bias (Cout) or NULL
 *     -> z (N*Cout), z[n*Cout+o] = bias[o] + sum_i weight[o][i] * mean[n*Cin+i].
 *   sigmoid_gate: out[n,c,:,:] = x[n,c,:,:] * sigmoid(z[n*C+c]) (out may be x).
 *   sigmoid: out = 1 / (1 + exp(-x)) element-wise (out may be x).
 * ESEAttn(feat) = conv(feat * sigmoid(fc(mean_hw(feat)))) is mean_hw, channel_fc and
 * sigmoid_gate; the conv is the caller's. */
float sigmoid_f32(float v);
/* mean_of, scale: the kernel set's plane mean and gate scaling (reduce->mean, ->scale);
 * act: its epilogue (conv->bias_act, or f32_bias_act__ref), called with
 * CSPRESNET_ACT_SIGMOID */
void mean_hw_part(mean_fn mean_of, const tensor4 *x, float *mean, int t, int nt);
void mean_hw_forward(threadpool *pool, mean_fn mean_of, const tensor4 *x, float *mean);
void channel_fc_part(const float *mean, int n, int cin, int cout, const float *weight,
                     const float *bias, float *z, int t, int nt);
void channel_fc_forward(threadpool *pool, const float *mean, int n, int cin, int cout,
                        const float *weight, const float *bias, float *z);
void sigmoid_gate_part(scale_fn scale, const tensor4 *x, const float *z, const tensor4 *out, int t, int nt);
void sigmoid_gate_forward(threadpool *pool, scale_fn scale, const tensor4 *x, const float *z, const tensor4 *out);
void sigmoid_part(bias_act_fn act, const tensor4 *x, const tensor4 *out, int t, int nt);
void sigmoid_forward(threadpool *pool, bias_act_fn act, const tensor4 *x, const tensor4 *out);

/* ---- dfl_decode.c: one head level's outputs into the detector's [N, L, 4] boxes and
 * [N, C, L] scores, at anchors offset .. offset + H*W - 1 of L (levels in the order
 * strides 32, 16, 8, each level's anchors row-major, y outer).
 *   boxes: reg (N, 4*bins, H, W), channel = side*bins + bin (side l, t, r, b);
 *     d_side = sum_b softmax(reg[side])_b * proj[b] (proj: proj_conv's weight, bins
 *     floats, linspace(0, reg_max)); anchor (x + 0.5, y + 0.5);
 *     box = [ax - d_l, ay - d_t, ax + d_r, ay + d_b] * stride / [sx, sy, sx, sy]
 *     with scale_factor[n] = (sy, sx) (N*2 floats, or NULL for 1, 1), in that order.
 *   scores: scores[n][c][offset + i] = sigmoid(cls[n, c, i]), cls (N, C, H, W). */
typedef struct det_level_out {
    float *data;   /* boxes [N, L, 4] or scores [N, C, L], the whole detector tensor */
    long anchors;  /* L: anchors of all levels */
    long offset;   /* this level's first anchor */
} det_level_out;
/* rk: the kernel set's reductions (dfl_expect); act: its epilogue (sigmoid) */
void dfl_decode_part(const f32_reduce_config *rk, const tensor4 *reg, const float *proj, int bins, float stride,
                     const float *scale_factor, const det_level_out *boxes, int t, int nt);
void dfl_decode_forward(threadpool *pool, const f32_reduce_config *rk, const tensor4 *reg, const float *proj,
                        int bins, float stride, const float *scale_factor, const det_level_out *boxes);
void scores_sigmoid_part(bias_act_fn act, const tensor4 *cls, const det_level_out *scores, int t, int nt);
void scores_sigmoid_forward(threadpool *pool, bias_act_fn act, const tensor4 *cls, const det_level_out *scores);

#endif
