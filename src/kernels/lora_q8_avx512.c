/* LoRA 8-bit kernel (lora_q8.h) for AVX-512: the same sums as the scalar kernel, 16 lanes wide. */
#include <immintrin.h>

#include "kernels/lora_q8.h"

#define BLK SLM_LORA_Q8_BLOCK

static inline __m512 codes16(const int8_t *c) { /* 16 int8 codes → 16 floats */
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)c)));
}

void slm_lora_q8_apply_avx512(const slm_lora_q8 *p, const float *x, float mult, float *y) {
    float ax[SLM_LORA_Q8_MAX_RANK];
    int64_t nb_in = (p->n_in + BLK - 1) / BLK, full_in = p->n_in / BLK;
    int64_t nb_out = (p->n_out + BLK - 1) / BLK;
    for (int q = 0; q < p->rank; q++) {
        const int8_t *row = p->a + (size_t)q * (size_t)nb_in * BLK;
        const float *d = p->a_scale + (size_t)q * (size_t)nb_in;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = 0; k < full_in; k++) {
            const int8_t *c = row + k * BLK;
            __m512 s = _mm512_mul_ps(codes16(c), _mm512_loadu_ps(x + k * BLK));
            s = _mm512_fmadd_ps(codes16(c + 16), _mm512_loadu_ps(x + k * BLK + 16), s);
            acc = _mm512_fmadd_ps(s, _mm512_set1_ps(d[k]), acc);
        }
        float sum = _mm512_reduce_add_ps(acc);
        if (full_in < nb_in) { /* the last, partial block */
            float part = 0;
            for (int64_t i = full_in * BLK; i < p->n_in; i++) part += (float)row[i] * x[i];
            sum += part * d[full_in];
        }
        ax[q] = sum * mult;
    }
    for (int64_t ob = 0; ob < nb_out; ob++) {
        const int8_t *codes = p->b + (size_t)ob * (size_t)p->rank * BLK;
        const float *d = p->b_scale + (size_t)ob * (size_t)p->rank;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (int q = 0; q < p->rank; q++, codes += BLK) {
            __m512 c = _mm512_set1_ps(ax[q] * d[q]);
            a0 = _mm512_fmadd_ps(c, codes16(codes), a0);
            a1 = _mm512_fmadd_ps(c, codes16(codes + 16), a1);
        }
        float *yb = y + ob * BLK;
        int64_t n = p->n_out - ob * BLK < BLK ? p->n_out - ob * BLK : BLK;
        /* masks keep a partial last block of outputs inside y */
        __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
        __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
        _mm512_mask_storeu_ps(yb, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, yb), a0));
        _mm512_mask_storeu_ps(yb + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, yb + 16), a1));
    }
}
