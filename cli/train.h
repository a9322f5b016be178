/*
 * train.h - the pieces of `cspresnet train` (cmd_train.c): its options, the per-step
 * log kept in memory, and the files of a checkpoint (train_files.c).
 */
#ifndef CSPRESNET_CLI_TRAIN_H
#define CSPRESNET_CLI_TRAIN_H

#include <stdint.h>

#include "cli.h"

typedef struct train_cfg {
    const char *weights, *data_dir, *out, *resume;
    int dataset;                 /* 0: fashion-mnist, the only one */
    int epochs, size, batch, limit_train, limit_test;
    long steps, stop_after, warmup;
    int freeze_stages, freeze_bn, recompute;
    uint64_t seed;
    int optimizer, schedule;     /* cspresnet_optimizer, cspresnet_schedule */
    double lr, momentum, weight_decay, min_lr; /* lr, weight_decay < 0: the optimizer's default */
    common_flags cf;
    arch_flags af;
} train_cfg;

/* One line of log.csv per step, kept in memory and written with every checkpoint. */
typedef struct log_row {
    long step;
    int epoch;
    float lr, loss, acc;
} log_row;

typedef struct run_log {
    log_row *rows;
    long n, cap;
} run_log;

/* Appends r; 0, or -1 out of memory. */
int log_add(run_log *l, log_row r);
/* On --resume: the rows of an earlier log.csv up to the checkpoint's step. */
void log_read(run_log *l, const char *path, long upto);

/* Writes every output file of c->out; returns 0 or -1 (message printed). */
int train_save_all(const train_cfg *c, cspresnet_trainer *tr, const run_log *lg);

/* After a NaN or infinite loss (or, in_update, tensor) at step: what went wrong and
 * what is on disk (saved_step: this run's last checkpoint, -1 none). */
void train_report_divergence(const train_cfg *c, long step, int in_update, int first_step, long saved_step);

#endif
