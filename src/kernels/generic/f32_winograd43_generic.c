/*
 * f32_winograd43_generic.c - portable Winograd F(4,3) input and output transforms,
 * the same contract as the AVX-512 ones (kernels.h: 16 tiles per call, lane l = tile
 * t0 + l), from the lane-major code of winograd43_lanes.h built for the baseline ISA.
 * They make Winograd available on every CPU (ARM boards, x86 without AVX2): a 3x3
 * conv then costs 36 instead of 144 multiply-adds per tile and channel pair in the
 * GEMM. The reference is the direct convolution (tests/c/test_kernels_conv.c).
 */
#include "kernels/generic/winograd43_lanes.h"

void f32_winograd43_input__generic(const wino_tiles *wt, const float *plane, int t0, float *v,
                                   long v_stride_p)
{
    wl_input(wt, plane, t0, v, v_stride_p);
}

void f32_winograd43_output__generic(const wino_tiles *wt, const float *m, long m_stride_p, int t0,
                                    float bias, cspresnet_act act, const float *res, float *out)
{
    wl_output(wt, m, m_stride_p, t0, bias, act, res, out, f32_bias_act__generic);
}
