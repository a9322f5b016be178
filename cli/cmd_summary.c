/* cmd_summary.c - `cspresnet summary`: paddle.summary's table, params, MACs, FLOPs.
 * With --weights, the architecture comes from the file, and so does the deployed form:
 * a deployed file is summarised as the network it holds. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

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

typedef struct summary_opts {
    arch_flags af;
    common_flags cf;
    int input[4];
    const char *weights;
    int deploy;
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
    "                         [-q|-v]\n"
    "\n"
    "Prints every layer with its input and output shapes and parameters, as paddle.summary\n"
    "does, the total / trainable / non-trainable parameter counts (BN statistics are\n"
    "non-trainable parameters, as in Paddle), sizes in MB, and MACs and FLOPs per stage.\n"
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
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing: only check the configuration (the exit status says)"),
     .parse = cli_quiet, .off = offsetof(summary_opts, cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output (the table is all there is)"),
     .parse = cli_quiet, .off = offsetof(summary_opts, cf)},
    CLI_END,
};

static const cli_command SUMMARY = {.name = "summary", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS};

int cmd_summary(int argc, char **argv)
{
    summary_opts o = {.input = {1, 3, 640, 640}};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    int r = cli_parse(&SUMMARY, &o, argc, argv);
    if (r != CLI_PARSED)
        return r;
    const char *weights = o.weights;
    int deploy = o.deploy, *input = o.input;
    arch_flags f = o.af;
    common_flags cf = o.cf;
    cspresnet_config cfg;
    char err[1024];
    if (weights) {
        cspresnet_load_options opt;
        cspresnet_config expect;
        if (arch_flags_load_options(&f, &opt, &expect, "summary") != 0)
            return EXIT_USAGE;
        cspresnet_model *m;
        if (cli_load_weights(weights, &opt, &m, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet summary: %s\n", err);
            return 1;
        }
        cfg = *cspresnet_model_config(m);
        if (cspresnet_model_is_deployed(m))
            deploy = 1;
        print_file_arch(weights, &cfg, cspresnet_model_is_deployed(m));
        cspresnet_model_free(m);
    } else if (arch_flags_config(&f, &cfg, "summary") != 0) {
        return EXIT_USAGE;
    }
    cspresnet_status s = cf.quiet ? cspresnet_config_validate(&cfg, err, sizeof err)
                                  : cspresnet_summary_print(&cfg, deploy, input[0], input[2], input[3], stdout, err,
                                                            sizeof err);
    if (s != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet summary: %s\n", err);
        return 1;
    }
    return 0;
}
