/*
 * test_conv.c - the im2col + blocked GEMM convolution against a direct 7-loop
 * convolution written here as the oracle, on random shapes (odd channels, odd and
 * tiny H/W, stride 1 and 2, 1x1 and 3x3, batch 1-3, outputs into channel slices),
 * with 1, 2 and 3 threads; also checks that thread counts give bit-identical results.
 * Prints the whole configuration of any failing case; one check per case (harness.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/ops.h"

static void direct_conv(const conv_geom *g, int n, const float *in, const float *w, float *out,
                        long out_bstride)
{
    for (int b = 0; b < n; b++)
        for (int oc = 0; oc < g->out_c; oc++)
            for (int oy = 0; oy < g->out_h; oy++)
                for (int ox = 0; ox < g->out_w; ox++) {
                    double acc = 0;
                    for (int ic = 0; ic < g->in_c; ic++)
                        for (int ky = 0; ky < g->k; ky++)
                            for (int kx = 0; kx < g->k; kx++) {
                                int iy = oy * g->stride - g->pad + ky, ix = ox * g->stride - g->pad + kx;
                                if (iy < 0 || iy >= g->in_h || ix < 0 || ix >= g->in_w)
                                    continue;
                                acc += (double)in[((long)(b * g->in_c + ic) * g->in_h + iy) * g->in_w + ix] *
                                       w[((oc * g->in_c + ic) * g->k + ky) * g->k + kx];
                            }
                    out[b * out_bstride + ((long)oc * g->out_h + oy) * g->out_w + ox] = (float)acc;
                }
}

static int run_case(int id, int threads_max)
{
    int n = rng_int(1, 3), k = rng_int(0, 1) ? 3 : 1, stride = rng_int(1, 2);
    conv_geom g = {rng_int(1, 40), rng_int(1, 37), rng_int(1, 37), rng_int(1, 37), 0, 0, k, stride, k / 2};
    if (id == 0) { /* one case large enough for several K and N blocks */
        g.in_c = 70; g.in_h = 23; g.in_w = 19; g.out_c = 13; k = g.k = 3; g.pad = 1; stride = g.stride = 1;
    }
    g.out_h = (g.in_h + 2 * g.pad - k) / stride + 1;
    g.out_w = (g.in_w + 2 * g.pad - k) / stride + 1;
    int extra_c = rng_int(0, 5); /* write into a channel slice of a wider tensor */
    long in_sz = (long)n * g.in_c * g.in_h * g.in_w, w_sz = (long)g.out_c * g.in_c * k * k;
    long out_plane = (long)g.out_h * g.out_w, out_bstride = (g.out_c + extra_c) * out_plane;
    float *in = malloc(in_sz * sizeof *in), *w = malloc(w_sz * sizeof *w);
    float *ref = calloc(n * out_bstride, sizeof *ref), *got[4] = {0};
    for (long i = 0; i < in_sz; i++) in[i] = rng_float();
    for (long i = 0; i < w_sz; i++) w[i] = rng_float();
    direct_conv(&g, n, in, w, ref + extra_c * out_plane, out_bstride);
    int fail = 0;
    for (int t = 1; t <= threads_max; t++) {
        threadpool *pool;
        error_buf err;
        if (threadpool_create(t, &pool, &err) != CSPRESNET_OK) { puts(err.text); return 1; }
        float *scratch = malloc(sizeof(float) * conv2d_scratch_per_thread() * t);
        op_exec ex = {.pool = pool, .kernels = kernel_set_select(NULL), .scratch = scratch,
                      .scratch_per_thread = conv2d_scratch_per_thread()};
        got[t] = calloc(n * out_bstride, sizeof(float));
        tensor4 tin = {in, n, g.in_c, g.in_h, g.in_w, (long)g.in_c * g.in_h * g.in_w};
        tensor4 tout = {got[t] + extra_c * out_plane, n, g.out_c, g.out_h, g.out_w, out_bstride};
        conv2d_run(&ex, CONV_PATH_REF, &g, w, &tin, &tout, NULL);
        double maxref = 0, maxdiff = 0;
        for (long i = 0; i < n * out_bstride; i++) {
            maxref = fmax(maxref, fabs(ref[i]));
            maxdiff = fmax(maxdiff, fabs(ref[i] - got[t][i]));
        }
        if (maxdiff > 1e-5 * (maxref > 1 ? maxref : 1)) {
            printf("FAIL case %d threads %d: n %d in %dx%dx%d out %dx%dx%d k %d stride %d pad %d slice +%d: "
                   "max|diff| %g max|ref| %g\n", id, t, n, g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w,
                   k, stride, g.pad, extra_c, maxdiff, maxref);
            fail = 1;
        }
        if (t > 1 && memcmp(got[t], got[1], sizeof(float) * n * out_bstride) != 0) {
            printf("FAIL case %d: %d threads differ bitwise from 1 thread\n", id, t);
            fail = 1;
        }
        free(scratch);
        threadpool_free(pool);
    }
    for (int t = 1; t <= threads_max; t++) free(got[t]);
    free(in); free(w); free(ref);
    return fail;
}

int main(void)
{
    for (int i = 0; i < 60; i++)
        CHECK(run_case(i, 3) == 0, "case %d (above)", i);
    return harness_done();
}
