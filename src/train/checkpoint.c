/*
 * checkpoint.c - one file with everything a resumed run needs, written atomically.
 *
 * Layout (little-endian): "CSPRTRN1" | int64 step | int32 count | count entries of
 * { uint32 key length, key bytes, int64 numel, numel float32 }. Entries: every model
 * tensor by its upstream key (running statistics included), "head.weight",
 * "head.bias", and the optimizer state "optim.m.<key>" / "optim.v.<key>" (v for AdamW
 * only; "optim.m.head.weight" ...). Loading matches every key and element count
 * before touching the trainer, and names the first mismatch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "train/train.h"

#define CKPT_MAGIC "CSPRTRN1"

typedef struct ckpt_entry {
    char key[MODEL_KEY_MAX + 16];
    float *data;
    long numel;
} ckpt_entry;

/* Lists the entries of tr; returns the count (entries may be NULL to count). */
static int list_entries(cspresnet_trainer *tr, ckpt_entry *e)
{
    const cspresnet_model *m = cspresnet_trainer_model(tr);
    float *om, *ov, *head;
    long hf, *step;
    trainer_state_arrays(tr, &om, &ov, &head, &hf, &step);
    int n = 0;
    for (int pass = 0; pass < 3; pass++) {
        const char *prefix = pass == 0 ? "" : (pass == 1 ? "optim.m." : "optim.v.");
        float *base = pass == 0 ? m->weights : (pass == 1 ? om : ov);
        if (!base)
            continue;
        for (size_t i = 0; i < m->n_params; i++) {
            if (pass > 0 && !m->params[i].trainable)
                continue;
            if (e) {
                snprintf(e[n].key, sizeof e[n].key, "%s%s", prefix, m->params[i].key);
                e[n].data = base + m->params[i].offset;
                e[n].numel = m->params[i].numel;
            }
            n++;
        }
        if (hf > 0) {
            int classes, channels;
            float *bias;
            cspresnet_trainer_head(tr, &classes, &channels, &bias);
            long wf = (long)classes * channels;
            float *hb = pass == 0 ? head : head + (pass + 1) * hf;
            if (e) {
                snprintf(e[n].key, sizeof e[n].key, "%shead.weight", prefix);
                e[n].data = hb;
                e[n].numel = wf;
                snprintf(e[n + 1].key, sizeof e[n + 1].key, "%shead.bias", prefix);
                e[n + 1].data = hb + wf;
                e[n + 1].numel = classes;
            }
            n += 2;
        }
    }
    return n;
}

cspresnet_status cspresnet_trainer_save(cspresnet_trainer *tr, const char *path)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    error_buf *err = trainer_error(tr);
    if (!path)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "checkpoint path must not be NULL");
    int count = list_entries(tr, NULL);
    ckpt_entry *e = calloc((size_t)count, sizeof *e);
    if (!e)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory writing %s", path);
    list_entries(tr, e);
    float *om, *ov, *head;
    long hf, *step;
    trainer_state_arrays(tr, &om, &ov, &head, &hf, &step);
    atomic_file f;
    cspresnet_status s = atomic_file_open(&f, path, err);
    if (s == CSPRESNET_OK) {
        int64_t st = *step;
        int32_t cnt = count;
        s = atomic_file_write(&f, CKPT_MAGIC, 8, err);
        if (s == CSPRESNET_OK)
            s = atomic_file_write(&f, &st, sizeof st, err);
        if (s == CSPRESNET_OK)
            s = atomic_file_write(&f, &cnt, sizeof cnt, err);
        for (int i = 0; i < count && s == CSPRESNET_OK; i++) {
            uint32_t kl = (uint32_t)strlen(e[i].key);
            int64_t ne = e[i].numel;
            s = atomic_file_write(&f, &kl, sizeof kl, err);
            if (s == CSPRESNET_OK)
                s = atomic_file_write(&f, e[i].key, kl, err);
            if (s == CSPRESNET_OK)
                s = atomic_file_write(&f, &ne, sizeof ne, err);
            if (s == CSPRESNET_OK)
                s = atomic_file_write(&f, e[i].data, (size_t)ne * sizeof(float), err);
        }
        if (s == CSPRESNET_OK)
            s = atomic_file_commit(&f, err);
        else
            atomic_file_abort(&f);
    }
    free(e);
    return s;
}

cspresnet_status cspresnet_trainer_load(cspresnet_trainer *tr, const char *path)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    error_buf *err = trainer_error(tr);
    FILE *fp = path ? fopen(path, "rb") : NULL;
    if (!fp)
        return error_set(err, CSPRESNET_ERR_IO, "cannot open checkpoint %s", path ? path : "(null)");
    int count = list_entries(tr, NULL);
    ckpt_entry *e = calloc((size_t)count, sizeof *e);
    float **tmp = calloc((size_t)count, sizeof *tmp);
    cspresnet_status s = CSPRESNET_OK;
    if (!e || !tmp)
        s = error_set(err, CSPRESNET_ERR_MEMORY, "out of memory reading %s", path);
    char magic[8];
    int64_t st = 0;
    int32_t cnt = 0;
    if (s == CSPRESNET_OK) {
        list_entries(tr, e);
        if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, CKPT_MAGIC, 8) != 0 ||
            fread(&st, sizeof st, 1, fp) != 1 || fread(&cnt, sizeof cnt, 1, fp) != 1)
            s = error_set(err, CSPRESNET_ERR_FORMAT, "%s: not a cspresnet training checkpoint", path);
        else if (cnt != count || st < 0)
            s = error_set(err, CSPRESNET_ERR_WEIGHTS,
                          "%s: holds %d tensors, this trainer has %d (another architecture, head or optimizer?)",
                          path, (int)cnt, count);
    }
    for (int i = 0; i < count && s == CSPRESNET_OK; i++) {
        uint32_t kl = 0;
        int64_t ne = 0;
        char key[sizeof e[i].key];
        long at = ftell(fp);
        if (fread(&kl, sizeof kl, 1, fp) != 1 || kl >= sizeof key || fread(key, 1, kl, fp) != kl ||
            fread(&ne, sizeof ne, 1, fp) != 1) {
            s = error_set(err, CSPRESNET_ERR_FORMAT, "%s: truncated entry %d at offset %ld", path, i, at);
            break;
        }
        key[kl] = '\0';
        if (strcmp(key, e[i].key) != 0 || ne != e[i].numel) {
            s = error_set(err, CSPRESNET_ERR_WEIGHTS, "%s: entry %d is %s (%lld floats), expected %s (%ld floats)",
                          path, i, key, (long long)ne, e[i].key, e[i].numel);
            break;
        }
        tmp[i] = malloc((size_t)ne * sizeof(float) + 1);
        if (!tmp[i] || fread(tmp[i], sizeof(float), (size_t)ne, fp) != (size_t)ne)
            s = error_set(err, tmp[i] ? CSPRESNET_ERR_FORMAT : CSPRESNET_ERR_MEMORY,
                          "%s: cannot read the data of %s", path, key);
    }
    fclose(fp);
    if (s == CSPRESNET_OK) {
        float *om, *ov, *head;
        long hf, *step;
        trainer_state_arrays(tr, &om, &ov, &head, &hf, &step);
        for (int i = 0; i < count; i++)
            memcpy(e[i].data, tmp[i], (size_t)e[i].numel * sizeof(float));
        *step = st;
    }
    for (int i = 0; tmp && i < count; i++)
        free(tmp[i]);
    free(tmp);
    free(e);
    return s;
}
