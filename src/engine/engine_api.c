/* The engine's API around the scheduling pass: models (each with its context and slots), the
 * lifecycle (scheduler thread, drain, free), submission, cancellation and waiting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_impl.h"
#include "engine/request_impl.h"
#include "util/err.h"

/* ---------- models ---------- */

void emodel_free(emodel *m) {
    if (!m) return;
    if (m->slots)
        for (int i = 0; i < m->n_seq; i++) slm_buf_free(&m->slots[i].pending);
    free(m->slots);
    free(m->queue);
    free(m->b_tokens);
    free(m->b_pos);
    free(m->b_seq);
    free(m->b_logits);
    free(m->plan);
    free(m->emb_seq);
    free(m->emb_owner);
    free(m->emb_input);
    free(m->seq_used);
    free(m->eog_tokens);
    if (m->own_ctx) slm_context_free(m->ctx);
    if (m->own_model) slm_model_free(m->model);
    free(m);
}

/* The scheduler state for a model and its context; NULL with err. The caller keeps ownership of
 * model and ctx on failure. */
emodel *engine_new_emodel(const slm_engine *e, const char *name, slm_model *model, slm_context *ctx, bool own_model,
                          bool own_ctx, char *err, size_t err_len) {
    if (!name || !*name || strlen(name) >= sizeof e->models[0]->name) {
        slm_err(err, err_len, "invalid model name");
        return NULL;
    }
    emodel *m = calloc(1, sizeof *m);
    if (!m) {
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->model = model;
    m->ctx = ctx;
    m->own_model = own_model;
    m->own_ctx = own_ctx;
    m->n_ctx = slm_context_n_ctx(ctx);
    m->n_seq = slm_context_n_seq(ctx);
    m->n_batch = slm_context_n_batch(ctx);
    m->n_vocab = slm_model_n_vocab(model);
    m->n_embd = slm_model_n_embd(model);
    m->bytes = slm_model_size_bytes(model) + slm_context_kv_bytes(ctx);
    m->loaded_at = (double)time(NULL);
    m->last_used = slm_now();
    int qc = e->params.queue_cap;
    m->queue_limit = qc < 0 ? 0 : qc == 0 ? 64 : qc;
    m->queue_cap = m->queue_limit + m->n_seq;
    m->queue = calloc((size_t)m->queue_cap, sizeof *m->queue);
    m->slots = calloc((size_t)m->n_seq, sizeof *m->slots);
    m->b_tokens = malloc((size_t)m->n_batch * sizeof *m->b_tokens);
    m->b_pos = malloc((size_t)m->n_batch * sizeof *m->b_pos);
    m->b_seq = malloc((size_t)m->n_batch * sizeof *m->b_seq);
    m->b_logits = malloc((size_t)m->n_batch);
    m->plan = calloc((size_t)m->n_seq, sizeof *m->plan);
    m->emb_seq = calloc((size_t)m->n_seq, sizeof *m->emb_seq);
    m->emb_owner = calloc((size_t)m->n_seq, sizeof *m->emb_owner);
    m->emb_input = calloc((size_t)m->n_seq, sizeof *m->emb_input);
    m->seq_used = calloc((size_t)m->n_seq, sizeof *m->seq_used);
    bool ok = m->queue && m->slots && m->b_tokens && m->b_pos && m->b_seq && m->b_logits && m->plan && m->emb_seq &&
              m->emb_owner && m->emb_input && m->seq_used;
    for (int i = 0; ok && i < m->n_seq; i++) m->slots[i].id = i;
    if (ok) {
        int n_eog = 0;
        for (int t = 0; t < m->n_vocab; t++) n_eog += slm_token_is_eog(model, t);
        m->eog_tokens = malloc((size_t)(n_eog ? n_eog : 1) * sizeof *m->eog_tokens);
        ok = m->eog_tokens != NULL;
        for (int t = 0; ok && t < m->n_vocab; t++)
            if (slm_token_is_eog(model, t)) m->eog_tokens[m->n_eog++] = t;
    }
    if (!ok) {
        m->own_ctx = m->own_model = false; /* the caller still owns them on failure */
        emodel_free(m);
        slm_err(err, err_len, "out of memory for the scheduler of '%s'", name);
        return NULL;
    }
    return m;
}

void engine_change_begin(slm_engine *e) {
    e->n_changing++;
    while (e->stepping) pthread_cond_wait(&e->models_cv, &e->mu);
}

void engine_change_end(slm_engine *e) {
    e->n_changing--;
    pthread_cond_broadcast(&e->models_cv);
}

int engine_insert_model(slm_engine *e, emodel *m) {
    int k = 0;
    while (k < e->n_models && e->models[k]) k++;
    if (k == SLM_ENGINE_MAX_MODELS) return -1;
    e->models[k] = m;
    if (k == e->n_models) e->n_models = k + 1;
    return k;
}

/* Adds a model its owner gives (pinned: it stays until the engine is freed). */
static int add_emodel(slm_engine *e, const char *name, slm_model *model, slm_context *ctx, bool own_model,
                      bool own_ctx, char *err, size_t err_len) {
    emodel *m = engine_new_emodel(e, name, model, ctx, own_model, own_ctx, err, err_len);
    if (!m) return -1;
    m->pinned = true;
    m->keep_alive = -1;
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    bool taken = false;
    for (int i = 0; i < e->n_models; i++) taken |= e->models[i] && strcmp(e->models[i]->name, name) == 0;
    if (taken)
        rc = slm_err(err, err_len, "a model named '%s' is already loaded", name);
    else {
        engine_change_begin(e);
        if (engine_insert_model(e, m) < 0) rc = slm_err(err, err_len, "at most %d models can be loaded at once", SLM_ENGINE_MAX_MODELS);
        engine_change_end(e);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        m->own_ctx = m->own_model = false;
        emodel_free(m);
    }
    return rc;
}

int slm_engine_add_model(slm_engine *e, const char *name, slm_model *model, const slm_context_params *cparams,
                         bool take_ownership, char *err, size_t err_len) {
    slm_context_params cp = cparams ? *cparams : slm_context_default_params();
    cp.n_threads = e->params.n_threads;
    slm_context *ctx;
    if (slm_context_new(model, &cp, &ctx, err, err_len) != 0) return -1;
    if (add_emodel(e, name, model, ctx, take_ownership, true, err, err_len) != 0) {
        slm_context_free(ctx);
        return -1;
    }
    return 0;
}

int slm_engine_add_context(slm_engine *e, const char *name, slm_context *ctx, char *err, size_t err_len) {
    return add_emodel(e, name, (slm_model *)slm_context_model(ctx), ctx, false, false, err, err_len);
}

int slm_engine_n_models(const slm_engine *e) { return e->n_models; }
/* A resident model's fields stay put while it is held (or pinned); a free place gives NULL. */
const char *slm_engine_model_name(const slm_engine *e, int i) {
    return i >= 0 && i < e->n_models && e->models[i] ? e->models[i]->name : NULL;
}
const slm_model *slm_engine_model_at(const slm_engine *e, int i) {
    return i >= 0 && i < e->n_models && e->models[i] ? e->models[i]->model : NULL;
}
const slm_context *slm_engine_context_at(const slm_engine *e, int i) {
    return i >= 0 && i < e->n_models && e->models[i] ? e->models[i]->ctx : NULL;
}

int engine_find_locked(const slm_engine *e, const char *name) {
    if (!name || !*name) {
        for (int i = 0; i < e->n_models; i++)
            if (e->models[i]) return i;
        return -1;
    }
    for (int i = 0; i < e->n_models; i++) {
        if (!e->models[i]) continue;
        size_t n = strlen(e->models[i]->name);
        if (strncmp(name, e->models[i]->name, n) == 0 && (name[n] == 0 || strcmp(name + n, ":latest") == 0)) return i;
    }
    return -1;
}

int slm_engine_find(const slm_engine *e, const char *name) {
    slm_engine *me = (slm_engine *)e; /* the lock is not part of the engine's value */
    pthread_mutex_lock(&me->mu);
    int k = engine_find_locked(e, name);
    pthread_mutex_unlock(&me->mu);
    return k;
}

/* ---------- lifecycle ---------- */

int slm_engine_new(const slm_engine_params *params, slm_engine **out, char *err, size_t err_len) {
    *out = NULL;
    slm_engine *e = calloc(1, sizeof *e);
    if (!e) return slm_err(err, err_len, "out of memory");
    if (params) e->params = *params;
    if (e->params.n_threads < 0) e->params.n_threads = 0;
    e->piece_cap = 256;
    e->piece = malloc(e->piece_cap);
    if (!e->piece) {
        free(e);
        return slm_err(err, err_len, "out of memory");
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_cond_init(&e->idle_cv, &ca);
    pthread_cond_init(&e->models_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = e;
    return 0;
}

int slm_engine_start(slm_engine *e, char *err, size_t err_len) {
    if (e->started) return 0;
    if (e->n_models == 0 && !e->has_loader) return slm_err(err, err_len, "the engine has no model");
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) return slm_err(err, err_len, "cannot start the scheduler thread");
    e->started = true;
    return 0;
}

void slm_engine_free(slm_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->quit = true;
    e->cancel_all = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started)
        pthread_join(e->thread, NULL);
    else
        engine_cancel_everything(e);
    for (int i = 0; i < e->n_models; i++) emodel_free(e->models[i]);
    free(e->piece);
    free(e->sanitized);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->models_cv);
    free(e);
}

slm_submit_status slm_engine_submit(slm_engine *e, slm_request *r) {
    if (r->t_submit == 0) r->t_submit = slm_now();
    pthread_mutex_lock(&e->mu);
    int k = engine_find_locked(e, r->model);
    emodel *m = k >= 0 ? e->models[k] : NULL;
    slm_submit_status st = SLM_SUBMIT_OK;
    if (!m || r->seq >= m->n_seq)
        st = SLM_SUBMIT_NO_MODEL;
    else if (e->draining || e->quit)
        st = SLM_SUBMIT_DRAINING;
    else if (m->queue_len >= m->queue_limit + (m->n_seq > m->busy ? m->n_seq - m->busy : 0))
        st = SLM_SUBMIT_FULL; /* free slots take requests beyond the waiting limit */
    else {
        slm_request_retain(r);
        m->queue[(m->queue_head + m->queue_len) % m->queue_cap] = r;
        m->queue_len++;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

void slm_engine_cancel(slm_engine *e, slm_request *r) {
    atomic_store(&r->cancelled, true);
    engine_notify(e);
}

slm_finish slm_engine_wait(slm_engine *e, slm_request *r, slm_text_fn on_text, slm_cancel_fn should_cancel, void *user) {
    size_t seen = 0;
    bool cancelled = false;
    for (;;) {
        /* stepped by this thread: no progress and nothing queued or running means r was never
         * submitted here; waiting would spin for ever */
        bool idle = !e->started && slm_engine_step(e) == 0 && !engine_has_work(e);
        pthread_mutex_lock(&r->mu);
        if (idle && !r->done) {
            pthread_mutex_unlock(&r->mu);
            return SLM_FINISH_ERROR;
        }
        if (e->started && !r->done && r->text_len == seen) slm_request_wait(r, 20);
        bool done = r->done;
        size_t len = r->text_len;
        pthread_mutex_unlock(&r->mu);
        /* r->text only grows (and may move) under mu; the slice [seen, len) is ours to read once
         * released only while no other writer appends, so copy under the lock when threaded */
        if (len > seen && on_text && !cancelled) {
            pthread_mutex_lock(&r->mu);
            bool go_on = on_text(user, r->text + seen, len - seen);
            pthread_mutex_unlock(&r->mu);
            if (!go_on) {
                cancelled = true;
                slm_engine_cancel(e, r);
            }
        }
        seen = len;
        if (done) break;
        if (!cancelled && should_cancel && should_cancel(user)) {
            cancelled = true;
            slm_engine_cancel(e, r);
        }
    }
    return r->finish;
}

int slm_engine_drain(slm_engine *e, double timeout_s) {
    if (!e->started) { /* nobody steps it: whatever is left is cancelled now */
        int queued, busy;
        slm_engine_counts(e, -1, &queued, &busy);
        pthread_mutex_lock(&e->mu);
        e->draining = true;
        pthread_mutex_unlock(&e->mu);
        engine_cancel_everything(e);
        return queued + busy;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)timeout_s;
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    int rc = 0;
    while (engine_has_work(e) && rc == 0) rc = pthread_cond_timedwait(&e->idle_cv, &e->mu, &until);
    int left = 0;
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i]) left += e->models[i]->busy + e->models[i]->queue_len;
    if (left > 0) {
        e->cancel_all = true;
        pthread_cond_broadcast(&e->cv);
        while (engine_has_work(e)) pthread_cond_wait(&e->idle_cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return left;
}

void slm_engine_counts(slm_engine *e, int model, int *queued, int *busy) {
    pthread_mutex_lock(&e->mu);
    *queued = *busy = 0;
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i] && (model < 0 || model == i)) {
            *queued += e->models[i]->queue_len;
            *busy += e->models[i]->busy;
        }
    pthread_mutex_unlock(&e->mu);
}
