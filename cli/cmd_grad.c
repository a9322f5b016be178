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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct grad_opts {
    const char *weights, *input, *grad_dir, *out;
    int train_bn;
    arch_flags af; /* --act and --return-idx only */
    common_flags cf;
} grad_opts;

static const char SYNOPSIS[] =
    "usage: cspresnet grad --weights W --input X.npy --grad-dir G --out DIR\n"
    "                      [--train-bn] [--act A] [--return-idx 1,2,3] [--threads N] [-q|-v]\n"
    "\n"
    "Differentiates loss = sum_i <stage_i, G/stage{i}.npy> (i in --return-idx) through the\n"
    "backbone and writes DIR/input.npy, DIR/params/<key>.npy for every trainable parameter\n"
    "and, with --train-bn, DIR/buffers/<key>.npy (BN _mean/_variance after the update).\n"
    "\n";

static const char NOTES[] = "Exit status: 0 success, 1 failure, 2 usage error.\n";

static const cli_flag FLAGS[] = {
    {CLI_FLAG("--weights", NULL, "W", "the model (.pdparams or safetensors)"), .parse = cli_str,
     .off = offsetof(grad_opts, weights)},
    {CLI_FLAG("--input", NULL, "X.npy", "the input batch, float32 N x 3 x H x W"), .parse = cli_str,
     .off = offsetof(grad_opts, input)},
    {CLI_FLAG("--grad-dir", NULL, "G", "G/stage{i}.npy: d loss / d stage i, each in stage i's shape"),
     .parse = cli_str, .off = offsetof(grad_opts, grad_dir)},
    {CLI_FLAG("--out", NULL, "DIR", "where the gradients go"), .parse = cli_str, .off = offsetof(grad_opts, out)},
    {CLI_FLAG("--train-bn", NULL, NULL, "BN in train mode: batch mean and biased variance, running statistics\n"
                                        "updated with momentum 0.9 (default: eval-mode BN, statistics fixed)"),
     .parse = cli_set, .off = offsetof(grad_opts, train_bn), .lo = 1},
    {CLI_FLAG("--act", NULL, "A", "the model's activation (default swish)"), .parse = arch_act_flag,
     .off = offsetof(grad_opts, af), .bad = "unknown activation '%s'"},
    {CLI_FLAG("--return-idx", NULL, "1,2,3", "stages in the loss (default 1,2,3)"), .parse = arch_return_idx_flag,
     .off = offsetof(grad_opts, af)},
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default and most: the online CPUs)"),
     .parse = cli_threads_flag, .off = offsetof(grad_opts, cf)},
    {CLI_FLAG("--quiet", "-q", NULL, "print nothing on success (else the loss)"), .parse = cli_quiet,
     .off = offsetof(grad_opts, cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "the default output (the loss and what was written)"), .parse = cli_quiet,
     .off = offsetof(grad_opts, cf)},
    CLI_END,
};

static const cli_command GRAD = {
    .name = "grad", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS, .hint = "see --help"};

static int write_npy(const char *dir, const char *sub, const char *key, const float *data,
                     int ndim, const int64_t *shape)
{
    char path[4096], err[1024];
    snprintf(path, sizeof path, "%s/%s%s%s.npy", dir, sub, *sub ? "/" : "", key);
    if (cspresnet_npy_write(path, data, ndim, shape, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", err);
        return -1;
    }
    return 0;
}

static int make_dir(const char *path)
{
    if (cli_make_dir(path) != 0) {
        fprintf(stderr, "cspresnet grad: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* What one forward and backward pass leaves for the files. */
typedef struct grad_run {
    cspresnet_model *model;
    cspresnet_trainer *tr;
    cspresnet_array x, g[CSPRESNET_MAX_OUTPUTS];
    float *dx;
    double loss;
} grad_run;

/* Reads G/stage{i}.npy for every returned stage (each in that stage's shape) and adds
 * <stage_i, G_i> to the loss; dout[r] points at the gradients. */
static int read_stage_grads(const grad_opts *o, grad_run *g, const cspresnet_output *outs, int n_out,
                            const float *dout[CSPRESNET_MAX_OUTPUTS])
{
    char err[1024];
    for (int r = 0; r < n_out; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/stage%d.npy", o->grad_dir, outs[r].stage);
        if (cspresnet_npy_read(path, &g->g[r], err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet grad: %s\n", err);
            return -1;
        }
        int64_t want[4] = {outs[r].n, outs[r].c, outs[r].h, outs[r].w};
        if (g->g[r].ndim != 4 || memcmp(g->g[r].shape, want, sizeof want) != 0) {
            fprintf(stderr, "cspresnet grad: %s: expected shape %lldx%lldx%lldx%lld like stage %d\n",
                    path, (long long)want[0], (long long)want[1], (long long)want[2],
                    (long long)want[3], outs[r].stage);
            return -1;
        }
        for (int64_t k = 0; k < g->g[r].numel; k++)
            g->loss += (double)g->g[r].data[k] * outs[r].data[k];
        dout[r] = g->g[r].data;
    }
    return 0;
}

/* Loads the model and the input, then one forward and one backward pass. */
static int grad_compute(const grad_opts *o, grad_run *g)
{
    char err[1024];
    cspresnet_load_options lopt;
    cspresnet_config unused;
    arch_flags_load_options(&o->af, &lopt, &unused, "grad"); /* act and return_idx: no checks */
    if (cli_load_weights(o->weights, &lopt, &g->model, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_npy_read(o->input, &g->x, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", err);
        return -1;
    }
    if (g->x.ndim != 4 || g->x.shape[1] != 3) {
        fprintf(stderr, "cspresnet grad: %s: expected N x 3 x H x W floats\n", o->input);
        return -1;
    }
    cspresnet_train_options topt;
    cspresnet_train_options_init(&topt);
    topt.threads = o->cf.threads;
    topt.train_bn = o->train_bn;
    topt.isa = cli_isa();
    if (cspresnet_trainer_create(g->model, &topt, &g->tr, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", err);
        return -1;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    const float *dout[CSPRESNET_MAX_OUTPUTS] = {0};
    const cspresnet_array *x = &g->x;
    if (cspresnet_trainer_forward(g->tr, x->data, (int)x->shape[0], (int)x->shape[2], (int)x->shape[3], outs,
                                  &n_out) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", cspresnet_trainer_last_error(g->tr));
        return -1;
    }
    if (read_stage_grads(o, g, outs, n_out, dout) != 0)
        return -1;
    if (!(g->dx = malloc((size_t)x->numel * sizeof(float)))) {
        fprintf(stderr, "cspresnet grad: out of memory\n");
        return -1;
    }
    if (cspresnet_trainer_backward(g->tr, dout, g->dx) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet grad: %s\n", cspresnet_trainer_last_error(g->tr));
        return -1;
    }
    return 0;
}

/* DIR/input.npy, DIR/params/<key>.npy and, with --train-bn, DIR/buffers/<key>.npy. */
static int grad_write(const grad_opts *o, const grad_run *g)
{
    const char *out = o->out;
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/params", out);
    if (make_dir(out) || make_dir(sub) || write_npy(out, "", "input", g->dx, 4, g->x.shape))
        return -1;
    if (o->train_bn) {
        snprintf(sub, sizeof sub, "%s/buffers", out);
        if (make_dir(sub))
            return -1;
    }
    const cspresnet_model *tm = cspresnet_trainer_model(g->tr);
    size_t n_grads = 0, n_stats = 0; /* trainable tensors; BN running statistics (no gradient) */
    for (size_t i = 0; i < cspresnet_model_param_count(tm); i++) {
        const char *key;
        int ndim, trainable;
        int64_t shape[4];
        const float *data;
        cspresnet_model_param(tm, i, &key, &ndim, shape, &data, &trainable);
        if (trainable) {
            if (write_npy(out, "params", key, cspresnet_trainer_param_grad(g->tr, i), ndim, shape))
                return -1;
            n_grads++;
        } else {
            if (o->train_bn && write_npy(out, "buffers", key, data, ndim, shape))
                return -1;
            n_stats++;
        }
    }
    if (!o->cf.quiet) {
        printf("loss %.9g\nwrote %s/input.npy and %zu parameter gradients to %s/params\n", g->loss, out, n_grads,
               out);
        if (o->train_bn)
            printf("wrote %zu BN running statistics (_mean, _variance after this step) to %s/buffers\n", n_stats,
                   out);
        else
            printf("(the model's other %zu tensors are its BN running statistics: no gradient; --train-bn "
                   "writes them)\n", n_stats);
    }
    return 0;
}

int cmd_grad(int argc, char **argv)
{
    grad_opts o = {0};
    arch_flags_init(&o.af);
    common_flags_init(&o.cf);
    int rc = cli_parse(&GRAD, &o, argc, argv);
    if (rc != CLI_PARSED)
        return rc;
    if (!o.weights || !o.input || !o.grad_dir || !o.out) {
        fprintf(stderr, "cspresnet grad: --weights, --input, --grad-dir and --out are required (see --help)\n");
        return EXIT_USAGE;
    }
    grad_run g = {0};
    rc = grad_compute(&o, &g) == 0 && grad_write(&o, &g) == 0 ? 0 : 1;
    free(g.dx);
    for (int r = 0; r < CSPRESNET_MAX_OUTPUTS; r++)
        cspresnet_array_free(&g.g[r]);
    cspresnet_array_free(&g.x);
    cspresnet_trainer_free(g.tr);
    cspresnet_model_free(g.model);
    return rc;
}
