/*
 * activation.c - the model activation (swish, relu, ...), in place on x (N,C,H,W).
 * Planes are split across threads; see kernels/ref/f32_pointwise_ref.c for the math.
 */
#include <math.h>
#include <string.h>

#include "graph/graph.h"
#include "kernels/pointwise.h"
#include "ops/train_ops.h"

typedef struct act_job {
    cspresnet_act act;
    const tensor4 *x;
} act_job;

static void act_worker(const void *arg, long p, long plane)
{
    const act_job *job = arg;
    const tensor4 *x = job->x;
    f32_activation__ref(job->act, tensor4_plane(x, p), plane);
}

void activation_forward(op_exec *ex, cspresnet_act act, const tensor4 *x)
{
    if (act == CSPRESNET_ACT_NONE)
        return;
    act_job job = {act, x};
    planes_run(ex->pool, job.x, act_worker, &job);
}

/* ---------------------------------------------------------------- training
 * Out of place: y = act(x) with x kept for the backward pass, and dx += dy * act'(x).
 * Derivatives follow PyTorch's autograd formulas (relu'(0) = 0, leaky'(0) = 0.01,
 * hardswish' = x/3 + 0.5 on [-3, 3], mish with Paddle's softplus threshold 20; see
 * f32_act_derivative__ref). An activation right after BN is fused into BN instead
 * (batchnorm.c); these serve the others (after the RepVGG add). */
typedef struct act_train_job {
    const f32_train_config *tk;
    bn_act_params p;     /* the identity BN (scale 1, shift 0) with the activation */
    const tensor4 *x, *y, *dy, *dx;
} act_train_job;

/* The BN+activation kernels of the training table with an identity BN: y = act(x * 1 + 0)
 * and dx += 1 * (dy * act'(x) - 0 - x * 0), exact; AVX-512 where the table has it. */
static void act_fwd_out_worker(const void *arg, long p, long plane)
{
    const act_train_job *job = arg;
    const tensor4 *x = job->x, *y = job->y;
    job->tk->bn_act_apply(tensor4_plane(x, p), 0,
                          tensor4_plane(y, p), 0, 1, plane, &job->p);
}

static act_train_job make_job(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *y,
                              const tensor4 *dy, const tensor4 *dx)
{
    act_train_job job = {.tk = ex->kernels->train,
                         .p = {.mean = 0.0f, .rstd = 1.0f, .weight = 1.0f, .bias = 0.0f,
                               .scale = 1.0f, .shift = 0.0f, .mdy = 0.0f, .mdyx = 0.0f, .act = act},
                         .x = x, .y = y, .dy = dy, .dx = dx};
    return job;
}

void activation_forward_out(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *y)
{
    act_train_job job = make_job(ex, act, x, y, NULL, NULL);
    planes_run(ex->pool, job.x, act_fwd_out_worker, &job);
}

static void act_bwd_worker(const void *arg, long p, long plane)
{
    const act_train_job *job = arg;
    const tensor4 *x = job->x;
    job->tk->bn_act_bwd_apply(tensor4_plane(x, p), 0,
                              tensor4_plane(job->dy, p), 0,
                              tensor4_plane(job->dx, p), 0, 1, plane,
                              &job->p);
}

void activation_backward(op_exec *ex, cspresnet_act act, const tensor4 *x, const tensor4 *dy,
                         const tensor4 *dx, int assign)
{
    act_train_job job = make_job(ex, act, x, NULL, dy, dx);
    job.p.assign = assign;
    planes_run(ex->pool, job.x, act_bwd_worker, &job);
}

/* ---------------------------------------------------------------- the op
 * activation: out = a.act(in[0]); eval in place, train out of place. */

static void act_forward(op_run *r) { activation_forward(&r->ex, r->nd->a.act, &r->out); }

static void act_forward_train(op_run *r) { activation_forward_out(&r->ex, r->nd->a.act, &r->in[0], &r->out); }

static void act_backward(op_run *r)
{
    if (r->din[0].data)
        activation_backward(&r->ex, r->nd->a.act, &r->in[0], &r->dout, &r->din[0], r->din_assign[0]);
}

const op_desc op_activation = {"activation", OP_IN_PLACE_ONLY,
    op_infer_same, op_plan_assigns_din, act_forward, act_forward_train, act_backward, NULL, NULL, NULL};
