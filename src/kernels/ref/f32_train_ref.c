/*
 * f32_train_ref.c - reference point-wise kernels of training: train-mode BN fused
 * with the activation that follows it (statistics, apply, backward reduce and apply)
 * over one contiguous run of a channel plane, and the activation derivatives. The
 * oracle of kernels/x86/f32_train_avx512.c; see train_kernels.h for the formulas.
 */
#include <math.h>

#include "kernels/pointwise.h"
#include "kernels/train_kernels.h"

float f32_act_derivative__ref(cspresnet_act act, float x)
{
    switch (act) {
    case CSPRESNET_ACT_SWISH: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case CSPRESNET_ACT_RELU:
        return x > 0.0f ? 1.0f : 0.0f;
    case CSPRESNET_ACT_LEAKY_RELU:
        return x > 0.0f ? 1.0f : 0.01f;
    case CSPRESNET_ACT_MISH: {
        float sp = x > 20.0f ? x : log1pf(expf(x));
        float th = tanhf(sp);
        float dsp = x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x));
        return th + x * (1.0f - th * th) * dsp;
    }
    case CSPRESNET_ACT_HARDSWISH:
        return x < -3.0f ? 0.0f : (x <= 3.0f ? x / 3.0f + 0.5f : 1.0f);
    case CSPRESNET_ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
               x * 0.3989422804014327f * expf(-0.5f * x * x);
    case CSPRESNET_ACT_RELU6:
        return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
    case CSPRESNET_ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f - s);
    }
    case CSPRESNET_ACT_NONE:
    case CSPRESNET_ACT_COUNT:
        break;
    }
    return 1.0f;
}

void f32_bn_stats__ref(const float *x, long n, double *s1, double *s2)
{
    double a = 0.0, b = 0.0;
    for (long i = 0; i < n; i++) {
        a += x[i];
        b += (double)x[i] * x[i];
    }
    *s1 += a;
    *s2 += b;
}

void f32_bn_act_apply__ref(const float *x, float *y, long n, const bn_act_params *p)
{
    for (long i = 0; i < n; i++)
        y[i] = x[i] * p->scale + p->shift;
    f32_activation__ref(p->act, y, n);
}

void f32_bn_act_bwd_reduce__ref(const float *x, const float *da, long n, const bn_act_params *p,
                                double *sdy, double *sdyx)
{
    double a = 0.0, b = 0.0;
    for (long i = 0; i < n; i++) {
        float xh = (x[i] - p->mean) * p->rstd;
        float g = da[i] * f32_act_derivative__ref(p->act, xh * p->weight + p->bias);
        a += g;
        b += (double)g * xh;
    }
    *sdy += a;
    *sdyx += b;
}

void f32_bn_act_bwd_apply__ref(const float *x, const float *da, float *dx, long n,
                               const bn_act_params *p)
{
    for (long i = 0; i < n; i++) {
        float xh = (x[i] - p->mean) * p->rstd;
        float g = da[i] * f32_act_derivative__ref(p->act, xh * p->weight + p->bias);
        dx[i] += p->scale * (g - p->mdy - xh * p->mdyx);
    }
}
