/* slm rag: collections of documents in the state store, search (BM25, vector, hybrid), TREC runs
 * for evaluation, and answers with checked citations. The logic is in src/rag (slm_rag.h). */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "slm_rag.h"
#include "slm_store.h"

static const char usage_text[] =
    "usage: slm rag VERB ... [--data-dir DIR]\n"
    "\n"
    "  create NAME [--embed-model M.gguf] [--chunk-tokens N] [--overlap N] [--pii off|mask]\n"
    "                     a collection (BM25 always; vectors too with an embedding model); --pii mask\n"
    "                     replaces personal data in documents by placeholders before they are stored\n"
    "  ingest NAME PATH... [--sync] [-q]\n"
    "                     files and folders (recursively): .txt .md .html .pdf .docx; unchanged files\n"
    "                     (same content hash) are skipped, changed ones replaced; --sync removes\n"
    "                     documents whose files are gone. Unsupported or unreadable files: one line each\n"
    "  list [NAME] [--json]  collections, or the documents of one\n"
    "  rm NAME [DOC]      a collection, or one document (id, name or path)\n"
    "  search NAME QUERY [--top K] [--mode bm25|vector|hybrid] [--json]\n"
    "  search NAME --queries Q.jsonl --trec TAG [--top K]\n"
    "                     a TREC run (qid Q0 docid rank score tag; docid = file name without extension,\n"
    "                     each document once) for {\"id\", \"text\"} lines; --stats: query latency\n"
    "                     p50/p99 on standard error\n"
    "      search tuning: --k1 X --b X (BM25), --rrf-k X --w-bm25 X --w-vector X (hybrid fusion),\n"
    "                     --candidates N (per retriever before fusion; default max(100, top))\n"
    "  ask NAME QUESTION --model GEN.gguf [--top K] [--mode M] [--max-tokens N] [--json]\n"
    "                     retrieve, answer citing [n] (markers constrained to the retrieved chunks),\n"
    "                     and print the citations with their checked quotes\n"
    "\n"
    "  --data-dir DIR     the state directory (default: $SLM_HOME, else ~/.local/share/slm)\n"
    "  -t, --threads N    threads for embedding and generation (default: all cores)\n";

typedef struct rag_args {
    const char *data_dir;
    const char *pos[64];
    int n_pos;
    const char *embed_model, *queries, *trec, *model, *mode, *pii;
    long top, chunk_tokens, overlap, max_tokens, threads, candidates;
    double k1, b, rrf_k, w_bm25, w_vector;
    bool sync, quiet, json, stats;
} rag_args;

static int parse_args(int argc, char **argv, rag_args *a) {
    memset(a, 0, sizeof *a);
    a->top = -1;
    a->max_tokens = 512;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                   \
    do {                                                                             \
        if (!v) return cli_fail("rag", "option %s needs a value", s);                \
        i++;                                                                         \
    } while (0)
        if (strcmp(s, "--data-dir") == 0) { NEED_VALUE; a->data_dir = v; }
        else if (strcmp(s, "--embed-model") == 0) { NEED_VALUE; a->embed_model = v; }
        else if (strcmp(s, "--queries") == 0) { NEED_VALUE; a->queries = v; }
        else if (strcmp(s, "--trec") == 0) { NEED_VALUE; a->trec = v; }
        else if (strcmp(s, "--model") == 0 || strcmp(s, "-m") == 0) { NEED_VALUE; a->model = v; }
        else if (strcmp(s, "--mode") == 0) { NEED_VALUE; a->mode = v; }
        else if (strcmp(s, "--pii") == 0) { NEED_VALUE; a->pii = v; }
        else if (strcmp(s, "--top") == 0 || strcmp(s, "-k") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 1, 10000, &a->top)) return 1;
        } else if (strcmp(s, "--candidates") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 1, 100000, &a->candidates)) return 1;
        } else if (strcmp(s, "--chunk-tokens") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 16, 8192, &a->chunk_tokens)) return 1;
        } else if (strcmp(s, "--overlap") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 0, 8191, &a->overlap)) return 1;
            if (a->overlap == 0) a->overlap = -1;
        } else if (strcmp(s, "--max-tokens") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 1, 1 << 20, &a->max_tokens)) return 1;
        } else if (strcmp(s, "-t") == 0 || strcmp(s, "--threads") == 0) {
            NEED_VALUE;
            if (!cli_parse_int("rag", s, v, 1, 1024, &a->threads)) return 1;
        } else if (strcmp(s, "--k1") == 0 || strcmp(s, "--b") == 0 || strcmp(s, "--rrf-k") == 0 ||
                   strcmp(s, "--w-bm25") == 0 || strcmp(s, "--w-vector") == 0) {
            NEED_VALUE;
            double x;
            if (!cli_parse_float("rag", s, v, &x)) return 1;
            if (!(x >= 0 && x <= 1000)) return cli_fail("rag", "%s must be between 0 and 1000", s);
            if (strcmp(s, "--k1") == 0) a->k1 = x;
            else if (strcmp(s, "--b") == 0) {
                if (x > 1) return cli_fail("rag", "--b must be between 0 and 1");
                a->b = x > 0 ? x : 1e-9; /* 0 means "default" below */
            } else if (strcmp(s, "--rrf-k") == 0) a->rrf_k = x;
            else if (strcmp(s, "--w-bm25") == 0) a->w_bm25 = x;
            else a->w_vector = x;
        } else if (strcmp(s, "--sync") == 0) a->sync = true;
        else if (strcmp(s, "-q") == 0 || strcmp(s, "--quiet") == 0) a->quiet = true;
        else if (strcmp(s, "--json") == 0) a->json = true;
        else if (strcmp(s, "--stats") == 0) a->stats = true;
        else if (s[0] == '-' && s[1] && strcmp(s, "--") != 0) return cli_fail("rag", "unknown option '%s'", s);
        else {
            if (a->n_pos == (int)(sizeof a->pos / sizeof a->pos[0])) return cli_fail("rag", "too many arguments (at most 64 paths; pass folders)");
            a->pos[a->n_pos++] = s;
        }
#undef NEED_VALUE
    }
    return 0;
}

static int open_rag(const rag_args *a, slm_rag **r) {
    char dir[PATH_MAX], err[512];
    const char *d = a->data_dir ? a->data_dir : slm_data_dir_default(dir, sizeof dir);
    if (!d) return cli_fail("rag", "the default data directory path is too long (use --data-dir)");
    if (slm_rag_open(d, r, err, sizeof err)) return cli_fail("rag", "%s", err);
    return 0;
}

/* The collection, and its embedder when it has a model and `want` (vector work ahead). */
static int open_collection(const rag_args *a, slm_rag *r, const char *name, bool want, slm_rag_db_collection *c,
                           slm_rag_embedder **emb) {
    char err[512];
    *emb = NULL;
    int f = slm_rag_collection_get(r, name, c, err, sizeof err);
    if (f < 0) return cli_fail("rag", "%s", err);
    if (f == 0) return cli_fail("rag", "no collection called '%s' (slm rag list)", name);
    if (want && c->embed_model[0] && slm_rag_embedder_open(c->embed_model, (int)a->threads, emb, err, sizeof err))
        return cli_fail("rag", "collection '%s': embedding model: %s", name, err);
    return 0;
}

static int verb_create(const rag_args *a, slm_rag *r) {
    if (a->n_pos != 1) return cli_fail("rag", "usage: slm rag create NAME [--embed-model M.gguf]");
    char err[512];
    slm_rag_collection_opts o = {.embed_model = a->embed_model, .chunk_tokens = (int)a->chunk_tokens, .chunk_overlap = (int)a->overlap,
                                 .pii = a->pii};
    if (a->embed_model) { /* refuse a model that cannot embed now, not at the first ingest */
        slm_rag_embedder *e;
        if (slm_rag_embedder_open(a->embed_model, (int)a->threads, &e, err, sizeof err))
            return cli_fail("rag", "embedding model: %s", err);
        slm_rag_embedder_free(e);
    }
    if (slm_rag_collection_create(r, a->pos[0], &o, err, sizeof err)) return cli_fail("rag", "%s", err);
    if (!a->quiet) fprintf(stderr, "slm rag: created collection '%s'%s%s\n", a->pos[0], a->embed_model ? " with embeddings from " : "",
                           a->embed_model ? a->embed_model : "");
    return 0;
}

typedef struct progress {
    bool tty, quiet;
    int done, total;
    double t0;
} progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_file(void *user, const char *path, slm_rag_ingest_status st, const char *why, long long bytes) {
    (void)bytes;
    progress *p = user;
    p->done++;
    if (st == SLM_RAG_SKIPPED) {
        if (p->tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "slm rag: skipped %s: %s\n", path, why && *why ? why : "unreadable");
    }
    if (p->tty && !p->quiet) {
        fprintf(stderr, "\r\033[Kingest: %d files, %.1f s", p->done, now_s() - p->t0);
        fflush(stderr);
    }
}

static int verb_ingest(const rag_args *a, slm_rag *r) {
    if (a->n_pos < 2) return cli_fail("rag", "usage: slm rag ingest NAME PATH... [--sync]");
    slm_rag_db_collection c;
    slm_rag_embedder *emb = NULL;
    if (open_collection(a, r, a->pos[0], true, &c, &emb)) return 1;
    progress p = {.tty = isatty(2), .quiet = a->quiet, .t0 = now_s()};
    slm_rag_ingest_opts o = {.progress = on_file, .user = &p};
    slm_rag_ingest_stats st;
    char err[1024];
    int rc = slm_rag_ingest_paths(r, a->pos[0], a->pos + 1, a->n_pos - 1, a->sync, &o, emb, &st, err, sizeof err);
    slm_rag_embedder_free(emb);
    if (p.tty && !a->quiet) fputs("\r\033[K", stderr);
    if (rc) return cli_fail("rag", "%s", err);
    double dt = now_s() - p.t0;
    if (!a->quiet)
        fprintf(stderr, "slm rag: '%s': %d added, %d replaced, %d unchanged, %d skipped, %d removed; %lld chunks; %.1f s (%.2f MB/s)\n",
                a->pos[0], st.added, st.replaced, st.unchanged, st.skipped, st.removed, st.chunks, dt,
                dt > 0 ? (double)st.bytes / 1e6 / dt : 0.0);
    return 0;
}

static int verb_list(const rag_args *a, slm_rag *r) {
    char err[512];
    if (a->n_pos == 0) {
        slm_rag_db_collection *cs;
        int n = slm_rag_db_collection_list(slm_rag_store(r), &cs, err, sizeof err);
        if (n < 0) return cli_fail("rag", "%s", err);
        if (!a->json) printf("%-24s %8s %9s %12s  %s\n", "NAME", "DOCS", "CHUNKS", "BYTES", "EMBEDDING MODEL");
        for (int i = 0; i < n; i++) {
            if (a->json) {
                json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:s, s:i, s:i, s:i, s:s}", "name", cs[i].name, "documents", (json_int_t)cs[i].n_docs,
                                      "chunks", (json_int_t)cs[i].n_chunks, "bytes", (json_int_t)cs[i].n_bytes, "embed_model",
                                      cs[i].embed_model, "dim", cs[i].dim, "chunk_tokens", cs[i].chunk_tokens, "chunk_overlap",
                                      cs[i].chunk_overlap, "pii", cs[i].pii[0] ? cs[i].pii : "off");
                char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (s) puts(s);
                free(s);
                json_decref(o);
            } else {
                printf("%-24s %8lld %9lld %12lld  %s\n", cs[i].name, cs[i].n_docs, cs[i].n_chunks, cs[i].n_bytes,
                       cs[i].embed_model[0] ? cs[i].embed_model : "-");
            }
        }
        free(cs);
        return 0;
    }
    slm_rag_db_collection c;
    slm_rag_embedder *emb;
    if (open_collection(a, r, a->pos[0], false, &c, &emb)) return 1;
    slm_rag_db_document *ds;
    int n = slm_rag_db_document_list(slm_rag_store(r), c.id, &ds, err, sizeof err);
    if (n < 0) return cli_fail("rag", "%s", err);
    if (!a->json) printf("%-8s %-5s %10s %7s %6s  %s\n", "ID", "TYPE", "BYTES", "CHUNKS", "PAGES", "PATH");
    for (int i = 0; i < n; i++) {
        if (a->json) {
            json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:i, s:i, s:s}", "id", (json_int_t)ds[i].id, "name", ds[i].name, "path",
                                  ds[i].path, "format", ds[i].format, "bytes", (json_int_t)ds[i].size, "chunks", ds[i].n_chunks,
                                  "pages", ds[i].n_pages, "sha256", ds[i].hash);
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (s) puts(s);
            free(s);
            json_decref(o);
        } else {
            printf("%-8lld %-5s %10lld %7d %6d  %s\n", ds[i].id, ds[i].format, ds[i].size, ds[i].n_chunks, ds[i].n_pages, ds[i].path);
        }
    }
    free(ds);
    return 0;
}

static int verb_rm(const rag_args *a, slm_rag *r) {
    char err[512];
    if (a->n_pos == 1) {
        if (slm_rag_collection_drop(r, a->pos[0], err, sizeof err)) return cli_fail("rag", "%s", err);
        return 0;
    }
    if (a->n_pos != 2) return cli_fail("rag", "usage: slm rag rm NAME [DOC]");
    int f = slm_rag_document_remove(r, a->pos[0], a->pos[1], err, sizeof err);
    if (f < 0) return cli_fail("rag", "%s", err);
    if (f == 0) return cli_fail("rag", "collection '%s' has no document '%s'", a->pos[0], a->pos[1]);
    return 0;
}

static int search_opts(const rag_args *a, const slm_rag_db_collection *c, slm_rag_search_opts *o) {
    memset(o, 0, sizeof *o);
    int mode = a->mode ? slm_rag_mode_parse(a->mode) : (c->embed_model[0] ? SLM_RAG_HYBRID : SLM_RAG_BM25);
    if (mode < 0) return cli_fail("rag", "unknown mode '%s' (bm25, vector or hybrid)", a->mode);
    if (mode != SLM_RAG_BM25 && !c->embed_model[0])
        return cli_fail("rag", "collection '%s' has no embedding model: only --mode bm25", c->name);
    o->mode = (slm_rag_mode)mode;
    o->top_k = a->top > 0 ? (int)a->top : 10;
    o->k1 = a->k1;
    o->b = a->b;
    o->rrf_k = a->rrf_k;
    o->w_bm25 = a->w_bm25;
    o->w_vector = a->w_vector;
    o->candidates = (int)a->candidates;
    return 0;
}

static void print_hit_json(const slm_rag_hit *h, int rank) {
    json_t *o = json_pack("{s:i, s:f, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "rank", rank, "score", h->score, "document",
                          h->doc_name, "path", h->doc_path, "document_id", (json_int_t)h->doc_id, "chunk_id",
                          (json_int_t)h->chunk_id, "start", (json_int_t)h->start, "end", (json_int_t)h->end, "heading",
                          h->heading, "text", h->text);
    if (o && h->page > 0) json_object_set_new(o, "page", json_integer(h->page));
    if (o && h->bm25_rank) json_object_set_new(o, "bm25_rank", json_integer(h->bm25_rank));
    if (o && h->vector_rank) json_object_set_new(o, "vector_rank", json_integer(h->vector_rank));
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(o);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_trec(const rag_args *a, slm_rag *r, const char *name, slm_rag_search_opts *o, slm_rag_embedder *emb) {
    FILE *fp = strcmp(a->queries, "-") == 0 ? stdin : fopen(a->queries, "r");
    if (!fp) return cli_fail("rag", "cannot open %s", a->queries);
    o->per_document = true;
    if (a->top <= 0) o->top_k = 100;
    char *line = NULL, err[1024];
    size_t cap = 0, n_lat = 0, cap_lat = 0;
    double *lat = NULL;
    long len;
    int rc = 0, line_no = 0;
    while (rc == 0 && (len = cli_read_line("rag", fp, CLI_MAX_LINE_BYTES, &line, &cap)) >= 0) {
        line_no++;
        if (len == 0) continue;
        json_error_t je;
        json_t *q = json_loadb(line, (size_t)len, 0, &je);
        json_t *id = q ? json_object_get(q, "id") : NULL, *text = q ? json_object_get(q, "text") : NULL;
        char idbuf[64];
        if (id && json_is_integer(id)) snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(id));
        else if (id && json_is_string(id) && json_string_length(id) < sizeof idbuf && !strpbrk(json_string_value(id), " \t\r\n"))
            snprintf(idbuf, sizeof idbuf, "%s", json_string_value(id));
        else id = NULL;
        if (!q || !id || !json_is_string(text)) {
            json_decref(q);
            rc = cli_fail("rag", "%s line %d: expected {\"id\": ..., \"text\": \"...\"}", a->queries, line_no);
            break;
        }
        slm_rag_hit *h;
        double t0 = now_s();
        int n = slm_rag_search(r, name, json_string_value(text), o, emb, &h, err, sizeof err);
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 256;
            double *p = realloc(lat, sizeof *p * cap_lat);
            if (!p) n = -1, snprintf(err, sizeof err, "out of memory");
            else lat = p;
        }
        if (n >= 0) lat[n_lat++] = (now_s() - t0) * 1e3;
        if (n < 0) rc = cli_fail("rag", "query %s: %s", idbuf, err);
        for (int i = 0; i < n; i++) printf("%s Q0 %s %d %.6f %s\n", idbuf, h[i].doc_name, i + 1, h[i].score, a->trec);
        slm_rag_hits_free(h, n > 0 ? n : 0);
        json_decref(q);
    }
    if (len == -2) rc = 1;
    if (a->stats && n_lat > 0) {
        qsort(lat, n_lat, sizeof *lat, cmp_double);
        double sum = 0;
        for (size_t i = 0; i < n_lat; i++) sum += lat[i];
        fprintf(stderr, "slm rag: %zu queries, latency mean %.2f ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", n_lat,
                sum / (double)n_lat, lat[n_lat / 2], lat[(size_t)((double)(n_lat - 1) * 0.99)], lat[n_lat - 1]);
    }
    free(lat);
    free(line);
    if (fp != stdin) fclose(fp);
    return rc;
}

static int verb_search(const rag_args *a, slm_rag *r) {
    bool batch = a->queries || a->trec;
    if (batch && (!a->queries || !a->trec || a->n_pos != 1))
        return cli_fail("rag", "usage: slm rag search NAME --queries Q.jsonl --trec TAG");
    if (!batch && a->n_pos != 2) return cli_fail("rag", "usage: slm rag search NAME \"QUERY\" [--top K] [--mode M]");
    slm_rag_db_collection c;
    slm_rag_embedder *emb = NULL;
    slm_rag_search_opts o;
    if (open_collection(a, r, a->pos[0], false, &c, &emb) || search_opts(a, &c, &o)) return 1;
    if (o.mode != SLM_RAG_BM25 && open_collection(a, r, a->pos[0], true, &c, &emb)) return 1;
    int rc = 0;
    if (batch) {
        rc = run_trec(a, r, a->pos[0], &o, emb);
    } else {
        char err[1024];
        slm_rag_hit *h;
        int n = slm_rag_search(r, a->pos[0], a->pos[1], &o, emb, &h, err, sizeof err);
        if (n < 0) rc = cli_fail("rag", "%s", err);
        for (int i = 0; i < n; i++) {
            if (a->json) {
                print_hit_json(&h[i], i + 1);
                continue;
            }
            printf("%2d. %.4f  %s", i + 1, h[i].score, h[i].doc_name);
            if (h[i].page > 0) printf(" p.%d", h[i].page);
            if (h[i].heading[0]) printf(" — %s", h[i].heading);
            printf(" [chunk %lld, bytes %lld-%lld]\n    ", h[i].chunk_id, h[i].start, h[i].end);
            /* one line of the text, at most 200 bytes, cut at a character boundary */
            size_t k = 0;
            for (; h[i].text[k] && k < 200; k++) putchar(h[i].text[k] == '\n' || h[i].text[k] == '\r' || h[i].text[k] == '\t' ? ' ' : h[i].text[k]);
            while (h[i].text[k] && ((unsigned char)h[i].text[k] & 0xC0) == 0x80) putchar(h[i].text[k++]);
            puts(h[i].text[k] ? " ..." : "");
        }
        slm_rag_hits_free(h, n > 0 ? n : 0);
    }
    slm_rag_embedder_free(emb);
    if (fflush(stdout) != 0) rc = cli_fail("rag", "cannot write the output");
    return rc;
}

static int rag_ask(const rag_args *a, slm_rag *r);

/* Everything decidable from the arguments alone, before the data directory is opened (a mistyped
 * command must not create or touch a store). */
static int check_args(const char *verb, const rag_args *a) {
    bool create = strcmp(verb, "create") == 0, ingest = strcmp(verb, "ingest") == 0 || strcmp(verb, "add") == 0,
         list = strcmp(verb, "list") == 0 || strcmp(verb, "ls") == 0, rm = strcmp(verb, "rm") == 0,
         search = strcmp(verb, "search") == 0, ask = strcmp(verb, "ask") == 0;
    if (!create && !ingest && !list && !rm && !search && !ask)
        return cli_fail("rag", "unknown verb '%s' (create, ingest, list, rm, search, ask)", verb);
    if (create && a->n_pos != 1) return cli_fail("rag", "usage: slm rag create NAME [--embed-model M.gguf]");
    if (ingest && a->n_pos < 2) return cli_fail("rag", "usage: slm rag ingest NAME PATH... [--sync]");
    if (list && a->n_pos > 1) return cli_fail("rag", "usage: slm rag list [NAME] [--json]");
    if (rm && (a->n_pos < 1 || a->n_pos > 2)) return cli_fail("rag", "usage: slm rag rm NAME [DOC]");
    if (search) {
        bool batch = a->queries || a->trec;
        if (batch && (!a->queries || !a->trec || a->n_pos != 1))
            return cli_fail("rag", "usage: slm rag search NAME --queries Q.jsonl --trec TAG");
        if (!batch && a->n_pos != 2) return cli_fail("rag", "usage: slm rag search NAME \"QUERY\" [--top K] [--mode M]");
    }
    if (ask && a->n_pos != 2) return cli_fail("rag", "usage: slm rag ask NAME \"QUESTION\" --model GEN.gguf");
    if (ask && !a->model) return cli_fail("rag", "ask needs a generative model (--model GEN.gguf)");
    if (a->mode && slm_rag_mode_parse(a->mode) < 0) return cli_fail("rag", "unknown mode '%s' (bm25, vector or hybrid)", a->mode);
    if (a->pii && !create) return cli_fail("rag", "--pii is an option of create");
    if (a->pii && strcmp(a->pii, "off") != 0 && strcmp(a->pii, "mask") != 0)
        return cli_fail("rag", "--pii '%s': expected off or mask", a->pii);
    if (a->n_pos > 0 && !slm_rag_name_valid(a->pos[0]))
        return cli_fail("rag", "invalid collection name '%.80s' (1-63 of A-Z a-z 0-9 _ . -, not starting with . or -)", a->pos[0]);
    return 0;
}

int cmd_rag(int argc, char **argv) {
    int status;
    if (cli_usage(argc, argv, usage_text, &status)) return status;
    const char *verb = argv[1];
    rag_args a;
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(usage_text, stdout);
            return 0;
        }
    if (parse_args(argc, argv, &a) || check_args(verb, &a)) return 1;
    int (*fn)(const rag_args *, slm_rag *) = NULL;
    if (strcmp(verb, "create") == 0) fn = verb_create;
    else if (strcmp(verb, "ingest") == 0 || strcmp(verb, "add") == 0) fn = verb_ingest;
    else if (strcmp(verb, "list") == 0 || strcmp(verb, "ls") == 0) fn = verb_list;
    else if (strcmp(verb, "rm") == 0) fn = verb_rm;
    else if (strcmp(verb, "search") == 0) fn = verb_search;
    else if (strcmp(verb, "ask") == 0) fn = rag_ask;
    else return cli_fail("rag", "unknown verb '%s' (create, ingest, list, rm, search, ask)", verb);
    slm_rag *r;
    if (open_rag(&a, &r)) return 1;
    int rc = fn(&a, r);
    slm_rag_close(r);
    return rc;
}

typedef struct answer_sink {
    char *text;
    size_t len, cap;
    bool echo, oom;
} answer_sink;

static bool on_answer(void *user, const char *text, size_t len) {
    answer_sink *s = user;
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + len + 1) cap *= 2;
        char *p = realloc(s->text, cap);
        if (!p) {
            s->oom = true;
            return false;
        }
        s->text = p;
        s->cap = cap;
    }
    memcpy(s->text + s->len, text, len);
    s->len += len;
    s->text[s->len] = 0;
    if (s->echo) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return true;
}

static int rag_ask(const rag_args *a, slm_rag *r) {
    if (a->n_pos != 2) return cli_fail("rag", "usage: slm rag ask NAME \"QUESTION\" --model GEN.gguf");
    if (!a->model) return cli_fail("rag", "ask needs a generative model (--model GEN.gguf)");
    slm_rag_db_collection c;
    slm_rag_embedder *emb = NULL;
    slm_rag_search_opts o;
    if (open_collection(a, r, a->pos[0], false, &c, &emb) || search_opts(a, &c, &o)) return 1;
    if (o.mode != SLM_RAG_BM25 && open_collection(a, r, a->pos[0], true, &c, &emb)) return 1;
    if (a->top <= 0) o.top_k = 5;
    char err[1024];
    slm_rag_hit *h = NULL;
    int n = slm_rag_search(r, a->pos[0], a->pos[1], &o, emb, &h, err, sizeof err);
    slm_rag_embedder_free(emb);
    if (n < 0) return cli_fail("rag", "%s", err);
    if (n == 0) {
        slm_rag_hits_free(h, 0);
        return cli_fail("rag", "nothing in '%s' matches the question", a->pos[0]);
    }
    int rc = 1;
    char *system = NULL, *gbnf = NULL, *cites = NULL;
    slm_model *m = NULL;
    slm_context *ctx = NULL;
    slm_sampler *smp = NULL;
    slm_grammar *g = NULL;
    slm_token *ids = NULL;
    answer_sink sink = {.echo = !a->json};
    cli_engine_opts eo = {.model_path = a->model, .n_threads = (int)a->threads};
    if (slm_rag_prompt(h, n, &system, err, sizeof err) || slm_rag_citation_grammar(n, &gbnf, err, sizeof err)) {
        cli_fail("rag", "%s", err);
        goto out;
    }
    if (cli_engine_open("rag", &eo, false, &m, &ctx)) goto out;
    slm_chat_message msgs[2] = {{"system", system}, {"user", a->pos[1]}};
    int n_ids = 0;
    if (slm_chat_tokenize(m, NULL, msgs, 2, true, true, &ids, &n_ids, NULL, err, sizeof err)) {
        cli_fail("rag", "%s", err);
        goto out;
    }
    slm_sampler_params sp = slm_sampler_default_params();
    sp.temperature = 0;
    if (slm_sampler_new(m, &sp, &smp, err, sizeof err) || slm_grammar_compile(m, gbnf, &g, err, sizeof err)) {
        cli_fail("rag", "%s", err);
        goto out;
    }
    slm_sampler_set_grammar(smp, g);
    slm_generate_params gp = {.max_tokens = (int)a->max_tokens};
    slm_generate_result res;
    if (slm_generate(ctx, smp, ids, n_ids, &gp, on_answer, &sink, &res, err, sizeof err) || sink.oom) {
        cli_fail("rag", "%s", sink.oom ? "out of memory" : err);
        goto out;
    }
    if (slm_rag_citations_json(r, h, n, sink.text ? sink.text : "", &cites, err, sizeof err)) {
        cli_fail("rag", "%s", err);
        goto out;
    }
    if (a->json) {
        json_error_t je;
        json_t *o2 = json_pack("{s:s%, s:o, s:s}", "answer", sink.text ? sink.text : "", sink.len, "citations",
                               json_loads(cites, 0, &je), "finish_reason", res.finish_reason);
        char *s = o2 ? json_dumps(o2, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (s) puts(s);
        free(s);
        json_decref(o2);
    } else {
        json_error_t je;
        json_t *arr = json_loads(cites, 0, &je);
        printf("\n\n");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            const char *quote = json_string_value(json_object_get(v, "quote"));
            printf("[%lld] %s", (long long)json_integer_value(json_object_get(v, "index")),
                   json_string_value(json_object_get(v, "document")));
            if (json_object_get(v, "page")) printf(" p.%lld", (long long)json_integer_value(json_object_get(v, "page")));
            printf(" (chunk %lld, bytes %lld-%lld): %.120s%s\n", (long long)json_integer_value(json_object_get(v, "chunk_id")),
                   (long long)json_integer_value(json_object_get(v, "start")),
                   (long long)json_integer_value(json_object_get(v, "end")), quote ? quote : "",
                   quote && strlen(quote) > 120 ? "..." : "");
        }
        json_decref(arr);
    }
    rc = fflush(stdout) == 0 ? 0 : cli_fail("rag", "cannot write the output");
out:
    free(system);
    free(gbnf);
    free(cites);
    free(ids);
    free(sink.text);
    slm_sampler_free(smp);
    slm_grammar_free(g);
    slm_context_free(ctx);
    slm_model_free(m);
    slm_rag_hits_free(h, n);
    return rc;
}
