/*
 * build.c - turns a config into the model's tables: parameters in Paddle's
 * state_dict order, one weight arena, and the eval graph.
 *
 * Paddle lists a layer's own parameters before its sublayers', so a RepVggBlock's
 * `alpha` precedes conv1.* and conv2.*, and BN lists weight, bias, _mean, _variance.
 *
 * Graph per module (in-place ops write their input tensor):
 *   ConvBNLayer  : t = conv(x); bn(t); act(t)                    (act may be none)
 *   RepVggBlock  : a = convbn3x3(x); b = convbn1x1(x); a = a + alpha*b; act(a)
 *   BasicBlock   : y = convbn3x3_act(x); y = repvgg(y); out = x + y
 *   CSPResStage  : x = conv_down(x); y1 = conv1(x) -> slice [0, mid/2) of Y;
 *                  z = conv2(x); z = blocks(z), the last add writing slice [mid/2, mid);
 *                  ese(Y); out = conv3(Y)
 *
 * Deployed form (deploy.c fills its weights): every ConvBNLayer is one conv with bias
 * and the activation in its epilogue ("<path>.conv.weight", "<path>.conv.bias"); a
 * RepVggBlock is one 3x3 conv with bias ("<block>.conv2.conv.weight/bias", as
 * upstream's convert_to_deploy names it) whose epilogue also adds the shortcut.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct builder {
    cspresnet_model *m;
    size_t cap_params;
    int cap_nodes, cap_tensors;
    long floats;
    int failed;
    graph_node discard; /* target for writes after a failed allocation; never read */
} builder;

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

static int add_param(builder *b, const char *prefix, const char *suffix, param_role role,
                     int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
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
    p->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = dims[i];
        p->numel *= (long)dims[i];
    }
    p->offset = b->floats;
    b->floats += (p->numel + 15) & ~15L; /* 64-byte aligned starts */
    p->trainable = role != PARAM_BN_MEAN && role != PARAM_BN_VARIANCE;
    return (int)m->n_params++;
}

static int add_tensor(builder *b, int c, int level, int parent, int channel_offset)
{
    cspresnet_model *m = b->m;
    size_t cap = (size_t)b->cap_tensors;
    if (b->failed ||
        !grow((void **)&m->tensors, sizeof *m->tensors, &cap, (size_t)m->n_tensors + 1)) {
        b->failed = 1;
        return 0;
    }
    b->cap_tensors = (int)cap;
    graph_tensor *t = &m->tensors[m->n_tensors];
    t->c = c;
    t->level = level;
    t->parent = parent;
    t->channel_offset = channel_offset;
    t->stage = -1;
    return m->n_tensors++;
}

static graph_node *add_node(builder *b, node_kind kind, const char *name)
{
    cspresnet_model *m = b->m;
    size_t cap = (size_t)b->cap_nodes;
    if (b->failed || !grow((void **)&m->nodes, sizeof *m->nodes, &cap, (size_t)m->n_nodes + 1)) {
        b->failed = 1;
        return &b->discard;
    }
    b->cap_nodes = (int)cap;
    graph_node *n = &m->nodes[m->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    snprintf(n->name, sizeof n->name, "%s", name);
    n->in1 = n->weight = n->bias = n->alpha = -1;
    n->bn_weight = n->bn_bias = n->bn_mean = n->bn_variance = -1;
    n->act = CSPRESNET_ACT_NONE;
    return n;
}

/* The conv node of layer `path` reading `in`: writes into `out` (an existing tensor,
 * possibly a slice) or a new tensor when out < 0. Returns the node (b->discard after a
 * failed allocation) and the output tensor in *out_tensor. */
static graph_node *conv_node(builder *b, const char *path, int in, int cin, int cout, int k, int stride,
                             int weight, int out, int *out_tensor)
{
    char name[MODEL_KEY_MAX];
    *out_tensor = 0;
    if (b->failed)
        return &b->discard;
    int level = b->m->tensors[in].level + (stride == 2 ? 1 : 0);
    if (out < 0)
        out = add_tensor(b, cout, level, -1, 0);
    snprintf(name, sizeof name, "%s.conv", path);
    graph_node *n = add_node(b, NODE_CONV, name);
    n->in0 = in;
    n->out = out;
    n->cin = cin;
    n->cout = cout;
    n->k = k;
    n->stride = stride;
    n->pad = k / 2;
    n->weight = weight;
    *out_tensor = out;
    return n;
}

/* Deployed ConvBNLayer / RepVggBlock: one conv with bias, act, optional residual. */
static int conv_fused(builder *b, const char *path, int in, int cin, int cout, int k, int stride,
                      cspresnet_act act, int out, int residual)
{
    char prefix[MODEL_KEY_MAX];
    snprintf(prefix, sizeof prefix, "%s.", path);
    int w = add_param(b, prefix, "conv.weight", PARAM_CONV_WEIGHT, 4, cout, cin, k, k);
    int bias = add_param(b, prefix, "conv.bias", PARAM_CONV_BIAS, 1, cout, 0, 0, 0);
    graph_node *n = conv_node(b, path, in, cin, cout, k, stride, w, out, &out);
    n->in1 = residual;
    n->bias = bias;
    n->act = act;
    return out;
}

/* ConvBNLayer at `path`: params in state_dict order, then conv -> bn -> act nodes.
 * Writes into `out` (an existing tensor, possibly a slice) or a new one when out < 0.
 * Returns the output tensor. */
static int conv_bn(builder *b, const char *path, int in, int cin, int cout, int k, int stride,
                   cspresnet_act act, int out)
{
    if (b->m->deployed)
        return conv_fused(b, path, in, cin, cout, k, stride, act, out, -1);
    char prefix[MODEL_KEY_MAX], name[MODEL_KEY_MAX];
    snprintf(prefix, sizeof prefix, "%s.", path);
    int w = add_param(b, prefix, "conv.weight", PARAM_CONV_WEIGHT, 4, cout, cin, k, k);
    int bw = add_param(b, prefix, "bn.weight", PARAM_BN_WEIGHT, 1, cout, 0, 0, 0);
    int bb = add_param(b, prefix, "bn.bias", PARAM_BN_BIAS, 1, cout, 0, 0, 0);
    int bm = add_param(b, prefix, "bn._mean", PARAM_BN_MEAN, 1, cout, 0, 0, 0);
    int bv = add_param(b, prefix, "bn._variance", PARAM_BN_VARIANCE, 1, cout, 0, 0, 0);
    conv_node(b, path, in, cin, cout, k, stride, w, out, &out);
    if (b->failed)
        return 0;

    snprintf(name, sizeof name, "%s.bn", path);
    graph_node *n = add_node(b, NODE_BN, name);
    n->in0 = n->out = out;
    n->bn_weight = bw;
    n->bn_bias = bb;
    n->bn_mean = bm;
    n->bn_variance = bv;

    if (act != CSPRESNET_ACT_NONE) {
        snprintf(name, sizeof name, "%s.act", path);
        n = add_node(b, NODE_ACT, name);
        n->in0 = n->out = out;
        n->act = act;
    }
    return out;
}

/* BasicBlock at `path` on tensor x (c channels); returns the output tensor, written
 * into `out` when out >= 0. */
static int basic_block(builder *b, const char *path, int x, int c, int out)
{
    const cspresnet_config *cfg = &b->m->cfg;
    char p1[MODEL_KEY_MAX], p2[MODEL_KEY_MAX], name[MODEL_KEY_MAX];
    snprintf(p1, sizeof p1, "%s.conv1", path);
    int y = conv_bn(b, p1, x, c, c, 3, 1, cfg->act, -1);
    if (b->m->deployed) {
        snprintf(p2, sizeof p2, "%s.conv2", path);
        return conv_fused(b, p2, y, c, c, 3, 1, cfg->act, out, x);
    }

    /* RepVggBlock "path.conv2": alpha first (Paddle order), then its two branches. */
    int alpha = -1;
    if (cfg->use_alpha) {
        char prefix[MODEL_KEY_MAX];
        snprintf(prefix, sizeof prefix, "%s.conv2.", path);
        alpha = add_param(b, prefix, "alpha", PARAM_ALPHA, 1, 1, 0, 0, 0);
    }
    snprintf(p1, sizeof p1, "%s.conv2.conv1", path);
    snprintf(p2, sizeof p2, "%s.conv2.conv2", path);
    int a = conv_bn(b, p1, y, c, c, 3, 1, CSPRESNET_ACT_NONE, -1);
    int bb = conv_bn(b, p2, y, c, c, 1, 1, CSPRESNET_ACT_NONE, -1);
    snprintf(name, sizeof name, "%s.conv2.add", path);
    graph_node *n = add_node(b, NODE_ADD, name);
    n->in0 = a;
    n->in1 = bb;
    n->out = a;
    n->alpha = alpha;
    if (cfg->act != CSPRESNET_ACT_NONE) {
        snprintf(name, sizeof name, "%s.conv2.act", path);
        n = add_node(b, NODE_ACT, name);
        n->in0 = n->out = a;
        n->act = cfg->act;
    }
    /* shortcut: out = x + a (in place on a unless a slice is the target) */
    snprintf(name, sizeof name, "%s.shortcut", path);
    n = add_node(b, NODE_ADD, name);
    n->in0 = x;
    n->in1 = a;
    n->out = out >= 0 ? out : a;
    return out >= 0 ? out : a;
}

static int csp_stage(builder *b, int stage, int x)
{
    const cspresnet_config *cfg = &b->m->cfg;
    char path[MODEL_KEY_MAX], name[MODEL_KEY_MAX];
    int cin = cfg->channels[stage], cout = cfg->channels[stage + 1];
    int mid = model_stage_mid(cfg, stage), half = mid / 2;

    snprintf(path, sizeof path, "stages.%d.conv_down", stage);
    x = conv_bn(b, path, x, cin, mid, 3, 2, cfg->act, -1);
    if (b->failed)
        return 0;
    int level = b->m->tensors[x].level;
    int cat = add_tensor(b, mid, level, -1, 0);
    int y1 = add_tensor(b, half, level, cat, 0);
    int y2 = add_tensor(b, half, level, cat, half);

    snprintf(path, sizeof path, "stages.%d.conv1", stage);
    conv_bn(b, path, x, mid, half, 1, 1, cfg->act, y1);
    snprintf(path, sizeof path, "stages.%d.conv2", stage);
    int z = conv_bn(b, path, x, mid, half, 1, 1, cfg->act, -1);
    for (int j = 0; j < cfg->layers[stage]; j++) {
        snprintf(path, sizeof path, "stages.%d.blocks.%d", stage, j);
        z = basic_block(b, path, z, half, j == cfg->layers[stage] - 1 ? y2 : -1);
    }

    char prefix[MODEL_KEY_MAX];
    snprintf(prefix, sizeof prefix, "stages.%d.attn.", stage);
    int fw = add_param(b, prefix, "fc.weight", PARAM_FC_WEIGHT, 4, mid, mid, 1, 1);
    int fb = add_param(b, prefix, "fc.bias", PARAM_FC_BIAS, 1, mid, 0, 0, 0);
    snprintf(name, sizeof name, "stages.%d.attn", stage);
    graph_node *n = add_node(b, NODE_ESE, name);
    n->in0 = n->out = cat;
    n->cin = n->cout = mid;
    n->weight = fw;
    n->bias = fb;

    snprintf(path, sizeof path, "stages.%d.conv3", stage);
    int out = conv_bn(b, path, cat, mid, cout, 1, 1, cfg->act, -1);
    if (!b->failed)
        b->m->tensors[out].stage = stage;
    return out;
}

cspresnet_status model_build(const cspresnet_config *cfg, int deployed, cspresnet_model **out,
                             error_buf *err)
{
    *out = NULL;
    cspresnet_model *m = calloc(1, sizeof *m);
    if (!m)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the model");
    m->cfg = *cfg;
    m->deployed = deployed;
    builder b = {.m = m};

    int x = add_tensor(&b, MODEL_INPUT_CHANNELS, 0, -1, 0); /* tensor 0: the caller's input */
    int c0 = cfg->channels[0], ch = model_stem_mid(cfg);
    x = conv_bn(&b, "stem.conv1", x, MODEL_INPUT_CHANNELS, ch, 3, 2, cfg->act, -1);
    if (cfg->use_large_stem) {
        x = conv_bn(&b, "stem.conv2", x, ch, ch, 3, 1, cfg->act, -1);
        x = conv_bn(&b, "stem.conv3", x, ch, c0, 3, 1, cfg->act, -1);
    } else {
        x = conv_bn(&b, "stem.conv2", x, ch, c0, 3, 1, cfg->act, -1);
    }
    for (int s = 0; s < CSPRESNET_NUM_STAGES && !b.failed; s++) {
        x = csp_stage(&b, s, x);
        m->stage_tensor[s] = x;
    }
    if (!b.failed) {
        m->weight_floats = b.floats;
        m->weights = calloc((size_t)b.floats, sizeof(float));
        if (!m->weights)
            b.failed = 1;
    }
    if (b.failed) {
        cspresnet_model_free(m);
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the model");
    }
    *out = m;
    return CSPRESNET_OK;
}

long model_find_param(const cspresnet_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].key, key) == 0)
            return (long)i;
    return -1;
}

void cspresnet_model_free(cspresnet_model *model)
{
    if (!model)
        return;
    free(model->params);
    if (model->weights_release)
        model->weights_release(model->weights_owner);
    else
        free(model->weights);
    free(model->nodes);
    free(model->tensors);
    free(model);
}

const cspresnet_config *cspresnet_model_config(const cspresnet_model *model)
{
    return model ? &model->cfg : NULL;
}

size_t cspresnet_model_param_count(const cspresnet_model *model)
{
    return model ? model->n_params : 0;
}

cspresnet_status cspresnet_model_param(const cspresnet_model *model, size_t i, const char **key,
                                       int *ndim, int64_t shape[4], const float **data,
                                       int *trainable)
{
    if (!model || i >= model->n_params)
        return CSPRESNET_ERR_ARGUMENT;
    const param_info *p = &model->params[i];
    if (key)
        *key = p->key;
    if (ndim)
        *ndim = p->ndim;
    if (shape)
        for (int d = 0; d < 4; d++)
            shape[d] = d < p->ndim ? p->shape[d] : 1;
    if (data)
        *data = model->weights + p->offset;
    if (trainable)
        *trainable = p->trainable;
    return CSPRESNET_OK;
}
