/*
 * summary.c - paddle.summary's table for a CSPResNet config, plus MACs and FLOPs.
 *
 * paddle.summary registers a forward post-hook on every layer except Sequential /
 * LayerList containers and the model itself, so a row appears when a layer's forward
 * finishes: Conv2D and BatchNorm2D before their ConvBNLayer, a block after all of its
 * parts. Each row counts the layer's own parameters (layer._parameters), so the rows
 * add up to the totals. Activations given by name are functions in Paddle, not
 * layers, and have no rows. Row names are "<Class>-<k>", k counting per class.
 *
 * The rows are the graph's modules (the builders emit them as Paddle's layers finish);
 * shapes come from the graph's shape inference on a layout (no weights allocated).
 * MACs are each node's op count (every Conv2D including the ESE fc, and the detector's
 * proj_conv) per FLOP section; FLOPs = 2 x MACs. The deployed network (deploy.c) has
 * Conv2D rows with weight and bias, no BN rows, and one 3x3 Conv2D per RepVggBlock.
 * A detector's summary ends with the PP-YOLOE paper's numbers, counted on the layout
 * upstream's convert_to_deploy leaves (RepVGG blocks fused, every other BN kept).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/detector_config.h"

#define SUMMARY_CLASSES 24

typedef struct summary {
    FILE *out;
    int counter[SUMMARY_CLASSES];
    const char *classes[SUMMARY_CLASSES];
    long long total, trainable;
    double activations;      /* sum of output elements, for paddle's pass size */
} summary;

static int class_index(summary *s, const char *cls)
{
    for (int i = 0; i < SUMMARY_CLASSES; i++) {
        if (!s->classes[i])
            s->classes[i] = cls;
        if (strcmp(s->classes[i], cls) == 0)
            return i;
    }
    return SUMMARY_CLASSES - 1;
}

static void format_count(long long v, char *num, size_t size)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < size; i++) {
        num[j++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len)
            num[j++] = ',';
    }
    num[j] = '\0';
}

/* A tensor's shape as the row shows it (gmod_view); returns its element count. */
static double view_str(char *buf, size_t size, tshape t, int view)
{
    long d[4] = {t.n, t.c, t.h, t.w};
    int nd = 4;
    if (view == GMOD_POOLED) {
        d[2] = d[3] = 1;
    } else if (view == GMOD_NCL) {
        nd = 3;
    } else if (view == GMOD_DFL_IN || view == GMOD_DFL_OUT) {
        d[1] = view == GMOD_DFL_IN ? t.c / 4 : 1;
        d[2] = (long)t.h * t.w;
        d[3] = 4;
    }
    double numel = 1;
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < nd && used < size; i++) {
        used += (size_t)snprintf(buf + used, size - used, "%s%ld", i ? ", " : "", d[i]);
        numel *= (double)d[i];
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return numel;
}

/* "[a, b, ...]" of n tensors' views into buf; returns their element count. */
static double views_str(char *buf, size_t size, const tensor_plan *t, int n, const int *ids,
                        const unsigned char *views)
{
    char one[64];
    double numel = 0;
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < n && used < size; i++) {
        numel += view_str(one, sizeof one, t[ids[i]].s, views[i]);
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", one);
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return numel;
}

/* One row: the forward's arguments (a list argument nested once more) and result (a
 * list when there are several). */
static void row(summary *s, const cspresnet_model *m, const gmodule *mod, const tensor_plan *t)
{
    char name[48], list[256], ins[264], outs[264], num[48];
    long long params = 0, trainable = 0;
    for (int p = mod->p0; p < mod->p1; p++) {
        params += m->params[p].numel;
        trainable += m->params[p].trainable ? m->params[p].numel : 0;
    }
    snprintf(name, sizeof name, "%s-%d", mod->cls, ++s->counter[class_index(s, mod->cls)]);
    if (mod->in_list) {
        views_str(list, sizeof list, t, mod->n_in, mod->in, mod->in_view);
        snprintf(ins, sizeof ins, "[%s]", list);
    } else {
        views_str(ins, sizeof ins, t, mod->n_in, mod->in, mod->in_view);
    }
    double out_numel;
    if (mod->n_out > 1)
        out_numel = views_str(outs, sizeof outs, t, mod->n_out, mod->out, mod->out_view);
    else
        out_numel = view_str(outs, sizeof outs, t[mod->out[0]].s, mod->out_view[0]);
    format_count(params, num, sizeof num);
    fprintf(s->out, "%17s %26s %22s %13s\n", name, ins, outs, num);
    s->total += params;
    s->trainable += trainable;
    s->activations += out_numel;
}

static void print_count(FILE *out, const char *label, long long v)
{
    char num[48];
    format_count(v, num, sizeof num);
    fprintf(out, "%s: %s\n", label, num);
}

/* Multiply-adds per FLOP section, from each node's op; adds (may be NULL): per section,
 * the elements of every biased conv's output and of every BN's (the work the paper's
 * counter adds on top of the convs, one multiply-add each). */
static void section_macs(const graph *g, const tensor_plan *t, double *macs, double *adds)
{
    for (int i = 0; i < g->n_sections; i++)
        macs[i] = adds ? (adds[i] = 0) : 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        const double out_numel = (double)tshape_numel(&t[nd->out].s);
        if (adds && (nd->op == &op_batchnorm || (nd->op == &op_conv2d && nd->param[1] >= 0)))
            adds[nd->section] += out_numel;
        if (!nd->op->macs)
            continue;
        tshape in[GN_MAX_IN];
        for (int j = 0; j < nd->n_in; j++)
            in[j] = t[nd->in[j]].s;
        macs[nd->section] += nd->op->macs(nd, in, &t[nd->out].s);
    }
}

static const char RULE[] = "------------------------------------------------------------------------------";

static void print_totals(const summary *s, const graph *g, const tensor_plan *t, int deployed)
{
    FILE *out = s->out;
    const tshape *x = &t[0].s;
    print_count(out, "Total params", s->total);
    print_count(out, "Trainable params", s->trainable);
    print_count(out, "Non-trainable params", s->total - s->trainable);
    const double mb = 1024.0 * 1024.0;
    double input_mb = (double)tshape_numel(x) * 4.0 / mb;
    double pass_mb = 2.0 * s->activations * 4.0 / mb;
    double params_mb = (double)s->total * 4.0 / mb;
    fprintf(out, "%s\n", RULE);
    fprintf(out, "Input size (MB): %.2f\n", input_mb);
    fprintf(out, "Forward/backward pass size (MB): %.2f\n", pass_mb);
    fprintf(out, "Params size (MB): %.2f\n", params_mb);
    fprintf(out, "Estimated Total Size (MB): %.2f\n", input_mb + pass_mb + params_mb);
    fprintf(out, "%s\n", RULE);
    fprintf(out, "Compute for input [%d, 3, %d, %d]%s (conv multiply-adds; FLOPs = 2 x MACs):\n", x->n, x->h, x->w,
            deployed ? ", deployed" : "");
    double macs[GRAPH_MAX_OUTPUTS * 2], total = 0;
    section_macs(g, t, macs, NULL);
    for (int i = 0; i < g->n_sections; i++) {
        fprintf(out, "  %-20s MACs: %9.3f G   FLOPs: %9.3f G\n", g->section_names[i], macs[i] / 1e9,
                2.0 * macs[i] / 1e9);
        total += macs[i];
    }
    fprintf(out, "Total MACs: %.3f G\n", total / 1e9);
    fprintf(out, "Total FLOPs: %.3f G\n", 2.0 * total / 1e9);
    fprintf(out, "%s\n", RULE);
}

/* The layout of cfg (and dc) in form with every tensor's shape for an n x 3 x h x w input. */
static cspresnet_status layout_shapes(const cspresnet_config *cfg, const detector_config *dc, model_form form,
                                      const tshape *input, cspresnet_model **m, tensor_plan **t, error_buf *e)
{
    *t = NULL;
    cspresnet_status st = model_build_layout(cfg, dc, form, m, e);
    if (st == CSPRESNET_OK) {
        *t = calloc((size_t)(*m)->g.n_tensors, sizeof **t);
        st = *t ? graph_infer_shapes(&(*m)->g, input, *t, e)
                : error_set(e, CSPRESNET_ERR_MEMORY, "out of memory for the summary");
    }
    if (st != CSPRESNET_OK) {
        free(*t);
        *t = NULL;
        cspresnet_model_free(*m);
        *m = NULL;
    }
    return st;
}

static void print_table(const cspresnet_model *m, const tensor_plan *t, int deployed, FILE *out)
{
    summary s = {.out = out};
    const char *dbl = "==============================================================================";
    fprintf(out, "%s\n%17s %26s %22s %13s\n%s\n", RULE, "Layer (type)", "Input Shape", "Output Shape", "Param #", dbl);
    for (int i = 0; i < m->g.n_modules; i++)
        row(&s, m, &m->g.modules[i], t);
    fprintf(out, "%s\n", dbl);
    print_totals(&s, &m->g, t, deployed);
}

/* The table and totals of cfg (with dc: the detector's), deployed or as trained. */
static cspresnet_status summary_table(const cspresnet_config *cfg, const detector_config *dc, int deployed,
                                      const tshape *input, FILE *out, error_buf *e)
{
    if (!out || input->n < 1 || input->h < 1 || input->w < 1)
        return error_set(e, CSPRESNET_ERR_ARGUMENT, "summary: input %dx3x%dx%d must have n, h, w >= 1", input->n,
                         input->h, input->w);
    cspresnet_model *m;
    tensor_plan *t;
    cspresnet_status st = layout_shapes(cfg, dc, deployed ? MODEL_FORM_DEPLOYED : MODEL_FORM_TRAINED, input, &m,
                                        &t, e);
    if (st != CSPRESNET_OK)
        return st;
    print_table(m, t, deployed, out);
    free(t);
    cspresnet_model_free(m);
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_summary_print(const cspresnet_config *cfg, int deployed, int n,
                                         int h, int w, FILE *out, char *err, size_t err_size)
{
    cspresnet_status st = cspresnet_config_validate(cfg, err, err_size);
    if (st != CSPRESNET_OK)
        return st;
    error_buf e;
    st = summary_table(cfg, NULL, deployed, &(tshape){n, MODEL_INPUT_CHANNELS, h, w}, out, &e);
    return error_finish(&e, st, err, err_size);
}

/* The PP-YOLOE paper's numbers: the form upstream's convert_to_deploy leaves. */
static cspresnet_status print_paper(const cspresnet_config *cfg, const detector_config *dc, const tshape *x,
                                    FILE *out, error_buf *e)
{
    cspresnet_model *m;
    tensor_plan *t;
    cspresnet_status st = layout_shapes(cfg, dc, MODEL_FORM_REPVGG_FUSED, x, &m, &t, e);
    if (st != CSPRESNET_OK)
        return st;
    long long params = 0;
    for (size_t i = 0; i < m->n_params; i++)
        params += m->params[i].trainable ? m->params[i].numel : 0;
    double macs[GRAPH_MAX_OUTPUTS * 2], adds[GRAPH_MAX_OUTPUTS * 2], total = 0, total_adds = 0;
    section_macs(&m->g, t, macs, adds);
    char num[48];
    format_count(params, num, sizeof num);
    fprintf(out, "The PP-YOLOE paper's convention: the network upstream's convert_to_deploy leaves\n"
                 "(each RepVggBlock one 3x3 conv with bias, the other BN layers kept, their\n"
                 "_mean/_variance not counted):\n");
    fprintf(out, "Deployed params: %s (%.2f M)\n", num, (double)params / 1e6);
    fprintf(out, "Deployed FLOPs for input [%d, 3, %d, %d] (2 x conv MACs):\n", x->n, x->h, x->w);
    for (int i = 0; i < m->g.n_sections; i++) {
        fprintf(out, "  %-20s FLOPs: %9.3f G\n", m->g.section_names[i], 2.0 * macs[i] / 1e9);
        total += macs[i];
        total_adds += adds[i];
    }
    fprintf(out, "Deployed total FLOPs: %.3f G\n", 2.0 * total / 1e9);
    fprintf(out, "Deployed total FLOPs with bias and BN adds (one multiply-add per element): %.3f G\n",
            2.0 * (total + total_adds) / 1e9);
    fprintf(out, "%s\n", RULE);
    free(t);
    cspresnet_model_free(m);
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_detector_summary_print(const cspresnet_detector_config *cfg, int deployed, int n, int h,
                                                  int w, FILE *out, char *err, size_t err_size)
{
    error_buf e;
    cspresnet_config backbone;
    detector_config dc;
    const tshape x = {n, MODEL_INPUT_CHANNELS, h, w};
    cspresnet_status st = detector_config_check(cfg, &backbone, &dc, &e);
    if (st == CSPRESNET_OK)
        st = summary_table(&backbone, &dc, deployed, &x, out, &e);
    if (st == CSPRESNET_OK)
        st = print_paper(&backbone, &dc, &x, out, &e);
    return error_finish(&e, st, err, err_size);
}
