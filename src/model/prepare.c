/*
 * prepare.c - the load-time step that packs weights for the kernels that will run
 * them (each op's prepare: a conv's Winograd U, 4x its 3x3 weights, or for bf16
 * contexts its weights in bfloat16, conv2d_bf16.c and conv2d_bf16_taps.c, for int8
 * ones its quantized rows with their scales, conv2d_int8.c), so that no forward
 * transforms them again. Nodes are packed in graph order while the total fits
 * the caller's budget. The packed data belongs to the model and, like its weights, is
 * only read by contexts, so one prepared model still serves many threads. A context
 * uses it when its kernel table and precision are the ones the model was prepared for.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pages.h"
#include "model/model.h"

static void drop(cspresnet_model *m)
{
    free(m->prepared);
    free(m->prepared_off);
    m->prepared = NULL;
    m->prepared_off = NULL;
    m->prepared_floats = 0;
    m->prepared_isa = NULL;
    m->prepared_precision = CSPRESNET_PRECISION_FP32;
}

/* Node i's int8 scale, zero point and stored weights, when the model has them. */
static void node_env(const cspresnet_model *m, int i, prepare_env *pe)
{
    pe->act_scale = m->act_scale ? m->act_scale[i] : 0.0f;
    pe->act_zero = m->act_zero ? m->act_zero[i] : 128;
    pe->act_mean = m->act_mean ? m->act_mean[i] : NULL;
    pe->qw = m->qw ? m->qw[i] : NULL;
    pe->qw_scale = m->qw_scale ? m->qw_scale[i] : NULL;
    pe->qw_corr = m->qw_corr ? m->qw_corr[i] : NULL;
}

void cspresnet_prepare_options_init(cspresnet_prepare_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->budget_bytes = SIZE_MAX;
}

cspresnet_status cspresnet_model_prepare(cspresnet_model *model, const char *isa, size_t budget_bytes,
                                         char *err, size_t err_size)
{
    cspresnet_prepare_options opt = {isa, budget_bytes, CSPRESNET_PRECISION_FP32};
    return cspresnet_model_prepare_ex(model, &opt, err, err_size);
}

cspresnet_status cspresnet_model_prepare_ex(cspresnet_model *model, const cspresnet_prepare_options *opt,
                                            char *err, size_t err_size)
{
    error_buf e;
    if (!model || !opt || (unsigned)opt->precision > CSPRESNET_PRECISION_INT8) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT,
                  "cspresnet_model_prepare: model and options must not be NULL, the precision fp32, bf16 or int8");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    if (opt->precision == CSPRESNET_PRECISION_INT8 && !model->act_scale) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT,
                  "cspresnet_model_prepare: int8 needs activation scales: calibrate the model first "
                  "(cspresnet_model_calibrate) or load a quantized file");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    drop(model);
    const graph *g = &model->g;
    const kernel_set *kt = kernel_set_select(opt->isa);
    prepare_env pe = {kt, opt->precision, 0.0f, 128, NULL, NULL, NULL, NULL};
    long *off = malloc(sizeof(long) * (size_t)(g->n_nodes ? g->n_nodes : 1));
    if (!off) {
        error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory preparing the model");
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    size_t budget_floats = opt->budget_bytes / sizeof(float);
    long total = 0, budget = budget_floats > (size_t)LONG_MAX ? LONG_MAX : (long)budget_floats;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        node_env(model, i, &pe);
        long f = nd->op->prepare_floats ? nd->op->prepare_floats(nd, model->params, &pe) : 0;
        f = (f + 15) & ~15L;
        off[i] = f > 0 && total + f <= budget ? total : -1;
        total += off[i] >= 0 ? f : 0;
    }
    if (total == 0) {
        free(off);
        return CSPRESNET_OK;
    }
    model->prepared = aligned_alloc(64, (size_t)total * sizeof(float));
    if (!model->prepared) {
        free(off);
        error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory: preparing the model needs %.1f MiB",
                  (double)total * sizeof(float) / (1024.0 * 1024.0));
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        node_env(model, i, &pe);
        if (off[i] < 0)
            continue;
        const gnode *nd = &g->nodes[i];
        nd->op->prepare(nd, model->params, model->weights, &pe, model->prepared + off[i]);
        /* A bf16 or int8 conv runs from its packed weights: where the weights are a
         * read-only file mapping, their pages leave memory now (they come back from the
         * file if anything reads them again), so the model holds the packed copy, not
         * both. An allocated arena is kept: its pages would read back as zeros. */
        if (model->weights_release && opt->precision != CSPRESNET_PRECISION_FP32 && nd->op == &op_conv2d) {
            const param_info *w = &model->params[nd->param[0]];
            pages_release(param_at(model->weights, w), (size_t)w->numel * elem_size(w->dt));
        }
    }
    model->prepared_off = off;
    model->prepared_floats = total;
    model->prepared_isa = kt->isa;
    model->prepared_precision = opt->precision;
    return CSPRESNET_OK;
}

size_t cspresnet_model_prepared_bytes(const cspresnet_model *model)
{
    return model ? (size_t)model->prepared_floats * sizeof(float) : 0;
}
