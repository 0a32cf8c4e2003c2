/* Retrieval in the server: the data directory's retrieval store (a small pool of handles, since
 * an slm_rag handle serves one thread at a time), who may use which collection (the key's
 * `collections` scope), embeddings on the served models through the gate, and the chat
 * completions extension "rag": {"collection", "top_k", "mode"} (retrieve for the last user
 * message, put the numbered sources in the system message, constrain citation markers to them,
 * answer with `citations`). The /v1/rag/... endpoints are in api_rag.c. */
#ifndef SLM_SERVER_RAG_CHAT_H
#define SLM_SERVER_RAG_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fields.h"
#include "messages.h"
#include "slm_rag.h"
#include "state.h"
#include "tools.h"

/* ---------- the store ---------- */

/* Opens the retrieval store of data_dir into s->rag (checked once here, so a broken store stops
 * the server at start rather than at the first request). */
int srv_rag_open(srv_server *s, const char *data_dir, char *err, size_t err_len);
void srv_rag_close(srv_server *s);
/* A store handle for this request, borrowed from the pool (opened when none is free, waiting when
 * the pool is at its size); NULL with f set (404 without a data directory, 500). */
slm_rag *srv_rag_acquire(srv_conn *c, srv_fail *f);
void srv_rag_release(srv_conn *c, slm_rag *r);

/* ---------- access ---------- */

/* The collections the connection's key may use: every one (no keys, a static key, a key with an
 * empty scope) or the key's comma-separated list. */
typedef struct srv_rag_scope {
    bool all;
    char list[512];
} srv_rag_scope;
bool srv_rag_scope_of(srv_conn *c, srv_rag_scope *scope, srv_fail *f);
bool srv_rag_scope_allows(const srv_rag_scope *scope, const char *collection);
/* A valid collection name (400 naming `field`) the key may use (403 naming the collection). */
bool srv_rag_check_collection(srv_conn *c, const char *name, const char *field, srv_fail *f);

/* ---------- embeddings ---------- */

/* The served model whose file is `path` (the collection's embedding model), or NULL. */
const srv_model *srv_rag_served_model(srv_server *s, const char *path);
/* The file of the served model called id (what a created collection records), or NULL. */
const char *srv_rag_served_path(srv_server *s, const char *id);
/* The mode a request asked for (`mode` NULL: hybrid when the collection's embedding model is
 * served, else bm25), and its embedder on the server's engine and gate, admitted as the request's
 * key (NULL for bm25). False with f (naming `field`) for an unknown mode, vectors without a model,
 * or a model this server does not serve. */
bool srv_rag_mode_embedder(srv_conn *c, const slm_rag_db_collection *coll, const char *mode, const char *field,
                           slm_rag_mode *out_mode, slm_rag_embedder **out, srv_fail *f);
/* The embedder a collection's ingest needs (NULL when it has no model). */
bool srv_rag_ingest_embedder(srv_conn *c, const slm_rag_db_collection *coll, slm_rag_embedder **out, srv_fail *f);

/* ---------- chat completions with "rag" ---------- */

typedef struct srv_rag_chat srv_rag_chat;
/* Reads the request's "rag" (absent: true, *out NULL). Otherwise retrieves for the last user
 * message, puts the sources in front of msgs (restored by srv_rag_chat_end), compiles the
 * citation grammar into gen->grammar, and keeps the sources' checked citations. Refused (400
 * naming "rag"): together with tool calls, or with response_format / grammar / json_schema. */
bool srv_rag_chat_begin(srv_conn *c, const srv_model *M, json_t *req, srv_chat_msgs *msgs, const srv_tools *tools,
                        slm_gen_params *gen, srv_rag_chat **out, srv_fail *f);
/* The reply's share of it, copied into memory the reply formatter owns (freed with it by free()):
 * srv_rag_reply_size bytes (0 without rag), then srv_rag_reply_init(mem) (NULL without rag). */
size_t srv_rag_reply_size(const srv_rag_chat *rc);
void *srv_rag_reply_init(void *mem, const srv_rag_chat *rc);
/* Sets obj.citations: the sources the answer text cites as [n], in the order first cited. */
void srv_rag_reply_citations(const void *reply, json_t *obj, const char *text, size_t len);
/* Restores msgs and frees rc (NULL is fine). */
void srv_rag_chat_end(srv_rag_chat *rc, srv_chat_msgs *msgs);

#endif
