/* Reference (scalar) dequantizers and quantizers for the GGUF block formats. Arithmetic is done in
 * float in the same order as ggml's to_float so results match bit for bit; these are the ground
 * truth the SIMD kernels are tested against, so clarity wins over speed here. */
#include "tensor/quant.h"

#include <math.h>
#include <stddef.h>

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

/* Scale and min of sub-block j (0..7) of q4_K/q5_K: 6 bits each, packed into 12 bytes. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
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

int slm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    (void)type; (void)src; (void)dst; (void)n;
    return -1;
}
