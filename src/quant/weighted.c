/* Importance-weighted quantizers. Each block's scale is searched to minimise the weighted squared
 * error sum w_i (x_i - d q_i)^2, where w_i is the importance of column i scaled by the value's
 * magnitude; the searches (their candidate grids and tie rules) follow ggml's, so a file quantized
 * with the same importance matrix has the same bytes. */
#include "quant/weighted.h"

#include <math.h>
#include <string.h>

#include "tensor/quant.h"
#include "tensor/types.h"

#define QW_GROUP_MAX_EPS 1e-15f

static const int8_t iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Index of the level nearest to v (levels ascending; an exact midpoint goes up). */
static int nearest_level_index(const int8_t *levels, int n, float v) {
    if (v <= levels[0]) return 0;
    if (v >= levels[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < levels[mid]) hi = mid;
        else lo = mid;
    }
    return v - levels[hi - 1] < levels[hi] - v ? hi - 1 : hi;
}

/* One 32-value IQ4_NL block: the scale mapping the extreme value onto the outer level, refit by
 * weighted least squares, then 15 neighbouring scales tried and the best fit kept. */
static void iq4_nl_block(const float *x, block_iq4_nl *y, const float *qw) {
    float weight[SLM_QK];
    uint8_t L[SLM_QK];
    float sigma2 = 0;
    for (int j = 0; j < SLM_QK; j++) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / SLM_QK;
    for (int j = 0; j < SLM_QK; j++) weight[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : x[j] * x[j];
    float amax = 0, max = 0;
    for (int j = 0; j < SLM_QK; j++) {
        const float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float d = 0;
    if (amax >= QW_GROUP_MAX_EPS) {
        const int ntry = 7;
        float id = 1 / (-max / iq4nl_levels[0]);
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < SLM_QK; j++) {
            const int l = nearest_level_index(iq4nl_levels, 16, id * x[j]);
            const float q = iq4nl_levels[l], w = weight[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + iq4nl_levels[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < SLM_QK; j++) {
                const int l = nearest_level_index(iq4nl_levels, 16, id * x[j]);
                const float q = iq4nl_levels[l], w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
    }
    y->d = slm_fp32_to_fp16(d);
    /* the levels are chosen again with the final (unrounded) scale */
    const float id = d ? 1 / d : 0;
    for (int j = 0; j < SLM_QK; j++) L[j] = (uint8_t)nearest_level_index(iq4nl_levels, 16, id * x[j]);
    for (int j = 0; j < SLM_QK / 2; j++) y->qs[j] = (uint8_t)(L[j] | L[j + SLM_QK / 2] << 4);
}

void quant_row_iq4_nl(const float *x, void *dst, int64_t n, const float *importance) {
    block_iq4_nl *y = dst;
    for (int64_t b = 0; b < n / SLM_QK; b++)
        iq4_nl_block(x + b * SLM_QK, &y[b], importance ? importance + b * SLM_QK : NULL);
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Round half to even through the 1.5 * 2^23 trick (ggml's nearest_int), clamped for safety. */
static inline int nearest(float v) { return slm_nearest_int(v); }

/* Symmetric quants in [-nmax, nmax-1] (stored + nmax) with weights w: the scale mapping the extreme
 * value onto -nmax, then 18 neighbouring scales, keeping the best weighted least-squares fit. */
static float fit_symmetric_weighted(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QW_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float wx = w[i] * x[i], wl = w[i] * (float)l;
        sumlx += wx * (float)l;
        suml2 += wl * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float t = 0.1f * (float)is;
        iscale = -((float)nmax + t) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
            const float wx = w[i] * x[i], wl = w[i] * (float)l;
            sumlx += wx * (float)l;
            suml2 += wl * (float)l;
        }
        const float a = sumlx * sumlx, b = best * suml2;
        if (suml2 > 0 && a > b) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + clampi(nearest(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Asymmetric quants in [0, nmax] with a min <= 0 and weights w: nstep+1 candidate scales, each
 * refit by weighted least squares (scale and min); the running best's min shifts the later
 * candidates, as in ggml. *neg_min gets -min. */
static float fit_affine_weighted(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                                 float rdelta, int nstep) {
    uint8_t Laux[32];
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        const float wx = w[i] * x[i];
        sum_x += wx;
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - min)), 0, nmax);
        const float sl = scale * (float)L[i];
        const float d = (sl + min) - x[i];
        const float wd = w[i] * (d * d);
        best_err += wd;
    }
    for (int is = 0; is <= nstep; is++) {
        const float r = rmin + rdelta * (float)is;
        iscale = (r + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(nearest(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            const float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float sl = this_scale * (float)Laux[i];
                const float d = (sl + this_min) - x[i];
                const float wd = w[i] * (d * d);
                err += wd;
            }
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* The block weights: importance x sqrt(row variance + value^2). */
static void block_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < SLM_QK; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

static void pack_high_bits(const uint8_t *L, uint8_t qs[SLM_QK / 2], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        const uint8_t a = L[j], b = L[j + 16];
        qs[j] = (uint8_t)((a & 0x0f) | (b & 0x0f) << 4);
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

/* Q6_K with importance: each 16-value group's scale searched with the importance values themselves as
 * weights (ggml uses them unscaled here), then the usual 8-bit group scales under one fp16 scale. */
static void q6_K_weighted(const float *x, block_q6_K *y, int64_t nb, const float *qw) {
    int8_t L[SLM_QK_K];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_symmetric_weighted(16, 32, x + 16 * ib, qw + SLM_QK_K * i + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < QW_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.0f / max_scale;
        y[i].d = slm_fp32_to_fp16(1.0f / iscale);
        for (int ib = 0; ib < 16; ib++) y[i].scales[ib] = (int8_t)clampi(nearest(iscale * scales[ib]), -128, 127);
        for (int j = 0; j < 16; j++) {
            const float d = slm_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(clampi(nearest(x[16 * j + l] / d), -32, 31) + 32);
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < SLM_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | (q3 & 0x0f) << 4);
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | (q4 & 0x0f) << 4);
                qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }
}

/* Quantizes n non-negative values (a block's 8 scales or mins) to [0, nmax] under one float scale:
 * the scale nmax/max and 8 neighbours by weighted error, then single quants moved while the
 * least-squares fit improves (ggml's make_qp_quants). */
static float fit_positive(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < QW_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nearest(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float sl = scale * (float)L[i];
        const float diff = x[i] - sl;
        const float wd = w[i] * diff;
        best_mse += wd * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float t = 0.1f * (float)is;
        const float iscale_is = (t + (float)nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest(iscale_is * x[i]);
            l = l < nmax ? l : nmax;
            const float sl = scale_is * (float)l;
            const float diff = x[i] - sl;
            const float wd = w[i] * diff;
            mse += wd * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        const float wx = w[i] * x[i], wl = w[i] * (float)l;
        sumlx += wx * (float)l;
        suml2 += wl * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float wx = w[i] * x[i], wL = w[i] * (float)L[i];
            float slx = sumlx - wx * (float)L[i];
            float sl2 = suml2 - wL * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                const float xs = x[i] * sl2;
                int new_l = nearest(xs / slx);
                new_l = new_l < nmax ? new_l : nmax;
                if (new_l != L[i]) {
                    const float wn = w[i] * (float)new_l;
                    slx += wx * (float)new_l;
                    sl2 += wn * (float)new_l;
                    const float a = slx * slx, b = sumlx * sumlx;
                    if (a * suml2 > b * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Q4_K / Q5_K with importance: per 32-value group an affine fit weighted by importance x
 * sqrt(block variance + value^2), then the 8 scales and 8 mins quantized to 6 bits by fit_positive
 * (weighted by each group's total weight) instead of a plain max-scaling. */
static void k_weighted(const float *x, int nmax, uint8_t sc_out[12], slm_half *d_out, slm_half *dmin_out, uint8_t L[SLM_QK_K],
                       const float *qw) {
    float weights[32], sw[8], mins[8], scales[8];
    uint8_t Ls[8], Lm[8];
    float sum_x2 = 0;
    for (int l = 0; l < SLM_QK_K; l++) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / SLM_QK_K;
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++) weights[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; l++) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = fit_affine_weighted(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36);
    }
    const float d_block = fit_positive(8, 63, scales, Ls, sw);
    const float m_block = fit_positive(8, 63, mins, Lm, sw);
    slm_kquant_pack_scales(x, Ls, Lm, d_block, m_block, nmax, sc_out, d_out, dmin_out, L);
}

static void q4_K_weighted(const float *x, block_q4_K *y, int64_t nb, const float *qw) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k_weighted(x, 15, y[i].scales, &y[i].d, &y[i].dmin, L, qw + SLM_QK_K * i);
        slm_pack_q4_K_codes(&y[i], L);
    }
}

static void q5_K_weighted(const float *x, block_q5_K *y, int64_t nb, const float *qw) {
    uint8_t L[SLM_QK_K];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        k_weighted(x, 31, y[i].scales, &y[i].d, &y[i].dmin, L, qw + SLM_QK_K * i);
        slm_pack_q5_K_codes(&y[i], L);
    }
}

/* Q2_K with importance: per 16-value group an affine fit over 2-bit codes weighted by importance x
 * sqrt(block variance + value^2) (the variance without Q4_K's factor 2, as ggml has it), then the 16
 * scales and 16 mins quantized to 4 bits each by fit_positive, and the codes chosen again against
 * the stored (fp16-rounded) super-block scales. */
static void q2_K_weighted(const float *x, block_q2_K *y, int64_t nb, const float *qw) {
    uint8_t L[SLM_QK_K], Ls[16], Lm[16];
    float weights[16], sw[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float sum_x2 = 0;
        for (int l = 0; l < SLM_QK_K; l++) sum_x2 += x[l] * x[l];
        const float sigma2 = sum_x2 / SLM_QK_K;
        for (int j = 0; j < 16; j++) {
            const float *w_imp = qw + SLM_QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++) weights[l] = w_imp[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = fit_affine_weighted(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.9f, 0.05f, 36);
        }
        y[i].d = slm_fp32_to_fp16(fit_positive(16, 15, scales, Ls, sw));
        y[i].dmin = slm_fp32_to_fp16(fit_positive(16, 15, mins, Lm, sw));
        const float d_block = slm_fp16_to_fp32(y[i].d), m_block = slm_fp16_to_fp32(y[i].dmin);
        for (int j = 0; j < 16; j++) y[i].scales[j] = (uint8_t)(Ls[j] | Lm[j] << 4);
        for (int j = 0; j < 16; j++) {
            const float d = d_block * (float)(y[i].scales[j] & 0x0f);
            if (d == 0.0f) continue;
            const float m = m_block * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)clampi(nearest((x[16 * j + l] + m) / d), 0, 3);
        }
        for (int j = 0; j < SLM_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

/* Q3_K with importance: per 16-value group a symmetric fit over [-4, 3] weighted by importance x
 * sqrt(2 x block variance + value^2), then the 16 group scales fitted the same way to 6 bits
 * ([-32, 31]) under one fp16 scale, weighted by each group's total weight; the codes are chosen
 * again with the stored scales. The third bit of each code goes to hmask. */
static void q3_K_weighted(const float *x, block_q3_K *y, int64_t nb, const float *qw) {
    int8_t L[SLM_QK_K], Ls[16];
    float weights[16], sw[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += SLM_QK_K) {
        float sum_x2 = 0;
        for (int l = 0; l < SLM_QK_K; l++) sum_x2 += x[l] * x[l];
        const float sigma2 = 2 * sum_x2 / SLM_QK_K;
        for (int j = 0; j < 16; j++) {
            const float *w_imp = qw + SLM_QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++) weights[l] = w_imp[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; l++) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = fit_symmetric_weighted(16, 4, x + 16 * j, weights, L + 16 * j);
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        const float d_block = fit_symmetric_weighted(16, 32, scales, sw, Ls);
        for (int j = 0; j < 16; j++) {
            const int l = Ls[j];
            if (j < 8) y[i].scales[j] = (uint8_t)(l & 0x0f);
            else y[i].scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
            y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        y[i].d = slm_fp32_to_fp16(d_block);
        for (int j = 0; j < 16; j++) {
            const int low = j < 8 ? y[i].scales[j] & 0x0f : y[i].scales[j - 8] >> 4;
            const int sc = (low | ((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
            const float d = slm_fp16_to_fp32(y[i].d) * (float)sc;
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(clampi(nearest(x[16 * j + l] / d), -4, 3) + 4);
        }
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        /* bit b of hmask[m] is the high bit of code 32 b + m */
        for (int j = 0; j < SLM_QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] -= 4;
            }
        }
        for (int j = 0; j < SLM_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
    }
}

int quant_row_weighted(uint32_t type, const float *x, void *dst, int64_t n, const float *importance) {
    if (type == SLM_TYPE_Q2_K) {
        q2_K_weighted(x, dst, n / SLM_QK_K, importance);
        return 0;
    }
    if (type == SLM_TYPE_Q3_K) {
        q3_K_weighted(x, dst, n / SLM_QK_K, importance);
        return 0;
    }
    if (type == SLM_TYPE_Q4_K) {
        q4_K_weighted(x, dst, n / SLM_QK_K, importance);
        return 0;
    }
    if (type == SLM_TYPE_Q5_K) {
        q5_K_weighted(x, dst, n / SLM_QK_K, importance);
        return 0;
    }
    if (type == SLM_TYPE_Q6_K) {
        q6_K_weighted(x, dst, n / SLM_QK_K, importance);
        return 0;
    }
    if (type != SLM_TYPE_Q4_0 && type != SLM_TYPE_Q4_1 && type != SLM_TYPE_Q5_0 && type != SLM_TYPE_Q5_1) return -1;
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; j++) sum_x2 += x[j] * x[j];
    const float sigma2 = sum_x2 / (float)n;
    float w[SLM_QK];
    for (int64_t ib = 0; ib < n / SLM_QK; ib++) {
        const float *xb = x + ib * SLM_QK;
        block_weights(xb, importance + ib * SLM_QK, sigma2, w);
        if (type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q5_0) {
            int8_t L[SLM_QK];
            const float d = fit_symmetric_weighted(SLM_QK, type == SLM_TYPE_Q4_0 ? 8 : 16, xb, w, L);
            if (type == SLM_TYPE_Q4_0) {
                block_q4_0 *y = (block_q4_0 *)dst + ib;
                y->d = slm_fp32_to_fp16(d);
                for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
            } else {
                block_q5_0 *y = (block_q5_0 *)dst + ib;
                y->d = slm_fp32_to_fp16(d);
                pack_high_bits((const uint8_t *)L, y->qs, y->qh);
            }
        } else {
            uint8_t L[SLM_QK];
            float neg_min;
            const float d = fit_affine_weighted(SLM_QK, type == SLM_TYPE_Q4_1 ? 15 : 31, xb, w, L, &neg_min, -0.9f, 0.05f, 36);
            if (type == SLM_TYPE_Q4_1) {
                block_q4_1 *y = (block_q4_1 *)dst + ib;
                y->d = slm_fp32_to_fp16(d);
                y->m = slm_fp32_to_fp16(-neg_min);
                for (int j = 0; j < 16; j++) y->qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
            } else {
                block_q5_1 *y = (block_q5_1 *)dst + ib;
                y->d = slm_fp32_to_fp16(d);
                y->m = slm_fp32_to_fp16(-neg_min);
                pack_high_bits(L, y->qs, y->qh);
            }
        }
    }
    return 0;
}
