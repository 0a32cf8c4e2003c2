/* Contexts: the KV cache of every sequence and all work buffers, allocated once. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model_impl.h"
#include "util/err.h"

slm_context_params slm_context_default_params(void) {
    slm_context_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static void *alloc_or_null(size_t n, bool *ok) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) *ok = false;
    return p;
}

int slm_context_new(slm_model *model, const slm_context_params *params, slm_context **out, char *err, size_t err_len) {
    *out = NULL;
    if (model->vocab_only) return slm_err(err, err_len, "model was loaded vocab-only; it cannot run");
    slm_context_params p = params ? *params : slm_context_default_params();
    const slm_hparams *hp = &model->hp;
    if (p.n_ctx < 0 || p.n_seq < 0 || p.n_batch < 0 || p.n_threads < 0)
        return slm_err(err, err_len, "context parameters must not be negative");
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_ctx > hp->n_ctx_train)
        return slm_err(err, err_len, "context %d exceeds the model's trained context %d", p.n_ctx, hp->n_ctx_train);
    if (p.n_seq == 0) p.n_seq = 1;
    if (p.n_seq > 256) return slm_err(err, err_len, "at most 256 sequences per context (asked %d)", p.n_seq);
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > 8192) return slm_err(err, err_len, "batch size %d is over the limit 8192", p.n_batch);
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n > 0 ? (int)n : 1;
    }
    if (p.n_threads > 256) p.n_threads = 256;

    slm_context *c = calloc(1, sizeof *c);
    if (!c) return slm_err(err, err_len, "out of memory");
    c->model = model;
    c->n_ctx = p.n_ctx;
    c->n_seq = p.n_seq;
    c->n_batch = p.n_batch;
    c->n_threads = p.n_threads;
    c->exact = p.exact;
    c->embeddings = p.embeddings;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    /* encoders attend in f32 like llama.cpp's BERT graphs, which use no KV cache */
    c->kv_f32 = p.exact || model->arch->encoder;
    c->kv_elem_size = c->kv_f32 ? sizeof(float) : sizeof(uint16_t);
    /* LongRoPE: the long factors when the context is longer than the original one, for every position */
    c->rope_factors = model->rope_long ? (c->n_ctx > hp->n_ctx_orig ? model->rope_long : model->rope_short)
                                       : model->rope_freq_factors;

    bool ok = true;
    c->kv_slots = alloc_or_null(sizeof(int) * (size_t)hp->n_layer, &ok);
    c->kv_layer_off = alloc_or_null(sizeof(size_t) * (size_t)hp->n_layer, &ok);
    size_t kv_elems = 0;
    for (int l = 0; ok && l < hp->n_layer; l++) {
        /* a sliding-window layer keeps window + n_batch - 1 positions: the window of the first
         * token of a batch is still there when the batch's last token has been stored */
        int window = model->layers[l].window;
        int64_t ring = window > 0 ? (int64_t)window + c->n_batch - 1 : c->n_ctx;
        c->kv_slots[l] = ring < c->n_ctx ? (int)ring : c->n_ctx;
        c->kv_layer_off[l] = kv_elems;
        kv_elems += (size_t)c->n_seq * (size_t)c->kv_slots[l] * (size_t)c->kv_dim;
    }
    c->kv_elems = kv_elems;
    size_t B = (size_t)c->n_batch;
    int q_dim = hp->n_head * hp->head_dim;
    c->k_cache = alloc_or_null(kv_elems * c->kv_elem_size, &ok);
    c->v_cache = alloc_or_null(kv_elems * c->kv_elem_size, &ok);
    c->seq_batch_n = alloc_or_null(sizeof(int) * (size_t)c->n_seq, &ok);
    c->seq_len = alloc_or_null(sizeof(int) * (size_t)c->n_seq, &ok);
    c->seq_pending = alloc_or_null(sizeof(int) * (size_t)c->n_seq, &ok);
    c->seq_tokens = alloc_or_null(sizeof(slm_token) * (size_t)c->n_seq * (size_t)c->n_ctx, &ok);
    c->x = alloc_or_null(sizeof(float) * B * (size_t)hp->n_embd, &ok);
    c->xb = alloc_or_null(sizeof(float) * B * (size_t)(hp->n_embd > q_dim ? hp->n_embd : q_dim), &ok);
    c->q = alloc_or_null(sizeof(float) * B * (size_t)q_dim, &ok);
    c->k = alloc_or_null(sizeof(float) * B * (size_t)c->kv_dim, &ok);
    c->v = alloc_or_null(sizeof(float) * B * (size_t)c->kv_dim, &ok);
    c->att_out = alloc_or_null(sizeof(float) * B * (size_t)q_dim, &ok);
    c->hb = alloc_or_null(sizeof(float) * B * (size_t)hp->n_ff, &ok);
    c->hb2 = alloc_or_null(sizeof(float) * B * (size_t)hp->n_ff, &ok);
    c->att_scratch_per_thread = (size_t)(hp->n_head / hp->n_head_kv) * (size_t)c->n_ctx + (size_t)hp->head_dim;
    if (model->arch->encoder) { /* the blocked encoder attention over a whole sequence */
        size_t enc = slm_attend_f32_scratch(SLM_ENC_ATTEND_BLOCK, c->n_ctx, hp->head_dim);
        if (enc > c->att_scratch_per_thread) c->att_scratch_per_thread = enc;
    }
    c->att_scores = alloc_or_null(sizeof(float) * (size_t)c->n_threads * c->att_scratch_per_thread, &ok);
    c->out_hidden = alloc_or_null(sizeof(float) * B * (size_t)hp->n_embd, &ok);
    c->all_hidden = c->embeddings ? alloc_or_null(sizeof(float) * B * (size_t)hp->n_embd, &ok) : NULL;
    c->logits_cap = c->n_seq < c->n_batch ? c->n_seq : c->n_batch;
    c->logits = alloc_or_null(sizeof(float) * (size_t)c->logits_cap * (size_t)hp->n_vocab, &ok);
    c->last_seq = alloc_or_null(sizeof(int32_t) * B, &ok);
    c->batch_pos = alloc_or_null(sizeof(int32_t) * B, &ok);
    c->batch_seq = alloc_or_null(sizeof(int32_t) * B, &ok);
    c->out_rows = alloc_or_null(sizeof(int) * B, &ok);
    c->rope_cos = alloc_or_null(sizeof(float) * B * (size_t)(hp->rope_dim / 2), &ok);
    c->rope_sin = alloc_or_null(sizeof(float) * B * (size_t)(hp->rope_dim / 2), &ok);
    if (ok) c->pool = slm_pool_acquire(c->n_threads);
    if (!ok || !c->pool) {
        slm_context_free(c);
        return slm_err(err, err_len, "out of memory allocating a context of %d positions x %d sequences (KV cache %zu MB)",
                       p.n_ctx, p.n_seq, kv_elems * 2 * c->kv_elem_size >> 20);
    }
    *out = c;
    return 0;
}

void slm_context_free(slm_context *c) {
    if (!c) return;
    if (c->pool) slm_pool_release(c->pool);
    slm_lora_context_free(c);
    free(c->k_cache);
    free(c->v_cache);
    free(c->kv_slots);
    free(c->kv_layer_off);
    free(c->seq_batch_n);
    free(c->seq_len);
    free(c->seq_pending);
    free(c->seq_tokens);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att_out);
    free(c->hb);
    free(c->hb2);
    free(c->att_scores);
    free(c->out_hidden);
    free(c->all_hidden);
    free(c->logits);
    free(c->last_seq);
    free(c->batch_pos);
    free(c->batch_seq);
    free(c->out_rows);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c);
}

const slm_model *slm_context_model(const slm_context *c) { return c->model; }
int slm_context_n_ctx(const slm_context *c) { return c->n_ctx; }
int slm_context_n_seq(const slm_context *c) { return c->n_seq; }
int slm_context_n_batch(const slm_context *c) { return c->n_batch; }

void slm_context_set_matmul_observer(slm_context *c, slm_matmul_observer fn, void *user) {
    c->observer = fn;
    c->observer_user = fn ? user : NULL;
}

const float *slm_logits(const slm_context *c, int i) {
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->model->hp.n_vocab;
}

int slm_kv_seq_len(const slm_context *c, int seq) { return seq >= 0 && seq < c->n_seq ? c->seq_len[seq] : 0; }

const slm_token *slm_kv_seq_tokens(const slm_context *c, int seq) {
    return seq >= 0 && seq < c->n_seq ? c->seq_tokens + (size_t)seq * (size_t)c->n_ctx : NULL;
}

size_t slm_context_kv_bytes(const slm_context *c) { return 2 * c->kv_elems * c->kv_elem_size; }

/* Whether the ring layers of sequence `seq`, holding `len` positions, still hold the window the
 * position p0 attends to (so the cache can continue from p0). */
static bool rings_hold(const slm_context *c, int len, int p0) {
    for (int l = 0; l < c->model->hp.n_layer; l++) {
        int slots = c->kv_slots[l], window = c->model->layers[l].window;
        if (slots >= c->n_ctx || p0 == 0) continue;
        int need_lo = p0 - window + 1 > 0 ? p0 - window + 1 : 0;
        int have_lo = len - slots > 0 ? len - slots : 0;
        if (need_lo < have_lo) return false;
    }
    return true;
}

/* Recomputes the first n positions of `seq` from its tokens (a ring layer overwrote what they need). */
static void replay(slm_context *c, int seq, int n) {
    slm_token *toks = malloc(sizeof(slm_token) * (size_t)(n ? n : 1));
    int32_t *seqs = malloc(sizeof(int32_t) * (size_t)c->n_batch);
    int8_t *want = calloc((size_t)c->n_batch, 1);
    c->seq_len[seq] = 0;
    if (toks && seqs && want) {
        memcpy(toks, c->seq_tokens + (size_t)seq * (size_t)c->n_ctx, sizeof(slm_token) * (size_t)n);
        for (int i = 0; i < c->n_batch; i++) seqs[i] = seq;
        char err[256];
        for (int i = 0; i < n; i += c->n_batch) {
            slm_batch b = {n - i < c->n_batch ? n - i : c->n_batch, toks + i, NULL, seqs, want};
            if (slm_decode(c, &b, err, sizeof err)) {
                c->seq_len[seq] = 0;
                break;
            }
        }
    }
    free(toks);
    free(seqs);
    free(want);
}

void slm_kv_seq_truncate(slm_context *c, int seq, int p0) {
    if (seq < 0 || seq >= c->n_seq || p0 < 0) return;
    if (p0 >= c->seq_len[seq]) return;
    if (!c->model->arch->encoder && !rings_hold(c, c->seq_len[seq], p0)) {
        replay(c, seq, p0);
        return;
    }
    c->seq_len[seq] = p0;
}

void slm_kv_seq_copy(slm_context *c, int dst, int src, int n) {
    if (dst < 0 || dst >= c->n_seq || src < 0 || src >= c->n_seq || dst == src || n < 0) return;
    if (n > c->seq_len[src]) n = c->seq_len[src];
    memcpy(c->seq_tokens + (size_t)dst * (size_t)c->n_ctx, c->seq_tokens + (size_t)src * (size_t)c->n_ctx,
           (size_t)n * sizeof(slm_token));
    if (!c->model->arch->encoder && !rings_hold(c, c->seq_len[src], n)) {
        replay(c, dst, n);
        return;
    }
    size_t row = (size_t)c->kv_dim * c->kv_elem_size;
    for (int l = 0; l < c->model->hp.n_layer; l++) {
        size_t slots = (size_t)c->kv_slots[l];
        size_t rows = slots < (size_t)c->n_ctx ? slots : (size_t)n; /* a ring is copied whole */
        size_t base = c->kv_layer_off[l] * c->kv_elem_size;
        char *kd = (char *)c->k_cache + base + (size_t)dst * slots * row;
        char *ks = (char *)c->k_cache + base + (size_t)src * slots * row;
        char *vd = (char *)c->v_cache + base + (size_t)dst * slots * row;
        char *vs = (char *)c->v_cache + base + (size_t)src * slots * row;
        memcpy(kd, ks, rows * row);
        memcpy(vd, vs, rows * row);
    }
    c->seq_len[dst] = n;
}
