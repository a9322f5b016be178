/*
 * detector_config.c - the public detector architecture (cspresnet_detector_config):
 * upstream's scaling and the released presets (SPEC §5), a loaded detector's, and the
 * check and conversion into the builders' detector_config.
 */
#include <string.h>

#include "model/detector_config.h"

static const int t_neck_base[DET_LEVELS] = {384, 384, 384};

static cspresnet_status from_internal(cspresnet_detector_config *out, const cspresnet_config *backbone,
                                      const detector_config *dc)
{
    memset(out, 0, sizeof *out);
    out->backbone = *backbone;
    memcpy(out->neck_channels, dc->neck_out, sizeof out->neck_channels);
    out->neck_blocks = dc->neck_blocks;
    out->spp = dc->spp;
    out->num_classes = dc->num_classes;
    out->reg_max = dc->reg_max;
    out->head_attn = (cspresnet_head_attn)dc->attn_conv;
    return CSPRESNET_OK;
}

static cspresnet_status scaled(cspresnet_detector_config *cfg, double width, double depth, const int *neck_base,
                               det_attn_conv attn)
{
    cspresnet_config b;
    detector_config dc;
    if (!cfg || cspresnet_config_scaled(&b, width, depth) != CSPRESNET_OK ||
        detector_config_scaled(&dc, width, depth, neck_base, &b.channels[2], 80, 16, attn) != CSPRESNET_OK)
        return CSPRESNET_ERR_ARGUMENT;
    return from_internal(cfg, &b, &dc);
}

cspresnet_status cspresnet_detector_config_scaled(cspresnet_detector_config *cfg, double width_mult,
                                                  double depth_mult)
{
    return scaled(cfg, width_mult, depth_mult, NULL, DET_ATTN_CONVBN);
}

cspresnet_status cspresnet_detector_config_preset(const char *name, cspresnet_detector_config *cfg)
{
    static const struct {
        const char *name;
        double width, depth;
    } presets[] = {{"t", 0.375, 0.33}, {"s", 0.50, 0.33}, {"m", 0.75, 0.67}, {"l", 1.00, 1.00}, {"x", 1.25, 1.33}};
    cspresnet_config b;
    if (!name || !cfg || cspresnet_config_preset(name, &b) != CSPRESNET_OK)
        return CSPRESNET_ERR_ARGUMENT;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0) {
            int tiny = name[0] == 't';
            cspresnet_status s = scaled(cfg, presets[i].width, presets[i].depth, tiny ? t_neck_base : NULL,
                                        tiny ? DET_ATTN_REPVGG : DET_ATTN_CONVBN);
            cfg->backbone = b;
            return s;
        }
    return CSPRESNET_ERR_ARGUMENT;
}

cspresnet_status cspresnet_model_detector_config(const cspresnet_model *model, cspresnet_detector_config *cfg)
{
    if (!model || !model->det || !cfg)
        return CSPRESNET_ERR_ARGUMENT;
    return from_internal(cfg, &model->cfg, model->det);
}

cspresnet_status detector_config_check(const cspresnet_detector_config *in, cspresnet_config *backbone,
                                       detector_config *dc, error_buf *err)
{
    if (!in)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "the detector configuration must not be NULL");
    *backbone = in->backbone;
    static const int stages[3] = {1, 2, 3};
    memcpy(backbone->return_idx, stages, sizeof stages);
    backbone->num_return = 3;
    cspresnet_status s = cspresnet_config_validate(backbone, err->text, sizeof err->text);
    if (s != CSPRESNET_OK) {
        error_prefix(err, "backbone");
        return s;
    }
    for (int i = 0; i < DET_LEVELS; i++)
        if (in->neck_channels[i] < 2 || in->neck_channels[i] > (1 << 20))
            return error_set(err, CSPRESNET_ERR_CONFIG, "neck channels %d at stride %d: must be 2 to %d",
                             in->neck_channels[i], 32 >> i, 1 << 20);
    if (in->neck_blocks < 1 || in->neck_blocks > 1024)
        return error_set(err, CSPRESNET_ERR_CONFIG, "neck blocks %d: must be 1 to 1024", in->neck_blocks);
    if (in->num_classes < 1 || in->num_classes > (1 << 20))
        return error_set(err, CSPRESNET_ERR_CONFIG, "%d classes: must be 1 to %d", in->num_classes, 1 << 20);
    if (in->reg_max < 0 || in->reg_max > 1024)
        return error_set(err, CSPRESNET_ERR_CONFIG, "reg_max %d: must be 0 to 1024", in->reg_max);
    if ((unsigned)in->head_attn > CSPRESNET_HEAD_ATTN_NONE)
        return error_set(err, CSPRESNET_ERR_CONFIG, "head_attn %d is none of the three kinds", (int)in->head_attn);
    memset(dc, 0, sizeof *dc);
    memcpy(dc->backbone_out, &backbone->channels[2], sizeof dc->backbone_out);
    memcpy(dc->neck_out, in->neck_channels, sizeof dc->neck_out);
    dc->neck_blocks = in->neck_blocks;
    dc->spp = in->spp != 0;
    dc->num_classes = in->num_classes;
    dc->reg_max = in->reg_max;
    dc->attn_conv = (det_attn_conv)in->head_attn;
    return CSPRESNET_OK;
}
