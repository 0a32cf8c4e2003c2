/* The vectors of a collection in memory, shared by every retrieval handle of the process (the
 * server lends several): read from the store and indexed (ivf.c) once per change of the
 * collection, not once per handle. An entry is immutable once built; handles hold references. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rag_internal.h"
#include "util/err.h"

/* As many as the server lends retrieval handles: memory stays what it was when each handle kept the
 * vectors of the collection it searched last (collections beyond this are read privately). */
#define MAX_ENTRIES 4

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cache_cv = PTHREAD_COND_INITIALIZER; /* an entry finished building */
static rag_vectors *entries[MAX_ENTRIES];

static bool same_collection(const rag_vectors *v, const char *db_key, long long coll) {
    return v->coll == coll && strcmp(v->db_key, db_key) == 0;
}

static bool current(const rag_vectors *v, const char *db_key, const slm_rag_db_collection *c) {
    return same_collection(v, db_key, c->id) && v->count == c->n_chunks && v->max_id == c->max_chunk_id && v->dim == c->dim;
}

static void free_entry(rag_vectors *v) {
    rag_ivf_free(&v->ivf);
    free(v->ids);
    free(v->data);
    free(v);
}

/* Under cache_mu: takes out unreferenced entries of the same collection (an older state of it). */
static void drop_stale(const char *db_key, long long coll) {
    for (int i = 0; i < MAX_ENTRIES; i++)
        if (entries[i] && entries[i]->refs == 0 && entries[i]->ready && same_collection(entries[i], db_key, coll)) {
            free_entry(entries[i]);
            entries[i] = NULL;
        }
}

static int build(rag_vectors *v, slm_rag_db *db, const slm_rag_db_collection *c, char *err, size_t err_len) {
    long long n = slm_rag_db_vectors(db, c->id, c->dim, &v->ids, &v->data, err, err_len);
    if (n < 0) return -1;
    v->n = n;
    /* below this an exhaustive scan takes a few milliseconds: the index would only cost recall.
     * If building fails (memory), searches stay exhaustive. */
    if (n >= RAG_IVF_MIN_VECTORS) rag_ivf_build(&v->ivf, v->data, v->ids, (size_t)n, c->dim, 0, (uint64_t)c->id);
    return 0;
}

int rag_vectors_get(slm_rag_db *db, const char *db_key, const slm_rag_db_collection *c, rag_vectors **out, char *err,
                    size_t err_len) {
    *out = NULL;
    pthread_mutex_lock(&cache_mu);
    for (;;) {
        rag_vectors *found = NULL;
        for (int i = 0; i < MAX_ENTRIES && !found; i++)
            if (entries[i] && current(entries[i], db_key, c)) found = entries[i];
        if (!found) break;
        if (found->ready) {
            found->refs++;
            pthread_mutex_unlock(&cache_mu);
            *out = found;
            return 0;
        }
        pthread_cond_wait(&cache_cv, &cache_mu); /* another handle is reading it: wait for that one */
    }
    rag_vectors *v = calloc(1, sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&cache_mu);
        return slm_err(err, err_len, "out of memory");
    }
    snprintf(v->db_key, sizeof v->db_key, "%s", db_key);
    v->coll = c->id;
    v->count = c->n_chunks;
    v->max_id = c->max_chunk_id;
    v->dim = c->dim;
    v->refs = 1;
    drop_stale(db_key, c->id);
    int slot = -1;
    for (int i = 0; i < MAX_ENTRIES && slot < 0; i++)
        if (!entries[i]) slot = i;
    for (int i = 0; i < MAX_ENTRIES && slot < 0; i++) /* full: the first unreferenced entry goes */
        if (entries[i]->refs == 0 && entries[i]->ready) {
            free_entry(entries[i]);
            entries[i] = NULL;
            slot = i;
        }
    if (slot >= 0) entries[slot] = v; /* else every entry is in use: this one stays private */
    pthread_mutex_unlock(&cache_mu);

    int rc = build(v, db, c, err, err_len);

    pthread_mutex_lock(&cache_mu);
    if (rc != 0 && slot >= 0) entries[slot] = NULL;
    v->ready = true;
    v->shared = slot >= 0 && rc == 0;
    pthread_cond_broadcast(&cache_cv);
    pthread_mutex_unlock(&cache_mu);
    if (rc != 0) {
        free_entry(v);
        return -1;
    }
    *out = v;
    return 0;
}

void rag_vectors_put(rag_vectors *v) {
    if (!v) return;
    pthread_mutex_lock(&cache_mu);
    bool free_now = --v->refs == 0 && !v->shared;
    pthread_mutex_unlock(&cache_mu);
    if (free_now) free_entry(v);
}

void rag_vectors_forget(const char *db_key, long long coll) {
    pthread_mutex_lock(&cache_mu);
    drop_stale(db_key, coll);
    pthread_mutex_unlock(&cache_mu);
}
