/* A persistent pool of worker threads: created once per context, woken per operation. */
#ifndef SLM_KERNELS_POOL_H
#define SLM_KERNELS_POOL_H

typedef struct slm_pool slm_pool;
/* Work function: thread ith of nth does its share. */
typedef void (*slm_task_fn)(void *arg, int ith, int nth);

slm_pool *slm_pool_new(int n_threads);
void slm_pool_free(slm_pool *pool);
int slm_pool_size(const slm_pool *pool);
/* Runs fn on every thread (the caller is thread 0) and returns when all are done. */
void slm_pool_run(slm_pool *pool, slm_task_fn fn, void *arg);

#endif
