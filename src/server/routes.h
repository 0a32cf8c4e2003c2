/* The route table and the dispatch to handlers. */
#ifndef SLM_SERVER_ROUTES_H
#define SLM_SERVER_ROUTES_H

#include <microhttpd.h>
#include <stdbool.h>

#include "state.h"

/* One route: method, path (trailing '*' = prefix), its metrics label, and what it requires. */
typedef struct srv_route {
    const char *method;
    const char *path;
    int id;
    const char *label;
    bool is_public;   /* answered without credentials */
    bool needs_model; /* 503 until the models are loaded */
} srv_route;

/* The route for method + url; NULL when none (then *known_path tells a 405 from a 404). */
const srv_route *srv_find_route(const char *method, const char *url, bool *known_path);
/* Runs the route's handler. */
enum MHD_Result srv_dispatch(srv_conn *c, const srv_route *route);

#endif
