/* slm store, Responses API part: stored response objects (OpenAI's `store`, `previous_response_id`,
 * GET and DELETE /v1/responses/{id}) in the `responses` table of state.db (created by migration 3 of
 * slm_store). Every SQL statement about stored responses lives in src/store/responses.c.
 *
 * A handle is one SQLite connection of its own (WAL; SQLite's locking orders it with the other
 * connections of this and other processes), usable from any one thread at a time. Rows belong to
 * the key that created them: every read and delete names the key, and another key's row is "not
 * found", never "forbidden" (ids do not leak across keys). */
#ifndef SLM_STORE_RESPONSES_H
#define SLM_STORE_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_responses_db slm_responses_db;

#define SLM_RESPONSE_ID_MAX 64

/* One stored response. On reads every string is malloc'd (slm_stored_response_clear). */
typedef struct slm_stored_response {
    char *id;          /* "resp_..." */
    double created;    /* unix seconds */
    char *key;         /* the principal that created it ("" = anonymous) */
    char *model;
    char *previous_id; /* "" = none */
    char *response;    /* the response object as returned to the client (JSON text) */
    char *items;       /* the conversation up to and including its output, as input items (JSON array text) */
} slm_stored_response;

/* Opens data_dir/state.db, which slm_store_open has created and migrated (schema version >= 3;
 * an older database is an error naming the version). */
int slm_responses_open(const char *data_dir, slm_responses_db **out, char *err, size_t err_len);
void slm_responses_close(slm_responses_db *db);
/* Inserts (or, for the same id and key, replaces) a stored response. created <= 0 = now. */
int slm_responses_put(slm_responses_db *db, const slm_stored_response *r, char *err, size_t err_len);
/* The response `id` stored by `key`: 1 found (out filled), 0 none (or another key's), -1 error. */
int slm_responses_get(slm_responses_db *db, const char *id, const char *key, slm_stored_response *out, char *err,
                      size_t err_len);
/* Deletes the response `id` stored by `key`: 1 deleted, 0 none, -1 error. Responses that named it
 * as previous_response_id keep their own copy of the conversation and stay readable. */
int slm_responses_delete(slm_responses_db *db, const char *id, const char *key, char *err, size_t err_len);
/* Deletes every response created before `before` (unix seconds); the count or -1. */
long long slm_responses_expire(slm_responses_db *db, double before, char *err, size_t err_len);
void slm_stored_response_clear(slm_stored_response *r);

#ifdef __cplusplus
}
#endif
#endif
