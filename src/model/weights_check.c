/*
 * weights_check.c - refusing loaded weights that can only give NaN.
 *
 * A NaN or Inf anywhere in a conv, BN or ESE tensor, or a BN _variance below zero
 * (sqrt(_variance + eps) is NaN once it is below -eps, and no trained network has one),
 * spreads through the whole network: every output would be NaN while the run looks
 * successful. Both loaders (.pdparams, safetensors) call this once the weights are in
 * place; the message names the file's key and the first bad element's index.
 */
#include <math.h>
#include <stdio.h>

#include "model/model.h"

/* "[i, j, k, l]" of flat index i in a C-order tensor of shape p->shape. */
static void index_str(const param_info *p, long flat, char *out, size_t n)
{
    long idx[4] = {0};
    long rest = flat;
    for (int d = p->ndim - 1; d >= 0; d--) {
        long dim = p->shape[d] > 0 ? (long)p->shape[d] : 1;
        idx[d] = rest % dim;
        rest /= dim;
    }
    size_t used = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < p->ndim && used < n; d++)
        used += (size_t)snprintf(out + used, n - used, "%s%ld", d ? ", " : "", idx[d]);
    if (used < n)
        snprintf(out + used, n - used, "]");
}

cspresnet_status model_check_weights(const cspresnet_model *m, const char *path, const char *key_prefix,
                                     error_buf *err)
{
    if (!key_prefix)
        key_prefix = "";
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        const float *w = param_at(m->weights, p);
        long first = -1, count = 0;
        for (long k = 0; k < p->numel; k++)
            if (!isfinite(w[k]) && count++ == 0)
                first = k;
        char where[96];
        if (count) {
            index_str(p, first, where, sizeof where);
            return error_set(err, CSPRESNET_ERR_WEIGHTS,
                             "%s: '%s%s' holds %s at index %s (%ld non-finite value%s in the tensor): refused, "
                             "every output would be NaN",
                             path, key_prefix, p->key, isnan(w[first]) ? "NaN" : w[first] > 0 ? "+Inf" : "-Inf",
                             where, count, count > 1 ? "s" : "");
        }
        if (p->role != PARAM_BN_VARIANCE)
            continue;
        for (long k = 0; k < p->numel; k++)
            if (w[k] < 0.0f) {
                for (long r = k; r < p->numel; r++)
                    count += w[r] < 0.0f;
                index_str(p, k, where, sizeof where);
                return error_set(err, CSPRESNET_ERR_WEIGHTS,
                                 "%s: '%s%s' is negative (%g) at index %s (%ld negative value%s in the tensor): a "
                                 "BN variance must be >= 0; refused, its channel would be NaN",
                                 path, key_prefix, p->key, (double)w[k], where, count, count > 1 ? "s" : "");
            }
    }
    return CSPRESNET_OK;
}
