/*
 * detect_images.c - `cspresnet detect` on images: upstream's eval pre-processing
 * (decode as cv2.imread, resize to --size without keeping the ratio with INTER_CUBIC,
 * the preset; image_batch.c), scale_factor = (size_h / h, size_w / w) per image, one
 * detector pass per batch, and the results as PaddleDetection's json_results writes
 * them: DIR/detections.json [{"image_id", "category_id", "bbox": [x, y, w, h],
 * "score"}] and DIR/images.json [{"id", "file_name", ...}], both written atomically at
 * the end; --visualize pictures as each image is done.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "progress.h"

/* ppdet's COCO label -> category id map (80 contiguous labels -> ids 1..90). */
static const int COCO_IDS[80] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                                 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
                                 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};

int detect_category_id(int label, int classes)
{
    return classes == 80 && label >= 0 && label < 80 ? COCO_IDS[label] : label + 1;
}

/* printf into an atomic file; a failed write is reported by the commit. */
static void put(cspresnet_atomic_file *f, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        cspresnet_atomic_file_write(f, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, NULL, 0);
}

/* s as a JSON string: quotes, backslash and control bytes escaped; other bytes as they are. */
static void put_string(cspresnet_atomic_file *f, const char *s)
{
    cspresnet_atomic_file_write(f, "\"", 1, NULL, 0);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            put(f, "\\%c", c);
        else if (c < 0x20)
            put(f, "\\u%04x", c);
        else
            cspresnet_atomic_file_write(f, p, 1, NULL, 0);
    }
    cspresnet_atomic_file_write(f, "\"", 1, NULL, 0);
}

typedef struct run {
    const detect_opts *o;
    const input_list *images;
    cspresnet_atomic_file *dets, *index;
    size_t done, failed, rows;
    detect_labels labels;
    progress bar;
} run;

/* Image b of the batch: its json rows and images.json entry, the picture, its line. */
static int image_done(run *r, image_batch *batch, const detect_out *d, size_t first_row, int b)
{
    const size_t id = batch->input[b];
    const char *path = r->images->paths[id], *base = strrchr(path, '/');
    const float *rows = d->rows + 6 * first_row;
    for (int k = 0; k < d->bbox_num[b]; k++, r->rows++) {
        const float *v = rows + 6 * k;
        put(r->dets, "%s\n{\"image_id\": %zu, \"category_id\": %d, \"bbox\": [%.9g, %.9g, %.9g, %.9g], "
                     "\"score\": %.9g}", r->rows ? "," : "", id, detect_category_id((int)v[0], d->classes),
            (double)v[2], (double)v[3], (double)v[4] - (double)v[2], (double)v[5] - (double)v[3], (double)v[1]);
    }
    put(r->index, "%s\n{\"id\": %zu, \"file_name\": ", r->done ? "," : "", id);
    put_string(r->index, base ? base + 1 : path);
    put(r->index, ", \"path\": ");
    put_string(r->index, path);
    put(r->index, ", \"height\": %d, \"width\": %d}", batch->orig[b][0], batch->orig[b][1]);
    char pic[4600] = "", name[512], err[1024];
    if (r->o->visualize) {
        image_rgb *img = &batch->decoded[b];
        infer_images_folder_name(r->images, id, name, sizeof name);
        snprintf(pic, sizeof pic, "%s/%s.png", r->o->out_dir, name);
        detect_draw(img->data, img->h, img->w, rows, d->bbox_num[b], r->o->draw_threshold, &r->labels);
        if (png_write_rgb(pic, img->data, img->h, img->w, err, sizeof err) != 0) {
            image_job_report(&r->bar, "detect", err);
            return -1;
        }
    }
    r->done++;
    if (!r->o->cf.quiet && (!r->bar.enabled || r->o->cf.verbose)) {
        if (r->bar.enabled)
            fputs("\r\033[K", stderr);
        printf("%s -> %d detections (image_id %zu)%s%s\n", path, d->bbox_num[b], id, pic[0] ? ", picture " : "",
               pic);
        fflush(stdout);
    }
    return 0;
}

/* One batch: scale factors, the pass, every image's outputs. 0, or -1 reported. */
static int batch_done(run *r, cspresnet_context *ctx, image_batch *batch, const cspresnet_nms_options *nms)
{
    const int H = batch->height, W = batch->width;
    float scale[2 * 4096];
    char err[1024], msg[2200];
    for (int b = 0; b < batch->n; b++) {
        scale[2 * b] = (float)((double)H / batch->orig[b][0]);
        scale[2 * b + 1] = (float)((double)W / batch->orig[b][1]);
    }
    detect_out d;
    int bad;
    if (detect_pass(ctx, batch->tensor, batch->n, H, W, scale, nms, &d, &bad, err, sizeof err) != 0) {
        if (bad >= 0)
            snprintf(msg, sizeof msg, "%s: %s", r->images->paths[batch->input[bad]], err);
        else
            snprintf(msg, sizeof msg, "%s", err);
        image_job_report(&r->bar, "detect", msg);
        return -1;
    }
    int rc = 0;
    for (int b = 0, first = 0; b < batch->n && rc == 0; first += d.bbox_num[b], b++)
        rc = image_done(r, batch, &d, (size_t)first, b);
    detect_out_free(&d);
    return rc;
}

/* Opens DIR/name atomically with "[" written; NULL after a message. */
static cspresnet_atomic_file *open_json(const char *dir, const char *name)
{
    char path[4200], err[1024];
    cspresnet_atomic_file *f = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (cspresnet_atomic_file_open(path, &f, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        return NULL;
    }
    put(f, "[");
    return f;
}

/* The images in batches, then both json files committed (aborted after a fatal error). */
static int run_images(run *r, cspresnet_context *ctx, image_batch *batch)
{
    cspresnet_nms_options nms;
    detect_nms_options(r->o, &nms);
    int fatal = 0;
    progress_init(&r->bar, r->images->count, "images", r->o->cf.quiet);
    for (size_t next = 0; next < r->images->count && !fatal;) {
        if (image_batch_fill(batch, r->images, &r->o->job, &next, &r->bar, &r->failed) > 0)
            fatal = batch_done(r, ctx, batch, &nms) != 0;
        progress_update(&r->bar, r->done + r->failed);
    }
    progress_finish(&r->bar);
    char err[1024];
    cspresnet_atomic_file *files[2] = {r->dets, r->index};
    r->dets = r->index = NULL;
    for (int k = 0; k < 2; k++) {
        if (fatal) {
            cspresnet_atomic_file_abort(files[k]);
            continue;
        }
        put(files[k], "\n]\n");
        if (cspresnet_atomic_file_commit(files[k], err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet detect: %s\n", err);
            fatal = 1;
        }
    }
    if (fatal)
        return 1;
    if (!r->o->cf.quiet)
        printf("%zu of %zu images done (bicubic resize, %dx%d, preprocess %s), %zu failed: %zu detections in "
               "%s/detections.json\n", r->done, r->images->count, batch->height, batch->width,
               cspresnet_preprocess_name(r->o->job.pre), r->failed, r->rows, r->o->out_dir);
    if (r->failed && r->images->count > 1)
        fprintf(stderr, "cspresnet detect: %zu of %zu images failed (see above)\n", r->failed, r->images->count);
    return r->failed ? 1 : 0;
}

int detect_images(const detect_opts *o, const cspresnet_model *model)
{
    char err[1024];
    input_list images = {0};
    cspresnet_context *ctx = NULL;
    image_batch batch = {0};
    run r = {.o = o, .images = &images};
    int rc = 1;
    for (int k = 0; k < o->n_inputs; k++)
        if (input_list_add(&images, o->inputs[k], err, sizeof err) != 0) {
            fprintf(stderr, "cspresnet detect: %s\n", err);
            goto done;
        }
    if (o->visualize && detect_labels_load(o->labels, &r.labels, err, sizeof err) != 0) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        goto done;
    }
    if (detect_context(o, model, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet detect: %s\n", err);
        goto done;
    }
    if (image_batch_init(&batch, o->job.batch, o->job.height, o->job.width, o->visualize) != 0) {
        fprintf(stderr, "cspresnet detect: out of memory for a batch of %d x 3 x %d x %d\n", o->job.batch,
                o->job.height, o->job.width);
        goto done;
    }
    if (cli_make_dir(o->out_dir) != 0) {
        fprintf(stderr, "cspresnet detect: cannot create output folder %s: %s\n", o->out_dir, strerror(errno));
        goto done;
    }
    if (!(r.dets = open_json(o->out_dir, "detections.json")) || !(r.index = open_json(o->out_dir, "images.json")))
        goto done;
    rc = run_images(&r, ctx, &batch);
done:
    cspresnet_atomic_file_abort(r.dets);
    cspresnet_atomic_file_abort(r.index);
    detect_labels_free(&r.labels);
    image_batch_free(&batch);
    cspresnet_context_free(ctx);
    input_list_free(&images);
    return rc;
}
