/*
 * graph.c - the training graph: the model's eval graph rewritten out of place.
 *
 * Walks the eval nodes in order, keeping for each eval tensor the training tensor
 * that holds its current value. Every conv, bn, act, add and ESE writes a new tensor;
 * reading a CSP concat whose halves were written as slices emits a TN_CONCAT of the
 * two halves' current values. Segments come from the node names ("stem." -> 0,
 * "stages.i." -> i + 1).
 */
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

typedef struct tbuilder {
    tgraph *g;
    int cap_nodes, cap_tensors;
    int failed;
} tbuilder;

static int new_tensor(tbuilder *b, int c, int level, int seg)
{
    tgraph *g = b->g;
    if (g->n_tensors == b->cap_tensors) {
        int cap = b->cap_tensors ? 2 * b->cap_tensors : 256;
        ttensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t) {
            b->failed = 1;
            return 0;
        }
        g->tensors = t;
        b->cap_tensors = cap;
    }
    ttensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    t->c = c;
    t->level = level;
    t->seg = seg;
    return g->n_tensors++;
}

static tnode *new_node(tbuilder *b, tnode_kind kind, int seg, const graph_node *src)
{
    static tnode discard;
    tgraph *g = b->g;
    if (g->n_nodes == b->cap_nodes) {
        int cap = b->cap_nodes ? 2 * b->cap_nodes : 256;
        tnode *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) {
            b->failed = 1;
            return &discard;
        }
        g->nodes = n;
        b->cap_nodes = cap;
    }
    tnode *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->seg = seg;
    n->src = src;
    n->in1 = -1;
    n->save = -1;
    return n;
}

static int segment_of(const char *name)
{
    if (strncmp(name, "stages.", 7) == 0)
        return 1 + (name[7] - '0');
    return 0;
}

/* Current training tensor of eval tensor t; a concat parent is assembled from its
 * slices the first time it is read. */
static int resolve(tbuilder *b, const cspresnet_model *m, int *cur, int t, int seg)
{
    if (cur[t] >= 0)
        return cur[t];
    int lo = -1, hi = -1;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].parent == t) {
            if (m->tensors[i].channel_offset == 0)
                lo = i;
            else
                hi = i;
        }
    if (lo < 0 || hi < 0 || cur[lo] < 0 || cur[hi] < 0) {
        b->failed = 2;
        return 0;
    }
    int out = new_tensor(b, m->tensors[t].c, m->tensors[t].level, seg);
    tnode *n = new_node(b, TN_CONCAT, seg, NULL);
    n->in0 = cur[lo];
    n->in1 = cur[hi];
    n->out = out;
    cur[t] = out;
    return out;
}

cspresnet_status tgraph_build(const cspresnet_model *m, tgraph *g, error_buf *err)
{
    memset(g, 0, sizeof *g);
    if (m->deployed)
        return error_set(err, CSPRESNET_ERR_ARGUMENT,
                         "training needs the BN form; a deployed model cannot be trained");
    int *cur = malloc((size_t)m->n_tensors * sizeof *cur);
    if (!cur)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the training graph");
    for (int i = 0; i < m->n_tensors; i++)
        cur[i] = -1;
    tbuilder b = {.g = g};
    cur[0] = new_tensor(&b, 3, 0, -1);
    if (!b.failed)
        g->tensors[0].boundary = 1;
    for (int s = 0; s < TRAIN_SEGMENTS; s++)
        g->seg_first[s] = g->seg_end[s] = -1;

    for (int i = 0; i < m->n_nodes && !b.failed; i++) {
        const graph_node *nd = &m->nodes[i];
        int seg = segment_of(nd->name);
        if (g->seg_first[seg] < 0)
            g->seg_first[seg] = g->n_nodes;
        static const tnode_kind kinds[] = {[NODE_CONV] = TN_CONV, [NODE_BN] = TN_BN,
                                           [NODE_ACT] = TN_ACT, [NODE_ADD] = TN_ADD,
                                           [NODE_ESE] = TN_ESE};
        int in0 = resolve(&b, m, cur, nd->in0, seg);
        int in1 = nd->kind == NODE_ADD ? resolve(&b, m, cur, nd->in1, seg) : -1;
        const graph_tensor *ot = &m->tensors[nd->out];
        int out = new_tensor(&b, nd->kind == NODE_CONV ? nd->cout : ot->c, ot->level, seg);
        tnode *n = new_node(&b, kinds[nd->kind], seg, nd);
        n->in0 = in0;
        n->in1 = in1;
        n->out = out;
        cur[nd->out] = out;
        g->seg_end[seg] = g->n_nodes;
    }
    for (int s = 0; s < CSPRESNET_NUM_STAGES && !b.failed; s++) {
        int t = cur[m->stage_tensor[s]];
        g->seg_out[s + 1] = t;
        g->tensors[t].boundary = 1;
    }
    if (!b.failed) {
        /* the stem output: the input of stages.0.conv_down */
        g->seg_out[0] = g->nodes[g->seg_first[1]].in0;
        g->tensors[g->seg_out[0]].boundary = 1;
    }
    free(cur);
    if (b.failed) {
        int code = b.failed;
        tgraph_free(g);
        return code == 2 ? error_set(err, CSPRESNET_ERR_CONFIG, "training graph: a concat read before both halves were written")
                         : error_set(err, CSPRESNET_ERR_MEMORY, "out of memory building the training graph");
    }
    return CSPRESNET_OK;
}

void tgraph_free(tgraph *g)
{
    free(g->nodes);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}
