/*
 * safetensors_read.c - a model from a safetensors file (layout: cspresnet_formats.h).
 *
 * Order of checks, each before anything is allocated from the file's numbers:
 *   1. the file holds 8 bytes and the header length N fits in what follows (and under
 *      the reference implementation's 100 MB);
 *   2. the header is JSON (jansson, duplicate keys refused), an object whose
 *      __metadata__ (optional) is an object of strings and whose other members are
 *      tensors with dtype, shape and data_offsets [begin, end];
 *   3. per tensor: dtype F32, F16, BF16, or I8 / I32 (int8 files only, checked by
 *      safetensors_lowp_read.c; the others are refused as unsupported), end - begin =
 *      itemsize * prod(shape) without overflow, end within the data section; then,
 *      sorted by begin, no two tensors overlap and no byte is left unindexed (the
 *      format forbids gaps);
 *   4. the architecture from __metadata__, or, for a file without it (one written by
 *      another tool), read off the tensor shapes by the .pdparams loader's inference
 *      (model_infer_config, deployed form included), is validated and built, and every
 *      parameter must be a tensor of exactly its shape, with no tensor left over; a
 *      shape that differs means the metadata contradicts the tensors, and the message
 *      says so.
 * Then the weights are used in place (zero-copy, the model keeps the mapping) when
 * every tensor is F32 and float-aligned on a little-endian host, else converted into
 * the model's arena by array_to_f32 (F16 as .pdparams float16 is, BF16 exactly).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cspresnet_formats.h"
#include "core/pages.h"
#include "core/stream_read.h"
#include "formats/safetensors_internal.h"
#include "io/pdparams.h"
#include "model/detector_infer.h"
#include "model/model.h"

typedef struct mapping {
    void *addr;
    size_t len;
} mapping;

static void mapping_release(void *owner)
{
    mapping *mp = owner;
    if (mp) {
        munmap(mp->addr, mp->len);
        free(mp);
    }
}

/* A header length whose low byte is 0x80 makes a safetensors file start like a
 * pickle's PROTO opcode, so the '{' at byte 8 decides. A pickle cannot have it there
 * within the .pdparams limits: with protocol 4/5 byte 8 is bits 40-47 of the first
 * frame's length (> 100 TB), with 2/3 bits 8-15 of the first key's length (> 30 kB). */
int cspresnet_safetensors_sniff(const unsigned char *head, size_t n)
{
    if (!head || n < 9)
        return 0;
    uint64_t len = 0;
    for (int b = 0; b < 8; b++)
        len |= (uint64_t)head[b] << (8 * b);
    return len >= 2 && head[8] == '{';
}

static const char *dtype_known(const char *d)
{
    static const char *const names[] = {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                        "BF16", "I32", "U32", "F32", "F64", "I64", "U64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(d, names[i]) == 0)
            return names[i];
    return NULL;
}

/* Step 3 for one member of the header. */
static cspresnet_status parse_tensor(const char *path, const char *name, json_t *v, uint64_t data_size,
                                     uint64_t data_start, st_tensor *t, error_buf *err)
{
    if (!json_is_object(v))
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: header entry '%s' is not an object", path, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: tensor '%s' needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" (array)",
                         path, name);
    const char *dtype = json_string_value(dt);
    uint64_t itemsize;
    if (strcmp(dtype, "F32") == 0) {
        t->dtype = DTYPE_F32;
        itemsize = 4;
    } else if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0) {
        t->dtype = dtype[0] == 'F' ? DTYPE_F16 : DTYPE_BF16;
        itemsize = 2;
    } else if (strcmp(dtype, "I8") == 0 || strcmp(dtype, "I32") == 0) { /* int8 files (safetensors_lowp_read.c) */
        t->dtype = dtype[1] == '8' ? DTYPE_I8 : DTYPE_I32;
        itemsize = dtype[1] == '8' ? 1 : 4;
    } else {
        if (dtype_known(dtype))
            return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                             "%s: tensor '%s' has dtype %s; only F32, F16, BF16, I8 and I32 are supported", path, name,
                             dtype);
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: tensor '%s' has an unknown dtype '%.32s'", path, name,
                         dtype);
    }
    t->dtype_name = dtype_known(dtype);
    size_t nd = json_array_size(shape);
    if (nd > ST_MAX_NDIM)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions (at most %d)", path, name,
                         nd, ST_MAX_NDIM);
    t->name = name;
    t->ndim = (int)nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(shape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return error_set(err, CSPRESNET_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not an integer >= 0", path,
                             name, d);
        uint64_t dim = (uint64_t)json_integer_value(x);
        t->shape[d] = (int64_t)dim;
        if (dim && numel > UINT64_MAX / 4 / dim) /* 4 >= itemsize */
            overflow = 1;
        else
            numel *= dim;
    }
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (json_array_size(offs) != 2 || !json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < 0)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets must be [begin, end] with integers >= 0", path, name);
    t->begin = (uint64_t)json_integer_value(b);
    t->end = (uint64_t)json_integer_value(e);
    if (t->begin > t->end || t->end > data_size)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] out of range: the data section (from file offset "
                         "%llu) holds %llu bytes",
                         path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)data_start, (unsigned long long)data_size);
    if (overflow || t->end - t->begin != numel * itemsize) {
        char s[128];
        error_shape_str(s, sizeof s, t->ndim, t->shape);
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: tensor '%s': %s %s needs %llu bytes%s but data_offsets [%llu, %llu] span %llu", path,
                         name, t->dtype_name, s, (unsigned long long)(numel * itemsize), overflow ? " (overflows)" : "",
                         (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin));
    }
    return CSPRESNET_OK;
}

static int cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static cspresnet_status check_layout(const char *path, st_tensor *t, size_t n, uint64_t data_size,
                                     uint64_t data_start, error_buf *err)
{
    const st_tensor **order = malloc((n + 1) * sizeof *order);
    if (!order)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        order[i] = &t[i];
    qsort(order, n, sizeof *order, cmp_begin);
    cspresnet_status s = CSPRESNET_OK;
    uint64_t at = 0;
    for (size_t i = 0; i < n && s == CSPRESNET_OK; i++) {
        const st_tensor *c = order[i];
        if (i > 0 && c->begin < at)
            s = error_set(err, CSPRESNET_ERR_FORMAT,
                          "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap (data section at file offset %llu)",
                          path, order[i - 1]->name, (unsigned long long)order[i - 1]->begin,
                          (unsigned long long)order[i - 1]->end, c->name, (unsigned long long)c->begin,
                          (unsigned long long)c->end, (unsigned long long)data_start);
        else if (c->begin > at)
            s = error_set(err, CSPRESNET_ERR_FORMAT,
                          "%s: bytes [%llu, %llu) of the data section before tensor '%s' belong to no tensor (the "
                          "safetensors format forbids gaps)",
                          path, (unsigned long long)at, (unsigned long long)c->begin, c->name);
        at = c->end;
    }
    if (s == CSPRESNET_OK && at != data_size)
        s = error_set(err, CSPRESNET_ERR_FORMAT,
                      "%s: the data section holds %llu bytes but the tensors end at %llu: the rest belongs to no tensor",
                      path, (unsigned long long)data_size, (unsigned long long)at);
    free(order);
    return s;
}

/* "a,b,c" -> exactly count ints (count < 0: 1..4 of them); returns the number or -1. */
static int parse_list(const char *s, int *out, int count)
{
    int n = 0, max = count < 0 ? CSPRESNET_MAX_OUTPUTS : count;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 1000000 || n >= max)
            return -1;
        out[n++] = (int)v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return (count < 0 ? n >= 1 : n == count) ? n : -1;
}

static cspresnet_status meta_get(const char *path, json_t *md, const char *key, const char **out,
                                 error_buf *err)
{
    json_t *v = json_object_get(md, key);
    if (!v)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ has no \"%s\" (not written by cspresnet convert?)",
                         path, key);
    *out = json_string_value(v);
    return CSPRESNET_OK;
}

static cspresnet_status meta_flag(const char *path, json_t *md, const char *key, int *out, error_buf *err)
{
    const char *v = "";
    cspresnet_status s = meta_get(path, md, key, &v, err);
    if (s != CSPRESNET_OK)
        return s;
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        *out = 0;
    else
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ \"%s\" is '%.40s', expected \"0\" or \"1\"", path,
                         key, v);
    return CSPRESNET_OK;
}

static cspresnet_status read_metadata(const char *path, json_t *md, const cspresnet_load_options *opt,
                                      cspresnet_config *cfg, int *deployed, error_buf *err)
{
    if (!json_is_object(md))
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) if (!json_is_string(v)) return error_set(
        err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ \"%s\" is not a string (the format allows only strings)", path, k);
    const char *s = "";
    cspresnet_status st;
    memset(cfg, 0, sizeof *cfg);
    if ((st = meta_get(path, md, ST_META_VERSION, &s, err)) != CSPRESNET_OK)
        return st;
    if (strcmp(s, CSPRESNET_SAFETENSORS_VERSION) != 0)
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED, "%s: __metadata__ format_version '%.20s' (this build reads %s)",
                         path, s, CSPRESNET_SAFETENSORS_VERSION);
    if ((st = meta_get(path, md, ST_META_CHANNELS, &s, err)) != CSPRESNET_OK)
        return st;
    if (parse_list(s, cfg->channels, CSPRESNET_NUM_STAGES + 1) < 0)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ channels '%.60s' is not 5 integers", path, s);
    if ((st = meta_get(path, md, ST_META_LAYERS, &s, err)) != CSPRESNET_OK)
        return st;
    if (parse_list(s, cfg->layers, CSPRESNET_NUM_STAGES) < 0)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ layers '%.60s' is not 4 integers", path, s);
    if ((st = meta_get(path, md, ST_META_ACT, &s, err)) != CSPRESNET_OK)
        return st;
    if (cspresnet_act_parse(s, &cfg->act) != CSPRESNET_OK)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ act '%.40s' is not a known activation", path, s);
    if ((st = meta_flag(path, md, ST_META_LARGE_STEM, &cfg->use_large_stem, err)) != CSPRESNET_OK ||
        (st = meta_flag(path, md, ST_META_ALPHA, &cfg->use_alpha, err)) != CSPRESNET_OK ||
        (st = meta_flag(path, md, ST_META_DEPLOYED, deployed, err)) != CSPRESNET_OK)
        return st;
    if ((st = meta_get(path, md, ST_META_RETURN_IDX, &s, err)) != CSPRESNET_OK)
        return st;
    cfg->num_return = parse_list(s, cfg->return_idx, -1);
    if (cfg->num_return < 0)
        return error_set(err, CSPRESNET_ERR_FORMAT, "%s: __metadata__ return_idx '%.40s' is not 1 to 4 integers", path, s);
    /* A non-default option is the caller's choice; defaults defer to the file. */
    if (opt->act != CSPRESNET_ACT_SWISH)
        cfg->act = opt->act;
    cspresnet_load_options d;
    cspresnet_load_options_init(&d);
    if (opt->num_return != d.num_return || memcmp(opt->return_idx, d.return_idx, sizeof d.return_idx) != 0) {
        cfg->num_return = opt->num_return;
        memcpy(cfg->return_idx, opt->return_idx, sizeof cfg->return_idx);
    }
    if (opt->expect_large_stem >= 0 && opt->expect_large_stem != cfg->use_large_stem)
        return error_set(err, CSPRESNET_ERR_CONFIG, "%s: the file has a %s stem but a %s stem was asked for", path,
                         cfg->use_large_stem ? "large" : "small", opt->expect_large_stem ? "large" : "small");
    if (opt->expect_alpha == 0 && cfg->use_alpha) /* deployed too: its alpha is folded in, not gone */
        return error_set(err, CSPRESNET_ERR_CONFIG,
                         "%s: the file has RepVGG alpha parameters%s (a PP-YOLOE+ model) but no alpha was asked for",
                         path, *deployed ? " (folded into the deployed convs; __metadata__ alpha is 1)" : "");
    if (opt->expect) {
        const cspresnet_config *e = opt->expect;
        for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++)
            if (e->channels[i] != cfg->channels[i])
                return error_set(err, CSPRESNET_ERR_CONFIG, "%s: channels[%d] is %d in the file but %d was asked for",
                                 path, i, cfg->channels[i], e->channels[i]);
        for (int i = 0; i < CSPRESNET_NUM_STAGES; i++)
            if (e->layers[i] != cfg->layers[i])
                return error_set(err, CSPRESNET_ERR_CONFIG, "%s: stage %d has %d blocks in the file but %d were asked for",
                                 path, i, cfg->layers[i], e->layers[i]);
    }
    char cerr[512];
    st = cspresnet_config_validate(cfg, cerr, sizeof cerr);
    if (st != CSPRESNET_OK)
        return error_set(err, st, "%s: __metadata__ describes an invalid architecture: %s", path, cerr);
    return CSPRESNET_OK;
}

/* The index of the tensor named prefix + key (the first not yet used when unused_only),
 * or n when there is none. */
static size_t find_tensor(const st_tensor *t, size_t n, const char *prefix, const char *key,
                          int unused_only)
{
    size_t plen = strlen(prefix);
    for (size_t j = 0; j < n; j++)
        if (!(unused_only && t[j].used) && strncmp(t[j].name, prefix, plen) == 0 &&
            strcmp(t[j].name + plen, key) == 0)
            return j;
    return n;
}

/* Step 4: every parameter of m against the file's tensors; up to 6 problems reported. */
static cspresnet_status match_params(const char *path, cspresnet_model *m, st_tensor *t, size_t n,
                                     const char *prefix, int from_metadata, const char *arch, int *alpha_defaulted,
                                     error_buf *err)
{
    char msg[900] = "";
    size_t used = 0;
    int problems = 0, contradicts = 0;
#define PROBLEM(...)                                                                                \
    do {                                                                                            \
        if (problems++ < 6 && used < sizeof msg) {                                                  \
            used += (size_t)snprintf(msg + used, sizeof msg - used, "%s", problems > 1 ? "; " : ""); \
            if (used < sizeof msg)                                                                  \
                used += (size_t)snprintf(msg + used, sizeof msg - used, __VA_ARGS__);               \
        }                                                                                           \
    } while (0)
    *alpha_defaulted = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        size_t j = find_tensor(t, n, prefix, p->key, 1);
        st_tensor *f = j < n ? &t[j] : NULL;
        char want[96], got[96];
        error_shape_str(want, sizeof want, p->ndim, p->shape);
        if (!f) {
            if (p->role == PARAM_ALPHA) {
                (*alpha_defaulted)++;
                continue;
            }
            PROBLEM("tensor missing: '%s%s' %s", prefix, p->key, want);
            continue;
        }
        f->used = 1;
        int same = f->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = f->shape[d] == p->shape[d];
        if (!same) {
            error_shape_str(got, sizeof got, f->ndim, f->shape);
            PROBLEM("'%s' is %s in the file but the %s architecture needs %s", f->name, got,
                    from_metadata ? "metadata's" : "inferred", want);
            contradicts = from_metadata;
        }
    }
    for (size_t j = 0; j < n; j++)
        if (!t[j].used) {
            char got[96];
            error_shape_str(got, sizeof got, t[j].ndim, t[j].shape);
            PROBLEM("unexpected tensor '%s' %s", t[j].name, got);
        }
#undef PROBLEM
    if (problems)
        return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: %s%d tensor problem%s (%s): %s%s", path,
                         contradicts ? "metadata contradicts the tensor shapes: " : "", problems,
                         problems > 1 ? "s" : "", arch, msg, problems > 6 ? "; ..." : "");
    return CSPRESNET_OK;
}

/* What load_bytes learns about the file, step by step; released by st_file_free. */
typedef struct st_file {
    const char *path;
    const unsigned char *bytes;
    uint64_t data_start, data_size;  /* the data section, after the header */
    json_t *root;                    /* the JSON header */
    st_tensor *tensors;              /* n of them, sorted by begin */
    array_entry *entries;            /* the same tensors as state-dict entries */
    size_t n;
} st_file;

/* The architecture and how it was found. */
typedef struct st_arch {
    cspresnet_config cfg;
    int deployed;
    int from_metadata;               /* 0: inferred from the tensor shapes */
    char prefix[MODEL_KEY_MAX];      /* of the backbone keys, when inferred */
    size_t skipped;                  /* tensors outside the backbone, when inferred */
} st_arch;

static void st_file_free(st_file *sf)
{
    free(sf->tensors);
    free(sf->entries);
    json_decref(sf->root);
}

/* Steps 1 and 2: the header length and the JSON object it frames. */
static cspresnet_status read_header(st_file *sf, uint64_t size, error_buf *e)
{
    const char *path = sf->path;
    if (size < 8)
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: %llu bytes: too short for the 8-byte header length", path,
                         (unsigned long long)size);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++)
        hlen |= (uint64_t)sf->bytes[b] << (8 * b);
    if (hlen > size - 8)
        return error_set(e, CSPRESNET_ERR_FORMAT,
                         "%s: header length %llu (bytes 0-7) runs past the end of the file: only %llu bytes follow",
                         path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    if (hlen > ST_MAX_HEADER)
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: header length %llu exceeds the format's limit of %u bytes",
                         path, (unsigned long long)hlen, ST_MAX_HEADER);
    json_error_t jerr;
    sf->root = json_loadb((const char *)sf->bytes + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!sf->root)
        return error_set(e, CSPRESNET_ERR_FORMAT,
                         "%s: malformed JSON header at file offset %lld (line %d, column %d): %s", path,
                         (long long)(8 + (jerr.position > 0 ? jerr.position : 0)), jerr.line, jerr.column,
                         jerr.text);
    if (!json_is_object(sf->root))
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: the JSON header is not an object", path);
    sf->data_start = 8 + hlen;
    sf->data_size = size - sf->data_start;
    return CSPRESNET_OK;
}

/* Step 3: every member but __metadata__ as a tensor, checked and laid out; then each
 * as a state-dict entry: the shapes for the inference, the bytes for array_to_f32
 * (safetensors data is little-endian, C order). */
static cspresnet_status index_tensors(st_file *sf, error_buf *e)
{
    const char *path = sf->path;
    sf->tensors = calloc(json_object_size(sf->root) + 1, sizeof *sf->tensors);
    if (!sf->tensors)
        return error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    const char *key;
    json_t *val;
    json_object_foreach(sf->root, key, val)
    {
        if (strcmp(key, ST_METADATA_KEY) == 0)
            continue;
        cspresnet_status s = parse_tensor(path, key, val, sf->data_size, sf->data_start,
                                          &sf->tensors[sf->n], e);
        if (s != CSPRESNET_OK)
            return s;
        sf->n++;
    }
    cspresnet_status s = check_layout(path, sf->tensors, sf->n, sf->data_size, sf->data_start, e);
    if (s != CSPRESNET_OK)
        return s;
    sf->entries = calloc(sf->n + 1, sizeof *sf->entries);
    if (!sf->entries)
        return error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < sf->n; i++) {
        const st_tensor *t = &sf->tensors[i];
        array_entry *a = &sf->entries[i];
        a->key = (char *)t->name;
        a->dtype = t->dtype;
        snprintf(a->dtype_str, sizeof a->dtype_str, "%s", t->dtype_name);
        a->ndim = t->ndim;
        a->numel = 1;
        for (int d = 0; d < a->ndim; d++) {
            a->shape[d] = t->shape[d];
            a->numel *= a->shape[d];
        }
        a->raw = sf->bytes + sf->data_start + t->begin;
        a->raw_size = (size_t)(t->end - t->begin);
        a->file_offset = (size_t)(sf->data_start + t->begin);
    }
    return CSPRESNET_OK;
}

/* Marks the tensors outside a->prefix's backbone (neck.*, yolo_head.*, ...) as used, counted. */
static void skip_non_backbone(st_file *sf, st_arch *a)
{
    size_t plen = strlen(a->prefix);
    for (size_t i = 0; i < sf->n; i++) {
        const char *k = sf->tensors[i].name;
        if (strncmp(k, a->prefix, plen) != 0 ||
            (strncmp(k + plen, "stem.", 5) != 0 && strncmp(k + plen, "stages.", 7) != 0)) {
            sf->tensors[i].used = 1;
            a->skipped++;
        }
    }
}

/* Step 4, first half: the architecture from __metadata__, or from the tensor shapes. */
static cspresnet_status find_architecture(st_file *sf, const cspresnet_load_options *options, st_arch *a,
                                          error_buf *e)
{
    json_t *md = json_object_get(sf->root, ST_METADATA_KEY);
    a->from_metadata = md && (!json_is_object(md) || json_object_get(md, ST_META_VERSION) ||
                              json_object_get(md, ST_META_CHANNELS) || json_object_get(md, ST_META_LAYERS) ||
                              json_object_get(md, ST_META_DEPLOYED));
    if (a->from_metadata) {
        json_t *det = json_object_get(md, ST_META_DETECTOR);
        if (json_is_string(det) && strcmp(json_string_value(det), "1") == 0) {
            /* a detector's file: its backbone, as from a detector .pdparams */
            snprintf(a->prefix, sizeof a->prefix, "backbone.");
            skip_non_backbone(sf, a);
        }
        return read_metadata(sf->path, md, options, &a->cfg, &a->deployed, e);
    }
    /* Another tool's file (no __metadata__, or one such as {"format": "pt"}): the
     * architecture from the shapes, as for .pdparams; tensors outside the backbone
     * (neck.*, yolo_head.*) are skipped the same way. */
    state_dict view = {.entries = sf->entries, .count = sf->n};
    cspresnet_status s = model_infer_config(&view, sf->path, options, &a->cfg, &a->deployed, a->prefix,
                                            sizeof a->prefix, e);
    if (s == CSPRESNET_OK)
        skip_non_backbone(sf, a);
    return s;
}

/* The weights of m from the file: in place when map is given, the host is little-endian
 * and every tensor is F32 and float-aligned (the model then adopts *map), else converted
 * into the model's arena. *zero_copy says which. */
static cspresnet_status fill_weights(st_file *sf, cspresnet_model *m, const char *prefix, int alpha_defaulted,
                                     mapping *map, int *zero_copy, error_buf *e)
{
    const unsigned char *data = sf->bytes + sf->data_start;
    *zero_copy = map && st_host_is_little_endian() && alpha_defaulted == 0 && sf->data_start % sizeof(float) == 0;
    for (size_t i = 0; i < sf->n && *zero_copy; i++)
        *zero_copy = sf->tensors[i].dtype == DTYPE_F32 && sf->tensors[i].begin % sizeof(float) == 0;
    if (*zero_copy) {
        mapping *mp = malloc(sizeof *mp);
        if (!mp)
            return error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", sf->path);
        for (size_t i = 0; i < m->n_params; i++) {
            size_t j = find_tensor(sf->tensors, sf->n, prefix, m->params[i].key, 0);
            if (j < sf->n)
                m->params[i].byte_offset = (size_t)sf->tensors[j].begin;
        }
        *mp = *map;
        model_adopt_weights(m, (const float *)(const void *)data, (long)(sf->data_size / sizeof(float)),
                            mapping_release, mp);
        map->addr = MAP_FAILED; /* the model owns it now */
        return CSPRESNET_OK;
    }
    for (size_t i = 0; i < m->n_params; i++) {
        param_info *p = &m->params[i];
        float *dst = param_at(m->weights, p);
        size_t j = find_tensor(sf->tensors, sf->n, prefix, p->key, 0);
        if (j == sf->n) { /* an alpha the file lacks: upstream's init value */
            dst[0] = 1.0f;
            continue;
        }
        cspresnet_status s = array_to_f32(&sf->entries[j], dst, e);
        if (s != CSPRESNET_OK)
            return s;
        if (map)   /* copied: its mapped pages leave memory (read again from the file if touched) */
            pages_release(sf->entries[j].raw, sf->entries[j].raw_size);
    }
    return CSPRESNET_OK;
}

/* The one-line summary in options->log. */
static void write_log(const st_file *sf, const st_arch *a, int zero_copy, int alpha_defaulted,
                      const cspresnet_load_options *options)
{
    char how[160] = "";
    if (!a->from_metadata)
        snprintf(how, sizeof how, "; no cspresnet __metadata__: %s architecture inferred from the tensor shapes%s%s%s",
                 a->deployed ? "deployed" : "un-deployed", a->prefix[0] ? " under prefix '" : "", a->prefix,
                 a->prefix[0] ? "'" : "");
    char skip[80] = "";
    if (a->skipped)
        snprintf(skip, sizeof skip, "; skipped %zu non-backbone tensors", a->skipped);
    snprintf(options->log, options->log_size, "%s: %zu tensors loaded (safetensors, %s)%s%s%s", sf->path,
             sf->n - a->skipped, zero_copy ? "zero-copy from the mapped file" : "copied",
             alpha_defaulted ? "; alpha absent from the file, set to 1.0 as upstream does" : "", how, skip);
}

/* Step 4, second half, and the weights: the model built, its parameters matched
 * against the tensors, filled and checked. */
static cspresnet_status build_model(st_file *sf, st_arch *a, mapping *map, const cspresnet_load_options *options,
                                    cspresnet_model **out, error_buf *e)
{
    cspresnet_model *m = NULL;
    const cspresnet_config *cfg = &a->cfg;
    cspresnet_status s = model_build(cfg, a->deployed, &m, e);
    if (s != CSPRESNET_OK) {
        cspresnet_model_free(m);
        return s;
    }
    char arch[200];
    snprintf(arch, sizeof arch, "%s architecture channels %d,%d,%d,%d,%d layers %d,%d,%d,%d%s%s",
             a->deployed ? "deployed" : "un-deployed", cfg->channels[0], cfg->channels[1], cfg->channels[2],
             cfg->channels[3], cfg->channels[4], cfg->layers[0], cfg->layers[1], cfg->layers[2], cfg->layers[3],
             cfg->use_alpha ? " alpha" : "", a->from_metadata ? "" : ", inferred from the tensor shapes");
    int alpha_defaulted = 0, zero_copy = 0;
    s = match_params(sf->path, m, sf->tensors, sf->n, a->prefix, a->from_metadata, arch, &alpha_defaulted, e);
    if (s == CSPRESNET_OK)
        s = fill_weights(sf, m, a->prefix, alpha_defaulted, map, &zero_copy, e);
    if (s == CSPRESNET_OK)
        s = model_check_weights(m, sf->path, a->prefix, e);
    if (s != CSPRESNET_OK) {
        cspresnet_model_free(m);
        return s;
    }
    if (options->log && options->log_size)
        write_log(sf, a, zero_copy, alpha_defaulted, options);
    *out = m;
    return CSPRESNET_OK;
}

/* A detector from the indexed file: detector_load_state_dict over a view of the
 * tensors (the architecture from the keys and shapes, as for .pdparams; the weights
 * copied), with the metadata's act unless the caller gave one, and its alpha on a
 * deployed model (whose alpha keys are folded away). */
static cspresnet_status load_detector(st_file *sf, const st_lowp *q, const cspresnet_load_options *options,
                                      cspresnet_model **out, error_buf *e)
{
    cspresnet_load_options opt = *options;
    json_t *md = json_object_get(sf->root, ST_METADATA_KEY);
    const char *act = json_string_value(json_object_get(md, ST_META_ACT));
    const char *alpha = json_string_value(json_object_get(md, ST_META_ALPHA));
    if (act && opt.act == CSPRESNET_ACT_SWISH && cspresnet_act_parse(act, &opt.act) != CSPRESNET_OK)
        return error_set(e, CSPRESNET_ERR_FORMAT, "%s: __metadata__ act '%.40s' is not a known activation", sf->path,
                         act);
    state_dict view = {.entries = q->view ? q->view : sf->entries, .count = q->view ? q->n_view : sf->n};
    cspresnet_status s = detector_load_state_dict(&view, sf->path, &opt, out, e);
    if (s == CSPRESNET_OK && (*out)->deployed && alpha && strcmp(alpha, "1") == 0)
        (*out)->cfg.use_alpha = 1;
    if (s == CSPRESNET_OK && options->log && options->log_size)
        snprintf(options->log, options->log_size, "%s: %zu tensors loaded (safetensors detector%s, copied)",
                 sf->path, (*out)->n_params, (*out)->deployed ? ", deployed" : "");
    return s;
}

/* A model from the file's bytes (size of them, at least 8). map: the read-only mapping
 * holding them, which the model adopts when the weights can be used in place (zero-copy;
 * *map is then set to MAP_FAILED), or NULL for bytes the caller keeps (always copied). */
static cspresnet_status load_bytes(const char *path, const unsigned char *bytes, uint64_t size, mapping *map,
                                   const cspresnet_load_options *options, int detector, cspresnet_model **out,
                                   error_buf *e)
{
    st_file sf = {.path = path, .bytes = bytes};
    st_arch a = {.prefix = ""};
    st_lowp q = {0};
    cspresnet_status s = read_header(&sf, size, e);
    if (s == CSPRESNET_OK)
        s = index_tensors(&sf, e);
    if (s == CSPRESNET_OK)
        s = st_lowp_begin(path, sf.root, sf.tensors, sf.entries, sf.n, &q, e);
    if (s == CSPRESNET_OK && detector)
        s = load_detector(&sf, &q, options, out, e);
    if (s == CSPRESNET_OK && !detector)
        s = find_architecture(&sf, options, &a, e);
    if (s == CSPRESNET_OK && !detector) {
        if (options->expect_alpha == 1 && !a.deployed)
            a.cfg.use_alpha = 1;
        s = build_model(&sf, &a, map, options, out, e);
    }
    if (s == CSPRESNET_OK)
        s = st_lowp_attach(path, *out, a.prefix, sf.tensors, sf.entries, sf.n, &q, e);
    if (s != CSPRESNET_OK && *out) {
        cspresnet_model_free(*out);
        *out = NULL;
    }
    free(q.view);
    st_file_free(&sf);
    return s;
}

static int not_safetensors(const uint8_t *head, size_t n)
{
    return !cspresnet_safetensors_sniff(head, n);
}

/* path (a file) or data/size (the caller's bytes) to a model. */
static cspresnet_status load_any(const char *path, const void *bytes, size_t size,
                                 const cspresnet_load_options *options, int detector, cspresnet_model **out,
                                 char *err, size_t err_size, const char *fn)
{
    error_buf e = {{0}};
    cspresnet_status s = CSPRESNET_OK;
    cspresnet_load_options defaults;
    FILE *f = NULL;
    mapping map = {MAP_FAILED, 0};
    uint8_t *stream = NULL;
    if (!path || !out || (!bytes && size)) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "%s: %s and out must not be NULL", fn,
                      bytes || size ? "data, name" : "path");
        goto done;
    }
    *out = NULL;
    if (!options) {
        cspresnet_load_options_init(&defaults);
        options = &defaults;
    }
    if (bytes) {
        s = load_bytes(path, bytes, size, NULL, options, detector, out, &e);
        goto done;
    }
    f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        s = error_set(&e, CSPRESNET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(sb.st_mode)) {
        s = error_set(&e, CSPRESNET_ERR_IO, "%s: is a directory", path);
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* a pipe, FIFO or device: read once, whole, then parsed from memory */
        size_t got = 0;
        s = stream_read_all(f, path, ST_MAX_STREAM_BYTES, not_safetensors, &stream, &got, &e);
        if (s == CSPRESNET_OK)
            s = load_bytes(path, stream, got, NULL, options, detector, out, &e);
        goto done;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        s = load_bytes(path, (const unsigned char *)"", fsize, NULL, options, detector, out, &e);
        goto done;
    }
    if (fsize > SIZE_MAX) {
        s = error_set(&e, CSPRESNET_ERR_UNSUPPORTED, "%s: too large to map", path);
        goto done;
    }
    map.len = (size_t)fsize;
    map.addr = mmap(NULL, map.len, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    if (map.addr == MAP_FAILED) {
        s = error_set(&e, CSPRESNET_ERR_IO, "%s: cannot map the file: %s", path, strerror(errno));
        goto done;
    }
    s = load_bytes(path, map.addr, fsize, &map, options, detector, out, &e);
done:
    if (map.addr != MAP_FAILED)
        munmap(map.addr, map.len);
    free(stream);
    if (f)
        fclose(f);
    return error_finish(&e, s, err, err_size);
}

cspresnet_status cspresnet_model_load_safetensors(const char *path, const cspresnet_load_options *options,
                                                  cspresnet_model **out, char *err, size_t err_size)
{
    return load_any(path, NULL, 0, options, 0, out, err, err_size, "cspresnet_model_load_safetensors");
}

cspresnet_status cspresnet_model_load_safetensors_memory(const void *data, size_t size, const char *name,
                                                         const cspresnet_load_options *options,
                                                         cspresnet_model **out, char *err, size_t err_size)
{
    return load_any(name, data ? data : (size ? NULL : ""), size, options, 0, out, err, err_size,
                    "cspresnet_model_load_safetensors_memory");
}

cspresnet_status cspresnet_model_load_detector_safetensors(const char *path, const cspresnet_load_options *options,
                                                           cspresnet_model **out, char *err, size_t err_size)
{
    return load_any(path, NULL, 0, options, 1, out, err, err_size, "cspresnet_model_load_detector_safetensors");
}

cspresnet_status cspresnet_model_load_detector_safetensors_memory(const void *data, size_t size, const char *name,
                                                                  const cspresnet_load_options *options,
                                                                  cspresnet_model **out, char *err, size_t err_size)
{
    return load_any(name, data ? data : (size ? NULL : ""), size, options, 1, out, err, err_size,
                    "cspresnet_model_load_detector_safetensors_memory");
}
