/*
 * soak.c - long-run check (not part of the suite; `make soak`, SOAK_ITERS=10000 default):
 * ITERS forward passes of varied small shapes through ONE context in one process.
 * Reports resident memory (VmRSS) after the first round of shapes and at the end
 * (growth must stay under 1%), and checks that every repeat of a shape gives
 * bit-identical outputs (FNV-1a hash of all returned feature maps).
 *
 * Usage: soak [ITERS] [THREADS]      exit 0 when both hold, 1 otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cspresnet.h"

static const int shapes[][3] = {  /* n, h, w */
    {1, 32, 32}, {1, 48, 40}, {2, 32, 24}, {1, 64, 64}, {1, 17, 29},
    {2, 40, 40}, {1, 96, 32}, {1, 8, 8},   {3, 16, 48}, {1, 56, 72},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

static uint64_t hash_outputs(const cspresnet_output *o, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)o[i].data;
        size_t len = (size_t)o[i].n * o[i].c * o[i].h * o[i].w * sizeof(float);
        for (size_t k = 0; k < len; k++)
            h = (h ^ p[k]) * 1099511628211ull;
    }
    return h;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 10000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    cspresnet_config cfg;
    char err[256];
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    if (iters < NSHAPES * 2 || cspresnet_config_scaled(&cfg, 0.25, 0.33) != CSPRESNET_OK ||
        cspresnet_model_create(&cfg, 11, &model, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_context_create(model, threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "soak: setup failed (iters >= %d): %s\n", NSHAPES * 2, err);
        return 1;
    }
    size_t max_in = 0;
    for (int s = 0; s < NSHAPES; s++)
        if ((size_t)shapes[s][0] * 3 * shapes[s][1] * shapes[s][2] > max_in)
            max_in = (size_t)shapes[s][0] * 3 * shapes[s][1] * shapes[s][2];
    float *input = malloc(max_in * sizeof(float));
    if (!input)
        return 1;
    for (size_t i = 0; i < max_in; i++)
        input[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;

    uint64_t first_hash[NSHAPES] = {0};
    long mismatches = 0, rss_warm = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long it = 0; it < iters; it++) {
        /* a shape order that is not periodic in NSHAPES, so every transition occurs */
        int s = (int)((it * 7 + it / NSHAPES) % NSHAPES);
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out = 0;
        if (cspresnet_forward(ctx, input, shapes[s][0], 3, shapes[s][1], shapes[s][2], outs, &n_out) !=
            CSPRESNET_OK) {
            fprintf(stderr, "soak: forward %ld failed: %s\n", it, cspresnet_context_last_error(ctx));
            return 1;
        }
        uint64_t h = hash_outputs(outs, n_out);
        if (it < NSHAPES * 2 && first_hash[s] == 0)
            first_hash[s] = h;
        else if (h != first_hash[s])
            mismatches++;
        if (it == NSHAPES * 10 - 1)
            rss_warm = rss_kib();  /* after every shape was seen several times */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long rss_end = rss_kib();
    double growth = rss_warm > 0 ? 100.0 * (double)(rss_end - rss_warm) / (double)rss_warm : 100.0;
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("soak: %ld forwards of %d shapes (n 1..3, h/w 8..96, CSPResNet width 0.25 depth 0.33, "
           "%d threads) in %.1f s\n", iters, NSHAPES, threads, secs);
    printf("soak: VmRSS %ld KiB after %d warm-up forwards, %ld KiB at the end: growth %.2f%% (limit 1%%)\n",
           rss_warm, NSHAPES * 10, rss_end, growth);
    printf("soak: %ld of %ld repeated forwards differed from the first result of their shape\n",
           mismatches, iters - NSHAPES);
    free(input);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    int ok = growth < 1.0 && mismatches == 0;
    printf("soak: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
