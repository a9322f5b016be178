/*
 * graph.h - the one graph every network is built into, and the op interface.
 *
 * A graph is built once (builders in src/model: the backbone, later the neck and
 * head) and is then read-only: a model owns it and any number of contexts and
 * trainers share it. It is in SSA form: every node writes a new tensor, a concat is
 * an explicit node. What depends on the input shape or on the mode lives in a plan
 * (plan.c), owned by the context or trainer that made it:
 *
 *   build (builder.c)  -> graph: tensors (channels, dtype, segment), nodes (op,
 *                         inputs, parameters, attributes), modules (for the summary),
 *                         named outputs
 *   plan  (plan.c)     -> shapes from each op's infer, each node's chosen path and
 *                         workspace from its op's plan, tensor storage from the
 *                         lifetime planner; eval: in-place ops and concats written as
 *                         slices; train: out of place, segment regions, gradients
 *   run   (run.c)      -> one dispatcher: forward (eval or train) and backward in
 *                         reverse, each node through its op descriptor
 *
 * An op is one file in src/ops exporting one op_desc (registry.c lists them).
 */
#ifndef CSPRESNET_GRAPH_H
#define CSPRESNET_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "ops/train_ops.h"

#define GRAPH_NAME_MAX 96
#define GN_MAX_IN 4
#define GN_MAX_PARAM 6
#define GRAPH_MAX_OUTPUTS 8
#define GRAPH_MAX_SEGMENTS 16

typedef enum elem_type { ELEM_F32, ELEM_BF16, ELEM_I8, ELEM_I32 } elem_type;
size_t elem_size(elem_type dt);

typedef struct tshape {
    int n, c, h, w;
} tshape;

static inline long tshape_numel(const tshape *s)
{
    return (long)s->n * s->c * s->h * s->w;
}

#define MODEL_KEY_MAX 96

/* A parameter: its upstream state_dict key, role, shape and where its data lies in
 * the model's weight arena. */
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
    elem_type dt;                  /* of the stored values */
    int ndim;
    int64_t shape[4];
    long numel;
    size_t byte_offset;        /* from the start of the weight arena (64-byte aligned when
                                  the model allocated it, 4 when it maps a file) */
    long scale_offset;         /* bytes to per-channel scales (quantised types), -1: none */
    int trainable;             /* 0 for BN _mean/_variance, as paddle.summary counts */
} param_info;

/* The f32 values of parameter p in an arena laid out like the weights (the weights
 * themselves, their gradients, optimizer state). */
static inline float *param_at(const float *arena, const param_info *p)
{
    return (float *)(void *)((char *)(void *)(uintptr_t)arena + p->byte_offset);
}

/* Attributes an op reads; each op documents which. */
typedef struct op_attrs {
    int k, stride, pad;          /* conv: square kernel, stride, symmetric padding */
    int cout;                    /* conv: output channels */
    cspresnet_act act;           /* conv epilogue / act: the activation */
} op_attrs;

typedef struct gtensor {
    int c;                       /* channels, fixed at build; n, h, w come with a plan */
    elem_type dt;
    int seg;                     /* training segment of the producer; -1: graph input */
} gtensor;

typedef struct gnode {
    const struct op_desc *op;
    char name[GRAPH_NAME_MAX];   /* module path, e.g. "stages.1.blocks.0.conv2.conv1.conv" */
    int n_in, in[GN_MAX_IN];     /* tensor ids */
    int out;
    int param[GN_MAX_PARAM];     /* model parameter indices, -1 where optional and absent */
    op_attrs a;
    int seg;                     /* training segment (the builder marks it) */
    int section;                 /* the summary's FLOP section (stem, stage i, neck ...) */
} gnode;

/* A layer as paddle.summary sees it: a row when its forward ends. cls names the
 * class ("Conv2D", "ConvBNLayer", ...); own parameters are params [p0, p1). The row
 * shows the shapes of its forward's arguments (in_list: one list argument holding them
 * all, as the neck and head take the levels) and of its result (a list when n_out > 1),
 * each tensor as its view says. */
#define GMOD_MAX_IO 4
typedef enum gmod_view {
    GMOD_NCHW,                   /* [n, c, h, w] */
    GMOD_POOLED,                 /* [n, c, 1, 1] (ESE's fc, ESEAttn's avg_feat) */
    GMOD_NCL,                    /* [n, c, h]: the head's scores [N, C, L], boxes [N, L, 4] */
    GMOD_DFL_IN,                 /* [n, c/4, h*w, 4]: proj_conv's input from pred_reg */
    GMOD_DFL_OUT                 /* [n, 1, h*w, 4]: proj_conv's output */
} gmod_view;

typedef struct gmodule {
    const char *cls;
    int n_in, n_out, in_list;
    int in[GMOD_MAX_IO], out[GMOD_MAX_IO];      /* tensors for the row's shapes */
    unsigned char in_view[GMOD_MAX_IO], out_view[GMOD_MAX_IO];
    int p0, p1;
} gmodule;

typedef struct graph {
    gtensor *tensors;            /* tensor 0 is the input */
    int n_tensors;
    gnode *nodes;
    int n_nodes;
    gmodule *modules;
    int n_modules;
    int n_outputs;               /* the outputs a forward returns, in order */
    int outputs[GRAPH_MAX_OUTPUTS];
    char output_names[GRAPH_MAX_OUTPUTS][24];
    int output_tag[GRAPH_MAX_OUTPUTS];     /* the backbone: the stage index */
    int output_stride[GRAPH_MAX_OUTPUTS];  /* input size / output size */
    int n_named;                 /* every named tensor (outputs and others) */
    int named[GRAPH_MAX_OUTPUTS * 2];
    char names[GRAPH_MAX_OUTPUTS * 2][24];
    int n_segments;
    int n_sections;
    char section_names[GRAPH_MAX_OUTPUTS * 2][24];
} graph;

void graph_free(graph *g);
/* Tensor id of a named tensor, or -1. */
int graph_find_named(const graph *g, const char *name);

/* ---- plans ---- */

typedef enum graph_mode { GRAPH_EVAL, GRAPH_TRAIN } graph_mode;

/* What an op's plan may look at besides its node and shapes. */
typedef struct plan_env {
    graph_mode mode;
    const kernel_set *kernels;
    int threads;
    int winograd;                /* 0: no Winograd (training: see trainer.c) */
    cspresnet_precision precision;  /* what the convs multiply in (eval) */
    const long *prepared_off;    /* per node: weights packed for this plan (>= 0), or NULL */
} plan_env;

/* What an op's load-time packing is for (model/prepare.c). */
typedef struct prepare_env {
    const kernel_set *kernels;
    cspresnet_precision precision;
    float act_scale;             /* int8: the node's input scale (0: it stays fp32) */
    int act_zero;                /* and its zero point, 0..255 */
    const float *act_mean;       /* and the mean of each input channel, or NULL */
    const int8_t *qw;            /* int8: the conv's stored s8 weights (OC x K, a quantized file's), or NULL */
    const float *qw_scale;       /* and their per-output-channel scales */
    const int32_t *qw_corr;      /* and their bias corrections (accumulator units), or NULL */
} prepare_env;

/* One node's plan: filled by its op's plan, then by the planner. */
typedef struct node_plan {
    int path;                    /* the op's chosen algorithm (its own enum) */
    long ws_thread, ws_shared;   /* floats of workspace per thread and shared */
    long save_floats;            /* train: floats kept from forward for backward */
    long save_off;               /* planner: floats into the plan's save region */
    int fused_act;               /* train: this BN runs the next node's activation */
    int skip;                    /* nothing to run (a fused activation, an elided concat) */
    int prepared;                /* set before the op's plan: its weights are packed for it */
    int din_assign_ok;           /* train, set by the op's plan: its backward can write each
                                    wanted din[j] whole (=) instead of adding to it */
    unsigned char din_first[GN_MAX_IN];  /* train (graph_plan_grad_writers): this backward
                                    is the first to write in[j]'s gradient */
} node_plan;

typedef struct tensor_plan {
    tshape s;
    long off, goff;              /* floats into the block: value, gradient (-1: none) */
    long bstride;                /* floats between images (more than c*h*w in a slice) */
    int boundary;                /* train: the input or a segment output (own storage) */
    int dead;                    /* train: a fused BN's output, never written */
    int grad_writer;             /* train: the node whose backward writes the gradient first
                                    (the last reader), -1: none (zeroed before backward) */
} tensor_plan;

typedef struct graph_plan {
    graph_mode mode;
    tensor_plan *t;
    node_plan *np;
    int threads;
    long ws_thread, ws_shared;   /* the largest over all nodes */
    long ws_off;                 /* workspace: threads x ws_thread, then ws_shared */
    long arena_floats;           /* activations (and in training gradients, saves) */
    long extra_off;              /* the caller's extra floats (the trainer's head) */
    long block_floats;           /* everything the plan places */
    /* train */
    long save_off;               /* node saves: save_off + np[i].save_off */
    long inner_grad_off;         /* inner gradients, shared by all segments */
    int seg_first[GRAPH_MAX_SEGMENTS], seg_end[GRAPH_MAX_SEGMENTS];  /* node ranges */
    long seg_size[GRAPH_MAX_SEGMENTS];
    int seg_zero[GRAPH_MAX_SEGMENTS];  /* an inner gradient of the segment has no writer */
} graph_plan;

/* plan.c: an op's plan for ops whose training backward can assign every input
 * gradient (node_plan.din_assign_ok) and need nothing else planned. */
void op_plan_assigns_din(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                         node_plan *np);

/* plan.c: the plan of g for an input shape (env->mode: eval or train). Train: extra
 * floats reserved for the caller (at p->extra_off), recompute: all segments share one
 * activation region. graph_plan_free frees what a plan holds (not the block). */
cspresnet_status graph_plan_make(const graph *g, const plan_env *env, const tshape *input, int recompute,
                                 long extra, graph_plan *p, error_buf *err);
void graph_plan_free(graph_plan *p);
/* Train: who writes each gradient first. Backward runs node by node in reverse, so
 * the last reader of a tensor (among nodes of segments below seg_end, those backward
 * visits) is the first to write its gradient: it assigns (din_first, with the op's
 * din_assign_ok) or the dispatcher zeroes that gradient just before it. The graph's
 * outputs (seeded by the caller), tensors no node reads and a tensor read twice by one
 * node keep grad_writer -1 and are zeroed with the rest before backward. */
void graph_plan_grad_writers(const graph *g, graph_plan *p, int seg_end);

/* Shapes of every tensor for an input of n x c x h x w (each op's infer). */
cspresnet_status graph_infer_shapes(const graph *g, const tshape *input, tensor_plan *t,
                                    error_buf *err);

/* ---- running (run.c) ---- */

/* Called before a node runs in eval (calibration, model/calibrate.c). */
struct op_run;
typedef void (*graph_observe_fn)(void *arg, int node, const struct op_run *run);

typedef struct graph_runner {
    const graph *g;
    const graph_plan *p;
    float *block;                /* the plan's block_floats */
    const param_info *params;
    float *weights, *grads;      /* grads: train only */
    const float *input;          /* eval: the caller's input (tensor 0, never written) */
    op_exec ex;                  /* pool and kernels; the workspace comes from the plan */
    const f32_train_config *tk;
    double *prof;                /* per-node seconds added, or NULL */
    const float *prepared;       /* packed weights of the nodes with prepared_off >= 0 */
    const long *prepared_off;    /* per node, floats into prepared, or -1 (NULL: none) */
    graph_observe_fn observe;    /* NULL: none */
    void *observe_arg;
} graph_runner;

tensor4 graph_view(const graph_runner *r, int t, int grad);
/* Runs nodes [first, end): eval, or train forward (bn_batch: BN takes batch
 * statistics, update_running: and updates the running ones). */
void graph_forward(graph_runner *r, int first, int end, int bn_batch, int update_running);
/* Train backward over nodes [first, end) in reverse; grad_wanted[t]: tensor t's gradient
 * is needed (the others are never written). */
void graph_backward(graph_runner *r, int first, int end, int bn_batch, const unsigned char *grad_wanted);

/* ---- the op interface ---- */

/* Everything one node run sees: views of its tensors and gradients, its parameters
 * and their gradients, its workspace and saved statistics. */
typedef struct op_run {
    op_exec ex;
    const f32_train_config *tk;
    const gnode *nd;
    const node_plan *np;
    tensor4 in[GN_MAX_IN], out;
    tensor4 din[GN_MAX_IN], dout; /* backward: din[i].data NULL = not wanted */
    unsigned char din_assign[GN_MAX_IN];  /* backward: write din[i] (=), do not add to it */
    float *p[GN_MAX_PARAM];      /* parameter data (running statistics are written) */
    float *dp[GN_MAX_PARAM];     /* parameter gradients (overwritten), NULL = none */
    float *save;                 /* train: np->save_floats floats */
    int bn_batch;                /* train: BN takes batch statistics */
    int update_running;          /* train: BN updates its running statistics */
    cspresnet_act next_act;      /* train, fused BN: the activation it runs */
} op_run;

/* How an op's eval forward may share storage (the planner decides where it does):
 * OP_IN_PLACE_ONLY works on out in place (out holds in[0]'s values first; the
 * dispatcher copies them when the planner gave out its own storage); OP_IN_PLACE_ANY
 * reads its inputs and writes out, which may be any input's storage. */
enum { OP_OUT_OF_PLACE, OP_IN_PLACE_ONLY, OP_IN_PLACE_ANY };

typedef struct op_desc {
    const char *name;
    int in_place;
    /* out's shape from the inputs' (and the node's attributes); errors name the node */
    cspresnet_status (*infer)(const gnode *nd, const tshape *in, tshape *out, error_buf *err);
    /* chooses the path and reports workspace (and saved floats in train mode); NULL:
     * one path, no workspace */
    void (*plan)(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                 node_plan *np);
    void (*forward)(op_run *r);
    void (*forward_train)(op_run *r);
    void (*backward)(op_run *r);   /* NULL: not trainable (eval-only ops) */
    /* multiply-adds (the summary's convention: convs only) */
    double (*macs)(const gnode *nd, const tshape *in, const tshape *out);
    /* load-time packing of the node's weights for pe's kernels and precision
     * (model/prepare.c): the floats it needs (0: nothing to pack) and the packing;
     * NULL: never */
    long (*prepare_floats)(const gnode *nd, const param_info *params, const prepare_env *pe);
    void (*prepare)(const gnode *nd, const param_info *params, const float *weights, const prepare_env *pe,
                    float *dst);
} op_desc;

/* graph.c: the infer of ops whose output has their input's shape. */
cspresnet_status op_infer_same(const gnode *nd, const tshape *in, tshape *out, error_buf *err);

/* registry.c */
extern const op_desc op_conv2d, op_batchnorm, op_activation, op_add, op_ese, op_concat;
/* ops/conv2d.c: 1 if the conv node runs at pe->precision (bf16 or int8) rather than fp32 on
 * pe->kernels, with pe's int8 scale and stored weights: what prepare packs, and what a
 * bf16 or int8 safetensors file stores in that precision. */
int conv2d_node_lowp(const gnode *nd, const param_info *params, const prepare_env *pe);
/* the detector's (eval only): nearest 2x, SPP's max-pool, ESEAttn's gate, the outputs */
extern const op_desc op_upsample2x, op_maxpool, op_ese_attn, op_det_boxes, op_det_scores;
const op_desc *op_find(const char *name);
int op_count(void);
const op_desc *op_at(int i);

#endif
