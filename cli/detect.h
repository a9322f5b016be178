/*
 * detect.h - the pieces of `cspresnet detect` (cmd_detect.c: flags, the .npy tensor
 * mode; detect_images.c: images and COCO results; detect_draw.c: the pictures).
 * One pass = the library's detector forward, boxes divided by the scale factors,
 * a finiteness check per image, then cspresnet_multiclass_nms.
 */
#ifndef CSPRESNET_CLI_DETECT_H
#define CSPRESNET_CLI_DETECT_H

#include "cli.h"
#include "image.h"

typedef struct detect_opts {
    common_flags cf;
    const char *weights, *out_dir;
    const char *scale;          /* --scale-factor: "sy,sx" or an .npy [N, 2]; NULL: 1, 1 */
    int isa;                    /* --isa: index into DETECT_ISA_NAMES, -1: CSPRESNET_ISA or the best */
    double score_threshold, nms_threshold;
    int nms_top_k, keep_top_k;
    image_job job;              /* --size, --preprocess, --batch */
    int deploy;                 /* --deploy: run the deployed (fused) detector */
    int visualize;              /* --visualize: DIR/<image name>.png */
    double draw_threshold;      /* --draw-threshold */
    const char *labels;         /* --labels FILE: class names, one a line */
    const char **inputs;        /* images, folders, list files, or one .npy */
    int n_inputs;
} detect_opts;

/* What one pass gives for n images. */
typedef struct detect_out {
    int n, anchors, classes;
    float *boxes;         /* n x anchors x 4 (x1, y1, x2, y2) / (sx, sy, sx, sy); malloc'd */
    const float *scores;  /* n x classes x anchors after the sigmoid: the context's */
    float *rows;          /* n_rows x 6 (label, score, x1, y1, x2, y2), all images in order */
    size_t n_rows;
    int *bbox_num;        /* n: rows per image */
} detect_out;

/* Forward of x (n x 3 x h x w) on ctx, boxes divided by scale (n x 2: sy, sx per image),
 * NMS with opt. 0; -1 with a message in err (*bad_image, when not NULL, set to the
 * batch index of an image whose boxes or scores are not finite, else -1). */
int detect_pass(cspresnet_context *ctx, const float *x, int n, int h, int w, const float *scale,
                const cspresnet_nms_options *opt, detect_out *out, int *bad_image, char *err, size_t err_size);
void detect_out_free(detect_out *o);

/* The NMS options of the flags. */
void detect_nms_options(const detect_opts *o, cspresnet_nms_options *opt);
/* A context on model with --threads and --isa (else CSPRESNET_ISA). */
cspresnet_status detect_context(const detect_opts *o, const cspresnet_model *model, cspresnet_context **ctx,
                                char *err, size_t err_size);

/* Image mode (detect_images.c): DIR/detections.json, DIR/images.json, the pictures.
 * Returns the exit status. */
int detect_images(const detect_opts *o, const cspresnet_model *model);

/* COCO category id of label for a model of `classes` classes: the COCO 80 -> 91 map
 * when classes is 80, else label + 1. */
int detect_category_id(int label, int classes);

/* The class names for pictures: --labels FILE (one a line) or COCO's 80 (detect_draw.c).
 * names[k] for k < count; a label past count is drawn as its number. */
typedef struct detect_labels {
    char **names;
    int count;
    char *text;           /* the file's bytes that names point into; NULL for COCO */
} detect_labels;
int detect_labels_load(const char *path, detect_labels *out, char *err, size_t err_size);
void detect_labels_free(detect_labels *l);
/* Draws the rows of one image (label, score, x1, y1, x2, y2 in rgb's pixels) with
 * score >= threshold on rgb (h x w x 3): boxes 2 px wide in per-class colours, labels
 * "name score" in the 5x7 font above each box (inside when there is no room). */
void detect_draw(uint8_t *rgb, int h, int w, const float *rows, int n_rows, double threshold,
                 const detect_labels *labels);

#endif
