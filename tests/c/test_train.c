/*
 * test_train.c - driver for tests/test_train.py: runs the public trainer API
 * (cspresnet_trainer_*) for a few steps on given batches and writes what it saw.
 *
 * Usage:
 *   test_train W.pdparams X.npy Y.npy OUT [options]
 *     X: (N,3,H,W) one batch used at every step, or (S,N,3,H,W) batch s % S at step s
 *     Y: labels as floats, (N) or (S,N)
 *   options: --steps N (default 1)  --classes K (10)  --threads T (1)
 *            --optimizer sgd|adamw  --lr X  --momentum X  --wd X  --beta1 X  --beta2 X  --eps X
 *            --schedule constant|cosine|one-cycle  --total N  --warmup N  --warmup-factor X
 *            --min-lr X  --pct X  --div X  --final-div X
 *            --freeze K  --freeze-bn  --recompute  --head-seed N
 *            --save-at N FILE   checkpoint after step N      --resume FILE   load first
 *            --head-init DIR    head weight/bias from DIR/head_weight.npy, head_bias.npy
 *            --lr-only          record the schedule: optimizer steps without forward/backward
 * Writes OUT/losses.npy, OUT/lrs.npy and OUT/seconds.npy (wall time of each step:
 * forward, backward and update; bench/train_bench.py reads it) for the steps of this call, OUT/head0_weight.npy
 * and OUT/head0_bias.npy (the head before training), and after the last step
 * OUT/params/<key>.npy for every model tensor (running statistics included),
 * OUT/head_weight.npy, OUT/head_bias.npy.
 * Exit status: 0 ok; 1 the library refused (message on stderr); 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cspresnet.h"
#include "io/npy.h"

static int usage(const char *msg)
{
    fprintf(stderr, "test_train: %s\n", msg);
    return 2;
}

static int save(const char *dir, const char *name, const float *d, int ndim, const int64_t *shape)
{
    char path[4096];
    error_buf e;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npy_write(path, d, ndim, shape, &e) != CSPRESNET_OK) {
        fprintf(stderr, "test_train: %s\n", e.text);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return usage("usage: test_train W X Y OUT [options]");
    const char *wpath = argv[1], *xpath = argv[2], *ypath = argv[3], *out = argv[4];
    const char *save_path = NULL, *resume = NULL, *head_init = NULL;
    long steps = 1, save_at = -1;
    int lr_only = 0;
    cspresnet_train_options o;
    cspresnet_train_options_init(&o);
    o.threads = 1;
    o.num_classes = 10;
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--freeze-bn") == 0) {
            o.train_bn = 0;
            continue;
        }
        if (strcmp(a, "--recompute") == 0) {
            o.recompute = 1;
            continue;
        }
        if (strcmp(a, "--lr-only") == 0) {
            lr_only = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage(a);
        const char *v = argv[++i];
        double d = atof(v);
        if (strcmp(a, "--steps") == 0) steps = atol(v);
        else if (strcmp(a, "--classes") == 0) o.num_classes = atoi(v);
        else if (strcmp(a, "--threads") == 0) o.threads = atoi(v);
        else if (strcmp(a, "--optimizer") == 0) o.optimizer = strcmp(v, "adamw") == 0 ? CSPRESNET_OPT_ADAMW : CSPRESNET_OPT_SGD;
        else if (strcmp(a, "--lr") == 0) o.lr = (float)d;
        else if (strcmp(a, "--momentum") == 0) o.momentum = (float)d;
        else if (strcmp(a, "--wd") == 0) o.weight_decay = (float)d;
        else if (strcmp(a, "--beta1") == 0) o.beta1 = (float)d;
        else if (strcmp(a, "--beta2") == 0) o.beta2 = (float)d;
        else if (strcmp(a, "--eps") == 0) o.eps = (float)d;
        else if (strcmp(a, "--schedule") == 0)
            o.schedule = strcmp(v, "cosine") == 0 ? CSPRESNET_SCHED_WARMUP_COSINE
                         : strcmp(v, "one-cycle") == 0 ? CSPRESNET_SCHED_ONE_CYCLE : CSPRESNET_SCHED_CONSTANT;
        else if (strcmp(a, "--total") == 0) o.total_steps = atol(v);
        else if (strcmp(a, "--warmup") == 0) o.warmup_steps = atol(v);
        else if (strcmp(a, "--warmup-factor") == 0) o.warmup_start_factor = (float)d;
        else if (strcmp(a, "--min-lr") == 0) o.min_lr = (float)d;
        else if (strcmp(a, "--pct") == 0) o.pct_start = (float)d;
        else if (strcmp(a, "--div") == 0) o.div_factor = (float)d;
        else if (strcmp(a, "--final-div") == 0) o.final_div_factor = (float)d;
        else if (strcmp(a, "--freeze") == 0) o.freeze = atoi(v);
        else if (strcmp(a, "--head-seed") == 0) o.head_seed = (uint64_t)atoll(v);
        else if (strcmp(a, "--resume") == 0) resume = v;
        else if (strcmp(a, "--head-init") == 0) head_init = v;
        else if (strcmp(a, "--save-at") == 0) {
            save_at = atol(v);
            if (i + 1 >= argc)
                return usage("--save-at N FILE");
            save_path = argv[++i];
        } else
            return usage(a);
    }

    char err[1024];
    error_buf e;
    cspresnet_model *model = NULL;
    cspresnet_trainer *tr = NULL;
    npy_array x = {0}, y = {0}, hw = {0}, hb = {0};
    float *losses = NULL, *lrs = NULL, *secs = NULL;
    int *labels = NULL, rc = 1;
    cspresnet_load_options lo;
    cspresnet_load_options_init(&lo);
    lo.num_return = 1;
    lo.return_idx[0] = 3;
    if (cspresnet_model_load(wpath, &lo, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "test_train: %s\n", err);
        goto done;
    }
    if (npy_read(xpath, &x, &e) != CSPRESNET_OK || npy_read(ypath, &y, &e) != CSPRESNET_OK) {
        fprintf(stderr, "test_train: %s\n", e.text);
        goto done;
    }
    int five = x.ndim == 5;
    if ((x.ndim != 4 && !five) || x.shape[five + 1] != 3 || y.ndim != 1 + five ||
        y.shape[five] != x.shape[five] || (five && y.shape[0] != x.shape[0])) {
        rc = usage("X must be (N,3,H,W) or (S,N,3,H,W) with Y (N) or (S,N)");
        goto done;
    }
    const int S = five ? (int)x.shape[0] : 1, N = (int)x.shape[five], H = (int)x.shape[five + 2],
              W = (int)x.shape[five + 3];
    if (cspresnet_trainer_create(model, &o, &tr, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "test_train: %s\n", err);
        goto done;
    }
    int K, C;
    float *hbias, *hweight = cspresnet_trainer_head(tr, &K, &C, &hbias);
    if (head_init) {
        char p[4096];
        snprintf(p, sizeof p, "%s/head_weight.npy", head_init);
        if (npy_read(p, &hw, &e) != CSPRESNET_OK) {
            fprintf(stderr, "test_train: %s\n", e.text);
            goto done;
        }
        snprintf(p, sizeof p, "%s/head_bias.npy", head_init);
        if (npy_read(p, &hb, &e) != CSPRESNET_OK) {
            fprintf(stderr, "test_train: %s\n", e.text);
            goto done;
        }
        if (hw.numel != (int64_t)K * C || hb.numel != K) {
            rc = usage("head init shapes do not match");
            goto done;
        }
        memcpy(hweight, hw.data, (size_t)K * C * sizeof(float));
        memcpy(hbias, hb.data, (size_t)K * sizeof(float));
    }
    if (resume && cspresnet_trainer_load(tr, resume) != CSPRESNET_OK) {
        fprintf(stderr, "test_train: %s\n", cspresnet_trainer_last_error(tr));
        goto done;
    }
    int64_t hs[2] = {K, C};
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "test_train: cannot create %s\n", out);
        goto done;
    }
    if (save(out, "head0_weight", hweight, 2, hs) || save(out, "head0_bias", hbias, 1, hs))
        goto done;
    losses = calloc((size_t)steps + 1, sizeof(float));
    lrs = calloc((size_t)steps + 1, sizeof(float));
    secs = calloc((size_t)steps + 1, sizeof(float));
    labels = malloc((size_t)N * sizeof(int));
    if (!losses || !lrs || !secs || !labels)
        goto done;
    const long first = cspresnet_trainer_step_count(tr);
    for (long s = 0; s < steps; s++) {
        long gs = first + s;
        const float *xs = x.data + (gs % S) * (long)N * 3 * H * W;
        for (int i = 0; i < N; i++)
            labels[i] = (int)y.data[(gs % S) * N + i];
        lrs[s] = cspresnet_trainer_lr(tr);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if ((!lr_only && cspresnet_trainer_classify(tr, xs, N, H, W, labels, &losses[s], NULL) != CSPRESNET_OK) ||
            cspresnet_trainer_step(tr) != CSPRESNET_OK) {
            fprintf(stderr, "test_train: %s\n", cspresnet_trainer_last_error(tr));
            goto done;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        secs[s] = (float)((double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
        if (save_path && gs + 1 == save_at && cspresnet_trainer_save(tr, save_path) != CSPRESNET_OK) {
            fprintf(stderr, "test_train: %s\n", cspresnet_trainer_last_error(tr));
            goto done;
        }
    }
    int64_t ls[1] = {steps};
    if (save(out, "losses", losses, 1, ls) || save(out, "lrs", lrs, 1, ls) || save(out, "seconds", secs, 1, ls) ||
        save(out, "head_weight", hweight, 2, hs) || save(out, "head_bias", hbias, 1, hs))
        goto done;
    char pdir[4096];
    snprintf(pdir, sizeof pdir, "%s/params", out);
    mkdir(pdir, 0777);
    const cspresnet_model *tm = cspresnet_trainer_model(tr);
    for (size_t i = 0; i < cspresnet_model_param_count(tm); i++) {
        const char *key;
        int ndim;
        int64_t shape[4];
        const float *data;
        cspresnet_model_param(tm, i, &key, &ndim, shape, &data, NULL);
        if (save(pdir, key, data, ndim, shape))
            goto done;
    }
    rc = 0;
done:
    free(losses);
    free(lrs);
    free(secs);
    free(labels);
    npy_array_free(&x);
    npy_array_free(&y);
    npy_array_free(&hw);
    npy_array_free(&hb);
    cspresnet_trainer_free(tr);
    cspresnet_model_free(model);
    return rc;
}
