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
 * shapes come from the graph's shape inference. MACs are each node's op count (every
 * Conv2D including the ESE fc) per FLOP section; FLOPs = 2 x MACs. The deployed network
 * (deploy.c) has Conv2D rows with weight and bias, no BN rows, and one 3x3 Conv2D per
 * RepVggBlock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

typedef struct summary {
    FILE *out;
    int counter[16];
    const char *classes[16];
    long long total, trainable;
    double activations;      /* sum of output elements, for paddle's pass size */
} summary;

static int class_index(summary *s, const char *cls)
{
    for (int i = 0; i < 16; i++) {
        if (!s->classes[i])
            s->classes[i] = cls;
        if (strcmp(s->classes[i], cls) == 0)
            return i;
    }
    return 15;
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

static void row(summary *s, const cspresnet_model *m, const gmodule *mod, const tensor_plan *t)
{
    char name[48], ins[64], outs[64], num[48];
    tshape in = t[mod->in].s, out = t[mod->out].s;
    if (mod->pooled)
        in.h = in.w = out.h = out.w = 1;
    long long params = 0, trainable = 0;
    for (int p = mod->p0; p < mod->p1; p++) {
        params += m->params[p].numel;
        trainable += m->params[p].trainable ? m->params[p].numel : 0;
    }
    snprintf(name, sizeof name, "%s-%d", mod->cls, ++s->counter[class_index(s, mod->cls)]);
    snprintf(ins, sizeof ins, "[[%d, %d, %d, %d]]", in.n, in.c, in.h, in.w);
    snprintf(outs, sizeof outs, "[%d, %d, %d, %d]", out.n, out.c, out.h, out.w);
    format_count(params, num, sizeof num);
    fprintf(s->out, "%17s %26s %22s %13s\n", name, ins, outs, num);
    s->total += params;
    s->trainable += trainable;
    s->activations += (double)out.n * out.c * out.h * out.w;
}

static void print_count(FILE *out, const char *label, long long v)
{
    char num[48];
    format_count(v, num, sizeof num);
    fprintf(out, "%s: %s\n", label, num);
}

/* Multiply-adds per FLOP section, from each node's op. */
static void section_macs(const graph *g, const tensor_plan *t, double *macs)
{
    for (int i = 0; i < g->n_sections; i++)
        macs[i] = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        if (!nd->op->macs)
            continue;
        tshape in[GN_MAX_IN];
        for (int j = 0; j < nd->n_in; j++)
            in[j] = t[nd->in[j]].s;
        macs[nd->section] += nd->op->macs(nd, in, &t[nd->out].s);
    }
}

static void print_totals(const summary *s, const graph *g, const tensor_plan *t, int deployed)
{
    FILE *out = s->out;
    const tshape *x = &t[0].s;
    const char *rule = "------------------------------------------------------------------------------";
    print_count(out, "Total params", s->total);
    print_count(out, "Trainable params", s->trainable);
    print_count(out, "Non-trainable params", s->total - s->trainable);
    const double mb = 1024.0 * 1024.0;
    double input_mb = (double)tshape_numel(x) * 4.0 / mb;
    double pass_mb = 2.0 * s->activations * 4.0 / mb;
    double params_mb = (double)s->total * 4.0 / mb;
    fprintf(out, "%s\n", rule);
    fprintf(out, "Input size (MB): %.2f\n", input_mb);
    fprintf(out, "Forward/backward pass size (MB): %.2f\n", pass_mb);
    fprintf(out, "Params size (MB): %.2f\n", params_mb);
    fprintf(out, "Estimated Total Size (MB): %.2f\n", input_mb + pass_mb + params_mb);
    fprintf(out, "%s\n", rule);
    fprintf(out, "Compute for input [%d, 3, %d, %d]%s (conv multiply-adds; FLOPs = 2 x MACs):\n", x->n, x->h, x->w,
            deployed ? ", deployed" : "");
    double macs[GRAPH_MAX_OUTPUTS * 2], total = 0;
    section_macs(g, t, macs);
    for (int i = 0; i < g->n_sections; i++) {
        fprintf(out, "  %-20s MACs: %9.3f G   FLOPs: %9.3f G\n", g->section_names[i], macs[i] / 1e9,
                2.0 * macs[i] / 1e9);
        total += macs[i];
    }
    fprintf(out, "Total MACs: %.3f G\n", total / 1e9);
    fprintf(out, "Total FLOPs: %.3f G\n", 2.0 * total / 1e9);
    fprintf(out, "%s\n", rule);
}

cspresnet_status cspresnet_summary_print(const cspresnet_config *cfg, int deployed, int n,
                                         int h, int w, FILE *out, char *err, size_t err_size)
{
    cspresnet_status st = cspresnet_config_validate(cfg, err, err_size);
    if (st != CSPRESNET_OK)
        return st;
    error_buf e;
    if (!out || n < 1 || h < 1 || w < 1) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT, "summary: input %dx3x%dx%d must have n, h, w >= 1", n, h, w);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    cspresnet_model *m = NULL;
    tensor_plan *t = NULL;
    st = model_build(cfg, deployed != 0, &m, &e);
    if (st == CSPRESNET_OK) {
        t = calloc((size_t)m->g.n_tensors, sizeof *t);
        st = t ? graph_infer_shapes(&m->g, &(tshape){n, MODEL_INPUT_CHANNELS, h, w}, t, &e)
               : error_set(&e, CSPRESNET_ERR_MEMORY, "out of memory for the summary");
    }
    if (st != CSPRESNET_OK) {
        free(t);
        cspresnet_model_free(m);
        error_copy_out(&e, err, err_size);
        return st;
    }
    summary s = {.out = out};
    const char *dbl = "==============================================================================";
    fprintf(out, "%s\n%17s %26s %22s %13s\n%s\n", "------------------------------------------------------------------------------",
            "Layer (type)", "Input Shape", "Output Shape", "Param #", dbl);
    for (int i = 0; i < m->g.n_modules; i++)
        row(&s, m, &m->g.modules[i], t);
    fprintf(out, "%s\n", dbl);
    print_totals(&s, &m->g, t, deployed);
    free(t);
    cspresnet_model_free(m);
    return CSPRESNET_OK;
}
