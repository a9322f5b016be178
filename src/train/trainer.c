/*
 * trainer.c - the public training API: a trainer owns a copy of the weights, their
 * gradients (one buffer with the weights' layout), the optimizer state, the training
 * graph's activations and a pool of threads.
 *
 * Forward runs the model's graph planned in train mode (graph/plan.c) segment by
 * segment; BN takes batch statistics unless BN is frozen (train_bn = 0 or a frozen
 * segment). Backward zeroes the gradients that no node writes first (the weights',
 * the returned stage outputs'; graph_plan_grad_writers), seeds the returned stage
 * outputs with the caller's gradients and walks the segments from the last one down, each segment's
 * nodes in reverse; with recomputation a segment's forward is re-run first (running
 * statistics untouched). Frozen segments stop the walk. Memory is planned per input
 * shape; nothing is allocated per step.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "train/train.h"

struct cspresnet_trainer {
    cspresnet_train_options opt;
    cspresnet_model *model;     /* own copy of the weights (and running statistics) */
    threadpool *pool;
    const kernel_set *kernels;
    const f32_train_config *tk;     /* point-wise training kernels of that set */
    float *grads, *opt_m, *opt_v;          /* weight_floats each (opt_v: AdamW only) */
    int classes, head_c;
    float *head, *head_grad, *head_m, *head_v;  /* K*C weight then K bias */
    long step;
    int first_trainable;        /* segments below it are frozen */
    int active_end;             /* backward walks segments active_end-1 .. first_trainable */
    int *param_seg;             /* per parameter: the segment of the node reading it */
    unsigned char *grad_wanted; /* per tensor, for the backward in progress */
    int stage_out[CSPRESNET_NUM_STAGES];   /* the named stage outputs */
    /* plan */
    int pn, ph, pw;
    graph_plan plan;
    float *block;
    long state_floats;
    int have_forward, forward_train;
    error_buf err;
};

void cspresnet_train_options_init(cspresnet_train_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->train_bn = 1;
    opt->freeze = -1;
    opt->optimizer = CSPRESNET_OPT_SGD;
    opt->lr = 0.01f;
    opt->momentum = 0.9f;
    opt->weight_decay = 5e-4f;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->eps = 1e-8f;
    opt->schedule = CSPRESNET_SCHED_CONSTANT;
    opt->pct_start = 0.3f;
    opt->div_factor = 25.0f;
    opt->final_div_factor = 1e4f;
}

void cspresnet_trainer_free(cspresnet_trainer *tr)
{
    if (!tr)
        return;
    threadpool_free(tr->pool);
    graph_plan_free(&tr->plan);
    free(tr->param_seg);
    free(tr->grad_wanted);
    cspresnet_model_free(tr->model);
    free(tr->grads);
    free(tr->opt_m);
    free(tr->opt_v);
    free(tr->head);
    free(tr->block);
    free(tr);
}

const char *cspresnet_trainer_last_error(const cspresnet_trainer *tr)
{
    return tr ? tr->err.text : "";
}

/* Which segment each parameter belongs to (the optimizer skips frozen ones), the
 * named stage outputs and the per-tensor gradient flags. */
static cspresnet_status trainer_graph_info(cspresnet_trainer *tr, error_buf *e)
{
    const graph *g = &tr->model->g;
    tr->param_seg = malloc(sizeof(int) * (tr->model->n_params ? tr->model->n_params : 1));
    tr->grad_wanted = calloc((size_t)g->n_tensors, 1);
    if (!tr->param_seg || !tr->grad_wanted)
        return error_set(e, CSPRESNET_ERR_MEMORY, "out of memory creating a trainer");
    for (size_t i = 0; i < tr->model->n_params; i++)
        tr->param_seg[i] = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < GN_MAX_PARAM; j++)
            if (g->nodes[i].param[j] >= 0)
                tr->param_seg[g->nodes[i].param[j]] = g->nodes[i].seg;
    for (int s = 0; s < CSPRESNET_NUM_STAGES; s++) {
        char name[24];
        snprintf(name, sizeof name, "stage%d", s);
        tr->stage_out[s] = graph_find_named(g, name);
        if (tr->stage_out[s] < 0)
            return error_set(e, CSPRESNET_ERR_CONFIG, "training: the graph has no output %s", name);
    }
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_trainer_create(const cspresnet_model *model,
                                          const cspresnet_train_options *opt,
                                          cspresnet_trainer **out, char *err, size_t err_size)
{
    error_buf e;
    cspresnet_status s = CSPRESNET_OK;
    if (!model || !opt || !out) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_trainer_create: model, opt and out must not be NULL");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    *out = NULL;
    if (opt->freeze < -1 || opt->freeze > CSPRESNET_NUM_STAGES || opt->num_classes < 0 ||
        !(opt->lr >= 0.0f) || opt->total_steps < 0 || opt->warmup_steps < 0 ||
        (opt->schedule != CSPRESNET_SCHED_CONSTANT && opt->total_steps < 1) ||
        (opt->schedule == CSPRESNET_SCHED_ONE_CYCLE &&
         !(opt->pct_start > 0.0f && opt->pct_start < 1.0f && opt->div_factor > 0.0f &&
           opt->final_div_factor > 0.0f))) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT,
                  "training options: freeze must be -1..4, num_classes >= 0, lr >= 0, and a "
                  "schedule needs total_steps >= 1 (one-cycle: 0 < pct_start < 1, positive divisors)");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    cspresnet_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory creating a trainer");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    tr->opt = *opt;
    int threads = opt->threads > 0 ? opt->threads : threadpool_default_size();
    tr->kernels = kernel_set_select(opt->isa);
    tr->tk = tr->kernels->train;
    tr->opt.isa = tr->kernels->isa;   /* the caller's string is not kept */
    if (model->deployed)
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "a deployed model cannot be trained (BN folded); train the BN form");
    if (s == CSPRESNET_OK && model->det)
        s = error_set(&e, CSPRESNET_ERR_UNSUPPORTED, "training a detector is not supported yet");
    if (s == CSPRESNET_OK)
        s = model_build(&model->cfg, 0, &tr->model, &e);
    if (s == CSPRESNET_OK) {
        for (size_t i = 0; i < model->n_params; i++)
            memcpy(param_at(tr->model->weights, &tr->model->params[i]), param_at(model->weights, &model->params[i]),
                   (size_t)model->params[i].numel * sizeof(float));
        s = trainer_graph_info(tr, &e);
    }
    if (s == CSPRESNET_OK)
        s = threadpool_create(threads, &tr->pool, &e);
    long W = s == CSPRESNET_OK ? tr->model->weight_floats : 0;
    if (s == CSPRESNET_OK) {
        tr->grads = calloc((size_t)W, sizeof(float));
        tr->opt_m = calloc((size_t)W, sizeof(float));
        tr->opt_v = opt->optimizer == CSPRESNET_OPT_ADAMW ? calloc((size_t)W, sizeof(float)) : NULL;
        if (!tr->grads || !tr->opt_m || (opt->optimizer == CSPRESNET_OPT_ADAMW && !tr->opt_v))
            s = error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory for gradients and optimizer state");
    }
    if (s == CSPRESNET_OK && opt->num_classes > 0) {
        tr->classes = opt->num_classes;
        tr->head_c = tr->model->cfg.channels[CSPRESNET_NUM_STAGES];
        long hf = (long)tr->classes * tr->head_c + tr->classes;
        tr->head = calloc((size_t)hf * 4, sizeof(float));
        if (!tr->head)
            s = error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory for the head");
        else {
            tr->head_grad = tr->head + hf;
            tr->head_m = tr->head + 2 * hf;
            tr->head_v = tr->head + 3 * hf;
            uint64_t st = opt->head_seed;
            float bound = 1.0f / sqrtf((float)tr->head_c);
            for (long i = 0; i < (long)tr->classes * tr->head_c; i++)
                tr->head[i] = bound * (2.0f * (float)((splitmix64(&st) >> 40) / 16777216.0) - 1.0f);
        }
    }
    if (s != CSPRESNET_OK) {
        cspresnet_trainer_free(tr);
        error_copy_out(&e, err, err_size);
        return s;
    }
    tr->first_trainable = opt->freeze < 0 ? 0 : opt->freeze + 1;
    const cspresnet_config *cfg = &tr->model->cfg;
    int last = cfg->return_idx[cfg->num_return - 1];
    tr->active_end = (tr->classes > 0 ? CSPRESNET_NUM_STAGES - 1 : last) + 2;  /* stem = segment 0 */
    tr->state_floats = W * (opt->optimizer == CSPRESNET_OPT_ADAMW ? 4 : 3);
    *out = tr;
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- planning */

/* The head's region: feat (N*C) and logits (N*K) floats, then N*K doubles of loss
 * gradient. */
static long head_floats(const cspresnet_trainer *tr, int n)
{
    return tr->classes > 0 ? (long)n * (tr->head_c + tr->classes) + 2L * n * tr->classes + 2 : 0;
}

static cspresnet_status plan(cspresnet_trainer *tr, int n, int h, int w)
{
    free(tr->block);
    tr->block = NULL;
    graph_plan_free(&tr->plan);
    tr->pn = tr->ph = tr->pw = 0;
    /* Training runs the GEMM convs but never Winograd: its rounding, amplified by
     * train-mode BN's gradient through the batch statistics, breaks the 1e-4 agreement
     * with autograd, while the GEMM path rounds like the reference im2col GEMM. */
    plan_env env = {GRAPH_TRAIN, tr->kernels, threadpool_size(tr->pool), 0, CSPRESNET_PRECISION_FP32, NULL};
    tshape input = {n, MODEL_INPUT_CHANNELS, h, w};
    cspresnet_status s = graph_plan_make(&tr->model->g, &env, &input, tr->opt.recompute, head_floats(tr, n),
                                         &tr->plan, &tr->err);
    if (s != CSPRESNET_OK)
        return s;
    graph_plan_grad_writers(&tr->model->g, &tr->plan, tr->active_end);
    double bytes = (double)tr->plan.block_floats * sizeof(float);
    if (bytes <= (double)((size_t)1 << 46))
        tr->block = aligned_alloc(64, ((size_t)tr->plan.block_floats * sizeof(float) + 63) & ~(size_t)63);
    if (!tr->block) {
        graph_plan_free(&tr->plan);
        return error_set(&tr->err, CSPRESNET_ERR_MEMORY,
                         "out of memory: training on %dx3x%dx%d needs %.1f MiB of activations",
                         n, h, w, bytes / (1024.0 * 1024.0));
    }
    tr->pn = n;
    tr->ph = h;
    tr->pw = w;
    tr->have_forward = 0;
    return CSPRESNET_OK;
}

size_t cspresnet_trainer_activation_bytes(const cspresnet_trainer *tr)
{
    return tr ? (size_t)tr->plan.block_floats * sizeof(float) : 0;
}

size_t cspresnet_trainer_state_bytes(const cspresnet_trainer *tr)
{
    if (!tr)
        return 0;
    long head = tr->classes > 0 ? 4L * ((long)tr->classes * tr->head_c + tr->classes) : 0;
    return (size_t)(tr->state_floats + head) * sizeof(float);
}

/* ---------------------------------------------------------------- running */

static graph_runner runner(cspresnet_trainer *tr)
{
    graph_runner r = {&tr->model->g, &tr->plan, tr->block, tr->model->params, tr->model->weights, tr->grads,
                      NULL, {.pool = tr->pool, .kernels = tr->kernels}, tr->tk, NULL, NULL, NULL, NULL, NULL};
    return r;
}

static tensor4 tview(cspresnet_trainer *tr, int t, int grad)
{
    graph_runner r = runner(tr);
    return graph_view(&r, t, grad);
}

static int seg_frozen(const cspresnet_trainer *tr, int seg)
{
    return seg < tr->first_trainable;
}

static int bn_uses_batch(const cspresnet_trainer *tr, int seg)
{
    return tr->forward_train && tr->opt.train_bn && !seg_frozen(tr, seg);
}

static void forward_segment(cspresnet_trainer *tr, int seg, int update_running)
{
    graph_runner r = runner(tr);
    const int batch = bn_uses_batch(tr, seg);
    graph_forward(&r, tr->plan.seg_first[seg], tr->plan.seg_end[seg], batch, batch && update_running);
}

static cspresnet_status check_input(cspresnet_trainer *tr, const float *input, int n, int h, int w)
{
    if (!input)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT, "input must not be NULL");
    if (n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT,
                         "input shape %dx3x%dx%d: batch, height and width must be in 1..65536", n, h, w);
    if (n != tr->pn || h != tr->ph || w != tr->pw) {
        cspresnet_status s = plan(tr, n, h, w);
        if (s != CSPRESNET_OK)
            return s;
    }
    memcpy(tr->block + tr->plan.t[0].off, input, (size_t)n * 3 * h * w * sizeof(float));
    return CSPRESNET_OK;
}

static cspresnet_status run_forward(cspresnet_trainer *tr, const float *input, int n, int h,
                                    int w, int train)
{
    cspresnet_status s = check_input(tr, input, n, h, w);
    if (s != CSPRESNET_OK)
        return s;
    tr->forward_train = train;
    /* every stage runs, as upstream's forward does (its BN statistics update even when
     * the stage is not returned); backward starts at the last stage that matters */
    for (int seg = 0; seg < tr->model->g.n_segments; seg++)
        forward_segment(tr, seg, train);
    tr->have_forward = train;
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_trainer_forward(cspresnet_trainer *tr, const float *input, int n,
                                           int h, int w,
                                           cspresnet_output outs[CSPRESNET_MAX_OUTPUTS],
                                           int *n_out)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    if (!outs || !n_out)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT, "outs and n_out must not be NULL");
    cspresnet_status s = run_forward(tr, input, n, h, w, 1);
    if (s != CSPRESNET_OK)
        return s;
    const graph *g = &tr->model->g;
    for (int r = 0; r < g->n_outputs; r++) {
        tensor4 v = tview(tr, g->outputs[r], 0);
        outs[r] = (cspresnet_output){g->output_tag[r], g->output_stride[r], v.n, v.c, v.h, v.w, v.data};
    }
    *n_out = g->n_outputs;
    tr->err.text[0] = '\0';
    return CSPRESNET_OK;
}

typedef struct zero_job {
    float *p;
    long n;
} zero_job;

static void zero_worker(void *arg, int t, int nt)
{
    const zero_job *job = arg;
    long begin, end;
    split_range((job->n + 15) / 16, t, nt, &begin, &end);
    begin *= 16;
    end = end * 16 < job->n ? end * 16 : job->n;
    if (end > begin)
        memset(job->p + begin, 0, (size_t)(end - begin) * sizeof(float));
}

/* memset on every thread: at 224x224 the gradient regions are hundreds of MB a step */
static void parallel_zero(cspresnet_trainer *tr, float *p, long n)
{
    zero_job job = {p, n};
    threadpool_run(tr->pool, zero_worker, &job);
}

static void zero_grads(cspresnet_trainer *tr)
{
    parallel_zero(tr, tr->grads, tr->model->weight_floats);
    for (int t = 0; t < tr->model->g.n_tensors; t++)
        if (tr->plan.t[t].boundary && tr->plan.t[t].grad_writer < 0)
            parallel_zero(tr, tr->block + tr->plan.t[t].goff, (tshape_numel(&tr->plan.t[t].s) + 15) & ~15L);
}

/* Backward with the stage-output gradients already in place (seeded by the caller). */
static void run_backward(cspresnet_trainer *tr, float *d_input)
{
    const graph *g = &tr->model->g;
    int want_input = d_input != NULL && tr->first_trainable == 0;
    for (int t = 0; t < g->n_tensors; t++)
        tr->grad_wanted[t] = t == 0 ? want_input : !seg_frozen(tr, g->tensors[t].seg);
    graph_runner r = runner(tr);
    const int last = tr->active_end - 1;
    for (int seg = last; seg >= tr->first_trainable; seg--) {
        if (tr->opt.recompute && seg != g->n_segments - 1)
            forward_segment(tr, seg, 0);
        if (tr->plan.seg_zero[seg])
            parallel_zero(tr, tr->block + tr->plan.inner_grad_off, tr->plan.seg_size[seg]);
        graph_backward(&r, tr->plan.seg_first[seg], tr->plan.seg_end[seg], bn_uses_batch(tr, seg),
                       tr->grad_wanted);
    }
    if (d_input) {
        tensor4 v = tview(tr, 0, 1);
        if (want_input)
            memcpy(d_input, v.data, (size_t)v.n * v.c * v.h * v.w * sizeof(float));
        else
            memset(d_input, 0, (size_t)v.n * v.c * v.h * v.w * sizeof(float));
    }
}

cspresnet_status cspresnet_trainer_backward(cspresnet_trainer *tr,
                                            const float *const dout[CSPRESNET_MAX_OUTPUTS],
                                            float *d_input)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    if (!tr->have_forward)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_trainer_backward: no train-mode forward to differentiate");
    zero_grads(tr);
    const graph *g = &tr->model->g;
    for (int r = 0; r < g->n_outputs && dout; r++) {
        if (!dout[r])
            continue;
        tensor4 v = tview(tr, g->outputs[r], 1);
        memcpy(v.data, dout[r], (size_t)v.n * v.c * v.h * v.w * sizeof(float));
    }
    run_backward(tr, d_input);
    tr->err.text[0] = '\0';
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_trainer_classify(cspresnet_trainer *tr, const float *input, int n,
                                            int h, int w, const int *labels, float *loss,
                                            int *correct)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    if (tr->classes <= 0 || !labels)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_trainer_classify needs num_classes > 0 and labels");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= tr->classes)
            return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT, "label %d of image %d is outside 0..%d",
                             labels[i], i, tr->classes - 1);
    cspresnet_status s = run_forward(tr, input, n, h, w, 1);
    if (s != CSPRESNET_OK)
        return s;
    zero_grads(tr);
    const int top = tr->stage_out[CSPRESNET_NUM_STAGES - 1];
    tensor4 x = tview(tr, top, 0), dx = tview(tr, top, 1);
    float *feat = tr->block + tr->plan.extra_off, *logits = feat + (long)n * tr->head_c;
    double *dl = (double *)(((uintptr_t)(logits + (long)n * tr->classes) + 7) & ~(uintptr_t)7);
    long kc = (long)tr->classes * tr->head_c;
    head_forward(&x, tr->head, tr->head + kc, tr->classes, feat, logits);
    double l = 0.0;
    head_loss_backward(&x, tr->head, tr->classes, feat, logits, labels, tr->head_grad, tr->head_grad + kc, &dx,
                       correct, &l, dl);
    if (loss)
        *loss = (float)l;
    if (!isfinite(l) || !isfinite((float)l)) /* no backward: the gradients would be NaN too */
        return error_set(&tr->err, CSPRESNET_ERR_NOT_FINITE, "the loss is not finite (%g)", l);
    run_backward(tr, NULL);
    tr->err.text[0] = '\0';
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_trainer_predict(cspresnet_trainer *tr, const float *input, int n,
                                           int h, int w, float *logits)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    if (tr->classes <= 0 || !logits)
        return error_set(&tr->err, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_trainer_predict needs num_classes > 0 and a logits buffer");
    cspresnet_status s = run_forward(tr, input, n, h, w, 0);
    if (s != CSPRESNET_OK)
        return s;
    tensor4 x = tview(tr, tr->stage_out[CSPRESNET_NUM_STAGES - 1], 0);
    long kc = (long)tr->classes * tr->head_c;
    head_forward(&x, tr->head, tr->head + kc, tr->classes, tr->block + tr->plan.extra_off, logits);
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- optimizer */

typedef struct optim_job {
    cspresnet_trainer *tr;
    float lr;
} optim_job;

/* Every thread updates its share of each parameter (element-wise, so the split never
 * changes a bit). */
static void optim_worker(void *arg, int t, int nt)
{
    const optim_job *job = arg;
    cspresnet_trainer *tr = job->tr;
    const float wd = tr->opt.weight_decay;
    const cspresnet_model *m = tr->model;
    long begin, end;
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        if (!p->trainable || seg_frozen(tr, tr->param_seg[i]))
            continue;
        split_range(p->numel, t, nt, &begin, &end);
        if (end > begin)
            train_optim_update(&tr->opt, tr->step, job->lr, train_param_decays(p->role) ? wd : 0.0f,
                               param_at(m->weights, p) + begin, param_at(tr->grads, p) + begin,
                               param_at(tr->opt_m, p) + begin,
                               tr->opt_v ? param_at(tr->opt_v, p) + begin : NULL, end - begin);
    }
    if (tr->classes > 0) {
        long hf = (long)tr->classes * tr->head_c + tr->classes;
        split_range(hf, t, nt, &begin, &end);
        if (end > begin)
            train_optim_update(&tr->opt, tr->step, job->lr, wd, tr->head + begin, tr->head_grad + begin,
                               tr->head_m + begin, tr->head_v ? tr->head_v + begin : NULL, end - begin);
    }
}

cspresnet_status cspresnet_trainer_step(cspresnet_trainer *tr)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    optim_job job = {tr, (float)train_schedule_lr(&tr->opt, tr->step)};
    threadpool_run(tr->pool, optim_worker, &job);
    tr->step++;
    char key[MODEL_KEY_MAX + 16];
    if (trainer_find_nonfinite(tr, key, sizeof key))
        return error_set(&tr->err, CSPRESNET_ERR_NOT_FINITE, "%s holds a NaN or an infinity after the update",
                         key);
    return CSPRESNET_OK;
}

long cspresnet_trainer_step_count(const cspresnet_trainer *tr) { return tr ? tr->step : 0; }

float cspresnet_trainer_lr(const cspresnet_trainer *tr)
{
    return tr ? (float)train_schedule_lr(&tr->opt, tr->step) : 0.0f;
}

const cspresnet_model *cspresnet_trainer_model(const cspresnet_trainer *tr)
{
    return tr ? tr->model : NULL;
}

const float *cspresnet_trainer_param_grad(const cspresnet_trainer *tr, size_t i)
{
    if (!tr || i >= tr->model->n_params || !tr->model->params[i].trainable)
        return NULL;
    return param_at(tr->grads, &tr->model->params[i]);
}

float *cspresnet_trainer_head(cspresnet_trainer *tr, int *classes, int *channels, float **bias)
{
    if (!tr || tr->classes <= 0)
        return NULL;
    if (classes)
        *classes = tr->classes;
    if (channels)
        *channels = tr->head_c;
    if (bias)
        *bias = tr->head + (long)tr->classes * tr->head_c;
    return tr->head;
}

/* checkpoint.c needs the state arrays */
void trainer_state_arrays(cspresnet_trainer *tr, float **m, float **v, float **head,
                          long *head_floats, long **step)
{
    *m = tr->opt_m;
    *v = tr->opt_v;
    *head = tr->head;
    *head_floats = tr->classes > 0 ? (long)tr->classes * tr->head_c + tr->classes : 0;
    *step = &tr->step;
}

error_buf *trainer_error(cspresnet_trainer *tr) { return &tr->err; }
