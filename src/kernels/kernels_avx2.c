/* AVX2 + FMA + F16C kernels. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

void slm_kernels_fill_avx2(slm_kernel_table *t) {
    (void)t;
}
