/* The pool's late-worker hand-off (src/kernels/pool.c): when a worker has not started its share of
 * an operation by the time the caller finished its own, the caller runs that share itself, and the
 * worker, once it wakes, must not run it again. Checked with a sleeping worker (the caller should
 * take its share), every share of every operation run exactly once, then back-to-back operations
 * and a long share on the worker (the caller must wait for it, not take it twice). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "kernels/pool.h"
#include "test.h"

#define MAX_THREADS 4

typedef struct share_job {
    _Atomic int runs[MAX_THREADS];
    _Atomic int by_caller[MAX_THREADS];
    pthread_t caller;
    int sleep_us_on_worker; /* a share run by a worker thread sleeps this long */
} share_job;

static void share_task(void *arg, int ith, int nth) {
    share_job *j = arg;
    if (ith < 0 || ith >= MAX_THREADS || nth < 1 || nth > MAX_THREADS) return;
    const bool on_caller = pthread_equal(pthread_self(), j->caller);
    if (!on_caller && j->sleep_us_on_worker) usleep((useconds_t)j->sleep_us_on_worker);
    atomic_fetch_add(&j->runs[ith], 1);
    if (on_caller) atomic_fetch_add(&j->by_caller[ith], 1);
}

static void run_op(slm_pool *pool, share_job *j, int sleep_us_on_worker) {
    memset(j, 0, sizeof *j);
    j->caller = pthread_self();
    j->sleep_us_on_worker = sleep_us_on_worker;
    slm_pool_run(pool, share_task, j);
}

static bool each_once(share_job *j, int n_threads) {
    for (int i = 0; i < n_threads; i++)
        if (atomic_load(&j->runs[i]) != 1) return false;
    return true;
}

int main(void) {
    for (int n_threads = 2; n_threads <= MAX_THREADS; n_threads++) {
        slm_pool *pool = slm_pool_new(n_threads);
        CHECKF(pool != NULL, "pool of %d threads", n_threads);
        if (!pool) continue;
        share_job job;
        int taken = 0;
        for (int round = 0; round < 20; round++) {
            usleep(8000); /* the workers stop spinning and sleep on the futex */
            run_op(pool, &job, 0);
            CHECKF(each_once(&job, n_threads), "%d threads, round %d: a share ran %d/%d/%d times", n_threads, round,
                   atomic_load(&job.runs[0]), atomic_load(&job.runs[1]), atomic_load(&job.runs[n_threads - 1]));
            for (int i = 1; i < n_threads; i++) taken += atomic_load(&job.by_caller[i]);
            usleep(2000); /* late workers wake up now: they must not run the share again */
            CHECKF(each_once(&job, n_threads), "%d threads, round %d: a late worker ran its share again", n_threads,
                   round);
        }
        fprintf(stderr, "test_kernels_pool: %d threads: the caller took %d sleeping workers' shares in 20 rounds\n",
                n_threads, taken);
        CHECKF(taken > 0, "%d threads: the caller never took the share of a sleeping worker", n_threads);
        /* back to back: spinning workers, shares taken by whoever comes first, each exactly once */
        for (int op = 0; op < 2000; op++) {
            run_op(pool, &job, 0);
            if (!each_once(&job, n_threads)) {
                CHECKF(0, "%d threads, back-to-back op %d: shares not run exactly once", n_threads, op);
                break;
            }
        }
        /* a worker that started its share is waited for (its share is not run twice) */
        usleep(1000);
        run_op(pool, &job, 20000);
        CHECK(each_once(&job, n_threads));
        slm_pool_free(pool);
    }
    return test_report("test_kernels_pool");
}
