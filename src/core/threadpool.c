/* threadpool.c - see threadpool.h. A generation counter wakes the workers; a
 * pending counter tells the caller when the last one has finished. */
#include "core/threadpool.h"

#include <pthread.h>
#include <stdlib.h>

struct threadpool {
    int count;                 /* threads including the caller */
    pthread_t *workers;        /* count - 1 */
    int started;               /* workers actually started */
    pthread_mutex_t lock;
    pthread_cond_t wake;       /* workers wait here for a new generation */
    pthread_cond_t done;       /* the caller waits here for pending == 0 */
    unsigned long generation;
    int pending;
    int stopping;
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
        pthread_mutex_lock(&pool->lock);
        while (pool->generation == seen && !pool->stopping)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        seen = pool->generation;
        parallel_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->lock);

        fn(arg, index, pool->count);

        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->lock);
    }
}

static void stop_workers(threadpool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
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
    pool->pending = pool->count - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    fn(arg, 0, pool->count);

    pthread_mutex_lock(&pool->lock);
    while (pool->pending > 0)
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
