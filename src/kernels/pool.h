/* A persistent pool of worker threads: created once per process (per thread count), woken per operation. */
#ifndef SLM_KERNELS_POOL_H
#define SLM_KERNELS_POOL_H

#include <stddef.h>

typedef struct slm_pool slm_pool;
/* Work function: thread ith of nth does its share. */
typedef void (*slm_task_fn)(void *arg, int ith, int nth);

/* NULL on allocation or thread-creation failure. n_threads < 1 counts as 1 (runs inline). */
slm_pool *slm_pool_new(int n_threads);
/* The process's shared pool of n_threads threads (created on first use, reference counted), so
 * every context of a process runs on one set of workers; release it with slm_pool_release. */
slm_pool *slm_pool_acquire(int n_threads);
void slm_pool_release(slm_pool *pool);
/* Holds the pool for a whole multi-step operation (a forward pass): contexts sharing a pool, used
 * from different threads, take turns instead of mixing their work and scratch memory. */
void slm_pool_lock(slm_pool *pool);
void slm_pool_unlock(slm_pool *pool);
void slm_pool_free(slm_pool *pool);
int slm_pool_size(const slm_pool *pool);
/* Runs fn on every thread (the caller is thread 0) and returns when all are done.
 * A NULL pool runs fn(arg, 0, 1) inline. Not reentrant: fn must not call slm_pool_run. */
void slm_pool_run(slm_pool *pool, slm_task_fn fn, void *arg);

/* Work memory owned by the pool, 64-byte aligned, kept between operations and grown only when a
 * larger size is asked for (so steady-state decoding allocates nothing). slm_pool_scratch is
 * thread ith's own buffer (call it from thread ith inside a task, or before slm_pool_run);
 * slm_pool_shared_scratch is one buffer for all threads (grow it only outside slm_pool_run).
 * NULL if pool is NULL or memory is exhausted. A call may move the buffer. */
void *slm_pool_scratch(slm_pool *pool, int ith, size_t bytes);
void *slm_pool_shared_scratch(slm_pool *pool, size_t bytes);

#endif
