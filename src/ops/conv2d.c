/*
 * conv2d.c - 2-D convolution (groups 1, no bias) as an implicit GEMM.
 *
 * in (N,C,H,W), weight (OC,C,k,k) -> out (N,OC,OH,OW).
 * Work is cut into tasks of (image, CONV_NC output pixels); each thread takes a
 * contiguous run of tasks, packs CONV_KC rows of the im2col matrix for its columns
 * into its own panel (no full im2col buffer), and runs the micro-kernel over all
 * output channels. The reduction order over K is fixed, so results do not depend on
 * the thread count. The epilogue (bias, activation, residual) is applied to a tile's
 * OC x nc block right after its last K block, while it is still in cache.
 */
#include "graph/graph.h"
#include "kernels/pointwise.h"

long conv2d_scratch_per_thread(void) { return (long)CONV_KC * CONV_NC; }

typedef struct conv_job {
    op_exec *ex;
    const conv_geom *g;
    const float *weight;
    const tensor4 *in;
    const tensor4 *out;
    const conv_epilogue *ep;
} conv_job;

static void conv_tile(const conv_job *job, float *panel, int image, long n0, int nc)
{
    const conv_geom *g = job->g;
    const long K = (long)g->in_c * g->k * g->k;
    const long N = (long)g->out_h * g->out_w;
    const float *src = job->in->data + image * job->in->batch_stride;
    float *dst = job->out->data + image * job->out->batch_stride + n0;
    const int strips = (nc + GEMM_NR - 1) / GEMM_NR;

    for (long k0 = 0; k0 < K; k0 += CONV_KC) {
        int kc = (int)(K - k0 < CONV_KC ? K - k0 : CONV_KC);
        f32_im2col_panel__ref(g, src, (int)k0, kc, n0, nc, panel);
        for (int m0 = 0; m0 < g->out_c; m0 += GEMM_MR) {
            int mr = g->out_c - m0 < GEMM_MR ? g->out_c - m0 : GEMM_MR;
            const float *a = job->weight + m0 * K + k0;
            for (int s = 0; s < strips; s++) {
                int nr = nc - s * GEMM_NR < GEMM_NR ? nc - s * GEMM_NR : GEMM_NR;
                f32_gemm_4x16__ref(kc, a, K, panel + (long)s * kc * GEMM_NR,
                               dst + m0 * N + s * GEMM_NR, N, mr, nr, k0 > 0);
            }
        }
    }
    const conv_epilogue *ep = job->ep;
    if (!ep)
        return;
    const float *res = ep->residual ? ep->residual->data + image * ep->residual->batch_stride + n0 : NULL;
    for (int oc = 0; oc < g->out_c; oc++) {
        float *row = dst + oc * N;
        if (ep->bias)
            f32_add_scalar__ref(row, nc, ep->bias[oc]);
        f32_activation__ref(ep->act, row, nc);
        if (res)
            f32_add_scaled__ref(row, res + oc * N, 1.0f, row, nc);
    }
}

static void conv_worker(void *arg, int t, int nt)
{
    const conv_job *job = arg;
    const conv_geom *g = job->g;
    const long N = (long)g->out_h * g->out_w;
    const long blocks = (N + CONV_NC - 1) / CONV_NC;
    float *panel = job->ex->scratch + t * job->ex->scratch_per_thread;
    long begin, end;
    split_range(blocks * job->in->n, t, nt, &begin, &end);
    for (long task = begin; task < end; task++) {
        int image = (int)(task / blocks);
        long n0 = (task % blocks) * CONV_NC;
        int nc = (int)(N - n0 < CONV_NC ? N - n0 : CONV_NC);
        conv_tile(job, panel, image, n0, nc);
    }
}

int conv2d_plan(const kernel_set *kt, const conv_geom *g, int n, int threads, int winograd,
                long *per_thread, long *shared)
{
    if (kt->gemm)
        return conv2d_fast_plan(kt, g, n, threads, winograd, per_thread, shared);
    *per_thread = conv2d_scratch_per_thread();
    *shared = 0;
    return CONV_PATH_REF;
}

void conv2d_run(op_exec *ex, int path, const conv_geom *g, const float *weight, const tensor4 *in,
                const tensor4 *out, const conv_epilogue *ep)
{
    if (path != CONV_PATH_REF) {
        conv2d_fast_forward(ex, path, g, weight, in, out, ep);
        return;
    }
    conv_job job = {ex, g, weight, in, out, ep};
    threadpool_run(ex->pool, conv_worker, &job);
}

/* ---------------------------------------------------------------- the op
 * conv2d: in[0] (N,C,H,W) -> out (N, a.cout, OH, OW) with a square a.k kernel, a.stride
 * and a.pad; params [weight (OC,C,k,k), bias (OC) or -1]; deployed convs also run
 * a.act and add in[1] (the residual, out's shape) in their epilogue. */

static cspresnet_status conv_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    const op_attrs *a = &nd->a;
    int oh = (in[0].h + 2 * a->pad - a->k) / a->stride + 1;
    int ow = (in[0].w + 2 * a->pad - a->k) / a->stride + 1;
    if (in[0].h + 2 * a->pad < a->k || in[0].w + 2 * a->pad < a->k || oh < 1 || ow < 1)
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: input %dx%d is too small for a %dx%d kernel", nd->name,
                         in[0].h, in[0].w, a->k, a->k);
    *out = (tshape){in[0].n, a->cout, oh, ow};
    if (nd->n_in > 1 && (in[1].c != out->c || in[1].h != oh || in[1].w != ow))
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: the residual is %dx%dx%d, the output %dx%dx%d", nd->name,
                         in[1].c, in[1].h, in[1].w, out->c, oh, ow);
    return CSPRESNET_OK;
}

static conv_geom conv_geom_of(const gnode *nd, const tshape *in, const tshape *out)
{
    return (conv_geom){in->c, in->h, in->w, out->c, out->h, out->w, nd->a.k, nd->a.stride, nd->a.pad};
}

static void conv_plan_node(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                           node_plan *np)
{
    conv_geom g = conv_geom_of(nd, &in[0], out);
    const kernel_set *kt = env->kernels;
    if (env->mode == GRAPH_EVAL && env->precision == CSPRESNET_PRECISION_BF16 && np->prepared) {
        if (conv2d_bf16_taps_applies(kt, &g)) {
            np->path = CONV_PATH_BF16_TAPS;
            np->ws_shared = conv2d_bf16_taps_shared(&g);
            return;
        }
        if (conv2d_bf16_applies(kt, &g)) {
            np->path = CONV_PATH_BF16;
            np->ws_thread = conv2d_bf16_scratch_per_thread();
            return;
        }
    }
    if (env->mode == GRAPH_EVAL && env->precision == CSPRESNET_PRECISION_INT8 && np->prepared) {
        /* an int8 context packs only the convs that run int8 */
        if (conv2d_int8_taps_applies(kt, &g)) {
            np->path = CONV_PATH_INT8_TAPS;
            np->ws_shared = conv2d_int8_taps_shared(kt, &g);
        } else {
            np->path = CONV_PATH_INT8;
            np->ws_thread = conv2d_int8_scratch_per_thread(kt, (long)g.in_c * g.k * g.k);
        }
        return;
    }
    if (env->mode == GRAPH_EVAL) {
        np->path = conv2d_plan(kt, &g, in[0].n, env->threads, env->winograd, &np->ws_thread, &np->ws_shared);
        return;
    }
    /* training: the column-chunk engine forward (GEMM tables) and the backward's needs */
    if (kt->gemm) {
        long pt, sh;
        np->path = CONV_PATH_COLS;
        np->din_assign_ok = 1;
        conv2d_backward_scratch(kt, &g, in[0].n, &pt, &sh);
        long cols = conv_cols_scratch(kt, &g);
        np->ws_thread = pt > cols ? pt : cols;
        np->ws_shared = sh;
    } else {
        np->path = CONV_PATH_REF;
        long bwd = conv2d_backward_scratch_per_thread(g.out_c, g.k);
        np->ws_thread = bwd > conv2d_scratch_per_thread() ? bwd : conv2d_scratch_per_thread();
        np->ws_shared = conv2d_backward_shared_floats(g.out_c, g.in_c, g.k);
    }
}

static void conv_forward_node(op_run *r)
{
    const gnode *nd = r->nd;
    conv_geom g = conv_geom_of(nd, &(tshape){r->in[0].n, r->in[0].c, r->in[0].h, r->in[0].w},
                               &(tshape){r->out.n, r->out.c, r->out.h, r->out.w});
    conv_epilogue ep = {nd->param[1] >= 0 ? r->p[1] : NULL, nd->a.act, nd->n_in > 1 ? &r->in[1] : NULL};
    int plain = !ep.bias && ep.act == CSPRESNET_ACT_NONE && !ep.residual;
    if (r->np->path == CONV_PATH_COLS)
        conv_cols_forward(&r->ex, &g, r->p[0], &r->in[0], &r->out);
    else if (r->np->path == CONV_PATH_BF16)
        conv2d_bf16_forward(&r->ex, &g, r->ex.prepared, &r->in[0], &r->out, plain ? NULL : &ep);
    else if (r->np->path == CONV_PATH_BF16_TAPS)
        conv2d_bf16_taps_forward(&r->ex, &g, r->ex.prepared, &r->in[0], &r->out, plain ? NULL : &ep);
    else if (r->np->path == CONV_PATH_INT8)
        conv2d_int8_forward(&r->ex, &g, r->ex.prepared, &r->in[0], &r->out, plain ? NULL : &ep);
    else if (r->np->path == CONV_PATH_INT8_TAPS)
        conv2d_int8_taps_forward(&r->ex, &g, r->ex.prepared, &r->in[0], &r->out, plain ? NULL : &ep);
    else
        conv2d_run(&r->ex, r->np->path, &g, r->p[0], &r->in[0], &r->out, plain ? NULL : &ep);
}

static void conv_backward_node(op_run *r)
{
    conv_geom g = conv_geom_of(r->nd, &(tshape){r->in[0].n, r->in[0].c, r->in[0].h, r->in[0].w},
                               &(tshape){r->dout.n, r->dout.c, r->dout.h, r->dout.w});
    conv2d_backward(&r->ex, &g, r->p[0], &r->in[0], &r->dout, r->din[0].data ? &r->din[0] : NULL,
                    r->din_assign[0], r->dp[0]);
}

static double conv_macs(const gnode *nd, const tshape *in, const tshape *out)
{
    return (double)out->n * out->c * out->h * out->w * in[0].c * nd->a.k * nd->a.k;
}

int conv2d_node_lowp(const gnode *nd, const param_info *params, const prepare_env *pe)
{
    const param_info *w = &params[nd->param[0]];
    conv_geom g = {(int)w->shape[1], 1, 1, (int)w->shape[0], 1, 1, nd->a.k, nd->a.stride, nd->a.pad};
    if (pe->precision == CSPRESNET_PRECISION_BF16)
        return conv2d_bf16_taps_applies(pe->kernels, &g) || conv2d_bf16_applies(pe->kernels, &g);
    if (pe->precision != CSPRESNET_PRECISION_INT8)
        return 0;
    long K = (long)g.in_c * g.k * g.k;
    if (!conv2d_int8_applies(K, pe->act_scale))
        return 0;
    if (pe->qw)   /* a quantized file: its int8 convs stay int8 on every kernel set */
        return 1;
    /* the tap form (AVX-512 VNNI, AMX) runs every 3x3 conv but the stem's first; elsewhere
     * bf16's rule: on the sets without a fast int8 tile (avx2, generic) Winograd F(4,3)'s
     * 4x fewer multiplies win, so those convs stay fp32 Winograd (docs/ARCHITECTURE.md) */
    return conv2d_int8_taps_applies(pe->kernels, &g) || conv2d_bf16_applies(pe->kernels, &g);
}

/* Packed at load: for bf16 contexts the bf16 weights of the convs that run in bf16
 * (the tap form of conv2d_bf16_taps.c, else conv2d_bf16.c's rows), for int8 ones the
 * quantized rows of the convs conv2d_node_lowp picks (the tap form's where the set has
 * it, conv2d_int8_taps.c, else conv2d_int8.c's; from the stored values of a quantized
 * file; the others run fp32 unprepared), otherwise the Winograd U of a 3x3 stride-1 conv
 * for tables with Winograd kernels. */
static long conv_prepare_floats(const gnode *nd, const param_info *params, const prepare_env *pe)
{
    const param_info *w = &params[nd->param[0]];
    conv_geom g = {(int)w->shape[1], 1, 1, (int)w->shape[0], 1, 1, nd->a.k, nd->a.stride, nd->a.pad};
    if (pe->precision == CSPRESNET_PRECISION_BF16 && conv2d_bf16_taps_applies(pe->kernels, &g))
        return conv2d_bf16_taps_weight_floats(pe->kernels, g.out_c, g.in_c, g.k);
    if (pe->precision == CSPRESNET_PRECISION_BF16 && conv2d_bf16_applies(pe->kernels, &g))
        return conv2d_bf16_weight_floats(pe->kernels, g.out_c, (long)g.in_c * g.k * g.k);
    if (pe->precision == CSPRESNET_PRECISION_INT8) {
        if (!conv2d_node_lowp(nd, params, pe))
            return 0;
        if (conv2d_int8_taps_applies(pe->kernels, &g))
            return conv2d_int8_taps_weight_floats(pe->kernels, &g);
        return conv2d_int8_weight_floats(pe->kernels, g.out_c, (long)g.in_c * g.k * g.k);
    }
    /* A bf16 context's fp32 convs run as an fp32 context runs them, U per forward: U is
     * 4x the 3x3 weights (l: 183 MB), the memory goal leaves it out of fp32 loads too. */
    if (pe->precision != CSPRESNET_PRECISION_FP32)
        return 0;
    int wino = pe->kernels->winograd && nd->a.k == 3 && nd->a.stride == 1 && nd->a.pad == 1;
    return wino ? conv2d_winograd_u_floats(&g) : 0;
}

static void conv_prepare(const gnode *nd, const param_info *params, const float *weights, const prepare_env *pe,
                         float *dst)
{
    const param_info *w = &params[nd->param[0]];
    conv_geom g = {(int)w->shape[1], 1, 1, (int)w->shape[0], 1, 1, nd->a.k, nd->a.stride, nd->a.pad};
    const long K = (long)g.in_c * g.k * g.k;
    if (pe->precision == CSPRESNET_PRECISION_BF16 && conv2d_bf16_taps_applies(pe->kernels, &g))
        conv2d_bf16_taps_weights(pe->kernels, param_at(weights, w), g.out_c, g.in_c, g.k, dst);
    else if (pe->precision == CSPRESNET_PRECISION_BF16 && conv2d_bf16_applies(pe->kernels, &g))
        conv2d_bf16_weights(pe->kernels, param_at(weights, w), g.out_c, K, dst);
    else if (pe->precision == CSPRESNET_PRECISION_INT8) {
        int8_weights src = {.w = param_at(weights, w), .act_mean = pe->act_mean};
        if (pe->qw)   /* a quantized file's values, not the arena's dequantized copy */
            src = (int8_weights){.q = pe->qw, .w_scale = pe->qw_scale, .corr = pe->qw_corr};
        if (conv2d_int8_taps_applies(pe->kernels, &g))
            conv2d_int8_taps_weights(pe->kernels, &g, &src, pe->act_scale, pe->act_zero, dst);
        else
            conv2d_int8_weights(pe->kernels, &src, g.out_c, K, g.k * g.k, pe->act_scale, pe->act_zero, dst);
    }
    else
        conv2d_winograd_u(pe->kernels, &g, param_at(weights, w), dst);
}

const op_desc op_conv2d = {"conv2d", OP_OUT_OF_PLACE, conv_infer, conv_plan_node, conv_forward_node,
    conv_forward_node, conv_backward_node, conv_macs, conv_prepare_floats, conv_prepare};
