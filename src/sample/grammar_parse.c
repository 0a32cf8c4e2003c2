/* GBNF text → flat grammar program (grammar_impl.h), with the static checks that keep the runtime
 * from looping: undefined rules, left recursion, rules that can never finish. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sample/grammar_impl.h"
#include "util/buf.h"

typedef struct seq {
    gram_elem *v;
    uint32_t n;
    size_t cap;
} seq;

enum { RULE_NAMED, RULE_GROUP, RULE_REPEAT };

typedef struct prule {
    char *name;
    uint32_t name_len;
    int kind;
    bool defined;
    size_t def_off; /* where it is defined (for generated rules: the group or operator) */
    size_t ref_off; /* first reference, for "undefined rule" */
    seq *alts;
    uint32_t n_alts;
    size_t cap_alts;
    uint32_t n_generated; /* children generated from this rule, for their names */
} prule;

typedef struct parser {
    const char *src;
    size_t len, pos;
    prule *rules;
    uint32_t n_rules;
    size_t cap_rules;
    uint32_t *name_tab; /* open-addressing hash of the named rules: rule index + 1, 0 = empty */
    size_t name_cap;    /* power of two */
    uint32_t n_named;
    uint64_t n_alts;
    gram_guard *guard;
    int code; /* the return code once failed: SLM_GRAMMAR_INVALID unless a limit stopped the compile */
    gram_range *ranges;
    uint32_t n_ranges;
    size_t cap_ranges;
    gram_class *classes;
    uint32_t n_classes;
    size_t cap_classes;
    uint64_t n_elems;
    int nesting;
    bool failed;
    char *err;
    size_t err_len;
} parser;

static void line_col(const char *src, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

__attribute__((format(printf, 3, 4))) static void fail_at(parser *p, size_t off, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = true;
    if (!p->err || !p->err_len) return;
    int line, col;
    line_col(p->src, off > p->len ? p->len : off, &line, &col);
    int n = snprintf(p->err, p->err_len, "line %d, column %d: ", line, col);
    if (n < 0 || (size_t)n >= p->err_len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->err_len - (size_t)n, fmt, ap);
    va_end(ap);
}

static void fail_oom(parser *p) { fail_at(p, p->pos, "out of memory"); }

/* A size limit crossed at the current place. */
#define fail_limit(p, ...)                     \
    do {                                       \
        if (!(p)->failed) (p)->code = SLM_GRAMMAR_TOO_LARGE; \
        fail_at((p), (p)->pos, __VA_ARGS__);   \
    } while (0)

/* Cancelled or past the deadline: a message without a place. */
static void fail_stopped(parser *p) {
    if (p->failed) return;
    p->failed = true;
    p->code = p->guard->status;
    if (p->err && p->err_len) snprintf(p->err, p->err_len, "grammar: %s", gram_guard_message(p->guard));
}

static bool keep_going(parser *p) {
    if (gram_guard_ok(p->guard)) return true;
    fail_stopped(p);
    return false;
}

/* ---------- limits and cancellation ---------- */

double gram_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double slm_grammar_now(void) { return gram_now(); }

void gram_guard_init(gram_guard *g, const slm_grammar_limits *l) {
    memset(g, 0, sizeof *g);
    g->max_rules = GRAM_DEFAULT_MAX_RULES;
    g->max_alts = GRAM_DEFAULT_MAX_ALTS;
    g->max_elems = GRAM_MAX_ELEMS;
    if (!l) return;
    if (l->max_rules > 0 && (uint32_t)l->max_rules < g->max_rules) g->max_rules = (uint32_t)l->max_rules;
    if (l->max_alternatives > 0 && (uint32_t)l->max_alternatives < g->max_alts) g->max_alts = (uint32_t)l->max_alternatives;
    if (l->max_elements > 0 && (uint32_t)l->max_elements < g->max_elems) g->max_elems = (uint32_t)l->max_elements;
    g->deadline = l->deadline > 0 ? l->deadline : 0;
    g->cancel = l->cancel;
    g->cancel_user = l->cancel_user;
}

bool gram_guard_poll(gram_guard *g) {
    if (g->status) return false;
    if (g->cancel && g->cancel(g->cancel_user)) g->status = SLM_GRAMMAR_CANCELLED;
    else if (g->deadline > 0 && gram_now() >= g->deadline) g->status = SLM_GRAMMAR_TOO_LARGE;
    return g->status == 0;
}

const char *gram_guard_message(const gram_guard *g) {
    return g->status == SLM_GRAMMAR_CANCELLED ? "compile cancelled" : "compile took longer than its time limit (deadline)";
}

static bool grow_min(parser *p, void **ptr, size_t *cap, size_t need, size_t elem, size_t min_cap) {
    if (slm_grow(ptr, cap, need, elem, min_cap)) return true;
    fail_oom(p);
    return false;
}

static bool grow(parser *p, void **ptr, size_t *cap, size_t need, size_t elem) {
    return grow_min(p, ptr, cap, need, elem, 8);
}

static int rule_new(parser *p, char *name, int kind, size_t off) {
    if (p->n_rules >= p->guard->max_rules) {
        free(name);
        fail_limit(p, "grammar has more than %u rules (limit)", p->guard->max_rules);
        return -1;
    }
    if (!keep_going(p) || !grow(p, (void **)&p->rules, &p->cap_rules, p->n_rules + 1, sizeof(prule))) {
        free(name);
        return -1;
    }
    prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->name_len = (uint32_t)strlen(name);
    r->kind = kind;
    r->def_off = off;
    r->ref_off = off;
    return (int)p->n_rules++;
}

static uint32_t name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    h ^= h >> 16; /* murmur3's finaliser: FNV alone clusters similar names like s1, s2, ... */
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

/* Doubles the named-rule table (rehashing) when it is half full. */
static bool name_tab_reserve(parser *p) {
    if ((size_t)(p->n_named + 1) * 2 <= p->name_cap) return true;
    size_t cap = p->name_cap ? p->name_cap * 2 : 256;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (!tab) {
        fail_oom(p);
        return false;
    }
    for (size_t i = 0; i < p->name_cap; i++) {
        if (!p->name_tab[i]) continue;
        const prule *r = &p->rules[p->name_tab[i] - 1];
        size_t slot = name_hash(r->name, r->name_len) & (cap - 1);
        while (tab[slot]) slot = (slot + 1) & (cap - 1);
        tab[slot] = p->name_tab[i];
    }
    free(p->name_tab);
    p->name_tab = tab;
    p->name_cap = cap;
    return true;
}

static int rule_find_or_add(parser *p, const char *name, size_t len, size_t off) {
    if (!name_tab_reserve(p)) return -1;
    size_t slot = name_hash(name, len) & (p->name_cap - 1);
    for (; p->name_tab[slot]; slot = (slot + 1) & (p->name_cap - 1)) {
        const prule *r = &p->rules[p->name_tab[slot] - 1];
        if (r->name_len == len && !memcmp(r->name, name, len)) return (int)(p->name_tab[slot] - 1);
    }
    char *copy = strndup(name, len);
    if (!copy) {
        fail_oom(p);
        return -1;
    }
    int id = rule_new(p, copy, RULE_NAMED, off);
    if (id >= 0) {
        p->name_tab[slot] = (uint32_t)id + 1;
        p->n_named++;
    }
    return id;
}

static int rule_generated(parser *p, uint32_t parent, int kind, size_t off) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s_%u", p->rules[parent].name, ++p->rules[parent].n_generated);
    char *copy = strdup(buf);
    if (!copy) {
        fail_oom(p);
        return -1;
    }
    int id = rule_new(p, copy, kind, off);
    if (id >= 0) p->rules[id].defined = true;
    return id;
}

/* Adds an empty alternative to rule r; returns its index or -1. */
static int alt_new(parser *p, uint32_t r) {
    if (++p->n_alts > p->guard->max_alts) {
        fail_limit(p, "grammar has more than %u alternatives (limit)", p->guard->max_alts);
        return -1;
    }
    prule *pr = &p->rules[r];
    /* most rules (groups, repetitions) have one or two alternatives of a few elements: small first blocks */
    if (!grow_min(p, (void **)&pr->alts, &pr->cap_alts, pr->n_alts + 1, sizeof(seq), 2)) return -1;
    memset(&pr->alts[pr->n_alts], 0, sizeof(seq));
    return (int)pr->n_alts++;
}

static bool push(parser *p, uint32_t r, uint32_t a, uint32_t type, uint32_t value) {
    if (++p->n_elems > p->guard->max_elems) {
        fail_limit(p, "grammar too large (more than %u elements after expanding repetitions)", p->guard->max_elems);
        return false;
    }
    if (!keep_going(p)) return false;
    seq *s = &p->rules[r].alts[a];
    if (!grow_min(p, (void **)&s->v, &s->cap, s->n + 1, sizeof(gram_elem), 4)) return false;
    s->v[s->n++] = (gram_elem){type, value};
    return true;
}

/* ---------- lexical helpers ---------- */

static int peek(const parser *p) { return p->pos < p->len ? (unsigned char)p->src[p->pos] : -1; }

static void skip_space(parser *p, bool newlines) {
    while (p->pos < p->len) {
        char c = p->src[p->pos];
        if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->len && p->src[p->pos] != '\n') p->pos++;
        } else {
            break;
        }
    }
}

static bool is_name_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static size_t name_len_at(const parser *p, size_t at) {
    size_t n = 0;
    while (at + n < p->len && is_name_char((unsigned char)p->src[at + n])) n++;
    return n;
}

/* At a top-level newline: does the rule go on (next content is not a new definition)? */
static bool continues_rule(const parser *p) {
    parser q = *p;
    skip_space(&q, true);
    if (q.pos >= q.len) return false;
    size_t n = name_len_at(&q, q.pos);
    if (n == 0) return true;
    q.pos += n;
    skip_space(&q, false);
    return !(q.len - q.pos >= 3 && !memcmp(q.src + q.pos, "::=", 3));
}

/* Decodes one UTF-8 code point of the source; -1 on malformed input. */
static long decode_utf8(parser *p) {
    const unsigned char *s = (const unsigned char *)p->src + p->pos;
    size_t left = p->len - p->pos;
    unsigned char b = s[0];
    uint32_t cp;
    size_t n;
    if (b < 0x80) {
        p->pos++;
        return b;
    } else if ((b & 0xE0) == 0xC0) {
        cp = b & 0x1F;
        n = 2;
    } else if ((b & 0xF0) == 0xE0) {
        cp = b & 0x0F;
        n = 3;
    } else if ((b & 0xF8) == 0xF0) {
        cp = b & 0x07;
        n = 4;
    } else {
        return -1;
    }
    if (left < n) return -1;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    p->pos += n;
    return cp;
}

static long parse_hex(parser *p, int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int c = peek(p);
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) {
            fail_at(p, p->pos, "expected %d hex digits in escape", digits);
            return -1;
        }
        v = v * 16 + (uint32_t)d;
        p->pos++;
    }
    return v;
}

/* One character of a literal or class, escapes decoded; -1 on error. */
static long parse_char(parser *p) {
    size_t start = p->pos;
    if (p->pos >= p->len) {
        fail_at(p, p->pos, "unexpected end of grammar");
        return -1;
    }
    if (p->src[p->pos] == '\n') {
        fail_at(p, p->pos, "unexpected end of line");
        return -1;
    }
    if (p->src[p->pos] != '\\') {
        long cp = decode_utf8(p);
        if (cp < 0) fail_at(p, start, "invalid UTF-8");
        return cp;
    }
    p->pos++;
    int c = peek(p);
    p->pos++;
    long cp;
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '0': return 0;
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': case '.':
        return c;
    case 'x': cp = parse_hex(p, 2); break;
    case 'u': cp = parse_hex(p, 4); break;
    case 'U': cp = parse_hex(p, 8); break;
    default:
        fail_at(p, start, "unknown escape '\\%c'", c >= 32 && c < 127 ? c : '?'); /* errors stay one line */
        return -1;
    }
    if (cp < 0) return -1;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        fail_at(p, start, "escape is not a Unicode scalar value");
        return -1;
    }
    return cp;
}

/* ---------- character classes ---------- */

static int cmp_range(const void *a, const void *b) {
    const gram_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

/* Sorts, merges, removes surrogates, optionally complements; appends as a new class. */
static int class_add(parser *p, gram_range *tmp, uint32_t n, bool negate, size_t off) {
    qsort(tmp, n, sizeof *tmp, cmp_range);
    uint32_t m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m && tmp[i].lo <= tmp[m - 1].hi + 1) {
            if (tmp[i].hi > tmp[m - 1].hi) tmp[m - 1].hi = tmp[i].hi;
        } else {
            tmp[m++] = tmp[i];
        }
    }
    /* complement and surrogate removal both map into at most m + 2 ranges */
    gram_range *out = malloc(((size_t)m + 3) * 2 * sizeof *out);
    if (!out) {
        fail_oom(p);
        return -1;
    }
    uint32_t k = 0;
    if (negate) {
        uint32_t next = 0;
        for (uint32_t i = 0; i < m; i++) {
            if (tmp[i].lo > next) out[k++] = (gram_range){next, tmp[i].lo - 1};
            next = tmp[i].hi + 1;
        }
        if (next <= 0x10FFFF) out[k++] = (gram_range){next, 0x10FFFF};
    } else {
        memcpy(out, tmp, m * sizeof *out);
        k = m;
    }
    /* split around the surrogate block */
    gram_range *fin = malloc(((size_t)k * 2 + 1) * sizeof *fin);
    if (!fin) {
        free(out);
        fail_oom(p);
        return -1;
    }
    uint32_t f = 0;
    for (uint32_t i = 0; i < k; i++) {
        gram_range r = out[i];
        if (r.hi < 0xD800 || r.lo > 0xDFFF) {
            fin[f++] = r;
            continue;
        }
        if (r.lo < 0xD800) fin[f++] = (gram_range){r.lo, 0xD7FF};
        if (r.hi > 0xDFFF) fin[f++] = (gram_range){0xE000, r.hi};
    }
    free(out);
    if (f == 0) {
        free(fin);
        fail_at(p, off, "character class matches no character");
        return -1;
    }
    if (!grow(p, (void **)&p->ranges, &p->cap_ranges, p->n_ranges + f, sizeof(gram_range)) ||
        !grow(p, (void **)&p->classes, &p->cap_classes, p->n_classes + 1, sizeof(gram_class))) {
        free(fin);
        return -1;
    }
    gram_class *c = &p->classes[p->n_classes];
    memset(c, 0, sizeof *c);
    c->begin = p->n_ranges;
    for (uint32_t i = 0; i < f; i++) {
        p->ranges[p->n_ranges++] = fin[i];
        for (uint32_t cp = fin[i].lo; cp <= fin[i].hi && cp < 128; cp++) c->ascii[cp >> 6] |= 1ull << (cp & 63);
    }
    c->end = p->n_ranges;
    free(fin);
    return (int)p->n_classes++;
}

static int parse_class(parser *p) {
    size_t start = p->pos;
    p->pos++; /* '[' */
    bool negate = false;
    if (peek(p) == '^') {
        negate = true;
        p->pos++;
    }
    gram_range *tmp = NULL;
    uint32_t n = 0;
    size_t cap = 0;
    while (!p->failed) {
        if (p->pos >= p->len || p->src[p->pos] == '\n') {
            fail_at(p, start, "unterminated character class");
            break;
        }
        if (p->src[p->pos] == ']') {
            p->pos++;
            break;
        }
        size_t item = p->pos;
        long lo = parse_char(p);
        if (lo < 0) break;
        long hi = lo;
        if (peek(p) == '-' && p->pos + 1 < p->len && p->src[p->pos + 1] != ']') {
            size_t dash = item;
            p->pos++;
            hi = parse_char(p);
            if (hi < 0) break;
            if (hi < lo) {
                fail_at(p, dash, "character range is reversed");
                break;
            }
        }
        if (!grow(p, (void **)&tmp, &cap, n + 1, sizeof *tmp)) break;
        tmp[n++] = (gram_range){(uint32_t)lo, (uint32_t)hi};
    }
    if (p->failed) {
        free(tmp);
        return -1;
    }
    if (n == 0 && !negate) {
        free(tmp);
        fail_at(p, start, "empty character class");
        return -1;
    }
    int id = class_add(p, tmp ? tmp : &(gram_range){0, 0}, n, negate, start);
    free(tmp);
    return id;
}

/* ---------- rules, sequences, repetitions ---------- */

static void parse_alternatives(parser *p, uint32_t r, bool nested);

static bool parse_uint(parser *p, uint32_t *out) {
    size_t start = p->pos;
    uint64_t v = 0;
    while (peek(p) >= '0' && peek(p) <= '9') {
        v = v * 10 + (uint64_t)(p->src[p->pos] - '0');
        if (v > GRAM_MAX_REPEAT) {
            fail_at(p, start, "repetition count above %u", GRAM_MAX_REPEAT);
            return false;
        }
        p->pos++;
    }
    if (p->pos == start) {
        fail_at(p, p->pos, "expected a number");
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Replaces elements [item_start, end) of alternative (r, a) with the repetition {min,max}
 * (max == UINT32_MAX: unbounded). */
static void apply_repeat(parser *p, uint32_t r, uint32_t a, uint32_t item_start, uint32_t min, uint32_t max, size_t off) {
    seq *s = &p->rules[r].alts[a];
    uint32_t count = s->n - item_start;
    if (count == 0) {
        fail_at(p, off, "nothing to repeat");
        return;
    }
    gram_elem item;
    if (count == 1) {
        item = s->v[item_start];
    } else {
        int g = rule_generated(p, r, RULE_GROUP, off);
        if (g < 0) return;
        int ga = alt_new(p, (uint32_t)g);
        if (ga < 0) return;
        s = &p->rules[r].alts[a];
        for (uint32_t i = item_start; i < s->n; i++) {
            if (!push(p, (uint32_t)g, (uint32_t)ga, s->v[i].type, s->v[i].value)) return;
            s = &p->rules[r].alts[a];
        }
        item = (gram_elem){GRAM_RULE, (uint32_t)g};
    }
    p->rules[r].alts[a].n = item_start;
    for (uint32_t i = 0; i < min; i++)
        if (!push(p, r, a, item.type, item.value)) return;
    if (max == UINT32_MAX) {
        /* star ::= item star | ε  (right recursion: a tail call at run time) */
        int st = rule_generated(p, r, RULE_REPEAT, off);
        if (st < 0) return;
        int a0 = alt_new(p, (uint32_t)st);
        if (a0 < 0 || !push(p, (uint32_t)st, (uint32_t)a0, item.type, item.value) ||
            !push(p, (uint32_t)st, (uint32_t)a0, GRAM_RULE, (uint32_t)st) || alt_new(p, (uint32_t)st) < 0)
            return;
        push(p, r, a, GRAM_RULE, (uint32_t)st);
        return;
    }
    /* opt_1 ::= item | ε ;  opt_k ::= item opt_{k-1} | ε */
    int prev = -1;
    for (uint32_t k = min; k < max && !p->failed; k++) {
        int o = rule_generated(p, r, RULE_REPEAT, off);
        if (o < 0) return;
        int a0 = alt_new(p, (uint32_t)o);
        if (a0 < 0 || !push(p, (uint32_t)o, (uint32_t)a0, item.type, item.value)) return;
        if (prev >= 0 && !push(p, (uint32_t)o, (uint32_t)a0, GRAM_RULE, (uint32_t)prev)) return;
        if (alt_new(p, (uint32_t)o) < 0) return;
        prev = o;
    }
    if (prev >= 0) push(p, r, a, GRAM_RULE, (uint32_t)prev);
}

static void parse_postfix(parser *p, uint32_t r, uint32_t a, uint32_t item_start) {
    int c = peek(p);
    size_t off = p->pos;
    uint32_t min, max;
    if (c == '*') {
        min = 0;
        max = UINT32_MAX;
        p->pos++;
    } else if (c == '+') {
        min = 1;
        max = UINT32_MAX;
        p->pos++;
    } else if (c == '?') {
        min = 0;
        max = 1;
        p->pos++;
    } else if (c == '{') {
        p->pos++;
        skip_space(p, false);
        if (!parse_uint(p, &min)) return;
        skip_space(p, false);
        max = min;
        if (peek(p) == ',') {
            p->pos++;
            skip_space(p, false);
            max = UINT32_MAX;
            if (peek(p) != '}' && !parse_uint(p, &max)) return;
            skip_space(p, false);
        }
        if (peek(p) != '}') {
            fail_at(p, p->pos, "expected '}' closing the repetition");
            return;
        }
        p->pos++;
        if (max < min) {
            fail_at(p, off, "repetition {%u,%u} has max below min", min, max);
            return;
        }
    } else {
        return;
    }
    apply_repeat(p, r, a, item_start, min, max, off);
    c = peek(p);
    if (!p->failed && (c == '*' || c == '+' || c == '?' || c == '{'))
        fail_at(p, p->pos, "repetition operator applied to a repetition (use parentheses)");
}

static void parse_sequence(parser *p, uint32_t r, uint32_t a, bool nested) {
    while (!p->failed) {
        skip_space(p, nested);
        int c = peek(p);
        if (c < 0 || c == '|' || c == ')') return;
        if (c == '\n') {
            if (!continues_rule(p)) return;
            skip_space(p, true);
            continue;
        }
        uint32_t item_start = p->rules[r].alts[a].n;
        size_t start = p->pos;
        if (c == '"') {
            p->pos++;
            while (!p->failed) {
                if (p->pos >= p->len || p->src[p->pos] == '\n') {
                    fail_at(p, start, "unterminated string literal");
                    return;
                }
                if (p->src[p->pos] == '"') {
                    p->pos++;
                    break;
                }
                long cp = parse_char(p);
                if (cp < 0 || !push(p, r, a, GRAM_CHAR, (uint32_t)cp)) return;
            }
        } else if (c == '[') {
            int cls = parse_class(p);
            if (cls < 0 || !push(p, r, a, GRAM_CLASS, (uint32_t)cls)) return;
        } else if (c == '.') {
            p->pos++;
            int cls = class_add(p, &(gram_range){0, 0}, 0, true, start);
            if (cls < 0 || !push(p, r, a, GRAM_CLASS, (uint32_t)cls)) return;
        } else if (c == '(') {
            if (++p->nesting > GRAM_MAX_NESTING) {
                fail_at(p, start, "parentheses nested deeper than %d", GRAM_MAX_NESTING);
                return;
            }
            p->pos++;
            int g = rule_generated(p, r, RULE_GROUP, start);
            if (g < 0) return;
            skip_space(p, true);
            parse_alternatives(p, (uint32_t)g, true);
            if (p->failed) return;
            if (peek(p) != ')') {
                fail_at(p, start, "unclosed '('");
                return;
            }
            p->pos++;
            p->nesting--;
            if (!push(p, r, a, GRAM_RULE, (uint32_t)g)) return;
        } else if (is_name_char(c)) {
            size_t n = name_len_at(p, p->pos);
            int ref = rule_find_or_add(p, p->src + p->pos, n, p->pos);
            if (ref < 0) return;
            p->pos += n;
            if (!push(p, r, a, GRAM_RULE, (uint32_t)ref)) return;
        } else {
            fail_at(p, start, "unexpected character '%c'", c >= 32 && c < 127 ? c : '?');
            return;
        }
        parse_postfix(p, r, a, item_start);
    }
}

static void parse_alternatives(parser *p, uint32_t r, bool nested) {
    while (!p->failed) {
        int a = alt_new(p, r);
        if (a < 0) return;
        parse_sequence(p, r, (uint32_t)a, nested);
        if (p->failed) return;
        skip_space(p, nested);
        if (peek(p) != '|') return;
        p->pos++;
        skip_space(p, true);
    }
}

static void parse_grammar(parser *p) {
    skip_space(p, true);
    while (!p->failed && p->pos < p->len) {
        size_t start = p->pos;
        size_t n = name_len_at(p, p->pos);
        if (n == 0) {
            fail_at(p, start, "expected a rule name");
            return;
        }
        int r = rule_find_or_add(p, p->src + p->pos, n, p->pos);
        if (r < 0) return;
        p->pos += n;
        skip_space(p, false);
        if (!(p->len - p->pos >= 3 && !memcmp(p->src + p->pos, "::=", 3))) {
            fail_at(p, p->pos, "expected '::=' after rule name '%s'", p->rules[r].name);
            return;
        }
        p->pos += 3;
        if (p->rules[r].defined) {
            fail_at(p, start, "rule '%s' is defined twice", p->rules[r].name);
            return;
        }
        p->rules[r].defined = true;
        p->rules[r].def_off = start;
        skip_space(p, false);
        parse_alternatives(p, (uint32_t)r, false);
        if (p->failed) return;
        if (peek(p) == ')') {
            fail_at(p, p->pos, "unmatched ')'");
            return;
        }
        skip_space(p, true);
    }
}

void gram_program_free(gram_program *g) {
    if (!g) return;
    free(g->elems);
    free(g->alt_start);
    free(g->rule_alt_begin);
    free(g->ranges);
    free(g->classes);
    free(g->open_flags);
    memset(g, 0, sizeof *g);
}

static void parser_free(parser *p) {
    for (uint32_t i = 0; i < p->n_rules; i++) {
        for (uint32_t a = 0; a < p->rules[i].n_alts; a++) free(p->rules[i].alts[a].v);
        free(p->rules[i].alts);
        free(p->rules[i].name);
    }
    free(p->rules);
    free(p->name_tab);
    free(p->ranges);
    free(p->classes);
}

static bool name_ends_with(const prule *r, const char *suffix) {
    size_t n = strlen(suffix);
    return r->kind == RULE_NAMED && r->name_len > n && !memcmp(r->name + r->name_len - n, suffix, n);
}

/* Rules named *-unique-items / *-unique-keys (json_schema.c writes them) mark the '[' / '{' that
 * opens each of their alternatives: the semantic checks of grammar_json.c start there. */
static bool mark_json_openers(parser *p, gram_program *g, uint32_t n_elems) {
    for (uint32_t i = 0; i < p->n_rules; i++) {
        uint8_t flag = name_ends_with(&p->rules[i], GRAM_SUFFIX_UNIQUE_ITEMS) ? GRAM_FLAG_UNIQUE_ITEMS
                       : name_ends_with(&p->rules[i], GRAM_SUFFIX_UNIQUE_KEYS) ? GRAM_FLAG_UNIQUE_KEYS
                                                                               : 0;
        if (!flag) continue;
        if (!g->open_flags && !(g->open_flags = calloc(n_elems, 1))) {
            fail_oom(p);
            return false;
        }
        uint32_t want = flag == GRAM_FLAG_UNIQUE_ITEMS ? '[' : '{';
        for (uint32_t a = g->rule_alt_begin[i]; a < g->rule_alt_begin[i + 1]; a++) {
            const gram_elem *e = &g->elems[g->alt_start[a]];
            if (e->type == GRAM_CHAR && e->value == want) g->open_flags[g->alt_start[a]] |= flag;
        }
    }
    return true;
}

int gram_parse(const char *src, size_t len, gram_guard *guard, gram_program *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    gram_guard defaults;
    if (!guard) {
        gram_guard_init(&defaults, NULL);
        guard = &defaults;
    }
    parser p = {.src = src, .len = len, .err = err, .err_len = err_len, .guard = guard, .code = SLM_GRAMMAR_INVALID};
    if (!gram_guard_poll(guard)) fail_stopped(&p);
    if (!p.failed && memchr(src, 0, len)) fail_at(&p, (size_t)((const char *)memchr(src, 0, len) - src), "NUL byte in grammar");
    if (!p.failed) parse_grammar(&p);
    int root = -1;
    for (uint32_t i = 0; !p.failed && i < p.n_rules; i++) {
        if (!p.rules[i].defined) fail_at(&p, p.rules[i].ref_off, "undefined rule '%s'", p.rules[i].name);
        if (p.rules[i].kind == RULE_NAMED && !strcmp(p.rules[i].name, "root")) root = (int)i;
    }
    if (!p.failed && root < 0) fail_at(&p, p.len, "the grammar has no 'root' rule");
    if (p.failed) {
        parser_free(&p);
        return p.code;
    }
    /* flatten */
    uint32_t n_alts = 0;
    uint64_t n_elems = 0;
    for (uint32_t i = 0; i < p.n_rules; i++) {
        n_alts += p.rules[i].n_alts;
        for (uint32_t a = 0; a < p.rules[i].n_alts; a++) n_elems += p.rules[i].alts[a].n + 1;
    }
    gram_program *g = out;
    g->elems = malloc((n_elems + 1) * sizeof *g->elems);
    g->alt_start = malloc(((size_t)n_alts + 1) * sizeof *g->alt_start);
    g->rule_alt_begin = malloc(((size_t)p.n_rules + 1) * sizeof *g->rule_alt_begin);
    bool *nullable = calloc(p.n_rules, 1), *productive = calloc(p.n_rules, 1);
    if (!g->elems || !g->alt_start || !g->rule_alt_begin || !nullable || !productive) {
        fail_oom(&p);
        goto fail;
    }
    uint32_t ai = 0, ei = 0;
    for (uint32_t i = 0; i < p.n_rules; i++) {
        g->rule_alt_begin[i] = ai;
        for (uint32_t a = 0; a < p.rules[i].n_alts; a++) {
            g->alt_start[ai++] = ei;
            if (p.rules[i].alts[a].n)
                memcpy(&g->elems[ei], p.rules[i].alts[a].v, p.rules[i].alts[a].n * sizeof(gram_elem));
            ei += p.rules[i].alts[a].n;
            g->elems[ei++] = (gram_elem){GRAM_END, 0};
        }
    }
    g->elems[ei] = (gram_elem){GRAM_END, 0};
    g->rule_alt_begin[p.n_rules] = ai;
    if (!mark_json_openers(&p, g, (uint32_t)n_elems + 1)) goto fail;
    g->n_elems = ei;
    g->n_rules = p.n_rules;
    g->root = (uint32_t)root;
    g->ranges = p.ranges;
    g->n_ranges = p.n_ranges;
    g->classes = p.classes;
    g->n_classes = p.n_classes;
    p.ranges = NULL;
    p.classes = NULL;

    int fix = gram_fixpoint(g, nullable, false, p.guard);
    if (fix == 0) fix = gram_fixpoint(g, productive, true, p.guard);
    if (fix == GRAM_CHECK_STOPPED) fail_stopped(&p);
    if (fix == GRAM_CHECK_OOM) fail_oom(&p);
    if (fix) goto fail;
    for (uint32_t i = 0; i < g->n_rules && !p.failed; i++)
        if (!productive[i])
            fail_at(&p, p.rules[i].def_off, "rule '%s' can never finish: every alternative recurses into itself",
                    p.rules[i].name);
    if (!p.failed) {
        long lr = gram_find_left_recursion(g, nullable, p.guard);
        if (lr == GRAM_CHECK_STOPPED) {
            fail_stopped(&p);
        } else if (lr == GRAM_CHECK_OOM) {
            fail_oom(&p);
        } else if (lr >= 0) {
            if (p.rules[lr].kind == RULE_REPEAT)
                fail_at(&p, p.rules[lr].def_off, "repeated expression can match the empty string (endless loop)");
            else
                fail_at(&p, p.rules[lr].def_off, "rule '%s' is left-recursive", p.rules[lr].name);
        }
    }
    if (p.failed) goto fail;
    free(nullable);
    free(productive);
    parser_free(&p);
    return 0;
fail:
    free(nullable);
    free(productive);
    parser_free(&p);
    gram_program_free(g);
    return p.code;
}
