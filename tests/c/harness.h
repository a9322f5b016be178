/*
 * harness.h - what every C test in tests/c shares: one seeded random generator, the
 * CHECK counters and the closing line that the pytest files read.
 *
 *     CHECK(maxdiff <= 1e-5, "case %d: max|diff| %g", id, maxdiff);  // counts; prints "FAIL: ..."
 *     return harness_done();   // "N passed, M failed: OK" (or FAILED); exit status 0 or 1
 *
 * The generator is xorshift64 (Marsaglia) from a fixed seed, so every run draws the same
 * cases and a failure printed with its configuration can be replayed. Header-only: each
 * test is one file linked against the library.
 */
#ifndef CSPRESNET_TESTS_HARNESS_H
#define CSPRESNET_TESTS_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t harness_rng = 88172645463325252ull;
static int harness_passed, harness_failed;

/* Starts the sequence again from seed (not 0). */
static inline void rng_seed(uint64_t seed)
{
    harness_rng = seed ? seed : 88172645463325252ull;
}

static inline uint64_t rng_next(void)
{
    harness_rng ^= harness_rng << 13;
    harness_rng ^= harness_rng >> 7;
    harness_rng ^= harness_rng << 17;
    return harness_rng;
}

/* Uniform in [0, 1), 53 bits. */
static inline double rng_uniform(void)
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

/* Uniform in [-1, 1), as a float. */
static inline float rng_float(void)
{
    return (float)(2.0 * rng_uniform() - 1.0);
}

/* Uniform integer in lo..hi (inclusive). */
static inline int rng_int(int lo, int hi)
{
    return lo + (int)(rng_uniform() * (hi - lo + 1));
}

/* n values uniform in [-1, 1). */
static inline void rng_fill(float *x, long n)
{
    for (long i = 0; i < n; i++)
        x[i] = rng_float();
}

/* Counts one check; on failure prints "FAIL: " and the message (printf arguments). */
#define CHECK(cond, ...)                      \
    do {                                      \
        if (cond) {                           \
            harness_passed++;                 \
        } else {                              \
            harness_failed++;                 \
            printf("FAIL: " __VA_ARGS__);     \
            printf("\n");                     \
        }                                     \
    } while (0)

/* The closing line and the exit status: 0 when every check passed. */
static inline int harness_done(void)
{
    printf("%d passed, %d failed: %s\n", harness_passed, harness_failed, harness_failed ? "FAILED" : "OK");
    return harness_failed ? 1 : 0;
}

/* The whole file at path in a malloc'd buffer (*size bytes), or NULL when it cannot be
 * opened or read into memory (errno says why), for the drivers that hand files to a
 * parser from memory. */
static inline uint8_t *harness_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    *size = 0;
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    *size = buf ? n : 0;
    return buf;
}

#endif
