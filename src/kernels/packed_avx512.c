/* AVX-512 VNNI kernels over the R16 layout (packed.h). One vpdpbusd multiplies 4 weights of each of
 * 16 rows by a broadcast group of 4 activations (read straight from memory), so a 32-weight block
 * of 16 rows costs 8 dot products per token plus one scale step, with no horizontal sums. Weights
 * are unsigned bytes u = w + offset (128 for q8_0, 8 for q4_0); the offset times the activation
 * block's integer sum is subtracted in integer arithmetic, so the result is the same integer dot
 * product the other kernels compute, scaled by the same floats. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_impl.h"

/* Bytes ahead of the current block to prefetch. With several tokens per block there are ~100
 * instructions between weight loads, too many for the out-of-order window to keep enough DRAM
 * reads in flight by itself: measured 1.6-1.8x for 8 tokens, and a few % for one. */
#define PREFETCH_AHEAD 4096

/* Decode (one token) reads each weight once: a non-temporal prefetch keeps the stream from evicting
 * the activations and the KV cache (gemma2-2b decode, 5 alternating A/B pairs each: +1.6% median on
 * Q4_K_M, +2.1% on Q4_0; the machine's noise is larger than that). The K-quant kernels stream
 * faster with their prefetches into L2 only (T2; Zen 5, 2 threads, gemma2-2b's feed-forward shapes,
 * 12 alternating rounds each: Q4_K +6 to +18% in six runs, Q6_K +3%, Q5_K +1%), the 32-weight
 * formats slower (Q8_0 -3%, Q4_0 -5%), so each kernel says which it wants. With several tokens a
 * chunk's weights are read again for every token tile, so they must stay in L1/L2. nt and l2_only
 * are constants after inlining. */
static inline __attribute__((always_inline)) void prefetch_weights(const uint8_t *p, const int nt, const bool l2_only) {
    if (nt > 1) _mm_prefetch((const char *)p, _MM_HINT_T0);
    else if (l2_only) _mm_prefetch((const char *)p, _MM_HINT_T2);
    else _mm_prefetch((const char *)p, _MM_HINT_NTA);
}

static inline int32_t load_i32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* init + the integer dot of one 32-weight block of 16 rows (w[0..7], 4 weights of each row per
 * register) with the activations q[0..31], in two chains so the vpdpbusd latencies overlap. */
static inline __attribute__((always_inline)) __m512i dot_block(__m512i init, const __m512i w[8], const int8_t *q) {
    __m512i s0 = init, s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int g = 0; g < 8; g += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w[g], _mm512_set1_epi32(load_i32(q + 4 * g)));
        s1 = _mm512_dpbusd_epi32(s1, w[g + 1], _mm512_set1_epi32(load_i32(q + 4 * g + 4)));
    }
    return _mm512_add_epi32(s0, s1);
}

/* Where the quantized values, scales and sums of each activation row are; zeroed accumulators. */
static inline __attribute__((always_inline)) void planar_rows(int64_t k, const uint8_t *act, size_t act_stride, int nt,
                                                              const int8_t **aq, const float **ad, const int32_t **as,
                                                              __m512 *acc) {
    for (int t = 0; t < nt; t++) {
        const uint8_t *row = act + (size_t)t * act_stride;
        aq[t] = (const int8_t *)row;
        ad[t] = slm_act_planar_d(row, k);
        as[t] = slm_act_planar_sum(row, k);
        acc[t] = _mm512_setzero_ps();
    }
}

static inline __attribute__((always_inline)) void r16_tile_q4_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt);

static inline __attribute__((always_inline)) void r16_tile_q5_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt);

static inline __attribute__((always_inline)) void r16_tile_q6_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt);

static inline __attribute__((always_inline)) void r16_tile(int64_t k, const uint8_t *group, const uint8_t *act,
                                                           size_t act_stride, float *out, size_t out_stride,
                                                           const int nt, const uint32_t type) {
    if (type == SLM_TYPE_Q4_K) {
        r16_tile_q4_K(k, group, act, act_stride, out, out_stride, nt);
        return;
    }
    if (type == SLM_TYPE_Q5_K) {
        r16_tile_q5_K(k, group, act, act_stride, out, out_stride, nt);
        return;
    }
    if (type == SLM_TYPE_Q6_K) {
        r16_tile_q6_K(k, group, act, act_stride, out, out_stride, nt);
        return;
    }
    const bool q4 = type != SLM_TYPE_Q8_0, q5 = type == SLM_TYPE_Q5_0;
    const int64_t nb = k / SLM_QK;
    const size_t wblock = slm_packed_block_bytes(type);
    const int32_t offset = q5 ? 16 : q4 ? 8 : 128;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const int8_t *aq[SLM_PACKED_MAX_TOKENS];
    const float *ad[SLM_PACKED_MAX_TOKENS];
    const int32_t *as[SLM_PACKED_MAX_TOKENS];
    __m512 acc[SLM_PACKED_MAX_TOKENS];
    planar_rows(k, act, act_stride, nt, aq, ad, as, acc);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *wb = group + slm_packed_weights_at(wblock, b);
        for (size_t l = 0; l < wblock + 64; l += 64) prefetch_weights(wb + PREFETCH_AHEAD + l, nt, false);
        __m512i w[8];
        if (q4) {
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_loadu_si512((const void *)(wb + 64 * j));
                w[j] = _mm512_and_si512(v, low4);
                w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
            }
            if (q5) {
                const __m512i sixteen = _mm512_set1_epi8(16);
#pragma GCC unroll 8
                for (int h = 0; h < 8; h++) {
                    uint64_t bits;
                    memcpy(&bits, wb + 256 + 8 * h, 8);
                    w[h] = _mm512_mask_add_epi8(w[h], _cvtu64_mask64(bits), w[h], sixteen);
                }
            }
        } else {
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) w[j] = _mm512_loadu_si512((const void *)(wb + 64 * j));
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(group + slm_packed_scales_at(wblock, b))));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m512i s = dot_block(_mm512_set1_epi32(-as[t][b] * offset), w, aq[t] + b * SLM_QK);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(ad[t][b])), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, acc[t]);
}

/* Q4_K and Q5_K: per sub-block of 32, w = d*sc*q - dmin*m with q in 0..15 (0..31), no offset, so
 * the integer dot needs no correction and the minimum enters as dmin*m times the activations'
 * float sum. A pair of sub-blocks shares its bytes, so each 64-byte load serves both (lo, hi). The
 * minimums get their own accumulator, which keeps the dependency chain at two FMAs per pair. */
typedef struct kpair_scales {
    __m512 sc_lo, sc_hi, mn_lo, mn_hi;
} kpair_scales;

/* The float scales of pair p: d (d_hi for the high sub-block) times the 6-bit scales, dmin times
 * the 6-bit minimums, read from [8 sub-blocks][16 rows] bytes. */
static inline __attribute__((always_inline)) kpair_scales kpair_scales_of(const uint8_t *scales, const uint8_t *mins,
                                                                          int p, __m512 d, __m512 d_hi, __m512 dmin) {
    const __m256i sc = _mm256_loadu_si256((const __m256i *)(scales + 2 * p * SLM_PACKED_ROWS));
    const __m256i mn = _mm256_loadu_si256((const __m256i *)(mins + 2 * p * SLM_PACKED_ROWS));
    return (kpair_scales){
        _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(sc)))),
        _mm512_mul_ps(d_hi, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(sc, 1)))),
        _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(mn)))),
        _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(mn, 1))))};
}

/* Every token's dot with the pair's decoded weights; b is the activation block of the low half. */
static inline __attribute__((always_inline)) void kpair_accumulate(const __m512i lo[8], const __m512i hi[8],
                                                                   const kpair_scales *s, int64_t b, int nt,
                                                                   const int8_t *const *aq, const float *const *ad,
                                                                   const int32_t *const *as, __m512 *acc,
                                                                   __m512 *acc_min) {
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const __m512i s_lo = dot_block(_mm512_setzero_si512(), lo, aq[t] + b * SLM_QK);
        const __m512i s_hi = dot_block(_mm512_setzero_si512(), hi, aq[t] + (b + 1) * SLM_QK);
        const float da_lo = ad[t][b], da_hi = ad[t][b + 1];
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s_lo), s->sc_lo), _mm512_set1_ps(da_lo), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s_hi), s->sc_hi), _mm512_set1_ps(da_hi), acc[t]);
        acc_min[t] = _mm512_fmadd_ps(s->mn_lo, _mm512_set1_ps(da_lo * (float)as[t][b]), acc_min[t]);
        acc_min[t] = _mm512_fmadd_ps(s->mn_hi, _mm512_set1_ps(da_hi * (float)as[t][b + 1]), acc_min[t]);
    }
}

/* Q4_K: the high nibbles are used in place (v & 0xf0 = 16q) with d/16 as their scale: both factors
 * are exact powers of two apart, so the products are the same floats. */
static inline __attribute__((always_inline)) void r16_tile_q4_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt) {
    const int64_t nsb = k / SLM_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f), high4 = _mm512_set1_epi8((char)0xf0);
    const int8_t *aq[SLM_PACKED_MAX_TOKENS];
    const float *ad[SLM_PACKED_MAX_TOKENS];
    const int32_t *as[SLM_PACKED_MAX_TOKENS];
    __m512 acc[SLM_PACKED_MAX_TOKENS], acc_min[SLM_PACKED_MAX_TOKENS];
    planar_rows(k, act, act_stride, nt, aq, ad, as, acc);
    for (int t = 0; t < nt; t++) acc_min[t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *base = group + (size_t)sb * SLM_PACKED_Q4_K_BYTES;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + SLM_PACKED_Q4_K_D)));
        const __m512 d16 = _mm512_mul_ps(d, _mm512_set1_ps(1.0f / 16.0f));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + SLM_PACKED_Q4_K_DMIN)));
        for (int p = 0; p < 4; p++) {
#pragma GCC unroll 10
            for (int l = 0; l < 10; l++) /* 10 lines a pair cover the super-block's 37 */
                prefetch_weights(base + PREFETCH_AHEAD + p * 592 + l * 64, nt, true);
            const uint8_t *pair = base + p * 512;
            __m512i lo[8], hi[8];
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                const __m512i v = _mm512_loadu_si512((const void *)(pair + 64 * g));
                lo[g] = _mm512_and_si512(v, low4);
                hi[g] = _mm512_and_si512(v, high4);
            }
            const kpair_scales sc = kpair_scales_of(base + SLM_PACKED_Q4_K_SCALES, base + SLM_PACKED_Q4_K_MINS, p, d, d16, dmin);
            kpair_accumulate(lo, hi, &sc, sb * 8 + 2 * p, nt, aq, ad, as, acc, acc_min);
        }
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, _mm512_sub_ps(acc[t], acc_min[t]));
}

/* Q5_K: the fifth bit is added to the nibbles under its 64-bit mask, so the high nibbles are shifted
 * down (16q + 256 would not fit a byte). */
static inline __attribute__((always_inline)) void r16_tile_q5_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt) {
    const int64_t nsb = k / SLM_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f), sixteen = _mm512_set1_epi8(16);
    const int8_t *aq[SLM_PACKED_MAX_TOKENS];
    const float *ad[SLM_PACKED_MAX_TOKENS];
    const int32_t *as[SLM_PACKED_MAX_TOKENS];
    __m512 acc[SLM_PACKED_MAX_TOKENS], acc_min[SLM_PACKED_MAX_TOKENS];
    planar_rows(k, act, act_stride, nt, aq, ad, as, acc);
    for (int t = 0; t < nt; t++) acc_min[t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *base = group + (size_t)sb * SLM_PACKED_Q5_K_BYTES;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + SLM_PACKED_Q5_K_D)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + SLM_PACKED_Q5_K_DMIN)));
        for (int p = 0; p < 4; p++) {
#pragma GCC unroll 12
            for (int l = 0; l < 12; l++) /* 12 lines a pair cover the super-block's 45 */
                prefetch_weights(base + PREFETCH_AHEAD + p * 720 + l * 64, nt, true);
            const uint8_t *pair = base + p * SLM_PACKED_Q5_K_PAIR, *masks = pair + 512;
            __m512i lo[8], hi[8];
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                const __m512i v = _mm512_loadu_si512((const void *)(pair + 64 * g));
                const __m512i l = _mm512_and_si512(v, low4), h = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
                uint64_t bits_lo, bits_hi;
                memcpy(&bits_lo, masks + 8 * g, 8);
                memcpy(&bits_hi, masks + 64 + 8 * g, 8);
                lo[g] = _mm512_mask_add_epi8(l, _cvtu64_mask64(bits_lo), l, sixteen);
                hi[g] = _mm512_mask_add_epi8(h, _cvtu64_mask64(bits_hi), h, sixteen);
            }
            const kpair_scales sc = kpair_scales_of(base + SLM_PACKED_Q5_K_SCALES, base + SLM_PACKED_Q5_K_MINS, p, d, d, dmin);
            kpair_accumulate(lo, hi, &sc, sb * 8 + 2 * p, nt, aq, ad, as, acc, acc_min);
        }
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, _mm512_sub_ps(acc[t], acc_min[t]));
}

/* Q6_K: w = d*sc*(q-32) with q in 0..63 and an int8 scale per 16 weights. Each half-block's integer
 * dot starts from -32 times its activation sum (so it is the dot with q-32), is multiplied by its
 * scale as integers and the two halves are added before the one float step per block. The top
 * two bits of each weight come out of the packed bit fields through two 16-entry byte tables. */
static inline __attribute__((always_inline)) void r16_tile_q6_K(int64_t k, const uint8_t *group, const uint8_t *act,
                                                                size_t act_stride, float *out, size_t out_stride,
                                                                const int nt) {
    const int64_t nsb = k / SLM_QK_K;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    /* index: two 2-bit fields; table_a gives the first at bits 4-5, table_b the second */
    const __m512i table_a = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 16, 32, 48, 0, 16, 32, 48, 0, 16, 32, 48, 0, 16, 32, 48));
    const __m512i table_b = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 16, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 48));
    const int8_t *aq[SLM_PACKED_MAX_TOKENS];
    const float *ad[SLM_PACKED_MAX_TOKENS];
    const int32_t *as[SLM_PACKED_MAX_TOKENS], *as_lo[SLM_PACKED_MAX_TOKENS];
    __m512 acc[SLM_PACKED_MAX_TOKENS];
    planar_rows(k, act, act_stride, nt, aq, ad, as, acc);
    for (int t = 0; t < nt; t++) as_lo[t] = slm_act_planar_sum_lo(act + (size_t)t * act_stride, k);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *base = group + (size_t)sb * SLM_PACKED_Q6_K_BYTES;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(base + SLM_PACKED_Q6_K_D)));
        for (int j = 0; j < 8; j++) {
            for (size_t l = (size_t)j * 448; l < (size_t)(j + 1) * 448 && l < SLM_PACKED_Q6_K_BYTES; l += 64)
                prefetch_weights(base + PREFETCH_AHEAD + l, nt, true);
            const uint8_t *blk = base + j * SLM_PACKED_Q6_K_BLOCK;
            __m512i w[8];
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m512i top = _mm512_loadu_si512((const void *)(blk + 256 + 64 * h));
                const __m512i idx01 = _mm512_and_si512(top, low4);
                const __m512i idx23 = _mm512_and_si512(_mm512_srli_epi16(top, 4), low4);
                const __m512i hb[4] = {_mm512_shuffle_epi8(table_a, idx01), _mm512_shuffle_epi8(table_b, idx01),
                                       _mm512_shuffle_epi8(table_a, idx23), _mm512_shuffle_epi8(table_b, idx23)};
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    __m512i v = _mm512_loadu_si512((const void *)(blk + 64 * g));
                    if (h) v = _mm512_srli_epi16(v, 4);
                    w[4 * h + g] = _mm512_ternarylogic_epi32(v, hb[g], low4, 0xEC); /* (v & low4) | hb */
                }
            }
            const __m512i sc_lo = _mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(base + SLM_PACKED_Q6_K_SCALES + 2 * j * SLM_PACKED_ROWS)));
            const __m512i sc_hi = _mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(base + SLM_PACKED_Q6_K_SCALES + (2 * j + 1) * SLM_PACKED_ROWS)));
            const int64_t b = sb * 8 + j; /* the activation block */
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const int8_t *q = aq[t] + b * SLM_QK;
                const int32_t lo = as_lo[t][b];
                __m512i s_lo = _mm512_set1_epi32(-32 * lo), s_hi = _mm512_set1_epi32(-32 * (as[t][b] - lo));
#pragma GCC unroll 4
                for (int g = 0; g < 4; g++) {
                    s_lo = _mm512_dpbusd_epi32(s_lo, w[g], _mm512_set1_epi32(load_i32(q + 4 * g)));
                    s_hi = _mm512_dpbusd_epi32(s_hi, w[4 + g], _mm512_set1_epi32(load_i32(q + 16 + 4 * g)));
                }
                const __m512i x = _mm512_add_epi32(_mm512_mullo_epi32(s_lo, sc_lo), _mm512_mullo_epi32(s_hi, sc_hi));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(x), _mm512_mul_ps(dw, _mm512_set1_ps(ad[t][b])), acc[t]);
            }
        }
    }
    for (int t = 0; t < nt; t++) _mm512_storeu_ps(out + (size_t)t * out_stride, acc[t]);
}

#define R16_KERNEL(name, type)                                                                                          \
    static void name(int64_t k, const uint8_t *group, const uint8_t *act, size_t act_stride, int nt, float *out,      \
                     size_t out_stride) {                                                                             \
        switch (nt) {                                                                                                 \
        case 1: r16_tile(k, group, act, act_stride, out, out_stride, 1, type); break;                                   \
        case 2: r16_tile(k, group, act, act_stride, out, out_stride, 2, type); break;                                   \
        case 3: r16_tile(k, group, act, act_stride, out, out_stride, 3, type); break;                                   \
        case 4: r16_tile(k, group, act, act_stride, out, out_stride, 4, type); break;                                   \
        case 5: r16_tile(k, group, act, act_stride, out, out_stride, 5, type); break;                                   \
        case 6: r16_tile(k, group, act, act_stride, out, out_stride, 6, type); break;                                   \
        case 7: r16_tile(k, group, act, act_stride, out, out_stride, 7, type); break;                                   \
        default: r16_tile(k, group, act, act_stride, out, out_stride, 8, type); break;                                  \
        }                                                                                                             \
    }

R16_KERNEL(r16_gemm_q8_0, SLM_TYPE_Q8_0)
R16_KERNEL(r16_gemm_q4_0, SLM_TYPE_Q4_0)
R16_KERNEL(r16_gemm_q5_0, SLM_TYPE_Q5_0)
R16_KERNEL(r16_gemm_q4_K, SLM_TYPE_Q4_K)
R16_KERNEL(r16_gemm_q5_K, SLM_TYPE_Q5_K)
R16_KERNEL(r16_gemm_q6_K, SLM_TYPE_Q6_K)

void slm_kernels_fill_packed_avx512(slm_kernel_table *t) {
    t->packed_gemm[SLM_TYPE_Q8_0] = r16_gemm_q8_0;
    t->packed_gemm[SLM_TYPE_Q4_0] = r16_gemm_q4_0;
    t->packed_gemm[SLM_TYPE_Q5_0] = r16_gemm_q5_0;
    t->packed_gemm[SLM_TYPE_Q4_K] = r16_gemm_q4_K;
    t->packed_gemm[SLM_TYPE_Q5_K] = r16_gemm_q5_K;
    t->packed_gemm[SLM_TYPE_Q6_K] = r16_gemm_q6_K;
}
