/* The PII guard's public entry points: type names, the detector object, one-shot scans and the
 * overlap resolution shared with the streaming filter. */
#include <stdlib.h>
#include <string.h>

#include "pii/pii_internal.h"

struct slm_pii {
    int unused; /* the rules and gazetteers are static data; the object keeps the API future-proof */
};

static const char *const TYPE_NAMES[SLM_PII_TYPES] = {
    "PERSON", "PHONE", "EMAIL", "SECRET", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "URL", "ADDRESS",
    "LOCATION", "DATE_OF_BIRTH"};

const char *slm_pii_type_name(slm_pii_type t) {
    return (unsigned)t < SLM_PII_TYPES ? TYPE_NAMES[t] : "?";
}

int slm_pii_type_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < SLM_PII_TYPES; i++)
        if (strcmp(name, TYPE_NAMES[i]) == 0) return i;
    return -1;
}

slm_pii *slm_pii_new(char *err, size_t err_len) {
    slm_pii *d = calloc(1, sizeof *d);
    if (!d && err && err_len) {
        strncpy(err, "out of memory", err_len - 1);
        err[err_len - 1] = 0;
    }
    return d;
}

void slm_pii_free(slm_pii *d) { free(d); }

size_t slm_pii_cp_offset(const char *text, size_t byte_off) {
    size_t n = 0;
    for (size_t i = 0; i < byte_off; i++) n += ((unsigned char)text[i] & 0xC0) != 0x80;
    return n;
}

static int cand_order(const void *a, const void *b) {
    const pii_cand *x = a, *y = b;
    if (x->prio != y->prio) return y->prio - x->prio;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly) return lx > ly ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->kind - y->kind;
}

static int cand_by_start(const void *a, const void *b) {
    const pii_cand *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

pii_cand *pii_resolve(pii_scan *x, const pii_cand *c, size_t nc, size_t *n_out) {
    *n_out = 0;
    if (nc == 0) return NULL;
    pii_cand *all = malloc(nc * sizeof *all), *win = malloc(nc * sizeof *win);
    if (!all || !win) {
        free(all);
        free(win);
        x->oom = true;
        return NULL;
    }
    memcpy(all, c, nc * sizeof *all);
    qsort(all, nc, sizeof *all, cand_order);
    size_t nw = 0;
    /* winners are kept sorted by start so each overlap test is a binary search */
    for (size_t i = 0; i < nc; i++) {
        size_t lo = 0, hi = nw;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (win[mid].start < all[i].start) lo = mid + 1;
            else hi = mid;
        }
        bool clash = (lo < nw && win[lo].start < all[i].end) || (lo > 0 && win[lo - 1].end > all[i].start);
        if (clash) continue;
        memmove(win + lo + 1, win + lo, (nw - lo) * sizeof *win);
        win[lo] = all[i];
        nw++;
    }
    free(all);
    (void)cand_by_start;
    *n_out = nw;
    return win;
}

/* Prepares a scan of s[0..n): the lowercased copy. */
bool pii_scan_init(pii_scan *x, const slm_pii *d, const char *s, size_t n, size_t from, bool final) {
    memset(x, 0, sizeof *x);
    x->d = d;
    x->s = (const unsigned char *)s;
    x->n = n;
    x->from = from;
    x->final = final;
    x->stable = n;
    x->low = malloc(n + 1);
    if (!x->low) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        x->low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    x->low[n] = 0;
    return true;
}

void pii_scan_done(pii_scan *x) {
    free(x->low);
    free(x->c);
    x->low = NULL;
    x->c = NULL;
}

int slm_pii_scan(const slm_pii *d, const char *text, size_t len, slm_pii_span **spans) {
    *spans = NULL;
    if (!d || (!text && len)) return -1;
    if (len == 0) return 0;
    pii_scan x;
    if (!pii_scan_init(&x, d, text, len, 0, true)) return -1;
    pii_scan_all(&x);
    size_t nw = 0;
    pii_cand *w = x.oom ? NULL : pii_resolve(&x, x.c, x.nc, &nw);
    if (x.oom) {
        free(w);
        pii_scan_done(&x);
        return -1;
    }
    pii_scan_done(&x);
    if (nw == 0) {
        free(w);
        return 0;
    }
    if (nw > (size_t)(int)(((unsigned)-1) >> 1)) nw = (size_t)(((unsigned)-1) >> 1);
    slm_pii_span *out = malloc(nw * sizeof *out);
    if (!out) {
        free(w);
        return -1;
    }
    for (size_t i = 0; i < nw; i++) out[i] = (slm_pii_span){w[i].start, w[i].end, (slm_pii_type)w[i].kind};
    free(w);
    *spans = out;
    return (int)nw;
}
