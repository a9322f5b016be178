/*
 * f32_head_ref.c - reference kernels of the detector's reductions (kernels.h, "f32
 * reductions"): the squeeze-excitation gates' scaling, the two passes of SPP's
 * separable max-pool and the DFL expectation of the head's box branch, one element at
 * a time in the documented order.
 */
#include <math.h>

#include "kernels/kernels.h"

static inline float max_nan(float m, float v)
{
    return (v > m || v != v) ? v : m;
}

void f32_scale__ref(const float *src, float g, float *dst, long count)
{
    for (long i = 0; i < count; i++)
        dst[i] = src[i] * g;
}

void f32_window_max__ref(const float *src, float *dst, long w, int r)
{
    for (long x = 0; x < w; x++) {
        long x0 = x - r < 0 ? 0 : x - r, x1 = x + r >= w ? w - 1 : x + r;
        float m = -INFINITY;
        for (long i = x0; i <= x1; i++)
            m = max_nan(m, src[i]);
        dst[x] = m;
    }
}

void f32_max_into__ref(float *dst, const float *src, long count)
{
    for (long i = 0; i < count; i++)
        dst[i] = max_nan(dst[i], src[i]);
}

void f32_dfl_expect__ref(const float *v, long step, int bins, const float *proj, long count, float *d)
{
    for (long i = 0; i < count; i++) {
        const float *p = v + i;
        float m = p[0];
        for (int b = 1; b < bins; b++)
            if (p[b * step] > m)
                m = p[b * step];
        float sum = 0.0f;
        for (int b = 0; b < bins; b++)
            sum += expf(p[b * step] - m);
        float acc = 0.0f;
        for (int b = 0; b < bins; b++)
            acc += (expf(p[b * step] - m) / sum) * proj[b];
        d[i] = acc;
    }
}
