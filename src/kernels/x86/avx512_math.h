/*
 * avx512_math.h - inline AVX-512 helpers shared by the x86 kernel files: exp, the
 * fast activations (swish, relu, none) of the conv epilogues, and column masks.
 *
 * Include only from a file compiled for avx512f (after its target pragma or
 * attribute push): the functions inherit that target. The exp is a degree-6
 * polynomial after range reduction (relative error ~2e-7).
 */
#ifndef CSPRESNET_AVX512_MATH_H
#define CSPRESNET_AVX512_MATH_H

#include <immintrin.h>

#include "cspresnet.h"

static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 act512(__m512 v, cspresnet_act act)
{
    if (act == CSPRESNET_ACT_SWISH)
        return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    if (act == CSPRESNET_ACT_RELU)
        return _mm512_max_ps(v, _mm512_setzero_ps());
    return v; /* NONE; callers route other activations to the generic kernel */
}

static inline int act_is_fast(cspresnet_act act)
{
    return act == CSPRESNET_ACT_SWISH || act == CSPRESNET_ACT_RELU || act == CSPRESNET_ACT_NONE;
}

/* Lanes j of a 16-float run starting at column x that fall inside [lo, hi). */
static inline __mmask16 lanes_in(long x, long lo, long hi)
{
    long a = lo - x, b = hi - x;
    a = a < 0 ? 0 : a;
    b = b > 16 ? 16 : b;
    if (b <= a)
        return 0;
    return (__mmask16)(((1u << b) - 1u) & ~((1u << a) - 1u));
}

#endif
