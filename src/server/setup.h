/* What `slm serve` builds around the engine before it listens: the data directory's state (store,
 * audit log, PII detector) and the gate's stages and backends (upstreams, routes, governance). */
#ifndef SLM_SERVER_SETUP_H
#define SLM_SERVER_SETUP_H

#include <stddef.h>

#include "state.h"

/* Opens the data directory's store and audit log and loads the PII detector (as configured). */
int srv_open_state(srv_server *s, char *err, size_t err_len);
/* Adds the upstream backends, the route stage, then governance to s->gate. */
int srv_setup_gate(srv_server *s, char *err, size_t err_len);
/* The target (route or upstream) a request's model name denotes, or NULL for a local model. */
const struct slm_route_target *srv_find_target(const srv_server *s, const char *name);
/* Calls still running on an upstream (its worker threads), for the shutdown drain. */
int srv_remote_in_flight(const srv_server *s);
/* Frees the cascades and upstreams (joining their workers); before the engine is freed. */
void srv_close_backends(srv_server *s);
void srv_close_state(srv_server *s);

#endif
