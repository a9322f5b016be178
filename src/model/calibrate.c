/*
 * calibrate.c - post-training quantization's calibration: the fp32 network runs on the
 * caller's inputs through an ordinary context, with an observer on the graph runner
 * (graph/run.c) that sees every conv's input just before the conv runs, so nothing
 * walks the network a second time. Min-max keeps min and max per conv input over all
 * inputs; percentile runs the inputs twice, first for them, then for a histogram over
 * [min, max] in CALIB_BINS bins, and clips to the 1 - q and q quantiles (q =
 * CSPRESNET_CALIB_PERCENTILE_Q, bin edges). The range [lo, hi], widened to hold 0, is
 * mapped onto u8 0..255: scale (hi - lo) / 255, zero point rne(-lo / scale). The first
 * pass also keeps the mean of each input channel (act_mean), from which prepare takes
 * the bias correction of the weights' rounding (ops/conv2d_int8.c).
 *
 * The conv reading the network's input (the stem's first, 3 channels) keeps scale 0
 * and stays fp32: its K is 27, so an int8 GEMM has nothing to gain there (packing
 * dominates); in int8 it measured the same accuracy (docs/ARCHITECTURE.md, "int8").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

#define CALIB_BINS 2048

typedef struct calib_state {
    const graph *g;
    int pass;                 /* 0: min and max; 1: histogram */
    double *lo, *hi;          /* per node: min and max of its input */
    double *hist;             /* per node CALIB_BINS counts over [lo, hi] (percentile only) */
    double **sum;             /* per node: the sum of each input channel (pass 0), or NULL */
    double *count;            /* and the pixels summed */
    int oom;                  /* a sum could not be allocated: calibration fails */
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
    const double lo = st->lo[node], width = st->hi[node] - lo;
    double *h = st->hist ? st->hist + (long)node * CALIB_BINS : NULL;
    for (int n = 0; n < x->n; n++) {
        const float *v = x->data + n * x->batch_stride;
        if (st->pass == 0) {
            if (!st->sum[node])
                st->sum[node] = calloc((size_t)x->c, sizeof(double));
            if (!st->sum[node]) {
                st->oom = 1;
                return;
            }
            const long hw = (long)x->h * x->w;
            for (int c = 0; c < x->c; c++) {
                double s = 0;
                for (long i = 0; i < hw; i++)
                    s += v[c * hw + i];
                st->sum[node][c] += s;
            }
            st->count[node] += (double)hw;
            float mn = v[0], mx = v[0];
            for (long i = 1; i < plane; i++) {
                mn = v[i] < mn ? v[i] : mn;
                mx = v[i] > mx ? v[i] : mx;
            }
            st->lo[node] = mn < st->lo[node] ? mn : st->lo[node];
            st->hi[node] = mx > st->hi[node] ? mx : st->hi[node];
            continue;
        }
        const double per_bin = width > 0 ? CALIB_BINS / width : 0.0;
        for (long i = 0; i < plane; i++) {
            long b = (long)(((double)v[i] - lo) * per_bin);
            h[b < 0 ? 0 : b < CALIB_BINS ? b : CALIB_BINS - 1] += 1.0;
        }
    }
}

/* The (1 - q) and q quantiles of node's inputs (bin edges of its histogram). */
static void clip_range(const double *h, double q, double *lo, double *hi)
{
    double total = 0, seen = 0, width = (*hi - *lo) / CALIB_BINS;
    for (int b = 0; b < CALIB_BINS; b++)
        total += h[b];
    int first = 0, last = CALIB_BINS - 1;
    while (first < last && seen + h[first] <= (1.0 - q) * total)
        seen += h[first++];
    seen = 0;
    while (last > first && seen + h[last] <= (1.0 - q) * total)
        seen += h[last--];
    *hi = *lo + width * (last + 1);
    *lo = *lo + width * first;
}

/* The scale and zero point putting u8 0..255 over [lo, hi] widened to hold 0. */
static void scale_zero(double lo, double hi, float *scale, int *zero)
{
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    if (!(hi - lo > 0) || !isfinite(hi - lo)) {   /* all-zero input: any scale */
        *scale = 1.0f;
        *zero = 128;
        return;
    }
    *scale = (float)((hi - lo) / 255.0);
    double z = nearbyint(-lo / *scale);
    *zero = z < 0 ? 0 : z > 255 ? 255 : (int)z;
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

static void free_means(float **mean, int n)
{
    if (mean)
        for (int i = 0; i < n; i++)
            free(mean[i]);
    free(mean);
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
    calib_state st = {g, 0, malloc(sizeof(double) * (size_t)g->n_nodes), malloc(sizeof(double) * (size_t)g->n_nodes),
                      NULL, calloc((size_t)g->n_nodes, sizeof(double *)), calloc((size_t)g->n_nodes, sizeof(double)),
                      0};
    float **mean = calloc((size_t)g->n_nodes, sizeof(float *));
    float *scale = calloc((size_t)g->n_nodes, sizeof(float));
    int *zero = calloc((size_t)g->n_nodes, sizeof(int));
    if (method == CSPRESNET_CALIB_PERCENTILE)
        st.hist = calloc((size_t)g->n_nodes * CALIB_BINS, sizeof(double));
    cspresnet_context_options opt = {.threads = threads, .isa = isa};
    cspresnet_context *ctx = NULL;
    cspresnet_status s = CSPRESNET_ERR_MEMORY;
    if (!st.lo || !st.hi || !scale || !zero || !st.sum || !st.count || !mean ||
        (method == CSPRESNET_CALIB_PERCENTILE && !st.hist)) {
        fail(s, "out of memory calibrating the model", err, err_size);
        goto done;
    }
    if (model->prepared && model->prepared_precision == CSPRESNET_PRECISION_INT8) {
        cspresnet_prepare_options none = {NULL, 0, CSPRESNET_PRECISION_FP32};
        cspresnet_model_prepare_ex(model, &none, NULL, 0);   /* budget 0: drops the int8 packing */
    }
    for (int i = 0; i < g->n_nodes; i++)
        st.lo[i] = INFINITY, st.hi[i] = -INFINITY;
    if ((s = cspresnet_context_create_ex(model, &opt, &ctx, err, err_size)) != CSPRESNET_OK)
        goto done;
    context_set_observer(ctx, observe, &st);
    for (st.pass = 0; st.pass < (method == CSPRESNET_CALIB_PERCENTILE ? 2 : 1); st.pass++)
        if ((s = run_pass(ctx, inputs, n, h, w, batch, err, err_size)) != CSPRESNET_OK)
            goto done;
    if (st.oom) {
        s = fail(CSPRESNET_ERR_MEMORY, "out of memory calibrating the model", err, err_size);
        goto done;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (!is_quantized_conv(g, i))
            continue;
        int c = (int)model->params[g->nodes[i].param[0]].shape[1];   /* the conv weight (OC,C,k,k) */
        if (!(mean[i] = malloc(sizeof(float) * (size_t)c))) {
            s = fail(CSPRESNET_ERR_MEMORY, "out of memory calibrating the model", err, err_size);
            goto done;
        }
        for (int ch = 0; ch < c; ch++)
            mean[i][ch] = st.sum[i] && st.count[i] > 0 ? (float)(st.sum[i][ch] / st.count[i]) : 0.0f;
        double lo = st.lo[i], hi = st.hi[i];
        if (st.hist && hi > lo)
            clip_range(st.hist + (long)i * CALIB_BINS, CSPRESNET_CALIB_PERCENTILE_Q, &lo, &hi);
        scale_zero(lo, hi, &scale[i], &zero[i]);
    }
    free(model->act_scale);
    free(model->act_zero);
    model->act_scale = scale;
    model->act_zero = zero;
    free_means(model->act_mean, g->n_nodes);
    model->act_mean = mean;
    model->calib_method = method;
    scale = NULL;
    zero = NULL;
    mean = NULL;
done:
    cspresnet_context_free(ctx);
    free(scale);
    free(zero);
    free(st.lo);
    free(st.hi);
    free(st.hist);
    free_means(mean, g->n_nodes);
    if (st.sum)
        for (int i = 0; i < g->n_nodes; i++)
            free(st.sum[i]);
    free(st.sum);
    free(st.count);
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
