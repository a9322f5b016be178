/*
 * backbone.c - the CSPResNet backbone into a graph (builder.h has the layers):
 *   stem        : ConvBNLayer 3x3/2 to channels[0]/2, then one (two with the large
 *                 stem) 3x3 ConvBNLayers to channels[0]           (segment 0)
 *   BasicBlock  : y = convbn3x3_act(x); out = x + repvgg(y)      (RepVGG fused: the
 *                 conv's epilogue adds x)
 *   CSPResStage : x = conv_down(x); y1 = conv1(x); z = blocks(conv2(x));
 *                 out = conv3(ese(concat(y1, z)))                  (segment i + 1)
 * The stage outputs are named "stage0".."stage3"; those in return_idx are forward's
 * outputs, in order.
 */
#include <stdio.h>

#include "model/builder.h"

static int basic_block(builder *b, const char *path, int x, int c)
{
    const cspresnet_config *cfg = &b->m->cfg;
    char p[GRAPH_NAME_MAX];
    snprintf(p, sizeof p, "%s.conv1", path);
    int y = bld_conv_bn(b, p, x, c, c, 3, 1, cfg->act);
    snprintf(p, sizeof p, "%s.conv2", path);
    int out;
    if (bld_repvgg_fused(b)) {
        out = bld_repvgg(b, p, y, c, cfg->act, cfg->use_alpha, x);
    } else {
        int r = bld_repvgg(b, p, y, c, cfg->act, cfg->use_alpha, -1);
        snprintf(p, sizeof p, "%s.shortcut", path);
        out = bld_add(b, p, x, r, -1);
    }
    bld_module(b, "BasicBlock", x, out, -1, -1, 0);
    return out;
}

static int csp_stage(builder *b, const char *prefix, int stage, int x)
{
    const cspresnet_config *cfg = &b->m->cfg;
    char path[GRAPH_NAME_MAX];
    int cin = cfg->channels[stage], cout = cfg->channels[stage + 1];
    int mid = model_stage_mid(cfg, stage), half = mid / 2;
    int in = x;

    snprintf(path, sizeof path, "%sstages.%d.conv_down", prefix, stage);
    x = bld_conv_bn(b, path, x, cin, mid, 3, 2, cfg->act);
    snprintf(path, sizeof path, "%sstages.%d.conv1", prefix, stage);
    int y1 = bld_conv_bn(b, path, x, mid, half, 1, 1, cfg->act);
    snprintf(path, sizeof path, "%sstages.%d.conv2", prefix, stage);
    int z = bld_conv_bn(b, path, x, mid, half, 1, 1, cfg->act);
    for (int j = 0; j < cfg->layers[stage]; j++) {
        snprintf(path, sizeof path, "%sstages.%d.blocks.%d", prefix, stage, j);
        z = basic_block(b, path, z, half);
    }
    snprintf(path, sizeof path, "%sstages.%d.concat", prefix, stage);
    int parts[2] = {y1, z};
    int cat = bld_node(b, &op_concat, path, 2, parts, mid, 0, NULL, NULL);

    snprintf(path, sizeof path, "%sstages.%d.attn.", prefix, stage);
    int fc[2];
    bld_weight_bias(b, path, "fc.weight", PARAM_FC_WEIGHT, "fc.bias", PARAM_FC_BIAS, mid, mid, 1, fc);
    snprintf(path, sizeof path, "%sstages.%d.attn", prefix, stage);
    int e = bld_node(b, &op_ese, path, 1, &cat, mid, 2, fc, NULL);
    bld_module(b, "Conv2D", cat, e, fc[0], fc[1] + 1, 1);
    bld_module(b, "EffectiveSELayer", cat, e, -1, -1, 0);

    snprintf(path, sizeof path, "%sstages.%d.conv3", prefix, stage);
    int out = bld_conv_bn(b, path, e, mid, cout, 1, 1, cfg->act);
    bld_module(b, "CSPResStage", in, out, -1, -1, 0);
    return out;
}

int backbone_build(builder *b, const char *prefix)
{
    const cspresnet_config *cfg = &b->m->cfg;
    char path[GRAPH_NAME_MAX];
    graph *g = &b->m->g;
    b->seg = b->section = 0;
    int c0 = cfg->channels[0], ch = model_stem_mid(cfg);
    snprintf(path, sizeof path, "%sstem.conv1", prefix);
    int x = bld_conv_bn(b, path, 0, MODEL_INPUT_CHANNELS, ch, 3, 2, cfg->act);
    if (cfg->use_large_stem) {
        snprintf(path, sizeof path, "%sstem.conv2", prefix);
        x = bld_conv_bn(b, path, x, ch, ch, 3, 1, cfg->act);
        snprintf(path, sizeof path, "%sstem.conv3", prefix);
        x = bld_conv_bn(b, path, x, ch, c0, 3, 1, cfg->act);
    } else {
        snprintf(path, sizeof path, "%sstem.conv2", prefix);
        x = bld_conv_bn(b, path, x, ch, c0, 3, 1, cfg->act);
    }
    snprintf(g->section_names[0], sizeof g->section_names[0], "stem");
    for (int s = 0; s < CSPRESNET_NUM_STAGES; s++) {
        b->seg = b->section = s + 1;
        x = csp_stage(b, prefix, s, x);
        snprintf(g->section_names[s + 1], sizeof g->section_names[0], "stage %d (stride %d)", s, 4 << s);
        char name[24];
        snprintf(name, sizeof name, "stage%d", s);
        int returned = 0;
        for (int r = 0; r < cfg->num_return; r++)
            returned |= cfg->return_idx[r] == s;
        bld_name(b, x, name, returned, s, 4 << s);
    }
    g->n_segments = CSPRESNET_NUM_STAGES + 1;
    g->n_sections = CSPRESNET_NUM_STAGES + 1;
    return x;
}
