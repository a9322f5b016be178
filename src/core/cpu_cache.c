/* cpu_cache.c - see cpu_cache.h. */
#include "core/cpu_cache.h"

#include <pthread.h>
#include <unistd.h>

#define L1D_FALLBACK 32768L

static pthread_once_t l1d_once = PTHREAD_ONCE_INIT;
static long l1d_bytes = L1D_FALLBACK;

static void l1d_probe(void)
{
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    /* implausible answers (0, -1, a unified L2 reported as L1) keep the fallback */
    if (v >= 8192 && v <= 1048576)
        l1d_bytes = v;
#endif
}

long cpu_l1d_bytes(void)
{
    pthread_once(&l1d_once, l1d_probe);
    return l1d_bytes;
}
