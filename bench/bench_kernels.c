/* Kernel speed on its own, for the packed (R16) weight layouts of the AVX-512 path:
 *
 *   bench_kernels cache [TOKENS]    compute rate: one thread, a few groups of 16 rows that stay in
 *                                   L1/L2, best of 200 passes, in TSC ticks per 512 weights
 *   bench_kernels dram [TOKENS] [ROUNDS]
 *                                   streaming rate: two threads, 2048 x 8192 matrices, 24 distinct
 *                                   copies per type (~0.2-0.4 GB, beyond any cache), the types taking
 *                                   turns each round so they see the same machine; GB/s of the
 *                                   GGUF bytes, best and median over the rounds
 *
 *   bench_kernels float [TOKENS] [K] [M] [THREADS] [ROUNDS]
 *                                   the float-weight GEMM (F16, BF16, F32) of the selected ISA
 *                                   (SLM_ISA lowers it) against the per-token dot, GFLOP/s
 *
 * The compute rate says how far a kernel is from being memory-bound: decode on two threads at
 * 65 GB/s needs about 12.5 bytes per TSC tick (2.6 GHz) per core. Random weights from the
 * reference quantizer. Built by CMake as bench_kernels; not a test. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "kernels/kernels_impl.h"
#include "kernels/packed.h"
#include "tensor/quant.h"

static const struct {
    const char *name;
    uint32_t type;
} types[] = {{"q4_0", SLM_TYPE_Q4_0}, {"q5_0", SLM_TYPE_Q5_0}, {"q8_0", SLM_TYPE_Q8_0},
             {"q4_K", SLM_TYPE_Q4_K}, {"q5_K", SLM_TYPE_Q5_K}, {"q6_K", SLM_TYPE_Q6_K}};
#define N_TYPES (int)(sizeof types / sizeof types[0])

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float frand(void) {
    return (float)rand() / (float)RAND_MAX - 0.5f;
}

/* A k x m weight of the type, quantized from random floats, and its packed copy. */
static int make_weight(const slm_kernel_table *table, slm_pool *pool, uint32_t type, int64_t k, int64_t m,
                       slm_weight *w) {
    const size_t rb = slm_row_bytes(type, k);
    uint8_t *data = malloc(rb * (size_t)m);
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!data || !row) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        return -1;
    }
    for (int64_t r = 0; r < m; r++) {
        for (int64_t i = 0; i < k; i++) row[i] = frand();
        slm_quantize_row(type, row, data + (size_t)r * rb, k);
    }
    free(row);
    *w = (slm_weight){.type = type, .k = k, .m = m, .data = data, .row_bytes = rb};
    const size_t bytes = slm_weight_packed_bytes_for(table, w);
    void *packed = bytes ? aligned_alloc(64, (bytes + 63) & ~(size_t)63) : NULL;
    if (!packed) {
        fprintf(stderr, "bench_kernels: %s: %s\n", slm_type_name(type), bytes ? "out of memory" : "no packed layout");
        return -1;
    }
    slm_weight_pack(pool, w, packed, NULL, NULL);
    free(data); /* the kernels read only the packed copy */
    w->data = NULL;
    return 0;
}

static int bench_cache(const slm_kernel_table *table, int n_tok) {
    const int64_t k = 2048, m = 4 * SLM_PACKED_ROWS;
    slm_pool *pool = slm_pool_new(1);
    const size_t stride = slm_act_row_bytes(SLM_ACT_Q8P, k);
    uint8_t *act = aligned_alloc(64, stride * SLM_PACKED_MAX_TOKENS);
    float *x = malloc(sizeof(float) * (size_t)k);
    if (!pool || !act || !x) return 1;
    for (int t = 0; t < SLM_PACKED_MAX_TOKENS; t++) {
        for (int64_t i = 0; i < k; i++) x[i] = frand();
        table->quantize_q8p(k, x, act + (size_t)t * stride);
    }
    printf("| type | tokens | TSC ticks / 512 weights | per token | GGUF bytes / tick |\n|---|---:|---:|---:|---:|\n");
    for (int ti = 0; ti < N_TYPES; ti++) {
        slm_weight w;
        if (make_weight(table, pool, types[ti].type, k, m, &w) != 0) return 1;
        const size_t group = slm_packed_group_bytes(w.type, k);
        float out[SLM_PACKED_ROWS * SLM_PACKED_MAX_TOKENS];
        unsigned long long best = ~0ull;
        for (int pass = 0; pass < 200; pass++) {
            unsigned long long t0 = __rdtsc();
            for (int64_t g = 0; g < m / SLM_PACKED_ROWS; g++)
                table->packed_gemm[w.type](k, (const uint8_t *)w.packed + (size_t)g * group, act, stride, n_tok, out,
                                           SLM_PACKED_ROWS);
            unsigned long long dt = __rdtsc() - t0;
            if (dt < best) best = dt;
        }
        const double units = (double)(k / 32) * (double)(m / SLM_PACKED_ROWS);
        printf("| %s | %d | %.2f | %.2f | %.1f |\n", types[ti].name, n_tok, (double)best / units,
               (double)best / units / n_tok, (double)(slm_row_bytes(w.type, k) * (size_t)m) / (double)best);
        free((void *)w.packed);
    }
    slm_pool_free(pool);
    return 0;
}

#define DRAM_COPIES 24
#define DRAM_MAX_ROUNDS 64

static int bench_dram(const slm_kernel_table *table, int n_tok, int rounds) {
    const int64_t k = 2048, m = 8192;
    slm_pool *pool = slm_pool_new(2);
    static slm_weight w[N_TYPES][DRAM_COPIES];
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok)), *y = malloc(sizeof(float) * (size_t)(m * n_tok));
    if (!pool || !x || !y) return 1;
    for (int ti = 0; ti < N_TYPES; ti++)
        for (int c = 0; c < DRAM_COPIES; c++)
            if (make_weight(table, pool, types[ti].type, k, m, &w[ti][c]) != 0) return 1;
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = frand();
    static double gbs[N_TYPES][DRAM_MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int ti = 0; ti < N_TYPES; ti++) {
            double t0 = now_s();
            for (int c = 0; c < DRAM_COPIES; c++) slm_matmul_with(pool, table, &w[ti][c], x, n_tok, y);
            double dt = (now_s() - t0) / DRAM_COPIES;
            gbs[ti][r] = (double)(slm_row_bytes(types[ti].type, k) * (size_t)m) / dt / 1e9;
        }
    printf("| type | tokens | best GB/s | median GB/s |\n|---|---:|---:|---:|\n");
    for (int ti = 0; ti < N_TYPES; ti++) {
        qsort(gbs[ti], (size_t)rounds, sizeof(double), cmp_double);
        printf("| %s | %d | %.1f | %.1f |\n", types[ti].name, n_tok, gbs[ti][rounds - 1], gbs[ti][rounds / 2]);
    }
    slm_pool_free(pool);
    return 0;
}

/* The float-weight GEMM against the per-(row, token) dot it replaces: GFLOP/s of slm_matmul_with
 * on an m x k weight (F16, BF16, F32) with n_tok tokens, THREADS threads, best and median of the
 * rounds; the two paths alternate so they see the same machine. */
static int bench_float(int n_tok, int64_t k, int64_t m, int threads, int rounds) {
    const slm_kernel_table *best = slm_kernels_active();
    slm_kernel_table per_token = *best;
    per_token.fgemm = (slm_float_gemm){0};
    slm_pool *pool = slm_pool_new(threads);
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok)), *y = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!pool || !x || !y || !row) return 1;
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = frand();
    static const uint32_t ftypes[] = {SLM_TYPE_F16, SLM_TYPE_BF16, SLM_TYPE_F32};
    printf("| type | m x k | tokens | threads | GEMM GFLOP/s best / median | per-token dot GFLOP/s best / median |"
           " speed-up (medians) |\n|---|---|---:|---:|---:|---:|---:|\n");
    for (int ti = 0; ti < 3; ti++) {
        const uint32_t type = ftypes[ti];
        const size_t rb = slm_row_bytes(type, k);
        uint8_t *data = malloc(rb * (size_t)m);
        if (!data) return 1;
        for (int64_t r = 0; r < m; r++) {
            for (int64_t i = 0; i < k; i++) row[i] = frand();
            slm_quantize_row(type, row, data + (size_t)r * rb, k);
        }
        slm_weight w = {.type = type, .k = k, .m = m, .data = data, .row_bytes = rb};
        double rate[2][DRAM_MAX_ROUNDS];
        for (int r = 0; r < rounds; r++)
            for (int path = 0; path < 2; path++) {
                double t0 = now_s();
                slm_matmul_with(pool, path ? &per_token : best, &w, x, n_tok, y);
                rate[path][r] = 2.0 * (double)m * (double)k * n_tok / (now_s() - t0) / 1e9;
            }
        for (int path = 0; path < 2; path++) qsort(rate[path], (size_t)rounds, sizeof(double), cmp_double);
        printf("| %s | %lld x %lld | %d | %d | %.1f / %.1f | %.1f / %.1f | %.2fx |\n", slm_type_name(type), (long long)m,
               (long long)k, n_tok, threads, rate[0][rounds - 1], rate[0][rounds / 2], rate[1][rounds - 1],
               rate[1][rounds / 2], rate[0][rounds / 2] / rate[1][rounds / 2]);
        free(data);
    }
    free(x);
    free(y);
    free(row);
    slm_pool_free(pool);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "float") == 0) {
        const int n_tok = argc > 2 ? atoi(argv[2]) : 128;
        const long long k = argc > 3 ? atoll(argv[3]) : 768, m = argc > 4 ? atoll(argv[4]) : 3072;
        const int threads = argc > 5 ? atoi(argv[5]) : 1, rounds = argc > 6 ? atoi(argv[6]) : 9;
        if (n_tok < 1 || n_tok > 8192 || k < 1 || k > 65536 || m < 1 || m > 65536 || threads < 1 || threads > 64 ||
            rounds < 1 || rounds > DRAM_MAX_ROUNDS) {
            fprintf(stderr, "bench_kernels: float TOKENS (1..8192) K M (1..65536) THREADS (1..64) ROUNDS (1..%d)\n",
                    DRAM_MAX_ROUNDS);
            return 1;
        }
        return bench_float(n_tok, (int64_t)k, (int64_t)m, threads, rounds);
    }
    const slm_kernel_table *table = slm_kernels_for_isa(SLM_ISA_AVX512);
    if (!table) {
        fprintf(stderr, "bench_kernels: this CPU has no AVX-512 VNNI path (the packed kernels are AVX-512 only)\n");
        return 1;
    }
    const char *mode = argc > 1 ? argv[1] : "cache";
    const int n_tok = argc > 2 ? atoi(argv[2]) : 1;
    if (n_tok < 1 || n_tok > SLM_PACKED_MAX_TOKENS) {
        fprintf(stderr, "bench_kernels: TOKENS must be 1..%d\n", SLM_PACKED_MAX_TOKENS);
        return 1;
    }
    if (strcmp(mode, "cache") == 0) return bench_cache(table, n_tok);
    if (strcmp(mode, "dram") == 0) {
        const int rounds = argc > 3 ? atoi(argv[3]) : 15;
        if (rounds < 1 || rounds > DRAM_MAX_ROUNDS) {
            fprintf(stderr, "bench_kernels: ROUNDS must be 1..%d\n", DRAM_MAX_ROUNDS);
            return 1;
        }
        return bench_dram(table, n_tok, rounds);
    }
    fprintf(stderr, "usage: bench_kernels cache [TOKENS] | dram [TOKENS] [ROUNDS] | float [TOKENS] [K] [M] [THREADS] "
                    "[ROUNDS]\n");
    return 1;
}
