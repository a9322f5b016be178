/*
 * config.c - presets, width/depth scaling with Python's rounding, validation, and
 * activation names.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const int base_layers[CSPRESNET_NUM_STAGES] = {3, 6, 6, 3};
static const int base_channels[CSPRESNET_NUM_STAGES + 1] = {64, 128, 256, 512, 1024};

static const char *const act_names[CSPRESNET_ACT_COUNT] = {
    "swish", "relu", "leaky_relu", "mish", "hardswish", "gelu", "relu6", "sigmoid", "none"};

const char *cspresnet_act_name(cspresnet_act act)
{
    return (unsigned)act < CSPRESNET_ACT_COUNT ? act_names[act] : NULL;
}

cspresnet_status cspresnet_act_parse(const char *name, cspresnet_act *out)
{
    if (!name || !out)
        return CSPRESNET_ERR_ARGUMENT;
    for (int i = 0; i < CSPRESNET_ACT_COUNT; i++)
        if (strcmp(name, act_names[i]) == 0) {
            *out = (cspresnet_act)i;
            return CSPRESNET_OK;
        }
    if (strcmp(name, "silu") == 0) {
        *out = CSPRESNET_ACT_SWISH;
        return CSPRESNET_OK;
    }
    if (strcmp(name, "identity") == 0 || strcmp(name, "linear") == 0) {
        *out = CSPRESNET_ACT_NONE;
        return CSPRESNET_OK;
    }
    return CSPRESNET_ERR_ARGUMENT;
}

/* Python's round() of a double to an int: ties to even, as rint in the default
 * rounding mode. */
static int python_round(double v) { return (int)rint(v); }

cspresnet_status cspresnet_config_scaled(cspresnet_config *cfg, double width_mult,
                                         double depth_mult)
{
    if (!cfg || !(width_mult > 0.0) || !(depth_mult > 0.0) || !isfinite(width_mult) ||
        !isfinite(depth_mult) || width_mult > 64.0 || depth_mult > 64.0)
        return CSPRESNET_ERR_ARGUMENT;
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++) {
        int c = python_round(base_channels[i] * width_mult);
        cfg->channels[i] = c > 1 ? c : 1;
    }
    for (int i = 0; i < CSPRESNET_NUM_STAGES; i++) {
        int l = python_round(base_layers[i] * depth_mult);
        cfg->layers[i] = l > 1 ? l : 1;
    }
    cfg->act = CSPRESNET_ACT_SWISH;
    cfg->use_large_stem = 1;
    cfg->use_alpha = 0;
    cfg->num_return = 3;
    cfg->return_idx[0] = 1;
    cfg->return_idx[1] = 2;
    cfg->return_idx[2] = 3;
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_config_preset(const char *name, cspresnet_config *cfg)
{
    static const struct {
        const char *name;
        double width, depth;
        int alpha;
    } presets[] = {
        {"t", 0.375, 0.33, 1}, {"s", 0.50, 0.33, 0}, {"m", 0.75, 0.67, 0},
        {"l", 1.00, 1.00, 0},  {"x", 1.25, 1.33, 0},
    };
    if (!name || !cfg)
        return CSPRESNET_ERR_ARGUMENT;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0) {
            cspresnet_status s = cspresnet_config_scaled(cfg, presets[i].width, presets[i].depth);
            cfg->use_alpha = presets[i].alpha;
            return s;
        }
    return CSPRESNET_ERR_ARGUMENT;
}

int model_stage_mid(const cspresnet_config *cfg, int stage)
{
    return (cfg->channels[stage] + cfg->channels[stage + 1]) / 2;
}

int model_stem_mid(const cspresnet_config *cfg) { return cfg->channels[0] / 2; }

cspresnet_status cspresnet_config_validate(const cspresnet_config *cfg, char *err,
                                           size_t err_size)
{
    error_buf e;
    cspresnet_status s = CSPRESNET_OK;
    if (!cfg) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "config is NULL");
        goto out;
    }
    for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++)
        if (cfg->channels[i] < 1 || cfg->channels[i] > 65536) {
            s = error_set(&e, CSPRESNET_ERR_CONFIG, "channels[%d] = %d is out of range 1..65536", i,
                          cfg->channels[i]);
            goto out;
        }
    if (cfg->channels[0] < 2) {
        s = error_set(&e, CSPRESNET_ERR_CONFIG,
                      "stem: channels[0] = %d gives a stem of %d channels (channels[0] // 2); need >= 2",
                      cfg->channels[0], cfg->channels[0] / 2);
        goto out;
    }
    for (int i = 0; i < CSPRESNET_NUM_STAGES; i++) {
        if (cfg->layers[i] < 1 || cfg->layers[i] > 1024) {
            s = error_set(&e, CSPRESNET_ERR_CONFIG, "stage %d: layers = %d is out of range 1..1024", i,
                          cfg->layers[i]);
            goto out;
        }
        int mid = model_stage_mid(cfg, i);
        if (mid % 2 != 0 || mid < 2) {
            s = error_set(&e, CSPRESNET_ERR_CONFIG,
                          "stage %d: CSP mid width (%d + %d) // 2 = %d is %s, so concat(conv1, blocks) "
                          "gives %d channels and the ESE conv expects %d; upstream cannot run this config",
                          i, cfg->channels[i], cfg->channels[i + 1], mid, mid < 2 ? "below 2" : "odd",
                          2 * (mid / 2), mid);
            goto out;
        }
    }
    if ((unsigned)cfg->act >= CSPRESNET_ACT_COUNT) {
        s = error_set(&e, CSPRESNET_ERR_CONFIG, "activation %d is unknown", (int)cfg->act);
        goto out;
    }
    if (cfg->num_return < 1 || cfg->num_return > CSPRESNET_MAX_OUTPUTS) {
        s = error_set(&e, CSPRESNET_ERR_CONFIG, "return_idx has %d entries; need 1..%d",
                      cfg->num_return, CSPRESNET_MAX_OUTPUTS);
        goto out;
    }
    for (int i = 0; i < cfg->num_return; i++) {
        int r = cfg->return_idx[i];
        if (r < 0 || r >= CSPRESNET_NUM_STAGES) {
            s = error_set(&e, CSPRESNET_ERR_CONFIG, "return_idx entry %d is out of range 0..%d", r,
                          CSPRESNET_NUM_STAGES - 1);
            goto out;
        }
        if (i > 0 && r <= cfg->return_idx[i - 1]) {
            s = error_set(&e, CSPRESNET_ERR_CONFIG,
                          "return_idx must be strictly ascending (got %d after %d)", r,
                          cfg->return_idx[i - 1]);
            goto out;
        }
    }
out:
    if (s != CSPRESNET_OK)
        error_copy_out(&e, err, err_size);
    else if (err && err_size)
        err[0] = '\0';
    return s;
}

int cspresnet_stage_size(int input_size, int stage)
{
    int s = input_size;
    for (int i = 0; i < stage + 2; i++)
        s = (s + 1) / 2;
    return s;
}
