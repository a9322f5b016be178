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

/* What an op needs to run: threads, kernels and scratch planned by the caller. */
typedef struct op_exec {
    threadpool *pool;
    const kernel_table *kernels;
    float *scratch;              /* per-thread conv panels, then op scratch */
    long scratch_per_thread;     /* floats of conv panel per thread */
    float *op_scratch;           /* shared scratch for small ops (ESE statistics) */
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
void conv2d_forward(op_exec *ex, const conv_geom *g, const float *weight,
                    const tensor4 *in, const tensor4 *out, const conv_epilogue *ep);

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

#endif
