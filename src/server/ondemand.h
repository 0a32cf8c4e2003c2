/* Models by name on demand: the engine's loader over the data directory's model store, each
 * request's hold on the model it uses, and the server's view (srv_model) of every resident model. */
#ifndef SLM_SERVER_ONDEMAND_H
#define SLM_SERVER_ONDEMAND_H

#include <jansson.h>
#include <stdbool.h>

#include "fields.h"
#include "state.h"

/* Lets the engine load store models by name (when the server has a data directory). */
void srv_ondemand_install(srv_server *s);
/* Fills in a --model entry (id set by the caller) for engine index k; also used for on-demand ones. */
void srv_model_fill(srv_server *s, srv_model *M, int k, const char *path);
/* Holds the model called name for this request (loading it if needed) and returns the server's view
 * of it; NULL after replying (404 unknown, 400 too large for --max-memory, 503 busy, 500 load failed)
 * — except that *not_found is set, without a reply, when the name is simply unknown. */
const srv_model *srv_hold_model(srv_conn *c, const char *name, bool *not_found);
/* Puts the model's stored system prompt first in a chat request's "messages" when the request has
 * no system message of its own (as Ollama does with a Modelfile's SYSTEM). */
void srv_model_system_default(const srv_model *M, json_t *req);
/* Ends the request's hold (when it completes). */
void srv_release_model(srv_conn *c);
/* Ollama's "keep_alive" field (a duration like "5m", "1h30m", "-1", or seconds as a number) into
 * c->keep_alive; false with f set when it is malformed. */
bool srv_parse_keep_alive(srv_conn *c, json_t *req, srv_fail *f);

#endif
