/*
 * test_train_kernels.c - the training path's fast kernels and ops against their
 * reference twins, for every kernel set the CPU has, on random shapes (odd channel
 * counts and sizes, batch > 1, maps from 1 pixel up to several column chunks):
 *   - f32_im2col_rows_runs__generic == f32_im2col_rows__generic, bit for bit;
 *   - conv2d_backward (fast, per ISA) vs conv2d_backward_ref: dW and dX within
 *     1e-5 * max|ref|, and 1 vs 2 threads bit-identical;
 *   - conv_cols_forward vs the reference conv (CONV_PATH_REF), same bounds;
 *   - the train point-wise kernels of each ISA vs the reference ones.
 * Prints every failing configuration and harness.h's closing "N passed, M failed" line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ops/train_ops.h"

static double rel_err(const float *a, const float *b, long n)
{
    double m = 0.0, d = 0.0;
    for (long i = 0; i < n; i++) {
        if (fabs(b[i]) > m)
            m = fabs(b[i]);
        if (fabs(a[i] - b[i]) > d)
            d = fabs(a[i] - b[i]);
        if (a[i] != a[i])
            return INFINITY;
    }
    return m > 0 ? d / m : d;
}

static void test_im2col(void)
{
    const f32_train_config *fast = kernel_set_select("avx512")->train;
    for (int it = 0; it < 400; it++) {
        conv_geom g;
        g.k = (int[]){1, 3, 5}[rng_int(0, 2)];
        g.stride = rng_int(1, 2);
        g.pad = rng_int(0, g.k / 2 + 1);
        g.in_c = rng_int(1, 5);
        g.in_h = rng_int(1, 13);
        g.in_w = it % 4 == 0 ? rng_int(14, 90) : rng_int(1, 13);   /* wide: whole 16-lane blocks */
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
        if (g.out_h < 1 || g.out_w < 1 || g.in_h + 2 * g.pad < g.k || g.in_w + 2 * g.pad < g.k)
            continue;
        g.out_c = 1;
        long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w;
        float *img = malloc(sizeof(float) * g.in_c * g.in_h * g.in_w);
        rng_fill(img, (long)g.in_c * g.in_h * g.in_w);
        int k0 = rng_int(0, (int)K - 1), kc = rng_int(1, (int)(K - k0));
        long n0 = rng_int(0, (int)P - 1);
        int nc = rng_int(1, (int)(P - n0));
        long ldp = nc + rng_int(0, 3);
        float *a = malloc(sizeof(float) * kc * ldp), *b = malloc(sizeof(float) * kc * ldp);
        memset(a, 0x55, sizeof(float) * kc * ldp);
        memset(b, 0x55, sizeof(float) * kc * ldp);
        f32_im2col_rows__generic(&g, img, k0, kc, n0, nc, a, ldp);
        f32_im2col_rows_runs__generic(&g, img, k0, kc, n0, nc, b, ldp);
        char what[200];
        snprintf(what, sizeof what, "im2col runs: C%d %dx%d k%d s%d p%d rows %d+%d cols %ld+%d", g.in_c,
                 g.in_h, g.in_w, g.k, g.stride, g.pad, k0, kc, n0, nc);
        CHECK(memcmp(a, b, sizeof(float) * kc * ldp) == 0, "%s", what);
        if (fast->im2col_runs) {
            memset(b, 0x55, sizeof(float) * kc * ldp);
            fast->im2col_runs(&g, img, k0, kc, n0, nc, b, ldp);
            char what2[240];
            snprintf(what2, sizeof what2, "%s (%s)", what, fast->name);
            CHECK(memcmp(a, b, sizeof(float) * kc * ldp) == 0, "%s", what2);
        }
        int idx[4096];
        memset(b, 0x55, sizeof(float) * kc * ldp);
        f32_im2col_rows_table__generic(&g, img, 0, 1, k0, kc, n0, nc, b, ldp, idx);
        strcat(what, " (table)");
        CHECK(memcmp(a, b, sizeof(float) * kc * ldp) == 0, "%s", what);
        free(a);
        free(b);
        free(img);
    }
}

/* The AVX-512 shifted-plane im2col against the generic one, several images at once. */
/* The table's col2im-add against f32_col2im_add__generic, bit for bit (same order of
 * the terms of each element), on random strided geometries and chunks. */
static void test_col2im(void)
{
    const f32_train_config *fast = kernel_set_select("avx512")->train;
    for (int it = 0; it < 300; it++) {
        conv_geom g;
        g.k = rng_int(1, 3) == 1 ? 1 : 3;
        g.stride = rng_int(1, 2);
        g.pad = rng_int(0, g.k / 2);
        g.in_c = rng_int(1, 20);
        g.in_h = rng_int(1, 12);
        g.in_w = it % 3 == 0 ? rng_int(30, 90) : rng_int(1, 20);
        if (g.in_h + 2 * g.pad < g.k || g.in_w + 2 * g.pad < g.k)
            continue;
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
        g.out_c = 1;
        long P = (long)g.out_h * g.out_w, xs = (long)g.in_c * g.in_h * g.in_w;
        int c0 = rng_int(0, g.in_c - 1), cc = rng_int(1, g.in_c - c0);
        long p0 = rng_int(0, (int)P - 1);
        int pc = rng_int(1, (int)(P - p0) < 128 ? (int)(P - p0) : 128);
        long ldcol = pc + rng_int(0, 3);
        float *col = malloc(sizeof(float) * cc * g.k * g.k * ldcol), *a = malloc(sizeof(float) * xs),
              *b = malloc(sizeof(float) * xs);
        rng_fill(col, (long)cc * g.k * g.k * ldcol);
        rng_fill(a, xs);
        for (long i = 0; i < xs; i += 7)
            a[i] = -0.0f;   /* untouched elements keep their sign */
        memcpy(b, a, sizeof(float) * xs);
        f32_col2im_add__generic(&g, col, ldcol, c0, cc, p0, pc, a);
        fast->col2im_add(&g, col, ldcol, c0, cc, p0, pc, b);
        CHECK(memcmp(a, b, sizeof(float) * xs) == 0, "%s col2im: C%d %dx%d k%d s%d p%d channels %d+%d pixels %ld+%d",
              fast->name, g.in_c, g.in_h, g.in_w, g.k, g.stride, g.pad, c0, cc, p0, pc);
        free(col);
        free(a);
        free(b);
    }
}

static void test_im2col_shift(void)
{
    const kernel_set *kt = kernel_set_select("avx512");
    if (strcmp(kt->isa, "avx512") != 0)
        return;
    const f32_train_config *tk = kt->train;
    for (int it = 0; it < 300; it++) {
        conv_geom g;
        g.k = (int[]){1, 3, 5}[rng_int(0, 2)];
        g.stride = 1;
        g.pad = g.k / 2;
        g.in_c = rng_int(1, 4);
        g.in_h = rng_int(1, 20);
        g.in_w = rng_int(1, 20);
        g.out_h = g.in_h;
        g.out_w = g.in_w;
        g.out_c = 1;
        int nimg = rng_int(1, 3);
        long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w, istride = (long)g.in_c * P + rng_int(0, 5);
        float *img = malloc(sizeof(float) * istride * nimg);
        rng_fill(img, istride * nimg);
        int k0 = rng_int(0, (int)K - 1), kc = rng_int(1, (int)(K - k0));
        long n0 = nimg > 1 ? 0 : rng_int(0, (int)P - 1);
        int nc = nimg > 1 ? (int)P : rng_int(1, (int)(P - n0));
        if (nc > 256)
            nc = 256;
        long ldp = (long)nc * nimg + rng_int(0, 3);
        float *a = malloc(sizeof(float) * kc * ldp), *b = malloc(sizeof(float) * kc * ldp);
        memset(a, 0x55, sizeof(float) * kc * ldp);
        memset(b, 0x55, sizeof(float) * kc * ldp);
        for (int i = 0; i < nimg; i++)
            f32_im2col_rows__generic(&g, img + i * istride, k0, kc, n0, nc, a + (long)i * nc, ldp);
        int done = tk->im2col_shift(&g, img, istride, nimg, k0, kc, n0, nc, b, ldp);
        char what[200];
        snprintf(what, sizeof what, "im2col shift avx512: %d images C%d %dx%d k%d rows %d+%d cols %ld+%d", nimg,
                 g.in_c, g.in_h, g.in_w, g.k, k0, kc, n0, nc);
        CHECK(done && memcmp(a, b, sizeof(float) * kc * ldp) == 0, "%s", what);
        free(a);
        free(b);
        free(img);
    }
}

/* The AVX-512 transpose and strided-gather im2col against the reference ones. */
static void test_transpose_gather(void)
{
    const kernel_set *kt = kernel_set_select("avx512");
    if (strcmp(kt->isa, "avx512") != 0)
        return;
    const f32_train_config *tk = kt->train;
    const f32_train_config *rt = kernel_set_select("ref")->train;
    for (int it = 0; it < 200; it++) {
        int rows = rng_int(1, 40), cols = rng_int(1, 40);
        long lds = cols + rng_int(0, 3), ldd = rows + rng_int(0, 3);
        float *src = malloc(sizeof(float) * rows * lds), *a = malloc(sizeof(float) * cols * ldd),
              *b = malloc(sizeof(float) * cols * ldd);
        rng_fill(src, (long)rows * lds);
        memset(a, 0, sizeof(float) * cols * ldd);
        memset(b, 0, sizeof(float) * cols * ldd);
        rt->transpose(src, lds, rows, cols, a, ldd);
        tk->transpose(src, lds, rows, cols, b, ldd);
        char what[120];
        snprintf(what, sizeof what, "avx512 transpose %dx%d lds %ld ldd %ld", rows, cols, lds, ldd);
        CHECK(memcmp(a, b, sizeof(float) * cols * ldd) == 0, "%s", what);
        free(src);
        free(a);
        free(b);
    }
    for (int it = 0; it < 300; it++) {
        conv_geom g;
        g.k = (int[]){1, 3, 5}[rng_int(0, 2)];
        g.stride = rng_int(1, 3);
        g.pad = rng_int(0, g.k / 2 + 1);
        g.in_c = rng_int(1, 4);
        g.in_h = rng_int(1, 12);
        g.in_w = rng_int(1, 12);
        if (g.in_h + 2 * g.pad < g.k || g.in_w + 2 * g.pad < g.k)
            continue;
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
        g.out_c = 1;
        int nimg = rng_int(1, 3);
        long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w, istride = (long)g.in_c * g.in_h * g.in_w + 2;
        float *img = malloc(sizeof(float) * istride * nimg);
        rng_fill(img, istride * nimg);
        int k0 = rng_int(0, (int)K - 1), kc = rng_int(1, (int)(K - k0));
        long n0 = nimg > 1 ? 0 : rng_int(0, (int)P - 1);
        int nc = nimg > 1 ? (int)P : rng_int(1, (int)(P - n0));
        long ldp = (long)nc * nimg + rng_int(0, 3);
        float *a = malloc(sizeof(float) * kc * ldp), *b = malloc(sizeof(float) * kc * ldp);
        memset(a, 0x55, sizeof(float) * kc * ldp);
        memset(b, 0x55, sizeof(float) * kc * ldp);
        int idx[512];
        rt->im2col_gather(&g, img, istride, nimg, k0, kc, n0, nc, a, ldp, idx);
        tk->im2col_gather(&g, img, istride, nimg, k0, kc, n0, nc, b, ldp, idx);
        char what[200];
        snprintf(what, sizeof what, "im2col gather avx512: %d images C%d %dx%d k%d s%d p%d", nimg, g.in_c, g.in_h,
                 g.in_w, g.k, g.stride, g.pad);
        CHECK(memcmp(a, b, sizeof(float) * kc * ldp) == 0, "%s", what);
        free(a);
        free(b);
        free(img);
    }
}

typedef struct bufs {
    float *x, *w, *dy, *dx, *dw, *out;
} bufs;

static void run_backward(const kernel_set *kt, int threads, const conv_geom *g, int n, const bufs *in,
                         float *dx, float *dw, int use_ref, int assign)
{
    threadpool *pool;
    error_buf e;
    if (threadpool_create(threads, &pool, &e) != CSPRESNET_OK)
        abort();
    long pt = 0, sh = 0;
    if (use_ref) {
        pt = conv2d_backward_scratch_per_thread(g->out_c, g->k);
        sh = conv2d_backward_shared_floats(g->out_c, g->in_c, g->k);
    } else {
        conv2d_backward_scratch(kt, g, n, &pt, &sh);
    }
    float *scratch = malloc(sizeof(float) * (pt * threads + sh + 16));
    op_exec ex = {.pool = pool, .kernels = kt, .scratch = scratch, .scratch_per_thread = pt,
                  .op_scratch = scratch + pt * threads};
    tensor4 x = {in->x, n, g->in_c, g->in_h, g->in_w, (long)g->in_c * g->in_h * g->in_w};
    tensor4 dy = {in->dy, n, g->out_c, g->out_h, g->out_w, (long)g->out_c * g->out_h * g->out_w};
    tensor4 dxt = x;
    dxt.data = dx;
    if (use_ref)
        conv2d_backward_ref(&ex, g, in->w, &x, &dy, &dxt, dw);
    else
        conv2d_backward(&ex, g, in->w, &x, &dy, &dxt, assign, dw);
    free(scratch);
    threadpool_free(pool);
}

static void run_forward(const kernel_set *kt, int threads, const conv_geom *g, int n, const bufs *in,
                        float *out, int use_ref)
{
    threadpool *pool;
    error_buf e;
    if (threadpool_create(threads, &pool, &e) != CSPRESNET_OK)
        abort();
    long pt = use_ref ? conv2d_scratch_per_thread() : conv_cols_scratch(kt, g);
    float *scratch = malloc(sizeof(float) * (pt * threads + 16));
    op_exec ex = {.pool = pool, .kernels = kt, .scratch = scratch, .scratch_per_thread = pt, .op_scratch = scratch};
    tensor4 x = {in->x, n, g->in_c, g->in_h, g->in_w, (long)g->in_c * g->in_h * g->in_w};
    tensor4 o = {out, n, g->out_c, g->out_h, g->out_w, (long)g->out_c * g->out_h * g->out_w};
    if (use_ref)
        conv2d_run(&ex, CONV_PATH_REF, g, in->w, &x, &o, NULL);
    else
        conv_cols_forward(&ex, g, in->w, &x, &o);
    free(scratch);
    threadpool_free(pool);
}

static void test_conv(const kernel_set *kt, const kernel_set *ref)
{
    for (int it = 0; it < 40; it++) {
        conv_geom g;
        int kind = rng_int(0, 3);
        g.k = kind == 0 ? 1 : 3;
        g.stride = kind == 2 ? 2 : 1;
        g.pad = g.k / 2;
        if (kind == 3) {   /* neither 1x1 nor "same": the col2im path */
            g.pad = 0;
            g.stride = rng_int(1, 2);
        }
        g.in_c = rng_int(1, 40);
        g.out_c = rng_int(1, 70);
        int n = rng_int(1, 5);
        int big = rng_uniform() < 0.3;
        g.in_h = big ? rng_int(12, 30) : rng_int(1, 9);
        g.in_w = big ? rng_int(12, 30) : rng_int(1, 9);
        if (it < 6) {   /* large maps, few weight rows: dW^T packed per chunk (local mode) */
            g.in_c = rng_int(1, 6);
            g.in_h = rng_int(36, 48);
            g.in_w = rng_int(36, 48);
            n = rng_int(2, 3);
        } else if (it < 8) {   /* local mode with two row blocks (K = 180 > 128 with k = 3) */
            g.in_c = 20;
            g.in_h = rng_int(78, 84);
            g.in_w = rng_int(78, 84);
            n = 2;
        }
        if (g.in_h + 2 * g.pad < g.k || g.in_w + 2 * g.pad < g.k)
            continue;
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
        long xs = (long)n * g.in_c * g.in_h * g.in_w, ys = (long)n * g.out_c * g.out_h * g.out_w;
        long ws = (long)g.out_c * g.in_c * g.k * g.k;
        bufs b = {malloc(sizeof(float) * xs), malloc(sizeof(float) * ws), malloc(sizeof(float) * ys),
                  NULL, NULL, NULL};
        rng_fill(b.x, xs);
        rng_fill(b.w, ws);
        rng_fill(b.dy, ys);
        float *dx0 = malloc(sizeof(float) * xs), *dx[3], *dw[3], *out[3];
        rng_fill(dx0, xs);   /* dX accumulates; or (odd it) the fast path assigns over it */
        const int assign = it % 2;
        for (int v = 0; v < 3; v++) {
            dx[v] = malloc(sizeof(float) * xs);
            memcpy(dx[v], dx0, sizeof(float) * xs);
            if (assign && v == 0)
                memset(dx[v], 0, sizeof(float) * xs);
            dw[v] = malloc(sizeof(float) * ws);
            out[v] = malloc(sizeof(float) * ys);
        }
        run_backward(ref, 1, &g, n, &b, dx[0], dw[0], 1, 0);
        run_backward(kt, 1, &g, n, &b, dx[1], dw[1], 0, assign);
        run_backward(kt, 2, &g, n, &b, dx[2], dw[2], 0, assign);
        run_forward(ref, 1, &g, n, &b, out[0], 1);
        run_forward(kt, 1, &g, n, &b, out[1], 0);
        run_forward(kt, 2, &g, n, &b, out[2], 0);
        char what[256];
        snprintf(what, sizeof what, "%s conv N%d C%d %dx%d -> OC%d %dx%d k%d s%d p%d%s", kt->isa, n, g.in_c,
                 g.in_h, g.in_w, g.out_c, g.out_h, g.out_w, g.k, g.stride, g.pad, assign ? " (dX assigned)" : "");
        char msg[400];
        double e1 = rel_err(dw[1], dw[0], ws), e2 = rel_err(dx[1], dx[0], xs), e3 = rel_err(out[1], out[0], ys);
        snprintf(msg, sizeof msg, "%s: dW rel err %.3g", what, e1);
        CHECK(e1 <= 1e-5, "%s", msg);
        snprintf(msg, sizeof msg, "%s: dX rel err %.3g", what, e2);
        CHECK(e2 <= 1e-5, "%s", msg);
        snprintf(msg, sizeof msg, "%s: forward rel err %.3g", what, e3);
        CHECK(e3 <= 1e-5, "%s", msg);
        snprintf(msg, sizeof msg, "%s: 1 vs 2 threads differ", what);
        CHECK(memcmp(dw[1], dw[2], sizeof(float) * ws) == 0 && memcmp(dx[1], dx[2], sizeof(float) * xs) == 0 &&
                  memcmp(out[1], out[2], sizeof(float) * ys) == 0,
              "%s", msg);
        for (int v = 0; v < 3; v++) {
            free(dx[v]);
            free(dw[v]);
            free(out[v]);
        }
        free(dx0);
        free(b.x);
        free(b.w);
        free(b.dy);
    }
}

/* The BN+activation kernels of the AVX-512 training table against the reference
 * ones, for every activation, on runs of every length mod 16. */
static void test_pointwise(void)
{
    const f32_train_config *ref = kernel_set_select("ref")->train;
    const kernel_set *kt = kernel_set_select("avx512");
    if (strcmp(kt->isa, "avx512") != 0)
        return;
    const f32_train_config *fast = kt->train;
    CHECK(strcmp(fast->name, "f32-train-avx512") == 0, "avx512 train config chosen for the avx512 kernel set");
    for (int act = 0; act < CSPRESNET_ACT_COUNT; act++)
        for (int it = 0; it < 20; it++) {
            long n = rng_int(1, 35);
            int runs = rng_int(1, 3);
            /* odd it: the fast kernel and the reference's second call assign over
             * garbage; the reference's first call adds to zeros */
            const int assign = it % 2;
            float x[128], da[128], y0[128], y1[128], dx0[128], dx1[128], dx2[128];
            for (long i = 0; i < 128; i++) {
                x[i] = (float)(6.0 * rng_uniform() - 2.0);
                da[i] = (float)(2.0 * rng_uniform() - 1.0);
                dx0[i] = dx1[i] = dx2[i] = (float)rng_uniform();
                if (assign)
                    dx0[i] = 0.0f;
                y0[i] = y1[i] = 0.0f;
            }
            bn_act_params p = {.mean = 0.3f, .rstd = 1.7f, .weight = 1.2f, .bias = -0.4f,
                               .mdy = 0.05f, .mdyx = -0.02f, .act = (cspresnet_act)act};
            p.scale = p.rstd * p.weight;
            p.shift = p.bias - p.mean * p.scale;
            double a0 = 0.5, a1 = 0.25, b0 = 0.5, b1 = 0.25, c0 = 0, c1 = 0, d0 = 0, d1 = 0;
            /* runs n + 1 floats apart (x, da, dx) and n + 2 apart (y) */
            ref->bn_stats(x, n + 1, runs, n, &a0, &a1);
            fast->bn_stats(x, n + 1, runs, n, &b0, &b1);
            ref->bn_act_apply(x, n + 1, y0, n + 2, runs, n, &p);
            fast->bn_act_apply(x, n + 1, y1, n + 2, runs, n, &p);
            ref->bn_act_bwd_reduce(x, n + 1, da, n + 1, runs, n, &p, &c0, &c1);
            fast->bn_act_bwd_reduce(x, n + 1, da, n + 1, runs, n, &p, &d0, &d1);
            ref->bn_act_bwd_apply(x, n + 1, da, n + 1, dx0, n + 1, runs, n, &p);
            p.assign = assign;
            fast->bn_act_bwd_apply(x, n + 1, da, n + 1, dx1, n + 1, runs, n, &p);
            ref->bn_act_bwd_apply(x, n + 1, da, n + 1, dx2, n + 1, runs, n, &p);
            for (long i = 0; i < 128 && assign; i++)
                if (i % (n + 1) == n || i >= runs * (n + 1))   /* gaps: not written, still garbage */
                    dx1[i] = dx2[i] = 0.0f;
            n = 128;
            char what[160];
            snprintf(what, sizeof what, "avx512 bn+%s kernels, runs of %d%s", cspresnet_act_name((cspresnet_act)act), it,
                     assign ? ", dx assigned" : "");
            double e = rel_err(y1, y0, n), f = rel_err(dx1, dx0, n), f2 = rel_err(dx2, dx0, n);
            int ok = fabs(a0 - b0) <= 1e-9 * (1 + fabs(a0)) && fabs(a1 - b1) <= 1e-9 * (1 + fabs(a1)) &&
                     fabs(c0 - d0) <= 1e-5 * (1 + fabs(c0)) && fabs(c1 - d1) <= 1e-5 * (1 + fabs(c1)) &&
                     e <= 2e-6 && f <= 2e-6 && f2 == 0.0;
            if (!ok)
                printf("  stats %g %g / %g %g, reduce %g %g / %g %g, apply err %g, bwd err %g, ref %g\n", a0, a1,
                       b0, b1, c0, c1, d0, d1, e, f, f2);
            CHECK(ok, "%s", what);
        }
}

int main(void)
{
    test_pointwise();
    test_im2col_shift();
    test_col2im();
    test_transpose_gather();
    test_im2col();
    const kernel_set *ref = kernel_set_select("ref");
    const char *isas[] = {"generic", "avx2", "avx512"};
    int tested = 0;
    for (int i = 0; i < 3; i++) {
        const kernel_set *kt = kernel_set_select(isas[i]);
        if (strcmp(kt->isa, isas[i]) != 0 || !kt->gemm)
            continue;
        tested++;
        test_conv(kt, ref);
    }
    printf("isas tested: %d\n", tested);
    return harness_done();
}
