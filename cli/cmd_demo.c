/*
 * cmd_demo.c - `cspresnet demo`: the whole product in one command, on a fresh machine
 * with no weight files, in a few minutes on 2 cores:
 *   1. the summary of a preset (totals on screen, the full table in a file);
 *   2. a short fine-tune on Fashion-MNIST through the train subcommand (demo_finetune);
 *   3. feature maps and the heat-map pictures of a few real photos (scikit-image's
 *      sample photos from Debian's python3-skimage package, found on disk or extracted by
 *      scripts/fetch-photos.sh; generated pictures when there are none, and it says so);
 *   4. the measured speed of the forward pass;
 * and where every file went. --weights FILE or CSPRESNET_WEIGHTS uses official weights.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "image.h"
#include "progress.h"

/* The train subcommand, if this build has it (a weak reference: NULL otherwise). */
extern int cmd_train(int argc, char **argv) __attribute__((weak));

/* Sample photos looked for, in this order, in each candidate folder. */
static const char *const PHOTOS[] = {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"};
static const char *const PHOTO_DIRS[] = {
    "/usr/lib/python3/dist-packages/skimage/data", /* python3-skimage installed */
    "out/photos", /* extracted from the package by scripts/fetch-photos.sh */
};

typedef struct demo_opts {
    const char *weights, *arch, *out, *images;
    int size, quick, no_finetune;
    common_flags cf;
} demo_opts;

static const char SYNOPSIS[] =
    "usage: cspresnet demo [--weights FILE] [--arch t|s|m|l|x] [--out DIR] [--images DIR]\n"
    "                      [--size N] [--quick] [--no-finetune] [--threads N] [-q|-v]\n"
    "\n"
    "Shows the whole product in one go: the summary of a preset, a short fine-tune on\n"
    "Fashion-MNIST (when this build has the train subcommand), feature maps and heat-map\n"
    "pictures of a few real photos, and the measured speed; then lists every file written.\n"
    "\n";

static const char NOTES[] = "\nExit status: 0 success, 1 a step failed, 2 usage error.\n";

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "FILE", "official weights (.pdparams or safetensors); default $CSPRESNET_WEIGHTS,\n"
                                         "else seeded random weights of --arch (the pictures then show an\n"
                                         "untrained network)"),
     .parse = cli_str, .off = offsetof(demo_opts, weights)},
    {CLI_FLAG("--arch", NULL, "P", "preset for the summary and random weights (default s)"), .parse = cli_str,
     .off = offsetof(demo_opts, arch)},
    {CLI_FLAG("--out", NULL, "DIR", "where everything goes (default out/demo)"), .parse = cli_str,
     .off = offsetof(demo_opts, out)},
    {CLI_FLAG("--images", NULL, "DIR", "photos to use (default: scikit-image's sample photos from Debian's\n"
                                       "python3-skimage, installed or extracted by scripts/fetch-photos.sh;\n"
                                       "generated pictures when none are found)"),
     .parse = cli_str, .off = offsetof(demo_opts, images)},
    {CLI_FLAG("--size", NULL, "N", "network input N x N (default 640, PP-YOLOE's eval size)"), .parse = cli_count,
     .off = offsetof(demo_opts, size), .lo = 32, .hi = 4096, .bad = "--size needs a number in 32..4096"},
    {CLI_FLAG("--quick", NULL, NULL, "a short run for tests: 160 x 160, one photo, tiny fine-tune, 1 timing"),
     .parse = cli_set, .off = offsetof(demo_opts, quick), .lo = 1},
    {CLI_FLAG("--no-finetune", NULL, NULL, "skip the fine-tune step"), .parse = cli_set,
     .off = offsetof(demo_opts, no_finetune), .lo = 1},
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default and most: the online CPUs)"),
     .parse = cli_threads_flag, .off = offsetof(demo_opts, cf)},
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success"), .parse = cli_quiet, .off = offsetof(demo_opts, cf),
     .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output"), .parse = cli_quiet, .off = offsetof(demo_opts, cf)},
    CLI_END,
};

static const cli_command DEMO = {.name = "demo", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS};

/* Step 1: summary totals on screen, the full table in <out>/summary.txt. */
static int demo_summary(const demo_opts *o, const cspresnet_config *cfg, int deployed)
{
    char *buf = NULL, err[512];
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem || cspresnet_summary_print(cfg, deployed, 1, o->size, o->size, mem, err, sizeof err) != CSPRESNET_OK) {
        if (mem)
            fclose(mem);
        free(buf);
        fprintf(stderr, "cspresnet demo: summary: %s\n", mem ? err : strerror(errno));
        return -1;
    }
    fclose(mem);
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.txt", o->out);
    int rc = 0;
    if (cspresnet_write_file_atomic(path, buf, len, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet demo: %s\n", err);
        rc = -1;
    }
    /* the totals: everything from the first "Total params" line on */
    const char *totals = strstr(buf, "Total params");
    if (!o->cf.quiet) {
        printf("%s", totals ? totals : buf);
        printf("full layer table -> %s\n", path);
    }
    free(buf);
    return rc;
}

/* Step 2: the fine-tune. Calls the train subcommand with the arguments below; the
 * train subcommand owns the data set, the progress bar and the accuracy line.
 * WIRING POINT: keep these flags in step with `cspresnet train --help`. */
static int demo_finetune(const demo_opts *o)
{
    if (o->no_finetune) {
        printf("skipped (--no-finetune)\n");
        return 0;
    }
    if (!cmd_train) {
        printf("skipped: this build has no `cspresnet train` subcommand yet\n");
        return 0;
    }
    char out[4096], threads[16];
    snprintf(out, sizeof out, "%s/finetune", o->out);
    snprintf(threads, sizeof threads, "%d", o->cf.threads);
    char *argv[] = {"train", "--dataset", "fashion-mnist", "--arch", o->arch ? (char *)o->arch : "s",
                    "--steps", o->quick ? "10" : "150", "--limit-test", o->quick ? "200" : "2000",
                    "--out", out, o->cf.threads ? "--threads" : NULL, threads, NULL};
    int argc = 0;
    while (argv[argc])
        argc++;
    fflush(stdout);
    int rc = cmd_train(argc, argv);
    if (rc != 0)
        fprintf(stderr, "cspresnet demo: the fine-tune step failed (train exit status %d)\n", rc);
    return rc == 0 ? 0 : -1;
}

/* Pictures to use when no photo is found: a few smooth colour scenes. */
static int generate_images(const char *dir, input_list *list)
{
    const int H = 480, W = 640;
    uint8_t *rgb = malloc((size_t)H * W * 3);
    char err[1024], path[4096];
    if (!rgb || cli_make_dir(dir) != 0) {
        free(rgb);
        fprintf(stderr, "cspresnet demo: cannot create %s\n", dir);
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *p = rgb + ((size_t)y * W + x) * 3;
                int dx = x - W / 2 - k * 60, dy = y - H / 2 + k * 40, disc = dx * dx + dy * dy < (90 + 30 * k) * (90 + 30 * k);
                int stripe = ((x / (16 + 8 * k)) & 1) && y > H * 2 / 3;
                p[0] = (uint8_t)(disc ? 230 : 40 + 150 * y / H);
                p[1] = (uint8_t)(stripe ? 220 : 60 + 120 * x / W * (k + 1) / 3);
                p[2] = (uint8_t)(disc ? 40 : 200 - 120 * y / H);
            }
        snprintf(path, sizeof path, "%s/generated%d.png", dir, k + 1);
        if (png_write_rgb(path, rgb, H, W, err, sizeof err) != 0 || input_list_add(list, path, err, sizeof err) != 0) {
            fprintf(stderr, "cspresnet demo: %s\n", err);
            free(rgb);
            return -1;
        }
    }
    free(rgb);
    return 0;
}

static int find_photos(const demo_opts *o, input_list *list, const char **source)
{
    char err[1024], path[4096];
    int want = o->quick ? 1 : 4;
    if (o->images) {
        *source = o->images;
        if (input_list_add(list, o->images, err, sizeof err) != 0) {
            fprintf(stderr, "cspresnet demo: %s\n", err);
            return -1;
        }
        return 0;
    }
    for (size_t d = 0; d < sizeof PHOTO_DIRS / sizeof PHOTO_DIRS[0] && list->count == 0; d++)
        for (size_t k = 0; k < sizeof PHOTOS / sizeof PHOTOS[0] && (int)list->count < want; k++) {
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", PHOTO_DIRS[d], PHOTOS[k]);
            if (stat(path, &st) == 0 && input_list_add(list, path, err, sizeof err) == 0)
                *source = "scikit-image sample photos (Debian package python3-skimage)";
        }
    if (list->count)
        return 0;
    snprintf(path, sizeof path, "%s/generated", o->out);
    *source = "generated pictures (no photos found: run scripts/fetch-photos.sh or pass --images DIR)";
    return generate_images(path, list);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Step 4: a warm-up forward, then `reps` timed ones on a seeded 1 x 3 x size x size input. */
static int demo_speed(const demo_opts *o, cspresnet_context *ctx, const cspresnet_config *cfg)
{
    int reps = o->quick ? 1 : 5;
    const int shape[4] = {1, 3, o->size, o->size};
    cspresnet_array x;
    double t[8];
    if (cli_random_input(&x, shape) != 0) {
        fprintf(stderr, "cspresnet demo: out of memory\n");
        return -1;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out;
    for (int r = -1; r < reps; r++) {
        double t0 = now_seconds();
        if (cspresnet_forward(ctx, x.data, 1, 3, o->size, o->size, outs, &n_out) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet demo: %s\n", cspresnet_context_last_error(ctx));
            cspresnet_array_free(&x);
            return -1;
        }
        if (r >= 0)
            t[r] = now_seconds() - t0;
    }
    cspresnet_array_free(&x);
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    double med = t[reps / 2];
    if (!o->cf.quiet) {
        printf("forward 1x3x%dx%d, %s, stages %d..%d: median %.1f ms of %d run%s (%.2f images/s), %s threads\n",
               o->size, o->size, o->arch ? o->arch : "loaded model", cfg->return_idx[0], cfg->return_idx[cfg->num_return - 1],
               med * 1e3, reps, reps > 1 ? "s" : "", 1.0 / med, o->cf.threads ? "given" : "all CPU");
        printf("(wall-clock on this machine, first run excluded; `cspresnet bench` measures properly)\n");
    }
    return 0;
}

/* Step 3: the photos' feature maps and heat maps in <out>/features/<photo>/. */
static int demo_features(const demo_opts *o, cspresnet_context *ctx, input_list *photos, unsigned char **written)
{
    const char *source = "";
    if (find_photos(o, photos, &source) != 0)
        return -1;
    if (!(*written = calloc(photos->count + 1, 1))) {
        fprintf(stderr, "cspresnet demo: out of memory\n");
        return -1;
    }
    char feat[4096];
    snprintf(feat, sizeof feat, "%s/features", o->out);
    if (!o->cf.quiet)
        printf("images: %zu from %s\n", photos->count, source);
    image_job job = {.out_dir = feat, .visualize = "heatmap.png", .visualize_in_folders = 1, .height = o->size,
                     .width = o->size, .pre = CSPRESNET_PRE_PPYOLOE_PLUS, .batch = 1, .quiet = o->cf.quiet,
                     .verbose = 1, .cmd = "demo", .written = *written};
    image_job_result res;
    int r = infer_images(ctx, photos, &job, &res);
    if (!o->cf.quiet && r >= 0)
        printf("%zu image%s: bicubic resize to %dx%d, preprocess ppyoloe+ (RGB/255); %.2f s in forward\n",
               res.done, res.done == 1 ? "" : "s", o->size, o->size, res.forward_seconds);
    return r != 0 ? -1 : 0;
}

/* Where every file went: only what this run wrote (a photo that could not be read has
 * no folder). */
static void demo_files(const demo_opts *o, const cspresnet_config *cfg, int summary_ok, int finetune_ok,
                       const input_list *photos, const unsigned char *written)
{
    printf("\n== files ==\n");
    if (summary_ok)
        printf("%s/summary.txt                  the full layer table\n", o->out);
    if (cmd_train && !o->no_finetune && finetune_ok)
        printf("%s/finetune/                    the fine-tune's outputs (see its lines above)\n", o->out);
    for (size_t k = 0; written && k < photos->count; k++) {
        char name[512];
        if (!written[k])
            continue;
        infer_images_folder_name(photos, k, name, sizeof name);
        printf("%s/features/%s/stage{%d..%d}.npy, heatmap.png   from %s\n", o->out, name, cfg->return_idx[0],
               cfg->return_idx[cfg->num_return - 1], photos->paths[k]);
    }
}

int cmd_demo(int argc, char **argv)
{
    demo_opts o = {.arch = "s", .out = "out/demo", .size = 640};
    common_flags_init(&o.cf);
    int r = cli_parse(&DEMO, &o, argc, argv);
    if (r != CLI_PARSED)
        return r;
    if (o.quick && o.size == 640)
        o.size = 160;
    if (!o.weights && getenv("CSPRESNET_WEIGHTS") && *getenv("CSPRESNET_WEIGHTS"))
        o.weights = getenv("CSPRESNET_WEIGHTS");
    cspresnet_config cfg;
    if (cspresnet_config_preset(o.arch, &cfg) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet demo: unknown --arch '%s' (t, s, m, l, x)\n", o.arch);
        return EXIT_USAGE;
    }
    if (cli_make_dir(o.out) != 0) {
        fprintf(stderr, "cspresnet demo: cannot create %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    int failed = 0;
    double start = now_seconds();
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    char err[1024], log[512] = "";
    if (o.weights) {
        cspresnet_load_options opt;
        cspresnet_load_options_init(&opt);
        opt.log = log;
        opt.log_size = sizeof log;
        if (cli_load_weights(o.weights, &opt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet demo: %s\n", err);
            return 1;
        }
        cfg = *cspresnet_model_config(model);
        o.arch = NULL;
    } else if (cspresnet_model_create(&cfg, 1, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet demo: %s\n", err);
        return 1;
    }

    if (!o.cf.quiet) {
        printf("== cspresnet %s demo: CSPResNet, the PP-YOLOE / PP-YOLOE+ backbone, in C ==\n", CSPRESNET_VERSION);
        if (o.weights)
            printf("weights: %s%s%s\n", o.weights, log[0] ? "; " : "", log);
        else
            printf("weights: none given (--weights or CSPRESNET_WEIGHTS): seeded random weights of preset %s\n",
                   o.arch);
        printf("\n== 1/4 summary of %s%s at 1x3x%dx%d ==\n", o.weights ? "the loaded model" : "preset ",
               o.weights ? "" : o.arch, o.size, o.size);
    }
    int summary_ok = demo_summary(&o, &cfg, 0) == 0;
    failed |= !summary_ok;

    if (!o.cf.quiet)
        printf("\n== 2/4 fine-tune on Fashion-MNIST ==\n");
    int finetune_ok = demo_finetune(&o) == 0;
    failed |= !finetune_ok;

    if (!o.cf.quiet)
        printf("\n== 3/4 feature maps and pictures ==\n");
    input_list photos = {0};
    unsigned char *written = NULL; /* per photo: 1 when all its files were written */
    if (cli_context_create(model, o.cf.threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet demo: %s\n", err);
        failed = 1;
    } else {
        failed |= demo_features(&o, ctx, &photos, &written) != 0;
    }

    if (!o.cf.quiet)
        printf("\n== 4/4 speed ==\n");
    if (ctx)
        failed |= demo_speed(&o, ctx, &cfg) != 0;

    if (!o.cf.quiet) {
        demo_files(&o, &cfg, summary_ok, finetune_ok, &photos, written);
        printf("done in %.1f s%s\n", now_seconds() - start, failed ? " (with failures, see above)" : "");
    }
    free(written);
    input_list_free(&photos);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return failed ? 1 : 0;
}
