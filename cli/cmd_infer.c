/*
 * cmd_infer.c - `cspresnet infer`: weights + an .npy batch in, one .npy per returned
 * stage out. The architecture comes from the weight file; architecture flags, when
 * given, are checks that the file must pass.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "io/npy.h"

/* A seeded input in [0, 1), like an image scaled by 1/255. */
static int random_input(npy_array *x, const int size[4])
{
    x->ndim = 4;
    x->numel = 1;
    for (int d = 0; d < 4; d++) {
        x->shape[d] = size[d];
        x->numel *= size[d];
    }
    x->data = malloc((size_t)x->numel * sizeof(float));
    if (!x->data)
        return -1;
    uint32_t state = 12345u;
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 1664525u + 1013904223u;
        x->data[i] = (float)(state >> 8) / 16777216.0f;
    }
    return 0;
}

static void help(void)
{
    printf("usage: cspresnet infer --weights FILE --input X.npy --out DIR\n"
           "                       [--act A] [--return-idx 1,2,3] [--threads N] [--deploy] [-q]\n"
           "       cspresnet infer --arch P [--input-size N,3,H,W] --out DIR   (random weights, a try-out)\n"
           "                       [--arch P] [--large-stem|--small-stem] [--alpha|--no-alpha]\n"
           "\n"
           "Loads a .pdparams file (backbone-only or a full PP-YOLOE/PP-YOLOE+ checkpoint),\n"
           "reads X.npy (float32, N x 3 x H x W, any H, W >= 1), runs the backbone in eval mode\n"
           "and writes DIR/stage{i}.npy (N x C x H/stride x W/stride) for each i in --return-idx.\n"
           "\n"
           "  --act A          activation the model was trained with (default swish; relu for the\n"
           "                   t-relu variants); the file cannot tell\n"
           "  --return-idx     stages to write (default 1,2,3 as the detectors use; 0,1,2,3 for P2)\n"
           "  --threads N      worker threads (default: all online CPUs)\n"
           "  --deploy         run the fused network (BN folded, RepVGG branches merged, as upstream's\n"
           "                   convert_to_deploy); same outputs within float rounding, fewer FLOPs\n"
           "  --arch, --large-stem, --small-stem, --alpha, --no-alpha\n"
           "                   optional checks: an error if the file's architecture differs.\n"
           "                   --alpha on a file without alpha uses alpha = 1.0, as upstream does\n"
           "                   when PP-YOLOE+ starts from an ImageNet backbone.\n"
           "  -q               print nothing on success\n"
           "\n"
           "Without --weights, an architecture flag (--arch, --width-mult, ...) builds a model with\n"
           "seeded random weights; without --input a seeded random input in [0, 1) of --input-size\n"
           "(default 1,3,640,640) is used: a way to try the tool before having weight files.\n");
}

int cmd_infer(int argc, char **argv)
{
    arch_flags f;
    arch_flags_init(&f);
    const char *weights = NULL, *input_path = NULL, *out_dir = NULL;
    int threads = 0, quiet = 0, deploy = 0;
    int input_size[4] = {1, 3, 640, 640};
    for (int i = 1; i < argc; i++) {
        int r = arch_flags_parse(&f, argc, argv, &i, "infer");
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return 0;
        } else if (strcmp(a, "--weights") == 0) {
            if (!(weights = flag_value(argc, argv, &i, "infer")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--input") == 0) {
            if (!(input_path = flag_value(argc, argv, &i, "infer")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--out") == 0) {
            if (!(out_dir = flag_value(argc, argv, &i, "infer")))
                return EXIT_USAGE;
        } else if (strcmp(a, "--threads") == 0) {
            const char *v = flag_value(argc, argv, &i, "infer");
            if (!v || parse_int_list(v, &threads, 1) != 1 || threads < 1 || threads > 1024) {
                fprintf(stderr, "cspresnet infer: --threads needs a count in 1..1024\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--input-size") == 0) {
            const char *v = flag_value(argc, argv, &i, "infer");
            if (!v || parse_int_list(v, input_size, 4) != 4 || input_size[0] < 1 || input_size[1] != 3 ||
                input_size[2] < 1 || input_size[3] < 1 || input_size[0] > 4096 || input_size[2] > 16384 ||
                input_size[3] > 16384) {
                fprintf(stderr, "cspresnet infer: --input-size must be N,3,H,W with N in 1..4096, H and W in 1..16384\n");
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--deploy") == 0) {
            deploy = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else {
            fprintf(stderr, "cspresnet infer: unknown option '%s' (see cspresnet infer --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!out_dir || (!weights && !arch_flags_fix_architecture(&f))) {
        fprintf(stderr, "cspresnet infer: --weights, --input and --out are required, or --arch and --out for a "
                        "try-out with random weights (see cspresnet infer --help)\n");
        return EXIT_USAGE;
    }

    cspresnet_load_options opt;
    cspresnet_load_options_init(&opt);
    opt.act = f.act;
    if (f.num_return > 0) {
        opt.num_return = f.num_return;
        memcpy(opt.return_idx, f.return_idx, sizeof opt.return_idx);
    }
    opt.expect_large_stem = f.large_stem;
    opt.expect_alpha = f.alpha;
    cspresnet_config expect;
    if (arch_flags_fix_architecture(&f)) {
        if (arch_flags_config(&f, &expect, "infer") != 0)
            return EXIT_USAGE;
        opt.expect = &expect;
    }
    char log[512] = "", err[1024];
    opt.log = log;
    opt.log_size = sizeof log;

    int rc = 1;
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    npy_array x = {0};
    error_buf e;
    if (weights) {
        if (cli_load_weights(weights, &opt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        if (!quiet && log[0])
            fprintf(stderr, "%s\n", log);
    } else {
        if (cspresnet_model_create(&expect, 1, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        if (!quiet)
            fprintf(stderr, "note: no --weights given: using seeded random weights (outputs are not meaningful)\n");
    }
    if (deploy) {
        cspresnet_model *fused;
        if (cspresnet_model_deploy(model, &fused, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        cspresnet_model_free(model);
        model = fused;
    }
    if (input_path) {
        if (npy_read(input_path, &x, &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", e.text);
            goto done;
        }
    } else if (random_input(&x, input_size) != 0) {
        fprintf(stderr, "cspresnet infer: out of memory for a %dx3x%dx%d input\n", input_size[0],
                input_size[2], input_size[3]);
        goto done;
    }
    if (x.ndim != 4 || x.shape[1] != 3 || x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 ||
        x.shape[0] > 65536 || x.shape[2] > 65536 || x.shape[3] > 65536) {
        char shape[128] = "";
        size_t used = 0;
        for (int d = 0; d < x.ndim && used < sizeof shape; d++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)x.shape[d]);
        fprintf(stderr,
                "cspresnet infer: %s has shape [%s]; expected N x 3 x H x W (3 RGB channels, N, H, W >= 1)\n",
                input_path, shape);
        goto done;
    }
    if (cspresnet_context_create(model, threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        goto done;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    if (cspresnet_forward(ctx, x.data, (int)x.shape[0], (int)x.shape[2], (int)x.shape[3], outs, &n_out) !=
        CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", cspresnet_context_last_error(ctx));
        goto done;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cspresnet infer: cannot create output folder %s: %s\n", out_dir, strerror(errno));
        goto done;
    }
    char paths[CSPRESNET_MAX_OUTPUTS][4096];
    for (int r = 0; r < n_out; r++) {
        snprintf(paths[r], sizeof paths[r], "%s/stage%d.npy", out_dir, outs[r].stage);
        int64_t shape[4] = {outs[r].n, outs[r].c, outs[r].h, outs[r].w};
        if (npy_write(paths[r], outs[r].data, 4, shape, &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", e.text);
            for (int k = 0; k < r; k++) /* leave no partial set of outputs behind */
                unlink(paths[k]);
            goto done;
        }
    }
    if (!quiet)
        for (int r = 0; r < n_out; r++)
            printf("stage%d: [%d, %d, %d, %d] stride %d -> %s\n", outs[r].stage, outs[r].n, outs[r].c,
                   outs[r].h, outs[r].w, outs[r].stride, paths[r]);
    rc = 0;
done:
    npy_array_free(&x);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return rc;
}
