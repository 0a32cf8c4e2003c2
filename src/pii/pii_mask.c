/* Masking with per-request placeholders, and the streaming output filter (restore placeholders,
 * redact PII in generated text) that holds back only a possible entity or placeholder prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pii/pii_internal.h"

typedef struct {
    int type;
    char *value;
    size_t value_len;
    char placeholder[40];
    size_t placeholder_len;
} mask_entry;

struct slm_pii_mask {
    mask_entry *e;
    size_t n, cap;
    int next[SLM_PII_TYPES];
};

slm_pii_mask *slm_pii_mask_new(void) { return calloc(1, sizeof(slm_pii_mask)); }

void slm_pii_mask_free(slm_pii_mask *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->e[i].value);
    free(m->e);
    free(m);
}

int slm_pii_mask_count(const slm_pii_mask *m) { return m ? (int)m->n : 0; }

/* The placeholder of (type, value), created on first use; NULL when out of memory. */
static const mask_entry *mask_get(slm_pii_mask *m, int type, const char *v, size_t len) {
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].type == type && m->e[i].value_len == len && memcmp(m->e[i].value, v, len) == 0) return &m->e[i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        mask_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) return NULL;
        m->e = e;
        m->cap = cap;
    }
    mask_entry *e = &m->e[m->n];
    e->value = malloc(len + 1);
    if (!e->value) return NULL;
    memcpy(e->value, v, len);
    e->value[len] = 0;
    e->value_len = len;
    e->type = type;
    int k = snprintf(e->placeholder, sizeof e->placeholder, "[%s_%d]", slm_pii_type_name((slm_pii_type)type),
                     ++m->next[type]);
    e->placeholder_len = (size_t)k;
    m->n++;
    return e;
}

const char *slm_pii_mask_lookup(const slm_pii_mask *m, const char *ph, size_t len, size_t *value_len) {
    if (!m) return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].placeholder_len == len && memcmp(m->e[i].placeholder, ph, len) == 0) {
            if (value_len) *value_len = m->e[i].value_len;
            return m->e[i].value;
        }
    return NULL;
}

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

char *slm_pii_mask_apply(slm_pii_mask *m, const char *text, size_t len, const slm_pii_span *spans, int n,
                         size_t *out_len) {
    if (!m || (!text && len) || n < 0 || (n > 0 && !spans)) return NULL;
    if (!text) text = "";
    size_t prev = 0;
    for (int i = 0; i < n; i++) {
        if (spans[i].start < prev || spans[i].end <= spans[i].start || spans[i].end > len ||
            (unsigned)spans[i].type >= SLM_PII_TYPES)
            return NULL;
        prev = spans[i].end;
    }
    sbuf b = {0};
    sb_put(&b, "", 0);
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        sb_put(&b, text + pos, spans[i].start - pos);
        const mask_entry *e = mask_get(m, spans[i].type, text + spans[i].start, spans[i].end - spans[i].start);
        if (!e) b.oom = true;
        else sb_put(&b, e->placeholder, e->placeholder_len);
        pos = spans[i].end;
    }
    sb_put(&b, text + pos, len - pos);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (out_len) *out_len = b.len;
    return b.p;
}

/* ---------- the filter ---------- */

struct slm_pii_filter {
    const slm_pii *d;
    slm_pii_mask *m;     /* placeholders to restore and to mask with */
    slm_pii_mask *own;   /* the filter's own mask when none was given */
    unsigned flags;
    char *buf;           /* kept context [0, emitted) + pending text [emitted, len) */
    size_t len, cap, emitted;
    int counts[SLM_PII_TYPES];
    bool flushed;
};

slm_pii_filter *slm_pii_filter_new(const slm_pii *d, slm_pii_mask *m, unsigned flags) {
    if (!d && (flags & SLM_PII_FILTER_REDACT)) return NULL;
    slm_pii_filter *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->d = d;
    f->flags = flags;
    f->m = m;
    if (!m && (flags & SLM_PII_FILTER_REDACT)) {
        f->own = slm_pii_mask_new();
        if (!f->own) {
            free(f);
            return NULL;
        }
        f->m = f->own;
    }
    return f;
}

void slm_pii_filter_free(slm_pii_filter *f) {
    if (!f) return;
    slm_pii_mask_free(f->own);
    free(f->buf);
    free(f);
}

void slm_pii_filter_counts(const slm_pii_filter *f, int counts[SLM_PII_TYPES]) {
    for (int i = 0; i < SLM_PII_TYPES; i++) counts[i] = f ? f->counts[i] : 0;
}

static bool is_ph_char(unsigned c) { return pii_is_upper(c) || pii_is_digit(c) || c == '_'; }

/* Placeholders of m in s[from..n) as candidates; a possible placeholder prefix running to the end of
 * a partial text makes it undecided. */
static void find_placeholders(pii_scan *x, const slm_pii_mask *m) {
    if (!m || m->n == 0) return;
    for (size_t p = x->from; p < x->n; p++) {
        if (x->s[p] != '[') continue;
        size_t i = p + 1;
        while (i < x->n && i - p < 40 && is_ph_char(x->s[i])) i++;
        if (i == x->n) {
            if (!x->final && x->stable > p) x->stable = p;
            continue;
        }
        if (x->s[i] != ']') continue;
        if (slm_pii_mask_lookup(m, (const char *)x->s + p, i + 1 - p, NULL))
            pii_add(x, p, i + 1, PII_KIND_PLACEHOLDER, 100);
    }
}

/* Transforms f->buf[f->emitted .. cut) (cut decided here: all of it when final) and appends the
 * result to out. */
static int process_to(slm_pii_filter *f, size_t n, bool final, sbuf *out);

static int process(slm_pii_filter *f, bool final, sbuf *out) {
    if (process_to(f, f->len, final, out) < 0) return -1;
    /* too much held back (one endless token): decide the older part as if the text ended there */
    if (!final && f->len - f->emitted > PII_FILTER_MAX_HOLD)
        return process_to(f, f->len - PII_FILTER_MAX_HOLD / 2, true, out);
    return 0;
}

static int process_to(slm_pii_filter *f, size_t n, bool final, sbuf *out) {
    pii_scan x;
    const char *buf = f->buf ? f->buf : "";
    if (!pii_scan_init(&x, f->d, buf, n, f->emitted, final)) return -1;
    if (f->flags & SLM_PII_FILTER_REDACT) pii_scan_all(&x);
    if (f->flags & SLM_PII_FILTER_RESTORE) find_placeholders(&x, f->m);
    size_t q = final ? n : x.stable;
    if (!final && (f->flags & SLM_PII_FILTER_REDACT)) {
        /* the last word may still grow into an entity */
        size_t t = n;
        while (t > f->emitted && n - t < PII_MAX_WORD_ENTITY && !pii_is_space((unsigned char)buf[t - 1])) t--;
        if (t < q) q = t;
    }
    if (q < f->emitted) q = f->emitted;
    /* never cut inside a candidate: move the cut to its start until none crosses it */
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < x.nc; i++)
            if (x.c[i].start < q && x.c[i].end > q) {
                q = x.c[i].start;
                moved = true;
            }
    }
    size_t keep = 0;
    for (size_t i = 0; i < x.nc; i++)
        if (x.c[i].start < q) x.c[keep++] = x.c[i];
    size_t nw = 0;
    pii_cand *w = x.oom ? NULL : pii_resolve(&x, x.c, keep, &nw);
    if (x.oom) {
        free(w);
        pii_scan_done(&x);
        return -1;
    }
    size_t pos = f->emitted;
    for (size_t i = 0; i < nw; i++) {
        sb_put(out, buf + pos, w[i].start - pos);
        const char *val = buf + w[i].start;
        size_t vlen = w[i].end - w[i].start;
        if (w[i].kind == PII_KIND_PLACEHOLDER) {
            size_t ol = 0;
            const char *orig = slm_pii_mask_lookup(f->m, val, vlen, &ol);
            sb_put(out, orig, ol);
        } else {
            const mask_entry *e = mask_get(f->m, w[i].kind, val, vlen);
            if (!e) out->oom = true;
            else sb_put(out, e->placeholder, e->placeholder_len);
            f->counts[w[i].kind]++;
        }
        pos = w[i].end;
    }
    sb_put(out, buf + pos, q - pos);
    free(w);
    pii_scan_done(&x);
    if (out->oom) return -1;
    f->emitted = q;
    /* keep only the context later rules may look back at */
    if (f->emitted > PII_FILTER_CONTEXT) {
        size_t drop = f->emitted - PII_FILTER_CONTEXT;
        memmove(f->buf, f->buf + drop, f->len - drop);
        f->len -= drop;
        f->emitted -= drop;
    }
    return 0;
}

static int append_out(sbuf *b, char **out, size_t *out_len) {
    if (b->len == 0) {
        free(b->p);
        return 0;
    }
    char *p = realloc(*out, *out_len + b->len + 1);
    if (!p) {
        free(b->p);
        return -1;
    }
    memcpy(p + *out_len, b->p, b->len);
    *out_len += b->len;
    p[*out_len] = 0;
    *out = p;
    free(b->p);
    return 0;
}

int slm_pii_filter_feed(slm_pii_filter *f, const char *piece, size_t len, char **out, size_t *out_len) {
    if (!f || f->flushed || (!piece && len) || !out || !out_len) return -1;
    if (len == 0) return 0;
    if (f->len + len + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < f->len + len + 1) cap *= 2;
        char *b = realloc(f->buf, cap);
        if (!b) return -1;
        f->buf = b;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, piece, len);
    f->len += len;
    f->buf[f->len] = 0;
    sbuf b = {0};
    if (process(f, false, &b) < 0) {
        free(b.p);
        return -1;
    }
    return append_out(&b, out, out_len);
}

int slm_pii_filter_flush(slm_pii_filter *f, char **out, size_t *out_len) {
    if (!f || !out || !out_len) return -1;
    if (f->flushed) return 0;
    sbuf b = {0};
    if (process(f, true, &b) < 0) {
        free(b.p);
        return -1;
    }
    f->flushed = true;
    return append_out(&b, out, out_len);
}

char *slm_pii_filter_oneshot(const slm_pii *d, slm_pii_mask *m, unsigned flags, const char *text, size_t len,
                             size_t *out_len) {
    if (!text && len) return NULL;
    slm_pii_filter *f = slm_pii_filter_new(d, m, flags);
    if (!f) return NULL;
    char *out = NULL;
    size_t n = 0;
    /* one piece, decided as a whole: no holding back */
    if (len) {
        f->buf = malloc(len + 1);
        if (!f->buf) {
            slm_pii_filter_free(f);
            return NULL;
        }
        memcpy(f->buf, text, len);
        f->buf[len] = 0;
        f->len = f->cap = len;
    }
    if (slm_pii_filter_flush(f, &out, &n) < 0) {
        free(out);
        slm_pii_filter_free(f);
        return NULL;
    }
    slm_pii_filter_free(f);
    if (!out) {
        out = malloc(1);
        if (!out) return NULL;
        out[0] = 0;
    }
    if (out_len) *out_len = n;
    return out;
}
