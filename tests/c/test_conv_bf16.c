/*
 * test_conv_bf16.c - the bf16 convolution (ops/conv2d_bf16.c) against an oracle
 * written here: a direct convolution in double over the bf16-rounded weights and
 * inputs (as round-to-nearest-even of the fp32 values), then the fp32 epilogue.
 * The only difference left is fp32 accumulation, so each output is checked within
 * 1e-5 * (sum |w x| over its window) + 1e-6. Random shapes: odd channel counts (odd
 * K, so the pad element of the last pair), tiny and wide maps, batch 1-3, 1x1 / 3x3 s1
 * / 3x3 s2 / 3x3 s2 with 3 input channels (the stem), K over several CONV_KC blocks,
 * bias + activation + residual epilogues, channel-slice outputs. 1 and 2 threads must
 * give the same bits, and so must every kernel set this CPU runs (the tiles round
 * exactly alike and the reduction order is fixed) except for a swish epilogue, whose
 * fast exp differs from libm's by a few ulps. Checks that rounding happened (the result differs
 * from the fp32 conv of the unrounded values), so the test could not pass on an fp32
 * path. Closes with harness.h's "N passed, M failed" line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_cases.h"
#include "harness.h"
#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

static double rounded(float x)
{
    return (double)f32_from_bf16(bf16_from_f32(x));
}

static float act_ref(cspresnet_act act, float v)
{
    switch (act) {
    case CSPRESNET_ACT_RELU: return v > 0 ? v : 0;
    case CSPRESNET_ACT_SWISH: return v / (1.0f + expf(-v));
    default: return v;
    }
}

/* The tap form (conv2d_bf16_taps.c) where the set has it and the conv is 3x3 stride 1. */
static int use_taps(const kernel_set *kt, const conv_geom *g)
{
    return conv2d_bf16_taps_applies(kt, g);
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
    int taps = use_taps(kt, g);
    long pt = taps ? 0 : conv2d_bf16_scratch_per_thread(), sh = taps ? conv2d_bf16_taps_shared(g) : 0;
    float *scratch = malloc(sizeof(float) * (size_t)(pt * threads + sh + 16));
    op_exec ex = {.pool = pool, .kernels = kt, .scratch = scratch, .scratch_per_thread = pt,
                  .op_scratch = scratch + pt * threads, .fast_scratch = scratch, .fast_per_thread = pt};
    if (taps)
        conv2d_bf16_taps_forward(&ex, g, prepared, in, out, ep);
    else
        conv2d_bf16_forward(&ex, g, prepared, in, out, ep);
    free(scratch);
    threadpool_free(pool);
}

static float *prepare(const kernel_set *kt, const conv_geom *g, const float *w)
{
    const long K = (long)g->in_c * g->k * g->k;
    int taps = use_taps(kt, g);
    long n = taps ? conv2d_bf16_taps_weight_floats(kt, g->out_c, g->in_c, g->k) : conv2d_bf16_weight_floats(kt, g->out_c, K);
    float *prep = malloc(sizeof(float) * (size_t)n);
    if (taps)
        conv2d_bf16_taps_weights(kt, w, g->out_c, g->in_c, g->k, prep);
    else
        conv2d_bf16_weights(kt, w, g->out_c, K, prep);
    return prep;
}

static void check_oracle(int id, const kernel_set *kt, const conv_geom *gp, int n, const float *w, const float *x,
                         const conv_epilogue *ep, const float *res, const float *got_all, long wide_c);

static void one_case(int id, const kernel_set **sets, int n_sets)
{
    int n;
    conv_geom g = conv_case(id, &n);
    const long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w, wide_c = g.out_c + 3;
    float *w = malloc(sizeof(float) * (size_t)(g.out_c * K));
    float *x = malloc(sizeof(float) * (size_t)(n * g.in_c * g.in_h * g.in_w));
    float *bias = malloc(sizeof(float) * (size_t)g.out_c);
    float *res = malloc(sizeof(float) * (size_t)(n * g.out_c * P));
    rng_fill(w, g.out_c * K);
    rng_fill(x, (long)n * g.in_c * g.in_h * g.in_w);
    rng_fill(bias, g.out_c);
    rng_fill(res, n * g.out_c * P);
    cspresnet_act act = (cspresnet_act)(id % 3 == 0 ? CSPRESNET_ACT_NONE : id % 3 == 1 ? CSPRESNET_ACT_RELU
                                                                                        : CSPRESNET_ACT_SWISH);
    int epi = id % 4 != 3;
    tensor4 in = {x, n, g.in_c, g.in_h, g.in_w, (long)g.in_c * g.in_h * g.in_w};
    tensor4 rt = {res, n, g.out_c, g.out_h, g.out_w, g.out_c * P};
    conv_epilogue ep = {bias, act, id % 2 ? &rt : NULL};
    const long out_len = n * wide_c * P;
    float *first = NULL;   /* the first exact set's 1-thread result */
    for (int s = 0; s < n_sets; s++) {
        float *prep = prepare(sets[s], &g, w);
        float *one = NULL;
        for (int t = 1; t <= 2; t++) {
            float *y = calloc((size_t)out_len, sizeof(float));
            tensor4 out = {y, n, g.out_c, g.out_h, g.out_w, wide_c * P};   /* a channel slice */
            run(sets[s], t, &g, prep, &in, &out, epi ? &ep : NULL);
            if (t == 1) {
                one = y;
                continue;
            }
            CHECK(memcmp(y, one, sizeof(float) * (size_t)out_len) == 0, "case %d (%s): 1 and 2 threads differ", id,
                  sets[s]->isa);
            free(y);
        }
        free(prep);
        check_oracle(id, sets[s], &g, n, w, x, epi ? &ep : NULL, res, one, wide_c);
        if (!sets[s]->bf16->exact || use_taps(sets[s], &g)) {   /* another order of K: the oracle only */
            free(one);
        } else if (!first) {
            first = one;
        } else if (!epi || act != CSPRESNET_ACT_SWISH) {
            CHECK(memcmp(one, first, sizeof(float) * (size_t)out_len) == 0, "case %d: %s's bits differ from %s's",
                  id, sets[s]->isa, sets[0]->isa);
            free(one);
        } else {   /* the fast sets' swish has its own exp: the same GEMM sums, close epilogues */
            double d = 0;
            for (long i = 0; i < out_len; i++)
                d = fmax(d, fabs((double)one[i] - first[i]) / (1.0 + fabs(first[i])));
            CHECK(d <= 4e-6, "case %d (%s): swish epilogue %.3g from %s's", id, sets[s]->isa, d, sets[0]->isa);
            free(one);
        }
    }
    free(first);
    free(w);
    free(x);
    free(bias);
    free(res);
}

/* got (one set's result) against the double conv of the bf16-rounded operands. */
static void check_oracle(int id, const kernel_set *kt, const conv_geom *gp, int n, const float *w, const float *x,
                         const conv_epilogue *ep, const float *res, const float *got_all, long wide_c)
{
    const conv_geom g = *gp;
    const long K = (long)g.in_c * g.k * g.k, P = (long)g.out_h * g.out_w;
    const float *bias = ep ? ep->bias : NULL;
    cspresnet_act act = ep ? ep->act : CSPRESNET_ACT_NONE;
    int epi = ep != NULL;
    double worst = 0, moved = 0;
    for (int b = 0; b < n; b++)
        for (int oc = 0; oc < g.out_c; oc++)
            for (long p = 0; p < P; p++) {
                int oy = (int)(p / g.out_w), ox = (int)(p % g.out_w);
                double acc = 0, mag = 0, exact = 0;
                for (int ci = 0; ci < g.in_c; ci++)
                    for (int ky = 0; ky < g.k; ky++)
                        for (int kx = 0; kx < g.k; kx++) {
                            int iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
                            if (iy < 0 || ix < 0 || iy >= g.in_h || ix >= g.in_w)
                                continue;
                            float wv = w[oc * K + (ci * g.k + ky) * g.k + kx];
                            float xv = x[((long)(b * g.in_c + ci) * g.in_h + iy) * g.in_w + ix];
                            acc += rounded(wv) * rounded(xv);
                            mag += fabs(rounded(wv) * rounded(xv));
                            exact += (double)wv * xv;
                        }
                float want = (float)acc, unrounded = (float)exact;
                if (epi) {
                    want = act_ref(act, want + bias[oc]);
                    unrounded = act_ref(act, unrounded + bias[oc]);
                    if (ep->residual) {
                        want += res[(b * g.out_c + oc) * P + p];
                        unrounded += res[(b * g.out_c + oc) * P + p];
                    }
                }
                float got = got_all[(b * wide_c + oc) * P + p];
                double d = fabs((double)got - want) / (1e-5 * mag + 1e-6);
                worst = d > worst ? d : worst;
                moved = fmax(moved, fabs((double)got - unrounded));
            }
    CHECK(worst <= 1.0, "case %d (%s, k%d s%d, %dx%dx%d -> %d, n %d): error %.3g x the fp32-accumulation bound", id,
          kt->bf16->name, g.k, g.stride, g.in_c, g.in_h, g.in_w, g.out_c, n, worst);
    CHECK(moved > 0, "case %d (%s): the result equals the unrounded fp32 conv (no bf16 rounding happened)", id,
          kt->bf16->name);
}

int main(void)
{
    static const char *const names[] = {"ref", "generic", "avx2", "avx512"};
    const kernel_set *sets[5];
    int n_sets = 0;
    for (int i = 0; i < 4; i++) {
        const kernel_set *kt = kernel_set_select(names[i]);
        if (strcmp(kt->isa, names[i]) == 0)
            sets[n_sets++] = kt;
    }
    /* the reference set with the reference tap form: the tap path on every CPU */
    static bf16_gemm_config ref_taps;
    static kernel_set ref_taps_set;
    ref_taps = bf16_gemm_config_ref;
    ref_taps.name = "bf16-taps-32x32-ref";
    ref_taps.mr = 32;
    ref_taps.k_align = 16;
    ref_taps.m_align = 32;
    ref_taps.taps = bf16_taps_32x32__ref;
    ref_taps_set = *kernel_set_select("ref");
    ref_taps_set.bf16 = &ref_taps;
    sets[n_sets++] = &ref_taps_set;
    for (int s = 0; s < n_sets; s++)
        printf("kernel set %s: %s%s\n", sets[s]->isa, sets[s]->bf16->name, sets[s]->bf16->taps ? " (+ tap form)" : "");
    for (int id = 0; id < 40; id++)
        one_case(id, sets, n_sets);
    printf("kernel sets: %d\n", n_sets);
    return harness_done();
}
