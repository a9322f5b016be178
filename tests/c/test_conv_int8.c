/*
 * test_conv_int8.c - the int8 convolution (ops/conv2d_int8.c) against an integer oracle
 * written here: weights quantized per output channel (w_scale = max|w| / 127,
 * q = rne(w / w_scale)), the input per tensor with a given scale s (q = clamp(rne(x *
 * (1/s)) + z, 0, 255) - z with a zero point z, padding 0), a direct convolution summed exactly in int64, then
 * (float)sum * (w_scale * s) and the fp32 epilogue (bias, activation, residual) in the
 * same order as the library's. Without a swish epilogue the result must be the oracle's
 * bits on every kernel set this CPU runs (the reference u8s8 tile and the AVX-512 VNNI
 * one), for 1 and 2 threads; with swish (whose fast exp differs from libm's by a few
 * ulps) within 4e-6. The prepared s8 rows must equal the oracle's weights. Random
 * shapes as in test_conv_bf16.c: 1x1 / 3x3 s1 / 3x3 s2, odd channel counts (K not a
 * multiple of 4), tiny and wide maps, batch 1-3, K over several CONV_KC blocks, output
 * channel parts, channel-slice outputs; scales below max|x| so that clamping happens.
 * Checks that quantization happened (the result differs from the fp32 conv). Closes
 * with harness.h's "N passed, M failed" line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_cases.h"
#include "harness.h"
#include "graph/graph.h"
#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

static float act_ref(cspresnet_act act, float v)
{
    switch (act) {
    case CSPRESNET_ACT_RELU: return v > 0 ? v : 0;
    case CSPRESNET_ACT_SWISH: return v / (1.0f + expf(-v));
    default: return v;
    }
}

static int qclamp(float v, int lo, int hi)
{
    float r = nearbyintf(v);
    return r < lo ? lo : r > hi ? hi : (int)r;
}

/* An activation's quantized value: clamp(rne(v) + zero, 0, 255) - zero. */
static int quant_x(float v, int zero)
{
    long r = lrintf(v) + zero;
    return (int)(r < 0 ? 0 : r > 255 ? 255 : r) - zero;
}

static void run(const kernel_set *kt, int threads, const conv_geom *g, const float *prepared, const tensor4 *in,
                const tensor4 *out, const conv_epilogue *ep)
{
    threadpool *pool;
    error_buf e;
    if (threadpool_create(threads, &pool, &e) != CSPRESNET_OK) {
        CHECK(0, "threadpool: %s", e.text);
        return;
    }
    int taps = conv2d_int8_taps_applies(kt, g);
    long pt = taps ? 0 : conv2d_int8_scratch_per_thread(kt, (long)g->in_c * g->k * g->k);
    long sh = taps ? conv2d_int8_taps_shared(kt, g) : 0;
    float *scratch = aligned_alloc(64, sizeof(float) * (size_t)((pt * threads + sh + 16 + 15) & ~15L));
    op_exec ex = {.pool = pool, .kernels = kt, .scratch = scratch, .scratch_per_thread = pt,
                  .op_scratch = scratch + pt * threads, .fast_scratch = scratch, .fast_per_thread = pt};
    if (taps)
        conv2d_int8_taps_forward(&ex, g, prepared, in, out, ep);
    else
        conv2d_int8_forward(&ex, g, prepared, in, out, ep);
    free(scratch);
    threadpool_free(pool);
}

typedef struct oracle {
    const conv_geom *g;
    int n;
    const float *w, *x, *res;
    float act_scale;
    int act_zero;
    const conv_epilogue *ep;
    long wide_c;
} oracle;

/* The oracle's quantized weights of row oc into q (K values); returns w_scale. */
static float quant_row(const float *w, long K, int *q)
{
    float m = 0;
    for (long k = 0; k < K; k++)
        m = fmaxf(m, fabsf(w[k]));
    float ws = m / 127.0f;
    for (long k = 0; k < K; k++)
        q[k] = ws > 0 ? qclamp(w[k] / ws, -127, 127) : 0;
    return ws;
}

/* got against the oracle: 0 or the worst relative difference (swish) in *worst;
 * returns the number of mismatching elements (non-swish: must be 0). */
static long check_oracle(const oracle *o, const float *got, double *worst, double *moved)
{
    const conv_geom g = *o->g;
    const long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w;
    int *q = malloc(sizeof(int) * (size_t)K);
    const float inv = 1.0f / o->act_scale;
    long bad = 0;
    *worst = *moved = 0;
    for (int oc = 0; oc < g.out_c; oc++) {
        float ws = quant_row(o->w + oc * K, K, q);
        float scale = ws * o->act_scale;
        for (int b = 0; b < o->n; b++)
            for (long p = 0; p < P; p++) {
                int oy = (int)(p / g.out_w), ox = (int)(p % g.out_w);
                long acc = 0;
                double exact = 0;
                for (int ci = 0; ci < g.in_c; ci++)
                    for (int ky = 0; ky < g.k; ky++)
                        for (int kx = 0; kx < g.k; kx++) {
                            int iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                            if (iy < 0 || ix < 0 || iy >= g.in_h || ix >= g.in_w)
                                continue;
                            float xv = o->x[((long)(b * g.in_c + ci) * g.in_h + iy) * g.in_w + ix];
                            acc += (long)q[(ci * g.k + ky) * g.k + kx] * quant_x(xv * inv, o->act_zero);
                            exact += (double)o->w[oc * K + (ci * g.k + ky) * g.k + kx] * xv;
                        }
                float want = (float)acc * scale, unq = (float)exact;
                if (o->ep) {
                    want = act_ref(o->ep->act, want + o->ep->bias[oc]);
                    unq = act_ref(o->ep->act, unq + o->ep->bias[oc]);
                    if (o->ep->residual) {
                        want += o->res[(b * g.out_c + oc) * P + p];
                        unq += o->res[(b * g.out_c + oc) * P + p];
                    }
                }
                float v = got[(b * o->wide_c + oc) * P + p];
                if (v != want)
                    bad++;
                *worst = fmax(*worst, fabs((double)v - want) / (1.0 + fabs(want)));
                *moved = fmax(*moved, fabs((double)v - unq));
            }
    }
    free(q);
    return bad;
}

/* The prepared block for kt: the tap form's where the set has it (its row layout is
 * checked through the outputs only), else OC rows of K rounded up to the tile's K step,
 * in *lda quads (0 for the tap form). */
static float *prepare(const kernel_set *kt, const conv_geom *g, const float *w, float act_scale, int act_zero,
                      long *lda)
{
    const long K = (long)g->in_c * g->k * g->k;
    int taps = conv2d_int8_taps_applies(kt, g);
    long n = taps ? conv2d_int8_taps_weight_floats(kt, g) : conv2d_int8_weight_floats(kt, g->out_c, K);
    float *prep = aligned_alloc(64, sizeof(float) * (size_t)((n + 15) & ~15L));
    int8_weights src = {.w = w};
    if (taps)
        conv2d_int8_taps_weights(kt, g, &src, act_scale, act_zero, prep);
    else
        conv2d_int8_weights(kt, &src, g->out_c, K, g->k * g->k, act_scale, act_zero, prep);
    *lda = taps ? 0 : conv2d_int8_lda(kt, K);
    return prep;
}

/* The prepared s8 rows (lda quads each) against the oracle's quantized weights. */
static void check_rows(int id, const kernel_set *kt, const conv_geom *g, const float *w, const float *prep, long lda)
{
    const long K = (long)g->in_c * g->k * g->k;
    const int8_t *rows = conv2d_int8_rows(prep, g->out_c);
    int *q = malloc(sizeof(int) * (size_t)K);
    long bad = 0;
    for (int oc = 0; oc < g->out_c; oc++) {
        quant_row(w + oc * K, K, q);
        for (long k = 0; k < 4 * lda; k++)
            bad += rows[oc * 4 * lda + k] != (k < K ? q[k] : 0);
    }
    CHECK(bad == 0, "case %d (%s): %ld prepared s8 weights differ from the oracle's", id, kt->int8->name, bad);
    free(q);
}

/* A quantized file's path: conv2d_int8_quantize's logical values (q OC x K, w_scale, the
 * bias corrections for act_mean), packed for kt, must give the block packing the fp32
 * weights gives (prep), byte for byte. */
static void check_pack(int id, const kernel_set *kt, const conv_geom *g, const float *w, float act_scale,
                       int act_zero, const float *act_mean, const float *prep)
{
    const int out_c = g->out_c;
    const long K = (long)g->in_c * g->k * g->k;
    int taps = conv2d_int8_taps_applies(kt, g);
    const long floats = taps ? conv2d_int8_taps_weight_floats(kt, g) : conv2d_int8_weight_floats(kt, out_c, K);
    int8_t *q = malloc((size_t)(out_c * K) + 1);
    float *ws = malloc(sizeof(float) * (size_t)out_c);
    int32_t *corr = malloc(sizeof(int32_t) * (size_t)out_c);
    float *again = aligned_alloc(64, sizeof(float) * (size_t)((floats + 15) & ~15L));
    conv2d_int8_quantize(w, out_c, K, g->k * g->k, act_scale, act_mean, q, ws, corr);
    int8_weights src = {.q = q, .w_scale = ws, .corr = corr};
    if (taps)
        conv2d_int8_taps_weights(kt, g, &src, act_scale, act_zero, again);
    else
        conv2d_int8_weights(kt, &src, out_c, K, g->k * g->k, act_scale, act_zero, again);
    CHECK(memcmp(prep, again, sizeof(float) * (size_t)floats) == 0,
          "case %d (%s): packing the quantized values differs from packing the fp32 weights (%d x %ld%s)", id,
          kt->int8->name, out_c, K, act_mean ? ", bias corrected" : "");
    free(q);
    free(ws);
    free(corr);
    free(again);
}

static void one_case(int id, const kernel_set **sets, int n_sets)
{
    int n;
    conv_geom g = conv_case(id, &n);
    const long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w, wide_c = g.out_c + 3;
    const long xn = (long)n * g.in_c * g.in_h * g.in_w;
    float *w = malloc(sizeof(float) * (size_t)(g.out_c * K));
    float *x = malloc(sizeof(float) * (size_t)xn);
    float *bias = malloc(sizeof(float) * (size_t)g.out_c);
    float *res = malloc(sizeof(float) * (size_t)(n * g.out_c * P));
    rng_fill(w, g.out_c * K);
    rng_fill(x, xn);
    rng_fill(bias, g.out_c);
    rng_fill(res, n * g.out_c * P);
    if (id % 5 == 2)   /* an all-zero weight row: scale 0 */
        memset(w, 0, sizeof(float) * (size_t)K);
    float act_scale = (float)(0.7 + 0.4 * rng_uniform()) / 127.0f;   /* clamps |x| above 0.7..1.1 */
    int act_zero = id % 2 ? 128 : rng_int(0, 255);                    /* symmetric, or anywhere */
    cspresnet_act act = (cspresnet_act)(id % 3 == 0 ? CSPRESNET_ACT_NONE : id % 3 == 1 ? CSPRESNET_ACT_RELU
                                                                                        : CSPRESNET_ACT_SWISH);
    int epi = id % 4 != 3;
    tensor4 in = {x, n, g.in_c, g.in_h, g.in_w, (long)g.in_c * g.in_h * g.in_w};
    tensor4 rt = {res, n, g.out_c, g.out_h, g.out_w, g.out_c * P};
    conv_epilogue ep = {bias, act, id % 2 ? &rt : NULL};
    const long out_len = n * wide_c * P;
    oracle o = {&g, n, w, x, res, act_scale, act_zero, epi ? &ep : NULL, wide_c};
    for (int s = 0; s < n_sets; s++) {
        long lda;
        float *prep = prepare(sets[s], &g, w, act_scale, act_zero, &lda);
        if (lda)
            check_rows(id, sets[s], &g, w, prep, lda);
        check_pack(id, sets[s], &g, w, act_scale, act_zero, NULL, prep);
        for (int t = 1; t <= 2; t++) {
            float *y = calloc((size_t)out_len, sizeof(float));
            tensor4 out = {y, n, g.out_c, g.out_h, g.out_w, wide_c * P};   /* a channel slice */
            run(sets[s], t, &g, prep, &in, &out, epi ? &ep : NULL);
            double worst, moved;
            long bad = check_oracle(&o, y, &worst, &moved);
            const char *what = epi && act == CSPRESNET_ACT_SWISH ? "swish" : "exact";
            if (epi && act == CSPRESNET_ACT_SWISH)
                CHECK(worst <= 4e-6, "case %d (%s, %d threads, k%d s%d, %dx%dx%d -> %d, n %d): %.3g from the "
                      "oracle (zero %d)", id, sets[s]->int8->name, t, g.k, g.stride, g.in_c, g.in_h, g.in_w, g.out_c, n,
                      worst, act_zero);
            else
                CHECK(bad == 0, "case %d (%s, %d threads, k%d s%d, %dx%dx%d -> %d, n %d): %ld of %ld outputs "
                      "differ from the integer oracle (worst %.3g)", id, sets[s]->int8->name, t, g.k, g.stride,
                      g.in_c, g.in_h, g.in_w, g.out_c, n, bad, (long)n * g.out_c * P, worst);
            CHECK(moved > 0, "case %d (%s, %s): the result equals the fp32 conv (no quantization happened)", id,
                  sets[s]->int8->name, what);
            free(y);
        }
        free(prep);
    }
    free(w);
    free(x);
    free(bias);
    free(res);
}

/* Which convs run int8 (conv2d_node_lowp): with a scale, a 3x3 stride-1 conv is int8 on
 * a set with the tap form (AMX) or without Winograd, and on a set with Winograd only
 * when its weights come stored from a quantized file (the file decides); a 1x1 conv is
 * int8, the stem's K = 27 conv fp32, and no scale means fp32. */
static void check_lowp_rule(const kernel_set *kt)
{
    param_info p[1] = {{.ndim = 4, .shape = {16, 8, 3, 3}, .numel = 16 * 8 * 9}};
    gnode nd = {.op = &op_conv2d, .param = {0, -1, -1, -1, -1, -1}, .a = {3, 1, 1, 16, CSPRESNET_ACT_NONE}};
    const int8_t q[1] = {0};
    const float ws[1] = {0};
    prepare_env pe = {.kernels = kt, .precision = CSPRESNET_PRECISION_INT8, .act_scale = 0.05f, .act_zero = 128};
    const conv_geom g = {8, 9, 9, 16, 9, 9, 3, 1, 1};
    int fp32 = kt->winograd != NULL && !conv2d_int8_taps_applies(kt, &g);
    CHECK(conv2d_node_lowp(&nd, p, &pe) == !fp32, "%s: a calibrated 3x3 s1 conv is %s", kt->isa,
          fp32 ? "int8 (Winograd should keep it fp32)" : "fp32 (tap form or no Winograd here: it should be int8)");
    pe.qw = q, pe.qw_scale = ws;
    CHECK(conv2d_node_lowp(&nd, p, &pe) == 1, "%s: a 3x3 s1 conv with stored int8 weights is not int8", kt->isa);
    pe.act_scale = 0.0f;
    CHECK(conv2d_node_lowp(&nd, p, &pe) == 0, "%s: a conv without an input scale runs int8", kt->isa);
    pe.act_scale = 0.05f, pe.qw = NULL, pe.qw_scale = NULL;
    nd.a.k = 1, nd.a.pad = 0, p[0].shape[1] = 64, p[0].shape[2] = p[0].shape[3] = 1;
    CHECK(conv2d_node_lowp(&nd, p, &pe) == 1, "%s: a calibrated 1x1 conv is not int8", kt->isa);
    nd.a.k = 3, nd.a.stride = 2, p[0].shape[1] = 3, p[0].shape[2] = p[0].shape[3] = 3;   /* the stem's first */
    CHECK(conv2d_node_lowp(&nd, p, &pe) == 0, "%s: a calibrated K = 27 conv runs int8", kt->isa);
}

/* Bias correction: with the calibrated mean mu[c] of each input channel, comp[oc] gains
 * rne(sum_k (q[k] - w[k] / w_scale) * mu[c(k)] / act_scale), the weight rounding's
 * expected shift of the output in accumulator units, on every set's layout. */
static void test_bias_correction(const kernel_set **sets, int n_sets)
{
    for (int id = 0; id < 6; id++) {
        conv_geom g = {rng_int(4, 70), 9, 11, rng_int(1, 40), 0, 0, id % 2 ? 3 : 1, id % 3 == 2 ? 2 : 1, id % 2};
        g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
        g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
        const long K = (long)g.in_c * g.k * g.k;
        float *w = malloc(sizeof(float) * (size_t)(g.out_c * K)), *mu = malloc(sizeof(float) * (size_t)g.in_c);
        int *q = malloc(sizeof(int) * (size_t)K);
        rng_fill(w, g.out_c * K);
        for (int c = 0; c < g.in_c; c++)
            mu[c] = (float)(0.2 + rng_uniform());
        float act_scale = 0.01f;
        for (int s = 0; s < n_sets; s++) {
            const kernel_set *kt = sets[s];
            int taps = conv2d_int8_taps_applies(kt, &g);
            long n = taps ? conv2d_int8_taps_weight_floats(kt, &g) : conv2d_int8_weight_floats(kt, g.out_c, K);
            float *p0 = aligned_alloc(64, sizeof(float) * (size_t)((n + 15) & ~15L));
            float *p1 = aligned_alloc(64, sizeof(float) * (size_t)((n + 15) & ~15L));
            int8_weights plain = {.w = w}, corrected = {.w = w, .act_mean = mu};
            if (taps) {
                conv2d_int8_taps_weights(kt, &g, &plain, act_scale, 100, p0);
                conv2d_int8_taps_weights(kt, &g, &corrected, act_scale, 100, p1);
            } else {
                conv2d_int8_weights(kt, &plain, g.out_c, K, g.k * g.k, act_scale, 100, p0);
                conv2d_int8_weights(kt, &corrected, g.out_c, K, g.k * g.k, act_scale, 100, p1);
            }
            check_pack(id, kt, &g, w, act_scale, 100, mu, p1);
            long bad = 0;
            for (int oc = 0; oc < g.out_c; oc++) {
                float ws = quant_row(w + oc * K, K, q);
                double shift = 0;
                for (long k = 0; k < K; k++)
                    shift += ((double)q[k] - (double)w[oc * K + k] / ws) * mu[k / (g.k * g.k)];
                bad += conv2d_int8_comp(p1)[oc] - conv2d_int8_comp(p0)[oc] != (int32_t)lrint(shift / act_scale);
            }
            CHECK(bad == 0, "bias correction %d (%s, k%d s%d, %d -> %d): %ld rows' comp off", id, kt->int8->name, g.k,
                  g.stride, g.in_c, g.out_c, bad);
            free(p0);
            free(p1);
        }
        free(w), free(mu), free(q);
    }
}

int main(void)
{
    static const char *const names[] = {"ref", "generic", "avx2", "avx512"};
    const kernel_set *sets[4];
    int n_sets = 0;
    for (int i = 0; i < 4; i++) {
        const kernel_set *kt = kernel_set_select(names[i]);
        if (strcmp(kt->isa, names[i]) == 0)
            sets[n_sets++] = kt;
    }
    for (int s = 0; s < n_sets; s++)
        printf("kernel set %s: %s%s\n", sets[s]->isa, sets[s]->int8->name,
               sets[s]->int8->taps ? " (3x3 stride 1 and 2: tap form)" : "");
    for (int id = 0; id < 40; id++)
        one_case(id, sets, n_sets);
    for (int s = 0; s < n_sets; s++)
        check_lowp_rule(sets[s]);
    test_bias_correction(sets, n_sets);
    printf("kernel sets: %d\n", n_sets);
    return harness_done();
}
