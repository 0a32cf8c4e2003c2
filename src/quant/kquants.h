/* Faster k-quant rows for the quantize verb: the same bytes as tensor/quant.c's reference
 * quantizers (and ggml's), with the scale searches vectorized across candidates when the CPU has
 * AVX2 + FMA + F16C (quant/kquants_avx2.c). */
#ifndef SLM_QUANT_KQUANTS_H
#define SLM_QUANT_KQUANTS_H

#include <stdbool.h>
#include <stdint.h>

/* True when the fast paths can run on this CPU. */
bool kq_available(void);
/* One row of n values to Q8_0 or Q4_0 (n a multiple of 32), Q2_K, Q4_K, Q5_K or Q6_K (of 256); false for other types (the
 * caller then uses the reference quantizer). Only call when kq_available(). */
bool kq_quantize_row(uint32_t type, const float *x, void *dst, int64_t n);
/* F16 to F32 (exact). Only call when kq_available(). */
void kq_f16_to_f32_avx2(const uint16_t *src, float *dst, int64_t n);

/* The AVX2 searches (see kquants_avx2.c). */
float kq_fit_affine_avx2(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min, float rmin,
                         float rdelta, int nstep, bool use_mad);
float kq_fit_symmetric_avx2(int n, int nmax, const float *x, int8_t *L);
void kq_q8_0_avx2(const float *x, void *dst, int64_t n);
void kq_q4_0_avx2(const float *x, void *dst, int64_t n);

#endif
