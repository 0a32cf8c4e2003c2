/* Model and context internals, private to src/model and src/engine. */
#ifndef SLM_MODEL_IMPL_H
#define SLM_MODEL_IMPL_H

#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "slm.h"
#include "tokenizer/vocab.h"

/* Query heads per KV head the fast attention handles in one group. */
#define SLM_MAX_GQA_GROUP 64
/* An encoder's fast attention takes the queries of one (sequence, head) in blocks of this many. */
#define SLM_ENC_ATTEND_BLOCK 256

enum slm_rope_style {
    SLM_ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): llama GGUFs (q/k rows are pre-permuted) */
    SLM_ROPE_NEOX  /* rotate (x[i], x[i + d/2]): qwen2 */
};

/* What distinguishes one architecture family from another in the shared forward pass. */
typedef struct slm_arch {
    const char *name;
    bool qkv_bias;
    enum slm_rope_style rope_style;
    bool fused_qkv;     /* blk.N.attn_qkv = Q | K | V rows (phi3, nomic-bert) */
    bool fused_gate_up; /* blk.N.ffn_up = gate | up rows (phi3) */
    bool gelu;          /* feed-forward activation: tanh-GELU from ggml's f16 table instead of SiLU */
    bool q_prescale;    /* Q is multiplied by the attention scale before QK^T (llama.cpp's phi3/gemma graphs) */
    bool embd_scale;    /* input embeddings times sqrt(n_embd) (gemma) */
    bool post_norms;    /* gemma2: RMSNorm of the attention and FFN outputs before each residual add */
    bool softcap;       /* gemma2: attention logit and final logit soft-caps */
    bool alt_swa;       /* gemma2: sliding window on even layers only (phi3: on every layer) */
    bool encoder;       /* bert family: bidirectional, post-LayerNorm, pooled embeddings, no logits */
    bool learned_pos;   /* bert: position_embd rows instead of RoPE */
    bool ffn_gated;     /* gate and up projections (false: bert's up -> GELU -> down) */
} slm_arch;

enum slm_pooling { SLM_POOL_NONE = 0, SLM_POOL_MEAN = 1, SLM_POOL_CLS = 2, SLM_POOL_LAST = 3 };

typedef struct slm_hparams {
    int n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, rope_dim;
    float rope_base, rope_freq_scale, rms_eps;
    float rope_attn_factor;   /* multiplies cos and sin (phi3 LongRoPE), 1 otherwise */
    int n_ctx_orig;           /* rope.scaling.original_context_length: above it the long factors apply */
    int n_swa;                /* sliding window of the windowed layers, 0 = none */
    float attn_softcap, final_softcap; /* 0 = none */
    float q_scale;            /* attention scale */
    enum slm_pooling pooling; /* encoders */
} slm_hparams;

typedef struct slm_layer {
    float *attn_norm, *ffn_norm;  /* owned f32 copies (n_embd); encoders: attn_output_norm, layer_output_norm */
    float *attn_norm_b, *ffn_norm_b; /* encoders' LayerNorm biases */
    float *post_attn_norm, *post_ffn_norm; /* gemma2 */
    float *bq, *bk, *bv;          /* owned f32 biases or NULL */
    float *bo, *b_up, *b_down;    /* bert biases or NULL */
    int window;                   /* sliding window of this layer, 0 = global */
    slm_weight wq, wk, wv, wo, w_gate, w_up, w_down;
} slm_layer;

struct slm_model {
    gguf_file *gguf;
    slm_vocab *vocab;
    const slm_arch *arch;
    slm_hparams hp;
    bool vocab_only;
    char desc[96];
    uint64_t n_params, n_bytes;
    slm_weight tok_embd, output;
    float *output_norm;
    float *rope_freq_factors; /* n rope_dim/2, owned, or NULL */
    float *rope_long, *rope_short; /* phi3 LongRoPE factors (rope_dim/2 each), owned, or NULL */
    slm_weight pos_embd;      /* bert: learned positions, or data NULL */
    float *tok_type0;         /* encoders: token type 0 row (n_embd), or NULL */
    float *tok_norm, *tok_norm_b; /* encoders: LayerNorm of the input embeddings */
    slm_layer *layers;
    void *packed_arena;       /* the repacked matrices (kernels/packed.h), or NULL */
    size_t packed_arena_bytes;
    char **meta_text;         /* rendered value of each metadata key, by kv index */
};

struct slm_context {
    slm_model *model;
    slm_pool *pool;
    int n_ctx, n_seq, n_batch, n_threads;
    bool exact, embeddings;
    int kv_dim;
    /* KV cache: [layer][seq][slot][kv_dim], f32 on the exact path (and for encoders), f16 otherwise.
     * Layer l holds kv_slots[l] positions per sequence: n_ctx, or for a sliding-window layer only
     * window + n_batch - 1 of them as a ring (position p in slot p % kv_slots[l]). */
    void *k_cache, *v_cache;
    size_t kv_elem_size;
    bool kv_f32;
    int *kv_slots;
    size_t *kv_layer_off;     /* element offset of each layer's block */
    size_t kv_elems;          /* elements of each of k_cache and v_cache */
    const float *rope_factors; /* the factors this context uses (llama3 freqs, LongRoPE long/short), or NULL */
    int *seq_len;             /* positions held per sequence */
    int *seq_pending;         /* while checking a batch: its tokens seen so far per sequence */
    slm_token *seq_tokens;    /* [seq][n_ctx] the tokens behind those positions */
    /* Work buffers sized for n_batch tokens. */
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2;
    float *att_scores;        /* [n_threads][att_scratch_per_thread] */
    size_t att_scratch_per_thread; /* floats: GQA group size x n_ctx + head_dim, or slm_attend_f32's if more */
    int *seq_batch_n;         /* encoders: tokens of each sequence in the current batch */
    float *out_hidden;        /* [n_batch][n_embd] normalised final states of tokens that want logits */
    float *all_hidden;        /* [n_batch][n_embd] final states of every token (embeddings) */
    float *logits;            /* [logits_cap][n_vocab] */
    int logits_cap, n_logits;
    int last_n_tokens;
    int32_t *last_seq;        /* seq of each token in the last batch (embeddings) */
    int32_t *batch_pos, *batch_seq; /* resolved positions/sequences of the current batch */
    int *out_rows;            /* batch index of each output row */
    float *rope_cos, *rope_sin; /* [n_batch][rope_dim/2] for the current batch */
    struct slm_lora_state *lora; /* adapters per sequence (src/model/lora.c), NULL until one is set */
    slm_matmul_observer observer; /* slm_context_set_matmul_observer, or NULL */
    void *observer_user;
};

/* LoRA (src/model/lora.c): the decoder matmuls an adapter may target. */
enum slm_lora_target { SLM_LORAT_Q, SLM_LORAT_K, SLM_LORAT_V, SLM_LORAT_O, SLM_LORAT_GATE, SLM_LORAT_UP, SLM_LORAT_DOWN,
                       SLM_LORAT_N_TARGETS };
/* y (n rows of the weight's outputs) += s·B·(A·x) for every adapter of each row's sequence; layer -1
 * is output.weight. rows: the batch index of each row (NULL = 0..n-1). Nothing when no sequence has one. */
void slm_lora_apply(slm_context *c, int layer, int target, const float *x, int n, const int *rows, float *y);
/* The same for up to 3 targets of one layer that read the same x (q, k, v; gate, up), y[i] for
 * targets[i]: one pool operation instead of one each. */
void slm_lora_apply_multi(slm_context *c, int layer, const int *targets, int n_targets, const float *x, int n,
                          const int *rows, float *const *y);
void slm_lora_context_free(slm_context *c);
/* The one table of targets, for the adapters and the trainer: the weight a target names in a layer
 * (layer -1: output.weight, whatever the target), and the middle of its GGUF name ("attn_q", ...;
 * NULL outside the enum). */
const slm_weight *slm_lora_target_weight(const slm_model *m, int layer, int target);
const char *slm_lora_target_tensor(int target);

#endif
