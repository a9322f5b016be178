/*
 * f32_head_avx512.c - AVX-512F kernels of the squeeze-excitation gates and the
 * detector's reductions (kernels.h, "f32 reductions"; reference twins in
 * kernels/ref/f32_head_ref.c): the gates' scaling and SPP's max-pool passes, 16
 * outputs a step with the reference's fold order (so the bits are the reference's,
 * NaNs included), and the DFL expectation, 16 anchors a step, with the reference's
 * operation order except that exp is avx512_math.h's polynomial (~2e-7 relative).
 *
 * Compiled for avx512f+fma (avx512_target.h); select.c names these only in the
 * "avx512" set.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include "kernels/x86/avx512_target.h" /* the rest of this file is built for avx512f+fma */

#include <math.h>

#include "kernels/kernels.h"
#include "kernels/x86/avx512_math.h"

/* max_nan per lane: v where v > m or v is NaN, else m */
static inline __m512 max_nan512(__m512 m, __m512 v)
{
    __mmask16 take = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_ps(m, take, v);
}

void f32_scale__avx512(const float *src, float g, float *dst, long count)
{
    const __m512 vg = _mm512_set1_ps(g);
    for (long i = 0; i < count; i += 16) {
        __mmask16 k = first_lanes(count - i);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, src + i), vg));
    }
}

void f32_window_max__avx512(const float *src, float *dst, long w, int r)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (long x = 0; x < w; x += 16) {
        __m512 m = ninf;
        for (long j = -r; j <= r; j++)   /* lanes outside [0, w) read -inf: no effect */
            m = max_nan512(m, _mm512_mask_loadu_ps(ninf, lanes_in(x + j, 0, w), src + x + j));
        _mm512_mask_storeu_ps(dst + x, first_lanes(w - x), m);
    }
}

void f32_max_into__avx512(float *dst, const float *src, long count)
{
    for (long i = 0; i < count; i += 16) {
        __mmask16 k = first_lanes(count - i);
        __m512 m = max_nan512(_mm512_maskz_loadu_ps(k, dst + i), _mm512_maskz_loadu_ps(k, src + i));
        _mm512_mask_storeu_ps(dst + i, k, m);
    }
}

/* The reference gives NaN where a value is NaN or the max is infinite (inf - inf);
 * the clamped polynomial exp would not, so those lanes are set to NaN at the end. */
void f32_dfl_expect__avx512(const float *v, long step, int bins, const float *proj, long count, float *d)
{
    const __m512 inf = _mm512_set1_ps(INFINITY);
    for (long i = 0; i < count; i += 16) {
        __mmask16 k = first_lanes(count - i);
        const float *p = v + i;
        __m512 m = _mm512_maskz_loadu_ps(k, p);
        __mmask16 bad = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
        for (int b = 1; b < bins; b++) {
            __m512 x = _mm512_maskz_loadu_ps(k, p + b * step);
            m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(x, m, _CMP_GT_OQ), x);
            bad |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
        }
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(m), inf, _CMP_EQ_OQ);
        __m512 sum = _mm512_setzero_ps();
        for (int b = 0; b < bins; b++)
            sum = _mm512_add_ps(sum, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + b * step), m)));
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < bins; b++) {
            __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + b * step), m));
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_div_ps(e, sum), _mm512_set1_ps(proj[b])));
        }
        acc = _mm512_mask_mov_ps(acc, bad, _mm512_set1_ps(NAN));
        _mm512_mask_storeu_ps(d + i, k, acc);
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int f32_head_avx512_unavailable; /* non-x86 builds: select.c never names these kernels */
#endif
