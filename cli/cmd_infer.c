/*
 * cmd_infer.c - `cspresnet infer`: weights + inputs in, one .npy per returned stage
 * out. Inputs are an .npy batch (N x 3 x H x W, used as given), or JPEG/PNG images,
 * folders of them and list files, which go through infer_images.c (decode, resize,
 * pre-process, batches, one output folder per image, optional --visualize picture).
 * The architecture comes from the weight file; architecture flags, when given, are
 * checks that the file must pass.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/stream_read.h"
#include "image.h"
#include "io/npy.h"
#include "io/pdparams.h"

/* A seeded input in [0, 1), like an image scaled by 1/255. */
static int random_input(npy_array *x, const int size[4])
{
    x->ndim = 4;
    x->numel = 1;
    for (int d = 0; d < 4; d++) {
        x->shape[d] = size[d];
        x->numel *= size[d];
    }
    x->data = malloc((size_t)x->numel * sizeof(float));
    if (!x->data)
        return -1;
    uint32_t state = 12345u;
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 1664525u + 1013904223u;
        x->data[i] = (float)(state >> 8) / 16777216.0f;
    }
    return 0;
}

static void help(void)
{
    printf("usage: cspresnet infer --weights FILE --out DIR INPUT... [options]\n"
           "       cspresnet infer --arch P --out DIR (INPUT... | --random-input)   (random weights, a try-out)\n"
           "\n"
           "INPUT is a JPEG or PNG image, a folder (its .jpg/.jpeg/.png files, sorted), a list file\n"
           "(.txt/.lst/.list, one path per line; relative paths are taken from the list file's\n"
           "folder) or one .npy batch (float32 N x 3 x H x W, used as\n"
           "is). Inputs may also be given with --input. Each image is decoded (gray, RGB, RGBA,\n"
           "palette, 16-bit; as cv2.imread with IMREAD_COLOR sees it), resized to --size with\n"
           "bicubic interpolation (bit-exact with cv2.INTER_CUBIC, upstream's eval transform) and\n"
           "pre-processed, then DIR/<image name>/stage{i}.npy (1 x C x H/stride x W/stride) is\n"
           "written for each i in --return-idx. An .npy input gives DIR/stage{i}.npy instead.\n"
           "An image that cannot be read is reported and skipped; the exit status is then 1.\n"
           "\n"
           "  --random-input     no INPUT: a seeded random batch in [0, 1) of --input-size N,3,H,W\n"
           "                     (default 1,3,640,640), written as DIR/stage{i}.npy\n"
           "  --size H,W | N     network input size for images (default 640,640); N is N,N\n"
           "  --letterbox        keep the aspect ratio, centre on grey (PaddleDetection's\n"
           "                     LetterBoxResize geometry) instead of stretching\n"
           "  --preprocess P     ppyoloe+ (RGB/255; default, PP-YOLOE+), ppyoloe or imagenet\n"
           "                     (RGB/255 then ImageNet mean/std: PP-YOLOE legacy, CSPResNetb_*),\n"
           "                     none (0..255)\n"
           "  --batch N          images per forward pass (default 1)\n"
           "  --save-input       also write DIR/<image name>/input.npy: the 1 x 3 x H x W tensor the\n"
           "                     network got (after resize and pre-processing)\n"
           "  --visualize OUT.png  a picture per image: the input and, per returned stage, a heat\n"
           "                     map of the channel-wise L2 norm, labelled stage/stride/channels.\n"
           "                     One image: written to OUT.png; several: DIR/<image name>/OUT.png\n"
           "  --act A            activation the model was trained with (default swish; relu for the\n"
           "                     t-relu variants); the file cannot tell\n"
           "  --return-idx       stages to write (default 1,2,3 as the detectors use; 0,1,2,3 for P2)\n"
           "  --deploy           run the fused network (BN folded, RepVGG branches merged, as upstream's\n"
           "                     convert_to_deploy); same outputs within float rounding, fewer FLOPs\n"
           "  --arch, --large-stem, --small-stem, --alpha, --no-alpha\n"
           "                     optional checks: an error if the file's architecture differs.\n"
           "                     --alpha on a file without alpha uses alpha = 1.0, as upstream does\n"
           "                     when PP-YOLOE+ starts from an ImageNet backbone.\n"
           "  --threads N        worker threads (default and most: the online CPUs)\n"
           "  -q, --quiet        print nothing on success;  -v, --verbose  a line per image even\n"
           "                     with the progress bar (shown on a terminal; NO_COLOR respected)\n"
           "  --version, --help\n"
           "\n"
           "Without --weights, an architecture flag (--arch, --width-mult, ...) builds a model with\n"
           "seeded random weights; with --random-input as well, the tool can be tried before one has\n"
           "weight files or images. An input (or --random-input) is always required.\n"
           "Exit status: 0 success, 1 failure (or some images failed), 2 usage error.\n");
}

static int is_npy(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npy") == 0;
}

/* A pipe, FIFO or device (/dev/stdin): it can be read only once, so what it holds (an
 * .npy batch or an image) is told from its bytes after reading it, not from its name. */
static int is_stream(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode);
}

static int has_npy_magic(const uint8_t *head, size_t n)
{
    return n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0;
}

/* A regular file that starts with the .npy magic whatever its name (/dev/stdin
 * redirected from an .npy file): peeking is safe, it is opened again to be read. */
static int regular_npy(const char *path)
{
    struct stat sb;
    uint8_t head[6];
    FILE *f = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? fopen(path, "rb") : NULL;
    if (!f)
        return 0;
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    return has_npy_magic(head, got);
}

/* Neither an .npy nor a JPEG or PNG: read no further, the image decoder names it. */
static int no_known_input(const uint8_t *head, size_t n)
{
    return !has_npy_magic(head, n) && !(n >= 3 && head[0] == 0xff && head[1] == 0xd8) &&
           !(n >= 4 && memcmp(head, "\x89PNG", 4) == 0);
}

/* Warns (stderr) when the batch holds NaN or Inf: every output would be NaN then. */
static void warn_non_finite(const char *name, const npy_array *x)
{
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < x->numel; i++)
        if (!isfinite(x->data[i]) && bad++ == 0)
            first = i;
    if (bad)
        fprintf(stderr,
                "cspresnet infer: warning: %s holds %lld non-finite value%s (NaN or Inf; the first at flat "
                "index %lld): the outputs they reach will be NaN\n",
                name, (long long)bad, bad > 1 ? "s" : "", (long long)first);
}

static int infer_run(const arch_flags *fp, const common_flags *cf, const char *weights, int deploy,
                     const char *input_path, const int input_size[4], const char *out_dir, const char **image_args,
                     int n_inputs, int stream_input, image_job *job);

int cmd_infer(int argc, char **argv)
{
    arch_flags f;
    arch_flags_init(&f);
    common_flags cf;
    common_flags_init(&cf);
    const char *weights = NULL, *input_path = NULL, *out_dir = NULL;
    int deploy = 0, random = 0, input_size_given = 0;
    int input_size[4] = {1, 3, 640, 640};
    image_job job = {.height = 640, .width = 640, .pre = CSPRESNET_PRE_PPYOLOE_PLUS, .batch = 1, .cmd = "infer"};
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int n_inputs = 0, rc = EXIT_USAGE;
    if (!inputs) {
        fprintf(stderr, "cspresnet infer: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        int r = arch_flags_parse(&f, argc, argv, &i, "infer");
        if (r == 0)
            r = common_flags_parse(&cf, argc, argv, &i, "infer");
        if (r < 0)
            goto usage;
        if (r > 0)
            continue;
        const char *a = argv[i], *v;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            free(inputs);
            return 0;
        } else if (strcmp(a, "--weights") == 0) {
            if (!(weights = flag_value(argc, argv, &i, "infer")))
                goto usage;
        } else if (strcmp(a, "--input") == 0) {
            if (!(v = flag_value(argc, argv, &i, "infer")))
                goto usage;
            inputs[n_inputs++] = v;
        } else if (strcmp(a, "--out") == 0) {
            if (!(out_dir = flag_value(argc, argv, &i, "infer")))
                goto usage;
        } else if (strcmp(a, "--input-size") == 0) {
            v = flag_value(argc, argv, &i, "infer");
            if (!v || parse_int_list(v, input_size, 4) != 4 || input_size[0] < 1 || input_size[1] != 3 ||
                input_size[2] < 1 || input_size[3] < 1 || input_size[0] > 4096 || input_size[2] > 16384 ||
                input_size[3] > 16384) {
                fprintf(stderr, "cspresnet infer: --input-size must be N,3,H,W with N in 1..4096, H and W in 1..16384\n");
                goto usage;
            }
            input_size_given = 1;
        } else if (strcmp(a, "--random-input") == 0) {
            random = 1;
        } else if (strcmp(a, "--size") == 0) {
            int hw[2];
            v = flag_value(argc, argv, &i, "infer");
            if (!v || parse_size(v, hw, 16384) != 0) {
                fprintf(stderr, "cspresnet infer: --size must be H,W or N (for N,N) with H, W, N in 1..16384 "
                                "(for example 640,640 or 640)\n");
                goto usage;
            }
            job.height = hw[0];
            job.width = hw[1];
        } else if (strcmp(a, "--save-input") == 0) {
            job.save_input = 1;
        } else if (strcmp(a, "--letterbox") == 0) {
            job.letterbox = 1;
        } else if (strcmp(a, "--preprocess") == 0) {
            v = flag_value(argc, argv, &i, "infer");
            if (!v || cspresnet_preprocess_parse(v, &job.pre) != CSPRESNET_OK) {
                fprintf(stderr, "cspresnet infer: --preprocess must be ppyoloe+, ppyoloe, imagenet or none\n");
                goto usage;
            }
        } else if (strcmp(a, "--batch") == 0) {
            v = flag_value(argc, argv, &i, "infer");
            if (!v || parse_int_list(v, &job.batch, 1) != 1 || job.batch < 1 || job.batch > 4096) {
                fprintf(stderr, "cspresnet infer: --batch needs a count in 1..4096\n");
                goto usage;
            }
        } else if (strcmp(a, "--visualize") == 0) {
            if (!(job.visualize = flag_value(argc, argv, &i, "infer")))
                goto usage;
        } else if (strcmp(a, "--deploy") == 0) {
            deploy = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cspresnet infer: unknown option '%s' (see cspresnet infer --help)\n", a);
            goto usage;
        } else {
            inputs[n_inputs++] = a;
        }
    }
    if (!out_dir || (!weights && !arch_flags_fix_architecture(&f))) {
        fprintf(stderr, "cspresnet infer: --weights, --out and inputs are required, or --arch, --out and inputs "
                        "(or --random-input) for a try-out with random weights (see cspresnet infer --help)\n");
        goto usage;
    }
    if (n_inputs == 0 && !random) {
        fprintf(stderr, "cspresnet infer: no input: give images, folders, list files or an .npy batch, or "
                        "--random-input for a seeded random batch of --input-size\n");
        goto usage;
    }
    if (n_inputs > 0 && random) {
        fprintf(stderr, "cspresnet infer: give inputs or --random-input, not both\n");
        goto usage;
    }
    if (input_size_given && !random) {
        fprintf(stderr, "cspresnet infer: --input-size is the shape of --random-input; inputs have their own\n");
        goto usage;
    }
    for (int k = 0; k < n_inputs; k++)
        if (is_npy(inputs[k]) || (n_inputs == 1 && regular_npy(inputs[k]))) {
            if (n_inputs != 1 || job.visualize) {
                fprintf(stderr, "cspresnet infer: an .npy input is a whole batch: give it alone, without "
                                "--visualize (which needs images)\n");
                goto usage;
            }
            input_path = inputs[k];
        }
    if (job.visualize && n_inputs == 0) {
        fprintf(stderr, "cspresnet infer: --visualize needs image inputs\n");
        goto usage;
    }
    int stream_input = n_inputs == 1 && !input_path && is_stream(inputs[0]);
    rc = infer_run(&f, &cf, weights, deploy, input_path, input_size, out_dir, n_inputs && !input_path ? inputs : NULL,
                   n_inputs, stream_input, &job);
usage:
    free(inputs);
    return rc;
}

/* Loads the model, then runs the .npy batch or the images. */
static int infer_run(const arch_flags *fp, const common_flags *cf, const char *weights, int deploy,
                     const char *input_path, const int input_size[4], const char *out_dir, const char **image_args,
                     int n_inputs, int stream_input, image_job *job)
{
    arch_flags f = *fp;
    int threads = cf->threads, quiet = cf->quiet;
    cspresnet_load_options opt;
    cspresnet_config expect;
    if (arch_flags_load_options(&f, &opt, &expect, "infer") != 0)
        return EXIT_USAGE;
    char log[512] = "", err[1024];
    opt.log = log;
    opt.log_size = sizeof log;

    int rc = 1;
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    npy_array x = {0};
    error_buf e;
    uint8_t *stream = NULL; /* a stream input's bytes */
    size_t stream_size = 0;
    if (weights) {
        if (cli_load_weights(weights, &opt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        if (!quiet && log[0])
            fprintf(stderr, "%s\n", log);
    } else {
        if (cspresnet_model_create(&expect, 1, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            goto done;
        }
        if (!quiet)
            fprintf(stderr, "note: no --weights given: using seeded random weights (outputs are not meaningful)\n");
    }
    if (deploy && cli_deploy(&model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        goto done;
    }
    if (stream_input) {
        FILE *sf = fopen(image_args[0], "rb");
        if (!sf) {
            fprintf(stderr, "cspresnet infer: %s: cannot open: %s\n", image_args[0], strerror(errno));
            goto done;
        }
        cspresnet_status st = stream_read_all(sf, image_args[0], PDPARAMS_MAX_FILE_BYTES, no_known_input, &stream,
                                              &stream_size, &e);
        fclose(sf);
        if (st != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", e.text);
            goto done;
        }
        if (has_npy_magic(stream, stream_size)) {
            if (npy_read_memory(stream, stream_size, image_args[0], &x, &e) != CSPRESNET_OK) {
                fprintf(stderr, "cspresnet infer: %s\n", e.text);
                goto done;
            }
            input_path = image_args[0];
            image_args = NULL;
        }
    }
    if (image_args) {
        input_list images = {0};
        for (int k = 0; k < n_inputs; k++)
            if (input_list_add(&images, image_args[k], err, sizeof err) != 0) {
                fprintf(stderr, "cspresnet infer: %s\n", err);
                input_list_free(&images);
                goto done;
            }
        if (stream) {
            images.first_data = stream;
            images.first_size = stream_size;
        }
        if (cspresnet_context_create(model, threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", err);
            input_list_free(&images);
            goto done;
        }
        job->out_dir = out_dir;
        job->quiet = quiet;
        job->verbose = cf->verbose;
        image_job_result res;
        int r = infer_images(ctx, &images, job, &res);
        if (r >= 0 && !quiet)
            printf("%zu of %zu images done (%s, %dx%d, preprocess %s), %zu failed; outputs in %s/\n", res.done,
                   images.count, job->letterbox ? "letterbox" : "bicubic resize", job->height, job->width,
                   cspresnet_preprocess_name(job->pre), res.failed, out_dir);
        if (r > 0 && images.count > 1) /* one image: its own line already says it all */
            fprintf(stderr, "cspresnet infer: %zu of %zu images failed (see above)\n", res.failed, images.count);
        input_list_free(&images);
        rc = r == 0 ? 0 : 1;
        goto done;
    }
    if (input_path) {
        if (!x.data && npy_read(input_path, &x, &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", e.text);
            goto done;
        }
        warn_non_finite(input_path, &x);
    } else if (random_input(&x, input_size) != 0) {
        fprintf(stderr, "cspresnet infer: out of memory for a %dx3x%dx%d input\n", input_size[0],
                input_size[2], input_size[3]);
        goto done;
    }
    if (x.ndim != 4 || x.shape[1] != 3 || x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 ||
        x.shape[0] > 65536 || x.shape[2] > 65536 || x.shape[3] > 65536) {
        char shape[128] = "";
        size_t used = 0;
        for (int d = 0; d < x.ndim && used < sizeof shape; d++)
            used += (size_t)snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                                     (long long)x.shape[d]);
        fprintf(stderr,
                "cspresnet infer: %s has shape [%s]; expected N x 3 x H x W (3 RGB channels, N, H, W >= 1)\n",
                input_path, shape);
        goto done;
    }
    if (cspresnet_context_create(model, threads, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", err);
        goto done;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    if (cspresnet_forward(ctx, x.data, (int)x.shape[0], (int)x.shape[1], (int)x.shape[2], (int)x.shape[3], outs,
                          &n_out) !=
        CSPRESNET_OK) {
        fprintf(stderr, "cspresnet infer: %s\n", cspresnet_context_last_error(ctx));
        goto done;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "cspresnet infer: cannot create output folder %s: %s\n", out_dir, strerror(errno));
        goto done;
    }
    char paths[CSPRESNET_MAX_OUTPUTS][4096];
    for (int r = 0; r < n_out; r++) {
        snprintf(paths[r], sizeof paths[r], "%s/stage%d.npy", out_dir, outs[r].stage);
        int64_t shape[4] = {outs[r].n, outs[r].c, outs[r].h, outs[r].w};
        if (npy_write(paths[r], outs[r].data, 4, shape, &e) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet infer: %s\n", e.text);
            for (int k = 0; k < r; k++) /* leave no partial set of outputs behind */
                unlink(paths[k]);
            goto done;
        }
    }
    if (!quiet)
        for (int r = 0; r < n_out; r++)
            printf("stage%d: [%d, %d, %d, %d] stride %d -> %s\n", outs[r].stage, outs[r].n, outs[r].c,
                   outs[r].h, outs[r].w, outs[r].stride, paths[r]);
    rc = 0;
done:
    free(stream);
    npy_array_free(&x);
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return rc;
}
