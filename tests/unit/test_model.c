/* The model layer's own contracts, on tiny models this test writes itself (no shared data):
 *  1. an independent double-precision reference forward pass (straight from the math) agrees with
 *     the exact path for llama- and qwen2-style models in f32, f16 and q8_0, and the reference is
 *     shown to tell the variants apart (rope style/width/scaling, freq factors, biases, GQA mapping);
 *  2. one batch, one token per decode and chunks of 3 give the same logits;
 *  3. interleaved multi-sequence batches equal each sequence alone; KV copy/truncate equal recomputing;
 *  4. every misuse and every damaged model is an error value with one line naming the culprit;
 *  5. embeddings are the L2-normalised mean of the final normed hidden states;
 *  6. slm_generate: greedy equals argmax by hand, stop strings, length, EOG, min_tokens, context
 *     limits, cancellation and prefix reuse. */
#include <stdint.h>
#include <unistd.h>

#include "gguf_writer.h"
#include "kernels/kernels_impl.h"
#include "slm.h"
#include "test.h"

/* ---------- deterministic random numbers (splitmix64) ---------- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_next(r) >> 11) * 0x1.0p-53);
}

/* ---------- a SentencePiece-style vocabulary ---------- */

enum { TOK_UNK = 0, TOK_BOS = 1, TOK_EOS = 2, FIRST_BYTE_TOKEN = 3, N_BYTE_TOKENS = 256 };
#define SP "\xE2\x96\x81" /* U+2581, the escaped space */
static const char *const word_tokens[] = {
    SP,         "a",      "b",     "c",     "d",     "e",    "f",     "g",    "h",    "i",   "k",
    "l",        "m",      "n",     "o",     "p",     "r",    "s",     "t",    "u",    "w",   "y",
    SP "the",   SP "cat", SP "dog", SP "sat", SP "on", SP "mat", SP "is", SP "big", "ing", "ed", "er",
    SP "a",     SP "red", SP "sun", "!",     ".",     ",",    "?",     SP "and"};
enum { N_WORDS = (int)(sizeof word_tokens / sizeof *word_tokens) };
enum { FIRST_WORD_TOKEN = FIRST_BYTE_TOKEN + N_BYTE_TOKENS, N_VOCAB = FIRST_WORD_TOKEN + N_WORDS };

static void write_vocab(gguf_writer *w) {
    static char byte_names[N_BYTE_TOKENS][8];
    const char *texts[N_VOCAB];
    float scores[N_VOCAB];
    int32_t types[N_VOCAB];
    texts[TOK_UNK] = "<unk>", types[TOK_UNK] = 2;
    texts[TOK_BOS] = "<s>", types[TOK_BOS] = 3;
    texts[TOK_EOS] = "</s>", types[TOK_EOS] = 3;
    for (int b = 0; b < N_BYTE_TOKENS; b++) {
        snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
        texts[FIRST_BYTE_TOKEN + b] = byte_names[b];
        types[FIRST_BYTE_TOKEN + b] = 6;
    }
    for (int i = 0; i < N_WORDS; i++) {
        texts[FIRST_WORD_TOKEN + i] = word_tokens[i];
        types[FIRST_WORD_TOKEN + i] = 1;
    }
    for (int i = 0; i < N_VOCAB; i++) scores[i] = i < FIRST_WORD_TOKEN ? 0.0f : -(float)(i - FIRST_WORD_TOKEN);
    gw_kv_str(w, "tokenizer.ggml.model", "llama");
    gw_kv_str_arr(w, "tokenizer.ggml.tokens", texts, N_VOCAB);
    gw_kv_f32_arr(w, "tokenizer.ggml.scores", scores, N_VOCAB);
    gw_kv_i32_arr(w, "tokenizer.ggml.token_type", types, N_VOCAB);
    gw_kv_u32(w, "tokenizer.ggml.bos_token_id", TOK_BOS);
    gw_kv_u32(w, "tokenizer.ggml.eos_token_id", TOK_EOS);
    gw_kv_u32(w, "tokenizer.ggml.unknown_token_id", TOK_UNK);
}

/* ---------- tiny models and their reference weights ---------- */

typedef struct tiny_spec {
    const char *arch;       /* general.architecture */
    uint32_t wtype;         /* type of every matrix; norms, biases and freq factors stay f32 */
    int n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx_train;
    bool neox, qkv_bias;    /* the family's math: rope style and q/k/v biases */
    bool tied;              /* no output.weight: the embedding matrix projects to logits */
    bool rope_freqs;        /* write rope_freqs.weight (divisors of each pair's frequency) */
    int rope_dim;           /* 0: no key, the whole head rotates; else only its first rope_dim values */
    float rope_base;        /* 0: no key, the default 10000 applies */
    float linear_scaling;   /* 0: no rope scaling key */
    float rms_eps;
    uint64_t seed;
    /* damage for the load-error tests */
    const char *omit_tensor, *bad_shape_tensor, *omit_key;
} tiny_spec;

typedef struct ref_layer {
    float *attn_norm, *ffn_norm, *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down, *bq, *bk, *bv;
} ref_layer;

/* The weights exactly as stored (decoded), for the reference pass. */
typedef struct ref_model {
    tiny_spec spec;
    int head_dim, q_dim, kv_dim;
    float *tok_embd, *output, *output_norm, *freq_factors;
    ref_layer layers[4];
    void *allocs[128];
    int n_allocs;
} ref_model;

static void ref_free(ref_model *m) {
    for (int i = 0; i < m->n_allocs; i++) free(m->allocs[i]);
    m->n_allocs = 0;
}

typedef struct model_writer {
    gguf_writer gw;
    const tiny_spec *spec;
    ref_model *ref;
    rng r;
} model_writer;

/* Adds one tensor of `rows` x `k` values drawn from [lo, hi) (rows = 0: a vector of k). Returns the
 * decoded values (owned by the reference model), or NULL when the tensor is left out. */
static float *put_tensor(model_writer *mw, const char *name, uint32_t type, int k, int rows, float lo, float hi) {
    if (mw->spec->omit_tensor && strcmp(mw->spec->omit_tensor, name) == 0) return NULL;
    bool bad = mw->spec->bad_shape_tensor && strcmp(mw->spec->bad_shape_tensor, name) == 0;
    int n_rows = rows ? rows : 1;
    if (bad) n_rows++; /* one row too many: wrong shape, still a well-formed tensor */
    size_t n = (size_t)k * (size_t)n_rows;
    float *vals = malloc(n * sizeof *vals), *dec = malloc(n * sizeof *dec);
    if (!vals || !dec || mw->ref->n_allocs >= (int)(sizeof mw->ref->allocs / sizeof *mw->ref->allocs)) abort();
    for (size_t i = 0; i < n; i++) vals[i] = rng_uniform(&mw->r, lo, hi);
    uint64_t ne[2] = {(uint64_t)k, (uint64_t)n_rows};
    gw_tensor(&mw->gw, name, rows || bad ? type : GW_TYPE_F32, rows || bad ? 2 : 1, ne, vals, dec);
    free(vals);
    mw->ref->allocs[mw->ref->n_allocs++] = dec;
    return dec;
}

static float *put_matrix(model_writer *mw, const char *name, int k, int rows) {
    float a = 2.5f / sqrtf((float)k); /* elements of a product with a normed input stay O(1) */
    return put_tensor(mw, name, mw->spec->wtype, k, rows, -a, a);
}

static bool key_wanted(const tiny_spec *s, const char *key) { return !s->omit_key || strcmp(s->omit_key, key) != 0; }

static void put_hparam(model_writer *mw, const char *suffix, uint32_t v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", mw->spec->arch, suffix);
    if (key_wanted(mw->spec, key)) gw_kv_u32(&mw->gw, key, v);
}

static void put_fparam(model_writer *mw, const char *suffix, float v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", mw->spec->arch, suffix);
    if (key_wanted(mw->spec, key)) gw_kv_f32(&mw->gw, key, v);
}

/* Writes the model to `path` and fills `ref` with the weights it holds. */
static void build_model(const tiny_spec *s, const char *path, ref_model *ref) {
    memset(ref, 0, sizeof *ref);
    ref->spec = *s;
    ref->head_dim = s->n_embd / s->n_head;
    ref->q_dim = s->n_head * ref->head_dim;
    ref->kv_dim = s->n_head_kv * ref->head_dim;
    model_writer mw = {.spec = s, .ref = ref, .r = {s->seed}};
    gw_init(&mw.gw);
    if (key_wanted(s, "general.architecture")) gw_kv_str(&mw.gw, "general.architecture", s->arch);
    gw_kv_str(&mw.gw, "general.name", "tiny test model");
    gw_kv_u32(&mw.gw, "general.file_type", s->wtype == GW_TYPE_F32 ? 0 : s->wtype == GW_TYPE_F16 ? 1 : 7);
    put_hparam(&mw, "context_length", (uint32_t)s->n_ctx_train);
    put_hparam(&mw, "embedding_length", (uint32_t)s->n_embd);
    put_hparam(&mw, "block_count", (uint32_t)s->n_layer);
    put_hparam(&mw, "feed_forward_length", (uint32_t)s->n_ff);
    put_hparam(&mw, "attention.head_count", (uint32_t)s->n_head);
    put_hparam(&mw, "attention.head_count_kv", (uint32_t)s->n_head_kv);
    put_fparam(&mw, "attention.layer_norm_rms_epsilon", s->rms_eps);
    if (s->rope_base > 0) put_fparam(&mw, "rope.freq_base", s->rope_base);
    if (s->rope_dim > 0) put_hparam(&mw, "rope.dimension_count", (uint32_t)s->rope_dim);
    if (s->linear_scaling > 0) {
        char key[128];
        snprintf(key, sizeof key, "%s.rope.scaling.type", s->arch);
        gw_kv_str(&mw.gw, key, "linear");
        put_fparam(&mw, "rope.scaling.factor", s->linear_scaling);
    }
    write_vocab(&mw.gw);

    int E = s->n_embd, F = s->n_ff, hd = ref->head_dim;
    ref->tok_embd = put_tensor(&mw, "token_embd.weight", s->wtype, E, N_VOCAB, -1.0f, 1.0f);
    ref->output_norm = put_tensor(&mw, "output_norm.weight", GW_TYPE_F32, E, 0, 0.8f, 1.2f);
    ref->output = s->tied ? ref->tok_embd : put_matrix(&mw, "output.weight", E, N_VOCAB);
    int rope_dim = s->rope_dim > 0 ? s->rope_dim : hd;
    if (s->rope_freqs) ref->freq_factors = put_tensor(&mw, "rope_freqs.weight", GW_TYPE_F32, rope_dim / 2, 0, 1.0f, 4.0f);
    for (int l = 0; l < s->n_layer; l++) {
        ref_layer *L = &ref->layers[l];
        char name[64];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        L->attn_norm = put_tensor(&mw, NAME("attn_norm.weight"), GW_TYPE_F32, E, 0, 0.8f, 1.2f);
        L->ffn_norm = put_tensor(&mw, NAME("ffn_norm.weight"), GW_TYPE_F32, E, 0, 0.8f, 1.2f);
        L->wq = put_matrix(&mw, NAME("attn_q.weight"), E, ref->q_dim);
        L->wk = put_matrix(&mw, NAME("attn_k.weight"), E, ref->kv_dim);
        L->wv = put_matrix(&mw, NAME("attn_v.weight"), E, ref->kv_dim);
        L->wo = put_matrix(&mw, NAME("attn_output.weight"), ref->q_dim, E);
        L->w_gate = put_matrix(&mw, NAME("ffn_gate.weight"), E, F);
        L->w_up = put_matrix(&mw, NAME("ffn_up.weight"), E, F);
        L->w_down = put_matrix(&mw, NAME("ffn_down.weight"), F, E);
        if (s->qkv_bias) {
            L->bq = put_tensor(&mw, NAME("attn_q.bias"), GW_TYPE_F32, ref->q_dim, 0, -0.5f, 0.5f);
            L->bk = put_tensor(&mw, NAME("attn_k.bias"), GW_TYPE_F32, ref->kv_dim, 0, -0.5f, 0.5f);
            L->bv = put_tensor(&mw, NAME("attn_v.bias"), GW_TYPE_F32, ref->kv_dim, 0, -0.5f, 0.5f);
        }
#undef NAME
    }
    if (gw_write_file(&mw.gw, path) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    gw_free(&mw.gw);
}

/* ---------- the reference forward pass ---------- */

/* Deliberately wrong math, to show the comparison can tell the variants apart. */
typedef struct ref_variant {
    bool flip_rope, skip_freq_factors, skip_bias, interleaved_gqa, skip_scaling, full_rotary;
} ref_variant;

static void ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* y[rows] = W[rows][k] x[k] (+ b) */
static void ref_matvec(double *y, const float *w, const double *x, int k, int rows, const float *b) {
    for (int r = 0; r < rows; r++) {
        double s = b ? b[r] : 0.0;
        for (int c = 0; c < k; c++) s += (double)w[(size_t)r * k + c] * x[c];
        y[r] = s;
    }
}

static void ref_rope(const ref_model *m, const ref_variant *var, double *vec, int n_heads, int pos) {
    const tiny_spec *s = &m->spec;
    int hd = m->head_dim, rope_dim = s->rope_dim > 0 && !var->full_rotary ? s->rope_dim : hd, half = rope_dim / 2;
    bool neox = s->neox != var->flip_rope;
    double base = s->rope_base > 0 ? s->rope_base : 10000.0;
    double scale = s->linear_scaling > 0 && !var->skip_scaling ? 1.0 / s->linear_scaling : 1.0;
    for (int h = 0; h < n_heads; h++) {
        double *v = vec + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            double theta = pos * scale * pow(base, -2.0 * i / rope_dim);
            int n_factors = (s->rope_dim > 0 ? s->rope_dim : hd) / 2; /* the wrong-width variant rotates more */
            if (m->freq_factors && !var->skip_freq_factors && i < n_factors) theta /= m->freq_factors[i];
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            double x0 = v[a], x1 = v[b];
            v[a] = x0 * cos(theta) - x1 * sin(theta);
            v[b] = x0 * sin(theta) + x1 * cos(theta);
        }
    }
}

/* The whole sequence from position 0: logits [n][N_VOCAB] and final normed hidden states
 * [n][n_embd] (either may be NULL). */
static void ref_forward(const ref_model *m, const ref_variant *var, const slm_token *toks, int n, double *logits,
                        double *hidden) {
    static const ref_variant none;
    if (!var) var = &none;
    const tiny_spec *s = &m->spec;
    int E = s->n_embd, F = s->n_ff, H = s->n_head, HKV = s->n_head_kv, hd = m->head_dim;
    int qd = m->q_dim, kvd = m->kv_dim;
    double *x = calloc((size_t)n * E, sizeof *x), *xn = calloc((size_t)E, sizeof *xn);
    double *q = calloc((size_t)n * qd, sizeof *q), *k = calloc((size_t)n * kvd, sizeof *k);
    double *v = calloc((size_t)n * kvd, sizeof *v), *att = calloc((size_t)qd, sizeof *att);
    double *g = calloc((size_t)F, sizeof *g), *u = calloc((size_t)F, sizeof *u), *y = calloc((size_t)E, sizeof *y);
    double *p = calloc((size_t)n, sizeof *p), *h = calloc((size_t)E, sizeof *h);
    if (!x || !xn || !q || !k || !v || !att || !g || !u || !y || !p || !h) abort();
    for (int t = 0; t < n; t++)
        for (int i = 0; i < E; i++) x[(size_t)t * E + i] = m->tok_embd[(size_t)toks[t] * E + i];
    for (int l = 0; l < s->n_layer; l++) {
        const ref_layer *L = &m->layers[l];
        bool bias = !var->skip_bias;
        for (int t = 0; t < n; t++) {
            ref_rmsnorm(xn, x + (size_t)t * E, L->attn_norm, E, s->rms_eps);
            ref_matvec(q + (size_t)t * qd, L->wq, xn, E, qd, bias ? L->bq : NULL);
            ref_matvec(k + (size_t)t * kvd, L->wk, xn, E, kvd, bias ? L->bk : NULL);
            ref_matvec(v + (size_t)t * kvd, L->wv, xn, E, kvd, bias ? L->bv : NULL);
            ref_rope(m, var, q + (size_t)t * qd, H, t);
            ref_rope(m, var, k + (size_t)t * kvd, HKV, t);
        }
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < H; hh++) {
                int kvh = var->interleaved_gqa ? hh % HKV : hh / (H / HKV);
                const double *qh = q + (size_t)t * qd + (size_t)hh * hd;
                double max = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += qh[i] * k[(size_t)j * kvd + (size_t)kvh * hd + i];
                    p[j] = d / sqrt((double)hd);
                    if (p[j] > max) max = p[j];
                }
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - max));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += p[j] / sum * v[(size_t)j * kvd + (size_t)kvh * hd + i];
                    att[(size_t)hh * hd + i] = o;
                }
            }
            double *xt = x + (size_t)t * E;
            ref_matvec(y, L->wo, att, qd, E, NULL);
            for (int i = 0; i < E; i++) xt[i] += y[i];
            ref_rmsnorm(xn, xt, L->ffn_norm, E, s->rms_eps);
            ref_matvec(g, L->w_gate, xn, E, F, NULL);
            ref_matvec(u, L->w_up, xn, E, F, NULL);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            ref_matvec(y, L->w_down, g, F, E, NULL);
            for (int i = 0; i < E; i++) xt[i] += y[i];
        }
    }
    for (int t = 0; t < n; t++) {
        ref_rmsnorm(h, x + (size_t)t * E, m->output_norm, E, s->rms_eps);
        if (hidden) memcpy(hidden + (size_t)t * E, h, sizeof(double) * (size_t)E);
        if (logits) ref_matvec(logits + (size_t)t * N_VOCAB, m->output, h, E, N_VOCAB, NULL);
    }
    free(x), free(xn), free(q), free(k), free(v), free(att), free(g), free(u), free(y), free(p), free(h);
}

/* max |got - ref| over max |ref|: a relative error that ignores near-zero entries. */
static double rel_err(const float *got, const double *ref, int n) {
    double diff = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= diff)) diff = d; /* NaN counts as the worst */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* ---------- helpers around the API ---------- */

static char tmp_dir[256];

static void model_path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s.gguf", tmp_dir, name); }

static slm_model *load(const char *path) {
    char err[512] = "";
    slm_model *m = NULL;
    int rc = slm_model_load(path, NULL, &m, err, sizeof err);
    CHECKF(rc == 0 && m, "loading %s: %s", path, err);
    return rc == 0 ? m : NULL;
}

static int ctx_threads = 2;

static slm_context *new_ctx(slm_model *m, int n_ctx, int n_seq, int n_batch, bool exact, bool embeddings) {
    slm_context_params p = slm_context_default_params();
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    p.n_threads = ctx_threads;
    p.exact = exact;
    p.embeddings = embeddings;
    char err[512] = "";
    slm_context *c = NULL;
    int rc = slm_context_new(m, &p, &c, err, sizeof err);
    CHECKF(rc == 0 && c, "context: %s", err);
    return rc == 0 ? c : NULL;
}

/* Decodes n tokens of one sequence in one batch; logits for every token if `all`, else the last. */
static bool decode_seq(slm_context *c, const slm_token *toks, int n, int seq, bool all) {
    int32_t seqs[64];
    int8_t want[64];
    if (n > 64) abort();
    for (int i = 0; i < n; i++) seqs[i] = seq, want[i] = all || i == n - 1;
    slm_batch b = {n, toks, NULL, seqs, want};
    char err[512] = "";
    int rc = slm_decode(c, &b, err, sizeof err);
    CHECKF(rc == 0, "decode of %d tokens in sequence %d: %s", n, seq, err);
    return rc == 0;
}

/* Every row of logits of a fresh decode of toks[0..n) in one batch: out[n][N_VOCAB]. */
static void fresh_logits_path(slm_model *m, const slm_token *toks, int n, bool exact, float *out) {
    slm_context *c = new_ctx(m, 64, 1, 64, exact, false);
    if (!c) return;
    if (decode_seq(c, toks, n, 0, true))
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * N_VOCAB, slm_logits(c, i), sizeof(float) * N_VOCAB);
    slm_context_free(c);
}

static void fresh_logits(slm_model *m, const slm_token *toks, int n, float *out) {
    fresh_logits_path(m, toks, n, true, out);
}

/* An error is a value: a negative status and one non-empty line that mentions `must_name`. */
static void check_error(int rc, const char *err, const char *must_name, const char *what) {
    CHECKF(rc < 0, "%s: expected an error, got %d", what, rc);
    CHECKF(err[0] != 0 && strchr(err, '\n') == NULL, "%s: error is not one line: '%s'", what, err);
    CHECKF(must_name == NULL || strstr(err, must_name) != NULL, "%s: error '%s' does not mention '%s'", what, err,
           must_name);
}

/* ---------- the models ---------- */

typedef struct test_model {
    const char *name;
    tiny_spec spec;
    ref_model ref;
    char path[320];
    slm_model *model;
} test_model;

static tiny_spec llama_spec(void) {
    return (tiny_spec){.arch = "llama", .wtype = GW_TYPE_F32, .n_layer = 2, .n_embd = 32, .n_head = 4, .n_head_kv = 2,
                       .n_ff = 64, .n_ctx_train = 64, .rms_eps = 1e-5f, .seed = 1};
}

static tiny_spec qwen2_spec(void) {
    tiny_spec s = llama_spec();
    s.arch = "qwen2";
    s.neox = s.qkv_bias = true;
    s.rms_eps = 1e-6f;
    s.rope_base = 1000000.0f;
    s.seed = 2;
    return s;
}

/* The variants: both families, all three stored types, tied and untied output, freq factors,
 * linear scaling, partial rotary width, grouped (2 heads per kv head), multi-query and multi-head
 * attention. */
static test_model models[5];
enum { M_LLAMA_F32, M_QWEN2_F16, M_LLAMA_Q8, M_QWEN2_MQA, M_LLAMA_MHA, N_MODELS };

static void build_models(void) {
    tiny_spec s;
    s = llama_spec();
    s.rope_freqs = true;
    s.rope_base = 5000.0f;
    models[M_LLAMA_F32] = (test_model){.name = "llama_f32_untied_freqs", .spec = s};
    s = qwen2_spec();
    s.wtype = GW_TYPE_F16;
    s.tied = true;
    models[M_QWEN2_F16] = (test_model){.name = "qwen2_f16_tied", .spec = s};
    s = llama_spec();
    s.wtype = GW_TYPE_Q8_0;
    s.tied = true;
    s.linear_scaling = 2.0f;
    s.seed = 3;
    models[M_LLAMA_Q8] = (test_model){.name = "llama_q8_0_tied_linear", .spec = s};
    s = qwen2_spec();
    s.n_head_kv = 1;
    s.n_layer = 3;
    s.rope_dim = 4; /* partial rotary: the last half of each head passes through */
    s.seed = 4;
    models[M_QWEN2_MQA] = (test_model){.name = "qwen2_f32_mqa_rope4", .spec = s};
    s = llama_spec();
    s.n_head_kv = 4;
    s.n_layer = 1;
    s.wtype = GW_TYPE_F16;
    s.rope_dim = 6;
    s.rope_freqs = true;
    s.seed = 5;
    models[M_LLAMA_MHA] = (test_model){.name = "llama_f16_mha_rope6_freqs", .spec = s};
    for (int i = 0; i < N_MODELS; i++) {
        test_model *tm = &models[i];
        model_path(tm->path, sizeof tm->path, tm->name);
        build_model(&tm->spec, tm->path, &tm->ref);
        tm->model = load(tm->path);
    }
}

static const slm_token prompt12[12] = {1, 280, 281, 298, 40, 270, 299, 263, 3, 258, 285, 271};

/* ---------- 1 + 5: reference agreement and embeddings ---------- */

static void test_reference(test_model *tm) {
    if (!tm->model) return;
    enum { N = 12 };
    const int E = tm->spec.n_embd;
    CHECK(slm_model_n_vocab(tm->model) == N_VOCAB);
    CHECK(slm_model_n_embd(tm->model) == E);
    CHECK(slm_model_n_ctx_train(tm->model) == tm->spec.n_ctx_train);
    CHECK(strcmp(slm_model_arch(tm->model), tm->spec.arch) == 0);

    double *ref = malloc(sizeof(double) * N * N_VOCAB), *hid = malloc(sizeof(double) * N * (size_t)E);
    float *emb = malloc(sizeof(float) * (size_t)E);
    if (!ref || !hid || !emb) abort();
    ref_forward(&tm->ref, NULL, prompt12, N, ref, hid);

    for (int exact = 1; exact >= 0; exact--) {
        slm_context *c = new_ctx(tm->model, 32, 1, 16, exact, true);
        if (!c || !decode_seq(c, prompt12, N, 0, true)) {
            slm_context_free(c);
            continue;
        }
        /* exact: f32 everywhere, so only rounding separates it from double. fast: f16 KV cache, and
         * for q8_0 weights 8-bit activations, whose rounding these random 2-layer models amplify
         * (measured 1.6e-3 for f32/f16 weights, 6e-2 for q8_0); wrong math is off by 0.7 to 1.5. */
        double tol = exact ? 1e-4 : tm->spec.wtype == GW_TYPE_Q8_0 ? 0.15 : 1e-2, worst = 0;
        for (int t = 0; t < N; t++) {
            const float *lg = slm_logits(c, t);
            double e = lg ? rel_err(lg, ref + (size_t)t * N_VOCAB, N_VOCAB) : INFINITY;
            if (!(e <= worst)) worst = e;
        }
        CHECKF(worst <= tol, "%s %s: logits differ from the reference by %.3g relative (limit %g)", tm->name,
               exact ? "exact" : "fast", worst, tol);
        CHECK(slm_logits(c, N) == NULL && slm_logits(c, -1) == NULL);
        fprintf(stderr, "  %-26s %s path vs reference: %.2g relative\n", tm->name, exact ? "exact" : "fast ", worst);

        /* embedding: mean of the final normed states of the batch's tokens, then L2-normalised */
        char err[256] = "";
        int rc = slm_embedding(c, 0, emb, err, sizeof err);
        CHECKF(rc == 0, "%s: slm_embedding: %s", tm->name, err);
        double want[64] = {0}, norm = 0, got_norm = 0;
        for (int t = 0; t < N; t++)
            for (int i = 0; i < E; i++) want[i] += hid[(size_t)t * E + i] / N;
        for (int i = 0; i < E; i++) norm += want[i] * want[i];
        for (int i = 0; i < E; i++) want[i] /= sqrt(norm), got_norm += (double)emb[i] * emb[i];
        CHECKF(fabs(sqrt(got_norm) - 1.0) < 1e-5, "%s: embedding norm %.8f", tm->name, sqrt(got_norm));
        double e = rel_err(emb, want, E);
        CHECKF(e <= tol, "%s %s: embedding differs from the reference by %.3g", tm->name, exact ? "exact" : "fast", e);
        slm_context_free(c);
    }

    /* the comparison is sharp enough to see each piece of the math: every deliberately wrong
     * reference is off by 100x the exact-path tolerance or more (most by 0.7 to 1.5) */
    enum { N_VARIANTS = 6 };
    ref_variant variants[N_VARIANTS] = {{.flip_rope = true},  {.skip_freq_factors = true}, {.skip_bias = true},
                                        {.interleaved_gqa = true}, {.skip_scaling = true},  {.full_rotary = true}};
    const char *vnames[N_VARIANTS] = {"rope style",   "freq factors", "q/k/v biases",
                                      "kv head mapping", "rope scaling", "rotary width"};
    bool applies[N_VARIANTS] = {true, tm->spec.rope_freqs, tm->spec.qkv_bias,
                                tm->spec.n_head_kv > 1 && tm->spec.n_head_kv < tm->spec.n_head,
                                tm->spec.linear_scaling > 0, tm->spec.rope_dim > 0};
    double *alt = malloc(sizeof(double) * N * N_VOCAB);
    float *got = malloc(sizeof(float) * N * N_VOCAB);
    if (!alt || !got) abort();
    fresh_logits(tm->model, prompt12, N, got);
    for (int v = 0; v < N_VARIANTS; v++) {
        if (!applies[v]) continue;
        ref_forward(&tm->ref, &variants[v], prompt12, N, alt, NULL);
        double e = rel_err(got, alt, N * N_VOCAB);
        CHECKF(e > 1e-2, "%s: a reference with the wrong %s still agrees (%.3g): the check is blind to it", tm->name,
               vnames[v], e);
    }
    free(alt), free(got), free(ref), free(hid), free(emb);
}

/* ---------- 2: batch equivalence ---------- */

static void test_batch_equivalence(test_model *tm, bool exact) {
    if (!tm->model) return;
    enum { N = 10 };
    float *whole = malloc(sizeof(float) * N * N_VOCAB), *single = malloc(sizeof(float) * N * N_VOCAB),
          *chunked = malloc(sizeof(float) * N * N_VOCAB);
    if (!whole || !single || !chunked) abort();
    slm_context *c = new_ctx(tm->model, 32, 1, 16, exact, false);
    if (!c) goto out;
    if (decode_seq(c, prompt12, N, 0, true))
        for (int i = 0; i < N; i++) memcpy(whole + (size_t)i * N_VOCAB, slm_logits(c, i), sizeof(float) * N_VOCAB);
    slm_kv_seq_truncate(c, 0, 0);
    CHECK(slm_kv_seq_len(c, 0) == 0);
    for (int i = 0; i < N; i++) {
        slm_batch b = {1, prompt12 + i, NULL, NULL, NULL}; /* defaults: sequence 0, next position, last logits */
        char err[256] = "";
        int rc = slm_decode(c, &b, err, sizeof err);
        CHECKF(rc == 0, "single-token decode %d: %s", i, err);
        if (rc == 0) memcpy(single + (size_t)i * N_VOCAB, slm_logits(c, 0), sizeof(float) * N_VOCAB);
    }
    CHECK(slm_kv_seq_len(c, 0) == N);
    slm_kv_seq_truncate(c, 0, 0);
    for (int i = 0; i < N; i += 3) {
        int n = N - i < 3 ? N - i : 3;
        if (decode_seq(c, prompt12 + i, n, 0, true))
            for (int j = 0; j < n; j++)
                memcpy(chunked + (size_t)(i + j) * N_VOCAB, slm_logits(c, j), sizeof(float) * N_VOCAB);
    }
    /* The exact path computes every token independently of its batch-mates; the fast path picks a
     * different kernel for one row than for many (the float GEMM from 12 tokens adds in k blocks),
     * so it gets a rounding-sized bound (measured: 1.6e-4 for f16 weights, 3e-6 for q8_0, logits
     * of magnitude ~10). */
    double tol = exact ? 1e-5 : 5e-4;
    double d1 = max_abs_diff(whole, single, N * N_VOCAB), d2 = max_abs_diff(whole, chunked, N * N_VOCAB);
    CHECKF(d1 <= tol, "%s %s: whole batch vs one token per decode differ by %.3g", tm->name, exact ? "exact" : "fast",
           d1);
    CHECKF(d2 <= tol, "%s %s: whole batch vs chunks of 3 differ by %.3g", tm->name, exact ? "exact" : "fast", d2);

    /* a batch that asks for no logits still advances the cache */
    slm_kv_seq_truncate(c, 0, 0);
    int8_t none[N] = {0};
    slm_batch nb = {N - 1, prompt12, NULL, NULL, none};
    char err[256] = "";
    CHECKF(slm_decode(c, &nb, err, sizeof err) == 0, "batch without logits: %s", err);
    CHECK(slm_logits(c, 0) == NULL && slm_kv_seq_len(c, 0) == N - 1);
    if (decode_seq(c, prompt12 + N - 1, 1, 0, false))
        CHECK(max_abs_diff(slm_logits(c, 0), whole + (size_t)(N - 1) * N_VOCAB, N_VOCAB) <= tol);

    /* the thread count does not change the result */
    ctx_threads = 1;
    float *one_thread = malloc(sizeof(float) * N * N_VOCAB);
    slm_context *c1 = new_ctx(tm->model, 32, 1, 16, exact, false);
    ctx_threads = 2;
    if (one_thread && c1 && decode_seq(c1, prompt12, N, 0, true)) {
        for (int i = 0; i < N; i++) memcpy(one_thread + (size_t)i * N_VOCAB, slm_logits(c1, i), sizeof(float) * N_VOCAB);
        double d3 = max_abs_diff(whole, one_thread, N * N_VOCAB);
        CHECKF(d3 <= tol, "%s %s: 1 thread vs 2 threads differ by %.3g", tm->name, exact ? "exact" : "fast", d3);
    }
    slm_context_free(c1);
    free(one_thread);
    slm_context_free(c);
out:
    free(whole), free(single), free(chunked);
}

/* ---------- 3: several sequences, KV copy and truncate ---------- */

static void test_multi_sequence(test_model *tm, bool exact) {
    if (!tm->model) return;
    static const slm_token A[7] = {1, 270, 271, 272, 273, 274, 275};
    static const slm_token B[5] = {1, 290, 291, 40, 41};
    static const slm_token C[6] = {1, 3, 298, 297, 296, 295};
    const slm_token *seqs[3] = {A, B, C};
    const int lens[3] = {7, 5, 6};
    float *alone[3];
    for (int s = 0; s < 3; s++) {
        alone[s] = malloc(sizeof(float) * (size_t)lens[s] * N_VOCAB);
        if (!alone[s]) abort();
        fresh_logits_path(tm->model, seqs[s], lens[s], exact, alone[s]);
    }
    slm_context *c = new_ctx(tm->model, 32, 3, 16, exact, false);
    /* the exact path computes each token alone: equal to the bit; the fast path may choose kernels
     * by batch size, so rounding-sized differences are allowed */
    const double tol = exact ? 1e-5 : 1e-4;
    const char *path = exact ? "exact" : "fast";
    if (!c) goto out;

    /* three mixed batches covering all 18 tokens out of order between sequences; the second gives
     * explicit positions, the others let the context continue each sequence */
    static const int8_t sched_seq[3][8] = {{0, 1, 0, 2, 2, 1, -1}, {2, 0, 1, 0, 2, 1, 0, -1}, {2, 0, 1, 2, 0, -1}};
    int next[3] = {0, 0, 0};
    double worst = 0;
    int compared = 0;
    for (int bi = 0; bi < 3; bi++) {
        slm_token toks[8];
        int32_t pos[8], sid[8];
        int8_t want[8];
        int n = 0;
        for (; n < 8 && sched_seq[bi][n] >= 0; n++) {
            int s = sched_seq[bi][n];
            toks[n] = seqs[s][next[s]];
            pos[n] = next[s]++;
            sid[n] = s;
            want[n] = (int8_t)(bi != 2 || n % 2 == 0); /* last batch: logits for some tokens only */
        }
        slm_batch b = {n, toks, bi == 1 ? pos : NULL, sid, want};
        char err[256] = "";
        int rc = slm_decode(c, &b, err, sizeof err);
        CHECKF(rc == 0, "mixed batch %d: %s", bi, err);
        if (rc) continue;
        int row = 0;
        for (int i = 0; i < n; i++) {
            if (!want[i]) continue;
            const float *lg = slm_logits(c, row++);
            CHECK(lg != NULL);
            if (!lg) continue;
            double d = max_abs_diff(lg, alone[sid[i]] + (size_t)pos[i] * N_VOCAB, N_VOCAB);
            if (d > worst) worst = d;
            compared++;
        }
        CHECK(slm_logits(c, row) == NULL);
    }
    CHECKF(worst <= tol && compared == 16, "%s %s: interleaved sequences differ from each alone by %.3g (%d rows)",
           tm->name, path, worst, compared);
    for (int s = 0; s < 3; s++) {
        CHECK(next[s] == lens[s]);
        CHECK(slm_kv_seq_len(c, s) == lens[s]);
        const slm_token *kt = slm_kv_seq_tokens(c, s);
        CHECK(kt && memcmp(kt, seqs[s], sizeof(slm_token) * (size_t)lens[s]) == 0);
    }
    CHECK(slm_kv_seq_len(c, 3) == 0 && slm_kv_seq_tokens(c, 3) == NULL && slm_kv_seq_tokens(c, -1) == NULL);

    /* copy the first 4 positions of A into C's sequence (truncating C), then continue differently */
    static const slm_token D[3] = {288, 5, 299};
    slm_token AD[7];
    memcpy(AD, A, 4 * sizeof(slm_token));
    memcpy(AD + 4, D, 3 * sizeof(slm_token));
    float want_ad[7 * N_VOCAB];
    fresh_logits_path(tm->model, AD, 7, exact, want_ad);
    slm_kv_seq_copy(c, 2, 0, 4);
    CHECK(slm_kv_seq_len(c, 2) == 4);
    CHECK(memcmp(slm_kv_seq_tokens(c, 2), A, 4 * sizeof(slm_token)) == 0);
    CHECK(slm_kv_seq_len(c, 0) == 7); /* the source is untouched */
    if (decode_seq(c, D, 3, 2, true)) {
        double d = 0;
        for (int i = 0; i < 3; i++) {
            double e = max_abs_diff(slm_logits(c, i), want_ad + (size_t)(4 + i) * N_VOCAB, N_VOCAB);
            if (e > d) d = e;
        }
        CHECKF(d <= tol, "%s %s: copied prefix + continuation differs from recomputing by %.3g", tm->name, path, d);
    }
    CHECK(memcmp(slm_kv_seq_tokens(c, 2), AD, sizeof AD) == 0);

    /* copying more than the source holds copies what it holds */
    slm_kv_seq_copy(c, 1, 0, 100);
    CHECK(slm_kv_seq_len(c, 1) == 7 && memcmp(slm_kv_seq_tokens(c, 1), A, sizeof A) == 0);
    slm_token A8[8];
    memcpy(A8, A, sizeof A);
    A8[7] = 277;
    float want_a8[8 * N_VOCAB];
    fresh_logits_path(tm->model, A8, 8, exact, want_a8);
    if (decode_seq(c, A8 + 7, 1, 1, false))
        CHECKF(max_abs_diff(slm_logits(c, 0), want_a8 + 7 * N_VOCAB, N_VOCAB) <= tol,
               "%s %s: full copy + one token differs from recomputing", tm->name, path);
    /* and the source sequence still continues as if nothing happened */
    if (decode_seq(c, A8 + 7, 1, 0, false))
        CHECKF(max_abs_diff(slm_logits(c, 0), want_a8 + 7 * N_VOCAB, N_VOCAB) <= tol,
               "%s %s: the copy source changed", tm->name, path);

    /* truncate B's sequence... (now A8 in sequence 1) to 3 positions and re-decode something else */
    slm_kv_seq_truncate(c, 1, 3);
    CHECK(slm_kv_seq_len(c, 1) == 3);
    slm_kv_seq_truncate(c, 1, 10); /* past the end: nothing to drop */
    CHECK(slm_kv_seq_len(c, 1) == 3);
    slm_token AT[6] = {A[0], A[1], A[2], 260, 261, 262};
    float want_at[6 * N_VOCAB];
    fresh_logits_path(tm->model, AT, 6, exact, want_at);
    if (decode_seq(c, AT + 3, 3, 1, true)) {
        double d = 0;
        for (int i = 0; i < 3; i++) {
            double e = max_abs_diff(slm_logits(c, i), want_at + (size_t)(3 + i) * N_VOCAB, N_VOCAB);
            if (e > d) d = e;
        }
        CHECKF(d <= tol, "%s %s: truncate + re-decode differs from a fresh decode by %.3g", tm->name, path, d);
    }
    CHECK(memcmp(slm_kv_seq_tokens(c, 1), AT, sizeof AT) == 0);
    slm_kv_seq_copy(c, 2, 0, 0); /* copying nothing leaves an empty destination */
    CHECK(slm_kv_seq_len(c, 2) == 0 && slm_kv_seq_len(c, 0) == 8);
    slm_kv_seq_truncate(c, 1, 0);
    CHECK(slm_kv_seq_len(c, 1) == 0);
    if (decode_seq(c, B, 5, 1, true))
        CHECKF(max_abs_diff(slm_logits(c, 4), alone[1] + 4 * N_VOCAB, N_VOCAB) <= tol,
               "%s %s: a cleared sequence does not decode like a fresh one", tm->name, path);
    slm_context_free(c);
out:
    for (int s = 0; s < 3; s++) free(alone[s]);
}

/* ---------- 5 (multi-sequence part): embeddings per sequence ---------- */

static void test_embeddings_per_sequence(test_model *tm) {
    if (!tm->model) return;
    const int E = tm->spec.n_embd;
    static const slm_token A[4] = {1, 280, 281, 282};
    static const slm_token B[3] = {1, 290, 291};
    slm_context *c = new_ctx(tm->model, 16, 3, 8, true, true);
    if (!c) return;
    slm_token toks[7] = {A[0], B[0], A[1], B[1], A[2], A[3], B[2]};
    int32_t sid[7] = {0, 1, 0, 1, 0, 0, 1};
    slm_batch b = {7, toks, NULL, sid, NULL};
    char err[256] = "";
    CHECKF(slm_decode(c, &b, err, sizeof err) == 0, "embedding batch: %s", err);
    for (int s = 0; s < 2; s++) {
        const slm_token *tk = s ? B : A;
        int n = s ? 3 : 4;
        double hid[4 * 64], want[64] = {0}, norm = 0;
        ref_forward(&tm->ref, NULL, tk, n, NULL, hid);
        for (int t = 0; t < n; t++)
            for (int i = 0; i < E; i++) want[i] += hid[t * E + i];
        for (int i = 0; i < E; i++) norm += want[i] * want[i];
        for (int i = 0; i < E; i++) want[i] /= sqrt(norm);
        float got[64];
        int rc = slm_embedding(c, s, got, err, sizeof err);
        CHECKF(rc == 0, "slm_embedding(%d): %s", s, err);
        double e = rel_err(got, want, E);
        CHECKF(rc == 0 && e <= 1e-4, "%s: embedding of sequence %d in a mixed batch is off by %.3g", tm->name, s, e);
    }
    float got[64];
    err[0] = 0;
    check_error(slm_embedding(c, 2, got, err, sizeof err), err, "2", "embedding of a sequence absent from the batch");
    slm_context_free(c);

    c = new_ctx(tm->model, 16, 1, 8, true, false);
    if (!c) return;
    decode_seq(c, A, 4, 0, false);
    err[0] = 0;
    check_error(slm_embedding(c, 0, got, err, sizeof err), err, "embeddings", "embedding without params.embeddings");
    slm_context_free(c);
}

/* ---------- 4: errors as values ---------- */

static void test_decode_errors(test_model *tm) {
    if (!tm->model) return;
    slm_context *c = new_ctx(tm->model, 8, 2, 4, true, false);
    if (!c) return;
    char err[512];
    int rc;
    slm_token toks[5] = {1, 270, 271, 272, 273};
#define TRY(b) (err[0] = 0, rc = slm_decode(c, (b), err, sizeof err))

    int32_t pos3[1] = {3};
    slm_batch b = {1, toks, pos3, NULL, NULL};
    TRY(&b);
    check_error(rc, err, "position 3", "position beyond the cache");
    int32_t gap[2] = {0, 2};
    b = (slm_batch){2, toks, gap, NULL, NULL};
    TRY(&b);
    check_error(rc, err, "position 2", "positions with a gap");
    CHECK(slm_kv_seq_len(c, 0) == 0);

    slm_token bad_tok[2] = {1, N_VOCAB};
    b = (slm_batch){2, bad_tok, NULL, NULL, NULL};
    TRY(&b);
    check_error(rc, err, "300", "token id == n_vocab");
    bad_tok[1] = -1;
    TRY(&b);
    check_error(rc, err, "-1", "negative token id");

    int32_t bad_seq[2] = {0, 2};
    b = (slm_batch){2, toks, NULL, bad_seq, NULL};
    TRY(&b);
    check_error(rc, err, "sequence 2", "sequence id == n_seq");
    bad_seq[1] = -1;
    TRY(&b);
    check_error(rc, err, "sequence -1", "negative sequence id");

    b = (slm_batch){5, toks, NULL, NULL, NULL};
    TRY(&b);
    check_error(rc, err, "5", "batch larger than n_batch");
    b = (slm_batch){0, toks, NULL, NULL, NULL};
    TRY(&b);
    check_error(rc, err, NULL, "empty batch");
    err[0] = 0;
    check_error(slm_decode(c, NULL, err, sizeof err), err, NULL, "NULL batch");
    CHECK(slm_kv_seq_len(c, 0) == 0 && slm_kv_seq_len(c, 1) == 0);

    /* fill sequence 0 to the context size, then one more */
    CHECK(decode_seq(c, toks, 4, 0, false) && decode_seq(c, toks, 4, 0, false));
    CHECK(slm_kv_seq_len(c, 0) == 8);
    b = (slm_batch){1, toks, NULL, NULL, NULL};
    TRY(&b);
    check_error(rc, err, "context", "decoding past the context");
    CHECK(slm_kv_seq_len(c, 0) == 8);
    /* a rejected batch leaves every sequence as it was: sequence 1 still decodes normally */
    int32_t s1[2] = {1, 1};
    b = (slm_batch){2, toks, NULL, s1, NULL};
    CHECKF(TRY(&b) == 0, "decode after errors: %s", err);
    CHECK(slm_kv_seq_len(c, 1) == 2 && slm_kv_seq_len(c, 0) == 8);
    float want[2 * N_VOCAB];
    fresh_logits(tm->model, toks, 2, want);
    if (rc == 0) CHECK(max_abs_diff(slm_logits(c, 0), want + N_VOCAB, N_VOCAB) <= 1e-5);
#undef TRY
    slm_context_free(c);

    /* context parameters */
    slm_context_params p = slm_context_default_params();
    slm_context *bad = NULL;
    p.n_ctx = tm->spec.n_ctx_train + 1;
    err[0] = 0;
    rc = slm_context_new(tm->model, &p, &bad, err, sizeof err);
    check_error(rc, err, "65", "n_ctx larger than the trained context");
    CHECK(bad == NULL);
    p.n_ctx = -1;
    err[0] = 0;
    check_error(slm_context_new(tm->model, &p, &bad, err, sizeof err), err, NULL, "negative n_ctx");
    CHECK(bad == NULL);
    p = slm_context_default_params();
    p.n_seq = 257;
    err[0] = 0;
    check_error(slm_context_new(tm->model, &p, &bad, err, sizeof err), err, "257", "too many sequences");
    p = slm_context_default_params();
    p.n_batch = 9000;
    err[0] = 0;
    check_error(slm_context_new(tm->model, &p, &bad, err, sizeof err), err, "9000", "batch over the limit");
    CHECK(bad == NULL);
    /* the default is the trained context (below 4096) */
    p = slm_context_default_params();
    p.n_threads = 1;
    if (slm_context_new(tm->model, &p, &bad, err, sizeof err) == 0) {
        CHECK(slm_context_n_ctx(bad) == tm->spec.n_ctx_train && slm_context_n_seq(bad) == 1 &&
              slm_context_n_batch(bad) == 512 && slm_context_model(bad) == tm->model);
        slm_context_free(bad);
    } else {
        CHECKF(0, "default context: %s", err);
    }

    /* a vocab-only model tokenizes but cannot run */
    slm_model_params mp = {.vocab_only = true};
    slm_model *vm = NULL;
    err[0] = 0;
    rc = slm_model_load(tm->path, &mp, &vm, err, sizeof err);
    CHECKF(rc == 0 && vm, "vocab-only load: %s", err);
    if (vm) {
        CHECK(slm_model_n_vocab(vm) == N_VOCAB);
        bad = NULL;
        err[0] = 0;
        check_error(slm_context_new(vm, NULL, &bad, err, sizeof err), err, "vocab", "context on a vocab-only model");
        CHECK(bad == NULL);
        slm_model_free(vm);
    }
}

static void expect_load_error(const tiny_spec *s, const char *name, const char *must_name) {
    char path[320];
    model_path(path, sizeof path, name);
    ref_model ref;
    build_model(s, path, &ref);
    ref_free(&ref);
    slm_model *m = (slm_model *)(uintptr_t)1;
    char err[512] = "";
    int rc = slm_model_load(path, NULL, &m, err, sizeof err);
    check_error(rc, err, must_name, name);
    CHECK(m == NULL);
    if (rc == 0 && m) slm_model_free(m);
    unlink(path);
}

static void test_load_errors(void) {
    tiny_spec s = llama_spec();
    s.omit_tensor = "blk.1.ffn_up.weight";
    expect_load_error(&s, "missing_tensor", "blk.1.ffn_up.weight");
    s = llama_spec();
    s.omit_tensor = "output_norm.weight";
    expect_load_error(&s, "missing_output_norm", "output_norm.weight");
    s = llama_spec();
    s.bad_shape_tensor = "blk.0.attn_k.weight";
    expect_load_error(&s, "wrong_shape", "blk.0.attn_k.weight");
    s = llama_spec();
    s.bad_shape_tensor = "blk.1.ffn_norm.weight";
    expect_load_error(&s, "wrong_shape_vector", "blk.1.ffn_norm.weight");
    s = llama_spec();
    s.bad_shape_tensor = "output.weight";
    expect_load_error(&s, "wrong_shape_output", "output.weight");
    s = llama_spec();
    s.rope_freqs = true;
    s.bad_shape_tensor = "rope_freqs.weight";
    expect_load_error(&s, "wrong_shape_rope_freqs", "rope_freqs.weight");
    s = llama_spec();
    s.bad_shape_tensor = "token_embd.weight";
    expect_load_error(&s, "embedding_rows_not_vocab", "token_embd.weight");
    s = llama_spec();
    s.n_head_kv = 3;
    expect_load_error(&s, "kv_heads_not_dividing", "kv head count 3");
    s = llama_spec();
    s.n_layer = 0;
    expect_load_error(&s, "zero_layers", "llama.block_count");
    s = qwen2_spec();
    s.omit_tensor = "blk.1.attn_v.bias";
    expect_load_error(&s, "qwen2_missing_bias", "blk.1.attn_v.bias");
    s = llama_spec();
    s.arch = "gpt9000";
    expect_load_error(&s, "unsupported_arch", "gpt9000");
    s = llama_spec();
    s.omit_key = "llama.embedding_length";
    expect_load_error(&s, "missing_embedding_length", "llama.embedding_length");
    s = qwen2_spec();
    s.omit_key = "qwen2.block_count";
    expect_load_error(&s, "missing_block_count", "qwen2.block_count");
    s = llama_spec();
    s.omit_key = "general.architecture";
    expect_load_error(&s, "missing_arch", "general.architecture");
    /* the other families validate their own tensors: a llama-shaped file under their names */
    s = llama_spec();
    s.arch = "phi3";
    expect_load_error(&s, "phi3_needs_fused_qkv", "attn_qkv.weight");
    s = llama_spec();
    s.arch = "gemma2";
    expect_load_error(&s, "gemma2_needs_post_norms", "post_attention_norm.weight");
    s = llama_spec();
    s.arch = "bert";
    expect_load_error(&s, "bert_needs_positions", "position_embd.weight");
    s = llama_spec();
    s.arch = "nomic-bert";
    expect_load_error(&s, "nomic_bert_needs_input_norm", "token_embd_norm.weight");

    char path[320], err[512] = "";
    model_path(path, sizeof path, "does_not_exist");
    slm_model *m = NULL;
    check_error(slm_model_load(path, NULL, &m, err, sizeof err), err, "does_not_exist", "missing file");
    CHECK(m == NULL);
}

/* ---------- 6: the generation loop ---------- */

typedef struct collected {
    char text[4096];
    size_t len;
    int calls, stop_after; /* stop_after > 0: return false on that call */
    int bad_utf8_chunks;   /* chunks that are not whole UTF-8 characters */
} collected;

/* Whether s[0..n) is a sequence of whole, well-formed UTF-8 characters. */
static bool whole_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int len = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3 : (s[i] >> 3) == 30 ? 4 : 0;
        if (!len || i + (size_t)len > n) return false;
        for (int k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        i += (size_t)len;
    }
    return true;
}

static bool collect(void *user, const char *text, size_t len) {
    collected *c = user;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
    }
    if (!whole_utf8((const unsigned char *)text, len)) c->bad_utf8_chunks++;
    c->calls++;
    return !(c->stop_after > 0 && c->calls >= c->stop_after);
}

/* Banned tokens and boosts applied the same way by hand and through the sampler's logit bias. */
typedef struct bias_set {
    slm_logit_bias items[N_VOCAB];
    int n;
} bias_set;

static bias_set words_only(float eos_bias) {
    bias_set b = {.n = 0};
    for (int t = 0; t < FIRST_WORD_TOKEN; t++)
        if (t != TOK_EOS || eos_bias == -INFINITY) b.items[b.n++] = (slm_logit_bias){t, -INFINITY};
    if (eos_bias != -INFINITY && eos_bias != 0) b.items[b.n++] = (slm_logit_bias){TOK_EOS, eos_bias};
    return b;
}

typedef struct hand_run {
    slm_token toks[64];
    int n;
    char text[4096];
    size_t len;
    size_t piece_end[64]; /* text length after each token */
} hand_run;

/* Greedy by hand: argmax (lowest id on ties) of the last logits plus the biases, EOG ends it,
 * then decode the pick one token at a time. min_tokens: EOG tokens are banned before that many. */
static void hand_greedy(slm_model *m, const slm_token *prompt, int n_prompt, int max_new, int min_tokens,
                        const bias_set *bias, hand_run *out) {
    memset(out, 0, sizeof *out);
    slm_context *c = new_ctx(m, 64, 1, 64, true, false);
    if (!c || !decode_seq(c, prompt, n_prompt, 0, false)) {
        slm_context_free(c);
        return;
    }
    float lg[N_VOCAB];
    while (out->n < max_new) {
        memcpy(lg, slm_logits(c, 0), sizeof lg);
        for (int i = 0; bias && i < bias->n; i++) lg[bias->items[i].token] += bias->items[i].bias;
        if (out->n < min_tokens)
            for (int t = 0; t < N_VOCAB; t++)
                if (slm_token_is_eog(m, t)) lg[t] = -INFINITY;
        slm_token best = 0;
        for (int t = 1; t < N_VOCAB; t++)
            if (lg[t] > lg[best]) best = t;
        if (slm_token_is_eog(m, best)) break;
        int n = slm_token_to_piece(m, best, false, out->text + out->len, (int)(sizeof out->text - out->len));
        if (n < 0) abort();
        out->len += (size_t)n;
        out->piece_end[out->n] = out->len;
        out->toks[out->n++] = best;
        if (!decode_seq(c, &best, 1, 0, false)) break;
    }
    slm_context_free(c);
}

static slm_sampler *greedy_sampler(slm_model *m, const bias_set *bias) {
    slm_sampler_params sp = slm_sampler_default_params();
    sp.temperature = 0;
    if (bias) {
        sp.logit_bias = bias->items;
        sp.n_logit_bias = bias->n;
    }
    slm_sampler *s = NULL;
    char err[256] = "";
    CHECKF(slm_sampler_new(m, &sp, &s, err, sizeof err) == 0 && s, "sampler: %s", err);
    return s;
}

/* Runs slm_generate on a fresh context; returns its status. */
static int run_generate(slm_model *m, int n_ctx, const bias_set *bias, const slm_token *prompt, int n_prompt,
                        const slm_generate_params *gp, collected *out, slm_generate_result *res, char *err,
                        size_t err_len) {
    slm_context *c = new_ctx(m, n_ctx, 1, 16, true, false);
    slm_sampler *s = greedy_sampler(m, bias);
    int rc = -1;
    if (c && s) rc = slm_generate(c, s, prompt, n_prompt, gp, collect, out, res, err, err_len);
    slm_sampler_free(s);
    slm_context_free(c);
    return rc;
}

static bool same_text(const collected *got, const char *want, size_t want_len) {
    return got->len == want_len && memcmp(got->text, want, want_len) == 0;
}

static void test_generate(test_model *tm) {
    slm_model *m = tm->model;
    if (!m) return;
    static const slm_token P[6] = {1, 282, 283, 284, 263, 279};
    char err[512];
    slm_generate_result r;
    hand_run h;
    int rc;

    /* plain greedy, no bias at all: whatever the model emits, bytes included */
    hand_greedy(m, P, 6, 10, 0, NULL, &h);
    collected got = {0};
    slm_generate_params gp = {.max_tokens = 10};
    err[0] = 0;
    rc = run_generate(m, 32, NULL, P, 6, &gp, &got, &r, err, sizeof err);
    CHECKF(rc == 0, "generate: %s", err);
    CHECKF(r.n_generated == h.n && same_text(&got, h.text, h.len), "%s: greedy generate (%d tokens) differs from argmax by hand (%d tokens)",
           tm->name, r.n_generated, h.n);
    CHECK(strcmp(r.finish_reason, h.n == 10 ? "length" : "stop") == 0);
    CHECK(r.n_prompt == 6 && r.n_prompt_cached == 0);

    /* only word tokens from here on: readable text to put stop strings in */
    bias_set words = words_only(-INFINITY);
    hand_greedy(m, P, 6, 12, 0, &words, &h);
    CHECK(h.n == 12);
    memset(&got, 0, sizeof got);
    rc = run_generate(m, 32, &words, P, 6, &gp, &got, &r, err, sizeof err);
    CHECKF(rc == 0 && r.n_generated == 10 && same_text(&got, h.text, h.piece_end[9]) &&
               strcmp(r.finish_reason, "length") == 0,
           "%s: max_tokens 10: %d tokens, finish %s, text '%.*s' vs '%.*s'", tm->name, r.n_generated, r.finish_reason,
           (int)got.len, got.text, (int)h.piece_end[9], h.text);

    /* stop strings: one inside a piece, one across two pieces (first occurring there, so the text
     * before it is held back between tokens), each beside one that never occurs */
    for (int kind = 0; kind < 2 && h.n == 12; kind++) {
        char stop_buf[8] = "";
        size_t at = 0, sl = 0;
        if (kind == 0) { /* the last 1-2 bytes of piece 5 */
            size_t b = h.piece_end[4], e = h.piece_end[5];
            at = e - b >= 2 ? e - 2 : b;
            sl = e - at;
        } else { /* the shortest window over a piece boundary whose first occurrence is there */
            for (int k = 1; k < 10 && !sl; k++)
                for (size_t len = 2; len <= 5 && !sl; len++)
                    for (size_t before = 1; before < len && !sl; before++) {
                        size_t a = h.piece_end[k] - before;
                        if (a < h.piece_end[k - 1] || a + len > h.len) continue;
                        if ((char *)memmem(h.text, h.len, h.text + a, len) == h.text + a) at = a, sl = len;
                    }
            CHECKF(sl > 0, "%s: no stop string across a boundary in '%.*s'", tm->name, (int)h.len, h.text);
            if (!sl) continue;
        }
        memcpy(stop_buf, h.text + at, sl);
        stop_buf[sl] = 0;
        const char *stops[2] = {"zzz never", stop_buf};
        /* expected: the text before the first occurrence, after the token that completed it */
        size_t cut = (size_t)((char *)memmem(h.text, h.len, stop_buf, sl) - h.text);
        int n_tok = 0;
        while (h.piece_end[n_tok] < cut + sl) n_tok++;
        slm_generate_params sgp = {.max_tokens = 12, .stop = stops, .n_stop = 2};
        memset(&got, 0, sizeof got);
        rc = run_generate(m, 32, &words, P, 6, &sgp, &got, &r, err, sizeof err);
        CHECKF(rc == 0 && same_text(&got, h.text, cut) && strcmp(r.finish_reason, "stop") == 0 &&
                   r.n_generated == n_tok + 1,
               "%s: stop '%s': got '%.*s' (%d tokens, %s), want '%.*s' (%d tokens)", tm->name, stop_buf, (int)got.len,
               got.text, r.n_generated, r.finish_reason, (int)cut, h.text, n_tok + 1);
    }

    /* a stop string that is the whole first piece: nothing is emitted */
    if (h.n > 0) {
        char first_piece[64];
        snprintf(first_piece, sizeof first_piece, "%.*s", (int)h.piece_end[0], h.text);
        const char *stops[1] = {first_piece};
        slm_generate_params sgp = {.max_tokens = 12, .stop = stops, .n_stop = 1};
        memset(&got, 0, sizeof got);
        rc = run_generate(m, 32, &words, P, 6, &sgp, &got, &r, err, sizeof err);
        CHECKF(rc == 0 && got.len == 0 && r.n_generated == 1 && strcmp(r.finish_reason, "stop") == 0,
               "%s: stop at the first piece: '%.*s', %d tokens", tm->name, (int)got.len, got.text, r.n_generated);
    }

    /* end of generation: eos forced to win ends the output at once with "stop" */
    bias_set eos_wins = words_only(1000.0f);
    memset(&got, 0, sizeof got);
    rc = run_generate(m, 32, &eos_wins, P, 6, &gp, &got, &r, err, sizeof err);
    CHECKF(rc == 0 && r.n_generated == 0 && got.len == 0 && strcmp(r.finish_reason, "stop") == 0,
           "%s: eos: %d tokens, %s", tm->name, r.n_generated, r.finish_reason);
    /* ... unless min_tokens holds it back */
    hand_greedy(m, P, 6, 12, 3, &eos_wins, &h);
    slm_generate_params mgp = {.max_tokens = 12, .min_tokens = 3};
    memset(&got, 0, sizeof got);
    rc = run_generate(m, 32, &eos_wins, P, 6, &mgp, &got, &r, err, sizeof err);
    CHECKF(rc == 0 && h.n == 3 && r.n_generated == 3 && same_text(&got, h.text, h.len) &&
               strcmp(r.finish_reason, "stop") == 0,
           "%s: min_tokens 3: %d tokens (by hand %d), %s", tm->name, r.n_generated, h.n, r.finish_reason);
    /* ... or ignore_eos does, up to max_tokens */
    slm_generate_params igp = {.max_tokens = 5, .ignore_eos = true};
    memset(&got, 0, sizeof got);
    rc = run_generate(m, 32, &eos_wins, P, 6, &igp, &got, &r, err, sizeof err);
    CHECKF(rc == 0 && r.n_generated == 5 && strcmp(r.finish_reason, "length") == 0, "%s: ignore_eos: %d tokens, %s",
           tm->name, r.n_generated, r.finish_reason);

    /* no max_tokens: generation runs until the context is full */
    slm_generate_params fgp = {0};
    memset(&got, 0, sizeof got);
    rc = run_generate(m, 16, &words, P, 6, &fgp, &got, &r, err, sizeof err);
    hand_greedy(m, P, 6, 10, 0, &words, &h);
    CHECKF(rc == 0 && r.n_generated == 10 && strcmp(r.finish_reason, "length") == 0 && same_text(&got, h.text, h.len),
           "%s: until the context is full: %d tokens, %s", tm->name, r.n_generated, r.finish_reason);

    /* the callback cancels */
    memset(&got, 0, sizeof got);
    got.stop_after = 1;
    rc = run_generate(m, 32, &words, P, 6, &gp, &got, &r, err, sizeof err);
    CHECKF(rc == 0 && strcmp(r.finish_reason, "cancelled") == 0 && got.calls == 1 && r.n_generated < 10,
           "%s: cancel: %s after %d calls", tm->name, r.finish_reason, got.calls);

    /* prompts that do not fit are errors, never truncated */
    slm_token longp[17];
    for (int i = 0; i < 17; i++) longp[i] = (slm_token)(FIRST_WORD_TOKEN + i);
    memset(&got, 0, sizeof got);
    err[0] = 0;
    rc = run_generate(m, 16, &words, longp, 17, &fgp, &got, &r, err, sizeof err);
    check_error(rc, err, "17", "prompt longer than the context");
    CHECK(got.len == 0);
    err[0] = 0;
    slm_generate_params big = {.max_tokens = 11};
    rc = run_generate(m, 16, &words, P, 6, &big, &got, &r, err, sizeof err);
    check_error(rc, err, "16", "prompt + max_tokens past the context");
    err[0] = 0;
    rc = run_generate(m, 16, &words, P, 0, &fgp, &got, &r, err, sizeof err);
    check_error(rc, err, NULL, "empty prompt");
    slm_generate_params bad_seq = {.seq = 1};
    err[0] = 0;
    rc = run_generate(m, 16, &words, P, 6, &bad_seq, &got, &r, err, sizeof err);
    check_error(rc, err, "1", "sequence outside the context");

    /* prefix reuse on sequence 1 of a two-sequence context */
    slm_context *c = new_ctx(m, 32, 2, 4, true, false); /* n_batch 4: prompts go in several chunks */
    slm_sampler *s = greedy_sampler(m, &words);
    if (c && s) {
        static const slm_token P2[8] = {1, 282, 283, 284, 290, 291, 292, 293};
        hand_run h1, h2;
        hand_greedy(m, P, 6, 6, 0, &words, &h1);
        hand_greedy(m, P2, 8, 6, 0, &words, &h2);
        slm_generate_params rgp = {.max_tokens = 6, .seq = 1};
        collected g1 = {0}, g2 = {0}, g3 = {0};
        slm_generate_result r1, r2, r3;
        rc = slm_generate(c, s, P, 6, &rgp, collect, &g1, &r1, err, sizeof err);
        CHECKF(rc == 0 && r1.n_prompt_cached == 0 && same_text(&g1, h1.text, h1.len), "%s: reuse, first call",
               tm->name);
        CHECK(slm_kv_seq_len(c, 0) == 0);
        /* the same prompt again: everything but the last prompt token comes from the cache */
        rc = slm_generate(c, s, P, 6, &rgp, collect, &g2, &r2, err, sizeof err);
        CHECKF(rc == 0 && r2.n_prompt_cached == 5 && same_text(&g2, h1.text, h1.len),
               "%s: same prompt again: cached %d, text '%.*s' vs '%.*s'", tm->name, r2.n_prompt_cached, (int)g2.len,
               g2.text, (int)h1.len, h1.text);
        /* a prompt sharing the first 4 tokens */
        rc = slm_generate(c, s, P2, 8, &rgp, collect, &g3, &r3, err, sizeof err);
        CHECKF(rc == 0 && r3.n_prompt_cached == 4 && r3.n_prompt == 8 && same_text(&g3, h2.text, h2.len),
               "%s: shared prefix: cached %d, text '%.*s' vs '%.*s'", tm->name, r3.n_prompt_cached, (int)g3.len,
               g3.text, (int)h2.len, h2.text);
        const slm_token *kt = slm_kv_seq_tokens(c, 1);
        CHECK(kt && memcmp(kt, P2, sizeof P2) == 0);
        /* the cache now holds the prompt and what was generated (the last pick need not be decoded) */
        int kl = slm_kv_seq_len(c, 1);
        CHECKF(kl >= 8 + h2.n - 1 && kl <= 8 + h2.n && memcmp(kt + 8, h2.toks, sizeof(slm_token) * (size_t)(kl - 8)) == 0,
               "%s: KV after generation holds %d tokens", tm->name, kl);
    }
    slm_sampler_free(s);
    slm_context_free(c);
}

/* ---------- 6 (continued): a scripted model, to drive the streaming rules exactly ---------- */

/* A llama model whose greedy output is fixed: attention and feed-forward weights are zero, so the
 * final state is the normed embedding of the current token; script token i has the one-hot
 * embedding e_i and output row script[i+1] points at e_i. So after script[0] the model emits
 * script[1], script[2], ... and then </s>. Script tokens must be distinct (at most n_embd). */
static void build_scripted_model(const char *path, const slm_token *script, int n) {
    enum { E = 32, F = 64, L = 1 };
    if (n > E) abort();
    gguf_writer w;
    gw_init(&w);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.context_length", 64);
    gw_kv_u32(&w, "llama.embedding_length", E);
    gw_kv_u32(&w, "llama.block_count", L);
    gw_kv_u32(&w, "llama.feed_forward_length", F);
    gw_kv_u32(&w, "llama.attention.head_count", 4);
    gw_kv_u32(&w, "llama.attention.head_count_kv", 2);
    write_vocab(&w);
    float *emb = calloc((size_t)N_VOCAB * E, sizeof *emb), *out = calloc((size_t)N_VOCAB * E, sizeof *out);
    float *zeros = calloc((size_t)E * F, sizeof *zeros), ones[E];
    if (!emb || !out || !zeros) abort();
    for (int i = 0; i < E; i++) ones[i] = 1.0f;
    for (int i = 0; i < n; i++) {
        emb[(size_t)script[i] * E + i] = 1.0f;
        slm_token next = i + 1 < n ? script[i + 1] : TOK_EOS;
        out[(size_t)next * E + i] = 1.0f;
    }
    uint64_t vec[1] = {E}, emb_ne[2] = {E, N_VOCAB}, sq[2] = {E, E}, kv[2] = {E, 16}, up[2] = {E, F}, down[2] = {F, E};
    gw_tensor(&w, "token_embd.weight", GW_TYPE_F32, 2, emb_ne, emb, NULL);
    gw_tensor(&w, "output.weight", GW_TYPE_F32, 2, emb_ne, out, NULL);
    gw_tensor(&w, "output_norm.weight", GW_TYPE_F32, 1, vec, ones, NULL);
    gw_tensor(&w, "blk.0.attn_norm.weight", GW_TYPE_F32, 1, vec, ones, NULL);
    gw_tensor(&w, "blk.0.ffn_norm.weight", GW_TYPE_F32, 1, vec, ones, NULL);
    gw_tensor(&w, "blk.0.attn_q.weight", GW_TYPE_F32, 2, sq, zeros, NULL);
    gw_tensor(&w, "blk.0.attn_k.weight", GW_TYPE_F32, 2, kv, zeros, NULL);
    gw_tensor(&w, "blk.0.attn_v.weight", GW_TYPE_F32, 2, kv, zeros, NULL);
    gw_tensor(&w, "blk.0.attn_output.weight", GW_TYPE_F32, 2, sq, zeros, NULL);
    gw_tensor(&w, "blk.0.ffn_gate.weight", GW_TYPE_F32, 2, up, zeros, NULL);
    gw_tensor(&w, "blk.0.ffn_up.weight", GW_TYPE_F32, 2, up, zeros, NULL);
    gw_tensor(&w, "blk.0.ffn_down.weight", GW_TYPE_F32, 2, down, zeros, NULL);
    if (gw_write_file(&w, path) != 0) abort();
    gw_free(&w);
    free(emb), free(out), free(zeros);
}

static slm_token byte_tok(unsigned char b) { return (slm_token)(FIRST_BYTE_TOKEN + b); }

/* The id of a word token by its text (with SP for the space mark). */
static slm_token word_tok(const char *text) {
    for (int i = 0; i < N_WORDS; i++)
        if (strcmp(word_tokens[i], text) == 0) return (slm_token)(FIRST_WORD_TOKEN + i);
    abort();
}

typedef struct scripted_case {
    const char *what;
    slm_token script[16];
    int n;                  /* script[0] ends the prompt; script[1..n) is what the model says */
    const char *stops[2];
    int n_stop, max_tokens;
    const char *want;       /* the text the callback must receive */
    size_t want_len;
    const char *finish;
    int n_generated;
} scripted_case;

static void test_generate_scripted(void) {
    const slm_token a = word_tok("a"), b = word_tok("b"), c = word_tok("c"), x = word_tok("!"), the = word_tok(SP "the");
    const slm_token c3 = byte_tok(0xC3), a9 = byte_tok(0xA9), e2 = byte_tok(0xE2), b82 = byte_tok(0x82),
                    bac = byte_tok(0xAC), nul = byte_tok(0x00), ff = byte_tok(0xFF);
    scripted_case cases[] = {
        {"multi-byte characters from byte tokens stream whole", {TOK_BOS, c3, a9, a, e2, b82, bac, x}, 8, {0}, 0, 0,
         "\xC3\xA9" "a" "\xE2\x82\xAC" "!", 7, "stop", 7},
        {"a stop string that is one multi-byte character", {TOK_BOS, c3, a9, a, e2, b82, bac, x}, 8, {"\xE2\x82\xAC"}, 1,
         0, "\xC3\xA9" "a", 3, "stop", 6},
        {"a stop string over three tokens", {TOK_BOS, a, b, c, x}, 5, {"zz", "bc!"}, 2, 0, "a", 1, "stop", 4},
        {"a held stop prefix that does not complete is released", {TOK_BOS, a, b, c}, 4, {"ab!"}, 1, 0, "abc", 3,
         "stop", 3},
        {"a held stop prefix is flushed when max_tokens ends", {TOK_BOS, a, b, c}, 4, {"bz"}, 1, 2, "ab", 2, "length",
         2},
        {"a NUL byte passes through and the stop after it is found", {TOK_BOS, a, nul, b, c}, 5, {"bc"}, 1, 0, "a\0",
         2, "stop", 4},
        {"the space mark renders as a space", {TOK_BOS, the, a, x}, 4, {0}, 0, 0, " thea!", 6, "stop", 3},
        {"an invalid byte is not held forever", {TOK_BOS, a, ff, b}, 4, {0}, 0, 0, "a\xFF" "b", 3, "stop", 3},
        {"the earliest of two stop strings wins", {TOK_BOS, a, b, c, x}, 5, {"c!", "b"}, 2, 0, "a", 1, "stop", 2},
    };
    char path[320];
    model_path(path, sizeof path, "scripted");
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const scripted_case *sc = &cases[k];
        build_scripted_model(path, sc->script, sc->n);
        slm_model *m = load(path);
        if (!m) continue;
        slm_context *ctx = new_ctx(m, 32, 1, 8, true, false);
        slm_sampler *smp = greedy_sampler(m, NULL);
        if (ctx && smp) {
            slm_generate_params gp = {.max_tokens = sc->max_tokens, .stop = sc->stops, .n_stop = sc->n_stop};
            collected got = {0};
            slm_generate_result r;
            char err[256] = "";
            int rc = slm_generate(ctx, smp, sc->script, 1, &gp, collect, &got, &r, err, sizeof err);
            CHECKF(rc == 0, "%s: %s", sc->what, err);
            bool bytes_ok = got.len == sc->want_len && memcmp(got.text, sc->want, sc->want_len) == 0;
            CHECKF(rc == 0 && bytes_ok && strcmp(r.finish_reason, sc->finish) == 0 && r.n_generated == sc->n_generated,
                   "%s: got %zu bytes, %s after %d tokens; want %zu bytes, %s after %d", sc->what, got.len,
                   rc == 0 ? r.finish_reason : "error", r.n_generated, sc->want_len, sc->finish, sc->n_generated);
            /* every chunk is whole characters, unless the model itself emitted an invalid byte */
            bool valid_output = whole_utf8((const unsigned char *)sc->want, sc->want_len);
            CHECKF(!valid_output || got.bad_utf8_chunks == 0, "%s: %d chunks split a character", sc->what,
                   got.bad_utf8_chunks);
        }
        slm_sampler_free(smp);
        slm_context_free(ctx);
        slm_model_free(m);
    }
    unlink(path);
}

/* ---------- main ---------- */

static void remove_tmp_dir(void) {
    for (int i = 0; i < N_MODELS; i++) {
        if (models[i].model) slm_model_free(models[i].model);
        ref_free(&models[i].ref);
        if (models[i].path[0]) unlink(models[i].path);
    }
    rmdir(tmp_dir);
}

/* Gemma-2's capped softmax on every ISA this CPU has, against tanh and exp in double: the vector
 * tanh (from the exp kernel) stays within 5e-6 of each probability (a cap-sized score is only
 * known to an ulp of 50), and cap 0 is a plain softmax. */
static void test_softmax_capped(void) {
    static float s[1024];
    static double ref[1024];
    uint32_t rng = 12345;
    for (int isa = SLM_ISA_SCALAR; isa <= SLM_ISA_AVX512; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        double worst = 0;
        const int sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 100, 1000};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (int capped = 0; capped < 2; capped++) {
                int n = sizes[si];
                float cap = capped ? 50.0f : 0.0f;
                for (int j = 0; j < n; j++) {
                    rng = rng * 1664525u + 1013904223u;
                    s[j] = ((float)(rng >> 8) / 16777216.0f - 0.5f) * (j % 3 ? 40.0f : 400.0f); /* some past the cap */
                    if (j == 1) s[j] = 1e-6f;
                    ref[j] = capped ? cap * tanh((double)s[j] / cap) : s[j];
                }
                double max = -1e300, sum = 0;
                for (int j = 0; j < n; j++) max = ref[j] > max ? ref[j] : max;
                for (int j = 0; j < n; j++) sum += exp(ref[j] - max);
                t->softmax_capped(n, s, cap);
                for (int j = 0; j < n; j++) {
                    double d = fabs(s[j] - exp(ref[j] - max) / sum);
                    if (d > worst) worst = d;
                }
            }
        }
        fprintf(stderr, "  softmax_capped %-7s max |dp| vs double %.2e\n", slm_isa_level_name((slm_isa)isa), worst);
        CHECKF(worst <= 5e-6, "softmax_capped on %s: %.3g", slm_isa_level_name((slm_isa)isa), worst);
    }
}

/* Gemma-2's final logit soft-cap on every ISA this CPU has, against tanh in double: within 8e-6
 * (four ulp of the cap 30, as libm's tanhf gives) for logits of both signs, far past the cap too,
 * at lengths around the vector widths so that the scalar tails are covered. */
static void test_softcap(void) {
    static float x[1100];
    uint32_t rng = 777;
    for (int isa = SLM_ISA_SCALAR; isa <= SLM_ISA_AVX512; isa++) {
        const slm_kernel_table *t = slm_kernels_for_isa((slm_isa)isa);
        if (!t) continue;
        CHECKF(t->softcap != NULL, "softcap missing on %s", slm_isa_level_name((slm_isa)isa));
        if (!t->softcap) continue;
        double worst = 0;
        const int sizes[] = {1, 7, 8, 9, 16, 17, 1000, 1100};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int n = sizes[si];
            const float cap = 30.0f;
            double ref[1100];
            for (int j = 0; j < n; j++) {
                rng = rng * 1664525u + 1013904223u;
                x[j] = ((float)(rng >> 8) / 16777216.0f - 0.5f) * (j % 4 ? 60.0f : 600.0f);
                if (j == 2) x[j] = -1e-7f;
                ref[j] = cap * tanh((double)x[j] / cap);
            }
            t->softcap(n, x, cap);
            for (int j = 0; j < n; j++) {
                double d = fabs(x[j] - ref[j]);
                if (d > worst) worst = d;
            }
        }
        fprintf(stderr, "  softcap        %-7s max |dx| vs double %.2e\n", slm_isa_level_name((slm_isa)isa), worst);
        CHECKF(worst <= 8e-6, "softcap on %s: %.3g", slm_isa_level_name((slm_isa)isa), worst);
    }
}

int main(void) {
    test_softmax_capped();
    test_softcap();
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/slm_test_model_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    build_models();
    for (int i = 0; i < N_MODELS; i++) test_reference(&models[i]);
    for (int i = 0; i < N_MODELS; i++) {
        test_batch_equivalence(&models[i], true);
        test_batch_equivalence(&models[i], false);
    }
    for (int exact = 1; exact >= 0; exact--) {
        test_multi_sequence(&models[M_LLAMA_F32], exact);
        test_multi_sequence(&models[M_QWEN2_F16], exact);
        test_multi_sequence(&models[M_QWEN2_MQA], exact);
        test_multi_sequence(&models[M_LLAMA_Q8], exact);
    }
    test_embeddings_per_sequence(&models[M_QWEN2_MQA]);
    test_decode_errors(&models[M_LLAMA_F32]);
    test_load_errors();
    test_generate(&models[M_LLAMA_F32]);
    test_generate(&models[M_QWEN2_F16]);
    test_generate_scripted();
    remove_tmp_dir();
    return test_report("test_model");
}
