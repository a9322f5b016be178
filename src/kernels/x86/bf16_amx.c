/*
 * bf16_amx.c - the bf16 GEMM tile on AMX (TDPBF16PS: a 16 x 16 fp32 tile += 16 x 32
 * bf16 times 32 x 16 bf16 in one instruction), 32 x 32 outputs a call as 2 x 2 tiles.
 *
 * The operands are the layouts of kernels/lowp_kernels.h unchanged: A rows of bf16
 * pairs are AMX's A rows, and B's pair rows (x[2p][j], x[2p+1][j]) are exactly AMX's
 * "VNNI" B layout. The tile reads whole 16-pair K steps and whole 16-row halves of A,
 * so its config asks callers (bf16_gemm_config k_align, m_align) for A rows padded to
 * 16 pairs with zeros and to 32 rows, and B rows zeroed past kp up to the step; B's
 * columns past nr are read but only lanes < nr are stored. Full 32 x 32 tiles load and
 * store c directly; edge tiles go through a 32 x 32 buffer on the stack.
 *
 * Tile registers need a per-thread configuration (LDTILECFG) and, on Linux, a one-time
 * permission from the kernel (select.c asks for it before choosing this tile). The
 * configuration is loaded on a thread's first call and kept: every call uses the same
 * one (tiles 0-3 C, 4-5 A, 6-7 B, all 16 rows x 64 bytes), so the thread-local flag is
 * this file's only state. Compiled for the AMX target by the pragma below.
 */
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 11 || defined(__clang__))
#include <immintrin.h>
#include <string.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f"))), apply_to = function)
#else
#pragma GCC target("amx-tile,amx-bf16,avx512f")
#endif

#include "kernels/lowp_kernels.h"

typedef struct amx_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tilecfg;

/* initial-exec: a plain %fs-relative load, no __tls_get_addr (nor a dependency on the
 * dynamic loader) in the shared library */
static _Thread_local int amx_configured __attribute__((tls_model("initial-exec")));

static void amx_configure(void)
{
    amx_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    amx_configured = 1;
}

/* 2 x 2 tiles of C; per K step of 16 pairs two A halves and two B halves, each run of
 * the tap form read from its own base. */
void bf16_taps_32x32__amx(int ntaps, const long *tap_off, int kpt, const uint16_t *a, long lda, const uint16_t *b,
                          long ldb, float *c, long ldc, int mr, int nr, int accumulate)
{
    if (!amx_configured)
        amx_configure();
    float buf[32 * 32] __attribute__((aligned(64)));
    const int full = mr == 32 && nr == 32;
    float *cc = full ? c : buf;
    const long ldcc = full ? ldc : 32;
    if (!full && accumulate) {
        memset(buf, 0, sizeof buf);
        for (int i = 0; i < mr; i++)
            memcpy(buf + i * 32, c + i * ldc, sizeof(float) * (size_t)nr);
    }
    if (accumulate) {
        _tile_loadd(0, cc, ldcc * 4);
        _tile_loadd(1, cc + 16, ldcc * 4);
        _tile_loadd(2, cc + 16 * ldcc, ldcc * 4);
        _tile_loadd(3, cc + 16 * ldcc + 16, ldcc * 4);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const long sa = lda * 4, sb = ldb * 4;
    for (int t = 0; t < ntaps; t++) {
        const uint16_t *at = a + 2L * t * kpt, *bt = b + tap_off[t];
        for (int p = 0; p < kpt; p += 16) {
            _tile_loadd(4, at + 2L * p, sa);
            _tile_loadd(5, at + 2L * (16 * lda + p), sa);
            _tile_loadd(6, bt + 2L * p * ldb, sb);
            _tile_loadd(7, bt + 2L * p * ldb + 32, sb);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, cc, ldcc * 4);
    _tile_stored(1, cc + 16, ldcc * 4);
    _tile_stored(2, cc + 16 * ldcc, ldcc * 4);
    _tile_stored(3, cc + 16 * ldcc + 16, ldcc * 4);
    if (!full)
        for (int i = 0; i < mr; i++)
            memcpy(c + i * ldc, buf + i * 32, sizeof(float) * (size_t)nr);
}

/* The plain GEMM is the tap form with one run at offset 0. */
void bf16_gemm_32x32__amx(int kp, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc,
                          int mr, int nr, int accumulate)
{
    static const long zero = 0;
    bf16_taps_32x32__amx(1, &zero, kp, a, lda, b, ldb, c, ldc, mr, nr, accumulate);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#endif
