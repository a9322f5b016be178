/*
 * exp_poly.h - the constants of the vector exp shared by the AVX2 and AVX-512 kernels
 * (exp256 in f32_avx2.c, exp512 in avx512_math.h), so both ISAs compute the same
 * function: x is clamped to [EXP_X_MIN, EXP_X_MAX], n = round(x log2 e),
 * r = x - n ln 2 with ln 2 split in two parts (EXP_LN2_HI is exact in float, so the
 * first product loses nothing), and exp(x) = 2^n p(r) with p the degree-6 Taylor
 * polynomial, evaluated by Horner from exp_poly[0] (relative error ~2e-7).
 */
#ifndef CSPRESNET_EXP_POLY_H
#define CSPRESNET_EXP_POLY_H

#define EXP_X_MAX 88.0f
#define EXP_X_MIN (-87.0f)
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO (-2.12194440e-4f)
#define EXP_POLY_DEGREE 6

/* p's coefficients, highest degree first. */
static const float exp_poly[EXP_POLY_DEGREE + 1] = {
    1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f,
};

#endif
