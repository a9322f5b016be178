/*
 * init.c - deterministic pseudo-random weights for models built from a config.
 *
 * Conv weights are uniform in +-sqrt(6 / fan_in) (He-uniform, so activations keep
 * their scale through the depth of the network), BN is the identity (weight 1, bias
 * 0, _mean 0, _variance 1), alpha 1, the ESE fc small. A splitmix64 stream seeded by
 * the caller makes the weights reproducible on every platform.
 */
#include <math.h>

#include "core/rng.h"
#include "model/model.h"

/* Uniform in [-1, 1). */
static float uniform_pm1(uint64_t *state)
{
    return (float)((double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

void model_init_random(cspresnet_model *m, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        float *w = param_at(m->weights, p);
        switch (p->role) {
        case PARAM_CONV_WEIGHT:
        case PARAM_FC_WEIGHT: {
            long fan_in = p->shape[1] * p->shape[2] * p->shape[3];
            float bound = sqrtf(6.0f / (float)fan_in) * (p->role == PARAM_FC_WEIGHT ? 0.1f : 1.0f);
            for (long j = 0; j < p->numel; j++)
                w[j] = bound * uniform_pm1(&state);
            break;
        }
        case PARAM_BN_WEIGHT:
        case PARAM_BN_VARIANCE:
        case PARAM_ALPHA:
            for (long j = 0; j < p->numel; j++)
                w[j] = 1.0f;
            break;
        case PARAM_BN_BIAS:
        case PARAM_BN_MEAN:
        case PARAM_FC_BIAS:
        case PARAM_CONV_BIAS:
            for (long j = 0; j < p->numel; j++)
                w[j] = 0.0f;
            break;
        }
    }
}

cspresnet_status cspresnet_model_create(const cspresnet_config *cfg, uint64_t seed,
                                        cspresnet_model **out, char *err, size_t err_size)
{
    if (!out)
        return CSPRESNET_ERR_ARGUMENT;
    *out = NULL;
    cspresnet_status s = cspresnet_config_validate(cfg, err, err_size);
    if (s != CSPRESNET_OK)
        return s;
    error_buf e;
    s = model_build(cfg, 0, out, &e);
    if (s != CSPRESNET_OK) {
        error_copy_out(&e, err, err_size);
        return s;
    }
    model_init_random(*out, seed);
    return CSPRESNET_OK;
}
