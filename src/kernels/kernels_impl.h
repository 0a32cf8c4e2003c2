/* Internals shared by the kernel files: CPU features, the ISA levels and the per-type kernel table.
 * Files named *_avx2.c / *_avx512.c are compiled with those ISA flags; nothing outside them may use
 * such instructions, and they are only called after the run-time check in dispatch.c. */
#ifndef SLM_KERNELS_IMPL_H
#define SLM_KERNELS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/packed.h"
#include "tensor/quant.h"
#include "tensor/types.h"

typedef enum slm_isa {
    SLM_ISA_SCALAR = 0,
    SLM_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    SLM_ISA_AVX512 = 2, /* F + BW + VL + DQ + VNNI (BF16 optional, see has_avx512_bf16) */
    SLM_ISA_AMX = 3,
    SLM_ISA_COUNT
} slm_isa;

typedef struct slm_cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
    bool amx_tile, amx_int8, amx_bf16;
    bool os_ymm, os_zmm, os_amx; /* the OS saves the register state (XCR0 / arch_prctl permission) */
} slm_cpu_features;

const slm_cpu_features *slm_cpu_features_get(void);
/* Highest level this CPU can run (independent of SLM_ISA). */
slm_isa slm_isa_supported(void);
/* The level in use: the supported one, lowered by SLM_ISA or by slm_kernels_force_isa. */
slm_isa slm_isa_selected(void);
const char *slm_isa_level_name(slm_isa isa);

/* Activations quantized for the integer kernels. Legacy types use 32-element blocks with a float
 * scale and the block's integer sum (for the types with a minimum or zero point);
 * k-quants use ggml's q8_K layout (256 elements, a float scale and 16 partial sums). */
typedef struct slm_act_q8 {
    float d;
    int32_t sum; /* sum(qs), for the weight types with a minimum or a zero point */
    int8_t qs[SLM_QK];
} slm_act_q8;

/* Planar layouts (AVX-512 decode kernels), nb = k/32 blocks, same integers and scales as q8:
 *   int8 qs[k], float d[nb], int32 sum[nb], int32 sum_lo[nb]  (row padded to 64 bytes)
 * where sum_lo is the sum of a block's first 16 values (types with a scale per 16 weights).
 * Q8P keeps each block's 32 values in order; Q8PS stores the first 16 of every block in qs[0, k/2)
 * and the last 16 in qs[k/2, k), matching the low/high nibble halves of the 4- and 5-bit types. */
/* SLM_ACT_I16: rows of 14-bit integers and block scales (slm_i16_gemm), for F16 weights with an
 * int16 copy. */
typedef enum slm_act_kind { SLM_ACT_F32, SLM_ACT_Q8, SLM_ACT_Q8K, SLM_ACT_Q8P, SLM_ACT_Q8PS, SLM_ACT_I16, SLM_ACT_KINDS } slm_act_kind;

static inline const float *slm_act_planar_d(const void *row, int64_t k) {
    return (const float *)((const uint8_t *)row + k);
}
static inline const int32_t *slm_act_planar_sum(const void *row, int64_t k) {
    return (const int32_t *)((const uint8_t *)row + k + (k / SLM_QK) * 4);
}
static inline const int32_t *slm_act_planar_sum_lo(const void *row, int64_t k) {
    return (const int32_t *)((const uint8_t *)row + k + (k / SLM_QK) * 8);
}

/* Dot product of one weight row (k elements of the weight type) with one activation row in the
 * type's activation format. */
typedef float (*slm_vec_dot_fn)(int64_t k, const void *w_row, const void *act);
/* Quantizes k activations into the activation format. */
typedef void (*slm_quantize_act_fn)(int64_t k, const float *x, void *dst);

/* One weight row against nt <= SLM_GEMM_MAX_TOKENS activation rows (act_stride bytes apart):
 * out[t * out_stride] for t < nt. Unpacks each weight block once for all nt tokens. */
#define SLM_GEMM_MAX_TOKENS 4
typedef void (*slm_gemm_fn)(int64_t k, const void *w_row, const void *act, size_t act_stride, int nt, float *out,
                            size_t out_stride);

typedef struct slm_type_kernels {
    slm_act_kind act;
    slm_vec_dot_fn vec_dot;
    slm_gemm_fn gemm; /* NULL: vec_dot per token */
} slm_type_kernels;

/* Per-ISA tables, indexed by enum slm_type; a NULL vec_dot falls back to the scalar entry. */
/* The float-weight GEMM (F32, F16, BF16 weights times f32 activations, batches of tokens): the rows
 * a thread works on are converted to f32 once per call into panels of SLM_FGEMM_GROUP-row groups
 * laid out k-major, group[kk * 16 + i] = weight (row i, column kk), so a kernel multiplies 16
 * rows at once with one broadcast activation, and the 16 sums of a token land next to each other in
 * y (which is token-major). Every (row, token) sum runs over k in order, one f32 FMA per term. */
#define SLM_FGEMM_GROUP 16
typedef struct slm_float_gemm {
    /* Converts nr <= 16 rows (row_bytes apart, k weights of `type` each) into one group of k * 16
     * floats at dst (64-byte aligned); the lanes of rows nr..15 are zero. */
    void (*pack)(uint32_t type, int64_t k, const uint8_t *rows, size_t row_bytes, int nr, float *dst);
    /* For r < nr (nr <= 32: row r is lane r % 16 of group r / 16, the groups group_stride floats
     * apart) and t < nt (any number):
     *   y[t * y_stride + r] (=, or += when accumulate) sum over kk < kb of
     *       group[kk * 16 + r % 16] * x[t * x_stride + kk]
     * The caller splits k into blocks of kb (pointing group and x at the block) so a block of
     * panel stays in L1 while the tokens stream past it. */
    void (*tile)(int64_t kb, const float *panel, size_t group_stride, int nr, const float *x, size_t x_stride, int nt,
                 float *y, size_t y_stride, bool accumulate);
} slm_float_gemm;

/* The portable slm_float_gemm pack (any nr; also the tail of the vector ones). */
void slm_fgemm_pack_scalar(uint32_t type, int64_t k, const uint8_t *rows, size_t row_bytes, int nr, float *dst);

/* The 16-bit integer GEMM of encoders' F16 weights (see slm_weight_i16_bytes in kernels.h), on
 * vpdpwssd: 32 int16 products per instruction, twice an f32 FMA's 16, with integer sums that are
 * exact. Weights: each row scaled to 14-bit integers once, at load (q = rint(w * 8191 / max|row|),
 * s_row = max|row| / 8191); activations: each block of 32 values of a token scaled the same way
 * per call (d_block). Both errors are relative to a row's or a block's largest value, ~2^-14,
 * where BF16 rounds every value by up to 2^-9 (which moves nomic-embed's F16 embeddings 4x past the
 * tolerance; measured, bench/RESULTS.md). 14 bits keep a block's 32 products within int32:
 * 32 * 8191^2 < 2^31.
 *   y[t, r] = s_r * (sum over blocks b, in order, f32 fma: float(isum_b) * d_tb),
 *   isum_b = sum over the block's 32 columns of q_w * q_x (int32, exact).
 * A group of SLM_I16_GROUP rows: 16 f32 scales (64 bytes), then for each pair of columns p, the
 * 16 rows' int16 pairs (q[2p], q[2p+1]) (64 bytes), so one 512-bit load holds two columns of 16
 * rows. Activation rows (SLM_ACT_I16): k int16 values, then k/32 f32 block scales. */
#define SLM_I16_GROUP 16
#define SLM_I16_BLOCK 32
#define SLM_I16_QMAX 8191
static inline size_t slm_i16_group_bytes(int64_t k) {
    return 64 + (size_t)k * SLM_I16_GROUP * sizeof(int16_t);
}
typedef struct slm_i16_gemm {
    /* Packs nr <= 16 F16 rows (row_bytes apart, k weights each, k a multiple of 32) into one group
     * at dst (64-byte aligned); rows nr..15 are zero. A row with an infinity or NaN gets a NaN
     * scale, so its outputs are NaN as the f32 path's would be. */
    void (*pack)(int64_t k, const uint8_t *rows, size_t row_bytes, int nr, uint8_t *dst);
    /* One activation row (k a multiple of 32) into dst (slm_act_row_bytes(SLM_ACT_I16, k) bytes).
     * A block with an infinity or NaN gets a NaN scale. */
    void (*quantize)(int64_t k, const float *x, uint8_t *dst);
    /* For r < nr (nr <= 32: row r is lane r % 16 of group r / 16, the groups group_bytes apart)
     * and t < nt (any number), over the columns k0 .. k0+kb (both multiples of 32) of rows k long:
     *   y[t * y_stride + r] (=, or += when accumulate) s_r * sum over those blocks as above,
     * with the activation rows act_stride bytes apart. */
    void (*tile)(int64_t k, int64_t k0, int64_t kb, const uint8_t *panel, size_t group_bytes, int nr,
                 const uint8_t *act, size_t act_stride, int nt, float *y, size_t y_stride, bool accumulate);
} slm_i16_gemm;

typedef struct slm_kernel_table {
    slm_type_kernels types[SLM_TYPE_COUNT];
    slm_quantize_act_fn quantize_q8;
    slm_quantize_act_fn quantize_q8k;
    slm_quantize_act_fn quantize_q8p, quantize_q8ps; /* only where a type uses them */
    /* vector helpers behind the public slm_vec_* functions */
    float (*dot_f32)(int64_t n, const float *a, const float *b);
    float (*dot_f16_f32)(int64_t n, const uint16_t *a, const float *b);
    void (*axpy_f32)(int64_t n, float *y, float s, const float *a);
    void (*axpy_f16_f32)(int64_t n, float *y, float s, const uint16_t *a);
    void (*f32_to_f16)(int64_t n, const float *src, uint16_t *dst);
    void (*scores_f16)(int64_t n, int64_t hd, const float *q, const uint16_t *k, size_t stride, float scale,
                       float *scores);
    void (*weighted_sum_f16)(int64_t n, int64_t hd, const float *p, const uint16_t *v, size_t stride, float *out);
    void (*attend_f16)(int nq, const int *n, int64_t hd, const float *const *q, const uint16_t *k, const uint16_t *v,
                       size_t stride, float scale, float *scratch, float *const *out);
    void (*softmax_capped)(int64_t n, float *s, float cap); /* behind slm_vec_softmax_capped */
    void (*softcap)(int64_t n, float *x, float cap);        /* behind slm_vec_softcap */
    /* behind slm_attend_f32; NULL: slm_attend_f32_rows on this table's dot/axpy */
    void (*attend_f32)(int nq, int n, int64_t hd, const float *const *q, const float *k, const float *v, size_t stride,
                       float scale, float *scratch, float *const *out);
    /* behind slm_vec_gelu; table: slm_gelu_table() */
    void (*gelu)(int64_t n, float *x, const float *bias, const float *mul, const uint16_t *table);
    void (*swiglu)(int64_t n, float *x, const float *mul); /* behind slm_vec_swiglu */
    /* kernels over the R16 layout of packed.h, by weight type; NULL where there is none */
    slm_packed_gemm_fn packed_gemm[SLM_TYPE_COUNT];
    /* batched GEMM of gemm_big.h; NULL members where the ISA has none */
    struct slm_gemm_big *big;
    /* batched GEMM of float weights (every ISA has one) */
    slm_float_gemm fgemm;
    /* the 16-bit integer GEMM of encoders' F16 weights; NULL members below AVX-512 */
    slm_i16_gemm i16;
} slm_kernel_table;

void slm_kernels_fill_scalar(slm_kernel_table *t);
void slm_kernels_fill_avx2(slm_kernel_table *t);
void slm_kernels_fill_avx512(slm_kernel_table *t);
void slm_kernels_fill_packed_avx512(slm_kernel_table *t);
/* Sets t->i16 (the AVX-512 level: VNNI). */
void slm_kernels_fill_i16_avx512(slm_kernel_table *t);

/* The table of the selected ISA (built once). */
const slm_kernel_table *slm_kernels_active(void);
/* The table of a given ISA level, for tests; NULL if this CPU cannot run it. */
const slm_kernel_table *slm_kernels_for_isa(slm_isa isa);

/* Softmax of each of nq score rows in place (max-subtracted expf, sum in double), shared by the
 * attend_f16 implementations so every ISA rounds the softmax identically. */
void slm_softmax_rows(int nq, const int *n, float *scores, size_t row_stride);
/* The scalar slm_vec_softmax_capped (libm tanhf), also the tail of the vector versions. */
void slm_softmax_capped_scalar(int64_t n, float *s, float cap);
/* The scalar slm_vec_softcap (libm tanhf), also the tail of the vector versions. */
void slm_softcap_scalar(int64_t n, float *x, float cap);

/* ggml's GELU table: 65536 halves, entry h = f16(tanh-GELU(f32(h))) evaluated in f32 (built once). */
const uint16_t *slm_gelu_table(void);
/* slm_vec_gelu of one value (kernels.h), the scalar path and the reference of the vector ones. */
static inline float slm_gelu_lookup(float v, const uint16_t *table) {
    if (v <= -10.0f) return 0.0f;
    if (v >= 10.0f) return v;
    return slm_fp16_to_fp32(table[slm_fp32_to_fp16(v)]);
}
void slm_gelu_scalar(int64_t n, float *x, const float *bias, const float *mul, const uint16_t *table);
/* slm_vec_swiglu with libm's expf: the scalar path, the tail and the reference of the vector ones. */
void slm_swiglu_scalar(int64_t n, float *x, const float *mul);

/* slm_attend_f32 one query at a time with a table's dot_f32 / axpy_f32 (the paths without a
 * blocked kernel, and the blocked kernel's fallback for head sizes it does not take). */
void slm_attend_f32_rows(const slm_kernel_table *t, int nq, int n, int64_t hd, const float *const *q, const float *k,
                         const float *v, size_t stride, float scale, float *scratch, float *const *out);

/* The quantizer of an activation format (NULL for f32). */
slm_quantize_act_fn slm_act_quantizer(const slm_kernel_table *t, slm_act_kind kind);

/* Bytes of one activation row of k elements in the given format. */
size_t slm_act_row_bytes(slm_act_kind kind, int64_t k);



/* slm_weight_i16_bytes for a given table (tests), regardless of SLM_NO_PACK / SLM_NO_I16. */
size_t slm_weight_i16_bytes_for(const slm_kernel_table *table, const slm_weight *w);
/* slm_weight_packed_bytes for a given table (tests), regardless of SLM_NO_PACK. */
size_t slm_weight_packed_bytes_for(const slm_kernel_table *table, const slm_weight *w);

/* slm_matmul's fast path with an explicit table (tests run every ISA through this). */
void slm_matmul_with(slm_pool *pool, const slm_kernel_table *table, const slm_weight *w, const float *x, int n_tok,
                     float *y);
void slm_matmul_multi_with(slm_pool *pool, const slm_kernel_table *table, const slm_weight *const *w, int n_w,
                           const float *x, int n_tok, float *const *y);
#endif
