/*
 * cmd_quantize.c - `cspresnet quantize`: a weight file (or seeded random weights of
 * --arch) in, an int8 safetensors file out: the deployed network (BN folded, RepVGG
 * merged), calibrated once on the given inputs exactly as --precision int8 calibrates at
 * load (cli_calibration_batch for random and .npy; images decoded and pre-processed as
 * infer and detect do), its int8 convs' s8 weights, weight scales, input scales and zero
 * points written as cspresnet_model_save_safetensors_ex lays them out. Loading the file
 * then runs int8 with no calibration and the same bits.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cspresnet_formats.h"
#include "image.h"

static const char *const ISA_NAMES[] = {"ref", "generic", "avx2", "avx512"};
static const cli_choice ISA_CHOICES[] = {{"ref", 0}, {"generic", 1}, {"avx2", 2}, {"avx512", 3}, {NULL, 0}};

typedef struct quantize_opts {
    arch_flags af;
    common_flags cf;
    const char *weights, *out;
    const char **inputs;      /* --calibration and the words after it */
    int n_inputs;
    int detector, isa;
    image_job job;            /* images: --size, --preprocess */
} quantize_opts;

static int calibration_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    quantize_opts *o = dest;
    (void)f, (void)cmd;
    o->inputs[o->n_inputs++] = v;
    return 0;
}

static int positional(void *opts, const char *arg, const cli_command *cmd)
{
    quantize_opts *o = opts;
    if (arg[0] == '-' && arg[1] != '\0')
        return cli_unknown(cmd, arg);
    o->inputs[o->n_inputs++] = arg;
    return 0;
}

static const char SYNOPSIS[] =
    "usage: cspresnet quantize --weights F --calibration (X.npy | IMAGE... | random) --out Q.safetensors\n"
    "                          [--detector] [--size H,W] [--letterbox] [--preprocess P] [--calib-method M]\n"
    "                          [--isa K]\n"
    "       cspresnet quantize --arch P [--detector] --calibration random --out Q.safetensors\n"
    "\n"
    "Writes Q, an int8 safetensors file: F's deployed network (BN folded, RepVGG blocks merged)\n"
    "with the activation scales that int8 inference (infer, detect) calibrates at load on the\n"
    "same inputs and method, and every conv that runs int8 on the kernel set (--isa, else\n"
    "CSPRESNET_ISA, else this CPU's best) stored as its int8 values: \"<conv>.weight\" I8 (OIHW),\n"
    "\"<conv>.weight_scale\" F32 [OC], \"<conv>.input_scale\" F32 [1], \"<conv>.input_zero_point\"\n"
    "I32 [1]; biases and the convs that stay float F32 (the stem's first conv, and on sets with\n"
    "no int8 tap form, avx2 and generic, the 3x3 stride-1 convs they run by Winograd); the\n"
    "list of those is printed. infer, bench and detect run Q as int8 with no calibration,\n"
    "with the same outputs, bit for bit, as calibrating F at load. The calibration inputs:\n"
    "random (4 seeded 256x256 images), an .npy batch (N x 3 x H x W, used as is), or JPEG/PNG\n"
    "images, folders and list files (resized to --size, or letterboxed with --letterbox, and\n"
    "pre-processed by --preprocess, as infer and detect do). --arch P with no --weights\n"
    "quantizes seeded random weights (for benchmarks).\n"
    "\n";

static const char NOTES[] =
    "\n"
    "Exit status: 0 written, 1 failure (bad input, I/O; nothing is written), 2 usage error.\n";

#define OPT(field) offsetof(quantize_opts, field)
#define JOB(field) (offsetof(quantize_opts, job) + offsetof(image_job, field))

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "F", "the weights (.pdparams or safetensors, backbone or detector)"),
     .parse = cli_str, .off = OPT(weights)},
    {CLI_FLAG("--out", "-o", "Q", "the int8 .safetensors file to write"), .parse = cli_str, .off = OPT(out)},
    {CLI_FLAG("--calibration", NULL, "SRC", "the calibration inputs: random, an .npy batch, or an image, folder\n"
                                            "or list file (more images may follow as words)"),
     .parse = calibration_flag},
    {CLI_FLAG("--calib-method", NULL, "M", "minmax (default: each conv input's min and max) or percentile\n"
                                           "(its 0.01% and 99.99% quantiles)"),
     .parse = cli_calib_method_flag, .off = OPT(cf), .bad = "--calib-method must be minmax or percentile"},
    {CLI_FLAG("--detector", NULL, NULL, "a whole PP-YOLOE detector (F a detector file, or --arch's random one)"),
     .parse = cli_set, .off = OPT(detector), .lo = 1},
    {CLI_FLAG("--size", NULL, "H,W|N", "images: the network input size (default 640,640); N is N,N"),
     .parse = cli_size, .off = JOB(height), .hi = 16384,
     .bad = "--size must be H,W or N (for N,N) with H, W, N in 1..16384"},
    {CLI_FLAG("--letterbox", NULL, NULL, "images: keep the aspect ratio, centre on grey (as infer --letterbox)"),
     .parse = cli_set, .off = JOB(letterbox), .lo = 1},
    {CLI_FLAG("--preprocess", NULL, "P", "images: ppyoloe+ (RGB/255; default), ppyoloe, imagenet or none"),
     .parse = cli_preprocess_flag, .off = JOB(pre), .bad = "--preprocess must be ppyoloe+, ppyoloe, imagenet or none"},
    {CLI_FLAG("--isa", NULL, "K", "kernel set whose rules pick the int8 convs and that calibrates: ref,\n"
                                  "generic, avx2 or avx512 (default CSPRESNET_ISA, else the best this CPU runs)"),
     .parse = cli_pick, .off = OPT(isa), .choices = ISA_CHOICES, .bad = "--isa must be ref, generic, avx2 or avx512"},
    {CLI_FLAG("--threads", NULL, "N", "worker threads for the calibration (default: the online CPUs)"),
     .parse = cli_threads_flag, .off = OPT(cf)},
    CLI_HEADING("Random weights (no --weights): --arch P, or the other architecture flags, as for bench:"),
    CLI_GROUP(ARCH_FLAGS, OPT(af)),
    CLI_HEADING("Output:"),
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success"), .parse = cli_quiet, .off = OPT(cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output (the file, and the layers kept in float)"),
     .parse = cli_quiet, .off = OPT(cf)},
    CLI_END,
};

static const cli_command QUANTIZE = {
    .name = "quantize", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS, .positional = positional};

/* The images among o->inputs, decoded and pre-processed into one batch. */
static cspresnet_status image_batch_all(const quantize_opts *o, cspresnet_array *x, char *err, size_t err_size)
{
    input_list images = {0};
    image_batch b = {0};
    cspresnet_status s = CSPRESNET_ERR_IO;
    for (int k = 0; k < o->n_inputs; k++)
        if (input_list_add(&images, o->inputs[k], err, err_size) != 0)
            goto done;
    const int H = o->job.height, W = o->job.width;
    const size_t image = 3 * (size_t)H * W;
    x->ndim = 4;
    x->shape[0] = 0, x->shape[1] = 3, x->shape[2] = H, x->shape[3] = W;
    x->data = malloc(sizeof(float) * image * (images.count ? images.count : 1));
    if (!x->data || image_batch_init(&b, 8, H, W, 0) != 0) {
        snprintf(err, err_size, "out of memory for the calibration images");
        s = CSPRESNET_ERR_MEMORY;
        goto done;
    }
    size_t next = 0, failed = 0;
    while (image_batch_fill(&b, &images, &o->job, &next, NULL, &failed) > 0) {
        memcpy(x->data + (size_t)x->shape[0] * image, b.tensor, sizeof(float) * image * (size_t)b.n);
        x->shape[0] += b.n;
    }
    x->numel = x->shape[0] * (int64_t)image;
    if (failed) {
        snprintf(err, err_size, "%zu of %zu calibration images could not be read (see above)", failed, images.count);
        goto done;
    }
    s = CSPRESNET_OK;
done:
    image_batch_free(&b);
    input_list_free(&images);
    if (s != CSPRESNET_OK)
        cspresnet_array_free(x);
    return s;
}

/* The calibration batch: random or one .npy (cli_calibration_batch), else images. */
static cspresnet_status calibration_inputs(const quantize_opts *o, cspresnet_array *x, char *err, size_t err_size)
{
    const char *first = o->inputs[0];
    size_t n = strlen(first);
    int npy = n > 4 && strcmp(first + n - 4, ".npy") == 0;
    if (o->n_inputs == 1 && (npy || strcmp(first, "random") == 0))
        return cli_calibration_batch(first, x, err, err_size);
    for (int k = 0; k < o->n_inputs; k++)
        if (strcmp(o->inputs[k], "random") == 0 ||
            ((n = strlen(o->inputs[k])) > 4 && strcmp(o->inputs[k] + n - 4, ".npy") == 0)) {
            snprintf(err, err_size, "--calibration: random and an .npy batch stand alone, not among images ('%s')",
                     o->inputs[k]);
            return CSPRESNET_ERR_ARGUMENT;
        }
    return image_batch_all(o, x, err, err_size);
}

/* F, or seeded random weights of the architecture flags (a detector's BN statistics
 * from the first calibration image, as bench does). */
static cspresnet_status quantize_model(quantize_opts *o, const cspresnet_array *x, cspresnet_model **model,
                                       char *err, size_t err_size)
{
    cspresnet_load_options opt;
    cspresnet_config expect, cfg;
    if (o->weights) {
        if (arch_flags_load_options(&o->af, &opt, &expect, "quantize") != 0)
            return CSPRESNET_ERR_ARGUMENT;
        return o->detector ? cli_load_detector(o->weights, &opt, model, err, err_size)
                           : cli_load_model(o->weights, &opt, model, err, err_size);
    }
    if (arch_flags_config(&o->af, &cfg, "quantize") != 0)
        return CSPRESNET_ERR_ARGUMENT;
    if (!o->detector)
        return cspresnet_model_create(&cfg, 1, model, err, err_size);
    cspresnet_detector_config dc;
    if (cspresnet_detector_config_preset(o->af.arch ? o->af.arch : "s", &dc) != CSPRESNET_OK) {
        snprintf(err, err_size, "--detector with random weights takes --arch s|m|l|x");
        return CSPRESNET_ERR_ARGUMENT;
    }
    dc.backbone = cfg;
    cspresnet_status s = cspresnet_detector_create(&dc, 1, model, err, err_size);
    if (s == CSPRESNET_OK)
        s = cspresnet_model_calibrate_bn(*model, x->data, 1, (int)x->shape[2], (int)x->shape[3], err, err_size);
    return s;
}

static int check_opts(quantize_opts *o)
{
    if (!o->out || !o->n_inputs) {
        fprintf(stderr, "cspresnet quantize: --out Q.safetensors and --calibration SRC are required (see cspresnet "
                        "quantize --help)\n");
        return EXIT_USAGE;
    }
    if (o->weights && arch_flags_fix_architecture(&o->af)) {
        fprintf(stderr, "cspresnet quantize: give --weights or an architecture (--arch ...), not both\n");
        return EXIT_USAGE;
    }
    if (!o->weights && !arch_flags_fix_architecture(&o->af)) {
        fprintf(stderr, "cspresnet quantize: --weights F (or --arch P for random weights) is required\n");
        return EXIT_USAGE;
    }
    size_t n = strlen(o->out);
    if (n <= 12 || strcmp(o->out + n - 12, ".safetensors") != 0) {
        fprintf(stderr, "cspresnet quantize: --out must name a .safetensors file, not '%s'\n", o->out);
        return EXIT_USAGE;
    }
    return 0;
}

/* "random", the .npy, "N images": what __metadata__ calibration_source records. */
static void source_name(const quantize_opts *o, const cspresnet_array *x, char *out, size_t n)
{
    const char *base = strrchr(o->inputs[0], '/');
    if (o->n_inputs == 1 && strcmp(o->inputs[0], "random") == 0)
        snprintf(out, n, "random");
    else if (o->n_inputs == 1 && strstr(o->inputs[0], ".npy"))
        snprintf(out, n, "%s", base ? base + 1 : o->inputs[0]);
    else
        snprintf(out, n, "%lld images %dx%d%s, preprocess %s", (long long)x->shape[0], o->job.height, o->job.width,
                 o->job.letterbox ? " letterbox" : "", cspresnet_preprocess_name(o->job.pre));
}

static int quantize_run(quantize_opts *o)
{
    char err[1024], floats[8192], source[512];
    cspresnet_array x = {0};
    cspresnet_model *model = NULL;
    int rc = 1;
    const char *isa = o->isa >= 0 ? ISA_NAMES[o->isa] : cli_isa();
    cspresnet_status s = calibration_inputs(o, &x, err, sizeof err);
    if (s == CSPRESNET_OK && x.shape[0] < 1) {
        snprintf(err, sizeof err, "--calibration: no images in %s", o->inputs[0]);
        s = CSPRESNET_ERR_ARGUMENT;
    }
    if (s == CSPRESNET_OK)
        s = quantize_model(o, &x, &model, err, sizeof err);
    if (s == CSPRESNET_OK && cspresnet_model_file_precision(model) != CSPRESNET_PRECISION_FP32) {
        snprintf(err, sizeof err, "%s is already %s file: quantize the fp32 weights", o->weights,
                 cspresnet_model_file_precision(model) == CSPRESNET_PRECISION_INT8 ? "an int8" : "a bf16");
        s = CSPRESNET_ERR_ARGUMENT;
    }
    if (s == CSPRESNET_OK)
        s = cli_deploy(&model, err, sizeof err);
    if (s == CSPRESNET_OK)
        s = cspresnet_model_calibrate(model, x.data, (int)x.shape[0], (int)x.shape[2], (int)x.shape[3], 4,
                                      (cspresnet_calibration)o->cf.calib_method, o->cf.threads, isa, err, sizeof err);
    if (s == CSPRESNET_OK) {
        cspresnet_save_options so;
        cspresnet_save_options_init(&so);
        so.precision = CSPRESNET_PRECISION_INT8;
        so.isa = isa;
        source_name(o, &x, source, sizeof source);
        so.calibration_source = source;
        so.log = floats;
        so.log_size = sizeof floats;
        const char *base = o->weights ? strrchr(o->weights, '/') : NULL;
        s = cspresnet_model_save_safetensors_ex(model, o->out, o->weights ? (base ? base + 1 : o->weights) : "random",
                                                &so, err, sizeof err);
    }
    if (s != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet quantize: %s\n", err);
    } else {
        if (!o->cf.quiet) {
            int n = floats[0] != '\0';
            for (const char *c = floats; *c; c++)
                n += *c == ',';
            printf("wrote %s (int8, %s calibration on %s)\nkept in float (%d layers): %s\n", o->out,
                   cspresnet_calibration_name((cspresnet_calibration)o->cf.calib_method), source, n,
                   floats[0] ? floats : "(none)");
        }
        rc = 0;
    }
    cspresnet_model_free(model);
    cspresnet_array_free(&x);
    return rc;
}

int cmd_quantize(int argc, char **argv)
{
    quantize_opts o = {.isa = -1, .job = {.height = 640, .width = 640, .pre = CSPRESNET_PRE_PPYOLOE_PLUS, .batch = 1,
                                          .cmd = "quantize", .quiet = 0}};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    if (!(o.inputs = calloc((size_t)argc + 1, sizeof *o.inputs))) {
        fprintf(stderr, "cspresnet quantize: out of memory\n");
        return 1;
    }
    int rc = cli_parse(&QUANTIZE, &o, argc, argv);
    if (rc == CLI_PARSED && (rc = check_opts(&o)) == 0)
        rc = quantize_run(&o);
    free(o.inputs);
    return rc;
}
