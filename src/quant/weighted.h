/* Importance-weighted row quantizers (the searches ggml runs when llama-quantize gets an imatrix),
 * and IQ4_NL's scale search (which ggml runs with or without one). One row of n values each. */
#ifndef SLM_QUANT_WEIGHTED_H
#define SLM_QUANT_WEIGHTED_H

#include <stdint.h>

/* importance: n weights or NULL (then x^2 weighs each value). */
void quant_row_iq4_nl(const float *x, void *dst, int64_t n, const float *importance);
/* importance: n weights (not NULL). 0, or -1 for a type without a weighted quantizer. */
int quant_row_weighted(uint32_t type, const float *x, void *dst, int64_t n, const float *importance);

#endif
