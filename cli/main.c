/*
 * main.c - the cspresnet command-line tool: dispatches to one subcommand.
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cspresnet <command> [options]\n"
            "\n"
            "CSPResNet (the PP-YOLOE / PP-YOLOE+ backbone) without Python or Paddle.\n"
            "\n"
            "commands:\n"
            "  summary   layer table, parameter counts, MACs and FLOPs of a configuration\n"
            "  infer     run official .pdparams weights on an .npy input, write the feature maps\n"
            "\n"
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
    if (strcmp(cmd, "summary") == 0)
        return cmd_summary(argc - 1, argv + 1);
    if (strcmp(cmd, "infer") == 0)
        return cmd_infer(argc - 1, argv + 1);
    fprintf(stderr, "cspresnet: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
