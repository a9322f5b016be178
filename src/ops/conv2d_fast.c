/*
 * conv2d_fast.c - the fast forward convolution: per-ISA GEMM tiles from the kernel
 * table, 1x1 convs as a GEMM straight over the input (no im2col; packed when the
 * planes are 4 KiB apart), other convs as an im2col GEMM over a row-major panel
 * (the table's im2col_rows), 3x3 stride-1 convs by Winograd F(4,3) where the table
 * has it (conv2d_winograd.c). Forward only.
 *
 * in (N,C,H,W), weight (OC,C,k,k) -> out (N,OC,OH,OW), epilogue act(. + bias) + res.
 * Tasks are (output-channel part, image, up to CONV_NC output pixels), each thread
 * taking an equal run of pixels; the channel parts only exist when there are too
 * few pixel blocks to keep every thread busy. Each
 * output element is reduced over K in the same fixed order (KC blocks, then the
 * kernel's k loop) whatever the thread count or split, so 1 and N threads give
 * identical bits. The epilogue runs on a task's OC x nc block right after its last K
 * block, while it is in cache. The A operand is the OIHW weight itself (rows of
 * lda = C*k*k): the kernels broadcast from it, so no packed copy of the weights
 * exists and a model stays shared read-only.
 */
#include "ops/ops.h"

typedef struct fast_plan {
    long pixels, blocks;     /* output pixels per image, CONV_NC blocks per image */
    int parts, part_oc;      /* output-channel parts and channels per part (multiple of mr) */
    int is_1x1;              /* B is the input itself (1x1, stride 1, pad 0) */
} fast_plan;

static void plan_gemm(const kernel_set *kt, const conv_geom *g, int n, int threads, fast_plan *p)
{
    p->pixels = (long)g->out_h * g->out_w;
    p->blocks = (p->pixels + CONV_NC - 1) / CONV_NC;
    /* A 1x1 conv reads B straight from the input, unless its channel planes lie a
     * multiple of 4 KiB apart: then every row of a B strip maps to the same L1 sets
     * and packing it (im2col of a 1x1 conv is a copy) is cheaper than the misses. */
    p->is_1x1 = g->k == 1 && g->stride == 1 && g->pad == 0 && (p->pixels * (long)sizeof(float)) % 4096 != 0;
    p->parts = 1;
    while ((long)n * p->blocks * p->parts < 4L * threads && g->out_c / (p->parts * 2) >= 2 * kt->gemm->mr)
        p->parts *= 2;
    int per = (g->out_c + p->parts - 1) / p->parts;
    p->part_oc = (per + kt->gemm->mr - 1) / kt->gemm->mr * kt->gemm->mr;
    p->parts = (g->out_c + p->part_oc - 1) / p->part_oc;
}

int conv2d_fast_plan(const kernel_set *kt, const conv_geom *g, int n, int threads, int winograd,
                     long *per_thread, long *shared)
{
    *per_thread = *shared = 0;
    if (conv2d_winograd_applies(kt, winograd, g)) {
        if (conv2d_winograd_few_applies(g, n)) {
            conv2d_winograd_few_scratch(g, n, per_thread, shared);
            return CONV_PATH_WINOGRAD_FEW;
        }
        conv2d_winograd_scratch(kt, g, n, threads, per_thread, shared);
        return CONV_PATH_WINOGRAD;
    }
    fast_plan p;
    plan_gemm(kt, g, n, threads, &p);
    *per_thread = p.is_1x1 ? 0 : (long)CONV_KC * CONV_NC;
    return CONV_PATH_GEMM;
}

typedef struct gemm_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in, *out;
    const conv_epilogue *ep;
    fast_plan p;
} gemm_job;

static void gemm_task(const gemm_job *job, float *panel, int image, long n0, int nc, int oc_a, int oc_b)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const long K = (long)g->in_c * g->k * g->k, N = job->p.pixels;
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    for (long k0 = 0; k0 < K; k0 += CONV_KC) {
        int kc = (int)(K - k0 < CONV_KC ? K - k0 : CONV_KC);
        const float *b;
        long ldb;
        if (job->p.is_1x1) {
            b = src + k0 * N + n0;
            ldb = N;
        } else {
            kt->conv->im2col_rows(g, src, (int)k0, kc, n0, nc, panel, CONV_NC);
            b = panel;
            ldb = CONV_NC;
        }
        for (int m0 = oc_a; m0 < oc_b; m0 += kt->gemm->mr) {
            int mr = oc_b - m0 < kt->gemm->mr ? oc_b - m0 : kt->gemm->mr;
            const float *a = job->weight + m0 * K + k0;
            for (int s = 0; s < nc; s += kt->gemm->nr) {
                int nr = nc - s < kt->gemm->nr ? nc - s : kt->gemm->nr;
                kt->gemm->fn(kc, a, K, b + s, ldb, dst + m0 * N + s, N, mr, nr, k0 > 0);
            }
        }
    }
    const conv_epilogue *ep = job->ep;
    if (!ep)
        return;
    const float *res = ep->residual ? ep->residual->data + image * ep->residual->batch_stride + n0 : NULL;
    for (int oc = oc_a; oc < oc_b; oc++)
        kt->conv->bias_act(dst + oc * N, nc, ep->bias ? ep->bias[oc] : 0.0f, ep->act, res ? res + oc * N : NULL);
}

/* Each thread takes an equal contiguous run of (part, image, pixel) and cuts it into
 * tasks of at most CONV_NC pixels inside one image: equal work per thread even when
 * the pixels do not divide into whole blocks (40x40: 12.5 blocks of 128). */
static void gemm_worker(void *arg, int t, int nt)
{
    const gemm_job *job = arg;
    const fast_plan *p = &job->p;
    float *panel = job->ex->fast_scratch + t * job->ex->fast_per_thread;
    const long per_part = (long)job->in->n * p->pixels;
    long pos, end;
    split_range(per_part * p->parts, t, nt, &pos, &end);
    while (pos < end) {
        int part = (int)(pos / per_part);
        long within = pos % per_part;
        int image = (int)(within / p->pixels);
        long n0 = within % p->pixels, len = p->pixels - n0;
        len = len < CONV_NC ? len : CONV_NC;
        len = len < end - pos ? len : end - pos;
        int oc_a = part * p->part_oc;
        int oc_b = oc_a + p->part_oc < job->g->out_c ? oc_a + p->part_oc : job->g->out_c;
        gemm_task(job, panel, image, n0, (int)len, oc_a, oc_b);
        pos += len;
    }
}

void conv2d_fast_forward(op_exec *ex, int path, const conv_geom *g, const float *weight,
                         const tensor4 *in, const tensor4 *out, const conv_epilogue *ep)
{
    if (path == CONV_PATH_WINOGRAD_FEW) {
        conv2d_winograd_few_forward(ex, g, weight, in, out, ep);
        return;
    }
    if (path == CONV_PATH_WINOGRAD) {
        conv2d_winograd_forward(ex, g, weight, in, out, ep);
        return;
    }
    gemm_job job = {ex, g, weight, in, out, ep, {0}};
    plan_gemm(ex->kernels, g, in->n, threadpool_size(ex->pool), &job.p);
    threadpool_run(ex->pool, gemm_worker, &job);
}
