/* Constrained tasks on top of the public API: classify, extract, summarize. Used by the CLI verbs
 * and the server's /v1/classify, /v1/extract and /v1/summarize.
 *
 * All three run on one sequence `seq` of a context the caller owns (its KV cache is reused when the
 * prompt shares a prefix, and overwritten otherwise). They use the model's chat template when it
 * has one, else a plain-text prompt. Nothing is truncated silently: an input too long for the
 * context is an error for classify/extract and is split (map-reduce) by summarize. Not thread-safe
 * per context: callers serialise use of a (context, seq). */
#ifndef SLM_TASKS_H
#define SLM_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* Returned when generation hit max_tokens or the context end before the output was complete (the
 * result's finish_reason is "length"); the partial text is in the result but is not valid. */
#define SLM_TASK_INCOMPLETE (-2)

typedef struct slm_task_params {
    int seq;             /* sequence of the context to use */
    int max_tokens;      /* generation cap; 0 = task default (extract 512, summarize from max_words) */
    float temperature;   /* 0 = greedy (default) */
    uint64_t seed;
    const char *template_name; /* NULL = the model's chat template */
} slm_task_params;

/* Label probabilities from the model's own token log-probabilities, not from parsing text.
 * Single-label: for each label, log P(label tokens, end-of-turn | prompt); probs are the softmax over
 * labels (sum to 1). multi_label: each label is an independent yes/no question and probs[i] =
 * P(yes) / (P(yes) + P(no)). `probs` has n_labels entries. Labels must be non-empty and distinct. */
int slm_task_classify(slm_context *ctx, const slm_task_params *p, const char *input, const char *const *labels,
                      int n_labels, bool multi_label, double *probs, char *err, size_t err_len);

typedef struct slm_task_result {
    char *text;                /* malloc'd: the JSON (extract) or the summary (summarize) */
    const char *finish_reason; /* "stop" or "length" */
    int n_prompt, n_generated; /* summed over all generations of the task */
    int n_chunks;              /* summarize: input parts (1 = no split) */
    int n_rounds;              /* summarize: generation rounds (map + reduce levels) */
} slm_task_result;

void slm_task_result_free(slm_task_result *r);

/* JSON object that validates against `schema_json` (a JSON Schema or {"type":"json_object"}),
 * generated under the schema's grammar and validated before returning 0. An unsupported schema
 * is an error naming the keyword; output cut by max_tokens returns SLM_TASK_INCOMPLETE. */
int slm_task_extract(slm_context *ctx, const slm_task_params *p, const char *input, const char *schema_json,
                     slm_task_result *out, char *err, size_t err_len);

/* Summary of `input` in at most about max_words words (0 = 100) in `style` (free text such as
 * "bullet points"; NULL = plain prose). Input longer than the context is split at sentence or line
 * boundaries, each part summarised, and the summaries combined (repeatedly if needed). A summary cut
 * by the token cap is returned (0) with finish_reason "length"; callers must pass that on. */
int slm_task_summarize(slm_context *ctx, const slm_task_params *p, const char *input, int max_words, const char *style,
                       slm_task_result *out, char *err, size_t err_len);

#endif
