/* threadpool.c - see threadpool.h. A generation counter wakes the workers; a
 * pending counter tells the caller when the last one has finished.
 *
 * Both sides spin briefly (SPIN_ROUNDS pause instructions, some tens of microseconds)
 * before sleeping on the condition variables: a training step runs ~300 passes of a
 * few hundred microseconds each at 32x32 input, and a sleep/wake round trip per pass
 * cost about 10 us. Between bursts the threads still sleep. */
#include "core/threadpool.h"

#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN_ROUNDS 256

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct threadpool {
    int count;                 /* threads including the caller */
    pthread_t *workers;        /* count - 1 */
    int started;               /* workers actually started */
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* workers wait here for a new generation */
    pthread_cond_t done;       /* the caller waits here for pending == 0 */
    atomic_ulong generation;    /* written under lock, read by spinning workers */
    atomic_int pending;
    atomic_int stopping;
    parallel_fn fn;
    void *arg;
};

typedef struct worker_arg {
    threadpool *pool;
    int index;
} worker_arg;

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    threadpool *pool = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&pool->generation, memory_order_acquire) == seen &&
                        !atomic_load_explicit(&pool->stopping, memory_order_relaxed);
             i++)
            cpu_relax();
        pthread_mutex_lock(&pool->lock);
        while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stopping))
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (atomic_load(&pool->stopping)) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        seen = atomic_load(&pool->generation);
        parallel_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->lock);

        fn(arg, index, pool->count);

        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
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
    pthread_mutex_lock(&pool->lock);
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->count - 1);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    fn(arg, 0, pool->count);

    for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++)
        cpu_relax();
    pthread_mutex_lock(&pool->lock);
    while (atomic_load(&pool->pending) > 0)
        pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
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
