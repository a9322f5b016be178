/*
 * infer_images.c - the image workflow of `infer` and `demo`: a list of JPEG/PNG files
 * through the backbone in batches. Per image: decode (image_read.c), resize to the
 * network size with cv2's INTER_CUBIC or letterbox (library, src/preprocess/), apply
 * the pre-processing preset, forward, then write <out>/<stem>/stage{i}.npy and the
 * optional visualisation. A file that fails is reported and skipped; the rest go on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "image.h"
#include "cspresnet_io.h"
#include "progress.h"

/* Output folder name of an image: its file name without the extension, made unique
 * among the earlier images of the run by "-2", "-3", ... */
void infer_images_folder_name(const input_list *inputs, size_t index, char *out, size_t n)
{
    char stems[2][512];
    const char *paths[2];
    int dup = 1;
    for (size_t k = 0; k <= index; k++) {
        paths[0] = inputs->paths[k];
        paths[1] = inputs->paths[index];
        for (int j = 0; j < 2; j++) {
            const char *base = strrchr(paths[j], '/');
            base = base ? base + 1 : paths[j];
            snprintf(stems[j], sizeof stems[j], "%s", base);
            char *dot = strrchr(stems[j], '.');
            if (dot && dot != stems[j])
                *dot = '\0';
        }
        if (k < index && strcmp(stems[0], stems[1]) == 0)
            dup++;
    }
    if (dup > 1)
        snprintf(out, n, "%s-%d", stems[1], dup);
    else
        snprintf(out, n, "%s", stems[1]);
}

static void report(progress *bar, const char *cmd, const char *msg)
{
    if (bar->enabled)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "cspresnet %s: %s\n", cmd, msg);
}

/* One image of a forward's batch: its input index, slot, tensor and resized pixels. */
typedef struct batch_slot {
    size_t input;
    int b;
    const float *tensor;
    const uint8_t *rgb;
} batch_slot;

/* DIR/<image name>/: stage{i}.npy, input.npy with --save-input, the --visualize picture,
 * then its line on stdout. 0, or -1 after reporting a write that failed. */
static int write_outputs(const image_job *job, const input_list *inputs, const batch_slot *slot,
                         const cspresnet_output *outs, int n_out, progress *bar)
{
    const int H = job->height, W = job->width, b = slot->b;
    char name[512], dir[4096], path[4200], vis[4400], err[1024];
    infer_images_folder_name(inputs, slot->input, name, sizeof name);
    snprintf(dir, sizeof dir, "%s/%s", job->out_dir, name);
    if (cli_make_dir(dir) != 0) {
        snprintf(err, sizeof err, "cannot create output folder %s: %s", dir, strerror(errno));
        report(bar, job->cmd, err);
        return -1;
    }
    for (int r = 0; r < n_out; r++) {
        const cspresnet_output *o = &outs[r];
        int64_t shape[4] = {1, o->c, o->h, o->w};
        snprintf(path, sizeof path, "%s/stage%d.npy", dir, o->stage);
        if (cspresnet_npy_write(path, o->data + (size_t)b * o->c * o->h * o->w, 4, shape, err, sizeof err) !=
            CSPRESNET_OK) {
            report(bar, job->cmd, err);
            return -1;
        }
    }
    if (job->save_input) {
        int64_t shape[4] = {1, 3, H, W};
        snprintf(path, sizeof path, "%s/input.npy", dir);
        if (cspresnet_npy_write(path, slot->tensor, 4, shape, err, sizeof err) != CSPRESNET_OK) {
            report(bar, job->cmd, err);
            return -1;
        }
    }
    vis[0] = '\0';
    if (job->visualize) {
        if (inputs->count == 1 && !job->visualize_in_folders) {
            snprintf(vis, sizeof vis, "%s", job->visualize);
        } else {
            const char *base = strrchr(job->visualize, '/');
            snprintf(vis, sizeof vis, "%s/%s", dir, base ? base + 1 : job->visualize);
        }
        if (visualize_write(vis, slot->rgb, H, W, outs, n_out, b, err, sizeof err) != 0) {
            report(bar, job->cmd, err);
            return -1;
        }
    }
    if (!job->quiet && (!bar->enabled || job->verbose)) {
        if (bar->enabled)
            fputs("\r\033[K", stderr);
        printf("%s -> %s/ (", inputs->paths[slot->input], dir);
        for (int r = 0; r < n_out; r++)
            printf("%sstage%d.npy [1, %d, %d, %d]", r ? ", " : "", outs[r].stage, outs[r].c, outs[r].h, outs[r].w);
        printf(")%s%s\n", vis[0] ? ", picture " : "", vis);
        fflush(stdout);
    }
    return 0;
}

int infer_images(cspresnet_context *ctx, const input_list *inputs, const image_job *job,
                 image_job_result *result)
{
    const int H = job->height, W = job->width, B = job->batch < 1 ? 1 : job->batch;
    size_t plane = (size_t)H * W;
    float *tensor = malloc(sizeof(float) * 3 * plane * B);
    uint8_t *resized = malloc(3 * plane * B);
    size_t *which = malloc(sizeof(size_t) * B); /* input index of each batch slot */
    char err[1024];
    int fatal = 0;
    memset(result, 0, sizeof *result);
    if (!tensor || !resized || !which) {
        fprintf(stderr, "cspresnet %s: out of memory for a batch of %d x 3 x %d x %d\n", job->cmd, B, H, W);
        free(tensor), free(resized), free(which);
        return -1;
    }
    if (cli_make_dir(job->out_dir) != 0) {
        fprintf(stderr, "cspresnet %s: cannot create output folder %s: %s\n", job->cmd, job->out_dir,
                strerror(errno));
        free(tensor), free(resized), free(which);
        return -1;
    }
    progress bar;
    progress_init(&bar, inputs->count, "images", job->quiet);
    for (size_t next = 0; next < inputs->count && !fatal;) {
        int n = 0;
        for (; next < inputs->count && n < B; next++) {
            image_rgb img;
            const char *path = inputs->paths[next];
            int bad = next == 0 && inputs->first_data
                          ? image_decode(path, inputs->first_data, inputs->first_size, &img, err, sizeof err)
                          : image_read(path, &img, err, sizeof err);
            if (bad != 0) {
                char msg[1200];
                snprintf(msg, sizeof msg, "%s (skipped)", err);
                report(&bar, job->cmd, msg);
                result->failed++;
                continue;
            }
            uint8_t *dst = resized + 3 * plane * n;
            cspresnet_status st = job->letterbox
                                      ? cspresnet_letterbox_u8(img.data, img.h, img.w, dst, H, W, NULL, err, sizeof err)
                                      : cspresnet_resize_cubic_u8(img.data, img.h, img.w, 3, dst, H, W, err, sizeof err);
            image_free(&img);
            if (st != CSPRESNET_OK) {
                char msg[1200];
                snprintf(msg, sizeof msg, "%s: %s (skipped)", path, err);
                report(&bar, job->cmd, msg);
                result->failed++;
                continue;
            }
            cspresnet_image_to_tensor(dst, H, W, job->pre, tensor + 3 * plane * n);
            which[n++] = next;
        }
        if (n == 0) {
            progress_update(&bar, result->done + result->failed);
            continue;
        }
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out = 0;
        double t0 = now_seconds();
        if (cspresnet_forward(ctx, tensor, n, 3, H, W, outs, &n_out) != CSPRESNET_OK) {
            report(&bar, job->cmd, cspresnet_context_last_error(ctx));
            fatal = 1;
            break;
        }
        result->forward_seconds += now_seconds() - t0;
        for (int b = 0; b < n && !fatal; b++) {
            const batch_slot slot = {which[b], b, tensor + 3 * plane * b, resized + 3 * plane * b};
            fatal = write_outputs(job, inputs, &slot, outs, n_out, &bar) != 0;
            if (fatal)
                break;
            result->done++;
            if (job->written)
                job->written[slot.input] = 1;
        }
        progress_update(&bar, result->done + result->failed);
    }
    progress_finish(&bar);
    free(tensor), free(resized), free(which);
    if (fatal)
        return -1;
    return result->failed ? 1 : 0;
}
