/*
 * f32_pointwise_ref.c - reference kernels for element-wise work on contiguous runs:
 * batch-norm of one channel, activations, scaled adds, channel means and scales, and
 * the conv epilogue (the oracle of the conv family's bias_act).
 */
#include "kernels/kernels.h"
#include "kernels/pointwise.h"

#include <math.h>

void f32_batchnorm_channel__ref(float *x, long count, float mean, float variance, float weight,
                                float bias, float eps)
{
    /* Paddle's eval formula, in this order: (x - mean) / sqrt(var + eps) * w + b. */
    float inv_std = 1.0f / sqrtf(variance + eps);
    for (long i = 0; i < count; i++)
        x[i] = (x[i] - mean) * inv_std * weight + bias;
}

static float softplus_paddle(float v)
{
    /* Paddle's mish uses softplus with threshold 20: v itself above it. */
    return v > 20.0f ? v : log1pf(expf(v));
}

void f32_activation__ref(cspresnet_act act, float *x, long count)
{
    switch (act) {
    case CSPRESNET_ACT_SWISH:
        for (long i = 0; i < count; i++)
            x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case CSPRESNET_ACT_RELU:
        for (long i = 0; i < count; i++)
            x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case CSPRESNET_ACT_LEAKY_RELU:
        for (long i = 0; i < count; i++)
            x[i] = x[i] >= 0.0f ? x[i] : 0.01f * x[i];
        break;
    case CSPRESNET_ACT_MISH:
        for (long i = 0; i < count; i++)
            x[i] = x[i] * tanhf(softplus_paddle(x[i]));
        break;
    case CSPRESNET_ACT_HARDSWISH:
        for (long i = 0; i < count; i++) {
            float t = x[i] + 3.0f;
            t = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
            x[i] = x[i] * t / 6.0f;
        }
        break;
    case CSPRESNET_ACT_GELU:
        for (long i = 0; i < count; i++)
            x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case CSPRESNET_ACT_RELU6:
        for (long i = 0; i < count; i++)
            x[i] = x[i] < 0.0f ? 0.0f : (x[i] > 6.0f ? 6.0f : x[i]);
        break;
    case CSPRESNET_ACT_SIGMOID:
        for (long i = 0; i < count; i++)
            x[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case CSPRESNET_ACT_NONE:
    case CSPRESNET_ACT_COUNT:
        break;
    }
}

void f32_add_scaled__ref(const float *a, const float *b, float alpha, float *out, long count)
{
    if (alpha == 1.0f)
        for (long i = 0; i < count; i++)
            out[i] = a[i] + b[i];
    else
        for (long i = 0; i < count; i++)
            out[i] = a[i] + alpha * b[i];
}

float f32_mean__ref(const float *x, long count)
{
    /* A double accumulator keeps the mean of large planes accurate and order-stable. */
    double sum = 0.0;
    for (long i = 0; i < count; i++)
        sum += x[i];
    return (float)(sum / (double)count);
}

void f32_add_scalar__ref(float *x, long count, float value)
{
    for (long i = 0; i < count; i++)
        x[i] += value;
}

/* x[i] = act(x[i] + bias) + (res ? res[i] : 0), one element at a time. */
void f32_bias_act__ref(float *x, long count, float bias, cspresnet_act act, const float *res)
{
    for (long i = 0; i < count; i++) {
        float v = x[i] + bias;
        f32_activation__ref(act, &v, 1);
        x[i] = res ? v + res[i] : v;
    }
}
