/* LoRA's fast path: one low-rank pair (A: rank × n_in, B: n_out × rank) as 8-bit copies with f32
 * scales, applied as y += mult · B·(A·x) with f32 accumulation.
 *
 * Each sequence of a batch streams its own adapters every step while the base weights are read once
 * for the whole batch, so the adapters' bytes are the cost; 8 bits halve f16's. Scales cover 32
 * values (Q8_0's block size) so an outlier costs precision only within its block:
 *   A: row q holds n_in codes (padded with zeros to whole blocks), a_scale[q * nb_in + blk];
 *   B: blocks of 32 outputs, each holding its 32 codes of B[·][q] for q = 0..rank-1 in turn,
 *      b_scale[ob * rank + q], so one block of y is loaded, gets rank FMAs, and is stored once. */
#ifndef SLM_KERNELS_LORA_Q8_H
#define SLM_KERNELS_LORA_Q8_H

#include <stddef.h>
#include <stdint.h>

#define SLM_LORA_Q8_BLOCK 32
#define SLM_LORA_Q8_MAX_RANK 256

typedef struct slm_lora_q8 {
    int rank;
    int64_t n_in, n_out;
    const int8_t *a;      /* rank × (nb_in × 32) */
    const float *a_scale; /* rank × nb_in */
    const int8_t *b;      /* nb_out × rank × 32 */
    const float *b_scale; /* nb_out × rank */
    const void *mem;      /* all of the above, in one piece of `bytes` */
    size_t bytes;
} slm_lora_q8;

/* Bytes of one pair's copies (64-byte aligned pieces inside). */
size_t slm_lora_q8_bytes(int rank, int64_t n_in, int64_t n_out);
/* Quantizes A (rank rows of n_in, row-major) and B (n_out rows of rank, b_stride floats apart) into
 * mem (slm_lora_q8_bytes, 64-byte aligned) and describes them in *out. */
void slm_lora_q8_quantize(int rank, int64_t n_in, int64_t n_out, const float *a, const float *b, size_t b_stride,
                          void *mem, slm_lora_q8 *out);
/* y[0..n_out) += mult · B·(A·x) on the selected ISA. */
void slm_lora_q8_apply(const slm_lora_q8 *p, const float *x, float mult, float *y);

/* Asks the caches for all of p's bytes without waiting for them: issued for the next pair while
 * the current one is computed, the loads of a memory-bound loop overlap instead of queueing. */
void slm_lora_q8_prefetch(const slm_lora_q8 *p);

/* Per-ISA kernels (the unit test calls each against the scalar one). ax: rank floats of scratch. */
typedef void (*slm_lora_q8_fn)(const slm_lora_q8 *p, const float *x, float mult, float *y);
void slm_lora_q8_apply_scalar(const slm_lora_q8 *p, const float *x, float mult, float *y);
void slm_lora_q8_apply_avx2(const slm_lora_q8 *p, const float *x, float mult, float *y);
void slm_lora_q8_apply_avx512(const slm_lora_q8 *p, const float *x, float mult, float *y);
/* The kernel for an ISA level (0 scalar, 1 AVX2, 2 AVX-512 and above), NULL if this CPU lacks it. */
slm_lora_q8_fn slm_lora_q8_kernel(int isa);

#endif
