/* slm serve's state and gate set-up (see setup.h). */
#include "setup.h"
#include "api_lora.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm_audit.h"
#include "slm_config.h"
#include "slm_govern.h"
#include "slm_net.h"
#include "slm_pii.h"
#include "slm_route.h"
#include "slm_router.h"
#include "slm_upstream.h"
#include "rag_chat.h"

int srv_open_state(srv_server *s, char *err, size_t err_len) {
    const srv_config *c = &s->cfg;
    if (c->air_gapped) slm_net_set_air_gapped(true);
    if (!c->no_data_dir) {
        char def[PATH_MAX];
        const char *dir = c->data_dir ? c->data_dir : slm_data_dir_default(def, sizeof def);
        if (!dir) return snprintf(err, err_len, "cannot work out the data directory: give --data-dir"), -1;
        if (slm_store_open(dir, &s->store, err, err_len) || srv_rag_open(s, dir, err, err_len)) return -1;
        if (!c->no_audit) {
            slm_audit_options ao = {.sign = c->audit_sign};
            if (slm_audit_open(dir, &ao, &s->audit, err, err_len)) return -1;
        }
    }
    bool routes = c->file && c->file->n_routes > 0;
    if (c->pii_policy != SLM_PII_POLICY_OFF || c->pii_output || s->audit || routes) {
        s->pii = slm_pii_new(err, err_len);
        if (!s->pii) return -1;
    }
    return 0;
}

int srv_remote_in_flight(const srv_server *s) {
    int n = 0;
    for (int i = 0; i < s->n_upstreams; i++) {
        slm_upstream_stats st;
        slm_upstream_get_stats(s->upstreams[i], &st);
        n += (int)st.in_flight;
    }
    return n;
}

void srv_close_backends(srv_server *s) {
    for (int i = 0; i < s->n_cascades; i++) slm_cascade_free(s->cascades[i]);
    for (int i = 0; i < s->n_upstreams; i++) slm_upstream_free(s->upstreams[i]);
    s->n_cascades = s->n_upstreams = 0;
}

void srv_close_state(srv_server *s) {
    srv_close_backends(s);
    srv_lora_shutdown(); /* after the engine: no request applies an adapter any more */
    for (int i = 0; i < s->n_routers; i++) slm_router_free(s->routers[i]);
    slm_audit_close(s->audit);
    srv_rag_close(s);
    slm_store_close(s->store);
    slm_pii_free(s->pii);
    s->n_upstreams = s->n_routers = s->n_cascades = 0;
    s->audit = NULL;
    s->store = NULL;
    s->pii = NULL;
}

/* ---------- prices ---------- */

static const slm_config_price *price_of(const slm_config *f, const char *name) {
    for (int i = 0; f && i < f->n_models; i++)
        if (!strcmp(f->models[i].name, name)) return &f->models[i].price;
    for (int i = 0; f && i < f->n_upstreams; i++)
        if (!strcmp(f->upstreams[i].name, name)) return &f->upstreams[i].price;
    return NULL;
}

/* USD for a call at its model's (or upstream's) price; the counterfactual is the first upstream's. */
static double call_cost(void *user, const char *model, const char *route, int prompt_tokens, int completion_tokens,
                        double *frontier_cost) {
    (void)route;
    const srv_config *c = user;
    double in = 0, out = 0;
    const slm_config_price *p = price_of(c->file, model);
    if (p) {
        in = p->input;
        out = p->output;
    }
    for (int i = 0; i < c->n_prices; i++)
        if (!strcmp(c->prices[i].model, model)) {
            in = c->prices[i].input;
            out = c->prices[i].output;
        }
    *frontier_cost = 0;
    if (c->file && c->file->n_upstreams > 0) {
        const slm_config_price *f = &c->file->upstreams[0].price;
        *frontier_cost = (prompt_tokens * f->input + completion_tokens * f->output) / 1e6;
    }
    return (prompt_tokens * in + completion_tokens * out) / 1e6;
}

/* ---------- upstreams and routes ---------- */

static int add_upstreams(srv_server *s, int *backend_of, char *err, size_t err_len) {
    const slm_config *f = s->cfg.file;
    for (int i = 0; i < f->n_upstreams; i++) {
        const slm_config_upstream *cu = &f->upstreams[i];
        const char *key = NULL;
        if (cu->key_env) {
            key = getenv(cu->key_env);
            if (!key || !*key)
                return snprintf(err, err_len, "upstream '%s': the environment variable %s (key_env) is not set", cu->name,
                                cu->key_env),
                       -1;
        }
        slm_upstream_config uc = {.name = cu->name,
                                  .url = cu->url,
                                  .model = cu->model,
                                  .api_key = key,
                                  .timeout_s = cu->timeout_s,
                                  .max_retries = cu->max_retries < 0 ? 0 : cu->max_retries == 0 ? -1 : cu->max_retries,
                                  .ca_file = cu->ca_file};
        slm_upstream *u;
        if (slm_upstream_new(&uc, &u, err, err_len)) return -1;
        s->upstreams[s->n_upstreams++] = u;
        for (int r = 0; r < f->n_routes; r++)
            if (f->routes[r].upstream && !strcmp(f->routes[r].upstream, cu->name) && f->routes[r].fallback_local) {
                slm_upstream_set_fallback(u, s->engine);
                break;
            }
        slm_gate_backend b = slm_upstream_backend(u);
        int idx = slm_gate_add_backend(s->gate, &b, err, err_len);
        if (idx < 0) return -1;
        backend_of[i] = idx;
    }
    return 0;
}

/* "default" is the router shipped with slm (embedded: the prompt router, or the cascade router
 * for a cascade route); anything else is a router file. */
static slm_router *load_router(const char *name, bool cascade, char *err, size_t err_len) {
    if (strcmp(name, "default") == 0) return slm_route_default_router(cascade, err, err_len);
    return slm_router_load(name, err, err_len);
}

static int add_routes(srv_server *s, char *err, size_t err_len) {
    const slm_config *f = s->cfg.file;
    int backend_of[SLM_CONFIG_MAX];
    if (add_upstreams(s, backend_of, err, err_len)) return -1;
    slm_route_target targets[2 * SLM_CONFIG_MAX];
    int n = 0;
    for (int i = 0; i < f->n_routes; i++) {
        const slm_config_route *cr = &f->routes[i];
        slm_route_target t = {.name = cr->name, .is_route = true, .local_name = cr->local, .upstream_backend = -1,
                              .pii = cr->pii, .threshold = 2};
        int up = -1;
        for (int u = 0; cr->upstream && u < f->n_upstreams; u++)
            if (!strcmp(f->upstreams[u].name, cr->upstream)) {
                up = u;
                t.upstream_backend = backend_of[u];
                t.upstream_name = f->upstreams[u].name;
            }
        t.cascade_backend = -1;
        if (cr->router && t.upstream_backend >= 0) {
            slm_router *r = load_router(cr->router, cr->cascade, err, err_len);
            if (!r) return -1;
            s->routers[s->n_routers++] = r;
            bool cascade_router = slm_router_kind(r) == SLM_ROUTER_CASCADE;
            if (cr->cascade != cascade_router)
                return snprintf(err, err_len, "route '%s': %s", cr->name,
                                cr->cascade ? "cascade: needs a cascade router (slm router train --kind cascade)"
                                            : "its router is a cascade router: add 'cascade: {}' to the route"),
                       -1;
            double threshold = slm_router_threshold_for_share(r, cr->frontier_share);
            if (cr->cascade) {
                if (cr->cascade_threshold >= 0) threshold = cr->cascade_threshold;
                slm_gate_backend upb = slm_upstream_backend(s->upstreams[up]);
                slm_cascade *cas = slm_cascade_new(s->engine, upb, r, threshold, err, err_len);
                if (!cas) return -1;
                s->cascades[s->n_cascades++] = cas;
                slm_gate_backend cb = slm_cascade_backend(cas);
                if ((t.cascade_backend = slm_gate_add_backend(s->gate, &cb, err, err_len)) < 0) return -1;
            } else {
                t.router = r;
                t.threshold = threshold;
            }
        }
        targets[n++] = t;
    }
    for (int u = 0; u < f->n_upstreams; u++)
        targets[n++] = (slm_route_target){.name = f->upstreams[u].name, .is_route = false, .local_name = "",
                                          .upstream_backend = backend_of[u], .upstream_name = f->upstreams[u].name,
                                          .cascade_backend = -1};
    s->routes = slm_route_install(s->gate, targets, n, s->pii, err, err_len);
    return s->routes ? 0 : -1;
}

int srv_setup_gate(srv_server *s, char *err, size_t err_len) {
    if (s->cfg.file && (s->cfg.file->n_upstreams > 0 || s->cfg.file->n_routes > 0) && add_routes(s, err, err_len))
        return -1;
    /* governance last: its scope check runs after the route stage decided */
    slm_govern_config gc = {.store = s->store,
                            .static_keys = s->cfg.api_keys,
                            .n_static_keys = s->cfg.n_api_keys,
                            .audit = s->audit,
                            .audit_content = (slm_audit_content)s->cfg.audit_content,
                            .pii = s->pii,
                            .pii_policy = (slm_pii_policy)s->cfg.pii_policy,
                            .pii_output = s->cfg.pii_output,
                            .cost = call_cost,
                            .cost_user = &s->cfg};
    return slm_govern_install(s->gate, &gc, err, err_len);
}

const slm_route_target *srv_find_target(const srv_server *s, const char *name) {
    return s->routes ? slm_route_find(s->routes, name) : NULL;
}
