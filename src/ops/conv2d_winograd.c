/*
 * conv2d_winograd.c - 3x3 stride-1 pad-1 convolution by Winograd F(4,3): each 4x4
 * output tile costs 36 multiply-adds per (input, output) channel pair instead of 144.
 *
 * in (N,C,H,W), weight (OC,C,3,3) -> out (N,OC,H,W), epilogue act(. + bias) + res.
 * Per forward: (1) U[36][OC][C] = G g G^T, all threads splitting OC, into the shared
 * scratch, unless the model prepared U at load (model/prepare.c, within a memory
 * budget: 4x the 3x3 weights do not fit the default memory goal, and the cost is ~160
 * flops per channel pair, small next to 36 * tiles); (2) tasks of (image, WINO_TB tiles, output-channel part):
 * V[36][C][TB] = B^T d B of the task's tiles into the thread's scratch, then 36 GEMMs
 * M_p[OCpart x TB] = U_p . V_p (for small C one block of mr output channels at a time,
 * so M stays in L1), then A^T M A plus the epilogue straight into out. The reduction
 * order of every output is fixed, so thread counts give identical bits. Batches with
 * few tiles go to conv2d_winograd_few.c instead (see conv2d_winograd_few_applies).
 */
#include "ops/ops.h"

#define WINO_TB 32   /* tiles per task: two 16-lane groups, one AVX-512 GEMM strip */
/* Floats between consecutive p-matrices of V and M beyond their size: without it the
 * 36 matrices often sit a power of two apart (C * WINO_TB * 4 bytes = 4 KiB for C = 32)
 * and all land in one L1 set; the stem convs ran 3x slower from conflict misses. */
#define WINO_SKEW 16
#define WINO_MIN_TILES 256  /* fewer tiles per batch: conv2d_winograd_few.c ... */
#define WINO_FEW_MAX_V (4L << 20)  /* ... if their V fits in this many bytes */

typedef struct wino_plan {
    int tiles_w, tiles_per_image, blocks;   /* blocks of WINO_TB tiles per image */
    int parts, part_oc;
} wino_plan;

/* V (36 x C x WINO_TB floats) small enough to stay in L2 while each block of output
 * channels re-reads it: then M only needs one block of rows (L1) at a time. */
static int wino_v_is_small(int in_c)
{
    return 36L * in_c * WINO_TB * (long)sizeof(float) <= 320L * 1024;
}

int conv2d_winograd_applies(const kernel_set *kt, int allow_winograd, const conv_geom *g)
{
    return allow_winograd && kt->winograd && g->k == 3 && g->stride == 1 && g->pad == 1 && g->out_h == g->in_h &&
           g->out_w == g->in_w;
}

/* Few tiles (a 20x20 map at batch 1 has 25, 40x40 100): this file's plan would write the whole
 * transformed weights (4x the weights) and read them back for one block of tiles;
 * conv2d_winograd_few.c transforms them in cache-sized slices instead. */
int conv2d_winograd_few_applies(const conv_geom *g, int n)
{
    long tiles = (long)((g->out_h + 3) / 4) * ((g->out_w + 3) / 4);
    /* every task of 32 output channels reads all of V: only while V is small (l at
     * batch 8 has 14 MB of V at 20x20; there the U of this file's plan is amortised) */
    long v_bytes = 36L * g->in_c * n * ((tiles + 15) / 16 * 16) * (long)sizeof(float);
    return (long)n * tiles < WINO_MIN_TILES && v_bytes <= WINO_FEW_MAX_V;
}

static void plan_wino(const kernel_set *kt, const conv_geom *g, int n, int threads, wino_plan *p)
{
    p->tiles_w = (g->out_w + 3) / 4;
    p->tiles_per_image = p->tiles_w * ((g->out_h + 3) / 4);
    p->blocks = (p->tiles_per_image + WINO_TB - 1) / WINO_TB;
    p->parts = 1;
    while ((long)n * p->blocks * p->parts < 2L * threads && g->out_c / (p->parts * 2) >= 2 * kt->gemm->mr)
        p->parts *= 2;
    int per = (g->out_c + p->parts - 1) / p->parts;
    p->part_oc = (per + kt->gemm->mr - 1) / kt->gemm->mr * kt->gemm->mr;
    p->parts = (g->out_c + p->part_oc - 1) / p->part_oc;
}

void conv2d_winograd_scratch(const kernel_set *kt, const conv_geom *g, int n, int threads,
                             long *per_thread, long *shared)
{
    wino_plan p;
    plan_wino(kt, g, n, threads, &p);
    *per_thread = 36L * (WINO_TB * (g->in_c + p.part_oc) + 2 * WINO_SKEW);
    *shared = 36L * g->out_c * g->in_c;
}

typedef struct wino_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in, *out;
    const conv_epilogue *ep;
    wino_plan p;
    float *u;
} wino_job;

static void weight_worker(void *arg, int t, int nt)
{
    const wino_job *job = arg;
    const conv_geom *g = job->g;
    long begin, end;
    split_range(g->out_c, t, nt, &begin, &end);
    if (end > begin)
        job->ex->kernels->winograd->weight(job->weight, g->in_c, (int)begin, (int)(end - begin),
                                      (long)g->out_c * g->in_c, job->u + begin * g->in_c);
}

/* M rows for output channels [oc_a, oc_b) of every p: M_p = U_p . V_p over the task's
 * tile columns (p outermost, so each V_p is reused from L1 by every block of rows). */
static void tile_gemm(const wino_job *job, const float *v, long v_stride, float *m, long m_stride,
                      int cols, int oc_a, int oc_b)
{
    const kernel_set *kt = job->ex->kernels;
    const int C = job->g->in_c;
    for (int pp = 0; pp < 36; pp++) {
        const float *u = job->u + (long)pp * job->g->out_c * C;
        for (int m0 = oc_a; m0 < oc_b; m0 += kt->gemm->mr) {
            int mr = oc_b - m0 < kt->gemm->mr ? oc_b - m0 : kt->gemm->mr;
            for (int s = 0; s < cols; s += kt->gemm->nr) {
                int nr = cols - s < kt->gemm->nr ? cols - s : kt->gemm->nr;
                kt->gemm->fn(C, u + (long)m0 * C, C, v + pp * v_stride + s, WINO_TB,
                         m + pp * m_stride + (long)(m0 - oc_a) * WINO_TB + s, WINO_TB, mr, nr, 0);
            }
        }
    }
}

/* Output channels [oc_a, oc_b) from M (row oc - m_row0 of each p): A^T M A + epilogue. */
static void tile_output(const wino_job *job, const wino_tiles *wt, int image, const float *m,
                        long m_stride, int m_row0, int t0, int groups, int oc_a, int oc_b)
{
    const kernel_set *kt = job->ex->kernels;
    const conv_epilogue *ep = job->ep;
    const long plane = (long)job->g->in_h * job->g->in_w;
    float *dst = job->out->data + image * job->out->batch_stride;
    const float *res = ep && ep->residual ? ep->residual->data + image * ep->residual->batch_stride : NULL;
    for (int oc = oc_a; oc < oc_b; oc++)
        for (int q = 0; q < groups; q++)
            kt->winograd->output(wt, m + (long)(oc - m_row0) * WINO_TB + 16 * q, m_stride, t0 + 16 * q,
                            ep && ep->bias ? ep->bias[oc] : 0.0f, ep ? ep->act : CSPRESNET_ACT_NONE,
                            res ? res + oc * plane : NULL, dst + oc * plane);
}

/* One task: V of the task's tiles (all input channels), then either (V small) per block
 * of mr output channels the 36 GEMMs into an L1-sized M and at once its output
 * transform, or (V large, reused best per p) all 36 GEMMs for the part, then outputs. */
static void tile_task(const wino_job *job, float *v, float *m, int image, int t0, int ntiles, int oc_a,
                      int oc_b)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const wino_plan *p = &job->p;
    /* tiles past the task's own count as absent: the next task (maybe another
     * thread's) writes them */
    const wino_tiles wt = {p->tiles_w, t0 + ntiles, g->in_h, g->in_w};
    const long plane = (long)g->in_h * g->in_w;
    const int C = g->in_c;
    const int groups = (ntiles + 15) / 16, cols = groups * 16;
    const float *src = job->in->data + image * job->in->batch_stride;
    const long v_stride = (long)C * WINO_TB + WINO_SKEW;

    for (int ic = 0; ic < C; ic++)
        for (int q = 0; q < groups; q++)
            kt->winograd->input(&wt, src + ic * plane, t0 + 16 * q, v + ic * WINO_TB + 16 * q, v_stride);

    if (wino_v_is_small(C)) {
        const long m_stride = (long)kt->gemm->mr * WINO_TB + WINO_SKEW;
        for (int m0 = oc_a; m0 < oc_b; m0 += kt->gemm->mr) {
            int m1 = oc_b - m0 < kt->gemm->mr ? oc_b : m0 + kt->gemm->mr;
            tile_gemm(job, v, v_stride, m, m_stride, cols, m0, m1);
            tile_output(job, &wt, image, m, m_stride, m0, t0, groups, m0, m1);
        }
        return;
    }
    const long m_stride = (long)p->part_oc * WINO_TB + WINO_SKEW;
    tile_gemm(job, v, v_stride, m, m_stride, cols, oc_a, oc_b);
    tile_output(job, &wt, image, m, m_stride, oc_a, t0, groups, oc_a, oc_b);
}

/* Each thread takes an equal contiguous run of (part, image, tile) and cuts it into
 * tasks of at most WINO_TB tiles inside one image: equal work per thread even when
 * the tiles do not divide into whole blocks (80x80: 400 tiles, 12.5 blocks). */
static void tile_worker(void *arg, int t, int nt)
{
    const wino_job *job = arg;
    const wino_plan *p = &job->p;
    float *v = job->ex->fast_scratch + t * job->ex->fast_per_thread;
    float *m = v + 36L * (WINO_TB * job->g->in_c + WINO_SKEW);
    const long per_part = (long)job->in->n * p->tiles_per_image;
    long pos, end;
    split_range(per_part * p->parts, t, nt, &pos, &end);
    while (pos < end) {
        int part = (int)(pos / per_part);
        long within = pos % per_part;
        int image = (int)(within / p->tiles_per_image), t0 = (int)(within % p->tiles_per_image);
        long len = p->tiles_per_image - t0;
        len = len < WINO_TB ? len : WINO_TB;
        len = len < end - pos ? len : end - pos;
        int oc_a = part * p->part_oc;
        int oc_b = oc_a + p->part_oc < job->g->out_c ? oc_a + p->part_oc : job->g->out_c;
        tile_task(job, v, m, image, t0, (int)len, oc_a, oc_b);
        pos += len;
    }
}

void conv2d_winograd_forward(op_exec *ex, const conv_geom *g, const float *weight,
                             const tensor4 *in, const tensor4 *out, const conv_epilogue *ep)
{
    wino_job job = {ex, g, weight, in, out, ep, {0}, NULL};
    const int threads = threadpool_size(ex->pool);
    plan_wino(ex->kernels, g, in->n, threads, &job.p);
    if (ex->prepared) {
        job.u = (float *)ex->prepared;   /* read only from here on */
    } else {
        job.u = ex->fast_scratch + threads * ex->fast_per_thread;
        threadpool_run(ex->pool, weight_worker, &job);
    }
    threadpool_run(ex->pool, tile_worker, &job);
}

long conv2d_winograd_u_floats(const conv_geom *g) { return 36L * g->out_c * g->in_c; }

void conv2d_winograd_u(const kernel_set *kt, const conv_geom *g, const float *weight, float *u)
{
    kt->winograd->weight(weight, g->in_c, 0, g->out_c, (long)g->out_c * g->in_c, u);
}
