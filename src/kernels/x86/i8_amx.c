/*
 * i8_amx.c - the int8 GEMM tile on AMX (TDPBSUD: a 16 x 16 int32 tile += 16 x 64 s8
 * times 64 x 16 u8 in one instruction), 32 x 32 outputs a call as 2 x 2 tiles, with the
 * dequantizing epilogue of u8s8_gemm_8x32__ref: c = (acc - comp[i]) * scale[i].
 *
 * The operands are the layouts of kernels/lowp_kernels.h unchanged: A rows of s8 quads
 * are AMX's A rows, and B's quad rows (x[4q..4q+3][j]) are AMX's "VNNI" B layout. The
 * tile reads whole 16-quad K steps and whole 16-row halves of A, so its config asks
 * callers (u8s8_gemm_config k_align, m_align) for A rows padded to 16 quads with zeros
 * and to 32 rows; B rows past kq up to the step and B columns past nr are read, and
 * only multiply zero weights or land in lanes that are not stored. Integer sums are
 * exact, so the result is the reference tile's bits whatever the summation order.
 *
 * Tile registers need a per-thread configuration (LDTILECFG) and, on Linux, a one-time
 * permission from the kernel (select.c asks for it before choosing this tile). The
 * configuration is the one bf16_amx.c loads (tiles 0-3 C, 4-5 A, 6-7 B, all 16 rows x
 * 64 bytes), loaded on a thread's first call here and kept; the thread-local flag is
 * this file's only state. Compiled for the AMX target by the pragma below.
 */
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#include <immintrin.h>
#include <string.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-int8,avx512f"))), apply_to = function)
#else
#pragma GCC target("amx-tile,amx-int8,avx512f")
#endif

#include "kernels/lowp_kernels.h"
#include "kernels/x86/avx512_math.h"

typedef struct amx_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

/* initial-exec: a plain %fs-relative load, no __tls_get_addr in the shared library */
static _Thread_local int amx_i8_configured __attribute__((tls_model("initial-exec")));

static void amx_i8_configure(void)
{
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    amx_i8_configured = 1;
}

/* 2 x 2 int32 tiles; per K step of 16 quads two A halves and two B halves, each run of
 * the tap form read from its own base; then the sums through a 32 x 32 buffer into the
 * dequantized c rows. */
void u8s8_taps_32x32__amx(int ntaps, const long *tap_off, int kqt, const int8_t *a, long lda, const uint8_t *b,
                          long ldb, const int32_t *comp, const float *scale, float *c, long ldc, int mr, int nr)
{
    if (!amx_i8_configured)
        amx_i8_configure();
    int32_t acc[32 * 32] __attribute__((aligned(64)));
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const long sa = lda * 4, sb = ldb * 4;
    for (int t = 0; t < ntaps; t++) {
        const int8_t *at = a + 4L * t * kqt;
        const uint8_t *bt = b + tap_off[t];
        for (int q = 0; q < kqt; q += 16) {
            _tile_loadd(4, at + 4L * q, sa);
            _tile_loadd(5, at + 4L * (16 * lda + q), sa);
            _tile_loadd(6, bt + 4L * q * ldb, sb);
            _tile_loadd(7, bt + 4L * q * ldb + 64, sb);
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
    }
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    _tile_stored(2, acc + 16 * 32, 128);
    _tile_stored(3, acc + 16 * 32 + 16, 128);
    __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    for (int i = 0; i < mr; i++) {
        __m512i z = _mm512_set1_epi32(comp[i]);
        __m512 s = _mm512_set1_ps(scale[i]);
        __m512i v0 = _mm512_load_si512(acc + i * 32), v1 = _mm512_load_si512(acc + i * 32 + 16);
        _mm512_mask_storeu_ps(c + (long)i * ldc, m0, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v0, z)), s));
        _mm512_mask_storeu_ps(c + (long)i * ldc + 16, m1,
                              _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v1, z)), s));
    }
}

/* The plain GEMM is the tap form with one run at offset 0. */
void u8s8_gemm_32x32__amx(int kq, const int8_t *a, long lda, const uint8_t *b, long ldb, const int32_t *comp,
                          const float *scale, float *c, long ldc, int mr, int nr)
{
    static const long zero = 0;
    u8s8_taps_32x32__amx(1, &zero, kq, a, lda, b, ldb, comp, scale, c, ldc, mr, nr);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
