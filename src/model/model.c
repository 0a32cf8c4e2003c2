/* Model loading: architecture, hyper-parameters and a validated view of every weight. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model/model_impl.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "util/err.h"

static const slm_arch known_archs[] = {
    {.name = "llama", .rope_style = SLM_ROPE_NORM, .ffn_gated = true},
    {.name = "qwen2", .qkv_bias = true, .rope_style = SLM_ROPE_NEOX, .ffn_gated = true},
    {.name = "phi3", .rope_style = SLM_ROPE_NEOX, .fused_qkv = true, .fused_gate_up = true, .q_prescale = true,
     .ffn_gated = true},
    {.name = "gemma", .rope_style = SLM_ROPE_NEOX, .gelu = true, .q_prescale = true, .embd_scale = true,
     .ffn_gated = true},
    {.name = "gemma2", .rope_style = SLM_ROPE_NEOX, .gelu = true, .q_prescale = true, .embd_scale = true,
     .post_norms = true, .softcap = true, .alt_swa = true, .ffn_gated = true},
    {.name = "bert", .qkv_bias = true, .rope_style = SLM_ROPE_NEOX, .gelu = true, .encoder = true, .learned_pos = true},
    {.name = "nomic-bert", .rope_style = SLM_ROPE_NEOX, .fused_qkv = true, .encoder = true, .ffn_gated = true},
};
#define SUPPORTED_ARCHS "llama, qwen2, phi3, gemma, gemma2, bert, nomic-bert"

bool slm_model_is_embedding(const slm_model *m) { return m->arch && m->arch->encoder; }

const slm_vocab *slm_model_vocab(const slm_model *m) { return m->vocab; }
const gguf_file *slm_model_gguf(const slm_model *m) { return m->gguf; }
int slm_model_n_vocab(const slm_model *m) { return m->hp.n_vocab; }
int slm_model_n_ctx_train(const slm_model *m) { return m->hp.n_ctx_train; }
int slm_model_n_embd(const slm_model *m) { return m->hp.n_embd; }
const char *slm_model_arch(const slm_model *m) { return m->arch ? m->arch->name : "none"; }
const char *slm_model_desc(const slm_model *m) { return m->desc; }
uint64_t slm_model_size_bytes(const slm_model *m) { return m->n_bytes; }

/* Renders one metadata value the way llama.cpp's llama_model_meta_val_str prints it. */
static char *render_value(const gguf_kv *kv) {
    char buf[128];
    double d = 0;
    switch (kv->type) {
    case GGUF_TYPE_STRING: {
        char *s = malloc(kv->strs[0].len + 1);
        if (s) {
            memcpy(s, kv->strs[0].ptr, kv->strs[0].len);
            s[kv->strs[0].len] = 0;
        }
        return s;
    }
    case GGUF_TYPE_ARRAY:
        snprintf(buf, sizeof buf, "[%s array of %" PRIu64 "]", gguf_type_name(kv->arr_type), kv->arr_n);
        return strdup(buf);
    case GGUF_TYPE_BOOL: return strdup(kv->data[0] ? "true" : "false");
    case GGUF_TYPE_FLOAT32: {
        float f;
        memcpy(&f, kv->data, 4);
        snprintf(buf, sizeof buf, "%f", f);
        return strdup(buf);
    }
    case GGUF_TYPE_FLOAT64:
        memcpy(&d, kv->data, 8);
        snprintf(buf, sizeof buf, "%f", d);
        return strdup(buf);
    default: {
        /* integers: reuse the array accessor by faking a one-element array */
        gguf_kv one = *kv;
        one.type = GGUF_TYPE_ARRAY;
        one.arr_type = kv->type;
        one.arr_n = 1;
        if (kv->type == GGUF_TYPE_UINT64) {
            uint64_t u;
            memcpy(&u, kv->data, 8);
            snprintf(buf, sizeof buf, "%" PRIu64, u);
        } else {
            snprintf(buf, sizeof buf, "%" PRId64, gguf_arr_i64(&one, 0));
        }
        return strdup(buf);
    }
    }
}

const char *slm_model_meta(const slm_model *m, const char *key) {
    const gguf_kv *kv = gguf_find(m->gguf, key);
    if (!kv) return NULL;
    return m->meta_text[kv - gguf_kv_at(m->gguf, 0)];
}

static int get_hparam(const slm_model *m, const char *suffix, bool required, int64_t def, int64_t lo, int64_t hi, int *out,
                      char *err, size_t err_len) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch->name, suffix);
    int64_t v;
    int rc = gguf_get_i64(m->gguf, key, &v, err, err_len);
    if (rc == -2) return -1;
    if (rc == -1) {
        if (required) return slm_err(err, err_len, "%s: missing metadata key '%s'", gguf_name(m->gguf), key);
        v = def;
    }
    if (v < lo || v > hi)
        return slm_err(err, err_len, "%s: '%s' = %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", gguf_name(m->gguf), key,
                       v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_fparam(const slm_model *m, const char *suffix, float def, float lo, float hi, float *out, char *err,
                      size_t err_len) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch->name, suffix);
    float v;
    int rc = gguf_get_f32(m->gguf, key, &v, err, err_len);
    if (rc == -2) return -1;
    if (rc == -1) v = def;
    if (!(v >= lo && v <= hi))
        return slm_err(err, err_len, "%s: '%s' = %g is outside [%g, %g]", gguf_name(m->gguf), key, (double)v, (double)lo,
                       (double)hi);
    *out = v;
    return 0;
}

/* Finds a tensor and checks its exact shape; ne1 = 0 means a vector. */
static const gguf_tensor *want_tensor(slm_model *m, const char *name, int64_t ne0, int64_t ne1, bool required, char *err,
                                      size_t err_len, int *rc) {
    *rc = 0;
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) *rc = slm_err(err, err_len, "%s: missing tensor '%s'", gguf_name(m->gguf), name);
        return NULL;
    }
    int want_dims = ne1 ? 2 : 1;
    bool ok = t->ne[0] == ne0 && t->ne[2] == 1 && t->ne[3] == 1 && (ne1 ? t->ne[1] == ne1 : t->ne[1] == 1);
    if (!ok || !slm_type_info_get(t->type)->weight_type) {
        if (!ok)
            *rc = slm_err(err, err_len, "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                                        "], expected [%" PRId64 ", %" PRId64 "] (%d-D)",
                          gguf_name(m->gguf), name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], ne0, ne1 ? ne1 : 1, want_dims);
        else
            *rc = slm_err(err, err_len, "%s: tensor '%s' has type %s, which the engine cannot run", gguf_name(m->gguf),
                          name, slm_type_name(t->type));
        return NULL;
    }
    m->n_params += (uint64_t)(ne0 * (ne1 ? ne1 : 1));
    return t;
}

static int load_matrix(slm_model *m, const char *name, int64_t k, int64_t rows, bool required, slm_weight *w, char *err,
                       size_t err_len) {
    int rc;
    const gguf_tensor *t = want_tensor(m, name, k, rows, required, err, err_len, &rc);
    if (!t) return rc;
    w->type = t->type;
    w->k = k;
    w->m = rows;
    w->data = t->data;
    w->row_bytes = slm_row_bytes(t->type, k);
    w->packed = NULL;
    return 0;
}

/* Rows [row0, row0 + rows) of a fused matrix as a weight of their own (rows are contiguous). */
static slm_weight weight_rows(const slm_weight *w, int64_t row0, int64_t rows) {
    slm_weight v = *w;
    v.data = (const uint8_t *)w->data + (size_t)row0 * w->row_bytes;
    v.m = rows;
    v.packed = NULL;
    return v;
}

/* Vectors (norm weights, biases) are copied to f32 so the forward pass needs no per-type code for them. */
static int load_vector(slm_model *m, const char *name, int64_t n, bool required, float **out, char *err, size_t err_len) {
    int rc;
    *out = NULL;
    const gguf_tensor *t = want_tensor(m, name, n, 0, required, err, err_len, &rc);
    if (!t) return rc;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return slm_err(err, err_len, "out of memory loading '%s'", name);
    slm_dequantize_row(t->type, t->data, *out, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite((*out)[i]))
            return slm_err(err, err_len, "%s: tensor '%s' holds a non-finite value at %" PRId64, gguf_name(m->gguf), name, i);
    return 0;
}

static const char *file_type_name(uint32_t ft) {
    switch (ft) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 25: return "IQ4_NL - 4.5 bpw";
    case 32: return "BF16";
    default: return "?";
    }
}

static int load_weights(slm_model *m, char *err, size_t err_len) {
    slm_hparams *hp = &m->hp;
    const char *fn = gguf_name(m->gguf);
    int rc;
    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return slm_err(err, err_len, "%s: missing tensor 'token_embd.weight'", fn);
    if (emb->ne[1] != hp->n_vocab)
        return slm_err(err, err_len, "%s: tensor 'token_embd.weight' has %" PRId64 " rows, the vocabulary has %d tokens", fn,
                       emb->ne[1], hp->n_vocab);
    if ((rc = load_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err, err_len))) return rc;
    const slm_arch *a = m->arch;
    if (a->encoder) {
        const gguf_tensor *tt = gguf_find_tensor(m->gguf, "token_types.weight");
        if (tt) {
            slm_weight types = {0};
            int64_t n_types = tt->ne[1] >= 1 && tt->ne[1] <= 1024 ? tt->ne[1] : 1;
            if ((rc = load_matrix(m, "token_types.weight", hp->n_embd, n_types, true, &types, err, err_len))) return rc;
            if (!(m->tok_type0 = malloc(sizeof(float) * (size_t)hp->n_embd))) return slm_err(err, err_len, "out of memory");
            slm_weight_row_f32(&types, 0, m->tok_type0); /* llama.cpp always uses token type 0 */
        }
        if (a->learned_pos &&
            (rc = load_matrix(m, "position_embd.weight", hp->n_embd, hp->n_ctx_train, true, &m->pos_embd, err, err_len)))
            return rc;
        if ((rc = load_vector(m, "token_embd_norm.weight", hp->n_embd, true, &m->tok_norm, err, err_len))) return rc;
        if ((rc = load_vector(m, "token_embd_norm.bias", hp->n_embd, true, &m->tok_norm_b, err, err_len))) return rc;
    } else {
        if ((rc = load_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm, err, err_len))) return rc;
        if ((rc = load_matrix(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err, err_len))) return rc;
        if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    }
    if (gguf_find_tensor(m->gguf, "rope_freqs.weight")) {
        if ((rc = load_vector(m, "rope_freqs.weight", hp->rope_dim / 2, true, &m->rope_freq_factors, err, err_len)))
            return rc;
        for (int i = 0; i < hp->rope_dim / 2; i++)
            if (!(m->rope_freq_factors[i] > 0))
                return slm_err(err, err_len, "%s: tensor 'rope_freqs.weight' has a non-positive factor at %d", fn, i);
    }
    if (gguf_find_tensor(m->gguf, "rope_factors_long.weight") || gguf_find_tensor(m->gguf, "rope_factors_short.weight")) {
        /* LongRoPE: both sets, one chosen per context by its length */
        if ((rc = load_vector(m, "rope_factors_long.weight", hp->rope_dim / 2, true, &m->rope_long, err, err_len)) ||
            (rc = load_vector(m, "rope_factors_short.weight", hp->rope_dim / 2, true, &m->rope_short, err, err_len)))
            return rc;
        for (int i = 0; i < hp->rope_dim / 2; i++)
            if (!(m->rope_long[i] > 0) || !(m->rope_short[i] > 0))
                return slm_err(err, err_len, "%s: LongRoPE factor %d is not positive", fn, i);
    }
    int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    if (a->fused_qkv && q_dim != hp->n_embd)
        return slm_err(err, err_len, "%s: fused attn_qkv needs n_head x head_dim (%d) = n_embd (%d)", fn, q_dim, hp->n_embd);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return slm_err(err, err_len, "out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        slm_layer *L = &m->layers[l];
        char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
        if (a->encoder) {
            if ((rc = load_vector(m, NAME("attn_output_norm.weight"), hp->n_embd, true, &L->attn_norm, err, err_len)) ||
                (rc = load_vector(m, NAME("attn_output_norm.bias"), hp->n_embd, true, &L->attn_norm_b, err, err_len)) ||
                (rc = load_vector(m, NAME("layer_output_norm.weight"), hp->n_embd, true, &L->ffn_norm, err, err_len)) ||
                (rc = load_vector(m, NAME("layer_output_norm.bias"), hp->n_embd, true, &L->ffn_norm_b, err, err_len)))
                return rc;
        } else {
            if ((rc = load_vector(m, NAME("attn_norm.weight"), hp->n_embd, true, &L->attn_norm, err, err_len))) return rc;
            if ((rc = load_vector(m, NAME("ffn_norm.weight"), hp->n_embd, true, &L->ffn_norm, err, err_len))) return rc;
        }
        if (a->post_norms &&
            ((rc = load_vector(m, NAME("post_attention_norm.weight"), hp->n_embd, true, &L->post_attn_norm, err, err_len)) ||
             (rc = load_vector(m, NAME("post_ffw_norm.weight"), hp->n_embd, true, &L->post_ffn_norm, err, err_len))))
            return rc;
        if (a->fused_qkv) {
            slm_weight qkv = {0};
            if ((rc = load_matrix(m, NAME("attn_qkv.weight"), hp->n_embd, q_dim + 2 * kv_dim, true, &qkv, err, err_len)))
                return rc;
            L->wq = weight_rows(&qkv, 0, q_dim);
            L->wk = weight_rows(&qkv, q_dim, kv_dim);
            L->wv = weight_rows(&qkv, q_dim + kv_dim, kv_dim);
        } else {
            if ((rc = load_matrix(m, NAME("attn_q.weight"), hp->n_embd, q_dim, true, &L->wq, err, err_len))) return rc;
            if ((rc = load_matrix(m, NAME("attn_k.weight"), hp->n_embd, kv_dim, true, &L->wk, err, err_len))) return rc;
            if ((rc = load_matrix(m, NAME("attn_v.weight"), hp->n_embd, kv_dim, true, &L->wv, err, err_len))) return rc;
        }
        if ((rc = load_matrix(m, NAME("attn_output.weight"), q_dim, hp->n_embd, true, &L->wo, err, err_len))) return rc;
        if (a->fused_gate_up) {
            slm_weight gu = {0};
            if ((rc = load_matrix(m, NAME("ffn_up.weight"), hp->n_embd, 2 * (int64_t)hp->n_ff, true, &gu, err, err_len)))
                return rc;
            L->w_gate = weight_rows(&gu, 0, hp->n_ff);
            L->w_up = weight_rows(&gu, hp->n_ff, hp->n_ff);
        } else {
            if (a->ffn_gated &&
                (rc = load_matrix(m, NAME("ffn_gate.weight"), hp->n_embd, hp->n_ff, true, &L->w_gate, err, err_len)))
                return rc;
            if ((rc = load_matrix(m, NAME("ffn_up.weight"), hp->n_embd, hp->n_ff, true, &L->w_up, err, err_len))) return rc;
        }
        if ((rc = load_matrix(m, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, true, &L->w_down, err, err_len))) return rc;
        bool bias = a->qkv_bias;
        if ((rc = load_vector(m, NAME("attn_q.bias"), q_dim, bias, &L->bq, err, err_len))) return rc;
        if ((rc = load_vector(m, NAME("attn_k.bias"), kv_dim, bias, &L->bk, err, err_len))) return rc;
        if ((rc = load_vector(m, NAME("attn_v.bias"), kv_dim, bias, &L->bv, err, err_len))) return rc;
        if (a->learned_pos &&
            ((rc = load_vector(m, NAME("attn_output.bias"), hp->n_embd, true, &L->bo, err, err_len)) ||
             (rc = load_vector(m, NAME("ffn_up.bias"), hp->n_ff, true, &L->b_up, err, err_len)) ||
             (rc = load_vector(m, NAME("ffn_down.bias"), hp->n_embd, true, &L->b_down, err, err_len))))
            return rc;
        L->window = hp->n_swa > 0 && (!a->alt_swa || l % 2 == 0) ? hp->n_swa : 0;
#undef NAME
    }
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) m->n_bytes += gguf_tensor_at(m->gguf, i)->n_bytes;
    return 0;
}

/* Every matrix the forward pass multiplies (not tok_embd, which is only looked up by row). */
static int matmul_weights(slm_model *m, slm_weight **out) {
    int n = 0;
    if (m->output.data) out[n++] = &m->output;
    for (int l = 0; l < m->hp.n_layer; l++) {
        slm_layer *L = &m->layers[l];
        slm_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->data) out[n++] = ws[i];
    }
    return n;
}

/* A matrix's packed copy: the R16 layout of its type, or an encoder's F16 matrix scaled to int16
 * (kernels.h; conf_embed holds its embeddings to the F16 tolerance of the f32 oracle; decoders keep
 * multiplying their F16 weights in f32). */
static size_t packed_bytes(const slm_model *m, const slm_weight *w) {
    const size_t bytes = slm_weight_packed_bytes(w);
    return bytes || !m->arch->encoder ? bytes : slm_weight_i16_bytes(w);
}

static void release_source(void *gguf, const void *p, size_t n) {
    gguf_release_pages(gguf, p, n);
}

/* Repacks the matrices for the fast kernels where they have a layout (kernels/packed.h), into one
 * arena. The mapped bytes of a packed matrix are handed back to the page cache as they are packed,
 * so the process holds one copy of the weights, as without packing. Transparent huge pages for
 * the arena make decoding ~5% cheaper (1B Q4_0) for ~0.1 s more page clearing at load. If the
 * arena cannot be had, the unpacked kernels are used. */
static void pack_weights(slm_model *m) {
    slm_weight **ws = malloc(sizeof *ws * (size_t)(1 + 7 * m->hp.n_layer));
    if (!ws) return;
    int n = matmul_weights(m, ws);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (packed_bytes(m, ws[i]) + 63) & ~(size_t)63;
    uint8_t *arena = total ? mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
    if (arena == MAP_FAILED) {
        free(ws);
        return;
    }
    madvise(arena, total, MADV_HUGEPAGE); /* a hint: fewer TLB misses while streaming */
    m->packed_arena = arena;
    m->packed_arena_bytes = total;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    slm_pool *pool = slm_pool_new(cpus < 1 ? 1 : cpus > 8 ? 8 : (int)cpus);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = packed_bytes(m, ws[i]);
        if (!bytes) continue;
        slm_weight_pack(pool, ws[i], arena + at, release_source, m->gguf);
        at += (bytes + 63) & ~(size_t)63;
    }
    slm_pool_free(pool);
    free(ws);
    /* tied embeddings: the lookups read the packed copy, so the released pages stay released */
    if (m->tok_embd.data == m->output.data) m->tok_embd.packed = m->output.packed;
}

static int load_hparams(slm_model *m, char *err, size_t err_len) {
    slm_hparams *hp = &m->hp;
    int rc;
    if ((rc = get_hparam(m, "context_length", true, 0, 1, 1 << 24, &hp->n_ctx_train, err, err_len))) return rc;
    if ((rc = get_hparam(m, "embedding_length", true, 0, 1, 1 << 16, &hp->n_embd, err, err_len))) return rc;
    if ((rc = get_hparam(m, "block_count", true, 0, 1, 1024, &hp->n_layer, err, err_len))) return rc;
    if ((rc = get_hparam(m, "feed_forward_length", true, 0, 1, 1 << 18, &hp->n_ff, err, err_len))) return rc;
    if ((rc = get_hparam(m, "attention.head_count", true, 0, 1, 1024, &hp->n_head, err, err_len))) return rc;
    if ((rc = get_hparam(m, "attention.head_count_kv", false, hp->n_head, 1, hp->n_head, &hp->n_head_kv, err, err_len)))
        return rc;
    if (hp->n_head % hp->n_head_kv != 0)
        return slm_err(err, err_len, "%s: head count %d is not a multiple of the kv head count %d", gguf_name(m->gguf),
                       hp->n_head, hp->n_head_kv);
    if (hp->n_head / hp->n_head_kv > SLM_MAX_GQA_GROUP)
        return slm_err(err, err_len, "%s: %d query heads per kv head (at most %d supported)", gguf_name(m->gguf),
                       hp->n_head / hp->n_head_kv, SLM_MAX_GQA_GROUP);
    if (hp->n_embd % hp->n_head != 0)
        return slm_err(err, err_len, "%s: embedding length %d is not a multiple of the head count %d", gguf_name(m->gguf),
                       hp->n_embd, hp->n_head);
    if ((rc = get_hparam(m, "attention.key_length", false, hp->n_embd / hp->n_head, 1, 1024, &hp->head_dim, err, err_len)))
        return rc;
    int vlen;
    if ((rc = get_hparam(m, "attention.value_length", false, hp->head_dim, 1, 1024, &vlen, err, err_len))) return rc;
    if (vlen != hp->head_dim)
        return slm_err(err, err_len, "%s: key length %d differs from value length %d (not supported)", gguf_name(m->gguf),
                       hp->head_dim, vlen);
    if ((rc = get_hparam(m, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->rope_dim, err, err_len)))
        return rc;
    if (hp->rope_dim % 2)
        return slm_err(err, err_len, "%s: rope dimension %d is odd", gguf_name(m->gguf), hp->rope_dim);
    if ((rc = get_fparam(m, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base, err, err_len))) return rc;
    if ((rc = get_fparam(m, m->arch->encoder ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon",
                         m->arch->encoder ? 1e-12f : 1e-5f, 0.0f, 1.0f, &hp->rms_eps, err, err_len)))
        return rc;
    const slm_arch *a = m->arch;
    if ((rc = get_fparam(m, "rope.scaling.attn_factor", 1.0f, 1e-3f, 1e3f, &hp->rope_attn_factor, err, err_len))) return rc;
    if ((rc = get_hparam(m, "rope.scaling.original_context_length", false, hp->n_ctx_train, 1, 1 << 24, &hp->n_ctx_orig,
                         err, err_len)))
        return rc;
    hp->n_swa = 0;
    if (!strcmp(a->name, "phi3") || a->alt_swa) {
        if ((rc = get_hparam(m, "attention.sliding_window", false, a->alt_swa ? 4096 : 0, 0, 1 << 30, &hp->n_swa, err,
                             err_len)))
            return rc;
    }
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->attn_softcap = hp->final_softcap = 0;
    if (a->softcap) {
        if ((rc = get_fparam(m, "attn_logit_softcapping", 50.0f, 1e-3f, 1e6f, &hp->attn_softcap, err, err_len)) ||
            (rc = get_fparam(m, "final_logit_softcapping", 30.0f, 1e-3f, 1e6f, &hp->final_softcap, err, err_len)))
            return rc;
        /* llama.cpp c392e509 has no key for query_pre_attn_scalar: it picks it by the model type,
         * which it reads from the layer count (46 layers = Gemma-2-27B: n_embd / n_head). */
        if (hp->n_layer == 46) hp->q_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    }
    hp->pooling = SLM_POOL_NONE;
    if (a->encoder) {
        int pt;
        if ((rc = get_hparam(m, "pooling_type", false, SLM_POOL_MEAN, 0, 3, &pt, err, err_len))) return rc;
        hp->pooling = pt == SLM_POOL_NONE ? SLM_POOL_MEAN : (enum slm_pooling)pt;
    }
    /* Rope scaling other than linear (and llama3's freq factors tensor) would silently change the math. */
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch->name);
    gguf_str st;
    rc = gguf_get_str(m->gguf, key, &st, err, err_len);
    if (rc == -2) return -1;
    if (rc == 0 && !gguf_str_eq(st, "none") && !gguf_str_eq(st, "linear"))
        return slm_err(err, err_len, "%s: rope scaling type '%.*s' is not supported", gguf_name(m->gguf),
                       (int)(st.len < 32 ? st.len : 32), st.ptr);
    if (rc == 0 && gguf_str_eq(st, "linear")) {
        float factor;
        if ((rc = get_fparam(m, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor, err, err_len))) return rc;
        hp->rope_freq_scale = 1.0f / factor;
    }
    return 0;
}

static void describe(slm_model *m) {
    uint32_t ft = 0;
    char tmp[8];
    bool has_ft = gguf_get_u32(m->gguf, "general.file_type", &ft, tmp, sizeof tmp) == 0;
    char size[32];
    double p = (double)m->n_params;
    if (p >= 1e9) snprintf(size, sizeof size, "%.0fB", p / 1e9);
    else if (p >= 1e6) snprintf(size, sizeof size, "%.0fM", p / 1e6);
    else snprintf(size, sizeof size, "?B");
    if (has_ft) {
        snprintf(m->desc, sizeof m->desc, "%s %s %s", m->arch->name, size, file_type_name(ft));
        return;
    }
    /* No file type recorded: name the type most weight bytes use, marked as a guess. */
    uint64_t bytes_by_type[SLM_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        if (t->n_dims >= 2) bytes_by_type[t->type] += t->n_bytes;
    }
    uint32_t best = SLM_TYPE_F32;
    for (uint32_t t = 0; t < SLM_TYPE_COUNT; t++)
        if (bytes_by_type[t] > bytes_by_type[best]) best = t;
    char tname[16];
    snprintf(tname, sizeof tname, "%s", slm_type_name(best));
    for (char *p = tname; *p; p++) *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    snprintf(m->desc, sizeof m->desc, "%s %s %s%s (guessed)", m->arch->name, size, best == SLM_TYPE_F32 ? "all " : "", tname);
}

int slm_model_load(const char *path, const slm_model_params *params, slm_model **out, char *err, size_t err_len) {
    *out = NULL;
    slm_model *m = calloc(1, sizeof *m);
    if (!m) return slm_err(err, err_len, "out of memory");
    m->vocab_only = params && params->vocab_only;
    if (gguf_open(path, &m->gguf, err, err_len)) goto fail;
    m->meta_text = calloc((size_t)gguf_n_kv(m->gguf) + 1, sizeof *m->meta_text);
    if (!m->meta_text) goto oom;
    for (int64_t i = 0; i < gguf_n_kv(m->gguf); i++)
        if (!(m->meta_text[i] = render_value(gguf_kv_at(m->gguf, i)))) goto oom;
    if (slm_vocab_load(m->gguf, &m->vocab, err, err_len)) goto fail;
    m->hp.n_vocab = slm_vocab_n_tokens(m->vocab);
    if (m->vocab_only) {
        snprintf(m->desc, sizeof m->desc, "vocab only");
        *out = m;
        return 0;
    }
    if (gguf_n_tensors(m->gguf) == 0) {
        slm_err(err, err_len, "%s: the file has no tensors (a vocab-only GGUF): it can be tokenized, not run", path);
        goto fail;
    }
    gguf_str arch;
    if (gguf_get_str(m->gguf, "general.architecture", &arch, err, err_len)) {
        if (!gguf_find(m->gguf, "general.architecture"))
            slm_err(err, err_len, "%s: missing metadata key 'general.architecture'", path);
        goto fail;
    }
    for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++)
        if (gguf_str_eq(arch, known_archs[i].name)) m->arch = &known_archs[i];
    if (!m->arch) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(arch.len < 48 ? arch.len : 48), arch.ptr);
        slm_err(err, err_len, "%s: unsupported architecture '%s' (supported: " SUPPORTED_ARCHS ")", path, name);
        goto fail;
    }
    if (load_hparams(m, err, err_len) || load_weights(m, err, err_len)) goto fail;
    pack_weights(m);
    describe(m);
    *out = m;
    return 0;
oom:
    slm_err(err, err_len, "%s: out of memory", path);
fail:
    slm_model_free(m);
    return -1;
}

void slm_model_free(slm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            slm_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->bo);
            free(L->b_up);
            free(L->b_down);
            free(L->attn_norm_b);
            free(L->ffn_norm_b);
            free(L->post_attn_norm);
            free(L->post_ffn_norm);
        }
        free(m->layers);
    }
    free(m->output_norm);
    free(m->rope_freq_factors);
    free(m->rope_long);
    free(m->rope_short);
    free(m->tok_type0);
    free(m->tok_norm);
    free(m->tok_norm_b);
    if (m->meta_text) {
        for (int64_t i = 0; m->gguf && i < gguf_n_kv(m->gguf); i++) free(m->meta_text[i]);
        free(m->meta_text);
    }
    if (m->vocab) slm_vocab_free(m->vocab);
    if (m->packed_arena) munmap(m->packed_arena, m->packed_arena_bytes);
    gguf_close(m->gguf);
    free(m);
}

void slm_model_print_info(const slm_model *m, void *fp_) {
    FILE *fp = fp_;
    const gguf_file *f = m->gguf;
    fprintf(fp, "file: %s\nformat: GGUF v%u, %zu bytes\ndescription: %s\n", gguf_name(f), gguf_version(f), gguf_file_size(f),
            m->desc);
    if (!m->vocab_only) {
        const slm_hparams *hp = &m->hp;
        fprintf(fp,
                "architecture: %s\nparameters: %" PRIu64 "\nvocab: %d\ncontext (trained): %d\nembedding: %d\nlayers: %d\n"
                "heads: %d (kv %d, dim %d)\nfeed-forward: %d\nrope: dim %d, base %g%s\nrms eps: %g\n",
                m->arch->name, m->n_params, hp->n_vocab, hp->n_ctx_train, hp->n_embd, hp->n_layer, hp->n_head,
                hp->n_head_kv, hp->head_dim, hp->n_ff, hp->rope_dim, (double)hp->rope_base,
                m->rope_freq_factors ? ", freq factors" : m->rope_long ? ", LongRoPE long/short factors" : "",
                (double)hp->rms_eps);
        if (m->arch->learned_pos) fprintf(fp, "positions: learned (%d), no rope\n", hp->n_ctx_train);
        if (hp->n_swa)
            fprintf(fp, "sliding window: %d (%s)\n", hp->n_swa, m->arch->alt_swa ? "even layers" : "every layer");
        if (hp->attn_softcap > 0)
            fprintf(fp, "soft-caps: attention %g, final %g\n", (double)hp->attn_softcap, (double)hp->final_softcap);
        if (m->arch->encoder)
            fprintf(fp, "embedding model: bidirectional, %s pooling, L2-normalised\n",
                    hp->pooling == SLM_POOL_CLS ? "CLS" : hp->pooling == SLM_POOL_LAST ? "last-token" : "mean");
    }
    fprintf(fp, "\nmetadata (%" PRId64 " keys):\n", gguf_n_kv(f));
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        const char *v = m->meta_text[i];
        int vlen = (int)strlen(v);
        bool long_value = vlen > 120;
        fprintf(fp, "  %-44.*s = ", (int)kv->key.len, kv->key.ptr);
        for (int j = 0; j < (long_value ? 117 : vlen); j++) fputc(v[j] == '\n' ? ' ' : v[j], fp);
        fprintf(fp, "%s\n", long_value ? "..." : "");
    }
    fprintf(fp, "\ntensors (%" PRId64 "):\n", gguf_n_tensors(f));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char shape[96];
        int o = 0;
        for (int d = 0; d < t->n_dims; d++) o += snprintf(shape + o, sizeof shape - (size_t)o, d ? " x %" PRId64 : "%" PRId64, t->ne[d]);
        fprintf(fp, "  %-32.*s %-7s %-22s %12" PRIu64 " bytes\n", (int)t->name.len, t->name.ptr, slm_type_name(t->type),
                shape, t->n_bytes);
    }
}
