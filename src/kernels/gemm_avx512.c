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

static void unpack_legacy(uint32_t type, const void *blk, int8_t q[SLM_QK], float *d, float *m, int *offset) {
    switch (type) {
    case SLM_TYPE_Q4_0: slm_unpack_q4_0(blk, q, d, m); *offset = 8; break;
    case SLM_TYPE_Q4_1: slm_unpack_q4_1(blk, q, d, m); *offset = 0; break;
    case SLM_TYPE_Q5_0: slm_unpack_q5_0(blk, q, d, m); *offset = 16; break;
    case SLM_TYPE_Q5_1: slm_unpack_q5_1(blk, q, d, m); *offset = 0; break;
    case SLM_TYPE_Q8_0: slm_unpack_q8_0(blk, q, d, m); *offset = 128; break;
    default: slm_unpack_iq4_nl(blk, q, d, m); *offset = 128; break;
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

static void unpack_row(uint32_t type, int64_t k, const void *row, uint8_t *dst) {
    const int64_t kp = padded_k(k), ng = padded_groups(k);
    uint8_t *u = dst;
    float *ws = (float *)(dst + kp), *mw = (float *)(dst + 2 * kp);
    memset(dst, 0, canonical_row_bytes(k));
    const slm_type_info *ti = slm_type_info_get(type);
    const uint8_t *src = row;
    if (ti->block_size == SLM_QK) {
        for (int64_t b = 0; b < k / SLM_QK; b++) {
            int8_t q[SLM_QK];
            float d, m;
            int offset;
            unpack_legacy(type, src + (size_t)b * (size_t)ti->type_size, q, &d, &m, &offset);
            for (int i = 0; i < SLM_QK; i++) u[b * SLM_QK + i] = (uint8_t)(q[i] + offset);
            for (int i = 0; i < SLM_QK / 4; i++) ws[b * (SLM_QK / 4) + i] = d;
            mw[2 * b] = mw[2 * b + 1] = m - (float)offset * d;
        }
    } else {
        for (int64_t b = 0; b < k / SLM_QK_K; b++) {
            slm_kblock kb;
            int offset = unpack_kquant(type, src + (size_t)b * (size_t)ti->type_size, &kb);
            for (int i = 0; i < SLM_QK_K; i++) u[b * SLM_QK_K + i] = (uint8_t)(kb.q[i] + offset);
            for (int g = 0; g < SLM_QK_K / 16; g++) {
                float scale = kb.d * (float)kb.scale[g];
                for (int i = 0; i < 4; i++) ws[b * (SLM_QK_K / 4) + g * 4 + i] = scale;
                mw[b * (SLM_QK_K / 16) + g] = -kb.dmin * (float)kb.min[g] - (float)offset * scale;
            }
        }
    }
    (void)ng;
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

/* NR x NT outputs; NR, NT are constants after inlining. */
static inline __attribute__((always_inline)) void tile(int64_t k, const uint8_t *w, size_t w_stride, int NR,
                                                       const uint8_t *x, size_t x_stride, int NT, float *y,
                                                       size_t y_stride) {
    const int64_t kp = padded_k(k), ng = padded_groups(k);
    __m512 acc[4][4];
    _Pragma("GCC unroll 4")
    for (int r = 0; r < NR; r++)
        _Pragma("GCC unroll 4")
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    for (int64_t p = 0; p < kp / 64; p++) {
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
    for (int64_t g = 0; g < ng / 16; g++) {
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
        for (int t = 0; t < NT; t++) y[(size_t)t * y_stride + r] = _mm512_reduce_add_ps(acc[r][t]);
}

#define TILE_CASE(R, T) \
    case (R) * 8 + (T): tile(k, w, w_stride, R, x, x_stride, T, y, y_stride); break;

static void gemm_tile(int64_t k, const uint8_t *w, size_t w_stride, int nr, const uint8_t *x, size_t x_stride, int nt,
                      float *y, size_t y_stride) {
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
}
