/* AVX-512 (F/BW/VL/DQ/VNNI) kernels. */
#include <immintrin.h>

#include "kernels/kernels_impl.h"

void slm_kernels_fill_avx512(slm_kernel_table *t) {
    (void)t;
}
