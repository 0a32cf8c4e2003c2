/* Matrix kernels: every weight type on every ISA path this CPU runs, against the exact f32
 * reference (scalar dequantize + f32 dot), with odd row counts and 1 or many tokens.
 *  - the fast path may differ from the exact one only by what 8-bit activation rounding explains:
 *    |err| <= sum over blocks of (sum |w|) * amax(block of x) / 254, plus float slack;
 *  - each SIMD path must equal the scalar version of the same quantized math to float rounding;
 *  - results do not depend on the number of threads. */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels_impl.h"
#include "kernels/unpack.h"
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

static const uint32_t all_types[] = {SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1,
                                     SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K,
                                     SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

static slm_half rand_half(float lo, float hi) {
    return slm_fp32_to_fp16(rng_uniform(lo, hi));
}

/* Random bytes are valid quant blocks once their scale fields hold sane half floats. */
static void fill_weights(uint32_t type, uint8_t *data, int64_t k, int64_t m) {
    size_t row_bytes = slm_row_bytes(type, k);
    size_t total = row_bytes * (size_t)m;
    if (type == SLM_TYPE_F32) {
        for (size_t i = 0; i < total / 4; i++) {
            float f = rng_uniform(-1.0f, 1.0f);
            memcpy(data + 4 * i, &f, 4);
        }
        return;
    }
    if (type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
        for (size_t i = 0; i < total / 2; i++) {
            float f = rng_uniform(-1.0f, 1.0f);
            uint16_t h = type == SLM_TYPE_F16 ? slm_fp32_to_fp16(f) : slm_fp32_to_bf16(f);
            memcpy(data + 2 * i, &h, 2);
        }
        return;
    }
    for (size_t i = 0; i < total; i++) data[i] = (uint8_t)rng_u32();
    const slm_type_info *ti = slm_type_info_get(type);
    size_t n_blocks = total / (size_t)ti->type_size;
    for (size_t b = 0; b < n_blocks; b++) {
        void *p = data + b * (size_t)ti->type_size;
        switch (type) {
        case SLM_TYPE_Q4_0: ((block_q4_0 *)p)->d = rand_half(-0.1f, 0.1f); break;
        case SLM_TYPE_Q5_0: ((block_q5_0 *)p)->d = rand_half(-0.1f, 0.1f); break;
        case SLM_TYPE_Q8_0: ((block_q8_0 *)p)->d = rand_half(-0.01f, 0.01f); break;
        case SLM_TYPE_IQ4_NL: ((block_iq4_nl *)p)->d = rand_half(-0.01f, 0.01f); break;
        case SLM_TYPE_Q4_1:
            ((block_q4_1 *)p)->d = rand_half(0.0f, 0.1f);
            ((block_q4_1 *)p)->m = rand_half(-1.0f, 0.0f);
            break;
        case SLM_TYPE_Q5_1:
            ((block_q5_1 *)p)->d = rand_half(0.0f, 0.05f);
            ((block_q5_1 *)p)->m = rand_half(-1.0f, 0.0f);
            break;
        case SLM_TYPE_Q2_K:
            ((block_q2_K *)p)->d = rand_half(0.0f, 0.05f);
            ((block_q2_K *)p)->dmin = rand_half(0.0f, 0.05f);
            break;
        case SLM_TYPE_Q3_K: ((block_q3_K *)p)->d = rand_half(-0.01f, 0.01f); break;
        case SLM_TYPE_Q4_K:
            ((block_q4_K *)p)->d = rand_half(0.0f, 0.01f);
            ((block_q4_K *)p)->dmin = rand_half(0.0f, 0.01f);
            break;
        case SLM_TYPE_Q5_K:
            ((block_q5_K *)p)->d = rand_half(0.0f, 0.005f);
            ((block_q5_K *)p)->dmin = rand_half(0.0f, 0.01f);
            break;
        case SLM_TYPE_Q6_K: ((block_q6_K *)p)->d = rand_half(-0.002f, 0.002f); break;
        default: break;
        }
    }
}

/* Dequantization through this folder's unpackers, to check them against the tensor layer. */
static void unpack_row(uint32_t type, const uint8_t *row, int64_t k, float *out) {
    if (type == SLM_TYPE_Q2_K || type == SLM_TYPE_Q3_K || type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K ||
        type == SLM_TYPE_Q6_K) {
        for (int64_t b = 0; b < k / SLM_QK_K; b++) {
            slm_kblock u;
            const size_t bs = (size_t)slm_type_info_get(type)->type_size;
            const void *p = row + (size_t)b * bs;
            switch (type) {
            case SLM_TYPE_Q2_K: slm_unpack_q2_K(p, &u); break;
            case SLM_TYPE_Q3_K: slm_unpack_q3_K(p, &u); break;
            case SLM_TYPE_Q4_K: slm_unpack_q4_K(p, &u); break;
            case SLM_TYPE_Q5_K: slm_unpack_q5_K(p, &u); break;
            default: slm_unpack_q6_K(p, &u); break;
            }
            for (int i = 0; i < SLM_QK_K; i++)
                out[b * SLM_QK_K + i] = u.d * (float)u.scale[i / 16] * (float)u.q[i] - u.dmin * (float)u.min[i / 16];
        }
        return;
    }
    for (int64_t b = 0; b < k / SLM_QK; b++) {
        int8_t q[SLM_QK];
        float d, m;
        const size_t bs = (size_t)slm_type_info_get(type)->type_size;
        const void *p = row + (size_t)b * bs;
        switch (type) {
        case SLM_TYPE_Q4_0: slm_unpack_q4_0(p, q, &d, &m); break;
        case SLM_TYPE_Q4_1: slm_unpack_q4_1(p, q, &d, &m); break;
        case SLM_TYPE_Q5_0: slm_unpack_q5_0(p, q, &d, &m); break;
        case SLM_TYPE_Q5_1: slm_unpack_q5_1(p, q, &d, &m); break;
        case SLM_TYPE_Q8_0: slm_unpack_q8_0(p, q, &d, &m); break;
        default: slm_unpack_iq4_nl(p, q, &d, &m); break;
        }
        for (int i = 0; i < SLM_QK; i++) out[b * SLM_QK + i] = d * (float)q[i] + m;
    }
}

static bool is_float_type(uint32_t type) {
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16;
}

static void check_unpack_matches_reference(uint32_t type) {
    if (is_float_type(type)) return;
    const int64_t k = 512;
    size_t rb = slm_row_bytes(type, k);
    uint8_t *row = malloc(rb);
    float *ref = malloc(sizeof(float) * k), *got = malloc(sizeof(float) * k);
    fill_weights(type, row, k, 1);
    for (int64_t i = 0; i < k; i++) ref[i] = NAN;
    slm_dequantize_row(type, row, ref, k);
    unpack_row(type, row, k, got);
    int bad = 0;
    for (int64_t i = 0; i < k; i++) {
        float tol = 1e-6f * fabsf(ref[i]) + 1e-7f;
        if (!(fabsf(ref[i] - got[i]) <= tol)) bad++;
    }
    CHECKF(bad == 0, "%s: %d of %d unpacked values differ from slm_dequantize_row (e.g. ref %g got %g)",
           slm_type_name(type), bad, (int)k, (double)ref[0], (double)got[0]);
    free(row);
    free(ref);
    free(got);
}

typedef struct matmul_case {
    uint32_t type;
    int64_t k, m;
    int n_tok;
} matmul_case;

/* The repacked layout of an ISA that has one: row lookups give the source's floats, and products
 * meet the same bounds as the row-major kernels, with any number of tokens and threads. */
static void check_packed(const slm_kernel_table *table, const slm_weight *w, const float *x, int n_tok,
                         const float *y_exact, const float *bound, const float *mag,
                         slm_pool *pool1, slm_pool *pool2) {
    size_t bytes = slm_weight_packed_bytes_for(table, w);
    if (!bytes) return;
    const int64_t k = w->k, m = w->m;
    slm_weight wp = *w;
    uint8_t *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    float *y = malloc(sizeof(float) * (size_t)(m * n_tok)), *y2 = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *row = malloc(sizeof(float) * (size_t)k), *ref = malloc(sizeof(float) * (size_t)k);
    slm_weight_pack(pool2, &wp, buf, NULL, NULL);
    CHECK(wp.packed == buf);
    int bad_rows = 0;
    for (int64_t r = 0; r < m; r++) {
        slm_weight_row_f32(&wp, r, row);
        slm_weight_row_f32(w, r, ref);
        bad_rows += memcmp(row, ref, sizeof(float) * (size_t)k) != 0;
    }
    CHECKF(bad_rows == 0, "packed %s k=%lld m=%lld: %d rows read back differently", slm_type_name(w->type), (long long)k,
           (long long)m, bad_rows);
    /* The packed kernels take in-order planar activations (32-element blocks, also for the
     * k-quants): their reference is the double-precision product of the dequantized weights with
     * exactly those quantized activations. */
    float *y_ref = malloc(sizeof(float) * (size_t)(m * n_tok));
    uint8_t *act = malloc(slm_act_row_bytes(SLM_ACT_Q8P, k));
    float *wrow = malloc(sizeof(float) * (size_t)k);
    for (int t = 0; t < n_tok; t++) {
        table->quantize_q8p(k, x + (int64_t)t * k, act);
        const int8_t *qs = (const int8_t *)act;
        const float *d = (const float *)(act + k);
        for (int64_t r = 0; r < m; r++) {
            slm_weight_row_f32(w, r, wrow);
            double sum = 0;
            for (int64_t i = 0; i < k; i++) sum += (double)wrow[i] * qs[i] * d[i / 32];
            y_ref[(int64_t)t * m + r] = (float)sum;
        }
    }
    slm_matmul_with(pool1, table, &wp, x, n_tok, y);
    slm_matmul_with(pool2, table, &wp, x, n_tok, y2);
    int bad_exact = 0, bad_scalar = 0, bad_threads = 0;
    for (int64_t i = 0; i < m * n_tok; i++) {
        double err = fabs((double)y[i] - y_exact[i]);
        if (!(err <= bound[i] + 2e-5 * mag[i] + 1e-5)) bad_exact++;
        if (!(fabs((double)y[i] - y_ref[i]) <= 1e-5 * mag[i] + 1e-6)) bad_scalar++;
        if (y[i] != y2[i]) bad_threads++;
    }
    CHECKF(bad_exact + bad_scalar + bad_threads == 0,
           "packed %s k=%lld m=%lld n_tok=%d: %d beyond the rounding bound, %d off the reference, %d differ by threads",
           slm_type_name(w->type), (long long)k, (long long)m, n_tok, bad_exact, bad_scalar, bad_threads);
    /* fused with an unpacked weight of the same input: each gives what it gives alone */
    const slm_weight *pair[2] = {&wp, w};
    float *pair_y[2] = {y2, y};
    slm_matmul_multi_with(pool2, table, pair, 2, x, n_tok, pair_y);
    int bad_multi = 0;
    for (int64_t i = 0; i < m * n_tok; i++) bad_multi += !(fabs((double)y2[i] - y_ref[i]) <= 1e-5 * mag[i] + 1e-6);
    CHECKF(bad_multi == 0, "packed %s in slm_matmul_multi: %d outputs off", slm_type_name(w->type), bad_multi);
    /* three packed weights fused (decode's shrinking chunks cross from one to the next; m need not
     * be a multiple of 16): each gives, bit for bit, what it gives alone */
    float *three_y[3] = {malloc(sizeof(float) * (size_t)(m * n_tok)), malloc(sizeof(float) * (size_t)(m * n_tok)),
                         malloc(sizeof(float) * (size_t)(m * n_tok))};
    const slm_weight *three[3] = {&wp, &wp, &wp};
    slm_matmul_with(pool2, table, &wp, x, n_tok, y); /* alone (the pair above wrote y) */
    slm_matmul_multi_with(pool2, table, three, 3, x, n_tok, three_y);
    int bad_three = 0;
    for (int i = 0; i < 3; i++) {
        for (int64_t j = 0; j < m * n_tok; j++) bad_three += three_y[i][j] != y[j];
        free(three_y[i]);
    }
    CHECKF(bad_three == 0, "packed %s m=%lld n_tok=%d fused three times: %d outputs differ from alone",
           slm_type_name(w->type), (long long)m, n_tok, bad_three);
    free(buf);
    free(y_ref);
    free(act);
    free(wrow);
    free(y);
    free(y2);
    free(row);
    free(ref);
}

static void check_matmul(const matmul_case *c, slm_pool *pool1, slm_pool *pool2) {
    const uint32_t type = c->type;
    const int64_t k = c->k, m = c->m;
    const int n_tok = c->n_tok;
    size_t rb = slm_row_bytes(type, k);
    uint8_t *data = malloc(rb * (size_t)m);
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    float *wf = malloc(sizeof(float) * (size_t)(k * m));
    float *y_exact = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *y_scalar = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *y = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *y2 = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *bound = malloc(sizeof(float) * (size_t)(m * n_tok));
    float *mag = malloc(sizeof(float) * (size_t)(m * n_tok));
    fill_weights(type, data, k, m);
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = rng_uniform(-2.0f, 2.0f) * (i % 7 == 0 ? 4.0f : 1.0f);
    slm_weight w = {.type = type, .k = k, .m = m, .data = data, .row_bytes = rb};
    for (int64_t r = 0; r < m; r++) slm_weight_row_f32(&w, r, wf + r * k);

    /* Per output: sum |w x| (float slack) and the activation-rounding bound. */
    const int qblock = slm_type_info_get(type)->block_size == SLM_QK_K ? SLM_QK_K : SLM_QK;
    for (int t = 0; t < n_tok; t++) {
        for (int64_t r = 0; r < m; r++) {
            double mg = 0, bd = 0;
            for (int64_t b0 = 0; b0 < k; b0 += qblock) {
                double amax = 0, wsum = 0;
                for (int i = 0; i < qblock && b0 + i < k; i++) { /* float types may have k % 32 != 0 */
                    amax = fmax(amax, fabs(x[t * k + b0 + i]));
                    wsum += fabs(wf[r * k + b0 + i]);
                    mg += fabs(wf[r * k + b0 + i] * x[t * k + b0 + i]);
                }
                bd += wsum * amax / 254.0;
            }
            mag[t * m + r] = (float)mg;
            bound[t * m + r] = is_float_type(type) ? 0.0f : (float)bd;
        }
    }

    slm_matmul(pool2, &w, x, n_tok, y_exact, true);
    /* The exact path is the plain f32 dot of the dequantized row. */
    int bad = 0;
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < m; r++) {
            double ref = 0;
            for (int64_t i = 0; i < k; i++) ref += (double)wf[r * k + i] * x[t * k + i];
            if (!(fabs(ref - y_exact[t * m + r]) <= 1e-5 * mag[t * m + r] + 1e-6)) bad++;
        }
    CHECKF(bad == 0, "%s k=%lld m=%lld n_tok=%d: exact path off by more than f32 rounding at %d outputs",
           slm_type_name(type), (long long)k, (long long)m, n_tok, bad);

    const slm_kernel_table *scalar = slm_kernels_for_isa(SLM_ISA_SCALAR);
    slm_matmul_with(pool1, scalar, &w, x, n_tok, y_scalar);
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *table = slm_kernels_for_isa((slm_isa)isa);
        if (!table) continue;
        slm_matmul_with(pool1, table, &w, x, n_tok, y);
        slm_matmul_with(pool2, table, &w, x, n_tok, y2);
        int bad_exact = 0, bad_scalar = 0, bad_threads = 0;
        double worst = 0, worst_bound = 0;
        for (int64_t i = 0; i < m * n_tok; i++) {
            double slack = 2e-5 * mag[i] + 1e-5;
            double err = fabs((double)y[i] - y_exact[i]);
            if (!(err <= bound[i] + slack)) bad_exact++;
            if (err > worst) {
                worst = err;
                worst_bound = bound[i] + slack;
            }
            if (!(fabs((double)y[i] - y_scalar[i]) <= 1e-5 * mag[i] + 1e-6)) bad_scalar++;
            if (y[i] != y2[i]) bad_threads++;
        }
        CHECKF(bad_exact == 0, "%s %s k=%lld m=%lld n_tok=%d: %d outputs beyond the activation-rounding bound "
               "(worst err %g, bound %g)", slm_isa_level_name((slm_isa)isa), slm_type_name(type), (long long)k,
               (long long)m, n_tok, bad_exact, worst, worst_bound);
        CHECKF(bad_scalar == 0, "%s %s k=%lld m=%lld n_tok=%d: %d outputs differ from the scalar quantized path",
               slm_isa_level_name((slm_isa)isa), slm_type_name(type), (long long)k, (long long)m, n_tok, bad_scalar);
        CHECKF(bad_threads == 0, "%s %s: 1 and 2 threads disagree at %d outputs", slm_isa_level_name((slm_isa)isa),
               slm_type_name(type), bad_threads);
        check_packed(table, &w, x, n_tok, y_exact, bound, mag, pool1, pool2);
    }
    free(data);
    free(x);
    free(wf);
    free(y_exact);
    free(y_scalar);
    free(y);
    free(y2);
    free(bound);
    free(mag);
}

/* slm_matmul_multi must give exactly what separate slm_matmul calls give, fused or not. */
static void check_multi(const uint32_t *types, int n_w, int64_t k, int n_tok, slm_pool *pool) {
    slm_weight ws[4];
    const slm_weight *wp[4];
    float *ys[4], *ref[4];
    uint8_t *data[4];
    float *x = malloc(sizeof(float) * (size_t)(k * n_tok));
    for (int64_t i = 0; i < k * n_tok; i++) x[i] = rng_uniform(-1.0f, 1.0f);
    for (int i = 0; i < n_w; i++) {
        int64_t m = 13 + 29 * i;
        size_t rb = slm_row_bytes(types[i], k);
        data[i] = malloc(rb * (size_t)m);
        fill_weights(types[i], data[i], k, m);
        ws[i] = (slm_weight){.type = types[i], .k = k, .m = m, .data = data[i], .row_bytes = rb};
        wp[i] = &ws[i];
        ys[i] = malloc(sizeof(float) * (size_t)(m * n_tok));
        ref[i] = malloc(sizeof(float) * (size_t)(m * n_tok));
        slm_matmul(pool, &ws[i], x, n_tok, ref[i], false);
    }
    for (int exact = 0; exact < 2; exact++) {
        if (exact)
            for (int i = 0; i < n_w; i++) slm_matmul(pool, &ws[i], x, n_tok, ref[i], true);
        slm_matmul_multi(pool, wp, n_w, x, n_tok, ys, exact);
        for (int i = 0; i < n_w; i++) {
            int bad = 0;
            for (int64_t j = 0; j < ws[i].m * n_tok; j++) bad += ys[i][j] != ref[i][j];
            CHECKF(bad == 0, "multi (%s, weight %d of %d, n_tok %d): %d outputs differ from slm_matmul",
                   exact ? "exact" : "fast", i, n_w, n_tok, bad);
        }
    }
    for (int i = 0; i < n_w; i++) {
        free(data[i]);
        free(ys[i]);
        free(ref[i]);
    }
    free(x);
}

/* Grouped attention: every ISA against a double-precision softmax attention, queries of
 * different lengths, head sizes on and off the fast path. */
static void check_attend(void) {
    const int64_t hds[] = {64, 8, 20, 128, 16, 32, 48};
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        for (int hi = 0; hi < 7; hi++) {
            const int64_t hd = hds[hi];
            const int nq = 6, n[6] = {1, 40, 17, 40, 3, 29};
            const size_t stride = (size_t)hd * 2 + 3;
            uint16_t *kc = malloc(sizeof(uint16_t) * stride * 40), *vc = malloc(sizeof(uint16_t) * stride * 40);
            float *qbuf = malloc(sizeof(float) * (size_t)(nq * hd)), *obuf = malloc(sizeof(float) * (size_t)(nq * hd));
            float *scratch = malloc(sizeof(float) * nq * 40);
            const float *qs[6];
            float *outs[6];
            for (size_t i = 0; i < stride * 40; i++) {
                kc[i] = slm_fp32_to_fp16(rng_uniform(-1, 1));
                vc[i] = slm_fp32_to_fp16(rng_uniform(-1, 1));
            }
            for (int i = 0; i < nq; i++) {
                for (int64_t d = 0; d < hd; d++) qbuf[i * hd + d] = rng_uniform(-2, 2);
                qs[i] = qbuf + i * hd;
                outs[i] = obuf + i * hd;
            }
            t->attend_f16(nq, n, hd, qs, kc, vc, stride, 0.3f, scratch, outs);
            int bad = 0;
            for (int i = 0; i < nq; i++) {
                double s[40], mx = -1e30, sum = 0;
                for (int j = 0; j < n[i]; j++) {
                    s[j] = 0;
                    for (int64_t d = 0; d < hd; d++) s[j] += (double)qs[i][d] * slm_fp16_to_fp32(kc[(size_t)j * stride + (size_t)d]);
                    s[j] *= 0.3;
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < n[i]; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < hd; d++) {
                    double ref = 0;
                    for (int j = 0; j < n[i]; j++) ref += s[j] / sum * slm_fp16_to_fp32(vc[(size_t)j * stride + (size_t)d]);
                    bad += !(fabs(outs[i][d] - ref) <= 2e-5);
                }
            }
            CHECKF(bad == 0, "%s attend_f16 hd=%lld: %d outputs off", slm_isa_level_name((slm_isa)isa), (long long)hd, bad);
            free(kc);
            free(vc);
            free(qbuf);
            free(obuf);
            free(scratch);
        }
    }
}

/* Every ISA's activation quantizers produce exactly the scalar bytes (so integer kernels agree). */
static void check_quantizers(void) {
    const int64_t k = 1024;
    float x[1024];
    for (int round = 0; round < 4; round++) {
        for (int64_t i = 0; i < k; i++) {
            x[i] = rng_uniform(-3, 3) * (i % 13 == 0 ? 50.0f : 1.0f);
            if (round == 1 && i < 256) x[i] = 0.0f;          /* an all-zero block */
            if (round == 2) x[i] = (float)(i % 255) - 127.0f; /* exact .5 ties after scaling */
            if (round == 3) x[i] *= 1e-30f;                    /* tiny scales */
        }
        uint8_t ref8[sizeof(slm_act_q8) * 32], refk[sizeof(block_q8_K) * 4];
        uint8_t got8[sizeof ref8], gotk[sizeof refk];
        const slm_kernel_table *scalar = slm_kernels_for_isa(SLM_ISA_SCALAR);
        memset(ref8, 0, sizeof ref8);
        memset(refk, 0, sizeof refk);
        scalar->quantize_q8(k, x, ref8);
        scalar->quantize_q8k(k, x, refk);
        for (int isa = SLM_ISA_SCALAR + 1; isa < SLM_ISA_COUNT; isa++) {
            const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
            if (!t) continue;
            memset(got8, 0, sizeof got8);
            memset(gotk, 0, sizeof gotk);
            t->quantize_q8(k, x, got8);
            t->quantize_q8k(k, x, gotk);
            CHECKF(memcmp(got8, ref8, sizeof ref8) == 0, "%s quantize_q8 differs from scalar (round %d)",
                   slm_isa_level_name((slm_isa)isa), round);
            CHECKF(memcmp(gotk, refk, sizeof refk) == 0, "%s quantize_q8k differs from scalar (round %d)",
                   slm_isa_level_name((slm_isa)isa), round);
        }
    }
}

/* The vector helpers of every ISA against plain loops. */
static void check_vector_helpers(void) {
    const int64_t sizes[] = {1, 7, 64, 67, 1000};
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        const char *name = slm_isa_level_name((slm_isa)isa);
        for (int si = 0; si < 5; si++) {
            int64_t n = sizes[si];
            float a[1000], b[1000], y[1000], y_ref[1000];
            uint16_t h[1000], h_ref[1000];
            double mag = 0, ref = 0, ref_h = 0;
            for (int64_t i = 0; i < n; i++) {
                a[i] = rng_uniform(-3, 3);
                b[i] = rng_uniform(-3, 3);
                h_ref[i] = slm_fp32_to_fp16(a[i]);
                y[i] = y_ref[i] = rng_uniform(-1, 1);
                mag += fabs(a[i] * b[i]);
                ref += (double)a[i] * b[i];
                ref_h += (double)slm_fp16_to_fp32(h_ref[i]) * b[i];
            }
            CHECKF(fabs(t->dot_f32(n, a, b) - ref) <= 1e-5 * mag + 1e-6, "%s dot_f32 n=%lld", name, (long long)n);
            CHECKF(fabs(t->dot_f16_f32(n, h_ref, b) - ref_h) <= 1e-5 * mag + 1e-6, "%s dot_f16_f32 n=%lld", name,
                   (long long)n);
            t->f32_to_f16(n, a, h);
            CHECKF(memcmp(h, h_ref, sizeof(uint16_t) * (size_t)n) == 0, "%s f32_to_f16 n=%lld differs from "
                   "round-to-nearest-even", name, (long long)n);
            t->axpy_f32(n, y, 0.5f, a);
            int bad = 0;
            for (int64_t i = 0; i < n; i++) bad += fabsf(y[i] - (y_ref[i] + 0.5f * a[i])) > 1e-6f;
            CHECKF(bad == 0, "%s axpy_f32 n=%lld", name, (long long)n);
            memcpy(y, y_ref, sizeof(float) * (size_t)n);
            t->axpy_f16_f32(n, y, -2.0f, h_ref);
            bad = 0;
            for (int64_t i = 0; i < n; i++) bad += fabsf(y[i] - (y_ref[i] - 2.0f * slm_fp16_to_fp32(h_ref[i]))) > 1e-5f;
            CHECKF(bad == 0, "%s axpy_f16_f32 n=%lld", name, (long long)n);
        }
    }
    float a[3] = {1, 2, 3}, b[3] = {4, 5, 6};
    CHECK(slm_vec_dot_f32(3, a, b) == 32.0f);

    /* Attention rows: head sizes with and without the unrolled case, strided rows. */
    const int64_t hds[] = {8, 64, 20, 128, 96, 256, 384};
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        for (int hi = 0; hi < (int)(sizeof hds / sizeof hds[0]); hi++) {
            const int64_t hd = hds[hi], n = 37;
            const size_t stride = (size_t)hd * 3 + 5;
            uint16_t *kv = malloc(sizeof(uint16_t) * stride * (size_t)n);
            float q[384], p[37], scores[37], out[384];
            for (size_t i = 0; i < stride * (size_t)n; i++) kv[i] = slm_fp32_to_fp16(rng_uniform(-2, 2));
            for (int64_t i = 0; i < hd; i++) q[i] = rng_uniform(-1, 1);
            for (int64_t j = 0; j < n; j++) p[j] = rng_uniform(0, 1);
            t->scores_f16(n, hd, q, kv, stride, 0.125f, scores);
            t->weighted_sum_f16(n, hd, p, kv, stride, out);
            int bad = 0;
            for (int64_t j = 0; j < n; j++) {
                double ref = 0, mag = 0;
                for (int64_t i = 0; i < hd; i++) {
                    double kvv = slm_fp16_to_fp32(kv[(size_t)j * stride + (size_t)i]);
                    ref += kvv * q[i];
                    mag += fabs(kvv * q[i]);
                }
                bad += !(fabs(scores[j] - 0.125 * ref) <= 1e-6 * mag + 1e-7);
            }
            for (int64_t i = 0; i < hd; i++) {
                double ref = 0, mag = 0;
                for (int64_t j = 0; j < n; j++) {
                    double kvv = slm_fp16_to_fp32(kv[(size_t)j * stride + (size_t)i]);
                    ref += p[j] * kvv;
                    mag += fabs(p[j] * kvv);
                }
                bad += !(fabs(out[i] - ref) <= 1e-6 * mag + 1e-7);
            }
            CHECKF(bad == 0, "%s attention rows hd=%lld: %d values off", slm_isa_level_name((slm_isa)isa),
                   (long long)hd, bad);
            free(kv);
        }
    }
}

int main(void) {
    fprintf(stderr, "kernel paths on this CPU: up to %s (selected %s)\n", slm_isa_level_name(slm_isa_supported()),
            slm_kernels_isa());
    CHECK(strcmp(slm_kernels_isa(), slm_isa_level_name(slm_isa_selected())) == 0);
    CHECK(slm_kernels_for_isa(SLM_ISA_SCALAR) != NULL);
    check_vector_helpers();
    check_quantizers();
    check_attend();
    slm_pool *pool1 = slm_pool_new(1), *pool2 = slm_pool_new(2);
    CHECK(pool1 && pool2);
    if (!pool1 || !pool2) return test_report("test_kernels");
    for (int ti = 0; ti < N_TYPES; ti++) {
        uint32_t type = all_types[ti];
        check_unpack_matches_reference(type);
        const bool kquant = slm_type_info_get(type)->block_size == SLM_QK_K;
        /* float types take any k: odd sizes exercise the vector tails */
        const bool any_k = is_float_type(type);
        const int64_t ks[] = {kquant ? 256 : any_k ? 37 : 32, kquant ? 768 : any_k ? 229 : 224, kquant ? 2304 : 1056};
        const int64_t ms[] = {1, 37, 67};
        const int ntoks[] = {1, 3, 17};
        for (int i = 0; i < 3; i++) {
            matmul_case c = {type, ks[i], ms[i], ntoks[i]};
            check_matmul(&c, pool1, pool2);
            c.n_tok = ntoks[(i + 1) % 3];
            check_matmul(&c, pool1, pool2);
        }
        /* A batch longer than one token tile of the GEMM loop. */
        matmul_case big = {type, ks[1], 19, 70};
        check_matmul(&big, pool1, pool2);
        /* Whole groups of 16 rows, the shape the repacked layouts take: every token-tile width. */
        const int packed_toks[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 23, 70};
        for (int i = 0; i < (int)(sizeof packed_toks / sizeof packed_toks[0]); i++) {
            matmul_case c = {type, ks[i % 3], i % 2 ? 48 : 16, packed_toks[i]};
            check_matmul(&c, pool1, pool2);
        }
    }
    const uint32_t legacy[] = {SLM_TYPE_Q5_0, SLM_TYPE_Q8_0, SLM_TYPE_Q5_0};
    const uint32_t kquants[] = {SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    const uint32_t mixed[] = {SLM_TYPE_Q8_0, SLM_TYPE_Q4_K, SLM_TYPE_F16};
    for (int n_tok = 1; n_tok <= 9; n_tok += 8) {
        check_multi(legacy, 3, 512, n_tok, pool2);
        check_multi(kquants, 3, 512, n_tok, pool2);
        check_multi(mixed, 3, 512, n_tok, pool2);
    }
    slm_pool_free(pool1);
    slm_pool_free(pool2);
    return test_report("test_kernels");
}
