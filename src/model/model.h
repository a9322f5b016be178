/*
 * model.h - the CSPResNet structure inside the library.
 *
 * A model is built once from a config (build.c, with the builder of each network
 * part): its parameters in Paddle's state_dict order (upstream keys), each a byte offset
 * into ONE allocation (the weight arena), and its graph (graph/graph.h). A context
 * (context.c) plans the graph for an input shape and runs it; a trainer (train/)
 * plans the same graph in train mode. Loading (load.c) infers the config from a state
 * dict and fills the weight arena.
 */
#ifndef CSPRESNET_MODEL_H
#define CSPRESNET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "cspresnet.h"
#include "graph/graph.h"

#define MODEL_INPUT_CHANNELS 3  /* RGB: the stem's first conv takes 3 channels */

struct detector_config;

struct cspresnet_model {
    cspresnet_config cfg;      /* the backbone's (a detector's too) */
    struct detector_config *det;  /* the PP-YOLOE neck and head; NULL: a backbone */
    int deployed;              /* 1: BN folded, RepVGG branches fused, act in the conv */
    param_info *params;
    size_t n_params;
    float *weights;            /* the weight arena */
    long weight_floats;
    graph g;                   /* the network (builder.h); read-only once built */
    /* prepare.c: nodes' weights packed for one kernel table (NULL: none prepared) */
    float *prepared;
    long *prepared_off;        /* per node: floats into prepared, or -1 */
    long prepared_floats;
    const char *prepared_isa;  /* the table they were packed for */
    cspresnet_precision prepared_precision;  /* and the precision */
    /* calibrate.c: per graph node, the int8 scale and zero point of a conv's input (scale
     * 0: the conv stays fp32; NULL: not calibrated), the method that chose them */
    float *act_scale;
    int *act_zero;
    float **act_mean;          /* per node: the mean of each input channel (NULL: none) */
    cspresnet_calibration calib_method;
    /* An int8 safetensors file's stored s8 weights (OIHW), per-output-channel scales and
     * bias corrections (NULL per node: none; the arena holds the weights dequantized,
     * q * scale), carved from qw_block (safetensors_lowp_read.c); prepare packs these,
     * not the arena. */
    const int8_t **qw;
    const float **qw_scale;
    const int32_t **qw_corr;
    void *qw_block;
    cspresnet_precision file_precision;   /* the precision the weight file was written for */
    /* Weights owned elsewhere (a read-only mapped safetensors file, weights_external.c):
     * cspresnet_model_free calls weights_release(weights_owner) instead of free(weights).
     * NULL when the model allocated its arena. Such params may be only float-aligned. */
    void (*weights_release)(void *owner);
    void *weights_owner;
};

/* config.c */
int model_stage_mid(const cspresnet_config *cfg, int stage);   /* (cin + cout) / 2 */
int model_stem_mid(const cspresnet_config *cfg);               /* channels[0] / 2 */

/* build.c: allocates params, weight arena (zeroed) and graph for a valid cfg; the
 * deployed form has conv weight+bias per ConvBNLayer and one 3x3 conv per RepVGG block. */
cspresnet_status model_build(const cspresnet_config *cfg, int deployed, cspresnet_model **out,
                             error_buf *err);
/* detector.c: a PP-YOLOE detector (backbone cfg, keys "backbone.*", then dc's neck and
 * head), parameters in Paddle's state_dict order, weights zeroed; its forward's outputs
 * are "boxes" [N, L, 4] and "scores" [N, C, L] (det_boxes.c, det_scores.c). The
 * deployed form when dc->deployed (every conv with a bias, as deploy.c makes it). */
cspresnet_status model_build_detector(const cspresnet_config *cfg, const struct detector_config *dc,
                                      cspresnet_model **out, error_buf *err);

/* The forms a network's layout is built in. */
typedef enum model_form {
    MODEL_FORM_TRAINED,        /* upstream's layers: ConvBN, RepVGG's two branches */
    MODEL_FORM_REPVGG_FUSED,   /* upstream's convert_to_deploy: each RepVggBlock one 3x3
                                  conv with bias, every other BN kept (never run) */
    MODEL_FORM_DEPLOYED        /* cspresnet_model_deploy's: every BN folded as well */
} model_form;

/* The parameters and graph of a backbone (dc NULL) or a detector in form, without a
 * weight arena (weights NULL): what a summary reads, at no cost in memory for the
 * largest models. Never run or fill such a model; cspresnet_model_free frees it. */
cspresnet_status model_build_layout(const cspresnet_config *cfg, const struct detector_config *dc, model_form form,
                                    cspresnet_model **out, error_buf *err);

/* load.c: the architecture of a state dict read off its shapes, as
 * cspresnet_model_load does (SPEC §3: channels, blocks, large stem, alpha, and
 * *deployed when the convs carry the folded biases), checked against opt and
 * validated; the key prefix found ("" or e.g. "backbone.") goes to prefix. sd may be a
 * view built by another reader: only its entries' keys, ndim and shape are read. */
struct state_dict;
cspresnet_status model_infer_config(const struct state_dict *sd, const char *path,
                                    const cspresnet_load_options *opt, cspresnet_config *cfg,
                                    int *deployed, char *prefix, size_t prefix_size, error_buf *err);

/* Index of a parameter by key, or -1. */
long model_find_param(const cspresnet_model *m, const char *key);

/* weights_external.c: replaces m's own arena by `weights` (floats long, owned by
 * `owner`, released with release(owner) when the model is freed, never written). The
 * caller has set every params[i].byte_offset so that it plus the data fits in floats. */
void model_adopt_weights(cspresnet_model *m, const float *weights, long floats,
                         void (*release)(void *owner), void *owner);

/* context.c: a function called before every node a context's forward runs (with the
 * node index and its inputs' views), for calibration; NULL: none. */
void context_set_observer(cspresnet_context *ctx, graph_observe_fn fn, void *arg);

/* init.c: deterministic random weights (seeded). */
void model_init_random(cspresnet_model *m, uint64_t seed);

/* CSPRESNET_ERR_WEIGHTS naming path, key_prefix + key and the first bad element's index
 * when a parameter holds NaN or Inf, or a BN _variance is negative (weights_check.c). */
cspresnet_status model_check_weights(const cspresnet_model *m, const char *path, const char *key_prefix,
                                     error_buf *err);

#endif
