/* Retrieval in the server (see rag_chat.h): the handle pool, key scopes, embedders on the served
 * models, and the "rag" extension of chat completions. */
#include "rag_chat.h"

#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "replies.h"
#include "slm_govern.h"
#include "slm_models.h"
#include "slm_store.h"

/* Handles open at once: requests beyond wait for one (a search holds its handle for milliseconds,
 * an ingest for as long as its document takes to embed). */
#define RAG_POOL_MAX 4
#define RAG_CHAT_TOP_K_DEFAULT 5
#define RAG_CHAT_TOP_K_MAX 20
#define RAG_GRAMMAR_SECONDS 5.0

typedef struct srv_rag {
    char dir[PATH_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slm_rag *idle[RAG_POOL_MAX];
    int n_idle, n_open;
    char served[SRV_MAX_MODELS][PATH_MAX]; /* real path of each served model's file, "" = unknown */
} srv_rag;

/* ---------- the store ---------- */

int srv_rag_open(srv_server *s, const char *data_dir, char *err, size_t err_len) {
    srv_rag *p = calloc(1, sizeof *p);
    if (!p) return snprintf(err, err_len, "out of memory"), -1;
    if (snprintf(p->dir, sizeof p->dir, "%s", data_dir) >= (int)sizeof p->dir) {
        free(p);
        return snprintf(err, err_len, "data directory path too long"), -1;
    }
    slm_rag *r;
    if (slm_rag_open(p->dir, &r, err, err_len)) {
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->idle[p->n_idle++] = r;
    p->n_open = 1;
    for (int i = 0; i < s->cfg.n_models && i < SRV_MAX_MODELS; i++) {
        char resolved[PATH_MAX], e[256];
        const char *path = s->cfg.model_paths[i];
        if (!path) continue;
        if (slm_models_resolve(p->dir, path, resolved, sizeof resolved, e, sizeof e) == 0) path = resolved;
        if (!realpath(path, p->served[i])) p->served[i][0] = 0;
    }
    s->rag = p;
    return 0;
}

void srv_rag_close(srv_server *s) {
    srv_rag *p = s->rag;
    if (!p) return;
    for (int i = 0; i < p->n_idle; i++) slm_rag_close(p->idle[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    s->rag = NULL;
}

slm_rag *srv_rag_acquire(srv_conn *c, srv_fail *f) {
    srv_rag *p = c->srv->rag;
    if (!p) {
        srv_failf(f, 404, "no_data_dir", NULL, "this server runs without a data directory (no retrieval collections)");
        return NULL;
    }
    pthread_mutex_lock(&p->mu);
    while (p->n_idle == 0 && p->n_open >= RAG_POOL_MAX) pthread_cond_wait(&p->cv, &p->mu);
    if (p->n_idle > 0) {
        slm_rag *r = p->idle[--p->n_idle];
        pthread_mutex_unlock(&p->mu);
        return r;
    }
    p->n_open++;
    pthread_mutex_unlock(&p->mu);
    slm_rag *r = NULL;
    char err[512];
    if (slm_rag_open(p->dir, &r, err, sizeof err)) {
        pthread_mutex_lock(&p->mu);
        p->n_open--;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        srv_failf(f, 500, "store_unavailable", NULL, "%s", err);
        return NULL;
    }
    return r;
}

void srv_rag_release(srv_conn *c, slm_rag *r) {
    srv_rag *p = c->srv->rag;
    if (!r || !p) return;
    pthread_mutex_lock(&p->mu);
    p->idle[p->n_idle++] = r;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---------- access ---------- */

bool srv_rag_scope_of(srv_conn *c, srv_rag_scope *scope, srv_fail *f) {
    scope->all = true;
    scope->list[0] = 0;
    const slm_gate_call *call = &c->call;
    /* no keys at all (anonymous), or a static --api-key (admin): every collection */
    if (!c->srv->store || !call->principal[0] || strcmp(call->principal, "static-key") == 0 || !call->credential)
        return true;
    char hash[SLM_KEY_HASH_LEN + 1], err[256];
    slm_key_hash(call->credential, hash);
    slm_key_info key;
    int found = slm_store_key_lookup(c->srv->store, hash, &key, err, sizeof err);
    if (found < 0) return srv_failf(f, 503, "store_unavailable", NULL, "%s", err);
    if (found == 0) return srv_failf(f, 401, "invalid_api_key", NULL, "invalid or revoked API key");
    if (key.collections[0]) {
        scope->all = false;
        snprintf(scope->list, sizeof scope->list, "%s", key.collections);
    }
    return true;
}

bool srv_rag_scope_allows(const srv_rag_scope *scope, const char *collection) {
    if (scope->all) return true;
    size_t n = strlen(collection);
    for (const char *s = scope->list; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == n && memcmp(s, collection, n) == 0) return true;
        if (!comma) break;
        s = comma + 1;
    }
    return false;
}

bool srv_rag_check_collection(srv_conn *c, const char *name, const char *field, srv_fail *f) {
    if (!slm_rag_name_valid(name))
        return srv_failf(f, 400, "invalid_collection_name", field,
                         "'%s': '%.80s' is not a collection name (1-63 of A-Z a-z 0-9 _ . -, not starting with . or -)",
                         field, name);
    srv_rag_scope scope;
    if (!srv_rag_scope_of(c, &scope, f)) return false;
    if (!srv_rag_scope_allows(&scope, name))
        return srv_failf(f, 403, "collection_not_allowed", field, "key '%s' may not use collection '%s'", c->call.principal,
                         name);
    return true;
}

/* ---------- embeddings ---------- */

const srv_model *srv_rag_served_model(srv_server *s, const char *path) {
    srv_rag *p = s->rag;
    if (!p || !path || !*path) return NULL;
    for (int i = 0; i < s->n_models && i < SRV_MAX_MODELS; i++)
        if (p->served[i][0] && strcmp(p->served[i], path) == 0) return &s->models[i];
    return NULL;
}

const char *srv_rag_served_path(srv_server *s, const char *id) {
    srv_rag *p = s->rag;
    for (int i = 0; p && i < s->n_models && i < SRV_MAX_MODELS; i++)
        if (strcmp(s->models[i].id, id) == 0) return p->served[i][0] ? p->served[i] : NULL;
    return NULL;
}

static const char *file_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool attach(srv_conn *c, const slm_rag_db_collection *coll, const srv_model *M, slm_rag_embedder **out,
                   srv_fail *f) {
    char err[512];
    if (slm_rag_embedder_attach(c->srv->engine, c->srv->gate, M->id, M->model, out, err, sizeof err))
        return srv_failf(f, 500, NULL, NULL, "collection '%s': %s", coll->name, err);
    slm_rag_embedder_set_caller(*out, c->call.credential, c->client);
    return true;
}

bool srv_rag_mode_embedder(srv_conn *c, const slm_rag_db_collection *coll, const char *mode, const char *field,
                           slm_rag_mode *out_mode, slm_rag_embedder **out, srv_fail *f) {
    *out = NULL;
    const srv_model *M = srv_rag_served_model(c->srv, coll->embed_model);
    int m = mode ? slm_rag_mode_parse(mode) : (M ? SLM_RAG_HYBRID : SLM_RAG_BM25);
    if (m < 0) return srv_failf(f, 400, NULL, field, "'%s' must be bm25, vector or hybrid", field);
    *out_mode = (slm_rag_mode)m;
    if (m == SLM_RAG_BM25) return true;
    if (!coll->embed_model[0])
        return srv_failf(f, 400, "no_embeddings", field, "collection '%s' has no embedding model: only mode bm25",
                         coll->name);
    if (!M)
        return srv_failf(f, 400, "embed_model_not_served", field,
                         "collection '%s' embeds with %s, which this server does not serve: use mode bm25, or serve "
                         "that model too (--model)",
                         coll->name, file_name(coll->embed_model));
    return attach(c, coll, M, out, f);
}

bool srv_rag_ingest_embedder(srv_conn *c, const slm_rag_db_collection *coll, slm_rag_embedder **out, srv_fail *f) {
    *out = NULL;
    if (!coll->embed_model[0]) return true;
    const srv_model *M = srv_rag_served_model(c->srv, coll->embed_model);
    if (!M)
        return srv_failf(f, 409, "embed_model_not_served", NULL,
                         "collection '%s' embeds with %s, which this server does not serve: ingest with `slm rag "
                         "ingest`, or serve that model too (--model)",
                         coll->name, file_name(coll->embed_model));
    return attach(c, coll, M, out, f);
}

/* ---------- chat completions with "rag" ---------- */

struct srv_rag_chat {
    slm_chat_message *orig; /* the request's messages, put back at the end */
    size_t orig_n;
    slm_chat_message *augmented;
    size_t n_augmented;
    char *system;
    int n_sources;
    char *citations; /* JSON array: a checked citation for every source, [1]..[n] */
};

/* The reply's copy: the sources' count and their citations' JSON. */
typedef struct rag_reply {
    int n;
    char citations[];
} rag_reply;

static bool grammar_cancel(void *user) {
    srv_conn *c = user;
    return atomic_load(&c->srv->draining) || srv_conn_gone(c);
}

static bool read_rag_field(json_t *rag, const char **collection, long long *top_k, const char **mode, srv_fail *f) {
    if (!json_is_object(rag))
        return srv_failf(f, 400, NULL, "rag", "'rag' must be an object {\"collection\": NAME, \"top_k\": K, \"mode\": M}");
    const char *key;
    json_t *v;
    json_object_foreach(rag, key, v) {
        if (strcmp(key, "collection") != 0 && strcmp(key, "top_k") != 0 && strcmp(key, "mode") != 0) {
            char param[96];
            snprintf(param, sizeof param, "rag.%.60s", key);
            return srv_failf(f, 400, NULL, param, "'rag' has no field '%.60s' (collection, top_k, mode)", key);
        }
    }
    json_t *coll = json_object_get(rag, "collection");
    if (!json_is_string(coll)) return srv_failf(f, 400, NULL, "rag.collection", "'rag.collection' must be a collection name");
    *collection = json_string_value(coll);
    json_t *k = json_object_get(rag, "top_k");
    *top_k = RAG_CHAT_TOP_K_DEFAULT;
    if (k && !json_is_null(k)) {
        if (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > RAG_CHAT_TOP_K_MAX)
            return srv_failf(f, 400, NULL, "rag.top_k", "'rag.top_k' must be an integer in [1, %d]", RAG_CHAT_TOP_K_MAX);
        *top_k = json_integer_value(k);
    }
    json_t *m = json_object_get(rag, "mode");
    *mode = NULL;
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) return srv_failf(f, 400, NULL, "rag.mode", "'rag.mode' must be bm25, vector or hybrid");
        *mode = json_string_value(m);
    }
    return true;
}

/* The grammar of an answer from n sources: '[' only opens a citation [1]..[n] (with no source,
 * never: a citation cannot point nowhere). */
static bool compile_grammar(srv_conn *c, const srv_model *M, int n, slm_gen_params *gen, srv_fail *f) {
    char *gbnf = NULL, err[384];
    if (n > 0) {
        if (slm_rag_citation_grammar(n, &gbnf, err, sizeof err)) return srv_failf(f, 500, NULL, "rag", "%s", err);
    } else if (!(gbnf = strdup("root ::= text*\ntext ::= [^\\[]\n"))) {
        return srv_failf(f, 500, NULL, "rag", "out of memory");
    }
    double budget = RAG_GRAMMAR_SECONDS;
    if (c->srv->cfg.request_timeout_s > 0 && c->srv->cfg.request_timeout_s < budget) budget = c->srv->cfg.request_timeout_s;
    slm_grammar_limits lim = {0};
    lim.deadline = slm_grammar_now() + budget;
    lim.cancel = grammar_cancel;
    lim.cancel_user = c;
    int rc = slm_grammar_compile_limited(M->model, gbnf, &lim, &gen->grammar, err, sizeof err);
    free(gbnf);
    if (rc == 0) return true;
    gen->grammar = NULL;
    if (rc == SLM_GRAMMAR_CANCELLED) {
        if (atomic_load(&c->srv->draining)) return srv_failf(f, 503, "shutting_down", NULL, "server is shutting down");
        return srv_failf(f, SRV_STATUS_GONE, NULL, "rag", "client gone while compiling the citation grammar");
    }
    return srv_failf(f, 500, NULL, "rag", "the citation grammar: %s", err);
}

/* "[1][2]...[n]": every source cited once, to check and describe them all up front. */
static char *all_markers(int n) {
    size_t cap = (size_t)n * 8 + 1, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 1; i <= n; i++) len += (size_t)snprintf(s + len, cap - len, "[%d]", i);
    return s;
}

/* The sources that fit: the best n whose prompt (with room for max_tokens) fits the local model's
 * context, dropping the worst source until it does. Another failure is left for the caller's own
 * tokenization to report. Sets rc->augmented and rc->system; false only when out of memory. */
static bool fit_sources(srv_conn *c, const srv_model *M, const slm_gen_params *gen, srv_rag_chat *rc,
                        const slm_rag_hit *hits, int *n, srv_fail *f) {
    int limit = srv_prompt_limit(c, M);
    if (gen->max_tokens > 0 && M->n_ctx - gen->max_tokens < limit) limit = M->n_ctx - gen->max_tokens;
    char err[512];
    for (;;) {
        if (slm_rag_augment_messages(rc->orig, rc->orig_n, hits, *n, &rc->augmented, &rc->n_augmented, &rc->system, err,
                                     sizeof err))
            return srv_failf(f, 500, NULL, "rag", "%s", err);
        if (*n == 0 || limit < 1) return true;
        slm_token *toks = NULL;
        int n_toks = 0;
        srv_fail tf = {0};
        bool fits = srv_chat_tokenize(M, rc->augmented, rc->n_augmented, true, "messages", limit, &toks, &n_toks, &tf);
        free(toks);
        if (fits || !tf.code || strcmp(tf.code, "context_length_exceeded") != 0) return true;
        free(rc->augmented);
        free(rc->system);
        rc->augmented = NULL;
        rc->system = NULL;
        (*n)--;
    }
}

/* Retrieval, the augmented messages and the checked citations; false with f. */
static bool retrieve(srv_conn *c, const srv_model *M, const slm_gen_params *gen, srv_rag_chat *rc,
                     const char *collection, int top_k, const char *mode, const char *query, srv_fail *f) {
    slm_rag *r = srv_rag_acquire(c, f);
    if (!r) return false;
    bool ok = false;
    char err[1024];
    slm_rag_hit *hits = NULL;
    int n = 0;
    slm_rag_embedder *emb = NULL;
    slm_rag_db_collection coll;
    int found = slm_rag_collection_get(r, collection, &coll, err, sizeof err);
    if (found < 0) {
        srv_failf(f, 500, NULL, "rag.collection", "%s", err);
        goto out;
    }
    if (found == 0) {
        srv_failf(f, 404, "collection_not_found", "rag.collection", "no collection called '%s'", collection);
        goto out;
    }
    slm_rag_search_opts so = {.top_k = top_k};
    if (!srv_rag_mode_embedder(c, &coll, mode, "rag.mode", &so.mode, &emb, f)) goto out;
    n = slm_rag_search(r, collection, query, &so, emb, &hits, err, sizeof err);
    if (n < 0) {
        n = 0;
        srv_failf(f, 500, "retrieval_failed", "rag", "%s", err);
        goto out;
    }
    int n_found = n;
    bool fit = fit_sources(c, M, gen, rc, hits, &n, f);
    for (int i = n; i < n_found; i++) { /* the sources that did not fit (the array goes at the end) */
        free(hits[i].heading);
        free(hits[i].text);
        free(hits[i].doc_name);
        free(hits[i].doc_path);
    }
    if (!fit) goto out;
    char *markers = n > 0 ? all_markers(n) : NULL;
    if (n > 0 && !markers) {
        srv_failf(f, 500, NULL, "rag", "out of memory");
        goto out;
    }
    int crc = n > 0 ? slm_rag_citations_json(r, hits, n, markers, &rc->citations, err, sizeof err) : 0;
    free(markers);
    if (crc) {
        srv_failf(f, 500, "retrieval_failed", "rag", "%s", err);
        goto out;
    }
    if (n == 0 && !(rc->citations = strdup("[]"))) {
        srv_failf(f, 500, NULL, "rag", "out of memory");
        goto out;
    }
    rc->n_sources = n;
    ok = true;
out:
    slm_rag_embedder_free(emb);
    slm_rag_hits_free(hits, n);
    srv_rag_release(c, r);
    return ok;
}

bool srv_rag_chat_begin(srv_conn *c, const srv_model *M, json_t *req, srv_chat_msgs *msgs, const srv_tools *tools,
                        slm_gen_params *gen, srv_rag_chat **out, srv_fail *f) {
    *out = NULL;
    json_t *rag = json_object_get(req, "rag");
    if (!rag || json_is_null(rag)) return true;
    const char *collection = NULL, *mode = NULL;
    long long top_k = RAG_CHAT_TOP_K_DEFAULT;
    if (!read_rag_field(rag, &collection, &top_k, &mode, f)) return false;
    if (srv_tools_active(tools))
        return srv_failf(f, 400, "unsupported", "rag",
                         "'rag' cannot be combined with tool calls (both constrain the answer with a grammar): drop "
                         "'tools' or set tool_choice \"none\"");
    if (gen->grammar)
        return srv_failf(f, 400, "unsupported", "rag",
                         "'rag' cannot be combined with 'response_format', 'grammar' or 'json_schema' (citations "
                         "constrain the answer with a grammar of their own)");
    if (!srv_rag_check_collection(c, collection, "rag.collection", f)) return false;
    const char *query = slm_rag_query_of(msgs->msgs, msgs->n);
    if (!query || !*query)
        return srv_failf(f, 400, NULL, "messages", "'rag' retrieves for the last user message, and there is none");
    srv_rag_chat *rc = calloc(1, sizeof *rc);
    if (!rc) return srv_failf(f, 500, NULL, NULL, "out of memory");
    rc->orig = msgs->msgs;
    rc->orig_n = msgs->n;
    if (!retrieve(c, M, gen, rc, collection, (int)top_k, mode, query, f) || !compile_grammar(c, M, rc->n_sources, gen, f)) {
        srv_rag_chat_end(rc, msgs);
        return false;
    }
    /* the template renders the sources; the gate's input policy sees them too (a route that
     * sends the call upstream masks the personal data of the documents as well) */
    msgs->msgs = rc->augmented;
    msgs->n = rc->n_augmented;
    *out = rc;
    return true;
}

size_t srv_rag_reply_size(const srv_rag_chat *rc) {
    if (!rc) return 0;
    return 16 + sizeof(rag_reply) + strlen(rc->citations) + 1; /* 16: room to align the start */
}

void *srv_rag_reply_init(void *mem, const srv_rag_chat *rc) {
    if (!rc || !mem) return NULL;
    rag_reply *rr = (rag_reply *)(((uintptr_t)mem + 15) & ~(uintptr_t)15);
    rr->n = rc->n_sources;
    memcpy(rr->citations, rc->citations, strlen(rc->citations) + 1);
    return rr;
}

void srv_rag_reply_citations(const void *reply, json_t *obj, const char *text, size_t len) {
    const rag_reply *rr = reply;
    if (!rr || !obj) return;
    json_t *all = json_loads(rr->citations, 0, NULL), *out = json_array();
    bool seen[RAG_CHAT_TOP_K_MAX + 1] = {false};
    for (size_t i = 0; all && out && text && i + 2 < len; i++) {
        if (text[i] != '[' || text[i + 1] < '1' || text[i + 1] > '9') continue;
        size_t j = i + 1;
        long idx = 0;
        while (j < len && text[j] >= '0' && text[j] <= '9' && idx <= RAG_CHAT_TOP_K_MAX) idx = idx * 10 + (text[j++] - '0');
        if (j >= len || text[j] != ']' || idx < 1 || idx > rr->n || idx > RAG_CHAT_TOP_K_MAX || seen[idx]) continue;
        seen[idx] = true;
        json_t *cite = json_array_get(all, (size_t)idx - 1);
        if (cite) json_array_append(out, cite);
    }
    json_decref(all);
    if (out) json_object_set_new(obj, "citations", out);
}

void srv_rag_chat_end(srv_rag_chat *rc, srv_chat_msgs *msgs) {
    if (!rc) return;
    if (msgs && msgs->msgs == rc->augmented) {
        msgs->msgs = rc->orig;
        msgs->n = rc->orig_n;
    }
    free(rc->augmented);
    free(rc->system);
    free(rc->citations);
    free(rc);
}
