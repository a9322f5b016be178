/*
 * conv2d_cols.c - the column-chunk GEMM engine of training (see train_ops.h):
 * out (+)= A . im2col(in) with the columns (image, pixel) cut into chunks that may
 * span whole images, so small maps still fill the GEMM tile.
 *
 * in (N,C,H,W), A (OC x C*k*k, row-major) -> out (N,OC,OH,OW).
 * Used for every training forward on sets with a GEMM tile (the trainer), and by
 * the convolution backward for the input gradient of 1x1 and "same" stride-1 convs (a
 * conv of dY with the flipped, transposed weights, accumulating into dX). Packing
 * goes through the training table: masked plane shifts (AVX-512, stride 1), an
 * offset table (maps narrower than 16), or runs.
 *
 * A chunk of one image is computed straight into out (a 1x1 conv reads B straight from
 * in); a chunk of several images is packed into a panel, computed into a per-thread
 * block and copied (or added) into each image. Each output element is reduced over K
 * in a fixed order (COLS_KC blocks, then the tile's k loop), so thread count never
 * changes a bit.
 */
#include <string.h>

#include "ops/train_ops.h"

void col_plan_make(long pixels, int images, col_plan *cp)
{
    cp->pixels = pixels;
    cp->images = images;
    if (2 * pixels <= COLS_CB) {
        cp->per_chunk = (int)(COLS_CB / pixels);
        cp->per_image = 0;
        cp->chunks = (images + cp->per_chunk - 1) / cp->per_chunk;
    } else {
        cp->per_chunk = 1;
        cp->per_image = (pixels + COLS_CB - 1) / COLS_CB;
        cp->chunks = images * cp->per_image;
    }
}

void col_chunk_get(const col_plan *cp, long index, col_chunk *ch)
{
    if (cp->per_chunk > 1) {
        ch->n0 = (int)(index * cp->per_chunk);
        ch->nimg = cp->images - ch->n0 < cp->per_chunk ? cp->images - ch->n0 : cp->per_chunk;
        ch->p0 = 0;
        ch->pc = (int)cp->pixels;
    } else {
        ch->n0 = (int)(index / cp->per_image);
        ch->nimg = 1;
        ch->p0 = (index % cp->per_image) * COLS_CB;
        ch->pc = (int)(cp->pixels - ch->p0 < COLS_CB ? cp->pixels - ch->p0 : COLS_CB);
    }
    ch->cols = ch->nimg * ch->pc;
}

static int is_1x1(const conv_geom *g)
{
    return g->k == 1 && g->stride == 1 && g->pad == 0;
}

void cols_pack_im2col(const f32_train_config *tk, const conv_geom *g, const tensor4 *x,
                      const col_chunk *ch, int k0, int kc, float *panel, long ldp)
{
    const long plane = (long)g->in_h * g->in_w;
    if (tk->im2col_shift &&
        tk->im2col_shift(g, x->data + (long)ch->n0 * x->batch_stride, x->batch_stride, ch->nimg, k0,
                         kc, ch->p0, ch->pc, panel, ldp))
        return;
    if (!is_1x1(g) && g->out_w < 16) {   /* short rows: gather through a tap table */
        int idx[COLS_CB + 16];
        tk->im2col_gather(g, x->data + (long)ch->n0 * x->batch_stride, x->batch_stride, ch->nimg, k0, kc,
                          ch->p0, ch->pc, panel, ldp, idx);
        return;
    }
    for (int i = 0; i < ch->nimg; i++) {
        const float *image = x->data + (long)(ch->n0 + i) * x->batch_stride;
        float *dst = panel + (long)i * ch->pc;
        if (is_1x1(g)) {
            for (int r = 0; r < kc; r++)
                memcpy(dst + r * ldp, image + (k0 + r) * plane + ch->p0, (size_t)ch->pc * sizeof(float));
        } else if (tk->im2col_runs) {
            tk->im2col_runs(g, image, k0, kc, ch->p0, ch->pc, dst, ldp);
        } else {
            f32_im2col_rows_runs__generic(g, image, k0, kc, ch->p0, ch->pc, dst, ldp);
        }
    }
}

long conv_cols_scratch(const kernel_set *kt, const conv_geom *g)
{
    (void)kt;
    return (long)COLS_KC * COLS_CB + (long)g->out_c * COLS_CB;
}

void conv_cols_prepare(conv_cols_job *job, const kernel_set *kt, const conv_geom *g,
                       const float *a, long lda, const tensor4 *in, const tensor4 *out,
                       int accumulate, float *scratch, long per_thread)
{
    job->kt = kt;
    job->tk = kt->train;
    job->g = *g;
    job->a = a;
    job->lda = lda;
    job->in = in;
    job->out = out;
    job->accumulate = accumulate;
    job->scratch = scratch;
    job->per_thread = per_thread;
    col_plan_make((long)g->out_h * g->out_w, in->n, &job->cp);
    /* output-channel parts, from the shape only: enough tasks for any thread count up to
     * a few, parts no thinner than 4 tiles */
    int parts = 1;
    while (job->cp.chunks * parts < 8 && g->out_c / (parts * 2) >= 4 * kt->gemm->mr)
        parts *= 2;
    int per = (g->out_c + parts - 1) / parts;
    job->part_rows = (per + kt->gemm->mr - 1) / kt->gemm->mr * kt->gemm->mr;
    job->parts = (g->out_c + job->part_rows - 1) / job->part_rows;
}

static void cols_task(const conv_cols_job *job, float *scratch, long chunk, int part)
{
    const kernel_set *kt = job->kt;
    const conv_geom *g = &job->g;
    const long K = (long)g->in_c * g->k * g->k, P = job->cp.pixels;
    const int m_a = part * job->part_rows;
    const int m_b = m_a + job->part_rows < g->out_c ? m_a + job->part_rows : g->out_c;
    col_chunk ch;
    col_chunk_get(&job->cp, chunk, &ch);
    float *panel = scratch, *tmp = scratch + (long)COLS_KC * COLS_CB;
    const int single = ch.nimg == 1;
    /* row m_a of the destination: the output image, or the block tmp */
    float *dst = single ? job->out->data + (long)ch.n0 * job->out->batch_stride + (long)m_a * P + ch.p0 : tmp;
    const long ldc = single ? P : COLS_CB;
    for (long k0 = 0; k0 < K; k0 += COLS_KC) {
        int kc = (int)(K - k0 < COLS_KC ? K - k0 : COLS_KC);
        const float *b;
        long ldb;
        if (single && is_1x1(g)) {
            b = job->in->data + (long)ch.n0 * job->in->batch_stride + k0 * P + ch.p0;
            ldb = P;
        } else {
            cols_pack_im2col(job->tk, g, job->in, &ch, (int)k0, kc, panel, COLS_CB);
            b = panel;
            ldb = COLS_CB;
        }
        const int acc = k0 > 0 || (single && job->accumulate);
        for (int m0 = m_a; m0 < m_b; m0 += kt->gemm->mr) {
            int mr = m_b - m0 < kt->gemm->mr ? m_b - m0 : kt->gemm->mr;
            const float *a = job->a + (long)m0 * job->lda + k0;
            for (int s = 0; s < ch.cols; s += kt->gemm->nr) {
                int nr = ch.cols - s < kt->gemm->nr ? ch.cols - s : kt->gemm->nr;
                kt->gemm->fn(kc, a, job->lda, b + s, ldb, dst + (long)(m0 - m_a) * ldc + s, ldc, mr, nr, acc);
            }
        }
    }
    if (single)
        return;
    for (int i = 0; i < ch.nimg; i++) {
        float *o = job->out->data + (long)(ch.n0 + i) * job->out->batch_stride;
        for (int m = m_a; m < m_b; m++) {
            const float *src = tmp + (long)(m - m_a) * COLS_CB + (long)i * ch.pc;
            float *d = o + (long)m * P;
            if (job->accumulate)
                for (int p = 0; p < ch.pc; p++)
                    d[p] += src[p];
            else if (ch.pc >= 16)
                memcpy(d, src, (size_t)ch.pc * sizeof(float));
            else   /* 1-4 pixel maps: a call per row would cost more than the copy */
                for (int p = 0; p < ch.pc; p++)
                    d[p] = src[p];
        }
    }
}

void conv_cols_work(const conv_cols_job *job, int t, int nt)
{
    long begin, end;
    split_range(job->cp.chunks * job->parts, t, nt, &begin, &end);
    float *scratch = job->scratch + t * job->per_thread;
    for (long task = begin; task < end; task++)
        cols_task(job, scratch, task / job->parts, (int)(task % job->parts));
}

static void cols_worker(void *arg, int t, int nt)
{
    conv_cols_work(arg, t, nt);
}

void conv_cols_forward(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                       const tensor4 *out)
{
    conv_cols_job job;
    conv_cols_prepare(&job, ex->kernels, g, weight, (long)g->in_c * g->k * g->k, in, out, 0,
                      ex->scratch, ex->scratch_per_thread);
    threadpool_run(ex->pool, cols_worker, &job);
}
