/* The route stage (see slm_route.h): hard rules first, then the learned router's score against
 * the route's calibrated threshold. */
#include "slm_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm_govern.h"
#include "slm_net.h"
#include "slm_pii.h"
#include "slm_router.h"
#include "route/route_impl.h"
#include "util/err.h"

struct slm_route_table {
    slm_route_target *targets;
    int n;
    const slm_pii *pii;
};

const slm_route_target *slm_route_find(const slm_route_table *t, const char *name) {
    if (!t || !name) return NULL;
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ":latest") == 0) n -= 7;
    for (int i = 0; i < t->n; i++)
        if (strlen(t->targets[i].name) == n && strncmp(t->targets[i].name, name, n) == 0) return &t->targets[i];
    return NULL;
}

const slm_route_target *slm_route_at(const slm_route_table *t, int i) {
    return t && i >= 0 && i < t->n ? &t->targets[i] : NULL;
}

const char *route_question(const slm_gate_call *call) {
    for (size_t i = call->n_messages; i-- > 0;)
        if (call->messages[i].role && strcmp(call->messages[i].role, "user") == 0 && call->messages[i].content)
            return call->messages[i].content;
    if (call->prompt) return call->prompt;
    return call->n_messages ? call->messages[call->n_messages - 1].content : "";
}

/* Personal data in the call's texts: what the governance input stage counted, else a scan here. */
static int pii_in(const slm_route_table *t, const slm_gate_call *call) {
    int found = slm_govern_pii_found(call);
    if (found >= 0) return found;
    if (!t->pii) return 0;
    int total = 0;
    for (size_t i = 0; i <= call->n_messages; i++) {
        const char *text = i < call->n_messages ? call->messages[i].content : call->prompt;
        if (!text || !*text) continue;
        slm_pii_span *spans = NULL;
        int n = slm_pii_scan(t->pii, text, strlen(text), &spans);
        free(spans);
        if (n < 0) return 1; /* cannot tell: treat as personal */
        total += n;
    }
    return total;
}

static bool go_local(slm_gate_call *call, const slm_route_target *r, const char *reason) {
    call->backend = 0;
    call->model = r->local_name;
    call->route_reason = reason;
    return true;
}

static bool decide(void *state, slm_gate_call *call) {
    const slm_route_table *t = state;
    call->route_score = -1;
    const slm_route_target *r = slm_route_find(t, call->model);
    if (!r) return true; /* a local model named directly */
    if (!r->is_route) {
        /* an upstream named directly: the scope stage refuses it for a local-only key */
        if (slm_net_air_gapped())
            return slm_gate_refuse(call, 403, "air_gapped",
                                   "air-gapped mode: upstream '%s' cannot be reached (no outbound connection is made)",
                                   r->name);
        call->backend = r->upstream_backend;
        call->route_reason = "named";
        return true;
    }
    if (call->kind != SLM_CALL_GENERATE || r->upstream_backend < 0) return go_local(call, r, "not_generation");
    const char *stay = call->local_only ? "local_only" : slm_net_air_gapped() ? "air_gapped" : NULL;
    /* personal data: a hard rule before any score (block and local never ask the router) */
    int pii = stay || r->pii == SLM_ROUTE_PII_MASK ? 0 : pii_in(t, call);
    if (pii > 0 && r->pii == SLM_ROUTE_PII_BLOCK)
        return slm_gate_refuse(call, 400, "pii_blocked", "route '%s' refuses requests that contain personal data", r->name);
    if (pii > 0) stay = "pii";
    if (stay && call->exceeds_local)
        return slm_gate_refuse(call, 400, "context_length_exceeded",
                               "the prompt is longer than the local model's context, and this call may not leave the "
                               "machine (%s)",
                               stay);
    if (stay) return go_local(call, r, stay);
    if (call->exceeds_local) {
        /* only the upstream can read it: masked first when the route says so */
        if (r->pii == SLM_ROUTE_PII_MASK && pii_in(t, call) > 0 && slm_govern_mask_call(call) != 0)
            return slm_gate_refuse(call, 400, "context_length_exceeded",
                                   "the prompt is longer than the local model's context and its personal data cannot be "
                                   "masked for the upstream");
        call->backend = r->upstream_backend;
        call->model = r->upstream_name;
        call->route_reason = "too_long";
        return true;
    }
    const slm_request *req = call->request;
    if (r->cascade_backend >= 0 && !call->stream && req && !req->gen.grammar && req->gen.sampling.n_logit_bias == 0) {
        /* the local model answers first; the cascade decides after reading its answer */
        if (r->pii == SLM_ROUTE_PII_MASK && pii_in(t, call) > 0 && slm_govern_mask_call(call) != 0)
            return go_local(call, r, "pii");
        call->backend = r->cascade_backend;
        call->model = r->local_name;
        call->route_reason = "cascade";
        return true;
    }
    if (r->router) {
        call->route_score = slm_router_score(r->router, route_question(call), NULL);
        if (!(call->route_score >= r->threshold)) return go_local(call, r, "router");
    } else {
        return go_local(call, r, "no_router");
    }
    /* pii: mask — masked only when it is about to leave; never unmasked out of the machine: when
     * masking is impossible, stay local */
    if (r->pii == SLM_ROUTE_PII_MASK && pii_in(t, call) > 0 && slm_govern_mask_call(call) != 0)
        return go_local(call, r, "pii");
    call->backend = r->upstream_backend;
    call->model = r->upstream_name;
    call->route_reason = "router";
    return true;
}

static void free_table(void *state) {
    slm_route_table *t = state;
    free(t->targets);
}

slm_route_table *slm_route_install(slm_gate *g, const slm_route_target *targets, int n, const struct slm_pii *pii,
                                   char *err, size_t err_len) {
    slm_route_table *t = slm_gate_keep(g, sizeof *t);
    if (!t || !(t->targets = malloc(sizeof *t->targets * (size_t)(n > 0 ? n : 1)))) {
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    memcpy(t->targets, targets, sizeof *targets * (size_t)n);
    t->n = n;
    t->pii = pii;
    if (slm_gate_on_free(g, free_table, t)) {
        free(t->targets);
        slm_err(err, err_len, "too many gate cleanups");
        return NULL;
    }
    slm_gate_stage st = {.name = "route", .phase = SLM_PHASE_ROUTE, .run = decide, .state = t};
    if (slm_gate_add_stage(g, &st, err, err_len)) return NULL;
    return t;
}
