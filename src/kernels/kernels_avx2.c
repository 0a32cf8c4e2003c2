/* AVX2 + FMA + F16C kernels: maddubs/madd integer dot products (see kernels_simd.inc). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/unpack.h"

#define SIMD_DOT_U8S8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define SIMD_DOT_SCALED(acc, u, s, w) _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), (w)))

#include "kernels/kernels_simd.inc"

void slm_kernels_fill_avx2(slm_kernel_table *t) {
    simd_fill_table(t);
}
