/*
 * eltwise.c - out = a + alpha * b over (N,C,H,W) views of equal shape; out may alias
 * a or b. Used for the RepVGG branch sum (alpha = the block's alpha, or 1) and the
 * BasicBlock shortcut (alpha = 1).
 */
#include <string.h>

#include "graph/graph.h"
#include "kernels/pointwise.h"
#include "ops/ops.h"

typedef struct add_job {
    const tensor4 *a, *b, *out;
    float alpha;
} add_job;

static void add_worker(const void *arg, long p, long plane)
{
    const add_job *job = arg;
    const tensor4 *o = job->out;
    f32_add_scaled__ref(tensor4_plane(job->a, p),
                        tensor4_plane(job->b, p), job->alpha,
                        tensor4_plane(o, p), plane);
}

void add_scaled_forward(op_exec *ex, const tensor4 *a, const tensor4 *b, float alpha,
                        const tensor4 *out)
{
    add_job job = {a, b, out, alpha};
    planes_run(ex->pool, job.out, add_worker, &job);
}

/* ---------------------------------------------------------------- training
 * Backward of out = a + alpha * b: da += dy, db += alpha * dy (either may be NULL),
 * and *dalpha = sum(dy * b) when dalpha is given. The alpha reduction keeps one
 * double partial per (image, channel) plane in `partials` (N*C doubles) and sums them
 * in plane order afterwards, so the result does not depend on the thread count. */
typedef struct add_bwd_job {
    const tensor4 *b, *dy, *da, *db;
    float alpha;
    double *partials;
    int assign_a, assign_b;
} add_bwd_job;

static void add_bwd_worker(const void *arg, long p, long plane)
{
    const add_bwd_job *job = arg;
    const tensor4 *dy = job->dy;
    const float *g = tensor4_plane(dy, p);
    if (job->da) {
        float *d = tensor4_plane(job->da, p);
        if (job->assign_a)
            memcpy(d, g, (size_t)plane * sizeof(float));
        else
            for (long i = 0; i < plane; i++)
                d[i] += g[i];
    }
    if (job->db) {
        float *d = tensor4_plane(job->db, p);
        if (job->assign_b)
            for (long i = 0; i < plane; i++)
                d[i] = job->alpha * g[i];
        else
            for (long i = 0; i < plane; i++)
                d[i] += job->alpha * g[i];
    }
    if (job->partials) {
        const float *bv = tensor4_plane(job->b, p);
        double s = 0.0;
        for (long i = 0; i < plane; i++)
            s += (double)g[i] * bv[i];
        job->partials[p] = s;
    }
}

void add_scaled_backward(op_exec *ex, const tensor4 *b, float alpha, const tensor4 *dy,
                         const tensor4 *da, const tensor4 *db, int assign_a, int assign_b, float *dalpha,
                         double *partials)
{
    add_bwd_job job = {b, dy, da, db, alpha, dalpha ? partials : NULL, assign_a, assign_b};
    planes_run(ex->pool, job.dy, add_bwd_worker, &job);
    if (dalpha) {
        double s = 0.0;
        for (long p = 0; p < (long)dy->n * dy->c; p++)
            s += partials[p];
        *dalpha = (float)s;
    }
}

/* ---------------------------------------------------------------- the op
 * add: out = in[0] + alpha * in[1]; params [alpha (1 float) or -1 for 1]. The output
 * may take either input's storage. Train backward: N*C doubles of shared workspace. */

static cspresnet_status add_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    if (in[0].n != in[1].n || in[0].c != in[1].c || in[0].h != in[1].h || in[0].w != in[1].w)
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: adds %dx%dx%d to %dx%dx%d", nd->name, in[1].c, in[1].h,
                         in[1].w, in[0].c, in[0].h, in[0].w);
    *out = in[0];
    return CSPRESNET_OK;
}

static void add_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out, node_plan *np)
{
    (void)nd;
    (void)in;
    if (env->mode == GRAPH_TRAIN) {
        np->ws_shared = 2L * out->n * out->c;   /* doubles */
        np->din_assign_ok = 1;
    }
}

static float add_alpha(const op_run *r) { return r->nd->param[0] >= 0 ? r->p[0][0] : 1.0f; }

static void add_forward(op_run *r) { add_scaled_forward(&r->ex, &r->in[0], &r->in[1], add_alpha(r), &r->out); }

static void add_backward(op_run *r)
{
    add_scaled_backward(&r->ex, &r->in[1], add_alpha(r), &r->dout, r->din[0].data ? &r->din[0] : NULL,
                        r->din[1].data ? &r->din[1] : NULL, r->din_assign[0], r->din_assign[1],
                        r->nd->param[0] >= 0 ? r->dp[0] : NULL,
                        (double *)r->ex.op_scratch);
}

const op_desc op_add = {"add", OP_IN_PLACE_ANY,
    add_infer, add_plan, add_forward, add_forward, add_backward, NULL, NULL, NULL};
