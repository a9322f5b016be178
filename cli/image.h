/*
 * image.h - the CLI's optional image module: JPEG/PNG in (libjpeg-turbo, libpng),
 * PNG out (libpng, written atomically), the heat-map visualisation and the list of
 * inputs a command was given. None of this is in libcspresnet: the core library needs
 * only libc, libm and pthreads; resize and pre-processing are in the library
 * (src/preprocess/) because they are pure C.
 */
#ifndef CSPRESNET_CLI_IMAGE_H
#define CSPRESNET_CLI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "cspresnet.h"

#define IMAGE_MAX_SIDE 32768
#define IMAGE_MAX_PIXELS (1u << 28)

/* 8-bit RGB, interleaved, h rows of w*3 bytes. */
typedef struct image_rgb {
    int h, w;
    uint8_t *data;
    int orientation; /* the file's EXIF orientation (1-8), already applied by image_read */
} image_rgb;

/* Decodes a JPEG or PNG file (told apart by content) into RGB the way upstream's
 * cv2.imread(path, IMREAD_COLOR) + BGR->RGB does: gray is replicated, alpha and tRNS
 * transparency dropped (not composited), palettes expanded, 16-bit samples keep their
 * high byte. A JPEG that libjpeg decodes only with corrupt-data warnings is refused. The EXIF orientation (JPEG
 * APP1 "Exif", PNG eXIf) is applied as cv2 applies it: the result is upright, h and w
 * swapped for orientations 5-8. Returns 0, or -1 with a message in err. */
int image_read(const char *path, image_rgb *out, char *err, size_t err_size);
/* The same from a file's bytes already in memory (a stream read once); path names it. */
int image_decode(const char *path, const uint8_t *data, size_t size, image_rgb *out, char *err, size_t err_size);
void image_free(image_rgb *img);

/* 1 if name ends with .jpg, .jpeg or .png (any case). */
int image_has_image_suffix(const char *name);

/* Writes an 8-bit RGB PNG through a temporary file renamed into place. 0 or -1. */
int png_write_rgb(const char *path, const uint8_t *rgb, int h, int w, char *err, size_t err_size);

/* The panel picture of one image: [input | stage a | stage b | ...] side by side, each
 * panel h x w (the network input size), under a label strip of VIS_LABEL_H rows
 * ("input HxW", "stage i  stride s  c ch"). A stage panel is 0.5 * input + 0.5 *
 * heat(t), t = per-stage min-max normalised channel-wise L2 norm of the feature map
 * at (y / stride, x / stride) (nearest), heat(t) = (clamp(3t), clamp(3t-1), clamp(3t-2))
 * * 255 (black, red, yellow, white), rounded to nearest. `rgb` is the resized input
 * (h x w x 3); outs[r] holds image `index` of the batch. */
#define VIS_LABEL_H 20
int visualize_write(const char *path, const uint8_t *rgb, int h, int w,
                    const cspresnet_output *outs, int n_out, int index, char *err, size_t err_size);

/* Draws text with the built-in 5x7 font (font5x7.c) at an integer scale, top-left at
 * (x, y), clipped to the canvas and to columns before x_end. */
void font_draw(uint8_t *rgb, int h, int w, int x, int y, int x_end, int scale, const char *text,
               const uint8_t color[3]);
int font_text_width(const char *text, int scale);

/* The inputs of a command: files, directories (their .jpg, .jpeg and .png files, sorted) and
 * list files (.txt, .lst, .list: one path per line, '#' comments; relative paths are taken
 * from the list file's folder). */
typedef struct input_list {
    char **paths;
    size_t count, cap;
    const uint8_t *first_data; /* paths[0]'s bytes when already read (a stream), else NULL */
    size_t first_size;
} input_list;
/* Adds one argument; 0, or -1 with a message (an unreadable or empty folder or list file). */
int input_list_add(input_list *l, const char *arg, char *err, size_t err_size);
void input_list_free(input_list *l);


/* Runs images through a context in batches: decode, resize (--size, or --letterbox),
 * pre-process, forward; writes <out_dir>/<image stem>/stage{i}.npy (1 x C x h x w) per
 * image, and the --visualize picture. An image that fails to decode is reported on
 * stderr and skipped; the others go on. (infer_images.c) */
typedef struct image_job {
    const char *out_dir;
    const char *visualize;     /* NULL, or a .png path (one input) / file name (several) */
    int visualize_in_folders;  /* 1: always <out_dir>/<image name>/<file name of visualize> */
    int save_input;            /* 1: also <out_dir>/<image name>/input.npy, the 1 x 3 x H x W tensor */
    int height, width;         /* network input size */
    int letterbox;             /* keep the ratio (PaddleDetection LetterBoxResize geometry) */
    cspresnet_preprocess pre;
    int batch;                 /* images per forward */
    int quiet, verbose;
    const char *cmd;           /* "infer", "demo": prefix of messages */
    unsigned char *written;    /* NULL, or one flag per input: set to 1 once all its files are written */
} image_job;
typedef struct image_job_result {
    size_t done, failed;
    double forward_seconds;    /* time spent in cspresnet_forward */
} image_job_result;
/* One forward's worth of images (image_batch.c): decoded, resized to height x width
 * (bicubic, or letterbox when the job says so), pre-processed with the job's preset. */
typedef struct image_batch {
    int cap, n, height, width;
    float *tensor;       /* cap x 3 x height x width; slots 0 .. n-1 filled */
    uint8_t *resized;    /* cap x height x width x 3: what the network saw, as pixels */
    size_t *input;       /* input index of each slot */
    int (*orig)[2];      /* h, w of each slot's decoded image (before the resize) */
    image_rgb *decoded;  /* NULL, or each slot's decoded image (image_batch_init keep_decoded) */
} image_batch;
struct progress;
/* 0, or -1 out of memory (b then empty). */
int image_batch_init(image_batch *b, int cap, int height, int width, int keep_decoded);
void image_batch_free(image_batch *b);
/* Fills b with the next images from inputs->paths[*next] on, until cap are in or the
 * inputs end; *next moves past every input tried. An image that cannot be read or
 * resized is reported (job->cmd prefix, the bar cleared first) and counted in *failed.
 * Returns b->n (0 only when the inputs ran out). */
int image_batch_fill(image_batch *b, const input_list *inputs, const image_job *job, size_t *next,
                     const struct progress *bar, size_t *failed);
/* "cspresnet CMD: msg" on stderr, after clearing the progress line when one is drawn. */
void image_job_report(const struct progress *bar, const char *cmd, const char *msg);

/* 0 when every image was done, 1 when some failed, -1 on a fatal error (message printed). */
int infer_images(cspresnet_context *ctx, const input_list *inputs, const image_job *job,
                 image_job_result *result);
/* The folder name of input `index` under out_dir: its file name without the extension,
 * "-2", "-3", ... added when an earlier input has the same one. */
void infer_images_folder_name(const input_list *inputs, size_t index, char *out, size_t n);

#endif
