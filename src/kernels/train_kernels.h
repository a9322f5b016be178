/*
 * train_kernels.h - the f32 training family (f32_train_config): forward packing and
 * the backward point-wise work, chosen with the kernel set (kernels.h, select.c).
 *
 * Like every kernel here: pure single-threaded work on given buffers, no allocation,
 * no threads, no globals; each has a reference twin in f32_train_config_ref (kernels/ref,
 * and the plain-C im2col of kernels/generic) that tests compare it against.
 */
#ifndef CSPRESNET_TRAIN_KERNELS_H
#define CSPRESNET_TRAIN_KERNELS_H

#include "kernels/kernels.h"

/* Row `row` = (ic, ky, kx) of a conv's im2col matrix, and the output columns ox whose
 * input column ox*stride - pad + kx lies inside the row: [*lo, *hi] (empty: hi < lo).
 * Shared by the run-based im2col and col2im kernels. */
static inline void conv_row_tap(const conv_geom *g, int row, int *ic, int *ky, int *kx, int *lo, int *hi)
{
    const int kk = g->k * g->k, s = g->stride;
    *ic = row / kk;
    *ky = (row % kk) / g->k;
    *kx = row % g->k;
    *lo = g->pad - *kx > 0 ? (g->pad - *kx + s - 1) / s : 0;
    const int v = g->in_w - 1 + g->pad - *kx;
    *hi = v >= 0 ? v / s : -1;
}

/* Same contract and bits as f32_im2col_rows__generic (its reference): rows [k0, k0+kc)
 * x columns [n0, n0+nc) of the implicit im2col matrix of one image into
 * panel[kc][ldp]. Each (row, output row) is one zero-filled edge and one contiguous
 * (stride 1) or strided copy: the valid range is computed, not tested per element. */
void f32_im2col_rows_runs__generic(const conv_geom *g, const float *image, int k0, int kc,
                                   long n0, int nc, float *panel, long ldp);

/* The same rows for nimg images (image_stride floats apart) side by side,
 * panel[r][i*pc + p], by a per-tap table of source offsets (idx: pc ints of scratch):
 * for small maps, where rows are a few floats long. Bit-identical to the above. */
void f32_im2col_rows_table__generic(const conv_geom *g, const float *images, long image_stride,
                                    int nimg, int k0, int kc, long p0, int pc, float *panel,
                                    long ldp, int *idx);

/* dX image += col2im(col) for channels [c0, c0+cc) and the pixels [p0, p0+pc) of one
 * image: col row r = (c - c0, ky, kx), ldcol floats apart; each input element gets
 * its terms in row order (so any twin with the same order has the same bits). */
void f32_col2im_add__generic(const conv_geom *g, const float *col, long ldcol, int c0, int cc, long p0,
                             int pc, float *image);

/* ---- BN (+ activation) of training, one channel: `runs` contiguous runs of `len`
 * floats (one per image), each operand with its own distance between runs ----
 * Statistics: *s1 += sum x, *s2 += sum x^2 (double accumulators).
 * Apply: y = act(x * scale + shift) (scale = rstd * w, shift = b - mean * scale).
 * Backward, with xh = (x - mean) * rstd, v = xh * w + b (the activation's input,
 * recomputed rather than stored) and g = da * act'(v):
 *   reduce: *sdy += sum g, *sdyx += sum g * xh (double);
 *   apply:  dx += scale * (g - mdy - xh * mdyx)  (assign: dx = that product, dx not read).
 * act CSPRESNET_ACT_NONE: g = da. The sums of a channel are reduced once, at its end
 * (maps of 1-4 pixels make runs of 1-4 floats). */
typedef struct bn_act_params {
    float mean, rstd, weight, bias;
    float scale, shift;      /* rstd * weight, bias - mean * scale */
    float mdy, mdyx;         /* backward apply: batch means of g and g * xh (0 when frozen) */
    cspresnet_act act;
    int assign;              /* backward apply: write dx instead of adding to it */
} bn_act_params;

struct f32_train_config {
    const char *name;        /* "f32-train-avx512" */
    void (*bn_stats)(const float *x, long xs, int runs, long len, double *s1, double *s2);
    void (*bn_act_apply)(const float *x, long xs, float *y, long ys, int runs, long len,
                         const bn_act_params *p);
    void (*bn_act_bwd_reduce)(const float *x, long xs, const float *da, long das, int runs, long len,
                              const bn_act_params *p, double *sdy, double *sdyx);
    void (*bn_act_bwd_apply)(const float *x, long xs, const float *da, long das, float *dx, long dxs,
                             int runs, long len, const bn_act_params *p);
    /* im2col rows of nimg images side by side (as f32_im2col_rows_table__generic) for
     * stride-1 convs with out_w == in_w; returns 0 when the shape is not one it takes.
     * NULL: none (the generic kernels pack). */
    int (*im2col_shift)(const conv_geom *g, const float *images, long image_stride, int nimg,
                        int k0, int kc, long p0, int pc, float *panel, long ldp);
    /* as f32_im2col_rows_runs__generic (one image, any stride); NULL: that one */
    void (*im2col_runs)(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                        float *panel, long ldp);
    /* as f32_im2col_rows_table__generic (small maps, any stride) */
    void (*im2col_gather)(const conv_geom *g, const float *images, long image_stride, int nimg,
                          int k0, int kc, long p0, int pc, float *panel, long ldp, int *idx);
    /* as f32_col2im_add__generic; NULL: that one */
    void (*col2im_add)(const conv_geom *g, const float *col, long ldcol, int c0, int cc, long p0, int pc,
                       float *image);
    /* dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols */
    void (*transpose)(const float *src, long lds, int rows, int cols, float *dst, long ldd);
};

/* act'(x), PyTorch autograd's formulas (relu'(0) = 0, ...). */
float f32_act_derivative__ref(cspresnet_act act, float x);

void f32_bn_stats__ref(const float *x, long xs, int runs, long len, double *s1, double *s2);
void f32_bn_act_apply__ref(const float *x, long xs, float *y, long ys, int runs, long len,
                           const bn_act_params *p);
void f32_bn_act_bwd_reduce__ref(const float *x, long xs, const float *da, long das, int runs,
                                long len, const bn_act_params *p, double *sdy, double *sdyx);
void f32_bn_act_bwd_apply__ref(const float *x, long xs, const float *da, long das, float *dx,
                               long dxs, int runs, long len, const bn_act_params *p);

void f32_transpose__ref(const float *src, long lds, int rows, int cols, float *dst, long ldd);

/* AVX-512F (kernels/x86/f32_train_avx512.c): swish, relu and none vectorised; other
 * activations go to the reference kernels. */
void f32_bn_stats__avx512(const float *x, long xs, int runs, long len, double *s1, double *s2);
void f32_bn_act_apply__avx512(const float *x, long xs, float *y, long ys, int runs, long len,
                           const bn_act_params *p);
void f32_bn_act_bwd_reduce__avx512(const float *x, long xs, const float *da, long das, int runs,
                                long len, const bn_act_params *p, double *sdy, double *sdyx);
void f32_bn_act_bwd_apply__avx512(const float *x, long xs, const float *da, long das, float *dx,
                               long dxs, int runs, long len, const bn_act_params *p);
void f32_transpose__avx512(const float *src, long lds, int rows, int cols, float *dst, long ldd);
int f32_im2col_shift__avx512(const conv_geom *g, const float *images, long image_stride, int nimg,
                             int k0, int kc, long p0, int pc, float *panel, long ldp);
/* f32_col2im_add__generic, bit for bit, with stride-2 rows by lane expansion */
void f32_col2im_add__avx512(const conv_geom *g, const float *col, long ldcol, int c0, int cc, long p0,
                            int pc, float *image);
/* f32_im2col_rows_runs__generic, bit for bit, with stride-2 rows by permutes */
void f32_im2col_runs__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp);

/* The reference training config (the oracle; the config of every set but "avx512"). */
extern const f32_train_config f32_train_config_ref;

#endif
