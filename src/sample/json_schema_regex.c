/* JSON Schema → GBNF: the `pattern` regex subset (docs/grammar.md) compiled to a grammar for the
 * content of a JSON string. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/json_schema_impl.h"

/* A parsed regex character set as sorted code point ranges. */
typedef struct cpset {
    uint32_t lo[128], hi[128];
    int n;
    bool overflow;
} cpset;

static void cpset_add(cpset *s, uint32_t lo, uint32_t hi) {
    if (s->n >= 128) {
        s->overflow = true;
        return;
    }
    s->lo[s->n] = lo;
    s->hi[s->n] = hi;
    s->n++;
}

static void cpset_normalise(cpset *s) {
    for (int i = 1; i < s->n; i++)
        for (int j = i; j > 0 && s->lo[j - 1] > s->lo[j]; j--) {
            uint32_t t = s->lo[j];
            s->lo[j] = s->lo[j - 1];
            s->lo[j - 1] = t;
            t = s->hi[j];
            s->hi[j] = s->hi[j - 1];
            s->hi[j - 1] = t;
        }
    int m = 0;
    for (int i = 0; i < s->n; i++) {
        if (m && s->lo[i] <= s->hi[m - 1] + 1) {
            if (s->hi[i] > s->hi[m - 1]) s->hi[m - 1] = s->hi[i];
        } else {
            s->lo[m] = s->lo[i];
            s->hi[m] = s->hi[i];
            m++;
        }
    }
    s->n = m;
}

static void cpset_complement(cpset *s) {
    cpset_normalise(s);
    cpset r = {0};
    uint32_t next = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->lo[i] > next) cpset_add(&r, next, s->lo[i] - 1);
        next = s->hi[i] + 1;
    }
    if (next <= 0x10FFFF) cpset_add(&r, next, 0x10FFFF);
    r.overflow |= s->overflow;
    *s = r;
}

/* Removes what a JSON string cannot hold unescaped: control characters, '"' and '\'. */
static void cpset_remove_json_specials(cpset *s) {
    cpset bad = {0};
    cpset_add(&bad, 0, 0x1F);
    cpset_add(&bad, '"', '"');
    cpset_add(&bad, '\\', '\\');
    cpset_complement(&bad);
    cpset r = {0};
    cpset_normalise(s);
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < bad.n; j++) {
            uint32_t lo = s->lo[i] > bad.lo[j] ? s->lo[i] : bad.lo[j];
            uint32_t hi = s->hi[i] < bad.hi[j] ? s->hi[i] : bad.hi[j];
            if (lo <= hi) cpset_add(&r, lo, hi);
        }
    r.overflow |= s->overflow;
    *s = r;
}

static void put_cp_escaped(slm_buf *b, uint32_t cp) {
    if (cp < 0x20 || cp == '"' || cp == '\\' || cp == ']' || cp == '[' || cp == '-' || cp == '^' || cp >= 0x7F)
        slm_buf_printf(b, cp <= 0xFFFF ? "\\u%04X" : "\\U%08X", cp);
    else
        slm_buf_printf(b, "%c", (char)cp);
}

typedef struct rx {
    conv *c;
    const char *s;
    size_t pos, len;
    int depth;
} rx;

static void rx_fail(rx *r, const char *what) {
    js_fail(r->c, "json schema: pattern: unsupported %s at offset %zu (see docs/grammar.md for the regex subset)", what,
         r->pos);
}

static long rx_utf8(rx *r) {
    const unsigned char *p = (const unsigned char *)r->s + r->pos;
    size_t left = r->len - r->pos;
    if (p[0] < 0x80) {
        r->pos++;
        return p[0];
    }
    int n = (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || left < (size_t)n) return -1;
    uint32_t cp = p[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) cp = (cp << 6) | (p[i] & 0x3F);
    r->pos += (size_t)n;
    return cp;
}

static void add_shorthand(cpset *set, char k) {
    cpset t = {0};
    char lower = (char)(k | 0x20);
    if (lower == 'd') {
        cpset_add(&t, '0', '9');
    } else if (lower == 'w') {
        cpset_add(&t, '0', '9');
        cpset_add(&t, 'A', 'Z');
        cpset_add(&t, 'a', 'z');
        cpset_add(&t, '_', '_');
    } else { /* s: PCRE's whitespace set; only the space survives JSON-special removal */
        cpset_add(&t, '\t', '\r');
        cpset_add(&t, ' ', ' ');
    }
    if (k != lower) cpset_complement(&t);
    for (int i = 0; i < t.n; i++) cpset_add(set, t.lo[i], t.hi[i]);
}

/* One escaped character (after '\'); -1 for a class shorthand added to `set` (if given), -2 error. */
static long rx_escape(rx *r, cpset *set) {
    if (r->pos >= r->len) {
        rx_fail(r, "trailing backslash");
        return -2;
    }
    char e = r->s[r->pos++];
    switch (e) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        if (!set) return -3;
        add_shorthand(set, e);
        return -1;
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'v': return '\v';
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
            r->pos--;
            rx_fail(r, "escape");
            return -2;
        }
        return (unsigned char)e;
    }
}

static void put_cpset(conv *c, slm_buf *b, cpset *set) {
    cpset_remove_json_specials(set);
    if (set->overflow) {
        js_fail(c, "json schema: pattern: character class too complex");
        return;
    }
    if (set->n == 0) {
        js_fail(c, "json schema: pattern: a character class matches no character allowed in a JSON string");
        return;
    }
    slm_buf_puts(b, "[");
    for (int i = 0; i < set->n; i++) {
        put_cp_escaped(b, set->lo[i]);
        if (set->hi[i] != set->lo[i]) {
            slm_buf_puts(b, "-");
            put_cp_escaped(b, set->hi[i]);
        }
    }
    slm_buf_puts(b, "]");
}

/* A literal code point as the JSON-encoded text of that character. */
static void put_json_char(slm_buf *b, uint32_t cp) {
    json_t *s = NULL;
    char utf8[5];
    int n;
    if (cp < 0x80) utf8[0] = (char)cp, n = 1;
    else if (cp < 0x800) utf8[0] = (char)(0xC0 | (cp >> 6)), utf8[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        utf8[0] = (char)(0xE0 | (cp >> 12)), utf8[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), utf8[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        utf8[0] = (char)(0xF0 | (cp >> 18)), utf8[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        utf8[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), utf8[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    s = json_stringn(utf8, (size_t)n);
    char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    if (t && strlen(t) >= 2) js_put_literal(b, t + 1, strlen(t) - 2);
    else b->oom = true;
    free(t);
    json_decref(s);
}

static void rx_alt(rx *r, slm_buf *b);

static void rx_class(rx *r, slm_buf *b) {
    r->pos++; /* '[' */
    cpset set = {0};
    bool negate = false;
    if (r->pos < r->len && r->s[r->pos] == '^') {
        negate = true;
        r->pos++;
    }
    bool first = true;
    while (!r->c->failed) {
        if (r->pos >= r->len) {
            rx_fail(r, "unterminated class");
            return;
        }
        char ch = r->s[r->pos];
        if (ch == ']' && !first) {
            r->pos++;
            break;
        }
        first = false;
        if (ch == '[' && r->pos + 1 < r->len && r->s[r->pos + 1] == ':') {
            rx_fail(r, "POSIX class");
            return;
        }
        long lo;
        if (ch == '\\') {
            r->pos++;
            lo = rx_escape(r, &set);
            if (lo == -2) return;
            if (lo == -1) continue;
        } else {
            lo = rx_utf8(r);
            if (lo < 0) {
                rx_fail(r, "byte (invalid UTF-8)");
                return;
            }
        }
        long hi = lo;
        if (r->pos + 1 < r->len && r->s[r->pos] == '-' && r->s[r->pos + 1] != ']') {
            r->pos++;
            if (r->s[r->pos] == '\\') {
                r->pos++;
                hi = rx_escape(r, NULL);
                if (hi < 0) {
                    if (hi == -3) rx_fail(r, "shorthand as a range end");
                    return;
                }
            } else {
                hi = rx_utf8(r);
            }
            if (hi < lo) {
                rx_fail(r, "reversed range");
                return;
            }
        }
        cpset_add(&set, (uint32_t)lo, (uint32_t)hi);
    }
    if (negate) cpset_complement(&set);
    put_cpset(r->c, b, &set);
}

static bool rx_uint(rx *r, unsigned *out) {
    size_t start = r->pos;
    unsigned long v = 0;
    while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') {
        v = v * 10 + (unsigned long)(r->s[r->pos++] - '0');
        if (v > 1000) {
            rx_fail(r, "repetition count above 1000");
            return false;
        }
    }
    *out = (unsigned)v;
    return r->pos > start;
}

static void rx_concat(rx *r, slm_buf *b) {
    slm_buf_puts(b, "(\"\"");
    while (!r->c->failed && r->pos < r->len) {
        char ch = r->s[r->pos];
        if (ch == '|' || ch == ')') break;
        slm_buf atom = {0};
        if (ch == '(') {
            if (++r->depth > 32) {
                rx_fail(r, "nesting depth");
                free(atom.s);
                return;
            }
            r->pos++;
            if (r->pos < r->len && r->s[r->pos] == '?') {
                if (r->pos + 1 < r->len && r->s[r->pos + 1] == ':') {
                    r->pos += 2;
                } else {
                    rx_fail(r, "group syntax (lookaround, named group or flags)");
                    free(atom.s);
                    return;
                }
            }
            rx_alt(r, &atom);
            if (r->pos >= r->len || r->s[r->pos] != ')') {
                if (!r->c->failed) rx_fail(r, "unclosed group");
                free(atom.s);
                return;
            }
            r->pos++;
            r->depth--;
        } else if (ch == '[') {
            rx_class(r, &atom);
        } else if (ch == '.') {
            r->pos++;
            cpset set = {0};
            cpset_add(&set, '\n', '\n');
            cpset_complement(&set);
            put_cpset(r->c, &atom, &set);
        } else if (ch == '\\') {
            r->pos++;
            cpset set = {0};
            long cp = rx_escape(r, &set);
            if (cp == -1) put_cpset(r->c, &atom, &set);
            else if (cp >= 0) put_json_char(&atom, (uint32_t)cp);
        } else if (ch == '^' || ch == '$') {
            rx_fail(r, "anchor inside the pattern (only a leading ^ and a trailing $ are supported)");
        } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            rx_fail(r, "quantifier with nothing to repeat");
        } else {
            long cp = rx_utf8(r);
            if (cp < 0) rx_fail(r, "byte (invalid UTF-8)");
            else put_json_char(&atom, (uint32_t)cp);
        }
        if (r->c->failed) {
            free(atom.s);
            return;
        }
        /* quantifier */
        char q = r->pos < r->len ? r->s[r->pos] : 0;
        slm_buf_puts(b, " (");
        slm_buf_append(b, atom.s ? atom.s : "\"\"", atom.s ? atom.len : 2);
        slm_buf_puts(b, ")");
        free(atom.s);
        if (q == '*' || q == '+' || q == '?') {
            r->pos++;
            slm_buf_printf(b, "%c", q);
        } else if (q == '{') {
            size_t save = r->pos;
            r->pos++;
            unsigned m = 0, n = 0;
            if (!rx_uint(r, &m)) {
                if (!r->c->failed) {
                    r->pos = save;
                    rx_fail(r, "'{' (escape it as \\{)");
                }
                return;
            }
            n = m;
            bool unbounded = false;
            if (r->pos < r->len && r->s[r->pos] == ',') {
                r->pos++;
                if (!rx_uint(r, &n)) {
                    if (r->c->failed) return;
                    unbounded = true;
                }
            }
            if (r->pos >= r->len || r->s[r->pos] != '}' || (!unbounded && n < m)) {
                rx_fail(r, "repetition syntax");
                return;
            }
            r->pos++;
            if (unbounded) slm_buf_printf(b, "{%u,}", m);
            else slm_buf_printf(b, "{%u,%u}", m, n);
        } else {
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == '?') r->pos++; /* lazy: same language */
        if (r->pos < r->len && (r->s[r->pos] == '+' || r->s[r->pos] == '*' || r->s[r->pos] == '{')) {
            rx_fail(r, "possessive or stacked quantifier");
            return;
        }
    }
    slm_buf_puts(b, ")");
}

static void rx_alt(rx *r, slm_buf *b) {
    slm_buf_puts(b, "(");
    rx_concat(r, b);
    while (!r->c->failed && r->pos < r->len && r->s[r->pos] == '|') {
        r->pos++;
        slm_buf_puts(b, " | ");
        rx_concat(r, b);
    }
    slm_buf_puts(b, ")");
}

void js_gen_pattern(conv *c, const char *pat, size_t len, slm_buf *b) {
    rx r = {.c = c, .s = pat, .len = len};
    bool anchored_start = len > 0 && pat[0] == '^';
    bool anchored_end = len > 0 && pat[len - 1] == '$' && (len < 2 || pat[len - 2] != '\\');
    if (anchored_start) r.pos = 1;
    if (anchored_end) r.len = len - 1;
    slm_buf_puts(b, "\"\\\"\" ");
    if (!anchored_start) slm_buf_puts(b, "json-char* ");
    rx_alt(&r, b);
    if (!c->failed && r.pos < r.len) rx_fail(&r, "')' without '('");
    if (!anchored_end) slm_buf_puts(b, " json-char*");
    slm_buf_puts(b, " \"\\\"\"");
}
