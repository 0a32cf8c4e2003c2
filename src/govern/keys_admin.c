/* Creating, describing and parsing keys for the CLI and the admin HTTP API (see slm_govern.h). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm_govern.h"
#include "util/err.h"

static int check_list(const char *what, const char *list, char *err, size_t err_len) {
    for (const char *c = list; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == ' ')
            return slm_err(err, err_len, "%s list '%.100s': names are separated by commas, without spaces", what, list);
    if (list[0] == ',' || (list[0] && list[strlen(list) - 1] == ',') || strstr(list, ",,"))
        return slm_err(err, err_len, "%s list '%.100s' has an empty name", what, list);
    return 0;
}

static int check_models(const char *models, char *err, size_t err_len) { return check_list("model", models, err, err_len); }

int slm_key_create(slm_store *s, slm_key_info *key, char *secret_out, char *err, size_t err_len) {
    if (slm_key_name_check(key->name, err, err_len) || check_models(key->models, err, err_len) ||
        check_list("collection", key->collections, err, err_len))
        return -1;
    if (key->rpm < 0 || key->tpm < 0) return slm_err(err, err_len, "rpm and tpm are >= 0 (0 = unlimited)");
    if (key->pii[0] && slm_pii_policy_parse(key->pii) < 0)
        return slm_err(err, err_len, "pii policy '%s': expected off, detect, mask or block", key->pii);
    if (slm_key_new_secret(secret_out)) return slm_err(err, err_len, "cannot draw random bytes for the secret");
    char hash[SLM_KEY_HASH_LEN + 1];
    slm_key_hash(secret_out, hash);
    snprintf(key->prefix, sizeof key->prefix, "%.10s", secret_out);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    key->created = (double)ts.tv_sec;
    key->revoked = 0;
    if (slm_store_key_add(s, key, hash, err, err_len)) {
        memset(secret_out, 0, SLM_KEY_SECRET_LEN + 1);
        return -1;
    }
    return 0;
}

static json_t *list_array(const char *list) {
    json_t *arr = json_array();
    for (const char *s = list; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        json_array_append_new(arr, json_stringn(s, len));
        if (!comma) break;
        s = comma + 1;
    }
    return arr;
}

static json_t *key_object(const slm_key_info *k) {
    json_t *models = list_array(k->models);
    json_t *o = json_pack("{s:s, s:s, s:o, s:b, s:b, s:i, s:i, s:I, s:b}", "name", k->name, "prefix", k->prefix, "models",
                          models, "local_only", k->local_only, "admin", k->admin, "rpm", k->rpm, "tpm", k->tpm, "created",
                          (json_int_t)k->created, "revoked", k->revoked > 0);
    if (!o) return NULL;
    if (k->budget_period != SLM_BUDGET_NONE) {
        char b[64];
        snprintf(b, sizeof b, "%g/%s", k->budget_usd, slm_budget_period_name(k->budget_period));
        json_object_set_new(o, "budget", json_string(b));
    } else {
        json_object_set_new(o, "budget", json_null());
    }
    json_object_set_new(o, "pii", k->pii[0] ? json_string(k->pii) : json_null());
    /* [] = every collection */
    json_object_set_new(o, "collections", list_array(k->collections));
    if (k->revoked > 0) json_object_set_new(o, "revoked_at", json_integer((json_int_t)k->revoked));
    return o;
}

char *slm_key_json(const slm_key_info *key) {
    json_t *o = key_object(key);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

char *slm_key_list_json(slm_store *s, char *err, size_t err_len) {
    slm_key_info *keys = NULL;
    int n = slm_store_key_list(s, &keys, err, err_len);
    if (n < 0) return NULL;
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) json_array_append_new(arr, key_object(&keys[i]));
    free(keys);
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text) slm_err(err, err_len, "out of memory");
    return text;
}

static int copy_string(json_t *v, const char *field, char *out, size_t cap, char *err, size_t err_len) {
    if (!json_is_string(v)) return slm_err(err, err_len, "'%s' must be a string", field);
    if (json_string_length(v) >= cap) return slm_err(err, err_len, "'%s' is too long (at most %zu bytes)", field, cap - 1);
    if (strlen(json_string_value(v)) != json_string_length(v)) return slm_err(err, err_len, "'%s' contains a NUL", field);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

/* A list given as a JSON array of names or as one comma-separated string, into out. */
static int copy_list(json_t *v, const char *field, char *out, size_t cap, char *err, size_t err_len) {
    if (!json_is_array(v)) return copy_string(v, field, out, cap, err, err_len);
    out[0] = 0;
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_string(m) || json_string_length(m) == 0 || strlen(json_string_value(m)) != json_string_length(m))
            return slm_err(err, err_len, "'%s' must list non-empty strings", field);
        size_t used = strlen(out);
        if (used + json_string_length(m) + 2 > cap) return slm_err(err, err_len, "'%s' is too long", field);
        snprintf(out + used, cap - used, "%s%s", used ? "," : "", json_string_value(m));
    }
    return 0;
}

static int limit_value(json_t *v, const char *field, int *out, char *err, size_t err_len) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000000)
        return slm_err(err, err_len, "'%s' must be an integer >= 0 (0 = unlimited)", field);
    *out = (int)json_integer_value(v);
    return 0;
}

int slm_key_from_json(const char *text, size_t len, slm_key_info *key, char *err, size_t err_len) {
    memset(key, 0, sizeof *key);
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return slm_err(err, err_len, "the body must be a JSON object (%s)", o ? "got another JSON value" : je.text);
    }
    int rc = 0;
    const char *field;
    json_t *v;
    json_object_foreach(o, field, v) {
        if (strcmp(field, "name") == 0) {
            rc = copy_string(v, field, key->name, sizeof key->name, err, err_len);
        } else if (strcmp(field, "models") == 0) {
            rc = copy_list(v, field, key->models, sizeof key->models, err, err_len);
        } else if (strcmp(field, "collections") == 0) {
            rc = copy_list(v, field, key->collections, sizeof key->collections, err, err_len);
        } else if (strcmp(field, "local_only") == 0 || strcmp(field, "admin") == 0) {
            if (!json_is_boolean(v)) rc = slm_err(err, err_len, "'%s' must be true or false", field);
            else if (field[0] == 'l') key->local_only = json_is_true(v);
            else key->admin = json_is_true(v);
        } else if (strcmp(field, "rpm") == 0) {
            rc = limit_value(v, field, &key->rpm, err, err_len);
        } else if (strcmp(field, "tpm") == 0) {
            rc = limit_value(v, field, &key->tpm, err, err_len);
        } else if (strcmp(field, "budget") == 0) {
            if (!json_is_null(v)) {
                char b[64];
                rc = copy_string(v, field, b, sizeof b, err, err_len);
                if (!rc) rc = slm_budget_parse(b, &key->budget_usd, &key->budget_period, err, err_len);
            }
        } else if (strcmp(field, "pii") == 0) {
            if (!json_is_null(v)) rc = copy_string(v, field, key->pii, sizeof key->pii, err, err_len);
        } else {
            rc = slm_err(err, err_len, "unknown field '%.60s' (name, models, collections, local_only, admin, rpm, tpm, budget, pii)", field);
        }
        if (rc) break;
    }
    json_decref(o);
    if (!rc && !key->name[0]) rc = slm_err(err, err_len, "'name' is required");
    return rc;
}
