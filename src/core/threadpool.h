/*
 * threadpool.h - a persistent pool of worker threads.
 *
 * threadpool_run(pool, fn, arg) calls fn(arg, i, count) once for every i in
 * 0..count-1, the caller itself taking i = 0, and returns when all are done. Each op
 * splits its own work by (i, count), so work partitioning is visible in the op and
 * deterministic for a given count. Threads start once (threadpool_create) and sleep
 * between runs; nothing is allocated per run.
 */
#ifndef CSPRESNET_CORE_THREADPOOL_H
#define CSPRESNET_CORE_THREADPOOL_H

#include "core/status.h"

typedef void (*parallel_fn)(void *arg, int thread_index, int thread_count);

typedef struct threadpool threadpool;

/* threads >= 1 (the caller counts as one). */
cspresnet_status threadpool_create(int threads, threadpool **out, error_buf *err);
int threadpool_size(const threadpool *pool);
/* The default size: the online CPUs (1 when unknown, at most 256). */
int threadpool_default_size(void);
void threadpool_run(threadpool *pool, parallel_fn fn, void *arg);
void threadpool_free(threadpool *pool);

/* Splits [0, total) into count near-equal contiguous parts; part index gets
 * [*begin, *end). */
void split_range(long total, int index, int count, long *begin, long *end);

#endif
