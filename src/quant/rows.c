/* Row quantizers of the quantize verb. Without an importance matrix most types use the reference
 * rounding in tensor/quant.c (what ggml's quantize_* functions use then too); IQ4_NL always
 * searches its scale, and with an importance matrix the weighted searches in quant/weighted.c run. */
#include <math.h>
#include <string.h>

#include "quant/kquants.h"
#include "quant/quant_impl.h"
#include "quant/weighted.h"
#include "tensor/quant.h"
#include "tensor/types.h"

bool quant_type_uses_importance(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q4_0: case SLM_TYPE_Q4_1: case SLM_TYPE_Q5_0: case SLM_TYPE_Q5_1: case SLM_TYPE_IQ4_NL:
    case SLM_TYPE_Q2_K: case SLM_TYPE_Q3_K: case SLM_TYPE_Q4_K: case SLM_TYPE_Q5_K: case SLM_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

int quant_rows(uint32_t type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *importance) {
    const size_t row_bytes = slm_row_bytes(type, n_per_row);
    if (!row_bytes) return -1;
    uint8_t *out = dst;
    for (int64_t r = 0; r < n_rows; r++, src += n_per_row, out += row_bytes) {
        if (type == SLM_TYPE_IQ4_NL) {
            quant_row_iq4_nl(src, out, n_per_row, importance);
        } else if (importance && quant_type_uses_importance(type)) {
            if (quant_row_weighted(type, src, out, n_per_row, importance)) return -1;
        } else if (kq_available() && kq_quantize_row(type, src, out, n_per_row)) {
            continue;
        } else if (slm_quantize_row(type, src, out, n_per_row)) {
            return -1;
        }
    }
    return 0;
}
