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
