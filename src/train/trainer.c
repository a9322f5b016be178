/*
 * trainer.c - the public training API: a trainer owns a copy of the weights, their
 * gradients (one buffer with the weights' layout), the optimizer state, the training
 * graph's activations and a pool of threads.
 *
 * Forward runs the training graph (graph.c) segment by segment; BN takes batch
 * statistics unless BN is frozen (train_bn = 0 or a frozen segment). Backward zeroes
 * the gradients, seeds the returned stage outputs with the caller's gradients and
 * walks the segments from the last one down, each segment's nodes in reverse; with
 * recomputation a segment's forward is re-run first (running statistics untouched).
 * Frozen segments stop the walk. Activation memory is planned per input shape
 * (see train.h); nothing is allocated per step except in the head's loss.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/train.h"

struct cspresnet_trainer {
    cspresnet_train_options opt;
    cspresnet_model *model;     /* own copy of the weights (and running statistics) */
    tgraph g;
    threadpool *pool;
    const kernel_set *kernels;
    const f32_train_config *tk;     /* point-wise training kernels of that set */
    float *grads, *opt_m, *opt_v;          /* weight_floats each (opt_v: AdamW only) */
    int classes, head_c;
    float *head, *head_grad, *head_m, *head_v;  /* K*C weight then K bias */
    long step;
    int first_trainable;        /* segments below it are frozen */
    int active_end;             /* backward walks segments active_end-1 .. first_trainable */
    /* plan */
    int pn, ph, pw;
    float *block;
    long block_floats, state_floats;
    long inner_grad_off, saved_off, scratch_off, op_scratch_off, fast_off, head_off;
    long scratch_per_thread, fast_per_thread;
    long seg_act_off[TRAIN_SEGMENTS], seg_size[TRAIN_SEGMENTS];
    int have_forward, forward_train;
    int use_fast_conv;          /* fast scratch for conv2d_forward; in practice only the
                                   reference set (no GEMM tile, so no fast path) reaches
                                   conv2d_forward: the others run conv_cols_forward */
    error_buf err;
};

static int spatial(int size, int level)
{
    for (int i = 0; i < level; i++)
        size = (size + 1) / 2;
    return size;
}

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
    tgraph_free(&tr->g);
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

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A BN whose output only its activation reads runs that activation itself (forward:
 * one pass writing the activation; backward: the activation's input recomputed from
 * the BN input). The pre-activation tensor is then never written. */
static void fuse_bn_act(tgraph *g)
{
    for (int i = 0; i + 1 < g->n_nodes; i++) {
        tnode *bn = &g->nodes[i], *act = &g->nodes[i + 1];
        if (bn->kind != TN_BN || act->kind != TN_ACT || act->in0 != bn->out || act->seg != bn->seg ||
            g->tensors[bn->out].boundary)
            continue;
        int readers = 0;
        for (int j = 0; j < g->n_nodes; j++)
            readers += (g->nodes[j].in0 == bn->out) + (g->nodes[j].in1 == bn->out);
        if (readers == 1) {
            bn->fused = act->fused = 1;
            g->tensors[bn->out].dead = 1;
        }
    }
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
    int threads = opt->threads;
    if (threads <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (int)(online < 256 ? online : 256) : 1;
    }
    tr->kernels = kernel_set_select(opt->isa);
    tr->tk = tr->kernels->train;
    tr->opt.isa = tr->kernels->isa;   /* the caller's string is not kept */
    tr->use_fast_conv = 1;
    if (model->deployed)
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "a deployed model cannot be trained (BN folded); train the BN form");
    if (s == CSPRESNET_OK)
        s = model_build(&model->cfg, 0, &tr->model, &e);
    if (s == CSPRESNET_OK) {
        for (size_t i = 0; i < model->n_params; i++)
            memcpy(tr->model->weights + tr->model->params[i].offset,
                   model->weights + model->params[i].offset,
                   (size_t)model->params[i].numel * sizeof(float));
        s = tgraph_build(tr->model, &tr->g, &e);
    }
    if (s == CSPRESNET_OK) {
        fuse_bn_act(&tr->g);
        s = threadpool_create(threads, &tr->pool, &e);
    }
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
                tr->head[i] = bound * (2.0f * (float)((splitmix(&st) >> 40) / 16777216.0) - 1.0f);
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

static long tensor_floats(const cspresnet_trainer *tr, int t)
{
    const ttensor *tt = &tr->g.tensors[t];
    double f = (double)tr->pn * tt->c * spatial(tr->ph, tt->level) * spatial(tr->pw, tt->level);
    return ((long)f + 15) & ~15L;
}

static cspresnet_status plan(cspresnet_trainer *tr, int n, int h, int w)
{
    tgraph *g = &tr->g;
    tr->pn = n;
    tr->ph = h;
    tr->pw = w;
    long off = 0;
    /* boundaries: activation then gradient */
    for (int t = 0; t < g->n_tensors; t++)
        if (g->tensors[t].boundary) {
            long f = tensor_floats(tr, t);
            g->tensors[t].off = off;
            g->tensors[t].goff = off + f;
            off += 2 * f;
        }
    /* segment inner tensors */
    long max_seg = 0;
    for (int s = 0; s < TRAIN_SEGMENTS; s++)
        tr->seg_size[s] = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        ttensor *tt = &g->tensors[t];
        if (tt->boundary)
            continue;
        tt->off = tr->seg_size[tt->seg];  /* relative for now */
        if (!tt->dead)
            tr->seg_size[tt->seg] += tensor_floats(tr, t);
    }
    for (int s = 0; s < TRAIN_SEGMENTS; s++) {
        if (tr->seg_size[s] > max_seg)
            max_seg = tr->seg_size[s];
        tr->seg_act_off[s] = off;
        if (!tr->opt.recompute)
            off += tr->seg_size[s];
    }
    if (tr->opt.recompute)
        off += max_seg;
    tr->inner_grad_off = off;
    off += max_seg;
    for (int t = 0; t < g->n_tensors; t++) {
        ttensor *tt = &g->tensors[t];
        if (!tt->boundary) {
            tt->goff = tr->inner_grad_off + tt->off;
            tt->off += tr->seg_act_off[tt->seg];
        }
    }
    /* saved statistics; scratch sizes */
    tr->saved_off = off;
    long max_oc = 1, max_wt = 1, max_nc = 1, fast_pt = 0, fast_sh = 0, bwd_pt = 0, bwd_sh = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        tnode *nd = &g->nodes[i];
        const ttensor *ot = &g->tensors[nd->out];
        if (nd->kind == TN_BN) {
            nd->save = off - tr->saved_off;
            off += (2L * ot->c + 15) & ~15L;
        } else if (nd->kind == TN_ESE) {
            nd->save = off - tr->saved_off;
            off += (2L * n * ot->c + 15) & ~15L;
            if ((long)n * ot->c > max_nc)
                max_nc = (long)n * ot->c;
        } else if (nd->kind == TN_ADD) {
            if ((long)n * ot->c > max_nc)
                max_nc = (long)n * ot->c;
        } else if (nd->kind == TN_CONV) {
            const graph_node *s = nd->src;
            if (s->cout > max_oc)
                max_oc = s->cout;
            long wt = (long)s->cout * s->cin * s->k * s->k;
            if (wt > max_wt)
                max_wt = wt;
            const ttensor *it = &g->tensors[nd->in0];
            conv_geom cg = {s->cin, spatial(h, it->level), spatial(w, it->level), s->cout,
                            spatial(h, ot->level), spatial(w, ot->level), s->k, s->stride, s->pad};
            long pt = 0, sh = 0;
            conv2d_fast_scratch(tr->kernels, 0, &cg, n, threadpool_size(tr->pool), &pt, &sh);
            if (pt > fast_pt)
                fast_pt = pt;
            if (sh > fast_sh)
                fast_sh = sh;
            if (tr->kernels->gemm) {
                conv2d_backward_scratch(tr->kernels, &cg, n, &pt, &sh);
                if (pt > bwd_pt)
                    bwd_pt = pt;
                if (sh > bwd_sh)
                    bwd_sh = sh;
                pt = conv_cols_scratch(tr->kernels, &cg);
                if (pt > bwd_pt)
                    bwd_pt = pt;
            }
        }
    }
    tr->head_off = off;
    if (tr->classes > 0)
        off += (((long)n * (tr->head_c + tr->classes)) + 15) & ~15L;
    long bwd = conv2d_backward_scratch_per_thread((int)max_oc, 3);
    if (bwd_pt > bwd)
        bwd = bwd_pt;
    tr->scratch_per_thread = conv2d_scratch_per_thread() > bwd ? conv2d_scratch_per_thread() : bwd;
    tr->scratch_per_thread = (tr->scratch_per_thread + 15) & ~15L;
    tr->scratch_off = off;
    off += tr->scratch_per_thread * threadpool_size(tr->pool);
    tr->op_scratch_off = off;
    long ops = max_wt > 3 * max_nc ? max_wt : 3 * max_nc;  /* W^T; ESE dz, ds, dz^T; add partials (doubles) */
    if (bwd_sh > ops)
        ops = bwd_sh;   /* the fast backward's weight transform and dW partials */
    off += (ops + 15) & ~15L;
    tr->fast_per_thread = (fast_pt + 15) & ~15L;
    tr->fast_off = off;
    off += tr->fast_per_thread * threadpool_size(tr->pool) + fast_sh;

    free(tr->block);
    tr->block = NULL;
    double bytes = (double)off * sizeof(float);
    if (bytes > (double)((size_t)1 << 46))
        tr->block = NULL;
    else
        tr->block = aligned_alloc(64, ((size_t)off * sizeof(float) + 63) & ~(size_t)63);
    if (!tr->block) {
        tr->pn = tr->ph = tr->pw = 0;
        return error_set(&tr->err, CSPRESNET_ERR_MEMORY,
                         "out of memory: training on %dx3x%dx%d needs %.1f MiB of activations",
                         n, h, w, bytes / (1024.0 * 1024.0));
    }
    tr->block_floats = off;
    tr->have_forward = 0;
    return CSPRESNET_OK;
}

size_t cspresnet_trainer_activation_bytes(const cspresnet_trainer *tr)
{
    return tr ? (size_t)tr->block_floats * sizeof(float) : 0;
}

size_t cspresnet_trainer_state_bytes(const cspresnet_trainer *tr)
{
    if (!tr)
        return 0;
    long head = tr->classes > 0 ? 4L * ((long)tr->classes * tr->head_c + tr->classes) : 0;
    return (size_t)(tr->state_floats + head) * sizeof(float);
}

/* ---------------------------------------------------------------- running */

static tensor4 tview(const cspresnet_trainer *tr, int t, int grad)
{
    const ttensor *tt = &tr->g.tensors[t];
    tensor4 v;
    v.n = tr->pn;
    v.c = tt->c;
    v.h = spatial(tr->ph, tt->level);
    v.w = spatial(tr->pw, tt->level);
    v.batch_stride = (long)v.c * v.h * v.w;
    v.data = tr->block + (grad ? tt->goff : tt->off);
    return v;
}

static op_exec make_exec(const cspresnet_trainer *tr)
{
    op_exec ex = {
        .pool = tr->pool,
        .kernels = tr->kernels,
        .scratch = tr->block + tr->scratch_off,
        .scratch_per_thread = tr->scratch_per_thread,
        .op_scratch = tr->block + tr->op_scratch_off,
        .fast_scratch = tr->use_fast_conv && tr->fast_per_thread > 0 ? tr->block + tr->fast_off : NULL,
        .fast_per_thread = tr->fast_per_thread,
        /* Training runs the fast GEMM convs but not Winograd: its rounding, amplified by
         * train-mode BN's gradient through the batch statistics, breaks the 1e-4
         * agreement with autograd, while the GEMM path rounds like the reference GEMM. */
        .allow_winograd = 0,
    };
    return ex;
}

static int seg_frozen(const cspresnet_trainer *tr, int seg)
{
    return seg < tr->first_trainable;
}

static int bn_uses_batch(const cspresnet_trainer *tr, int seg)
{
    return tr->forward_train && tr->opt.train_bn && !seg_frozen(tr, seg);
}

/* Copies a and b (channel halves) into out. */
typedef struct concat_job {
    tensor4 a, b, out;
    int backward;
} concat_job;

static void concat_worker(void *arg, int t, int nt)
{
    const concat_job *job = arg;
    const long plane = (long)job->out.h * job->out.w;
    long begin, end;
    split_range((long)job->out.n * job->out.c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / job->out.c), c = (int)(p % job->out.c);
        const tensor4 *src = c < job->a.c ? &job->a : &job->b;
        int cc = c < job->a.c ? c : c - job->a.c;
        float *part = src->data + n * src->batch_stride + cc * plane;
        float *whole = job->out.data + n * job->out.batch_stride + c * plane;
        if (job->backward)
            for (long i = 0; i < plane; i++)
                part[i] += whole[i];
        else
            memcpy(whole, part, (size_t)plane * sizeof(float));
    }
}

static void forward_segment(cspresnet_trainer *tr, op_exec *ex, int seg, int update_running)
{
    float *W = tr->model->weights;
    const param_info *P = tr->model->params;
    const int batch = bn_uses_batch(tr, seg);
    for (int i = tr->g.seg_first[seg]; i < tr->g.seg_end[seg]; i++) {
        const tnode *nd = &tr->g.nodes[i];
        const graph_node *s = nd->src;
        tensor4 in = tview(tr, nd->in0, 0), out = tview(tr, nd->out, 0);
        switch (nd->kind) {
        case TN_CONV: {
            conv_geom g = {s->cin, in.h, in.w, s->cout, out.h, out.w, s->k, s->stride, s->pad};
            if (tr->kernels->gemm)
                conv_cols_forward(ex, &g, W + P[s->weight].offset, &in, &out);
            else
                conv2d_forward(ex, &g, W + P[s->weight].offset, &in, &out, NULL);
            break;
        }
        case TN_BN: {
            float *sv = tr->block + tr->saved_off + nd->save;
            cspresnet_act act = CSPRESNET_ACT_NONE;
            if (nd->fused) {   /* write the activation's output instead */
                act = tr->g.nodes[i + 1].src->act;
                out = tview(tr, tr->g.nodes[i + 1].out, 0);
            }
            batchnorm_forward_train(ex, tr->tk, batch, act, &in, &out, W + P[s->bn_weight].offset,
                                    W + P[s->bn_bias].offset, W + P[s->bn_mean].offset,
                                    W + P[s->bn_variance].offset, batch && update_running, sv,
                                    sv + out.c);
            break;
        }
        case TN_ACT:
            if (!nd->fused)
                activation_forward_out(ex, s->act, &in, &out);
            break;
        case TN_ADD: {
            tensor4 in1 = tview(tr, nd->in1, 0);
            add_scaled_forward(ex, &in, &in1, s->alpha >= 0 ? W[P[s->alpha].offset] : 1.0f, &out);
            break;
        }
        case TN_ESE: {
            float *sv = tr->block + tr->saved_off + nd->save;
            if (tr->kernels->gemm)
                ese_forward_train_gemm(ex, &in, &out, W + P[s->weight].offset, W + P[s->bias].offset,
                                       sv, sv + (long)out.n * out.c, ex->op_scratch);
            else
                ese_forward_train(ex, &in, &out, W + P[s->weight].offset, W + P[s->bias].offset, sv,
                              sv + (long)out.n * out.c);
            break;
        }
        case TN_CONCAT: {
            concat_job job = {in, tview(tr, nd->in1, 0), out, 0};
            threadpool_run(tr->pool, concat_worker, &job);
            break;
        }
        }
    }
}

static int need_grad(const cspresnet_trainer *tr, int t, int want_input)
{
    return t == 0 ? want_input : !seg_frozen(tr, tr->g.tensors[t].seg);
}

static void backward_segment(cspresnet_trainer *tr, op_exec *ex, int seg, int want_input)
{
    float *W = tr->model->weights, *G = tr->grads;
    const param_info *P = tr->model->params;
    const int batch = bn_uses_batch(tr, seg);
    for (int i = tr->g.seg_end[seg] - 1; i >= tr->g.seg_first[seg]; i--) {
        const tnode *nd = &tr->g.nodes[i];
        const graph_node *s = nd->src;
        tensor4 in = tview(tr, nd->in0, 0), dy = tview(tr, nd->out, 1);
        tensor4 din = tview(tr, nd->in0, 1);
        const tensor4 *dinp = need_grad(tr, nd->in0, want_input) ? &din : NULL;
        switch (nd->kind) {
        case TN_CONV: {
            tensor4 out = tview(tr, nd->out, 0);
            conv_geom g = {s->cin, in.h, in.w, s->cout, out.h, out.w, s->k, s->stride, s->pad};
            conv2d_backward(ex, &g, W + P[s->weight].offset, &in, &dy, dinp, G + P[s->weight].offset);
            break;
        }
        case TN_BN: {
            const float *sv = tr->block + tr->saved_off + nd->save;
            cspresnet_act act = CSPRESNET_ACT_NONE;
            if (nd->fused) {   /* dy: the gradient of the fused activation's output */
                act = tr->g.nodes[i + 1].src->act;
                dy = tview(tr, tr->g.nodes[i + 1].out, 1);
            }
            batchnorm_backward(ex, tr->tk, batch, act, &in, &dy, dinp, W + P[s->bn_weight].offset,
                               W + P[s->bn_bias].offset, sv, sv + in.c, G + P[s->bn_weight].offset,
                               G + P[s->bn_bias].offset);
            break;
        }
        case TN_ACT:
            if (dinp && !nd->fused)
                activation_backward(ex, s->act, &in, &dy, dinp);
            break;
        case TN_ADD: {
            tensor4 in1 = tview(tr, nd->in1, 0), din1 = tview(tr, nd->in1, 1);
            float alpha = s->alpha >= 0 ? W[P[s->alpha].offset] : 1.0f;
            add_scaled_backward(ex, &in1, alpha, &dy, dinp, &din1,
                                s->alpha >= 0 ? G + P[s->alpha].offset : NULL,
                                (double *)(tr->block + tr->op_scratch_off));
            break;
        }
        case TN_ESE: {
            const float *sv = tr->block + tr->saved_off + nd->save;
            if (tr->kernels->gemm)
                ese_backward_gemm(ex, &in, &dy, dinp, W + P[s->weight].offset, sv, sv + (long)in.n * in.c,
                                  G + P[s->weight].offset, G + P[s->bias].offset, ex->op_scratch);
            else
                ese_backward(ex, &in, &dy, dinp, W + P[s->weight].offset, sv, sv + (long)in.n * in.c,
                         G + P[s->weight].offset, G + P[s->bias].offset);
            break;
        }
        case TN_CONCAT: {
            concat_job job = {din, tview(tr, nd->in1, 1), dy, 1};
            threadpool_run(tr->pool, concat_worker, &job);
            break;
        }
        }
    }
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
    memcpy(tr->block + tr->g.tensors[0].off, input, (size_t)n * 3 * h * w * sizeof(float));
    return CSPRESNET_OK;
}

static cspresnet_status run_forward(cspresnet_trainer *tr, const float *input, int n, int h,
                                    int w, int train)
{
    cspresnet_status s = check_input(tr, input, n, h, w);
    if (s != CSPRESNET_OK)
        return s;
    tr->forward_train = train;
    op_exec ex = make_exec(tr);
    /* every stage runs, as upstream's forward does (its BN statistics update even when
     * the stage is not returned); backward starts at the last stage that matters */
    for (int seg = 0; seg < TRAIN_SEGMENTS; seg++)
        forward_segment(tr, &ex, seg, train);
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
    const cspresnet_config *cfg = &tr->model->cfg;
    for (int r = 0; r < cfg->num_return; r++) {
        int stage = cfg->return_idx[r];
        tensor4 v = tview(tr, tr->g.seg_out[stage + 1], 0);
        outs[r] = (cspresnet_output){stage, 4 << stage, v.n, v.c, v.h, v.w, v.data};
    }
    *n_out = cfg->num_return;
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
    for (int t = 0; t < tr->g.n_tensors; t++)
        if (tr->g.tensors[t].boundary)
            parallel_zero(tr, tr->block + tr->g.tensors[t].goff, tensor_floats(tr, t));
}

/* Backward with the stage-output gradients already in place (seeded by the caller). */
static void run_backward(cspresnet_trainer *tr, float *d_input)
{
    op_exec ex = make_exec(tr);
    int want_input = d_input != NULL && tr->first_trainable == 0;
    const int last = tr->active_end - 1;
    for (int seg = last; seg >= tr->first_trainable; seg--) {
        if (tr->opt.recompute && seg != TRAIN_SEGMENTS - 1)
            forward_segment(tr, &ex, seg, 0);
        parallel_zero(tr, tr->block + tr->inner_grad_off, tr->seg_size[seg]);
        backward_segment(tr, &ex, seg, want_input);
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
    const cspresnet_config *cfg = &tr->model->cfg;
    for (int r = 0; r < cfg->num_return && dout; r++) {
        if (!dout[r])
            continue;
        tensor4 v = tview(tr, tr->g.seg_out[cfg->return_idx[r] + 1], 1);
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
    tensor4 x = tview(tr, tr->g.seg_out[CSPRESNET_NUM_STAGES], 0);
    tensor4 dx = tview(tr, tr->g.seg_out[CSPRESNET_NUM_STAGES], 1);
    float *feat = tr->block + tr->head_off, *logits = feat + (long)n * tr->head_c;
    long kc = (long)tr->classes * tr->head_c;
    head_forward(&x, tr->head, tr->head + kc, tr->classes, feat, logits);
    double l = 0.0;
    if (head_loss_backward(&x, tr->head, tr->classes, feat, logits, labels, tr->head_grad, tr->head_grad + kc,
                           &dx, correct, &l) != 0)
        return error_set(&tr->err, CSPRESNET_ERR_MEMORY, "out of memory in the loss");
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
    tensor4 x = tview(tr, tr->g.seg_out[CSPRESNET_NUM_STAGES], 0);
    long kc = (long)tr->classes * tr->head_c;
    head_forward(&x, tr->head, tr->head + kc, tr->classes, tr->block + tr->head_off, logits);
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
        if (!p->trainable || seg_frozen(tr, strncmp(p->key, "stages.", 7) == 0 ? 1 + (p->key[7] - '0') : 0))
            continue;
        split_range(p->numel, t, nt, &begin, &end);
        if (end > begin)
            train_optim_update(&tr->opt, tr->step, job->lr, train_param_decays(p->role) ? wd : 0.0f,
                               m->weights + p->offset + begin, tr->grads + p->offset + begin,
                               tr->opt_m + p->offset + begin,
                               tr->opt_v ? tr->opt_v + p->offset + begin : NULL, end - begin);
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
    return tr->grads + tr->model->params[i].offset;
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
