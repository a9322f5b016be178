/*
 * train_kernels.h - kernels of the training path (forward packing, backward
 * point-wise work), beside kernels.h so that the inference kernels stay untouched.
 *
 * Like every kernel here: pure single-threaded work on given buffers, no allocation,
 * no threads, no globals; each has a reference twin (kernels/ref or kernels/generic)
 * that tests compare it against.
 */
#ifndef CSPRESNET_TRAIN_KERNELS_H
#define CSPRESNET_TRAIN_KERNELS_H

#include "kernels/kernels.h"

/* Same contract and bits as f32_im2col_rows__generic (its reference): rows [k0, k0+kc)
 * x columns [n0, n0+nc) of the implicit im2col matrix of one image into
 * panel[kc][ldp]. Each (row, output row) is one zero-filled edge and one contiguous
 * (stride 1) or strided copy: the valid range is computed, not tested per element. */
void f32_im2col_rows_runs__generic(const conv_geom *g, const float *image, int k0, int kc,
                                   long n0, int nc, float *panel, long ldp);

#endif
