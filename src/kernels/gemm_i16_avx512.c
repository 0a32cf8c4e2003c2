/* The 16-bit integer GEMM of encoders' F16 weights (kernels_impl.h, slm_i16_gemm) on AVX-512 VNNI:
 * vpdpwssd adds 32 int16 products per instruction into 16 int32 sums, twice the products of an
 * f32 FMA at the same instruction rate, and the sums are exact. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"

/* 0x99: quiet NaN, signalling NaN, +infinity, -infinity */
#define NOT_FINITE 0x99

/* x * (8191 / amax) rounded to nearest even and clamped, 16 lanes as int32; inv 0 (a zero or
 * non-finite block or row, whose scale says what it is) gives zeros. */
static inline __m512i scale_round(__m512 x, float inv) {
    if (inv == 0.0f) return _mm512_setzero_si512();
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(inv)));
    return _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(SLM_I16_QMAX)), _mm512_set1_epi32(-SLM_I16_QMAX));
}

/* The scale of values whose largest magnitude is amax (any non-finite value: NaN), and the
 * multiplier that maps them to integers (0 when there is nothing to scale). */
static inline void scale_of(float amax, bool finite, float *scale, float *inv) {
    if (!finite) {
        *scale = NAN;
        *inv = 0.0f;
    } else if (amax >= 0x1p-100f) { /* below, 8191 / amax could overflow: such a block counts as zero */
        *scale = amax / (float)SLM_I16_QMAX;
        *inv = (float)SLM_I16_QMAX / amax;
    } else {
        *scale = 0.0f;
        *inv = 0.0f;
    }
}

static void i16_quantize(int64_t k, const float *x, uint8_t *dst) {
    int16_t *q = (int16_t *)(void *)dst;
    float *d = (float *)(void *)(dst + (size_t)k * sizeof(int16_t));
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < k / SLM_I16_BLOCK; b++) {
        const float *xb = x + b * SLM_I16_BLOCK;
        const __m512 lo = _mm512_loadu_ps(xb), hi = _mm512_loadu_ps(xb + 16);
        const bool finite = !(_mm512_fpclass_ps_mask(lo, NOT_FINITE) | _mm512_fpclass_ps_mask(hi, NOT_FINITE));
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(lo, abs_mask), _mm512_and_ps(hi, abs_mask)));
        float inv;
        scale_of(amax, finite, &d[b], &inv);
        const __m512i packed = _mm512_packs_epi32(scale_round(lo, inv), scale_round(hi, inv));
        /* packs interleaves 128-bit lanes: [lo0 hi0 lo1 hi1 ...] per 4+4 values; put them in order */
        const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
        _mm512_storeu_si512(q + b * SLM_I16_BLOCK, _mm512_permutexvar_epi64(order, packed));
    }
}

static void i16_pack(int64_t k, const uint8_t *rows, size_t row_bytes, int nr, uint8_t *dst) {
    float *scales = (float *)(void *)dst;
    uint32_t *words = (uint32_t *)(void *)(dst + 64);
    const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int r = 0; r < SLM_I16_GROUP; r++) {
        if (r >= nr) {
            scales[r] = 0.0f;
            for (int64_t p = 0; p < k / 2; p++) words[(size_t)p * SLM_I16_GROUP + r] = 0;
            continue;
        }
        const uint16_t *src = (const uint16_t *)(const void *)(rows + (size_t)r * row_bytes);
        __m512 vmax = _mm512_setzero_ps();
        __mmask16 bad = 0;
        for (int64_t i = 0; i < k; i += 16) {
            const __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i)));
            bad |= _mm512_fpclass_ps_mask(v, NOT_FINITE);
            vmax = _mm512_max_ps(vmax, _mm512_and_ps(v, abs_mask));
        }
        float inv;
        scale_of(_mm512_reduce_max_ps(vmax), bad == 0, &scales[r], &inv);
        for (int64_t i = 0; i < k; i += 32) {
            const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i)));
            const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + i + 16)));
            const __m512i packed = _mm512_packs_epi32(scale_round(lo, inv), scale_round(hi, inv));
            uint32_t pairs[16];
            _mm512_storeu_si512(pairs, _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), packed));
            for (int j = 0; j < 16; j++) words[(size_t)(i / 2 + j) * SLM_I16_GROUP + r] = pairs[j];
        }
    }
}

/* acc += pairwise products of w and the int16 pair at `pair` broadcast to every lane. In asm
 * because GCC 12 copies the accumulator of _mm512_dpwssd_epi32 to a new register and back around
 * every instruction (two moves per product instruction here) and does not fold the broadcast. */
static inline __attribute__((always_inline)) void dpwssd_bcast(__m512i *acc, __m512i w, const int16_t *pair) {
    __asm__("vpdpwssd %[x]%{1to16%}, %[w], %[acc]" : [acc] "+v"(*acc) : [w] "v"(w), [x] "m"(*(const int32_t *)(const void *)pair));
}

/* Two groups (32 rows) by up to 6 tokens: 12 int32 block sums and 12 f32 sums in registers; per
 * pair of columns two aligned weight loads and one broadcast pair of activations per token. */
#define I16_TOKENS 6

static inline __attribute__((always_inline)) void i16_micro(int64_t k, int64_t k0, int64_t kb, const uint8_t *g0,
                                                            const uint8_t *g1, int ng, __mmask16 m0, __mmask16 m1,
                                                            const uint8_t *act, size_t act_stride, int nt, float *y,
                                                            size_t y_stride, bool accumulate) {
    __m512 f0[I16_TOKENS], f1[I16_TOKENS];
    const int16_t *xq[I16_TOKENS];
    const float *xd[I16_TOKENS];
    _Pragma("GCC unroll 6")
    for (int j = 0; j < nt; j++) {
        f0[j] = f1[j] = _mm512_setzero_ps();
        xq[j] = (const int16_t *)(const void *)(act + (size_t)j * act_stride) + k0;
        xd[j] = (const float *)(const void *)(act + (size_t)j * act_stride + (size_t)k * sizeof(int16_t)) +
                k0 / SLM_I16_BLOCK;
    }
    const uint8_t *w0 = g0 + 64 + (size_t)k0 * SLM_I16_GROUP * sizeof(int16_t);
    const uint8_t *w1 = g1 + 64 + (size_t)k0 * SLM_I16_GROUP * sizeof(int16_t);
    for (int64_t b = 0; b < kb / SLM_I16_BLOCK; b++) {
        __m512i s0[I16_TOKENS], s1[I16_TOKENS];
        _Pragma("GCC unroll 6")
        for (int j = 0; j < nt; j++) s0[j] = s1[j] = _mm512_setzero_si512();
        for (int p = 0; p < SLM_I16_BLOCK / 2; p++) {
            const size_t at = ((size_t)b * (SLM_I16_BLOCK / 2) + (size_t)p) * 64;
            const __m512i a0 = _mm512_load_si512((const void *)(w0 + at));
            const __m512i a1 = ng == 2 ? _mm512_load_si512((const void *)(w1 + at)) : a0;
            _Pragma("GCC unroll 6")
            for (int j = 0; j < nt; j++) {
                const int16_t *pair = xq[j] + b * SLM_I16_BLOCK + 2 * p;
                dpwssd_bcast(&s0[j], a0, pair);
                if (ng == 2) dpwssd_bcast(&s1[j], a1, pair);
            }
        }
        _Pragma("GCC unroll 6")
        for (int j = 0; j < nt; j++) {
            const __m512 d = _mm512_set1_ps(xd[j][b]);
            f0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[j]), d, f0[j]);
            if (ng == 2) f1[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[j]), d, f1[j]);
        }
    }
    const __m512 sc0 = _mm512_load_ps((const void *)g0), sc1 = _mm512_load_ps((const void *)g1);
    _Pragma("GCC unroll 6")
    for (int j = 0; j < nt; j++) {
        float *out = y + (size_t)j * y_stride;
        __m512 r0 = _mm512_mul_ps(f0[j], sc0);
        if (accumulate) r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, out), r0);
        _mm512_mask_storeu_ps(out, m0, r0);
        if (ng == 2) {
            __m512 r1 = _mm512_mul_ps(f1[j], sc1);
            if (accumulate) r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, out + 16), r1);
            _mm512_mask_storeu_ps(out + 16, m1, r1);
        }
    }
}

#define I16_CASE(NG, NT)                                                                                        \
    case NT:                                                                                                    \
        i16_micro(k, k0, kb, g0, g1, NG, m0, m1, act + (size_t)t * act_stride, act_stride, NT,                 \
                  y + (size_t)t * y_stride, y_stride, accumulate);                                            \
        break

static inline __attribute__((always_inline)) void i16_rows(int64_t k, int64_t k0, int64_t kb, const uint8_t *g0,
                                                           const uint8_t *g1, int ng, __mmask16 m0, __mmask16 m1,
                                                           const uint8_t *act, size_t act_stride, int nt, float *y,
                                                           size_t y_stride, bool accumulate) {
    int t = 0;
    for (; t + I16_TOKENS <= nt; t += I16_TOKENS)
        i16_micro(k, k0, kb, g0, g1, ng, m0, m1, act + (size_t)t * act_stride, act_stride, I16_TOKENS,
                  y + (size_t)t * y_stride, y_stride, accumulate);
    switch (nt - t) {
        I16_CASE(ng, 5);
        I16_CASE(ng, 4);
        I16_CASE(ng, 3);
        I16_CASE(ng, 2);
        I16_CASE(ng, 1);
    default: break;
    }
}

static inline __mmask16 rows_mask(int rows) {
    return rows >= 16 ? (__mmask16)0xffff : rows <= 0 ? (__mmask16)0 : (__mmask16)((1u << rows) - 1);
}

static void i16_tile(int64_t k, int64_t k0, int64_t kb, const uint8_t *panel, size_t group_bytes, int nr,
                     const uint8_t *act, size_t act_stride, int nt, float *y, size_t y_stride, bool accumulate) {
    for (int r = 0; r < nr; r += 2 * SLM_I16_GROUP) {
        const uint8_t *g0 = panel + (size_t)(r / SLM_I16_GROUP) * group_bytes;
        const int rows = nr - r;
        if (rows > SLM_I16_GROUP)
            i16_rows(k, k0, kb, g0, g0 + group_bytes, 2, rows_mask(rows), rows_mask(rows - SLM_I16_GROUP), act,
                     act_stride, nt, y + r, y_stride, accumulate);
        else
            i16_rows(k, k0, kb, g0, g0, 1, rows_mask(rows), 0, act, act_stride, nt, y + r, y_stride, accumulate);
    }
}

void slm_kernels_fill_i16_avx512(slm_kernel_table *t) {
    t->i16 = (slm_i16_gemm){i16_pack, i16_quantize, i16_tile};
}
