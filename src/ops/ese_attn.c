/*
 * ese_attn.c - the gate of PP-YOLOE's ESEAttn: out = x * sigmoid(fc(mean_hw(x))),
 * fc a 1x1 conv with bias (SPEC §5). Unlike the backbone's ESE (ese.c, hardsigmoid)
 * the gate is the logistic sigmoid and the output is usually a new tensor: the head's
 * feature is also the class branch's residual and the other stem's input. ESEAttn's
 * conv (ConvBN, RepVGG or none) is the builder's, after this node.
 *
 * in[0] (N,C,H,W) -> out (N,C,H,W); params [fc weight (C,C,1,1), fc bias (C)]. Shared
 * workspace: the means (N*C) then z (N*C). Eval only. The kernels are sigmoid_mul.c's
 * (detector_ops.h): double accumulators, split by planes or outputs, so the result
 * does not depend on the thread count.
 */
#include "graph/graph.h"
#include "ops/detector_ops.h"

static void ese_attn_plan(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                          node_plan *np)
{
    (void)env;
    (void)nd;
    (void)in;
    np->ws_shared = 2L * out->n * out->c;
}

static void ese_attn_forward(op_run *r)
{
    const tensor4 *x = &r->in[0];
    float *mean = r->ex.op_scratch, *z = mean + (long)x->n * x->c;
    mean_hw_forward(r->ex.pool, r->ex.kernels->reduce->mean, x, mean);
    channel_fc_forward(r->ex.pool, mean, x->n, x->c, x->c, r->p[0], r->p[1], z);
    sigmoid_gate_forward(r->ex.pool, r->ex.kernels->reduce->scale, x, z, &r->out);
}

/* the fc, counted as the summary counts the ESE's: a Conv2D on a 1x1 map */
static double ese_attn_macs(const gnode *nd, const tshape *in, const tshape *out)
{
    (void)nd;
    (void)in;
    return (double)out->n * out->c * out->c;
}

const op_desc op_ese_attn = {"ese_attn", OP_IN_PLACE_ANY,
    op_infer_same, ese_attn_plan, ese_attn_forward, NULL, NULL, ese_attn_macs, NULL, NULL};
