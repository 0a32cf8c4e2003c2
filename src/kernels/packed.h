/* Weights repacked at load for the row-interleaved kernels ("R16"): 16 rows are stored together so
 * one 512-bit register holds 4 consecutive weights of each of the 16 rows, and a VNNI dot product
 * against a broadcast group of 4 activations advances all 16 rows at once. The per-block
 * horizontal sums and scale conversions of a row-at-a-time kernel disappear, and a block of 16
 * rows is loaded once for up to SLM_PACKED_MAX_TOKENS tokens.
 *
 * Layout of one group of 16 rows with nb = k/32 blocks, in pairs of blocks so the weights and their
 * scales arrive in one sequential stream: [weights of block 2p][weights of block 2p+1][16 scales
 * of block 2p][16 scales of block 2p+1] (an odd last block leaves its pair's second half unused).
 * Weights of one block:
 *   Q8_0: 512 bytes: step j (0..7), row r: the 4 bytes qs[4j..4j+3] of row r, each XOR 0x80 (so
 *         the kernel reads w + 128 as an unsigned byte);
 *   Q4_0: 256 bytes: step j (0..3), row r: the 4 packed bytes qs[4j..4j+3] of row r (low nibbles =
 *         weights 4j..4j+3, high nibbles = weights 16+4j..16+4j+3);
 *   Q5_0: the 256 bytes of Q4_0, then 8 masks of 64 bits: mask h has bit 4r+i set when weight
 *         4h+i (h < 4) or 16+4(h-4)+i (h >= 4) of row r has its fifth bit;
 * scales: 16 half floats, one per row.
 * Q4_K is laid out per super-block of 256 weights (2368 bytes): 4 pairs of sub-blocks, each 512
 * bytes: step j (0..7), row r: the 4 bytes qs[32p+4j..32p+4j+3] of row r (low nibbles: sub-block
 * 2p, high nibbles: sub-block 2p+1); then the 6-bit scales [8 sub-blocks][16 rows] and minimums
 * [8][16] as bytes, then d [16] and dmin [16] as half floats.
 * Q5_K is laid out per super-block of 256 weights (2880 bytes) as Q4_K with each pair's fifth bits
 * after its 512 bytes of nibbles: 4 pairs of 640 bytes, then the scales, minimums, d and dmin at the
 * offsets Q4_K has them plus 512. The fifth bits of a pair are 16 masks of 64 bits: mask 8h+j
 * (sub-block 2p+h, step j) has bit 4r+i set when weight 4j+i of that sub-block of row r has it.
 * Q6_K is laid out per super-block of 256 weights (3392 bytes): 8 blocks of 32 weights, 384 bytes
 * each: 256 bytes of low nibbles as in Q4_0 (step j, row r, byte i: low nibble = weight 4j+i of the
 * block, high nibble = weight 16+4j+i), then 128 bytes of top bits: half h (0, 1), byte 4r+i holds
 * at bits 2j..2j+1 the top two bits of weight 16h+4j+i. Values are the unsigned q (0..63) of
 * w = d*sc*(q-32). Then the int8 scales [16 groups of 16][16 rows], d [16] as half floats and 32
 * bytes of padding that keep the super-blocks 64-byte aligned.
 * Activations are in the in-order planar format (SLM_ACT_Q8P). */
#ifndef SLM_KERNELS_PACKED_H
#define SLM_KERNELS_PACKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "tensor/types.h"

#define SLM_PACKED_ROWS 16
#define SLM_PACKED_MAX_TOKENS 8

/* Bytes of one block's weights for 16 rows (legacy types). */
static inline size_t slm_packed_block_bytes(uint32_t type) {
    return type == SLM_TYPE_Q8_0 ? 512 : type == SLM_TYPE_Q5_0 ? 320 : 256;
}
#define SLM_PACKED_Q4_K_BYTES 2368 /* one super-block of 16 rows */
#define SLM_PACKED_Q4_K_SCALES 2048
#define SLM_PACKED_Q4_K_MINS (2048 + 128)
#define SLM_PACKED_Q4_K_D (2048 + 256)
#define SLM_PACKED_Q4_K_DMIN (2048 + 256 + 32)
#define SLM_PACKED_Q5_K_BYTES 2880
#define SLM_PACKED_Q5_K_PAIR 640
#define SLM_PACKED_Q5_K_SCALES 2560
#define SLM_PACKED_Q5_K_MINS (2560 + 128)
#define SLM_PACKED_Q5_K_D (2560 + 256)
#define SLM_PACKED_Q5_K_DMIN (2560 + 256 + 32)
#define SLM_PACKED_Q6_K_BYTES 3392
#define SLM_PACKED_Q6_K_BLOCK 384
#define SLM_PACKED_Q6_K_SCALES 3072
#define SLM_PACKED_Q6_K_D 3328
/* Offsets of block b's weights and scales within a group. */
static inline size_t slm_packed_weights_at(size_t block_bytes, int64_t b) {
    return (size_t)(b / 2) * (2 * block_bytes + 64) + (size_t)(b % 2) * block_bytes;
}
static inline size_t slm_packed_scales_at(size_t block_bytes, int64_t b) {
    return (size_t)(b / 2) * (2 * block_bytes + 64) + 2 * block_bytes + (size_t)(b % 2) * 32;
}

/* Whether the R16 layout exists for this type and shape (any m: a last group short of 16 rows is
 * padded with zero rows). */
bool slm_packed_layout_exists(uint32_t type, int64_t k, int64_t m);
/* Bytes of one group of 16 rows. */
size_t slm_packed_group_bytes(uint32_t type, int64_t k);
/* Packs rows [16g, 16g+16) of w into dst (slm_packed_group_bytes bytes). */
void slm_packed_pack_group(const slm_weight *w, int64_t g, uint8_t *dst);

/* Row `row` of a packed weight, dequantized (the same floats as slm_dequantize_row of the source). */
void slm_packed_row_f32(const slm_weight *w, int64_t row, float *dst);

/* out[t*out_stride + r] = dot(row r of the group, activation row t) for r < 16, t < nt
 * (1 <= nt <= SLM_PACKED_MAX_TOKENS); act rows are SLM_ACT_Q8P, act_stride bytes apart. */
typedef void (*slm_packed_gemm_fn)(int64_t k, const uint8_t *group, const uint8_t *act, size_t act_stride, int nt,
                                   float *out, size_t out_stride);

#endif
