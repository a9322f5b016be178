/*
 * detector_infer_driver.c - runs detector_infer_config (src/model/detector_infer.h) on a
 * key list for tests/test_detector_infer.py:
 *
 *   detector_infer_driver KEYS.txt [C3,C4,C5] [--list]
 *
 * KEYS.txt: one entry per line, "key ndim d0 d1 ...". C3,C4,C5: the backbone channels
 * the neck must take (default: read from the neck). On success prints one line
 *   neck_out=o0,o1,o2 backbone_out=c3,c4,c5 blocks=n spp=0|1 classes=C reg_max=R
 *   attn=convbn|repvgg|none deployed=0|1
 * and with --list then "PARAM key d0,d1,..." for every parameter the configuration
 * implies, in order; exit 0. On failure the library's message on stderr, exit 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/detector_infer.h"

#define MAX_DIMS 8

typedef struct key_file {
    det_key *keys;
    char **names;
    int64_t (*shapes)[MAX_DIMS];
    size_t count, cap;
} key_file;

static int read_keys(const char *path, key_file *kf)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char name[512];
        int ndim, off;
        if (sscanf(line, "%511s %d%n", name, &ndim, &off) != 2 || ndim < 0 || ndim > MAX_DIMS)
            continue;
        if (kf->count == kf->cap) {
            kf->cap = kf->cap ? 2 * kf->cap : 256;
            kf->keys = realloc(kf->keys, kf->cap * sizeof *kf->keys);
            kf->names = realloc(kf->names, kf->cap * sizeof *kf->names);
            kf->shapes = realloc(kf->shapes, kf->cap * sizeof *kf->shapes);
            if (!kf->keys || !kf->names || !kf->shapes)
                exit(3);
        }
        size_t i = kf->count++;
        kf->keys[i].ndim = ndim;
        const char *p = line + off;
        for (int d = 0; d < ndim; d++) {
            long long v;
            int used;
            if (sscanf(p, "%lld%n", &v, &used) != 1)
                v = -1, used = 0;
            kf->shapes[i][d] = v;
            p += used;
        }
        kf->names[i] = strdup(name);
    }
    fclose(f);
    for (size_t i = 0; i < kf->count; i++) {
        kf->keys[i].key = kf->names[i];
        kf->keys[i].shape = kf->shapes[i];
    }
    return 0;
}

static void print_param(void *ctx, const char *key, int ndim, const int64_t *shape)
{
    (void)ctx;
    printf("PARAM %s ", key);
    for (int d = 0; d < ndim; d++)
        printf("%s%lld", d ? "," : "", (long long)shape[d]);
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: detector_infer_driver KEYS.txt [C3,C4,C5] [--list]\n");
        return 2;
    }
    key_file kf = {0};
    if (read_keys(argv[1], &kf) != 0) {
        perror(argv[1]);
        return 2;
    }
    int list = 0, bo[3], have_bo = 0;
    for (int a = 2; a < argc; a++) {
        if (!strcmp(argv[a], "--list"))
            list = 1;
        else if (sscanf(argv[a], "%d,%d,%d", &bo[0], &bo[1], &bo[2]) == 3)
            have_bo = 1;
    }
    detector_config cfg;
    error_buf err = {{0}};
    if (detector_infer_config(kf.keys, kf.count, have_bo ? bo : NULL, argv[1], &cfg, &err) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", err.text);
        return 1;
    }
    static const char *const attn[] = {"convbn", "repvgg", "none"};
    printf("neck_out=%d,%d,%d backbone_out=%d,%d,%d blocks=%d spp=%d classes=%d reg_max=%d attn=%s deployed=%d\n",
           cfg.neck_out[0], cfg.neck_out[1], cfg.neck_out[2], cfg.backbone_out[0], cfg.backbone_out[1],
           cfg.backbone_out[2], cfg.neck_blocks, cfg.spp, cfg.num_classes, cfg.reg_max, attn[cfg.attn_conv],
           cfg.deployed);
    if (list)
        detector_visit_params(&cfg, print_param, NULL);
    for (size_t i = 0; i < kf.count; i++)
        free(kf.names[i]);
    free(kf.names);
    free(kf.keys);
    free(kf.shapes);
    return 0;
}
