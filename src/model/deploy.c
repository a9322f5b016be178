/*
 * deploy.c - the fused network: BN folded into convs, RepVGG branches merged.
 *
 * Upstream (RepVggBlock._fuse_bn_tensor / get_equivalent_kernel_bias), in float32:
 *   std = sqrt(_variance + eps); t = weight / std
 *   kernel' = kernel * t;  bias' = bias - _mean * weight / std   (left to right)
 *   RepVGG: K = K3' + alpha * pad(K1'), b = b3' + alpha * b1'   (without alpha: K3' + pad(K1'))
 * Every ConvBNLayer is folded with the same rule (upstream keeps BN there; the
 * arithmetic is that of the RepVGG branches), in a detector's neck and head too (no
 * alpha there); convs without BN (the ESE fc, the head's pred_cls / pred_reg and
 * proj_conv) are copied. The operations are written one by one so
 * that the compiler cannot contract them; C11 mode keeps -ffp-contract=off.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pages.h"
#include "model/detector_infer.h"
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

/* Copies d's parameter i from src's parameter of the same key and size (the ESE fc, a
 * detector's pred_cls / pred_reg convs and proj_conv: layers without BN). */
static int copy_param(const cspresnet_model *src, cspresnet_model *d, size_t i, int fill, int release)
{
    const param_info *p = &d->params[i];
    long si = model_find_param(src, p->key);
    if (si < 0 || src->params[si].numel != p->numel)
        return 0;
    if (fill)
        memcpy(param_at(d->weights, p), param_at(src->weights, &src->params[si]), sizeof(float) * (size_t)p->numel);
    if (fill && release)
        release_param(src, si);
    return 1;
}

/* How d's conv weight `key` comes from src: its layer path (key less "conv.weight")
 * into path, then 2 a RepVGG block (path + "conv1.*", "conv2.*"), 1 a ConvBNLayer
 * (path + "bn.*"), 0 a conv without BN, copied as it is. */
static int conv_source(const cspresnet_model *src, const char *key, char path[MODEL_KEY_MAX])
{
    char probe[MODEL_KEY_MAX];
    size_t klen = strlen(key), tail = strlen("conv.weight");
    if (klen < tail || strcmp(key + klen - tail, "conv.weight") != 0)
        return 0;
    memcpy(path, key, klen - tail);
    path[klen - tail] = '\0';
    snprintf(probe, sizeof probe, "%sconv1.conv.weight", path);
    if (model_find_param(src, probe) >= 0)
        return 2;
    snprintf(probe, sizeof probe, "%sbn.weight", path);
    return model_find_param(src, probe) >= 0 ? 1 : 0;
}

/* Writes every parameter of the deployed model d from src. fill 0: only checks that
 * every source layer exists (nothing written); release: src's layers are released
 * as they are consumed. Returns the index of the failing parameter, or -1. */
static long deploy_params(const cspresnet_model *src, cspresnet_model *d, float *tmp, long max_c,
                          int fill, int release)
{
    for (size_t i = 0; i < d->n_params; i++) {
        const param_info *p = &d->params[i];
        char path[MODEL_KEY_MAX];
        int kind = p->role == PARAM_CONV_WEIGHT ? conv_source(src, p->key, path) : 0;
        if (kind == 0) {
            /* a folded conv's bias was written with its weight (src has no such key) */
            int folded_bias = p->role == PARAM_CONV_BIAS && i > 0 && d->params[i - 1].role == PARAM_CONV_WEIGHT &&
                              model_find_param(src, p->key) < 0 && conv_source(src, d->params[i - 1].key, path);
            if (!folded_bias && !copy_param(src, d, i, fill, release))
                return (long)i;
            continue;
        }
        const param_info *pb = &d->params[i + 1]; /* conv.bias follows conv.weight */
        long cout = p->shape[0], per_out = p->shape[1] * p->shape[2] * p->shape[3];
        float *kernel = fill ? param_at(d->weights, p) : NULL, *bias = param_at(d->weights, pb);
        int ok = i + 1 < d->n_params && pb->role == PARAM_CONV_BIAS && pb->numel == cout &&
                 (kind == 2 ? fuse_repvgg(src, path, kernel, bias, cout, tmp, tmp + max_c * max_c, release)
                            : fold_conv_bn(src, path, kernel, bias, cout, per_out, release));
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
    cspresnet_status s;
    if (src->det) {
        detector_config dc = *src->det;
        dc.deployed = 1;
        s = model_build_detector(&src->cfg, &dc, &d, e);
    } else {
        s = model_build(&src->cfg, 1, &d, e);
    }
    if (s != CSPRESNET_OK)
        return s;
    /* a RepVGG block's 1x1 branch is c x c for c its output channels */
    long max_c = 1;
    for (size_t i = 0; i < d->n_params; i++)
        if (d->params[i].role == PARAM_CONV_WEIGHT && d->params[i].shape[0] > max_c)
            max_c = d->params[i].shape[0];
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
