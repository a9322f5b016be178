/*
 * train_files.c - what `cspresnet train` writes into --out (train.h): checkpoint.ckpt,
 * model.pdparams, model.safetensors, head.weight.npy, head.bias.npy and log.csv, each
 * atomically, and what it says about them when a run diverges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cspresnet_formats.h"
#include "cspresnet_io.h"
#include "train.h"

int log_add(run_log *l, log_row r)
{
    if (l->n == l->cap) {
        long cap = l->cap ? 2 * l->cap : 1024;
        log_row *p = realloc(l->rows, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        l->rows = p;
        l->cap = cap;
    }
    l->rows[l->n++] = r;
    return 0;
}

void log_read(run_log *l, const char *path, long upto)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        log_row r;
        if (sscanf(line, "%ld,%d,%g,%g,%g", &r.step, &r.epoch, &r.lr, &r.loss, &r.acc) == 5 &&
            r.step <= upto && log_add(l, r) != 0)
            break;
    }
    fclose(f);
}

int train_save_all(const train_cfg *c, cspresnet_trainer *tr, const run_log *lg)
{
    char path[4200], err[1024];
    snprintf(path, sizeof path, "%s/checkpoint.ckpt", c->out);
    if (cspresnet_trainer_save(tr, path) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", cspresnet_trainer_last_error(tr));
        return -1;
    }
    const cspresnet_model *m = cspresnet_trainer_model(tr);
    snprintf(path, sizeof path, "%s/model.pdparams", c->out);
    if (cspresnet_model_save_pdparams(m, path, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", c->out);
    if (cspresnet_model_save_safetensors(m, path, c->weights, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    int classes, channels;
    float *bias, *w = cspresnet_trainer_head(tr, &classes, &channels, &bias);
    int64_t ws[2] = {classes, channels}, bs[1] = {classes};
    snprintf(path, sizeof path, "%s/head.weight.npy", c->out);
    if (cspresnet_npy_write(path, w, 2, ws, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/head.bias.npy", c->out);
    if (cspresnet_npy_write(path, bias, 1, bs, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    size_t cap = 64 + (size_t)lg->n * 80, len = 0;
    char *text = malloc(cap);
    if (!text) {
        fprintf(stderr, "cspresnet train: out of memory writing log.csv\n");
        return -1;
    }
    len += (size_t)snprintf(text, cap, "step,epoch,lr,loss,accuracy\n");
    for (long i = 0; i < lg->n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%ld,%d,%.9g,%.9g,%.9g\n", lg->rows[i].step,
                                lg->rows[i].epoch, lg->rows[i].lr, lg->rows[i].loss, lg->rows[i].acc);
    snprintf(path, sizeof path, "%s/log.csv", c->out);
    int rc = 0;
    if (cspresnet_write_file_atomic(path, text, len, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        rc = -1;
    }
    free(text);
    return rc;
}

void train_report_divergence(const train_cfg *c, long step, int in_update, int first_step, long saved_step)
{
    const char *what = in_update ? "the weights are not finite after" : "the loss is not finite at";
    if (first_step && !in_update && c->weights)
        fprintf(stderr, "cspresnet train: %s step %ld, before any update: do the starting weights %s hold NaN "
                        "or infinite values?\n", what, step, c->weights);
    else
        fprintf(stderr, "cspresnet train: %s step %ld: the run diverged (try a lower --lr, or --schedule "
                        "one-cycle / cosine with --warmup)\n", what, step);
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.ckpt", c->out);
    if (saved_step >= 0)
        fprintf(stderr, "cspresnet train: %s keeps the last finite state, step %ld; nothing later was written\n",
                path, saved_step);
    else if (access(path, F_OK) == 0)
        fprintf(stderr, "cspresnet train: %s is left as it was (this run wrote no checkpoint)\n", path);
    else
        fprintf(stderr, "cspresnet train: no checkpoint was written (the first is saved at the end of an epoch)\n");
}

