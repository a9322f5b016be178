/* cpu_cache.h - the data cache sizes the CPU reports, for blockings that must fit them. */
#ifndef CSPRESNET_CORE_CPU_CACHE_H
#define CSPRESNET_CORE_CPU_CACHE_H

/* Bytes of level-1 data cache per core: sysconf where the C library reports it (glibc
 * reads cpuid), else 32 KiB, the smallest of the x86 and Arm cores this runs on.
 * Asked once per process; the answer never changes. */
long cpu_l1d_bytes(void);

#endif
