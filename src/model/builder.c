/*
 * builder.c - the layer helpers every network part builds with (see builder.h).
 *
 * Paddle lists a layer's own parameters before its sublayers', so a RepVggBlock's
 * `alpha` precedes conv1.* and conv2.*, and BN lists weight, bias, _mean, _variance.
 * Parameter storage starts 64-byte aligned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/builder.h"

static int grow(void **p, size_t elem, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 1;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *q = realloc(*p, ncap * elem);
    if (!q)
        return 0;
    *p = q;
    *cap = ncap;
    return 1;
}

int bld_param(builder *b, const char *prefix, const char *suffix, param_role role, int ndim,
              int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    cspresnet_model *m = b->m;
    if (b->failed || !grow((void **)&m->params, sizeof *m->params, &b->cap_params, m->n_params + 1)) {
        b->failed = 1;
        return -1;
    }
    param_info *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    snprintf(p->key, sizeof p->key, "%s%s", prefix, suffix);
    p->role = role;
    p->dt = ELEM_F32;
    p->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = dims[i];
        p->numel *= (long)dims[i];
    }
    p->byte_offset = b->bytes;
    p->scale_offset = -1;
    b->bytes += ((size_t)p->numel * elem_size(p->dt) + 63) & ~(size_t)63;  /* 64-byte aligned starts */
    p->trainable = role != PARAM_BN_MEAN && role != PARAM_BN_VARIANCE;
    return (int)m->n_params++;
}

void bld_weight_bias(builder *b, const char *prefix, const char *wkey, param_role wrole, const char *bkey,
                     param_role brole, int cout, int cin, int k, int p[2])
{
    p[0] = bld_param(b, prefix, wkey, wrole, 4, cout, cin, k, k);
    p[1] = bld_param(b, prefix, bkey, brole, 1, cout, 0, 0, 0);
}

int bld_tensor(builder *b, int c)
{
    graph *g = &b->m->g;
    if (b->failed || !grow((void **)&g->tensors, sizeof *g->tensors, &b->cap_tensors,
                           (size_t)g->n_tensors + 1)) {
        b->failed = 1;
        return 0;
    }
    g->tensors[g->n_tensors] = (gtensor){c, ELEM_F32, b->seg};
    return g->n_tensors++;
}

int bld_node(builder *b, const op_desc *op, const char *name, int n_in, const int *in, int out_c,
             int n_param, const int *param, const op_attrs *a)
{
    int out = bld_tensor(b, out_c);
    graph *g = &b->m->g;
    if (b->failed ||
        !grow((void **)&g->nodes, sizeof *g->nodes, &b->cap_nodes, (size_t)g->n_nodes + 1)) {
        b->failed = 1;
        return 0;
    }
    gnode *nd = &g->nodes[g->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    snprintf(nd->name, sizeof nd->name, "%s", name);
    nd->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        nd->in[i] = in[i];
    nd->out = out;
    for (int i = 0; i < GN_MAX_PARAM; i++)
        nd->param[i] = i < n_param ? param[i] : -1;
    if (a)
        nd->a = *a;
    nd->seg = b->seg;
    nd->section = b->section;
    return out;
}

int bld_module_add(builder *b, const gmodule *md)
{
    graph *g = &b->m->g;
    if (b->failed ||
        !grow((void **)&g->modules, sizeof *g->modules, &b->cap_modules, (size_t)g->n_modules + 1)) {
        b->failed = 1;
        return -1;
    }
    gmodule *d = &g->modules[g->n_modules];
    *d = *md;
    if (d->p0 < 0)
        d->p0 = d->p1 = 0;
    return g->n_modules++;
}

void bld_module(builder *b, const char *cls, int in, int out, int p0, int p1, int pooled)
{
    const unsigned char v = pooled ? GMOD_POOLED : GMOD_NCHW;
    bld_module_add(b, &(gmodule){.cls = cls, .n_in = 1, .n_out = 1, .in = {in}, .out = {out}, .in_view = {v},
                                 .out_view = {v}, .p0 = p0, .p1 = p1});
}

void bld_name(builder *b, int t, const char *name, int returned, int tag, int stride)
{
    graph *g = &b->m->g;
    if (b->failed)
        return;
    if (g->n_named < (int)(sizeof g->named / sizeof g->named[0])) {
        g->named[g->n_named] = t;
        snprintf(g->names[g->n_named++], sizeof g->names[0], "%s", name);
    }
    if (returned && g->n_outputs < GRAPH_MAX_OUTPUTS) {
        g->outputs[g->n_outputs] = t;
        g->output_tag[g->n_outputs] = tag;
        g->output_stride[g->n_outputs] = stride;
        snprintf(g->output_names[g->n_outputs++], sizeof g->output_names[0], "%s", name);
    }
}

/* Deployed ConvBNLayer / RepVggBlock: one conv with bias, act and optional residual. */
static int conv_fused(builder *b, const char *path, int x, int cin, int cout, int k, int stride,
                      cspresnet_act act, int residual)
{
    char prefix[GRAPH_NAME_MAX], name[GRAPH_NAME_MAX];
    snprintf(prefix, sizeof prefix, "%s.", path);
    snprintf(name, sizeof name, "%s.conv", path);
    int p[2];
    bld_weight_bias(b, prefix, "conv.weight", PARAM_CONV_WEIGHT, "conv.bias", PARAM_CONV_BIAS, cout, cin, k, p);
    op_attrs a = {k, stride, k / 2, cout, act};
    int in[2] = {x, residual};
    int out = bld_node(b, &op_conv2d, name, residual >= 0 ? 2 : 1, in, cout, 2, p, &a);
    bld_module(b, "Conv2D", x, out, p[0], p[1] + 1, 0);
    return out;
}

int bld_conv_bn(builder *b, const char *path, int x, int cin, int cout, int k, int stride,
                cspresnet_act act)
{
    return bld_conv_bn_res(b, path, x, cin, cout, k, stride, act, -1);
}

int bld_conv_bn_res(builder *b, const char *path, int x, int cin, int cout, int k, int stride,
                    cspresnet_act act, int residual)
{
    if (b->m->deployed) {
        int out = conv_fused(b, path, x, cin, cout, k, stride, act, residual);
        bld_module(b, "ConvBNLayer", x, out, -1, -1, 0);
        return out;
    }
    if (residual >= 0) { /* only the deployed conv has an epilogue to add it in */
        b->failed = 1;
        return 0;
    }
    char prefix[GRAPH_NAME_MAX], name[GRAPH_NAME_MAX];
    snprintf(prefix, sizeof prefix, "%s.", path);
    int w = bld_param(b, prefix, "conv.weight", PARAM_CONV_WEIGHT, 4, cout, cin, k, k);
    int bn[4];
    bn[0] = bld_param(b, prefix, "bn.weight", PARAM_BN_WEIGHT, 1, cout, 0, 0, 0);
    bn[1] = bld_param(b, prefix, "bn.bias", PARAM_BN_BIAS, 1, cout, 0, 0, 0);
    bn[2] = bld_param(b, prefix, "bn._mean", PARAM_BN_MEAN, 1, cout, 0, 0, 0);
    bn[3] = bld_param(b, prefix, "bn._variance", PARAM_BN_VARIANCE, 1, cout, 0, 0, 0);
    op_attrs a = {k, stride, k / 2, cout, CSPRESNET_ACT_NONE};
    snprintf(name, sizeof name, "%s.conv", path);
    int t = bld_node(b, &op_conv2d, name, 1, &x, cout, 1, &w, &a);
    bld_module(b, "Conv2D", x, t, w, w + 1, 0);
    snprintf(name, sizeof name, "%s.bn", path);
    int y = bld_node(b, &op_batchnorm, name, 1, &t, cout, 4, bn, NULL);
    bld_module(b, "BatchNorm2D", t, y, bn[0], bn[3] + 1, 0);
    if (act != CSPRESNET_ACT_NONE) {
        op_attrs aa = {.act = act};
        snprintf(name, sizeof name, "%s.act", path);
        y = bld_node(b, &op_activation, name, 1, &y, cout, 0, NULL, &aa);
    }
    bld_module(b, "ConvBNLayer", x, y, -1, -1, 0);
    return y;
}

int bld_add(builder *b, const char *name, int a, int bb, int alpha)
{
    int in[2] = {a, bb};
    return bld_node(b, &op_add, name, 2, in, b->m->g.tensors[a].c, 1, &alpha, NULL);
}

int bld_repvgg(builder *b, const char *path, int y, int c, cspresnet_act act, int use_alpha,
               int residual)
{
    char p1[GRAPH_NAME_MAX], p2[GRAPH_NAME_MAX];
    if (bld_repvgg_fused(b)) {
        int out = conv_fused(b, path, y, c, c, 3, 1, act, residual);
        bld_module(b, "RepVggBlock", y, out, -1, -1, 0);
        return out;
    }
    int alpha = -1;
    if (use_alpha) {
        snprintf(p1, sizeof p1, "%s.", path);
        alpha = bld_param(b, p1, "alpha", PARAM_ALPHA, 1, 1, 0, 0, 0);
    }
    snprintf(p1, sizeof p1, "%s.conv1", path);
    snprintf(p2, sizeof p2, "%s.conv2", path);
    int a = bld_conv_bn(b, p1, y, c, c, 3, 1, CSPRESNET_ACT_NONE);
    int bb = bld_conv_bn(b, p2, y, c, c, 1, 1, CSPRESNET_ACT_NONE);
    snprintf(p1, sizeof p1, "%s.add", path);
    int out = bld_add(b, p1, a, bb, alpha);
    if (act != CSPRESNET_ACT_NONE) {
        op_attrs aa = {.act = act};
        snprintf(p1, sizeof p1, "%s.act", path);
        out = bld_node(b, &op_activation, p1, 1, &out, c, 0, NULL, &aa);
    }
    bld_module(b, "RepVggBlock", y, out, alpha, alpha + 1, 0);
    return out;
}

cspresnet_status bld_finish(builder *b, error_buf *err)
{
    cspresnet_model *m = b->m;
    if (!b->failed) {
        m->weight_floats = (long)(b->bytes / sizeof(float));
        m->weights = b->no_weights ? NULL : calloc(b->bytes / sizeof(float), sizeof(float));
        if (!m->weights && !b->no_weights)
            b->failed = 1;
    }
    if (b->failed)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the model");
    return CSPRESNET_OK;
}
