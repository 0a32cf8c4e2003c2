/* The retrieval tables of the state store and every SQL statement retrieval runs (slm_store_rag.h).
 *
 * Layout: rag_collections, rag_documents (with the extracted text, which citations are checked
 * against), rag_chunks (byte ranges of that text, the chunk text, an optional f16 vector), and per
 * collection an FTS5 table rag_fts_<id> whose content is rag_chunks (external content: the text
 * is stored once). BM25 statistics are per collection because the index is. Ranking is our own
 * FTS5 function slm_bm25(k1, b, heading weight, text weight): FTS5's bm25() fixes k1 and b. */
#include "slm_store_rag.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store_impl.h"
#include "util/err.h"

#define RAG_SCHEMA_VERSION 2 /* 2: rag_collections.pii */

/* The token lengths (heading, text) of every chunk of one collection, read once from its FTS5
 * docsize table: BM25 needs a chunk's length for every row it scores, and FTS5's xColumnSize runs a
 * statement per row for it (a fifth of a query's time at 100k chunks). Valid while the database is
 * unchanged (the pager's data version and this connection's change count). */
typedef struct doclen_cache {
    long long coll; /* -1 = empty */
    unsigned int data_version;
    sqlite3_int64 changes;
    size_t n, hint;
    sqlite3_int64 *ids; /* ascending */
    uint32_t *len;      /* 2 per chunk: heading, text */
} doclen_cache;

struct slm_rag_db {
    sqlite3 *db;
    char path[PATH_MAX];
    doclen_cache dl;
};

static const char rag_schema[] =
    "CREATE TABLE IF NOT EXISTS rag_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rag_collections ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  embed_model TEXT NOT NULL DEFAULT '',"
    "  dim INTEGER NOT NULL DEFAULT 0,"
    "  chunk_tokens INTEGER NOT NULL,"
    "  chunk_overlap INTEGER NOT NULL,"
    "  created REAL NOT NULL,"
    "  pii TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE IF NOT EXISTS rag_documents ("
    "  id INTEGER PRIMARY KEY,"
    "  collection INTEGER NOT NULL REFERENCES rag_collections(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  path TEXT NOT NULL,"
    "  format TEXT NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  n_chunks INTEGER NOT NULL DEFAULT 0,"
    "  n_pages INTEGER NOT NULL DEFAULT 0,"
    "  added REAL NOT NULL,"
    "  text BLOB NOT NULL,"
    "  UNIQUE(collection, path));"
    "CREATE TABLE IF NOT EXISTS rag_chunks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* never reused: (count, max id) identifies a state */
    "  collection INTEGER NOT NULL,"
    "  doc INTEGER NOT NULL REFERENCES rag_documents(id) ON DELETE CASCADE,"
    "  ord INTEGER NOT NULL,"
    "  start INTEGER NOT NULL,"
    "  end INTEGER NOT NULL,"
    "  page INTEGER NOT NULL,"
    "  heading TEXT NOT NULL,"
    "  text TEXT NOT NULL,"
    "  vec BLOB);"
    /* covering: the counts and sizes of a collection (read on every search) never touch the rows,
     * which hold the documents' text */
    "CREATE INDEX IF NOT EXISTS rag_documents_size ON rag_documents(collection, size);"
    "CREATE INDEX IF NOT EXISTS rag_chunks_doc ON rag_chunks(doc);"
    "CREATE INDEX IF NOT EXISTS rag_chunks_collection ON rag_chunks(collection);";

static int fail(slm_rag_db *db, char *err, size_t err_len, const char *what) {
    return slm_err(err, err_len, "state store (%s): %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

static int exec_sql(slm_rag_db *db, const char *sql, char *err, size_t err_len) {
    char *msg = NULL;
    if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        slm_err(err, err_len, "state store (%s): %s", db->path, msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static sqlite3_stmt *prep(slm_rag_db *db, const char *sql, char *err, size_t err_len) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail(db, err, err_len, "preparing a statement");
        return NULL;
    }
    return st;
}

/* ---------- slm_bm25: BM25 with caller-chosen k1 and b as an FTS5 auxiliary function ---------- */

typedef struct bm25_query_stats {
    int n_phrase;
    double avgdl;
    doclen_cache *lengths; /* NULL = ask FTS5 per row */
    double idf[];
} bm25_query_stats;

/* True when s holds more than blanks (a dfs list with more numbers than phrases). */
static bool has_more_text(const char *s) {
    while (*s == ' ') s++;
    return *s != 0;
}

static int count_hit(const Fts5ExtensionApi *api, Fts5Context *fts, void *user) {
    (void)api;
    (void)fts;
    (*(sqlite3_int64 *)user)++;
    return SQLITE_OK;
}

static void doclen_clear(doclen_cache *dl) {
    free(dl->ids);
    free(dl->len);
    memset(dl, 0, sizeof *dl);
    dl->coll = -1;
}

/* FTS5's docsize blobs are SQLite varints, one per column. */
static size_t get_varint(const unsigned char *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 9; i++) {
        if (i == 8) {
            *out = v << 8 | p[i];
            return 9;
        }
        v = v << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    *out = 0;
    return 0;
}

static bool doclen_fresh(slm_rag_db *db, long long coll) {
    unsigned int version = 0;
    if (sqlite3_file_control(db->db, "main", SQLITE_FCNTL_DATA_VERSION, &version) != SQLITE_OK) return false;
    doclen_cache *dl = &db->dl;
    return dl->coll == coll && dl->data_version == version && dl->changes == sqlite3_total_changes64(db->db);
}

/* (Re)loads the lengths of collection coll; false when they cannot be read (the caller then asks
 * FTS5 per row). Runs inside the query's read transaction, so it sees the rows being scored. */
static bool doclen_load(slm_rag_db *db, long long coll) {
    if (doclen_fresh(db, coll)) return true;
    doclen_cache *dl = &db->dl;
    doclen_clear(dl);
    unsigned int version = 0;
    if (sqlite3_file_control(db->db, "main", SQLITE_FCNTL_DATA_VERSION, &version) != SQLITE_OK) return false;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT id, sz FROM rag_fts_%lld_docsize ORDER BY id", coll);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) return false;
    size_t cap = 0;
    bool ok = true;
    int rc;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (dl->n == cap) {
            cap = cap ? cap * 2 : 4096;
            sqlite3_int64 *ids = realloc(dl->ids, sizeof *ids * cap);
            if (ids) dl->ids = ids;
            uint32_t *len = realloc(dl->len, sizeof *len * 2 * cap);
            if (len) dl->len = len;
            if (!ids || !len) {
                ok = false;
                break;
            }
        }
        const unsigned char *sz = sqlite3_column_blob(st, 1);
        size_t n = (size_t)sqlite3_column_bytes(st, 1), used = 0;
        uint64_t v[2] = {0, 0};
        for (int c = 0; c < 2 && sz && used < n; c++) {
            size_t k = get_varint(sz + used, n - used, &v[c]);
            if (!k) break;
            used += k;
        }
        dl->ids[dl->n] = sqlite3_column_int64(st, 0);
        dl->len[2 * dl->n] = v[0] > UINT32_MAX ? UINT32_MAX : (uint32_t)v[0];
        dl->len[2 * dl->n + 1] = v[1] > UINT32_MAX ? UINT32_MAX : (uint32_t)v[1];
        dl->n++;
    }
    ok = ok && rc == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) {
        doclen_clear(dl);
        return false;
    }
    dl->coll = coll;
    dl->data_version = version;
    dl->changes = sqlite3_total_changes64(db->db);
    return true;
}

/* The lengths of chunk id, or NULL. FTS5 visits rows in rowid order: the next entry is tried first. */
static const uint32_t *doclen_find(doclen_cache *dl, sqlite3_int64 id) {
    size_t h = dl->hint;
    if (h < dl->n && dl->ids[h] == id) return dl->len + 2 * h;
    if (h + 1 < dl->n && dl->ids[h + 1] == id) return dl->hint = h + 1, dl->len + 2 * (h + 1);
    size_t lo = 0, hi = dl->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dl->ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < dl->n && dl->ids[lo] == id) return dl->hint = lo, dl->len + 2 * lo;
    return NULL;
}

/* slm_bm25(table, k1, b, w_heading, w_text [, collection, dfs]): higher is better. IDF as FTS5's
 * bm25() (floored at 1e-6 so very common terms never subtract), document length weighted by the
 * column weights. With the collection id, chunk lengths come from the handle's cache; dfs ("n1 n2
 * ...", one per phrase, as the caller counted them) saves recounting each phrase's matches. */
static void bm25_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int n_val,
                    sqlite3_value **val) {
    double k1 = n_val > 0 ? sqlite3_value_double(val[0]) : 1.2;
    double b = n_val > 1 ? sqlite3_value_double(val[1]) : 0.75;
    double w[2] = {n_val > 2 ? sqlite3_value_double(val[2]) : 1.0, n_val > 3 ? sqlite3_value_double(val[3]) : 1.0};
    bm25_query_stats *qs = api->xGetAuxdata(fts, 0);
    if (!qs) {
        int n_phrase = api->xPhraseCount(fts);
        qs = sqlite3_malloc64(sizeof *qs + sizeof(double) * (size_t)(n_phrase > 0 ? n_phrase : 1));
        if (!qs) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
        qs->n_phrase = n_phrase;
        qs->lengths = NULL;
        slm_rag_db *db = api->xUserData(fts);
        if (n_val > 4 && sqlite3_value_type(val[4]) == SQLITE_INTEGER && db &&
            doclen_load(db, sqlite3_value_int64(val[4])))
            qs->lengths = &db->dl;
        /* the callers' counts, when they match the phrases one for one */
        const char *dfs = n_val > 5 ? (const char *)sqlite3_value_text(val[5]) : NULL;
        bool have_df = dfs != NULL;
        for (int i = 0; have_df && i < n_phrase; i++) {
            char *end;
            long long v = strtoll(dfs, &end, 10);
            if (end == dfs || v < 0) have_df = false;
            qs->idf[i] = (double)v;
            dfs = end;
        }
        if (have_df && has_more_text(dfs)) have_df = false;
        sqlite3_int64 n_row = 0, n_tok = 0;
        int rc = api->xRowCount(fts, &n_row);
        double total = 0;
        for (int c = 0; rc == SQLITE_OK && c < 2 && c < api->xColumnCount(fts); c++) {
            rc = api->xColumnTotalSize(fts, c, &n_tok);
            total += w[c] * (double)n_tok;
        }
        qs->avgdl = n_row > 0 ? total / (double)n_row : 1;
        if (qs->avgdl <= 0) qs->avgdl = 1;
        for (int i = 0; rc == SQLITE_OK && i < n_phrase; i++) {
            sqlite3_int64 n_hit = have_df ? (sqlite3_int64)qs->idf[i] : 0;
            if (!have_df) rc = api->xQueryPhrase(fts, i, &n_hit, count_hit);
            double idf = log(((double)n_row - (double)n_hit + 0.5) / ((double)n_hit + 0.5));
            qs->idf[i] = idf > 1e-6 ? idf : 1e-6;
        }
        if (rc != SQLITE_OK || api->xSetAuxdata(fts, qs, sqlite3_free) != SQLITE_OK) {
            if (rc == SQLITE_OK) rc = SQLITE_NOMEM; /* xSetAuxdata freed qs */
            else sqlite3_free(qs);
            sqlite3_result_error_code(ctx, rc);
            return;
        }
    }
    double freq_stack[32], *freq = qs->n_phrase <= 32 ? freq_stack : sqlite3_malloc64(sizeof(double) * (size_t)qs->n_phrase);
    if (!freq) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    for (int i = 0; i < qs->n_phrase; i++) freq[i] = 0;
    int n_inst = 0, rc = api->xInstCount(fts, &n_inst);
    for (int i = 0; rc == SQLITE_OK && i < n_inst; i++) {
        int ip, ic, io;
        rc = api->xInst(fts, i, &ip, &ic, &io);
        if (rc == SQLITE_OK && ip >= 0 && ip < qs->n_phrase && ic >= 0 && ic < 2) freq[ip] += w[ic];
    }
    double dl = 0;
    const uint32_t *len = qs->lengths ? doclen_find(qs->lengths, api->xRowid(fts)) : NULL;
    if (len) dl = w[0] * len[0] + w[1] * len[1];
    for (int c = 0; !len && rc == SQLITE_OK && c < 2 && c < api->xColumnCount(fts); c++) {
        int n = 0;
        rc = api->xColumnSize(fts, c, &n);
        dl += w[c] * n;
    }
    double score = 0;
    for (int i = 0; i < qs->n_phrase; i++)
        if (freq[i] > 0) score += qs->idf[i] * freq[i] * (k1 + 1) / (freq[i] + k1 * (1 - b + b * dl / qs->avgdl));
    if (freq != freq_stack) sqlite3_free(freq);
    if (rc != SQLITE_OK) sqlite3_result_error_code(ctx, rc);
    else sqlite3_result_double(ctx, score);
}

/* slm_phrase_counts(table): on the first matching row, the number of rows matching each phrase of
 * the query, as text "n1 n2 ..." (one pass over each phrase's doclist inside FTS5, instead of one
 * count(*) statement per word stepping through its rows). */
static void phrase_counts_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int n_val,
                             sqlite3_value **val) {
    (void)n_val;
    (void)val;
    int n_phrase = api->xPhraseCount(fts);
    char *out = sqlite3_malloc64((sqlite3_uint64)n_phrase * 21 + 1);
    if (!out) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    size_t o = 0;
    out[0] = 0;
    int rc = SQLITE_OK;
    for (int i = 0; rc == SQLITE_OK && i < n_phrase; i++) {
        sqlite3_int64 n_hit = 0;
        rc = api->xQueryPhrase(fts, i, &n_hit, count_hit);
        o += (size_t)snprintf(out + o, 22, "%s%lld", i ? " " : "", (long long)n_hit);
    }
    if (rc != SQLITE_OK) {
        sqlite3_free(out);
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    sqlite3_result_text(ctx, out, (int)o, sqlite3_free);
}

static int register_bm25(slm_rag_db *db, char *err, size_t err_len) {
    fts5_api *api = NULL;
    sqlite3_stmt *st = prep(db, "SELECT fts5(?1)", err, err_len);
    if (!st) return -1;
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    if (!api || api->iVersion < 2) return slm_err(err, err_len, "state store (%s): SQLite has no FTS5", db->path);
    if (api->xCreateFunction(api, "slm_bm25", db, bm25_fn, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "registering slm_bm25");
    if (api->xCreateFunction(api, "slm_phrase_counts", NULL, phrase_counts_fn, NULL) != SQLITE_OK)
        return fail(db, err, err_len, "registering slm_phrase_counts");
    return 0;
}

/* ---------- opening ---------- */

int slm_rag_db_open(const char *data_dir, slm_rag_db **out, char *err, size_t err_len) {
    *out = NULL;
    if (!data_dir || !*data_dir) return slm_err(err, err_len, "no data directory");
    if (store_mkdirs(data_dir, err, err_len)) return -1;
    slm_rag_db *db = calloc(1, sizeof *db);
    if (!db) return slm_err(err, err_len, "out of memory");
    db->dl.coll = -1;
    if (snprintf(db->path, sizeof db->path, "%s/state.db", data_dir) >= (int)sizeof db->path) {
        free(db);
        return slm_err(err, err_len, "data directory path too long");
    }
    int rc = sqlite3_open_v2(db->path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        slm_err(err, err_len, "cannot open state store %s: %s", db->path, db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
        slm_rag_db_close(db);
        return -1;
    }
    chmod(db->path, 0600);
    sqlite3_busy_timeout(db->db, 10000);
    /* the index is read many times per query: map it and keep more pages than the 2 MB default */
    if (exec_sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA mmap_size=1073741824; PRAGMA cache_size=-32768", err, err_len) ||
        exec_sql(db, "BEGIN IMMEDIATE", err, err_len)) {
        slm_rag_db_close(db);
        return -1;
    }
    if (exec_sql(db, rag_schema, err, err_len)) {
        exec_sql(db, "ROLLBACK", NULL, 0);
        slm_rag_db_close(db);
        return -1;
    }
    int version = 0;
    sqlite3_stmt *st = prep(db, "SELECT value FROM rag_meta WHERE key = 'schema_version'", err, err_len);
    if (st && sqlite3_step(st) == SQLITE_ROW) version = atoi((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (version > RAG_SCHEMA_VERSION) {
        exec_sql(db, "ROLLBACK", NULL, 0);
        slm_err(err, err_len, "state store %s has retrieval schema version %d, newer than this slm knows (%d): upgrade slm",
                db->path, version, RAG_SCHEMA_VERSION);
        slm_rag_db_close(db);
        return -1;
    }
    /* version 1 stores made their collections table without the pii column */
    if (version == 1 && exec_sql(db, "ALTER TABLE rag_collections ADD COLUMN pii TEXT NOT NULL DEFAULT ''", err, err_len)) {
        exec_sql(db, "ROLLBACK", NULL, 0);
        slm_rag_db_close(db);
        return -1;
    }
    if (exec_sql(db, "INSERT OR REPLACE INTO rag_meta(key, value) VALUES ('schema_version', '2')", err, err_len) ||
        exec_sql(db, "COMMIT", err, err_len) || register_bm25(db, err, err_len)) {
        exec_sql(db, "ROLLBACK", NULL, 0);
        slm_rag_db_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

void slm_rag_db_close(slm_rag_db *db) {
    if (!db) return;
    if (db->db) sqlite3_close(db->db);
    doclen_clear(&db->dl);
    free(db);
}

int slm_rag_db_begin(slm_rag_db *db, char *err, size_t err_len) { return exec_sql(db, "BEGIN IMMEDIATE", err, err_len); }
int slm_rag_db_commit(slm_rag_db *db, char *err, size_t err_len) { return exec_sql(db, "COMMIT", err, err_len); }
void slm_rag_db_rollback(slm_rag_db *db) {
    if (!sqlite3_get_autocommit(db->db)) exec_sql(db, "ROLLBACK", NULL, 0);
}

bool slm_rag_db_in_transaction(slm_rag_db *db) { return !sqlite3_get_autocommit(db->db); }
int slm_rag_db_savepoint(slm_rag_db *db, char *err, size_t err_len) { return exec_sql(db, "SAVEPOINT rag_doc", err, err_len); }
int slm_rag_db_release(slm_rag_db *db, char *err, size_t err_len) { return exec_sql(db, "RELEASE rag_doc", err, err_len); }
void slm_rag_db_rollback_to(slm_rag_db *db) {
    if (!sqlite3_get_autocommit(db->db)) exec_sql(db, "ROLLBACK TO rag_doc; RELEASE rag_doc", NULL, 0);
}

/* ---------- collections ---------- */

static void copy_text(sqlite3_stmt *st, int i, char *out, size_t cap) {
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

#define COLL_COLUMNS                                                                                             \
    "c.id, c.name, c.embed_model, c.dim, c.chunk_tokens, c.chunk_overlap, c.created,"                            \
    " (SELECT count(*) FROM rag_documents d WHERE d.collection = c.id),"                                        \
    " (SELECT count(*) FROM rag_chunks k WHERE k.collection = c.id),"                                           \
    " (SELECT coalesce(sum(size), 0) FROM rag_documents d WHERE d.collection = c.id),"                          \
    " (SELECT coalesce(max(id), 0) FROM rag_chunks k WHERE k.collection = c.id), c.pii"

static void read_collection(sqlite3_stmt *st, slm_rag_db_collection *c) {
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    copy_text(st, 1, c->name, sizeof c->name);
    copy_text(st, 2, c->embed_model, sizeof c->embed_model);
    c->dim = sqlite3_column_int(st, 3);
    c->chunk_tokens = sqlite3_column_int(st, 4);
    c->chunk_overlap = sqlite3_column_int(st, 5);
    c->created = sqlite3_column_double(st, 6);
    c->n_docs = sqlite3_column_int64(st, 7);
    c->n_chunks = sqlite3_column_int64(st, 8);
    c->n_bytes = sqlite3_column_int64(st, 9);
    c->max_chunk_id = sqlite3_column_int64(st, 10);
    copy_text(st, 11, c->pii, sizeof c->pii);
}

int slm_rag_db_collection_create(slm_rag_db *db, slm_rag_db_collection *c, char *err, size_t err_len) {
    if (slm_rag_db_begin(db, err, err_len)) return -1;
    sqlite3_stmt *st = prep(db,
                            "INSERT INTO rag_collections(name, embed_model, dim, chunk_tokens, chunk_overlap, created, pii) "
                            "VALUES (?, ?, 0, ?, ?, ?, ?)",
                            err, err_len);
    if (!st) goto fail;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->created = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->embed_model, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, c->chunk_tokens);
    sqlite3_bind_int(st, 4, c->chunk_overlap);
    sqlite3_bind_double(st, 5, c->created);
    sqlite3_bind_text(st, 6, c->pii, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) {
        slm_rag_db_rollback(db);
        return slm_err(err, err_len, "a collection called '%s' exists", c->name);
    }
    if (rc != SQLITE_DONE) {
        fail(db, err, err_len, "creating the collection");
        goto fail;
    }
    c->id = sqlite3_last_insert_rowid(db->db);
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE VIRTUAL TABLE rag_fts_%lld USING fts5(heading, text, content='rag_chunks', content_rowid='id', "
             "tokenize='porter unicode61')",
             c->id);
    if (exec_sql(db, sql, err, err_len)) goto fail;
    return slm_rag_db_commit(db, err, err_len) ? (slm_rag_db_rollback(db), -1) : 0;
fail:
    slm_rag_db_rollback(db);
    return -1;
}

int slm_rag_db_collection_get(slm_rag_db *db, const char *name, slm_rag_db_collection *out, char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db, "SELECT " COLL_COLUMNS " FROM rag_collections c WHERE c.name = ?", err, err_len);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        read_collection(st, out);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = fail(db, err, err_len, "reading a collection");
    }
    sqlite3_finalize(st);
    return found;
}

int slm_rag_db_collection_list(slm_rag_db *db, slm_rag_db_collection **out, char *err, size_t err_len) {
    *out = NULL;
    sqlite3_stmt *st = prep(db, "SELECT " COLL_COLUMNS " FROM rag_collections c ORDER BY c.name", err, err_len);
    if (!st) return -1;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            slm_rag_db_collection *p = realloc(*out, sizeof **out * (size_t)cap);
            if (!p) {
                sqlite3_finalize(st);
                free(*out);
                *out = NULL;
                return slm_err(err, err_len, "out of memory");
            }
            *out = p;
        }
        read_collection(st, &(*out)[n++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        return fail(db, err, err_len, "listing collections");
    }
    return n;
}

static int exec_id(slm_rag_db *db, const char *sql, long long id, char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db, sql, err, err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(db, err, err_len, "writing");
}

int slm_rag_db_collection_drop(slm_rag_db *db, long long id, char *err, size_t err_len) {
    if (slm_rag_db_begin(db, err, err_len)) return -1;
    char sql[96];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS rag_fts_%lld", id);
    if (exec_sql(db, sql, err, err_len) || exec_id(db, "DELETE FROM rag_chunks WHERE collection = ?", id, err, err_len) ||
        exec_id(db, "DELETE FROM rag_documents WHERE collection = ?", id, err, err_len) ||
        exec_id(db, "DELETE FROM rag_collections WHERE id = ?", id, err, err_len) || slm_rag_db_commit(db, err, err_len)) {
        slm_rag_db_rollback(db);
        return -1;
    }
    return 0;
}

int slm_rag_db_collection_set_dim(slm_rag_db *db, long long id, int dim, char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db, "UPDATE rag_collections SET dim = ? WHERE id = ?", err, err_len);
    if (!st) return -1;
    sqlite3_bind_int(st, 1, dim);
    sqlite3_bind_int64(st, 2, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(db, err, err_len, "setting the vector width");
}

/* ---------- documents ---------- */

#define DOC_COLUMNS "id, name, path, format, hash, size, length(text), n_chunks, n_pages, added"

static void read_document(sqlite3_stmt *st, slm_rag_db_document *d) {
    memset(d, 0, sizeof *d);
    d->id = sqlite3_column_int64(st, 0);
    copy_text(st, 1, d->name, sizeof d->name);
    copy_text(st, 2, d->path, sizeof d->path);
    copy_text(st, 3, d->format, sizeof d->format);
    copy_text(st, 4, d->hash, sizeof d->hash);
    d->size = sqlite3_column_int64(st, 5);
    d->text_len = sqlite3_column_int64(st, 6);
    d->n_chunks = sqlite3_column_int(st, 7);
    d->n_pages = sqlite3_column_int(st, 8);
    d->added = sqlite3_column_double(st, 9);
}

static int document_one(slm_rag_db *db, const char *sql, long long coll, const char *path, long long id,
                        slm_rag_db_document *out, char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db, sql, err, err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, coll);
    if (path) sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    else sqlite3_bind_int64(st, 2, id);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        read_document(st, out);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = fail(db, err, err_len, "reading a document");
    }
    sqlite3_finalize(st);
    return found;
}

int slm_rag_db_document_find(slm_rag_db *db, long long coll, const char *path, slm_rag_db_document *out, char *err,
                             size_t err_len) {
    return document_one(db, "SELECT " DOC_COLUMNS " FROM rag_documents WHERE collection = ? AND path = ?", coll, path, 0,
                        out, err, err_len);
}

int slm_rag_db_document_get(slm_rag_db *db, long long coll, long long id, slm_rag_db_document *out, char *err,
                            size_t err_len) {
    return document_one(db, "SELECT " DOC_COLUMNS " FROM rag_documents WHERE collection = ? AND id = ?", coll, NULL, id,
                        out, err, err_len);
}

int slm_rag_db_document_insert(slm_rag_db *db, long long coll, slm_rag_db_document *d, const char *text, size_t len,
                               char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db,
                            "INSERT INTO rag_documents(collection, name, path, format, hash, size, n_pages, added, text) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            err, err_len);
    if (!st) return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    d->added = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    sqlite3_bind_int64(st, 1, coll);
    sqlite3_bind_text(st, 2, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, d->format, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, d->hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, d->size);
    sqlite3_bind_int(st, 7, d->n_pages);
    sqlite3_bind_double(st, 8, d->added);
    sqlite3_bind_blob64(st, 9, text ? text : "", (sqlite3_uint64)len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail(db, err, err_len, "storing a document");
    d->id = sqlite3_last_insert_rowid(db->db);
    d->text_len = (long long)len;
    return 0;
}

int slm_rag_db_document_set_chunks(slm_rag_db *db, long long doc, int n_chunks, char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db, "UPDATE rag_documents SET n_chunks = ? WHERE id = ?", err, err_len);
    if (!st) return -1;
    sqlite3_bind_int(st, 1, n_chunks);
    sqlite3_bind_int64(st, 2, doc);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(db, err, err_len, "updating a document");
}

int slm_rag_db_document_delete(slm_rag_db *db, long long coll, long long doc, char *err, size_t err_len) {
    char sql[256];
    /* external content: the index forgets a row when told its old values */
    snprintf(sql, sizeof sql,
             "INSERT INTO rag_fts_%lld(rag_fts_%lld, rowid, heading, text) "
             "SELECT 'delete', id, heading, text FROM rag_chunks WHERE doc = ?",
             coll, coll);
    if (exec_id(db, sql, doc, err, err_len) || exec_id(db, "DELETE FROM rag_chunks WHERE doc = ?", doc, err, err_len) ||
        exec_id(db, "DELETE FROM rag_documents WHERE id = ?", doc, err, err_len))
        return -1;
    return 0;
}

int slm_rag_db_document_list(slm_rag_db *db, long long coll, slm_rag_db_document **out, char *err, size_t err_len) {
    *out = NULL;
    sqlite3_stmt *st = prep(db, "SELECT " DOC_COLUMNS " FROM rag_documents WHERE collection = ? ORDER BY path", err, err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, coll);
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            slm_rag_db_document *p = realloc(*out, sizeof **out * (size_t)cap);
            if (!p) {
                sqlite3_finalize(st);
                free(*out);
                *out = NULL;
                return slm_err(err, err_len, "out of memory");
            }
            *out = p;
        }
        read_document(st, &(*out)[n++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        return fail(db, err, err_len, "listing documents");
    }
    return n;
}

int slm_rag_db_document_text(slm_rag_db *db, long long doc, char **text, size_t *len, char *err, size_t err_len) {
    *text = NULL;
    *len = 0;
    sqlite3_stmt *st = prep(db, "SELECT text FROM rag_documents WHERE id = ?", err, err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, doc);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? slm_err(err, err_len, "no document %lld", doc) : fail(db, err, err_len, "reading a document");
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    const void *p = sqlite3_column_blob(st, 0);
    *text = malloc(n + 1);
    if (!*text) {
        sqlite3_finalize(st);
        return slm_err(err, err_len, "out of memory");
    }
    if (n) memcpy(*text, p, n);
    (*text)[n] = 0;
    *len = n;
    sqlite3_finalize(st);
    return 0;
}

/* ---------- chunks ---------- */

int slm_rag_db_chunk_insert(slm_rag_db *db, long long coll, slm_rag_db_chunk *c, const uint16_t *vec, int dim,
                            char *err, size_t err_len) {
    sqlite3_stmt *st = prep(db,
                            "INSERT INTO rag_chunks(collection, doc, ord, start, end, page, heading, text, vec) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            err, err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, coll);
    sqlite3_bind_int64(st, 2, c->doc);
    sqlite3_bind_int(st, 3, c->ord);
    sqlite3_bind_int64(st, 4, c->start);
    sqlite3_bind_int64(st, 5, c->end);
    sqlite3_bind_int(st, 6, c->page);
    sqlite3_bind_text(st, 7, c->heading ? c->heading : "", -1, SQLITE_STATIC);
    sqlite3_bind_text64(st, 8, c->text, (sqlite3_uint64)(c->end - c->start), SQLITE_STATIC, SQLITE_UTF8);
    if (vec) sqlite3_bind_blob(st, 9, vec, dim * 2, SQLITE_STATIC);
    else sqlite3_bind_null(st, 9);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail(db, err, err_len, "storing a chunk");
    c->id = sqlite3_last_insert_rowid(db->db);
    char sql[160];
    snprintf(sql, sizeof sql, "INSERT INTO rag_fts_%lld(rowid, heading, text) VALUES (?, ?, ?)", coll);
    if (!(st = prep(db, sql, err, err_len))) return -1;
    sqlite3_bind_int64(st, 1, c->id);
    sqlite3_bind_text(st, 2, c->heading ? c->heading : "", -1, SQLITE_STATIC);
    sqlite3_bind_text64(st, 3, c->text, (sqlite3_uint64)(c->end - c->start), SQLITE_STATIC, SQLITE_UTF8);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : fail(db, err, err_len, "indexing a chunk");
}

static char *dup_col(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    char *s = malloc(n + 1);
    if (s) {
        if (n) memcpy(s, t, n);
        s[n] = 0;
    }
    return s;
}

void slm_rag_db_chunks_free(slm_rag_db_chunk *c, int n) {
    if (!c) return;
    for (int i = 0; i < n; i++) {
        free(c[i].heading);
        free(c[i].text);
        free(c[i].doc_name);
        free(c[i].doc_path);
    }
    free(c);
}

int slm_rag_db_chunks_get(slm_rag_db *db, const long long *ids, int n, slm_rag_db_chunk **out, char *err,
                          size_t err_len) {
    *out = NULL;
    if (n <= 0) return 0;
    slm_rag_db_chunk *c = calloc((size_t)n, sizeof *c);
    if (!c) return slm_err(err, err_len, "out of memory");
    sqlite3_stmt *st = prep(db,
                            "SELECT k.id, k.doc, k.ord, k.start, k.end, k.page, k.heading, k.text, d.name, d.path "
                            "FROM rag_chunks k JOIN rag_documents d ON d.id = k.doc WHERE k.id = ?",
                            err, err_len);
    if (!st) {
        free(c);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_finalize(st);
            slm_rag_db_chunks_free(c, n);
            return rc == SQLITE_DONE ? slm_err(err, err_len, "no chunk %lld", ids[i]) : fail(db, err, err_len, "reading chunks");
        }
        c[i].id = sqlite3_column_int64(st, 0);
        c[i].doc = sqlite3_column_int64(st, 1);
        c[i].ord = sqlite3_column_int(st, 2);
        c[i].start = sqlite3_column_int64(st, 3);
        c[i].end = sqlite3_column_int64(st, 4);
        c[i].page = sqlite3_column_int(st, 5);
        c[i].heading = dup_col(st, 6);
        c[i].text = dup_col(st, 7);
        c[i].doc_name = dup_col(st, 8);
        c[i].doc_path = dup_col(st, 9);
        if (!c[i].heading || !c[i].text || !c[i].doc_name || !c[i].doc_path) {
            sqlite3_finalize(st);
            slm_rag_db_chunks_free(c, n);
            return slm_err(err, err_len, "out of memory");
        }
    }
    sqlite3_finalize(st);
    *out = c;
    return 0;
}

int slm_rag_db_bm25(slm_rag_db *db, long long coll, const char *fts_query, const long long *df, int n_df, int limit,
                    double k1, double b, long long **ids, double **scores, char *err, size_t err_len) {
    *ids = NULL;
    *scores = NULL;
    if (limit <= 0) return 0;
    char *dfs = NULL;
    if (df && n_df > 0) {
        if (!(dfs = malloc((size_t)n_df * 21 + 1))) return slm_err(err, err_len, "out of memory");
        size_t o = 0;
        for (int i = 0; i < n_df; i++) o += (size_t)snprintf(dfs + o, 22, "%s%lld", i ? " " : "", df[i]);
    }
    char sql[320];
    snprintf(sql, sizeof sql,
             "SELECT rowid, slm_bm25(rag_fts_%lld, ?, ?, 1.0, 1.0, %lld, ?) AS s FROM rag_fts_%lld WHERE rag_fts_%lld "
             "MATCH ? ORDER BY s DESC, rowid LIMIT ?",
             coll, coll, coll, coll);
    sqlite3_stmt *st = prep(db, sql, err, err_len);
    if (!st) {
        free(dfs);
        return -1;
    }
    sqlite3_bind_double(st, 1, k1);
    sqlite3_bind_double(st, 2, b);
    if (dfs) sqlite3_bind_text(st, 3, dfs, -1, free);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_text(st, 4, fts_query, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, limit);
    long long *id = malloc(sizeof *id * (size_t)limit);
    double *sc = malloc(sizeof *sc * (size_t)limit);
    if (!id || !sc) {
        free(id);
        free(sc);
        sqlite3_finalize(st);
        return slm_err(err, err_len, "out of memory");
    }
    int n = 0, rc;
    while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        id[n] = sqlite3_column_int64(st, 0);
        sc[n++] = sqlite3_column_double(st, 1);
    }
    if (n < limit && rc != SQLITE_DONE) {
        fail(db, err, err_len, "searching");
        sqlite3_finalize(st);
        free(id);
        free(sc);
        return -1;
    }
    sqlite3_finalize(st);
    *ids = id;
    *scores = sc;
    return n;
}

int slm_rag_db_phrase_counts(slm_rag_db *db, long long coll, const char *fts_query, long long *counts, int n, char *err,
                             size_t err_len) {
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT slm_phrase_counts(rag_fts_%lld) FROM rag_fts_%lld WHERE rag_fts_%lld MATCH ? LIMIT 1",
             coll, coll, coll);
    sqlite3_stmt *st = prep(db, sql, err, err_len);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, fts_query, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), got = 0;
    if (rc == SQLITE_DONE) { /* nothing matches: every phrase matches nothing */
        for (int i = 0; i < n; i++) counts[i] = 0;
        got = n;
    } else if (rc == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        for (char *end; s && *s && got < n; s = end) {
            counts[got] = strtoll(s, &end, 10);
            if (end == s) break;
            got++;
        }
        if (s && *s) got = -2; /* more phrases than words */
    } else {
        got = fail(db, err, err_len, "counting matches");
    }
    sqlite3_finalize(st);
    if (got == -2 || (got >= 0 && got != n)) return slm_err(err, err_len, "the query has other phrases than words");
    return got < 0 ? -1 : 0;
}

long long slm_rag_db_match_count(slm_rag_db *db, long long coll, const char *fts_query, char *err, size_t err_len) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM rag_fts_%lld WHERE rag_fts_%lld MATCH ?", coll, coll);
    sqlite3_stmt *st = prep(db, sql, err, err_len);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, fts_query, -1, SQLITE_STATIC);
    long long n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : fail(db, err, err_len, "counting matches");
    sqlite3_finalize(st);
    return n;
}

long long slm_rag_db_vectors(slm_rag_db *db, long long coll, int dim, long long **ids, uint16_t **vecs, char *err,
                             size_t err_len) {
    *ids = NULL;
    *vecs = NULL;
    sqlite3_stmt *st = prep(db, "SELECT id, vec FROM rag_chunks WHERE collection = ? AND vec IS NOT NULL ORDER BY id", err,
                            err_len);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, coll);
    long long n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 1) != dim * 2) {
            sqlite3_finalize(st);
            free(*ids);
            free(*vecs);
            *ids = NULL;
            *vecs = NULL;
            return slm_err(err, err_len, "state store (%s): a vector of chunk %lld has %d bytes, not %d", db->path,
                           (long long)sqlite3_column_int64(st, 0), sqlite3_column_bytes(st, 1), dim * 2);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            long long *pi = realloc(*ids, sizeof **ids * (size_t)cap);
            if (pi) *ids = pi;
            uint16_t *pv = pi ? realloc(*vecs, sizeof **vecs * (size_t)cap * (size_t)dim) : NULL;
            if (!pv) {
                sqlite3_finalize(st);
                free(*ids);
                free(*vecs);
                *ids = NULL;
                *vecs = NULL;
                return slm_err(err, err_len, "out of memory");
            }
            *vecs = pv;
        }
        (*ids)[n] = sqlite3_column_int64(st, 0);
        memcpy(*vecs + (size_t)n * (size_t)dim, sqlite3_column_blob(st, 1), (size_t)dim * 2);
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*ids);
        free(*vecs);
        *ids = NULL;
        *vecs = NULL;
        return fail(db, err, err_len, "reading vectors");
    }
    return n;
}
