/* LoRA 8-bit kernel (lora_q8.h) for AVX2 + FMA: the same sums as the scalar kernel, 8 lanes wide. */
#include <immintrin.h>

#include "kernels/lora_q8.h"

#define BLK SLM_LORA_Q8_BLOCK

static inline __m256 codes8(const int8_t *c) { /* 8 int8 codes → 8 floats */
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)c)));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void slm_lora_q8_apply_avx2(const slm_lora_q8 *p, const float *x, float mult, float *y) {
    float ax[SLM_LORA_Q8_MAX_RANK];
    int64_t nb_in = (p->n_in + BLK - 1) / BLK, full_in = p->n_in / BLK;
    int64_t nb_out = (p->n_out + BLK - 1) / BLK, full_out = p->n_out / BLK;
    for (int q = 0; q < p->rank; q++) {
        const int8_t *row = p->a + (size_t)q * (size_t)nb_in * BLK;
        const float *d = p->a_scale + (size_t)q * (size_t)nb_in;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t k = 0; k < full_in; k++) {
            const int8_t *c = row + k * BLK;
            const float *xk = x + k * BLK;
            __m256 s0 = _mm256_mul_ps(codes8(c), _mm256_loadu_ps(xk));
            __m256 s1 = _mm256_mul_ps(codes8(c + 8), _mm256_loadu_ps(xk + 8));
            s0 = _mm256_fmadd_ps(codes8(c + 16), _mm256_loadu_ps(xk + 16), s0);
            s1 = _mm256_fmadd_ps(codes8(c + 24), _mm256_loadu_ps(xk + 24), s1);
            acc = _mm256_fmadd_ps(_mm256_add_ps(s0, s1), _mm256_set1_ps(d[k]), acc);
        }
        float sum = hsum(acc);
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
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int q = 0; q < p->rank; q++, codes += BLK) {
            __m256 c = _mm256_set1_ps(ax[q] * d[q]);
            a0 = _mm256_fmadd_ps(c, codes8(codes), a0);
            a1 = _mm256_fmadd_ps(c, codes8(codes + 8), a1);
            a2 = _mm256_fmadd_ps(c, codes8(codes + 16), a2);
            a3 = _mm256_fmadd_ps(c, codes8(codes + 24), a3);
        }
        float *yb = y + ob * BLK;
        if (ob < full_out) {
            _mm256_storeu_ps(yb, _mm256_add_ps(_mm256_loadu_ps(yb), a0));
            _mm256_storeu_ps(yb + 8, _mm256_add_ps(_mm256_loadu_ps(yb + 8), a1));
            _mm256_storeu_ps(yb + 16, _mm256_add_ps(_mm256_loadu_ps(yb + 16), a2));
            _mm256_storeu_ps(yb + 24, _mm256_add_ps(_mm256_loadu_ps(yb + 24), a3));
        } else { /* the last, partial block of outputs: y ends inside it */
            float acc[BLK];
            _mm256_storeu_ps(acc, a0);
            _mm256_storeu_ps(acc + 8, a1);
            _mm256_storeu_ps(acc + 16, a2);
            _mm256_storeu_ps(acc + 24, a3);
            for (int64_t i = 0; i < p->n_out - ob * BLK; i++) yb[i] += acc[i];
        }
    }
}
