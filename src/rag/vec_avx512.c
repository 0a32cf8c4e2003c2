/* f32 · f16 rows with AVX-512F, 16 lanes, two accumulators. */
#include <immintrin.h>

#include "slm_rag.h"
#include "vec_impl.h"

void rag_dot_f16_avx512(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores) {
    for (size_t i = 0; i < n; i++) {
        const uint16_t *v = vecs + i * (size_t)dim;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int k = 0;
        for (; k + 32 <= dim; k += 32) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(query + k), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + k))), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(query + k + 16),
                                 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + k + 16))), a1);
        }
        for (; k + 16 <= dim; k += 16)
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(query + k), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + k))), a0);
        float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (; k < dim; k++) sum += query[k] * slm_rag_f16_to_f32(v[k]);
        scores[i] = sum;
    }
}
