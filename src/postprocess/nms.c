/*
 * nms.c - Paddle's multiclass_nms3 (CPU kernel) for PP-YOLOE's decoded boxes, in plain C.
 *
 * boxes [n, L, 4] (x1, y1, x2, y2), scores [n, C, L] -> rows [M, 6] (label, score, x1, y1,
 * x2, y2) of every image in order, and bbox_num [n]. Per image, per class c != background:
 * candidates are the anchors whose score is > score_threshold (a NaN never is), sorted by
 * score descending with ties in anchor order (Paddle's stable_sort), cut to nms_top_k;
 * greedy NMS keeps a candidate while its IoU with every box kept for c is <= nms_threshold
 * (normalized IoU in float32 in Paddle's operation order; a NaN IoU suppresses). When the
 * image keeps more than keep_top_k, all kept are sorted by score descending (ties in
 * label-then-selection order), truncated, and regrouped by ascending label, each label's
 * rows in selection order. No -1 row is written for an empty image (bbox_num says 0).
 *
 * Bounded for any input: per image at most C x min(L, nms_top_k) candidates and
 * C x nms_top_k^2 / 2 IoUs; one workspace of O(L + C x min(L, nms_top_k)) per call,
 * allocated here (post-processing, not a kernel), checked for overflow.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

void cspresnet_nms_options_init(cspresnet_nms_options *o)
{
    if (!o)
        return;
    o->score_threshold = 0.01f;
    o->nms_top_k = 1000;
    o->keep_top_k = 300;
    o->nms_threshold = 0.7f;
    o->background_label = -1;
}

/* A candidate: its score and anchor, and for the keep_top_k sort, its label and its
 * position in label-then-selection order. */
typedef struct nms_item {
    float score;
    int anchor;
    int label;
    long order;
} nms_item;

/* Descending score, then ascending anchor: with distinct anchors a total order, so
 * qsort gives what Paddle's stable_sort on (score, anchor) pairs gives. */
static int by_score_then_anchor(const void *pa, const void *pb)
{
    const nms_item *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->anchor > b->anchor) - (a->anchor < b->anchor);
}

static int by_score_then_order(const void *pa, const void *pb)
{
    const nms_item *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

static int by_label_then_order(const void *pa, const void *pb)
{
    const nms_item *a = pa, *b = pb;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

static float box_area(const float *b)
{
    if (b[2] < b[0] || b[3] < b[1])
        return 0.0f;
    return (b[2] - b[0]) * (b[3] - b[1]);
}

/* std::max and std::min as Paddle's kernel calls them: with a NaN they return their
 * first argument unless the comparison picks the second (max(NaN, b) is NaN, max(a, NaN)
 * is a), which decides the IoU of boxes holding NaN. */
static float std_max(float a, float b) { return a < b ? b : a; }
static float std_min(float a, float b) { return b < a ? b : a; }

/* Paddle's JaccardOverlap with normalized = true. */
static float jaccard(const float *b1, const float *b2)
{
    if (b2[0] > b1[2] || b2[2] < b1[0] || b2[1] > b1[3] || b2[3] < b1[1])
        return 0.0f;
    float ix0 = std_max(b1[0], b2[0]);
    float iy0 = std_max(b1[1], b2[1]);
    float ix1 = std_min(b1[2], b2[2]);
    float iy1 = std_min(b1[3], b2[3]);
    float inter = (ix1 - ix0) * (iy1 - iy0);
    return inter / (box_area(b1) + box_area(b2) - inter);
}

/* Greedy NMS of one class of one image: cand[0..n_cand) sorted, kept appended to keep. */
static int nms_class(const float *boxes, const nms_item *cand, int n_cand, float thr, nms_item *keep)
{
    int n_keep = 0;
    for (int i = 0; i < n_cand; i++) {
        const float *bi = boxes + (size_t)cand[i].anchor * 4;
        int ok = 1;
        for (int j = 0; j < n_keep && ok; j++)
            ok = jaccard(bi, boxes + (size_t)keep[j].anchor * 4) <= thr;
        if (ok)
            keep[n_keep++] = cand[i];
    }
    return n_keep;
}

size_t cspresnet_nms_max_rows(const cspresnet_nms_options *o, int n, int classes, int anchors)
{
    if (!o || n <= 0 || classes <= 0 || anchors <= 0)
        return 0;
    size_t per_class = (size_t)anchors;
    if (o->nms_top_k > -1 && (size_t)o->nms_top_k < per_class)
        per_class = (size_t)o->nms_top_k;
    size_t per_image = per_class * (size_t)classes;
    if (o->keep_top_k > -1 && (size_t)o->keep_top_k < per_image)
        per_image = (size_t)o->keep_top_k;
    return per_image * (size_t)n;
}

static cspresnet_status check_args(const float *boxes, const float *scores, int n, int classes, int anchors,
                                   const cspresnet_nms_options *o, const float *rows, const int *bbox_num,
                                   const size_t *n_rows, error_buf *e)
{
    if (!boxes || !scores || !o || !rows || !bbox_num || !n_rows)
        return error_set(e, CSPRESNET_ERR_ARGUMENT, "cspresnet_multiclass_nms: NULL argument");
    if (n <= 0 || classes <= 0 || anchors <= 0)
        return error_set(e, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_multiclass_nms: n = %d, classes = %d, anchors = %d must be positive", n, classes,
                         anchors);
    if (o->nms_top_k < -1 || o->keep_top_k < -1)
        return error_set(e, CSPRESNET_ERR_ARGUMENT,
                         "cspresnet_multiclass_nms: nms_top_k = %d, keep_top_k = %d (-1 means no limit)",
                         o->nms_top_k, o->keep_top_k);
    if (o->score_threshold != o->score_threshold || o->nms_threshold != o->nms_threshold)
        return error_set(e, CSPRESNET_ERR_ARGUMENT, "cspresnet_multiclass_nms: a threshold is NaN");
    if ((size_t)classes > SIZE_MAX / sizeof(nms_item) / (size_t)anchors)
        return error_set(e, CSPRESNET_ERR_ARGUMENT, "cspresnet_multiclass_nms: %d classes x %d anchors overflow",
                         classes, anchors);
    return CSPRESNET_OK;
}

cspresnet_status cspresnet_multiclass_nms(const float *boxes, const float *scores, int n, int classes, int anchors,
                                          const cspresnet_nms_options *o, float *rows, size_t capacity,
                                          int *bbox_num, size_t *n_rows, char *err, size_t err_size)
{
    error_buf e = {{0}};
    cspresnet_status s = check_args(boxes, scores, n, classes, anchors, o, rows, bbox_num, n_rows, &e);
    nms_item *cand = NULL, *kept = NULL;
    if (s != CSPRESNET_OK)
        goto done;
    *n_rows = 0;
    if (capacity < cspresnet_nms_max_rows(o, n, classes, anchors)) {
        s = error_set(&e, CSPRESNET_ERR_ARGUMENT, "cspresnet_multiclass_nms: room for %zu rows, %zu may be needed",
                      capacity, cspresnet_nms_max_rows(o, n, classes, anchors));
        goto done;
    }
    size_t per_class = (size_t)anchors;
    if (o->nms_top_k > -1 && (size_t)o->nms_top_k < per_class)
        per_class = (size_t)o->nms_top_k;
    cand = malloc((size_t)anchors * sizeof *cand);
    kept = malloc(per_class * (size_t)classes * sizeof *kept);
    if (!cand || !kept) {
        s = error_set(&e, CSPRESNET_ERR_MEMORY, "cspresnet_multiclass_nms: out of memory for %d x %d candidates",
                      classes, anchors);
        goto done;
    }
    size_t out = 0;
    for (int b = 0; b < n; b++) {
        const float *bx = boxes + (size_t)b * anchors * 4;
        size_t n_kept = 0;
        for (int c = 0; c < classes; c++) {
            if (c == o->background_label)
                continue;
            const float *sc = scores + ((size_t)b * classes + c) * anchors;
            int n_cand = 0;
            for (int i = 0; i < anchors; i++)
                if (sc[i] > o->score_threshold)
                    cand[n_cand++] = (nms_item){sc[i], i, c, 0};
            qsort(cand, (size_t)n_cand, sizeof *cand, by_score_then_anchor);
            if ((size_t)n_cand > per_class)
                n_cand = (int)per_class;
            int k = nms_class(bx, cand, n_cand, o->nms_threshold, kept + n_kept);
            for (int j = 0; j < k; j++)
                kept[n_kept + j].order = (long)(n_kept + j);
            n_kept += (size_t)k;
        }
        if (o->keep_top_k > -1 && n_kept > (size_t)o->keep_top_k) {
            qsort(kept, n_kept, sizeof *kept, by_score_then_order);
            n_kept = (size_t)o->keep_top_k;
            qsort(kept, n_kept, sizeof *kept, by_label_then_order);
        }
        for (size_t j = 0; j < n_kept; j++, out++) {
            float *r = rows + out * 6;
            r[0] = (float)kept[j].label;
            r[1] = kept[j].score;
            memcpy(r + 2, bx + (size_t)kept[j].anchor * 4, 4 * sizeof(float));
        }
        bbox_num[b] = (int)n_kept;
    }
    *n_rows = out;
done:
    free(cand);
    free(kept);
    return error_finish(&e, s, err, err_size);
}
