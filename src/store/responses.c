/* Stored Responses API objects: every SQL statement about the `responses` table (slm_store_responses.h). */
#include "slm_store_responses.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

#define RESPONSES_SCHEMA_VERSION 3 /* slm_store's migration that created the table */

struct slm_responses_db {
    sqlite3 *db;
    char path[PATH_MAX];
};

static int fail(slm_responses_db *db, char *err, size_t err_len, const char *what) {
    return slm_err(err, err_len, "state store (%s): %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void slm_responses_close(slm_responses_db *db) {
    if (!db) return;
    if (db->db) sqlite3_close(db->db);
    free(db);
}

int slm_responses_open(const char *data_dir, slm_responses_db **out, char *err, size_t err_len) {
    *out = NULL;
    if (!data_dir || !*data_dir) return slm_err(err, err_len, "no data directory");
    slm_responses_db *db = calloc(1, sizeof *db);
    if (!db) return slm_err(err, err_len, "out of memory");
    if (snprintf(db->path, sizeof db->path, "%s/state.db", data_dir) >= (int)sizeof db->path) {
        free(db);
        return slm_err(err, err_len, "data directory path too long");
    }
    /* never creates: the state store made and migrated the file */
    int rc = sqlite3_open_v2(db->path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        slm_err(err, err_len, "cannot open state store %s: %s", db->path, db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
        slm_responses_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->db, 10000);
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < RESPONSES_SCHEMA_VERSION) {
        slm_err(err, err_len, "state store %s has schema version %d; stored responses need %d (open it with slm_store_open first)",
                db->path, version, RESPONSES_SCHEMA_VERSION);
        slm_responses_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int slm_responses_put(slm_responses_db *db, const slm_stored_response *r, char *err, size_t err_len) {
    if (!r->id || !*r->id || strlen(r->id) >= SLM_RESPONSE_ID_MAX) return slm_err(err, err_len, "invalid response id");
    sqlite3_stmt *st = NULL;
    /* the same id under another key is a conflict, not a replacement */
    if (sqlite3_prepare_v2(db->db,
                           "INSERT INTO responses (id, created, key, model, previous_id, response, items) VALUES (?,?,?,?,?,?,?) "
                           "ON CONFLICT(id) DO UPDATE SET created = excluded.created, model = excluded.model, "
                           "previous_id = excluded.previous_id, response = excluded.response, items = excluded.items "
                           "WHERE responses.key = excluded.key",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "storing a response");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, r->created > 0 ? r->created : unix_now());
    sqlite3_bind_text(st, 3, r->key ? r->key : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->model ? r->model : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->previous_id ? r->previous_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->response ? r->response : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, r->items ? r->items : "[]", -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    int changed = sqlite3_changes(db->db);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return fail(db, err, err_len, "storing a response");
    if (changed == 0) return slm_err(err, err_len, "response id %s is taken", r->id);
    return 0;
}

static char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

void slm_stored_response_clear(slm_stored_response *r) {
    free(r->id);
    free(r->key);
    free(r->model);
    free(r->previous_id);
    free(r->response);
    free(r->items);
    memset(r, 0, sizeof *r);
}

int slm_responses_get(slm_responses_db *db, const char *id, const char *key, slm_stored_response *out, char *err,
                      size_t err_len) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db,
                           "SELECT id, created, key, model, previous_id, response, items FROM responses WHERE id = ? AND key = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "reading a response");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key ? key : "", -1, SQLITE_STATIC);
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_ROW) {
        out->id = col_dup(st, 0);
        out->created = sqlite3_column_double(st, 1);
        out->key = col_dup(st, 2);
        out->model = col_dup(st, 3);
        out->previous_id = col_dup(st, 4);
        out->response = col_dup(st, 5);
        out->items = col_dup(st, 6);
        rc = 1;
        if (!out->id || !out->key || !out->model || !out->previous_id || !out->response || !out->items) {
            slm_stored_response_clear(out);
            rc = slm_err(err, err_len, "out of memory");
        }
    } else if (step == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = fail(db, err, err_len, "reading a response");
    }
    sqlite3_finalize(st);
    return rc;
}

int slm_responses_delete(slm_responses_db *db, const char *id, const char *key, char *err, size_t err_len) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, "DELETE FROM responses WHERE id = ? AND key = ?", -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "deleting a response");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key ? key : "", -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    int changed = sqlite3_changes(db->db);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return fail(db, err, err_len, "deleting a response");
    return changed > 0 ? 1 : 0;
}

long long slm_responses_expire(slm_responses_db *db, double before, char *err, size_t err_len) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, "DELETE FROM responses WHERE created < ?", -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "expiring responses");
    sqlite3_bind_double(st, 1, before);
    int step = sqlite3_step(st);
    long long changed = sqlite3_changes(db->db);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) return fail(db, err, err_len, "expiring responses");
    return changed;
}
