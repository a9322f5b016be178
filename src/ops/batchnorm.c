/*
 * batchnorm.c - BatchNorm2D with Paddle's semantics (eps 1e-5).
 *
 * Eval mode, in place on x (N,C,H,W): x = (x - _mean) / sqrt(_variance + eps) * weight
 * + bias, per channel. The (image, channel) planes are split across threads.
 * Training (below): batch statistics, running-statistics update and the backward pass.
 */
#include <math.h>

#include "graph/graph.h"
#include "kernels/pointwise.h"
#include "ops/train_ops.h"

typedef struct bn_job {
    const tensor4 *x;
    const float *weight, *bias, *mean, *variance;
} bn_job;

static void bn_worker(const void *arg, long p, long plane)
{
    const bn_job *job = arg;
    const tensor4 *x = job->x;
    int c = (int)(p % x->c);
    f32_batchnorm_channel__ref(tensor4_plane(x, p), plane,
                               job->mean[c], job->variance[c], job->weight[c],
                               job->bias[c], BN_EPSILON);
}

void batchnorm_forward_eval(op_exec *ex, const tensor4 *x, const float *weight,
                            const float *bias, const float *mean, const float *variance)
{
    bn_job job = {x, weight, bias, mean, variance};
    planes_run(ex->pool, job.x, bn_worker, &job);
}

/* ---------------------------------------------------------------- training
 * Out of place (x is kept for the backward pass), fused with the activation that
 * follows BN when the trainer says so (act; CSPRESNET_ACT_NONE for plain BN):
 *   y = act((x - mean) * rstd * w + b).
 * Train mode takes mean and the BIASED variance over (N, H, W) per channel (double
 * sums of x and x^2) and, when run_mean is given, updates the running statistics as
 * Paddle does: r = 0.9 r + 0.1 batch (the running variance takes the biased batch
 * variance). Frozen mode uses the running statistics. Both save (mean, rstd) per
 * channel for the backward pass, which recomputes the activation's input from x
 * instead of keeping it. Work is split by channel and each channel's runs are summed
 * in image order, so every reduction has one order whatever the thread count. The
 * per-channel kernels come from the training table (train_kernels.h). */
typedef struct bn_train_job {
    const f32_train_config *tk;
    const tensor4 *x, *y, *dy, *dx;
    const float *weight, *bias, *run_mean_in, *run_var_in;
    float *save_mean, *save_rstd, *run_mean, *run_var, *dweight, *dbias;
    int train;
    int assign;        /* backward: dx =, not += */
    cspresnet_act act;
} bn_train_job;

static void bn_train_fwd_worker(void *arg, int t, int nt)
{
    const bn_train_job *job = arg;
    const tensor4 *x = job->x, *y = job->y;
    const long plane = (long)x->h * x->w;
    const double count = (double)plane * x->n;
    long begin, end;
    split_range(x->c, t, nt, &begin, &end);
    for (long c = begin; c < end; c++) {
        float mean, rstd;
        if (job->train) {
            double s1 = 0.0, s2 = 0.0;
            job->tk->bn_stats(x->data + c * plane, x->batch_stride, x->n, plane, &s1, &s2);
            double mu = s1 / count, v = s2 / count - mu * mu;
            if (v < 0.0)
                v = 0.0;
            mean = (float)mu;
            rstd = (float)(1.0 / sqrt(v + (double)BN_EPSILON));
            if (job->run_mean) {
                job->run_mean[c] = BN_MOMENTUM * job->run_mean[c] + (1.0f - BN_MOMENTUM) * (float)mu;
                job->run_var[c] = BN_MOMENTUM * job->run_var[c] + (1.0f - BN_MOMENTUM) * (float)v;
            }
        } else {
            mean = job->run_mean_in[c];
            rstd = 1.0f / sqrtf(job->run_var_in[c] + BN_EPSILON);
        }
        job->save_mean[c] = mean;
        job->save_rstd[c] = rstd;
        bn_act_params p = {.mean = mean, .rstd = rstd, .weight = job->weight[c], .bias = job->bias[c],
                           .act = job->act};
        p.scale = rstd * p.weight;
        p.shift = p.bias - mean * p.scale;
        job->tk->bn_act_apply(x->data + c * plane, x->batch_stride, y->data + c * plane,
                              y->batch_stride, x->n, plane, &p);
    }
}

void batchnorm_forward_train(op_exec *ex, const f32_train_config *tk, int train,
                             cspresnet_act act, const tensor4 *x, const tensor4 *y,
                             const float *weight, const float *bias, float *run_mean,
                             float *run_var, int update_running, float *save_mean,
                             float *save_rstd)
{
    bn_train_job job = {.tk = tk, .x = x, .y = y, .weight = weight, .bias = bias,
                        .run_mean_in = run_mean, .run_var_in = run_var,
                        .save_mean = save_mean, .save_rstd = save_rstd,
                        .run_mean = update_running ? run_mean : NULL,
                        .run_var = update_running ? run_var : NULL, .train = train, .act = act};
    threadpool_run(ex->pool, bn_train_fwd_worker, &job);
}

static void bn_bwd_worker(void *arg, int t, int nt)
{
    const bn_train_job *job = arg;
    const tensor4 *x = job->x, *dy = job->dy, *dx = job->dx;
    const long plane = (long)x->h * x->w;
    const double count = (double)plane * x->n;
    long begin, end;
    split_range(x->c, t, nt, &begin, &end);
    for (long c = begin; c < end; c++) {
        bn_act_params p = {.mean = job->save_mean[c], .rstd = job->save_rstd[c],
                           .weight = job->weight[c], .bias = job->bias[c], .act = job->act,
                           .assign = job->assign};
        p.scale = p.rstd * p.weight;
        double sdy = 0.0, sdyx = 0.0;
        job->tk->bn_act_bwd_reduce(x->data + c * plane, x->batch_stride, dy->data + c * plane,
                                   dy->batch_stride, x->n, plane, &p, &sdy, &sdyx);
        if (job->dweight)
            job->dweight[c] = (float)sdyx;
        if (job->dbias)
            job->dbias[c] = (float)sdy;
        if (!dx)
            continue;
        p.mdy = job->train ? (float)(sdy / count) : 0.0f;
        p.mdyx = job->train ? (float)(sdyx / count) : 0.0f;
        job->tk->bn_act_bwd_apply(x->data + c * plane, x->batch_stride, dy->data + c * plane,
                                  dy->batch_stride, dx->data + c * plane, dx->batch_stride, x->n,
                                  plane, &p);
    }
}

void batchnorm_backward(op_exec *ex, const f32_train_config *tk, int train, cspresnet_act act,
                        const tensor4 *x, const tensor4 *dy, const tensor4 *dx, int assign,
                        const float *weight, const float *bias, const float *save_mean,
                        const float *save_rstd, float *dweight, float *dbias)
{
    bn_train_job job = {.tk = tk, .x = x, .dy = dy, .dx = dx, .weight = weight, .bias = bias,
                        .save_mean = (float *)save_mean, .save_rstd = (float *)save_rstd,
                        .dweight = dweight, .dbias = dbias, .train = train, .act = act,
                        .assign = assign};
    threadpool_run(ex->pool, bn_bwd_worker, &job);
}

/* ---------------------------------------------------------------- the op
 * batchnorm: out = BN(in[0]); params [weight, bias, _mean, _variance] (C each). Eval
 * runs in place (the dispatcher copies first when the planner gave out its own
 * storage). Train saves mean and rstd (2C floats); a BN whose activation the planner
 * fused (np->fused_act) writes that activation's output and takes its gradient. */

static void bn_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out, node_plan *np)
{
    (void)nd;
    (void)in;
    if (env->mode == GRAPH_TRAIN) {
        np->save_floats = 2L * out->c;
        np->din_assign_ok = 1;
    }
}

static void bn_forward(op_run *r)
{
    batchnorm_forward_eval(&r->ex, &r->out, r->p[0], r->p[1], r->p[2], r->p[3]);
}

static void bn_forward_train(op_run *r)
{
    batchnorm_forward_train(&r->ex, r->tk, r->bn_batch, r->np->fused_act ? r->next_act : CSPRESNET_ACT_NONE,
                            &r->in[0], &r->out, r->p[0], r->p[1], r->p[2], r->p[3], r->update_running,
                            r->save, r->save + r->out.c);
}

static void bn_backward(op_run *r)
{
    batchnorm_backward(&r->ex, r->tk, r->bn_batch, r->np->fused_act ? r->next_act : CSPRESNET_ACT_NONE,
                       &r->in[0], &r->dout, r->din[0].data ? &r->din[0] : NULL, r->din_assign[0], r->p[0], r->p[1], r->save,
                       r->save + r->in[0].c, r->dp[0], r->dp[1]);
}

const op_desc op_batchnorm = {"batchnorm", OP_IN_PLACE_ONLY,
    op_infer_same, bn_plan, bn_forward, bn_forward_train, bn_backward, NULL, NULL, NULL};
