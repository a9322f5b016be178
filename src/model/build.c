/*
 * build.c - a model from a config: the backbone's builder (backbone.c) emits its
 * parameters and graph; then the weight arena (zeroed) is allocated, unless only the
 * layout is wanted (a summary). Also the
 * model's public accessors and its release.
 */
#include <stdlib.h>
#include <string.h>

#include "model/builder.h"

static cspresnet_status build_backbone(const cspresnet_config *cfg, model_form form, int weights,
                                       cspresnet_model **out, error_buf *err)
{
    *out = NULL;
    cspresnet_model *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the model");
    m->cfg = *cfg;
    m->deployed = form == MODEL_FORM_DEPLOYED;
    builder b = {.m = m, .fuse_repvgg = form == MODEL_FORM_REPVGG_FUSED, .no_weights = !weights};
    bld_tensor(&b, MODEL_INPUT_CHANNELS); /* tensor 0: the caller's input */
    if (!b.failed)
        m->g.tensors[0].seg = -1;
    backbone_build(&b, "");
    cspresnet_status s = bld_finish(&b, err);
    if (s != CSPRESNET_OK) {
        cspresnet_model_free(m);
        return s;
    }
    *out = m;
    return CSPRESNET_OK;
}

cspresnet_status model_build(const cspresnet_config *cfg, int deployed, cspresnet_model **out,
                             error_buf *err)
{
    return build_backbone(cfg, deployed ? MODEL_FORM_DEPLOYED : MODEL_FORM_TRAINED, 1, out, err);
}

cspresnet_status model_build_layout(const cspresnet_config *cfg, const struct detector_config *dc, model_form form,
                                    cspresnet_model **out, error_buf *err)
{
    return dc ? detector_build(cfg, dc, form, 0, out, err) : build_backbone(cfg, form, 0, out, err);
}

long model_find_param(const cspresnet_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].key, key) == 0)
            return (long)i;
    return -1;
}

void cspresnet_model_free(cspresnet_model *model)
{
    if (!model)
        return;
    free(model->params);
    free(model->det);
    if (model->weights_release)
        model->weights_release(model->weights_owner);
    else
        free(model->weights);
    if (model->act_mean)   /* before graph_free, which clears n_nodes */
        for (int i = 0; i < model->g.n_nodes; i++)
            free(model->act_mean[i]);
    free(model->act_mean);
    graph_free(&model->g);
    free(model->prepared);
    free(model->prepared_off);
    free(model->act_scale);
    free(model->act_zero);
    free(model->qw);
    free(model->qw_scale);
    free(model->qw_corr);
    free(model->qw_block);
    free(model);
}

const cspresnet_config *cspresnet_model_config(const cspresnet_model *model)
{
    return model ? &model->cfg : NULL;
}

size_t cspresnet_model_param_count(const cspresnet_model *model)
{
    return model ? model->n_params : 0;
}

cspresnet_status cspresnet_model_param(const cspresnet_model *model, size_t i, const char **key,
                                       int *ndim, int64_t shape[4], const float **data,
                                       int *trainable)
{
    if (!model || i >= model->n_params)
        return CSPRESNET_ERR_ARGUMENT;
    const param_info *p = &model->params[i];
    if (key)
        *key = p->key;
    if (ndim)
        *ndim = p->ndim;
    if (shape)
        for (int d = 0; d < 4; d++)
            shape[d] = d < p->ndim ? p->shape[d] : 1;
    if (data)
        *data = param_at(model->weights, p);
    if (trainable)
        *trainable = p->trainable;
    return CSPRESNET_OK;
}
