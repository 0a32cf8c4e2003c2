/* Retrieval: chunking, the FTS5 query, RRF, f16 and SIMD dot products against double, top-k, the
 * store (ingest, incremental, replace, remove, search), citations checked against the stored text,
 * the citation grammar, and vector search against a brute-force double search (synthetic model). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "rag/rag_internal.h"
#include "slm_rag.h"
#include "test.h"

static char tmp_dir[256];

static void test_chunking(void) {
    const char *md =
        "# Guide\n\nIntro paragraph one.\n\n## Setup\n\nInstall the thing.\nThen run it.\n\n## Use\n\nCall it.\n";
    rag_chunk_span *c;
    int n = rag_chunk(md, strlen(md), false, true, 256, 32, &c);
    CHECK(n == 3);
    if (n == 3) {
        CHECK(strncmp(md + c[0].start, "# Guide", 7) == 0);
        CHECK(strcmp(c[0].heading, "Guide") == 0);
        CHECK(strcmp(c[1].heading, "Guide > Setup") == 0);
        CHECK(strncmp(md + c[1].start, "## Setup", 8) == 0);
        CHECK(md[c[1].end - 1] == '.' && strstr(md + c[1].start, "Then run it.") == md + c[1].end - 12);
        CHECK(strcmp(c[2].heading, "Guide > Use") == 0);
        CHECK(c[2].page == 0);
    }
    rag_chunks_free(c, n);

    /* pages: a chunk never spans a page break; pages count from 1 */
    const char *paged = "first page text\n\fsecond page\n\f\fafter an empty page";
    n = rag_chunk(paged, strlen(paged), true, false, 256, 0, &c);
    CHECK(n == 3);
    if (n == 3) CHECK(c[0].page == 1 && c[1].page == 2 && c[2].page == 4);
    rag_chunks_free(c, n);

    /* a long paragraph: chunks at most target + overlap bytes, covering every word, contiguous text */
    char big[20000];
    size_t len = 0;
    for (int i = 0; len + 40 < sizeof big; i++) len += (size_t)snprintf(big + len, sizeof big - len, "word%d is here. ", i);
    n = rag_chunk(big, len, false, false, 64, 8, &c); /* 256-byte chunks, 32-byte overlap */
    CHECK(n > 60);
    bool ok = true;
    size_t covered = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].end - c[i].start > 256 + 32) ok = false;
        if (c[i].start > covered + 1) ok = false; /* no gap beyond the separating space */
        if (i > 0 && c[i].start >= c[i - 1].end) ok = false; /* overlaps the previous chunk */
        if (c[i].end > covered) covered = c[i].end;
    }
    CHECK(ok);
    CHECK(covered >= len - 1);
    rag_chunks_free(c, n);

    /* empty and whitespace-only texts give no chunks */
    CHECK(rag_chunk("", 0, false, true, 256, 32, &c) == 0);
    rag_chunks_free(c, 0);
    CHECK(rag_chunk(" \n\n\t \f ", 7, true, true, 256, 32, &c) == 0);
    rag_chunks_free(c, 0);
}

static void test_fts_query(void) {
    char *q = slm_rag_fts_query("What's \"NEAR\" (a OR b)* -x: é");
    CHECK(q && strcmp(q, "\"What\" OR \"s\" OR \"NEAR\" OR \"a\" OR \"OR\" OR \"b\" OR \"x\" OR \"é\"") == 0);
    free(q);
    q = slm_rag_fts_query("?!. --");
    CHECK(q && strcmp(q, "") == 0);
    free(q);
}

static void test_rrf(void) {
    long long a[] = {10, 20, 30}, b[] = {30, 40};
    long long *ids;
    double *sc;
    int n = slm_rag_rrf(a, 3, b, 2, 1.0, 2.0, 60, &ids, &sc);
    CHECK(n == 4);
    /* 30: 1/63 + 2/61; 40: 2/62; 10: 1/61; 20: 1/62 */
    double want[][2] = {{30, 1.0 / 63 + 2.0 / 61}, {40, 2.0 / 62}, {10, 1.0 / 61}, {20, 1.0 / 62}};
    for (int i = 0; i < n && i < 4; i++) {
        CHECKF(ids[i] == (long long)want[i][0], "rank %d: id %lld", i, ids[i]);
        CHECK(fabs(sc[i] - want[i][1]) < 1e-15);
    }
    free(ids);
    free(sc);
    /* ties by id; an empty side */
    long long c[] = {5, 3};
    n = slm_rag_rrf(c, 2, NULL, 0, 1, 1, 0.0, &ids, &sc);
    CHECK(n == 2 && ids[0] == 5 && sc[0] == 1.0 && sc[1] == 0.5);
    free(ids);
    free(sc);
    long long d[] = {7}, e[] = {9};
    n = slm_rag_rrf(d, 1, e, 1, 1, 1, 60, &ids, &sc);
    CHECK(n == 2 && ids[0] == 7 && ids[1] == 9 && sc[0] == sc[1]);
    free(ids);
    free(sc);
}

static void test_vectors(void) {
    /* f16 conversion: exact for representable values, round to nearest even, inf, subnormals */
    CHECK(slm_rag_f32_to_f16(1.0f) == 0x3C00 && slm_rag_f16_to_f32(0x3C00) == 1.0f);
    CHECK(slm_rag_f32_to_f16(-2.5f) == 0xC100);
    CHECK(slm_rag_f32_to_f16(65504.0f) == 0x7BFF && slm_rag_f32_to_f16(1e6f) == 0x7C00);
    CHECK(slm_rag_f32_to_f16(5.9604645e-8f) == 0x0001 && slm_rag_f16_to_f32(0x0001) == 5.9604645e-8f);
    CHECK(slm_rag_f32_to_f16(1.0f + 1.0f / 2048) == 0x3C00); /* halfway: even */
    CHECK(slm_rag_f32_to_f16(1.0f + 3.0f / 2048) == 0x3C02);
    bool round_trip = true;
    for (uint32_t h = 0; h < 0x7C00; h++)
        if (slm_rag_f32_to_f16(slm_rag_f16_to_f32((uint16_t)h)) != h) round_trip = false;
    CHECK(round_trip);

    /* SIMD dot vs scalar vs double, odd sizes for the tails */
    int dims[] = {1, 7, 16, 33, 384, 385};
    srand(7);
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        int dim = dims[t];
        size_t n = 37;
        float *q = malloc(sizeof *q * (size_t)dim), *s1 = malloc(sizeof *s1 * n), *s2 = malloc(sizeof *s2 * n);
        uint16_t *v = malloc(sizeof *v * n * (size_t)dim);
        for (int k = 0; k < dim; k++) q[k] = (float)rand() / (float)RAND_MAX - 0.5f;
        for (size_t i = 0; i < n * (size_t)dim; i++) v[i] = slm_rag_f32_to_f16((float)rand() / (float)RAND_MAX - 0.5f);
        slm_rag_dot_f16(q, v, n, dim, s1);
        slm_rag_dot_f16_scalar(q, v, n, dim, s2);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double d = 0;
            for (int k = 0; k < dim; k++) d += (double)q[k] * slm_rag_f16_to_f32(v[i * (size_t)dim + k]);
            double e1 = fabs(s1[i] - d), e2 = fabs(s2[i] - d);
            if (e1 > worst) worst = e1;
            if (e2 > worst) worst = e2;
        }
        CHECKF(worst < 1e-4 * sqrt(dim), "dim %d: error %g (isa %s)", dim, worst, slm_isa_name());
        free(q), free(s1), free(s2), free(v);
    }

    /* top-k equals a full sort (score desc, index asc), NaN never chosen */
    float sc[500];
    for (int i = 0; i < 500; i++) sc[i] = (float)(rand() % 50);
    sc[17] = NAN;
    int top[50];
    int n = slm_rag_top_k(sc, 500, 50, top);
    CHECK(n == 50);
    int order[500], m = 0;
    for (int i = 0; i < 500; i++)
        if (!isnan(sc[i])) order[m++] = i;
    for (int i = 0; i < m; i++) /* insertion sort by (score desc, index asc) */
        for (int j = i; j > 0 && (sc[order[j]] > sc[order[j - 1]] ||
                                  (sc[order[j]] == sc[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    bool same = true;
    for (int i = 0; i < n; i++)
        if (top[i] != order[i]) same = false;
    CHECK(same);
    CHECK(slm_rag_top_k(sc, 3, 10, top) == 3);
}

static int ingest_text(slm_rag *r, const char *coll, const char *name, const char *text) {
    slm_rag_db_collection c;
    char err[512];
    if (slm_rag_collection_get(r, coll, &c, err, sizeof err) != 1) return -1;
    int s = slm_rag_ingest_bytes(r, &c, name, NULL, text, strlen(text), NULL, NULL, err, sizeof err);
    if (s < 0 || s == SLM_RAG_SKIPPED) fprintf(stderr, "ingest %s: %s\n", name, err);
    return s;
}

static void test_store(void) {
    char err[512];
    slm_rag *r;
    CHECK(slm_rag_open(tmp_dir, &r, err, sizeof err) == 0);
    if (!r) return;
    CHECK(slm_rag_collection_create(r, "docs", NULL, err, sizeof err) == 0);
    CHECK(slm_rag_collection_create(r, "docs", NULL, err, sizeof err) < 0 && strstr(err, "exists"));
    CHECK(slm_rag_collection_create(r, "../x", NULL, err, sizeof err) < 0 && strstr(err, "invalid collection name"));
    CHECK(slm_rag_collection_create(r, "", NULL, err, sizeof err) < 0);

    CHECK(ingest_text(r, "docs", "engines.md", "# Engines\n\nThe turbine compresses air before combustion.\n\n## Fuel\n\nKerosene burns in the combustor.\n") == SLM_RAG_ADDED);
    CHECK(ingest_text(r, "docs", "wings.txt", "Wings make lift.\n\nA swept wing delays compressibility effects.\n") == SLM_RAG_ADDED);
    CHECK(ingest_text(r, "docs", "wings.txt", "Wings make lift.\n\nA swept wing delays compressibility effects.\n") == SLM_RAG_UNCHANGED);
    /* hostile names and bytes are skipped with a reason, nothing stored */
    slm_rag_db_collection c;
    CHECK(slm_rag_collection_get(r, "docs", &c, err, sizeof err) == 1);
    CHECK(slm_rag_ingest_bytes(r, &c, "../etc/passwd.txt", NULL, "x", 1, NULL, NULL, err, sizeof err) == SLM_RAG_SKIPPED &&
          strstr(err, "plain file name"));
    CHECK(slm_rag_ingest_bytes(r, &c, "junk.txt", NULL, "a\0b\x01\xff", 5, NULL, NULL, err, sizeof err) == SLM_RAG_SKIPPED &&
          strstr(err, "binary"));
    CHECK(slm_rag_ingest_bytes(r, &c, "x.exe", NULL, "MZ", 2, NULL, NULL, err, sizeof err) == SLM_RAG_SKIPPED &&
          strstr(err, "unsupported"));
    CHECK(slm_rag_collection_get(r, "docs", &c, err, sizeof err) == 1 && c.n_docs == 2 && c.n_chunks == 3);

    slm_rag_hit *h;
    slm_rag_search_opts o = {.mode = SLM_RAG_BM25, .top_k = 5};
    int n = slm_rag_search(r, "docs", "Which fuel burns in the combustor?", &o, NULL, &h, err, sizeof err);
    CHECKF(n >= 1, "%s", err);
    if (n >= 1) {
        CHECK(strcmp(h[0].doc_name, "engines") == 0);
        CHECK(strcmp(h[0].heading, "Engines > Fuel") == 0);
        CHECK(strncmp(h[0].text, "## Fuel", 7) == 0 && h[0].bm25_rank == 1);
        /* citations: [1] is the fuel chunk, quoted verbatim from the stored text at its offsets */
        char *json;
        CHECK(slm_rag_citations_json(r, h, n, "Kerosene [1], see also [9] and [1].", &json, err, sizeof err) == 0);
        CHECKF(json && strstr(json, "\"index\":1") && !strstr(json, "\"index\":9") && strstr(json, "\"quote\":\"## Fuel\\n\\nKerosene burns"),
               "%s", json ? json : err);
        free(json);
        char *text;
        size_t tlen;
        CHECK(slm_rag_db_document_text(slm_rag_store(r), h[0].doc_id, &text, &tlen, err, sizeof err) == 0);
        CHECK((size_t)h[0].end <= tlen && memcmp(text + h[0].start, h[0].text, (size_t)(h[0].end - h[0].start)) == 0);
        free(text);
        char *prompt;
        CHECK(slm_rag_prompt(h, n, &prompt, err, sizeof err) == 0 && strstr(prompt, "[1] engines — Engines > Fuel\n## Fuel"));
        slm_chat_message in[3] = {{"system", "Be brief."}, {"user", "fuel?"}, {"assistant", "x"}}, *outm;
        size_t n_out;
        char *sys;
        CHECK(strcmp(slm_rag_query_of(in, 3), "fuel?") == 0 && slm_rag_query_of(in + 2, 1) == NULL);
        CHECK(slm_rag_augment_messages(in, 3, h, n, &outm, &n_out, &sys, err, sizeof err) == 0);
        CHECK(n_out == 3 && strcmp(outm[0].role, "system") == 0 && strncmp(outm[0].content, prompt, strlen(prompt)) == 0 &&
              strcmp(outm[0].content + strlen(prompt), "\nBe brief.") == 0 && outm[1].content == in[1].content);
        free(outm);
        free(sys);
        CHECK(slm_rag_augment_messages(in + 1, 1, h, n, &outm, &n_out, &sys, err, sizeof err) == 0);
        CHECK(n_out == 2 && strcmp(outm[0].content, prompt) == 0 && strcmp(outm[1].content, "fuel?") == 0);
        free(outm);
        free(sys);
        free(prompt);
    }
    slm_rag_hits_free(h, n);
    /* a query with no words matches nothing (and is no FTS5 syntax error) */
    CHECK(slm_rag_search(r, "docs", "\"*(", &o, NULL, &h, err, sizeof err) == 0);
    CHECK(slm_rag_search(r, "nope", "x", &o, NULL, &h, err, sizeof err) < 0 && strstr(err, "no collection"));
    /* vector mode without a model is an error naming the cause */
    o.mode = SLM_RAG_VECTOR;
    CHECK(slm_rag_search(r, "docs", "wing", &o, NULL, &h, err, sizeof err) < 0 && strstr(err, "no embedding model"));
    o.mode = SLM_RAG_BM25;

    /* replace: the old chunks are gone from the index */
    CHECK(ingest_text(r, "docs", "wings.txt", "Rotors of helicopters.\n") == SLM_RAG_REPLACED);
    n = slm_rag_search(r, "docs", "swept", &o, NULL, &h, err, sizeof err);
    CHECK(n == 0);
    slm_rag_hits_free(h, n);
    n = slm_rag_search(r, "docs", "helicopter", &o, NULL, &h, err, sizeof err); /* porter: helicopters → helicopt */
    CHECK(n == 1);
    slm_rag_hits_free(h, n);
    CHECK(slm_rag_document_remove(r, "docs", "wings", err, sizeof err) == 1);
    CHECK(slm_rag_document_remove(r, "docs", "wings", err, sizeof err) == 0);
    n = slm_rag_search(r, "docs", "helicopter", &o, NULL, &h, err, sizeof err);
    CHECK(n == 0);
    slm_rag_hits_free(h, n);
    CHECK(slm_rag_collection_drop(r, "docs", err, sizeof err) == 0);
    CHECK(slm_rag_collection_get(r, "docs", &c, err, sizeof err) == 0);
    slm_rag_close(r);
}

static void test_grammar(void) {
    char *g;
    CHECK(slm_rag_citation_grammar(3, &g, NULL, 0) == 0);
    CHECK(g && strstr(g, "cite ::= \"[\" (\"1\" | \"2\" | \"3\") \"]\""));
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/llama3-vocab.gguf", test_models_dir());
    slm_model *m = NULL;
    slm_model_params mp = {.vocab_only = true};
    if (access(path, R_OK) == 0 && slm_model_load(path, &mp, &m, err, sizeof err) == 0) {
        slm_grammar *gr = NULL;
        CHECKF(slm_grammar_compile(m, g, &gr, err, sizeof err) == 0, "%s", err);
        slm_grammar_free(gr);
        slm_model_free(m);
    } else {
        fprintf(stderr, "test_rag: %s absent, the citation grammar is not compiled\n", path);
    }
    free(g);
    CHECK(slm_rag_citation_grammar(0, &g, err, sizeof err) < 0);
}

/* vector search through a (synthetic) embedding model equals a brute-force double search */
static void test_vector_search(void) {
    char model[4200], err[512];
    snprintf(model, sizeof model, "%s/bge-small-q8_0.gguf", test_models_dir());
    if (access(model, R_OK) != 0) {
        fprintf(stderr, "test_rag: %s absent (scripts/gen-test-models.sh), vector search not tested\n", model);
        return;
    }
    slm_rag *r;
    slm_rag_embedder *e;
    CHECK(slm_rag_open(tmp_dir, &r, err, sizeof err) == 0);
    CHECKF(slm_rag_embedder_open(model, 2, &e, err, sizeof err) == 0, "%s", err);
    if (!e) {
        slm_rag_close(r);
        return;
    }
    slm_rag_collection_opts co = {.embed_model = model, .chunk_tokens = 16, .chunk_overlap = -1};
    CHECK(slm_rag_collection_create(r, "vec", &co, err, sizeof err) == 0);
    slm_rag_db_collection c;
    CHECK(slm_rag_collection_get(r, "vec", &c, err, sizeof err) == 1);
    const char *words[] = {"alpha", "beta", "gamma", "delta", "wing", "lift", "drag", "engine", "fuel", "rotor"};
    for (int d = 0; d < 12; d++) {
        char text[2048], name[32];
        size_t len = 0;
        for (int p = 0; p < 4; p++) {
            for (int w = 0; w < 9; w++) len += (size_t)snprintf(text + len, sizeof text - len, "%s ", words[(d * 7 + p * 3 + w * w) % 10]);
            len += (size_t)snprintf(text + len, sizeof text - len, "\n\n");
        }
        snprintf(name, sizeof name, "doc%02d.txt", d);
        int s = slm_rag_ingest_bytes(r, &c, name, NULL, text, len, NULL, e, err, sizeof err);
        CHECKF(s == SLM_RAG_ADDED, "%s", err);
    }
    CHECK(slm_rag_collection_get(r, "vec", &c, err, sizeof err) == 1 && c.dim == slm_rag_embedder_dim(e) && c.n_chunks >= 24);
    const char *query = "wing lift drag";
    slm_rag_search_opts o = {.mode = SLM_RAG_VECTOR, .top_k = 10};
    slm_rag_hit *h;
    int n = slm_rag_search(r, "vec", query, &o, e, &h, err, sizeof err);
    CHECKF(n == 10, "%d: %s", n, err);
    /* brute force in double over the stored f16 vectors */
    int dim = c.dim;
    float *q = malloc(sizeof *q * (size_t)dim);
    size_t ql = strlen(query);
    CHECK(slm_rag_embed(e, &query, &ql, 1, q, err, sizeof err) == 0);
    long long *ids;
    uint16_t *vecs;
    long long nv = slm_rag_db_vectors(slm_rag_store(r), c.id, dim, &ids, &vecs, err, sizeof err);
    CHECK(nv == c.n_chunks);
    double *ds = malloc(sizeof *ds * (size_t)nv);
    for (long long i = 0; i < nv; i++) {
        ds[i] = 0;
        for (int k = 0; k < dim; k++) ds[i] += (double)q[k] * slm_rag_f16_to_f32(vecs[i * dim + k]);
    }
    for (int i = 0; i < n; i++) {
        /* the i-th hit's double score is the i-th largest (within float rounding) */
        double mine = 0;
        int above = 0;
        for (long long j = 0; j < nv; j++)
            if (ids[j] == h[i].chunk_id) mine = ds[j];
        for (long long j = 0; j < nv; j++)
            if (ds[j] > mine + 1e-5) above++;
        CHECKF(above <= i, "hit %d (chunk %lld): %d chunks score higher in double", i, h[i].chunk_id, above);
        CHECK(fabs(h[i].score - mine) < 1e-4);
        if (i > 0) CHECK(h[i].score <= h[i - 1].score);
    }
    slm_rag_hits_free(h, n);
    /* hybrid: the fused order follows the formula over the two rankings */
    o.mode = SLM_RAG_HYBRID;
    o.candidates = 100;
    n = slm_rag_search(r, "vec", query, &o, e, &h, err, sizeof err);
    CHECK(n == 10);
    for (int i = 0; i < n; i++) {
        double want = (h[i].bm25_rank ? 1.0 / (60 + h[i].bm25_rank) : 0) + (h[i].vector_rank ? 1.0 / (60 + h[i].vector_rank) : 0);
        CHECKF(fabs(h[i].score - want) < 1e-12, "hit %d: %g vs %g", i, h[i].score, want);
    }
    slm_rag_hits_free(h, n);
    /* a second handle shares the vectors the first one read; a change gives both a new copy */
    char key[PATH_MAX];
    CHECK(realpath(tmp_dir, key) != NULL);
    slm_rag *r2;
    CHECK(slm_rag_open(tmp_dir, &r2, err, sizeof err) == 0);
    rag_vectors *v1 = NULL, *v2 = NULL, *v3 = NULL;
    CHECK(rag_vectors_get(slm_rag_store(r), key, &c, &v1, err, sizeof err) == 0);
    CHECK(rag_vectors_get(slm_rag_store(r2), key, &c, &v2, err, sizeof err) == 0);
    CHECK(v1 && v1 == v2 && v1->n == c.n_chunks && v1->refs >= 2);
    CHECK(slm_rag_ingest_bytes(r, &c, "late.txt", NULL, "rotor rotor fuel\n", 17, NULL, e, err, sizeof err) == SLM_RAG_ADDED);
    slm_rag_db_collection c2;
    CHECK(slm_rag_collection_get(r2, "vec", &c2, err, sizeof err) == 1 && c2.n_chunks == c.n_chunks + 1);
    CHECK(rag_vectors_get(slm_rag_store(r2), key, &c2, &v3, err, sizeof err) == 0);
    CHECK(v3 && v3 != v1 && v3->n == c2.n_chunks);
    rag_vectors_put(v1);
    rag_vectors_put(v2);
    rag_vectors_put(v3);
    o.mode = SLM_RAG_VECTOR;
    n = slm_rag_search(r2, "vec", "rotor rotor fuel", &o, e, &h, err, sizeof err);
    CHECK(n == 10);
    slm_rag_hits_free(h, n);
    slm_rag_close(r2);
    free(q), free(ids), free(vecs), free(ds);
    slm_rag_embedder_free(e);
    slm_rag_close(r);
}

/* A minimal PDF with one text line per page (offsets in the xref computed as written). */
static size_t make_pdf(char *out, size_t cap, const char *const *pages, int n) {
    size_t off[64], len = 0;
    int obj = 0;
#define W(...) len += (size_t)snprintf(out + len, cap - len, __VA_ARGS__)
    W("%%PDF-1.4\n");
    off[++obj] = len;
    W("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    off[++obj] = len;
    W("2 0 obj << /Type /Pages /Count %d /Kids [", n);
    for (int i = 0; i < n; i++) W(" %d 0 R", 4 + 2 * i);
    W(" ] >> endobj\n");
    off[++obj] = len;
    W("3 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n");
    for (int i = 0; i < n; i++) {
        char stream[512];
        int sl = snprintf(stream, sizeof stream, "BT /F1 12 Tf 72 720 Td (%s) Tj ET", pages[i]);
        off[++obj] = len;
        W("%d 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >> endobj\n",
          obj, obj + 1);
        off[++obj] = len;
        W("%d 0 obj << /Length %d >> stream\n%s\nendstream endobj\n", obj, sl, stream);
    }
    size_t xref = len;
    W("xref\n0 %d\n0000000000 65535 f \n", obj + 1);
    for (int i = 1; i <= obj; i++) W("%010zu 00000 n \n", off[i]);
    W("trailer << /Size %d /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n", obj + 1, xref);
#undef W
    return len;
}

/* A zip holding one entry (deflated), written with libarchive; *out malloc'd. */
static size_t make_zip(const char *entry, const char *data, size_t len, size_t repeat, char **out) {
    size_t cap = len * repeat / 50 + (1 << 20), used = 0;
    *out = malloc(cap);
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_open_memory(a, *out, cap, &used);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, entry);
    archive_entry_set_size(e, (la_int64_t)(len * repeat));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    for (size_t i = 0; i < repeat; i++) archive_write_data(a, data, len);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return used;
}

static void test_extract(void) {
    char err[512];
    rag_text t;
    const char *html = "<html><head><title>Manual</title><style>p{x:1}</style><script>alert('x')</script></head>"
                       "<body><h1>Start</h1><p>Hello   <b>bold</b>\nworld.</p><pre>a  b\n c</pre><h2>Next &amp; last</h2>"
                       "<ul><li>one</li><li>two</li></ul></body></html>";
    CHECK(rag_extract("html", html, strlen(html), 1 << 20, &t, err, sizeof err) == 0);
    CHECKF(t.data && strcmp(t.data, "# Manual\n\n# Start\n\nHello bold world.\n\na  b\n c\n\n## Next & last\n\none\n\ntwo") == 0,
           "[%s]", t.data ? t.data : err);
    rag_text_free(&t);
    CHECK(rag_extract("html", "\0\1\2binary", 9, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "binary"));

    const char *pages[] = {"first page words", "second page words"};
    char pdf[8192];
    size_t pl = make_pdf(pdf, sizeof pdf, pages, 2);
    CHECKF(rag_extract("pdf", pdf, pl, 1 << 20, &t, err, sizeof err) == 0, "%s", err);
    CHECKF(t.data && t.n_pages == 2 && strstr(t.data, "first page words") && strchr(t.data, '\f') &&
               strstr(strchr(t.data, '\f'), "second page words"),
           "[%s]", t.data ? t.data : "");
    if (t.data) {
        rag_chunk_span *c;
        int n = rag_chunk(t.data, t.len, true, true, 256, 32, &c);
        CHECK(n == 2 && c[0].page == 1 && c[1].page == 2);
        rag_chunks_free(c, n);
    }
    rag_text_free(&t);
    CHECK(rag_extract("pdf", "hello, I am not a PDF", 21, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "not a PDF"));
    CHECK(rag_extract("pdf", "%PDF-1.4\ngarbage garbage", 24, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "PDF"));

    const char *docxml =
        "<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>"
        "<w:p><w:pPr><w:pStyle w:val=\"Heading1\"/></w:pPr><w:r><w:t>Intro</w:t></w:r></w:p>"
        "<w:p><w:r><w:t xml:space=\"preserve\">Some </w:t></w:r><w:r><w:t>text</w:t><w:tab/><w:t>here.</w:t></w:r></w:p>"
        "</w:body></w:document>";
    char *zip;
    size_t zl = make_zip("word/document.xml", docxml, strlen(docxml), 1, &zip);
    CHECKF(rag_extract("docx", zip, zl, 1 << 20, &t, err, sizeof err) == 0, "%s", err);
    CHECKF(t.data && strcmp(t.data, "# Intro\n\nSome text\there.") == 0, "[%s]", t.data ? t.data : "");
    rag_text_free(&t);
    free(zip);
    /* a zip bomb: 80 MB of spaces in a small archive stops at the limit */
    char spaces[65536];
    memset(spaces, ' ', sizeof spaces);
    zl = make_zip("word/document.xml", spaces, sizeof spaces, 1280, &zip);
    CHECK(zl < (1 << 20));
    CHECKF(rag_extract("docx", zip, zl, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "zip bomb"), "%s", err);
    free(zip);
    zl = make_zip("other.xml", "x", 1, 1, &zip);
    CHECK(rag_extract("docx", zip, zl, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "no word/document.xml"));
    free(zip);
    CHECK(rag_extract("docx", "PK\3\4junkjunkjunk", 16, 1 << 20, &t, err, sizeof err) < 0);
    CHECK(rag_extract("docx", "plain", 5, 1 << 20, &t, err, sizeof err) < 0 && strstr(err, "not a docx"));
    /* text over the limit is refused, not cut */
    CHECK(rag_extract("txt", "abcdef", 6, 4, &t, err, sizeof err) < 0 && strstr(err, "limit"));
    CHECK(rag_extract("txt", "\xEF\xBB\xBFok", 5, 4, &t, err, sizeof err) == 0 && t.len == 2);
    rag_text_free(&t);
    CHECK(rag_format_of("a/b.PDF") && strcmp(rag_format_of("a/b.PDF"), "pdf") == 0);
    CHECK(!rag_format_of("a.b/c") && !rag_format_of("x.exe") && !rag_format_of("noext."));
}

static bool collect_text(void *user, const char *text, size_t len) {
    struct {
        char *s;
        size_t *n;
    } *sk = user;
    if (*sk->n + len < 4095) {
        memcpy(sk->s + *sk->n, text, len);
        *sk->n += len;
        sk->s[*sk->n] = 0;
    }
    return true;
}

/* The citation grammar holds against a model pushed towards a citation that points nowhere: with
 * '[' and '9' favoured by a large bias, every '[' still opens [1], [2] or [3]. */
static void test_citation_constraint(void) {
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/tiny-smollm2-f32.gguf", test_models_dir());
    slm_model *m = NULL;
    if (access(path, R_OK) != 0 || slm_model_load(path, NULL, &m, err, sizeof err) != 0) {
        fprintf(stderr, "test_rag: %s absent, the citation constraint is not tested\n", path);
        return;
    }
    slm_context *ctx = NULL;
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    CHECK(slm_context_new(m, &cp, &ctx, err, sizeof err) == 0);
    slm_token open_t, nine_t;
    CHECK(slm_tokenize(m, "[", 1, false, false, &open_t, 1, err, sizeof err) == 1);
    CHECK(slm_tokenize(m, "9", 1, false, false, &nine_t, 1, err, sizeof err) == 1);
    slm_logit_bias bias[2] = {{open_t, 40}, {nine_t, 30}};
    slm_sampler_params sp = slm_sampler_default_params();
    sp.temperature = 0;
    sp.logit_bias = bias;
    sp.n_logit_bias = 2;
    slm_sampler *smp = NULL;
    char *gbnf = NULL;
    slm_grammar *g = NULL;
    CHECK(slm_sampler_new(m, &sp, &smp, err, sizeof err) == 0);
    CHECK(slm_rag_citation_grammar(3, &gbnf, err, sizeof err) == 0);
    CHECKF(slm_grammar_compile(m, gbnf, &g, err, sizeof err) == 0, "%s", err);
    if (ctx && smp && g) {
        slm_sampler_set_grammar(smp, g);
        slm_token prompt[4];
        int np = slm_tokenize(m, "Answer", 6, true, false, prompt, 4, err, sizeof err);
        char out[4096] = "";
        size_t len = 0;
        slm_generate_params gp = {.max_tokens = 40};
        slm_generate_result res;
        struct sink {
            char *s;
            size_t *n;
        } sk = {out, &len};


        CHECK(np > 0);
        CHECKF(slm_generate(ctx, smp, prompt, np, &gp, collect_text, &sk, &res, err, sizeof err) == 0, "%s", err);
        int opens = 0;
        bool ok = true;
        for (const char *p = out; (p = strchr(p, '[')); p++) {
            opens++;
            if (!(p[1] >= '1' && p[1] <= '3' && (p[2] == ']' || p[2] == 0))) ok = false;
        }
        CHECKF(opens >= 3 && ok, "opens %d: [%s]", opens, out);
    }
    free(gbnf);
    slm_grammar_free(g);
    slm_sampler_free(smp);
    slm_context_free(ctx);
    slm_model_free(m);
}


static double next_gauss(uint64_t *s) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        u[i] = ((double)((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* The approximate index: probing every list finds exactly what exhaustive search finds; probing the
 * default share finds most of the true top 10 on clustered vectors (the shape embeddings have). */
static void test_ivf(void) {
    enum { N = 12000, DIM = 48, CLUSTERS = 60, QUERIES = 40, K = 10 };
    uint16_t *vecs = malloc(sizeof *vecs * N * DIM);
    long long *ids = malloc(sizeof *ids * N);
    float *centers = malloc(sizeof *centers * CLUSTERS * DIM), v[DIM];
    uint64_t seed = 7;
    CHECK(vecs && ids && centers);
    if (!vecs || !ids || !centers) return;
    for (int c = 0; c < CLUSTERS * DIM; c++) centers[c] = (float)(next_gauss(&seed));
    for (int i = 0; i < N; i++) {
        const float *ctr = centers + (size_t)(i % CLUSTERS) * DIM;
        double ss = 0;
        for (int k = 0; k < DIM; k++) {
            v[k] = ctr[k] + 0.45f * (float)next_gauss(&seed);
            ss += (double)v[k] * v[k];
        }
        for (int k = 0; k < DIM; k++) vecs[(size_t)i * DIM + k] = slm_rag_f32_to_f16((float)(v[k] / sqrt(ss)));
        ids[i] = 1000 + i;
    }
    /* the exhaustive answer before the index reorders the arrays, as chunk ids */
    float *sc = malloc(sizeof *sc * N), queries[QUERIES][DIM];
    long long want[QUERIES][K], *pos = malloc(sizeof *pos * N);
    int top[K];
    CHECK(sc && pos);
    if (!sc || !pos) return;
    for (int q = 0; q < QUERIES; q++) {
        const float *ctr = centers + (size_t)((q * 7) % CLUSTERS) * DIM;
        for (int k = 0; k < DIM; k++) queries[q][k] = ctr[k] + 0.6f * (float)next_gauss(&seed);
        slm_rag_dot_f16(queries[q], vecs, N, DIM, sc);
        CHECK(slm_rag_top_k(sc, N, K, top) == K);
        for (int i = 0; i < K; i++) want[q][i] = ids[top[i]];
    }
    rag_ivf ix;
    CHECK(rag_ivf_build(&ix, vecs, ids, N, DIM, 0, 1) == 0);
    CHECK(ix.nlist == 109); /* sqrt(12000) */
    CHECK(ix.list_start[0] == 0);
    CHECK(ix.list_start[ix.nlist] == N);
    /* reordered, not lost: every id once, still next to its own vector */
    long long id_sum = 0;
    for (int i = 0; i < N; i++) id_sum += ids[i];
    CHECK(id_sum == (long long)N * 1000 + (long long)N * (N - 1) / 2);
    int found = 0;
    for (int q = 0; q < QUERIES; q++) {
        long long m = rag_ivf_candidates(&ix, queries[q], ix.nlist, vecs, sc, pos);
        CHECK(m == N);
        CHECK(slm_rag_top_k(sc, (size_t)m, K, top) == K);
        for (int i = 0; i < K; i++) CHECK(ids[pos[top[i]]] == want[q][i]);
        m = rag_ivf_candidates(&ix, queries[q], ix.nlist / RAG_IVF_PROBE_DIVISOR, vecs, sc, pos);
        CHECK(m > 0 && m < N / 4);
        int n = slm_rag_top_k(sc, (size_t)m, K, top);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < K; j++) found += ids[pos[top[i]]] == want[q][j];
    }
    double recall = (double)found / (QUERIES * K);
    printf("ivf: recall@10 %.3f probing %d of %d lists\n", recall, ix.nlist / RAG_IVF_PROBE_DIVISOR, ix.nlist);
    CHECK(recall >= 0.9);
    rag_ivf_free(&ix);
    free(sc);
    free(pos);
    free(vecs);
    free(ids);
    free(centers);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/slm_test_rag_%d", (int)getpid());
    test_chunking();
    test_fts_query();
    test_rrf();
    test_vectors();
    test_extract();
    test_store();
    test_grammar();
    test_citation_constraint();
    test_vector_search();
    test_ivf();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_report("test_rag");
}
