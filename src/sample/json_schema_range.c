/* JSON Schema → GBNF: bounded integers and numbers (minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum) as digit grammars that produce exactly the canonical decimals in range. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/json_schema_impl.h"

/* Canonical decimals of the same length in [x, y] (digit strings, x <= y). */
static void same_len_range(slm_buf *b, const char *x, const char *y, size_t len) {
    if (len == 0) return;
    if (x[0] == y[0]) {
        slm_buf_printf(b, "\"%c\" ", x[0]);
        same_len_range(b, x + 1, y + 1, len - 1);
        return;
    }
    bool x_rest_zero = true, y_rest_nine = true;
    for (size_t i = 1; i < len; i++) {
        if (x[i] != '0') x_rest_zero = false;
        if (y[i] != '9') y_rest_nine = false;
    }
    char nines[24], zeros[24];
    memset(nines, '9', len);
    memset(zeros, '0', len);
    nines[len] = zeros[len] = 0;
    slm_buf_puts(b, "(");
    bool first = true;
    char start = x[0], end = y[0];
    if (!x_rest_zero) {
        slm_buf_printf(b, "\"%c\" ", x[0]);
        same_len_range(b, x + 1, nines, len - 1);
        first = false;
        start = (char)(x[0] + 1);
    }
    if (!y_rest_nine) end = (char)(y[0] - 1);
    if (start <= end) {
        if (!first) slm_buf_puts(b, " | ");
        slm_buf_printf(b, "[%c-%c]", start, end);
        if (len > 1) slm_buf_printf(b, " [0-9]{%zu}", len - 1);
        first = false;
    }
    if (!y_rest_nine) {
        if (!first) slm_buf_puts(b, " | ");
        slm_buf_printf(b, "\"%c\" ", y[0]);
        same_len_range(b, zeros, y + 1, len - 1);
    }
    slm_buf_puts(b, ")");
}

/* Canonical decimals (no sign, no leading zeros) in [a, b], 0 <= a <= b <= INT_LIMIT. */
static void nonneg_range(slm_buf *b, long long a, long long hi) {
    char sa[24], sh[24];
    snprintf(sa, sizeof sa, "%lld", a);
    snprintf(sh, sizeof sh, "%lld", hi);
    size_t la = strlen(sa), lh = strlen(sh);
    slm_buf_puts(b, "(");
    for (size_t len = la; len <= lh; len++) {
        char lo_s[24], hi_s[24];
        if (len == la) {
            strcpy(lo_s, sa);
        } else {
            memset(lo_s, '0', len);
            lo_s[0] = '1';
            lo_s[len] = 0;
        }
        if (len == lh) {
            strcpy(hi_s, sh);
        } else {
            memset(hi_s, '9', len);
            hi_s[len] = 0;
        }
        if (len > la) slm_buf_puts(b, " | ");
        slm_buf_puts(b, "(");
        same_len_range(b, lo_s, hi_s, len);
        slm_buf_puts(b, ")");
    }
    slm_buf_puts(b, ")");
}

/* Integers in [lo, hi]; appends alternatives to b, returns how many. */
static int int_range_alts(slm_buf *b, long long lo, long long hi, bool first) {
    int n = 0;
    if (lo > hi) return 0;
    if (hi >= 0) {
        if (!first || n) slm_buf_puts(b, " | ");
        nonneg_range(b, lo > 0 ? lo : 0, hi);
        n++;
    }
    if (lo < 0) {
        if (!first || n) slm_buf_puts(b, " | ");
        slm_buf_puts(b, "\"-\" ");
        nonneg_range(b, hi < 0 ? -hi : 1, -lo);
        n++;
    }
    return n;
}

static bool get_bound(conv *c, const json_t *s, const char *key, double *out) {
    const json_t *v = json_object_get(s, key);
    if (!v) return false;
    if (!json_is_number(v)) {
        js_fail(c, "json schema: '%s' must be a number", key);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

void js_gen_integer(conv *c, const json_t *s, slm_buf *b) {
    if (json_object_get(s, "multipleOf")) {
        js_gen_multiple(c, s, b, true);
        return;
    }
    double v;
    long long lo = -INT_LIMIT, hi = INT_LIMIT;
    if (get_bound(c, s, "minimum", &v) && ceil(v) > (double)lo) lo = v > (double)INT_LIMIT ? INT_LIMIT + 1 : (long long)ceil(v);
    if (get_bound(c, s, "exclusiveMinimum", &v) && floor(v) + 1 > (double)lo)
        lo = v > (double)INT_LIMIT ? INT_LIMIT + 1 : (long long)floor(v) + 1;
    if (get_bound(c, s, "maximum", &v) && floor(v) < (double)hi) hi = v < (double)-INT_LIMIT ? -INT_LIMIT - 1 : (long long)floor(v);
    if (get_bound(c, s, "exclusiveMaximum", &v) && ceil(v) - 1 < (double)hi)
        hi = v < (double)-INT_LIMIT ? -INT_LIMIT - 1 : (long long)ceil(v) - 1;
    if (c->failed) return;
    if (lo > hi) {
        js_fail(c, "json schema: integer range is empty");
        return;
    }
    if (lo == -INT_LIMIT && hi == INT_LIMIT) {
        slm_buf_puts(b, "json-integer");
        return;
    }
    slm_buf_puts(b, "(");
    int_range_alts(b, lo, hi, true);
    slm_buf_puts(b, ")");
}

void js_gen_number(conv *c, const json_t *s, slm_buf *b) {
    if (json_object_get(s, "multipleOf")) {
        js_gen_multiple(c, s, b, false);
        return;
    }
    double lo = -INFINITY, hi = INFINITY;
    bool lo_excl = false, hi_excl = false, bounded = false;
    double v;
    if (get_bound(c, s, "minimum", &v)) lo = v, bounded = true;
    if (get_bound(c, s, "exclusiveMinimum", &v) && v >= lo) lo = v, lo_excl = true, bounded = true;
    if (get_bound(c, s, "maximum", &v)) hi = v, bounded = true;
    if (get_bound(c, s, "exclusiveMaximum", &v) && v <= hi) hi = v, hi_excl = true, bounded = true;
    if (c->failed) return;
    if (!bounded) {
        slm_buf_puts(b, "json-number");
        return;
    }
    /* Integers satisfying both bounds, then decimals k.f (value in [k, k+1)) and -k.f (value in
     * (-(k+1), -k]) whose whole interval lies inside the bounds. Values are kept to 9 integer and
     * 6 fraction digits so the text converts to a double on the right side of the bound. */
    const double L = (double)NUM_INT_LIMIT;
    double lo_c = lo < -L ? -L : lo, hi_c = hi > L ? L : hi;
    long long int_lo = (long long)(lo_excl && lo >= -L ? floor(lo_c) + 1 : ceil(lo_c));
    long long int_hi = (long long)(hi_excl && hi <= L ? ceil(hi_c) - 1 : floor(hi_c));
    slm_buf alts = {0};
    int n = int_range_alts(&alts, int_lo, int_hi, true);
    long long pos_lo = int_lo > 0 ? int_lo : 0, pos_hi = (long long)floor(hi_c) - 1;
    if (hi_c < L && hi_excl && floor(hi_c) == hi_c) pos_hi = (long long)hi_c - 1;
    if (pos_lo <= pos_hi) {
        if (n++) slm_buf_puts(&alts, " | ");
        nonneg_range(&alts, pos_lo, pos_hi);
        slm_buf_puts(&alts, " \".\" [0-9]{1,6}");
    }
    /* an exclusive integer bound k0 itself: k0.f with a non-zero fraction (value in (k0, k0+1)) */
    if (lo_excl && lo >= 0 && lo < L && floor(lo) == lo && lo + 1 <= hi_c && (long long)lo < pos_lo) {
        if (n++) slm_buf_puts(&alts, " | ");
        slm_buf_printf(&alts, "\"%lld.\" [0-9]{0,5} [1-9]", (long long)lo);
    }
    if (hi_excl && hi <= 0 && hi > -L && floor(hi) == hi && hi - 1 >= lo_c) {
        if (n++) slm_buf_puts(&alts, " | ");
        slm_buf_printf(&alts, "\"-%lld.\" [0-9]{0,5} [1-9]", -(long long)hi);
    }
    long long neg_lo = int_hi < 0 ? -int_hi : 0, neg_hi = -(long long)ceil(lo_c) - 1;
    if (neg_lo <= neg_hi) {
        if (n++) slm_buf_puts(&alts, " | ");
        slm_buf_puts(&alts, "\"-\" ");
        nonneg_range(&alts, neg_lo, neg_hi);
        slm_buf_puts(&alts, " \".\" [0-9]{1,6}");
    }
    if (n == 0) {
        free(alts.s);
        js_fail(c, "json schema: number range is empty (or has no value with at most 6 decimals)");
        return;
    }
    slm_buf_puts(b, "(");
    slm_buf_append(b, alts.s, alts.len);
    slm_buf_puts(b, ")");
    if (alts.oom) b->oom = true;
    free(alts.s);
}

/* ---------- multipleOf ---------- */

#define MULT_ENUM_MAX 256    /* multiples listed one by one up to this many */
#define MULT_DFA_STATES 20000 /* remainder automaton size limit (remainders x digit positions) */

static long long gcd_ll(long long a, long long b) {
    while (b) {
        long long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* N / 10^k as a JSON number literal without trailing fraction zeros. */
static void put_scaled(slm_buf *b, long long n, int k) {
    char digits[40];
    bool neg = n < 0;
    unsigned long long u = neg ? 0ull - (unsigned long long)n : (unsigned long long)n;
    int len = snprintf(digits, sizeof digits, "%0*llu", k + 1, u);
    int int_len = len - k, frac_len = k;
    while (frac_len > 0 && digits[int_len + frac_len - 1] == '0') frac_len--;
    slm_buf_printf(b, "\"%s%.*s", neg ? "-" : "", int_len, digits);
    if (frac_len) slm_buf_printf(b, ".%.*s", frac_len, digits + int_len);
    slm_buf_puts(b, "\"");
}

typedef struct mult_dfa {
    long long p;
    int k, maxd;
    bool *prod_i, *prod_f; /* [(len or j) * p + r] */
    long long *pow10_mod;  /* 10^e mod p, e = 0..k */
} mult_dfa;

static bool acc_i(const mult_dfa *d, long long r) { return (r * d->pow10_mod[d->k]) % d->p == 0; }
static bool acc_f(const mult_dfa *d, long long r, int j) { return (r * d->pow10_mod[d->k - j]) % d->p == 0; }

/* Productive states, backwards from the longest digit strings. */
static void dfa_productive(mult_dfa *d) {
    long long p = d->p;
    for (int j = d->k; j >= 1; j--)
        for (long long r = 0; r < p; r++) {
            bool ok = acc_f(d, r, j);
            for (int x = 0; x < 10 && !ok && j < d->k; x++) ok = d->prod_f[(size_t)(j + 1) * p + (10 * r + x) % p];
            d->prod_f[(size_t)j * p + r] = ok;
        }
    for (int len = d->maxd; len >= 1; len--)
        for (long long r = 0; r < p; r++) {
            bool ok = acc_i(d, r);
            for (int x = 0; x < 10 && !ok && len < d->maxd; x++) ok = d->prod_i[(size_t)(len + 1) * p + (10 * r + x) % p];
            for (int x = 0; x < 10 && !ok && d->k > 0; x++) ok = d->prod_f[(size_t)1 * p + (10 * r + x) % p];
            d->prod_i[(size_t)len * p + r] = ok;
        }
}

/* Right-linear rules: base-i<len>-<r> after len integer digits with remainder r (of the digits
 * read so far, fraction included, modulo p); base-f<j>-<r> after j fraction digits. */
static void dfa_emit(conv *c, const mult_dfa *d, const char *base) {
    long long p = d->p;
    for (int len = 1; len <= d->maxd && !c->failed; len++)
        for (long long r = 0; r < p; r++) {
            if (!d->prod_i[(size_t)len * p + r]) continue;
            slm_buf_printf(&c->out, "%s-i%d-%lld ::= ", base, len, r);
            int n = 0;
            if (acc_i(d, r)) slm_buf_puts(&c->out, "\"\""), n++;
            for (int x = 0; x < 10 && len < d->maxd; x++) {
                long long t = (10 * r + x) % p;
                if (d->prod_i[(size_t)(len + 1) * p + t])
                    slm_buf_printf(&c->out, "%s\"%d\" %s-i%d-%lld", n++ ? " | " : "", x, base, len + 1, t);
            }
            for (int x = 0; x < 10 && d->k > 0; x++) {
                long long t = (10 * r + x) % p;
                if (d->prod_f[(size_t)1 * p + t])
                    slm_buf_printf(&c->out, "%s\".%d\" %s-f1-%lld", n++ ? " | " : "", x, base, t);
            }
            slm_buf_puts(&c->out, "\n");
        }
    for (int j = 1; j <= d->k && !c->failed; j++)
        for (long long r = 0; r < p; r++) {
            if (!d->prod_f[(size_t)j * p + r]) continue;
            slm_buf_printf(&c->out, "%s-f%d-%lld ::= ", base, j, r);
            int n = 0;
            if (acc_f(d, r, j)) slm_buf_puts(&c->out, "\"\""), n++;
            for (int x = 0; x < 10 && j < d->k; x++) {
                long long t = (10 * r + x) % p;
                if (d->prod_f[(size_t)(j + 1) * p + t])
                    slm_buf_printf(&c->out, "%s\"%d\" %s-f%d-%lld", n++ ? " | " : "", x, base, j + 1, t);
            }
            slm_buf_puts(&c->out, "\n");
        }
}

/* Every multiple of p / 10^k in the allowed signs (zero always), up to maxd integer digits. */
static bool gen_multiple_dfa(conv *c, slm_buf *b, long long p, int k, int maxd, bool neg, bool pos) {
    mult_dfa d = {.p = p, .k = k, .maxd = maxd};
    d.prod_i = calloc((size_t)(maxd + 2) * (size_t)p, 1);
    d.prod_f = calloc((size_t)(k + 2) * (size_t)p, 1);
    d.pow10_mod = malloc((size_t)(k + 1) * sizeof *d.pow10_mod);
    bool ok = d.prod_i && d.prod_f && d.pow10_mod;
    if (ok) {
        d.pow10_mod[0] = 1 % p;
        for (int e = 1; e <= k; e++) d.pow10_mod[e] = d.pow10_mod[e - 1] * 10 % p;
        dfa_productive(&d);
        char base[32];
        snprintf(base, sizeof base, "m%d", ++c->n_rules);
        dfa_emit(c, &d, base);
        /* zero and its fractions: "0" reads no more integer digits (state i<maxd>-0) */
        slm_buf puts = {0};
        char zero[64];
        snprintf(zero, sizeof zero, "\"0\" %s-i%d-0", base, maxd); /* "0" and 0.xxx */
        slm_buf pos_alts = {0};
        int n = 0;
        for (int x = 1; x <= 9; x++)
            if (d.prod_i[(size_t)1 * p + x % p]) slm_buf_printf(&pos_alts, "%s\"%d\" %s-i1-%lld", n++ ? " | " : "", x, base, x % p);
        slm_buf_printf(&puts, "(%s", pos ? zero : "\"0\"");
        if (pos && n) slm_buf_printf(&puts, " | %s", pos_alts.s);
        if (neg) slm_buf_printf(&puts, " | \"-\" (%s%s%s)", zero, n ? " | " : "", n ? pos_alts.s : "");
        slm_buf_puts(&puts, ")");
        slm_buf_append(b, puts.s, puts.len);
        if (puts.oom || pos_alts.oom) b->oom = true;
        free(puts.s);
        free(pos_alts.s);
    } else {
        js_fail(c, "json schema: out of memory");
    }
    free(d.prod_i);
    free(d.prod_f);
    free(d.pow10_mod);
    return ok;
}

/* multipleOf for "integer" (integer = true) or "number", with the schema's bounds. Exact where the
 * multiples in range are few (listed) or the range is a whole sign or both (a remainder automaton
 * over the digits); otherwise the 256 multiples nearest zero inside the range (a valid subset). */
void js_gen_multiple(conv *c, const json_t *s, slm_buf *b, bool integer) {
    const json_t *mv = json_object_get(s, "multipleOf");
    double m = json_number_value(mv);
    if (!json_is_number(mv) || !(m > 0) || !isfinite(m)) {
        js_fail(c, "json schema: 'multipleOf' must be a number above 0");
        return;
    }
    long long p = 0;
    int k = 0;
    for (; k <= 6; k++) {
        double scaled = m * pow(10, k), r = nearbyint(scaled);
        if (r >= 1 && fabs(scaled - r) <= 1e-9 * scaled) {
            p = (long long)r;
            break;
        }
    }
    if (k > 6 || p > 1000000000LL) {
        js_fail(c, "json schema: 'multipleOf' %g is not supported (at most 6 decimals and 9 significant digits)", m);
        return;
    }
    if (integer && k > 0) {
        long long ten = 1;
        for (int i = 0; i < k; i++) ten *= 10;
        p /= gcd_ll(p, ten); /* the integers among the multiples of p / 10^k: multiples of p / gcd */
        k = 0;
    }
    long long ten_k = 1;
    for (int i = 0; i < k; i++) ten_k *= 10;
    double limit = integer ? (double)INT_LIMIT : (double)NUM_INT_LIMIT;
    double lo = -INFINITY, hi = INFINITY, v;
    bool lo_excl = false, hi_excl = false;
    const json_t *bv;
    if ((bv = json_object_get(s, "minimum")) && json_is_number(bv)) lo = json_number_value(bv);
    if ((bv = json_object_get(s, "exclusiveMinimum")) && json_is_number(bv) && (v = json_number_value(bv)) >= lo)
        lo = v, lo_excl = true;
    if ((bv = json_object_get(s, "maximum")) && json_is_number(bv)) hi = json_number_value(bv);
    if ((bv = json_object_get(s, "exclusiveMaximum")) && json_is_number(bv) && (v = json_number_value(bv)) <= hi)
        hi = v, hi_excl = true;
    /* multiples q * step, step = p / 10^k, |value| <= limit */
    double step = (double)p / (double)ten_k;
    double qmax = floor(limit / step);
    double qlo = isfinite(lo) ? ceil(lo / step) : -qmax, qhi = isfinite(hi) ? floor(hi / step) : qmax;
    while (qlo * step < lo || (lo_excl && qlo * step <= lo)) qlo++;
    while ((qlo - 1) * step >= lo && !(lo_excl && (qlo - 1) * step <= lo) && isfinite(lo)) qlo--;
    while (qhi * step > hi || (hi_excl && qhi * step >= hi)) qhi--;
    while ((qhi + 1) * step <= hi && !(hi_excl && (qhi + 1) * step >= hi) && isfinite(hi)) qhi++;
    if (qlo < -qmax) qlo = -qmax;
    if (qhi > qmax) qhi = qmax;
    if (qlo > qhi) {
        js_fail(c, "json schema: no multiple of %g (multipleOf) lies within the bounds", m);
        return;
    }
    if (integer && p == 1) { /* every integer */
        json_t *plain = json_deep_copy(s);
        if (!plain) {
            js_fail(c, "json schema: out of memory");
            return;
        }
        json_object_del(plain, "multipleOf");
        js_gen_integer(c, plain, b);
        json_decref(plain);
        return;
    }
    bool whole_neg = !isfinite(lo), whole_pos = !isfinite(hi);
    bool zero_in = qlo <= 0 && qhi >= 0 && !(lo_excl && lo == 0) && !(hi_excl && hi == 0);
    bool sign_range = zero_in && (whole_neg || (lo == 0)) && (whole_pos || (hi == 0));
    int maxd = integer ? 15 : 9;
    if (qhi - qlo + 1 > MULT_ENUM_MAX && sign_range && p * (maxd + k + 1) <= MULT_DFA_STATES) {
        gen_multiple_dfa(c, b, p, k, maxd, whole_neg, whole_pos);
        return;
    }
    /* listed: all of them, or the MULT_ENUM_MAX nearest zero */
    double from = qlo, to = qhi;
    if (to - from + 1 > MULT_ENUM_MAX) {
        if (from >= 0) to = from + MULT_ENUM_MAX - 1;
        else if (to <= 0) from = to - (MULT_ENUM_MAX - 1);
        else {
            from = fmax(qlo, -MULT_ENUM_MAX / 2);
            to = from + MULT_ENUM_MAX - 1;
            if (to > qhi) to = qhi;
        }
    }
    slm_buf_puts(b, "(");
    for (double q = from; q <= to; q++) {
        if (q != from) slm_buf_puts(b, " | ");
        put_scaled(b, (long long)q * p, k);
    }
    slm_buf_puts(b, ")");
}
