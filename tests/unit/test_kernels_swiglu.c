/* slm_vec_swiglu (kernels.h): every ISA path against silu(g) * up computed in double, within a few
 * ulp (the vector paths' exp is a polynomial; the scalar one is libm's expf), over gates spanning
 * -100..100, the edges where e^-g over- or underflows, infinities, NaN and -0 (values under 1e-30
 * may flush to 0, overflowing products must be infinities); lengths off the vector
 * widths, and nothing written past n. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

/* silu(g) * up in double; NaN where the float formula gives NaN (-inf * 0) */
static double reference(float g, float up) {
    if (isnan(g) || isnan(up)) return NAN;
    if (isinf(g)) return g > 0 ? (double)INFINITY * up : NAN;
    return (double)g / (1.0 + exp(-(double)g)) * (double)up;
}

int main(void) {
    const int64_t n = 20011; /* not a multiple of 8 or 16 */
    float *gate = malloc(sizeof(float) * (size_t)n), *up = malloc(sizeof(float) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)(n + 16));
    static const float edges[] = {0.0f,   -0.0f, 1e-30f, -1e-30f, 86.0f,  -86.0f,    87.5f,    -87.5f,    88.8f,
                                  -88.8f, 89.0f, -89.0f, 100.0f,  -100.0f, INFINITY, -INFINITY, NAN,      1.0f,
                                  -1.0f,  0.5f,  -0.5f,  20.0f,   -20.0f,  3e38f,    -3e38f};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    for (int64_t i = 0; i < n; i++) {
        float range = i % 3 == 0 ? 100.0f : 8.0f;
        gate[i] = i < n_edges ? edges[i] : rng_uniform(-range, range);
        up[i] = rng_uniform(-2.0f, 2.0f);
    }
    static const int64_t lens[] = {-1, 1, 7, 8, 9, 15, 17, 31, 33};
    int n_isa = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        const char *name = slm_isa_level_name((slm_isa)isa);
        CHECKF(t->swiglu != NULL, "%s has no swiglu", name);
        if (!t->swiglu) continue;
        n_isa++;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t len = lens[li] < 0 ? n : lens[li];
            const int64_t off = lens[li] < 0 ? 0 : 3 * (int64_t)li;
            memcpy(got, gate + off, sizeof(float) * (size_t)len);
            for (int i = 0; i < 16; i++) got[len + i] = -777.0f;
            t->swiglu(len, got, up + off);
            int bad = 0, past = 0;
            double worst = 0;
            for (int64_t i = 0; i < len; i++) {
                const double want = reference(gate[off + i], up[off + i]);
                const float g = got[i];
                bool ok;
                if (isnan(want)) ok = isnan(g);
                else if (fabs(want) > FLT_MAX) ok = isinf(g) && (g > 0) == (want > 0); /* overflows in f32 */
                else {
                    /* a few ulp of the result; below 1e-30 (gates under about -69, where e^-g
                     * overflows or the exp is flushed) any tiny value, 0 included */
                    const double err = fabs((double)g - want);
                    ok = err <= 4e-7 * fabs(want) + 1e-30;
                    if (err > worst && fabs(want) > 0) worst = err / fabs(want);
                }
                if (!ok) {
                    if (bad < 3)
                        fprintf(stderr, "%s swiglu(%g) * %g = %.9g, want %.9g\n", name, (double)gate[off + i],
                                (double)up[off + i], (double)g, want);
                    bad++;
                }
            }
            for (int i = 0; i < 16; i++) past += got[len + i] != -777.0f;
            CHECKF(bad == 0 && past == 0, "%s swiglu n=%lld: %d values off (worst relative %g), %d written past n", name,
                   (long long)len, bad, worst, past);
        }
    }
    /* the public entry point follows the selected table */
    float one[3] = {1.0f, -2.0f, 0.0f};
    const float ups[3] = {2.0f, 1.0f, 5.0f};
    slm_vec_swiglu(3, one, ups);
    CHECKF(fabs(one[0] - 2.0 / (1.0 + exp(-1.0))) < 1e-6 && fabs(one[1] + 2.0 / (1.0 + exp(2.0))) < 1e-6 && one[2] == 0.0f,
           "slm_vec_swiglu: %g %g %g", (double)one[0], (double)one[1], (double)one[2]);
    slm_vec_swiglu(0, NULL, NULL); /* nothing to do, nothing touched */
    fprintf(stderr, "test_kernels_swiglu: %d ISA paths checked\n", n_isa);
    CHECK(n_isa >= 1);
    free(gate);
    free(up);
    free(got);
    return test_report("test_kernels_swiglu");
}
