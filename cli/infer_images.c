/*
 * infer_images.c - the image workflow of `infer` and `demo`: a list of JPEG/PNG files
 * through the backbone in batches (image_batch.c: decode, resize, pre-process). Per
 * image: forward, then write <out>/<stem>/stage{i}.npy and the
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
        image_job_report(bar, job->cmd, err);
        return -1;
    }
    for (int r = 0; r < n_out; r++) {
        const cspresnet_output *o = &outs[r];
        int64_t shape[4] = {1, o->c, o->h, o->w};
        snprintf(path, sizeof path, "%s/stage%d.npy", dir, o->stage);
        if (cspresnet_npy_write(path, o->data + (size_t)b * o->c * o->h * o->w, 4, shape, err, sizeof err) !=
            CSPRESNET_OK) {
            image_job_report(bar, job->cmd, err);
            return -1;
        }
    }
    if (job->save_input) {
        int64_t shape[4] = {1, 3, H, W};
        snprintf(path, sizeof path, "%s/input.npy", dir);
        if (cspresnet_npy_write(path, slot->tensor, 4, shape, err, sizeof err) != CSPRESNET_OK) {
            image_job_report(bar, job->cmd, err);
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
            image_job_report(bar, job->cmd, err);
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
    const int H = job->height, W = job->width;
    size_t plane = (size_t)H * W;
    image_batch batch;
    int fatal = 0;
    memset(result, 0, sizeof *result);
    if (image_batch_init(&batch, job->batch, H, W, 0) != 0) {
        fprintf(stderr, "cspresnet %s: out of memory for a batch of %d x 3 x %d x %d\n", job->cmd, job->batch, H, W);
        return -1;
    }
    if (cli_make_dir(job->out_dir) != 0) {
        fprintf(stderr, "cspresnet %s: cannot create output folder %s: %s\n", job->cmd, job->out_dir,
                strerror(errno));
        image_batch_free(&batch);
        return -1;
    }
    progress bar;
    progress_init(&bar, inputs->count, "images", job->quiet);
    for (size_t next = 0; next < inputs->count && !fatal;) {
        int n = image_batch_fill(&batch, inputs, job, &next, &bar, &result->failed);
        if (n == 0) {
            progress_update(&bar, result->done + result->failed);
            continue;
        }
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out = 0;
        double t0 = now_seconds();
        if (cspresnet_forward(ctx, batch.tensor, n, 3, H, W, outs, &n_out) != CSPRESNET_OK) {
            image_job_report(&bar, job->cmd, cspresnet_context_last_error(ctx));
            fatal = 1;
            break;
        }
        result->forward_seconds += now_seconds() - t0;
        for (int b = 0; b < n && !fatal; b++) {
            const batch_slot slot = {batch.input[b], b, batch.tensor + 3 * plane * b, batch.resized + 3 * plane * b};
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
    image_batch_free(&batch);
    if (fatal)
        return -1;
    return result->failed ? 1 : 0;
}
