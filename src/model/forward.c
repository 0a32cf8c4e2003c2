/* The forward pass shared by every architecture family: embeddings, pre-norm attention with RoPE
 * and grouped KV heads, SwiGLU feed-forward, final norm and output projection. Families differ only
 * by the flags of their slm_arch (biases, rope style). A batch may mix tokens of several sequences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_impl.h"
#include "tensor/types.h"
#include "util/err.h"

/* out = x / rms(x) * w, with the sum of squares in double like ggml. */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Elementwise steps of a big batch are shared out over the pool; each element is computed the same
 * way whichever thread does it, so results do not depend on the thread count. */
#define PARALLEL_MIN_ROWS 8

typedef struct rows_job {
    float *out, *aux;
    const float *x, *w;
    int rows, n;
    float eps;
} rows_job;

static void rmsnorm_task(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    for (int r = j->rows * ith / nth; r < j->rows * (ith + 1) / nth; r++)
        rmsnorm(j->out + (size_t)r * j->n, j->x + (size_t)r * j->n, j->w, j->n, j->eps);
}

static void rmsnorm_rows_pool(slm_pool *pool, float *out, const float *x, const float *w, int rows, int n, float eps) {
    rows_job job = {out, NULL, x, w, rows, n, eps};
    if (rows >= PARALLEL_MIN_ROWS) slm_pool_run(pool, rmsnorm_task, &job);
    else rmsnorm_task(&job, 0, 1);
}

/* gate[i] = silu(gate[i]) * up[i] */
static void swiglu_task(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    size_t total = (size_t)j->rows * (size_t)j->n;
    for (size_t i = total * (size_t)ith / (size_t)nth; i < total * (size_t)(ith + 1) / (size_t)nth; i++) {
        float g = j->out[i];
        j->out[i] = g / (1.0f + expf(-g)) * j->aux[i];
    }
}

static void rmsnorm_rows(float *out, const float *x, const float *w, int rows, int n, float eps) {
    for (int r = 0; r < rows; r++) rmsnorm(out + (size_t)r * n, x + (size_t)r * n, w, n, eps);
}

/* cos/sin of every rotated pair for every token, computed the way ggml does (angle advanced by
 * repeated multiplication in f32) so positions round identically. */
static void rope_tables(slm_context *c, int n_tokens) {
    const slm_model *m = c->model;
    int half = m->hp.rope_dim / 2;
    float theta_scale = powf(m->hp.rope_base, -2.0f / (float)m->hp.rope_dim);
    for (int t = 0; t < n_tokens; t++) {
        float theta = (float)c->batch_pos[t];
        for (int i = 0; i < half; i++) {
            float th = theta;
            if (m->rope_freq_factors) th /= m->rope_freq_factors[i];
            th *= m->hp.rope_freq_scale;
            c->rope_cos[(size_t)t * half + i] = cosf(th);
            c->rope_sin[(size_t)t * half + i] = sinf(th);
            theta *= theta_scale;
        }
    }
}

static void rope_apply(const slm_context *c, float *vec, int n_heads, int t) {
    const slm_model *m = c->model;
    int hd = m->hp.head_dim, half = m->hp.rope_dim / 2;
    const float *cs = c->rope_cos + (size_t)t * half, *sn = c->rope_sin + (size_t)t * half;
    for (int h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            int a = m->arch->rope_style == SLM_ROPE_NEOX ? i : 2 * i;
            int b = m->arch->rope_style == SLM_ROPE_NEOX ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

static size_t kv_offset(const slm_context *c, int layer, int seq, int pos) {
    return (((size_t)layer * (size_t)c->n_seq + (size_t)seq) * (size_t)c->n_ctx + (size_t)pos) * (size_t)c->kv_dim;
}

static void kv_store(slm_context *c, int layer, int n_tokens) {
    for (int t = 0; t < n_tokens; t++) {
        size_t off = kv_offset(c, layer, c->batch_seq[t], c->batch_pos[t]);
        const float *k = c->k + (size_t)t * c->kv_dim, *v = c->v + (size_t)t * c->kv_dim;
        if (c->exact) {
            memcpy((float *)c->k_cache + off, k, sizeof(float) * (size_t)c->kv_dim);
            memcpy((float *)c->v_cache + off, v, sizeof(float) * (size_t)c->kv_dim);
        } else {
            slm_vec_f32_to_f16(c->kv_dim, k, (uint16_t *)c->k_cache + off);
            slm_vec_f32_to_f16(c->kv_dim, v, (uint16_t *)c->v_cache + off);
        }
    }
}

typedef struct attention_job {
    slm_context *c;
    int layer, n_tokens;
} attention_job;

/* Exact path, one (token, head) pair: softmax(q·K / sqrt(d)) · V over the token's sequence up to
 * its position, in plain f32 over the f32 cache. */
static void attend_exact(slm_context *c, int layer, int t, int h, float *scores) {
    const slm_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, kvh = h / (hp->n_head / hp->n_head_kv);
    int n = c->batch_pos[t] + 1;
    const float *q = c->q + (size_t)t * hp->n_head * hd + (size_t)h * hd;
    float *out = c->att_out + (size_t)t * hp->n_head * hd + (size_t)h * hd;
    float scale = 1.0f / sqrtf((float)hd);
    const float *kbase = (const float *)c->k_cache + kv_offset(c, layer, c->batch_seq[t], 0) + (size_t)kvh * hd;
    const float *vbase = (const float *)c->v_cache + kv_offset(c, layer, c->batch_seq[t], 0) + (size_t)kvh * hd;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *k = kbase + (size_t)j * c->kv_dim;
        float s = 0;
        for (int i = 0; i < hd; i++) s += q[i] * k[i];
        scores[j] = s * scale;
        if (scores[j] > max) max = scores[j];
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        scores[j] = expf(scores[j] - max);
        sum += scores[j];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++) {
        const float *v = vbase + (size_t)j * c->kv_dim;
        float p = scores[j] * inv;
        for (int i = 0; i < hd; i++) out[i] += p * v[i];
    }
}

/* Fast path, one (token, kv head) pair: the query heads of the GQA group share each converted
 * K/V row of the f16 cache. */
static void attend_group_f16(slm_context *c, int layer, int t, int g, float *scratch) {
    const slm_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const float *q[SLM_MAX_GQA_GROUP];
    float *out[SLM_MAX_GQA_GROUP];
    int n[SLM_MAX_GQA_GROUP];
    for (int i = 0; i < group; i++) {
        size_t off = (size_t)t * hp->n_head * hd + (size_t)(g * group + i) * hd;
        q[i] = c->q + off;
        out[i] = c->att_out + off;
        n[i] = c->batch_pos[t] + 1;
    }
    size_t base = kv_offset(c, layer, c->batch_seq[t], 0) + (size_t)g * hd;
    slm_attend_f16(group, n, hd, q, (const uint16_t *)c->k_cache + base, (const uint16_t *)c->v_cache + base,
                   (size_t)c->kv_dim, 1.0f / sqrtf((float)hd), scratch, out);
}

static void attention_task(void *arg, int ith, int nth) {
    attention_job *job = arg;
    slm_context *c = job->c;
    const slm_hparams *hp = &c->model->hp;
    float *scratch = c->att_scores + (size_t)ith * c->att_scratch_per_thread;
    if (c->exact) {
        int total = job->n_tokens * hp->n_head;
        for (int i = ith; i < total; i += nth) attend_exact(c, job->layer, i / hp->n_head, i % hp->n_head, scratch);
    } else {
        int total = job->n_tokens * hp->n_head_kv;
        for (int i = ith; i < total; i += nth) attend_group_f16(c, job->layer, i / hp->n_head_kv, i % hp->n_head_kv, scratch);
    }
}

static void add_bias(float *y, const float *b, int rows, int n) {
    if (!b) return;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++) y[(size_t)r * n + i] += b[i];
}

static void add_rows(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* Resolves positions and sequences, checking them against the KV cache. */
static int check_batch(slm_context *c, const slm_batch *b, int *n_out, char *err, size_t err_len) {
    const slm_model *m = c->model;
    if (b->n_tokens < 1 || b->n_tokens > c->n_batch)
        return slm_err(err, err_len, "batch of %d tokens (must be 1 to %d)", b->n_tokens, c->n_batch);
    *n_out = 0;
    memset(c->seq_pending, 0, sizeof(int) * (size_t)c->n_seq);
    for (int t = 0; t < b->n_tokens; t++) {
        slm_token tok = b->tokens[t];
        if (tok < 0 || tok >= m->hp.n_vocab)
            return slm_err(err, err_len, "token %d at batch index %d is outside the vocabulary (%d)", tok, t, m->hp.n_vocab);
        int seq = b->seq_id ? b->seq_id[t] : 0;
        if (seq < 0 || seq >= c->n_seq)
            return slm_err(err, err_len, "sequence %d at batch index %d is outside [0, %d)", seq, t, c->n_seq);
        int expect = c->seq_len[seq] + c->seq_pending[seq]++;
        if (b->pos && b->pos[t] != expect)
            return slm_err(err, err_len, "sequence %d: position %d at batch index %d does not continue the cache (next is %d)",
                           seq, b->pos[t], t, expect);
        if (expect >= c->n_ctx)
            return slm_err(err, err_len, "sequence %d: position %d is past the context size %d", seq, expect, c->n_ctx);
        c->batch_seq[t] = seq;
        c->batch_pos[t] = expect;
        bool want = b->logits ? b->logits[t] != 0 : t == b->n_tokens - 1;
        if (want) c->out_rows[(*n_out)++] = t;
    }
    return 0;
}

int slm_decode(slm_context *c, const slm_batch *b, char *err, size_t err_len) {
    const slm_model *m = c->model;
    const slm_hparams *hp = &m->hp;
    c->n_logits = 0;
    if (!b || !b->tokens) return slm_err(err, err_len, "empty batch");
    int n_out;
    if (check_batch(c, b, &n_out, err, err_len)) return -1;
    if (n_out > c->logits_cap) { /* grows only when a batch asks for more logits rows than ever before */
        float *bigger = realloc(c->logits, sizeof(float) * (size_t)n_out * (size_t)hp->n_vocab);
        if (!bigger) return slm_err(err, err_len, "out of memory for %d rows of logits", n_out);
        c->logits = bigger;
        c->logits_cap = n_out;
    }
    int T = b->n_tokens, E = hp->n_embd, q_dim = hp->n_head * hp->head_dim;
    for (int t = 0; t < T; t++) slm_weight_row_f32(&m->tok_embd, b->tokens[t], c->x + (size_t)t * E);
    rope_tables(c, T);
    bool exact = c->exact;
    for (int l = 0; l < hp->n_layer; l++) {
        const slm_layer *L = &m->layers[l];
        rmsnorm_rows_pool(c->pool, c->xb, c->x, L->attn_norm, T, E, hp->rms_eps);
        const slm_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {c->q, c->k, c->v};
        slm_matmul_multi(c->pool, qkv, 3, c->xb, T, qkv_out, exact);
        add_bias(c->q, L->bq, T, q_dim);
        add_bias(c->k, L->bk, T, c->kv_dim);
        add_bias(c->v, L->bv, T, c->kv_dim);
        for (int t = 0; t < T; t++) {
            rope_apply(c, c->q + (size_t)t * q_dim, hp->n_head, t);
            rope_apply(c, c->k + (size_t)t * c->kv_dim, hp->n_head_kv, t);
        }
        kv_store(c, l, T);
        attention_job job = {c, l, T};
        slm_pool_run(c->pool, attention_task, &job);
        slm_matmul(c->pool, &L->wo, c->att_out, T, c->xb, exact);
        add_rows(c->x, c->xb, (size_t)T * E);

        rmsnorm_rows_pool(c->pool, c->xb, c->x, L->ffn_norm, T, E, hp->rms_eps);
        const slm_weight *gate_up[2] = {&L->w_gate, &L->w_up};
        float *gate_up_out[2] = {c->hb, c->hb2};
        slm_matmul_multi(c->pool, gate_up, 2, c->xb, T, gate_up_out, exact);
        rows_job act = {c->hb, c->hb2, NULL, NULL, T, hp->n_ff, 0};
        if (T >= PARALLEL_MIN_ROWS) slm_pool_run(c->pool, swiglu_task, &act);
        else swiglu_task(&act, 0, 1);
        slm_matmul(c->pool, &L->w_down, c->hb, T, c->xb, exact);
        add_rows(c->x, c->xb, (size_t)T * E);
    }
    for (int r = 0; r < n_out; r++)
        rmsnorm(c->out_hidden + (size_t)r * E, c->x + (size_t)c->out_rows[r] * E, m->output_norm, E, hp->rms_eps);
    if (n_out) slm_matmul(c->pool, &m->output, c->out_hidden, n_out, c->logits, exact);
    if (c->embeddings) {
        rmsnorm_rows(c->all_hidden, c->x, m->output_norm, T, E, hp->rms_eps);
        memcpy(c->last_seq, c->batch_seq, sizeof(int32_t) * (size_t)T);
        c->last_n_tokens = T;
    }
    for (int t = 0; t < T; t++) {
        int seq = c->batch_seq[t];
        c->seq_tokens[(size_t)seq * c->n_ctx + c->batch_pos[t]] = b->tokens[t];
    }
    for (int t = 0; t < T; t++) {
        int seq = c->batch_seq[t];
        if (c->batch_pos[t] + 1 > c->seq_len[seq]) c->seq_len[seq] = c->batch_pos[t] + 1;
    }
    c->n_logits = n_out;
    return 0;
}

int slm_embedding(const slm_context *c, int seq, float *out, char *err, size_t err_len) {
    if (!c->embeddings) return slm_err(err, err_len, "context was created without embeddings");
    int E = c->model->hp.n_embd, n = 0;
    for (int i = 0; i < E; i++) out[i] = 0;
    for (int t = 0; t < c->last_n_tokens; t++) {
        if (c->last_seq[t] != seq) continue;
        const float *h = c->all_hidden + (size_t)t * E;
        for (int i = 0; i < E; i++) out[i] += h[i];
        n++;
    }
    if (n == 0) return slm_err(err, err_len, "the last batch had no tokens of sequence %d", seq);
    double norm = 0;
    for (int i = 0; i < E; i++) norm += (double)out[i] * out[i];
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int i = 0; i < E; i++) out[i] *= inv;
    return 0;
}
