/*
 * cmd_grad.c - `cspresnet grad`: gradients of a linear probe of the feature maps.
 *
 * loss = sum over returned stages i of <stage_i, G/stage{i}.npy>. Writes
 * DIR/input.npy (d loss / d input), DIR/params/<key>.npy for every trainable parameter
 * (upstream key names) and, with --train-bn, DIR/buffers/<key>.npy: the BN running
 * statistics after this one train-mode forward. Without --train-bn, BN uses the
 * running statistics (eval mode), as a frozen backbone would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "io/npy.h"

static void help(void)
{
    printf("usage: cspresnet grad --weights W --input X.npy --grad-dir G --out DIR\n"
           "                      [--train-bn] [--act A] [--return-idx 1,2,3] [--threads N] [-q|-v]\n"
           "\n"
           "Differentiates loss = sum_i <stage_i, G/stage{i}.npy> (i in --return-idx) through the\n"
           "backbone and writes DIR/input.npy, DIR/params/<key>.npy for every trainable parameter\n"
           "and, with --train-bn, DIR/buffers/<key>.npy (BN _mean/_variance after the update).\n"
           "\n"
           "  --train-bn      BN in train mode: batch mean and biased variance, running statistics\n"
           "                  updated with momentum 0.9 (default: eval-mode BN, statistics fixed)\n"
           "  --act A         the model's activation (default swish)\n"
           "  --return-idx    stages in the loss (default 1,2,3)\n"
           "  --threads N     worker threads (default and most: the online CPUs)\n"
           "  -q, --quiet     print nothing on success (else the loss)\n"
           "  -v, --verbose   the default output (the loss and what was written)\n"
           "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cspresnet grad: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_npy(const char *dir, const char *sub, const char *key, const float *data,
                     int ndim, const int64_t *shape)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s%s.npy", dir, sub, *sub ? "/" : "", key);
    error_buf e;
    if (npy_write(path, data, ndim, shape, &e) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", e.text);
        return -1;
    }
    return 0;
}

int cmd_grad(int argc, char **argv)
{
    const char *weights = NULL, *input = NULL, *gdir = NULL, *out = NULL;
    int train_bn = 0, quiet = 0, threads = 0;
    cspresnet_load_options lopt;
    cspresnet_load_options_init(&lopt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return 0;
        } else if (strcmp(a, "--weights") == 0 || strcmp(a, "--input") == 0 ||
                   strcmp(a, "--grad-dir") == 0 || strcmp(a, "--out") == 0) {
            if (!(v = flag_value(argc, argv, &i, "grad")))
                return EXIT_USAGE;
            if (a[2] == 'w')
                weights = v;
            else if (a[2] == 'i')
                input = v;
            else if (a[2] == 'g')
                gdir = v;
            else
                out = v;
        } else if (strcmp(a, "--train-bn") == 0) {
            train_bn = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            quiet = 0; /* the default output: grad has nothing to add to the loss */
        } else if (strcmp(a, "--act") == 0) {
            if (!(v = flag_value(argc, argv, &i, "grad")))
                return EXIT_USAGE;
            if (cspresnet_act_parse(v, &lopt.act) != CSPRESNET_OK) {
                fprintf(stderr, "cspresnet grad: unknown activation '%s'\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--return-idx") == 0) {
            if (!(v = flag_value(argc, argv, &i, "grad")))
                return EXIT_USAGE;
            lopt.num_return = parse_int_list(v, lopt.return_idx, CSPRESNET_MAX_OUTPUTS);
            if (return_idx_check(lopt.return_idx, lopt.num_return) != 0) {
                fprintf(stderr, "cspresnet grad: --return-idx '%s' must be 1 to 4 comma-separated stage indices "
                                "(0..3)\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (!(v = flag_value(argc, argv, &i, "grad")))
                return EXIT_USAGE;
            if (parse_int_list(v, &threads, 1) != 1 || threads < 1 || threads > 1024) {
                fprintf(stderr, "cspresnet grad: --threads needs a count in 1..1024 (default: all CPUs)\n");
                return EXIT_USAGE;
            }
            threads = cli_threads(threads, "grad");
        } else {
            fprintf(stderr, "cspresnet grad: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
    }
    if (!weights || !input || !gdir || !out) {
        fprintf(stderr, "cspresnet grad: --weights, --input, --grad-dir and --out are required (see --help)\n");
        return EXIT_USAGE;
    }

    char err[1024];
    cspresnet_model *model = NULL;
    cspresnet_trainer *tr = NULL;
    npy_array x = {0}, g[CSPRESNET_MAX_OUTPUTS] = {{0}};
    float *dx = NULL;
    int rc = 1;
    error_buf e;
    if (cli_load_weights(weights, &lopt, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", err);
        goto done;
    }
    if (npy_read(input, &x, &e) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", e.text);
        goto done;
    }
    if (x.ndim != 4 || x.shape[1] != 3) {
        fprintf(stderr, "cspresnet grad: %s: expected N x 3 x H x W floats\n", input);
        goto done;
    }
    cspresnet_train_options topt;
    cspresnet_train_options_init(&topt);
    topt.threads = threads;
    topt.train_bn = train_bn;
    if (cspresnet_trainer_create(model, &topt, &tr, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", err);
        goto done;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    if (cspresnet_trainer_forward(tr, x.data, (int)x.shape[0], (int)x.shape[2], (int)x.shape[3],
                                  outs, &n_out) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", cspresnet_trainer_last_error(tr));
        goto done;
    }
    const float *dout[CSPRESNET_MAX_OUTPUTS] = {0};
    double loss = 0.0;
    for (int r = 0; r < n_out; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/stage%d.npy", gdir, outs[r].stage);
        if (npy_read(path, &g[r], &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet grad: %s\n", e.text);
            goto done;
        }
        int64_t want[4] = {outs[r].n, outs[r].c, outs[r].h, outs[r].w};
        if (g[r].ndim != 4 || memcmp(g[r].shape, want, sizeof want) != 0) {
            fprintf(stderr, "cspresnet grad: %s: expected shape %lldx%lldx%lldx%lld like stage %d\n",
                    path, (long long)want[0], (long long)want[1], (long long)want[2],
                    (long long)want[3], outs[r].stage);
            goto done;
        }
        for (int64_t k = 0; k < g[r].numel; k++)
            loss += (double)g[r].data[k] * outs[r].data[k];
        dout[r] = g[r].data;
    }
    dx = malloc((size_t)x.numel * sizeof(float));
    if (!dx) {
        fprintf(stderr, "cspresnet grad: out of memory\n");
        goto done;
    }
    if (cspresnet_trainer_backward(tr, dout, dx) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", cspresnet_trainer_last_error(tr));
        goto done;
    }
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/params", out);
    if (make_dir(out) || make_dir(sub) || write_npy(out, "", "input", dx, 4, x.shape))
        goto done;
    if (train_bn) {
        snprintf(sub, sizeof sub, "%s/buffers", out);
        if (make_dir(sub))
            goto done;
    }
    const cspresnet_model *tm = cspresnet_trainer_model(tr);
    size_t n_grads = 0, n_stats = 0; /* trainable tensors; BN running statistics (no gradient) */
    for (size_t i = 0; i < cspresnet_model_param_count(tm); i++) {
        const char *key;
        int ndim, trainable;
        int64_t shape[4];
        const float *data;
        cspresnet_model_param(tm, i, &key, &ndim, shape, &data, &trainable);
        if (trainable) {
            if (write_npy(out, "params", key, cspresnet_trainer_param_grad(tr, i), ndim, shape))
                goto done;
            n_grads++;
        } else {
            if (train_bn && write_npy(out, "buffers", key, data, ndim, shape))
                goto done;
            n_stats++;
        }
    }
    if (!quiet) {
        printf("loss %.9g\nwrote %s/input.npy and %zu parameter gradients to %s/params\n", loss, out, n_grads, out);
        if (train_bn)
            printf("wrote %zu BN running statistics (_mean, _variance after this step) to %s/buffers\n", n_stats,
                   out);
        else
            printf("(the model's other %zu tensors are its BN running statistics: no gradient; --train-bn "
                   "writes them)\n", n_stats);
    }
    rc = 0;
done:
    free(dx);
    for (int r = 0; r < CSPRESNET_MAX_OUTPUTS; r++)
        npy_array_free(&g[r]);
    npy_array_free(&x);
    cspresnet_trainer_free(tr);
    cspresnet_model_free(model);
    return rc;
}
