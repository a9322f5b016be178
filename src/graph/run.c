/*
 * run.c - the one dispatcher: every node runs through its op descriptor with an op_run
 * holding views of its tensors (and gradients), its parameters and its workspace.
 *
 * Eval: forward of each node not skipped; an OP_IN_PLACE_ONLY op whose output got its
 * own storage first gets its input copied there. Train: forward_train, and backward
 * in reverse; a fused BN writes (and takes the gradient of) its activation's output,
 * which is skipped. The first backward to write a gradient (graph_plan_grad_writers)
 * assigns it when its op can, else the gradient is zeroed just before it runs; every
 * later one adds. Nothing here allocates.
 */
#include <string.h>
#include <time.h>

#include "graph/graph.h"

tensor4 graph_view(const graph_runner *r, int t, int grad)
{
    const tensor_plan *tp = &r->p->t[t];
    tensor4 v = {NULL, tp->s.n, tp->s.c, tp->s.h, tp->s.w, tp->bstride};
    long off = grad ? tp->goff : tp->off;
    if (!grad && t == 0 && r->p->mode == GRAPH_EVAL)
        v.data = (float *)r->input;   /* read only: no node writes tensor 0 */
    else if (off >= 0)
        v.data = r->block + off;
    return v;
}

typedef struct copy_job {
    const tensor4 *src, *dst;
} copy_job;

static void copy_worker(void *arg, int t, int nt)
{
    const copy_job *job = arg;
    const long plane = (long)job->src->h * job->src->w;
    long begin, end;
    split_range((long)job->src->n * job->src->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        long n = p / job->src->c, c = p % job->src->c;
        memcpy(job->dst->data + n * job->dst->batch_stride + c * plane,
               job->src->data + n * job->src->batch_stride + c * plane, (size_t)plane * sizeof(float));
    }
}

typedef struct zero_job {
    const tensor4 *v;
} zero_job;

static void zero_worker(void *arg, int t, int nt)
{
    const tensor4 *v = ((const zero_job *)arg)->v;
    const long plane = (long)v->h * v->w;
    long begin, end;
    split_range((long)v->n * v->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++)
        memset(v->data + p / v->c * v->batch_stride + p % v->c * plane, 0, (size_t)plane * sizeof(float));
}

static op_run make_run(graph_runner *r, int i)
{
    const gnode *nd = &r->g->nodes[i];
    op_run run;
    memset(&run, 0, sizeof run);
    run.ex = r->ex;
    const graph_plan *p = r->p;
    run.ex.scratch = r->block + p->ws_off;
    run.ex.scratch_per_thread = p->ws_thread;
    run.ex.fast_scratch = run.ex.scratch;
    run.ex.fast_per_thread = p->ws_thread;
    run.ex.op_scratch = run.ex.scratch + p->ws_thread * p->threads;
    run.ex.prepared = r->prepared_off && r->prepared_off[i] >= 0 ? r->prepared + r->prepared_off[i] : NULL;
    run.tk = r->tk;
    run.nd = nd;
    run.np = &p->np[i];
    for (int j = 0; j < nd->n_in; j++)
        run.in[j] = graph_view(r, nd->in[j], 0);
    run.out = graph_view(r, nd->out, 0);
    for (int j = 0; j < GN_MAX_PARAM; j++)
        if (nd->param[j] >= 0) {
            run.p[j] = param_at(r->weights, &r->params[nd->param[j]]);
            run.dp[j] = r->grads ? param_at(r->grads, &r->params[nd->param[j]]) : NULL;
        }
    if (p->mode == GRAPH_TRAIN) {
        run.save = r->block + p->save_off + run.np->save_off;
        if (run.np->fused_act) {
            run.next_act = r->g->nodes[i + 1].a.act;
            run.out = graph_view(r, r->g->nodes[i + 1].out, 0);
        }
    }
    return run;
}

static void timed(graph_runner *r, int i, void (*fn)(op_run *), op_run *run)
{
    if (!r->prof) {
        fn(run);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fn(run);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->prof[i] += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}

void graph_forward(graph_runner *r, int first, int end, int bn_batch, int update_running)
{
    const int train = r->p->mode == GRAPH_TRAIN;
    for (int i = first; i < end; i++) {
        if (r->p->np[i].skip)
            continue;
        op_run run = make_run(r, i);
        run.bn_batch = bn_batch;
        run.update_running = update_running;
        const op_desc *op = run.nd->op;
        if (!train && op->in_place == OP_IN_PLACE_ONLY && run.out.data != run.in[0].data) {
            copy_job job = {&run.in[0], &run.out};
            threadpool_run(r->ex.pool, copy_worker, &job);
        }
        if (r->observe)
            r->observe(r->observe_arg, i, &run);
        timed(r, i, train ? op->forward_train : op->forward, &run);
    }
}

void graph_backward(graph_runner *r, int first, int end, int bn_batch, const unsigned char *grad_wanted)
{
    for (int i = end - 1; i >= first; i--) {
        if (r->p->np[i].skip)
            continue;
        op_run run = make_run(r, i);
        const gnode *nd = run.nd;
        run.bn_batch = bn_batch;
        for (int j = 0; j < nd->n_in; j++) {
            if (!grad_wanted[nd->in[j]])
                continue;
            run.din[j] = graph_view(r, nd->in[j], 1);
            if (!run.np->din_first[j])
                continue;
            if (run.np->din_assign_ok) {
                run.din_assign[j] = 1;
            } else {
                zero_job job = {&run.din[j]};
                threadpool_run(r->ex.pool, zero_worker, &job);
            }
        }
        run.dout = graph_view(r, run.np->fused_act ? r->g->nodes[i + 1].out : nd->out, 1);
        run.ex.pool = r->ex.pool;
        nd->op->backward(&run);
    }
}
