/*
 * cmd_bench.c - `cspresnet bench`: latency, throughput and per-layer profile of the
 * forward pass. Warm-up runs first (they also plan the arena), then --runs timed
 * forwards; prints median / min / max latency, images/s, conv GFLOP/s and its share
 * of the machine's peak, and the process's peak resident memory (VmHWM).
 *
 * --detector times a PP-YOLOE detector end to end instead: tensor in, NMS rows out
 * (cspresnet_detector_forward, then cspresnet_multiclass_nms with PP-YOLOE+'s
 * defaults on the boxes as they come, scale factor 1), and reports the NMS part too.
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
#include "cspresnet_io.h"

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

typedef struct bench_opts {
    arch_flags af;
    common_flags cf;
    const char *weights, *input;
    int deploy, runs, warmup, batch, profile;
    int detector, classes;   /* --detector; --classes (0: not given, 80) */
    int size[2];
    double peak_core;
} bench_opts;

/* --peak: a positive number (strtod's). */
static int peak_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (*end || !(d > 0))
        return cli_refuse(f, v, cmd);
    *(double *)dest = d;
    return 0;
}

static const char SYNOPSIS[] =
    "usage: cspresnet bench [--weights F | --arch P] [--size H,W] [--batch N] [--threads N]\n"
    "                       [--deploy] [--runs K] [--warmup K] [--input X.npy] [--profile]\n"
    "                       [--peak GFLOPS_PER_CORE] [-q|-v]\n"
    "\n"
    "       cspresnet bench --detector [--weights DETECTOR.pdparams | --arch P [--classes N]] ...\n"
    "\n"
    "Times the backbone's forward pass. Without --weights, --arch (default s) builds seeded\n"
    "random weights. The input is --input (float32 N x 3 x H x W) or seeded random values.\n"
    "--detector times a whole PP-YOLOE detector instead: forward, box decoding and NMS\n"
    "(PP-YOLOE+'s defaults: score > 0.01, 1000 per class, IoU 0.7, 300 per image) per run,\n"
    "NMS also on its own. Its random weights (cspresnet_detector_create) give detections\n"
    "that mean nothing but keep NMS as busy as real ones.\n"
    "\n";

static const char NOTES[] =
    "\n"
    "The last line is machine-readable: RESULT key=value ...\n"
    "The kernels follow the CPU (CSPRESNET_ISA=ref|generic|avx2|avx512 overrides).\n";

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "F", "time this .pdparams or safetensors file (not with --arch ...)"),
     .parse = cli_str, .off = offsetof(bench_opts, weights)},
    {CLI_FLAG("--input", NULL, "X.npy", "the input batch (float32 N x 3 x H x W; sets --batch and --size)"),
     .parse = cli_str, .off = offsetof(bench_opts, input)},
    {CLI_FLAG("--size", NULL, "H,W|N", "input size (default 640,640); N is N,N"), .parse = cli_size,
     .off = offsetof(bench_opts, size), .hi = 16384,
     .bad = "--size must be H,W or N (for N,N) with H, W, N in 1..16384"},
    {CLI_FLAG("--batch", NULL, "N", "images per forward (default 1)"), .parse = cli_count,
     .off = offsetof(bench_opts, batch), .lo = 1, .hi = 4096},
    CLI_PRECISION_ROW(bench_opts),
    CLI_CALIBRATION_ROWS(bench_opts),
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default: all online CPUs)"), .parse = cli_threads_flag,
     .off = offsetof(bench_opts, cf)},
    {CLI_FLAG("--detector", NULL, NULL, "time the PP-YOLOE detector: forward, decoding and NMS (--weights: a\n"
                                        "detector checkpoint; --arch: the released detector's layout)"),
     .parse = cli_set, .off = offsetof(bench_opts, detector), .lo = 1},
    {CLI_FLAG("--classes", NULL, "N", "--detector's random weights: classes (default 80)"), .parse = cli_count,
     .off = offsetof(bench_opts, classes), .lo = 1, .hi = 100000},
    {CLI_FLAG("--deploy", NULL, NULL, "run the fused network (BN folded, RepVGG merged), as deployed"),
     .parse = cli_set, .off = offsetof(bench_opts, deploy), .lo = 1},
    {CLI_FLAG("--runs", NULL, "K", "timed forwards (default 7)"), .parse = cli_count, .off = offsetof(bench_opts, runs),
     .lo = 1, .hi = 100000},
    {CLI_FLAG("--warmup", NULL, "K", "untimed forwards first (default 2)"), .parse = cli_count,
     .off = offsetof(bench_opts, warmup), .lo = 0, .hi = 100000},
    {CLI_FLAG("--profile", NULL, NULL, "also print time and GFLOP/s per layer (summed over the timed runs)"),
     .parse = cli_set, .off = offsetof(bench_opts, profile), .lo = 1},
    {CLI_FLAG("--peak", NULL, "G", "peak GFLOP/s per core for the share column (default 272.6, SPEC 5)"),
     .parse = peak_flag, .off = offsetof(bench_opts, peak_core), .bad = "--peak needs a positive GFLOP/s per core"},
    {CLI_FLAG("--quiet", "-q", NULL, "print only the RESULT line"), .parse = cli_quiet, .off = offsetof(bench_opts, cf),
     .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the whole report (default)"), .parse = cli_quiet,
     .off = offsetof(bench_opts, cf)},
    CLI_HEADING("Architecture of the random weights (default --arch s; with --weights only --act counts):"),
    CLI_GROUP(ARCH_FLAGS, offsetof(bench_opts, af)),
    CLI_END,
};

static const cli_command BENCH = {.name = "bench", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS};

/* The detector to time: a checkpoint, or seeded random weights (cspresnet_detector_create)
 * of the released layout of --arch (or --width-mult/--depth-mult), backbone as cfg says
 * (--act, --alpha, stem flags), --classes classes, BN statistics from x's first image
 * (so that the deep random network keeps unit-scale maps, and NMS a trained model's
 * share of candidates, on this input). */
static int detector_model(const bench_opts *o, const cspresnet_config *cfg, const cspresnet_array *x,
                          cspresnet_model **model)
{
    char err[1024];
    if (o->af.have_layers || o->af.have_channels || o->af.num_return > 0) {
        fprintf(stderr, "cspresnet bench: --detector takes --arch P or --width-mult/--depth-mult (the neck's widths "
                        "follow them), not --layers, --channels or --return-idx\n");
        return EXIT_USAGE;
    }
    if (o->weights && o->classes) {
        fprintf(stderr, "cspresnet bench: --classes is for random weights; %s has its own class count\n",
                o->weights);
        return EXIT_USAGE;
    }
    cspresnet_status st;
    if (o->weights) {
        cspresnet_load_options opt;
        cspresnet_load_options_init(&opt);
        opt.act = o->af.act;
        st = cli_load_detector(o->weights, &opt, model, err, sizeof err);
    } else {
        cspresnet_detector_config dc;
        if (o->af.arch)
            cspresnet_detector_config_preset(o->af.arch, &dc); /* known: cfg came from it */
        else
            cspresnet_detector_config_scaled(&dc, o->af.width > 0 ? o->af.width : 1.0,
                                             o->af.depth > 0 ? o->af.depth : 1.0);
        dc.backbone = *cfg;
        dc.num_classes = o->classes ? o->classes : 80;
        st = cspresnet_detector_create(&dc, 1, model, err, sizeof err);
        if (st == CSPRESNET_OK)
            st = cspresnet_model_calibrate_bn(*model, x->data, 1, o->size[0], o->size[1], err, sizeof err);
    }
    if (st != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        return 1;
    }
    return 0;
}

/* The model to time: the file, or seeded random weights of the architecture flags. */
static int bench_model(bench_opts *o, const cspresnet_array *x, cspresnet_model **model)
{
    char err[1024];
    if (o->weights && arch_flags_fix_architecture(&o->af)) {
        fprintf(stderr, "cspresnet bench: give --weights or an architecture (--arch ...), not both\n");
        return EXIT_USAGE;
    }
    if (o->classes && !o->detector) {
        fprintf(stderr, "cspresnet bench: --classes goes with --detector (a backbone has no classes)\n");
        return EXIT_USAGE;
    }
    cspresnet_config cfg;
    if (!o->weights) {
        if (!arch_flags_fix_architecture(&o->af))
            o->af.arch = "s";
        if (arch_flags_config(&o->af, &cfg, "bench") != 0)
            return EXIT_USAGE;
    }
    int rc;
    if (o->detector) {
        if ((rc = detector_model(o, &cfg, x, model)) != 0)
            return rc;
    } else if (o->weights) {
        cspresnet_load_options opt;
        cspresnet_load_options_init(&opt);
        opt.act = o->af.act;
        if (cli_load_weights(o->weights, &opt, model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", err);
            return 1;
        }
    } else if (cspresnet_model_create(&cfg, 1, model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        return 1;
    }
    if ((o->deploy && cli_deploy(model, err, sizeof err) != CSPRESNET_OK) ||
        cli_prepare(*model, &o->cf, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        return 1;
    }
    return 0;
}

/* --input, or a seeded batch in [0, 1) of --batch x 3 x --size. */
static int bench_input(bench_opts *o, cspresnet_array *x)
{
    char err[1024];
    if (o->input) {
        if (cspresnet_npy_read(o->input, x, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", err);
            return -1;
        }
        if (x->ndim != 4 || x->shape[1] != 3 || x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1 ||
            x->shape[0] > 4096 || x->shape[2] > 16384 || x->shape[3] > 16384) {
            fprintf(stderr, "cspresnet bench: %s must be float32 N x 3 x H x W\n", o->input);
            return -1;
        }
        o->batch = (int)x->shape[0];
        o->size[0] = (int)x->shape[2];
        o->size[1] = (int)x->shape[3];
        return 0;
    }
    int shape[4] = {o->batch, 3, o->size[0], o->size[1]};
    if (cli_random_input(x, shape) != 0) {
        fprintf(stderr, "cspresnet bench: out of memory for a %dx3x%dx%d input\n", o->batch, o->size[0], o->size[1]);
        return -1;
    }
    return 0;
}

/* --detector: the NMS rows of a run and its NMS times. */
typedef struct bench_nms {
    cspresnet_nms_options opt;   /* PP-YOLOE+'s defaults */
    float *rows;
    int *bbox_num;
    size_t cap, n_rows;          /* rows of the last run, all images */
    double *times;               /* seconds per timed run */
} bench_nms;

static double median_sorted(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The detector's line of the report: its layout and the input. */
static void detector_line(const bench_opts *o, const cspresnet_model *model)
{
    cspresnet_detector_config dc;
    cspresnet_model_detector_config(model, &dc);
    const cspresnet_config *mc = &dc.backbone;
    printf("model      detector: backbone channels %d,%d,%d,%d,%d layers %d,%d,%d,%d, neck %d,%d,%d x %d, "
           "%d classes%s, input %dx3x%dx%d\n", mc->channels[0], mc->channels[1], mc->channels[2], mc->channels[3],
           mc->channels[4], mc->layers[0], mc->layers[1], mc->layers[2], mc->layers[3], dc.neck_channels[0],
           dc.neck_channels[1], dc.neck_channels[2], dc.neck_blocks, dc.num_classes,
           cspresnet_model_is_deployed(model) ? ", deployed" : "", o->batch, o->size[0], o->size[1]);
}

/* The report of the timed runs (times sorted here), then the RESULT line; nms: the
 * detector's NMS (NULL for a backbone). */
static void bench_report(const bench_opts *o, const cspresnet_model *model, const cspresnet_context *ctx,
                         double *times, int threads, bench_nms *nms)
{
    double flops = 0;
    int nodes = cspresnet_context_profile(ctx, -1, NULL, NULL, NULL);
    for (int i = 0; i < nodes; i++) {
        double fl;
        cspresnet_context_profile(ctx, i, NULL, NULL, &fl);
        flops += fl;
    }
    double med = median_sorted(times, o->runs), nms_med = nms ? median_sorted(nms->times, o->runs) : 0;
    double rss_mb = cli_peak_rss_mib();
    if (!o->cf.quiet) { /* -q: only the RESULT line */
        const cspresnet_config *mc = cspresnet_model_config(model);
        double peak = o->peak_core * threads;
        if (nms)
            detector_line(o, model);
        else
            printf("model      channels %d,%d,%d,%d,%d layers %d,%d,%d,%d%s, input %dx3x%dx%d\n", mc->channels[0],
               mc->channels[1], mc->channels[2], mc->channels[3], mc->channels[4], mc->layers[0], mc->layers[1],
               mc->layers[2], mc->layers[3], cspresnet_model_is_deployed(model) ? ", deployed" : "", o->batch,
               o->size[0], o->size[1]);
        printf("kernels    %s, %d threads, %s\n", cspresnet_context_isa(ctx), threads,
               cspresnet_precision_name((cspresnet_precision)cli_precision(model, &o->cf)));
        printf("latency    median %.2f ms, min %.2f ms, max %.2f ms (%d runs after %d warm-up)\n", med * 1e3,
               times[0] * 1e3, times[o->runs - 1] * 1e3, o->runs, o->warmup);
        if (nms)
            printf("nms        median %.2f ms, min %.2f ms, max %.2f ms (part of the latency); %zu detections in "
                   "the last run\n", nms_med * 1e3, nms->times[0] * 1e3, nms->times[o->runs - 1] * 1e3, nms->n_rows);
        printf("throughput %.2f images/s\n", o->batch / med);
        printf("compute    %.2f GFLOP per forward (conv, 2 x MACs), %.1f GFLOP/s = %.0f%% of %.1f GFLOP/s peak "
               "(SPEC 5: %.1f per core x %d)\n",
               flops * 1e-9, flops * 1e-9 / med, 100.0 * flops * 1e-9 / med / peak, peak, o->peak_core,
               threads);
        printf("memory     peak RSS %.1f MB, activation arena %.1f MB\n", rss_mb,
               (double)cspresnet_context_arena_bytes(ctx) / 1e6);
        if (o->profile) {
            printf("\n%-44s %10s %10s %9s\n", "layer", "ms/run", "GFLOP", "GFLOP/s");
            for (int i = 0; i < nodes; i++) {
                const char *name;
                double s, fl;
                cspresnet_context_profile(ctx, i, &name, &s, &fl);
                s /= o->runs;
                printf("%-44s %10.3f %10.3f %9.1f\n", name, s * 1e3, fl * 1e-9, s > 0 ? fl * 1e-9 / s : 0.0);
            }
        }
    }
    printf("RESULT median_ms=%.3f min_ms=%.3f max_ms=%.3f images_per_s=%.3f gflops=%.2f rss_mb=%.1f isa=%s "
           "precision=%s",
           med * 1e3, times[0] * 1e3, times[o->runs - 1] * 1e3, o->batch / med, flops * 1e-9 / med, rss_mb,
           cspresnet_context_isa(ctx), cspresnet_precision_name((cspresnet_precision)cli_precision(model, &o->cf)));
    if (nms)
        printf(" nms_ms=%.3f detections=%zu detector=1", nms_med * 1e3, nms->n_rows);
    printf("\n");
}

/* One forward (and, for a detector, its NMS); *seconds its time, nms->times[slot] the
 * NMS part (slot < 0: an untimed run). The NMS rows are allocated once, untimed. 0, or
 * -1 after a message. */
static int bench_once(const bench_opts *o, cspresnet_context *ctx, const float *x, bench_nms *nms, int slot,
                      double *seconds)
{
    double t0 = now();
    if (!o->detector) {
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out;
        if (cspresnet_forward(ctx, x, o->batch, 3, o->size[0], o->size[1], outs, &n_out) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet bench: %s\n", cspresnet_context_last_error(ctx));
            return -1;
        }
        *seconds = now() - t0;
        return 0;
    }
    const float *boxes, *scores;
    int anchors, classes;
    if (cspresnet_detector_forward(ctx, x, o->batch, o->size[0], o->size[1], &boxes, &scores, &anchors, &classes) !=
        CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", cspresnet_context_last_error(ctx));
        return -1;
    }
    double forward = now() - t0;
    if (!nms->rows) {
        nms->cap = cspresnet_nms_max_rows(&nms->opt, o->batch, classes, anchors);
        nms->rows = malloc(sizeof(float) * 6 * (nms->cap ? nms->cap : 1));
        nms->bbox_num = malloc(sizeof(int) * (size_t)o->batch);
        if (!nms->rows || !nms->bbox_num) {
            fprintf(stderr, "cspresnet bench: out of memory for %zu NMS rows\n", nms->cap);
            return -1;
        }
    }
    char err[1024];
    double t1 = now();
    if (cspresnet_multiclass_nms(boxes, scores, o->batch, classes, anchors, &nms->opt, nms->rows, nms->cap,
                                 nms->bbox_num, &nms->n_rows, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        return -1;
    }
    double t2 = now();
    if (slot >= 0)
        nms->times[slot] = t2 - t1;
    *seconds = forward + (t2 - t1);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {.runs = 7, .warmup = 2, .batch = 1, .size = {640, 640}, .peak_core = 272.6};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    int rc = cli_parse(&BENCH, &o, argc, argv);
    if (rc != CLI_PARSED)
        return rc;
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    cspresnet_array x = {0};
    double *times = NULL;
    bench_nms nms = {.rows = NULL};
    cspresnet_nms_options_init(&nms.opt);
    char err[1024];
    rc = 1;
    if (bench_input(&o, &x) != 0 || (rc = bench_model(&o, &x, &model)) != 0)
        goto done;
    rc = 1;
    int threads = o.cf.threads;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 && online < 1024 ? (int)online : 1;
    }
    common_flags cf = o.cf;
    cf.threads = threads;
    if (cli_context_create_cf(model, &cf, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet bench: %s\n", err);
        goto done;
    }
    times = calloc((size_t)o.runs, sizeof *times);
    nms.times = calloc((size_t)o.runs, sizeof *nms.times);
    if (!times || !nms.times) {
        fprintf(stderr, "cspresnet bench: out of memory\n");
        goto done;
    }
    for (int r = 0; r < o.warmup + o.runs; r++) {
        if (r == o.warmup && o.profile)
            cspresnet_context_set_profile(ctx, 1);
        double s;
        if (bench_once(&o, ctx, x.data, &nms, r - o.warmup, &s) != 0)
            goto done;
        if (r >= o.warmup)
            times[r - o.warmup] = s;
    }
    bench_report(&o, model, ctx, times, threads, o.detector ? &nms : NULL);
    rc = 0;
done:
    free(times);
    free(nms.times);
    free(nms.rows);
    free(nms.bbox_num);
    cspresnet_array_free(&x);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return rc;
}
