/*
 * plan.c - planning a graph for an input shape: shapes (each op's infer), each node's
 * path and workspace (each op's plan), then where every tensor lives.
 *
 * Eval: storage is shared where values die. An op that may work in place gets the
 * storage of an input whose last reader it is (not the graph input, not an output); a
 * concat whose inputs all die there has them written straight into its slices and
 * runs nothing. Every storage then has a lifetime [first node writing it, last node
 * reading it] (outputs live to the end) and is placed largest first at the lowest
 * offset that overlaps no placed storage of an intersecting lifetime.
 *
 * Train: every tensor has its own value. Boundaries (the input, named tensors and
 * tensors read by another segment) have their value and gradient apart; a segment's
 * inner values lie in its own region (one region for all with recomputation), inner
 * gradients in one region all segments share (backward runs a segment at a time). A
 * BN whose output only its activation reads runs that activation (its output is never
 * written). Then the node saves, the caller's extra floats and the workspace.
 *
 * Workspace: threads x the largest per-thread need, then the largest shared need.
 */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

#define ALIGN16(x) (((x) + 15) & ~15L)

void graph_plan_free(graph_plan *p)
{
    free(p->t);
    free(p->np);
    memset(p, 0, sizeof *p);
}

static int is_named(const graph *g, int t)
{
    for (int i = 0; i < g->n_named; i++)
        if (g->named[i] == t)
            return 1;
    return 0;
}

static int is_output(const graph *g, int t)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == t)
            return 1;
    return 0;
}

/* Shapes and node plans, shared by both modes. */
static cspresnet_status plan_nodes(const graph *g, const plan_env *env, graph_plan *p, error_buf *err)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        tshape in[GN_MAX_IN];
        for (int j = 0; j < nd->n_in; j++)
            in[j] = p->t[nd->in[j]].s;
        memset(&p->np[i], 0, sizeof p->np[i]);
        p->np[i].prepared = env->prepared_off && env->prepared_off[i] >= 0;
        if (nd->op->plan)
            nd->op->plan(env, nd, in, &p->t[nd->out].s, &p->np[i]);
    }
    (void)err;
    return CSPRESNET_OK;
}

static void workspace(const graph *g, graph_plan *p)
{
    p->ws_thread = p->ws_shared = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (ALIGN16(p->np[i].ws_thread) > p->ws_thread)
            p->ws_thread = ALIGN16(p->np[i].ws_thread);
        if (p->np[i].ws_shared > p->ws_shared)
            p->ws_shared = p->np[i].ws_shared;
    }
}

/* ---------------------------------------------------------------- eval */

typedef struct eval_tmp {
    int *parent;          /* alias: storage of parent at channel chan[t], or -1 */
    int *chan;
    int *last_read, *first;
    long *size;
    int *order;
    long *off;
} eval_tmp;

static int root_of(const eval_tmp *e, int t, int *chan)
{
    int c = 0;
    while (e->parent[t] >= 0) {
        c += e->chan[t];
        t = e->parent[t];
    }
    if (chan)
        *chan = c;
    return t;
}

static void alias_eval(const graph *g, graph_plan *p, eval_tmp *e)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        if (nd->op == &op_concat) {
            int ok = !is_output(g, nd->out);
            for (int j = 0; j < nd->n_in && ok; j++) {
                int u = nd->in[j], r = root_of(e, u, NULL);
                ok = u != 0 && e->last_read[u] == i && !is_output(g, u);
                for (int k = 0; k < j && ok; k++)
                    ok = root_of(e, nd->in[k], NULL) != r;
            }
            if (!ok)
                continue;
            int c = 0;
            for (int j = 0; j < nd->n_in; j++) {
                int r = root_of(e, nd->in[j], NULL);
                e->parent[r] = nd->out;
                e->chan[r] = c;
                c += p->t[nd->in[j]].s.c;
            }
            p->np[i].skip = 1;
            continue;
        }
        if (nd->op->in_place == OP_OUT_OF_PLACE)
            continue;
        int inputs = nd->op->in_place == OP_IN_PLACE_ANY ? nd->n_in : 1;
        for (int j = 0; j < inputs; j++) {
            int u = nd->in[j];
            const tshape *a = &p->t[u].s, *b = &p->t[nd->out].s;
            if (u != 0 && e->last_read[u] == i && !is_output(g, u) && a->c == b->c && a->h == b->h &&
                a->w == b->w && a->n == b->n) {
                e->parent[nd->out] = u;
                e->chan[nd->out] = 0;
                break;
            }
        }
    }
}

/* Largest first (ties by id, so the plan is deterministic), lowest free offset. */
static long place(const graph *g, eval_tmp *e)
{
    int count = 0;
    for (int t = 1; t < g->n_tensors; t++)
        if (e->size[t] > 0)
            e->order[count++] = t;
    for (int i = 1; i < count; i++) {
        int v = e->order[i], j = i - 1;
        while (j >= 0 && (e->size[e->order[j]] < e->size[v] ||
                          (e->size[e->order[j]] == e->size[v] && e->order[j] > v))) {
            e->order[j + 1] = e->order[j];
            j--;
        }
        e->order[j + 1] = v;
    }
    long arena = 0;
    for (int i = 0; i < count; i++) {
        int t = e->order[i];
        long off = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                int u = e->order[j];
                if (e->last_read[u] < e->first[t] || e->last_read[t] < e->first[u])
                    continue;
                if (off < e->off[u] + e->size[u] && e->off[u] < off + e->size[t]) {
                    off = e->off[u] + e->size[u];
                    moved = 1;
                }
            }
        }
        e->off[t] = off;
        if (off + e->size[t] > arena)
            arena = off + e->size[t];
    }
    return arena;
}

static cspresnet_status plan_eval(const graph *g, graph_plan *p, error_buf *err)
{
    const int T = g->n_tensors;
    eval_tmp e;
    int *ints = malloc(sizeof(int) * (size_t)T * 5);
    long *longs = malloc(sizeof(long) * (size_t)T * 2);
    if (!ints || !longs) {
        free(ints);
        free(longs);
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory planning activations");
    }
    e = (eval_tmp){ints, ints + T, ints + 2 * T, ints + 3 * T, longs, ints + 4 * T, longs + T};
    for (int t = 0; t < T; t++) {
        e.parent[t] = -1;
        e.chan[t] = 0;
        e.last_read[t] = e.first[t] = -1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        for (int j = 0; j < nd->n_in; j++)
            e.last_read[nd->in[j]] = i;
        e.first[nd->out] = i;
        if (e.last_read[nd->out] < i)
            e.last_read[nd->out] = i;
    }
    for (int o = 0; o < g->n_outputs; o++)
        e.last_read[g->outputs[o]] = g->n_nodes;
    alias_eval(g, p, &e);
    /* the lifetime of a storage spans every tensor in it (first/last_read of roots
     * are widened in place; the alias walk above already used the tensors' own) */
    for (int t = 0; t < T; t++)
        e.size[t] = 0;
    for (int t = 1; t < T; t++) {
        int r = root_of(&e, t, NULL);
        if (r == t)
            e.size[t] = ALIGN16(tshape_numel(&p->t[t].s));
    }
    for (int t = 1; t < T; t++) {
        int r = root_of(&e, t, NULL);
        if (r == t)
            continue;
        if (e.first[t] < e.first[r])
            e.first[r] = e.first[t];
        if (e.last_read[t] > e.last_read[r])
            e.last_read[r] = e.last_read[t];
    }
    p->arena_floats = place(g, &e);
    for (int t = 0; t < T; t++) {
        int chan, r = root_of(&e, t, &chan);
        const tshape *s = &p->t[t].s;
        long plane = (long)s->h * s->w;
        p->t[t].bstride = (long)p->t[r].s.c * plane;
        p->t[t].off = t == 0 ? -1 : e.off[r] + (long)chan * plane;
        p->t[t].goff = -1;
    }
    free(ints);
    free(longs);
    return CSPRESNET_OK;
}

/* ---------------------------------------------------------------- train */

static void fuse_bn_act(const graph *g, graph_plan *p)
{
    for (int i = 0; i + 1 < g->n_nodes; i++) {
        const gnode *bn = &g->nodes[i], *act = &g->nodes[i + 1];
        if (bn->op != &op_batchnorm || act->op != &op_activation || act->in[0] != bn->out ||
            act->seg != bn->seg || p->t[bn->out].boundary)
            continue;
        int readers = 0;
        for (int j = 0; j < g->n_nodes; j++)
            for (int k = 0; k < g->nodes[j].n_in; k++)
                readers += g->nodes[j].in[k] == bn->out;
        if (readers == 1) {
            p->np[i].fused_act = 1;
            p->np[i + 1].skip = 1;
            p->t[bn->out].dead = 1;
        }
    }
}

static cspresnet_status segments(const graph *g, graph_plan *p, error_buf *err)
{
    if (g->n_segments > GRAPH_MAX_SEGMENTS)
        return error_set(err, CSPRESNET_ERR_CONFIG, "the graph has %d training segments, at most %d", g->n_segments,
                         GRAPH_MAX_SEGMENTS);
    for (int s = 0; s < GRAPH_MAX_SEGMENTS; s++)
        p->seg_first[s] = p->seg_end[s] = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int s = g->nodes[i].seg;
        if (i == 0 || g->nodes[i - 1].seg != s) {
            if (s < 0 || s >= g->n_segments || p->seg_end[s] > 0)
                return error_set(err, CSPRESNET_ERR_CONFIG, "%s: training segment %d is not one run of nodes",
                                 g->nodes[i].name, s);
            p->seg_first[s] = i;
        }
        p->seg_end[s] = i + 1;
    }
    for (int t = 0; t < g->n_tensors; t++)
        p->t[t].boundary = t == 0 || is_named(g, t);
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++) {
            int u = g->nodes[i].in[j];
            if (g->tensors[u].seg != g->nodes[i].seg)
                p->t[u].boundary = 1;
        }
    return CSPRESNET_OK;
}

static void plan_train(const graph *g, graph_plan *p, int recompute, long extra)
{
    long off = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        tensor_plan *tp = &p->t[t];
        tp->bstride = (long)tp->s.c * tp->s.h * tp->s.w;
        if (tp->boundary) {
            long f = ALIGN16(tshape_numel(&tp->s));
            tp->off = off;
            tp->goff = off + f;
            off += 2 * f;
        }
    }
    long seg_off[GRAPH_MAX_SEGMENTS], max_seg = 0;
    for (int s = 0; s < GRAPH_MAX_SEGMENTS; s++)
        p->seg_size[s] = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        tensor_plan *tp = &p->t[t];
        if (tp->boundary)
            continue;
        int s = g->tensors[t].seg;
        tp->off = p->seg_size[s];   /* relative for now */
        if (!tp->dead)
            p->seg_size[s] += ALIGN16(tshape_numel(&tp->s));
    }
    for (int s = 0; s < g->n_segments; s++) {
        if (p->seg_size[s] > max_seg)
            max_seg = p->seg_size[s];
        seg_off[s] = off;
        if (!recompute)
            off += p->seg_size[s];
    }
    if (recompute)
        off += max_seg;
    p->inner_grad_off = off;
    off += max_seg;
    for (int t = 0; t < g->n_tensors; t++) {
        tensor_plan *tp = &p->t[t];
        if (!tp->boundary) {
            tp->goff = p->inner_grad_off + tp->off;
            tp->off += seg_off[g->tensors[t].seg];
        }
    }
    p->save_off = off;
    for (int i = 0; i < g->n_nodes; i++) {
        p->np[i].save_off = off - p->save_off;
        off += ALIGN16(p->np[i].save_floats);
    }
    p->extra_off = off;
    off += ALIGN16(extra);
    p->arena_floats = off;
}

cspresnet_status graph_plan_make(const graph *g, const plan_env *env, const tshape *input, int recompute,
                                 long extra, graph_plan *p, error_buf *err)
{
    memset(p, 0, sizeof *p);
    p->mode = env->mode;
    p->threads = env->threads;
    p->t = calloc((size_t)g->n_tensors, sizeof *p->t);
    p->np = calloc((size_t)g->n_nodes, sizeof *p->np);
    if (!p->t || !p->np) {
        graph_plan_free(p);
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory planning the graph");
    }
    cspresnet_status s = graph_infer_shapes(g, input, p->t, err);
    if (s == CSPRESNET_OK)
        s = plan_nodes(g, env, p, err);
    if (s == CSPRESNET_OK && env->mode == GRAPH_EVAL)
        s = plan_eval(g, p, err);
    if (s == CSPRESNET_OK && env->mode == GRAPH_TRAIN) {
        s = segments(g, p, err);
        if (s == CSPRESNET_OK) {
            fuse_bn_act(g, p);
            plan_train(g, p, recompute, extra);
        }
    }
    if (s != CSPRESNET_OK) {
        graph_plan_free(p);
        return s;
    }
    workspace(g, p);
    p->ws_off = p->arena_floats;
    p->block_floats = p->ws_off + p->ws_thread * p->threads + ALIGN16(p->ws_shared);
    return CSPRESNET_OK;
}

void op_plan_assigns_din(const plan_env *env, const gnode *nd, const tshape *in, const tshape *out,
                         node_plan *np)
{
    (void)nd;
    (void)in;
    (void)out;
    np->din_assign_ok = env->mode == GRAPH_TRAIN;
}

void graph_plan_grad_writers(const graph *g, graph_plan *p, int seg_end)
{
    for (int t = 0; t < g->n_tensors; t++)
        p->t[t].grad_writer = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const gnode *nd = &g->nodes[i];
        memset(p->np[i].din_first, 0, sizeof p->np[i].din_first);
        if (p->np[i].skip || nd->seg >= seg_end)
            continue;
        for (int j = 0; j < nd->n_in; j++)
            p->t[nd->in[j]].grad_writer = i;   /* the last reader wins */
    }
    for (int r = 0; r < g->n_outputs; r++)
        p->t[g->outputs[r]].grad_writer = -1;
    for (int t = 0; t < g->n_tensors; t++) {
        int w = p->t[t].grad_writer;
        if (w < 0)
            continue;
        const gnode *nd = &g->nodes[w];
        int reads = 0, first = -1;
        for (int j = 0; j < nd->n_in; j++)
            if (nd->in[j] == t) {
                reads++;
                first = first < 0 ? j : first;
            }
        if (reads == 1)
            p->np[w].din_first[first] = 1;
        else
            p->t[t].grad_writer = -1;
    }
    for (int s = 0; s < GRAPH_MAX_SEGMENTS; s++)
        p->seg_zero[s] = 0;
    for (int t = 0; t < g->n_tensors; t++)
        if (!p->t[t].boundary && !p->t[t].dead && p->t[t].grad_writer < 0)
            p->seg_zero[g->tensors[t].seg] = 1;
}
