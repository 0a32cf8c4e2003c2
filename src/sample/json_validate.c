/* JSON Schema validation (the subset of docs/grammar.md) with jansson; patterns via PCRE2. */
#include "sample/json_validate.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

typedef struct vctx {
    json_t *root;
    char *err;
    size_t err_len;
    int depth;
} vctx;

/* Paths and messages quote keys and patterns from the input, which may hold control characters:
 * the message is escaped so it stays one line. */
__attribute__((format(printf, 3, 4))) static bool bad(vctx *v, const char *path, const char *fmt, ...) {
    if (v->err && v->err_len) {
        char line[1024];
        int n = snprintf(line, sizeof line, "%s: ", path);
        if (n >= 0 && (size_t)n < sizeof line) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
            va_end(ap);
        }
        slm_json_error_line(line, v->err, v->err_len);
    }
    return false;
}

static size_t utf8_length(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static bool type_is(const char *t, const json_t *x) {
    if (!strcmp(t, "null")) return json_is_null(x);
    if (!strcmp(t, "boolean")) return json_is_boolean(x);
    if (!strcmp(t, "integer")) return json_is_integer(x) || (json_is_real(x) && floor(json_real_value(x)) == json_real_value(x));
    if (!strcmp(t, "number")) return json_is_number(x);
    if (!strcmp(t, "string")) return json_is_string(x);
    if (!strcmp(t, "array")) return json_is_array(x);
    if (!strcmp(t, "object")) return json_is_object(x);
    return false;
}

bool slm_json_has_type(const json_t *types, const json_t *x) {
    if (!types) return true;
    if (json_is_string(types)) return type_is(json_string_value(types), x);
    for (size_t i = 0; i < json_array_size(types); i++)
        if (json_is_string(json_array_get(types, i)) && type_is(json_string_value(json_array_get(types, i)), x))
            return true;
    return false;
}

static bool regex_search(const char *pat, const char *s, size_t n) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &eo, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)s, n, 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static bool valid_date(const char *s, size_t n) {
    if (n != 10 || !regex_search("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", s, n)) return false;
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) return false;
    return d <= days[m - 1] + (m == 2 && leap(y));
}

static bool valid_time(const char *s, size_t n) {
    return regex_search("^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?(Z|z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$", s, n);
}

static bool valid_format(const char *fmt, const char *s, size_t n, bool *known) {
    *known = true;
    if (!strcmp(fmt, "date")) return valid_date(s, n);
    if (!strcmp(fmt, "time")) return valid_time(s, n);
    if (!strcmp(fmt, "date-time")) {
        const char *t = memchr(s, 'T', n);
        if (!t) t = memchr(s, 't', n);
        return t && valid_date(s, (size_t)(t - s)) && valid_time(t + 1, n - (size_t)(t - s) - 1);
    }
    if (!strcmp(fmt, "email"))
        return n <= 254 && regex_search("^[A-Za-z0-9_+-]+(\\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                                        "(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$", s, n);
    if (!strcmp(fmt, "uuid"))
        return regex_search("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", s, n);
    *known = false;
    return false;
}

const json_t *slm_json_pointer(const json_t *root, const char *ref) {
    if (ref[0] != '#') return NULL;
    char *tok = malloc(strlen(ref)); /* every segment is shorter than the whole reference */
    if (!tok) return NULL;
    const json_t *node = root;
    const char *p = ref + 1;
    while (*p && node) {
        if (*p != '/') {
            node = NULL;
            break;
        }
        p++;
        size_t n = 0;
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0') tok[n++] = '~', p += 2;
            else if (p[0] == '~' && p[1] == '1') tok[n++] = '/', p += 2;
            else tok[n++] = *p++;
        }
        tok[n] = 0;
        if (json_is_object(node)) {
            node = json_object_get(node, tok);
        } else if (json_is_array(node)) {
            char *end;
            long i = strtol(tok, &end, 10);
            node = (!n || *end || i < 0) ? NULL : json_array_get(node, (size_t)i);
        } else {
            node = NULL;
        }
    }
    free(tok);
    return node;
}

static char *short_value(const json_t *x, char *buf, size_t cap) {
    char *t = json_dumps(x, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, cap, "%.60s%s", t ? t : "?", t && strlen(t) > 60 ? "..." : "");
    free(t);
    return buf;
}

static bool validate(vctx *v, const json_t *s, const json_t *x, const char *path);

/* JSON Schema equality: numbers by value (1 equals 1.0), objects regardless of key order. */
bool slm_json_equal(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!slm_json_equal(json_array_get(a, i), json_array_get(b, i))) return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *key;
        json_t *va;
        json_object_foreach((json_t *)a, key, va) {
            const json_t *vb = json_object_get(b, key);
            if (!vb || !slm_json_equal(va, vb)) return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

bool slm_json_is_multiple(double x, double m) {
    if (!(m > 0) || !isfinite(x)) return false;
    double q = x / m;
    if (!isfinite(q)) return false;
    double r = fabs(q - nearbyint(q));
    return r <= 1e-9 * (fabs(q) > 1 ? fabs(q) : 1);
}

/* Does the value pass the schema? A quiet validate: errors of the branch are not reported. */
static bool passes(vctx *v, const json_t *s, const json_t *x, const char *path) {
    char *err = v->err;
    v->err = NULL;
    bool ok = validate(v, s, x, path);
    v->err = err;
    return ok;
}

static bool validate_number_bounds(vctx *v, const json_t *s, const json_t *x, const char *path) {
    double d = json_number_value(x);
    const json_t *b;
    char buf[80];
    if ((b = json_object_get(s, "minimum")) && d < json_number_value(b))
        return bad(v, path, "%s is below the minimum %g", short_value(x, buf, sizeof buf), json_number_value(b));
    if ((b = json_object_get(s, "maximum")) && d > json_number_value(b))
        return bad(v, path, "%s is above the maximum %g", short_value(x, buf, sizeof buf), json_number_value(b));
    if ((b = json_object_get(s, "exclusiveMinimum")) && d <= json_number_value(b))
        return bad(v, path, "%s is not above the exclusive minimum %g", short_value(x, buf, sizeof buf), json_number_value(b));
    if ((b = json_object_get(s, "exclusiveMaximum")) && d >= json_number_value(b))
        return bad(v, path, "%s is not below the exclusive maximum %g", short_value(x, buf, sizeof buf), json_number_value(b));
    if ((b = json_object_get(s, "multipleOf")) && !slm_json_is_multiple(d, json_number_value(b)))
        return bad(v, path, "%s is not a multiple of %g", short_value(x, buf, sizeof buf), json_number_value(b));
    return true;
}

static bool validate(vctx *v, const json_t *s, const json_t *x, const char *path) {
    if (json_is_true(s)) return true;
    if (json_is_false(s)) return bad(v, path, "no value is allowed here (schema false)");
    if (!json_is_object(s)) return bad(v, path, "schema is not an object");
    if (++v->depth > 200) return bad(v, path, "schema nesting too deep");
    bool ok = false;
    char buf[80];
    const json_t *k;
    if ((k = json_object_get(s, "$ref"))) {
        const json_t *t = json_is_string(k) ? slm_json_pointer(v->root, json_string_value(k)) : NULL;
        if (!t) {
            bad(v, path, "$ref does not resolve");
            goto out;
        }
        if (!validate(v, t, x, path)) goto out;
    }
    if ((k = json_object_get(s, "type"))) {
        if (!slm_json_has_type(k, x)) {
            char *t = json_dumps(k, JSON_COMPACT | JSON_ENCODE_ANY);
            bad(v, path, "%s is not of type %s", short_value(x, buf, sizeof buf), t ? t : "?");
            free(t);
            goto out;
        }
    }
    if ((k = json_object_get(s, "const")) && !slm_json_equal(k, x)) {
        bad(v, path, "%s is not the constant value", short_value(x, buf, sizeof buf));
        goto out;
    }
    if ((k = json_object_get(s, "enum"))) {
        bool m = false;
        for (size_t i = 0; i < json_array_size(k) && !m; i++) m = slm_json_equal(json_array_get(k, i), x);
        if (!m) {
            bad(v, path, "%s is not one of the enum values", short_value(x, buf, sizeof buf));
            goto out;
        }
    }
    if ((k = json_object_get(s, "anyOf"))) {
        bool m = false;
        for (size_t i = 0; i < json_array_size(k) && !m; i++) m = passes(v, json_array_get(k, i), x, path);
        if (!m) {
            bad(v, path, "%s matches none of anyOf", short_value(x, buf, sizeof buf));
            goto out;
        }
    }
    if ((k = json_object_get(s, "oneOf"))) {
        int m = 0;
        for (size_t i = 0; i < json_array_size(k); i++) m += passes(v, json_array_get(k, i), x, path);
        if (m != 1) {
            bad(v, path, "%s matches %d of oneOf (exactly one required)", short_value(x, buf, sizeof buf), m);
            goto out;
        }
    }
    if ((k = json_object_get(s, "allOf")))
        for (size_t i = 0; i < json_array_size(k); i++)
            if (!validate(v, json_array_get(k, i), x, path)) goto out;
    if ((k = json_object_get(s, "not")) && passes(v, k, x, path)) {
        bad(v, path, "%s matches the 'not' schema", short_value(x, buf, sizeof buf));
        goto out;
    }
    if ((k = json_object_get(s, "if"))) {
        const json_t *branch = json_object_get(s, passes(v, k, x, path) ? "then" : "else");
        if (branch && !validate(v, branch, x, path)) goto out;
    }
    if (json_is_number(x) && !validate_number_bounds(v, s, x, path)) goto out;
    if (json_is_string(x)) {
        const char *str = json_string_value(x);
        size_t n = json_string_length(x), cps = utf8_length(str, n);
        if ((k = json_object_get(s, "minLength")) && (double)cps < json_number_value(k)) {
            bad(v, path, "string of %zu characters is shorter than minLength %g", cps, json_number_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "maxLength")) && (double)cps > json_number_value(k)) {
            bad(v, path, "string of %zu characters is longer than maxLength %g", cps, json_number_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "pattern")) && json_is_string(k) && !regex_search(json_string_value(k), str, n)) {
            bad(v, path, "%s does not match the pattern %s", short_value(x, buf, sizeof buf), json_string_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "format")) && json_is_string(k)) {
            bool known;
            bool m = valid_format(json_string_value(k), str, n, &known);
            if (!known) {
                bad(v, path, "unsupported format '%s'", json_string_value(k));
                goto out;
            }
            if (!m) {
                bad(v, path, "%s is not a valid %s", short_value(x, buf, sizeof buf), json_string_value(k));
                goto out;
            }
        }
    }
    if (json_is_array(x)) {
        size_t n = json_array_size(x);
        if ((k = json_object_get(s, "minItems")) && (double)n < json_number_value(k)) {
            bad(v, path, "array of %zu items has fewer than minItems %g", n, json_number_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "maxItems")) && (double)n > json_number_value(k)) {
            bad(v, path, "array of %zu items has more than maxItems %g", n, json_number_value(k));
            goto out;
        }
        const json_t *prefix = json_object_get(s, "prefixItems"), *items = json_object_get(s, "items");
        if (json_is_array(items)) prefix = items, items = NULL; /* draft-07 tuple form */
        size_t n_prefix = json_array_size(prefix);
        for (size_t i = 0; i < n; i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            const json_t *is = i < n_prefix ? json_array_get(prefix, i) : items;
            if (is && !validate(v, is, json_array_get(x, i), sub)) goto out;
        }
        if (json_is_true(json_object_get(s, "uniqueItems")))
            for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                    if (slm_json_equal(json_array_get(x, i), json_array_get(x, j))) {
                        bad(v, path, "items %zu and %zu are equal (uniqueItems)", i, j);
                        goto out;
                    }
        if ((k = json_object_get(s, "contains"))) {
            size_t matches = 0;
            for (size_t i = 0; i < n; i++) matches += passes(v, k, json_array_get(x, i), path);
            const json_t *mn = json_object_get(s, "minContains"), *mx = json_object_get(s, "maxContains");
            double need = mn ? json_number_value(mn) : 1;
            if ((double)matches < need) {
                bad(v, path, "%zu items match 'contains', fewer than %g", matches, need);
                goto out;
            }
            if (mx && (double)matches > json_number_value(mx)) {
                bad(v, path, "%zu items match 'contains', more than maxContains %g", matches, json_number_value(mx));
                goto out;
            }
        }
    }
    if (json_is_object(x)) {
        const json_t *props = json_object_get(s, "properties"), *addl = json_object_get(s, "additionalProperties"),
                     *pprops = json_object_get(s, "patternProperties"), *names = json_object_get(s, "propertyNames");
        size_t np = json_object_size(x);
        if ((k = json_object_get(s, "minProperties")) && (double)np < json_number_value(k)) {
            bad(v, path, "object of %zu properties has fewer than minProperties %g", np, json_number_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "maxProperties")) && (double)np > json_number_value(k)) {
            bad(v, path, "object of %zu properties has more than maxProperties %g", np, json_number_value(k));
            goto out;
        }
        if ((k = json_object_get(s, "dependentRequired"))) {
            const char *dk;
            json_t *deps;
            json_object_foreach((json_t *)k, dk, deps) {
                if (!json_object_get(x, dk)) continue;
                for (size_t i = 0; i < json_array_size(deps); i++) {
                    const char *name = json_string_value(json_array_get(deps, i));
                    if (name && !json_object_get(x, name)) {
                        bad(v, path, "property '%s' requires '%s' (dependentRequired)", dk, name);
                        goto out;
                    }
                }
            }
        }
        if ((k = json_object_get(s, "required")))
            for (size_t i = 0; i < json_array_size(k); i++) {
                const char *name = json_string_value(json_array_get(k, i));
                if (name && !json_object_get(x, name)) {
                    bad(v, path, "required property '%s' is missing", name);
                    goto out;
                }
            }
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)x, key, val) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            if (names) {
                json_t *ks = json_stringn(key, strlen(key));
                bool ok_name = ks && validate(v, names, ks, sub);
                json_decref(ks);
                if (!ok_name) goto out;
            }
            const json_t *ps = props ? json_object_get(props, key) : NULL;
            bool matched = false;
            const char *pat;
            json_t *pschema;
            if (json_is_object(pprops)) json_object_foreach((json_t *)pprops, pat, pschema) {
                    if (!regex_search(pat, key, strlen(key))) continue;
                    matched = true;
                    if (!validate(v, pschema, val, sub)) goto out;
                }
            if (ps) {
                if (!validate(v, ps, val, sub)) goto out;
            } else if (matched) {
            } else if (addl) {
                if (json_is_false(addl)) {
                    bad(v, path, "property '%s' is not allowed (additionalProperties false)", key);
                    goto out;
                }
                if (!validate(v, addl, val, sub)) goto out;
            }
        }
    }
    ok = true;
out:
    v->depth--;
    return ok;
}

bool slm_json_valid_node(const json_t *root, const json_t *schema, const json_t *x) {
    vctx v = {.root = (json_t *)root};
    return validate(&v, schema, x, "$");
}

bool slm_json_regex_search(const char *pat, const char *s, size_t n) { return regex_search(pat, s, n); }

const char *slm_json_error_line(const char *text, char *buf, size_t cap) {
    if (!cap) return buf;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && o + 5 <= cap; p++) {
        if (*p == '\n') o += (size_t)snprintf(buf + o, cap - o, "\\n");
        else if (*p == '\t') o += (size_t)snprintf(buf + o, cap - o, "\\t");
        else if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(buf + o, cap - o, "\\x%02X", *p);
        else buf[o++] = (char)*p;
    }
    buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

int slm_json_validate(const char *schema_json, const char *text, size_t len, char *err, size_t err_len) {
    json_error_t je;
    char why[sizeof je.text * 4];
    json_t *schema = json_loads(schema_json, JSON_DECODE_ANY, &je);
    if (!schema)
        return slm_err(err, err_len, "schema is not valid JSON: %s", slm_json_error_line(je.text, why, sizeof why));
    json_t *x = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!x) {
        json_decref(schema);
        return slm_err(err, err_len, "output is not valid JSON (line %d, column %d): %s", je.line, je.column,
                       slm_json_error_line(je.text, why, sizeof why));
    }
    vctx v = {.root = schema, .err = err, .err_len = err_len};
    const json_t *t = json_object_get(schema, "type");
    bool ok;
    if (json_is_object(schema) && json_object_size(schema) == 1 && json_is_string(t) &&
        !strcmp(json_string_value(t), "json_object"))
        ok = json_is_object(x) || bad(&v, "$", "output is not a JSON object");
    else
        ok = validate(&v, schema, x, "$");
    json_decref(x);
    json_decref(schema);
    return ok ? 0 : -1;
}
