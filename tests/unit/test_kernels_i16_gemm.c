/* The int16 GEMM of encoders' F16 weights (kernels_impl.h, slm_i16_gemm) against a scalar model of
 * the same arithmetic:
 *  - quantize: per block of 32, scale = max|x| / 8191, q = rint(x * 8191 / max|x|), the same bits;
 *    a zero or negligible block gives zeros, a block with a NaN or infinity a NaN scale;
 *  - pack: the same row scales and integer pairs in the group layout, zero rows past nr, a NaN
 *    scale for a row holding an infinity;
 *  - tile: the same bits as the scalar model (exact integer block sums, one f32 fma per block,
 *    then the row scale), only the nr x nt outputs written, added to when asked;
 *  - slm_matmul over such a weight (chunks, column blocks of 256, token blocks of 264, fused
 *    weights): within the bound the two scalings imply of the f64 product of the F16 weights, the
 *    same bits with 1 and 2 threads, and for a token whatever batch it is in.
 * Skipped (77) where the CPU has no AVX-512 path. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

/* ---- the scalar model ---- */

static void ref_scale(float amax, bool finite, float *scale, float *inv) {
    if (!finite) {
        *scale = NAN;
        *inv = 0.0f;
    } else if (amax >= 0x1p-100f) {
        *scale = amax / 8191.0f;
        *inv = 8191.0f / amax;
    } else {
        *scale = 0.0f;
        *inv = 0.0f;
    }
}

static int16_t ref_q(float x, float inv) {
    const float p = x * inv;
    long q = lrintf(p);
    return (int16_t)(q > 8191 ? 8191 : q < -8191 ? -8191 : q);
}

static void ref_quantize(int64_t k, const float *x, int16_t *q, float *d) {
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        bool finite = true;
        for (int i = 0; i < 32; i++) {
            finite &= isfinite(x[b * 32 + i]) != 0;
            if (isfinite(x[b * 32 + i]) && fabsf(x[b * 32 + i]) > amax) amax = fabsf(x[b * 32 + i]);
        }
        float inv;
        ref_scale(amax, finite, &d[b], &inv);
        for (int i = 0; i < 32; i++) q[b * 32 + i] = finite ? ref_q(x[b * 32 + i], inv) : 0;
    }
}

/* Row r of a packed group: scale and the k integers. */
static void ref_pack_row(int64_t k, const uint16_t *row, int16_t *q, float *scale) {
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < k; i++) {
        const float v = slm_fp16_to_fp32(row[i]);
        finite &= isfinite(v) != 0;
        if (isfinite(v) && fabsf(v) > amax) amax = fabsf(v);
    }
    float inv;
    ref_scale(amax, finite, scale, &inv);
    for (int64_t i = 0; i < k; i++) q[i] = finite ? ref_q(slm_fp16_to_fp32(row[i]), inv) : 0;
}

static int16_t group_q(const uint8_t *group, int r, int64_t kk) {
    int16_t v;
    memcpy(&v, group + 64 + ((size_t)(kk / 2) * 16 + (size_t)r) * 4 + (size_t)(kk % 2) * 2, 2);
    return v;
}
static float group_scale(const uint8_t *group, int r) {
    float s;
    memcpy(&s, group + 4 * r, 4);
    return s;
}

/* The tile's arithmetic for one (row, token): exact block sums, one fma per block, the row scale. */
static float ref_dot(const uint8_t *group, int lane, int64_t k, int64_t k0, int64_t kb, const uint8_t *act, float y,
                     bool accumulate) {
    const int16_t *q = (const int16_t *)(const void *)act;
    const float *d = (const float *)(const void *)(act + (size_t)k * 2);
    float f = 0.0f;
    for (int64_t b = k0 / 32; b < (k0 + kb) / 32; b++) {
        int64_t sum = 0;
        for (int64_t i = b * 32; i < b * 32 + 32; i++) sum += (int64_t)group_q(group, lane, i) * q[i];
        f = fmaf((float)(int32_t)sum, d[b], f);
    }
    const float res = f * group_scale(group, lane);
    return accumulate ? y + res : res;
}

static void fill_f16(uint16_t *dst, size_t n, float spread) {
    for (size_t i = 0; i < n; i++) dst[i] = slm_fp32_to_fp16(rng_uniform(-1.0f, 1.0f) * (i % 7 == 0 ? spread : 1.0f));
}

static bool same_bits(float a, float b) {
    return memcmp(&a, &b, 4) == 0;
}

/* ---- the checks ---- */

static void check_quantize(const slm_i16_gemm *g) {
    static const int64_t ks[] = {32, 64, 96, 768};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int64_t k = ks[ki];
        float *x = malloc(sizeof(float) * (size_t)k);
        uint8_t *row = aligned_alloc(64, slm_act_row_bytes(SLM_ACT_I16, k));
        int16_t *q = malloc(sizeof(int16_t) * (size_t)k);
        float *d = malloc(sizeof(float) * (size_t)(k / 32));
        for (int64_t i = 0; i < k; i++) x[i] = rng_uniform(-3.0f, 3.0f) * (i % 11 == 0 ? 40.0f : 1.0f);
        if (k >= 64)
            for (int i = 32; i < 64; i++) x[i] = 0.0f; /* a zero block */
        if (k >= 96) {
            x[64] = 1e30f; /* one huge value: the rest of its block rounds to small integers */
            x[70] = -0.5f * 1e30f;
        }
        if (k >= 768) {
            for (int i = 96; i < 128; i++) x[i] = rng_uniform(-1.0f, 1.0f) * 1e-35f; /* negligible: zeros */
            x[200] = NAN;      /* block 6: a NaN scale */
            x[260] = INFINITY; /* block 8 */
            x[300] = 8191.0f * 3.0f; /* exact multiples */
            x[301] = -8191.0f * 3.0f;
        }
        g->quantize(k, x, row);
        ref_quantize(k, x, q, d);
        int bad = 0;
        for (int64_t i = 0; i < k; i++) bad += memcmp(row + 2 * i, &q[i], 2) != 0;
        for (int64_t b = 0; b < k / 32; b++) {
            float got;
            memcpy(&got, row + (size_t)k * 2 + (size_t)b * 4, 4);
            bad += !(same_bits(got, d[b]) || (isnan(got) && isnan(d[b])));
        }
        CHECKF(bad == 0, "quantize k=%lld: %d values differ from the scalar model", (long long)k, bad);
        if (k >= 768) {
            float d6, d8, d3;
            memcpy(&d6, row + (size_t)k * 2 + 6 * 4, 4);
            memcpy(&d8, row + (size_t)k * 2 + 8 * 4, 4);
            memcpy(&d3, row + (size_t)k * 2 + 3 * 4, 4);
            CHECKF(isnan(d6) && isnan(d8), "quantize: a block with a NaN or an infinity must get a NaN scale");
            CHECKF(d3 == 0.0f, "quantize: a block of 1e-35 values counts as zero (scale %g)", d3);
            int16_t q300;
            memcpy(&q300, row + 600, 2);
            CHECKF(q300 == 8191, "quantize: the block's largest value maps to 8191, got %d", q300);
        }
        free(x);
        free(row);
        free(q);
        free(d);
    }
}

static void check_pack(const slm_i16_gemm *g) {
    static const int64_t ks[] = {32, 64, 160, 768};
    static const int nrs[] = {16, 15, 5, 1};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ni = 0; ni < sizeof nrs / sizeof nrs[0]; ni++) {
            const int64_t k = ks[ki];
            const int nr = nrs[ni];
            const size_t rb = (size_t)k * 2 + 6; /* rows not back to back */
            uint8_t *rows = calloc(16, rb);
            uint8_t *group = aligned_alloc(64, slm_i16_group_bytes(k));
            int16_t *q = malloc(sizeof(int16_t) * (size_t)k);
            for (int r = 0; r < 16; r++) {
                uint16_t *row = malloc(sizeof(uint16_t) * (size_t)k);
                fill_f16(row, (size_t)k, r % 3 == 0 ? 30.0f : 1.0f);
                if (r == 2) row[k / 2] = 0x7c00; /* +infinity: a NaN scale */
                if (r == 3) memset(row, 0, sizeof(uint16_t) * (size_t)k);
                memcpy(rows + (size_t)r * rb, row, (size_t)k * 2);
                free(row);
            }
            memset(group, 0xa5, slm_i16_group_bytes(k));
            g->pack(k, rows, rb, nr, group);
            int bad = 0;
            for (int r = 0; r < 16; r++) {
                float scale = 0.0f;
                if (r < nr) {
                    uint16_t *row = malloc(sizeof(uint16_t) * (size_t)k);
                    memcpy(row, rows + (size_t)r * rb, (size_t)k * 2);
                    ref_pack_row(k, row, q, &scale);
                    free(row);
                } else {
                    memset(q, 0, sizeof(int16_t) * (size_t)k);
                }
                const float got = group_scale(group, r);
                bad += !(same_bits(got, scale) || (isnan(got) && isnan(scale)));
                for (int64_t i = 0; i < k; i++) bad += group_q(group, r, i) != q[i];
            }
            CHECKF(bad == 0, "pack k=%lld nr=%d: %d values differ from the scalar model", (long long)k, nr, bad);
            if (nr > 3) {
                CHECKF(isnan(group_scale(group, 2)), "pack: a row with an infinity must get a NaN scale");
                CHECKF(group_scale(group, 3) == 0.0f, "pack: an all-zero row has scale 0");
            }
            free(rows);
            free(group);
            free(q);
        }
}

/* Groups for m rows (m a multiple of 16) of k F16 weights, packed with g. */
static uint8_t *pack_matrix(const slm_i16_gemm *g, const uint16_t *w, int64_t m, int64_t k) {
    const size_t gb = slm_i16_group_bytes(k);
    uint8_t *p = aligned_alloc(64, gb * (size_t)(m / 16));
    for (int64_t grp = 0; grp < m / 16; grp++)
        g->pack(k, (const uint8_t *)(w + (size_t)grp * 16 * (size_t)k), (size_t)k * 2, 16, p + (size_t)grp * gb);
    return p;
}

static void check_tile(const slm_i16_gemm *g) {
    const int64_t k = 320, m = 32;
    const size_t gb = slm_i16_group_bytes(k), as = slm_act_row_bytes(SLM_ACT_I16, k);
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(m * k));
    fill_f16(w, (size_t)(m * k), 20.0f);
    uint8_t *panel = pack_matrix(g, w, m, k);
    enum { NT = 14, YS = 40 }; /* y rows wider than the tile: the extra columns must stay untouched */
    uint8_t *act = aligned_alloc(64, as * NT);
    float *x = malloc(sizeof(float) * (size_t)k);
    for (int t = 0; t < NT; t++) {
        for (int64_t i = 0; i < k; i++) x[i] = rng_uniform(-2.0f, 2.0f) * (i % 13 == 0 ? 25.0f : 1.0f);
        g->quantize(k, x, act + (size_t)t * as);
    }
    static const int nrs[] = {32, 31, 17, 16, 9, 1};
    static const int64_t k0s[] = {0, 0, 64, 288}, kbs[] = {320, 32, 256, 32};
    float y[NT * YS], want[NT * YS];
    int bad = 0, bad_outside = 0;
    for (size_t ni = 0; ni < sizeof nrs / sizeof nrs[0]; ni++)
        for (int nt = 1; nt <= NT; nt++)
            for (size_t ki = 0; ki < sizeof k0s / sizeof k0s[0]; ki++)
                for (int acc = 0; acc < 2; acc++) {
                    for (int i = 0; i < NT * YS; i++) y[i] = want[i] = (float)(i % 17) - 8.0f;
                    g->tile(k, k0s[ki], kbs[ki], panel, gb, nrs[ni], act, as, nt, y, YS, acc);
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < nrs[ni]; r++)
                            want[t * YS + r] = ref_dot(panel + (size_t)(r / 16) * gb, r % 16, k, k0s[ki], kbs[ki],
                                                       act + (size_t)t * as, want[t * YS + r], acc);
                    for (int i = 0; i < NT * YS; i++) {
                        const bool inside = i % YS < nrs[ni] && i / YS < nt;
                        if (!same_bits(y[i], want[i])) {
                            if (inside) bad++;
                            else bad_outside++;
                        }
                    }
                }
    CHECKF(bad == 0, "tile: %d outputs differ from the scalar model's bits", bad);
    CHECKF(bad_outside == 0, "tile: %d values outside the nr x nt outputs were written", bad_outside);
    free(w);
    free(panel);
    free(act);
    free(x);
}

/* The f64 product of the F16 weights and the bound of what the two scalings (and f32 sums) may
 * move it: per term |x| * (weight step / 2) + |w| * (activation step / 2) + their product. */
static void reference_row(const uint16_t *w, int64_t k, const float *x, double *value, double *bound) {
    double wmax = 0, sum = 0, err = 0, mag = 0;
    for (int64_t i = 0; i < k; i++) wmax = fmax(wmax, fabs(slm_fp16_to_fp32(w[i])));
    for (int64_t b = 0; b < k / 32; b++) {
        double xmax = 0;
        for (int i = 0; i < 32; i++) xmax = fmax(xmax, fabs(x[b * 32 + i]));
        for (int64_t i = b * 32; i < b * 32 + 32; i++) {
            const double wi = slm_fp16_to_fp32(w[i]), xi = x[i];
            sum += wi * xi;
            mag += fabs(wi * xi);
            err += fabs(xi) * wmax / 16382 + fabs(wi) * xmax / 16382 + wmax * xmax / (16382.0 * 16382.0);
        }
    }
    *value = sum;
    *bound = err * 1.01 + (double)(k + 8) * 0x1p-24 * (mag + err) + 1e-30;
}

static void check_matmul(const slm_kernel_table *table, slm_pool *pool1, slm_pool *pool2, int64_t m, int64_t k,
                         int n_tok) {
    uint16_t *wd = malloc(sizeof(uint16_t) * (size_t)(m * k));
    fill_f16(wd, (size_t)(m * k), 16.0f);
    uint8_t *packed = pack_matrix(&table->i16, wd, m, k);
    slm_weight w = {.type = SLM_TYPE_F16, .k = k, .m = m, .data = wd, .row_bytes = (size_t)k * 2, .packed = packed};
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = rng_uniform(-1.5f, 1.5f) * (i % 9 == 0 ? 6.0f : 1.0f);
    float *y1 = malloc(sizeof(float) * (size_t)(m * n_tok)), *y2 = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *one = malloc(sizeof(float) * (size_t)m);
    slm_matmul_with(pool1, table, &w, x, n_tok, y1);
    slm_matmul_with(pool2, table, &w, x, n_tok, y2);
    int bad = 0, bad_threads = 0, bad_alone = 0;
    double worst = 0;
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < m; r++) {
            double value, bound;
            reference_row(wd + (size_t)r * (size_t)k, k, x + (size_t)t * (size_t)k, &value, &bound);
            const double e = fabs(y1[(size_t)t * (size_t)m + (size_t)r] - value);
            if (!(e <= bound)) bad++;
            if (e / bound > worst) worst = e / bound;
            bad_threads += !same_bits(y1[(size_t)t * (size_t)m + (size_t)r], y2[(size_t)t * (size_t)m + (size_t)r]);
        }
    /* the first, a middle and the last token, each alone */
    const int ts[3] = {0, n_tok / 2, n_tok - 1};
    for (int i = 0; i < 3; i++) {
        slm_matmul_with(pool2, table, &w, x + (size_t)ts[i] * (size_t)k, 1, one);
        bad_alone += memcmp(one, y1 + (size_t)ts[i] * (size_t)m, sizeof(float) * (size_t)m) != 0;
    }
    fprintf(stderr, "i16 matmul m=%lld k=%lld n_tok=%d: worst error %.2f of its bound\n", (long long)m, (long long)k,
            n_tok, worst);
    CHECKF(bad == 0, "matmul m=%lld k=%lld n_tok=%d: %d outputs beyond the scaling bound", (long long)m, (long long)k,
           n_tok, bad);
    CHECKF(bad_threads == 0, "matmul m=%lld k=%lld n_tok=%d: 1 and 2 threads differ in %d outputs", (long long)m,
           (long long)k, n_tok, bad_threads);
    CHECKF(bad_alone == 0, "matmul m=%lld k=%lld n_tok=%d: a token alone differs from within the batch", (long long)m,
           (long long)k, n_tok);
    if (n_tok >= 2) { /* fused with a second weight of the same k: the same bits as alone */
        uint16_t *wd2 = malloc(sizeof(uint16_t) * (size_t)(48 * k));
        fill_f16(wd2, (size_t)(48 * k), 1.0f);
        uint8_t *packed2 = pack_matrix(&table->i16, wd2, 48, k);
        slm_weight w2 = {.type = SLM_TYPE_F16, .k = k, .m = 48, .data = wd2, .row_bytes = (size_t)k * 2, .packed = packed2};
        float *alone2 = malloc(sizeof(float) * (size_t)(48 * n_tok)), *f1 = malloc(sizeof(float) * (size_t)(m * n_tok)),
              *f2 = malloc(sizeof(float) * (size_t)(48 * n_tok));
        slm_matmul_with(pool2, table, &w2, x, n_tok, alone2);
        const slm_weight *ws[2] = {&w, &w2};
        float *ys[2] = {f1, f2};
        slm_matmul_multi_with(pool2, table, ws, 2, x, n_tok, ys);
        CHECKF(memcmp(f1, y1, sizeof(float) * (size_t)(m * n_tok)) == 0 &&
                   memcmp(f2, alone2, sizeof(float) * (size_t)(48 * n_tok)) == 0,
               "matmul_multi m=%lld k=%lld n_tok=%d: fused results differ from one weight at a time", (long long)m,
               (long long)k, n_tok);
        free(wd2);
        free(packed2);
        free(alone2);
        free(f1);
        free(f2);
    }
    free(wd);
    free(packed);
    free(x);
    free(y1);
    free(y2);
    free(one);
}

int main(void) {
    const slm_kernel_table *table = slm_kernels_for_isa(SLM_ISA_AVX512);
    if (!table) {
        fprintf(stderr, "test_kernels_i16_gemm: this CPU has no AVX-512 path; skipped\n");
        return TEST_SKIP_CODE;
    }
    CHECKF(table->i16.pack && table->i16.quantize && table->i16.tile, "the AVX-512 table has no int16 GEMM");
    if (!table->i16.tile) return test_report("test_kernels_i16_gemm");
    /* which weights get the copy */
    slm_weight w = {.type = SLM_TYPE_F16, .k = 768, .m = 2304, .row_bytes = 1536};
    CHECK(slm_weight_i16_bytes_for(table, &w) == slm_i16_group_bytes(768) * 144);
    w.k = 776; /* not a multiple of 32 */
    CHECK(slm_weight_i16_bytes_for(table, &w) == 0);
    w.k = 768;
    w.m = 2300; /* not a multiple of 16 */
    CHECK(slm_weight_i16_bytes_for(table, &w) == 0);
    w.m = 2304;
    w.type = SLM_TYPE_F32;
    CHECK(slm_weight_i16_bytes_for(table, &w) == 0);
    const slm_kernel_table *avx2 = slm_kernels_for_isa(SLM_ISA_AVX2);
    w.type = SLM_TYPE_F16;
    CHECK(!avx2 || slm_weight_i16_bytes_for(avx2, &w) == 0);

    check_quantize(&table->i16);
    check_pack(&table->i16);
    check_tile(&table->i16);
    slm_pool *pool1 = slm_pool_new(1), *pool2 = slm_pool_new(2);
    CHECK(pool1 && pool2);
    if (pool1 && pool2) {
        check_matmul(table, pool1, pool2, 80, 288, 1);   /* 80 rows: 2 tiles of 32 and one of 16 */
        check_matmul(table, pool1, pool2, 80, 288, 7);   /* 288 columns: blocks of 256 and 32 */
        check_matmul(table, pool1, pool2, 176, 96, 13);
        check_matmul(table, pool1, pool2, 64, 544, 300); /* token blocks of 264 and 36 */
    }
    slm_pool_free(pool1);
    slm_pool_free(pool2);
    return test_report("test_kernels_i16_gemm");
}
