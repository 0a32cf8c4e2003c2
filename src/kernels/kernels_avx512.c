/* AVX-512 kernels: the 256-bit integer kernels of kernels_simd.inc with VNNI (vpdpbusd /
 * vpdpwssd) instead of the maddubs+madd pairs. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/unpack.h"

#define SIMD_DOT_U8S8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define SIMD_DOT_SCALED(acc, u, s, w) _mm256_dpwssd_epi32((acc), _mm256_maddubs_epi16((u), (s)), (w))

#include "kernels/kernels_simd.inc"

void slm_kernels_fill_avx512(slm_kernel_table *t) {
    simd_fill_table(t);
}
