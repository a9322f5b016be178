/*
 * builder.h - building a network into a model: its parameters (Paddle's state_dict
 * order, one weight arena) and its graph (graph/graph.h). One builder file per network
 * part emits into the same graph: backbone.c, neck.c, head.c.
 *
 * Layers as Paddle has them (each emits its nodes and its paddle.summary rows when its
 * forward would end; `path` is the module path, e.g. "stages.0.conv_down"):
 *   ConvBNLayer : conv -> bn -> act (act may be none); deployed: one conv with bias
 *                 and the activation in its epilogue ("<path>.conv.weight/bias")
 *   RepVggBlock : convbn3x3(x) + alpha * convbn1x1(x) -> act; deployed: one 3x3 conv
 *                 ("<path>.conv.weight/bias", as upstream's convert_to_deploy names it)
 * The current segment and FLOP section (b->seg, b->section) mark every node emitted.
 * With fuse_repvgg (a model not deployed) only the RepVGG blocks are fused, the form
 * upstream's convert_to_deploy leaves: the summary counts the paper's numbers on it.
 */
#ifndef CSPRESNET_MODEL_BUILDER_H
#define CSPRESNET_MODEL_BUILDER_H

#include "graph/graph.h"
#include "model/model.h"

typedef struct builder {
    cspresnet_model *m;
    size_t cap_params, cap_nodes, cap_tensors, cap_modules;
    size_t bytes;              /* the weight arena so far */
    int failed;
    int seg, section;
    int fuse_repvgg;           /* RepVggBlocks as one 3x3 conv with bias, ConvBN kept */
    int no_weights;            /* bld_finish allocates no weight arena (a layout only) */
} builder;

/* A RepVggBlock is emitted as one conv (deployed, or fuse_repvgg). */
static inline int bld_repvgg_fused(const builder *b) { return b->m->deployed || b->fuse_repvgg; }

/* A parameter "<prefix><suffix>"; returns its index (-1 after a failed allocation). */
int bld_param(builder *b, const char *prefix, const char *suffix, param_role role, int ndim,
              int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* A weight (cout, cin, k, k) "<prefix><wkey>" and its bias (cout) "<prefix><bkey>"
 * (conv.weight/conv.bias, fc.weight/fc.bias, ...) into p[0], p[1]. */
void bld_weight_bias(builder *b, const char *prefix, const char *wkey, param_role wrole, const char *bkey,
                     param_role brole, int cout, int cin, int k, int p[2]);
/* A tensor of c channels; returns its id (0 after a failed allocation). */
int bld_tensor(builder *b, int c);
/* A node of op over inputs in[0..n_in) writing a new tensor of out_c channels;
 * params -1-terminated is not used: n_param entries. Returns the output tensor. */
int bld_node(builder *b, const op_desc *op, const char *name, int n_in, const int *in, int out_c,
             int n_param, const int *param, const op_attrs *a);
/* A summary row of class cls (own params [p0, p1); p0 < 0: none), one input and one
 * output (pooled: both [n, c, 1, 1]). bld_module_add: any row (md's p0 < 0: no
 * parameters); returns its index, -1 after a failed allocation. */
void bld_module(builder *b, const char *cls, int in, int out, int p0, int p1, int pooled);
int bld_module_add(builder *b, const gmodule *md);
/* A named tensor; returned >= 0 makes it forward's output of that index. */
void bld_name(builder *b, int t, const char *name, int returned, int tag, int stride);

int bld_conv_bn(builder *b, const char *path, int x, int cin, int cout, int k, int stride,
                cspresnet_act act);
/* The same with residual (>= 0: deployed only) added after the act by the conv's epilogue. */
int bld_conv_bn_res(builder *b, const char *path, int x, int cin, int cout, int k, int stride,
                    cspresnet_act act, int residual);
/* RepVggBlock at path on y (c channels, 3x3 + 1x1, alpha when use_alpha) then act;
 * residual >= 0 (deployed only) is added after the act by the conv's epilogue. */
int bld_repvgg(builder *b, const char *path, int y, int c, cspresnet_act act, int use_alpha,
               int residual);
/* add: a + alpha * b (alpha param index or -1 for 1). */
int bld_add(builder *b, const char *name, int a, int bb, int alpha);

/* The weight arena (zeroed), unless b->no_weights; reports a failed allocation. */
cspresnet_status bld_finish(builder *b, error_buf *err);

/* backbone.c: the CSPResNet of m->cfg into b; returns the last stage's output. */
int backbone_build(builder *b, const char *prefix);

/* neck.c: CustomCSPPAN of dc on the backbone's C3, C4, C5 tensors (c345, strides 8,
 * 16, 32); outs: its outputs at strides 32, 16, 8. head.c: PPYOLOEHead of dc on those,
 * ending in the graph outputs "boxes" and "scores". Parameters in execution order. */
struct detector_config;
void neck_build(builder *b, const struct detector_config *dc, const int c345[3], int outs[3]);
void head_build(builder *b, const struct detector_config *dc, const int feats[3]);
/* detector.c: the detector of cfg and dc in form (weights: allocate the arena);
 * model_build_detector is the trained form with weights. */
cspresnet_status detector_build(const cspresnet_config *cfg, const struct detector_config *dc, model_form form,
                                int weights, cspresnet_model **out, error_buf *err);

#endif
