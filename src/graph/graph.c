/*
 * graph.c - what every user of a graph shares: freeing it, finding a named tensor
 * and inferring every tensor's shape for an input shape (each op's infer, in node
 * order: the builder emits nodes in execution order).
 */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

size_t elem_size(elem_type dt)
{
    switch (dt) {
    case ELEM_F32:
    case ELEM_I32:
        return 4;
    case ELEM_BF16:
        return 2;
    case ELEM_I8:
        return 1;
    }
    return 4;
}

void graph_free(graph *g)
{
    if (!g)
        return;
    free(g->tensors);
    free(g->nodes);
    free(g->modules);
    memset(g, 0, sizeof *g);
}

int graph_find_named(const graph *g, const char *name)
{
    for (int i = 0; i < g->n_named; i++)
        if (strcmp(g->names[i], name) == 0)
            return g->named[i];
    return -1;
}

cspresnet_status graph_infer_shapes(const graph *g, const tshape *input, tensor_plan *t,
                                    error_buf *err)
{
    for (int i = 0; i < g->n_tensors; i++)
        t[i].s = (tshape){0, 0, 0, 0};
    t[0].s = *input;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        tshape in[GN_MAX_IN];
        for (int j = 0; j < nd->n_in; j++)
            in[j] = t[nd->in[j]].s;
        cspresnet_status s = nd->op->infer(nd, in, &t[nd->out].s, err);
        if (s != CSPRESNET_OK)
            return s;
    }
    return CSPRESNET_OK;
}

cspresnet_status op_infer_same(const gnode *nd, const tshape *in, tshape *out, error_buf *err)
{
    (void)nd;
    (void)err;
    *out = in[0];
    return CSPRESNET_OK;
}
