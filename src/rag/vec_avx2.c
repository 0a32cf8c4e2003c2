/* f32 · f16 rows with AVX2 + F16C + FMA, 8 lanes, two accumulators. */
#include <immintrin.h>

#include "slm_rag.h"
#include "vec_impl.h"

void rag_dot_f16_avx2(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores) {
    for (size_t i = 0; i < n; i++) {
        const uint16_t *v = vecs + i * (size_t)dim;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int k = 0;
        for (; k + 16 <= dim; k += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(query + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + k))), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(query + k + 8),
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + k + 8))), a1);
        }
        for (; k + 8 <= dim; k += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(query + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + k))), a0);
        __m256 a = _mm256_add_ps(a0, a1);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        float sum = _mm_cvtss_f32(s);
        for (; k < dim; k++) sum += query[k] * slm_rag_f16_to_f32(v[k]);
        scores[i] = sum;
    }
}
