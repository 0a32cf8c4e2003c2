/* Fine-tuning: LoRA adapters trained on the CPU over a model's frozen (possibly quantized) weights,
 * written in llama.cpp's adapter GGUF format.
 *
 *   slm_finetune_params p = slm_finetune_default_params();
 *   p.data_path = "train.txt"; p.out_path = "adapter.gguf";
 *   slm_finetune_result r;
 *   slm_finetune(model, &p, &r, err, sizeof err);
 */
#ifndef SLM_TRAIN_H
#define SLM_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* The matrices an adapter can adapt (a bit mask). */
enum {
    SLM_LORA_Q = 1 << 0,
    SLM_LORA_K = 1 << 1,
    SLM_LORA_V = 1 << 2,
    SLM_LORA_O = 1 << 3,
    SLM_LORA_GATE = 1 << 4,
    SLM_LORA_UP = 1 << 5,
    SLM_LORA_DOWN = 1 << 6,
    SLM_LORA_ALL = (1 << 7) - 1
};

/* "q,k,v,o,gate,up,down" (any non-empty subset, or "all") into a mask; one error line otherwise. */
int slm_lora_targets_parse(const char *list, unsigned *mask, char *err, size_t err_len);

typedef enum slm_lr_schedule { SLM_LR_COSINE = 0, SLM_LR_LINEAR, SLM_LR_CONSTANT } slm_lr_schedule;

typedef struct slm_finetune_progress {
    int64_t step, total_steps;   /* optimizer steps done / planned */
    int epoch, epochs;           /* 1-based epoch in progress */
    double loss;                 /* mean training loss of the last step (nats per token) */
    double lr;
    double tokens_per_s;         /* training tokens (forward + backward) per second so far */
    double eta_s;                /* estimated seconds left */
    bool epoch_end;              /* set once per epoch, after validation */
    double val_loss;             /* at epoch_end (NAN without validation data) */
} slm_finetune_progress;

typedef struct slm_finetune_params {
    const char *data_path;      /* plain text, or chat JSONL ({"messages":[...]}) if it ends in .jsonl */
    const char *val_path;       /* NULL: hold out val_fraction of the training windows */
    float val_fraction;         /* default 0.1; 0 = no validation */
    const char *chat_template;  /* JSONL: template name, NULL = the model's own */
    int rank;                   /* default 8 */
    float alpha;                /* default 16 (scale = alpha / rank) */
    unsigned targets;           /* SLM_LORA_* mask, default all seven */
    int epochs;                 /* default 1 */
    int64_t max_steps;          /* stop after this many optimizer steps (0 = no limit) */
    float lr;                   /* peak learning rate, default 2e-4 */
    slm_lr_schedule schedule;   /* after warmup; default cosine to 0 */
    int64_t warmup_steps;       /* -1 = 10% of the steps (at most 100) */
    float weight_decay;         /* AdamW's decoupled decay, default 0 */
    float grad_clip;            /* global L2 norm, default 1; 0 = off */
    int batch;                  /* sequences per optimizer step, default 4 */
    int ctx;                    /* tokens per sequence, default min(256, model's context) */
    uint64_t seed;              /* default 42 */
    int n_threads;              /* 0 = online CPUs */
    bool exact;                 /* forward matmuls on the f32 reference path (slower) */
    int64_t checkpoint_every;   /* steps between checkpoints (0 = none) */
    const char *checkpoint_path;/* default: out_path + ".ckpt" */
    const char *resume_path;    /* continue from this checkpoint */
    const char *out_path;       /* the adapter GGUF */
    void (*progress)(void *user, const slm_finetune_progress *p);
    void *progress_user;
} slm_finetune_params;

typedef struct slm_finetune_result {
    int64_t steps;                 /* optimizer steps taken in total (including before a resume) */
    int64_t train_windows, val_windows;
    int64_t train_tokens;          /* loss-bearing tokens per epoch */
    double val_loss_before, val_loss_after; /* mean nats per token, NAN without validation data */
    double tokens_per_s;           /* training throughput of this run */
    double seconds;                /* training time, validation excluded */
    size_t n_params;               /* trained parameters */
} slm_finetune_result;

slm_finetune_params slm_finetune_default_params(void);

/* Trains an adapter on `model` and writes it to p->out_path. 0, or -1 with one error line. */
int slm_finetune(slm_model *model, const slm_finetune_params *p, slm_finetune_result *result, char *err,
                 size_t err_len);

#endif
