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
 * output element is reduced over K in the same fixed order (K blocks, then the
 * kernel's k loop) whatever the thread count or split, so 1 and N threads give
 * identical bits. The epilogue runs on a task's OC x nc block right after its last K
 * block, while it is in cache. The A operand is the OIHW weight itself (rows of
 * lda = C*k*k): the kernels broadcast from it, so no packed copy of the weights
 * exists and a model stays shared read-only.
 */
#include "core/cpu_cache.h"
#include "ops/ops.h"

/* Output-channel parts exist only when there are too few pixel blocks to keep every
 * thread busy. A 1x1 conv reads B straight from the input, unless its channel planes
 * lie a multiple of 4 KiB apart: then every row of a B strip maps to the same L1 sets
 * and packing it (im2col of a 1x1 conv is a copy) is cheaper than the misses. */
void conv2d_gemm_split(const conv_geom *g, int n, int threads, int mr, conv_gemm_job *job)
{
    job->pixels = (long)g->out_h * g->out_w;
    long blocks = (job->pixels + CONV_NC - 1) / CONV_NC;
    job->is_1x1 = g->k == 1 && g->stride == 1 && g->pad == 0 && (job->pixels * (long)sizeof(float)) % 4096 != 0;
    int parts = 1;
    while ((long)n * blocks * parts < 4L * threads && g->out_c / (parts * 2) >= 2 * mr)
        parts *= 2;
    int per = (g->out_c + parts - 1) / parts;
    job->part_oc = (per + mr - 1) / mr * mr;
    job->parts = (g->out_c + job->part_oc - 1) / job->part_oc;
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
    conv_gemm_job job;
    conv2d_gemm_split(g, n, threads, kt->gemm->mr, &job);
    *per_thread = job.is_1x1 ? 0 : conv2d_f32_kc(kt, (long)g->in_c * g->k * g->k, g->k * g->k) * CONV_NC;
    return CONV_PATH_GEMM;
}

/* The K block of the im2col GEMM. The tile keeps its mr weight rows of kc floats in L1
 * while it runs over the panel's strips (from L2), so kc is capped where those rows
 * take a quarter of the L1 data cache the CPU reports (384 on a 48 KiB L1, 256 on a
 * 32 KiB one); K is then cut into equal blocks, whole kernel windows (unit = k*k rows)
 * each where they fit, so no short last block pays a C reload and a tile call for a few
 * rows, and im2col packs a 3x3 stride-2 window's three kx rows from one load. From the
 * CPU and K only, never the thread count: every thread count reduces each output in
 * the same order. */
long conv2d_f32_kc(const kernel_set *kt, long K, int unit)
{
    long cap = cpu_l1d_bytes() / 4 / ((long)sizeof(float) * kt->gemm->mr) / 8 * 8;
    cap = cap < 32 ? 32 : cap;
    long blocks = (K + cap - 1) / cap, kc = (K + blocks - 1) / blocks;
    kc = (kc + unit - 1) / unit * unit;
    return kc < cap ? kc : cap;
}

void conv2d_epilogue(const conv_gemm_job *job, int image, long n0, int nc, int oc_a, int oc_b)
{
    const conv_epilogue *ep = job->ep;
    if (!ep)
        return;
    const kernel_set *kt = job->ex->kernels;
    bias_act_fn bias_act = kt->conv ? kt->conv->bias_act : f32_bias_act__ref;
    const long N = job->pixels;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const float *res = ep->residual ? ep->residual->data + image * ep->residual->batch_stride + n0 : NULL;
    for (int oc = oc_a; oc < oc_b; oc++)
        bias_act(dst + oc * N, nc, ep->bias ? ep->bias[oc] : 0.0f, ep->act, res ? res + oc * N : NULL);
}

static void gemm_task(const conv_gemm_job *job, float *panel, int image, long n0, int nc, int oc_a, int oc_b)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const long K = (long)g->in_c * g->k * g->k, N = job->pixels;
    const float *weight = job->weight;
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const long kc_max = job->is_1x1 ? CONV_KC : conv2d_f32_kc(kt, K, g->k * g->k);
    for (long k0 = 0; k0 < K; k0 += kc_max) {
        int kc = (int)(K - k0 < kc_max ? K - k0 : kc_max);
        const float *b;
        long ldb;
        if (job->is_1x1) {
            b = src + k0 * N + n0;
            ldb = N;
        } else {
            kt->conv->im2col_rows(g, src, (int)k0, kc, n0, nc, panel, CONV_NC);
            b = panel;
            ldb = CONV_NC;
        }
        for (int m0 = oc_a; m0 < oc_b; m0 += kt->gemm->mr) {
            int mr = oc_b - m0 < kt->gemm->mr ? oc_b - m0 : kt->gemm->mr;
            const float *a = weight + m0 * K + k0;
            for (int s = 0; s < nc; s += kt->gemm->nr) {
                int nr = nc - s < kt->gemm->nr ? nc - s : kt->gemm->nr;
                kt->gemm->fn(kc, a, K, b + s, ldb, dst + m0 * N + s, N, mr, nr, k0 > 0);
            }
        }
    }
    conv2d_epilogue(job, image, n0, nc, oc_a, oc_b);
}

/* Each thread takes an equal contiguous run of (part, image, pixel) and cuts it into
 * tasks of at most CONV_NC pixels inside one image: equal work per thread even when
 * the pixels do not divide into whole blocks (40x40: 12.5 blocks of 128). */
static void gemm_worker(void *arg, int t, int nt)
{
    const conv_gemm_job *job = arg;
    float *panel = job->ex->fast_scratch + t * job->ex->fast_per_thread;
    const long per_part = (long)job->in->n * job->pixels;
    long pos, end;
    split_range(per_part * job->parts, t, nt, &pos, &end);
    while (pos < end) {
        int part = (int)(pos / per_part);
        long within = pos % per_part;
        int image = (int)(within / job->pixels);
        long n0 = within % job->pixels, len = job->pixels - n0;
        len = len < CONV_NC ? len : CONV_NC;
        len = len < end - pos ? len : end - pos;
        int oc_a = part * job->part_oc;
        int oc_b = oc_a + job->part_oc < job->g->out_c ? oc_a + job->part_oc : job->g->out_c;
        job->task(job, panel, image, n0, (int)len, oc_a, oc_b);
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
    conv_gemm_job job = {ex, g, weight, in, out, ep, 0, 0, 0, 0, gemm_task};
    conv2d_gemm_split(g, in->n, threadpool_size(ex->pool), ex->kernels->gemm->mr, &job);
    conv2d_gemm_run(&job);
}

void conv2d_gemm_run(conv_gemm_job *job)
{
    threadpool_run(job->ex->pool, gemm_worker, job);
}
