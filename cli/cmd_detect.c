/*
 * cmd_detect.c - `cspresnet detect`: a PP-YOLOE / PP-YOLOE+ checkpoint and inputs in,
 * detections out. An .npy batch (N x 3 x H x W, used as given, with --scale-factor)
 * gives the raw outputs and the NMS rows as .npy files; images, folders and list files
 * go through upstream's eval pre-processing (detect_images.c) and give COCO results.
 * Both run the library's detector forward and cspresnet_multiclass_nms.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detect.h"

static const char *const ISA_NAMES[] = {"ref", "generic", "avx2", "avx512"};
static const cli_choice ISA_CHOICES[] = {{"ref", 0}, {"generic", 1}, {"avx2", 2}, {"avx512", 3}, {NULL, 0}};

static int add_input(detect_opts *o, const char *arg)
{
    o->inputs[o->n_inputs++] = arg;
    return 0;
}

static int input_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)f, (void)cmd;
    return add_input(dest, v);
}

static int positional(void *opts, const char *arg, const cli_command *cmd)
{
    if (arg[0] == '-' && arg[1] != '\0')
        return cli_unknown(cmd, arg);
    return add_input(opts, arg);
}

static const char SYNOPSIS[] =
    "usage: cspresnet detect --weights FILE --out DIR --input X.npy [--scale-factor sy,sx|S.npy] [options]\n"
    "       cspresnet detect --weights FILE --out DIR INPUT... [--size H,W] [--visualize] [options]\n"
    "\n"
    "FILE is a PP-YOLOE or PP-YOLOE+ checkpoint (.pdparams with backbone.*, neck.* and\n"
    "yolo_head.* keys, or one that convert wrote as safetensors; any class count). With one\n"
    ".npy batch (float32 N x 3 x H x W, used as is; H, W as the FPN takes them, a multiple\n"
    "of 32 always works) it writes\n"
    "  DIR/boxes.npy     float32 [N, L, 4]  x1, y1, x2, y2 / (sx, sy, sx, sy), before NMS\n"
    "  DIR/scores.npy    float32 [N, C, L]  after the sigmoid\n"
    "  DIR/nms.npy       float32 [M, 6]     label, score, x1, y1, x2, y2; all images in order\n"
    "  DIR/bbox_num.npy  int32 [N]          rows of each image (no -1 row for an empty one)\n"
    "INPUT is otherwise a JPEG or PNG image, a folder or a list file, as for infer: each is\n"
    "resized to --size without keeping the ratio (bicubic, cv2.INTER_CUBIC) and pre-processed,\n"
    "scale_factor = (size_h / h, size_w / w), and DIR/detections.json holds the COCO results\n"
    "([{\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"}], image_id the image's\n"
    "0-based place among the inputs; DIR/images.json maps ids to files). category_id is the\n"
    "COCO id (80 labels -> 1..90) for an 80-class model, else label + 1.\n"
    "\n";

static const char NOTES[] =
    "\n"
    "Non-finite boxes or scores (a NaN or Inf input or weight) are refused, naming the image,\n"
    "and nothing is written for them. An image that cannot be read is reported and skipped.\n"
    "Exit status: 0 success, 1 failure (or some images failed), 2 usage error.\n";

#define OPT(field) offsetof(detect_opts, field)
#define JOB(field) (offsetof(detect_opts, job) + offsetof(image_job, field))

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "FILE", "the detector checkpoint (.pdparams or safetensors, told by content;\n"
                                         "a deployed file runs as the deployed network)"),
     .parse = cli_str, .off = OPT(weights)},
    {CLI_FLAG("--deploy", NULL, NULL, "run the fused network (every BN folded, RepVGG blocks merged); the same\n"
                                      "detections within float rounding, fewer FLOPs"),
     .parse = cli_set, .off = OPT(deploy), .lo = 1},
    {CLI_FLAG("--out", NULL, "DIR", "where the outputs go"), .parse = cli_str, .off = OPT(out_dir)},
    {CLI_FLAG("--input", NULL, "INPUT", "one more input (as the INPUT words)"), .parse = input_flag},
    {CLI_FLAG("--scale-factor", NULL, "S", "with an .npy batch: sy,sx for every image, or an .npy of float32\n"
                                           "[N, 2] rows sy, sx (input size / original size; default 1,1)"),
     .parse = cli_str, .off = OPT(scale)},
    {CLI_FLAG("--score-threshold", NULL, "X", "NMS: keep scores > X (default 0.01)"), .parse = cli_num,
     .off = OPT(score_threshold), .lo = 0, .hi = 1},
    {CLI_FLAG("--nms-top-k", NULL, "K", "NMS: candidates per class (default 1000; -1 all)"), .parse = cli_count,
     .off = OPT(nms_top_k), .lo = -1, .hi = 1000000},
    {CLI_FLAG("--keep-top-k", NULL, "K", "NMS: rows per image (default 300; -1 all)"), .parse = cli_count,
     .off = OPT(keep_top_k), .lo = -1, .hi = 1000000},
    {CLI_FLAG("--nms-threshold", NULL, "X", "NMS: IoU above which a box is suppressed (default 0.7)"),
     .parse = cli_num, .off = OPT(nms_threshold), .lo = 0, .hi = 1},
    {CLI_FLAG("--size", NULL, "H,W|N", "network input size for images (default 640,640); N is N,N"),
     .parse = cli_size, .off = JOB(height), .hi = 16384,
     .bad = "--size must be H,W or N (for N,N) with H, W, N in 1..16384 (for example 640,640 or 640)"},
    {CLI_FLAG("--preprocess", NULL, "P", "ppyoloe+ (RGB/255; default, PP-YOLOE+), ppyoloe (RGB/255 then\n"
                                         "ImageNet mean/std: PP-YOLOE legacy), imagenet, none (0..255)"),
     .parse = cli_preprocess_flag, .off = JOB(pre), .bad = "--preprocess must be ppyoloe+, ppyoloe, imagenet or none"},
    {CLI_FLAG("--batch", NULL, "N", "images per forward pass (default 1)"), .parse = cli_count, .off = JOB(batch),
     .lo = 1, .hi = 4096},
    {CLI_FLAG("--visualize", NULL, NULL, "also DIR/<image name>.png: the image with its boxes and labels"),
     .parse = cli_set, .off = OPT(visualize), .lo = 1},
    {CLI_FLAG("--draw-threshold", NULL, "X", "--visualize draws detections with score >= X (default 0.5)"),
     .parse = cli_num, .off = OPT(draw_threshold), .lo = 0, .hi = 1},
    {CLI_FLAG("--labels", NULL, "FILE", "--visualize class names, one a line (default COCO's 80)"),
     .parse = cli_str, .off = OPT(labels)},
    {CLI_FLAG("--isa", NULL, "K", "kernel set: ref, generic, avx2 or avx512 (default CSPRESNET_ISA, else\n"
                                  "the best this CPU runs)"),
     .parse = cli_pick, .off = OPT(isa), .choices = ISA_CHOICES, .bad = "--isa must be ref, generic, avx2 or avx512"},
    CLI_PRECISION_ROW(detect_opts),
    CLI_CALIBRATION_ROWS(detect_opts),
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default and most: the online CPUs)"),
     .parse = cli_threads_flag, .off = OPT(cf)},
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success"), .parse = cli_quiet, .off = OPT(cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "a line per image even with the progress bar"), .parse = cli_quiet,
     .off = OPT(cf)},
    CLI_END,
};

static const cli_command DETECT = {
    .name = "detect", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS, .positional = positional};

void detect_nms_options(const detect_opts *o, cspresnet_nms_options *opt)
{
    cspresnet_nms_options_init(opt);
    opt->score_threshold = (float)o->score_threshold;
    opt->nms_threshold = (float)o->nms_threshold;
    opt->nms_top_k = o->nms_top_k;
    opt->keep_top_k = o->keep_top_k;
}

/* threads, precision and the kernel set (--isa, else CSPRESNET_ISA) */
static common_flags detect_cf(const detect_opts *o)
{
    common_flags cf = o->cf;
    cf.isa = o->isa >= 0 ? ISA_NAMES[o->isa] : NULL;
    return cf;
}

cspresnet_status detect_context(const detect_opts *o, const cspresnet_model *model, cspresnet_context **ctx,
                                char *err, size_t err_size)
{
    common_flags cf = detect_cf(o);
    return cli_context_create_cf(model, &cf, ctx, err, err_size);
}

void detect_out_free(detect_out *o)
{
    free(o->boxes), free(o->rows), free(o->bbox_num);
    memset(o, 0, sizeof *o);
}

/* Count of non-finite values among n floats, and the first one's index. */
static long long count_non_finite(const float *v, size_t n, size_t *first)
{
    long long bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) && bad++ == 0)
            *first = i;
    return bad;
}

/* Divides image b's boxes by (sx, sy, sx, sy); -1 with a message if its boxes or scores
 * are not all finite. */
static int scale_and_check(detect_out *o, const float *raw, int b, const float *scale, char *err, size_t err_size)
{
    const size_t L = (size_t)o->anchors, C = (size_t)o->classes;
    const float sy = scale[2 * b], sx = scale[2 * b + 1];
    float *dst = o->boxes + (size_t)b * L * 4;
    const float *src = raw + (size_t)b * L * 4;
    for (size_t i = 0; i < L; i++) {
        dst[4 * i] = src[4 * i] / sx;
        dst[4 * i + 1] = src[4 * i + 1] / sy;
        dst[4 * i + 2] = src[4 * i + 2] / sx;
        dst[4 * i + 3] = src[4 * i + 3] / sy;
    }
    size_t fb = 0, fs = 0;
    long long bb = count_non_finite(dst, L * 4, &fb), bs = count_non_finite(o->scores + (size_t)b * C * L, C * L, &fs);
    if (!bb && !bs)
        return 0;
    snprintf(err, err_size,
             "image %d: %lld box and %lld score values are not finite (NaN or Inf; the first box at anchor %zu, "
             "the first score at class %zu anchor %zu): a NaN or Inf input or weight reaches them; no detections "
             "written", b, bb, bs, bb ? fb / 4 : 0, bs ? fs / L : 0, bs ? fs % L : 0);
    return -1;
}

int detect_pass(cspresnet_context *ctx, const float *x, int n, int h, int w, const float *scale,
                const cspresnet_nms_options *opt, detect_out *out, int *bad_image, char *err, size_t err_size)
{
    const float *raw;
    memset(out, 0, sizeof *out);
    if (bad_image)
        *bad_image = -1;
    if (cspresnet_detector_forward(ctx, x, n, h, w, &raw, &out->scores, &out->anchors, &out->classes) !=
        CSPRESNET_OK) {
        snprintf(err, err_size, "%s", cspresnet_context_last_error(ctx));
        return -1;
    }
    out->n = n;
    size_t cap = cspresnet_nms_max_rows(opt, n, out->classes, out->anchors);
    out->boxes = malloc(sizeof(float) * 4 * (size_t)n * out->anchors);
    out->rows = malloc(sizeof(float) * 6 * (cap ? cap : 1));
    out->bbox_num = malloc(sizeof(int) * (size_t)n);
    if (!out->boxes || !out->rows || !out->bbox_num) {
        snprintf(err, err_size, "out of memory for the detections of %d images (%zu rows at most)", n, cap);
        detect_out_free(out);
        return -1;
    }
    for (int b = 0; b < n; b++)
        if (scale_and_check(out, raw, b, scale, err, err_size) != 0) {
            if (bad_image)
                *bad_image = b;
            detect_out_free(out);
            return -1;
        }
    if (cspresnet_multiclass_nms(out->boxes, out->scores, n, out->classes, out->anchors, opt, out->rows, cap,
                                 out->bbox_num, &out->n_rows, err, err_size) != CSPRESNET_OK) {
        detect_out_free(out);
        return -1;
    }
    return 0;
}

/* Parses "sy,sx"; 0, or -1 when the text is not two numbers. */
static int parse_pair(const char *s, float v[2])
{
    char *end;
    errno = 0;
    double a = strtod(s, &end);
    if (end == s || *end != ',' || errno)
        return -1;
    const char *p = end + 1;
    double b = strtod(p, &end);
    if (end == p || *end || errno)
        return -1;
    v[0] = (float)a, v[1] = (float)b;
    return 0;
}

/* The scale factors of the n images of the batch (n x 2, sy, sx). 0, EXIT_USAGE or 1
 * after a message. */
static int read_scale(const detect_opts *o, int n, float *scale)
{
    float pair[2] = {1.0f, 1.0f};
    const char *name = o->scale ? o->scale : "1,1";
    size_t len = o->scale ? strlen(o->scale) : 0;
    if (o->scale && len >= 4 && strcmp(o->scale + len - 4, ".npy") == 0) {
        char err[1024];
        cspresnet_array s = {0};
        if (cspresnet_npy_read(o->scale, &s, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet detect: --scale-factor: %s\n", err);
            return 1;
        }
        if (s.ndim != 2 || s.shape[0] != n || s.shape[1] != 2) {
            fprintf(stderr, "cspresnet detect: --scale-factor %s has shape [%lld%s%lld]; expected [%d, 2] (sy, sx "
                            "per image of the batch)\n", o->scale, s.ndim > 0 ? (long long)s.shape[0] : 0LL,
                    s.ndim > 1 ? ", " : "", s.ndim > 1 ? (long long)s.shape[1] : 0LL, n);
            cspresnet_array_free(&s);
            return 1;
        }
        memcpy(scale, s.data, sizeof(float) * 2 * (size_t)n);
        cspresnet_array_free(&s);
    } else {
        if (o->scale && parse_pair(o->scale, pair) != 0) {
            fprintf(stderr, "cspresnet detect: --scale-factor '%s' must be sy,sx (two numbers) or an .npy file of "
                            "[N, 2]\n", o->scale);
            return EXIT_USAGE;
        }
        for (int b = 0; b < n; b++)
            scale[2 * b] = pair[0], scale[2 * b + 1] = pair[1];
    }
    for (int b = 0; b < n; b++)
        if (!(isfinite(scale[2 * b]) && isfinite(scale[2 * b + 1]) && scale[2 * b] > 0 && scale[2 * b + 1] > 0)) {
            fprintf(stderr, "cspresnet detect: --scale-factor %s: image %d has sy, sx = %g, %g; each must be "
                            "positive and finite (input size / original size)\n", name, b, scale[2 * b],
                    scale[2 * b + 1]);
            return 1;
        }
    return 0;
}

/* DIR/boxes.npy, scores.npy, nms.npy, bbox_num.npy; on a failed write none is left. */
static int write_tensor_outputs(const detect_opts *o, const detect_out *d)
{
    static const char *const NAMES[4] = {"boxes", "scores", "nms", "bbox_num"};
    char paths[4][4096], err[1024];
    int64_t shapes[4][3] = {{d->n, d->anchors, 4}, {d->n, d->classes, d->anchors}, {(int64_t)d->n_rows, 6}, {d->n}};
    const int ndim[4] = {3, 3, 2, 1};
    const float *data[3] = {d->boxes, d->scores, d->rows};
    if (cli_make_dir(o->out_dir) != 0) {
        fprintf(stderr, "cspresnet detect: cannot create output folder %s: %s\n", o->out_dir, strerror(errno));
        return 1;
    }
    for (int k = 0; k < 4; k++) {
        snprintf(paths[k], sizeof paths[k], "%s/%s.npy", o->out_dir, NAMES[k]);
        cspresnet_status st =
            k < 3 ? cspresnet_npy_write(paths[k], data[k], ndim[k], shapes[k], err, sizeof err)
                  : cspresnet_npy_write_int32(paths[k], (const int32_t *)d->bbox_num, 1, shapes[k], err, sizeof err);
        if (st != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet detect: %s\n", err);
            for (int j = 0; j < k; j++) /* leave no partial set of outputs behind */
                unlink(paths[j]);
            return 1;
        }
    }
    if (!o->cf.quiet)
        printf("%d images, %d anchors, %d classes: %zu detections -> %s/{boxes,scores,nms,bbox_num}.npy\n", d->n,
               d->anchors, d->classes, d->n_rows, o->out_dir);
    return 0;
}

/* The .npy batch x (from path): forward, NMS, the four files. */
static int detect_tensor(const detect_opts *o, const cspresnet_model *model, const cspresnet_array *x,
                         const char *path)
{
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1 ||
        x->shape[0] > 65536 || x->shape[2] > 65536 || x->shape[3] > 65536) {
        fprintf(stderr, "cspresnet detect: %s has %d dimensions (shape [%lld, ...]); expected N x 3 x H x W (3 RGB "
                        "channels, N, H, W >= 1)\n", path, x->ndim, x->ndim ? (long long)x->shape[0] : 0LL);
        return 1;
    }
    const int n = (int)x->shape[0];
    float *scale = malloc(sizeof(float) * 2 * (size_t)n);
    if (!scale) {
        fprintf(stderr, "cspresnet detect: out of memory\n");
        return 1;
    }
    int rc = read_scale(o, n, scale);
    cspresnet_context *ctx = NULL;
    detect_out d = {0};
    char err[1024];
    cspresnet_nms_options nms;
    detect_nms_options(o, &nms);
    if (rc == 0 && detect_context(o, model, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        rc = 1;
    }
    if (rc == 0 && detect_pass(ctx, x->data, n, (int)x->shape[2], (int)x->shape[3], scale, &nms, &d, NULL, err,
                               sizeof err) != 0) {
        fprintf(stderr, "cspresnet detect: %s: %s\n", path, err);
        rc = 1;
    }
    if (rc == 0)
        rc = write_tensor_outputs(o, &d);
    detect_out_free(&d);
    cspresnet_context_free(ctx);
    free(scale);
    return rc;
}

static int is_npy(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npy") == 0;
}

/* The checks that take the flags together; 0 or EXIT_USAGE after a message. */
static int check_opts(const detect_opts *o, const char **npy)
{
    if (!o->weights || !o->out_dir || o->n_inputs == 0) {
        fprintf(stderr, "cspresnet detect: --weights, --out and an input (images, folders, list files or one .npy "
                        "batch) are required (see cspresnet detect --help)\n");
        return EXIT_USAGE;
    }
    for (int k = 0; k < o->n_inputs; k++)
        if (is_npy(o->inputs[k]))
            *npy = o->inputs[k];
    if (*npy && (o->n_inputs != 1 || o->visualize)) {
        fprintf(stderr, "cspresnet detect: an .npy input is a whole batch: give it alone, without --visualize "
                        "(which needs images)\n");
        return EXIT_USAGE;
    }
    if (!*npy && o->scale) {
        fprintf(stderr, "cspresnet detect: --scale-factor goes with an .npy batch; for images it is size / the "
                        "image's own size\n");
        return EXIT_USAGE;
    }
    if ((o->labels || o->draw_threshold != 0.5) && !o->visualize) {
        fprintf(stderr, "cspresnet detect: --labels and --draw-threshold are options of --visualize\n");
        return EXIT_USAGE;
    }
    return 0;
}

/* The checkpoint as a detector; 0 or 1 after a message. */
static int load_detector(const detect_opts *o, cspresnet_model **model)
{
    char log[512] = "", err[1024];
    cspresnet_load_options opt;
    cspresnet_load_options_init(&opt);
    opt.log = log;
    opt.log_size = sizeof log;
    if (cli_load_detector(o->weights, &opt, model, err, sizeof err) != CSPRESNET_OK ||
        (o->deploy && cli_deploy(model, err, sizeof err) != CSPRESNET_OK)) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        return 1;
    }
    if (!o->cf.quiet && log[0])
        fprintf(stderr, "%s\n", log);
    common_flags cf = detect_cf(o);
    if (cli_prepare(*model, &cf, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        return 1;
    }
    return 0;
}

static int detect_run(const detect_opts *o, const char *npy)
{
    cspresnet_model *model = NULL;
    int rc = load_detector(o, &model);
    if (rc == 0 && npy) {
        char err[1024];
        cspresnet_array x = {0};
        if (cspresnet_npy_read(npy, &x, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet detect: %s\n", err);
            rc = 1;
        } else {
            rc = detect_tensor(o, model, &x, npy);
        }
        cspresnet_array_free(&x);
    } else if (rc == 0) {
        rc = detect_images(o, model);
    }
    cspresnet_model_free(model);
    return rc;
}

int cmd_detect(int argc, char **argv)
{
    detect_opts o = {.isa = -1, .score_threshold = 0.01, .nms_threshold = 0.7, .nms_top_k = 1000,
                     .keep_top_k = 300, .draw_threshold = 0.5,
                     .job = {.height = 640, .width = 640, .pre = CSPRESNET_PRE_PPYOLOE_PLUS, .batch = 1,
                             .cmd = "detect"}};
    common_flags_init(&o.cf);
    if (!(o.inputs = calloc((size_t)argc + 1, sizeof *o.inputs))) {
        fprintf(stderr, "cspresnet detect: out of memory\n");
        return 1;
    }
    const char *npy = NULL;
    int rc = cli_parse(&DETECT, &o, argc, argv);
    if (rc == CLI_PARSED && (rc = check_opts(&o, &npy)) == 0)
        rc = detect_run(&o, npy);
    free(o.inputs);
    return rc;
}
