/* The batched (prefill) GEMM of a wide ISA: weights unpacked to one canonical row layout per
 * type, activations re-laid to match, one register-tiled kernel (see gemm_avx512.c). */
#ifndef SLM_KERNELS_GEMM_BIG_H
#define SLM_KERNELS_GEMM_BIG_H

#include "kernels/kernels_impl.h"

#define SLM_GEMM_BIG_TILE 4 /* rows and tokens per kernel call, at most */

typedef struct slm_gemm_big {
    bool (*type_supported)(uint32_t type);
    /* Bytes of one canonical row (weights or activations) of k elements; a multiple of 64. */
    size_t (*row_bytes)(int64_t k);
    void (*unpack_row)(uint32_t type, int64_t k, const void *row, uint8_t *dst);
    void (*convert_act)(slm_act_kind kind, int64_t k, const void *act, uint8_t *dst);
    /* Number of 64-element steps of a row of k elements. */
    int64_t (*steps)(int64_t k);
    /* y[t * y_stride + r] (=, or += when accumulate) the part of the dot over steps [p0, p1), for
     * r < nr, t < nt (both <= SLM_GEMM_BIG_TILE); p0 a multiple of 4; rows 64-byte aligned. */
    void (*tile)(int64_t k, const uint8_t *w, size_t w_stride, int nr, const uint8_t *x, size_t x_stride, int nt,
                 float *y, size_t y_stride, int64_t p0, int64_t p1, bool accumulate);
} slm_gemm_big;

void slm_gemm_big_fill_avx512(slm_gemm_big *g);

#endif
