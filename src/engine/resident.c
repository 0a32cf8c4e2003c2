/* Models on demand: which models are resident, loading one the first time it is asked for, and
 * unloading idle ones when their keep_alive runs out or a new model needs the room (least recently
 * used first). Loading happens on the asking thread, outside the engine's lock; its bytes are
 * reserved meanwhile so two loads never overcommit the bound, and a second request for the same
 * model waits for the first load instead of loading it twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "engine/engine_impl.h"
#include "util/err.h"

void slm_engine_set_loader(slm_engine *e, const slm_engine_loader *loader, uint64_t max_memory) {
#if defined(__GLIBC__)
    /* Models come and go: their KV caches and scratch (MBs each) must go back to the system when
     * freed. A fixed threshold keeps glibc from moving them into the heap, where a freed block
     * below a live one stays resident. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    pthread_mutex_lock(&e->mu);
    e->loader = *loader;
    e->has_loader = loader->probe && loader->load;
    e->max_memory = max_memory;
    pthread_mutex_unlock(&e->mu);
}

/* Frees an unloaded model and gives its heap back: the KV caches are tens of MB each, which glibc
 * serves from the heap once its mmap threshold has risen, and keeps unless trimmed. */
static void free_unloaded(emodel *m) {
    emodel_free(m);
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

static bool unloadable(const emodel *m) { return !m->pinned && m->holds == 0 && m->busy == 0 && m->queue_len == 0; }

static uint64_t committed_bytes(const slm_engine *e) {
    uint64_t n = 0;
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i]) n += e->models[i]->bytes;
    for (int i = 0; i < e->n_loading; i++) n += e->loading[i].bytes;
    return n;
}

static int places_used(const slm_engine *e) {
    int n = e->n_loading;
    for (int i = 0; i < e->n_models; i++) n += e->models[i] != NULL;
    return n;
}

static int loading_index(const slm_engine *e, const char *name) {
    for (int i = 0; i < e->n_loading; i++)
        if (strcmp(e->loading[i].name, name) == 0) return i;
    return -1;
}

/* Under mu: takes model k out of the array if it is still `m` and still unloadable once no pass
 * runs; returns it for the caller to free outside the lock, or NULL. */
static emodel *detach(slm_engine *e, int k, emodel *m) {
    engine_change_begin(e); /* may wait, and let others change things meanwhile: check again after */
    emodel *out = NULL;
    if (e->models[k] == m && unloadable(m)) {
        e->models[k] = NULL;
        e->n_unloads++;
        out = m;
    }
    engine_change_end(e);
    return out;
}

/* Under mu: the least recently used unloadable model, or -1. */
static int lru_victim(const slm_engine *e) {
    int best = -1;
    for (int i = 0; i < e->n_models; i++) {
        const emodel *m = e->models[i];
        if (m && unloadable(m) && (best < 0 || m->last_used < e->models[best]->last_used)) best = i;
    }
    return best;
}

static void hold(emodel *m, double keep_alive) {
    m->holds++;
    if (!m->pinned) m->keep_alive = keep_alive;
    m->expires = 0;
    m->last_used = slm_now();
}

static void wait_until(slm_engine *e, double deadline) {
    double wait = deadline - slm_now();
    if (wait <= 0) return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double ns = (double)until.tv_nsec + wait * 1e9;
    until.tv_sec += (time_t)(ns / 1e9);
    until.tv_nsec = (long)(ns - (double)(time_t)(ns / 1e9) * 1e9);
    pthread_cond_timedwait(&e->models_cv, &e->mu, &until);
}

static void gib(uint64_t n, char *out, size_t cap) {
    if (n >= (1ull << 30))
        snprintf(out, cap, "%.2f GiB", (double)n / (double)(1ull << 30));
    else
        snprintf(out, cap, "%.1f MiB", (double)n / (double)(1ull << 20));
}

/* Under mu: holds the resident model `name`, waiting while it is being loaded; true when held. */
static bool hold_resident(slm_engine *e, const char *name, double keep_alive, int *index) {
    for (;;) {
        int k = engine_find_locked(e, name);
        if (k >= 0 && !e->models[k]->evicting) {
            hold(e->models[k], keep_alive);
            *index = k;
            return true;
        }
        if (k < 0 && loading_index(e, name) < 0) return false;
        pthread_cond_wait(&e->models_cv, &e->mu); /* loading, or leaving to make room (then load it again) */
    }
}

/* Under mu: the least recently used model in use that is not pinned or leaving already, or -1. */
static int busy_victim(const slm_engine *e) {
    int best = -1;
    for (int i = 0; i < e->n_models; i++) {
        const emodel *m = e->models[i];
        if (m && !m->pinned && !m->evicting && (best < 0 || m->last_used < e->models[best]->last_used)) best = i;
    }
    return best;
}

/* Under mu: unloads idle models until `bytes` more fit and a place is free; when only models in use
 * are in the way, the least recently used of them takes no new requests (so it cannot starve this
 * load by staying busy) and goes once its last request ends. false (mu held) when the room is still
 * not there at the deadline. */
static bool make_room(slm_engine *e, uint64_t bytes, double deadline) {
    emodel *marked = NULL;
    bool ok = false;
    for (;;) {
        bool fits = !e->max_memory || committed_bytes(e) + bytes <= e->max_memory;
        if (fits && places_used(e) < SLM_ENGINE_MAX_MODELS) {
            ok = true;
            break;
        }
        int k = lru_victim(e);
        if (k >= 0) {
            emodel *gone = detach(e, k, e->models[k]);
            if (gone) {
                if (gone == marked) marked = NULL;
                pthread_mutex_unlock(&e->mu);
                free_unloaded(gone);
                pthread_mutex_lock(&e->mu);
            }
            continue;
        }
        if (!marked && (k = busy_victim(e)) >= 0) {
            marked = e->models[k];
            marked->evicting = true;
        }
        if (slm_now() >= deadline) break;
        wait_until(e, deadline);
    }
    for (int i = 0; marked && i < e->n_models; i++)
        if (e->models[i] == marked) {
            marked->evicting = false; /* still here: it serves again */
            pthread_cond_broadcast(&e->models_cv);
        }
    return ok;
}

slm_acquire_status slm_engine_acquire(slm_engine *e, const char *name, double keep_alive, double wait_s, int *index,
                                      char *err, size_t err_len) {
    double deadline = slm_now() + (wait_s > 0 ? wait_s : 0);
    *index = -1;
    pthread_mutex_lock(&e->mu);
    bool held = hold_resident(e, name, keep_alive, index);
    bool can_load = e->has_loader;
    slm_engine_loader loader = e->loader;
    pthread_mutex_unlock(&e->mu);
    if (held) return SLM_ACQUIRE_OK;
    if (!can_load) return slm_err(err, err_len, "no model named '%s' is loaded", name), SLM_ACQUIRE_NOT_FOUND;

    char canonical[256];
    uint64_t bytes = 0;
    int found = loader.probe(loader.user, name, canonical, sizeof canonical, &bytes, err, err_len);
    if (found == 0) return SLM_ACQUIRE_NOT_FOUND;
    if (found == -2) return SLM_ACQUIRE_NOT_MODEL;
    if (found < 0) return SLM_ACQUIRE_FAILED;

    pthread_mutex_lock(&e->mu);
    if (hold_resident(e, canonical, keep_alive, index)) { /* loaded by another request meanwhile */
        pthread_mutex_unlock(&e->mu);
        return SLM_ACQUIRE_OK;
    }
    if (e->max_memory && bytes > e->max_memory) {
        char need[32], max[32];
        gib(bytes, need, sizeof need);
        gib(e->max_memory, max, sizeof max);
        pthread_mutex_unlock(&e->mu);
        slm_err(err, err_len, "model '%s' needs %s (weights and KV cache), more than the server's --max-memory of %s",
                canonical, need, max);
        return SLM_ACQUIRE_TOO_LARGE;
    }
    /* one load at a time makes room, in arrival order: a large model is not starved by small ones
     * that would always find room first */
    uint64_t ticket = e->room_next++;
    while (e->room_serving != ticket || e->n_loading == ENGINE_MAX_LOADING) pthread_cond_wait(&e->models_cv, &e->mu);
    bool room = false;
    bool held_now = hold_resident(e, canonical, keep_alive, index);
    if (!held_now) room = make_room(e, bytes, deadline);
    e->room_serving++;
    pthread_cond_broadcast(&e->models_cv);
    if (held_now) {
        pthread_mutex_unlock(&e->mu);
        return SLM_ACQUIRE_OK;
    }
    if (!room) {
        char have[32], max[32];
        gib(committed_bytes(e), have, sizeof have);
        gib(e->max_memory, max, sizeof max);
        pthread_mutex_unlock(&e->mu);
        slm_err(err, err_len,
                "model '%s' cannot be loaded now: the models in memory (%s of --max-memory %s) are all in use; "
                "try again shortly",
                canonical, have, max);
        return SLM_ACQUIRE_BUSY;
    }
    engine_loading *slot = &e->loading[e->n_loading++];
    snprintf(slot->name, sizeof slot->name, "%s", canonical);
    slot->bytes = bytes;
    pthread_mutex_unlock(&e->mu);

    slm_model *model = NULL;
    slm_context *ctx = NULL;
    emodel *m = NULL;
    slm_context_params cp = slm_context_default_params();
    int rc = loader.load(loader.user, canonical, &model, &cp, err, err_len);
    if (rc == 0) {
        cp.n_threads = e->params.n_threads;
        rc = slm_context_new(model, &cp, &ctx, err, err_len);
    }
    if (rc == 0) {
        m = engine_new_emodel(e, canonical, model, ctx, true, true, err, err_len);
        rc = m ? 0 : -1;
    }
    if (rc != 0) {
        if (ctx) slm_context_free(ctx);
        if (model) slm_model_free(model);
    }

    pthread_mutex_lock(&e->mu);
    slm_acquire_status st = SLM_ACQUIRE_OK;
    if (m) {
        if (m->bytes < bytes) m->bytes = bytes; /* the estimate covers what the pass allocates later */
        engine_change_begin(e); /* may let others run: the reservation stays until the model is in */
        *index = engine_insert_model(e, m);
        engine_change_end(e);
        if (*index >= 0) {
            e->n_loads++;
            hold(m, keep_alive);
        }
    } else {
        st = SLM_ACQUIRE_FAILED;
    }
    int li = loading_index(e, canonical);
    e->loading[li] = e->loading[--e->n_loading];
    pthread_cond_broadcast(&e->models_cv);
    pthread_mutex_unlock(&e->mu);
    if (m && *index < 0) {
        emodel_free(m);
        slm_err(err, err_len, "at most %d models can be loaded at once", SLM_ENGINE_MAX_MODELS);
        return SLM_ACQUIRE_BUSY;
    }
    return st;
}

void slm_engine_release(slm_engine *e, int index) {
    pthread_mutex_lock(&e->mu);
    emodel *m = index >= 0 && index < e->n_models ? e->models[index] : NULL;
    if (m && m->holds > 0) {
        m->holds--;
        m->last_used = slm_now();
        if (m->holds == 0 && !m->pinned && m->keep_alive >= 0) m->expires = m->last_used + m->keep_alive;
        pthread_cond_broadcast(&e->models_cv);
        pthread_cond_broadcast(&e->cv); /* the scheduler recomputes when the next model expires */
    }
    pthread_mutex_unlock(&e->mu);
}

int slm_engine_unload(slm_engine *e, const char *name) {
    pthread_mutex_lock(&e->mu);
    int k = engine_find_locked(e, name);
    int found = 0;
    if (k >= 0 && !e->models[k]->pinned) {
        emodel *m = e->models[k];
        m->keep_alive = 0;
        if (m->holds == 0) m->expires = slm_now();
        pthread_cond_broadcast(&e->cv);
        found = 1;
    }
    pthread_mutex_unlock(&e->mu);
    return found;
}

double engine_expire_idle(slm_engine *e) {
    for (;;) {
        double now = slm_now(), next = 0;
        int k_due = -1;
        for (int k = 0; k < e->n_models; k++) {
            const emodel *m = e->models[k];
            if (!m || !unloadable(m) || m->expires <= 0) continue;
            if (m->expires <= now) {
                k_due = k;
                break;
            }
            if (next == 0 || m->expires < next) next = m->expires;
        }
        if (k_due < 0) return next;
        emodel *gone = detach(e, k_due, e->models[k_due]);
        if (gone) {
            pthread_mutex_unlock(&e->mu);
            free_unloaded(gone);
            pthread_mutex_lock(&e->mu);
        }
    }
}

int slm_engine_models(slm_engine *e, slm_engine_model_info *out, int cap) {
    pthread_mutex_lock(&e->mu);
    double now = slm_now(), unix_now = (double)time(NULL);
    int n = 0;
    for (int k = 0; k < e->n_models && n < cap; k++) {
        const emodel *m = e->models[k];
        if (!m) continue;
        slm_engine_model_info *o = &out[n++];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", m->name);
        o->index = k;
        o->pinned = m->pinned;
        o->holds = m->holds;
        o->busy = m->busy;
        o->queued = m->queue_len;
        o->loaded_unix = m->loaded_at;
        o->bytes = m->bytes;
        snprintf(o->desc, sizeof o->desc, "%s", slm_model_desc(m->model));
        snprintf(o->arch, sizeof o->arch, "%s", slm_model_arch(m->model));
        o->n_ctx = m->n_ctx;
        o->embedding = slm_model_is_embedding(m->model);
        if (!m->pinned && m->keep_alive >= 0)
            o->expires_unix = unix_now + (m->expires > 0 ? m->expires - now : m->keep_alive);
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

void slm_engine_residency(slm_engine *e, uint64_t *resident, uint64_t *max_memory, uint64_t *loads, uint64_t *unloads) {
    pthread_mutex_lock(&e->mu);
    uint64_t n = 0;
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i]) n += e->models[i]->bytes;
    if (resident) *resident = n;
    if (max_memory) *max_memory = e->max_memory;
    if (loads) *loads = e->n_loads;
    if (unloads) *unloads = e->n_unloads;
    pthread_mutex_unlock(&e->mu);
}
