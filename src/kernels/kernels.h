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
    void *packed;         /* NULL, or the copy slm_weight_pack made; `data` stays valid */
} slm_weight;

/* y[t*m + r] = dot(row r of w, x[t*k .. t*k+k)) for t < n_tok.
 * exact: the f32 reference path (scalar dequantize each row to f32, f32 dot); otherwise the fastest
 * path of this CPU (activations may be quantized to 8 bits like llama.cpp).
 * The fast path keeps its work memory in the pool (grown on first use, then reused); with a NULL
 * pool, or if that memory cannot be had, it computes the exact path instead. */
void slm_matmul(slm_pool *pool, const slm_weight *w, const float *x, int n_tok, float *y, bool exact);

/* Several weights with the same k applied to the same input (q/k/v, gate/up): the same results as
 * one slm_matmul per weight (y[i] gets n_tok rows of w[i]->m floats), but the input is quantized
 * once and all rows are shared out in one pool operation. */
void slm_matmul_multi(slm_pool *pool, const slm_weight *const *w, int n_w, const float *x, int n_tok, float *const *y,
                      bool exact);

/* Weights repacked at load for the selected ISA's fastest kernels (kernels/packed.h).
 * slm_weight_packed_bytes: the size of w's packed copy, 0 if those kernels have no layout for its
 * type and shape, or SLM_NO_PACK=1 is set. slm_weight_pack writes the copy into dst (that many
 * bytes, 64-byte aligned, owned by the caller and kept alive as long as w is used), spread over
 * the pool's threads, and points w->packed at it; after each slice it calls consumed(ctx, p, n)
 * (if not NULL) with bytes of w->data it will not read again, so the caller may release them. */
size_t slm_weight_packed_bytes(const slm_weight *w);
void slm_weight_pack(slm_pool *pool, slm_weight *w, void *dst, void (*consumed)(void *ctx, const void *p, size_t n),
                     void *ctx);

/* An F16 matrix's int16 copy (for slm_weight_pack; kernels_impl.h, slm_i16_gemm): rows scaled to
 * 14-bit integers, multiplied by activations scaled likewise per block of 32 (vpdpwssd: twice the
 * f32 FMA rate). Its size, or 0 unless w is F16, the ISA is AVX-512, SLM_NO_I16 and SLM_NO_PACK
 * are not set, k is a multiple of 32 and m of 16. The model asks for it for encoders only. */
size_t slm_weight_i16_bytes(const slm_weight *w);

/* Copies row `row` of w dequantized to f32 (embedding lookup). */
void slm_weight_row_f32(const slm_weight *w, int64_t row, float *dst);

/* Vector helpers for the rest of the forward pass (attention over an f16 or f32 KV cache), on
 * the selected ISA path. f16 means IEEE half floats stored as uint16_t. */
float slm_vec_dot_f32(int64_t n, const float *a, const float *b);
float slm_vec_dot_f16_f32(int64_t n, const uint16_t *a, const float *b);
void slm_vec_axpy_f32(int64_t n, float *y, float s, const float *a);      /* y += s * a */
void slm_vec_axpy_f16_f32(int64_t n, float *y, float s, const uint16_t *a); /* y += s * a */
void slm_vec_f32_to_f16(int64_t n, const float *src, uint16_t *dst);       /* round to nearest even */
/* Attention over an f16 cache, one call per (token, head) so nothing is paid per position:
 * scores[j] = scale * dot(q, k + j*stride) for j < n (hd elements each), and
 * out = sum over j < n of p[j] * (v + j*stride) (out is overwritten). stride is in elements. */
void slm_vec_scores_f16(int64_t n, int64_t hd, const float *q, const uint16_t *k, size_t stride, float scale,
                        float *scores);
void slm_vec_weighted_sum_f16(int64_t n, int64_t hd, const float *p, const uint16_t *v, size_t stride, float *out);

/* Softmax attention of nq query rows sharing one KV head of an f16 cache (the query heads of a GQA
 * group, and/or several tokens of one sequence), so each cached K/V row is converted once for all
 * of them. Query i attends to positions j < n[i]:
 *   s_j = scale * dot(q[i], K_j);  p = softmax(s) (max-subtracted expf, sum in double);
 *   out[i] = sum_j p_j * V_j        with K_j = k + j*stride, V_j = v + j*stride (hd halves each).
 * scratch: nq * max(n) floats. out rows must not overlap q rows. */
void slm_attend_f16(int nq, const int *n, int64_t hd, const float *const *q, const uint16_t *k, const uint16_t *v,
                    size_t stride, float scale, float *scratch, float *const *out);
/* Softmax attention of nq queries over the same n keys of an f32 cache (the tokens of one encoded
 * sequence for one head: an encoder's every token sees the whole sequence). For i < nq:
 *   s_j = scale * dot(q[i], K_j);  p = softmax(s) (max-subtracted expf, sum in double);
 *   out[i] = sum_j p_j * V_j        with K_j = k + j*stride, V_j = v + j*stride (hd floats each).
 * Each K/V row is read once per block of queries instead of once per query; the AVX-512 path
 * multiplies blocks of queries by blocks of keys with the sums in registers.
 * scratch: slm_attend_f32_scratch(nq, n, hd) floats, (hd + 4) * (n rounded up to 32) (it does
 * not grow with nq). out rows must not overlap q rows. */
size_t slm_attend_f32_scratch(int nq, int n, int64_t hd);
void slm_attend_f32(int nq, int n, int64_t hd, const float *const *q, const float *k, const float *v, size_t stride,
                    float scale, float *scratch, float *const *out);
/* Gemma-2's capped softmax of n scores in place: s = cap * tanh(s / cap) when cap > 0, then
 * softmax (max-subtracted exp, sum in double). The vector paths compute tanh from their exp. */
void slm_vec_softmax_capped(int64_t n, float *s, float cap);
/* Gemma-2's final logit soft-cap in place: x = cap * tanh(x / cap) (cap > 0). The scalar path is
 * libm's tanhf; the vector paths take tanh from their exp, within ~1e-7 absolute of it. */
void slm_vec_softcap(int64_t n, float *x, float cap);

/* GELU exactly as llama.cpp computes it (ggml's f16 table of the tanh approximation, evaluated in
 * f32 and stored as f16, looked up by the input rounded to f16; 0 at or below -10, the input at or
 * above 10), with the bias add before and the GeGLU product after it fused in: for i < n,
 *   x[i] = gelu(x[i] + bias[i]) * mul[i]      (bias and mul may each be NULL: no add / no product)
 * The vector paths give the same bits as the scalar one (hardware f16 rounding is round-to-nearest-
 * even, like slm_fp32_to_fp16); a NaN stays a NaN. */
void slm_vec_gelu(int64_t n, float *x, const float *bias, const float *mul);

/* SwiGLU's gate on a fast path: for i < n, x[i] = silu(x[i]) * mul[i], silu(g) = g / (1 + e^-g).
 * The scalar path uses libm's expf; the vector paths a polynomial exp within ~2 ulp of it, so
 * their results differ from the scalar one by a few ulp (an exact path keeps to expf itself). */
void slm_vec_swiglu(int64_t n, float *x, const float *mul);

/* Name of the selected ISA path; SLM_ISA=scalar|avx2|avx512|amx forces a lower one. */
const char *slm_kernels_isa(void);

#endif
