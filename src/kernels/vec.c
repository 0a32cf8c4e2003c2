/* Public vector helpers: thin wrappers over the selected ISA's table, which is looked up once and
 * cached because these are called per attention row. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "kernels/kernels_impl.h"

static _Atomic(const slm_kernel_table *) cached_table;

static inline const slm_kernel_table *table(void) {
    const slm_kernel_table *t = atomic_load_explicit(&cached_table, memory_order_acquire);
    if (!t) {
        t = slm_kernels_active();
        atomic_store_explicit(&cached_table, t, memory_order_release);
    }
    return t;
}

float slm_vec_dot_f32(int64_t n, const float *a, const float *b) {
    return table()->dot_f32(n, a, b);
}

float slm_vec_dot_f16_f32(int64_t n, const uint16_t *a, const float *b) {
    return table()->dot_f16_f32(n, a, b);
}

void slm_vec_axpy_f32(int64_t n, float *y, float s, const float *a) {
    table()->axpy_f32(n, y, s, a);
}

void slm_vec_axpy_f16_f32(int64_t n, float *y, float s, const uint16_t *a) {
    table()->axpy_f16_f32(n, y, s, a);
}

void slm_vec_f32_to_f16(int64_t n, const float *src, uint16_t *dst) {
    table()->f32_to_f16(n, src, dst);
}

void slm_vec_scores_f16(int64_t n, int64_t hd, const float *q, const uint16_t *k, size_t stride, float scale,
                        float *scores) {
    table()->scores_f16(n, hd, q, k, stride, scale, scores);
}

void slm_vec_weighted_sum_f16(int64_t n, int64_t hd, const float *p, const uint16_t *v, size_t stride, float *out) {
    table()->weighted_sum_f16(n, hd, p, v, stride, out);
}

void slm_attend_f16(int nq, const int *n, int64_t hd, const float *const *q, const uint16_t *k, const uint16_t *v,
                    size_t stride, float scale, float *scratch, float *const *out) {
    if (nq > 0) table()->attend_f16(nq, n, hd, q, k, v, stride, scale, scratch, out);
}

static uint16_t gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

/* The same f32 evaluation as ggml's table (and forward.c's until now), so every entry matches. */
static void gelu_init(void) {
    for (int i = 0; i < 1 << 16; i++) {
        float x = slm_fp16_to_fp32((uint16_t)i);
        float y = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        gelu_table[i] = slm_fp32_to_fp16(y);
    }
}

const uint16_t *slm_gelu_table(void) {
    pthread_once(&gelu_once, gelu_init);
    return gelu_table;
}

void slm_gelu_scalar(int64_t n, float *x, const float *bias, const float *mul, const uint16_t *table) {
    for (int64_t i = 0; i < n; i++) {
        float g = slm_gelu_lookup(bias ? x[i] + bias[i] : x[i], table);
        x[i] = mul ? g * mul[i] : g;
    }
}

void slm_vec_gelu(int64_t n, float *x, const float *bias, const float *mul) {
    if (n <= 0) return;
    const slm_kernel_table *t = table();
    if (t->gelu) t->gelu(n, x, bias, mul, slm_gelu_table());
    else slm_gelu_scalar(n, x, bias, mul, slm_gelu_table());
}

void slm_swiglu_scalar(int64_t n, float *x, const float *mul) {
    for (int64_t i = 0; i < n; i++) {
        const float g = x[i];
        x[i] = g / (1.0f + expf(-g)) * mul[i];
    }
}

void slm_vec_swiglu(int64_t n, float *x, const float *mul) {
    if (n <= 0) return;
    const slm_kernel_table *t = table();
    if (t->swiglu) t->swiglu(n, x, mul);
    else slm_swiglu_scalar(n, x, mul);
}

/* The blocked kernel's: scores of 4 queries and K transposed, n rounded up to 32 keys (more than
 * the n floats of one query's scores that slm_attend_f32_rows needs). */
size_t slm_attend_f32_scratch(int nq, int n, int64_t hd) {
    (void)nq;
    const size_t n_tile = ((size_t)(n > 0 ? n : 0) + 31) & ~(size_t)31;
    return ((size_t)(hd > 0 ? hd : 0) + 4) * n_tile;
}

void slm_attend_f32_rows(const slm_kernel_table *t, int nq, int n, int64_t hd, const float *const *q, const float *k,
                         const float *v, size_t stride, float scale, float *scratch, float *const *out) {
    for (int i = 0; i < nq; i++) {
        for (int j = 0; j < n; j++) scratch[j] = t->dot_f32(hd, q[i], k + (size_t)j * stride) * scale;
        slm_softmax_rows(1, &n, scratch, 0);
        for (int64_t d = 0; d < hd; d++) out[i][d] = 0.0f;
        for (int j = 0; j < n; j++) t->axpy_f32(hd, out[i], scratch[j], v + (size_t)j * stride);
    }
}

void slm_attend_f32(int nq, int n, int64_t hd, const float *const *q, const float *k, const float *v, size_t stride,
                    float scale, float *scratch, float *const *out) {
    if (nq <= 0 || hd <= 0) return;
    if (n <= 0) { /* nothing to attend to: a zero output, as an empty sum */
        for (int i = 0; i < nq; i++)
            for (int64_t d = 0; d < hd; d++) out[i][d] = 0.0f;
        return;
    }
    const slm_kernel_table *t = table();
    if (t->attend_f32) t->attend_f32(nq, n, hd, q, k, v, stride, scale, scratch, out);
    else slm_attend_f32_rows(t, nq, n, hd, q, k, v, stride, scale, scratch, out);
}

void slm_softcap_scalar(int64_t n, float *x, float cap) {
    for (int64_t j = 0; j < n; j++) x[j] = tanhf(x[j] * (1.0f / cap)) * cap;
}

void slm_vec_softcap(int64_t n, float *x, float cap) {
    const slm_kernel_table *t = table();
    if (t->softcap) t->softcap(n, x, cap);
    else slm_softcap_scalar(n, x, cap);
}

void slm_softmax_capped_scalar(int64_t n, float *s, float cap) {
    if (cap > 0) slm_softcap_scalar(n, s, cap);
    int ni = (int)n;
    slm_softmax_rows(1, &ni, s, 0);
}

void slm_vec_softmax_capped(int64_t n, float *s, float cap) {
    const slm_kernel_table *t = table();
    if (t->softmax_capped) t->softmax_capped(n, s, cap);
    else slm_softmax_capped_scalar(n, s, cap);
}

void slm_softmax_rows(int nq, const int *n, float *scores, size_t row_stride) {
    for (int i = 0; i < nq; i++) {
        float *s = scores + (size_t)i * row_stride;
        float max = -INFINITY;
        for (int j = 0; j < n[i]; j++)
            if (s[j] > max) max = s[j];
        double sum = 0;
        for (int j = 0; j < n[i]; j++) {
            s[j] = expf(s[j] - max);
            sum += s[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n[i]; j++) s[j] *= inv;
    }
}
