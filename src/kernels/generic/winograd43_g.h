/*
 * winograd43_g.h - G, the 6x3 weight-transform matrix of Winograd F(4,3) (Lavin &
 * Gray, interpolation points 0, +-1, +-2 and infinity): U = G g G^T for a 3x3 kernel g.
 * Shared by the generic and the AVX-512 weight transforms so both use the same
 * numbers; the input and output matrices B^T and A^T are written out in the
 * transforms themselves (winograd43_lanes.h, f32_winograd43_avx512.c).
 */
#ifndef CSPRESNET_WINOGRAD43_G_H
#define CSPRESNET_WINOGRAD43_G_H

static const float winograd43_G[6][3] = {
    {1.0f / 4, 0.0f, 0.0f},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0.0f, 0.0f, 1.0f},
};

#endif
