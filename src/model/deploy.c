/*
 * deploy.c - the fused network: BN folded into convs, RepVGG branches merged.
 *
 * Upstream (RepVggBlock._fuse_bn_tensor / get_equivalent_kernel_bias), in float32:
 *   std = sqrt(_variance + eps); t = weight / std
 *   kernel' = kernel * t;  bias' = bias - _mean * weight / std   (left to right)
 *   RepVGG: K = K3' + alpha * pad(K1'), b = b3' + alpha * b1'   (without alpha: K3' + pad(K1'))
 * Every ConvBNLayer is folded with the same rule (upstream keeps BN there; the
 * arithmetic is that of the RepVGG branches). The operations are written one by one so
 * that the compiler cannot contract them; C11 mode keeps -ffp-contract=off.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pages.h"
#include "model/model.h"

/* Gives the pages wholly inside parameter idx of src back to the system (their
 * contents become zeros): only for deploy_replace, which owns src and frees it after. */
static void release_param(const cspresnet_model *src, long idx)
{
    pages_release(param_at(src->weights, &src->params[idx]), sizeof(float) * (size_t)src->params[idx].numel);
}

/* Folds ConvBNLayer `path` (prefix ending in '.') of src into kernel/bias (cout x ksz).
 * kernel NULL: only checks that the layer exists with that size. release: the layer's
 * source parameters are released once read. */
static int fold_conv_bn(const cspresnet_model *src, const char *path, float *kernel, float *bias,
                        long cout, long per_out, int release)
{
    char key[MODEL_KEY_MAX];
    long idx[5];
    static const char *const parts[5] = {"conv.weight", "bn.weight", "bn.bias", "bn._mean", "bn._variance"};
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "%s%s", path, parts[i]);
        idx[i] = model_find_param(src, key);
        if (idx[i] < 0)
            return 0;
    }
    const float *W = src->weights;
    const float *k = param_at(W, &src->params[idx[0]]), *gamma = param_at(W, &src->params[idx[1]]),
                *beta = param_at(W, &src->params[idx[2]]), *mean = param_at(W, &src->params[idx[3]]),
                *var = param_at(W, &src->params[idx[4]]);
    if (src->params[idx[0]].numel != cout * per_out)
        return 0;
    if (!kernel)
        return 1;
    const float eps = 1e-5f;
    for (long o = 0; o < cout; o++) {
        float var_eps = var[o] + eps;
        float std = sqrtf(var_eps);
        float t = gamma[o] / std;
        for (long j = 0; j < per_out; j++)
            kernel[o * per_out + j] = k[o * per_out + j] * t;
        float mean_gamma = mean[o] * gamma[o];
        float shift = mean_gamma / std;
        bias[o] = beta[o] - shift;
    }
    for (int i = 0; release && i < 5; i++)
        release_param(src, idx[i]);
    return 1;
}

static int fuse_repvgg(const cspresnet_model *src, const char *block, float *kernel, float *bias,
                       long c, float *tmp1x1, float *tmp_bias, int release)
{
    char path[MODEL_KEY_MAX], key[MODEL_KEY_MAX];
    snprintf(path, sizeof path, "%sconv1.", block);
    if (!fold_conv_bn(src, path, kernel, bias, c, c * 9, release))
        return 0;
    snprintf(path, sizeof path, "%sconv2.", block);
    if (!fold_conv_bn(src, path, kernel ? tmp1x1 : NULL, tmp_bias, c, c, release))
        return 0;
    if (!kernel)
        return 1;
    snprintf(key, sizeof key, "%salpha", block);
    long ai = model_find_param(src, key);
    for (long o = 0; o < c; o++) {
        for (long i = 0; i < c; i++) {
            float *center = &kernel[(o * c + i) * 9 + 4]; /* pad1 puts K1 at (1, 1) */
            float k1 = tmp1x1[o * c + i];
            if (ai >= 0) {
                float scaled = *param_at(src->weights, &src->params[ai]) * k1;
                *center = *center + scaled;
            } else {
                *center = *center + k1;
            }
        }
        if (ai >= 0) {
            float scaled = *param_at(src->weights, &src->params[ai]) * tmp_bias[o];
            bias[o] = bias[o] + scaled;
        } else {
            bias[o] = bias[o] + tmp_bias[o];
        }
    }
    return 1;
}

/* Writes every parameter of the deployed model d from src. fill 0: only checks that
 * every source layer exists (nothing written); release: src's layers are released
 * as they are consumed. Returns the index of the failing parameter, or -1. */
static long deploy_params(const cspresnet_model *src, cspresnet_model *d, float *tmp, long max_c,
                          int fill, int release)
{
    for (size_t i = 0; i < d->n_params; i++) {
        const param_info *p = &d->params[i];
        float *dst = param_at(d->weights, p);
        if (p->role == PARAM_FC_WEIGHT || p->role == PARAM_FC_BIAS) {
            long si = model_find_param(src, p->key);
            if (si < 0 || src->params[si].numel != p->numel)
                return (long)i;
            if (fill)
                memcpy(dst, param_at(src->weights, &src->params[si]), sizeof(float) * (size_t)p->numel);
            continue;
        }
        if (p->role != PARAM_CONV_WEIGHT)
            continue; /* biases are written with their weights */
        const param_info *pb = &d->params[i + 1]; /* conv.bias follows conv.weight */
        char path[MODEL_KEY_MAX];
        size_t plen = strlen(p->key) - strlen("conv.weight");
        memcpy(path, p->key, plen);
        path[plen] = '\0';
        long cout = p->shape[0], per_out = p->shape[1] * p->shape[2] * p->shape[3];
        float *kernel = fill ? dst : NULL, *bias = param_at(d->weights, pb);
        char probe[MODEL_KEY_MAX];
        snprintf(probe, sizeof probe, "%sconv1.conv.weight", path);
        int ok = model_find_param(src, probe) >= 0
                     ? fuse_repvgg(src, path, kernel, bias, cout, tmp, tmp + max_c * max_c, release)
                     : fold_conv_bn(src, path, kernel, bias, cout, per_out, release);
        if (!ok)
            return (long)i;
    }
    return -1;
}

/* The deployed model of src into *out; release: src's weights are released layer by
 * layer (only after every check and allocation has passed). */
static cspresnet_status deploy(const cspresnet_model *src, int release, cspresnet_model **out, error_buf *e)
{
    cspresnet_model *d = NULL;
    float *tmp = NULL;
    cspresnet_status s = model_build(&src->cfg, 1, &d, e);
    if (s != CSPRESNET_OK)
        return s;
    long max_c = 0;
    for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++)
        if (src->cfg.channels[i] > max_c)
            max_c = src->cfg.channels[i];
    /* the largest 1x1 branch is half x half of a stage's mid width <= max channels */
    tmp = malloc(sizeof(float) * (size_t)(max_c * max_c + max_c));
    if (!tmp) {
        s = error_set(e, CSPRESNET_ERR_MEMORY, "out of memory deploying the model");
        goto done;
    }
    long bad = deploy_params(src, d, tmp, max_c, 0, 0);
    if (bad < 0)
        bad = deploy_params(src, d, tmp, max_c, 1, release);
    if (bad >= 0) {
        s = error_set(e, CSPRESNET_ERR_WEIGHTS, "deploy: cannot fold '%s' (its source layer is missing or "
                      "has another size)", d->params[bad].key);
        goto done;
    }
    *out = d;
    d = NULL;
done:
    free(tmp);
    cspresnet_model_free(d);
    return s;
}

cspresnet_status cspresnet_model_deploy(const cspresnet_model *model, cspresnet_model **out,
                                        char *err, size_t err_size)
{
    error_buf e;
    cspresnet_status s;
    if (!model || !out)
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_deploy: model and out must not be NULL");
    else if ((*out = NULL, model->deployed))
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "the model is already deployed");
    else if (model->det)
        s = error_set(&e, CSPRESNET_ERR_UNSUPPORTED, "deploying a detector is not supported yet");
    else
        s = deploy(model, 0, out, &e);
    if (s != CSPRESNET_OK)
        error_copy_out(&e, err, err_size);
    return s;
}

cspresnet_status cspresnet_model_deploy_replace(cspresnet_model **model, char *err, size_t err_size)
{
    error_buf e;
    cspresnet_status s;
    cspresnet_model *d = NULL;
    if (!model || !*model) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_deploy_replace: model must not be NULL");
    } else if ((*model)->deployed) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "the model is already deployed");
    } else if ((*model)->det) {
        s = error_set(&e, CSPRESNET_ERR_UNSUPPORTED, "deploying a detector is not supported yet");
    } else {
        /* weights it does not own (a mapped file, a caller's buffer) are never released */
        s = deploy(*model, (*model)->weights_release == NULL, &d, &e);
        if (s == CSPRESNET_OK) {
            cspresnet_model_free(*model);
            *model = d;
        }
    }
    if (s != CSPRESNET_OK)
        error_copy_out(&e, err, err_size);
    return s;
}

int cspresnet_model_is_deployed(const cspresnet_model *model) { return model ? model->deployed : 0; }
