/*
 * cmd_bench.c - `cspresnet bench`: latency, throughput and per-layer profile of the
 * forward pass. Warm-up runs first (they also plan the arena), then --runs timed
 * forwards; prints median / min / max latency, images/s, conv GFLOP/s and its share
 * of the machine's peak, and the process's peak resident memory (VmHWM).
 *
 * Peak: SPEC section 5's measurement on this project's machine (register-only FMA
 * loop, 272.6 GFLOP/s per core) times the thread count, or --peak G (GFLOP/s per
 * core) for another machine. Not measured at startup: a 2-core machine shared with
 * others would give a noisy number.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "io/npy.h"

static void help(void)
{
    printf("usage: cspresnet bench [--weights F | --arch P] [--size H,W] [--batch N] [--threads N]\n"
           "                       [--deploy] [--runs K] [--warmup K] [--input X.npy] [--profile]\n"
           "                       [--peak GFLOPS_PER_CORE] [-q|-v]\n"
           "\n"
           "Times the backbone's forward pass. Without --weights, --arch (default s) builds seeded\n"
           "random weights. The input is --input (float32 N x 3 x H x W) or seeded random values.\n"
           "\n"
           "  --size H,W | N input size (default 640,640); N is N,N\n"
           "  --batch N      images per forward (default 1)\n"
           "  --threads N    worker threads (default: all online CPUs)\n"
           "  --deploy       run the fused network (BN folded, RepVGG merged), as deployed\n"
           "  --runs K       timed forwards (default 7); --warmup K untimed ones first (default 2)\n"
           "  --profile      also print time and GFLOP/s per layer (summed over the timed runs)\n"
           "  --peak G       peak GFLOP/s per core for the share column (default 272.6, SPEC 5)\n"
           "  -q, --quiet    print only the RESULT line;  -v, --verbose  the whole report (default)\n"
           "\n"
           "The last line is machine-readable: RESULT key=value ...\n"
           "The kernels follow the CPU (CSPRESNET_ISA=ref|generic|avx2|avx512 overrides).\n");
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_count(int argc, char **argv, int *i, int lo, int hi, int *out)
{
    const char *v = flag_value(argc, argv, i, "bench");
    if (!v || parse_int_list(v, out, 1) != 1 || *out < lo || *out > hi) {
        fprintf(stderr, "cspresnet bench: %s needs a count in %d..%d\n", argv[*i - (v != NULL)], lo, hi);
        return -1;
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    arch_flags f;
    arch_flags_init(&f);
    const char *weights = NULL, *input_path = NULL;
    common_flags cf;
    common_flags_init(&cf);
    int deploy = 0, runs = 7, warmup = 2, batch = 1, profile = 0;
    int size[2] = {640, 640};
    double peak_core = 272.6;
    for (int i = 1; i < argc; i++) {
        int r = arch_flags_parse(&f, argc, argv, &i, "bench");
        if (r == 0)
            r = common_flags_parse(&cf, argc, argv, &i, "bench");
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return 0;
        } else if (strcmp(a, "--weights") == 0) {
            if (!(weights = flag_value(argc, argv, &i, "bench")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--input") == 0) {
            if (!(input_path = flag_value(argc, argv, &i, "bench")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--size") == 0) {
            const char *v = flag_value(argc, argv, &i, "bench");
            if (!v || parse_size(v, size, 16384) != 0) {
                fprintf(stderr, "cspresnet bench: --size must be H,W or N (for N,N) with H, W, N in 1..16384\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--batch") == 0) {
            if (parse_count(argc, argv, &i, 1, 4096, &batch))
                return EXIT_USAGE;
        } else if (strcmp(a, "--runs") == 0) {
            if (parse_count(argc, argv, &i, 1, 100000, &runs))
                return EXIT_USAGE;
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_count(argc, argv, &i, 0, 100000, &warmup))
                return EXIT_USAGE;
        } else if (strcmp(a, "--peak") == 0) {
            const char *v = flag_value(argc, argv, &i, "bench");
            char *end = NULL;
            peak_core = v ? strtod(v, &end) : 0;
            if (!v || *end || !(peak_core > 0)) {
                fprintf(stderr, "cspresnet bench: --peak needs a positive GFLOP/s per core\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--deploy") == 0) {
            deploy = 1;
        } else if (strcmp(a, "--profile") == 0) {
            profile = 1;
        } else {
            fprintf(stderr, "cspresnet bench: unknown option '%s' (see cspresnet bench --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (weights && arch_flags_fix_architecture(&f)) {
        fprintf(stderr, "cspresnet bench: give --weights or an architecture (--arch ...), not both\n");
        return EXIT_USAGE;
    }
    cspresnet_config cfg;
    if (!weights) {
        if (!arch_flags_fix_architecture(&f))
            f.arch = "s";
        if (arch_flags_config(&f, &cfg, "bench") != 0)
            return EXIT_USAGE;
    }

    int rc = 1;
    char err[1024];
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    npy_array x = {0};
    double *times = NULL;
    error_buf e;
    if (weights) {
        cspresnet_load_options opt;
        cspresnet_load_options_init(&opt);
        opt.act = f.act;
        if (cli_load_weights(weights, &opt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", err);
            goto done;
        }
    } else if (cspresnet_model_create(&cfg, 1, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        goto done;
    }
    if (deploy && cli_deploy(&model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        goto done;
    }
    if (input_path) {
        if (npy_read(input_path, &x, &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", e.text);
            goto done;
        }
        if (x.ndim != 4 || x.shape[1] != 3 || x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 ||
            x.shape[0] > 4096 || x.shape[2] > 16384 || x.shape[3] > 16384) {
            fprintf(stderr, "cspresnet bench: %s must be float32 N x 3 x H x W\n", input_path);
            goto done;
        }
        batch = (int)x.shape[0];
        size[0] = (int)x.shape[2];
        size[1] = (int)x.shape[3];
    } else {
        x.numel = (int64_t)batch * 3 * size[0] * size[1];
        x.data = malloc((size_t)x.numel * sizeof(float));
        if (!x.data) {
            fprintf(stderr, "cspresnet bench: out of memory for a %dx3x%dx%d input\n", batch, size[0], size[1]);
            goto done;
        }
        uint32_t state = 12345u;
        for (int64_t i = 0; i < x.numel; i++) {
            state = state * 1664525u + 1013904223u;
            x.data[i] = (float)(state >> 8) / 16777216.0f;
        }
    }
    int threads = cf.threads;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 && online < 1024 ? (int)online : 1;
    }
    if (cspresnet_context_create(model, threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        goto done;
    }
    times = calloc((size_t)runs, sizeof *times);
    if (!times) {
        fprintf(stderr, "cspresnet bench: out of memory\n");
        goto done;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out;
    for (int r = 0; r < warmup + runs; r++) {
        if (r == warmup && profile)
            cspresnet_context_set_profile(ctx, 1);
        double t0 = now();
        if (cspresnet_forward(ctx, x.data, batch, 3, size[0], size[1], outs, &n_out) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", cspresnet_context_last_error(ctx));
            goto done;
        }
        if (r >= warmup)
            times[r - warmup] = now() - t0;
    }
    double flops = 0;
    int nodes = cspresnet_context_profile(ctx, -1, NULL, NULL, NULL);
    for (int i = 0; i < nodes; i++) {
        double fl;
        cspresnet_context_profile(ctx, i, NULL, NULL, &fl);
        flops += fl;
    }
    qsort(times, (size_t)runs, sizeof *times, cmp_double);
    double med = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    double rss_mb = cli_peak_rss_mib();
    if (!cf.quiet) { /* -q: only the RESULT line */
        const cspresnet_config *mc = cspresnet_model_config(model);
        double peak = peak_core * threads;
        printf("model      channels %d,%d,%d,%d,%d layers %d,%d,%d,%d%s, input %dx3x%dx%d\n", mc->channels[0],
               mc->channels[1], mc->channels[2], mc->channels[3], mc->channels[4], mc->layers[0], mc->layers[1],
               mc->layers[2], mc->layers[3], cspresnet_model_is_deployed(model) ? ", deployed" : "", batch, size[0],
               size[1]);
        printf("kernels    %s, %d threads\n", cspresnet_context_isa(ctx), threads);
        printf("latency    median %.2f ms, min %.2f ms, max %.2f ms (%d runs after %d warm-up)\n", med * 1e3,
               times[0] * 1e3, times[runs - 1] * 1e3, runs, warmup);
        printf("throughput %.2f images/s\n", batch / med);
        printf("compute    %.2f GFLOP per forward (conv, 2 x MACs), %.1f GFLOP/s = %.0f%% of %.1f GFLOP/s peak "
               "(SPEC 5: %.1f per core x %d)\n",
               flops * 1e-9, flops * 1e-9 / med, 100.0 * flops * 1e-9 / med / peak, peak, peak_core,
               threads);
        printf("memory     peak RSS %.1f MB, activation arena %.1f MB\n", rss_mb,
               (double)cspresnet_context_arena_bytes(ctx) / 1e6);
        if (profile) {
            printf("\n%-44s %10s %10s %9s\n", "layer", "ms/run", "GFLOP", "GFLOP/s");
            for (int i = 0; i < nodes; i++) {
                const char *name;
                double s, fl;
                cspresnet_context_profile(ctx, i, &name, &s, &fl);
                s /= runs;
                printf("%-44s %10.3f %10.3f %9.1f\n", name, s * 1e3, fl * 1e-9, s > 0 ? fl * 1e-9 / s : 0.0);
            }
        }
    }
    printf("RESULT median_ms=%.3f min_ms=%.3f max_ms=%.3f images_per_s=%.3f gflops=%.2f rss_mb=%.1f isa=%s\n",
           med * 1e3, times[0] * 1e3, times[runs - 1] * 1e3, batch / med, flops * 1e-9 / med, rss_mb,
           cspresnet_context_isa(ctx));
    rc = 0;
done:
    free(times);
    npy_array_free(&x);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return rc;
}
