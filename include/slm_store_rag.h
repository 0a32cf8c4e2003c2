/* slm store, retrieval part: collections, documents, chunks, the FTS5 index and the vectors, in
 * the same state.db as slm_store (its own connection, WAL, its own schema-version row in
 * rag_meta). Every SQL statement of retrieval lives in src/store/rag_store.c; src/rag sees plain
 * structs. One connection per handle, not thread-safe: open one per thread (SQLite's locking
 * orders the writers of several processes). */
#ifndef SLM_STORE_RAG_H
#define SLM_STORE_RAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_rag_db slm_rag_db;

#define SLM_RAG_NAME_MAX 64
#define SLM_RAG_PATH_MAX 4096

/* Opens data_dir/state.db (creating the directory, mode 0700, and the retrieval tables). */
int slm_rag_db_open(const char *data_dir, slm_rag_db **out, char *err, size_t err_len);
void slm_rag_db_close(slm_rag_db *db);
/* One write transaction (BEGIN IMMEDIATE); rollback never fails loudly. */
int slm_rag_db_begin(slm_rag_db *db, char *err, size_t err_len);
int slm_rag_db_commit(slm_rag_db *db, char *err, size_t err_len);
void slm_rag_db_rollback(slm_rag_db *db);
/* Nested units inside a transaction (one per document of a batch): savepoint, then release or
 * rollback_to (which undoes only that unit). */
bool slm_rag_db_in_transaction(slm_rag_db *db);
int slm_rag_db_savepoint(slm_rag_db *db, char *err, size_t err_len);
int slm_rag_db_release(slm_rag_db *db, char *err, size_t err_len);
void slm_rag_db_rollback_to(slm_rag_db *db);

typedef struct slm_rag_db_collection {
    long long id;
    char name[SLM_RAG_NAME_MAX];
    char embed_model[SLM_RAG_PATH_MAX]; /* "" = BM25 only */
    int dim;                            /* vector width, 0 until the first vector is stored */
    int chunk_tokens, chunk_overlap;
    char pii[8];                        /* "mask" = personal data masked at ingest, "" = kept */
    double created;
    long long n_docs, n_chunks, n_bytes; /* filled by get/list */
    long long max_chunk_id;             /* largest chunk id (ids are never reused) */
} slm_rag_db_collection;

/* Creates the collection and its FTS5 table; fails when the name exists. */
int slm_rag_db_collection_create(slm_rag_db *db, slm_rag_db_collection *c, char *err, size_t err_len);
/* 1 found, 0 none, -1 error. */
int slm_rag_db_collection_get(slm_rag_db *db, const char *name, slm_rag_db_collection *out, char *err, size_t err_len);
/* Every collection by name (*out malloc'd); the count or -1. */
int slm_rag_db_collection_list(slm_rag_db *db, slm_rag_db_collection **out, char *err, size_t err_len);
/* Drops the collection, its documents, chunks and index (one transaction of its own). */
int slm_rag_db_collection_drop(slm_rag_db *db, long long id, char *err, size_t err_len);
int slm_rag_db_collection_set_dim(slm_rag_db *db, long long id, int dim, char *err, size_t err_len);

typedef struct slm_rag_db_document {
    long long id;
    char name[256];                /* the file name without extension (the TREC docid) */
    char path[SLM_RAG_PATH_MAX];   /* absolute path, or the upload's name */
    char format[8];                /* txt, md, html, pdf, docx */
    char hash[65];                 /* SHA-256 of the file's bytes, hex */
    long long size;                /* bytes of the file */
    long long text_len;            /* bytes of the extracted text */
    int n_chunks, n_pages;
    double added;
} slm_rag_db_document;

/* The document of the collection at `path`: 1 found, 0 none, -1 error. */
int slm_rag_db_document_find(slm_rag_db *db, long long coll, const char *path, slm_rag_db_document *out, char *err,
                             size_t err_len);
/* By id (within the collection): 1 / 0 / -1. */
int slm_rag_db_document_get(slm_rag_db *db, long long coll, long long id, slm_rag_db_document *out, char *err,
                            size_t err_len);
/* Inserts the document row with its extracted text; d->id is set. Inside a transaction. */
int slm_rag_db_document_insert(slm_rag_db *db, long long coll, slm_rag_db_document *d, const char *text, size_t len,
                               char *err, size_t err_len);
int slm_rag_db_document_set_chunks(slm_rag_db *db, long long doc, int n_chunks, char *err, size_t err_len);
/* Deletes a document, its chunks and their index entries. Inside a transaction. */
int slm_rag_db_document_delete(slm_rag_db *db, long long coll, long long doc, char *err, size_t err_len);
/* The collection's documents by path (*out malloc'd); the count or -1. */
int slm_rag_db_document_list(slm_rag_db *db, long long coll, slm_rag_db_document **out, char *err, size_t err_len);
/* The extracted text of a document (*text malloc'd, NUL-terminated). */
int slm_rag_db_document_text(slm_rag_db *db, long long doc, char **text, size_t *len, char *err, size_t err_len);

/* One chunk; on reads every string is malloc'd (slm_rag_db_chunks_free). */
typedef struct slm_rag_db_chunk {
    long long id, doc;
    int ord;                 /* position in its document */
    long long start, end;    /* byte range of the document's extracted text */
    int page;                /* 1-based page (PDF), 0 = not paged */
    char *heading;           /* "Intro > Setup", "" = none */
    char *text;              /* the document's bytes [start, end) */
    char *doc_name, *doc_path;
} slm_rag_db_chunk;

/* Inserts a chunk, its FTS5 row and (vec != NULL) its vector of dim IEEE half floats; sets c->id. */
int slm_rag_db_chunk_insert(slm_rag_db *db, long long coll, slm_rag_db_chunk *c, const uint16_t *vec, int dim,
                            char *err, size_t err_len);
/* The chunks with these ids, in the same order (*out malloc'd, n entries; a missing id is an error). */
int slm_rag_db_chunks_get(slm_rag_db *db, const long long *ids, int n, slm_rag_db_chunk **out, char *err,
                          size_t err_len);
void slm_rag_db_chunks_free(slm_rag_db_chunk *c, int n);

/* BM25 over the collection's FTS5 index for an FTS5 query expression: up to `limit` chunk ids,
 * best first, with their scores (higher = better). k1, b: the BM25 parameters. df (n_df entries,
 * or NULL): the number of chunks matching each phrase of the expression in order, when the caller
 * counted them already (slm_rag_db_match_count); otherwise they are counted here. The count or -1. */
int slm_rag_db_bm25(slm_rag_db *db, long long coll, const char *fts_query, const long long *df, int n_df, int limit,
                    double k1, double b, long long **ids, double **scores, char *err, size_t err_len);
/* For an FTS5 query expression of n phrases (e.g. quoted words OR-ed): counts[i] = the chunks
 * matching phrase i, all counted in one statement. 0, or -1 (also when the phrases are not n). */
int slm_rag_db_phrase_counts(slm_rag_db *db, long long coll, const char *fts_query, long long *counts, int n, char *err,
                             size_t err_len);
/* Chunks of the collection matching an FTS5 query expression (e.g. one quoted word); -1 on error. */
long long slm_rag_db_match_count(slm_rag_db *db, long long coll, const char *fts_query, char *err, size_t err_len);
/* Every vector of the collection: *ids (n) and *vecs (n × dim halves), malloc'd. The count or -1. */
long long slm_rag_db_vectors(slm_rag_db *db, long long coll, int dim, long long **ids, uint16_t **vecs, char *err,
                             size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
