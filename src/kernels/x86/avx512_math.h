/*
 * avx512_math.h - inline AVX-512 helpers shared by the x86 kernel files: exp, the
 * fast activations (swish, relu, sigmoid, none) of the conv epilogues, lane masks and an
 * unaligned 32-bit load.
 *
 * Include only from a file compiled for avx512f (after avx512_target.h or its own
 * target pragma): the functions inherit that target. The exp is the polynomial of
 * exp_poly.h after range reduction (relative error ~2e-7).
 */
#ifndef CSPRESNET_AVX512_MATH_H
#define CSPRESNET_AVX512_MATH_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cspresnet.h"
#include "kernels/x86/exp_poly.h"

static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(EXP_X_MAX)), _mm512_set1_ps(EXP_X_MIN));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(exp_poly[0]);
#pragma GCC unroll 8
    for (int i = 1; i <= EXP_POLY_DEGREE; i++)
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(exp_poly[i]));
    return _mm512_scalef_ps(p, n); /* p * 2^n */
}

/* 1 / (1 + exp(-v)); a NaN v gives a number (the clamp in exp512) */
static inline __m512 sigmoid512(__m512 v)
{
    return _mm512_div_ps(_mm512_set1_ps(1.0f),
                         _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
}

static inline __m512 act512(__m512 v, cspresnet_act act)
{
    if (act == CSPRESNET_ACT_SWISH)
        return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    if (act == CSPRESNET_ACT_RELU)
        return _mm512_max_ps(v, _mm512_setzero_ps());
    if (act == CSPRESNET_ACT_SIGMOID)   /* NaN stays NaN (exp512's clamp would drop it) */
        return _mm512_mask_mov_ps(sigmoid512(v), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
    return v; /* NONE; callers route other activations to the generic kernel */
}

/* The activations act512 computes for the conv and Winograd epilogues; sigmoid, which
 * it also takes, is left out because the training kernels, which share this test,
 * have no vector sigmoid derivative (bias_act takes it on its own). */
static inline int act_is_fast(cspresnet_act act)
{
    return act == CSPRESNET_ACT_SWISH || act == CSPRESNET_ACT_RELU || act == CSPRESNET_ACT_NONE;
}

/* The first n lanes of 16 (none for n <= 0, all for n >= 16). */
static inline __mmask16 first_lanes(long n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* The int32 at p, which need not be aligned. */
static inline int32_t load_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
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
