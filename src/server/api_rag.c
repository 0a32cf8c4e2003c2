/* The retrieval API under /v1/rag/ (route table: every GET/POST/DELETE comes here):
 *   GET    /v1/rag/collections                       the collections the key may use
 *   POST   /v1/rag/collections                       create {"name", "embed_model"?, "chunk_tokens"?,
 *                                                    "chunk_overlap"?, "pii": "off"|"mask"}
 *   GET    /v1/rag/collections/{name}                one collection
 *   DELETE /v1/rag/collections/{name}                drop it with its documents
 *   GET    /v1/rag/collections/{name}/documents      its documents
 *   POST   /v1/rag/collections/{name}/documents      add or replace one: multipart/form-data (a
 *                                                    "file" part, optional "name" and "format"), or
 *                                                    JSON {"name", "text" | "content_base64", "format"?}
 *   DELETE /v1/rag/collections/{name}/documents/{id} remove one (id, or its name)
 *   POST   /v1/rag/collections/{name}/search         {"query", "top_k"?, "mode"?, "per_document"?}
 * Errors are OpenAI error bodies naming the field; a key sees only its collections (403 otherwise). */
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "handlers.h"
#include "rag_chat.h"
#include "replies.h"
#include "slm_rag.h"

#define RAG_SEARCH_TOP_K_MAX 1000
#define RAG_MAX_SEGMENTS 4

/* ---------- JSON of collections, documents and hits ---------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static json_t *collection_json(srv_server *s, const slm_rag_db_collection *c) {
    /* the embedding model as clients name it: the served model's id, else only its file's name
     * (the server's paths are not the client's business) */
    const srv_model *M = srv_rag_served_model(s, c->embed_model);
    json_t *model = !c->embed_model[0] ? json_null() : json_string(M ? M->id : base_name(c->embed_model));
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:o, s:b, s:i, s:i, s:i, s:s, s:I}", "object", "rag.collection", "name",
                     c->name, "documents", (json_int_t)c->n_docs, "chunks", (json_int_t)c->n_chunks, "bytes",
                     (json_int_t)c->n_bytes, "embed_model", model, "embed_model_served", M != NULL, "dim", c->dim,
                     "chunk_tokens", c->chunk_tokens, "chunk_overlap", c->chunk_overlap, "pii",
                     c->pii[0] ? c->pii : "off", "created", (json_int_t)c->created);
}

static json_t *document_json(const slm_rag_db_document *d, const char *status) {
    json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:s, s:I}", "object", "rag.document", "id",
                          (json_int_t)d->id, "name", d->name, "path", d->path, "format", d->format, "bytes",
                          (json_int_t)d->size, "text_bytes", (json_int_t)d->text_len, "chunks", d->n_chunks, "pages",
                          d->n_pages, "sha256", d->hash, "added", (json_int_t)d->added);
    if (o && status) json_object_set_new(o, "status", json_string(status));
    return o;
}

static json_t *hit_json(const slm_rag_hit *h, int rank) {
    json_t *o = json_pack("{s:i, s:f, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "rank", rank, "score", h->score,
                          "document", h->doc_name, "path", h->doc_path, "document_id", (json_int_t)h->doc_id, "chunk_id",
                          (json_int_t)h->chunk_id, "start", (json_int_t)h->start, "end", (json_int_t)h->end, "heading",
                          h->heading ? h->heading : "", "text", h->text);
    if (o && h->page > 0) json_object_set_new(o, "page", json_integer(h->page));
    if (o && h->bm25_rank) json_object_set_new(o, "bm25_rank", json_integer(h->bm25_rank));
    if (o && h->vector_rank) json_object_set_new(o, "vector_rank", json_integer(h->vector_rank));
    return o;
}

/* ---------- one request's context ---------- */

typedef struct rag_req {
    srv_conn *c;
    slm_rag *r;
    srv_fail f;
    char err[1024];
} rag_req;

/* The collection called name, or false with f (404 / 500). */
static bool find_collection(rag_req *q, const char *name, slm_rag_db_collection *out) {
    int found = slm_rag_collection_get(q->r, name, out, q->err, sizeof q->err);
    if (found < 0) return srv_failf(&q->f, 500, NULL, NULL, "%s", q->err);
    if (found == 0) return srv_failf(&q->f, 404, "collection_not_found", NULL, "no collection called '%s'", name);
    return true;
}

static enum MHD_Result reply(rag_req *q, int status, json_t *o) {
    if (!o) return srv_reply_error(q->c, 500, NULL, NULL, "out of memory (or text that is not UTF-8)");
    return srv_reply_json(q->c, status, o);
}

/* ---------- collections ---------- */

static enum MHD_Result list_collections(rag_req *q) {
    srv_rag_scope scope;
    if (!srv_rag_scope_of(q->c, &scope, &q->f)) return srv_reply_fail(q->c, &q->f);
    slm_rag_db_collection *cs = NULL;
    int n = slm_rag_db_collection_list(slm_rag_store(q->r), &cs, q->err, sizeof q->err);
    if (n < 0) return srv_reply_error(q->c, 500, NULL, NULL, q->err);
    json_t *data = json_array();
    for (int i = 0; i < n; i++)
        if (srv_rag_scope_allows(&scope, cs[i].name)) json_array_append_new(data, collection_json(q->c->srv, &cs[i]));
    free(cs);
    return reply(q, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static enum MHD_Result create_collection(rag_req *q) {
    srv_conn *c = q->c;
    json_t *req = srv_parse_body(c, &q->f);
    if (!req) return srv_reply_fail(c, &q->f);
    enum MHD_Result ret;
    const char *name = NULL, *model = NULL, *pii = NULL;
    long long tokens = 0, overlap = 0;
    bool have_tokens, have_overlap;
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (strcmp(key, "name") && strcmp(key, "embed_model") && strcmp(key, "chunk_tokens") && strcmp(key, "chunk_overlap") &&
            strcmp(key, "pii")) {
            srv_failf(&q->f, 400, NULL, NULL, "unknown field '%.60s' (name, embed_model, chunk_tokens, chunk_overlap, pii)", key);
            snprintf(q->f.param, sizeof q->f.param, "%.60s", key);
            goto fail;
        }
    }
    if (!srv_json_string(req, "name", &name, &q->f) || !srv_json_string(req, "embed_model", &model, &q->f) ||
        !srv_json_string(req, "pii", &pii, &q->f) ||
        !srv_json_int(req, "chunk_tokens", 16, 8192, &tokens, &have_tokens, &q->f) ||
        !srv_json_int(req, "chunk_overlap", 0, 8191, &overlap, &have_overlap, &q->f))
        goto fail;
    if (!name) {
        srv_failf(&q->f, 400, NULL, "name", "'name' is required");
        goto fail;
    }
    if (!srv_rag_check_collection(c, name, "name", &q->f)) goto fail;
    if (pii && strcmp(pii, "off") != 0 && strcmp(pii, "mask") != 0) {
        srv_failf(&q->f, 400, NULL, "pii", "'pii' must be off or mask");
        goto fail;
    }
    if (have_overlap && have_tokens && overlap >= tokens) {
        srv_failf(&q->f, 400, NULL, "chunk_overlap", "'chunk_overlap' must be smaller than 'chunk_tokens'");
        goto fail;
    }
    const char *model_path = NULL;
    if (model && *model) {
        /* a served model by its id: clients never name files on the server */
        model_path = srv_rag_served_path(c->srv, model);
        if (!model_path) {
            srv_failf(&q->f, 400, "model_not_found", "embed_model", "'embed_model': this server serves no model '%.100s'", model);
            goto fail;
        }
    }
    slm_rag_collection_opts o = {.embed_model = model_path,
                                 .chunk_tokens = (int)tokens,
                                 .chunk_overlap = have_overlap ? (overlap == 0 ? -1 : (int)overlap) : 0,
                                 .pii = pii};
    if (slm_rag_collection_create(q->r, name, &o, q->err, sizeof q->err)) {
        bool exists = strstr(q->err, "exists") != NULL;
        srv_failf(&q->f, exists ? 409 : 400, exists ? "collection_exists" : NULL, exists ? "name" : NULL, "%s", q->err);
        goto fail;
    }
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) goto fail;
    ret = reply(q, 201, collection_json(c->srv, &coll));
    json_decref(req);
    return ret;
fail:
    json_decref(req);
    return srv_reply_fail(c, &q->f);
}

static enum MHD_Result get_collection(rag_req *q, const char *name) {
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(q->c, &q->f);
    return reply(q, 200, collection_json(q->c->srv, &coll));
}

static enum MHD_Result drop_collection(rag_req *q, const char *name) {
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(q->c, &q->f);
    if (slm_rag_collection_drop(q->r, name, q->err, sizeof q->err)) return srv_reply_error(q->c, 500, NULL, NULL, q->err);
    return reply(q, 200, json_pack("{s:s, s:s, s:b}", "object", "rag.collection", "name", name, "deleted", 1));
}

/* ---------- documents ---------- */

static enum MHD_Result list_documents(rag_req *q, const char *name) {
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(q->c, &q->f);
    slm_rag_db_document *ds = NULL;
    int n = slm_rag_db_document_list(slm_rag_store(q->r), coll.id, &ds, q->err, sizeof q->err);
    if (n < 0) return srv_reply_error(q->c, 500, NULL, NULL, q->err);
    json_t *data = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(data, document_json(&ds[i], NULL));
    free(ds);
    return reply(q, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* An upload as it arrived: the document's name, its format (NULL = from the name), its bytes, and
 * the request field each came from (for the error that names it). */
typedef struct upload {
    char name[256];
    char format[16];
    const char *name_field, *content_field;
    const unsigned char *data;
    size_t len;
    unsigned char *owned; /* decoded base64 */
} upload;

/* multipart/form-data: a "file" part, optional "name" and "format" fields (slm_rag_multipart_parse). */
static bool parse_multipart(rag_req *q, const char *content_type, upload *u) {
    slm_rag_upload up;
    const char *field = NULL;
    if (slm_rag_multipart_parse(content_type, q->c->body.s, q->c->body.len, &up, &field, q->err, sizeof q->err))
        return srv_failf(&q->f, 400, NULL, field, "%s", q->err);
    snprintf(u->name, sizeof u->name, "%s", up.name);
    snprintf(u->format, sizeof u->format, "%s", up.format);
    u->name_field = up.name_given ? "name" : "file";
    u->content_field = "file";
    u->data = up.data;
    u->len = up.len;
    return true;
}

static bool parse_json_upload(rag_req *q, upload *u) {
    srv_fail *f = &q->f;
    json_t *req = srv_parse_body(q->c, f);
    if (!req) return false;
    bool ok = false;
    const char *key, *name = NULL, *format = NULL;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (strcmp(key, "name") && strcmp(key, "text") && strcmp(key, "content_base64") && strcmp(key, "format")) {
            srv_failf(f, 400, NULL, NULL, "unknown field '%.60s' (name, text, content_base64, format)", key);
            snprintf(f->param, sizeof f->param, "%.60s", key);
            goto out;
        }
    }
    if (!srv_json_string(req, "name", &name, f) || !srv_json_string(req, "format", &format, f)) goto out;
    if (!name) {
        srv_failf(f, 400, NULL, "name", "'name' is required (the document's file name, e.g. \"manual.md\")");
        goto out;
    }
    if (strlen(name) >= sizeof u->name || strlen(name) != json_string_length(json_object_get(req, "name"))) {
        srv_failf(f, 400, "invalid_name", "name", "'name' must be a plain file name under 256 bytes");
        goto out;
    }
    snprintf(u->name, sizeof u->name, "%s", name);
    u->name_field = "name";
    if (format) {
        if (strlen(format) >= sizeof u->format) {
            srv_failf(f, 400, "unsupported_format", "format", "'format' must be txt, md, html, pdf or docx");
            goto out;
        }
        snprintf(u->format, sizeof u->format, "%s", format);
    }
    json_t *text = json_object_get(req, "text"), *b64 = json_object_get(req, "content_base64");
    if ((text != NULL) == (b64 != NULL)) {
        srv_failf(f, 400, NULL, "text", "give one of 'text' and 'content_base64'");
        goto out;
    }
    if (text) {
        if (!json_is_string(text)) {
            srv_failf(f, 400, NULL, "text", "'text' must be a string");
            goto out;
        }
        size_t n = json_string_length(text);
        if (!(u->owned = malloc(n + 1))) {
            srv_failf(f, 500, NULL, NULL, "out of memory");
            goto out;
        }
        memcpy(u->owned, json_string_value(text), n + 1);
        u->data = u->owned;
        u->len = n;
        u->content_field = "text";
        if (!u->format[0] && !slm_rag_format_of(u->name)) snprintf(u->format, sizeof u->format, "txt");
    } else {
        if (!json_is_string(b64)) {
            srv_failf(f, 400, NULL, "content_base64", "'content_base64' must be a base64 string");
            goto out;
        }
        size_t n = json_string_length(b64), got = 0;
        if (!(u->owned = malloc(n / 4 * 3 + 3))) {
            srv_failf(f, 500, NULL, NULL, "out of memory");
            goto out;
        }
        if (sodium_base642bin(u->owned, n / 4 * 3 + 3, json_string_value(b64), n, " \r\n", &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0) {
            srv_failf(f, 400, NULL, "content_base64", "'content_base64' is not valid base64");
            goto out;
        }
        u->data = u->owned;
        u->len = got;
        u->content_field = "content_base64";
    }
    ok = true;
out:
    json_decref(req);
    return ok;
}

static enum MHD_Result add_document(rag_req *q, const char *name) {
    srv_conn *c = q->c;
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(c, &q->f);
    upload u = {0};
    enum MHD_Result ret;
    slm_rag_embedder *emb = NULL;
    const char *ct = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Type");
    bool multipart = ct && strncasecmp(ct, "multipart/form-data", 19) == 0;
    if (!(multipart ? parse_multipart(q, ct, &u) : parse_json_upload(q, &u))) goto fail;
    if (!u.name[0]) {
        srv_failf(&q->f, 400, NULL, "name", "the document needs a name: a filename on the 'file' part, or a 'name' field");
        goto fail;
    }
    if (!slm_rag_document_name_valid(u.name)) {
        srv_failf(&q->f, 400, "invalid_name", u.name_field,
                  "document name '%.100s' is not a plain file name (no '/', '\\', '..' or control characters)", u.name);
        goto fail;
    }
    const char *fmt = u.format[0] ? u.format : slm_rag_format_of(u.name);
    if (!fmt || !(strcmp(fmt, "txt") == 0 || strcmp(fmt, "md") == 0 || strcmp(fmt, "html") == 0 ||
                  strcmp(fmt, "pdf") == 0 || strcmp(fmt, "docx") == 0)) {
        srv_failf(&q->f, 415, "unsupported_format", u.format[0] ? "format" : u.name_field,
                  "'%.100s': unsupported format (txt, md, html, pdf, docx: give a name with one of those extensions, "
                  "or 'format')",
                  u.format[0] ? u.format : u.name);
        goto fail;
    }
    if (!srv_rag_ingest_embedder(c, &coll, &emb, &q->f)) goto fail;
    int st = slm_rag_ingest_bytes(q->r, &coll, u.name, fmt, u.data, u.len, NULL, emb, q->err, sizeof q->err);
    if (st == SLM_RAG_SKIPPED) {
        srv_failf(&q->f, 400, "invalid_document", u.content_field, "document '%.100s': %s", u.name, q->err);
        goto fail;
    }
    if (st < 0) {
        srv_failf(&q->f, 500, "ingest_failed", NULL, "document '%.100s': %s", u.name, q->err);
        goto fail;
    }
    slm_rag_db_document d;
    int found = slm_rag_db_document_find(slm_rag_store(q->r), coll.id, u.name, &d, q->err, sizeof q->err);
    if (found <= 0) {
        srv_failf(&q->f, 500, NULL, NULL, "%s", found < 0 ? q->err : "the stored document vanished");
        goto fail;
    }
    const char *status = st == SLM_RAG_ADDED ? "added" : st == SLM_RAG_REPLACED ? "replaced" : "unchanged";
    ret = reply(q, st == SLM_RAG_UNCHANGED ? 200 : 201, document_json(&d, status));
    goto out;
fail:
    ret = srv_reply_fail(c, &q->f);
out:
    slm_rag_embedder_free(emb);
    free(u.owned);
    return ret;
}

static enum MHD_Result remove_document(rag_req *q, const char *name, const char *doc) {
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(q->c, &q->f);
    int rc = slm_rag_document_remove(q->r, name, doc, q->err, sizeof q->err);
    if (rc < 0) return srv_reply_error(q->c, 500, NULL, NULL, q->err);
    if (rc == 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "collection '%s' has no document '%.100s'", name, doc);
        return srv_reply_error(q->c, 404, "document_not_found", NULL, msg);
    }
    bool numeric = doc[strspn(doc, "0123456789")] == 0 && strlen(doc) < 19;
    json_t *id = numeric ? json_integer(strtoll(doc, NULL, 10)) : json_string(doc);
    return reply(q, 200, json_pack("{s:s, s:o, s:b}", "object", "rag.document", "id", id, "deleted", 1));
}

/* ---------- search ---------- */

static enum MHD_Result search(rag_req *q, const char *name) {
    srv_conn *c = q->c;
    slm_rag_db_collection coll;
    if (!find_collection(q, name, &coll)) return srv_reply_fail(c, &q->f);
    json_t *req = srv_parse_body(c, &q->f);
    if (!req) return srv_reply_fail(c, &q->f);
    enum MHD_Result ret;
    slm_rag_embedder *emb = NULL;
    const char *query = NULL, *mode = NULL, *key;
    long long top_k = 10;
    bool have_top, per_doc = false;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (strcmp(key, "query") && strcmp(key, "top_k") && strcmp(key, "mode") && strcmp(key, "per_document")) {
            srv_failf(&q->f, 400, NULL, NULL, "unknown field '%.60s' (query, top_k, mode, per_document)", key);
            snprintf(q->f.param, sizeof q->f.param, "%.60s", key);
            goto fail;
        }
    }
    if (!srv_json_string(req, "query", &query, &q->f) || !srv_json_string(req, "mode", &mode, &q->f) ||
        !srv_json_int(req, "top_k", 1, RAG_SEARCH_TOP_K_MAX, &top_k, &have_top, &q->f) ||
        !srv_json_bool(req, "per_document", &per_doc, &q->f))
        goto fail;
    if (!have_top) top_k = 10;
    if (!query || !*query) {
        srv_failf(&q->f, 400, NULL, "query", "'query' is required (a non-empty string)");
        goto fail;
    }
    slm_rag_search_opts so = {.top_k = (int)top_k, .per_document = per_doc};
    if (!srv_rag_mode_embedder(c, &coll, mode, "mode", &so.mode, &emb, &q->f)) goto fail;
    slm_rag_hit *hits = NULL;
    int n = slm_rag_search(q->r, name, query, &so, emb, &hits, q->err, sizeof q->err);
    if (n < 0) {
        srv_failf(&q->f, 500, "search_failed", NULL, "%s", q->err);
        goto fail;
    }
    json_t *data = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(data, hit_json(&hits[i], i + 1));
    slm_rag_hits_free(hits, n);
    static const char *mode_names[] = {"bm25", "vector", "hybrid"};
    ret = reply(q, 200, json_pack("{s:s, s:s, s:s, s:o}", "object", "list", "collection", name, "mode", mode_names[so.mode],
                                  "data", data));
    goto out;
fail:
    ret = srv_reply_fail(c, &q->f);
out:
    slm_rag_embedder_free(emb);
    json_decref(req);
    return ret;
}

/* ---------- dispatch ---------- */

enum MHD_Result srv_rag_dispatch(srv_conn *c) {
    /* /v1/rag/collections[/{name}[/documents[/{id}] | /search]] */
    const char *path = c->url + strlen("/v1/rag/");
    char buf[1024];
    if (strlen(path) >= sizeof buf) return srv_reply_error(c, 404, "unknown_route", NULL, "no such route");
    snprintf(buf, sizeof buf, "%s", path);
    char *seg[RAG_MAX_SEGMENTS + 1];
    int n = 0;
    for (char *s = buf; n <= RAG_MAX_SEGMENTS;) {
        seg[n++] = s;
        char *slash = strchr(s, '/');
        if (!slash) break;
        *slash = 0;
        s = slash + 1;
    }
    bool get = strcmp(c->method, "GET") == 0 || strcmp(c->method, "HEAD") == 0, post = strcmp(c->method, "POST") == 0,
         del = strcmp(c->method, "DELETE") == 0;
    int kind = -1; /* 0 collections, 1 a collection, 2 its documents, 3 one document, 4 search */
    if (n > RAG_MAX_SEGMENTS || strcmp(seg[0], "collections") != 0) kind = -1;
    else if (n == 1) kind = 0;
    else if (n == 2 && *seg[1]) kind = 1;
    else if (n == 3 && *seg[1] && strcmp(seg[2], "documents") == 0) kind = 2;
    else if (n == 4 && *seg[1] && strcmp(seg[2], "documents") == 0 && *seg[3]) kind = 3;
    else if (n == 3 && *seg[1] && strcmp(seg[2], "search") == 0) kind = 4;
    if (kind < 0) return srv_reply_error(c, 404, "unknown_route", NULL, "no such route under /v1/rag/");
    bool allowed = kind == 0 ? get || post : kind == 1 ? get || del : kind == 2 ? get || post : kind == 3 ? del : post;
    if (!allowed) return srv_reply_error(c, 405, NULL, NULL, "method not allowed on this route");
    rag_req q = {.c = c};
    if (kind > 0 && !srv_rag_check_collection(c, seg[1], "collection", &q.f)) {
        if (q.f.status == 400) q.f.status = 404; /* a path that names no possible collection */
        return srv_reply_fail(c, &q.f);
    }
    if (!(q.r = srv_rag_acquire(c, &q.f))) return srv_reply_fail(c, &q.f);
    enum MHD_Result ret;
    switch (kind) {
    case 0: ret = get ? list_collections(&q) : create_collection(&q); break;
    case 1: ret = get ? get_collection(&q, seg[1]) : drop_collection(&q, seg[1]); break;
    case 2: ret = get ? list_documents(&q, seg[1]) : add_document(&q, seg[1]); break;
    case 3: ret = remove_document(&q, seg[1], seg[3]); break;
    default: ret = search(&q, seg[1]); break;
    }
    srv_rag_release(c, q.r);
    return ret;
}
