/* Block layouts of the GGUF quantized types and their reference (scalar) quantize/dequantize.
 * These routines are the ground truth the SIMD kernels are tested against. */
#ifndef SLM_TENSOR_QUANT_H
#define SLM_TENSOR_QUANT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/types.h"

typedef uint16_t slm_half;

typedef struct { slm_half d; uint8_t qs[SLM_QK / 2]; } block_q4_0;
typedef struct { slm_half d, m; uint8_t qs[SLM_QK / 2]; } block_q4_1;
typedef struct { slm_half d; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } block_q5_0;
typedef struct { slm_half d, m; uint8_t qh[4]; uint8_t qs[SLM_QK / 2]; } block_q5_1;
typedef struct { slm_half d; int8_t qs[SLM_QK]; } block_q8_0;
typedef struct { slm_half d, s; int8_t qs[SLM_QK]; } block_q8_1;
typedef struct { slm_half d; uint8_t qs[SLM_QK / 2]; } block_iq4_nl;
typedef struct { uint8_t scales[SLM_QK_K / 16]; uint8_t qs[SLM_QK_K / 4]; slm_half d, dmin; } block_q2_K;
typedef struct { uint8_t hmask[SLM_QK_K / 8]; uint8_t qs[SLM_QK_K / 4]; uint8_t scales[12]; slm_half d; } block_q3_K;
typedef struct { slm_half d, dmin; uint8_t scales[12]; uint8_t qs[SLM_QK_K / 2]; } block_q4_K;
typedef struct { slm_half d, dmin; uint8_t scales[12]; uint8_t qh[SLM_QK_K / 8]; uint8_t qs[SLM_QK_K / 2]; } block_q5_K;
typedef struct { uint8_t ql[SLM_QK_K / 2]; uint8_t qh[SLM_QK_K / 4]; int8_t scales[SLM_QK_K / 16]; slm_half d; } block_q6_K;
typedef struct { float d; int8_t qs[SLM_QK_K]; int16_t bsums[SLM_QK_K / 16]; } block_q8_K;

/* Dequantizes n elements (a multiple of the block size) of any weight type to f32. */
void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Quantizes n f32 values (a multiple of the block size) to `type` with the reference rounding of
 * ggml's quantize_row_*_ref. Returns 0, or -1 for a type without a quantizer. */
int slm_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);
/* A super-block's 256 level codes (0..15 for Q4_K, 0..31 for Q5_K; scales already set) written into
 * the block's bit layout: shared by the reference, the fast and the importance-weighted quantizers. */
void slm_pack_q4_K_codes(block_q4_K *y, const uint8_t *L);
void slm_pack_q5_K_codes(block_q5_K *y, const uint8_t *L);

/* The 6-bit scale and min of 32-element group j of q4_K / q5_K. */
/* Round to nearest, ties to even, via the 1.5 * 2^23 trick as ggml does (lrintf would depend on
 * the rounding mode). Out-of-range and NaN inputs are clamped first so the trick stays exact. */
static inline int slm_nearest_int(float v) {
    if (!(v >= -4194303.f)) v = isnan(v) ? 0.f : -4194303.f;
    if (v > 4194303.f) v = 4194303.f;
    float biased = v + 12582912.f;
    int32_t bits;
    memcpy(&bits, &biased, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

/* The last step of a Q4_K/Q5_K super-block as ggml writes it: the 6-bit scales ls and mins lm of
 * its 8 sub-blocks packed into sc_out, d and dmin stored as f16, and every value's code (0..nmax)
 * recomputed with the stored numbers into L. */
void slm_kquant_pack_scales(const float *x, const uint8_t ls[8], const uint8_t lm[8], float d, float dmin, int nmax,
                            uint8_t sc_out[12], slm_half *d_out, slm_half *dmin_out, uint8_t *L);

static inline void slm_kquant_scale_min(int j, const uint8_t *s, int *sc, int *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

#endif
