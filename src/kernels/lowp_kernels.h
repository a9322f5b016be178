/*
 * lowp_kernels.h - bf16 and int8 GEMM tiles and their packing, for inference at lower
 * precision: fp32 activations are converted while packing, weights once at prepare,
 * and every product is accumulated in fp32 (bf16) or int32 (int8).
 *
 * Layouts follow the dot-product instructions they feed:
 *   bf16: K taken in pairs. A (weights) is mr rows of kp pairs (2*kp bf16, row stride
 *         lda pairs); B (activations) is kp rows of ldb pairs, pair j of row p holding
 *         (x[2p][j], x[2p+1][j]). vdpbf16ps adds, per 32-bit lane, the odd product and
 *         then the even one to the fp32 accumulator, each exact product rounded once
 *         (round to nearest even, denormal inputs read as zero, denormal results
 *         flushed to zero); the reference does the same, so fast and reference tiles
 *         agree bit for bit.
 *   int8: K taken in quads. A (weights) is mr rows of kq quads of s8; B (activations)
 *         is kq rows of ldb quads of u8, u8 = the activation's quantized value + its
 *         zero point z (vpdpbusd multiplies u8 by s8; z = 128 is the symmetric s8 range,
 *         other z put the range where the activations are). The tile sums in int32
 *         (exact: |acc| < 2^31 for K <= 2^16), then writes c = (acc - comp[i]) *
 *         scale[i] in fp32, comp[i] = z * sum_k a[i][k] removing the shift, scale[i] =
 *         weight scale of row i x activation scale.
 *
 * Kernels are pure tiles (no allocation, no threads, no globals); each fast one has
 * the reference twin of the same signature in kernels/ref/lowp_ref.c, the oracle of
 * tests/c/test_lowp_kernels.c.
 */
#ifndef CSPRESNET_LOWP_KERNELS_H
#define CSPRESNET_LOWP_KERNELS_H

#include <stdint.h>

#include "kernels/kernels.h"

/* f32 -> bf16 rounded to nearest even (NaN stays a quiet NaN; denormals flush to
 * signed zero, as vcvtne2ps2bf16 does), and back (exact). */
uint16_t bf16_from_f32(float x);
float f32_from_bf16(uint16_t h);

/* c[i*ldc + j] (+)= sum_{p < kp} a[i][2p+1]*b[p][j][1] + a[i][2p]*b[p][j][0] for
 * i < mr, j < nr (tile limits per kernel). accumulate = 0 overwrites c. */
typedef void (*bf16_gemm_fn)(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc,
                             int mr, int nr, int accumulate);
/* Rows [0, kc) x columns [0, nc) of a row-major f32 block x (row stride ldx) into pairs:
 * out[(p*ldo + j)*2 + t] = bf16(x[(2p+t)*ldx + j]), zero for the row past an odd kc.
 * Columns nc..ldo-1 are untouched. */
typedef void (*bf16_pack_fn)(const float *x, long ldx, int kc, int nc, uint16_t *out, long ldo);

/* The same sums with B gathered per K step, for a conv read straight from a bf16 pair
 * image (ops/conv2d_bf16_taps.c): K is ntaps runs of kpt pairs (kpt a multiple of 16);
 * pair p of run t of column j is b[tap_off[t] + (p*ldb + j)*2 + (0|1)], A row i holds
 * the runs back to back (lda >= ntaps*kpt pairs). accumulate = 0 overwrites c. */
typedef void (*bf16_taps_fn)(int ntaps, const long *tap_off, int kpt, const uint16_t *a, long lda,
                             const uint16_t *b, long ldb, float *c, long ldc, int mr, int nr, int accumulate);

/* c[i*ldc + j] = (sum_{q < kq, t < 4} (int)b[(q*ldb + j)*4 + t] * (int)a[i*lda*4 + 4q + t]
 *                 - comp[i]) * scale[i], for i < mr, j < nr. */
typedef void (*u8s8_gemm_fn)(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                             const float *scale, float *c, long ldc, int mr, int nr);
/* Rows [0, kc) x columns [0, nc) of x into quads of u8: out[(q*ldo + j)*4 + t] =
 * clamp(rne(x[(4q+t)*ldx + j] * inv_scale) + zero, 0, 255) (NaN -> zero, i.e. 0), zero
 * for the rows past kc; zero in 0..255. */
typedef void (*u8_pack_fn)(const float *x, long ldx, int kc, int nc, float inv_scale, int zero, uint8_t *out,
                           long ldo);
/* The same with B gathered per K step, for a conv read straight from a u8 quad image
 * (ops/conv2d_int8_taps.c): K is ntaps runs of kqt quads (kqt a multiple of k_align); quad
 * q of run t of column j is b[tap_off[t] + (q*ldb + j)*4 + (0..3)], A row i holds the
 * runs back to back (lda >= ntaps*kqt quads); the int32 sum runs over every run, then
 * the dequantizing epilogue. */
typedef void (*u8s8_taps_fn)(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                             long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr, int nr);
/* Quad x of dst = quad x*stride of src, for x < n (the tap form's stride-2 row
 * expansion): reads src quads up to (n-1)*stride only. */
typedef void (*u8_gather_fn)(const uint8_t *src, int stride, long n, uint8_t *dst);

/* Reference kernels (any CPU), tile limit 8 x 32 so they stand in for any fast tile. */
void bf16_gemm_8x32__ref(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc,
                         int mr, int nr, int accumulate);
void bf16_pack_pairs__ref(const float *x, long ldx, int kc, int nc, uint16_t *out, long ldo);
void bf16_taps_32x32__ref(int ntaps, const long *tap_off, int kpt, const uint16_t *a, long lda, const uint16_t *b,
                          long ldb, float *c, long ldc, int mr, int nr, int accumulate);
void u8s8_gemm_8x32__ref(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                         const float *scale, float *c, long ldc, int mr, int nr);
void u8_pack_quads__ref(const float *x, long ldx, int kc, int nc, float inv_scale, int zero, uint8_t *out,
                        long ldo);
void u8_gather_quads__ref(const uint8_t *src, int stride, long n, uint8_t *dst);
void u8s8_taps_32x32__ref(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                          long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr, int nr);

/* AMX-BF16 (kernels/x86/bf16_amx.c): 32 x 32, k_align 16, m_align 32, not bit-exact
 * (the tile sums a pair's products in its own order). */
void bf16_gemm_32x32__amx(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc,
                          int mr, int nr, int accumulate);
void bf16_taps_32x32__amx(int ntaps, const long *tap_off, int kpt, const uint16_t *a, long lda, const uint16_t *b,
                          long ldb, float *c, long ldc, int mr, int nr, int accumulate);
/* AMX-INT8 (kernels/x86/i8_amx.c): 32 x 32, k_align 16, m_align 32, bit-exact (integer
 * sums). */
void u8s8_gemm_32x32__amx(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                          const float *scale, float *c, long ldc, int mr, int nr);
void u8s8_taps_32x32__amx(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                          long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr, int nr);

/* AVX-512 BF16 (kernels/x86/bf16_avx512.c) and AVX-512 VNNI (kernels/x86/i8_avx512.c). */
void bf16_gemm_8x32__avx512bf16(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c,
                                long ldc, int mr, int nr, int accumulate);
void bf16_pack_pairs__avx512bf16(const float *x, long ldx, int kc, int nc, uint16_t *out, long ldo);
void u8s8_gemm_8x32__avx512vnni(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                                const float *scale, float *c, long ldc, int mr, int nr);
void u8s8_taps_32x32__avx512vnni(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                                 long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr,
                                 int nr);
void u8_pack_quads__avx512(const float *x, long ldx, int kc, int nc, float inv_scale, int zero, uint8_t *out,
                           long ldo);
void u8_gather_quads__avx512(const uint8_t *src, int stride, long n, uint8_t *dst);

/* The bf16 and int8 families: a GEMM tile and the packing that feeds it. Chosen with
 * the kernel set (kernels.h, select.c): the AVX-512 BF16 / VNNI configs where the CPU
 * has them, the reference ones (any CPU, the oracle) everywhere else. */
struct bf16_gemm_config {
    const char *name;       /* "bf16-gemm-8x32-avx512bf16" */
    int mr, nr;
    bf16_gemm_fn gemm;
    bf16_pack_fn pack;
    /* What the tile reads past its arguments (1, 1: nothing): A rows hold lda pairs, a
     * multiple of k_align, zero past the data; A has a multiple of m_align rows (zero
     * rows past the data), of which the tile may read up to mr past the row it is
     * given; B rows [kp, kp rounded up to k_align) are zero and columns up to nr exist.
     * kp is passed rounded up to k_align. */
    int k_align, m_align;
    int exact;              /* 1: the reference tile's bits; 0: the fp32 accumulation bound */
    /* The tap form for convs read from a pair image (32 x 32 tiles, A rows padded to
     * m_align, B columns read up to 32), where the tile is fast enough that a direct
     * 3x3 conv beats fp32 Winograd (AMX); NULL elsewhere. */
    bf16_taps_fn taps;
};

struct u8s8_gemm_config {
    const char *name;       /* "u8s8-gemm-8x32-avx512vnni" */
    int mr, nr;
    u8s8_gemm_fn gemm;
    u8_pack_fn pack;
    /* What the tile reads past its arguments (1, 1: nothing), as in bf16_gemm_config
     * with quads for pairs: A rows of lda quads, a multiple of k_align, zero past the
     * data, a multiple of m_align rows; B rows up to kq rounded up to k_align and columns
     * up to nr exist (any value: they meet zero weights or unstored lanes). kq is passed
     * rounded up to k_align. Every int8 config is exact (integer sums). */
    int k_align, m_align;
    /* The tap form for 3x3 convs read from a quad image (32 x 32 tiles, B columns read
     * up to 32), where the tile is fast enough to beat fp32 Winograd and im2col (AMX,
     * AVX-512 VNNI: docs/ARCHITECTURE.md, "int8"); NULL elsewhere. */
    u8s8_taps_fn taps;
    u8_gather_fn gather;    /* every config */
};

extern const bf16_gemm_config bf16_gemm_config_ref;
extern const u8s8_gemm_config u8s8_gemm_config_ref;

#endif
