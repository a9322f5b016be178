/*
 * detector_load.c - a PP-YOLOE detector from a full .pdparams checkpoint (SPEC §5):
 * the backbone's architecture from the "backbone.*" keys (load.c's inference, the
 * same rules as cspresnet_model_load), the neck's and head's from "neck.*" and
 * "yolo_head.*" (detector_infer.c, which also reports missing, mis-shaped and
 * unexpected neck and head keys together), then every parameter filled by key.
 * "yolo_head.anchor_points" / "stride_tensor" and the training-only "aux_*" heads are
 * ignored; a backbone key the model does not have is an error, as in load.c; a missing
 * backbone alpha is 1.0 (upstream's rule). A deployed state dict (every conv with a
 * bias, no BN: cspresnet_model_deploy's keys) gives a deployed detector; backbone and
 * neck must agree on the form. The safetensors reader comes in through
 * detector_load_state_dict with a view of its tensors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pdparams.h"
#include "model/detector_infer.h"

#define PROBLEMS_SHOWN 8

typedef struct problems {
    char msg[sizeof(((error_buf *)0)->text)];
    size_t used;
    int count;
} problems;

static void problem(problems *p, const char *fmt, const char *a, const char *b, const char *c)
{
    if (p->count++ >= PROBLEMS_SHOWN || p->used >= sizeof p->msg)
        return;
    p->used += (size_t)snprintf(p->msg + p->used, sizeof p->msg - p->used, "%s", p->count > 1 ? "; " : "");
    if (p->used < sizeof p->msg)
        p->used += (size_t)snprintf(p->msg + p->used, sizeof p->msg - p->used, fmt, a, b, c);
}

/* Every parameter of m from sd by its key; used[i] marks the entries read. */
static cspresnet_status fill(cspresnet_model *m, const state_dict *sd, unsigned char *used, const char *path,
                             error_buf *err)
{
    problems p = {.used = 0};
    for (size_t i = 0; i < m->n_params; i++) {
        const param_info *pi = &m->params[i];
        char want[64], got[64];
        error_shape_str(want, sizeof want, pi->ndim, pi->shape);
        const array_entry *a = state_dict_find(sd, pi->key);
        if (!a) {
            if (pi->role == PARAM_ALPHA)
                *param_at(m->weights, pi) = 1.0f;
            else
                problem(&p, "missing '%s' %s%s", pi->key, want, "");
            continue;
        }
        used[a - sd->entries] = 1;
        int same = a->ndim == pi->ndim;
        for (int d = 0; same && d < pi->ndim; d++)
            same = a->shape[d] == pi->shape[d];
        if (!same) {
            error_shape_str(got, sizeof got, a->ndim, a->shape);
            problem(&p, "shape mismatch for '%s': file has %s, model needs %s", a->key, got, want);
            continue;
        }
        error_buf conv;
        if (array_to_f32(a, param_at(m->weights, pi), &conv) != CSPRESNET_OK)
            problem(&p, "%s%s%s", conv.text, "", "");
        state_dict_release(sd, a);
    }
    for (size_t i = 0; i < sd->count; i++)
        if (!used[i] && strncmp(sd->entries[i].key, "backbone.", 9) == 0) {
            char got[64];
            error_shape_str(got, sizeof got, sd->entries[i].ndim, sd->entries[i].shape);
            problem(&p, "unexpected '%s' %s%s", sd->entries[i].key, got, "");
        }
    if (!p.count)
        return CSPRESNET_OK;
    return error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: %d tensor problem%s: %s%s", path, p.count,
                     p.count > 1 ? "s" : "", p.msg, p.count > PROBLEMS_SHOWN ? "; ..." : "");
}

cspresnet_status detector_load_state_dict(const state_dict *sd, const char *path, const cspresnet_load_options *opt,
                                          cspresnet_model **out, error_buf *e)
{
    cspresnet_config cfg;
    int deployed = 0;
    char prefix[MODEL_KEY_MAX];
    cspresnet_status s = model_infer_config(sd, path, opt, &cfg, &deployed, prefix, sizeof prefix, e);
    if (s != CSPRESNET_OK)
        return s;
    if (strcmp(prefix, "backbone.") != 0)
        return error_set(e, CSPRESNET_ERR_WEIGHTS,
                         "%s is a backbone checkpoint, not a detector checkpoint: the backbone's keys are under "
                         "'%s', not 'backbone.' (a backbone-only file has no neck or head)", path, prefix);
    det_key *keys = malloc(sizeof *keys * (sd->count + 1));
    unsigned char *used = calloc(sd->count + 1, 1);
    cspresnet_model *m = NULL;
    if (!keys || !used) {
        s = error_set(e, CSPRESNET_ERR_MEMORY, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < sd->count; i++)
        keys[i] = (det_key){sd->entries[i].key, sd->entries[i].ndim, sd->entries[i].shape};
    detector_config dc;
    const int c345[DET_LEVELS] = {cfg.channels[2], cfg.channels[3], cfg.channels[4]};
    s = detector_infer_config(keys, sd->count, c345, path, &dc, e);
    if (s == CSPRESNET_OK && dc.deployed != deployed)
        s = error_set(e, CSPRESNET_ERR_WEIGHTS,
                      "%s: the backbone's convs are %s but the neck's are %s ('neck.fpn_stages.0.0.conv1.%s'): "
                      "one file must hold one form", path, deployed ? "deployed (with biases, no BN)" : "ConvBN",
                      dc.deployed ? "deployed" : "ConvBN", dc.deployed ? "conv.bias" : "bn.*");
    if (s == CSPRESNET_OK)
        s = model_build_detector(&cfg, &dc, &m, e);
    if (s == CSPRESNET_OK)
        s = fill(m, sd, used, path, e);
    if (s == CSPRESNET_OK)
        s = model_check_weights(m, path, "", e);
    if (s == CSPRESNET_OK) {
        *out = m;
        m = NULL;
    }
done:
    cspresnet_model_free(m);
    free(keys);
    free(used);
    return s;
}

cspresnet_status cspresnet_model_load_detector(const char *path, const cspresnet_load_options *opt,
                                               cspresnet_model **out, char *err, size_t err_size)
{
    error_buf e = {{0}};
    cspresnet_load_options defaults;
    state_dict sd = {0};
    cspresnet_status s;
    if (!path || !out) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_load_detector: path and out must not be NULL");
    } else {
        *out = NULL;
        if (!opt) {
            cspresnet_load_options_init(&defaults);
            opt = &defaults;
        }
        s = pdparams_read_file(path, &sd, &e);
        if (s == CSPRESNET_OK)
            s = detector_load_state_dict(&sd, path, opt, out, &e);
    }
    state_dict_free(&sd);
    return error_finish(&e, s, err, err_size);
}

cspresnet_status cspresnet_model_load_detector_memory(const void *data, size_t size, const char *name,
                                                      const cspresnet_load_options *opt, cspresnet_model **out,
                                                      char *err, size_t err_size)
{
    error_buf e = {{0}};
    cspresnet_load_options defaults;
    state_dict sd = {0};
    cspresnet_status s;
    if (!name || !out || (!data && size)) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_model_load_detector_memory: data, name and out must "
                      "not be NULL");
    } else {
        *out = NULL;
        if (!opt) {
            cspresnet_load_options_init(&defaults);
            opt = &defaults;
        }
        s = pdparams_read_memory(data ? data : (const void *)"", size, name, &sd, &e);
        if (s == CSPRESNET_OK)
            s = detector_load_state_dict(&sd, name, opt, out, &e);
    }
    state_dict_free(&sd);
    return error_finish(&e, s, err, err_size);
}

int cspresnet_model_is_detector(const cspresnet_model *model) { return model && model->det; }
