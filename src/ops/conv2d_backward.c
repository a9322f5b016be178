/*
 * conv2d_backward.c - gradients of a 2-D convolution (groups 1, no bias), fast path:
 * every product runs on the kernel set's GEMM tile over column chunks
 * (conv2d_cols.c; chunks span whole images on small maps). Tables without a GEMM
 * tile take the reference path (conv2d_backward_ref.c), the oracle of this one.
 *
 * Forward: out (N,OC,OH,OW) = W (OC,C,k,k) * in (N,C,H,W), i.e. per image
 * out_n[OC x P] = W[OC x K] . col_n[K x P], K = C*k*k, P = OH*OW.
 *
 *   dW^T[K x OC] = sum over chunks col[K x cols] . dY^T[cols x OC]
 *       A = im2col rows (row-major, cheap to pack; a 1x1 conv reads the input itself),
 *       B = the chunk of dY transposed (1/(k*k) of the im2col size). Tasks are
 *       (column group, block of BW_KB rows); the groups' partial sums are added in group
 *       order and transposed into dW.
 *   dX += (or =, assign_dx) for 1x1 and "same" stride-1 convs: a convolution of dY with the flipped,
 *       transposed weights Wf[C x OC*k*k] (no col2im); otherwise
 *       col2im(W^T[K x OC] . dY), tasks (image or chunk of images, DX_CB channels).
 *
 * Pool passes: (0) dY^T (once per conv: every row block reads it) and the weight
 * transform, (1) dW^T blocks and dX, (2) only with several column groups: their sum. Every output element is produced by one task whose reduction order, and the
 * number of column groups, depend on the shape only: 1 and N threads give the same bits.
 *
 * Scratch (conv2d_backward_scratch): per thread the largest of the dW panel
 * (BW_KB x CB im2col rows), the dX conv (conv2d_cols.c) and the col2im panels
 * (OC x CB dY, DX_CB*k*k x CB col); shared in ex->op_scratch: the transformed
 * weights (K x OC), the partial dW^T of each column group, then dY^T (N*P x OC).
 */
#include <string.h>

#include "ops/train_ops.h"

#define BW_KB 128   /* im2col rows (dW^T rows) per dW task */
#define DX_CB 16    /* input channels per col2im task */
#define BW_TASKS 8  /* dW tasks wanted (column groups are added until there are) */

typedef enum { DX_NONE, DX_CONV, DX_COL2IM } dx_mode;

typedef struct bw_plan {
    long K;
    int tasks_k, groups;
    int local;        /* dY^T per chunk inside the dW task (large maps), not in pass 0 */
    col_plan cp;
    dx_mode mode;
} bw_plan;

static int dx_as_conv(const conv_geom *g)
{
    return g->stride == 1 && 2 * g->pad == g->k - 1;
}

static void make_plan(const conv_geom *g, int n, int want_dx, bw_plan *p)
{
    p->K = (long)g->in_c * g->k * g->k;
    p->tasks_k = (int)((p->K + BW_KB - 1) / BW_KB);
    col_plan_make((long)g->out_h * g->out_w, n, &p->cp);
    /* Large maps (many more columns than weight rows): a task takes every row block of
     * its column group and transposes each chunk of dY once into its own scratch, so the
     * N*P x OC dY^T is never written to memory; the groups' partials (8 x K x OC) are
     * then the smaller buffer. Small maps: dY^T once in pass 0, tasks (group, row block). */
    const long T = (long)n * p->cp.pixels;
    p->local = T >= 8L * BW_TASKS * p->K && p->cp.chunks >= BW_TASKS;
    p->groups = 1;
    if (p->local)
        p->groups = BW_TASKS;
    else
        while (p->groups * p->tasks_k < BW_TASKS && 2L * p->groups <= p->cp.chunks)
            p->groups *= 2;
    p->mode = !want_dx ? DX_NONE : dx_as_conv(g) ? DX_CONV : DX_COL2IM;
}

static conv_geom flipped_geom(const conv_geom *g)
{
    conv_geom f = {g->out_c, g->out_h, g->out_w, g->in_c, g->in_h, g->in_w, g->k, 1, g->pad};
    return f;
}

void conv2d_backward_scratch(const kernel_set *kt, const conv_geom *g, int n, long *per_thread,
                             long *shared)
{
    bw_plan p;
    make_plan(g, n, 1, &p);
    long dw = (long)BW_KB * COLS_CB + (p.local ? (long)COLS_CB * g->out_c : 0);
    conv_geom f = flipped_geom(g);
    long dxc = conv_cols_scratch(kt, &f);
    long dxi = (long)g->out_c * COLS_CB + (long)DX_CB * g->k * g->k * COLS_CB;
    long dx = dxc > dxi ? dxc : dxi;
    *per_thread = dw > dx ? dw : dx;
    *shared = p.K * g->out_c * (1 + p.groups) + (p.local ? 0 : (long)n * p.cp.pixels * g->out_c);
}

typedef struct bw_job {
    op_exec *ex;
    int assign_dx;     /* write dX (=), do not add to it */
    const f32_train_config *tk;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in, *dout, *din;
    float *dweight;
    bw_plan p;
    float *wx;         /* transformed weights: Wf (C x OC*kk) or W^T (K x OC) */
    float *partials;   /* groups x K x OC */
    float *dyt;        /* dY^T: (N*P) x OC, row = global column n*P + p */
    conv_cols_job cols;
} bw_job;

/* dY^T of a chunk: t[(i*pc + p)*OC + oc] = dY_{n0+i}[oc][p0 + p] */
static void pack_dy_t(const f32_train_config *tk, const tensor4 *dy, const col_chunk *ch, long P,
                      int OC, float *t)
{
    for (int i = 0; i < ch->nimg; i++)
        tk->transpose(dy->data + (long)(ch->n0 + i) * dy->batch_stride + ch->p0, P, OC, ch->pc,
                      t + (long)i * ch->pc * OC, OC);
}

/* dW^T rows of block kb (or, local, of every block) summed over group grp's chunks */
static void dw_task(const bw_job *job, float *scratch, int grp, int kb)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const int OC = g->out_c;
    const long K = job->p.K, P = job->p.cp.pixels;
    const int kb_first = job->p.local ? 0 : kb, kb_end = job->p.local ? job->p.tasks_k : kb + 1;
    float *colk = scratch, *local_dyt = scratch + (long)BW_KB * COLS_CB;
    long c_begin, c_end;
    split_range(job->p.cp.chunks, grp, job->p.groups, &c_begin, &c_end);
    const int direct = g->k == 1 && g->stride == 1 && g->pad == 0;
    for (long c = c_begin; c < c_end; c++) {
        col_chunk ch;
        col_chunk_get(&job->p.cp, c, &ch);
        const float *dyt;
        if (job->p.local) {
            pack_dy_t(job->tk, job->dout, &ch, P, OC, local_dyt);
            dyt = local_dyt;
        } else {
            dyt = job->dyt + ((long)ch.n0 * P + ch.p0) * OC;
        }
        for (int b = kb_first; b < kb_end; b++) {
            const int r0 = b * BW_KB, kr = (int)(K - r0 < BW_KB ? K - r0 : BW_KB);
            float *dst = job->partials + (long)grp * K * OC + (long)r0 * OC;
            const float *a;
            long lda;
            if (direct && ch.nimg == 1) {
                a = job->in->data + (long)ch.n0 * job->in->batch_stride + (long)r0 * P + ch.p0;
                lda = P;
            } else {
                cols_pack_im2col(job->tk, g, job->in, &ch, r0, kr, colk, COLS_CB);
                a = colk;
                lda = COLS_CB;
            }
            for (int j0 = 0; j0 < OC; j0 += kt->gemm->nr) {
                int nr = OC - j0 < kt->gemm->nr ? OC - j0 : kt->gemm->nr;
                for (int i0 = 0; i0 < kr; i0 += kt->gemm->mr) {
                    int mr = kr - i0 < kt->gemm->mr ? kr - i0 : kt->gemm->mr;
                    kt->gemm->fn(ch.cols, a + (long)i0 * lda, lda, dyt + j0, OC, dst + (long)i0 * OC + j0, OC,
                             mr, nr, c > c_begin);
                }
            }
        }
    }
}

/* dY^T of every chunk (once per conv, read by every dW row block) and the weight
 * transform of the input gradient */
static void pass0_worker(void *arg, int t, int nt)
{
    const bw_job *job = arg;
    const conv_geom *g = job->g;
    long begin, end;
    if (job->dweight && !job->p.local) {
        split_range(job->p.cp.chunks, t, nt, &begin, &end);
        for (long c = begin; c < end; c++) {
            col_chunk ch;
            col_chunk_get(&job->p.cp, c, &ch);
            pack_dy_t(job->tk, job->dout, &ch, job->p.cp.pixels, g->out_c,
                      job->dyt + ((long)ch.n0 * job->p.cp.pixels + ch.p0) * g->out_c);
        }
    }
    const int OC = g->out_c, kk = g->k * g->k;
    const long K = job->p.K;
    if (job->p.mode == DX_CONV) {
        /* Wf[c][oc*kk + j] = W[oc][c][kk-1-j], by blocks of 16 input channels: each
         * weight row is then read as a contiguous 16*kk run, not kk floats per line */
        split_range((g->in_c + 15) / 16, t, nt, &begin, &end);
        for (long cb = begin; cb < end; cb++) {
            const int c0 = (int)cb * 16, c1 = g->in_c - c0 < 16 ? g->in_c : c0 + 16;
            for (int oc = 0; oc < OC; oc++) {
                const float *w = job->weight + oc * K;
                for (int c = c0; c < c1; c++)
                    for (int j = 0; j < kk; j++)
                        job->wx[(long)c * OC * kk + oc * kk + j] = w[c * kk + kk - 1 - j];
            }
        }
    } else if (job->p.mode == DX_COL2IM) {
        /* W^T: columns [begin, end) of W (OC x K) become rows of W^T (K x OC) */
        split_range(K, t, nt, &begin, &end);
        if (end > begin)
            job->tk->transpose(job->weight + begin, K, OC, (int)(end - begin), job->wx + begin * OC, OC);
    }
}

static void col2im_task(const bw_job *job, float *scratch, long unit, int cb)
{
    const conv_geom *g = job->g;
    const kernel_set *kt = job->ex->kernels;
    const int OC = g->out_c, kk = g->k * g->k;
    const long P = job->p.cp.pixels;
    const int c0 = cb * DX_CB, cc = g->in_c - c0 < DX_CB ? g->in_c - c0 : DX_CB, rows = cc * kk;
    float *dyp = scratch, *col = scratch + (long)OC * COLS_CB;
    const col_plan *cp = &job->p.cp;
    long first = cp->per_chunk > 1 ? unit : unit * cp->per_image;
    long last = cp->per_chunk > 1 ? unit + 1 : first + cp->per_image;
    if (job->assign_dx) {   /* the task owns channels [c0, c0+cc) of its unit's images */
        col_chunk a, b;
        col_chunk_get(cp, first, &a);
        col_chunk_get(cp, last - 1, &b);
        const long plane = (long)g->in_h * g->in_w;
        for (int n = a.n0; n < b.n0 + b.nimg; n++)
            memset(job->din->data + (long)n * job->din->batch_stride + (long)c0 * plane, 0,
                   (size_t)cc * plane * sizeof(float));
    }
    for (long c = first; c < last; c++) {
        col_chunk ch;
        col_chunk_get(cp, c, &ch);
        const float *b;
        long ldb;
        if (ch.nimg == 1) {
            b = job->dout->data + (long)ch.n0 * job->dout->batch_stride + ch.p0;
            ldb = P;
        } else {
            for (int i = 0; i < ch.nimg; i++) {
                const float *src = job->dout->data + (long)(ch.n0 + i) * job->dout->batch_stride;
                for (int oc = 0; oc < OC; oc++)
                    memcpy(dyp + (long)oc * COLS_CB + i * ch.pc, src + oc * P, (size_t)ch.pc * sizeof(float));
            }
            b = dyp;
            ldb = COLS_CB;
        }
        for (int i0 = 0; i0 < rows; i0 += kt->gemm->mr) {
            int mr = rows - i0 < kt->gemm->mr ? rows - i0 : kt->gemm->mr;
            const float *a = job->wx + ((long)c0 * kk + i0) * OC;
            for (int s = 0; s < ch.cols; s += kt->gemm->nr) {
                int nr = ch.cols - s < kt->gemm->nr ? ch.cols - s : kt->gemm->nr;
                kt->gemm->fn(OC, a, OC, b + s, ldb, col + (long)i0 * COLS_CB + s, COLS_CB, mr, nr, 0);
            }
        }
        for (int i = 0; i < ch.nimg; i++)
            (job->tk->col2im_add ? job->tk->col2im_add : f32_col2im_add__generic)(
                g, col + i * ch.pc, COLS_CB, c0, cc, ch.p0, ch.pc,
                job->din->data + (long)(ch.n0 + i) * job->din->batch_stride);
    }
}

/* dW[oc][r] for oc in [o_a, o_b), r in [r_a, r_b): the groups' dW^T added in group order,
 * by 16 x 16 blocks so that both the reads and the transposed writes stay within lines */
static void reduce_dw(const bw_job *job, int o_a, int o_b, long r_a, long r_b)
{
    const long K = job->p.K;
    const int OC = job->g->out_c;
    float blk[16][16];
    for (int o0 = o_a; o0 < o_b; o0 += 16) {
        const int on = o_b - o0 < 16 ? o_b - o0 : 16;
        for (long r0 = r_a; r0 < r_b; r0 += 16) {
            const int rn = r_b - r0 < 16 ? (int)(r_b - r0) : 16;
            for (int i = 0; i < rn; i++) {
                const float *src = job->partials + (r0 + i) * OC + o0;
                for (int o = 0; o < on; o++)
                    blk[o][i] = src[o];
                for (int grp = 1; grp < job->p.groups; grp++) {
                    const float *sg = src + (long)grp * K * OC;
                    for (int o = 0; o < on; o++)
                        blk[o][i] += sg[o];
                }
            }
            for (int o = 0; o < on; o++)
                for (int i = 0; i < rn; i++)
                    job->dweight[(long)(o0 + o) * K + r0 + i] = blk[o][i];
        }
    }
}

/* dW^T blocks (with one column group a task also writes its rows of dW: no reduction
 * pass), then the input gradient: both need only pass 0's outputs */
static void pass1_worker(void *arg, int t, int nt)
{
    const bw_job *job = arg;
    const conv_geom *g = job->g;
    float *scratch = job->ex->scratch + t * job->ex->scratch_per_thread;
    long begin, end;
    if (job->dweight) {
        const int per_group = job->p.local ? 1 : job->p.tasks_k;
        split_range((long)job->p.groups * per_group, t, nt, &begin, &end);
        for (long task = begin; task < end; task++) {
            const int kb = (int)(task % per_group);
            dw_task(job, scratch, (int)(task / per_group), kb);
            if (job->p.groups == 1) {
                const long r0 = job->p.local ? 0 : (long)kb * BW_KB;
                const long r1 = job->p.local || job->p.K - r0 < BW_KB ? job->p.K : r0 + BW_KB;
                reduce_dw(job, 0, g->out_c, r0, r1);
            }
        }
    }
    if (job->p.mode == DX_CONV) {
        conv_cols_work(&job->cols, t, nt);
    } else if (job->p.mode == DX_COL2IM) {
        const col_plan *cp = &job->p.cp;
        long units = cp->per_chunk > 1 ? cp->chunks : cp->images;
        int cblocks = (g->in_c + DX_CB - 1) / DX_CB;
        split_range(units * cblocks, t, nt, &begin, &end);
        for (long task = begin; task < end; task++)
            col2im_task(job, scratch, task / cblocks, (int)(task % cblocks));
    }
}

/* several column groups: dW = their sum, split by blocks of 16 output channels */
static void pass2_worker(void *arg, int t, int nt)
{
    const bw_job *job = arg;
    const int OC = job->g->out_c;
    long begin, end;
    split_range((OC + 15) / 16, t, nt, &begin, &end);
    for (long ob = begin; ob < end; ob++)
        reduce_dw(job, (int)ob * 16, (int)ob * 16 + 16 < OC ? (int)ob * 16 + 16 : OC, 0, job->p.K);
}

void conv2d_backward(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                     const tensor4 *dout, const tensor4 *din, int assign_dx, float *dweight)
{
    if (!ex->kernels->gemm) {   /* the planner never asks this path to assign */
        conv2d_backward_ref(ex, g, weight, in, dout, din, dweight);
        return;
    }
    bw_job job = {.ex = ex, .assign_dx = assign_dx, .tk = ex->kernels->train, .g = g, .weight = weight, .in = in,
                  .dout = dout, .din = din, .dweight = dweight};
    make_plan(g, in->n, din != NULL, &job.p);
    job.wx = ex->op_scratch;
    job.partials = ex->op_scratch + job.p.K * g->out_c;
    job.dyt = job.p.local ? NULL : job.partials + (long)job.p.groups * job.p.K * g->out_c;
    if (job.p.mode == DX_CONV) {
        conv_geom f = flipped_geom(g);
        conv_cols_prepare(&job.cols, ex->kernels, &f, job.wx, (long)g->out_c * g->k * g->k, dout,
                          din, !assign_dx, ex->scratch, ex->scratch_per_thread);
    }
    if (!dweight && job.p.mode == DX_NONE)
        return;
    threadpool_run(ex->pool, pass0_worker, &job);
    threadpool_run(ex->pool, pass1_worker, &job);
    if (dweight && job.p.groups > 1)
        threadpool_run(ex->pool, pass2_worker, &job);
}
