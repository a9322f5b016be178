/*
 * det_scores.c - the detector's "scores" output: the sigmoid of the head's three class
 * branches, levels concatenated along the anchors (dfl_decode.c's kernel, SPEC §5).
 *
 * in[l] (N, C, H_l, W_l) for the levels l in order (strides 32, 16, 8) -> out stored
 * as a 4-D tensor (N, C, L, 1) = [N, C, L] in C order, L = sum H_l*W_l (each level
 * row-major, y outer). No parameters, no workspace. Eval only.
 */
#include "graph/graph.h"
#include "ops/detector_ops.h"

static cspresnet_status scores_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    long anchors = 0;
    for (int l = 0; l < nd->n_in; l++) {
        if (in[l].c != in[0].c || in[l].n != in[0].n)
            return error_set(err, CSPRESNET_ERR_SHAPE, "%s: level %d has %d classes, level 0 %d", nd->name, l,
                             in[l].c, in[0].c);
        anchors += (long)in[l].h * in[l].w;
    }
    if (anchors > (1L << 30))
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: %ld anchors are too many", nd->name, anchors);
    *out = (tshape){in[0].n, in[0].c, (int)anchors, 1};
    return CSPRESNET_OK;
}

static void scores_forward(op_run *r)
{
    det_level_out dst = {r->out.data, r->out.h, 0};
    bias_act_fn act = r->ex.kernels->conv ? r->ex.kernels->conv->bias_act : f32_bias_act__ref;
    for (int l = 0; l < r->nd->n_in; l++) {
        scores_sigmoid_forward(r->ex.pool, act, &r->in[l], &dst);
        dst.offset += (long)r->in[l].h * r->in[l].w;
    }
}

const op_desc op_det_scores = {"det_scores", OP_OUT_OF_PLACE,
    scores_infer, NULL, scores_forward, NULL, NULL, NULL, NULL, NULL};
