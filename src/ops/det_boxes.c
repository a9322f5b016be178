/*
 * det_boxes.c - the detector's "boxes" output: the head's three box branches DFL
 * decoded at their anchors (dfl_decode.c's kernel, SPEC §5), before any scale factor.
 *
 * in[l] (N, 4*bins, H_l, W_l) for the levels l = 0, 1, 2 at strides a.stride,
 * a.stride/2, a.stride/4 (32, 16, 8); params [proj (1, bins, 1, 1): proj_conv's weight].
 * out is stored as a 4-D tensor (N, L, 4, 1) = [N, L, 4] in C order, L = sum H_l*W_l
 * (levels in input order, each row-major, y outer), each row x1, y1, x2, y2 in input
 * pixels. No workspace. Eval only.
 */
#include "graph/graph.h"
#include "ops/detector_ops.h"

static cspresnet_status boxes_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    long anchors = 0;
    for (int l = 0; l < nd->n_in; l++) {
        if (in[l].c % 4 || in[l].c != in[0].c || in[l].n != in[0].n)
            return error_set(err, CSPRESNET_ERR_SHAPE,
                             "%s: level %d has %d box channels, level 0 %d (4 * (reg_max + 1) each)", nd->name, l,
                             in[l].c, in[0].c);
        anchors += (long)in[l].h * in[l].w;
    }
    if (anchors > (1L << 30) / 4)
        return error_set(err, CSPRESNET_ERR_SHAPE, "%s: %ld anchors are too many", nd->name, anchors);
    *out = (tshape){in[0].n, (int)anchors, 4, 1};
    return CSPRESNET_OK;
}

static void boxes_forward(op_run *r)
{
    det_level_out dst = {r->out.data, r->out.c, 0};
    int bins = r->in[0].c / 4;
    for (int l = 0; l < r->nd->n_in; l++) {
        float stride = (float)(r->nd->a.stride >> l);
        dfl_decode_forward(r->ex.pool, r->ex.kernels->reduce, &r->in[l], r->p[0], bins, stride, NULL, &dst);
        dst.offset += (long)r->in[l].h * r->in[l].w;
    }
}

/* The DFL expectation is upstream's proj_conv, a 1x1 conv bins -> 1 over [N, bins, L, 4]:
 * the summary counts it with the convs. */
static double boxes_macs(const gnode *nd, const tshape *in, const tshape *out)
{
    (void)nd;
    return (double)out->n * out->c * 4 * (in[0].c / 4);
}

const op_desc op_det_boxes = {"det_boxes", OP_OUT_OF_PLACE,
    boxes_infer, NULL, boxes_forward, NULL, NULL, boxes_macs, NULL, NULL};
