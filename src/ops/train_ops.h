/*
 * train_ops.h - the training side of the op layer that ops.h does not declare: the
 * column-chunk GEMM engine (conv2d_cols.c), the fast convolution backward
 * (conv2d_backward.c) and its reference twin (conv2d_backward_ref.c), train-mode BN
 * fused with its activation (batchnorm.c) and the ESE with GEMM fc products (ese.c).
 * Point-wise and packing kernels come from the training table (train_kernels.h).
 *
 * Column space: a conv's GEMM view has one column per (image, output pixel); the
 * engine cuts that space into chunks of at most COLS_CB columns. A chunk is either a
 * pixel range of one image (maps of more than COLS_CB/2 pixels) or a run of whole
 * images (small maps: at 32x32 input, stage 3 has one pixel per image), so one GEMM
 * tile spans several images and small maps still fill the tile's width.
 */
#ifndef CSPRESNET_OPS_TRAIN_OPS_H
#define CSPRESNET_OPS_TRAIN_OPS_H

#include "ops/ops.h"
#include "kernels/train_kernels.h"

#define COLS_CB 128   /* columns per chunk (a multiple of every table's nr) */
#define COLS_KC 256   /* GEMM reduction rows packed at a time */

typedef struct col_plan {
    long pixels;      /* columns per image */
    int images;
    int per_chunk;    /* whole images per chunk (small maps), or 1 */
    long per_image;   /* chunks per image when per_chunk == 1 */
    long chunks;
} col_plan;

typedef struct col_chunk {
    int n0, nimg;     /* images n0 .. n0+nimg-1 */
    long p0;          /* first pixel (nimg == 1), else 0 */
    int pc;           /* pixels per image in the chunk */
    int cols;         /* nimg * pc */
} col_chunk;

void col_plan_make(long pixels, int images, col_plan *cp);
void col_chunk_get(const col_plan *cp, long index, col_chunk *ch);

/* Packs rows [k0, k0+kc) of the implicit im2col matrix of conv g over the chunk's
 * columns from x (images of g's input) into panel[kc][ldp]. */
void cols_pack_im2col(const f32_train_config *tk, const conv_geom *g, const tensor4 *x,
                      const col_chunk *ch, int k0, int kc, float *panel, long ldp);

/* out (+)= A . im2col_g(in) over all columns: A (g->out_c x in_c*k*k, row-major, lda),
 * in (N, g->in_c, in_h, in_w) -> out (N, g->out_c, out_h, out_w). accumulate = 1 adds
 * into out. Tasks are (chunk, output-channel part), parts fixed by the shape, so the
 * result does not depend on the thread count. conv_cols_work(job, t, nt) is the
 * worker body, callable from another op's pool pass. */
typedef struct conv_cols_job {
    const kernel_set *kt;
    const f32_train_config *tk;
    conv_geom g;
    const float *a;
    long lda;
    const tensor4 *in, *out;
    int accumulate;
    col_plan cp;
    int parts, part_rows;
    float *scratch;            /* per thread: per_thread floats */
    long per_thread;
} conv_cols_job;
long conv_cols_scratch(const kernel_set *kt, const conv_geom *g);
void conv_cols_prepare(conv_cols_job *job, const kernel_set *kt, const conv_geom *g,
                       const float *a, long lda, const tensor4 *in, const tensor4 *out,
                       int accumulate, float *scratch, long per_thread);
void conv_cols_work(const conv_cols_job *job, int t, int nt);
/* Training forward: out = W . im2col(in) (no epilogue; BN follows every conv). */
void conv_cols_forward(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                       const tensor4 *out);

/* batchnorm.c: train = 1: batch mean and biased variance over (N,H,W); with
 * update_running, run = 0.9 run + 0.1 batch (Paddle's momentum 0.9). train = 0 (frozen):
 * running statistics, never updated. y = act((x - mean) * rstd * w + b) with the
 * activation that follows BN fused in (CSPRESNET_ACT_NONE: plain BN); saves mean,
 * rstd (C). Backward: dx += (through the batch statistics when train, and through the
 * fused activation: dy is the activation's output gradient); dweight/dbias
 * overwritten (NULL ok). */
#define BN_MOMENTUM 0.9f
void batchnorm_forward_train(op_exec *ex, const f32_train_config *tk, int train,
                             cspresnet_act act, const tensor4 *x, const tensor4 *y,
                             const float *weight, const float *bias, float *run_mean,
                             float *run_var, int update_running, float *save_mean,
                             float *save_rstd);
void batchnorm_backward(op_exec *ex, const f32_train_config *tk, int train, cspresnet_act act,
                        const tensor4 *x, const tensor4 *dy, const tensor4 *dx, int assign,
                        const float *weight, const float *bias, const float *save_mean,
                        const float *save_rstd, float *dweight, float *dbias);

/* ese.c: the training ESE (ops.h) with its fc products on the GEMM tile (tables with
 * one); scratch 2*N*C floats forward, 3*N*C backward. */
void ese_forward_train_gemm(op_exec *ex, const tensor4 *x, const tensor4 *y, const float *fc_weight,
                            const float *fc_bias, float *save_s, float *save_z, float *scratch);
void ese_backward_gemm(op_exec *ex, const tensor4 *x, const tensor4 *dy, const tensor4 *dx,
                       const float *fc_weight, const float *save_s, const float *save_z,
                       float *dfc_weight, float *dfc_bias, float *scratch);

/* conv2d_backward.c: the fast backward (tables with a GEMM tile). Scratch for this conv
 * on n images: per thread and shared (ex->op_scratch) floats. */
void conv2d_backward_scratch(const kernel_set *kt, const conv_geom *g, int n, long *per_thread,
                             long *shared);

/* conv2d_backward_ref.c: the reference backward (scratch as in ops.h). */
void conv2d_backward_ref(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                         const tensor4 *dout, const tensor4 *din, float *dweight);

#endif
