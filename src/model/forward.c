/* The forward pass shared by every architecture family: embeddings, pre-norm attention with RoPE
 * and grouped KV heads, SwiGLU feed-forward, final norm and output projection. Families differ only
 * by the flags of their slm_arch: biases, rope style, fused matrices (phi3), GeGLU and scaled
 * embeddings (gemma), post-norms, soft-caps and sliding windows (gemma2), and the post-LayerNorm
 * bidirectional encoder of the embedding models (bert, nomic-bert). A batch may mix tokens of
 * several sequences. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
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

/* out = (x - mean) / sqrt(var + eps) * w + b, the sums in double like ggml_norm. In place is fine. */
static void layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)x[i];
    float mean = (float)(sum / n);
    double sum2 = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i] - mean;
        out[i] = v;
        sum2 += (double)(v * v);
    }
    float scale = 1.0f / sqrtf((float)(sum2 / n) + eps);
    for (int i = 0; i < n; i++) out[i] = out[i] * scale * w[i] + b[i];
}

static inline float softcap(float x, float cap) { return tanhf(x * (1.0f / cap)) * cap; }

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

/* swiglu_task on the ISA's vector exp (slm_vec_swiglu): an encoder's fast path; decoders and every
 * exact path keep expf. */
static void swiglu_vec_task(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    const size_t total = (size_t)j->rows * (size_t)j->n;
    const size_t i0 = total * (size_t)ith / (size_t)nth, i1 = total * (size_t)(ith + 1) / (size_t)nth;
    slm_vec_swiglu((int64_t)(i1 - i0), j->out + i0, j->aux + i0);
}

/* gate[i] = gelu(gate[i]) * up[i] (GeGLU); without up (bert): gelu(x[i] + bias[i % n]) */
static void gelu_task(void *arg, int ith, int nth) {
    const rows_job *j = arg;
    const size_t n = (size_t)j->n, total = (size_t)j->rows * n;
    size_t i = total * (size_t)ith / (size_t)nth;
    const size_t end = total * (size_t)(ith + 1) / (size_t)nth;
    while (i < end) { /* a row at a time: the bias starts again at each row */
        const size_t col = i % n, len = n - col < end - i ? n - col : end - i;
        slm_vec_gelu((int64_t)len, j->out + i, j->aux || !j->w ? NULL : j->w + col, j->aux ? j->aux + i : NULL);
        i += len;
    }
}

/* Gemma-2's final logit soft-cap, shared out over the pool: a 256k vocabulary makes it a few
 * percent of a decoded token on one thread. Exact paths keep libm's tanhf. */
typedef struct softcap_job {
    float *x;
    size_t n;
    float cap;
    bool exact;
} softcap_job;

static void softcap_task(void *arg, int ith, int nth) {
    const softcap_job *j = arg;
    const size_t i0 = j->n * (size_t)ith / (size_t)nth, i1 = j->n * (size_t)(ith + 1) / (size_t)nth;
    if (j->exact)
        for (size_t i = i0; i < i1; i++) j->x[i] = softcap(j->x[i], j->cap);
    else slm_vec_softcap((int64_t)(i1 - i0), j->x + i0, j->cap);
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
    const float *factors = c->rope_factors;
    float mscale = m->hp.rope_attn_factor;
    for (int t = 0; t < n_tokens; t++) {
        float theta = (float)c->batch_pos[t];
        for (int i = 0; i < half; i++) {
            float th = theta;
            if (factors) th /= factors[i];
            th *= m->hp.rope_freq_scale;
            c->rope_cos[(size_t)t * half + i] = cosf(th) * mscale;
            c->rope_sin[(size_t)t * half + i] = sinf(th) * mscale;
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

/* Element offset of the cached row of `pos` (ring layers keep only their last kv_slots positions). */
static size_t kv_offset(const slm_context *c, int layer, int seq, int pos) {
    size_t slots = (size_t)c->kv_slots[layer];
    return c->kv_layer_off[layer] + ((size_t)seq * slots + (size_t)pos % slots) * (size_t)c->kv_dim;
}

static void kv_store(slm_context *c, int layer, int n_tokens) {
    for (int t = 0; t < n_tokens; t++) {
        size_t off = kv_offset(c, layer, c->batch_seq[t], c->batch_pos[t]);
        const float *k = c->k + (size_t)t * c->kv_dim, *v = c->v + (size_t)t * c->kv_dim;
        if (c->kv_f32) {
            memcpy((float *)c->k_cache + off, k, sizeof(float) * (size_t)c->kv_dim);
            memcpy((float *)c->v_cache + off, v, sizeof(float) * (size_t)c->kv_dim);
        } else {
            slm_vec_f32_to_f16(c->kv_dim, k, (uint16_t *)c->k_cache + off);
            slm_vec_f32_to_f16(c->kv_dim, v, (uint16_t *)c->v_cache + off);
        }
    }
}

/* The positions [lo, hi) token t attends to in a layer: its sequence up to itself (within the
 * layer's window), or for an encoder every token of its sequence in this batch. */
static void key_range(const slm_context *c, int layer, int t, int *lo, int *hi) {
    int pos = c->batch_pos[t], window = c->model->layers[layer].window;
    if (c->model->arch->encoder) {
        *lo = 0;
        *hi = c->seq_batch_n[c->batch_seq[t]];
        return;
    }
    *hi = pos + 1;
    *lo = window > 0 && pos + 1 > window ? pos + 1 - window : 0; /* masked when pos - key >= window */
}

/* The scale applied to q.k: 1 where the graph scales Q beforehand. */
static float attn_scale(const slm_model *m) { return m->arch->q_prescale ? 1.0f : 1.0f / sqrtf((float)m->hp.head_dim); }

/* In-place softmax (max-subtracted expf, sum in double), after the optional soft-cap. */
static void softmax_capped(float *s, int n, float cap) {
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (cap > 0) s[j] = softcap(s[j], cap);
        if (s[j] > max) max = s[j];
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - max);
        sum += s[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) s[j] *= inv;
}

typedef struct attention_job {
    slm_context *c;
    int layer, n_tokens;
} attention_job;

/* f32 cache (exact path, encoders), one (token, head) pair: softmax(q·K * scale) · V over the
 * token's key range, in plain f32 (the ISA's dot/axpy kernels on an encoder's fast path). */
static void attend_exact(slm_context *c, int layer, int t, int h, float *scores) {
    const slm_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, kvh = h / (hp->n_head / hp->n_head_kv);
    int lo, hi;
    key_range(c, layer, t, &lo, &hi);
    int n = hi - lo, seq = c->batch_seq[t];
    const float *q = c->q + (size_t)t * hp->n_head * hd + (size_t)h * hd;
    float *out = c->att_out + (size_t)t * hp->n_head * hd + (size_t)h * hd;
    float scale = attn_scale(c->model);
    const float *kc = (const float *)c->k_cache + (size_t)kvh * hd, *vc = (const float *)c->v_cache + (size_t)kvh * hd;
    const bool simd = !c->exact; /* encoders' fast path: the same sums on the ISA's vector kernels */
    for (int j = 0; j < n; j++) {
        const float *k = kc + kv_offset(c, layer, seq, lo + j);
        float s = 0;
        if (simd) s = slm_vec_dot_f32(hd, q, k);
        else
            for (int i = 0; i < hd; i++) s += q[i] * k[i];
        scores[j] = s * scale;
    }
    softmax_capped(scores, n, hp->attn_softcap);
    for (int i = 0; i < hd; i++) out[i] = 0;
    for (int j = 0; j < n; j++) {
        const float *v = vc + kv_offset(c, layer, seq, lo + j);
        float p = scores[j];
        if (simd) slm_vec_axpy_f32(hd, out, p, v);
        else
            for (int i = 0; i < hd; i++) out[i] += p * v[i];
    }
}

/* Fast path, one (token, kv head) pair: the query heads of the GQA group share each converted
 * K/V row of the f16 cache. A soft-capped layer, or a window that wraps around its ring, takes
 * the per-head route (scores, cap, softmax, weighted sum over at most two slot ranges). */
static void attend_group_f16(slm_context *c, int layer, int t, int g, float *scratch) {
    const slm_hparams *hp = &c->model->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    int lo, hi;
    key_range(c, layer, t, &lo, &hi);
    int n_keys = hi - lo, slots = c->kv_slots[layer], first = lo % slots;
    const uint16_t *kb = (const uint16_t *)c->k_cache + kv_offset(c, layer, c->batch_seq[t], 0) + (size_t)g * hd;
    const uint16_t *vb = (const uint16_t *)c->v_cache + kv_offset(c, layer, c->batch_seq[t], 0) + (size_t)g * hd;
    size_t stride = (size_t)c->kv_dim;
    float scale = attn_scale(c->model);
    const float *q[SLM_MAX_GQA_GROUP];
    float *out[SLM_MAX_GQA_GROUP];
    int n[SLM_MAX_GQA_GROUP];
    for (int i = 0; i < group; i++) {
        size_t off = (size_t)t * hp->n_head * hd + (size_t)(g * group + i) * hd;
        q[i] = c->q + off;
        out[i] = c->att_out + off;
        n[i] = n_keys;
    }
    if (hp->attn_softcap <= 0 && first + n_keys <= slots) {
        slm_attend_f16(group, n, hd, q, kb + (size_t)first * stride, vb + (size_t)first * stride, stride, scale, scratch,
                       out);
        return;
    }
    int len_a = n_keys < slots - first ? n_keys : slots - first, len_b = n_keys - len_a;
    float *tmp = scratch + (size_t)group * (size_t)c->n_ctx;
    for (int i = 0; i < group; i++) {
        slm_vec_scores_f16(len_a, hd, q[i], kb + (size_t)first * stride, stride, scale, scratch);
        if (len_b) slm_vec_scores_f16(len_b, hd, q[i], kb, stride, scale, scratch + len_a);
        slm_vec_softmax_capped(n_keys, scratch, hp->attn_softcap);
        slm_vec_weighted_sum_f16(len_a, hd, scratch, vb + (size_t)first * stride, stride, out[i]);
        if (len_b) {
            slm_vec_weighted_sum_f16(len_b, hd, scratch + len_a, vb, stride, tmp);
            for (int d = 0; d < hd; d++) out[i][d] += tmp[d];
        }
    }
}

/* An encoder's fast path: per (sequence, head), the sequence's tokens attend to its keys in blocks
 * (slm_attend_f32), so each K/V row is read once per block instead of once per token. The scratch
 * is the thread's slice of c->att_scores, sized for it by the context. */
static void attend_encoder_blocks(slm_context *c, int layer, int n_tokens, float *scratch, int ith, int nth) {
    const slm_hparams *hp = &c->model->hp;
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const float scale = attn_scale(c->model);
    const int total = c->n_seq * hp->n_head;
    for (int i = ith; i < total; i += nth) {
        const int seq = i / hp->n_head, h = i % hp->n_head, kvh = h / group;
        const int n = c->seq_batch_n[seq];
        if (n <= 0) continue;
        const float *k = (const float *)c->k_cache + kv_offset(c, layer, seq, 0) + (size_t)kvh * hd;
        const float *v = (const float *)c->v_cache + kv_offset(c, layer, seq, 0) + (size_t)kvh * hd;
        const float *q[SLM_ENC_ATTEND_BLOCK];
        float *out[SLM_ENC_ATTEND_BLOCK];
        int nq = 0;
        for (int t = 0; t <= n_tokens; t++) {
            if (t < n_tokens && c->batch_seq[t] == seq) {
                size_t off = (size_t)t * hp->n_head * hd + (size_t)h * hd;
                q[nq] = c->q + off;
                out[nq++] = c->att_out + off;
            }
            if (nq == SLM_ENC_ATTEND_BLOCK || (t == n_tokens && nq > 0)) {
                slm_attend_f32(nq, n, hd, q, k, v, (size_t)c->kv_dim, scale, scratch, out);
                nq = 0;
            }
        }
    }
}

static void attention_task(void *arg, int ith, int nth) {
    attention_job *job = arg;
    slm_context *c = job->c;
    const slm_hparams *hp = &c->model->hp;
    float *scratch = c->att_scores + (size_t)ith * c->att_scratch_per_thread;
    if (c->kv_f32 && c->model->arch->encoder && !c->exact && hp->attn_softcap <= 0) {
        attend_encoder_blocks(c, job->layer, job->n_tokens, scratch, ith, nth);
    } else if (c->kv_f32) {
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

/* Resolves positions and sequences, checking them against the KV cache. An encoder has no cache
 * to continue: each sequence of its batch starts afresh at position 0. */
static int check_batch(slm_context *c, const slm_batch *b, int *n_out, char *err, size_t err_len) {
    const slm_model *m = c->model;
    const bool encoder = m->arch->encoder;
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
        bool want = b->logits ? b->logits[t] != 0 : t == b->n_tokens - 1;
        if (want && encoder)
            return slm_err(err, err_len, "the model is an embedding model (%s): it has no logits; ask for none and use "
                           "slm_embedding", m->arch->name);
        if (encoder && c->seq_pending[seq] == 0) c->seq_len[seq] = 0;
        int expect = c->seq_len[seq] + c->seq_pending[seq]++;
        if (b->pos && b->pos[t] != expect && encoder)
            return slm_err(err, err_len, "the model is an embedding model (%s): each input must come whole in one batch, "
                           "from position 0 (sequence %d starts at %d)", m->arch->name, seq, b->pos[t]);
        if (b->pos && b->pos[t] != expect)
            return slm_err(err, err_len, "sequence %d: position %d at batch index %d does not continue the cache (next is %d)",
                           seq, b->pos[t], t, expect);
        if (expect >= c->n_ctx)
            return slm_err(err, err_len, "sequence %d: position %d is past the context size %d", seq, expect, c->n_ctx);
        c->batch_seq[t] = seq;
        c->batch_pos[t] = expect;
        if (want) c->out_rows[(*n_out)++] = t;
    }
    if (encoder) memcpy(c->seq_batch_n, c->seq_pending, sizeof(int) * (size_t)c->n_seq);
    return 0;
}

static void scale_rows(float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* The activation tasks split elements, not rows, so one decoded token's feed-forward row (thousands
 * of expf/tanhf) is shared out too; each element is computed the same way by whichever thread. */
#define ACT_PARALLEL_MIN_ELEMENTS 4096

static void act_run(slm_context *c, void (*fn)(void *, int, int), void *job, size_t n_elements) {
    if (n_elements >= ACT_PARALLEL_MIN_ELEMENTS) slm_pool_run(c->pool, fn, job);
    else fn(job, 0, 1);
}

/* Input embeddings: the token rows (gemma: times sqrt(n_embd)); encoders add token type 0 and the
 * learned position, then LayerNorm. */
static void embed_tokens(slm_context *c, const slm_batch *b, int T) {
    const slm_model *m = c->model;
    const slm_hparams *hp = &m->hp;
    int E = hp->n_embd;
    for (int t = 0; t < T; t++) {
        float *x = c->x + (size_t)t * E;
        slm_weight_row_f32(&m->tok_embd, b->tokens[t], x);
        if (m->arch->embd_scale) scale_rows(x, sqrtf((float)E), (size_t)E);
        if (!m->arch->encoder) continue;
        if (m->tok_type0) add_rows(x, m->tok_type0, (size_t)E);
        if (m->pos_embd.data) {
            float *row = c->xb + (size_t)t * E;
            slm_weight_row_f32(&m->pos_embd, c->batch_pos[t], row);
            add_rows(x, row, (size_t)E);
        }
        layernorm(x, x, m->tok_norm, m->tok_norm_b, E, hp->rms_eps);
    }
}

/* Hands a matmul's input rows to the context's observer (slm_context_set_matmul_observer) under
 * the weight's GGUF name; layer -1 names a tensor outside the blocks. */
static void observe(const slm_context *c, int layer, const char *weight, const float *x, int n_tokens, int n_cols) {
    char name[48];
    if (layer >= 0) snprintf(name, sizeof name, "blk.%d.%s.weight", layer, weight);
    else snprintf(name, sizeof name, "%s.weight", weight);
    c->observer(c->observer_user, name, x, n_tokens, n_cols);
}

/* The feed-forward block on c->xb (T rows), result in c->xb. */
static void feed_forward(slm_context *c, const slm_layer *L, int T) {
    const slm_model *m = c->model;
    const slm_hparams *hp = &m->hp;
    bool exact = c->exact;
    const bool observed = c->observer && !m->arch->encoder;
    if (observed) {
        if (m->arch->ffn_gated && !m->arch->fused_gate_up) observe(c, (int)(L - m->layers), "ffn_gate", c->xb, T, hp->n_embd);
        observe(c, (int)(L - m->layers), "ffn_up", c->xb, T, hp->n_embd);
    }
    if (m->arch->ffn_gated) {
        const slm_weight *gate_up[2] = {&L->w_gate, &L->w_up};
        float *gate_up_out[2] = {c->hb, c->hb2};
        slm_matmul_multi(c->pool, gate_up, 2, c->xb, T, gate_up_out, exact);
        slm_lora_apply_multi(c, (int)(L - m->layers), (const int[]){SLM_LORAT_GATE, SLM_LORAT_UP}, 2, c->xb, T, NULL,
                             gate_up_out);
        rows_job act = {c->hb, c->hb2, NULL, NULL, T, hp->n_ff, 0};
        act_run(c, m->arch->gelu ? gelu_task : m->arch->encoder && !exact ? swiglu_vec_task : swiglu_task, &act,
                (size_t)T * (size_t)hp->n_ff);
    } else {
        slm_matmul(c->pool, &L->w_up, c->xb, T, c->hb, exact);
        rows_job act = {c->hb, NULL, NULL, L->b_up, T, hp->n_ff, 0};
        act_run(c, gelu_task, &act, (size_t)T * (size_t)hp->n_ff);
    }
    if (observed) observe(c, (int)(L - m->layers), "ffn_down", c->hb, T, hp->n_ff);
    slm_matmul(c->pool, &L->w_down, c->hb, T, c->xb, exact);
    slm_lora_apply(c, (int)(L - m->layers), SLM_LORAT_DOWN, c->hb, T, NULL, c->xb);
    add_bias(c->xb, L->b_down, T, hp->n_embd);
}

/* The per-token steps of an encoder layer, shared out over the pool by rows (each row computed
 * the same way whichever thread does it). */
typedef struct encoder_rows_job {
    slm_context *c;
    const slm_layer *L;
    int layer, n_tokens;
    const float *bias, *norm_w, *norm_b; /* residual_norm_task */
    bool copy_to_xb;
} encoder_rows_job;

/* Q/K/V biases, rotary (nomic-bert) and the store into the f32 cache, token by token. */
static void encoder_qkv_task(void *arg, int ith, int nth) {
    const encoder_rows_job *j = arg;
    slm_context *c = j->c;
    const slm_hparams *hp = &c->model->hp;
    const int q_dim = hp->n_head * hp->head_dim;
    for (int t = j->n_tokens * ith / nth; t < j->n_tokens * (ith + 1) / nth; t++) {
        float *q = c->q + (size_t)t * q_dim, *k = c->k + (size_t)t * c->kv_dim, *v = c->v + (size_t)t * c->kv_dim;
        add_bias(q, j->L->bq, 1, q_dim);
        add_bias(k, j->L->bk, 1, c->kv_dim);
        add_bias(v, j->L->bv, 1, c->kv_dim);
        if (!c->model->arch->learned_pos) {
            rope_apply(c, q, hp->n_head, t);
            rope_apply(c, k, hp->n_head_kv, t);
        }
        if (c->model->arch->q_prescale) scale_rows(q, hp->q_scale, (size_t)q_dim);
        const size_t off = kv_offset(c, j->layer, c->batch_seq[t], c->batch_pos[t]);
        memcpy((float *)c->k_cache + off, k, sizeof(float) * (size_t)c->kv_dim);
        memcpy((float *)c->v_cache + off, v, sizeof(float) * (size_t)c->kv_dim);
    }
}

/* layernorm with the two sums in eight double lanes (vectorisable, no chain of dependent adds):
 * an encoder's fast path. The sums are exact enough that the mean and variance round to the same
 * float as layernorm's in all but rare last-bit cases; the exact path keeps layernorm. */
static void layernorm_lanes(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    enum { LANES = 8 };
    double acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l];
    double sum = 0;
    for (int l = 0; l < LANES; l++) sum += acc[l];
    for (; i < n; i++) sum += (double)x[i];
    const float mean = (float)(sum / n);
    double acc2[LANES] = {0};
    for (i = 0; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            const float v = x[i + l] - mean;
            out[i + l] = v;
            acc2[l] += (double)(v * v);
        }
    double sum2 = 0;
    for (int l = 0; l < LANES; l++) sum2 += acc2[l];
    for (; i < n; i++) {
        const float v = x[i] - mean;
        out[i] = v;
        sum2 += (double)(v * v);
    }
    const float scale = 1.0f / sqrtf((float)(sum2 / n) + eps);
    for (i = 0; i < n; i++) out[i] = out[i] * scale * w[i] + b[i];
}

/* Post-norm residual, row by row: y = (xb + bias) + x, x = LayerNorm(y) (and xb = x when the
 * feed-forward reads it next). */
static void residual_norm_task(void *arg, int ith, int nth) {
    const encoder_rows_job *j = arg;
    slm_context *c = j->c;
    const int E = c->model->hp.n_embd;
    for (int t = j->n_tokens * ith / nth; t < j->n_tokens * (ith + 1) / nth; t++) {
        float *x = c->x + (size_t)t * E, *y = c->xb + (size_t)t * E;
        add_bias(y, j->bias, 1, E);
        add_rows(y, x, (size_t)E);
        if (c->exact) layernorm(x, y, j->norm_w, j->norm_b, E, c->model->hp.rms_eps);
        else layernorm_lanes(x, y, j->norm_w, j->norm_b, E, c->model->hp.rms_eps);
        if (j->copy_to_xb) memcpy(y, x, sizeof(float) * (size_t)E);
    }
}

static void encoder_rows_run(slm_context *c, void (*fn)(void *, int, int), encoder_rows_job *job) {
    if (job->n_tokens >= PARALLEL_MIN_ROWS) slm_pool_run(c->pool, fn, job);
    else fn(job, 0, 1);
}

/* One layer of a bidirectional post-LayerNorm encoder (bert, nomic-bert) on c->x:
 * x = LN(x + attn(x)), then x = LN(x + ffn(x)); the cache is f32 (context.c). */
static void encoder_layer(slm_context *c, int l, int T) {
    const slm_model *m = c->model;
    const slm_layer *L = &m->layers[l];
    const bool exact = c->exact;
    const slm_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    float *qkv_out[3] = {c->q, c->k, c->v};
    slm_matmul_multi(c->pool, qkv, 3, c->x, T, qkv_out, exact);
    encoder_rows_job rows = {.c = c, .L = L, .layer = l, .n_tokens = T};
    encoder_rows_run(c, encoder_qkv_task, &rows);
    attention_job job = {c, l, T};
    slm_pool_run(c->pool, attention_task, &job);
    slm_matmul(c->pool, &L->wo, c->att_out, T, c->xb, exact);
    rows.bias = L->bo;
    rows.norm_w = L->attn_norm;
    rows.norm_b = L->attn_norm_b;
    rows.copy_to_xb = true;
    encoder_rows_run(c, residual_norm_task, &rows);
    feed_forward(c, L, T);
    rows.bias = NULL;
    rows.norm_w = L->ffn_norm;
    rows.norm_b = L->ffn_norm_b;
    rows.copy_to_xb = false;
    encoder_rows_run(c, residual_norm_task, &rows);
}

static int decode_pass(slm_context *c, const slm_batch *b, char *err, size_t err_len) {
    const slm_model *m = c->model;
    const slm_hparams *hp = &m->hp;
    const slm_arch *a = m->arch;
    c->n_logits = 0;
    if (!b || !b->tokens) return slm_err(err, err_len, "empty batch");
    int n_out = 0;
    if (check_batch(c, b, &n_out, err, err_len)) return -1;
    if (n_out > c->logits_cap) { /* grows only when a batch asks for more logits rows than ever before */
        float *bigger = realloc(c->logits, sizeof(float) * (size_t)n_out * (size_t)hp->n_vocab);
        if (!bigger) return slm_err(err, err_len, "out of memory for %d rows of logits", n_out);
        c->logits = bigger;
        c->logits_cap = n_out;
    }
    int T = b->n_tokens, E = hp->n_embd, q_dim = hp->n_head * hp->head_dim;
    embed_tokens(c, b, T);
    if (!a->learned_pos) rope_tables(c, T);
    bool exact = c->exact;
    for (int l = 0; l < hp->n_layer; l++) {
        if (a->encoder) {
            encoder_layer(c, l, T);
            continue;
        }
        const slm_layer *L = &m->layers[l];
        /* attention: pre-norm (decoders) or straight from the residual stream (encoders) */
        const float *att_in = c->x;
        if (!a->encoder) {
            rmsnorm_rows_pool(c->pool, c->xb, c->x, L->attn_norm, T, E, hp->rms_eps);
            att_in = c->xb;
        }
        const slm_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_out[3] = {c->q, c->k, c->v};
        if (c->observer) {
            if (a->fused_qkv) {
                observe(c, l, "attn_qkv", att_in, T, E);
            } else {
                observe(c, l, "attn_q", att_in, T, E);
                observe(c, l, "attn_k", att_in, T, E);
                observe(c, l, "attn_v", att_in, T, E);
            }
        }
        slm_matmul_multi(c->pool, qkv, 3, att_in, T, qkv_out, exact);
        /* per-sequence adapters: no-op without */
        slm_lora_apply_multi(c, l, (const int[]){SLM_LORAT_Q, SLM_LORAT_K, SLM_LORAT_V}, 3, att_in, T, NULL, qkv_out);
        add_bias(c->q, L->bq, T, q_dim);
        add_bias(c->k, L->bk, T, c->kv_dim);
        add_bias(c->v, L->bv, T, c->kv_dim);
        if (!a->learned_pos)
            for (int t = 0; t < T; t++) {
                rope_apply(c, c->q + (size_t)t * q_dim, hp->n_head, t);
                rope_apply(c, c->k + (size_t)t * c->kv_dim, hp->n_head_kv, t);
            }
        if (a->q_prescale) scale_rows(c->q, hp->q_scale, (size_t)T * q_dim);
        kv_store(c, l, T);
        attention_job job = {c, l, T};
        slm_pool_run(c->pool, attention_task, &job);
        if (c->observer) observe(c, l, "attn_output", c->att_out, T, q_dim);
        slm_matmul(c->pool, &L->wo, c->att_out, T, c->xb, exact);
        slm_lora_apply(c, l, SLM_LORAT_O, c->att_out, T, NULL, c->xb);
        add_bias(c->xb, L->bo, T, E);
        if (L->post_attn_norm) rmsnorm_rows_pool(c->pool, c->xb, c->xb, L->post_attn_norm, T, E, hp->rms_eps);
        add_rows(c->x, c->xb, (size_t)T * E);

        rmsnorm_rows_pool(c->pool, c->xb, c->x, L->ffn_norm, T, E, hp->rms_eps);
        feed_forward(c, L, T);
        if (L->post_ffn_norm) rmsnorm_rows_pool(c->pool, c->xb, c->xb, L->post_ffn_norm, T, E, hp->rms_eps);
        add_rows(c->x, c->xb, (size_t)T * E);
    }
    if (n_out) {
        for (int r = 0; r < n_out; r++)
            rmsnorm(c->out_hidden + (size_t)r * E, c->x + (size_t)c->out_rows[r] * E, m->output_norm, E, hp->rms_eps);
        if (c->observer)
            observe(c, -1, m->output.data == m->tok_embd.data ? "token_embd" : "output", c->out_hidden, n_out, E);
        slm_matmul(c->pool, &m->output, c->out_hidden, n_out, c->logits, exact);
        slm_lora_apply(c, -1, 0, c->out_hidden, n_out, c->out_rows, c->logits);
        if (hp->final_softcap > 0) {
            softcap_job job = {c->logits, (size_t)n_out * (size_t)hp->n_vocab, hp->final_softcap, exact};
            act_run(c, softcap_task, &job, job.n);
        }
    }
    if (c->embeddings) {
        if (a->encoder) memcpy(c->all_hidden, c->x, sizeof(float) * (size_t)T * E);
        else rmsnorm_rows(c->all_hidden, c->x, m->output_norm, T, E, hp->rms_eps);
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

/* Pools the final hidden states of `seq` in the last batch: the model's pooling for encoders
 * (CLS = position 0, mean, last), the mean for decoders; then L2 normalisation like llama.cpp
 * (sum of squares in double, each value times float(1/norm)). */
/* Contexts share the process's kernel pool: a pass holds it from start to end. */
int slm_decode(slm_context *c, const slm_batch *b, char *err, size_t err_len) {
    slm_pool_lock(c->pool);
    int rc = decode_pass(c, b, err, err_len);
    slm_pool_unlock(c->pool);
    return rc;
}

int slm_embedding(const slm_context *c, int seq, float *out, char *err, size_t err_len) {
    if (!c->embeddings) return slm_err(err, err_len, "context was created without embeddings");
    const slm_model *m = c->model;
    int E = m->hp.n_embd, n = 0;
    enum slm_pooling pool = m->arch->encoder ? m->hp.pooling : SLM_POOL_MEAN;
    for (int i = 0; i < E; i++) out[i] = 0;
    int last = -1;
    for (int t = 0; t < c->last_n_tokens; t++) {
        if (c->last_seq[t] != seq) continue;
        n++;
        last = t;
        if (pool == SLM_POOL_CLS && c->batch_pos[t] == 0) memcpy(out, c->all_hidden + (size_t)t * E, sizeof(float) * (size_t)E);
    }
    if (n == 0) return slm_err(err, err_len, "the last batch had no tokens of sequence %d", seq);
    if (pool == SLM_POOL_LAST) memcpy(out, c->all_hidden + (size_t)last * E, sizeof(float) * (size_t)E);
    if (pool == SLM_POOL_MEAN) {
        float inv_n = m->arch->encoder ? 1.0f / (float)n : 1.0f; /* decoders: the sum (same direction) */
        for (int t = 0; t < c->last_n_tokens; t++) {
            if (c->last_seq[t] != seq) continue;
            const float *h = c->all_hidden + (size_t)t * E;
            for (int i = 0; i < E; i++) out[i] += h[i] * inv_n;
        }
    }
    double norm = 0;
    for (int i = 0; i < E; i++) norm += (double)out[i] * out[i];
    float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
    for (int i = 0; i < E; i++) out[i] *= inv;
    return 0;
}
