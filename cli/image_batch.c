/*
 * image_batch.c - the batches of the image workflows (infer, demo, detect): images
 * decoded (image_read.c), resized to the network size with cv2's INTER_CUBIC or
 * letterbox (library, src/preprocess/) and pre-processed into one N x 3 x H x W
 * tensor. A file that fails is reported and counted; the batch goes on without it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "progress.h"

void image_job_report(const struct progress *bar, const char *cmd, const char *msg)
{
    if (bar && bar->enabled)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "cspresnet %s: %s\n", cmd, msg);
}

int image_batch_init(image_batch *b, int cap, int h, int w, int keep_decoded)
{
    size_t plane = (size_t)h * w;
    memset(b, 0, sizeof *b);
    b->cap = cap < 1 ? 1 : cap;
    b->height = h;
    b->width = w;
    b->tensor = malloc(sizeof(float) * 3 * plane * b->cap);
    b->resized = malloc(3 * plane * b->cap);
    b->input = malloc(sizeof *b->input * b->cap);
    b->orig = malloc(sizeof *b->orig * b->cap);
    b->decoded = keep_decoded ? calloc((size_t)b->cap, sizeof *b->decoded) : NULL;
    if (!b->tensor || !b->resized || !b->input || !b->orig || (keep_decoded && !b->decoded)) {
        image_batch_free(b);
        return -1;
    }
    return 0;
}

static void drop_decoded(image_batch *b)
{
    for (int k = 0; b->decoded && k < b->cap; k++)
        image_free(&b->decoded[k]);
}

void image_batch_free(image_batch *b)
{
    drop_decoded(b);
    free(b->tensor), free(b->resized), free(b->input), free(b->orig), free(b->decoded);
    memset(b, 0, sizeof *b);
}

/* Decodes, resizes and pre-processes input k into slot b->n; 0, or -1 reported. */
static int fill_slot(image_batch *b, const input_list *inputs, const image_job *job, size_t k,
                     const struct progress *bar)
{
    const int H = b->height, W = b->width;
    size_t plane = (size_t)H * W;
    char err[1024], msg[1200];
    image_rgb img;
    const char *path = inputs->paths[k];
    int bad = k == 0 && inputs->first_data
                  ? image_decode(path, inputs->first_data, inputs->first_size, &img, err, sizeof err)
                  : image_read(path, &img, err, sizeof err);
    if (bad != 0) {
        snprintf(msg, sizeof msg, "%s (skipped)", err);
        image_job_report(bar, job->cmd, msg);
        return -1;
    }
    uint8_t *dst = b->resized + 3 * plane * b->n;
    cspresnet_status st = job->letterbox ? cspresnet_letterbox_u8(img.data, img.h, img.w, dst, H, W, NULL, err, sizeof err)
                                         : cspresnet_resize_cubic_u8(img.data, img.h, img.w, 3, dst, H, W, err, sizeof err);
    if (st != CSPRESNET_OK) {
        image_free(&img);
        snprintf(msg, sizeof msg, "%s: %s (skipped)", path, err);
        image_job_report(bar, job->cmd, msg);
        return -1;
    }
    cspresnet_image_to_tensor(dst, H, W, job->pre, b->tensor + 3 * plane * b->n);
    b->input[b->n] = k;
    b->orig[b->n][0] = img.h;
    b->orig[b->n][1] = img.w;
    if (b->decoded)
        b->decoded[b->n] = img;
    else
        image_free(&img);
    b->n++;
    return 0;
}

int image_batch_fill(image_batch *b, const input_list *inputs, const image_job *job, size_t *next,
                     const struct progress *bar, size_t *failed)
{
    drop_decoded(b);
    b->n = 0;
    for (; *next < inputs->count && b->n < b->cap; ++*next)
        if (fill_slot(b, inputs, job, *next, bar) != 0)
            ++*failed;
    return b->n;
}
