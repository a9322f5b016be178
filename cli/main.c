/*
 * main.c - the cspresnet command-line tool: dispatches to one subcommand.
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* One line per subcommand; each lives in cli/cmd_<name>.c. */
static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *what;
} commands[] = {
    {"summary", cmd_summary, "layer table, parameter counts, MACs and FLOPs of a configuration"},
    {"infer", cmd_infer, "feature maps of images (JPEG/PNG, folders, lists) or an .npy batch"},
    {"detect", cmd_detect, "PP-YOLOE detections of images or an .npy batch: NMS rows, COCO results json"},
    {"demo", cmd_demo, "the whole product in one go: summary, fine-tune, pictures, speed"},
    {"bench", cmd_bench, "latency, images/s, GFLOP/s and peak memory of the forward pass; --profile per layer"},
    {"convert", cmd_convert, "weights between .pdparams and safetensors (optionally deployed, or bf16)"},
    {"quantize", cmd_quantize, "an int8 safetensors file: the deployed network calibrated once, scales stored"},
    {"grad", cmd_grad, "gradients of the input and every parameter for given feature-map gradients"},
    {"train", cmd_train, "fine-tune a classifier (Fashion-MNIST) from weights or from scratch"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: cspresnet <command> [options]\n"
                 "\n"
                 "CSPResNet (the PP-YOLOE / PP-YOLOE+ backbone) without Python or Paddle.\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].what);
    fprintf(out, "\n"
                 "Run 'cspresnet <command> --help' for the options of a command.\n"
                 "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("cspresnet %s\n", CSPRESNET_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            for (int k = 2; k < argc; k++) /* --version after any subcommand */
                if (strcmp(argv[k], "--version") == 0) {
                    printf("cspresnet %s\n", CSPRESNET_VERSION);
                    return 0;
                }
            return commands[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "cspresnet: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
