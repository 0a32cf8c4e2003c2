/* slm_vec_gelu (kernels.h): ggml's f16 GELU table, and every ISA path giving the scalar path's
 * bits for every half-float input, the edges at +-10, infinities, NaN and -0, with the bias add and
 * the GeGLU product, lengths off the vector widths, and nothing written past n. */
#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels_impl.h"
#include "test.h"

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(rng_u32() & 0xffffff) / (float)0x1000000;
}

static bool same_value(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static void check_table(void) {
    const uint16_t *table = slm_gelu_table();
    CHECK(table == slm_gelu_table()); /* built once */
    /* tanh-GELU at a few points, to the table's f16 precision */
    static const struct {
        float x, gelu;
    } points[] = {{0.0f, 0.0f}, {1.0f, 0.841192f}, {-1.0f, -0.158808f}, {2.0f, 1.954598f}, {-3.0f, -0.003637f}};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        float got = slm_gelu_lookup(points[i].x, table);
        CHECKF(fabsf(got - points[i].gelu) <= 1e-3f * fabsf(points[i].gelu) + 1e-5f, "gelu(%g) = %g, want %g",
               (double)points[i].x, (double)got, (double)points[i].gelu);
    }
    CHECK(slm_gelu_lookup(-10.0f, table) == 0.0f && slm_gelu_lookup(-50.0f, table) == 0.0f);
    CHECK(slm_gelu_lookup(10.0f, table) == 10.0f && slm_gelu_lookup(123.5f, table) == 123.5f);
}

int main(void) {
    check_table();
    const uint16_t *table = slm_gelu_table();
    const int64_t n_halves = 1 << 16, n_extra = 4099; /* not a multiple of 8 or 16 */
    const int64_t n = n_halves + n_extra;
    float *in = malloc(sizeof(float) * (size_t)n), *bias = malloc(sizeof(float) * (size_t)n);
    float *mul = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)(n + 16));
    for (int64_t i = 0; i < n_halves; i++) in[i] = slm_fp16_to_fp32((uint16_t)i);
    static const float edges[] = {-10.0f, 10.0f, -9.999999f, 9.999999f, -10.000001f, 10.000001f, 9.9951f, -9.9951f,
                                  0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65520.0f, -65520.0f, 1e-8f, -1e-8f};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    for (int64_t i = 0; i < n_extra; i++)
        in[n_halves + i] = i < n_edges ? edges[i] : rng_uniform(-12.0f, 12.0f);
    for (int64_t i = 0; i < n; i++) {
        bias[i] = rng_uniform(-0.5f, 0.5f);
        mul[i] = rng_uniform(-2.0f, 2.0f);
    }
    /* lengths: everything, and short ones ending inside a vector */
    static const int64_t lens[] = {-1, 1, 7, 8, 9, 15, 17, 31, 33};
    int n_isa = 0;
    for (int isa = SLM_ISA_SCALAR; isa < SLM_ISA_COUNT; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        const char *name = slm_isa_level_name((slm_isa)isa);
        CHECKF(t->gelu != NULL, "%s has no gelu", name);
        if (!t->gelu) continue;
        n_isa++;
        for (int variant = 0; variant < 4; variant++) {
            const float *b = variant & 1 ? bias : NULL, *m = variant & 2 ? mul : NULL;
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t len = lens[li] < 0 ? n : lens[li];
                const int64_t off = lens[li] < 0 ? 0 : 65530 - 5 * (int64_t)li; /* near the table's end too */
                memcpy(want, in + off, sizeof(float) * (size_t)len);
                slm_gelu_scalar(len, want, b ? b + off : NULL, m ? m + off : NULL, table);
                memcpy(got, in + off, sizeof(float) * (size_t)len);
                for (int i = 0; i < 16; i++) got[len + i] = -777.0f;
                t->gelu(len, got, b ? b + off : NULL, m ? m + off : NULL, table);
                int bad = 0, past = 0;
                int64_t first = -1;
                for (int64_t i = 0; i < len; i++)
                    if (!same_value(got[i], want[i])) {
                        if (first < 0) first = i;
                        bad++;
                    }
                for (int i = 0; i < 16; i++) past += got[len + i] != -777.0f;
                CHECKF(bad == 0 && past == 0,
                       "%s gelu n=%lld bias=%d mul=%d: %d values differ from the scalar path (first: in %g -> %g, "
                       "want %g), %d written past n",
                       name, (long long)len, b != NULL, m != NULL, bad, first < 0 ? 0.0 : (double)in[off + first],
                       first < 0 ? 0.0 : (double)got[first], first < 0 ? 0.0 : (double)want[first], past);
            }
        }
    }
    /* the public entry point runs the selected path */
    memcpy(got, in, sizeof(float) * (size_t)n);
    memcpy(want, in, sizeof(float) * (size_t)n);
    slm_vec_gelu(n, got, bias, mul);
    slm_gelu_scalar(n, want, bias, mul, table);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !same_value(got[i], want[i]);
    CHECKF(bad == 0, "slm_vec_gelu (%s): %d values differ from the scalar path", slm_kernels_isa(), bad);
    slm_vec_gelu(0, got, NULL, NULL); /* nothing to do, nothing touched */
    fprintf(stderr, "test_kernels_gelu: %d ISA paths checked\n", n_isa);
    free(in);
    free(bias);
    free(mul);
    free(want);
    free(got);
    return test_report("test_kernels_gelu");
}
