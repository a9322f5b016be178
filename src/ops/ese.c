/*
 * ese.c - EffectiveSELayer (CenterMask's effective squeeze-excitation), in place.
 *
 * x (N,C,H,W); fc weight (C,C,1,1), bias (C):
 *   s = mean_hw(x) (N,C); z = fc_w . s + fc_b (N,C); g = clip(0.1666667 z + 0.5, 0, 1);
 *   x *= g per (n, c).
 * Scratch: s and z, 2*N*C floats of ex->op_scratch. Three parallel passes; the eval
 * forward is the train-mode forward run in place.
 */
#include "graph/graph.h"
#include "kernels/pointwise.h"
#include "ops/train_ops.h"

long ese_scratch_floats(int n, int c) { return 2L * n * c; }

/* ---------------------------------------------------------------- forward, backward
 * Out of place (or in place for eval): y = x * g with x kept; saves s = mean_hw(x) and z = fc(s) (N*C each)
 * for the backward pass:
 *   dg = sum_hw dy * x;  dz = dg * 0.1666667 where 0 < g < 1 (Paddle's hardsigmoid
 *   gradient: zero in the clipped regions);  dfc_w[o][i] = sum_n dz[n][o] s[n][i];
 *   dfc_b[o] = sum_n dz[n][o];  ds[n][i] = sum_o fc_w[o][i] dz[n][o];
 *   dx += dy * g + ds / (H*W).
 * Scratch for the backward: 2*N*C floats (dz, ds) in ex->op_scratch. Every reduction
 * is owned by one thread and runs in a fixed order. */
typedef struct ese_train_job {
    const tensor4 *x, *y, *dy, *dx;
    const float *fc_weight, *fc_bias;
    float *save_s, *save_z, *dz, *ds, *dfc_w, *dfc_b;
    mean_fn mean;   /* the table's plane mean (forward) */
    scale_fn scale; /* and its gate scaling */
} ese_train_job;

static float gate_of(float z)
{
    float g = ESE_HARDSIGMOID_SLOPE * z + ESE_HARDSIGMOID_OFFSET;
    return g < 0.0f ? 0.0f : (g > 1.0f ? 1.0f : g);
}

static void ese_tr_mean_worker(const void *arg, long p, long plane)
{
    const ese_train_job *job = arg;
    const tensor4 *x = job->x;
    job->save_s[p] = job->mean(tensor4_plane(x, p), plane);
}

static void ese_tr_fc_worker(void *arg, int t, int nt)
{
    const ese_train_job *job = arg;
    const int C = job->x->c;
    long begin, end;
    split_range((long)job->x->n * C, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / C), oc = (int)(p % C);
        const float *w = job->fc_weight + (long)oc * C;
        const float *s = job->save_s + (long)n * C;
        float z = job->fc_bias[oc];
        for (int ic = 0; ic < C; ic++)
            z += w[ic] * s[ic];
        job->save_z[p] = z;
    }
}

static void ese_tr_scale_worker(const void *arg, long p, long plane)
{
    const ese_train_job *job = arg;
    const tensor4 *x = job->x, *y = job->y;
    const float *src = tensor4_plane(x, p);
    float *dst = tensor4_plane(y, p);
    job->scale(src, gate_of(job->save_z[p]), dst, plane);
}

void ese_forward_train(op_exec *ex, const tensor4 *x, const tensor4 *y, const float *fc_weight,
                       const float *fc_bias, float *save_s, float *save_z)
{
    ese_train_job job = {.x = x, .y = y, .fc_weight = fc_weight, .fc_bias = fc_bias,
                         .save_s = save_s, .save_z = save_z,
                         .mean = ex->kernels ? ex->kernels->reduce->mean : f32_mean__ref,
                         .scale = ex->kernels ? ex->kernels->reduce->scale : f32_scale__ref};
    planes_run(ex->pool, job.x, ese_tr_mean_worker, &job);
    threadpool_run(ex->pool, ese_tr_fc_worker, &job);
    planes_run(ex->pool, job.x, ese_tr_scale_worker, &job);
}

/* Eval mode is the train-mode forward in place, with s and z kept in op_scratch. */
void ese_forward(op_exec *ex, const tensor4 *x, const float *fc_weight, const float *fc_bias)
{
    long nc = (long)x->n * x->c;
    ese_forward_train(ex, x, x, fc_weight, fc_bias, ex->op_scratch, ex->op_scratch + nc);
}

static void ese_bwd_dz_worker(const void *arg, long p, long plane)
{
    const ese_train_job *job = arg;
    const tensor4 *x = job->x, *dy = job->dy;
    const float *xs = tensor4_plane(x, p);
    const float *g = tensor4_plane(dy, p);
    double s = 0.0;
    for (long i = 0; i < plane; i++)
        s += (double)g[i] * xs[i];
    float v = ESE_HARDSIGMOID_SLOPE * job->save_z[p] + ESE_HARDSIGMOID_OFFSET;
    job->dz[p] = v > 0.0f && v < 1.0f ? (float)s * ESE_HARDSIGMOID_SLOPE : 0.0f;
}

static void ese_bwd_fc_worker(void *arg, int t, int nt)
{
    const ese_train_job *job = arg;
    const int C = job->x->c, N = job->x->n;
    long begin, end;
    /* rows o of dfc_w / dfc_b */
    split_range(C, t, nt, &begin, &end);
    for (long o = begin; o < end; o++) {
        if (job->dfc_w) {
            for (int i = 0; i < C; i++) {
                double s = 0.0;
                for (int n = 0; n < N; n++)
                    s += (double)job->dz[(long)n * C + o] * job->save_s[(long)n * C + i];
                job->dfc_w[o * C + i] = (float)s;
            }
        }
        if (job->dfc_b) {
            double s = 0.0;
            for (int n = 0; n < N; n++)
                s += job->dz[(long)n * C + o];
            job->dfc_b[o] = (float)s;
        }
    }
    /* ds[n][i] */
    split_range((long)N * C, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / C), i = (int)(p % C);
        double s = 0.0;
        for (int o = 0; o < C; o++)
            s += (double)job->fc_weight[(long)o * C + i] * job->dz[(long)n * C + o];
        job->ds[p] = (float)s;
    }
}

static void ese_bwd_dx_worker(const void *arg, long p, long plane)
{
    const ese_train_job *job = arg;
    const tensor4 *dy = job->dy, *dx = job->dx;
    const float *g = tensor4_plane(dy, p);
    float *d = tensor4_plane(dx, p);
    float gate = gate_of(job->save_z[p]), add = job->ds[p] / (float)plane;
    for (long i = 0; i < plane; i++)
        d[i] += g[i] * gate + add;
}

void ese_backward(op_exec *ex, const tensor4 *x, const tensor4 *dy, const tensor4 *dx,
                  const float *fc_weight, const float *save_s, const float *save_z,
                  float *dfc_weight, float *dfc_bias)
{
    long nc = (long)x->n * x->c;
    ese_train_job job = {.x = x, .dy = dy, .dx = dx, .fc_weight = fc_weight,
                         .save_s = (float *)save_s, .save_z = (float *)save_z,
                         .dz = ex->op_scratch, .ds = ex->op_scratch + nc,
                         .dfc_w = dfc_weight, .dfc_b = dfc_bias};
    planes_run(ex->pool, job.x, ese_bwd_dz_worker, &job);
    threadpool_run(ex->pool, ese_bwd_fc_worker, &job);
    if (dx)
        planes_run(ex->pool, job.x, ese_bwd_dx_worker, &job);
}

/* ---------------------------------------------------------------- GEMM forms
 * The same op with the fc products on the kernel set's GEMM tile (training, sets
 * with a tile): z^T[C x N] = W . s^T, dW = dz^T . s, ds = dz . W. At 32x32 input the
 * maps are 1-4 pixels, so these C x C x N products are most of an ESE's work.
 * Transposes ride on the passes that touch each (n, c) anyway. Scratch: forward 2*N*C
 * floats (s^T, z^T), backward 3*N*C (dz, ds, dz^T). Tasks are row blocks of the
 * products; every element is reduced in the tile's fixed k order. */
typedef struct ese_gemm_job {
    ese_train_job b;
    const kernel_set *kt;
    float *st, *zt, *dzt;
} ese_gemm_job;

static void ese_g_mean_worker(const void *arg, long p, long plane)
{
    const ese_gemm_job *job = arg;
    const tensor4 *x = job->b.x;
    int n = (int)(p / x->c), c = (int)(p % x->c);
    float s = f32_mean__ref(tensor4_plane(x, p), plane);
    job->b.save_s[p] = s;
    job->st[(long)c * x->n + n] = s;
}

/* rows [r_begin, r_end) of C[M x N] = A[M x K] . B[K x N] */
static void gemm_rows(const kernel_set *kt, long r_begin, long r_end, int N, int K, const float *a,
                      long lda, const float *b, long ldb, float *c, long ldc)
{
    for (long i0 = r_begin; i0 < r_end; i0 += kt->gemm->mr) {
        int mr = r_end - i0 < kt->gemm->mr ? (int)(r_end - i0) : kt->gemm->mr;
        for (int j0 = 0; j0 < N; j0 += kt->gemm->nr) {
            int nr = N - j0 < kt->gemm->nr ? N - j0 : kt->gemm->nr;
            kt->gemm->fn(K, a + i0 * lda, lda, b + j0, ldb, c + i0 * ldc + j0, ldc, mr, nr, 0);
        }
    }
}

/* row blocks of mr rows out of M, split by thread */
static void row_split(const kernel_set *kt, long M, int t, int nt, long *begin, long *end)
{
    long blocks = (M + kt->gemm->mr - 1) / kt->gemm->mr, b0, b1;
    split_range(blocks, t, nt, &b0, &b1);
    *begin = b0 * kt->gemm->mr;
    *end = b1 * kt->gemm->mr < M ? b1 * kt->gemm->mr : M;
}

static void ese_g_fc_worker(void *arg, int t, int nt)
{
    const ese_gemm_job *job = arg;
    const int C = job->b.x->c, N = job->b.x->n;
    long begin, end;
    row_split(job->kt, C, t, nt, &begin, &end);
    gemm_rows(job->kt, begin, end, N, C, job->b.fc_weight, C, job->st, N, job->zt, N);
}

static void ese_g_scale_worker(const void *arg, long p, long plane)
{
    const ese_gemm_job *job = arg;
    const tensor4 *x = job->b.x, *y = job->b.y;
    int n = (int)(p / x->c), c = (int)(p % x->c);
    float z = job->zt[(long)c * x->n + n] + job->b.fc_bias[c];
    job->b.save_z[p] = z;
    const float *src = tensor4_plane(x, p);
    float *dst = tensor4_plane(y, p);
    job->kt->reduce->scale(src, gate_of(z), dst, plane);
}

void ese_forward_train_gemm(op_exec *ex, const tensor4 *x, const tensor4 *y, const float *fc_weight,
                            const float *fc_bias, float *save_s, float *save_z, float *scratch)
{
    long nc = (long)x->n * x->c;
    ese_gemm_job job = {.b = {.x = x, .y = y, .fc_weight = fc_weight, .fc_bias = fc_bias,
                              .save_s = save_s, .save_z = save_z},
                        .kt = ex->kernels, .st = scratch, .zt = scratch + nc};
    planes_run(ex->pool, job.b.x, ese_g_mean_worker, &job);
    threadpool_run(ex->pool, ese_g_fc_worker, &job);
    planes_run(ex->pool, job.b.x, ese_g_scale_worker, &job);
}

static void ese_g_dz_worker(void *arg, int t, int nt)
{
    const ese_gemm_job *job = arg;
    const tensor4 *x = job->b.x;
    const int C = x->c, N = x->n;
    long begin, end;
    plane_split(x, t, nt, &begin, &end);
    /* dz of this thread's planes, then their dz^T */
    for (long p = begin; p < end; p++) {
        ese_bwd_dz_worker(&job->b, p, (long)x->h * x->w);
        job->dzt[(p % C) * N + p / C] = job->b.dz[p];
    }
}

static void ese_g_fc_bwd_worker(void *arg, int t, int nt)
{
    const ese_gemm_job *job = arg;
    const int C = job->b.x->c, N = job->b.x->n;
    long begin, end;
    row_split(job->kt, C, t, nt, &begin, &end);
    if (job->b.dfc_w)   /* dW[C x C] = dz^T[C x N] . s[N x C] */
        gemm_rows(job->kt, begin, end, C, N, job->dzt, N, job->b.save_s, C, job->b.dfc_w, C);
    if (job->b.dfc_b)
        for (long o = begin; o < end; o++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++)
                s += job->dzt[o * N + n];
            job->b.dfc_b[o] = s;
        }
    /* ds[N x C] = dz[N x C] . W[C x C] */
    row_split(job->kt, N, t, nt, &begin, &end);
    gemm_rows(job->kt, begin, end, C, C, job->b.dz, C, job->b.fc_weight, C, job->b.ds, C);
}

void ese_backward_gemm(op_exec *ex, const tensor4 *x, const tensor4 *dy, const tensor4 *dx,
                       const float *fc_weight, const float *save_s, const float *save_z,
                       float *dfc_weight, float *dfc_bias, float *scratch)
{
    long nc = (long)x->n * x->c;
    ese_gemm_job job = {.b = {.x = x, .dy = dy, .dx = dx, .fc_weight = fc_weight,
                              .save_s = (float *)save_s, .save_z = (float *)save_z,
                              .dz = scratch, .ds = scratch + nc, .dfc_w = dfc_weight,
                              .dfc_b = dfc_bias},
                        .kt = ex->kernels, .dzt = scratch + 2 * nc};
    threadpool_run(ex->pool, ese_g_dz_worker, &job);
    threadpool_run(ex->pool, ese_g_fc_bwd_worker, &job);
    if (dx)
        planes_run(ex->pool, job.b.x, ese_bwd_dx_worker, &job.b);
}

/* ---------------------------------------------------------------- the op
 * ese: out = in[0] * hardsigmoid(fc(mean_hw(in[0]))); params [fc weight (C,C,1,1), fc
 * bias (C)]. Eval in place with s and z in the shared workspace; train saves s and z
 * (2*N*C floats) and, on tables with a GEMM tile, runs the fc products on it. */

static void ese_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out, node_plan *np)
{
    (void)nd;
    (void)in;
    long nc = (long)out->n * out->c;
    np->path = env->kernels->gemm != NULL;
    if (env->mode == GRAPH_EVAL) {
        np->ws_shared = ese_scratch_floats(out->n, out->c);
    } else {
        np->save_floats = 2 * nc;
        np->ws_shared = 3 * nc;
    }
}

static void ese_forward_node(op_run *r) { ese_forward(&r->ex, &r->out, r->p[0], r->p[1]); }

static void ese_forward_train_node(op_run *r)
{
    long nc = (long)r->out.n * r->out.c;
    if (r->np->path)
        ese_forward_train_gemm(&r->ex, &r->in[0], &r->out, r->p[0], r->p[1], r->save, r->save + nc,
                               r->ex.op_scratch);
    else
        ese_forward_train(&r->ex, &r->in[0], &r->out, r->p[0], r->p[1], r->save, r->save + nc);
}

static void ese_backward_node(op_run *r)
{
    long nc = (long)r->in[0].n * r->in[0].c;
    const tensor4 *dx = r->din[0].data ? &r->din[0] : NULL;
    if (r->np->path)
        ese_backward_gemm(&r->ex, &r->in[0], &r->dout, dx, r->p[0], r->save, r->save + nc, r->dp[0], r->dp[1],
                          r->ex.op_scratch);
    else
        ese_backward(&r->ex, &r->in[0], &r->dout, dx, r->p[0], r->save, r->save + nc, r->dp[0], r->dp[1]);
}

static double ese_macs(const gnode *nd, const tshape *in, const tshape *out)
{
    (void)nd;
    (void)in;
    return (double)out->n * out->c * out->c;
}

const op_desc op_ese = {"ese", OP_IN_PLACE_ONLY,
    op_infer_same, ese_plan, ese_forward_node, ese_forward_train_node, ese_backward_node, ese_macs, NULL, NULL};
