/* KL divergence of a quantized model from its base, with the statistics llama-perplexity prints
 * (means with their standard errors, percentiles, top-token agreement). The base distribution is
 * computed exactly in the same run (llama-perplexity reads it back from a file at 16 bits and drops
 * base probabilities below e^-16; slm does neither, so the figures agree to those roundings). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm_quant.h"

struct slm_kld_stats {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    size_t n_same_top, count;
    float *kld_values, *p_diff_values;
    size_t cap;
};

slm_kld_stats *slm_kld_new(void) { return calloc(1, sizeof(slm_kld_stats)); }

void slm_kld_free(slm_kld_stats *s) {
    if (!s) return;
    free(s->kld_values);
    free(s->p_diff_values);
    free(s);
}

/* log(sum(exp(x))) and the index of the first largest value. */
static double log_sum_exp(const float *x, int n, int *imax) {
    float max = x[0];
    int im = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > max) {
            max = x[i];
            im = i;
        }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - max);
    *imax = im;
    return max + log(sum);
}

int slm_kld_add(slm_kld_stats *s, const float *logits, const float *base_logits, int n_vocab, int token) {
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        float *k = realloc(s->kld_values, cap * sizeof *k);
        if (!k) return -1;
        s->kld_values = k;
        float *p = realloc(s->p_diff_values, cap * sizeof *p);
        if (!p) return -1;
        s->p_diff_values = p;
        s->cap = cap;
    }
    int imax, imax_base;
    const double lse = log_sum_exp(logits, n_vocab, &imax);
    const double lse_base = log_sum_exp(base_logits, n_vocab, &imax_base);
    const double nll = lse - logits[token], nll_base = lse_base - base_logits[token];
    s->sum_nll += nll;
    s->sum_nll2 += nll * nll;
    s->sum_nll_base += nll_base;
    s->sum_nll_base2 += nll_base * nll_base;
    s->sum_nll_nll_base += nll * nll_base;
    double kld = 0;
    for (int i = 0; i < n_vocab; i++) {
        const double log_p_base = base_logits[i] - lse_base, log_p = logits[i] - lse;
        kld += exp(log_p_base) * (log_p_base - log_p);
    }
    s->sum_kld += kld;
    s->sum_kld2 += kld * kld;
    s->n_same_top += imax == imax_base;
    const double p_diff = exp(-nll) - exp(-nll_base);
    s->sum_p_diff += p_diff;
    s->sum_p_diff2 += p_diff * p_diff;
    s->sum_p_diff4 += p_diff * p_diff * p_diff * p_diff;
    s->kld_values[s->count] = (float)kld;
    s->p_diff_values[s->count] = (float)p_diff;
    s->count++;
    return 0;
}

/* Mean and its standard error (0 for fewer than 11 values, as llama-perplexity). */
static void mean_unc(double sum, double sum2, size_t n, double *mean, double *unc) {
    *mean = *unc = 0;
    if (n < 1) return;
    *mean = sum / (double)n;
    double var = sum2 / (double)n - *mean * *mean;
    *unc = var > 0 && n > 10 ? sqrt(var / (double)(n - 1)) : 0;
}

static double covariance(const slm_kld_stats *s) {
    if (s->count < 10) return 0;
    const double n = (double)s->count;
    return (s->sum_nll_nll_base / n - (s->sum_nll / n) * (s->sum_nll_base / n)) / (n - 1);
}

void slm_kld_summary(const slm_kld_stats *s, double *mean_kld, double *kld_unc, double *same_top, double *same_top_unc) {
    mean_unc(s->sum_kld, s->sum_kld2, s->count, mean_kld, kld_unc);
    *same_top = s->count ? (double)s->n_same_top / (double)s->count : 0;
    *same_top_unc = s->count > 1 ? sqrt(*same_top * (1 - *same_top) / (double)(s->count - 1)) : 0;
}

void slm_kld_print_chunk(const slm_kld_stats *s, int chunk, FILE *fp) {
    double lp, lp_unc, lb, lb_unc, kl, kl_unc, mse, mse_unc, top, top_unc;
    mean_unc(s->sum_nll, s->sum_nll2, s->count, &lp, &lp_unc);
    mean_unc(s->sum_nll_base, s->sum_nll_base2, s->count, &lb, &lb_unc);
    mean_unc(s->sum_p_diff2, s->sum_p_diff4, s->count, &mse, &mse_unc);
    slm_kld_summary(s, &kl, &kl_unc, &top, &top_unc);
    const double ratio_unc = sqrt(fmax(0, lp_unc * lp_unc + lb_unc * lb_unc - 2 * covariance(s)));
    const double rms = sqrt(mse);
    fprintf(fp, "%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n", chunk,
            exp(lp), exp(lp) * lp_unc, lp - lb, ratio_unc, kl, kl_unc, 100 * rms, rms > 0 ? 100 * 0.5 / rms * mse_unc : 0,
            100 * top, 100 * top_unc);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Linear interpolation between the order statistics, as llama-perplexity. */
static double percentile(const float *v, size_t n, double fraction) {
    if (fraction <= 0) return v[0];
    if (fraction >= 1) return v[n - 1];
    double p = fraction * (double)(n - 1);
    size_t ip = (size_t)p;
    p -= (double)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static double median(const float *v, size_t n) { return n % 2 == 0 ? 0.5 * (v[n / 2] + v[n / 2 - 1]) : v[n / 2]; }

void slm_kld_print_summary(const slm_kld_stats *s, FILE *fp) {
    const size_t n = s->count;
    if (n < 2) {
        fprintf(fp, "too few scored tokens (%zu) for statistics\n", n);
        return;
    }
    float *k = malloc(n * sizeof *k), *d = malloc(n * sizeof *d);
    if (!k || !d) {
        free(k);
        free(d);
        return;
    }
    memcpy(k, s->kld_values, n * sizeof *k);
    memcpy(d, s->p_diff_values, n * sizeof *d);
    qsort(k, n, sizeof *k, cmp_float);
    qsort(d, n, sizeof *d, cmp_float);
    double lp, lp_unc, lb, lb_unc, kl, kl_unc, pd, pd_unc, mse, mse_unc, top, top_unc;
    mean_unc(s->sum_nll, s->sum_nll2, n, &lp, &lp_unc);
    mean_unc(s->sum_nll_base, s->sum_nll_base2, n, &lb, &lb_unc);
    mean_unc(s->sum_p_diff, s->sum_p_diff2, n, &pd, &pd_unc);
    mean_unc(s->sum_p_diff2, s->sum_p_diff4, n, &mse, &mse_unc);
    slm_kld_summary(s, &kl, &kl_unc, &top, &top_unc);
    const double cov = covariance(s), ppl = exp(lp), ppl_base = exp(lb);
    const double ppl_unc = ppl * lp_unc, ppl_base_unc = ppl_base * lb_unc;
    const double ratio_unc = sqrt(fmax(0, lp_unc * lp_unc + lb_unc * lb_unc - 2 * cov));
    fprintf(fp, "====== Perplexity statistics ======\n");
    fprintf(fp, "Mean PPL(Q)                   : %10.6f ± %10.6f\n", ppl, ppl_unc);
    fprintf(fp, "Mean PPL(base)                : %10.6f ± %10.6f\n", ppl_base, ppl_base_unc);
    fprintf(fp, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", lp_unc > 0 && lb_unc > 0 ? 100 * cov / (lp_unc * lb_unc) : 0.0);
    fprintf(fp, "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", lp - lb, ratio_unc);
    fprintf(fp, "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", exp(lp - lb), exp(lp - lb) * ratio_unc);
    fprintf(fp, "Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", ppl - ppl_base,
            sqrt(fmax(0, ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2 * ppl * ppl_base * cov)));
    fprintf(fp, "\n====== KL divergence statistics ======\n");
    fprintf(fp, "Mean    KLD: %10.6f ± %10.6f\n", kl, kl_unc);
    fprintf(fp, "Maximum KLD: %10.6f\n", k[n - 1]);
    static const double kld_pct[] = {0.999, 0.99, 0.95, 0.90};
    static const char *const kld_lab[] = {"99.9%", "99.0%", "95.0%", "90.0%"};
    for (int i = 0; i < 4; i++) fprintf(fp, "%-6s  KLD: %10.6f\n", kld_lab[i], percentile(k, n, kld_pct[i]));
    fprintf(fp, "Median  KLD: %10.6f\n", median(k, n));
    static const double low_pct[] = {0.10, 0.05, 0.01, 0.001};
    static const char *const low_lab[] = {"10.0%", " 5.0%", " 1.0%", " 0.1%"};
    for (int i = 0; i < 4; i++) fprintf(fp, "%-6s  KLD: %10.6f\n", low_lab[i], percentile(k, n, low_pct[i]));
    fprintf(fp, "Minimum KLD: %10.6f\n", k[0]);
    fprintf(fp, "\n====== Token probability statistics ======\n");
    fprintf(fp, "Mean    Δp: %6.3f ± %5.3f %%\n", 100 * pd, 100 * pd_unc);
    fprintf(fp, "Maximum Δp: %6.3f%%\n", 100 * d[n - 1]);
    static const double dp_pct[] = {0.999, 0.99, 0.95, 0.90, 0.75};
    static const char *const dp_lab[] = {"99.9%", "99.0%", "95.0%", "90.0%", "75.0%"};
    for (int i = 0; i < 5; i++) fprintf(fp, "%-6s  Δp: %6.3f%%\n", dp_lab[i], 100 * percentile(d, n, dp_pct[i]));
    fprintf(fp, "Median  Δp: %6.3f%%\n", 100 * median(d, n));
    static const double dl_pct[] = {0.25, 0.10, 0.05, 0.01, 0.001};
    static const char *const dl_lab[] = {"25.0%", "10.0%", " 5.0%", " 1.0%", " 0.1%"};
    for (int i = 0; i < 5; i++) fprintf(fp, "%-6s  Δp: %6.3f%%\n", dl_lab[i], 100 * percentile(d, n, dl_pct[i]));
    fprintf(fp, "Minimum Δp: %6.3f%%\n", 100 * d[0]);
    const double rms = sqrt(mse);
    fprintf(fp, "RMS Δp    : %6.3f ± %5.3f %%\n", 100 * rms, rms > 0 ? 100 * 0.5 / rms * mse_unc : 0.0);
    fprintf(fp, "Same top p: %6.3f ± %5.3f %%\n", 100 * top, 100 * top_unc);
    free(k);
    free(d);
}
