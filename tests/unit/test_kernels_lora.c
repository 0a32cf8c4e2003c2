/* The LoRA 8-bit kernels (kernels/lora_q8.h): every ISA path this CPU has against a double-precision
 * reference over the same dequantized codes (so only summation order may differ), on shapes with and
 * without partial blocks; and the 8-bit copies against the f32 product, within the error 8-bit codes
 * with a scale per 32 values allow. */
#include <math.h>
#include <stdlib.h>

#include "kernels/lora_q8.h"
#include "test.h"

static float frand(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

/* y += mult · B·(A·x) in double from the codes and scales in p. */
static void reference_q8(const slm_lora_q8 *p, const float *x, float mult, double *y) {
    int64_t nb_in = (p->n_in + 31) / 32;
    double ax[SLM_LORA_Q8_MAX_RANK];
    for (int q = 0; q < p->rank; q++) {
        double s = 0;
        for (int64_t i = 0; i < p->n_in; i++)
            s += (double)p->a[(size_t)q * (size_t)nb_in * 32 + (size_t)i] * p->a_scale[(size_t)q * (size_t)nb_in + (size_t)(i / 32)] * x[i];
        ax[q] = s * mult;
    }
    for (int64_t o = 0; o < p->n_out; o++) {
        int64_t ob = o / 32, i = o % 32;
        for (int q = 0; q < p->rank; q++)
            y[o] += ax[q] * p->b_scale[ob * p->rank + q] * p->b[((size_t)ob * (size_t)p->rank + (size_t)q) * 32 + (size_t)i];
    }
}

static void check_shape(int rank, int64_t n_in, int64_t n_out, unsigned seed) {
    unsigned s = seed;
    float *a = malloc(sizeof(float) * (size_t)rank * (size_t)n_in), *b = malloc(sizeof(float) * (size_t)rank * (size_t)n_out);
    float *x = malloc(sizeof(float) * (size_t)n_in), *y0 = malloc(sizeof(float) * (size_t)n_out + 64);
    float *y = malloc(sizeof(float) * (size_t)n_out + 64);
    double *ref = calloc((size_t)n_out, sizeof(double)), *exact = calloc((size_t)n_out, sizeof(double));
    for (int64_t i = 0; i < rank * n_in; i++) a[i] = frand(&s) * (i % 97 == 0 ? 8.0f : 1.0f); /* some outliers */
    for (int64_t i = 0; i < rank * n_out; i++) b[i] = frand(&s) * 0.1f;
    for (int64_t i = 0; i < n_in; i++) x[i] = frand(&s);
    for (int64_t i = 0; i < n_out; i++) y0[i] = frand(&s);
    y0[n_out] = 12345.0f; /* a guard after y: no kernel may write past n_out */
    void *mem = aligned_alloc(64, (slm_lora_q8_bytes(rank, n_in, n_out) + 63) & ~(size_t)63);
    slm_lora_q8 p;
    slm_lora_q8_quantize(rank, n_in, n_out, a, b, (size_t)rank, mem, &p);
    const float mult = 0.75f;
    reference_q8(&p, x, mult, ref);
    /* the f32 product (what the exact path computes), in double */
    for (int64_t o = 0; o < n_out; o++) {
        double d = 0;
        for (int q = 0; q < rank; q++) {
            double ax = 0;
            for (int64_t i = 0; i < n_in; i++) ax += (double)a[(size_t)q * (size_t)n_in + (size_t)i] * x[i];
            d += ax * b[(size_t)o * (size_t)rank + (size_t)q];
        }
        exact[o] = d * mult;
    }
    double scale = 0, q_err = 0;
    for (int64_t o = 0; o < n_out; o++) scale = fmax(scale, fabs(exact[o])), q_err = fmax(q_err, fabs(ref[o] - exact[o]));
    CHECKF(q_err <= 0.02 * scale, "rank %d %lldx%lld: 8-bit copies off by %g of a max %g", rank, (long long)n_in,
           (long long)n_out, q_err, scale);
    for (int isa = 0; isa <= 2; isa++) {
        slm_lora_q8_fn f = slm_lora_q8_kernel(isa);
        if (!f) continue;
        for (int64_t i = 0; i <= n_out; i++) y[i] = y0[i];
        f(&p, x, mult, y);
        double worst = 0;
        for (int64_t o = 0; o < n_out; o++) worst = fmax(worst, fabs((double)y[o] - ((double)y0[o] + ref[o])));
        CHECKF(worst <= 1e-5 * (1 + scale), "isa %d rank %d %lldx%lld: off the reference by %g", isa, rank,
               (long long)n_in, (long long)n_out, worst);
        CHECKF(y[n_out] == 12345.0f, "isa %d rank %d: wrote past the outputs", isa, rank);
    }
    free(mem);
    free(a), free(b), free(x), free(y0), free(y), free(ref), free(exact);
}

int main(void) {
    check_shape(8, 576, 192, 1);   /* smollm2's k/v */
    check_shape(8, 1536, 576, 2);  /* down */
    check_shape(1, 32, 32, 3);
    check_shape(4, 37, 45, 4);     /* partial blocks on both sides */
    check_shape(16, 100, 17, 5);   /* fewer outputs than one block */
    check_shape(256, 64, 70, 6);   /* the largest rank */
    /* all-zero A row: scale 0, no NaN */
    float a[64] = {0}, b[2] = {1, 1}, x[32], y[2] = {0, 0};
    for (int i = 0; i < 32; i++) x[i] = 1;
    void *mem = aligned_alloc(64, (slm_lora_q8_bytes(2, 32, 1) + 63) & ~(size_t)63);
    slm_lora_q8 p;
    slm_lora_q8_quantize(2, 32, 1, a, b, 2, mem, &p);
    slm_lora_q8_apply(&p, x, 1.0f, y);
    CHECK(y[0] == 0 && y[1] == 0);
    free(mem);
    return test_report("test_kernels_lora");
}
