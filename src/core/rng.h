/*
 * rng.h - the library's one pseudo-random stream: splitmix64 (Steele, Lea, Flood),
 * seeded by the caller, the same on every platform. Used for seeded random weights
 * (model/init.c) and the training head's initial weights.
 */
#ifndef CSPRESNET_CORE_RNG_H
#define CSPRESNET_CORE_RNG_H

#include <stdint.h>

static inline uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
