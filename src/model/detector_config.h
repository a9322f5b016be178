/*
 * detector_config.h - the public detector architecture (cspresnet_detector_config)
 * into the builders' detector_config (detector_config.c).
 */
#ifndef CSPRESNET_MODEL_DETECTOR_CONFIG_H
#define CSPRESNET_MODEL_DETECTOR_CONFIG_H

#include "model/detector_infer.h"

/* Checks in (the backbone as cspresnet_config_validate, neck widths >= 2, blocks,
 * classes, reg_max and head_attn in range; messages name the field and value) and
 * gives the backbone (return_idx 1, 2, 3: the neck's stages) and the neck and head. */
cspresnet_status detector_config_check(const cspresnet_detector_config *in, cspresnet_config *backbone,
                                       detector_config *dc, error_buf *err);

#endif
