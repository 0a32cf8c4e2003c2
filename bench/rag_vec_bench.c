/* Vector search micro-benchmark: exact top-k over n f16 vectors of dim (the ISA path slm picks;
 * SLM_ISA=scalar|avx2 forces one), and the recall@10 of f16 storage against f32 on the same data.
 * usage: rag_vec_bench N DIM [QUERIES] — vectors are clustered (64 centres + noise, L2-normalised)
 * so that neighbours are close, as embeddings of similar chunks are. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rag/rag_internal.h"
#include "slm_rag.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double gauss(void) {
    double u = (rand() + 1.0) / (RAND_MAX + 2.0), v = (rand() + 1.0) / (RAND_MAX + 2.0);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void unit(float *x, int dim) {
    double s = 0;
    for (int k = 0; k < dim; k++) s += (double)x[k] * x[k];
    s = sqrt(s);
    for (int k = 0; k < dim; k++) x[k] = (float)(x[k] / s);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rag_vec_bench N DIM [QUERIES]\n");
        return 2;
    }
    size_t n = strtoull(argv[1], NULL, 10);
    int dim = atoi(argv[2]), nq = argc > 3 ? atoi(argv[3]) : 100;
    if (!n || dim <= 0 || nq <= 0) return 2;
    srand(1);
    enum { CENTRES = 64, K = 10 };
    float *centre = malloc(sizeof *centre * CENTRES * (size_t)dim);
    for (size_t i = 0; i < (size_t)CENTRES * (size_t)dim; i++) centre[i] = (float)gauss();
    float *v32 = malloc(sizeof *v32 * n * (size_t)dim);
    uint16_t *v16 = malloc(sizeof *v16 * n * (size_t)dim);
    for (size_t i = 0; i < n; i++) {
        float *x = v32 + i * (size_t)dim;
        const float *c = centre + (size_t)(rand() % CENTRES) * (size_t)dim;
        for (int k = 0; k < dim; k++) x[k] = c[k] + 0.5f * (float)gauss();
        unit(x, dim);
        for (int k = 0; k < dim; k++) v16[i * (size_t)dim + k] = slm_rag_f32_to_f16(x[k]);
    }
    float *q = malloc(sizeof *q * (size_t)dim), *s16 = malloc(sizeof *s16 * n), *s32 = malloc(sizeof *s32 * n);
    double *lat = malloc(sizeof *lat * (size_t)nq), hit = 0;
    float *queries = malloc(sizeof *queries * (size_t)nq * (size_t)dim);
    int top16[K], top32[K], *truth = malloc(sizeof *truth * (size_t)nq * K);
    for (int t = 0; t < nq; t++) {
        const float *c = centre + (size_t)(rand() % CENTRES) * (size_t)dim;
        for (int k = 0; k < dim; k++) q[k] = c[k] + 0.5f * (float)gauss();
        unit(q, dim);
        memcpy(queries + (size_t)t * dim, q, sizeof *q * (size_t)dim);
        double t0 = now_ms();
        slm_rag_dot_f16(q, v16, n, dim, s16);
        int got = slm_rag_top_k(s16, n, K, top16);
        lat[t] = now_ms() - t0;
        for (size_t i = 0; i < n; i++) { /* the f32 reference */
            double s = 0;
            for (int k = 0; k < dim; k++) s += (double)q[k] * v32[i * (size_t)dim + k];
            s32[i] = (float)s;
        }
        slm_rag_top_k(s32, n, K, top32);
        memcpy(truth + (size_t)t * K, top32, sizeof top32);
        for (int a = 0; a < got; a++)
            for (int b = 0; b < K; b++) hit += top16[a] == top32[b];
    }
    qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
    printf("vectors %zu x %d (f16, %.1f MB), isa %s: top-%d latency p50 %.2f ms, p99 %.2f ms; recall@%d of f16 vs f32 %.4f\n",
           n, dim, (double)n * dim * 2 / 1e6, slm_isa_name(), K, lat[nq / 2], lat[(int)((nq - 1) * 0.99)], K,
           hit / ((double)nq * K));

    /* the approximate index (src/rag/ivf.c) over the same f16 vectors: build time, then latency and
     * recall@10 against the f32 truth for several probe counts (the default is nlist / 8) */
    long long *ids = malloc(sizeof *ids * n), *pos = malloc(sizeof *pos * n);
    for (size_t i = 0; i < n; i++) ids[i] = (long long)i;
    double t0 = now_ms();
    rag_ivf ix;
    if (rag_ivf_build(&ix, v16, ids, n, dim, 0, 1) != 0) return 1;
    printf("ivf: %d lists built in %.0f ms\n", ix.nlist, now_ms() - t0);
    int probes[] = {ix.nlist / 32 > 1 ? ix.nlist / 32 : 1, ix.nlist / 16 > 1 ? ix.nlist / 16 : 1,
                    ix.nlist / RAG_IVF_PROBE_DIVISOR > 8 ? ix.nlist / RAG_IVF_PROBE_DIVISOR : 8, ix.nlist / 4};
    for (int p = 0; p < 4; p++) {
        hit = 0;
        for (int t = 0; t < nq; t++) {
            double t1 = now_ms();
            long long m = rag_ivf_candidates(&ix, queries + (size_t)t * dim, probes[p], v16, s16, pos);
            int got = slm_rag_top_k(s16, (size_t)m, K, top16);
            lat[t] = now_ms() - t1;
            for (int a = 0; a < got; a++)
                for (int b = 0; b < K; b++) hit += ids[pos[top16[a]]] == truth[(size_t)t * K + b];
        }
        qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
        printf("ivf: nprobe %d of %d%s: top-%d latency p50 %.2f ms, p99 %.2f ms; recall@%d vs f32 exhaustive %.4f\n", probes[p],
               ix.nlist, p == 2 ? " (default)" : "", K, lat[nq / 2], lat[(int)((nq - 1) * 0.99)], K, hit / ((double)nq * K));
    }
    rag_ivf_free(&ix);
    free(ids), free(pos), free(queries), free(truth);
    free(centre), free(v32), free(v16), free(q), free(s16), free(s32), free(lat);
    return 0;
}
