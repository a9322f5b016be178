/*
 * init_detector.c - a PP-YOLOE detector with deterministic pseudo-random weights
 * (cspresnet_detector_create), for benchmarks, examples and pipeline tests.
 *
 * Every conv, BN, alpha and ESE fc starts as init.c makes them (He-uniform convs,
 * identity BN). The neck's BasicBlocks have no shortcut, and swish passes a small
 * signal at slope 1/2, so with identity BN the maps would shrink about 0.7x per conv
 * and reach the head as zeros. The statistics are therefore set from data, as the
 * port in tests/ref calibrates its random detectors: one eval forward of a seeded
 * 1 x 3 x 320 x 320 batch in [0, 1) (at 128 x 128 the stride-32 maps are 4 x 4 and
 * statistics from so few cells leave the deep neck amplifying other inputs 10-100x),
 * each BN's _mean and _variance set just before it runs to its input's per-channel
 * mean and variance (plus 0.2 x the layer's mean variance, so that near-constant
 * channels are not blown up), and each pred_cls / pred_reg conv's weights scaled so
 * that its output has unit standard deviation on that batch. The head then reads maps
 * of about unit scale that depend on the input, and the rest is set so that NMS sees
 * work like a trained model's:
 *   proj_conv.weight  upstream's fixed linspace(0, reg_max): the DFL expectation
 *   pred_cls.bias     one per class, uniform in [-10, -6]: with the unit spread about
 *                     2% of the class scores pass NMS's 0.01 threshold, unevenly
 *                     over the classes, and a few reach 0.5
 *   pred_reg.bias     -0.5 x bin + U(-0.5, 0.5): each side's distance about 1-2 cells,
 *                     so that neighbouring boxes overlap and NMS suppresses
 * Inputs far from the calibration batch (other sizes, real images) can give maps of
 * another scale, growing through the deep random network until scores saturate;
 * cspresnet_model_calibrate_bn on the input itself (as bench --detector does) keeps
 * every BN's output at unit scale there. The detections mean nothing either way.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/detector_config.h"
#include "ops/ops.h"

#define CALIB_N 1
#define CALIB_SIZE 320   /* 10 x 10 cells at stride 32 */

static float uniform01(uint64_t *state) { return (float)((double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0)); }

static void init_head(cspresnet_model *m, uint64_t seed)
{
    const int bins = m->det->reg_max + 1;
    uint64_t state = seed ^ 0x5851F42D4C957F2Dull;
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        float *w = param_at(m->weights, p);
        const int cls = strstr(p->key, ".pred_cls.") != NULL, reg = strstr(p->key, ".pred_reg.") != NULL;
        if (strcmp(p->key, "yolo_head.proj_conv.weight") == 0) {
            for (long j = 0; j < p->numel; j++)
                w[j] = bins > 1 ? (float)j * (float)m->det->reg_max / (float)(bins - 1) : 0.0f;
        } else if (cls && p->role == PARAM_CONV_BIAS) {
            for (long j = 0; j < p->numel; j++)
                w[j] = -10.0f + 4.0f * uniform01(&state);
        } else if (reg && p->role == PARAM_CONV_BIAS) {
            /* channel j is side j / bins, bin j % bins (pred_reg's [4, bins] layout) */
            for (long j = 0; j < p->numel; j++)
                w[j] = -0.5f * (float)(j % bins) + uniform01(&state) - 0.5f;
        }
    }
}

/* A pred conv (weights He-uniform: output variance 2 x its input's mean square):
 * weights scaled for a unit output deviation on its input x. */
static void scale_pred(const op_run *run, const tensor4 *x)
{
    double s2 = 0;
    const long hw = (long)x->h * x->w;
    for (long p = 0; p < (long)x->n * x->c; p++) {
        const float *v = tensor4_plane(x, p);
        for (long j = 0; j < hw; j++)
            s2 += (double)v[j] * v[j];
    }
    float *w = run->p[0];
    const long numel = (long)run->nd->a.cout * x->c * run->nd->a.k * run->nd->a.k;
    const double k = 1.0 / sqrt(2.0 * s2 / ((double)x->n * x->c * hw) + 1e-12);
    for (long j = 0; j < numel; j++)
        w[j] = (float)(w[j] * k);
}

/* Before each node (the context's observer): a BN's running statistics from its input;
 * with *scale_preds, a pred conv's scale. The model is the caller's own, so its weights
 * may be written here. */
static void calibrate_node(void *arg, int i, const op_run *run)
{
    (void)i;
    const int *scale_preds = arg;
    const gnode *nd = run->nd;
    const tensor4 *x = &run->in[0];
    if (*scale_preds && nd->op == &op_conv2d && (strncmp(nd->name, "yolo_head.pred_cls.", 19) == 0 ||
                                 strncmp(nd->name, "yolo_head.pred_reg.", 19) == 0))
        scale_pred(run, x);
    if (nd->op != &op_batchnorm)
        return;
    float *mean = run->p[2], *var = run->p[3];
    const long hw = (long)x->h * x->w;
    double mean_var = 0;
    for (int c = 0; c < x->c; c++) {
        double s = 0, s2 = 0;
        for (int n = 0; n < x->n; n++) {
            const float *v = tensor4_plane(x, (long)n * x->c + c);
            for (long j = 0; j < hw; j++)
                s += v[j], s2 += (double)v[j] * v[j];
        }
        double m = s / ((double)x->n * hw), d = s2 / ((double)x->n * hw) - m * m;
        mean[c] = (float)m;
        var[c] = (float)(d > 0 ? d : 0);
        mean_var += var[c] / x->c;
    }
    for (int c = 0; c < x->c; c++)
        var[c] += (float)(0.2 * mean_var + 1e-6);
}

static cspresnet_status calibrate(cspresnet_model *m, const float *x, int n, int h, int w, int scale_preds,
                                  error_buf *e)
{
    cspresnet_context *ctx = NULL;
    cspresnet_status s = cspresnet_context_create(m, 1, &ctx, e->text, sizeof e->text);
    if (s == CSPRESNET_OK) {
        context_set_observer(ctx, calibrate_node, &scale_preds);
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out = 0;
        if ((s = cspresnet_forward(ctx, x, n, MODEL_INPUT_CHANNELS, h, w, outs, &n_out)) != CSPRESNET_OK)
            error_set(e, s, "%s", cspresnet_context_last_error(ctx));
    }
    cspresnet_context_free(ctx);
    return s;
}

cspresnet_status cspresnet_model_calibrate_bn(cspresnet_model *model, const float *input, int n, int h, int w,
                                              char *err, size_t err_size)
{
    error_buf e = {{0}};
    cspresnet_status s = CSPRESNET_OK;
    if (!model || !input)
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_calibrate_bn: model and input must not be NULL");
    else if (model->deployed)
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "a deployed model has no BN statistics to set");
    else if (model->weights_release || model->prepared)
        s = error_set(&e, CSPRESNET_ERR_UNSUPPORTED, "the model's weights are %s; calibrate before preparing, on a "
                      "model loaded from .pdparams or created", model->prepared ? "prepared" : "a read-only mapping");
    else
        s = calibrate(model, input, n, h, w, 0, &e);
    return error_finish(&e, s, err, err_size);
}

/* The seeded calibration batch of cspresnet_detector_create. */
static cspresnet_status calibrate_seeded(cspresnet_model *m, uint64_t seed, error_buf *e)
{
    const long count = (long)CALIB_N * MODEL_INPUT_CHANNELS * CALIB_SIZE * CALIB_SIZE;
    float *x = malloc(sizeof(float) * (size_t)count);
    if (!x)
        return error_set(e, CSPRESNET_ERR_MEMORY, "out of memory for the calibration batch");
    uint64_t state = seed ^ 0xD1B54A32D192ED03ull;
    for (long j = 0; j < count; j++)
        x[j] = uniform01(&state);
    cspresnet_status s = calibrate(m, x, CALIB_N, CALIB_SIZE, CALIB_SIZE, 1, e);
    free(x);
    return s;
}

cspresnet_status cspresnet_detector_create(const cspresnet_detector_config *cfg, uint64_t seed,
                                           cspresnet_model **out, char *err, size_t err_size)
{
    error_buf e = {{0}};
    if (!out)
        return error_finish(&e, error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_detector_create: out is NULL"), err,
                            err_size);
    *out = NULL;
    cspresnet_config backbone;
    detector_config dc;
    cspresnet_status s = detector_config_check(cfg, &backbone, &dc, &e);
    if (s == CSPRESNET_OK)
        s = model_build_detector(&backbone, &dc, out, &e);
    if (s != CSPRESNET_OK)
        return error_finish(&e, s, err, err_size);
    model_init_random(*out, seed);
    init_head(*out, seed);
    s = calibrate_seeded(*out, seed, &e);
    if (s != CSPRESNET_OK) {
        cspresnet_model_free(*out);
        *out = NULL;
    }
    return error_finish(&e, s, err, err_size);
}
