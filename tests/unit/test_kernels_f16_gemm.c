/* The float-weight GEMM (kernels_impl.h, slm_float_gemm) on every ISA path this CPU runs:
 *  - pack: the panel holds exactly the weights' f32 values (F32, F16, BF16), k-major, zero lanes
 *    past the last row;
 *  - tile: within f32 rounding of a double-precision reference, (k+2) * 2^-24 * sum |w x| (every
 *    sum runs over k in order, one rounding per term), writes only the nr x nt outputs it owns,
 *    and adds to them when asked to;
 *  - slm_matmul (the driver: chunks, column and token blocks) on odd shapes, rows, columns and
 *    tokens off every tile size, against the same reference and the exact path, the same bits
 *    with 1 and 2 threads, and the same bits for a token whatever batch (of >= 12) it is in. */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels_impl.h"
#include "test.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

static const uint32_t float_types[] = {SLM_TYPE_F32, SLM_TYPE_F16, SLM_TYPE_BF16};
#define N_FLOAT_TYPES 3

static void fill_weights(uint32_t type, uint8_t *data, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float f = rng_uniform(-1.0f, 1.0f) * (i % 5 == 0 ? 8.0f : 1.0f);
        if (type == SLM_TYPE_F32) {
            memcpy(data + 4 * i, &f, 4);
        } else {
            uint16_t h = type == SLM_TYPE_F16 ? slm_fp32_to_fp16(f) : slm_fp32_to_bf16(f);
            memcpy(data + 2 * i, &h, 2);
        }
    }
}

/* The f32 rounding bound of a length-k dot product whose terms sum to mag in absolute value. */
static double rounding_bound(int64_t k, double mag) {
    return (double)(k + 2) * 0x1p-24 * 1.01 * mag + 1e-30;
}

static void check_pack(const slm_kernel_table *table, const char *isa) {
    static const int64_t ks[] = {1, 7, 8, 9, 45, 130};
    static const int nrs[] = {16, 15, 5, 1};
    for (int ti = 0; ti < N_FLOAT_TYPES; ti++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t ni = 0; ni < sizeof nrs / sizeof nrs[0]; ni++) {
                const uint32_t type = float_types[ti];
                const int64_t k = ks[ki];
                const int nr = nrs[ni];
                const size_t rb = slm_row_bytes(type, k) + 6; /* rows not packed back to back */
                uint8_t *rows = malloc(rb * SLM_FGEMM_GROUP);
                float *panel = aligned_alloc(64, ((size_t)k * SLM_FGEMM_GROUP * sizeof(float) + 63) & ~(size_t)63);
                float *ref = malloc(sizeof(float) * (size_t)k);
                fill_weights(type, rows, rb * SLM_FGEMM_GROUP / slm_row_bytes(type, 1));
                for (int64_t i = 0; i < k * SLM_FGEMM_GROUP; i++) panel[i] = NAN;
                table->fgemm.pack(type, k, rows, rb, nr, panel);
                int bad = 0;
                for (int i = 0; i < SLM_FGEMM_GROUP; i++) {
                    slm_dequantize_row(type, rows + (size_t)i * rb, ref, k);
                    for (int64_t c = 0; c < k; c++) {
                        float want = i < nr ? ref[c] : 0.0f;
                        bad += memcmp(&panel[c * SLM_FGEMM_GROUP + i], &want, sizeof want) != 0;
                    }
                }
                CHECKF(bad == 0, "%s pack %s k=%lld nr=%d: %d panel values differ", isa, slm_type_name(type),
                       (long long)k, nr, bad);
                free(rows);
                free(panel);
                free(ref);
            }
}

/* The tile on its own: outputs in a wider y with sentinels around them. */
static void check_tile(const slm_kernel_table *table, const char *isa) {
    static const int64_t kbs[] = {1, 3, 16, 37, 128};
    static const int nrs[] = {32, 31, 17, 16, 15, 1};
    static const int nts[] = {1, 2, 5, 6, 7, 11, 12, 13, 25};
    const int64_t k_stride = 131; /* x rows and groups are longer than the block multiplied */
    const size_t group_stride = (size_t)k_stride * SLM_FGEMM_GROUP;
    const size_t y_stride = 40;
    float *panel = aligned_alloc(64, 2 * group_stride * sizeof(float));
    float *x = malloc(sizeof(float) * (size_t)k_stride * 25);
    float *y = malloc(sizeof(float) * y_stride * 25);
    double *start = malloc(sizeof(double) * y_stride * 25);
    for (size_t i = 0; i < 2 * group_stride; i++) panel[i] = rng_uniform(-1.0f, 1.0f);
    for (int64_t i = 0; i < k_stride * 25; i++) x[i] = rng_uniform(-3.0f, 3.0f);
    const float sentinel = -12345.0f;
    for (size_t a = 0; a < sizeof kbs / sizeof kbs[0]; a++)
        for (size_t b = 0; b < sizeof nrs / sizeof nrs[0]; b++)
            for (size_t c = 0; c < sizeof nts / sizeof nts[0]; c++)
                for (int accumulate = 0; accumulate < 2; accumulate++) {
                    const int64_t kb = kbs[a];
                    const int nr = nrs[b], nt = nts[c];
                    for (size_t i = 0; i < y_stride * 25; i++) {
                        bool owned = (int)(i % y_stride) < nr && (int)(i / y_stride) < nt;
                        y[i] = owned && accumulate ? rng_uniform(-5.0f, 5.0f) : sentinel;
                        start[i] = y[i];
                    }
                    table->fgemm.tile(kb, panel, group_stride, nr, x, (size_t)k_stride, nt, y, y_stride,
                                      accumulate != 0);
                    int bad = 0, clobbered = 0;
                    double worst = 0;
                    for (int t = 0; t < 25; t++)
                        for (size_t r = 0; r < y_stride; r++) {
                            const float got = y[(size_t)t * y_stride + r];
                            if ((int)r >= nr || t >= nt) {
                                clobbered += got != sentinel;
                                continue;
                            }
                            double ref = accumulate ? start[(size_t)t * y_stride + r] : 0.0, mag = fabs(ref);
                            for (int64_t kk = 0; kk < kb; kk++) {
                                double p = (double)panel[(r / SLM_FGEMM_GROUP) * group_stride +
                                                         (size_t)kk * SLM_FGEMM_GROUP + r % SLM_FGEMM_GROUP] *
                                           x[(size_t)t * (size_t)k_stride + (size_t)kk];
                                ref += p;
                                mag += fabs(p);
                            }
                            double err = fabs((double)got - ref);
                            if (err > worst) worst = err;
                            bad += !(err <= rounding_bound(kb, mag));
                        }
                    CHECKF(bad == 0 && clobbered == 0,
                           "%s tile kb=%lld nr=%d nt=%d accumulate=%d: %d outputs beyond f32 rounding (worst %g), "
                           "%d values outside the tile written",
                           isa, (long long)kb, nr, nt, accumulate, bad, worst, clobbered);
                }
    free(panel);
    free(x);
    free(y);
    free(start);
}

typedef struct shape {
    int64_t m, k;
    int n_tok;
} shape;

/* Through slm_matmul_with: chunks of rows per thread, column blocks of 128, token blocks of 256. */
static void check_matmul(const slm_kernel_table *table, const char *isa, uint32_t type, shape s, slm_pool *pool1,
                         slm_pool *pool2) {
    const int64_t m = s.m, k = s.k;
    const int n_tok = s.n_tok;
    const size_t rb = slm_row_bytes(type, k);
    uint8_t *data = malloc(rb * (size_t)m);
    float *wf = malloc(sizeof(float) * (size_t)(m * k));
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    float *y1 = malloc(sizeof(float) * (size_t)(m * n_tok)), *y2 = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *y_exact = malloc(sizeof(float) * (size_t)(m * n_tok));
    fill_weights(type, data, (size_t)(m * k));
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = rng_uniform(-2.0f, 2.0f);
    slm_weight w = {.type = type, .k = k, .m = m, .data = data, .row_bytes = rb};
    for (int64_t r = 0; r < m; r++) slm_dequantize_row(type, data + (size_t)r * rb, wf + r * k, k);
    slm_matmul_with(pool1, table, &w, x, n_tok, y1);
    slm_matmul_with(pool2, table, &w, x, n_tok, y2);
    slm_matmul(pool2, &w, x, n_tok, y_exact, true);
    int bad = 0, bad_exact = 0, bad_threads = 0;
    double worst = 0;
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < m; r++) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)wf[r * k + i] * x[(int64_t)t * k + i];
                ref += p;
                mag += fabs(p);
            }
            const size_t o = (size_t)t * (size_t)m + (size_t)r;
            double err = fabs((double)y1[o] - ref);
            if (err > worst) worst = err;
            bad += !(err <= rounding_bound(k, mag));
            bad_exact += !(fabs((double)y1[o] - y_exact[o]) <= 2 * rounding_bound(k, mag));
            bad_threads += memcmp(&y1[o], &y2[o], sizeof(float)) != 0;
        }
    /* within the GEMM (batches of 12 tokens or more) a token's result does not depend on its
     * batch: the last 12 tokens alone give the same bits as within the whole batch */
    enum { TAIL = 12 };
    if (n_tok > TAIL) {
        float *y_tail = malloc(sizeof(float) * (size_t)(m * TAIL));
        slm_matmul_with(pool2, table, &w, x + (size_t)(n_tok - TAIL) * (size_t)k, TAIL, y_tail);
        CHECKF(memcmp(y_tail, y1 + (size_t)(n_tok - TAIL) * (size_t)m, sizeof(float) * (size_t)(m * TAIL)) == 0,
               "%s matmul %s m=%lld k=%lld: the last %d of %d tokens multiplied alone differ from within the batch",
               isa, slm_type_name(type), (long long)m, (long long)k, TAIL, n_tok);
        free(y_tail);
    }
    CHECKF(bad == 0 && bad_exact == 0 && bad_threads == 0,
           "%s matmul %s m=%lld k=%lld n_tok=%d: %d outputs beyond f32 rounding of the double reference (worst %g), "
           "%d off the exact path, %d differ between 1 and 2 threads",
           isa, slm_type_name(type), (long long)m, (long long)k, n_tok, bad, worst, bad_exact, bad_threads);
    free(data);
    free(wf);
    free(x);
    free(y1);
    free(y2);
    free(y_exact);
}

/* Two float weights fused in one slm_matmul_multi call give what each gives alone. */
static void check_multi(const slm_kernel_table *table, const char *isa, slm_pool *pool) {
    const int64_t k = 77;
    const int n_tok = 15;
    const int64_t ms[2] = {50, 19};
    slm_weight w[2];
    uint8_t *data[2];
    float *ys[2], *alone[2];
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = rng_uniform(-1.0f, 1.0f);
    for (int i = 0; i < 2; i++) {
        const uint32_t type = i ? SLM_TYPE_BF16 : SLM_TYPE_F16;
        const size_t rb = slm_row_bytes(type, k);
        data[i] = malloc(rb * (size_t)ms[i]);
        fill_weights(type, data[i], (size_t)(ms[i] * k));
        w[i] = (slm_weight){.type = type, .k = k, .m = ms[i], .data = data[i], .row_bytes = rb};
        ys[i] = malloc(sizeof(float) * (size_t)(ms[i] * n_tok));
        alone[i] = malloc(sizeof(float) * (size_t)(ms[i] * n_tok));
        slm_matmul_with(pool, table, &w[i], x, n_tok, alone[i]);
    }
    const slm_weight *wp[2] = {&w[0], &w[1]};
    slm_matmul_multi_with(pool, table, wp, 2, x, n_tok, ys);
    for (int i = 0; i < 2; i++) {
        CHECKF(memcmp(ys[i], alone[i], sizeof(float) * (size_t)(ms[i] * n_tok)) == 0,
               "%s: weight %d fused in slm_matmul_multi differs from alone", isa, i);
        free(data[i]);
        free(ys[i]);
        free(alone[i]);
    }
    free(x);
}

int main(void) {
    slm_pool *pool1 = slm_pool_new(1), *pool2 = slm_pool_new(2);
    CHECK(pool1 && pool2);
    if (!pool1 || !pool2) return test_report("test_kernels_f16_gemm");
    static const shape shapes[] = {
        {37, 45, 13},  /* nothing a multiple of a tile */
        {33, 16, 12},  /* the fewest tokens the GEMM takes (matmul.c); one row past two groups */
        {33, 16, 2},   /* below that: the per-token dots */
        {64, 300, 29}, /* three column blocks, the last partial */
        {5, 3, 5},     /* a partial group only */
        {96, 130, 300} /* two token blocks */
    };
    int n_isa = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *table = slm_kernels_for_isa((slm_isa)isa);
        if (!table) continue;
        const char *name = slm_isa_level_name((slm_isa)isa);
        CHECKF(table->fgemm.pack && table->fgemm.tile, "%s has no float GEMM", name);
        if (!table->fgemm.pack || !table->fgemm.tile) continue;
        n_isa++;
        check_pack(table, name);
        check_tile(table, name);
        for (int ti = 0; ti < N_FLOAT_TYPES; ti++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
                check_matmul(table, name, float_types[ti], shapes[si], pool1, pool2);
        check_multi(table, name, pool2);
    }
    fprintf(stderr, "test_kernels_f16_gemm: %d ISA paths checked (up to %s)\n", n_isa,
            slm_isa_level_name(slm_isa_supported()));
    slm_pool_free(pool1);
    slm_pool_free(pool2);
    return test_report("test_kernels_f16_gemm");
}
