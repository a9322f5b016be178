/*
 * context.c - running a model: a context plans the model's graph in eval mode for an
 * input shape (graph/plan.c), holds one block for the plan's activations and
 * workspace, and runs the graph's one dispatcher (graph/run.c). A forward with the
 * planned shape allocates nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "ops/ops.h"

struct cspresnet_context {
    const cspresnet_model *model;
    threadpool *pool;
    const kernel_set *kernels;
    cspresnet_precision precision;
    int plan_n, plan_h, plan_w;   /* 0: nothing planned yet */
    graph_plan plan;
    float *block;                 /* the plan's activations, then its workspace */
    double *prof;                 /* per-node seconds when profiling, else NULL */
    graph_observe_fn observe;     /* calibration's hook, else NULL */
    void *observe_arg;
    error_buf err;
};

static const char *const PRECISION_NAMES[] = {"fp32", "bf16", "int8"};

const char *cspresnet_precision_name(cspresnet_precision p)
{
    return (unsigned)p < sizeof PRECISION_NAMES / sizeof *PRECISION_NAMES ? PRECISION_NAMES[p] : "unknown";
}

cspresnet_precision cspresnet_model_file_precision(const cspresnet_model *model)
{
    return model ? model->file_precision : CSPRESNET_PRECISION_FP32;
}

cspresnet_status cspresnet_precision_parse(const char *name, cspresnet_precision *out)
{
    for (unsigned i = 0; name && i < sizeof PRECISION_NAMES / sizeof *PRECISION_NAMES; i++)
        if (strcmp(name, PRECISION_NAMES[i]) == 0) {
            *out = (cspresnet_precision)i;
            return CSPRESNET_OK;
        }
    return CSPRESNET_ERR_ARGUMENT;
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
    if (threads == 0)
        threads = threadpool_default_size();
    cspresnet_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory creating a context");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    ctx->model = model;
    ctx->kernels = kernel_set_select(opt->isa);
    ctx->precision = opt->precision;
    int lowp = opt->precision == CSPRESNET_PRECISION_BF16 || opt->precision == CSPRESNET_PRECISION_INT8;
    if (opt->precision != CSPRESNET_PRECISION_FP32 &&
        (!lowp || !model->prepared ||
         model->prepared_precision != opt->precision || strcmp(model->prepared_isa, ctx->kernels->isa) != 0)) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT,
                  "cspresnet_context_create: precision %s needs the model prepared for it and for kernel set %s "
                  "(cspresnet_model_prepare_ex); it is prepared for %s",
                  cspresnet_precision_name(opt->precision), ctx->kernels->isa,
                  model->prepared ? cspresnet_precision_name(model->prepared_precision) : "nothing");
        cspresnet_context_free(ctx);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    cspresnet_status s = threadpool_create(threads, &ctx->pool, &e);
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
    graph_plan_free(&ctx->plan);
    free(ctx->block);
    free(ctx);
}

const char *cspresnet_context_last_error(const cspresnet_context *ctx)
{
    return ctx ? ctx->err.text : "";
}

size_t cspresnet_context_arena_bytes(const cspresnet_context *ctx)
{
    return ctx ? (size_t)ctx->plan.arena_floats * sizeof(float) : 0;
}

/* The model's packed weights when they are for this context's kernels and precision. */
static const long *prepared_off(const cspresnet_context *ctx)
{
    const cspresnet_model *m = ctx->model;
    int match = m->prepared && strcmp(m->prepared_isa, ctx->kernels->isa) == 0 &&
                m->prepared_precision == ctx->precision;
    return match ? m->prepared_off : NULL;
}

static cspresnet_status plan(cspresnet_context *ctx, int n, int h, int w)
{
    const cspresnet_model *m = ctx->model;
    free(ctx->block);
    ctx->block = NULL;
    graph_plan_free(&ctx->plan);
    ctx->plan_n = ctx->plan_h = ctx->plan_w = 0;
    plan_env env = {GRAPH_EVAL, ctx->kernels, threadpool_size(ctx->pool), 1, ctx->precision, prepared_off(ctx)};
    tshape input = {n, MODEL_INPUT_CHANNELS, h, w};
    cspresnet_status s = graph_plan_make(&m->g, &env, &input, 0, 0, &ctx->plan, &ctx->err);
    if (s != CSPRESNET_OK)
        return s;
    double bytes = (double)ctx->plan.block_floats * sizeof(float);
    if (bytes > (double)((size_t)1 << 46))
        return error_set(&ctx->err, CSPRESNET_ERR_MEMORY,
                         "input %dx3x%dx%d needs %.1f GiB of activations; refused", n, h, w,
                         bytes / (1024.0 * 1024.0 * 1024.0));
    ctx->block = aligned_alloc(64, ((size_t)ctx->plan.block_floats * sizeof(float) + 63) & ~(size_t)63);
    if (!ctx->block)
        return error_set(&ctx->err, CSPRESNET_ERR_MEMORY,
                         "out of memory: input %dx3x%dx%d needs %.1f MiB of activations", n, h, w,
                         bytes / (1024.0 * 1024.0));
    ctx->plan_n = n;
    ctx->plan_h = h;
    ctx->plan_w = w;
    return CSPRESNET_OK;
}

static graph_runner runner(const cspresnet_context *ctx, const float *input)
{
    const cspresnet_model *m = ctx->model;
    const long *off = prepared_off(ctx);
    return (graph_runner){&m->g, &ctx->plan, ctx->block, m->params, m->weights, NULL, input,
                          {.pool = ctx->pool, .kernels = ctx->kernels}, NULL, ctx->prof,
                          off ? m->prepared : NULL, off, ctx->observe, ctx->observe_arg};
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
    const graph *g = &ctx->model->g;
    graph_runner run = runner(ctx, input);
    graph_forward(&run, 0, g->n_nodes, 0, 0);
    for (int r = 0; r < g->n_outputs; r++) {
        tensor4 v = graph_view(&run, g->outputs[r], 0);
        outs[r] = (cspresnet_output){g->output_tag[r], g->output_stride[r], v.n, v.c, v.h, v.w, v.data};
    }
    *n_out = g->n_outputs;
    ctx->err.text[0] = '\0';
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_detector_forward(cspresnet_context *ctx, const float *input, int n, int h, int w,
                                            const float **boxes, const float **scores, int *anchors,
                                            int *classes)
{
    if (!ctx)
        return CSPRESNET_ERR_ARGUMENT;
    if (!ctx->model->det)
        return error_set(&ctx->err, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_detector_forward: the model is a backbone, not a detector "
                         "(load it with cspresnet_model_load_detector)");
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    cspresnet_status s = cspresnet_forward(ctx, input, n, MODEL_INPUT_CHANNELS, h, w, outs, &n_out);
    if (s != CSPRESNET_OK)
        return s;
    if (boxes)
        *boxes = outs[0].data;
    if (scores)
        *scores = outs[1].data;
    if (anchors)
        *anchors = outs[0].c;
    if (classes)
        *classes = outs[1].c;
    return CSPRESNET_OK;
}

void cspresnet_context_set_profile(cspresnet_context *ctx, int on)
{
    if (!ctx)
        return;
    free(ctx->prof);
    ctx->prof = on ? calloc((size_t)ctx->model->g.n_nodes, sizeof *ctx->prof) : NULL;
}

int cspresnet_context_profile(const cspresnet_context *ctx, int i, const char **name,
                              double *seconds, double *flops)
{
    if (!ctx)
        return 0;
    const graph *g = &ctx->model->g;
    if (i < 0 || i >= g->n_nodes)
        return g->n_nodes;
    const gnode *nd = &g->nodes[i];
    if (name)
        *name = nd->name;
    if (seconds)
        *seconds = ctx->prof ? ctx->prof[i] : 0.0;
    if (flops) {
        *flops = 0.0;
        if (nd->op->macs && ctx->plan_n > 0 && nd->op == &op_conv2d) {
            tshape in[GN_MAX_IN];
            for (int j = 0; j < nd->n_in; j++)
                in[j] = ctx->plan.t[nd->in[j]].s;
            *flops = 2.0 * nd->op->macs(nd, in, &ctx->plan.t[nd->out].s);
        }
    }
    return g->n_nodes;
}

void context_set_observer(cspresnet_context *ctx, graph_observe_fn fn, void *arg)
{
    ctx->observe = fn;
    ctx->observe_arg = arg;
}

const char *cspresnet_context_isa(const cspresnet_context *ctx)
{
    return ctx ? ctx->kernels->isa : "";
}
