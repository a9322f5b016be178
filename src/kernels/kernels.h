/*
 * kernels.h - the compute kernels and the table that picks them.
 *
 * Kernels are pure, single-threaded tiles: they never allocate, never start threads,
 * never read globals. The op layer (src/ops) validates shapes, sizes workspace and
 * splits the work across threads, then calls the kernels through a kernel_table
 * chosen once per context. Naming: <dtype>_<what>_<tile>__<isa>.
 *
 * Every kernel has a reference version in kernels/ref that stays as the oracle for
 * the optimised ones (kernels/x86, per ISA, added with the speed work).
 */
#ifndef CSPRESNET_KERNELS_H
#define CSPRESNET_KERNELS_H

#include <stddef.h>

#include "cspresnet.h"

/* Geometry of one 2-D convolution over one image (NCHW, groups 1). */
typedef struct conv_geom {
    int in_c, in_h, in_w;
    int out_c, out_h, out_w;
    int k, stride, pad;     /* square kernel k x k, symmetric zero padding */
} conv_geom;

/* The GEMM view of a conv: C[M x N] = A[M x K] * B[K x N], M = out_c,
 * K = in_c*k*k, N = out_h*out_w, A the OIHW weights (row-major, lda = K), B the
 * implicit im2col of the input image, C the NCHW output image (ldc = N). */
#define GEMM_MR 4    /* rows of a micro-tile */
#define GEMM_NR 16   /* columns of a micro-tile; B panels are NR wide */

/* Packs rows [k0, k0+kc) and columns [n0, n0+nc) of the implicit im2col matrix of
 * `image` (in_c x in_h x in_w) into `panel` as ceil(nc/NR) strips of kc x NR floats,
 * zero-filled past nc. panel holds ceil(nc/NR)*NR*kc floats. */
typedef void (*im2col_panel_fn)(const conv_geom *g, const float *image, int k0, int kc,
                                long n0, int nc, float *panel);

/* c[i*ldc + j] (+)= sum_k a[i*lda + k] * strip[k*NR + j] for i < mr <= MR, j < nr <= NR.
 * accumulate = 0 overwrites c. */
typedef void (*gemm_microkernel_fn)(int kc, const float *a, long lda, const float *strip,
                                    float *c, long ldc, int mr, int nr, int accumulate);

/* ---- Fast-path kernels (kernels/x86 per ISA, kernels/generic portable). ---- */

/* c[i*ldc + j] (+)= sum_k a[i*lda + k] * b[k*ldb + j] for i < mr <= table.mr,
 * j < nr <= table.nr. b is any row-major block (a packed panel, the input itself for
 * a 1x1 conv, a Winograd V matrix); columns >= nr are never read or written.
 * accumulate = 0 overwrites c. */
typedef void (*gemm_fn)(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                        long ldc, int mr, int nr, int accumulate);

/* x[i] = act(x[i] + bias) + (res ? res[i] : 0) for i < count (the conv epilogue on
 * one output-channel row). Any activation; the fast ones are vectorised. */
typedef void (*bias_act_fn)(float *x, long count, float bias, cspresnet_act act, const float *res);

/* Winograd F(4,3) for a 3x3 stride-1 pad-1 conv (NCHW), 16 tiles at a time.
 * A tile t covers output rows 4*ty..4*ty+3 and columns 4*tx..4*tx+3 of one image;
 * tiles are numbered ty * tiles_w + tx and lanes past tile_count are zero.
 *   weights: U[36][oc_count][in_c] from w (OC,C,3,3) rows oc0.. (U = G g G^T)
 *   input:   V[36][ldv] for tiles t0..t0+15 of one input channel plane (h x w)
 *            -> v + p*v_stride_p, 16 floats each
 *   output:  y = A^T M A for tiles t0..t0+15 of one output channel: m + p*m_stride_p
 *            holds 16 floats per p; epilogue act(y + bias) + res, stored into the
 *            out plane (out_h x out_w), res (same shape) or NULL. */
/* Rows [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of one image
 * into panel[kc][ldp] (row-major, ldp >= nc; columns past nc untouched). */
typedef void (*im2col_rows_fn)(const conv_geom *g, const float *image, int k0, int kc, long n0,
                               int nc, float *panel, long ldp);

typedef struct wino_tiles {
    int tiles_w, tile_count;       /* tiles per row, tiles in the image */
    int h, w;                      /* input plane (= output plane for 3x3 s1 p1) */
} wino_tiles;
typedef void (*wino_weight_fn)(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                               float *u);
typedef void (*wino_input_fn)(const wino_tiles *wt, const float *plane, int t0, float *v,
                              long v_stride_p);
typedef void (*wino_output_fn)(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                               float bias, cspresnet_act act, const float *res, float *out);

/* The mean of x[0..count) (ESE's global average pool), accumulated in double. */
typedef float (*mean_fn)(const float *x, long count);

typedef struct kernel_table {
    const char *isa;                    /* "ref", "avx2", "avx512" */
    im2col_panel_fn im2col_panel;       /* reference path (isa "ref") */
    gemm_microkernel_fn gemm_micro;
    /* fast path (NULL gemm in the "ref" table: conv2d uses the reference path) */
    int mr, nr;                         /* gemm tile */
    gemm_fn gemm;
    bias_act_fn bias_act;
    im2col_rows_fn im2col_rows;         /* im2col packing into a row-major panel */
    mean_fn mean;                       /* plane mean (every table has one) */
    wino_weight_fn wino_weight;         /* NULL: no Winograd on this ISA */
    wino_input_fn wino_input;
    wino_output_fn wino_output;
} kernel_table;

/* Reference kernels. */
void f32_im2col_panel__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                           int nc, float *panel);
void f32_gemm_4x16__ref(int kc, const float *a, long lda, const float *strip, float *c,
                        long ldc, int mr, int nr, int accumulate);

/* Portable fast-path kernels (kernels/generic). */
void f32_gemm_4x16__generic(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                            long ldc, int mr, int nr, int accumulate);
void f32_bias_act__generic(float *x, long count, float bias, cspresnet_act act, const float *res);
void f32_winograd43_weight__generic(const float *w, int in_c, int oc0, int oc_count,
                                    long u_stride_p, float *u);
void f32_winograd43_input__generic(const wino_tiles *wt, const float *plane, int t0, float *v,
                                   long v_stride_p);
void f32_winograd43_output__generic(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                    float bias, cspresnet_act act, const float *res, float *out);
/* Packs rows [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of one
 * image into panel[kc][ldp] (row-major, ldp >= nc; columns past nc untouched). */
void f32_im2col_rows__generic(const conv_geom *g, const float *image, int k0, int kc, long n0,
                              int nc, float *panel, long ldp);

/* AVX2 + FMA (kernels/x86, compiled for that target only). */
void f32_gemm_6x16__avx2(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                         long ldc, int mr, int nr, int accumulate);
void f32_bias_act__avx2(float *x, long count, float bias, cspresnet_act act, const float *res);
void f32_winograd43_input__avx2(const wino_tiles *wt, const float *plane, int t0, float *v, long v_stride_p);
void f32_winograd43_output__avx2(const wino_tiles *wt, const float *m, long m_stride_p, int t0, float bias,
                                 cspresnet_act act, const float *res, float *out);

/* AVX-512F (kernels/x86). */
void f32_gemm_8x32__avx512(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                           long ldc, int mr, int nr, int accumulate);
void f32_bias_act__avx512(float *x, long count, float bias, cspresnet_act act, const float *res);
float f32_mean__avx512(const float *x, long count);
void f32_winograd43_input__avx512(const wino_tiles *wt, const float *plane, int t0, float *v,
                                  long v_stride_p);
void f32_winograd43_output__avx512(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                   float bias, cspresnet_act act, const float *res, float *out);
void f32_im2col_rows__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp);
void f32_winograd43_weight__avx512(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                                   float *u);

/* The table for this CPU, honouring CSPRESNET_ISA=ref|avx2|avx512 (the caller reads
 * the environment and passes its value, or NULL). Unknown or unavailable names fall
 * back to the best available; *chosen_isa tells which. */
const kernel_table *kernel_table_select(const char *requested_isa);

#endif
