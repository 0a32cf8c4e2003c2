/* Unpacking of one weight block into small integers plus scales, shared by the scalar kernels and
 * the tests. The layouts and bit orders follow ggml's dequantize_row_* exactly. */
#ifndef SLM_KERNELS_UNPACK_H
#define SLM_KERNELS_UNPACK_H

#include <stdint.h>
#include <string.h>

#include "tensor/quant.h"

/* Weight value of element i of a legacy block: d * q[i] + m. */
static inline void slm_unpack_q4_0(const block_q4_0 *b, int8_t q[SLM_QK], float *d, float *m) {
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = (int8_t)((b->qs[j] & 0x0f) - 8);
        q[j + SLM_QK / 2] = (int8_t)((b->qs[j] >> 4) - 8);
    }
    *d = slm_fp16_to_fp32(b->d);
    *m = 0.0f;
}

static inline void slm_unpack_q4_1(const block_q4_1 *b, int8_t q[SLM_QK], float *d, float *m) {
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = (int8_t)(b->qs[j] & 0x0f);
        q[j + SLM_QK / 2] = (int8_t)(b->qs[j] >> 4);
    }
    *d = slm_fp16_to_fp32(b->d);
    *m = slm_fp16_to_fp32(b->m);
}

static inline void slm_unpack_q5_0(const block_q5_0 *b, int8_t q[SLM_QK], float *d, float *m) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = (int8_t)(((b->qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16);
        q[j + SLM_QK / 2] = (int8_t)(((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
    }
    *d = slm_fp16_to_fp32(b->d);
    *m = 0.0f;
}

static inline void slm_unpack_q5_1(const block_q5_1 *b, int8_t q[SLM_QK], float *d, float *m) {
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = (int8_t)((b->qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
        q[j + SLM_QK / 2] = (int8_t)((b->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
    *d = slm_fp16_to_fp32(b->d);
    *m = slm_fp16_to_fp32(b->m);
}

static inline void slm_unpack_q8_0(const block_q8_0 *b, int8_t q[SLM_QK], float *d, float *m) {
    memcpy(q, b->qs, SLM_QK);
    *d = slm_fp16_to_fp32(b->d);
    *m = 0.0f;
}

static const int8_t slm_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

static inline void slm_unpack_iq4_nl(const block_iq4_nl *b, int8_t q[SLM_QK], float *d, float *m) {
    for (int j = 0; j < SLM_QK / 2; j++) {
        q[j] = slm_iq4nl_values[b->qs[j] & 0x0f];
        q[j + SLM_QK / 2] = slm_iq4nl_values[b->qs[j] >> 4];
    }
    *d = slm_fp16_to_fp32(b->d);
    *m = 0.0f;
}

/* A k-quant super-block: element i = d * scale[i/16] * q[i] - dmin * min[i/16]. */
typedef struct slm_kblock {
    int8_t q[SLM_QK_K];
    int16_t scale[SLM_QK_K / 16];
    int16_t min[SLM_QK_K / 16];
    float d, dmin;
} slm_kblock;

static inline void slm_unpack_q2_K(const block_q2_K *b, slm_kblock *u) {
    for (int n = 0; n < 2; n++) {
        const uint8_t *qs = b->qs + 32 * n;
        for (int j = 0; j < 4; j++) {
            for (int l = 0; l < 32; l++) u->q[n * 128 + j * 32 + l] = (int8_t)((qs[l] >> (2 * j)) & 3);
        }
    }
    for (int g = 0; g < 16; g++) {
        u->scale[g] = b->scales[g] & 0x0f;
        u->min[g] = b->scales[g] >> 4;
    }
    u->d = slm_fp16_to_fp32(b->d);
    u->dmin = slm_fp16_to_fp32(b->dmin);
}

static inline void slm_unpack_q3_K(const block_q3_K *b, slm_kblock *u) {
    uint32_t aux[4];
    memcpy(aux, b->scales, 12);
    const uint32_t kmask1 = 0x03030303u, kmask2 = 0x0f0f0f0fu;
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t sc[16];
    memcpy(sc, aux, 16);
    int bit = 0;
    for (int n = 0; n < 2; n++) {
        const uint8_t *qs = b->qs + 32 * n;
        for (int j = 0; j < 4; j++, bit++) {
            for (int l = 0; l < 32; l++) {
                int v = (qs[l] >> (2 * j)) & 3;
                if (!(b->hmask[l] & (1u << bit))) v -= 4;
                u->q[n * 128 + j * 32 + l] = (int8_t)v;
            }
        }
    }
    for (int g = 0; g < 16; g++) {
        u->scale[g] = (int16_t)(sc[g] - 32);
        u->min[g] = 0;
    }
    u->d = slm_fp16_to_fp32(b->d);
    u->dmin = 0.0f;
}


/* The 8 scales and minimums of q4_K / q5_K (shared layout), each covering two 16-value steps. */
static inline void unpack_k4_scales(const uint8_t *scales, slm_half d, slm_half dmin, slm_kblock *u) {
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        slm_kquant_scale_min(j, scales, &sc, &mn);
        u->scale[2 * j] = u->scale[2 * j + 1] = (int16_t)sc;
        u->min[2 * j] = u->min[2 * j + 1] = (int16_t)mn;
    }
    u->d = slm_fp16_to_fp32(d);
    u->dmin = slm_fp16_to_fp32(dmin);
}

static inline void slm_unpack_q4_K(const block_q4_K *b, slm_kblock *u) {
    for (int c = 0; c < 4; c++) {
        const uint8_t *qs = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            u->q[c * 64 + l] = (int8_t)(qs[l] & 0x0f);
            u->q[c * 64 + 32 + l] = (int8_t)(qs[l] >> 4);
        }
    }
    unpack_k4_scales(b->scales, b->d, b->dmin, u);
}

static inline void slm_unpack_q5_K(const block_q5_K *b, slm_kblock *u) {
    for (int c = 0; c < 4; c++) {
        const uint8_t *qs = b->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int hi_lo = (b->qh[l] >> (2 * c)) & 1, hi_hi = (b->qh[l] >> (2 * c + 1)) & 1;
            u->q[c * 64 + l] = (int8_t)((qs[l] & 0x0f) | (hi_lo << 4));
            u->q[c * 64 + 32 + l] = (int8_t)((qs[l] >> 4) | (hi_hi << 4));
        }
    }
    unpack_k4_scales(b->scales, b->d, b->dmin, u);
}

static inline void slm_unpack_q6_K(const block_q6_K *b, slm_kblock *u) {
    for (int n = 0; n < 2; n++) {
        const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
        int8_t *q = u->q + 128 * n;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
    for (int g = 0; g < 16; g++) {
        u->scale[g] = b->scales[g];
        u->min[g] = 0;
    }
    u->d = slm_fp16_to_fp32(b->d);
    u->dmin = 0.0f;
}

#endif
