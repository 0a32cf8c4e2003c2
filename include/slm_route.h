/* slm route — the hybrid router's stage of the request gate: which backend serves a call.
 *
 * A client names either a local model (the engine serves it: no decision), an upstream (sent there
 * directly), or a route (`model: "auto"`), which is decided per call:
 *   1. hard rules: embeddings and tasks, a local-only key, air-gapped mode → local; personal data
 *      found → the route's pii policy (stay local, mask before sending, or refuse);
 *   2. the learned router: P(the local model fails where the frontier succeeds) above the threshold
 *      calibrated for the route's frontier_share → upstream.
 * The decision and its reason are kept on the call (call->route, slm_route_reason). */
#ifndef SLM_ROUTE_H
#define SLM_ROUTE_H

#include <stdbool.h>

#include "slm_config.h"
#include "slm_gate.h"

#ifdef __cplusplus
extern "C" {
#endif

struct slm_pii;
struct slm_router;

typedef struct slm_route_target {
    const char *name;                 /* what clients send as "model" */
    bool is_route;                    /* false: an upstream named directly */
    const char *local_name;           /* the engine model served locally ("" for a direct upstream) */
    int upstream_backend;             /* gate backend index, -1 = none */
    const char *upstream_name;
    const struct slm_router *router;  /* NULL = hard rules only (everything else stays local) */
    double threshold;                 /* router score above this → upstream */
    slm_route_pii pii;
    int cascade_backend;              /* gate backend index of the route's cascade, -1 = none */
} slm_route_target;

typedef struct slm_route_table slm_route_table;

/* Adds the route stage (targets are copied; the router, detector and strings are borrowed and
 * must outlive the gate, which owns the table). Install it before slm_govern_install so the scope
 * check sees the decision. NULL with err on failure. call->route_reason says why a call went where
 * it went: "named", "not_generation", "local_only", "air_gapped", "pii", "router", "no_router". */
slm_route_table *slm_route_install(slm_gate *g, const slm_route_target *targets, int n, const struct slm_pii *pii,
                                   char *err, size_t err_len);
/* The target a model name denotes ("name:latest" accepted), or NULL for a plain local model. */
const slm_route_target *slm_route_find(const slm_route_table *t, const char *name);
/* The i-th target (routes first, then upstreams), NULL past the end. */
const slm_route_target *slm_route_at(const slm_route_table *t, int i);

/* The router shipped with slm (routers/, embedded in the binary): the prompt router, or the
 * cascade router. NULL with err when it does not load. */
struct slm_router *slm_route_default_router(bool cascade, char *err, size_t err_len);

/* The cascade backend: the local model answers a non-streamed call first (on a private copy of
 * the request); the cascade router scores (question, answer); above the threshold the call is
 * re-run on the upstream, else the local answer is the reply. call->route says where the reply
 * came from, call->route_score the score. */
typedef struct slm_cascade slm_cascade;
slm_cascade *slm_cascade_new(slm_engine *engine, slm_gate_backend upstream, const struct slm_router *router,
                             double threshold, char *err, size_t err_len);
/* Waits for the calls in flight to finish. */
void slm_cascade_free(slm_cascade *c);
slm_gate_backend slm_cascade_backend(slm_cascade *c);

#ifdef __cplusplus
}
#endif
#endif
