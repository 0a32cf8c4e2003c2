/* The route table: method + path → handler, its metrics label, and whether it is public or needs
 * a loaded model; plus the small built-in routes (page, health, metrics). */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_lora.h"
#include "handlers.h"
#include "replies.h"

typedef enum {
    R_PAGE,
    R_HEALTH,
    R_METRICS,
    R_OAI_CHAT,
    R_OAI_COMPLETIONS,
    R_OAI_EMBEDDINGS,
    R_OAI_MODELS,
    R_OAI_MODEL,
    R_OLL_CHAT,
    R_OLL_GENERATE,
    R_OLL_EMBED,
    R_OLL_EMBEDDINGS,
    R_OLL_TAGS,
    R_OLL_PS,
    R_OLL_SHOW,
    R_OLL_VERSION,
    R_TASK_CLASSIFY,
    R_TASK_EXTRACT,
    R_TASK_SUMMARIZE,
    R_ADMIN_KEYS,
    R_ADMIN_KEY_CREATE,
    R_ADMIN_KEY_REVOKE,
    R_ADMIN_LEDGER,
    R_ADMIN_LEDGER_SERIES,
    R_DASHBOARD,
    R_RAG,
    R_RESPONSES,
    R_OLL_MODELS,
    R_LORA,
} route_id;

static const srv_route routes[] = {
    {"GET", "/", R_PAGE, "/", true, false},
    {"GET", "/health", R_HEALTH, "/health", true, false},
    {"GET", "/metrics", R_METRICS, "/metrics", false, false},
    {"POST", "/v1/chat/completions", R_OAI_CHAT, "/v1/chat/completions", false, true},
    {"POST", "/v1/completions", R_OAI_COMPLETIONS, "/v1/completions", false, true},
    {"POST", "/v1/embeddings", R_OAI_EMBEDDINGS, "/v1/embeddings", false, true},
    {"GET", "/v1/models", R_OAI_MODELS, "/v1/models", false, true},
    {"GET", "/v1/models/*", R_OAI_MODEL, "/v1/models/{id}", false, true},
    {"POST", "/api/chat", R_OLL_CHAT, "/api/chat", false, true},
    {"POST", "/api/generate", R_OLL_GENERATE, "/api/generate", false, true},
    {"POST", "/api/embed", R_OLL_EMBED, "/api/embed", false, true},
    {"POST", "/api/embeddings", R_OLL_EMBEDDINGS, "/api/embeddings", false, true},
    {"GET", "/api/tags", R_OLL_TAGS, "/api/tags", false, true},
    {"GET", "/api/ps", R_OLL_PS, "/api/ps", false, true},
    {"POST", "/api/show", R_OLL_SHOW, "/api/show", false, true},
    {"GET", "/api/version", R_OLL_VERSION, "/api/version", false, false},
    {"POST", "/v1/classify", R_TASK_CLASSIFY, "/v1/classify", false, true},
    {"POST", "/v1/extract", R_TASK_EXTRACT, "/v1/extract", false, true},
    {"POST", "/v1/summarize", R_TASK_SUMMARIZE, "/v1/summarize", false, true},
    {"GET", "/v1/keys", R_ADMIN_KEYS, "/v1/keys", false, false},
    {"POST", "/v1/keys", R_ADMIN_KEY_CREATE, "/v1/keys", false, false},
    {"DELETE", "/v1/keys/*", R_ADMIN_KEY_REVOKE, "/v1/keys/{name}", false, false},
    {"GET", "/v1/ledger/summary", R_ADMIN_LEDGER, "/v1/ledger/summary", false, false},
    {"GET", "/v1/ledger/series", R_ADMIN_LEDGER_SERIES, "/v1/ledger/series", false, false},
    {"GET", "/dashboard", R_DASHBOARD, "/dashboard", true, false},
    {"GET", "/v1/rag/*", R_RAG, "/v1/rag", false, true},
    {"POST", "/v1/rag/*", R_RAG, "/v1/rag", false, true},
    {"DELETE", "/v1/rag/*", R_RAG, "/v1/rag", false, true},
    {"POST", "/v1/responses", R_RESPONSES, "/v1/responses", false, true},
    {"GET", "/v1/responses/*", R_RESPONSES, "/v1/responses/{id}", false, true},
    {"DELETE", "/v1/responses/*", R_RESPONSES, "/v1/responses/{id}", false, true},
    {"POST", "/api/pull", R_OLL_MODELS, "/api/pull", false, false},
    {"POST", "/api/push", R_OLL_MODELS, "/api/push", false, false},
    {"DELETE", "/api/delete", R_OLL_MODELS, "/api/delete", false, false},
    {"POST", "/api/copy", R_OLL_MODELS, "/api/copy", false, false},
    {"POST", "/api/create", R_OLL_MODELS, "/api/create", false, false},
    {"HEAD", "/api/blobs/*", R_OLL_MODELS, "/api/blobs/{digest}", false, false},
    {"POST", "/api/blobs/*", R_OLL_MODELS, "/api/blobs/{digest}", false, false},
    {"GET", "/lora-adapters", R_LORA, "/lora-adapters", false, true},
    {"POST", "/lora-adapters", R_LORA, "/lora-adapters", false, true},
    {"GET", "/v1/lora/adapters", R_LORA, "/v1/lora/adapters", false, true},
    {"POST", "/v1/lora/adapters", R_LORA, "/v1/lora/adapters", false, true},
    {"DELETE", "/v1/lora/adapters/*", R_LORA, "/v1/lora/adapters/{name}", false, true},
};

static bool path_matches(const char *pattern, const char *url) {
    size_t n = strlen(pattern);
    if (pattern[n - 1] == '*') return strncmp(url, pattern, n - 1) == 0 && url[n - 1] != 0;
    return strcmp(url, pattern) == 0;
}

const srv_route *srv_find_route(const char *method, const char *url, bool *known_path) {
    *known_path = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!path_matches(routes[i].path, url)) continue;
        *known_path = true;
        if (strcmp(routes[i].method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
            return &routes[i];
    }
    return NULL;
}

static enum MHD_Result reply_health(srv_conn *c) {
    srv_server *s = c->srv;
    if (!atomic_load(&s->ready)) return srv_reply_json(c, 503, json_pack("{s:s}", "status", "loading"));
    int queued, busy, slots = 0;
    slm_engine_counts(s->engine, -1, &queued, &busy);
    json_t *models = json_array();
    for (int i = 0; i < s->n_models; i++) {
        slots += s->models[i].n_seq;
        json_array_append_new(models, json_string(s->models[i].id));
    }
    return srv_reply_json(c, 200,
                          json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i}", "status",
                                    atomic_load(&s->draining) ? "draining" : "ok", "model", s->models[0].id, "models",
                                    models, "slots_total", slots, "slots_busy", busy, "queue_depth", queued,
                                    "n_ctx_per_slot", s->models[0].n_ctx));
}

static enum MHD_Result reply_metrics(srv_conn *c) {
    srv_server *s = c->srv;
    int queued = 0, busy = 0, slots = 0;
    if (atomic_load(&s->ready)) slm_engine_counts(s->engine, -1, &queued, &busy);
    for (int i = 0; i < s->n_models; i++) slots += s->models[i].n_seq;
    char *text = srv_metrics_render(&s->metrics, queued, busy, slots, s->n_models ? s->models[0].n_ctx : 0);
    if (!text) return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    /* the transport's own counters: connections it cut, bodies it holds */
    pthread_mutex_lock(&s->socks_mu);
    int open = s->n_socks;
    pthread_mutex_unlock(&s->socks_mu);
    slm_buf b = {0};
    slm_buf_puts(&b, text);
    free(text);
    slm_buf_printf(&b,
                   "# HELP slm_connections_cut_total Connections cut: header or body deadline passed, shed for the reserve, or a stream reader that stopped reading.\n"
                   "# TYPE slm_connections_cut_total counter\nslm_connections_cut_total %llu\n"
                   "# HELP slm_connections_open Open connections.\n# TYPE slm_connections_open gauge\nslm_connections_open %d\n"
                   "# HELP slm_request_body_bytes Request body bytes held in memory (at most --max-body-total).\n"
                   "# TYPE slm_request_body_bytes gauge\nslm_request_body_bytes %zu\n",
                   (unsigned long long)atomic_load(&s->n_shed), open, (size_t)atomic_load(&s->body_bytes));
    uint64_t resident = 0, max_memory = 0, loads = 0, unloads = 0;
    slm_engine_residency(s->engine, &resident, &max_memory, &loads, &unloads);
    slm_buf_printf(&b,
                   "# HELP slm_models_resident_bytes Bytes the resident models are accounted for (weights, KV caches, activations).\n"
                   "# TYPE slm_models_resident_bytes gauge\nslm_models_resident_bytes %llu\n"
                   "# HELP slm_models_max_memory_bytes --max-memory (0 = no bound).\n"
                   "# TYPE slm_models_max_memory_bytes gauge\nslm_models_max_memory_bytes %llu\n"
                   "# HELP slm_model_loads_total Models loaded from the store on demand.\n"
                   "# TYPE slm_model_loads_total counter\nslm_model_loads_total %llu\n"
                   "# HELP slm_model_unloads_total Models unloaded (keep_alive ran out, or room for another).\n"
                   "# TYPE slm_model_unloads_total counter\nslm_model_unloads_total %llu\n",
                   (unsigned long long)resident, (unsigned long long)max_memory, (unsigned long long)loads,
                   (unsigned long long)unloads);
    if (b.oom) {
        slm_buf_free(&b);
        return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    }
    enum MHD_Result r = srv_reply_bytes(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len);
    slm_buf_free(&b);
    return r;
}

enum MHD_Result srv_dispatch(srv_conn *c, const srv_route *route) {
    switch ((route_id)route->id) {
    case R_PAGE: return srv_reply_page(c, srv_webpage_html);
    case R_HEALTH: return reply_health(c);
    case R_METRICS: return reply_metrics(c);
    case R_OAI_CHAT: return srv_openai_chat(c);
    case R_OAI_COMPLETIONS: return srv_openai_completions(c);
    case R_OAI_EMBEDDINGS: return srv_openai_embeddings(c);
    case R_OAI_MODELS: return srv_openai_models(c, NULL);
    case R_OAI_MODEL: return srv_openai_models(c, c->url + strlen("/v1/models/"));
    case R_OLL_CHAT: return srv_ollama_chat(c);
    case R_OLL_GENERATE: return srv_ollama_generate(c);
    case R_OLL_EMBED: return srv_ollama_embed(c, false);
    case R_OLL_EMBEDDINGS: return srv_ollama_embed(c, true);
    case R_OLL_TAGS: return srv_ollama_tags(c, false);
    case R_OLL_PS: return srv_ollama_tags(c, true);
    case R_OLL_SHOW: return srv_ollama_show(c);
    case R_OLL_VERSION: return srv_ollama_version(c);
    case R_TASK_CLASSIFY: return srv_task_classify(c);
    case R_TASK_EXTRACT: return srv_task_extract(c);
    case R_TASK_SUMMARIZE: return srv_task_summarize(c);
    case R_ADMIN_KEYS:
    case R_ADMIN_KEY_CREATE: return srv_admin_keys(c);
    case R_ADMIN_KEY_REVOKE: return srv_admin_key_revoke(c, c->url + strlen("/v1/keys/"));
    case R_ADMIN_LEDGER: return srv_admin_ledger(c);
    case R_ADMIN_LEDGER_SERIES: return srv_admin_ledger_series(c);
    case R_DASHBOARD: return srv_reply_page(c, srv_dashboard_html);
    case R_RAG: return srv_rag_dispatch(c);
    case R_RESPONSES: return srv_responses_dispatch(c);
    case R_OLL_MODELS: return srv_ollama_models_dispatch(c);
    case R_LORA: return srv_lora_dispatch(c);
    }
    return srv_reply_error(c, 404, NULL, NULL, "unknown route");
}

