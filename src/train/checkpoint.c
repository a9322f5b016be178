/*
 * checkpoint.c - one file with everything a resumed run needs, written atomically.
 *
 * Layout (little-endian): "CSPRTRN1" | int64 step | int32 count | count entries of
 * { uint32 key length, key bytes, int64 numel, numel float32 }. Entries: every model
 * tensor by its upstream key (running statistics included), "head.weight",
 * "head.bias", and the optimizer state "optim.m.<key>" / "optim.v.<key>" (v for AdamW
 * only; "optim.m.head.weight" ...). Loading matches every key and element count
 * before touching the trainer, and names the first mismatch. A state holding a NaN or
 * an infinity (a diverged run) is never written, so a checkpoint on disk stays the last
 * finite one.
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

/* Calls visit(ctx, prefix, key, data, numel) for every entry of tr, in file order, until
 * it returns non-zero; returns the number of entries visited. */
typedef int (*entry_visitor)(void *ctx, const char *prefix, const char *key, float *data, long numel);

static int for_each_entry(cspresnet_trainer *tr, entry_visitor visit, void *ctx)
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
            n++;
            if (visit(ctx, prefix, m->params[i].key, param_at(base, &m->params[i]), m->params[i].numel))
                return n;
        }
        if (hf > 0) {
            int classes, channels;
            float *bias;
            cspresnet_trainer_head(tr, &classes, &channels, &bias);
            long wf = (long)classes * channels;
            float *hb = pass == 0 ? head : head + (pass + 1) * hf;
            n++;
            if (visit(ctx, prefix, "head.weight", hb, wf))
                return n;
            n++;
            if (visit(ctx, prefix, "head.bias", hb + wf, classes))
                return n;
        }
    }
    return n;
}

static int count_entry(void *ctx, const char *prefix, const char *key, float *data, long numel)
{
    (void)ctx, (void)prefix, (void)key, (void)data, (void)numel;
    return 0;
}

static int store_entry(void *ctx, const char *prefix, const char *key, float *data, long numel)
{
    ckpt_entry **next = ctx;
    snprintf((*next)->key, sizeof (*next)->key, "%s%s", prefix, key);
    (*next)->data = data;
    (*next)->numel = numel;
    ++*next;
    return 0;
}

/* Lists the entries of tr; returns the count (entries may be NULL to count). */
static int list_entries(cspresnet_trainer *tr, ckpt_entry *e)
{
    return e ? for_each_entry(tr, store_entry, &e) : for_each_entry(tr, count_entry, NULL);
}

typedef struct nonfinite_search {
    char *key;
    size_t key_size;
    int found;
} nonfinite_search;

static int check_entry(void *ctx, const char *prefix, const char *key, float *data, long numel)
{
    /* v * 0 is 0 for every finite v and NaN for NaN or an infinity; the sum stays 0
     * exactly when all are finite, and the loop has no branch to stop vectorising it */
    float acc = 0.0f;
    for (long i = 0; i < numel; i++)
        acc += data[i] * 0.0f;
    if (acc == 0.0f)
        return 0;
    nonfinite_search *s = ctx;
    snprintf(s->key, s->key_size, "%s%s", prefix, key);
    s->found = 1;
    return 1;
}

int trainer_find_nonfinite(cspresnet_trainer *tr, char *key, size_t key_size)
{
    nonfinite_search s = {key, key_size, 0};
    for_each_entry(tr, check_entry, &s);
    return s.found;
}

cspresnet_status cspresnet_trainer_save(cspresnet_trainer *tr, const char *path)
{
    if (!tr)
        return CSPRESNET_ERR_ARGUMENT;
    error_buf *err = trainer_error(tr);
    if (!path)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "checkpoint path must not be NULL");
    char bad[MODEL_KEY_MAX + 16];
    if (trainer_find_nonfinite(tr, bad, sizeof bad)) /* a diverged run: keep the file already there */
        return error_set(err, CSPRESNET_ERR_NOT_FINITE, "%s not written: %s holds a NaN or an infinity", path,
                         bad);
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
