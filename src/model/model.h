/*
 * model.h - the CSPResNet structure inside the library.
 *
 * A model is three tables built once from a config:
 *   params  - every named tensor in Paddle's state_dict order (upstream keys), each
 *             an offset into ONE float allocation (the weight arena);
 *   tensors - every activation of the eval graph: channels, spatial level (stride
 *             2^level relative to the input) and, for concat slices, a parent;
 *   nodes   - the ops in execution order (conv, bn, act, add, ese), each naming its
 *             input/output tensors and parameters.
 * A context (context.c) plans the activation arena for an input shape from the
 * tensors' lifetimes and runs the nodes. Loading (load.c) infers the config from a
 * state dict and fills the weight arena.
 */
#ifndef CSPRESNET_MODEL_H
#define CSPRESNET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "cspresnet.h"

#define MODEL_KEY_MAX 96
#define MODEL_INPUT_CHANNELS 3  /* RGB: the stem's first conv takes 3 channels */

typedef enum param_role {
    PARAM_CONV_WEIGHT,
    PARAM_BN_WEIGHT,
    PARAM_BN_BIAS,
    PARAM_BN_MEAN,
    PARAM_BN_VARIANCE,
    PARAM_ALPHA,
    PARAM_FC_WEIGHT,
    PARAM_FC_BIAS,
    PARAM_CONV_BIAS            /* deployed models only: BN folded into the conv */
} param_role;

typedef struct param_info {
    char key[MODEL_KEY_MAX];   /* upstream state_dict key, e.g. "stages.0.conv1.bn._mean" */
    param_role role;
    int ndim;
    int64_t shape[4];
    long numel;
    long offset;               /* floats from the start of the weight arena */
    int trainable;             /* 0 for BN _mean/_variance, as paddle.summary counts */
} param_info;

typedef enum node_kind { NODE_CONV, NODE_BN, NODE_ACT, NODE_ADD, NODE_ESE } node_kind;

typedef struct graph_node {
    node_kind kind;
    char name[MODEL_KEY_MAX];  /* module path, e.g. "stages.1.blocks.0.conv2.conv1.conv" */
    int in0, in1, out;         /* tensor ids; in1 only for add; bn/act/ese are in place */
    /* conv: out = act(conv(in0) + bias) + in1, bias/act/in1 optional (deployed models) */
    int cin, cout, k, stride, pad;
    int weight;                /* param index: conv weight or ESE fc weight */
    int bias;                  /* param index: conv bias or ESE fc bias, else -1 */
    /* bn */
    int bn_weight, bn_bias, bn_mean, bn_variance;
    /* act */
    cspresnet_act act;
    /* add: out = in0 + alpha * in1; alpha is a param index or -1 for 1.0 */
    int alpha;
} graph_node;

typedef struct graph_tensor {
    int c;
    int level;                 /* spatial size = input size halved (rounding up) level times */
    int parent;                /* -1, or the tensor this one is a channel slice of */
    int channel_offset;        /* first channel within parent */
    int stage;                 /* 0..3 when this is a stage output, else -1 */
} graph_tensor;

struct cspresnet_model {
    cspresnet_config cfg;
    int deployed;              /* 1: BN folded, RepVGG branches fused, act in the conv */
    param_info *params;
    size_t n_params;
    float *weights;            /* the weight arena */
    long weight_floats;
    graph_node *nodes;
    int n_nodes;
    graph_tensor *tensors;     /* tensor 0 is the input */
    int n_tensors;
    int stage_tensor[CSPRESNET_NUM_STAGES];
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
 * caller has set every params[i].offset so that offset + numel <= floats. */
void model_adopt_weights(cspresnet_model *m, const float *weights, long floats,
                         void (*release)(void *owner), void *owner);

/* init.c: deterministic random weights (seeded). */
void model_init_random(cspresnet_model *m, uint64_t seed);

/* CSPRESNET_ERR_WEIGHTS naming path, key_prefix + key and the first bad element's index
 * when a parameter holds NaN or Inf, or a BN _variance is negative (weights_check.c). */
cspresnet_status model_check_weights(const cspresnet_model *m, const char *path, const char *key_prefix,
                                     error_buf *err);

#endif
