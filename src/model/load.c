/*
 * load.c - a model from a .pdparams state dict, with the architecture read off the file.
 *
 * Keys are matched as upstream does, by dot-boundary suffix: the key that ends in
 * "stem.conv1.conv.weight" fixes the prefix ("" for backbone-only ImageNet files,
 * "backbone." for detector checkpoints); keys under that prefix that start with
 * "stem." or "stages." are the backbone's, all others (neck.*, yolo_head.*, aux_*)
 * are skipped and counted.
 *
 * Inferred: channels[0] from the last stem conv, large stem from stem.conv3, the four
 * stage widths from stages.i.conv3, blocks per stage from stages.i.blocks.j, alpha
 * from any *.alpha key, and the deployed form (build.c) from a stem conv with a bias
 * and no BN. model_infer_config gives the same inference to other readers of
 * shapes-only files (safetensors without __metadata__). Then every parameter must be present with its exact shape,
 * and no backbone key may be left over; every problem is reported by key, with both
 * shapes, up to a handful per message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pdparams.h"
#include "model/model.h"

void cspresnet_load_options_init(cspresnet_load_options *opt)
{
    if (!opt)
        return;
    memset(opt, 0, sizeof *opt);
    opt->act = CSPRESNET_ACT_SWISH;
    opt->return_idx[0] = 1;
    opt->return_idx[1] = 2;
    opt->return_idx[2] = 3;
    opt->num_return = 3;
    opt->expect_large_stem = -1;
    opt->expect_alpha = -1;
}

/* A backbone view of the state dict: entries under the prefix, keyed without it. */
typedef struct backbone_keys {
    const state_dict *sd;
    size_t prefix_len;
    char prefix[MODEL_KEY_MAX];  /* "" or e.g. "backbone." */
    unsigned char *is_backbone; /* per entry */
    unsigned char *used;        /* per entry */
    size_t skipped;
} backbone_keys;

static const array_entry *bk_find(const backbone_keys *bk, const char *key, size_t *index)
{
    for (size_t i = 0; i < bk->sd->count; i++)
        if (bk->is_backbone[i] && strcmp(bk->sd->entries[i].key + bk->prefix_len, key) == 0) {
            if (index)
                *index = i;
            return &bk->sd->entries[i];
        }
    return NULL;
}

static void shape_str(char *out, size_t n, int ndim, const int64_t *shape)
{
    size_t used = 0;
    used += (size_t)snprintf(out + used, n - used, "[");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(out + used, n - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (used < n)
        snprintf(out + used, n - used, "]");
}

/* "a list", "an int", "None": what a message says was found instead of an array. */
static const char *with_article(const char *type, char *buf, size_t n)
{
    if (strcmp(type, "None") == 0)
        return type;
    snprintf(buf, n, "%s %s", strchr("aeiou", type[0]) ? "an" : "a", type);
    return buf;
}

static int under_backbone(const char *key, const char *prefix, size_t prefix_len)
{
    return strncmp(key, prefix, prefix_len) == 0 &&
           (strncmp(key + prefix_len, "stem.", 5) == 0 || strncmp(key + prefix_len, "stages.", 7) == 0);
}

/* A value that is not an ndarray (a list, None, a str, an int) under a key the backbone
 * would read: named with its type, instead of the key being reported as missing.
 * prefix NULL: the backbone's prefix is unknown (no array key ends in the stem anchor),
 * so any key ending in it at a dot boundary counts. */
static cspresnet_status check_non_arrays(const state_dict *sd, const char *path, const char *prefix,
                                         error_buf *err)
{
    static const char anchor[] = "stem.conv1.conv.weight";
    const size_t alen = sizeof anchor - 1;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < sd->skipped_non_array; i++) {
        const char *k = sd->others[i].key;
        size_t klen = strlen(k);
        int hit = prefix ? under_backbone(k, prefix, strlen(prefix))
                         : klen >= alen && strcmp(k + klen - alen, anchor) == 0 &&
                               (klen == alen || k[klen - alen - 1] == '.');
        if (hit && bad++ == 0)
            first = i;
    }
    if (!bad)
        return CSPRESNET_OK;
    char art[64], more[64] = "";
    if (bad > 1)
        snprintf(more, sizeof more, " (%zu backbone keys hold no array)", bad);
    return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: %s: expected an array, found %s%s", path,
                     sd->others[first].key, with_article(sd->others[first].type, art, sizeof art), more);
}

static cspresnet_status find_prefix(const state_dict *sd, const char *path, backbone_keys *bk,
                                    error_buf *err)
{
    static const char anchor[] = "stem.conv1.conv.weight";
    const size_t alen = sizeof anchor - 1;
    long found = -1;
    for (size_t i = 0; i < sd->count; i++) {
        const char *k = sd->entries[i].key;
        size_t klen = strlen(k);
        if (klen < alen || strcmp(k + klen - alen, anchor) != 0)
            continue;
        if (klen > alen && k[klen - alen - 1] != '.')
            continue;
        if (found >= 0)
            return error_set(err, CSPRESNET_ERR_WEIGHTS,
                             "%s: two backbones in one file ('%s' and '%s'); cannot tell which to load",
                             path, sd->entries[found].key, k);
        found = (long)i;
    }
    if (found < 0 && check_non_arrays(sd, path, NULL, err) != CSPRESNET_OK)
        return CSPRESNET_ERR_WEIGHTS;
    if (found < 0)
        return error_set(err, CSPRESNET_ERR_WEIGHTS,
                         "%s: no CSPResNet backbone found: no key ends in '%s' (%zu arrays in the file)",
                         path, anchor, sd->count);
    bk->prefix_len = strlen(sd->entries[found].key) - alen;
    if (bk->prefix_len >= sizeof bk->prefix)
        return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: key prefix of '%s' is too long", path,
                         sd->entries[found].key);
    memcpy(bk->prefix, sd->entries[found].key, bk->prefix_len);
    bk->prefix[bk->prefix_len] = '\0';
    const char *prefix = bk->prefix;
    for (size_t i = 0; i < sd->count; i++) {
        const char *k = sd->entries[i].key;
        int under = strncmp(k, prefix, bk->prefix_len) == 0 &&
                    (strncmp(k + bk->prefix_len, "stem.", 5) == 0 ||
                     strncmp(k + bk->prefix_len, "stages.", 7) == 0);
        bk->is_backbone[i] = (unsigned char)under;
        if (!under)
            bk->skipped++;
    }
    return CSPRESNET_OK;
}

static int dim0(const backbone_keys *bk, const char *key)
{
    const array_entry *a = bk_find(bk, key, NULL);
    return a && a->ndim >= 1 && a->shape[0] > 0 && a->shape[0] <= 65536 ? (int)a->shape[0] : -1;
}

static cspresnet_status infer_config(const backbone_keys *bk, const char *path,
                                     const cspresnet_load_options *opt, cspresnet_config *cfg,
                                     int *file_has_alpha, int *deployed, error_buf *err)
{
    char key[MODEL_KEY_MAX];
    memset(cfg, 0, sizeof *cfg);
    /* The deployed form (build.c) gives every conv a bias and has no BN; the conv
     * weights that fix the widths and depths are named alike in both forms. */
    *deployed = bk_find(bk, "stem.conv1.conv.bias", NULL) != NULL &&
                bk_find(bk, "stem.conv1.bn.weight", NULL) == NULL;
    cfg->use_large_stem = bk_find(bk, "stem.conv3.conv.weight", NULL) != NULL;
    cfg->channels[0] = dim0(bk, cfg->use_large_stem ? "stem.conv3.conv.weight" : "stem.conv2.conv.weight");
    if (cfg->channels[0] < 0)
        return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: missing or malformed '%sstem.conv%d.conv.weight'",
                         path, bk->prefix, cfg->use_large_stem ? 3 : 2);
    for (int s = 0; s < CSPRESNET_NUM_STAGES; s++) {
        snprintf(key, sizeof key, "stages.%d.conv3.conv.weight", s);
        cfg->channels[s + 1] = dim0(bk, key);
        if (cfg->channels[s + 1] < 0)
            return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: missing or malformed '%s%s' (stage %d)", path,
                             bk->prefix, key, s);
        int j = 0;
        for (;; j++) {
            snprintf(key, sizeof key, "stages.%d.blocks.%d.conv1.conv.weight", s, j);
            if (!bk_find(bk, key, NULL))
                break;
        }
        if (j == 0)
            return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: stage %d has no blocks ('%s%s' is missing)",
                             path, s, bk->prefix, key);
        cfg->layers[s] = j;
    }
    snprintf(key, sizeof key, "stages.%d.conv3.conv.weight", CSPRESNET_NUM_STAGES);
    if (bk_find(bk, key, NULL))
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                         "%s: the file has more than %d stages ('%s'); only 4-stage CSPResNets are supported",
                         path, CSPRESNET_NUM_STAGES, key);
    *file_has_alpha = 0;
    for (size_t i = 0; i < bk->sd->count; i++) {
        const char *k = bk->sd->entries[i].key;
        size_t len = strlen(k);
        if (bk->is_backbone[i] && len >= 6 && strcmp(k + len - 6, ".alpha") == 0)
            *file_has_alpha = 1;
    }
    cfg->use_alpha = *file_has_alpha;
    cfg->act = opt->act;
    cfg->num_return = opt->num_return;
    memcpy(cfg->return_idx, opt->return_idx, sizeof cfg->return_idx);
    return CSPRESNET_OK;
}

static cspresnet_status check_expectations(const cspresnet_config *cfg, int file_has_alpha,
                                           const cspresnet_load_options *opt, const char *path,
                                           error_buf *err)
{
    if (opt->expect_large_stem >= 0 && opt->expect_large_stem != cfg->use_large_stem)
        return error_set(err, CSPRESNET_ERR_CONFIG, "%s: the file has a %s stem (%s stem.conv3) but a %s stem was asked for",
                         path, cfg->use_large_stem ? "large" : "small", cfg->use_large_stem ? "has" : "no",
                         opt->expect_large_stem ? "large" : "small");
    if (opt->expect_alpha == 0 && file_has_alpha)
        return error_set(err, CSPRESNET_ERR_CONFIG,
                         "%s: the file has RepVGG alpha parameters (a PP-YOLOE+ model) but no alpha was asked for",
                         path);
    if (opt->expect) {
        const cspresnet_config *e = opt->expect;
        for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++)
            if (e->channels[i] != cfg->channels[i])
                return error_set(err, CSPRESNET_ERR_CONFIG,
                                 "%s: channels[%d] is %d in the file but %d was asked for (file channels %d,%d,%d,%d,%d)",
                                 path, i, cfg->channels[i], e->channels[i], cfg->channels[0], cfg->channels[1],
                                 cfg->channels[2], cfg->channels[3], cfg->channels[4]);
        for (int i = 0; i < CSPRESNET_NUM_STAGES; i++)
            if (e->layers[i] != cfg->layers[i])
                return error_set(err, CSPRESNET_ERR_CONFIG,
                                 "%s: stage %d has %d blocks in the file but %d were asked for (file layers %d,%d,%d,%d)",
                                 path, i, cfg->layers[i], e->layers[i], cfg->layers[0], cfg->layers[1],
                                 cfg->layers[2], cfg->layers[3]);
    }
    return CSPRESNET_OK;
}

/* The architecture of bk: inferred, checked against opt, alpha forced by
 * opt->expect_alpha = 1 (un-deployed only: a deployed file has its alpha folded in),
 * and validated. */
static cspresnet_status infer_arch(const backbone_keys *bk, const char *path,
                                   const cspresnet_load_options *opt, cspresnet_config *cfg,
                                   int *deployed, error_buf *err)
{
    int file_has_alpha = 0;
    cspresnet_status s = infer_config(bk, path, opt, cfg, &file_has_alpha, deployed, err);
    if (s != CSPRESNET_OK)
        return s;
    s = check_expectations(cfg, file_has_alpha, opt, path, err);
    if (s != CSPRESNET_OK)
        return s;
    if (opt->expect_alpha == 1 && !*deployed)
        cfg->use_alpha = 1;
    char cerr[sizeof err->text];
    s = cspresnet_config_validate(cfg, cerr, sizeof cerr);
    if (s != CSPRESNET_OK)
        return error_set(err, s, "%s: %s", path, cerr);
    return CSPRESNET_OK;
}

cspresnet_status model_infer_config(const state_dict *sd, const char *path,
                                    const cspresnet_load_options *opt, cspresnet_config *cfg,
                                    int *deployed, char *prefix, size_t prefix_size, error_buf *err)
{
    backbone_keys bk = {0};
    bk.sd = sd;
    bk.is_backbone = calloc(sd->count + 1, 1);
    bk.used = calloc(sd->count + 1, 1);
    cspresnet_status s;
    if (!bk.is_backbone || !bk.used)
        s = error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
    else if ((s = find_prefix(sd, path, &bk, err)) == CSPRESNET_OK)
        s = infer_arch(&bk, path, opt, cfg, deployed, err);
    if (s == CSPRESNET_OK && prefix && prefix_size)
        snprintf(prefix, prefix_size, "%s", bk.prefix);
    free(bk.is_backbone);
    free(bk.used);
    return s;
}

/* Copies every parameter in; collects up to 8 problems into one message. */
static cspresnet_status fill_weights(cspresnet_model *m, backbone_keys *bk, const char *path,
                                     int *alpha_defaulted, error_buf *err)
{
    char msg[sizeof err->text] = "";
    size_t used = 0;
    int problems = 0;
#define PROBLEM(...)                                                                         \
    do {                                                                                     \
        if (problems++ < 8 && used < sizeof msg)                                             \
            used += (size_t)snprintf(msg + used, sizeof msg - used, "%s", problems > 1 ? "; " : ""), \
            used += used < sizeof msg ? (size_t)snprintf(msg + used, sizeof msg - used, __VA_ARGS__) : 0; \
    } while (0)

    *alpha_defaulted = 0;
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *p = &m->params[i];
        size_t index;
        const array_entry *a = bk_find(bk, p->key, &index);
        char want[64], got[64];
        shape_str(want, sizeof want, p->ndim, p->shape);
        if (!a) {
            if (p->role == PARAM_ALPHA) { /* upstream: a missing alpha stays at its init, 1.0 */
                *param_at(m->weights, p) = 1.0f;
                (*alpha_defaulted)++;
                continue;
            }
            PROBLEM("missing '%s%s' %s", bk->prefix, p->key, want);
            continue;
        }
        bk->used[index] = 1;
        int same = a->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = a->shape[d] == p->shape[d];
        if (!same) {
            shape_str(got, sizeof got, a->ndim, a->shape);
            PROBLEM("shape mismatch for '%s': file has %s, model needs %s", a->key, got, want);
            continue;
        }
        error_buf conv;
        if (array_to_f32(a, param_at(m->weights, p), &conv) != CSPRESNET_OK)
            PROBLEM("%s", conv.text);
        state_dict_release(bk->sd, a);
    }
    for (size_t i = 0; i < bk->sd->count; i++)
        if (bk->is_backbone[i] && !bk->used[i]) {
            char got[64];
            shape_str(got, sizeof got, bk->sd->entries[i].ndim, bk->sd->entries[i].shape);
            PROBLEM("unexpected '%s' %s", bk->sd->entries[i].key, got);
        }
#undef PROBLEM
    if (problems)
        return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: %d tensor problem%s: %s%s", path, problems,
                         problems > 1 ? "s" : "", msg, problems > 8 ? "; ..." : "");
    return CSPRESNET_OK;
}

/* The model of a state dict already read; name is the file's name, for messages. */
static cspresnet_status load_state_dict(const state_dict *sd, const char *path,
                                        const cspresnet_load_options *options,
                                        cspresnet_model **out, error_buf *e)
{
    cspresnet_status s;
    backbone_keys bk = {0};
    cspresnet_model *m = NULL;
    bk.sd = sd;
    bk.is_backbone = calloc(sd->count + 1, 1);
    bk.used = calloc(sd->count + 1, 1);
    if (!bk.is_backbone || !bk.used) {
        s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
        goto done;
    }
    s = find_prefix(sd, path, &bk, e);
    if (s != CSPRESNET_OK)
        goto done;
    s = check_non_arrays(sd, path, bk.prefix, e);
    if (s != CSPRESNET_OK)
        goto done;

    cspresnet_config cfg;
    int deployed = 0;
    s = infer_arch(&bk, path, options, &cfg, &deployed, e);
    if (s != CSPRESNET_OK)
        goto done;
    /* .pdparams holds upstream's layout only: a deployed-looking file is checked
     * against the un-deployed model, whose message lists what is missing. */
    s = model_build(&cfg, 0, &m, e);
    if (s != CSPRESNET_OK)
        goto done;
    int alpha_defaulted = 0;
    s = fill_weights(m, &bk, path, &alpha_defaulted, e);
    if (s != CSPRESNET_OK)
        goto done;
    s = model_check_weights(m, path, bk.prefix, e);
    if (s != CSPRESNET_OK)
        goto done;
    if (options->log && options->log_size) {
        size_t used = (size_t)snprintf(options->log, options->log_size,
                                       "%s: %zu backbone tensors loaded%s%s%s", path,
                                       m->n_params - (size_t)alpha_defaulted,
                                       bk.prefix_len ? " under prefix '" : "", bk.prefix,
                                       bk.prefix_len ? "'" : "");
        if (used < options->log_size)
            used += (size_t)snprintf(options->log + used, options->log_size - used,
                                     "; skipped %zu non-backbone tensors (neck.*, yolo_head.*, ...)",
                                     bk.skipped);
        if (alpha_defaulted && used < options->log_size)
            snprintf(options->log + used, options->log_size - used,
                     "; %d alpha parameters absent, set to 1.0 as upstream does", alpha_defaulted);
    }
    *out = m;
    m = NULL;
done:
    cspresnet_model_free(m);
    free(bk.is_backbone);
    free(bk.used);
    return s;
}

/* path (a file) or data/size (memory, read in place) to a model. */
static cspresnet_status load_any(const char *path, const void *data, size_t size,
                                 const cspresnet_load_options *options, cspresnet_model **out,
                                 char *err, size_t err_size, const char *fn)
{
    error_buf e = {{0}};
    cspresnet_load_options defaults;
    cspresnet_status s;
    state_dict sd = {0};
    if (!path || !out || (!data && size)) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "%s: %s and out must not be NULL", fn,
                      data || size ? "data, name" : "path");
        goto done;
    }
    *out = NULL;
    if (!options) {
        cspresnet_load_options_init(&defaults);
        options = &defaults;
    }
    s = data || size ? pdparams_read_borrowed(data, size, path, &sd, &e)
                     : pdparams_read_file(path, &sd, &e);
    if (s == CSPRESNET_OK)
        s = load_state_dict(&sd, path, options, out, &e);
done:
    state_dict_free(&sd);
    return error_finish(&e, s, err, err_size);
}

cspresnet_status cspresnet_model_load(const char *path, const cspresnet_load_options *options,
                                      cspresnet_model **out, char *err, size_t err_size)
{
    return load_any(path, NULL, 0, options, out, err, err_size, "cspresnet_model_load");
}

cspresnet_status cspresnet_model_load_memory(const void *data, size_t size, const char *name,
                                             const cspresnet_load_options *options,
                                             cspresnet_model **out, char *err, size_t err_size)
{
    static const uint8_t empty[1];
    return load_any(name, data ? data : (size ? NULL : empty), size, options, out, err, err_size,
                    "cspresnet_model_load_memory");
}
