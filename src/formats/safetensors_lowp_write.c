/*
 * safetensors_lowp_write.c - a deployed model as a bf16 or int8 safetensors file
 * (layout: cspresnet_formats.h, "bf16 and int8 files").
 *
 * The file holds logical quantities, never a kernel's packed layout, so that the
 * packing can change without changing the files: bf16 weights rounded to nearest even;
 * int8 weights as their s8 values in OIHW with per-output-channel scales and bias
 * corrections, and each int8 conv's input scale and zero point. Which convs are written in the low precision
 * is the rule prepare applies (conv2d_node_lowp) on the kernel set named in the
 * options, so a file loaded on that kernel set runs exactly the network that
 * calibrating at load (int8) or --precision bf16 on the fp32 file would; the others
 * stay F32, bit for bit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cspresnet_formats.h"
#include "formats/safetensors_internal.h"
#include "kernels/lowp_kernels.h"
#include "model/model.h"
#include "ops/ops.h"

void cspresnet_save_options_init(cspresnet_save_options *opt)
{
    if (opt)
        memset(opt, 0, sizeof *opt);
}

/* What the writer allocates; all freed together. */
typedef struct lowp_out {
    st_out *t;
    size_t n;
    void **owned;         /* data buffers and key strings */
    size_t n_owned;
} lowp_out;

static void *own(lowp_out *o, size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p)
        o->owned[o->n_owned++] = p;
    return p;
}

/* "<base><suffix>" for a weight key "<base>.weight". */
static char *aux_key(lowp_out *o, const char *weight_key, const char *suffix)
{
    size_t base = strlen(weight_key) - strlen(".weight");
    char *k = own(o, base + strlen(suffix) + 1);
    if (k) {
        memcpy(k, weight_key, base);
        strcpy(k + base, suffix);
    }
    return k;
}

static int add_scalar(lowp_out *o, const char *weight_key, const char *suffix, const char *dtype, const void *v)
{
    char *key = aux_key(o, weight_key, suffix);
    void *d = own(o, 4);
    if (!key || !d)
        return -1;
    memcpy(d, v, 4);
    o->t[o->n++] = (st_out){key, dtype, 1, {1}, 1, d};
    return 0;
}

/* Parameter i, the weight of conv node `node` that runs in the low precision. */
static int add_lowp_weight(lowp_out *o, const cspresnet_model *m, size_t i, int node, cspresnet_precision prec)
{
    st_out *w = &o->t[o->n];
    st_out_of_param(m, i, w);
    const float *src = w->data;
    o->n++;
    if (prec == CSPRESNET_PRECISION_BF16) {
        uint16_t *h = own(o, sizeof *h * (size_t)w->numel);
        if (!h)
            return -1;
        for (long k = 0; k < w->numel; k++)
            h[k] = bf16_from_f32(src[k]);
        w->dtype = "BF16";
        w->data = h;
        return 0;
    }
    const int oc = (int)w->shape[0];
    const long K = w->numel / oc;
    int8_t *q = own(o, (size_t)w->numel);
    float *ws = own(o, sizeof *ws * (size_t)oc);
    int32_t *corr = own(o, sizeof *corr * (size_t)oc);
    if (!q || !ws || !corr)
        return -1;
    if (m->qw && m->qw[node]) {   /* a quantized file's own values, not re-quantized */
        memcpy(q, m->qw[node], (size_t)w->numel);
        memcpy(ws, m->qw_scale[node], sizeof *ws * (size_t)oc);
        for (int c = 0; c < oc; c++)
            corr[c] = m->qw_corr && m->qw_corr[node] ? m->qw_corr[node][c] : 0;
    } else {
        conv2d_int8_quantize(src, oc, K, (int)(w->shape[2] * w->shape[3]), m->act_scale[node],
                             m->act_mean ? m->act_mean[node] : NULL, q, ws, corr);
    }
    w->dtype = "I8";
    w->data = q;
    const char *key = w->key;
    char *sk = aux_key(o, key, ST_WEIGHT_SCALE);
    if (!sk)
        return -1;
    o->t[o->n++] = (st_out){sk, "F32", 1, {oc}, oc, ws};
    char *ck = aux_key(o, key, ST_BIAS_CORR);
    if (!ck)
        return -1;
    o->t[o->n++] = (st_out){ck, "I32", 1, {oc}, oc, corr};
    int32_t zero = m->act_zero[node];
    return add_scalar(o, key, ST_INPUT_SCALE, "F32", &m->act_scale[node]) ||
           add_scalar(o, key, ST_INPUT_ZERO, "I32", &zero) ? -1 : 0;
}

/* The names of the layers kept in float, comma separated, into log. */
static void log_float(char *log, size_t size, size_t *used, const char *weight_key)
{
    if (!log || *used >= size)
        return;
    int n = snprintf(log + *used, size - *used, "%s%.*s", *used ? "," : "",
                     (int)(strlen(weight_key) - strlen(".weight")), weight_key);
    *used += n > 0 ? (size_t)n : 0;
}

static json_t *lowp_metadata(const cspresnet_model *m, const char *source, const cspresnet_save_options *opt,
                             const char *isa)
{
    json_t *md = st_metadata_json(m, source);
    const char *prec = cspresnet_precision_name(opt->precision), *calib = cspresnet_calibration_name(m->calib_method);
    int ok = md && json_object_set_new(md, ST_META_PRECISION, json_string(prec)) == 0 &&
             json_object_set_new(md, ST_META_KERNELS, json_string(isa)) == 0;
    if (ok && opt->precision == CSPRESNET_PRECISION_INT8)
        ok = json_object_set_new(md, ST_META_CALIBRATION, json_string(calib)) == 0 &&
             json_object_set_new(md, ST_META_CALIB_SOURCE,
                                 json_string(opt->calibration_source ? opt->calibration_source : "")) == 0;
    if (!ok) {
        json_decref(md);
        return NULL;
    }
    return md;
}

static cspresnet_status check_model(const cspresnet_model *m, const char *path, const cspresnet_save_options *opt,
                                    error_buf *e)
{
    if (opt->precision != CSPRESNET_PRECISION_BF16 && opt->precision != CSPRESNET_PRECISION_INT8)
        return error_set(e, CSPRESNET_ERR_ARGUMENT, "%s: the precision of a low-precision file is bf16 or int8", path);
    if (!m->deployed)
        return error_set(e, CSPRESNET_ERR_ARGUMENT,
                         "%s: a %s file holds the deployed network: deploy the model first (cspresnet_model_deploy)",
                         path, cspresnet_precision_name(opt->precision));
    if (opt->precision == CSPRESNET_PRECISION_INT8 && !m->act_scale)
        return error_set(e, CSPRESNET_ERR_ARGUMENT,
                         "%s: an int8 file needs activation scales: calibrate the model first "
                         "(cspresnet_model_calibrate)",
                         path);
    return CSPRESNET_OK;
}

/* Per parameter: the conv node it is the low-precision weight of, or -1. */
static void pick_layers(const cspresnet_model *m, const kernel_set *kt, const cspresnet_save_options *opt, int *node_of,
                        size_t *n_lowp)
{
    const graph *g = &m->g;
    size_t used = 0;
    if (opt->log && opt->log_size)
        opt->log[0] = '\0';
    for (size_t i = 0; i < m->n_params; i++)
        node_of[i] = -1;
    *n_lowp = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        if (nd->op != &op_conv2d) {   /* ESE's 1x1 fc: fp32 in every precision */
            for (int k = 0; k < GN_MAX_PARAM; k++)
                if (nd->param[k] >= 0 && m->params[nd->param[k]].ndim == 4)
                    log_float(opt->log, opt->log_size, &used, m->params[nd->param[k]].key);
            continue;
        }
        prepare_env pe = {.kernels = kt, .precision = opt->precision, .act_scale = m->act_scale ? m->act_scale[i] : 0.0f,
                          .act_zero = m->act_zero ? m->act_zero[i] : 128, .qw = m->qw ? m->qw[i] : NULL};
        if (conv2d_node_lowp(nd, m->params, &pe)) {
            node_of[nd->param[0]] = i;
            (*n_lowp)++;
        } else {
            log_float(opt->log, opt->log_size, &used, m->params[nd->param[0]].key);
        }
    }
}

cspresnet_status cspresnet_model_save_safetensors_ex(const cspresnet_model *m, const char *path,
                                                     const char *source_name, const cspresnet_save_options *opt,
                                                     char *err, size_t err_size)
{
    error_buf e;
    if (!m || !path)
        return error_finish(&e, error_set(&e, CSPRESNET_ERR_ARGUMENT,
                                          "cspresnet_model_save_safetensors_ex: model and path must not be NULL"),
                            err, err_size);
    if (!opt || opt->precision == CSPRESNET_PRECISION_FP32)
        return cspresnet_model_save_safetensors(m, path, source_name, err, err_size);
    cspresnet_status s = check_model(m, path, opt, &e);
    if (s != CSPRESNET_OK)
        return error_finish(&e, s, err, err_size);
    const kernel_set *kt = kernel_set_select(opt->isa);
    lowp_out o = {0};
    int *node_of = malloc(sizeof *node_of * (m->n_params + 1));
    o.t = malloc(sizeof *o.t * (5 * m->n_params + 1));
    o.owned = malloc(sizeof *o.owned * (9 * m->n_params + 1));
    s = CSPRESNET_ERR_MEMORY;
    if (!node_of || !o.t || !o.owned)
        goto fail;
    size_t n_lowp = 0;
    pick_layers(m, kt, opt, node_of, &n_lowp);
    for (size_t i = 0; i < m->n_params; i++) {
        if (node_of[i] < 0)
            st_out_of_param(m, i, &o.t[o.n++]);
        else if (add_lowp_weight(&o, m, i, node_of[i], opt->precision) != 0)
            goto fail;
    }
    json_t *md = lowp_metadata(m, source_name, opt, kt->isa);
    if (!md)
        goto fail;
    s = st_write_file(path, md, o.t, o.n, &e);
    goto done;
fail:
    error_set(&e, s, "%s: out of memory writing the %s file", path, cspresnet_precision_name(opt->precision));
done:
    for (size_t i = 0; o.owned && i < o.n_owned; i++)
        free(o.owned[i]);
    free(o.owned);
    free(o.t);
    free(node_of);
    return error_finish(&e, s, err, err_size);
}
