/* Request-field validation: the JSON body and typed fields, each failure naming its field. */
#include "fields.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


bool srv_failf(srv_fail *f, int status, const char *code, const char *param, const char *fmt, ...) {
    f->status = status;
    f->code = code;
    snprintf(f->param, sizeof f->param, "%s", param ? param : "");
    char raw[sizeof f->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Messages may quote client text: escape control bytes so an error stays one line. */
    slm_json_error_line(raw, f->msg, sizeof f->msg);
    return false;
}

json_t *srv_parse_body(srv_conn *c, srv_fail *f) {
    if (c->body.len == 0) {
        srv_failf(f, 400, NULL, NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(c->body.s, c->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        srv_failf(f, 400, NULL, NULL, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        srv_failf(f, 400, NULL, NULL, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

bool srv_json_string(json_t *obj, const char *key, const char **out, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) return srv_failf(f, 400, NULL, key, "'%s' must be a string", key);
    *out = json_string_value(v);
    return true;
}

bool srv_json_bool(json_t *obj, const char *key, bool *out, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return srv_failf(f, 400, NULL, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

bool srv_json_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, bool *present, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (present) *present = false;
    if (!v || json_is_null(v)) return true;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) {
        /* 3.0 is accepted as 3; range-check before converting (1e308 does not fit a long long) */
        double d = json_real_value(v);
        if (d < (double)lo || d > (double)hi)
            return srv_failf(f, 400, NULL, key, "'%s' must be between %lld and %lld", key, lo, hi);
        x = (long long)d;
    } else {
        return srv_failf(f, 400, NULL, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi) return srv_failf(f, 400, NULL, key, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = x;
    if (present) *present = true;
    return true;
}

bool srv_json_number(json_t *obj, const char *key, double lo, double hi, double *out, bool *present, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (present) *present = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return srv_failf(f, 400, NULL, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return srv_failf(f, 400, NULL, key, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    if (present) *present = true;
    return true;
}

bool srv_json_token_ids(json_t *arr, int n_vocab, slm_token *out) {
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) return false;
        out[i] = (slm_token)json_integer_value(t);
    }
    return true;
}

