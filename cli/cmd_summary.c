/* cmd_summary.c - `cspresnet summary`: paddle.summary's table, params, MACs, FLOPs.
 * With --weights, the architecture comes from the file, and so does the deployed form:
 * a deployed file is summarised as the network it holds. */
#include <math.h>
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

static void help(void)
{
    printf("usage: cspresnet summary [--arch t|s|m|l|x | --width-mult W --depth-mult D]\n"
           "                         [--layers L0,L1,L2,L3] [--channels C0,C1,C2,C3,C4]\n"
           "                         [--act A] [--large-stem | --small-stem] [--alpha | --no-alpha]\n"
           "                         [--return-idx 1,2,3] [--input-size N,C,H,W] [--weights FILE] [--deploy]\n"
           "                         [-q|-v]\n"
           "\n"
           "Prints every layer with its input and output shapes and parameters, as paddle.summary\n"
           "does, the total / trainable / non-trainable parameter counts (BN statistics are\n"
           "non-trainable parameters, as in Paddle), sizes in MB, and MACs and FLOPs per stage.\n"
           "\n"
           "  --arch P          preset: t (0.375/0.33, alpha), s, m, l, x (large stem, swish)\n"
           "  --width-mult W    channel multiplier on [64,128,256,512,1024] (default 1.0)\n"
           "  --depth-mult D    block multiplier on [3,6,6,3] (default 1.0)\n"
           "  --layers, --channels  upstream's base lists before the multipliers\n"
           "  --act A           swish (default), relu, leaky_relu, mish, hardswish, gelu, relu6, sigmoid, none\n"
           "  --large-stem / --small-stem   three or two stem convs (default large, as every shipped config)\n"
           "  --alpha           learnable RepVGG alpha (PP-YOLOE+)\n"
           "  --input-size      default 1,3,640,640\n"
           "  --weights FILE    take the architecture from a .pdparams or safetensors file instead (and\n"
           "                    print it); a deployed file shows the deployed network\n"
           "  --deploy          the fused network: BN folded into convs, one 3x3 conv per RepVGG block\n"
           "  -q, --quiet       print nothing: only check the configuration (the exit status says)\n"
           "  -v, --verbose     the default output (the table is all there is)\n"
           "\n"
           "Exit status: 0 success, 1 a configuration upstream cannot run or a bad weight file,\n"
           "2 usage error.\n");
}

int cmd_summary(int argc, char **argv)
{
    arch_flags f;
    arch_flags_init(&f);
    int input[4] = {1, 3, 640, 640};
    const char *weights = NULL;
    int deploy = 0;
    common_flags cf;
    common_flags_init(&cf);
    for (int i = 1; i < argc; i++) {
        int r = arch_flags_parse(&f, argc, argv, &i, "summary");
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0 || quiet_flags_parse(&cf, argv[i]))
            continue;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help();
            return 0;
        } else if (strcmp(argv[i], "--input-size") == 0) {
            const char *v = flag_value(argc, argv, &i, "summary");
            if (!v)
                return EXIT_USAGE;
            if (parse_int_list(v, input, 4) != 4 || input[0] < 1 || input[1] != 3 || input[2] < 1 ||
                input[3] < 1) {
                fprintf(stderr, "cspresnet summary: --input-size '%s' must be N,3,H,W with N, H, W >= 1\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(argv[i], "--deploy") == 0) {
            deploy = 1;
        } else if (strcmp(argv[i], "--weights") == 0) {
            if (!(weights = flag_value(argc, argv, &i, "summary")))
                return EXIT_USAGE;
        } else {
            fprintf(stderr, "cspresnet summary: unknown option '%s' (see cspresnet summary --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
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
