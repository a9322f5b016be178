/*
 * train.h - the training side of the library (inside src/train).
 *
 * The trainer runs the model's graph planned in train mode (graph/plan.c): every op
 * has its own output (backward needs the op inputs: conv input, BN input,
 * pre-activation, ESE input, the RepVGG branch for alpha) and the CSP concat copies.
 * Each node and tensor belongs to the segment the builder marked: 0 the stem, 1..4
 * the stages; a segment's output is a boundary tensor with its own storage.
 */
#ifndef CSPRESNET_TRAIN_H
#define CSPRESNET_TRAIN_H

#include "model/model.h"
#include "ops/train_ops.h"

/* optim.c: learning rate of (0-based) step under opt's schedule. */
double train_schedule_lr(const cspresnet_train_options *opt, long step);
/* One update of n floats. m, v: optimizer state (v only for AdamW). step is 0-based. */
void train_optim_update(const cspresnet_train_options *opt, long step, float lr, float wd,
                        float *p, const float *g, float *m, float *v, long n);
/* Whether a parameter of this role takes weight decay (all but BN weight/bias). */
int train_param_decays(param_role role);

/* head.c: global average pool of x (N,C,H,W) -> logits = feat W^T + b (N x K);
 * softmax cross-entropy (mean) in *loss; backward fills dW, db and dx (overwrites dx)
 * using N*K doubles of scratch (dl). */
void head_forward(const tensor4 *x, const float *w, const float *b, int classes, float *feat,
                  float *logits);
void head_loss_backward(const tensor4 *x, const float *w, int classes, const float *feat,
                        const float *logits, const int *labels, float *dw, float *db,
                        const tensor4 *dx, int *correct, double *loss, double *dl);

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
