/* Matrix kernels behind one dispatch table, chosen once at start-up from the CPU's features. */
#ifndef SLM_KERNELS_H
#define SLM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/pool.h"

/* A weight matrix of m rows by k columns (GGUF ne0 = k, ne1 = m), rows contiguous. */
typedef struct slm_weight {
    uint32_t type;        /* enum slm_type */
    int64_t k, m;
    const void *data;     /* in the model mapping */
    size_t row_bytes;
    void *packed;         /* optional kernel-specific layout made at load, owned by the model */
} slm_weight;

/* y[t*m + r] = dot(row r of w, x[t*k .. t*k+k)) for t < n_tok.
 * exact: the f32 reference path (scalar dequantize each row to f32, f32 dot); otherwise the fastest
 * path of this CPU (activations may be quantized to 8 bits like llama.cpp). */
void slm_matmul(slm_pool *pool, const slm_weight *w, const float *x, int n_tok, float *y, bool exact);

/* Copies row `row` of w dequantized to f32 (embedding lookup). */
void slm_weight_row_f32(const slm_weight *w, int64_t row, float *dst);

/* Name of the selected ISA path; SLM_ISA=scalar|avx2|avx512|amx forces a lower one. */
const char *slm_kernels_isa(void);

#endif
