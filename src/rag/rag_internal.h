/* Internals of src/rag: text extraction and chunking (tested through tests/unit/test_rag.c). */
#ifndef SLM_RAG_INTERNAL_H
#define SLM_RAG_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm_store_rag.h"

/* Extracted text: UTF-8, pages separated by '\f', headings as markdown lines ("## Title"). */
typedef struct rag_text {
    char *data; /* malloc'd, NUL-terminated */
    size_t len;
    int n_pages; /* 0 = not paged */
} rag_text;

/* "txt", "md", "html", "pdf", "docx" from a file name's extension (case-insensitive); NULL = unsupported. */
const char *rag_format_of(const char *name);
/* Extracts the text of `len` bytes in `format`. More than max_text bytes of text, invalid input
 * (not that format, a zip bomb, binary junk) is an error with one line in err. */
int rag_extract(const char *format, const void *bytes, size_t len, size_t max_text, rag_text *out, char *err,
                size_t err_len);
void rag_text_free(rag_text *t);

typedef struct rag_chunk_span {
    size_t start, end; /* byte range of the text, trimmed of surrounding whitespace */
    int page;          /* 1-based when the text is paged, else 0 */
    char *heading;     /* malloc'd heading path "A > B", "" = none */
} rag_chunk_span;

/* Cuts text into chunks of about chunk_tokens tokens (estimated as 4 bytes each) at paragraph,
 * heading and page boundaries, long paragraphs at sentence or word ends; consecutive chunks of a
 * section share about overlap_tokens. Headings are markdown lines when `headings`. *out malloc'd
 * (rag_chunks_free). Returns the count or -1 (out of memory). */
int rag_chunk(const char *text, size_t len, bool paged, bool headings, int chunk_tokens, int overlap_tokens,
              rag_chunk_span **out);
void rag_chunks_free(rag_chunk_span *c, int n);

/* True if the bytes are valid UTF-8 without NUL or other C0 controls except \t \n \r \f. */
bool rag_text_plausible(const char *s, size_t n);

/* The approximate vector index (ivf.c): lists of vectors around spherical k-means centroids. A
 * collection gets one from this many vectors on; a query probes nlist / RAG_IVF_PROBE_DIVISOR lists
 * (at least 8) unless it asks for another number or for exhaustive search. */
#define RAG_IVF_MIN_VECTORS 50000
#define RAG_IVF_PROBE_DIVISOR 8
typedef struct rag_ivf {
    int nlist, dim;
    float *centroids;       /* nlist x dim, unit length */
    long long *list_start;  /* nlist + 1: list c is positions [list_start[c], list_start[c+1]) */
} rag_ivf;
/* Clusters vecs[0..n) (f16, dim each) into nlist lists (0 = sqrt(n)) and reorders vecs and ids in
 * place so each list is contiguous. 0, or -1 (out of memory; nothing reordered). */
int rag_ivf_build(rag_ivf *ix, uint16_t *vecs, long long *ids, size_t n, int dim, int nlist, uint64_t seed);
/* Scores the vectors of the query's nprobe nearest lists: scores[i] for vector position positions[i]
 * (both sized for every vector). Returns how many, or -1. */
long long rag_ivf_candidates(const rag_ivf *ix, const float *query, int nprobe, const uint16_t *vecs, float *scores,
                             long long *positions);
void rag_ivf_free(rag_ivf *ix);

/* A collection's vectors in memory (vectors.c), shared by the process's handles: valid while the
 * collection's chunk count and largest chunk id are unchanged (ids are never reused: any change
 * moves one of them). Immutable once built; readers hold a reference. */
typedef struct rag_vectors {
    char db_key[PATH_MAX]; /* the data directory the store is in */
    long long coll, count, max_id;
    int dim;
    long long n;
    long long *ids;
    uint16_t *data;
    rag_ivf ivf; /* built when there are at least RAG_IVF_MIN_VECTORS */
    int refs;
    bool ready, shared;
} rag_vectors;
/* The current vectors of collection c (built now if no handle has them). 0, or -1 with err. */
int rag_vectors_get(slm_rag_db *db, const char *db_key, const slm_rag_db_collection *c, rag_vectors **out, char *err,
                    size_t err_len);
void rag_vectors_put(rag_vectors *v);
/* Frees the cached vectors of a collection nobody reads (it was dropped). */
void rag_vectors_forget(const char *db_key, long long coll);

#endif
