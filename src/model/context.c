/*
 * context.c - running a model: the activation arena planner and the forward pass.
 *
 * Planning (once per input shape): every tensor that owns storage gets a lifetime
 * [first node touching it, last node touching it] (slices count for their parent;
 * returned stage outputs live to the end) and a size n*c*h*w. Tensors are placed
 * largest first at the lowest offset that does not overlap any placed tensor whose
 * lifetime intersects. One allocation then holds the arena and the scratch (per-thread
 * conv panels, ESE statistics). A forward with the planned shape allocates nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/model.h"
#include "ops/ops.h"

struct cspresnet_context {
    const cspresnet_model *model;
    threadpool *pool;
    const kernel_set *kernels;
    int plan_n, plan_h, plan_w;   /* 0: nothing planned yet */
    long *offset;                 /* per tensor: floats into arena (roots only) */
    float *block;                 /* arena, then scratch */
    long arena_floats;
    long scratch_floats;
    long fast_offset;             /* fast conv scratch: floats after the arena, or -1 */
    long fast_per_thread;
    double *prof;                 /* per-node seconds when profiling, else NULL */
    error_buf err;
};

static int spatial(int size, int level)
{
    for (int i = 0; i < level; i++)
        size = (size + 1) / 2;
    return size;
}

static int root_of(const cspresnet_model *m, int t)
{
    return m->tensors[t].parent >= 0 ? m->tensors[t].parent : t;
}

void cspresnet_context_options_init(cspresnet_context_options *opt)
{
    memset(opt, 0, sizeof *opt);
}

cspresnet_status cspresnet_context_create(const cspresnet_model *model, int threads,
                                          cspresnet_context **out, char *err, size_t err_size)
{
    cspresnet_context_options opt = {.threads = threads};
    return cspresnet_context_create_ex(model, &opt, out, err, err_size);
}

cspresnet_status cspresnet_context_create_ex(const cspresnet_model *model,
                                             const cspresnet_context_options *opt,
                                             cspresnet_context **out, char *err, size_t err_size)
{
    error_buf e;
    cspresnet_context_options defaults = {0};
    if (!opt)
        opt = &defaults;
    int threads = opt->threads;
    if (!out || !model) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_context_create: model and out must not be NULL");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    *out = NULL;
    if (threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        threads = online > 0 ? (int)(online < 256 ? online : 256) : 1;
    }
    cspresnet_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory creating a context");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    ctx->model = model;
    ctx->kernels = kernel_set_select(opt->isa);
    ctx->offset = calloc((size_t)model->n_tensors, sizeof *ctx->offset);
    cspresnet_status s = ctx->offset ? threadpool_create(threads, &ctx->pool, &e)
                                     : error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory creating a context");
    if (s != CSPRESNET_OK) {
        cspresnet_context_free(ctx);
        error_copy_out(&e, err, err_size);
        return s;
    }
    *out = ctx;
    return CSPRESNET_OK;
}

void cspresnet_context_free(cspresnet_context *ctx)
{
    if (!ctx)
        return;
    threadpool_free(ctx->pool);
    free(ctx->prof);
    free(ctx->offset);
    free(ctx->block);
    free(ctx);
}

const char *cspresnet_context_last_error(const cspresnet_context *ctx)
{
    return ctx ? ctx->err.text : "";
}

size_t cspresnet_context_arena_bytes(const cspresnet_context *ctx)
{
    return ctx ? (size_t)ctx->arena_floats * sizeof(float) : 0;
}

typedef struct lifetime {
    int first, last;
    long size;   /* floats, 16-aligned; 0 for slices and the input */
} lifetime;

static void touch(lifetime *lt, int t, int node)
{
    if (lt[t].first < 0 || node < lt[t].first)
        lt[t].first = node;
    if (node > lt[t].last)
        lt[t].last = node;
}

static cspresnet_status plan(cspresnet_context *ctx, int n, int h, int w)
{
    const cspresnet_model *m = ctx->model;
    const int T = m->n_tensors;
    lifetime *lt = calloc((size_t)T, sizeof *lt);
    int *order = calloc((size_t)T, sizeof *order);
    if (!lt || !order) {
        free(lt);
        free(order);
        return error_set(&ctx->err, CSPRESNET_ERR_MEMORY, "out of memory planning activations");
    }
    for (int t = 0; t < T; t++) {
        lt[t].first = lt[t].last = -1;
        const graph_tensor *gt = &m->tensors[t];
        if (t != 0 && gt->parent < 0) {
            double floats = (double)n * gt->c * spatial(h, gt->level) * spatial(w, gt->level);
            lt[t].size = ((long)floats + 15) & ~15L;
        }
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const graph_node *nd = &m->nodes[i];
        touch(lt, root_of(m, nd->in0), i);
        touch(lt, root_of(m, nd->out), i);
        if (nd->in1 >= 0)
            touch(lt, root_of(m, nd->in1), i);
    }
    for (int r = 0; r < m->cfg.num_return; r++)
        lt[m->stage_tensor[m->cfg.return_idx[r]]].last = m->n_nodes;

    /* largest first; ties by id keep the plan deterministic */
    int count = 0;
    for (int t = 1; t < T; t++)
        if (lt[t].size > 0)
            order[count++] = t;
    for (int i = 1; i < count; i++) {
        int v = order[i], j = i - 1;
        while (j >= 0 && (lt[order[j]].size < lt[v].size ||
                          (lt[order[j]].size == lt[v].size && order[j] > v))) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    long arena = 0;
    for (int i = 0; i < count; i++) {
        int t = order[i];
        long off = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                int u = order[j];
                if (lt[u].last < lt[t].first || lt[t].last < lt[u].first)
                    continue; /* lifetimes disjoint */
                if (off < ctx->offset[u] + lt[u].size && ctx->offset[u] < off + lt[t].size) {
                    off = ctx->offset[u] + lt[u].size;
                    moved = 1;
                }
            }
        }
        ctx->offset[t] = off;
        if (off + lt[t].size > arena)
            arena = off + lt[t].size;
    }
    free(lt);
    free(order);

    int max_mid = 0;
    for (int s = 0; s < CSPRESNET_NUM_STAGES; s++)
        if (model_stage_mid(&m->cfg, s) > max_mid)
            max_mid = model_stage_mid(&m->cfg, s);
    long per_thread = conv2d_scratch_per_thread();
    const int threads = threadpool_size(ctx->pool);
    long scratch = per_thread * threads + ((ese_scratch_floats(n, max_mid) + 15) & ~15L);
    /* the fast conv path: the largest per-thread and shared need over all convs */
    long fast_pt = 0, fast_shared = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const graph_node *nd = &m->nodes[i];
        if (nd->kind != NODE_CONV)
            continue;
        const graph_tensor *ti = &m->tensors[nd->in0], *to = &m->tensors[nd->out];
        conv_geom g = {nd->cin, spatial(h, ti->level), spatial(w, ti->level), nd->cout,
                       spatial(h, to->level), spatial(w, to->level), nd->k, nd->stride, nd->pad};
        long pt, sh;
        conv2d_fast_scratch(ctx->kernels, 1, &g, n, threads, &pt, &sh);
        pt = (pt + 15) & ~15L;
        if (pt > fast_pt)
            fast_pt = pt;
        if (sh > fast_shared)
            fast_shared = sh;
    }
    ctx->fast_offset = ctx->kernels->gemm ? scratch : -1;
    ctx->fast_per_thread = fast_pt;
    if (ctx->kernels->gemm)
        scratch += fast_pt * threads + ((fast_shared + 15) & ~15L);

    free(ctx->block);
    ctx->block = NULL;
    ctx->plan_n = ctx->plan_h = ctx->plan_w = 0;
    double bytes = ((double)arena + (double)scratch) * sizeof(float);
    if (bytes > (double)((size_t)1 << 46))
        return error_set(&ctx->err, CSPRESNET_ERR_MEMORY,
                         "input %dx3x%dx%d needs %.1f GiB of activations; refused", n, h, w,
                         bytes / (1024.0 * 1024.0 * 1024.0));
    ctx->block = aligned_alloc(64, (((size_t)arena + (size_t)scratch) * sizeof(float) + 63) & ~(size_t)63);
    if (!ctx->block)
        return error_set(&ctx->err, CSPRESNET_ERR_MEMORY,
                         "out of memory: input %dx3x%dx%d needs %.1f MiB of activations", n, h, w,
                         bytes / (1024.0 * 1024.0));
    ctx->arena_floats = arena;
    ctx->scratch_floats = scratch;
    ctx->plan_n = n;
    ctx->plan_h = h;
    ctx->plan_w = w;
    return CSPRESNET_OK;
}

static tensor4 view(const cspresnet_context *ctx, int t, const float *input)
{
    const cspresnet_model *m = ctx->model;
    const graph_tensor *gt = &m->tensors[t];
    int root = root_of(m, t);
    tensor4 v;
    v.n = ctx->plan_n;
    v.c = gt->c;
    v.h = spatial(ctx->plan_h, gt->level);
    v.w = spatial(ctx->plan_w, gt->level);
    long plane = (long)v.h * v.w;
    v.batch_stride = (long)m->tensors[root].c * plane;
    v.data = t == 0 ? (float *)input /* read only: no node writes tensor 0 */
                    : ctx->block + ctx->offset[root] + (long)gt->channel_offset * plane;
    return v;
}

static void run_node(cspresnet_context *ctx, op_exec *ex, const graph_node *nd, const float *input)
{
    const float *W = ctx->model->weights;
    const param_info *P = ctx->model->params;
    tensor4 in0 = view(ctx, nd->in0, input), out = view(ctx, nd->out, input);
    switch (nd->kind) {
    case NODE_CONV: {
        conv_geom g = {nd->cin, in0.h, in0.w, nd->cout, out.h, out.w, nd->k, nd->stride, nd->pad};
        tensor4 res = nd->in1 >= 0 ? view(ctx, nd->in1, input) : in0;
        conv_epilogue ep = {nd->bias >= 0 ? W + P[nd->bias].offset : NULL, nd->act,
                            nd->in1 >= 0 ? &res : NULL};
        int plain = nd->bias < 0 && nd->act == CSPRESNET_ACT_NONE && nd->in1 < 0;
        conv2d_forward(ex, &g, W + P[nd->weight].offset, &in0, &out, plain ? NULL : &ep);
        break;
    }
    case NODE_BN:
        batchnorm_forward_eval(ex, &out, W + P[nd->bn_weight].offset, W + P[nd->bn_bias].offset,
                               W + P[nd->bn_mean].offset, W + P[nd->bn_variance].offset);
        break;
    case NODE_ACT:
        activation_forward(ex, nd->act, &out);
        break;
    case NODE_ADD: {
        tensor4 in1 = view(ctx, nd->in1, input);
        float alpha = nd->alpha >= 0 ? W[P[nd->alpha].offset] : 1.0f;
        add_scaled_forward(ex, &in0, &in1, alpha, &out);
        break;
    }
    case NODE_ESE:
        ese_forward(ex, &out, W + P[nd->weight].offset, W + P[nd->bias].offset);
        break;
    }
}

cspresnet_status cspresnet_forward(cspresnet_context *ctx, const float *input, int n, int c,
                                   int h, int w, cspresnet_output outs[CSPRESNET_MAX_OUTPUTS],
                                   int *n_out)
{
    if (!ctx)
        return CSPRESNET_ERR_ARGUMENT;
    if (!input || !outs || !n_out)
        return error_set(&ctx->err, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_forward: input, outs and n_out must not be NULL");
    if (c != MODEL_INPUT_CHANNELS)
        return error_set(&ctx->err, CSPRESNET_ERR_SHAPE, "input has %d channel%s, the model takes %d", c,
                         c == 1 ? "" : "s", MODEL_INPUT_CHANNELS);
    if (n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536)
        return error_set(&ctx->err, CSPRESNET_ERR_ARGUMENT,
                         "input shape %dx3x%dx%d: batch, height and width must be in 1..65536", n, h, w);
    if (n != ctx->plan_n || h != ctx->plan_h || w != ctx->plan_w) {
        cspresnet_status s = plan(ctx, n, h, w);
        if (s != CSPRESNET_OK)
            return s;
    }
    const cspresnet_model *m = ctx->model;
    op_exec ex = {
        .pool = ctx->pool,
        .kernels = ctx->kernels,
        .scratch = ctx->block + ctx->arena_floats,
        .scratch_per_thread = conv2d_scratch_per_thread(),
        .op_scratch = ctx->block + ctx->arena_floats +
                      conv2d_scratch_per_thread() * threadpool_size(ctx->pool),
        .fast_scratch = ctx->fast_offset >= 0 ? ctx->block + ctx->arena_floats + ctx->fast_offset : NULL,
        .fast_per_thread = ctx->fast_per_thread,
        .allow_winograd = 1,
    };
    for (int i = 0; i < m->n_nodes; i++) {
        if (ctx->prof) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            run_node(ctx, &ex, &m->nodes[i], input);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            ctx->prof[i] += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        } else {
            run_node(ctx, &ex, &m->nodes[i], input);
        }
    }

    for (int r = 0; r < m->cfg.num_return; r++) {
        int stage = m->cfg.return_idx[r];
        tensor4 v = view(ctx, m->stage_tensor[stage], input);
        outs[r] = (cspresnet_output){stage, 4 << stage, v.n, v.c, v.h, v.w, v.data};
    }
    *n_out = m->cfg.num_return;
    ctx->err.text[0] = '\0';
    return CSPRESNET_OK;
}

void cspresnet_context_set_profile(cspresnet_context *ctx, int on)
{
    if (!ctx)
        return;
    free(ctx->prof);
    ctx->prof = on ? calloc((size_t)ctx->model->n_nodes, sizeof *ctx->prof) : NULL;
}

int cspresnet_context_profile(const cspresnet_context *ctx, int i, const char **name,
                              double *seconds, double *flops)
{
    if (!ctx)
        return 0;
    const cspresnet_model *m = ctx->model;
    if (i < 0 || i >= m->n_nodes)
        return m->n_nodes;
    const graph_node *nd = &m->nodes[i];
    if (name)
        *name = nd->name;
    if (seconds)
        *seconds = ctx->prof ? ctx->prof[i] : 0.0;
    if (flops) {
        *flops = 0.0;
        if (nd->kind == NODE_CONV && ctx->plan_n > 0) {
            int level = m->tensors[nd->out].level;
            *flops = 2.0 * ctx->plan_n * nd->cout * nd->cin * nd->k * nd->k *
                     spatial(ctx->plan_h, level) * (double)spatial(ctx->plan_w, level);
        }
    }
    return m->n_nodes;
}

const char *cspresnet_context_isa(const cspresnet_context *ctx)
{
    return ctx ? ctx->kernels->isa : "";
}
