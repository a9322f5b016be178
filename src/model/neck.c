/*
 * neck.c - PP-YOLOE's CustomCSPPAN neck into the graph (SPEC §5), keys "neck.*":
 *   CSPStage(cin, cout, n) : mid = cout/2; y1 = conv1(x); y2 = convs(conv2(x));
 *                            out = conv3(concat(y1, y2)); convs = n BasicBlocks without
 *                            shortcut (ConvBN 3x3 + act, then RepVGG -> act), with SPP
 *                            after block (n-1)/2 in fpn_stages[0] only
 *   SPP(4*mid -> mid)      : conv(concat(x, maxpool5(x), maxpool9(x), maxpool13(x)))
 *   FPN over [C5, C4, C3]  : route = fpn_stages[i](concat(route, C) for i > 0);
 *                            route = upsample2x(fpn_routes[i](route)) for i < 2
 *   PAN, i = 1 then 0      : route = pan_stages[i](concat(pan_routes[i](route), fpn_feat[i]))
 * Outputs at strides 32 (o0), 16 (o1), 8 (o2). No alpha in the neck; the activation is
 * the backbone's. Nodes are emitted in execution order, so the parameters come out in
 * that order too; detector.c puts them in Paddle's state_dict order afterwards.
 */
#include <stdio.h>

#include "model/builder.h"
#include "model/detector_infer.h"

static int spp(builder *b, const char *path, int x, int mid, cspresnet_act act)
{
    static const int pools[3] = {5, 9, 13};
    char name[GRAPH_NAME_MAX];
    int parts[4] = {x, 0, 0, 0};
    for (int i = 0; i < 3; i++) {
        op_attrs a = {.k = pools[i], .stride = 1, .pad = pools[i] / 2};
        snprintf(name, sizeof name, "%s.pool%d", path, i);
        parts[i + 1] = bld_node(b, &op_maxpool, name, 1, &x, mid, 0, NULL, &a);
    }
    snprintf(name, sizeof name, "%s.concat", path);
    int cat = bld_node(b, &op_concat, name, 4, parts, 4 * mid, 0, NULL, NULL);
    snprintf(name, sizeof name, "%s.conv", path);
    int out = bld_conv_bn(b, name, cat, 4 * mid, mid, 1, 1, act);
    bld_module(b, "SPP", x, out, -1, -1, 0);
    return out;
}

static int csp_stage(builder *b, const char *path, int x, int cin, int cout, int blocks, int with_spp)
{
    const cspresnet_act act = b->m->cfg.act;
    const int mid = cout / 2;
    char p[GRAPH_NAME_MAX];
    snprintf(p, sizeof p, "%s.conv1", path);
    int y1 = bld_conv_bn(b, p, x, cin, mid, 1, 1, act);
    snprintf(p, sizeof p, "%s.conv2", path);
    int y2 = bld_conv_bn(b, p, x, cin, mid, 1, 1, act);
    for (int j = 0; j < blocks; j++) {
        int in = y2;
        snprintf(p, sizeof p, "%s.convs.%d.conv1", path, j);
        y2 = bld_conv_bn(b, p, y2, mid, mid, 3, 1, act);
        snprintf(p, sizeof p, "%s.convs.%d.conv2", path, j);
        y2 = bld_repvgg(b, p, y2, mid, act, 0, -1);
        bld_module(b, "BasicBlock", in, y2, -1, -1, 0);
        if (with_spp && j == (blocks - 1) / 2) {
            snprintf(p, sizeof p, "%s.convs.spp", path);
            y2 = spp(b, p, y2, mid, act);
        }
    }
    snprintf(p, sizeof p, "%s.concat", path);
    int parts[2] = {y1, y2};
    int cat = bld_node(b, &op_concat, p, 2, parts, 2 * mid, 0, NULL, NULL);
    snprintf(p, sizeof p, "%s.conv3", path);
    int out = bld_conv_bn(b, p, cat, 2 * mid, cout, 1, 1, act);
    bld_module(b, "CSPStage", x, out, -1, -1, 0);
    return out;
}

void neck_build(builder *b, const detector_config *dc, const int c345[DET_LEVELS], int outs[DET_LEVELS])
{
    const cspresnet_act act = b->m->cfg.act;
    const int *o = dc->neck_out, n = dc->neck_blocks;
    const int levels[DET_LEVELS] = {c345[2], c345[1], c345[0]};   /* C5, C4, C3 */
    const int widths[DET_LEVELS] = {dc->backbone_out[2], dc->backbone_out[1], dc->backbone_out[0]};
    char p[GRAPH_NAME_MAX];
    int feat[DET_LEVELS], route = -1, cin = 0;
    for (int i = 0; i < DET_LEVELS; i++) {
        int x = levels[i];
        cin = widths[i];
        if (i > 0) {
            snprintf(p, sizeof p, "neck.fpn_stages.%d.concat", i);
            int parts[2] = {route, levels[i]};
            cin += o[i - 1] / 2;
            x = bld_node(b, &op_concat, p, 2, parts, cin, 0, NULL, NULL);
        }
        snprintf(p, sizeof p, "neck.fpn_stages.%d.0", i);
        feat[i] = route = csp_stage(b, p, x, cin, o[i], n, dc->spp && i == 0);
        if (i < DET_LEVELS - 1) {
            snprintf(p, sizeof p, "neck.fpn_routes.%d", i);
            route = bld_conv_bn(b, p, route, o[i], o[i] / 2, 1, 1, act);
            snprintf(p, sizeof p, "neck.fpn_routes.%d.upsample", i);
            route = bld_node(b, &op_upsample2x, p, 1, &route, o[i] / 2, 0, NULL, NULL);
        }
    }
    outs[2] = route;
    for (int i = DET_LEVELS - 2; i >= 0; i--) {
        snprintf(p, sizeof p, "neck.pan_routes.%d", i);
        int down = bld_conv_bn(b, p, route, o[i + 1], o[i + 1], 3, 2, act);
        snprintf(p, sizeof p, "neck.pan_stages.%d.concat", i);
        int parts[2] = {down, feat[i]};
        int x = bld_node(b, &op_concat, p, 2, parts, o[i + 1] + o[i], 0, NULL, NULL);
        snprintf(p, sizeof p, "neck.pan_stages.%d.0", i);
        outs[i] = route = csp_stage(b, p, x, o[i + 1] + o[i], o[i], n, 0);
    }
    /* forward(blocks): one list argument [C3, C4, C5]; the list of outs */
    gmodule md = {.cls = "CustomCSPPAN", .n_in = DET_LEVELS, .n_out = DET_LEVELS, .in_list = 1, .p0 = -1};
    for (int i = 0; i < DET_LEVELS; i++) {
        md.in[i] = c345[i];
        md.out[i] = outs[i];
    }
    bld_module_add(b, &md);
}
