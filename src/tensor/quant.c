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

void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case SLM_TYPE_F32: dequant_f32(src, dst, n); break;
    case SLM_TYPE_F16: dequant_f16(src, dst, n); break;
    case SLM_TYPE_BF16: dequant_bf16(src, dst, n); break;
    case SLM_TYPE_Q8_0: dequant_q8_0(src, dst, n / SLM_QK); break;
    default: break;
    }
}

int slm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    (void)type; (void)src; (void)dst; (void)n;
    return -1;
}
