/*
 * conv2d_backward_ref.c - gradients of a 2-D convolution (groups 1, no bias): the
 * reference path, kept as the oracle of the fast one (conv2d_backward.c), and the
 * path of the "ref" kernel set (no fast GEMM).
 *
 * Forward: out (N,OC,OH,OW) = W (OC,C,k,k) * in (N,C,H,W), as the implicit GEMM
 * out_n[OC x P] = W[OC x K] . col_n[K x P], K = C*k*k, P = OH*OW (see conv2d.c).
 *
 *   dW[OC x K]  = sum_n dY_n[OC x P] . col_n^T[P x K]      (overwrites dW)
 *   dX_n       += col2im(W^T[K x OC] . dY_n[OC x P])      (accumulates into dX)
 *
 * Both products run on the set's GEMM tile where it has one, else on the reference
 * GEMM micro-kernel (MR x NR tiles).
 *
 * Determinism: every output element is produced by exactly one task, and a task's
 * reduction order is fixed (images, then pixel chunks, in order), so the result does
 * not depend on the number of threads. dW tasks own NR-aligned column blocks of dW;
 * dX tasks own (image, block of input channels), whose col2im writes never overlap.
 *
 * Scratch (ex->scratch, per thread conv2d_backward_scratch_per_thread(...) floats):
 *   dW: col^T (CB_PIX pixels x DW_KB columns) and a packing area of the same size;
 *   dX: a packing area (OC x CB_PIX) and the col tile (DX_CB*k*k x CB_PIX).
 * The packing areas are used only by the reference micro-kernel (NR-wide strips);
 * the table's fast GEMM reads row-major blocks in place.
 * Shared (ex->op_scratch): W^T, K x OC floats.
 */
#include <string.h>

#include "ops/train_ops.h"

#define CB_PIX 128   /* pixels per chunk (multiple of GEMM_NR) */
#define DW_KB 64     /* dW columns per task (multiple of GEMM_NR) */
#define DX_CB 16     /* input channels per dX task */

long conv2d_backward_scratch_per_thread(int max_oc, int max_k)
{
    long dw = 2L * CB_PIX * DW_KB;
    long dx = (long)max_oc * CB_PIX + (long)DX_CB * max_k * max_k * CB_PIX;
    return dw > dx ? dw : dx;
}

long conv2d_backward_shared_floats(int max_oc, int max_cin, int max_k)
{
    return (long)max_oc * max_cin * max_k * max_k;
}

typedef struct convb_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight, *wt;   /* W (OC x K) and W^T (K x OC) */
    const tensor4 *in, *dout, *din;
    float *dweight;
} convb_job;

/* C[M x N] (+)= A[M x K] . B[K x N], B row-major with stride ldb. Uses the table's
 * fast GEMM (any ldb) when it has one, else packs B into NR-wide strips for the
 * reference micro-kernel (pack: K * roundup(N, NR) floats). */
static void gemm_rowmajor(const kernel_set *kt, int M, int N, int K, const float *a, long lda,
                          const float *b, long ldb, float *c, long ldc, int accumulate, float *pack)
{
    if (kt->gemm) {
        for (int j0 = 0; j0 < N; j0 += kt->gemm->nr) {
            int nr = N - j0 < kt->gemm->nr ? N - j0 : kt->gemm->nr;
            for (int i0 = 0; i0 < M; i0 += kt->gemm->mr) {
                int mr = M - i0 < kt->gemm->mr ? M - i0 : kt->gemm->mr;
                kt->gemm->fn(K, a + (long)i0 * lda, lda, b + j0, ldb, c + (long)i0 * ldc + j0, ldc,
                         mr, nr, accumulate);
            }
        }
        return;
    }
    const int strips = (N + GEMM_NR - 1) / GEMM_NR;
    for (int s = 0; s < strips; s++) {
        float *strip = pack + (long)s * K * GEMM_NR;
        int nr = N - s * GEMM_NR < GEMM_NR ? N - s * GEMM_NR : GEMM_NR;
        for (int k = 0; k < K; k++) {
            const float *src = b + (long)k * ldb + s * GEMM_NR;
            int j = 0;
            for (; j < nr; j++)
                strip[k * GEMM_NR + j] = src[j];
            for (; j < GEMM_NR; j++)
                strip[k * GEMM_NR + j] = 0.0f;
        }
    }
    for (int s = 0; s < strips; s++) {
        int nr = N - s * GEMM_NR < GEMM_NR ? N - s * GEMM_NR : GEMM_NR;
        for (int i0 = 0; i0 < M; i0 += GEMM_MR) {
            int mr = M - i0 < GEMM_MR ? M - i0 : GEMM_MR;
            f32_gemm_4x16__ref(K, a + (long)i0 * lda, lda, pack + (long)s * K * GEMM_NR,
                           c + (long)i0 * ldc + s * GEMM_NR, ldc, mr, nr, accumulate);
        }
    }
}

/* Packs col^T for pixels [p0, p0+pc) and im2col rows [r0, r0+rc) of one image,
 * row-major pc x DW_KB: colT[p*DW_KB + j] = col[r0+j][p0+p]. The row decomposition
 * (channel, ky, kx) is computed once per row and the pixel coordinates once per pixel,
 * so the inner loop has no division and writes contiguously. */
static void pack_colT(const conv_geom *g, const float *image, long p0, int pc, int r0, int rc,
                      float *colT)
{
    const int kk = g->k * g->k;
    long plane_off[DW_KB];
    int dy[DW_KB], dx[DW_KB];
    for (int j = 0; j < rc; j++) {
        int r = r0 + j;
        plane_off[j] = (long)(r / kk) * g->in_h * g->in_w;
        dy[j] = (r % kk) / g->k - g->pad;
        dx[j] = r % g->k - g->pad;
    }
    int oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w);
    for (int p = 0; p < pc; p++) {
        const int by = oy * g->stride, bx = ox * g->stride;
        float *dst = colT + (long)p * DW_KB;
        for (int j = 0; j < rc; j++) {
            int iy = by + dy[j], ix = bx + dx[j];
            dst[j] = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                         ? image[plane_off[j] + (long)iy * g->in_w + ix] : 0.0f;
        }
        if (++ox == g->out_w) {
            ox = 0;
            oy++;
        }
    }
}

static void dweight_worker(void *arg, int t, int nt)
{
    const convb_job *job = arg;
    const conv_geom *g = job->g;
    const long K = (long)g->in_c * g->k * g->k, P = (long)g->out_h * g->out_w;
    float *colT = job->ex->scratch + t * job->ex->scratch_per_thread;
    float *pack = colT + (long)CB_PIX * DW_KB;
    long begin, end;
    split_range((K + DW_KB - 1) / DW_KB, t, nt, &begin, &end);
    for (long blk = begin; blk < end; blk++) {
        int r0 = (int)(blk * DW_KB), rc = (int)(K - r0 < DW_KB ? K - r0 : DW_KB);
        for (int n = 0; n < job->in->n; n++) {
            const float *image = job->in->data + n * job->in->batch_stride;
            const float *dy = job->dout->data + n * job->dout->batch_stride;
            for (long p0 = 0; p0 < P; p0 += CB_PIX) {
                int pc = (int)(P - p0 < CB_PIX ? P - p0 : CB_PIX);
                pack_colT(g, image, p0, pc, r0, rc, colT);
                gemm_rowmajor(job->ex->kernels, g->out_c, rc, pc, dy + p0, P, colT, DW_KB,
                              job->dweight + r0, K, n > 0 || p0 > 0, pack);
            }
        }
    }
}

static void transpose_worker(void *arg, int t, int nt)
{
    const convb_job *job = arg;
    const long K = (long)job->g->in_c * job->g->k * job->g->k;
    const int OC = job->g->out_c;
    long begin, end;
    split_range(K, t, nt, &begin, &end);
    float *wt = (float *)job->wt;
    for (long r = begin; r < end; r++)
        for (int oc = 0; oc < OC; oc++)
            wt[r * OC + oc] = job->weight[oc * K + r];
}

static void dinput_worker(void *arg, int t, int nt)
{
    const convb_job *job = arg;
    const conv_geom *g = job->g;
    const int kk = g->k * g->k, OC = g->out_c;
    const long P = (long)g->out_h * g->out_w;
    const int cblocks = (g->in_c + DX_CB - 1) / DX_CB;
    float *pack = job->ex->scratch + t * job->ex->scratch_per_thread;
    float *col = pack + (long)OC * CB_PIX;
    long begin, end;
    split_range((long)job->in->n * cblocks, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int n = (int)(task / cblocks), c0 = (int)(task % cblocks) * DX_CB;
        int cc = g->in_c - c0 < DX_CB ? g->in_c - c0 : DX_CB;
        int rows = cc * kk;
        const float *dy = job->dout->data + n * job->dout->batch_stride;
        float *dx = job->din->data + n * job->din->batch_stride;
        for (long p0 = 0; p0 < P; p0 += CB_PIX) {
            int pc = (int)(P - p0 < CB_PIX ? P - p0 : CB_PIX);
            /* col tile [rows x pc] = W^T[c0*kk.., :] . dY[:, p0:p0+pc] */
            gemm_rowmajor(job->ex->kernels, rows, pc, OC, job->wt + (long)c0 * kk * OC, OC,
                          dy + p0, P, col, CB_PIX, 0, pack);
            /* col2im: scatter-add into dX */
            /* pixel coordinates of the chunk, once (no division in the loops below) */
            int by[CB_PIX], bx[CB_PIX];
            for (int p = 0, oy = (int)(p0 / g->out_w), ox = (int)(p0 % g->out_w); p < pc; p++) {
                by[p] = oy * g->stride - g->pad;
                bx[p] = ox * g->stride - g->pad;
                if (++ox == g->out_w) {
                    ox = 0;
                    oy++;
                }
            }
            for (int r = 0; r < rows; r++) {
                int c = c0 + r / kk, ky = (r % kk) / g->k, kx = r % g->k;
                float *plane = dx + (long)c * g->in_h * g->in_w;
                const float *cr = col + (long)r * CB_PIX;
                for (int p = 0; p < pc; p++) {
                    int iy = by[p] + ky, ix = bx[p] + kx;
                    if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                        plane[(long)iy * g->in_w + ix] += cr[p];
                }
            }
        }
    }
}

void conv2d_backward_ref(op_exec *ex, const conv_geom *g, const float *weight, const tensor4 *in,
                         const tensor4 *dout, const tensor4 *din, float *dweight)
{
    convb_job job = {ex, g, weight, ex->op_scratch, in, dout, din, dweight};
    if (dweight)
        threadpool_run(ex->pool, dweight_worker, &job);
    if (din) {
        threadpool_run(ex->pool, transpose_worker, &job);
        threadpool_run(ex->pool, dinput_worker, &job);
    }
}
