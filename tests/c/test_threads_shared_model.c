/*
 * test_threads_shared_model.c - several threads, each with its own cspresnet_context
 * (itself with 1 or 2 worker threads), run forward passes at once on ONE shared model.
 * Every thread's outputs must be bit-identical to a reference computed alone first.
 * Built by the normal `make` (run by tests/test_reliability.py) and by `make tsan` with
 * -fsanitize=thread, where any data race on the shared model fails the run.
 *
 * Usage: test_threads_shared_model [THREADS]      (default 4)
 * Exit status: 0 identical results, 1 a mismatch or an error (a FAIL line, or a message on
 * stderr when the model cannot be built).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cspresnet.h"
#include "harness.h"

#define H 40
#define W 24
#define ROUNDS 3

typedef struct job {
    const cspresnet_model *model;
    const float *input;
    int pool_threads;
    float *result;      /* concatenated outputs of the last round */
    size_t result_len;
    int ok;
    char err[256];
} job;

static size_t total_len(const cspresnet_output *o, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += (size_t)o[i].n * o[i].c * o[i].h * o[i].w;
    return t;
}

static void *run(void *arg)
{
    job *j = arg;
    cspresnet_context *ctx = NULL;
    if (cspresnet_context_create(j->model, j->pool_threads, &ctx, j->err, sizeof j->err) != CSPRESNET_OK)
        return NULL;
    for (int r = 0; r < ROUNDS; r++) {
        cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
        int n_out = 0;
        /* alternate shapes so that re-planning races too */
        int h = r % 2 ? H / 2 : H, w = r % 2 ? W / 2 : W;
        if (cspresnet_forward(ctx, j->input, 1, 3, h, w, outs, &n_out) != CSPRESNET_OK) {
            snprintf(j->err, sizeof j->err, "%s", cspresnet_context_last_error(ctx));
            cspresnet_context_free(ctx);
            return NULL;
        }
        if (r == ROUNDS - 1) {
            j->result_len = total_len(outs, n_out);
            j->result = malloc(j->result_len * sizeof(float));
            if (!j->result)
                break;
            size_t at = 0;
            for (int i = 0; i < n_out; i++) {
                size_t len = (size_t)outs[i].n * outs[i].c * outs[i].h * outs[i].w;
                memcpy(j->result + at, outs[i].data, len * sizeof(float));
                at += len;
            }
            j->ok = 1;
        }
    }
    cspresnet_context_free(ctx);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 4;
    if (nthreads < 1 || nthreads > 64) {
        fprintf(stderr, "usage: test_threads_shared_model [THREADS 1..64]\n");
        return 2;
    }
    cspresnet_config cfg;
    char err[256];
    cspresnet_model *model = NULL;
    if (cspresnet_config_scaled(&cfg, 0.25, 0.33) != CSPRESNET_OK ||
        cspresnet_model_create(&cfg, 7, &model, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    float *input = malloc(3 * H * W * sizeof(float));
    if (!input)
        return 1;
    for (int i = 0; i < 3 * H * W; i++)
        input[i] = (float)((i * 7919) % 1000) / 1000.0f;

    job ref = {model, input, 1, NULL, 0, 0, ""};
    run(&ref);
    if (!ref.ok) {
        fprintf(stderr, "reference: %s\n", ref.err);
        return 1;
    }
    job *jobs = calloc((size_t)nthreads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)nthreads, sizeof *tid);
    if (!jobs || !tid)
        return 1;
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (job){model, input, 1 + t % 2, NULL, 0, 0, ""};
        if (pthread_create(&tid[t], NULL, run, &jobs[t]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        CHECK(jobs[t].ok, "thread %d: %s", t, jobs[t].err);
        CHECK(!jobs[t].ok || (jobs[t].result_len == ref.result_len &&
                              memcmp(jobs[t].result, ref.result, ref.result_len * sizeof(float)) == 0),
              "thread %d (%d pool threads): outputs differ from the reference", t, jobs[t].pool_threads);
        free(jobs[t].result);
    }
    if (!harness_failed)
        printf("%d threads x %d forwards on one shared model: %zu output values identical to the "
               "single-thread reference\n", nthreads, ROUNDS, ref.result_len);
    free(ref.result);
    free(jobs);
    free(tid);
    free(input);
    cspresnet_model_free(model);
    return harness_done();
}
