/*
 * nms_driver.c - runs cspresnet_multiclass_nms on .npy files for tests/test_nms.py:
 *   nms_driver BOXES.npy SCORES.npy SCORE_THR NMS_TOP_K KEEP_TOP_K NMS_THR BACKGROUND OUT_DIR
 * BOXES [n, L, 4], SCORES [n, C, L] -> OUT_DIR/rows.npy [M, 6] and OUT_DIR/bbox_num.npy [n]
 * (float32 counts). Exit 1 with the library's message on failure.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cspresnet.h"
#include "io/npy.h"

int main(int argc, char **argv)
{
    if (argc != 9) {
        fprintf(stderr, "usage: nms_driver BOXES.npy SCORES.npy SCORE_THR NMS_TOP_K KEEP_TOP_K NMS_THR BG OUT_DIR\n");
        return 2;
    }
    error_buf e = {{0}};
    npy_array b = {0}, s = {0};
    if (npy_read(argv[1], &b, &e) != CSPRESNET_OK || npy_read(argv[2], &s, &e) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", e.text);
        return 1;
    }
    if (b.ndim != 3 || b.shape[2] != 4 || s.ndim != 3 || s.shape[0] != b.shape[0] || s.shape[2] != b.shape[1]) {
        fprintf(stderr, "boxes must be [n, L, 4] and scores [n, C, L]\n");
        return 1;
    }
    cspresnet_nms_options o;
    cspresnet_nms_options_init(&o);
    o.score_threshold = strtof(argv[3], NULL);
    o.nms_top_k = atoi(argv[4]);
    o.keep_top_k = atoi(argv[5]);
    o.nms_threshold = strtof(argv[6], NULL);
    o.background_label = atoi(argv[7]);
    int n = (int)b.shape[0], c = (int)s.shape[1], l = (int)b.shape[1];
    size_t cap = cspresnet_nms_max_rows(&o, n, c, l);
    float *rows = malloc((cap ? cap : 1) * 6 * sizeof(float));
    int *num = malloc((size_t)n * sizeof(int));
    float *numf = malloc((size_t)n * sizeof(float));
    size_t m = 0;
    char err[512];
    if (!rows || !num || !numf ||
        cspresnet_multiclass_nms(b.data, s.data, n, c, l, &o, rows, cap, num, &m, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", rows && num && numf ? err : "out of memory");
        return 1;
    }
    for (int i = 0; i < n; i++)
        numf[i] = (float)num[i];
    char path[4096];
    int64_t rshape[2] = {(int64_t)m, 6}, nshape[1] = {n};
    snprintf(path, sizeof path, "%s/rows.npy", argv[8]);
    if (npy_write(path, rows, 2, rshape, &e) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", e.text);
        return 1;
    }
    snprintf(path, sizeof path, "%s/bbox_num.npy", argv[8]);
    if (npy_write(path, numf, 1, nshape, &e) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", e.text);
        return 1;
    }
    free(rows);
    free(num);
    free(numf);
    npy_array_free(&b);
    npy_array_free(&s);
    return 0;
}
