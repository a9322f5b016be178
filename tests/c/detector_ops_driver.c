/*
 * detector_ops_driver.c - runs the detector's ops (src/ops/detector_ops.h) on .npy files
 * for tests/test_detector_ops.py, which compares the written output with PyTorch:
 *
 *   detector_ops_driver upsample IN OUT BEFORE AFTER
 *   detector_ops_driver maxpool K IN OUT BEFORE AFTER
 *   detector_ops_driver spp IN OUT
 *   detector_ops_driver gate X FC_W FC_B OUT BEFORE AFTER
 *   detector_ops_driver sigmoid IN OUT BEFORE AFTER
 *   detector_ops_driver decode PROJ SCALE|none OUT_DIR REG CLS STRIDE [REG CLS STRIDE ...]
 *
 * IN / X (N,C,H,W). The output of the per-tensor ops is a channel slice of a larger
 * tensor (N, BEFORE+C+AFTER, OH, OW) whose other channels hold SENTINEL, and OUT is that
 * whole tensor, so the test also sees that nothing outside the slice was written. spp
 * writes SPP's concat (N, 4C, H, W) = [x, pool5, pool9, pool13]. gate is ESEAttn's
 * x * sigmoid(fc(mean_hw(x))) with FC_W (C, C, 1, 1). decode writes OUT_DIR/boxes.npy
 * [N, L, 4] and OUT_DIR/scores.npy [N, C, L] for the levels in the order given.
 *
 * Every op runs in each of its variants (reference and fast, in place and not) on 1, 2
 * and 3 threads; the driver CHECKs that all runs are bit-identical to the first and
 * writes the first. Exit 1 (and "FAILED") when any check fails. The kernels are the set
 * CSPRESNET_ISA names (kernel_set_select: unset = the best here): the max-pools are
 * exact, so their variants also run the reference set's kernels; the sigmoid, the
 * gate's mean and the DFL exp are not, so the test runs the driver once per set.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/npy.h"
#include "ops/detector_ops.h"

#define SENTINEL (-7777.0f)
#define MAX_LEVELS 8

static const int thread_counts[] = {1, 2, 3};
static const kernel_set *kset;   /* CSPRESNET_ISA's, chosen in main */
#define N_THREAD_COUNTS 3

/* One run of an op: variant v of the op's variants, on pool (NULL: the caller's thread
 * only) with `threads` threads, writing the whole output tensor `out`. */
typedef void (*run_fn)(void *ctx, int v, threadpool *pool, int threads, float *out);

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "%s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static npy_array read_npy(const char *path, int ndim)
{
    npy_array a = {0};
    error_buf e = {{0}};
    if (npy_read(path, &a, &e) != CSPRESNET_OK)
        die(e.text, NULL);
    if (ndim && a.ndim != ndim)
        die("wrong number of dimensions", path);
    return a;
}

static void write_npy(const char *path, const float *data, int ndim, const int64_t *shape)
{
    error_buf e = {{0}};
    if (npy_write(path, data, ndim, shape, &e) != CSPRESNET_OK)
        die(e.text, NULL);
}

static float *alloc_floats(long count)
{
    float *p = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    if (!p)
        die("out of memory", NULL);
    return p;
}

static tensor4 view_of(const npy_array *a)
{
    tensor4 t = {a->data, (int)a->shape[0], (int)a->shape[1], (int)a->shape[2], (int)a->shape[3],
                 a->shape[1] * a->shape[2] * a->shape[3]};
    return t;
}

/* Channels c0 .. c0+c-1 of a contiguous (n, ctot, h, w) tensor at data. */
static tensor4 slice_of(float *data, int n, int ctot, int h, int w, int c0, int c)
{
    tensor4 t = {data + (long)c0 * h * w, n, c, h, w, (long)ctot * h * w};
    return t;
}

/* Runs every variant on every thread count into fresh SENTINEL-filled buffers of
 * `count` floats, checks them bit-identical to the first run, and returns the first. */
static float *run_all(const char *op, run_fn fn, void *ctx, int variants, long count)
{
    float *first = NULL;
    for (int v = 0; v < variants; v++) {
        for (int i = 0; i < N_THREAD_COUNTS; i++) {
            int threads = thread_counts[i];
            threadpool *pool = NULL;
            error_buf e = {{0}};
            if (threads > 1 && threadpool_create(threads, &pool, &e) != CSPRESNET_OK)
                die(e.text, NULL);
            float *out = alloc_floats(count);
            for (long j = 0; j < count; j++)
                out[j] = SENTINEL;
            fn(ctx, v, pool, threads, out);
            threadpool_free(pool);
            if (!first) {
                first = out;
                continue;
            }
            long diff = -1;
            for (long j = 0; j < count && diff < 0; j++)
                if (memcmp(&out[j], &first[j], sizeof(float)) != 0)
                    diff = j;
            CHECK(diff < 0, "%s variant %d on %d threads differs from variant 0 on 1 thread at %ld "
                  "(%.9g vs %.9g)", op, v, threads, diff, diff < 0 ? 0.0 : out[diff], diff < 0 ? 0.0 : first[diff]);
            free(out);
        }
    }
    return first;
}

/* ---------------------------------------------------------------- per-tensor ops */

typedef struct tensor_ctx {
    tensor4 in;
    int before, after, oh, ow, k;
    const float *fc_w, *fc_b;
} tensor_ctx;

static tensor4 out_slice(const tensor_ctx *c, float *out)
{
    return slice_of(out, c->in.n, c->before + c->in.c + c->after, c->oh, c->ow, c->before, c->in.c);
}

static void run_upsample(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    (void)threads;
    tensor_ctx *c = ctx;
    tensor4 o = out_slice(c, out);
    if (v == 0)
        upsample_nearest2x_ref_forward(pool, &c->in, &o);
    else
        upsample_nearest2x_forward(pool, &c->in, &o);
}

static void run_maxpool(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    tensor_ctx *c = ctx;
    tensor4 o = out_slice(c, out);
    if (v == 0) {
        maxpool_same_ref_forward(pool, &c->in, &o, c->k);
        return;
    }
    float *scratch = alloc_floats(maxpool_workspace(c->in.h, c->in.w, threads));
    maxpool_same_forward(pool, v == 1 ? kset->reduce : &f32_reduce_config_ref, &c->in, &o, c->k, scratch);
    free(scratch);
}

/* SPP's concat: x copied into slice 0, the pools into slices 1..3. */
static void run_spp(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    tensor_ctx *c = ctx;
    const tensor4 *x = &c->in;
    tensor4 s[4];
    for (int i = 0; i < 4; i++)
        s[i] = slice_of(out, x->n, 4 * x->c, x->h, x->w, i * x->c, x->c);
    for (int n = 0; n < x->n; n++)
        memcpy(s[0].data + n * s[0].batch_stride, x->data + n * x->batch_stride,
               (size_t)x->c * x->h * x->w * sizeof(float));
    float *scratch = alloc_floats(maxpool_workspace(x->h, x->w, threads));
    static const int ks[3] = {5, 9, 13};
    for (int i = 0; i < 3 && v < 2; i++) {
        if (v == 0)
            maxpool_same_ref_forward(pool, x, &s[i + 1], ks[i]);
        else
            maxpool_same_forward(pool, kset->reduce, x, &s[i + 1], ks[i], scratch);
    }
    if (v >= 2)
        spp_maxpool_forward(pool, v == 2 ? kset->reduce : &f32_reduce_config_ref, x, &s[1], &s[2], &s[3], scratch);
    free(scratch);
}

/* Variant 0 out of place; variant 1 copies x into the slice and gates it in place. */
static void run_gate(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    (void)threads;
    tensor_ctx *c = ctx;
    const tensor4 *x = &c->in;
    tensor4 o = out_slice(c, out);
    long nc = (long)x->n * x->c;
    float *mean = alloc_floats(nc), *z = alloc_floats(nc);
    mean_hw_forward(pool, kset->reduce->mean, x, mean);
    channel_fc_forward(pool, mean, x->n, x->c, x->c, c->fc_w, c->fc_b, z);
    if (v == 0) {
        sigmoid_gate_forward(pool, kset->reduce->scale, x, z, &o);
    } else {
        for (int n = 0; n < x->n; n++)
            memcpy(o.data + n * o.batch_stride, x->data + n * x->batch_stride,
                   (size_t)x->c * x->h * x->w * sizeof(float));
        sigmoid_gate_forward(pool, kset->reduce->scale, &o, z, &o);
    }
    free(mean);
    free(z);
}

static void run_sigmoid(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    (void)threads;
    tensor_ctx *c = ctx;
    const tensor4 *x = &c->in;
    tensor4 o = out_slice(c, out);
    bias_act_fn act = kset->conv ? kset->conv->bias_act : f32_bias_act__ref;
    if (v == 0) {
        sigmoid_forward(pool, act, x, &o);
    } else {
        for (int n = 0; n < x->n; n++)
            memcpy(o.data + n * o.batch_stride, x->data + n * x->batch_stride,
                   (size_t)x->c * x->h * x->w * sizeof(float));
        sigmoid_forward(pool, act, &o, &o);
    }
}

static int tensor_op(int argc, char **argv)
{
    const char *op = argv[1];
    int a = 2;
    tensor_ctx c = {0};
    run_fn fn;
    int variants;
    if (!strcmp(op, "maxpool"))
        c.k = atoi(argv[a++]);
    npy_array in = read_npy(argv[a++], 4), w = {0}, b = {0};
    if (!strcmp(op, "gate")) {
        w = read_npy(argv[a++], 4);
        b = read_npy(argv[a++], 1);
        if (w.shape[0] != in.shape[1] || w.shape[1] != in.shape[1] || b.shape[0] != in.shape[1])
            die("gate: FC_W must be (C, C, 1, 1) and FC_B (C)", NULL);
        c.fc_w = w.data;
        c.fc_b = b.data;
    }
    const char *out_path = argv[a++];
    if (strcmp(op, "spp")) {
        if (a + 2 != argc)
            die("wrong number of arguments for", op);
        c.before = atoi(argv[a]);
        c.after = atoi(argv[a + 1]);
    } else if (a != argc) {
        die("wrong number of arguments for", op);
    }
    c.in = view_of(&in);
    c.oh = c.in.h;
    c.ow = c.in.w;
    int ctot = c.before + c.in.c + c.after;
    if (!strcmp(op, "upsample")) {
        c.oh *= 2;
        c.ow *= 2;
        fn = run_upsample;
        variants = 2;
    } else if (!strcmp(op, "maxpool")) {
        fn = run_maxpool;
        variants = 3;
    } else if (!strcmp(op, "spp")) {
        ctot = 4 * c.in.c;
        fn = run_spp;
        variants = 4;
    } else if (!strcmp(op, "gate")) {
        fn = run_gate;
        variants = 2;
    } else {
        fn = run_sigmoid;
        variants = 2;
    }
    int64_t shape[4] = {c.in.n, ctot, c.oh, c.ow};
    float *out = run_all(op, fn, &c, variants, shape[0] * shape[1] * shape[2] * shape[3]);
    write_npy(out_path, out, 4, shape);
    free(out);
    npy_array_free(&in);
    npy_array_free(&w);
    npy_array_free(&b);
    return harness_done();
}

/* ---------------------------------------------------------------- decode */

typedef struct decode_ctx {
    int levels, n, classes, bins;
    long anchors;
    tensor4 reg[MAX_LEVELS], cls[MAX_LEVELS];
    float stride[MAX_LEVELS];
    long offset[MAX_LEVELS];
    const float *proj, *scale;
} decode_ctx;

/* out: boxes [N, L, 4] then scores [N, C, L]. */
static void run_decode(void *ctx, int v, threadpool *pool, int threads, float *out)
{
    (void)v;
    (void)threads;
    decode_ctx *d = ctx;
    bias_act_fn act = kset->conv ? kset->conv->bias_act : f32_bias_act__ref;
    for (int i = 0; i < d->levels; i++) {
        det_level_out boxes = {out, d->anchors, d->offset[i]};
        det_level_out scores = {out + (long)d->n * d->anchors * 4, d->anchors, d->offset[i]};
        dfl_decode_forward(pool, kset->reduce, &d->reg[i], d->proj, d->bins, d->stride[i], d->scale, &boxes);
        scores_sigmoid_forward(pool, act, &d->cls[i], &scores);
    }
}

static int decode_op(int argc, char **argv)
{
    if (argc < 8 || (argc - 5) % 3 != 0 || (argc - 5) / 3 > MAX_LEVELS)
        die("usage: decode PROJ SCALE|none OUT_DIR REG CLS STRIDE [REG CLS STRIDE ...]", NULL);
    decode_ctx d = {0};
    npy_array proj = read_npy(argv[2], 0), scale = {0}, reg[MAX_LEVELS], cls[MAX_LEVELS];
    d.bins = (int)proj.numel;
    d.proj = proj.data;
    if (strcmp(argv[3], "none")) {
        scale = read_npy(argv[3], 2);
        d.scale = scale.data;
    }
    d.levels = (argc - 5) / 3;
    for (int i = 0; i < d.levels; i++) {
        reg[i] = read_npy(argv[5 + 3 * i], 4);
        cls[i] = read_npy(argv[6 + 3 * i], 4);
        d.stride[i] = strtof(argv[7 + 3 * i], NULL);
        d.reg[i] = view_of(&reg[i]);
        d.cls[i] = view_of(&cls[i]);
        if (d.reg[i].c != 4 * d.bins || d.cls[i].n != d.reg[i].n || d.cls[i].h != d.reg[i].h ||
            d.cls[i].w != d.reg[i].w || (i && (d.cls[i].c != d.classes || d.reg[i].n != d.n)))
            die("decode: REG must be (N, 4*bins, H, W) and CLS (N, C, H, W) alike", argv[5 + 3 * i]);
        d.n = d.reg[i].n;
        d.classes = d.cls[i].c;
        d.offset[i] = d.anchors;
        d.anchors += (long)d.reg[i].h * d.reg[i].w;
    }
    if (d.scale && (scale.shape[0] != d.n || scale.shape[1] != 2))
        die("decode: SCALE must be (N, 2)", NULL);
    long nbox = (long)d.n * d.anchors * 4, nscore = (long)d.n * d.classes * d.anchors;
    float *out = run_all("decode", run_decode, &d, 1, nbox + nscore);
    char path[4096];
    int64_t bshape[3] = {d.n, d.anchors, 4}, sshape[3] = {d.n, d.classes, d.anchors};
    snprintf(path, sizeof path, "%s/boxes.npy", argv[4]);
    write_npy(path, out, 3, bshape);
    snprintf(path, sizeof path, "%s/scores.npy", argv[4]);
    write_npy(path, out + nbox, 3, sshape);
    free(out);
    for (int i = 0; i < d.levels; i++) {
        npy_array_free(&reg[i]);
        npy_array_free(&cls[i]);
    }
    npy_array_free(&proj);
    npy_array_free(&scale);
    return harness_done();
}

int main(int argc, char **argv)
{
    kset = kernel_set_select(getenv("CSPRESNET_ISA"));
    fprintf(stderr, "kernels: %s\n", kset->isa);
    if (argc >= 2 && !strcmp(argv[1], "decode"))
        return decode_op(argc, argv);
    static const char *ops[] = {"upsample", "maxpool", "spp", "gate", "sigmoid"};
    for (int i = 0; i < 5 && argc >= 4; i++)
        if (!strcmp(argv[1], ops[i]))
            return tensor_op(argc, argv);
    fprintf(stderr, "usage: detector_ops_driver upsample|maxpool|spp|gate|sigmoid|decode ... (see the source)\n");
    return 2;
}
