/* cmd_summary.c - `cspresnet summary`: paddle.summary's table, params, MACs, FLOPs,
 * of the backbone or (--detector) the whole PP-YOLOE detector.
 * With --weights, the architecture comes from the file, and so does the deployed form:
 * a deployed file is summarised as the network it holds; a detector checkpoint is
 * summarised as the detector. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void print_list(const int *v, int n)
{
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", v[i]);
}

/* The multiplier as upstream's configs write it: 0.50, 0.375, 1.25. */
static void print_mult(const char *label, double m)
{
    double cents = m * 100.0;
    printf("%s %.*f, ", label, fabs(cents - rint(cents)) < 1e-9 ? 2 : 3, m);
}

/* One line: what the file says, with the width and depth multipliers when its channels
 * and layers are upstream's scaling of [64,128,256,512,1024] and [3,6,6,3] (the depth
 * tried among the presets' 0.33, 0.67, 1.0 and 1.33, since rounding hides the exact one). */
static void print_file_arch(const char *path, const cspresnet_config *c, int deployed)
{
    printf("architecture from %s: ", path);
    cspresnet_config t;
    double width = c->channels[0] / 64.0;
    if (cspresnet_config_scaled(&t, width, 1.0) == CSPRESNET_OK &&
        memcmp(t.channels, c->channels, sizeof t.channels) == 0)
        print_mult("width", width);
    static const double depths[] = {0.33, 0.67, 1.0, 1.33};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++)
        if (cspresnet_config_scaled(&t, 1.0, depths[i]) == CSPRESNET_OK &&
            memcmp(t.layers, c->layers, sizeof t.layers) == 0) {
            print_mult("depth", depths[i]);
            break;
        }
    printf("channels ");
    print_list(c->channels, CSPRESNET_NUM_STAGES + 1);
    printf(", layers ");
    print_list(c->layers, CSPRESNET_NUM_STAGES);
    printf(", %s stem, act %s%s, return_idx ", c->use_large_stem ? "large" : "small", cspresnet_act_name(c->act),
           c->use_alpha ? ", alpha" : "");
    print_list(c->return_idx, c->num_return);
    printf("%s\n", deployed ? ", deployed" : "");
}

/* The neck and head of a detector file, after print_file_arch's backbone line. */
static void print_file_head(const cspresnet_detector_config *d)
{
    static const char *const attn[] = {"ConvBN", "RepVGG", "none"};
    printf("detector: neck channels ");
    print_list(d->neck_channels, 3);
    printf(", %d block%s per CSPStage%s, %d classes, reg_max %d, ESEAttn conv %s\n", d->neck_blocks,
           d->neck_blocks == 1 ? "" : "s", d->spp ? ", SPP" : "", d->num_classes, d->reg_max,
           attn[(unsigned)d->head_attn <= 2 ? d->head_attn : 0]);
}

typedef struct summary_opts {
    arch_flags af;
    common_flags cf;
    int input[4];
    const char *weights;
    int deploy;
    int detector;
    int classes;              /* 0: not given (80) */
} summary_opts;

/* --input-size N,3,H,W with N, H, W >= 1. */
static int input_size(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    int *in = dest;
    if (parse_int_list(v, in, 4) != 4 || in[0] < 1 || in[1] != 3 || in[2] < 1 || in[3] < 1)
        return cli_refuse(f, v, cmd);
    return 0;
}

static const char SYNOPSIS[] =
    "usage: cspresnet summary [--arch t|s|m|l|x | --width-mult W --depth-mult D]\n"
    "                         [--layers L0,L1,L2,L3] [--channels C0,C1,C2,C3,C4]\n"
    "                         [--act A] [--large-stem | --small-stem] [--alpha | --no-alpha]\n"
    "                         [--return-idx 1,2,3] [--input-size N,C,H,W] [--weights FILE] [--deploy]\n"
    "                         [--detector [--classes C]] [-q|-v]\n"
    "\n"
    "Prints every layer with its input and output shapes and parameters, as paddle.summary\n"
    "does, the total / trainable / non-trainable parameter counts (BN statistics are\n"
    "non-trainable parameters, as in Paddle), sizes in MB, and MACs and FLOPs per stage.\n"
    "--detector (or a detector checkpoint in --weights): the whole PP-YOLOE detector, then\n"
    "the PP-YOLOE paper's deployed parameters and FLOPs per part.\n"
    "\n";

static const char NOTES[] =
    "\n"
    "Exit status: 0 success, 1 a configuration upstream cannot run or a bad weight file,\n"
    "2 usage error.\n";

static const cli_flag FLAGS[] = {
    CLI_HEADING("Architecture:"),
    CLI_GROUP(ARCH_FLAGS, offsetof(summary_opts, af)),
    CLI_HEADING("Input and output:"),
    {CLI_FLAG("--input-size", NULL, "N,3,H,W", "default 1,3,640,640"),
     .parse = input_size, .off = offsetof(summary_opts, input),
     .bad = "--input-size '%s' must be N,3,H,W with N, H, W >= 1"},
    {CLI_FLAG("--weights", NULL, "FILE", "take the architecture from a .pdparams or safetensors file instead (and\n"
                                         "print it); a deployed file shows the deployed network"),
     .parse = cli_str, .off = offsetof(summary_opts, weights)},
    {CLI_FLAG("--deploy", NULL, NULL, "the fused network: BN folded into convs, one 3x3 conv per RepVGG block"),
     .parse = cli_set, .off = offsetof(summary_opts, deploy), .lo = 1},
    CLI_HEADING("Detector:"),
    {CLI_FLAG("--detector", NULL, NULL, "the whole PP-YOLOE detector (backbone, CustomCSPPAN neck, PPYOLOEHead) of\n"
                                        "--arch or --width-mult/--depth-mult; the backbone's flags apply"),
     .parse = cli_set, .off = offsetof(summary_opts, detector), .lo = 1},
    {CLI_FLAG("--classes", NULL, "C", "the head's classes (default 80, COCO; 365 for Objects365)"),
     .parse = cli_count, .off = offsetof(summary_opts, classes), .lo = 1, .hi = 1 << 20,
     .bad = "--classes '%s' must be a count from 1 to 1048576"},
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing: only check the configuration (the exit status says)"),
     .parse = cli_quiet, .off = offsetof(summary_opts, cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output (the table is all there is)"),
     .parse = cli_quiet, .off = offsetof(summary_opts, cf)},
    CLI_END,
};

static const cli_command SUMMARY = {.name = "summary", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS};

/* A regular file (a stream cannot be read twice) is tried as a detector checkpoint
 * first, .pdparams or safetensors. */
static int regular_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The model of a --weights file: a detector when it is one (*detector set), else the
 * backbone. A file whose keys are a detector's backbone ('backbone.' prefix) but whose
 * neck or head does not load is summarised as its backbone with a note saying why, or
 * refused when want_detector. */
static int load_summary_weights(const char *path, const cspresnet_load_options *opt, int want_detector,
                                cspresnet_model **m, int *detector)
{
    char err[1024], det_err[1024] = "", log[512] = "";
    *detector = 0;
    if (regular_file(path) && cli_load_detector(path, opt, m, det_err, sizeof det_err) == CSPRESNET_OK) {
        *detector = 1;
        return 0;
    }
    if (want_detector) {
        fprintf(stderr, "cspresnet summary: %s\n", det_err[0] ? det_err : "--detector: not a detector checkpoint");
        return 1;
    }
    cspresnet_load_options o = *opt;
    o.log = log;
    o.log_size = sizeof log;
    if (cli_load_weights(path, &o, m, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet summary: %s\n", err);
        return 1;
    }
    if (det_err[0] && strstr(log, "under prefix 'backbone.'"))
        fprintf(stderr, "cspresnet summary: note: the backbone only, not the detector: %s\n", det_err);
    return 0;
}

/* --detector's architecture from the flags (a preset or the multipliers; the backbone's
 * flags apply to its backbone). Returns -1 after a usage error. */
static int detector_from_flags(const arch_flags *f, int classes, cspresnet_detector_config *d)
{
    if (f->have_layers || f->have_channels || f->num_return > 0) {
        fprintf(stderr, "cspresnet summary: --detector takes --arch or --width-mult/--depth-mult, not "
                        "--layers, --channels or --return-idx (the neck's widths follow the multipliers)\n");
        return -1;
    }
    cspresnet_config b;
    if (arch_flags_config(f, &b, "summary") != 0)
        return -1;
    if (f->arch ? cspresnet_detector_config_preset(f->arch, d) != CSPRESNET_OK
                : cspresnet_detector_config_scaled(d, f->width > 0 ? f->width : 1.0, f->depth > 0 ? f->depth : 1.0) !=
                      CSPRESNET_OK)
        return -1;
    d->backbone = b;
    if (classes)
        d->num_classes = classes;
    return 0;
}

/* The summary of a backbone or detector; quiet: only the check, to /dev/null. */
static int print_summary(const cspresnet_config *cfg, const cspresnet_detector_config *det, int deploy,
                         const int *input, int quiet)
{
    char err[1024];
    FILE *out = quiet ? fopen("/dev/null", "w") : stdout;
    cspresnet_status s;
    if (!out)
        s = CSPRESNET_ERR_IO, snprintf(err, sizeof err, "cannot open /dev/null");
    else if (det)
        s = cspresnet_detector_summary_print(det, deploy, input[0], input[2], input[3], out, err, sizeof err);
    else if (quiet)
        s = cspresnet_config_validate(cfg, err, sizeof err);
    else
        s = cspresnet_summary_print(cfg, deploy, input[0], input[2], input[3], out, err, sizeof err);
    if (out && out != stdout)
        fclose(out);
    if (s != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet summary: %s\n", err);
        return 1;
    }
    return 0;
}

int cmd_summary(int argc, char **argv)
{
    summary_opts o = {.input = {1, 3, 640, 640}};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    int r = cli_parse(&SUMMARY, &o, argc, argv);
    if (r != CLI_PARSED)
        return r;
    int deploy = o.deploy, detector = o.detector;
    cspresnet_config cfg;
    cspresnet_detector_config det;
    if (o.classes && (o.weights || !detector)) {
        fprintf(stderr, "cspresnet summary: --classes goes with --detector (a weight file has its own)\n");
        return EXIT_USAGE;
    }
    if (o.weights) {
        cspresnet_load_options opt;
        cspresnet_config expect;
        if (arch_flags_load_options(&o.af, &opt, &expect, "summary") != 0)
            return EXIT_USAGE;
        cspresnet_model *m;
        if (load_summary_weights(o.weights, &opt, o.detector, &m, &detector) != 0)
            return 1;
        cfg = *cspresnet_model_config(m);
        if (cspresnet_model_is_deployed(m))
            deploy = 1;
        if (detector)
            cspresnet_model_detector_config(m, &det);
        if (!o.cf.quiet) {
            print_file_arch(o.weights, &cfg, cspresnet_model_is_deployed(m));
            if (detector)
                print_file_head(&det);
        }
        cspresnet_model_free(m);
    } else if (detector ? detector_from_flags(&o.af, o.classes, &det) != 0
                        : arch_flags_config(&o.af, &cfg, "summary") != 0) {
        return EXIT_USAGE;
    }
    return print_summary(&cfg, detector ? &det : NULL, deploy, o.input, o.cf.quiet);
}
