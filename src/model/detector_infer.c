/*
 * detector_infer.c - the neck and head configuration of a PP-YOLOE checkpoint from its
 * keys and shapes, the parameter list that configuration implies (Paddle's state_dict
 * order, as tests/ref/ppyoloe_torch.py builds it), and the check of one against the
 * other (SPEC §5).
 *
 * Parameter order: neck.fpn_stages.{0,1,2}, neck.fpn_routes.{0,1}, neck.pan_stages.{0,1},
 * neck.pan_routes.{0,1}; then yolo_head.stem_cls.{0,1,2}, stem_reg.{0,1,2},
 * pred_cls.{0,1,2}, pred_reg.{0,1,2}, proj_conv. Inside a CSPStage: conv1, conv2,
 * convs.{j} (with convs.spp after block (n-1)/2 of fpn_stages[0]), conv3. A ConvBN is
 * conv.weight, bn.{weight,bias,_mean,_variance}; deployed, conv.weight and conv.bias. A
 * RepVggBlock (no alpha in the neck and head) is conv1 and conv2 ConvBNs; deployed, one
 * 3x3 conv with bias at the block's path (build.c's naming for the backbone).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/detector_infer.h"

static const int default_neck_base[DET_LEVELS] = {768, 384, 192};
#define NECK_BASE_BLOCKS 3
#define DET_DIM_MAX (1 << 20)   /* channel counts above this are malformed */

static int python_round(double v) { return (int)rint(v); }

cspresnet_status detector_config_scaled(detector_config *cfg, double width_mult, double depth_mult,
                                        const int *neck_base, const int *backbone_out,
                                        int num_classes, int reg_max, det_attn_conv attn_conv)
{
    if (!cfg || !backbone_out || !(width_mult > 0.0) || !(depth_mult > 0.0) || width_mult > 64.0 ||
        depth_mult > 64.0 || num_classes < 1 || reg_max < 0 || (unsigned)attn_conv > DET_ATTN_NONE)
        return CSPRESNET_ERR_ARGUMENT;
    memset(cfg, 0, sizeof *cfg);
    if (!neck_base)
        neck_base = default_neck_base;
    for (int i = 0; i < DET_LEVELS; i++) {
        int c = python_round(neck_base[i] * width_mult);
        cfg->neck_out[i] = c > 1 ? c : 1;
        cfg->backbone_out[i] = backbone_out[i];
    }
    int n = python_round(NECK_BASE_BLOCKS * depth_mult);
    cfg->neck_blocks = n > 1 ? n : 1;
    cfg->spp = 1;
    cfg->num_classes = num_classes;
    cfg->reg_max = reg_max;
    cfg->attn_conv = attn_conv;
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- the parameter list */

typedef struct emitter {
    det_param_visit visit;
    void *ctx;
    int deployed;
} emitter;

static void emit(const emitter *e, const char *path, const char *leaf, int ndim, int64_t d0, int64_t d1,
                 int64_t d2, int64_t d3)
{
    char key[MODEL_KEY_MAX];
    int64_t shape[4] = {d0, d1, d2, d3};
    snprintf(key, sizeof key, "%s.%s", path, leaf);
    e->visit(e->ctx, key, ndim, shape);
}

static void conv_bn(const emitter *e, const char *path, int cin, int cout, int k)
{
    emit(e, path, "conv.weight", 4, cout, cin, k, k);
    if (e->deployed) {
        emit(e, path, "conv.bias", 1, cout, 0, 0, 0);
        return;
    }
    static const char *const bn[4] = {"bn.weight", "bn.bias", "bn._mean", "bn._variance"};
    for (int i = 0; i < 4; i++)
        emit(e, path, bn[i], 1, cout, 0, 0, 0);
}

static void repvgg(const emitter *e, const char *path, int c)
{
    char p[MODEL_KEY_MAX];
    if (e->deployed) {
        emit(e, path, "conv.weight", 4, c, c, 3, 3);
        emit(e, path, "conv.bias", 1, c, 0, 0, 0);
        return;
    }
    snprintf(p, sizeof p, "%s.conv1", path);
    conv_bn(e, p, c, c, 3);
    snprintf(p, sizeof p, "%s.conv2", path);
    conv_bn(e, p, c, c, 1);
}

static void csp_stage(const emitter *e, const char *path, int cin, int cout, int blocks, int spp)
{
    char p[MODEL_KEY_MAX];
    int mid = cout / 2;
    snprintf(p, sizeof p, "%s.conv1", path);
    conv_bn(e, p, cin, mid, 1);
    snprintf(p, sizeof p, "%s.conv2", path);
    conv_bn(e, p, cin, mid, 1);
    for (int j = 0; j < blocks; j++) {
        /* BasicBlock without shortcut: ConvBN 3x3, then a RepVggBlock */
        snprintf(p, sizeof p, "%s.convs.%d.conv1", path, j);
        conv_bn(e, p, mid, mid, 3);
        snprintf(p, sizeof p, "%s.convs.%d.conv2", path, j);
        repvgg(e, p, mid);
        if (spp && j == (blocks - 1) / 2) {
            snprintf(p, sizeof p, "%s.convs.spp.conv", path);
            conv_bn(e, p, 4 * mid, mid, 1);
        }
    }
    snprintf(p, sizeof p, "%s.conv3", path);
    conv_bn(e, p, 2 * mid, cout, 1);
}

static void ese_attn(const emitter *e, const char *path, int c, det_attn_conv attn)
{
    char p[MODEL_KEY_MAX];
    emit(e, path, "fc.weight", 4, c, c, 1, 1);
    emit(e, path, "fc.bias", 1, c, 0, 0, 0);
    snprintf(p, sizeof p, "%s.conv", path);
    if (attn == DET_ATTN_CONVBN)
        conv_bn(e, p, c, c, 1);
    else if (attn == DET_ATTN_REPVGG)
        repvgg(e, p, c);
}

void detector_visit_params(const detector_config *cfg, det_param_visit visit, void *ctx)
{
    const emitter e = {visit, ctx, cfg->deployed};
    const int *o = cfg->neck_out, n = cfg->neck_blocks;
    char p[MODEL_KEY_MAX];
    /* FPN over [C5, C4, C3]: level i > 0 takes concat[route (o_{i-1}/2), C] */
    const int fpn_in[DET_LEVELS] = {cfg->backbone_out[2], cfg->backbone_out[1] + o[0] / 2,
                                    cfg->backbone_out[0] + o[1] / 2};
    for (int i = 0; i < DET_LEVELS; i++) {
        snprintf(p, sizeof p, "neck.fpn_stages.%d.0", i);
        csp_stage(&e, p, fpn_in[i], o[i], n, cfg->spp && i == 0);
    }
    for (int i = 0; i < DET_LEVELS - 1; i++) {
        snprintf(p, sizeof p, "neck.fpn_routes.%d", i);
        conv_bn(&e, p, o[i], o[i] / 2, 1);
    }
    for (int i = 0; i < DET_LEVELS - 1; i++) {
        snprintf(p, sizeof p, "neck.pan_stages.%d.0", i);
        csp_stage(&e, p, o[i] + o[i + 1], o[i], n, 0);
    }
    for (int i = 0; i < DET_LEVELS - 1; i++) {
        snprintf(p, sizeof p, "neck.pan_routes.%d", i);
        conv_bn(&e, p, o[i + 1], o[i + 1], 3);
    }
    static const char *const stems[2] = {"stem_cls", "stem_reg"};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < DET_LEVELS; i++) {
            snprintf(p, sizeof p, "yolo_head.%s.%d", stems[s], i);
            ese_attn(&e, p, o[i], cfg->attn_conv);
        }
    const int bins = cfg->reg_max + 1;
    static const char *const preds[2] = {"pred_cls", "pred_reg"};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < DET_LEVELS; i++) {
            int cout = s == 0 ? cfg->num_classes : 4 * bins;
            snprintf(p, sizeof p, "yolo_head.%s.%d", preds[s], i);
            emit(&e, p, "weight", 4, cout, o[i], 3, 3);
            emit(&e, p, "bias", 1, cout, 0, 0, 0);
        }
    emit(&e, "yolo_head.proj_conv", "weight", 4, 1, bins, 1, 1);
}

/* ---------------------------------------------------------------- inference */

static long find_key(const det_key *keys, size_t count, const char *key)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(keys[i].key, key) == 0)
            return (long)i;
    return -1;
}

static int has_key(const det_key *keys, size_t count, const char *key)
{
    return find_key(keys, count, key) >= 0;
}

/* Dimension d of key's array when it is a 4-D conv weight and the dimension is in
 * 1..DET_DIM_MAX; otherwise -1. */
static int conv_dim(const det_key *keys, size_t count, const char *key, int d)
{
    long i = find_key(keys, count, key);
    if (i < 0 || keys[i].ndim != 4)
        return -1;
    int64_t v = keys[i].shape[d];
    return v >= 1 && v <= DET_DIM_MAX ? (int)v : -1;
}

static cspresnet_status need(int value, const char *path, const char *key, const char *what,
                             error_buf *err)
{
    if (value > 0)
        return CSPRESNET_OK;
    return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: cannot read %s: '%s' is missing or not a conv weight",
                     path, what, key);
}

static int neck_blocks_of(const det_key *keys, size_t count)
{
    char key[MODEL_KEY_MAX];
    int j = 0;
    for (;; j++) {
        snprintf(key, sizeof key, "neck.fpn_stages.0.0.convs.%d.conv1.conv.weight", j);
        if (!has_key(keys, count, key) || j > DET_DIM_MAX)
            return j;
    }
}

static cspresnet_status infer_neck(const det_key *keys, size_t count, const int *backbone_out,
                                   const char *path, detector_config *cfg, error_buf *err)
{
    char key[MODEL_KEY_MAX];
    if (!has_key(keys, count, "neck.fpn_stages.0.0.conv3.conv.weight"))
        return error_set(err, CSPRESNET_ERR_WEIGHTS,
                         "%s: no PP-YOLOE neck: 'neck.fpn_stages.0.0.conv3.conv.weight' is missing "
                         "(a backbone-only file?)", path);
    for (int i = 0; i < DET_LEVELS; i++) {
        snprintf(key, sizeof key, "neck.fpn_stages.%d.0.conv3.conv.weight", i);
        cfg->neck_out[i] = conv_dim(keys, count, key, 0);
        if (need(cfg->neck_out[i], path, key, "the neck's widths", err) != CSPRESNET_OK)
            return CSPRESNET_ERR_WEIGHTS;
    }
    /* the FPN's inputs: C5, then C4 + o0/2 and C3 + o1/2 (the upsampled routes first) */
    static const int level_of_fpn[DET_LEVELS] = {2, 1, 0};
    for (int i = 0; i < DET_LEVELS; i++) {
        snprintf(key, sizeof key, "neck.fpn_stages.%d.0.conv1.conv.weight", i);
        int cin = conv_dim(keys, count, key, 1);
        if (need(cin, path, key, "the neck's inputs", err) != CSPRESNET_OK)
            return CSPRESNET_ERR_WEIGHTS;
        int c = i == 0 ? cin : cin - cfg->neck_out[i - 1] / 2;
        if (c < 1)
            return error_set(err, CSPRESNET_ERR_WEIGHTS,
                             "%s: '%s' takes %d channels, fewer than the %d of the upsampled route", path,
                             key, cin, cfg->neck_out[i - 1] / 2);
        cfg->backbone_out[level_of_fpn[i]] = backbone_out ? backbone_out[level_of_fpn[i]] : c;
    }
    cfg->neck_blocks = neck_blocks_of(keys, count);
    if (cfg->neck_blocks == 0)
        return error_set(err, CSPRESNET_ERR_WEIGHTS,
                         "%s: the neck has no blocks: 'neck.fpn_stages.0.0.convs.0.conv1.conv.weight' is missing",
                         path);
    cfg->spp = has_key(keys, count, "neck.fpn_stages.0.0.convs.spp.conv.conv.weight");
    cfg->deployed = has_key(keys, count, "neck.fpn_stages.0.0.conv1.conv.bias") &&
                    !has_key(keys, count, "neck.fpn_stages.0.0.conv1.bn.weight");
    return CSPRESNET_OK;
}

static cspresnet_status infer_head(const det_key *keys, size_t count, const char *path,
                                   detector_config *cfg, error_buf *err)
{
    cfg->num_classes = conv_dim(keys, count, "yolo_head.pred_cls.0.weight", 0);
    if (need(cfg->num_classes, path, "yolo_head.pred_cls.0.weight", "the class count", err) != CSPRESNET_OK)
        return CSPRESNET_ERR_WEIGHTS;
    int bins = conv_dim(keys, count, "yolo_head.proj_conv.weight", 1);
    if (bins < 0) {
        int reg = conv_dim(keys, count, "yolo_head.pred_reg.0.weight", 0);
        if (need(reg, path, "yolo_head.pred_reg.0.weight", "reg_max", err) != CSPRESNET_OK)
            return CSPRESNET_ERR_WEIGHTS;
        if (reg % 4)
            return error_set(err, CSPRESNET_ERR_WEIGHTS,
                             "%s: 'yolo_head.pred_reg.0.weight' has %d outputs, not 4 * (reg_max + 1)", path, reg);
        bins = reg / 4;
    }
    cfg->reg_max = bins - 1;
    /* ESEAttn's conv: ConvBN 1x1 ("conv.conv.weight"), RepVGG ("conv.conv1.*"; deployed:
     * one 3x3 "conv.conv.weight"), or none */
    int k = conv_dim(keys, count, "yolo_head.stem_cls.0.conv.conv.weight", 2);
    if (has_key(keys, count, "yolo_head.stem_cls.0.conv.conv1.conv.weight") || (cfg->deployed && k == 3))
        cfg->attn_conv = DET_ATTN_REPVGG;
    else if (has_key(keys, count, "yolo_head.stem_cls.0.conv.conv.weight"))
        cfg->attn_conv = DET_ATTN_CONVBN;
    else
        cfg->attn_conv = DET_ATTN_NONE;
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- the check */

#define DET_LIST_SHOWN 4   /* keys named per kind of problem; the rest are counted */

typedef struct key_list {
    char text[320];
    size_t used;
    long count;
} key_list;

static void list_add(key_list *l, const char *fmt, const char *key, const char *extra)
{
    if (l->count++ >= DET_LIST_SHOWN || l->used >= sizeof l->text)
        return;
    l->used += (size_t)snprintf(l->text + l->used, sizeof l->text - l->used, "%s", l->count > 1 ? ", " : "");
    if (l->used < sizeof l->text)
        l->used += (size_t)snprintf(l->text + l->used, sizeof l->text - l->used, fmt, key, extra);
}

typedef struct check_ctx {
    const det_key *keys;
    size_t count;
    unsigned char *used;
    key_list missing, misshaped;
} check_ctx;

static void check_visit(void *arg, const char *key, int ndim, const int64_t *shape)
{
    check_ctx *c = arg;
    long i = find_key(c->keys, c->count, key);
    if (i < 0) {
        list_add(&c->missing, "%s%s", key, "");
        return;
    }
    c->used[i] = 1;
    const det_key *k = &c->keys[i];
    int same = k->ndim == ndim;
    for (int d = 0; d < ndim && same; d++)
        same = k->shape[d] == shape[d];
    if (!same) {
        char file[96], want[96], both[200];
        error_shape_str(file, sizeof file, k->ndim, k->shape);
        error_shape_str(want, sizeof want, ndim, shape);
        snprintf(both, sizeof both, " (file %s, expected %s)", file, want);
        list_add(&c->misshaped, "%s%s", key, both);
    }
}

/* Keys this check answers for: all but the backbone's, the training-only aux_* heads and
 * the pre-2022 anchor buffers. */
static int in_scope(const char *key)
{
    return strncmp(key, "backbone.", 9) != 0 && strncmp(key, "aux_", 4) != 0 &&
           strcmp(key, "yolo_head.anchor_points") != 0 && strcmp(key, "yolo_head.stride_tensor") != 0;
}

static void append_section(char *msg, size_t n, size_t *used, const char *name, const key_list *l)
{
    if (!l->count || *used >= n)
        return;
    char more[48] = "";
    if (l->count > DET_LIST_SHOWN)
        snprintf(more, sizeof more, " (+%ld more)", l->count - DET_LIST_SHOWN);
    *used += (size_t)snprintf(msg + *used, n - *used, "; %ld %s: %s%s", l->count, name, l->text, more);
}

static cspresnet_status check_keys(const det_key *keys, size_t count, const detector_config *cfg,
                                   const char *path, error_buf *err)
{
    check_ctx c = {.keys = keys, .count = count, .used = calloc(count + 1, 1)};
    if (!c.used)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    detector_visit_params(cfg, check_visit, &c);
    key_list unexpected = {0};
    for (size_t i = 0; i < count; i++)
        if (!c.used[i] && in_scope(keys[i].key))
            list_add(&unexpected, "%s%s", keys[i].key, "");
    free(c.used);
    if (!c.missing.count && !c.misshaped.count && !unexpected.count)
        return CSPRESNET_OK;
    char msg[sizeof err->text];
    size_t used = (size_t)snprintf(msg, sizeof msg,
                                   "the neck and head do not fit the file (read as neck widths %d, %d, %d, %d blocks per stage, %d classes, reg_max %d)",
                                   cfg->neck_out[0], cfg->neck_out[1], cfg->neck_out[2], cfg->neck_blocks,
                                   cfg->num_classes, cfg->reg_max);
    append_section(msg, sizeof msg, &used, "missing", &c.missing);
    append_section(msg, sizeof msg, &used, "mis-shaped", &c.misshaped);
    append_section(msg, sizeof msg, &used, "unexpected", &unexpected);
    return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: %s", path, msg);
}

cspresnet_status detector_infer_config(const det_key *keys, size_t count, const int *backbone_out,
                                       const char *path, detector_config *cfg, error_buf *err)
{
    if (!path)
        path = "checkpoint";
    if (!cfg || (!keys && count))
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: no key list", path);
    memset(cfg, 0, sizeof *cfg);
    cspresnet_status s = infer_neck(keys, count, backbone_out, path, cfg, err);
    if (s == CSPRESNET_OK)
        s = infer_head(keys, count, path, cfg, err);
    if (s == CSPRESNET_OK)
        s = check_keys(keys, count, cfg, path, err);
    return s;
}
