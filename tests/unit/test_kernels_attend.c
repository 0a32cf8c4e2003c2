/* slm_attend_f32 (kernels.h): nq queries over the same n keys of an f32 cache, on every ISA path
 * (the blocked AVX-512 kernel, the per-query rows elsewhere and for head sizes the blocks do not
 * take), against a double-precision softmax attention: head sizes in and out of the blocked set,
 * key counts around the 32-key tiles, query counts around the 4-query blocks, a cache stride wider
 * than a head, and scratch of exactly the size slm_attend_f32_scratch gives (ASan sees overruns). */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels_impl.h"
#include "test.h"

static uint64_t rng_state = 0xda942042e4dd58b5ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

typedef void (*attend_fn)(const slm_kernel_table *t, int nq, int n, int64_t hd, const float *const *q,
                          const float *k, const float *v, size_t stride, float scale, float *scratch,
                          float *const *out);

static void via_table(const slm_kernel_table *t, int nq, int n, int64_t hd, const float *const *q, const float *k,
                      const float *v, size_t stride, float scale, float *scratch, float *const *out) {
    if (t->attend_f32) t->attend_f32(nq, n, hd, q, k, v, stride, scale, scratch, out);
    else slm_attend_f32_rows(t, nq, n, hd, q, k, v, stride, scale, scratch, out);
}

static void via_public(const slm_kernel_table *t, int nq, int n, int64_t hd, const float *const *q, const float *k,
                       const float *v, size_t stride, float scale, float *scratch, float *const *out) {
    (void)t;
    slm_attend_f32(nq, n, hd, q, k, v, stride, scale, scratch, out);
}

static void check_case(const slm_kernel_table *t, const char *isa, attend_fn fn, int nq, int n, int64_t hd) {
    const size_t stride = (size_t)hd * 3 + 5;
    const float scale = 1.0f / sqrtf((float)hd);
    float *kv = malloc(sizeof(float) * (stride * (size_t)n + 1) * 2);
    float *k = kv, *v = kv + stride * (size_t)n + 1;
    float *qbuf = malloc(sizeof(float) * (size_t)nq * (size_t)(hd + 3));
    float *obuf = malloc(sizeof(float) * (size_t)nq * (size_t)(hd + 3));
    const float *q[16];
    float *out[16];
    for (size_t i = 0; i < (stride * (size_t)n + 1) * 2; i++) kv[i] = rng_uniform(-2.0f, 2.0f);
    for (int i = 0; i < nq; i++) {
        float *qi = qbuf + (size_t)(nq - 1 - i) * (size_t)(hd + 3); /* rows in reverse order, gaps between */
        for (int64_t d = 0; d < hd; d++) qi[d] = rng_uniform(-2.0f, 2.0f);
        q[i] = qi;
        out[i] = obuf + (size_t)i * (size_t)(hd + 3);
        for (int64_t d = 0; d < hd + 3; d++) out[i][d] = NAN;
    }
    const size_t scratch_n = slm_attend_f32_scratch(nq, n, hd);
    float *scratch = malloc(sizeof(float) * (scratch_n > 0 ? scratch_n : 1));
    fn(t, nq, n, hd, q, k, v, stride, scale, scratch, out);
    int bad = 0, clobbered = 0;
    double worst = 0;
    double *p = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < nq; i++) {
        double max = -INFINITY, sum = 0;
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int64_t d = 0; d < hd; d++) s += (double)q[i][d] * k[(size_t)j * stride + (size_t)d];
            p[j] = s * scale;
            if (p[j] > max) max = p[j];
        }
        for (int j = 0; j < n; j++) sum += p[j] = exp(p[j] - max);
        for (int64_t d = 0; d < hd; d++) {
            double ref = 0, mag = 0;
            for (int j = 0; j < n; j++) {
                ref += p[j] / sum * v[(size_t)j * stride + (size_t)d];
                mag += p[j] / sum * fabs(v[(size_t)j * stride + (size_t)d]);
            }
            double err = fabs((double)out[i][d] - ref);
            if (!(err <= 2e-5 * mag + 1e-6)) bad++;
            if (err > worst) worst = err;
        }
        for (int64_t d = hd; d < hd + 3; d++) clobbered += !isnan(out[i][d]);
    }
    CHECKF(bad == 0 && clobbered == 0,
           "%s attend_f32 nq=%d n=%d hd=%lld: %d outputs off the double reference (worst %g), %d written past hd", isa,
           nq, n, (long long)hd, bad, worst, clobbered);
    free(p);
    free(kv);
    free(qbuf);
    free(obuf);
    free(scratch);
}

int main(void) {
    static const int64_t hds[] = {16, 32, 48, 64, 128, 8, 40, 144};
    static const int ns[] = {1, 7, 31, 32, 33, 98};
    static const int nqs[] = {1, 3, 4, 5, 9};
    int n_isa = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        n_isa++;
        for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
            for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
                for (size_t c = 0; c < sizeof nqs / sizeof nqs[0]; c++)
                    check_case(t, slm_isa_level_name((slm_isa)isa), via_table, nqs[c], ns[b], hds[a]);
    }
    check_case(slm_kernels_active(), "slm_attend_f32", via_public, 6, 40, 64);
    /* no keys: a zero output */
    float qv[16] = {1.0f}, o[16];
    const float *qp = qv;
    float *op = o;
    for (int d = 0; d < 16; d++) o[d] = NAN;
    slm_attend_f32(1, 0, 16, &qp, qv, qv, 16, 1.0f, NULL, &op);
    int nonzero = 0;
    for (int d = 0; d < 16; d++) nonzero += o[d] != 0.0f;
    CHECKF(nonzero == 0, "attend over no keys: %d of 16 outputs not 0", nonzero);
    fprintf(stderr, "test_kernels_attend: %d ISA paths checked\n", n_isa);
    return test_report("test_kernels_attend");
}
