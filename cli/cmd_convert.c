/*
 * cmd_convert.c - `cspresnet convert`: weights from one format to another.
 *
 * Input: .pdparams or safetensors (told apart by content, cli_load_weights). Output by
 * the extension of -o: ".safetensors" (optionally deployed: BN folded, RepVGG merged)
 * or ".pdparams" (a pickle that PaddleDetection's paddle.load reads; never deployed,
 * since upstream has no layout for fused weights).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cspresnet_formats.h"

static void help(void)
{
    printf("usage: cspresnet convert --weights IN -o OUT.safetensors [--deploy] [--act A] [--return-idx 1,2,3]\n"
           "       cspresnet convert --weights IN -o OUT.pdparams [--act A]\n"
           "                         [--arch P] [--large-stem|--small-stem] [--alpha|--no-alpha] [-q|-v]\n"
           "\n"
           "Reads IN (.pdparams, backbone-only or a full detector checkpoint, or safetensors; the\n"
           "format is told by content) and writes OUT in the format its extension names:\n"
           "\n"
           "  .safetensors  the safetensors layout (8-byte header length, JSON header, tensors\n"
           "                float32 back to back, data 64-byte aligned so loads can map the file);\n"
           "                tensor names are the upstream keys; __metadata__ records channels,\n"
           "                layers, act, large stem, alpha, return_idx, deployed and IN's name.\n"
           "  .pdparams     a pickle (protocol 4, as paddle.save writes) of the backbone's state\n"
           "                dict: upstream keys in Paddle's order, float32 numpy arrays and the\n"
           "                StructuredToParameterName@@ table; paddle.load / pickle.load read it.\n"
           "\n"
           "  --deploy      write the fused network (BN folded into convs, each RepVGG block one 3x3\n"
           "                conv with bias, alpha included, as upstream's convert_to_deploy);\n"
           "                safetensors only: upstream has no .pdparams layout for it\n"
           "  --act A       activation recorded in the safetensors metadata (a .pdparams file\n"
           "                cannot say; default swish, relu for the t-relu variants)\n"
           "  --return-idx  stages recorded in the metadata (default 1,2,3)\n"
           "  --arch, --large-stem, --small-stem, --alpha, --no-alpha\n"
           "                optional checks on IN, as for infer (--alpha on a file without alpha\n"
           "                writes alpha = 1.0, upstream's rule)\n"
           "  -q, --quiet   print nothing on success\n"
           "  -v, --verbose the default output (one line per file written)\n"
           "\n"
           "Exit status: 0 written, 1 failure (bad input, refused conversion, I/O), 2 usage error.\n");
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

int cmd_convert(int argc, char **argv)
{
    arch_flags f;
    arch_flags_init(&f);
    const char *in = NULL, *out = NULL;
    int deploy = 0;
    common_flags cf;
    common_flags_init(&cf);
    for (int i = 1; i < argc; i++) {
        int r = arch_flags_parse(&f, argc, argv, &i, "convert");
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0 || quiet_flags_parse(&cf, argv[i]))
            continue;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return 0;
        } else if (strcmp(a, "--weights") == 0) {
            if (!(in = flag_value(argc, argv, &i, "convert")))
                return EXIT_USAGE;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) {
            if (!(out = flag_value(argc, argv, &i, "convert")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--deploy") == 0) {
            deploy = 1;
        } else {
            fprintf(stderr, "cspresnet convert: unknown option '%s' (see cspresnet convert --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "cspresnet convert: --weights IN and -o OUT are required (see cspresnet convert --help)\n");
        return EXIT_USAGE;
    }
    int to_safetensors = ends_with(out, ".safetensors");
    if (!to_safetensors && !ends_with(out, ".pdparams")) {
        fprintf(stderr, "cspresnet convert: cannot tell the output format of '%s': name it *.safetensors or "
                        "*.pdparams\n", out);
        return EXIT_USAGE;
    }

    cspresnet_load_options opt;
    cspresnet_config expect;
    if (arch_flags_load_options(&f, &opt, &expect, "convert") != 0)
        return EXIT_USAGE;
    char log[512] = "", err[1024];
    opt.log = log;
    opt.log_size = sizeof log;

    cspresnet_model *model = NULL;
    int rc = 1;
    if (cli_load_weights(in, &opt, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet convert: %s\n", err);
        goto done;
    }
    if (!cf.quiet && log[0])
        fprintf(stderr, "%s\n", log);
    if (deploy && !cspresnet_model_is_deployed(model)) {
        if (!to_safetensors) {
            fprintf(stderr, "cspresnet convert: --deploy cannot be written as .pdparams: upstream's CSPResNet has no "
                            "layout for fused convs (it would not load in PaddleDetection); write .safetensors\n");
            goto done;
        }
        if (cli_deploy(&model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet convert: %s\n", err);
            goto done;
        }
    }
    const char *base = strrchr(in, '/');
    base = base ? base + 1 : in;
    cspresnet_status s = to_safetensors ? cspresnet_model_save_safetensors(model, out, base, err, sizeof err)
                                        : cspresnet_model_save_pdparams(model, out, err, sizeof err);
    if (s != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet convert: %s\n", err);
        goto done;
    }
    if (!cf.quiet)
        printf("wrote %s (%s, %zu tensors%s)\n", out, to_safetensors ? "safetensors" : "pdparams",
               cspresnet_model_param_count(model), cspresnet_model_is_deployed(model) ? ", deployed" : "");
    rc = 0;
done:
    cspresnet_model_free(model);
    return rc;
}
