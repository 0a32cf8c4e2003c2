/* Reference (scalar) dequantizers and quantizers for the GGUF block formats. Arithmetic is done in
 * float in the same order as ggml's to_float so results match bit for bit; these are the ground
 * truth the SIMD kernels are tested against, so clarity wins over speed here. */
#include "tensor/quant.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q5_0) == 22 &&
                   sizeof(block_q5_1) == 24 && sizeof(block_q8_0) == 34 && sizeof(block_q8_1) == 36 &&
                   sizeof(block_iq4_nl) == 18,
               "legacy block layouts must match GGUF");
_Static_assert(sizeof(block_q2_K) == 84 && sizeof(block_q3_K) == 110 && sizeof(block_q4_K) == 144 &&
                   sizeof(block_q5_K) == 176 && sizeof(block_q6_K) == 210 && sizeof(block_q8_K) == 292,
               "k-quant block layouts must match GGUF");

static void dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = slm_fp16_to_fp32(h);
    }
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = slm_bf16_to_fp32(h);
    }
}

static void dequant_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d);
        for (int j = 0; j < SLM_QK; j++) y[i * SLM_QK + j] = (float)x[i].qs[j] * d;
    }
}

static void dequant_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += SLM_QK) {
        const float d = slm_fp16_to_fp32(x[i].d);
        for (int j = 0; j < SLM_QK / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + SLM_QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += SLM_QK) {
        const float d = slm_fp16_to_fp32(x[i].d), m = slm_fp16_to_fp32(x[i].m);
        for (int j = 0; j < SLM_QK / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
            y[j + SLM_QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* Fifth bit of element j (and j + 16) lives in bit j (j + 16) of the little-endian qh word. */
static void dequant_q5_0(const block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += SLM_QK) {
        const float d = slm_fp16_to_fp32(x[i].d);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < SLM_QK / 2; j++) {
            const int hi0 = (int)((qh >> j) & 1) << 4, hi1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(((x[i].qs[j] & 0x0f) | hi0) - 16) * d;
            y[j + SLM_QK / 2] = (float)(((x[i].qs[j] >> 4) | hi1) - 16) * d;
        }
    }
}

static void dequant_q5_1(const block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += SLM_QK) {
        const float d = slm_fp16_to_fp32(x[i].d), m = slm_fp16_to_fp32(x[i].m);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < SLM_QK / 2; j++) {
            const int hi0 = (int)((qh >> j) & 1) << 4, hi1 = (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)((x[i].qs[j] & 0x0f) | hi0) * d + m;
            y[j + SLM_QK / 2] = (float)((x[i].qs[j] >> 4) | hi1) * d + m;
        }
    }
}

static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

static void dequant_iq4_nl(const block_iq4_nl *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += SLM_QK) {
        const float d = slm_fp16_to_fp32(x[i].d);
        for (int j = 0; j < SLM_QK / 2; j++) {
            y[j] = d * (float)iq4nl_values[x[i].qs[j] & 0x0f];
            y[j + SLM_QK / 2] = d * (float)iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

/* 16 sub-blocks of 16: each scale byte holds a 4-bit scale (low) and 4-bit min (high); the 2-bit
 * quants of 128 elements share 32 bytes, one bit pair per 32-element group. */
static void dequant_q2_K(const block_q2_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d), dmin = slm_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * part + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* The 16 6-bit scales of q3_K are packed into 12 bytes: low nibbles in bytes 0..7 (two per byte),
 * the high 2 bits in bytes 8..11. */
static void unpack_q3_K_scales(const uint8_t raw[12], int scales[16]) {
    for (int j = 0; j < 16; j++) {
        const int low = j < 8 ? (raw[j] & 0x0f) : (raw[j - 8] >> 4);
        const int high = (raw[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (low | high << 4) - 32;
    }
}

static void dequant_q3_K(const block_q3_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d);
        int scales[16];
        unpack_q3_K_scales(x[i].scales, scales);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t mask = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, mask <<= 1) {
                for (int part = 0; part < 2; part++) {
                    const float dl = d * (float)scales[is++];
                    for (int l = 0; l < 16; l++) {
                        const int k = 16 * part + l;
                        const int v = ((q[k] >> shift) & 3) - ((hm[k] & mask) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Scale and min of sub-block j (0..7) of q4_K/q5_K as bytes (slm_kquant_scale_min). */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    int s, mn;
    slm_kquant_scale_min(j, q, &s, &mn);
    *sc = (uint8_t)s;
    *m = (uint8_t)mn;
}

static void dequant_q4_K(const block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d), dmin = slm_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequant_q5_K(const block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d), dmin = slm_fp16_to_fp32(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32) {
            uint8_t sc, m;
            scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void dequant_q6_K(const block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = slm_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < 2; n++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void dequant_q8_K(const block_q8_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < SLM_QK_K; j++) *y++ = x[i].d * (float)x[i].qs[j];
}

void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case SLM_TYPE_F32: dequant_f32(src, dst, n); break;
    case SLM_TYPE_F16: dequant_f16(src, dst, n); break;
    case SLM_TYPE_BF16: dequant_bf16(src, dst, n); break;
    case SLM_TYPE_Q8_0: dequant_q8_0(src, dst, n / SLM_QK); break;
    case SLM_TYPE_Q4_0: dequant_q4_0(src, dst, n / SLM_QK); break;
    case SLM_TYPE_Q4_1: dequant_q4_1(src, dst, n / SLM_QK); break;
    case SLM_TYPE_Q5_0: dequant_q5_0(src, dst, n / SLM_QK); break;
    case SLM_TYPE_Q5_1: dequant_q5_1(src, dst, n / SLM_QK); break;
    case SLM_TYPE_IQ4_NL: dequant_iq4_nl(src, dst, n / SLM_QK); break;
    case SLM_TYPE_Q2_K: dequant_q2_K(src, dst, n / SLM_QK_K); break;
    case SLM_TYPE_Q3_K: dequant_q3_K(src, dst, n / SLM_QK_K); break;
    case SLM_TYPE_Q4_K: dequant_q4_K(src, dst, n / SLM_QK_K); break;
    case SLM_TYPE_Q5_K: dequant_q5_K(src, dst, n / SLM_QK_K); break;
    case SLM_TYPE_Q6_K: dequant_q6_K(src, dst, n / SLM_QK_K); break;
    case SLM_TYPE_Q8_K: dequant_q8_K(src, dst, n / SLM_QK_K); break;
    default: break; /* unknown types are rejected when the file is loaded */
    }
}

/* ---- reference quantizers ----
 * These follow ggml's quantize_row_*_ref step for step, float operation for float operation, so a
 * file quantized here is byte-identical to one from llama-quantize without an importance matrix.
 * Input is trusted to be finite for that guarantee; non-finite input still yields a well-defined
 * (if meaningless) block, never undefined behaviour: every float-to-int conversion is clamped. */

#define GROUP_MAX_EPS 1e-15f

static inline int min_i(int a, int b) { return a < b ? a : b; }
static inline int max_i(int a, int b) { return a > b ? a : b; }

static inline int nearest_int(float v) { return slm_nearest_int(v); }

/* C's float-to-int truncation, for values the reference converts with a plain cast, but clamped
 * into [lo, hi] (NaN to lo) so that no input makes the conversion undefined. */
static inline int trunc_clamped(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

static void quant_q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < SLM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        for (int j = 0; j < SLM_QK; j++) y[i].qs[j] = (int8_t)trunc_clamped(roundf(x[j] * id), -127, 127);
    }
}

static void quant_q8_1(const float *x, block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < SLM_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < SLM_QK; j++) {
            y[i].qs[j] = (int8_t)trunc_clamped(roundf(x[j] * id), -127, 127);
            sum += y[i].qs[j];
        }
        y[i].s = slm_fp32_to_fp16((float)sum * d);
    }
}

/* The signed value of largest magnitude (the first one on ties), as the symmetric formats use. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void quant_q4_0(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        const float d = signed_absmax(x, SLM_QK) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        for (int j = 0; j < SLM_QK / 2; j++) {
            const int q0 = trunc_clamped(x[j] * id + 8.5f, 0, 15);
            const int q1 = trunc_clamped(x[j + SLM_QK / 2] * id + 8.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void min_max(const float *x, int n, float *min, float *max) {
    *min = FLT_MAX;
    *max = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min) *min = x[j];
        if (x[j] > *max) *max = x[j];
    }
}

static void quant_q4_1(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        float min, max;
        min_max(x, SLM_QK, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        y[i].m = slm_fp32_to_fp16(min);
        for (int j = 0; j < SLM_QK / 2; j++) {
            const int q0 = trunc_clamped((x[j] - min) * id + 0.5f, 0, 15);
            const int q1 = trunc_clamped((x[j + SLM_QK / 2] - min) * id + 0.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Packs 32 5-bit quants: low nibbles pairwise into qs, fifth bits into the little-endian qh word. */
static void pack_q5(const int q[SLM_QK], uint8_t qs[SLM_QK / 2], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < SLM_QK / 2; j++) {
        const int q0 = q[j], q1 = q[j + SLM_QK / 2];
        qs[j] = (uint8_t)((q0 & 0x0f) | (q1 & 0x0f) << 4);
        qh |= (uint32_t)((q0 >> 4) & 1) << j;
        qh |= (uint32_t)((q1 >> 4) & 1) << (j + SLM_QK / 2);
    }
    for (int b = 0; b < 4; b++) qh_out[b] = (uint8_t)(qh >> (8 * b));
}

static void quant_q5_0(const float *x, block_q5_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        const float d = signed_absmax(x, SLM_QK) / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        int q[SLM_QK];
        for (int j = 0; j < SLM_QK; j++) q[j] = trunc_clamped(x[j] * id + 16.5f, 0, 31);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

static void quant_q5_1(const float *x, block_q5_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        float min, max;
        min_max(x, SLM_QK, &min, &max);
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = slm_fp32_to_fp16(d);
        y[i].m = slm_fp32_to_fp16(min);
        int q[SLM_QK];
        for (int j = 0; j < SLM_QK; j++) q[j] = trunc_clamped((x[j] - min) * id + 0.5f, 0, 31);
        pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Index of the non-linear level nearest to v (levels ascending; ties go up). */
static int nearest_level(const int8_t *levels, int n, float v) {
    if (v <= levels[0]) return 0;
    if (v >= levels[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < levels[mid]) hi = mid;
        else lo = mid;
    }
    return v - levels[hi - 1] < levels[hi] - v ? hi - 1 : hi;
}

/* ggml's reference iq4_nl: map the extreme value onto the outermost level, then refit the scale by
 * weighted least squares (weights x^2) to the chosen levels. */
static void quant_iq4_nl(const float *x, block_iq4_nl *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK) {
        uint8_t L[SLM_QK] = {0};
        const float max = signed_absmax(x, SLM_QK), amax = fabsf(max);
        float d = 0.0f;
        if (amax >= GROUP_MAX_EPS) {
            const float id = 1.0f / (max / (float)iq4nl_values[0]);
            float sumqx = 0.0f, sumq2 = 0.0f;
            for (int j = 0; j < SLM_QK; j++) {
                const int l = nearest_level(iq4nl_values, 16, id * x[j]);
                L[j] = (uint8_t)l;
                const float q = iq4nl_values[l], w = x[j] * x[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            d = sumqx / sumq2;
        }
        y[i].d = slm_fp32_to_fp16(d);
        for (int j = 0; j < SLM_QK / 2; j++) y[i].qs[j] = (uint8_t)(L[j] | L[j + SLM_QK / 2] << 4);
    }
}

static void quant_q8_K(const float *x, block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        const float max = signed_absmax(x, SLM_QK_K);
        if (max == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* -127 rather than -128 keeps every quant in [-127, 127], which the integer dot products
         * of the SIMD kernels rely on (sign tricks cannot represent -128 negated). */
        const float iscale = -127.0f / max;
        for (int j = 0; j < SLM_QK_K; j++) y[i].qs[j] = (int8_t)max_i(-128, min_i(127, nearest_int(iscale * x[j])));
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * g + l];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- k-quant helpers (ggml's make_q*_quants) ---- */

/* Quantizes x with iscale into [-nmax, nmax-1] and gives the x^2-weighted sums of l*x and l*l;
 * stores l + offset into L unless L is NULL. */
static void symmetric_sums(int n, int nmax, const float *x, float iscale, int8_t *L, int offset, float *sumlx,
                           float *suml2) {
    float slx = 0.0f, sl2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = max_i(-nmax, min_i(nmax - 1, nearest_int(iscale * x[i])));
        if (L) L[i] = (int8_t)(l + offset);
        const float w = x[i] * x[i];
        slx += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* Symmetric quants in [-nmax, nmax-1] for n values, with weights x^2 (rmse_type 1), searching 19
 * scales around nmax/max for the best weighted fit. L gets l + nmax. Returns the scale. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx, suml2;
    symmetric_sums(n, nmax, x, iscale, L, nmax, &sumlx, &suml2);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        symmetric_sums(n, nmax, x, iscale, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + max_i(-nmax, min_i(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ggml's make_q3_quants with rmse: start from nmax/max and greedily move single quants while the
 * weighted fit improves. L gets l + nmax. */
static float fit_symmetric_greedy(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float sumlx, suml2;
    symmetric_sums(n, nmax, x, (float)-nmax / max, L, 0, &sumlx, &suml2);
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.0f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int new_l = max_i(-nmax, min_i(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* ggml's make_qkx2_quants: asymmetric quants in [0, nmax] with a (non-positive) offset, choosing
 * among nstep+1 candidate scales the weighted least-squares fit of scale and min. Returns the
 * scale; *neg_min gets -min (>= 0). */
static float fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min,
                        uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)max_i(0, min_i(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = max_i(0, min_i(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

static void quant_q2_K(const float *x, block_q2_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K], Laux[16];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            /* Stored unclamped like ggml (a negative fitted scale wraps); keeps files byte-identical. */
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = slm_fp32_to_fp16(max_scale / 15.0f);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = slm_fp32_to_fp16(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = slm_fp32_to_fp16(max_min / 15.0f);
        } else {
            y[i].dmin = slm_fp32_to_fp16(0.0f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)(y[i].scales[j] & 0x0f);
            if (d == 0.0f) continue;
            const float dm = slm_fp16_to_fp32(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)max_i(0, min_i(3, nearest_int((x[16 * j + l] + dm) / d)));
        }
        for (int j = 0; j < SLM_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] =
                    (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

static void quant_q3_K(const float *x, block_q3_K *y, int64_t nb) {
    int8_t L[SLM_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric_greedy(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                const int l = max_i(-32, min_i(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0x0f);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = slm_fp32_to_fp16(1.0f / iscale);
        } else {
            y[i].d = slm_fp32_to_fp16(0.0f);
        }
        int sc[16];
        unpack_q3_K_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)sc[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(max_i(-4, min_i(3, nearest_int(x[16 * j + l] / d))) + 4);
        }
        /* Third bits: element j's goes to hmask[j % 32], bit j / 32. */
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int j = 0; j < SLM_QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] = (int8_t)(L[j] - 4);
            }
        }
        for (int j = 0; j < SLM_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] =
                    (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

/* Shared by q4_K and q5_K: fits the 8 sub-block scales/mins, stores them as 6-bit values with the
 * two fp16 super-scales, and leaves the final quants (0..nmax) in L. */
static void fit_k_scales(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t scales_out[12],
                         slm_half *d_out, slm_half *dmin_out, uint8_t L[SLM_QK_K]) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* ggml stores nearest_int into a uint8_t before clamping; mirror that wrap-around. */
        ls[j] = (uint8_t)min_i(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)min_i(63, (uint8_t)nearest_int(inv_min * mins[j]));
    }
    slm_kquant_pack_scales(x, ls, lm, max_scale / 63.0f, max_min / 63.0f, nmax, scales_out, d_out, dmin_out, L);
}

void slm_kquant_pack_scales(const float *x, const uint8_t ls[8], const uint8_t lm[8], float d_block, float m_block, int nmax,
                            uint8_t sc_out[12], slm_half *d_out, slm_half *dmin_out, uint8_t *L) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            sc_out[j] = ls[j];
            sc_out[j + 4] = lm[j];
        } else {
            sc_out[j + 4] = (uint8_t)((ls[j] & 0x0f) | (lm[j] & 0x0f) << 4);
            sc_out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            sc_out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    *d_out = slm_fp32_to_fp16(d_block);
    *dmin_out = slm_fp32_to_fp16(m_block);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        slm_kquant_scale_min(j, sc_out, &sc, &m);
        const float d = slm_fp16_to_fp32(*d_out) * (float)sc;
        if (d == 0.0f) continue;
        const float dm = slm_fp16_to_fp32(*dmin_out) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)max_i(0, min_i(nmax, nearest_int((x[32 * j + l] + dm) / d)));
    }
}

void slm_pack_q4_K_codes(block_q4_K *y, const uint8_t *L) {
    uint8_t *q = y->qs;
    for (int j = 0; j < SLM_QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

void slm_pack_q5_K_codes(block_q5_K *y, const uint8_t *L) {
    memset(y->qh, 0, sizeof y->qh);
    uint8_t *ql = y->qs;
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < SLM_QK_K; n += 64, ql += 32) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                y->qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                y->qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | l2 << 4);
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

static void quant_q4_K(const float *x, block_q4_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        fit_k_scales(x, 15, -1.0f, 0.1f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        slm_pack_q4_K_codes(&y[i], L);
    }
}

static void quant_q5_K(const float *x, block_q5_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        fit_k_scales(x, 31, -0.5f, 0.1f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        slm_pack_q5_K_codes(&y[i], L);
    }
}

static void quant_q6_K(const float *x, block_q6_K *y, int64_t nb) {
    int8_t L[SLM_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_symmetric(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = slm_fp32_to_fp16(1.0f / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)max_i(-128, min_i(127, nearest_int(iscale * scales[ib])));
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(max_i(-32, min_i(31, nearest_int(x[16 * j + l] / d))) + 32);
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < SLM_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | (q3 & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | (q4 & 0x0f) << 4);
                qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

int slm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    const slm_type_info *ti = slm_type_info_get(type);
    if (!ti || n < 0 || n % ti->block_size != 0) return -1;
    const int64_t nb = n / ti->block_size;
    switch (type) {
    case SLM_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 0;
    case SLM_TYPE_F16:
    case SLM_TYPE_BF16: {
        uint8_t *out = dst;
        for (int64_t i = 0; i < n; i++) {
            const uint16_t h = type == SLM_TYPE_F16 ? slm_fp32_to_fp16(src[i]) : slm_fp32_to_bf16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return 0;
    }
    case SLM_TYPE_Q4_0: quant_q4_0(src, dst, nb); return 0;
    case SLM_TYPE_Q4_1: quant_q4_1(src, dst, nb); return 0;
    case SLM_TYPE_Q5_0: quant_q5_0(src, dst, nb); return 0;
    case SLM_TYPE_Q5_1: quant_q5_1(src, dst, nb); return 0;
    case SLM_TYPE_Q8_0: quant_q8_0(src, dst, nb); return 0;
    case SLM_TYPE_Q8_1: quant_q8_1(src, dst, nb); return 0;
    case SLM_TYPE_IQ4_NL: quant_iq4_nl(src, dst, nb); return 0;
    case SLM_TYPE_Q2_K: quant_q2_K(src, dst, nb); return 0;
    case SLM_TYPE_Q3_K: quant_q3_K(src, dst, nb); return 0;
    case SLM_TYPE_Q4_K: quant_q4_K(src, dst, nb); return 0;
    case SLM_TYPE_Q5_K: quant_q5_K(src, dst, nb); return 0;
    case SLM_TYPE_Q6_K: quant_q6_K(src, dst, nb); return 0;
    case SLM_TYPE_Q8_K: quant_q8_K(src, dst, nb); return 0;
    default: return -1;
    }
}
