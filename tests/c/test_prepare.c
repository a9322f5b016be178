/*
 * test_prepare.c - cspresnet_model_prepare: the deployed CSPResNet-s (random weights)
 * gives bit-identical outputs with its Winograd weights packed at load and without,
 * with 1 and 2 threads and at two input sizes; the packed data really is what runs
 * (zeroing it changes the outputs); a budget is respected; a context of another ISA
 * ignores the packing. Sanity of the forward itself is the parity tests' job.
 */
#include <stdlib.h>
#include <string.h>

#include "cspresnet.h"
#include "harness.h"
#include "model/model.h"

/* All outputs of one forward, concatenated (malloc'd; *len floats). */
static float *forward_all(const cspresnet_model *m, const char *isa, int threads, const float *x, int h, int w,
                          size_t *len)
{
    cspresnet_context *ctx = NULL;
    char err[256];
    cspresnet_context_options o = {.threads = threads, .isa = isa};
    if (cspresnet_context_create_ex(m, &o, &ctx, err, sizeof err) != CSPRESNET_OK) {
        printf("context: %s\n", err);
        return NULL;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    float *all = NULL;
    if (cspresnet_forward(ctx, x, 1, 3, h, w, outs, &n_out) == CSPRESNET_OK) {
        size_t total = 0;
        for (int i = 0; i < n_out; i++)
            total += (size_t)outs[i].n * outs[i].c * outs[i].h * outs[i].w;
        all = malloc(total * sizeof(float));
        size_t at = 0;
        for (int i = 0; all && i < n_out; i++) {
            size_t l = (size_t)outs[i].n * outs[i].c * outs[i].h * outs[i].w;
            memcpy(all + at, outs[i].data, l * sizeof(float));
            at += l;
        }
        *len = total;
    } else {
        printf("forward: %s\n", cspresnet_context_last_error(ctx));
    }
    cspresnet_context_free(ctx);
    return all;
}

static int same(const float *a, const float *b, size_t n)
{
    return a && b && memcmp(a, b, n * sizeof(float)) == 0;
}

int main(void)
{
    cspresnet_config cfg;
    cspresnet_model *m = NULL;
    char err[256];
    if (cspresnet_config_preset("s", &cfg) != CSPRESNET_OK || cspresnet_model_create(&cfg, 11, &m, err, sizeof err) ||
        cspresnet_model_deploy_replace(&m, err, sizeof err)) {
        printf("model: %s\n", err);
        return 1;
    }
    const int sizes[2][2] = {{160, 192}, {40, 56}};
    float *x = malloc(sizeof(float) * 3 * 160 * 192);
    rng_fill(x, 3 * 160 * 192);
    float *plain[2][2] = {{0}};
    size_t len[2] = {0, 0};
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 2; t++)
            plain[s][t] = forward_all(m, NULL, t + 1, x, sizes[s][0], sizes[s][1], &len[s]);

    CHECK(cspresnet_model_prepare(m, NULL, (size_t)1 << 30, err, sizeof err) == CSPRESNET_OK, "prepare: %s", err);
    size_t bytes = cspresnet_model_prepared_bytes(m);
    const char *best = m->prepared_isa ? m->prepared_isa : "";
    int wino = strcmp(best, "ref") != 0;   /* the reference table has no Winograd kernels */
    CHECK(!wino || bytes > 0, "isa %s: nothing prepared", best);
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 2; t++) {
            size_t l = 0;
            float *got = forward_all(m, NULL, t + 1, x, sizes[s][0], sizes[s][1], &l);
            CHECK(l == len[s] && same(got, plain[s][0], l), "%dx%d, %d threads: prepared differs", sizes[s][0],
                  sizes[s][1], t + 1);
            CHECK(same(plain[s][t], plain[s][0], len[s]), "%dx%d: 1 and 2 threads differ", sizes[s][0], sizes[s][1]);
            free(got);
        }
    if (wino && bytes > 0) {
        /* the packed data is what runs: zeroed, the outputs change (at the size where
         * the tile plan, not the few-tiles plan, takes the stem convs: 400 tiles) */
        float *keep = malloc(bytes);
        memcpy(keep, m->prepared, bytes);
        memset(m->prepared, 0, bytes);
        size_t l = 0;
        float *got = forward_all(m, NULL, 1, x, sizes[0][0], sizes[0][1], &l);
        CHECK(got && !same(got, plain[0][0], l), "zeroed packed weights did not change the outputs");
        free(got);
        memcpy(m->prepared, keep, bytes);
        free(keep);
        /* another ISA ignores the packing */
        got = forward_all(m, "ref", 1, x, sizes[0][0], sizes[0][1], &l);
        float *ref = NULL;
        memset(m->prepared, 0, bytes);
        ref = forward_all(m, "ref", 1, x, sizes[0][0], sizes[0][1], &l);
        CHECK(same(got, ref, l), "a ref context read the %s packing", best);
        free(got);
        free(ref);
    }
    size_t budget = bytes / 3;
    CHECK(cspresnet_model_prepare(m, NULL, budget, err, sizeof err) == CSPRESNET_OK, "prepare: %s", err);
    CHECK(cspresnet_model_prepared_bytes(m) <= budget, "budget %zu, packed %zu", budget,
          cspresnet_model_prepared_bytes(m));
    CHECK(!wino || cspresnet_model_prepared_bytes(m) > 0, "a third of the budget packed nothing");
    size_t l = 0;
    float *got = forward_all(m, NULL, 2, x, sizes[0][0], sizes[0][1], &l);
    CHECK(same(got, plain[0][0], l), "partly prepared differs");
    free(got);
    CHECK(cspresnet_model_prepare(m, NULL, 0, err, sizeof err) == CSPRESNET_OK &&
              cspresnet_model_prepared_bytes(m) == 0,
          "budget 0 left %zu bytes", cspresnet_model_prepared_bytes(m));
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < 2; t++)
            free(plain[s][t]);
    free(x);
    cspresnet_model_free(m);
    return harness_done();
}
