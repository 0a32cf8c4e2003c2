/* JSON Schema → GBNF. Every schema node becomes one rule; $ref targets are memoised by node so
 * recursive schemas become recursive rules. The generated language is always a subset of what the
 * schema accepts (compact JSON, no free whitespace), so every sentence validates; where an exact
 * grammar is impractical the subset is narrower (documented in docs/grammar.md) rather than wider. */
#include "sample/json_schema.h"

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
    "exclusiveMaximum", "$ref", "$defs", "definitions",
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
    "json-value ::= json-object | json-array | json-string | json-number | \"true\" | \"false\" | \"null\"\n"
    "json-object ::= \"{\" (json-string \":\" json-value (\",\" json-string \":\" json-value)*)? \"}\"\n"
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

static void gen_array(conv *c, const json_t *s, slm_buf *b) {
    const json_t *items = json_object_get(s, "items");
    char item[32] = "json-value";
    if (items) {
        if (json_is_array(items)) {
            fail(c, "json schema: 'items' as an array (tuple validation) is not supported");
            return;
        }
        if (!gen_schema(c, items, item)) return;
    }
    long long mn, mx;
    if (!get_count_range(c, s, "minItems", "maxItems", &mn, &mx)) return;
    if (mx == 0) {
        slm_buf_puts(b, "\"[]\"");
        return;
    }
    char rest[64];
    long long rmin = mn > 0 ? mn - 1 : 0;
    if (mx < 0) snprintf(rest, sizeof rest, "{%lld,}", rmin);
    else snprintf(rest, sizeof rest, "{%lld,%lld}", rmin, mx - 1);
    if (mn == 0) slm_buf_printf(b, "\"[\" (%s (\",\" %s)%s)? \"]\"", item, item, rest);
    else slm_buf_printf(b, "\"[\" %s (\",\" %s)%s \"]\"", item, item, rest);
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

static void gen_object(conv *c, const json_t *s, slm_buf *b) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
                 *addl = json_object_get(s, "additionalProperties");
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
    /* property list: declared properties, then required names not declared (any value) */
    size_t n = (props ? json_object_size(props) : 0) + (req ? json_array_size(req) : 0);
    uint32_t *index_tab = NULL;
    const char **keys = calloc(n + 1, sizeof *keys);
    const json_t **schemas = calloc(n + 1, sizeof *schemas);
    bool *required = calloc(n + 1, sizeof *required);
    if (!keys || !schemas || !required) {
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
    for (size_t i = 0; req && i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        if (!json_is_string(r)) {
            fail(c, "json schema: 'required' must list strings");
            goto done;
        }
        size_t j = name_slot_find(index_tab, tab_cap, keys, json_string_value(r), k);
        if (j == k) {
            if (addl && json_is_false(addl)) {
                fail(c, "json schema: required property '%s' is not allowed by additionalProperties false",
                     json_string_value(r));
                goto done;
            }
            keys[k] = json_string_value(r);
            name_slot_set(index_tab, tab_cap, keys, keys[k], k);
            schemas[k++] = NULL;
        }
        required[j] = true;
    }
    if (k == 0) {
        if (addl && json_is_false(addl)) {
            slm_buf_puts(b, "\"{}\"");
        } else {
            /* a map: any keys, values by additionalProperties */
            char vname[32] = "json-value";
            if (addl && json_is_object(addl) && !gen_schema(c, addl, vname)) goto done;
            slm_buf_printf(b, "\"{\" (json-string \":\" %s (\",\" json-string \":\" %s)*)? \"}\"", vname, vname);
        }
        goto done;
    }
    /* Properties in declared order, each optional one present or not. head_i: nothing written yet,
     * properties i.. left; tail_i: something written (so a comma comes first). Extra properties are
     * never generated when properties are declared (a valid subset). */
    char (*head)[32] = calloc(k + 1, 32), (*tail)[32] = calloc(k + 1, 32);
    if (!head || !tail) {
        free(head);
        free(tail);
        fail(c, "json schema: out of memory");
        goto done;
    }
    strcpy(head[k], "\"\"");
    strcpy(tail[k], "\"\"");
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
        slm_buf body = {0};
        new_rule_name(c, tail[i]);
        if (required[i]) slm_buf_printf(&body, "\",\" %s %s", kv.s, tail[i + 1]);
        else slm_buf_printf(&body, "(\",\" %s)? %s", kv.s, tail[i + 1]);
        emit_rule(c, tail[i], &body);
        free(body.s);
        body = (slm_buf){0};
        new_rule_name(c, head[i]);
        if (required[i]) slm_buf_printf(&body, "%s %s", kv.s, tail[i + 1]);
        else slm_buf_printf(&body, "%s %s | %s", kv.s, tail[i + 1], head[i + 1]);
        emit_rule(c, head[i], &body);
        free(body.s);
        free(kv.s);
    }
    slm_buf_printf(b, "\"{\" %s \"}\"", head[0]);
    free(head);
    free(tail);
done:
    free(index_tab);
    free(keys);
    free(schemas);
    free(required);
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
        else if (json_object_get(s, "items") || json_object_get(s, "minItems") || json_object_get(s, "maxItems"))
            t = "array";
        else if (json_object_get(s, "pattern") || json_object_get(s, "format") || json_object_get(s, "minLength") ||
                 json_object_get(s, "maxLength"))
            t = "string";
        else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") ||
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
        slm_buf_puts(&c.out, "root ::= json-object\n");
    } else {
        char name[32];
        if (gen_schema(&c, root, name)) slm_buf_printf(&c.out, "root ::= %s\n", name);
    }
    slm_buf_puts(&c.out, json_rules);
    slm_buf_puts(&c.out, format_rules);
    free(c.refs);
    free(c.ref_tab);
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
