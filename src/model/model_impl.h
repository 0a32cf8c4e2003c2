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

enum slm_rope_style {
    SLM_ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): llama GGUFs (q/k rows are pre-permuted) */
    SLM_ROPE_NEOX  /* rotate (x[i], x[i + d/2]): qwen2 */
};

/* What distinguishes one architecture family from another in the shared forward pass. */
typedef struct slm_arch {
    const char *name;
    bool qkv_bias;
    enum slm_rope_style rope_style;
} slm_arch;

typedef struct slm_hparams {
    int n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, rope_dim;
    float rope_base, rope_freq_scale, rms_eps;
} slm_hparams;

typedef struct slm_layer {
    float *attn_norm, *ffn_norm;  /* owned f32 copies (n_embd) */
    float *bq, *bk, *bv;          /* owned f32 biases or NULL */
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
    /* KV cache: [layer][seq][pos][kv_dim], f32 on the exact path, f16 otherwise. */
    void *k_cache, *v_cache;
    size_t kv_elem_size;
    int *seq_len;             /* positions held per sequence */
    int *seq_pending;         /* while checking a batch: its tokens seen so far per sequence */
    slm_token *seq_tokens;    /* [seq][n_ctx] the tokens behind those positions */
    /* Work buffers sized for n_batch tokens. */
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2;
    float *att_scores;        /* [n_threads][att_scratch_per_thread] */
    size_t att_scratch_per_thread; /* floats: GQA group size x n_ctx */
    float *out_hidden;        /* [n_batch][n_embd] normalised final states of tokens that want logits */
    float *all_hidden;        /* [n_batch][n_embd] final states of every token (embeddings) */
    float *logits;            /* [logits_cap][n_vocab] */
    int logits_cap, n_logits;
    int last_n_tokens;
    int32_t *last_seq;        /* seq of each token in the last batch (embeddings) */
    int32_t *batch_pos, *batch_seq; /* resolved positions/sequences of the current batch */
    int *out_rows;            /* batch index of each output row */
    float *rope_cos, *rope_sin; /* [n_batch][rope_dim/2] for the current batch */
};

#endif
