/*
 * conv2d_winograd_few.c - Winograd F(4,3) for 3x3 stride-1 convs with few tiles (a
 * 20x20 map at batch 1 has 25), where conv2d_winograd.c's plan does badly: there the
 * transformed weights U (36 x OC x C, 21 MB for 384 channels) are written whole and
 * read back from memory on every forward for only one block of tiles.
 *
 * in (N,C,H,W), weight (OC,C,3,3) -> out (N,OC,H,W), epilogue act(. + bias) + res.
 * Here (1) V[36][C][cols] = B^T d B of every tile of every image (cols = N x tiles
 * rounded up to 16 per image), threads splitting (image, channel) planes, into the
 * shared scratch; (2) tasks of FEW_OC output channels: the task transforms just its
 * rows of U into thread scratch (L2-sized), multiplies them with V for 32 tiles at a
 * time (M, 147 KB, stays in L2) and runs the output transform with the epilogue. U never
 * leaves the cache; V (small: few tiles) is read once per task. Each output's sums
 * run in one fixed order, so thread counts give identical bits.
 */
#include "ops/ops.h"

#define FEW_OC 32     /* output channels per task: U rows of 36 x 32 x C floats (32 measured
                         6-9% faster than 16: V, read once per task, is read half as often) */
#define FEW_TB 32     /* tile columns per GEMM strip block (M = 36 x FEW_OC x FEW_TB) */
#define FEW_SKEW 16   /* floats between p-matrices: keeps them out of one L1 set */

typedef struct few_plan {
    int tiles_w, tiles_per_image, tp;   /* tp: the image's columns in V (multiple of 16) */
    long cols;                          /* n * tp */
    long v_stride, u_stride, m_stride;  /* floats between p-matrices */
    int tasks;
} few_plan;

static void plan_few(const conv_geom *g, int n, few_plan *p)
{
    p->tiles_w = (g->out_w + 3) / 4;
    p->tiles_per_image = p->tiles_w * ((g->out_h + 3) / 4);
    p->tp = (p->tiles_per_image + 15) / 16 * 16;
    p->cols = (long)n * p->tp;
    p->v_stride = (long)g->in_c * p->cols + FEW_SKEW;
    p->u_stride = (long)FEW_OC * g->in_c + FEW_SKEW;
    p->m_stride = (long)FEW_OC * FEW_TB + FEW_SKEW;
    p->tasks = (g->out_c + FEW_OC - 1) / FEW_OC;
}

void conv2d_winograd_few_scratch(const conv_geom *g, int n, long *per_thread, long *shared)
{
    few_plan p;
    plan_few(g, n, &p);
    *per_thread = 36L * (p.u_stride + p.m_stride);
    *shared = 36L * p.v_stride;
}

typedef struct few_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in, *out;
    const conv_epilogue *ep;
    few_plan p;
    float *v;
} few_job;

static void input_worker(void *arg, int t, int nt)
{
    const few_job *job = arg;
    const conv_geom *g = job->g;
    const few_plan *p = &job->p;
    const wino_tiles wt = {p->tiles_w, p->tiles_per_image, g->in_h, g->in_w};
    const long plane = (long)g->in_h * g->in_w;
    long begin, end;
    split_range((long)job->in->n * g->in_c, t, nt, &begin, &end);
    for (long i = begin; i < end; i++) {
        int image = (int)(i / g->in_c), ic = (int)(i % g->in_c);
        const float *src = job->in->data + image * job->in->batch_stride + ic * plane;
        float *v = job->v + ic * p->cols + (long)image * p->tp;
        for (int t0 = 0; t0 < p->tiles_per_image; t0 += 16)
            job->ex->kernels->winograd->input(&wt, src, t0, v + t0, p->v_stride);
    }
}

/* Output channels [oc0, oc0 + cnt): their U rows, then per image and block of tiles
 * the 36 products and the output transform. */
static void chunk_task(const few_job *job, float *u, float *m, int oc0, int cnt)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const few_plan *p = &job->p;
    const conv_epilogue *ep = job->ep;
    const wino_tiles wt = {p->tiles_w, p->tiles_per_image, g->in_h, g->in_w};
    const long plane = (long)g->in_h * g->in_w;
    const int C = g->in_c;
    kt->winograd->weight(job->weight, C, oc0, cnt, p->u_stride, u);
    for (int image = 0; image < job->in->n; image++) {
        float *dst = job->out->data + image * job->out->batch_stride;
        const float *res = ep && ep->residual ? ep->residual->data + image * ep->residual->batch_stride : NULL;
        for (int t0 = 0; t0 < p->tiles_per_image; t0 += FEW_TB) {
            int cols = p->tp - t0 < FEW_TB ? p->tp - t0 : FEW_TB; /* a multiple of 16 */
            const float *v = job->v + (long)image * p->tp + t0;
            for (int pp = 0; pp < 36; pp++)
                for (int r0 = 0; r0 < cnt; r0 += kt->gemm->mr) {
                    int mr = cnt - r0 < kt->gemm->mr ? cnt - r0 : kt->gemm->mr;
                    for (int s = 0; s < cols; s += kt->gemm->nr) {
                        int nr = cols - s < kt->gemm->nr ? cols - s : kt->gemm->nr;
                        kt->gemm->fn(C, u + pp * p->u_stride + (long)r0 * C, C, v + pp * p->v_stride + s, p->cols,
                                 m + pp * p->m_stride + (long)r0 * FEW_TB + s, FEW_TB, mr, nr, 0);
                    }
                }
            for (int r = 0; r < cnt; r++) {
                int oc = oc0 + r;
                for (int q = 0; q < cols; q += 16)
                    kt->winograd->output(&wt, m + (long)r * FEW_TB + q, p->m_stride, t0 + q,
                                    ep && ep->bias ? ep->bias[oc] : 0.0f, ep ? ep->act : CSPRESNET_ACT_NONE,
                                    res ? res + oc * plane : NULL, dst + oc * plane);
            }
        }
    }
}

static void chunk_worker(void *arg, int t, int nt)
{
    const few_job *job = arg;
    float *u = job->ex->fast_scratch + t * job->ex->fast_per_thread;
    float *m = u + 36L * job->p.u_stride;
    long begin, end;
    split_range(job->p.tasks, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int oc0 = (int)task * FEW_OC;
        chunk_task(job, u, m, oc0, job->g->out_c - oc0 < FEW_OC ? job->g->out_c - oc0 : FEW_OC);
    }
}

void conv2d_winograd_few_forward(op_exec *ex, const conv_geom *g, const float *weight,
                                 const tensor4 *in, const tensor4 *out, const conv_epilogue *ep)
{
    few_job job = {ex, g, weight, in, out, ep, {0}, NULL};
    plan_few(g, in->n, &job.p);
    job.v = ex->fast_scratch + threadpool_size(ex->pool) * ex->fast_per_thread;
    threadpool_run(ex->pool, input_worker, &job);
    threadpool_run(ex->pool, chunk_worker, &job);
}
