/* Vectors: IEEE half floats (half the bytes of f32; the recall cost is measured in the bench),
 * dot products against an f32 query on the widest path the kernels chose (slm_isa_name, so
 * SLM_ISA=scalar|avx2 forces a lower one), and a heap for the top k. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "slm_rag.h"
#include "vec_impl.h"

uint16_t slm_rag_f32_to_f16(float f) {
    union {
        float f;
        uint32_t u;
    } v = {f};
    uint32_t x = v.u, sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t mant = x & 0x7FFFFF;
    if (((x >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00 | (mant ? 0x200 : 0)); /* inf, nan */
    if (exp >= 31) return (uint16_t)(sign | 0x7C00);                                          /* overflow → inf */
    if (exp <= 0) {                                                                            /* subnormal or zero */
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* round to nearest even; may carry into the exponent */
    return (uint16_t)h;
}

float slm_rag_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, x;
    if (exp == 0) {
        if (!mant) x = sign;
        else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) mant <<= 1, exp--;
            x = sign | (exp << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7F800000 | (mant << 13);
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    union {
        uint32_t u;
        float f;
    } v = {x};
    return v.f;
}

void slm_rag_dot_f16_scalar(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores) {
    for (size_t i = 0; i < n; i++) {
        const uint16_t *v = vecs + i * (size_t)dim;
        float s = 0;
        for (int k = 0; k < dim; k++) s += query[k] * slm_rag_f16_to_f32(v[k]);
        scores[i] = s;
    }
}

void slm_rag_dot_f16(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores) {
    const char *isa = slm_isa_name();
#if defined(__x86_64__)
    if ((strcmp(isa, "avx512") == 0 || strcmp(isa, "amx") == 0) && __builtin_cpu_supports("avx512f")) {
        rag_dot_f16_avx512(query, vecs, n, dim, scores);
        return;
    }
    if (strcmp(isa, "scalar") != 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        rag_dot_f16_avx2(query, vecs, n, dim, scores);
        return;
    }
#else
    (void)isa;
#endif
    slm_rag_dot_f16_scalar(query, vecs, n, dim, scores);
}

/* min-heap on (score, then higher index = worse) of the k best so far */
static bool worse(const float *s, int a, int b) { return s[a] < s[b] || (s[a] == s[b] && a > b); }

static void sift_down(int *h, int n, int i, const float *s) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(s, h[l], h[m])) m = l;
        if (r < n && worse(s, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int slm_rag_top_k(const float *scores, size_t n, int k, int *out) {
    if (k <= 0 || n == 0) return 0;
    if ((size_t)k > n) k = (int)n;
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) continue;
        if (m < k) {
            out[m++] = (int)i;
            if (m == k)
                for (int j = k / 2 - 1; j >= 0; j--) sift_down(out, m, j, scores);
        } else if (worse(scores, out[0], (int)i)) {
            out[0] = (int)i;
            sift_down(out, m, 0, scores);
        }
    }
    if (m < k)
        for (int j = m / 2 - 1; j >= 0; j--) sift_down(out, m, j, scores);
    /* pop the heap: the worst goes last */
    for (int end = m - 1; end > 0; end--) {
        int t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(out, end, 0, scores);
    }
    return m;
}
