/* The YAML config file (see slm_config.h): libyaml builds the document, this file checks every
 * node against the schema and copies the values out. */
#include "slm_config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/err.h"

#define MAX_CONFIG_BYTES ((size_t)1 << 20)

typedef struct parse {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t err_len;
} parse;

__attribute__((format(printf, 3, 4))) static int fail_at(parse *p, const yaml_node_t *n, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        return slm_err(p->err, p->err_len, "%s:%zu:%zu: %s", p->name, n->start_mark.line + 1, n->start_mark.column + 1, msg);
    return slm_err(p->err, p->err_len, "%s: %s", p->name, msg);
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_string(parse *p, const yaml_node_t *n, const char *key, char **out) {
    const char *v = scalar(n);
    if (!v) return fail_at(p, n, "'%s' must be a string", key);
    if (strlen(v) != n->data.scalar.length) return fail_at(p, n, "'%s' contains a NUL byte", key);
    if (!*v) return fail_at(p, n, "'%s' must not be empty", key);
    free(*out);
    *out = strdup(v);
    return *out ? 0 : fail_at(p, n, "out of memory");
}

static int get_number(parse *p, const yaml_node_t *n, const char *key, double lo, double hi, double *out) {
    const char *v = scalar(n);
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !*v || errno || *end || !isfinite(d)) return fail_at(p, n, "'%s' must be a number", key);
    if (d < lo || d > hi) return fail_at(p, n, "'%s' must be in [%g, %g], not %g", key, lo, hi, d);
    *out = d;
    return 0;
}

static int get_int(parse *p, const yaml_node_t *n, const char *key, int lo, int hi, int *out) {
    double d;
    if (get_number(p, n, key, lo, hi, &d)) return -1;
    if (d != floor(d)) return fail_at(p, n, "'%s' must be a whole number", key);
    *out = (int)d;
    return 0;
}

static int get_bool(parse *p, const yaml_node_t *n, const char *key, int *out) {
    const char *v = scalar(n);
    if (v && (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))) *out = 1;
    else if (v && (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))) *out = 0;
    else return fail_at(p, n, "'%s' must be true or false", key);
    return 0;
}

static int get_choice(parse *p, const yaml_node_t *n, const char *key, const char *const *choices, int *out) {
    const char *v = scalar(n);
    for (int i = 0; v && choices[i]; i++)
        if (!strcmp(v, choices[i])) {
            *out = i;
            return 0;
        }
    char list[200] = "";
    for (int i = 0; choices[i]; i++) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    return fail_at(p, n, "'%s' must be one of %s", key, list);
}

/* Calls fn for every (key, value) of a mapping node; refuses anything else. */
typedef int (*pair_fn)(parse *p, const char *key, const yaml_node_t *key_node, const yaml_node_t *value, void *user);

static int each_pair(parse *p, const yaml_node_t *map, const char *what, pair_fn fn, void *user) {
    if (!map || map->type != YAML_MAPPING_NODE) return fail_at(p, map, "%s must be a mapping", what);
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        const yaml_node_t *k = yaml_document_get_node(p->doc, pr->key);
        const yaml_node_t *v = yaml_document_get_node(p->doc, pr->value);
        const char *key = scalar(k);
        if (!key) return fail_at(p, k, "%s: keys must be plain strings", what);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pr; q++) {
            const char *prev = scalar(yaml_document_get_node(p->doc, q->key));
            if (prev && !strcmp(prev, key)) return fail_at(p, k, "%s: '%s' is given twice", what, key);
        }
        if (fn(p, key, k, v, user)) return -1;
    }
    return 0;
}

static int price_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config_price *pr = user;
    if (!strcmp(key, "input")) return get_number(p, v, "price.input", 0, 1e6, &pr->input);
    if (!strcmp(key, "output")) return get_number(p, v, "price.output", 0, 1e6, &pr->output);
    return fail_at(p, k, "unknown key 'price.%s' (input, output)", key);
}

static int model_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config_model *m = user;
    if (!strcmp(key, "path")) return get_string(p, v, "path", &m->path);
    if (!strcmp(key, "price")) return each_pair(p, v, "price", price_pair, &m->price);
    return fail_at(p, k, "unknown key '%s' in model '%s' (path, price)", key, m->name);
}

static int upstream_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config_upstream *u = user;
    if (!strcmp(key, "url")) {
        if (get_string(p, v, "url", &u->url)) return -1;
        if (strncmp(u->url, "http://", 7) && strncmp(u->url, "https://", 8))
            return fail_at(p, v, "'url' must start with http:// or https://");
        return 0;
    }
    if (!strcmp(key, "model")) return get_string(p, v, "model", &u->model);
    if (!strcmp(key, "key_env")) return get_string(p, v, "key_env", &u->key_env);
    if (!strcmp(key, "ca_file")) return get_string(p, v, "ca_file", &u->ca_file);
    if (!strcmp(key, "price")) return each_pair(p, v, "price", price_pair, &u->price);
    if (!strcmp(key, "timeout")) return get_number(p, v, "timeout", 0.1, 86400, &u->timeout_s);
    if (!strcmp(key, "max_retries")) return get_int(p, v, "max_retries", 0, 20, &u->max_retries);
    if (!strcmp(key, "key"))
        return fail_at(p, k, "API keys do not belong in the config file: put the key in an environment variable "
                             "and name it with key_env");
    return fail_at(p, k, "unknown key '%s' in upstream '%s' (url, model, key_env, price, timeout, max_retries, ca_file)",
                   key, u->name);
}

static int cascade_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config_route *r = user;
    if (!strcmp(key, "threshold")) return get_number(p, v, "cascade.threshold", 0, 1, &r->cascade_threshold);
    return fail_at(p, k, "unknown key 'cascade.%s' (threshold)", key);
}

static int route_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config_route *r = user;
    if (!strcmp(key, "local")) return get_string(p, v, "local", &r->local);
    if (!strcmp(key, "upstream")) return get_string(p, v, "upstream", &r->upstream);
    if (!strcmp(key, "router")) return get_string(p, v, "router", &r->router);
    if (!strcmp(key, "frontier_share")) return get_number(p, v, "frontier_share", 0, 1, &r->frontier_share);
    if (!strcmp(key, "pii")) {
        static const char *const c[] = {"local", "mask", "block", NULL};
        int i;
        if (get_choice(p, v, "pii", c, &i)) return -1;
        r->pii = (slm_route_pii)i;
        return 0;
    }
    if (!strcmp(key, "on_upstream_error")) {
        static const char *const c[] = {"local", "error", NULL};
        int i;
        if (get_choice(p, v, "on_upstream_error", c, &i)) return -1;
        r->fallback_local = i == 0;
        return 0;
    }
    if (!strcmp(key, "cascade")) {
        r->cascade = true;
        return each_pair(p, v, "cascade", cascade_pair, r);
    }
    return fail_at(p, k,
                   "unknown key '%s' in route '%s' (local, upstream, router, frontier_share, pii, on_upstream_error, cascade)",
                   key, r->name);
}

static int server_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config *c = user;
    if (!strcmp(key, "host")) return get_string(p, v, "host", &c->host);
    if (!strcmp(key, "port")) return get_int(p, v, "port", 0, 65535, &c->port);
    if (!strcmp(key, "data_dir")) return get_string(p, v, "data_dir", &c->data_dir);
    if (!strcmp(key, "air_gapped")) return get_bool(p, v, "air_gapped", &c->air_gapped);
    if (!strcmp(key, "audit_sign")) return get_bool(p, v, "audit_sign", &c->audit_sign);
    if (!strcmp(key, "pii_output")) return get_bool(p, v, "pii_output", &c->pii_output);
    if (!strcmp(key, "api_keys_env")) return get_string(p, v, "api_keys_env", &c->api_keys_env);
    if (!strcmp(key, "audit_content")) {
        static const char *const ch[] = {"none", "hash", "redacted", "full", NULL};
        int i;
        if (get_choice(p, v, "audit_content", ch, &i)) return -1;
        return get_string(p, v, "audit_content", &c->audit_content);
    }
    if (!strcmp(key, "pii")) {
        static const char *const ch[] = {"off", "detect", "mask", "block", NULL};
        int i;
        if (get_choice(p, v, "pii", ch, &i)) return -1;
        return get_string(p, v, "pii", &c->pii);
    }
    return fail_at(p, k,
                   "unknown key 'server.%s' (host, port, data_dir, air_gapped, audit_content, audit_sign, pii, "
                   "pii_output, api_keys_env)",
                   key);
}

/* Names of models, upstreams and routes share one namespace: clients send them as "model". */
static int check_name(parse *p, const slm_config *c, const yaml_node_t *k, const char *name) {
    for (const char *s = name; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("._-:", *s)))
            return fail_at(p, k, "name '%s': only letters, digits, '.', '_', '-' and ':'", name);
    for (int i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return fail_at(p, k, "name '%s' is used twice", name);
    for (int i = 0; i < c->n_upstreams; i++)
        if (!strcmp(c->upstreams[i].name, name)) return fail_at(p, k, "name '%s' is used twice", name);
    for (int i = 0; i < c->n_routes; i++)
        if (!strcmp(c->routes[i].name, name)) return fail_at(p, k, "name '%s' is used twice", name);
    return 0;
}

static int models_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config *c = user;
    if (c->n_models == SLM_CONFIG_MAX) return fail_at(p, k, "at most %d models", SLM_CONFIG_MAX);
    if (check_name(p, c, k, key)) return -1;
    slm_config_model *m = &c->models[c->n_models++];
    if (!(m->name = strdup(key))) return fail_at(p, k, "out of memory");
    if (each_pair(p, v, "a model", model_pair, m)) return -1;
    if (!m->path) return fail_at(p, v, "model '%s' needs a path", key);
    return 0;
}

static int upstreams_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config *c = user;
    if (c->n_upstreams == SLM_CONFIG_MAX) return fail_at(p, k, "at most %d upstreams", SLM_CONFIG_MAX);
    if (check_name(p, c, k, key)) return -1;
    slm_config_upstream *u = &c->upstreams[c->n_upstreams++];
    u->max_retries = -1;
    if (!(u->name = strdup(key))) return fail_at(p, k, "out of memory");
    if (each_pair(p, v, "an upstream", upstream_pair, u)) return -1;
    if (!u->url || !u->model) return fail_at(p, v, "upstream '%s' needs url and model", key);
    return 0;
}

static int routes_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config *c = user;
    if (c->n_routes == SLM_CONFIG_MAX) return fail_at(p, k, "at most %d routes", SLM_CONFIG_MAX);
    if (check_name(p, c, k, key)) return -1;
    slm_config_route *r = &c->routes[c->n_routes++];
    r->frontier_share = 0.3;
    r->pii = SLM_ROUTE_PII_LOCAL;
    r->fallback_local = true;
    r->cascade_threshold = -1; /* calibrated from frontier_share unless given */
    if (!(r->name = strdup(key))) return fail_at(p, k, "out of memory");
    if (each_pair(p, v, "a route", route_pair, r)) return -1;
    if (!r->local) return fail_at(p, v, "route '%s' needs 'local' (a model name)", key);
    return 0;
}

static int top_pair(parse *p, const char *key, const yaml_node_t *k, const yaml_node_t *v, void *user) {
    slm_config *c = user;
    if (!strcmp(key, "server")) return each_pair(p, v, "server", server_pair, c);
    if (!strcmp(key, "models")) return each_pair(p, v, "models", models_pair, c);
    if (!strcmp(key, "upstreams")) return each_pair(p, v, "upstreams", upstreams_pair, c);
    if (!strcmp(key, "routes")) return each_pair(p, v, "routes", routes_pair, c);
    return fail_at(p, k, "unknown top-level key '%s' (server, models, upstreams, routes)", key);
}

/* Routes name models and upstreams defined in the same file. */
static int check_references(parse *p, slm_config *c) {
    for (int i = 0; i < c->n_routes; i++) {
        slm_config_route *r = &c->routes[i];
        bool found = false;
        for (int j = 0; j < c->n_models; j++) found |= !strcmp(c->models[j].name, r->local);
        if (!found) return fail_at(p, NULL, "route '%s': local model '%s' is not defined under models", r->name, r->local);
        if (r->upstream) {
            found = false;
            for (int j = 0; j < c->n_upstreams; j++) found |= !strcmp(c->upstreams[j].name, r->upstream);
            if (!found)
                return fail_at(p, NULL, "route '%s': upstream '%s' is not defined under upstreams", r->name, r->upstream);
        }
    }
    return 0;
}

int slm_config_parse(const char *text, size_t len, const char *name, slm_config **out, char *err, size_t err_len) {
    *out = NULL;
    if (!name) name = "config";
    if (len > MAX_CONFIG_BYTES) return slm_err(err, err_len, "%s: larger than %zu bytes", name, MAX_CONFIG_BYTES);
    slm_config *c = calloc(1, sizeof *c);
    if (!c) return slm_err(err, err_len, "out of memory");
    c->port = -1;
    c->air_gapped = c->audit_sign = c->pii_output = -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        free(c);
        return slm_err(err, err_len, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = -1;
    if (!yaml_parser_load(&parser, &doc)) {
        slm_err(err, err_len, "%s:%zu:%zu: %s%s%s", name, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
                parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        slm_config_free(c);
        return -1;
    }
    parse p = {.doc = &doc, .name = name, .err = err, .err_len = err_len};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = slm_err(err, err_len, "%s: the file is empty", name);
    } else if (each_pair(&p, root, "the file", top_pair, c) == 0 && check_references(&p, c) == 0) {
        rc = 0;
    }
    /* a second document would be silently ignored: refuse it */
    if (rc == 0) {
        yaml_document_t more;
        if (yaml_parser_load(&parser, &more)) {
            if (yaml_document_get_root_node(&more)) rc = slm_err(err, err_len, "%s: only one YAML document is allowed", name);
            yaml_document_delete(&more);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) {
        slm_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int slm_config_load(const char *path, slm_config **out, char *err, size_t err_len) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return slm_err(err, err_len, "cannot open config %s: %s", path, strerror(errno));
    char *buf = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_BYTES + 1, fp) : 0;
    bool read_err = ferror(fp);
    fclose(fp);
    if (!buf) return slm_err(err, err_len, "out of memory");
    if (read_err) {
        free(buf);
        return slm_err(err, err_len, "cannot read config %s", path);
    }
    int rc = slm_config_parse(buf, n, path, out, err, err_len);
    free(buf);
    if (rc) return -1;
    /* model paths are relative to the config file's folder */
    const char *slash = strrchr(path, '/');
    for (int i = 0; slash && i < (*out)->n_models; i++) {
        slm_config_model *m = &(*out)->models[i];
        if (m->path[0] == '/') continue;
        size_t dir_len = (size_t)(slash - path);
        char *full = malloc(dir_len + 1 + strlen(m->path) + 1);
        if (!full) {
            slm_config_free(*out);
            *out = NULL;
            return slm_err(err, err_len, "out of memory");
        }
        sprintf(full, "%.*s/%s", (int)dir_len, path, m->path);
        free(m->path);
        m->path = full;
    }
    return 0;
}

void slm_config_free(slm_config *c) {
    if (!c) return;
    free(c->host);
    free(c->data_dir);
    free(c->audit_content);
    free(c->pii);
    free(c->api_keys_env);
    for (int i = 0; i < c->n_models; i++) {
        free(c->models[i].name);
        free(c->models[i].path);
    }
    for (int i = 0; i < c->n_upstreams; i++) {
        slm_config_upstream *u = &c->upstreams[i];
        free(u->name);
        free(u->url);
        free(u->model);
        free(u->key_env);
        free(u->ca_file);
    }
    for (int i = 0; i < c->n_routes; i++) {
        slm_config_route *r = &c->routes[i];
        free(r->name);
        free(r->local);
        free(r->upstream);
        free(r->router);
    }
    free(c);
}
