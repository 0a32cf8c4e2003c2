/* Retrieval: collections, ingest (extract → chunk → embed → one transaction per document), search
 * (BM25, exact vector top-k, reciprocal rank fusion) and the pieces of an answer with citations. */
#include "slm_rag.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rag_internal.h"
#include "slm_pii.h"
#include "util/err.h"

struct slm_rag {
    slm_rag_db *db;
    char db_key[PATH_MAX]; /* the data directory: what the process-wide vector cache is keyed by */
    rag_vectors *vec;      /* the vectors of the last collection searched (a reference) */
    slm_pii *pii; /* the detector for collections that mask personal data; made at their first ingest */
};

int slm_rag_open(const char *data_dir, slm_rag **out, char *err, size_t err_len) {
    *out = NULL;
    slm_rag *r = calloc(1, sizeof *r);
    if (!r) return slm_err(err, err_len, "out of memory");
    if (slm_rag_db_open(data_dir, &r->db, err, err_len)) {
        free(r);
        return -1;
    }
    if (!realpath(data_dir, r->db_key)) snprintf(r->db_key, sizeof r->db_key, "%s", data_dir);
    *out = r;
    return 0;
}

static void drop_vector_cache(slm_rag *r) {
    rag_vectors_put(r->vec);
    r->vec = NULL;
}

void slm_rag_close(slm_rag *r) {
    if (!r) return;
    drop_vector_cache(r);
    slm_pii_free(r->pii);
    slm_rag_db_close(r->db);
    free(r);
}

slm_rag_db *slm_rag_store(slm_rag *r) { return r->db; }

bool slm_rag_name_valid(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= SLM_RAG_NAME_MAX || name[0] == '.' || name[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

int slm_rag_collection_create(slm_rag *r, const char *name, const slm_rag_collection_opts *opts, char *err,
                              size_t err_len) {
    if (!slm_rag_name_valid(name))
        return slm_err(err, err_len, "invalid collection name '%.80s' (1-63 of A-Z a-z 0-9 _ . -, not starting with . or -)",
                       name ? name : "");
    slm_rag_db_collection c = {0};
    snprintf(c.name, sizeof c.name, "%s", name);
    const char *model = opts && opts->embed_model ? opts->embed_model : "";
    if (*model) {
        char real[PATH_MAX];
        if (!realpath(model, real)) return slm_err(err, err_len, "embedding model %s: %s", model, strerror(errno));
        if (snprintf(c.embed_model, sizeof c.embed_model, "%s", real) >= (int)sizeof c.embed_model)
            return slm_err(err, err_len, "embedding model path too long");
    }
    c.chunk_tokens = opts && opts->chunk_tokens > 0 ? opts->chunk_tokens : 512;
    /* the default overlap: 32 tokens, at most a quarter of a small chunk */
    c.chunk_overlap = opts && opts->chunk_overlap != 0 ? (opts->chunk_overlap < 0 ? 0 : opts->chunk_overlap)
                                                       : (c.chunk_tokens / 4 < 32 ? c.chunk_tokens / 4 : 32);
    if (c.chunk_tokens < 16 || c.chunk_tokens > 8192) return slm_err(err, err_len, "chunk size %d tokens is outside 16..8192", c.chunk_tokens);
    if (c.chunk_overlap >= c.chunk_tokens) return slm_err(err, err_len, "chunk overlap must be smaller than the chunk size");
    const char *pii = opts && opts->pii ? opts->pii : "";
    if (strcmp(pii, "mask") == 0) snprintf(c.pii, sizeof c.pii, "mask");
    else if (*pii && strcmp(pii, "off") != 0) return slm_err(err, err_len, "pii '%.20s': expected off or mask", pii);
    return slm_rag_db_collection_create(r->db, &c, err, err_len);
}

int slm_rag_collection_get(slm_rag *r, const char *name, slm_rag_db_collection *out, char *err, size_t err_len) {
    return slm_rag_db_collection_get(r->db, name, out, err, err_len);
}

static int need_collection(slm_rag *r, const char *name, slm_rag_db_collection *c, char *err, size_t err_len) {
    int f = slm_rag_db_collection_get(r->db, name, c, err, err_len);
    if (f == 0) return slm_err(err, err_len, "no collection called '%.80s'", name);
    return f < 0 ? -1 : 0;
}

int slm_rag_collection_drop(slm_rag *r, const char *name, char *err, size_t err_len) {
    slm_rag_db_collection c;
    if (need_collection(r, name, &c, err, err_len)) return -1;
    drop_vector_cache(r);
    rag_vectors_forget(r->db_key, c.id);
    return slm_rag_db_collection_drop(r->db, c.id, err, err_len);
}

/* ---------- ingest ---------- */

static void hash_hex(const void *data, size_t len, char out[65]) {
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, data, len);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Replaces the personal data in the extracted text by placeholders ("[EMAIL_1]"): offsets,
 * chunks, the index and the stored text all see the masked text only. */
static int mask_pii(slm_rag *r, rag_text *t, char *err, size_t err_len) {
    if (!r->pii && !(r->pii = slm_pii_new(err, err_len))) return -1;
    slm_pii_span *spans = NULL;
    int n = slm_pii_scan(r->pii, t->data, t->len, &spans);
    if (n < 0) return slm_err(err, err_len, "out of memory");
    if (n == 0) return 0;
    slm_pii_mask *m = slm_pii_mask_new();
    size_t len = 0;
    char *masked = m ? slm_pii_mask_apply(m, t->data, t->len, spans, n, &len) : NULL;
    slm_pii_mask_free(m);
    free(spans);
    if (!masked) return slm_err(err, err_len, "out of memory");
    free(t->data);
    t->data = masked;
    t->len = len;
    return 0;
}

/* Extract, chunk and embed outside the transaction (the write lock is held only to store). */
static int store_document(slm_rag *r, const slm_rag_db_collection *c, slm_rag_db_document *d, const void *data,
                          size_t len, const slm_rag_ingest_opts *opts, slm_rag_embedder *embedder, char *err,
                          size_t err_len) {
    size_t max_text = opts && opts->max_text_bytes ? opts->max_text_bytes : (size_t)64 << 20;
    hash_hex(data, len, d->hash);
    slm_rag_db_document old;
    int found = slm_rag_db_document_find(r->db, c->id, d->path, &old, err, err_len);
    if (found < 0) return -1;
    if (found && strcmp(old.hash, d->hash) == 0) return SLM_RAG_UNCHANGED;
    if (c->embed_model[0] && !embedder)
        return slm_err(err, err_len, "collection '%s' has an embedding model but none is loaded", c->name), -1;
    rag_text t = {0};
    if (rag_extract(d->format, data, len, max_text, &t, err, err_len)) return SLM_RAG_SKIPPED;
    if (c->pii[0] && mask_pii(r, &t, err, err_len)) {
        rag_text_free(&t);
        return -1;
    }
    rag_chunk_span *spans = NULL;
    bool headings = strcmp(d->format, "txt") != 0;
    int n = rag_chunk(t.data, t.len, t.n_pages > 0, headings, c->chunk_tokens, c->chunk_overlap, &spans);
    if (n < 0) {
        rag_text_free(&t);
        return slm_err(err, err_len, "out of memory");
    }
    float *vec = NULL;
    uint16_t *half = NULL;
    int dim = 0, rc = -1;
    if (c->embed_model[0] && n > 0) {
        dim = slm_rag_embedder_dim(embedder);
        if (c->dim && c->dim != dim) {
            slm_err(err, err_len, "the embedding model gives %d values, the collection holds %d", dim, c->dim);
            goto out;
        }
        const char **texts = malloc(sizeof *texts * (size_t)n);
        size_t *lens = malloc(sizeof *lens * (size_t)n);
        vec = malloc(sizeof *vec * (size_t)n * (size_t)dim);
        half = malloc(sizeof *half * (size_t)n * (size_t)dim);
        if (!texts || !lens || !vec || !half) {
            free(texts);
            free(lens);
            slm_err(err, err_len, "out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++) {
            texts[i] = t.data + spans[i].start;
            lens[i] = spans[i].end - spans[i].start;
        }
        int e = slm_rag_embed(embedder, texts, lens, n, vec, err, err_len);
        free(texts);
        free(lens);
        if (e) goto out;
        for (size_t i = 0; i < (size_t)n * (size_t)dim; i++) half[i] = slm_rag_f32_to_f16(vec[i]);
    }
    d->n_pages = t.n_pages;
    /* alone: a transaction of its own; inside a batch (slm_rag_ingest_paths): a savepoint, so a
     * failing document leaves the others of the batch alone */
    bool nested = slm_rag_db_in_transaction(r->db);
    if (nested ? slm_rag_db_savepoint(r->db, err, err_len) : slm_rag_db_begin(r->db, err, err_len)) goto out;
    if (found && slm_rag_db_document_delete(r->db, c->id, old.id, err, err_len)) goto rollback;
    if (slm_rag_db_document_insert(r->db, c->id, d, t.data, t.len, err, err_len)) goto rollback;
    for (int i = 0; i < n; i++) {
        slm_rag_db_chunk ch = {.doc = d->id, .ord = i, .start = (long long)spans[i].start, .end = (long long)spans[i].end,
                               .page = spans[i].page, .heading = spans[i].heading, .text = t.data + spans[i].start};
        if (slm_rag_db_chunk_insert(r->db, c->id, &ch, half ? half + (size_t)i * (size_t)dim : NULL, dim, err, err_len))
            goto rollback;
    }
    if (slm_rag_db_document_set_chunks(r->db, d->id, n, err, err_len)) goto rollback;
    if (half && !c->dim && slm_rag_db_collection_set_dim(r->db, c->id, dim, err, err_len)) goto rollback;
    if (nested ? slm_rag_db_release(r->db, err, err_len) : slm_rag_db_commit(r->db, err, err_len)) goto rollback;
    d->n_chunks = n;
    rc = found ? SLM_RAG_REPLACED : SLM_RAG_ADDED;
    goto out;
rollback:
    if (nested) slm_rag_db_rollback_to(r->db);
    else slm_rag_db_rollback(r->db);
out:
    free(vec);
    free(half);
    rag_chunks_free(spans, n);
    rag_text_free(&t);
    return rc;
}

static bool plain_name(const char *name) {
    if (!name || !*name || strlen(name) >= 256 || strchr(name, '/') || strchr(name, '\\') || strcmp(name, ".") == 0 ||
        strstr(name, ".."))
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return false;
    return true;
}

bool slm_rag_document_name_valid(const char *name) { return plain_name(name); }

const char *slm_rag_format_of(const char *name) { return name ? rag_format_of(name) : NULL; }

static void doc_name_of(const char *file, char *out, size_t cap) {
    snprintf(out, cap, "%s", base_name(file));
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

int slm_rag_ingest_bytes(slm_rag *r, const slm_rag_db_collection *c, const char *name, const char *format,
                         const void *data, size_t len, const slm_rag_ingest_opts *opts, slm_rag_embedder *embedder,
                         char *err, size_t err_len) {
    if (!plain_name(name))
        return slm_err(err, err_len, "'%.80s' is not a plain file name (no '/', '\\', '..' or control characters)",
                       name ? name : ""),
               SLM_RAG_SKIPPED;
    const char *fmt = format ? format : rag_format_of(name);
    if (!fmt || !(strcmp(fmt, "txt") == 0 || strcmp(fmt, "md") == 0 || strcmp(fmt, "html") == 0 ||
                  strcmp(fmt, "pdf") == 0 || strcmp(fmt, "docx") == 0))
        return slm_err(err, err_len, "%s: unsupported format (txt, md, html, pdf, docx)", name), SLM_RAG_SKIPPED;
    size_t max_file = opts && opts->max_file_bytes ? opts->max_file_bytes : (size_t)256 << 20;
    if (len > max_file) return slm_err(err, err_len, "%s: larger than the %zu MiB limit", name, max_file >> 20), SLM_RAG_SKIPPED;
    slm_rag_db_document d = {0};
    doc_name_of(name, d.name, sizeof d.name);
    snprintf(d.path, sizeof d.path, "%s", name);
    snprintf(d.format, sizeof d.format, "%s", fmt);
    d.size = (long long)len;
    return store_document(r, c, &d, data, len, opts, embedder, err, err_len);
}

int slm_rag_ingest_file(slm_rag *r, const slm_rag_db_collection *c, const char *path, const slm_rag_ingest_opts *opts,
                        slm_rag_embedder *embedder, char *err, size_t err_len) {
    const char *fmt = rag_format_of(path);
    if (!fmt) return slm_err(err, err_len, "unsupported file type (txt, md, html, pdf, docx)"), SLM_RAG_SKIPPED;
    char real[PATH_MAX];
    if (!realpath(path, real)) return slm_err(err, err_len, "%s", strerror(errno)), SLM_RAG_SKIPPED;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_err(err, err_len, "cannot open: %s", strerror(errno)), SLM_RAG_SKIPPED;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return slm_err(err, err_len, "not a regular file"), SLM_RAG_SKIPPED;
    }
    size_t max_file = opts && opts->max_file_bytes ? opts->max_file_bytes : (size_t)256 << 20;
    if ((unsigned long long)st.st_size > max_file) {
        close(fd);
        return slm_err(err, err_len, "%lld bytes, larger than the %zu MiB limit per file", (long long)st.st_size,
                       max_file >> 20),
               SLM_RAG_SKIPPED;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *data = malloc(len + 1);
    if (!data) {
        close(fd);
        return slm_err(err, err_len, "out of memory");
    }
    while (got < len) {
        ssize_t k = read(fd, data + got, len - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    int rerr = errno;
    close(fd);
    if (got != len) {
        free(data);
        return slm_err(err, err_len, "read error: %s", got < len ? strerror(rerr) : "file changed while reading"),
               SLM_RAG_SKIPPED;
    }
    slm_rag_db_document d = {0};
    doc_name_of(real, d.name, sizeof d.name);
    snprintf(d.path, sizeof d.path, "%s", real);
    snprintf(d.format, sizeof d.format, "%s", fmt);
    d.size = (long long)len;
    int rc = store_document(r, c, &d, data, len, opts, embedder, err, err_len);
    free(data);
    return rc;
}

typedef struct path_list {
    char **p;
    int n, cap;
} path_list;

static int path_push(path_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->p, sizeof *p * (size_t)cap);
        if (!p) return -1;
        l->p = p;
        l->cap = cap;
    }
    if (!(l->p[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Regular files under dir (sorted, hidden entries skipped, symlinked folders not followed). */
static int walk(const char *dir, path_list *files, int depth) {
    if (depth > 64) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    path_list names = {0};
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (path_push(&names, e->d_name)) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    qsort(names.p, (size_t)names.n, sizeof *names.p, cmp_str);
    for (int i = 0; rc == 0 && i < names.n; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, names.p[i]) >= (int)sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) rc = walk(p, files, depth + 1);
        else if (S_ISREG(st.st_mode) || (S_ISLNK(st.st_mode) && stat(p, &st) == 0 && S_ISREG(st.st_mode)))
            rc = path_push(files, p);
    }
    for (int i = 0; i < names.n; i++) free(names.p[i]);
    free(names.p);
    return rc;
}

int slm_rag_ingest_paths(slm_rag *r, const char *collection, const char *const *paths, int n_paths, bool sync,
                         const slm_rag_ingest_opts *opts, slm_rag_embedder *embedder, slm_rag_ingest_stats *stats,
                         char *err, size_t err_len) {
    memset(stats, 0, sizeof *stats);
    slm_rag_db_collection c;
    if (need_collection(r, collection, &c, err, err_len)) return -1;
    path_list files = {0};
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_paths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            stats->skipped++;
            if (opts && opts->progress) opts->progress(opts->user, paths[i], SLM_RAG_SKIPPED, strerror(errno), 0);
            continue;
        }
        rc = S_ISDIR(st.st_mode) ? walk(paths[i], &files, 0) : path_push(&files, paths[i]);
    }
    if (rc) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    /* documents are committed in batches (each in a savepoint): one commit per file would cost a
     * WAL write of the index pages and, every thousand pages, an fsync */
    int in_batch = 0;
    for (int i = 0; i < files.n; i++) {
        if (!slm_rag_db_in_transaction(r->db) && slm_rag_db_begin(r->db, err, err_len)) {
            rc = -1;
            goto out;
        }
        char why[512] = "";
        int s = slm_rag_ingest_file(r, &c, files.p[i], opts, embedder, why, sizeof why);
        if (s < 0) {
            slm_rag_db_rollback(r->db);
            slm_err(err, err_len, "%s: %s (the last %d documents were not stored)", files.p[i], why, in_batch);
            rc = -1;
            goto out;
        }
        if (s == SLM_RAG_ADDED || s == SLM_RAG_REPLACED) in_batch++;
        if ((in_batch >= 64 || i == files.n - 1) && slm_rag_db_commit(r->db, err, err_len)) {
            slm_rag_db_rollback(r->db);
            rc = -1;
            goto out;
        }
        if (in_batch >= 64) in_batch = 0;
        struct stat st;
        long long bytes = stat(files.p[i], &st) == 0 ? (long long)st.st_size : 0;
        if (s == SLM_RAG_ADDED) stats->added++;
        else if (s == SLM_RAG_REPLACED) stats->replaced++;
        else if (s == SLM_RAG_UNCHANGED) stats->unchanged++;
        else stats->skipped++;
        if (s == SLM_RAG_ADDED || s == SLM_RAG_REPLACED) stats->bytes += bytes;
        if (opts && opts->progress) opts->progress(opts->user, files.p[i], (slm_rag_ingest_status)s, why, bytes);
    }
    if (slm_rag_db_in_transaction(r->db) && slm_rag_db_commit(r->db, err, err_len)) {
        slm_rag_db_rollback(r->db);
        rc = -1;
        goto out;
    }
    if (sync) {
        slm_rag_db_document *docs = NULL;
        int n = slm_rag_db_document_list(r->db, c.id, &docs, err, err_len);
        if (n < 0) {
            rc = -1;
            goto out;
        }
        for (int i = 0; i < n && rc == 0; i++) {
            struct stat st;
            if (docs[i].path[0] != '/' || stat(docs[i].path, &st) == 0 || errno != ENOENT) continue;
            if (slm_rag_db_begin(r->db, err, err_len) ||
                slm_rag_db_document_delete(r->db, c.id, docs[i].id, err, err_len) || slm_rag_db_commit(r->db, err, err_len)) {
                slm_rag_db_rollback(r->db);
                rc = -1;
            } else {
                stats->removed++;
            }
        }
        free(docs);
    }
    {
        slm_rag_db_collection after;
        if (rc == 0 && slm_rag_db_collection_get(r->db, collection, &after, NULL, 0) == 1)
            stats->chunks = after.n_chunks - c.n_chunks;
    }
out:
    for (int i = 0; i < files.n; i++) free(files.p[i]);
    free(files.p);
    return rc;
}

int slm_rag_document_remove(slm_rag *r, const char *collection, const char *doc, char *err, size_t err_len) {
    slm_rag_db_collection c;
    if (need_collection(r, collection, &c, err, err_len)) return -1;
    slm_rag_db_document *docs = NULL;
    int n = slm_rag_db_document_list(r->db, c.id, &docs, err, err_len);
    if (n < 0) return -1;
    char *end;
    long long id = strtoll(doc, &end, 10);
    bool by_id = *doc && !*end;
    char real[PATH_MAX];
    const char *rp = realpath(doc, real) ? real : doc;
    int removed = 0;
    for (int i = 0; i < n; i++) {
        if ((by_id && docs[i].id == id) || strcmp(docs[i].name, doc) == 0 || strcmp(docs[i].path, doc) == 0 ||
            strcmp(docs[i].path, rp) == 0) {
            if (slm_rag_db_begin(r->db, err, err_len) ||
                slm_rag_db_document_delete(r->db, c.id, docs[i].id, err, err_len) || slm_rag_db_commit(r->db, err, err_len)) {
                slm_rag_db_rollback(r->db);
                free(docs);
                return -1;
            }
            removed = 1;
            break;
        }
    }
    free(docs);
    return removed;
}

/* ---------- search ---------- */

int slm_rag_mode_parse(const char *s) {
    if (!s) return -1;
    if (strcmp(s, "bm25") == 0) return SLM_RAG_BM25;
    if (strcmp(s, "vector") == 0) return SLM_RAG_VECTOR;
    if (strcmp(s, "hybrid") == 0) return SLM_RAG_HYBRID;
    return -1;
}

/* Words are runs of letters, digits and any non-ASCII byte (as unicode61 sees them, roughly);
 * each is quoted, so no query text is FTS5 syntax. */
char *slm_rag_fts_query(const char *query) {
    size_t n = strlen(query);
    char *out = malloc(n * 6 + 1), *p = out;
    if (!out) return NULL;
    *p = 0;
    const unsigned char *q = (const unsigned char *)query;
    int words = 0;
    for (size_t i = 0; i < n && words < SLM_RAG_QUERY_MAX_WORDS;) {
        while (i < n && !(q[i] >= 0x80 || (q[i] >= '0' && q[i] <= '9') || ((q[i] | 32) >= 'a' && (q[i] | 32) <= 'z'))) i++;
        size_t s = i;
        while (i < n && (q[i] >= 0x80 || (q[i] >= '0' && q[i] <= '9') || ((q[i] | 32) >= 'a' && (q[i] | 32) <= 'z'))) i++;
        if (i == s) continue;
        words++;
        if (p != out) p = memcpy(p, " OR ", 4), p += 4;
        *p++ = '"';
        memcpy(p, query + s, i - s);
        p += i - s;
        *p++ = '"';
    }
    *p = 0;
    return out;
}

/* The FTS5 query without the words that are in at least half of the chunks: BM25 gives them an IDF
 * of (floored) zero, so they change no score that matters, yet OR-ing them in makes nearly every
 * chunk a match to be scored (a query with "what is the" scanned the whole collection). When every
 * word is that common, all are kept. *df (malloc'd, *n_df entries; NULL when not counted, in a
 * small collection) holds the match count of each word of the result, for the BM25 IDF. NULL (err
 * set) on failure. */
static char *informative_query(slm_rag *r, const slm_rag_db_collection *c, const char *query, long long **df, int *n_df,
                               char *err, size_t err_len) {
    *df = NULL;
    *n_df = 0;
    char *all = slm_rag_fts_query(query);
    if (!all) return slm_err(err, err_len, "out of memory"), NULL;
    if (c->n_chunks < 64 || !*all) return all; /* small: nothing to gain */
    size_t n_words = 0;
    for (const char *p = all; (p = strchr(p, '"')); p++) n_words++;
    n_words /= 2;
    char *out = malloc(strlen(all) + 1), *o = out;
    long long *counts = malloc(sizeof *counts * (n_words + 1)), *kept = malloc(sizeof *kept * (n_words + 1));
    if (!out || !counts || !kept) {
        free(all);
        free(out);
        free(counts);
        free(kept);
        return slm_err(err, err_len, "out of memory"), NULL;
    }
    *o = 0;
    int n_all = 0, n_kept = 0;
    /* all words counted in one statement; one statement per word when FTS5 parsed them otherwise */
    bool counted = slm_rag_db_phrase_counts(r->db, c->id, all, counts, (int)n_words, err, err_len) == 0;
    /* the words of `all` are "..." separated by " OR "; a quote never occurs inside one */
    for (char *p = all; (p = strchr(p, '"'));) {
        char *e = strchr(p + 1, '"');
        if (!e) break;
        char save = e[1];
        e[1] = 0;
        long long n = counted ? counts[n_all] : slm_rag_db_match_count(r->db, c->id, p, err, err_len);
        if (n < 0) {
            free(all);
            free(out);
            free(counts);
            free(kept);
            return NULL;
        }
        counts[n_all++] = n;
        if (2 * n < c->n_chunks) {
            if (o != out) o = memcpy(o, " OR ", 4), o += 4;
            size_t l = (size_t)(e + 1 - p);
            memcpy(o, p, l);
            o += l;
            *o = 0;
            kept[n_kept++] = n;
        }
        e[1] = save;
        p = e + 1;
    }
    if (!*out) {
        free(out);
        free(kept);
        *df = counts;
        *n_df = n_all;
        return all;
    }
    free(all);
    free(counts);
    *df = kept;
    *n_df = n_kept;
    return out;
}

typedef struct scored {
    long long id;
    double score;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int slm_rag_rrf(const long long *a, int n_a, const long long *b, int n_b, double w_a, double w_b, double k,
                long long **out_ids, double **out_scores) {
    *out_ids = NULL;
    *out_scores = NULL;
    int n = 0;
    scored *s = malloc(sizeof *s * (size_t)(n_a + n_b + 1));
    long long *sorted = malloc(sizeof *sorted * (size_t)(n_a + 1));
    if (!s || !sorted) {
        free(s);
        free(sorted);
        return -1;
    }
    for (int i = 0; i < n_a; i++) s[n++] = (scored){a[i], w_a / (k + i + 1)};
    /* ids of a, sorted, to find the entries of b that a has too */
    memcpy(sorted, a, sizeof *a * (size_t)n_a);
    qsort(sorted, (size_t)n_a, sizeof *sorted, cmp_ll);
    for (int j = 0; j < n_b; j++) {
        long long *hit = bsearch(&b[j], sorted, (size_t)n_a, sizeof *sorted, cmp_ll);
        if (hit) {
            for (int i = 0; i < n_a; i++)
                if (s[i].id == b[j]) {
                    s[i].score += w_b / (k + j + 1);
                    break;
                }
        } else {
            s[n++] = (scored){b[j], w_b / (k + j + 1)};
        }
    }
    free(sorted);
    qsort(s, (size_t)n, sizeof *s, cmp_scored);
    long long *ids = malloc(sizeof *ids * (size_t)(n + 1));
    double *sc = malloc(sizeof *sc * (size_t)(n + 1));
    if (!ids || !sc) {
        free(ids);
        free(sc);
        free(s);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        ids[i] = s[i].id;
        sc[i] = s[i].score;
    }
    free(s);
    *out_ids = ids;
    *out_scores = sc;
    return n;
}

static int load_vectors(slm_rag *r, const slm_rag_db_collection *c, char *err, size_t err_len) {
    const rag_vectors *v = r->vec;
    if (v && v->coll == c->id && v->count == c->n_chunks && v->max_id == c->max_chunk_id && v->dim == c->dim) return 0;
    drop_vector_cache(r);
    return rag_vectors_get(r->db, r->db_key, c, &r->vec, err, err_len);
}

static int vector_search(slm_rag *r, const slm_rag_db_collection *c, const char *query, int limit, int nprobe,
                         slm_rag_embedder *embedder, long long **ids, double **scores, char *err, size_t err_len) {
    *ids = NULL;
    *scores = NULL;
    if (!c->embed_model[0]) return slm_err(err, err_len, "collection '%s' has no embedding model (create it with --embed-model)", c->name);
    if (!embedder) return slm_err(err, err_len, "vector search needs the collection's embedding model loaded");
    if (c->dim == 0 || c->n_chunks == 0) return 0;
    int dim = slm_rag_embedder_dim(embedder);
    if (dim != c->dim) return slm_err(err, err_len, "the embedding model gives %d values, the collection holds %d", dim, c->dim);
    if (load_vectors(r, c, err, err_len)) return -1;
    float *q = malloc(sizeof *q * (size_t)dim);
    const rag_vectors *v = r->vec;
    float *sc = malloc(sizeof *sc * (size_t)(v->n + 1));
    long long *pos = NULL; /* approximate search: the vector position of each score */
    int *top = malloc(sizeof *top * (size_t)(limit + 1));
    *ids = malloc(sizeof **ids * (size_t)(limit + 1));
    *scores = malloc(sizeof **scores * (size_t)(limit + 1));
    int n = -1;
    if (!q || !sc || !top || !*ids || !*scores) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    size_t qlen = strlen(query);
    if (slm_rag_embed(embedder, &query, &qlen, 1, q, err, err_len)) goto out;
    if (v->ivf.nlist > 0 && nprobe >= 0) {
        if (nprobe == 0) nprobe = v->ivf.nlist / RAG_IVF_PROBE_DIVISOR > 8 ? v->ivf.nlist / RAG_IVF_PROBE_DIVISOR : 8;
        long long m = (pos = malloc(sizeof *pos * (size_t)(v->n + 1))) ? rag_ivf_candidates(&v->ivf, q, nprobe, v->data, sc, pos) : -1;
        if (m < 0) {
            slm_err(err, err_len, "out of memory");
            goto out;
        }
        n = slm_rag_top_k(sc, (size_t)m, limit, top);
        for (int i = 0; i < n; i++) {
            (*ids)[i] = v->ids[pos[top[i]]];
            (*scores)[i] = sc[top[i]];
        }
    } else {
        slm_rag_dot_f16(q, v->data, (size_t)v->n, dim, sc);
        n = slm_rag_top_k(sc, (size_t)v->n, limit, top);
        for (int i = 0; i < n; i++) {
            (*ids)[i] = v->ids[top[i]];
            (*scores)[i] = sc[top[i]];
        }
    }
out:
    free(pos);
    free(q);
    free(sc);
    free(top);
    if (n < 0) {
        free(*ids);
        free(*scores);
        *ids = NULL;
        *scores = NULL;
    }
    return n;
}

void slm_rag_hits_free(slm_rag_hit *hits, int n) {
    if (!hits) return;
    for (int i = 0; i < n; i++) {
        free(hits[i].heading);
        free(hits[i].text);
        free(hits[i].doc_name);
        free(hits[i].doc_path);
    }
    free(hits);
}

int slm_rag_search(slm_rag *r, const char *collection, const char *query, const slm_rag_search_opts *opts,
                   slm_rag_embedder *embedder, slm_rag_hit **hits, char *err, size_t err_len) {
    *hits = NULL;
    slm_rag_search_opts o = opts ? *opts : (slm_rag_search_opts){0};
    if (o.top_k <= 0) o.top_k = 10;
    if (o.top_k > 10000) return slm_err(err, err_len, "top %d is more than 10000", o.top_k);
    if (o.candidates <= 0) o.candidates = o.top_k > 100 ? o.top_k : 100;
    if (o.per_document && o.candidates < o.top_k * 3) o.candidates = o.top_k * 3; /* several chunks per document */
    if (o.rrf_k <= 0) o.rrf_k = 60;
    if (o.w_bm25 == 0 && o.w_vector == 0) o.w_bm25 = o.w_vector = 1;
    if (o.k1 <= 0) o.k1 = 1.5;
    if (o.b <= 0) o.b = 0.75;
    if (o.b > 1) o.b = 1;
    slm_rag_db_collection c;
    if (need_collection(r, collection, &c, err, err_len)) return -1;
    long long *bi = NULL, *vi = NULL, *fi = NULL;
    double *bs = NULL, *vs = NULL, *fs = NULL;
    int nb = 0, nv = 0, nf = 0, rc = -1;
    if (o.mode != SLM_RAG_VECTOR) {
        long long *df;
        int n_df;
        char *fq = informative_query(r, &c, query, &df, &n_df, err, err_len);
        if (!fq) return -1;
        nb = *fq ? slm_rag_db_bm25(r->db, c.id, fq, df, n_df, o.candidates, o.k1, o.b, &bi, &bs, err, err_len) : 0;
        free(fq);
        free(df);
        if (nb < 0) goto out;
    }
    if (o.mode != SLM_RAG_BM25) {
        nv = vector_search(r, &c, query, o.candidates, o.nprobe, embedder, &vi, &vs, err, err_len);
        if (nv < 0) goto out;
    }
    if (o.mode == SLM_RAG_HYBRID) {
        nf = slm_rag_rrf(bi, nb, vi, nv, o.w_bm25, o.w_vector, o.rrf_k, &fi, &fs);
        if (nf < 0) {
            slm_err(err, err_len, "out of memory");
            goto out;
        }
    } else if (o.mode == SLM_RAG_BM25) {
        fi = bi, fs = bs, nf = nb, bi = NULL, bs = NULL;
    } else {
        fi = vi, fs = vs, nf = nv, vi = NULL, vs = NULL;
    }
    /* chunks are read one by one until top_k are kept: per document, most candidates are not needed */
    slm_rag_hit *h = calloc((size_t)(o.top_k + 1), sizeof *h);
    if (!h) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    int n = 0;
    for (int i = 0; i < nf && n < o.top_k; i++) {
        slm_rag_db_chunk *ch = NULL;
        if (slm_rag_db_chunks_get(r->db, &fi[i], 1, &ch, err, err_len)) {
            slm_rag_hits_free(h, n);
            goto out;
        }
        if (o.per_document) {
            bool seen = false;
            for (int j = 0; j < n && !seen; j++) seen = h[j].doc_id == ch->doc;
            if (seen) {
                slm_rag_db_chunks_free(ch, 1);
                continue;
            }
        }
        slm_rag_hit *x = &h[n++];
        x->chunk_id = ch->id;
        x->doc_id = ch->doc;
        x->score = fs[i];
        x->start = ch->start;
        x->end = ch->end;
        x->page = ch->page;
        x->heading = ch->heading, ch->heading = NULL;
        x->text = ch->text, ch->text = NULL;
        x->doc_name = ch->doc_name, ch->doc_name = NULL;
        x->doc_path = ch->doc_path, ch->doc_path = NULL;
        slm_rag_db_chunks_free(ch, 1);
        if (o.mode == SLM_RAG_BM25) x->bm25_rank = i + 1;
        else
            for (int j = 0; j < nb; j++)
                if (bi[j] == x->chunk_id) x->bm25_rank = j + 1;
        if (o.mode == SLM_RAG_VECTOR) x->vector_rank = i + 1;
        else
            for (int j = 0; j < nv; j++)
                if (vi[j] == x->chunk_id) x->vector_rank = j + 1;
    }
    if (n == 0) { /* nothing found: nothing to free */
        free(h);
        h = NULL;
    }
    *hits = h;
    rc = n;
out:
    free(bi);
    free(bs);
    free(vi);
    free(vs);
    free(fi);
    free(fs);
    return rc;
}

/* ---------- answers with citations ---------- */

static int buf_add(char **b, size_t *n, size_t *cap, const char *s, size_t len) {
    if (*n + len + 1 > *cap) {
        size_t c = (*cap ? *cap * 2 : 4096);
        while (c < *n + len + 1) c *= 2;
        char *p = realloc(*b, c);
        if (!p) return -1;
        *b = p;
        *cap = c;
    }
    memcpy(*b + *n, s, len);
    *n += len;
    (*b)[*n] = 0;
    return 0;
}

int slm_rag_prompt(const slm_rag_hit *hits, int n, char **out, char *err, size_t err_len) {
    *out = NULL;
    char *b = NULL;
    size_t len = 0, cap = 0;
    static const char intro[] =
        "Answer the user's question using only the numbered sources below. After each statement, cite the "
        "source it comes from by its number in square brackets, like [1]. If the sources do not answer the "
        "question, say so.\n\nSources:\n";
    int bad = buf_add(&b, &len, &cap, intro, sizeof intro - 1);
    for (int i = 0; i < n && !bad; i++) {
        char head[1024];
        int k = snprintf(head, sizeof head, "\n[%d] %s%s%.400s", i + 1, hits[i].doc_name, hits[i].heading && *hits[i].heading ? " — " : "",
                         hits[i].heading ? hits[i].heading : "");
        if (k > (int)sizeof head - 1) k = (int)sizeof head - 1;
        if (hits[i].page > 0) k += snprintf(head + k, sizeof head - (size_t)k, " (page %d)", hits[i].page);
        if (k > (int)sizeof head - 2) k = (int)sizeof head - 2;
        head[k++] = '\n';
        bad = buf_add(&b, &len, &cap, head, (size_t)k) || buf_add(&b, &len, &cap, hits[i].text, strlen(hits[i].text)) ||
              buf_add(&b, &len, &cap, "\n", 1);
    }
    if (bad) {
        free(b);
        return slm_err(err, err_len, "out of memory");
    }
    *out = b;
    return 0;
}

const char *slm_rag_query_of(const slm_chat_message *msgs, size_t n) {
    for (size_t i = n; i-- > 0;)
        if (msgs[i].role && strcmp(msgs[i].role, "user") == 0 && msgs[i].content) return msgs[i].content;
    return NULL;
}

int slm_rag_augment_messages(const slm_chat_message *msgs, size_t n, const slm_rag_hit *hits, int n_hits,
                             slm_chat_message **out, size_t *n_out, char **system, char *err, size_t err_len) {
    *out = NULL;
    *n_out = 0;
    *system = NULL;
    char *sources;
    if (slm_rag_prompt(hits, n_hits, &sources, err, err_len)) return -1;
    bool merge = n > 0 && msgs[0].role && strcmp(msgs[0].role, "system") == 0 && msgs[0].content;
    if (merge) {
        size_t a = strlen(sources), b = strlen(msgs[0].content);
        char *s = malloc(a + b + 2);
        if (!s) {
            free(sources);
            return slm_err(err, err_len, "out of memory");
        }
        memcpy(s, sources, a);
        s[a] = '\n';
        memcpy(s + a + 1, msgs[0].content, b + 1);
        free(sources);
        sources = s;
    }
    slm_chat_message *m = malloc(sizeof *m * (n + 1));
    if (!m) {
        free(sources);
        return slm_err(err, err_len, "out of memory");
    }
    size_t k = 0;
    m[k++] = (slm_chat_message){"system", sources};
    for (size_t i = merge ? 1 : 0; i < n; i++) m[k++] = msgs[i];
    *out = m;
    *n_out = k;
    *system = sources;
    return 0;
}

int slm_rag_citation_grammar(int n, char **out, char *err, size_t err_len) {
    *out = NULL;
    if (n < 1 || n > 1000) return slm_err(err, err_len, "a citation grammar needs 1..1000 sources, not %d", n);
    char *b = NULL;
    size_t len = 0, cap = 0;
    /* text is any character but '['; '[' only as the start of a retrieved source's number */
    static const char head[] = "root ::= (text | cite)*\ntext ::= [^\\[]\ncite ::= \"[\" (";
    int bad = buf_add(&b, &len, &cap, head, sizeof head - 1);
    for (int i = 1; i <= n && !bad; i++) {
        char num[24];
        int k = snprintf(num, sizeof num, "%s\"%d\"", i > 1 ? " | " : "", i);
        bad = buf_add(&b, &len, &cap, num, (size_t)k);
    }
    if (!bad) bad = buf_add(&b, &len, &cap, ") \"]\"\n", 6);
    if (bad) {
        free(b);
        return slm_err(err, err_len, "out of memory");
    }
    *out = b;
    return 0;
}

int slm_rag_citations_json(slm_rag *r, const slm_rag_hit *hits, int n, const char *answer, char **out, char *err,
                           size_t err_len) {
    *out = NULL;
    json_t *arr = json_array();
    if (!arr) return slm_err(err, err_len, "out of memory");
    bool *cited = calloc((size_t)n + 1, 1);
    if (!cited) {
        json_decref(arr);
        return slm_err(err, err_len, "out of memory");
    }
    int rc = 0;
    for (const char *p = answer; rc == 0 && (p = strchr(p, '[')); p++) {
        char *end;
        if (p[1] < '0' || p[1] > '9') continue;
        long idx = strtol(p + 1, &end, 10);
        if (*end != ']' || idx < 1 || idx > n || cited[idx]) continue;
        cited[idx] = true;
        const slm_rag_hit *h = &hits[idx - 1];
        char *text = NULL;
        size_t tlen = 0;
        if (slm_rag_db_document_text(r->db, h->doc_id, &text, &tlen, err, err_len)) {
            rc = -1;
            break;
        }
        size_t qlen = strlen(h->text);
        if (h->start < 0 || h->end < h->start || (size_t)h->end > tlen || (size_t)(h->end - h->start) != qlen ||
            memcmp(text + h->start, h->text, qlen) != 0) {
            free(text);
            rc = slm_err(err, err_len, "citation [%ld]: the document %s no longer holds the chunk's text at bytes %lld-%lld (re-ingested?)",
                         idx, h->doc_name, h->start, h->end);
            break;
        }
        free(text);
        json_t *o = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s%}", "index", (int)idx, "document", h->doc_name,
                              "path", h->doc_path, "document_id", (json_int_t)h->doc_id, "chunk_id", (json_int_t)h->chunk_id,
                              "start", (json_int_t)h->start, "end", (json_int_t)h->end, "heading", h->heading ? h->heading : "",
                              "quote", h->text, qlen);
        if (o && h->page > 0) json_object_set_new(o, "page", json_integer(h->page));
        if (!o || json_array_append_new(arr, o)) rc = slm_err(err, err_len, "out of memory (or text that is not UTF-8)");
    }
    free(cited);
    if (rc == 0 && !(*out = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII))) rc = slm_err(err, err_len, "out of memory");
    json_decref(arr);
    return rc;
}
