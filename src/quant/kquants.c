/* The k-quant block layouts filled from the vectorized scale searches: the same steps as the
 * reference quantizers in tensor/quant.c (fit each sub-block, store the scales at 6 or 8 bits under
 * an fp16 super-scale, re-round every value with the stored scale, pack), so the bytes are equal. */
#include "quant/kquants.h"

#include <cpuid.h>
#include <math.h>
#include <string.h>

#include "tensor/quant.h"
#include "tensor/types.h"

bool kq_available(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        unsigned eax, ebx, ecx = 0, edx;
        /* (clang's __builtin_cpu_supports does not know "f16c": CPUID.1:ECX bit 29) */
        const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    }
    return have == 1;
}

static inline int clamp_i(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ggml's nearest_int (round half to even through the 1.5 * 2^23 trick), clamped for safety. */
static inline int nearest(float v) { return slm_nearest_int(v); }

/* 8 sub-blocks of 32: scale and min per sub-block at 6 bits (q4_K / q5_K), final quants in L. */
static void k_scales(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t sc_out[12], slm_half *d_out,
                     slm_half *dmin_out, uint8_t L[SLM_QK_K]) {
    float weights[32], mins[8], scales[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32.0f);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = kq_fit_affine_avx2(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* the reference stores the rounded value in a byte before clamping: keep that wrap-around */
        ls[j] = (uint8_t)clamp_i((uint8_t)nearest(inv_scale * scales[j]), 0, 63);
        lm[j] = (uint8_t)clamp_i((uint8_t)nearest(inv_min * mins[j]), 0, 63);
    }
    slm_kquant_pack_scales(x, ls, lm, max_scale / 63.0f, max_min / 63.0f, nmax, sc_out, d_out, dmin_out, L);
}

static void q4_K_row(const float *x, block_q4_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k_scales(x, 15, -1.0f, 0.1f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        slm_pack_q4_K_codes(&y[i], L);
    }
}

static void q5_K_row(const float *x, block_q5_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k_scales(x, 31, -0.5f, 0.1f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        slm_pack_q5_K_codes(&y[i], L);
    }
}

static void q6_K_row(const float *x, block_q6_K *y, int64_t nb) {
    int8_t L[SLM_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = kq_fit_symmetric_avx2(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < 1e-15f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = slm_fp32_to_fp16(1.0f / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)clamp_i(nearest(iscale * scales[ib]), -128, 127);
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(clamp_i(nearest(x[16 * j + l] / d), -32, 31) + 32);
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

static void q2_K_row(const float *x, block_q2_K *y, int64_t nb) {
    uint8_t L[SLM_QK_K];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = kq_fit_affine_avx2(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)nearest(iscale * scales[j]);
            y[i].d = slm_fp32_to_fp16(max_scale / 15.0f);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = slm_fp32_to_fp16(0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++) y[i].scales[j] |= (uint8_t)((unsigned)nearest(iscale * mins[j]) << 4);
            y[i].dmin = slm_fp32_to_fp16(max_min / 15.0f);
        } else {
            y[i].dmin = slm_fp32_to_fp16(0.0f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)(y[i].scales[j] & 0x0f);
            if (d == 0.0f) continue;
            const float dm = slm_fp16_to_fp32(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)clamp_i(nearest((x[16 * j + l] + dm) / d), 0, 3);
        }
        for (int j = 0; j < SLM_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

bool kq_quantize_row(uint32_t type, const float *x, void *dst, int64_t n) {
    const int64_t nb = n / SLM_QK_K;
    switch (type) {
    case SLM_TYPE_Q8_0: kq_q8_0_avx2(x, dst, n); return true;
    case SLM_TYPE_Q4_0: kq_q4_0_avx2(x, dst, n); return true;
    case SLM_TYPE_Q2_K: q2_K_row(x, dst, nb); return true;
    case SLM_TYPE_Q4_K: q4_K_row(x, dst, nb); return true;
    case SLM_TYPE_Q5_K: q5_K_row(x, dst, nb); return true;
    case SLM_TYPE_Q6_K: q6_K_row(x, dst, nb); return true;
    default: return false;
    }
}
