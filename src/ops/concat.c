/*
 * concat.c - concatenation along channels: out = [in[0], in[1], ...] (N, sum C, H, W).
 *
 * In eval mode the planner usually writes the inputs straight into their slices of
 * out (np->skip: nothing to run); otherwise, and in training, the inputs are copied.
 * Backward adds each slice of dout into its input's gradient (or copies it, where this
 * is the gradient's first writer). Work is split over
 * (image, output channel) planes.
 */
#include <string.h>

#include "graph/graph.h"

typedef struct concat_job {
    const op_run *r;
    int backward;
} concat_job;

static void concat_worker(void *arg, int t, int nt)
{
    const concat_job *job = arg;
    const op_run *r = job->r;
    const tensor4 *out = job->backward ? &r->dout : &r->out;
    const long plane = (long)out->h * out->w;
    long begin, end;
    split_range((long)out->n * out->c, t, nt, &begin, &end);
    for (long p = begin; p < end; p++) {
        int n = (int)(p / out->c), c = (int)(p % out->c), i = 0;
        while (c >= r->in[i].c) {
            c -= r->in[i].c;
            i++;
        }
        float *whole = out->data + n * out->batch_stride + (long)(p % out->c) * plane;
        if (job->backward) {
            if (!r->din[i].data)
                continue;
            float *part = r->din[i].data + n * r->din[i].batch_stride + c * plane;
            if (r->din_assign[i])
                memcpy(part, whole, (size_t)plane * sizeof(float));
            else
                for (long k = 0; k < plane; k++)
                    part[k] += whole[k];
        } else {
            const float *part = r->in[i].data + n * r->in[i].batch_stride + c * plane;
            memcpy(whole, part, (size_t)plane * sizeof(float));
        }
    }
}

static cspresnet_status concat_infer(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    *out = in[0];
    for (int i = 1; i < nd->n_in; i++) {
        if (in[i].n != in[0].n || in[i].h != in[0].h || in[i].w != in[0].w)
            return error_set(err, CSPRESNET_ERR_SHAPE, "%s: input %d is %dx%d, input 0 %dx%d", nd->name, i,
                             in[i].h, in[i].w, in[0].h, in[0].w);
        out->c += in[i].c;
    }
    return CSPRESNET_OK;
}

static void concat_forward(op_run *r)
{
    concat_job job = {r, 0};
    threadpool_run(r->ex.pool, concat_worker, &job);
}

static void concat_backward(op_run *r)
{
    concat_job job = {r, 1};
    threadpool_run(r->ex.pool, concat_worker, &job);
}

const op_desc op_concat = {"concat", OP_OUT_OF_PLACE,
    concat_infer, op_plan_assigns_din, concat_forward, concat_forward, concat_backward, NULL, NULL, NULL};
