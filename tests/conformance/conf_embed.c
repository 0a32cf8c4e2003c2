/* Pooled embeddings of the encoder models (bert, nomic-bert) against llama.cpp
 * (../shared/reference/<model>/embeddings*.jsonl: 20 inputs, one per llama_decode, pooled and
 * L2-normalised), with the tolerances of the reference README:
 *   exact path vs embeddings_exact.jsonl: max |Δ| <= 1e-5 (nomic-bert, SiLU) or 5e-4 and cosine
 *     >= 0.99999 (bert, whose llama.cpp GELU is an f16 table);
 *   normal path, f16 weights vs embeddings.jsonl: max |Δ| <= 2e-3, cosine >= 0.9999;
 *   normal path, q8_0 weights: max |Δ| <= 0.03, cosine >= 0.99.
 * The ids of every input must equal llama.cpp's (add_special, no parse_special). All 20 inputs
 * also go through one batch of 20 sequences, which must give the one-per-decode vectors, and the
 * fast path's vectors (one per decode and batched: the float GEMM, blocked attention, vector GELU /
 * SwiGLU) must stay within the normal path's tolerance of slm's own f32 oracle (--exact).
 * F16 models on the AVX-512 path multiply through the int16 copies of their weights (kernels.h,
 * slm_weight_i16_bytes); they must have them there, and are then checked twice: with the int16
 * GEMM and, reloaded with SLM_NO_I16=1, with the f32 one (the path of the other ISAs).
 * Usage: conf_embed [model-id ...]  (default: every model below; SLM_TEST_QUICK=1 keeps the bge-small ones). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels_impl.h"
#include "model/model_impl.h"
#include "slm.h"
#include "test.h"

typedef struct model_case {
    const char *id;
    bool quantized, gelu;
    bool big; /* skipped in quick mode (SLM_TEST_QUICK=1) */
} model_case;

static const model_case cases[] = {
    {"bge-small-f16", false, true, false}, /* quick mode (sanitizers): the int16 GEMM in a forward pass */
    {"bge-small-q8_0", true, true, false},
    {"nomic-embed-f16", false, false, true},
    {"nomic-embed-q8_0", true, false, true},
};

#define MAX_INPUTS 32
#define MAX_IDS 512

typedef struct ref_input {
    slm_token ids[MAX_IDS];
    int n_ids;
    float *emb;
} ref_input;

/* Reads embeddings*.jsonl; returns the number of inputs, -1 on error. */
static int load_refs(const char *path, int n_embd, ref_input *in) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (n < MAX_INPUTS && getline(&line, &cap, fp) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) continue;
        json_t *ids = json_object_get(j, "ids"), *emb = json_object_get(j, "embedding");
        in[n].n_ids = 0;
        for (size_t i = 0; i < json_array_size(ids) && i < MAX_IDS; i++)
            in[n].ids[in[n].n_ids++] = (slm_token)json_integer_value(json_array_get(ids, i));
        in[n].emb = calloc((size_t)n_embd, sizeof(float));
        for (size_t i = 0; i < json_array_size(emb) && i < (size_t)n_embd; i++)
            in[n].emb[i] = (float)json_number_value(json_array_get(emb, i));
        CHECKF(json_array_size(emb) == (size_t)n_embd, "%s line %d: %zu values, n_embd %d", path, n, json_array_size(emb),
               n_embd);
        n++;
        json_decref(j);
    }
    free(line);
    fclose(fp);
    return n;
}

/* Tokenizes the inputs' texts and checks the ids against the reference. */
static void check_ids(const slm_model *m, const char *id, const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) return;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, same = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) continue;
        const char *text = json_string_value(json_object_get(j, "text"));
        json_t *ids = json_object_get(j, "ids");
        slm_token got[MAX_IDS];
        char err[256];
        int k = text ? slm_tokenize(m, text, strlen(text), true, false, got, MAX_IDS, err, sizeof err) : -1;
        bool ok = k >= 0 && (size_t)k == json_array_size(ids);
        for (int i = 0; ok && i < k; i++) ok = got[i] == json_integer_value(json_array_get(ids, (size_t)i));
        CHECKF(ok, "%s input %d: tokenization differs from llama.cpp", id, n);
        same += ok;
        n++;
        json_decref(j);
    }
    free(line);
    fclose(fp);
    fprintf(stderr, "%-18s ids %d/%d\n", id, same, n);
}

static void compare(const float *got, const float *want, int n, double *max_d, double *min_cos) {
    double dot = 0, a2 = 0, b2 = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > *max_d) *max_d = d;
        dot += (double)got[i] * want[i];
        a2 += (double)got[i] * got[i];
        b2 += (double)want[i] * want[i];
    }
    double cos = dot / sqrt(a2 * b2 + 1e-300);
    if (cos < *min_cos) *min_cos = cos;
}

/* oracle: the exact path's vectors, written by the exact run (n_oracle of them) and compared with
 * by the fast one. */
static void run_path(slm_model *m, const model_case *mc, const char *dir, bool exact, const char *label, float *oracle,
                     int *n_oracle) {
    int E = slm_model_n_embd(m);
    char path[8300], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, exact ? "embeddings_exact.jsonl" : "embeddings.jsonl");
    ref_input *in = calloc(MAX_INPUTS, sizeof *in);
    int n = in ? load_refs(path, E, in) : -1;
    CHECKF(n > 0, "%s: cannot read %s", mc->id, path);
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = slm_model_n_ctx_train(m) < 512 ? slm_model_n_ctx_train(m) : 512;
    cp.n_batch = 2048;
    cp.n_seq = MAX_INPUTS;
    cp.exact = exact;
    cp.embeddings = true;
    slm_context *ctx = NULL;
    if (n > 0 && slm_context_new(m, &cp, &ctx, err, sizeof err)) CHECKF(0, "%s: context: %s", mc->id, err);
    float *got = malloc(sizeof(float) * (size_t)E * MAX_INPUTS);
    if (ctx && got) {
        double max_d = 0, min_cos = 1;
        int8_t none[MAX_IDS] = {0};
        for (int i = 0; i < n; i++) {
            slm_batch b = {in[i].n_ids, in[i].ids, NULL, NULL, none};
            if (slm_decode(ctx, &b, err, sizeof err) || slm_embedding(ctx, 0, got + (size_t)i * E, err, sizeof err)) {
                CHECKF(0, "%s input %d: %s", mc->id, i, err);
                continue;
            }
            compare(got + (size_t)i * E, in[i].emb, E, &max_d, &min_cos);
        }
        double tol = exact ? (mc->gelu ? 5e-4 : 1e-5) : mc->quantized ? 0.03 : 2e-3;
        double tol_cos = exact ? 0.99999 : mc->quantized ? 0.99 : 0.9999;
        fprintf(stderr, "%-18s %-6s max|d| %.2e  min cosine %.7f  (tolerance %.0e, %.5f)\n", mc->id, label, max_d,
                min_cos, tol, tol_cos);
        CHECKF(max_d <= tol, "%s %s: max |d| %.3g > %.0e", mc->id, label, max_d, tol);
        CHECKF(min_cos >= tol_cos, "%s %s: cosine %.7f < %.5f", mc->id, label, min_cos, tol_cos);
        const double tol_oracle = mc->quantized ? 0.03 : 2e-3, tol_oracle_cos = mc->quantized ? 0.99 : 0.9999;
        if (exact && oracle) {
            memcpy(oracle, got, sizeof(float) * (size_t)E * (size_t)n);
            *n_oracle = n;
        } else if (oracle) {
            double max_o = 0, cos_o = 1;
            CHECKF(*n_oracle == n, "%s: the exact run left %d vectors for %d inputs", mc->id, *n_oracle, n);
            for (int i = 0; i < n && i < *n_oracle; i++)
                compare(got + (size_t)i * E, oracle + (size_t)i * E, E, &max_o, &cos_o);
            fprintf(stderr, "%-18s %-6s vs exact max|d| %.2e  min cosine %.7f\n", mc->id, label, max_o, cos_o);
            CHECKF(max_o <= tol_oracle && cos_o >= tol_oracle_cos,
                   "%s %s: the fast path is %.3g (cosine %.7f) from the f32 oracle", mc->id, label, max_o, cos_o);
        }

        /* all inputs at once, one sequence each: the same vectors */
        slm_token *all = malloc(sizeof(slm_token) * MAX_INPUTS * MAX_IDS);
        int32_t *seq = malloc(sizeof(int32_t) * MAX_INPUTS * MAX_IDS);
        int8_t *want = calloc(MAX_INPUTS * MAX_IDS, 1);
        int total = 0;
        for (int i = 0; all && seq && i < n; i++)
            for (int k = 0; k < in[i].n_ids; k++) {
                all[total] = in[i].ids[k];
                seq[total++] = i;
            }
        slm_batch b = {total, all, NULL, seq, want};
        double max_batch = 0, cos_batch = 1;
        if (all && seq && want && total <= cp.n_batch && slm_decode(ctx, &b, err, sizeof err) == 0) {
            float *one = malloc(sizeof(float) * (size_t)E);
            for (int i = 0; one && i < n; i++) {
                CHECKF(slm_embedding(ctx, i, one, err, sizeof err) == 0, "%s: %s", mc->id, err);
                compare(one, got + (size_t)i * E, E, &max_batch, &cos_batch);
                if (!exact && oracle && i < *n_oracle) {
                    double max_o = 0, cos_o = 1;
                    compare(one, oracle + (size_t)i * E, E, &max_o, &cos_o);
                    CHECKF(max_o <= tol_oracle && cos_o >= tol_oracle_cos,
                           "%s %s: input %d in the batch is %.3g (cosine %.7f) from the f32 oracle", mc->id, label, i,
                           max_o, cos_o);
                }
            }
            free(one);
            /* --exact is batch-invariant; the fast path uses the float GEMM for big batches and the
             * per-token dot for small ones, which add in different orders (src/kernels/matmul.c) */
            double tol_batch = exact ? 1e-5 : 1e-4;
            CHECKF(max_batch <= tol_batch, "%s %s: one batch of %d sequences differs from one decode each by %.3g",
                   mc->id, label, n, max_batch);
        } else {
            CHECKF(0, "%s: batched decode of %d tokens failed: %s", mc->id, total, err);
        }
        free(all);
        free(seq);
        free(want);
    }
    free(got);
    slm_context_free(ctx);
    for (int i = 0; in && i < n; i++) free(in[i].emb);
    free(in);
}

/* `slm embed MODEL --json < texts` (the binary of this build): one {"embedding": [...]} line per
 * input line, equal to llama.cpp's within the normal path's tolerance. */
static void check_cli(const model_case *mc, const char *model_path, const char *dir) {
    char ref[8300], in_path[] = "/tmp/conf_embed_in_XXXXXX", cmd[16384];
    snprintf(ref, sizeof ref, "%s/embeddings.jsonl", dir);
    int fd = mkstemp(in_path);
    FILE *fin = fd >= 0 ? fdopen(fd, "w") : NULL, *fr = fopen(ref, "r");
    if (!fin || !fr) {
        CHECKF(0, "%s: cannot prepare the slm embed input", mc->id);
        if (fin) fclose(fin);
        if (fr) fclose(fr);
        return;
    }
    json_t *refs = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fr) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j) continue;
        fprintf(fin, "%s\n", json_string_value(json_object_get(j, "text")));
        json_array_append_new(refs, j);
    }
    fclose(fr);
    fclose(fin);
    snprintf(cmd, sizeof cmd, "%s/slm embed '%s' --json < '%s'", SLM_BINARY_DIR, model_path, in_path);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    double max_d = 0, min_cos = 1;
    while (p && getline(&line, &cap, p) > 0) {
        json_t *j = json_loads(line, 0, NULL), *want = json_object_get(json_array_get(refs, n), "embedding");
        json_t *got = json_object_get(j, "embedding");
        size_t E = json_array_size(want);
        CHECKF(j && json_array_size(got) == E && E > 0, "%s: slm embed line %zu is not {\"embedding\": [%zu values]}", mc->id,
               n, E);
        if (j && json_array_size(got) == E && E > 0) {
            float *a = malloc(E * sizeof(float)), *b = malloc(E * sizeof(float));
            for (size_t i = 0; a && b && i < E; i++) {
                a[i] = (float)json_number_value(json_array_get(got, i));
                b[i] = (float)json_number_value(json_array_get(want, i));
            }
            if (a && b) compare(a, b, (int)E, &max_d, &min_cos);
            free(a);
            free(b);
        }
        json_decref(j);
        n++;
    }
    int status = p ? pclose(p) : -1;
    CHECKF(status == 0 && n == json_array_size(refs), "%s: slm embed gave %zu lines for %zu inputs (status %d)", mc->id, n,
           json_array_size(refs), status);
    double tol = mc->quantized ? 0.03 : 2e-3;
    fprintf(stderr, "%-18s slm embed --json: %zu lines, max|d| %.2e, min cosine %.7f\n", mc->id, n, max_d, min_cos);
    CHECKF(max_d <= tol, "%s: slm embed max |d| %.3g > %.0e", mc->id, max_d, tol);
    free(line);
    json_decref(refs);
    unlink(in_path);
}

static void run_case(const model_case *mc, const char *shared, const char *models) {
    char path[4096], dir[4096], err[512];
    snprintf(path, sizeof path, "%s/%s.gguf", models, mc->id);
    snprintf(dir, sizeof dir, "%s/reference/%s", shared, mc->id);
    slm_model *m;
    if (slm_model_load(path, NULL, &m, err, sizeof err)) {
        CHECKF(0, "%s: load failed (run scripts/gen-test-models.sh all): %s", mc->id, err);
        return;
    }
    CHECKF(slm_model_is_embedding(m), "%s: not reported as an embedding model", mc->id);
    char jpath[8400];
    snprintf(jpath, sizeof jpath, "%s/embeddings.jsonl", dir);
    check_ids(m, mc->id, jpath);
    /* asking an encoder for logits is one clear error */
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 64;
    slm_context *ctx;
    if (slm_context_new(m, &cp, &ctx, err, sizeof err) == 0) {
        slm_token t[2] = {101, 102};
        slm_batch b = {2, t, NULL, NULL, NULL};
        CHECKF(slm_decode(ctx, &b, err, sizeof err) != 0 && strstr(err, "embedding model"), "%s: logits of an encoder: %s",
               mc->id, err);
        slm_context_free(ctx);
    }
    float *oracle = malloc(sizeof(float) * (size_t)slm_model_n_embd(m) * MAX_INPUTS);
    int n_oracle = 0;
    CHECKF(oracle != NULL, "%s: out of memory", mc->id);
    /* the int16 GEMM: F16 weights on the AVX-512 path (unless a test turned it off) have their copy */
    const char *no_i16 = getenv("SLM_NO_I16"), *no_pack = getenv("SLM_NO_PACK");
    const bool want_i16 = !mc->quantized && slm_isa_selected() >= SLM_ISA_AVX512 &&
                          !(no_i16 && *no_i16 && strcmp(no_i16, "0")) && !(no_pack && *no_pack && strcmp(no_pack, "0"));
    const bool has_i16 = m->layers[0].wq.packed != NULL && m->layers[0].wq.type == SLM_TYPE_F16;
    CHECKF(has_i16 == want_i16, "%s: the int16 copies are %s on the %s path", mc->id, has_i16 ? "there" : "missing",
           slm_kernels_isa());
    run_path(m, mc, dir, true, "exact", oracle, &n_oracle);
    run_path(m, mc, dir, false, has_i16 ? "int16" : "normal", oracle, &n_oracle);
    slm_model_free(m);
    if (has_i16) { /* the same model through the f32 GEMM, as every CPU without the int16 one runs it */
        setenv("SLM_NO_I16", "1", 1);
        if (slm_model_load(path, NULL, &m, err, sizeof err) == 0) {
            CHECKF(m->layers[0].wq.packed == NULL, "%s: SLM_NO_I16=1 left the int16 copies", mc->id);
            run_path(m, mc, dir, false, "f32", oracle, &n_oracle);
            slm_model_free(m);
        } else {
            CHECKF(0, "%s: reload failed: %s", mc->id, err);
        }
        unsetenv("SLM_NO_I16");
    }
    free(oracle);
    if (strcmp(mc->id, "nomic-embed-f16") && strcmp(mc->id, "nomic-embed-q8_0")) check_cli(mc, path, dir);
}

int main(int argc, char **argv) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    const char *models = test_models_dir();
    bool quick = getenv("SLM_TEST_QUICK") && atoi(getenv("SLM_TEST_QUICK"));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool selected = argc < 2;
        for (int a = 1; a < argc; a++) selected |= !strcmp(argv[a], cases[i].id);
        if (!selected) continue;
        if (quick && cases[i].big) {
            fprintf(stderr, "%s: skipped in quick mode (SLM_TEST_QUICK=1; the release run checks it)\n", cases[i].id);
            continue;
        }
        run_case(&cases[i], shared, models);
    }
    return test_report("conf_embed");
}
