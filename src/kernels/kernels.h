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

typedef struct kernel_table {
    const char *isa;                    /* "ref", later "avx2", "avx512" */
    im2col_panel_fn im2col_panel;
    gemm_microkernel_fn gemm_micro;
} kernel_table;

/* Reference kernels. */
void f32_im2col_panel__ref(const conv_geom *g, const float *image, int k0, int kc, long n0,
                           int nc, float *panel);
void f32_gemm_4x16__ref(int kc, const float *a, long lda, const float *strip, float *c,
                        long ldc, int mr, int nr, int accumulate);

/* The table for this CPU, honouring CSPRESNET_ISA=ref|avx2|avx512 (the caller reads
 * the environment and passes its value, or NULL). Unknown or unavailable names fall
 * back to the best available; *chosen_isa tells which. */
const kernel_table *kernel_table_select(const char *requested_isa);

#endif
