/* AVX2 versions of the k-quant scale searches. The searches try up to 21 candidate scales per
 * group; here eight candidates run side by side, one per vector lane, each lane adding its terms in
 * the same order and with the same roundings as the scalar search (no fused multiply-adds), so the
 * chosen quants and scales are bit-identical to tensor/quant.c's (and ggml's). */
/* clang would fuse a*b+c into an FMA inside one expression (gcc in ISO C mode does not): that
 * would change the roundings */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "quant/kquants.h"
#include "tensor/quant.h"

#define MAX_CANDIDATES 24
#define MAX_GROUP 32

/* Round to nearest, ties to even, then clamp to [lo, hi] (exactly what the scalar nearest_int and
 * clamp give for the finite values the searches see). */
static inline __m256 round_clamp(__m256 v, float lo, float hi) {
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}

static inline int nearest(float v) { return slm_nearest_int(v); }

float kq_fit_affine_avx2(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *neg_min, float rmin,
                         float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        const float wx = w * x[i];
        sum_x += wx;
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    float xm[MAX_GROUP];
    for (int i = 0; i < n; i++) {
        xm[i] = x[i] - min;
        const int l0 = nearest(iscale * xm[i]);
        L[i] = (uint8_t)(l0 < 0 ? 0 : l0 > nmax ? nmax : l0);
        const float sl = scale * (float)L[i];
        const float slm = sl + min;
        float diff = slm - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        const float wd = weights[i] * diff;
        best_error += wd;
    }
    /* The candidates are evaluated eight at a time with the current min; the reference moves on
     * with the min of the best fit so far, so whenever that changes the candidates after it are
     * evaluated again with the new min (it changes a few times per group at most). */
    const int n_cand = nstep + 1, n_groups = (n_cand + 7) / 8;
    float lq[MAX_CANDIDATES / 8][MAX_GROUP][8] __attribute__((aligned(32))); /* quant of element i, candidate 8g+k */
    float cand_iscale[MAX_CANDIDATES], d_l[MAX_CANDIDATES], d_l2[MAX_CANDIDATES], d_xl[MAX_CANDIDATES];
    float c_scale[MAX_CANDIDATES] = {0}, c_min[MAX_CANDIDATES] = {0}, c_err[MAX_CANDIDATES];
    bool c_ok[MAX_CANDIDATES];
    int best = -1;
    uint8_t best_L[MAX_GROUP];
    const float fmax_q = (float)nmax;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    for (int first = 0; first < n_cand;) {
        const int g0 = first / 8;
        for (int c = 8 * g0; c < MAX_CANDIDATES; c++) {
            const float r = rmin + rdelta * (float)c;
            cand_iscale[c] = (r + (float)nmax) / (max - min);
        }
        for (int i = 0; i < n; i++) xm[i] = x[i] - min;
        for (int g = g0; g < n_groups; g++) {
            const __m256 is_v = _mm256_loadu_ps(cand_iscale + 8 * g);
            __m256 sl = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps(), sxl = _mm256_setzero_ps();
            for (int i = 0; i < n; i++) {
                const __m256 l = round_clamp(_mm256_mul_ps(is_v, _mm256_set1_ps(xm[i])), 0.0f, fmax_q);
                _mm256_store_ps(lq[g][i], l);
                const __m256 wl = _mm256_mul_ps(_mm256_set1_ps(weights[i]), l);
                sl = _mm256_add_ps(sl, wl);
                sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, l));
                sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
            }
            _mm256_storeu_ps(d_l + 8 * g, sl);
            _mm256_storeu_ps(d_l2 + 8 * g, sl2);
            _mm256_storeu_ps(d_xl + 8 * g, sxl);
        }
        for (int c = first; c < n_cand; c++) {
            c_ok[c] = false;
            c_scale[c] = c_min[c] = 0;
            const float D = sum_w * d_l2[c] - d_l[c] * d_l[c];
            if (!(D > 0.0f)) continue;
            float this_scale = (sum_w * d_xl[c] - sum_x * d_l[c]) / D;
            float this_min = (d_l2[c] * sum_x - d_l[c] * d_xl[c]) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = d_xl[c] / d_l2[c];
            }
            c_ok[c] = true;
            c_scale[c] = this_scale;
            c_min[c] = this_min;
        }
        for (int g = g0; g < n_groups; g++) {
            const __m256 s_v = _mm256_loadu_ps(c_scale + 8 * g), m_v = _mm256_loadu_ps(c_min + 8 * g);
            __m256 err = _mm256_setzero_ps();
            for (int i = 0; i < n; i++) {
                __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(s_v, _mm256_load_ps(lq[g][i])), m_v), _mm256_set1_ps(x[i]));
                diff = use_mad ? _mm256_andnot_ps(sign_mask, diff) : _mm256_mul_ps(diff, diff);
                err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_set1_ps(weights[i]), diff));
            }
            _mm256_storeu_ps(c_err + 8 * g, err);
        }
        int next = n_cand;
        for (int c = first; c < n_cand; c++) {
            if (c_ok[c] && c_err[c] < best_error) {
                best = c;
                best_error = c_err[c];
                scale = c_scale[c];
                for (int i = 0; i < n; i++) best_L[i] = (uint8_t)lq[c / 8][i][c % 8];
                const bool min_moved = c_min[c] != min;
                min = c_min[c];
                if (min_moved) {
                    next = c + 1;
                    break;
                }
            }
        }
        first = next;
    }
    if (best >= 0) memcpy(L, best_L, (size_t)n);
    *neg_min = -min;
    return scale;
}

float kq_fit_symmetric_avx2(int n, int nmax, const float *x, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (fabsf(max) < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float w[MAX_GROUP], wx[MAX_GROUP];
    for (int i = 0; i < n; i++) {
        w[i] = x[i] * x[i];
        wx[i] = w[i] * x[i];
    }
    /* first the scale mapping the extreme value onto -nmax */
    float iscale = (float)-nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        const float t1 = wx[i] * (float)l;
        sumlx += t1;
        const float t2 = w[i] * (float)l;
        const float t3 = t2 * (float)l;
        suml2 += t3;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    /* then 18 neighbours (is = -9..9 without 0) */
    float cand_iscale[MAX_CANDIDATES], c_lx[MAX_CANDIDATES], c_l2[MAX_CANDIDATES];
    float lq[MAX_GROUP][MAX_CANDIDATES];
    int n_cand = 0;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float t = 0.1f * (float)is;
        cand_iscale[n_cand++] = -((float)nmax + t) / max;
    }
    for (int c = n_cand; c < MAX_CANDIDATES; c++) cand_iscale[c] = cand_iscale[0];
    for (int g = 0; g < n_cand; g += 8) {
        const __m256 is_v = _mm256_loadu_ps(cand_iscale + g);
        __m256 slx = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
            const __m256 l = round_clamp(_mm256_mul_ps(is_v, _mm256_set1_ps(x[i])), (float)-nmax, (float)(nmax - 1));
            _mm256_storeu_ps(&lq[i][g], l);
            slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_set1_ps(wx[i]), l));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), l), l));
        }
        _mm256_storeu_ps(c_lx + g, slx);
        _mm256_storeu_ps(c_l2 + g, sl2);
    }
    for (int c = 0; c < n_cand; c++) {
        const float a = c_lx[c] * c_lx[c], b = best * c_l2[c];
        if (c_l2[c] > 0.0f && a > b) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + (int)lq[i][c]);
            scale = c_lx[c] / c_l2[c];
            best = scale * c_lx[c];
        }
    }
    return scale;
}

void kq_f16_to_f32_avx2(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

/* Q8_0: scale amax / 127, each value x * (1 / scale) rounded half away from zero (roundf), as the
 * reference does: the truncated value plus one step away from zero when the exact remainder is at
 * least one half. */
void kq_q8_0_avx2(const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 34) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 32; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + k)));
        float lanes[8];
        _mm256_storeu_ps(lanes, m);
        float amax = 0.0f;
        for (int k = 0; k < 8; k++) amax = lanes[k] > amax ? lanes[k] : amax;
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        memcpy(out, &dh, 2);
        const __m256 id_v = _mm256_set1_ps(id);
        for (int k = 0; k < 32; k += 8) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), id_v);
            const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(sign_mask, _mm256_sub_ps(v, t));
            const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_mask), one); /* +-1 with v's sign */
            __m256 r = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step));
            r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
            const __m256i q = _mm256_cvtps_epi32(r);
            int32_t qi[8];
            _mm256_storeu_si256((__m256i *)qi, q);
            for (int j = 0; j < 8; j++) out[2 + k + j] = (uint8_t)(int8_t)qi[j];
        }
    }
}

/* Q4_0: scale (signed extreme) / -8, each value x * (1 / scale) + 8.5 truncated into [0, 15], as the
 * reference does. */
void kq_q4_0_avx2(const float *x, void *dst, int64_t n) {
    uint8_t *out = dst;
    for (int64_t b = 0; b < n / 32; b++, x += 32, out += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t dh = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        memcpy(out, &dh, 2);
        const __m256 id_v = _mm256_set1_ps(id), off = _mm256_set1_ps(8.5f);
        int32_t q[32];
        for (int k = 0; k < 32; k += 8) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), id_v), off);
            v = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), _mm256_set1_ps(15.0f));
            _mm256_storeu_si256((__m256i *)(q + k), _mm256_cvtps_epi32(v));
        }
        for (int j = 0; j < 16; j++) out[2 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}
