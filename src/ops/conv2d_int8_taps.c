/*
 * conv2d_int8_taps.c - int8 3x3 pad-1 convs (stride 1 and 2) read straight from a u8
 * copy of the input, on kernel sets whose int8 config has the tap form (the AVX-512 VNNI
 * and AMX tiles), in place of the fp32 Winograd (stride 1) and the im2col GEMM (stride
 * 2) they run elsewhere; conv2d_bf16_taps.c is the bf16 twin of the plain form.
 *
 * Per image: (1) the input (C,H,W) f32 becomes a quad image, ceil(C/4) quad planes of
 * (H+2) x (W+2) quads, quad (q, y, x) holding channels 4q..4q+3 at input pixel (y-1,
 * x-1) quantized as conv2d_int8.c does (u8 = clamp(rne(x / act_scale) + z, 0, 255)),
 * the zero point z (an exact 0) in the border and past C; (2) tasks of up to
 * TASK_PIXELS output pixels of one row (of the map in the flat form, below): per 32
 * output channels and 32 pixels a call of
 * the tile, which sums its runs (below) in int32 and dequantizes, then the fp32
 * epilogue over the task's rows (epilogue rows of 32 pixels spent as much in per-row
 * setup as in arithmetic: 24.5 -> 22.8 ms for arch s at 640x640, 1 thread, Xeon with
 * AMX, 2026-12-04). Three forms of B, chosen per conv (taps_form_of):
 *   plain (stride 1, C a multiple of 4 * k_align or near it): 9 runs, one per tap (ky,
 *     kx), each the quad image itself shifted by ky rows and kx pixels, C rounded up to
 *     the tile's K step (AMX: 16 quads; VNNI: 1, so every stride-1 conv) by planes of z;
 *     nothing is copied per task.
 *   row-expanded (stride 2, or few channels): the quad image gathered once more into
 *     planes q' = kx * ceil(C/4) + q of (H+2) rows x OW pixels, (q', y, x) = (q, y,
 *     x*stride + kx), so a run per ky holds the 3 kx taps in its K (3*ceil(C/4) quads
 *     rounded up to the K step): stride-2 pixels become contiguous, and on AMX C = 16 or
 *     32 fill 75% of the K steps instead of 25% or 50%.
 *   flat (stride 2 whose output rows fill under 80% of the 32-pixel tiles, as 40 or 20
 *     pixels do): the expanded planes once per run, of output rows, (r, q', oy, x) =
 *     (q, oy*stride + r, x*stride + kx), so a run's pixels are contiguous across rows and
 *     tasks of TASK_PIXELS span rows (the 20- and 40-pixel stride-2 convs of s: 2.9 ->
 *     2.0-2.1 ms on the AVX-512 EPYC, 2026-12-04). Chosen from the input size at run
 *     time: the weights' K order is the expanded form's.
 * Every plane ends with 32 slack quads (a tile reads 32 columns from any start). The
 * weights are conv2d_int8.c's prepared block (scales, comp = z * sum of the row's s8
 * weights) with rows of the runs in the same K order, zero past the data, rows rounded
 * up to the tile's m_align. Integer sums are exact, so the result is the im2col int8
 * path's bits, for any thread count.
 */
#include <string.h>

#include "kernels/lowp_kernels.h"
#include "ops/ops.h"

#define TAPS_SLACK 32   /* quads after each plane */
#define TASK_PIXELS 128 /* output pixels of a task: its epilogue runs over rows this long */

typedef struct taps_form {
    int expand;         /* 1: row-expanded */
    int flat;           /* 1: expanded, each run its own planes of output rows (below) */
    int runs;           /* 9 (plain) or 3 */
    long cq4;           /* ceil(C/4): planes of the quad image */
    long run_q;         /* quads per run, a multiple of the tile's K step */
    long img_w;         /* pixels per row of the image the tile reads: W+2 or OW */
    long plane;         /* quads per plane of that image */
} taps_form;

static long round_up(long x, long m)
{
    return (x + m - 1) / m * m;
}

static taps_form taps_form_of(const kernel_set *kt, const conv_geom *g)
{
    const long step = kt->int8->k_align, cq4 = (g->in_c + 3) / 4, hp = g->in_h + 2L * g->pad;
    taps_form f = {0, 0, g->k * g->k, cq4, round_up(cq4, step), g->in_w + 2L * g->pad, 0};
    if (g->stride != 1 || round_up(g->k * cq4, step) < g->k * f.run_q)
        f = (taps_form){1, 0, g->k, cq4, round_up(g->k * cq4, step), g->out_w, 0};
    f.plane = hp * f.img_w + TAPS_SLACK;
    /* stride 2 with output rows that fill under 80% of the 32-pixel tiles (40 or 20
     * pixels: 62%): the flat form, whose tasks span rows. The weights' K order is the
     * same in both, so this depends on the input size only (never at prepare). */
    long tiles = (g->out_w + 31) / 32;
    if (f.expand && g->stride == 2 && 10L * g->out_w < 8L * 32 * tiles) {
        f.flat = 1;
        f.plane = (long)g->out_h * g->out_w + TAPS_SLACK;
    }
    return f;
}

/* The first conv of the stem (3 channels, K = 27) stays fp32 (conv2d_bf16.c says why). */
int conv2d_int8_taps_applies(const kernel_set *kt, const conv_geom *g)
{
    return kt->int8->taps && g->k == 3 && g->pad == 1 && (g->stride == 1 || g->stride == 2) && g->in_c * 9 >= 32;
}

static long m_rows(const kernel_set *kt, int out_c)
{
    return round_up(out_c, kt->int8->m_align);
}

/* g: the weights' shape and the stride (the form's K layout depends on nothing else) */
long conv2d_int8_taps_weight_floats(const kernel_set *kt, const conv_geom *g)
{
    taps_form f = taps_form_of(kt, g);
    const int out_c = g->out_c;
    return conv2d_int8_head_floats(out_c) + m_rows(kt, out_c) * f.runs * f.run_q;   /* a quad per float */
}

void conv2d_int8_taps_weights(const kernel_set *kt, const conv_geom *g, const int8_weights *src, float act_scale,
                              int act_zero, float *dst)
{
    taps_form f = taps_form_of(kt, g);
    const int out_c = g->out_c, in_c = g->in_c, k = g->k;
    long tap_base[9];   /* byte of (c = 0, tap t) in a row: t's run, then kx's block in an expanded run */
    for (int t = 0; t < k * k; t++)
        tap_base[t] = f.expand ? 4 * ((t / k) * f.run_q + (t % k) * f.cq4) : 4 * t * f.run_q;
    conv2d_int8_weights_at(src, out_c, (long)in_c * k * k, act_scale, act_zero, f.runs * f.run_q, m_rows(kt, out_c),
                           k * k, tap_base, dst);
}

/* The quad image (plain: run_q planes, the last ones z), then for the expanded form the
 * expanded planes. */
long conv2d_int8_taps_shared(const kernel_set *kt, const conv_geom *g)
{
    taps_form f = taps_form_of(kt, g);
    const long hp = g->in_h + 2L * g->pad, wp = g->in_w + 2L * g->pad;
    const long wide = (f.flat ? f.runs : 1) * f.run_q * f.plane;
    return f.expand ? f.cq4 * hp * wp + wide : wide;   /* a quad per float */
}

typedef struct taps_job {
    conv_gemm_job base;       /* ex, g, in, out, ep, pixels: for the shared epilogue */
    const float *prep;
    taps_form f;
    uint8_t *img;             /* the current image's quad image */
    uint8_t *wide;            /* its expanded planes, or img */
    int image;
} taps_job;

/* Expanded row (qe, y) from the quad image's row (qe % cq4, y): quads (q, y, x*stride +
 * kx) for qe = kx*cq4 + q, the zero point for qe past 3*cq4. It lands at row y of plane
 * qe, or in the flat form at output row oy of plane qe of each run r with oy*stride + r
 * = y (none, one or two). The planes' slack after the last row. */
static void expand_row(const taps_job *job, long qe, long y)
{
    const conv_geom *g = job->base.g;
    const taps_form *f = &job->f;
    const long wp = g->in_w + 2L * g->pad, hp = g->in_h + 2L * g->pad;
    const int s = g->stride, z = (int)job->prep[2], planes = f->flat ? f->runs : 1;
    uint8_t *dst[3];
    int n = 0;
    for (int r = 0; r < planes; r++) {
        long oy = f->flat ? (y - r) / s : y;
        if (!f->flat || (y >= r && (y - r) % s == 0 && oy < g->out_h))
            dst[n++] = job->wide + 4 * ((r * f->run_q + qe) * f->plane + oy * f->img_w);
    }
    if (n > 0 && qe >= g->k * f->cq4) {
        memset(dst[0], z, 4 * (size_t)f->img_w);
    } else if (n > 0) {
        const uint8_t *src = job->img + 4 * ((qe % f->cq4) * hp * wp + y * wp + qe / f->cq4);
        if (s == 1)
            memcpy(dst[0], src, 4 * (size_t)f->img_w);
        else
            job->base.ex->kernels->int8->gather(src, s, f->img_w, dst[0]);
    }
    for (int i = 1; i < n; i++)
        memcpy(dst[i], dst[0], 4 * (size_t)f->img_w);
    if (y == hp - 1)
        for (int r = 0; r < planes; r++)
            memset(job->wide + 4 * ((r * f->run_q + qe) * f->plane + f->plane - TAPS_SLACK), z, 4 * TAPS_SLACK);
}

/* Quad rows (q, y) of the quad image, q-major: border and channels past C the zero
 * point, the rest the quantized input; plain planes get their slack. The expanded form
 * writes each row's 3 expanded rows while it is in cache, and its planes of z after. */
static void convert_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const taps_form *f = &job->f;
    const u8s8_gemm_config *q8 = job->base.ex->kernels->int8;
    const int p = g->pad, wp = g->in_w + 2 * p, hp = g->in_h + 2 * p, z = (int)job->prep[2];
    const long pq = f->expand ? (long)hp * wp : f->plane, plane = (long)g->in_h * g->in_w;
    const long data_rows = (f->expand ? f->cq4 : f->run_q) * hp;
    const float *src = job->base.in->data + job->image * job->base.in->batch_stride;
    long begin, end;
    split_range(f->expand ? (f->cq4 + f->run_q - g->k * f->cq4) * hp : data_rows, t, nt, &begin, &end);
    for (long r = begin; r < end; r++) {
        if (r >= data_rows) {   /* expanded planes past 3*cq4 */
            expand_row(job, g->k * f->cq4 + (r - data_rows) / hp, (r - data_rows) % hp);
            continue;
        }
        int q = (int)(r / hp), y = (int)(r % hp);
        uint8_t *row = job->img + 4 * (q * pq + (long)y * wp);
        int c0 = 4 * q, rows = g->in_c - c0 < 4 ? g->in_c - c0 : 4;
        if (y < p || y >= hp - p || rows <= 0) {
            memset(row, z, 4 * (size_t)wp);
        } else {
            memset(row, z, 4 * (size_t)p);
            memset(row + 4 * (p + g->in_w), z, 4 * (size_t)p);
            q8->pack(src + c0 * plane + (long)(y - p) * g->in_w, plane, rows, g->in_w, job->prep[0], z, row + 4 * p,
                     1);
        }
        if (f->expand)
            for (int kx = 0; kx < g->k; kx++)
                expand_row(job, kx * f->cq4 + q, y);
        else if (y == hp - 1)
            memset(job->img + 4 * (q * pq + (long)hp * wp), z, 4 * TAPS_SLACK);
    }
}

static void compute_worker(void *arg, int t, int nt)
{
    const taps_job *job = arg;
    const conv_geom *g = job->base.g;
    const kernel_set *kt = job->base.ex->kernels;
    const taps_form *f = &job->f;
    /* tasks: up to TASK_PIXELS pixels of one output row, or in the flat form of the map */
    const long span = f->flat ? job->base.pixels : g->out_w;
    const long segs = (span + TASK_PIXELS - 1) / TASK_PIXELS;
    const long lda = f->runs * f->run_q, pixels = job->base.pixels;
    const int8_t *w = conv2d_int8_rows(job->prep, g->out_c);
    const int32_t *comp = conv2d_int8_comp(job->prep);
    const float *scale = conv2d_int8_dequant(job->prep, g->out_c);
    long tap_off[9];
    for (int r = 0; r < f->runs; r++)
        tap_off[r] = f->flat ? 4 * r * f->run_q * f->plane
                   : f->expand ? 4 * r * f->img_w : 4 * ((r / g->k) * f->img_w + r % g->k);
    float *dst = job->base.out->data + job->image * job->base.out->batch_stride;
    long begin, end;
    split_range((f->flat ? 1 : g->out_h) * segs, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        long oy = task / segs, x0 = task % segs * TASK_PIXELS;
        int nc = (int)(span - x0 < TASK_PIXELS ? span - x0 : TASK_PIXELS);
        long n0 = oy * g->out_w + x0, b0 = f->flat ? n0 : oy * g->stride * f->img_w + x0;
        for (int m0 = 0; m0 < g->out_c; m0 += 32) {
            int mr = g->out_c - m0 < 32 ? g->out_c - m0 : 32;
            for (int j = 0; j < nc; j += 32) {
                const uint8_t *b = job->wide + 4L * (b0 + j);
                kt->int8->taps(f->runs, tap_off, (int)f->run_q, w + 4L * m0 * lda, lda, b, f->plane, comp + m0,
                               scale + m0, dst + m0 * pixels + n0 + j, pixels, mr, nc - j < 32 ? nc - j : 32);
            }
        }
        conv2d_epilogue(&job->base, job->image, n0, nc, 0, g->out_c);
    }
}

void conv2d_int8_taps_forward(op_exec *ex, const conv_geom *g, const float *prepared, const tensor4 *in,
                              const tensor4 *out, const conv_epilogue *ep)
{
    taps_job job = {{ex, g, NULL, in, out, ep, (long)g->out_h * g->out_w, 1, g->out_c, 0, NULL}, prepared,
                    taps_form_of(ex->kernels, g), (uint8_t *)(void *)ex->op_scratch, NULL, 0};
    const long hp = g->in_h + 2L * g->pad, wp = g->in_w + 2L * g->pad;
    job.wide = job.f.expand ? job.img + 4 * job.f.cq4 * hp * wp : job.img;
    for (job.image = 0; job.image < in->n; job.image++) {
        threadpool_run(ex->pool, convert_worker, &job);
        threadpool_run(ex->pool, compute_worker, &job);
    }
}
