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

int quant_row_weighted(uint32_t type, const float *x, void *dst, int64_t n, const float *importance) {
    (void)type; (void)x; (void)dst; (void)n; (void)importance;
    return -1;
}
