/*
 * calibrate.c - post-training quantization's calibration: the fp32 network runs on the
 * caller's inputs through an ordinary context, with an observer on the graph runner
 * (graph/run.c) that sees every conv's input just before the conv runs, so nothing
 * walks the network a second time. Min-max keeps max|x| per conv input over all
 * inputs; percentile runs the inputs twice, first for max|x|, then for a histogram of
 * |x| over [0, max] in CALIB_BINS bins, and takes the CSPRESNET_CALIB_PERCENTILE_Q
 * quantile (the upper edge of its bin). The scale is that value / 127.
 *
 * The conv reading the network's input (the stem's first, 3 channels) keeps scale 0:
 * it stays fp32 (its K is 27, so int8 gains nothing there, and an image's 8-bit
 * quantization error is the largest relative error of the network's input to its
 * first layer; measured in docs/ARCHITECTURE.md, "int8").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

#define CALIB_BINS 2048

typedef struct calib_state {
    const graph *g;
    int pass;                 /* 0: max|x|; 1: histogram */
    double *maxabs;           /* per node */
    double *hist;             /* per node CALIB_BINS counts (percentile only) */
} calib_state;

static int is_quantized_conv(const graph *g, int i)
{
    return g->nodes[i].op == &op_conv2d && g->nodes[i].in[0] != 0;
}

static void observe(void *arg, int node, const op_run *run)
{
    calib_state *st = arg;
    if (!is_quantized_conv(st->g, node))
        return;
    const tensor4 *x = &run->in[0];
    const long plane = (long)x->c * x->h * x->w;
    double m = st->maxabs[node];
    double *h = st->hist ? st->hist + (long)node * CALIB_BINS : NULL;
    const double per_bin = st->pass == 1 && m > 0 ? CALIB_BINS / m : 0.0;
    for (int n = 0; n < x->n; n++) {
        const float *v = x->data + n * x->batch_stride;
        if (st->pass == 0) {
            float mx = 0.0f;
            for (long i = 0; i < plane; i++)
                mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
            m = mx > m ? mx : m;
            continue;
        }
        for (long i = 0; i < plane && per_bin > 0; i++) {
            long b = (long)(fabs((double)v[i]) * per_bin);
            h[b < CALIB_BINS ? b : CALIB_BINS - 1] += 1.0;
        }
    }
    st->maxabs[node] = m;
}

/* The q quantile of |x| from node's histogram over [0, max]. */
static double percentile(const double *h, double max, double q)
{
    double total = 0, seen = 0;
    for (int b = 0; b < CALIB_BINS; b++)
        total += h[b];
    for (int b = 0; b < CALIB_BINS; b++) {
        seen += h[b];
        if (seen >= q * total)
            return max * (b + 1) / CALIB_BINS;
    }
    return max;
}

static cspresnet_status run_pass(cspresnet_context *ctx, const float *inputs, int n, int h, int w, int batch,
                                 char *err, size_t err_size)
{
    const long image = 3L * h * w;
    for (int i = 0; i < n; i += batch) {
        int b = n - i < batch ? n - i : batch;
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out;
        cspresnet_status s = cspresnet_forward(ctx, inputs + i * image, b, 3, h, w, outs, &n_out);
        if (s != CSPRESNET_OK) {
            error_buf e;
            error_set(&e, s, "calibration: %s", cspresnet_context_last_error(ctx));
            error_copy_out(&e, err, err_size);
            return s;
        }
    }
    return CSPRESNET_OK;
}

static cspresnet_status fail(cspresnet_status s, const char *msg, char *err, size_t err_size)
{
    error_buf e;
    error_set(&e, s, "%s", msg);
    error_copy_out(&e, err, err_size);
    return s;
}

cspresnet_status cspresnet_model_calibrate(cspresnet_model *model, const float *inputs, int n, int h, int w,
                                           int batch, cspresnet_calibration method, int threads, const char *isa,
                                           char *err, size_t err_size)
{
    if (!model || !inputs || n < 1 || batch < 1 || (unsigned)method > CSPRESNET_CALIB_PERCENTILE)
        return fail(CSPRESNET_ERR_ARGUMENT,
                    "cspresnet_model_calibrate: a model, at least one input, a batch >= 1 and the method "
                    "minmax or percentile are needed", err, err_size);
    const graph *g = &model->g;
    calib_state st = {g, 0, calloc((size_t)g->n_nodes, sizeof(double)), NULL};
    float *scale = calloc((size_t)g->n_nodes, sizeof(float));
    if (method == CSPRESNET_CALIB_PERCENTILE)
        st.hist = calloc((size_t)g->n_nodes * CALIB_BINS, sizeof(double));
    cspresnet_context_options opt = {.threads = threads, .isa = isa};
    cspresnet_context *ctx = NULL;
    cspresnet_status s = CSPRESNET_ERR_MEMORY;
    if (!st.maxabs || !scale || (method == CSPRESNET_CALIB_PERCENTILE && !st.hist)) {
        fail(s, "out of memory calibrating the model", err, err_size);
        goto done;
    }
    if (model->prepared && model->prepared_precision == CSPRESNET_PRECISION_INT8) {
        cspresnet_prepare_options none = {NULL, 0, CSPRESNET_PRECISION_FP32};
        cspresnet_model_prepare_ex(model, &none, NULL, 0);   /* budget 0: drops the int8 packing */
    }
    if ((s = cspresnet_context_create_ex(model, &opt, &ctx, err, err_size)) != CSPRESNET_OK)
        goto done;
    context_set_observer(ctx, observe, &st);
    for (st.pass = 0; st.pass < (method == CSPRESNET_CALIB_PERCENTILE ? 2 : 1); st.pass++)
        if ((s = run_pass(ctx, inputs, n, h, w, batch, err, err_size)) != CSPRESNET_OK)
            goto done;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!is_quantized_conv(g, i))
            continue;
        double t = st.hist ? percentile(st.hist + (long)i * CALIB_BINS, st.maxabs[i], CSPRESNET_CALIB_PERCENTILE_Q)
                           : st.maxabs[i];
        scale[i] = t > 0 && isfinite(t) ? (float)(t / 127.0) : 1.0f;   /* all-zero input: any scale */
    }
    free(model->act_scale);
    model->act_scale = scale;
    model->calib_method = method;
    scale = NULL;
done:
    cspresnet_context_free(ctx);
    free(scale);
    free(st.maxabs);
    free(st.hist);
    return s;
}

static const char *const METHOD_NAMES[] = {"minmax", "percentile"};

const char *cspresnet_calibration_name(cspresnet_calibration m)
{
    return (unsigned)m < 2 ? METHOD_NAMES[m] : "unknown";
}

cspresnet_status cspresnet_calibration_parse(const char *name, cspresnet_calibration *out)
{
    for (unsigned i = 0; name && i < 2; i++)
        if (strcmp(name, METHOD_NAMES[i]) == 0) {
            *out = (cspresnet_calibration)i;
            return CSPRESNET_OK;
        }
    return CSPRESNET_ERR_ARGUMENT;
}

int cspresnet_model_quant_layer(const cspresnet_model *model, int i, const char **name, int *int8, float *scale)
{
    if (!model || !model->act_scale)
        return 0;
    const graph *g = &model->g;
    int count = 0;
    for (int j = 0; j < g->n_nodes; j++) {
        if (g->nodes[j].op != &op_conv2d)
            continue;
        if (count == i) {
            if (name)
                *name = g->nodes[j].name;
            if (int8)
                *int8 = model->act_scale[j] > 0.0f;
            if (scale)
                *scale = model->act_scale[j];
        }
        count++;
    }
    return count;
}
