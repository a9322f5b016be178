/*
 * head.c - PP-YOLOE's PPYOLOEHead into the graph (SPEC §5), keys "yolo_head.*". Per
 * level i (strides 32, 16, 8; f = the neck's output, c = its channels):
 *   ESEAttn(f)   : conv(f * sigmoid(fc(mean_hw(f)))), conv = ConvBN 1x1 + act, a
 *                  RepVggBlock without alpha (PP-YOLOE+ t) or none (t-relu)
 *   cls          : pred_cls[i](stem_cls[i](f) + f)   (3x3 conv with bias -> classes)
 *   reg          : pred_reg[i](stem_reg[i](f))       (3x3 conv with bias -> 4 * bins)
 * Deployed, the class branch's residual is added in stem_cls's conv epilogue (after its
 * act, as the backbone's BasicBlock shortcut) where ESEAttn has a conv.
 * Then "boxes" (det_boxes: DFL with proj_conv's weight, anchors, strides; [N, L, 4]
 * before any scale factor) and "scores" (det_scores: sigmoid, [N, C, L]), the graph's
 * outputs in that order. Parameters come out in execution order (detector.c reorders).
 */
#include <stdio.h>

#include "model/builder.h"
#include "model/detector_infer.h"

/* residual >= 0 (deployed, with a conv): added after the conv's act in its epilogue */
static int ese_attn(builder *b, const char *path, int f, int c, det_attn_conv attn, int residual)
{
    char p[GRAPH_NAME_MAX];
    snprintf(p, sizeof p, "%s.", path);
    int fc[2];
    bld_weight_bias(b, p, "fc.weight", PARAM_FC_WEIGHT, "fc.bias", PARAM_FC_BIAS, c, c, 1, fc);
    snprintf(p, sizeof p, "%s.gate", path);
    int y = bld_node(b, &op_ese_attn, p, 1, &f, c, 2, fc, NULL);
    bld_module(b, "Conv2D", f, y, fc[0], fc[1] + 1, 1);
    snprintf(p, sizeof p, "%s.conv", path);
    if (attn == DET_ATTN_CONVBN)
        y = bld_conv_bn_res(b, p, y, c, c, 1, 1, b->m->cfg.act, residual);
    else if (attn == DET_ATTN_REPVGG)
        y = bld_repvgg(b, p, y, c, b->m->cfg.act, 0, residual);
    /* forward(feat, avg_feat) */
    bld_module_add(b, &(gmodule){.cls = "ESEAttn", .n_in = 2, .n_out = 1, .in = {f, f}, .out = {y},
                                 .in_view = {GMOD_NCHW, GMOD_POOLED}, .p0 = -1});
    return y;
}

/* A 3x3 conv with bias, as nn.Conv2D(c, cout, 3, padding=1). */
static int pred_conv(builder *b, const char *path, int x, int c, int cout)
{
    char p[GRAPH_NAME_MAX];
    snprintf(p, sizeof p, "%s.", path);
    int w[2];
    bld_weight_bias(b, p, "weight", PARAM_CONV_WEIGHT, "bias", PARAM_CONV_BIAS, cout, c, 3, w);
    op_attrs a = {3, 1, 1, cout, CSPRESNET_ACT_NONE};
    int out = bld_node(b, &op_conv2d, path, 1, &x, cout, 2, w, &a);
    bld_module(b, "Conv2D", x, out, w[0], w[1] + 1, 0);
    return out;
}

void head_build(builder *b, const detector_config *dc, const int feats[DET_LEVELS])
{
    const int bins = dc->reg_max + 1;
    char p[GRAPH_NAME_MAX];
    int cls[DET_LEVELS], reg[DET_LEVELS], proj_row = -1;
    for (int i = 0; i < DET_LEVELS; i++) {
        const int f = feats[i], c = dc->neck_out[i];
        snprintf(p, sizeof p, "yolo_head.stem_cls.%d", i);
        /* deployed: the residual in the conv's epilogue, as the backbone's shortcut */
        const int fused = b->m->deployed && dc->attn_conv != DET_ATTN_NONE;
        int s = ese_attn(b, p, f, c, dc->attn_conv, fused ? f : -1);
        if (!fused) {
            snprintf(p, sizeof p, "yolo_head.stem_cls.%d.residual", i);
            s = bld_add(b, p, s, f, -1);
        }
        snprintf(p, sizeof p, "yolo_head.pred_cls.%d", i);
        cls[i] = pred_conv(b, p, s, c, dc->num_classes);
        snprintf(p, sizeof p, "yolo_head.stem_reg.%d", i);
        s = ese_attn(b, p, f, c, dc->attn_conv, -1);
        snprintf(p, sizeof p, "yolo_head.pred_reg.%d", i);
        reg[i] = pred_conv(b, p, s, c, 4 * bins);
        /* proj_conv runs once per level; paddle.summary keeps one row, where the first
         * call put it, with the last call's shapes (filled in below) */
        if (i == 0)
            proj_row = bld_module_add(b, &(gmodule){.cls = "Conv2D", .n_in = 1, .n_out = 1, .p0 = -1});
    }
    int proj = bld_param(b, "yolo_head.", "proj_conv.weight", PARAM_CONV_WEIGHT, 4, 1, bins, 1, 1);
    if (proj_row >= 0 && proj >= 0)
        b->m->g.modules[proj_row] = (gmodule){.cls = "Conv2D", .n_in = 1, .n_out = 1,
                                              .in = {reg[DET_LEVELS - 1]}, .out = {reg[DET_LEVELS - 1]},
                                              .in_view = {GMOD_DFL_IN}, .out_view = {GMOD_DFL_OUT},
                                              .p0 = proj, .p1 = proj + 1};
    op_attrs a = {.stride = 32};
    int boxes = bld_node(b, &op_det_boxes, "yolo_head.boxes", DET_LEVELS, reg, 0, 1, &proj, &a);
    int scores = bld_node(b, &op_det_scores, "yolo_head.scores", DET_LEVELS, cls, dc->num_classes, 0, NULL, NULL);
    bld_name(b, boxes, "boxes", 1, -1, 0);
    bld_name(b, scores, "scores", 1, -1, 0);
    /* forward(feats): one list argument; (scores [N, C, L], distances [N, L, 4]), the
     * distances' shape being the boxes' */
    gmodule md = {.cls = "PPYOLOEHead", .n_in = DET_LEVELS, .n_out = 2, .in_list = 1, .out = {scores, boxes},
                  .out_view = {GMOD_NCL, GMOD_NCL}, .p0 = -1};
    for (int i = 0; i < DET_LEVELS; i++)
        md.in[i] = feats[i];
    bld_module_add(b, &md);
}
