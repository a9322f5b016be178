/*
 * safetensors_lowp_read.c - the bf16 and int8 safetensors files that
 * safetensors_lowp_write.c writes, read back (layout: cspresnet_formats.h).
 *
 * A bf16 file needs nothing beyond the reader: its BF16 tensors widen exactly, so the
 * bf16 convs' weights round to themselves at prepare. An int8 file's I8 conv weights
 * are converted by the reader like any tensor (q as float); here they get their scales:
 * the s8 values, per-channel scales and bias corrections (optional, I32: absent means
 * 0) are kept on the model for prepare (the block calibrating at load would give), the arena values become
 * q * scale (what an fp32 or bf16 context of the file runs), and the input scale and
 * zero point become the model's calibration. Every scale is checked: its tensor present,
 * F32 (the zero point I32 or F32) of the conv's shape, finite, the input scale > 0, a
 * weight scale >= 0 and 0 only for an all-zero row, the zero point an integer in 0..255.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors_internal.h"
#include "model/model.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_scale_name(const char *name)
{
    return ends_with(name, ST_WEIGHT_SCALE) || ends_with(name, ST_INPUT_SCALE) || ends_with(name, ST_INPUT_ZERO) ||
           ends_with(name, ST_BIAS_CORR);
}

cspresnet_status st_lowp_begin(const char *path, json_t *root, st_tensor *t, const array_entry *entries, size_t n,
                               st_lowp *q, error_buf *e)
{
    json_t *md = json_object_get(root, ST_METADATA_KEY);
    const char *p = json_string_value(json_object_get(md, ST_META_PRECISION));
    memset(q, 0, sizeof *q);
    if (json_object_get(md, ST_META_PRECISION) && (!p || cspresnet_precision_parse(p, &q->precision) != CSPRESNET_OK))
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: __metadata__ precision '%.40s' is not fp32, bf16 or int8", path,
                         p ? p : "(not a string)");
    const int int8 = q->precision == CSPRESNET_PRECISION_INT8;
    if (int8) {
        const char *m = json_string_value(json_object_get(md, ST_META_CALIBRATION));
        if (!m || cspresnet_calibration_parse(m, &q->method) != CSPRESNET_OK)
            return error_set(e, CSPRESNET_ERR_FORMAT,
                             "%s: an int8 file's __metadata__ calibration must be minmax or percentile, not '%.40s'",
                             path, m ? m : "(missing)");
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].name;
        int integer = t[i].dtype == DTYPE_I8 || t[i].dtype == DTYPE_I32;
        if (integer && !int8)
            return error_set(e, CSPRESNET_ERR_FORMAT,
                             "%s: tensor '%s' is %s but __metadata__ precision is %s: integer tensors belong to int8 "
                             "files only", path, name, t[i].dtype_name, cspresnet_precision_name(q->precision));
        if ((t[i].dtype == DTYPE_I8 && !ends_with(name, ".weight")) ||
            (t[i].dtype == DTYPE_I32 && !ends_with(name, ST_INPUT_ZERO) && !ends_with(name, ST_BIAS_CORR)))
            return error_set(e, CSPRESNET_ERR_FORMAT,
                             "%s: tensor '%s' is %s: an int8 file has I8 conv weights and I32 zero points and bias "
                             "corrections only", path, name, t[i].dtype_name);
    }
    if (!int8)
        return CSPRESNET_OK;
    q->view = malloc(sizeof *q->view * (n + 1));
    if (!q->view)
        return error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        if (is_scale_name(t[i].name))
            t[i].used = 1;
        else
            q->view[q->n_view++] = entries[i];
    }
    return CSPRESNET_OK;
}

/* The index of tensor prefix + base + suffix, or n. */
static size_t find(const st_tensor *t, size_t n, const char *prefix, const char *base, size_t base_len,
                   const char *suffix)
{
    size_t pl = strlen(prefix);
    for (size_t j = 0; j < n; j++) {
        const char *k = t[j].name;
        if (strncmp(k, prefix, pl) == 0 && strncmp(k + pl, base, base_len) == 0 &&
            strcmp(k + pl + base_len, suffix) == 0)
            return j;
    }
    return n;
}

/* One scalar scale tensor (F32, or I32 for the zero point; shape [1] or []) as a double. */
static cspresnet_status scalar(const char *path, const st_tensor *t, const array_entry *a, int int_ok, double *v,
                               error_buf *e)
{
    int numel_one = t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
    if (!numel_one || !(t->dtype == DTYPE_F32 || (int_ok && t->dtype == DTYPE_I32)))
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: '%s' must be %s of shape [1], not %s with %d dimensions", path,
                         t->name, int_ok ? "I32 or F32" : "F32", t->dtype_name, t->ndim);
    const uint8_t *r = a->raw;
    uint32_t u = (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    *v = t->dtype == DTYPE_I32 ? (double)(int32_t)u : (double)f;
    return CSPRESNET_OK;
}

/* The optional bias corrections of an int8 conv (I32 [oc]) into corr, or zeros. */
static cspresnet_status corrections(const char *path, const st_tensor *t, const array_entry *a, int oc, int32_t *corr,
                                    error_buf *e)
{
    if (!t) {
        memset(corr, 0, sizeof *corr * (size_t)oc);
        return CSPRESNET_OK;
    }
    if (t->dtype != DTYPE_I32 || t->ndim != 1 || t->shape[0] != oc)
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: '%s' must be I32 [%d] (one per output channel), not %s with "
                         "%d dimensions", path, t->name, oc, t->dtype_name, t->ndim);
    for (int c = 0; c < oc; c++) {
        const uint8_t *r = a->raw + 4 * (size_t)c;
        corr[c] = (int32_t)((uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24);
    }
    return CSPRESNET_OK;
}

/* The int8 conv node i of m, weight tensor t[j]: its scales into the model and block. */
static cspresnet_status attach_conv(const char *path, cspresnet_model *m, int i, const char *prefix,
                                    const st_tensor *t, const array_entry *ent, size_t n, float *ws, int32_t *corr,
                                    int8_t *qv, error_buf *e)
{
    const param_info *p = &m->params[m->g.nodes[i].param[0]];
    const size_t base = strlen(p->key) - strlen(".weight");
    const char *names[3] = {ST_WEIGHT_SCALE, ST_INPUT_SCALE, ST_INPUT_ZERO};
    size_t at[3];
    for (int k = 0; k < 3; k++)
        if ((at[k] = find(t, n, prefix, p->key, base, names[k])) == n)
            return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: '%s%.*s%s' is missing: the I8 weight '%s%s' needs it", path,
                             prefix, (int)base, p->key, names[k], prefix, p->key);
    const int oc = (int)p->shape[0];
    const long K = (long)(p->numel / oc);
    const st_tensor *s = &t[at[0]];
    if (s->dtype != DTYPE_F32 || s->ndim != 1 || s->shape[0] != oc)
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: '%s' must be F32 [%d] (one scale per output channel), not %s "
                         "with %d dimensions", path, s->name, oc, s->dtype_name, s->ndim);
    if (array_to_f32(&ent[at[0]], ws, e) != CSPRESNET_OK)
        return CSPRESNET_ERR_FORMAT;
    float *w = param_at(m->weights, p);
    for (int c = 0; c < oc; c++) {
        int zero_row = 1;
        for (long k = 0; k < K; k++) {
            qv[c * K + k] = (int8_t)w[c * K + k];
            zero_row &= qv[c * K + k] == 0;
        }
        if (!isfinite(ws[c]) || ws[c] < 0 || (ws[c] == 0 && !zero_row))
            return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: '%s'[%d] is %g: a weight scale must be finite and > 0 (0 "
                             "only for an all-zero row)", path, s->name, c, (double)ws[c]);
        for (long k = 0; k < K; k++)
            w[c * K + k] = (float)qv[c * K + k] * ws[c];
    }
    double scale, zero;
    if (scalar(path, &t[at[1]], &ent[at[1]], 0, &scale, e) != CSPRESNET_OK ||
        scalar(path, &t[at[2]], &ent[at[2]], 1, &zero, e) != CSPRESNET_OK)
        return CSPRESNET_ERR_FORMAT;
    if (!(scale > 0) || !isfinite(scale) || (float)scale <= 0)
        return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: '%s' is %g: an input scale must be finite and > 0", path,
                         t[at[1]].name, scale);
    if (!(zero >= 0 && zero <= 255 && zero == floor(zero)))
        return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: '%s' is %g: a zero point is an integer in 0..255", path,
                         t[at[2]].name, zero);
    size_t c = find(t, n, prefix, p->key, base, ST_BIAS_CORR);
    if (corrections(path, c < n ? &t[c] : NULL, c < n ? &ent[c] : NULL, oc, corr, e) != CSPRESNET_OK)
        return CSPRESNET_ERR_FORMAT;
    m->act_scale[i] = (float)scale;
    m->act_zero[i] = (int)zero;
    m->qw[i] = qv;
    m->qw_scale[i] = ws;
    m->qw_corr[i] = corr;
    return CSPRESNET_OK;
}

/* The weight tensor of conv node i, or n. */
static size_t weight_of(const cspresnet_model *m, int i, const char *prefix, const st_tensor *t, size_t n)
{
    const char *key = m->params[m->g.nodes[i].param[0]].key;
    return find(t, n, prefix, key, strlen(key), "");
}

/* Whether tensor name (without prefix) is conv node i's I8 weight or one of its scales. */
static int belongs_to(const cspresnet_model *m, int i, const char *name)
{
    const char *key = m->params[m->g.nodes[i].param[0]].key;
    size_t base = strlen(key) - strlen(".weight");
    if (strcmp(name, key) == 0)
        return 1;
    return strncmp(name, key, base) == 0 && is_scale_name(name + base) && strchr(name + base + 1, '.') == NULL;
}

/* An I8 or scale tensor under prefix that no int8 conv of m took (an I8 ESE weight, the
 * scales of a float conv), or NULL. */
static const char *stray_tensor(const cspresnet_model *m, const char *prefix, const st_tensor *t, size_t n)
{
    const size_t pl = strlen(prefix);
    for (size_t j = 0; j < n; j++) {
        if ((t[j].dtype != DTYPE_I8 && !is_scale_name(t[j].name)) || strncmp(t[j].name, prefix, pl) != 0)
            continue;
        int taken = 0;
        for (int i = 0; i < m->g.n_nodes && !taken; i++)
            taken = m->g.nodes[i].op == &op_conv2d && m->qw[i] && belongs_to(m, i, t[j].name + pl);
        if (!taken)
            return t[j].name;
    }
    return NULL;
}

cspresnet_status st_lowp_attach(const char *path, cspresnet_model *m, const char *prefix, const st_tensor *t,
                                const array_entry *entries, size_t n, const st_lowp *q, error_buf *e)
{
    m->file_precision = q->precision;
    if (q->precision != CSPRESNET_PRECISION_INT8)
        return CSPRESNET_OK;
    const graph *g = &m->g;
    size_t bytes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        size_t j = g->nodes[i].op == &op_conv2d ? weight_of(m, i, prefix, t, n) : n;
        if (j < n && t[j].dtype == DTYPE_I8) {
            const param_info *p = &m->params[g->nodes[i].param[0]];
            bytes += 8 * (size_t)p->shape[0] + (((size_t)p->numel + 3) & ~(size_t)3);
        }
    }
    if (bytes == 0)
        return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: __metadata__ precision is int8 but no conv weight is I8", path);
    if (m->weights_release)   /* never: an int8 file has non-F32 tensors, so it is copied */
        return error_set(e, CSPRESNET_ERR_UNSUPPORTED, "%s: an int8 file's weights were mapped, not copied", path);
    m->act_scale = calloc((size_t)g->n_nodes, sizeof *m->act_scale);
    m->act_zero = calloc((size_t)g->n_nodes, sizeof *m->act_zero);
    m->qw = calloc((size_t)g->n_nodes, sizeof *m->qw);
    m->qw_scale = calloc((size_t)g->n_nodes, sizeof *m->qw_scale);
    m->qw_corr = calloc((size_t)g->n_nodes, sizeof *m->qw_corr);
    m->qw_block = malloc(bytes);
    if (!m->act_scale || !m->act_zero || !m->qw || !m->qw_scale || !m->qw_corr || !m->qw_block)
        return error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    m->calib_method = q->method;
    unsigned char *at = m->qw_block;
    for (int i = 0; i < g->n_nodes; i++) {
        size_t j = g->nodes[i].op == &op_conv2d ? weight_of(m, i, prefix, t, n) : n;
        if (j == n || t[j].dtype != DTYPE_I8)
            continue;
        const param_info *p = &m->params[g->nodes[i].param[0]];
        float *ws = (float *)(void *)at;
        int32_t *corr = (int32_t *)(void *)(at + 4 * (size_t)p->shape[0]);
        int8_t *qv = (int8_t *)(at + 8 * (size_t)p->shape[0]);
        at += 8 * (size_t)p->shape[0] + (((size_t)p->numel + 3) & ~(size_t)3);
        cspresnet_status s = attach_conv(path, m, i, prefix, t, entries, n, ws, corr, qv, e);
        if (s != CSPRESNET_OK)
            return s;
    }
    const char *stray = stray_tensor(m, prefix, t, n);
    if (stray)
        return error_set(e, CSPRESNET_ERR_WEIGHTS, "%s: '%s' belongs to no int8 conv (only a conv's weight is I8, "
                         "and a float conv has no scales)", path, stray);
    return CSPRESNET_OK;
}
