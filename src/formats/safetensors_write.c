/*
 * safetensors_write.c - a model as a safetensors file (layout: cspresnet_formats.h).
 *
 * The JSON header is built with jansson (insertion order kept: __metadata__ first,
 * then the tensors in Paddle's state_dict order), padded with spaces so that the data
 * section starts at a multiple of 64 bytes, and the tensors follow back to back: the
 * format requires the data to be indexed without gaps, so each tensor starts where the
 * previous one ends (always a multiple of 4 bytes: float-aligned for a zero-copy load).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "cspresnet_formats.h"
#include "formats/safetensors_internal.h"
#include "model/model.h"

static int set_str(json_t *obj, const char *key, const char *value)
{
    return json_object_set_new(obj, key, json_string(value)) == 0;
}

static void int_list(char *out, size_t n, const int *v, int count)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%d", i ? "," : "", v[i]);
}

json_t *st_metadata_json(const cspresnet_model *m, const char *source_name)
{
    const cspresnet_config *c = &m->cfg;
    char channels[96], layers[96], ret[32];
    int_list(channels, sizeof channels, c->channels, CSPRESNET_NUM_STAGES + 1);
    int_list(layers, sizeof layers, c->layers, CSPRESNET_NUM_STAGES);
    int_list(ret, sizeof ret, c->return_idx, c->num_return);
    json_t *md = json_object();
    if (!md)
        return NULL;
    int ok = set_str(md, ST_META_VERSION, CSPRESNET_SAFETENSORS_VERSION) &&
             set_str(md, ST_META_PRODUCER, "cspresnet " CSPRESNET_VERSION) &&
             set_str(md, ST_META_CHANNELS, channels) && set_str(md, ST_META_LAYERS, layers) &&
             set_str(md, ST_META_ACT, cspresnet_act_name(c->act)) &&
             set_str(md, ST_META_LARGE_STEM, c->use_large_stem ? "1" : "0") &&
             set_str(md, ST_META_ALPHA, c->use_alpha ? "1" : "0") && set_str(md, ST_META_RETURN_IDX, ret) &&
             set_str(md, ST_META_DEPLOYED, m->deployed ? "1" : "0") &&
             set_str(md, ST_META_SOURCE, source_name ? source_name : "") &&
             (!m->det || set_str(md, ST_META_DETECTOR, "1"));
    if (!ok) {
        json_decref(md);
        return NULL;
    }
    return md;
}

static size_t dtype_size(const char *dtype)
{
    return strcmp(dtype, "I8") == 0 ? 1 : strcmp(dtype, "BF16") == 0 ? 2 : 4;
}

static json_t *tensor_json(const st_out *o, uint64_t begin)
{
    json_t *t = json_object(), *shape = json_array(), *offs = json_array();
    int ok = t && shape && offs;
    for (int d = 0; ok && d < o->ndim; d++)
        ok = json_array_append_new(shape, json_integer((json_int_t)o->shape[d])) == 0;
    const uint64_t end = begin + (uint64_t)o->numel * dtype_size(o->dtype);
    ok = ok && json_array_append_new(offs, json_integer((json_int_t)begin)) == 0 &&
         json_array_append_new(offs, json_integer((json_int_t)end)) == 0;
    ok = ok && set_str(t, "dtype", o->dtype) && json_object_set(t, "shape", shape) == 0 &&
         json_object_set(t, "data_offsets", offs) == 0;
    json_decref(shape);
    json_decref(offs);
    if (!ok) {
        json_decref(t);
        return NULL;
    }
    return t;
}

/* n items of size bytes each, host order in memory, little-endian in the file. */
static cspresnet_status write_items(atomic_file *f, const void *data, long n, size_t size, error_buf *err)
{
    if (st_host_is_little_endian() || size == 1)
        return atomic_file_write(f, data, (size_t)n * size, err);
    const unsigned char *src = data;
    unsigned char buf[4096];
    for (long i = 0; i < n;) {
        size_t k = 0;
        for (; i < n && k + size <= sizeof buf; i++, k += size)
            for (size_t b = 0; b < size; b++)
                buf[k + b] = src[(size_t)i * size + size - 1 - b];
        cspresnet_status s = atomic_file_write(f, buf, k, err);
        if (s != CSPRESNET_OK)
            return s;
    }
    return CSPRESNET_OK;
}

cspresnet_status st_write_file(const char *path, json_t *md, const st_out *t, size_t n, error_buf *e)
{
    cspresnet_status s = CSPRESNET_OK;
    json_t *root = json_object();
    char *text = NULL, *header = NULL;
    atomic_file f = {.fd = -1};
    int opened = 0;
    if (!root || !md || json_object_set_new(root, ST_METADATA_KEY, md) != 0) { /* steals md either way */
        if (!root)
            json_decref(md);
        s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory building the header", path);
        goto done;
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *j = tensor_json(&t[i], offset);
        if (!j || json_object_set_new(root, t[i].key, j) != 0) {
            s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory building the header", path);
            goto done;
        }
        offset += (uint64_t)t[i].numel * dtype_size(t[i].dtype);
    }
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory writing the header", path);
        goto done;
    }
    size_t len = strlen(text);
    size_t padded = ((8 + len + ST_DATA_ALIGN - 1) / ST_DATA_ALIGN) * ST_DATA_ALIGN - 8;
    header = malloc(8 + padded);
    if (!header) {
        s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory writing the header", path);
        goto done;
    }
    for (int b = 0; b < 8; b++)
        header[b] = (char)(unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(header + 8, text, len);
    memset(header + 8 + len, ' ', padded - len);
    s = atomic_file_open(&f, path, e);
    if (s != CSPRESNET_OK)
        goto done;
    opened = 1;
    s = atomic_file_write(&f, header, 8 + padded, e);
    for (size_t i = 0; s == CSPRESNET_OK && i < n; i++)
        s = write_items(&f, t[i].data, t[i].numel, dtype_size(t[i].dtype), e);
    if (s == CSPRESNET_OK) {
        opened = 0;
        s = atomic_file_commit(&f, e);
    }
done:
    if (opened)
        atomic_file_abort(&f);
    free(header);
    free(text);
    json_decref(root);
    return s;
}

void st_out_of_param(const cspresnet_model *m, size_t i, st_out *o)
{
    const param_info *p = &m->params[i];
    *o = (st_out){p->key, "F32", p->ndim, {0}, p->numel, param_at(m->weights, p)};
    for (int d = 0; d < p->ndim; d++)
        o->shape[d] = p->shape[d];
}

cspresnet_status cspresnet_model_save_safetensors(const cspresnet_model *m, const char *path,
                                                  const char *source_name, char *err, size_t err_size)
{
    error_buf e;
    if (!m || !path)
        return error_finish(&e, error_set(&e, CSPRESNET_ERR_ARGUMENT,
                                          "cspresnet_model_save_safetensors: model and path must not be NULL"),
                            err, err_size);
    st_out *t = malloc(sizeof *t * (m->n_params + 1));
    if (!t)
        return error_finish(&e, error_set(&e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path), err, err_size);
    for (size_t i = 0; i < m->n_params; i++)
        st_out_of_param(m, i, &t[i]);
    cspresnet_status s = st_write_file(path, st_metadata_json(m, source_name), t, m->n_params, &e);
    free(t);
    return error_finish(&e, s, err, err_size);
}
