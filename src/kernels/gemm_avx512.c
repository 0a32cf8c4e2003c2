/* AVX-512 VNNI GEMM for batches (prefill). Every quantized weight type is first unpacked, one row
 * at a time, into one canonical form, and the activations (already quantized to q8 / q8_K) are
 * re-laid into a matching one; a single 4-row x 4-token register-tiled kernel then does the work.
 *
 * Canonical weight row (kp = k rounded up to 64, ng = k/16 rounded up to 16, zero padded):
 *   u8    u[kp]        unsigned weight integers, u = q + offset
 *   float ws[kp/4]     scale of each 4-element dpbusd lane (d * sub-block scale)
 *   float mw[ng]       per 16 elements: the constant term (min - offset * scale)
 * so that w[i] = ws[i/4] * u[i] + mw[i/16] - ... exactly as the type's dequantization defines it.
 * Canonical activation row: int8 a[kp], float as[kp/4] (the lane's scale), float ds[ng] (scale *
 * sum of the 16 integers). Then
 *   dot = sum over lanes of ws*as*(u.a) + sum over 16-groups of mw*ds
 * which is the scalar quantized dot of kernels_scalar.c, regrouped: same integers, float order
 * differs only. */
#include <immintrin.h>
#include <string.h>

#include "kernels/gemm_big.h"
#include "kernels/unpack.h"

static int64_t padded_k(int64_t k) {
    return (k + 63) / 64 * 64;
}

static int64_t padded_groups(int64_t k) {
    return (padded_k(k) / 16 + 15) / 16 * 16;
}

static int64_t steps(int64_t k) {
    return padded_k(k) / 64;
}

static size_t canonical_row_bytes(int64_t k) {
    return (size_t)padded_k(k) * 2 + (size_t)padded_groups(k) * sizeof(float);
}

static bool type_supported(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: case SLM_TYPE_Q8_0:
    case SLM_TYPE_IQ4_NL: case SLM_TYPE_Q2_K: case SLM_TYPE_Q3_K: case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K:
    case SLM_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

static int unpack_kquant(uint32_t type, const void *blk, slm_kblock *u) {
    switch (type) {
    case SLM_TYPE_Q2_K: slm_unpack_q2_K(blk, u); return 0;
    case SLM_TYPE_Q3_K: slm_unpack_q3_K(blk, u); return 4;
    case SLM_TYPE_Q4_K: slm_unpack_q4_K(blk, u); return 0;
    case SLM_TYPE_Q5_K: slm_unpack_q5_K(blk, u); return 0;
    default: slm_unpack_q6_K(blk, u); return 32;
    }
}

/* Zeroes the padding after the first k elements of a canonical row. */
static void clear_padding(int64_t k, uint8_t *dst) {
    const int64_t kp = padded_k(k), ng = padded_groups(k);
    memset(dst + k, 0, (size_t)(kp - k));
    memset((float *)(dst + kp) + k / 4, 0, sizeof(float) * (size_t)((kp - k) / 4));
    memset((float *)(dst + 2 * kp) + k / 16, 0, sizeof(float) * (size_t)(ng - k / 16));
}

/* Vector unpacking of the common legacy types: u is the raw 4/5/8-bit code (offset folded into mw). */
static void unpack_legacy_fast(uint32_t type, int64_t k, const uint8_t *src, uint8_t *u, float *ws, float *mw) {
    const __m128i m4 = _mm_set1_epi8(0x0f), sixteen = _mm_set1_epi8(0x10);
    int8_t table_u[16];
    for (int i = 0; i < 16; i++) table_u[i] = (int8_t)(slm_iq4nl_values[i] + 128);
    const __m128i table = _mm_loadu_si128((const __m128i *)table_u);
    const size_t bs = (size_t)slm_type_info_get(type)->type_size;
    for (int64_t b = 0; b < k / SLM_QK; b++) {
        const uint8_t *blk = src + (size_t)b * bs;
        uint16_t dh, mh = 0;
        memcpy(&dh, blk, 2);
        float d = _cvtsh_ss(dh), m = 0.0f;
        int offset = 0;
        if (type == SLM_TYPE_Q8_0) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
            _mm256_storeu_si256((__m256i *)(u + 32 * b), _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)));
            offset = 128;
        } else {
            const bool has_min = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
            const bool has_qh = type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1;
            size_t at = has_min ? 4 : 2;
            uint32_t qh = 0;
            if (has_min) {
                memcpy(&mh, blk + 2, 2);
                m = _cvtsh_ss(mh);
            }
            if (has_qh) {
                memcpy(&qh, blk + at, 4);
                at += 4;
            }
            __m128i q = _mm_loadu_si128((const __m128i *)(blk + at));
            __m128i lo = _mm_and_si128(q, m4), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
            if (has_qh) {
                lo = _mm_mask_add_epi8(lo, (__mmask16)(qh & 0xffff), lo, sixteen);
                hi = _mm_mask_add_epi8(hi, (__mmask16)(qh >> 16), hi, sixteen);
            }
            if (type == SLM_TYPE_IQ4_NL) {
                lo = _mm_shuffle_epi8(table, lo);
                hi = _mm_shuffle_epi8(table, hi);
                offset = 128;
            } else {
                offset = type == SLM_TYPE_Q4_0 ? 8 : type == SLM_TYPE_Q5_0 ? 16 : 0;
            }
            _mm_storeu_si128((__m128i *)(u + 32 * b), lo);
            _mm_storeu_si128((__m128i *)(u + 32 * b + 16), hi);
        }
        _mm256_storeu_ps(ws + 8 * b, _mm256_set1_ps(d));
        mw[2 * b] = mw[2 * b + 1] = m - (float)offset * d;
    }
}

static void unpack_row(uint32_t type, int64_t k, const void *row, uint8_t *dst) {
    const int64_t kp = padded_k(k);
    uint8_t *u = dst;
    float *ws = (float *)(dst + kp), *mw = (float *)(dst + 2 * kp);
    clear_padding(k, dst);
    const slm_type_info *ti = slm_type_info_get(type);
    const uint8_t *src = row;
    if (ti->block_size == SLM_QK) {
        unpack_legacy_fast(type, k, src, u, ws, mw);
        return;
    }
    for (int64_t b = 0; b < k / SLM_QK_K; b++) {
        const uint8_t *blk = src + (size_t)b * (size_t)ti->type_size;
        if (type == SLM_TYPE_Q4_K) {
            const block_q4_K *x = (const block_q4_K *)blk;
            const __m256i m4 = _mm256_set1_epi8(0x0f);
            float d = _cvtsh_ss(x->d), dmin = _cvtsh_ss(x->dmin);
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
                _mm256_storeu_si256((__m256i *)(u + b * SLM_QK_K + 64 * c), _mm256_and_si256(q, m4));
                _mm256_storeu_si256((__m256i *)(u + b * SLM_QK_K + 64 * c + 32),
                                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            }
            for (int j = 0; j < 8; j++) {
                int sc, mn;
                slm_kquant_scale_min(j, x->scales, &sc, &mn);
                _mm256_storeu_ps(ws + b * (SLM_QK_K / 4) + 8 * j, _mm256_set1_ps(d * (float)sc));
                mw[b * 16 + 2 * j] = mw[b * 16 + 2 * j + 1] = -dmin * (float)mn;
            }
            continue;
        }
        if (type == SLM_TYPE_Q6_K) {
            const block_q6_K *x = (const block_q6_K *)blk;
            const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
            float d = _cvtsh_ss(x->d);
            for (int n = 0; n < 2; n++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * n));
                uint8_t *o = u + b * SLM_QK_K + 128 * n;
                _mm256_storeu_si256((__m256i *)o, _mm256_or_si256(_mm256_and_si256(l0, m4),
                                                                  _mm256_slli_epi16(_mm256_and_si256(h, m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 32),
                                    _mm256_or_si256(_mm256_and_si256(l1, m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 64),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4)));
                _mm256_storeu_si256((__m256i *)(o + 96),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4)));
            }
            for (int g = 0; g < 16; g++) {
                float scale = d * (float)x->scales[g];
                _mm_storeu_ps(ws + b * (SLM_QK_K / 4) + 4 * g, _mm_set1_ps(scale));
                mw[b * 16 + g] = -32.0f * scale;
            }
            continue;
        }
        slm_kblock kb;
        int offset = unpack_kquant(type, blk, &kb);
        for (int i = 0; i < SLM_QK_K; i++) u[b * SLM_QK_K + i] = (uint8_t)(kb.q[i] + offset);
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            float scale = kb.d * (float)kb.scale[g];
            for (int i = 0; i < 4; i++) ws[b * (SLM_QK_K / 4) + g * 4 + i] = scale;
            mw[b * (SLM_QK_K / 16) + g] = -kb.dmin * (float)kb.min[g] - (float)offset * scale;
        }
    }
}

static void convert_act(slm_act_kind kind, int64_t k, const void *act, uint8_t *dst) {
    const int64_t kp = padded_k(k);
    int8_t *a = (int8_t *)dst;
    float *as = (float *)(dst + kp), *ds = (float *)(dst + 2 * kp);
    memset(dst, 0, canonical_row_bytes(k));
    if (kind == SLM_ACT_Q8) {
        const slm_act_q8 *blk = act;
        for (int64_t b = 0; b < k / SLM_QK; b++) {
            memcpy(a + b * SLM_QK, blk[b].qs, SLM_QK);
            for (int i = 0; i < SLM_QK / 4; i++) as[b * (SLM_QK / 4) + i] = blk[b].d;
            for (int h = 0; h < 2; h++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += blk[b].qs[16 * h + i];
                ds[2 * b + h] = blk[b].d * (float)sum;
            }
        }
    } else if (kind == SLM_ACT_Q8P || kind == SLM_ACT_Q8PS) {
        const int8_t *qs = act;
        const float *d = slm_act_planar_d(act, k);
        for (int64_t b = 0; b < k / SLM_QK; b++) {
            int8_t *dstb = a + b * SLM_QK;
            if (kind == SLM_ACT_Q8P) {
                memcpy(dstb, qs + b * SLM_QK, SLM_QK);
            } else {
                memcpy(dstb, qs + b * 16, 16);
                memcpy(dstb + 16, qs + k / 2 + b * 16, 16);
            }
            for (int i = 0; i < SLM_QK / 4; i++) as[b * (SLM_QK / 4) + i] = d[b];
            for (int h = 0; h < 2; h++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += dstb[16 * h + i];
                ds[2 * b + h] = d[b] * (float)sum;
            }
        }
    } else {
        const block_q8_K *blk = act;
        for (int64_t b = 0; b < k / SLM_QK_K; b++) {
            memcpy(a + b * SLM_QK_K, blk[b].qs, SLM_QK_K);
            for (int i = 0; i < SLM_QK_K / 4; i++) as[b * (SLM_QK_K / 4) + i] = blk[b].d;
            for (int g = 0; g < SLM_QK_K / 16; g++) ds[b * (SLM_QK_K / 16) + g] = blk[b].d * (float)blk[b].bsums[g];
        }
    }
}

/* NR x NT outputs over 64-element steps [p0, p1) (p0 a multiple of 4); NR, NT are constants after
 * inlining. */
static inline __attribute__((always_inline)) void tile(int64_t k, const uint8_t *w, size_t w_stride, int NR,
                                                       const uint8_t *x, size_t x_stride, int NT, float *y,
                                                       size_t y_stride, int64_t p0, int64_t p1, bool accumulate) {
    const int64_t kp = padded_k(k), ng = padded_groups(k);
    const int64_t g0 = p0 / 4, g1 = p1 == kp / 64 ? ng / 16 : p1 / 4;
    __m512 acc[4][4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 4")
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t p = p0; p < p1; p++) {
        __m512i u[4];
        __m512 ws[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < NR; r++) {
            const uint8_t *wr = w + (size_t)r * w_stride;
            u[r] = _mm512_load_si512((const void *)(wr + 64 * p));
            ws[r] = _mm512_load_ps((const float *)(wr + kp) + 16 * p);
        }
        _Pragma("GCC unroll 4")
        for (int t = 0; t < NT; t++) {
            const uint8_t *xr = x + (size_t)t * x_stride;
            __m512i a = _mm512_load_si512((const void *)(xr + 64 * p));
            __m512 as = _mm512_load_ps((const float *)(xr + kp) + 16 * p);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < NR; r++) {
                __m512i dot = _mm512_dpbusd_epi32(zero, u[r], a);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[r], as), acc[r][t]);
            }
        }
    }
    for (int64_t g = g0; g < g1; g++) {
        _Pragma("GCC unroll 4")
        for (int t = 0; t < NT; t++) {
            __m512 ds = _mm512_load_ps((const float *)(x + (size_t)t * x_stride + 2 * kp) + 16 * g);
            _Pragma("GCC unroll 4")
            for (int r = 0; r < NR; r++) {
                __m512 mw = _mm512_load_ps((const float *)(w + (size_t)r * w_stride + 2 * kp) + 16 * g);
                acc[r][t] = _mm512_fmadd_ps(mw, ds, acc[r][t]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 4")
        for (int t = 0; t < NT; t++) {
            float sum = _mm512_reduce_add_ps(acc[r][t]);
            y[(size_t)t * y_stride + r] = accumulate ? y[(size_t)t * y_stride + r] + sum : sum;
        }
}

#define TILE_CASE(R, T) \
    case (R) * 8 + (T): tile(k, w, w_stride, R, x, x_stride, T, y, y_stride, p0, p1, accumulate); break;

static void gemm_tile(int64_t k, const uint8_t *w, size_t w_stride, int nr, const uint8_t *x, size_t x_stride, int nt,
                      float *y, size_t y_stride, int64_t p0, int64_t p1, bool accumulate) {
    switch (nr * 8 + nt) {
    TILE_CASE(4, 4) TILE_CASE(4, 3) TILE_CASE(4, 2) TILE_CASE(4, 1)
    TILE_CASE(3, 4) TILE_CASE(3, 3) TILE_CASE(3, 2) TILE_CASE(3, 1)
    TILE_CASE(2, 4) TILE_CASE(2, 3) TILE_CASE(2, 2) TILE_CASE(2, 1)
    TILE_CASE(1, 4) TILE_CASE(1, 3) TILE_CASE(1, 2) TILE_CASE(1, 1)
    default: break;
    }
}

void slm_gemm_big_fill_avx512(slm_gemm_big *g) {
    g->type_supported = type_supported;
    g->row_bytes = canonical_row_bytes;
    g->unpack_row = unpack_row;
    g->convert_act = convert_act;
    g->tile = gemm_tile;
    g->steps = steps;
}
