/* Embeddings for retrieval, always as gate calls on an engine (governed like any other call). */
#include <stdlib.h>
#include <string.h>

#include "slm_rag.h"
#include "util/err.h"

struct slm_rag_embedder {
    slm_engine *engine;
    slm_gate *gate;
    const slm_model *model;
    char model_name[256];
    int dim, limit;
    bool owned; /* engine and gate are ours */
    const char *credential, *client; /* the caller the gate admits (set_caller), NULL = none */
};

enum { EMBED_SEQS = 8, EMBED_GROUP = 64 };

int slm_rag_embedder_open(const char *model_path, int n_threads, slm_rag_embedder **out, char *err, size_t err_len) {
    *out = NULL;
    slm_rag_embedder *e = calloc(1, sizeof *e);
    if (!e) return slm_err(err, err_len, "out of memory");
    slm_model *model = NULL;
    if (slm_model_load(model_path, NULL, &model, err, err_len)) {
        free(e);
        return -1;
    }
    slm_context_params cp = slm_context_default_params();
    int train = slm_model_n_ctx_train(model);
    cp.n_ctx = train > 0 && train < 2048 ? train : 2048;
    cp.n_batch = cp.n_ctx < 2048 ? 2048 : cp.n_ctx;
    cp.n_seq = EMBED_SEQS;
    cp.embeddings = true;
    bool added = false;
    if (slm_engine_new(&(slm_engine_params){.n_threads = n_threads, .queue_cap = -1}, &e->engine, err, err_len) ||
        !(added = slm_engine_add_model(e->engine, "embed", model, &cp, true, err, err_len) == 0) ||
        slm_gate_new(e->engine, &e->gate, err, err_len)) {
        if (!added) slm_model_free(model);
        slm_engine_free(e->engine);
        free(e);
        return -1;
    }
    e->owned = true;
    e->model = model;
    snprintf(e->model_name, sizeof e->model_name, "embed");
    const slm_context *ctx = slm_engine_context_at(e->engine, 0);
    int n_ctx = slm_context_n_ctx(ctx), n_batch = slm_context_n_batch(ctx);
    e->limit = n_ctx < n_batch ? n_ctx : n_batch;
    e->dim = slm_model_n_embd(model);
    *out = e;
    return 0;
}

int slm_rag_embedder_attach(slm_engine *engine, slm_gate *gate, const char *model_name, const slm_model *model,
                            slm_rag_embedder **out, char *err, size_t err_len) {
    *out = NULL;
    int idx = slm_engine_find(engine, model_name);
    if (idx < 0) return slm_err(err, err_len, "no engine model called '%.80s'", model_name);
    slm_rag_embedder *e = calloc(1, sizeof *e);
    if (!e) return slm_err(err, err_len, "out of memory");
    e->engine = engine;
    e->gate = gate;
    e->model = model;
    snprintf(e->model_name, sizeof e->model_name, "%s", model_name);
    const slm_context *ctx = slm_engine_context_at(engine, idx);
    int n_ctx = slm_context_n_ctx(ctx), n_batch = slm_context_n_batch(ctx);
    e->limit = n_ctx < n_batch ? n_ctx : n_batch;
    e->dim = slm_model_n_embd(model);
    *out = e;
    return 0;
}

void slm_rag_embedder_set_caller(slm_rag_embedder *e, const char *credential, const char *client) {
    e->credential = credential;
    e->client = client;
}

void slm_rag_embedder_free(slm_rag_embedder *e) {
    if (!e) return;
    if (e->owned) {
        slm_gate_free(e->gate);
        slm_engine_free(e->engine);
    }
    free(e);
}

int slm_rag_embedder_dim(const slm_rag_embedder *e) { return e->dim; }

static int embed_group(slm_rag_embedder *e, const char *const *texts, const size_t *lens, int n, float *out, char *err,
                       size_t err_len) {
    slm_request *r = slm_request_new(SLM_REQ_EMBED);
    if (!r || !(r->embed_inputs = calloc((size_t)n, sizeof *r->embed_inputs)) ||
        !(r->embed_lens = calloc((size_t)n, sizeof *r->embed_lens))) {
        slm_request_release(r);
        return slm_err(err, err_len, "out of memory");
    }
    snprintf(r->model, sizeof r->model, "%s", e->model_name);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        int cap = e->limit + 8;
        slm_token *ids = malloc(sizeof *ids * (size_t)cap);
        if (!ids) {
            rc = slm_err(err, err_len, "out of memory");
            break;
        }
        /* a chunk longer than the context is embedded by its beginning (the end token kept) */
        size_t len = lens[i], max_bytes = slm_tokenize_max_bytes(e->model, false, e->limit * 4);
        if (len > max_bytes) len = max_bytes;
        int k = slm_tokenize(e->model, texts[i], len, true, false, ids, cap, err, err_len);
        if (k < 0 && k != SLM_TOKENIZE_ERROR) {
            slm_token *big = realloc(ids, sizeof *ids * (size_t)(-k));
            if (!big) {
                free(ids);
                rc = slm_err(err, err_len, "out of memory");
                break;
            }
            ids = big;
            k = slm_tokenize(e->model, texts[i], len, true, false, ids, -k, err, err_len);
        }
        if (k < 0) {
            free(ids);
            rc = -1;
            break;
        }
        if (k > e->limit) {
            slm_token last = ids[k - 1];
            k = e->limit;
            if (slm_token_is_control(e->model, last)) ids[k - 1] = last;
        }
        if (k == 0) { /* nothing to embed (e.g. only whitespace): the BOS/CLS alone */
            slm_token bos = slm_token_bos(e->model);
            ids[0] = bos >= 0 ? bos : 0;
            k = 1;
        }
        r->embed_inputs[i] = ids;
        r->embed_lens[i] = k;
        r->n_embed = i + 1;
    }
    if (rc == 0) {
        r->n_embd = e->dim;
        r->embeddings = calloc((size_t)n * (size_t)e->dim, sizeof *r->embeddings);
        if (!r->embeddings) rc = slm_err(err, err_len, "out of memory");
    }
    if (rc == 0) {
        slm_gate_call call;
        slm_gate_call_init(&call, SLM_CALL_EMBED, "rag", "embed");
        call.request = r;
        call.model = e->model_name;
        call.credential = e->credential;
        if (e->client) call.client = e->client;
        if (!slm_gate_admit(e->gate, &call) || !slm_gate_submit(e->gate, &call)) {
            rc = slm_err(err, err_len, "embedding: %s", call.error);
        } else if (slm_engine_wait(e->engine, r, NULL, NULL, NULL) != SLM_FINISH_STOP) {
            rc = slm_err(err, err_len, "embedding: %s", slm_finish_message(r));
            slm_gate_refuse(&call, 500, "engine_error", "%s", slm_finish_message(r));
        }
        call.prompt_tokens = r->n_embed_tokens;
        slm_gate_finish(e->gate, &call);
        if (rc == 0) memcpy(out, r->embeddings, sizeof *out * (size_t)n * (size_t)e->dim);
    }
    slm_request_release(r);
    return rc;
}

int slm_rag_embed(slm_rag_embedder *e, const char *const *texts, const size_t *lens, int n, float *out, char *err,
                  size_t err_len) {
    for (int i = 0; i < n; i += EMBED_GROUP) {
        int m = n - i < EMBED_GROUP ? n - i : EMBED_GROUP;
        if (embed_group(e, texts + i, lens + i, m, out + (size_t)i * (size_t)e->dim, err, err_len)) return -1;
    }
    return 0;
}
