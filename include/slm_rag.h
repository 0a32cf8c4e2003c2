/* slm rag — retrieval: collections of documents, chunked and indexed (FTS5 BM25 and, with an
 * embedding model, f16 vectors searched exactly with SIMD), hybrid search by reciprocal rank
 * fusion, prompts with numbered chunks, and citations checked against the stored text.
 *
 * A front end (the CLI, an HTTP handler) uses it like this:
 *   slm_rag *r; slm_rag_open(data_dir, &r, ...);
 *   slm_rag_collection_create(r, "docs", &opts, ...);
 *   slm_rag_ingest_path(r, "docs", "/srv/manuals", &ingest_opts, embedder, ...);
 *   slm_rag_search(r, "docs", "how do I reset", &search_opts, embedder, &hits, ...);
 *   slm_rag_prompt(question, hits, ...) → messages; generate with slm_rag_citation_grammar(n)
 *   slm_rag_citations_json(r, hits, answer, ...) → the citations of the answer.
 * Embeddings come from an slm_rag_embedder: its own engine and gate (slm_rag_embedder_open) or
 * the caller's (slm_rag_embedder_attach: the server's gate, so embeddings are governed calls). */
#ifndef SLM_RAG_H
#define SLM_RAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "slm_store_rag.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_rag slm_rag;

/* Opens the retrieval store in data_dir (state.db). One handle per thread. */
int slm_rag_open(const char *data_dir, slm_rag **out, char *err, size_t err_len);
void slm_rag_close(slm_rag *r);
/* The store handle beneath (for tests and tools). */
slm_rag_db *slm_rag_store(slm_rag *r);

/* A collection name: 1..63 bytes of [A-Za-z0-9_.-], not starting with '.' or '-'. */
bool slm_rag_name_valid(const char *name);
/* An upload's document name: a plain file name (no '/', '\\', "..", control characters; < 256 bytes). */
bool slm_rag_document_name_valid(const char *name);
/* "txt" | "md" | "html" | "pdf" | "docx" from a file name's extension; NULL = unsupported. */
const char *slm_rag_format_of(const char *name);

typedef struct slm_rag_collection_opts {
    const char *embed_model; /* GGUF path of the embedding model; NULL/"" = BM25 only */
    int chunk_tokens;        /* target chunk size in tokens (estimated as bytes / 4); 0 = 512 */
    int chunk_overlap;       /* tokens shared with the previous chunk of the same section; 0 = 32 (at most a
                                quarter of a chunk), -1 = none */
    const char *pii;         /* "mask": personal data (slm_pii.h) in a document's text is replaced by
                                placeholders before it is chunked, indexed and stored; NULL/""/"off" = kept */
} slm_rag_collection_opts;

int slm_rag_collection_create(slm_rag *r, const char *name, const slm_rag_collection_opts *opts, char *err,
                              size_t err_len);
/* 1 found (out filled), 0 no such collection, -1 error. */
int slm_rag_collection_get(slm_rag *r, const char *name, slm_rag_db_collection *out, char *err, size_t err_len);
int slm_rag_collection_drop(slm_rag *r, const char *name, char *err, size_t err_len);

/* ---------- embeddings ---------- */

typedef struct slm_rag_embedder slm_rag_embedder;
/* Loads an embedding model into an engine and gate of its own (like `slm embed`). */
int slm_rag_embedder_open(const char *model_path, int n_threads, slm_rag_embedder **out, char *err, size_t err_len);
/* Embeds through the caller's engine and gate, on the engine model called model_name. */
int slm_rag_embedder_attach(slm_engine *engine, slm_gate *gate, const char *model_name, const slm_model *model,
                            slm_rag_embedder **out, char *err, size_t err_len);
/* Who the embedding calls are for (borrowed; must outlive the embedder's use): the gate admits them
 * with this credential, so a server's embeddings are governed as the requesting key's calls. */
void slm_rag_embedder_set_caller(slm_rag_embedder *e, const char *credential, const char *client);
void slm_rag_embedder_free(slm_rag_embedder *e);
int slm_rag_embedder_dim(const slm_rag_embedder *e);
/* n L2-normalised embeddings into out (n × dim). A text longer than the model's context is embedded
 * by its first tokens (a chunk is small; the whole chunk is still indexed for BM25). */
int slm_rag_embed(slm_rag_embedder *e, const char *const *texts, const size_t *lens, int n, float *out, char *err,
                  size_t err_len);

/* ---------- ingest ---------- */

typedef enum {
    SLM_RAG_ADDED,     /* new document */
    SLM_RAG_REPLACED,  /* its bytes changed: the old chunks are gone */
    SLM_RAG_UNCHANGED, /* same content hash: nothing done */
    SLM_RAG_SKIPPED,   /* unsupported, unreadable or hostile: err says why, nothing stored */
} slm_rag_ingest_status;

typedef struct slm_rag_ingest_opts {
    size_t max_file_bytes;   /* files larger are refused before reading; 0 = 256 MiB */
    size_t max_text_bytes;   /* extracted text larger is refused; 0 = 64 MiB */
    /* called once per file (done = files seen so far); may be NULL */
    void (*progress)(void *user, const char *path, slm_rag_ingest_status status, const char *why, long long bytes);
    void *user;
} slm_rag_ingest_opts;

typedef struct slm_rag_ingest_stats {
    int added, replaced, unchanged, skipped, removed;
    long long bytes, chunks; /* of the added and replaced documents */
} slm_rag_ingest_stats;

/* Ingests one file: extraction, chunking, embedding (when the collection has a model; `embedder`
 * must then be its model), all in one transaction. Returns the status, or -1 on a store error. */
int slm_rag_ingest_file(slm_rag *r, const slm_rag_db_collection *c, const char *path, const slm_rag_ingest_opts *opts,
                        slm_rag_embedder *embedder, char *err, size_t err_len);
/* Ingests bytes under a name (an upload): `format` txt|md|html|pdf|docx, NULL = from the name's
 * extension. The name must be a plain file name (no '/', no ".."). */
int slm_rag_ingest_bytes(slm_rag *r, const slm_rag_db_collection *c, const char *name, const char *format,
                         const void *data, size_t len, const slm_rag_ingest_opts *opts, slm_rag_embedder *embedder,
                         char *err, size_t err_len);
/* Files and folders (recursively; hidden entries and symlinked folders are not followed). With
 * sync, documents of the collection whose file is gone are removed. Per-file problems are
 * reported through opts->progress and counted as skipped; -1 only for a store error. */
int slm_rag_ingest_paths(slm_rag *r, const char *collection, const char *const *paths, int n_paths, bool sync,
                         const slm_rag_ingest_opts *opts, slm_rag_embedder *embedder, slm_rag_ingest_stats *stats,
                         char *err, size_t err_len);
/* An upload read from a multipart/form-data body: the "file" part (its filename the document's
 * name unless a "name" field gives one) and an optional "format" field. */
typedef struct slm_rag_upload {
    char name[256];    /* "" = none given */
    char format[16];   /* "" = from the name's extension */
    bool name_given;   /* from the "name" field */
    const void *data;  /* the file's bytes: inside the body */
    size_t len;
    char unknown[64];  /* an unknown field's name (what *field points to then) */
} slm_rag_upload;
/* Parses body (len bytes, any content) as multipart/form-data with the boundary of content_type.
 * 0, or -1 with one line in err and *field naming the request field at fault ("file", "name",
 * "format" or the unknown field). */
int slm_rag_multipart_parse(const char *content_type, const void *body, size_t len, slm_rag_upload *out,
                            const char **field, char *err, size_t err_len);
/* Removes one document by id, name or path: 1 removed, 0 none, -1 error. */
int slm_rag_document_remove(slm_rag *r, const char *collection, const char *doc, char *err, size_t err_len);

/* ---------- search ---------- */

typedef enum { SLM_RAG_BM25, SLM_RAG_VECTOR, SLM_RAG_HYBRID } slm_rag_mode;
/* "bm25" | "vector" | "hybrid" → mode; -1 if unknown. */
int slm_rag_mode_parse(const char *s);

typedef struct slm_rag_search_opts {
    slm_rag_mode mode;
    int top_k;                 /* chunks returned; 0 = 10 */
    int candidates;            /* per retriever before fusion; 0 = max(100, top_k) */
    double rrf_k;              /* reciprocal rank fusion constant; 0 = 60 */
    double w_bm25, w_vector;   /* fusion weights; both 0 = 1 and 1 */
    double k1, b;              /* BM25; 0 = 1.5 and 0.75 */
    bool per_document;         /* at most one chunk per document (its best) */
    int nprobe;                /* vector lists scanned in a large collection's approximate index:
                                  0 = an eighth of them (at least 8), -1 = exhaustive (exact) search */
} slm_rag_search_opts;

typedef struct slm_rag_hit {
    long long chunk_id, doc_id;
    double score;              /* BM25 score, cosine, or fused RRF score */
    int bm25_rank, vector_rank; /* 1-based rank in each retriever, 0 = not retrieved by it */
    long long start, end;      /* byte offsets in the document's extracted text */
    int page;                  /* 1-based (PDF), 0 = not paged */
    char *heading, *text, *doc_name, *doc_path;
} slm_rag_hit;

/* Searches a collection; *hits (malloc'd, slm_rag_hits_free; NULL when none) best first. Returns the count or -1.
 * Vector and hybrid modes need the collection's embedder. */
int slm_rag_search(slm_rag *r, const char *collection, const char *query, const slm_rag_search_opts *opts,
                   slm_rag_embedder *embedder, slm_rag_hit **hits, char *err, size_t err_len);
void slm_rag_hits_free(slm_rag_hit *hits, int n);
/* The FTS5 expression for a free-text query: every word quoted, OR-ed ("" when it has none); only
 * the first SLM_RAG_QUERY_MAX_WORDS words (a pasted book as a query would cost minutes of scoring). */
#define SLM_RAG_QUERY_MAX_WORDS 256
char *slm_rag_fts_query(const char *query);

/* Reciprocal rank fusion of two rankings (ids best first): score(d) = w_a/(k + rank_a(d)) +
 * w_b/(k + rank_b(d)), ranks 1-based, a missing rank contributes 0. out_ids and out_scores malloc'd,
 * best first (ties by id). Returns the count or -1. */
int slm_rag_rrf(const long long *a, int n_a, const long long *b, int n_b, double w_a, double w_b, double k,
                long long **out_ids, double **out_scores);

/* ---------- vectors ---------- */

uint16_t slm_rag_f32_to_f16(float f);
float slm_rag_f16_to_f32(uint16_t h);
/* scores[i] = dot(query, vecs[i]) for n f16 vectors of dim (SIMD where the CPU has it). */
void slm_rag_dot_f16(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores);
/* The same on the scalar path (the reference the SIMD path is tested against). */
void slm_rag_dot_f16_scalar(const float *query, const uint16_t *vecs, size_t n, int dim, float *scores);
/* Indices of the k best scores, best first (ties: lower index first). Returns the count. */
int slm_rag_top_k(const float *scores, size_t n, int k, int *out);

/* ---------- answers with citations ---------- */

/* The system message for answering `question` from the hits: the chunks numbered [1]..[n] with
 * their documents, and the instruction to cite them. *out malloc'd. */
int slm_rag_prompt(const slm_rag_hit *hits, int n, char **out, char *err, size_t err_len);
/* For a chat completion with retrieval (the server's "rag" extension): the text to retrieve for is
 * the last user message (NULL if there is none). */
const char *slm_rag_query_of(const slm_chat_message *msgs, size_t n);
/* The messages to generate from: the sources (slm_rag_prompt) as the system message, put ahead of
 * an existing first system message's text. *out (malloc'd, *n_out entries) points into msgs and
 * *system (malloc'd): free both after generating. */
int slm_rag_augment_messages(const slm_chat_message *msgs, size_t n, const slm_rag_hit *hits, int n_hits,
                             slm_chat_message **out, size_t *n_out, char **system, char *err, size_t err_len);
/* A GBNF grammar for the answer: free text in which '[' may only open a citation [1]..[n].
 * *out malloc'd. */
int slm_rag_citation_grammar(int n, char **out, char *err, size_t err_len);
/* The citations of an answer as a JSON array: for each distinct [i] in the text (1 ≤ i ≤ n), the
 * hit's document, chunk id, byte offsets, page and quoted text, after checking that the stored
 * document holds exactly that text at those offsets (a mismatch is an error). *out malloc'd. */
int slm_rag_citations_json(slm_rag *r, const slm_rag_hit *hits, int n, const char *answer, char **out, char *err,
                           size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
