/* LoRA 8-bit copies (lora_q8.h): quantization, the scalar kernel and the dispatch. */
#include "kernels/lora_q8.h"

#include <math.h>
#include <stdatomic.h>

#include "kernels/kernels_impl.h"

#define BLK SLM_LORA_Q8_BLOCK

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int64_t blocks(int64_t n) { return (n + BLK - 1) / BLK; }

size_t slm_lora_q8_bytes(int rank, int64_t n_in, int64_t n_out) {
    size_t r = (size_t)rank, nb_in = (size_t)blocks(n_in), nb_out = (size_t)blocks(n_out);
    return align64(r * nb_in * BLK) + align64(sizeof(float) * r * nb_in) + align64(nb_out * r * BLK) +
           align64(sizeof(float) * nb_out * r);
}

/* n values (stride apart) → codes with one scale: absmax / 127, round to nearest. */
static float quantize_block(const float *v, size_t stride, int n, int8_t *codes) {
    float amax = 0;
    for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(v[(size_t)i * stride]));
    float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0;
    for (int i = 0; i < BLK; i++) codes[i] = i < n ? (int8_t)lrintf(v[(size_t)i * stride] * inv) : 0;
    return d;
}

void slm_lora_q8_quantize(int rank, int64_t n_in, int64_t n_out, const float *a, const float *b, size_t b_stride,
                          void *mem, slm_lora_q8 *out) {
    size_t r = (size_t)rank, nb_in = (size_t)blocks(n_in), nb_out = (size_t)blocks(n_out);
    uint8_t *p = mem;
    int8_t *qa = (int8_t *)p;
    p += align64(r * nb_in * BLK);
    float *da = (float *)p;
    p += align64(sizeof(float) * r * nb_in);
    int8_t *qb = (int8_t *)p;
    p += align64(nb_out * r * BLK);
    float *db = (float *)p;
    for (size_t q = 0; q < r; q++)
        for (size_t k = 0; k < nb_in; k++) {
            int n = (int)(n_in - (int64_t)k * BLK < BLK ? n_in - (int64_t)k * BLK : BLK);
            da[q * nb_in + k] = quantize_block(a + q * (size_t)n_in + k * BLK, 1, n, qa + (q * nb_in + k) * BLK);
        }
    for (size_t ob = 0; ob < nb_out; ob++) {
        int n = (int)(n_out - (int64_t)ob * BLK < BLK ? n_out - (int64_t)ob * BLK : BLK);
        for (size_t q = 0; q < r; q++)
            db[ob * r + q] = quantize_block(b + ob * BLK * b_stride + q, b_stride, n, qb + (ob * r + q) * BLK);
    }
    *out = (slm_lora_q8){.rank = rank, .n_in = n_in, .n_out = n_out, .a = qa, .a_scale = da, .b = qb, .b_scale = db,
                          .mem = mem, .bytes = slm_lora_q8_bytes(rank, n_in, n_out)};
}

void slm_lora_q8_apply_scalar(const slm_lora_q8 *p, const float *x, float mult, float *y) {
    float ax[SLM_LORA_Q8_MAX_RANK];
    int64_t nb_in = blocks(p->n_in), nb_out = blocks(p->n_out);
    for (int q = 0; q < p->rank; q++) {
        const int8_t *row = p->a + (size_t)q * (size_t)nb_in * BLK;
        float sum = 0;
        for (int64_t k = 0; k < nb_in; k++) {
            int64_t n = p->n_in - k * BLK < BLK ? p->n_in - k * BLK : BLK;
            float part = 0;
            for (int64_t i = 0; i < n; i++) part += (float)row[k * BLK + i] * x[k * BLK + i];
            sum += part * p->a_scale[(size_t)q * (size_t)nb_in + (size_t)k];
        }
        ax[q] = sum * mult;
    }
    for (int64_t ob = 0; ob < nb_out; ob++) {
        int64_t n = p->n_out - ob * BLK < BLK ? p->n_out - ob * BLK : BLK;
        float acc[BLK] = {0};
        for (int q = 0; q < p->rank; q++) {
            float c = ax[q] * p->b_scale[(size_t)ob * (size_t)p->rank + (size_t)q];
            const int8_t *codes = p->b + ((size_t)ob * (size_t)p->rank + (size_t)q) * BLK;
            for (int i = 0; i < BLK; i++) acc[i] += c * (float)codes[i];
        }
        for (int64_t i = 0; i < n; i++) y[ob * BLK + i] += acc[i];
    }
}

void slm_lora_q8_prefetch(const slm_lora_q8 *p) {
    /* every line: a term is a few kilobytes, and the loads of the one computed meanwhile hit */
    const char *m = p->mem;
    for (size_t i = 0; i < p->bytes; i += 64) __builtin_prefetch(m + i, 0, 2);
}

slm_lora_q8_fn slm_lora_q8_kernel(int isa) {
    slm_isa have = slm_isa_supported();
    if (isa <= SLM_ISA_SCALAR) return slm_lora_q8_apply_scalar;
    if (isa == SLM_ISA_AVX2) return have >= SLM_ISA_AVX2 ? slm_lora_q8_apply_avx2 : NULL;
    return have >= SLM_ISA_AVX512 ? slm_lora_q8_apply_avx512 : NULL;
}

static _Atomic(slm_lora_q8_fn) selected;

void slm_lora_q8_apply(const slm_lora_q8 *p, const float *x, float mult, float *y) {
    slm_lora_q8_fn f = atomic_load_explicit(&selected, memory_order_acquire);
    if (!f) {
        f = slm_lora_q8_kernel((int)slm_isa_selected());
        if (!f) f = slm_lora_q8_apply_scalar;
        atomic_store_explicit(&selected, f, memory_order_release);
    }
    f(p, x, mult, y);
}
