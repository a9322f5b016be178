/*
 * pointwise.h - element-wise reference kernels over contiguous runs of floats.
 * Shapes: every kernel works on `count` contiguous floats of one channel plane or
 * of a whole slice; the op layer walks the NCHW views.
 */
#ifndef CSPRESNET_KERNELS_POINTWISE_H
#define CSPRESNET_KERNELS_POINTWISE_H

#include "cspresnet.h"

void f32_batchnorm_channel__ref(float *x, long count, float mean, float variance, float weight,
                                float bias, float eps);
void f32_activation__ref(cspresnet_act act, float *x, long count);
void f32_add_scaled__ref(const float *a, const float *b, float alpha, float *out, long count);
float f32_mean__ref(const float *x, long count);
void f32_add_scalar__ref(float *x, long count, float value);

#endif
