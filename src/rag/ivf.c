/* The approximate vector index: an inverted file (IVF) over the collection's f16 vectors.
 * Spherical k-means (the vectors are L2-normalised embeddings, so the best centroid is the one with
 * the largest dot product) splits them into about sqrt(n) lists; the caller's copy of the vectors is
 * reordered so every list is one contiguous run, and a query scans only the runs of its `nprobe`
 * nearest centroids with the same SIMD dot products exhaustive search uses. Built in memory when a
 * large collection is first searched (rebuilt when it changes); exhaustive search stays the oracle. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rag_internal.h"
#include "slm_rag.h"

#define ASSIGN_BLOCK 4096
#define TRAIN_SAMPLE_PER_LIST 64
#define TRAIN_ITERATIONS 6

static uint64_t next_random(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void normalise(float *v, int dim) {
    double ss = 0;
    for (int k = 0; k < dim; k++) ss += (double)v[k] * v[k];
    if (ss <= 0) return;
    float inv = (float)(1.0 / sqrt(ss));
    for (int k = 0; k < dim; k++) v[k] *= inv;
}

/* The best centroid of each of vectors[0..n): dot products block by block (centroids as queries). */
static int assign(const float *centroids, int nlist, const uint16_t *vecs, size_t n, int dim, int *owner) {
    float *scores = malloc(sizeof *scores * (size_t)nlist * ASSIGN_BLOCK);
    float *best = malloc(sizeof *best * ASSIGN_BLOCK);
    if (!scores || !best) {
        free(scores);
        free(best);
        return -1;
    }
    for (size_t start = 0; start < n; start += ASSIGN_BLOCK) {
        size_t m = n - start < ASSIGN_BLOCK ? n - start : ASSIGN_BLOCK;
        for (int c = 0; c < nlist; c++)
            slm_rag_dot_f16(centroids + (size_t)c * dim, vecs + start * (size_t)dim, m, dim, scores + (size_t)c * ASSIGN_BLOCK);
        for (size_t i = 0; i < m; i++) {
            best[i] = -INFINITY;
            owner[start + i] = 0;
        }
        for (int c = 0; c < nlist; c++)
            for (size_t i = 0; i < m; i++)
                if (scores[(size_t)c * ASSIGN_BLOCK + i] > best[i]) {
                    best[i] = scores[(size_t)c * ASSIGN_BLOCK + i];
                    owner[start + i] = c;
                }
    }
    free(scores);
    free(best);
    return 0;
}

int rag_ivf_build(rag_ivf *ix, uint16_t *vecs, long long *ids, size_t n, int dim, int nlist, uint64_t seed) {
    memset(ix, 0, sizeof *ix);
    if (n == 0 || dim <= 0) return -1;
    if (nlist <= 0) nlist = (int)sqrt((double)n);
    if (nlist < 1) nlist = 1;
    if ((size_t)nlist > n) nlist = (int)n;
    size_t sample_n = (size_t)nlist * TRAIN_SAMPLE_PER_LIST < n ? (size_t)nlist * TRAIN_SAMPLE_PER_LIST : n;
    float *centroids = malloc(sizeof *centroids * (size_t)nlist * dim);
    double *sums = malloc(sizeof *sums * (size_t)nlist * dim);
    int *owner = malloc(sizeof *owner * n);
    size_t *sample = malloc(sizeof *sample * sample_n);
    uint16_t *sample_vecs = malloc(sizeof *sample_vecs * sample_n * (size_t)dim);
    long long *counts = calloc((size_t)nlist + 1, sizeof *counts);
    int rc = -1;
    if (!centroids || !sums || !owner || !sample || !sample_vecs || !counts) goto out;

    /* a training sample without repeats (partial Fisher-Yates over the indices) */
    size_t *perm = malloc(sizeof *perm * n);
    if (!perm) goto out;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = 0; i < sample_n; i++) {
        size_t j = i + (size_t)(next_random(&seed) % (n - i));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        sample[i] = perm[i];
        memcpy(sample_vecs + i * (size_t)dim, vecs + perm[i] * (size_t)dim, sizeof *vecs * (size_t)dim);
    }
    free(perm);
    for (int c = 0; c < nlist; c++) {
        for (int k = 0; k < dim; k++) centroids[(size_t)c * dim + k] = slm_rag_f16_to_f32(sample_vecs[(size_t)c * dim + k]);
        normalise(centroids + (size_t)c * dim, dim);
    }
    for (int it = 0; it < TRAIN_ITERATIONS; it++) {
        if (assign(centroids, nlist, sample_vecs, sample_n, dim, owner)) goto out;
        memset(sums, 0, sizeof *sums * (size_t)nlist * dim);
        memset(counts, 0, sizeof *counts * ((size_t)nlist + 1));
        for (size_t i = 0; i < sample_n; i++) {
            counts[owner[i]]++;
            for (int k = 0; k < dim; k++) sums[(size_t)owner[i] * dim + k] += slm_rag_f16_to_f32(sample_vecs[i * (size_t)dim + k]);
        }
        for (int c = 0; c < nlist; c++) {
            if (counts[c] == 0) { /* an empty list takes a random sample vector and starts again from it */
                size_t i = (size_t)(next_random(&seed) % sample_n);
                for (int k = 0; k < dim; k++) centroids[(size_t)c * dim + k] = slm_rag_f16_to_f32(sample_vecs[i * (size_t)dim + k]);
            } else {
                for (int k = 0; k < dim; k++) centroids[(size_t)c * dim + k] = (float)sums[(size_t)c * dim + k];
            }
            normalise(centroids + (size_t)c * dim, dim);
        }
    }

    /* every vector to its list, then the caller's arrays reordered list by list (a stable counting sort) */
    if (assign(centroids, nlist, vecs, n, dim, owner)) goto out;
    memset(counts, 0, sizeof *counts * ((size_t)nlist + 1));
    for (size_t i = 0; i < n; i++) counts[owner[i] + 1]++;
    for (int c = 0; c < nlist; c++) counts[c + 1] += counts[c];
    uint16_t *sorted_vecs = malloc(sizeof *sorted_vecs * n * (size_t)dim);
    long long *sorted_ids = malloc(sizeof *sorted_ids * n);
    long long *next = malloc(sizeof *next * (size_t)nlist);
    if (!sorted_vecs || !sorted_ids || !next) {
        free(sorted_vecs);
        free(sorted_ids);
        free(next);
        goto out;
    }
    memcpy(next, counts, sizeof *next * (size_t)nlist);
    for (size_t i = 0; i < n; i++) {
        long long at = next[owner[i]]++;
        memcpy(sorted_vecs + (size_t)at * dim, vecs + i * (size_t)dim, sizeof *vecs * (size_t)dim);
        sorted_ids[at] = ids[i];
    }
    memcpy(vecs, sorted_vecs, sizeof *vecs * n * (size_t)dim);
    memcpy(ids, sorted_ids, sizeof *ids * n);
    free(sorted_vecs);
    free(sorted_ids);
    free(next);
    ix->nlist = nlist;
    ix->dim = dim;
    ix->centroids = centroids;
    ix->list_start = counts;
    centroids = NULL;
    counts = NULL;
    rc = 0;
out:
    free(centroids);
    free(sums);
    free(owner);
    free(sample);
    free(sample_vecs);
    free(counts);
    return rc;
}

void rag_ivf_free(rag_ivf *ix) {
    free(ix->centroids);
    free(ix->list_start);
    memset(ix, 0, sizeof *ix);
}

long long rag_ivf_candidates(const rag_ivf *ix, const float *query, int nprobe, const uint16_t *vecs, float *scores,
                             long long *positions) {
    if (nprobe > ix->nlist) nprobe = ix->nlist;
    float *cs = malloc(sizeof *cs * (size_t)ix->nlist);
    int *probe = malloc(sizeof *probe * (size_t)(nprobe > 0 ? nprobe : 1));
    if (!cs || !probe) {
        free(cs);
        free(probe);
        return -1;
    }
    for (int c = 0; c < ix->nlist; c++) {
        const float *v = ix->centroids + (size_t)c * ix->dim;
        float s = 0;
        for (int k = 0; k < ix->dim; k++) s += query[k] * v[k];
        cs[c] = s;
    }
    int np = slm_rag_top_k(cs, (size_t)ix->nlist, nprobe, probe);
    /* the probed lists in storage order, so the scores come out as one array over their runs */
    for (int i = 1; i < np; i++)
        for (int j = i; j > 0 && probe[j - 1] > probe[j]; j--) {
            int t = probe[j];
            probe[j] = probe[j - 1];
            probe[j - 1] = t;
        }
    long long total = 0;
    for (int i = 0; i < np; i++) {
        long long a = ix->list_start[probe[i]], b = ix->list_start[probe[i] + 1];
        slm_rag_dot_f16(query, vecs + (size_t)a * ix->dim, (size_t)(b - a), ix->dim, scores + total);
        for (long long p = a; p < b; p++) positions[total++] = p;
    }
    free(cs);
    free(probe);
    return total;
}
