/*
 * cmd_infer.c - `cspresnet infer`: weights + inputs in, one .npy per returned stage
 * out. Inputs are an .npy batch (N x 3 x H x W, used as given), or JPEG/PNG images,
 * folders of them and list files, which go through infer_images.c (decode, resize,
 * pre-process, batches, one output folder per image, optional --visualize picture).
 * The architecture comes from the weight file; architecture flags, when given, are
 * checks that the file must pass.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "image.h"

typedef struct infer_opts {
    arch_flags af;
    common_flags cf;
    const char *weights, *out_dir;
    int deploy, random;
    int input_size[4];      /* input_size[0] 0: not given */
    image_job job;
    const char **inputs;    /* images, folders, list files or one .npy, in order */
    int n_inputs;
} infer_opts;

static int add_input(infer_opts *o, const char *arg)
{
    o->inputs[o->n_inputs++] = arg;
    return 0;
}

static int input_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)f, (void)cmd;
    return add_input(dest, v);
}

/* A word that is no flag: an input, unless it looks like an option. */
static int positional(void *opts, const char *arg, const cli_command *cmd)
{
    if (arg[0] == '-' && arg[1] != '\0')
        return cli_unknown(cmd, arg);
    return add_input(opts, arg);
}

/* --input-size N,3,H,W: N in 1..4096, H and W in 1..16384. */
static int input_size(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    int *in = dest;
    if (parse_int_list(v, in, 4) != 4 || in[0] < 1 || in[1] != 3 || in[2] < 1 || in[3] < 1 || in[0] > 4096 ||
        in[2] > 16384 || in[3] > 16384)
        return cli_refuse(f, v, cmd);
    return 0;
}

static const char SYNOPSIS[] =
    "usage: cspresnet infer --weights FILE --out DIR INPUT... [options]\n"
    "       cspresnet infer --arch P --out DIR (INPUT... | --random-input)   (random weights, a try-out)\n"
    "\n"
    "INPUT is a JPEG or PNG image, a folder (its .jpg/.jpeg/.png files, sorted), a list file\n"
    "(.txt/.lst/.list, one path per line; relative paths are taken from the list file's\n"
    "folder) or one .npy batch (float32 N x 3 x H x W, used as\n"
    "is). Inputs may also be given with --input. Each image is decoded (gray, RGB, RGBA,\n"
    "palette, 16-bit; as cv2.imread with IMREAD_COLOR sees it), resized to --size with\n"
    "bicubic interpolation (bit-exact with cv2.INTER_CUBIC, upstream's eval transform) and\n"
    "pre-processed, then DIR/<image name>/stage{i}.npy (1 x C x H/stride x W/stride) is\n"
    "written for each i in --return-idx. An .npy input gives DIR/stage{i}.npy instead.\n"
    "An image that cannot be read is reported and skipped; the exit status is then 1.\n"
    "\n";

static const char NOTES[] =
    "\n"
    "Without --weights, an architecture flag (--arch, --width-mult, ...) builds a model with\n"
    "seeded random weights; with --random-input as well, the tool can be tried before one has\n"
    "weight files or images. An input (or --random-input) is always required.\n"
    "Exit status: 0 success, 1 failure (or some images failed), 2 usage error.\n";

#define JOB(field) (offsetof(infer_opts, job) + offsetof(image_job, field))

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "FILE", "the model (.pdparams or safetensors; the file decides the architecture)"),
     .parse = cli_str, .off = offsetof(infer_opts, weights)},
    {CLI_FLAG("--out", NULL, "DIR", "where the outputs go"), .parse = cli_str, .off = offsetof(infer_opts, out_dir)},
    {CLI_FLAG("--input", NULL, "INPUT", "one more input (as the INPUT words)"), .parse = input_flag},
    {CLI_FLAG("--random-input", NULL, NULL, "no INPUT: a seeded random batch in [0, 1) of --input-size, written as\n"
                                            "DIR/stage{i}.npy"),
     .parse = cli_set, .off = offsetof(infer_opts, random), .lo = 1},
    {CLI_FLAG("--input-size", NULL, "N,3,H,W", "the --random-input shape (default 1,3,640,640)"), .parse = input_size,
     .off = offsetof(infer_opts, input_size),
     .bad = "--input-size must be N,3,H,W with N in 1..4096, H and W in 1..16384"},
    {CLI_FLAG("--size", NULL, "H,W|N", "network input size for images (default 640,640); N is N,N"),
     .parse = cli_size, .off = JOB(height), .hi = 16384,
     .bad = "--size must be H,W or N (for N,N) with H, W, N in 1..16384 (for example 640,640 or 640)"},
    {CLI_FLAG("--letterbox", NULL, NULL, "keep the aspect ratio, centre on grey (PaddleDetection's\n"
                                         "LetterBoxResize geometry) instead of stretching"),
     .parse = cli_set, .off = JOB(letterbox), .lo = 1},
    {CLI_FLAG("--preprocess", NULL, "P", "ppyoloe+ (RGB/255; default, PP-YOLOE+), ppyoloe or imagenet\n"
                                         "(RGB/255 then ImageNet mean/std: PP-YOLOE legacy, CSPResNetb_*),\n"
                                         "none (0..255)"),
     .parse = cli_preprocess_flag, .off = JOB(pre), .bad = "--preprocess must be ppyoloe+, ppyoloe, imagenet or none"},
    {CLI_FLAG("--batch", NULL, "N", "images per forward pass (default 1)"), .parse = cli_count, .off = JOB(batch),
     .lo = 1, .hi = 4096},
    {CLI_FLAG("--save-input", NULL, NULL, "also write DIR/<image name>/input.npy: the 1 x 3 x H x W tensor the\n"
                                          "network got (after resize and pre-processing)"),
     .parse = cli_set, .off = JOB(save_input), .lo = 1},
    {CLI_FLAG("--visualize", NULL, "OUT.png", "a picture per image: the input and, per returned stage, a heat\n"
                                              "map of the channel-wise L2 norm, labelled stage/stride/channels.\n"
                                              "One image: written to OUT.png; several: DIR/<image name>/OUT.png"),
     .parse = cli_str, .off = JOB(visualize)},
    {CLI_FLAG("--deploy", NULL, NULL, "run the fused network (BN folded, RepVGG branches merged, as upstream's\n"
                                      "convert_to_deploy); same outputs within float rounding, fewer FLOPs"),
     .parse = cli_set, .off = offsetof(infer_opts, deploy), .lo = 1},
    CLI_PRECISION_ROW(infer_opts),
    CLI_CALIBRATION_ROWS(infer_opts),
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default and most: the online CPUs)"),
     .parse = cli_threads_flag, .off = offsetof(infer_opts, cf)},
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success"), .parse = cli_quiet, .off = offsetof(infer_opts, cf),
     .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "a line per image even with the progress bar (shown on a terminal;\n"
                                       "NO_COLOR respected)"),
     .parse = cli_quiet, .off = offsetof(infer_opts, cf)},
    CLI_HEADING("Architecture: optional checks, an error if the file's architecture differs (without\n"
                "--weights: the random model's). --act is the activation the model was trained with\n"
                "(default swish; relu for the t-relu variants): the file cannot tell. --return-idx are the\n"
                "stages to write (1,2,3 as the detectors use). --alpha on a file without alpha uses\n"
                "alpha = 1.0, as upstream does when PP-YOLOE+ starts from an ImageNet backbone."),
    CLI_GROUP(ARCH_FLAGS, offsetof(infer_opts, af)),
    CLI_END,
};

static const cli_command INFER = {
    .name = "infer", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS, .positional = positional};

static int is_npy(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npy") == 0;
}

/* A pipe, FIFO or device (/dev/stdin): it can be read only once, so what it holds (an
 * .npy batch or an image) is told from its bytes after reading it, not from its name. */
static int is_stream(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
}

static int has_npy_magic(const uint8_t *head, size_t n)
{
    return n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0;
}

/* A regular file that starts with the .npy magic whatever its name (/dev/stdin
 * redirected from an .npy file): peeking is safe, it is opened again to be read. */
static int regular_npy(const char *path)
{
    struct stat sb;
    uint8_t head[6];
    FILE *f = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(path, "rb") : NULL;
    if (!f)
        return 0;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return has_npy_magic(head, got);
}

/* Neither an .npy nor a JPEG or PNG: read no further, the image decoder names it. */
static int no_known_input(const uint8_t *head, size_t n)
{
    return !has_npy_magic(head, n) && !(n >= 3 && head[0] == 0xff && head[1] == 0xd8) &&
           !(n >= 4 && memcmp(head, "\x89PNG", 4) == 0);
}

/* Warns (stderr) when the batch holds NaN or Inf: every output would be NaN then. */
static void warn_non_finite(const char *name, const cspresnet_array *x)
{
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < x->numel; i++)
        if (!isfinite(x->data[i]) && bad++ == 0)
            first = i;
    if (bad)
        fprintf(stderr,
                "cspresnet infer: warning: %s holds %lld non-finite value%s (NaN or Inf; the first at flat "
                "index %lld): the outputs they reach will be NaN\n",
                name, (long long)bad, bad > 1 ? "s" : "", (long long)first);
}

/* The checks that take all the flags together; 0 or EXIT_USAGE after a message.
 * *npy_input is set to the .npy batch among the inputs, if any. */
static int check_inputs(const infer_opts *o, const char **npy_input)
{
    if (!o->out_dir || (!o->weights && !arch_flags_fix_architecture(&o->af))) {
        fprintf(stderr, "cspresnet infer: --weights, --out and inputs are required, or --arch, --out and inputs "
                        "(or --random-input) for a try-out with random weights (see cspresnet infer --help)\n");
        return EXIT_USAGE;
    }
    if (o->n_inputs == 0 && !o->random) {
        fprintf(stderr, "cspresnet infer: no input: give images, folders, list files or an .npy batch, or "
                        "--random-input for a seeded random batch of --input-size\n");
        return EXIT_USAGE;
    }
    if (o->n_inputs > 0 && o->random) {
        fprintf(stderr, "cspresnet infer: give inputs or --random-input, not both\n");
        return EXIT_USAGE;
    }
    if (o->input_size[0] && !o->random) {
        fprintf(stderr, "cspresnet infer: --input-size is the shape of --random-input; inputs have their own\n");
        return EXIT_USAGE;
    }
    for (int k = 0; k < o->n_inputs; k++)
        if (is_npy(o->inputs[k]) || (o->n_inputs == 1 && regular_npy(o->inputs[k]))) {
            if (o->n_inputs != 1 || o->job.visualize) {
                fprintf(stderr, "cspresnet infer: an .npy input is a whole batch: give it alone, without "
                                "--visualize (which needs images)\n");
                return EXIT_USAGE;
            }
            *npy_input = o->inputs[k];
        }
    if (o->job.visualize && o->n_inputs == 0) {
        fprintf(stderr, "cspresnet infer: --visualize needs image inputs\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* The file's model (its log line on stderr unless -q), or seeded random weights of the
 * architecture flags; deployed with --deploy. 0, EXIT_USAGE or 1 (message printed). */
static int infer_model(const infer_opts *o, cspresnet_model **model)
{
    cspresnet_load_options opt;
    cspresnet_config expect;
    if (arch_flags_load_options(&o->af, &opt, &expect, "infer") != 0)
        return EXIT_USAGE;
    char log[512] = "", err[1024];
    opt.log = log;
    opt.log_size = sizeof log;
    if (o->weights) {
        if (cli_load_weights(o->weights, &opt, model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            return 1;
        }
        if (!o->cf.quiet && log[0])
            fprintf(stderr, "%s\n", log);
    } else {
        if (cspresnet_model_create(&expect, 1, model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            return 1;
        }
        if (!o->cf.quiet)
            fprintf(stderr, "note: no --weights given: using seeded random weights (outputs are not meaningful)\n");
    }
    if ((o->deploy && cli_deploy(model, err, sizeof err) != CSPRESNET_OK) ||
        cli_prepare(*model, &o->cf, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        return 1;
    }
    return 0;
}

/* A pipe, FIFO or device given as the one input, read once: an .npy batch goes to *x,
 * anything else is left in *data for the image decoder. */
static int read_stream_input(const char *path, cspresnet_array *x, uint8_t **data, size_t *size)
{
    char err[1024];
    FILE *sf = fopen(path, "rb");
    if (!sf) {
        fprintf(stderr, "cspresnet infer: %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    cspresnet_status st =
        cspresnet_stream_read_all(sf, path, CSPRESNET_STREAM_MAX_BYTES, no_known_input, data, size, err, sizeof err);
    fclose(sf);
    if (st != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        return -1;
    }
    if (has_npy_magic(*data, *size) &&
        cspresnet_npy_read_memory(*data, *size, path, x, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        return -1;
    }
    return 0;
}

/* The images (stream: the first one's bytes, already read), through infer_images. */
static int infer_image_inputs(infer_opts *o, const cspresnet_model *model, uint8_t *stream, size_t stream_size)
{
    char err[1024];
    input_list images = {0};
    cspresnet_context *ctx = NULL;
    int rc = 1;
    for (int k = 0; k < o->n_inputs; k++)
        if (input_list_add(&images, o->inputs[k], err, sizeof err) != 0) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
    if (stream) {
        images.first_data = stream;
        images.first_size = stream_size;
    }
    if (cli_context_create_cf(model, &o->cf, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        goto done;
    }
    image_job *job = &o->job;
    job->out_dir = o->out_dir;
    job->quiet = o->cf.quiet;
    job->verbose = o->cf.verbose;
    image_job_result res;
    int r = infer_images(ctx, &images, job, &res);
    if (r >= 0 && !o->cf.quiet)
        printf("%zu of %zu images done (%s, %dx%d, preprocess %s), %zu failed; outputs in %s/\n", res.done,
               images.count, job->letterbox ? "letterbox" : "bicubic resize", job->height, job->width,
               cspresnet_preprocess_name(job->pre), res.failed, o->out_dir);
    if (r > 0 && images.count > 1) /* one image: its own line already says it all */
        fprintf(stderr, "cspresnet infer: %zu of %zu images failed (see above)\n", res.failed, images.count);
    rc = r == 0 ? 0 : 1;
done:
    cspresnet_context_free(ctx);
    input_list_free(&images);
    return rc;
}

/* One batch x (from name: an .npy file, or the random input): DIR/stage{i}.npy. */
static int infer_batch(const infer_opts *o, const cspresnet_model *model, const cspresnet_array *x,
                       const char *name)
{
    char err[1024];
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1 ||
        x->shape[0] > 65536 || x->shape[2] > 65536 || x->shape[3] > 65536) {
        char shape[128] = "";
        size_t used = 0;
        for (int d = 0; d < x->ndim && used < sizeof shape; d++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)x->shape[d]);
        fprintf(stderr,
                "cspresnet infer: %s has shape [%s]; expected N x 3 x H x W (3 RGB channels, N, H, W >= 1)\n",
                name, shape);
        return 1;
    }
    cspresnet_context *ctx = NULL;
    if (cli_context_create_cf(model, &o->cf, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        return 1;
    }
    int rc = 1;
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    char paths[CSPRESNET_MAX_OUTPUTS][4096];
    if (cspresnet_forward(ctx, x->data, (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], (int)x->shape[3],
                          outs, &n_out) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", cspresnet_context_last_error(ctx));
        goto done;
    }
    if (cli_make_dir(o->out_dir) != 0) {
        fprintf(stderr, "cspresnet infer: cannot create output folder %s: %s\n", o->out_dir, strerror(errno));
        goto done;
    }
    for (int r = 0; r < n_out; r++) {
        snprintf(paths[r], sizeof paths[r], "%s/stage%d.npy", o->out_dir, outs[r].stage);
        int64_t shape[4] = {outs[r].n, outs[r].c, outs[r].h, outs[r].w};
        if (cspresnet_npy_write(paths[r], outs[r].data, 4, shape, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            for (int k = 0; k < r; k++) /* leave no partial set of outputs behind */
                unlink(paths[k]);
            goto done;
        }
    }
    if (!o->cf.quiet)
        for (int r = 0; r < n_out; r++)
            printf("stage%d: [%d, %d, %d, %d] stride %d -> %s\n", outs[r].stage, outs[r].n, outs[r].c,
                   outs[r].h, outs[r].w, outs[r].stride, paths[r]);
    rc = 0;
done:
    cspresnet_context_free(ctx);
    return rc;
}

/* Loads the model, then runs the .npy batch, the random input or the images. */
static int infer_run(infer_opts *o, const char *npy_input)
{
    cspresnet_model *model = NULL;
    cspresnet_array x = {0};
    uint8_t *stream = NULL; /* a stream input's bytes */
    size_t stream_size = 0;
    int rc = infer_model(o, &model);
    if (rc != 0)
        goto done;
    rc = 1;
    if (o->n_inputs == 1 && !npy_input && is_stream(o->inputs[0])) {
        if (read_stream_input(o->inputs[0], &x, &stream, &stream_size) != 0)
            goto done;
        if (x.data)
            npy_input = o->inputs[0];
    }
    if (o->n_inputs && !npy_input) {
        rc = infer_image_inputs(o, model, stream, stream_size);
        goto done;
    }
    if (npy_input) {
        char err[1024];
        if (!x.data && cspresnet_npy_read(npy_input, &x, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        warn_non_finite(npy_input, &x);
    } else {
        const int *size = o->input_size[0] ? o->input_size : (const int[4]){1, 3, 640, 640};
        if (cli_random_input(&x, size) != 0) {
            fprintf(stderr, "cspresnet infer: out of memory for a %dx3x%dx%d input\n", size[0], size[2], size[3]);
            goto done;
        }
    }
    rc = infer_batch(o, model, &x, npy_input);
done:
    free(stream);
    cspresnet_array_free(&x);
    cspresnet_model_free(model);
    return rc;
}

int cmd_infer(int argc, char **argv)
{
    infer_opts o = {.job = {.height = 640, .width = 640, .pre = CSPRESNET_PRE_PPYOLOE_PLUS, .batch = 1,
                            .cmd = "infer"}};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    if (!(o.inputs = calloc((size_t)argc + 1, sizeof *o.inputs))) {
        fprintf(stderr, "cspresnet infer: out of memory\n");
        return 1;
    }
    const char *npy_input = NULL;
    int rc = cli_parse(&INFER, &o, argc, argv);
    if (rc == CLI_PARSED && (rc = check_inputs(&o, &npy_input)) == 0)
        rc = infer_run(&o, npy_input);
    free(o.inputs);
    return rc;
}
