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

void f32_bn_stats__ref(const float *x, long xs, int runs, long len, double *s1, double *s2)
{
    double a = 0.0, b = 0.0;
    for (int r = 0; r < runs; r++, x += xs)
        for (long i = 0; i < len; i++) {
            a += x[i];
            b += (double)x[i] * x[i];
        }
    *s1 += a;
    *s2 += b;
}

void f32_bn_act_apply__ref(const float *x, long xs, float *y, long ys, int runs, long len,
                           const bn_act_params *p)
{
    for (int r = 0; r < runs; r++, x += xs, y += ys) {
        for (long i = 0; i < len; i++)
            y[i] = x[i] * p->scale + p->shift;
        f32_activation__ref(p->act, y, len);
    }
}

void f32_bn_act_bwd_reduce__ref(const float *x, long xs, const float *da, long das, int runs,
                                long len, const bn_act_params *p, double *sdy, double *sdyx)
{
    double a = 0.0, b = 0.0;
    for (int r = 0; r < runs; r++, x += xs, da += das)
        for (long i = 0; i < len; i++) {
            float xh = (x[i] - p->mean) * p->rstd;
            float g = da[i] * f32_act_derivative__ref(p->act, xh * p->weight + p->bias);
            a += g;
            b += (double)g * xh;
        }
    *sdy += a;
    *sdyx += b;
}

void f32_bn_act_bwd_apply__ref(const float *x, long xs, const float *da, long das, float *dx,
                               long dxs, int runs, long len, const bn_act_params *p)
{
    for (int r = 0; r < runs; r++, x += xs, da += das, dx += dxs)
        for (long i = 0; i < len; i++) {
            float xh = (x[i] - p->mean) * p->rstd;
            float g = da[i] * f32_act_derivative__ref(p->act, xh * p->weight + p->bias);
            float v = p->scale * (g - p->mdy - xh * p->mdyx);
            dx[i] = p->assign ? v : dx[i] + v;
        }
}

/* dst[j*ldd + i] = src[i*lds + j]; 16-column strips keep the writes within a few lines */
void f32_transpose__ref(const float *src, long lds, int rows, int cols, float *dst, long ldd)
{
    for (int j0 = 0; j0 < cols; j0 += 16) {
        int j1 = cols - j0 < 16 ? cols : j0 + 16;
        for (int i = 0; i < rows; i++)
            for (int j = j0; j < j1; j++)
                dst[(long)j * ldd + i] = src[(long)i * lds + j];
    }
}
