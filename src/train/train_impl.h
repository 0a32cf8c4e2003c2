/* Fine-tuning internals, private to src/train and its white-box tests: the LoRA parameter set, the
 * training forward/backward pass over a model's frozen weights, and the optimizer. */
#ifndef SLM_TRAIN_IMPL_H
#define SLM_TRAIN_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/pool.h"
#include "model/model_impl.h"
#include "slm_train.h"

/* One adapted matrix W (n_out x n_in): A [rank x n_in] and B [n_out x rank], row-major, at element
 * offsets into the set's flat arrays (so optimizer, clipping and checkpoints see one vector). */
typedef struct lora_pair {
    int layer, target, n_in, n_out;
    size_t off_a, off_b;
} lora_pair;

typedef struct lora_set {
    int rank;
    float alpha, scale;  /* scale = alpha / rank, as llama.cpp applies it */
    unsigned targets;    /* SLM_LORA_* mask */
    int n_layer;
    lora_pair *pairs;    /* n_pairs, ordered by layer then target */
    int n_pairs;
    int (*index)[SLM_LORAT_N_TARGETS]; /* [layer][target] -> pair index or -1 */
    size_t n_params;
    float *w, *g;        /* parameters and their gradients */
} lora_set;

lora_set *lora_set_new(const slm_model *m, int rank, float alpha, unsigned targets, char *err, size_t err_len);
void lora_set_free(lora_set *s);
/* A uniform in +-1/sqrt(n_in) (PEFT's default), B = 0, from the seed. */
void lora_set_init(lora_set *s, uint64_t seed);

/* splitmix64: the one random generator of the trainer (initialisation, shuffling). */
uint64_t train_rng_next(uint64_t *state);
double train_rng_uniform(uint64_t *state); /* [0, 1) */

/* The training pass. Memory: the residual stream at each layer's input (n_layer+1 x ctx x n_embd)
 * plus one layer's activations and gradients, recomputed layer by layer during the backward pass. */
typedef struct train_ws train_ws;
/* Checks the architecture (llama-family decoders) and allocates for sequences of up to ctx tokens. */
train_ws *train_ws_new(const slm_model *m, lora_set *set, int ctx, slm_pool *pool, bool exact, char *err,
                       size_t err_len);
void train_ws_free(train_ws *ws);
/* Steps with fewer multiply-adds than this run on the calling thread only (default 2^17); tests set
 * 0 to exercise the split on tiny models. */
void train_ws_set_min_parallel_work(train_ws *ws, double work);
/* Cross-entropy of predicting tokens[t+1] from tokens[..t] for the t where weight[t+1] != 0
 * (weight NULL: all). Returns the summed loss (nats, double) and sets *n_counted.
 * With backward: adds loss_scale x d(summed loss)/d(params) into set->g. */
double train_seq(train_ws *ws, const slm_token *tokens, const uint8_t *weight, int n, bool backward, float loss_scale,
                 int *n_counted);

/* Writes the set as a llama.cpp adapter GGUF (general.type adapter, adapter.type lora,
 * adapter.lora.alpha; blk.N.<matrix>.weight.lora_a [n_in, rank] and .lora_b [rank, n_out], f32). */
int train_write_adapter(const slm_model *m, const lora_set *s, const char *path, char *err, size_t err_len);

/* AdamW over the whole set. */
typedef struct adamw {
    float *m, *v;
    size_t n;
    int64_t t; /* steps taken */
} adamw;
int adamw_init(adamw *o, size_t n);
void adamw_free(adamw *o);
void adamw_step(adamw *o, float *w, const float *g, float lr, float beta1, float beta2, float eps, float wd);
/* L2 norm of g (double sums in index order). */
double grad_norm(const float *g, size_t n);

#endif
