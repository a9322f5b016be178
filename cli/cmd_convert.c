/*
 * cmd_convert.c - `cspresnet convert`: weights from one format to another.
 *
 * Input: .pdparams or safetensors (told apart by content), a whole PP-YOLOE detector
 * when it holds one (cli_load_model), else a backbone; --backbone takes a detector
 * file's backbone alone. Output by the extension of -o: ".safetensors" (optionally
 * deployed: BN folded, RepVGG merged) or ".pdparams" (a pickle that PaddleDetection's
 * paddle.load reads; never deployed, since upstream has no layout for fused weights).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cspresnet_formats.h"

typedef struct convert_opts {
    arch_flags af;
    common_flags cf;
    const char *in, *out;
    int deploy, backbone;
    int isa;                 /* --isa: index into ISA_NAMES, -1 unset */
} convert_opts;

static const char *const ISA_NAMES[] = {"ref", "generic", "avx2", "avx512"};
static const cli_choice ISA_CHOICES[] = {{"ref", 0}, {"generic", 1}, {"avx2", 2}, {"avx512", 3}, {NULL, 0}};

static const char SYNOPSIS[] =
    "usage: cspresnet convert --weights IN -o OUT.safetensors [--deploy] [--backbone] [--act A] [--return-idx 1,2,3]\n"
    "       cspresnet convert --weights IN -o OUT.safetensors --precision bf16 [--isa K] [--backbone]\n"
    "       cspresnet convert --weights IN -o OUT.pdparams [--backbone] [--act A]\n"
    "                         [--arch P] [--large-stem|--small-stem] [--alpha|--no-alpha] [-q|-v]\n"
    "\n"
    "Reads IN (.pdparams, backbone-only or a full detector checkpoint, or safetensors; the\n"
    "format is told by content) and writes OUT in the format its extension names. A full\n"
    "PP-YOLOE detector (backbone.*, neck.*, yolo_head.*) is converted whole (its neck and\n"
    "head must load: a missing or mis-shaped key is named and nothing is written); a file\n"
    "without a PP-YOLOE neck, or any file with --backbone, gives the backbone alone.\n"
    "\n"
    "  .safetensors  the safetensors layout (8-byte header length, JSON header, tensors\n"
    "                float32 back to back, data 64-byte aligned so loads can map the file);\n"
    "                tensor names are the upstream keys; __metadata__ records channels,\n"
    "                layers, act, large stem, alpha, return_idx, deployed and IN's name.\n"
    "  .pdparams     a pickle (protocol 4, as paddle.save writes) of the backbone's or the\n"
    "                detector's state dict: upstream keys in Paddle's order, float32 numpy\n"
    "                arrays and the StructuredToParameterName@@ table; paddle.load /\n"
    "                pickle.load read it.\n"
    "  --precision bf16  a bf16 .safetensors file of the deployed network (about half the\n"
    "                size): every conv that runs in bf16 on the kernel set (--isa, else\n"
    "                CSPRESNET_ISA, else this CPU's best) has its weight stored BF16, rounded to\n"
    "                nearest even, the rest F32; infer, bench and detect run it in bf16 by\n"
    "                default, with the outputs of the fp32 file run with --precision bf16.\n"
    "                (int8 files: cspresnet quantize.)\n"
    "\n";

static const char NOTES[] =
    "\n"
    "Exit status: 0 written, 1 failure (bad input, refused conversion, I/O), 2 usage error.\n";

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "IN", "the weights to convert (.pdparams or safetensors, told by content)"),
     .parse = cli_str, .off = offsetof(convert_opts, in)},
    {CLI_FLAG("--out", "-o", "OUT", "what to write, in the format its extension names (above)"),
     .parse = cli_str, .off = offsetof(convert_opts, out)},
    {CLI_FLAG("--deploy", NULL, NULL, "write the fused network (BN folded into convs, each RepVGG block one 3x3\n"
                                      "conv with bias, alpha included, as upstream's convert_to_deploy);\n"
                                      "safetensors only: upstream has no .pdparams layout for it"),
     .parse = cli_set, .off = offsetof(convert_opts, deploy), .lo = 1},
    {CLI_FLAG("--backbone", NULL, NULL, "a detector file's backbone alone (keys without 'backbone.')"),
     .parse = cli_set, .off = offsetof(convert_opts, backbone), .lo = 1},
    {CLI_FLAG("--precision", NULL, "P", "fp32 (default) or bf16: the deployed network with its bf16 convs'\n"
                                        "weights stored BF16 (safetensors only; int8: cspresnet quantize)"),
     .parse = cli_precision_flag, .off = offsetof(convert_opts, cf), .bad = "--precision must be fp32 or bf16"},
    {CLI_FLAG("--isa", NULL, "K", "bf16: the kernel set whose rules pick the bf16 convs: ref, generic, avx2\n"
                                  "or avx512 (default CSPRESNET_ISA, else the best this CPU runs)"),
     .parse = cli_pick, .off = offsetof(convert_opts, isa), .choices = ISA_CHOICES,
     .bad = "--isa must be ref, generic, avx2 or avx512"},
    CLI_HEADING("Architecture: --act (default swish, relu for the t-relu variants) and --return-idx (default\n"
                "1,2,3) are recorded in the safetensors metadata (a .pdparams file cannot say them); the\n"
                "others are optional checks on IN, as for infer (--alpha on a file without alpha writes\n"
                "alpha = 1.0, upstream's rule):"),
    CLI_GROUP(ARCH_FLAGS, offsetof(convert_opts, af)),
    CLI_HEADING("Output:"),
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success"), .parse = cli_quiet, .off = offsetof(convert_opts, cf),
     .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output (one line per file written)"), .parse = cli_quiet,
     .off = offsetof(convert_opts, cf)},
    CLI_END,
};

static const cli_command CONVERT = {.name = "convert", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS};

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

int cmd_convert(int argc, char **argv)
{
    convert_opts o = {.isa = -1};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    int r = cli_parse(&CONVERT, &o, argc, argv);
    if (r != CLI_PARSED)
        return r;
    const char *in = o.in, *out = o.out;
    int deploy = o.deploy;
    arch_flags f = o.af;
    common_flags cf = o.cf;
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

    const int bf16 = cf.precision == CSPRESNET_PRECISION_BF16;
    if (cf.precision == CSPRESNET_PRECISION_INT8 || (bf16 && !to_safetensors)) {
        fprintf(stderr, "cspresnet convert: --precision %s: %s\n", bf16 ? "bf16" : "int8",
                bf16 ? "a bf16 file is .safetensors" : "int8 files are written by cspresnet quantize (calibration)");
        return EXIT_USAGE;
    }
    deploy |= bf16;
    cspresnet_load_options opt;
    cspresnet_config expect;
    if (arch_flags_load_options(&f, &opt, &expect, "convert") != 0)
        return EXIT_USAGE;
    char log[512] = "", err[1024];
    opt.log = log;
    opt.log_size = sizeof log;

    cspresnet_model *model = NULL;
    int rc = 1;
    if ((o.backbone ? cli_load_weights(in, &opt, &model, err, sizeof err)
                    : cli_load_model(in, &opt, &model, err, sizeof err)) != CSPRESNET_OK) {
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
    if (cspresnet_model_file_precision(model) != CSPRESNET_PRECISION_FP32) {
        fprintf(stderr, "cspresnet convert: %s is %s file: convert the fp32 weights\n", in,
                cspresnet_model_file_precision(model) == CSPRESNET_PRECISION_INT8 ? "an int8" : "a bf16");
        goto done;
    }
    cspresnet_save_options so;
    cspresnet_save_options_init(&so);
    so.precision = (cspresnet_precision)cf.precision;
    so.isa = o.isa >= 0 ? ISA_NAMES[o.isa] : cli_isa();
    cspresnet_status s = to_safetensors ? cspresnet_model_save_safetensors_ex(model, out, base, &so, err, sizeof err)
                                        : cspresnet_model_save_pdparams(model, out, err, sizeof err);
    if (s != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet convert: %s\n", err);
        goto done;
    }
    if (!cf.quiet)
        printf("wrote %s (%s%s, %s%zu tensors%s)\n", out, to_safetensors ? "safetensors" : "pdparams",
               bf16 ? " bf16" : "",
               cspresnet_model_is_detector(model) ? "detector, " : "", cspresnet_model_param_count(model),
               cspresnet_model_is_deployed(model) ? ", deployed" : "");
    rc = 0;
done:
    cspresnet_model_free(model);
    return rc;
}
