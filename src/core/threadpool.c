/* threadpool.c - see threadpool.h. A generation counter starts a pass; a pending
 * counter tells the caller when the last worker has finished it.
 *
 * Fast path, no lock: the caller publishes fn and arg, sets pending and bumps the
 * generation (release); a spinning worker sees the new generation (acquire), runs its
 * part and decrements pending; the spinning caller sees pending reach 0. Both sides
 * spin for SPIN_NS of wall time (checked every SPIN_CHECK pauses), not a count of
 * pause instructions, whose cost differs several-fold between CPUs: these are VMs,
 * where a futex sleep and wake costs tens of microseconds, and a forward of s runs
 * ~200 passes of a few hundred microseconds, so the wait between passes must not
 * sleep. Only then does a side sleep on its condition variable; the other side takes
 * the lock and signals only when it sees a sleeper (the sleeper counts itself before
 * its last check, and every access to those counters is sequentially consistent, so a
 * wake-up cannot be missed). Between bursts the threads sleep. */
#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 200000L   /* 0.2 ms: several serial gaps between passes */
#define SPIN_CHECK 64

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

struct threadpool {
    int count;                 /* threads including the caller */
    pthread_t *workers;        /* count - 1 */
    int started;               /* workers actually started */
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* sleeping workers wait here for a new generation */
    pthread_cond_t done;       /* the sleeping caller waits here for pending == 0 */
    atomic_ulong generation;
    atomic_int pending;
    atomic_int stopping;
    atomic_int sleeping_workers;
    atomic_int caller_sleeping;
    parallel_fn _Atomic fn;
    void *_Atomic arg;
};

typedef struct worker_arg {
    threadpool *pool;
    int index;
} worker_arg;

/* Spins until *gen differs from seen (1) or the spin time is over (0). */
static int spin_for_generation(threadpool *pool, unsigned long seen)
{
    long deadline = now_ns() + SPIN_NS;
    for (;;) {
        for (int i = 0; i < SPIN_CHECK; i++) {
            if (atomic_load_explicit(&pool->generation, memory_order_acquire) != seen ||
                atomic_load_explicit(&pool->stopping, memory_order_relaxed))
                return 1;
            cpu_relax();
        }
        if (now_ns() > deadline)
            return 0;
    }
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    threadpool *pool = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        if (!spin_for_generation(pool, seen)) {
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleeping_workers, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stopping))
                pthread_cond_wait(&pool->wake, &pool->lock);
            atomic_fetch_sub(&pool->sleeping_workers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stopping))
            return NULL;
        seen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        parallel_fn fn = atomic_load_explicit(&pool->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&pool->arg, memory_order_relaxed);

        fn(arg, index, pool->count);

        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeping)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

static void stop_workers(threadpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stopping, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->started; i++)
        pthread_join(pool->workers[i], NULL);
}

cspresnet_status threadpool_create(int threads, threadpool **out, error_buf *err)
{
    *out = NULL;
    if (threads < 1 || threads > 1024)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "thread count %d is out of range 1..1024", threads);
    threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory creating a thread pool");
    pool->count = threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    if (threads > 1) {
        pool->workers = calloc((size_t)threads - 1, sizeof *pool->workers);
        if (!pool->workers) {
            threadpool_free(pool);
            return error_set(err, CSPRESNET_ERR_MEMORY, "out of memory creating a thread pool");
        }
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->pool = pool, wa->index = i,
                    pthread_create(&pool->workers[i - 1], NULL, worker_main, wa) != 0)) {
            free(wa);
            threadpool_free(pool);
            return error_set(err, CSPRESNET_ERR_MEMORY, "could not start worker thread %d of %d", i, threads);
        }
        pool->started++;
    }
    *out = pool;
    return CSPRESNET_OK;
}

int threadpool_size(const threadpool *pool) { return pool->count; }

void threadpool_run(threadpool *pool, parallel_fn fn, void *arg)
{
    if (pool->count == 1) {
        fn(arg, 0, 1);
        return;
    }
    atomic_store_explicit(&pool->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->count - 1, memory_order_relaxed);
    atomic_fetch_add(&pool->generation, 1);   /* publishes the three stores above */
    if (atomic_load(&pool->sleeping_workers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }

    fn(arg, 0, pool->count);

    long deadline = now_ns() + SPIN_NS;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        for (int i = 0; i < SPIN_CHECK && atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++)
            cpu_relax();
        if (now_ns() > deadline) {
            pthread_mutex_lock(&pool->lock);
            atomic_store(&pool->caller_sleeping, 1);
            while (atomic_load(&pool->pending) > 0)
                pthread_cond_wait(&pool->done, &pool->lock);
            atomic_store(&pool->caller_sleeping, 0);
            pthread_mutex_unlock(&pool->lock);
            break;
        }
    }
}

void threadpool_free(threadpool *pool)
{
    if (!pool)
        return;
    stop_workers(pool);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->workers);
    free(pool);
}

void split_range(long total, int index, int count, long *begin, long *end)
{
    long base = total / count, extra = total % count;
    *begin = index * base + (index < extra ? index : extra);
    *end = *begin + base + (index < extra ? 1 : 0);
}

int threadpool_default_size(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)(online < 256 ? online : 256) : 1;
}
