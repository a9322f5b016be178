/*
 * detector_driver.c - runs a PP-YOLOE checkpoint through the library's detector for
 * tests/test_detector.py, which compares the outputs with the PyTorch port:
 *
 *   detector_driver WEIGHTS INPUT.npy OUT_DIR ISA [deploy]
 *
 * Loads WEIGHTS with cspresnet_model_load_detector, runs INPUT (N,3,H,W) on contexts of
 * the kernel set ISA ("" = the best) with 1 and 2 threads, CHECKs both bit-identical
 * and consistent (cspresnet_forward's outputs are the detector's), and writes
 * OUT_DIR/boxes.npy [N, L, 4] and OUT_DIR/scores.npy [N, C, L] from the 1-thread run.
 * Also CHECKs that cspresnet_model_load on the same file still gives the backbone
 * (three feature maps at strides 8, 16, 32). With "deploy" the loaded detector is
 * deployed first (cspresnet_model_deploy) and the deployed one runs; the driver CHECKs
 * that it has fewer parameters and graph nodes than the original, is refused a second
 * deploy, and equals cspresnet_model_deploy_replace's bit for bit; it prints
 * "params: A -> B, nodes: X -> Y". Prints "isa: NAME" and the closing line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cspresnet.h"
#include "harness.h"
#include "io/npy.h"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "%s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

typedef struct run_out {
    float *boxes, *scores;
    int anchors, classes;
} run_out;

static run_out run(const cspresnet_model *m, const npy_array *x, const char *isa, int threads)
{
    char err[1024];
    cspresnet_context_options opt;
    cspresnet_context_options_init(&opt);
    opt.threads = threads;
    opt.isa = isa;
    cspresnet_context *ctx;
    if (cspresnet_context_create_ex(m, &opt, &ctx, err, sizeof err) != CSPRESNET_OK)
        die("context", err);
    const int n = (int)x->shape[0], h = (int)x->shape[2], w = (int)x->shape[3];
    const float *boxes, *scores;
    run_out r;
    if (cspresnet_detector_forward(ctx, x->data, n, h, w, &boxes, &scores, &r.anchors, &r.classes) != CSPRESNET_OK)
        die("forward", cspresnet_context_last_error(ctx));
    if (threads == 1)
        printf("isa: %s\n", cspresnet_context_isa(ctx));
    size_t nb = (size_t)n * r.anchors * 4, ns = (size_t)n * r.classes * r.anchors;
    r.boxes = malloc(nb * sizeof(float));
    r.scores = malloc(ns * sizeof(float));
    if (!r.boxes || !r.scores)
        die("out of memory", NULL);
    memcpy(r.boxes, boxes, nb * sizeof(float));
    memcpy(r.scores, scores, ns * sizeof(float));
    /* the same forward through cspresnet_forward: the outputs by their documented layout */
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    cspresnet_status s = cspresnet_forward(ctx, x->data, n, 3, h, w, outs, &n_out);
    CHECK(s == CSPRESNET_OK && n_out == 2 && outs[0].c == r.anchors && outs[0].h == 4 && outs[0].w == 1 &&
              outs[1].c == r.classes && outs[1].h == r.anchors && outs[1].w == 1 && outs[0].stage == -1,
          "cspresnet_forward on a detector: status %d, %d outputs", (int)s, n_out);
    if (s == CSPRESNET_OK && n_out == 2)
        CHECK(memcmp(outs[0].data, r.boxes, nb * sizeof(float)) == 0 &&
                  memcmp(outs[1].data, r.scores, ns * sizeof(float)) == 0,
              "a second forward differs from the first");
    cspresnet_context_free(ctx);
    return r;
}

static int node_count(const cspresnet_model *m)
{
    char err[1024];
    cspresnet_context *ctx;
    if (cspresnet_context_create(m, 1, &ctx, err, sizeof err) != CSPRESNET_OK)
        die("context", err);
    int n = cspresnet_context_profile(ctx, -1, NULL, NULL, NULL);
    cspresnet_context_free(ctx);
    return n;
}

/* *m replaced by its deployed form, checked against the original and deploy_replace. */
static void deploy(cspresnet_model **m, const char *weights)
{
    char err[1024];
    cspresnet_model *d, *again = NULL, *r;
    if (cspresnet_model_deploy(*m, &d, err, sizeof err) != CSPRESNET_OK)
        die("deploy", err);
    CHECK(cspresnet_model_is_deployed(d) && cspresnet_model_is_detector(d), "the deployed model is not a detector");
    CHECK(cspresnet_model_deploy(d, &again, err, sizeof err) == CSPRESNET_ERR_ARGUMENT && !again,
          "a second deploy was not refused");
    size_t p0 = cspresnet_model_param_count(*m), p1 = cspresnet_model_param_count(d);
    int n0 = node_count(*m), n1 = node_count(d);
    printf("params: %zu -> %zu, nodes: %d -> %d\n", p0, p1, n0, n1);
    CHECK(p1 < p0 && n1 < n0, "deploying did not shrink the graph");
    if (cspresnet_model_load_detector(weights, NULL, &r, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_model_deploy_replace(&r, err, sizeof err) != CSPRESNET_OK)
        die("deploy_replace", err);
    int same = cspresnet_model_param_count(r) == p1;
    for (size_t i = 0; same && i < p1; i++) {
        const char *ka, *kb;
        int64_t sa[4], sb[4];
        const float *da, *db;
        cspresnet_model_param(d, i, &ka, NULL, sa, &da, NULL);
        cspresnet_model_param(r, i, &kb, NULL, sb, &db, NULL);
        same = strcmp(ka, kb) == 0 && memcmp(sa, sb, sizeof sa) == 0 &&
               memcmp(da, db, sizeof(float) * (size_t)(sa[0] * sa[1] * sa[2] * sa[3])) == 0;
        if (!same)
            fprintf(stderr, "parameter %zu: '%s' / '%s'\n", i, ka, kb);
    }
    CHECK(same, "cspresnet_model_deploy and cspresnet_model_deploy_replace differ");
    cspresnet_model_free(r);
    cspresnet_model_free(*m);
    *m = d;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "deploy") == 0))
        die("usage: detector_driver WEIGHTS INPUT.npy OUT_DIR ISA [deploy]", NULL);
    char err[1024];
    error_buf e = {{0}};
    npy_array x = {0};
    if (npy_read(argv[2], &x, &e) != CSPRESNET_OK)
        die(e.text, NULL);
    if (x.ndim != 4 || x.shape[1] != 3)
        die("input must be (N, 3, H, W)", argv[2]);
    cspresnet_model *m;
    if (cspresnet_model_load_detector(argv[1], NULL, &m, err, sizeof err) != CSPRESNET_OK)
        die(err, NULL);
    CHECK(cspresnet_model_is_detector(m), "the loaded model is not a detector");
    if (argc == 6)
        deploy(&m, argv[1]);
    const char *isa = argv[4][0] ? argv[4] : NULL;
    run_out a = run(m, &x, isa, 1), b = run(m, &x, isa, 2);
    const int n = (int)x.shape[0];
    size_t nb = (size_t)n * a.anchors * 4, ns = (size_t)n * a.classes * a.anchors;
    CHECK(a.anchors == b.anchors && a.classes == b.classes && memcmp(a.boxes, b.boxes, nb * sizeof(float)) == 0 &&
              memcmp(a.scores, b.scores, ns * sizeof(float)) == 0,
          "1 and 2 threads differ");
    char path[4096];
    int64_t bshape[3] = {n, a.anchors, 4}, sshape[3] = {n, a.classes, a.anchors};
    snprintf(path, sizeof path, "%s/boxes.npy", argv[3]);
    if (npy_write(path, a.boxes, 3, bshape, &e) != CSPRESNET_OK)
        die(e.text, NULL);
    snprintf(path, sizeof path, "%s/scores.npy", argv[3]);
    if (npy_write(path, a.scores, 3, sshape, &e) != CSPRESNET_OK)
        die(e.text, NULL);
    cspresnet_model_free(m);

    /* the backbone loader on the same file: the stage maps, as before detectors */
    cspresnet_model *bk;
    if (cspresnet_model_load(argv[1], NULL, &bk, err, sizeof err) != CSPRESNET_OK)
        die(err, NULL);
    cspresnet_context *ctx;
    if (cspresnet_context_create(bk, 1, &ctx, err, sizeof err) != CSPRESNET_OK)
        die(err, NULL);
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0;
    cspresnet_status s = cspresnet_forward(ctx, x.data, n, 3, (int)x.shape[2], (int)x.shape[3], outs, &n_out);
    CHECK(s == CSPRESNET_OK && n_out == 3 && outs[0].stride == 8 && outs[2].stride == 32 &&
              !cspresnet_model_is_detector(bk),
          "cspresnet_model_load on a detector file: status %d, %d outputs", (int)s, n_out);
    cspresnet_context_free(ctx);
    cspresnet_model_free(bk);
    free(a.boxes);
    free(a.scores);
    free(b.boxes);
    free(b.scores);
    npy_array_free(&x);
    return harness_done();
}
