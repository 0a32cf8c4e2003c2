/* Public vector helpers: thin wrappers over the selected ISA's table. */
#include "kernels/kernels_impl.h"

float slm_vec_dot_f32(int64_t n, const float *a, const float *b) {
    return slm_kernels_active()->dot_f32(n, a, b);
}

float slm_vec_dot_f16_f32(int64_t n, const uint16_t *a, const float *b) {
    return slm_kernels_active()->dot_f16_f32(n, a, b);
}

void slm_vec_axpy_f32(int64_t n, float *y, float s, const float *a) {
    slm_kernels_active()->axpy_f32(n, y, s, a);
}

void slm_vec_axpy_f16_f32(int64_t n, float *y, float s, const uint16_t *a) {
    slm_kernels_active()->axpy_f16_f32(n, y, s, a);
}

void slm_vec_f32_to_f16(int64_t n, const float *src, uint16_t *dst) {
    slm_kernels_active()->f32_to_f16(n, src, dst);
}
