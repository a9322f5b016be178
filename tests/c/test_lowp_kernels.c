/*
 * test_lowp_kernels.c - the bf16 and int8 kernels (kernels/lowp_kernels.h): the
 * reference kernels against oracles written here (rounding from double arithmetic,
 * integer sums), then every fast kernel this CPU has against its reference twin, bit for
 * bit, on random odd shapes. Prints the ISAs tested and the harness's closing line.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/lowp_kernels.h"

static int rint_in(int lo, int hi) { return rng_int(lo, hi); }
static float runi(float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(); }
static uint64_t rnd(void) { return rng_next(); }

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* bf16 rounding from first principles: the nearest of the two bf16 neighbours in
 * double arithmetic, ties to the even one. */
static uint16_t bf16_oracle(float x)
{
    if (isnan(x))
        return (uint16_t)((bits(x) >> 16) | 0x40);
    if (isinf(x))
        return (uint16_t)(bits(x) >> 16);
    if (fpclassify(x) == FP_SUBNORMAL || x == 0.0f)
        return (uint16_t)((bits(x) >> 16) & 0x8000);
    uint16_t lo = (uint16_t)(bits(x) >> 16), hi = (uint16_t)(lo + 1);
    double dl = fabs((double)x - (double)f32_from_bf16(lo)), dh = fabs((double)f32_from_bf16(hi) - (double)x);
    if (isinf(f32_from_bf16(hi)))   /* past the largest finite bf16: compare with 2^128 */
        dh = fabs(ldexp(1.0, 128) * (x < 0 ? -1 : 1) - (double)x);
    if (dl < dh || (dl == dh && (lo & 1) == 0))
        return lo;
    return hi;
}

static void test_bf16_rounding(void)
{
    float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 1.00390625f /* 1 + 2^-8: a tie, to even */, 1.01171875f,
                       3.4028235e38f, -3.4028235e38f, 1e-40f, -1e-40f, 1.17549435e-38f, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        CHECK(bf16_from_f32(special[i]) == bf16_oracle(special[i]), "bf16(%a) = %04x, want %04x", special[i],
              bf16_from_f32(special[i]), bf16_oracle(special[i]));
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)rnd();
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x))
            continue;
        bad += bf16_from_f32(x) != bf16_oracle(x);
    }
    CHECK(bad == 0, "%d of 200000 random floats round differently from the oracle", bad);
    CHECK(isnan(f32_from_bf16(bf16_from_f32(NAN))), "NaN must stay NaN");
}

static void fill(float *x, long n, float lo, float hi)
{
    for (long i = 0; i < n; i++)
        x[i] = runi(lo, hi);
}

/* The reference bf16 tile against double sums of the same bf16 operands. */
static void test_bf16_gemm_ref(void)
{
    for (int t = 0; t < 40; t++) {
        int mr = rint_in(1, 8), nr = rint_in(1, 32), kp = rint_in(1, 200);
        long lda = kp + rint_in(0, 3), ldb = nr + rint_in(0, 5), ldc = nr + rint_in(0, 3);
        uint16_t *a = calloc((size_t)(mr * lda * 2), 2), *b = calloc((size_t)(kp * ldb * 2), 2);
        float *c = calloc((size_t)(mr * ldc), 4);
        for (long i = 0; i < mr * lda * 2; i++)
            a[i] = bf16_from_f32(runi(-0.3f, 0.3f));
        for (long i = 0; i < kp * ldb * 2; i++)
            b[i] = bf16_from_f32(runi(-2.0f, 2.0f));
        bf16_gemm_8x32__ref(kp, a, lda, b, ldb, c, ldc, mr, nr, 0);
        double worst = 0;
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) {
                double s = 0, mag = 0;
                for (int p = 0; p < 2 * kp; p++) {
                    double v = (double)f32_from_bf16(a[i * lda * 2 + p]) * f32_from_bf16(b[((p / 2) * ldb + j) * 2 + p % 2]);
                    s += v;
                    mag += fabs(v);
                }
                double err = fabs(c[i * ldc + j] - s) / (mag * 2 * kp * 6e-8 + 1e-30);
                worst = err > worst ? err : worst;
            }
        CHECK(worst <= 1.0, "bf16 ref %dx%d kp %d: error %.3g of the fp32 accumulation bound", mr, nr, kp, worst);
        free(a), free(b), free(c);
    }
}

static void test_int8_ref(void)
{
    for (int t = 0; t < 40; t++) {
        int mr = rint_in(1, 8), nr = rint_in(1, 32), kq = rint_in(1, 300);
        long lda = kq + rint_in(0, 2), ldb = nr + rint_in(0, 4), ldc = nr + rint_in(0, 3);
        int8_t *a = malloc((size_t)(mr * lda * 4));
        uint8_t *b = malloc((size_t)(kq * ldb * 4));
        int32_t comp[8];
        float scale[8], *c = calloc((size_t)(mr * ldc), 4);
        for (long i = 0; i < mr * lda * 4; i++)
            a[i] = (int8_t)rint_in(-128, 127);
        for (long i = 0; i < kq * ldb * 4; i++)
            b[i] = (uint8_t)rint_in(0, 255);
        for (int i = 0; i < mr; i++) {
            comp[i] = 0;
            for (int k = 0; k < 4 * kq; k++)
                comp[i] += 128 * a[i * lda * 4 + k];
            scale[i] = runi(1e-4f, 1e-2f);
        }
        u8s8_gemm_8x32__ref(kq, a, lda, b, ldb, comp, scale, c, ldc, mr, nr);
        int bad = 0;
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) {
                int64_t s = 0;   /* s8 activations times s8 weights, in 64 bits */
                for (int k = 0; k < 4 * kq; k++)
                    s += (int64_t)((int)b[((k / 4) * ldb + j) * 4 + k % 4] - 128) * a[i * lda * 4 + k];
                bad += bits(c[i * ldc + j]) != bits((float)(int32_t)s * scale[i]);
            }
        CHECK(bad == 0, "int8 ref %dx%d kq %d: %d entries differ from the integer sum", mr, nr, kq, bad);
        free(a), free(b), free(c);
    }
}

static void test_packs_ref(void)
{
    float x[6 * 5];
    fill(x, 30, -3, 3);
    x[7] = NAN;
    x[8] = 1e30f;
    x[9] = -1e30f;
    x[10] = 2.5f;   /* * inv 1: a tie, to even (2) */
    x[11] = -3.5f;  /* to -4 */
    uint8_t q[2 * 5 * 4];
    u8_pack_quads__ref(x, 5, 6, 5, 1.0f, 128, q, 5);
    /* x[7..9] are row 1 (quad 0, t = 1), columns 2..4 */
    CHECK(q[(0 * 5 + 2) * 4 + 1] == 128, "NaN quantizes to the zero point, got %u", q[(0 * 5 + 2) * 4 + 1]);
    CHECK(q[(0 * 5 + 3) * 4 + 1] == 255 && q[(0 * 5 + 4) * 4 + 1] == 0, "saturation");
    CHECK(q[(0 * 5 + 0) * 4 + 2] == 130 && q[(0 * 5 + 1) * 4 + 2] == 124, "ties to even: %u %u", q[2], q[6]);
    CHECK(q[(1 * 5 + 0) * 4 + 2] == 128 && q[(1 * 5 + 0) * 4 + 3] == 128, "rows past kc are the zero point");
    u8_pack_quads__ref(x, 5, 6, 5, 1.0f, 40, q, 5);   /* an asymmetric range: -40..215 */
    CHECK(q[(0 * 5 + 2) * 4 + 1] == 40 && q[(1 * 5 + 0) * 4 + 3] == 40, "zero point 40: NaN and rows past kc");
    CHECK(q[(0 * 5 + 3) * 4 + 1] == 255 && q[(0 * 5 + 4) * 4 + 1] == 0, "zero point 40: saturation");
    CHECK(q[(0 * 5 + 0) * 4 + 2] == 42 && q[(0 * 5 + 1) * 4 + 2] == 36, "zero point 40: %u %u", q[2], q[6]);
    uint16_t h[3 * 5 * 2];
    bf16_pack_pairs__ref(x, 5, 5, 5, h, 5);
    CHECK(h[(2 * 5 + 3) * 2 + 0] == bf16_from_f32(x[4 * 5 + 3]) && h[(2 * 5 + 3) * 2 + 1] == 0,
          "the pair past an odd kc is zero");
    CHECK(h[(0 * 5 + 1) * 2 + 1] == bf16_from_f32(x[1 * 5 + 1]), "pair layout");
}

/* One u8s8 GEMM of the fast tile against the reference, operands padded as the config
 * asks (lowp_kernels.h): bit for bit (integer sums). */
static void test_fast_int8_gemm(const u8s8_gemm_config *fast, int kq, long ldb, long ldc)
{
    int mr = rint_in(1, fast->mr), nr = rint_in(1, fast->nr);
    long la = (kq + rint_in(0, 2) + fast->k_align - 1) / fast->k_align * fast->k_align;
    int kqa = (kq + fast->k_align - 1) / fast->k_align * fast->k_align;
    long lb = ldb > fast->nr ? ldb : fast->nr, rows = mr + fast->m_align + fast->mr, lc = ldc > nr ? ldc : nr;
    int8_t *a = calloc((size_t)(rows * la * 4), 1);
    uint8_t *b = malloc((size_t)(kqa * lb * 4));
    float *c0 = malloc((size_t)(mr * lc) * 4), *c1 = malloc((size_t)(mr * lc) * 4), scale[32];
    int32_t comp[32];
    for (long i = 0; i < mr; i++)
        for (long k = 0; k < 4 * kq; k++)
            a[i * la * 4 + k] = (int8_t)rint_in(-128, 127);
    for (long i = 0; i < kqa * lb * 4; i++)
        b[i] = (uint8_t)rint_in(0, 255);
    for (int i = 0; i < mr; i++)
        comp[i] = rint_in(-1000000, 1000000), scale[i] = runi(1e-5f, 1e-2f);
    fill(c0, mr * lc, -1, 1);
    memcpy(c1, c0, (size_t)(mr * lc) * 4);
    u8s8_gemm_config_ref.gemm(kq, a, la, b, lb, comp, scale, c0, lc, mr, nr);
    fast->gemm(kqa, a, la, b, lb, comp, scale, c1, lc, mr, nr);
    CHECK(memcmp(c0, c1, (size_t)(mr * lc) * 4) == 0, "u8s8 gemm %s %dx%d kq %d", fast->name, mr, nr, kq);
    free(a), free(b), free(c0), free(c1);
}

/* The tap form: the reference against an integer sum over the runs written here, then
 * the fast tile against the reference, bit for bit, on random run counts, offsets and
 * edge tiles (B read from a big random image, as conv2d_int8_taps.c's quad image). */
static void test_int8_taps(const u8s8_gemm_config *fast)
{
    for (int t = 0; t < 40; t++) {
        /* runs of whole K steps: 16 quads on AMX, any count on the VNNI tile */
        int ntaps = rint_in(1, 9), kqt = fast->k_align * rint_in(1, fast->k_align > 1 ? 5 : 80);
        int mr = rint_in(1, 32), nr = rint_in(1, 32);
        long ldb = rint_in(40, 300), lda = (long)ntaps * kqt + 16 * rint_in(0, 1), ldc = nr + rint_in(0, 3);
        long off[9], span = 4 * ldb * kqt + 4 * 64;
        for (int i = 0; i < ntaps; i++)
            off[i] = 4L * rint_in(0, 40);
        int8_t *a = calloc((size_t)(32 * lda * 4), 1);
        uint8_t *b = malloc((size_t)(span + 4 * 40));
        float *c0 = calloc((size_t)(mr * ldc), 4), *c1 = calloc((size_t)(mr * ldc), 4), scale[32];
        int32_t comp[32];
        for (long i = 0; i < mr * lda * 4; i++)
            a[i] = (int8_t)rint_in(-128, 127);
        for (long i = 0; i < span + 4 * 40; i++)
            b[i] = (uint8_t)rint_in(0, 255);
        for (int i = 0; i < mr; i++)
            comp[i] = rint_in(-1000000, 1000000), scale[i] = runi(1e-5f, 1e-2f);
        u8s8_taps_32x32__ref(ntaps, off, kqt, a, lda, b, ldb, comp, scale, c0, ldc, mr, nr);
        int bad = 0;
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++) {
                int64_t sum = 0;
                for (int r = 0; r < ntaps; r++)
                    for (int k = 0; k < 4 * kqt; k++)
                        sum += (int64_t)b[off[r] + ((k / 4) * ldb + j) * 4 + k % 4] * a[i * lda * 4 + r * kqt * 4 + k];
                bad += bits(c0[i * ldc + j]) != bits((float)(int32_t)(sum - comp[i]) * scale[i]);
            }
        CHECK(bad == 0, "u8s8 taps ref %d runs of %d quads %dx%d: %d entries differ from the integer sum", ntaps, kqt,
              mr, nr, bad);
        fast->taps(ntaps, off, kqt, a, lda, b, ldb, comp, scale, c1, ldc, mr, nr);
        CHECK(memcmp(c0, c1, (size_t)(mr * ldc) * 4) == 0, "u8s8 taps %s %d runs of %d quads %dx%d", fast->name, ntaps,
              kqt, mr, nr);
        free(a), free(b), free(c0), free(c1);
    }
}

/* The quad gather against the reference and against the definition, source buffers of
 * exactly (n-1)*stride + 1 quads (the address sanitizer catches a read past them). */
static void test_gather(const u8s8_gemm_config *fast)
{
    for (int t = 0; t < 60; t++) {
        int stride = rint_in(1, 3);
        long n = rint_in(1, 100), ns = (n - 1) * stride + 1;
        uint8_t *src = malloc((size_t)(4 * ns)), *d0 = malloc((size_t)(4 * n)), *d1 = malloc((size_t)(4 * n));
        for (long i = 0; i < 4 * ns; i++)
            src[i] = (uint8_t)rint_in(0, 255);
        u8_gather_quads__ref(src, stride, n, d0);
        fast->gather(src, stride, n, d1);
        long bad = 0;
        for (long x = 0; x < 4 * n; x++)
            bad += d0[x] != src[(x / 4) * stride * 4 + x % 4];
        CHECK(bad == 0, "u8 gather ref stride %d n %ld: %ld bytes off", stride, n, bad);
        CHECK(memcmp(d0, d1, (size_t)(4 * n)) == 0, "u8 gather %s stride %d n %ld", fast->name, stride, n);
        free(src), free(d0), free(d1);
    }
}

static void test_fast(const bf16_gemm_config *fast_bf16, const u8s8_gemm_config *fast_int8)
{
    const bf16_gemm_config *ref_bf16 = &bf16_gemm_config_ref;
    const u8s8_gemm_config *ref_int8 = &u8s8_gemm_config_ref;
    for (int t = 0; t < 60; t++) {
        int kc = rint_in(1, 70), nc = rint_in(1, 70);
        long ldx = nc + rint_in(0, 5), ldo = nc + rint_in(0, 5);
        float *x = malloc((size_t)(kc * ldx) * 4);
        fill(x, kc * ldx, -20, 20);
        if (t % 3 == 0)
            x[rint_in(0, kc * (int)ldx - 1)] = NAN;
        int np = (kc + 1) / 2, nq = (kc + 3) / 4;
        uint16_t *h0 = calloc((size_t)(np * ldo * 2), 2), *h1 = calloc((size_t)(np * ldo * 2), 2);
        uint8_t *q0 = calloc((size_t)(nq * ldo * 4), 1), *q1 = calloc((size_t)(nq * ldo * 4), 1);
        if (fast_bf16 != ref_bf16) {
            ref_bf16->pack(x, ldx, kc, nc, h0, ldo);
            fast_bf16->pack(x, ldx, kc, nc, h1, ldo);
            CHECK(memcmp(h0, h1, (size_t)(np * ldo * 2) * 2) == 0, "bf16 pack %s kc %d nc %d", fast_bf16->name, kc, nc);
        }
        if (fast_int8 != ref_int8) {
            float inv = runi(0.5f, 12.0f);
            int zero = t % 2 ? 128 : rint_in(0, 255);
            ref_int8->pack(x, ldx, kc, nc, inv, zero, q0, ldo);
            fast_int8->pack(x, ldx, kc, nc, inv, zero, q1, ldo);
            CHECK(memcmp(q0, q1, (size_t)(nq * ldo * 4)) == 0, "u8 pack %s kc %d nc %d zero %d", fast_int8->name, kc,
                  nc, zero);
        }
        free(x), free(h0), free(h1), free(q0), free(q1);
    }
    for (int t = 0; t < 80; t++) {
        int nr = rint_in(1, 32), kp = rint_in(1, 300), acc = t % 2;
        long lda = kp + rint_in(0, 3), ldb = nr + rint_in(0, 5), ldc = nr + rint_in(0, 3);
        if (fast_bf16 != ref_bf16) {   /* operands padded as the config asks (lowp_kernels.h) */
            int mrb = rint_in(1, fast_bf16->mr), kpa = (kp + fast_bf16->k_align - 1) / fast_bf16->k_align * fast_bf16->k_align;
            long la = (lda + fast_bf16->k_align - 1) / fast_bf16->k_align * fast_bf16->k_align;
            long lb = ldb > fast_bf16->nr ? ldb : fast_bf16->nr, rows = mrb + fast_bf16->m_align + fast_bf16->mr;
            uint16_t *a = calloc((size_t)(rows * la * 2), 2), *b = calloc((size_t)(kpa * lb * 2), 2);
            float *c0 = malloc((size_t)(mrb * ldc) * 4), *c1 = malloc((size_t)(mrb * ldc) * 4);
            for (long i = 0; i < mrb; i++)
                for (long k = 0; k < 2 * kp; k++)
                    a[i * la * 2 + k] = bf16_from_f32(runi(-0.5f, 0.5f));
            for (long i = 0; i < kp * lb * 2; i++)
                b[i] = bf16_from_f32(runi(-4.0f, 4.0f));
            fill(c0, mrb * ldc, -1, 1);
            memcpy(c1, c0, (size_t)(mrb * ldc) * 4);
            ref_bf16->gemm(kp, a, la, b, lb, c0, ldc, mrb, nr, acc);
            fast_bf16->gemm(kpa, a, la, b, lb, c1, ldc, mrb, nr, acc);
            double worst = 0;   /* exact configs: 0; others: against |c| + sum |a b| (fp32 accumulation) */
            for (int i = 0; i < mrb; i++)
                for (int j = 0; j < nr; j++) {
                    double mag = fabs(c0[i * ldc + j]);
                    for (int k = 0; k < 2 * kp; k++)
                        mag += fabs((double)f32_from_bf16(a[i * la * 2 + k]) * f32_from_bf16(b[((k / 2) * lb + j) * 2 + k % 2]));
                    worst = fmax(worst, fabs((double)c0[i * ldc + j] - c1[i * ldc + j]) / (1e-5 * mag + 1e-6));
                }
            int same = memcmp(c0, c1, (size_t)(mrb * ldc) * 4) == 0;
            CHECK(fast_bf16->exact ? same : worst <= 1.0, "bf16 gemm %s %dx%d kp %d acc %d (%.3g of the bound)",
                  fast_bf16->name, mrb, nr, kp, acc, worst);
            free(a), free(b), free(c0), free(c1);
        }
        if (fast_int8 != ref_int8)
            test_fast_int8_gemm(fast_int8, kp, ldb, ldc);
    }
    if (fast_int8->taps)
        test_int8_taps(fast_int8);
    if (fast_int8 != ref_int8)
        test_gather(fast_int8);
}

int main(void)
{
    test_bf16_rounding();
    test_bf16_gemm_ref();
    test_int8_ref();
    test_packs_ref();
    const kernel_set *best = kernel_set_select(NULL);
    int isas = (best->bf16 != &bf16_gemm_config_ref) + (best->int8 != &u8s8_gemm_config_ref);
    test_fast(best->bf16, best->int8);
    printf("isas tested: %d (bf16 %s, int8 %s)\n", isas, best->bf16->name, best->int8->name);
#if defined(__x86_64__) && defined(__GNUC__)
    /* where AMX is chosen, the AVX-512 BF16 tile still runs on CPUs without AMX: test it too */
    __builtin_cpu_init();
    if (!best->bf16->exact && __builtin_cpu_supports("avx512bf16")) {
        static const bf16_gemm_config avx512bf16 = {"bf16-gemm-8x32-avx512bf16", 8, 32, bf16_gemm_8x32__avx512bf16,
                                                    bf16_pack_pairs__avx512bf16, 1, 1, 1, NULL};
        test_fast(&avx512bf16, &u8s8_gemm_config_ref);
        printf("also tested: %s\n", avx512bf16.name);
    }
    /* likewise the AVX-512 VNNI int8 tile where AMX is chosen */
    if (best->int8->k_align > 1 && __builtin_cpu_supports("avx512vnni")) {
        static const u8s8_gemm_config vnni = {"u8s8-gemm-8x32-avx512vnni", 8, 32, u8s8_gemm_8x32__avx512vnni,
                                              u8_pack_quads__avx512, 1, 1, u8s8_taps_32x32__avx512vnni,
                                              u8_gather_quads__avx512};
        test_fast(&bf16_gemm_config_ref, &vnni);
        printf("also tested: %s\n", vnni.name);
    }
#endif
    return harness_done();
}
