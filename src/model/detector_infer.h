/*
 * detector_infer.h - the PP-YOLOE neck (CustomCSPPAN) and head (PPYOLOEHead) read off
 * a checkpoint's key names and shapes (SPEC §5), and the parameter list they imply.
 *
 * The backbone's keys ("backbone.*") are the backbone loader's (load.c); this reads
 * "neck.*" and "yolo_head.*", ignores "yolo_head.anchor_points" / "stride_tensor"
 * (checkpoints before April 2022) and the training-only "aux_*" heads, and counts any
 * other key as unexpected. Nothing is read but the key list; detector_infer_config
 * allocates one byte per key to mark the ones it used.
 */
#ifndef CSPRESNET_MODEL_DETECTOR_INFER_H
#define CSPRESNET_MODEL_DETECTOR_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/model.h"

#define DET_LEVELS 3   /* head levels, in the order strides 32, 16, 8 */

typedef enum det_attn_conv {
    DET_ATTN_CONVBN,   /* ESEAttn.conv = ConvBN 1x1 + act (every config but t) */
    DET_ATTN_REPVGG,   /* a RepVggBlock without alpha (PP-YOLOE+ t) */
    DET_ATTN_NONE      /* no conv (the t-relu configs) */
} det_attn_conv;

typedef struct detector_config {
    int backbone_out[DET_LEVELS]; /* channels the neck takes: C3, C4, C5 (strides 8, 16, 32) */
    int neck_out[DET_LEVELS];     /* o0, o1, o2: neck outputs at strides 32, 16, 8 (head in_c) */
    int neck_blocks;              /* BasicBlocks per CSPStage: max(round(3 * depth), 1) */
    int spp;                      /* 1: SPP after block (n-1)/2 of fpn_stages[0] */
    int num_classes;              /* pred_cls output channels */
    int reg_max;                  /* DFL bins - 1 (16 in every release) */
    det_attn_conv attn_conv;
    int deployed;                 /* 1: every ConvBN one conv with bias, RepVGG one 3x3 conv */
} detector_config;

/* Upstream's constructor rule: neck_out = max(round(c * width), 1) for c in
 * neck_base (NULL: [768, 384, 192]; PP-YOLOE+ t uses [384, 384, 384] and
 * DET_ATTN_REPVGG), neck_blocks = max(round(3 * depth), 1), spp on, not deployed;
 * backbone_out as given (the backbone's channels[2..4]). Python rounding (ties to even). */
cspresnet_status detector_config_scaled(detector_config *cfg, double width_mult, double depth_mult,
                                        const int *neck_base, const int *backbone_out,
                                        int num_classes, int reg_max, det_attn_conv attn_conv);

/* One entry of a key list: a state-dict key and its array's shape. */
typedef struct det_key {
    const char *key;
    int ndim;
    const int64_t *shape;
} det_key;

/* Calls visit once per parameter of cfg's neck and head, in Paddle's state_dict order,
 * with its full key ("neck...." / "yolo_head....") and shape. */
typedef void (*det_param_visit)(void *ctx, const char *key, int ndim, const int64_t *shape);
void detector_visit_params(const detector_config *cfg, det_param_visit visit, void *ctx);

/* cfg read off keys[0..count): widths from neck.fpn_stages.i.0.conv3 (and conv1's
 * inputs), blocks from fpn_stages.0.0.convs.j, SPP from convs.spp, classes from
 * yolo_head.pred_cls.0, reg_max from yolo_head.proj_conv (else pred_reg.0 / 4),
 * attn_conv and the deployed form from which keys exist. backbone_out: NULL to take it
 * from the neck's inputs, or the backbone's C3, C4, C5 that the neck must take. Then
 * every parameter cfg implies must be present with its exact shape and no other neck,
 * head or unknown key may be there: CSPRESNET_ERR_WEIGHTS with the missing, mis-shaped
 * (file and expected shapes) and unexpected keys together, named, a few of each
 * with counts. path (may be NULL) starts the message. */
cspresnet_status detector_infer_config(const det_key *keys, size_t count, const int *backbone_out,
                                       const char *path, detector_config *cfg, error_buf *err);

/* detector_load.c: a detector from a state dict, cspresnet_model_load_detector's rules
 * (architecture from the keys and shapes, every parameter by key, deployed when the
 * convs carry biases). sd may be a view another reader built (the safetensors
 * tensors): its entries' keys, shapes, dtypes and raw bytes are read. */
struct state_dict;
cspresnet_status detector_load_state_dict(const struct state_dict *sd, const char *path,
                                          const cspresnet_load_options *opt, cspresnet_model **out,
                                          error_buf *err);

#endif
