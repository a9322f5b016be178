/*
 * detect.c - a short program using libcspresnet's detector API: a PP-YOLOE / PP-YOLOE+
 * checkpoint (argv[1]; without one, PP-YOLOE-s with seeded random weights, whose
 * detections mean nothing), an input batch (argv[2], float32 .npy N x 3 x H x W; without
 * one, a seeded 1 x 3 x 320 x 320 batch in [0, 1)), the detector forward (boxes and
 * scores), multiclass NMS with PP-YOLOE+'s defaults, and the rows of each image.
 *
 *   cc detect.c $(pkg-config --cflags --libs cspresnet) -o detect
 *   ./detect [detector.pdparams [batch.npy]]
 *
 * Boxes are in input pixels (x1, y1, x2, y2); a program that resized its images divides
 * them by the scale factors (input size / original size) as `cspresnet detect` does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cspresnet.h>
#include <cspresnet_io.h>

#define RANDOM_SIZE 320

/* The checkpoint, or a random PP-YOLOE-s whose BN statistics come from x (so that its
 * maps keep unit scale on this input: random weights otherwise drift). */
static cspresnet_status open_model(const char *path, const cspresnet_array *x, cspresnet_model **model, char *err,
                                   size_t err_size)
{
    if (path)
        return cspresnet_model_load_detector(path, NULL, model, err, err_size);
    cspresnet_detector_config cfg;
    cspresnet_detector_config_preset("s", &cfg);
    cspresnet_status s = cspresnet_detector_create(&cfg, 42, model, err, err_size);
    if (s == CSPRESNET_OK)
        s = cspresnet_model_calibrate_bn(*model, x->data, (int)x->shape[0], (int)x->shape[2], (int)x->shape[3], err,
                                         err_size);
    return s;
}

static cspresnet_status open_input(const char *path, cspresnet_array *x, char *err, size_t err_size)
{
    if (path) {
        cspresnet_status s = cspresnet_npy_read(path, x, err, err_size);
        if (s == CSPRESNET_OK && (x->ndim != 4 || x->shape[1] != 3)) {
            snprintf(err, err_size, "%s: expected float32 N x 3 x H x W", path);
            cspresnet_array_free(x);
            return CSPRESNET_ERR_SHAPE;
        }
        return s;
    }
    x->ndim = 4;
    x->shape[0] = 1, x->shape[1] = 3, x->shape[2] = RANDOM_SIZE, x->shape[3] = RANDOM_SIZE;
    x->numel = 3L * RANDOM_SIZE * RANDOM_SIZE;
    if (!(x->data = malloc(sizeof(float) * (size_t)x->numel)))
        return CSPRESNET_ERR_MEMORY;
    uint32_t state = 1;
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 1664525u + 1013904223u;
        x->data[i] = (float)(state >> 8) / 16777216.0f;
    }
    return CSPRESNET_OK;
}

int main(int argc, char **argv)
{
    char err[1024] = "";
    cspresnet_array x = {0};
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    float *rows = NULL;
    int *bbox_num = NULL, rc = 1;
    if (open_input(argc > 2 ? argv[2] : NULL, &x, err, sizeof err) != CSPRESNET_OK ||
        open_model(argc > 1 ? argv[1] : NULL, &x, &model, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_context_create(model, 0, &ctx, err, sizeof err) != CSPRESNET_OK)
        goto done;
    const int n = (int)x.shape[0], h = (int)x.shape[2], w = (int)x.shape[3];
    const float *boxes, *scores;   /* [n, anchors, 4] and [n, classes, anchors], the context's */
    int anchors, classes;
    if (cspresnet_detector_forward(ctx, x.data, n, h, w, &boxes, &scores, &anchors, &classes) != CSPRESNET_OK) {
        snprintf(err, sizeof err, "%s", cspresnet_context_last_error(ctx));
        goto done;
    }
    cspresnet_nms_options nms;
    cspresnet_nms_options_init(&nms);   /* score > 0.01, 1000 per class, IoU 0.7, 300 per image */
    size_t cap = cspresnet_nms_max_rows(&nms, n, classes, anchors), n_rows = 0;
    rows = malloc(sizeof(float) * 6 * (cap ? cap : 1));
    bbox_num = malloc(sizeof(int) * (size_t)n);
    if (!rows || !bbox_num) {
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    if (cspresnet_multiclass_nms(boxes, scores, n, classes, anchors, &nms, rows, cap, bbox_num, &n_rows, err,
                                 sizeof err) != CSPRESNET_OK)
        goto done;
    printf("detector: %d classes, input %dx3x%dx%d, %d anchors, %zu detections\n", classes, n, h, w, anchors, n_rows);
    const float *r = rows;
    for (int b = 0; b < n; b++) {
        printf("image %d: %d detections\n", b, bbox_num[b]);
        for (int i = 0; i < bbox_num[b]; i++, r += 6)
            printf("  label %d score %.5f box %.3f %.3f %.3f %.3f\n", (int)r[0], r[1], r[2], r[3], r[4], r[5]);
    }
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "detect: %s\n", err);
    free(rows);
    free(bbox_num);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    cspresnet_array_free(&x);
    return rc;
}
