/* JSON Schema → GBNF. Every schema node becomes one rule; $ref targets are memoised by node so
 * recursive schemas become recursive rules. The generated language is always a subset of what the
 * schema accepts (compact JSON, no free whitespace), so every sentence validates; where an exact
 * grammar is impractical the subset is narrower (documented in docs/grammar.md) rather than wider. */
#include "sample/json_schema.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/grammar_impl.h"
#include "sample/json_schema_impl.h"
#include "sample/json_validate.h"
#include "util/buf.h"
#include "util/err.h"

#define MAX_NESTING 64
#define MAX_COUNT 10000        /* largest repetition count emitted for lengths and item counts */

/* Messages quote keywords, keys and formats from the schema, which may hold control characters:
 * the message is escaped so it stays one line. */
__attribute__((format(printf, 2, 0))) static void vfail(conv *c, const char *fmt, va_list ap) {
    if (c->failed) return;
    c->failed = true;
    if (!c->code) c->code = SLM_GRAMMAR_INVALID;
    if (!c->err || !c->err_len) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    slm_json_error_line(line, c->err, c->err_len);
}

__attribute__((format(printf, 2, 3))) static void fail(conv *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(c, fmt, ap);
    va_end(ap);
}

void js_fail(conv *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(c, fmt, ap);
    va_end(ap);
}

/* GBNF string literal for raw bytes. */
static void put_literal(slm_buf *b, const char *s, size_t n) {
    slm_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            slm_buf_append(b, e, 2);
        } else if (ch < 0x20 || ch == 0x7F) {
            slm_buf_printf(b, "\\x%02X", ch);
        } else {
            slm_buf_append(b, (const char *)&ch, 1);
        }
    }
    slm_buf_append(b, "\"", 1);
}

void js_put_literal(slm_buf *b, const char *s, size_t n) { put_literal(b, s, n); }

/* Literal for a JSON value in compact form. */
static bool put_json_literal(conv *c, slm_buf *b, const json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        fail(c, "json schema: cannot serialise an enum/const value");
        return false;
    }
    put_literal(b, text, strlen(text));
    free(text);
    return true;
}

static void new_rule_name(conv *c, char name[32]) { snprintf(name, 32, "s%d", ++c->n_rules); }

/* Polls the guard (cancel, deadline); false (failed) when the conversion must stop. */
static bool keep_going(conv *c) {
    if (c->failed) return false;
    if (gram_guard_ok(c->guard)) return true;
    c->code = c->guard->status;
    fail(c, "json schema: %s", gram_guard_message(c->guard));
    return false;
}

static size_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

/* The memoised rule of schema node s, or NULL. */
static const char *ref_find(const conv *c, const json_t *s) {
    if (!c->ref_tab_cap) return NULL;
    for (size_t slot = ptr_hash(s) & (c->ref_tab_cap - 1); c->ref_tab[slot]; slot = (slot + 1) & (c->ref_tab_cap - 1))
        if (c->refs[c->ref_tab[slot] - 1].node == s) return c->refs[c->ref_tab[slot] - 1].name;
    return NULL;
}

static bool ref_add(conv *c, const json_t *s, const char *name) {
    if (!slm_grow((void **)&c->refs, &c->cap_refs, c->n_refs + 1, sizeof *c->refs, 32)) return false;
    if ((c->n_refs + 1) * 2 > c->ref_tab_cap) {
        size_t cap = c->ref_tab_cap ? c->ref_tab_cap * 2 : 64;
        uint32_t *tab = calloc(cap, sizeof *tab);
        if (!tab) return false;
        for (size_t i = 0; i < c->n_refs; i++) {
            size_t slot = ptr_hash(c->refs[i].node) & (cap - 1);
            while (tab[slot]) slot = (slot + 1) & (cap - 1);
            tab[slot] = (uint32_t)i + 1;
        }
        free(c->ref_tab);
        c->ref_tab = tab;
        c->ref_tab_cap = cap;
    }
    size_t slot = ptr_hash(s) & (c->ref_tab_cap - 1);
    while (c->ref_tab[slot]) slot = (slot + 1) & (c->ref_tab_cap - 1);
    c->ref_tab[slot] = (uint32_t)c->n_refs + 1;
    c->refs[c->n_refs].node = s;
    snprintf(c->refs[c->n_refs++].name, sizeof c->refs->name, "%s", name);
    return true;
}

static void emit_rule(conv *c, const char *name, const slm_buf *body) {
    slm_buf_printf(&c->out, "%s ::= ", name);
    slm_buf_append(&c->out, body->s ? body->s : "\"\"", body->s ? body->len : 2);
    slm_buf_puts(&c->out, "\n");
    if (body->oom) c->out.oom = true;
}

static const char *const known_keywords[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "items", "minItems", "maxItems",
    "anyOf", "oneOf", "format", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "$ref", "$defs", "definitions", "uniqueItems", "multipleOf", "minProperties", "maxProperties",
    "propertyNames", "patternProperties", "prefixItems", "contains", "minContains", "maxContains", "dependentRequired",
    "if", "then", "else", "not",
    /* annotations: no effect on validity */
    "title", "description", "$schema", "$id", "$comment", "examples", "default", NULL};

static bool is_annotation(const char *k) {
    return !strcmp(k, "title") || !strcmp(k, "description") || !strcmp(k, "$schema") || !strcmp(k, "$id") ||
           !strcmp(k, "$comment") || !strcmp(k, "examples") || !strcmp(k, "default") || !strcmp(k, "$defs") ||
           !strcmp(k, "definitions");
}

/* ---------- strings: formats and patterns ---------- */

static const char *format_rule(const char *fmt) {
    if (!strcmp(fmt, "date")) return "fmt-date";
    if (!strcmp(fmt, "time")) return "fmt-time";
    if (!strcmp(fmt, "date-time")) return "fmt-date-time";
    if (!strcmp(fmt, "email")) return "fmt-email";
    if (!strcmp(fmt, "uuid")) return "fmt-uuid";
    return NULL;
}

static const char *const format_rules =
    "fmt-date ::= [0-9]{4} \"-\" ((\"0\" [13578] | \"1\" [02]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"
    " | (\"0\" [469] | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))\n"
    "fmt-time ::= ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})?"
    " (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])\n"
    "fmt-date-time ::= fmt-date \"T\" fmt-time\n"
    "fmt-email ::= [a-zA-Z0-9_+-]{1,32} (\".\" [a-zA-Z0-9_+-]{1,32}){0,3} \"@\" fmt-label (\".\" fmt-label){1,3}\n"
    "fmt-label ::= [a-zA-Z0-9] ([a-zA-Z0-9-]{0,22} [a-zA-Z0-9])?\n" /* keeps the longest address at 231 <= 254 chars */
    "fmt-uuid ::= fmt-hex{8} \"-\" fmt-hex{4} \"-\" fmt-hex{4} \"-\" fmt-hex{4} \"-\" fmt-hex{12}\n"
    "fmt-hex ::= [0-9a-fA-F]\n";

static const char *const json_rules =
    "json-value ::= json-object-unique-keys | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"\n"
    "json-object-unique-keys ::= \"{\" (json-string \":\" json-value (\",\" json-string \":\" json-value)*)? \"}\"\n"
    "json-array ::= \"[\" (json-value (\",\" json-value)*)? \"]\"\n"
    "json-string ::= \"\\\"\" json-char* \"\\\"\"\n"
    "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" [\"\\\\bfnrt]\n"
    "json-number ::= json-integer (\".\" [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?\n"
    "json-integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n";


/* ---------- schema nodes ---------- */

static bool gen_schema(conv *c, const json_t *s, char name[32]);

static long long get_count(conv *c, const json_t *s, const char *key, long long dflt) {
    const json_t *v = json_object_get(s, key);
    if (!v) return dflt;
    double d = json_number_value(v);
    if (!json_is_number(v) || d < 0 || floor(d) != d) {
        fail(c, "json schema: '%s' must be a non-negative integer", key);
        return dflt;
    }
    return d > 1e15 ? (long long)1e15 : (long long)d;
}

/* minLength/maxLength or minItems/maxItems: *mx is -1 when unbounded and capped at MAX_COUNT
 * (fewer than allowed is still valid); false (failed) if inconsistent or *mn is too large to emit. */
static bool get_count_range(conv *c, const json_t *s, const char *min_key, const char *max_key, long long *mn,
                            long long *mx) {
    *mn = get_count(c, s, min_key, 0);
    *mx = get_count(c, s, max_key, -1);
    if (c->failed) return false;
    if (*mx >= 0 && *mx < *mn) {
        fail(c, "json schema: %s is below %s", max_key, min_key);
        return false;
    }
    if (*mn > MAX_COUNT) {
        fail(c, "json schema: %s above %d is not supported", min_key, MAX_COUNT);
        return false;
    }
    if (*mx > MAX_COUNT) *mx = MAX_COUNT;
    return true;
}

static void gen_string(conv *c, const json_t *s, slm_buf *b) {
    const json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    bool has_len = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if ((fmt != NULL) + (pat != NULL) + has_len > 1) {
        fail(c, "json schema: combining %s is not supported", fmt && pat ? "'format' with 'pattern'"
                                                              : fmt     ? "'format' with 'minLength'/'maxLength'"
                                                                        : "'pattern' with 'minLength'/'maxLength'");
        return;
    }
    if (fmt) {
        const char *rule = json_is_string(fmt) ? format_rule(json_string_value(fmt)) : NULL;
        if (!rule) {
            fail(c, "json schema: unsupported string format '%s' (supported: date, time, date-time, email, uuid)",
                 json_is_string(fmt) ? json_string_value(fmt) : "?");
            return;
        }
        slm_buf_printf(b, "\"\\\"\" %s \"\\\"\"", rule);
        return;
    }
    if (pat) {
        if (!json_is_string(pat)) {
            fail(c, "json schema: 'pattern' must be a string");
            return;
        }
        js_gen_pattern(c, json_string_value(pat), json_string_length(pat), b);
        return;
    }
    long long mn, mx;
    if (!get_count_range(c, s, "minLength", "maxLength", &mn, &mx)) return;
    if (mn == 0 && mx < 0) {
        slm_buf_puts(b, "json-string");
        return;
    }
    if (mx < 0) slm_buf_printf(b, "\"\\\"\" json-char{%lld,} \"\\\"\"", mn);
    else slm_buf_printf(b, "\"\\\"\" json-char{%lld,%lld} \"\\\"\"", mn, mx);
}

/* A node owned by the conversion (built from the schema, freed with it). */
static json_t *own(conv *c, json_t *node) {
    if (!node) {
        fail(c, "json schema: out of memory");
        return NULL;
    }
    if (!c->derived) c->derived = json_array();
    if (!c->derived || json_array_append_new(c->derived, node)) {
        fail(c, "json schema: out of memory");
        return NULL;
    }
    return node;
}

static const json_t *deref(conv *c, const json_t *s) {
    for (int i = 0; i < 32 && json_is_object(s); i++) {
        const json_t *r = json_object_get(s, "$ref");
        if (!json_is_string(r)) return s;
        const json_t *t = slm_json_pointer(c->root, json_string_value(r));
        if (!t) return s;
        s = t;
    }
    return s;
}

/* The values a schema allows when they are few and known (const, enum, boolean, null, a small
 * integer range): a new JSON array, or NULL. */
static json_t *finite_values(conv *c, const json_t *s) {
    s = deref(c, s);
    if (!json_is_object(s)) return NULL;
    const json_t *v, *t = json_object_get(s, "type");
    json_t *out = json_array();
    if (!out) return NULL;
    if ((v = json_object_get(s, "const"))) {
        json_array_append(out, (json_t *)v);
    } else if ((v = json_object_get(s, "enum")) && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) json_array_append(out, json_array_get(v, i));
    } else if (json_is_string(t) && !strcmp(json_string_value(t), "boolean")) {
        json_array_append_new(out, json_true());
        json_array_append_new(out, json_false());
    } else if (json_is_string(t) && !strcmp(json_string_value(t), "null")) {
        json_array_append_new(out, json_null());
    } else if (json_is_string(t) && !strcmp(json_string_value(t), "integer") && json_is_number(json_object_get(s, "minimum")) &&
               json_is_number(json_object_get(s, "maximum"))) {
        double lo = ceil(json_number_value(json_object_get(s, "minimum"))),
               hi = floor(json_number_value(json_object_get(s, "maximum")));
        if (hi - lo > 1000) {
            json_decref(out);
            return NULL;
        }
        for (double x = lo; x <= hi; x++) json_array_append_new(out, json_integer((json_int_t)x));
    } else {
        json_decref(out);
        return NULL;
    }
    /* keep the ones the whole schema accepts (bounds, multipleOf, not, ...), each once */
    json_t *kept = json_array();
    for (size_t i = 0; kept && i < json_array_size(out); i++) {
        json_t *x = json_array_get(out, i);
        bool seen = false;
        for (size_t j = 0; j < json_array_size(kept) && !seen; j++) seen = slm_json_equal(json_array_get(kept, j), x);
        if (!seen && slm_json_valid_node(c->root, s, x)) json_array_append(kept, x);
    }
    json_decref(out);
    return kept;
}

/* {"enum": values} as an owned node, or the schema 'false' when values is empty. */
static const json_t *enum_node(conv *c, json_t *values) {
    if (!values) return NULL;
    if (json_array_size(values) == 0) {
        json_decref(values);
        return own(c, json_false());
    }
    json_t *n = json_object();
    if (n) json_object_set_new(n, "enum", values);
    else json_decref(values);
    return own(c, n);
}

/* A schema for values valid against both a and b, where that is easy: one of them true/{} or
 * both equal, or one finite (its values filtered by the other). NULL (failed) otherwise. */
static const json_t *intersect(conv *c, const json_t *a, const json_t *b, const char *what) {
    if (!a || json_is_true(a) || (json_is_object(a) && json_object_size(a) == 0)) return b;
    if (!b || json_is_true(b) || (json_is_object(b) && json_object_size(b) == 0)) return a;
    if (json_equal((json_t *)a, (json_t *)b)) return a;
    for (int side = 0; side < 2; side++) {
        const json_t *fin = side ? b : a, *other = side ? a : b;
        json_t *vals = finite_values(c, fin);
        if (!vals) continue;
        json_t *kept = json_array();
        for (size_t i = 0; kept && i < json_array_size(vals); i++)
            if (slm_json_valid_node(c->root, other, json_array_get(vals, i))) json_array_append(kept, json_array_get(vals, i));
        json_decref(vals);
        return enum_node(c, kept);
    }
    /* two plain schemas: the union of their keywords, the stricter of two bounds */
    static const char *const lower[] = {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains", NULL};
    static const char *const upper[] = {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains", NULL};
    bool plain = json_is_object(a) && json_is_object(b);
    static const char *const opaque[] = {"$ref", "anyOf", "oneOf", "if", "not", "properties", "items", "prefixItems", NULL};
    for (int i = 0; plain && opaque[i]; i++) plain = !json_object_get(a, opaque[i]) && !json_object_get(b, opaque[i]);
    json_t *u = plain ? json_deep_copy(a) : NULL;
    const char *key;
    json_t *v;
    if (u) json_object_foreach((json_t *)b, key, v) {
            json_t *mine = json_object_get(u, key);
            if (!mine || json_equal(mine, v) || is_annotation(key)) {
                if (!mine) json_object_set(u, key, v);
                continue;
            }
            int side = 0;
            for (int i = 0; lower[i]; i++) side |= !strcmp(lower[i], key) ? 1 : !strcmp(upper[i], key) ? 2 : 0;
            if (side && json_is_number(mine) && json_is_number(v)) {
                double x = json_number_value(mine), y = json_number_value(v);
                if ((side == 1 && y > x) || (side == 2 && y < x)) json_object_set(u, key, v);
                continue;
            }
            json_decref(u);
            u = NULL;
            break;
        }
    if (u) return own(c, u);
    fail(c, "json schema: %s is supported when one side is a const, an enum, a boolean or a small integer range, or "
            "both are plain schemas without conflicting keywords", what);
    return NULL;
}

/* How many distinct values a schema allows, if few and known; -1 otherwise. */
static long domain_size(conv *c, const json_t *s) {
    json_t *vals = finite_values(c, s);
    if (!vals) return -1;
    long n = (long)json_array_size(vals);
    json_decref(vals);
    return n;
}

/* "[" items "]": prefixItems, items (false: none after the prefix), contains (every item matches
 * it, within minContains..maxContains), uniqueItems (a rule the grammar's JSON check watches). */
static void gen_array(conv *c, const json_t *s, slm_buf *b) {
    const json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems"),
                 *contains = json_object_get(s, "contains"), *uniq = json_object_get(s, "uniqueItems");
    if (json_is_array(items)) {
        if (prefix) {
            fail(c, "json schema: 'items' as an array together with 'prefixItems'");
            return;
        }
        prefix = items, items = NULL; /* draft-07 tuple form */
    }
    if (prefix && !json_is_array(prefix)) {
        fail(c, "json schema: 'prefixItems' must be an array of schemas");
        return;
    }
    if (uniq && !json_is_boolean(uniq)) {
        fail(c, "json schema: 'uniqueItems' must be a boolean");
        return;
    }
    if ((json_object_get(s, "minContains") || json_object_get(s, "maxContains")) && !contains) {
        /* without 'contains' they have no effect */
    }
    long long mn, mx;
    if (!get_count_range(c, s, "minItems", "maxItems", &mn, &mx)) return;
    size_t np = json_array_size(prefix);
    const json_t *rest = items;
    if (contains) {
        if (np) {
            fail(c, "json schema: 'contains' together with 'prefixItems' is not supported");
            return;
        }
        long long cmin = get_count(c, s, "minContains", 1), cmax = get_count(c, s, "maxContains", -1);
        if (c->failed) return;
        if (cmax >= 0 && cmin > cmax) {
            fail(c, "json schema: minContains %lld is above maxContains %lld", cmin, cmax);
            return;
        }
        rest = intersect(c, items, contains, "'contains' together with 'items'");
        if (!rest) return;
        if (cmin > mn) mn = cmin;
        if (cmax >= 0 && (mx < 0 || cmax < mx)) mx = cmax;
        if (mx >= 0 && mn > mx) {
            fail(c, "json schema: minItems/minContains (%lld) exceed maxItems/maxContains (%lld)", mn, mx);
            return;
        }
        if (mn > MAX_COUNT) {
            fail(c, "json schema: minContains above %d is not supported", MAX_COUNT);
            return;
        }
    }
    bool unique = json_is_true(uniq);
    if (unique) {
        long d = rest && !json_is_false(rest) ? domain_size(c, rest) : -1;
        if (d >= 0) {
            long long cap = (long long)np + d;
            if (mx < 0 || cap < mx) mx = cap;
            if (mn > mx) {
                fail(c, "json schema: uniqueItems with minItems %lld, but the items allow only %lld distinct values", mn,
                     mx);
                return;
            }
        }
    }
    if (rest && json_is_false(rest)) {
        if (mx < 0 || mx > (long long)np) mx = (long long)np;
        if (mn > mx) {
            fail(c, "json schema: minItems %lld is above the %zu prefixItems with 'items' false", mn, np);
            return;
        }
    }
    if (mx >= 0 && (long long)np > mx) np = (size_t)mx;
    char item[32] = "json-value";
    if (rest && !json_is_false(rest) && !gen_schema(c, rest, item)) return;
    /* the items after the prefix: (",")? item repeated */
    long long rmin = mn > (long long)np ? mn - (long long)np : 0, rmax = mx < 0 ? -1 : mx - (long long)np;
    slm_buf body = {0};
    if (np == 0) {
        if (mx == 0) {
            slm_buf_puts(&body, "\"[]\"");
        } else {
            char reps[64];
            long long r0 = mn > 0 ? mn - 1 : 0;
            if (mx < 0) snprintf(reps, sizeof reps, "{%lld,}", r0);
            else snprintf(reps, sizeof reps, "{%lld,%lld}", r0, mx - 1);
            if (mn == 0) slm_buf_printf(&body, "\"[\" (%s (\",\" %s)%s)? \"]\"", item, item, reps);
            else slm_buf_printf(&body, "\"[\" %s (\",\" %s)%s \"]\"", item, item, reps);
        }
    } else {
        /* after_i: what may follow prefix item i (its successors, each optional past minItems) */
        char next[32] = "\"\"";
        if (rmax != 0 && !(rest && json_is_false(rest))) {
            char name[32];
            new_rule_name(c, name);
            slm_buf r = {0};
            if (rmax < 0) slm_buf_printf(&r, "(\",\" %s){%lld,}", item, rmin);
            else slm_buf_printf(&r, "(\",\" %s){%lld,%lld}", item, rmin, rmax);
            emit_rule(c, name, &r);
            free(r.s);
            strcpy(next, name);
        }
        for (size_t i = np; i-- > 0 && !c->failed;) {
            char pname[32];
            if (!gen_schema(c, json_array_get(prefix, i), pname)) break;
            char name[32];
            new_rule_name(c, name);
            slm_buf r = {0};
            const char *sep = i ? "\",\" " : "";
            if ((long long)i < mn || i == 0) slm_buf_printf(&r, "%s%s %s", sep, pname, next);
            else slm_buf_printf(&r, "(%s%s %s)?", sep, pname, next);
            emit_rule(c, name, &r);
            free(r.s);
            strcpy(next, name);
        }
        if (mn == 0) slm_buf_printf(&body, "\"[\" %s? \"]\"", next);
        else slm_buf_printf(&body, "\"[\" %s \"]\"", next);
    }
    if (unique && !c->failed) {
        char name[64];
        snprintf(name, sizeof name, "s%d%s", ++c->n_rules, GRAM_SUFFIX_UNIQUE_ITEMS);
        emit_rule(c, name, &body);
        slm_buf_puts(b, name);
    } else {
        slm_buf_append(b, body.s ? body.s : "\"\"", body.s ? body.len : 2);
    }
    if (body.oom) b->oom = true;
    free(body.s);
}

static size_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* tab (power-of-two cap, entries index + 1) maps names to their first index in keys. */
static void name_slot_set(uint32_t *tab, size_t cap, const char **keys, const char *name, size_t index) {
    size_t slot = str_hash(name) & (cap - 1);
    for (; tab[slot]; slot = (slot + 1) & (cap - 1))
        if (!strcmp(keys[tab[slot] - 1], name)) return;
    tab[slot] = (uint32_t)index + 1;
}

static size_t name_slot_find(const uint32_t *tab, size_t cap, const char **keys, const char *name, size_t absent) {
    for (size_t slot = str_hash(name) & (cap - 1); tab[slot]; slot = (slot + 1) & (cap - 1))
        if (!strcmp(keys[tab[slot] - 1], name)) return tab[slot] - 1;
    return absent;
}

/* Do the patterns of patternProperties match disjoint key sets? True when each is anchored and
 * starts with its own literal character (the common "^S_" / "^I_" style). */
static bool patterns_disjoint(const json_t *pprops) {
    char seen[256] = {0};
    const char *pat;
    json_t *v;
    json_object_foreach((json_t *)pprops, pat, v) {
        unsigned char ch = (unsigned char)pat[1];
        if (pat[0] != '^' || !(isalnum(ch) || ch == '_' || ch == '-' || ch == ' ') || seen[ch]) return false;
        if (pat[2] == '*' || pat[2] == '?' || pat[2] == '{') return false;
        seen[ch] = 1;
    }
    return true;
}

/* A free-keyed object (a map): key/value pairs from patternProperties, or keys by propertyNames and
 * values by additionalProperties; minProperties..maxProperties pairs; the rule is marked so the
 * grammar's JSON check keeps keys distinct. */
static void gen_map(conv *c, const json_t *s, slm_buf *b, long long pmin, long long pmax) {
    const json_t *addl = json_object_get(s, "additionalProperties"), *pprops = json_object_get(s, "patternProperties"),
                 *pnames = json_object_get(s, "propertyNames");
    bool has_patterns = json_object_size(pprops) > 0;
    if (!has_patterns && addl && json_is_false(addl)) {
        if (pmin > 0) fail(c, "json schema: minProperties %lld cannot be met: additionalProperties false allows no property", pmin);
        else slm_buf_puts(b, "\"{}\"");
        return;
    }
    if (pmax == 0) {
        slm_buf_puts(b, "\"{}\"");
        return;
    }
    slm_buf kv = {0};
    if (has_patterns) {
        if (pnames) {
            fail(c, "json schema: 'propertyNames' together with 'patternProperties' is not supported");
            return;
        }
        const char *pat;
        json_t *ps, *first = NULL;
        bool same = true;
        json_object_foreach((json_t *)pprops, pat, ps) {
            if (!first) first = ps;
            else same &= json_equal(first, ps);
        }
        if (!same && !patterns_disjoint(pprops)) {
            fail(c, "json schema: patternProperties whose patterns may overlap need equal schemas (or patterns '^' + "
                    "distinct first characters)");
            return;
        }
        int n = 0;
        json_object_foreach((json_t *)pprops, pat, ps) {
            char vname[32];
            if (!gen_schema(c, ps, vname)) break;
            slm_buf key = {0};
            js_gen_pattern(c, pat, strlen(pat), &key);
            if (!c->failed) slm_buf_printf(&kv, "%s(%s) \":\" %s", n++ ? " | " : "", key.s ? key.s : "\"\"", vname);
            free(key.s);
            if (c->failed) break;
        }
    } else {
        char kname[32] = "json-string", vname[32] = "json-value";
        if (pnames) {
            if (json_is_false(pnames)) {
                if (pmin > 0) fail(c, "json schema: minProperties %lld cannot be met: propertyNames false allows no key", pmin);
                else slm_buf_puts(b, "\"{}\"");
                return;
            }
            if (!json_is_object(pnames) && !json_is_true(pnames)) {
                fail(c, "json schema: 'propertyNames' must be a schema");
                return;
            }
            const json_t *t = json_object_get(pnames, "type");
            if (t && !(json_is_string(t) && !strcmp(json_string_value(t), "string"))) {
                fail(c, "json schema: 'propertyNames' must describe strings");
                return;
            }
            if (json_is_object(pnames)) {
                json_t *keys = json_deep_copy(pnames);
                if (keys) json_object_set_new(keys, "type", json_string("string"));
                if (!own(c, keys) || !gen_schema(c, keys, kname)) return;
            }
        }
        if (addl && json_is_object(addl) && !gen_schema(c, addl, vname)) return;
        slm_buf_printf(&kv, "%s \":\" %s", kname, vname);
    }
    if (c->failed) {
        free(kv.s);
        return;
    }
    char pair[32];
    new_rule_name(c, pair);
    emit_rule(c, pair, &kv);
    free(kv.s);
    slm_buf body = {0};
    char reps[64];
    long long r0 = pmin > 0 ? pmin - 1 : 0;
    if (pmax < 0) snprintf(reps, sizeof reps, "{%lld,}", r0);
    else snprintf(reps, sizeof reps, "{%lld,%lld}", r0, pmax - 1);
    if (pmin == 0) slm_buf_printf(&body, "\"{\" (%s (\",\" %s)%s)? \"}\"", pair, pair, reps);
    else slm_buf_printf(&body, "\"{\" %s (\",\" %s)%s \"}\"", pair, pair, reps);
    char name[64];
    snprintf(name, sizeof name, "s%d%s", ++c->n_rules, GRAM_SUFFIX_UNIQUE_KEYS);
    emit_rule(c, name, &body);
    free(body.s);
    slm_buf_puts(b, name);
}

#define MAX_COUNT_STATES 200000 /* (property, count so far) rules for minProperties/maxProperties */

static void gen_object(conv *c, const json_t *s, slm_buf *b) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
                 *addl = json_object_get(s, "additionalProperties"), *pprops = json_object_get(s, "patternProperties"),
                 *pnames = json_object_get(s, "propertyNames"), *deps = json_object_get(s, "dependentRequired");
    if (props && !json_is_object(props)) {
        fail(c, "json schema: 'properties' must be an object");
        return;
    }
    if (req && !json_is_array(req)) {
        fail(c, "json schema: 'required' must be an array");
        return;
    }
    if (addl && !json_is_object(addl) && !json_is_boolean(addl)) {
        fail(c, "json schema: 'additionalProperties' must be a schema or a boolean");
        return;
    }
    if (pprops && !json_is_object(pprops)) {
        fail(c, "json schema: 'patternProperties' must be an object of schemas");
        return;
    }
    if (deps && !json_is_object(deps)) {
        fail(c, "json schema: 'dependentRequired' must be an object of string arrays");
        return;
    }
    long long pmin, pmax;
    if (!get_count_range(c, s, "minProperties", "maxProperties", &pmin, &pmax)) return;
    /* property list: declared properties, then required names not declared (any value) */
    size_t n = (props ? json_object_size(props) : 0) + (req ? json_array_size(req) : 0);
    const char *dk;
    json_t *dv;
    if (deps) json_object_foreach((json_t *)deps, dk, dv) {
            if (!json_is_array(dv)) {
                fail(c, "json schema: 'dependentRequired' must be an object of string arrays");
                return;
            }
            n += json_array_size(dv);
        }
    uint32_t *index_tab = NULL;
    const char **keys = calloc(n + 1, sizeof *keys);
    const json_t **schemas = calloc(n + 1, sizeof *schemas);
    bool *required = calloc(n + 1, sizeof *required), *skip = calloc(n + 1, sizeof *skip);
    char (*kvs)[96] = NULL;
    char(*names)[32] = NULL;
    if (!keys || !schemas || !required || !skip) {
        fail(c, "json schema: out of memory");
        goto done;
    }
    size_t k = 0;
    const char *key;
    json_t *val;
    if (props) json_object_foreach((json_t *)props, key, val) {
            keys[k] = key;
            schemas[k++] = val;
        }
    /* index of each name in keys (a hash, so many properties stay linear) */
    size_t tab_cap = 16;
    while (tab_cap < 2 * (n + 1)) tab_cap *= 2;
    index_tab = calloc(tab_cap, sizeof *index_tab);
    if (!index_tab) {
        fail(c, "json schema: out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++) name_slot_set(index_tab, tab_cap, keys, keys[i], i);
    /* required names, then (a valid subset of dependentRequired) the dependents of every property
     * that may appear become required too */
    for (int pass = 0; pass < 2 + (deps ? (int)json_object_size(deps) : 0) && !c->failed; pass++) {
        bool changed = false;
        const char *owner = NULL;
        json_t *list = pass == 0 ? (json_t *)req : NULL;
        void *it = pass > 0 && deps ? json_object_iter((json_t *)deps) : NULL;
        do {
            if (pass > 0) {
                if (!it) break;
                owner = json_object_iter_key(it);
                list = json_object_iter_value(it);
                it = json_object_iter_next((json_t *)deps, it);
                size_t oi = name_slot_find(index_tab, tab_cap, keys, owner, k);
                if (oi == k || (schemas[oi] && json_is_false(schemas[oi]))) continue; /* never present */
            }
            for (size_t i = 0; list && i < json_array_size(list); i++) {
                const json_t *r = json_array_get(list, i);
                if (!json_is_string(r)) {
                    fail(c, "json schema: '%s' must list strings", pass ? "dependentRequired" : "required");
                    goto done;
                }
                size_t j = name_slot_find(index_tab, tab_cap, keys, json_string_value(r), k);
                if (j == k) {
                    if (addl && json_is_false(addl)) {
                        fail(c, "json schema: %s property '%s' is not allowed by additionalProperties false",
                             pass ? "dependentRequired" : "required", json_string_value(r));
                        goto done;
                    }
                    keys[k] = json_string_value(r);
                    name_slot_set(index_tab, tab_cap, keys, keys[k], k);
                    schemas[k++] = NULL;
                }
                changed |= !required[j];
                required[j] = true;
            }
        } while (pass > 0);
        if (pass > 0 && !changed) break;
    }
    /* propertyNames and patternProperties also constrain the declared names */
    size_t n_req = 0;
    for (size_t i = 0; i < k && !c->failed; i++) {
        json_t *ks = json_string(keys[i]);
        if (!ks) {
            fail(c, "json schema: property name is not valid UTF-8");
            break;
        }
        if (pnames && !slm_json_valid_node(c->root, pnames, ks)) {
            if (required[i]) fail(c, "json schema: required property '%s' does not match propertyNames", keys[i]);
            skip[i] = true;
        }
        json_decref(ks);
        const char *pat;
        json_t *ps;
        if (pprops && !skip[i]) json_object_foreach((json_t *)pprops, pat, ps) {
                if (!slm_json_regex_search(pat, keys[i], strlen(keys[i]))) continue;
                char what[160];
                snprintf(what, sizeof what, "property '%.40s' matching patternProperties '%.40s'", keys[i], pat);
                schemas[i] = intersect(c, schemas[i], ps, what);
                if (c->failed) break;
            }
        if (schemas[i] && json_is_false(schemas[i])) {
            if (required[i]) fail(c, "json schema: required property '%s' can have no value", keys[i]);
            skip[i] = true;
        }
        n_req += required[i] && !skip[i];
    }
    if (c->failed) goto done;
    size_t live = 0;
    for (size_t i = 0; i < k; i++) live += !skip[i];
    if (live == 0) {
        gen_map(c, s, b, pmin, pmax);
        goto done;
    }
    if ((size_t)pmin > live) {
        fail(c, "json schema: minProperties %lld is above the %zu declared properties (extra properties are not generated)",
             pmin, live);
        goto done;
    }
    if (pmax >= 0 && (size_t)pmax < n_req) {
        fail(c, "json schema: maxProperties %lld is below the %zu required properties", pmax, n_req);
        goto done;
    }
    /* compact the live properties; kv text per property */
    kvs = calloc(live + 1, sizeof *kvs);
    size_t m = 0;
    if (!kvs) {
        fail(c, "json schema: out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++) {
        if (skip[i]) continue;
        keys[m] = keys[i], schemas[m] = schemas[i], required[m] = required[i];
        m++;
    }
    k = m;
    for (size_t i = k; i-- > 0 && !c->failed;) {
        char vname[32] = "json-value";
        if (schemas[i] && !gen_schema(c, schemas[i], vname)) break;
        json_t *ks = json_string(keys[i]);
        char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
        json_decref(ks);
        if (!kt) {
            fail(c, "json schema: property name is not valid UTF-8");
            break;
        }
        slm_buf kv = {0};
        put_literal(&kv, kt, strlen(kt));
        free(kt);
        slm_buf_printf(&kv, " \":\" %s", vname);
        char kvname[32];
        new_rule_name(c, kvname);
        emit_rule(c, kvname, &kv);
        free(kv.s);
        snprintf(kvs[i], sizeof kvs[i], "%s", kvname);
    }
    if (c->failed) goto done;
    long long cmax = pmax < 0 || pmax > (long long)k ? (long long)k : pmax, cmin = pmin;
    if (cmin == 0 && cmax == (long long)k) {
        /* Properties in declared order, each optional one present or not. head_i: nothing written
         * yet, properties i.. left; tail_i: something written (so a comma comes first). Extra
         * properties are never generated when properties are declared (a valid subset). */
        char(*head)[32] = calloc(k + 1, 32), (*tail)[32] = calloc(k + 1, 32);
        if (!head || !tail) {
            free(head);
            free(tail);
            fail(c, "json schema: out of memory");
            goto done;
        }
        strcpy(head[k], "\"\"");
        strcpy(tail[k], "\"\"");
        for (size_t i = k; i-- > 0 && !c->failed;) {
            slm_buf body = {0};
            new_rule_name(c, tail[i]);
            if (required[i]) slm_buf_printf(&body, "\",\" %s %s", kvs[i], tail[i + 1]);
            else slm_buf_printf(&body, "(\",\" %s)? %s", kvs[i], tail[i + 1]);
            emit_rule(c, tail[i], &body);
            free(body.s);
            body = (slm_buf){0};
            new_rule_name(c, head[i]);
            if (required[i]) slm_buf_printf(&body, "%s %s", kvs[i], tail[i + 1]);
            else slm_buf_printf(&body, "%s %s | %s", kvs[i], tail[i + 1], head[i + 1]);
            emit_rule(c, head[i], &body);
            free(body.s);
        }
        slm_buf_printf(b, "\"{\" %s \"}\"", head[0]);
        free(head);
        free(tail);
        goto done;
    }
    /* minProperties/maxProperties over declared properties: rule P(i, n) = properties i.. when n
     * are written, kept only where a count in [cmin, cmax] stays reachable */
    if ((double)(k + 1) * (double)(cmax + 1) > MAX_COUNT_STATES) {
        fail(c, "json schema: minProperties/maxProperties over %zu properties is too large", k);
        goto done;
    }
    size_t *req_after = calloc(k + 1, sizeof *req_after);
    names = calloc((k + 1) * (size_t)(cmax + 1), sizeof *names);
    if (!req_after || !names) {
        free(req_after);
        fail(c, "json schema: out of memory");
        goto done;
    }
    for (size_t i = k; i-- > 0;) req_after[i] = req_after[i + 1] + required[i];
#define VIABLE(i, n) ((n) + (long long)req_after[i] <= cmax && (n) + (long long)(k - (i)) >= cmin)
#define NAME(i, n) names[(size_t)(i) * (size_t)(cmax + 1) + (size_t)(n)]
    for (size_t i = k + 1; i-- > 0 && !c->failed;)
        for (long long cnt = 0; cnt <= cmax && cnt <= (long long)i; cnt++) {
            if (!VIABLE(i, cnt)) continue;
            new_rule_name(c, NAME(i, cnt));
            slm_buf body = {0};
            if (i == k) {
                slm_buf_puts(&body, "\"\"");
            } else {
                int alts = 0;
                if (cnt + 1 <= cmax && VIABLE(i + 1, cnt + 1))
                    slm_buf_printf(&body, "%s%s %s", cnt ? "\",\" " : "", kvs[i], NAME(i + 1, cnt + 1)), alts++;
                if (!required[i] && VIABLE(i + 1, cnt)) slm_buf_printf(&body, "%s%s", alts++ ? " | " : "", NAME(i + 1, cnt));
            }
            emit_rule(c, NAME(i, cnt), &body);
            free(body.s);
        }
    if (!c->failed) {
        if (!VIABLE(0, 0)) fail(c, "json schema: minProperties/maxProperties cannot be met by the declared properties");
        else slm_buf_printf(b, "\"{\" %s \"}\"", NAME(0, 0));
    }
#undef VIABLE
#undef NAME
    free(req_after);
done:
    free(names);
    free(kvs);
    free(index_tab);
    free(keys);
    free(schemas);
    free(required);
    free(skip);
}

static void gen_type(conv *c, const char *t, const json_t *s, slm_buf *b) {
    if (!strcmp(t, "null")) slm_buf_puts(b, "\"null\"");
    else if (!strcmp(t, "boolean")) slm_buf_puts(b, "(\"true\" | \"false\")");
    else if (!strcmp(t, "integer")) js_gen_integer(c, s, b);
    else if (!strcmp(t, "number")) js_gen_number(c, s, b);
    else if (!strcmp(t, "string")) gen_string(c, s, b);
    else if (!strcmp(t, "array")) gen_array(c, s, b);
    else if (!strcmp(t, "object")) gen_object(c, s, b);
    else fail(c, "json schema: unknown type '%s'", t);
}

static const json_t *resolve_ref(conv *c, const char *ref) {
    if (ref[0] != '#') {
        fail(c, "json schema: $ref '%s' is not supported (only local refs starting with '#')", ref);
        return NULL;
    }
    if (ref[1] && ref[1] != '/') {
        fail(c, "json schema: $ref '%s' is not a JSON pointer", ref);
        return NULL;
    }
    const json_t *node = slm_json_pointer(c->root, ref);
    if (!node) fail(c, "json schema: $ref '%s' does not resolve", ref);
    return node;
}

static bool has_constraints_besides(const json_t *s, const char *a, const char *b2) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        if (is_annotation(key) || !strcmp(key, a) || (b2 && !strcmp(key, b2))) continue;
        return true;
    }
    return false;
}

/* ---------- not, if/then/else: rewritten into schemas the generator knows ---------- */

static json_t *copy_without(const json_t *s, const char *const *drop) {
    json_t *out = json_object();
    const char *key;
    json_t *v;
    if (out) json_object_foreach((json_t *)s, key, v) {
            bool skip = false;
            for (int i = 0; drop[i]; i++) skip |= !strcmp(drop[i], key);
            if (!skip) json_object_set(out, key, v);
        }
    return out;
}

static bool only_keys(const json_t *s, const char *a, const char *b2) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) if (!is_annotation(key) && strcmp(key, a) && (!b2 || strcmp(key, b2))) return false;
    return true;
}

static const char *const all_types[] = {"null", "boolean", "number", "string", "array", "object", NULL};

static const json_t *rewrite_not(conv *c, const json_t *s) {
    const json_t *no = json_object_get(s, "not");
    static const char *const drop[] = {"not", NULL};
    json_t *base = own(c, copy_without(s, drop));
    if (!base) return NULL;
    json_t *vals = finite_values(c, base);
    if (vals) {
        json_t *kept = json_array();
        for (size_t i = 0; kept && i < json_array_size(vals); i++)
            if (!slm_json_valid_node(c->root, no, json_array_get(vals, i))) json_array_append(kept, json_array_get(vals, i));
        json_decref(vals);
        if (kept && json_array_size(kept) == 0) {
            json_decref(kept);
            fail(c, "json schema: 'not' excludes every value the schema allows");
            return NULL;
        }
        return enum_node(c, kept);
    }
    const json_t *nt = json_is_object(no) ? json_object_get(no, "type") : NULL;
    if (!nt || !only_keys(no, "type", NULL)) {
        fail(c, "json schema: 'not' is supported on schemas with few known values (const, enum, boolean, a small "
                "integer range) or as {\"type\": ...}");
        return NULL;
    }
    const json_t *bt = json_object_get(base, "type");
    json_t *remaining = json_array();
    if (!remaining) return NULL;
    size_t nb = bt ? (json_is_string(bt) ? 1 : json_array_size(bt)) : 6;
    for (size_t i = 0; i < nb; i++) {
        const json_t *t = bt ? (json_is_string(bt) ? bt : json_array_get(bt, i)) : NULL;
        const char *name = t ? json_string_value(t) : all_types[i];
        if (!name) continue;
        bool excluded = false, partial = false;
        size_t nn = json_is_string(nt) ? 1 : json_array_size(nt);
        for (size_t j = 0; j < nn; j++) {
            const char *x = json_string_value(json_is_string(nt) ? nt : json_array_get(nt, j));
            if (!x) continue;
            excluded |= !strcmp(x, name) || (!strcmp(x, "number") && !strcmp(name, "integer"));
            partial |= !strcmp(x, "integer") && !strcmp(name, "number");
        }
        if (partial) {
            json_decref(remaining);
            fail(c, "json schema: 'not' {\"type\": \"integer\"} on numbers is not supported");
            return NULL;
        }
        if (!excluded) json_array_append_new(remaining, json_string(name));
    }
    if (json_array_size(remaining) == 0) {
        json_decref(remaining);
        fail(c, "json schema: 'not' excludes every type the schema allows");
        return NULL;
    }
    json_object_set_new(base, "type", remaining);
    return base;
}

/* base (an owned copy) takes the constraints of a 'then'/'else' schema. */
static bool merge_into(conv *c, json_t *base, const json_t *extra, const char *what) {
    if (!extra || json_is_true(extra)) return true;
    if (!json_is_object(extra)) {
        fail(c, "json schema: '%s' must be an object schema", what);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)extra, key, v) {
        if (is_annotation(key)) continue;
        json_t *mine = json_object_get(base, key);
        if (!strcmp(key, "properties") && json_is_object(v)) {
            json_t *props = mine ? json_deep_copy(mine) : json_object();
            if (!props || json_object_set_new(base, "properties", props)) return fail(c, "json schema: out of memory"), false;
            const json_t *addl = json_object_get(base, "additionalProperties");
            const char *pk;
            json_t *ps;
            json_object_foreach(v, pk, ps) {
                const json_t *old = json_object_get(props, pk);
                if (!old && json_is_false(addl)) continue; /* not allowed by the schema itself */
                const json_t *both = old ? intersect(c, old, ps, "a property redefined in 'then'/'else'") : ps;
                if (!both) return false;
                json_object_set(props, pk, (json_t *)both);
            }
        } else if (!strcmp(key, "required") && json_is_array(v)) {
            json_t *req = mine ? json_deep_copy(mine) : json_array();
            if (!req || json_object_set_new(base, "required", req)) return fail(c, "json schema: out of memory"), false;
            for (size_t i = 0; i < json_array_size(v); i++) json_array_append(req, json_array_get(v, i));
        } else if (mine && !json_equal(mine, v)) {
            fail(c, "json schema: '%s' appears in the schema and in its '%s' with different values", key, what);
            return false;
        } else {
            json_object_set(base, key, v);
        }
    }
    return true;
}

static void set_required(json_t *node, const char *k, bool on) {
    json_t *req = json_object_get(node, "required");
    json_t *fresh = json_array();
    if (!fresh) return;
    bool present = false;
    for (size_t i = 0; i < json_array_size(req); i++) {
        const char *r = json_string_value(json_array_get(req, i));
        if (r && !strcmp(r, k)) {
            present = true;
            if (!on) continue;
        }
        json_array_append(fresh, json_array_get(req, i));
    }
    if (on && !present) json_array_append_new(fresh, json_string(k));
    json_object_set_new(node, "required", fresh);
}

static void set_property(json_t *node, const char *k, const json_t *schema) {
    json_t *props = json_object_get(node, "properties");
    props = props ? json_deep_copy(props) : json_object();
    if (!props) return;
    json_object_set(props, k, (json_t *)schema);
    json_object_set_new(node, "properties", props);
}

static bool is_required(const json_t *node, const char *k) {
    const json_t *req = json_object_get(node, "required");
    for (size_t i = 0; i < json_array_size(req); i++)
        if (json_is_string(json_array_get(req, i)) && !strcmp(json_string_value(json_array_get(req, i)), k)) return true;
    return false;
}

/* if/then/else: finite schemas filter their values; objects whose 'if' tests one property (its
 * value against a schema, and/or its presence) become anyOf [if holds + then, if fails + else],
 * the two branches disjoint by construction. */
static const json_t *rewrite_if(conv *c, const json_t *s) {
    const json_t *ifs = json_object_get(s, "if"), *then_s = json_object_get(s, "then"), *else_s = json_object_get(s, "else");
    static const char *const drop[] = {"if", "then", "else", NULL};
    json_t *base = own(c, copy_without(s, drop));
    if (!base) return NULL;
    json_t *vals = finite_values(c, base);
    if (vals) {
        json_t *kept = json_array();
        for (size_t i = 0; kept && i < json_array_size(vals); i++) {
            const json_t *x = json_array_get(vals, i);
            const json_t *branch = slm_json_valid_node(c->root, ifs, x) ? then_s : else_s;
            if (!branch || slm_json_valid_node(c->root, branch, x)) json_array_append(kept, (json_t *)x);
        }
        json_decref(vals);
        if (kept && json_array_size(kept) == 0) {
            json_decref(kept);
            fail(c, "json schema: 'if'/'then'/'else' leave no value the schema allows");
            return NULL;
        }
        return enum_node(c, kept);
    }
    if (json_is_true(ifs) || json_is_false(ifs)) {
        return merge_into(c, base, json_is_true(ifs) ? then_s : else_s, json_is_true(ifs) ? "then" : "else") ? base : NULL;
    }
    const json_t *iprops = json_is_object(ifs) ? json_object_get(ifs, "properties") : NULL,
                 *ireq = json_is_object(ifs) ? json_object_get(ifs, "required") : NULL;
    const char *kp = NULL;
    const json_t *cond = NULL;
    bool ok = json_is_object(ifs) && only_keys(ifs, "properties", "required") && (iprops || ireq);
    if (ok && iprops) {
        ok = json_is_object(iprops) && json_object_size(iprops) == 1;
        if (ok) {
            kp = json_object_iter_key(json_object_iter((json_t *)iprops));
            cond = json_object_iter_value(json_object_iter((json_t *)iprops));
        }
    }
    if (ok && ireq) {
        ok = json_is_array(ireq) && json_array_size(ireq) == 1 && json_is_string(json_array_get(ireq, 0)) &&
             (!kp || !strcmp(kp, json_string_value(json_array_get(ireq, 0))));
        if (ok && !kp) kp = json_string_value(json_array_get(ireq, 0));
    }
    if (!ok) {
        fail(c, "json schema: 'if' is supported on values with few known values, or as one property's value "
                "('properties' with one entry) and/or presence ('required')");
        return NULL;
    }
    bool if_req = ireq != NULL;
    const json_t *bprops = json_object_get(base, "properties");
    const json_t *base_k = bprops ? json_object_get(bprops, kp) : NULL;
    if (!base_k) {
        const json_t *addl = json_object_get(base, "additionalProperties");
        base_k = addl && !json_is_boolean(addl) ? addl : json_true();
        if (json_is_false(addl)) base_k = json_false();
    }
    const json_t *in_k = base_k, *out_k = NULL; /* values of kp that pass / fail the condition */
    if (cond) {
        in_k = intersect(c, base_k, cond, "the property tested by 'if'");
        if (!in_k) return NULL;
        json_t *kv = finite_values(c, base_k);
        if (!kv) {
            fail(c, "json schema: 'if' tests property '%s', which needs few known values (const, enum, boolean)", kp);
            return NULL;
        }
        json_t *fails = json_array();
        for (size_t i = 0; fails && i < json_array_size(kv); i++)
            if (!slm_json_valid_node(c->root, cond, json_array_get(kv, i))) json_array_append(fails, json_array_get(kv, i));
        json_decref(kv);
        out_k = enum_node(c, fails);
        if (!out_k) return NULL;
    }
    bool base_req = is_required(base, kp);
    json_t *any = json_array();
    if (!any || !own(c, any)) return NULL;
    for (int holds = 1; holds >= 0 && !c->failed; holds--) {
        json_t *br = json_deep_copy(base);
        if (!own(c, br) || !merge_into(c, br, holds ? then_s : else_s, holds ? "then" : "else")) return NULL;
        /* does this branch need kp present (with which values), absent, or either? */
        const json_t *present_schema = holds ? in_k : out_k; /* NULL: kp must be absent when present fails */
        bool absent_ok = holds ? !if_req : if_req;
        bool must = is_required(br, kp) || base_req;
        if (!present_schema || json_is_false(present_schema)) {
            if (must || !absent_ok) continue; /* branch impossible */
            set_property(br, kp, json_false());
        } else {
            set_property(br, kp, present_schema);
            if (!absent_ok || must) set_required(br, kp, true);
            else if (!absent_ok) continue;
        }
        json_array_append(any, br);
    }
    if (c->failed) return NULL;
    if (json_array_size(any) == 0) {
        fail(c, "json schema: 'if'/'then'/'else' leave no value the schema allows");
        return NULL;
    }
    if (json_array_size(any) == 1) return json_array_get(any, 0);
    json_t *node = json_object();
    if (node) json_object_set(node, "anyOf", any);
    return own(c, node);
}

#define MAX_DEPENDENT_SPLITS 4 /* owners split into present/absent branches (2^n branches at most) */

/* dependentRequired with an optional owner: anyOf [owner absent, owner and its dependents
 * present], so the grammar allows exactly what the keyword does (gen_object then sees the
 * dependents of present owners as required). NULL when nothing needs splitting (or too many
 * owners: gen_object then makes every dependent required, a valid subset). */
static const json_t *rewrite_dependent(conv *c, const json_t *s) {
    const json_t *deps = json_object_get(s, "dependentRequired");
    if (!json_is_object(deps) || json_object_size(deps) > MAX_DEPENDENT_SPLITS) return NULL;
    const json_t *props = json_object_get(s, "properties");
    const char *owner;
    json_t *list;
    json_object_foreach((json_t *)deps, owner, list) {
        if (!json_is_array(list) || is_required(s, owner)) continue;
        const json_t *decl = json_is_object(props) ? json_object_get(props, owner) : NULL;
        if (!decl || json_is_false(decl)) continue; /* never generated: nothing to split */
        bool all = true;
        for (size_t i = 0; i < json_array_size(list); i++)
            all &= json_is_string(json_array_get(list, i)) && is_required(s, json_string_value(json_array_get(list, i)));
        if (all) continue;
        json_t *absent = json_deep_copy(s), *present = json_deep_copy(s);
        if (!own(c, absent) || !own(c, present)) return NULL;
        set_property(absent, owner, json_false());
        set_required(absent, owner, false);
        set_required(present, owner, true);
        for (size_t i = 0; i < json_array_size(list); i++)
            if (json_is_string(json_array_get(list, i))) set_required(present, json_string_value(json_array_get(list, i)), true);
        bool possible = true; /* a dependent that can never be present rules the owner out */
        const json_t *pprops = json_object_get(present, "properties");
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *d = json_object_get(pprops, json_string_value(json_array_get(list, i)));
            possible &= !json_is_false(d);
        }
        if (!possible) return absent;
        json_t *any = json_array(), *node = json_object();
        if (!own(c, any) || !own(c, node)) return NULL;
        json_array_append(any, absent);
        json_array_append(any, present);
        json_object_set(node, "anyOf", any);
        return node;
    }
    return NULL;
}

/* Generates the rule for schema node s; its name goes to `name`. */
static bool gen_schema(conv *c, const json_t *s, char name[32]) {
    if (c->failed) return false;
    if (json_is_true(s)) {
        strcpy(name, "json-value");
        return true;
    }
    if (json_is_false(s)) {
        fail(c, "json schema: the schema 'false' matches nothing");
        return false;
    }
    if (!json_is_object(s)) {
        fail(c, "json schema: a schema must be an object or a boolean");
        return false;
    }
    const char *memo = ref_find(c, s);
    if (memo) {
        strcpy(name, memo);
        return true;
    }
    if (!keep_going(c)) return false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        bool known = false;
        for (int i = 0; known_keywords[i]; i++) known |= !strcmp(known_keywords[i], key);
        if (!known) {
            fail(c, "json schema: unsupported keyword '%s'", key);
            return false;
        }
    }
    if (++c->depth > MAX_NESTING) {
        fail(c, "json schema: nested deeper than %d levels", MAX_NESTING);
        return false;
    }
    /* register before generating the body so references back to this node recurse */
    if ((uint32_t)c->n_rules >= c->guard->max_rules) {
        c->code = SLM_GRAMMAR_TOO_LARGE;
        fail(c, "json schema: grammar has more than %u rules (limit)", c->guard->max_rules);
        return false;
    }
    new_rule_name(c, name);
    if (!ref_add(c, s, name)) {
        fail(c, "json schema: out of memory");
        return false;
    }
    const json_t *split = json_object_get(s, "not") || json_object_get(s, "if") ? NULL : rewrite_dependent(c, s);
    if (c->failed) {
        c->depth--;
        return false;
    }
    if (split || json_object_get(s, "not") || json_object_get(s, "if") || json_object_get(s, "then") ||
        json_object_get(s, "else")) {
        const json_t *t = split;
        if (t) {
        } else if (json_object_get(s, "not")) t = rewrite_not(c, s);
        else if (json_object_get(s, "if")) t = rewrite_if(c, s);
        else { /* then/else without if: no effect */
            static const char *const drop[] = {"then", "else", NULL};
            t = own(c, copy_without(s, drop));
        }
        char tname[32];
        if (t && gen_schema(c, t, tname)) {
            slm_buf body = {0};
            slm_buf_puts(&body, tname);
            emit_rule(c, name, &body);
            free(body.s);
        }
        c->depth--;
        return !c->failed;
    }

    slm_buf body = {0};
    const json_t *ref = json_object_get(s, "$ref"), *cnst = json_object_get(s, "const"),
                 *en = json_object_get(s, "enum"), *types = json_object_get(s, "type");
    const json_t *any = json_object_get(s, "anyOf");
    const char *any_kw = "anyOf";
    if (!any) any = json_object_get(s, "oneOf"), any_kw = "oneOf";
    if (types && !json_is_string(types) && !json_is_array(types)) fail(c, "json schema: 'type' must be a string or an array");
    if (c->failed) {
    } else if (ref) {
        if (!json_is_string(ref)) {
            fail(c, "json schema: $ref must be a string");
        } else if (has_constraints_besides(s, "$ref", NULL)) {
            fail(c, "json schema: $ref with sibling keywords is not supported");
        } else {
            const json_t *target = resolve_ref(c, json_string_value(ref));
            char tname[32];
            if (target && gen_schema(c, target, tname)) slm_buf_puts(&body, tname);
        }
    } else if (cnst) {
        if (!slm_json_has_type(types, cnst)) fail(c, "json schema: 'const' value does not match 'type'");
        else put_json_literal(c, &body, cnst);
    } else if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0) {
            fail(c, "json schema: 'enum' must be a non-empty array");
        } else {
            int n = 0;
            slm_buf_puts(&body, "(");
            for (size_t i = 0; i < json_array_size(en) && keep_going(c); i++) {
                if (!slm_json_has_type(types, json_array_get(en, i))) continue;
                if (n++) slm_buf_puts(&body, " | ");
                put_json_literal(c, &body, json_array_get(en, i));
            }
            slm_buf_puts(&body, ")");
            if (n == 0) fail(c, "json schema: no 'enum' value matches 'type'");
        }
    } else if (any) {
        if (json_object_get(s, "anyOf") && json_object_get(s, "oneOf")) {
            fail(c, "json schema: 'anyOf' together with 'oneOf' is not supported");
        } else if (has_constraints_besides(s, "anyOf", "oneOf")) {
            fail(c, "json schema: '%s' with sibling keywords (other than annotations) is not supported", any_kw);
        } else if (!json_is_array(any) || json_array_size(any) == 0) {
            fail(c, "json schema: '%s' must be a non-empty array", any_kw);
        } else {
            slm_buf_puts(&body, "(");
            for (size_t i = 0; i < json_array_size(any) && !c->failed; i++) {
                char sub[32];
                if (!gen_schema(c, json_array_get(any, i), sub)) break;
                slm_buf_printf(&body, "%s%s", i ? " | " : "", sub);
            }
            slm_buf_puts(&body, ")");
        }
    } else if (types) {
        size_t nt = json_is_string(types) ? 1 : json_array_size(types);
        if (nt == 0) fail(c, "json schema: 'type' is an empty array");
        slm_buf_puts(&body, "(");
        for (size_t i = 0; i < nt && !c->failed; i++) {
            const json_t *t = json_is_string(types) ? types : json_array_get(types, i);
            if (!json_is_string(t)) {
                fail(c, "json schema: 'type' entries must be strings");
                break;
            }
            if (i) slm_buf_puts(&body, " | ");
            gen_type(c, json_string_value(t), s, &body);
        }
        slm_buf_puts(&body, ")");
    } else {
        /* no type: infer it from the keywords present, else any value */
        const char *t = NULL;
        if (json_object_get(s, "properties") || json_object_get(s, "required") || json_object_get(s, "additionalProperties"))
            t = "object";
        else if (json_object_get(s, "patternProperties") || json_object_get(s, "propertyNames") ||
                 json_object_get(s, "minProperties") || json_object_get(s, "maxProperties") ||
                 json_object_get(s, "dependentRequired"))
            t = "object";
        else if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems") ||
                 json_object_get(s, "prefixItems") || json_object_get(s, "contains") || json_object_get(s, "uniqueItems"))
            t = "array";
        else if (json_object_get(s, "pattern") || json_object_get(s, "format") || json_object_get(s, "minLength") ||
                 json_object_get(s, "maxLength"))
            t = "string";
        else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "multipleOf") ||
                 json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum"))
            t = "number";
        if (t) gen_type(c, t, s, &body);
        else slm_buf_puts(&body, "json-value");
    }
    if (!c->failed) emit_rule(c, name, &body);
    if (body.oom) c->out.oom = true;
    free(body.s);
    c->depth--;
    return !c->failed;
}

/* Converts and parses the result (catching what only the grammar checks see, e.g. a required
 * property that recurses forever). The GBNF goes to *gbnf_out and, if prog_out is given, the parsed
 * program to it. Returns 0 or an SLM_GRAMMAR_* code. */
static int convert(const char *schema_json, gram_guard *guard, char **gbnf_out, gram_program *prog_out, char *err,
                   size_t err_len) {
    if (!gbnf_out) return slm_err(err, err_len, "json schema: no output pointer");
    *gbnf_out = NULL;
    if (!schema_json) return slm_err(err, err_len, "json schema: no schema");
    json_error_t je;
    json_t *root = json_loads(schema_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    char why[sizeof je.text * 4];
    if (!root)
        return slm_err(err, err_len, "json schema: invalid JSON at line %d, column %d: %s", je.line, je.column,
                       slm_json_error_line(je.text, why, sizeof why));
    conv c = {.root = root, .guard = guard, .err = err, .err_len = err_len};
    const json_t *type = json_object_get(root, "type");
    if (json_is_object(root) && json_object_size(root) == 1 && json_is_string(type) &&
        !strcmp(json_string_value(type), "json_object")) {
        slm_buf_puts(&c.out, "root ::= json-object-unique-keys\n");
    } else {
        char name[32];
        if (gen_schema(&c, root, name)) slm_buf_printf(&c.out, "root ::= %s\n", name);
    }
    slm_buf_puts(&c.out, json_rules);
    slm_buf_puts(&c.out, format_rules);
    free(c.refs);
    free(c.ref_tab);
    json_decref(c.derived);
    json_decref(root);
    if (!c.failed && c.out.oom) fail(&c, "json schema: out of memory");
    if (!c.failed) {
        gram_program prog;
        char gerr[256];
        int rc = gram_parse(c.out.s, c.out.len, guard, &prog, gerr, sizeof gerr);
        if (rc == SLM_GRAMMAR_CANCELLED || (rc == SLM_GRAMMAR_TOO_LARGE && guard->status)) {
            c.code = rc;
            fail(&c, "json schema: %s", gram_guard_message(guard));
        } else if (rc != 0) {
            const char *msg = strstr(gerr, ": ");
            c.code = rc;
            fail(&c, "json schema: the schema has no finite valid value or is too large (%s)", msg ? msg + 2 : gerr);
        } else if (prog_out) {
            *prog_out = prog;
        } else {
            gram_program_free(&prog);
        }
    }
    if (c.failed) {
        free(c.out.s);
        return c.code ? c.code : SLM_GRAMMAR_INVALID;
    }
    *gbnf_out = c.out.s;
    return 0;
}

int slm_json_schema_to_gbnf_limited(const char *schema_json, const slm_grammar_limits *limits, char **gbnf_out,
                                    char *err, size_t err_len) {
    gram_guard guard;
    gram_guard_init(&guard, limits);
    return convert(schema_json, &guard, gbnf_out, NULL, err, err_len);
}

int slm_json_schema_to_gbnf(const char *schema_json, char **gbnf_out, char *err, size_t err_len) {
    return slm_json_schema_to_gbnf_limited(schema_json, NULL, gbnf_out, err, err_len);
}

int slm_grammar_from_json_schema_limited(const slm_model *model, const char *schema_json,
                                         const slm_grammar_limits *limits, slm_grammar **out, char *err,
                                         size_t err_len) {
    if (!out) return slm_err(err, err_len, "json schema: no output pointer");
    *out = NULL;
    gram_guard guard;
    gram_guard_init(&guard, limits);
    char *gbnf = NULL;
    gram_program prog;
    int rc = convert(schema_json, &guard, &gbnf, &prog, err, err_len);
    if (rc != 0) return rc;
    free(gbnf);
    char gerr[256];
    if (!model) {
        gram_program_free(&prog);
        slm_err(gerr, sizeof gerr, "grammar: no model");
        rc = SLM_GRAMMAR_INVALID;
    } else {
        rc = gram_grammar_new_for_model(&prog, &guard, model, out, gerr, sizeof gerr);
    }
    if (rc == SLM_GRAMMAR_CANCELLED || (rc == SLM_GRAMMAR_TOO_LARGE && guard.status))
        slm_err(err, err_len, "json schema: %s", gram_guard_message(&guard));
    else if (rc != 0)
        slm_err(err, err_len, "json schema: the generated grammar does not compile: %s", gerr);
    return rc;
}

int slm_grammar_from_json_schema(const slm_model *model, const char *schema_json, slm_grammar **out, char *err,
                                 size_t err_len) {
    return slm_grammar_from_json_schema_limited(model, schema_json, NULL, out, err, err_len);
}
