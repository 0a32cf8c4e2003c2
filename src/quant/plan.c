/* Which type each tensor gets: llama-quantize's rules (tensor categories, the _S/_M/_L mixes'
 * bumps of attn_v / ffn_down / attn_output, the output and tied-embedding rule, fallbacks for rows
 * that are not a multiple of the block size), re-stated here so slm's files match its choices. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_impl.h"
#include "slm_quant.h"
#include "tensor/types.h"
#include "util/err.h"

static int get_count(const gguf_file *f, const char *arch, const char *suffix, int *out, char *err, size_t err_len) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return -1;
    int64_t v = 0;
    if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING) {
        /* per-layer head counts: the rules use layer 0's, like llama.cpp's n_gqa() */
        if (kv->arr_n == 0) return slm_err(err, err_len, "%s: key '%s' is an empty array", gguf_name(f), key);
        v = gguf_arr_i64(kv, 0);
    } else if (gguf_get_i64(f, key, &v, err, err_len)) {
        return -2;
    }
    if (v < 0 || v > 1000000) return slm_err(err, err_len, "%s: key '%s' = %lld is out of range", gguf_name(f), key, (long long)v), -2;
    *out = (int)v;
    return 0;
}

int quant_model_info_read(const gguf_file *f, quant_model_info *info, char *err, size_t err_len) {
    memset(info, 0, sizeof *info);
    gguf_str arch;
    int rc = gguf_get_str(f, "general.architecture", &arch, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: no general.architecture: not a model file", gguf_name(f));
    if (rc) return -1;
    if (arch.len == 0 || arch.len >= sizeof info->arch || memchr(arch.ptr, 0, arch.len))
        return slm_err(err, err_len, "%s: general.architecture is not a usable name", gguf_name(f));
    memcpy(info->arch, arch.ptr, arch.len);
    info->arch[arch.len] = 0;
    rc = get_count(f, info->arch, "block_count", &info->n_layer, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: no %s.block_count", gguf_name(f), info->arch);
    if (rc) return -1;
    if (get_count(f, info->arch, "attention.head_count", &info->n_head, err, err_len) < -1) return -1;
    info->n_head_kv = info->n_head;
    if (get_count(f, info->arch, "attention.head_count_kv", &info->n_head_kv, err, err_len) < -1) return -1;
    if (get_count(f, info->arch, "expert_count", &info->n_expert, err, err_len) < -1) return -1;
    info->is_falcon = strcmp(info->arch, "falcon") == 0;
    /* llama.cpp calls an 80-layer llama with grouped-query attention "70B" and bumps its attn_v */
    info->is_70b = strcmp(info->arch, "llama") == 0 && info->n_layer == 80 && info->n_head != info->n_head_kv;
    return 0;
}

/* "blk.N." -> N, else -1 (what sscanf("blk.%d.") gives the sort and the expert rules). */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    while (isspace((unsigned char)*p)) p++;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < -1000000 || v > 1000000) return -1;
    return (int)v;
}

static bool contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }
static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static enum quant_category category_of(const char *name) {
    if (!strcmp(name, "output.weight")) return QCAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return QCAT_TOKEN_EMBD;
    if (contains(name, "attn_qkv.weight")) return QCAT_ATTN_QKV;
    if (contains(name, "attn_kv_b.weight")) return QCAT_ATTN_KV_B;
    if (contains(name, "attn_v.weight")) return QCAT_ATTN_V;
    if (contains(name, "attn_k.weight")) return QCAT_ATTN_K;
    if (contains(name, "attn_q.weight")) return QCAT_ATTN_Q;
    if (contains(name, "attn_output.weight")) return QCAT_ATTN_OUTPUT;
    if (contains(name, "ffn_up")) return QCAT_FFN_UP;
    if (contains(name, "ffn_gate")) return QCAT_FFN_GATE;
    if (contains(name, "ffn_down")) return QCAT_FFN_DOWN;
    return QCAT_OTHER;
}

static bool is_attn_v_like(enum quant_category c) { return c == QCAT_ATTN_V || c == QCAT_ATTN_QKV || c == QCAT_ATTN_KV_B; }

/* Dimensions counted the way ggml does: up to the last one larger than 1. */
static int effective_dims(const gguf_tensor *t) {
    for (int d = GGUF_MAX_DIMS - 1; d > 0; d--)
        if (t->ne[d] > 1) return d + 1;
    return 1;
}

/* Small or special weights llama-quantize never quantizes (norms, routers, positional tables, ...). */
static bool allows_quantization(const gguf_tensor *t, const char *name) {
    if (effective_dims(t) < 2) return false;
    if (!ends_with(name, "weight")) return false;
    static const char *const kept[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd",
        "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook",
        "mm.a.code_embd"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        if (contains(name, kept[i])) return false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) return false;
    return true;
}

static uint32_t default_type(int ftype) {
    switch (ftype) {
    case SLM_FTYPE_ALL_F32: return SLM_TYPE_F32;
    case SLM_FTYPE_F16: return SLM_TYPE_F16;
    case SLM_FTYPE_BF16: return SLM_TYPE_BF16;
    case SLM_FTYPE_Q4_0: return SLM_TYPE_Q4_0;
    case SLM_FTYPE_Q4_1: return SLM_TYPE_Q4_1;
    case SLM_FTYPE_Q5_0: return SLM_TYPE_Q5_0;
    case SLM_FTYPE_Q5_1: return SLM_TYPE_Q5_1;
    case SLM_FTYPE_Q8_0: return SLM_TYPE_Q8_0;
    case SLM_FTYPE_Q2_K: return SLM_TYPE_Q2_K;
    case SLM_FTYPE_Q3_K_S: case SLM_FTYPE_Q3_K_M: case SLM_FTYPE_Q3_K_L: return SLM_TYPE_Q3_K;
    case SLM_FTYPE_Q4_K_S: case SLM_FTYPE_Q4_K_M: return SLM_TYPE_Q4_K;
    case SLM_FTYPE_Q5_K_S: case SLM_FTYPE_Q5_K_M: return SLM_TYPE_Q5_K;
    case SLM_FTYPE_Q6_K: return SLM_TYPE_Q6_K;
    case SLM_FTYPE_IQ4_NL: return SLM_TYPE_IQ4_NL;
    default: return UINT32_MAX;
    }
}

static bool is_quantized(uint32_t type) { return type != SLM_TYPE_F32 && type != SLM_TYPE_F16 && type != SLM_TYPE_BF16; }

/* Layers that get more bits in the _M mixes: the first and last eighth and every third between. */
static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

typedef struct plan_state {
    const quant_model_info *info;
    int ftype;
    bool has_imatrix, tied_embeddings;
    int n_attn_v, i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up;
} plan_state;

static int n_gqa(const quant_model_info *m) { return m->n_head_kv ? m->n_head / m->n_head_kv : 0; }

/* The mix rules (llama.cpp's llama_tensor_get_type_impl for the file types slm offers). */
static uint32_t mix_type(plan_state *s, uint32_t t, const quant_tensor *qt) {
    const quant_model_info *m = s->info;
    const int ft = s->ftype;
    const enum quant_category cat = qt->category;
    if (cat == QCAT_OUTPUT || (s->tied_embeddings && cat == QCAT_TOKEN_EMBD)) {
        const int64_t nx = qt->src->ne[0];
        if (m->is_falcon || nx % slm_type_info_get(t)->block_size != 0) t = SLM_TYPE_Q8_0;
        else if (t != SLM_TYPE_Q8_0) t = SLM_TYPE_Q6_K;
        return t;
    }
    if (cat == QCAT_TOKEN_EMBD) return t;
    /* experts are not consecutive in some models: their layer comes from the name */
    int layer_override = m->n_expert > 1 ? qt->layer : -2;
    if (is_attn_v_like(cat)) {
        if (ft == SLM_FTYPE_Q2_K) t = n_gqa(m) >= 4 ? SLM_TYPE_Q4_K : SLM_TYPE_Q3_K;
        else if (ft == SLM_FTYPE_Q3_K_M) t = s->i_attn_v < 2 ? SLM_TYPE_Q5_K : SLM_TYPE_Q4_K;
        else if (ft == SLM_FTYPE_Q3_K_L) t = SLM_TYPE_Q5_K;
        else if (ft == SLM_FTYPE_IQ4_NL && n_gqa(m) >= 4) t = SLM_TYPE_Q5_K;
        else if ((ft == SLM_FTYPE_Q4_K_M || ft == SLM_FTYPE_Q5_K_M) && use_more_bits(s->i_attn_v, s->n_attn_v)) t = SLM_TYPE_Q6_K;
        else if (ft == SLM_FTYPE_Q4_K_S && s->i_attn_v < 4) t = SLM_TYPE_Q5_K;
        if (m->is_70b && (t == SLM_TYPE_Q3_K || t == SLM_TYPE_Q4_K)) t = SLM_TYPE_Q5_K;
        if (m->n_expert == 8) t = SLM_TYPE_Q8_0;
        s->i_attn_v++;
    } else if (cat == QCAT_ATTN_K) {
        if (m->n_expert == 8) t = SLM_TYPE_Q8_0;
    } else if (cat == QCAT_FFN_DOWN) {
        int i_layer = layer_override >= -1 ? layer_override : s->i_ffn_down, n_layer = m->n_layer;
        if (ft == SLM_FTYPE_Q2_K) t = SLM_TYPE_Q3_K;
        else if (ft == SLM_FTYPE_Q3_K_M)
            t = i_layer < n_layer / 16 ? SLM_TYPE_Q5_K : (!m->is_falcon || use_more_bits(i_layer, n_layer)) ? SLM_TYPE_Q4_K : SLM_TYPE_Q3_K;
        else if (ft == SLM_FTYPE_Q3_K_L) t = m->is_falcon ? SLM_TYPE_Q4_K : SLM_TYPE_Q5_K;
        else if (ft == SLM_FTYPE_Q4_K_M) {
            if (m->is_falcon)
                t = i_layer < n_layer / 16 ? SLM_TYPE_Q6_K : use_more_bits(i_layer, n_layer) ? SLM_TYPE_Q5_K : SLM_TYPE_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                t = SLM_TYPE_Q6_K;
        } else if (i_layer < n_layer / 8 && ft == SLM_FTYPE_IQ4_NL && !s->has_imatrix)
            t = SLM_TYPE_Q5_K;
        else if (ft == SLM_FTYPE_Q5_K_M && use_more_bits(i_layer, n_layer)) t = SLM_TYPE_Q6_K;
        else if (ft == SLM_FTYPE_Q4_K_S && !m->is_falcon && i_layer < n_layer / 8) t = SLM_TYPE_Q5_K;
        else if ((ft == SLM_FTYPE_Q4_0 || ft == SLM_FTYPE_Q5_0) && s->has_imatrix && i_layer < n_layer / 8)
            t = ft == SLM_FTYPE_Q4_0 ? SLM_TYPE_Q4_1 : SLM_TYPE_Q5_1;
        s->i_ffn_down++;
    } else if (cat == QCAT_ATTN_OUTPUT) {
        if (!m->is_falcon) {
            if (m->n_expert == 8) {
                if (ft == SLM_FTYPE_Q2_K || ft == SLM_FTYPE_Q3_K_S || ft == SLM_FTYPE_Q3_K_M || ft == SLM_FTYPE_IQ4_NL ||
                    ft == SLM_FTYPE_Q4_K_S || ft == SLM_FTYPE_Q4_K_M)
                    t = SLM_TYPE_Q5_K;
            } else {
                if (ft == SLM_FTYPE_Q2_K) t = SLM_TYPE_Q3_K;
                else if (ft == SLM_FTYPE_Q3_K_M) t = SLM_TYPE_Q4_K;
                else if (ft == SLM_FTYPE_Q3_K_L) t = SLM_TYPE_Q5_K;
            }
        } else if (ft == SLM_FTYPE_Q3_K_L) {
            t = SLM_TYPE_Q4_K;
        }
    } else if (cat == QCAT_ATTN_QKV) {
        /* (counted with attn_v above: never reached, kept for the llama.cpp order) */
    } else if (cat == QCAT_FFN_GATE) {
        s->i_ffn_gate++;
    } else if (cat == QCAT_FFN_UP) {
        s->i_ffn_up++;
    }
    return t;
}

/* A type whose block does not divide the row length falls back to one whose block does. */
static uint32_t fallback_type(uint32_t t, int64_t ncols, bool *fell_back) {
    const slm_type_info *ti = slm_type_info_get(t);
    if (ncols % ti->block_size == 0) return t;
    *fell_back = true;
    uint32_t r;
    switch (t) {
    case SLM_TYPE_Q2_K: case SLM_TYPE_Q3_K: r = SLM_TYPE_Q4_0; break;
    case SLM_TYPE_Q4_K: r = SLM_TYPE_Q5_0; break;
    case SLM_TYPE_Q5_K: r = SLM_TYPE_Q5_1; break;
    case SLM_TYPE_Q6_K: r = SLM_TYPE_Q8_0; break;
    default: return UINT32_MAX; /* llama-quantize has no fallback for the 32-element types either */
    }
    if (ncols % slm_type_info_get(r)->block_size != 0) r = SLM_TYPE_F16;
    return r;
}

static int compare_tensors(const void *a, const void *b) {
    const quant_tensor *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

quant_tensor *quant_plan(const gguf_file *f, const quant_model_info *info, int ftype, bool has_imatrix, int64_t *n_out,
                         char *err, size_t err_len) {
    const uint32_t dflt = default_type(ftype);
    if (dflt == UINT32_MAX) return slm_err(err, err_len, "file type %d is not supported", ftype), NULL;
    const int64_t n = gguf_n_tensors(f);
    quant_tensor *ts = calloc((size_t)(n ? n : 1), sizeof *ts);
    if (!ts) return slm_err(err, err_len, "out of memory"), NULL;
    plan_state s = {.info = info, .ftype = ftype, .has_imatrix = has_imatrix, .tied_embeddings = true};
    for (int64_t i = 0; i < n; i++) {
        quant_tensor *q = &ts[i];
        q->src = gguf_tensor_at(f, i);
        if (q->src->name.len >= sizeof q->name || memchr(q->src->name.ptr, 0, q->src->name.len)) {
            free(ts);
            return slm_err(err, err_len, "%s: tensor %lld has an unusable name", gguf_name(f), (long long)i), NULL;
        }
        memcpy(q->name, q->src->name.ptr, q->src->name.len);
        q->name[q->src->name.len] = 0;
        q->layer = layer_of(q->name);
        q->category = category_of(q->name);
        if (is_attn_v_like(q->category)) s.n_attn_v++;
        if (q->category == QCAT_OUTPUT) s.tied_embeddings = false;
    }
    /* llama.cpp's loader keeps its tensors in a map ordered by layer, then name: files come out so */
    qsort(ts, (size_t)n, sizeof *ts, compare_tensors);
    for (int64_t i = 0; i < n; i++) {
        quant_tensor *q = &ts[i];
        q->allows_quantization = allows_quantization(q->src, q->name);
        q->new_type = q->src->type;
        if (!q->allows_quantization) continue;
        uint32_t t = dflt;
        if (is_quantized(dflt)) {
            t = mix_type(&s, t, q);
            uint32_t chosen = t;
            t = fallback_type(t, q->src->ne[0], &q->fell_back);
            if (t == UINT32_MAX) {
                slm_err(err, err_len, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %d, and %s has no fallback type",
                        gguf_name(f), q->name, (long long)q->src->ne[0], slm_type_name(chosen),
                        slm_type_info_get(chosen)->block_size, slm_type_name(chosen));
                free(ts);
                return NULL;
            }
        }
        q->new_type = t;
    }
    *n_out = n;
    return ts;
}
