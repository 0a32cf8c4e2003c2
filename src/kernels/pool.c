/* Persistent worker pool. Threads are created once; each operation bumps a generation counter that
 * the workers spin on for a short while (decode issues hundreds of small operations per token, so a
 * sleeping worker would cost a futex round trip each time) before they fall back to a futex wait.
 * The caller works as thread 0 and then waits for the others the same way.
 *
 * A share of the work belongs to whoever claims it first for the generation: its thread, or the
 * caller once it has done its own share. On a busy machine a worker may not get a core for
 * milliseconds; the caller then does that worker's share itself instead of waiting (with the
 * matrix products' dynamic chunks, the late worker usually has nothing left to do at all). Every
 * task splits its work by ith alone, so results do not depend on who ran which share. */
#include "kernels/pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* About a millisecond of polling before sleeping: long enough to cover the gaps between the
 * matrix products of one token, short enough not to burn a core while the engine is idle. */
#define SPIN_ITERATIONS 20000
/* Between pauses, yield now and then: when the threads outnumber the free cores (other processes
 * running, or more threads than cores) the thread we wait for may need our core. */
#define YIELD_EVERY 256

typedef struct pool_scratch {
    void *ptr;
    size_t size;
} pool_scratch;

struct slm_pool {
    int n_threads;
    pthread_t *threads;
    _Alignas(64) _Atomic uint32_t generation; /* futex word the workers wait on */
    _Atomic int sleeping_workers;
    _Alignas(64) _Atomic uint32_t pending;    /* futex word the caller waits on */
    _Atomic int caller_sleeping;
    _Alignas(64) slm_task_fn fn;
    void *arg;
    _Atomic uint32_t *claimed; /* [n_threads]: the last generation whose share ith was claimed */
    _Atomic int stop;
    pool_scratch *scratch; /* one per thread, then one shared */
    pthread_mutex_t op_lock; /* slm_pool_lock: one forward pass at a time */
    int refs;                /* slm_pool_acquire users; guarded by shared_mu */
    struct slm_pool *next_shared;
};

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static slm_pool *shared_pools; /* acquired pools, one per thread count */

typedef struct worker_start {
    slm_pool *pool;
    int ith;
} worker_start;

/* True for exactly one caller per (ith, gen); false once that or a later generation is claimed. */
static bool claim_share(slm_pool *pool, int ith, uint32_t gen) {
    uint32_t cur = atomic_load_explicit(&pool->claimed[ith], memory_order_relaxed);
    while ((int32_t)(cur - gen) < 0)
        if (atomic_compare_exchange_weak_explicit(&pool->claimed[ith], &cur, gen, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return true;
    return false;
}

static long futex_wait(_Atomic uint32_t *word, uint32_t expected) {
    return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static uint32_t wait_for_new_generation(slm_pool *pool, uint32_t seen) {
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        uint32_t g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen) return g;
        if (i % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
        else cpu_relax();
    }
    for (;;) {
        /* seq_cst pairs with the caller's bump-then-check: either the futex sees the new value or
         * the caller sees us asleep and wakes us. */
        atomic_fetch_add(&pool->sleeping_workers, 1);
        uint32_t g = atomic_load(&pool->generation);
        if (g == seen) futex_wait(&pool->generation, seen);
        atomic_fetch_sub(&pool->sleeping_workers, 1);
        g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen) return g;
    }
}

static void *worker_main(void *p) {
    worker_start start = *(worker_start *)p;
    free(p);
    slm_pool *pool = start.pool;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_new_generation(pool, seen);
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        if (!claim_share(pool, start.ith, seen)) continue; /* the caller did it: we were late */
        pool->fn(pool->arg, start.ith, pool->n_threads);
        if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeping))
            futex_wake_all(&pool->pending);
    }
    return NULL;
}

static void wait_for_workers(slm_pool *pool) {
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        if (atomic_load_explicit(&pool->pending, memory_order_acquire) == 0) return;
        if (i % YIELD_EVERY == YIELD_EVERY - 1) sched_yield();
        else cpu_relax();
    }
    for (;;) {
        atomic_store(&pool->caller_sleeping, 1);
        uint32_t left = atomic_load(&pool->pending);
        if (left != 0) futex_wait(&pool->pending, left);
        atomic_store(&pool->caller_sleeping, 0);
        if (atomic_load_explicit(&pool->pending, memory_order_acquire) == 0) return;
    }
}

static uint32_t start_generation(slm_pool *pool) {
    uint32_t gen = atomic_fetch_add(&pool->generation, 1) + 1;
    if (atomic_load(&pool->sleeping_workers) > 0) futex_wake_all(&pool->generation);
    return gen;
}

slm_pool *slm_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 1024) n_threads = 1024;
    slm_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->op_lock, NULL);
    pool->scratch = calloc((size_t)n_threads + 1, sizeof *pool->scratch);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    pool->claimed = calloc((size_t)n_threads, sizeof *pool->claimed);
    if (!pool->scratch || !pool->threads || !pool->claimed) {
        free(pool->scratch);
        free(pool->threads);
        free((void *)pool->claimed);
        free(pool);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_start *ws = malloc(sizeof *ws);
        if (ws) *ws = (worker_start){pool, i};
        if (!ws || pthread_create(&pool->threads[i], NULL, worker_main, ws) != 0) {
            free(ws);
            pool->n_threads = i; /* shut down only the ones that started */
            slm_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void slm_pool_free(slm_pool *pool) {
    if (!pool) return;
    if (pool->n_threads > 1) {
        atomic_store(&pool->stop, 1);
        start_generation(pool);
        for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    }
    for (int i = 0; i <= pool->n_threads; i++) free(pool->scratch[i].ptr);
    free(pool->scratch);
    free(pool->threads);
    free((void *)pool->claimed);
    free(pool);
}

int slm_pool_size(const slm_pool *pool) {
    return pool ? pool->n_threads : 1;
}

void slm_pool_run(slm_pool *pool, slm_task_fn fn, void *arg) {
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, (uint32_t)(pool->n_threads - 1), memory_order_relaxed);
    const uint32_t gen = start_generation(pool);
    fn(arg, 0, pool->n_threads);
    for (int i = 1; i < pool->n_threads; i++) /* shares whose worker has not started yet */
        if (claim_share(pool, i, gen)) {
            fn(arg, i, pool->n_threads);
            atomic_fetch_sub(&pool->pending, 1);
        }
    wait_for_workers(pool);
}

static void *grow_scratch(pool_scratch *s, size_t bytes) {
    if (s->size >= bytes && s->ptr) return s->ptr;
    size_t size = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 64) != 0) return NULL;
    free(s->ptr);
    s->ptr = p;
    s->size = size;
    return p;
}

void *slm_pool_scratch(slm_pool *pool, int ith, size_t bytes) {
    if (!pool || ith < 0 || ith >= pool->n_threads) return NULL;
    return grow_scratch(&pool->scratch[ith], bytes);
}

void *slm_pool_shared_scratch(slm_pool *pool, size_t bytes) {
    if (!pool) return NULL;
    return grow_scratch(&pool->scratch[pool->n_threads], bytes);
}

slm_pool *slm_pool_acquire(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    pthread_mutex_lock(&shared_mu);
    slm_pool *p = shared_pools;
    while (p && p->n_threads != n_threads) p = p->next_shared;
    if (!p) {
        p = slm_pool_new(n_threads);
        if (p) {
            p->next_shared = shared_pools;
            shared_pools = p;
        }
    }
    if (p) p->refs++;
    pthread_mutex_unlock(&shared_mu);
    return p;
}

void slm_pool_release(slm_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&shared_mu);
    bool last = --pool->refs == 0;
    if (last)
        for (slm_pool **pp = &shared_pools; *pp; pp = &(*pp)->next_shared)
            if (*pp == pool) {
                *pp = pool->next_shared;
                break;
            }
    pthread_mutex_unlock(&shared_mu);
    if (last) slm_pool_free(pool);
}

void slm_pool_lock(slm_pool *pool) {
    if (pool) pthread_mutex_lock(&pool->op_lock);
}

void slm_pool_unlock(slm_pool *pool) {
    if (pool) pthread_mutex_unlock(&pool->op_lock);
}
