/* The API handlers the route table points to (OpenAI, Ollama, tasks). */
#ifndef SLM_SERVER_HANDLERS_H
#define SLM_SERVER_HANDLERS_H

#include <microhttpd.h>
#include <stdbool.h>

#include "state.h"


enum MHD_Result srv_openai_chat(srv_conn *c);
enum MHD_Result srv_openai_completions(srv_conn *c);
enum MHD_Result srv_openai_embeddings(srv_conn *c);
enum MHD_Result srv_openai_models(srv_conn *c, const char *id /* NULL = list */);
enum MHD_Result srv_ollama_chat(srv_conn *c);
enum MHD_Result srv_ollama_generate(srv_conn *c);
enum MHD_Result srv_ollama_embed(srv_conn *c, bool legacy);
enum MHD_Result srv_ollama_tags(srv_conn *c, bool running);
enum MHD_Result srv_ollama_show(srv_conn *c);
enum MHD_Result srv_ollama_version(srv_conn *c);
enum MHD_Result srv_task_classify(srv_conn *c);
enum MHD_Result srv_task_extract(srv_conn *c);
enum MHD_Result srv_task_summarize(srv_conn *c);
enum MHD_Result srv_admin_keys(srv_conn *c);
enum MHD_Result srv_admin_key_revoke(srv_conn *c, const char *name);
enum MHD_Result srv_admin_ledger(srv_conn *c);
enum MHD_Result srv_admin_ledger_series(srv_conn *c);
/* Each of these owns a family of paths and answers by c->method and c->url itself. */
enum MHD_Result srv_rag_dispatch(srv_conn *c);           /* /v1/rag/... */
enum MHD_Result srv_responses_dispatch(srv_conn *c);     /* /v1/responses[/{id}] */
enum MHD_Result srv_ollama_models_dispatch(srv_conn *c); /* /api/pull, push, delete, copy, create, blobs */

extern const char srv_webpage_html[];
extern const char srv_dashboard_html[];

#endif
