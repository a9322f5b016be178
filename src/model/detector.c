/*
 * detector.c - a PP-YOLOE detector as one graph: the backbone (backbone.c, keys
 * "backbone.*", its stage 1..3 outputs as C3, C4, C5), the neck (neck.c) and the head
 * (head.c), whose "boxes" and "scores" are the forward's outputs.
 *
 * The builders emit parameters as they emit nodes, in execution order; Paddle's
 * state_dict lists the neck's and head's by construction order instead (all
 * fpn_stages, then fpn_routes, pan_stages, pan_routes; all stem_cls, stem_reg,
 * pred_cls, pred_reg, then proj_conv). After building, the parameters are put in
 * detector_visit_params's order (the one the port's state_dict has) and the nodes'
 * and modules' indices and the arena offsets follow; a parameter list that does not
 * match that order key for key is an internal error, reported.
 * FLOP sections: "backbone", "neck", "head". Training segments: the backbone's (stem,
 * stages), then the neck, then the head. The summary's rows add the containers Paddle's
 * hooks see: CSPResNet (the image to C3, C4, C5), CustomCSPPAN, PPYOLOEHead. The
 * deployed form (deploy.c's output, a deployed file's model) is ordered the same way,
 * by the deployed key list; the layout of the RepVGG-fused form (model_build_layout)
 * keeps the execution order of its parameters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/builder.h"
#include "model/detector_infer.h"

typedef struct order_ctx {
    const cspresnet_model *m;
    long *order;        /* new position -> old index */
    size_t n, first;    /* filled, the first neck/head position */
    int bad;
} order_ctx;

static void order_visit(void *arg, const char *key, int ndim, const int64_t *shape)
{
    order_ctx *o = arg;
    long i = -1;
    for (size_t j = o->first; j < o->m->n_params && i < 0; j++)
        if (strcmp(o->m->params[j].key, key) == 0)
            i = (long)j;
    if (i < 0 || o->n >= o->m->n_params || o->m->params[i].ndim != ndim) {
        o->bad = 1;
        return;
    }
    for (int d = 0; d < ndim; d++)
        o->bad |= o->m->params[i].shape[d] != shape[d];
    o->order[o->n++] = i;
}

/* Puts params [first, n_params) in dc's visiting order. */
static cspresnet_status reorder_params(cspresnet_model *m, const detector_config *dc, size_t first,
                                       error_buf *err)
{
    const size_t P = m->n_params;
    order_ctx o = {m, malloc(sizeof(long) * (P + 1)), first, first, 0};
    long *inv = malloc(sizeof(long) * (P + 1));
    param_info *np = malloc(sizeof *np * (P + 1));
    cspresnet_status s = CSPRESNET_OK;
    if (!o.order || !inv || !np) {
        s = error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the detector");
        goto done;
    }
    for (size_t i = 0; i < first; i++)
        o.order[i] = (long)i;
    detector_visit_params(dc, order_visit, &o);
    for (size_t i = 0; i < P; i++)
        inv[i] = -1;
    for (size_t i = 0; i < o.n && !o.bad; i++) {
        o.bad |= inv[o.order[i]] >= 0;
        inv[o.order[i]] = (long)i;
    }
    if (o.bad || o.n != P) {
        s = error_set(err, CSPRESNET_ERR_CONFIG,
                      "internal: the detector's %zu neck and head parameters do not match Paddle's list (%zu matched)",
                      P - first, o.n - first);
        goto done;
    }
    size_t off = 0;
    for (size_t i = 0; i < P; i++) {
        np[i] = m->params[o.order[i]];
        np[i].byte_offset = off;
        off += ((size_t)np[i].numel * elem_size(np[i].dt) + 63) & ~(size_t)63;
    }
    memcpy(m->params, np, sizeof *np * P);
    for (int i = 0; i < m->g.n_nodes; i++)
        for (int j = 0; j < GN_MAX_PARAM; j++)
            if (m->g.nodes[i].param[j] >= 0)
                m->g.nodes[i].param[j] = (int)inv[m->g.nodes[i].param[j]];
    /* a module's own parameters are one layer's, consecutive in both orders */
    for (int i = 0; i < m->g.n_modules; i++) {
        gmodule *md = &m->g.modules[i];
        if (md->p1 > md->p0) {
            int p0 = (int)inv[md->p0];
            md->p1 = p0 + (md->p1 - md->p0);
            md->p0 = p0;
        }
    }
done:
    free(o.order);
    free(inv);
    free(np);
    return s;
}

/* The CSPResNet row: the image in, the stage maps C3, C4, C5 out (a list). */
static void backbone_row(builder *b, const int c345[DET_LEVELS])
{
    gmodule md = {.cls = "CSPResNet", .n_in = 1, .n_out = DET_LEVELS, .p0 = -1};
    for (int i = 0; i < DET_LEVELS; i++)
        md.out[i] = c345[i];
    bld_module_add(b, &md);
}

cspresnet_status detector_build(const cspresnet_config *cfg, const detector_config *dc, model_form form,
                                int weights, cspresnet_model **out, error_buf *err)
{
    *out = NULL;
    if (dc->deployed && form != MODEL_FORM_DEPLOYED)
        return error_set(err, CSPRESNET_ERR_CONFIG, "internal: a deployed detector config built in another form");
    for (int i = 0; i < DET_LEVELS; i++)
        if (dc->backbone_out[i] != cfg->channels[i + 2])
            return error_set(err, CSPRESNET_ERR_CONFIG,
                             "the neck takes %d channels at stride %d but the backbone gives %d", dc->backbone_out[i],
                             8 << i, cfg->channels[i + 2]);
    cspresnet_model *m = calloc(1, sizeof *m);
    if (!m || !(m->det = malloc(sizeof *m->det))) {
        free(m);
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the detector");
    }
    m->cfg = *cfg;
    *m->det = *dc;
    m->deployed = m->det->deployed = form == MODEL_FORM_DEPLOYED;
    builder b = {.m = m, .fuse_repvgg = form == MODEL_FORM_REPVGG_FUSED, .no_weights = !weights};
    bld_tensor(&b, MODEL_INPUT_CHANNELS);
    if (!b.failed)
        m->g.tensors[0].seg = -1;
    backbone_build(&b, "backbone.");
    graph *g = &m->g;
    const size_t backbone_params = m->n_params;
    const int backbone_segments = g->n_segments;
    g->n_outputs = 0;   /* the stage maps stay named; the detector returns boxes, scores */
    for (int i = 0; i < g->n_nodes; i++)
        g->nodes[i].section = 0;
    int c345[DET_LEVELS], feats[DET_LEVELS];
    for (int i = 0; i < DET_LEVELS; i++) {
        char name[24] = "stage1";
        name[5] = (char)('1' + i);
        c345[i] = graph_find_named(g, name);
    }
    backbone_row(&b, c345);
    b.seg = backbone_segments;
    b.section = 1;
    neck_build(&b, dc, c345, feats);
    b.seg = backbone_segments + 1;
    b.section = 2;
    head_build(&b, dc, feats);
    g->n_segments = backbone_segments + 2;
    g->n_sections = 3;
    static const char *const sections[3] = {"backbone", "neck", "head"};
    for (int i = 0; i < 3; i++)
        snprintf(g->section_names[i], sizeof g->section_names[i], "%s", sections[i]);
    /* the trained and deployed forms have key lists to order by (detector_visit_params);
     * the RepVGG-fused form is a layout only */
    cspresnet_status s = b.failed ? error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the detector")
                         : form != MODEL_FORM_REPVGG_FUSED ? reorder_params(m, m->det, backbone_params, err)
                                                           : CSPRESNET_OK;
    if (s == CSPRESNET_OK)
        s = bld_finish(&b, err);
    if (s != CSPRESNET_OK) {
        cspresnet_model_free(m);
        return s;
    }
    *out = m;
    return CSPRESNET_OK;
}

cspresnet_status model_build_detector(const cspresnet_config *cfg, const detector_config *dc,
                                      cspresnet_model **out, error_buf *err)
{
    return detector_build(cfg, dc, dc->deployed ? MODEL_FORM_DEPLOYED : MODEL_FORM_TRAINED, 1, out, err);
}
