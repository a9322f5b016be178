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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fashion_mnist.h"
#include "progress.h"
#include "train.h"

/* Ctrl-C (SIGINT) or SIGTERM: finish the current step, write the checkpoint, stop.
 * A second signal kills at once; the last checkpoint on disk stays intact because
 * every file is written to a temporary name and renamed into place. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    stop_requested = 1;
    signal(sig, SIG_DFL);
}

/* A word that is no flag. */
static int positional(void *opts, const char *arg, const cli_command *cmd)
{
    (void)opts;
    if (strncmp(arg, "--", 2) == 0)
        return cli_unknown(cmd, arg);
    fprintf(stderr, "cspresnet train: unexpected argument '%s' (see --help)\n", arg);
    return -1;
}

static const char SYNOPSIS[] =
    "usage: cspresnet train (--weights FILE | --arch t|s|m|l|x) [--dataset fashion-mnist]\n"
    "                       [--epochs N | --steps N] [--out DIR] [options]\n"
    "\n"
    "Fine-tunes CSPResNet with a linear classification head (global average pool of the\n"
    "last stage, linear, softmax cross-entropy) on Fashion-MNIST, evaluating on the test\n"
    "split after every epoch and writing checkpoints in both weight formats.\n"
    "\n";

static const char NOTES[] =
    "A progress bar (step, loss, accuracy, images/s, ETA) is drawn on a terminal (no colour\n"
    "with NO_COLOR set); otherwise plain lines are printed about ten times per epoch.\n"
    "A loss, weight or running statistic that becomes NaN or infinite stops the run (exit 1):\n"
    "it diverged; no file is written from such a state, so the last checkpoint stays finite.\n"
    "Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted (Ctrl-C or SIGTERM:\n"
    "the current step finishes, the checkpoint is saved; continue with --resume).\n";

static const cli_choice DATASETS[] = {{"fashion-mnist", 0}, {"fashion_mnist", 0}, {NULL, 0}};
static const cli_choice OPTIMIZERS[] = {{"sgd", CSPRESNET_OPT_SGD}, {"adamw", CSPRESNET_OPT_ADAMW}, {NULL, 0}};
static const cli_choice SCHEDULES[] = {
    {"one-cycle", CSPRESNET_SCHED_ONE_CYCLE}, {"onecycle", CSPRESNET_SCHED_ONE_CYCLE},
    {"cosine", CSPRESNET_SCHED_WARMUP_COSINE}, {"constant", CSPRESNET_SCHED_CONSTANT}, {NULL, 0}};

#define CFG(field) offsetof(train_cfg, field)

static const cli_flag FLAGS[] = {
    CLI_HEADING("Model:"),
    {CLI_FLAG("--weights", NULL, "FILE", "start from .pdparams or .safetensors weights (the file decides\n"
                                         "the architecture); or --arch P and the architecture flags below:\n"
                                         "random init"),
     .parse = cli_str, .off = CFG(weights)},
    CLI_HEADING("Data:"),
    {CLI_FLAG("--dataset", NULL, "NAME", "fashion-mnist (the only one; default)"), .parse = cli_pick,
     .off = CFG(dataset), .choices = DATASETS, .bad = "unknown --dataset '%s' (fashion-mnist)"},
    {CLI_FLAG("--data-dir", NULL, "DIR", "the IDX .gz files (default " FMNIST_DEFAULT_DIR ")"), .parse = cli_str,
     .off = CFG(data_dir)},
    {CLI_FLAG("--size", NULL, "N", "input side, >= 28; the 28x28 picture is centred (default 32)"),
     .parse = cli_num_int, .off = CFG(size), .lo = FMNIST_SIDE, .hi = 4096},
    {CLI_FLAG("--batch", NULL, "N", "batch size (default 64; the last partial batch is dropped)"),
     .parse = cli_num_int, .off = CFG(batch), .lo = 1, .hi = 65536},
    {CLI_FLAG("--limit-train", NULL, "N", "use the first N training images (default all 60000)"),
     .parse = cli_num_int, .off = CFG(limit_train), .lo = 1, .hi = 1e7},
    {CLI_FLAG("--limit-test", NULL, "N", "evaluate on the first N test images (default all 10000)"),
     .parse = cli_num_int, .off = CFG(limit_test), .lo = 1, .hi = 1e7},
    CLI_HEADING("Schedule:"),
    {CLI_FLAG("--epochs", NULL, "N", "epochs (default 3)"), .parse = cli_num_int, .off = CFG(epochs), .lo = 1,
     .hi = 100000},
    {CLI_FLAG("--steps", NULL, "N", "total optimizer steps instead of whole epochs"), .parse = cli_num_long,
     .off = CFG(steps), .lo = 1, .hi = 1e9},
    {CLI_FLAG("--stop-after", NULL, "N", "stop after step N (checkpoint written), the schedule unchanged;\n"
                                         "continue later with --resume"),
     .parse = cli_num_long, .off = CFG(stop_after), .lo = 1, .hi = 1e9},
    {CLI_FLAG("--optimizer", NULL, "sgd|adamw", "sgd (default): momentum as Paddle's Momentum, L2 decay on\n"
                                                "all but BN weight/bias; adamw: decoupled decay"),
     .parse = cli_pick, .off = CFG(optimizer), .choices = OPTIMIZERS, .bad = "unknown --optimizer '%s' (sgd, adamw)"},
    {CLI_FLAG("--lr", NULL, "X", "peak learning rate (default 0.05 sgd, 0.001 adamw)"), .parse = cli_num,
     .off = CFG(lr), .lo = 0, .hi = 100},
    {CLI_FLAG("--momentum", NULL, "X", "SGD momentum (default 0.9)"), .parse = cli_num, .off = CFG(momentum),
     .lo = 0, .hi = 1},
    {CLI_FLAG("--weight-decay", NULL, "X", "default 5e-4 (sgd), 0.01 (adamw)"), .parse = cli_num,
     .off = CFG(weight_decay), .lo = 0, .hi = 10},
    {CLI_FLAG("--schedule", NULL, "S", "one-cycle (default; PyTorch OneCycleLR, cos, momentum fixed),\n"
                                       "cosine (linear warm-up from 0, then cosine decay), constant"),
     .parse = cli_pick, .off = CFG(schedule), .choices = SCHEDULES,
     .bad = "unknown --schedule '%s' (one-cycle, cosine, constant)"},
    {CLI_FLAG("--warmup", NULL, "N", "warm-up steps for cosine (default 0)"), .parse = cli_num_long,
     .off = CFG(warmup), .lo = 0, .hi = 1e9},
    {CLI_FLAG("--min-lr", NULL, "X", "cosine floor (default 0)"), .parse = cli_num, .off = CFG(min_lr), .lo = 0,
     .hi = 100},
    CLI_HEADING("Memory and freezing:"),
    {CLI_FLAG("--freeze-stages", NULL, "K", "freeze the stem and stages 0..K-1 (no updates, BN statistics fixed)"),
     .parse = cli_num_int, .off = CFG(freeze_stages), .lo = 0, .hi = CSPRESNET_NUM_STAGES},
    {CLI_FLAG("--freeze-bn", NULL, NULL, "BN everywhere in eval mode: running statistics used and kept"),
     .parse = cli_set, .off = CFG(freeze_bn), .lo = 1},
    {CLI_FLAG("--recompute", NULL, NULL, "per-stage recomputation (upstream's use_checkpoint); the report\n"
                                         "shows the activation memory with and without it"),
     .parse = cli_set, .off = CFG(recompute), .lo = 1},
    CLI_HEADING("Run:"),
    {CLI_FLAG("--out", NULL, "DIR", "output folder (default train-out)"), .parse = cli_str, .off = CFG(out)},
    {CLI_FLAG("--resume", NULL, "FILE", "continue from DIR/checkpoint.ckpt; give the same flags as the run\n"
                                        "that wrote it (the data order follows from --seed and the step)"),
     .parse = cli_str, .off = CFG(resume)},
    {CLI_FLAG("--seed", NULL, "N", "head init, random init and data order (default 1)"), .parse = cli_num_u64,
     .off = CFG(seed), .lo = 0, .hi = 9.007199254740992e15},
    {CLI_FLAG("--threads", NULL, "N", "worker threads (default and most: the online CPUs)"),
     .parse = cli_threads_flag, .off = CFG(cf)},
    {CLI_FLAG("--quiet", "-q", NULL, "nothing on stdout on success"), .parse = cli_quiet, .off = CFG(cf), .lo = 1},
    {CLI_FLAG("--verbose", "-v", NULL, "also the weight file's load notes"), .parse = cli_quiet, .off = CFG(cf)},
    CLI_HEADING("Architecture (--arch for a random init; with --weights, checks on the file):"),
    CLI_GROUP(ARCH_FLAGS, CFG(af)),
    CLI_END,
};

static const cli_command TRAIN = {
    .name = "train", .synopsis = SYNOPSIS, .notes = NOTES, .flags = FLAGS, .positional = positional,
    .hint = "see --help"};

/* The flags and their defaults; 0, or the exit status (0 after --help). */
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
    c->lr = c->weight_decay = -1;
    common_flags_init(&c->cf);
    arch_flags_init(&c->af);
    int r = cli_parse(&TRAIN, c, argc, argv);
    if (r != CLI_PARSED)
        return r == 0 ? -1 : r;
    if (!c->weights && !arch_flags_fix_architecture(&c->af)) {
        fprintf(stderr, "cspresnet train: give --weights FILE or --arch t|s|m|l|x (see --help)\n");
        return EXIT_USAGE;
    }
    if (c->lr < 0)
        c->lr = c->optimizer == CSPRESNET_OPT_ADAMW ? 1e-3 : 0.05;
    if (c->weight_decay < 0)
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

/* Everything one run holds, from the model to the progress of the current epoch. */
typedef struct train_run {
    const train_cfg *c;
    cspresnet_model *model;
    cspresnet_trainer *tr;
    cspresnet_train_options topt;
    fmnist_split train, test;
    float *x, *logits;
    int *perm, *labels;
    run_log lg;
    int batch;
    long spe, total, stop, img;  /* steps per epoch, in all, where this run stops; floats per image */
    int tty, color;              /* the progress line on stderr, coloured */
    double t0, train_s, eval_s, last_acc;
    long step, start_step, images;
    double ep_loss;              /* the current epoch's sums */
    long ep_hits, ep_seen, cur_epoch;
    int saved_at_end;
    long saved_step;             /* step of the checkpoint this run last wrote, -1 none */
} train_run;

/* The starting model: the file's (a check of the architecture flags), or random. */
static int train_model(train_run *r)
{
    const train_cfg *c = r->c;
    char err[1024], log[512] = "";
    cspresnet_config expect;
    cspresnet_load_options lopt;
    if (arch_flags_load_options(&c->af, &lopt, &expect, "train") != 0)
        return EXIT_USAGE;
    lopt.log = log;
    lopt.log_size = sizeof log;
    if (c->weights) {
        if (cli_load_weights(c->weights, &lopt, &r->model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet train: %s\n", err);
            return 1;
        }
        if (c->cf.verbose && log[0])
            fprintf(stderr, "%s\n", log);
    } else if (cspresnet_model_create(&expect, c->seed, &r->model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return 1;
    }
    return 0;
}

/* The data, the batch buffers, the trainer (resumed with --resume) and the out folder. */
static int train_setup(train_run *r)
{
    const train_cfg *c = r->c;
    char err[1024];
    if (fmnist_load(c->data_dir, "train", c->limit_train, &r->train, err, sizeof err) != 0 ||
        fmnist_load(c->data_dir, "t10k", c->limit_test, &r->test, err, sizeof err) != 0) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    r->batch = c->batch < r->train.count ? c->batch : r->train.count;
    r->spe = r->train.count / r->batch;
    r->total = c->steps > 0 ? c->steps : r->spe * c->epochs;
    r->stop = c->stop_after > 0 && c->stop_after < r->total ? c->stop_after : r->total;
    r->img = 3L * c->size * c->size;
    r->x = malloc((size_t)r->batch * r->img * sizeof(float));
    r->logits = malloc((size_t)r->batch * FMNIST_CLASSES * sizeof(float));
    r->perm = malloc((size_t)r->train.count * sizeof(int));
    r->labels = malloc((size_t)r->batch * sizeof(int));
    if (!r->x || !r->logits || !r->perm || !r->labels) {
        fprintf(stderr, "cspresnet train: out of memory for a batch of %d\n", r->batch);
        return -1;
    }
    cspresnet_train_options *t = &r->topt;
    cspresnet_train_options_init(t);
    t->threads = c->cf.threads;
    t->num_classes = FMNIST_CLASSES;
    t->head_seed = c->seed;
    t->train_bn = !c->freeze_bn;
    t->freeze = c->freeze_stages;
    t->recompute = c->recompute;
    t->optimizer = (cspresnet_optimizer)c->optimizer;
    t->lr = (float)c->lr;
    t->momentum = (float)c->momentum;
    t->weight_decay = (float)c->weight_decay;
    t->schedule = (cspresnet_schedule)c->schedule;
    t->total_steps = r->total;
    t->warmup_steps = c->warmup;
    t->warmup_start_factor = 0.0f;
    t->min_lr = (float)c->min_lr;
    t->isa = cli_isa();
    if (cspresnet_trainer_create(r->model, t, &r->tr, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet train: %s\n", err);
        return -1;
    }
    if (cli_make_dir(c->out) != 0) {
        fprintf(stderr, "cspresnet train: cannot create %s: %s\n", c->out, strerror(errno));
        return -1;
    }
    if (c->resume) {
        char path[4200];
        if (cspresnet_trainer_load(r->tr, c->resume) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet train: %s\n", cspresnet_trainer_last_error(r->tr));
            return -1;
        }
        snprintf(path, sizeof path, "%s/log.csv", c->out);
        log_read(&r->lg, path, cspresnet_trainer_step_count(r->tr));
    }
    r->step = r->start_step = cspresnet_trainer_step_count(r->tr);
    return 0;
}

static void print_plan(const train_run *r)
{
    const train_cfg *c = r->c;
    const cspresnet_config *cfg = cspresnet_model_config(cspresnet_trainer_model(r->tr));
    printf("training CSPResNet (channels %d,%d,%d,%d,%d; layers %d,%d,%d,%d) + linear head on "
           "Fashion-MNIST\n", cfg->channels[0], cfg->channels[1], cfg->channels[2], cfg->channels[3],
           cfg->channels[4], cfg->layers[0], cfg->layers[1], cfg->layers[2], cfg->layers[3]);
    printf("  %s; %d train / %d test images at %dx%d, batch %d, %ld steps/epoch, %ld steps in all\n",
           c->weights ? c->weights : "random init", r->train.count, r->test.count, c->size, c->size, r->batch,
           r->spe, r->total);
    printf("  %s lr %g, weight decay %g, %s schedule%s%s%s\n",
           c->optimizer == CSPRESNET_OPT_SGD ? "SGD momentum" : "AdamW",
           c->lr, c->weight_decay,
           c->schedule == CSPRESNET_SCHED_ONE_CYCLE ? "one-cycle"
           : c->schedule == CSPRESNET_SCHED_WARMUP_COSINE ? "warm-up + cosine" : "constant",
           c->freeze_stages >= 0 ? ", stem and early stages frozen" : "",
           c->freeze_bn ? ", BN frozen" : "", c->recompute ? ", recomputation" : "");
    if (c->resume)
        printf("  resumed from %s at step %ld\n", c->resume, r->step);
    fflush(stdout);
}

/* The progress line after a step: a bar on a terminal, else plain lines about ten
 * times per epoch (own line: progress.h draws counts only, this adds loss and accuracy). */
static void print_progress(const train_run *r, long epoch, long in_epoch, float lr)
{
    long seen_steps = r->ep_seen / r->batch;
    double rate = r->images / (now_seconds() - r->t0 - r->eval_s);
    double eta = (double)(r->stop - r->step) * r->batch / rate;
    char etas[32];
    fmt_eta(etas, sizeof etas, eta);
    if (r->tty) {
        int fill = (int)(30 * in_epoch / r->spe);
        char b[31];
        for (int i = 0; i < 30; i++)
            b[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        b[30] = '\0';
        fprintf(stderr, "\repoch %ld %s[%s]%s %ld/%ld  loss %.4f  acc %.3f  %.0f img/s  ETA %s\033[K",
                epoch + 1, r->color ? "\033[32m" : "", b, r->color ? "\033[0m" : "", in_epoch, r->spe,
                r->ep_loss / seen_steps, (double)r->ep_hits / r->ep_seen, rate, etas);
        fflush(stderr);
    } else if (!r->c->cf.quiet &&
               (in_epoch % (r->spe >= 10 ? r->spe / 10 : 1) == 0 || in_epoch == r->spe || r->step == r->stop)) {
        printf("epoch %ld step %ld/%ld (total %ld/%ld)  loss %.4f  acc %.3f  lr %.5g  %.0f img/s  ETA %s\n",
               epoch + 1, in_epoch, r->spe, r->step, r->total, r->ep_loss / seen_steps,
               (double)r->ep_hits / r->ep_seen, lr, rate, etas);
        fflush(stdout);
    }
}

/* The test accuracy, timed apart from training. */
static int train_evaluate(train_run *r)
{
    double te = now_seconds();
    if (evaluate(r->c, r->tr, &r->test, r->batch, r->x, r->logits, &r->last_acc) != 0)
        return -1;
    r->eval_s += now_seconds() - te;
    return 0;
}

/* One optimizer step with its log row, progress, evaluation at the end of an epoch and
 * checkpoint. Returns 0 to go on, 1 on failure, 130 after a stop signal. */
static int train_step(train_run *r)
{
    const train_cfg *c = r->c;
    long epoch = r->step / r->spe, bi = r->step % r->spe;
    if (epoch != r->cur_epoch) {
        epoch_order(r->perm, r->train.count, c->seed, epoch);
        r->cur_epoch = epoch;
        r->ep_loss = 0.0;
        r->ep_hits = r->ep_seen = 0;
    }
    for (int i = 0; i < r->batch; i++) {
        int k = r->perm[bi * r->batch + i];
        fmnist_image(&r->train, k, c->size, r->x + i * r->img);
        r->labels[i] = r->train.labels[k];
    }
    float loss = 0.0f, lr = cspresnet_trainer_lr(r->tr);
    int hits = 0;
    double ts = now_seconds();
    cspresnet_status st = cspresnet_trainer_classify(r->tr, r->x, r->batch, c->size, c->size, r->labels, &loss, &hits);
    int in_update = st == CSPRESNET_OK;
    if (in_update)
        st = cspresnet_trainer_step(r->tr);
    if (st != CSPRESNET_OK) {
        if (r->tty)
            fputc('\n', stderr);
        fprintf(stderr, "cspresnet train: step %ld: %s\n", r->step + 1, cspresnet_trainer_last_error(r->tr));
        if (st == CSPRESNET_ERR_NOT_FINITE)
            train_report_divergence(c, r->step + 1, in_update, r->step == 0 && !c->resume, r->saved_step);
        return 1;
    }
    r->train_s += now_seconds() - ts;
    r->step++;
    r->images += r->batch;
    r->ep_loss += loss;
    r->ep_hits += hits;
    r->ep_seen += r->batch;
    if (log_add(&r->lg, (log_row){r->step, (int)epoch + 1, lr, loss, (float)hits / r->batch}) != 0) {
        fprintf(stderr, "cspresnet train: out of memory for the log\n");
        return 1;
    }
    long in_epoch = bi + 1;
    print_progress(r, epoch, in_epoch, lr);
    int epoch_end = in_epoch == r->spe, last = r->step == r->stop;
    if (epoch_end || r->step == r->total) {
        if (train_evaluate(r) != 0)
            return 1;
        if (r->tty)
            fputc('\n', stderr);
        if (!c->cf.quiet) {
            printf("epoch %ld: train loss %.4f, train accuracy %.4f, test accuracy %.4f (%d images)\n", epoch + 1,
                   r->ep_loss / (r->ep_seen / r->batch), (double)r->ep_hits / r->ep_seen, r->last_acc,
                   r->test.count);
            fflush(stdout);
        }
    }
    if (epoch_end || last || stop_requested) {
        if (train_save_all(c, r->tr, &r->lg) != 0)
            return 1;
        r->saved_at_end = last;
        r->saved_step = r->step;
    }
    if (stop_requested && !last) {
        if (r->tty)
            fputc('\n', stderr);
        fprintf(stderr, "cspresnet train: interrupted after step %ld; checkpoint saved in %s, "
                        "continue with --resume\n", r->step, c->out);
        return 130;
    }
    return 0;
}

/* The closing report: accuracy, time, memory and files. */
static void print_done(const train_run *r)
{
    const train_cfg *c = r->c;
    double wall = now_seconds() - r->t0;
    size_t act = cspresnet_trainer_activation_bytes(r->tr);
    printf("\ndone: %ld steps this run (step %ld of %ld)%s\n", r->step - r->start_step, r->step, r->total,
           r->step < r->total ? "; continue with --resume" : "");
    printf("  test accuracy  %.4f (%d images)\n", r->last_acc, r->test.count);
    printf("  time           %.1f s (training %.1f s, evaluation %.1f s), %.1f images/s in training\n",
           wall, r->train_s, r->eval_s, r->train_s > 0 ? r->images / r->train_s : 0.0);
    printf("  memory         activations %.1f MiB", mib((double)act));
    if (c->recompute) {
        size_t other = other_mode_bytes(cspresnet_trainer_model(r->tr), &r->topt, r->x, r->batch, c->size, r->logits);
        printf(" with --recompute, %.1f MiB without", mib((double)other));
    }
    printf("; weights, gradients and optimizer state %.1f MiB; peak RSS %.1f MiB\n",
           mib((double)cspresnet_trainer_state_bytes(r->tr)), cli_peak_rss_mib());
    printf("  files          %s/checkpoint.ckpt (resumable), %s/model.pdparams, %s/model.safetensors,\n"
           "                 %s/head.weight.npy, %s/head.bias.npy, %s/log.csv\n",
           c->out, c->out, c->out, c->out, c->out, c->out);
}

/* The steps up to --stop-after or the end, then the last checkpoint and the report. */
static int train_loop(train_run *r)
{
    r->tty = !r->c->cf.quiet && isatty(STDERR_FILENO);
    r->color = r->tty && getenv("NO_COLOR") == NULL;
    r->t0 = now_seconds();
    r->last_acc = -1.0;
    r->cur_epoch = -1;
    r->saved_step = -1;
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    while (r->step < r->stop) {
        int rc = train_step(r);
        if (rc != 0)
            return rc;
    }
    if (!r->saved_at_end && train_save_all(r->c, r->tr, &r->lg) != 0)
        return 1;
    if (r->last_acc < 0 && train_evaluate(r) != 0) /* resumed at the end, or stopped before an epoch's end */
        return 1;
    if (!r->c->cf.quiet)
        print_done(r);
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_cfg c;
    int pr = parse_args(&c, argc, argv);
    if (pr != 0)
        return pr < 0 ? 0 : pr;
    train_run r = {.c = &c};
    int rc = train_model(&r);
    if (rc == 0 && (rc = train_setup(&r) != 0 ? 1 : 0) == 0) {
        if (!c.cf.quiet)
            print_plan(&r);
        rc = train_loop(&r);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(r.lg.rows);
    free(r.x);
    free(r.logits);
    free(r.perm);
    free(r.labels);
    fmnist_free(&r.train);
    fmnist_free(&r.test);
    cspresnet_trainer_free(r.tr);
    cspresnet_model_free(r.model);
    return rc;
}
