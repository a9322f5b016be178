/*
 * test_core_kernels.c - every fast kernel of every config this CPU runs against the
 * reference twin of its family (kernels.h, train_kernels.h, lowp_kernels.h), kernel by
 * kernel, on random sizes with the edge tiles: every mr and nr up to the tile (the
 * remainders), accumulate 0 and 1, odd strides, Winograd tiles cut by the plane's
 * edges, runs of every length mod 16. First the reference GEMM itself against a
 * double-precision dot product, so the oracle is checked too.
 *
 * Bounds: copies (im2col, transpose, the bf16/int8 tiles, which round like the
 * reference) bit for bit; the f32 GEMM within (kc + 2) * 2^-23 * (sum |a b| + |c|) per
 * element (a worst-case float summation bound, so an FMA or another order passes and
 * a wrong or missing term does not); transforms and epilogues within 1e-5 relative.
 * Guard values around every output check that nothing outside it is written. Prints
 * each config with its count, each failing case, and harness.h's closing line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/lowp_kernels.h"
#include "kernels/pointwise.h"
#include "kernels/train_kernels.h"

#define GUARD 1234.5f

static float *falloc(long n)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p)
        abort();
    return p;
}

/* max |got - want| over n values beyond tol * (max|want| + 1); NaN counts as a miss. */
static int close_rel(const float *got, const float *want, long n, double tol)
{
    double m = 0.0, d = 0.0;
    for (long i = 0; i < n; i++) {
        m = fmax(m, fabs(want[i]));
        double e = fabs((double)got[i] - want[i]);
        if (e != e)
            return 0;
        d = fmax(d, e);
    }
    return d <= tol * (m + 1.0);
}

/* ---- f32 GEMM ---- */

static void gemm_case(const f32_gemm_config *cfg, const f32_gemm_config *ref, int mr, int nr, int kc, int acc,
                      int *bad)
{
    long lda = kc + rng_int(0, 3), ldb = nr + rng_int(0, 5), ldc = nr + rng_int(0, 4), nc = mr * ldc + 8;
    float *a = falloc(mr * lda), *b = falloc(kc * ldb), *cin = falloc(nc), *c0 = falloc(nc), *c1 = falloc(nc);
    rng_fill(a, mr * lda);
    rng_fill(b, kc * ldb);
    for (long i = 0; i < nc; i++)
        cin[i] = i % ldc < nr && i < mr * ldc ? rng_float() : GUARD;
    memcpy(c0, cin, sizeof(float) * (size_t)nc);
    memcpy(c1, cin, sizeof(float) * (size_t)nc);
    ref->fn(kc, a, lda, b, ldb, c0, ldc, mr, nr, acc);
    cfg->fn(kc, a, lda, b, ldb, c1, ldc, mr, nr, acc);
    int ok = 1;
    for (long at = 0; at < nc; at++) {
        long i = at / ldc, j = at % ldc;
        if (i >= mr || j >= nr) {
            ok &= c1[at] == GUARD;
            continue;
        }
        double mag = acc ? fabs(cin[at]) : 0.0;
        for (int k = 0; k < kc; k++)
            mag += fabs((double)a[i * lda + k] * b[k * ldb + j]);
        ok &= fabs((double)c1[at] - c0[at]) <= (kc + 2) * ldexp(1.0, -23) * mag;
    }
    CHECK(ok, "%s vs %s: mr %d nr %d kc %d lda %ld ldb %ld ldc %ld accumulate %d", cfg->name, ref->name, mr, nr,
          kc, lda, ldb, ldc, acc);
    *bad += !ok;
    free(a), free(b), free(cin), free(c0), free(c1);
}

static void test_gemm(const f32_gemm_config *cfg, const f32_gemm_config *ref)
{
    int bad = 0, cases = 0;
    /* every (mr, nr) of the tile, then random depths */
    for (int mr = 1; mr <= cfg->mr; mr++)
        for (int nr = 1; nr <= cfg->nr; nr++, cases++)
            gemm_case(cfg, ref, mr, nr, rng_int(1, 40), (mr + nr) % 2, &bad);
    for (int t = 0; t < 200; t++, cases++)
        gemm_case(cfg, ref, rng_int(1, cfg->mr), rng_int(1, cfg->nr), rng_int(1, 600), t % 2, &bad);
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* The oracle itself: f32_gemm__ref against double dot products, with and without
 * accumulation, and beyond the fast tiles (mr 11, nr 40). */
static void test_gemm_ref(void)
{
    for (int t = 0; t < 100; t++) {
        int mr = rng_int(1, 11), nr = rng_int(1, 40), kc = rng_int(1, 300), acc = t % 2;
        long lda = kc + 1, ldb = nr + 2, ldc = nr + 3;
        float *a = falloc(mr * lda), *b = falloc(kc * ldb), *c = falloc(mr * ldc), *c0 = falloc(mr * ldc);
        rng_fill(a, mr * lda);
        rng_fill(b, kc * ldb);
        rng_fill(c, mr * ldc);
        memcpy(c0, c, sizeof(float) * (size_t)(mr * ldc));
        f32_gemm__ref(kc, a, lda, b, ldb, c, ldc, mr, nr, acc);
        int ok = 1;
        for (int i = 0; i < mr; i++)
            for (long j = 0; j < ldc; j++) {
                double want = acc || j >= nr ? c0[i * ldc + j] : 0.0, mag = fabs(want);
                for (int k = 0; j < nr && k < kc; k++) {
                    want += (double)a[i * lda + k] * b[k * ldb + j];
                    mag += fabs((double)a[i * lda + k] * b[k * ldb + j]);
                }
                ok &= fabs(c[i * ldc + j] - want) <= (kc + 2) * ldexp(1.0, -23) * mag;
            }
        CHECK(ok, "f32_gemm__ref vs double: mr %d nr %d kc %d accumulate %d", mr, nr, kc, acc);
        free(a), free(b), free(c), free(c0);
    }
}

/* ---- f32 conv: im2col rows and the epilogue ---- */

static conv_geom random_geom(int max_hw)
{
    conv_geom g;
    do {
        g.k = (int[]){1, 3, 5}[rng_int(0, 2)];
        g.stride = rng_int(1, 2);
        g.pad = rng_int(0, g.k / 2);
        g.in_c = rng_int(1, 6);
        g.in_h = rng_int(1, max_hw);
        g.in_w = rng_int(1, max_hw);
        g.out_c = 1;
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
    } while (g.in_h + 2 * g.pad < g.k || g.in_w + 2 * g.pad < g.k);
    return g;
}

static void test_conv(const f32_conv_config *cfg, const f32_conv_config *ref)
{
    int bad = 0, cases = 0;
    for (int t = 0; t < 300; t++, cases++) {
        /* rows up to 300 wide: the unmasked interior loads of long runs */
        conv_geom g = random_geom(t < 150 ? 12 : t < 250 ? 70 : 300);
        long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w;
        float *img = falloc((long)g.in_c * g.in_h * g.in_w);
        rng_fill(img, (long)g.in_c * g.in_h * g.in_w);
        int k0 = rng_int(0, (int)K - 1), kc = rng_int(1, (int)(K - k0));
        long n0 = rng_int(0, (int)P - 1);
        int nc = rng_int(1, (int)(P - n0 < 300 ? P - n0 : 300));
        long ldp = nc + rng_int(0, 5);
        float *p0 = falloc(kc * ldp), *p1 = falloc(kc * ldp);
        for (long i = 0; i < kc * ldp; i++)
            p0[i] = p1[i] = GUARD;
        ref->im2col_rows(&g, img, k0, kc, n0, nc, p0, ldp);
        cfg->im2col_rows(&g, img, k0, kc, n0, nc, p1, ldp);
        int ok = memcmp(p0, p1, sizeof(float) * (size_t)(kc * ldp)) == 0;
        CHECK(ok, "%s im2col_rows vs %s: C%d %dx%d k%d s%d p%d rows %d+%d cols %ld+%d ldp %ld", cfg->name,
              ref->name, g.in_c, g.in_h, g.in_w, g.k, g.stride, g.pad, k0, kc, n0, nc, ldp);
        bad += !ok;
        free(img), free(p0), free(p1);
    }
    for (int act = 0; act < CSPRESNET_ACT_COUNT; act++)
        for (int t = 0; t < 40; t++, cases++) {
            long count = t < 32 ? t + 1 : rng_int(33, 1100);
            float bias = t % 3 ? rng_float() : 0.0f;
            int use_res = t % 2;
            float *x0 = falloc(count + 4), *x1 = falloc(count + 4), *res = falloc(count);
            for (long i = 0; i < count + 4; i++)
                x0[i] = x1[i] = i < count ? (i < 4 ? (float[]){-100.f, 88.5f, -30.f, 0.f}[i] : 12.0f * rng_float())
                                          : GUARD;
            rng_fill(res, count);
            ref->bias_act(x0, count, bias, (cspresnet_act)act, use_res ? res : NULL);
            cfg->bias_act(x1, count, bias, (cspresnet_act)act, use_res ? res : NULL);
            int ok = close_rel(x1, x0, count, 2e-6);
            for (int i = 0; i < 4; i++)
                ok &= x1[count + i] == GUARD;
            CHECK(ok, "%s bias_act vs %s: act %s count %ld bias %g res %d", cfg->name, ref->name,
                  cspresnet_act_name((cspresnet_act)act), count, bias, use_res);
            bad += !ok;
            free(x0), free(x1), free(res);
        }
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* ---- f32 Winograd F(4,3) ---- */

static int winograd_weight_case(const f32_winograd_config *cfg, const f32_winograd_config *ref)
{
    int in_c = rng_int(1, 150), oc_count = rng_int(1, 9), oc0 = rng_int(0, 5);
    long stride = (long)oc_count * in_c + rng_int(0, 7), n = 36 * stride;
    float *w = falloc((long)(oc0 + oc_count) * in_c * 9), *u0 = falloc(n), *u1 = falloc(n);
    rng_fill(w, (long)(oc0 + oc_count) * in_c * 9);
    for (long i = 0; i < n; i++)
        u0[i] = u1[i] = GUARD;
    ref->weight(w, in_c, oc0, oc_count, stride, u0);
    cfg->weight(w, in_c, oc0, oc_count, stride, u1);
    int ok = close_rel(u1, u0, n, 1e-6);
    CHECK(ok, "%s weight vs %s: in_c %d oc %d+%d stride %ld", cfg->name, ref->name, in_c, oc0, oc_count, stride);
    free(w), free(u0), free(u1);
    return ok;
}

static wino_tiles random_tiles(void)
{
    wino_tiles wt;
    wt.h = rng_int(1, 45);
    wt.w = rng_int(1, 70);
    wt.tiles_w = (wt.w + 3) / 4;
    wt.tile_count = wt.tiles_w * ((wt.h + 3) / 4);
    return wt;
}

static int winograd_input_case(const f32_winograd_config *cfg, const f32_winograd_config *ref)
{
    wino_tiles wt = random_tiles();
    int t0 = rng_int(0, (wt.tile_count - 1) / 16) * 16;
    long stride = 16 + rng_int(0, 9), n = 36 * stride;
    float *plane = falloc((long)wt.h * wt.w), *v0 = falloc(n), *v1 = falloc(n);
    rng_fill(plane, (long)wt.h * wt.w);
    for (long i = 0; i < n; i++)
        v0[i] = v1[i] = GUARD;
    ref->input(&wt, plane, t0, v0, stride);
    cfg->input(&wt, plane, t0, v1, stride);
    int ok = close_rel(v1, v0, n, 1e-6);
    CHECK(ok, "%s input vs %s: plane %dx%d tiles from %d of %d, stride %ld", cfg->name, ref->name, wt.h, wt.w, t0,
          wt.tile_count, stride);
    free(plane), free(v0), free(v1);
    return ok;
}

static int winograd_output_case(const f32_winograd_config *cfg, const f32_winograd_config *ref, int act)
{
    wino_tiles wt = random_tiles();
    int t0 = rng_int(0, (wt.tile_count - 1) / 16) * 16, use_res = rng_int(0, 1);
    long stride = 16 + rng_int(0, 9), plane = (long)wt.h * wt.w;
    float bias = rng_int(0, 2) ? rng_float() : 0.0f;
    float *m = falloc(36 * stride), *res = falloc(plane), *o0 = falloc(plane), *o1 = falloc(plane);
    rng_fill(m, 36 * stride);
    rng_fill(res, plane);
    for (long i = 0; i < plane; i++)
        o0[i] = o1[i] = GUARD;
    ref->output(&wt, m, stride, t0, bias, (cspresnet_act)act, use_res ? res : NULL, o0);
    cfg->output(&wt, m, stride, t0, bias, (cspresnet_act)act, use_res ? res : NULL, o1);
    int ok = close_rel(o1, o0, plane, 1e-5);
    CHECK(ok, "%s output vs %s: plane %dx%d tiles from %d of %d, stride %ld act %s bias %g res %d", cfg->name,
          ref->name, wt.h, wt.w, t0, wt.tile_count, stride, cspresnet_act_name((cspresnet_act)act), bias, use_res);
    free(m), free(res), free(o0), free(o1);
    return ok;
}

static void test_winograd(const f32_winograd_config *cfg, const f32_winograd_config *ref)
{
    int bad = 0, cases = 0;
    for (int t = 0; t < 60; t++, cases++)
        bad += !winograd_weight_case(cfg, ref);
    for (int t = 0; t < 200; t++, cases++)
        bad += !winograd_input_case(cfg, ref);
    for (int t = 0; t < 200; t++, cases++)
        bad += !winograd_output_case(cfg, ref, t % CSPRESNET_ACT_COUNT);
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* ---- f32 reductions ---- */

static int same_bits(const float *a, const float *b, long n)
{
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* The max-pool passes and the gate scaling on a row of w (a few NaN, -inf and equal
 * values among them): bit-identical to the reference, nothing written past w. */
static int pool_case(const f32_reduce_config *cfg, const f32_reduce_config *ref, int t)
{
    long w = t < 40 ? t + 1 : rng_int(41, 700);
    int r = rng_int(0, 7);
    float *src = falloc(w), *acc = falloc(w), *d0 = falloc(w + 16), *d1 = falloc(w + 16);
    for (long i = 0; i < w; i++) {
        int kind = rng_int(0, 40);
        src[i] = kind == 0 ? NAN : kind == 1 ? -INFINITY : kind == 2 ? 0.5f : 4.0f * rng_float() - 2.0f;
        acc[i] = rng_int(0, 30) == 0 ? NAN : rng_float();
    }
    for (long i = 0; i < w + 16; i++)
        d0[i] = d1[i] = GUARD;
    ref->window_max(src, d0, w, r);
    cfg->window_max(src, d1, w, r);
    int ok = same_bits(d0, d1, w + 16);
    CHECK(ok, "%s: window_max w %ld r %d differs from %s", cfg->name, w, r, ref->name);
    memcpy(d0, acc, sizeof(float) * (size_t)w);
    memcpy(d1, acc, sizeof(float) * (size_t)w);
    ref->max_into(d0, src, w);
    cfg->max_into(d1, src, w);
    int ok2 = same_bits(d0, d1, w + 16);
    CHECK(ok2, "%s: max_into of %ld differs from %s", cfg->name, w, ref->name);
    float g = rng_float();
    ref->scale(src, g, d0, w);
    cfg->scale(src, g, d1, w);
    memcpy(acc, src, sizeof(float) * (size_t)w);
    cfg->scale(acc, g, acc, w);   /* in place */
    ok2 &= same_bits(d0, d1, w + 16) && same_bits(d0, acc, w);
    CHECK(ok2, "%s: scale of %ld differs from %s", cfg->name, w, ref->name);
    free(src);
    free(acc);
    free(d0);
    free(d1);
    return ok && ok2;
}

/* The DFL expectation of count anchors over bins values (stride step): within 1e-5
 * of the reference (its exp is libm's); NaN and infinite inputs give NaN in both. */
static int dfl_case(const f32_reduce_config *cfg, const f32_reduce_config *ref, int t)
{
    int bins = t % 5 == 0 ? 1 : rng_int(2, 33);
    long count = rng_int(1, 70), step = count + rng_int(0, 9);
    float *v = falloc(bins * step), *proj = falloc(bins), *d0 = falloc(count + 16), *d1 = falloc(count + 16);
    for (long i = 0; i < bins * step; i++)
        v[i] = 6.0f * rng_float() - 3.0f + (t % 7 == 0 ? 80.0f : 0.0f);
    if (t % 4 == 1)
        v[rng_int(0, bins - 1) * step + rng_int(0, (int)count - 1)] = (float[]){NAN, INFINITY, -INFINITY}[t % 3];
    for (int b = 0; b < bins; b++)
        proj[b] = (float)b;
    for (long i = 0; i < count + 16; i++)
        d0[i] = d1[i] = GUARD;
    ref->dfl_expect(v, step, bins, proj, count, d0);
    cfg->dfl_expect(v, step, bins, proj, count, d1);
    int ok = 1;
    for (long i = 0; i < count + 16; i++)
        ok &= isnan(d0[i]) ? isnan(d1[i]) : fabsf(d0[i] - d1[i]) <= 1e-5f * (1.0f + fabsf(d0[i]));
    CHECK(ok, "%s: dfl_expect of %ld anchors, %d bins, differs from %s", cfg->name, count, bins, ref->name);
    free(v);
    free(proj);
    free(d0);
    free(d1);
    return ok;
}

static void test_reduce(const f32_reduce_config *cfg, const f32_reduce_config *ref)
{
    int bad = 0, cases = 0;
    float *x = falloc(30000);
    for (long i = 0; i < 30000; i++)
        x[i] = 3.0f * rng_float() + 0.5f;
    for (int t = 0; t < 120; t++, cases++) {
        long count = t < 64 ? t + 1 : rng_int(65, 29990);
        int off = rng_int(0, 7);
        float got = cfg->mean(x + off, count), want = ref->mean(x + off, count);
        int ok = fabsf(got - want) <= 1e-6f * fabsf(want) + 1e-7f;
        CHECK(ok, "%s vs %s: mean of %ld at +%d: %.9g, reference %.9g", cfg->name, ref->name, count, off, got, want);
        bad += !ok;
    }
    free(x);
    for (int t = 0; t < 200; t++, cases++)
        bad += !pool_case(cfg, ref, t);
    for (int t = 0; t < 80; t++, cases++)
        bad += !dfl_case(cfg, ref, t);
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* ---- f32 training point-wise kernels, transpose and im2col ---- */

static int train_bn_case(const f32_train_config *cfg, const f32_train_config *ref, int act, long len, int runs)
{
    long xs = len + rng_int(0, 3), ys = len + rng_int(0, 3), n = (runs + 1) * (xs > ys ? xs : ys);
    float *x = falloc(n), *da = falloc(n), *y0 = falloc(n), *y1 = falloc(n), *dx0 = falloc(n), *dx1 = falloc(n);
    for (long i = 0; i < n; i++) {
        x[i] = (float)(6.0 * rng_uniform() - 2.0);
        da[i] = rng_float();
        dx0[i] = dx1[i] = (float)rng_uniform();
        y0[i] = y1[i] = GUARD;
    }
    bn_act_params p = {.mean = 0.3f, .rstd = 1.7f, .weight = 1.2f, .bias = -0.4f, .mdy = 0.05f, .mdyx = -0.02f,
                       .act = (cspresnet_act)act};
    p.scale = p.rstd * p.weight;
    p.shift = p.bias - p.mean * p.scale;
    double a0 = 0.5, a1 = 0.25, b0 = 0.5, b1 = 0.25, c0 = 0, c1 = 0, d0 = 0, d1 = 0;
    ref->bn_stats(x, xs, runs, len, &a0, &a1);
    cfg->bn_stats(x, xs, runs, len, &b0, &b1);
    ref->bn_act_apply(x, xs, y0, ys, runs, len, &p);
    cfg->bn_act_apply(x, xs, y1, ys, runs, len, &p);
    ref->bn_act_bwd_reduce(x, xs, da, xs, runs, len, &p, &c0, &c1);
    cfg->bn_act_bwd_reduce(x, xs, da, xs, runs, len, &p, &d0, &d1);
    ref->bn_act_bwd_apply(x, xs, da, xs, dx0, xs, runs, len, &p);
    cfg->bn_act_bwd_apply(x, xs, da, xs, dx1, xs, runs, len, &p);
    int ok = fabs(a0 - b0) <= 1e-9 * (1 + fabs(a0)) && fabs(a1 - b1) <= 1e-9 * (1 + fabs(a1)) &&
             fabs(c0 - d0) <= 1e-5 * (1 + fabs(c0)) && fabs(c1 - d1) <= 1e-5 * (1 + fabs(c1)) &&
             close_rel(y1, y0, n, 2e-6) && close_rel(dx1, dx0, n, 2e-6);
    CHECK(ok, "%s bn kernels vs %s: act %s, %d runs of %ld (x stride %ld, y stride %ld)", cfg->name, ref->name,
          cspresnet_act_name((cspresnet_act)act), runs, len, xs, ys);
    free(x), free(da), free(y0), free(y1), free(dx0), free(dx1);
    return ok;
}

static int train_transpose_case(const f32_train_config *cfg, const f32_train_config *ref)
{
    int rows = rng_int(1, 50), cols = rng_int(1, 50);
    long lds = cols + rng_int(0, 3), ldd = rows + rng_int(0, 3);
    float *src = falloc(rows * lds), *a = falloc(cols * ldd), *b = falloc(cols * ldd);
    rng_fill(src, rows * lds);
    for (long i = 0; i < cols * ldd; i++)
        a[i] = b[i] = GUARD;
    ref->transpose(src, lds, rows, cols, a, ldd);
    cfg->transpose(src, lds, rows, cols, b, ldd);
    int ok = memcmp(a, b, sizeof(float) * (size_t)(cols * ldd)) == 0;
    CHECK(ok, "%s transpose vs %s: %dx%d lds %ld ldd %ld", cfg->name, ref->name, rows, cols, lds, ldd);
    free(src), free(a), free(b);
    return ok;
}

/* im2col_shift (where the config has one and takes the shape) and im2col_gather
 * against the reference gather, several images side by side. */
static int train_im2col_case(const f32_train_config *cfg, const f32_train_config *ref)
{
    conv_geom g = random_geom(20);
    if (rng_int(0, 1)) { /* the shapes im2col_shift takes */
        g.stride = 1;
        g.pad = g.k / 2;
        g.out_h = g.in_h;
        g.out_w = g.in_w;
    }
    int nimg = rng_int(1, 3);
    long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w;
    long istride = (long)g.in_c * g.in_h * g.in_w + rng_int(0, 5);
    int k0 = rng_int(0, (int)K - 1), kc = rng_int(1, (int)(K - k0));
    long p0 = nimg > 1 ? 0 : rng_int(0, (int)P - 1);
    int pc = (int)(nimg > 1 ? P : rng_int(1, (int)(P - p0)));
    pc = pc < 256 ? pc : 256;
    long ldp = (long)pc * nimg + rng_int(0, 3);
    float *img = falloc(istride * nimg), *a = falloc(kc * ldp), *b = falloc(kc * ldp);
    int *idx = malloc(sizeof(int) * (size_t)pc);
    rng_fill(img, istride * nimg);
    for (long i = 0; i < kc * ldp; i++)
        a[i] = GUARD;
    ref->im2col_gather(&g, img, istride, nimg, k0, kc, p0, pc, a, ldp, idx);
    int ok = 1;
    for (int pass = 0; pass < 2; pass++) {
        for (long i = 0; i < kc * ldp; i++)
            b[i] = GUARD;
        int done = 1;
        if (pass == 0)
            cfg->im2col_gather(&g, img, istride, nimg, k0, kc, p0, pc, b, ldp, idx);
        else if (cfg->im2col_shift)
            done = cfg->im2col_shift(&g, img, istride, nimg, k0, kc, p0, pc, b, ldp);
        else
            continue;
        int same = !done || memcmp(a, b, sizeof(float) * (size_t)(kc * ldp)) == 0;
        CHECK(same, "%s im2col_%s vs %s gather: %d images C%d %dx%d k%d s%d p%d rows %d+%d cols %ld+%d", cfg->name,
              pass ? "shift" : "gather", ref->name, nimg, g.in_c, g.in_h, g.in_w, g.k, g.stride, g.pad, k0, kc, p0,
              pc);
        ok &= same;
    }
    free(img), free(a), free(b), free(idx);
    return ok;
}

static void test_train(const f32_train_config *cfg, const f32_train_config *ref)
{
    int bad = 0, cases = 0;
    for (int act = 0; act < CSPRESNET_ACT_COUNT; act++)
        for (long len = 1; len <= 35; len += 1 + (len > 17), cases++)
            bad += !train_bn_case(cfg, ref, act, len, rng_int(1, 3));
    for (int t = 0; t < 100; t++, cases++)
        bad += !train_transpose_case(cfg, ref);
    for (int t = 0; t < 200; t++, cases++)
        bad += !train_im2col_case(cfg, ref);
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* ---- bf16 and int8 tiles: bit for bit where they round as the reference does ---- */

/* c1 (the tile under test) against c0 (the reference tile): the same bits for an exact
 * config, else within fp32 accumulation of the same products (|a b| summed per output). */
static int bf16_agree(const bf16_gemm_config *cfg, const float *c0, const float *c1, const uint16_t *a, long lda,
                      const uint16_t *b, long ldb, const float *cin, int acc, long ldc, int mr, int nr, int kp)
{
    if (cfg->exact)
        return memcmp(c0, c1, sizeof(float) * (size_t)(mr * ldc)) == 0;
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < ldc; j++) {
            double mag = acc ? fabs(cin[i * ldc + j]) : 0;
            for (int p = 0; j < nr && p < 2 * kp; p++)
                mag += fabs((double)f32_from_bf16(a[i * lda * 2 + p]) * f32_from_bf16(b[((p / 2) * ldb + j) * 2 + p % 2]));
            if (j >= nr ? c0[i * ldc + j] != c1[i * ldc + j] : fabs((double)c0[i * ldc + j] - c1[i * ldc + j]) > 1e-5 * mag + 1e-6)
                return 0;
        }
    return 1;
}

static long round_up_l(long x, long m)
{
    return (x + m - 1) / m * m;
}

/* Operands padded as the config asks (k_align, m_align, B columns to nr); kp passed
 * rounded up to k_align, the pad pairs zero. */
static void test_bf16(const bf16_gemm_config *cfg, const bf16_gemm_config *ref)
{
    int bad = 0, cases = 0;
    for (int t = 0; t < 150; t++, cases++) {
        int mr = t < cfg->mr ? t + 1 : rng_int(1, cfg->mr), nr = rng_int(1, cfg->nr), kp = rng_int(1, 200);
        int acc = t % 2, kpa = (int)round_up_l(kp, cfg->k_align);
        long lda = round_up_l(kp + rng_int(0, 3), cfg->k_align), ldb = cfg->nr + rng_int(0, 5), ldc = nr + rng_int(0, 3);
        long rows = round_up_l(mr, cfg->m_align) + cfg->mr;
        uint16_t *a = calloc((size_t)(rows * lda * 2), sizeof(uint16_t));
        uint16_t *b0 = calloc((size_t)(kpa * ldb * 2), sizeof(uint16_t)), *b1 = calloc((size_t)(kpa * ldb * 2), sizeof(uint16_t));
        float *x = falloc(2 * kp * ldb), *c0 = falloc(mr * ldc), *c1 = falloc(mr * ldc), *cin = falloc(mr * ldc);
        for (long i = 0; i < mr; i++)
            for (long p = 0; p < 2 * kp; p++)
                a[i * lda * 2 + p] = bf16_from_f32(0.5f * rng_float());
        for (long i = 0; i < 2 * kp * ldb; i++)
            x[i] = 4.0f * rng_float();
        int kc = 2 * kp - (t % 3 == 0); /* odd K: the pair past it is zero */
        ref->pack(x, ldb, kc, nr, b0, ldb);
        cfg->pack(x, ldb, kc, nr, b1, ldb);
        int ok = memcmp(b0, b1, sizeof(uint16_t) * (size_t)(kp * ldb * 2)) == 0;
        rng_fill(cin, mr * ldc);
        memcpy(c0, cin, sizeof(float) * (size_t)(mr * ldc));
        memcpy(c1, cin, sizeof(float) * (size_t)(mr * ldc));
        ref->gemm(kp, a, lda, b0, ldb, c0, ldc, mr, nr, acc);
        cfg->gemm(kpa, a, lda, b0, ldb, c1, ldc, mr, nr, acc);
        ok &= bf16_agree(cfg, c0, c1, a, lda, b0, ldb, cin, acc, ldc, mr, nr, kp);
        CHECK(ok, "%s vs %s: mr %d nr %d kc %d accumulate %d", cfg->name, ref->name, mr, nr, kc, acc);
        bad += !ok;
        free(a), free(b0), free(b1), free(x), free(c0), free(c1), free(cin);
    }
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* Operands padded as the config asks, as for bf16; integer sums, so the same bits. */
static void test_int8(const u8s8_gemm_config *cfg, const u8s8_gemm_config *ref)
{
    int bad = 0, cases = 0;
    for (int t = 0; t < 150; t++, cases++) {
        int mr = t < cfg->mr ? t + 1 : rng_int(1, cfg->mr), nr = rng_int(1, cfg->nr), kq = rng_int(1, 200);
        int kqa = (int)round_up_l(kq, cfg->k_align);
        long lda = round_up_l(kq + rng_int(0, 3), cfg->k_align), ldb = cfg->nr + rng_int(0, 5), ldc = nr + rng_int(0, 3);
        long rows = round_up_l(mr, cfg->m_align) + cfg->mr;
        int8_t *a = calloc((size_t)(rows * lda * 4), 1);   /* zero past the data, as the config asks */
        uint8_t *b0 = calloc((size_t)(kqa * ldb * 4), 1), *b1 = calloc((size_t)(kqa * ldb * 4), 1);
        float *x = falloc(4 * kq * ldb), *c0 = falloc(mr * ldc), *c1 = falloc(mr * ldc), scale[32];
        int32_t comp[32];
        for (long i = 0; i < mr; i++)
            for (long k = 0; k < 4L * kq; k++)
                a[i * lda * 4 + k] = (int8_t)rng_int(-128, 127);
        for (long i = 0; i < 4 * kq * ldb; i++)
            x[i] = 200.0f * rng_float();
        for (int i = 0; i < mr; i++)
            comp[i] = rng_int(-1000000, 1000000), scale[i] = 1e-4f * (1.0f + rng_float());
        int kc = 4 * kq - rng_int(0, 3); /* the rows past K are the zero point */
        float inv = 0.5f + 2.0f * (float)rng_uniform();
        int zero = rng_int(0, 255);
        ref->pack(x, ldb, kc, nr, inv, zero, b0, ldb);
        cfg->pack(x, ldb, kc, nr, inv, zero, b1, ldb);
        int ok = memcmp(b0, b1, (size_t)(kq * ldb * 4)) == 0;
        rng_fill(c0, mr * ldc);
        memcpy(c1, c0, sizeof(float) * (size_t)(mr * ldc));
        ref->gemm(kq, a, lda, b0, ldb, comp, scale, c0, ldc, mr, nr);
        cfg->gemm(kqa, a, lda, b0, ldb, comp, scale, c1, ldc, mr, nr);
        ok &= memcmp(c0, c1, sizeof(float) * (size_t)(mr * ldc)) == 0;
        CHECK(ok, "%s vs %s: mr %d nr %d kc %d", cfg->name, ref->name, mr, nr, kc);
        bad += !ok;
        free(a), free(b0), free(b1), free(x), free(c0), free(c1);
    }
    printf("%s vs %s: %d cases, %d failed\n", cfg->name, ref->name, cases, bad);
}

/* The ISA as a context option: each name gives its set (or the best where the CPU
 * lacks it), NULL and unknown names the best, and the environment is not read by the
 * library (CSPRESNET_ISA is the CLI's). */
static void test_isa_option(void)
{
    char err[256] = "";
    cspresnet_config cfg;
    cspresnet_model *m = NULL;
    if (cspresnet_config_scaled(&cfg, 0.125, 0.33) != CSPRESNET_OK ||
        cspresnet_model_create(&cfg, 3, &m, err, sizeof err) != CSPRESNET_OK) {
        CHECK(0, "cannot create a model: %s", err);
        return;
    }
    const char *best = kernel_set_select(NULL)->isa;
    setenv("CSPRESNET_ISA", "ref", 1);
    const char *asked[] = {NULL, "", "ref", "generic", "avx2", "avx512", "bogus"};
    for (int i = 0; i < 7; i++) {
        cspresnet_context_options opt;
        cspresnet_context_options_init(&opt);
        opt.threads = 1;
        opt.isa = asked[i];
        cspresnet_context *ctx = NULL;
        if (cspresnet_context_create_ex(m, &opt, &ctx, err, sizeof err) != CSPRESNET_OK) {
            CHECK(0, "context_create_ex isa %s: %s", asked[i] ? asked[i] : "NULL", err);
            continue;
        }
        const char *want = i >= 2 && i <= 5 ? kernel_set_select(asked[i])->isa : best;
        if (i == 2 || i == 3)
            want = asked[i]; /* every CPU runs these */
        CHECK(strcmp(cspresnet_context_isa(ctx), want) == 0, "context isa %s: runs %s, want %s",
              asked[i] ? asked[i] : "NULL", cspresnet_context_isa(ctx), want);
        cspresnet_context_free(ctx);
    }
    unsetenv("CSPRESNET_ISA");
    cspresnet_model_free(m);
}

/* Each config once, though several sets share it (avx2 and generic share the
 * Winograd weight transform, every set but avx512 the reference training kernels). */
static int seen(const void **list, int *n, const void *cfg)
{
    for (int i = 0; i < *n; i++)
        if (list[i] == cfg)
            return 1;
    list[(*n)++] = cfg;
    return 0;
}

int main(void)
{
    static const char *const isas[] = {"ref", "generic", "avx2", "avx512"};
    const void *done[64];
    int n_done = 0, tested = 0;
    test_gemm_ref();
    test_isa_option();
    for (int i = 0; i < 4; i++) {
        const kernel_set *ks = kernel_set_select(isas[i]);
        if (strcmp(ks->isa, isas[i]) != 0) {
            printf("isa %s: not supported by this CPU (got %s), not tested\n", isas[i], ks->isa);
            continue;
        }
        printf("isa %s:\n", ks->isa);
        if (ks->gemm && !seen(done, &n_done, ks->gemm) && ++tested)
            test_gemm(ks->gemm, &f32_gemm_config_ref);
        if (ks->conv && !seen(done, &n_done, ks->conv) && ++tested)
            test_conv(ks->conv, &f32_conv_config_ref);
        if (ks->winograd && !seen(done, &n_done, ks->winograd) && ++tested)
            test_winograd(ks->winograd, &f32_winograd_config_ref);
        if (ks->reduce != &f32_reduce_config_ref && !seen(done, &n_done, ks->reduce) && ++tested)
            test_reduce(ks->reduce, &f32_reduce_config_ref);
        if (ks->train != &f32_train_config_ref && !seen(done, &n_done, ks->train) && ++tested)
            test_train(ks->train, &f32_train_config_ref);
        if (ks->bf16 != &bf16_gemm_config_ref && !seen(done, &n_done, ks->bf16) && ++tested)
            test_bf16(ks->bf16, &bf16_gemm_config_ref);
        if (ks->int8 != &u8s8_gemm_config_ref && !seen(done, &n_done, ks->int8) && ++tested)
            test_int8(ks->int8, &u8s8_gemm_config_ref);
    }
    /* the reference set runs the reference path: no fast conv kernels, no Winograd */
    const kernel_set *ref = kernel_set_select("ref");
    CHECK(!ref->gemm && !ref->conv && !ref->winograd && ref->train == &f32_train_config_ref,
          "the ref set has no fast conv kernels and the reference training kernels");
    printf("configs tested: %d (best set here: %s)\n", tested, kernel_set_select(NULL)->isa);
    return harness_done();
}
