/* AVX-512 kernels: the 256-bit integer kernels of kernels_simd.inc with VNNI (vpdpbusd /
 * vpdpwssd) instead of the maddubs+madd pairs. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/unpack.h"

#define SIMD_DOT_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define SIMD_DOT_SCALED(acc, u, s, w) _mm256_dpwssd_epi32((acc), _mm256_maddubs_epi16((u), (s)), (w))

#include "kernels/kernels_simd.inc"


/* ---- 512-bit decode kernels over the planar activation layouts (see kernels_impl.h): four
 * blocks per step, scales converted four at a time, zero points and minimums folded into one
 * per-block correction vector. Same integers as the scalar kernels. ---- */

static inline __m512 expand4(__m128 s) { /* [s0 x4, s1 x4, s2 x4, s3 x4] */
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(s));
}

static inline __m512 expand8(__m128 s, int half) { /* [s(2h) x8, s(2h+1) x8] */
    const __m512i idx = half ? _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
                             : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s));
}

/* Four half floats `stride` bytes apart. */
static inline __m128 halves4(const void *first, size_t stride) {
    const uint8_t *p = first;
    uint16_t h[4];
    for (int i = 0; i < 4; i++) memcpy(&h[i], p + (size_t)i * stride, 2);
    uint64_t packed;
    memcpy(&packed, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed));
}

static inline float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static inline __m512i load4x16(const uint8_t *p0, size_t stride) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p0 + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p0 + 2 * stride)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p0 + 3 * stride)), 3);
}

enum nibble_kind { NIB_Q4_0, NIB_Q4_1, NIB_Q5_0, NIB_Q5_1, NIB_IQ4_NL };

/* The 4- and 5-bit legacy types: u = nibble (+16 with the fifth bit, or through the iq4_nl table
 * plus 128), w = d*(u - offset) + m. */
static inline __attribute__((always_inline)) float nibble_dot(int64_t k, const void *w, const void *act,
                                                              enum nibble_kind kind, size_t bsize, int offset) {
    const uint8_t *wb = w;
    const int64_t nb = k / SLM_QK;
    const int8_t *alo = act, *ahi = (const int8_t *)act + k / 2;
    const float *ad = slm_act_planar_d(act, k);
    const int32_t *as = slm_act_planar_sum(act, k);
    const bool has_min = kind == NIB_Q4_1 || kind == NIB_Q5_1;
    const bool has_qh = kind == NIB_Q5_0 || kind == NIB_Q5_1;
    const size_t qs_off = has_min ? 4 : 2;
    const size_t qs_at = qs_off + (has_qh ? 4 : 0);
    const __m512i mask = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512(), sixteen = _mm512_set1_epi8(0x10);
    __m512i table = zero;
    if (kind == NIB_IQ4_NL) {
        int8_t tu[16];
        for (int i = 0; i < 16; i++) tu[i] = (int8_t)(slm_iq4nl_values[i] + 128);
        table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)tu));
    }
    __m512 acc = _mm512_setzero_ps();
    __m128 corr = _mm_setzero_ps(), mins = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *blk = wb + (size_t)b * bsize;
        __m512i q = load4x16(blk + qs_at, bsize);
        __m512i lo = _mm512_and_si512(q, mask), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
        if (has_qh) {
            /* the four 32-bit qh words; their low halves are the fifth bits of the low nibbles */
            int32_t q0, q1, q2, q3;
            memcpy(&q0, blk + qs_off, 4);
            memcpy(&q1, blk + bsize + qs_off, 4);
            memcpy(&q2, blk + 2 * bsize + qs_off, 4);
            memcpy(&q3, blk + 3 * bsize + qs_off, 4);
            __m128i qh = _mm_setr_epi32(q0, q1, q2, q3);
            __m128i halves = _mm_shuffle_epi8(qh, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
            uint64_t mlo = (uint64_t)_mm_cvtsi128_si64(halves), mhi = (uint64_t)_mm_extract_epi64(halves, 1);
            lo = _mm512_mask_add_epi8(lo, (__mmask64)mlo, lo, sixteen);
            hi = _mm512_mask_add_epi8(hi, (__mmask64)mhi, hi, sixteen);
        }
        if (kind == NIB_IQ4_NL) {
            lo = _mm512_shuffle_epi8(table, lo);
            hi = _mm512_shuffle_epi8(table, hi);
        }
        __m512i p = _mm512_dpbusd_epi32(zero, lo, _mm512_loadu_si512((const void *)(alo + 16 * b)));
        p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512((const void *)(ahi + 16 * b)));
        __m128 da = _mm_loadu_ps(ad + b);
        __m128 s4 = _mm_mul_ps(halves4(blk, bsize), da);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), expand4(s4), acc);
        __m128 asum = _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(as + b)));
        corr = _mm_fmadd_ps(s4, asum, corr);
        if (has_min) mins = _mm_fmadd_ps(_mm_mul_ps(halves4(blk + 2, bsize), da), asum, mins);
    }
    float total = _mm512_reduce_add_ps(acc) - (float)offset * hsum128(corr) + hsum128(mins);
    for (; b < nb; b++) { /* the last k/32 mod 4 blocks */
        const uint8_t *blk = wb + (size_t)b * bsize;
        __m128i q = _mm_loadu_si128((const __m128i *)(blk + qs_at));
        __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0f)), hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0f));
        if (has_qh) {
            uint32_t qh;
            memcpy(&qh, blk + qs_off, 4);
            lo = _mm_mask_add_epi8(lo, (__mmask16)(qh & 0xffff), lo, _mm_set1_epi8(0x10));
            hi = _mm_mask_add_epi8(hi, (__mmask16)(qh >> 16), hi, _mm_set1_epi8(0x10));
        }
        if (kind == NIB_IQ4_NL) {
            lo = _mm_shuffle_epi8(_mm512_castsi512_si128(table), lo);
            hi = _mm_shuffle_epi8(_mm512_castsi512_si128(table), hi);
        }
        __m128i p = _mm_dpbusd_epi32(_mm_setzero_si128(), lo, _mm_loadu_si128((const __m128i *)(alo + 16 * b)));
        p = _mm_dpbusd_epi32(p, hi, _mm_loadu_si128((const __m128i *)(ahi + 16 * b)));
        __m128i x = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
        x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xb1));
        int isum = _mm_cvtsi128_si32(x) - offset * as[b];
        uint16_t h;
        memcpy(&h, blk, 2);
        total += _cvtsh_ss(h) * ad[b] * (float)isum;
        if (has_min) {
            memcpy(&h, blk + 2, 2);
            total += _cvtsh_ss(h) * ad[b] * (float)as[b];
        }
    }
    return total;
}

static float p_vec_dot_q4_0(int64_t k, const void *w, const void *act) {
    return nibble_dot(k, w, act, NIB_Q4_0, sizeof(block_q4_0), 8);
}
static float p_vec_dot_q4_1(int64_t k, const void *w, const void *act) {
    return nibble_dot(k, w, act, NIB_Q4_1, sizeof(block_q4_1), 0);
}
static float p_vec_dot_q5_0(int64_t k, const void *w, const void *act) {
    return nibble_dot(k, w, act, NIB_Q5_0, sizeof(block_q5_0), 16);
}
static float p_vec_dot_q5_1(int64_t k, const void *w, const void *act) {
    return nibble_dot(k, w, act, NIB_Q5_1, sizeof(block_q5_1), 0);
}
static float p_vec_dot_iq4_nl(int64_t k, const void *w, const void *act) {
    return nibble_dot(k, w, act, NIB_IQ4_NL, sizeof(block_iq4_nl), 128);
}

/* q8_0: u = w + 128 (xor of the sign bit), two blocks per vector. */
static float p_vec_dot_q8_0(int64_t k, const void *w, const void *act) {
    const block_q8_0 *wb = w;
    const int64_t nb = k / SLM_QK;
    const int8_t *aq = act;
    const float *ad = slm_act_planar_d(act, k);
    const int32_t *as = slm_act_planar_sum(act, k);
    const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 corr = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m512i w01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[b].qs)),
                                         _mm256_loadu_si256((const __m256i *)wb[b + 1].qs), 1);
        __m512i w23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)wb[b + 2].qs)),
                                         _mm256_loadu_si256((const __m256i *)wb[b + 3].qs), 1);
        __m512i p01 = _mm512_dpbusd_epi32(zero, _mm512_xor_si512(w01, flip),
                                          _mm512_loadu_si512((const void *)(aq + 32 * b)));
        __m512i p23 = _mm512_dpbusd_epi32(zero, _mm512_xor_si512(w23, flip),
                                          _mm512_loadu_si512((const void *)(aq + 32 * b + 64)));
        __m128 s4 = _mm_mul_ps(halves4(&wb[b].d, sizeof(block_q8_0)), _mm_loadu_ps(ad + b));
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p01), expand8(s4, 0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p23), expand8(s4, 1), acc1);
        corr = _mm_fmadd_ps(s4, _mm_cvtepi32_ps(_mm_loadu_si128((const __m128i *)(as + b))), corr);
    }
    float total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - 128.0f * hsum128(corr);
    for (; b < nb; b++) {
        __m256i u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)wb[b].qs), _mm256_set1_epi8((char)0x80));
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, _mm256_loadu_si256((const __m256i *)(aq + 32 * b)));
        int isum = hsum_epi32_256(p) - 128 * as[b];
        total += half_to_f32(wb[b].d) * ad[b] * (float)isum;
    }
    return total;
}


/* ---- k-quant decode kernels: 64 elements per vector, sub-block scales spread over int16 lanes
 * by one permute, maddubs + vpdpwssd for the scaled integer sums. ---- */

/* q4_K / q5_K: the 8 six-bit scales (bytes 0..7) and mins (bytes 8..15) of a super-block. */
static inline __m128i kquant_scales_mins(const uint8_t scales[12]) {
    uint32_t u[4];
    memcpy(u, scales, 12);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    u[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & top2) << 4);
    uint32_t mins_lo = u[1] & low6;
    u[1] = (u[2] & low4) | (((u[0] >> 6) & top2) << 4);
    u[2] = mins_lo;
    u[0] &= low6;
    return _mm_loadu_si128((const __m128i *)u);
}

static float k_vec_dot_q4_K(int64_t k, const void *w, const void *act) {
    const block_q4_K *wb = w;
    const block_q8_K *ab = act;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    /* int16 lane i of the step-c scale vector takes scale 2c (i < 16) or 2c+1 */
    const __m512i pick[4] = {
        _mm512_set_epi64(0x0001000100010001LL, 0x0001000100010001LL, 0x0001000100010001LL, 0x0001000100010001LL, 0, 0, 0, 0),
        _mm512_set_epi64(0x0003000300030003LL, 0x0003000300030003LL, 0x0003000300030003LL, 0x0003000300030003LL,
                         0x0002000200020002LL, 0x0002000200020002LL, 0x0002000200020002LL, 0x0002000200020002LL),
        _mm512_set_epi64(0x0005000500050005LL, 0x0005000500050005LL, 0x0005000500050005LL, 0x0005000500050005LL,
                         0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL),
        _mm512_set_epi64(0x0007000700070007LL, 0x0007000700070007LL, 0x0007000700070007LL, 0x0007000700070007LL,
                         0x0006000600060006LL, 0x0006000600060006LL, 0x0006000600060006LL, 0x0006000600060006LL)};
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / SLM_QK_K; b++) {
        __m128i sm = kquant_scales_mins(wb[b].scales);
        __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_zextsi128_si256(sm));
        __m128i mins8 = _mm_srli_si128(sm, 8);
        __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        __m256i msum = _mm256_madd_epi16(mins16, _mm256_loadu_si256((const __m256i *)ab[b].bsums));
        const float da = ab[b].d;
        acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(-half_to_f32(wb[b].dmin) * da), acc_min);
        __m512i isum = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(wb[b].qs + 32 * c));
            __m512i u = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, m4)),
                                           _mm256_and_si256(_mm256_srli_epi16(q, 4), m4), 1);
            __m512i p = _mm512_maddubs_epi16(u, _mm512_loadu_si512((const void *)(ab[b].qs + 64 * c)));
            isum = _mm512_dpwssd_epi32(isum, p, _mm512_permutexvar_epi16(pick[c], sc16));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_to_f32(wb[b].d) * da), acc);
    }
    return _mm512_reduce_add_ps(acc) + hsum_ps_256(acc_min);
}

static float k_vec_dot_q6_K(int64_t k, const void *w, const void *act) {
    const block_q6_K *wb = w;
    const block_q8_K *ab = act;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m256i m2 = _mm256_set1_epi8(0x03);
    /* int16 lane i of the scale vector for 64 elements starting at group 4j takes scale 4j + i/8 */
    __m512i pick[4];
    for (int j = 0; j < 4; j++) {
        int16_t idx[32];
        for (int i = 0; i < 32; i++) idx[i] = (int16_t)(4 * j + i / 8);
        pick[j] = _mm512_loadu_si512((const void *)idx);
    }
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_off = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / SLM_QK_K; b++) {
        __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb[b].scales));
        __m512i sc16 = _mm512_castsi256_si512(sc);
        const float dd = half_to_f32(wb[b].d) * ab[b].d;
        /* u = q + 32: subtract 32 * sum over groups of scale * bsum */
        __m256i off = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)ab[b].bsums));
        acc_off = _mm256_fmadd_ps(_mm256_cvtepi32_ps(off), _mm256_set1_ps(-32.0f * dd), acc_off);
        __m512i isum = _mm512_setzero_si512();
        for (int n = 0; n < 2; n++) {
            __m512i l = _mm512_loadu_si512((const void *)(wb[b].ql + 64 * n));
            __m256i h = _mm256_loadu_si256((const __m256i *)(wb[b].qh + 32 * n));
            __m512i h01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(h, m2)),
                                             _mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 1);
            __m512i h23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2)),
                                             _mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 1);
            __m512i u01 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(h01, 4));
            __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_slli_epi16(h23, 4));
            const int8_t *a = ab[b].qs + 128 * n;
            __m512i p01 = _mm512_maddubs_epi16(u01, _mm512_loadu_si512((const void *)a));
            __m512i p23 = _mm512_maddubs_epi16(u23, _mm512_loadu_si512((const void *)(a + 64)));
            isum = _mm512_dpwssd_epi32(isum, p01, _mm512_permutexvar_epi16(pick[2 * n], sc16));
            isum = _mm512_dpwssd_epi32(isum, p23, _mm512_permutexvar_epi16(pick[2 * n + 1], sc16));
        }
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(dd), acc);
    }
    return _mm512_reduce_add_ps(acc) + hsum_ps_256(acc_off);
}


/* ---- float weights, 16 lanes; the tail (k mod 16) through a masked load ---- */

static inline __m512 load_f32_tail(const float *p, int64_t left) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << left) - 1), p);
}

/* 16 weights from element i on as floats; `mask` selects the lanes (all 16 except at the tail). */
static inline __attribute__((always_inline)) __m512 load_weights16(const void *w, int64_t i, __mmask16 mask,
                                                                   uint32_t type) {
    if (type == SLM_TYPE_F32) return _mm512_maskz_loadu_ps(mask, (const float *)w + i);
    __m256i h = _mm256_maskz_loadu_epi16(mask, (const uint16_t *)w + i);
    if (type == SLM_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* bf16: the high half of an f32 */
}

/* Two accumulators over 32-element steps, then 16, then the masked tail. */
static inline __attribute__((always_inline)) float float_dot(int64_t k, const void *w, const float *x, uint32_t type) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(load_weights16(w, i, 0xffff, type), _mm512_loadu_ps(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load_weights16(w, i + 16, 0xffff, type), _mm512_loadu_ps(x + i + 16), acc1);
    }
    for (; i + 16 <= k; i += 16) acc0 = _mm512_fmadd_ps(load_weights16(w, i, 0xffff, type), _mm512_loadu_ps(x + i), acc0);
    if (i < k)
        acc1 = _mm512_fmadd_ps(load_weights16(w, i, (__mmask16)((1u << (k - i)) - 1), type), load_f32_tail(x + i, k - i),
                               acc1);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

static float z_vec_dot_f32(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_F32);
}
static float z_vec_dot_f16(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_F16);
}
static float z_vec_dot_bf16(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_BF16);
}


/* ---- float-weight GEMM tile (kernels_impl.h, slm_float_gemm): two groups (32 rows) by up to 12
 * tokens = 24 zmm accumulators; per column, two aligned weight loads and one embedded-broadcast
 * FMA operand per token. The packing is kernels_simd.inc's. ---- */
#define Z_FGEMM_TOKENS 12

static inline __attribute__((always_inline)) void z_fgemm_micro(int64_t kb, const float *g0, const float *g1,
                                                                int ng, __mmask16 m0, __mmask16 m1, const float *x,
                                                                size_t x_stride, int nt, float *y, size_t y_stride,
                                                                bool accumulate) {
    __m512 acc0[Z_FGEMM_TOKENS], acc1[Z_FGEMM_TOKENS];
    _Pragma("GCC unroll 12")
    for (int j = 0; j < nt; j++) acc0[j] = acc1[j] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < kb; kk++) {
        const __m512 w0 = _mm512_load_ps(g0 + kk * SLM_FGEMM_GROUP);
        const __m512 w1 = ng == 2 ? _mm512_load_ps(g1 + kk * SLM_FGEMM_GROUP) : w0;
        _Pragma("GCC unroll 12")
        for (int j = 0; j < nt; j++) {
            const __m512 xv = _mm512_set1_ps(x[(size_t)j * x_stride + (size_t)kk]);
            acc0[j] = _mm512_fmadd_ps(w0, xv, acc0[j]);
            if (ng == 2) acc1[j] = _mm512_fmadd_ps(w1, xv, acc1[j]);
        }
    }
    _Pragma("GCC unroll 12")
    for (int j = 0; j < nt; j++) {
        float *out = y + (size_t)j * y_stride;
        if (accumulate) acc0[j] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), acc0[j]);
        _mm512_mask_storeu_ps(out, m0, acc0[j]);
        if (ng == 2) {
            if (accumulate) acc1[j] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, out + 16), acc1[j]);
            _mm512_mask_storeu_ps(out + 16, m1, acc1[j]);
        }
    }
}

#define Z_FGEMM_CASE(NG, NT)                                                                               \
    case NT: z_fgemm_micro(kb, g0, g1, NG, m0, m1, xt, x_stride, NT, yt, y_stride, accumulate); break

static inline __attribute__((always_inline)) void z_fgemm_rows(int64_t kb, const float *g0, const float *g1, int ng,
                                                               __mmask16 m0, __mmask16 m1, const float *x,
                                                               size_t x_stride, int nt, float *y, size_t y_stride,
                                                               bool accumulate) {
    int t = 0;
    for (; t + Z_FGEMM_TOKENS <= nt; t += Z_FGEMM_TOKENS)
        z_fgemm_micro(kb, g0, g1, ng, m0, m1, x + (size_t)t * x_stride, x_stride, Z_FGEMM_TOKENS,
                      y + (size_t)t * y_stride, y_stride, accumulate);
    const float *xt = x + (size_t)t * x_stride;
    float *yt = y + (size_t)t * y_stride;
    switch (nt - t) {
        Z_FGEMM_CASE(ng, 11);
        Z_FGEMM_CASE(ng, 10);
        Z_FGEMM_CASE(ng, 9);
        Z_FGEMM_CASE(ng, 8);
        Z_FGEMM_CASE(ng, 7);
        Z_FGEMM_CASE(ng, 6);
        Z_FGEMM_CASE(ng, 5);
        Z_FGEMM_CASE(ng, 4);
        Z_FGEMM_CASE(ng, 3);
        Z_FGEMM_CASE(ng, 2);
        Z_FGEMM_CASE(ng, 1);
    default: break;
    }
}

static inline __mmask16 z_rows_mask(int rows) {
    return rows >= 16 ? (__mmask16)0xffff : rows <= 0 ? (__mmask16)0 : (__mmask16)((1u << rows) - 1);
}

static void z_fgemm_tile(int64_t kb, const float *panel, size_t group_stride, int nr, const float *x,
                         size_t x_stride, int nt, float *y, size_t y_stride, bool accumulate) {
    for (int r = 0; r < nr; r += 2 * SLM_FGEMM_GROUP) {
        const float *g0 = panel + (size_t)(r / SLM_FGEMM_GROUP) * group_stride;
        const int rows = nr - r;
        if (rows > SLM_FGEMM_GROUP)
            z_fgemm_rows(kb, g0, g0 + group_stride, 2, z_rows_mask(rows), z_rows_mask(rows - SLM_FGEMM_GROUP), x,
                         x_stride, nt, y + r, y_stride, accumulate);
        else
            z_fgemm_rows(kb, g0, g0, 1, z_rows_mask(rows), 0, x, x_stride, nt, y + r, y_stride, accumulate);
    }
}

/* ---- GELU by table, 16 lanes (see simd_gelu); the tail through masks ---- */

static void z_gelu(int64_t n, float *x, const float *bias, const float *mul, const uint16_t *table) {
    const __m512 lo = _mm512_set1_ps(-10.0f), hi = _mm512_set1_ps(10.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
        const __mmask16 inside = _mm512_mask_cmp_ps_mask(m, v, lo, _CMP_GT_OQ) & _mm512_cmp_ps_mask(v, hi, _CMP_LT_OQ);
        const __m512i idx = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), inside, idx, table, 2);
        __m512 y = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        const __mmask16 keep = _mm512_cmp_ps_mask(v, hi, _CMP_GE_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        y = _mm512_mask_mov_ps(y, keep, v);
        if (mul) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(m, mul + i));
        _mm512_mask_storeu_ps(x + i, m, y);
    }
}

/* ---- slm_attend_f32 in blocks (head sizes 16..128 in steps of 16): K transposed once into
 * scratch (hd rows of n_pad keys, zero padded), scores of 4 queries x 32 keys per register tile
 * (the keys in the lanes, no horizontal sums), the vector softmax per query (simd_softmax), then
 * 4 queries x 32 output dims per tile summed over the keys. ---- */
#define ZA_QUERIES 4

static inline __attribute__((always_inline)) void za_scores(int nqb, const float *const *q, int64_t hd, const float *kt,
                                                           size_t n_pad, int j0, float scale, float *scores) {
    __m512 acc[ZA_QUERIES][2];
    for (int i = 0; i < nqb; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d++) {
        const __m512 k0 = _mm512_loadu_ps(kt + (size_t)d * n_pad + (size_t)j0);
        const __m512 k1 = _mm512_loadu_ps(kt + (size_t)d * n_pad + (size_t)j0 + 16);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < nqb; i++) {
            const __m512 qv = _mm512_set1_ps(q[i][d]);
            acc[i][0] = _mm512_fmadd_ps(k0, qv, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(k1, qv, acc[i][1]);
        }
    }
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int i = 0; i < nqb; i++) {
        _mm512_storeu_ps(scores + (size_t)i * n_pad + (size_t)j0, _mm512_mul_ps(acc[i][0], vscale));
        _mm512_storeu_ps(scores + (size_t)i * n_pad + (size_t)j0 + 16, _mm512_mul_ps(acc[i][1], vscale));
    }
}

/* out[i][d0 .. d0 + 16*nd) = sum over j < n of p[i][j] * V_j[d0 ..] for the nqb queries of a block */
static inline __attribute__((always_inline)) void za_weighted(int nqb, int nd, int n, const float *p, size_t n_pad,
                                                             const float *v, size_t stride, int64_t d0,
                                                             float *const *out) {
    __m512 acc[ZA_QUERIES][2];
    for (int i = 0; i < nqb; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        const float *vj = v + (size_t)j * stride + d0;
        const __m512 v0 = _mm512_loadu_ps(vj);
        const __m512 v1 = nd == 2 ? _mm512_loadu_ps(vj + 16) : v0;
        _Pragma("GCC unroll 4")
        for (int i = 0; i < nqb; i++) {
            const __m512 pv = _mm512_set1_ps(p[(size_t)i * n_pad + (size_t)j]);
            acc[i][0] = _mm512_fmadd_ps(v0, pv, acc[i][0]);
            if (nd == 2) acc[i][1] = _mm512_fmadd_ps(v1, pv, acc[i][1]);
        }
    }
    for (int i = 0; i < nqb; i++) {
        _mm512_storeu_ps(out[i] + d0, acc[i][0]);
        if (nd == 2) _mm512_storeu_ps(out[i] + d0 + 16, acc[i][1]);
    }
}

static inline __attribute__((always_inline)) void za_block(int nqb, int n, int64_t hd, const float *const *q,
                                                          const float *kt, const float *v, size_t stride, size_t n_pad,
                                                          float scale, float *scores, float *const *out) {
    for (int j0 = 0; j0 < n; j0 += 32) za_scores(nqb, q, hd, kt, n_pad, j0, scale, scores);
    for (int i = 0; i < nqb; i++) simd_softmax(n, scores + (size_t)i * n_pad);
    int64_t d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) za_weighted(nqb, 2, n, scores, n_pad, v, stride, d0, out);
    if (d0 < hd) za_weighted(nqb, 1, n, scores, n_pad, v, stride, d0, out);
}

static void z_attend_f32(int nq, int n, int64_t hd, const float *const *q, const float *k, const float *v,
                         size_t stride, float scale, float *scratch, float *const *out) {
    if (hd % 16 != 0 || hd > 128) {
        slm_attend_f32_rows(slm_kernels_for_isa(SLM_ISA_AVX512), nq, n, hd, q, k, v, stride, scale, scratch, out);
        return;
    }
    /* 32-key score tiles reach n rounded up to 32: the transposed K is zero padded that far
     * (slm_attend_f32_scratch: the scores of one block of queries, then K) */
    const size_t n_tile = ((size_t)n + 31) & ~(size_t)31;
    float *scores = scratch, *kt = scratch + (size_t)ZA_QUERIES * n_tile;
    for (int64_t d = 0; d < hd; d++) {
        float *row = kt + (size_t)d * n_tile;
        for (int j = 0; j < n; j++) row[j] = k[(size_t)j * stride + (size_t)d];
        for (size_t j = (size_t)n; j < n_tile; j++) row[j] = 0.0f;
    }
    int i = 0;
    for (; i + ZA_QUERIES <= nq; i += ZA_QUERIES)
        za_block(ZA_QUERIES, n, hd, q + i, kt, v, stride, n_tile, scale, scores, out + i);
    switch (nq - i) {
    case 3: za_block(3, n, hd, q + i, kt, v, stride, n_tile, scale, scores, out + i); break;
    case 2: za_block(2, n, hd, q + i, kt, v, stride, n_tile, scale, scores, out + i); break;
    case 1: za_block(1, n, hd, q + i, kt, v, stride, n_tile, scale, scores, out + i); break;
    default: break;
    }
}

/* ---- attention rows with 16-lane vectors (head sizes 16..128 in steps of 16), same structure
 * as attend_one in kernels_simd.inc ---- */

static inline __attribute__((always_inline)) void z_attend_one(int n, int chunks, const float *q, const uint16_t *k,
                                                              const uint16_t *v, size_t stride, float scale,
                                                              float *scores, float *out) {
    __m512 qv[8];
    for (int c = 0; c < chunks; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
    const __m256 vscale = _mm256_set1_ps(scale);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 half[8];
        for (int p = 0; p < 8; p++) {
            const uint16_t *r = k + (size_t)(j + p) * stride;
            __m512 acc = _mm512_mul_ps(qv[0], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)r)));
            for (int c = 1; c < chunks; c++)
                acc = _mm512_fmadd_ps(qv[c], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * c))), acc);
            half[p] = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
        }
        _mm256_storeu_ps(scores + j, _mm256_mul_ps(hsum8_ps(half), vscale));
    }
    for (; j < n; j++) {
        const uint16_t *r = k + (size_t)j * stride;
        __m512 acc = _mm512_mul_ps(qv[0], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)r)));
        for (int c = 1; c < chunks; c++)
            acc = _mm512_fmadd_ps(qv[c], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * c))), acc);
        scores[j] = scale * _mm512_reduce_add_ps(acc);
    }
    simd_softmax(n, scores);
    __m512 acc[8];
    for (int c = 0; c < chunks; c++) acc[c] = _mm512_setzero_ps();
    for (j = 0; j < n; j++) {
        const uint16_t *r = v + (size_t)j * stride;
        __m512 pj = _mm512_set1_ps(scores[j]);
        for (int c = 0; c < chunks; c++)
            acc[c] = _mm512_fmadd_ps(pj, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + 16 * c))), acc[c]);
    }
    for (int c = 0; c < chunks; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

static void z_attend_f16(int nq, const int *n, int64_t hd, const float *const *q, const uint16_t *k,
                         const uint16_t *v, size_t stride, float scale, float *scratch, float *const *out) {
    for (int i = 0; i < nq; i++) {
        switch (hd) {
        case 16: z_attend_one(n[i], 1, q[i], k, v, stride, scale, scratch, out[i]); break;
        case 32: z_attend_one(n[i], 2, q[i], k, v, stride, scale, scratch, out[i]); break;
        case 64: z_attend_one(n[i], 4, q[i], k, v, stride, scale, scratch, out[i]); break;
        case 128: z_attend_one(n[i], 8, q[i], k, v, stride, scale, scratch, out[i]); break;
        default: simd_attend_f16(1, n + i, hd, q + i, k, v, stride, scale, scratch, out + i); break;
        }
    }
}

/* Planar quantizers: the integers and scales of simd_quantize_q8, laid out for the kernels above. */
static inline __attribute__((always_inline)) void quantize_planar(int64_t k, const float *x, void *dst, bool split) {
    int8_t *qs = dst;
    float *d = (float *)((uint8_t *)dst + k);
    int32_t *sum = (int32_t *)((uint8_t *)dst + k + (k / SLM_QK) * 4);
    int32_t *sum_lo = (int32_t *)((uint8_t *)dst + k + (k / SLM_QK) * 8);
    for (int64_t b = 0; b < k / SLM_QK; b++) {
        const float *xb = x + b * SLM_QK;
        float db = amax_n(xb, SLM_QK) / 127.0f;
        float id = db != 0.0f ? 1.0f / db : 0.0f;
        int8_t tmp[SLM_QK];
        sum[b] = quantize_32(xb, id, tmp);
        d[b] = db;
        int32_t lo = 0;
        for (int i = 0; i < SLM_QK / 2; i++) lo += tmp[i];
        sum_lo[b] = lo;
        if (split) {
            memcpy(qs + 16 * b, tmp, 16);
            memcpy(qs + k / 2 + 16 * b, tmp + 16, 16);
        } else {
            memcpy(qs + 32 * b, tmp, 32);
        }
    }
}

static void quantize_q8p(int64_t k, const float *x, void *dst) {
    quantize_planar(k, x, dst, false);
}

static void quantize_q8ps(int64_t k, const float *x, void *dst) {
    quantize_planar(k, x, dst, true);
}

static void slm_kernels_fill_avx512_planar(slm_kernel_table *t) {
    t->quantize_q8p = quantize_q8p;
    t->quantize_q8ps = quantize_q8ps;
    t->types[SLM_TYPE_Q8_0] = (slm_type_kernels){SLM_ACT_Q8P, p_vec_dot_q8_0, NULL};
    t->types[SLM_TYPE_Q4_0] = (slm_type_kernels){SLM_ACT_Q8PS, p_vec_dot_q4_0, NULL};
    t->types[SLM_TYPE_Q4_1] = (slm_type_kernels){SLM_ACT_Q8PS, p_vec_dot_q4_1, NULL};
    t->types[SLM_TYPE_Q5_0] = (slm_type_kernels){SLM_ACT_Q8PS, p_vec_dot_q5_0, NULL};
    t->types[SLM_TYPE_Q5_1] = (slm_type_kernels){SLM_ACT_Q8PS, p_vec_dot_q5_1, NULL};
    t->types[SLM_TYPE_IQ4_NL] = (slm_type_kernels){SLM_ACT_Q8PS, p_vec_dot_iq4_nl, NULL};
    t->types[SLM_TYPE_Q4_K].vec_dot = k_vec_dot_q4_K;
    t->types[SLM_TYPE_F32].vec_dot = z_vec_dot_f32;
    t->attend_f16 = z_attend_f16;
    t->types[SLM_TYPE_F16].vec_dot = z_vec_dot_f16;
    t->fgemm.tile = z_fgemm_tile;
    t->gelu = z_gelu;
    t->attend_f32 = z_attend_f32;
    t->types[SLM_TYPE_BF16].vec_dot = z_vec_dot_bf16;
    t->types[SLM_TYPE_Q6_K].vec_dot = k_vec_dot_q6_K;
}

void slm_kernels_fill_avx512(slm_kernel_table *t) {
    simd_fill_table(t);
    slm_kernels_fill_avx512_planar(t);
}
