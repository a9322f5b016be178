/*
 * kernels.h - the f32 compute kernels, grouped in one small config per op family, and
 * the kernel set that picks one config of each family for a CPU.
 *
 * Kernels are pure, single-threaded tiles: they never allocate, never start threads,
 * never read globals. The op layer (src/ops) validates shapes, sizes workspace and
 * splits the work across threads, then calls the kernels through the configs of the
 * kernel_set chosen once per context or trainer (select.c).
 *
 * Naming: functions <dtype>_<what>_<tile>__<isa> (f32_gemm_8x32__avx512), configs
 * "<dtype>-<family>-<tile>-<isa>" (f32-gemm-8x32-avx512). Every family has a reference
 * config whose kernels have the same signatures as the fast ones (kernels/ref, plain
 * C); it stays as the oracle that tests/c/test_core_kernels.c compares every fast
 * kernel against.
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

/* ---- The reference conv path (isa "ref": ops/conv2d.c, ops/conv2d_backward_ref.c) ----
 * The GEMM view of a conv: C[M x N] = A[M x K] * B[K x N], M = out_c,
 * K = in_c*k*k, N = out_h*out_w, A the OIHW weights (row-major, lda = K), B the
 * implicit im2col of the input image, C the NCHW output image (ldc = N). */
#define GEMM_MR 4    /* rows of a micro-tile */
#define GEMM_NR 16   /* columns of a micro-tile; B panels are NR wide */

/* Packs rows [k0, k0+kc) and columns [n0, n0+nc) of the implicit im2col matrix of
 * `image` (in_c x in_h x in_w) into `panel` as ceil(nc/NR) strips of kc x NR floats,
 * zero-filled past nc. panel holds ceil(nc/NR)*NR*kc floats. */
void f32_im2col_panel__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                           int nc, float *panel);
/* c[i*ldc + j] (+)= sum_k a[i*lda + k] * strip[k*NR + j] for i < mr <= MR, j < nr <= NR.
 * accumulate = 0 overwrites c. */
void f32_gemm_4x16__ref(int kc, const float *a, long lda, const float *strip, float *c,
                        long ldc, int mr, int nr, int accumulate);

/* ---- f32 GEMM tile ----
 * c[i*ldc + j] (+)= sum_k a[i*lda + k] * b[k*ldb + j] for i < mr <= config.mr,
 * j < nr <= config.nr. b is any row-major block (a packed panel, the input itself for
 * a 1x1 conv, a Winograd V matrix); columns >= nr are never read or written.
 * accumulate = 0 overwrites c. */
typedef void (*gemm_fn)(int kc, const float *a, long lda, const float *b, long ldb, float *c,
                        long ldc, int mr, int nr, int accumulate);
typedef struct f32_gemm_config {
    const char *name;       /* "f32-gemm-8x32-avx512" */
    int mr, nr;             /* the tile: callers split M by mr and N by nr */
    gemm_fn fn;
} f32_gemm_config;

/* ---- f32 conv (fast path: im2col packing and the epilogue) ---- */
/* Rows [k0, k0+kc) x columns [n0, n0+nc) of the implicit im2col matrix of one image
 * into panel[kc][ldp] (row-major, ldp >= nc; columns past nc untouched). Row r is
 * (channel ci, ky, kx), r = (ci*k + ky)*k + kx; column j is output pixel (oy, ox),
 * j = oy*out_w + ox; the element is input pixel (ci, oy*stride - pad + ky,
 * ox*stride - pad + kx), or 0 outside the image. */
typedef void (*im2col_rows_fn)(const conv_geom *g, const float *image, int k0, int kc, long n0,
                               int nc, float *panel, long ldp);
/* x[i] = act(x[i] + bias) + (res ? res[i] : 0) for i < count (the conv epilogue on
 * one output-channel row). Any activation; the fast ones are vectorised. */
typedef void (*bias_act_fn)(float *x, long count, float bias, cspresnet_act act, const float *res);
typedef struct f32_conv_config {
    const char *name;       /* "f32-conv-avx512" */
    im2col_rows_fn im2col_rows;
    bias_act_fn bias_act;
} f32_conv_config;

/* ---- f32 Winograd F(4,3) for a 3x3 stride-1 pad-1 conv (NCHW), 16 tiles a call ----
 * A tile t covers output rows 4*ty..4*ty+3 and columns 4*tx..4*tx+3 of one image;
 * tiles are numbered ty * tiles_w + tx; lanes past tile_count are zero (input) or
 * not stored (output). p = 0..35 numbers the 6x6 transform points.
 *   weight: u[p*u_stride_p + (oc-oc0)*in_c + ic] = (G g G^T)[p] for w (OC,C,3,3)
 *           rows oc0..oc0+oc_count-1
 *   input:  v[p*v_stride_p + l] = (B^T d B)[p] of tile t0+l of one input plane
 *           (h x w), d its 6x6 patch from (4ty-1, 4tx-1), zero outside the plane
 *   output: y = A^T M A of tile t0+l, M[p] = m[p*m_stride_p + l]; stores
 *           act(y + bias) + res into the out plane (h x w; res the same shape or
 *           NULL), pixels past the plane's edges dropped. */
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
typedef struct f32_winograd_config {
    const char *name;       /* "f32-winograd43-avx512" */
    wino_weight_fn weight;
    wino_input_fn input;
    wino_output_fn output;
} f32_winograd_config;

/* ---- f32 reductions ---- */
/* The mean of x[0..count) (ESE's global average pool), accumulated in double. */
typedef float (*mean_fn)(const float *x, long count);
/* Max-pool with stride 1 and -inf padding, separable (ops/maxpool.c), with
 * max_nan(m, v) = (v > m || v != v) ? v : m folded in ascending order (so a NaN in
 * the window gives NaN, the last one met): the row pass dst[x] = the max of src[x-r
 * .. x+r] clipped to [0, w) for x < w (dst not aliasing src), and the column pass
 * dst[i] = max_nan(dst[i], src[i]) for i < count. Exact, so every set's bits agree. */
typedef void (*window_max_fn)(const float *src, float *dst, long w, int r);
typedef void (*max_into_fn)(float *dst, const float *src, long count);
/* The DFL expectation of `count` anchors (ops/dfl_decode.c): anchor i has bins values
 * v[b*step + i]; d[i] = sum_b (e_b / S) * proj[b] with e_b = exp(v_b - max_b v_b),
 * S = e_0 + ... + e_{bins-1}, both sums in bin order. The fast exp differs from libm's
 * by ~2e-7 relative. */
typedef void (*dfl_expect_fn)(const float *v, long step, int bins, const float *proj, long count, float *d);
/* dst[i] = src[i] * g for i < count (dst may be src): the squeeze-excitation gates that
 * follow a plane's mean (ops/ese.c, ESEAttn). Exact. */
typedef void (*scale_fn)(const float *src, float g, float *dst, long count);
typedef struct f32_reduce_config {
    const char *name;       /* "f32-reduce-avx512" */
    mean_fn mean;
    scale_fn scale;
    window_max_fn window_max;
    max_into_fn max_into;
    dfl_expect_fn dfl_expect;
} f32_reduce_config;

/* Families declared in their own headers: training (train_kernels.h), bf16 and int8
 * (lowp_kernels.h). */
typedef struct f32_train_config f32_train_config;
typedef struct bf16_gemm_config bf16_gemm_config;
typedef struct u8s8_gemm_config u8s8_gemm_config;

/* One config per family for one CPU: what a context or trainer runs. */
typedef struct kernel_set {
    const char *isa;                      /* "ref", "generic", "avx2", "avx512" */
    const f32_gemm_config *gemm;          /* NULL ("ref"): convs take the reference path */
    const f32_conv_config *conv;          /* set with gemm */
    const f32_winograd_config *winograd;  /* NULL: no Winograd */
    const f32_reduce_config *reduce;      /* every set */
    const f32_train_config *train;        /* every set */
    const bf16_gemm_config *bf16;         /* every set: the fast tile where the CPU has one */
    const u8s8_gemm_config *int8;         /* every set, likewise */
} kernel_set;

/* The set for isa "ref" | "generic" | "avx2" | "avx512", or for NULL or "" the best
 * this CPU runs (from cpuid: avx512, then avx2, then generic). A name the CPU cannot
 * run, or an unknown one, falls back to the best available; the set's isa says which
 * was chosen. Training kernels follow the set: the AVX-512 ones in "avx512", the
 * reference ones in the others. bf16/int8 tiles: AVX-512 BF16 / VNNI in "avx512"
 * where the CPU has them, the reference tiles otherwise. */
const kernel_set *kernel_set_select(const char *isa);

/* The reference config of each family: plain C, the same signatures as the fast
 * kernels, tile limits at least those of any fast config (the oracle). */
extern const f32_gemm_config f32_gemm_config_ref;
extern const f32_conv_config f32_conv_config_ref;
extern const f32_winograd_config f32_winograd_config_ref;
extern const f32_reduce_config f32_reduce_config_ref;

/* Reference kernels (kernels/ref). f32_gemm__ref takes any mr and nr. */
void f32_gemm__ref(int kc, const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                   int mr, int nr, int accumulate);
void f32_im2col_rows__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                          int nc, float *panel, long ldp);
void f32_bias_act__ref(float *x, long count, float bias, cspresnet_act act, const float *res);
void f32_winograd43_weight__ref(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                                float *u);
void f32_winograd43_input__ref(const wino_tiles *wt, const float *plane, int t0, float *v,
                               long v_stride_p);
void f32_winograd43_output__ref(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                float bias, cspresnet_act act, const float *res, float *out);
void f32_scale__ref(const float *src, float g, float *dst, long count);
void f32_window_max__ref(const float *src, float *dst, long w, int r);
void f32_max_into__ref(float *dst, const float *src, long count);
void f32_dfl_expect__ref(const float *v, long step, int bins, const float *proj, long count, float *d);

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
void f32_scale__avx512(const float *src, float g, float *dst, long count);
void f32_window_max__avx512(const float *src, float *dst, long w, int r);
void f32_max_into__avx512(float *dst, const float *src, long count);
void f32_dfl_expect__avx512(const float *v, long step, int bins, const float *proj, long count, float *d);
void f32_winograd43_input__avx512(const wino_tiles *wt, const float *plane, int t0, float *v,
                                  long v_stride_p);
void f32_winograd43_output__avx512(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                   float bias, cspresnet_act act, const float *res, float *out);
void f32_im2col_rows__avx512(const conv_geom *g, const float *image, int k0, int kc, long n0, int nc,
                             float *panel, long ldp);
void f32_winograd43_weight__avx512(const float *w, int in_c, int oc0, int oc_count, long u_stride_p,
                                   float *u);

#endif
