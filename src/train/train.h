/*
 * train.h - the training side of the library (inside src/train).
 *
 * The training graph (graph.c) is derived from the model's eval graph: every op gets
 * its own output tensor (no in-place ops), because backward needs the op inputs
 * (conv input, BN input, pre-activation, ESE input, the RepVGG branch for alpha). The
 * CSP concat becomes an explicit copy. Each node and tensor belongs to a segment:
 * 0 the stem, 1..4 the stages; a segment's output is a boundary tensor.
 *
 * Memory (trainer.c): boundary tensors and their gradients have their own storage;
 * a segment's inner activations live in the segment's region (all segments share one
 * region with recomputation), inner gradients in one region shared by all segments
 * (backward handles one segment at a time).
 */
#ifndef CSPRESNET_TRAIN_H
#define CSPRESNET_TRAIN_H

#include "model/model.h"
#include "ops/train_ops.h"

#define TRAIN_SEGMENTS 5

typedef enum tnode_kind { TN_CONV, TN_BN, TN_ACT, TN_ADD, TN_ESE, TN_CONCAT } tnode_kind;

typedef struct tnode {
    tnode_kind kind;
    int seg;
    int in0, in1, out;          /* training tensor ids (in1: add and concat) */
    const graph_node *src;      /* the eval node: params, geometry, activation */
    long save;                  /* floats into the saved-statistics buffer (BN, ESE) */
    int fused;                  /* BN: the next node (its activation) runs inside this one;
                                   that activation node: skipped */
} tnode;

typedef struct ttensor {
    int c, level, seg;
    int boundary;               /* input or a segment output: own storage */
    int dead;                   /* a fused BN's output (never written): no storage */
    long off, goff;             /* floats: activation and gradient storage (planned) */
} ttensor;

typedef struct tgraph {
    tnode *nodes;
    int n_nodes;
    ttensor *tensors;           /* tensor 0 is the input */
    int n_tensors;
    int seg_out[TRAIN_SEGMENTS];
    int seg_first[TRAIN_SEGMENTS], seg_end[TRAIN_SEGMENTS];  /* node ranges */
} tgraph;

/* graph.c */
cspresnet_status tgraph_build(const cspresnet_model *m, tgraph *g, error_buf *err);
void tgraph_free(tgraph *g);

/* optim.c: learning rate of (0-based) step under opt's schedule. */
double train_schedule_lr(const cspresnet_train_options *opt, long step);
/* One update of n floats. m, v: optimizer state (v only for AdamW). step is 0-based. */
void train_optim_update(const cspresnet_train_options *opt, long step, float lr, float wd,
                        float *p, const float *g, float *m, float *v, long n);
/* Whether a parameter of this role takes weight decay (all but BN weight/bias). */
int train_param_decays(param_role role);

/* head.c: global average pool of x (N,C,H,W) -> logits = feat W^T + b (N x K);
 * softmax cross-entropy (mean) in *loss; backward fills dW, db and dx (overwrites dx).
 * head_loss_backward returns 0, or -1 when its scratch cannot be allocated. */
void head_forward(const tensor4 *x, const float *w, const float *b, int classes, float *feat,
                  float *logits);
int head_loss_backward(const tensor4 *x, const float *w, int classes, const float *feat,
                       const float *logits, const int *labels, float *dw, float *db,
                       const tensor4 *dx, int *correct, double *loss);

/* trainer.c, for checkpoint.c: the optimizer state (v NULL for SGD), the head block
 * (weight, bias, then gradient, m, v, head_floats each) and the step counter. */
void trainer_state_arrays(cspresnet_trainer *tr, float **m, float **v, float **head,
                          long *head_floats, long **step);
error_buf *trainer_error(cspresnet_trainer *tr);
/* checkpoint.c: the first checkpoint tensor (weights, running statistics, head,
 * optimizer state) holding a NaN or an infinity: its key is written to key and 1
 * returned; 0 when every value is finite. */
int trainer_find_nonfinite(cspresnet_trainer *tr, char *key, size_t key_size);

#endif
