/* Scalar versions of the fast path's quantized math. Each weight block is unpacked to small
 * integers with integer scales, multiplied with 8-bit activations in exact integer arithmetic,
 * and only the per-block result is scaled in float. The SIMD files compute the same integers, so
 * they match these to float rounding; these in turn match the exact path to within what the
 * 8-bit activation rounding explains. */
#include <math.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/unpack.h"

/* ---- activation quantizers (shared by every ISA so all paths see identical activations) ---- */

static void quantize_q8(int64_t k, const float *x, void *dst) {
    slm_act_q8 *out = dst;
    for (int64_t b = 0; b < k / SLM_QK; b++) {
        const float *xb = x + b * SLM_QK;
        float amax = 0.0f;
        for (int i = 0; i < SLM_QK; i++) {
            float v = fabsf(xb[i]);
            amax = v > amax ? v : amax; /* fmaxf, without the libm call */
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int i = 0; i < SLM_QK; i++) {
            int q = (int)nearbyintf(xb[i] * id);
            out[b].qs[i] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].sum = sum;
    }
}

static void quantize_q8k(int64_t k, const float *x, void *dst) {
    block_q8_K *out = dst;
    for (int64_t b = 0; b < k / SLM_QK_K; b++) {
        const float *xb = x + b * SLM_QK_K;
        float amax = 0.0f;
        for (int i = 0; i < SLM_QK_K; i++) {
            float v = fabsf(xb[i]);
            amax = v > amax ? v : amax;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int g = 0; g < SLM_QK_K / 16; g++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) {
                int q = (int)nearbyintf(xb[g * 16 + i] * id);
                out[b].qs[g * 16 + i] = (int8_t)q;
                sum += q;
            }
            out[b].bsums[g] = (int16_t)sum;
        }
        out[b].d = d;
    }
}

/* ---- float weights ---- */

static inline float weight_as_f32(const uint8_t *w, int64_t i, uint32_t type) {
    if (type == SLM_TYPE_F32) {
        float f;
        memcpy(&f, w + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, w + 2 * i, 2);
    return type == SLM_TYPE_F16 ? slm_fp16_to_fp32(h) : slm_bf16_to_fp32(h);
}

static inline float float_dot(int64_t k, const void *w, const float *x, uint32_t type) {
    float sum = 0.0f;
    for (int64_t i = 0; i < k; i++) sum += weight_as_f32(w, i, type) * x[i];
    return sum;
}

static float vec_dot_f32(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_F32);
}
static float vec_dot_f16(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_F16);
}
static float vec_dot_bf16(int64_t k, const void *w, const void *act) {
    return float_dot(k, w, act, SLM_TYPE_BF16);
}

/* ---- legacy 32-element quants: w = d*q + m ---- */

#define LEGACY_DOT(name, block_t)                                                   \
    static float vec_dot_##name(int64_t k, const void *w, const void *act) {        \
        const block_t *wb = w;                                                      \
        const slm_act_q8 *ab = act;                                                 \
        float sum = 0.0f;                                                           \
        for (int64_t b = 0; b < k / SLM_QK; b++) {                                  \
            int8_t q[SLM_QK];                                                       \
            float d, m;                                                             \
            slm_unpack_##name(&wb[b], q, &d, &m);                                   \
            int isum = 0;                                                           \
            for (int i = 0; i < SLM_QK; i++) isum += q[i] * ab[b].qs[i];            \
            sum += d * ab[b].d * (float)isum + m * (ab[b].d * (float)ab[b].sum);                         \
        }                                                                           \
        return sum;                                                                 \
    }

LEGACY_DOT(q4_0, block_q4_0)
LEGACY_DOT(q4_1, block_q4_1)
LEGACY_DOT(q5_0, block_q5_0)
LEGACY_DOT(q5_1, block_q5_1)
LEGACY_DOT(q8_0, block_q8_0)
LEGACY_DOT(iq4_nl, block_iq4_nl)

/* ---- k-quants: w = d*scale[g]*q - dmin*min[g] over 16-element groups g ---- */

#define KQUANT_DOT(name, block_t)                                                   \
    static float vec_dot_##name(int64_t k, const void *w, const void *act) {        \
        const block_t *wb = w;                                                      \
        const block_q8_K *ab = act;                                                 \
        float sum = 0.0f;                                                           \
        for (int64_t b = 0; b < k / SLM_QK_K; b++) {                                \
            slm_kblock u;                                                           \
            slm_unpack_##name(&wb[b], &u);                                          \
            int isum = 0, msum = 0;                                                 \
            for (int g = 0; g < SLM_QK_K / 16; g++) {                               \
                int gsum = 0;                                                       \
                for (int i = 0; i < 16; i++) gsum += u.q[g * 16 + i] * ab[b].qs[g * 16 + i]; \
                isum += gsum * u.scale[g];                                          \
                msum += ab[b].bsums[g] * u.min[g];                                  \
            }                                                                       \
            sum += ab[b].d * (u.d * (float)isum - u.dmin * (float)msum);            \
        }                                                                           \
        return sum;                                                                 \
    }

KQUANT_DOT(q2_K, block_q2_K)
KQUANT_DOT(q3_K, block_q3_K)
KQUANT_DOT(q4_K, block_q4_K)
KQUANT_DOT(q5_K, block_q5_K)
KQUANT_DOT(q6_K, block_q6_K)

/* ---- vector helpers ---- */

static float dot_f32(int64_t n, const float *a, const float *b) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float dot_f16_f32(int64_t n, const uint16_t *a, const float *b) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += slm_fp16_to_fp32(a[i]) * b[i];
    return sum;
}

static void axpy_f32(int64_t n, float *y, float s, const float *a) {
    for (int64_t i = 0; i < n; i++) y[i] += s * a[i];
}

static void axpy_f16_f32(int64_t n, float *y, float s, const uint16_t *a) {
    for (int64_t i = 0; i < n; i++) y[i] += s * slm_fp16_to_fp32(a[i]);
}

static void f32_to_f16(int64_t n, const float *src, uint16_t *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = slm_fp32_to_fp16(src[i]);
}

static void scores_f16(int64_t n, int64_t hd, const float *q, const uint16_t *k, size_t stride, float scale,
                       float *scores) {
    for (int64_t j = 0; j < n; j++) scores[j] = scale * dot_f16_f32(hd, k + (size_t)j * stride, q);
}

static void weighted_sum_f16(int64_t n, int64_t hd, const float *p, const uint16_t *v, size_t stride, float *out) {
    for (int64_t i = 0; i < hd; i++) out[i] = 0.0f;
    for (int64_t j = 0; j < n; j++) axpy_f16_f32(hd, out, p[j], v + (size_t)j * stride);
}

static int max_n(int nq, const int *n) {
    int m = 0;
    for (int i = 0; i < nq; i++) m = n[i] > m ? n[i] : m;
    return m;
}

static void attend_f16(int nq, const int *n, int64_t hd, const float *const *q, const uint16_t *k, const uint16_t *v,
                       size_t stride, float scale, float *scratch, float *const *out) {
    const size_t row = (size_t)max_n(nq, n);
    for (int i = 0; i < nq; i++) scores_f16(n[i], hd, q[i], k, stride, scale, scratch + (size_t)i * row);
    slm_softmax_rows(nq, n, scratch, row);
    for (int i = 0; i < nq; i++) weighted_sum_f16(n[i], hd, scratch + (size_t)i * row, v, stride, out[i]);
}

/* ---- float-weight GEMM (kernels_impl.h, slm_float_gemm) ---- */

void slm_fgemm_pack_scalar(uint32_t type, int64_t k, const uint8_t *rows, size_t row_bytes, int nr, float *dst) {
    for (int i = 0; i < SLM_FGEMM_GROUP; i++) {
        const uint8_t *row = rows + (size_t)i * row_bytes;
        for (int64_t kk = 0; kk < k; kk++) dst[kk * SLM_FGEMM_GROUP + i] = i < nr ? weight_as_f32(row, kk, type) : 0.0f;
    }
}

/* 16 rows (one group) by FGEMM_SCALAR_TOKENS tokens of accumulators; the lane loop vectorises
 * with the baseline SSE2. */
#define FGEMM_SCALAR_TOKENS 4

static void fgemm_tile(int64_t kb, const float *panel, size_t group_stride, int nr, const float *x, size_t x_stride,
                       int nt, float *y, size_t y_stride, bool accumulate) {
    for (int g = 0; g * SLM_FGEMM_GROUP < nr; g++) {
        const float *group = panel + (size_t)g * group_stride;
        const int rows = nr - g * SLM_FGEMM_GROUP < SLM_FGEMM_GROUP ? nr - g * SLM_FGEMM_GROUP : SLM_FGEMM_GROUP;
        for (int t0 = 0; t0 < nt; t0 += FGEMM_SCALAR_TOKENS) {
            const int n = nt - t0 < FGEMM_SCALAR_TOKENS ? nt - t0 : FGEMM_SCALAR_TOKENS;
            float acc[FGEMM_SCALAR_TOKENS][SLM_FGEMM_GROUP] = {{0}};
            for (int64_t kk = 0; kk < kb; kk++) {
                const float *wv = group + kk * SLM_FGEMM_GROUP;
                for (int j = 0; j < n; j++) {
                    const float xv = x[(size_t)(t0 + j) * x_stride + (size_t)kk];
                    for (int i = 0; i < SLM_FGEMM_GROUP; i++) acc[j][i] += wv[i] * xv;
                }
            }
            for (int j = 0; j < n; j++) {
                float *out = y + (size_t)(t0 + j) * y_stride + (size_t)g * SLM_FGEMM_GROUP;
                for (int i = 0; i < rows; i++) out[i] = accumulate ? out[i] + acc[j][i] : acc[j][i];
            }
        }
    }
}

void slm_kernels_fill_scalar(slm_kernel_table *t) {
    memset(t, 0, sizeof *t);
    t->attend_f16 = attend_f16;
    t->softmax_capped = slm_softmax_capped_scalar;
    t->softcap = slm_softcap_scalar;
    t->scores_f16 = scores_f16;
    t->weighted_sum_f16 = weighted_sum_f16;
    t->dot_f32 = dot_f32;
    t->dot_f16_f32 = dot_f16_f32;
    t->axpy_f32 = axpy_f32;
    t->axpy_f16_f32 = axpy_f16_f32;
    t->f32_to_f16 = f32_to_f16;
    t->quantize_q8 = quantize_q8;
    t->quantize_q8k = quantize_q8k;
    t->fgemm = (slm_float_gemm){slm_fgemm_pack_scalar, fgemm_tile};
    t->gelu = slm_gelu_scalar;
    t->swiglu = slm_swiglu_scalar;
    t->types[SLM_TYPE_F32] = (slm_type_kernels){SLM_ACT_F32, vec_dot_f32, NULL};
    t->types[SLM_TYPE_F16] = (slm_type_kernels){SLM_ACT_F32, vec_dot_f16, NULL};
    t->types[SLM_TYPE_BF16] = (slm_type_kernels){SLM_ACT_F32, vec_dot_bf16, NULL};
    t->types[SLM_TYPE_Q4_0] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_q4_0, NULL};
    t->types[SLM_TYPE_Q4_1] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_q4_1, NULL};
    t->types[SLM_TYPE_Q5_0] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_q5_0, NULL};
    t->types[SLM_TYPE_Q5_1] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_q5_1, NULL};
    t->types[SLM_TYPE_Q8_0] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_q8_0, NULL};
    t->types[SLM_TYPE_IQ4_NL] = (slm_type_kernels){SLM_ACT_Q8, vec_dot_iq4_nl, NULL};
    t->types[SLM_TYPE_Q2_K] = (slm_type_kernels){SLM_ACT_Q8K, vec_dot_q2_K, NULL};
    t->types[SLM_TYPE_Q3_K] = (slm_type_kernels){SLM_ACT_Q8K, vec_dot_q3_K, NULL};
    t->types[SLM_TYPE_Q4_K] = (slm_type_kernels){SLM_ACT_Q8K, vec_dot_q4_K, NULL};
    t->types[SLM_TYPE_Q5_K] = (slm_type_kernels){SLM_ACT_Q8K, vec_dot_q5_K, NULL};
    t->types[SLM_TYPE_Q6_K] = (slm_type_kernels){SLM_ACT_Q8K, vec_dot_q6_K, NULL};
}
