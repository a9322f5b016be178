/*
 * conv_cases.h - the convolution shapes the low-precision conv tests (test_conv_bf16.c,
 * test_conv_int8.c) draw, from harness.h's seeded generator: cases 0..3 one of each kind
 * (1x1, 3x3 stride 1, 3x3 stride 2, the 3-channel stem), 4 several K blocks and channel
 * parts (K = 2403), 5 a 1x1 conv over two K blocks (301 channels), the rest random kinds
 * with odd input channels, tiny and wide maps and batch 1-3. Header-only, as harness.h.
 */
#ifndef CSPRESNET_TESTS_CONV_CASES_H
#define CSPRESNET_TESTS_CONV_CASES_H

#include "harness.h"
#include "kernels/kernels.h"

/* The geometry of case id (output size filled in) and its batch *n. */
static inline conv_geom conv_case(int id, int *n)
{
    static const int kinds[4][2] = {{1, 1}, {3, 1}, {3, 2}, {3, 2}};
    int kind = id < 4 ? id : rng_int(0, 3);
    *n = rng_int(1, 3);
    conv_geom g = {rng_int(1, 41) | 1, rng_int(1, 23), rng_int(1, 70), rng_int(1, 45), 0, 0, kinds[kind][0],
                   kinds[kind][1], kinds[kind][0] / 2};
    if (kind == 3)
        g.in_c = 3;
    if (id == 4) {
        g.in_c = 267; g.in_h = 11; g.in_w = 13; g.out_c = 70; g.k = 3; g.stride = 1; g.pad = 1;
    }
    if (id == 5) { g.in_c = 301; g.in_h = 16; g.in_w = 16; g.out_c = 19; g.k = 1; g.stride = 1; g.pad = 0; }
    g.out_h = (g.in_h + 2 * g.pad - g.k) / g.stride + 1;
    g.out_w = (g.in_w + 2 * g.pad - g.k) / g.stride + 1;
    return g;
}

#endif
