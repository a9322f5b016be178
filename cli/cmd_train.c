/*
 * cmd_train.c - `cspresnet train`: fine-tunes CSPResNet + a linear head on Fashion-MNIST.
 *
 * Data: the IDX files of Debian's dataset-fashion-mnist (fashion_mnist.c), each 28x28
 * picture centred in --size (zero-padded), gray copied to 3 channels, normalised with
 * the training set's mean and std. The training order of epoch e is a Fisher-Yates
 * shuffle seeded by (--seed, e); the last incomplete batch of an epoch is dropped so
 * that every step has the same shape. Step s (0-based) is batch s % steps_per_epoch of
 * epoch s / steps_per_epoch, so a run resumed from a checkpoint at step s sees exactly
 * the batches the uninterrupted run would have (and the trainer's results do not
 * depend on the thread count): its weights and losses are identical.
 *
 * Files in --out: checkpoint.ckpt (weights, running statistics, head, optimizer state,
 * step; cspresnet_trainer_save), model.pdparams and model.safetensors (the backbone),
 * head.weight.npy / head.bias.npy, log.csv (step, epoch, lr, loss, batch accuracy).
 * All are written atomically after every epoch, at --stop-after and at the end, and
 * only from a finite state: a diverged run (NaN or infinite loss or tensor) stops with
 * exit 1 and leaves the files of the last finite checkpoint.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/atomic_file.h"
#include "cspresnet_formats.h"
#include "fashion_mnist.h"
#include "io/npy.h"
#include "progress.h"

typedef struct train_cfg {
    const char *weights, *data_dir, *out, *resume;
    int epochs, size, batch, limit_train, limit_test;
    long steps, stop_after, warmup;
    int freeze_stages, freeze_bn, recompute;
    uint64_t seed;
    cspresnet_optimizer optimizer;
    cspresnet_schedule schedule;
    double lr, momentum, weight_decay, min_lr;
    int lr_given, wd_given;
    common_flags cf;
    arch_flags af;
} train_cfg;

/* Ctrl-C (SIGINT) or SIGTERM: finish the current step, write the checkpoint, stop.
 * A second signal kills at once; the last checkpoint on disk stays intact because
 * every file is written to a temporary name and renamed into place. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    stop_requested = 1;
    signal(sig, SIG_DFL);
}

static void help(void)
{
    printf("usage: cspresnet train (--weights FILE | --arch t|s|m|l|x) [--dataset fashion-mnist]\n"
           "                       [--epochs N | --steps N] [--out DIR] [options]\n"
           "\n"
           "Fine-tunes CSPResNet with a linear classification head (global average pool of the\n"
           "last stage, linear, softmax cross-entropy) on Fashion-MNIST, evaluating on the test\n"
           "split after every epoch and writing checkpoints in both weight formats.\n"
           "\n"
           "Model:\n"
           "  --weights FILE      start from .pdparams or .safetensors weights (the file decides\n"
           "                      the architecture); or --arch P (also --width-mult/--depth-mult,\n"
           "                      --layers, --channels, --act, --alpha ...): random init\n"
           "Data:\n"
           "  --dataset NAME      fashion-mnist (the only one; default)\n"
           "  --data-dir DIR      the IDX .gz files (default " FMNIST_DEFAULT_DIR ")\n"
           "  --size N            input side, >= 28; the 28x28 picture is centred (default 32)\n"
           "  --batch N           batch size (default 64; the last partial batch is dropped)\n"
           "  --limit-train N     use the first N training images (default all 60000)\n"
           "  --limit-test N      evaluate on the first N test images (default all 10000)\n"
           "Schedule:\n"
           "  --epochs N          epochs (default 3)\n"
           "  --steps N           total optimizer steps instead of whole epochs\n"
           "  --stop-after N      stop after step N (checkpoint written), the schedule unchanged;\n"
           "                      continue later with --resume\n"
           "  --optimizer sgd|adamw   sgd (default): momentum as Paddle's Momentum, L2 decay on\n"
           "                      all but BN weight/bias; adamw: decoupled decay\n"
           "  --lr X              peak learning rate (default 0.05 sgd, 0.001 adamw)\n"
           "  --momentum X        SGD momentum (default 0.9)\n"
           "  --weight-decay X    default 5e-4 (sgd), 0.01 (adamw)\n"
           "  --schedule S        one-cycle (default; PyTorch OneCycleLR, cos, momentum fixed),\n"
           "                      cosine (linear warm-up from 0, then cosine decay), constant\n"
           "  --warmup N          warm-up steps for cosine (default 0)\n"
           "  --min-lr X          cosine floor (default 0)\n"
           "Memory and freezing:\n"
           "  --freeze-stages K   freeze the stem and stages 0..K-1 (no updates, BN statistics fixed)\n"
           "  --freeze-bn         BN everywhere in eval mode: running statistics used and kept\n"
           "  --recompute         per-stage recomputation (upstream's use_checkpoint); the report\n"
           "                      shows the activation memory with and without it\n"
           "Run:\n"
           "  --out DIR           output folder (default train-out)\n"
           "  --resume FILE       continue from DIR/checkpoint.ckpt; give the same flags as the run\n"
           "                      that wrote it (the data order follows from --seed and the step)\n"
           "  --seed N            head init, random init and data order (default 1)\n"
           "  --threads N         worker threads (default and most: the online CPUs)\n"
           "  -q, -v              quiet (nothing on stdout on success) / verbose\n"
           "A progress bar (step, loss, accuracy, images/s, ETA) is drawn on a terminal (no colour\n"
           "with NO_COLOR set); otherwise plain lines are printed about ten times per epoch.\n"
           "A loss, weight or running statistic that becomes NaN or infinite stops the run (exit 1):\n"
           "it diverged; no file is written from such a state, so the last checkpoint stays finite.\n"
           "Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C or SIGTERM:\n"
           "the current step finishes, the checkpoint is saved; continue with --resume).\n");
}

static int parse_num(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "cspresnet %s: %s '%s' must be a number in [%g, %g]\n", cmd, flag, v, lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

/* Returns 0 ok, EXIT_USAGE on a bad flag, -1 after --help. */
static int parse_args(train_cfg *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->data_dir = FMNIST_DEFAULT_DIR;
    c->out = "train-out";
    c->epochs = 3;
    c->size = 32;
    c->batch = 64;
    c->freeze_stages = -1;
    c->seed = 1;
    c->optimizer = CSPRESNET_OPT_SGD;
    c->schedule = CSPRESNET_SCHED_ONE_CYCLE;
    c->momentum = 0.9;
    common_flags_init(&c->cf);
    arch_flags_init(&c->af);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        double d;
        int r = common_flags_parse(&c->cf, argc, argv, &i, "train");
        if (r == 0)
            r = arch_flags_parse(&c->af, argc, argv, &i, "train");
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return -1;
        }
        if (strcmp(a, "--freeze-bn") == 0) {
            c->freeze_bn = 1;
            continue;
        }
        if (strcmp(a, "--recompute") == 0) {
            c->recompute = 1;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "cspresnet train: unexpected argument '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
        if (!(v = flag_value(argc, argv, &i, "train")))
            return EXIT_USAGE;
#define NUM(lo, hi) do { if (parse_num("train", a, v, lo, hi, &d)) return EXIT_USAGE; } while (0)
        if (strcmp(a, "--weights") == 0) {
            c->weights = v;
        } else if (strcmp(a, "--dataset") == 0) {
            if (strcmp(v, "fashion-mnist") != 0 && strcmp(v, "fashion_mnist") != 0) {
                fprintf(stderr, "cspresnet train: unknown --dataset '%s' (fashion-mnist)\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--data-dir") == 0) {
            c->data_dir = v;
        } else if (strcmp(a, "--out") == 0) {
            c->out = v;
        } else if (strcmp(a, "--resume") == 0) {
            c->resume = v;
        } else if (strcmp(a, "--epochs") == 0) {
            NUM(1, 100000);
            c->epochs = (int)d;
        } else if (strcmp(a, "--steps") == 0) {
            NUM(1, 1e9);
            c->steps = (long)d;
        } else if (strcmp(a, "--stop-after") == 0) {
            NUM(1, 1e9);
            c->stop_after = (long)d;
        } else if (strcmp(a, "--size") == 0) {
            NUM(FMNIST_SIDE, 4096);
            c->size = (int)d;
        } else if (strcmp(a, "--batch") == 0) {
            NUM(1, 65536);
            c->batch = (int)d;
        } else if (strcmp(a, "--limit-train") == 0) {
            NUM(1, 1e7);
            c->limit_train = (int)d;
        } else if (strcmp(a, "--limit-test") == 0) {
            NUM(1, 1e7);
            c->limit_test = (int)d;
        } else if (strcmp(a, "--optimizer") == 0) {
            if (strcmp(v, "sgd") == 0)
                c->optimizer = CSPRESNET_OPT_SGD;
            else if (strcmp(v, "adamw") == 0)
                c->optimizer = CSPRESNET_OPT_ADAMW;
            else {
                fprintf(stderr, "cspresnet train: unknown --optimizer '%s' (sgd, adamw)\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--schedule") == 0) {
            if (strcmp(v, "one-cycle") == 0 || strcmp(v, "onecycle") == 0)
                c->schedule = CSPRESNET_SCHED_ONE_CYCLE;
            else if (strcmp(v, "cosine") == 0)
                c->schedule = CSPRESNET_SCHED_WARMUP_COSINE;
            else if (strcmp(v, "constant") == 0)
                c->schedule = CSPRESNET_SCHED_CONSTANT;
            else {
                fprintf(stderr, "cspresnet train: unknown --schedule '%s' (one-cycle, cosine, constant)\n", v);
                return EXIT_USAGE;
            }
        } else if (strcmp(a, "--lr") == 0) {
            NUM(0, 100);
            c->lr = d;
            c->lr_given = 1;
        } else if (strcmp(a, "--momentum") == 0) {
            NUM(0, 1);
            c->momentum = d;
        } else if (strcmp(a, "--weight-decay") == 0) {
            NUM(0, 10);
            c->weight_decay = d;
            c->wd_given = 1;
        } else if (strcmp(a, "--warmup") == 0) {
            NUM(0, 1e9);
            c->warmup = (long)d;
        } else if (strcmp(a, "--min-lr") == 0) {
            NUM(0, 100);
            c->min_lr = d;
        } else if (strcmp(a, "--freeze-stages") == 0) {
            NUM(0, CSPRESNET_NUM_STAGES);
            c->freeze_stages = (int)d;
        } else if (strcmp(a, "--seed") == 0) {
            NUM(0, 9.007199254740992e15);
            c->seed = (uint64_t)d;
        } else {
            fprintf(stderr, "cspresnet train: unknown option '%s' (see --help)\n", a);
            return EXIT_USAGE;
        }
#undef NUM
    }
    if (!c->weights && !arch_flags_fix_architecture(&c->af)) {
        fprintf(stderr, "cspresnet train: give --weights FILE or --arch t|s|m|l|x (see --help)\n");
        return EXIT_USAGE;
    }
    if (!c->lr_given)
        c->lr = c->optimizer == CSPRESNET_OPT_ADAMW ? 1e-3 : 0.05;
    if (!c->wd_given)
        c->weight_decay = c->optimizer == CSPRESNET_OPT_ADAMW ? 0.01 : 5e-4;
    return 0;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The training order of epoch e: a Fisher-Yates shuffle seeded by (seed, e). */
static void epoch_order(int *perm, int n, uint64_t seed, long epoch)
{
    uint64_t s = seed * 0x100000001B3ull + (uint64_t)epoch * 0x9E3779B97F4A7C15ull + 12345;
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix(&s) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cspresnet train: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

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

static int log_add(run_log *l, log_row r)
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

/* On --resume: the rows of an earlier log.csv up to the checkpoint's step. */
static void log_read(run_log *l, const char *path, long upto)
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

static int write_text(const char *path, const char *text, size_t n)
{
    atomic_file f;
    error_buf e;
    if (atomic_file_open(&f, path, &e) != CSPRESNET_OK || atomic_file_write(&f, text, n, &e) != CSPRESNET_OK ||
        atomic_file_commit(&f, &e) != CSPRESNET_OK) {
        atomic_file_abort(&f);
        fprintf(stderr, "cspresnet train: %s\n", e.text);
        return -1;
    }
    return 0;
}

/* Writes every output file; returns 0 or -1 (message printed). */
static int save_all(const train_cfg *c, cspresnet_trainer *tr, const run_log *lg)
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
    error_buf e;
    snprintf(path, sizeof path, "%s/head.weight.npy", c->out);
    if (npy_write(path, w, 2, ws, &e) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", e.text);
        return -1;
    }
    snprintf(path, sizeof path, "%s/head.bias.npy", c->out);
    if (npy_write(path, bias, 1, bs, &e) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", e.text);
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
    int rc = write_text(path, text, len);
    free(text);
    return rc;
}

/* Test accuracy in eval mode; the last partial batch is padded (eval BN treats images
 * independently, so padding changes nothing) to keep one planned shape. */
static int evaluate(const train_cfg *c, cspresnet_trainer *tr, const fmnist_split *test, int batch,
                    float *x, float *logits, double *acc)
{
    const long img = 3L * c->size * c->size;
    long hits = 0;
    for (int b = 0; b < test->count; b += batch) {
        int n = test->count - b < batch ? test->count - b : batch;
        for (int i = 0; i < batch; i++) {
            if (i < n)
                fmnist_image(test, b + i, c->size, x + i * img);
            else
                memset(x + i * img, 0, (size_t)img * sizeof(float));
        }
        if (cspresnet_trainer_predict(tr, x, batch, c->size, c->size, logits) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet train: %s\n", cspresnet_trainer_last_error(tr));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            const float *z = logits + (long)i * FMNIST_CLASSES;
            int arg = 0;
            for (int k = 1; k < FMNIST_CLASSES; k++)
                if (z[k] > z[arg])
                    arg = k;
            hits += arg == test->labels[b + i];
        }
    }
    *acc = (double)hits / test->count;
    return 0;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, n, "--");
    else if (s >= 3600)
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%.0fs", s);
}

/* After a NaN or infinite loss (or, in_update, tensor) at step: what went wrong and
 * what is on disk. */
static void report_divergence(const train_cfg *c, long step, int in_update, int first_step, long saved_step)
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

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* Activation memory the other recomputation mode would plan for the same batch. */
static size_t other_mode_bytes(const cspresnet_model *m, const cspresnet_train_options *topt,
                               const float *x, int batch, int size, float *logits)
{
    cspresnet_train_options o = *topt;
    o.recompute = !o.recompute;
    cspresnet_trainer *t2;
    char err[256];
    if (cspresnet_trainer_create(m, &o, &t2, err, sizeof err) != CSPRESNET_OK)
        return 0;
    size_t b = cspresnet_trainer_predict(t2, x, batch, size, size, logits) == CSPRESNET_OK
                   ? cspresnet_trainer_activation_bytes(t2) : 0;
    cspresnet_trainer_free(t2);
    return b;
}

int cmd_train(int argc, char **argv)
{
    train_cfg c;
    int pr = parse_args(&c, argc, argv);
    if (pr != 0)
        return pr < 0 ? 0 : pr;
    const int quiet = c.cf.quiet;
    char err[1024], log[512] = "";
    cspresnet_model *model = NULL;
    cspresnet_trainer *tr = NULL;
    fmnist_split train = {0}, test = {0};
    float *x = NULL, *logits = NULL;
    int *perm = NULL, *labels = NULL;
    run_log lg = {0};
    int rc = 1;

    /* model */
    cspresnet_config expect;
    cspresnet_load_options lopt;
    if (arch_flags_load_options(&c.af, &lopt, &expect, "train") != 0)
        return EXIT_USAGE;
    lopt.log = log;
    lopt.log_size = sizeof log;
    if (c.weights) {
        if (cli_load_weights(c.weights, &lopt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet train: %s\n", err);
            goto done;
        }
        if (c.cf.verbose && log[0])
            fprintf(stderr, "%s\n", log);
    } else if (cspresnet_model_create(&expect, c.seed, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        goto done;
    }

    /* data */
    if (fmnist_load(c.data_dir, "train", c.limit_train, &train, err, sizeof err) != 0 ||
        fmnist_load(c.data_dir, "t10k", c.limit_test, &test, err, sizeof err) != 0) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        goto done;
    }
    const int batch = c.batch < train.count ? c.batch : train.count;
    const long spe = train.count / batch;
    const long total = c.steps > 0 ? c.steps : spe * c.epochs;
    const long stop = c.stop_after > 0 && c.stop_after < total ? c.stop_after : total;
    const long img = 3L * c.size * c.size;
    x = malloc((size_t)batch * img * sizeof(float));
    logits = malloc((size_t)batch * FMNIST_CLASSES * sizeof(float));
    perm = malloc((size_t)train.count * sizeof(int));
    labels = malloc((size_t)batch * sizeof(int));
    if (!x || !logits || !perm || !labels) {
        fprintf(stderr, "cspresnet train: out of memory for a batch of %d\n", batch);
        goto done;
    }

    /* trainer */
    cspresnet_train_options topt;
    cspresnet_train_options_init(&topt);
    topt.threads = c.cf.threads;
    topt.num_classes = FMNIST_CLASSES;
    topt.head_seed = c.seed;
    topt.train_bn = !c.freeze_bn;
    topt.freeze = c.freeze_stages;
    topt.recompute = c.recompute;
    topt.optimizer = c.optimizer;
    topt.lr = (float)c.lr;
    topt.momentum = (float)c.momentum;
    topt.weight_decay = (float)c.weight_decay;
    topt.schedule = c.schedule;
    topt.total_steps = total;
    topt.warmup_steps = c.warmup;
    topt.warmup_start_factor = 0.0f;
    topt.min_lr = (float)c.min_lr;
    if (cspresnet_trainer_create(model, &topt, &tr, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        goto done;
    }
    if (make_dir(c.out) != 0)
        goto done;
    char path[4200];
    if (c.resume) {
        if (cspresnet_trainer_load(tr, c.resume) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet train: %s\n", cspresnet_trainer_last_error(tr));
            goto done;
        }
        snprintf(path, sizeof path, "%s/log.csv", c.out);
        log_read(&lg, path, cspresnet_trainer_step_count(tr));
    }
    long step = cspresnet_trainer_step_count(tr);
    const cspresnet_config *cfg = cspresnet_model_config(cspresnet_trainer_model(tr));
    if (!quiet) {
        printf("training CSPResNet (channels %d,%d,%d,%d,%d; layers %d,%d,%d,%d) + linear head on "
               "Fashion-MNIST\n", cfg->channels[0], cfg->channels[1], cfg->channels[2], cfg->channels[3],
               cfg->channels[4], cfg->layers[0], cfg->layers[1], cfg->layers[2], cfg->layers[3]);
        printf("  %s; %d train / %d test images at %dx%d, batch %d, %ld steps/epoch, %ld steps in all\n",
               c.weights ? c.weights : "random init", train.count, test.count, c.size, c.size, batch, spe,
               total);
        printf("  %s lr %g, weight decay %g, %s schedule%s%s%s\n",
               c.optimizer == CSPRESNET_OPT_SGD ? "SGD momentum" : "AdamW",
               c.lr, c.weight_decay,
               c.schedule == CSPRESNET_SCHED_ONE_CYCLE ? "one-cycle"
               : c.schedule == CSPRESNET_SCHED_WARMUP_COSINE ? "warm-up + cosine" : "constant",
               c.freeze_stages >= 0 ? ", stem and early stages frozen" : "",
               c.freeze_bn ? ", BN frozen" : "", c.recompute ? ", recomputation" : "");
        if (c.resume)
            printf("  resumed from %s at step %ld\n", c.resume, step);
        fflush(stdout);
    }

    /* own progress line (progress.h draws counts only; this one adds loss and accuracy) */
    const int tty = !quiet && isatty(STDERR_FILENO), color = tty && getenv("NO_COLOR") == NULL;
    const double t0 = now_seconds();
    double train_s = 0.0, eval_s = 0.0, last_acc = -1.0;
    long images = 0, start_step = step;
    double ep_loss = 0.0;
    long ep_hits = 0, ep_seen = 0;
    long cur_epoch = -1;
    int saved_at_end = 0;
    long saved_step = -1; /* step of the checkpoint this run last wrote */
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    while (step < stop) {
        long epoch = step / spe, bi = step % spe;
        if (epoch != cur_epoch) {
            epoch_order(perm, train.count, c.seed, epoch);
            cur_epoch = epoch;
            ep_loss = 0.0;
            ep_hits = ep_seen = 0;
        }
        for (int i = 0; i < batch; i++) {
            int k = perm[bi * batch + i];
            fmnist_image(&train, k, c.size, x + i * img);
            labels[i] = train.labels[k];
        }
        float loss = 0.0f, lr = cspresnet_trainer_lr(tr);
        int hits = 0;
        double ts = now_seconds();
        cspresnet_status st = cspresnet_trainer_classify(tr, x, batch, c.size, c.size, labels, &loss, &hits);
        int in_update = st == CSPRESNET_OK;
        if (in_update)
            st = cspresnet_trainer_step(tr);
        if (st != CSPRESNET_OK) {
            if (tty)
                fputc('\n', stderr);
            fprintf(stderr, "cspresnet train: step %ld: %s\n", step + 1, cspresnet_trainer_last_error(tr));
            if (st == CSPRESNET_ERR_NOT_FINITE)
                report_divergence(&c, step + 1, in_update, step == 0 && !c.resume, saved_step);
            goto done;
        }
        train_s += now_seconds() - ts;
        step++;
        images += batch;
        ep_loss += loss;
        ep_hits += hits;
        ep_seen += batch;
        if (log_add(&lg, (log_row){step, (int)epoch + 1, lr, loss, (float)hits / batch}) != 0) {
            fprintf(stderr, "cspresnet train: out of memory for the log\n");
            goto done;
        }
        long in_epoch = bi + 1, seen_steps = ep_seen / batch;
        double rate = images / (now_seconds() - t0 - eval_s);
        double eta = (double)(stop - step) * batch / rate;
        char etas[32];
        fmt_eta(etas, sizeof etas, eta);
        if (tty) {
            int fill = (int)(30 * in_epoch / spe);
            char b[31];
            for (int i = 0; i < 30; i++)
                b[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
            b[30] = '\0';
            fprintf(stderr, "\repoch %ld %s[%s]%s %ld/%ld  loss %.4f  acc %.3f  %.0f img/s  ETA %s\033[K",
                    epoch + 1, color ? "\033[32m" : "", b, color ? "\033[0m" : "", in_epoch, spe,
                    ep_loss / seen_steps, (double)ep_hits / ep_seen, rate, etas);
            fflush(stderr);
        } else if (!quiet && (in_epoch % (spe >= 10 ? spe / 10 : 1) == 0 || in_epoch == spe || step == stop)) {
            printf("epoch %ld step %ld/%ld (total %ld/%ld)  loss %.4f  acc %.3f  lr %.5g  %.0f img/s  ETA %s\n",
                   epoch + 1, in_epoch, spe, step, total, ep_loss / seen_steps, (double)ep_hits / ep_seen,
                   lr, rate, etas);
            fflush(stdout);
        }
        int epoch_end = in_epoch == spe, last = step == stop;
        if (epoch_end || step == total) {
            double te = now_seconds();
            if (evaluate(&c, tr, &test, batch, x, logits, &last_acc) != 0)
                goto done;
            eval_s += now_seconds() - te;
            if (tty)
                fputc('\n', stderr);
            if (!quiet) {
                printf("epoch %ld: train loss %.4f, train accuracy %.4f, test accuracy %.4f (%d images)\n",
                       epoch + 1, ep_loss / seen_steps, (double)ep_hits / ep_seen, last_acc, test.count);
                fflush(stdout);
            }
        }
        if (epoch_end || last || stop_requested) {
            if (save_all(&c, tr, &lg) != 0)
                goto done;
            saved_at_end = last;
            saved_step = step;
        }
        if (stop_requested && !last) {
            if (tty)
                fputc('\n', stderr);
            fprintf(stderr, "cspresnet train: interrupted after step %ld; checkpoint saved in %s, "
                            "continue with --resume\n", step, c.out);
            rc = 130;
            goto done;
        }
    }
    if (!saved_at_end && save_all(&c, tr, &lg) != 0)
        goto done;
    if (last_acc < 0) {  /* resumed at the end, or stopped before the end of an epoch */
        double te = now_seconds();
        if (evaluate(&c, tr, &test, batch, x, logits, &last_acc) != 0)
            goto done;
        eval_s += now_seconds() - te;
    }
    if (!quiet) {
        double wall = now_seconds() - t0;
        size_t act = cspresnet_trainer_activation_bytes(tr);
        printf("\ndone: %ld steps this run (step %ld of %ld)%s\n", step - start_step, step, total,
               step < total ? "; continue with --resume" : "");
        printf("  test accuracy  %.4f (%d images)\n", last_acc, test.count);
        printf("  time           %.1f s (training %.1f s, evaluation %.1f s), %.1f images/s in training\n",
               wall, train_s, eval_s, train_s > 0 ? images / train_s : 0.0);
        printf("  memory         activations %.1f MiB", mib((double)act));
        if (c.recompute) {
            size_t other = other_mode_bytes(cspresnet_trainer_model(tr), &topt, x, batch, c.size, logits);
            printf(" with --recompute, %.1f MiB without", mib((double)other));
        }
        printf("; weights, gradients and optimizer state %.1f MiB; peak RSS %.1f MiB\n",
               mib((double)cspresnet_trainer_state_bytes(tr)), cli_peak_rss_mib());
        printf("  files          %s/checkpoint.ckpt (resumable), %s/model.pdparams, %s/model.safetensors,\n"
               "                 %s/head.weight.npy, %s/head.bias.npy, %s/log.csv\n",
               c.out, c.out, c.out, c.out, c.out, c.out);
    }
    rc = 0;
done:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(lg.rows);
    free(x);
    free(logits);
    free(perm);
    free(labels);
    fmnist_free(&train);
    fmnist_free(&test);
    cspresnet_trainer_free(tr);
    cspresnet_model_free(model);
    return rc;
}
