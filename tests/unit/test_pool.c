/* The persistent pool: every thread runs each operation exactly once, results are visible to the
 * caller on return, many back-to-back operations work (the spin/futex hand-off), scratch grows. */
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "kernels/pool.h"
#include "test.h"

typedef struct count_job {
    _Atomic int calls;
    int seen_nth;
    int hits[8];
    int64_t sums[8];
} count_job;

static void count_task(void *arg, int ith, int nth) {
    count_job *job = arg;
    atomic_fetch_add(&job->calls, 1);
    job->seen_nth = nth;
    job->hits[ith]++;
    int64_t s = 0;
    for (int i = ith; i < 100000; i += nth) s += i;
    job->sums[ith] = s;
}

static void slow_task(void *arg, int ith, int nth) {
    (void)nth;
    int *done = arg;
    if (ith == 1) usleep(20000); /* long enough for the caller to go to sleep in the futex */
    done[ith] = 1;
}

static void check_pool(int n_threads) {
    slm_pool *pool = slm_pool_new(n_threads);
    CHECK(pool != NULL);
    if (!pool) return;
    CHECK(slm_pool_size(pool) == n_threads);
    count_job job = {0};
    const int rounds = 20000;
    int64_t total = 0;
    for (int r = 0; r < rounds; r++) {
        slm_pool_run(pool, count_task, &job);
        int64_t s = 0;
        for (int i = 0; i < n_threads; i++) s += job.sums[i];
        total += s == 4999950000LL ? 1 : 0;
    }
    CHECKF(total == rounds, "threads %d: %lld of %d rounds summed right", n_threads, (long long)total, rounds);
    CHECK(atomic_load(&job.calls) == rounds * n_threads);
    CHECK(job.seen_nth == n_threads);
    for (int i = 0; i < n_threads; i++) CHECKF(job.hits[i] == rounds, "thread %d ran %d times", i, job.hits[i]);

    /* After an idle pause the workers are asleep in the futex; they must still wake. */
    usleep(50000);
    int done[8] = {0};
    slm_pool_run(pool, slow_task, done);
    for (int i = 0; i < n_threads; i++) CHECK(done[i] == 1);

    char *a = slm_pool_scratch(pool, 0, 100);
    CHECK(a != NULL && ((uintptr_t)a & 63) == 0);
    if (a) memset(a, 7, 100);
    char *b = slm_pool_scratch(pool, 0, 50);
    CHECK(b == a); /* no reallocation for a smaller request */
    char *c = slm_pool_shared_scratch(pool, 1 << 20);
    CHECK(c != NULL && ((uintptr_t)c & 63) == 0);
    CHECK(slm_pool_scratch(pool, n_threads, 8) == NULL);
    slm_pool_free(pool);
}

int main(void) {
    check_pool(1);
    check_pool(2);
    check_pool(4);
    /* NULL pool runs inline. */
    count_job job = {0};
    slm_pool_run(NULL, count_task, &job);
    CHECK(job.hits[0] == 1 && job.seen_nth == 1);
    CHECK(slm_pool_shared_scratch(NULL, 16) == NULL);
    slm_pool_free(NULL);
    return test_report("test_pool");
}
