/*
 * test_kernels_conv.c - the fast convolution path (per-ISA GEMM tiles, 1x1 without
 * im2col, im2col GEMM, Winograd F(4,3)) and the fast epilogue against the reference
 * path (kernel set "ref"), and the ESE plane mean, for every ISA this CPU supports (generic, avx2, avx512).
 * Random shapes: odd channel counts, odd and tiny H/W, wide rows (64-200), batch 1-3, 1x1 / 3x3 s1 / 3x3 s2,
 * outputs and residuals in channel slices of wider tensors, bias + every activation
 * + residual epilogues, 1 and 2 threads. Checks max|diff| <= 1e-3 * max|ref| per case,
 * and that 1 and 2 threads give identical bits. Prints the configuration of any
 * failing case; exit status 1 on failure. Closes with harness.h's "N passed, M failed" line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/pointwise.h"
#include "ops/ops.h"

static int winograd_cases, winograd_few_cases;

/* Runs one conv with table kt on the path and workspace conv2d_plan chooses. */
static int run_conv(const kernel_set *kt, int threads, const conv_geom *g, const float *w,
                    const tensor4 *in, const tensor4 *out, const conv_epilogue *ep)
{
    threadpool *pool;
    error_buf e;
    if (threadpool_create(threads, &pool, &e) != CSPRESNET_OK)
        return -1;
    long pt = 0, sh = 0;
    int path = conv2d_plan(kt, g, in->n, threads, 1, &pt, &sh);
    float *scratch = malloc(sizeof(float) * (size_t)(pt * threads + sh + 16));
    op_exec ex = {.pool = pool, .kernels = kt, .scratch = scratch, .scratch_per_thread = pt,
                  .op_scratch = scratch + pt * threads, .fast_scratch = scratch, .fast_per_thread = pt};
    conv2d_run(&ex, path, g, w, in, out, ep);
    free(scratch);
    threadpool_free(pool);
    return 0;
}

static void conv_case(const kernel_set *kt, int id)
{
    int n = rng_int(1, 3), k, stride;
    int kind = rng_int(0, 3); /* 0: 1x1, 1-2: 3x3 s1 (Winograd where available), 3: 3x3 s2 */
    k = kind == 0 ? 1 : 3;
    stride = kind == 3 ? 2 : 1;
    conv_geom g = {rng_int(1, 45), rng_int(1, 41), rng_int(1, 41), rng_int(1, 45), 0, 0, k, stride, k / 2};
    if (id == 0) { /* big enough for several K blocks, tile blocks and channel parts */
        g.in_c = 300; g.in_h = 37; g.in_w = 70; g.out_c = 70; g.k = k = 3; g.stride = stride = 1; g.pad = 1;
    }
    if (id == 1) { g.in_c = 270; g.in_h = 17; g.in_w = 9; g.out_c = 37; g.k = k = 1; g.stride = stride = 1; g.pad = 0; }
    if (id >= 2 && id <= 12) { /* wide rows: Winograd runs of 16+ tiles in one tile row, long im2col runs */
        static const int wide[11][4] = {{131, 9, 3, 1}, {64, 6, 3, 1}, {200, 7, 3, 2}, {97, 13, 3, 2}, {66, 5, 3, 1}, {129, 3, 1, 1},
                                       {64, 16, 1, 1} /* 4 KiB planes: the packed 1x1 path */,
                                       {200, 23, 3, 1}, {64, 70, 3, 1}, {120, 40, 3, 1}, {90, 50, 3, 1} /* 256+ tiles */};
        g.in_w = wide[id - 2][0]; g.in_h = wide[id - 2][1]; g.k = k = wide[id - 2][2];
        g.stride = stride = wide[id - 2][3]; g.pad = k / 2;
    }
    g.out_h = (g.in_h + 2 * g.pad - k) / stride + 1;
    g.out_w = (g.in_w + 2 * g.pad - k) / stride + 1;
    if (id == 0)
        n = 3; /* 540 tiles: Winograd's many-tiles plan */
    if (conv2d_winograd_applies(kt, 1, &g))
        winograd_cases++, winograd_few_cases += conv2d_winograd_few_applies(&g, n);
    int extra = rng_int(0, 3);
    cspresnet_act act = (cspresnet_act)rng_int(0, CSPRESNET_ACT_NONE);
    int use_bias = rng_int(0, 3) > 0, use_res = rng_int(0, 1), use_ep = rng_int(0, 4) > 0;
    long in_sz = (long)n * g.in_c * g.in_h * g.in_w, w_sz = (long)g.out_c * g.in_c * k * k;
    long plane = (long)g.out_h * g.out_w, bstride = (g.out_c + extra) * plane;
    float *x = malloc(in_sz * sizeof *x), *w = malloc(w_sz * sizeof *w), *bias = malloc(g.out_c * sizeof *bias);
    float *res = malloc(n * bstride * sizeof *res), *outs[3];
    for (long i = 0; i < in_sz; i++) x[i] = 4.0f * rng_float();
    for (long i = 0; i < w_sz; i++) w[i] = rng_float() / sqrtf((float)(g.in_c * k * k));
    for (int i = 0; i < g.out_c; i++) bias[i] = rng_float();
    for (long i = 0; i < n * bstride; i++) res[i] = rng_float();
    tensor4 tin = {x, n, g.in_c, g.in_h, g.in_w, (long)g.in_c * g.in_h * g.in_w};
    tensor4 tres = {res + extra * plane, n, g.out_c, g.out_h, g.out_w, bstride};
    conv_epilogue ep = {use_bias ? bias : NULL, act, use_res ? &tres : NULL};
    for (int v = 0; v < 3; v++) {
        outs[v] = malloc(n * bstride * sizeof *outs[v]);
        for (long i = 0; i < n * bstride; i++) outs[v][i] = 7.0f; /* untouched channels stay 7 */
        tensor4 tout = {outs[v], n, g.out_c, g.out_h, g.out_w, bstride};
        const kernel_set *t = v == 0 ? kernel_set_select("ref") : kt;
        run_conv(t, v == 2 ? 2 : 1, &g, w, &tin, &tout, use_ep ? &ep : NULL);
    }
    double maxref = 0, maxdiff = 0;
    int slice_ok = 1, same_bits = memcmp(outs[1], outs[2], n * bstride * sizeof(float)) == 0;
    for (int b = 0; b < n; b++)
        for (long c = 0; c < g.out_c + extra; c++)
            for (long i = 0; i < plane; i++) {
                long at = b * bstride + c * plane + i;
                if (c >= g.out_c) {
                    slice_ok &= outs[1][at] == 7.0f && outs[2][at] == 7.0f;
                    continue;
                }
                double r = outs[0][at], d = fabs(r - outs[1][at]), d2 = fabs(r - outs[2][at]);
                maxref = fmax(maxref, fabs(r));
                maxdiff = fmax(maxdiff, fmax(d, d2));
                if (isnan(d) || isnan(d2)) maxdiff = INFINITY;
            }
    CHECK(maxdiff <= 1e-3 * maxref && slice_ok && same_bits,
          "isa=%s case %d: n=%d in %dx%dx%d -> out %dx%dx%d k=%d s=%d extra=%d act=%d bias=%d res=%d "
          "epilogue=%d: max|diff| %.3g, max|ref| %.3g, slice ok %d, 1 vs 2 threads identical %d",
          kt->isa, id, n, g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w, k, stride, extra, (int)act,
          use_bias, use_res, use_ep, maxdiff, maxref, slice_ok, same_bits);
    for (int v = 0; v < 3; v++) free(outs[v]);
    free(x); free(w); free(bias); free(res);
}

/* The fast epilogue kernel against the reference activation, every activation. */
static void epilogue_case(const kernel_set *kt, cspresnet_act act)
{
    enum { COUNT = 1037 };
    float x[COUNT], ref[COUNT], res[COUNT];
    for (int i = 0; i < COUNT; i++) {
        x[i] = i < 8 ? (float[]){-100.f, -88.5f, -30.f, 0.f, 30.f, 88.5f, 100.f, -1e-8f}[i] : 12.0f * rng_float();
        res[i] = rng_float();
    }
    memcpy(ref, x, sizeof x);
    f32_add_scalar__ref(ref, COUNT, 0.25f);
    f32_activation__ref(act, ref, COUNT);
    f32_add_scaled__ref(ref, res, 1.0f, ref, COUNT);
    kt->conv->bias_act(x, COUNT - 3, 0.25f, act, res); /* the last 3 must stay untouched */
    double maxdiff = 0, maxref = 0;
    for (int i = 0; i < COUNT - 3; i++) {
        maxdiff = fmax(maxdiff, fabs((double)x[i] - ref[i]));
        maxref = fmax(maxref, fabs((double)ref[i]));
    }
    CHECK(maxdiff <= 1e-6 * maxref + 1e-6 && !isnan(maxdiff), "isa=%s epilogue act=%d: max|diff| %.3g, max|ref| %.3g",
          kt->isa, (int)act, maxdiff, maxref);
}

/* The table's plane mean against the reference (double sums both; order differs). */
static void mean_case(const kernel_set *kt)
{
    static const long counts[] = {1, 15, 16, 17, 31, 32, 33, 400, 1000, 25600};
    static float x[25600];
    for (long i = 0; i < 25600; i++)
        x[i] = 3.0f * rng_float() + 0.5f;
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        float got = kt->reduce->mean(x + 3, counts[c] - (counts[c] > 3 ? 3 : 0)), want = f32_mean__ref(x + 3, counts[c] - (counts[c] > 3 ? 3 : 0));
        CHECK(fabsf(got - want) <= 1e-6f * fabsf(want) + 1e-7f, "isa=%s mean of %ld: %.9g, reference %.9g", kt->isa,
              counts[c], got, want);
    }
}

int main(void)
{
    static const char *const isas[] = {"generic", "avx2", "avx512"};
    int tested = 0;
    for (int i = 0; i < 3; i++) {
        const kernel_set *kt = kernel_set_select(isas[i]);
        if (strcmp(kt->isa, isas[i]) != 0) {
            printf("isa %s: not supported by this CPU, not tested\n", isas[i]);
            continue;
        }
        tested++;
        int before = harness_passed;
        for (int a = 0; a < CSPRESNET_ACT_COUNT; a++)
            epilogue_case(kt, (cspresnet_act)a);
        mean_case(kt);
        for (int c = 0; c < 60; c++)
            conv_case(kt, c);
        printf("isa %s: %d cases passed, %d of them by Winograd F(4,3) (%d with few tiles)\n", kt->isa,
               harness_passed - before, winograd_cases, winograd_few_cases);
        CHECK(!kt->winograd || (winograd_cases - winograd_few_cases >= 5 && winograd_few_cases >= 5),
              "isa=%s: too few conv cases took each Winograd path", kt->isa);
        winograd_cases = winograd_few_cases = 0;
    }
    printf("isas tested: %d\n", tested);
    return harness_done() || tested == 0;
}
