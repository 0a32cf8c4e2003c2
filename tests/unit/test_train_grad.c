/* Fine-tuning's backward pass against central finite differences: on tiny llama (f32 and Q8_0
 * weights, GQA, several layers) and qwen2 (biases, NEOX rope) models built here, the analytic
 * gradient of every LoRA tensor type (A and B of q, k, v, o, gate, up, down) must match the
 * numerical derivative of the loss. Each layer's LoRA gradient flows back through every op above it
 * (attention, RoPE, RMSNorm, SwiGLU, the residuals, the output head and cross-entropy), so a broken
 * backward op shows up as a large relative error. Also: a loss mask, determinism across thread
 * counts, AdamW's first step and the target-list parser. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_writer.h"
#include "test.h"
#include "train/train_impl.h"

enum { N_VOCAB = 48, TOK_UNK = 0, TOK_BOS = 1, TOK_EOS = 2 };

static uint64_t rng_state = 12345;
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)train_rng_uniform(&rng_state); }

static void put_matrix(gguf_writer *w, const char *name, uint32_t type, int k, int m, float amp) {
    float *v = malloc(sizeof(float) * (size_t)k * (size_t)m);
    if (!v) abort();
    for (size_t i = 0; i < (size_t)k * (size_t)m; i++) v[i] = frand(-amp, amp);
    gw_tensor(w, name, type, 2, (uint64_t[]){(uint64_t)k, (uint64_t)m}, v, NULL);
    free(v);
}

static void put_vector(gguf_writer *w, const char *name, int n, float lo, float hi) {
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) abort();
    for (int i = 0; i < n; i++) v[i] = frand(lo, hi);
    gw_tensor(w, name, GW_TYPE_F32, 1, (uint64_t[]){(uint64_t)n}, v, NULL);
    free(v);
}

/* E 32 (Q8_0 rows need multiples of 32), 4 query heads over 2 KV heads of 8, F 64. */
static void build(const char *path, const char *arch, uint32_t wtype, int n_layer, bool bias) {
    enum { E = 32, F = 64, H = 4, HKV = 2, HD = 8 };
    gguf_writer w;
    gw_init(&w);
    char key[96];
    gw_kv_str(&w, "general.architecture", arch);
#define KV(suffix, v) (snprintf(key, sizeof key, "%s." suffix, arch), gw_kv_u32(&w, key, (v)))
    KV("context_length", 64);
    KV("embedding_length", E);
    KV("block_count", (uint32_t)n_layer);
    KV("feed_forward_length", F);
    KV("attention.head_count", H);
    KV("attention.head_count_kv", HKV);
#undef KV
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    gw_kv_f32(&w, key, 1e-5f);
    const char *texts[N_VOCAB];
    static char names[N_VOCAB][8];
    float scores[N_VOCAB];
    int32_t types[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        texts[i] = names[i];
        scores[i] = -(float)i;
        types[i] = 1;
    }
    texts[TOK_UNK] = "<unk>", types[TOK_UNK] = 2;
    texts[TOK_BOS] = "<s>", types[TOK_BOS] = 3;
    texts[TOK_EOS] = "</s>", types[TOK_EOS] = 3;
    gw_kv_str(&w, "tokenizer.ggml.model", "llama");
    gw_kv_str_arr(&w, "tokenizer.ggml.tokens", texts, N_VOCAB);
    gw_kv_f32_arr(&w, "tokenizer.ggml.scores", scores, N_VOCAB);
    gw_kv_i32_arr(&w, "tokenizer.ggml.token_type", types, N_VOCAB);
    gw_kv_u32(&w, "tokenizer.ggml.bos_token_id", TOK_BOS);
    gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", TOK_EOS);
    gw_kv_u32(&w, "tokenizer.ggml.unknown_token_id", TOK_UNK);
    put_matrix(&w, "token_embd.weight", wtype, E, N_VOCAB, 1.0f);
    put_matrix(&w, "output.weight", wtype, E, N_VOCAB, 0.5f);
    put_vector(&w, "output_norm.weight", E, 0.8f, 1.2f);
    for (int l = 0; l < n_layer; l++) {
        char name[64];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        put_vector(&w, NAME("attn_norm.weight"), E, 0.8f, 1.2f);
        put_vector(&w, NAME("ffn_norm.weight"), E, 0.8f, 1.2f);
        /* large enough that attention is far from uniform and SwiGLU far from linear */
        put_matrix(&w, NAME("attn_q.weight"), wtype, E, H * HD, 0.6f);
        put_matrix(&w, NAME("attn_k.weight"), wtype, E, HKV * HD, 0.6f);
        put_matrix(&w, NAME("attn_v.weight"), wtype, E, HKV * HD, 0.4f);
        put_matrix(&w, NAME("attn_output.weight"), wtype, H * HD, E, 0.3f);
        put_matrix(&w, NAME("ffn_gate.weight"), wtype, E, F, 0.4f);
        put_matrix(&w, NAME("ffn_up.weight"), wtype, E, F, 0.4f);
        put_matrix(&w, NAME("ffn_down.weight"), wtype, F, E, 0.3f);
        if (bias) {
            put_vector(&w, NAME("attn_q.bias"), H * HD, -0.5f, 0.5f);
            put_vector(&w, NAME("attn_k.bias"), HKV * HD, -0.5f, 0.5f);
            put_vector(&w, NAME("attn_v.bias"), HKV * HD, -0.5f, 0.5f);
        }
#undef NAME
    }
    if (gw_write_file(&w, path) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    gw_free(&w);
}

static const slm_token seq[] = {1, 5, 9, 17, 33, 4, 40, 22, 7, 13, 29, 3};
enum { SEQ_N = (int)(sizeof seq / sizeof seq[0]) };

static double loss_at(train_ws *ws, const uint8_t *mask) {
    int n;
    return train_seq(ws, seq, mask, SEQ_N, false, 1.0f, &n);
}

/* Compares the analytic gradient with (L(w+eps) - L(w-eps)) / 2eps on a sample of each tensor.
 * Returns the worst relative error ||num - ana|| / max(||num||, ||ana||) over the tensors. */
static double grad_check(const char *label, const char *path, const uint8_t *mask, int threads, bool exact) {
    char err[256];
    slm_model *m = NULL;
    if (slm_model_load(path, NULL, &m, err, sizeof err) != 0) {
        CHECKF(0, "%s: load: %s", label, err);
        return 1;
    }
    lora_set *set = lora_set_new(m, 3, 6.0f, SLM_LORA_ALL, err, sizeof err);
    CHECKF(set != NULL, "%s: %s", label, err);
    if (!set) return 1;
    lora_set_init(set, 7);
    /* B = 0 would zero every A gradient: give B values so both halves are exercised */
    for (int i = 0; i < set->n_pairs; i++) {
        float *b = set->w + set->pairs[i].off_b;
        for (int j = 0; j < set->rank * set->pairs[i].n_out; j++) b[j] = frand(-0.3f, 0.3f);
    }
    slm_pool *pool = threads > 1 ? slm_pool_new(threads) : NULL;
    train_ws *ws = train_ws_new(m, set, 16, pool, exact, err, sizeof err);
    CHECKF(ws != NULL, "%s: %s", label, err);
    if (!ws) return 1;
    train_ws_set_min_parallel_work(ws, 0);
    int n_counted = 0;
    double loss = train_seq(ws, seq, mask, SEQ_N, true, 1.0f, &n_counted);
    CHECKF(isfinite(loss) && n_counted > 0, "%s: loss %g over %d", label, loss, n_counted);
    double worst = 0;
    const double eps = 2e-3;
    for (int pi = 0; pi < set->n_pairs; pi++) {
        const lora_pair *p = &set->pairs[pi];
        for (int half = 0; half < 2; half++) {
            size_t off = half ? p->off_b : p->off_a;
            size_t count = (size_t)set->rank * (size_t)(half ? p->n_out : p->n_in);
            double dn = 0, nn = 0, na = 0;
            for (int s = 0; s < 6; s++) {
                size_t i = off + (size_t)(train_rng_next(&rng_state) % count);
                float keep = set->w[i];
                set->w[i] = keep + (float)eps;
                double lp = loss_at(ws, mask);
                set->w[i] = keep - (float)eps;
                double lm = loss_at(ws, mask);
                set->w[i] = keep;
                /* the step actually taken in f32 */
                double h = (double)(keep + (float)eps) - (double)(keep - (float)eps);
                double num = (lp - lm) / h, ana = set->g[i];
                dn += (num - ana) * (num - ana);
                nn += num * num;
                na += ana * ana;
            }
            double scale = sqrt(nn > na ? nn : na);
            double rel = scale > 1e-9 ? sqrt(dn) / scale : sqrt(dn);
            CHECKF(scale > 1e-6, "%s: layer %d %s.%s: gradient is zero (the check would prove nothing)", label, p->layer,
                   slm_lora_target_tensor(p->target), half ? "lora_b" : "lora_a");
            CHECKF(rel < 2e-2, "%s: layer %d %s.%s: relative error %.3g (|grad| %.3g)", label, p->layer,
                   slm_lora_target_tensor(p->target), half ? "lora_b" : "lora_a", rel, scale);
            if (rel > worst) worst = rel;
        }
    }
    fprintf(stderr, "%s: loss %.5f over %d tokens, worst relative gradient error %.2e\n", label, loss, n_counted, worst);
    train_ws_free(ws);
    lora_set_free(set);
    if (pool) slm_pool_free(pool);
    slm_model_free(m);
    return worst;
}

/* Gradients (and loss) with 1 and 2 threads must agree bit for bit: the work is split without
 * changing any sum's order. */
static void check_thread_determinism(const char *path) {
    char err[256];
    slm_model *m = NULL;
    if (slm_model_load(path, NULL, &m, err, sizeof err) != 0) {
        CHECKF(0, "load: %s", err);
        return;
    }
    float *g[2] = {NULL, NULL};
    double loss[2] = {0, 0};
    size_t n = 0;
    for (int run = 0; run < 2; run++) {
        lora_set *set = lora_set_new(m, 4, 8.0f, SLM_LORA_ALL, err, sizeof err);
        if (!set) abort();
        lora_set_init(set, 99);
        for (size_t i = 0; i < set->n_params; i++) set->w[i] += 0.01f * (float)((i * 7919) % 13) - 0.06f;
        slm_pool *pool = slm_pool_new(run + 1);
        train_ws *ws = train_ws_new(m, set, 16, pool, false, err, sizeof err);
        if (!ws) abort();
        train_ws_set_min_parallel_work(ws, 0); /* split even the tiny steps */
        int nc;
        loss[run] = train_seq(ws, seq, NULL, SEQ_N, true, 0.5f, &nc);
        n = set->n_params;
        g[run] = malloc(sizeof(float) * n);
        memcpy(g[run], set->g, sizeof(float) * n);
        train_ws_free(ws);
        slm_pool_free(pool);
        lora_set_free(set);
    }
    CHECKF(loss[0] == loss[1], "loss %.17g (1 thread) vs %.17g (2 threads)", loss[0], loss[1]);
    CHECK(memcmp(g[0], g[1], sizeof(float) * n) == 0);
    free(g[0]);
    free(g[1]);
    slm_model_free(m);
}

static void check_adamw(void) {
    adamw o;
    CHECK(adamw_init(&o, 3) == 0);
    float w[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.5f, -0.25f, 0.0f};
    adamw_step(&o, w, g, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f);
    /* first bias-corrected step: m_hat = g, v_hat = g^2, so each moves by lr * sign(g) */
    CHECKF(fabsf(w[0] - 0.9f) < 1e-6f && fabsf(w[1] + 1.9f) < 1e-6f && w[2] == 0.5f, "%g %g %g", w[0], w[1], w[2]);
    float w2[1] = {2.0f}, g2[1] = {0.0f};
    adamw o2;
    CHECK(adamw_init(&o2, 1) == 0);
    adamw_step(&o2, w2, g2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.5f); /* decoupled decay: w -= lr * wd * w */
    CHECKF(fabsf(w2[0] - 1.9f) < 1e-6f, "%g", w2[0]);
    adamw_free(&o);
    adamw_free(&o2);
    float v[2] = {3, 4};
    CHECK(fabs(grad_norm(v, 2) - 5.0) < 1e-12);
}

static void check_targets(void) {
    unsigned mask = 0;
    char err[256];
    CHECK(slm_lora_targets_parse("q,v", &mask, err, sizeof err) == 0 && mask == (SLM_LORA_Q | SLM_LORA_V));
    CHECK(slm_lora_targets_parse("all", &mask, err, sizeof err) == 0 && mask == SLM_LORA_ALL);
    CHECK(slm_lora_targets_parse("attn_output,ffn_down", &mask, err, sizeof err) == 0 &&
          mask == (SLM_LORA_O | SLM_LORA_DOWN));
    CHECK(slm_lora_targets_parse("q,x", &mask, err, sizeof err) != 0 && strstr(err, "'x'"));
    CHECK(slm_lora_targets_parse("q,q", &mask, err, sizeof err) != 0 && strstr(err, "twice"));
    CHECK(slm_lora_targets_parse("", &mask, err, sizeof err) != 0);
    CHECK(slm_lora_targets_parse("q,", &mask, err, sizeof err) != 0);
}

int main(void) {
    char dir[] = "/tmp/slm_train_grad_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char llama_f32[256], llama_q8[256], qwen[256];
    snprintf(llama_f32, sizeof llama_f32, "%s/llama_f32.gguf", dir);
    snprintf(llama_q8, sizeof llama_q8, "%s/llama_q8.gguf", dir);
    snprintf(qwen, sizeof qwen, "%s/qwen2.gguf", dir);
    build(llama_f32, "llama", GW_TYPE_F32, 2, false);
    build(llama_q8, "llama", GW_TYPE_Q8_0, 2, false);
    build(qwen, "qwen2", GW_TYPE_F32, 2, true);

    grad_check("llama f32", llama_f32, NULL, 1, true);
    grad_check("llama q8_0, 2 threads", llama_q8, NULL, 2, true);
    grad_check("qwen2 (biases, neox rope)", qwen, NULL, 1, true);
    /* the fast path: W^T dy through the float GEMM on transposed tiles (f32 weights keep f32 activations) */
    grad_check("llama f32, fast path, 2 threads", llama_f32, NULL, 2, false);
    /* loss on some targets only (chat data: assistant tokens) */
    uint8_t mask[SEQ_N] = {0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1};
    grad_check("llama f32, loss mask", llama_f32, mask, 1, true);
    check_thread_determinism(llama_q8);
    check_adamw();
    check_targets();

    unlink(llama_f32);
    unlink(llama_q8);
    unlink(qwen);
    rmdir(dir);
    return test_report("test_train_grad");
}
